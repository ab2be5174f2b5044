//! Keys and mallets: pianos, electric pianos, tuned percussion, bells and bowls.
//!
//! Every synth here is modal: a small bank of sine partials (the sine table read at
//! 32-bit phase accumulators, so the pitch is exact and follows bends), each with its
//! own amplitude and exponential decay. Amplitudes are evaluated in closed form at
//! both ends of each render call and ramped linearly in between, so there is no
//! per-sample `exp`; fast transients (clicks, strikes) use a per-sample decay factor
//! instead. A partial fades out between 0.42 and 0.45 x the sample rate and is
//! skipped above (decided per render call, so bends stay alias-free).
//!
//! - Piano: stiff-string partials `F_n = n f sqrt(1 + B n^2)` (B grows with pitch),
//!   felt-filtered comb excitation (strike position and felt brightness by pitch),
//!   per-partial decay rising with frequency up to about a kilohertz and levelling
//!   off above (less below C4), as a sampled grand's does, a short hammer knock.
//!   Partials are summed four at a time in one pass over the block. One to three
//!   strings per note, struck in phase and detuned symmetrically: their sum is one
//!   oscillator per partial at the exact frequency with a beating amplitude
//!   (evaluated per render call from the fundamental's accumulated phase, so it
//!   follows bends), so a three-string unison costs no more than one string.
//! - Rhodes and Wurlitzer: harmonic partials with a two-stage decay, an attack click
//!   (tine) or an early "bark" (reed), then soft tanh saturation.
//! - Vibraphone (motor tremolo), marimba (natural bar decay, shorter at high
//!   pitch), kalimba (two body resonances), steel drum, timpani (kettle band-pass
//!   around the pitch), crotales: inharmonic bar/plate modes plus a mallet transient
//!   (noise, one-pole low-passed at a fixed frequency and scaled with the sample rate
//!   so every rate sounds the same).
//! - Tingsha and singing bowls: beating mode pairs. A pair `F +/- b/2` is one carrier
//!   at `F` with amplitude `cos(pi b t)`; for the fundamental the pair becomes an
//!   amplitude modulation `(1 + cos 2 pi b t) / 2` (same beat rate) so that the
//!   strongest line stays exactly at the note. The bowl strike adds a falling chirp,
//!   the rubbed bowl swells in.
//! - Harp: decaying harmonics plus a 50 ms Karplus-Strong transient in `st.line`,
//!   tuned exactly with a fractional all-pass.
//!
//! Long-ringing sounds get an extra Gaussian fade `exp(-q t^2)` so that every note
//! is below -80 dB within about 10 s. Gains are fixed per synth (no per-note
//! normalisation). None of them uses `detune`.

use super::{OscState, Synth, SynthCtx};
use crate::dsp::biquad::BiquadCoefs;
use crate::dsp::math::fast_tanh;
use crate::dsp::wavescan::set_partials;
use crate::tables::wavetable::{Table, phase_inc, read};
use std::f64::consts::PI;

/// One cycle of the 32-bit phase.
const CYCLE: f64 = 4_294_967_296.0;
/// A quarter cycle: sine read at `p + QUARTER` is the cosine.
const QUARTER: u32 = 1 << 30;
/// Partials at or above this fraction of the sample rate are skipped...
const TOP: f64 = 0.45;
/// ...after fading out over this fraction below it.
const FADE: f64 = 0.03;
/// Linear fade-in of the partial banks (a partial starting at a random phase would
/// otherwise step).
const ONSET: f32 = 0.0008;

/// Band-limit gain of a partial at `freq` Hz.
#[inline]
fn band_fade(freq: f64, sr: f64) -> f32 {
    ((TOP * sr - freq) / (FADE * sr)).clamp(0.0, 1.0) as f32
}

/// Phase of `turns` cycles (the fractional part).
#[inline]
fn turns_phase(turns: f64) -> u32 {
    ((turns - turns.floor()) * CYCLE) as u64 as u32
}

/// A uniformly random phase from the voice's generator.
fn random_phase(st: &mut OscState) -> u32 {
    ((st.noise() as f64 * 0.5 + 0.5) * CYCLE) as u64 as u32
}

/// The block being rendered: times of its ends in seconds.
#[derive(Clone, Copy)]
struct Span {
    t0: f32,
    t1: f32,
    sr: f32,
}

impl Span {
    fn new(st: &OscState, ctx: &SynthCtx, n: usize) -> Self {
        let sr = ctx.sample_rate.max(1.0);
        let t0 = (st.age as f64 / sr as f64) as f32;
        let t1 = ((st.age + n as u64) as f64 / sr as f64) as f32;
        Span { t0, t1, sr }
    }

    /// `f` at both ends.
    #[inline]
    fn at(&self, f: impl Fn(f32) -> f32) -> (f32, f32) {
        (f(self.t0), f(self.t1))
    }
}

#[inline]
fn onset(t: f32) -> f32 {
    (t / ONSET).min(1.0)
}

/// Adds a sine at phase increment `inc` with a gain ramp from `g0` to `g1` over
/// `out`; returns the phase after the block.
#[inline]
fn add_sine(sine: &Table, phase: u32, inc: u32, g0: f32, g1: f32, out: &mut [f32]) -> u32 {
    let dg = (g1 - g0) / out.len().max(1) as f32;
    let mut g = g0;
    let mut p = phase;
    for x in out.iter_mut() {
        *x += read(sine, p) * g;
        g += dg;
        p = p.wrapping_add(inc);
    }
    p
}

/// Adds partial `k` of a bank (phase slot `k`) at `ratio` times the pitch, with gains
/// `g0`, `g1` at the block ends (before the band-limit fade).
#[inline]
fn partial(st: &mut OscState, ctx: &SynthCtx, k: usize, ratio: f64, g: (f32, f32), out: &mut [f32]) {
    let sr = ctx.sample_rate as f64;
    let f = ctx.freq_hz * ratio;
    let fade = band_fade(f, sr);
    // Inaudible (and no denormal gains in the loop).
    if fade <= 0.0 || (g.0.abs() < 1e-9 && g.1.abs() < 1e-9) {
        return;
    }
    if let Some(p) = st.phase.get_mut(k) {
        *p = add_sine(ctx.waves.sine(), *p, phase_inc(f, sr), g.0 * fade, g.1 * fade, out);
    }
}

/// Adds a sine at `freq` starting at phase `phase` with gain `g`, multiplied by `k`
/// every sample (fast decays); returns the phase and gain after the block.
#[inline]
fn add_decaying(sine: &Table, phase: u32, inc: u32, g: f32, k: f32, out: &mut [f32]) -> (u32, f32) {
    let mut g = g;
    let mut p = phase;
    for x in out.iter_mut() {
        *x += read(sine, p) * g;
        g *= k;
        p = p.wrapping_add(inc);
    }
    (p, g)
}

