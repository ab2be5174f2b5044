//! Band-limited wavetables: a sine table, and saw, square and triangle tables in
//! half-octave mip levels whose harmonics stop below Nyquist for the pitch that
//! reads them. Built once on the control thread (by inverse FFT); read-only after.

use rustfft::{FftPlanner, num_complex::Complex};
use std::f64::consts::PI;

/// log2 of the table length.
pub const TABLE_BITS: u32 = 11;
/// Samples per table (one cycle).
pub const TABLE_LEN: usize = 1 << TABLE_BITS;
const FRAC_BITS: u32 = 32 - TABLE_BITS;
const FRAC_MASK: u32 = (1 << FRAC_BITS) - 1;
const FRAC_SCALE: f32 = 1.0 / (1u32 << FRAC_BITS) as f32;
/// Mip levels: level k holds at most `MAX_HARMONICS / 2^(k/2)` harmonics.
const LEVELS: usize = 20;
const MAX_HARMONICS: usize = TABLE_LEN / 2 - 1;

/// Waveform shapes that have mip tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// Rising ramp, zero at phase 0, harmonics 1/n.
    Saw,
    /// +1 then -1, zero crossing at phase 0, odd harmonics 1/n.
    Square,
    /// Zero at phase 0, peak at 1/4 cycle, odd harmonics 1/n^2.
    Triangle,
}

/// One cycle, `TABLE_LEN + 1` samples (the last repeats the first for
/// interpolation). A fixed-size array, so that reads need no bounds checks.
pub type Table = [f32; TABLE_LEN + 1];

/// Floats between the starts of two mip levels in the shared allocation: a table
/// plus padding to the next multiple of 16 floats, plus one cache line more, so that
/// the same phase in different levels falls in different cache sets (voices reading
/// many levels at once would otherwise evict each other).
const STRIDE: usize = (TABLE_LEN + 1).div_ceil(16) * 16 + 16;

pub struct Wavetables {
    sine: Box<Table>,
    /// Every level of every shape, `STRIDE` apart: shape-major, level-minor.
    mips: Box<[f32]>,
    /// Per level, the harmonics it holds (the tests read them).
    #[cfg_attr(not(test), allow(dead_code))]
    harmonics: [usize; LEVELS],
    /// Per level, the highest increment it serves without harmonics above Nyquist
    /// ([`level_by_search`] finds the same levels by a search per call).
    limits: [u32; LEVELS],
    /// By bit length `b` (0 to 32), how many levels' highest increments are below
    /// the lowest increment of that length (`2^(b - 1)`, and 0 for `b` = 0).
    below: [u8; 33],
}

/// Reads a table at a 32-bit phase (one cycle = 2^32), linearly interpolated.
#[inline]
pub fn read(table: &Table, phase: u32) -> f32 {
    let i = (phase >> FRAC_BITS) as usize;
    // Through i32: a signed conversion is one instruction, an unsigned one is not.
    let frac = (phase & FRAC_MASK) as i32 as f32 * FRAC_SCALE;
    let a = table[i];
    a + (table[i + 1] - a) * frac
}

/// The 32-bit phase increment for `freq_hz` at `sample_rate`, rounded to the nearest
/// (as `f64::round`, which on baseline x86-64 is a library call: adding a half and
/// truncating is the same for these non-negative values and inlines).
#[inline]
pub fn phase_inc(freq_hz: f64, sample_rate: f64) -> u32 {
    let cycles = (freq_hz / sample_rate).clamp(0.0, 0.5);
    // At most 2^31 + 0.5: a signed conversion (one instruction) truncates it exactly.
    (cycles * 4_294_967_296.0 + 0.5) as i64 as u32
}

/// Level of the saw and square tables: their peaks, overshoot included, stay below 1.
const GIBBS: f64 = 0.84;

