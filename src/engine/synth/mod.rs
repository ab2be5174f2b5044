//! The synth interface and registry. A synth turns a pitch into a mono signal, one
//! tick at a time, on the audio thread; its per-voice state lives in a fixed-size
//! [`OscState`] owned by the voice. Adding a synth is one file implementing
//! [`Synth`] plus one line in [`SYNTHS`].

mod basic;
mod bowed;
mod fm;
mod keys;
mod noise;
mod organ;
mod pluck;
mod plucked;
mod supersaw;
mod synths;
mod winds;

pub use plucked::{LANES as STRING_LANES, Lane, run_lanes};

use crate::params::{Param, ParamValues};
use crate::tables::wavetable::Wavetables;
use rand_pcg::Pcg32;

/// Oscillator phases a voice can hold (three detuned copies of up to eight, or
/// one additive bank of up to 64 partials).
pub const MAX_PHASES: usize = 64;
/// Floats of filter and miscellaneous state a voice can hold.
pub const MAX_Z: usize = 68;
/// Where a synth that needs one keeps its output DC blocker's state (two floats past
/// the 64 its own layout may fill).
pub const Z_DC_OUT: usize = 64;
/// Integers of state a voice can hold.
pub const MAX_N: usize = 8;

/// Length of a voice's delay line at `sample_rate`: one period of A0 (27.5 Hz) and
/// a little room, rounded up to a power of two. Physical models with two strings
/// split it in halves.
pub fn line_len(sample_rate: f32) -> usize {
    ((sample_rate / 27.5).ceil() as usize + 4).next_power_of_two()
}

/// Per-voice synth state: allocated once with the voice pool, reset at note-on.
pub struct OscState {
    /// 32-bit phase accumulators (one cycle = 2^32): exact pitch, no drift.
    pub phase: [u32; MAX_PHASES],
    /// Filter and miscellaneous state.
    pub z: [f32; MAX_Z],
    /// Integer state (delay lengths, positions).
    pub n: [usize; MAX_N],
    /// Seeded noise source: renders are deterministic.
    pub rng: Pcg32,
    /// Samples rendered since note-on.
    pub age: u64,
    /// A delay line for physical models (Karplus-Strong) and oversampling rings, of
    /// [`line_len`] floats, zeroed at note-on: lent to the voice from a pool while it
    /// plays a synth whose [`Synth::uses_line`] says so, empty otherwise.
    pub line: Box<[f32]>,
    /// The detune in cents that [`with_detune`] (or a detuned basic wave) last took,
    /// and its ratio `2^(cents / 1200)`: the library's `exp2` runs only when the
    /// detune changes.
    pub detune: (f64, f64),
}

impl OscState {
    pub fn new(line_len: usize) -> Self {
        OscState {
            phase: [0; MAX_PHASES],
            z: [0.0; MAX_Z],
            n: [0; MAX_N],
            rng: Pcg32::new(0, 0),
            age: 0,
            line: crate::dsp::zeroed(line_len),
            detune: (f64::NAN, f64::NAN),
        }
    }

    /// Clears the state for a new note, seeding the noise source.
    pub fn reset(&mut self, seed: u64) {
        self.phase = [0; MAX_PHASES];
        self.z = [0.0; MAX_Z];
        self.n = [0; MAX_N];
        self.rng = Pcg32::new(seed, 0x0a02_bdbf_7bb3_c0a7);
        self.age = 0;
        self.detune = (f64::NAN, f64::NAN);
    }

    /// A uniform sample in -1..1.
    #[inline]
    pub fn noise(&mut self) -> f32 {
        use rand::RngExt;
        self.rng.random::<f32>() * 2.0 - 1.0
    }
}

/// Removes DC from a synth's output (a one-pole high-pass at
/// [`crate::dsp::math::DC_BLOCK_HZ`]), its state in `st.z[Z_DC_OUT..Z_DC_OUT + 2]`.
#[inline]
pub fn dc_out(st: &mut OscState, sample_rate: f32, out: &mut [f32]) {
    let mut s = [st.z[Z_DC_OUT], st.z[Z_DC_OUT + 1]];
    crate::dsp::math::dc_block(out, &mut s, sample_rate);
    [st.z[Z_DC_OUT], st.z[Z_DC_OUT + 1]] = s;
}

/// What a synth may read while rendering.
pub struct SynthCtx<'a> {
    pub sample_rate: f32,
    /// The pitch right now, pitch bend included.
    pub freq_hz: f64,
    /// The channel's voice parameters (or the ones the note started with, if the
    /// channel's instrument has changed since).
    pub params: &'a ParamValues,
    pub waves: &'a Wavetables,
}

impl SynthCtx<'_> {
    #[inline]
    pub fn param(&self, p: Param) -> f32 {
        self.params.get(p)
    }
}

