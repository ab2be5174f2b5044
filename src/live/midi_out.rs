//! MIDI out, host side: takes what the engine queued ([`crate::engine::midi_out`])
//! and hands each message to its output port at its time, in time order. The
//! [`OutWriter`] runs on the thread that writes the ports: JACK's process thread
//! (the `jack` feature, where messages land at their frame offset in the cycle), or
//! jamrig's MIDI output thread (ALSA, through midir, which sends each message at
//! its frame's wall time). It allocates nothing once built. [`OutDevices`], on
//! the control thread, gives each device a set names a port of its own; on JACK,
//! [`JackOutPorts`] holds the ports on the process thread and [`JackOutControl`]
//! makes and unregisters them on the control thread.

use crate::engine::midi_out::{MAX_OUT_DEVICES, MIDI_OUT_QUEUE_CAP, OUT_PORTS, OutMessage, OutQueue};
use crate::rig::build::OutPorts;
use crate::rig::set::Set;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

/// How long a device's port stays after the engine took the set that stopped
/// naming it: the note-offs of what its channels held leave through it first.
pub const RETIRE_AFTER: Duration = Duration::from_millis(500);

/// The engine's queue of MIDI out messages and what became of them, shared by the
/// control thread (`:status`) and whoever writes the port.
pub struct OutShared {
    pub queue: OutQueue,
    /// Messages written to the port.
    pub written: AtomicU64,
    /// Messages written after their time (at the start of the cycle, or late on
    /// the output thread).
    pub late: AtomicU64,
    /// Messages the port refused (its buffer for the cycle was full).
    pub refused: AtomicU64,
    /// How long after its frame is handed out a message leaves (a device's own
    /// latency aside), in frames: the audio's output latency beyond the MIDI
    /// port's, so that it sounds with the audio. Set by the writer.
    pub delay_frames: AtomicU64,
    /// The devices the set names and their ports (control thread only: whoever
    /// opens a MIDI client makes their ports from it).
    pub devices: Mutex<OutDevices>,
}

impl OutShared {
    pub fn new(queue: OutQueue) -> OutShared {
        OutShared {
            queue,
            written: AtomicU64::new(0),
            late: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            delay_frames: AtomicU64::new(0),
            devices: Mutex::new(OutDevices::default()),
        }
    }
}

/// A device a set names, and its output port.
#[derive(Clone, Debug, PartialEq)]
pub struct OutDevice {
    /// Its index among the ports (1..[`OUT_PORTS`]).
    pub port: u8,
    /// The device as the set names it (a part of its port's name).
    pub device: String,
    /// No longer named: when the engine took the set that dropped it (`None`: not
    /// yet), or the number of snapshots it had adopted before that set was sent.
    retiring: Option<Retiring>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Retiring {
    /// Published when the engine had adopted this many snapshots.
    Published(u64),
    /// The engine took it at this time.
    Taken(Instant),
}

impl OutDevice {
    /// The port's own name: `out-` and the device (letters, digits, `-`, `_` and
    /// `.` kept, anything else `_`), e.g. `out-op-xy`.
    pub fn port_name(&self) -> String {
        port_name_for(&self.device)
    }

    pub fn is_retiring(&self) -> bool {
        self.retiring.is_some()
    }
}

/// The name of the port for `device` (see [`OutDevice::port_name`]).
pub fn port_name_for(device: &str) -> String {
    let safe: String = device
        .chars()
        .take(MAX_PORT_NAME)
        .map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '_' })
        .collect();
    format!("out-{safe}")
}

/// The longest part of a device's name that goes into its port's name.
const MAX_PORT_NAME: usize = 48;

/// The devices the running set names, each with its own output port; and the
/// ports of devices it no longer names, kept until their note-offs have left.
/// Control thread.
#[derive(Clone, Debug, Default)]
pub struct OutDevices {
    devices: Vec<OutDevice>,
}