/// A sine transient `level sin(2 pi freq t) exp(-decay t / dur)` for `t < dur`, its
/// phase computed from the time (no state).
fn add_transient(ctx: &SynthCtx, span: Span, freq: f64, level: f32, dur: f32, decay: f32, out: &mut [f32]) {
    if span.t0 >= dur || level == 0.0 {
        return;
    }
    let sr = span.sr as f64;
    let fade = band_fade(freq, sr);
    if fade <= 0.0 {
        return;
    }
    let left = (((dur - span.t0) * span.sr).ceil().max(0.0) as usize).min(out.len());
    let g = level * fade * (-decay * span.t0 / dur).exp();
    let k = (-decay / (dur * span.sr)).exp();
    let p = turns_phase(freq * span.t0 as f64);
    add_decaying(ctx.waves.sine(), p, phase_inc(freq, sr), g, k, &mut out[..left]);
}

/// A noise burst `level u exp(-decay t / dur)` for `t < dur` (u uniform in -1..1),
/// low-passed by a one-pole at `lp_hz` (state in `z[slot]`) and scaled so that its
/// level per Hz is the same at every sample rate.
#[allow(clippy::too_many_arguments)]
fn add_noise(
    st: &mut OscState,
    span: Span,
    level: f32,
    dur: f32,
    decay: f32,
    lp_hz: f32,
    slot: usize,
    out: &mut [f32],
) {
    if span.t0 >= dur {
        return;
    }
    let left = (((dur - span.t0) * span.sr).ceil().max(0.0) as usize).min(out.len());
    let a = 1.0 - (-std::f32::consts::TAU * lp_hz / span.sr).exp();
    let mut g = level * (span.sr / 44_100.0).sqrt() * (-decay * span.t0 / dur).exp();
    let k = (-decay / (dur * span.sr)).exp();
    let mut y = st.z.get(slot).copied().unwrap_or(0.0);
    for x in out[..left].iter_mut() {
        let u = st.noise() * g;
        y += a * (u - y);
        *x += y;
        g *= k;
    }
    if let Some(z) = st.z.get_mut(slot) {
        *z = y;
    }
}

/// Filter state with denormal-range values set to zero (the sound has died away).
#[inline]
fn flush(x: f32) -> f32 {
    if x.abs() < 1e-20 { 0.0 } else { x }
}

/// Two-stage decay: `exp(-r1 t)` until `knee`, then `exp(-r1 knee - r2 (t - knee))`.
#[inline]
fn two_stage(t: f32, r1: f32, knee: f32, r2: f32) -> f32 {
    if t < knee { (-r1 * t).exp() } else { (-r1 * knee - r2 * (t - knee)).exp() }
}

/// Brightness by pitch, 0 at 65 Hz rising to 1 at `65 + span` Hz.
#[inline]
fn brightness(f: f64, span: f64) -> f32 {
    ((f - 65.0) / span).clamp(0.0, 1.0) as f32
}

/// Cosine of the phase `phase0 + rate_hz t` (a beat), from the sine table.
#[inline]
fn beat(sine: &Table, phase0: u32, rate_hz: f32, t: f32) -> f32 {
    read(sine, phase0.wrapping_add(turns_phase(rate_hz as f64 * t as f64)).wrapping_add(QUARTER))
}

// ---------------------------------------------------------------------------
// Piano

/// Most partials a piano note uses.
const PIANO_PARTIALS: usize = 32;
/// Partials quieter than this (relative to the strongest) are left out.
const PIANO_FLOOR: f32 = 2e-3;
/// Output gain of the piano (times the excitation amplitudes).
const PIANO_GAIN: f32 = 0.2;
/// Gaussian fade of the piano's tail (1/s^2).
const PIANO_Q: f32 = 0.065;

pub struct Piano;

/// Inharmonicity coefficient at `f` Hz.
fn piano_b(f: f64) -> f64 {
    0.00017 * (f / 261.63).powf(0.8) + 0.00005
}

/// Strings of a note at `f` Hz and their detuning (cents): one string tuned to the
/// note, two at -/+ the detuning, or three at 0 and -/+ the detuning.
fn piano_strings(f: f64) -> (usize, f64) {
    if f < 62.0 {
        (1, 0.0)
    } else if f < 110.0 {
        (2, 0.9)
    } else {
        (3, 1.2)
    }
}

/// An integer hash (the per-note variation of the unison detuning).
#[inline]
fn hash(mut x: u32) -> u32 {
    x ^= x >> 16;
    x = x.wrapping_mul(0x7feb_352d);
    x ^= x >> 15;
    x = x.wrapping_mul(0x846c_a68b);
    x ^= x >> 16;
    x
}

/// Level of the two detuned strings of a three-string unison, relative to the middle
/// one: below 1/2 the sum never changes sign, so the partial stays centred on its
/// frequency (equal strings would cancel every beat and pull the heard pitch).
const UNISON_SIDE: f32 = 0.4;

/// The summed strings of a partial, relative to one string, at `beat` cycles of the
/// detuning (`ratio x cycles x eps`). The hammer strikes the strings in phase and
/// the detunings are symmetric, so the sum is the partial at its exact frequency
/// times a real amplitude: `(1 + 2 w cos)/(1 + 2 w)` for three strings, `cos` for two.
#[inline]
fn piano_unison(sine: &Table, beat: f64, strings: usize) -> f32 {
    let c = read(sine, turns_phase(beat).wrapping_add(QUARTER));
    match strings {
        3 => (1.0 + 2.0 * UNISON_SIDE * c) * (1.0 / (1.0 + 2.0 * UNISON_SIDE)),
        2 => c,
        _ => 1.0,
    }
}

/// Above this frequency (kHz) a piano partial's decay rate grows ever more slowly,
/// towards [`PIANO_RATE_RISE`] more than at the knee (a sampled grand's partials above
/// 2 kHz die at 15 to 30 dB/s, where a rate growing like `f^1.1` gave 40 to 80).
const PIANO_RATE_KNEE_KHZ: f64 = 1.0;
/// How far (1/s) the rate still rises beyond the knee...
const PIANO_RATE_RISE: f64 = 1.32;
/// ... and over how many kHz it gets there (the rate's slope is continuous at the knee).
const PIANO_RATE_SPAN_KHZ: f64 = PIANO_RATE_RISE / 1.32;
/// Below this fundamental the strings lose less: the rise with frequency scales down
/// as `(f0 / this)^1.7` (a sampled grand's C3 dies at 5 to 10 dB/s at every partial).
const PIANO_FULL_LOSS_HZ: f64 = 261.63;

