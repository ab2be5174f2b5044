//! Where the transport takes its tempo, beat and start/stop from, and the MIDI
//! clock follower. Everything here runs on the audio thread: fixed-size state, no
//! allocation.
//!
//! The follower is phase-locked to the tick count: tick `k` after Start is beat
//! `k / 24`, at the frame a straight-line fit through the recent ticks puts it at.
//! The fit smooths the arrival jitter; tempo comes from its slope. Because the beat
//! is tied to the count of ticks, not to an integrated tempo, the pattern cannot
//! drift against the clock however long it runs.

/// MIDI clock ticks per quarter note.
pub const CLOCK_PPQN: u32 = 24;
/// Ticks in the tempo fit at steady tempo (four beats).
pub const FIT_WINDOW: usize = 96;
/// A residual this many times the measured jitter counts towards a tempo change.
const CHANGE_SIGMAS: f64 = 3.0;
/// Residuals in a row, all one side, that declare a tempo change (the fit restarts).
const CHANGE_RUN: u32 = 3;
/// Ticks over which the jitter measure averages.
const JITTER_AVERAGE_TICKS: f64 = 64.0;
/// The smallest jitter assumed, in seconds (below it, timestamps are exact).
const JITTER_FLOOR_S: f64 = 0.000_25;
/// A gap longer than this many tick periods means the clock stopped and restarted.
const GAP_TICKS: f64 = 4.0;
/// Beats over which a phase error to the MIDI clock is closed (the rate is nudged):
/// one tick, so each tick's fitted frame is met by the next (the fit has already
/// smoothed the jitter).
pub const CLOCK_HORIZON_BEATS: f64 = 1.0 / CLOCK_PPQN as f64;
/// The same for Link, whose timeline is smooth: a sixteenth note.
pub const LINK_HORIZON_BEATS: f64 = 0.25;
/// A phase error beyond this (in beats) is corrected by a jump, not a nudge.
pub const JUMP_BEATS: f64 = 0.25;

/// Where the transport takes its tempo and start/stop from.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum SyncMode {
    /// The set's tempo, `:tempo`, `:play` and `:stop`.
    Internal,
    /// MIDI clock, Start/Stop/Continue and Song Position from the input port.
    Midi,
    /// An Ableton Link session, aligned at `quantum` beats.
    Link { quantum: f64 },
}

impl SyncMode {
    pub fn name(&self) -> &'static str {
        match self {
            SyncMode::Internal => "internal",
            SyncMode::Midi => "midi",
            SyncMode::Link { .. } => "link",
        }
    }
}

/// An external session's timeline (Ableton Link), captured by the audio callback:
/// the session's beat at the moment engine frame `frame` reaches the speaker (the
/// output latency already accounted for), its tempo and whether it plays. The
/// engine extrapolates it to each tick.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ExternalTimeline {
    pub frame: u64,
    pub beat: f64,
    pub bpm: f64,
    pub playing: bool,
}

impl ExternalTimeline {
    /// The session's beat at `frame`.
    pub fn beat_at(&self, frame: u64, sample_rate: f64) -> f64 {
        self.beat + (frame as f64 - self.frame as f64) * self.bpm / (60.0 * sample_rate)
    }
}

/// What a MIDI clock message asks of the transport, once the follower has read it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ClockAction {
    /// Nothing to do (not running, or waiting for the first tick after Start).
    None,
    /// Start playing: `beat` at `frame` (the first tick after Start or Continue).
    Play { frame: f64, beat: f64 },
    /// Keep playing, following: the beat at the tick's fitted frame, and the rate.
    Follow { frame: f64, beat: f64, frames_per_beat: f64 },
    /// Stop (release the pattern notes); the position is kept.
    Stop,
    /// Stopped, at a new position (Song Position Pointer), in beats.
    Locate { beat: f64 },
}

/// The MIDI clock follower: a tempo fit over the recent ticks, and the song
/// position in ticks.
#[derive(Clone, Debug)]
pub struct ClockFollower {
    sample_rate: f64,
    /// Frames of the ticks in the fit, oldest first from `head` (a ring).
    ring: [f64; FIT_WINDOW],
    head: usize,
    len: usize,
    /// Fit: frame = intercept + slope * i, for i the tick's place in the ring (the
    /// oldest is 0). Valid when `len >= 2`.
    slope: f64,
    intercept: f64,
    /// Measured jitter (frames, RMS): from the second differences of successive
    /// ticks, which a steady or slowly changing tempo leaves at zero, so that a
    /// tempo ramp is not mistaken for jitter.
    jitter: f64,
    /// The tick before the last, for the second difference.
    prev: Option<f64>,
    /// Consecutive one-sided large residuals (sign in `run_sign`).
    run: u32,
    run_sign: f64,
    /// The clock drives the transport (between Start/Continue and Stop).
    running: bool,
    /// Start or Continue seen; the next tick starts playback.
    armed: bool,
    /// Song position of the next tick, in ticks.
    song_tick: u64,
    /// Frame of the last tick.
    last_frame: Option<f64>,
}

