//! Two-operator FM (phase modulation), on the audio thread: a sine carrier at the
//! note's pitch modulated by a sine at `fm_ratio` times it, with depth `fm_index`
//! (radians). The index is limited so that the sidebands past Nyquist, which would
//! fold back as images, stay under [`SIDEBAND_FLOOR`].

use super::{OscState, Synth, SynthCtx, with_detune};
use crate::params::Param;
use crate::tables::wavetable::{phase_inc, read};

pub struct Fm;

/// Radians to a 32-bit phase offset.
const RAD_TO_PHASE: f32 = 4_294_967_296.0 / std::f32::consts::TAU;

/// Largest amplitude (of a full-scale carrier) allowed to a sideband above Nyquist:
/// -74 dB, so that its image stays 60 dB under the strongest partial (which is at
/// least 0.2 of full scale at any index up to 50).
pub const SIDEBAND_FLOOR: f64 = 2e-4;

/// Sidebands whose index limit is tabled; from the next one on, the limit is above
/// the largest `fm_index` (50).
const TABLED_SIDEBANDS: usize = 72;

/// `INDEX_LIMITS[m - 1]`: the largest index at which the m-th upper sideband (and
/// every one beyond it) has an amplitude under [`SIDEBAND_FLOOR`]. Computed when the
/// crate is compiled.
const INDEX_LIMITS: [f32; TABLED_SIDEBANDS] = index_limits();

// The last tabled limit is past the largest `fm_index`, so past the table no limit
// is needed.
const _: () = assert!(INDEX_LIMITS[TABLED_SIDEBANDS - 1] > 50.0);

/// The Bessel function of the first kind J_m(x), by its power series, for
/// 0 <= x <= m + 1 (where the series has no harmful cancellation).
const fn bessel_j(m: usize, x: f64) -> f64 {
    let h = 0.5 * x;
    let mut term = 1.0;
    let mut i = 1;
    while i <= m {
        term *= h / i as f64;
        i += 1;
    }
    let mut sum = term;
    let mut k = 0;
    while k < 200 {
        term *= -h * h / ((k + 1) as f64 * (k + m + 1) as f64);
        sum += term;
        let a = if term < 0.0 { -term } else { term };
        if a < 1e-18 {
            break;
        }
        k += 1;
    }
    sum
}

/// For each m, the index where J_m first rises to [`SIDEBAND_FLOOR`] (bisection on
/// 0..m, where J_m increases: its first maximum is beyond m). J_{m+1} < J_m there, so
/// the later sidebands are smaller still.
const fn index_limits() -> [f32; TABLED_SIDEBANDS] {
    let mut out = [0.0f32; TABLED_SIDEBANDS];
    let mut m = 1;
    while m <= TABLED_SIDEBANDS {
        let (mut lo, mut hi) = (0.0f64, m as f64);
        let mut step = 0;
        while step < 40 {
            let mid = 0.5 * (lo + hi);
            if bessel_j(m, mid) < SIDEBAND_FLOOR {
                lo = mid;
            } else {
                hi = mid;
            }
            step += 1;
        }
        out[m - 1] = lo as f32;
        m += 1;
    }
    out
}

/// The largest index a carrier at `carrier_hz` with a modulator at `mod_hz` may have
/// at `sample_rate`: the first sideband past Nyquist stays under [`SIDEBAND_FLOOR`].
pub fn index_limit(carrier_hz: f64, mod_hz: f64, sample_rate: f64) -> f32 {
    let fit = ((0.5 * sample_rate - carrier_hz) / mod_hz.max(1e-3)).floor().max(0.0);
    let first_out = fit as usize + 1;
    if first_out > TABLED_SIDEBANDS { f32::MAX } else { INDEX_LIMITS[first_out - 1] }
}

impl Synth for Fm {
    fn render(&self, st: &mut OscState, ctx: &SynthCtx, out: &mut [f32]) {
        let ratio = ctx.param(Param::FmRatio) as f64;
        let index = ctx.param(Param::FmIndex);
        let sine = ctx.waves.sine();
        let sr = ctx.sample_rate as f64;
        with_detune(st, ctx, out, 2, |ph, f, out, add| {
            let fm = f * ratio;
            let depth = index.min(index_limit(f, fm, sr)) * RAD_TO_PHASE;
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The series against known values (Abramowitz and Stegun, table 9.1).
    #[test]
    fn bessel_series_matches_the_tables() {
        for (m, x, j) in [(1, 1.0, 0.440_050_585_7), (2, 1.0, 0.114_903_484_9), (1, 2.0, 0.576_724_807_8)] {
            assert!((bessel_j(m, x) - j).abs() < 1e-9, "J{m}({x})");
        }
        // J_10(10) = 0.207 486 106 6.
        assert!((bessel_j(10, 10.0) - 0.207_486_106_6).abs() < 1e-9);
    }

    /// Every tabled limit puts its sideband at the floor, and the limits grow with m.
    #[test]
    fn index_limits_hold_the_first_folded_sideband_at_the_floor() {
        for (i, &b) in INDEX_LIMITS.iter().enumerate() {
            let j = bessel_j(i + 1, b as f64);
            assert!((j / SIDEBAND_FLOOR - 1.0).abs() < 1e-3, "m {}: J = {j:e}", i + 1);
            if i > 0 {
                assert!(b > INDEX_LIMITS[i - 1]);
            }
        }
        // C7 with ratio 3 at 48 kHz: three upper sidebands fit, the fourth is limited.
        assert_eq!(index_limit(2093.0, 6279.0, 48_000.0), INDEX_LIMITS[3]);
    }
}
