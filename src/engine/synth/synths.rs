//! Synthesizers: mellotron, hard sync, ring modulation, wavefolding, analog drift,
//! granular. All sustained, all on 32-bit phase accumulators (exact pitch), all
//! band-limited:
//!
//! - mellotron: tape replay with a symmetric wow-and-flutter wobble in cents
//!   (three seeded sines, integrated into the phase, so the average pitch is the
//!   note). Strings tape: three sections at -1.5/0/+1.5 cents, each a band-limited
//!   saw with its even harmonics at 0.8 (a saw minus a tenth of an inverted saw an
//!   octave up), limited to 25 harmonics; flute tape: three odd sine partials and
//!   band-passed breath; choir tape: 20 formant-weighted harmonics and an
//!   8-harmonic second voice drifting slowly by +/-0.5%. The detuned copies leave
//!   the fundamental to the main one (which takes their power), so that beating
//!   never moves the heard pitch. Then the tape band (high-pass at
//!   min(300 Hz, 0.9 f), low-pass at 6 kHz), gentle tanh saturation and hiss.
//! - hard_sync: a slave saw reset by the master, rendered at twice the sample rate
//!   with PolyBLEP residuals at both its own wraps and the resets (placed at their
//!   exact sub-sample times, the output held back one sample so the sample before
//!   each jump is corrected too), then decimated by a half-band FIR; its DC (which
//!   depends on the ratio) is removed exactly.
//! - ring_mod: sin(a) sin(b) rendered as its sum and difference cosines, each
//!   dropped when above 0.45 x the sample rate.
//! - wavefold: a triangle fold of folds x sin, antiderivative anti-aliased at four
//!   times the sample rate and decimated by two half-band FIRs (15 and 51 taps).
//! - drift: a band-limited table oscillator whose pitch wanders by two slow LFOs and
//!   50 Hz low-passed noise (cents, updated per render call and ramped), a one-pole
//!   low-pass at min(16 kHz, 12 f) and a faint noise floor.
//! - granular_synth: up to eight overlapping Hann-windowed grains of a band-limited
//!   saw, each at the note's pitch times a random symmetric cents offset (drawn in
//!   mirrored pairs, so the average pitch is the note), started on a jittered grid
//!   at the phase of a continuous oscillator (so overlapping grains add up to a
//!   steady tone), normalised by the expected sum of the windows (or the actual
//!   one where grains cluster, so the level never exceeds one grain's).
//!
//! Noise-like components (hiss, breath, noise floor) are scaled with the sample rate
//! so their level in the audible band does not depend on it.

use super::{OscState, Synth, SynthCtx, dc_out, with_detune};
use crate::dsp::biquad::BiquadCoefs;
use crate::dsp::math::fast_tanh;
use crate::dsp::oversample::{HALFBAND_2X as HB2, HALFBAND_4X as HB4};
use crate::params::Param;
use crate::tables::wavetable::{Shape, Table, phase_inc, read};
use rand::RngExt;
use std::f64::consts::{PI, TAU};

/// One cycle of a 32-bit phase.
const TWO32: f64 = 4_294_967_296.0;
/// A quarter cycle (sine to cosine).
const QUARTER: u32 = 1 << 30;
/// Half a cycle.
const HALF: u32 = 1 << 31;
/// Partials stop at this fraction of the sample rate...
const BAND: f64 = 0.45;
/// ...fading out over this fraction below it, so that pitch bends do not click.
const BAND_FADE: f64 = 0.03;

/// The gain of a partial at `freq` Hz: 1 well below the band limit, 0 above it.
#[inline]
fn band_gain(freq: f64, sr: f64) -> f32 {
    ((BAND * sr - freq.abs()) / (BAND_FADE * sr)).clamp(0.0, 1.0) as f32
}

/// A phase increment for any frequency, wrapped modulo one cycle (not clamped
/// below Nyquist as `phase_inc` is): sums and differences of phases stay exact.
#[inline]
fn wrapping_inc(freq_hz: f64, sr: f64) -> u32 {
    ((freq_hz / sr).rem_euclid(1.0) * TWO32) as u64 as u32
}

/// A seeded random phase.
#[inline]
fn random_phase(st: &mut OscState) -> u32 {
    st.rng.random::<u32>()
}

/// A cosine from the sine table.
#[inline(always)]
fn cos(sine: &Table, p: u32) -> f32 {
    read(sine, p.wrapping_add(QUARTER))
}

/// The ratio of a pitch offset in cents.
#[inline]
fn cents_ratio(cents: f64) -> f64 {
    (cents / 1200.0).exp2()
}

/// A phase increment ramping linearly over a render call (slow modulations are
/// computed at the ends of the call only).
#[derive(Clone, Copy)]
struct Ramp {
    inc: f64,
    step: f64,
}

impl Ramp {
    /// From the increment of `f0` Hz to that of `f1` Hz over `n` samples.
    #[inline]
    fn new(f0: f64, f1: f64, sr: f64, n: usize) -> Self {
        let (a, b) = ((f0 / sr).clamp(0.0, 0.5) * TWO32, (f1 / sr).clamp(0.0, 0.5) * TWO32);
        Ramp { inc: a, step: (b - a) / n.max(1) as f64 }
    }

