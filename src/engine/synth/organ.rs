//! Additive drawbar organ: sines at harmonics 1, 2, 3, 4, 5, 6 and 8 with fixed
//! drawbar levels; a harmonic fades out as it nears Nyquist instead of aliasing.

use super::{OscState, Synth, SynthCtx, with_detune};
use crate::tables::wavetable::{phase_inc, read};

const HARMONICS: [(u32, f32); 7] = [(1, 1.0), (2, 0.8), (3, 0.6), (4, 0.5), (5, 0.3), (6, 0.25), (8, 0.15)];
const NORM: f32 = 1.0 / 3.5;

pub struct Organ;

impl Synth for Organ {
    fn render(&self, st: &mut OscState, ctx: &SynthCtx, out: &mut [f32]) {
        let sine = ctx.waves.sine();
        let sr = ctx.sample_rate as f64;
        with_detune(st, ctx, out, 1, |ph, f, out, add| {
            let inc = phase_inc(f, sr);
            let mut gains = [0.0f32; 7];
            for (g, (h, level)) in gains.iter_mut().zip(HARMONICS) {
                let rel = (f * h as f64 / sr) as f32; // cycles per sample
                let fade = ((0.45 - rel) / 0.05).clamp(0.0, 1.0);
                *g = level * NORM * fade;
            }
            let mut p = ph[0];
            for x in out.iter_mut() {
                let mut v = 0.0;
                for ((h, _), g) in HARMONICS.iter().zip(gains) {
                    v += read(sine, p.wrapping_mul(*h)) * g;
                }
                *x = if add { *x + v } else { v };
                p = p.wrapping_add(inc);
            }
            ph[0] = p;
        });
    }
}
