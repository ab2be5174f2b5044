//! Winds and reeds: flute, trumpet, clarinet, oboe, saxophone, pedal steel, theremin
//! and bagpipe. Every one is an additive bank of exact harmonics of one fundamental
//! phase accumulator (sin and cos of the fundamental from the sine table, the higher
//! harmonics by complex rotation, which vectorises across samples; each harmonic has
//! its own seeded random phase where the reference draws one), so the pitch is exact
//! and a vibrato bends every harmonic together: the vibrato is integrated into the
//! phase (phase += (f + v(t)) / sr), a fixed depth (the reference's v(t) / f, a few
//! cents) faded in over its stated time, symmetric so that the average pitch is the
//! note. Harmonics at or above ~0.45 x
//! the sample rate (and above ~19.8 kHz, so that every rate sounds the same) are
//! faded out, decided on every render call (pitch bends). Fixed spectral shapes (the
//! clarinet's low-pass, the trumpet's bell resonance) are applied to the harmonic
//! amplitudes instead of filtering the sound. Breath and reed noise come from the
//! voice's seeded noise through band-pass filters at the stated bands, scaled with
//! the sample rate so that their level per Hz is the same at every rate. Levels are
//! fixed gains (no per-note normalisation). Ignores `detune`.
//!
//! - flute: harmonics 1, 3, 5, breath noise around the fundamental.
//! - trumpet: 20 harmonics peaking at the 4th, bell resonance 1.5..3 kHz on the
//!   harmonic amplitudes, a 20 ms noise burst at the attack.
//! - clarinet: odd harmonics 1/n, second-order low-pass roll-off at min(4 kHz, 8 f)
//!   on the harmonics, low-passed reed noise.
//! - oboe: 18 harmonics peaking at the 3rd, reed noise around the 2nd harmonic.
//! - saxophone: 25 harmonics through a soft reed shaper (only the harmonics below
//!   6.6 kHz are shaped, so that the shaper's products stay below Nyquist), four
//!   parallel formant band-passes, breath (2..6 kHz, strong at the attack), reed
//!   buzz, a 15 ms key click and a faint sub-octave; the vibrato rate drifts.
//! - pedal steel: 11 harmonics with a 4 Hz vibrato, decaying (exp(-0.8 t), steeper
//!   after 4 s so that it dies out within ~8 s).
//! - theremin: a sine and a little 2nd harmonic, 5.8 Hz vibrato and a gentle
//!   stationary pitch wobble (low-passed noise on the frequency).
//! - bagpipe: 17 harmonics peaking at the 5th, loud reed noise 2f..8f, a slow
//!   1.5 Hz swell.
//!
//! State (shared layout): `phase[0]` = fundamental phase, `phase[1..=25]` = per-harmonic
//! phase offsets, `phase[60]` = saxophone sub-octave phase, `phase[63]` = vibrato LFO
//! phase; `z[0..25]` = harmonic amplitudes (set in `start`); `z[32..]` = per-synth
//! filter state (see each synth); `z[62..64]` = theremin wobble filter.

use super::{OscState, Synth, SynthCtx, dc_out};
use crate::dsp::biquad::BiquadCoefs;
use crate::dsp::math::fast_tanh;
use crate::tables::wavetable::{Table, phase_inc, read};
use rand::RngExt;
use std::f64::consts::TAU;

/// Most harmonics a bank has (the saxophone's).
const MAX_H: usize = 25;
/// Samples processed per inner pass (stack buffers).
const CHUNK: usize = 64;
/// First `phase` slot of the harmonic phase offsets.
const OFFS: usize = 1;
/// Saxophone sub-octave phase.
const SUB: usize = 60;
/// Vibrato LFO phase.
const LFO: usize = 63;
/// First free `z` slot after the harmonic amplitudes.
const ZS: usize = 32;
/// Theremin wobble filter state.
const WOBBLE: usize = 62;
/// Highest harmonic frequency at any sample rate (0.45 x 44.1 kHz).
const MAX_HZ: f32 = 19_845.0;
/// sqrt(3): scales uniform noise (-1..1) to unit variance.
const SQRT3: f32 = 1.732_050_8;

