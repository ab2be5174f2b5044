//! MIDI input. The input callback (midir's thread for ALSA, or JACK's process thread
//! with the `jack` feature) stamps each message with the engine frame it should sound
//! at, decodes it and queues it for the engine: no allocation, no lock. A port chosen
//! by name is re-attached when it comes back; without one, jamrig opens its own input
//! port for other programs to connect to. Beside the input, jamrig's MIDI output
//! port (`jamrig:out`) sends what the engine queues for it ([`super::midi_out`]).

use super::clock::FrameClock;
use crate::engine::event::{Event, EventKind};
use crate::rig::controller::EventSender;
use crossbeam_queue::ArrayQueue;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering::Relaxed};
#[cfg(not(feature = "jack"))]
use std::time::Instant;

#[cfg(feature = "jack")]
pub use jack_in::{MidiIn, connect, connect_shared, list_inputs, list_outputs, open_own_port, own_shared, unavailable};
#[cfg(not(feature = "jack"))]
pub use seq_in::{MidiIn, connect, list_inputs, list_outputs, open_own_port, unavailable};

/// Messages the MIDI log holds before the REPL prints them.
pub const MIDI_LOG_CAP: usize = 1024;
const CLIENT: &str = "jamrig";
/// The name of jamrig's MIDI output port through ALSA (and CoreMIDI, where a port
/// is known by its own name alone); on JACK it is the port `out` of the client
/// `jamrig`, `jamrig:out`.
#[cfg(not(feature = "jack"))]
pub const SEQ_OUT_PORT: &str = "jamrig out";
const OWN_PORT_NOTE: &str = " (jamrig's own port)";

/// How jamrig's output ports map to devices, as `jamrig ports` says it.
#[cfg(feature = "jack")]
pub const OUT_PORTS_NOTE: &str = "jamrig:out sends the clock (--clock-out) to the devices --midi-out connects it to; jamrig:out-DEVICE, one per device a set's channels name (midi_out: \"DEVICE\"), sends those channels to that device alone";
/// How jamrig's output ports map to devices, as `jamrig ports` says it.
#[cfg(not(feature = "jack"))]
pub const OUT_PORTS_NOTE: &str = "\"jamrig out\" sends the clock (--clock-out) to the devices --midi-out connects it to; \"jamrig out-DEVICE\", one per device a set's channels name (midi_out: \"DEVICE\"), sends those channels to that device alone";

/// A received message, for the `:log` display (fixed size).
#[derive(Clone, Copy, Debug)]
pub struct LogRecord {
    pub frame: u64,
    pub bytes: [u8; 3],
    pub len: u8,
}

/// The keys and sustain pedals one MIDI input holds down, kept by its callback
/// (atomics only), so that they can be let go when the input disappears.
#[derive(Default)]
pub struct Held {
    /// Per channel, a bit per note.
    notes: [[AtomicU64; 2]; 16],
    /// A bit per channel whose pedal is down.
    pedals: AtomicU16,
}

impl Held {
    /// Input thread: notes what `kind` presses or lets go.
    fn note(&self, kind: &EventKind) {
        match *kind {
            EventKind::NoteOn { channel, note, .. } => {
                self.notes[channel as usize & 15][note as usize >> 6].fetch_or(1 << (note & 63), Relaxed);
            }
            EventKind::NoteOff { channel, note } => {
                self.notes[channel as usize & 15][note as usize >> 6].fetch_and(!(1 << (note & 63)), Relaxed);
            }
            EventKind::Control { channel, cc: 64, value } => {
                let bit = 1u16 << (channel & 15);
                if value >= 64 {
                    self.pedals.fetch_or(bit, Relaxed);
                } else {
                    self.pedals.fetch_and(!bit, Relaxed);
                }
            }
            EventKind::Control { channel, cc: 120 | 123, .. } => {
                for w in &self.notes[channel as usize & 15] {
                    w.store(0, Relaxed);
                }
            }
            _ => {}
        }
    }

    /// What lets go of everything held (note-offs, then pedals up), and forgets it.
    pub fn release(&self) -> Vec<EventKind> {
        let mut out = Vec::new();
        for (ch, words) in self.notes.iter().enumerate() {
            for (w, word) in words.iter().enumerate() {
                let bits = word.swap(0, Relaxed);
                for n in 0..64 {
                    if bits & (1 << n) != 0 {
                        out.push(EventKind::NoteOff { channel: ch as u8, note: (w * 64 + n) as u8 });
                    }
                }
            }
        }
        let pedals = self.pedals.swap(0, Relaxed);
        for ch in 0..16u8 {
            if pedals & (1 << ch) != 0 {
                out.push(EventKind::Control { channel: ch, cc: 64, value: 0 });
            }
        }
        out
    }
}

/// What the input callback and the output's writer need, shared with the control
/// thread.
#[derive(Clone)]
pub struct MidiTap {
    pub sender: EventSender,
    pub clock: Arc<FrameClock>,
    pub log: Arc<ArrayQueue<LogRecord>>,
    pub log_on: Arc<AtomicBool>,
    /// The engine's MIDI out queue and counters.
    pub out: Arc<super::midi_out::OutShared>,
}