/// Decay rate (1/s) of a piano partial at `freq` Hz of a note at `f0` Hz: a floor
/// plus a part that rises with frequency, steeply up to a kilohertz and then
/// levelling off, less so for the longer, heavier strings below C4.
#[inline]
fn piano_rate(freq: f64, f0: f64) -> f32 {
    let x = freq / 1000.0;
    let rise = if x <= PIANO_RATE_KNEE_KHZ {
        1.2 * x.powf(1.1)
    } else {
        1.2 + PIANO_RATE_RISE * (1.0 - (-(x - PIANO_RATE_KNEE_KHZ) / PIANO_RATE_SPAN_KHZ).exp())
    };
    let string = (f0 / PIANO_FULL_LOSS_HZ).powf(1.7).min(1.0);
    (0.35 + string * rise) as f32
}

/// The damper's fall (to -60 dB) of a piano's fundamental at C4, and the pitch above
/// which strings have no damper (the top octave and a half rings on, as on a grand).
const PIANO_DAMPER_SECONDS: f64 = 0.45;
const PIANO_UNDAMPED_HZ: f64 = 1390.0;
/// Fastest damped decay rate of a partial (1/s).
const PIANO_DAMPER_MAX_RATE: f32 = 160.0;

/// Decay rate (1/s, of the amplitude) of partial `ratio` of a damped note at `f` Hz:
/// the felt stops the fundamental in [`PIANO_DAMPER_SECONDS`] (longer in the bass),
/// upper partials faster.
fn piano_damper_rate(f: f64, ratio: f64) -> f32 {
    let t60 = PIANO_DAMPER_SECONDS * (261.63 / f.max(20.0)).powf(0.25);
    ((6.907_755 / t60 * ratio.powf(0.6)) as f32).min(PIANO_DAMPER_MAX_RATE)
}

/// The partials of one block: phase slot, phase, increment, gain and its step per
/// sample.
#[derive(Default)]
struct Bank {
    len: usize,
    slot: [usize; PIANO_PARTIALS],
    phase: [u32; PIANO_PARTIALS],
    inc: [u32; PIANO_PARTIALS],
    gain: [f32; PIANO_PARTIALS],
    step: [f32; PIANO_PARTIALS],
}

impl Bank {
    /// Adds partial `slot` ramping from `g0` to `g1` over `frames`.
    #[inline]
    fn push(&mut self, slot: usize, phase: u32, inc: u32, g0: f32, g1: f32, frames: usize) {
        if self.len < PIANO_PARTIALS {
            let i = self.len;
            (self.slot[i], self.phase[i], self.inc[i]) = (slot, phase, inc);
            (self.gain[i], self.step[i]) = (g0, (g1 - g0) / frames.max(1) as f32);
            self.len += 1;
        }
    }

    /// Writes every partial to `out`, as a clear and then the same sum as [`add_sine`]
    /// one by one (in groups of `wavescan::PARTIAL_GROUP`, through the kernel of
    /// `dsp::wavescan`, which leaves out the clear), and stores their phases after
    /// the block in `phases`.
    fn render(mut self, sine: &Table, phases: &mut [u32], out: &mut [f32]) {
        let n = self.len;
        set_partials(sine, &mut self.phase[..n], &self.inc[..n], &self.gain[..n], &self.step[..n], out);
        for j in 0..n {
            if let Some(p) = phases.get_mut(self.slot[j]) {
                *p = self.phase[j];
            }
        }
    }
}

// State: phase[k] = partial k (k < 32); z[k] = its amplitude after its own decay
// (excitation x gain x exp(-rate t)); z[32 + k] = its decay rate (1/s); phase[32 + k]
// = its frequency ratio as f32 bits. n[0], n[4] = low and high halves of the
// fundamental's phase since note-on (32.32 fixed point cycles, for the unison
// beats); n[1] = the unison detuning (cents) as f32 bits; n[2] = partial count;
// n[5] = gain as f32 bits.
impl Synth for Piano {
    fn start(&self, st: &mut OscState, ctx: &SynthCtx) {
        let f = ctx.freq_hz.max(1.0);
        let sr = ctx.sample_rate as f64;
        let b = piano_b(f);
        let br = brightness(f, 1000.0) as f64;
        let felt_hz = 1500.0 + 3500.0 * br;
        let mut amps = [0.0f32; PIANO_PARTIALS];
        let mut max = 0.0f32;
        for (i, a) in amps.iter_mut().enumerate() {
            let n = (i + 1) as f64;
            let fr = n * f * (1.0 + b * n * n).sqrt();
            if fr >= TOP * sr {
                break;
            }
            let comb = 0.15 + 0.85 * (PI * n * 0.12).sin().abs();
            let felt = 1.0 / (1.0 + (fr / felt_hz).powi(2));
            *a = (comb * felt / n.powf(0.9)) as f32;
            max = max.max(*a);
        }
        let mut count = 0usize;
        let mut energy = 0.0;
        for (i, a) in amps.iter_mut().enumerate() {
            *a /= max.max(1e-9);
            energy += *a * *a;
            if *a >= PIANO_FLOOR {
                count = i + 1;
            }
        }
        // Equal loudness across the range: the gain follows the partials' energy.
        let gain = PIANO_GAIN / energy.max(1.0).sqrt();
        st.n[5] = gain.to_bits() as usize;
        // The unison detuning varies from note to note by +/-20%.
        let (_, cents) = piano_strings(f);
        let u = hash(random_phase(st)) as f64 / CYCLE;
        st.n[1] = ((cents * (0.8 + 0.4 * u)) as f32).to_bits() as usize;
        st.n[2] = count;
        // Struck: every partial starts at zero displacement, its strings in phase.
        for (k, a) in amps.iter().enumerate().take(count) {
            let n = (k + 1) as f64;
            let ratio = n * (1.0 + b * n * n).sqrt();
            st.z[k] = a * gain;
            st.z[32 + k] = piano_rate(f * ratio, f);
            st.phase[k] = 0;
            st.phase[32 + k] = (ratio as f32).to_bits();
        }
    }