/// A sound source. Implementations run on the audio thread: no allocation, no locks.
pub trait Synth: Sync {
    /// Prepares `st` (already reset and seeded) for a new note.
    fn start(&self, _st: &mut OscState, _ctx: &SynthCtx) {}
    /// Writes the next `out.len()` samples (overwriting `out`).
    fn render(&self, st: &mut OscState, ctx: &SynthCtx, out: &mut [f32]);
    /// Whether the sound dies away by itself (a plucked string), so that a held note
    /// can free its voice once silent.
    fn decays(&self) -> bool {
        false
    }
    /// Whether the synth uses [`OscState::line`]. Only such voices are given a delay
    /// line (from a pool, zeroed); every other voice's line is empty.
    fn uses_line(&self) -> bool {
        false
    }
    /// The key is up and the channel leaves the release to the instrument (its
    /// envelope's release is 0): a damper falls on the string (pianos, electric pianos,
    /// harpsichord) or the player mutes it (guitars, basses), upper partials first.
    /// A synth without one rings on (mallets, bells, harp). `sample_rate` and the
    /// note's `freq_hz` as at note-off.
    fn damp(&self, _st: &mut OscState, _sample_rate: f32, _freq_hz: f64) {}
    /// Whether the synth's string loop can run beside other voices' (the plucked
    /// strings with one string and a loss filter): then [`Synth::begin_lane`] sets it up.
    fn runs_beside(&self) -> bool {
        false
    }
    /// Sets up the string loop of the next `len` samples for
    /// [`run_lanes`], exactly as `render` would run it; the next `render`
    /// of `len` samples then plays the lanes' output. `None`: `render` runs it alone.
    fn begin_lane<'a>(&self, _st: &'a mut OscState, _ctx: &SynthCtx, _len: usize) -> Option<plucked::Lane<'a>> {
        None
    }
}

/// A registered synth.
pub struct SynthEntry {
    pub name: &'static str,
    pub synth: &'static dyn Synth,
    /// One line for listings.
    pub about: &'static str,
    /// The useful range, lowest and highest MIDI note (what the library tests play).
    pub range: (u8, u8),
}

