//! MIDI input. The input callback (midir's thread for ALSA, or JACK's process thread
//! with the `jack` feature) stamps each message with the engine frame it should sound
//! at, decodes it and queues it for the engine: no allocation, no lock. A port chosen
//! by name is re-attached when it comes back; without one, jamrig opens its own input
//! port for other programs to connect to.

use super::clock::FrameClock;
use crate::engine::event::{Event, EventKind};
use crate::rig::controller::EventSender;
use crossbeam_queue::ArrayQueue;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering::Relaxed};
#[cfg(not(feature = "jack"))]
use std::time::Instant;

#[cfg(feature = "jack")]
pub use jack_in::{MidiIn, connect, list_inputs, open_own_port, unavailable};
#[cfg(not(feature = "jack"))]
pub use seq_in::{MidiIn, connect, list_inputs, open_own_port, unavailable};

/// Messages the MIDI log holds before the REPL prints them.
pub const MIDI_LOG_CAP: usize = 1024;
const CLIENT: &str = "jamrig";
const OWN_PORT_NOTE: &str = " (jamrig's own port)";

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

/// What the input callback needs, shared with the control thread.
#[derive(Clone)]
pub struct MidiTap {
    pub sender: EventSender,
    pub clock: Arc<FrameClock>,
    pub log: Arc<ArrayQueue<LogRecord>>,
    pub log_on: Arc<AtomicBool>,
}

impl MidiTap {
    /// Input thread: stamp with the arrival time, decode, queue.
    #[cfg(not(feature = "jack"))]
    fn receive(&self, held: &Held, bytes: &[u8]) {
        self.receive_at(held, self.clock.frame_for(Instant::now()), bytes);
    }

    /// Input thread: decode and queue for `frame` (malformed messages are dropped);
    /// `held` keeps what the input holds down.
    fn receive_at(&self, held: &Held, frame: u64, bytes: &[u8]) {
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

fn no_match(choice: Option<&str>) -> String {
    match choice {
        Some(c) => format!("no MIDI input matches \"{c}\""),
        None => "no MIDI input".to_string(),
    }
}

/// MIDI through ALSA's sequencer (midir).
#[cfg(not(feature = "jack"))]
mod seq_in {
    use super::{CLIENT, Held, MidiTap, OWN_PORT_NOTE, no_match, pick};
    use midir::{Ignore, MidiInput, MidiInputConnection};
    use std::sync::Arc;

    /// A live connection to a MIDI input port, or jamrig's own port.
    pub struct MidiIn {
        conn: MidiInputConnection<()>,
        pub port: String,
        /// What the input holds down.
        pub held: Arc<Held>,
    }

    impl MidiIn {
        /// Whether this is jamrig's own port rather than a connection to a device.
        pub fn is_own(&self) -> bool {
            self.port.ends_with(OWN_PORT_NOTE)
        }

        pub fn close(self) {
            self.conn.close();
        }
    }

    fn input() -> Result<MidiInput, String> {
        let mut input = MidiInput::new(CLIENT).map_err(|e| {
            if std::path::Path::new("/dev/snd/seq").exists() {
                format!("MIDI is unavailable: the ALSA sequencer refused jamrig ({e})")
            } else {
                "MIDI is unavailable: this system has no ALSA sequencer (no /dev/snd/seq: load the snd-seq kernel module, or use a build with the jack feature and a JACK server)".to_string()
            }
        })?;
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
        let conn = input
            .connect(&ports[i], "in", move |_, bytes, _| tap.receive(&h, bytes), ())
            .map_err(|e| format!("cannot open MIDI input {}: {e}", names[i]))?;
        Ok(MidiIn { conn, port: names[i].clone(), held })
    }

    /// Opens jamrig's own input port for other programs to connect to.
    pub fn open_own_port(tap: &MidiTap) -> Result<MidiIn, String> {
        use midir::os::unix::VirtualInput;
        let _quiet = crate::live::audio::quiet_alsa();
        let tap = tap.clone();
        let held = Arc::new(Held::default());
        let h = held.clone();
        let conn = input()?
            .create_virtual("in", move |_, bytes, _| tap.receive(&h, bytes), ())
            .map_err(|e| format!("cannot open a MIDI input port: {e}"))?;
        Ok(MidiIn { conn, port: format!("{CLIENT}:in{OWN_PORT_NOTE}"), held })
    }
}

/// MIDI through a JACK server: each event is stamped from its frame offset within
/// the cycle, so the spacing between notes is kept to the sample.
#[cfg(feature = "jack")]
mod jack_in {
    use super::{CLIENT, Held, MidiTap, OWN_PORT_NOTE, no_match, pick};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
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

    /// jamrig's JACK MIDI input port, connected to a source or waiting for one.
    pub struct MidiIn {
        client: Option<jack::AsyncClient<Watch, Process>>,
        dead: Arc<AtomicBool>,
        /// The connected source port (or this port, marked as jamrig's own).
        pub port: String,
        /// What the input holds down.
        pub held: Arc<Held>,
    }

    impl MidiIn {
        pub fn is_own(&self) -> bool {
            self.port.ends_with(OWN_PORT_NOTE)
        }

        pub fn close(mut self) {
            if let Some(c) = self.client.take() {
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

    /// Opens jamrig's MIDI client and port: the running client, the port's full name,
    /// and the flag that says the server has gone.
    fn open(tap: &MidiTap) -> Result<(Active, String, Arc<AtomicBool>, Arc<Held>), String> {
        let (client, _) =
            jack::Client::new(CLIENT, jack::ClientOptions::NO_START_SERVER).map_err(|_| NO_SERVER.to_string())?;
        let port = client
            .register_port("in", jack::MidiIn::default())
            .map_err(|e| format!("cannot open a MIDI input port: {e}"))?;
        let full = port.name().map_err(|e| e.to_string())?;
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
            jack::Control::Continue
        });
        let dead = Arc::new(AtomicBool::new(false));
        let active = client
            .activate_async(Watch(dead.clone()), jack::contrib::ClosureProcessHandler::new(process))
            .map_err(|e| format!("cannot start the MIDI input: {e}"))?;
        Ok((active, full, dead, held))
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
        let (active, own, dead, held) = open(tap)?;
        let names = sources(active.as_client(), &own);
        let mut m = MidiIn { client: Some(active), dead, port: String::new(), held };
        let Some(i) = pick(choice, &names) else {
            m.close();
            return Err(no_match(choice));
        };
        let c = m.client.as_ref().expect("just opened").as_client();
        if let Err(e) = c.connect_ports_by_name(&names[i], &own) {
            m.close();
            return Err(format!("cannot connect MIDI input {}: {e}", names[i]));
        }
        m.port = names[i].clone();
        Ok(m)
    }

    /// Opens jamrig's own input port for other programs to connect to.
    pub fn open_own_port(tap: &MidiTap) -> Result<MidiIn, String> {
        let (active, own, dead, held) = open(tap)?;
        Ok(MidiIn { client: Some(active), dead, port: format!("{own}{OWN_PORT_NOTE}"), held })
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

    #[test]
    fn log_lines() {
        let r = LogRecord { frame: 7, bytes: [0x91, 60, 100], len: 3 };
        assert_eq!(describe(&r, Some((3, 2.5))), "midi bar 3 beat 2.50: ch2 note on C4 (60) vel 100");
        let r = LogRecord { frame: 9, bytes: [0xE0, 0, 0x40], len: 3 };
        assert_eq!(describe(&r, None), "midi (stopped): ch1 bend 0");
    }
}