impl MidiTap {
    /// Input thread: stamp with the arrival time, decode, queue.
    #[cfg(not(feature = "jack"))]
    fn receive(&self, held: &Held, bytes: &[u8]) {
        self.receive_at(held, self.clock.frame_for(Instant::now()), bytes);
    }

    /// Input thread: decode and queue for `frame` (malformed messages are dropped);
    /// `held` keeps what the input holds down.
    pub(crate) fn receive_at(&self, held: &Held, frame: u64, bytes: &[u8]) {
        if let Some(ev) = Event::from_midi(frame, bytes) {
            held.note(&ev.kind);
            self.sender.send(ev);
        }
        if self.log_on.load(Relaxed) && bytes.first() != Some(&0xF8) {
            let mut b = [0u8; 3];
            let n = bytes.len().min(3);
            b[..n].copy_from_slice(&bytes[..n]);
            let _ = self.log.push(LogRecord { frame, bytes: b, len: n as u8 });
        }
    }
}

/// Which port `choice` names: an index, or a case-insensitive part of a name.
pub fn pick(choice: Option<&str>, ports: &[String]) -> Option<usize> {
    match choice {
        None => (!ports.is_empty()).then_some(0),
        Some(c) => match c.trim().parse::<usize>() {
            Ok(i) if i < ports.len() => Some(i),
            _ => {
                let want = c.to_lowercase();
                ports.iter().position(|p| p.to_lowercase().contains(&want))
            }
        },
    }
}

fn no_output(choice: &str) -> String {
    format!("no MIDI output matches \"{choice}\" (jamrig ports lists them)")
}

fn no_match(choice: Option<&str>) -> String {
    match choice {
        Some(c) => format!("no MIDI input matches \"{c}\""),
        None => "no MIDI input".to_string(),
    }
}

/// MIDI through ALSA's sequencer (midir).
#[cfg(not(feature = "jack"))]
mod seq_in {
    use super::{CLIENT, Held, MidiTap, OWN_PORT_NOTE, SEQ_OUT_PORT, no_match, pick};
    use crate::engine::midi_out::{DEFAULT_PORT, OUT_PORTS, OutMessage};
    use crate::live::midi_out::{OutDevices, OutWriter, port_name_for};
    use midir::{Ignore, MidiInput, MidiInputConnection, MidiOutput, MidiOutputConnection};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
    use std::time::{Duration, Instant};

    /// A live connection to a MIDI input port, or jamrig's own port, and jamrig's
    /// MIDI output.
    pub struct MidiIn {
        conn: MidiInputConnection<()>,
        pub port: String,
        /// What the input holds down.
        pub held: Arc<Held>,
        out: Option<SeqOut>,
        tap: MidiTap,
    }

    /// jamrig's MIDI output: its own port (`jamrig out`, for other programs to
    /// connect to) with a connection from it to each device asked for (connections
    /// add up, as on JACK), a port of its own for each device the set names
    /// (`jamrig out-op-xy`, connected to that device), and the thread that sends
    /// each message at its frame's wall time through its port.
    struct SeqOut {
        stop: Arc<AtomicBool>,
        thread: std::thread::JoinHandle<()>,
        /// The devices the default port is connected to.
        devices: Vec<String>,
        /// Per port, the device the set names there and the device port it is
        /// connected to (once it is).
        named: Vec<Option<(String, Option<String>)>>,
        /// Hands the output thread a connection, or takes a port's away.
        changes: crossbeam_channel::Sender<SeqChange>,
    }

    /// A change to the output thread's connections.
    enum SeqChange {
        /// A connection for port `0`.
        Add(u8, MidiOutputConnection),
        /// Port `0` is gone: close its connections.
        Drop(u8),
    }

    /// Devices the default port sends to at most, beside its own port.
    pub const MAX_OUT_DEVICES: usize = 8;
    /// How often the output thread looks for messages due.
    const OUT_POLL: Duration = Duration::from_millis(1);
    /// Messages this close to their time (µs) go now.
    const OUT_EARLY_US: i64 = 500;

    impl SeqOut {
        fn open(tap: &MidiTap) -> Result<SeqOut, String> {
            use midir::os::unix::VirtualOutput;
            let _quiet = crate::live::audio::quiet_alsa();
            let out = MidiOutput::new(CLIENT).map_err(|e| format!("MIDI out is unavailable: {e}"))?;
            let own = out.create_virtual(SEQ_OUT_PORT).map_err(|e| format!("cannot open a MIDI output port: {e}"))?;
            let stop = Arc::new(AtomicBool::new(false));
            let (changes, changed) = crossbeam_channel::bounded(MAX_OUT_DEVICES + 2 * OUT_PORTS);
            let (tap, flag) = (tap.clone(), stop.clone());
            let thread = std::thread::Builder::new()
                .name("jamrig-midi-out".into())
                .spawn(move || send_at_their_time(own, &changed, &tap, &flag))
                .map_err(|e| format!("cannot start the MIDI output: {e}"))?;
            Ok(SeqOut { stop, thread, devices: Vec::new(), named: vec![None; OUT_PORTS], changes })
        }

