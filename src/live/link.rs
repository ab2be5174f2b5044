//! Ableton Link for `jamrig play`. [`LinkSession`] lives on the control thread: it
//! joins and leaves the session as the sync mode changes, and proposes tempo and
//! start/stop to it. [`LinkClock`] is its end in the audio callback (the audio
//! thread): it reads the session's timeline for the engine, without allocating,
//! locking or blocking.
//!
//! Link is created at startup but enabled (and so on the network) only while the
//! sync mode is Link. Its callbacks are never registered (rusty_link's closures
//! outlive their stack frame): peers, tempo and start/stop are polled.

use super::clock::WindowedMin;
use super::link_peers::{Heard, PeerWatch};
use crate::engine::sync::{ExternalTimeline, SyncMode};
use rusty_link::{AblLink, SessionState};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// How far ahead of now `:play` starts the session: enough for the start to reach
/// the audio callback and the speaker before it happens, so the first beat is not
/// skipped (the engine starts on the session's next bar line).
pub const START_LEAD: Duration = Duration::from_millis(100);

/// Polls in a row (see [`LinkSession::join_if_playing`]) that must hear the session
/// play while jamrig's state says it does not, before jamrig joins: a peer's stop
/// can reach Link (by a unicast answer) up to 50 ms before its multicast does.
const HEARD_PLAYING_POLLS: u32 = 2;
/// After jamrig itself starts or stops the session, what the peers announced
/// before is not gone by: their next announcements carry the change.
const OWN_CHANGE_HOLD: Duration = Duration::from_secs(1);

/// The quantum used until a Link mode says otherwise.
const DEFAULT_QUANTUM: f64 = 4.0;

/// Frames per window of the audio clock's offset minimum (a quarter of a second at
/// 48 kHz): see [`OffsetFilter`].
const OFFSET_WINDOW_FRAMES: u64 = 12_000;
/// Callbacks after an overrun whose smallest offset replaces the old one.
const OVERRUN_SETTLE_CALLBACKS: u32 = 4;

/// What the control side tells the audio side: a flag and a number, no work.
struct Shared {
    /// Link is enabled: the callback reads the timeline.
    on: AtomicBool,
    /// The session's quantum (f64 bits).
    quantum_bits: AtomicU64,
    /// The output latency the audio callback last measured, in µs: what jamrig
    /// renders now is heard this long from now.
    latency_us: AtomicU64,
}

/// The session as the control thread sees it (for `:status`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LinkStatus {
    pub peers: u64,
    pub bpm: f64,
    pub playing: bool,
}

/// The Link session, owned by the control thread. Everything here may block
/// briefly or allocate: never call it from the audio callback.
pub struct LinkSession {
    link: Arc<AblLink>,
    shared: Arc<Shared>,
    /// Scratch state for captures and proposals on this thread.
    app: SessionState,
    /// The tempo of the set last published, to propose only what a set changes.
    set_bpm: f64,
    /// The session's timeline as last looked at: (Link µs, beat, BPM).
    timeline_seen: Option<(i64, f64, f64)>,
    /// What the peers announce, heard while Link is on (`None` while off, or when
    /// the discovery port could not be opened).
    watch: Option<PeerWatch>,
    /// Why the discovery port could not be opened, until said.
    watch_error: Option<String>,
    /// Polls in a row that heard the session play while jamrig's state said not.
    heard_playing: u32,
    /// When jamrig last started or stopped the session itself.
    own_change_at: Option<Instant>,
}

/// What [`LinkSession::join_if_playing`] found.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum PeersSay {
    /// Nothing to go by (Link off, no peers, jamrig plays, or no clear answer yet).
    Nothing,
    /// The session plays and jamrig's state did not: jamrig has proposed to play
    /// along (from its next bar, its beat left where it is).
    JoinedPlaying { bpm: f64 },
    /// The session's peers say it does not play.
    Stopped,
}

impl LinkSession {
    /// A session at `bpm`, not enabled (no network traffic), with start/stop sync.
    pub fn new(bpm: f64) -> LinkSession {
        let link = AblLink::new(bpm);
        link.enable_start_stop_sync(true);
        LinkSession {
            link: Arc::new(link),
            shared: Arc::new(Shared {
                on: AtomicBool::new(false),
                quantum_bits: AtomicU64::new(DEFAULT_QUANTUM.to_bits()),
                latency_us: AtomicU64::new(0),
            }),
            app: SessionState::new(),
            set_bpm: bpm,
            timeline_seen: None,
            watch: None,
            watch_error: None,
            heard_playing: 0,
            own_change_at: None,
        }
    }

    /// The audio callback's end. Allocates (its session state): control side, once
    /// per audio stream.
    pub fn clock(&self) -> LinkClock {
        LinkClock {
            link: self.link.clone(),
            shared: self.shared.clone(),
            state: SessionState::new(),
            offset: OffsetFilter::default(),
        }
    }

