//! Delay lines: a fractional-read ring buffer, and the bus's stereo feedback echo.

/// A ring buffer read at fractional delays (linear interpolation).
#[derive(Clone)]
pub struct DelayLine {
    buf: Box<[f32]>,
    pos: usize,
}

impl DelayLine {
    /// A line that can delay by up to `max_delay` samples.
    pub fn new(max_delay: usize) -> Self {
        DelayLine { buf: super::zeroed(max_delay + 2), pos: 0 }
    }

    /// The longest delay this line can give.
    pub fn max_delay(&self) -> f32 {
        (self.buf.len() - 2) as f32
    }

    /// The input from `delay` samples before the next write (`delay >= 1`).
    #[inline]
    pub fn read(&self, delay: f32) -> f32 {
        let len = self.buf.len();
        let d = delay.clamp(1.0, self.max_delay());
        let di = d as usize;
        let frac = d - di as f32;
        let i0 = if self.pos >= di { self.pos - di } else { self.pos + len - di };
        let i1 = if i0 == 0 { len - 1 } else { i0 - 1 };
        let a = self.buf[i0];
        a + (self.buf[i1] - a) * frac
    }

    #[inline]
    pub fn write(&mut self, x: f32) {
        self.buf[self.pos] = x;
        self.pos += 1;
        if self.pos == self.buf.len() {
            self.pos = 0;
        }
    }

    pub fn clear(&mut self) {
        self.buf.fill(0.0);
    }

    /// Reads `out.len()` samples at a constant `delay` (>= `out.len()`), as
    /// successive `read`s interleaved with writes would: sample `i` is the input from
    /// `delay` samples before write `i`.
    pub fn read_block(&self, delay: f32, out: &mut [f32]) {
        let len = self.buf.len();
        let d = delay.clamp(out.len() as f32, self.max_delay());
        let di = d as usize;
        let frac = d - di as f32;
        // Sample i reads positions p0 + i (weight 1 - frac) and p0 + i - 1 (weight frac).
        let p0 = (self.pos + len - di) % len;
        let n = out.len();
        if p0 >= 1 && p0 + n <= len {
            let (a, b) = (&self.buf[p0..p0 + n], &self.buf[p0 - 1..p0 - 1 + n]);
            for ((o, a), b) in out.iter_mut().zip(a).zip(b) {
                *o = a + (b - a) * frac;
            }
        } else {
            for (i, o) in out.iter_mut().enumerate() {
                let a = self.buf[(p0 + i) % len];
                let b = self.buf[(p0 + i + len - 1) % len];
                *o = a + (b - a) * frac;
            }
        }
    }

    /// Where the next sample will be written.
    pub fn write_pos(&self) -> usize {
        self.pos
    }

    /// The ring itself (read-only).
    pub fn buffer(&self) -> &[f32] {
        &self.buf
    }

    /// Writes a block of samples.
    pub fn write_block(&mut self, x: &[f32]) {
        let len = self.buf.len();
        let first = (len - self.pos).min(x.len());
        self.buf[self.pos..self.pos + first].copy_from_slice(&x[..first]);
        self.buf[..x.len() - first].copy_from_slice(&x[first..]);
        self.pos = (self.pos + x.len()) % len;
    }
}

/// Largest block [`StereoDelay::process`] takes.
pub const MAX_BLOCK: usize = 64;
/// Bound on what recirculates: feedback below 1 keeps echoes finite; this keeps a
/// loud input from filling the line with huge values.
const LOOP_LIMIT: f32 = 8.0;
/// A change of delay time larger than this (in seconds) crossfades to the new tap
/// instead of sweeping the read head across the line (which would screech).
pub const JUMP_SECONDS: f32 = 0.005;
/// Length of that crossfade.
pub const CROSSFADE_SECONDS: f32 = 0.03;
/// Smaller changes move the read head at most this many samples per sample (a
/// gentle tape-like pitch bend while a knob turns).
const SLEW: f32 = 0.25;

/// Stereo feedback echo: each side recirculates through its own line.
#[derive(Clone)]
pub struct StereoDelay {
    lines: [DelayLine; 2],
    wet: [[f32; MAX_BLOCK]; 2],
    old_wet: [[f32; MAX_BLOCK]; 2],
    /// Delay now, in samples.
    current: f32,
    /// The tap being faded out, and how far the crossfade has gone (0..1).
    fading: Option<(f32, f32)>,
    jump: f32,
    fade_step: f32,
}

impl StereoDelay {
    pub fn new(max_seconds: f32, sample_rate: f32) -> Self {
        let n = (max_seconds * sample_rate).ceil() as usize + MAX_BLOCK + 4;
        StereoDelay {
            lines: [DelayLine::new(n), DelayLine::new(n)],
            wet: [[0.0; MAX_BLOCK]; 2],
            old_wet: [[0.0; MAX_BLOCK]; 2],
            current: 0.0,
            fading: None,
            jump: JUMP_SECONDS * sample_rate,
            fade_step: 1.0 / (CROSSFADE_SECONDS * sample_rate),
        }
    }

    /// Starts at `delay` samples with no transition (after waking up).
    pub fn reset_time(&mut self, delay: f32) {
        self.current = delay;
        self.fading = None;
    }

