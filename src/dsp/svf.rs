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

/// Two channels of filter state (left and right) in the first two lanes of a
/// vector each, stepped together: each lane does what [`Svf::tick`] does, the same
/// operations in the same order (no fused multiply-add), so each side comes out the
/// same bit for bit. The two recursions run in one chain of vector operations with no
/// moves between lanes on it (the compiler's build of two [`Svf::tick`]s side by side
/// shuffled the states between lanes on every sample).
#[derive(Clone, Copy, Debug)]
pub struct SvfPair {
    ic1: wide::f32x4,
    ic2: wide::f32x4,
}

/// [`SvfCoefs`] in every lane, for [`SvfPair`].
#[derive(Clone, Copy, Debug)]
pub struct SvfPairCoefs {
    k: wide::f32x4,
    a1: wide::f32x4,
    a2: wide::f32x4,
    a3: wide::f32x4,
}

impl From<&SvfCoefs> for SvfPairCoefs {
    #[inline(always)]
    fn from(c: &SvfCoefs) -> Self {
        use wide::f32x4;
        SvfPairCoefs { k: f32x4::splat(c.k), a1: f32x4::splat(c.a1), a2: f32x4::splat(c.a2), a3: f32x4::splat(c.a3) }
    }
}

impl SvfPair {
    /// The states of `pair` (left, right) side by side.
    #[inline(always)]
    pub fn load(pair: &[Svf; 2]) -> Self {
        use wide::f32x4;
        SvfPair {
            ic1: f32x4::from([pair[0].ic1, pair[1].ic1, 0.0, 0.0]),
            ic2: f32x4::from([pair[0].ic2, pair[1].ic2, 0.0, 0.0]),
        }
    }

    /// Writes the states back to `pair`.
    #[inline(always)]
    pub fn store(&self, pair: &mut [Svf; 2]) {
        let (ic1, ic2) = (self.ic1.to_array(), self.ic2.to_array());
        *pair = [Svf { ic1: ic1[0], ic2: ic2[0] }, Svf { ic1: ic1[1], ic2: ic2[1] }];
    }

    /// Returns `(low, band, high)` for the inputs `x` (left, right in the first two
    /// lanes), each lane as [`Svf::tick`].
    #[inline(always)]
    pub fn tick(&mut self, c: &SvfPairCoefs, x: wide::f32x4) -> (wide::f32x4, wide::f32x4, wide::f32x4) {
        let two = wide::f32x4::splat(2.0);
        let v3 = x - self.ic2;
        let v1 = c.a1 * self.ic1 + c.a2 * v3;
        let v2 = self.ic2 + c.a2 * self.ic1 + c.a3 * v3;
        self.ic1 = two * v1 - self.ic1;
        self.ic2 = two * v2 - self.ic2;
        (v2, v1, x - c.k * v1 - v2)
    }
}

