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
        let taps = self.write(&input[..n], rate_hz, depth_s, sample_rate);
        let buf = self.ring();
        let (l, r) = (&mut wet_l[..n], &mut wet_r[..n]);
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the processor has AVX2 (checked just above).
            unsafe {
                read_avx2(buf, taps.start, taps.left.0, taps.left.1, l);
                read_avx2(buf, taps.start, taps.right.0, taps.right.1, r);
            }
            return;
        }
        read(buf, taps.start, taps.left.0, taps.left.1, l);
        read(buf, taps.start, taps.right.0, taps.right.1, r);
    }

    /// The first half of [`Chorus::process`], for a loop that reads the taps sample by
    /// sample beside other stages: writes the block `input` (at most [`MAX_BLOCK`]
    /// samples) into the ring, moves the LFO on, and gives where the block's two taps
    /// read ([`ChorusTaps::tap`] on [`Chorus::ring`]).
    #[inline]
    pub fn write(&mut self, input: &[f32], rate_hz: f32, depth_s: f32, sample_rate: f32) -> ChorusTaps {
        let n = input.len().min(MAX_BLOCK);
        let dphase = rate_hz as f64 / sample_rate as f64 * n as f64;
        let base = CHORUS_BASE_SECONDS * sample_rate;
        let depth = depth_s.clamp(0.0, CHORUS_MAX_DEPTH_SECONDS.min(CHORUS_BASE_SECONDS - 0.001)) * sample_rate;
        let at = |p: f64, offset: f64| base + depth * sin_turns(p + offset) as f32;
        let (l0, l1) = (at(self.phase, 0.0), at(self.phase + dphase, 0.0));
        let (r0, r1) = (at(self.phase, 0.25), at(self.phase + dphase, 0.25));
        let start = self.pos;
        let mask = self.mask;
        // The block in at most two contiguous runs, split where the ring wraps (the
        // ring is longer than a block).
        let first = n.min(mask + 1 - start);
        self.buf[start..start + first].copy_from_slice(&input[..first]);
        self.buf[..n - first].copy_from_slice(&input[first..n]);
        self.pos = (start + n) & mask;
        // Delays in 16.16 fixed point, interpolated across the block in integers.
        let fixed = |d: f32| (d * FIXED_ONE) as i64;
        let step = |a: f32, b: f32| (fixed(b) - fixed(a)) / n.max(1) as i64;
        self.phase = fract_turns(self.phase + dphase);
        ChorusTaps { start, left: (fixed(l0), step(l0, l1)), right: (fixed(r0), step(r0, r1)) }
    }

    /// The ring the taps of [`Chorus::write`] read (a power of two long).
    #[inline]
    pub fn ring(&self) -> &[f32] {
        &self.buf[..=self.mask]
    }

    pub fn clear(&mut self) {
        self.buf.fill(0.0);
    }
}

/// One in the 16.16 fixed point of the delays.
const FIXED_ONE: f32 = 65536.0;

/// Where a block's two taps read: the block's start in the ring, and each tap's
/// delay before the first sample and its step per sample (16.16 fixed point).
#[derive(Clone, Copy, Debug)]
pub struct ChorusTaps {
    pub start: usize,
    pub left: (i64, i64),
    pub right: (i64, i64),
}

impl ChorusTaps {
    /// Sample `i` of a tap read at delay `d` (16.16 fixed point, behind the block's
    /// sample `i`) from `buf` (a power of two long), interpolating linearly between
    /// neighbours: what [`read`] gives at `i` once its delay has stepped to `d`.
    #[inline(always)]
    pub fn tap(&self, buf: &[f32], i: usize, d: i64) -> f32 {
        tap(buf, self.start, i, d)
    }
}

#[inline(always)]
fn tap(buf: &[f32], start: usize, i: usize, d: i64) -> f32 {
    let mask = buf.len() - 1;
    let di = (d >> 16) as usize;
    let frac = (d & 0xFFFF) as i32 as f32 * (1.0 / FIXED_ONE);
    let at = (start + i).wrapping_sub(di);
    let newer = buf[at & mask];
    let older = buf[at.wrapping_sub(1) & mask];
    newer + (older - newer) * frac
}