        /// Connects port `port` (made now, named for the device) to the device
        /// `want` names; returns the device's port name.
        fn connect_named(&mut self, port: u8, want: &str) -> Result<String, String> {
            let _quiet = crate::live::audio::quiet_alsa();
            let out = MidiOutput::new(CLIENT).map_err(|e| format!("MIDI out is unavailable: {e}"))?;
            let ports = out.ports();
            let names: Vec<String> = ports.iter().map(|p| out.port_name(p).unwrap_or_default()).collect();
            let names_other: Vec<String> =
                names.iter().map(|n| if n.starts_with(CLIENT) { String::new() } else { n.clone() }).collect();
            let i = pick(Some(want), &names_other).ok_or_else(|| super::no_output(want))?;
            let own = format!("{CLIENT} {}", port_name_for(want));
            let conn =
                out.connect(&ports[i], &own).map_err(|e| format!("cannot open MIDI output {}: {e}", names[i]))?;
            self.changes.send(SeqChange::Add(port, conn)).map_err(|_| "the MIDI output has stopped".to_string())?;
            Ok(names[i].clone())
        }

        /// Connects the output to the device `want` names too; returns its name.
        fn connect(&mut self, want: &str) -> Result<String, String> {
            let _quiet = crate::live::audio::quiet_alsa();
            let out = MidiOutput::new(CLIENT).map_err(|e| format!("MIDI out is unavailable: {e}"))?;
            let ports = out.ports();
            let names: Vec<String> = ports.iter().map(|p| out.port_name(p).unwrap_or_default()).collect();
            let i = pick(Some(want), &names).ok_or_else(|| super::no_output(want))?;
            if self.devices.contains(&names[i]) {
                return Ok(names[i].clone());
            }
            if self.devices.len() >= MAX_OUT_DEVICES {
                return Err(format!(
                    "cannot connect the MIDI output to {}: it sends to {MAX_OUT_DEVICES} devices already",
                    names[i]
                ));
            }
            let conn = out
                .connect(&ports[i], SEQ_OUT_PORT)
                .map_err(|e| format!("cannot open MIDI output {}: {e}", names[i]))?;
            self.changes
                .send(SeqChange::Add(DEFAULT_PORT, conn))
                .map_err(|_| "the MIDI output has stopped".to_string())?;
            self.devices.push(names[i].clone());
            Ok(names[i].clone())
        }

        fn close(self) {
            self.stop.store(true, Relaxed);
            let _ = self.thread.join();
        }
    }

    /// The output thread: sends each message when its frame is heard (the
    /// output's latency after it is handed out, less the device's own latency),
    /// through its port: the default one (jamrig's own port and every device
    /// connected to it) or its device's.
    fn send_at_their_time(
        own: MidiOutputConnection,
        changed: &crossbeam_channel::Receiver<SeqChange>,
        tap: &MidiTap,
        stop: &AtomicBool,
    ) {
        let mut conns: Vec<(u8, MidiOutputConnection)> = Vec::with_capacity(MAX_OUT_DEVICES + OUT_PORTS);
        conns.push((DEFAULT_PORT, own));
        let mut writer = OutWriter::default();
        while !stop.load(Relaxed) {
            while let Ok(c) = changed.try_recv() {
                match c {
                    SeqChange::Add(port, c) => conns.push((port, c)),
                    SeqChange::Drop(port) => {
                        let (gone, kept) = std::mem::take(&mut conns).into_iter().partition(|(p, _)| *p == port);
                        conns = kept;
                        for (_, c) in gone {
                            c.close();
                        }
                    }
                }
            }
            let now = Instant::now();
            let sr = tap.clock.sample_rate();
            let latency = tap.clock.output_latency_frames() as f64;
            tap.out.delay_frames.store(latency as u64, Relaxed);
            let when = |m: &OutMessage| {
                let frames = tap.clock.frames_after(m.frame, now) + latency - m.lead_frames as f64;
                Some((frames / sr * 1e6) as i64)
            };
            writer.write_due(&tap.out.queue, OUT_EARLY_US, when, |t, m| {
                if t < -(OUT_POLL.as_micros() as i64) - OUT_EARLY_US {
                    tap.out.late.fetch_add(1, Relaxed);
                }
                let mut sent = false;
                let everywhere = m.to_every_port();
                for (_, c) in conns.iter_mut().filter(|(p, _)| everywhere || *p == m.port) {
                    sent |= c.send(m.bytes()).is_ok();
                }
                let counter = if sent { &tap.out.written } else { &tap.out.refused };
                counter.fetch_add(1, Relaxed);
            });
            std::thread::sleep(OUT_POLL);
        }
        for (_, c) in conns {
            c.close();
        }
    }

    impl MidiIn {
        /// Whether this is jamrig's own port rather than a connection to a device.
        pub fn is_own(&self) -> bool {
            self.port.ends_with(OWN_PORT_NOTE)
        }

        pub fn close(mut self) {
            if let Some(o) = self.out.take() {
                o.close();
            }
            self.conn.close();
        }

        /// The output port's name (`jamrig out`).
        pub fn out_port(&self) -> String {
            SEQ_OUT_PORT.to_string()
        }

