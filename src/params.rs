//! The channel parameter table: every parameter a set, a CC map or the REPL can
//! reach, with its unit, range and default. Pure data, shared by every thread; the
//! engine reads values by [`Param`] index from fixed-size arrays.

use std::fmt;

/// How a parameter's value is read.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Kind {
    /// A number in `min..=max`.
    Number { min: f32, max: f32 },
    /// A frequency in Hz, where 0 means "off"; otherwise in `min..=max`.
    Cutoff { min: f32, max: f32 },
    /// One of a fixed list of names, stored as its index.
    Choice(&'static [&'static str]),
    /// On or off, stored as 1.0 or 0.0.
    Toggle,
}

/// Where a parameter acts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// The channel bus (effects, volume, pan): glides on every change.
    Bus,
    /// The voices (oscillator layers, envelope, pitch): read by sounding voices.
    Voice,
}

/// One row of the table.
#[derive(Clone, Copy, Debug)]
pub struct ParamInfo {
    pub name: &'static str,
    pub unit: &'static str,
    pub kind: Kind,
    pub default: f32,
    pub scope: Scope,
    /// Whether the engine renders it yet; others are kept (presets carry them) but silent.
    pub rendered: bool,
    /// Exponential CC curve by default (frequencies and times).
    pub exponential: bool,
    pub doc: &'static str,
}

/// Reverb characters a preset can ask for.
pub const REVERB_TYPES: &[&str] =
    &["algorithmic", "plate", "hall", "cathedral", "spring", "cave", "parking_garage", "canyon", "taj_mahal"];

/// Oscillator shapes of the drift synth.
pub const DRIFT_SHAPES: &[&str] = &["saw", "square", "triangle", "pulse"];

/// Mellotron tapes.
pub const TAPES: &[&str] = &["strings", "flute", "choir"];

/// Vowels of the choir and vocal synths.
pub const VOWELS: &[&str] = &["ah", "ee", "oh", "oo", "eh"];

/// The keys of a preset's `synth_kw` map and the parameters they set.
pub const SYNTH_KW: &[(&str, Param)] = &[
    ("slave_ratio", Param::SyncRatio),
    ("mod_ratio", Param::RingRatio),
    ("folds", Param::Folds),
    ("drift_amount", Param::DriftAmount),
    ("shape", Param::DriftShape),
    ("tape", Param::Tape),
    ("vowel", Param::Vowel),
    ("lyric", Param::Vowel),
    ("grain_size", Param::GrainSize),
    ("density", Param::GrainDensity),
    ("scatter", Param::GrainScatter),
    ("pitch_var", Param::GrainPitchVar),
];

macro_rules! params {
    ($( $id:ident = $name:literal, $unit:literal, $kind:expr, $default:expr, $scope:ident, $rendered:literal, $exp:literal, $doc:literal; )*) => {
        /// A channel parameter, by index into [`PARAMS`].
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u8)]
        pub enum Param { $( $id, )* }

        /// Every parameter, in [`Param`] order.
        pub const PARAMS: &[ParamInfo] = &[ $( ParamInfo {
            name: $name, unit: $unit, kind: $kind, default: $default as f32,
            scope: Scope::$scope, rendered: $rendered, exponential: $exp, doc: $doc,
        }, )* ];

        impl Param {
            /// Every parameter, in index order.
            pub const ALL: &'static [Param] = &[ $( Param::$id, )* ];
        }
    };
}

use Kind::*;

