//! MIDI input through midir. The input callback (midir's thread, or JACK's process
//! thread) stamps each message with the engine frame it should sound at, decodes it
//! and queues it for the engine: no allocation, no lock. A port chosen by name is
//! re-attached when it comes back.

use super::clock::FrameClock;
use crate::engine::event::Event;
use crate::rig::controller::EventSender;
use crossbeam_queue::ArrayQueue;
use midir::{Ignore, MidiInput, MidiInputConnection};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::Instant;

/// Messages the MIDI log holds before the REPL prints them.
pub const MIDI_LOG_CAP: usize = 1024;
const CLIENT: &str = "jamrig";

/// A received message, for the `:log` display (fixed size).
#[derive(Clone, Copy, Debug)]
pub struct LogRecord {
    pub frame: u64,
    pub bytes: [u8; 3],
    pub len: u8,
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
    /// Input thread: stamp, decode, queue (malformed messages are dropped).
    fn receive(&self, bytes: &[u8]) {
        let frame = self.clock.frame_for(Instant::now());
        if let Some(ev) = Event::from_midi(frame, bytes) {
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

/// The MIDI input ports, by name.
pub fn list_inputs() -> Vec<String> {
    let _quiet = super::audio::quiet_alsa();
    match MidiInput::new(CLIENT) {
        Ok(m) => m.ports().iter().filter_map(|p| m.port_name(p).ok()).collect(),
        Err(_) => Vec::new(),
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

/// A live connection to a MIDI input port.
pub struct MidiIn {
    conn: MidiInputConnection<()>,
    pub port: String,
}

/// Connects to the port `choice` names (first port by default).
pub fn connect(choice: Option<&str>, tap: &MidiTap) -> Result<MidiIn, String> {
    let _quiet = super::audio::quiet_alsa();
    let mut input = MidiInput::new(CLIENT).map_err(|e| format!("MIDI is unavailable: {e}"))?;
    input.ignore(Ignore::SysexAndActiveSense);
    let ports = input.ports();
    let names: Vec<String> = ports.iter().map(|p| input.port_name(p).unwrap_or_default()).collect();
    let Some(i) = pick(choice, &names) else {
        return Err(match choice {
            Some(c) => format!("no MIDI input matches \"{c}\""),
            None => "no MIDI input".to_string(),
        });
    };
    let tap = tap.clone();
    let conn = input
        .connect(&ports[i], "in", move |_, bytes, _| tap.receive(bytes), ())
        .map_err(|e| format!("cannot open MIDI input {}: {e}", names[i]))?;
    Ok(MidiIn { conn, port: names[i].clone() })
}

/// Opens jamrig's own input port for other programs (a DAW, another JACK or ALSA
/// client) to connect to.
pub fn open_own_port(tap: &MidiTap) -> Result<MidiIn, String> {
    use midir::os::unix::VirtualInput;
    let _quiet = super::audio::quiet_alsa();
    let mut input = MidiInput::new(CLIENT).map_err(|e| format!("MIDI is unavailable: {e}"))?;
    input.ignore(Ignore::SysexAndActiveSense);
    let tap = tap.clone();
    let conn = input
        .create_virtual("in", move |_, bytes, _| tap.receive(bytes), ())
        .map_err(|e| format!("cannot open a MIDI input port: {e}"))?;
    Ok(MidiIn { conn, port: format!("{CLIENT}:in (jamrig's own port)") })
}

impl MidiIn {
    /// Whether this is jamrig's own port rather than a connection to a device.
    pub fn is_own(&self) -> bool {
        self.port.ends_with("(jamrig's own port)")
    }

    pub fn close(self) {
        self.conn.close();
    }
}

/// Formats a logged message as one line.
pub fn describe(r: &LogRecord) -> String {
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
    format!("midi @{}: {text}", r.frame)
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
        assert_eq!(describe(&r), "midi @7: ch2 note on C4 (60) vel 100");
        let r = LogRecord { frame: 9, bytes: [0xE0, 0, 0x40], len: 3 };
        assert_eq!(describe(&r), "midi @9: ch1 bend 0");
    }
}
