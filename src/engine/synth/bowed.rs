//! Bowed strings, organs and voices: sustained additive and formant synths.
//!
//! Every synth here is an additive bank of harmonics of one phase accumulator (three
//! for the accordion's reeds): per sample, `e^{iθ}` is read from the sine table and
//! the harmonics `e^{inθ}` follow by complex rotation, each weighted by a complex
//! coefficient (amplitude and phase). So vibrato, jitter and pitch bend move every
//! harmonic together, the pitch is exact, and the spectrum is band-limited: a
//! harmonic fades out between 0.40 and 0.45 of the sample rate (decided per render
//! call, so bends stay clean). The coefficients depend on the note (body and
//! formant responses evaluated at each harmonic's frequency); they are computed at
//! note-on and again only when the pitch or the vowel changes. Filters of the
//! descriptions (body resonances, low-pass, nasal band-pass, vowel formants) are
//! folded into the coefficients as their analog responses at the harmonics, so
//! they cost nothing per sample.
//!
//! - `strings_synth`, `cello_synth`: bowed-string spectra (1/n, even harmonics
//!   softer) shaped by body resonances, random phases, a delayed 5 Hz vibrato and a
//!   slow bow-pressure swell.
//! - `pipe_organ_synth`: zero-phase principal and octave ranks, a noise chiff.
//! - `harmonium_synth`, `accordion_synth`: reed spectra (odd harmonics stronger);
//!   the harmonium has a nasal band-pass, the accordion reeds beating 8 cents apart.
//! - `choir_synth`, `vocal_synth`: a harmonic source (4/n² for the choir, the
//!   Fourier series of a glottal pulse for the vocal) weighted by the complex sum of
//!   parallel formant band-passes of the vowel (`vowel`); the vocal has seeded
//!   jitter and shimmer (smoothed, zero-mean), the choir a breath at the onset.
//! - `didgeridoo_synth`: a buzz through a slowly moving formant whose response is
//!   evaluated per render call and interpolated across it (smooth).
//!
//! Levels: a fixed gain per note from the coefficients (RMS target, with a bound on
//! the sum of amplitudes so the peak stays below full scale); honours `detune`
//! (see [`detuned`]).
//!
//! State layout (`OscState`):
//! - `phase[0..9]`: fundamental phase accumulators (per detune copy and reed);
//!   `phase[10]` vibrato LFO, `phase[11]` amplitude LFO, `phase[12]` formant LFO;
//!   `phase[16..44]`: random phase offsets of the harmonics (one cycle = 2^32).
//! - `z[0]`: frequency the coefficients were computed for, `z[1]`: their vowel,
//!   `z[2]`: output gain, `z[3]`: vibrato rate, `z[4..8]`: per-synth filter state
//!   (choir breath band-passes; vocal jitter and shimmer smoothers);
//!   `z[8..64]`: 28 complex coefficients, interleaved (re, im).

use super::{MAX_PHASES, OscState, Synth, SynthCtx, dc_out};
use crate::dsp::biquad::BiquadCoefs;
use crate::params::Param;
use crate::tables::wavetable::{Table, phase_inc, read};

/// Samples processed at once (render calls are split into blocks of at most this).
const BLOCK: usize = 64;
/// Most harmonics a bank holds.
const MAXP: usize = 28;
/// `z` slot of the first coefficient.
const COEF: usize = 8;
/// `phase` slot of the first random phase offset.
const OFS: usize = 16;
const LFO_VIB: usize = 10;
const LFO_AMP: usize = 11;
const LFO_FORMANT: usize = 12;
const Z_KEY_F: usize = 0;
const Z_KEY_VOWEL: usize = 1;
const Z_GAIN: usize = 2;
const Z_VIB_RATE: usize = 3;
const Z_MISC: usize = 4;
/// RMS level of a note (about -16 dBFS; peaks land around -9..-6 dBFS).
const TARGET_RMS: f32 = 0.16;
/// Bound on the sum of the harmonic amplitudes (so on the peak) after the gain.
const PEAK_MAX: f32 = 0.85;
/// A quarter cycle of phase (cosine from the sine table).
const QUARTER: u32 = 1 << 30;

/// How much of harmonic `n` (frequency `n f`) sounds: 1 below 0.40 of the sample
/// rate, fading to 0 at 0.45.
#[inline]
fn nyquist_fade(freq: f64, sr: f64) -> f32 {
    (((0.45 - freq / sr) * 20.0) as f32).clamp(0.0, 1.0)
}

/// A Gaussian bump `exp(-x²)`.
#[inline]
fn bump(x: f64) -> f64 {
    (-x * x).exp()
}

/// Complex response of an analog second-order band-pass passing `lo..hi` Hz (centre
/// at the geometric mean, 0 dB there), at `f` Hz.
fn bandpass(f: f64, lo: f64, hi: f64) -> (f64, f64) {
    let lo = lo.max(1.0);
    let hi = hi.max(lo * 1.01);
    let (f0sq, bw) = (lo * hi, hi - lo);
    let (x, y) = (f0sq - f * f, f * bw);
    let d = x * x + y * y;
    if d <= 0.0 {
        return (1.0, 0.0);
    }
    (y * y / d, y * x / d)
}

#[inline]
fn cmul(a: (f64, f64), b: (f64, f64)) -> (f64, f64) {
    (a.0 * b.0 - a.1 * b.1, a.0 * b.1 + a.1 * b.0)
}

/// Draws `count` random phase offsets for the harmonics.
fn draw_offsets(st: &mut OscState, count: usize) {
    for k in 0..count.min(MAXP) {
        let u = (st.noise() * 0.5 + 0.5) as f64;
        st.phase[OFS + k] = (u * 4_294_967_296.0) as u64 as u32;
    }
}