params! {
    Volume = "volume", "", Number { min: 0.0, max: 1.0 }, 0.6, Bus, true, false, "channel fader (linear gain)";
    Pan = "pan", "", Number { min: -1.0, max: 1.0 }, 0.0, Bus, true, false, "stereo position, -1 left .. 1 right (constant power)";
    Level = "level", "dB", Number { min: -40.0, max: 24.0 }, 0.0, Bus, true, false, "level trim after the effects, before the fader (the library's presets are matched in loudness with it)";
    Distortion = "distortion", "", Number { min: 0.0, max: 1.0 }, 0.0, Bus, true, false, "distortion amount (wet mix and extra gain)";
    DistortionDrive = "distortion_drive", "", Number { min: 1.0, max: 20.0 }, 3.0, Bus, true, false, "gain into the distortion stage";
    Saturation = "saturation", "", Number { min: 0.0, max: 1.0 }, 0.0, Bus, true, false, "soft tape-style saturation";
    TremoloDepth = "tremolo_depth", "", Number { min: 0.0, max: 1.0 }, 0.0, Bus, true, false, "tremolo depth";
    TremoloRate = "tremolo_rate", "Hz", Number { min: 0.05, max: 20.0 }, 5.0, Bus, true, true, "tremolo speed";
    Chorus = "chorus", "", Number { min: 0.0, max: 1.0 }, 0.0, Bus, true, false, "chorus mix";
    ChorusRate = "chorus_rate", "Hz", Number { min: 0.05, max: 10.0 }, 1.5, Bus, true, true, "chorus speed";
    ChorusDepth = "chorus_depth", "s", Number { min: 0.0, max: 0.01 }, 0.003, Bus, true, false, "chorus sweep depth";
    Phaser = "phaser", "", Number { min: 0.0, max: 1.0 }, 0.0, Bus, true, false, "phaser mix";
    PhaserRate = "phaser_rate", "Hz", Number { min: 0.02, max: 10.0 }, 0.5, Bus, true, true, "phaser sweep speed";
    Highpass = "highpass", "Hz", Cutoff { min: 10.0, max: 20000.0 }, 0.0, Bus, true, true, "high-pass cutoff (0 = off)";
    HighpassQ = "highpass_q", "", Number { min: 0.1, max: 20.0 }, 0.707, Bus, true, false, "high-pass resonance";
    Lowpass = "lowpass", "Hz", Cutoff { min: 10.0, max: 20000.0 }, 0.0, Bus, true, true, "low-pass cutoff (0 = off)";
    LowpassQ = "lowpass_q", "", Number { min: 0.1, max: 20.0 }, 0.707, Bus, true, false, "low-pass resonance (0.707 = flat)";
    Delay = "delay", "", Number { min: 0.0, max: 1.0 }, 0.0, Bus, true, false, "echo mix";
    DelayTime = "delay_time", "s", Number { min: 0.001, max: 2.0 }, 0.375, Bus, true, true, "time between echoes";
    DelayFeedback = "delay_feedback", "", Number { min: 0.0, max: 0.95 }, 0.4, Bus, true, false, "echo feedback (how many repeats)";
    Reverb = "reverb", "", Number { min: 0.0, max: 1.0 }, 0.0, Bus, true, false, "reverb mix";
    ReverbDecay = "reverb_decay", "s", Number { min: 0.1, max: 20.0 }, 1.0, Bus, true, true, "reverb decay time (to -60 dB); for a reverb_type other than algorithmic, a scale of the type's own time (1 = as the type)";
    ReverbType = "reverb_type", "", Choice(REVERB_TYPES), 0.0, Bus, true, false, "reverb character: its decay time (scaled by reverb_decay over 1 s) and darkness";
    Attack = "attack", "s", Number { min: 0.0, max: 20.0 }, 0.005, Voice, true, true, "envelope attack time";
    Decay = "decay", "s", Number { min: 0.0, max: 20.0 }, 0.1, Voice, true, true, "envelope decay time (to the sustain level)";
    Sustain = "sustain", "", Number { min: 0.0, max: 1.0 }, 0.4, Voice, true, false, "envelope sustain level (0 = percussive)";
    Release = "release", "s", Number { min: 0.0, max: 30.0 }, 0.15, Voice, true, true, "envelope release time after note-off";
    Detune = "detune", "cents", Number { min: 0.0, max: 100.0 }, 0.0, Voice, true, false, "two extra oscillators detuned by +/- this much";
    SubOsc = "sub_osc", "", Number { min: 0.0, max: 1.0 }, 0.0, Voice, true, false, "sine one octave below";
    NoiseMix = "noise_mix", "", Number { min: 0.0, max: 1.0 }, 0.0, Voice, true, false, "white noise layer";
    FmRatio = "fm_ratio", "", Number { min: 0.01, max: 32.0 }, 2.0, Voice, true, false, "FM modulator frequency ratio";
    FmIndex = "fm_index", "", Number { min: 0.0, max: 50.0 }, 3.0, Voice, true, false, "FM modulation index (brightness)";
    SyncRatio = "sync_ratio", "", Number { min: 1.0, max: 16.0 }, 1.5, Voice, true, false, "hard sync: slave oscillator frequency ratio";
    RingRatio = "ring_ratio", "", Number { min: 0.01, max: 32.0 }, 1.5, Voice, true, false, "ring modulation: modulator frequency ratio";
    Folds = "folds", "", Number { min: 0.5, max: 20.0 }, 3.0, Voice, true, false, "wavefolder drive (how many folds)";
    DriftAmount = "drift_amount", "", Number { min: 0.0, max: 4.0 }, 0.15, Voice, true, false, "drift synth: depth of the slow pitch wander";
    DriftShape = "drift_shape", "", Choice(DRIFT_SHAPES), 0.0, Voice, true, false, "drift synth: oscillator shape";
    Tape = "tape", "", Choice(TAPES), 0.0, Voice, true, false, "mellotron tape";
    Vowel = "vowel", "", Choice(VOWELS), 0.0, Voice, true, false, "choir and vocal synths: the vowel sung";
    GrainSize = "grain_size", "s", Number { min: 0.005, max: 0.5 }, 0.04, Voice, true, true, "granular synth: grain length";
    GrainDensity = "grain_density", "grains/s", Number { min: 1.0, max: 400.0 }, 50.0, Voice, true, true, "granular synth: grains per second";
    GrainScatter = "grain_scatter", "", Number { min: 0.0, max: 1.0 }, 0.5, Voice, true, false, "granular synth: random spread of grain positions";
    GrainPitchVar = "grain_pitch_var", "cents", Number { min: 0.0, max: 1200.0 }, 12.0, Voice, true, false, "granular synth: random pitch spread of grains";
    KeyLevelLow = "key_level_low", "dB/octave", Number { min: -12.0, max: 12.0 }, 0.0, Voice, true, false, "keyboard level scaling: gain per octave below C4 (positive: louder toward the bass)";
    KeyLevelHigh = "key_level_high", "dB/octave", Number { min: -12.0, max: 12.0 }, 0.0, Voice, true, false, "keyboard level scaling: gain per octave above C4 (positive: louder toward the treble)";
    BendRange = "bend_range", "semitones", Number { min: 0.0, max: 48.0 }, 2.0, Voice, true, false, "pitch-bend range";
    Spread = "spread", "", Number { min: 0.0, max: 1.0 }, 0.0, Bus, true, false, "stereo width (a delayed side signal; the mono sum is unchanged)";
    Analog = "analog", "", Number { min: 0.0, max: 1.0 }, 0.0, Voice, true, false, "random per-note pitch drift";
    Glide = "glide", "s", Number { min: 0.0, max: 5.0 }, 0.0, Voice, true, true, "portamento time";
    Legato = "legato", "", Toggle, 0.0, Voice, true, false, "mono legato playing";
    VelToFilter = "vel_to_filter", "Hz", Number { min: 0.0, max: 20000.0 }, 0.0, Voice, true, false, "velocity opens the filter by this much";
    FilterAttack = "filter_attack", "s", Number { min: 0.0, max: 20.0 }, 0.01, Voice, true, true, "filter envelope attack";
    FilterDecay = "filter_decay", "s", Number { min: 0.0, max: 20.0 }, 0.3, Voice, true, true, "filter envelope decay";
    FilterSustain = "filter_sustain", "", Number { min: 0.0, max: 1.0 }, 0.0, Voice, true, false, "filter envelope sustain";
    FilterAmount = "filter_amount", "Hz", Number { min: -20000.0, max: 20000.0 }, 0.0, Voice, true, false, "filter envelope depth";
    Humanize = "humanize", "", Number { min: 0.0, max: 1.0 }, 0.0, Voice, false, false, "timing and velocity variation";
    Ensemble = "ensemble", "", Number { min: 1.0, max: 16.0 }, 1.0, Voice, false, false, "number of ensemble players";
    Cabinet = "cabinet", "", Number { min: 0.0, max: 1.0 }, 0.0, Bus, false, false, "guitar cabinet simulation";
    CabinetBrightness = "cabinet_brightness", "", Number { min: 0.0, max: 1.0 }, 0.5, Bus, false, false, "cabinet tone";
}