        /// Connects jamrig's MIDI output to the device `choice` names (an index or
        /// a part of its name); returns the device's name. Connections add up.
        pub fn connect_out(&mut self, choice: &str) -> Result<String, String> {
            if self.out.is_none() {
                self.out = Some(SeqOut::open(&self.tap)?);
            }
            self.out.as_mut().expect("just opened").connect(choice)
        }

        /// The devices the output sends to.
        pub fn out_connections(&self) -> Vec<String> {
            self.out.as_ref().map(|o| o.devices.clone()).unwrap_or_default()
        }

        /// Notes the port each device the set names has (its connection is made
        /// when the device is there); says what failed.
        pub fn sync_out_ports(&mut self, devices: &OutDevices) -> Vec<String> {
            if self.out.is_none() {
                match SeqOut::open(&self.tap) {
                    Ok(o) => self.out = Some(o),
                    Err(e) => return vec![e],
                }
            }
            let o = self.out.as_mut().expect("just opened");
            for d in devices.all() {
                let slot = &mut o.named[d.port as usize];
                if slot.as_ref().is_none_or(|(name, _)| name != &d.device) {
                    *slot = Some((d.device.clone(), None));
                }
            }
            Vec::new()
        }

        /// Drops output port `port` and its connection.
        pub fn drop_out_port(&mut self, port: u8) {
            if let Some(o) = self.out.as_mut()
                && let Some(slot) = o.named.get_mut(port as usize)
                && slot.take().is_some()
            {
                let _ = o.changes.send(SeqChange::Drop(port));
            }
        }

        /// Nothing to do through ALSA: connections close on the output thread.
        pub fn collect_out_ports(&mut self) {}

        /// The name of output port `port`, if the set names a device there.
        pub fn out_port_name(&self, port: u8) -> Option<String> {
            let o = self.out.as_ref()?;
            o.named.get(port as usize)?.as_ref().map(|(d, _)| format!("{CLIENT} {}", port_name_for(d)))
        }

        /// Connects output port `port` to the device `device` names; returns the
        /// device's port when it connected it now.
        pub fn connect_device(&mut self, port: u8, device: &str) -> Result<Option<String>, String> {
            let o = self.out.as_mut().ok_or_else(|| "MIDI out is unavailable".to_string())?;
            match o.named.get(port as usize) {
                Some(Some((_, Some(_)))) => return Ok(None),
                Some(Some(_)) => {}
                _ => return Err(format!("no MIDI output port for {device}")),
            }
            let to = o.connect_named(port, device)?;
            o.named[port as usize] = Some((device.to_string(), Some(to.clone())));
            Ok(Some(to))
        }

        /// The device port output port `port` is connected to.
        pub fn device_connections(&self, port: u8) -> Vec<String> {
            let named = self.out.as_ref().and_then(|o| o.named.get(port as usize).cloned().flatten());
            named.and_then(|(_, to)| to).into_iter().collect()
        }
    }

    /// The MIDI output ports (devices jamrig can send to), by name.
    pub fn list_outputs() -> Vec<String> {
        let _quiet = crate::live::audio::quiet_alsa();
        match MidiOutput::new(CLIENT) {
            Ok(m) => m.ports().iter().filter_map(|p| m.port_name(p).ok()).filter(|n| !n.starts_with(CLIENT)).collect(),
            Err(_) => Vec::new(),
        }
    }

    fn input() -> Result<MidiInput, String> {
        let mut input = MidiInput::new(CLIENT)
            .map_err(|e| super::seq_unavailable(std::path::Path::new(super::SEQ_DEVICE).exists(), &e.to_string()))?;
        input.ignore(Ignore::SysexAndActiveSense);
        Ok(input)
    }

    /// Why there are no MIDI inputs, if MIDI itself is unavailable.
    pub fn unavailable() -> Option<String> {
        let _quiet = crate::live::audio::quiet_alsa();
        input().err()
    }

    /// The MIDI input ports, by name.
    pub fn list_inputs() -> Vec<String> {
        let _quiet = crate::live::audio::quiet_alsa();
        match input() {
            Ok(m) => m.ports().iter().filter_map(|p| m.port_name(p).ok()).collect(),
            Err(_) => Vec::new(),
        }
    }

    /// Connects to the port `choice` names (first port by default).
    pub fn connect(choice: Option<&str>, tap: &MidiTap) -> Result<MidiIn, String> {
        let _quiet = crate::live::audio::quiet_alsa();
        let input = input()?;
        let ports = input.ports();
        let names: Vec<String> = ports.iter().map(|p| input.port_name(p).unwrap_or_default()).collect();
        let i = pick(choice, &names).ok_or_else(|| no_match(choice))?;
        let tap = tap.clone();
        let held = Arc::new(Held::default());
        let h = held.clone();
        let out = SeqOut::open(&tap).ok();
        let t = tap.clone();
        let conn = input
            .connect(&ports[i], "in", move |_, bytes, _| t.receive(&h, bytes), ())
            .map_err(|e| format!("cannot open MIDI input {}: {e}", names[i]))?;
        Ok(MidiIn { conn, port: names[i].clone(), held, out, tap })
    }

