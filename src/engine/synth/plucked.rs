//! Plucked strings: Karplus-Strong families (guitars, basses, banjo, sitar, ...).
//!
//! Every instrument is one or two Karplus-Strong strings: a smoothed noise burst
//! circulating in a delay loop with a loss filter and a per-period gain, followed by
//! its body (band-pass resonances, in sequence or in parallel), an optional low-pass
//! and instrument extras (harpsichord quill chiff, electric pickup comb and
//! brightness, sitar buzz bridge, chikari and sympathetic strings).
//!
//! Techniques:
//! - Sample-rate independence. The descriptions are written for 44.1 kHz: two-tap
//!   smoothing passes over the burst and a two-tap loop filter, whose losses in Hz
//!   would shrink at higher rates. Both are redesigned per rate as a cascade of
//!   two-point averages plus one two-tap `(1 - a, a)` section with the same
//!   curvature of the magnitude response (same loss per period at every audio
//!   frequency, to second order; exact at 44.1 kHz). The burst is white noise drawn
//!   at 44.1 kHz (linearly interpolated at higher rates), so that its level in the
//!   audio band does not depend on the rate. Loop gains are per period, so decay
//!   times in seconds are the same at every rate.
//! - Exact pitch: the loop's integer delay plus the exact phase delay of the loop
//!   filter at the fundamental, with the rest supplied by a first-order all-pass
//!   designed for that phase delay (as in `pluck.rs`), recomputed every render call
//!   (pitch bends move the read tap behind a fixed write pointer).
//! - Bounded decay: the reference's loop gains let low notes ring for minutes; after
//!   1 s an extra per-period loss fades in so that the fundamental is 80 dB down
//!   by 9.5 s at any pitch.
//! - Fixed output gains instead of per-note normalisation.
//! - The basses are plucked by a shape rather than a noise burst (`PluckShape`: the
//!   string's triangle at the plucking point, heard through a pickup, softened by
//!   the finger), and their loops are designed per note (`Loss`: a one-pole
//!   low-pass and a gain) so that partials decay at rates that grow with frequency,
//!   as a sampled bass's do (tests/realism.rs).
//!
//! Two-string models (mandolin, oud) use the two halves of the voice's delay line.
//! The oud's two unison strings have their own bursts and damping. The mandolin's
//! course is plucked by one stroke (the same burst) and its strings are detuned
//! apart so that the fundamental beats slowly (at most 0.45 Hz, 3 cents): the
//! reference's random +/-1-sample detune put them up to 70 cents apart at the top,
//! and any beat minimum within the first second pulls the heard pitch off the note.
//! Ignores `detune`.

use super::{OscState, Synth, SynthCtx};
use crate::dsp::biquad::BiquadCoefs;
use crate::tables::wavetable::{phase_inc, read};
use rand::RngExt;
use std::f64::consts::{FRAC_1_SQRT_2, PI};

/// The rate the descriptions' per-sample filters were written for.
const REF_SR: f64 = 44_100.0;
/// Most two-point averages in a redesigned filter (4.7 are needed at 96 kHz; above
/// ~130 kHz the losses stay those of 6).
const MAX_AVG: usize = 6;
/// Floats of one string's filter state: the averages, the two-tap memory, the
/// all-pass input and output memories.
const STR_Z: usize = MAX_AVG + 3;

/// The extra loss starts fading in at this age (seconds)...
const EXTRA_FROM: f64 = 1.0;
/// ... is complete at this age...
const EXTRA_FULL: f64 = 3.0;
/// ... and brings the fundamental 80 dB down by this age.
const EXTRA_END: f64 = 9.5;

// State layout (z):
const Z_S1: usize = 0; // string 1 filter state (STR_Z floats)
const Z_S2: usize = Z_S1 + STR_Z; // string 2 filter state (STR_Z floats)
const Z_BODY: usize = Z_S2 + STR_Z; // three body biquads (2 floats each)
const Z_LP: usize = Z_BODY + 6; // post low-pass biquad (2 floats)
const Z_HP: usize = Z_LP + 2; // pickup brightness high-pass: output, previous input
const Z_CHIFF: usize = Z_HP + 2; // chiff noise: previous, next, fraction; envelope
const Z_CHIKARI: usize = Z_CHIFF + 4; // sitar chikari envelope
const Z_DETUNE: usize = Z_CHIKARI + 1; // beat between the strings, Hz
const Z_MUTE: usize = Z_DETUNE + 1; // 1 once the string is muted (key up)
const Z_DC: usize = Z_MUTE + 1; // sitar DC blocker: previous input and output
const Z_LOOP: usize = Z_DC + 2; // a one-string loop as last designed: a, pole, c, gain
// n[0], n[1]: write positions of strings 1 and 2 (in their half of the line).
// n[2], n[3]: the stored loop's length and averages.
// n[4]: 1 + the read position of this segment's string output in the line when the
// string already ran beside others' ([`run_lanes`]); 0 otherwise.
const N_RAN: usize = 4;
// phase[0], phase[1]: sitar chikari sines at 2f and 3f.
// phase[58], phase[59]: the note's pitch (f64 bits, low half first) the stored loop is
// for; phase[60]: the rate it is for (f32 bits); phase[61], phase[62]: the string's
// pitch (f64 bits).
const P_DESIGN_PITCH: usize = 58;
const P_DESIGN_RATE: usize = 60;
const P_DESIGN_STRING: usize = 61;

/// Body resonances: `(centre Hz, half-width Hz, gain)`.
type Resonances = &'static [(f64, f64, f32)];

#[derive(Clone, Copy)]
enum Body {
    None,
    /// Each stage adds its band-pass of the already boosted signal.
    Sequential(Resonances),
    /// `0.6 x + sum of the band-passes of x`.
    Parallel(Resonances),
}

#[derive(Clone, Copy, PartialEq)]
enum Extra {
    None,
    /// Harpsichord: a 3 ms noise click of the quill.
    Chiff,
    /// Electric guitar: pickup comb at a quarter period and a bright high-pass.
    Pickup,
    /// Sitar: one-sided clipping bridge in the loop, decay change at 0.3 s,
    /// chikari drones and sympathetic-string echoes.
    Sitar,
}

/// One instrument.
struct Spec {
    /// Burst amplitude (uniform noise in -burst..burst).
    burst: f32,
    /// Smoothing passes over the burst at 44.1 kHz: count, weights of the sample
    /// and of its successor.
    passes: (f64, f64, f64),
    /// Loop filter weights at 44.1 kHz: older sample, newer sample.
    taps: (f64, f64),
    /// Loop gain per period of each string.
    decay: [f32; 2],
    /// Level of each string (0 for the second: one string).
    mix: [f32; 2],
    /// Fastest beat between the fundamentals of the two strings, Hz (a random rate of
    /// 55 % to all of it, either way round; at most [`MAX_DETUNE_CENTS`] apart).
    detune: f64,
    /// Correlation of the second string's burst with the first's (1: the same).
    correlation: f32,
    body: Body,
    /// Post low-pass at `min(.0, .1 x f)` Hz; 0 for none.
    lowpass: (f64, f64),
    extra: Extra,
    /// Output gain.
    gain: f32,
    /// Extra gain (dB) for low notes: none at `.0` Hz, `.1` dB an octave below.
    bass_boost: (f64, f64),
    /// A shaped pluck instead of the smoothed noise burst (one string only).
    shape: Option<PluckShape>,
    /// Decay rates designed per note instead of the fixed loop filter and gain.
    loss: Option<Loss>,
}