impl OutDevices {
    /// The table for `set`: its devices keep their ports, a new one takes a free
    /// port, one it no longer names starts retiring (`adopted`: the snapshots the
    /// engine has adopted so far). Or why there are not ports enough.
    pub fn plan(&self, set: &Set, adopted: u64) -> Result<OutDevices, String> {
        let want = set.out_devices();
        if want.len() > MAX_OUT_DEVICES {
            return Err(format!(
                "the set names {} MIDI output devices, and jamrig makes a port for at most {MAX_OUT_DEVICES}: send several channels to one device on different out channels",
                want.len()
            ));
        }
        let mut next = self.clone();
        for d in &mut next.devices {
            if want.contains(&d.device) {
                d.retiring = None;
            } else if d.retiring.is_none() {
                d.retiring = Some(Retiring::Published(adopted));
            }
        }
        for w in want {
            if next.devices.iter().any(|d| d.device == w) {
                continue;
            }
            let Some(port) = (1..OUT_PORTS as u8).find(|p| next.devices.iter().all(|d| d.port != *p)) else {
                return Err(format!(
                    "no MIDI output port is free for {w}: the ports of devices just removed are still sending their note-offs; try again in a second"
                ));
            };
            next.devices.push(OutDevice { port, device: w, retiring: None });
        }
        next.devices.sort_by_key(|d| d.port);
        Ok(next)
    }

    /// The port of each device named (retiring ones aside).
    pub fn ports(&self) -> OutPorts {
        self.devices.iter().filter(|d| d.retiring.is_none()).map(|d| (d.device.clone(), d.port)).collect()
    }

    /// Every device with a port, retiring ones included, by port.
    pub fn all(&self) -> &[OutDevice] {
        &self.devices
    }

    /// The device on `port`, if any.
    pub fn on(&self, port: u8) -> Option<&OutDevice> {
        self.devices.iter().find(|d| d.port == port)
    }

    /// The ports whose retirement is due (`adopted`: the snapshots the engine has
    /// adopted; `sent`: no snapshot waits to be sent): taken off the table.
    pub fn due(&mut self, adopted: u64, sent: bool, now: Instant) -> Vec<OutDevice> {
        for d in &mut self.devices {
            if let Some(Retiring::Published(before)) = d.retiring
                && sent
                && adopted > before
            {
                d.retiring = Some(Retiring::Taken(now));
            }
        }
        let (gone, kept) = std::mem::take(&mut self.devices)
            .into_iter()
            .partition(|d| matches!(d.retiring, Some(Retiring::Taken(t)) if now.duration_since(t) >= RETIRE_AFTER));
        self.devices = kept;
        gone
    }
}

/// Runs a closure with a JACK client, if it is still open (control thread).
#[cfg(feature = "jack")]
pub trait JackClientOwner: Send + Sync {
    fn with_client(&self, f: &mut dyn FnMut(&jack::Client));
}

#[cfg(feature = "jack")]
impl<N, P> JackClientOwner for Mutex<Option<jack::AsyncClient<N, P>>> {
    fn with_client(&self, f: &mut dyn FnMut(&jack::Client)) {
        if let Some(c) = self.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            f(c.as_client());
        }
    }
}

/// Ports on their way between the control thread and the process thread.
#[cfg(feature = "jack")]
struct PortHandoff {
    /// To the process thread: a port to use at an index, or `None`: give it back.
    install: crossbeam_queue::ArrayQueue<(u8, Option<jack::Port<jack::MidiOut>>)>,
    /// From the process thread: ports given back, to be unregistered.
    retired: crossbeam_queue::ArrayQueue<jack::Port<jack::MidiOut>>,
}

/// Port changes in flight at most (two per port: one made, one given back).
#[cfg(feature = "jack")]
const PORT_HANDOFF_CAP: usize = 2 * OUT_PORTS;

/// The output ports, on the process thread: the default one and one per device.
#[cfg(feature = "jack")]
pub struct JackOutPorts {
    ports: [Option<jack::Port<jack::MidiOut>>; OUT_PORTS],
    handoff: std::sync::Arc<PortHandoff>,
}