impl Wavetables {
    pub fn new() -> Self {
        let mut planner = FftPlanner::<f64>::new();
        let ifft = planner.plan_fft_inverse(TABLE_LEN);
        let mut harmonics = [0usize; LEVELS];
        for (k, h) in harmonics.iter_mut().enumerate() {
            *h = ((MAX_HARMONICS as f64) / 2f64.powf(k as f64 / 2.0)).floor().max(1.0) as usize;
        }
        let build = |coef: &dyn Fn(usize) -> f64, max_h: usize| -> Box<Table> {
            // x[n] = sum_h b_h sin(2 pi h n / N): X[h] = -i b_h / 2, X[N-h] = i b_h / 2.
            let mut spec = vec![Complex::new(0.0, 0.0); TABLE_LEN];
            for h in 1..=max_h.min(MAX_HARMONICS) {
                let b = coef(h);
                spec[h] = Complex::new(0.0, -b / 2.0);
                spec[TABLE_LEN - h] = Complex::new(0.0, b / 2.0);
            }
            ifft.process(&mut spec);
            let mut t = Box::new([0.0f32; TABLE_LEN + 1]);
            for (o, c) in t.iter_mut().zip(&spec) {
                *o = c.re as f32;
            }
            t[TABLE_LEN] = t[0];
            t
        };
        // Saw and square are scaled so that their Gibbs overshoot (about 18% of
        // full scale with every harmonic below Nyquist) stays within full scale.
        let saw = |h: usize| GIBBS * 2.0 / PI * if h % 2 == 1 { 1.0 } else { -1.0 } / h as f64;
        let square = |h: usize| {
            if h % 2 == 1 { GIBBS * 4.0 / (PI * h as f64) } else { 0.0 }
        };
        let triangle = |h: usize| {
            if h % 2 == 1 {
                let sign = if (h / 2).is_multiple_of(2) { 1.0 } else { -1.0 };
                8.0 / (PI * PI * (h * h) as f64) * sign
            } else {
                0.0
            }
        };
        let shapes: [&dyn Fn(usize) -> f64; 3] = [&saw, &square, &triangle];
        let mut mips = crate::dsp::zeroed(shapes.len() * LEVELS * STRIDE);
        for (s, f) in shapes.iter().enumerate() {
            for (k, &h) in harmonics.iter().enumerate() {
                let at = (s * LEVELS + k) * STRIDE;
                mips[at..at + TABLE_LEN + 1].copy_from_slice(&*build(*f, h));
            }
        }
        let limits = harmonics.map(highest_allowing);
        let below = std::array::from_fn(|b| {
            let lowest = if b == 0 { 0 } else { 1u32 << (b - 1) };
            limits.iter().filter(|&&l| l < lowest).count() as u8
        });
        Wavetables { sine: build(&|h| if h == 1 { 1.0 } else { 0.0 }, 1), mips, harmonics, limits, below }
    }

    #[inline]
    pub fn sine(&self) -> &Table {
        &self.sine
    }

    /// The richest table of `shape` with no harmonic above Nyquist at `inc`: the
    /// level [`level_by_search`] finds, from the levels' highest increments (the
    /// levels below the one chosen are those whose highest is below `inc`). The
    /// count starts at the levels below every increment of `inc`'s bit length, so at
    /// most about two levels (half an octave each) are compared.
    #[inline]
    pub fn table(&self, shape: Shape, inc: u32) -> &Table {
        let base = shape as usize * LEVELS * STRIDE;
        let mut k = self.below[(u32::BITS - inc.leading_zeros()) as usize] as usize;
        while k < LEVELS && self.limits[k] < inc {
            k += 1;
        }
        let at = base + k.min(LEVELS - 1) * STRIDE;
        self.mips[at..at + TABLE_LEN + 1].try_into().expect("a level is TABLE_LEN + 1 long")
    }
}

/// The harmonics allowed at `inc`: those below Nyquist, counted as the first search
/// for a level did (in `f32`; no harmonic is above Nyquist at an increment of 0).
#[inline]
fn allowed(inc: u32) -> usize {
    let cycles = inc as f32 * (1.0 / 4_294_967_296.0);
    if cycles > 0.0 { (0.5 / cycles) as usize } else { usize::MAX }
}

/// The highest increment at which `harmonics` are allowed ([`allowed`] falls as the
/// increment grows, so those increments run from 0 to this one).
fn highest_allowing(harmonics: usize) -> u32 {
    let (mut lo, mut hi) = (0u32, u32::MAX);
    if harmonics <= allowed(hi) {
        return hi;
    }
    // allowed(lo) >= harmonics > allowed(hi).
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if harmonics <= allowed(mid) { lo = mid } else { hi = mid }
    }
    lo
}

