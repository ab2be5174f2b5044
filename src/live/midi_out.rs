//! MIDI out, host side: takes what the engine queued ([`crate::engine::midi_out`])
//! and hands each message to the output port at its time, in time order. The
//! [`OutWriter`] runs on the thread that writes the port: JACK's process thread
//! (the `jack` feature, where messages land at their frame offset in the cycle), or
//! jamrig's MIDI output thread (ALSA, through midir, which sends each message at
//! its frame's wall time). It allocates nothing once built.

use crate::engine::midi_out::{MIDI_OUT_QUEUE_CAP, OutMessage, OutQueue};
use std::sync::atomic::AtomicU64;

/// The engine's queue of MIDI out messages and what became of them, shared by the
/// control thread (`:status`) and whoever writes the port.
pub struct OutShared {
    pub queue: OutQueue,
    /// Messages written to the port.
    pub written: AtomicU64,
    /// Messages written after their time (at the start of the cycle, or late on
    /// the output thread).
    pub late: AtomicU64,
    /// Messages the port refused (its buffer for the cycle was full).
    pub refused: AtomicU64,
    /// How long after its frame is handed out a message leaves (a device's own
    /// latency aside), in frames: the audio's output latency beyond the MIDI
    /// port's, so that it sounds with the audio. Set by the writer.
    pub delay_frames: AtomicU64,
}

impl OutShared {
    pub fn new(queue: OutQueue) -> OutShared {
        OutShared {
            queue,
            written: AtomicU64::new(0),
            late: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            delay_frames: AtomicU64::new(0),
        }
    }
}

/// Messages taken from the queue and not yet due, and the ones due now.
pub struct OutWriter {
    /// (order taken, message).
    pending: Vec<(u64, OutMessage)>,
    /// (time, order taken, message) of this round's messages.
    due: Vec<(i64, u64, OutMessage)>,
    taken: u64,
}

impl Default for OutWriter {
    fn default() -> Self {
        OutWriter {
            pending: Vec::with_capacity(MIDI_OUT_QUEUE_CAP),
            due: Vec::with_capacity(MIDI_OUT_QUEUE_CAP),
            taken: 0,
        }
    }
}

impl OutWriter {
    /// Takes what the engine queued since the last call, then hands `write` every
    /// message whose time (`when`, in the caller's unit; `None`: not known yet)
    /// is before `end`, in time order (at one time, in the engine's order). The
    /// rest wait for a later call. Writer thread, no allocation.
    pub fn write_due(
        &mut self,
        queue: &OutQueue,
        end: i64,
        when: impl Fn(&OutMessage) -> Option<i64>,
        mut write: impl FnMut(i64, &OutMessage),
    ) {
        while self.pending.len() < self.pending.capacity() {
            let Some(m) = queue.pop() else { break };
            self.pending.push((self.taken, m));
            self.taken += 1;
        }
        self.due.clear();
        let mut i = 0;
        while i < self.pending.len() {
            let (order, m) = self.pending[i];
            match when(&m) {
                Some(t) if t < end && self.due.len() < self.due.capacity() => {
                    self.due.push((t, order, m));
                    self.pending.swap_remove(i);
                }
                _ => i += 1,
            }
        }
        self.due.sort_unstable_by_key(|(t, order, _)| (*t, *order));
        for (t, _, m) in &self.due {
            write(*t, m);
        }
    }

    /// Whether messages wait (taken, not yet written).
    pub fn is_idle(&self) -> bool {
        self.pending.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(frame: u64, note: u8) -> OutMessage {
        OutMessage { frame, lead_frames: 0, bytes: [0x90, note, 100], len: 3 }
    }

    #[test]
    fn writes_what_is_due_in_time_order_and_keeps_the_rest() {
        let q = crate::engine::midi_out::queue();
        // Queued out of time order (the engine queues clock ticks before notes).
        for (f, n) in [(30, 1), (10, 2), (10, 3), (99, 4), (0, 5)] {
            q.push(msg(f, n)).unwrap();
        }
        let mut w = OutWriter::default();
        let mut got = Vec::new();
        w.write_due(&q, 50, |m| Some(m.frame as i64), |t, m| got.push((t, m.bytes[1])));
        assert_eq!(got, vec![(0, 5), (10, 2), (10, 3), (30, 1)]);
        assert!(!w.is_idle());
        got.clear();
        w.write_due(&q, 100, |m| Some(m.frame as i64), |t, m| got.push((t, m.bytes[1])));
        assert_eq!(got, vec![(99, 4)]);
        assert!(w.is_idle());
    }
}
