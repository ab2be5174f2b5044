//! Maps wall-clock instants to engine frames, so that live MIDI is placed at a fixed
//! latency after it arrives and the spacing between notes is kept. The audio thread
//! publishes (frame, instant) at each callback (wait-free); input threads read it
//! (a sequence lock: they retry, the writer never waits).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// The smallest of a value over the current window and the one before it. A
/// callback that runs late measures a later moment than its cycle's, never an
/// earlier one, so the smallest recent offset between two clocks is the true one;
/// keeping two windows follows a lasting change within two windows. The caller
/// says when a window ends ([`WindowedMin::roll`]); `less` orders the values.
pub struct WindowedMin<T> {
    current: Option<T>,
    previous: Option<T>,
    less: fn(T, T) -> bool,
    /// After [`WindowedMin::settle_afresh`]: the smallest value since, and the
    /// values still to come before it replaces both windows.
    fresh: Option<(Option<T>, u32)>,
}

impl<T: Copy> WindowedMin<T> {
    pub const fn new(less: fn(T, T) -> bool) -> Self {
        WindowedMin { current: None, previous: None, less, fresh: None }
    }

    fn smaller(&self, a: Option<T>, b: T) -> T {
        match a {
            Some(a) if !(self.less)(b, a) => a,
            _ => b,
        }
    }

    /// Adds a value to the current window. Returns true when, after
    /// [`WindowedMin::settle_afresh`], the values since have just replaced both
    /// windows.
    #[inline]
    pub fn push(&mut self, v: T) -> bool {
        self.current = Some(self.smaller(self.current, v));
        if let Some((min, left)) = self.fresh {
            let min = self.smaller(min, v);
            if left <= 1 {
                self.fresh = None;
                self.current = Some(min);
                self.previous = None;
                return true;
            }
            self.fresh = Some((Some(min), left - 1));
        }
        false
    }

    /// The offset may have moved for good (an overrun): the smallest of the next
    /// `n` values replaces both windows, so that a lasting change is followed
    /// after `n` values (not two windows), and one value that comes late does not
    /// decide alone. Until then the windows answer as before.
    #[inline]
    pub fn settle_afresh(&mut self, n: u32) {
        self.fresh = Some((None, n.max(1)));
    }

    /// Ends the current window: it becomes the previous one.
    #[inline]
    pub fn roll(&mut self) {
        self.previous = self.current.take();
    }

    /// The smallest value of both windows (`None` before any value).
    #[inline]
    pub fn best(&self) -> Option<T> {
        match (self.current, self.previous) {
            (Some(c), p) => Some(self.smaller(p, c)),
            (None, p) => p,
        }
    }
}

/// How far the output latency a stream reports may move before it is taken.
pub const OUTPUT_LATENCY_SLACK_FRAMES: u64 = 2;

pub struct FrameClock {
    base: Instant,
    seq: AtomicU64,
    frame: AtomicU64,
    nanos: AtomicU64,
    /// The same moment on the audio stream's own clock (cpal's playback timestamp),
    /// in ns; for JACK this is JACK's clock, free of scheduling jitter.
    stream_nanos: AtomicU64,
    /// The same moment as a JACK frame time (`1 << 32 | frames`), when the stream
    /// is a JACK client; 0 otherwise.
    jack_frame: AtomicU64,
    sample_rate: f64,
    /// Frames between an arrival and its placement: one buffer plus one engine tick.
    latency_frames: AtomicU64,
    /// The output's latency as the stream reports it (from handing a frame out to
    /// hearing it), in frames: MIDI out leaves this much after its frame is handed
    /// out, so that it sounds with the audio.
    output_latency_frames: AtomicU64,
}

impl FrameClock {
    pub fn new(sample_rate: u32, buffer_frames: u32) -> Self {
        FrameClock {
            base: Instant::now(),
            seq: AtomicU64::new(0),
            frame: AtomicU64::new(0),
            nanos: AtomicU64::new(0),
            stream_nanos: AtomicU64::new(0),
            jack_frame: AtomicU64::new(0),
            sample_rate: sample_rate as f64,
            latency_frames: AtomicU64::new(buffer_frames as u64 + crate::engine::TICK_FRAMES as u64),
            output_latency_frames: AtomicU64::new(0),
        }
    }

    pub fn sample_rate(&self) -> f64 {
        self.sample_rate
    }

    /// Audio thread: the output's latency as the stream reports it now. Streams
    /// report it from timestamps in microseconds, a frame either way from one
    /// callback to the next: it is taken only when it moves by more than
    /// [`OUTPUT_LATENCY_SLACK_FRAMES`], so that MIDI out keeps a constant distance
    /// to the audio.
    #[inline]
    pub fn set_output_latency(&self, frames: u64) {
        let now = self.output_latency_frames.load(Ordering::Relaxed);
        if frames.abs_diff(now) > OUTPUT_LATENCY_SLACK_FRAMES {
            self.output_latency_frames.store(frames, Ordering::Relaxed);
        }
    }

    /// The output's latency in frames (0 until the stream says).
    pub fn output_latency_frames(&self) -> u64 {
        self.output_latency_frames.load(Ordering::Relaxed)
    }

