//! Small numeric helpers for inner loops.

/// tanh as a clamped rational approximation (|error| < 1e-6), branch-free so that loops
/// over it vectorise. The coefficients are the 13/6 minimax fit that Eigen's fast tanh uses.
#[inline]
pub fn fast_tanh(x: f32) -> f32 {
    const CLAMP: f32 = 7.905_311;
    let x = x.clamp(-CLAMP, CLAMP);
    let x2 = x * x;
    let p = x2 * -2.760_768_5e-16 + 2.000_188e-13;
    let p = x2 * p - 8.604_672e-11;
    let p = x2 * p + 5.122_297e-8;
    let p = x2 * p + 1.485_722_4e-5;
    let p = x2 * p + 6.372_619_3e-4;
    let p = x2 * p + 4.893_524_6e-3;
    let p = x * p;
    let q = x2 * 1.198_258_4e-6 + 1.185_347e-4;
    let q = x2 * q + 2.268_434_6e-3;
    let q = x2 * q + 4.893_525e-3;
    p / q
}

/// Corner of the DC blockers (Hz): low enough to keep a 30 Hz fundamental within
/// 0.15 dB, high enough to settle in a few tens of milliseconds.
pub const DC_BLOCK_HZ: f32 = 5.0;

/// Below this (-80 dB), a DC blocker fed exact silence outputs exact silence: what
/// was silent stays silent (no endless filter tail after a sound ends).
const DC_BLOCK_FLUSH: f32 = 1e-4;

/// The pole of [`dc_block`] at `sample_rate`.
#[inline]
pub fn dc_block_pole(sample_rate: f32) -> f32 {
    (-std::f32::consts::TAU * DC_BLOCK_HZ / sample_rate.max(1.0)).exp()
}

/// Samples of [`dc_block_lanes`]' steps: one multiply-add of the recursion per step.
const DC_LANES: usize = 4;

/// [`dc_block`] with its pole `r` given ([`dc_block_pole`]), four samples a step: within
/// a step each output is the step's inputs summed with powers of `r` (independent of the
/// last step), plus a power of `r` times the last output, so the recursion's chain is one
/// multiply-add per four samples rather than per sample. The same filter within float
/// rounding (a few units in the last place, relative to the signal's peak); a block with
/// an input of exact zero runs [`dc_block`]'s loop, so what was silent stays silent.
#[inline]
pub fn dc_block_lanes(x: &mut [f32], state: &mut [f32; 2], r: f32) {
    if x.iter().fold(false, |z, v| z | (*v == 0.0)) {
        dc_block_with(x, state, r);
        return;
    }
    let (r2, r3) = (r * r, r * r * r);
    let r4 = r2 * r2;
    let [mut x1, mut y1] = *state;
    let mut chunks = x.chunks_exact_mut(DC_LANES);
    for c in &mut chunks {
        let d = [c[0] - x1, c[1] - c[0], c[2] - c[1], c[3] - c[2]];
        x1 = c[3];
        let w1 = d[1] + r * d[0];
        let w2 = d[2] + r * w1;
        let w3 = d[3] + r * w2;
        c[0] = d[0] + r * y1;
        c[1] = w1 + r2 * y1;
        c[2] = w2 + r3 * y1;
        y1 = w3 + r4 * y1;
        c[3] = y1;
    }
    let mut rest = [x1, y1];
    dc_block_with(chunks.into_remainder(), &mut rest, r);
    *state = rest;
}

/// Removes DC from `x` in place with a one-pole high-pass at [`DC_BLOCK_HZ`];
/// `state` holds the previous input and output.
#[inline]
pub fn dc_block(x: &mut [f32], state: &mut [f32; 2], sample_rate: f32) {
    dc_block_with(x, state, dc_block_pole(sample_rate));
}

#[inline]
fn dc_block_with(x: &mut [f32], state: &mut [f32; 2], r: f32) {
    let [mut x1, mut y1] = *state;
    for v in x.iter_mut() {
        let y = *v - x1 + r * y1;
        x1 = *v;
        y1 = if *v == 0.0 && y.abs() < DC_BLOCK_FLUSH { 0.0 } else { y };
        *v = y1;
    }
    *state = [x1, y1];
}