/// A vibrato: `depth` is the relative frequency deviation (v(t) / f), faded in
/// linearly from `delay` over `fade` seconds.
struct Vibrato {
    rate_hz: f64,
    depth: f32,
    delay: f32,
    fade: f32,
}

/// Time in seconds of sample `offset` of this render call.
#[inline]
fn secs(st: &OscState, ctx: &SynthCtx, offset: usize) -> f32 {
    ((st.age + offset as u64) as f64 / ctx.sample_rate as f64) as f32
}

/// Noise scale so that white noise has the same level per Hz as at 44.1 kHz, times
/// sqrt(3) (uniform to unit variance).
#[inline]
fn noise_scale(ctx: &SynthCtx) -> f32 {
    (ctx.sample_rate / 44_100.0).sqrt() * SQRT3
}

#[inline]
fn load2(st: &OscState, at: usize) -> [f32; 2] {
    [st.z[at], st.z[at + 1]]
}

#[inline]
fn store2(st: &mut OscState, at: usize, s: [f32; 2]) {
    st.z[at] = s[0];
    st.z[at + 1] = s[1];
}

/// Biquad coefficients kept in `z[at..at + 5]`.
fn load_coefs(st: &OscState, at: usize) -> BiquadCoefs {
    let z = &st.z;
    BiquadCoefs { b0: z[at], b1: z[at + 1], b2: z[at + 2], a1: z[at + 3], a2: z[at + 4] }
}

fn store_coefs(st: &mut OscState, at: usize, c: &BiquadCoefs) {
    st.z[at..at + 5].copy_from_slice(&[c.b0, c.b1, c.b2, c.a1, c.a2]);
}

/// `bp[lo, hi]` as the reference writes it, kept inside the audible range.
fn band(lo: f64, hi: f64, sr: f64) -> BiquadCoefs {
    let top = (0.45 * sr).min(MAX_HZ as f64);
    let hi = hi.min(top);
    BiquadCoefs::bandpass_range(lo.max(20.0).min(hi * 0.9), hi, sr)
}

/// Fills the amplitudes of `count` harmonics and, if `random`, their phases.
fn init_bank(st: &mut OscState, count: usize, random: bool, amp: impl Fn(f32) -> f32) {
    for k in 0..count.min(MAX_H) {
        st.z[k] = amp((k + 1) as f32);
        st.phase[OFFS + k] = if random { st.rng.random::<u32>() } else { 0 };
    }
}

/// The harmonics sounding in one render call: harmonic `k` is number `1 + k * step`,
/// sounding `g_k sin(n x + phi_k)` = `a[k] cos(n x) + b[k] sin(n x)`.
struct Bank {
    a: [f32; MAX_H],
    b: [f32; MAX_H],
    step: u32,
    n: usize,
}

/// A quarter cycle of phase: cos(x) = sin(x + QUARTER).
const QUARTER: u32 = 1 << 30;

/// Per-call harmonic gains: harmonic `k` is number `1 + k * step`, with amplitude
/// `z[k] * shape(hz) * gain`, faded out near the top of the band.
fn gains(st: &OscState, ctx: &SynthCtx, count: usize, step: u32, gain: f32, shape: impl Fn(f32) -> f32) -> Bank {
    let f = ctx.freq_hz as f32;
    let limit = (0.45 * ctx.sample_rate).min(MAX_HZ);
    let sine = ctx.waves.sine();
    let mut bank = Bank { a: [0.0; MAX_H], b: [0.0; MAX_H], step, n: 0 };
    for k in 0..count.min(MAX_H) {
        let hz = (1 + k as u32 * step) as f32 * f;
        if hz >= limit {
            break;
        }
        let fade = ((limit - hz) / (0.1 * limit)).min(1.0);
        let g = st.z[k] * shape(hz) * fade * gain;
        let off = st.phase[OFFS + k];
        bank.a[k] = g * read(sine, off);
        bank.b[k] = g * read(sine, off.wrapping_add(QUARTER));
        bank.n = k + 1;
    }
    bank
}

