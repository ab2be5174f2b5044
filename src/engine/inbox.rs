//! The engine's inbox: events from the control, MIDI input and keyboard threads to
//! the audio thread, through a bounded lock-free queue. When the queue is full, a
//! release (note-off, or note-on at velocity 0) and the newest value of each
//! controller are still kept, in fixed tables of atomics beside the queue, so that
//! a flood never leaves a note hanging or a knob at a stale value. Producers: any
//! thread; consumer: the audio thread.

use super::EngineStats;
use super::event::{Event, EventKind};
use crossbeam_queue::ArrayQueue;
use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, Release};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64};

/// Events the queue holds between two engine ticks.
pub const EVENT_QUEUE_CAP: usize = 4096;
/// One bit or value per (channel, note) and per (channel, controller).
const KEYS: usize = 16 * 128;
const WORDS: usize = KEYS / 64;

/// What [`Inbox::keep`] did with an event.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Kept {
    Yes,
    /// Kept, in place of an older value of the same controller (which is lost).
    Replacing,
    /// Not a release or a controller value.
    No,
}

/// Events waiting for the engine.
pub struct Inbox {
    queue: ArrayQueue<Event>,
    /// Releases that found the queue full: bit `channel * 128 + note`.
    releases: [AtomicU64; WORDS],
    /// Controllers whose newest value found the queue full, and that value.
    controls: [AtomicU64; WORDS],
    values: [AtomicU8; KEYS],
    /// Something waits in the tables.
    kept: AtomicBool,
    /// The latest frame of any event offered: what the tables hold is played
    /// there, after everything that was queued before it.
    latest: AtomicU64,
}

impl Default for Inbox {
    fn default() -> Self {
        Inbox {
            queue: ArrayQueue::new(EVENT_QUEUE_CAP),
            releases: std::array::from_fn(|_| AtomicU64::new(0)),
            controls: std::array::from_fn(|_| AtomicU64::new(0)),
            values: std::array::from_fn(|_| AtomicU8::new(0)),
            kept: AtomicBool::new(false),
            latest: AtomicU64::new(0),
        }
    }
}

impl Inbox {
    /// Offers an event (any thread). A full queue refuses it; a release, or a
    /// controller's value, is kept all the same ([`Inbox::keep`]), to be played
    /// after what was queued. What is lost is counted in `stats.events_dropped`.
    /// Returns whether it was queued.
    pub fn push(&self, ev: Event, stats: &EngineStats) -> bool {
        self.latest.fetch_max(ev.frame, Relaxed);
        let Err(ev) = self.queue.push(ev) else {
            return true;
        };
        if !matches!(self.keep(ev), Kept::Yes) {
            stats.events_dropped.fetch_add(1, Relaxed);
        }
        false
    }

    /// Keeps a release (note-off, or note-on at velocity 0) or a controller's
    /// value in the tables, to be handed out at the next [`Inbox::drain`], at the
    /// latest frame offered. Any thread (the engine too, for what finds no room
    /// in its own list). Other events are not kept.
    pub fn keep(&self, ev: Event) -> Kept {
        self.latest.fetch_max(ev.frame, Relaxed);
        let key = |channel: u8, n: u8| (channel as usize & 15) * 128 + (n as usize & 127);
        let kept = match ev.kind {
            EventKind::NoteOff { channel, note } | EventKind::NoteOn { channel, note, velocity: 0 } => {
                let k = key(channel, note);
                self.releases[k / 64].fetch_or(1 << (k % 64), Release);
                Kept::Yes
            }
            EventKind::Control { channel, cc, value } => {
                let k = key(channel, cc);
                self.values[k].store(value, Relaxed);
                match self.controls[k / 64].fetch_or(1 << (k % 64), Release) & (1 << (k % 64)) {
                    0 => Kept::Yes,
                    _ => Kept::Replacing,
                }
            }
            _ => return Kept::No,
        };
        self.kept.store(true, Release);
        kept
    }

    /// Audio thread: hands `f` every queued event, then what the tables kept
    /// (releases, then controller values, at the latest frame offered). Bounded:
    /// the queue's capacity plus one pass over the tables.
    #[inline]
    pub fn drain(&self, mut f: impl FnMut(Event)) {
        for _ in 0..EVENT_QUEUE_CAP {
            match self.queue.pop() {
                Some(ev) => f(ev),
                None => break,
            }
        }
        if !self.kept.swap(false, Acquire) {
            return;
        }
        let frame = self.latest.load(Relaxed);
        for w in 0..WORDS {
            let mut bits = self.releases[w].swap(0, AcqRel);
            while bits != 0 {
                let k = w * 64 + bits.trailing_zeros() as usize;
                bits &= bits - 1;
                f(Event { frame, kind: EventKind::NoteOff { channel: (k / 128) as u8, note: (k % 128) as u8 } });
            }
        }
        for w in 0..WORDS {
            let mut bits = self.controls[w].swap(0, AcqRel);
            while bits != 0 {
                let k = w * 64 + bits.trailing_zeros() as usize;
                bits &= bits - 1;
                let value = self.values[k].load(Relaxed);
                f(Event { frame, kind: EventKind::Control { channel: (k / 128) as u8, cc: (k % 128) as u8, value } });
            }
        }
    }

    /// Events queued now (approximate while producers push).
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_queue_keeps_releases_and_the_newest_controller_values() {
        let inbox = Inbox::default();
        let stats = EngineStats::default();
        let on = |note: u8| Event { frame: 10, kind: EventKind::NoteOn { channel: 2, note, velocity: 90 } };
        for i in 0..EVENT_QUEUE_CAP {
            assert!(inbox.push(on((i % 100) as u8), &stats));
        }
        assert!(!inbox.push(Event { frame: 500, kind: EventKind::NoteOff { channel: 2, note: 60 } }, &stats));
        assert!(
            !inbox.push(Event { frame: 20, kind: EventKind::NoteOn { channel: 3, note: 61, velocity: 0 } }, &stats)
        );
        for v in [1, 50, 99] {
            assert!(!inbox.push(Event { frame: 30, kind: EventKind::Control { channel: 0, cc: 7, value: v } }, &stats));
        }
        assert!(!inbox.push(on(70), &stats), "a note-on finds no room");
        assert_eq!(stats.events_dropped.load(Relaxed), 3, "two older values of CC 7 and the note-on");
        let mut got = Vec::new();
        inbox.drain(|ev| got.push(ev));
        assert_eq!(got.len(), EVENT_QUEUE_CAP + 3);
        assert!(got[..EVENT_QUEUE_CAP].iter().all(|e| matches!(e.kind, EventKind::NoteOn { .. })));
        let kept = &got[EVENT_QUEUE_CAP..];
        assert_eq!(kept[0], Event { frame: 500, kind: EventKind::NoteOff { channel: 2, note: 60 } });
        assert_eq!(kept[1], Event { frame: 500, kind: EventKind::NoteOff { channel: 3, note: 61 } });
        assert_eq!(kept[2], Event { frame: 500, kind: EventKind::Control { channel: 0, cc: 7, value: 99 } });
        got.clear();
        inbox.drain(|ev| got.push(ev));
        assert!(got.is_empty(), "the tables empty once drained: {got:?}");
    }
}