/// The fractional part of a non-negative `x` (as `f64::fract`, which on baseline x86-64
/// is a library call; a signed conversion truncates in one instruction).
#[inline]
pub fn fract_turns(x: f64) -> f64 {
    x - (x as i64) as f64
}

/// sin(2 pi `turns`) for an LFO or a slow pitch wander, without a library call: the
/// turn folded into a quarter cycle, then the Taylor series to the 13th power
/// (|error| < 1e-9 anywhere).
#[inline]
pub fn sin_turns(turns: f64) -> f64 {
    let mut r = turns - (turns as i64) as f64;
    if r > 0.5 {
        r -= 1.0;
    } else if r < -0.5 {
        r += 1.0;
    }
    // sin(pi - a) = sin(a): into -1/4..1/4 of a turn.
    if r > 0.25 {
        r = 0.5 - r;
    } else if r < -0.25 {
        r = -0.5 - r;
    }
    let a = r * std::f64::consts::TAU;
    let a2 = a * a;
    let p = 1.0 / 6_227_020_800.0;
    let p = a2 * p - 1.0 / 39_916_800.0;
    let p = a2 * p + 1.0 / 362_880.0;
    let p = a2 * p - 1.0 / 5040.0;
    let p = a2 * p + 1.0 / 120.0;
    let p = a2 * p - 1.0 / 6.0;
    a + a * a2 * p
}

/// Converts decibels to a linear gain.
#[inline]
pub fn db_to_gain(db: f32) -> f32 {
    10f32.powf(db / 20.0)
}

/// Converts a linear gain to decibels (-inf for 0).
#[inline]
pub fn gain_to_db(g: f32) -> f32 {
    20.0 * g.log10()
}

/// The per-sample multiplier that decays to -60 dB (x 0.001) over `seconds`.
#[inline]
pub fn t60_coef(seconds: f32, sample_rate: f32) -> f32 {
    if seconds <= 0.0 { 0.0 } else { (-6.907_755 / (seconds * sample_rate)).exp() }
}

/// Lanes of [`stereo_peak`]'s vector pass.
const PEAK_LANES: usize = 8;

