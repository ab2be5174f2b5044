//! Turns a [`Set`] into an engine [`Snapshot`] (control side). This is where names
//! become indices and the pattern data takes its engine form; anything costly to
//! prepare for the audio thread is prepared here.

use super::set::{ChannelKind, Set, SyncMode};
use crate::engine::snapshot::{
    CcMapping, ChannelConfig, Hit, MAX_CHANNELS, PatternConfig, PatternSet, Snapshot, Source,
};
use crate::engine::synth::{SYNTHS, synth_index};
use crate::samples::store::UserBanks;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

/// A set that cannot become a snapshot.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BuildError {
    #[error("channel {channel} plays {instrument}, whose synth \"{synth}\" jamrig does not have (it has: {available})")]
    UnknownSynth { channel: u8, instrument: String, synth: String, available: String },
    #[error("channel {0} is outside 1..16")]
    BadChannel(u8),
    #[error(
        "channel {channel} plays the SoundFont \"{font}\", which the set has not registered (use soundfont(\"{font}\", \"FILE.sf2\") first)"
    )]
    UnknownFont { channel: u8, font: String },
    #[error("channel {channel} plays the sample instrument \"{name}\", which the set does not define")]
    UnknownSample { channel: u8, name: String },
    #[error("the set uses {0} sample banks; a set may use up to {max}", max = crate::engine::banks::MAX_SNAPSHOT_BANKS)]
    TooManyBanks(usize),
    #[error("a sample {0}")]
    Sample(String),
    #[error("pattern {name}: {reason}")]
    BadPattern { name: String, reason: String },
    #[error("the tempo {0} is outside 1..999 BPM")]
    BadTempo(f64),
    #[error("{0}")]
    OutDevices(String),
}

/// Checks the pattern data the sequencer will loop over: lengths, positions and
/// note lengths finite and in their ranges (whatever made the set: a script, a
/// capture, code).
fn check_pattern(p: &super::set::PatternSpec) -> Result<(), BuildError> {
    use crate::engine::sequencer::{MAX_HIT_LENGTH_BEATS, MAX_PATTERN_BEATS, MIN_PATTERN_BEATS};
    let bad = |reason: String| Err(BuildError::BadPattern { name: p.name.clone(), reason });
    if !(MIN_PATTERN_BEATS..=MAX_PATTERN_BEATS).contains(&p.length_beats) {
        return bad(format!("{} beats long; a pattern is 1/64 of a beat to {MAX_PATTERN_BEATS} beats", p.length_beats));
    }
    for h in &p.hits {
        if !h.beat.is_finite() || !(0.0..=MAX_HIT_LENGTH_BEATS).contains(&h.length) {
            return bad(format!("a hit at beat {} lasting {} beats is out of range", h.beat, h.length));
        }
    }
    Ok(())
}

/// Identifies an instrument: name and synth.
fn instrument_id(name: &str, kind: &ChannelKind) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    name.hash(&mut h);
    match kind {
        ChannelKind::Synth { synth } => synth.hash(&mut h),
        ChannelKind::Drums => "drums".hash(&mut h),
        ChannelKind::External { device, channel } => (device, channel).hash(&mut h),
        ChannelKind::Sampled { font, preset, .. } => (font, preset).hash(&mut h),
        ChannelKind::SampleInstrument { name } => ("sample", name).hash(&mut h),
    }
    h.finish()
}

fn channel_config(spec: &super::set::ChannelSpec, source: Source) -> ChannelConfig {
    ChannelConfig {
        source,
        instrument_id: instrument_id(&spec.instrument, &spec.kind),
        params: spec.params,
        voice_limit: spec.voices,
    }
}

/// The pattern set a set declares, in engine form.
pub fn pattern_set(set: &Set) -> PatternSet {
    let patterns = set
        .patterns
        .values()
        .filter(|p| set.channels.contains_key(&p.channel))
        .map(|p| {
            let mut hits: Vec<Hit> = p
                .hits
                .iter()
                .filter(|h| h.beat >= 0.0 && h.beat < p.length_beats)
                .map(|h| Hit { beat: h.beat, note: h.note, velocity: h.velocity, length: h.length })
                .collect();
            hits.sort_by(|a, b| a.beat.total_cmp(&b.beat));
            PatternConfig { name: p.name.clone(), channel: p.channel - 1, length_beats: p.length_beats, hits }
        })
        .collect();
    PatternSet { patterns }
}

/// The output port of each MIDI output device a set names (as the set spells it),
/// given by the host that made the ports. A device without one goes out on the
/// default port (`engine::midi_out::DEFAULT_PORT`).
pub type OutPorts = std::collections::BTreeMap<String, u8>;

/// Builds the snapshot for `set` (its own samples at 48 kHz: for checking a set;
/// a running engine builds with [`build_with`] at its own rate).
pub fn build(set: &Set, previous: Option<&Arc<PatternSet>>) -> Result<Snapshot, BuildError> {
    build_with(set, previous, &mut UserBanks::new(48_000), &OutPorts::new())
}