/// Low-passes eight signals side by side: signal `l`, the first `n` samples of
/// `x[l]`, through `filters[l]` with `coefs[l]`. Each lane does what
/// [`Svf::lowpass`] does sample by sample, the same operations in the same order (no
/// fused multiply-add), so each signal comes out the same bit for bit; the eight
/// recursions overlap instead of running one after another.
#[inline(always)]
#[allow(clippy::needless_range_loop)] // `t` indexes every lane's row
pub fn lowpass_8<const N: usize>(filters: &mut [Svf; 8], coefs: &[SvfCoefs; 8], x: &mut [[f32; N]; 8], n: usize) {
    use wide::f32x8;
    let lanes = |f: &dyn Fn(usize) -> f32| f32x8::from(std::array::from_fn::<f32, 8, _>(f));
    let (a1, a2, a3) = (lanes(&|l| coefs[l].a1), lanes(&|l| coefs[l].a2), lanes(&|l| coefs[l].a3));
    let (mut ic1, mut ic2) = (lanes(&|l| filters[l].ic1), lanes(&|l| filters[l].ic2));
    let two = f32x8::splat(2.0);
    for t in 0..n.min(N) {
        let v3 = lanes(&|l| x[l][t]) - ic2;
        let v1 = a1 * ic1 + a2 * v3;
        let v2 = ic2 + a2 * ic1 + a3 * v3;
        ic1 = two * v1 - ic1;
        ic2 = two * v2 - ic2;
        for (l, y) in v2.to_array().into_iter().enumerate() {
            x[l][t] = y;
        }
    }
    let (ic1, ic2) = (ic1.to_array(), ic2.to_array());
    for (l, f) in filters.iter_mut().enumerate() {
        *f = Svf { ic1: ic1[l], ic2: ic2[l] };
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
    fn eight_lanes_low_pass_as_each_filter_alone_bit_for_bit() {
        let sr = 48000.0;
        let coefs: [SvfCoefs; 8] = std::array::from_fn(|l| SvfCoefs::new(200.0 * (l + 1) as f32, 0.5 + l as f32, sr));
        let mut x = [[0.0f32; 64]; 8];
        for (l, row) in x.iter_mut().enumerate() {
            for (t, v) in row.iter_mut().enumerate() {
                *v = ((t * (l + 3)) as f32 * 0.37).sin() * (1.0 + l as f32);
            }
        }
        let mut filters: [Svf; 8] = std::array::from_fn(|l| Svf { ic1: 0.01 * l as f32, ic2: -0.02 * l as f32 });
        for n in [64, 37, 1, 0] {
            let mut want = x;
            let mut alone = filters;
            for l in 0..8 {
                for v in &mut want[l][..n] {
                    *v = alone[l].lowpass(&coefs[l], *v);
                }
            }
            lowpass_8(&mut filters, &coefs, &mut x, n);
            for l in 0..8 {
                assert!(x[l].iter().zip(&want[l]).all(|(a, b)| a.to_bits() == b.to_bits()), "lane {l}, {n} samples");
                assert_eq!(
                    (filters[l].ic1.to_bits(), filters[l].ic2.to_bits()),
                    (alone[l].ic1.to_bits(), alone[l].ic2.to_bits())
                );
            }
        }
    }

    fn pair_ticks(pair: &mut [Svf; 2], c: &SvfCoefs, x: &[(f32, f32)]) -> Vec<[f32; 6]> {
        let mut p = SvfPair::load(pair);
        let c = SvfPairCoefs::from(c);
        let out = x
            .iter()
            .map(|&(l, r)| {
                let (lo, band, high) = p.tick(&c, wide::f32x4::from([l, r, 0.0, 0.0]));
                let (lo, band, high) = (lo.to_array(), band.to_array(), high.to_array());
                [lo[0], band[0], high[0], lo[1], band[1], high[1]]
            })
            .collect();
        p.store(pair);
        out
    }

    crate::dsp::wide_build!(fn pair_ticks_wide = pair_ticks, (pair: &mut [Svf; 2], c: &SvfCoefs, x: &[(f32, f32)]) -> Vec<[f32; 6]>);

    #[test]
    fn a_pair_ticks_as_two_filters_bit_for_bit() {
        let sr = 48000.0;
        for (cutoff, q) in [(1000.0f32, 0.707f32), (25.0, 8.0), (21_000.0, 0.2)] {
            let c = SvfCoefs::new(cutoff, q, sr);
            let start = [Svf { ic1: 0.3, ic2: -0.1 }, Svf { ic1: -0.02, ic2: 0.5 }];
            let (mut alone, mut pair, mut wide_pair) = (start, start, start);
            for n in [64usize, 1, 37, 0, 200] {
                let x: Vec<(f32, f32)> =
                    (0..n).map(|t| ((t as f32 * 0.37).sin(), (t as f32 * 0.011).cos() * 2.0 - 0.5)).collect();
                let want: Vec<[f32; 6]> = x
                    .iter()
                    .map(|&(l, r)| {
                        let (a, b, c_) = alone[0].tick(&c, l);
                        let (d, e, f) = alone[1].tick(&c, r);
                        [a, b, c_, d, e, f]
                    })
                    .collect();
                let bits = |v: &[[f32; 6]]| v.iter().flatten().map(|x| x.to_bits()).collect::<Vec<_>>();
                let state = |p: &[Svf; 2]| p.map(|f| (f.ic1.to_bits(), f.ic2.to_bits()));
                assert_eq!(bits(&pair_ticks(&mut pair, &c, &x)), bits(&want), "{cutoff} Hz, {n} samples");
                assert_eq!(bits(&pair_ticks_wide(&mut wide_pair, &c, &x)), bits(&want), "wide: {cutoff} Hz, {n}");
                assert_eq!(state(&pair), state(&alone));
                assert_eq!(state(&wide_pair), state(&alone));
            }
        }
    }

    #[test]
    fn highpass_minus_3db_at_cutoff() {
        let db = 20.0 * gain_at(500.0, 500.0, true).log10();
        assert!((db + 3.0).abs() < 0.1, "{db}");
    }
}
