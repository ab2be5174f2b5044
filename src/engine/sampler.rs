//! Sample playback for one voice (a SoundFont region or a user sample), on the
//! audio thread: 32.32 fixed-point sample position with 4-point interpolation and
//! the region's loop, the SoundFont volume and modulation envelopes (delay, attack,
//! hold, decay, sustain, release), both LFOs, the resonant low-pass with its
//! envelope, and the default modulators a General MIDI file relies on (velocity,
//! CC1/7/10/11/91/93, pitch bend, channel pressure; velocity-to-cutoff is left out
//! as FluidSynth leaves it out). Control values are
//! evaluated once per segment (a tick at most) and the gain ramps across it, as in
//! FluidSynth; the samples themselves run per frame. No allocation anywhere here.

use crate::tables::bank::{EnvGens, LoopMode, Region, Shape};

/// Level (of full scale, at the sample's own peak) below which a releasing or
/// decaying voice ends: -90 dB, FluidSynth's noise floor.
const NOISE_FLOOR: f32 = 3.0e-5;
/// The shortest release FluidSynth allows (timecents; about 16 ms): no click on note-off.
const MIN_RELEASE_TC: f32 = -7200.0;
/// The span of the volume envelope, in centibels.
const PEAK_ATTENUATION_CB: f32 = 960.0;
/// Cutoff at or above which an unmodulated filter with no resonance is left out, in cents (19.9 kHz).
const OPEN_FC_CENTS: f32 = 13_500.0;
/// The low-pass's passband gain with no resonance (FluidSynth's 1/sqrt(Q) at Q = -3.01 dB).
const BYPASS_GAIN: f32 = 1.189_207_1;
/// Depth of the vibrato added by the mod wheel or channel pressure at full, in cents.
const MOD_WHEEL_VIB_CENTS: f32 = 50.0;
/// Frequency in Hz of absolute cent 0 (MIDI note 0).
const CENT0_HZ: f32 = 8.175_799;

/// Seconds from timecents.
#[inline]
pub fn tc_to_sec(tc: f32) -> f32 {
    (tc / 1200.0).exp2()
}

/// log2(10) / 200: centibels of attenuation to the base-2 exponent of their gain.
const CB_TO_LOG2_GAIN: f32 = std::f32::consts::LOG2_10 / 200.0;

/// Linear gain from centibels of attenuation: `10^(-cb / 200)`, as a power of two
/// (`exp2` costs less than half of `powf`, and this runs every segment of a
/// decaying voice; within 2e-6 of the exact value, `cb_gain_is_within_2e_6`).
#[inline]
pub fn cb_to_gain(cb: f32) -> f32 {
    (-cb * CB_TO_LOG2_GAIN).exp2()
}

/// The SoundFont concave curve as FluidSynth tabulates it: for a controller value
/// `x` in 0..=127 going from 127 (none) to 0 (full), the attenuation share 0..1.
#[inline]
fn concave(x: f32) -> f32 {
    if x <= 0.0 {
        0.0
    } else if x >= 127.0 {
        1.0
    } else {
        -(400.0 / PEAK_ATTENUATION_CB) * ((127.0 - x) / 127.0).log10()
    }
}

