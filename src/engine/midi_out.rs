//! MIDI out, engine side (audio thread): the messages of external channels (notes,
//! controllers, bend, programs) and the MIDI clock, each stamped with the engine
//! frame it belongs to, written into a bounded lock-free queue as the engine
//! renders. The host drains the queue and sends each message at its frame (on JACK
//! at its frame offset inside a cycle). Fixed-size state, no allocation.

use super::snapshot::{CcMapping, MAX_CHANNELS};
use crate::params::Param;
use crossbeam_queue::ArrayQueue;
use std::sync::Arc;

/// Messages waiting between the engine and the host's MIDI writer.
pub const MIDI_OUT_QUEUE_CAP: usize = 4096;
/// MIDI clock ticks per quarter note.
pub const CLOCK_OUT_PPQN: f64 = 24.0;
/// Clock ticks sent within one engine tick at most (a tick of 64 frames holds one
/// or two at any tempo; this bounds the loop whatever the transport does).
const MAX_TICKS_PER_RUN: u32 = 16;
/// MIDI clock ticks per sixteenth note (a Song Position unit).
const TICKS_PER_SIXTEENTH: i64 = 6;
/// Output devices a set may name, each with a port of its own beside the default.
pub const MAX_OUT_DEVICES: usize = 8;
/// Output ports: the default (`jamrig:out`: the clock, and what `--midi-out`
/// connects it to), and room for two per device a set may name (the port of a
/// device a reload removed stays while its note-offs leave).
pub const OUT_PORTS: usize = 1 + 2 * MAX_OUT_DEVICES;
/// The default output port's index: the clock goes out there.
pub const DEFAULT_PORT: u8 = 0;

/// One message for an output port: at engine frame `frame`, sent `lead_frames`
/// earlier than the frame's audio is heard (a device's own latency, `latency_ms`),
/// on output port `port` (below [`OUT_PORTS`]; [`DEFAULT_PORT`] or a device's).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutMessage {
    pub frame: u64,
    pub lead_frames: u32,
    pub port: u8,
    pub bytes: [u8; 3],
    pub len: u8,
}

impl OutMessage {
    pub fn bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }

    /// A system message of the default port (the clock: ticks, Start, Stop,
    /// Continue, Song Position): it goes out on every port, so that each device a
    /// set names is clocked through its own port.
    pub fn to_every_port(&self) -> bool {
        self.port == DEFAULT_PORT && self.len > 0 && self.bytes[0] >= 0xF0
    }
}

/// The queue from the engine to the writer of the output port (lock-free; it
/// outlives engines and output clients: whoever writes the port drains it).
pub type OutQueue = Arc<ArrayQueue<OutMessage>>;

/// A new queue between the engine and the writer of the output port. Control side.
pub fn queue() -> OutQueue {
    Arc::new(ArrayQueue::new(MIDI_OUT_QUEUE_CAP))
}

/// Where an external channel's messages go: the output port of its device, its
/// MIDI channel (0-based) there, and how much earlier than the audio they leave.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OutTarget {
    pub port: u8,
    pub channel: u8,
    pub lead_frames: u32,
}

/// The engine's MIDI out: the queue's producer (none offline), the notes each
/// external channel holds at its device, and the clock's state.
pub struct MidiOut {
    tx: Option<OutQueue>,
    /// Per rig channel, a bit per note sounding at the device.
    held: [[u64; 2]; MAX_CHANNELS],
    /// Per rig channel, where its held notes went.
    held_at: [OutTarget; MAX_CHANNELS],
    /// Messages lost because the queue was full.
    pub overflow: u64,
    /// The clock: whether Start (or Continue) has been sent and not yet Stop.
    pub clock_running: bool,
    /// The index of the next clock tick (tick `k` is beat `k / 24`).
    pub next_tick: i64,
    /// The frame of the last Start or Continue sent.
    pub started_at: Option<u64>,
}

impl Default for MidiOut {
    fn default() -> Self {
        MidiOut {
            tx: None,
            held: [[0; 2]; MAX_CHANNELS],
            held_at: [OutTarget { port: DEFAULT_PORT, channel: 0, lead_frames: 0 }; MAX_CHANNELS],
            overflow: 0,
            clock_running: false,
            next_tick: 0,
            started_at: None,
        }
    }
}

impl MidiOut {
    /// Wires the queue. Control side, before the engine runs.
    pub fn connect(&mut self, tx: OutQueue) {
        self.tx = Some(tx);
    }