/// Advances the fundamental phase over `ps.len()` samples from `offset` samples into
/// this render call, writing the phase at each sample into `ps`. The vibrato LFO
/// runs at `vib.rate_hz`; `wobble` (relative, RMS) adds low-passed noise (about
/// 6 Hz) to the frequency.
fn advance(st: &mut OscState, ctx: &SynthCtx, vib: &Vibrato, wobble: f32, offset: usize, ps: &mut [u32]) {
    let sr = ctx.sample_rate as f64;
    let sine = ctx.waves.sine();
    let inc = phase_inc(ctx.freq_hz, sr);
    let incf = inc as f32;
    let linc = phase_inc(vib.rate_hz, sr);
    let t0 = secs(st, ctx, offset);
    let dt = 1.0 / ctx.sample_rate;
    let fade_rate = if vib.fade > 0.0 { dt / vib.fade } else { 1.0 };
    let mut fade = if vib.fade > 0.0 { (t0 - vib.delay) / vib.fade } else { 1.0 };
    let depth = incf * vib.depth;
    let mut p = st.phase[0];
    let mut lp = st.phase[LFO];
    if wobble > 0.0 {
        // Two one-poles at ~6 Hz on unit-variance noise; `norm` makes the output's
        // RMS 1 (variance of the cascade: a^4 (1 + q^2) / (1 - q^2)^3, q = 1 - a).
        let a = 1.0 - (-TAU * 6.0 / sr).exp();
        let q = 1.0 - a;
        let var = a.powi(4) * (1.0 + q * q) / (1.0 - q * q).powi(3);
        let norm = (1.0 / var.sqrt()) as f32;
        let w = incf * wobble * norm;
        let (mut w1, mut w2) = (st.z[WOBBLE], st.z[WOBBLE + 1]);
        let a = a as f32;
        for x in ps.iter_mut() {
            let n = st.noise() * SQRT3;
            w1 += a * (n - w1);
            w2 += a * (w1 - w2);
            let v = read(sine, lp) * depth * fade.clamp(0.0, 1.0) + w2 * w;
            *x = p;
            p = p.wrapping_add(inc).wrapping_add_signed(v as i32);
            lp = lp.wrapping_add(linc);
            fade += fade_rate;
        }
        st.z[WOBBLE] = w1;
        st.z[WOBBLE + 1] = w2;
    } else {
        for x in ps.iter_mut() {
            let v = read(sine, lp) * depth * fade.clamp(0.0, 1.0);
            *x = p;
            p = p.wrapping_add(inc).wrapping_add_signed(v as i32);
            lp = lp.wrapping_add(linc);
            fade += fade_rate;
        }
    }
    st.phase[0] = p;
    st.phase[LFO] = lp;
}

/// Adds harmonics `first`, `first + step`, ... (weights `a`, `b`: see [`Bank`]) at
/// the fundamental phases `ps` into `out`. Two table reads give sin and cos of the
/// first harmonic and of the step; the others follow by complex rotation, which
/// vectorises across samples.
fn add_bank(sine: &Table, ps: &[u32], first: u32, step: u32, a: &[f32], b: &[f32], out: &mut [f32]) {
    let len = ps.len().min(out.len()).min(CHUNK);
    let (mut c, mut s, mut rc, mut rs, mut acc) =
        ([0.0f32; CHUNK], [0.0; CHUNK], [0.0; CHUNK], [0.0; CHUNK], [0.0; CHUNK]);
    for (i, &p) in ps[..len].iter().enumerate() {
        let p0 = p.wrapping_mul(first);
        let pr = p.wrapping_mul(step);
        c[i] = read(sine, p0.wrapping_add(QUARTER));
        s[i] = read(sine, p0);
        rc[i] = read(sine, pr.wrapping_add(QUARTER));
        rs[i] = read(sine, pr);
    }
    for (&ak, &bk) in a.iter().zip(b) {
        for i in 0..CHUNK {
            acc[i] += c[i] * ak + s[i] * bk;
            let nc = c[i] * rc[i] - s[i] * rs[i];
            s[i] = s[i] * rc[i] + c[i] * rs[i];
            c[i] = nc;
        }
    }
    for (o, v) in out[..len].iter_mut().zip(acc) {
        *o += v;
    }
}