    /// One frame: returns the wet (echo) signal for each side. `delay` in samples.
    #[inline]
    pub fn tick(&mut self, l: f32, r: f32, delay: f32, feedback: f32) -> (f32, f32) {
        let wl = self.lines[0].read(delay);
        let wr = self.lines[1].read(delay);
        self.lines[0].write((l + wl * feedback).clamp(-LOOP_LIMIT, LOOP_LIMIT));
        self.lines[1].write((r + wr * feedback).clamp(-LOOP_LIMIT, LOOP_LIMIT));
        (wl, wr)
    }

    /// A block (at most [`MAX_BLOCK`] frames) heading for a delay of `target` samples,
    /// the feedback moving from `f0 + fd` to `f0 + fd * n`; `l` and `r` become the echo.
    pub fn process(&mut self, l: &mut [f32], r: &mut [f32], target: f32, f0: f32, fd: f32) {
        let n = l.len().min(MAX_BLOCK);
        let target = target.clamp(1.0, self.lines[0].max_delay());
        if self.fading.is_none() && (target - self.current).abs() > self.jump {
            self.fading = Some((self.current, 0.0));
            self.current = target;
        }
        let d0 = self.current;
        let dd = if self.fading.is_none() {
            let max = SLEW * n as f32;
            let next = d0 + (target - d0).clamp(-max, max);
            self.current = next;
            (next - d0) / n as f32
        } else {
            0.0
        };
        let shortest = d0.min(d0 + dd * n as f32).min(self.fading.map(|f| f.0).unwrap_or(f32::MAX));
        if shortest < n as f32 + 1.0 {
            // Echoes shorter than the block: frame by frame, no crossfade.
            self.fading = None;
            for i in 0..n {
                let k = (i as i32 + 1) as f32;
                (l[i], r[i]) = self.tick(l[i], r[i], d0 + dd * k, f0 + fd * k);
            }
            return;
        }
        // Every read reaches back before this block: read all, then write all.
        let fading = self.fading;
        for (side, x) in [&mut *l, &mut *r].into_iter().enumerate() {
            let line = &mut self.lines[side];
            let wet = &mut self.wet[side][..n];
            if dd == 0.0 {
                line.read_block(d0, wet);
            } else {
                let len = line.buf.len();
                for (i, w) in wet.iter_mut().enumerate() {
                    let d = (d0 + dd * (i as i32 + 1) as f32).min(line.max_delay()) - i as f32;
                    let di = d as usize;
                    let frac = d - di as f32;
                    let i0 = if line.pos >= di { line.pos - di } else { line.pos + len - di };
                    let i1 = if i0 == 0 { len - 1 } else { i0 - 1 };
                    let a = line.buf[i0];
                    *w = a + (line.buf[i1] - a) * frac;
                }
            }
            if let Some((old, progress)) = fading {
                let old_wet = &mut self.old_wet[side][..n];
                line.read_block(old, old_wet);
                for (i, (w, o)) in wet.iter_mut().zip(old_wet.iter()).enumerate() {
                    let x = (progress + self.fade_step * (i as i32 + 1) as f32).min(1.0);
                    *w = *o + (*w - *o) * x;
                }
            }
            for i in 0..n {
                let fb = f0 + fd * (i as i32 + 1) as f32;
                x[i] = (x[i] + wet[i] * fb).clamp(-LOOP_LIMIT, LOOP_LIMIT);
            }
            line.write_block(x);
            x.copy_from_slice(wet);
        }
        if let Some((old, progress)) = fading {
            let p = progress + self.fade_step * n as f32;
            self.fading = if p >= 1.0 { None } else { Some((old, p)) };
        }
    }

    pub fn clear(&mut self) {
        for l in &mut self.lines {
            l.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integer_and_fractional_reads() {
        let mut d = DelayLine::new(16);
        for i in 0..10 {
            d.write(i as f32);
        }
        assert_eq!(d.read(1.0), 9.0);
        assert_eq!(d.read(3.0), 7.0);
        assert!((d.read(2.5) - 7.5).abs() < 1e-6);
    }

    #[test]
    fn block_processing_matches_frame_by_frame() {
        let mut a = StereoDelay::new(0.1, 1000.0);
        let mut b = a.clone();
        let input: Vec<f32> = (0..400).map(|i| ((i * 37 % 11) as f32 - 5.0) / 5.0).collect();
        let mut out_a = Vec::new();
        for (k, chunk) in input.chunks(32).enumerate() {
            let d0 = 40.0 + k as f32;
            let (mut l, mut r) = (chunk.to_vec(), chunk.to_vec());
            b.reset_time(d0);
            b.process(&mut l, &mut r, d0, 0.5, 0.001);
            for i in 0..chunk.len() {
                let kk = (i as i32 + 1) as f32;
                let (wl, _) = a.tick(chunk[i], chunk[i], d0, 0.5 + 0.001 * kk);
                out_a.push(wl);
                assert!((wl - l[i]).abs() < 1e-6, "frame {}", k * 32 + i);
            }
        }
    }

    #[test]
    fn echo_arrives_at_the_delay_time() {
        let mut d = StereoDelay::new(1.0, 1000.0);
        let mut first = None;
        for n in 0..600 {
            let x = if n == 0 { 0.5 } else { 0.0 };
            let (wl, _) = d.tick(x, x, 250.0, 0.5);
            if wl.abs() > 0.1 && first.is_none() {
                first = Some(n);
            }
        }
        assert_eq!(first, Some(250));
    }
}