/// The largest magnitude in `l` and `r`, and whether every sample of both is finite,
/// in one pass of vector code (eight running maxima, and a sum of `x * 0` that is 0
/// for finite samples and NaN otherwise). Over finite samples the peak is the one a
/// serial `f32::max` fold from 0 gives (a maximum does not round).
#[inline]
pub fn stereo_peak(l: &[f32], r: &[f32]) -> (f32, bool) {
    let mut peak = [0.0f32; PEAK_LANES];
    let mut nan = [0.0f32; PEAK_LANES];
    let (lc, rc) = (l.chunks_exact(PEAK_LANES), r.chunks_exact(PEAK_LANES));
    let (l_rest, r_rest) = (lc.remainder(), rc.remainder());
    for (a, b) in lc.zip(rc) {
        for j in 0..PEAK_LANES {
            let (x, y) = (a[j].abs(), b[j].abs());
            let m = if x > y { x } else { y };
            peak[j] = if m > peak[j] { m } else { peak[j] };
            nan[j] += a[j] * 0.0 + b[j] * 0.0;
        }
    }
    let (mut p, mut finite) = (0.0f32, true);
    for (&a, &b) in l_rest.iter().zip(r_rest) {
        finite &= a.is_finite() && b.is_finite();
        p = p.max(a.abs()).max(b.abs());
    }
    for j in 0..PEAK_LANES {
        finite &= nan[j] == 0.0;
        p = p.max(peak[j]);
    }
    (p, finite)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The vector peak is the serial one, and it sees a NaN or an infinity anywhere.
    #[test]
    fn stereo_peak_matches_a_serial_max_and_finds_non_finite_samples() {
        let mut seed = 7u32;
        for n in [0usize, 1, 7, 8, 9, 63, 64, 65] {
            let mut next = || {
                seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (seed >> 8) as f32 / (1u32 << 24) as f32 * 4.0 - 2.0
            };
            let l: Vec<f32> = (0..n).map(|_| next()).collect();
            let r: Vec<f32> = (0..n).map(|_| next()).collect();
            let serial = l.iter().chain(&r).fold(0.0f32, |m, x| m.max(x.abs()));
            assert_eq!(stereo_peak(&l, &r), (serial, true), "{n} samples");
            for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
                for at in 0..n {
                    let mut l2 = l.clone();
                    l2[at] = bad;
                    assert!(!stereo_peak(&l2, &r).1, "{bad} at {at} of {n}");
                    assert!(!stereo_peak(&r, &l2).1, "{bad} at {at} of {n}, right");
                }
            }
        }
    }

    /// The four-sample steps filter as the one-sample loop does, within 4e-6 of the
    /// peak over 10 s of a wave with DC, in blocks of several lengths; silence after
    /// the sound still comes out as exact zeros.
    #[test]
    fn dc_block_lanes_matches_the_serial_dc_blocker() {
        let sr = 48_000.0;
        let r = dc_block_pole(sr);
        for block in [64usize, 37, 4, 1] {
            let (mut a, mut b) = ([0.0f32; 2], [0.0f32; 2]);
            let (mut worst, mut peak) = (0.0f32, 0.0f32);
            let mut t = 0usize;
            while t < 480_000 {
                let x: Vec<f32> = (t..t + block)
                    .map(|i| 0.3 + 0.5 * (i as f32 * 0.013).sin() + 0.2 * (i as f32 * 0.31).sin())
                    .collect();
                let (mut u, mut v) = (x.clone(), x);
                dc_block(&mut u, &mut a, sr);
                dc_block_lanes(&mut v, &mut b, r);
                for (p, q) in u.iter().zip(&v) {
                    worst = worst.max((p - q).abs());
                    peak = peak.max(p.abs());
                }
                t += block;
            }
            assert!(worst <= 4e-6 * peak, "block {block}: {worst} of {peak}");
            // A constant input settles to 0 out.
            let mut tail = vec![0.3f32; 48_000];
            dc_block_lanes(&mut tail, &mut b, r);
            assert!(tail[47_999].abs() < 1e-4, "block {block}: {}", tail[47_999]);
            let mut quiet = vec![0.0f32; 48_000];
            dc_block_lanes(&mut quiet, &mut b, r);
            assert!(quiet[47_999] == 0.0, "block {block}: silence does not end in zeros");
        }
    }

    #[test]
    fn fast_tanh_is_close_and_bounded() {
        let mut x = -10.0f32;
        while x < 10.0 {
            let e = (fast_tanh(x) - x.tanh()).abs();
            assert!(e < 1e-5, "x={x} err={e}");
            assert!(fast_tanh(x).abs() <= 1.0);
            x += 0.01;
        }
        assert_eq!(fast_tanh(0.0), 0.0);
    }

    #[test]
    fn sin_turns_matches_the_library_sine() {
        let mut worst = 0.0f64;
        for i in -200_000..200_000 {
            let t = i as f64 * 0.000_173_1;
            worst = worst.max((sin_turns(t) - (t * std::f64::consts::TAU).sin()).abs());
        }
        assert!(worst < 1e-9, "{worst}");
        assert_eq!(sin_turns(0.0), 0.0);
        assert_eq!(sin_turns(0.5), 0.0);
        assert!((sin_turns(0.25) - 1.0).abs() < 1e-9 && (sin_turns(0.75) + 1.0).abs() < 1e-9);
    }

    #[test]
    fn fract_turns_is_fract() {
        for x in [0.0, 0.3, 1.0, 7.999, 12345.678] {
            assert_eq!(fract_turns(x), x.fract());
        }
    }

    #[test]
    fn t60_reaches_minus_60_db() {
        let c = t60_coef(0.5, 48000.0);
        let g = c.powi(24000);
        assert!((gain_to_db(g) + 60.0).abs() < 0.01);
    }
}
