//! Recording what is played into a take. The engine offers each channel event it
//! plays, at the frame it plays it, to a bounded lock-free queue ([`RecordTap`]:
//! one push, never blocking, overflow counted): what came in over MIDI or from the
//! REPL and `:keys`, and, when asked, the notes the patterns play. The control
//! thread drains it into the take, notes the transport's tempo as it changes, and
//! writes the file.

use super::smf::{Take, TempoChange, to_bytes};
use crate::engine::TransportReading;
use crate::engine::event::{Event, EventKind};
use crossbeam_queue::ArrayQueue;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

/// Events the recording queue holds between two drains of the control thread
/// (it drains every few milliseconds; this is seconds of dense playing).
pub const RECORD_QUEUE: usize = 16_384;

/// The input threads' side: a switch and a queue.
pub struct RecordTap {
    queue: ArrayQueue<Event>,
    on: AtomicBool,
    /// Record the notes patterns play too.
    patterns: AtomicBool,
    /// Events lost because the queue was full.
    pub overflow: AtomicU64,
}

impl Default for RecordTap {
    fn default() -> Self {
        RecordTap {
            queue: ArrayQueue::new(RECORD_QUEUE),
            on: AtomicBool::new(false),
            patterns: AtomicBool::new(false),
            overflow: AtomicU64::new(0),
        }
    }
}

impl RecordTap {
    /// Audio thread: keeps a copy of a channel event while recording (one made by a
    /// pattern only if pattern notes are recorded).
    #[inline]
    pub fn offer(&self, ev: Event, from_pattern: bool) {
        if ev.kind.channel().is_some()
            && self.on.load(Relaxed)
            && (!from_pattern || self.patterns.load(Relaxed))
            && self.queue.push(ev).is_err()
        {
            self.overflow.fetch_add(1, Relaxed);
        }
    }

    /// Whether the notes patterns play are recorded as well.
    pub fn set_patterns(&self, on: bool) {
        self.patterns.store(on, Relaxed);
    }
}

/// Tempo differences below this are not written (a steady clock's estimate
/// wobbles by less).
pub const TEMPO_RESOLUTION_BPM: f64 = 0.001;

/// The control thread's side: the take being recorded.
///
/// The take's tempo map follows the transport whatever drives it. While it
/// plays, the recorder measures the tempo over each stretch of at least a beat
/// from the transport's own (frame, beat) readings, and writes it from the
/// stretch's start. So the file's beats fall where the transport's did, at the
/// start of every stretch. A MIDI clock's or Link's tempo, which the
/// transport follows tick by tick, does not flood the file with tempo changes.
pub struct Recorder {
    take: Take,
    /// Added to an engine frame to give the take's frame (minus the engine
    /// frame at which the take started; moved on when the engine is replaced).
    offset: i64,
    recording: bool,
    last_bpm: f64,
    /// The start of the stretch being measured: (frame, beat).
    anchor: Option<(u64, f64)>,
    lost_before: u64,
}

impl Recorder {
    pub fn new(sample_rate: f64) -> Self {
        Recorder {
            take: Take { sample_rate, ..Take::default() },
            offset: 0,
            recording: false,
            last_bpm: 0.0,
            anchor: None,
            lost_before: 0,
        }
    }

    pub fn is_recording(&self) -> bool {
        self.recording
    }

    /// The recorded take (complete once stopped).
    pub fn take(&self) -> &Take {
        &self.take
    }

    /// Starts a new take at engine frame `now`, with the transport as `t` says.
    pub fn start(&mut self, tap: &RecordTap, now: u64, t: TransportReading) {
        while tap.queue.pop().is_some() {}
        self.take = Take { sample_rate: self.take.sample_rate, ..Take::default() };
        self.take.tempo.push(TempoChange { frame: 0, bpm: t.bpm });
        self.offset = -(now as i64);
        self.last_bpm = t.bpm;
        self.anchor = None;
        self.lost_before = tap.overflow.load(Relaxed);
        self.recording = true;
        tap.on.store(true, Relaxed);
    }

    /// Moves queued events into the take and follows the transport's tempo
    /// (control thread, every few milliseconds).
    pub fn drain(&mut self, tap: &RecordTap, t: TransportReading) {
        if !self.recording {
            return;
        }
        while let Some(ev) = tap.queue.pop() {
            // Keep frames in order (the engine offers them in order, tick by tick).
            let last = self.take.events.last().map_or(0, |e| e.frame);
            let frame = self.take_frame(ev.frame).max(last);
            self.take.events.push(Event::new(frame, ev.kind));
        }
        self.follow_tempo(t);
    }

    fn follow_tempo(&mut self, t: TransportReading) {
        if !t.playing || t.bpm <= 0.0 {
            self.anchor = None;
            return;
        }
        let sr = self.take.sample_rate;
        match self.anchor {
            None => {
                self.anchor = Some((t.frame, t.beat));
                self.note_tempo(t.frame, t.bpm);
            }
            Some((f0, b0)) if t.frame > f0 && t.beat - b0 >= 1.0 => {
                let measured = (t.beat - b0) * 60.0 * sr / (t.frame - f0) as f64;
                self.note_tempo(f0, measured);
                self.anchor = Some((t.frame, t.beat));
            }
            Some(_) => {}
        }
    }

