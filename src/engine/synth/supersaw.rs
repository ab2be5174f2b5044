//! Supersaw: seven band-limited saws spread evenly over -15..+15 cents, started at
//! fixed, spread phases (the same sound every note).

use super::{OscState, Synth, SynthCtx, with_detune};
use crate::tables::wavetable::{Shape, phase_inc, read};

const VOICES: usize = 7;
/// Per saw: seven saws at their spread phases peak below full scale.
const GAIN: f32 = 0.17;

pub struct Supersaw;

impl Synth for Supersaw {
    fn start(&self, st: &mut OscState, _ctx: &SynthCtx) {
        for copy in 0..3 {
            for k in 0..VOICES {
                st.phase[copy * VOICES + k] = ((k as u64 * 0x2545_F491) as u32).wrapping_mul(0x9E37_79B9);
            }
        }
    }

    fn render(&self, st: &mut OscState, ctx: &SynthCtx, out: &mut [f32]) {
        let sr = ctx.sample_rate as f64;
        with_detune(st, ctx, out, VOICES, |ph, f, out, add| {
            if !add {
                out.fill(0.0);
            }
            let top = f * (15.0f64 / 1200.0).exp2();
            let table = ctx.waves.table(Shape::Saw, phase_inc(top, sr));
            for (k, p) in ph.iter_mut().enumerate() {
                let cents = -15.0 + 5.0 * k as f64;
                let inc = phase_inc(f * (cents / 1200.0).exp2(), sr);
                let mut q = *p;
                for x in out.iter_mut() {
                    *x += read(table, q) * GAIN;
                    q = q.wrapping_add(inc);
                }
                *p = q;
            }
        });
    }
}
