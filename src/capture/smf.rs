//! A recorded take written as a Standard MIDI File: type 1, a conductor track with
//! the tempo map, then one track per MIDI channel that has events (note on and
//! off with their velocities, controllers, pitch bend, program changes, channel
//! pressure), in the order they happened. Frames become ticks through the tempo
//! map, at [`TICKS_PER_BEAT`] (half a millisecond at 120 BPM).

use crate::engine::event::{Event, EventKind};
use midly::num::{u4, u7, u14, u15, u24, u28};
use midly::{Format, Header, MetaMessage, MidiMessage, Smf, Timing, TrackEvent, TrackEventKind};

/// Resolution of recorded files.
pub const TICKS_PER_BEAT: u16 = 960;

/// A tempo from a frame on.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TempoChange {
    pub frame: u64,
    pub bpm: f64,
}

/// What a recording holds: channel events at engine frames, the transport's tempo
/// over time, and where the take ends.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Take {
    pub sample_rate: f64,
    /// Channel events, in the order they happened (frames never decrease).
    pub events: Vec<Event>,
    /// Tempo changes, by frame; before the first one the tempo is 120 BPM.
    pub tempo: Vec<TempoChange>,
    /// The frame the take ends at (at least the last event's).
    pub end: u64,
}

/// The tempo before a take says otherwise.
const DEFAULT_BPM: f64 = 120.0;

/// Converts frames to ticks through a tempo map.
struct TickMap {
    /// (frame, tick at that frame, ticks per frame from there)
    segments: Vec<(u64, f64, f64)>,
}

impl TickMap {
    fn new(take: &Take) -> Self {
        let per_frame = |bpm: f64| bpm / 60.0 * TICKS_PER_BEAT as f64 / take.sample_rate;
        let mut segments = vec![(0u64, 0.0f64, per_frame(DEFAULT_BPM))];
        for t in &take.tempo {
            let &(f0, t0, r) = segments.last().expect("never empty");
            let tick = t0 + (t.frame.saturating_sub(f0)) as f64 * r;
            if t.frame <= f0 {
                // Several changes at one frame: the last one wins.
                let last = segments.last_mut().expect("never empty");
                last.2 = per_frame(t.bpm);
            } else {
                segments.push((t.frame, tick, per_frame(t.bpm)));
            }
        }
        TickMap { segments }
    }

    fn tick(&self, frame: u64) -> u64 {
        let i = self.segments.partition_point(|s| s.0 <= frame).saturating_sub(1);
        let (f0, t0, r) = self.segments[i];
        (t0 + (frame - f0) as f64 * r).round() as u64
    }
}

/// The tick (at 960 per beat) a frame of `take` falls on.
pub fn frames_to_ticks(take: &Take, frame: u64) -> u64 {
    TickMap::new(take).tick(frame)
}

fn u7c(v: u8) -> u7 {
    u7::new(v.min(127))
}

/// The MIDI message of a channel event, or `None` for transport events.
fn message(kind: &EventKind) -> Option<(u8, MidiMessage)> {
    Some(match *kind {
        EventKind::NoteOn { channel, note, velocity } => {
            (channel, MidiMessage::NoteOn { key: u7c(note), vel: u7c(velocity.max(1)) })
        }
        EventKind::NoteOff { channel, note } => (channel, MidiMessage::NoteOff { key: u7c(note), vel: u7::new(64) }),
        EventKind::Control { channel, cc, value } => {
            (channel, MidiMessage::Controller { controller: u7c(cc), value: u7c(value) })
        }
        EventKind::PitchBend { channel, value } => (
            channel,
            MidiMessage::PitchBend { bend: midly::PitchBend(u14::new((value.clamp(-8192, 8191) + 8192) as u16)) },
        ),
        EventKind::Program { channel, program } => (channel, MidiMessage::ProgramChange { program: u7c(program) }),
        EventKind::Pressure { channel, value } => (channel, MidiMessage::ChannelAftertouch { vel: u7c(value) }),
        _ => return None,
    })
}