/// `e^{iφ}` of harmonic slot `k`'s random offset.
fn offset_phasor(st: &OscState, sine: &Table, k: usize) -> (f64, f64) {
    let p = st.phase[OFS + k.min(MAXP - 1)];
    (read(sine, p.wrapping_add(QUARTER)) as f64, read(sine, p) as f64)
}

/// Stores coefficient `k`.
#[inline]
fn set_coef(st: &mut OscState, k: usize, c: (f64, f64)) {
    if k < MAXP {
        st.z[COEF + 2 * k] = c.0 as f32;
        st.z[COEF + 2 * k + 1] = c.1 as f32;
    }
}

/// Sets the output gain from the stored coefficients of `reeds` ((frequency,
/// harmonic count) each, harmonics above the band-limit left out): RMS target, and
/// the sum of amplitudes times `peak_factor` (largest amplitude modulation, extra
/// noise) within [`PEAK_MAX`].
fn set_gain(st: &mut OscState, reeds: &[(f64, usize)], sr: f64, peak_factor: f32) {
    let (mut power, mut sum) = (0.0f64, 0.0f64);
    let mut k0 = 0;
    for &(f, count) in reeds {
        for n in 0..count.min(MAXP.saturating_sub(k0)) {
            let fade = nyquist_fade(f * (n + 1) as f64, sr) as f64;
            let (re, im) = (st.z[COEF + 2 * (k0 + n)] as f64, st.z[COEF + 2 * (k0 + n) + 1] as f64);
            let a = re.hypot(im) * fade;
            power += a * a * 0.5;
            sum += a;
        }
        k0 += count;
    }
    st.z[Z_GAIN] = if power > 1e-18 {
        (TARGET_RMS as f64 / power.sqrt()).min(PEAK_MAX as f64 / (sum * peak_factor as f64)) as f32
    } else {
        0.0
    };
}

/// A copy of the bank's coefficients and its gain (the renderer takes the state
/// mutably).
fn bank(st: &OscState) -> ([f32; 2 * MAXP], f32) {
    let mut coefs = [0.0f32; 2 * MAXP];
    coefs.copy_from_slice(&st.z[COEF..COEF + 2 * MAXP]);
    (coefs, st.z[Z_GAIN])
}

/// Whether the coefficients must be recomputed (new pitch or vowel); records the
/// new keys.
fn stale(st: &mut OscState, ctx: &SynthCtx, vowel: f32) -> bool {
    let f = ctx.freq_hz as f32;
    if st.z[Z_KEY_F] == f && st.z[Z_KEY_VOWEL] == vowel {
        return false;
    }
    st.z[Z_KEY_F] = f;
    st.z[Z_KEY_VOWEL] = vowel;
    true
}

/// Sums harmonics `1..=coefs.len()/2` of the fundamental phases `ph` into `out`
/// (adding, or overwriting): `Σ Im(C_n e^{inθ})`, with `C_n` moving linearly from
/// `coefs` by `delta` across the block when given.
fn partials(sine: &Table, ph: &[u32], coefs: &[f32], delta: Option<&[f32]>, out: &mut [f32], add: bool) {
    let m = ph.len().min(out.len()).min(BLOCK);
    let (mut c, mut s) = ([0.0f32; BLOCK], [0.0f32; BLOCK]);
    for ((cc, ss), &p) in c[..m].iter_mut().zip(s[..m].iter_mut()).zip(ph) {
        *ss = read(sine, p);
        *cc = read(sine, p.wrapping_add(QUARTER));
    }
    let (mut re, mut im) = (c, s);
    let mut acc = [0.0f32; BLOCK];
    let (c, s, re, im, acc) = (&c[..m], &s[..m], &mut re[..m], &mut im[..m], &mut acc[..m]);
    match delta {
        None => {
            for k in coefs.chunks_exact(2) {
                let (a, b) = (k[0], k[1]);
                for i in 0..m {
                    acc[i] += a * im[i] + b * re[i];
                    let r = re[i] * c[i] - im[i] * s[i];
                    im[i] = re[i] * s[i] + im[i] * c[i];
                    re[i] = r;
                }
            }
        }
        Some(delta) => {
            let mut ramp = [0.0f32; BLOCK];
            let step = 1.0 / m.max(1) as f32;
            for (i, t) in ramp[..m].iter_mut().enumerate() {
                *t = i as f32 * step;
            }
            let ramp = &ramp[..m];
            let mut acc2 = [0.0f32; BLOCK];
            let acc2 = &mut acc2[..m];
            for (k, d) in coefs.chunks_exact(2).zip(delta.chunks_exact(2)) {
                let (a, b, da, db) = (k[0], k[1], d[0], d[1]);
                for i in 0..m {
                    acc[i] += a * im[i] + b * re[i];
                    acc2[i] += da * im[i] + db * re[i];
                    let r = re[i] * c[i] - im[i] * s[i];
                    im[i] = re[i] * s[i] + im[i] * c[i];
                    re[i] = r;
                }
            }
            for i in 0..m {
                acc[i] += ramp[i] * acc2[i];
            }
        }
    }
    if add {
        for (o, a) in out.iter_mut().zip(acc.iter()) {
            *o += a;
        }
    } else {
        for (o, a) in out.iter_mut().zip(acc.iter()) {
            *o = *a;
        }
    }
}