/// Renders a bank with vibrato into `out` (overwriting), in chunks; `extra` then
/// post-processes each chunk (noise, envelopes), given its offset in the call.
fn render_bank(
    st: &mut OscState,
    ctx: &SynthCtx,
    out: &mut [f32],
    vib: &Vibrato,
    wobble: f32,
    bank: &Bank,
    mut extra: impl FnMut(&mut OscState, usize, &mut [f32]),
) {
    let sine = ctx.waves.sine();
    let n = bank.n;
    let mut ps = [0u32; CHUNK];
    let mut offset = 0;
    for chunk in out.chunks_mut(CHUNK) {
        let ps = &mut ps[..chunk.len()];
        advance(st, ctx, vib, wobble, offset, ps);
        chunk.fill(0.0);
        add_bank(sine, ps, 1, bank.step, &bank.a[..n], &bank.b[..n], chunk);
        extra(st, offset, chunk);
        offset += chunk.len();
    }
}

// ---------------------------------------------------------------------------------
// Flute

/// Flute: harmonics 1, 3, 5 (0.7, 0.15, 0.05) and breath noise in a band around
/// the fundamental. State: `z[32..34]` breath band-pass.
pub struct Flute;

const FLUTE_GAIN: f32 = 0.45;
const FLUTE_VIB: Vibrato = Vibrato { rate_hz: 5.0, depth: 0.0008, delay: 0.0, fade: 0.2 };

impl Synth for Flute {
    fn start(&self, st: &mut OscState, _ctx: &SynthCtx) {
        init_bank(st, 3, false, |n| [0.7, 0.15, 0.05][(n as usize - 1).min(2)]);
    }

    fn render(&self, st: &mut OscState, ctx: &SynthCtx, out: &mut [f32]) {
        let bank = gains(st, ctx, 3, 2, FLUTE_GAIN, |_| 1.0);
        let f = ctx.freq_hz;
        let bw = (0.3 * f).max(100.0);
        let c = band(f - bw, f + bw, ctx.sample_rate as f64);
        let amp = 0.15 * noise_scale(ctx) * FLUTE_GAIN;
        let mut s = load2(st, ZS);
        render_bank(st, ctx, out, &FLUTE_VIB, 0.0, &bank, |st, _, chunk| {
            for x in chunk.iter_mut() {
                *x += c.step(&mut s, st.noise() * amp);
            }
        });
        store2(st, ZS, s);
    }
}

// ---------------------------------------------------------------------------------
// Trumpet

/// Trumpet: 20 harmonics (1/n) exp(-0.08 (n-4)^2) at random phases, the bell's
/// 1.5..3 kHz resonance (x + 0.4 bp(x)) as a gain per harmonic, and a 20 ms noise
/// burst at the attack.
pub struct Trumpet;

const TRUMPET_GAIN: f32 = 0.29;
const TRUMPET_VIB: Vibrato = Vibrato { rate_hz: 5.5, depth: 0.001, delay: 0.0, fade: 0.15 };

/// |1 + g H(f)| for a second-order band-pass H between `lo` and `hi`.
fn boost(hz: f32, lo: f32, hi: f32, g: f32) -> f32 {
    let f0 = (lo * hi).sqrt();
    let q = f0 / (hi - lo);
    let u = q * (hz / f0 - f0 / hz);
    (((1.0 + g) * (1.0 + g) + u * u) / (1.0 + u * u)).sqrt()
}

impl Synth for Trumpet {
    fn start(&self, st: &mut OscState, _ctx: &SynthCtx) {
        init_bank(st, 20, true, |n| (-0.08 * (n - 4.0) * (n - 4.0)).exp() / n);
    }

