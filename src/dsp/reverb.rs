//! Stereo reverb, run by the channel bus on the audio thread: input diffusion (four
//! Schroeder all-passes) into an eight-line feedback delay network with prime line
//! lengths, slowly modulated read taps, a Hadamard mixing matrix and per-line damping.
//! The decay time (to -60 dB) and the damping can move at any time without clearing
//! the tail.
//!
//! - No audible periodicity: the Hadamard matrix sends every line into every other
//!   one at equal weight (a Householder matrix of eight lines keeps three quarters of
//!   each line in itself, which repeats that line's period), the lengths are primes,
//!   and each read tap wanders by a fraction of a millisecond at its own slow rate, so
//!   the modes move and no echo pattern repeats. The outputs read the lines through
//!   bent sign patterns, whose Hadamard transform is flat: no line's own loop stands
//!   out in what is heard (a Hadamard row as the output would bring one line's
//!   period back at a third of the level).
//! - Decorrelated, balanced stereo: left and right read two orthogonal combinations
//!   of the lines, so a diffuse tail is uncorrelated between them at equal energy. A pure tone excites only the few modes near it,
//!   and those can favour one side; the side signal is therefore kept orthogonal to
//!   the mid: its part in phase with the mid (tracked over [`BALANCE_SECONDS`]) is
//!   taken out. Left and right then carry the same energy whatever the note, and the
//!   mid (the mono sum) is untouched.

const LINES: usize = 16;
/// Nominal line lengths; each is rounded to a prime number of samples at the rate.
const LINE_MS: [f32; LINES] =
    [30.1, 57.3, 21.7, 72.8, 40.3, 24.3, 48.3, 78.5, 19.1, 62.2, 33.3, 44.2, 67.3, 27.1, 52.7, 36.7];
/// Peak excursion of the modulated read taps.
const MOD_MS: f32 = 0.7;
/// Rates of the taps' modulation (each line its own, none a multiple of another).
/// At most 2 pi x 0.71 Hz x 0.7 ms = 0.31 % of pitch (5 cents) in the tail.
const MOD_HZ: [f32; LINES] =
    [0.23, 0.26, 0.29, 0.31, 0.34, 0.37, 0.41, 0.43, 0.47, 0.51, 0.53, 0.57, 0.61, 0.64, 0.67, 0.71];
const DIFFUSER_MS: [f32; 4] = [4.77, 3.59, 2.73, 1.91];
const DIFFUSION: f32 = 0.6;
/// High-frequency damping inside the loop by default (one-pole coefficient, 0 = none).
pub const DEFAULT_DAMPING: f32 = 0.35;
/// Output scale giving a wet level comparable to the dry signal.
const WET_GAIN: f32 = 0.3;
/// Time constant of the mid/side balance tracking.
const BALANCE_SECONDS: f32 = 0.004;
/// Longest block [`Reverb::process`] takes.
pub const MAX_BLOCK: usize = 64;
/// Signs of the diffused input into each line, and of the lines read by the left and
/// right outputs: bent patterns (sign of `x1 x2 + x3 x4` and such over the index's
/// bits), whose Hadamard transforms are flat; left and right are orthogonal.
const INPUT_SIGN: [f32; LINES] = [1., 1., -1., -1., 1., 1., 1., 1., 1., -1., -1., 1., 1., -1., 1., -1.];
const LEFT: [f32; LINES] = [1., 1., 1., -1., 1., 1., 1., -1., 1., 1., 1., -1., -1., -1., -1., 1.];
const RIGHT: [f32; LINES] = [1., -1., 1., -1., 1., 1., 1., 1., 1., -1., -1., 1., 1., 1., -1., -1.];

#[derive(Clone)]
struct Ring {
    buf: Box<[f32]>,
    pos: usize,
}

impl Ring {
    fn new(len: usize) -> Self {
        Ring { buf: super::zeroed(len.max(1)), pos: 0 }
    }
}

/// The smallest prime at or above `n`.
fn prime_at_least(n: usize) -> usize {
    let is_prime = |k: usize| k >= 2 && (2..).take_while(|d| d * d <= k).all(|d| !k.is_multiple_of(d));
    (n.max(2)..).find(|&k| is_prime(k)).unwrap_or(n)
}