/// The take as the bytes of a type 1 Standard MIDI File.
pub fn to_bytes(take: &Take) -> Vec<u8> {
    let map = TickMap::new(take);
    let end_tick = map.tick(take.end.max(take.events.last().map_or(0, |e| e.frame)));
    // Absolute ticks to delta times, with the end of the track at `end_tick`.
    fn finish(mut timed: Vec<(u64, TrackEventKind<'static>)>, end_tick: u64) -> Vec<TrackEvent<'static>> {
        timed.push((end_tick.max(timed.last().map_or(0, |t| t.0)), TrackEventKind::Meta(MetaMessage::EndOfTrack)));
        let mut last = 0u64;
        timed
            .into_iter()
            .map(|(tick, kind)| {
                let delta = tick - last;
                last = tick;
                TrackEvent { delta: u28::new(delta.min(0x0FFF_FFFF) as u32), kind }
            })
            .collect()
    }
    let mut conductor: Vec<(u64, TrackEventKind<'static>)> =
        vec![(0, TrackEventKind::Meta(MetaMessage::TrackName(b"jamrig take")))];
    let mut tempos = vec![TempoChange { frame: 0, bpm: DEFAULT_BPM }];
    tempos.extend(take.tempo.iter().copied());
    for t in tempos {
        let us = (60_000_000.0 / t.bpm.clamp(1.0, 1000.0)).round() as u32;
        conductor.push((map.tick(t.frame), TrackEventKind::Meta(MetaMessage::Tempo(u24::new(us.min(0xFF_FFFF))))));
    }
    conductor.sort_by_key(|c| c.0);
    let mut tracks = vec![finish(conductor, end_tick)];
    for ch in 0..16u8 {
        let timed: Vec<(u64, TrackEventKind<'static>)> = take
            .events
            .iter()
            .filter_map(|e| match message(&e.kind) {
                Some((c, m)) if c == ch => {
                    Some((map.tick(e.frame), TrackEventKind::Midi { channel: u4::new(ch), message: m }))
                }
                _ => None,
            })
            .collect();
        if timed.is_empty() {
            continue;
        }
        let name: &'static [u8] = CHANNEL_NAMES[ch as usize].as_bytes();
        let mut all = vec![(0, TrackEventKind::Meta(MetaMessage::TrackName(name)))];
        all.extend(timed);
        tracks.push(finish(all, end_tick));
    }
    let smf = Smf { header: Header::new(Format::Parallel, Timing::Metrical(u15::new(TICKS_PER_BEAT))), tracks };
    let mut out = Vec::new();
    smf.write_std(&mut out).expect("writing to memory does not fail");
    out
}

const CHANNEL_NAMES: [&str; 16] = [
    "channel 1",
    "channel 2",
    "channel 3",
    "channel 4",
    "channel 5",
    "channel 6",
    "channel 7",
    "channel 8",
    "channel 9",
    "channel 10",
    "channel 11",
    "channel 12",
    "channel 13",
    "channel 14",
    "channel 15",
    "channel 16",
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::offline::midifile::events_from_bytes;

    fn ev(frame: u64, kind: EventKind) -> Event {
        Event::new(frame, kind)
    }

    #[test]
    fn a_take_reads_back_with_its_times_through_tempo_changes() {
        let sr = 48_000.0;
        let take = Take {
            sample_rate: sr,
            events: vec![
                ev(0, EventKind::NoteOn { channel: 0, note: 60, velocity: 100 }),
                ev(0, EventKind::NoteOn { channel: 0, note: 64, velocity: 90 }),
                ev(24_000, EventKind::NoteOff { channel: 0, note: 60 }),
                ev(30_000, EventKind::PitchBend { channel: 0, value: -8192 }),
                ev(36_000, EventKind::Control { channel: 9, cc: 7, value: 99 }),
                ev(96_000, EventKind::NoteOn { channel: 9, note: 36, velocity: 127 }),
                ev(120_000, EventKind::NoteOff { channel: 0, note: 64 }),
            ],
            tempo: vec![TempoChange { frame: 48_000, bpm: 90.0 }],
            end: 144_000,
        };
        let bytes = to_bytes(&take);
        let smf = Smf::parse(&bytes).unwrap();
        assert_eq!(smf.header.format, Format::Parallel);
        assert_eq!(smf.tracks.len(), 3, "conductor, channel 1, channel 10");
        let (back, end) = events_from_bytes(&bytes, "take.mid", sr).unwrap();
        assert_eq!(back.len(), take.events.len());
        for (a, b) in take.events.iter().zip(&back) {
            // One tick is at most 0.7 ms here: 34 frames.
            assert!(a.frame.abs_diff(b.frame) <= 34, "{a:?} came back as {b:?}");
            assert_eq!(a.kind, b.kind);
        }
        assert!(end.abs_diff(144_000) <= 34);
    }

    /// Every channel, every kind of event, chords and an overlapping repeat of a
    /// note, through several tempo changes: each channel on its own track, every
    /// event back in order at its time.
    #[test]
    fn every_channel_and_kind_round_trips() {
        let sr = 44_100.0;
        let mut events = Vec::new();
        for ch in 0..16u8 {
            let t = ch as u64 * 5_000;
            events.push(ev(t, EventKind::NoteOn { channel: ch, note: 60, velocity: 1 + ch * 8 }));
            events.push(ev(t, EventKind::NoteOn { channel: ch, note: 64, velocity: 90 }));
            events.push(ev(t + 100, EventKind::NoteOn { channel: ch, note: 60, velocity: 50 }));
            events.push(ev(t + 200, EventKind::Control { channel: ch, cc: 74, value: ch * 8 }));
            events.push(ev(t + 300, EventKind::PitchBend { channel: ch, value: ch as i16 * 1000 - 8000 }));
            events.push(ev(t + 400, EventKind::Program { channel: ch, program: ch * 7 }));
            events.push(ev(t + 500, EventKind::Pressure { channel: ch, value: 127 - ch }));
            events.push(ev(t + 2_000, EventKind::NoteOff { channel: ch, note: 60 }));
            events.push(ev(t + 2_500, EventKind::NoteOff { channel: ch, note: 60 }));
            events.push(ev(t + 3_000, EventKind::NoteOff { channel: ch, note: 64 }));
        }
        events.sort_by_key(|e| e.frame);
        let tempo = vec![
            TempoChange { frame: 0, bpm: 97.0 },
            TempoChange { frame: 20_000, bpm: 141.5 },
            TempoChange { frame: 50_000, bpm: 63.25 },
        ];
        let take = Take { sample_rate: sr, events: events.clone(), tempo, end: 100_000 };
        let bytes = to_bytes(&take);
        let smf = Smf::parse(&bytes).unwrap();
        assert_eq!(smf.tracks.len(), 17, "a conductor track and one per channel");
        let (back, _) = events_from_bytes(&bytes, "take.mid", sr).unwrap();
        assert_eq!(back.len(), events.len());
        for ch in 0..16u8 {
            let want: Vec<_> = events.iter().filter(|e| e.kind.channel() == Some(ch)).collect();
            let got: Vec<_> = back.iter().filter(|e| e.kind.channel() == Some(ch)).collect();
            assert_eq!(want.len(), got.len(), "channel {}", ch + 1);
            for (a, b) in want.iter().zip(&got) {
                // At 63.25 BPM one tick is 0.99 ms (43.6 frames): writing rounds to
                // the nearest tick, reading to the nearest frame.
                assert!(a.frame.abs_diff(b.frame) <= 23, "{a:?} came back as {b:?}");
                assert_eq!(a.kind, b.kind);
            }
        }
    }
}