    pub fn is_enabled(&self) -> bool {
        self.shared.on.load(Relaxed)
    }

    /// The quantum the session is aligned at.
    pub fn quantum(&self) -> f64 {
        f64::from_bits(self.shared.quantum_bits.load(Relaxed))
    }

    /// Joins the session (Link on) in Link mode, leaves it otherwise. A set at
    /// `set_bpm` is about to play: joining starts alone at that tempo until peers
    /// are found (an existing session keeps its own tempo); once in the session,
    /// the set's tempo is proposed to it only if `propose` (the set changed it).
    /// Returns whether it proposed a tempo to a session it was already in.
    pub fn follow(&mut self, mode: SyncMode, set_bpm: f64, propose: bool) -> bool {
        self.set_bpm = set_bpm;
        match mode {
            SyncMode::Link { quantum } => {
                self.shared.quantum_bits.store(quantum.to_bits(), Relaxed);
                if !self.link.is_enabled() {
                    // Link keeps the local tempo when it starts a session of its own.
                    self.propose_tempo(set_bpm);
                    // The timeline before any peer is found: joining a session
                    // re-maps it, which `timeline_moved` tells however soon after
                    // enabling the session is found.
                    self.note_timeline();
                    self.link.enable(true);
                    self.shared.on.store(true, Relaxed);
                    self.listen(true);
                } else if propose {
                    self.propose_tempo(set_bpm);
                    return true;
                }
            }
            SyncMode::Internal | SyncMode::Midi => {
                if self.link.is_enabled() {
                    self.shared.on.store(false, Relaxed);
                    self.link.enable(false);
                    self.listen(false);
                }
            }
        }
        false
    }

    /// Starts or stops listening to the peers' announcements (with Link).
    fn listen(&mut self, on: bool) {
        self.heard_playing = 0;
        self.watch = None;
        if on {
            match PeerWatch::open() {
                Ok(w) => self.watch = Some(w),
                Err(e) => {
                    self.watch_error = Some(format!(
                        "Link: cannot listen to the peers' announcements ({e}): if a session jamrig joins already plays, :play joins it at its next bar"
                    ))
                }
            }
        }
    }

    /// Why jamrig cannot hear whether a session it joins plays, once.
    pub fn take_listen_error(&mut self) -> Option<String> {
        self.watch_error.take()
    }

    /// Whether jamrig listens to the peers' announcements.
    pub fn is_listening(&self) -> bool {
        self.watch.is_some()
    }

    /// Reads what the peers announced since the last call and, when the session
    /// jamrig is in plays while Link tells jamrig it does not (Link hands a
    /// newcomer start/stop changes only), joins it as `:play` does: the session's
    /// beat stays where it is and jamrig plays from its next bar line. Needs the
    /// session identified without doubt (see [`PeerTable::session_at`]), heard
    /// playing on [`HEARD_PLAYING_POLLS`] polls in a row, and no start or stop of
    /// jamrig's own in the last [`OWN_CHANGE_HOLD`]. Control thread, every poll.
    ///
    /// [`PeerTable::session_at`]: super::link_peers::PeerTable::session_at
    pub fn join_if_playing(&mut self) -> PeersSay {
        let now = Instant::now();
        let Some(watch) = self.watch.as_mut() else { return PeersSay::Nothing };
        watch.poll(now);
        let peers = self.link.num_peers();
        self.link.capture_app_session_state(&mut self.app);
        let (bpm, playing) = (self.app.tempo(), self.app.is_playing());
        let held = self.own_change_at.is_some_and(|t| now.duration_since(t) < OWN_CHANGE_HOLD);
        if !self.link.is_enabled() || peers == 0 || held {
            self.heard_playing = 0;
            return PeersSay::Nothing;
        }
        match watch.table.session_at(bpm, peers) {
            Heard::Playing if !playing => {
                self.heard_playing += 1;
                if self.heard_playing >= HEARD_PLAYING_POLLS {
                    self.heard_playing = 0;
                    self.propose_start();
                    return PeersSay::JoinedPlaying { bpm };
                }
                PeersSay::Nothing
            }
            Heard::Stopped => {
                self.heard_playing = 0;
                PeersSay::Stopped
            }
            _ => {
                self.heard_playing = 0;
                PeersSay::Nothing
            }
        }
    }

    /// The tempo of the set last published.
    pub fn set_bpm(&self) -> f64 {
        self.set_bpm
    }

    /// The moment (Link µs) at which what jamrig renders now is heard: now plus
    /// the output latency the audio callback measured.
    fn heard_now(&self) -> i64 {
        self.link.clock_micros() + self.shared.latency_us.load(Relaxed) as i64
    }

    /// Peers in the session besides us (0 when Link is off).
    pub fn peers(&self) -> u64 {
        self.link.num_peers()
    }

