//! The control thread of `jamrig play`: owns the session (the set), the engine's
//! controller, the audio stream, the MIDI connection and the Link session, and
//! handles REPL lines, saves of the set, and devices that come and go. It may
//! allocate and block; the audio thread never waits for it.

use super::audio::{self, AudioError, Chosen};
use super::clock::FrameClock;
use super::link::{LinkSession, PeersSay};
use super::listen::{ListenOptions, Listener, Remote, Reply};
use super::midi::{self, LogRecord, MIDI_LOG_CAP, MidiIn, MidiTap};
use super::midi_out::OutShared;
use super::stats::LiveStats;
use super::watch::{self, SetWatcher};
use crate::capture::recorder::{RecordTap, Recorder};
use crate::capture::session::SessionCapture;
use crate::engine::EngineStats;
use crate::engine::event::{Event, EventKind};
use crate::engine::snapshot::MAX_CHANNELS;
use crate::params::Param;
use crate::rig::Controller;
use crate::rig::build::BuildError;
use crate::rig::controller::{EventSender, Rig};
use crate::rig::set::{Set, SyncMode};
use crate::script::ScriptHost;
use crate::script::diagnostic::Diagnostic;
use crate::script::session::{Publish, Reload, Session};
use crate::tables::Tables;
use crate::text::plural;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use crossbeam_queue::ArrayQueue;
use std::cell::{Cell, RefCell};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long file events are merged into one reload.
const WATCH_SETTLE: Duration = Duration::from_millis(5);
/// How often lost devices are looked for.
const DEVICE_POLL: Duration = Duration::from_secs(1);
/// The control loop's idle wake-up (freeing retired snapshots, printing the log).
const IDLE_WAKE: Duration = Duration::from_millis(5);
/// Longest wait for released notes to ring out when stopping.
const STOP_FADE: Duration = Duration::from_millis(400);
/// Longest wait for the MIDI output to take what the engine queued when stopping.
const OUT_DRAIN: Duration = Duration::from_millis(200);
/// Beyond the output's latency, how long the MIDI output is left to send the last
/// messages when stopping.
const OUT_DRAIN_MARGIN: Duration = Duration::from_millis(10);
/// How often the Link session's peer count is looked at (a change is printed).
const LINK_POLL: Duration = Duration::from_millis(200);
/// An open stream whose callback has not run for this long has lost its device
/// (a server behind ALSA's jack plugin that died leaves the stream open and
/// silent, with no error).
const STALL: Duration = Duration::from_secs(1);
/// How long a new stream may take to run its first callback before a stall counts.
const START_GRACE: Duration = Duration::from_secs(2);

/// Watches an open stream's callback count for a stall.
struct StallWatch {
    callbacks: u64,
    /// The last moment the count moved (or the stream opened, plus the grace).
    moved: Instant,
}

impl StallWatch {
    fn new() -> StallWatch {
        StallWatch { callbacks: 0, moved: Instant::now() + START_GRACE }
    }

    /// Whether the callback has stalled, given its count now.
    fn stalled(&mut self, callbacks: u64) -> bool {
        let now = Instant::now();
        if callbacks != self.callbacks {
            self.callbacks = callbacks;
            self.moved = self.moved.max(now);
            return false;
        }
        now.saturating_duration_since(self.moved) >= STALL
    }
}

#[derive(Clone, Debug)]
pub struct PlayOptions {
    pub set: PathBuf,
    pub port: Option<String>,
    pub buffer: u32,
    pub device: Option<String>,
    pub repl: bool,
    pub watch: bool,
    pub sync: Option<SyncMode>,
    /// Record the whole run into this MIDI file, written on exit.
    pub record: Option<PathBuf>,
    /// Record the notes the patterns play too (on their channels).
    pub record_patterns: bool,
    /// Capture the session (everything that shapes the sound) into this folder.
    pub capture: Option<PathBuf>,
    /// Take REPL lines and OSC messages on this port (`--listen`).
    pub listen: Option<ListenOptions>,
    /// Connect the MIDI output to this device (a name or an index).
    pub midi_out: Option<String>,
    /// Send MIDI clock whatever the set says.
    pub clock_out: bool,
    /// Folders beyond the set's own that its samples and fonts may come from.
    pub samples: Vec<PathBuf>,
}

/// Messages to the control thread.
pub enum Msg {
    /// A REPL line; the reply says whether to go on.
    Line(String, Sender<bool>),
    /// A watched file was written.
    FileChanged(PathBuf),
    /// A request from the control port; the reply goes back to its sender.
    Remote(Remote),
    Quit,
}

/// Where the control thread prints (above the REPL prompt when there is one).
pub type Out = Arc<Mutex<Box<dyn FnMut(&str) + Send>>>;

/// The render threads and whether the workers got realtime priority, in one line.
fn render_threads_line(stats: &EngineStats) -> String {
    let threads = stats.render_threads.load(Relaxed);
    let workers = threads.saturating_sub(1);
    let rt = stats.realtime_workers.load(Relaxed);
    let who = if workers == 1 { "the worker".to_string() } else { format!("{workers} workers") };
    let priority = if rt == workers {
        format!("{who} at realtime priority")
    } else if rt == 0 {
        format!("{who} without realtime priority (the system refused it: allow this user realtime scheduling)")
    } else {
        format!("{rt} of {workers} workers at realtime priority (allow this user realtime scheduling for all)")
    };
    format!("render: {}, {priority}", plural(threads.into(), "thread"))
}

/// The `render:` line of `:status`: threads, and how the work was shared out.
fn render_line(stats: &EngineStats) -> String {
    if stats.render_threads.load(Relaxed) <= 1 {
        return "render: 1 thread\n".to_string();
    }
    let ticks = stats.frames.load(Relaxed) / crate::engine::TICK_FRAMES as u64;
    let shared = stats.parallel_ticks.load(Relaxed);
    let pct = if ticks > 0 { shared as f64 / ticks as f64 * 100.0 } else { 0.0 };
    format!(
        "{}; {pct:.0}% of ticks shared out, {} rendered by workers\n",
        render_threads_line(stats),
        plural(stats.worker_items.load(Relaxed), "item")
    )
}

fn say(out: &Out, text: &str) {
    let mut f = out.lock().unwrap_or_else(|p| p.into_inner());
    for line in text.trim_end_matches('\n').split('\n') {
        f(line);
    }
}

/// What the REPL thread reads directly (keyboard mode, meters), replaced when the
/// engine is rebuilt.
#[derive(Clone)]
pub struct Handles {
    pub sender: EventSender,
    pub clock: Arc<FrameClock>,
    pub stats: Arc<EngineStats>,
}

/// Why `jamrig play` could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{}", .0.render())]
    Script(Diagnostic),
    #[error("{0}")]
    Audio(#[from] AudioError),
    #[error("{0}")]
    Other(String),
}

pub const COMMANDS: &[(&str, &str)] = &[
    (":help", "this list"),
    (":status", "channels, voices, levels, audio and MIDI health, tempo and sync"),
    (":meters", "live level bars until a key is pressed"),
    (
        ":log [on|off]",
        "print incoming MIDI and transport messages, at their bar and beat, and what the control port receives",
    ),
    (":panic", "silence every note at once"),
    (":play", "start the transport from the top (Link: start the session at its next bar)"),
    (":stop", "stop the transport, pattern notes are released (Link: stop the session)"),
    (":tempo [BPM]", "show or change the tempo (Link: propose it to the session)"),
    (":sync internal|midi|link", "where the transport takes tempo and start/stop from"),
    (":ports", "MIDI inputs and outputs and audio outputs"),
    (":port NAME", "use another MIDI input (name or index)"),
    (
        ":midi-out [NAME]",
        "connect jamrig's default MIDI output (the clock's) to a device (name or index); alone: where each output port goes",
    ),
    (":clock-out [on|off]", "send MIDI clock from the transport (Start, Stop, Continue, Song Position)"),
    (":keys [CH] [OCT]", "play notes on the computer keyboard, channel 1..16, octave 0..8 (Esc leaves)"),
    (":events NAME [BARS]", "a pattern's events as a grid, one line per bar (x where a note starts)"),
    (
        ":rec [patterns|stop|save FILE]",
        "record what is played (with `patterns`, the patterns' notes too); stop; write the take as a MIDI file",
    ),
    (":save FILE", "write the live rig (REPL tweaks and knob positions included) as a set"),
    (":load FILE", "play another set file"),
    (":reload", "reload the set now"),
    (":watch [on|off]", "reload the set when it is saved (on by default)"),
    (":quit", "stop and leave"),
];

pub fn help_text() -> String {
    let mut s = String::from("commands:\n");
    let width = COMMANDS.iter().map(|(c, _)| c.chars().count()).max().unwrap_or(0);
    for (c, what) in COMMANDS {
        s.push_str(&format!("  {c:<width$}  {what}\n"));
    }
    s.push_str("anything else is a set statement, e.g.  ch(2).lowpass = 900   or   pattern(\"beat\", 10, \"funk\");\n");
    s
}

