//! The `jack` build's audio device: one JACK client, `jamrig`, with its audio
//! outputs (`out_0`, `out_1`), its MIDI input (`in`), its MIDI output (`out`) and
//! a MIDI output per device the set names (`out-op-xy`), so that patchbays
//! remember its connections. Its process callback is the audio
//! thread: it reads MIDI in at the frames it arrives, runs the engine, and writes
//! MIDI out at the frame offsets the engine gave, all in one JACK cycle, so every
//! placement is a frame count (sample-exact, whatever the scheduling). The control
//! side opens it, registers and connects its ports and activates it while the set
//! is still being evaluated (the callback plays silence until then); the engine is
//! handed to the running callback through a one-slot lock-free queue, and the
//! callback plays it from the cycle that finds it there. The control thread closes
//! it.

use super::clock::{FrameClock, WindowedMin};
use super::link::LinkClock;
use super::midi::{Held, MidiTap};
use super::midi_out::{JackOutControl, JackOutPorts, OutWriter};
use super::stats::LiveStats;
use crate::engine::{Engine, TICK_FRAMES};
use crossbeam_queue::ArrayQueue;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The client's name: the same every run, so that patchbays keep its connections.
pub const CLIENT: &str = "jamrig";
/// Frames the engine renders per step into the callback's scratch buffer.
const SCRATCH_FRAMES: usize = 1024;
/// Cycles per window of the frame line's minimum.
const LINE_WINDOW: u32 = 128;
/// Cycles after an overrun over which the new frame line is measured.
const OVERRUN_SETTLE: u32 = 4;
/// Engines in flight to the running callback: one, handed over once per client.
const HANDOFF_SLOTS: usize = 1;

/// Wraps each run of the process callback (tests run it under `assert_no_alloc`).
pub type CallbackGuard = fn(&mut dyn FnMut());

fn unguarded(f: &mut dyn FnMut()) {
    f()
}

/// Counts overruns and notices the server going away.
struct Notify {
    stats: Arc<LiveStats>,
    dead: Arc<AtomicBool>,
}

impl jack::NotificationHandler for Notify {
    unsafe fn shutdown(&mut self, _: jack::ClientStatus, _: &str) {
        self.dead.store(true, Relaxed);
        self.stats.failed.store(true, Relaxed);
    }

    fn xrun(&mut self, _: &jack::Client) -> jack::Control {
        self.stats.underruns.fetch_add(1, Relaxed);
        jack::Control::Continue
    }
}

/// What the callback runs once the engine has arrived: the engine and everything
/// it talks to. Built on the control side, boxed, and handed over whole.
struct Running {
    engine: Engine,
    clock: Arc<FrameClock>,
    stats: Arc<LiveStats>,
    link: LinkClock,
    tap: MidiTap,
    /// `JACK frame - engine frame`, the smallest over the last window or two: it
    /// moves when the server skips cycles (an overrun). A callback that runs late
    /// reads a later cycle's frame time, never an earlier one.
    line: WindowedMin<u32>,
    cycles: u32,
    /// Overruns the server reported, as last seen.
    overruns: u64,
    /// The frame line jumped and is being measured.
    jumped: bool,
}

/// The client's ports and the callback's buffers, there from activation.
struct Io {
    left: jack::Port<jack::AudioOut>,
    right: jack::Port<jack::AudioOut>,
    midi_in: jack::Port<jack::MidiIn>,
    outs: JackOutPorts,
    writer: OutWriter,
    held: Arc<Held>,
    scratch: Vec<f32>,
}

/// The process callback's state: the ports, and the engine once it has arrived.
struct Process {
    io: Io,
    /// Where the engine arrives from the control side: taken without a lock or an
    /// allocation, and kept until the client is closed (on the control thread), so
    /// never dropped on this one.
    handoff: Arc<ArrayQueue<Box<Running>>>,
    running: Option<Box<Running>>,
    guard: CallbackGuard,
}

impl jack::ProcessHandler for Process {
    fn process(&mut self, _: &jack::Client, ps: &jack::ProcessScope) -> jack::Control {
        let guard = self.guard;
        guard(&mut || self.cycle(ps));
        jack::Control::Continue
    }
}

impl Process {
    /// One cycle: silence until the engine has arrived, then the engine, from the
    /// cycle it arrives in.
    fn cycle(&mut self, ps: &jack::ProcessScope) {
        super::timeline::stamp(&super::timeline::FIRST_CALLBACK);
        if self.running.is_none()
            && let Some(r) = self.handoff.pop()
        {
            self.running = Some(r);
            super::timeline::stamp(&super::timeline::ENGINE_ADOPTED);
        }
        match self.running.as_deref_mut() {
            Some(r) => r.cycle(&mut self.io, ps),
            None => {
                self.io.left.as_mut_slice(ps).fill(0.0);
                self.io.right.as_mut_slice(ps).fill(0.0);
                self.io.outs.clear_cycle(ps);
            }
        }
    }
}