impl ClockFollower {
    pub fn new(sample_rate: f64) -> Self {
        ClockFollower {
            sample_rate,
            ring: [0.0; FIT_WINDOW],
            head: 0,
            len: 0,
            slope: 0.0,
            intercept: 0.0,
            jitter: 0.0,
            prev: None,
            run: 0,
            run_sign: 0.0,
            running: false,
            armed: false,
            song_tick: 0,
            last_frame: None,
        }
    }

    /// The clock's tempo, once two ticks have been seen.
    pub fn tempo(&self) -> Option<f64> {
        (self.len >= 2 && self.slope > 0.0).then(|| 60.0 * self.sample_rate / (self.slope * CLOCK_PPQN as f64))
    }

    /// Frames per beat by the fit.
    pub fn frames_per_beat(&self) -> Option<f64> {
        (self.len >= 2 && self.slope > 0.0).then_some(self.slope * CLOCK_PPQN as f64)
    }

    /// The clock drives playback (Start or Continue seen, no Stop since).
    pub fn is_running(&self) -> bool {
        self.running
    }

    /// Song position of the next tick, in ticks.
    pub fn song_tick(&self) -> u64 {
        self.song_tick
    }

    /// Takes over a running transport at `beat` (switching to MIDI clock while
    /// playing): the next tick continues from there, so nothing jumps.
    pub fn adopt_running(&mut self, beat: f64) {
        self.running = true;
        self.armed = false;
        self.song_tick = (beat * CLOCK_PPQN as f64).round().max(0.0) as u64;
    }

    /// Forgets the position state (switching away from MIDI clock); the tempo fit
    /// is kept.
    pub fn release(&mut self) {
        self.running = false;
        self.armed = false;
    }

    /// MIDI Start: from the top at the next tick.
    pub fn start(&mut self) -> ClockAction {
        self.running = true;
        self.armed = true;
        self.song_tick = 0;
        ClockAction::Locate { beat: 0.0 }
    }

    /// MIDI Continue: from the current song position at the next tick.
    pub fn resume(&mut self) -> ClockAction {
        self.running = true;
        self.armed = true;
        ClockAction::None
    }

    /// MIDI Stop.
    pub fn stop(&mut self) -> ClockAction {
        let was = self.running;
        self.running = false;
        self.armed = false;
        if was { ClockAction::Stop } else { ClockAction::None }
    }

    /// Song Position Pointer, in MIDI beats (sixteenths, six ticks each). Only
    /// while stopped, as the specification says.
    pub fn song_position(&mut self, sixteenths: u16) -> ClockAction {
        if self.running && !self.armed {
            return ClockAction::None;
        }
        self.song_tick = sixteenths as u64 * 6;
        ClockAction::Locate { beat: self.song_tick as f64 / CLOCK_PPQN as f64 }
    }

    /// A clock tick at `frame`.
    pub fn tick(&mut self, frame: u64) -> ClockAction {
        let f = frame as f64;
        self.observe(f);
        if !self.running {
            return ClockAction::None;
        }
        let k = self.song_tick;
        self.song_tick += 1;
        let beat_of_tick = k as f64 / CLOCK_PPQN as f64;
        let Some(fpb) = self.frames_per_beat() else {
            // Only one tick known: start on it; the rate follows from the next one.
            return if self.armed {
                self.armed = false;
                ClockAction::Play { frame: f, beat: beat_of_tick }
            } else {
                ClockAction::None
            };
        };
        let fitted = self.fitted_last();
        if self.armed {
            self.armed = false;
            return ClockAction::Play { frame: fitted, beat: beat_of_tick };
        }
        ClockAction::Follow { frame: fitted, beat: beat_of_tick, frames_per_beat: fpb }
    }

    /// The fit's frame for the newest tick.
    fn fitted_last(&self) -> f64 {
        self.intercept + self.slope * (self.len - 1) as f64
    }