    /// Opens jamrig's own input port for other programs to connect to.
    pub fn open_own_port(tap: &MidiTap) -> Result<MidiIn, String> {
        use midir::os::unix::VirtualInput;
        let _quiet = crate::live::audio::quiet_alsa();
        let tap = tap.clone();
        let held = Arc::new(Held::default());
        let h = held.clone();
        let out = SeqOut::open(&tap).ok();
        let t = tap.clone();
        let conn = input()?
            .create_virtual("in", move |_, bytes, _| t.receive(&h, bytes), ())
            .map_err(|e| format!("cannot open a MIDI input port: {e}"))?;
        Ok(MidiIn { conn, port: format!("{CLIENT}:in{OWN_PORT_NOTE}"), held, out, tap })
    }
}

/// MIDI through a JACK server: each event is stamped from its frame offset within
/// the cycle, so the spacing between notes is kept to the sample.
#[cfg(feature = "jack")]
mod jack_in {
    use super::{CLIENT, Held, MidiTap, OWN_PORT_NOTE, no_match, no_output, pick};
    use crate::live::midi_out::{JackClientOwner, JackOutControl, JackOutPorts, OutDevices, OutWriter};
    use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
    use std::sync::{Arc, Mutex};
    use std::time::Instant;

    /// Notices the server going away: a client of a dead server must not be closed.
    struct Watch(Arc<AtomicBool>);

    impl jack::NotificationHandler for Watch {
        unsafe fn shutdown(&mut self, _: jack::ClientStatus, _: &str) {
            self.0.store(true, Relaxed);
        }
    }

    /// Cycles per window of the clock-offset estimate (about 0.7 s at 256 frames).
    const OFFSET_WINDOW: usize = 128;

    type ProcessFn = Box<dyn FnMut(&jack::Client, &jack::ProcessScope) -> jack::Control + Send>;
    type Process = jack::contrib::ClosureProcessHandler<(), ProcessFn>;

    /// jamrig's JACK MIDI input port, connected to a source or waiting for one:
    /// on a MIDI client of its own, or on the audio stream's client (`shared`:
    /// then this only connects its ports).
    pub struct MidiIn {
        client: Option<Arc<Mutex<Option<Active>>>>,
        /// The audio stream's client's connecting client, and its input port.
        shared: Option<(Arc<jack::Client>, String)>,
        dead: Arc<AtomicBool>,
        /// The connected source port (or this port, marked as jamrig's own).
        pub port: String,
        /// What the input holds down.
        pub held: Arc<Held>,
        /// The full name of jamrig's MIDI output port (`jamrig:out`).
        out: String,
        /// Makes and drops the output ports of devices.
        outs: Arc<Mutex<JackOutControl>>,
    }

    impl MidiIn {
        pub fn is_own(&self) -> bool {
            self.port.ends_with(OWN_PORT_NOTE)
        }

        /// The output port's name.
        pub fn out_port(&self) -> String {
            self.out.clone()
        }

        /// Runs `f` with a client of the server (the connecting one).
        fn with_client<R>(&self, f: impl FnOnce(&jack::Client) -> R) -> Option<R> {
            if let Some((c, _)) = &self.shared {
                return Some(f(c));
            }
            let mut f = Some(f);
            let mut r = None;
            self.client.as_ref()?.with_client(&mut |c| r = f.take().map(|f| f(c)));
            r
        }

        /// Connects output port `from` (a full name) to the port `choice` names (an
        /// index or a part of its name); returns the port's name.
        fn connect_port(&self, from: &str, choice: &str) -> Result<String, String> {
            self.with_client(|c| {
                let names = destinations(c, from);
                let i = pick(Some(choice), &names).ok_or_else(|| no_output(choice))?;
                let connected = c.port_by_name(from).map(|p| p.get_connections()).unwrap_or_default();
                if !connected.contains(&names[i]) {
                    c.connect_ports_by_name(from, &names[i])
                        .map_err(|e| format!("cannot connect the MIDI output to {}: {e}", names[i]))?;
                }
                Ok(names[i].clone())
            })
            .unwrap_or_else(|| Err(NO_SERVER.to_string()))
        }

        /// The ports output port `from` (a full name) is connected to.
        fn connections_of(&self, from: &str) -> Vec<String> {
            self.with_client(|c| c.port_by_name(from).map(|p| p.get_connections()).unwrap_or_default())
                .unwrap_or_default()
        }

        /// Connects jamrig's MIDI output to the port `choice` names (an index or a
        /// part of its name); returns the port's name. Connections add up.
        pub fn connect_out(&mut self, choice: &str) -> Result<String, String> {
            self.connect_port(&self.out, choice)
        }

        /// The ports the output is connected to.
        pub fn out_connections(&self) -> Vec<String> {
            self.connections_of(&self.out)
        }

        fn outs(&self) -> std::sync::MutexGuard<'_, JackOutControl> {
            self.outs.lock().unwrap_or_else(|p| p.into_inner())
        }

        /// Makes the output ports `devices` lack; says what failed.
        pub fn sync_out_ports(&mut self, devices: &OutDevices) -> Vec<String> {
            self.outs().sync(devices)
        }

