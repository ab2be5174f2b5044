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

/// The 16-point fast Walsh-Hadamard transform, scaled to be orthonormal.
#[inline]
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
        for (g, len) in self.gains.iter_mut().zip(self.lens) {
            *g = 10f32.powf(-3.0 * len / (seconds.max(0.05) * self.sample_rate));
        }
    }

    /// Sets the high-frequency damping inside the loop (0 = bright .. 0.9 = dark).
    pub fn set_damping(&mut self, damping: f32) {
        self.damping = damping.clamp(0.0, 0.9);
    }

    /// Processes mono input `x` (at most [`MAX_BLOCK`] samples) into stereo wet output.
    pub fn process(&mut self, x: &[f32], out_l: &mut [f32], out_r: &mut [f32]) {
        let n = x.len().min(MAX_BLOCK);
        if n == 0 {
            return;
        }
        let Reverb { s, diffusers, .. } = self;
        // Diffuse the input: Schroeder all-passes, in place in their rings.
        s[..n].copy_from_slice(&x[..n]);
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
        let (lens, excursion, inc) = (self.lens, self.excursion, self.mod_inc);
        let mut phase = self.mod_phase;
        let mask = self.size - 1;
        let size = self.size;
        let g = self.gains;
        let a = 1.0 - self.damping;
        let mut damp = self.damp;
        let (mut mp, mut ms, pole) = (self.mid_power, self.mid_side, self.balance_pole);
        let lines = &mut self.lines;
        let mut w = self.write;
        for i in 0..n {
            let mut xs = [0.0f32; LINES];
            for k in 0..LINES {
                // A parabolic sine of the tap's phase, per sample (any block split
                // gives the same taps).
                let p = phase[k] as i32 as f32 * (1.0 / 2_147_483_648.0);
                phase[k] = phase[k].wrapping_add(inc[k]);
                let d = lens[k] - excursion * 4.0 * p * (1.0 - p.abs());
                let whole = d as usize;
                let frac = d - whole as f32;
                let base = k * size;
                let r0 = (w + size - whole) & mask;
                let r1 = (r0 + size - 1) & mask;
                let (y0, y1) = (lines[base + r0], lines[base + r1]);
                xs[k] = y0 + (y1 - y0) * frac;
            }
            let (mut l, mut r) = (0.0f32, 0.0f32);
            for k in 0..LINES {
                l += LEFT[k] * xs[k];
                r += RIGHT[k] * xs[k];
            }
            // Keep the side orthogonal to the mid: equal energy left and right.
            let (mid, side) = (0.5 * (l + r), 0.5 * (l - r));
            mp += (mid * mid - mp) * pole;
            ms += (mid * side - ms) * pole;
            let side = side - mid * (ms / (mp + 1e-12)).clamp(-4.0, 4.0);
            out_l[i] = (mid + side) * WET_GAIN;
            out_r[i] = (mid - side) * WET_GAIN;
            let v = hadamard(xs);
            for k in 0..LINES {
                damp[k] += (v[k] * g[k] - damp[k]) * a;
                lines[k * size + w] = damp[k] + INPUT_SIGN[k] * s[i];
            }
            w = (w + 1) & mask;
        }
        self.write = w;
        self.mod_phase = phase;
        self.damp = damp;
        self.mid_power = mp;
        self.mid_side = ms;
    }

    pub fn clear(&mut self) {
        self.lines.fill(0.0);
        for r in self.diffusers.iter_mut() {
            r.buf.fill(0.0);
        }
        self.damp = [0.0; LINES];
        self.mid_power = 0.0;
        self.mid_side = 0.0;
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