/// Builds the snapshot for `set`. `previous` is the pattern set last published: if
/// the patterns are unchanged it is shared, so the engine sees "no change". The
/// set's own samples are composed into a bank by `user` (at the engine's rate);
/// external channels go out on their device's port in `out_ports`.
pub fn build_with(
    set: &Set,
    previous: Option<&Arc<PatternSet>>,
    user: &mut UserBanks,
    out_ports: &OutPorts,
) -> Result<Snapshot, BuildError> {
    if !(1.0..=999.0).contains(&set.tempo_bpm) {
        return Err(BuildError::BadTempo(set.tempo_bpm));
    }
    for p in set.patterns.values() {
        check_pattern(p)?;
    }
    let devices = set.out_devices().len();
    if devices > crate::engine::midi_out::MAX_OUT_DEVICES {
        return Err(BuildError::OutDevices(format!(
            "the set names {devices} MIDI output devices, and jamrig makes a port for at most {}: send several channels to one device on different out channels",
            crate::engine::midi_out::MAX_OUT_DEVICES
        )));
    }
    let mut snap = Snapshot::default();
    // Banks: the registered fonts in name order, then the set's own samples.
    let font_index: std::collections::BTreeMap<&str, u8> =
        set.fonts.keys().enumerate().map(|(i, k)| (k.as_str(), i as u8)).collect();
    snap.banks = set.fonts.values().map(|f| f.bank.0.clone()).collect();
    let user_bank = user.bank(&set.samples).map_err(BuildError::Sample)?;
    let user_index = user_bank.as_ref().map(|b| {
        snap.banks.push(b.clone());
        (snap.banks.len() - 1) as u8
    });
    if snap.banks.len() > crate::engine::banks::MAX_SNAPSHOT_BANKS {
        return Err(BuildError::TooManyBanks(snap.banks.len()));
    }
    if let (Some(i), Some(b)) = (user_index, &user_bank)
        && b.presets.first().is_some_and(|p| !p.regions.is_empty())
    {
        snap.user_kit = Some((i, 0));
    }
    for (&ch, spec) in &set.channels {
        if !(1..=MAX_CHANNELS as u8).contains(&ch) {
            return Err(BuildError::BadChannel(ch));
        }
        let source = match &spec.kind {
            ChannelKind::Drums => Source::Drums,
            ChannelKind::External { device, channel } => Source::External {
                port: out_ports.get(device).copied().unwrap_or(crate::engine::midi_out::DEFAULT_PORT),
                channel: channel.saturating_sub(1) & 15,
                latency_ms: set.midi_outs.get(device).copied().unwrap_or(0.0),
            },
            ChannelKind::Sampled { font, preset, .. } => match font_index.get(font.as_str()) {
                Some(&bank) => Source::Sampled { bank, preset: *preset },
                None => return Err(BuildError::UnknownFont { channel: ch, font: font.clone() }),
            },
            ChannelKind::SampleInstrument { name } => {
                match (user_index, user_bank.as_ref().and_then(|b| b.find_name(name))) {
                    (Some(bank), Some(preset)) if preset > 0 => Source::Sampled { bank, preset },
                    _ => return Err(BuildError::UnknownSample { channel: ch, name: name.clone() }),
                }
            }
            ChannelKind::Synth { synth, .. } => match synth_index(synth) {
                Some(i) => Source::Synth(i as u16),
                None => {
                    return Err(BuildError::UnknownSynth {
                        channel: ch,
                        instrument: spec.instrument.clone(),
                        synth: synth.clone(),
                        available: SYNTHS.iter().map(|s| s.name).collect::<Vec<_>>().join(", "),
                    });
                }
            },
        };
        snap.channels[ch as usize - 1] = Some(channel_config(spec, source));
    }
    for (&program, spec) in &set.programs {
        if let ChannelKind::Synth { synth, .. } = &spec.kind
            && let (Some(i), Some(slot)) = (synth_index(synth), snap.programs.get_mut(program as usize))
        {
            *slot = Some(channel_config(spec, Source::Synth(i as u16)));
        }
    }
    snap.cc_map = set
        .cc_map
        .iter()
        .map(|c| CcMapping {
            cc: c.cc,
            channel: c.channel.map(|ch| ch - 1),
            any: c.any,
            param: c.param,
            min: c.min,
            max: c.max,
            exponential: c.exponential,
        })
        .collect();
    let patterns = pattern_set(set);
    snap.patterns = Some(match previous {
        Some(p) if **p == patterns => p.clone(),
        _ => Arc::new(patterns),
    });
    snap.tempo_bpm = set.tempo_bpm;
    snap.beats_per_bar = match set.sync {
        SyncMode::Link { quantum } => quantum,
        _ => set.beats_per_bar,
    };
    snap.master = set.master;
    snap.autoplay = set.sync == SyncMode::Internal;
    snap.sync = set.sync;
    snap.clock_out = set.clock_out;
    snap.plan_shared_reverbs();
    Ok(snap)
}