/// The `detune` layers: the main copy and, with detune, two more `detune` cents
/// above and below (symmetric in Hz), mixed 1/2, 1/4, 1/4, all starting in phase.
/// `each` renders one copy from its `phases` at a frequency, adding (`add`) or
/// overwriting, with its fundamental scaled by the last argument. The fundamental
/// stays a single partial at the note (the main copy carries all of it; the extra
/// copies only detune the overtones, where the ensemble beating is heard): a cluster
/// of beating fundamentals, once coloured by a reverb, is heard a few cents off the
/// note. While detune is 0 the extra copies track the main one, so turning it up
/// starts from the same sound.
fn detuned(
    st: &mut OscState,
    ctx: &SynthCtx,
    out: &mut [f32],
    per_copy: usize,
    mut each: impl FnMut(&mut [u32], f64, &mut [f32], bool, f32),
) {
    let cents = ctx.param(Param::Detune) as f64;
    let per_copy = per_copy.min(MAX_PHASES / 3);
    let (main, rest) = st.phase.split_at_mut(per_copy);
    let (up, rest) = rest.split_at_mut(per_copy);
    let down = &mut rest[..per_copy];
    if cents <= 0.0 {
        each(main, ctx.freq_hz, out, false, 1.0);
        up.copy_from_slice(main);
        down.copy_from_slice(main);
        return;
    }
    each(main, ctx.freq_hz, out, false, 2.0);
    let eps = (cents / 1200.0).exp2() - 1.0;
    let mut side = [0.0f32; BLOCK];
    let side = &mut side[..out.len().min(BLOCK)];
    each(up, ctx.freq_hz * (1.0 + eps), side, false, 0.0);
    each(down, ctx.freq_hz * (1.0 - eps), side, true, 0.0);
    for (o, s) in out.iter_mut().zip(side.iter()) {
        *o = 0.5 * *o + 0.25 * s;
    }
}

/// Renders one block (`out.len() <= BLOCK`) of the bank: `reeds` are (frequency
/// ratio, harmonic count) pairs using consecutive coefficients of `coefs` (and
/// `delta`); `dev` the relative frequency deviation per sample (vibrato, jitter);
/// `gain` scales everything. The `detune` copies run through [`detuned`].
#[allow(clippy::too_many_arguments)]
fn render_bank(
    st: &mut OscState,
    ctx: &SynthCtx,
    out: &mut [f32],
    dev: Option<&[f32]>,
    reeds: &[(f64, usize)],
    coefs: &[f32],
    delta: Option<&[f32]>,
    gain: f32,
) {
    let sine = ctx.waves.sine();
    let sr = ctx.sample_rate as f64;
    let m = out.len().min(BLOCK);
    let out = &mut out[..m];
    detuned(st, ctx, out, reeds.len(), |ph, f, out, add, first| {
        let mut k0 = 0;
        for (r, &(ratio, count)) in reeds.iter().enumerate() {
            let fr = f * ratio;
            let count = count.min(MAXP.saturating_sub(k0));
            let (mut c, mut d) = ([0.0f32; 2 * MAXP], [0.0f32; 2 * MAXP]);
            let mut used = 0;
            for n in 0..count {
                let fade = nyquist_fade(fr * (n + 1) as f64, sr);
                if fade <= 0.0 {
                    break;
                }
                let g = fade * gain * if n == 0 { first } else { 1.0 };
                let j = 2 * (k0 + n);
                if let (Some(src), Some(dst)) = (coefs.get(j..j + 2), c.get_mut(2 * n..2 * n + 2)) {
                    dst[0] = src[0] * g;
                    dst[1] = src[1] * g;
                }
                if let (Some(src), Some(dst)) = (delta.and_then(|dl| dl.get(j..j + 2)), d.get_mut(2 * n..2 * n + 2)) {
                    dst[0] = src[0] * g;
                    dst[1] = src[1] * g;
                }
                used = n + 1;
            }
            k0 += count;
            let Some(p0) = ph.get_mut(r) else { continue };
            let inc = phase_inc(fr, sr);
            let incf = inc as f32;
            let mut phs = [0u32; BLOCK];
            let mut p = *p0;
            match dev {
                Some(dev) => {
                    for (q, &v) in phs[..m].iter_mut().zip(dev) {
                        *q = p;
                        p = p.wrapping_add(inc.wrapping_add_signed((incf * v) as i32));
                    }
                }
                None => {
                    for q in phs[..m].iter_mut() {
                        *q = p;
                        p = p.wrapping_add(inc);
                    }
                }
            }
            *p0 = p;
            let delta = delta.map(|_| &d[..2 * used]);
            partials(sine, &phs[..m], &c[..2 * used], delta, out, add || r > 0);
        }
    });
}

/// Fills `dev[..m]` with a vibrato of `depth` (relative frequency deviation), at
/// `rate` Hz, faded in linearly over `fade_s` seconds from note-on (`age` = the
/// block's first sample).
#[allow(clippy::too_many_arguments)]
fn vibrato(st: &mut OscState, sine: &Table, sr: f32, age: u64, rate: f32, depth: f32, fade_s: f32, dev: &mut [f32]) {
    let inc = phase_inc(rate as f64, sr as f64);
    let mut p = st.phase[LFO_VIB];
    let per = if fade_s > 0.0 { 1.0 / (fade_s * sr) } else { 1.0 };
    let t0 = age as f32 * per;
    for (i, v) in dev.iter_mut().enumerate() {
        let fade = (t0 + i as f32 * per).min(1.0);
        *v = depth * fade * read(sine, p);
        p = p.wrapping_add(inc);
    }
    st.phase[LFO_VIB] = p;
}