/// Number of parameters.
pub const NUM_PARAMS: usize = PARAMS.len();

impl Param {
    pub fn info(self) -> &'static ParamInfo {
        &PARAMS[self as usize]
    }

    pub fn name(self) -> &'static str {
        self.info().name
    }

    pub fn index(self) -> usize {
        self as usize
    }

    /// Looks a parameter up by its script name.
    pub fn from_name(name: &str) -> Option<Param> {
        Param::ALL.iter().copied().find(|p| p.name() == name)
    }

    /// Checks a value against the parameter's range; `Err` says what is allowed.
    pub fn check(self, value: f32) -> Result<f32, String> {
        let info = self.info();
        if !value.is_finite() {
            return Err(format!("{} must be a finite number", info.name));
        }
        let unit = if info.unit.is_empty() { String::new() } else { format!(" {}", info.unit) };
        match info.kind {
            Number { min, max } if !(min..=max).contains(&value) => {
                Err(format!("{} is {}, outside {}..{}{}", info.name, fmt_num(value), fmt_num(min), fmt_num(max), unit))
            }
            Cutoff { min, max } if value != 0.0 && !(min..=max).contains(&value) => Err(format!(
                "{} is {}, outside {}..{}{} (0 turns it off)",
                info.name,
                fmt_num(value),
                fmt_num(min),
                fmt_num(max),
                unit
            )),
            Choice(names) if value.fract() != 0.0 || value < 0.0 || value as usize >= names.len() => {
                Err(format!("{} must be one of {}", info.name, names.join(", ")))
            }
            Toggle if value != 0.0 && value != 1.0 => Err(format!("{} must be true or false", info.name)),
            _ => Ok(value),
        }
    }

    /// The value a CC position (0..=127) maps to between `min` and `max`.
    pub fn cc_value(min: f32, max: f32, exponential: bool, cc: u8) -> f32 {
        let x = cc.min(127) as f32 / 127.0;
        if exponential && min > 0.0 && max > 0.0 { min * (max / min).powf(x) } else { min + (max - min) * x }
    }
}