impl Running {
    fn cycle(&mut self, io: &mut Io, ps: &jack::ProcessScope) {
        let t0 = Instant::now();
        let n = ps.n_frames() as usize;
        let sr = self.engine.sample_rate() as f64;
        let cycle = ps.last_frame_time();
        let frame = self.engine.frames_out();
        let overruns = self.stats.underruns.load(Relaxed);
        if overruns != self.overruns {
            // Cycles may have been skipped: measure the line afresh.
            self.overruns = overruns;
            self.line.settle_afresh(OVERRUN_SETTLE);
            self.link.after_overrun();
        }
        let raw = cycle.wrapping_sub(frame as u32);
        let old = self.line.best();
        if let Some(o) = old
            && raw != o
            && !self.jumped
        {
            // The line jumped: cycles were skipped (or this callback read a later
            // cycle's time). Measure it afresh from here; MIDI placed from here on
            // is on the new line already.
            self.jumped = true;
            self.line.settle_afresh(OVERRUN_SETTLE);
            self.engine.line_jumped(frame + (n + TICK_FRAMES) as u64);
        }
        if self.line.push(raw)
            && let (Some(old), Some(new)) = (old, self.line.best())
            && (new != old || self.jumped)
        {
            // Cycles the engine did not render were played as silence.
            self.engine.after_overrun(Some(new.wrapping_sub(old) as i32 as i64));
            self.jumped = false;
        }
        self.cycles += 1;
        if self.cycles == LINE_WINDOW {
            self.line.roll();
            self.cycles = 0;
        }
        // From the cycle's start to hearing its first frame; and to sending MIDI.
        let audio_latency = io.left.get_latency_range(jack::LatencyType::Playback).1 as i64;
        let midi_latency =
            io.outs.default_port().map_or(0, |p| p.get_latency_range(jack::LatencyType::Playback).1 as i64);
        let stream_ns =
            ps.cycle_times().map(|t| t.current_usecs * 1000).unwrap_or(0) + (audio_latency as f64 / sr * 1e9) as u64;
        let jack_frame = (frame as u32).wrapping_add(self.line.best().unwrap_or(0));
        self.clock.publish_with_jack_frame(frame, t0, stream_ns, n, Some(jack_frame));
        self.clock.set_output_latency(audio_latency.max(0) as u64);

        // MIDI in, at its frame in the cycle, one buffer and one tick later.
        let placed = frame + (n + TICK_FRAMES) as u64;
        for ev in io.midi_in.iter(ps) {
            self.tap.receive_at(&io.held, placed + ev.time as u64, ev.bytes);
        }

        let since = ps.frames_since_cycle_start() as f64;
        let from_now = Duration::from_secs_f64(((audio_latency as f64 - since) / sr).max(0.0));
        if let Some(t) = self.link.timeline(frame, from_now, sr) {
            self.engine.follow_timeline(t);
        }

        let (left, right) = (io.left.as_mut_slice(ps), io.right.as_mut_slice(ps));
        let mut done = 0;
        while done < n {
            let k = (n - done).min(SCRATCH_FRAMES);
            let buf = &mut io.scratch[..2 * k];
            self.engine.process(buf, 2);
            for i in 0..k {
                left[done + i] = buf[2 * i];
                right[done + i] = buf[2 * i + 1];
            }
            done += k;
        }

        // MIDI out: a message for engine frame `f` at offset `f - frame`, plus the
        // audio's latency beyond the MIDI port's (so that it sounds with the
        // audio), less its device's own.
        let lead = (audio_latency - midi_latency).max(0);
        let start = frame as i64;
        let out = &self.tap.out;
        out.delay_frames.store(lead as u64, Relaxed);
        let when = |m: &crate::engine::midi_out::OutMessage| {
            Some(m.frame as i64 - start + (lead - m.lead_frames as i64).max(0))
        };
        // Each message to its device's port (ports made since the last cycle are
        // taken first: a snapshot that routes to one finds it).
        io.outs.write_cycle(ps, &mut io.writer, out, when);
        self.stats.record(t0.elapsed(), n);
    }
}

/// The running client (in a mutex, for the control thread only: it makes and
/// drops output ports on it).
type ActiveClient = Mutex<Option<jack::AsyncClient<Notify, Process>>>;