/// Every synth the engine has, by the name sets use.
pub static SYNTHS: &[SynthEntry] = &[
    SynthEntry { name: "sine", synth: &basic::Sine, about: "pure sine", range: (24, 108) },
    SynthEntry {
        name: "saw",
        synth: &basic::Wave(basic::WaveKind::Saw),
        about: "band-limited sawtooth",
        range: (24, 108),
    },
    SynthEntry {
        name: "triangle",
        synth: &basic::Wave(basic::WaveKind::Triangle),
        about: "band-limited triangle",
        range: (24, 108),
    },
    SynthEntry {
        name: "square",
        synth: &basic::Wave(basic::WaveKind::Square),
        about: "band-limited square",
        range: (24, 108),
    },
    SynthEntry { name: "pulse", synth: &basic::Pulse, about: "band-limited pulse, 25% duty", range: (24, 108) },
    SynthEntry {
        name: "pwm_slow",
        synth: &basic::Pwm { rate_hz: 0.3 },
        about: "pulse-width modulation, 0.3 Hz sweep",
        range: (24, 108),
    },
    SynthEntry {
        name: "pwm_fast",
        synth: &basic::Pwm { rate_hz: 3.0 },
        about: "pulse-width modulation, 3 Hz sweep",
        range: (24, 108),
    },
    SynthEntry { name: "fm", synth: &fm::Fm, about: "two-operator FM (fm_ratio, fm_index)", range: (24, 96) },
    SynthEntry {
        name: "supersaw",
        synth: &supersaw::Supersaw,
        about: "seven saws spread over +/-15 cents",
        range: (24, 108),
    },
    SynthEntry { name: "noise", synth: &noise::Noise, about: "white noise", range: (24, 108) },
    SynthEntry { name: "organ_synth", synth: &organ::Organ, about: "additive drawbar organ", range: (24, 96) },
    SynthEntry { name: "pluck_synth", synth: &pluck::Pluck, about: "Karplus-Strong plucked string", range: (28, 96) },
    // keys and mallets (keys.rs)
    SynthEntry { name: "piano_synth", synth: &keys::Piano, about: "stiff-string modal piano", range: (21, 108) },
    SynthEntry { name: "rhodes_synth", synth: &keys::Rhodes, about: "tine electric piano", range: (28, 103) },
    SynthEntry { name: "wurlitzer_synth", synth: &keys::Wurlitzer, about: "reed electric piano", range: (28, 103) },
    SynthEntry { name: "vibraphone_synth", synth: &keys::Vibraphone, about: "vibes, motor tremolo", range: (53, 89) },
    SynthEntry { name: "marimba_synth", synth: &keys::Marimba, about: "marimba bar and mallet", range: (45, 96) },
    SynthEntry { name: "kalimba_synth", synth: &keys::Kalimba, about: "kalimba tine and body", range: (48, 88) },
    SynthEntry { name: "steel_drum_synth", synth: &keys::SteelDrum, about: "steel pan with mallet", range: (52, 88) },
    SynthEntry { name: "timpani_synth", synth: &keys::Timpani, about: "timpani and kettle", range: (38, 57) },
    SynthEntry { name: "crotales_synth", synth: &keys::Crotales, about: "bright ringing discs", range: (72, 108) },
    SynthEntry { name: "tingsha_synth", synth: &keys::Tingsha, about: "tingsha: beating cymbals", range: (72, 100) },
    SynthEntry { name: "singing_bowl_strike_synth", synth: &keys::BowlStrike, about: "struck bowl", range: (36, 84) },
    SynthEntry { name: "singing_bowl_ring_synth", synth: &keys::BowlRing, about: "rubbed bowl", range: (36, 84) },
    SynthEntry { name: "harp_synth", synth: &keys::Harp, about: "harmonics + plucked string", range: (24, 103) },
    // bowed strings, organs and voices (bowed.rs)
    SynthEntry {
        name: "strings_synth",
        synth: &bowed::STRINGS,
        about: "bowed strings: additive, body resonances, vibrato",
        range: (28, 103),
    },
    SynthEntry {
        name: "cello_synth",
        synth: &bowed::CELLO,
        about: "cello: additive, low body resonances, vibrato",
        range: (36, 76),
    },
    SynthEntry {
        name: "pipe_organ_synth",
        synth: &bowed::PipeOrgan,
        about: "pipe organ: principal and octave ranks, chiff",
        range: (24, 96),
    },
    SynthEntry {
        name: "choir_synth",
        synth: &bowed::Choir,
        about: "choir: harmonic source through vowel formants (vowel)",
        range: (40, 84),
    },
    SynthEntry {
        name: "vocal_synth",
        synth: &bowed::Vocal,
        about: "solo voice: glottal pulse, five formants (vowel), jitter",
        range: (40, 84),
    },
    SynthEntry {
        name: "harmonium_synth",
        synth: &bowed::Harmonium,
        about: "harmonium: reed harmonics, nasal band-pass",
        range: (36, 96),
    },
    SynthEntry {
        name: "accordion_synth",
        synth: &bowed::Accordion,
        about: "accordion: two reeds 8 cents apart (musette)",
        range: (41, 93),
    },
    SynthEntry {
        name: "didgeridoo_synth",
        synth: &bowed::Didgeridoo,
        about: "didgeridoo: buzz with a sweeping formant",
        range: (28, 52),
    },
    // winds and reeds (winds.rs)
    SynthEntry { name: "flute_synth", synth: &winds::Flute, about: "flute: odd harmonics, breath", range: (60, 96) },
    SynthEntry { name: "trumpet_synth", synth: &winds::Trumpet, about: "trumpet, bell resonance", range: (52, 84) },
    SynthEntry { name: "clarinet_synth", synth: &winds::Clarinet, about: "clarinet, odd harmonics", range: (50, 91) },
    SynthEntry { name: "oboe_synth", synth: &winds::Oboe, about: "oboe: nasal harmonics, reed", range: (58, 91) },
    SynthEntry { name: "saxophone_synth", synth: &winds::Saxophone, about: "sax, reed and formants", range: (44, 81) },
    SynthEntry { name: "pedal_steel_synth", synth: &winds::PedalSteel, about: "pedal steel", range: (40, 88) },
    SynthEntry { name: "theremin_synth", synth: &winds::Theremin, about: "theremin: sine, vibrato", range: (36, 96) },
    SynthEntry { name: "bagpipe_synth", synth: &winds::Bagpipe, about: "bagpipe chanter, reedy", range: (55, 81) },
    // plucked strings (plucked.rs)
    SynthEntry {
        name: "bass_guitar_synth",
        synth: &plucked::BassGuitar,
        about: "plucked electric bass (Karplus-Strong)",
        range: (28, 67),
    },
    SynthEntry {
        name: "harpsichord_synth",
        synth: &plucked::Harpsichord,
        about: "harpsichord: bright pluck with quill chiff",
        range: (29, 89),
    },
    SynthEntry {
        name: "upright_bass_synth",
        synth: &plucked::UprightBass,
        about: "pizzicato upright bass with wooden body",
        range: (28, 67),
    },
    SynthEntry {
        name: "banjo_synth",
        synth: &plucked::Banjo,
        about: "banjo: bright pluck, drum-head body",
        range: (48, 84),
    },
    SynthEntry {
        name: "mandolin_synth",
        synth: &plucked::Mandolin,
        about: "mandolin: two detuned strings per course",
        range: (55, 93),
    },
    SynthEntry {
        name: "ukulele_synth",
        synth: &plucked::Ukulele,
        about: "ukulele: soft nylon pluck, small body",
        range: (60, 84),
    },
    SynthEntry {
        name: "acoustic_guitar_synth",
        synth: &plucked::AcousticGuitar,
        about: "steel-string acoustic guitar with body",
        range: (40, 88),
    },
    SynthEntry {
        name: "sitar_synth",
        synth: &plucked::Sitar,
        about: "sitar: buzzing bridge, chikari, sympathetic strings",
        range: (48, 84),
    },
    SynthEntry {
        name: "oud_synth",
        synth: &plucked::Oud,
        about: "oud: two unison strings, deep body",
        range: (40, 76),
    },
    SynthEntry {
        name: "electric_guitar_synth",
        synth: &plucked::ElectricGuitar,
        about: "electric guitar string with pickup comb",
        range: (40, 88),
    },
    // synthesizers (synths.rs)
    SynthEntry {
        name: "mellotron_synth",
        synth: &synths::Mellotron,
        about: "tape replay: strings, flute or choir tape (tape), wow and flutter, hiss",
        range: (36, 96),
    },
    SynthEntry {
        name: "hard_sync",
        synth: &synths::HardSync,
        about: "PolyBLEP saw hard-synced to the note (sync_ratio)",
        range: (24, 96),
    },
    SynthEntry {
        name: "ring_mod",
        synth: &synths::RingMod,
        about: "ring modulation of two sines (ring_ratio): sum and difference tones",
        range: (36, 96),
    },
    SynthEntry {
        name: "wavefold",
        synth: &synths::Wavefold,
        about: "triangle-folded sine (folds), anti-aliased",
        range: (24, 96),
    },
    SynthEntry {
        name: "drift",
        synth: &synths::Drift,
        about: "analog VCO with slow pitch drift (drift_amount, drift_shape)",
        range: (24, 96),
    },
    SynthEntry {
        name: "granular_synth",
        synth: &synths::Granular,
        about: "Hann-windowed saw grains (grain_size, grain_density, grain_scatter, grain_pitch_var)",
        range: (36, 96),
    },
];