/// A pluck shaped like a real one: the string's displacement when it is let go (a
/// triangle with its apex at `position`), heard through a pickup, softened by the
/// finger, with a little noise. Its partials start at `sin(pi k position) / k^2`
/// (times `2 sin(pi k pickup)` and `k` for a magnetic pickup), then low-passed.
#[derive(Clone, Copy)]
struct PluckShape {
    /// Where the string is plucked, as a fraction of its length from the bridge.
    position: f64,
    /// Where a magnetic pickup sits (a fraction of the length; 0 for none). A
    /// pickup hears the string's velocity there.
    pickup: f64,
    /// The finger's softness: a one-pole low-pass at this frequency (Hz), twice.
    soft_hz: f64,
    /// Noise added to the shape, relative to its peak (no two plucks alike).
    noise: f32,
}

/// A string whose partials decay at `fundamental_db_s + db_s_per_hz x f` dB per
/// second (f the partial's frequency): losses that grow with frequency, as a real
/// string's do. Realised per note by a one-pole low-pass in the loop (matched at the
/// fundamental and the twelfth partial) and a loop gain.
#[derive(Clone, Copy)]
struct Loss {
    fundamental_db_s: f64,
    db_s_per_hz: f64,
}

/// What most plucked strings share: one string, the plain two-point loop filter,
/// no body, no post filter, no extras.
const ONE_STRING: Spec = Spec {
    burst: 1.0,
    passes: (0.0, 0.5, 0.5),
    taps: (0.5, 0.5),
    decay: [0.999, 0.0],
    mix: [1.0, 0.0],
    detune: 0.0,
    correlation: 0.0,
    body: Body::None,
    lowpass: (0.0, 0.0),
    extra: Extra::None,
    gain: 1.0,
    bass_boost: (0.0, 0.0),
    shape: None,
    loss: None,
};

const BASS_GUITAR: Spec = Spec {
    burst: 0.8,
    decay: [1.0, 0.0],
    shape: Some(PluckShape { position: 0.2, pickup: 0.12, soft_hz: 1500.0, noise: 0.1 }),
    loss: Some(Loss { fundamental_db_s: 4.0, db_s_per_hz: 0.0076 }),
    gain: 0.86,
    ..ONE_STRING
};

const HARPSICHORD: Spec =
    Spec { burst: 1.0, passes: (1.0, 0.7, 0.3), decay: [0.999, 0.0], extra: Extra::Chiff, gain: 0.66, ..ONE_STRING };

const UPRIGHT_BASS: Spec = Spec {
    burst: 0.6,
    decay: [1.0, 0.0],
    shape: Some(PluckShape { position: 0.3, pickup: 0.15, soft_hz: 2500.0, noise: 0.05 }),
    loss: Some(Loss { fundamental_db_s: 8.0, db_s_per_hz: 0.004 }),
    body: Body::Sequential(&[(80.0, 40.0, 0.4), (200.0, 60.0, 0.3), (400.0, 100.0, 0.15)]),
    lowpass: (2000.0, 11.0),
    gain: 1.24,
    ..ONE_STRING
};

const BANJO: Spec = Spec {
    burst: 0.9,
    passes: (1.0, 0.7, 0.3),
    decay: [0.9988, 0.0],
    body: Body::Sequential(&[(600.0, 200.0, 0.5), (1500.0, 300.0, 0.4), (3000.0, 500.0, 0.25)]),
    gain: 0.78,
    ..ONE_STRING
};

const MANDOLIN: Spec = Spec {
    burst: 0.8,
    passes: (1.0, 0.65, 0.35),
    decay: [0.9988, 0.9988],
    mix: [0.55, 0.45],
    detune: 0.45,
    correlation: 1.0,
    body: Body::Sequential(&[(500.0, 120.0, 0.3), (1000.0, 200.0, 0.25), (2000.0, 300.0, 0.15)]),
    gain: 0.92,
    ..ONE_STRING
};

const UKULELE: Spec = Spec {
    burst: 0.5,
    passes: (5.0, 0.55, 0.45),
    decay: [0.998, 0.0],
    body: Body::Sequential(&[(350.0, 100.0, 0.35), (700.0, 150.0, 0.25), (1200.0, 200.0, 0.15)]),
    lowpass: (6000.0, 12.0),
    gain: 1.72,
    ..ONE_STRING
};

const ACOUSTIC_GUITAR: Spec = Spec {
    burst: 0.8,
    passes: (2.0, 0.6, 0.4),
    decay: [0.9988, 0.0],
    body: Body::Parallel(&[(110.0, 60.0, 0.4), (250.0, 80.0, 0.3), (500.0, 120.0, 0.2)]),
    lowpass: (5000.0, f64::INFINITY),
    gain: 1.7,
    ..ONE_STRING
};

const SITAR: Spec = Spec {
    burst: 1.0,
    passes: (0.0, 0.5, 0.5),
    taps: (0.4, 0.6),
    decay: [0.9996, 0.0],
    extra: Extra::Sitar,
    gain: 0.7,
    ..ONE_STRING
};

const OUD: Spec = Spec {
    burst: 0.7,
    passes: (3.0, 0.5, 0.5),
    decay: [0.9985, 0.9978],
    mix: [0.6, 0.4],
    body: Body::Parallel(&[(90.0, 50.0, 0.5), (220.0, 80.0, 0.35), (450.0, 120.0, 0.15)]),
    lowpass: (3000.0, f64::INFINITY),
    gain: 3.0,
    ..ONE_STRING
};

const ELECTRIC_GUITAR: Spec =
    Spec { burst: 1.0, passes: (0.0, 0.5, 0.5), decay: [0.9993, 0.0], extra: Extra::Pickup, gain: 0.63, ..ONE_STRING };

/// Most detune between the two strings of a course, cents. Their beat is kept slow
/// (see `Spec::detune`): a beat minimum of the fundamental within a second would move
/// its perceived (and measured) pitch away from the note.
const MAX_DETUNE_CENTS: f64 = 3.0;

/// A muted string (the key is up: the player's hand, or the harpsichord's damper)
/// falls 60 dB in this time; its upper partials go first, as the loop filter takes
/// more of them every period.
pub(super) const MUTE_SECONDS: f64 = 0.2;

/// The per-period gain of a string at `freq_hz` muted to fall 60 dB in [`MUTE_SECONDS`].
#[inline]
pub(super) fn mute_gain(freq_hz: f64) -> f32 {
    10f64.powf(-3.0 / (MUTE_SECONDS * freq_hz.max(1.0))) as f32
}

/// Sitar: loop gain per period during the first 0.3 s (then `SITAR.decay[0]`).
const SITAR_EARLY_DECAY: f32 = 0.9992;
const SITAR_EARLY_SECONDS: f64 = 0.3;
/// Sitar bridge: the output clips above this with slope 1/2; in the loop, where the
/// reference clips only the older of the two filtered samples (weight 0.4), the
/// slope is 1 - 0.4 / 2.
const SITAR_KNEE: f32 = 0.25;
const SITAR_LOOP_SLOPE: f32 = 0.8;

macro_rules! plucked {
    ($(#[$doc:meta])* $name:ident, $spec:ident) => {
        $(#[$doc])*
        pub struct $name;

        impl Synth for $name {
            fn start(&self, st: &mut OscState, ctx: &SynthCtx) {
                start(&$spec, st, ctx);
            }

            fn render(&self, st: &mut OscState, ctx: &SynthCtx, out: &mut [f32]) {
                render(&$spec, st, ctx, out);
            }

            fn decays(&self) -> bool {
                true
            }

            fn uses_line(&self) -> bool {
                true
            }

            fn damp(&self, st: &mut OscState, _sample_rate: f32, _freq_hz: f64) {
                st.z[Z_MUTE] = 1.0;
            }

            fn runs_beside(&self) -> bool {
                runs_beside(&$spec)
            }

            fn begin_lane<'a>(&self, st: &'a mut OscState, ctx: &SynthCtx, len: usize) -> Option<Lane<'a>> {
                begin_lane(&$spec, st, ctx, len)
            }
        }
    };
}