pub struct Live {
    opts: PlayOptions,
    session: Session,
    controller: Controller,
    stream: Option<audio::Stream>,
    chosen: Option<Chosen>,
    audio: Arc<LiveStats>,
    clock: Arc<FrameClock>,
    tap: MidiTap,
    midi: Option<MidiIn>,
    /// A port to attach to when it appears.
    midi_wanted: Option<String>,
    log: Arc<ArrayQueue<LogRecord>>,
    log_on: Arc<AtomicBool>,
    watcher: Option<SetWatcher>,
    watching: bool,
    tx: Sender<Msg>,
    out: Out,
    handles: Arc<Mutex<Option<Handles>>>,
    sample_rate: u32,
    tables: Arc<Tables>,
    last_poll: Instant,
    lost_device: bool,
    /// Notices a stream whose callback stopped running.
    stall: StallWatch,
    record_tap: Arc<RecordTap>,
    recorder: Recorder,
    /// A take was recorded and not saved since.
    take_unsaved: bool,
    /// The session capture, while one runs.
    capture: Option<SessionCapture>,
    /// The Link session: enabled only while the sync mode is Link.
    link: LinkSession,
    /// The MIDI output: the engine's queue and what became of it.
    midi_out: Arc<OutShared>,
    /// The device `--midi-out` or `:midi-out` asked for (connected when it appears).
    out_device: Option<String>,
    /// The devices the output is connected to, as last said.
    out_said: Vec<String>,
    /// The clock loop has been reported.
    clock_loop_said: bool,
    /// Link peers last reported.
    link_peers: u64,
    /// The session's tempo and start/stop last seen (a peer's change is printed).
    link_seen: Option<(f64, bool)>,
    /// Whether the session's start/stop state is known: Link tells a newcomer of
    /// start/stop changes only, so after joining a session it is not, until one
    /// comes (or jamrig makes one).
    link_start_stop_known: bool,
    /// When the session's timeline was last re-mapped (not by jamrig).
    link_moved_at: Option<Instant>,
    /// When the first peer appeared (the count and the timeline's re-mapping can
    /// arrive in either order, polls apart).
    link_joined_at: Option<Instant>,
    /// The tempo of the set's file as last read (REPL tweaks aside).
    file_tempo: f64,
    last_link_poll: Instant,
    /// The control port, while it listens.
    listener: Option<Listener>,
    /// While a control port request runs: what it prints, its reply.
    reply: RefCell<Option<String>>,
    /// The request being answered failed (a script error).
    reply_failed: Cell<bool>,
}

/// Publishes sets to the engine with the Link session kept in step: Link is
/// enabled before a set in Link mode reaches the engine (so the engine never
/// follows a stale timeline) and disabled after one that leaves Link mode; a
/// tempo the set changes is proposed to the session.
struct LinkedPublisher<'a> {
    controller: &'a mut Controller,
    link: &'a mut LinkSession,
    /// For a set read from its file: the tempo the file had before. Its tempo is
    /// proposed only if the file changed it (a reload that only drops a `:tempo`
    /// tweak leaves the session's tempo alone). `None` for a REPL line, whose tempo
    /// is proposed if it differs from the set last published.
    file_tempo: Option<f64>,
    /// A tempo was proposed to the session.
    proposed: bool,
    /// The MIDI output: its devices get their ports before a set routes to them.
    outs: &'a OutShared,
    midi: Option<&'a mut MidiIn>,
    /// What could not be done for the devices' ports (said afterwards).
    out_notes: Vec<String>,
}

impl LinkedPublisher<'_> {
    fn propose(&self, set: &Set) -> bool {
        match self.file_tempo {
            Some(before) => set.tempo_bpm != before,
            None => set.tempo_bpm != self.link.set_bpm(),
        }
    }
}

impl Publish for LinkedPublisher<'_> {
    fn publish_set(&mut self, set: &Set) -> Result<(), BuildError> {
        let link_mode = matches!(set.sync, SyncMode::Link { .. });
        let propose = self.propose(set);
        if link_mode {
            self.proposed |= self.link.follow(set.sync, set.tempo_bpm, propose);
        }
        // Each device the set names gets its output port before the snapshot that
        // routes to it is published (a device it drops keeps its port a while).
        let adopted = self.controller.stats().snapshots_adopted.load(Relaxed);
        let plan = lock_devices(self.outs).plan(set, adopted).map_err(BuildError::OutDevices)?;
        let (midi, notes) = (&mut self.midi, &mut self.out_notes);
        self.controller.publish_set_with(set, plan.ports(), || {
            if let Some(m) = midi {
                notes.extend(m.sync_out_ports(&plan));
            }
        })?;
        *lock_devices(self.outs) = plan;
        if !link_mode {
            self.link.follow(set.sync, set.tempo_bpm, propose);
        }
        Ok(())
    }

    fn next_bar(&self, beats_per_bar: f64) -> Option<u64> {
        self.controller.next_bar(beats_per_bar)
    }

    fn live_value(&self, ch: u8, p: crate::params::Param) -> Option<f32> {
        self.controller.live_value(ch, p)
    }
}

/// The MIDI output's device table (control thread only).
fn lock_devices(outs: &OutShared) -> std::sync::MutexGuard<'_, super::midi_out::OutDevices> {
    outs.devices.lock().unwrap_or_else(|p| p.into_inner())
}

/// A re-mapped timeline this close to the first peer means jamrig joined the
/// peer's session (rather than the peer jamrig's).
const LINK_JOIN_WINDOW: Duration = Duration::from_secs(2);

/// A change of the Link session's tempo smaller than this is not reported (Link
/// rounds tempos on the wire).
const LINK_TEMPO_STEP: f64 = 0.005;

/// A tempo as shown: two decimals at most.
fn fmt_bpm(bpm: f64) -> String {
    crate::params::fmt_num(((bpm * 100.0).round() / 100.0) as f32)
}

/// What `:play` and `:stop` say while the MIDI clock drives the transport.
const MIDI_OWNS_TRANSPORT: &str =
    "transport: follows the MIDI clock's source (start and stop it there; :sync internal to use :play/:stop)";

/// The bar and beat (both from 1) at which a message logged at engine frame
/// `frame` takes effect, as the log shows them (to a hundredth of a beat: a beat
/// just short of a bar line is the next bar's first); `None` while stopped.
fn log_position(
    t: &crate::engine::TransportReading,
    frame: u64,
    sample_rate: f64,
    beats_per_bar: f64,
) -> Option<(u64, f64)> {
    if !t.playing {
        return None;
    }
    let beat = (t.beat + (frame as f64 - t.frame as f64) * t.bpm / (60.0 * sample_rate)).max(0.0);
    let beat = (beat * 100.0).round() / 100.0;
    let bar = (beat / beats_per_bar).floor();
    Some((bar as u64 + 1, beat - bar * beats_per_bar + 1.0))
}

/// One channel's line of `:status`.
struct ChannelRow {
    /// From 1.
    channel: u8,
    instrument: String,
    voices: u32,
    /// The peak level since the last look (linear).
    peak: f32,
}

/// What a channel plays: the set's instrument, or the one a program change chose
/// (`(program, instrument)`).
fn instrument_text(set_instrument: &str, program: Option<(u8, &str)>) -> String {
    match program {
        Some((p, name)) => format!("{name} (program {p})"),
        None => set_instrument.to_string(),
    }
}

/// The channel lines of `:status`, their columns lined up whatever the
/// instruments' names.
fn channel_rows(rows: &[ChannelRow]) -> String {
    let width = rows.iter().map(|r| r.instrument.chars().count()).max().unwrap_or(0);
    let mut s = String::new();
    for r in rows {
        let level = if r.peak > 0.0 { format!("{:6.1} dB", 20.0 * r.peak.log10()) } else { "  silent".to_string() };
        let voices = if r.voices == 1 { "voice" } else { "voices" };
        s.push_str(&format!(
            "  ch{:<2} {:<width$}  {:>2} {voices:<6}  peak {level}\n",
            r.channel, r.instrument, r.voices
        ));
    }
    s
}

/// The channel (1..=16) and octave (0..=8) of `:keys [CH] [OCT]`, or what is wrong.
pub fn keys_args(args: &[&str]) -> Result<(u8, i32), String> {
    let ch = match args.first() {
        None => 1,
        Some(a) => match a.parse::<u8>() {
            Ok(c @ 1..=16) => c,
            _ => return Err(format!(":keys: channel {a} is not 1..16 (e.g. :keys 2 3)")),
        },
    };
    let oct = match args.get(1) {
        None => 4,
        Some(a) => match a.parse::<i32>() {
            Ok(o @ 0..=8) => o,
            _ => return Err(format!(":keys: octave {a} is not 0..8 (e.g. :keys 2 3)")),
        },
    };
    if args.len() > 2 {
        return Err("usage: :keys [CHANNEL 1..16] [OCTAVE 0..8]".into());
    }
    Ok((ch, oct))
}

fn apply_sync(set: &mut Set, sync: Option<SyncMode>) {
    if let Some(s) = sync {
        set.sync = s;
    }
}

/// The sample rate most audio servers run at: the tables for it are built before
/// the device is known (at another rate they are built again once it is).
const USUAL_SAMPLE_RATE: u32 = 48_000;

/// The nice value of the thread that renders the rest of the drum kit.
const KIT_REST_NICE: libc::c_int = 10;

/// Renders the drum sounds of `tables` not rendered yet on a thread of their own, each
/// published into the tables the moment it is done (the engine may be playing them:
/// a drum note whose sound is not there yet is silent). The thread stops early once
/// it holds the tables' last reference (the rig they were for was dropped). If no
/// thread can be started, the sounds are rendered here.
fn render_kit_rest(tables: &Arc<Tables>) {
    if tables.drums.complete() {
        return;
    }
    let mine = tables.clone();
    let rest = move || {
        // Below the audio server and the callback, which play meanwhile (a nice
        // value is a thread's own on Linux; `who` 0 is the calling thread).
        // SAFETY: setpriority takes no pointers.
        unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, KIT_REST_NICE) };
        if mine.drums.render_rest(|| Arc::strong_count(&mine) > 1) {
            super::timeline::mark("drum kit complete");
        }
    };
    let spawned = std::thread::Builder::new().name("jamrig-kit".into()).spawn(rest);
    if spawned.is_err() {
        tables.drums.render_rest(|| true);
    }
}

