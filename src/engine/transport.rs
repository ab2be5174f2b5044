//! The transport, on the audio thread: tempo, playing flag and beat position, kept
//! as an anchor (a frame and its beat) plus a tempo, so that beat <-> frame is an
//! exact function rather than an accumulated sum (no drift, and a beat lands on the
//! same frame at every block size).

/// Frames within this of a beat count as on it (absorbs rounding in `frame_at`).
const EPSILON_FRAMES: f64 = 1e-6;

#[derive(Clone, Debug)]
pub struct Transport {
    sample_rate: f64,
    playing: bool,
    tempo_bpm: f64,
    frames_per_beat: f64,
    anchor_frame: u64,
    anchor_beat: f64,
}

impl Transport {
    pub fn new(sample_rate: f64, tempo_bpm: f64) -> Self {
        let mut t = Transport {
            sample_rate,
            playing: false,
            tempo_bpm: 0.0,
            frames_per_beat: 0.0,
            anchor_frame: 0,
            anchor_beat: 0.0,
        };
        t.set_tempo_value(tempo_bpm);
        t
    }

    fn set_tempo_value(&mut self, bpm: f64) {
        self.tempo_bpm = bpm.clamp(1.0, 999.0);
        self.frames_per_beat = 60.0 * self.sample_rate / self.tempo_bpm;
    }

    pub fn is_playing(&self) -> bool {
        self.playing
    }

    pub fn tempo(&self) -> f64 {
        self.tempo_bpm
    }

    pub fn frames_per_beat(&self) -> f64 {
        self.frames_per_beat
    }

    /// The beat at `frame` (while stopped: the beat where it stopped).
    #[inline]
    pub fn beat_at(&self, frame: u64) -> f64 {
        if !self.playing {
            return self.anchor_beat;
        }
        self.anchor_beat + (frame as f64 - self.anchor_frame as f64) / self.frames_per_beat
    }

    /// The first frame at or after `beat` (while playing).
    #[inline]
    pub fn frame_at(&self, beat: f64) -> u64 {
        let offset = (beat - self.anchor_beat) * self.frames_per_beat;
        let f = self.anchor_frame as f64 + (offset - EPSILON_FRAMES).ceil();
        f.max(0.0) as u64
    }

    /// Changes the tempo from `frame` on, keeping the beat position continuous.
    pub fn set_tempo(&mut self, frame: u64, bpm: f64) {
        self.reanchor(frame);
        self.set_tempo_value(bpm);
    }

    fn reanchor(&mut self, frame: u64) {
        self.anchor_beat = self.beat_at(frame);
        self.anchor_frame = frame;
    }

    /// Starts from beat 0 at `frame`.
    pub fn start(&mut self, frame: u64) {
        self.locate(frame, 0.0);
        self.playing = true;
    }

    /// Stops at `frame`, remembering the beat.
    pub fn stop(&mut self, frame: u64) {
        if self.playing {
            self.reanchor(frame);
            self.playing = false;
        }
    }

    /// Continues from where it stopped.
    pub fn resume(&mut self, frame: u64) {
        if !self.playing {
            self.anchor_frame = frame;
            self.playing = true;
        }
    }

    /// Puts `beat` at `frame`.
    pub fn locate(&mut self, frame: u64, beat: f64) {
        self.anchor_frame = frame;
        self.anchor_beat = beat;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn beats_land_on_exact_frames() {
        let mut t = Transport::new(48000.0, 120.0);
        t.start(0);
        for b in 0..1000 {
            assert_eq!(t.frame_at(b as f64), b as u64 * 24000);
            assert_eq!(t.frame_at(b as f64 + 0.5), b as u64 * 24000 + 12000);
        }
        assert_eq!(t.frame_at(1.0 / 3.0), 8000);
    }

    #[test]
    fn tempo_change_keeps_position() {
        let mut t = Transport::new(48000.0, 120.0);
        t.start(0);
        t.set_tempo(24000, 60.0);
        assert!((t.beat_at(24000) - 1.0).abs() < 1e-12);
        assert_eq!(t.frame_at(2.0), 24000 + 48000);
    }

    #[test]
    fn stop_and_continue() {
        let mut t = Transport::new(48000.0, 120.0);
        t.start(100);
        t.stop(100 + 36000);
        assert!((t.beat_at(999_999) - 1.5).abs() < 1e-12);
        t.resume(200_000);
        assert_eq!(t.frame_at(2.0), 200_000 + 12000);
    }
}
