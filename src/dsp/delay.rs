//! Delay lines: a fractional-read ring buffer, and the bus's stereo feedback echo.

use super::math::fast_tanh;

/// A ring buffer read at fractional delays (linear interpolation).
#[derive(Clone)]
pub struct DelayLine {
    buf: Box<[f32]>,
    pos: usize,
}

impl DelayLine {
    /// A line that can delay by up to `max_delay` samples.
    pub fn new(max_delay: usize) -> Self {
        DelayLine { buf: vec![0.0; max_delay + 2].into_boxed_slice(), pos: 0 }
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
        let i0 = (self.pos + len - di) % len;
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
}

/// Stereo feedback echo: each side recirculates through its own line.
#[derive(Clone)]
pub struct StereoDelay {
    lines: [DelayLine; 2],
}

impl StereoDelay {
    pub fn new(max_seconds: f32, sample_rate: f32) -> Self {
        let n = (max_seconds * sample_rate).ceil() as usize + 4;
        StereoDelay { lines: [DelayLine::new(n), DelayLine::new(n)] }
    }

    /// One frame: returns the wet (echo) signal for each side. `delay` in samples.
    #[inline]
    pub fn tick(&mut self, l: f32, r: f32, delay: f32, feedback: f32) -> (f32, f32) {
        let wl = self.lines[0].read(delay);
        let wr = self.lines[1].read(delay);
        // The soft clip keeps a high-feedback loop bounded on loud input.
        self.lines[0].write(fast_tanh(l + wl * feedback));
        self.lines[1].write(fast_tanh(r + wr * feedback));
        (wl, wr)
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