    pub fn is_connected(&self) -> bool {
        self.tx.is_some()
    }

    /// Queues `bytes` for `frame` on `port`, counting it when the queue is full.
    #[inline]
    pub fn send(&mut self, frame: u64, lead_frames: u32, port: u8, bytes: &[u8]) {
        let Some(tx) = &self.tx else { return };
        let mut b = [0u8; 3];
        let n = bytes.len().min(3);
        b[..n].copy_from_slice(&bytes[..n]);
        if tx.push(OutMessage { frame, lead_frames, port, bytes: b, len: n as u8 }).is_err() {
            self.overflow += 1;
        }
    }

    /// A note-on from rig channel `ch`, sent to `to`.
    pub fn note_on(&mut self, frame: u64, ch: usize, to: OutTarget, note: u8, velocity: u8) {
        if self.held[ch] != [0, 0] && self.held_at[ch] != to {
            // The channel moved to another device or output channel: end what it
            // left there.
            self.release(frame, ch);
        }
        self.held_at[ch] = to;
        self.held[ch][(note as usize >> 6) & 1] |= 1 << (note & 63);
        self.send(frame, to.lead_frames, to.port, &[0x90 | to.channel, note & 0x7F, velocity.clamp(1, 127)]);
    }

    /// A note-off from rig channel `ch`: sent where its note-on went, if the note
    /// is held there (a note already ended gets no second note-off).
    pub fn note_off(&mut self, frame: u64, ch: usize, note: u8) {
        let bit = 1u64 << (note & 63);
        let word = &mut self.held[ch][(note as usize >> 6) & 1];
        if *word & bit == 0 {
            return;
        }
        *word &= !bit;
        let at = self.held_at[ch];
        self.send(frame, at.lead_frames, at.port, &[0x80 | at.channel, note & 0x7F, 0]);
    }

    /// A message that is not a note (controller, bend, program, pressure) from
    /// rig channel `ch`; an all-notes-off or all-sound-off ends its held notes.
    pub fn channel_message(&mut self, frame: u64, ch: usize, to: OutTarget, bytes: &[u8]) {
        if let [s, 120 | 123, _] = bytes
            && s & 0xF0 == 0xB0
        {
            // Each held note gets its own note-off first (not every device
            // honours all-notes-off).
            self.release(frame, ch);
        }
        self.send(frame, to.lead_frames, to.port, bytes);
    }

    /// A knob of rig channel `ch` turned to `value` (by the control port, the REPL
    /// or a reload): sent as the controller that carries it ([`knob_cc`]), if any.
    pub fn knob(&mut self, frame: u64, ch: usize, to: OutTarget, map: &[CcMapping], param: u8, value: f32) {
        if let Some((cc, position)) = knob_cc(map, ch as u8, param, value) {
            self.channel_message(frame, ch, to, &[0xB0 | to.channel, cc, position]);
        }
    }

    /// Note-offs for every note rig channel `ch` holds at its device.
    pub fn release(&mut self, frame: u64, ch: usize) {
        let at = self.held_at[ch];
        for w in 0..2 {
            let mut bits = std::mem::take(&mut self.held[ch][w]);
            while bits != 0 {
                let n = bits.trailing_zeros() as u8;
                bits &= bits - 1;
                self.send(frame, at.lead_frames, at.port, &[0x80 | at.channel, w as u8 * 64 + n, 0]);
            }
        }
    }

    /// Note-offs for every held external note.
    pub fn release_all(&mut self, frame: u64) {
        for ch in 0..MAX_CHANNELS {
            self.release(frame, ch);
        }
    }

    /// Whether rig channel `ch` holds notes at its device.
    pub fn holds(&self, ch: usize) -> bool {
        self.held[ch] != [0, 0]
    }

    /// Clock: Start at `frame` (beat 0), or Song Position and Continue from
    /// `beat` (the next sixteenth: the ticks resume there).
    pub fn clock_start(&mut self, frame: u64, beat: f64) {
        if beat.abs() < 1e-9 {
            self.send(frame, 0, DEFAULT_PORT, &[0xFA]);
            self.next_tick = 0;
        } else {
            let sixteenths = (beat * 4.0 - 1e-9).ceil().clamp(0.0, 16383.0) as i64;
            self.send(frame, 0, DEFAULT_PORT, &[0xF2, (sixteenths & 0x7F) as u8, (sixteenths >> 7) as u8]);
            self.send(frame, 0, DEFAULT_PORT, &[0xFB]);
            self.next_tick = sixteenths * TICKS_PER_SIXTEENTH;
        }
        self.clock_running = true;
        self.started_at = Some(frame);
    }