plucked!(
    /// Electric bass: plucked by a finger at a fifth of the string, bridge pickup, losses rising with frequency.
    BassGuitar,
    BASS_GUITAR
);
plucked!(
    /// Harpsichord: bright burst, long ring, quill chiff.
    Harpsichord,
    HARPSICHORD
);
plucked!(
    /// Upright bass: plucked at three tenths of the string, three sequential body resonances, low-pass at 11 times the pitch.
    UprightBass,
    UPRIGHT_BASS
);
plucked!(
    /// Banjo: bright burst and a drum-head body (600, 1500, 3000 Hz).
    Banjo,
    BANJO
);
plucked!(
    /// Mandolin: a course of two slightly detuned strings, small body.
    Mandolin,
    MANDOLIN
);
plucked!(
    /// Ukulele: soft burst, small body, low-pass at twelve times the pitch.
    Ukulele,
    UKULELE
);
plucked!(
    /// Acoustic guitar: three parallel body resonances, 5 kHz low-pass.
    AcousticGuitar,
    ACOUSTIC_GUITAR
);
plucked!(
    /// Sitar: buzzing bridge (one-sided clipper in the loop), chikari and sympathetic strings.
    Sitar,
    SITAR
);
plucked!(
    /// Oud: two unison strings with different damping, deep parallel body, 3 kHz low-pass.
    Oud,
    OUD
);
plucked!(
    /// Electric guitar: raw burst, long sustain, pickup comb and brightness.
    ElectricGuitar,
    ELECTRIC_GUITAR
);

/// A uniform sample in -1..1 from the voice's generator.
#[inline]
fn uniform(st: &mut OscState) -> f32 {
    st.rng.random::<f32>() * 2.0 - 1.0
}

/// White noise with the spectrum of 44.1 kHz white noise: at higher rates, values
/// drawn at 44.1 kHz and interpolated linearly (so the level in the audio band does
/// not depend on the rate).
#[derive(Clone, Copy)]
struct Noise44 {
    prev: f32,
    next: f32,
    frac: f32,
}

impl Noise44 {
    fn new(st: &mut OscState) -> Self {
        Noise44 { prev: uniform(st), next: uniform(st), frac: 0.0 }
    }

    fn load(z: &[f32]) -> Self {
        Noise44 { prev: z[0], next: z[1], frac: z[2] }
    }

    fn store(&self, z: &mut [f32]) {
        z[0] = self.prev;
        z[1] = self.next;
        z[2] = self.frac;
    }

    #[inline]
    fn sample(&mut self, st: &mut OscState, step: f32) -> f32 {
        let v = self.prev + (self.next - self.prev) * self.frac;
        self.frac += step;
        while self.frac >= 1.0 {
            self.frac -= 1.0;
            self.prev = self.next;
            self.next = uniform(st);
        }
        v
    }
}

/// Step of [`Noise44`] per sample at `sample_rate`.
fn noise_step(sample_rate: f32) -> f32 {
    (REF_SR as f32 / sample_rate.max(1.0)).min(1.0)
}

/// A two-tap filter with weights `(older, newer)` at 44.1 kHz, applied `count`
/// times, redesigned at `sample_rate` as two-point averages plus one `(a, 1 - a)`
/// section (`a` on the older sample) with the same loss at low frequencies:
/// returns (number of averages, `a`).
fn redesign(count: f64, older: f64, newer: f64, sample_rate: f64) -> (usize, f64) {
    // |H|^2 = 1 - 2 w0 w1 (1 - cos w) ~ 1 - w0 w1 w^2: one average has w0 w1 = 1/4.
    let m = count * 4.0 * older * newer * (sample_rate / REF_SR).powi(2);
    let m = if m.is_finite() { m.max(0.0) } else { 0.0 };
    let avgs = (m.floor() as usize).min(MAX_AVG);
    let frac = (m - avgs as f64).clamp(0.0, 1.0);
    (avgs, (1.0 - (1.0 - frac).sqrt()) / 2.0)
}

/// One string's loop for the current render call.
#[derive(Clone, Copy)]
struct Loop {
    /// Integer delay in samples.
    len: usize,
    /// Two-point averages in the loss filter.
    avgs: usize,
    /// Weight of the older sample in the two-tap section.
    a: f32,
    /// Pole of the one-pole loss filter of a [`Loss`] string (0: the two-tap section).
    pole: f32,
    /// All-pass coefficient for the fractional delay.
    c: f32,
    /// Loop gain per period (for a [`Loss`] string, the designed gain; the caller
    /// multiplies in the rest).
    gain: f32,
}

/// The partial matched besides the fundamental in a [`Loss`] design.
const LOSS_MATCH_PARTIAL: f64 = 12.0;

/// The one-pole loop filter and loop gain that make the fundamental `f` and its
/// twelfth partial decay as `loss` asks: `(pole, gain)`. `y = (1 - p) x + p y'` loses
/// `10 log10(1 + 4 q sin^2(w / 2))` dB per pass, `q = p / (1 - p)^2`.
fn design_loss(loss: &Loss, f: f64, sample_rate: f64) -> (f64, f64) {
    let db_per_period = |hz: f64| (loss.fundamental_db_s + loss.db_s_per_hz * hz).max(0.0) / f;
    let top = (LOSS_MATCH_PARTIAL * f).min(0.25 * sample_rate);
    let s = |hz: f64| (PI * hz / sample_rate).sin().powi(2);
    let (s1, s2) = (s(f), s(top));
    // (1 + 4 q s2) / (1 + 4 q s1) = r: the filter's share of the two partials' difference.
    let r = 10f64.powf((db_per_period(top) - db_per_period(f)) / 10.0);
    let q = if s2 > r * s1 && r > 1.0 { (r - 1.0) / (4.0 * (s2 - r * s1)) } else { 0.0 };
    let pole = if q > 1e-9 { ((2.0 * q + 1.0) - (4.0 * q + 1.0).sqrt()) / (2.0 * q) } else { 0.0 };
    let filter_db = 10.0 * (1.0 + 4.0 * q * s1).log10();
    let gain = 10f64.powf(-(db_per_period(f) - filter_db).max(0.0) / 20.0);
    (pole, gain)
}

impl Loop {
    /// The loop sounding `freq_hz` in a line of `max_len` samples.
    fn new(spec: &Spec, freq_hz: f64, sample_rate: f64, max_len: usize) -> Self {
        let f = freq_hz.clamp(1.0, 0.45 * sample_rate);
        let w = 2.0 * PI * f / sample_rate;
        let (avgs, a, pole, gain, fixed) = if let Some(loss) = &spec.loss {
            let (p, g) = design_loss(loss, f, sample_rate);
            // The one-pole's phase delay at w.
            (0, 0.0, p, g, (p * w.sin()).atan2(1.0 - p * w.cos()) / w)
        } else {
            let (avgs, a) = redesign(1.0, spec.taps.0, spec.taps.1, sample_rate);
            // Phase delays: 1/2 per average, and the two-tap section's at w.
            (avgs, a, 0.0, 1.0, 0.5 * avgs as f64 + (a * w.sin()).atan2(1.0 - a + a * w.cos()) / w)
        };
        let period = (sample_rate / f).min(max_len as f64 - 2.0).max(fixed + 2.2);
        let rest = period - fixed;
        let n = (rest - 0.1).floor().max(1.0);
        let delta = rest - n; // 0.1 ..= 1.1
        let c = ((1.0 - delta) * w / 2.0).sin() / ((1.0 + delta) * w / 2.0).sin();
        Loop { len: n as usize, avgs, a: a as f32, pole: pole as f32, c: c as f32, gain: gain as f32 }
    }
}