    /// The session's peers, tempo and start/stop state.
    pub fn status(&mut self) -> LinkStatus {
        self.link.capture_app_session_state(&mut self.app);
        LinkStatus { peers: self.link.num_peers(), bpm: self.app.tempo(), playing: self.app.is_playing() }
    }

    /// Proposes `bpm` to the session, from the moment what jamrig renders now is
    /// heard (now plus the output latency).
    pub fn propose_tempo(&mut self, bpm: f64) {
        self.link.capture_app_session_state(&mut self.app);
        self.app.set_tempo(bpm, self.heard_now());
        self.link.commit_app_session_state(&self.app);
    }

    /// Proposes to start the session. Alone, beat 0 is put [`START_LEAD`] from now.
    /// With peers, the session's beat is left where it is (a session that already
    /// plays, which Link does not tell a newcomer, goes on undisturbed): it plays
    /// from [`START_LEAD`] from now, and jamrig from the next bar line after that.
    pub fn propose_start(&mut self) {
        self.own_change_at = Some(Instant::now());
        self.link.capture_app_session_state(&mut self.app);
        let at = self.link.clock_micros() + START_LEAD.as_micros() as i64;
        if self.link.num_peers() == 0 {
            self.app.set_is_playing_and_request_beat_at_time(true, at, 0.0, self.quantum());
        } else {
            self.app.set_is_playing(true, at);
        }
        self.link.commit_app_session_state(&self.app);
    }

    /// Whether the session's timeline has been re-mapped since the last call (its
    /// beat now is not where the last one's, at its tempo, puts it): jamrig has
    /// joined another session, or the timeline was moved. Jamrig's own proposals
    /// are not counted when [`LinkSession::note_timeline`] follows them.
    pub fn timeline_moved(&mut self) -> bool {
        let before = self.timeline_seen;
        self.note_timeline();
        match (before, self.timeline_seen) {
            (Some((t0, b0, bpm)), Some((t1, b1, _))) => (b1 - (b0 + (t1 - t0) as f64 * bpm / 60e6)).abs() > 0.01,
            _ => false,
        }
    }

    /// Notes the session's timeline as it is now.
    pub fn note_timeline(&mut self) {
        let now = self.link.clock_micros();
        self.link.capture_app_session_state(&mut self.app);
        self.timeline_seen = Some((now, self.app.beat_at_time(now, self.quantum()), self.app.tempo()));
    }

    /// Link's clock now, in µs.
    pub fn clock_micros(&self) -> i64 {
        self.link.clock_micros()
    }

    /// The session's beat at Link time `micros`, at the session's quantum.
    pub fn beat_at(&mut self, micros: i64) -> f64 {
        self.link.capture_app_session_state(&mut self.app);
        self.app.beat_at_time(micros, self.quantum())
    }

    /// Proposes to stop the session, from the moment what jamrig renders now is
    /// heard.
    pub fn propose_stop(&mut self) {
        self.own_change_at = Some(Instant::now());
        self.link.capture_app_session_state(&mut self.app);
        self.app.set_is_playing(false, self.heard_now());
        self.link.commit_app_session_state(&self.app);
    }
}

impl Drop for LinkSession {
    fn drop(&mut self) {
        self.shared.on.store(false, Relaxed);
        self.link.enable(false);
    }
}

/// The audio callback's end of the Link session: the timeline at the frame the
/// callback hands out first. Built on the control side ([`LinkSession::clock`]).
pub struct LinkClock {
    link: Arc<AblLink>,
    shared: Arc<Shared>,
    /// Preallocated: captures overwrite it in place.
    state: SessionState,
    offset: OffsetFilter,
}

impl LinkClock {
    /// Audio thread: the audio device has just had an overrun (frames were lost, so
    /// later frames sound later than before): the offset between the host clock and
    /// the frame line is measured afresh from the next callback, rather than kept
    /// from before for up to two windows.
    #[inline]
    pub fn after_overrun(&mut self) {
        self.offset.restart();
    }

    /// Audio thread. The session's timeline for engine frame `frame`, which reaches
    /// the speaker `latency` from now (the callback's output latency: cpal's
    /// playback timestamp minus its callback timestamp), at `sample_rate`; `None`
    /// while Link is off. No allocation, lock or system call beyond reading the
    /// clock.
    #[inline]
    pub fn timeline(&mut self, frame: u64, latency: Duration, sample_rate: f64) -> Option<ExternalTimeline> {
        if !self.shared.on.load(Relaxed) {
            return None;
        }
        self.link.capture_audio_session_state(&mut self.state);
        let quantum = f64::from_bits(self.shared.quantum_bits.load(Relaxed));
        self.shared.latency_us.store(latency.as_micros() as u64, Relaxed);
        let heard_us = self.link.clock_micros() as f64 + latency.as_nanos() as f64 / 1e3;
        let at = self.offset.host_time(frame, heard_us, sample_rate);
        Some(ExternalTimeline {
            frame,
            beat: self.state.beat_at_time(at.round() as i64, quantum),
            bpm: self.state.tempo(),
            playing: self.state.is_playing(),
        })
    }
}

