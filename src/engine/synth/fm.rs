//! Two-operator FM (phase modulation): a sine carrier at the note's pitch modulated
//! by a sine at `fm_ratio` times it, with depth `fm_index` (radians). The index is
//! limited so that the upper sidebands (Carson's rule) stay below Nyquist.

use super::{OscState, Synth, SynthCtx, with_detune};
use crate::params::Param;
use crate::tables::wavetable::{phase_inc, read};

pub struct Fm;

/// Radians to a 32-bit phase offset.
const RAD_TO_PHASE: f32 = 4_294_967_296.0 / std::f32::consts::TAU;

impl Synth for Fm {
    fn render(&self, st: &mut OscState, ctx: &SynthCtx, out: &mut [f32]) {
        let ratio = ctx.param(Param::FmRatio) as f64;
        let index = ctx.param(Param::FmIndex);
        let sine = ctx.waves.sine();
        let sr = ctx.sample_rate as f64;
        with_detune(st, ctx, out, 2, |ph, f, out, add| {
            let fm = f * ratio;
            let room = ((0.5 * sr - f) / fm.max(1e-3) - 1.0).max(0.0) as f32;
            let depth = index.min(room) * RAD_TO_PHASE;
            let (ic, im) = (phase_inc(f, sr), phase_inc(fm, sr));
            let (mut pc, mut pm) = (ph[0], ph[1]);
            for x in out.iter_mut() {
                let m = read(sine, pm) * depth;
                let v = read(sine, pc.wrapping_add(m as i64 as u32));
                *x = if add { *x + v } else { v };
                pc = pc.wrapping_add(ic);
                pm = pm.wrapping_add(im);
            }
            ph[0] = pc;
            ph[1] = pm;
        });
    }
}