#[cfg(feature = "jack")]
impl JackOutPorts {
    /// Registers the default port (`out`) and a port for each device in `devices`
    /// on `client`, before it is activated. Control thread.
    pub fn register(client: &jack::Client, devices: &OutDevices) -> Result<(JackOutPorts, JackOutNames), String> {
        let mut ports: [Option<jack::Port<jack::MidiOut>>; OUT_PORTS] = Default::default();
        let mut names = vec![None; OUT_PORTS];
        let default = client
            .register_port("out", jack::MidiOut::default())
            .map_err(|e| format!("cannot open a MIDI output port: {e}"))?;
        names[crate::engine::midi_out::DEFAULT_PORT as usize] = Some(default.name().map_err(|e| e.to_string())?);
        ports[crate::engine::midi_out::DEFAULT_PORT as usize] = Some(default);
        for d in devices.all() {
            if let Ok(p) = client.register_port(&d.port_name(), jack::MidiOut::default()) {
                names[d.port as usize] = p.name().ok();
                ports[d.port as usize] = Some(p);
            }
        }
        let handoff = std::sync::Arc::new(PortHandoff {
            install: crossbeam_queue::ArrayQueue::new(PORT_HANDOFF_CAP),
            retired: crossbeam_queue::ArrayQueue::new(PORT_HANDOFF_CAP),
        });
        Ok((JackOutPorts { ports, handoff: handoff.clone() }, JackOutNames { handoff, names }))
    }

    /// The default port (the clock's).
    pub fn default_port(&self) -> Option<&jack::Port<jack::MidiOut>> {
        self.ports[crate::engine::midi_out::DEFAULT_PORT as usize].as_ref()
    }

    /// Process thread: takes the ports the control thread made or asked back
    /// (those go back to it, to be unregistered there). No allocation.
    fn take_changes(&mut self) {
        while let Some((i, port)) = self.handoff.install.pop() {
            let Some(slot) = self.ports.get_mut(i as usize) else { continue };
            if let Some(old) = std::mem::replace(slot, port)
                && let Err(old) = self.handoff.retired.push(old)
            {
                // Never unregistered here: the control thread has not drained
                // (it drains every few milliseconds); the port stays as it is.
                std::mem::forget(old);
            }
        }
    }

    /// Process thread: takes the port changes and clears every port's buffer, for
    /// a cycle with nothing to write (before the engine runs). No allocation.
    pub fn clear_cycle(&mut self, ps: &jack::ProcessScope) {
        self.take_changes();
        for p in self.ports.iter_mut().flatten() {
            p.writer(ps);
        }
    }

    /// Process thread: writes the messages `writer` has due in this cycle (`when`:
    /// a message's offset in the cycle), each to its port; a message for a port
    /// that is not there is counted as refused. No allocation.
    pub fn write_cycle(
        &mut self,
        ps: &jack::ProcessScope,
        writer: &mut OutWriter,
        out: &OutShared,
        when: impl Fn(&OutMessage) -> Option<i64>,
    ) {
        use std::sync::atomic::Ordering::Relaxed;
        self.take_changes();
        let n = ps.n_frames() as i64;
        // Every port's buffer is cleared each cycle, written or not.
        let mut ports = self.ports.iter_mut();
        let mut writers: [Option<jack::MidiWriter>; OUT_PORTS] =
            std::array::from_fn(|_| ports.next().and_then(|p| p.as_mut()).map(|p| p.writer(ps)));
        writer.write_due(&out.queue, n, when, |t, m| {
            if t < 0 {
                out.late.fetch_add(1, Relaxed);
            }
            let time = t.clamp(0, n - 1) as u32;
            let raw = jack::RawMidi { time, bytes: m.bytes() };
            let sent = if m.to_every_port() {
                let mut any = false;
                for w in writers.iter_mut().flatten() {
                    any |= w.write(&raw).is_ok();
                }
                any
            } else {
                writers.get_mut(m.port as usize).and_then(|w| w.as_mut()).is_some_and(|w| w.write(&raw).is_ok())
            };
            let counter = if sent { &out.written } else { &out.refused };
            counter.fetch_add(1, Relaxed);
        });
    }
}

/// The ports [`JackOutPorts::register`] made, until their client is active.
#[cfg(feature = "jack")]
pub struct JackOutNames {
    handoff: std::sync::Arc<PortHandoff>,
    names: Vec<Option<String>>,
}

#[cfg(feature = "jack")]
impl JackOutNames {
    /// The default port's full name (`jamrig:out`).
    pub fn default_name(&self) -> String {
        self.names[crate::engine::midi_out::DEFAULT_PORT as usize].clone().unwrap_or_default()
    }

    /// What makes and drops ports from now on, on the client `owner` holds.
    pub fn owned_by(self, owner: std::sync::Arc<dyn JackClientOwner>) -> JackOutControl {
        JackOutControl { handoff: self.handoff, owner, names: self.names }
    }
}

