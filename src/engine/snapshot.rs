//! The engine's configuration snapshot: built on the control side (by
//! `rig::build`), published atomically, read-only on the audio thread, and sent
//! back to the control side to be freed when the engine lets go of it.

use crate::params::{Param, ParamValues};
use std::sync::Arc;

/// MIDI channels.
pub const MAX_CHANNELS: usize = 16;

/// What a channel plays.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Source {
    /// A synth, by index into `engine::synth::SYNTHS`.
    Synth(u16),
    /// The drum kit: notes pick sounds (the set's own drum samples first, if any).
    Drums,
    /// An external instrument: what the channel plays goes out on output port
    /// `port` (its device's; `engine::midi_out::OUT_PORTS`), on MIDI channel
    /// `channel` (0-based), `latency_ms` earlier than the audio (a slow device).
    External { port: u8, channel: u8, latency_ms: f32 },
    /// A preset of a sample bank (a SoundFont preset, or a set's sample instrument):
    /// `bank` indexes the snapshot's `banks`, `preset` the bank's presets.
    Sampled { bank: u8, preset: u16 },
}

/// One channel of the rig.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ChannelConfig {
    pub source: Source,
    /// Identifies the instrument; when it changes, sounding notes finish on the old
    /// sound and new notes use the new one.
    pub instrument_id: u64,
    pub params: ParamValues,
    /// Most voices this channel sounds at once (further notes steal the oldest).
    pub voice_limit: u16,
}

/// A MIDI CC mapped to a channel parameter.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CcMapping {
    pub cc: u8,
    /// 0-based channel; `None`: the channel the CC arrives on, or every channel
    /// when `any` is set.
    pub channel: Option<u8>,
    pub any: bool,
    pub param: Param,
    pub min: f32,
    pub max: f32,
    pub exponential: bool,
}

/// One hit of a pattern.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Hit {
    /// Position in beats from the pattern's start.
    pub beat: f64,
    pub note: u8,
    pub velocity: u8,
    /// Length in beats (note patterns; drums ignore it).
    pub length: f64,
}

/// A looping pattern on one channel.
#[derive(Clone, Debug, PartialEq)]
pub struct PatternConfig {
    pub name: String,
    /// 0-based channel.
    pub channel: u8,
    pub length_beats: f64,
    /// Sorted by beat.
    pub hits: Vec<Hit>,
}

/// The patterns of a set: a new set of them takes over at the next bar.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PatternSet {
    pub patterns: Vec<PatternConfig>,
}

/// How the master bus keeps the output within full scale.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MasterMode {
    /// tanh soft clip.
    SoftClip,
    /// Peak limiter (fast attack, 100 ms release) at -0.3 dBFS.
    Limiter,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MasterConfig {
    /// Linear gain before the clipper or limiter.
    pub gain: f32,
    pub mode: MasterMode,
}

impl Default for MasterConfig {
    fn default() -> Self {
        MasterConfig { gain: 1.0, mode: MasterMode::SoftClip }
    }
}

/// Everything the audio thread needs to know about the rig.
#[derive(Clone, Debug)]
pub struct Snapshot {
    pub channels: [Option<ChannelConfig>; MAX_CHANNELS],
    pub cc_map: Vec<CcMapping>,
    /// Taken by the engine at adoption (the engine keeps the running set until the bar).
    pub patterns: Option<Arc<PatternSet>>,
    pub tempo_bpm: f64,
    /// Beats per bar: patterns switch on bar lines.
    pub beats_per_bar: f64,
    pub master: MasterConfig,
    /// Start the internal transport as soon as this snapshot is adopted, if stopped.
    pub autoplay: bool,
    /// Where the transport takes its time from.
    pub sync: crate::engine::sync::SyncMode,
    /// Send MIDI clock (24 ppqn, Start, Stop, Continue, Song Position) from the
    /// transport.
    pub clock_out: bool,
    /// Numbered by the publisher (0: the one the engine starts with), so that a
    /// session capture can say which snapshot was adopted when.
    pub serial: u64,
    /// What a program change selects, per General MIDI program (`None`: the preset's
    /// synth is not available, the program change is ignored).
    pub programs: [Option<ChannelConfig>; 128],
    /// The sample banks the channels play (at most `engine::banks::MAX_SNAPSHOT_BANKS`).
    pub banks: Vec<Arc<crate::tables::bank::SampleBank>>,
    /// The set's drum samples as a kit (bank index, preset): drum channels play its
    /// regions for the notes it covers, the built-in kit for the rest.
    pub user_kit: Option<(u8, u16)>,
    /// Per channel: the reverb it shares with other channels of the same reverb
    /// settings (`None`: its bus runs its own). Decided by [`Snapshot::plan_shared_reverbs`].
    pub shared_reverbs: [Option<SharedReverb>; MAX_CHANNELS],
}