        /// Drops output port `port` (after the process thread gave it back).
        pub fn drop_out_port(&mut self, port: u8) {
            self.outs().retire(port);
        }

        /// Unregisters the output ports the process thread gave back.
        pub fn collect_out_ports(&mut self) {
            self.outs().collect();
        }

        /// The full name of output port `port`, if it is there.
        pub fn out_port_name(&self, port: u8) -> Option<String> {
            self.outs().name(port).map(str::to_string)
        }

        /// Connects output port `port` to the device `device` names; returns the
        /// device's port when it connected it now.
        pub fn connect_device(&mut self, port: u8, device: &str) -> Result<Option<String>, String> {
            let from = self.out_port_name(port).ok_or_else(|| format!("no MIDI output port for {device}"))?;
            if super::pick(Some(device), &self.connections_of(&from)).is_some() {
                return Ok(None);
            }
            self.connect_port(&from, device).map(Some)
        }

        /// The ports output port `port` is connected to.
        pub fn device_connections(&self, port: u8) -> Vec<String> {
            self.out_port_name(port).map(|from| self.connections_of(&from)).unwrap_or_default()
        }

        pub fn close(mut self) {
            if let Some((c, input)) = self.shared.take() {
                if self.dead.load(Relaxed) {
                    std::mem::forget(c);
                } else if !self.port.ends_with(OWN_PORT_NOTE) {
                    let _ = c.disconnect_ports_by_name(&self.port, &input);
                }
            }
            if let Some(c) = self.client.take().and_then(|c| c.lock().unwrap_or_else(|p| p.into_inner()).take()) {
                if self.dead.load(Relaxed) {
                    // Closing a client whose server has gone crashes libjack.
                    std::mem::forget(c);
                } else {
                    drop(c);
                }
            }
        }
    }

    type Active = jack::AsyncClient<Watch, Process>;

    /// Opens jamrig's MIDI client with its input port and output ports, waiting
    /// for its input's source.
    fn open(tap: &MidiTap) -> Result<MidiIn, String> {
        let (client, _) =
            jack::Client::new(CLIENT, jack::ClientOptions::NO_START_SERVER).map_err(|_| NO_SERVER.to_string())?;
        let port = client
            .register_port("in", jack::MidiIn::default())
            .map_err(|e| format!("cannot open a MIDI input port: {e}"))?;
        let full = port.name().map_err(|e| e.to_string())?;
        let devices = tap.out.devices.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let (mut outs, names) = JackOutPorts::register(&client, &devices)?;
        let out_full = names.default_name();
        let mut writer = OutWriter::default();
        let tap = tap.clone();
        let held = Arc::new(Held::default());
        let h = held.clone();
        let mut offset: Option<f64> = None;
        let (mut window_max, mut previous_max, mut cycles) = (f64::MIN, f64::MIN, 0usize);
        let process: ProcessFn = Box::new(move |_, ps| {
            // Events are placed by JACK frame counts when the audio stream runs on
            // the same JACK server: exact. Otherwise on JACK's clock (the cycle's
            // start plus the event's offset), which the audio stream's timestamps
            // share. The fixed offset between that clock's playback times and the
            // engine's frame line is learned as the largest difference seen (a late
            // audio callback only ever makes the instant-based estimate smaller).
            let now = Instant::now();
            let since = ps.frames_since_cycle_start() as f64;
            let cycle_ns = ps.cycle_times().ok().map(|t| t.current_usecs * 1000);
            let raw = cycle_ns.and_then(|ns| tap.clock.raw_frames(now, ns));
            if let Some((by_instant, by_stream)) = raw {
                // Jitter only ever lowers a measurement, so the offset is the largest
                // one in the last two windows of cycles; windows roll over so that a
                // change (the output's latency moves when ports are connected) is
                // followed within two windows.
                let measured = (by_instant - since) - by_stream;
                window_max = window_max.max(measured);
                cycles += 1;
                if cycles == OFFSET_WINDOW {
                    previous_max = window_max;
                    window_max = f64::MIN;
                    cycles = 0;
                }
                offset = Some(previous_max.max(window_max));
            }
            let cycle_start = ps.last_frame_time();
            for ev in port.iter(ps) {
                if let Some(frame) = tap.clock.place_jack(cycle_start.wrapping_add(ev.time)) {
                    tap.receive_at(&h, frame, ev.bytes);
                    continue;
                }
                let frame = match (raw, offset) {
                    (Some((_, by_stream)), Some(o)) => tap.clock.place(by_stream + o + ev.time as f64),
                    _ => tap.clock.frame_for_offset(now, ev.time as i64 - since as i64),
                };
                tap.receive_at(&h, frame, ev.bytes);
            }
            write_out(&mut writer, &mut outs, ps, &tap, now);
            jack::Control::Continue
        });
        let dead = Arc::new(AtomicBool::new(false));
        let active = client
            .activate_async(Watch(dead.clone()), jack::contrib::ClosureProcessHandler::new(process))
            .map_err(|e| format!("cannot start the MIDI input: {e}"))?;
        let client = Arc::new(Mutex::new(Some(active)));
        let owner: Arc<dyn JackClientOwner> = client.clone();
        Ok(MidiIn {
            client: Some(client),
            shared: None,
            dead,
            port: full,
            held,
            out: out_full,
            outs: Arc::new(Mutex::new(names.owned_by(owner))),
        })
    }

    /// JACK's process thread: writes the MIDI out messages due in this cycle at
    /// their frame offsets. A message for engine frame `f` leaves at the JACK frame
    /// `f` is handed out at, plus the output's latency (so that it sounds with the
    /// audio) less its device's own latency, and at least one cycle later (the
    /// audio client of this cycle may run after this one).
    fn write_out(
        writer: &mut OutWriter,
        outs: &mut JackOutPorts,
        ps: &jack::ProcessScope,
        tap: &MidiTap,
        now: Instant,
    ) {
        let n = ps.n_frames() as i64;
        let cycle = ps.last_frame_time();
        let since = ps.frames_since_cycle_start() as f64;
        let latency = tap.clock.output_latency_frames() as i64;
        tap.out.delay_frames.store(latency.max(n) as u64, Relaxed);
        let when = |m: &crate::engine::midi_out::OutMessage| {
            let delay = (latency - m.lead_frames as i64).max(n);
            let at = match tap.clock.jack_frame_of(m.frame) {
                Some(jf) => jf.wrapping_sub(cycle) as i32 as i64,
                // The audio is not a client of this server: by the clock instead.
                None => (tap.clock.frames_after(m.frame, now) + since).round() as i64,
            };
            Some(at + delay)
        };
        outs.write_cycle(ps, writer, &tap.out, when);
    }

    /// Ports the output can send to (MIDI inputs of other clients).
    fn destinations(client: &jack::Client, own: &str) -> Vec<String> {
        let prefix = format!("{}:", own.split(':').next().unwrap_or(own));
        client
            .ports(None, Some("midi"), jack::PortFlags::IS_INPUT)
            .into_iter()
            .filter(|p| !p.starts_with(&prefix))
            .collect()
    }

    /// MIDI destinations on the JACK server.
    pub fn list_outputs() -> Vec<String> {
        match jack::Client::new("jamrig_list", jack::ClientOptions::NO_START_SERVER) {
            Ok((c, _)) => destinations(&c, "jamrig_list:"),
            Err(_) => Vec::new(),
        }
    }

    fn sources(client: &jack::Client, own: &str) -> Vec<String> {
        client
            .ports(None, Some("midi"), jack::PortFlags::IS_OUTPUT)
            .into_iter()
            .filter(|p| !p.starts_with(&format!("{}:", own.split(':').next().unwrap_or(own))))
            .collect()
    }

    /// What the JACK build says when it finds no server to take MIDI from.
    const NO_SERVER: &str = "MIDI is unavailable: no JACK server running (this build takes MIDI from JACK)";

    /// Why there are no MIDI inputs, if MIDI itself is unavailable.
    pub fn unavailable() -> Option<String> {
        match jack::Client::new("jamrig_list", jack::ClientOptions::NO_START_SERVER) {
            Ok(_) => None,
            Err(_) => Some(NO_SERVER.to_string()),
        }
    }

    /// MIDI sources on the JACK server.
    pub fn list_inputs() -> Vec<String> {
        match jack::Client::new("jamrig_list", jack::ClientOptions::NO_START_SERVER) {
            Ok((c, _)) => sources(&c, "jamrig_list:"),
            Err(_) => Vec::new(),
        }
    }

    /// Connects jamrig's port to the source `choice` names (the first by default).
    pub fn connect(choice: Option<&str>, tap: &MidiTap) -> Result<MidiIn, String> {
        let mut m = open(tap)?;
        let own = std::mem::take(&mut m.port);
        let names = m.with_client(|c| sources(c, &own)).unwrap_or_default();
        let Some(i) = pick(choice, &names) else {
            m.close();
            return Err(no_match(choice));
        };
        if let Some(Err(e)) = m.with_client(|c| c.connect_ports_by_name(&names[i], &own)) {
            m.close();
            return Err(format!("cannot connect MIDI input {}: {e}", names[i]));
        }
        m.port = names[i].clone();
        Ok(m)
    }

    /// Opens jamrig's own input port for other programs to connect to.
    pub fn open_own_port(tap: &MidiTap) -> Result<MidiIn, String> {
        let mut m = open(tap)?;
        m.port = format!("{}{OWN_PORT_NOTE}", m.port);
        Ok(m)
    }

    /// The MIDI input of the audio stream's own client (`jamrig:in`), waiting for
    /// other programs to connect to it.
    pub fn own_shared(stream: &crate::live::jack_host::JackStream) -> Result<MidiIn, String> {
        Ok(MidiIn {
            client: None,
            shared: Some((stream.ports_client()?, stream.midi_in.clone())),
            dead: stream.dead.clone(),
            port: format!("{}{OWN_PORT_NOTE}", stream.midi_in),
            held: stream.held.clone(),
            out: stream.midi_out.clone(),
            outs: stream.outs.clone(),
        })
    }

    /// Connects the audio stream's client's MIDI input to the source `choice`
    /// names (the first by default).
    pub fn connect_shared(choice: Option<&str>, stream: &crate::live::jack_host::JackStream) -> Result<MidiIn, String> {
        let c = stream.ports_client()?;
        let names = sources(&c, &stream.midi_in);
        let i = pick(choice, &names).ok_or_else(|| no_match(choice))?;
        let connected = c.port_by_name(&stream.midi_in).map(|p| p.get_connections()).unwrap_or_default();
        if !connected.contains(&names[i]) {
            c.connect_ports_by_name(&names[i], &stream.midi_in)
                .map_err(|e| format!("cannot connect MIDI input {}: {e}", names[i]))?;
        }
        let mut m = own_shared(stream)?;
        m.port = names[i].clone();
        Ok(m)
    }
}