    /// The next increment.
    #[inline(always)]
    fn next(&mut self) -> u32 {
        let i = self.inc as u32;
        self.inc += self.step;
        i
    }
}

/// Scale of white noise so that its density in the audible band matches the
/// reference's at 44.1 kHz.
#[inline]
fn noise_scale(sr: f64) -> f32 {
    (sr / 44_100.0).sqrt() as f32
}

/// The inverse of the standard deviation of a uniform -1..1 draw: a uniform draw
/// times this has unit variance.
const UNIFORM_TO_UNIT: f32 = 1.732_050_8;

// ---------------------------------------------------------------------------
// Mellotron

pub struct Mellotron;

/// Tape wow and flutter: (rate Hz, depth cents).
const WOBBLE: [(f64, f64); 3] = [(0.4, 0.12), (6.3, 0.06), (9.7, 0.03)];
/// Strings tape: the detune of the three sections, cents. The fundamental is the
/// middle section's alone (raised to the three sections' power): three beating
/// fundamentals cancel each other at times, and the heard pitch then wanders by
/// several cents; the ensemble's shimmer is in the upper harmonics anyway.
const SECTIONS: [f64; 3] = [0.0, -1.5, 1.5];
/// The saw table's fundamental (a sine of this amplitude), and what the middle
/// section adds to it.
const SAW_FUNDAMENTAL: f32 = 0.534_761;
const FUNDAMENTAL_BOOST: f32 = 0.391_475;
/// Strings tape: the saw tables hold at most this many harmonics.
const STRINGS_HARMONICS: f64 = 25.0;
/// Choir tape: harmonics of the main voice and of the second voice.
const CHOIR_MAIN: usize = 20;
const CHOIR_SECOND: usize = 8;
/// Choir tape: level of the second voice, its slow drift (fraction) and rate.
const CHOIR_SECOND_LEVEL: f64 = 0.35;
const CHOIR_DRIFT: f64 = 0.005;
const CHOIR_DRIFT_HZ: f64 = 0.13;
/// Choir formants: (centre Hz, width Hz); each boosts by up to `FORMANT_BOOST`.
const FORMANTS: [(f64, f64); 3] = [(800.0, 100.0), (1200.0, 120.0), (2500.0, 200.0)];
const FORMANT_BOOST: f64 = 1.5;
/// RMS of the raw tape signal going into the saturation (the reference normalises
/// its peak to 1 there).
const TAPE_RMS: f32 = 0.33;
/// Strings: the gain that brings three sections to `TAPE_RMS`.
const STRINGS_GAIN: f32 = 0.42;
/// Flute: partials (harmonic, amplitude), gain to `TAPE_RMS`, breath level and
/// the breath band-pass Q.
const FLUTE: [(u32, f32); 3] = [(1, 0.7), (3, 0.12), (5, 0.04)];
const FLUTE_GAIN: f32 = 0.62;
const BREATH: f32 = 0.25;
const BREATH_Q: f64 = 1.0;
/// Saturation drive and makeup: tanh(1.4 x) / 1.2.
const SAT_DRIVE: f32 = 1.4;
const SAT_MAKEUP: f32 = 1.0 / 1.2;
/// Hiss, relative to the saturated signal (standard deviation at 44.1 kHz).
const HISS: f32 = 0.008;
/// Output gain: the saturated signal peaks at 0.83.
const TAPE_OUT: f32 = 0.75;

// State: phase[0..3] = the strings sections (phase[0] is also the flute's and the
// choir's main phase), phase[3] = the choir's second voice, phase[8..28] = the
// choir's harmonic phase offsets, phase[28..36] = the second voice's offsets;
// z[0..3] = wobble LFO phases (radians), z[3] = the second voice's drift LFO phase,
// z[4..6] = high-pass state, z[6..8] = low-pass state, z[8..10] = breath band-pass
// state, z[10] = pitch the choir amplitudes are for, z[11] = choir gain,
// z[12..32] = main voice amplitudes, z[32..40] = second voice amplitudes.
const CH_OFFSETS: usize = 8;
const CH2_OFFSETS: usize = CH_OFFSETS + CHOIR_MAIN;
const CH_AMPS: usize = 12;
const CH2_AMPS: usize = CH_AMPS + CHOIR_MAIN;

/// The wobble's pitch ratio at `t` seconds.
fn wobble_ratio(z: &[f32], t: f64) -> f64 {
    let cents: f64 = WOBBLE.iter().zip(z).map(|(&(hz, depth), &ph)| depth * (TAU * hz * t + ph as f64).sin()).sum();
    cents_ratio(cents)
}

/// The choir's formant weighting of a partial at `freq`.
fn formant_weight(freq: f64) -> f64 {
    FORMANTS.iter().map(|&(c, bw)| 1.0 + FORMANT_BOOST * (-((freq - c) / bw).powi(2)).exp()).product()
}