    /// The published (engine frame, JACK frame time), read consistently; `None`
    /// when the stream gives no JACK frame times.
    fn jack_publication(&self) -> Option<(u64, u32)> {
        loop {
            let s1 = self.seq.load(Ordering::Acquire);
            let frame = self.frame.load(Ordering::Acquire);
            let jf = self.jack_frame.load(Ordering::Acquire);
            let s2 = self.seq.load(Ordering::Acquire);
            if s1 == s2 && s1.is_multiple_of(2) {
                return (jf >> 32 != 0).then_some((frame, jf as u32));
            }
            std::hint::spin_loop();
        }
    }

    /// The JACK frame time at which engine frame `frame` is handed out (the audio
    /// stream and a JACK port run in the same cycles): exact, from frame counts.
    /// `None` when the stream gives no JACK frame times, or the publication is
    /// more than a second away (stale).
    pub fn jack_frame_of(&self, frame: u64) -> Option<u32> {
        let (published, jf) = self.jack_publication()?;
        let delta = frame as i64 - published as i64;
        if delta.abs() > self.sample_rate as i64 {
            return None;
        }
        Some(jf.wrapping_add(delta as i32 as u32))
    }

    /// How many frames after `at` engine frame `frame` is handed out (negative:
    /// already), from the last publication's instant.
    pub fn frames_after(&self, frame: u64, at: Instant) -> f64 {
        let (published, ns, _) = self.snapshot();
        let now = published as f64 + (self.nanos_of(at) as i128 - ns as i128) as f64 / 1e9 * self.sample_rate;
        frame as f64 - now
    }

    pub fn latency_frames(&self) -> u64 {
        self.latency_frames.load(Ordering::Relaxed)
    }

