//! The pattern sequencer, on the audio thread: for a window of frames while the
//! transport plays, finds every pattern hit whose beat falls in it and emits a note
//! at the exact frame (and its note-off). A new set of patterns takes over at the
//! next bar line.

use super::event::{Event, EventKind};
use super::snapshot::PatternSet;
use super::transport::Transport;
use std::sync::Arc;

/// Where the sequencer puts what it finds.
pub trait Sink {
    fn note_on(&mut self, frame: u64, channel: u8, note: u8, velocity: u8);
    fn note_off_at(&mut self, ev: Event);
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
    for p in &set.patterns {
        let len = p.length_beats;
        if len <= 0.0 || p.hits.is_empty() {
            continue;
        }
        let first_cycle = (lo / len).floor().max(0.0) as u64;
        let mut cycle = first_cycle;
        loop {
            let base = cycle as f64 * len;
            if base > hi {
                break;
            }
            for h in &p.hits {
                let beat = base + h.beat;
                if beat < lo || beat < 0.0 {
                    continue;
                }
                if beat > hi {
                    break;
                }
                let f = transport.frame_at(beat);
                if f >= a && f < b {
                    sink.note_on(f, p.channel, h.note, h.velocity);
                    if h.length > 0.0 {
                        let off = transport.frame_at(beat + h.length).max(f + 1);
                        sink.note_off_at(Event::new(off, EventKind::NoteOff { channel: p.channel, note: h.note }));
                    }
                }
            }
            cycle += 1;
        }
    }
}
