//! What the engine tells a session capture: every external event with the frame it
//! took effect at, every snapshot it adopted and when, and the external timeline
//! it followed. The audio thread pushes into a bounded lock-free queue (never
//! blocking, overflow counted); the control side drains it into the capture file.

use super::event::Event;
use super::sync::ExternalTimeline;
use crossbeam_queue::ArrayQueue;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Records the capture queue holds between two drains of the control thread
/// (it drains every few milliseconds; this is seconds of the densest input).
pub const CAPTURE_QUEUE: usize = 1 << 16;

/// One thing the engine did that shaped the sound.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Captured {
    /// An external event (MIDI input, a REPL command), at the frame it took effect.
    Event(Event),
    /// The snapshot numbered `serial` was adopted at the tick starting at `frame`.
    Adopted { serial: u64, frame: u64 },
    /// From the tick starting at `frame`, the engine followed this timeline.
    Timeline { frame: u64, timeline: ExternalTimeline },
}

pub struct CaptureTap {
    queue: ArrayQueue<Captured>,
    /// Records lost because the queue was full (the capture is then incomplete).
    pub lost: AtomicU64,
}

impl Default for CaptureTap {
    fn default() -> Self {
        CaptureTap { queue: ArrayQueue::new(CAPTURE_QUEUE), lost: AtomicU64::new(0) }
    }
}

impl CaptureTap {
    /// Audio thread: never blocks or allocates.
    #[inline]
    pub fn push(&self, c: Captured) {
        if self.queue.push(c).is_err() {
            self.lost.fetch_add(1, Relaxed);
        }
    }

    /// Control side.
    pub fn pop(&self) -> Option<Captured> {
        self.queue.pop()
    }
}