    fn render(&self, st: &mut OscState, ctx: &SynthCtx, out: &mut [f32]) {
        // Harmonics above the 12th are below -60 dB: skipped.
        let bank = gains(st, ctx, 12, 1, TRUMPET_GAIN, |hz| boost(hz, 1500.0, 3000.0, 0.4));
        let burst = 0.02 * ctx.sample_rate;
        let amp = 0.1 * noise_scale(ctx) / SQRT3 * TRUMPET_GAIN;
        let k = 5.0 / burst;
        let age = st.age as f32;
        render_bank(st, ctx, out, &TRUMPET_VIB, 0.0, &bank, |st, offset, chunk| {
            let t = age + offset as f32;
            if t < burst {
                for (i, x) in chunk.iter_mut().enumerate() {
                    let ti = t + i as f32;
                    if ti < burst {
                        *x += st.noise() * amp * (-k * ti).exp();
                    }
                }
            }
        });
    }
}

// ---------------------------------------------------------------------------------
// Clarinet

/// Clarinet: odd harmonics 1..15 at 1/n, random phases, a second-order Butterworth
/// roll-off at min(4 kHz, 8 f) on the harmonics, reed noise through the same low-pass.
/// State: `z[32..34]` noise low-pass.
pub struct Clarinet;

const CLARINET_GAIN: f32 = 0.27;
const CLARINET_VIB: Vibrato = Vibrato { rate_hz: 4.5, depth: 0.001, delay: 0.0, fade: 0.3 };

impl Synth for Clarinet {
    fn start(&self, st: &mut OscState, _ctx: &SynthCtx) {
        // Slot k is harmonic 2k + 1.
        init_bank(st, 8, true, |k| 1.0 / (2.0 * k - 1.0));
    }

    fn render(&self, st: &mut OscState, ctx: &SynthCtx, out: &mut [f32]) {
        let fc = (8.0 * ctx.freq_hz as f32).clamp(20.0, 4000.0);
        let lp = |hz: f32| {
            let r = hz / fc;
            1.0 / (1.0 + r * r * r * r).sqrt()
        };
        let bank = gains(st, ctx, 8, 2, CLARINET_GAIN, lp);
        let c = BiquadCoefs::lowpass(fc as f64, std::f64::consts::FRAC_1_SQRT_2, ctx.sample_rate as f64);
        let amp = 0.05 * noise_scale(ctx) * CLARINET_GAIN;
        let mut s = load2(st, ZS);
        render_bank(st, ctx, out, &CLARINET_VIB, 0.0, &bank, |st, _, chunk| {
            for x in chunk.iter_mut() {
                *x += c.step(&mut s, st.noise() * amp);
            }
        });
        store2(st, ZS, s);
    }
}

// ---------------------------------------------------------------------------------
// Oboe

/// Oboe: 18 harmonics (1/n) exp(-0.05 (n-3)^2) at random phases, reed noise in a
/// band around the 2nd harmonic. State: `z[32..34]` reed band-pass.
pub struct Oboe;

const OBOE_GAIN: f32 = 0.24;
const OBOE_VIB: Vibrato = Vibrato { rate_hz: 5.0, depth: 0.001, delay: 0.0, fade: 0.2 };

impl Synth for Oboe {
    fn start(&self, st: &mut OscState, _ctx: &SynthCtx) {
        init_bank(st, 18, true, |n| (-0.05 * (n - 3.0) * (n - 3.0)).exp() / n);
    }

    fn render(&self, st: &mut OscState, ctx: &SynthCtx, out: &mut [f32]) {
        // Harmonics above the 15th are below -70 dB: skipped.
        let bank = gains(st, ctx, 15, 1, OBOE_GAIN, |_| 1.0);
        let f = ctx.freq_hz;
        let bw = (0.4 * f).max(100.0);
        let c = band(2.0 * f - bw, 2.0 * f + bw, ctx.sample_rate as f64);
        let amp = 0.06 * noise_scale(ctx) * OBOE_GAIN;
        let mut s = load2(st, ZS);
        render_bank(st, ctx, out, &OBOE_VIB, 0.0, &bank, |st, _, chunk| {
            for x in chunk.iter_mut() {
                *x += c.step(&mut s, st.noise() * amp);
            }
        });
        store2(st, ZS, s);
    }
}

// ---------------------------------------------------------------------------------
// Saxophone