    fn render(&self, st: &mut OscState, ctx: &SynthCtx, out: &mut [f32]) {
        // No clear: the bank writes the block first (`Bank::render`).
        let n = out.len();
        if n == 0 {
            return;
        }
        let span = Span::new(st, ctx, n);
        let sr = ctx.sample_rate as f64;
        let f = ctx.freq_hz;
        let sine = ctx.waves.sine();
        // The fundamental's phase in cycles at the block ends.
        let c0 = ((st.n[4] as u64 & 0xffff_ffff) << 32) | (st.n[0] as u64 & 0xffff_ffff);
        let c1 = c0.wrapping_add(phase_inc(f, sr) as u64 * n as u64);
        st.n[0] = (c1 & 0xffff_ffff) as usize;
        st.n[4] = (c1 >> 32) as usize;
        let (strings, _) = piano_strings(f);
        let eps = (f32::from_bits(st.n[1] as u32) as f64 / 1200.0).exp2() - 1.0;
        let (b0, b1) = (c0 as f64 / CYCLE * eps, c1 as f64 / CYCLE * eps);
        let glob = span.at(|t| onset(t) * (1.0 + 0.8 * (-8.0 * t).exp()) * (-PIANO_Q * t * t).exp());
        let dt = span.t1 - span.t0;
        // The sounding partials of this block, rendered in groups of four.
        let mut bank = Bank::default();
        for k in 0..st.n[2].min(PIANO_PARTIALS) {
            let d0 = st.z[k];
            if d0 < 3e-6 {
                continue;
            }
            let d1 = d0 * (-st.z[32 + k] * dt).exp();
            st.z[k] = d1;
            let ratio = f32::from_bits(st.phase[32 + k]) as f64;
            let fk = f * ratio;
            let fade = band_fade(fk, sr);
            if fade <= 0.0 {
                continue;
            }
            let (m0, m1) = (piano_unison(sine, b0 * ratio, strings), piano_unison(sine, b1 * ratio, strings));
            let (g0, g1) = (d0 * m0 * glob.0 * fade, d1 * m1 * glob.1 * fade);
            bank.push(k, st.phase[k], phase_inc(fk, sr), g0, g1, n);
        }
        bank.render(sine, &mut st.phase, out);
        // Hammer knock.
        let br = brightness(f, 1000.0);
        let len = 0.015 - 0.007 * br;
        let decay = 12.0 + 8.0 * br;
        let g = f32::from_bits(st.n[5] as u32);
        add_transient(ctx, span, 300.0 + 400.0 * br as f64, (0.4 + 0.3 * br) * g, len, decay, out);
        add_transient(ctx, span, 1.5 * f, 0.3 * g, len, decay, out);
    }

    fn decays(&self) -> bool {
        true
    }

    fn damp(&self, st: &mut OscState, _sample_rate: f32, freq_hz: f64) {
        if freq_hz >= PIANO_UNDAMPED_HZ {
            return;
        }
        for k in 0..st.n[2].min(PIANO_PARTIALS) {
            let ratio = f32::from_bits(st.phase[32 + k]) as f64;
            st.z[32 + k] = st.z[32 + k].max(piano_damper_rate(freq_hz, ratio));
        }
    }
}

// ---------------------------------------------------------------------------
// Electric pianos

const RHODES_GAIN: f32 = 0.7;
const WURLI_GAIN: f32 = 0.7;
/// Electric-piano damper: decay rate (1/s) of the fundamental once the key is up, and
/// its growth per harmonic (upper harmonics stop first). The fundamental falls 60 dB
/// in 0.3 s.
const EP_DAMPER_RATE: f32 = 23.0;
const EP_DAMPER_PER_HARMONIC: f32 = 9.0;

/// The damper's gain for harmonic `k` at time `t`, for a note released at `released`
/// seconds (0: not released).
#[inline]
fn ep_damper(k: usize, t: f32, released: f32) -> f32 {
    if released <= 0.0 || t <= released {
        1.0
    } else {
        (-(EP_DAMPER_RATE + EP_DAMPER_PER_HARMONIC * k as f32) * (t - released)).exp()
    }
}

pub struct Rhodes;

/// Harmonics of the Rhodes.
const RHODES_HARMONICS: usize = 6;
/// The Rhodes' state slots: the time (s) its gains were last computed at, and those
/// gains (one per harmonic).
const RHODES_Z_AT: usize = 4;
const RHODES_Z_GAINS: usize = 5;

/// The Rhodes' harmonic gains at `t` seconds (before the band-limit fade): amplitude,
/// envelope, a decay `exp(-spread k t)` that grows with the harmonic `k` (taken as the
/// `k`th power of `exp(-spread t)`) and, once the key is up, the damper's (also as
/// powers of one exponential): four library calls at most rather than up to 23.
fn rhodes_gains(amps: &[f32; RHODES_HARMONICS], spread: f32, released: f32, t: f32) -> [f32; RHODES_HARMONICS] {
    let env = onset(t) * two_stage(t, 4.0, 0.15, 1.2);
    let e = (-spread * t).exp();
    let (mut damper, step) = if released <= 0.0 || t <= released {
        (1.0, 1.0)
    } else {
        let dt = t - released;
        ((-EP_DAMPER_RATE * dt).exp(), (-EP_DAMPER_PER_HARMONIC * dt).exp())
    };
    let mut decay = 1.0;
    std::array::from_fn(|k| {
        let g = amps[k] * env * decay * damper;
        decay *= e;
        damper *= step;
        g
    })
}

crate::dsp::wide_build!(fn rhodes_render_wide = rhodes_render, (st: &mut OscState, ctx: &SynthCtx, out: &mut [f32]));

/// The Rhodes' block (see [`Rhodes`]), inlined into both builds of `rhodes_render_wide`.
#[inline(always)]
fn rhodes_render(st: &mut OscState, ctx: &SynthCtx, out: &mut [f32]) {
    // No clear: the bank writes the block first (`Bank::render`).
    let span = Span::new(st, ctx, out.len());
    let br = st.z[0];
    let amps = [1.0, 0.6 + 0.15 * br, 0.15 + 0.1 * br, 0.08 + 0.08 * br, 0.04, 0.02];
    let spread = 0.8 + 0.3 * br;
    let released = st.z[1];
    // The gains at the block's start are the last block's at its end (kept in the
    // state; the same numbers, computed once).
    let cached = st.z[RHODES_Z_AT].to_bits() == span.t0.to_bits();
    let g0s = if cached {
        std::array::from_fn(|k| st.z[RHODES_Z_GAINS + k])
    } else {
        rhodes_gains(&amps, spread, released, span.t0)
    };
    let g1s = rhodes_gains(&amps, spread, released, span.t1);
    st.z[RHODES_Z_AT] = span.t1;
    st.z[RHODES_Z_GAINS..RHODES_Z_GAINS + RHODES_HARMONICS].copy_from_slice(&g1s);
    // The harmonics in one pass over the block, four at a time (as `partial` one
    // by one, but summed before they are added to the output).
    let sr = ctx.sample_rate as f64;
    let mut bank = Bank::default();
    for (k, (&g0, &g1)) in g0s.iter().zip(&g1s).enumerate() {
        let f = ctx.freq_hz * (k + 1) as f64;
        let fade = band_fade(f, sr);
        if fade <= 0.0 || (g0.abs() < 1e-9 && g1.abs() < 1e-9) {
            continue;
        }
        bank.push(k, st.phase[k], phase_inc(f, sr), g0 * fade, g1 * fade, out.len());
    }
    bank.render(ctx.waves.sine(), &mut st.phase, out);
    add_transient(ctx, span, 5.3 * ctx.freq_hz, 0.15, 0.008, 20.0, out);
    add_transient(ctx, span, 7.1 * ctx.freq_hz, 0.08, 0.008, 20.0, out);
    for x in out.iter_mut() {
        *x = fast_tanh(1.2 * *x) * (RHODES_GAIN / 1.2);
    }
    // The saturation of even harmonics leaves DC: take it out.
    let pole = crate::dsp::math::dc_block_pole(ctx.sample_rate);
    let mut dc = [st.z[2], st.z[3]];
    crate::dsp::math::dc_block_lanes(out, &mut dc, pole);
    [st.z[2], st.z[3]] = dc;
}