/// One string's filter state (loaded from and stored to `st.z`).
#[derive(Clone, Copy)]
struct StringState {
    avg: [f32; MAX_AVG],
    older: f32,
    ap_x: f32,
    ap_y: f32,
}

impl StringState {
    fn load(z: &[f32]) -> Self {
        let mut avg = [0.0; MAX_AVG];
        avg.copy_from_slice(&z[..MAX_AVG]);
        StringState { avg, older: z[MAX_AVG], ap_x: z[MAX_AVG + 1], ap_y: z[MAX_AVG + 2] }
    }

    fn store(&self, z: &mut [f32]) {
        z[..MAX_AVG].copy_from_slice(&self.avg);
        z[MAX_AVG] = self.older;
        z[MAX_AVG + 1] = self.ap_x;
        z[MAX_AVG + 2] = self.ap_y;
    }

    /// The loop filter: averages, two-tap section (or, `ONE_POLE`, the one-pole of a
    /// [`Loss`] string, its memory in `older`), fractional-delay all-pass, gain.
    #[inline]
    fn filter<const ONE_POLE: bool>(&mut self, x: f32, lp: &Loop) -> f32 {
        let o = if ONE_POLE {
            // `(1 - p) x + p y'` rather than `x + p (y' - x)`: the loop's chain (from
            // the last output) is a multiply and an add, not a subtract besides.
            let o = (1.0 - lp.pole) * x + lp.pole * self.older;
            self.older = o;
            o
        } else {
            let mut u = x;
            for s in self.avg.iter_mut().take(lp.avgs) {
                let o = 0.5 * (u + *s);
                *s = u;
                u = o;
            }
            let o = (1.0 - lp.a) * u + lp.a * self.older;
            self.older = u;
            o
        };
        let y = lp.c * o + self.ap_x - lp.c * self.ap_y;
        self.ap_x = o;
        self.ap_y = y;
        y * lp.gain
    }
}

/// The extra per-period gain that makes a string of loop gain `decay` die away in
/// time at `freq_hz`, at `age` seconds (1 before [`EXTRA_FROM`]).
fn extra_gain(spec: &Spec, decay: f32, freq_hz: f64, age: f64) -> f32 {
    if age <= EXTRA_FROM {
        return 1.0;
    }
    let f = freq_hz.max(1.0);
    // The decay of the fundamental without the extra loss, dB per second.
    let db_per_s = if let Some(loss) = &spec.loss {
        loss.fundamental_db_s + loss.db_s_per_hz * f - 20.0 * (decay as f64).max(1e-9).log10() * f
    } else {
        let (w0, w1) = spec.taps;
        let w = (2.0 * PI * f / REF_SR).min(PI);
        let h = (1.0 - 2.0 * w0 * w1 * (1.0 - w.cos())).max(1e-9).sqrt();
        -20.0 * (decay as f64 * h).max(1e-9).log10() * f
    };
    let needed = (80.0 - EXTRA_END * db_per_s) / (EXTRA_END - 0.5 * (EXTRA_FROM + EXTRA_FULL));
    if needed <= 0.0 {
        return 1.0;
    }
    let ramp = ((age - EXTRA_FROM) / (EXTRA_FULL - EXTRA_FROM)).min(1.0);
    10f64.powf(-needed * ramp / (20.0 * f)) as f32
}

/// Smooths a burst in place (the reference's passes, redesigned for the rate) and
/// removes its mean.
fn smooth(spec: &Spec, buf: &mut [f32], sample_rate: f32) {
    let (full, a) = redesign(spec.passes.0, spec.passes.1, spec.passes.2, sample_rate as f64);
    let mut pass = |w_next: f32| {
        for j in 0..buf.len().saturating_sub(1) {
            buf[j] = (1.0 - w_next) * buf[j] + w_next * buf[j + 1];
        }
    };
    for _ in 0..full {
        pass(0.5);
    }
    if a > 0.0 {
        pass(a as f32);
    }
    let mean = buf.iter().sum::<f32>() / buf.len().max(1) as f32;
    for v in buf.iter_mut() {
        *v -= mean;
    }
}

/// RMS of a shaped pluck of burst amplitude 1 (the level of a smoothed noise burst).
const SHAPE_RMS: f32 = 0.35;

/// Writes a [`PluckShape`] of `n` samples (one period) into the start of the line,
/// with RMS `burst` x [`SHAPE_RMS`]. Positions along the loop are `x = 2 i / n`
/// string lengths (a period is there and back); the triangle's slope is `1 / position`
/// up to the apex and `-1 / (1 - position)` after it, mirrored on the way back.
fn shape_pluck(shape: &PluckShape, burst: f32, st: &mut OscState, source: &mut Noise44, n: usize, sample_rate: f32) {
    let beta = shape.position.clamp(0.02, 0.98);
    let (up, down) = (1.0 / beta, -1.0 / (1.0 - beta));
    // The triangle (displacement) and its slope (velocity, heard by a pickup).
    let tri = |x: f64| {
        let u = if x < 1.0 { x } else { 2.0 - x };
        let y = if u < beta { u * up } else { 1.0 + (u - beta) * down };
        if x < 1.0 { y } else { -y }
    };
    let slope = |x: f64| if x < beta || x >= 2.0 - beta { up } else { down };
    let gap = 2.0 * shape.pickup.clamp(0.0, 0.5);
    let step = noise_step(sample_rate);
    let mut peak = 0.0f32;
    for i in 0..n {
        let x = 2.0 * i as f64 / n as f64;
        let v = if gap > 0.0 { slope(x) - slope((x + 2.0 - gap) % 2.0) } else { tri(x) };
        st.line[i] = v as f32;
        peak = peak.max(v.abs() as f32);
    }
    let buf = &mut st.line[..n];
    let scale = 1.0 / peak.max(1e-9);
    for v in buf.iter_mut() {
        *v *= scale;
    }
    for i in 0..n {
        let u = source.sample(st, step);
        st.line[i] += shape.noise * u;
    }
    // The finger: two one-pole low-passes, each run once round the loop to settle
    // (the shape repeats) and then again to write.
    let buf = &mut st.line[..n];
    let a = 1.0 - (-2.0 * PI * shape.soft_hz / sample_rate as f64).exp() as f32;
    for _ in 0..2 {
        let mut y = 0.0f32;
        for &v in buf.iter() {
            y += a * (v - y);
        }
        for v in buf.iter_mut() {
            y += a * (*v - y);
            *v = y;
        }
    }
    let mean = buf.iter().sum::<f32>() / n.max(1) as f32;
    let power = buf.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n.max(1) as f32;
    let gain = burst * SHAPE_RMS / power.sqrt().max(1e-9);
    for v in buf.iter_mut() {
        *v = (*v - mean) * gain;
    }
}

