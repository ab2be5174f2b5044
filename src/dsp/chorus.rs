//! Stereo chorus: one modulated delay, read at two LFO phases a quarter-cycle apart.

use super::delay::DelayLine;
use std::f64::consts::TAU;

/// Centre delay of the chorus voices.
pub const CHORUS_BASE_SECONDS: f32 = 0.007;

#[derive(Clone)]
pub struct Chorus {
    line: DelayLine,
    phase: f64,
}

impl Chorus {
    pub fn new(sample_rate: f32) -> Self {
        let max = ((CHORUS_BASE_SECONDS + 0.011) * sample_rate).ceil() as usize;
        Chorus { line: DelayLine::new(max), phase: 0.0 }
    }

    /// Processes one tick of mono input into two wet outputs, the LFO moving at
    /// `rate_hz`, sweeping +/- `depth_s`. The LFO is evaluated at the tick's ends and
    /// interpolated (rates are far below the tick rate).
    pub fn process(
        &mut self,
        input: &[f32],
        rate_hz: f32,
        depth_s: f32,
        sample_rate: f32,
        wet_l: &mut [f32],
        wet_r: &mut [f32],
    ) {
        let n = input.len();
        let dphase = rate_hz as f64 / sample_rate as f64 * n as f64;
        let base = CHORUS_BASE_SECONDS * sample_rate;
        let depth = depth_s.clamp(0.0, 0.01) * sample_rate;
        let at = |p: f64, offset: f64| base + depth * ((p + offset) * TAU).sin() as f32;
        let (l0, l1) = (at(self.phase, 0.0), at(self.phase + dphase, 0.0));
        let (r0, r1) = (at(self.phase, 0.25), at(self.phase + dphase, 0.25));
        let inv = 1.0 / n as f32;
        for i in 0..n {
            self.line.write(input[i]);
            let t = (i as f32 + 1.0) * inv;
            wet_l[i] = self.line.read(l0 + (l1 - l0) * t);
            wet_r[i] = self.line.read(r0 + (r1 - r0) * t);
        }
        self.phase = (self.phase + dphase).fract();
    }

    pub fn clear(&mut self) {
        self.line.clear();
    }
}