/// The registry index of a synth name.
pub fn synth_index(name: &str) -> Option<usize> {
    SYNTHS.iter().position(|s| s.name == name)
}

/// The detune copies' pitch ratio `2^(cents / 1200)` for [`with_detune`] (the upper
/// copy's; the lower one's is its inverse), or `None` while the detune is 0. The
/// library's `exp2` runs only when the detune changes.
#[inline]
pub fn detune_ratio(st: &mut OscState, ctx: &SynthCtx) -> Option<f64> {
    let cents = ctx.param(Param::Detune) as f64;
    if cents <= 0.0 {
        return None;
    }
    if st.detune.0.to_bits() != cents.to_bits() {
        st.detune = (cents, (cents / 1200.0).exp2());
    }
    Some(st.detune.1)
}

/// While the detune is 0 (see [`with_detune`]): the two extra copies' phases follow
/// the main copy's, the first `phases_per_copy`.
#[inline]
pub fn track_main_copy(st: &mut OscState, phases_per_copy: usize) {
    let (main, rest) = st.phase.split_at_mut(phases_per_copy);
    for copy in rest.chunks_exact_mut(phases_per_copy).take(2) {
        copy.copy_from_slice(main);
    }
}

/// Renders a phase-based oscillator with the `detune` layers: the main copy, and
/// with detune two more at +/- `detune` cents, averaged. `each` renders one copy
/// from its `phases` slice at increment `inc`, adding (`add`) or overwriting.
/// While detune is 0 the extra copies track the main one, so turning detune up
/// starts from the same sound (no step).
#[inline]
pub fn with_detune(
    st: &mut OscState,
    ctx: &SynthCtx,
    out: &mut [f32],
    phases_per_copy: usize,
    mut each: impl FnMut(&mut [u32], f64, &mut [f32], bool),
) {
    let Some(ratio) = detune_ratio(st, ctx) else {
        each(&mut st.phase[..phases_per_copy], ctx.freq_hz, out, false);
        track_main_copy(st, phases_per_copy);
        return;
    };
    let (main, rest) = st.phase.split_at_mut(phases_per_copy);
    each(main, ctx.freq_hz, out, false);
    let (up, rest) = rest.split_at_mut(phases_per_copy);
    each(up, ctx.freq_hz * ratio, out, true);
    each(&mut rest[..phases_per_copy], ctx.freq_hz / ratio, out, true);
    for x in out.iter_mut() {
        *x *= 1.0 / 3.0;
    }
}