/// Multiplies `out` by `base + depth sin(2π rate t)` (phase from note-on).
fn amp_lfo(st: &mut OscState, sine: &Table, sr: f32, rate: f32, base: f32, depth: f32, out: &mut [f32]) {
    let inc = phase_inc(rate as f64, sr as f64);
    let mut p = st.phase[LFO_AMP];
    for x in out.iter_mut() {
        *x *= base + depth * read(sine, p);
        p = p.wrapping_add(inc);
    }
    st.phase[LFO_AMP] = p;
}

/// Multiplies `out` by a linear fade-in over `seconds` from note-on.
fn fade_in(age: u64, sr: f32, seconds: f32, out: &mut [f32]) {
    let len = seconds * sr;
    if age as f32 >= len || len <= 0.0 {
        return;
    }
    for (i, x) in out.iter_mut().enumerate() {
        *x *= ((age as f32 + i as f32) / len).min(1.0);
    }
}

// ---------------------------------------------------------------- bowed strings

/// A bowed string: harmonic amplitudes `b(nf)/n` (even harmonics x0.85) with random
/// phases, a vibrato faded in after the attack, and a slow swell.
pub struct Bowed {
    /// Harmonics (at most [`MAXP`]).
    harmonics: usize,
    /// Vibrato rate (Hz), randomised by +/-0.3 Hz per note; fade-in time (s).
    vib_rate: f32,
    vib_fade: f32,
    /// Body resonances (centre Hz, width Hz, gain); a centre of 0 means
    /// `clamp(1.5 f, 200, 400)` (the violin's air resonance follows the register).
    body: [(f64, f64, f64); 3],
    /// A second-order low-pass at `min(10 f, 10 kHz)` (the bow's brightness).
    lowpass: bool,
    /// Amplitude swell: rate (Hz) and depth.
    swell_rate: f32,
    swell_depth: f32,
}

pub const STRINGS: Bowed = Bowed {
    harmonics: 28,
    vib_rate: 5.2,
    vib_fade: 0.2,
    body: [(0.0, 100.0, 0.6), (1000.0, 300.0, 0.4), (2500.0, 500.0, 0.3)],
    lowpass: true,
    swell_rate: 3.7,
    swell_depth: 0.03,
};

pub const CELLO: Bowed = Bowed {
    harmonics: 25,
    vib_rate: 5.0,
    vib_fade: 0.25,
    body: [(250.0, 80.0, 0.8), (500.0, 120.0, 0.5), (1200.0, 200.0, 0.2)],
    lowpass: false,
    swell_rate: 3.5,
    swell_depth: 0.04,
};

/// Vibrato depth of the bowed strings: 0.1% of the frequency (1.7 cents).
const BOWED_VIB_DEPTH: f32 = 0.001;

impl Bowed {
    fn refresh(&self, st: &mut OscState, ctx: &SynthCtx) {
        let sine = ctx.waves.sine();
        let f = ctx.freq_hz.max(1.0);
        let air = (1.5 * f).clamp(200.0, 400.0);
        let cutoff = (10.0 * f).min(10_000.0);
        for k in 0..self.harmonics.min(MAXP) {
            let n = (k + 1) as f64;
            let freq = n * f;
            let mut b = 1.0;
            for &(c, w, g) in &self.body {
                let c = if c > 0.0 { c } else { air };
                b += g * bump((freq - c) / w);
            }
            let mut a = b / n * if k % 2 == 1 { 0.85 } else { 1.0 };
            if self.lowpass {
                a /= (1.0 + (freq / cutoff).powi(4)).sqrt();
            }
            let (c, s) = offset_phasor(st, sine, k);
            set_coef(st, k, (a * c, a * s));
        }
        set_gain(st, &[(f, self.harmonics)], ctx.sample_rate as f64, 1.0 + self.swell_depth);
    }
}

impl Synth for Bowed {
    fn start(&self, st: &mut OscState, ctx: &SynthCtx) {
        st.z[Z_VIB_RATE] = self.vib_rate + 0.3 * st.noise();
        draw_offsets(st, self.harmonics);
        stale(st, ctx, 0.0);
        self.refresh(st, ctx);
    }

    fn render(&self, st: &mut OscState, ctx: &SynthCtx, out: &mut [f32]) {
        if stale(st, ctx, 0.0) {
            self.refresh(st, ctx);
        }
        let sine = ctx.waves.sine();
        let sr = ctx.sample_rate;
        let (coefs, gain) = bank(st);
        let rate = st.z[Z_VIB_RATE];
        let mut age = st.age;
        for chunk in out.chunks_mut(BLOCK) {
            let mut dev = [0.0f32; BLOCK];
            let dev = &mut dev[..chunk.len()];
            vibrato(st, sine, sr, age, rate, BOWED_VIB_DEPTH, self.vib_fade, dev);
            render_bank(st, ctx, chunk, Some(dev), &[(1.0, self.harmonics)], &coefs, None, gain);
            amp_lfo(st, sine, sr, self.swell_rate, 1.0, self.swell_depth, chunk);
            age += chunk.len() as u64;
        }
    }
}

// ------------------------------------------------------------------- pipe organ

/// Pipe organ: a principal rank (harmonics 1..11) and an octave rank (harmonics
/// 2, 4, .. 14) with a fourth and a fifth-harmonic mixture, all in phase, a short
/// noise chiff and a 10 ms speech.
pub struct PipeOrgan;

const ORGAN_HARMONICS: usize = 14;