/// The level the first search chose: the first whose harmonics are allowed at `inc`,
/// else the last (what [`Wavetables::table`] must choose).
#[cfg(test)]
fn level_by_search(harmonics: &[usize; LEVELS], inc: u32) -> usize {
    harmonics.iter().position(|&h| h <= allowed(inc)).unwrap_or(LEVELS - 1)
}

impl Default for Wavetables {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_have_expected_values() {
        let w = Wavetables::new();
        let sine = w.sine();
        assert!(sine[0].abs() < 1e-6);
        assert!((sine[TABLE_LEN / 4] - 1.0).abs() < 1e-6);
        let tri = w.table(Shape::Triangle, phase_inc(50.0, 48000.0));
        assert!((tri[TABLE_LEN / 4] - 1.0).abs() < 0.01);
        let saw = w.table(Shape::Saw, phase_inc(50.0, 48000.0));
        assert!(saw[0].abs() < 1e-6);
        assert!((saw[TABLE_LEN / 4] - 0.5 * GIBBS as f32).abs() < 0.02);
        let peak = saw.iter().fold(0.0f32, |m, x| m.max(x.abs()));
        assert!(peak <= 1.0 && peak > 0.95, "saw peak {peak}");
    }

    #[test]
    fn high_notes_get_few_harmonics() {
        let w = Wavetables::new();
        let inc = phase_inc(4000.0, 48000.0); // 6 harmonics fit below Nyquist
        let t = w.table(Shape::Saw, inc);
        let idx = (0..LEVELS).position(|k| std::ptr::eq(&w.mips[k * STRIDE], &t[0])).unwrap();
        assert!(w.harmonics[idx] <= 6);
        assert!(w.harmonics[idx] >= 4);
    }

    #[test]
    fn phase_inc_rounds_as_round_does() {
        let mut hz = 0.01f64;
        while hz < 30_000.0 {
            for sr in [44_100.0, 48_000.0, 96_000.0] {
                let cycles = (hz / sr).clamp(0.0, 0.5);
                let want = (cycles * 4_294_967_296.0).round().min(u32::MAX as f64) as u32;
                assert_eq!(phase_inc(hz, sr), want, "{hz} Hz at {sr}");
            }
            hz *= 1.000_37;
        }
        assert_eq!(phase_inc(24_000.0, 48_000.0), 1 << 31);
        assert_eq!(phase_inc(-5.0, 48_000.0), 0);
    }

    #[test]
    fn levels_are_the_ones_the_search_finds() {
        let w = Wavetables::new();
        let level = |inc: u32| {
            let t = w.table(Shape::Saw, inc);
            (0..LEVELS).position(|k| std::ptr::eq(&w.mips[k * STRIDE], &t[0])).expect("a saw level")
        };
        let mut incs: Vec<u32> = vec![0, 1, 2, 3, u32::MAX, u32::MAX - 1, 1 << 31, (1 << 31) + 1, (1 << 31) - 1];
        for &l in &w.limits {
            incs.extend([l.saturating_sub(1), l, l.saturating_add(1), l.saturating_add(2)]);
        }
        let mut inc = 1u64;
        while inc <= u32::MAX as u64 {
            incs.push(inc as u32);
            inc = inc * 1001 / 1000 + 1;
        }
        for sr in [44_100.0, 48_000.0, 96_000.0] {
            let mut hz = 1.0;
            while hz < 30_000.0 {
                incs.push(phase_inc(hz, sr));
                hz *= 1.0007;
            }
        }
        for inc in incs {
            assert_eq!(level(inc), level_by_search(&w.harmonics, inc), "inc {inc}");
        }
        for shape in [Shape::Square, Shape::Triangle] {
            let base = shape as usize * LEVELS * STRIDE;
            let inc = phase_inc(440.0, 48_000.0);
            let k = level_by_search(&w.harmonics, inc);
            assert!(std::ptr::eq(&w.table(shape, inc)[0], &w.mips[base + k * STRIDE]));
        }
    }

    #[test]
    fn interpolated_read() {
        let w = Wavetables::new();
        let v = read(w.sine(), 1 << 30); // a quarter cycle
        assert!((v - 1.0).abs() < 1e-5);
    }
}