/// Writes the bursts into the delay line (one string: all of it; two: a half
/// each), the rest cleared; returns the write positions.
fn pluck(spec: &Spec, st: &mut OscState, freqs: [f64; 2], sample_rate: f32) -> [usize; 2] {
    let total = st.line.len();
    let two = spec.mix[1] > 0.0;
    let size = if two { total / 2 } else { total };
    if size < 8 {
        return [0, 0];
    }
    let sr = sample_rate as f64;
    let n1 = Loop::new(spec, freqs[0], sr, size).len.min(size - 1);
    let step = noise_step(sample_rate);
    let mut source = Noise44::new(st);
    if let (Some(shape), false) = (&spec.shape, two) {
        shape_pluck(shape, spec.burst, st, &mut source, n1, sample_rate);
        st.line[n1..size].fill(0.0);
        return [n1, 0];
    }
    for i in 0..n1 {
        let v = source.sample(st, step) * spec.burst;
        st.line[i] = v;
    }
    st.line[n1..size].fill(0.0);
    if !two {
        smooth(spec, &mut st.line[..n1], sample_rate);
        return [n1, 0];
    }
    // The second string: the first one's raw burst, partly replaced by its own noise.
    let n2 = Loop::new(spec, freqs[1], sr, size).len.min(size - 1);
    let (same, own) = (spec.correlation, (1.0 - spec.correlation * spec.correlation).max(0.0).sqrt());
    for i in 0..n2 {
        let v = same * st.line[i % n1.max(1)] + own * source.sample(st, step) * spec.burst;
        st.line[size + i] = v;
    }
    st.line[size + n2..].fill(0.0);
    let (first, second) = st.line.split_at_mut(size);
    smooth(spec, &mut first[..n1], sample_rate);
    smooth(spec, &mut second[..n2], sample_rate);
    [n1, n2]
}

/// The pitches of the two strings: detuned apart around `freq_hz` so that their
/// level-weighted mean is the note.
fn string_freqs(spec: &Spec, st: &OscState, freq_hz: f64) -> [f64; 2] {
    let beat = st.z[Z_DETUNE] as f64;
    let cents = (1200.0 * (1.0 + beat.abs() / freq_hz.max(1.0)).log2()).min(MAX_DETUNE_CENTS) * beat.signum();
    let total = (spec.mix[0] + spec.mix[1]).max(1e-6) as f64;
    let up = cents * spec.mix[1] as f64 / total;
    let down = cents * spec.mix[0] as f64 / total;
    [freq_hz * (up / 1200.0).exp2(), freq_hz * (-down / 1200.0).exp2()]
}

fn start(spec: &Spec, st: &mut OscState, ctx: &SynthCtx) {
    let sr = ctx.sample_rate;
    if spec.mix[1] > 0.0 && spec.detune > 0.0 {
        let u = uniform(st);
        // 55 % to all of the fastest beat, either way round.
        let amount = spec.detune * (0.55 + 0.45 * u.abs() as f64);
        st.z[Z_DETUNE] = (amount * if u < 0.0 { -1.0 } else { 1.0 }) as f32;
    }
    let freqs = string_freqs(spec, st, ctx.freq_hz);
    [st.n[0], st.n[1]] = pluck(spec, st, freqs, sr);
    match spec.extra {
        Extra::Chiff => {
            let source = Noise44::new(st);
            source.store(&mut st.z[Z_CHIFF..Z_CHIFF + 3]);
            st.z[Z_CHIFF + 3] = 1.0;
        }
        Extra::Sitar => st.z[Z_CHIKARI] = 1.0,
        _ => {}
    }
}

/// Runs one string over `out` (adding `mix` times its output, or overwriting when
/// `add` is false) in `buf`, from write position `w`; returns the new position.
/// `ONE_POLE`: the loop filter of a [`Loss`] string.
fn run_string<const ONE_POLE: bool>(
    buf: &mut [f32],
    w: usize,
    s: &mut StringState,
    lp: &Loop,
    mix: f32,
    out: &mut [f32],
    add: bool,
) -> usize {
    let size = buf.len();
    let n = lp.len.min(size - 1);
    let mut w = w % size;
    let mut r = (w + size - n) % size;
    for x in out.iter_mut() {
        let v = buf[r];
        buf[w] = s.filter::<ONE_POLE>(v, lp);
        w += 1;
        if w == size {
            w = 0;
        }
        r += 1;
        if r == size {
            r = 0;
        }
        if add {
            *x += mix * v;
        } else {
            *x = mix * v;
        }
    }
    w
}

/// The line value `back` samples before read position `r` (fractional, linear).
#[inline]
fn tap(buf: &[f32], r: usize, back: f32) -> f32 {
    let size = buf.len();
    let i = back as usize;
    let frac = back - i as f32;
    let a = buf[(r + 2 * size - i) % size];
    let b = buf[(r + 2 * size - i - 1) % size];
    a + (b - a) * frac
}

/// The sitar's bridge on the output.
#[inline]
fn bridge(v: f32) -> f32 {
    if v > SITAR_KNEE { SITAR_KNEE + (v - SITAR_KNEE) * 0.5 } else { v }
}

/// The sitar string with its clipping bridge in the loop, sympathetic-string taps
/// at 1/(h f) for h = 2..5 (delays in samples; 0 = off), into `out`.
fn run_sitar(buf: &mut [f32], w: usize, s: &mut StringState, lp: &Loop, symp: &[f32; 4], out: &mut [f32]) -> usize {
    let size = buf.len();
    let n = lp.len.min(size - 1);
    let mut w = w % size;
    let mut r = (w + size - n) % size;
    for x in out.iter_mut() {
        let v = buf[r];
        let looped = if v > SITAR_KNEE { SITAR_KNEE + (v - SITAR_KNEE) * SITAR_LOOP_SLOPE } else { v };
        let mut y = bridge(v);
        for &d in symp {
            if d > 0.0 {
                y += 0.04 * bridge(tap(buf, r, d));
            }
        }
        buf[w] = s.filter::<false>(looped, lp);
        w += 1;
        if w == size {
            w = 0;
        }
        r += 1;
        if r == size {
            r = 0;
        }
        *x = y;
    }
    w
}

/// The electric guitar string with its pickup comb `x[n] - 0.3 x[n - d]`.
fn run_pickup(buf: &mut [f32], w: usize, s: &mut StringState, lp: &Loop, d: f32, out: &mut [f32]) -> usize {
    let size = buf.len();
    let n = lp.len.min(size - 1);
    let mut w = w % size;
    let mut r = (w + size - n) % size;
    for x in out.iter_mut() {
        let v = buf[r];
        let y = v - 0.3 * tap(buf, r, d);
        buf[w] = s.filter::<false>(v, lp);
        w += 1;
        if w == size {
            w = 0;
        }
        r += 1;
        if r == size {
            r = 0;
        }
        *x = y;
    }
    w
}

fn resonance(centre: f64, half_width: f64, sample_rate: f64) -> BiquadCoefs {
    BiquadCoefs::bandpass_range((centre - half_width).max(20.0), (centre + half_width).min(22_049.0), sample_rate)
}

/// A `u64` kept in two phase slots from `at`.
fn load_u64(st: &OscState, at: usize) -> u64 {
    st.phase[at] as u64 | (st.phase[at + 1] as u64) << 32
}

fn store_u64(st: &mut OscState, at: usize, v: u64) {
    [st.phase[at], st.phase[at + 1]] = [v as u32, (v >> 32) as u32];
}

/// The pitch and loop of a one-string spec at note pitch `f`: designed again only
/// when the pitch or the rate has moved since the last render call (the design takes
/// a dozen library calls; the pitch moves only with a bend or a wander), else the
/// stored design, the same numbers bit for bit.
fn one_string_loop(spec: &Spec, st: &mut OscState, f: f64, sr: f64, size: usize) -> (f64, Loop) {
    let rate = (sr as f32).to_bits();
    if load_u64(st, P_DESIGN_PITCH) == f.to_bits() && st.phase[P_DESIGN_RATE] == rate {
        let [a, pole, c, gain] = [0, 1, 2, 3].map(|k| st.z[Z_LOOP + k]);
        let lp = Loop { len: st.n[2], avgs: st.n[3], a, pole, c, gain };
        return (f64::from_bits(load_u64(st, P_DESIGN_STRING)), lp);
    }
    let [f1, _] = string_freqs(spec, st, f);
    let lp = Loop::new(spec, f1, sr, size);
    store_u64(st, P_DESIGN_PITCH, f.to_bits());
    st.phase[P_DESIGN_RATE] = rate;
    store_u64(st, P_DESIGN_STRING, f1.to_bits());
    [st.n[2], st.n[3]] = [lp.len, lp.avgs];
    st.z[Z_LOOP..Z_LOOP + 4].copy_from_slice(&[lp.a, lp.pole, lp.c, lp.gain]);
    (f1, lp)
}