/// The summed ranks: amplitude of harmonic `h` (1-based).
fn organ_amp(h: usize) -> f64 {
    let principal = match h {
        1 => 1.0,
        2 => 0.6,
        3 => 0.4,
        4..=6 => 0.2 / h as f64,
        7..=11 => 0.08 / h as f64,
        _ => 0.0,
    };
    let octave = match h {
        2 => 0.4,
        4..=14 if h.is_multiple_of(2) => 0.15 / (h / 2) as f64,
        _ => 0.0,
    };
    let mixture = match h {
        4 => 0.2,
        5 => 0.08,
        _ => 0.0,
    };
    principal + octave + mixture
}

/// Chiff: noise level (before the note gain) and decay (e-folds over 40 ms).
const CHIFF_LEVEL: f32 = 0.08;
const CHIFF_SECONDS: f32 = 0.04;

impl PipeOrgan {
    fn refresh(&self, st: &mut OscState, ctx: &SynthCtx) {
        for k in 0..ORGAN_HARMONICS {
            set_coef(st, k, (organ_amp(k + 1), 0.0));
        }
        set_gain(st, &[(ctx.freq_hz, ORGAN_HARMONICS)], ctx.sample_rate as f64, 1.05);
    }
}

impl Synth for PipeOrgan {
    fn start(&self, st: &mut OscState, ctx: &SynthCtx) {
        stale(st, ctx, 0.0);
        self.refresh(st, ctx);
    }

    fn render(&self, st: &mut OscState, ctx: &SynthCtx, out: &mut [f32]) {
        if stale(st, ctx, 0.0) {
            self.refresh(st, ctx);
        }
        let sr = ctx.sample_rate;
        let (coefs, gain) = bank(st);
        let mut age = st.age;
        let chiff_len = (CHIFF_SECONDS * sr) as u64;
        for chunk in out.chunks_mut(BLOCK) {
            render_bank(st, ctx, chunk, None, &[(1.0, ORGAN_HARMONICS)], &coefs, None, gain);
            if age < chiff_len {
                // exp(-10 t / 40 ms), stepped per sample.
                let k = (-10.0 / (CHIFF_SECONDS * sr)).exp();
                let mut env = CHIFF_LEVEL * gain * (-10.0 * age as f32 / (CHIFF_SECONDS * sr)).exp();
                for x in chunk.iter_mut() {
                    *x += env * st.noise();
                    env *= k;
                }
            }
            fade_in(age, sr, 0.01, chunk);
            age += chunk.len() as u64;
        }
    }
}

// ------------------------------------------------------------- harmonium, reeds

/// Harmonium: 11 harmonics (1/n, even harmonics halved), random phases, a nasal
/// band-pass boost around `min(3 f, 1200)` Hz and a slow bellows swell.
pub struct Harmonium;

const HARMONIUM_HARMONICS: usize = 11;

impl Harmonium {
    fn refresh(&self, st: &mut OscState, ctx: &SynthCtx) {
        let sine = ctx.waves.sine();
        let f = ctx.freq_hz.max(1.0);
        let c = (3.0 * f).min(1200.0);
        for k in 0..HARMONIUM_HARMONICS {
            let n = (k + 1) as f64;
            let a = 1.0 / n * if k % 2 == 1 { 0.5 } else { 1.0 };
            let h = bandpass(n * f, (c - 300.0).max(20.0), c + 300.0);
            let w = (1.0 + 0.2 * h.0, 0.2 * h.1);
            let (pc, ps) = offset_phasor(st, sine, k);
            set_coef(st, k, cmul((a * pc, a * ps), w));
        }
        set_gain(st, &[(f, HARMONIUM_HARMONICS)], ctx.sample_rate as f64, 1.0);
    }
}

impl Synth for Harmonium {
    fn start(&self, st: &mut OscState, ctx: &SynthCtx) {
        draw_offsets(st, HARMONIUM_HARMONICS);
        stale(st, ctx, 0.0);
        self.refresh(st, ctx);
    }

    fn render(&self, st: &mut OscState, ctx: &SynthCtx, out: &mut [f32]) {
        if stale(st, ctx, 0.0) {
            self.refresh(st, ctx);
        }
        let sine = ctx.waves.sine();
        let sr = ctx.sample_rate;
        let (coefs, gain) = bank(st);
        for chunk in out.chunks_mut(BLOCK) {
            render_bank(st, ctx, chunk, None, &[(1.0, HARMONIUM_HARMONICS)], &coefs, None, gain);
            amp_lfo(st, sine, sr, 0.5, 0.9, 0.1, chunk);
        }
    }
}

/// Accordion (musette): reeds beating 8 cents apart, nine harmonics each (odd
/// harmonics stronger), random phases, a bellows swell. The description's pair of
/// equal reeds at the note and 8 cents above is heard 4 cents sharp and shows two
/// peaks; instead a main reed at the note and two half-level reeds 8 cents above and
/// below, all in phase: the same full-depth beating at the same rate
/// (`1 + cos(Δt)` against `2|cos(Δt/2)|`), centred exactly on the note.
pub struct Accordion;

const ACCORDION_HARMONICS: usize = 9;
/// Level of each side reed relative to the main one.
const SIDE_REED: f64 = 0.5;
/// Distance of the side reeds, in cents.
const REED_CENTS: f64 = 8.0;

impl Accordion {
    fn reeds() -> [(f64, usize); 3] {
        let eps = (REED_CENTS / 1200.0).exp2() - 1.0;
        [(1.0, ACCORDION_HARMONICS), (1.0 + eps, ACCORDION_HARMONICS), (1.0 - eps, ACCORDION_HARMONICS)]
    }

