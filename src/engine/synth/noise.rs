//! White noise, uniform in -1..1, from the voice's seeded generator.

use super::{OscState, Synth, SynthCtx};

pub struct Noise;

impl Synth for Noise {
    fn render(&self, st: &mut OscState, _ctx: &SynthCtx, out: &mut [f32]) {
        for x in out.iter_mut() {
            *x = st.noise();
        }
    }
}