    /// Clock: Stop at `frame`.
    pub fn clock_stop(&mut self, frame: u64) {
        self.send(frame, 0, DEFAULT_PORT, &[0xFC]);
        self.clock_running = false;
    }

    /// Clock ticks in frames `[a, b)` while the transport plays: tick `k` at the
    /// first frame at or after beat `k / 24` (`frame_at`), as pattern hits are.
    /// `beat_a` is the transport's beat at `a`: after a jump the count moves to it.
    pub fn clock_ticks(&mut self, a: u64, b: u64, beat_a: f64, frame_at: impl Fn(f64) -> u64) {
        if !self.clock_running {
            return;
        }
        let due = (beat_a * CLOCK_OUT_PPQN - 1e-6).ceil() as i64;
        // A Continue resumes the count on the next sixteenth, up to six ticks ahead.
        if self.next_tick < due - 1 || self.next_tick > due + TICKS_PER_SIXTEENTH {
            // The transport jumped (a relocation): the count follows, no burst.
            self.next_tick = due;
        }
        for _ in 0..MAX_TICKS_PER_RUN {
            let f = frame_at(self.next_tick as f64 / CLOCK_OUT_PPQN);
            if f >= b {
                break;
            }
            self.send(f.max(a), 0, DEFAULT_PORT, &[0xF8]);
            self.next_tick += 1;
        }
    }
}

