//! Recording what is played into a take. The MIDI input thread offers each channel
//! event to a bounded lock-free queue ([`RecordTap`], never blocking, overflow
//! counted); the control thread drains it into the take, notes the transport's
//! tempo as it changes, and writes the file. Nothing here runs on the audio thread.

use super::smf::{Take, TempoChange, to_bytes};
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
    /// Events lost because the queue was full.
    pub overflow: AtomicU64,
}

impl Default for RecordTap {
    fn default() -> Self {
        RecordTap { queue: ArrayQueue::new(RECORD_QUEUE), on: AtomicBool::new(false), overflow: AtomicU64::new(0) }
    }
}

impl RecordTap {
    /// Input thread: keeps a copy of a channel event while recording.
    #[inline]
    pub fn offer(&self, ev: Event) {
        if ev.kind.channel().is_some() && self.on.load(Relaxed) && self.queue.push(ev).is_err() {
            self.overflow.fetch_add(1, Relaxed);
        }
    }
}

/// The control thread's side: the take being recorded.
pub struct Recorder {
    take: Take,
    /// Engine frame at which the take starts (its frame 0).
    start: u64,
    recording: bool,
    last_bpm: f64,
    lost_before: u64,
}

impl Recorder {
    pub fn new(sample_rate: f64) -> Self {
        Recorder {
            take: Take { sample_rate, ..Take::default() },
            start: 0,
            recording: false,
            last_bpm: 0.0,
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

    /// Starts a new take at engine frame `now`, at tempo `bpm`.
    pub fn start(&mut self, tap: &RecordTap, now: u64, bpm: f64) {
        while tap.queue.pop().is_some() {}
        self.take = Take { sample_rate: self.take.sample_rate, ..Take::default() };
        self.take.tempo.push(TempoChange { frame: 0, bpm });
        self.start = now;
        self.last_bpm = bpm;
        self.lost_before = tap.overflow.load(Relaxed);
        self.recording = true;
        tap.on.store(true, Relaxed);
    }

    /// Moves queued events into the take and notes a tempo change (control thread,
    /// every few milliseconds).
    pub fn drain(&mut self, tap: &RecordTap, now: u64, bpm: f64) {
        if !self.recording {
            return;
        }
        while let Some(ev) = tap.queue.pop() {
            // Input threads race by a hair: keep frames in order.
            let last = self.take.events.last().map_or(0, |e| e.frame);
            let frame = ev.frame.saturating_sub(self.start).max(last);
            self.take.events.push(Event::new(frame, ev.kind));
        }
        if bpm != self.last_bpm && bpm > 0.0 {
            self.last_bpm = bpm;
            self.take.tempo.push(TempoChange { frame: now.saturating_sub(self.start), bpm });
        }
    }

    /// Stops at engine frame `now`; returns the events lost to a full queue.
    pub fn stop(&mut self, tap: &RecordTap, now: u64, bpm: f64) -> u64 {
        if !self.recording {
            return 0;
        }
        tap.on.store(false, Relaxed);
        self.drain(tap, now, bpm);
        self.recording = false;
        let last = self.take.events.last().map_or(0, |e| e.frame);
        self.take.end = now.saturating_sub(self.start).max(last);
        tap.overflow.load(Relaxed) - self.lost_before
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
        format!("{notes} notes, {} events on channels [{}], {seconds:.1} s", self.take.events.len(), chs.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_channel_events_while_on_are_kept_relative_to_the_start() {
        let tap = RecordTap::default();
        let mut r = Recorder::new(48_000.0);
        tap.offer(Event::new(10, EventKind::NoteOn { channel: 0, note: 60, velocity: 90 }));
        r.start(&tap, 1000, 120.0);
        tap.offer(Event::new(1500, EventKind::NoteOn { channel: 0, note: 60, velocity: 90 }));
        tap.offer(Event::new(1600, EventKind::Clock));
        r.drain(&tap, 2000, 100.0);
        tap.offer(Event::new(2500, EventKind::NoteOff { channel: 0, note: 60 }));
        assert_eq!(r.stop(&tap, 3000, 100.0), 0);
        tap.offer(Event::new(3500, EventKind::NoteOn { channel: 0, note: 62, velocity: 90 }));
        let t = r.take();
        assert_eq!(t.events.iter().map(|e| e.frame).collect::<Vec<_>>(), vec![500, 1500]);
        assert_eq!(t.tempo, vec![TempoChange { frame: 0, bpm: 120.0 }, TempoChange { frame: 1000, bpm: 100.0 }]);
        assert_eq!(t.end, 2000);
    }

    #[test]
    fn a_full_queue_counts_what_it_loses() {
        let tap = RecordTap::default();
        let mut r = Recorder::new(48_000.0);
        r.start(&tap, 0, 120.0);
        for i in 0..RECORD_QUEUE as u64 + 5 {
            tap.offer(Event::new(i, EventKind::Control { channel: 0, cc: 1, value: 1 }));
        }
        assert_eq!(r.stop(&tap, 100_000, 120.0), 5);
        assert_eq!(r.take().events.len(), RECORD_QUEUE);
    }
}