    fn refresh(&self, st: &mut OscState, ctx: &SynthCtx) {
        let sine = ctx.waves.sine();
        let f = ctx.freq_hz.max(1.0);
        for k in 0..ACCORDION_HARMONICS {
            let n = (k + 1) as f64;
            // Two reeds' worth of level, as the description's pair summed at x0.5.
            let a = 0.5 / n * if k.is_multiple_of(2) { 1.2 } else { 0.6 };
            let (c, s) = offset_phasor(st, sine, k);
            let c = (a * c, a * s);
            set_coef(st, k, c);
            set_coef(st, k + ACCORDION_HARMONICS, (c.0 * SIDE_REED, c.1 * SIDE_REED));
            set_coef(st, k + 2 * ACCORDION_HARMONICS, (c.0 * SIDE_REED, c.1 * SIDE_REED));
        }
        let reeds = Self::reeds().map(|(r, n)| (f * r, n));
        set_gain(st, &reeds, ctx.sample_rate as f64, 1.0);
    }
}

impl Synth for Accordion {
    fn start(&self, st: &mut OscState, ctx: &SynthCtx) {
        draw_offsets(st, ACCORDION_HARMONICS);
        stale(st, ctx, 0.0);
        self.refresh(st, ctx);
    }

    fn render(&self, st: &mut OscState, ctx: &SynthCtx, out: &mut [f32]) {
        if stale(st, ctx, 0.0) {
            self.refresh(st, ctx);
        }
        let sine = ctx.waves.sine();
        let sr = ctx.sample_rate;
        let (coefs, gain) = bank(st);
        let reeds = Self::reeds();
        for chunk in out.chunks_mut(BLOCK) {
            render_bank(st, ctx, chunk, None, &reeds, &coefs, None, gain);
            amp_lfo(st, sine, sr, 0.8, 0.85, 0.15, chunk);
        }
    }
}

// ------------------------------------------------------------------- didgeridoo

/// Didgeridoo: a 14-harmonic buzz (1/n, even harmonics at 0.4), random phases,
/// half of it through a band-pass 600 Hz wide whose centre sweeps 400..1200 Hz at
/// 0.3 Hz, and a little breath noise.
pub struct Didgeridoo;

const DIDGE_HARMONICS: usize = 14;
/// Breath noise level (before the note gain): a Gaussian of deviation 0.04 as a
/// uniform source of the same deviation.
const DIDGE_NOISE: f32 = 0.04 * 1.732;

/// The buzz's weight at `freq` with the formant at `fc`: half dry, half band-passed.
fn didge_weight(freq: f64, fc: f64) -> (f64, f64) {
    let h = bandpass(freq, fc - 300.0, fc + 300.0);
    (0.5 + 0.5 * h.0, 0.5 * h.1)
}

impl Didgeridoo {
    fn refresh(&self, st: &mut OscState, ctx: &SynthCtx) {
        let sine = ctx.waves.sine();
        let f = ctx.freq_hz.max(1.0);
        let base = |st: &OscState, k: usize| {
            let a = 1.0 / (k + 1) as f64 * if k % 2 == 1 { 0.4 } else { 1.0 };
            let (c, s) = offset_phasor(st, sine, k);
            (a * c, a * s)
        };
        // The gain from the spectrum with the formant at its middle position; then
        // the stored coefficients are the bare buzz (the formant is applied per block).
        for k in 0..DIDGE_HARMONICS {
            let c = cmul(base(st, k), didge_weight((k + 1) as f64 * f, 800.0));
            set_coef(st, k, c);
        }
        set_gain(st, &[(f, DIDGE_HARMONICS)], ctx.sample_rate as f64, 1.2);
        for k in 0..DIDGE_HARMONICS {
            let c = base(st, k);
            set_coef(st, k, c);
        }
    }

    /// Coefficients with the formant at `fc`.
    fn weighted(base: &[f32], f: f64, fc: f64, out: &mut [f32; 2 * MAXP]) {
        for (k, (b, o)) in base.chunks_exact(2).zip(out.chunks_exact_mut(2)).take(DIDGE_HARMONICS).enumerate() {
            let c = cmul((b[0] as f64, b[1] as f64), didge_weight((k + 1) as f64 * f, fc));
            o[0] = c.0 as f32;
            o[1] = c.1 as f32;
        }
    }
}

impl Synth for Didgeridoo {
    fn start(&self, st: &mut OscState, ctx: &SynthCtx) {
        draw_offsets(st, DIDGE_HARMONICS);
        stale(st, ctx, 0.0);
        self.refresh(st, ctx);
    }

    fn render(&self, st: &mut OscState, ctx: &SynthCtx, out: &mut [f32]) {
        if stale(st, ctx, 0.0) {
            self.refresh(st, ctx);
        }
        let sine = ctx.waves.sine();
        let sr = ctx.sample_rate;
        let f = ctx.freq_hz.max(1.0);
        let mut base = [0.0f32; 2 * MAXP];
        base.copy_from_slice(&st.z[COEF..COEF + 2 * MAXP]);
        let gain = st.z[Z_GAIN];
        let lfo_inc = phase_inc(0.3, sr as f64);
        for chunk in out.chunks_mut(BLOCK) {
            let m = chunk.len();
            let p0 = st.phase[LFO_FORMANT];
            let p1 = p0.wrapping_add(lfo_inc.wrapping_mul(m as u32));
            st.phase[LFO_FORMANT] = p1;
            let fc0 = 800.0 + 400.0 * read(sine, p0) as f64;
            let fc1 = 800.0 + 400.0 * read(sine, p1) as f64;
            let (mut c0, mut c1) = ([0.0f32; 2 * MAXP], [0.0f32; 2 * MAXP]);
            Self::weighted(&base, f, fc0, &mut c0);
            Self::weighted(&base, f, fc1, &mut c1);
            for (d, a) in c1.iter_mut().zip(&c0) {
                *d -= a;
            }
            render_bank(st, ctx, chunk, None, &[(1.0, DIDGE_HARMONICS)], &c0, Some(&c1), gain);
            let noise = DIDGE_NOISE * gain;
            for x in chunk.iter_mut() {
                *x += noise * st.noise();
            }
        }
        dc_out(st, sr, out);
    }
}