/// jamrig's running client: active from the start, playing silence until
/// [`JackStream::start`] hands it the engine.
pub struct JackStream {
    client: Arc<ActiveClient>,
    /// Where the engine goes to the process callback.
    handoff: Arc<ArrayQueue<Box<Running>>>,
    /// What the callback records its timing into, and the server's notifications
    /// their overruns and its going away.
    stats: Arc<LiveStats>,
    /// Makes and drops the MIDI output ports of devices (control thread).
    pub outs: Arc<Mutex<JackOutControl>>,
    /// A second client of the same server, never activated, to connect ports with
    /// from the control thread (shared with the MIDI connection): see
    /// [`JackStream::ports_client`].
    ports: Mutex<PortsClient>,
    /// The server has gone: its clients must not be closed (libjack crashes).
    pub dead: Arc<AtomicBool>,
    /// What the MIDI input holds down.
    pub held: Arc<Held>,
    /// Full port names.
    pub midi_in: String,
    pub midi_out: String,
    pub audio: [String; 2],
}

fn failed(e: impl std::fmt::Display) -> super::audio::AudioError {
    super::audio::AudioError::Failed(format!("JACK: {e}"))
}

/// jamrig's JACK clients, opened and not yet active: its own (audio and MIDI
/// ports) and the one it connects ports with (`None`: opened once the engine is
/// handed over).
pub struct Clients {
    pub own: jack::Client,
    pub ports: Option<jack::Client>,
}

/// The second client, never activated, that the control thread connects ports
/// with ([`JackStream::ports_client`]).
const PORTS_CLIENT: &str = "jamrig_ports";
/// How long the second client waits for the callback to take the engine before it
/// is opened anyway (a stalled server).
const PORTS_CLIENT_WAIT: std::time::Duration = std::time::Duration::from_millis(250);

/// The second client's state. It is opened only once the engine has been handed
/// over: the server answers one request at a time, and opening a client waits for
/// its next cycle, so opened beside the activation it held the activation (and the
/// first sound) back by a cycle.
enum PortsClient {
    /// Not asked for yet.
    Unopened,
    /// Being opened in a thread of its own.
    Opening(std::thread::JoinHandle<Option<jack::Client>>),
    Open(Arc<jack::Client>),
    /// The server refused it.
    Refused,
}

fn open(name: &str) -> Option<jack::Client> {
    super::timeline::mark(&format!("client {name}: open called"));
    let c = jack::Client::new(name, jack::ClientOptions::NO_START_SERVER).ok().map(|(c, _)| c);
    super::timeline::mark(&format!("client {name}: open returned"));
    c
}

/// Opens jamrig's own JACK client (the other is opened once the engine is handed
/// over), or `None` when no server runs.
pub fn open_clients() -> Option<Clients> {
    Some(Clients { own: open(CLIENT)?, ports: None })
}

impl JackStream {
    /// Registers the ports of jamrig's client (`clients`; `None`: opened here),
    /// activates it with a callback that plays silence until [`JackStream::start`]
    /// hands it the engine, and connects its audio outputs to the server's
    /// playback ports. Each of these waits on the server's cycle, so this runs
    /// beside the set's evaluation. `stats` counts the server's overruns from now
    /// on; `guard` wraps each run of the callback (`None`: none).
    pub fn activate(
        clients: Option<Clients>,
        stats: Arc<LiveStats>,
        guard: Option<CallbackGuard>,
    ) -> Result<JackStream, super::audio::AudioError> {
        let Clients { own: client, ports } = match clients {
            Some(c) => c,
            None => open_clients().ok_or_else(|| failed("no JACK server running"))?,
        };
        // The second client is opened once the engine is handed over (`start`).
        let ports = match ports {
            Some(c) => PortsClient::Open(Arc::new(c)),
            None => PortsClient::Unopened,
        };
        let left = client.register_port("out_0", jack::AudioOut::default()).map_err(failed)?;
        let right = client.register_port("out_1", jack::AudioOut::default()).map_err(failed)?;
        let midi_in = client.register_port("in", jack::MidiIn::default()).map_err(failed)?;
        // The default MIDI output now; the ports of the devices the set names once
        // it is known (registered on the active client, see `start`).
        let (outs, names) = JackOutPorts::register(&client, &Default::default()).map_err(failed)?;
        let audio = [left.name().map_err(failed)?, right.name().map_err(failed)?];
        let in_name = midi_in.name().map_err(failed)?;
        let out_name = names.default_name();
        super::timeline::mark("ports registered");
        let held = Arc::new(Held::default());
        let dead = Arc::new(AtomicBool::new(false));
        let handoff = Arc::new(ArrayQueue::new(HANDOFF_SLOTS));
        let process = Process {
            io: Io {
                left,
                right,
                midi_in,
                outs,
                writer: OutWriter::default(),
                held: held.clone(),
                scratch: vec![0.0; 2 * SCRATCH_FRAMES],
            },
            handoff: handoff.clone(),
            running: None,
            guard: guard.unwrap_or(unguarded),
        };
        let notify = Notify { stats: stats.clone(), dead: dead.clone() };
        let active = client.activate_async(notify, process).map_err(failed)?;
        super::timeline::mark("activate returned");
        let playback = active.as_client().ports(Some("system:playback_.*"), Some("audio"), jack::PortFlags::IS_INPUT);
        for (ours, theirs) in audio.iter().zip(&playback) {
            let _ = active.as_client().connect_ports_by_name(ours, theirs);
        }
        super::timeline::mark("outputs connected to the playback ports");
        let client = Arc::new(Mutex::new(Some(active)));
        let owner: Arc<dyn super::midi_out::JackClientOwner> = client.clone();
        Ok(JackStream {
            client,
            handoff,
            stats,
            outs: Arc::new(Mutex::new(names.owned_by(owner))),
            ports: Mutex::new(ports),
            dead,
            held,
            midi_in: in_name,
            midi_out: out_name,
            audio,
        })
    }

