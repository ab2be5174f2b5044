//! Turns a [`Set`] into an engine [`Snapshot`] (control side). This is where names
//! become indices and the pattern data takes its engine form; anything costly to
//! prepare for the audio thread is prepared here.

use super::set::{ChannelKind, Set, SyncMode};
use crate::engine::snapshot::{
    CcMapping, ChannelConfig, Hit, MAX_CHANNELS, PatternConfig, PatternSet, Snapshot, Source,
};
use crate::engine::synth::{SYNTHS, synth_index};
use std::hash::{Hash, Hasher};
use std::sync::Arc;

/// A set that cannot become a snapshot.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BuildError {
    #[error("channel {channel} plays {instrument}, whose synth \"{synth}\" jamrig does not have (it has: {available})")]
    UnknownSynth { channel: u8, instrument: String, synth: String, available: String },
    #[error("channel {0} is outside 1..16")]
    BadChannel(u8),
    #[error("pattern {name}: {reason}")]
    BadPattern { name: String, reason: String },
    #[error("the tempo {0} is outside 1..999 BPM")]
    BadTempo(f64),
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

/// Builds the snapshot for `set`. `previous` is the pattern set last published: if
/// the patterns are unchanged it is shared, so the engine sees "no change".
pub fn build(set: &Set, previous: Option<&Arc<PatternSet>>) -> Result<Snapshot, BuildError> {
    if !(1.0..=999.0).contains(&set.tempo_bpm) {
        return Err(BuildError::BadTempo(set.tempo_bpm));
    }
    for p in set.patterns.values() {
        check_pattern(p)?;
    }
    let mut snap = Snapshot::default();
    for (&ch, spec) in &set.channels {
        if !(1..=MAX_CHANNELS as u8).contains(&ch) {
            return Err(BuildError::BadChannel(ch));
        }
        let source = match &spec.kind {
            ChannelKind::Drums => Source::Drums,
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
    Ok(snap)
}