/// The controller that carries knob `param` (a [`Param`] as `u8`) of rig channel
/// `ch` (0-based) out to its device, and its position for `value`: the set's CC
/// map (a mapping for the channel first, then one without a channel), else volume
/// as CC 7 and pan as CC 10. `None`: nothing carries it.
pub fn knob_cc(map: &[CcMapping], ch: u8, param: u8, value: f32) -> Option<(u8, u8)> {
    if !value.is_finite() {
        return None;
    }
    let position = |x: f32| (x * 127.0).round().clamp(0.0, 127.0) as u8;
    let mapped = map
        .iter()
        .find(|m| m.param as u8 == param && m.channel == Some(ch))
        .or_else(|| map.iter().find(|m| m.param as u8 == param && m.channel.is_none()));
    if let Some(m) = mapped {
        let x = if m.exponential && m.min > 0.0 && m.max > 0.0 && value > 0.0 {
            (value / m.min).ln() / (m.max / m.min).ln()
        } else if m.max != m.min {
            (value - m.min) / (m.max - m.min)
        } else {
            0.0
        };
        return Some((m.cc & 0x7F, position(x)));
    }
    if param == Param::Volume as u8 {
        Some((7, position(value)))
    } else if param == Param::Pan as u8 {
        Some((10, (value * 63.0 + 64.0).round().clamp(0.0, 127.0) as u8))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(rx: &mut OutQueue) -> Vec<(u64, Vec<u8>)> {
        let mut v = Vec::new();
        while let Some(m) = rx.pop() {
            v.push((m.frame, m.bytes().to_vec()));
        }
        v
    }

    #[test]
    fn a_channel_sent_to_another_device_ends_its_notes_at_the_first() {
        let rx = queue();
        let mut m = MidiOut::default();
        m.connect(rx.clone());
        let a = OutTarget { port: 1, channel: 0, lead_frames: 0 };
        let b = OutTarget { port: 2, channel: 0, lead_frames: 48 };
        m.note_on(10, 2, a, 60, 100);
        m.note_on(20, 2, b, 62, 100);
        m.clock_start(30, 0.0);
        let got: Vec<(u8, u32, Vec<u8>)> =
            std::iter::from_fn(|| rx.pop()).map(|m| (m.port, m.lead_frames, m.bytes().to_vec())).collect();
        assert_eq!(
            got,
            vec![
                (1, 0, vec![0x90, 60, 100]),
                (1, 0, vec![0x80, 60, 0]),
                (2, 48, vec![0x90, 62, 100]),
                (DEFAULT_PORT, 0, vec![0xFA])
            ]
        );
    }

    #[test]
    fn knobs_go_out_as_the_controller_that_carries_them() {
        let map = |cc, channel, min, max, exponential| CcMapping {
            cc,
            channel,
            any: false,
            param: Param::Lowpass,
            min,
            max,
            exponential,
        };
        let lp = Param::Lowpass as u8;
        // Linear, and exponential: the inverse of the position a CC moves it to.
        let lin = [map(74, None, 200.0, 8000.0, false)];
        assert_eq!(knob_cc(&lin, 4, lp, 200.0), Some((74, 0)));
        assert_eq!(knob_cc(&lin, 4, lp, 8000.0), Some((74, 127)));
        assert_eq!(knob_cc(&lin, 4, lp, 99999.0), Some((74, 127)));
        let exp = [map(74, None, 200.0, 8000.0, true)];
        for cc in [0u8, 1, 40, 64, 100, 127] {
            let v = Param::cc_value(200.0, 8000.0, true, cc);
            assert_eq!(knob_cc(&exp, 4, lp, v), Some((74, cc)));
            let v = Param::cc_value(200.0, 8000.0, false, cc);
            assert_eq!(knob_cc(&lin, 4, lp, v), Some((74, cc)));
        }
        // A mapping for the channel wins; one for another channel does not apply.
        let both = [map(74, None, 200.0, 8000.0, false), map(71, Some(4), 200.0, 8000.0, false)];
        assert_eq!(knob_cc(&both, 4, lp, 200.0), Some((71, 0)));
        assert_eq!(knob_cc(&both[1..], 3, lp, 200.0), None);
        // Volume and pan without a mapping: CC 7 and CC 10.
        assert_eq!(knob_cc(&[], 0, Param::Volume as u8, 1.0), Some((7, 127)));
        assert_eq!(knob_cc(&[], 0, Param::Pan as u8, 0.0), Some((10, 64)));
        assert_eq!(knob_cc(&[], 0, Param::Pan as u8, -1.0), Some((10, 1)));
        assert_eq!(knob_cc(&[], 0, lp, 900.0), None);
        assert_eq!(knob_cc(&lin, 0, lp, f32::NAN), None);
    }

    #[test]
    fn held_notes_are_released_where_they_went() {
        let mut rx = queue();
        let mut m = MidiOut::default();
        m.connect(rx.clone());
        let a = OutTarget { port: 1, channel: 0, lead_frames: 0 };
        let b = OutTarget { port: 1, channel: 3, lead_frames: 0 };
        m.note_on(10, 4, a, 60, 100);
        m.note_on(10, 4, a, 64, 100);
        m.note_off(20, 4, 60);
        m.note_off(21, 4, 60);
        assert!(m.holds(4));
        // The channel now goes out on channel 4: what it held on 1 ends there.
        m.note_on(25, 4, b, 67, 90);
        m.release(30, 4);
        assert!(!m.holds(4));
        assert_eq!(
            drain(&mut rx),
            vec![
                (10, vec![0x90, 60, 100]),
                (10, vec![0x90, 64, 100]),
                (20, vec![0x80, 60, 0]),
                (25, vec![0x80, 64, 0]),
                (25, vec![0x93, 67, 90]),
                (30, vec![0x83, 67, 0])
            ]
        );
    }

    #[test]
    fn ticks_follow_the_beat_grid_and_resume_on_a_sixteenth() {
        let mut rx = queue();
        let mut m = MidiOut::default();
        m.connect(rx.clone());
        // 120 BPM at 48 kHz: a tick every 1000 frames.
        let frame_at = |beat: f64| (beat * 24000.0).ceil() as u64;
        m.clock_start(0, 0.0);
        for t in 0..40 {
            let a = t * 64;
            m.clock_ticks(a, a + 64, a as f64 / 24000.0, frame_at);
        }
        let v = drain(&mut rx);
        assert_eq!(v[0], (0, vec![0xFA]));
        let ticks: Vec<u64> = v[1..].iter().map(|(f, b)| (assert_eq!(b, &vec![0xF8]), *f).1).collect();
        assert_eq!(ticks, vec![0, 1000, 2000]);
        // Continue from beat 1.1: Song Position 5 (sixteenths), ticks from beat 1.25.
        m.clock_stop(2560);
        m.clock_start(5000, 1.1);
        assert_eq!(m.next_tick, 30);
        let v = drain(&mut rx);
        assert_eq!(v, vec![(2560, vec![0xFC]), (5000, vec![0xF2, 5, 0]), (5000, vec![0xFB])]);
    }
}
