//! Live figures the audio callback records (callback time against its budget,
//! underruns, device failure) for `:status`; atomics only.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

#[derive(Default)]
pub struct LiveStats {
    /// Callbacks since the stream started (never reset: a stall shows as no change).
    pub callbacks_total: AtomicU64,
    /// Frames handed out since the stream started (never reset).
    pub frames_total: AtomicU64,
    pub callbacks: AtomicU64,
    pub busy_ns: AtomicU64,
    pub worst_ns: AtomicU64,
    pub frames: AtomicU64,
    pub underruns: AtomicU64,
    /// The stream reported an error it cannot continue from.
    pub failed: AtomicBool,
}

impl LiveStats {
    /// Audio thread.
    #[inline]
    pub fn record(&self, took: Duration, frames: usize) {
        let ns = took.as_nanos() as u64;
        self.callbacks_total.fetch_add(1, Relaxed);
        self.frames_total.fetch_add(frames as u64, Relaxed);
        self.callbacks.fetch_add(1, Relaxed);
        self.busy_ns.fetch_add(ns, Relaxed);
        self.worst_ns.fetch_max(ns, Relaxed);
        self.frames.fetch_add(frames as u64, Relaxed);
    }

    /// `(mean, worst, mean frames per callback)` since the last call, and resets.
    pub fn take(&self) -> (Duration, Duration, u64) {
        let n = self.callbacks.swap(0, Relaxed).max(1);
        let busy = self.busy_ns.swap(0, Relaxed);
        let worst = self.worst_ns.swap(0, Relaxed);
        let frames = self.frames.swap(0, Relaxed);
        (Duration::from_nanos(busy / n), Duration::from_nanos(worst), frames / n)
    }
}