/// Attenuation in centibels of a controller at `value` (0..127) through the
/// default "concave, negative" modulators of velocity, CC7 and CC11 (960 cB).
#[inline]
pub fn controller_attenuation_cb(value: u8) -> f32 {
    PEAK_ATTENUATION_CB * concave(127.0 - value as f32).min(127.0 / 128.0)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum EnvStage {
    Delay,
    Attack,
    Hold,
    Decay,
    Sustain,
    Release,
    Done,
}

/// A SoundFont envelope in FluidSynth's terms: the attack rises linearly to 1; from
/// there the value falls linearly (in the volume envelope one unit is 96 dB, so the
/// fall is constant in dB) to the sustain value; the release falls to 0 at the
/// release rate. Times are frames at the engine's rate.
#[derive(Clone, Copy, Debug)]
struct SfEnv {
    stage: EnvStage,
    value: f32,
    left: u32,
    attack: u32,
    hold: u32,
    decay_step: f32,
    sustain: f32,
    release_step: f32,
}

impl SfEnv {
    const IDLE: SfEnv = SfEnv {
        stage: EnvStage::Done,
        value: 0.0,
        left: 0,
        attack: 0,
        hold: 0,
        decay_step: 0.0,
        sustain: 0.0,
        release_step: 0.0,
    };

    fn start(g: &EnvGens, key: u8, sr: f32) -> Self {
        let frames =
            |tc: f32| -> u32 { if tc <= -32768.0 { 0 } else { (tc_to_sec(tc.clamp(-12000.0, 8000.0)) * sr) as u32 } };
        let scale = 60.0 - key as f32;
        let hold = frames((g.hold + g.key_to_hold * scale).clamp(-12000.0, 5000.0));
        let decay = frames((g.decay + g.key_to_decay * scale).clamp(-12000.0, 8000.0)).max(1);
        let release = frames(g.release.max(MIN_RELEASE_TC)).max(1);
        let delay = if g.delay <= -32768.0 { 0 } else { (tc_to_sec(g.delay.clamp(-12000.0, 5000.0)) * sr) as u32 };
        let mut e = SfEnv {
            stage: EnvStage::Delay,
            value: 0.0,
            left: delay,
            attack: frames(g.attack).max(1),
            hold,
            decay_step: 1.0 / decay as f32,
            sustain: (1.0 - 0.001 * g.sustain).clamp(0.0, 1.0),
            release_step: 1.0 / release as f32,
        };
        if delay == 0 {
            e.enter(EnvStage::Attack);
        }
        e
    }

    fn enter(&mut self, stage: EnvStage) {
        self.stage = stage;
        match stage {
            EnvStage::Attack => self.left = self.attack,
            EnvStage::Hold => {
                self.value = 1.0;
                self.left = self.hold;
            }
            _ => {}
        }
    }

    /// Advances `n` frames (a segment).
    #[inline]
    fn advance(&mut self, mut n: u32) {
        while n > 0 {
            match self.stage {
                EnvStage::Delay => {
                    let k = n.min(self.left);
                    self.left -= k;
                    n -= k;
                    if self.left == 0 {
                        self.enter(EnvStage::Attack);
                    }
                }
                EnvStage::Attack => {
                    let k = n.min(self.left);
                    self.value = (self.value + k as f32 / self.attack as f32).min(1.0);
                    self.left -= k;
                    n -= k;
                    if self.left == 0 {
                        self.enter(EnvStage::Hold);
                    }
                }
                EnvStage::Hold => {
                    let k = n.min(self.left);
                    self.left -= k;
                    n -= k;
                    if self.left == 0 {
                        self.stage = EnvStage::Decay;
                    }
                }
                EnvStage::Decay => {
                    self.value -= self.decay_step * n as f32;
                    n = 0;
                    if self.value <= self.sustain {
                        self.value = self.sustain;
                        self.stage = if self.sustain <= 0.0 { EnvStage::Done } else { EnvStage::Sustain };
                    }
                }
                EnvStage::Sustain => n = 0,
                EnvStage::Release => {
                    self.value -= self.release_step * n as f32;
                    n = 0;
                    if self.value <= 0.0 {
                        self.value = 0.0;
                        self.stage = EnvStage::Done;
                    }
                }
                EnvStage::Done => n = 0,
            }
        }
    }

    fn release(&mut self, volume: bool) {
        match self.stage {
            EnvStage::Delay => self.stage = EnvStage::Done,
            EnvStage::Attack if volume => {
                // Continue from the same loudness, now on the dB scale.
                let amp = self.value.max(1e-9);
                let cb = -200.0 * amp.log10();
                self.value = (1.0 - cb / PEAK_ATTENUATION_CB).max(0.0);
                self.stage = EnvStage::Release;
            }
            EnvStage::Release | EnvStage::Done => {}
            _ => self.stage = EnvStage::Release,
        }
    }

    /// The volume envelope's gain.
    fn volume_gain(&self) -> f32 {
        match self.stage {
            EnvStage::Delay | EnvStage::Done => 0.0,
            EnvStage::Attack => self.value,
            _ => cb_to_gain(PEAK_ATTENUATION_CB * (1.0 - self.value)),
        }
    }

    /// The modulation envelope's value (0..1).
    fn mod_value(&self) -> f32 {
        match self.stage {
            EnvStage::Delay | EnvStage::Done => 0.0,
            _ => self.value,
        }
    }
}

/// A triangle LFO (-1..1) that starts after a delay, rising from 0.
#[derive(Clone, Copy, Debug)]
struct Lfo {
    delay: u32,
    phase: f32,
    step: f32,
}

impl Lfo {
    fn new(delay_tc: f32, freq_cents: f32, sr: f32) -> Self {
        let delay = if delay_tc <= -32768.0 { 0 } else { (tc_to_sec(delay_tc.clamp(-12000.0, 5000.0)) * sr) as u32 };
        let hz = CENT0_HZ * (freq_cents / 1200.0).exp2();
        Lfo { delay, phase: 0.0, step: hz / sr }
    }

    fn value(&self) -> f32 {
        if self.delay > 0 {
            return 0.0;
        }
        // 0 -> 1 -> -1 -> 0 over one cycle.
        let p = self.phase;
        if p < 0.25 {
            4.0 * p
        } else if p < 0.75 {
            2.0 - 4.0 * p
        } else {
            4.0 * p - 4.0
        }
    }

    fn advance(&mut self, n: u32) {
        let wait = n.min(self.delay);
        self.delay -= wait;
        // The phase stays in 0..1 and a segment moves it less than a cycle: one
        // subtraction gives what `fract` gives (a library call on this target).
        let p = self.phase + self.step * (n - wait) as f32;
        self.phase = if p < 1.0 {
            p
        } else if p < 2.0 {
            p - 1.0
        } else {
            p.fract()
        };
    }
}

/// Whether the processor has AVX2 and FMA, which the vector builds of the voice's
/// interpolation, low-pass and mix use (checked once, then a cached load).
#[cfg(target_arch = "x86_64")]
#[inline]
fn vector_units() -> bool {
    std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
}

/// Frames the low-pass computes at once from its state (see [`LowPass`]).
const FILTER_BLOCK: usize = 8;

/// A biquad low-pass (transposed direct form II) with FluidSynth's Q and gain rules.
///
/// The recursion runs [`FILTER_BLOCK`] frames at a time in its block form: the
/// block's outputs are its inputs through the impulse response's first taps plus the
/// response to the state it starts from, so the eight outputs are independent sums
/// (vector code) and only the state carries from block to block. That shortens the
/// chain of dependent operations per frame several times over. The block's
/// coefficients are computed when the cutoff moves, and not again while it holds.
/// The output equals the frame-by-frame recursion's to within -72 dB of full scale
/// (at the lowest cutoffs; far closer above a few hundred Hz; the test
/// `block_filter_matches_the_frame_recursion` below measures it).
#[derive(Clone, Copy, Debug)]
struct LowPass {
    b0: f32,
    b1: f32,
    a1: f32,
    a2: f32,
    z1: f32,
    z2: f32,
    /// The cutoff (cents) and resonance (centibels) the coefficients are for.
    fc_cents: f32,
    q_cb: f32,
    /// The linear Q of `q_cb` and its passband gain (1/sqrt(Q)).
    q: f32,
    q_gain: f32,
    /// The impulse response's first [`FILTER_BLOCK`] taps after as many zeros: how
    /// input frame `j` of a block reaches output frame `k` is `taps[FILTER_BLOCK - j
    /// + k]` (the response delayed by `j`), so each input's row is a window of this
    /// (kept once, not once per input: a smaller voice). `from_z1[k]`, `from_z2[k]`:
    /// how the state at the block's start reaches output frame `k`.
    taps: [f32; 2 * FILTER_BLOCK],
    from_z1: [f32; FILTER_BLOCK],
    from_z2: [f32; FILTER_BLOCK],
}

impl Default for LowPass {
    fn default() -> Self {
        LowPass {
            b0: 0.0,
            b1: 0.0,
            a1: 0.0,
            a2: 0.0,
            z1: 0.0,
            z2: 0.0,
            fc_cents: f32::NAN,
            q_cb: f32::NAN,
            q: 1.0,
            q_gain: 1.0,
            taps: [0.0; 2 * FILTER_BLOCK],
            from_z1: [0.0; FILTER_BLOCK],
            from_z2: [0.0; FILTER_BLOCK],
        }
    }
}

impl LowPass {
    /// Sets the cutoff in absolute cents and the resonance in centibels; nothing is
    /// computed when they have not moved.
    fn set(&mut self, fc_cents: f32, q_cb: f32, sr: f32) {
        if fc_cents == self.fc_cents && q_cb == self.q_cb {
            return;
        }
        self.fc_cents = fc_cents;
        if q_cb != self.q_cb {
            // The resonance is a region's constant: its power once per note, not
            // each time a modulated cutoff moves.
            self.q_cb = q_cb;
            let q_db = (q_cb / 10.0).clamp(0.0, 96.0) - 3.01;
            self.q = 10f32.powf(q_db / 20.0);
            self.q_gain = 1.0 / self.q.sqrt();
        }
        let (q, gain) = (self.q, self.q_gain);
        let fc = (CENT0_HZ * (fc_cents / 1200.0).exp2()).clamp(5.0, 0.45 * sr);
        let w = std::f32::consts::TAU * fc / sr;
        let (sin, cos) = w.sin_cos();
        let alpha = sin / (2.0 * q);
        let a0_inv = 1.0 / (1.0 + alpha);
        self.b1 = (1.0 - cos) * a0_inv * gain;
        self.b0 = self.b1 * 0.5;
        self.a1 = -2.0 * cos * a0_inv;
        self.a2 = (1.0 - alpha) * a0_inv;
        // The block form: the responses to an impulse and to each state variable.
        let (b0, b1, a1, a2) = (self.b0, self.b1, self.a1, self.a2);
        let respond = |mut x0: f32, mut z1: f32, mut z2: f32| {
            let mut y = [0.0f32; FILTER_BLOCK];
            for v in y.iter_mut() {
                *v = b0 * x0 + z1;
                z1 = b1 * x0 - a1 * *v + z2;
                z2 = b0 * x0 - a2 * *v;
                x0 = 0.0;
            }
            y
        };
        self.taps[FILTER_BLOCK..].copy_from_slice(&respond(1.0, 0.0, 0.0));
        self.from_z1 = respond(0.0, 1.0, 0.0);
        self.from_z2 = respond(0.0, 0.0, 1.0);
    }

    /// Filters `buf` in place. Dispatches to the vector build where the processor has
    /// AVX2 and FMA (the same sums, each product fused with its addition). The tests' entry:
    /// a voice checks the processor once per segment ([`LowPass::run_with`]).
    #[cfg(test)]
    #[inline]
    fn run(&mut self, buf: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        if vector_units() {
            // SAFETY: the processor has AVX2 and FMA (checked just above).
            unsafe { self.run_avx2(buf) };
            return;
        }
        self.run_body(buf);
    }

    /// The AVX2 and FMA build, written out: the response rows and the state's columns
    /// stay in registers for the whole run, and each block is the same products summed
    /// in the same order as [`LowPass::run_body`], each product fused with its
    /// addition (one rounding instead of two: within 5e-5 of full scale of the plain
    /// body at the lowest cutoff, `vector_filter_matches_the_plain_build`); under half
    /// the instructions of the compiler's build of the body. The inputs' part of a
    /// block is summed first and the state's added last, so that only two fused
    /// operations, not ten, wait on the state the block before left: the blocks'
    /// chain of dependent operations is what the filter's time went on.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    fn run_avx2(&mut self, buf: &mut [f32]) {
        use std::arch::x86_64::*;
        let (b0, b1, a1, a2) = (self.b0, self.b1, self.a1, self.a2);
        let (mut z1, mut z2) = (self.z1, self.z2);
        let whole = buf.len() / FILTER_BLOCK * FILTER_BLOCK;
        let p = buf.as_mut_ptr();
        // SAFETY: AVX2 and FMA are enabled for this function; the rows read `taps[8 - j..16 - j]`
        // for j in 0..8, inside its 16 floats; the blocks read and write
        // `buf[i..i + 8]` with i + 8 <= whole <= buf.len().
        unsafe {
            let fz1 = _mm256_loadu_ps(self.from_z1.as_ptr());
            let fz2 = _mm256_loadu_ps(self.from_z2.as_ptr());
            let taps = self.taps.as_ptr();
            let rows: [__m256; FILTER_BLOCK] = std::array::from_fn(|j| _mm256_loadu_ps(taps.add(FILTER_BLOCK - j)));
            let mut i = 0;
            while i < whole {
                let x = p.add(i);
                // The inputs' part (two sums, even and odd inputs), which does not wait
                // for the state, then the state's: only that waits on the block before.
                let mut even = _mm256_mul_ps(rows[0], _mm256_broadcast_ss(&*x));
                let mut odd = _mm256_mul_ps(rows[1], _mm256_broadcast_ss(&*x.add(1)));
                for j in (2..FILTER_BLOCK).step_by(2) {
                    even = _mm256_fmadd_ps(rows[j], _mm256_broadcast_ss(&*x.add(j)), even);
                    odd = _mm256_fmadd_ps(rows[j + 1], _mm256_broadcast_ss(&*x.add(j + 1)), odd);
                }
                let y = _mm256_add_ps(even, odd);
                let y = _mm256_fmadd_ps(fz1, _mm256_set1_ps(z1), y);
                let y = _mm256_fmadd_ps(fz2, _mm256_set1_ps(z2), y);
                // The state after the block, from its last two frames.
                let (x6, x7) = (*x.add(6), *x.add(7));
                _mm256_storeu_ps(x, y);
                let (y6, y7) = (*x.add(6), *x.add(7));
                z1 = b1 * x7 - a1 * y7 + (b0 * x6 - a2 * y6);
                z2 = b0 * x7 - a2 * y7;
                i += FILTER_BLOCK;
            }
        }
        self.finish(&mut buf[whole..], z1, z2);
    }

    /// `LowPass::run` (the tests' entry) with the processor's AVX2 and FMA already checked (`AVX2`).
    #[inline(always)]
    fn run_with<const AVX2: bool>(&mut self, buf: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        if AVX2 {
            // SAFETY: `AVX2` is true only where the processor has AVX2 and FMA.
            unsafe { self.run_avx2(buf) };
            return;
        }
        self.run_body(buf);
    }

    #[inline(always)]
    fn run_body(&mut self, buf: &mut [f32]) {
        let (b0, b1, a1, a2) = (self.b0, self.b1, self.a1, self.a2);
        let (mut z1, mut z2) = (self.z1, self.z2);
        let mut blocks = buf.chunks_exact_mut(FILTER_BLOCK);
        for block in &mut blocks {
            let x: [f32; FILTER_BLOCK] = (&*block).try_into().unwrap_or([0.0; FILTER_BLOCK]);
            // The inputs' part (even and odd inputs summed apart), then the state's.
            let row = |j: usize| &self.taps[FILTER_BLOCK - j..2 * FILTER_BLOCK - j];
            let mut even: [f32; FILTER_BLOCK] = std::array::from_fn(|k| row(0)[k] * x[0]);
            let mut odd: [f32; FILTER_BLOCK] = std::array::from_fn(|k| row(1)[k] * x[1]);
            for j in (2..FILTER_BLOCK).step_by(2) {
                for ((e, o), (te, to)) in even.iter_mut().zip(odd.iter_mut()).zip(row(j).iter().zip(row(j + 1))) {
                    *e += te * x[j];
                    *o += to * x[j + 1];
                }
            }
            let y: [f32; FILTER_BLOCK] =
                std::array::from_fn(|k| even[k] + odd[k] + self.from_z1[k] * z1 + self.from_z2[k] * z2);
            // The state after the block, from its last two frames.
            let (x6, x7, y6, y7) = (x[6], x[7], y[6], y[7]);
            z1 = b1 * x7 - a1 * y7 + (b0 * x6 - a2 * y6);
            z2 = b0 * x7 - a2 * y7;
            block.copy_from_slice(&y);
        }
        self.finish(blocks.into_remainder(), z1, z2);
    }

    /// The frames after the whole blocks, one at a time, and the state kept (reset
    /// if it has blown up).
    #[inline(always)]
    fn finish(&mut self, rest: &mut [f32], mut z1: f32, mut z2: f32) {
        let (b0, b1, a1, a2) = (self.b0, self.b1, self.a1, self.a2);
        for x in rest {
            let y = b0 * *x + z1;
            z1 = b1 * *x - a1 * y + z2;
            z2 = b0 * *x - a2 * y;
            *x = y;
        }
        if !(z1.is_finite() && z2.is_finite()) {
            z1 = 0.0;
            z2 = 0.0;
        }
        self.z1 = z1;
        self.z2 = z2;
    }
}