/// Saxophone. State: `z[32..52]` the four formant band-passes' coefficients,
/// `z[52..60]` their states, `z[60..62]` breath band-pass, `z[62..64]` buzz band-pass;
/// `n[0]` the shaper's input scale (f32 bits), `phase[60]` the sub-octave phase.
pub struct Saxophone;

const SAX_GAIN: f32 = 0.42;
/// Harmonics up to this frequency go through the reed shaper; the ones above are
/// added after it, at about the shaper's average slope.
const SAX_SHAPED_HZ: f32 = 6615.0;
const SAX_HIGH_SLOPE: f32 = 1.2;
/// Formants (centre, half-width, gain).
const SAX_FORMANTS: [(f64, f64, f32); 4] =
    [(520.0, 120.0, 0.25), (1380.0, 200.0, 0.18), (2300.0, 280.0, 0.12), (3200.0, 350.0, 0.08)];
const SAX_F: usize = ZS;
const SAX_FS: usize = ZS + 20;
const SAX_BREATH: usize = ZS + 28;
const SAX_BUZZ: usize = ZS + 30;

fn sax_amp(n: f32) -> f32 {
    let a = match n as u32 {
        1 => 1.0,
        2 => 0.85,
        3 => 0.7,
        4..=8 => 0.55 * (-0.06 * (n - 5.0) * (n - 5.0)).exp(),
        _ => 0.35 / n.powf(0.7),
    };
    if (n as u32).is_multiple_of(2) { a * 0.9 } else { a }
}

/// The reed's soft saturation.
#[inline]
fn reed(x: f32) -> f32 {
    0.7 * fast_tanh(1.8 * x) + 0.3 * fast_tanh(2.5 * x)
}

impl Synth for Saxophone {
    fn start(&self, st: &mut OscState, ctx: &SynthCtx) {
        init_bank(st, MAX_H, true, sax_amp);
        let sr = ctx.sample_rate as f64;
        for (i, &(fc, bw, _)) in SAX_FORMANTS.iter().enumerate() {
            store_coefs(st, SAX_F + 5 * i, &band(fc - bw, fc + bw, sr));
        }
        // The shaper sees the harmonic sum at a peak of about 1 (the reference
        // normalises before it): the peak of one cycle, sampled at 64 points.
        let limit = (0.45 * ctx.sample_rate).min(MAX_HZ);
        let n_on = ((limit / ctx.freq_hz.max(1.0) as f32) as usize).min(MAX_H);
        let sine = ctx.waves.sine();
        let mut peak = 0.0f32;
        for i in 0..64u32 {
            let p = i << 26;
            let mut v = 0.0;
            for k in 0..n_on {
                v += read(sine, p.wrapping_mul(k as u32 + 1).wrapping_add(st.phase[OFFS + k])) * st.z[k];
            }
            peak = peak.max(v.abs());
        }
        st.n[0] = (1.0 / peak.max(0.1)).to_bits() as usize;
    }