// State: phase[k] = harmonic k + 1 (k < 6); z[0] = brightness (from the pitch at
// note-on); z[1] = when the damper fell (s since note-on, 0 = held); z[2], z[3] = DC
// blocker; z[4] = the time the gains z[5..11] are for (-1: none).
impl Synth for Rhodes {
    fn start(&self, st: &mut OscState, ctx: &SynthCtx) {
        random_phases(st, RHODES_HARMONICS);
        st.z[0] = brightness(ctx.freq_hz, 800.0);
        st.z[RHODES_Z_AT] = -1.0;
    }

    fn render(&self, st: &mut OscState, ctx: &SynthCtx, out: &mut [f32]) {
        rhodes_render_wide(st, ctx, out);
    }

    fn decays(&self) -> bool {
        true
    }

    fn damp(&self, st: &mut OscState, sample_rate: f32, _freq_hz: f64) {
        // The release time (seconds since note-on; never 0 once set).
        st.z[1] = (st.age as f64 / sample_rate.max(1.0) as f64).max(1e-6) as f32;
        st.z[RHODES_Z_AT] = -1.0;
    }
}

pub struct Wurlitzer;

// State: phase[k] = harmonic k + 1 (k < 7); z[0] = brightness (from the pitch at
// note-on); z[1] = when the damper fell (s since note-on, 0 = held); z[2], z[3] = DC
// blocker.
impl Synth for Wurlitzer {
    fn start(&self, st: &mut OscState, ctx: &SynthCtx) {
        random_phases(st, 7);
        st.z[0] = brightness(ctx.freq_hz, 800.0);
    }

    fn render(&self, st: &mut OscState, ctx: &SynthCtx, out: &mut [f32]) {
        out.fill(0.0);
        let span = Span::new(st, ctx, out.len());
        let br = st.z[0];
        let amps = [1.0, 0.4, 0.5 + 0.15 * br, 0.15, 0.25 + 0.1 * br, 0.08, 0.12];
        let spread = 1.0 + 0.4 * br;
        let env = span.at(|t| onset(t) * two_stage(t, 5.0, 0.1, 2.0));
        let released = st.z[1];
        for (k, a) in amps.iter().enumerate() {
            let r = spread * k as f32;
            let g0 = a * env.0 * (-r * span.t0).exp() * ep_damper(k, span.t0, released);
            let g1 = a * env.1 * (-r * span.t1).exp() * ep_damper(k, span.t1, released);
            partial(st, ctx, k, (k + 1) as f64, (g0, g1), out);
        }
        // Bark: extra drive over the first 30 ms.
        const BARK: f32 = 0.03;
        if span.t0 < BARK {
            let mut e = (-6.0 * span.t0 / BARK).exp();
            let k = (-6.0 / (BARK * span.sr)).exp();
            let left = (((BARK - span.t0) * span.sr).ceil() as usize).min(out.len());
            for x in out[..left].iter_mut() {
                *x += 0.15 * fast_tanh(3.0 * *x * e);
                e *= k;
            }
        }
        for x in out.iter_mut() {
            *x = fast_tanh(1.1 * *x) * (WURLI_GAIN / 1.1);
        }
        let mut dc = [st.z[2], st.z[3]];
        crate::dsp::math::dc_block(out, &mut dc, ctx.sample_rate);
        [st.z[2], st.z[3]] = dc;
    }

    fn decays(&self) -> bool {
        true
    }

    fn damp(&self, st: &mut OscState, sample_rate: f32, _freq_hz: f64) {
        // The release time (seconds since note-on; never 0 once set).
        st.z[1] = (st.age as f64 / sample_rate.max(1.0) as f64).max(1e-6) as f32;
    }
}

// ---------------------------------------------------------------------------
// Tuned percussion

/// A mode: frequency ratio, amplitude, decay rate (1/s).
type Mode = (f64, f32, f32);

/// Adds the modes of `modes` (phase slots 0..), each `amp exp(-rate t)` times the
/// common envelope `env` at the block ends.
fn add_modes(st: &mut OscState, ctx: &SynthCtx, span: Span, modes: &[Mode], env: (f32, f32), out: &mut [f32]) {
    for (k, &(ratio, amp, rate)) in modes.iter().enumerate() {
        let g = (amp * env.0 * (-rate * span.t0).exp(), amp * env.1 * (-rate * span.t1).exp());
        partial(st, ctx, k, ratio, g, out);
    }
}

/// Random starting phases for the first `count` partials.
fn random_phases(st: &mut OscState, count: usize) {
    for k in 0..count.min(st.phase.len()) {
        st.phase[k] = random_phase(st);
    }
}

const VIBES_GAIN: f32 = 0.45;
const VIBES_MODES: [Mode; 4] =
    [(1.0, 1.0, 0.8), (2.76, 0.3, 0.8 + 0.5 * 1.76), (5.4, 0.12, 0.8 + 0.5 * 4.4), (8.93, 0.04, 0.8 + 0.5 * 7.93)];

pub struct Vibraphone;

// State: phase[k] = mode k; z[0] = mallet noise low-pass.
impl Synth for Vibraphone {
    fn start(&self, st: &mut OscState, _ctx: &SynthCtx) {
        random_phases(st, VIBES_MODES.len());
    }

    fn render(&self, st: &mut OscState, ctx: &SynthCtx, out: &mut [f32]) {
        out.fill(0.0);
        let span = Span::new(st, ctx, out.len());
        // Motor tremolo (5.5 Hz), fading in over the first second.
        let env = span.at(|t| {
            let trem = 0.5 + 0.5 * (std::f32::consts::TAU * 5.5 * t).sin();
            VIBES_GAIN * onset(t) * (1.0 - 0.35 * (1.0 - (-2.0 * t).exp()) * trem) * (-0.02 * t * t).exp()
        });
        add_modes(st, ctx, span, &VIBES_MODES, env, out);
        add_noise(st, span, 0.15 * VIBES_GAIN, 0.005, 12.0, 6000.0, 0, out);
    }

    fn decays(&self) -> bool {
        true
    }
}

const MARIMBA_GAIN: f32 = 0.6;

pub struct Marimba;

