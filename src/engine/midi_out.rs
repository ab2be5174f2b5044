//! MIDI out, engine side (audio thread): the messages of external channels (notes,
//! controllers, bend, programs) and the MIDI clock, each stamped with the engine
//! frame it belongs to, written into a bounded lock-free queue as the engine
//! renders. The host drains the queue and sends each message at its frame (on JACK
//! at its frame offset inside a cycle). Fixed-size state, no allocation.

use super::snapshot::MAX_CHANNELS;
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

/// One message for the output port: at engine frame `frame`, sent `lead_frames`
/// earlier than the frame's audio is heard (a device's own latency, `latency_ms`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutMessage {
    pub frame: u64,
    pub lead_frames: u32,
    pub bytes: [u8; 3],
    pub len: u8,
}

impl OutMessage {
    pub fn bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }
}

/// The queue from the engine to the writer of the output port (lock-free; it
/// outlives engines and output clients: whoever writes the port drains it).
pub type OutQueue = Arc<ArrayQueue<OutMessage>>;

/// A new queue between the engine and the writer of the output port. Control side.
pub fn queue() -> OutQueue {
    Arc::new(ArrayQueue::new(MIDI_OUT_QUEUE_CAP))
}

/// Where an external channel's messages go: its MIDI channel (0-based) on the
/// output, and how much earlier than the audio they leave.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OutTarget {
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
            held_at: [OutTarget { channel: 0, lead_frames: 0 }; MAX_CHANNELS],
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

    /// Queues `bytes` for `frame`, counting it when the queue is full.
    #[inline]
    pub fn send(&mut self, frame: u64, lead_frames: u32, bytes: &[u8]) {
        let Some(tx) = &self.tx else { return };
        let mut b = [0u8; 3];
        let n = bytes.len().min(3);
        b[..n].copy_from_slice(&bytes[..n]);
        if tx.push(OutMessage { frame, lead_frames, bytes: b, len: n as u8 }).is_err() {
            self.overflow += 1;
        }
    }

    /// A note-on from rig channel `ch`, sent to `to`.
    pub fn note_on(&mut self, frame: u64, ch: usize, to: OutTarget, note: u8, velocity: u8) {
        if self.held[ch] != [0, 0] && self.held_at[ch] != to {
            // The channel moved to another output channel: end what it left there.
            self.release(frame, ch);
        }
        self.held_at[ch] = to;
        self.held[ch][(note as usize >> 6) & 1] |= 1 << (note & 63);
        self.send(frame, to.lead_frames, &[0x90 | to.channel, note & 0x7F, velocity.clamp(1, 127)]);
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
        self.send(frame, at.lead_frames, &[0x80 | at.channel, note & 0x7F, 0]);
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
        self.send(frame, to.lead_frames, bytes);
    }

    /// Note-offs for every note rig channel `ch` holds at its device.
    pub fn release(&mut self, frame: u64, ch: usize) {
        let at = self.held_at[ch];
        for w in 0..2 {
            let mut bits = std::mem::take(&mut self.held[ch][w]);
            while bits != 0 {
                let n = bits.trailing_zeros() as u8;
                bits &= bits - 1;
                self.send(frame, at.lead_frames, &[0x80 | at.channel, w as u8 * 64 + n, 0]);
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
            self.send(frame, 0, &[0xFA]);
            self.next_tick = 0;
        } else {
            let sixteenths = (beat * 4.0 - 1e-9).ceil().clamp(0.0, 16383.0) as i64;
            self.send(frame, 0, &[0xF2, (sixteenths & 0x7F) as u8, (sixteenths >> 7) as u8]);
            self.send(frame, 0, &[0xFB]);
            self.next_tick = sixteenths * TICKS_PER_SIXTEENTH;
        }
        self.clock_running = true;
        self.started_at = Some(frame);
    }

    /// Clock: Stop at `frame`.
    pub fn clock_stop(&mut self, frame: u64) {
        self.send(frame, 0, &[0xFC]);
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
            self.send(f.max(a), 0, &[0xF8]);
            self.next_tick += 1;
        }
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
    fn held_notes_are_released_where_they_went() {
        let mut rx = queue();
        let mut m = MidiOut::default();
        m.connect(rx.clone());
        let a = OutTarget { channel: 0, lead_frames: 0 };
        let b = OutTarget { channel: 3, lead_frames: 0 };
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