    fn render(&self, st: &mut OscState, ctx: &SynthCtx, out: &mut [f32]) {
        let sr = ctx.sample_rate as f64;
        let f = ctx.freq_hz;
        let scale = f32::from_bits(st.n[0] as u32);
        let mut bank = gains(st, ctx, MAX_H, 1, scale, |_| 1.0);
        let n_on = bank.n;
        let n_low = ((SAX_SHAPED_HZ / f as f32) as usize).clamp(1, MAX_H).min(n_on);
        for k in n_low..n_on {
            bank.a[k] *= SAX_HIGH_SLOPE;
            bank.b[k] *= SAX_HIGH_SLOPE;
        }
        // The vibrato's rate drifts: 5 + 0.15 sin(2 pi 0.4 t) Hz.
        let t = st.age as f64 / sr;
        let vib = Vibrato { rate_hz: 5.0 + 0.15 * (TAU * 0.4 * t).sin(), depth: 0.0006, delay: 0.3, fade: 0.3 };
        let formants = [0, 1, 2, 3].map(|i| load_coefs(st, SAX_F + 5 * i));
        let mut fs = [0, 1, 2, 3].map(|i| load2(st, SAX_FS + 2 * i));
        let c_breath = band(2000.0, 6000.0, sr);
        let c_buzz = band(0.8 * f, 4.0 * f, sr);
        let (mut s_breath, mut s_buzz) = (load2(st, SAX_BREATH), load2(st, SAX_BUZZ));
        let ns = noise_scale(ctx);
        let click_len = 0.015 * ctx.sample_rate;
        let click_k = 8.0 / click_len;
        let sub_on = f > 80.0;
        let dt = 1.0 / ctx.sample_rate;

        let sine = ctx.waves.sine();
        let mut ps = [0u32; CHUNK + 1];
        let mut lo = [0.0f32; CHUNK];
        let mut offset = 0;
        for chunk in out.chunks_mut(CHUNK) {
            let len = chunk.len();
            advance(st, ctx, &vib, 0.0, offset, &mut ps[..len]);
            ps[len] = st.phase[0];
            let lo = &mut lo[..len];
            lo.fill(0.0);
            chunk.fill(0.0);
            add_bank(sine, &ps[..len], 1, 1, &bank.a[..n_low], &bank.b[..n_low], lo);
            if n_on > n_low {
                let (a, b) = (&bank.a[n_low..n_on], &bank.b[n_low..n_on]);
                add_bank(sine, &ps[..len], 1 + n_low as u32, 1, a, b, chunk);
            }
            // Envelopes over this chunk (linear in time or slow enough to step).
            let t0 = secs(st, ctx, offset);
            let breath_env = (0.15 * (-8.0 * t0).exp() + 0.03) * ns;
            let age0 = (st.age + offset as u64) as f32;
            let mut sub_p = st.phase[SUB];
            // The shaper first, in a loop of its own (it vectorises).
            for (x, &l) in chunk.iter_mut().zip(lo.iter()) {
                *x += reed(l);
            }
            for (i, x) in chunk.iter_mut().enumerate() {
                let y = *x;
                let mut v = 0.7 * y;
                for ((c, s), &(_, _, gain)) in formants.iter().zip(fs.iter_mut()).zip(&SAX_FORMANTS) {
                    v += gain * c.step(s, y);
                }
                v += c_breath.step(&mut s_breath, st.noise()) * breath_env;
                v += c_buzz.step(&mut s_buzz, st.noise()) * 0.06 * ns;
                let ti = age0 + i as f32;
                if ti < click_len {
                    v += 0.12 * ns / SQRT3 * st.noise() * (-click_k * ti).exp();
                }
                if sub_on {
                    let sub_fade = (ti * dt / 0.1).min(1.0);
                    v += 0.04 * read(sine, sub_p) * sub_fade;
                    sub_p = sub_p.wrapping_add(ps[i + 1].wrapping_sub(ps[i]) >> 1);
                }
                *x = v * SAX_GAIN;
            }
            st.phase[SUB] = sub_p;
            offset += len;
        }
        for (i, s) in fs.iter().enumerate() {
            store2(st, SAX_FS + 2 * i, *s);
        }
        store2(st, SAX_BREATH, s_breath);
        store2(st, SAX_BUZZ, s_buzz);
        // The reed shaper's asymmetric input leaves DC (-34 dB of the note's RMS).
        dc_out(st, ctx.sample_rate, out);
    }
}

// ---------------------------------------------------------------------------------
// Pedal steel

/// Pedal steel: 11 harmonics (1/n) exp(-0.08 n) at random phases, 4 Hz vibrato,
/// decaying as exp(-0.8 t), and faster after 4 s (-80 dB by about 7.5 s).
pub struct PedalSteel;

const STEEL_GAIN: f32 = 0.27;
const STEEL_VIB: Vibrato = Vibrato { rate_hz: 4.0, depth: 0.002, delay: 0.0, fade: 0.0 };

/// The pedal steel's amplitude at `t` seconds.
fn steel_env(t: f32) -> f32 {
    let late = (t - 4.0).max(0.0);
    (-0.8 * t - 0.3 * late * late).exp()
}

