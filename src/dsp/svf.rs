//! State-variable filter in the topology-preserving (trapezoidal) form: the same
//! response as the bilinear-transformed two-pole designs, and stable while its
//! cutoff moves, which the bus low-pass and high-pass need for CC sweeps.

use std::f32::consts::PI;

#[derive(Clone, Copy, Debug, Default)]
pub struct SvfCoefs {
    k: f32,
    a1: f32,
    a2: f32,
    a3: f32,
}

impl SvfCoefs {
    /// Coefficients for `cutoff_hz` (clamped below 0.45 x the sample rate) and `q`.
    pub fn new(cutoff_hz: f32, q: f32, sample_rate: f32) -> Self {
        let fc = cutoff_hz.clamp(5.0, 0.45 * sample_rate);
        let g = (PI * fc / sample_rate).tan();
        let k = 1.0 / q.max(0.05);
        let a1 = 1.0 / (1.0 + g * (g + k));
        let a2 = g * a1;
        SvfCoefs { k, a1, a2, a3: g * a2 }
    }
}

/// One channel of filter state.
#[derive(Clone, Copy, Debug, Default)]
pub struct Svf {
    ic1: f32,
    ic2: f32,
}

impl Svf {
    /// Returns `(low, band, high)` for input `x`.
    #[inline]
    pub fn tick(&mut self, c: &SvfCoefs, x: f32) -> (f32, f32, f32) {
        let v3 = x - self.ic2;
        let v1 = c.a1 * self.ic1 + c.a2 * v3;
        let v2 = self.ic2 + c.a2 * self.ic1 + c.a3 * v3;
        self.ic1 = 2.0 * v1 - self.ic1;
        self.ic2 = 2.0 * v2 - self.ic2;
        (v2, v1, x - c.k * v1 - v2)
    }

    #[inline]
    pub fn lowpass(&mut self, c: &SvfCoefs, x: f32) -> f32 {
        self.tick(c, x).0
    }

    #[inline]
    pub fn highpass(&mut self, c: &SvfCoefs, x: f32) -> f32 {
        self.tick(c, x).2
    }

    pub fn reset(&mut self) {
        *self = Svf::default();
    }

    /// Whether the state has blown up (never expected; a guard for extreme input).
    pub fn is_finite(&self) -> bool {
        self.ic1.is_finite() && self.ic2.is_finite()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gain_at(freq: f32, cutoff: f32, high: bool) -> f32 {
        let sr = 48000.0;
        let c = SvfCoefs::new(cutoff, std::f32::consts::FRAC_1_SQRT_2, sr);
        let mut f = Svf::default();
        let mut peak = 0.0f32;
        for n in 0..48000 {
            let x = (2.0 * PI * freq * n as f32 / sr).sin();
            let y = if high { f.highpass(&c, x) } else { f.lowpass(&c, x) };
            if n > 24000 {
                peak = peak.max(y.abs());
            }
        }
        peak
    }

    #[test]
    fn lowpass_minus_3db_at_cutoff() {
        let db = 20.0 * gain_at(1000.0, 1000.0, false).log10();
        assert!((db + 3.0).abs() < 0.1, "{db}");
        assert!(gain_at(100.0, 1000.0, false) > 0.99);
        assert!(gain_at(10000.0, 1000.0, false) < 0.02);
    }

    #[test]
    fn highpass_minus_3db_at_cutoff() {
        let db = 20.0 * gain_at(500.0, 500.0, true).log10();
        assert!((db + 3.0).abs() < 0.1, "{db}");
    }
}