/// The position's fractional part, to 24 bits (what an f32 holds exactly).
#[inline(always)]
fn fraction(phase: u64) -> f32 {
    ((phase as u32) >> 8) as i32 as f32 * (1.0 / 16_777_216.0)
}

/// A linear gain ramp: frame `i` of a segment (counted from 0) takes
/// `a0 + da * (i + 1)`.
#[derive(Clone, Copy)]
struct Ramp {
    a0: f32,
    da: f32,
    /// The segment frame of the run's first frame.
    from: usize,
}

/// The largest step, in points a frame (32.32 fixed point), at which eight frames'
/// points always lie within the 16 points of [`interpolate_run_avx2`]'s window: the
/// first frame's point k reads k-1..k+2, the eighth's at most k + 12 reads up to k + 14.
#[cfg(target_arch = "x86_64")]
const WINDOW_MAX_STEP: u64 = (12u64 << 32) / 7;

/// Frames per pass of [`interpolate_run`]: the points are gathered for this many
/// frames, then interpolated together (which the compiler turns into vector code).
const RUN_CHUNK: usize = 16;

/// Interpolates `out.len()` frames (Catmull-Rom, four points) from `pcm` starting at
/// the 32.32 position `phase` and stepping `inc`, with the gain ramp applied; every
/// frame's four points must lie inside `pcm`. Returns the position after the run.
/// Dispatches to the vector build where the processor has AVX2 and FMA (the same
/// interpolation with fused multiply-adds). The tests' entry: a voice checks the
/// processor once per segment ([`interpolate_with`]).
#[cfg(test)]
#[inline]
fn interpolate_run(pcm: &[i16], phase: u64, inc: u64, ramp: Ramp, out: &mut [f32]) -> u64 {
    #[cfg(target_arch = "x86_64")]
    if vector_units() {
        // SAFETY: the processor has AVX2 and FMA (checked just above).
        return unsafe { interpolate_run_avx2::<true>(pcm, phase, inc, ramp, out) };
    }
    interpolate_run_body(pcm, phase, inc, ramp, out)
}

/// `interpolate_run` (the tests' entry) with the processor's AVX2 and FMA already checked (`AVX2`).
#[inline(always)]
fn interpolate_with<const AVX2: bool>(pcm: &[i16], phase: u64, inc: u64, ramp: Ramp, out: &mut [f32]) -> u64 {
    #[cfg(target_arch = "x86_64")]
    if AVX2 {
        // SAFETY: `AVX2` is true only where the processor has AVX2 and FMA.
        return unsafe { interpolate_run_avx2::<true>(pcm, phase, inc, ramp, out) };
    }
    interpolate_run_body(pcm, phase, inc, ramp, out)
}