impl Synth for PedalSteel {
    fn start(&self, st: &mut OscState, _ctx: &SynthCtx) {
        init_bank(st, 11, true, |n| (-0.08 * n).exp() / n);
    }

    fn render(&self, st: &mut OscState, ctx: &SynthCtx, out: &mut [f32]) {
        let bank = gains(st, ctx, 11, 1, STEEL_GAIN, |_| 1.0);
        let t0 = secs(st, ctx, 0);
        if steel_env(t0) < 1e-6 {
            out.fill(0.0);
            return;
        }
        let t1 = secs(st, ctx, out.len());
        let (e0, e1) = (steel_env(t0), steel_env(t1));
        let de = (e1 - e0) / out.len().max(1) as f32;
        render_bank(st, ctx, out, &STEEL_VIB, 0.0, &bank, |_, offset, chunk| {
            let mut e = e0 + de * offset as f32;
            for x in chunk.iter_mut() {
                *x *= e;
                e += de;
            }
        });
    }

    fn decays(&self) -> bool {
        true
    }
}

// ---------------------------------------------------------------------------------
// Theremin

/// Theremin: a sine with 8% 2nd harmonic, a 5.8 Hz vibrato of 0.4% and a gentle
/// pitch wobble (0.1% RMS, low-passed at ~6 Hz) integrated into the phase: it stays
/// stationary instead of growing with time.
pub struct Theremin;

const THEREMIN_GAIN: f32 = 0.33;
const THEREMIN_VIB: Vibrato = Vibrato { rate_hz: 5.8, depth: 0.004, delay: 0.0, fade: 0.0 };

impl Synth for Theremin {
    fn start(&self, st: &mut OscState, _ctx: &SynthCtx) {
        init_bank(st, 2, false, |n| if n < 1.5 { 1.0 } else { 0.08 });
    }

    fn render(&self, st: &mut OscState, ctx: &SynthCtx, out: &mut [f32]) {
        let bank = gains(st, ctx, 2, 1, THEREMIN_GAIN, |_| 1.0);
        render_bank(st, ctx, out, &THEREMIN_VIB, 0.001, &bank, |_, _, _| {});
    }
}

// ---------------------------------------------------------------------------------
// Bagpipe

/// Bagpipe: 17 harmonics (1/n) exp(-0.03 (n-5)^2) at random phases, loud reed noise
/// over 2f..8f, all swelling by 2% at 1.5 Hz. State: `z[32..34]` reed band-pass.
pub struct Bagpipe;

const BAGPIPE_GAIN: f32 = 0.255;
const NO_VIB: Vibrato = Vibrato { rate_hz: 0.0, depth: 0.0, delay: 0.0, fade: 0.0 };

impl Synth for Bagpipe {
    fn start(&self, st: &mut OscState, _ctx: &SynthCtx) {
        init_bank(st, 17, true, |n| (-0.03 * (n - 5.0) * (n - 5.0)).exp() / n);
    }

    fn render(&self, st: &mut OscState, ctx: &SynthCtx, out: &mut [f32]) {
        let bank = gains(st, ctx, 17, 1, BAGPIPE_GAIN, |_| 1.0);
        let f = ctx.freq_hz;
        let c = band(2.0 * f, 8.0 * f, ctx.sample_rate as f64);
        let amp = 0.08 * 1.5 * noise_scale(ctx) * BAGPIPE_GAIN;
        let sr = ctx.sample_rate as f64;
        let swell = |t: u64| 1.0 + 0.02 * (TAU * 1.5 * t as f64 / sr).sin() as f32;
        let (age, n) = (st.age, out.len());
        let (w0, w1) = (swell(age), swell(age + n as u64));
        let dw = (w1 - w0) / n.max(1) as f32;
        let mut s = load2(st, ZS);
        render_bank(st, ctx, out, &NO_VIB, 0.0, &bank, |st, offset, chunk| {
            let mut w = w0 + dw * offset as f32;
            for x in chunk.iter_mut() {
                *x = (*x + c.step(&mut s, st.noise() * amp)) * w;
                w += dw;
            }
        });
        store2(st, ZS, s);
    }
}
