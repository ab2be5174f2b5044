//! Second-order IIR sections (RBJ cookbook designs, transposed direct form II).
//! Pure DSP: no allocation, usable on any thread; the engine uses it on the audio
//! thread and the table builders use it on the control thread.

use std::f64::consts::PI;

/// Normalised biquad coefficients (`a0` divided out).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BiquadCoefs {
    pub b0: f32,
    pub b1: f32,
    pub b2: f32,
    pub a1: f32,
    pub a2: f32,
}

impl BiquadCoefs {
    /// The identity filter.
    pub const IDENTITY: BiquadCoefs = BiquadCoefs { b0: 1.0, b1: 0.0, b2: 0.0, a1: 0.0, a2: 0.0 };

    fn normalise(b: [f64; 3], a: [f64; 3]) -> Self {
        let inv = 1.0 / a[0];
        BiquadCoefs {
            b0: (b[0] * inv) as f32,
            b1: (b[1] * inv) as f32,
            b2: (b[2] * inv) as f32,
            a1: (a[1] * inv) as f32,
            a2: (a[2] * inv) as f32,
        }
    }

    /// `(cos w0, alpha)` for a design at `freq_hz`, clamped inside (0, Nyquist).
    fn prewarp(freq_hz: f64, q: f64, sample_rate: f64) -> (f64, f64) {
        let f = freq_hz.clamp(1.0, sample_rate * 0.499);
        let w0 = 2.0 * PI * f / sample_rate;
        (w0.cos(), w0.sin() / (2.0 * q.max(1e-3)))
    }

    /// Low-pass, -3 dB at `cutoff_hz` when `q` = 1/sqrt(2).
    pub fn lowpass(cutoff_hz: f64, q: f64, sample_rate: f64) -> Self {
        let (c, alpha) = Self::prewarp(cutoff_hz, q, sample_rate);
        Self::normalise([(1.0 - c) / 2.0, 1.0 - c, (1.0 - c) / 2.0], [1.0 + alpha, -2.0 * c, 1.0 - alpha])
    }

    /// High-pass, -3 dB at `cutoff_hz` when `q` = 1/sqrt(2).
    pub fn highpass(cutoff_hz: f64, q: f64, sample_rate: f64) -> Self {
        let (c, alpha) = Self::prewarp(cutoff_hz, q, sample_rate);
        Self::normalise([(1.0 + c) / 2.0, -(1.0 + c), (1.0 + c) / 2.0], [1.0 + alpha, -2.0 * c, 1.0 - alpha])
    }

    /// Band-pass with 0 dB peak gain at `center_hz`.
    pub fn bandpass(center_hz: f64, q: f64, sample_rate: f64) -> Self {
        let (c, alpha) = Self::prewarp(center_hz, q, sample_rate);
        Self::normalise([alpha, 0.0, -alpha], [1.0 + alpha, -2.0 * c, 1.0 - alpha])
    }

    /// Band-pass passing `low_hz..high_hz` (centre at the geometric mean, Q from the
    /// bandwidth), the form the drum descriptions write as `bp[low, high]`.
    pub fn bandpass_range(low_hz: f64, high_hz: f64, sample_rate: f64) -> Self {
        let lo = low_hz.max(1.0);
        let hi = high_hz.max(lo * 1.01);
        let center = (lo * hi).sqrt();
        Self::bandpass(center, center / (hi - lo), sample_rate)
    }

    /// Magnitude response at `freq_hz` (for tests and diagnostics).
    pub fn magnitude(&self, freq_hz: f64, sample_rate: f64) -> f64 {
        let w = 2.0 * PI * freq_hz / sample_rate;
        let (c1, s1, c2, s2) = (w.cos(), -w.sin(), (2.0 * w).cos(), -(2.0 * w).sin());
        let num =
            (self.b0 as f64 + self.b1 as f64 * c1 + self.b2 as f64 * c2, self.b1 as f64 * s1 + self.b2 as f64 * s2);
        let den = (1.0 + self.a1 as f64 * c1 + self.a2 as f64 * c2, self.a1 as f64 * s1 + self.a2 as f64 * s2);
        (num.0.hypot(num.1)) / (den.0.hypot(den.1))
    }
}

impl BiquadCoefs {
    /// One step of the section (transposed direct form II) with its state in `s`:
    /// for filters whose state lives in a voice's plain float slots.
    #[inline(always)]
    pub fn step(&self, s: &mut [f32; 2], x: f32) -> f32 {
        let y = self.b0 * x + s[0];
        s[0] = self.b1 * x - self.a1 * y + s[1];
        s[1] = self.b2 * x - self.a2 * y;
        y
    }
}

/// One biquad section's state (transposed direct form II).
#[derive(Clone, Copy, Debug, Default)]
pub struct Biquad {
    z: [f32; 2],
}

impl Biquad {
    pub const fn new() -> Self {
        Biquad { z: [0.0; 2] }
    }

    #[inline]
    pub fn tick(&mut self, c: &BiquadCoefs, x: f32) -> f32 {
        c.step(&mut self.z, x)
    }

    /// Filters `buf` in place.
    pub fn process(&mut self, c: &BiquadCoefs, buf: &mut [f32]) {
        for x in buf.iter_mut() {
            *x = self.tick(c, *x);
        }
    }

    pub fn reset(&mut self) {
        *self = Self::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lowpass_is_minus_3db_at_cutoff() {
        let c = BiquadCoefs::lowpass(1000.0, std::f64::consts::FRAC_1_SQRT_2, 48000.0);
        let db = 20.0 * c.magnitude(1000.0, 48000.0).log10();
        assert!((db + 3.01).abs() < 0.05, "{db}");
        assert!((c.magnitude(10.0, 48000.0) - 1.0).abs() < 1e-3);
    }

    #[test]
    fn bandpass_range_peaks_in_band() {
        let c = BiquadCoefs::bandpass_range(200.0, 800.0, 44100.0);
        assert!((c.magnitude(400.0, 44100.0) - 1.0).abs() < 1e-3);
        assert!(c.magnitude(50.0, 44100.0) < 0.3);
        assert!(c.magnitude(5000.0, 44100.0) < 0.3);
    }
}
