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
    /// An external instrument: what the channel plays goes out through jamrig's
    /// MIDI output to `device` (a part of its port name), on MIDI channel
    /// `channel` (1-based).
    External {
        device: String,
        channel: u8,
    },
    /// A preset of a SoundFont the set registered (by the set's name for the font);
    /// `kit` when it is a percussion preset (bank 128).
    Sampled {
        font: String,
        preset: u16,
        kit: bool,
    },
    /// One of the set's own sample instruments, by name.
    SampleInstrument {
        name: String,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct ChannelSpec {
    /// The preset (or synth) name the channel was declared with, for display.
    pub instrument: String,
    pub kind: ChannelKind,
    pub params: ParamValues,
    pub voices: u16,
}

impl ChannelSpec {
    pub fn is_drums(&self) -> bool {
        matches!(self.kind, ChannelKind::Drums | ChannelKind::Sampled { kit: true, .. })
    }

    /// Whether the channel is an external instrument (MIDI out).
    pub fn is_external(&self) -> bool {
        matches!(self.kind, ChannelKind::External { .. })
    }
}

/// A SoundFont the set registered.
#[derive(Clone, Debug, PartialEq)]
pub struct FontSpec {
    pub path: std::path::PathBuf,
    pub bank: crate::samples::Shared<crate::tables::bank::SampleBank>,
}

/// How a user sample plays.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum SampleUse {
    /// A drum sound on `note` of drum channels, played to its end.
    Drum { note: u8 },
    /// An instrument over `lo..=hi`, sounding at its own pitch on `root`, looping
    /// between two frames of the file if given, shaped by the channel's envelope.
    Instrument { lo: u8, hi: u8, root: u8, loop_frames: Option<(u32, u32)> },
}

/// A sample file the set uses.
#[derive(Clone, Debug, PartialEq)]
pub struct UserSample {
    pub name: String,
    pub path: std::path::PathBuf,
    pub audio: crate::samples::Shared<crate::samples::decode::Decoded>,
    pub use_: SampleUse,
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
    /// MIDI output devices the set names, with their latency in ms (messages to
    /// a device leave that much earlier, so that a slow one sounds in time).
    pub midi_outs: BTreeMap<String, f32>,
    /// Send MIDI clock from the transport (`clock_out(true)`).
    pub clock_out: bool,
    /// SoundFonts by the set's name for them.
    pub fonts: BTreeMap<String, FontSpec>,
    /// The set's own samples, in the order declared.
    pub samples: Vec<UserSample>,
    /// Folders whose contents make numbered sample banks (watched for files coming and going).
    pub sample_folders: Vec<std::path::PathBuf>,
}

impl Set {
    /// How the set already spells the MIDI output device `name` (the first
    /// spelling seen, from an external channel or `midi_out`), or `name` itself:
    /// device names are matched without regard to case, as ports are, so
    /// `"OP-XY"` and `"op-xy"` are one device with one port.
    pub fn device_spelling(&self, name: &str) -> String {
        let want = name.to_lowercase();
        let same = |d: &str| d.to_lowercase() == want;
        let from_channels = self.channels.values().find_map(|spec| match &spec.kind {
            ChannelKind::External { device, .. } if same(device) => Some(device.clone()),
            _ => None,
        });
        from_channels.or_else(|| self.midi_outs.keys().find(|d| same(d)).cloned()).unwrap_or_else(|| name.to_string())
    }

    /// The MIDI output devices its external channels name, in channel order,
    /// once each (each gets an output port of its own).
    pub fn out_devices(&self) -> Vec<String> {
        let mut v: Vec<String> = Vec::new();
        for spec in self.channels.values() {
            if let ChannelKind::External { device, .. } = &spec.kind
                && !v.contains(device)
            {
                v.push(device.clone());
            }
        }
        v
    }
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
            midi_outs: BTreeMap::new(),
            clock_out: false,
            fonts: BTreeMap::new(),
            samples: Vec::new(),
            sample_folders: Vec::new(),
        }
    }
}