impl Live {
    /// Evaluates the set, opens the audio device and MIDI input, starts watching.
    pub fn start(
        opts: PlayOptions,
        out: Out,
        tx: Sender<Msg>,
        handles: Arc<Mutex<Option<Handles>>>,
    ) -> Result<Live, StartError> {
        // Choosing the device (mostly waiting on the audio server) runs while the set
        // is evaluated: both come before the first sound.
        // On JACK, jamrig's client is activated (playing silence) in the meantime.
        let chooser = audio::Choosing::start(opts.device.clone(), opts.buffer);
        let mut host = ScriptHost::new().map_err(StartError::Script)?;
        host.allow_folders(&opts.samples);
        let mut session = Session::open(host, &opts.set).map_err(StartError::Script)?;
        super::timeline::mark("set evaluated");
        session.set_sync_override(opts.sync);
        let listener = match &opts.listen {
            Some(l) => Some(Listener::start(l, tx.clone()).map_err(|e| {
                StartError::Other(format!(
                    "cannot listen on {}: {e}; choose another port with --listen [ADDR:]PORT",
                    l.addr
                ))
            })?),
            None => None,
        };
        session.set_clock_out_override(opts.clock_out.then_some(true));
        let mut set = session.set().clone();
        apply_sync(&mut set, opts.sync);
        // Each device the set names has its output port from the start.
        let midi_out = Arc::new(OutShared::new(crate::engine::midi_out::queue()));
        let devices = lock_devices(&midi_out).plan(&set, 0).map_err(StartError::Other)?;
        let out_ports = devices.ports();
        *lock_devices(&midi_out) = devices;
        // The tables and the rig are built at the usual rate while the device is
        // still being chosen (the audio server's answers take as long as the set),
        // and again at the device's rate if that is another. Of the drum kit, only
        // the sounds the set's patterns play come before the first sound; the rest
        // is rendered into the same tables once the engine is handed over
        // ([`render_kit_rest`]), so that it holds back nothing before the first sound.
        let drum_notes = crate::offline::render::notes_played(&set, &[]);
        let tables_at = |rate: u32| Arc::new(Tables::with_drum_notes_first(rate as f32, &drum_notes));
        let build = |rate: u32, tables: &Arc<Tables>| {
            Rig::routed(&set, rate as f32, tables.clone(), out_ports.clone())
                .map_err(|e| StartError::Other(e.to_string()))
        };
        let usual_tables = tables_at(USUAL_SAMPLE_RATE);
        super::timeline::mark("tables ready");
        let usual_rig = build(USUAL_SAMPLE_RATE, &usual_tables)?;
        super::timeline::mark("rig built");
        let chosen = chooser.join()?;
        super::timeline::mark("device chosen");
        if let Some(note) = &chosen.buffer_note {
            say(&out, note);
        }
        let sample_rate = chosen.sample_rate();
        let (tables, Rig { mut engine, controller }) = if sample_rate == USUAL_SAMPLE_RATE {
            (usual_tables, usual_rig)
        } else {
            drop((usual_tables, usual_rig));
            let t = tables_at(sample_rate);
            let rig = build(sample_rate, &t)?;
            super::timeline::mark("rig built again at the device's rate");
            (t, rig)
        };
        let record_tap = Arc::new(RecordTap::default());
        record_tap.set_patterns(opts.record_patterns);
        engine.record_into(record_tap.clone());
        engine.midi_out_into(midi_out.queue.clone());
        let capture = match &opts.capture {
            Some(dir) => {
                let (c, tap) = SessionCapture::start(dir, sample_rate, &session)
                    .map_err(|e| StartError::Other(format!("cannot capture into {}: {e}", dir.display())))?;
                engine.capture_into(tap);
                Some(c)
            }
            None => None,
        };
        let mut link = LinkSession::new(set.tempo_bpm);
        link.follow(set.sync, set.tempo_bpm, false);
        let clock = Arc::new(FrameClock::new(sample_rate, chosen.buffer_frames()));
        let audio_stats = chosen.stats();
        let log = Arc::new(ArrayQueue::new(MIDI_LOG_CAP));
        let log_on = Arc::new(AtomicBool::new(false));
        let tap = MidiTap {
            sender: controller.event_sender(),
            clock: clock.clone(),
            log: log.clone(),
            log_on: log_on.clone(),
            out: midi_out.clone(),
        };
        let stream = audio::start(&chosen, engine, clock.clone(), link.clock(), &tap)?;
        super::timeline::mark("engine handed over");
        render_kit_rest(&tables);
        audio::check_pacing(&chosen, &audio_stats)?;
        let mut live = Live {
            midi_out,
            out_device: opts.midi_out.clone(),
            out_said: Vec::new(),
            clock_loop_said: false,
            session,
            controller,
            stream: Some(stream),
            chosen: Some(chosen),
            audio: audio_stats,
            clock,
            tap,
            midi: None,
            midi_wanted: opts.port.clone(),
            log,
            log_on,
            watcher: None,
            watching: opts.watch,
            tx,
            out,
            handles,
            sample_rate,
            tables,
            last_poll: Instant::now(),
            lost_device: false,
            stall: StallWatch::new(),
            record_tap,
            recorder: Recorder::new(sample_rate as f64),
            take_unsaved: false,
            capture,
            link,
            link_peers: 0,
            link_seen: None,
            link_start_stop_known: true,
            link_moved_at: None,
            link_joined_at: None,
            file_tempo: set.tempo_bpm,
            last_link_poll: Instant::now(),
            listener,
            reply: RefCell::new(None),
            reply_failed: Cell::new(false),
            opts,
        };

        if live.opts.record.is_some() {
            live.rec_start();
        }
        live.publish_handles();
        let midi_line = match live.midi_connect(live.opts.port.as_deref()) {
            Ok(m) => {
                let line = format!("MIDI in: {}", m.port);
                live.midi = Some(m);
                live.midi_wanted = None;
                line
            }
            Err(e) => {
                // Without MIDI at all (no ALSA sequencer, no JACK server), no port appears.
                let wait = if live.opts.port.is_some() && midi::unavailable().is_none() {
                    "; it will be attached when it appears"
                } else {
                    ""
                };
                match live.midi_own_port() {
                    Ok(m) => {
                        let line = format!("MIDI in: {e}{wait}; listening on {}", m.port);
                        live.midi = Some(m);
                        line
                    }
                    Err(_) => format!("MIDI in: {e}{wait} (patterns and :keys still work)"),
                }
            }
        };
        live.rewatch();
        if live.opts.midi_out.is_some() && live.midi.is_none() {
            live.say("MIDI out: unavailable (no MIDI client: see MIDI in)");
        }
        live.connect_outputs(true);
        let set = live.session.set();
        let chosen = live.chosen.as_ref().expect("just opened");
        live.say(&format!(
            "playing {}: {}, {}, {} BPM, clock {} | audio: {}, {} Hz | {midi_line}",
            live.opts.set.display(),
            plural(set.channels.len() as u64, "channel"),
            plural(set.patterns.len() as u64, "pattern"),
            crate::params::fmt_num(set.tempo_bpm as f32),
            live.effective_sync().name(),
            chosen.description,
            sample_rate
        ));
        super::timeline::mark("playing line");
        super::timeline::write_stamps();
        if let Some(l) = &live.listener {
            live.say(&format!("control port: listening on {} (OSC over UDP, lines over TCP)", l.addr));
        }
        if live.controller.stats().render_threads.load(Relaxed) > 1 {
            live.say(&render_threads_line(live.controller.stats()));
        }
        Ok(live)
    }

    /// The channels and their instruments (for `:meters`).
    pub fn channel_names(&self) -> Vec<(u8, String)> {
        self.session.set().channels.iter().map(|(n, c)| (*n, c.instrument.clone())).collect()
    }

    fn effective_sync(&self) -> SyncMode {
        self.opts.sync.unwrap_or(self.session.set().sync)
    }

    /// Prints above the REPL's prompt; while a control port request runs, into its
    /// reply instead (and on the terminal too while `:log` is on).
    fn say(&self, text: &str) {
        if let Some(reply) = self.reply.borrow_mut().as_mut() {
            reply.push_str(text);
            reply.push('\n');
            if !self.log_on.load(Relaxed) {
                return;
            }
        }
        say(&self.out, text);
    }

    /// A control port request: a REPL line (checked by the port already) or a note.
    fn remote(&mut self, r: Remote) {
        if self.log_on.load(Relaxed) {
            self.say(&format!("{}: {}", r.from, r.request.describe()));
        }
        *self.reply.borrow_mut() = Some(String::new());
        self.reply_failed.set(false);
        match &r.request {
            super::listen::Request::Line(line) => {
                self.command(line);
            }
            super::listen::Request::Note { channel, .. } | super::listen::Request::Param { channel, .. }
                if !self.session.set().channels.contains_key(channel) =>
            {
                self.reply_failed.set(true);
                self.say(&format!("channel {channel} is not in the set"));
            }
            super::listen::Request::Param { channel, param, value } => {
                let ch = *channel as usize - 1;
                let stats = self.controller.stats();
                let spec = self.session.set().channels.get(channel);
                let before = stats.override_of(ch, *param).or(spec.map(|s| s.params.get(*param)));
                if let Some(ev) = r.request.param_event(self.clock.frame_for(r.at.unwrap_or_else(Instant::now))) {
                    self.controller.send(ev);
                }
                let text = |v| crate::script::diff::param_text(*param, v);
                let from = before.map(|b| format!("{} -> ", text(b))).unwrap_or_default();
                self.say(&format!("ch{channel} {param} {from}{} (knob)", text(*value)));
            }
            note => {
                let bpm = self.controller.stats().tempo();
                let at = self.clock.frame_for(r.at.unwrap_or_else(Instant::now));
                for ev in note.note_events(at, bpm, self.sample_rate as f64).into_iter().flatten() {
                    self.controller.send(ev);
                }
                self.say(&note.describe());
            }
        }
        let text = self.reply.borrow_mut().take().unwrap_or_default();
        let _ = r.reply.send(Reply { text, ok: !self.reply_failed.get() });
    }