// State: phase[k] = mode k; z[0] = mallet noise low-pass; z[1] = the bar's decay
// rate (1/s, from the pitch at note-on).
impl Synth for Marimba {
    fn start(&self, st: &mut OscState, ctx: &SynthCtx) {
        // The bar rings for 2.5 s (to -60 dB) at A2, shorter higher up.
        let t60 = 2.5 * (ctx.freq_hz.max(20.0) / 110.0).powf(-0.5);
        st.z[1] = (6.9 / t60) as f32;
    }

    fn render(&self, st: &mut OscState, ctx: &SynthCtx, out: &mut [f32]) {
        out.fill(0.0);
        let span = Span::new(st, ctx, out.len());
        let modes: [Mode; 3] = [(1.0, 0.8, st.z[1]), (4.0, 0.15, 20.0), (9.2, 0.05, 40.0)];
        let env = span.at(|t| MARIMBA_GAIN * onset(t) * (1.0 + 0.3 * (-3.0 * t).exp()));
        add_modes(st, ctx, span, &modes, env, out);
        add_noise(st, span, 0.2 * MARIMBA_GAIN, 0.005, 10.0, 5000.0, 0, out);
    }

    fn decays(&self) -> bool {
        true
    }
}

const KALIMBA_GAIN: f32 = 0.6;
const KALIMBA_MODES: [Mode; 3] = [(1.0, 0.8, 0.0), (2.92, 0.25, 12.0), (5.4, 0.1, 20.0)];

pub struct Kalimba;

// State: phase[k] = mode k; z[0..2], z[2..4] = the two body resonances.
impl Synth for Kalimba {
    fn render(&self, st: &mut OscState, ctx: &SynthCtx, out: &mut [f32]) {
        out.fill(0.0);
        let span = Span::new(st, ctx, out.len());
        let env = span.at(|t| KALIMBA_GAIN * onset(t) * two_stage(t, 3.0, 0.1, 1.5));
        add_modes(st, ctx, span, &KALIMBA_MODES, env, out);
        // Body: two resonances, each added to the already-boosted signal.
        let sr = ctx.sample_rate as f64;
        let (c1, c2) = (BiquadCoefs::bandpass_range(200.0, 400.0, sr), BiquadCoefs::bandpass_range(480.0, 720.0, sr));
        let mut s1 = [st.z[0], st.z[1]];
        let mut s2 = [st.z[2], st.z[3]];
        for x in out.iter_mut() {
            let a = *x + 0.2 * c1.step(&mut s1, *x);
            *x = a + 0.15 * c2.step(&mut s2, a);
        }
        st.z[..4].copy_from_slice(&[flush(s1[0]), flush(s1[1]), flush(s2[0]), flush(s2[1])]);
    }

    fn decays(&self) -> bool {
        true
    }
}

const STEEL_GAIN: f32 = 0.55;
const STEEL_MODES: [Mode; 5] =
    [(1.0, 0.7, 0.0), (2.0, 0.4, 5.0), (3.01, 0.25, 8.0), (4.1, 0.15, 12.0), (5.3, 0.08, 18.0)];

pub struct SteelDrum;

// State: phase[k] = mode k; z[0] = mallet noise low-pass.
impl Synth for SteelDrum {
    fn render(&self, st: &mut OscState, ctx: &SynthCtx, out: &mut [f32]) {
        out.fill(0.0);
        let span = Span::new(st, ctx, out.len());
        let env = span.at(|t| STEEL_GAIN * two_stage(t, 4.0, 0.15, 1.2));
        add_modes(st, ctx, span, &STEEL_MODES, (env.0 * onset(span.t0), env.1 * onset(span.t1)), out);
        add_noise(st, span, 0.2 * env.0, 0.008, 12.0, 8000.0, 0, out);
    }

    fn decays(&self) -> bool {
        true
    }
}

const TIMPANI_GAIN: f32 = 0.4;
const TIMPANI_MODES: [Mode; 4] = [(1.0, 0.8, 0.35), (1.5, 0.35, 12.0), (1.99, 0.2, 16.0), (2.44, 0.1, 21.0)];

pub struct Timpani;

// State: phase[k] = mode k; z[0] = mallet noise low-pass; z[1..3] = kettle band-pass.
impl Synth for Timpani {
    fn start(&self, st: &mut OscState, _ctx: &SynthCtx) {
        random_phases(st, TIMPANI_MODES.len());
    }

    fn render(&self, st: &mut OscState, ctx: &SynthCtx, out: &mut [f32]) {
        out.fill(0.0);
        let span = Span::new(st, ctx, out.len());
        let env = span.at(|t| TIMPANI_GAIN * onset(t) * (-0.06 * t * t).exp());
        add_modes(st, ctx, span, &TIMPANI_MODES, env, out);
        add_noise(st, span, 0.3 * TIMPANI_GAIN, 0.02, 8.0, 3000.0, 0, out);
        // Kettle: a band-pass over 0.7..1.3 times the pitch, added.
        let f = ctx.freq_hz;
        let c = BiquadCoefs::bandpass_range((0.7 * f).max(20.0), 1.3 * f, ctx.sample_rate as f64);
        let mut s = [st.z[1], st.z[2]];
        for x in out.iter_mut() {
            *x += 0.4 * c.step(&mut s, *x);
        }
        st.z[1] = flush(s[0]);
        st.z[2] = flush(s[1]);
    }

    fn decays(&self) -> bool {
        true
    }
}

const CROTALES_GAIN: f32 = 0.3;
const CROTALES_MODES: [Mode; 7] = [
    (1.0, 1.0, 0.3),
    (2.0, 0.6, 0.4),
    (3.01, 0.35, 0.6),
    (4.03, 0.25, 0.9),
    (5.06, 0.15, 1.3),
    (6.1, 0.08, 2.0),
    (8.15, 0.04, 3.0),
];

pub struct Crotales;

// State: phase[k] = mode k.
impl Synth for Crotales {
    fn start(&self, st: &mut OscState, _ctx: &SynthCtx) {
        random_phases(st, CROTALES_MODES.len());
    }

    fn render(&self, st: &mut OscState, ctx: &SynthCtx, out: &mut [f32]) {
        out.fill(0.0);
        let span = Span::new(st, ctx, out.len());
        let env = span.at(|t| CROTALES_GAIN * onset(t) * (-0.065 * t * t).exp());
        add_modes(st, ctx, span, &CROTALES_MODES, env, out);
        // Strike: a 2 ms ping at 8 times the pitch (skipped above the band limit).
        add_transient(ctx, span, 8.0 * ctx.freq_hz, 0.5 * CROTALES_GAIN, 0.002, 25.0, out);
    }

    fn decays(&self) -> bool {
        true
    }
}

// ---------------------------------------------------------------------------
// Bells and bowls