/// The AVX2 and FMA build: eight frames at a time, each frame's four points fetched by
/// two gathers of two neighbouring 16-bit points each (the positions computed in
/// 64-bit lanes), then the same interpolation and ramp as [`interpolate_run_body`]
/// with each multiply and add that follow each other fused (one rounding instead of
/// two: within 1e-6 of the sample's full scale of the plain body,
/// `vector_interpolation_matches_the_plain_build`; eight instructions fewer per eight
/// frames). The frames left over (fewer than eight) take the plain body.
///
/// With `WINDOW`, eight frames whose points lie within 16 neighbouring points (a step
/// of at most [`WINDOW_MAX_STEP`], 12/7 points a frame, the usual case) read them instead
/// from two unaligned loads of those points (the second one point on), each frame's
/// pairs picked out by permutes: the same points as the gathers, so the same output
/// bit for bit (`window_reads_the_points_the_gathers_read`), at a fraction of the
/// gathers' cost. Groups too wide, or too near the end of `pcm` for the loads, gather.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn interpolate_run_avx2<const WINDOW: bool>(pcm: &[i16], mut phase: u64, inc: u64, ramp: Ramp, out: &mut [f32]) -> u64 {
    use std::arch::x86_64::*;
    let n = out.len();
    // Gathers take 32-bit indices: a pool beyond that takes the plain body.
    if n < 8 || pcm.len() >= i32::MAX as usize {
        return interpolate_run_body(pcm, phase, inc, ramp, out);
    }
    let whole = n / 8 * 8;
    // The last frame of the whole groups must keep its points inside `pcm`, which the
    // caller guarantees for every frame; checked here once per run.
    let last = phase.wrapping_add(inc.wrapping_mul(whole as u64 - 1));
    let (k0, k1) = ((phase >> 32) as usize, (last >> 32) as usize);
    assert!(k0 >= 1 && k1 + 3 <= pcm.len() && last >= phase, "interpolation run outside its sample");
    let base = pcm.as_ptr() as *const i32;
    // SAFETY: AVX2 and FMA are enabled for this function; every gathered address lies inside
    // `pcm` (frame `k` reads points k-1..k+3, and k0 <= k <= k1 were checked above);
    // the stores write `out[i..i + 8]` with i + 8 <= whole <= n.
    unsafe {
        let inc4 = _mm256_set1_epi64x(inc.wrapping_mul(4) as i64);
        let inc8 = _mm256_set1_epi64x(inc.wrapping_mul(8) as i64);
        let steps = _mm256_set_epi64x(3 * inc as i64, 2 * inc as i64, inc as i64, 0);
        let mut ph_a = _mm256_add_epi64(_mm256_set1_epi64x(phase as i64), steps);
        let mut ph_b = _mm256_add_epi64(ph_a, inc4);
        // Low and high 32-bit halves of four 64-bit lanes, to the low and high 128 bits.
        let split = _mm256_set_epi32(7, 5, 3, 1, 6, 4, 2, 0);
        let one = _mm256_set1_epi32(1);
        let scale = _mm256_set1_ps(1.0 / 16_777_216.0);
        let (half, two_half, two, one_half) =
            (_mm256_set1_ps(0.5), _mm256_set1_ps(2.5), _mm256_set1_ps(2.0), _mm256_set1_ps(1.5));
        let (a0, da) = (_mm256_set1_ps(ramp.a0), _mm256_set1_ps(ramp.da));
        let lanes = _mm256_set_epi32(7, 6, 5, 4, 3, 2, 1, 0);
        let mut at = _mm256_add_epi32(_mm256_set1_epi32((ramp.from + 1) as i32), lanes);
        let eight = _mm256_set1_epi32(8);
        let narrow = inc <= WINDOW_MAX_STEP;
        // The first frame of the group's position.
        let mut ph = phase;
        let mut i = 0;
        while i < whole {
            let (sa, sb) = (_mm256_permutevar8x32_epi32(ph_a, split), _mm256_permutevar8x32_epi32(ph_b, split));
            let lo = _mm256_permute2x128_si256(sa, sb, 0x20);
            let hi = _mm256_permute2x128_si256(sa, sb, 0x31);
            let t = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32(lo, 8)), scale);
            let kf = (ph >> 32) as usize;
            let (g01, g23) = if WINDOW && narrow && kf + 16 <= pcm.len() {
                // Points kf-1..kf+14 as pairs from kf-1 (`l0`) and from kf (`l1`): the
                // pair that starts at a frame's point k-1 is word (k-kf)/2 of `l0` when
                // k-kf is even, of `l1` when it is odd; the pair from k+1 the word after.
                let p = pcm.as_ptr().add(kf - 1);
                let l0 = _mm256_loadu_si256(p as *const __m256i);
                let l1 = _mm256_loadu_si256(p.add(1) as *const __m256i);
                let o = _mm256_sub_epi32(hi, _mm256_set1_epi32(kf as i32));
                let w = _mm256_srli_epi32(o, 1);
                let odd = _mm256_castsi256_ps(_mm256_slli_epi32(o, 31));
                // The pair at word `w` of `l0`, or of `l1` where the offset is odd.
                let pick = |w| {
                    _mm256_castps_si256(_mm256_blendv_ps(
                        _mm256_castsi256_ps(_mm256_permutevar8x32_epi32(l0, w)),
                        _mm256_castsi256_ps(_mm256_permutevar8x32_epi32(l1, w)),
                        odd,
                    ))
                };
                (pick(w), pick(_mm256_add_epi32(w, one)))
            } else {
                (
                    _mm256_i32gather_epi32::<2>(base, _mm256_sub_epi32(hi, one)),
                    _mm256_i32gather_epi32::<2>(base, _mm256_add_epi32(hi, one)),
                )
            };
            let p0 = _mm256_cvtepi32_ps(_mm256_srai_epi32(_mm256_slli_epi32(g01, 16), 16));
            let p1 = _mm256_cvtepi32_ps(_mm256_srai_epi32(g01, 16));
            let p2 = _mm256_cvtepi32_ps(_mm256_srai_epi32(_mm256_slli_epi32(g23, 16), 16));
            let p3 = _mm256_cvtepi32_ps(_mm256_srai_epi32(g23, 16));
            // c1 = 0.5 (p2 - p0); c2 = p0 - 2.5 p1 + 2 p2 - 0.5 p3; c3 = 0.5 (p3 - p0) + 1.5 (p1 - p2)
            // (fused multiply-adds: one rounding where the plain body has two)
            let c1 = _mm256_mul_ps(half, _mm256_sub_ps(p2, p0));
            let c2 = _mm256_fnmadd_ps(half, p3, _mm256_fmadd_ps(two, p2, _mm256_fnmadd_ps(two_half, p1, p0)));
            let c3 = _mm256_fmadd_ps(half, _mm256_sub_ps(p3, p0), _mm256_mul_ps(one_half, _mm256_sub_ps(p1, p2)));
            let gain = _mm256_fmadd_ps(da, _mm256_cvtepi32_ps(at), a0);
            let y = _mm256_fmadd_ps(_mm256_fmadd_ps(c3, t, c2), t, c1);
            let y = _mm256_mul_ps(_mm256_fmadd_ps(y, t, p1), gain);
            _mm256_storeu_ps(out.as_mut_ptr().add(i), y);
            ph_a = _mm256_add_epi64(ph_a, inc8);
            ph_b = _mm256_add_epi64(ph_b, inc8);
            at = _mm256_add_epi32(at, eight);
            ph = ph.wrapping_add(inc.wrapping_mul(8));
            i += 8;
        }
    }
    phase = phase.wrapping_add(inc.wrapping_mul(whole as u64));
    if whole == n {
        return phase;
    }
    interpolate_run_body(pcm, phase, inc, Ramp { from: ramp.from + whole, ..ramp }, &mut out[whole..])
}

#[inline(always)]
fn interpolate_run_body(pcm: &[i16], mut phase: u64, inc: u64, ramp: Ramp, out: &mut [f32]) -> u64 {
    let mut at = ramp.from;
    for chunk in out.chunks_mut(RUN_CHUNK) {
        let m = chunk.len();
        let mut pts = [[0i32; RUN_CHUNK]; 4];
        let mut frac = [0i32; RUN_CHUNK];
        for j in 0..m {
            let k = (phase >> 32) as usize;
            frac[j] = ((phase as u32) >> 8) as i32;
            let p = &pcm[k - 1..k + 3];
            pts[0][j] = p[0] as i32;
            pts[1][j] = p[1] as i32;
            pts[2][j] = p[2] as i32;
            pts[3][j] = p[3] as i32;
            phase = phase.wrapping_add(inc);
        }
        // A whole chunk at a time (fixed length: straight vector code), the unused
        // tail of a short chunk computed from zeros and left out.
        let [q0, q1, q2, q3] = &pts;
        let mut y = [0f32; RUN_CHUNK];
        let base = (at + 1) as i32;
        for j in 0..RUN_CHUNK {
            let t = frac[j] as f32 * (1.0 / 16_777_216.0);
            let (p0, p1, p2, p3) = (q0[j] as f32, q1[j] as f32, q2[j] as f32, q3[j] as f32);
            // Catmull-Rom.
            let c1 = 0.5 * (p2 - p0);
            let c2 = p0 - 2.5 * p1 + 2.0 * p2 - 0.5 * p3;
            let c3 = 0.5 * (p3 - p0) + 1.5 * (p1 - p2);
            let gain = ramp.a0 + ramp.da * (base + j as i32) as f32;
            y[j] = (((c3 * t + c2) * t + c1) * t + p1) * gain;
        }
        match <&mut [f32; RUN_CHUNK]>::try_from(&mut *chunk) {
            Ok(whole) => *whole = y,
            Err(_) => {
                for (w, v) in chunk.iter_mut().zip(y) {
                    *w = v;
                }
            }
        }
        at += m;
    }
    phase
}

/// Per-segment values kept from the last segment, so that what has not moved costs
/// no exponential again (a held note's pitch, level and attenuation).
#[derive(Clone, Copy, Debug)]
struct Cache {
    /// Cents of the last pitch and its 32.32 position step.
    cents: f32,
    inc: u64,
    /// The volume envelope's last value (past the attack) and its gain.
    env_value: f32,
    env_gain: f32,
    /// The last modulation-LFO attenuation and expression, and their gain with the
    /// note's own attenuation.
    lfo_cb: f32,
    expression: u8,
    attenuation: f32,
}

impl Cache {
    /// Nothing computed yet (NaN matches no value).
    const EMPTY: Cache = Cache {
        cents: f32::NAN,
        inc: 0,
        env_value: f32::NAN,
        env_gain: 0.0,
        lfo_cb: f32::NAN,
        expression: 0,
        attenuation: 0.0,
    };
}

