//! The preset library a set evaluates against: instruments, envelopes, drum-sound
//! names, drum patterns, fills and the General MIDI program map. The stdlib fills
//! it (evaluated once, at start-up); a set may add to or override it for its own
//! evaluation. Control thread.

use crate::params::Param;
use std::collections::BTreeMap;

/// The stdlib's files, embedded so that the binary works from anywhere. Each holds
/// only calls with literal arguments, which start-up reads without Rhai's parser
/// ([`super::literal`]); a file that holds more is evaluated by Rhai, more slowly.
pub const STDLIB: &[(&str, &str)] = &[
    ("stdlib/envelopes.rhai", include_str!("../../stdlib/envelopes.rhai")),
    ("stdlib/instruments.rhai", include_str!("../../stdlib/instruments.rhai")),
    ("stdlib/drums.rhai", include_str!("../../stdlib/drums.rhai")),
    ("stdlib/patterns.rhai", include_str!("../../stdlib/patterns.rhai")),
    ("stdlib/fills.rhai", include_str!("../../stdlib/fills.rhai")),
    ("stdlib/gm.rhai", include_str!("../../stdlib/gm.rhai")),
];

/// Stdlib modules a set may `import` by name.
pub const STDLIB_MODULES: &[(&str, &str)] = &[("music", include_str!("../../stdlib/music.rhai"))];

/// An instrument preset: a synth, an envelope and parameter values.
#[derive(Clone, Debug, PartialEq)]
pub struct InstrumentDef {
    pub synth: String,
    pub envelope: Option<String>,
    pub params: Vec<(Param, f32)>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EnvelopeDef {
    pub attack: f32,
    pub decay: f32,
    pub sustain: f32,
    pub release: f32,
}

/// One hit of a library pattern: a drum sound (by note) or a pitched note.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LibHit {
    pub beat: f64,
    pub note: u8,
    pub velocity: u8,
    /// Length in beats; `None` = the default.
    pub length: Option<f64>,
    /// Whether `note` came from a drum-sound name.
    pub drum: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct PatternDef {
    pub beats: f64,
    /// Time signature, for display ("6/8").
    pub meter: Option<String>,
    pub hits: Vec<LibHit>,
}

#[derive(Clone, Debug, Default)]
pub struct Library {
    pub instruments: BTreeMap<String, InstrumentDef>,
    pub envelopes: BTreeMap<String, EnvelopeDef>,
    /// Drum sound names (and aliases) to MIDI notes.
    pub drum_sounds: BTreeMap<String, u8>,
    pub patterns: BTreeMap<String, PatternDef>,
    pub fills: BTreeMap<String, PatternDef>,
    /// GM program number to instrument name.
    pub gm: BTreeMap<u8, String>,
    /// The useful range of an instrument preset, lowest and highest MIDI note, where
    /// the preset names one (otherwise its synth's): what its loudness is matched over.
    pub ranges: BTreeMap<String, (u8, u8)>,
}

impl Library {
    /// The drum sound name for a note (the first name defined for it).
    pub fn drum_name(&self, note: u8) -> Option<&str> {
        self.drum_sounds.iter().find(|(_, n)| **n == note).map(|(k, _)| k.as_str())
    }
}

/// Canonical form of a drum or pattern lookup key: lower case, `-` and spaces as `_`
/// for drum names.
pub fn drum_key(name: &str) -> String {
    name.trim().to_lowercase().replace(['-', ' '], "_")
}