    /// Writes `bpm` from engine frame `frame` on, if it differs from the tempo
    /// in force.
    fn note_tempo(&mut self, frame: u64, bpm: f64) {
        if (bpm - self.last_bpm).abs() < TEMPO_RESOLUTION_BPM {
            return;
        }
        let at = self.take_frame(frame);
        // A stretch never starts before the last change written.
        let at = at.max(self.take.tempo.last().map_or(0, |c| c.frame));
        match self.take.tempo.last_mut() {
            Some(last) if last.frame == at => last.bpm = bpm,
            _ => self.take.tempo.push(TempoChange { frame: at, bpm }),
        }
        self.last_bpm = bpm;
    }

    fn take_frame(&self, engine_frame: u64) -> u64 {
        (engine_frame as i64 + self.offset).max(0) as u64
    }

    /// A new engine replaces one that played `old_end` frames (the audio device
    /// was reopened): the take goes on from there, its new frames after the old.
    pub fn rebase(&mut self, old_end: u64) {
        self.offset += old_end as i64;
        self.anchor = None;
    }

    /// Stops at engine frame `now`; returns the events lost to a full queue.
    pub fn stop(&mut self, tap: &RecordTap, now: u64, t: TransportReading) -> u64 {
        if !self.recording {
            return 0;
        }
        tap.on.store(false, Relaxed);
        self.drain(tap, t);
        self.recording = false;
        let last = self.take.events.last().map_or(0, |e| e.frame);
        self.take.end = self.take_frame(now).max(last);
        self.close_held_notes();
        tap.overflow.load(Relaxed) - self.lost_before
    }

    /// Ends the notes still held when the take stops, at its end: the file never
    /// leaves a note hanging, and jamrig needs no all-notes-off in it.
    fn close_held_notes(&mut self) {
        let mut held = [[0u16; 128]; 16];
        for e in &self.take.events {
            match e.kind {
                EventKind::NoteOn { channel, note, .. } => held[channel as usize & 15][note as usize & 127] += 1,
                EventKind::NoteOff { channel, note } => {
                    let n = &mut held[channel as usize & 15][note as usize & 127];
                    *n = n.saturating_sub(1);
                }
                EventKind::Control { channel, cc: 120 | 123, .. } => held[channel as usize & 15] = [0; 128],
                _ => {}
            }
        }
        for (channel, notes) in held.iter().enumerate() {
            for (note, &n) in notes.iter().enumerate() {
                for _ in 0..n {
                    let kind = EventKind::NoteOff { channel: channel as u8, note: note as u8 };
                    self.take.events.push(Event::new(self.take.end, kind));
                }
            }
        }
    }

    /// Whether the take holds anything.
    pub fn is_empty(&self) -> bool {
        self.take.events.is_empty()
    }