/// Whether `spec`'s string loop can run beside other voices' ([`run_lanes`]): one
/// string with a [`Loss`] filter, nothing in its loop but the filter.
fn runs_beside(spec: &Spec) -> bool {
    spec.mix[1] <= 0.0 && spec.loss.is_some() && !matches!(spec.extra, Extra::Sitar | Extra::Pickup)
}

/// String 1's loop for this segment (its gain with the decay, the extra loss and
/// the mute), and string 2's pitch (0 for one string).
fn first_loop(spec: &Spec, st: &mut OscState, f: f64, sr: f64, size: usize, age: f64) -> (f64, Loop) {
    let two = spec.mix[1] > 0.0;
    let (f1, f2, mut lp1) = if two {
        let [f1, f2] = string_freqs(spec, st, f);
        (f1, f2, Loop::new(spec, f1, sr, size))
    } else {
        let (f1, lp1) = one_string_loop(spec, st, f, sr, size);
        (f1, 0.0, lp1)
    };
    let early = spec.extra == Extra::Sitar && age < SITAR_EARLY_SECONDS;
    let decay1 = if early { SITAR_EARLY_DECAY } else { spec.decay[0] };
    let muted = st.z[Z_MUTE] > 0.0;
    lp1.gain *= decay1 * extra_gain(spec, spec.decay[0], f1, age) * if muted { mute_gain(f1) } else { 1.0 };
    (f2, lp1)
}

/// Most strings [`run_lanes`] runs at once.
pub const LANES: usize = 8;

/// One voice's string loop set up for [`run_lanes`]: its line, the positions, the filter's state and the loop of this segment.
pub struct Lane<'a> {
    buf: &'a mut [f32],
    z: &'a mut [f32],
    n: &'a mut [usize],
    w: usize,
    r: usize,
    s: StringState,
    lp: Loop,
}

/// Sets up the string loop of the next `len` samples of a voice whose spec
/// [`runs_beside`] others, as [`render`] would run it; `None` where the loop is
/// shorter than the segment or within `len` of the line's length (the segment would
/// read values it writes, or overwrite values after reading them), or where
/// `render` would not run the string.
fn begin_lane<'a>(spec: &Spec, st: &'a mut OscState, ctx: &SynthCtx, len: usize) -> Option<Lane<'a>> {
    let sr = ctx.sample_rate as f64;
    let size = st.line.len();
    if size < 16 || len == 0 || spec.mix[1] > 0.0 {
        return None;
    }
    let f = ctx.freq_hz.max(1.0);
    let age = st.age as f64 / sr;
    let (_, lp) = first_loop(spec, st, f, sr, size, age);
    let n = lp.len.min(size - 1);
    // Every value the segment reads was written before it (the loop no shorter than
    // the segment), and none is overwritten in it after being read.
    if n < len || size - n < len || len > LANE_BLOCK {
        return None;
    }
    let w = st.n[0] % size;
    let r = (w + size - n) % size;
    let s = StringState::load(&st.z[Z_S1..Z_S1 + STR_Z]);
    Some(Lane { buf: &mut st.line, z: &mut st.z, n: &mut st.n, w, r, s, lp })
}

/// The filter state and loop coefficients of [`LANES`] strings, one lane each.
#[derive(Clone, Copy, Default)]
struct LaneFilters {
    older: [f32; LANES],
    ap_x: [f32; LANES],
    ap_y: [f32; LANES],
    pole: [f32; LANES],
    c: [f32; LANES],
    gain: [f32; LANES],
}

/// Runs the string loops of `lanes` side by side for `len` samples and empties
/// them: per lane and sample the operations of [`run_string`] with its `ONE_POLE`
/// filter ([`StringState::filter`]), in the same order, the lanes' independent
/// recursions overlapping in vector lanes. The output stays in each line (read
/// back by [`render`]); each voice's filter state and positions are stored.
pub fn run_lanes(lanes: &mut [Option<Lane>], len: usize) {
    let len = len.min(LANE_BLOCK);
    // Each lane's input, the line values of the segment (read before any is written:
    // `begin_lane`), then its output; lanes no string uses run on silence.
    let mut xs = [[0.0f32; LANE_BLOCK]; LANES];
    let mut f = LaneFilters::default();
    for (k, lane) in lanes.iter_mut().take(LANES).enumerate() {
        if let Some(lane) = lane {
            let (head, tail) = xs[k][..len].split_at_mut(len.min(lane.buf.len() - lane.r));
            head.copy_from_slice(&lane.buf[lane.r..lane.r + head.len()]);
            tail.copy_from_slice(&lane.buf[..tail.len()]);
            (f.older[k], f.ap_x[k], f.ap_y[k]) = (lane.s.older, lane.s.ap_x, lane.s.ap_y);
            (f.pole[k], f.c[k], f.gain[k]) = (lane.lp.pole, lane.lp.c, lane.lp.gain);
        }
    }
    lanes_wide(&mut xs, &mut f, len);
    for (k, lane) in lanes.iter_mut().take(LANES).enumerate() {
        if let Some(mut lane) = lane.take() {
            let size = lane.buf.len();
            let (head, tail) = xs[k][..len].split_at(len.min(size - lane.w));
            lane.buf[lane.w..lane.w + head.len()].copy_from_slice(head);
            lane.buf[..tail.len()].copy_from_slice(tail);
            (lane.s.older, lane.s.ap_x, lane.s.ap_y) = (f.older[k], f.ap_x[k], f.ap_y[k]);
            lane.s.store(&mut lane.z[Z_S1..Z_S1 + STR_Z]);
            lane.n[0] = (lane.w + len) % size;
            lane.n[N_RAN] = lane.r + 1;
        }
    }
}

/// Most samples [`run_lanes`] runs at once (a tick).
const LANE_BLOCK: usize = crate::engine::TICK_FRAMES;

/// One sample of every lane: `StringState::filter::<true>`'s operations, lane by lane.
#[inline(always)]
fn lanes_step(lf: &mut LaneFilters, x: &mut [f32; LANES]) {
    for (k, x) in x.iter_mut().enumerate() {
        let o = (1.0 - lf.pole[k]) * *x + lf.pole[k] * lf.older[k];
        lf.older[k] = o;
        let y = lf.c[k] * o + lf.ap_x[k] - lf.c[k] * lf.ap_y[k];
        lf.ap_x[k] = o;
        lf.ap_y[k] = y;
        *x = y * lf.gain[k];
    }
}

/// [`run_lanes`]' loop over the lanes' inputs `xs` (replaced by the outputs), sample
/// by sample.
fn lanes_plain(xs: &mut [[f32; LANE_BLOCK]; LANES], f: &mut LaneFilters, from: usize, len: usize) {
    for i in from..len {
        let mut x: [f32; LANES] = std::array::from_fn(|k| xs[k][i]);
        lanes_step(f, &mut x);
        for (row, v) in xs.iter_mut().zip(x) {
            row[i] = v;
        }
    }
}

/// [`lanes_plain`], eight samples at a time where the processor has AVX2: the
/// lanes' eight samples loaded as eight vectors and turned from rows into columns,
/// one vector step per sample for all lanes (the same operations), and back.
fn lanes_wide(xs: &mut [[f32; LANE_BLOCK]; LANES], f: &mut LaneFilters, len: usize) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the processor has AVX2 (checked just above).
        let done = unsafe { lanes_avx2(xs, f, len) };
        lanes_plain(xs, f, done, len);
        return;
    }
    lanes_plain(xs, f, 0, len);
}

