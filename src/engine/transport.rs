//! The transport, on the audio thread: tempo, playing flag and beat position, kept
//! as an anchor (a frame and its beat) plus a tempo, so that beat <-> frame is an
//! exact function rather than an accumulated sum (no drift, and a beat lands on the
//! same frame at every block size).

/// The tempos a set, `:tempo` and the sync sources may give, in BPM: what the
/// transport follows (Ableton Link's own range).
pub const TEMPO_RANGE_BPM: std::ops::RangeInclusive<f64> = 20.0..=999.0;

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

    /// Plays from `beat` at `frame`, at `bpm` (an external source starting).
    pub fn play_at(&mut self, frame: u64, beat: f64, bpm: f64) {
        self.locate(frame, beat);
        self.set_tempo_value(bpm);
        self.playing = true;
    }

    /// Follows an external source whose beat at `frame` is `target` and whose tempo
    /// is `bpm`. The beat stays continuous at `frame` (nothing is skipped or played
    /// twice); the rate is nudged so the phase error closes over `horizon_beats`.
    /// An error beyond `jump_beats` is taken at once (a relocation). Returns whether
    /// it jumped.
    pub fn follow(&mut self, frame: u64, target: f64, bpm: f64, horizon_beats: f64, jump_beats: f64) -> bool {
        if !self.playing {
            self.locate(frame, target);
            self.set_tempo_value(bpm);
            return false;
        }
        self.reanchor(frame);
        self.set_tempo_value(bpm);
        let error = target - self.anchor_beat;
        if error.abs() > jump_beats {
            self.anchor_beat = target;
            return true;
        }
        // Beats per frame: the source's rate plus the correction, kept within a
        // factor of two of it (never backwards).
        let rate = 1.0 / self.frames_per_beat;
        let nudged = (rate + error / (horizon_beats.max(1e-3) * self.frames_per_beat)).clamp(0.5 * rate, 2.0 * rate);
        self.frames_per_beat = 1.0 / nudged;
        false
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
    fn following_keeps_the_beat_continuous_and_closes_the_error() {
        let mut t = Transport::new(48000.0, 120.0);
        t.start(0);
        // The source runs 0.01 beat ahead: no jump, the beat at the frame is
        // unchanged, and after the horizon the error is (nearly) gone.
        let at = 24000;
        let before = t.beat_at(at);
        assert!(!t.follow(at, before + 0.01, 120.0, 0.25, 0.25));
        assert!((t.beat_at(at) - before).abs() < 1e-12);
        assert_eq!(t.tempo(), 120.0);
        let later = at + 6000; // a quarter beat
        assert!((t.beat_at(later) - (before + 0.25 + 0.01)).abs() < 1e-9);
        // A large error jumps.
        assert!(t.follow(later, 10.0, 120.0, 0.25, 0.25));
        assert_eq!(t.beat_at(later), 10.0);
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