    /// Writes the take as a MIDI file, through a temporary file renamed into place.
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let bytes = to_bytes(&self.take);
        let tmp = path.with_extension("mid.part");
        std::fs::write(&tmp, bytes)?;
        std::fs::rename(&tmp, path)
    }

    /// One line about the take.
    pub fn summary(&self) -> String {
        let notes = self.take.events.iter().filter(|e| matches!(e.kind, EventKind::NoteOn { .. })).count();
        let seconds = self.take.end as f64 / self.take.sample_rate.max(1.0);
        let mut channels: Vec<u8> = self.take.events.iter().filter_map(|e| e.kind.channel()).map(|c| c + 1).collect();
        channels.sort();
        channels.dedup();
        let chs: Vec<String> = channels.iter().map(|c| c.to_string()).collect();
        let on = if chs.len() == 1 { "channel" } else { "channels" };
        format!(
            "{}, {} on {on} [{}], {seconds:.1} s",
            crate::text::plural(notes as u64, "note"),
            crate::text::plural(self.take.events.len() as u64, "event"),
            chs.join(", ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stopped(frame: u64, bpm: f64) -> TransportReading {
        TransportReading { frame, beat: 0.0, bpm, playing: false }
    }

    #[test]
    fn only_channel_events_while_on_are_kept_relative_to_the_start() {
        let tap = RecordTap::default();
        let mut r = Recorder::new(48_000.0);
        tap.offer(Event::new(10, EventKind::NoteOn { channel: 0, note: 60, velocity: 90 }), false);
        r.start(&tap, 1000, stopped(1000, 120.0));
        tap.offer(Event::new(1500, EventKind::NoteOn { channel: 0, note: 60, velocity: 90 }), false);
        tap.offer(Event::new(1600, EventKind::Clock), false);
        tap.offer(Event::new(1700, EventKind::NoteOn { channel: 9, note: 36, velocity: 90 }), true);
        r.drain(&tap, stopped(2000, 120.0));
        tap.offer(Event::new(2500, EventKind::NoteOff { channel: 0, note: 60 }), false);
        assert_eq!(r.stop(&tap, 3000, stopped(3000, 120.0)), 0);
        tap.offer(Event::new(3500, EventKind::NoteOn { channel: 0, note: 62, velocity: 90 }), false);
        let t = r.take();
        assert_eq!(t.events.iter().map(|e| e.frame).collect::<Vec<_>>(), vec![500, 1500]);
        assert_eq!(t.tempo, vec![TempoChange { frame: 0, bpm: 120.0 }]);
        assert_eq!(t.end, 2000);
    }

    /// A transport following a jittery clock (its tempo reading wobbling every
    /// few milliseconds) gives one tempo change per beat at most, and the file's
    /// beats land where the transport's did.
    #[test]
    fn the_tempo_map_follows_the_transport_beat_by_beat() {
        let sr = 48_000.0;
        let tap = RecordTap::default();
        let mut r = Recorder::new(sr);
        let playing = |frame: u64, beat: f64, bpm: f64| TransportReading { frame, beat, bpm, playing: true };
        r.start(&tap, 0, playing(0, 0.0, 120.0));
        // The true tempo ramps from 120 to 130 over 32 beats; readings every 5 ms
        // carry a wobbling tempo estimate.
        let (mut frame, mut beat) = (0u64, 0.0f64);
        let mut k = 0u64;
        while beat < 32.0 {
            let bpm = 120.0 + 10.0 * beat / 32.0;
            let wobble = if k.is_multiple_of(2) { 0.03 } else { -0.03 };
            r.drain(&tap, playing(frame, beat, bpm + wobble));
            frame += 240;
            beat += 240.0 * bpm / (60.0 * sr);
            k += 1;
        }
        let take = r.take();
        assert!(take.tempo.len() <= 33, "{} tempo changes for 32 beats", take.tempo.len());
        assert!(take.tempo.last().unwrap().bpm > 128.0);
        // Each stretch's start: the file's beat there (ticks / 960) is the
        // transport's beat there.
        let ticks = crate::capture::smf::frames_to_ticks(take, take.tempo.last().unwrap().frame);
        let f = take.tempo.last().unwrap().frame;
        let beat_then = {
            // The transport's beat at that frame, by the same ramp.
            let (mut fr, mut b) = (0u64, 0.0f64);
            while fr < f {
                b += 240.0 * (120.0 + 10.0 * b / 32.0) / (60.0 * sr);
                fr += 240;
            }
            b
        };
        assert!(
            (ticks as f64 / 960.0 - beat_then).abs() < 0.01,
            "file beat {} vs transport beat {beat_then}",
            ticks as f64 / 960.0
        );
    }

    #[test]
    fn a_new_engine_goes_on_after_the_old_one() {
        let tap = RecordTap::default();
        tap.on.store(true, Relaxed);
        let mut r = Recorder::new(48_000.0);
        r.start(&tap, 1000, stopped(1000, 120.0));
        tap.offer(Event::new(5000, EventKind::NoteOn { channel: 0, note: 60, velocity: 90 }), false);
        r.drain(&tap, stopped(6000, 120.0));
        // The old engine played 10000 frames; the new one starts again from 0.
        r.rebase(10_000);
        tap.offer(Event::new(500, EventKind::NoteOff { channel: 0, note: 60 }), false);
        assert_eq!(r.stop(&tap, 2000, stopped(2000, 120.0)), 0);
        assert_eq!(r.take().events.iter().map(|e| e.frame).collect::<Vec<_>>(), vec![4000, 9500]);
        assert_eq!(r.take().end, 11_000);
    }

    /// Regression (issue 13): stopping jamrig sent all-notes-off on every channel
    /// into the take. The take stops first now, and closes the notes still held
    /// itself, at its end.
    #[test]
    fn notes_held_at_the_stop_end_with_the_take() {
        let tap = RecordTap::default();
        let mut r = Recorder::new(48000.0);
        r.start(&tap, 0, stopped(0, 120.0));
        tap.offer(Event::new(100, EventKind::NoteOn { channel: 0, note: 60, velocity: 90 }), false);
        tap.offer(Event::new(200, EventKind::NoteOn { channel: 1, note: 62, velocity: 90 }), false);
        tap.offer(Event::new(300, EventKind::NoteOff { channel: 1, note: 62 }), false);
        r.stop(&tap, 1000, stopped(1000, 120.0));
        let ends: Vec<_> = r.take().events.iter().filter(|e| e.frame == 1000).map(|e| e.kind).collect();
        assert_eq!(ends, [EventKind::NoteOff { channel: 0, note: 60 }]);
        assert!(!r.take().events.iter().any(|e| matches!(e.kind, EventKind::Control { .. })));
    }

    #[test]
    fn a_full_queue_counts_what_it_loses() {
        let tap = RecordTap::default();
        let mut r = Recorder::new(48_000.0);
        r.start(&tap, 0, stopped(0, 120.0));
        for i in 0..RECORD_QUEUE as u64 + 5 {
            tap.offer(Event::new(i, EventKind::Control { channel: 0, cc: 1, value: 1 }), false);
        }
        assert_eq!(r.stop(&tap, 100_000, stopped(100_000, 120.0)), 5);
        assert_eq!(r.take().events.len(), RECORD_QUEUE);
    }
}