/// The AVX2 part of [`lanes_wide`]: the whole eights of samples; returns how many.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn lanes_avx2(xs: &mut [[f32; LANE_BLOCK]; LANES], f: &mut LaneFilters, len: usize) -> usize {
    use std::arch::x86_64::*;
    let whole = len - len % LANES;
    // SAFETY: AVX2 is enabled here; every load and store is of `xs[k][j..j + 8]`
    // with j + 8 <= whole <= LANE_BLOCK, or of a `LaneFilters` array of eight.
    unsafe {
        let ld = |a: &[f32; LANES]| _mm256_loadu_ps(a.as_ptr());
        let (pole, c, gain) = (ld(&f.pole), ld(&f.c), ld(&f.gain));
        let keep = _mm256_sub_ps(_mm256_set1_ps(1.0), pole);
        let (mut older, mut ap_x, mut ap_y) = (ld(&f.older), ld(&f.ap_x), ld(&f.ap_y));
        for j in (0..whole).step_by(LANES) {
            let rows: [__m256; 8] = std::array::from_fn(|k| _mm256_loadu_ps(xs[k][j..j + LANES].as_ptr()));
            let mut cols = crate::dsp::transpose8(&rows);
            for x in cols.iter_mut() {
                let o = _mm256_add_ps(_mm256_mul_ps(keep, *x), _mm256_mul_ps(pole, older));
                older = o;
                let y = _mm256_sub_ps(_mm256_add_ps(_mm256_mul_ps(c, o), ap_x), _mm256_mul_ps(c, ap_y));
                ap_x = o;
                ap_y = y;
                *x = _mm256_mul_ps(y, gain);
            }
            let rows = crate::dsp::transpose8(&cols);
            for (k, row) in rows.iter().enumerate() {
                _mm256_storeu_ps(xs[k][j..j + LANES].as_mut_ptr(), *row);
            }
        }
        _mm256_storeu_ps(f.older.as_mut_ptr(), older);
        _mm256_storeu_ps(f.ap_x.as_mut_ptr(), ap_x);
        _mm256_storeu_ps(f.ap_y.as_mut_ptr(), ap_y);
    }
    whole
}

fn render(spec: &Spec, st: &mut OscState, ctx: &SynthCtx, out: &mut [f32]) {
    let sr = ctx.sample_rate as f64;
    let total = st.line.len();
    if total < 16 || out.is_empty() {
        out.fill(0.0);
        return;
    }
    let f = ctx.freq_hz.max(1.0);
    let age = st.age as f64 / sr;
    let two = spec.mix[1] > 0.0;
    let size = if two { total / 2 } else { total };
    let muted = st.z[Z_MUTE] > 0.0;

    // The strings.
    let ran = std::mem::take(&mut st.n[N_RAN]);
    if ran > 0 {
        // Already run beside other voices' strings (`run_lanes`): the output read back.
        // In two parts where the line wraps (`begin_lane`: the segment fits in it).
        let r = ran - 1;
        let (head, tail) = out.split_at_mut(out.len().min(size - r));
        for (x, v) in head.iter_mut().zip(&st.line[r..]) {
            *x = spec.mix[0] * v;
        }
        for (x, v) in tail.iter_mut().zip(st.line.iter()) {
            *x = spec.mix[0] * v;
        }
    } else {
        strings(spec, st, f, sr, size, age, out);
    }
    finish(spec, st, ctx, f, sr, muted, out);
}

/// [`render`]'s strings, into `out`.
fn strings(spec: &Spec, st: &mut OscState, f: f64, sr: f64, size: usize, age: f64, out: &mut [f32]) {
    let two = spec.mix[1] > 0.0;
    let muted = st.z[Z_MUTE] > 0.0;
    let (f2, lp1) = first_loop(spec, st, f, sr, size, age);
    let (first, second) = st.line.split_at_mut(size);
    let mut s1 = StringState::load(&st.z[Z_S1..Z_S1 + STR_Z]);
    st.n[0] = match spec.extra {
        Extra::Sitar => {
            let mut symp = [0.0f32; 4];
            for (h, d) in symp.iter_mut().enumerate() {
                let hf = f * (h + 2) as f64;
                let back = (sr / hf) as f32;
                // Taps must lie in the part of the line not yet overwritten.
                if hf < REF_SR / 2.0 && lp1.len as f32 + back + 2.0 < size as f32 {
                    *d = back;
                }
            }
            run_sitar(first, st.n[0], &mut s1, &lp1, &symp, out)
        }
        Extra::Pickup => {
            let d = ((sr / f) as f32 / 4.0).min((size - lp1.len.min(size)) as f32 - 2.0).max(0.0);
            run_pickup(first, st.n[0], &mut s1, &lp1, d, out)
        }
        _ if spec.loss.is_some() => run_string::<true>(first, st.n[0], &mut s1, &lp1, spec.mix[0], out, false),
        _ => run_string::<false>(first, st.n[0], &mut s1, &lp1, spec.mix[0], out, false),
    };
    s1.store(&mut st.z[Z_S1..Z_S1 + STR_Z]);
    if two {
        let mut lp2 = Loop::new(spec, f2, sr, size);
        lp2.gain *= spec.decay[1] * extra_gain(spec, spec.decay[1], f2, age) * if muted { mute_gain(f2) } else { 1.0 };
        let mut s2 = StringState::load(&st.z[Z_S2..Z_S2 + STR_Z]);
        st.n[1] = if spec.loss.is_some() {
            run_string::<true>(second, st.n[1], &mut s2, &lp2, spec.mix[1], out, true)
        } else {
            run_string::<false>(second, st.n[1], &mut s2, &lp2, spec.mix[1], out, true)
        };
        s2.store(&mut st.z[Z_S2..Z_S2 + STR_Z]);
    }
}

