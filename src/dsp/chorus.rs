//! Stereo chorus: one modulated delay, read at two LFO phases a quarter-cycle apart.
//! The ring's length is a power of two, so reads wrap with a mask (no branches), and
//! since the shortest delay is longer than a block, a block is written before it is
//! read.

use super::math::{fract_turns, sin_turns};

/// Centre delay of the chorus voices.
pub const CHORUS_BASE_SECONDS: f32 = 0.007;
/// Largest sweep either side of the centre.
pub const CHORUS_MAX_DEPTH_SECONDS: f32 = 0.01;
/// Longest block `process` takes.
pub const MAX_BLOCK: usize = 256;

#[derive(Clone)]
pub struct Chorus {
    buf: Box<[f32]>,
    mask: usize,
    pos: usize,
    phase: f64,
}

impl Chorus {
    pub fn new(sample_rate: f32) -> Self {
        let longest = ((CHORUS_BASE_SECONDS + CHORUS_MAX_DEPTH_SECONDS) * sample_rate).ceil() as usize + 2;
        let len = (longest + MAX_BLOCK).next_power_of_two();
        Chorus { buf: super::zeroed(len), mask: len - 1, pos: 0, phase: 0.0 }
    }

    /// Processes one block of mono input into two wet outputs, the LFO moving at
    /// `rate_hz`, sweeping +/- `depth_s`. The LFO is evaluated at the block's ends and
    /// interpolated (rates are far below the block rate).
    pub fn process(
        &mut self,
        input: &[f32],
        rate_hz: f32,
        depth_s: f32,
        sample_rate: f32,
        wet_l: &mut [f32],
        wet_r: &mut [f32],
    ) {
        let n = input.len().min(MAX_BLOCK);
        let dphase = rate_hz as f64 / sample_rate as f64 * n as f64;
        let base = CHORUS_BASE_SECONDS * sample_rate;
        let depth = depth_s.clamp(0.0, CHORUS_MAX_DEPTH_SECONDS.min(CHORUS_BASE_SECONDS - 0.001)) * sample_rate;
        let at = |p: f64, offset: f64| base + depth * sin_turns(p + offset) as f32;
        let (l0, l1) = (at(self.phase, 0.0), at(self.phase + dphase, 0.0));
        let (r0, r1) = (at(self.phase, 0.25), at(self.phase + dphase, 0.25));
        let start = self.pos;
        let mask = self.mask;
        for (i, x) in input[..n].iter().enumerate() {
            self.buf[(start + i) & mask] = *x;
        }
        self.pos = (start + n) & mask;
        let buf = &self.buf;
        // Delays in 16.16 fixed point, interpolated across the block in integers.
        const ONE: f32 = 65536.0;
        let fixed = |d: f32| (d * ONE) as i64;
        let step = |a: f32, b: f32| (fixed(b) - fixed(a)) / n as i64;
        let (mut dl, sl) = (fixed(l0), step(l0, l1));
        let (mut dr, sr) = (fixed(r0), step(r0, r1));
        let read = |i: usize, d: i64| -> f32 {
            let di = (d >> 16) as usize;
            let frac = (d & 0xFFFF) as i32 as f32 * (1.0 / ONE);
            let newer = buf[(start + i).wrapping_sub(di) & mask];
            let older = buf[(start + i).wrapping_sub(di + 1) & mask];
            newer + (older - newer) * frac
        };
        for i in 0..n {
            dl += sl;
            dr += sr;
            wet_l[i] = read(i, dl);
            wet_r[i] = read(i, dr);
        }
        self.phase = fract_turns(self.phase + dphase);
    }

    pub fn clear(&mut self) {
        self.buf.fill(0.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_depth_it_is_a_plain_delay() {
        let sr = 48000.0;
        let mut c = Chorus::new(sr);
        let d = (CHORUS_BASE_SECONDS * sr) as usize;
        let mut first = None;
        let (mut l, mut r) = ([0.0; 64], [0.0; 64]);
        for block in 0..20 {
            let x: Vec<f32> = (0..64).map(|i| if block == 0 && i == 0 { 1.0 } else { 0.0 }).collect();
            c.process(&x, 1.0, 0.0, sr, &mut l, &mut r);
            if first.is_none() {
                first = l.iter().position(|v| *v > 0.5).map(|i| block * 64 + i);
            }
        }
        assert_eq!(first, Some(d));
    }
}
