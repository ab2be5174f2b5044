//! The pattern sequencer, on the audio thread: for a window of frames while the
//! transport plays, finds every pattern hit whose beat falls in it and emits a note
//! at the exact frame (and its note-off). A new set of patterns takes over at the
//! next bar line.

use super::event::{Event, EventKind};
use super::snapshot::PatternSet;
use super::transport::Transport;
use std::sync::Arc;

/// The shortest pattern, in beats (a 64th of a beat: at 400 BPM, 2.3 ms).
pub const MIN_PATTERN_BEATS: f64 = 1.0 / 64.0;
/// The longest pattern, in beats.
pub const MAX_PATTERN_BEATS: f64 = 1024.0;
/// The longest note a hit may hold, in beats.
pub const MAX_HIT_LENGTH_BEATS: f64 = 1024.0;
/// Pattern cycles one pattern may start within one call (a tick is far shorter than
/// a cycle of the shortest pattern at any tempo; this bounds the loop whatever the
/// transport's position or rate).
const MAX_CYCLES_PER_RUN: u32 = 64;
/// Beats past which positions are no longer exact in `f64` (2^52): a transport
/// this far along plays no patterns.
const MAX_EXACT_BEAT: f64 = 4.5e15;

/// Where the sequencer puts what it finds.
pub trait Sink {
    /// A hit: its note-on frame and, for a hit with a length, its note-off. Returns
    /// false when the tick has no room for more hits (the sequencer stops).
    fn hit(&mut self, frame: u64, channel: u8, note: u8, velocity: u8, off: Option<Event>) -> bool;
    /// Hits were skipped (the tick was full or the position out of range).
    fn skipped(&mut self);
}

#[derive(Default)]
pub struct Sequencer {
    current: Option<Arc<PatternSet>>,
    pending: Option<Arc<PatternSet>>,
    /// Beat at which `pending` takes over.
    switch_beat: f64,
}

impl Sequencer {
    pub fn current(&self) -> Option<&Arc<PatternSet>> {
        self.current.as_ref()
    }

    /// Queues `next` to take over at the first bar line at or after `beat` (at once
    /// if the transport is stopped). Returns the pattern sets it lets go of, to be
    /// retired off the audio thread (never dropped here).
    pub fn replace(
        &mut self,
        next: Arc<PatternSet>,
        transport: &Transport,
        frame: u64,
        beats_per_bar: f64,
    ) -> [Option<Arc<PatternSet>>; 2] {
        if !transport.is_playing() || self.current.is_none() {
            return [self.current.replace(next), self.pending.take()];
        }
        let beat = transport.beat_at(frame);
        let bar = beats_per_bar.max(1e-3);
        let mut at = (beat / bar).ceil() * bar;
        if transport.frame_at(at) < frame {
            at += bar;
        }
        self.switch_beat = at;
        [self.pending.replace(next), None]
    }

    /// Keeps the running patterns: drops a queued change (returned for retirement).
    pub fn cancel_pending(&mut self) -> Option<Arc<PatternSet>> {
        self.pending.take()
    }

    /// Emits the hits in frames `[a, b)`; returns a replaced pattern set to retire.
    pub fn run(&mut self, a: u64, b: u64, transport: &Transport, sink: &mut impl Sink) -> Option<Arc<PatternSet>> {
        if !transport.is_playing() || b <= a {
            return None;
        }
        let mut retired = None;
        let mut start = a;
        if self.pending.is_some() {
            let at = transport.frame_at(self.switch_beat);
            if at < b {
                let cut = at.max(a);
                if let Some(cur) = &self.current {
                    emit(cur, start, cut, transport, sink);
                }
                retired = std::mem::replace(&mut self.current, self.pending.take());
                start = cut;
            }
        }
        if let Some(cur) = &self.current {
            emit(cur, start, b, transport, sink);
        }
        retired
    }

    /// Drops the patterns (returned for retirement).
    pub fn clear(&mut self) -> (Option<Arc<PatternSet>>, Option<Arc<PatternSet>>) {
        (self.current.take(), self.pending.take())
    }
}

fn emit(set: &PatternSet, a: u64, b: u64, transport: &Transport, sink: &mut impl Sink) {
    let fpb = transport.frames_per_beat();
    let margin = 2.0 / fpb;
    let lo = transport.beat_at(a) - margin;
    let hi = transport.beat_at(b) + margin;
    if !(lo.is_finite() && hi.is_finite()) || hi > MAX_EXACT_BEAT {
        if !set.patterns.is_empty() {
            sink.skipped();
        }
        return;
    }
    for p in &set.patterns {
        let len = p.length_beats;
        if len.is_nan() || len < MIN_PATTERN_BEATS || p.hits.is_empty() {
            continue;
        }
        let mut cycle = (lo / len).floor().max(0.0) as u64;
        let mut cycles = 0;
        loop {
            let base = cycle as f64 * len;
            if base > hi {
                break;
            }
            cycles += 1;
            if cycles > MAX_CYCLES_PER_RUN {
                sink.skipped();
                break;
            }
            // Hits are sorted by beat: start at the first one inside the window.
            let from = p.hits.partition_point(|h| base + h.beat < lo);
            for h in &p.hits[from..] {
                let beat = base + h.beat;
                if beat > hi {
                    break;
                }
                let f = transport.frame_at(beat);
                if f >= a && f < b {
                    let off = (h.length > 0.0).then(|| {
                        let off = transport.frame_at(beat + h.length).max(f + 1);
                        Event::new(off, EventKind::NoteOff { channel: p.channel, note: h.note })
                    });
                    if !sink.hit(f, p.channel, h.note, h.velocity, off) {
                        sink.skipped();
                        return;
                    }
                }
            }
            cycle += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::snapshot::{Hit, PatternConfig};

    struct Count(usize, usize);
    impl Sink for Count {
        fn hit(&mut self, _: u64, _: u8, _: u8, _: u8, _: Option<Event>) -> bool {
            self.0 += 1;
            self.0 < 100
        }
        fn skipped(&mut self) {
            self.1 += 1;
        }
    }

    fn one(len: f64, hits: usize) -> PatternSet {
        let hits =
            (0..hits).map(|i| Hit { beat: 0.0 + i as f64 * 0.0, note: 60, velocity: 100, length: 0.5 }).collect();
        PatternSet { patterns: vec![PatternConfig { name: "p".into(), channel: 0, length_beats: len, hits }] }
    }

    #[test]
    fn the_work_per_run_is_bounded_whatever_the_pattern_or_position() {
        // A pattern far shorter than the shortest allowed, at beats from 0 to 1e20:
        // every run returns, having emitted at most its budget.
        for start_beat in [0.0, 1e6, 1e15, 1e17, 1e20, f64::MAX] {
            for len in [1e-300, 1e-6, MIN_PATTERN_BEATS, 4.0] {
                let mut t = Transport::new(48000.0, 120.0);
                t.start(0);
                t.locate(0, start_beat);
                let mut sink = Count(0, 0);
                emit(&one(len, 3), 0, 64, &t, &mut sink);
                assert!(sink.0 <= 100, "{start_beat} {len}: {} hits", sink.0);
            }
        }
        // A thousand hits on one beat fill the tick's budget, then are counted.
        let mut t = Transport::new(48000.0, 120.0);
        t.start(0);
        let mut sink = Count(0, 0);
        emit(&one(4.0, 1000), 0, 64, &t, &mut sink);
        assert_eq!(sink.0, 100);
        assert_eq!(sink.1, 1);
    }
}