/// What a sample voice reads from its channel each segment.
#[derive(Clone, Copy, Debug)]
pub struct ChannelControls {
    /// Pitch bend in semitones (already scaled by the bend range).
    pub bend: f32,
    /// CC1 and channel pressure, 0..127.
    pub mod_wheel: u8,
    pub pressure: u8,
    /// CC11, 0..127.
    pub expression: u8,
    /// CC91 and CC93, 0..127.
    pub reverb: u8,
    pub chorus: u8,
}

impl Default for ChannelControls {
    fn default() -> Self {
        ChannelControls { bend: 0.0, mod_wheel: 0, pressure: 0, expression: 127, reverb: 40, chorus: 0 }
    }
}

/// Where a sample voice's segment goes: the channel's stereo input and its sends.
pub struct SampleOut<'a> {
    pub left: &'a mut [f32],
    pub right: &'a mut [f32],
    pub chorus: &'a mut [f32],
    pub reverb: &'a mut [f32],
    /// Set when the voice wrote into the sends.
    pub sent: &'a mut bool,
}

/// The sample-playing part of a voice.
#[derive(Clone, Copy, Debug)]
pub struct SampleVoice {
    pub region: Region,
    /// 32.32 fixed-point position in the pcm, in frames.
    phase: u64,
    /// The key and velocity that drive the region (its fixed ones if it has them).
    key: u8,
    vel: u8,
    released: bool,
    volenv: SfEnv,
    modenv: SfEnv,
    mod_lfo: Lfo,
    vib_lfo: Lfo,
    filter: LowPass,
    filter_on: bool,
    /// The modulation LFO and envelope reach something (a depth is not zero).
    mod_lfo_on: bool,
    modenv_on: bool,
    /// Frames the vibrato LFO has not yet run while nothing used it.
    vib_owed: u32,
    /// Gain at the end of the last segment (the next ramps from it).
    amp: f32,
    /// The position has wrapped from the loop's end at least once.
    looped: bool,
    /// Attenuation fixed at note-on (region and velocity), in centibels.
    static_cb: f32,
    /// Cutoff fixed at note-on (region and velocity), in cents.
    static_fc: f32,
    /// Pitch fixed at note-on, in cents from the sample's recorded pitch.
    static_cents: f32,
    /// The sample's rate over the engine's.
    rate_ratio: f64,
    /// Left and right gains of the region's pan.
    pan_gains: (f32, f32),
    cache: Cache,
    pub done: bool,
}

impl SampleVoice {
    pub fn idle() -> SampleVoice {
        SampleVoice {
            region: Region { shape: Shape::OneShot, ..Region::default() },
            phase: 0,
            key: 0,
            vel: 0,
            released: false,
            volenv: SfEnv::IDLE,
            modenv: SfEnv::IDLE,
            mod_lfo: Lfo { delay: 0, phase: 0.0, step: 0.0 },
            vib_lfo: Lfo { delay: 0, phase: 0.0, step: 0.0 },
            filter: LowPass::default(),
            filter_on: false,
            mod_lfo_on: false,
            modenv_on: false,
            vib_owed: 0,
            amp: 0.0,
            looped: false,
            static_cb: 0.0,
            static_fc: 0.0,
            static_cents: 0.0,
            rate_ratio: 1.0,
            pan_gains: (1.0, 1.0),
            cache: Cache::EMPTY,
            done: true,
        }
    }

    /// Starts `region` for a note. Audio thread.
    pub fn start(&mut self, region: &Region, key: u8, vel: u8, sr: f32) {
        let key = if region.fixed_key >= 0 { region.fixed_key as u8 } else { key };
        let vel = if region.fixed_vel >= 0 { region.fixed_vel as u8 } else { vel };
        self.region = *region;
        self.phase = (region.start as u64) << 32;
        self.key = key;
        self.vel = vel;
        self.released = false;
        self.volenv = SfEnv::start(&region.vol_env, key, sr);
        self.modenv = SfEnv::start(&region.mod_env, key, sr);
        self.mod_lfo = Lfo::new(region.mod_lfo_delay, region.mod_lfo_freq, sr);
        self.vib_lfo = Lfo::new(region.vib_lfo_delay, region.vib_lfo_freq, sr);
        self.filter = LowPass::default();
        self.mod_lfo_on = region.mod_lfo_to_pitch != 0.0 || region.mod_lfo_to_fc != 0.0 || region.mod_lfo_to_vol != 0.0;
        self.modenv_on = region.mod_env_to_pitch != 0.0 || region.mod_env_to_fc != 0.0;
        self.vib_owed = 0;
        self.cache = Cache::EMPTY;
        self.amp = 0.0;
        self.looped = false;
        self.done = false;
        self.static_cb = region.attenuation_cb + controller_attenuation_cb(vel.max(1));
        // The SoundFont spec's default velocity-to-cutoff modulator is left out, as
        // FluidSynth leaves it out (it dulls fonts made without it in mind).
        self.static_fc = region.filter_fc;
        self.filter_on = self.static_fc < OPEN_FC_CENTS
            || region.filter_q > 0.0
            || region.mod_env_to_fc != 0.0
            || region.mod_lfo_to_fc != 0.0;
        self.static_cents = region.scale_tuning * (key as f32 * 100.0 - region.root_cents) / 100.0 + region.tune_cents;
        self.rate_ratio = region.sample_rate as f64 / sr as f64;
        let pan = ((region.pan + 500.0) / 1000.0).clamp(0.0, 1.0) * std::f32::consts::FRAC_PI_2;
        self.pan_gains = (pan.cos() * std::f32::consts::SQRT_2, pan.sin() * std::f32::consts::SQRT_2);
        if region.shape == Shape::OneShot {
            // A hit: full level from its first frame, no envelope.
            self.volenv.stage = EnvStage::Sustain;
            self.volenv.value = 1.0;
            self.volenv.sustain = 1.0;
        }
    }

    /// Key up (or pedal up): the envelopes release; an until-release loop lets go.
    pub fn release(&mut self) {
        if self.region.shape == Shape::OneShot {
            return;
        }
        self.released = true;
        self.volenv.release(true);
        self.modenv.release(false);
    }

    pub fn is_released(&self) -> bool {
        self.released
    }

    fn looping(&self) -> bool {
        match self.region.loop_mode {
            LoopMode::None => false,
            LoopMode::Continuous => true,
            LoopMode::UntilRelease => !self.released,
        }
    }

    /// A frame of the pcm at index `j`, following the loop or the sample's ends.
    #[inline]
    fn fetch(&self, pcm: &[i16], j: i64, looping: bool) -> f32 {
        let r = &self.region;
        let mut j = j;
        if looping {
            let len = (r.loop_end - r.loop_start) as i64;
            while j >= r.loop_end as i64 {
                j -= len;
            }
            if self.looped && j < r.loop_start as i64 {
                // Before the loop's start on a later pass: the loop's own end.
                j += len;
            }
        } else if j >= r.end as i64 {
            return 0.0;
        }
        let j = j.max(r.start as i64) as usize;
        pcm.get(j).map_or(0.0, |&s| s as f32)
    }

    /// Renders a segment: the interpolated sample through the filter and gain, into
    /// `out` and the sends. `wave` is scratch of the segment's length. `env_gain`
    /// is the channel envelope's gain at the end of the segment for regions shaped
    /// by the channel (1 otherwise). Audio thread.
    ///
    /// On a processor with AVX2 and FMA the whole segment runs in a build for them, so
    /// the vector parts (interpolation, filter, mix) are chosen once per segment
    /// rather than once each.
    pub fn render(
        &mut self,
        pcm: &[i16],
        ctl: &ChannelControls,
        env_gain: f32,
        sr: f32,
        wave: &mut [f32],
        out: SampleOut,
    ) {
        if self.done {
            return;
        }
        #[cfg(target_arch = "x86_64")]
        if vector_units() {
            // SAFETY: the processor has AVX2 and FMA (checked just above).
            unsafe { self.render_avx2(pcm, ctl, env_gain, sr, wave, out) };
            return;
        }
        self.render_plain(pcm, ctl, env_gain, sr, wave, out);
    }