/// Computes the choir's partial amplitudes and gain for pitch `f`.
fn choir_amps(st: &mut OscState, f: f64, sr: f64) {
    let mut power = 0.0;
    let amp = |h: f64| formant_weight(h * f) / h * band_gain(h * f * (1.0 + CHOIR_DRIFT), sr) as f64;
    for k in 0..CHOIR_MAIN {
        let mut a = amp((k + 1) as f64);
        if k == 0 {
            // The second voice's fundamental is the main one's (see `SECTIONS`).
            a *= (1.0 + CHOIR_SECOND_LEVEL * CHOIR_SECOND_LEVEL).sqrt();
        }
        st.z[CH_AMPS + k] = a as f32;
        power += a * a / 2.0;
    }
    st.z[CH2_AMPS] = 0.0;
    for k in 1..CHOIR_SECOND {
        let a = CHOIR_SECOND_LEVEL * amp((k + 1) as f64);
        st.z[CH2_AMPS + k] = a as f32;
        power += a * a / 2.0;
    }
    st.z[10] = f as f32;
    st.z[11] = TAPE_RMS / power.sqrt().max(1e-6) as f32;
}

impl Synth for Mellotron {
    fn start(&self, st: &mut OscState, ctx: &SynthCtx) {
        for k in 0..4 {
            st.z[k] = (st.noise() as f64 * PI) as f32;
        }
        for k in 0..3 {
            st.phase[k] = random_phase(st);
        }
        for k in CH_OFFSETS..CH2_OFFSETS + CHOIR_SECOND {
            st.phase[k] = random_phase(st);
        }
        choir_amps(st, ctx.freq_hz, ctx.sample_rate as f64);
    }

    fn render(&self, st: &mut OscState, ctx: &SynthCtx, out: &mut [f32]) {
        let n = out.len();
        if n == 0 {
            return;
        }
        let sr = ctx.sample_rate as f64;
        let f = ctx.freq_hz.max(1.0);
        let t0 = st.age as f64 / sr;
        let t1 = t0 + n as f64 / sr;
        let (r0, r1) = (wobble_ratio(&st.z, t0), wobble_ratio(&st.z, t1));
        let sine = ctx.waves.sine();
        let gain = match ctx.param(Param::Tape) as usize {
            1 => {
                // Flute: odd sine partials on the wobbling phase, plus breath.
                let mut ramp = Ramp::new(f * r0, f * r1, sr, n);
                let amps = FLUTE.map(|(h, a)| (h, a * band_gain(h as f64 * f, sr)));
                let mut p = st.phase[0];
                for x in out.iter_mut() {
                    let mut v = 0.0;
                    for &(h, a) in &amps {
                        v += a * read(sine, p.wrapping_mul(h));
                    }
                    *x = v;
                    p = p.wrapping_add(ramp.next());
                }
                st.phase[0] = p;
                let bp = BiquadCoefs::bandpass((2.5 * f).clamp(800.0, 5000.0), BREATH_Q, sr);
                let level = BREATH * UNIFORM_TO_UNIT * noise_scale(sr);
                let mut s = [st.z[8], st.z[9]];
                for x in out.iter_mut() {
                    let w = st.noise() * level;
                    *x += bp.step(&mut s, w);
                }
                [st.z[8], st.z[9]] = s;
                FLUTE_GAIN
            }
            2 => {
                // Choir: formant-weighted harmonics and a slowly drifting second voice.
                if (st.z[10] as f64 - f).abs() > 0.01 * f {
                    choir_amps(st, f, sr);
                }
                let drift = |t: f64| 1.0 + CHOIR_DRIFT * (TAU * CHOIR_DRIFT_HZ * t + st.z[3] as f64).sin();
                let mut ramp = Ramp::new(f * r0, f * r1, sr, n);
                let mut ramp2 = Ramp::new(f * r0 * drift(t0), f * r1 * drift(t1), sr, n);
                let (mut p, mut q) = (st.phase[0], st.phase[3]);
                let (offs, offs2) =
                    (&st.phase[CH_OFFSETS..CH2_OFFSETS], &st.phase[CH2_OFFSETS..CH2_OFFSETS + CHOIR_SECOND]);
                let (amps, amps2) = (&st.z[CH_AMPS..CH2_AMPS], &st.z[CH2_AMPS..CH2_AMPS + CHOIR_SECOND]);
                for x in out.iter_mut() {
                    let mut v = 0.0;
                    let mut ph = p;
                    for (&a, &o) in amps.iter().zip(offs) {
                        v += a * read(sine, ph.wrapping_add(o));
                        ph = ph.wrapping_add(p);
                    }
                    let mut ph = q;
                    for (&a, &o) in amps2.iter().zip(offs2) {
                        v += a * read(sine, ph.wrapping_add(o));
                        ph = ph.wrapping_add(q);
                    }
                    *x = v;
                    p = p.wrapping_add(ramp.next());
                    q = q.wrapping_add(ramp2.next());
                }
                st.phase[0] = p;
                st.phase[3] = q;
                st.z[11]
            }
            _ => {
                // Strings: three sections of band-limited saws with softened even harmonics.
                out.fill(0.0);
                let most = TWO32 / (2.0 * STRINGS_HARMONICS);
                for (k, &cents) in SECTIONS.iter().enumerate() {
                    let fs = f * cents_ratio(cents);
                    let inc = phase_inc(fs, sr) as f64;
                    let t1 = ctx.waves.table(Shape::Saw, inc.max(most) as u32);
                    let t2 = ctx.waves.table(Shape::Saw, (2.0 * inc).max(2.0 * most).min(u32::MAX as f64) as u32);
                    let mut ramp = Ramp::new(fs * r0, fs * r1, sr, n);
                    let mut p = st.phase[k];
                    let fundamental = if k == 0 { FUNDAMENTAL_BOOST } else { -SAW_FUNDAMENTAL };
                    for x in out.iter_mut() {
                        let saw = read(t1, p) - 0.1 * read(t2, p.wrapping_mul(2).wrapping_add(HALF));
                        *x += saw + fundamental * read(sine, p);
                        p = p.wrapping_add(ramp.next());
                    }
                    st.phase[k] = p;
                }
                STRINGS_GAIN
            }
        };
        // The tape: band, saturation, hiss.
        let hp = BiquadCoefs::highpass((0.9 * f).min(300.0), std::f64::consts::FRAC_1_SQRT_2, sr);
        let lp = BiquadCoefs::lowpass(6000.0, std::f64::consts::FRAC_1_SQRT_2, sr);
        let hiss = HISS * UNIFORM_TO_UNIT * noise_scale(sr);
        let (mut sh, mut sl) = ([st.z[4], st.z[5]], [st.z[6], st.z[7]]);
        for x in out.iter_mut() {
            let v = lp.step(&mut sl, hp.step(&mut sh, *x * gain));
            let v = fast_tanh(SAT_DRIVE * v) * SAT_MAKEUP + st.noise() * hiss;
            *x = v * TAPE_OUT;
        }
        st.z[4..8].copy_from_slice(&[sh[0], sh[1], sl[0], sl[1]]);
        // The saturation of an asymmetric wave (the strings' softened even harmonics,
        // the choir's formant-weighted harmonics) leaves DC: take it out.
        dc_out(st, ctx.sample_rate, out);
    }
}