/// [`render`] after the strings: the extras, the body, the low-pass and the gain.
fn finish(spec: &Spec, st: &mut OscState, ctx: &SynthCtx, f: f64, sr: f64, muted: bool, out: &mut [f32]) {
    // Extras on the string's output.
    match spec.extra {
        Extra::Chiff => {
            let mut env = st.z[Z_CHIFF + 3];
            if env > 1e-6 {
                // exp(-15) over 3 ms.
                let k = (-15.0 / (0.003 * sr)).exp() as f32;
                let step = noise_step(ctx.sample_rate);
                let mut source = Noise44::load(&st.z[Z_CHIFF..Z_CHIFF + 3]);
                for x in out.iter_mut() {
                    *x += 0.5 * env * source.sample(st, step);
                    env *= k;
                }
                source.store(&mut st.z[Z_CHIFF..Z_CHIFF + 3]);
                st.z[Z_CHIFF + 3] = env;
            }
        }
        Extra::Pickup => {
            // One-pole high-pass at ~1.24 kHz scaled to the reference's 0.15/0.85
            // section (high-frequency gain 0.176), mixed in at 0.2.
            let p = (-2.0 * PI * 1240.0 / sr).exp() as f32;
            let mix = 0.2 * 0.176;
            let [mut y, mut x1] = [st.z[Z_HP], st.z[Z_HP + 1]];
            for x in out.iter_mut() {
                y = p * (y + *x - x1);
                x1 = *x;
                *x += mix * y;
            }
            st.z[Z_HP] = y;
            st.z[Z_HP + 1] = x1;
        }
        Extra::Sitar => {
            let mut env = st.z[Z_CHIKARI];
            if env > 1e-5 {
                // The drones ring on after a pluck, and stop with the muted string.
                let k = (if muted { -35.0 } else { -2.0 } / sr).exp() as f32;
                let sine = ctx.waves.sine();
                let nyq = 0.45 * sr;
                let i2 = if 2.0 * f < nyq { phase_inc(2.0 * f, sr) } else { 0 };
                let i3 = if 3.0 * f < nyq { phase_inc(3.0 * f, sr) } else { 0 };
                let (a2, a3) = (if i2 > 0 { 0.04 } else { 0.0 }, if i3 > 0 { 0.025 } else { 0.0 });
                let [mut p2, mut p3] = [st.phase[0], st.phase[1]];
                for x in out.iter_mut() {
                    *x += env * (a2 * read(sine, p2) + a3 * read(sine, p3));
                    p2 = p2.wrapping_add(i2);
                    p3 = p3.wrapping_add(i3);
                    env *= k;
                }
                st.phase[0] = p2;
                st.phase[1] = p3;
                st.z[Z_CHIKARI] = env;
            }
        }
        Extra::None => {}
    }

    // Body.
    match spec.body {
        Body::None => {}
        Body::Sequential(res) => {
            for (i, &(c, bw, g)) in res.iter().take(3).enumerate() {
                let co = resonance(c, bw, sr);
                let z = Z_BODY + 2 * i;
                let mut s = [st.z[z], st.z[z + 1]];
                for x in out.iter_mut() {
                    *x += g * co.step(&mut s, *x);
                }
                st.z[z] = s[0];
                st.z[z + 1] = s[1];
            }
        }
        Body::Parallel(res) => {
            let mut co = [BiquadCoefs::IDENTITY; 3];
            let mut g = [0.0f32; 3];
            for (i, &(c, bw, gain)) in res.iter().take(3).enumerate() {
                co[i] = resonance(c, bw, sr);
                g[i] = gain;
            }
            let mut s = [[0.0f32; 2]; 3];
            for (i, s) in s.iter_mut().enumerate() {
                *s = [st.z[Z_BODY + 2 * i], st.z[Z_BODY + 2 * i + 1]];
            }
            for x in out.iter_mut() {
                let r = g[0] * co[0].step(&mut s[0], *x)
                    + g[1] * co[1].step(&mut s[1], *x)
                    + g[2] * co[2].step(&mut s[2], *x);
                *x = 0.6 * *x + r;
            }
            for (i, s) in s.iter().enumerate() {
                st.z[Z_BODY + 2 * i] = s[0];
                st.z[Z_BODY + 2 * i + 1] = s[1];
            }
        }
    }

    // The sitar's one-sided bridge leaves DC (-8.5 dB of its RMS): take it out.
    if spec.extra == Extra::Sitar {
        let mut dc = [st.z[Z_DC], st.z[Z_DC + 1]];
        crate::dsp::math::dc_block(out, &mut dc, ctx.sample_rate);
        [st.z[Z_DC], st.z[Z_DC + 1]] = dc;
    }

    // Low-pass and output gain.
    let (boost_hz, boost_db) = spec.bass_boost;
    let g = if boost_db > 0.0 {
        let octaves = ((boost_hz / f).log2()).clamp(0.0, 1.0);
        spec.gain * 10f64.powf(boost_db * octaves / 20.0) as f32
    } else {
        spec.gain
    };
    let (max_hz, times_f) = spec.lowpass;
    if max_hz > 0.0 {
        let fc = max_hz.min(times_f * f).min(0.45 * sr);
        let co = BiquadCoefs::lowpass(fc, FRAC_1_SQRT_2, sr);
        let mut s = [st.z[Z_LP], st.z[Z_LP + 1]];
        for x in out.iter_mut() {
            *x = g * co.step(&mut s, *x);
        }
        st.z[Z_LP] = s[0];
        st.z[Z_LP + 1] = s[1];
    } else {
        for x in out.iter_mut() {
            *x *= g;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::synth::{SYNTHS, line_len};
    use crate::params::ParamValues;
    use crate::tables::wavetable::Wavetables;

    /// Renders a plucked synth for 1.5 s in ticks, its pitch bent up a semitone half
    /// way; `forget` clears the stored loop design before every tick.
    fn play(name: &str, forget: bool, waves: &Wavetables) -> Vec<f32> {
        let sr = 48_000.0f32;
        let params = ParamValues::default();
        let entry = SYNTHS.iter().find(|e| e.name == name).expect("registered");
        let mut st = OscState::new(line_len(sr));
        st.reset(11);
        let ctx = SynthCtx { sample_rate: sr, freq_hz: 98.0, params: &params, waves };
        entry.synth.start(&mut st, &ctx);
        let mut out = vec![0.0f32; 72_000];
        for (i, block) in out.chunks_mut(64).enumerate() {
            let bent = if i * 64 < 36_000 { 98.0 } else { 98.0 * 2f64.powf(1.0 / 12.0) };
            let ctx = SynthCtx { sample_rate: sr, freq_hz: bent, params: &params, waves };
            if forget {
                st.phase[P_DESIGN_PITCH..P_DESIGN_RATE + 1].fill(0);
            }
            entry.synth.render(&mut st, &ctx, block);
            st.age += block.len() as u64;
        }
        out
    }

    /// The one-pole loss string with its filter as `(1 - p) x + p y'` rings as with
    /// `x + p (y' - x)` (as it was written before), within 1e-5 of the peak over 4 s
    /// of a low E.
    #[test]
    fn the_one_pole_string_rings_as_its_earlier_form_did() {
        let sr = 48_000.0;
        let spec = &BASS_GUITAR;
        let lp = Loop::new(spec, 41.2, sr, 4096);
        let mut fresh = vec![0.0f32; 4096];
        for (i, x) in fresh.iter_mut().take(lp.len).enumerate() {
            *x = (i as f32 / lp.len as f32 * 7.0).sin() * 0.5 + if i % 7 == 0 { 0.2 } else { -0.1 };
        }
        let (mut a_buf, mut b_buf) = (fresh.clone(), fresh);
        let zero = StringState { avg: [0.0; MAX_AVG], older: 0.0, ap_x: 0.0, ap_y: 0.0 };
        let (mut a, mut b) = (zero, zero);
        let (mut wa, mut wb) = (lp.len, lp.len);
        let (mut worst, mut peak) = (0.0f32, 0.0f32);
        let mut out = [0.0f32; 64];
        for _ in 0..(4 * 48_000 / 64) {
            wa = run_string::<true>(&mut a_buf, wa, &mut a, &lp, 1.0, &mut out, false);
            // The earlier form, sample by sample.
            let size = b_buf.len();
            let mut r = (wb + size - lp.len) % size;
            for y in out.iter() {
                let v = b_buf[r];
                let o = v + lp.pole * (b.older - v);
                b.older = o;
                let ap = lp.c * o + b.ap_x - lp.c * b.ap_y;
                (b.ap_x, b.ap_y) = (o, ap);
                b_buf[wb] = ap * lp.gain;
                wb = (wb + 1) % size;
                r = (r + 1) % size;
                worst = worst.max((y - v).abs());
                peak = peak.max(v.abs());
            }
        }
        assert!(peak > 0.1, "the string is silent");
        assert!(worst <= 1e-5 * peak, "{worst} of {peak}");
    }

    #[test]
    fn a_stored_loop_design_plays_the_same_as_one_designed_every_tick() {
        let waves = Wavetables::new();
        for name in ["bass_guitar_synth", "upright_bass_synth", "acoustic_guitar_synth", "sitar_synth"] {
            let (stored, fresh) = (play(name, false, &waves), play(name, true, &waves));
            assert!(stored.iter().any(|x| *x != 0.0), "{name} is silent");
            assert!(stored.iter().zip(&fresh).all(|(a, b)| a.to_bits() == b.to_bits()), "{name}");
        }
    }
}