/// The 16-point fast Walsh-Hadamard transform of every column of `x` (line-major:
/// `x[line][sample]`), scaled to be orthonormal: the same operations, in the same
/// order, as [`hadamard`] on each sample's lines.
#[inline(always)]
fn hadamard_rows(x: &mut [[f32; MAX_BLOCK]; LINES]) {
    let mut h = 1;
    while h < LINES {
        for i in (0..LINES).step_by(2 * h) {
            for j in i..i + h {
                let (lo, hi) = x.split_at_mut(j + h);
                let (a, b) = (&mut lo[j], &mut hi[0]);
                for t in 0..MAX_BLOCK {
                    let (u, v) = (a[t], b[t]);
                    a[t] = u + v;
                    b[t] = u - v;
                }
            }
        }
        h *= 2;
    }
    for row in x.iter_mut() {
        for v in row.iter_mut() {
            *v *= 0.25;
        }
    }
}

/// The 16-point fast Walsh-Hadamard transform, scaled to be orthonormal.
#[cfg(test)]
fn hadamard(mut x: [f32; LINES]) -> [f32; LINES] {
    let mut h = 1;
    while h < LINES {
        for i in (0..LINES).step_by(2 * h) {
            for j in i..i + h {
                let (a, b) = (x[j], x[j + h]);
                x[j] = a + b;
                x[j + h] = a - b;
            }
        }
        h *= 2;
    }
    x.map(|v| v * 0.25)
}

#[derive(Clone)]
pub struct Reverb {
    /// The lines, each `size` samples in one buffer, sharing one write position.
    lines: Box<[f32]>,
    size: usize,
    write: usize,
    /// Nominal delay of each line, samples (a prime).
    lens: [f32; LINES],
    /// Peak excursion of the read taps, samples.
    excursion: f32,
    /// Modulation phases (one cycle = 2^32) and their increments per sample.
    mod_phase: [u32; LINES],
    mod_inc: [u32; LINES],
    diffusers: [Ring; 4],
    damp: [f32; LINES],
    gains: [f32; LINES],
    decay_s: f32,
    /// High-frequency damping in the loop (0 = none, towards 1 = dark).
    damping: f32,
    sample_rate: f32,
    /// Mid/side balance: smoothed mid power and mid-side product, and their pole.
    mid_power: f32,
    mid_side: f32,
    balance_pole: f32,
    /// Scratch for one block: the diffused input.
    s: [f32; MAX_BLOCK],
    /// Scratch for one block: the lines' outputs, line-major, then their damped
    /// feedback (what [`Reverb::prepare`] leaves for [`Reverb::finish`]).
    xs: [[f32; MAX_BLOCK]; LINES],
    /// Frames of the block [`Reverb::prepare`] made ready (0: none). Any change of
    /// the settings or the state before [`Reverb::finish`] sets it back to 0.
    prepared: usize,
    /// The prepared block's wet output.
    wet_l: [f32; MAX_BLOCK],
    wet_r: [f32; MAX_BLOCK],
    /// The modulation phases, damping state and balance after the prepared block:
    /// kept aside until [`Reverb::finish`], so that preparing again gives the same.
    next_phase: [u32; LINES],
    next_damp: [f32; LINES],
    next_mid_power: f32,
    next_mid_side: f32,
}

/// One frame of the wet output from its `mid` and `side`: the side kept orthogonal to
/// the mid (equal energy left and right) by the running mid power `mp` and mid-side
/// correlation `ms`, smoothed by `pole`. Returns left and right.
#[inline(always)]
fn balance(mid: f32, side: f32, mp: &mut f32, ms: &mut f32, pole: f32) -> (f32, f32) {
    *mp += (mid * mid - *mp) * pole;
    *ms += (mid * side - *ms) * pole;
    let side = side - mid * (*ms / (*mp + 1e-12)).clamp(-4.0, 4.0);
    ((mid + side) * WET_GAIN, (mid - side) * WET_GAIN)
}