// ----------------------------------------------------------------------- voices

/// Formant (centre Hz, half-width Hz, gain) of a vowel.
type Formant = (f64, f64, f64);

/// Choir formants per vowel of `crate::params::VOWELS`; gain 1 below 1 kHz, else 0.7.
const CHOIR_FORMANTS: [[Formant; 4]; 5] = [
    [(730.0, 90.0, 1.0), (1090.0, 110.0, 0.7), (2440.0, 170.0, 0.7), (3400.0, 250.0, 0.7)],
    [(270.0, 60.0, 1.0), (2290.0, 100.0, 0.7), (3010.0, 150.0, 0.7), (3500.0, 200.0, 0.7)],
    [(570.0, 70.0, 1.0), (840.0, 80.0, 1.0), (2410.0, 170.0, 0.7), (3400.0, 250.0, 0.7)],
    [(300.0, 60.0, 1.0), (870.0, 80.0, 1.0), (2240.0, 170.0, 0.7), (3400.0, 250.0, 0.7)],
    [(530.0, 70.0, 1.0), (1840.0, 100.0, 0.7), (2480.0, 170.0, 0.7), (3500.0, 250.0, 0.7)],
];

/// Solo voice formants per vowel.
const VOCAL_FORMANTS: [[Formant; 5]; 5] = [
    [(800.0, 130.0, 1.0), (1200.0, 100.0, 0.8), (2500.0, 140.0, 0.5), (3300.0, 250.0, 0.25), (3750.0, 300.0, 0.15)],
    [(290.0, 60.0, 1.0), (1870.0, 100.0, 0.5), (2800.0, 140.0, 0.4), (3250.0, 250.0, 0.25), (3540.0, 300.0, 0.1)],
    [(400.0, 80.0, 1.0), (800.0, 100.0, 0.7), (2600.0, 140.0, 0.25), (2800.0, 250.0, 0.2), (3000.0, 300.0, 0.1)],
    [(350.0, 70.0, 1.0), (600.0, 80.0, 0.4), (2700.0, 140.0, 0.2), (2900.0, 250.0, 0.15), (3300.0, 300.0, 0.08)],
    [(400.0, 80.0, 1.0), (1700.0, 100.0, 0.6), (2600.0, 140.0, 0.45), (3200.0, 250.0, 0.3), (3580.0, 300.0, 0.15)],
];

/// Sum of parallel formant band-passes at `freq`.
fn formant_response(formants: &[Formant], freq: f64) -> (f64, f64) {
    let (mut re, mut im) = (0.0, 0.0);
    for &(c, bw, g) in formants {
        let h = bandpass(freq, (c - bw).max(20.0), c + bw);
        re += g * h.0;
        im += g * h.1;
    }
    (re, im)
}

fn vowel_index(ctx: &SynthCtx) -> usize {
    (ctx.param(Param::Vowel).max(0.0) as usize).min(CHOIR_FORMANTS.len() - 1)
}

/// Choir: a soft harmonic source (4/n², in phase) through the vowel's four
/// formants, a breath of band-passed noise at the onset and a 60 ms swell.
pub struct Choir;

const CHOIR_HARMONICS: usize = 25;
/// Onset breath: noise deviation (before the note gain), decay (5 e-folds in 80 ms).
const BREATH_LEVEL: f32 = 0.04 * 1.732;
const BREATH_SECONDS: f32 = 0.08;

impl Choir {
    fn refresh(&self, st: &mut OscState, ctx: &SynthCtx, vowel: usize) {
        let f = ctx.freq_hz.max(1.0);
        let formants = &CHOIR_FORMANTS[vowel.min(CHOIR_FORMANTS.len() - 1)];
        for k in 0..CHOIR_HARMONICS {
            let n = (k + 1) as f64;
            let w = formant_response(formants, n * f);
            set_coef(st, k, (4.0 / (n * n) * w.0, 4.0 / (n * n) * w.1));
        }
        set_gain(st, &[(f, CHOIR_HARMONICS)], ctx.sample_rate as f64, 1.05);
    }
}

impl Synth for Choir {
    fn start(&self, st: &mut OscState, ctx: &SynthCtx) {
        let v = vowel_index(ctx);
        stale(st, ctx, v as f32);
        self.refresh(st, ctx, v);
    }