/// A beating mode: frequency ratio, amplitude, decay rate (1/s), beat rate; the beat
/// rate is in Hz, or relative to the pitch where the synth says so.
type BeatMode = (f64, f32, f32, f32);

/// Adds beating modes (phase slot k for the carrier of mode k, slot 32 + k for its
/// beat's starting phase): amplitude `amp env(k, t)` times the beat, which for mode 0
/// is `(1 + cos 2 pi b t) / 2` and for the others `cos pi b t` (a pair at F +/- b/2).
/// `beat_scale` multiplies the beat rates (Hz per unit).
fn add_beating(
    st: &mut OscState,
    ctx: &SynthCtx,
    span: Span,
    modes: &[BeatMode],
    beat_scale: f32,
    env: impl Fn(usize, f32) -> f32,
    out: &mut [f32],
) {
    let sine = ctx.waves.sine();
    for (k, &(ratio, amp, _, b)) in modes.iter().enumerate() {
        let ph = st.phase.get(32 + k).copied().unwrap_or(0);
        let b = b * beat_scale;
        let g = |t: f32| {
            let am = if k == 0 { 0.5 + 0.5 * beat(sine, ph, b, t) } else { beat(sine, ph, 0.5 * b, t) };
            amp * env(k, t) * am
        };
        let g = span.at(g);
        partial(st, ctx, k, ratio, g, out);
    }
}

/// Random phases for `count` carriers; their beats start at their maximum (struck:
/// both modes of a pair are excited together) or, if `random_beats`, anywhere.
fn random_beating(st: &mut OscState, count: usize, random_beats: bool) {
    for k in 0..count.min(32) {
        st.phase[k] = random_phase(st);
        st.phase[32 + k] = if random_beats { random_phase(st) } else { 0 };
    }
}

const TINGSHA_GAIN: f32 = 0.36;
/// Beat rates relative to the pitch: the fundamental pair is f +/- 0.008 f, the
/// others ratio x f x (1 +/- 0.002).
const TINGSHA_MODES: [BeatMode; 4] = [
    (1.0, 1.0, 0.0, 0.016),
    (2.72, 0.6, 5.0, 2.72 * 0.004),
    (5.1, 0.24, 10.0, 5.1 * 0.004),
    (8.3, 0.1, 18.0, 8.3 * 0.004),
];

pub struct Tingsha;

// State: phase[k], phase[32 + k] = mode k's carrier and beat; z[0] = clash low-pass;
// z[1] = the pitch at note-on (the beat rates follow it).
impl Synth for Tingsha {
    fn start(&self, st: &mut OscState, ctx: &SynthCtx) {
        random_beating(st, TINGSHA_MODES.len(), false);
        st.z[1] = ctx.freq_hz as f32;
    }

    fn render(&self, st: &mut OscState, ctx: &SynthCtx, out: &mut [f32]) {
        out.fill(0.0);
        let span = Span::new(st, ctx, out.len());
        let env = |k: usize, t: f32| {
            let rate = TINGSHA_MODES.get(k).map_or(0.0, |m| m.2);
            TINGSHA_GAIN * onset(t) * (-(1.8 + rate) * t).exp()
        };
        let f0 = st.z[1];
        add_beating(st, ctx, span, &TINGSHA_MODES, f0, env, out);
        add_noise(st, span, 0.4 * TINGSHA_GAIN, 0.003, 20.0, 12_000.0, 0, out);
    }

    fn decays(&self) -> bool {
        true
    }
}

const BOWL_GAIN: f32 = 0.5;
const BOWL_STRIKE_GAIN: f32 = 0.36;
const BOWL_STRIKE_MODES: [BeatMode; 5] = [
    (1.0, 1.0, 0.4, 0.3),
    (2.71, 0.45, 0.8, 0.6),
    (5.12, 0.22, 1.6, 0.9),
    (8.26, 0.12, 3.5, 1.2),
    (12.1, 0.06, 6.0, 1.5),
];

pub struct BowlStrike;

// State: phase[k], phase[32 + k] = mode k's carrier and beat.
impl Synth for BowlStrike {
    fn start(&self, st: &mut OscState, _ctx: &SynthCtx) {
        random_beating(st, BOWL_STRIKE_MODES.len(), false);
    }

    fn render(&self, st: &mut OscState, ctx: &SynthCtx, out: &mut [f32]) {
        out.fill(0.0);
        let span = Span::new(st, ctx, out.len());
        let env = |k: usize, t: f32| {
            let rate = BOWL_STRIKE_MODES.get(k).map_or(0.0, |m| m.2);
            BOWL_STRIKE_GAIN * onset(t) * (-rate * t - 0.055 * t * t).exp()
        };
        add_beating(st, ctx, span, &BOWL_STRIKE_MODES, 1.0, env, out);
        // Strike chirp: 3f falling to f over 40 ms.
        const CHIRP: f32 = 0.04;
        if span.t0 < CHIRP {
            let f = ctx.freq_hz;
            let sr = span.sr as f64;
            let sine = ctx.waves.sine();
            let left = (((CHIRP - span.t0) * span.sr).ceil() as usize).min(out.len());
            let mut e = 0.6 * BOWL_STRIKE_GAIN * (-8.0 * span.t0 / CHIRP).exp();
            let k = (-8.0 / (CHIRP * span.sr)).exp();
            for (i, x) in out[..left].iter_mut().enumerate() {
                let t = (st.age + i as u64) as f64 / sr;
                let turns = f * (3.0 * t - t * t / CHIRP as f64);
                *x += read(sine, turns_phase(turns)) * e;
                e *= k;
            }
        }
    }

    fn decays(&self) -> bool {
        true
    }
}

const BOWL_RING_MODES: [BeatMode; 4] =
    [(1.0, 1.0, 0.15, 0.4), (2.71, 0.35, 0.35, 0.7), (5.12, 0.18, 0.7, 1.0), (8.26, 0.08, 1.2, 1.3)];

pub struct BowlRing;

// State: phase[k], phase[32 + k] = mode k's carrier and beat.
impl Synth for BowlRing {
    fn start(&self, st: &mut OscState, _ctx: &SynthCtx) {
        random_beating(st, BOWL_RING_MODES.len(), true);
    }

    fn render(&self, st: &mut OscState, ctx: &SynthCtx, out: &mut [f32]) {
        out.fill(0.0);
        let span = Span::new(st, ctx, out.len());
        // Each mode swells in (higher modes more slowly) and decays after 0.5 s.
        let env = |k: usize, t: f32| {
            let (ratio, _, rate, _) = BOWL_RING_MODES.get(k).copied().unwrap_or((1.0, 0.0, 0.0, 0.0));
            let late = (t - 0.5).max(0.0);
            let swell = 1.0 - (-4.0 * t / ratio as f32).exp();
            BOWL_GAIN * swell * (-rate * late - 0.1 * late * late).exp()
        };
        add_beating(st, ctx, span, &BOWL_RING_MODES, 1.0, env, out);
    }