/// Makes and drops the output ports of a running JACK client. Control thread.
#[cfg(feature = "jack")]
pub struct JackOutControl {
    handoff: std::sync::Arc<PortHandoff>,
    owner: std::sync::Arc<dyn JackClientOwner>,
    /// Full port names, by index (`None`: no port there).
    names: Vec<Option<String>>,
}

#[cfg(feature = "jack")]
impl JackOutControl {
    /// The full name of port `i`, if it is there.
    pub fn name(&self, i: u8) -> Option<&str> {
        self.names.get(i as usize).and_then(|n| n.as_deref())
    }

    /// The JACK client that owns the ports (to connect them with).
    pub fn owner(&self) -> &std::sync::Arc<dyn JackClientOwner> {
        &self.owner
    }

    /// Makes a port for every device in `devices` that has none, and hands it to
    /// the process thread (which takes it before it writes the next cycle's MIDI,
    /// so a snapshot published after this finds it). Says what it could not make.
    pub fn sync(&mut self, devices: &OutDevices) -> Vec<String> {
        self.collect();
        let mut failed = Vec::new();
        for d in devices.all() {
            if self.name(d.port).is_some() {
                continue;
            }
            let mut made = None;
            self.owner.with_client(&mut |c| made = Some(c.register_port(&d.port_name(), jack::MidiOut::default())));
            match made {
                Some(Ok(p)) => {
                    let name = p.name().ok();
                    match self.handoff.install.push((d.port, Some(p))) {
                        Ok(()) => self.names[d.port as usize] = name,
                        Err((_, mut p)) => {
                            failed.push(format!("cannot hand the MIDI output port for {} over now", d.device));
                            self.owner.with_client(&mut |c| {
                                if let Some(p) = p.take() {
                                    let _ = c.unregister_port(p);
                                }
                            });
                        }
                    }
                }
                Some(Err(e)) => failed.push(format!("cannot open a MIDI output port for {}: {e}", d.device)),
                None => {}
            }
        }
        failed
    }

    /// Asks the process thread to give port `i` back (it is unregistered here once
    /// it has).
    pub fn retire(&mut self, i: u8) {
        if self.names.get(i as usize).is_some_and(|n| n.is_some()) && self.handoff.install.push((i, None)).is_ok() {
            self.names[i as usize] = None;
        }
    }

    /// Unregisters the ports the process thread gave back.
    pub fn collect(&self) {
        while let Some(p) = self.handoff.retired.pop() {
            let mut p = Some(p);
            self.owner.with_client(&mut |c| {
                if let Some(p) = p.take() {
                    let _ = c.unregister_port(p);
                }
            });
        }
    }
}

/// Messages taken from the queue and not yet due, and the ones due now.
pub struct OutWriter {
    /// (order taken, message).
    pending: Vec<(u64, OutMessage)>,
    /// (time, order taken, message) of this round's messages.
    due: Vec<(i64, u64, OutMessage)>,
    taken: u64,
}

impl Default for OutWriter {
    fn default() -> Self {
        OutWriter {
            pending: Vec::with_capacity(MIDI_OUT_QUEUE_CAP),
            due: Vec::with_capacity(MIDI_OUT_QUEUE_CAP),
            taken: 0,
        }
    }
}

impl OutWriter {
    /// Takes what the engine queued since the last call, then hands `write` every
    /// message whose time (`when`, in the caller's unit; `None`: not known yet)
    /// is before `end`, in time order (at one time, in the engine's order). The
    /// rest wait for a later call. Writer thread, no allocation.
    pub fn write_due(
        &mut self,
        queue: &OutQueue,
        end: i64,
        when: impl Fn(&OutMessage) -> Option<i64>,
        mut write: impl FnMut(i64, &OutMessage),
    ) {
        while self.pending.len() < self.pending.capacity() {
            let Some(m) = queue.pop() else { break };
            self.pending.push((self.taken, m));
            self.taken += 1;
        }
        self.due.clear();
        let mut i = 0;
        while i < self.pending.len() {
            let (order, m) = self.pending[i];
            match when(&m) {
                Some(t) if t < end && self.due.len() < self.due.capacity() => {
                    self.due.push((t, order, m));
                    self.pending.swap_remove(i);
                }
                _ => i += 1,
            }
        }
        self.due.sort_unstable_by_key(|(t, order, _)| (*t, *order));
        for (t, _, m) in &self.due {
            write(*t, m);
        }
    }