// ---------------------------------------------------------------------------
// Oversampling: half-band decimators with their histories in rings at the start of
// the voice's delay line (line[..RING2] at twice the sample rate, then
// line[RING2..RING2 + RING4] at four times), write positions in n[0] and n[1].

// The 2x -> 1x and 4x -> 2x half-bands are `dsp::oversample`'s (odd taps).
const RING2: usize = 64;
const RING4: usize = 16;

/// The two rings, if the line is long enough (it always is: one period of 27.5 Hz).
fn rings(line: &mut [f32]) -> Option<(&mut [f32; RING2], &mut [f32; RING4])> {
    let (a, rest) = line.split_at_mut_checked(RING2)?;
    let b = rest.get_mut(..RING4)?;
    Some((a.try_into().ok()?, b.try_into().ok()?))
}

/// Pushes two samples into a half-band decimator's ring and returns one output.
/// `N` is a power of two longer than the filter.
#[inline(always)]
fn halfband<const N: usize>(ring: &mut [f32; N], w: &mut usize, taps: &[f32], a: f32, b: f32) -> f32 {
    let mask = N - 1;
    ring[*w & mask] = a;
    let last = (*w + 1) & mask;
    ring[last] = b;
    *w = (*w + 2) & mask;
    let c = last.wrapping_sub(2 * taps.len() - 1);
    let mut v = 0.5 * ring[c & mask];
    for (k, &h) in taps.iter().enumerate() {
        let d = 2 * k + 1;
        v += h * (ring[c.wrapping_sub(d) & mask] + ring[c.wrapping_add(d) & mask]);
    }
    v
}

/// The detune copies in use: their pitch ratios and how many (see `with_detune`).
fn detune_copies(ctx: &SynthCtx) -> ([f64; 3], usize) {
    let cents = ctx.param(Param::Detune) as f64;
    if cents <= 0.0 {
        ([1.0; 3], 1)
    } else {
        let r = cents_ratio(cents);
        ([1.0, r, 1.0 / r], 3)
    }
}

// ---------------------------------------------------------------------------
// Hard sync

pub struct HardSync;

/// Output gain of the +/-1 slave saw.
const SYNC_GAIN: f32 = 0.5;
/// Frames rendered at a time (at twice the rate in a stack buffer).
const SYNC_CHUNK: usize = 64;

/// The slave/master ratio in use: the slave advances at most 0.45 cycles per
/// sample at twice the sample rate (at most one wrap per sample).
fn sync_ratio(ctx: &SynthCtx) -> f64 {
    let r = ctx.param(Param::SyncRatio).max(1.0) as f64;
    r.min(BAND * 2.0 * ctx.sample_rate as f64 / ctx.freq_hz.max(1.0)).max(1.0)
}