    fn decays(&self) -> bool {
        true
    }
}

// ---------------------------------------------------------------------------
// Harp

const HARP_GAIN: f32 = 0.5;
/// Length of the plucked transient (s).
const HARP_KS: f32 = 0.05;

pub struct Harp;

// State: phase[k] = harmonic k + 1 (k < 10); n[0] = loop position, n[1] = loop
// length; z[0] = previous line output, z[1], z[2] = all-pass input and output memory.
impl Synth for Harp {
    fn start(&self, st: &mut OscState, ctx: &SynthCtx) {
        random_phases(st, 10);
        let sr = ctx.sample_rate as f64;
        let (n, _) = super::pluck::tuning(ctx.freq_hz, sr, st.line.len());
        let n = n.min(st.line.len());
        // A noise burst, softened by a low-pass at 5 kHz (two passes of a one-pole),
        // at the same level per Hz at every sample rate.
        let a = 1.0 - (-std::f32::consts::TAU * 5000.0 / ctx.sample_rate).exp();
        let level = 0.3 * (ctx.sample_rate / 44_100.0).sqrt();
        let (mut y1, mut y2) = (0.0f32, 0.0f32);
        let mut mean = 0.0;
        for i in 0..n {
            let u = st.noise() * level;
            y1 += a * (u - y1);
            y2 += a * (y1 - y2);
            st.line[i] = y2;
            mean += y2;
        }
        mean /= n.max(1) as f32;
        for v in &mut st.line[..n] {
            *v -= mean;
        }
        st.n[0] = 0;
        st.n[1] = n;
    }

    fn render(&self, st: &mut OscState, ctx: &SynthCtx, out: &mut [f32]) {
        out.fill(0.0);
        let span = Span::new(st, ctx, out.len());
        let env = span.at(|t| HARP_GAIN * onset(t) * (-1.5 * t).exp());
        for k in 0..10 {
            let amp = match k {
                0 => 1.0,
                1 => 0.3,
                2 => 0.15,
                _ => 0.06 / (k + 1) as f32,
            };
            let r = 1.5 * k as f32;
            let g = (amp * env.0 * (-r * span.t0).exp(), amp * env.1 * (-r * span.t1).exp());
            partial(st, ctx, k, (k + 1) as f64, g, out);
        }
        if span.t0 < HARP_KS && !st.line.is_empty() {
            let left = (((HARP_KS - span.t0) * span.sr).ceil() as usize).min(out.len());
            let mut e = 0.4 * HARP_GAIN * (-8.0 * span.t0 / HARP_KS).exp();
            let k = (-8.0 / (HARP_KS * span.sr)).exp();
            super::pluck::run_loop(st, ctx, 1.0, left, |i, d| {
                out[i] += d * e;
                e *= k;
            });
        }
    }

    fn decays(&self) -> bool {
        true
    }

    fn uses_line(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::synth::line_len;
    use crate::params::ParamValues;
    use crate::tables::wavetable::Wavetables;

    #[test]
    fn the_rhodes_wide_build_plays_the_plain_one_bit_for_bit() {
        let waves = Wavetables::new();
        let params = ParamValues::default();
        for f in [41.2, 261.63, 2093.0] {
            let ctx = SynthCtx { sample_rate: 48_000.0, freq_hz: f, params: &params, waves: &waves };
            let mut a = OscState::new(0);
            a.reset(3);
            Rhodes.start(&mut a, &ctx);
            let mut b = OscState::new(0);
            b.reset(3);
            Rhodes.start(&mut b, &ctx);
            for block in 0..200 {
                if block == 120 {
                    Rhodes.damp(&mut a, 48_000.0, f);
                    Rhodes.damp(&mut b, 48_000.0, f);
                }
                let len = [64, 64, 7, 100][block % 4];
                let (mut x, mut y) = (vec![0.0f32; len], vec![0.0f32; len]);
                rhodes_render(&mut a, &ctx, &mut x);
                rhodes_render_wide(&mut b, &ctx, &mut y);
                a.age += len as u64;
                b.age += len as u64;
                assert_eq!(x, y, "{f} Hz, block {block}");
            }
        }
    }

    /// The Rhodes' gains as powers of two exponentials are the gains with one
    /// exponential per harmonic (as they were computed before), within 4e-6 relative,
    /// held and released.
    #[test]
    fn rhodes_gains_by_powers_match_one_exponential_per_harmonic() {
        let amps = [1.0, 0.7, 0.2, 0.12, 0.04, 0.02];
        for spread in [0.8f32, 1.1] {
            for released in [0.0f32, 0.05, 1.3] {
                for i in 0..4000 {
                    let t = i as f32 * 0.00077;
                    let got = rhodes_gains(&amps, spread, released, t);
                    let env = onset(t) * two_stage(t, 4.0, 0.15, 1.2);
                    for (k, (&g, a)) in got.iter().zip(amps).enumerate() {
                        let want = a * env * (-(spread * k as f32) * t).exp() * ep_damper(k, t, released);
                        assert!(
                            (g - want).abs() <= 4e-6 * want.abs() + 1e-30,
                            "k {k} t {t} released {released}: {g} {want}"
                        );
                    }
                }
            }
        }
    }

    /// Renders a Rhodes note for 2 s in ticks of 64, released at 1 s; `forget` clears
    /// the gains kept from the last tick before every tick.
    fn play_rhodes(forget: bool, waves: &Wavetables) -> Vec<f32> {
        let sr = 48_000.0f32;
        let params = ParamValues::default();
        let mut st = OscState::new(line_len(sr));
        st.reset(5);
        let ctx = SynthCtx { sample_rate: sr, freq_hz: 220.0, params: &params, waves };
        Rhodes.start(&mut st, &ctx);
        let mut out = vec![0.0f32; 96_000];
        for (i, block) in out.chunks_mut(64).enumerate() {
            if i * 64 == 48_000 {
                Rhodes.damp(&mut st, sr, 220.0);
            }
            if forget {
                st.z[RHODES_Z_AT] = -1.0;
            }
            Rhodes.render(&mut st, &ctx, block);
            st.age += block.len() as u64;
        }
        out
    }

    /// Keeping the gains of a tick's end for the next tick's start changes nothing.
    #[test]
    fn rhodes_gains_kept_between_ticks_play_the_same_as_gains_computed_every_tick() {
        let waves = Wavetables::new();
        let (kept, fresh) = (play_rhodes(false, &waves), play_rhodes(true, &waves));
        assert!(kept.iter().any(|x| x.abs() > 0.05), "the Rhodes is silent");
        assert!(kept.iter().zip(&fresh).all(|(a, b)| a.to_bits() == b.to_bits()));
    }
}
