//! Stereo reverb: input diffusion (four Schroeder all-passes) into an eight-line
//! feedback delay network with a Householder mixing matrix (orthogonal, so energy
//! preserving: `x - (2/N) sum x`) and per-line damping. The decay time (to -60 dB)
//! can move at any time without clearing the tail.
//!
//! Each line's output is read and its new input written in the same ring slot, so
//! the network runs sample by sample without copies, element-wise across lines.

use wide::f32x8;

const LINES: usize = 8;
const LINE_MS: [f32; LINES] = [21.5, 27.6, 31.7, 37.3, 41.6, 46.6, 51.4, 56.4];
const DIFFUSER_MS: [f32; 4] = [3.2, 2.4, 8.6, 6.3];
const DIFFUSION: f32 = 0.7;
/// High-frequency damping inside the loop by default (one-pole coefficient, 0 = none).
pub const DEFAULT_DAMPING: f32 = 0.35;
/// Output scale giving a wet level comparable to the dry signal.
const WET_GAIN: f32 = 0.6;
/// Longest block [`Reverb::process`] takes (shorter than any line at 8 kHz).
pub const MAX_BLOCK: usize = 64;

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

#[derive(Clone)]
pub struct Reverb {
    lines: [Ring; LINES],
    lens: [f32; LINES],
    diffusers: [Ring; 4],
    damp: [f32; LINES],
    gains: [f32; LINES],
    decay_s: f32,
    /// High-frequency damping in the loop (0 = none, towards 1 = dark).
    damping: f32,
    sample_rate: f32,
    /// Scratch for one block: the diffused input.
    s: [f32; MAX_BLOCK],
}

impl Reverb {
    pub fn new(sample_rate: f32) -> Self {
        let len = |ms: f32| ((ms * 0.001 * sample_rate).round() as usize).max(MAX_BLOCK + 1);
        let mut r = Reverb {
            lines: LINE_MS.map(|ms| Ring::new(len(ms))),
            lens: [0.0; LINES],
            diffusers: DIFFUSER_MS.map(|ms| Ring::new(((ms * 0.001 * sample_rate).round() as usize).max(1))),
            damp: [0.0; LINES],
            gains: [0.0; LINES],
            decay_s: 0.0,
            damping: DEFAULT_DAMPING,
            sample_rate,
            s: [0.0; MAX_BLOCK],
        };
        for (l, ring) in r.lens.iter_mut().zip(&r.lines) {
            *l = ring.buf.len() as f32;
        }
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
        let Reverb { s, diffusers, lines, damp, gains, .. } = self;
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
        // The network, sample by sample, element-wise over the lines: each line's
        // output is read and its new input stored in the same ring slot.
        const SIGN: [f32; LINES] = [1.0, -1.0, 1.0, -1.0, 1.0, -1.0, 1.0, -1.0];
        let a = 1.0 - self.damping;
        let mut done = 0;
        while done < n {
            // A segment in which no line wraps around.
            let seg = lines.iter().map(|l| l.buf.len() - l.pos).min().unwrap_or(0).min(n - done).max(1);
            let [l0, l1, l2, l3, l4, l5, l6, l7] = lines;
            let rings: [&mut [f32]; LINES] = [
                &mut l0.buf[l0.pos..l0.pos + seg],
                &mut l1.buf[l1.pos..l1.pos + seg],
                &mut l2.buf[l2.pos..l2.pos + seg],
                &mut l3.buf[l3.pos..l3.pos + seg],
                &mut l4.buf[l4.pos..l4.pos + seg],
                &mut l5.buf[l5.pos..l5.pos + seg],
                &mut l6.buf[l6.pos..l6.pos + seg],
                &mut l7.buf[l7.pos..l7.pos + seg],
            ];
            // The eight lines side by side in SIMD lanes.
            let g = f32x8::new(*gains);
            let sign = f32x8::new(SIGN);
            let mut d = f32x8::new(*damp);
            for i in 0..seg {
                let xs = [
                    rings[0][i],
                    rings[1][i],
                    rings[2][i],
                    rings[3][i],
                    rings[4][i],
                    rings[5][i],
                    rings[6][i],
                    rings[7][i],
                ];
                // Sums and taps on the scalars we already hold; the rest in lanes.
                let mix =
                    (((xs[0] + xs[1]) + (xs[2] + xs[3])) + ((xs[4] + xs[5]) + (xs[6] + xs[7]))) * (2.0 / LINES as f32);
                out_l[done + i] = ((xs[0] - xs[2]) + (xs[4] - xs[6])) * WET_GAIN;
                out_r[done + i] = ((xs[1] - xs[3]) + (xs[5] - xs[7])) * WET_GAIN;
                let v = (f32x8::new(xs) - f32x8::splat(mix)) * g;
                d += (v - d) * a;
                let fb = (d + sign * s[done + i]).to_array();
                for k in 0..LINES {
                    rings[k][i] = fb[k];
                }
            }
            *damp = d.to_array();
            for l in lines.iter_mut() {
                l.pos = (l.pos + seg) % l.buf.len();
            }
            done += seg;
        }
    }

    pub fn clear(&mut self) {
        for r in self.lines.iter_mut().chain(self.diffusers.iter_mut()) {
            r.buf.fill(0.0);
        }
        self.damp = [0.0; LINES];
    }

    pub fn is_finite(&self) -> bool {
        self.damp.iter().all(|v| v.is_finite())
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
}