    /// Whether messages wait (taken, not yet written).
    pub fn is_idle(&self) -> bool {
        self.pending.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(frame: u64, note: u8) -> OutMessage {
        OutMessage { frame, lead_frames: 0, port: 0, bytes: [0x90, note, 100], len: 3 }
    }

    fn set_naming(devices: &[&str]) -> Set {
        let mut set = Set::default();
        for (i, d) in devices.iter().enumerate() {
            let spec = crate::rig::set::ChannelSpec {
                instrument: "external".into(),
                kind: crate::rig::set::ChannelKind::External { device: d.to_string(), channel: 1 },
                params: Default::default(),
                voices: 1,
            };
            set.channels.insert(i as u8 + 1, spec);
        }
        set
    }

    #[test]
    fn devices_keep_their_ports_and_a_removed_ones_port_retires_after_its_note_offs() {
        let t0 = Instant::now();
        let d = OutDevices::default().plan(&set_naming(&["op-xy", "digitakt", "op-xy"]), 0).unwrap();
        let ports = d.ports();
        assert_eq!(ports.len(), 2);
        assert_eq!((ports["op-xy"], ports["digitakt"]), (1, 2));
        assert_eq!(d.on(1).map(|x| x.port_name()), Some("out-op-xy".to_string()));
        assert_eq!(port_name_for("onsets:midi_in"), "out-onsets_midi_in");
        // The digitakt goes, a keystep comes: it takes a free port, not the
        // digitakt's, which stays until the engine took the set and its note-offs
        // have had their time.
        let mut d = d.plan(&set_naming(&["keystep", "op-xy"]), 5).unwrap();
        assert_eq!(d.ports().into_iter().collect::<Vec<_>>(), [("keystep".into(), 3), ("op-xy".into(), 1)]);
        assert!(d.on(2).is_some_and(|x| x.is_retiring()));
        assert!(d.due(5, true, t0).is_empty(), "not before the engine took the set");
        assert!(d.due(6, false, t0).is_empty(), "not while a snapshot waits to be sent");
        assert!(d.due(6, true, t0).is_empty(), "not at once");
        let gone = d.due(6, true, t0 + RETIRE_AFTER);
        assert_eq!(gone.iter().map(|x| x.device.as_str()).collect::<Vec<_>>(), ["digitakt"]);
        assert!(d.on(2).is_none());
        // Named again before it retires: it keeps its port.
        let d = d.plan(&set_naming(&["op-xy"]), 7).unwrap();
        let d = d.plan(&set_naming(&["op-xy", "keystep"]), 7).unwrap();
        assert!(d.all().iter().all(|x| !x.is_retiring()));
        assert_eq!(d.ports()["keystep"], 3);
        // More devices than ports: refused, saying what to do.
        let many: Vec<String> = (0..=MAX_OUT_DEVICES).map(|i| format!("dev{i}")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        let e = OutDevices::default().plan(&set_naming(&many), 0).unwrap_err();
        assert!(e.contains("at most 8") && e.contains("send several channels to one device"), "{e}");
    }

    #[test]
    fn writes_what_is_due_in_time_order_and_keeps_the_rest() {
        let q = crate::engine::midi_out::queue();
        // Queued out of time order (the engine queues clock ticks before notes).
        for (f, n) in [(30, 1), (10, 2), (10, 3), (99, 4), (0, 5)] {
            q.push(msg(f, n)).unwrap();
        }
        let mut w = OutWriter::default();
        let mut got = Vec::new();
        w.write_due(&q, 50, |m| Some(m.frame as i64), |t, m| got.push((t, m.bytes[1])));
        assert_eq!(got, vec![(0, 5), (10, 2), (10, 3), (30, 1)]);
        assert!(!w.is_idle());
        got.clear();
        w.write_due(&q, 100, |m| Some(m.frame as i64), |t, m| got.push((t, m.bytes[1])));
        assert_eq!(got, vec![(99, 4)]);
        assert!(w.is_idle());
    }
}