impl fmt::Display for Param {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Formats a number the way a musician writes it: `800`, `0.3`, `1.25`.
pub fn fmt_num(v: f32) -> String {
    if v == v.trunc() && v.abs() < 1e7 {
        format!("{}", v as i64)
    } else {
        let s = format!("{:.4}", v);
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// The parameter reference as a Markdown table (the set-language reference embeds
/// it; a test keeps the two identical).
pub fn reference_table() -> String {
    let mut s = String::from("| parameter | unit | range | default | what it does |\n|---|---|---|---|---|\n");
    for info in PARAMS {
        let range = match info.kind {
            Kind::Number { min, max } => format!("{}..{}", fmt_num(min), fmt_num(max)),
            Kind::Cutoff { min, max } => format!("0 (off) or {}..{}", fmt_num(min), fmt_num(max)),
            Kind::Choice(names) => names.join(", "),
            Kind::Toggle => "true, false".to_string(),
        };
        let default = match info.kind {
            Kind::Choice(names) => names[info.default as usize].to_string(),
            Kind::Toggle => (info.default != 0.0).to_string(),
            Kind::Cutoff { .. } if info.default == 0.0 => "0 (off)".to_string(),
            _ => fmt_num(info.default),
        };
        let note = if info.rendered { "" } else { " (kept, not rendered yet)" };
        s.push_str(&format!(
            "| `{}` | {} | {} | {} | {}{} |\n",
            info.name,
            if info.unit.is_empty() { "" } else { info.unit },
            range,
            default,
            info.doc,
            note
        ));
    }
    s
}

/// A full set of parameter values, indexed by [`Param`].
#[derive(Clone, Copy, PartialEq)]
pub struct ParamValues(pub [f32; NUM_PARAMS]);

impl Default for ParamValues {
    fn default() -> Self {
        let mut v = [0.0; NUM_PARAMS];
        for (slot, info) in v.iter_mut().zip(PARAMS) {
            *slot = info.default;
        }
        ParamValues(v)
    }
}

impl ParamValues {
    #[inline]
    pub fn get(&self, p: Param) -> f32 {
        self.0[p as usize]
    }

    #[inline]
    pub fn set(&mut self, p: Param, v: f32) {
        self.0[p as usize] = v;
    }
}

impl fmt::Debug for ParamValues {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut m = f.debug_map();
        for p in Param::ALL {
            m.entry(&p.name(), &self.get(*p));
        }
        m.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_consistent() {
        assert_eq!(Param::ALL.len(), NUM_PARAMS);
        for (i, p) in Param::ALL.iter().enumerate() {
            assert_eq!(p.index(), i);
            assert_eq!(Param::from_name(p.name()), Some(*p));
            assert!(p.check(p.info().default).is_ok(), "default of {p} out of range");
        }
    }

    #[test]
    fn range_errors_name_the_range() {
        assert_eq!(Param::Reverb.check(1.5).unwrap_err(), "reverb is 1.5, outside 0..1");
        assert_eq!(Param::Lowpass.check(5.0).unwrap_err(), "lowpass is 5, outside 10..20000 Hz (0 turns it off)");
        assert!(Param::Lowpass.check(0.0).is_ok());
    }

    #[test]
    fn cc_curves() {
        assert_eq!(Param::cc_value(0.0, 1.0, false, 127), 1.0);
        assert_eq!(Param::cc_value(200.0, 8000.0, true, 0), 200.0);
        assert!((Param::cc_value(200.0, 8000.0, true, 127) - 8000.0).abs() < 0.1);
        let mid = Param::cc_value(100.0, 10000.0, true, 64);
        assert!((mid - 1000.0).abs() / 1000.0 < 0.05);
    }
}