/// What a list of MIDI ports shows when it is empty: `  (none)`, with the reason
/// when MIDI itself is unavailable.
pub fn no_ports_line() -> String {
    match unavailable() {
        Some(why) => format!("  (none: {why})\n"),
        None => "  (none)\n".to_string(),
    }
}

/// The ALSA sequencer's device: without it there is no MIDI through ALSA.
pub const SEQ_DEVICE: &str = "/dev/snd/seq";

/// Why MIDI through ALSA's sequencer is unavailable, in one line: the system has
/// no sequencer (`seq_exists` false), or it refused jamrig with `error`.
pub fn seq_unavailable(seq_exists: bool, error: &str) -> String {
    if seq_exists {
        format!("MIDI is unavailable: the ALSA sequencer refused jamrig ({error})")
    } else {
        format!(
            "MIDI is unavailable: this system has no ALSA sequencer (no {SEQ_DEVICE}: load the snd-seq kernel module, or use a build with the jack feature and a JACK server)"
        )
    }
}

/// Formats a logged message as one line, at its bar and beat (1-based; `None`
/// while the transport is stopped).
pub fn describe(r: &LogRecord, at: Option<(u64, f64)>) -> String {
    let b = &r.bytes[..r.len as usize];
    let ch = |s: u8| (s & 0x0F) + 1;
    let text = match b {
        [0xFA, ..] => "start".to_string(),
        [0xFB, ..] => "continue".to_string(),
        [0xFC, ..] => "stop".to_string(),
        [0xF2, l, h] => format!("song position {}", *l as u16 | (*h as u16) << 7),
        [s @ 0x90..=0x9F, n, v] if *v > 0 => {
            format!("ch{} note on {} ({n}) vel {v}", ch(*s), crate::theory::note_name(*n))
        }
        [s @ 0x80..=0x9F, n, _] => format!("ch{} note off {} ({n})", ch(*s), crate::theory::note_name(*n)),
        [s @ 0xB0..=0xBF, c, v] => format!("ch{} cc{c} = {v}", ch(*s)),
        [s @ 0xC0..=0xCF, p, ..] => format!("ch{} program {p}", ch(*s)),
        [s @ 0xD0..=0xDF, v, ..] => format!("ch{} pressure {v}", ch(*s)),
        [s @ 0xE0..=0xEF, l, h] => format!("ch{} bend {}", ch(*s), (*l as i32 | (*h as i32) << 7) - 8192),
        other => format!("{other:02x?}"),
    };
    match at {
        Some((bar, beat)) => format!("midi bar {bar} beat {beat:.2}: {text}"),
        None => format!("midi (stopped): {text}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_ports_by_index_or_name() {
        let ports = vec!["Midi Through:0".to_string(), "OP-XY:MIDI 1".to_string()];
        assert_eq!(pick(None, &ports), Some(0));
        assert_eq!(pick(Some("op-xy"), &ports), Some(1));
        assert_eq!(pick(Some("1"), &ports), Some(1));
        assert_eq!(pick(Some("keystep"), &ports), None);
        assert_eq!(pick(None, &[]), None);
    }

    /// Regression (issue 13, minor): without an ALSA sequencer, MIDI input said
    /// only that there were no ports. It says why, in one line, and what to do.
    #[test]
    fn without_a_sequencer_midi_says_why() {
        let none = seq_unavailable(false, "ALSA error");
        assert_eq!(
            none,
            "MIDI is unavailable: this system has no ALSA sequencer (no /dev/snd/seq: load the snd-seq kernel module, or use a build with the jack feature and a JACK server)"
        );
        let refused = seq_unavailable(true, "Permission denied");
        assert_eq!(refused, "MIDI is unavailable: the ALSA sequencer refused jamrig (Permission denied)");
        assert!(!none.contains('\n') && !refused.contains('\n'));
    }

    #[test]
    fn log_lines() {
        let r = LogRecord { frame: 7, bytes: [0x91, 60, 100], len: 3 };
        assert_eq!(describe(&r, Some((3, 2.5))), "midi bar 3 beat 2.50: ch2 note on C4 (60) vel 100");
        let r = LogRecord { frame: 9, bytes: [0xE0, 0, 0x40], len: 3 };
        assert_eq!(describe(&r, None), "midi (stopped): ch1 bend 0");
    }
}