    fn nanos_of(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.base).as_nanos() as u64
    }

    /// Audio thread, at the start of each callback: `frame` is the next frame the
    /// engine hands out, `stream_ns` the stream's playback time of that frame (0 if
    /// unknown), `block` the callback's length in frames.
    #[inline]
    pub fn publish(&self, frame: u64, at: Instant, stream_ns: u64, block: usize) {
        self.publish_with_jack_frame(frame, at, stream_ns, block, None);
    }

    /// [`FrameClock::publish`] from a JACK process callback, with the cycle's JACK
    /// frame time: JACK MIDI events are then placed by frame counts alone.
    #[inline]
    pub fn publish_with_jack_frame(&self, frame: u64, at: Instant, stream_ns: u64, block: usize, jack: Option<u32>) {
        let ns = self.nanos_of(at);
        self.latency_frames.store(block as u64 + crate::engine::TICK_FRAMES as u64, Ordering::Relaxed);
        self.seq.fetch_add(1, Ordering::AcqRel);
        self.frame.store(frame, Ordering::Release);
        self.nanos.store(ns, Ordering::Release);
        self.stream_nanos.store(stream_ns, Ordering::Release);
        self.jack_frame.store(jack.map_or(0, |f| 1 << 32 | f as u64), Ordering::Release);
        self.seq.fetch_add(1, Ordering::AcqRel);
    }

    /// The engine frame at which a JACK MIDI event at JACK frame time `jack_frame`
    /// should sound: exact, from frame counts (the audio stream and the MIDI port
    /// run in the same JACK cycles), one buffer and one tick later. `None` when the
    /// audio stream gives no JACK frame times, or when the two are further apart
    /// than a second (a stale publication: the stream has stopped).
    pub fn place_jack(&self, jack_frame: u32) -> Option<u64> {
        let (frame, jf) = self.jack_publication()?;
        let delta = jack_frame.wrapping_sub(jf) as i32 as i64;
        if delta.abs() > self.sample_rate as i64 {
            return None;
        }
        Some((frame as i64 + delta + self.latency_frames() as i64).max(0) as u64)
    }

    /// The published (frame, instant ns, stream ns), read consistently.
    fn snapshot(&self) -> (u64, u64, u64) {
        loop {
            let s1 = self.seq.load(Ordering::Acquire);
            let frame = self.frame.load(Ordering::Acquire);
            let ns = self.nanos.load(Ordering::Acquire);
            let stream = self.stream_nanos.load(Ordering::Acquire);
            let s2 = self.seq.load(Ordering::Acquire);
            if s1 == s2 && s1.is_multiple_of(2) {
                return (frame, ns, stream);
            }
            std::hint::spin_loop();
        }
    }

    /// Where `at` and `stream_ns` (the same moment on the stream's clock) fall on the
    /// engine's frame line, without latency: `(by the instant, by the stream clock)`.
    /// The first is unbiased but carries the audio callback's scheduling jitter (a
    /// late callback makes it smaller); the second is jitter-free but offset by the
    /// output's fixed latency. `None` if the stream has no timestamps.
    pub fn raw_frames(&self, at: Instant, stream_ns: u64) -> Option<(f64, f64)> {
        let (frame, ns, stream) = self.snapshot();
        if stream == 0 {
            return None;
        }
        let by_instant = frame as f64 + (self.nanos_of(at) as i128 - ns as i128) as f64 / 1e9 * self.sample_rate;
        let by_stream = frame as f64 + (stream_ns as i128 - stream as i128) as f64 / 1e9 * self.sample_rate;
        Some((by_instant, by_stream))
    }

    /// The frame at which something at raw frame position `raw` should sound.
    pub fn place(&self, raw: f64) -> u64 {
        (raw + self.latency_frames() as f64).max(0.0).round() as u64
    }

    /// The engine frame for something that arrived `offset` frames after `at`
    /// (negative: before), e.g. a JACK MIDI event inside the current cycle.
    pub fn frame_for_offset(&self, at: Instant, offset: i64) -> u64 {
        (self.frame_for(at) as i64 + offset).max(0) as u64
    }

    /// The engine frame at which something arriving at `at` should sound.
    pub fn frame_for(&self, at: Instant) -> u64 {
        let ns = self.nanos_of(at);
        loop {
            let s1 = self.seq.load(Ordering::Acquire);
            let frame = self.frame.load(Ordering::Acquire);
            let base_ns = self.nanos.load(Ordering::Acquire);
            let s2 = self.seq.load(Ordering::Acquire);
            if s1 == s2 && s1.is_multiple_of(2) {
                let elapsed = (ns as i128 - base_ns as i128) as f64 / 1e9;
                let f = frame as f64 + elapsed * self.sample_rate + self.latency_frames() as f64;
                return f.max(0.0).round() as u64;
            }
            std::hint::spin_loop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windowed_min_keeps_two_windows_and_wraps() {
        let mut m = WindowedMin::new(|a: u32, b: u32| (a.wrapping_sub(b) as i32) < 0);
        assert_eq!(m.best(), None);
        // Around the wrap of a 32-bit frame counter, u32::MAX - 1 is before 3.
        m.push(3);
        m.push(u32::MAX - 1);
        m.push(10);
        assert_eq!(m.best(), Some(u32::MAX - 1));
        m.roll();
        assert_eq!(m.best(), Some(u32::MAX - 1), "the previous window still counts");
        m.push(20);
        assert_eq!(m.best(), Some(u32::MAX - 1));
        m.roll();
        assert_eq!(m.best(), Some(20), "a lasting change is followed after two windows");
    }

    #[test]
    fn after_an_overrun_the_next_values_decide() {
        let mut m = WindowedMin::new(|a: u32, b: u32| a < b);
        for _ in 0..10 {
            m.push(100);
        }
        // The offset moved to 228 for good; the first value after came late.
        m.settle_afresh(4);
        assert!(!m.push(356));
        assert_eq!(m.best(), Some(100), "until the new values settle, the old answer stands");
        assert!(!m.push(228));
        assert!(!m.push(228));
        assert!(m.push(240), "the fourth value settles it");
        assert_eq!(m.best(), Some(228));
        m.roll();
        assert_eq!(m.best(), Some(228));
    }
    use std::time::Duration;

    #[test]
    fn keeps_spacing_and_adds_latency() {
        let c = FrameClock::new(48000, 128);
        let t0 = Instant::now();
        c.publish(1000, t0, 0, 128);
        let a = c.frame_for(t0);
        let b = c.frame_for(t0 + Duration::from_millis(10));
        assert_eq!(a, 1000 + 128 + 64);
        assert_eq!(b - a, 480);
        assert_eq!(c.raw_frames(t0, 5), None);
    }

    #[test]
    fn both_clocks_on_the_frame_line() {
        let c = FrameClock::new(48000, 256);
        let t0 = Instant::now();
        c.publish(1000, t0, 1_000_000_000, 256);
        let (i, s) = c.raw_frames(t0 + Duration::from_millis(10), 1_010_000_000).unwrap();
        assert!((i - 1480.0).abs() < 1e-6 && (s - 1480.0).abs() < 1e-6);
        assert_eq!(c.place(1480.0), 1480 + 256 + 64);
    }

    #[test]
    fn jack_events_placed_by_frame_counts() {
        let c = FrameClock::new(48000, 128);
        let t0 = Instant::now();
        c.publish(1000, t0, 5, 128);
        assert_eq!(c.place_jack(77), None, "no JACK frame time published");
        // The JACK frame counter wraps; the engine's does not.
        c.publish_with_jack_frame(1000, t0, 5, 128, Some(u32::MAX - 10));
        assert_eq!(c.place_jack(u32::MAX - 10), Some(1000 + 128 + 64));
        assert_eq!(c.place_jack(20), Some(1000 + 31 + 128 + 64));
        assert_eq!(c.place_jack(u32::MAX - 10 - 128), Some(1000 - 128 + 128 + 64));
        assert_eq!(c.place_jack(1_000_000), None, "a stale publication");
        // And back: the JACK frame time at which an engine frame is handed out.
        assert_eq!(c.jack_frame_of(1000), Some(u32::MAX - 10));
        assert_eq!(c.jack_frame_of(1031), Some(20));
        assert_eq!(c.jack_frame_of(1_000_000), None, "a stale publication");
    }
}
