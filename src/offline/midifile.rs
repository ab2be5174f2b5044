//! Reads a Standard MIDI File (type 0 or 1; tempo changes; running status, which
//! midly resolves) into engine events at absolute frames. Control thread.

use crate::engine::event::{Event, EventKind};
use midly::{MetaMessage, MidiMessage, Smf, Timing, TrackEventKind};

/// A MIDI file that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum MidiFileError {
    #[error("{path} is not a valid MIDI file: {reason}")]
    Parse { path: String, reason: String },
    #[error("{0}")]
    Unusable(String),
    #[error("{path} uses type 2 (independent sequences), which jamrig does not play")]
    Type2 { path: String },
}

/// The events of `bytes` at `sample_rate`, sorted by frame, and the frame at which
/// the file ends.
pub fn events_from_bytes(bytes: &[u8], path: &str, sample_rate: f64) -> Result<(Vec<Event>, u64), MidiFileError> {
    let smf = Smf::parse(bytes).map_err(|e| MidiFileError::Parse { path: path.into(), reason: e.to_string() })?;
    if smf.header.format == midly::Format::Sequential {
        return Err(MidiFileError::Type2 { path: path.into() });
    }
    // Absolute ticks of every event, all tracks merged.
    let mut timed: Vec<(u64, usize, TrackEventKind)> = Vec::new();
    for track in &smf.tracks {
        let mut tick = 0u64;
        for ev in track {
            tick += ev.delta.as_int() as u64;
            timed.push((tick, timed.len(), ev.kind));
        }
    }
    timed.sort_by_key(|(t, i, _)| (*t, *i));
    let seconds_per_tick_at = |us_per_beat: f64| -> f64 {
        match smf.header.timing {
            Timing::Metrical(tpb) => us_per_beat / 1e6 / tpb.as_int().max(1) as f64,
            Timing::Timecode(fps, sub) => 1.0 / (fps.as_f32() as f64 * sub.max(1) as f64),
        }
    };
    let mut us_per_beat = 500_000.0;
    let (mut last_tick, mut seconds) = (0u64, 0.0f64);
    let mut out = Vec::new();
    let mut end = 0u64;
    for (tick, _, kind) in timed {
        seconds += (tick - last_tick) as f64 * seconds_per_tick_at(us_per_beat);
        last_tick = tick;
        let frame = (seconds * sample_rate).round() as u64;
        end = end.max(frame);
        let ev = match kind {
            TrackEventKind::Meta(MetaMessage::Tempo(t)) => {
                us_per_beat = t.as_int() as f64;
                continue;
            }
            TrackEventKind::Midi { channel, message } => {
                let channel = channel.as_int();
                match message {
                    MidiMessage::NoteOn { key, vel } if vel.as_int() > 0 => {
                        EventKind::NoteOn { channel, note: key.as_int(), velocity: vel.as_int() }
                    }
                    MidiMessage::NoteOn { key, .. } | MidiMessage::NoteOff { key, .. } => {
                        EventKind::NoteOff { channel, note: key.as_int() }
                    }
                    MidiMessage::Controller { controller, value } => {
                        EventKind::Control { channel, cc: controller.as_int(), value: value.as_int() }
                    }
                    MidiMessage::PitchBend { bend } => EventKind::PitchBend { channel, value: bend.as_int() },
                    MidiMessage::ProgramChange { program } => EventKind::Program { channel, program: program.as_int() },
                    MidiMessage::ChannelAftertouch { vel } => EventKind::Pressure { channel, value: vel.as_int() },
                    MidiMessage::Aftertouch { .. } => continue,
                }
            }
            _ => continue,
        };
        out.push(Event::new(frame, ev));
    }
    Ok((out, end))
}

/// Reads a MIDI file from disk: a regular file of at most
/// [`crate::files::MAX_MIDI_BYTES`].
pub fn read(path: &std::path::Path, sample_rate: f64) -> Result<(Vec<Event>, u64), MidiFileError> {
    let shown = path.display().to_string();
    let bytes = crate::files::read_bounded(path, crate::files::MAX_MIDI_BYTES, "MIDI")
        .map_err(|e| MidiFileError::Unusable(e.to_string()))?;
    events_from_bytes(&bytes, &shown, sample_rate)
}