/// Smooths the moment each callback's first frame is heard (host µs) against the
/// frame count. A callback that runs late (the machine is busy, or it runs after
/// its device cycle has ended) measures from a later moment and places its frames
/// later than they sound, never earlier; so the offset between host time and the
/// frame line is taken as the smallest seen over the last one or two windows of
/// [`OFFSET_WINDOW_FRAMES`]. A lasting change (frames lost in an underrun) is
/// followed within two windows; an earlier offset at once; and at once after an
/// overrun the device reports ([`LinkClock::after_overrun`]).
struct OffsetFilter {
    /// Smallest `host µs - frame µs` in this window and the last.
    offset: WindowedMin<f64>,
    window_end: u64,
}

impl Default for OffsetFilter {
    fn default() -> Self {
        OffsetFilter { offset: WindowedMin::new(|a, b| a < b), window_end: 0 }
    }
}

impl OffsetFilter {
    /// The offset may have moved for good (an overrun): the smallest of the next
    /// [`OVERRUN_SETTLE_CALLBACKS`] callbacks' offsets replaces it.
    fn restart(&mut self) {
        self.offset.settle_afresh(OVERRUN_SETTLE_CALLBACKS);
    }

    /// The host time (µs) at which `frame` is heard, given that a callback has just
    /// measured it at `heard_us`.
    fn host_time(&mut self, frame: u64, heard_us: f64, sample_rate: f64) -> f64 {
        let frame_us = frame as f64 * 1e6 / sample_rate.max(1.0);
        let offset = heard_us - frame_us;
        self.offset.push(offset);
        if frame >= self.window_end {
            self.offset.roll();
            self.window_end = frame + OFFSET_WINDOW_FRAMES;
        }
        frame_us + self.offset.best().unwrap_or(offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn late_callbacks_do_not_move_the_frame_line() {
        let mut f = OffsetFilter::default();
        let sr = 48000.0;
        // 128-frame callbacks heard at 1 s + frame time; every 7th runs 3 ms late.
        for k in 0..400u64 {
            let frame = k * 128;
            let late = if k % 7 == 3 { 3000.0 } else { 0.0 };
            let t = f.host_time(frame, 1e6 + frame as f64 * 1e6 / sr + late, sr);
            if k > 0 {
                assert!((t - (1e6 + frame as f64 * 1e6 / sr)).abs() < 1e-6, "callback {k}: {t}");
            }
        }
    }

    #[test]
    fn a_lasting_change_is_followed_within_two_windows() {
        let mut f = OffsetFilter::default();
        let sr = 48000.0;
        let heard = |frame: u64, shift: f64| 1e6 + frame as f64 * 1e6 / sr + shift;
        let mut frame = 0;
        while frame < 48_000 {
            f.host_time(frame, heard(frame, 0.0), sr);
            frame += 128;
        }
        // The device lost 10 ms (an underrun): from now on frames sound later.
        let mut t = 0.0;
        for _ in 0..(2 * OFFSET_WINDOW_FRAMES / 128 + 2) {
            t = f.host_time(frame, heard(frame, 10_000.0), sr);
            frame += 128;
        }
        assert!((t - heard(frame - 128, 10_000.0)).abs() < 1e-6);
        // Earlier again: followed at once.
        assert!((f.host_time(frame, heard(frame, -5_000.0), sr) - heard(frame, -5_000.0)).abs() < 1e-6);
    }

    /// Regression (issue 13, item 9): after an overrun, Link clicks were late by
    /// the stall for up to two windows. Restarted after the overrun, the filter
    /// takes the new (later) offset after a few callbacks, the first of them late.
    #[test]
    fn an_overrun_restarts_the_offset_at_once() {
        let mut f = OffsetFilter::default();
        let sr = 48000.0;
        let heard = |frame: u64, shift: f64| 1e6 + frame as f64 * 1e6 / sr + shift;
        let mut frame = 0;
        while frame < 48_000 {
            f.host_time(frame, heard(frame, 0.0), sr);
            frame += 128;
        }
        f.restart();
        for k in 0..100u64 {
            let late = if k % 5 == 0 { 2_000.0 } else { 0.0 };
            let t = f.host_time(frame, heard(frame, 8_000.0 + late), sr);
            if k + 1 >= OVERRUN_SETTLE_CALLBACKS as u64 {
                assert!((t - heard(frame, 8_000.0)).abs() < 1e-6, "callback {k} after the overrun: {t}");
            }
            frame += 128;
        }
    }
}