    /// The build for a processor without AVX2 and FMA, out of line so that
    /// [`SampleVoice::render`] stays a thin dispatch (no stack frame of its own).
    #[inline(never)]
    fn render_plain(
        &mut self,
        pcm: &[i16],
        ctl: &ChannelControls,
        env_gain: f32,
        sr: f32,
        wave: &mut [f32],
        out: SampleOut,
    ) {
        self.render_body::<false>(pcm, ctl, env_gain, sr, wave, out);
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    fn render_avx2(
        &mut self,
        pcm: &[i16],
        ctl: &ChannelControls,
        env_gain: f32,
        sr: f32,
        wave: &mut [f32],
        out: SampleOut,
    ) {
        self.render_body::<true>(pcm, ctl, env_gain, sr, wave, out);
    }

    /// [`SampleVoice::render`]'s work; `AVX2`: the processor has AVX2 and FMA (the caller checked).
    #[inline(always)]
    fn render_body<const AVX2: bool>(
        &mut self,
        pcm: &[i16],
        ctl: &ChannelControls,
        env_gain: f32,
        sr: f32,
        wave: &mut [f32],
        out: SampleOut,
    ) {
        let n = wave.len();
        let r = &self.region;
        // Pitch and filter from the envelopes and LFOs at the segment's start. An LFO
        // or envelope that reaches nothing is not run (its value would be multiplied
        // by zero depths); the vibrato LFO, which the mod wheel can reach at any
        // time, catches up on the frames it missed when it is next needed.
        let vib_depth = r.vib_lfo_to_pitch + MOD_WHEEL_VIB_CENTS * (ctl.mod_wheel.max(ctl.pressure) as f32 / 128.0);
        let mod_lfo = if self.mod_lfo_on { self.mod_lfo.value() } else { 0.0 };
        let vib_lfo = if vib_depth != 0.0 {
            if self.vib_owed > 0 {
                self.vib_lfo.advance(self.vib_owed);
                self.vib_owed = 0;
            }
            self.vib_lfo.value()
        } else {
            0.0
        };
        let modenv = if self.modenv_on { self.modenv.mod_value() } else { 0.0 };
        let cents = self.static_cents
            + 100.0 * ctl.bend
            + r.mod_env_to_pitch * modenv
            + r.mod_lfo_to_pitch * mod_lfo
            + vib_depth * vib_lfo;
        if cents != self.cache.cents {
            let ratio = self.rate_ratio * ((cents / 1200.0) as f64).exp2();
            self.cache.cents = cents;
            self.cache.inc = (ratio * 4_294_967_296.0).clamp(0.0, 1.099_511_627_776e12) as u64;
        }
        let inc = self.cache.inc;
        if self.filter_on {
            let fc = self.static_fc + r.mod_env_to_fc * modenv + r.mod_lfo_to_fc * mod_lfo;
            self.filter.set(fc, r.filter_q, sr);
        }

        // Envelopes and LFOs move on; the gain ramps to its value at the segment's end.
        self.volenv.advance(n as u32);
        if self.modenv_on {
            self.modenv.advance(n as u32);
        }
        let lfo_cb = if self.mod_lfo_on {
            self.mod_lfo.advance(n as u32);
            -r.mod_lfo_to_vol * self.mod_lfo.value()
        } else {
            0.0
        };
        if vib_depth != 0.0 {
            self.vib_lfo.advance(n as u32);
        } else {
            self.vib_owed = self.vib_owed.saturating_add(n as u32);
        }
        let env = match r.shape {
            Shape::Channel => env_gain,
            _ if self.volenv.stage == EnvStage::Attack => self.volenv.volume_gain(),
            _ => {
                if self.volenv.value != self.cache.env_value {
                    self.cache.env_value = self.volenv.value;
                    self.cache.env_gain = self.volenv.volume_gain();
                }
                self.cache.env_gain
            }
        };
        let target = if self.volenv.stage == EnvStage::Done && r.shape != Shape::Channel {
            self.done = true;
            0.0
        } else {
            // A bypassed filter still brings its passband gain (1/sqrt(Q), +1.5 dB at no
            // resonance), so loudness does not jump where the filter switches off.
            let bypass = if self.filter_on { 1.0 } else { BYPASS_GAIN };
            if lfo_cb != self.cache.lfo_cb || ctl.expression != self.cache.expression {
                self.cache.lfo_cb = lfo_cb;
                self.cache.expression = ctl.expression;
                self.cache.attenuation =
                    cb_to_gain(self.static_cb + lfo_cb + controller_attenuation_cb(ctl.expression));
            }
            env * bypass * self.cache.attenuation * (1.0 / 32768.0)
        };
        if matches!(self.volenv.stage, EnvStage::Release | EnvStage::Decay) && target * 32768.0 * r.peak < NOISE_FLOOR {
            self.done = true;
        }
        let a0 = self.amp;
        let da = (target - a0) / n as f32;
        self.amp = target;

        // The sends' levels (the region's own and the channel's CC91 and CC93).
        let rev = (r.reverb + 0.2 * ctl.reverb as f32 / 128.0).min(1.0);
        let cho = (r.chorus + 0.2 * ctl.chorus as f32 / 128.0).min(1.0);

        // Interpolate the segment with the gain ramp: in one run when every frame's
        // four points lie inside the sample (the usual case), else piece by piece.
        let looping = self.looping();
        let limit = (if looping { r.loop_end } else { r.end } as usize).min(pcm.len());
        let idx = (self.phase >> 32) as usize;
        let last = (self.phase.wrapping_add(inc.wrapping_mul((n as u64).saturating_sub(1))) >> 32) as usize;
        let (phase, ended_at) = if n > 0 && idx > r.start as usize && idx <= last && last + 3 <= limit {
            let ramp = Ramp { a0, da, from: 0 };
            (interpolate_with::<AVX2>(&pcm[..limit], self.phase, inc, ramp, wave), n)
        } else {
            self.interpolate_pieces::<AVX2>(pcm, inc, a0, da, wave)
        };
        self.phase = phase;
        if ended_at < n {
            wave[ended_at..].fill(0.0);
            self.done = true;
        }
        if a0 == 0.0 && target == 0.0 {
            return;
        }
        if self.filter_on {
            self.filter.run_with::<AVX2>(&mut wave[..ended_at]);
        }

        // Pan (constant power, scaled by sqrt 2 so a centred voice keeps its level
        // through the bus's own centred pan) and sends, in one pass.
        let (gl, gr) = self.pan_gains;
        let w = &wave[..n];
        let (l, rr) = (&mut out.left[..n], &mut out.right[..n]);
        if rev > 0.0 && cho > 0.0 {
            let (rs, cs) = (&mut out.reverb[..n], &mut out.chorus[..n]);
            mix_with::<AVX2, 4>(w, [gl, gr, rev, cho], [l, rr, rs, cs]);
            *out.sent = true;
            return;
        }
        mix_with::<AVX2, 2>(w, [gl, gr], [l, rr]);
        if rev > 0.0 {
            mix_with::<AVX2, 1>(w, [rev], [&mut out.reverb[..n]]);
            *out.sent = true;
        }
        if cho > 0.0 {
            mix_with::<AVX2, 1>(w, [cho], [&mut out.chorus[..n]]);
            *out.sent = true;
        }
    }

    /// Interpolates a segment whose frames do not all lie inside the sample, with the
    /// gain ramp: runs of frames whose four points lie inside go straight through;
    /// frames near the loop's seam, the sample's start or its end take the careful
    /// path. Returns the position after the segment and the frame where a sample
    /// without a loop ended (`wave.len()` if it did not). Out of line: most segments
    /// do not need it, and its set-up would cost them.
    #[inline(never)]
    fn interpolate_pieces<const AVX2: bool>(
        &mut self,
        pcm: &[i16],
        inc: u64,
        a0: f32,
        da: f32,
        wave: &mut [f32],
    ) -> (u64, usize) {
        let n = wave.len();
        let r = &self.region;
        let looping = self.looping();
        let (loop_start, loop_end) = ((r.loop_start as u64) << 32, (r.loop_end as u64) << 32);
        let loop_len = loop_end - loop_start;
        let limit = (if looping { r.loop_end } else { r.end } as usize).min(pcm.len());
        let first = r.start as usize + 1;
        // The points about the loop's seam, for the frames whose four points straddle
        // it (the last two before the loop's end): the loop's last three frames, then
        // its first two. Fetched at the segment's first such frame, as `fetch` gives
        // them; a loop of fewer than four frames (whose points depend on the pass)
        // takes `fetch` frame by frame.
        let le = r.loop_end as usize;
        let seam_at = le.wrapping_sub(2);
        let seam_ok = looping && r.loop_end >= r.loop_start.saturating_add(4);
        let mut seam: Option<[f32; 5]> = None;
        let mut phase = self.phase;
        let mut ended_at = n;
        let mut i = 0;
        while i < n {
            let idx = (phase >> 32) as usize;
            if idx >= first && idx + 3 <= limit {
                // Frames until the last point would pass the limit.
                let last = ((limit - 3) as u64) << 32 | 0xFFFF_FFFF;
                let run = (((last - phase) / inc.max(1)) as usize + 1).min(n - i);
                let ramp = Ramp { a0, da, from: i };
                phase = interpolate_with::<AVX2>(&pcm[..limit], phase, inc, ramp, &mut wave[i..i + run]);
                i += run;
                continue;
            }
            if !looping && idx >= r.end as usize {
                ended_at = i;
                break;
            }
            let t = fraction(phase);
            let j = idx as i64;
            let (p0, p1, p2, p3) = match seam_ok && idx.wrapping_sub(seam_at) < 2 {
                true => {
                    let s = match seam {
                        Some(s) => s,
                        None => {
                            let j = le as i64 - 3;
                            let s = [
                                self.fetch(pcm, j, true),
                                self.fetch(pcm, j + 1, true),
                                self.fetch(pcm, j + 2, true),
                                self.fetch(pcm, j + 3, true),
                                self.fetch(pcm, j + 4, true),
                            ];
                            seam = Some(s);
                            s
                        }
                    };
                    let k = idx - seam_at;
                    (s[k], s[k + 1], s[k + 2], s[k + 3])
                }
                false => (
                    self.fetch(pcm, j - 1, looping),
                    self.fetch(pcm, j, looping),
                    self.fetch(pcm, j + 1, looping),
                    self.fetch(pcm, j + 2, looping),
                ),
            };
            let c1 = 0.5 * (p2 - p0);
            let c2 = p0 - 2.5 * p1 + 2.0 * p2 - 0.5 * p3;
            let c3 = 0.5 * (p3 - p0) + 1.5 * (p1 - p2);
            i += 1;
            wave[i - 1] = (((c3 * t + c2) * t + c1) * t + p1) * (a0 + da * i as f32);
            phase = phase.wrapping_add(inc);
            if looping && phase >= loop_end {
                // Back by whole loops to inside it: one loop's length when the step
                // is shorter than the loop (no division), else as many as it takes.
                phase -=
                    if phase - loop_end < loop_len { loop_len } else { loop_len * ((phase - loop_start) / loop_len) };
                self.looped = true;
            }
        }
        (phase, ended_at)
    }
}

/// `mix` (the tests' entry) with the processor's AVX2 and FMA already checked (`AVX2`).
#[inline(always)]
fn mix_with<const AVX2: bool, const K: usize>(w: &[f32], gains: [f32; K], outs: [&mut [f32]; K]) {
    #[cfg(target_arch = "x86_64")]
    if AVX2 {
        // SAFETY: `AVX2` is true only where the processor has AVX2 and FMA.
        unsafe { mix_avx2(w, gains, outs) };
        return;
    }
    mix_body(w, gains, outs);
}

/// Adds `w` scaled by `gains[k]` into `outs[k]` for each of the `K` outputs (each at
/// least `w.len()` long): the pan's two sides and the two sends of a sample voice.
/// Dispatches to the vector build where the processor has AVX2 and FMA (eight frames
/// per instruction, the multiply and add fused: one rounding instead of two). The
/// tests' entry: a voice
/// checks the processor once per segment ([`mix_with`]).
#[cfg(test)]
#[inline]
fn mix<const K: usize>(w: &[f32], gains: [f32; K], outs: [&mut [f32]; K]) {
    #[cfg(target_arch = "x86_64")]
    if vector_units() {
        // SAFETY: the processor has AVX2 and FMA (checked just above).
        unsafe { mix_avx2(w, gains, outs) };
        return;
    }
    mix_body(w, gains, outs);
}

/// The AVX2 and FMA build, written out: eight frames a step, each output loaded, the
/// frame times its gain added in one fused multiply-add, and stored (the compiler's
/// build of [`mix_body`] spent about twice the instructions on the five zipped slices).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn mix_avx2<const K: usize>(w: &[f32], gains: [f32; K], mut outs: [&mut [f32]; K]) {
    use std::arch::x86_64::*;
    let n = w.len();
    assert!(outs.iter().all(|o| o.len() >= n), "a mix output shorter than the voice");
    let whole = n / 8 * 8;
    let ptrs = outs.each_mut().map(|o| o.as_mut_ptr());
    // SAFETY: AVX2 and FMA are enabled for this function; every access is at i..i + 8 with
    // i + 8 <= whole <= n, and every output holds at least n floats (checked above).
    unsafe {
        let g = gains.map(|g| _mm256_set1_ps(g));
        let mut i = 0;
        while i < whole {
            let wv = _mm256_loadu_ps(w.as_ptr().add(i));
            for (o, g) in ptrs.iter().zip(&g) {
                let o = o.add(i);
                _mm256_storeu_ps(o, _mm256_fmadd_ps(wv, *g, _mm256_loadu_ps(o)));
            }
            i += 8;
        }
    }
    for (o, g) in outs.into_iter().zip(gains) {
        for (o, w) in o[whole..n].iter_mut().zip(&w[whole..]) {
            *o += w * g;
        }
    }
}