impl Reverb {
    pub fn new(sample_rate: f32) -> Self {
        let lens = LINE_MS.map(|ms| prime_at_least((ms * 0.001 * sample_rate).round() as usize) as f32);
        let excursion = MOD_MS * 0.001 * sample_rate;
        let longest = lens.iter().fold(0.0f32, |m, &l| m.max(l));
        let size = ((longest + excursion).ceil() as usize + MAX_BLOCK + 4).next_power_of_two();
        let mut r = Reverb {
            lines: super::zeroed(LINES * size),
            size,
            write: 0,
            lens,
            excursion,
            mod_phase: std::array::from_fn(|k| (k as u32) << 29),
            mod_inc: MOD_HZ.map(|hz| (hz as f64 / sample_rate as f64 * 4_294_967_296.0) as u32),
            diffusers: DIFFUSER_MS.map(|ms| Ring::new(((ms * 0.001 * sample_rate).round() as usize).max(1))),
            damp: [0.0; LINES],
            gains: [0.0; LINES],
            decay_s: 0.0,
            damping: DEFAULT_DAMPING,
            sample_rate,
            mid_power: 0.0,
            mid_side: 0.0,
            balance_pole: 1.0 - (-1.0 / (BALANCE_SECONDS * sample_rate)).exp(),
            s: [0.0; MAX_BLOCK],
            xs: [[0.0; MAX_BLOCK]; LINES],
            prepared: 0,
            wet_l: [0.0; MAX_BLOCK],
            wet_r: [0.0; MAX_BLOCK],
            next_phase: [0; LINES],
            next_damp: [0.0; LINES],
            next_mid_power: 0.0,
            next_mid_side: 0.0,
        };
        r.set_decay(1.0);
        r
    }

    /// Sets the time for the tail to fall by 60 dB.
    pub fn set_decay(&mut self, seconds: f32) {
        if seconds == self.decay_s {
            return;
        }
        self.decay_s = seconds;
        self.prepared = 0;
        for (g, len) in self.gains.iter_mut().zip(self.lens) {
            *g = 10f32.powf(-3.0 * len / (seconds.max(0.05) * self.sample_rate));
        }
    }

    /// Sets the high-frequency damping inside the loop (0 = bright .. 0.9 = dark).
    pub fn set_damping(&mut self, damping: f32) {
        let damping = damping.clamp(0.0, 0.9);
        if damping != self.damping {
            self.damping = damping;
            self.prepared = 0;
        }
    }

    /// Processes mono input `x` (at most [`MAX_BLOCK`] samples) into stereo wet output:
    /// [`Reverb::prepare`] and [`Reverb::finish`] in one.
    ///
    /// Every line is longer than a block, so a block's reads all see samples written
    /// before it: the lines are read for the whole block first, then mixed and
    /// written back. Each stage runs over the block as plain fixed-length loops
    /// (vector code), with the same operations in the same order as a sample-by-sample
    /// loop: the output does not depend on the block size. Dispatches to a build of
    /// the same code for AVX2 where the processor has it (the same output, bit for bit).
    pub fn process(&mut self, x: &[f32], out_l: &mut [f32], out_r: &mut [f32]) {
        let n = x.len().min(MAX_BLOCK).min(out_l.len()).min(out_r.len());
        if n == 0 {
            return;
        }
        self.prepared = 0;
        self.finish(&x[..n], &mut out_l[..n], &mut out_r[..n]);
    }