    fn publish_handles(&self) {
        let h = Handles {
            sender: self.controller.event_sender(),
            clock: self.clock.clone(),
            stats: self.controller.stats().clone(),
        };
        *self.handles.lock().unwrap_or_else(|p| p.into_inner()) = Some(h);
    }

    fn rewatch(&mut self) {
        self.watcher = None;
        if !self.watching {
            return;
        }
        let tx = self.tx.clone();
        match watch::watch(self.session.files(), move |p| {
            let _ = tx.send(Msg::FileChanged(p));
        }) {
            Ok(w) => self.watcher = Some(w),
            Err(e) => self.say(&format!("cannot watch {}: {e} (use :reload)", self.opts.set.display())),
        }
    }

    /// The control loop: returns when asked to quit.
    pub fn run(mut self, rx: Receiver<Msg>) {
        let mut stash: Vec<Msg> = Vec::new();
        loop {
            let msg = if stash.is_empty() { rx.recv_timeout(IDLE_WAKE) } else { Ok(stash.remove(0)) };
            match msg {
                Ok(Msg::Line(line, reply)) => {
                    let go_on = self.command(&line);
                    let _ = reply.send(go_on);
                    if !go_on {
                        break;
                    }
                }
                Ok(Msg::FileChanged(_)) => {
                    // Merge the events of one save; keep anything else for later.
                    loop {
                        match rx.recv_timeout(WATCH_SETTLE) {
                            Ok(Msg::FileChanged(_)) => continue,
                            Ok(other) => stash.push(other),
                            Err(_) => break,
                        }
                    }
                    self.reload();
                }
                Ok(Msg::Remote(r)) => self.remote(r),
                Ok(Msg::Quit) => break,
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            self.controller.collect();
            self.print_log();
            self.check_clock_loop();
            self.recorder.drain(&self.record_tap, self.controller.stats().transport());
            if let Some(c) = &mut self.capture {
                c.note_set(self.controller.last_serial(), &self.session);
                c.drain();
            }
            if self.stream.is_some() && self.stall.stalled(self.audio.callbacks_total.load(Relaxed)) {
                self.lose_device(&format!("no audio callback for {} s", STALL.as_secs()), true);
            }
            if self.last_poll.elapsed() >= DEVICE_POLL {
                self.last_poll = Instant::now();
                self.poll_devices();
            }
            if self.last_link_poll.elapsed() >= LINK_POLL {
                self.last_link_poll = Instant::now();
                self.poll_link();
            }
        }
        self.shutdown();
    }

    fn reload(&mut self) {
        if std::fs::metadata(self.session.path()).map(|m| m.len() == 0).unwrap_or(false) {
            self.say(&format!("{} is empty: still playing the previous set", self.session.path().display()));
            return;
        }
        let files_before = self.session.files().to_vec();
        let mut publisher = LinkedPublisher {
            controller: &mut self.controller,
            link: &mut self.link,
            file_tempo: Some(self.file_tempo),
            proposed: false,
            outs: &self.midi_out,
            midi: self.midi.as_mut(),
            out_notes: Vec::new(),
        };
        let r = self.session.reload(&mut publisher);
        let out_notes = std::mem::take(&mut publisher.out_notes);
        if publisher.proposed {
            self.seen_own_link_change();
        }
        self.after_routing(&out_notes);
        if matches!(r, Reload::Changed { .. } | Reload::Unchanged { .. }) {
            self.file_tempo = self.session.set().tempo_bpm;
        }
        match &r {
            Reload::Failed(d) => {
                // The line names the place and the error; then the line quoted.
                self.say(&r.line());
                let snippet = d.render_snippet();
                if !snippet.is_empty() {
                    self.say(&snippet);
                }
            }
            _ => self.say(&r.line()),
        }
        if self.session.files() != files_before.as_slice() {
            self.rewatch();
        }
    }

    /// The engine frame now and the transport, for the recorder.
    fn rec_clock(&self) -> (u64, crate::engine::TransportReading) {
        (self.clock.frame_for(Instant::now()), self.controller.stats().transport())
    }

    fn rec_start(&mut self) {
        let (now, t) = self.rec_clock();
        self.recorder.start(&self.record_tap, now, t);
        self.take_unsaved = true;
    }

    /// Stops recording (if it is on) and says what the take holds.
    fn rec_stop(&mut self) {
        if !self.recorder.is_recording() {
            return;
        }
        let (now, t) = self.rec_clock();
        let lost = self.recorder.stop(&self.record_tap, now, t);
        let lost = if lost > 0 {
            format!(" ({} lost: the recording queue was full)", plural(lost, "event"))
        } else {
            String::new()
        };
        self.say(&format!("recorded {}{lost}", self.recorder.summary()));
    }

    fn rec_save(&mut self, path: &Path) {
        self.rec_stop();
        if self.recorder.is_empty() {
            self.say("nothing recorded: :rec starts a recording (then :rec stop, :rec save FILE.mid)");
            return;
        }
        match self.recorder.save(path) {
            Ok(()) => {
                self.take_unsaved = false;
                self.say(&format!("wrote {} ({})", path.display(), self.recorder.summary()))
            }
            Err(e) => self.say(&format!("cannot write {}: {e}", path.display())),
        }
    }

    /// A name for a take nobody saved: `take-N.mid` beside the set (the first N
    /// free), or in the current folder if the set's is not writable.
    fn default_take_path(&self) -> PathBuf {
        let folder = self.session.path().parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let writable = std::fs::metadata(folder).is_ok_and(|m| !m.permissions().readonly());
        let folder = if writable { folder } else { Path::new(".") };
        (1..).map(|n| folder.join(format!("take-{n}.mid"))).find(|p| !p.exists()).expect("a free name")
    }

    /// Says when peers join or leave the Link session, and when a peer changes its
    /// tempo or starts or stops it (jamrig's own proposals are said where they are
    /// made).
    fn poll_link(&mut self) {
        let peers = if self.link.is_enabled() { self.link.peers() } else { 0 };
        let joined = self.link_peers == 0 && peers > 0;
        if peers != self.link_peers {
            self.link_peers = peers;
            self.say(&format!("Link: {}", plural(peers, "peer")));
        }
        if !self.link.is_enabled() {
            self.link_seen = None;
            return;
        }
        if let Some(e) = self.link.take_listen_error() {
            self.say(&e);
        }
        match self.link.join_if_playing() {
            PeersSay::JoinedPlaying { bpm } => {
                self.link_start_stop_known = true;
                self.link_joined_at = None;
                self.seen_own_link_change();
                let bar = crate::params::fmt_num(self.link.quantum() as f32);
                self.say(&format!(
                    "Link: the session plays at {} BPM (its peers say so): jamrig joins it at its next bar ({bar} beats)",
                    fmt_bpm(bpm)
                ));
                return;
            }
            PeersSay::Stopped => self.link_start_stop_known = true,
            PeersSay::Nothing => {}
        }
        let now = self.link.status();
        // jamrig joined another session (its timeline was re-mapped onto the
        // session's), rather than a peer joining jamrig's.
        if self.link.timeline_moved() {
            self.link_moved_at = Some(Instant::now());
        }
        if joined {
            self.link_joined_at = Some(Instant::now());
        }
        let recent = |t: Option<Instant>| t.is_some_and(|t| t.elapsed() < LINK_JOIN_WINDOW);
        if peers == 0 {
            self.link_start_stop_known = true;
            self.link_joined_at = None;
        } else if recent(self.link_joined_at) && recent(self.link_moved_at) && !now.playing {
            // Said once per joining, whichever of the two came first.
            self.link_joined_at = None;
            self.link_moved_at = None;
            self.link_start_stop_known = false;
            self.link_seen = Some((now.bpm, now.playing));
            let hint = if self.link.is_listening() {
                "if it already plays, jamrig joins it at its next bar once its peers' announcements say so"
            } else {
                "Link does not tell a newcomer whether it already plays: if it does, :play joins it at its next bar without moving its beat"
            };
            self.say(&format!("Link: joined a session at {} BPM; {hint}", fmt_bpm(now.bpm)));
            return;
        }
        if let Some((bpm, playing)) = self.link_seen.replace((now.bpm, now.playing))
            && peers > 0
        {
            if (now.bpm - bpm).abs() >= LINK_TEMPO_STEP {
                self.say(&format!("Link: a peer set the tempo to {} BPM", fmt_bpm(now.bpm)));
            }
            if now.playing != playing {
                let what = if now.playing { "started" } else { "stopped" };
                self.say(&format!("Link: a peer {what} the session"));
                self.link_start_stop_known = true;
            }
        }
    }

    /// Notes the session's state after jamrig's own proposal, so that it is not
    /// reported as a peer's.
    fn seen_own_link_change(&mut self) {
        let now = self.link.status();
        self.link_seen = Some((now.bpm, now.playing));
        self.link.note_timeline();
    }

    /// Prints the logged MIDI messages, each at the bar and beat it takes effect.
    fn print_log(&self) {
        if self.log.is_empty() {
            return;
        }
        let t = self.controller.stats().transport();
        let bpb = self.session.set().beats_per_bar.max(1.0);
        let sr = self.sample_rate as f64;
        while let Some(r) = self.log.pop() {
            self.say(&midi::describe(&r, log_position(&t, r.frame, sr, bpb)));
        }
    }

    fn send_now(&self, kind: EventKind) {
        self.controller.send(Event::new(self.clock.frame_for(Instant::now()), kind));
    }

    /// Closes the MIDI input, letting go of the notes and pedals it held down;
    /// returns ", its N notes released" (or nothing when it held none).
    fn close_midi(&mut self) -> String {
        let Some(m) = self.midi.take() else { return String::new() };
        let released = m.held.release();
        m.close();
        let notes = released.iter().filter(|k| matches!(k, EventKind::NoteOff { .. })).count();
        let pedals = released.len() - notes;
        for kind in released {
            self.send_now(kind);
        }
        match (notes, pedals) {
            (0, 0) => String::new(),
            (n, 0) => format!(" ({} released)", plural(n as u64, "held note")),
            (0, p) => format!(" ({} lifted)", plural(p as u64, "pedal")),
            (n, p) => format!(" ({} released, {} lifted)", plural(n as u64, "held note"), plural(p as u64, "pedal")),
        }
    }

    /// Rebuilds the engine on a (re)opened device.
    fn open_audio(&mut self) -> Result<(), AudioError> {
        let chosen = audio::choose_live(self.opts.device.as_deref(), self.opts.buffer)?;
        let sr = chosen.sample_rate();
        if sr != self.sample_rate {
            self.tables = Arc::new(Tables::new(sr as f32));
            self.sample_rate = sr;
        }
        let mut set = self.session.set().clone();
        apply_sync(&mut set, self.opts.sync);
        let out_ports = lock_devices(&self.midi_out).ports();
        let Rig { mut engine, controller } = Rig::routed(&set, sr as f32, self.tables.clone(), out_ports)
            .map_err(|e| AudioError::Failed(e.to_string()))?;
        // What MIDI set on the old engine (knobs, volume, pan, expression, programs,
        // bend, pedal) goes on in the new one, as the REPL's tweaks do.
        let midi_state = self.controller.stats().channel_midi();
        engine.restore_channel_midi(&midi_state);
        engine.record_into(self.record_tap.clone());
        engine.midi_out_into(self.midi_out.queue.clone());
        // A new engine starts its frames again: a recording goes on after what the
        // old one played, the capture in a new part.
        self.recorder.drain(&self.record_tap, self.controller.stats().transport());
        self.recorder.rebase(self.controller.stats().frames.load(Relaxed));
        if let Some(part) = self.end_capture("the audio device was reopened") {
            let dir = self.opts.capture.clone().unwrap_or_default();
            match SessionCapture::start_part(&dir, part + 1, sr, &self.session) {
                Ok((mut c, tap)) => {
                    c.note_channel_midi(&midi_state);
                    engine.capture_into(tap);
                    self.say(&format!("capture: goes on in {}", c.path().display()));
                    self.capture = Some(c);
                }
                Err(e) => self.say(&format!("capture: cannot go on in {}: {e}", dir.display())),
            }
        }
        self.clock = Arc::new(FrameClock::new(sr, chosen.buffer_frames()));
        self.audio = chosen.stats();
        self.tap.sender = controller.event_sender();
        self.tap.clock = self.clock.clone();
        // The MIDI callback holds the old engine's queue (or the old client the
        // old stream): reconnect (to the same device, or reopen jamrig's own port).
        let reopen = self.midi.take().map(|m| {
            let (port, own) = (m.port.clone(), m.is_own());
            m.close();
            (port, own)
        });
        let stream = audio::start(&chosen, engine, self.clock.clone(), self.link.clock(), &self.tap)?;
        self.controller = controller;
        self.stream = Some(stream);
        self.stall = StallWatch::new();
        self.chosen = Some(chosen);
        self.publish_handles();
        if let Some((port, own)) = reopen {
            if own {
                if let Ok(m) = self.midi_own_port() {
                    self.midi = Some(m);
                }
            } else {
                self.midi_wanted = Some(port);
            }
        }
        Ok(())
    }

    /// The stream has lost its device (`why`): it is closed, and reopened when the
    /// device returns.
    fn lose_device(&mut self, why: &str, stalled: bool) {
        let desc = self.chosen.as_ref().map(|c| c.description.clone()).unwrap_or_default();
        // A client of a server that has gone must not be closed (libjack crashes).
        self.audio.failed.store(true, Relaxed);
        if let Some(stream) = self.stream.take() {
            if stalled {
                // A stream that stalled with no error sits on a device that is gone
                // without saying so (a JACK server behind ALSA's jack plugin that
                // died): closing it crashes in the plugin's libjack. It is left
                // alone: its thread stays blocked and its memory is not given back.
                std::mem::forget(stream);
            } else {
                drop(stream);
            }
        }
        self.lost_device = true;
        self.say(&format!(
            "audio device lost ({desc}: {why}); the REPL stays, and the device will be reopened when it returns"
        ));
    }

    /// Connects MIDI in to the port `choice` names (the first by default): on the
    /// audio stream's own JACK client when it has one, else on a MIDI client.
    fn midi_connect(&self, choice: Option<&str>) -> Result<MidiIn, String> {
        #[cfg(feature = "jack")]
        if let Some(j) = self.stream.as_ref().and_then(|s| s.jack()) {
            return midi::connect_shared(choice, j);
        }
        midi::connect(choice, &self.tap)
    }

    /// Opens jamrig's own MIDI input port (for others to connect to): the audio
    /// stream's JACK client's when it has one.
    fn midi_own_port(&self) -> Result<MidiIn, String> {
        #[cfg(feature = "jack")]
        if let Some(j) = self.stream.as_ref().and_then(|s| s.jack()) {
            return midi::own_shared(j);
        }
        midi::open_own_port(&self.tap)
    }

    /// Connects the MIDI output ports to the devices asked for that are there and
    /// not yet connected: the default port to the device `--midi-out` or
    /// `:midi-out` names, each device's port to its device. Says what it connects;
    /// with `report`, says too which are not there (yet). Drops the ports of
    /// devices the set no longer names once their note-offs have left.
    fn connect_outputs(&mut self, report: bool) {
        let stats = self.controller.stats();
        let (adopted, sent) = (stats.snapshots_adopted.load(Relaxed), !self.controller.has_pending());
        let gone = lock_devices(&self.midi_out).due(adopted, sent, Instant::now());
        let devices = lock_devices(&self.midi_out).clone();
        let Some(m) = self.midi.as_mut() else { return };
        for d in &gone {
            m.drop_out_port(d.port);
        }
        m.collect_out_ports();
        let mut lines = m.sync_out_ports(&devices);
        if let Some(want) = &self.out_device
            && midi::pick(Some(want), &m.out_connections()).is_none()
        {
            match m.connect_out(want) {
                Ok(port) => lines.push(format!("MIDI out: {} -> {port}", m.out_port())),
                Err(e) if report => lines.push(format!("MIDI out: {e}; it will be connected when it appears")),
                Err(_) => {}
            }
        }
        for d in devices.all().iter().filter(|d| !d.is_retiring()) {
            match m.connect_device(d.port, &d.device) {
                Ok(Some(to)) => {
                    lines.push(format!("MIDI out: {} -> {to}", m.out_port_name(d.port).unwrap_or_default()))
                }
                Ok(None) => {}
                Err(e) if report => lines.push(format!("MIDI out: {e}; it will be connected when it appears")),
                Err(_) => {}
            }
        }
        self.out_said = m.out_connections();
        for l in lines {
            self.say(&l);
        }
    }

    /// After a set was published: says what its devices' ports could not do, and
    /// connects the ports of devices it added.
    fn after_routing(&mut self, notes: &[String]) {
        for n in notes {
            self.say(&format!("MIDI out: {n}"));
        }
        self.connect_outputs(false);
    }

    /// Says once that clock out was refused for a loop.
    fn check_clock_loop(&mut self) {
        let looped = self.controller.stats().clock_out_looped.load(Relaxed);
        if looped && !self.clock_loop_said {
            self.say(
                "clock out: off: jamrig's own clock Start came back on its MIDI input (a device or connection echoes it); jamrig never follows its own clock. Turn off the device's MIDI thru (or the connection), then :clock-out on",
            );
        }
        self.clock_loop_said = looped;
    }

    fn poll_devices(&mut self) {
        self.connect_outputs(false);
        if self.stream.is_some() && self.audio.failed.load(Relaxed) {
            self.lose_device("it reported an error", false);
        }
        if self.stream.is_none() {
            match self.open_audio() {
                Ok(()) => {
                    if self.lost_device {
                        let c = self.chosen.as_ref();
                        let desc = c.map(|c| c.description.clone()).unwrap_or_default();
                        let note = c.and_then(|c| c.buffer_note.clone()).map(|n| format!("; {n}")).unwrap_or_default();
                        self.say(&format!("audio device back: {desc}{note}"));
                    }
                    self.lost_device = false;
                }
                Err(_) => return,
            }
        }
        let ports = midi::list_inputs();
        if let Some(m) = &self.midi
            && !m.is_own()
            && !ports.contains(&m.port)
        {
            let port = m.port.clone();
            let released = self.close_midi();
            self.say(&format!("MIDI input {port} is gone{released}; it will be re-attached when it returns"));
            self.midi_wanted = Some(port);
        }
        if self.midi.as_ref().is_none_or(|m| m.is_own())
            && let Some(want) = self.midi_wanted.clone()
            && midi::pick(Some(&want), &ports).is_some()
        {
            match self.midi_connect(Some(&want)) {
                Ok(m) => {
                    self.say(&format!("MIDI in: {}", m.port));
                    if let Some(own) = self.midi.replace(m) {
                        own.close();
                    }
                    self.midi_wanted = None;
                }
                Err(e) => self.say(&e),
            }
        }
    }

    /// A REPL line: a colon command or set statements. Returns false to quit.
    pub fn command(&mut self, line: &str) -> bool {
        let line = line.trim();
        if line.is_empty() {
            return true;
        }
        if !line.starts_with(':') {
            let mut publisher = LinkedPublisher {
                controller: &mut self.controller,
                link: &mut self.link,
                file_tempo: None,
                proposed: false,
                outs: &self.midi_out,
                midi: self.midi.as_mut(),
                out_notes: Vec::new(),
            };
            let applied = self.session.apply_line(line, &mut publisher);
            let out_notes = std::mem::take(&mut publisher.out_notes);
            if publisher.proposed {
                self.seen_own_link_change();
            }
            self.after_routing(&out_notes);
            match applied {
                Ok(changes) => {
                    for p in &self.session.evaluated().printed {
                        self.say(p);
                    }
                    if let Some(v) = self.session.value() {
                        self.say(&format!("=> {v}"));
                    }
                    if changes.is_empty() {
                        if self.session.evaluated().printed.is_empty() && self.session.value().is_none() {
                            self.say("(no change)");
                        }
                    } else {
                        self.say(&changes.join("; "));
                    }
                }
                Err(d) => {
                    self.reply_failed.set(true);
                    self.say(&d.render());
                }
            }
            return true;
        }
        let mut words = line.split_whitespace();
        let cmd = words.next().unwrap_or("");
        let args: Vec<&str> = words.collect();
        match cmd {
            ":help" | ":h" => self.say(&help_text()),
            ":quit" | ":q" | ":exit" => return false,
            ":status" => {
                let s = self.status();
                self.say(&s);
            }
            ":panic" => {
                self.send_now(EventKind::Panic);
                self.say("panic: all notes silenced");
            }
            ":play" => match self.effective_sync() {
                SyncMode::Internal => {
                    self.send_now(EventKind::Start);
                    self.say("transport: playing from the top");
                }
                SyncMode::Midi => self.say(MIDI_OWNS_TRANSPORT),
                SyncMode::Link { quantum } => {
                    let bar = crate::params::fmt_num(quantum as f32);
                    if self.link.status().playing {
                        // Starting it again would move its beat 0 and silence
                        // every peer until the next bar.
                        self.say(&format!(
                            "transport: the Link session is already playing; jamrig plays along (from its next bar of {bar} beats if it is not yet)"
                        ));
                    } else {
                        let unknown = !self.link_start_stop_known;
                        self.link.propose_start();
                        self.link_start_stop_known = true;
                        self.seen_own_link_change();
                        if unknown {
                            self.say(&format!(
                                "transport: Link session playing (its beat stays where it is); jamrig plays from its next bar ({bar} beats)"
                            ));
                        } else {
                            self.say(&format!(
                                "transport: Link session started; playing from its next bar ({bar} beats)"
                            ));
                        }
                    }
                }
            },
            ":stop" => match self.effective_sync() {
                SyncMode::Internal => {
                    self.send_now(EventKind::Stop);
                    self.say("transport: stopped");
                }
                SyncMode::Midi => self.say(MIDI_OWNS_TRANSPORT),
                SyncMode::Link { .. } => {
                    self.link.propose_stop();
                    self.link_start_stop_known = true;
                    self.seen_own_link_change();
                    self.say("transport: Link session stopped");
                }
            },
            ":tempo" => match args.first().and_then(|a| a.parse::<f64>().ok()) {
                Some(bpm) => {
                    let _ = self.command(&format!("tempo({bpm});"));
                    // The set took it (it is in range): the transport's source decides.
                    if self.session.set().tempo_bpm == bpm {
                        match self.effective_sync() {
                            SyncMode::Internal => {}
                            SyncMode::Midi => self.say("(the MIDI clock sets the tempo while the clock is midi)"),
                            SyncMode::Link { .. } => {
                                // Again even if the set had it already: the session
                                // may have moved away from it.
                                self.link.propose_tempo(bpm);
                                self.seen_own_link_change();
                                self.say(&format!(
                                    "tempo {} BPM proposed to the Link session",
                                    crate::params::fmt_num(bpm as f32)
                                ));
                            }
                        }
                    }
                }
                None if args.is_empty() => {
                    // The set's own, or what the transport follows from its source.
                    let (bpm, source) = match self.effective_sync() {
                        SyncMode::Internal => (self.session.set().tempo_bpm, String::new()),
                        other => (self.controller.stats().tempo(), format!(", following {}", other.name())),
                    };
                    self.say(&format!("tempo {} BPM{source} (:tempo BPM changes it)", fmt_bpm(bpm)));
                }
                None => self.say("usage: :tempo BPM (e.g. :tempo 128)"),
            },
            ":sync" => match args.first().copied() {
                Some(m @ ("internal" | "midi" | "link")) => {
                    self.opts.sync = None;
                    self.session.set_sync_override(None);
                    let _ = self.command(&format!("clock(\"{m}\");"));
                }
                _ => self.say("usage: :sync internal|midi|link"),
            },
            ":log" => match args.first() {
                Some(&"on") => {
                    self.log_on.store(true, Relaxed);
                    self.say("MIDI log on");
                }
                Some(&"off") => {
                    self.log_on.store(false, Relaxed);
                    self.say("MIDI log off");
                }
                None => {
                    let on = if self.log_on.load(Relaxed) { "on" } else { "off" };
                    self.say(&format!("MIDI log {on} (:log on|off)"));
                }
                _ => self.say("usage: :log on|off"),
            },
            ":ports" => {
                let ins = midi::list_inputs();
                let mut s = String::from("MIDI inputs:\n");
                if ins.is_empty() {
                    s.push_str(&midi::no_ports_line());
                }
                for (i, p) in ins.iter().enumerate() {
                    let mark = if self.midi.as_ref().is_some_and(|m| &m.port == p) { " (in use)" } else { "" };
                    s.push_str(&format!("  {i}: {p}{mark}\n"));
                }
                s.push_str("MIDI outputs:\n");
                let outs = midi::list_outputs();
                if outs.is_empty() {
                    s.push_str(&midi::no_ports_line());
                }
                let mut connected = self.midi.as_ref().map(|m| m.out_connections()).unwrap_or_default();
                for d in lock_devices(&self.midi_out).all() {
                    connected.extend(self.midi.as_ref().map(|m| m.device_connections(d.port)).unwrap_or_default());
                }
                for (i, p) in outs.iter().enumerate() {
                    let mark = if connected.contains(p) { " (connected)" } else { "" };
                    s.push_str(&format!("  {i}: {p}{mark}\n"));
                }
                s.push_str(&format!(
                    "jamrig's MIDI output ports (the clock's, and one per device the set names):\n  {}\n",
                    self.out_routes("\n  ")
                ));
                s.push_str("audio outputs:\n");
                for o in audio::list_outputs() {
                    s.push_str(&format!("  {o}\n"));
                }
                self.say(&s);
            }
            ":midi-out" => {
                if args.is_empty() {
                    let line = match &self.midi {
                        Some(m) => match m.out_connections() {
                            c if c.is_empty() => {
                                format!("MIDI out: {}, not connected (:midi-out NAME connects it)", m.out_port())
                            }
                            c => format!("MIDI out: {} -> {}", m.out_port(), c.join(", ")),
                        },
                        None => "MIDI out: unavailable (no MIDI client)".to_string(),
                    };
                    let devices = self.device_routes(" | ");
                    let devices = if devices.is_empty() { devices } else { format!(" | {devices}") };
                    self.say(&format!("{line}{devices}"));
                } else {
                    let want = args.join(" ");
                    match self.midi.as_mut().map(|m| m.connect_out(&want).map(|p| (m.out_port(), p))) {
                        Some(Ok((own, port))) => {
                            self.out_device = Some(want);
                            self.say(&format!("MIDI out: {own} -> {port}"));
                        }
                        Some(Err(e)) => {
                            self.out_device = Some(want);
                            self.say(&format!("{e}: it will be connected when it appears"));
                        }
                        None => self.say("MIDI out: unavailable (no MIDI client)"),
                    }
                    self.out_said = self.midi.as_ref().map(|m| m.out_connections()).unwrap_or_default();
                }
            }
            ":clock-out" => match args.first().copied() {
                Some(v @ ("on" | "off")) => {
                    self.session.set_clock_out_override(None);
                    self.controller.stats().clock_out_looped.store(false, Relaxed);
                    self.clock_loop_said = false;
                    let on = v == "on";
                    if self.session.set().clock_out == on {
                        // Already so: republish, so that a refused clock starts again.
                        let _ = self.command(&format!("clock_out({});", !on));
                    }
                    let _ = self.command(&format!("clock_out({on});"));
                }
                None => {
                    let on = if self.session.set().clock_out { "on" } else { "off" };
                    self.say(&format!("clock out {on} (:clock-out on|off)"));
                }
                _ => self.say("usage: :clock-out on|off"),
            },
            ":port" => {
                if args.is_empty() {
                    self.say("usage: :port NAME|INDEX");
                } else {
                    let want = args.join(" ");
                    let released = self.close_midi();
                    if !released.is_empty() {
                        self.say(&format!("MIDI in: closed{released}"));
                    }
                    match self.midi_connect(Some(&want)) {
                        Ok(m) => {
                            self.say(&format!("MIDI in: {}", m.port));
                            self.midi = Some(m);
                            self.midi_wanted = None;
                        }
                        Err(e) => {
                            self.say(&format!("{e}: it will be attached when it appears"));
                            self.midi_wanted = Some(want);
                        }
                    }
                }
            }
            ":rec" => match args.as_slice() {
                [] | ["patterns"] => {
                    let patterns = !args.is_empty();
                    self.record_tap.set_patterns(patterns);
                    self.rec_start();
                    let what = if patterns { "the input and the patterns' notes" } else { "the input" };
                    self.say(&format!("recording {what} (:rec stop, then :rec save FILE.mid)"));
                }
                ["stop"] => {
                    if self.recorder.is_recording() {
                        self.rec_stop();
                    } else {
                        self.say("not recording");
                    }
                }
                ["save", path] => self.rec_save(Path::new(path)),
                _ => self.say("usage: :rec [patterns] | :rec stop | :rec save FILE.mid"),
            },
            ":save" => match args.first() {
                Some(path) => self.save(Path::new(path)),
                None => self.say("usage: :save FILE"),
            },
            ":load" => match args.first() {
                Some(path) => self.load(Path::new(path)),
                None => self.say("usage: :load FILE"),
            },
            ":reload" => self.reload(),
            ":watch" => match args.first() {
                Some(&"on") => {
                    self.watching = true;
                    self.rewatch();
                    self.say("watching the set");
                }
                Some(&"off") => {
                    self.watching = false;
                    self.watcher = None;
                    self.say("not watching the set (use :reload)");
                }
                None => {
                    let on = if self.watching { "on" } else { "off (use :reload)" };
                    self.say(&format!("watching the set: {on} (:watch on|off)"));
                }
                _ => self.say("usage: :watch on|off"),
            },
            ":events" => match args.as_slice() {
                [name] | [name, _] => match args.get(1).map(|b| b.parse::<f64>()).transpose() {
                    Ok(bars) => {
                        let lib = self.session.host().library();
                        match crate::rig::events::grid(self.session.set(), lib, name, bars) {
                            Ok(g) => self.say(g.trim_end()),
                            Err(e) => self.say(&e),
                        }
                    }
                    Err(_) => self.say("usage: :events NAME [BARS] (BARS a whole number of bars)"),
                },
                _ => self.say("usage: :events NAME [BARS]"),
            },
            ":keys" => match keys_args(&args) {
                Ok(_) => self.say(":keys needs a terminal"),
                Err(e) => self.say(&e),
            },
            ":meters" => self.say(":meters needs a terminal"),
            other => {
                let names: Vec<&str> = COMMANDS.iter().map(|(c, _)| c.split(' ').next().unwrap_or(c)).collect();
                let hint = crate::script::diagnostic::suggest(other, names)
                    .map(|s| format!(" (did you mean {s}?)"))
                    .unwrap_or_default();
                self.say(&format!("unknown command {other}{hint}; :help lists them"));
            }
        }
        true
    }

    /// The running set with the instruments program changes chose and the knob
    /// (CC) positions folded in.
    fn live_set(&self) -> Set {
        let stats = self.controller.stats();
        let mut set =
            crate::script::save::with_programs(self.session.set(), |n| stats.program_of((n as usize).checked_sub(1)?));
        for (&ch, spec) in set.channels.iter_mut() {
            for p in Param::ALL {
                if let Some(v) = stats.override_of(ch as usize - 1, *p) {
                    spec.params.set(*p, v);
                }
            }
        }
        set
    }

    fn save(&self, path: &Path) {
        let text = crate::script::save::to_rhai(&self.live_set(), self.session.host().library());
        match std::fs::write(path, text) {
            Ok(()) => self.say(&format!("saved the live rig to {}", path.display())),
            Err(e) => self.say(&format!("cannot write {}: {e}", path.display())),
        }
    }

    fn load(&mut self, path: &Path) {
        let mut host = match ScriptHost::new() {
            Ok(h) => h,
            Err(d) => return self.say(&d.render()),
        };
        host.allow_folders(&self.opts.samples);
        match Session::open(host, path) {
            Ok(mut s) => {
                s.set_sync_override(self.opts.sync);
                let mut set = s.set().clone();
                apply_sync(&mut set, self.opts.sync);
                let mut publisher = LinkedPublisher {
                    controller: &mut self.controller,
                    link: &mut self.link,
                    file_tempo: Some(self.file_tempo),
                    proposed: false,
                    outs: &self.midi_out,
                    midi: self.midi.as_mut(),
                    out_notes: Vec::new(),
                };
                let published = publisher.publish_set(&set);
                let out_notes = std::mem::take(&mut publisher.out_notes);
                if publisher.proposed {
                    self.seen_own_link_change();
                }
                self.after_routing(&out_notes);
                match published {
                    Ok(()) => {
                        self.file_tempo = set.tempo_bpm;
                        self.session = s;
                        self.opts.set = path.to_path_buf();
                        self.rewatch();
                        self.say(&format!("playing {}", path.display()));
                    }
                    Err(e) => self.say(&e.to_string()),
                }
            }
            Err(d) => self.say(&d.render()),
        }
    }

    fn status(&mut self) -> String {
        let sync = self.sync_line();
        let stats = self.controller.stats().clone();
        let set = self.session.set();
        let mut s = String::new();
        let beat = stats.beat();
        let bpb = set.beats_per_bar.max(1.0);
        let transport = if stats.playing.load(Relaxed) {
            format!("playing, bar {} beat {}", (beat / bpb).floor() as u64 + 1, (beat % bpb).floor() as u64 + 1)
        } else {
            "stopped".to_string()
        };
        s.push_str(&format!(
            "set {}: {} BPM ({transport}), clock {}\n",
            self.session.path().display(),
            crate::params::fmt_num(stats.tempo() as f32),
            self.effective_sync().name()
        ));
        s.push_str(&sync);
        match (&self.chosen, &self.stream) {
            (Some(c), Some(_)) => {
                let (mean, worst, frames) = self.audio.take();
                let budget = frames as f64 / self.sample_rate as f64;
                let pct = |d: Duration| if budget > 0.0 { d.as_secs_f64() / budget * 100.0 } else { 0.0 };
                s.push_str(&format!(
                    "audio: {}, {} Hz, {frames}-frame callbacks ({:.2} ms): mean {:.3} ms ({:.0}%), worst {:.3} ms ({:.0}%) of the budget; underruns {}\n",
                    c.description,
                    self.sample_rate,
                    budget * 1e3,
                    mean.as_secs_f64() * 1e3,
                    pct(mean),
                    worst.as_secs_f64() * 1e3,
                    pct(worst),
                    self.audio.underruns.load(Relaxed)
                ));
            }
            _ => s.push_str("audio: no device (waiting for it to return)\n"),
        }
        s.push_str(&render_line(&stats));
        s.push_str(&self.out_line());
        s.push_str(&match &self.midi {
            Some(m) => format!("MIDI in: {}\n", m.port),
            None => match (&self.midi_wanted, midi::unavailable()) {
                (_, Some(why)) => format!("MIDI in: none ({why})\n"),
                (Some(w), None) => format!("MIDI in: none (waiting for \"{w}\")\n"),
                (None, None) => "MIDI in: none\n".to_string(),
            },
        });
        let rows: Vec<ChannelRow> = (0..MAX_CHANNELS)
            .filter_map(|ch| {
                let spec = set.channels.get(&(ch as u8 + 1))?;
                // A program change shows what the channel plays now.
                let program = stats.program_of(ch).and_then(|p| set.programs.get(&p).map(|s| (p, s)));
                Some(ChannelRow {
                    channel: ch as u8 + 1,
                    instrument: instrument_text(&spec.instrument, program.map(|(p, s)| (p, s.instrument.as_str()))),
                    voices: stats.voices[ch].load(Relaxed),
                    peak: stats.take_peak(ch),
                })
            })
            .collect();
        s.push_str(&channel_rows(&rows));
        if let Some(l) = &self.listener {
            s.push_str(&l.stats().line(l.addr));
            s.push('\n');
        }
        if let Some(m) = crate::rig::describe::sample_memory(set) {
            s.push_str(&format!(
                "{m}; the engine holds {}{}\n",
                plural(stats.banks_held.load(Relaxed) as u64, "sample bank"),
                match stats.banks_overflow.load(Relaxed) {
                    0 => String::new(),
                    n => format!(" ({n} found no slot and are silent)"),
                }
            ));
        }
        s.push_str(&format!(
            "events: {} dropped (queue full), {} late, {} overflowed, {} skipped; voices stolen {}, cut {}, without a delay line {}; reverb tails cut {}; faults {}",
            stats.events_dropped.load(Relaxed),
            stats.events_late.load(Relaxed),
            stats.events_overflow.load(Relaxed),
            plural(stats.hits_overflow.load(Relaxed), "pattern hit"),
            stats.voices_stolen.load(Relaxed),
            stats.voices_cut.load(Relaxed),
            stats.lines_missed.load(Relaxed),
            stats.reverb_tails_cut.load(Relaxed),
            stats.faults.load(Relaxed)
        ));
        s
    }

    /// Where the output ports go: the default port, then each device's port (with
    /// the device the set names, where it is not connected), `sep` between them.
    fn out_routes(&self, sep: &str) -> String {
        let own = match &self.midi {
            Some(m) => match m.out_connections() {
                c if c.is_empty() => format!("{} (not connected)", m.out_port()),
                c => format!("{} -> {}", m.out_port(), c.join(" + ")),
            },
            None => return "unavailable".to_string(),
        };
        let devices = self.device_routes(sep);
        if devices.is_empty() { own } else { format!("{own}{sep}{devices}") }
    }

    /// Each device's output port and where it goes, `sep` between them.
    fn device_routes(&self, sep: &str) -> String {
        let Some(m) = &self.midi else { return String::new() };
        let devices = lock_devices(&self.midi_out).clone();
        let routes: Vec<String> = devices
            .all()
            .iter()
            .map(|d| {
                let port = m.out_port_name(d.port).unwrap_or_else(|| super::midi_out::port_name_for(&d.device));
                let removed = if d.is_retiring() { " (removed from the set: its note-offs are leaving)" } else { "" };
                match m.device_connections(d.port) {
                    c if c.is_empty() => format!("{port} for \"{}\" (not connected){removed}", d.device),
                    c => format!("{port} -> {}{removed}", c.join(" + ")),
                }
            })
            .collect();
        routes.join(sep)
    }

    /// The `MIDI out:` line of `:status`: where it goes, when its messages leave,
    /// the clock, and what was lost or late.
    fn out_line(&self) -> String {
        let stats = self.controller.stats();
        let to = self.out_routes(" | ");
        let latency = self.midi_out.delay_frames.load(Relaxed);
        let clock = match (self.session.set().clock_out, stats.clock_out_looped.load(Relaxed)) {
            (true, true) => "clock out refused (a loop)",
            (true, false) => "clock out on",
            _ => "clock out off",
        };
        format!(
            "MIDI out: {to}, {latency} frames after the audio is handed out (so that it sounds with it); {clock}; {} sent, {} late, {} lost (queue full), {} refused by the port\n",
            self.midi_out.written.load(Relaxed),
            self.midi_out.late.load(Relaxed),
            stats.midi_out_overflow.load(Relaxed),
            self.midi_out.refused.load(Relaxed),
        )
    }

    /// The `sync:` line of `:status`: the source, the Link session (peers, tempo,
    /// start/stop) in Link mode, and the incoming MIDI clock's tempo in any mode.
    fn sync_line(&mut self) -> String {
        let stats = self.controller.stats().clone();
        let clock_in = match stats.clock_tempo() {
            Some(bpm) => format!("MIDI clock in at {bpm:.2} BPM"),
            None => "no MIDI clock in".to_string(),
        };
        match self.effective_sync() {
            SyncMode::Internal => format!("sync: internal; {clock_in}\n"),
            SyncMode::Midi => format!("sync: midi; {clock_in}\n"),
            SyncMode::Link { quantum } => {
                let l = self.link.status();
                let state = match (l.playing, self.link_start_stop_known) {
                    (true, _) => "playing",
                    (false, true) => "stopped",
                    (false, false) => "start/stop not told since joining (:play joins it)",
                };
                format!(
                    "sync: link, quantum {}: {}, session {:.2} BPM, session {state}; {clock_in}\n",
                    crate::params::fmt_num(quantum as f32),
                    plural(l.peers, "peer"),
                    l.bpm,
                )
            }
        }
    }

    /// Releases every note, lets the releases ring briefly, closes everything.
    fn shutdown(mut self) {
        // The take ends before jamrig lets go of the notes (it closes those still
        // held itself): no all-notes-off that nobody played goes into it.
        self.rec_stop();
        if self.stream.is_some() {
            for ch in 0..MAX_CHANNELS as u8 {
                self.send_now(EventKind::Control { channel: ch, cc: 123, value: 0 });
            }
            self.send_now(EventKind::Stop);
            let t0 = Instant::now();
            std::thread::sleep(Duration::from_millis(20));
            while t0.elapsed() < STOP_FADE {
                let sounding: u32 = self.controller.stats().voices.iter().map(|v| v.load(Relaxed)).sum();
                if sounding == 0 {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            self.drain_midi_out();
        }
        if let Some(path) = self.opts.record.clone() {
            self.rec_save(&path);
        } else if self.take_unsaved && !self.recorder.is_empty() {
            // Never dropped silently.
            let path = self.default_take_path();
            self.say(&format!("the take was not saved: saving it as {}", path.display()));
            self.rec_save(&path);
        }
        if let Some(m) = self.midi.take() {
            m.close();
        }
        self.listener = None;
        self.watcher = None;
        self.stream = None;
        self.controller.collect();
        let _ = self.end_capture("");
        self.say("stopped");
    }

    /// Waits (a little) until the MIDI output has sent what the engine queued: the
    /// note-offs of held external notes leave before the port closes.
    fn drain_midi_out(&self) {
        let t0 = Instant::now();
        while !self.midi_out.queue.is_empty() && t0.elapsed() < OUT_DRAIN {
            std::thread::sleep(Duration::from_millis(2));
        }
        // What the writer holds leaves within the output latency and two cycles.
        let frames = self.clock.output_latency_frames() + 2 * self.clock.latency_frames();
        std::thread::sleep(Duration::from_secs_f64(frames as f64 / self.sample_rate as f64) + OUT_DRAIN_MARGIN);
    }

    /// Finishes the session capture, if one runs, at the engine's last frame;
    /// returns the part it was.
    fn end_capture(&mut self, why: &str) -> Option<u32> {
        let part = self.capture.as_ref().map(|c| c.part());
        if let Some(mut c) = self.capture.take() {
            c.note_set(self.controller.last_serial(), &self.session);
            let end = self.controller.stats().frames.load(Relaxed);
            match c.finish(end) {
                Ok(line) if why.is_empty() => self.say(&line),
                Ok(line) => self.say(&format!("{line}; this part ends here: {why}")),
                Err(e) => self.say(&format!("capture: cannot finish the capture: {e}")),
            }
        }
        part
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::TransportReading;

    /// The column where each line's text starts after its first `width` columns
    /// of name and the spaces that follow.
    fn text_column(line: &str, name_end: usize) -> usize {
        name_end + line[name_end..].chars().take_while(|c| *c == ' ').count()
    }

    /// Regression (issue 13, minor): `:help`'s descriptions began wherever the
    /// command's name ended. They start in one column, the longest command's
    /// name included.
    #[test]
    fn help_is_aligned() {
        let help = help_text();
        let lines: Vec<&str> = help.lines().filter(|l| l.starts_with("  :")).collect();
        assert_eq!(lines.len(), COMMANDS.len());
        let columns: Vec<usize> =
            lines.iter().zip(COMMANDS).map(|(l, (c, _))| text_column(l, 2 + c.chars().count())).collect();
        assert!(columns.iter().all(|&c| c == columns[0]), "columns {columns:?}:\n{help}");
        for (l, (_, what)) in lines.iter().zip(COMMANDS) {
            assert_eq!(&l[columns[0]..], *what);
        }
    }

    /// Regression (issue 13, minor): `:keys` took any channel and octave. It
    /// takes channels 1..16 and octaves 0..8, and says what is wrong otherwise.
    #[test]
    fn keys_validates_its_channel_and_octave() {
        assert_eq!(keys_args(&[]), Ok((1, 4)));
        assert_eq!(keys_args(&["16", "0"]), Ok((16, 0)));
        assert_eq!(keys_args(&["2", "8"]), Ok((2, 8)));
        assert_eq!(keys_args(&["0"]), Err(":keys: channel 0 is not 1..16 (e.g. :keys 2 3)".to_string()));
        assert_eq!(keys_args(&["17"]), Err(":keys: channel 17 is not 1..16 (e.g. :keys 2 3)".to_string()));
        assert_eq!(keys_args(&["bass"]), Err(":keys: channel bass is not 1..16 (e.g. :keys 2 3)".to_string()));
        assert_eq!(keys_args(&["2", "9"]), Err(":keys: octave 9 is not 0..8 (e.g. :keys 2 3)".to_string()));
        assert_eq!(keys_args(&["2", "-1"]), Err(":keys: octave -1 is not 0..8 (e.g. :keys 2 3)".to_string()));
        assert_eq!(keys_args(&["2", "3", "4"]), Err("usage: :keys [CHANNEL 1..16] [OCTAVE 0..8]".to_string()));
    }

    /// Regression (issue 13, minor): `:log` times are bars and beats from 1, to a
    /// hundredth of a beat; a message a hair before a bar line was shown as beat
    /// 5.00 of a 4-beat bar.
    #[test]
    fn log_times_are_bars_and_beats() {
        let sr = 48000.0;
        let t = TransportReading { frame: 48000, beat: 2.0, bpm: 120.0, playing: true };
        // Half a second later at 120 BPM: one beat later.
        assert_eq!(log_position(&t, 72000, sr, 4.0), Some((1, 4.0)));
        assert_eq!(log_position(&t, 96000, sr, 4.0), Some((2, 1.0)));
        assert_eq!(log_position(&t, 96000, sr, 3.0), Some((2, 2.0)));
        // 0.001 of a beat before bar 2: shown as bar 2, beat 1.00.
        let (bar, beat) = log_position(&t, 96000 - 24, sr, 4.0).unwrap();
        assert_eq!((bar, format!("{beat:.2}")), (2, "1.00".to_string()));
        // Before the transport's beat 0: bar 1, beat 1.
        assert_eq!(log_position(&t, 0, sr, 4.0), Some((1, 1.0)));
        let stopped = TransportReading { playing: false, ..t };
        assert_eq!(log_position(&stopped, 72000, sr, 4.0), None);
    }

    /// Regressions (issue 13, minor): a channel switched by a program change
    /// showed the set's instrument in `:status`; the channel lines' columns moved
    /// with the instruments' names (past 30 characters); "1 voices".
    #[test]
    fn status_channel_lines_show_the_program_and_line_up() {
        assert_eq!(instrument_text("saw", None), "saw");
        assert_eq!(instrument_text("saw", Some((73, "flute"))), "flute (program 73)");
        let rows = [
            ChannelRow { channel: 1, instrument: instrument_text("saw", Some((73, "flute"))), voices: 1, peak: 0.5 },
            ChannelRow {
                channel: 2,
                instrument: "Yamaha Grand Piano (a very long SoundFont preset name)".into(),
                voices: 12,
                peak: 0.0,
            },
            ChannelRow { channel: 10, instrument: "drums".into(), voices: 0, peak: 1.0 },
        ];
        let text = channel_rows(&rows);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("  ch1  flute (program 73) "), "{text}");
        assert!(lines[0].contains(" 1 voice ") && lines[1].contains("12 voices") && lines[2].contains(" 0 voices"));
        let peak: Vec<usize> = lines.iter().map(|l| l.find("peak").unwrap()).collect();
        assert!(peak.iter().all(|&p| p == peak[0]), "the peak columns differ ({peak:?}):\n{text}");
        assert!(lines[0].ends_with("peak   -6.0 dB") && lines[1].ends_with("peak   silent"), "{text}");
    }
}
