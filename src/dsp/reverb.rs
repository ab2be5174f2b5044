//! Stereo reverb: input diffusion (four Schroeder all-passes) into an eight-line
//! feedback delay network with a Hadamard mixing matrix and per-line damping. The
//! decay time (to -60 dB) can move at any time without clearing the tail.

const LINE_MS: [f32; 8] = [21.5, 27.6, 31.7, 37.3, 41.6, 46.6, 51.4, 56.4];
const DIFFUSER_MS: [f32; 4] = [3.2, 2.4, 8.6, 6.3];
const DIFFUSION: f32 = 0.7;
/// High-frequency damping inside the loop (one-pole coefficient, 0 = none).
const DAMPING: f32 = 0.35;
/// Output scale giving a wet level comparable to the dry signal.
const WET_GAIN: f32 = 0.6;

#[derive(Clone)]
struct Ring {
    buf: Box<[f32]>,
    pos: usize,
}

impl Ring {
    fn new(len: usize) -> Self {
        Ring { buf: vec![0.0; len.max(1)].into_boxed_slice(), pos: 0 }
    }

    /// Returns the sample written `len` samples ago and stores `x` in its place.
    #[inline]
    fn swap(&mut self, x: f32) -> f32 {
        let y = self.buf[self.pos];
        self.buf[self.pos] = x;
        self.pos += 1;
        if self.pos == self.buf.len() {
            self.pos = 0;
        }
        y
    }

    #[inline]
    fn peek(&self) -> f32 {
        self.buf[self.pos]
    }
}

#[derive(Clone)]
pub struct Reverb {
    lines: [Ring; 8],
    lens: [f32; 8],
    diffusers: [Ring; 4],
    damp: [f32; 8],
    gains: [f32; 8],
    decay_s: f32,
    sample_rate: f32,
}

impl Reverb {
    pub fn new(sample_rate: f32) -> Self {
        let len = |ms: f32| (ms * 0.001 * sample_rate).round() as usize;
        let mut r = Reverb {
            lines: LINE_MS.map(|ms| Ring::new(len(ms))),
            lens: [0.0; 8],
            diffusers: DIFFUSER_MS.map(|ms| Ring::new(len(ms))),
            damp: [0.0; 8],
            gains: [0.0; 8],
            decay_s: 0.0,
            sample_rate,
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

    /// One frame: mono input, stereo wet output.
    #[inline]
    pub fn tick(&mut self, x: f32) -> (f32, f32) {
        let mut s = x;
        for d in &mut self.diffusers {
            let delayed = d.peek();
            let v = s + DIFFUSION * delayed;
            d.swap(v);
            s = delayed - DIFFUSION * v;
        }
        let mut o = [0.0f32; 8];
        for (k, line) in self.lines.iter().enumerate() {
            o[k] = line.peek();
        }
        // Fast Walsh-Hadamard transform, normalised (energy preserving).
        let mut h = o;
        let mut span = 1;
        while span < 8 {
            for i in (0..8).step_by(span * 2) {
                for j in i..i + span {
                    let (a, b) = (h[j], h[j + span]);
                    h[j] = a + b;
                    h[j + span] = a - b;
                }
            }
            span *= 2;
        }
        let norm = 0.353_553_38; // 1/sqrt(8)
        for k in 0..8 {
            let fb = h[k] * norm * self.gains[k];
            self.damp[k] += (1.0 - DAMPING) * (fb - self.damp[k]);
            let sign = if k & 1 == 0 { 1.0 } else { -1.0 };
            self.lines[k].swap(self.damp[k] + s * sign);
        }
        let l = (o[0] - o[2] + o[4] - o[6]) * WET_GAIN;
        let r = (o[1] - o[3] + o[5] - o[7]) * WET_GAIN;
        (l, r)
    }

    pub fn clear(&mut self) {
        for r in self.lines.iter_mut().chain(self.diffusers.iter_mut()) {
            r.buf.fill(0.0);
        }
        self.damp = [0.0; 8];
    }

    pub fn is_finite(&self) -> bool {
        self.damp.iter().all(|v| v.is_finite())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tail_energy(decay: f32, from_s: f32, to_s: f32) -> f32 {
        let sr = 48000.0;
        let mut r = Reverb::new(sr);
        r.set_decay(decay);
        let mut e = 0.0;
        for n in 0..(to_s * sr) as usize {
            let (l, rr) = r.tick(if n == 0 { 1.0 } else { 0.0 });
            if n as f32 >= from_s * sr {
                e += l * l + rr * rr;
            }
        }
        e
    }

    #[test]
    fn longer_decay_longer_tail() {
        let short = tail_energy(0.5, 0.5, 1.5);
        let long = tail_energy(3.0, 0.5, 1.5);
        assert!(long > short * 100.0, "short {short} long {long}");
    }

    #[test]
    fn decays_about_60_db_in_decay_time() {
        let early = tail_energy(1.0, 0.1, 0.2);
        let late = tail_energy(1.0, 1.1, 1.2);
        let drop_db = 10.0 * (late / early).log10();
        assert!((-75.0..-50.0).contains(&drop_db), "{drop_db}");
    }
}