/// Reads the ring `buf` (a power of two long) at a delay starting at `d0 + step`
/// (16.16 fixed point, behind position `start`) and moving by `step` per sample,
/// interpolating linearly between neighbours.
#[inline(always)]
fn read(buf: &[f32], start: usize, d0: i64, step: i64, out: &mut [f32]) {
    let mut d = d0;
    for (i, o) in out.iter_mut().enumerate() {
        d += step;
        *o = tap(buf, start, i, d);
    }
}

/// [`read`], built for AVX2 (the same operations: the same output bit for bit).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn read_avx2(buf: &[f32], start: usize, d0: i64, step: i64, out: &mut [f32]) {
    read(buf, start, d0, step, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The chorus as one loop over both sides with the reads inline, as it was
    /// written before the reads became a function of their own (and an AVX2 build).
    fn reference(c: &mut Chorus, input: &[f32], rate_hz: f32, depth_s: f32, sr: f32, wl: &mut [f32], wr: &mut [f32]) {
        let n = input.len();
        let dphase = rate_hz as f64 / sr as f64 * n as f64;
        let base = CHORUS_BASE_SECONDS * sr;
        let depth = depth_s.clamp(0.0, CHORUS_MAX_DEPTH_SECONDS.min(CHORUS_BASE_SECONDS - 0.001)) * sr;
        let at = |p: f64, offset: f64| base + depth * sin_turns(p + offset) as f32;
        let (l0, l1) = (at(c.phase, 0.0), at(c.phase + dphase, 0.0));
        let (r0, r1) = (at(c.phase, 0.25), at(c.phase + dphase, 0.25));
        let (start, mask) = (c.pos, c.mask);
        for (i, x) in input.iter().enumerate() {
            c.buf[(start + i) & mask] = *x;
        }
        c.pos = (start + n) & mask;
        let fixed = |d: f32| (d * 65536.0) as i64;
        let step = |a: f32, b: f32| (fixed(b) - fixed(a)) / n as i64;
        let (mut dl, sl) = (fixed(l0), step(l0, l1));
        let (mut dr, sr_) = (fixed(r0), step(r0, r1));
        let read = |i: usize, d: i64| -> f32 {
            let di = (d >> 16) as usize;
            let frac = (d & 0xFFFF) as i32 as f32 * (1.0 / 65536.0);
            let newer = c.buf[(start + i).wrapping_sub(di) & mask];
            let older = c.buf[(start + i).wrapping_sub(di + 1) & mask];
            newer + (older - newer) * frac
        };
        for i in 0..n {
            dl += sl;
            dr += sr_;
            wl[i] = read(i, dl);
            wr[i] = read(i, dr);
        }
        c.phase = fract_turns(c.phase + dphase);
    }

    /// The chorus gives the same output bit for bit as the loop it replaced, at
    /// several rates, depths, sample rates and block sizes, across the ring's wrap.
    #[test]
    fn the_chorus_reads_as_the_single_loop_did() {
        let mut seed = 99u32;
        for (sr, rate, depth, block) in [
            (48_000.0, 0.8, 0.003, 64),
            (44_100.0, 5.0, 0.006, 256),
            (96_000.0, 0.1, 0.0, 17),
            (48_000.0, 2.5, 0.02, 1),
        ] {
            let (mut a, mut b) = (Chorus::new(sr), Chorus::new(sr));
            let (mut la, mut ra, mut lb, mut rb) =
                (vec![0.0; block], vec![0.0; block], vec![0.0; block], vec![0.0; block]);
            for _ in 0..(20_000 / block).max(200) {
                let x: Vec<f32> = (0..block)
                    .map(|_| {
                        seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                        (seed >> 8) as f32 / (1u32 << 24) as f32 - 0.5
                    })
                    .collect();
                a.process(&x, rate, depth, sr, &mut la, &mut ra);
                reference(&mut b, &x, rate, depth, sr, &mut lb, &mut rb);
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(
                    (bits(&la), bits(&ra)),
                    (bits(&lb), bits(&rb)),
                    "{sr} Hz, {rate} Hz, depth {depth}, block {block}"
                );
            }
        }
    }

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