    /// Adds a tick to the tempo fit, restarting it on a gap or a tempo change.
    fn observe(&mut self, f: f64) {
        if let Some(last) = self.last_frame {
            let gap = f - last;
            let period = if self.len >= 2 { self.slope } else { gap };
            if gap <= 0.0 || (self.len >= 2 && gap > GAP_TICKS * period) {
                self.restart();
            }
        }
        if let (Some(b), Some(c)) = (self.prev, self.last_frame) {
            let d2 = f - 2.0 * c + b;
            let var = d2 * d2 / 6.0;
            let w = 1.0 / JITTER_AVERAGE_TICKS;
            self.jitter = (self.jitter * self.jitter * (1.0 - w) + var * w).sqrt();
        }
        self.prev = self.last_frame;
        self.last_frame = Some(f);
        if self.len >= 3 {
            let predicted = self.intercept + self.slope * self.len as f64;
            let r = f - predicted;
            let floor = JITTER_FLOOR_S * self.sample_rate;
            let sigma = self.jitter.max(floor);
            if r.abs() > CHANGE_SIGMAS * sigma {
                let sign = r.signum();
                if self.run > 0 && sign == self.run_sign {
                    self.run += 1;
                } else {
                    self.run = 1;
                    self.run_sign = sign;
                }
            } else {
                self.run = 0;
            }
            if self.run >= CHANGE_RUN {
                // The tempo moved: keep only the ticks since the change began.
                self.keep_last(CHANGE_RUN as usize - 1);
                self.run = 0;
            }
        }
        self.push(f);
        self.fit();
    }

    fn restart(&mut self) {
        self.len = 0;
        self.head = 0;
        self.run = 0;
        self.prev = None;
    }

    fn keep_last(&mut self, n: usize) {
        let n = n.min(self.len);
        self.head = (self.head + self.len - n) % FIT_WINDOW;
        self.len = n;
    }

    fn push(&mut self, f: f64) {
        if self.len == FIT_WINDOW {
            self.ring[self.head] = f;
            self.head = (self.head + 1) % FIT_WINDOW;
        } else {
            self.ring[(self.head + self.len) % FIT_WINDOW] = f;
            self.len += 1;
        }
    }

    /// Least squares over the ring (relative to the oldest frame, for precision).
    fn fit(&mut self) {
        let n = self.len;
        if n < 2 {
            return;
        }
        let base = self.ring[self.head];
        let nf = n as f64;
        let mean_i = (nf - 1.0) / 2.0;
        let mut mean_y = 0.0;
        for i in 0..n {
            mean_y += self.ring[(self.head + i) % FIT_WINDOW] - base;
        }
        mean_y /= nf;
        let (mut sxy, mut sxx) = (0.0, 0.0);
        for i in 0..n {
            let di = i as f64 - mean_i;
            sxy += di * (self.ring[(self.head + i) % FIT_WINDOW] - base - mean_y);
            sxx += di * di;
        }
        self.slope = sxy / sxx;
        self.intercept = base + mean_y - self.slope * mean_i;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SR: f64 = 48000.0;

    fn period(bpm: f64) -> f64 {
        60.0 * SR / (bpm * CLOCK_PPQN as f64)
    }

    #[test]
    fn steady_clock_gives_its_tempo_and_ticks_are_beats() {
        let mut f = ClockFollower::new(SR);
        f.start();
        let p = period(123.0);
        let mut last = ClockAction::None;
        for k in 0..200u64 {
            last = f.tick((1000.0 + k as f64 * p).round() as u64);
            if k == 0 {
                assert!(matches!(last, ClockAction::Play { beat, .. } if beat == 0.0));
            }
        }
        assert!((f.tempo().unwrap() - 123.0).abs() < 0.01, "{:?}", f.tempo());
        match last {
            ClockAction::Follow { frame, beat, .. } => {
                assert_eq!(beat, 199.0 / 24.0);
                assert!((frame - (1000.0 + 199.0 * p)).abs() < 1.0);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_tempo_step_restarts_the_fit() {
        let mut f = ClockFollower::new(SR);
        let mut t = 0.0;
        for _ in 0..200 {
            f.tick(t as u64);
            t += period(120.0);
        }
        for _ in 0..12 {
            f.tick(t as u64);
            t += period(130.0);
        }
        assert!((f.tempo().unwrap() - 130.0).abs() < 0.2, "{:?}", f.tempo());
    }

    #[test]
    fn stop_continue_and_song_position() {
        let mut f = ClockFollower::new(SR);
        let p = period(120.0);
        assert_eq!(f.start(), ClockAction::Locate { beat: 0.0 });
        let mut t = 0.0;
        for _ in 0..48 {
            f.tick(t as u64);
            t += p;
        }
        assert_eq!(f.stop(), ClockAction::Stop);
        assert_eq!(f.song_tick(), 48);
        assert_eq!(f.tick(t as u64), ClockAction::None);
        t += p;
        assert_eq!(f.song_position(16), ClockAction::Locate { beat: 4.0 });
        f.resume();
        match f.tick(t as u64) {
            ClockAction::Play { beat, .. } => assert_eq!(beat, 4.0),
            other => panic!("{other:?}"),
        }
    }
}