/// Renders one detune copy of the synced saw at twice the rate into `buf` (adding):
/// `ph` = [master phase, slave phase (f32 bits, 0..1), the sample held back (f32
/// bits), which still takes the PolyBLEP correction of a jump early in the next].
fn sync_copy(ph: &mut [u32], dm: u32, ratio: f64, buf: &mut [f32]) {
    let [pm0, ps0, prev0, ..] = *ph else {
        return;
    };
    let dm = dm.max(1);
    let inv_dm = 1.0 / dm as f32;
    let ds = ((dm as f64 * ratio / TWO32) as f32).max(1e-9);
    let inv_ds = 1.0 / ds;
    let mut pm = pm0;
    let mut ps = f32::from_bits(ps0);
    let mut prev = f32::from_bits(prev0);
    if !ps.is_finite() || !prev.is_finite() {
        (ps, prev) = (0.0, 0.0);
    }
    for x in buf.iter_mut() {
        let (next, reset) = pm.overflowing_add(dm);
        pm = next;
        ps += ds;
        // PolyBLEP: a jump of h at d samples ago (0 <= d < 1) corrects the previous
        // sample by h d^2/2 and this one by -h (1-d)^2/2.
        let mut corr = 0.0;
        if reset {
            let since = (pm as f32 * inv_dm).min(1.0);
            let mut at = ps - ds * since;
            if at >= 1.0 {
                // The slave wrapped before the reset too.
                at -= 1.0;
                let d = (since + at * inv_ds).min(1.0);
                prev -= d * d;
                corr += (1.0 - d) * (1.0 - d);
            }
            let h = -2.0 * at;
            prev += 0.5 * h * since * since;
            corr -= 0.5 * h * (1.0 - since) * (1.0 - since);
            ps = ds * since;
        } else if ps >= 1.0 {
            ps -= 1.0;
            let d = (ps * inv_ds).min(1.0);
            prev -= d * d;
            corr += (1.0 - d) * (1.0 - d);
        }
        *x += prev;
        prev = 2.0 * ps - 1.0 + corr;
    }
    ph[0] = pm;
    ph[1] = ps.to_bits();
    ph[2] = prev.to_bits();
}

// State: phase[3k..3k + 3] = detune copy k (see `sync_copy`); the 2x ring.
impl Synth for HardSync {
    fn uses_line(&self) -> bool {
        true
    }

    fn start(&self, st: &mut OscState, ctx: &SynthCtx) {
        // Start where the slave is mid-ramp (output 0), so the note starts without a jump.
        let r = sync_ratio(ctx);
        for copy in st.phase.chunks_exact_mut(3).take(3) {
            copy[0] = (0.5 / r * TWO32) as u32;
            copy[1] = 0.5f32.to_bits();
            copy[2] = 0.0f32.to_bits();
        }
    }