    fn render(&self, st: &mut OscState, ctx: &SynthCtx, out: &mut [f32]) {
        let v = vowel_index(ctx);
        if stale(st, ctx, v as f32) {
            self.refresh(st, ctx, v);
        }
        let sr = ctx.sample_rate;
        let (coefs, gain) = bank(st);
        let mut age = st.age;
        // The breath runs until its envelope is below -100 dB (about 0.18 s).
        let breath_len = (BREATH_SECONDS * 2.3 * sr) as u64;
        for chunk in out.chunks_mut(BLOCK) {
            render_bank(st, ctx, chunk, None, &[(1.0, CHOIR_HARMONICS)], &coefs, None, gain);
            if age < breath_len {
                let [(f1, b1, _), (f2, b2, _), ..] = CHOIR_FORMANTS[v];
                let srd = sr as f64;
                let bp1 = BiquadCoefs::bandpass_range((f1 - 2.0 * b1).max(20.0), f1 + 2.0 * b1, srd);
                let bp2 = BiquadCoefs::bandpass_range((f2 - 2.0 * b2).max(20.0), f2 + 2.0 * b2, srd);
                let k = (-5.0 / (BREATH_SECONDS * sr)).exp();
                let mut env = BREATH_LEVEL * gain * (-5.0 * age as f32 / (BREATH_SECONDS * sr)).exp();
                let mut s1 = [st.z[Z_MISC], st.z[Z_MISC + 1]];
                let mut s2 = [st.z[Z_MISC + 2], st.z[Z_MISC + 3]];
                for x in chunk.iter_mut() {
                    let n = st.noise() * env;
                    let y1 = bp1.step(&mut s1, n);
                    let y2 = bp2.step(&mut s2, y1);
                    *x += y2;
                    env *= k;
                }
                st.z[Z_MISC..Z_MISC + 2].copy_from_slice(&s1);
                st.z[Z_MISC + 2..Z_MISC + 4].copy_from_slice(&s2);
            }
            fade_in(age, sr, 0.06, chunk);
            age += chunk.len() as u64;
        }
    }
}

/// Solo voice: the harmonics of a glottal pulse (a half-sine opening over 60% of
/// the period, a shallower negative lobe closing it) through the vowel's five
/// formants, a 5.5 Hz vibrato, and seeded jitter (frequency) and shimmer
/// (amplitude): smoothed zero-mean noise, so the average pitch is the note.
pub struct Vocal;

/// Fourier series of one glottal cycle `g(s)`, `s` in 0..1: `g = sin(π s/0.6)` for
/// `s < 0.6`, else `-0.8 sin(π (s-0.6)/0.4)`, as (sine, cosine) amplitudes of
/// harmonics 1.. (the DC term is left out: the formants block it).
const GLOTTAL: [[f64; 2]; 16] = [
    [0.842885, -0.273870],
    [0.047879, 0.065899],
    [-0.010329, 0.014217],
    [0.002772, 0.000901],
    [0.0, 0.005335],
    [-0.001017, 0.000330],
    [0.001159, 0.001595],
    [-0.000863, 0.001188],
    [0.000414, 0.000134],
    [0.0, 0.001125],
    [-0.000271, 0.000088],
    [0.000365, 0.000502],
    [-0.000309, 0.000425],
    [0.000164, 0.000053],
    [0.0, 0.000484],
    [-0.000125, 0.000040],
];
const VOCAL_HARMONICS: usize = GLOTTAL.len();
const VOCAL_VIB_RATE: f32 = 5.5;
const VOCAL_VIB_DEPTH: f32 = 0.001;
/// Jitter and shimmer: standard deviations (relative) and smoothing bandwidth (Hz).
const JITTER: f32 = 0.002;
const SHIMMER: f32 = 0.02;
const WOBBLE_HZ: f32 = 30.0;

impl Vocal {
    fn refresh(&self, st: &mut OscState, ctx: &SynthCtx, vowel: usize) {
        let f = ctx.freq_hz.max(1.0);
        let formants = &VOCAL_FORMANTS[vowel.min(VOCAL_FORMANTS.len() - 1)];
        for (k, g) in GLOTTAL.iter().enumerate() {
            let w = formant_response(formants, (k + 1) as f64 * f);
            set_coef(st, k, cmul((g[0], g[1]), w));
        }
        set_gain(st, &[(f, VOCAL_HARMONICS)], ctx.sample_rate as f64, 1.0 + 3.0 * SHIMMER);
    }
}

impl Synth for Vocal {
    fn start(&self, st: &mut OscState, ctx: &SynthCtx) {
        let v = vowel_index(ctx);
        stale(st, ctx, v as f32);
        self.refresh(st, ctx, v);
    }

    fn render(&self, st: &mut OscState, ctx: &SynthCtx, out: &mut [f32]) {
        let v = vowel_index(ctx);
        if stale(st, ctx, v as f32) {
            self.refresh(st, ctx, v);
        }
        let sine = ctx.waves.sine();
        let sr = ctx.sample_rate;
        let (coefs, gain) = bank(st);
        // One-pole smoothing of uniform noise (deviation 1/sqrt(3)) and the scale
        // that gives the smoothed noise a deviation of 1.
        let a = 1.0 - (-std::f32::consts::TAU * WOBBLE_HZ / sr).exp();
        let unit = 1.0 / (0.577_35 * (a / (2.0 - a)).sqrt());
        let mut age = st.age;
        for chunk in out.chunks_mut(BLOCK) {
            let m = chunk.len();
            let mut dev = [0.0f32; BLOCK];
            let dev = &mut dev[..m];
            vibrato(st, sine, sr, age, VOCAL_VIB_RATE, VOCAL_VIB_DEPTH, 0.0, dev);
            let mut shim = [0.0f32; BLOCK];
            let (mut j, mut s) = (st.z[Z_MISC], st.z[Z_MISC + 1]);
            for (d, sh) in dev.iter_mut().zip(shim[..m].iter_mut()) {
                j += a * (st.noise() - j);
                s += a * (st.noise() - s);
                *d += JITTER * unit * j;
                *sh = 1.0 + SHIMMER * unit * s;
            }
            st.z[Z_MISC] = j;
            st.z[Z_MISC + 1] = s;
            render_bank(st, ctx, chunk, Some(dev), &[(1.0, VOCAL_HARMONICS)], &coefs, None, gain);
            for (x, sh) in chunk.iter_mut().zip(shim.iter()) {
                *x *= sh;
            }
            fade_in(age, sr, 0.01, chunk);
            age += m as u64;
        }
    }
}