#[inline(always)]
fn mix_body<const K: usize>(w: &[f32], gains: [f32; K], mut outs: [&mut [f32]; K]) {
    if let ([l, r, rs, cs], &[gl, gr, rev, cho]) = (&mut outs[..], &gains[..]) {
        // The four outputs in one pass over the voice.
        for (((l, r), (rs, cs)), w) in l.iter_mut().zip(r.iter_mut()).zip(rs.iter_mut().zip(cs.iter_mut())).zip(w) {
            *l += w * gl;
            *r += w * gr;
            *rs += w * rev;
            *cs += w * cho;
        }
        return;
    }
    for (o, g) in outs.into_iter().zip(gains) {
        for (o, w) in o.iter_mut().zip(w) {
            *o += w * g;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reproducible test signal in -1..1.
    fn noise(n: usize, seed: u64) -> Vec<f32> {
        let mut x = seed;
        (0..n)
            .map(|_| {
                x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
                ((x >> 40) as f32 / (1u64 << 23) as f32) - 1.0
            })
            .collect()
    }

    /// Largest error of the block form against the exact recursion, for an input
    /// within full scale: -72 dB. Measured: at most 1.9e-4 at the lowest cutoff the
    /// SoundFont allows (19 Hz), where the state's terms nearly cancel, and below
    /// 2e-5 from 350 Hz up; the frame-by-frame recursion in single precision is off by
    /// up to 3e-5.
    const FILTER_BLOCK_TOLERANCE: f64 = 2.5e-4;

    /// The block form of the low-pass against the recursion in double precision (same
    /// coefficients), over cutoffs from 19 Hz to wide open, with and without
    /// resonance, in segments of any length (the state carries across them).
    /// `-- --nocapture` prints both forms' errors.
    #[test]
    fn block_filter_matches_the_frame_recursion() {
        let sr = 48_000.0;
        let input = noise(4096, 3);
        for fc_cents in [1500.0, 4000.0, 6900.0, 9000.0, 11_000.0, 13_500.0] {
            for q_cb in [0.0, 100.0, 300.0, 960.0] {
                let mut block = LowPass::default();
                block.set(fc_cents, q_cb, sr);
                let mut frame = block;
                let (b0, b1, a1, a2) = (block.b0 as f64, block.b1 as f64, block.a1 as f64, block.a2 as f64);
                let (mut z1, mut z2) = (0.0f64, 0.0f64);
                let exact: Vec<f64> = input
                    .iter()
                    .map(|&x| {
                        let x = x as f64;
                        let y = b0 * x + z1;
                        z1 = b1 * x - a1 * y + z2;
                        z2 = b0 * x - a2 * y;
                        y
                    })
                    .collect();
                let mut a = input.clone();
                let mut b = input.clone();
                let mut at = 0;
                for len in [64usize, 13, 7, 1, 64, 200, 31].iter().cycle() {
                    if at >= a.len() {
                        break;
                    }
                    let end = (at + len).min(a.len());
                    block.run(&mut a[at..end]);
                    // The recursion, one frame at a time.
                    for x in &mut b[at..end] {
                        let y = frame.b0 * *x + frame.z1;
                        frame.z1 = frame.b1 * *x - frame.a1 * y + frame.z2;
                        frame.z2 = frame.b0 * *x - frame.a2 * y;
                        *x = y;
                    }
                    at = end;
                }
                let err = |v: &[f32]| v.iter().zip(&exact).fold(0.0f64, |m, (x, y)| m.max((*x as f64 - y).abs()));
                let (e_block, e_frame) = (err(&a), err(&b));
                println!("fc {fc_cents} cents, q {q_cb} cB: block {e_block:.2e}, frame {e_frame:.2e}");
                assert!(
                    e_block <= FILTER_BLOCK_TOLERANCE,
                    "fc {fc_cents} cents, q {q_cb} cB: block form off by {e_block}, the recursion by {e_frame}"
                );
            }
        }
    }

    /// The gain of an attenuation, a power of two now, against `10^(-cb/200)` in
    /// double precision over the whole span a voice reaches (0 to 1440 cB): within
    /// 2e-6 of it, relative (a few units in the last place of an f32).
    #[test]
    fn cb_gain_is_within_2e_6() {
        let mut worst = 0.0f64;
        for i in 0..=14_400 {
            let cb = i as f32 * 0.1;
            let exact = 10f64.powf(-cb as f64 / 200.0);
            worst = worst.max((cb_to_gain(cb) as f64 - exact).abs() / exact);
        }
        println!("cb_to_gain: worst relative error {worst:.2e}");
        assert!(worst <= 2e-6, "cb_to_gain is off by {worst:.2e} of the exact gain");
    }

    /// Largest difference of the fused (AVX2 and FMA) low-pass from the plain body, for
    /// an input within full scale. Measured: 1.45e-5 at the lowest cutoff (19 Hz),
    /// where both forms are further from the exact recursion than that
    /// (`block_filter_matches_the_frame_recursion`), under 4e-6 from 6900 cents up.
    const VECTOR_FILTER_TOLERANCE: f32 = 5e-5;

    /// The vector low-pass follows the plain build within [`VECTOR_FILTER_TOLERANCE`],
    /// over cutoffs low and high, with resonance, in runs of every length (the state
    /// carrying across). `-- --nocapture` prints the differences.
    #[test]
    fn vector_filter_matches_the_plain_build() {
        let input = noise(2048, 13);
        for (fc_cents, q_cb) in [(1500.0, 0.0), (6900.0, 300.0), (11_000.0, 960.0), (13_500.0, 0.0)] {
            let mut fast = LowPass::default();
            fast.set(fc_cents, q_cb, 48_000.0);
            let mut plain = fast;
            let (mut a, mut b) = (input.clone(), input.clone());
            let mut at = 0;
            for len in [64usize, 13, 7, 1, 8, 9, 200, 31].iter().cycle() {
                if at >= a.len() {
                    break;
                }
                let end = (at + len).min(a.len());
                fast.run(&mut a[at..end]);
                plain.run_body(&mut b[at..end]);
                at = end;
            }
            let worst = a.iter().zip(&b).fold(0.0f32, |m, (x, y)| m.max((x - y).abs()));
            println!("fc {fc_cents} cents, q {q_cb} cB: the fused build off by {worst:.2e} of full scale");
            assert!(worst <= VECTOR_FILTER_TOLERANCE, "fc {fc_cents} cents, q {q_cb} cB: off by {worst:.2e}");
        }
    }

    /// The vector mix of a voice into the pan's sides and the sends adds each frame
    /// times its gain to within an f32's rounding, for every segment length up to a
    /// tick, and leaves the frames past the voice alone.
    #[test]
    fn vector_mix_matches_the_plain_loop() {
        let w = noise(64, 5);
        let gains = [0.7, 1.3, 0.25, 0.05];
        for n in [0usize, 1, 7, 8, 9, 31, 63, 64] {
            let start: Vec<Vec<f32>> = (0..4).map(|k| noise(64, 11 + k)).collect();
            let mut outs = start.clone();
            let [a, b, c, d] = &mut outs[..] else { unreachable!() };
            mix(&w[..n], gains, [&mut a[..], &mut b[..], &mut c[..], &mut d[..]]);
            // The fused multiply-add rounds once: within an f32's half unit of the exact
            // sum, the plain loop's within two.
            let near = |got: f32, base: f32, add: f64| {
                let exact = base as f64 + add;
                (got as f64 - exact).abs() <= (1.0 + exact.abs()) * 2.0 * f32::EPSILON as f64
            };
            for k in 0..4 {
                for i in 0..64 {
                    let add = if i < n { w[i] as f64 * gains[k] as f64 } else { 0.0 };
                    assert!(near(outs[k][i], start[k][i], add), "{n} frames, output {k}, frame {i}");
                    if i >= n {
                        assert_eq!(outs[k][i].to_bits(), start[k][i].to_bits(), "past the voice: untouched");
                    }
                }
            }
            let mut one = start[0].clone();
            mix(&w[..n], [gains[2]], [&mut one[..]]);
            assert!((0..64).all(|i| near(
                one[i],
                start[0][i],
                if i < n { w[i] as f64 * gains[2] as f64 } else { 0.0 }
            )));
        }
    }

    /// Largest difference of the fused (AVX2 and FMA) interpolation from the plain
    /// body, of full scale. Measured: 2.2e-7.
    const VECTOR_INTERPOLATION_TOLERANCE: f32 = 1e-6;

    /// The vector interpolation follows the plain build within
    /// [`VECTOR_INTERPOLATION_TOLERANCE`] and ends at the same position, over runs of
    /// every length, speeds below and above the sample's own, and a gain ramp.
    #[test]
    fn vector_interpolation_matches_the_plain_build() {
        let pcm: Vec<i16> = noise(20_000, 9).iter().map(|x| (x * 32_000.0) as i16).collect();
        let mut worst = 0.0f32;
        for inc in [0x4000_0000u64, 0xE000_0000, 0x1_0000_0000, 0x1_2345_6789, 0x3_8000_0001] {
            for len in [1usize, 7, 8, 9, 16, 63, 64, 100] {
                let phase = (5u64 << 32) | 0x1234_5678;
                let ramp = Ramp { a0: 0.25, da: 0.001, from: 3 };
                let mut plain = vec![0.0f32; len];
                let mut fast = vec![0.0f32; len];
                let p1 = interpolate_run_body(&pcm, phase, inc, ramp, &mut plain);
                let p2 = interpolate_run(&pcm, phase, inc, ramp, &mut fast);
                assert_eq!(p1, p2);
                // Of full scale (32768 at the ramp's largest gain, about 0.35).
                let scale = 32_768.0 * (ramp.a0 + ramp.da * (ramp.from + len) as f32);
                let off = plain.iter().zip(&fast).fold(0.0f32, |m, (a, b)| m.max((a - b).abs())) / scale;
                worst = worst.max(off);
                assert!(off <= VECTOR_INTERPOLATION_TOLERANCE, "inc {inc:#x}, {len} frames: off by {off:.2e}");
            }
        }
        println!("interpolation: the fused build off by at most {worst:.2e} of full scale");
    }

    /// The vector interpolation's window (two loads and permutes) reads the same points
    /// as its gathers: the output is the same bit for bit, at steps either side of the
    /// window's limit, from every fraction, and up to the sample's last points (where
    /// the loads would pass the end and the gathers take over).
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn window_reads_the_points_the_gathers_read() {
        if !vector_units() {
            println!("no AVX2 and FMA on this processor: the plain build plays, no window to compare");
            return;
        }
        let pcm: Vec<i16> = noise(400, 4).iter().map(|x| (x * 32_000.0) as i16).collect();
        let ramp = Ramp { a0: 0.5, da: 0.002, from: 1 };
        let limit = WINDOW_MAX_STEP;
        let mut windowed = 0;
        for inc in
            [0x1000_0000u64, 0x8000_0000, 0x1_0000_0000, 0x1_5555_5555, limit - 1, limit, limit + 1, 0x2_0000_0000]
        {
            for frac in [0u64, 1, 0x8000_0000, 0xFFFF_FFFF] {
                let phase = (1u64 << 32) | frac;
                // Every frame's points (k-1..k+2) inside `pcm`.
                let len = ((pcm.len() as u64 - 3) << 32).saturating_sub(phase) / inc;
                let len = len.min(300) as usize;
                let mut gathered = vec![0.0f32; len];
                let mut window = vec![0.0f32; len];
                // SAFETY: the processor has AVX2 and FMA (checked above).
                let (p1, p2) = unsafe {
                    (
                        interpolate_run_avx2::<false>(&pcm, phase, inc, ramp, &mut gathered),
                        interpolate_run_avx2::<true>(&pcm, phase, inc, ramp, &mut window),
                    )
                };
                assert_eq!(p1, p2);
                for (i, (a, b)) in gathered.iter().zip(&window).enumerate() {
                    assert_eq!(a.to_bits(), b.to_bits(), "step {inc:#x} from {frac:#x}: frame {i} differs");
                }
                windowed += usize::from(inc <= limit);
            }
        }
        assert!(windowed > 0);
    }
}