impl Default for Snapshot {
    fn default() -> Self {
        Snapshot {
            channels: [None; MAX_CHANNELS],
            cc_map: Vec::new(),
            patterns: None,
            tempo_bpm: 120.0,
            beats_per_bar: 4.0,
            master: MasterConfig::default(),
            autoplay: false,
            sync: crate::engine::sync::SyncMode::Internal,
            clock_out: false,
            serial: 0,
            programs: [None; 128],
            banks: Vec::new(),
            user_kit: None,
            shared_reverbs: [None; MAX_CHANNELS],
        }
    }
}

/// Most reverbs a snapshot shares out (channels with further distinct settings run
/// their own).
pub const MAX_SHARED_REVERBS: usize = 4;

/// The settings that make channels' reverbs shareable: the same type and decay.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SharedReverb {
    pub reverb_type: f32,
    pub reverb_decay: f32,
}

impl Snapshot {
    /// Decides which channels share a reverb (control side). A channel's reverb is the
    /// last stage of its bus, followed only by volume and pan, which are linear: the
    /// channels whose reverb settings are the same can feed one reverb with their
    /// volume and centred pan applied before it, and the mix sounds as if each had its
    /// own (see `engine::sends`). Only synth and drum channels panned to the centre
    /// take part, whose reverb is on, and which no CC mapping can re-pan or give
    /// another reverb type or decay; a setting shared by a single channel stays
    /// with its own bus.
    pub fn plan_shared_reverbs(&mut self) {
        let moved = |ch: usize, p: Param| {
            self.cc_map.iter().any(|m| m.param == p && m.channel.is_none_or(|c| c as usize == ch))
        };
        let mut keys = [None; MAX_CHANNELS];
        for (ch, key) in keys.iter_mut().enumerate() {
            let Some(c) = &self.channels[ch] else { continue };
            let p = &c.params;
            if matches!(c.source, Source::Synth(_) | Source::Drums)
                && p.get(Param::Reverb) > 0.0
                && p.get(Param::Pan) == 0.0
                && ![Param::Pan, Param::ReverbType, Param::ReverbDecay].into_iter().any(|q| moved(ch, q))
            {
                *key = Some(SharedReverb {
                    reverb_type: p.get(Param::ReverbType),
                    reverb_decay: p.get(Param::ReverbDecay),
                });
            }
        }
        let mut groups = 0;
        self.shared_reverbs = [None; MAX_CHANNELS];
        for ch in 0..MAX_CHANNELS {
            let Some(k) = keys[ch] else { continue };
            if (0..ch).any(|c| keys[c] == Some(k)) {
                continue; // Its group was formed at its first channel.
            }
            let members = (ch..MAX_CHANNELS).filter(|&c| keys[c] == Some(k)).count();
            if members < 2 || groups == MAX_SHARED_REVERBS {
                continue;
            }
            groups += 1;
            for (shared, key) in self.shared_reverbs.iter_mut().zip(&keys).skip(ch) {
                if *key == Some(k) {
                    *shared = Some(k);
                }
            }
        }
    }
}