    /// What the callback records into (and the server's overruns are counted in).
    pub fn stats(&self) -> &Arc<LiveStats> {
        &self.stats
    }

    /// Hands `engine` to the running callback, which plays it from the first cycle
    /// that finds it. Each MIDI output device the set names (in `tap.out`) has its
    /// port by then. Once per client.
    pub fn start(
        &self,
        engine: Engine,
        clock: Arc<FrameClock>,
        link: LinkClock,
        tap: &MidiTap,
    ) -> Result<(), super::audio::AudioError> {
        let devices = tap.out.devices.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if !devices.all().is_empty() {
            // A port that cannot be made is left out, as the default one is not:
            // messages for it are counted as refused.
            let _ = self.outs.lock().unwrap_or_else(|p| p.into_inner()).sync(&devices);
        }
        let running = Box::new(Running {
            engine,
            clock,
            stats: self.stats.clone(),
            link,
            tap: tap.clone(),
            line: WindowedMin::new(|a: u32, b: u32| (a.wrapping_sub(b) as i32) < 0),
            cycles: 0,
            // Overruns while the client waited for the engine are not its own.
            overruns: self.stats.underruns.load(Relaxed),
            jumped: false,
        });
        // Dropped here, on the control side, if the slot is taken.
        self.handoff.push(running).map_err(|_| failed("the client plays an engine already; restart jamrig"))?;
        // Now the second client, once the callback has taken the engine: the server
        // answers one request at a time, and a client's open takes it about a cycle,
        // which would hold back whatever else asks it meanwhile (a connection to
        // jamrig's outputs made by another client as it starts, for one).
        let mut ports = self.ports.lock().unwrap_or_else(|p| p.into_inner());
        let handoff = self.handoff.clone();
        let open_after_adoption = move || {
            let since = std::time::Instant::now();
            while !handoff.is_empty() && since.elapsed() < PORTS_CLIENT_WAIT {
                std::thread::sleep(std::time::Duration::from_micros(500));
            }
            open(PORTS_CLIENT)
        };
        if matches!(*ports, PortsClient::Unopened)
            && let Ok(h) = std::thread::Builder::new().name("jamrig-jack-ports".into()).spawn(open_after_adoption)
        {
            *ports = PortsClient::Opening(h);
        }
        Ok(())
    }

    /// The second client, never activated, that the control thread connects ports
    /// with (opened here if it is not yet).
    pub fn ports_client(&self) -> Result<Arc<jack::Client>, String> {
        let mut ports = self.ports.lock().unwrap_or_else(|p| p.into_inner());
        let opened = match std::mem::replace(&mut *ports, PortsClient::Refused) {
            PortsClient::Open(c) => Some(c),
            PortsClient::Unopened => open(PORTS_CLIENT).map(Arc::new),
            PortsClient::Opening(h) => h.join().ok().flatten().map(Arc::new),
            PortsClient::Refused => None,
        };
        match opened {
            Some(c) => {
                *ports = PortsClient::Open(c.clone());
                Ok(c)
            }
            None => {
                Err("the JACK server refused jamrig a second client to connect ports with; restart the JACK server"
                    .into())
            }
        }
    }
}

impl Drop for JackStream {
    fn drop(&mut self) {
        let client = self.client.lock().unwrap_or_else(|p| p.into_inner()).take();
        // A second client still being opened is waited for, and closed here.
        let ports =
            match std::mem::replace(self.ports.get_mut().unwrap_or_else(|p| p.into_inner()), PortsClient::Refused) {
                PortsClient::Open(c) => Some(c),
                PortsClient::Opening(h) => h.join().ok().flatten().map(Arc::new),
                PortsClient::Unopened | PortsClient::Refused => None,
            };
        if self.dead.load(Relaxed) {
            // Closing a client whose server has gone crashes libjack.
            if let Some(c) = client {
                std::mem::forget(c);
            }
            if let Some(c) = ports {
                std::mem::forget(c);
            }
        }
    }
}