    fn render(&self, st: &mut OscState, ctx: &SynthCtx, out: &mut [f32]) {
        let sr2 = 2.0 * ctx.sample_rate as f64;
        let ratio = sync_ratio(ctx);
        let (ratios, copies) = detune_copies(ctx);
        // The mean of one master period: the last, partial slave ramp (of 0..r, the
        // whole ramps average 0) lasts r/R of it and averages r - 1.
        let r = ratio.fract();
        let dc = (r / ratio * (r - 1.0)) as f32;
        let scale = 1.0 / copies as f32;
        let Some((ring, _)) = rings(&mut st.line) else {
            out.fill(0.0);
            return;
        };
        let mut w = st.n[0];
        for chunk in out.chunks_mut(SYNC_CHUNK) {
            let mut buf = [0.0f32; 2 * SYNC_CHUNK];
            let buf = &mut buf[..2 * chunk.len()];
            for (k, &rk) in ratios.iter().enumerate().take(copies) {
                let dm = phase_inc(ctx.freq_hz * rk, sr2);
                sync_copy(&mut st.phase[3 * k..3 * k + 3], dm, ratio, buf);
            }
            for (x, pair) in chunk.iter_mut().zip(buf.chunks_exact(2)) {
                let (a, b) = ((pair[0] * scale - dc) * SYNC_GAIN, (pair[1] * scale - dc) * SYNC_GAIN);
                *x = halfband(ring, &mut w, &HB2, a, b);
            }
        }
        st.n[0] = w;
        if copies == 1 {
            // Idle copies track the main one, so turning detune up starts from it.
            let (main, rest) = st.phase.split_at_mut(3);
            for copy in rest.chunks_exact_mut(3).take(2) {
                copy.copy_from_slice(main);
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Ring modulation

pub struct RingMod;

/// Output gain: sin a sin b peaks at 1.
const RING_GAIN: f32 = 0.55;

// State, per detune copy: phase[0] = carrier, phase[1] = modulator.
impl Synth for RingMod {
    fn render(&self, st: &mut OscState, ctx: &SynthCtx, out: &mut [f32]) {
        let sr = ctx.sample_rate as f64;
        let ratio = ctx.param(Param::RingRatio) as f64;
        let sine = ctx.waves.sine();
        // sin a sin b = (cos(a - b) - cos(a + b)) / 2: each tone kept only below the band limit.
        with_detune(st, ctx, out, 2, |ph, f, out, add| {
            let gd = 0.5 * RING_GAIN * band_gain((1.0 - ratio) * f, sr);
            let gs = 0.5 * RING_GAIN * band_gain((1.0 + ratio) * f, sr);
            let (ia, ib) = (wrapping_inc(f, sr), wrapping_inc(f * ratio, sr));
            let (mut a, mut b) = (ph[0], ph[1]);
            for x in out.iter_mut() {
                let v = gd * cos(sine, a.wrapping_sub(b)) - gs * cos(sine, a.wrapping_add(b));
                *x = if add { *x + v } else { v };
                a = a.wrapping_add(ia);
                b = b.wrapping_add(ib);
            }
            ph[0] = a;
            ph[1] = b;
        });
    }
}

// ---------------------------------------------------------------------------
// Wavefolder

pub struct Wavefold;

/// Output gain of the +/-1 fold.
const FOLD_GAIN: f32 = 0.5;

/// `y` reduced into one period of the fold and shifted to its peak: -2..2 (inputs
/// stay within +/-20; the offset keeps the truncation a floor, without a branch or
/// a library call).
#[inline(always)]
fn fold_reduce(y: f64) -> f64 {
    let k = ((y + 1.0) * 0.25 + 8.0) as i64 as f64 - 8.0;
    y - 4.0 * k - 1.0
}

/// The triangle fold, period 4: y for |y| <= 1, folded back beyond.
#[inline(always)]
fn fold(y: f64) -> f64 {
    1.0 - fold_reduce(y).abs()
}

/// An antiderivative of `fold` (periodic too, as the fold averages 0): y^2/2 for
/// |y| <= 1, 1 - (y - 2)^2/2 on the way back.
#[inline(always)]
fn fold_integral(y: f64) -> f64 {
    let v = fold_reduce(y);
    v + 0.5 - 0.5 * v * v.abs()
}

// State: phase[0] = oscillator phase; z[0] = the previous 4x-rate fold input; the
// 2x and 4x rings.
impl Synth for Wavefold {
    fn uses_line(&self) -> bool {
        true
    }

    fn render(&self, st: &mut OscState, ctx: &SynthCtx, out: &mut [f32]) {
        let Some((ring2, ring4)) = rings(&mut st.line) else {
            out.fill(0.0);
            return;
        };
        let sr = ctx.sample_rate as f64;
        let folds = ctx.param(Param::Folds) as f64;
        let sine = ctx.waves.sine();
        let inc = phase_inc(ctx.freq_hz, sr);
        let q = inc / 4;
        let mut p = st.phase[0];
        let mut y0 = st.z[0] as f64;
        let mut f0 = fold_integral(y0);
        let (mut w2, mut w4) = (st.n[0], st.n[1]);
        // First-order antiderivative anti-aliasing: the fold averaged over the
        // interval from the previous input to this one.
        let mut adaa = |y1: f64| {
            let dy = y1 - y0;
            let f1 = fold_integral(y1);
            let v = if dy.abs() > 1e-6 { ((f1 - f0) as f32) / dy as f32 } else { fold(0.5 * (y0 + y1)) as f32 };
            (y0, f0) = (y1, f1);
            v
        };
        for x in out.iter_mut() {
            let a = adaa(folds * read(sine, p.wrapping_add(q)) as f64);
            let b = adaa(folds * read(sine, p.wrapping_add(2 * q)) as f64);
            let c = adaa(folds * read(sine, p.wrapping_add(3 * q)) as f64);
            p = p.wrapping_add(inc);
            let d = adaa(folds * read(sine, p) as f64);
            let u = halfband(ring4, &mut w4, &HB4, a, b);
            let v = halfband(ring4, &mut w4, &HB4, c, d);
            *x = halfband(ring2, &mut w2, &HB2, u, v) * FOLD_GAIN;
        }
        st.phase[0] = p;
        st.z[0] = y0 as f32;
        (st.n[0], st.n[1]) = (w2, w4);
    }
}

// ---------------------------------------------------------------------------
// Drift

pub struct Drift;

/// The two LFOs: (rate Hz, depth per unit of drift_amount, cents).
const DRIFT_LFOS: [(f64, f64); 2] = [(0.07, 0.6), (0.23, 0.4)];
/// The wander: the reference low-passes white noise of 0.08 cents (per unit of
/// drift_amount) at 50 Hz with a one-pole at 44.1 kHz (a = 0.00712), which leaves
/// a standard deviation of 0.08 sqrt(a / (2 - a)) cents.
const WANDER_SD: f64 = 0.08 * 0.059_756;
const WANDER_HZ: f64 = 50.0;
/// The noise floor (standard deviation at 44.1 kHz, relative to a +/-1 wave).
const DRIFT_FLOOR: f32 = 0.005;
/// Output gains per shape (saw, square, triangle, pulse): about -6 dBFS peaks.
const DRIFT_GAINS: [f32; 4] = [0.6, 0.45, 0.5, 0.4];

/// The drift's pitch offset in cents at `t` (the wander added separately).
fn drift_lfo_cents(z: &[f32], amount: f64, t: f64) -> f64 {
    DRIFT_LFOS.iter().zip(z).map(|(&(hz, depth), &ph)| amount * depth * (TAU * hz * t + ph as f64).sin()).sum()
}

/// A band-limited pulse of 25% duty from two saws (DC-free).
#[inline(always)]
fn pulse25(table: &Table, p: u32) -> f32 {
    read(table, p.wrapping_sub(QUARTER).wrapping_sub(HALF)) - read(table, p.wrapping_sub(HALF))
}

/// Renders one copy of a table oscillator along `ramp`, adding or overwriting.
#[inline(always)]
fn run_ramp(out: &mut [f32], phase: &mut u32, mut ramp: Ramp, add: bool, f: impl Fn(u32) -> f32) {
    let mut p = *phase;
    for x in out.iter_mut() {
        let v = f(p);
        *x = if add { *x + v } else { v };
        p = p.wrapping_add(ramp.next());
    }
    *phase = p;
}

// State: z[0..2] = LFO phases (radians), z[2] = the wander (cents), z[3] = the
// offset at the end of the last render call, z[4] = low-pass input memory,
// z[5] = low-pass output memory; phase[0..3] = the detune copies.
impl Synth for Drift {
    fn start(&self, st: &mut OscState, ctx: &SynthCtx) {
        st.z[0] = (st.noise() as f64 * PI) as f32;
        st.z[1] = (st.noise() as f64 * PI) as f32;
        let amount = ctx.param(Param::DriftAmount) as f64;
        st.z[2] = (st.noise() as f64 * WANDER_SD * amount * UNIFORM_TO_UNIT as f64) as f32;
        st.z[3] = (drift_lfo_cents(&st.z, amount, 0.0) + st.z[2] as f64) as f32;
        // Random starting phases, as free-running oscillators have.
        let p = random_phase(st);
        st.phase[..3].fill(p);
    }

    fn render(&self, st: &mut OscState, ctx: &SynthCtx, out: &mut [f32]) {
        let n = out.len();
        if n == 0 {
            return;
        }
        let sr = ctx.sample_rate as f64;
        let amount = ctx.param(Param::DriftAmount) as f64;
        let dt = n as f64 / sr;
        let t1 = (st.age + n as u64) as f64 / sr;
        // The wander: a one-pole low-pass at 50 Hz stepped once per call, driven so
        // that its spread is the reference's whatever the call length.
        let a = 1.0 - (-TAU * WANDER_HZ * dt).exp();
        let drive = WANDER_SD * amount * ((2.0 - a) / a).sqrt();
        let x = st.noise() as f64 * UNIFORM_TO_UNIT as f64 * drive;
        let wander = st.z[2] as f64 + a * (x - st.z[2] as f64);
        st.z[2] = wander as f32;
        let c0 = st.z[3] as f64;
        let c1 = drift_lfo_cents(&st.z, amount, t1) + wander;
        st.z[3] = c1 as f32;
        let (r0, r1) = (cents_ratio(c0), cents_ratio(c1));
        let shape = (ctx.param(Param::DriftShape) as usize).min(3);
        with_detune(st, ctx, out, 1, |ph, f, out, add| {
            let ramp = Ramp::new(f * r0, f * r1, sr, n);
            let top = phase_inc(f * r0.max(r1), sr);
            match shape {
                0 => {
                    let t = ctx.waves.table(Shape::Saw, top);
                    run_ramp(out, &mut ph[0], ramp, add, |p| read(t, p));
                }
                1 => {
                    let t = ctx.waves.table(Shape::Square, top);
                    run_ramp(out, &mut ph[0], ramp, add, |p| read(t, p));
                }
                2 => {
                    let t = ctx.waves.table(Shape::Triangle, top);
                    run_ramp(out, &mut ph[0], ramp, add, |p| read(t, p));
                }
                _ => {
                    let t = ctx.waves.table(Shape::Saw, top);
                    run_ramp(out, &mut ph[0], ramp, add, |p| pulse25(t, p));
                }
            }
        });
        // First-order low-pass (bilinear) at min(16 kHz, 12 f), then the noise floor.
        let fc = (12.0 * ctx.freq_hz).min(16_000.0).clamp(10.0, BAND * sr);
        let k = (PI * fc / sr).tan();
        let b = (k / (1.0 + k)) as f32;
        let a1 = ((k - 1.0) / (k + 1.0)) as f32;
        let gain = DRIFT_GAINS[shape];
        let floor = DRIFT_FLOOR * UNIFORM_TO_UNIT * noise_scale(sr);
        let (mut x1, mut y1) = (st.z[4], st.z[5]);
        for x in out.iter_mut() {
            let y = b * (*x + x1) - a1 * y1;
            x1 = *x;
            y1 = y;
            *x = (y + st.noise() * floor) * gain;
        }
        st.z[4] = x1;
        st.z[5] = y1;
    }
}

// ---------------------------------------------------------------------------
// Granular

pub struct Granular;

/// Grains sounding at once, at most (a new grain is dropped while all are busy).
const GRAINS: usize = 8;
/// Output gain (of the saw table's level, about 0.84).
const GRAIN_GAIN: f32 = 0.6;
/// Frames rendered at a time (the window sums in a stack buffer).
const GRAIN_CHUNK: usize = 64;
/// How far (cycles, at full scatter) a grain's phase may stray from the continuous
/// oscillator's.
const GRAIN_PHASE_SCATTER: f32 = 0.25;

// State: phase[0..8] = grain source phases, phase[8..16] = grain window phases,
// phase[16..24] = grain window increments, phase[24] = the continuous oscillator at
// the note's pitch that new grains take their phase from; z[0..8] = grain pitch
// ratios, z[8] = samples until the next grain, z[9] = the next grain's timing
// jitter (s), z[10] = the mirrored pitch offset for the next grain (cents);
// n[0] = bit mask of sounding grains, n[1] = whether z[10] is pending.
const G_WIN: usize = 8;
const G_WINC: usize = 16;
const G_MASTER: usize = 24;

impl Granular {
    /// Starts a grain at the continuous oscillator's phase `master`, if one is free.
    fn spawn(st: &mut OscState, ctx: &SynthCtx, master: u32) {
        let var = ctx.param(Param::GrainPitchVar) as f64;
        let cents = if st.n[1] == 0 {
            let c = st.noise() as f64 * var;
            st.z[10] = -c as f32;
            st.n[1] = 1;
            c
        } else {
            st.n[1] = 0;
            (st.z[10] as f64).clamp(-var, var)
        };
        let scatter = ctx.param(Param::GrainScatter);
        let jitter = st.noise() * 0.5 * scatter * GRAIN_PHASE_SCATTER;
        let Some(g) = (0..GRAINS).find(|&g| st.n[0] & (1 << g) == 0) else {
            return;
        };
        let len = (ctx.param(Param::GrainSize) as f64 * ctx.sample_rate as f64).max(2.0);
        st.n[0] |= 1 << g;
        st.phase[g] = master.wrapping_add((jitter as f64 * TWO32) as i64 as u32);
        st.phase[G_WIN + g] = 0;
        st.phase[G_WINC + g] = (TWO32 / len).min(u32::MAX as f64) as u32;
        st.z[g] = cents_ratio(cents) as f32;
    }

    /// The interval to the next grain in samples: the grid spacing with the jitter
    /// moved from this grain's to the next's.
    fn interval(st: &mut OscState, ctx: &SynthCtx) -> f32 {
        let spacing = 1.0 / ctx.param(Param::GrainDensity).max(1e-3);
        let jitter = st.noise() * 0.5 * ctx.param(Param::GrainScatter) * spacing;
        let dt = (spacing + jitter - st.z[9]).max(0.0);
        st.z[9] = jitter;
        (dt * ctx.sample_rate).max(1.0)
    }
}

impl Synth for Granular {
    fn start(&self, st: &mut OscState, _ctx: &SynthCtx) {
        st.phase[G_MASTER] = random_phase(st);
        st.z[8] = 0.0;
    }

    fn render(&self, st: &mut OscState, ctx: &SynthCtx, out: &mut [f32]) {
        let sr = ctx.sample_rate as f64;
        let f = ctx.freq_hz;
        let sine = ctx.waves.sine();
        let master_inc = phase_inc(f, sr);
        // The expected sum of the windows: the level is normalised by it, and by the
        // actual sum where that is higher (clustered grains), so the output is a
        // weighted average of grains at most and never exceeds one grain's peak.
        let overlap = ctx.param(Param::GrainDensity) * ctx.param(Param::GrainSize);
        let expected = 0.5 * overlap.clamp(1.0, GRAINS as f32);
        if !st.z[8].is_finite() {
            st.z[8] = 0.0;
        }
        for chunk in out.chunks_mut(GRAIN_CHUNK) {
            chunk.fill(0.0);
            let mut wsum = [0.0f32; GRAIN_CHUNK];
            let wsum = &mut wsum[..chunk.len()];
            let mut start = 0;
            while start < chunk.len() {
                // Render up to the next grain onset.
                let until = st.z[8].ceil().max(0.0) as usize;
                let end = (start + until).min(chunk.len());
                for g in 0..GRAINS {
                    if st.n[0] & (1 << g) == 0 {
                        continue;
                    }
                    let inc = phase_inc(f * st.z[g] as f64, sr);
                    let table = ctx.waves.table(Shape::Saw, inc);
                    let winc = st.phase[G_WINC + g];
                    let (mut p, mut wp) = (st.phase[g], st.phase[G_WIN + g]);
                    let mut alive = true;
                    for (x, ws) in chunk[start..end].iter_mut().zip(&mut wsum[start..end]) {
                        // Hann window: sin^2 of half the window phase.
                        let s = read(sine, wp >> 1);
                        let w = s * s;
                        *x += read(table, p) * w;
                        *ws += w;
                        p = p.wrapping_add(inc);
                        let (next, done) = wp.overflowing_add(winc);
                        if done {
                            alive = false;
                            break;
                        }
                        wp = next;
                    }
                    st.phase[g] = p;
                    st.phase[G_WIN + g] = wp;
                    if !alive {
                        st.n[0] &= !(1 << g);
                    }
                }
                let step = (end - start) as u32;
                st.z[8] -= step as f32;
                st.phase[G_MASTER] = st.phase[G_MASTER].wrapping_add(master_inc.wrapping_mul(step));
                start = end;
                if st.z[8] <= 0.0 && start < chunk.len() {
                    Self::spawn(st, ctx, st.phase[G_MASTER]);
                    st.z[8] += Self::interval(st, ctx);
                }
            }
            for (x, &w) in chunk.iter_mut().zip(wsum.iter()) {
                *x *= GRAIN_GAIN / w.max(expected);
            }
        }
    }
}
