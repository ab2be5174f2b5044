//! A set as plain data: what evaluating `set.rhai` yields. No engine types beyond
//! parameter values; comparing two sets tells what a reload changes.

use crate::engine::snapshot::MasterConfig;
use crate::params::{Param, ParamValues};
use std::collections::BTreeMap;

pub use crate::engine::sync::SyncMode;

/// What a channel plays.
#[derive(Clone, Debug, PartialEq)]
pub enum ChannelKind {
    /// A synth by name (its options are parameters).
    Synth {
        synth: String,
    },
    Drums,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ChannelSpec {
    /// The preset (or synth) name the channel was declared with, for display.
    pub instrument: String,
    pub kind: ChannelKind,
    pub params: ParamValues,
    pub voices: u8,
}

impl ChannelSpec {
    pub fn is_drums(&self) -> bool {
        self.kind == ChannelKind::Drums
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CcSpec {
    pub cc: u8,
    pub param: Param,
    pub min: f32,
    pub max: f32,
    /// 1-based channel; `None`: the channel the CC arrives on, or every channel
    /// when `any` is set.
    pub channel: Option<u8>,
    /// With no channel: the knob moves every channel, whatever channel it is sent on.
    pub any: bool,
    pub exponential: bool,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HitSpec {
    pub beat: f64,
    pub note: u8,
    pub velocity: u8,
    pub length: f64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct PatternSpec {
    pub name: String,
    /// 1-based channel.
    pub channel: u8,
    pub length_beats: f64,
    pub hits: Vec<HitSpec>,
    /// The preset it came from, if any (for display).
    pub preset: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Set {
    pub tempo_bpm: f64,
    pub beats_per_bar: f64,
    pub sync: SyncMode,
    /// By 1-based MIDI channel.
    pub channels: BTreeMap<u8, ChannelSpec>,
    pub cc_map: Vec<CcSpec>,
    /// By name.
    pub patterns: BTreeMap<String, PatternSpec>,
    pub master: MasterConfig,
    /// What each General MIDI program change selects (programs whose synth is
    /// available), from the library's GM map.
    pub programs: BTreeMap<u8, ChannelSpec>,
}

impl Default for Set {
    fn default() -> Self {
        Set {
            tempo_bpm: 120.0,
            beats_per_bar: 4.0,
            sync: SyncMode::Internal,
            channels: BTreeMap::new(),
            cc_map: Vec::new(),
            patterns: BTreeMap::new(),
            master: MasterConfig::default(),
            programs: BTreeMap::new(),
        }
    }
}