    /// The part of a block of `n` frames that needs none of its input: the lines'
    /// reads, the wet output, the mixing matrix and the damped feedback. It changes
    /// nothing [`Reverb::finish`] does not commit, so it can run on any thread before
    /// the input is known (while the sends are still being made), and running it
    /// again gives the same.
    pub fn prepare(&mut self, n: usize) {
        let n = n.min(MAX_BLOCK);
        if n == 0 {
            return;
        }
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the processor has AVX2 (checked just above).
            unsafe { self.prepare_avx2(n) };
            self.prepared = n;
            return;
        }
        self.prepare_body(n);
        self.prepared = n;
    }

    /// The rest of the block: diffuses input `x` into the lines with their feedback,
    /// and gives the block's wet output. Prepares the block first unless
    /// [`Reverb::prepare`] has, for as many frames, with the settings unchanged since.
    pub fn finish(&mut self, x: &[f32], out_l: &mut [f32], out_r: &mut [f32]) {
        let n = x.len().min(MAX_BLOCK).min(out_l.len()).min(out_r.len());
        if n == 0 {
            return;
        }
        if self.prepared != n {
            self.prepare(n);
        }
        self.prepared = 0;
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the processor has AVX2 (checked just above).
            unsafe { self.finish_avx2(&x[..n]) };
        } else {
            self.finish_body(&x[..n]);
        }
        #[cfg(not(target_arch = "x86_64"))]
        self.finish_body(&x[..n]);
        out_l[..n].copy_from_slice(&self.wet_l[..n]);
        out_r[..n].copy_from_slice(&self.wet_r[..n]);
    }

    /// The AVX2 build: the lines' reads as in [`Reverb::prepare_body`], then the rest
    /// in one pass ([`Reverb::mix_damp_balance_avx2`]).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    fn prepare_avx2(&mut self, n: usize) {
        self.read_lines(n);
        self.mix_damp_balance_avx2(n);
    }

    /// The left and right sums, the mixing matrix, the damping and feedback gains
    /// and the mid/side balance of [`Reverb::prepare_body`], written out for AVX2 in
    /// one pass over the block, eight frames at a time: the sixteen lines' eight
    /// frames are loaded once as sixteen vectors, summed into left and right and
    /// mixed by the matrix in registers, then turned from rows into columns (an 8x8
    /// transpose for each eight lines, moves only), so that each frame's damping is
    /// one vector step for eight lines (the compiler's build moved every value in and
    /// out of a vector one at a time). The balance's two recursions run between the
    /// damping's: the time goes on these chains of dependent operations, and the
    /// loads, sums, matrix and transposes of the next frames run beside them. The
    /// same operations on the same values in the same order: the output is the same
    /// bit for bit.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    fn mix_damp_balance_avx2(&mut self, n: usize) {
        use std::arch::x86_64::*;
        let n = n.min(MAX_BLOCK);
        let g = self.gains;
        let a = 1.0 - self.damping;
        let (mut mp, mut ms, pole) = (self.mid_power, self.mid_side, self.balance_pole);
        let (out_l, out_r) = (&mut self.wet_l, &mut self.wet_r);
        let xs = &mut self.xs;
        let mut damp = self.damp;
        // SAFETY: AVX2 is enabled for this function; every load and store is of
        // `xs[k][base..base + 8]` with k < LINES and base + 8 <= MAX_BLOCK (base is a
        // multiple of eight below MAX_BLOCK, itself a multiple of eight), or of an
        // array of sixteen or eight floats, whole or in halves of eight.
        unsafe {
            let (g0, g1) = (_mm256_loadu_ps(g.as_ptr()), _mm256_loadu_ps(g.as_ptr().add(8)));
            let (mut d0, mut d1) = (_mm256_loadu_ps(damp.as_ptr()), _mm256_loadu_ps(damp.as_ptr().add(8)));
            let (av, half, quarter) = (_mm256_set1_ps(a), _mm256_set1_ps(0.5), _mm256_set1_ps(0.25));
            for base in (0..n).step_by(8) {
                let mut v: [__m256; LINES] = std::array::from_fn(|k| _mm256_loadu_ps(xs[k][base..].as_ptr()));
                // Left and right, summed over the lines in order.
                let (mut l, mut r) = (_mm256_setzero_ps(), _mm256_setzero_ps());
                for k in 0..LINES {
                    l = _mm256_add_ps(l, _mm256_mul_ps(_mm256_set1_ps(LEFT[k]), v[k]));
                    r = _mm256_add_ps(r, _mm256_mul_ps(_mm256_set1_ps(RIGHT[k]), v[k]));
                }
                let (mut mid, mut side) = ([0.0f32; 8], [0.0f32; 8]);
                _mm256_storeu_ps(mid.as_mut_ptr(), _mm256_mul_ps(half, _mm256_add_ps(l, r)));
                _mm256_storeu_ps(side.as_mut_ptr(), _mm256_mul_ps(half, _mm256_sub_ps(l, r)));
                // The mixing matrix: the butterflies of `hadamard_rows`, in its order.
                let mut h = 1;
                while h < LINES {
                    for i in (0..LINES).step_by(2 * h) {
                        for j in i..i + h {
                            let (u, w) = (v[j], v[j + h]);
                            v[j] = _mm256_add_ps(u, w);
                            v[j + h] = _mm256_sub_ps(u, w);
                        }
                    }
                    h *= 2;
                }
                for x in v.iter_mut() {
                    *x = _mm256_mul_ps(*x, quarter);
                }
                let (mut c0, mut c1) = (super::transpose8(&v[..8]), super::transpose8(&v[8..]));
                for j in 0..(n - base).min(8) {
                    d0 = _mm256_add_ps(d0, _mm256_mul_ps(_mm256_sub_ps(_mm256_mul_ps(c0[j], g0), d0), av));
                    d1 = _mm256_add_ps(d1, _mm256_mul_ps(_mm256_sub_ps(_mm256_mul_ps(c1[j], g1), d1), av));
                    c0[j] = d0;
                    c1[j] = d1;
                    (out_l[base + j], out_r[base + j]) = balance(mid[j], side[j], &mut mp, &mut ms, pole);
                }
                let (c0, c1) = (super::transpose8(&c0), super::transpose8(&c1));
                for k in 0..8 {
                    _mm256_storeu_ps(xs[k][base..].as_mut_ptr(), c0[k]);
                    _mm256_storeu_ps(xs[8 + k][base..].as_mut_ptr(), c1[k]);
                }
            }
            _mm256_storeu_ps(damp.as_mut_ptr(), d0);
            _mm256_storeu_ps(damp.as_mut_ptr().add(8), d1);
        }
        self.next_damp = damp;
        self.next_mid_power = mp;
        self.next_mid_side = ms;
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    fn finish_avx2(&mut self, x: &[f32]) {
        self.finish_body(x);
    }

    /// [`Reverb::process`] without the AVX2 build (tests compare the two).
    #[cfg(test)]
    fn process_body(&mut self, x: &[f32], out_l: &mut [f32], out_r: &mut [f32]) {
        let n = x.len();
        self.prepare_body(n);
        self.finish_body(x);
        out_l[..n].copy_from_slice(&self.wet_l[..n]);
        out_r[..n].copy_from_slice(&self.wet_r[..n]);
    }

    #[inline(always)]
    fn prepare_body(&mut self, n: usize) {
        self.read_lines(n);
        // Left and right: two orthogonal sign patterns over the lines.
        let (mut l, mut r) = ([0.0f32; MAX_BLOCK], [0.0f32; MAX_BLOCK]);
        for (k, row) in self.xs.iter().enumerate() {
            for t in 0..MAX_BLOCK {
                l[t] += LEFT[k] * row[t];
                r[t] += RIGHT[k] * row[t];
            }
        }
        let (mut mp, mut ms, pole) = (self.mid_power, self.mid_side, self.balance_pole);
        for t in 0..n {
            let (mid, side) = (0.5 * (l[t] + r[t]), 0.5 * (l[t] - r[t]));
            (self.wet_l[t], self.wet_r[t]) = balance(mid, side, &mut mp, &mut ms, pole);
        }
        self.next_mid_power = mp;
        self.next_mid_side = ms;
        let xs = &mut self.xs;
        // The mixing matrix, one butterfly stage at a time over whole rows.
        hadamard_rows(xs);
        // Damping and the feedback gains (sixteen independent recursions side by
        // side), in place.
        let g = self.gains;
        let a = 1.0 - self.damping;
        let mut damp = self.damp;
        #[allow(clippy::needless_range_loop)] // a column at a time, across the rows
        for t in 0..n {
            for k in 0..LINES {
                damp[k] += (xs[k][t] * g[k] - damp[k]) * a;
                xs[k][t] = damp[k];
            }
        }
        self.next_damp = damp;
    }

    /// The lines' reads for a block of `n` frames into `xs` (line-major), and the
    /// next modulation phases.
    #[inline(always)]
    fn read_lines(&mut self, n: usize) {
        let mask = self.size - 1;
        let size = self.size;
        let w0 = self.write;
        // The lines' outputs for the block, line-major: xs[k][t].
        let xs = &mut self.xs;
        for (k, row) in xs.iter_mut().enumerate() {
            // The tap's delay per sample: a parabolic sine of its phase, split into a
            // whole number of samples and a fraction (whole arrays: vector code).
            let (len, excursion, inc) = (self.lens[k], self.excursion, self.mod_inc[k]);
            let mut whole = [0i32; MAX_BLOCK];
            let mut frac = [0.0f32; MAX_BLOCK];
            let phase0 = self.mod_phase[k];
            for t in 0..MAX_BLOCK {
                let ph = phase0.wrapping_add(inc.wrapping_mul(t as u32));
                let p = ph as i32 as f32 * (1.0 / 2_147_483_648.0);
                let d = len - excursion * 4.0 * p * (1.0 - p.abs());
                // SAFETY: `d` is finite and within 0..2^31 (a line length give or
                // take the excursion), so truncating it to an i32 is defined.
                whole[t] = unsafe { d.to_int_unchecked::<i32>() };
                frac[t] = d - whole[t] as f32;
            }
            self.next_phase[k] = phase0.wrapping_add(inc.wrapping_mul(n as u32));
            let line = &self.lines[k * size..(k + 1) * size];
            let (lo, hi) = whole[..n].iter().fold((i32::MAX, i32::MIN), |(a, b), &v| (a.min(v), b.max(v)));
            let start = (w0 as i32).wrapping_sub(lo) as usize & mask;
            if lo == hi && start >= 1 && start + n <= size {
                // The tap stays on one whole delay through the block (nearly always:
                // it moves by a fifth of a sample per block at most): the reads are
                // two contiguous runs.
                let (now, older) = (&line[start..start + n], &line[start - 1..start - 1 + n]);
                for t in 0..n {
                    row[t] = now[t] + (older[t] - now[t]) * frac[t];
                }
            } else if hi == lo + 1 && start >= 2 && start + n <= size {
                // The tap crosses to the next whole delay within the block (a block in
                // five or so): the frames on either side read two runs one sample
                // apart, so three contiguous runs and a choice per frame.
                let (now, older, oldest) =
                    (&line[start..start + n], &line[start - 1..start - 1 + n], &line[start - 2..start - 2 + n]);
                for t in 0..n {
                    let near = whole[t] == lo;
                    let y0 = if near { now[t] } else { older[t] };
                    let y1 = if near { older[t] } else { oldest[t] };
                    row[t] = y0 + (y1 - y0) * frac[t];
                }
            } else {
                for t in 0..n {
                    let r0 = (w0 as i32).wrapping_add(t as i32).wrapping_sub(whole[t]) as usize & mask;
                    let r1 = r0.wrapping_sub(1) & mask;
                    let (y0, y1) = (line[r0], line[r1]);
                    row[t] = y0 + (y1 - y0) * frac[t];
                }
            }
        }
    }

    #[inline(always)]
    fn finish_body(&mut self, x: &[f32]) {
        let n = x.len();
        let Reverb { s, diffusers, .. } = self;
        // Diffuse the input: Schroeder all-passes, in place in their rings.
        s[..n].copy_from_slice(x);
        for d in diffusers.iter_mut() {
            // Each sample reads and rewrites its own slot: any split of the block into
            // wrap-free segments gives the same result.
            let mut done = 0;
            while done < n {
                let seg = (d.buf.len() - d.pos).min(n - done);
                let ring = &mut d.buf[d.pos..d.pos + seg];
                for (v, slot) in s[done..done + seg].iter_mut().zip(ring.iter_mut()) {
                    let delayed = *slot;
                    let w = *v + DIFFUSION * delayed;
                    *slot = w;
                    *v = delayed - DIFFUSION * w;
                }
                d.pos = (d.pos + seg) % d.buf.len();
                done += seg;
            }
        }
        // The lines take their damped feedback and the diffused input: contiguous
        // runs, split where the ring wraps.
        let (size, w0) = (self.size, self.write);
        let first = n.min(size - w0);
        for (k, row) in self.xs.iter().enumerate() {
            let line = &mut self.lines[k * size..(k + 1) * size];
            let sign = INPUT_SIGN[k];
            for (o, (v, x)) in line[w0..w0 + first].iter_mut().zip(row[..first].iter().zip(&s[..first])) {
                *o = v + sign * x;
            }
            for (o, (v, x)) in line[..n - first].iter_mut().zip(row[first..n].iter().zip(&s[first..n])) {
                *o = v + sign * x;
            }
        }
        self.write = (w0 + n) & (size - 1);
        self.mod_phase = self.next_phase;
        self.damp = self.next_damp;
        self.mid_power = self.next_mid_power;
        self.mid_side = self.next_mid_side;
    }

    pub fn clear(&mut self) {
        self.lines.fill(0.0);
        for r in self.diffusers.iter_mut() {
            r.buf.fill(0.0);
        }
        self.damp = [0.0; LINES];
        self.mid_power = 0.0;
        self.mid_side = 0.0;
        self.prepared = 0;
    }

    /// Frames [`Reverb::prepare`] made ready and [`Reverb::finish`] will use (0: none).
    pub fn prepared_frames(&self) -> usize {
        self.prepared
    }

    pub fn is_finite(&self) -> bool {
        self.damp.iter().all(|v| v.is_finite()) && self.mid_side.is_finite() && self.mid_power.is_finite()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tail_energy(decay: f32, from_s: f32, to_s: f32, block: usize) -> f32 {
        let sr = 48000.0;
        let mut r = Reverb::new(sr);
        r.set_decay(decay);
        let mut e = 0.0;
        let total = (to_s * sr) as usize;
        let (mut l, mut rr) = (vec![0.0; block], vec![0.0; block]);
        let mut n = 0;
        while n < total {
            let x: Vec<f32> = (n..n + block).map(|i| if i == 0 { 1.0 } else { 0.0 }).collect();
            r.process(&x, &mut l, &mut rr);
            for i in 0..block {
                if (n + i) as f32 >= from_s * sr {
                    e += l[i] * l[i] + rr[i] * rr[i];
                }
            }
            n += block;
        }
        e
    }

    #[test]
    fn longer_decay_longer_tail() {
        let short = tail_energy(0.5, 0.5, 1.5, 32);
        let long = tail_energy(3.0, 0.5, 1.5, 32);
        assert!(long > short * 100.0, "short {short} long {long}");
    }

    #[test]
    fn decays_about_60_db_in_decay_time() {
        let early = tail_energy(1.0, 0.1, 0.2, 32);
        let late = tail_energy(1.0, 1.1, 1.2, 32);
        let drop_db = 10.0 * (late / early).log10();
        assert!((-75.0..-50.0).contains(&drop_db), "{drop_db}");
    }

    #[test]
    fn block_size_does_not_matter() {
        let a = tail_energy(1.5, 0.0, 0.5, 32);
        let b = tail_energy(1.5, 0.0, 0.5, 16);
        assert!((a - b).abs() <= 1e-6 * a, "{a} {b}");
    }

    /// The reverb sample by sample, one line at a time: what the block code must
    /// equal bit for bit.
    fn reference_process(rv: &mut Reverb, x: &[f32], out_l: &mut [f32], out_r: &mut [f32]) {
        let n = x.len();
        let mut s = x.to_vec();
        for d in rv.diffusers.iter_mut() {
            for v in s.iter_mut() {
                let delayed = d.buf[d.pos];
                let w = *v + DIFFUSION * delayed;
                d.buf[d.pos] = w;
                *v = delayed - DIFFUSION * w;
                d.pos = (d.pos + 1) % d.buf.len();
            }
        }
        let (size, mask) = (rv.size, rv.size - 1);
        let a = 1.0 - rv.damping;
        #[allow(clippy::needless_range_loop)] // the lines by index, as the taps are
        for i in 0..n {
            let mut xs = [0.0f32; LINES];
            for k in 0..LINES {
                let p = rv.mod_phase[k] as i32 as f32 * (1.0 / 2_147_483_648.0);
                rv.mod_phase[k] = rv.mod_phase[k].wrapping_add(rv.mod_inc[k]);
                let d = rv.lens[k] - rv.excursion * 4.0 * p * (1.0 - p.abs());
                let whole = d as usize;
                let frac = d - whole as f32;
                let r0 = (rv.write + size - whole) & mask;
                let r1 = (r0 + size - 1) & mask;
                let (y0, y1) = (rv.lines[k * size + r0], rv.lines[k * size + r1]);
                xs[k] = y0 + (y1 - y0) * frac;
            }
            let (mut l, mut r) = (0.0f32, 0.0f32);
            for k in 0..LINES {
                l += LEFT[k] * xs[k];
                r += RIGHT[k] * xs[k];
            }
            let (mid, side) = (0.5 * (l + r), 0.5 * (l - r));
            rv.mid_power += (mid * mid - rv.mid_power) * rv.balance_pole;
            rv.mid_side += (mid * side - rv.mid_side) * rv.balance_pole;
            let side = side - mid * (rv.mid_side / (rv.mid_power + 1e-12)).clamp(-4.0, 4.0);
            out_l[i] = (mid + side) * WET_GAIN;
            out_r[i] = (mid - side) * WET_GAIN;
            let v = hadamard(xs);
            for (k, &v) in v.iter().enumerate() {
                rv.damp[k] += (v * rv.gains[k] - rv.damp[k]) * a;
                rv.lines[k * size + rv.write] = rv.damp[k] + INPUT_SIGN[k] * s[i];
            }
            rv.write = (rv.write + 1) & mask;
        }
    }

    #[test]
    fn block_code_equals_the_sample_by_sample_reverb_bit_for_bit() {
        for sr in [44_100.0, 48_000.0] {
            let (mut fast, mut slow, mut plain) = (Reverb::new(sr), Reverb::new(sr), Reverb::new(sr));
            let mut seed = 1u32;
            let mut noise = || {
                seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (seed >> 8) as f32 / (1 << 23) as f32 - 1.0
            };
            let blocks = [64usize, 64, 17, 1, 64, 33, 64, 5];
            let mut done = 0usize;
            for step in 0..4000 {
                let n = blocks[step % blocks.len()];
                if step == 1500 {
                    for r in [&mut fast, &mut slow, &mut plain] {
                        r.set_decay(3.5);
                        r.set_damping(0.7);
                    }
                }
                // Input for the first second, then the tail alone.
                let x: Vec<f32> = (0..n).map(|i| if done + i < sr as usize { noise() } else { 0.0 }).collect();
                let (mut fl, mut fr, mut sl, mut sr_) = (vec![0.0; n], vec![0.0; n], vec![0.0; n], vec![0.0; n]);
                fast.process(&x, &mut fl, &mut fr);
                reference_process(&mut slow, &x, &mut sl, &mut sr_);
                assert!(
                    fl.iter().zip(&sl).chain(fr.iter().zip(&sr_)).all(|(a, b)| a.to_bits() == b.to_bits()),
                    "block {step} ({n} frames) differs at {sr} Hz"
                );
                // The build without AVX2 too.
                plain.process_body(&x, &mut sl, &mut sr_);
                assert!(
                    fl.iter().zip(&sl).chain(fr.iter().zip(&sr_)).all(|(a, b)| a.to_bits() == b.to_bits()),
                    "block {step} ({n} frames) differs without AVX2 at {sr} Hz"
                );
                done += n;
            }
            assert!(fast.damp.iter().any(|v| *v != 0.0), "the tail was still sounding");
        }
    }

    /// Prepared ahead (twice, as a thread might), then finished: the same output bit
    /// for bit as in one step, and a preparation made stale by a new setting or a
    /// clear is made again rather than used.
    #[test]
    fn prepare_then_finish_equals_process_bit_for_bit() {
        let sr = 48_000.0;
        let (mut whole, mut split) = (Reverb::new(sr), Reverb::new(sr));
        let mut seed = 7u32;
        let mut noise = || {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (seed >> 8) as f32 / (1 << 23) as f32 - 1.0
        };
        let blocks = [64usize, 64, 17, 1, 64, 33];
        for step in 0..3000 {
            let n = blocks[step % blocks.len()];
            let x: Vec<f32> = (0..n).map(|_| if step < 1000 { noise() } else { 0.0 }).collect();
            split.prepare(n);
            if step % 3 == 0 {
                split.prepare(n);
            }
            // Settings and clears after the preparation: the split side must see
            // them as the whole side does.
            for r in [&mut whole, &mut split] {
                r.set_decay(if step < 1500 { 2.0 } else { 3.5 });
                r.set_damping(if step < 2000 { 0.35 } else { 0.7 });
                if step == 2500 {
                    r.clear();
                }
            }
            let (mut wl, mut wr, mut sl, mut sr_) = (vec![0.0; n], vec![0.0; n], vec![0.0; n], vec![0.0; n]);
            whole.process(&x, &mut wl, &mut wr);
            split.finish(&x, &mut sl, &mut sr_);
            assert!(
                wl.iter().zip(&sl).chain(wr.iter().zip(&sr_)).all(|(a, b)| a.to_bits() == b.to_bits()),
                "block {step} ({n} frames) differs when prepared ahead"
            );
            if step == 2499 {
                assert!(whole.damp.iter().any(|v| *v != 0.0), "the tail was still sounding");
            }
        }
    }

    #[test]
    fn hadamard_is_orthonormal() {
        for k in 0..LINES {
            let mut e = [0.0; LINES];
            e[k] = 1.0;
            let h = hadamard(e);
            assert!((h.iter().map(|v| v * v).sum::<f32>() - 1.0).abs() < 1e-6);
            assert!(h.iter().all(|v| (v.abs() - 1.0 / (LINES as f32).sqrt()).abs() < 1e-6));
        }
    }

    #[test]
    fn line_lengths_are_distinct_primes() {
        for sr in [44_100.0, 48_000.0, 96_000.0] {
            let r = Reverb::new(sr);
            for (i, &a) in r.lens.iter().enumerate() {
                assert_eq!(prime_at_least(a as usize), a as usize);
                assert!(r.lens[..i].iter().all(|&b| b != a));
            }
        }
    }
}
