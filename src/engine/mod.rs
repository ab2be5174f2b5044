//! The realtime engine. Everything in this module runs on the audio thread (or on
//! the offline renderer's thread, which plays the same role): it never allocates,
//! frees, locks, blocks, logs or does I/O. It is built, with every buffer it will
//! need, by [`Engine::new`] on the control side, then driven by [`Engine::process`].
//!
//! Audio is produced in ticks of [`TICK_FRAMES`] frames on an absolute frame grid;
//! snapshots are adopted and parameters stepped at tick starts, and events and
//! pattern hits land at their exact frame inside a tick. The host's block size only
//! decides how ticks are handed out, so the output does not depend on it.

pub mod banks;
pub mod bus;
pub mod denormal;
pub mod envelope;
pub mod event;
pub mod midi_out;
pub mod sampler;
pub mod sends;
pub mod sequencer;
pub mod snapshot;
pub mod sync;
pub mod synth;
pub mod tap;
pub mod transport;
pub mod voice;

use crate::dsp::glide::Glide;
use crate::dsp::math::{db_to_gain, fast_tanh};
use crate::params::{NUM_PARAMS, Param, ParamValues, Scope};
use crate::tables::Tables;
use bus::{Bus, BusOut, ChannelInput};
use crossbeam_queue::ArrayQueue;
use event::{Event, EventKind};
use midi_out::{MidiOut, OutTarget};
use sequencer::{Sequencer, Sink};
use snapshot::{ChannelConfig, MAX_CHANNELS, MasterConfig, MasterMode, PatternSet, Snapshot, Source};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};
use sync::{
    CLOCK_HORIZON_BEATS, ClockAction, ClockFollower, ExternalTimeline, JUMP_BEATS, LINK_HORIZON_BEATS, SyncMode,
};
use transport::Transport;
use voice::{Scratch, Voice, VoiceCtx, VoiceOut, VoiceSource};

/// Frames per engine tick.
pub const TICK_FRAMES: usize = 64;
/// [`EngineStats::programs`] of a channel no program change has touched.
pub const NO_PROGRAM: u32 = u32::MAX;
/// Voices a channel may sound at once unless the set says otherwise.
pub const DEFAULT_VOICE_LIMIT: u8 = 16;
/// The largest per-channel voice limit.
pub const MAX_VOICE_LIMIT: u8 = 64;
/// Voices in all (every channel at its largest limit).
pub const MAX_VOICES: usize = MAX_CHANNELS * MAX_VOICE_LIMIT as usize;
/// Extra voice slots for stolen voices fading out.
const STEAL_RESERVE: usize = 64;
/// Capacity of the event queue from producers (MIDI, REPL, renderer) to the engine.
pub const EVENT_QUEUE_CAP: usize = 4096;
/// Snapshots in flight from the control side to the engine.
pub const SNAPSHOT_QUEUE_CAP: usize = 4;
/// Capacity of the queue returning retired snapshots and pattern sets for freeing.
pub const TRASH_QUEUE_CAP: usize = 64;
/// External events (MIDI, REPL, the renderer's) played within one tick. More due at
/// once wait for the next tick (played late, never dropped).
pub const MAX_TICK_EVENTS: usize = 1024;
/// Pattern hits played within one tick; more are skipped and counted.
pub const MAX_TICK_HITS: usize = 256;
/// Pattern note-offs played within one tick; more wait for the next tick.
pub const MAX_TICK_NOTE_OFFS: usize = 256;
/// Everything one tick plays: external events, note-offs (taken twice: before and
/// after the sequencer), pattern hits and a Link launch.
const TICK_EVENT_CAP: usize = MAX_TICK_EVENTS + 2 * MAX_TICK_NOTE_OFFS + MAX_TICK_HITS + 1;
/// Pattern note-offs waiting for their frame.
pub const NOTE_OFF_CAP: usize = 4096;
/// A channel whose bus has been silent (below -100 dB) this long stops processing.
const IDLE_SECONDS: f32 = 0.5;
/// Ceiling of the master limiter.
const LIMITER_CEILING_DB: f32 = -0.3;
const LIMITER_RELEASE_SECONDS: f32 = 0.1;
/// Pitch-bend glide, long enough to hide 14-bit steps, short enough to feel immediate.
const BEND_GLIDE_SECONDS: f32 = 0.003;

/// Something the engine has let go of, to be freed on the control side.
pub enum Garbage {
    Snapshot(Box<Snapshot>),
    Patterns(Arc<PatternSet>),
    /// A sample bank no snapshot names and no voice plays any more.
    Bank(Arc<crate::tables::bank::SampleBank>),
}

/// Counters and meters the engine publishes for the REPL and tests (atomics only).
pub struct EngineStats {
    pub frames: AtomicU64,
    pub snapshots_adopted: AtomicU64,
    /// Events refused because the event queue was full (counted by producers).
    pub events_dropped: AtomicU64,
    /// Events that arrived after their frame (played at the start of the next tick).
    pub events_late: AtomicU64,
    /// Events lost because more were waiting than the engine holds
    /// ([`EVENT_QUEUE_CAP`]); note-offs and the newest value of each controller are
    /// kept before anything else.
    pub events_overflow: AtomicU64,
    /// Pattern notes not started because their note-offs had no room.
    pub note_offs_overflow: AtomicU64,
    /// Pattern hits skipped (more than [`MAX_TICK_HITS`] in one tick, or a transport
    /// position past exact beats): counted once per pattern and tick.
    pub hits_overflow: AtomicU64,
    pub voices_stolen: AtomicU64,
    /// Voices cut without a fade because the whole pool was busy.
    pub voices_cut: AtomicU64,
    /// Garbage the engine could not hand back (leaked rather than freed here).
    pub trash_overflow: AtomicU64,
    /// Numeric faults (NaN/Inf) caught and cleared.
    pub faults: AtomicU64,
    pub voices: [AtomicU32; MAX_CHANNELS],
    /// Peak level per channel since last read (f32 bits; read with `swap(0)`).
    pub peaks: [AtomicU32; MAX_CHANNELS],
    pub master_peak: AtomicU32,
    /// CC positions per channel and parameter (f32 bits; NaN = none), for `:save`.
    pub overrides: [[AtomicU32; NUM_PARAMS]; MAX_CHANNELS],
    /// Program changes ignored because the program's synth is not available.
    pub programs_ignored: AtomicU64,
    /// Sample banks a snapshot named that found no slot (their channels are silent).
    pub banks_overflow: AtomicU64,
    /// Sample banks the engine holds (the snapshot's and those voices still play).
    pub banks_held: AtomicU32,
    pub playing: AtomicBool,
    pub tempo_bits: AtomicU64,
    pub beat_bits: AtomicU64,
    /// The incoming MIDI clock's tempo (f64 bits; 0 when no clock has been seen).
    pub clock_tempo_bits: AtomicU64,
    /// MIDI clock ticks received.
    pub clock_ticks: AtomicU64,
    /// MIDI out messages lost because the queue to the output was full
    /// ([`midi_out::MIDI_OUT_QUEUE_CAP`]).
    pub midi_out_overflow: AtomicU64,
    /// MIDI clock out was refused: jamrig's own Start came back on MIDI in (a device
    /// echoes the clock); it stays off until asked again.
    pub clock_out_looped: AtomicBool,
    /// Per channel, the program a program change selected ([`NO_PROGRAM`]: none).
    pub programs: [AtomicU32; MAX_CHANNELS],
    /// Per channel, the pitch bend (-8192..=8191, as i32 bits).
    pub bends: [AtomicU32; MAX_CHANNELS],
    /// Per channel, whether the sustain pedal is down.
    pub pedals: [AtomicBool; MAX_CHANNELS],
    /// Per channel, the expression (CC11) as a gain, 0..=1 (f32 bits).
    pub expression: [AtomicU32; MAX_CHANNELS],
    /// Sequence lock over `frames`, `playing`, `tempo_bits` and `beat_bits` (odd
    /// while the engine writes them), for [`EngineStats::transport`].
    transport_seq: AtomicU64,
}

/// What MIDI has set on a channel, beyond its notes: for carrying it over to a
/// rebuilt engine.
#[derive(Clone, Debug, PartialEq)]
pub struct ChannelMidi {
    /// 0-based.
    pub channel: u8,
    /// Parameters set by knobs (CC), CC7 (volume) and CC10 (pan).
    pub knobs: Vec<(Param, f32)>,
    pub program: Option<u8>,
    pub bend: i16,
    pub pedal: bool,
    /// CC11 as a gain, 0..=1.
    pub expression: f32,
}

impl ChannelMidi {
    /// Whether MIDI has left the channel as the set has it.
    pub fn is_untouched(&self) -> bool {
        self.knobs.is_empty() && self.program.is_none() && self.bend == 0 && !self.pedal && self.expression == 1.0
    }
}

/// The transport at one engine frame, read consistently.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TransportReading {
    /// The frame (a tick start) the reading is for.
    pub frame: u64,
    pub beat: f64,
    pub bpm: f64,
    pub playing: bool,
}

impl Default for EngineStats {
    fn default() -> Self {
        EngineStats {
            frames: AtomicU64::new(0),
            snapshots_adopted: AtomicU64::new(0),
            events_dropped: AtomicU64::new(0),
            events_late: AtomicU64::new(0),
            events_overflow: AtomicU64::new(0),
            note_offs_overflow: AtomicU64::new(0),
            hits_overflow: AtomicU64::new(0),
            voices_stolen: AtomicU64::new(0),
            voices_cut: AtomicU64::new(0),
            trash_overflow: AtomicU64::new(0),
            faults: AtomicU64::new(0),
            voices: Default::default(),
            peaks: Default::default(),
            master_peak: AtomicU32::new(0),
            overrides: std::array::from_fn(|_| std::array::from_fn(|_| AtomicU32::new(f32::NAN.to_bits()))),
            programs_ignored: AtomicU64::new(0),
            banks_overflow: AtomicU64::new(0),
            banks_held: AtomicU32::new(0),
            playing: AtomicBool::new(false),
            tempo_bits: AtomicU64::new(0),
            beat_bits: AtomicU64::new(0),
            clock_tempo_bits: AtomicU64::new(0),
            clock_ticks: AtomicU64::new(0),
            midi_out_overflow: AtomicU64::new(0),
            clock_out_looped: AtomicBool::new(false),
            programs: std::array::from_fn(|_| AtomicU32::new(NO_PROGRAM)),
            bends: Default::default(),
            pedals: Default::default(),
            expression: std::array::from_fn(|_| AtomicU32::new(1.0f32.to_bits())),
            transport_seq: AtomicU64::new(0),
        }
    }
}

impl EngineStats {
    /// The CC position of a channel's parameter, if a CC has set it.
    pub fn override_of(&self, ch: usize, p: Param) -> Option<f32> {
        let v = f32::from_bits(self.overrides[ch][p as usize].load(Relaxed));
        (!v.is_nan()).then_some(v)
    }

    pub fn tempo(&self) -> f64 {
        f64::from_bits(self.tempo_bits.load(Relaxed))
    }

    pub fn beat(&self) -> f64 {
        f64::from_bits(self.beat_bits.load(Relaxed))
    }

    /// Frame, beat, tempo and playing flag as of one tick (never torn between two
    /// ticks: the reader retries while the engine writes).
    pub fn transport(&self) -> TransportReading {
        use std::sync::atomic::{Ordering::Acquire, fence};
        loop {
            let s1 = self.transport_seq.load(Acquire);
            if s1 % 2 == 1 {
                std::hint::spin_loop();
                continue;
            }
            let r = TransportReading {
                frame: self.frames.load(Relaxed),
                beat: self.beat(),
                bpm: self.tempo(),
                playing: self.playing.load(Relaxed),
            };
            fence(Acquire);
            if self.transport_seq.load(Relaxed) == s1 {
                return r;
            }
        }
    }

    /// The program a program change selected on channel `ch` (0-based), if any.
    pub fn program_of(&self, ch: usize) -> Option<u8> {
        let p = self.programs[ch].load(Relaxed);
        (p != NO_PROGRAM).then_some(p as u8)
    }

    /// The pitch bend of channel `ch` (0-based), -8192..=8191.
    pub fn bend_of(&self, ch: usize) -> i16 {
        self.bends[ch].load(Relaxed) as i32 as i16
    }

    /// The expression (CC11) gain of channel `ch` (0-based).
    pub fn expression_of(&self, ch: usize) -> f32 {
        f32::from_bits(self.expression[ch].load(Relaxed))
    }

    /// What MIDI has set on each channel (those it has left alone are left out).
    pub fn channel_midi(&self) -> Vec<ChannelMidi> {
        (0..MAX_CHANNELS)
            .map(|ch| ChannelMidi {
                channel: ch as u8,
                knobs: Param::ALL.iter().filter_map(|p| self.override_of(ch, *p).map(|v| (*p, v))).collect(),
                program: self.program_of(ch),
                bend: self.bend_of(ch),
                pedal: self.pedals[ch].load(Relaxed),
                expression: self.expression_of(ch),
            })
            .filter(|m| !m.is_untouched())
            .collect()
    }

    /// The incoming MIDI clock's tempo, if a clock has been seen.
    pub fn clock_tempo(&self) -> Option<f64> {
        let t = f64::from_bits(self.clock_tempo_bits.load(Relaxed));
        (t > 0.0).then_some(t)
    }

    /// Takes (and resets) a channel's peak level.
    pub fn take_peak(&self, ch: usize) -> f32 {
        f32::from_bits(self.peaks[ch].swap(0, Relaxed))
    }

    pub fn take_master_peak(&self) -> f32 {
        f32::from_bits(self.master_peak.swap(0, Relaxed))
    }
}

/// The engine's ends of the channels to the control side.
pub struct EnginePorts {
    pub snapshots: rtrb::Consumer<Box<Snapshot>>,
    pub trash: rtrb::Producer<Garbage>,
    pub events: Arc<ArrayQueue<Event>>,
    pub stats: Arc<EngineStats>,
}

/// The control side's ends.
pub struct ControlPorts {
    pub snapshots: rtrb::Producer<Box<Snapshot>>,
    pub trash: rtrb::Consumer<Garbage>,
    pub events: Arc<ArrayQueue<Event>>,
    pub stats: Arc<EngineStats>,
}

/// Creates the bounded channels between the control side and the engine.
pub fn ports() -> (ControlPorts, EnginePorts) {
    let (snap_tx, snap_rx) = rtrb::RingBuffer::new(SNAPSHOT_QUEUE_CAP);
    let (trash_tx, trash_rx) = rtrb::RingBuffer::new(TRASH_QUEUE_CAP);
    let events = Arc::new(ArrayQueue::new(EVENT_QUEUE_CAP));
    let stats = Arc::new(EngineStats::default());
    (
        ControlPorts { snapshots: snap_tx, trash: trash_rx, events: events.clone(), stats: stats.clone() },
        EnginePorts { snapshots: snap_rx, trash: trash_tx, events, stats },
    )
}

/// Per-channel engine state. It outlives snapshots: a channel keeps its bus (and
/// tails) and its CC positions across swaps.
struct ChannelState {
    /// The channel as the current snapshot has it; `None` if not in the rig.
    config: Option<ChannelConfig>,
    /// Parameters of the last configuration, kept for the tail of a removed channel.
    last: ParamValues,
    /// Values set by CC (NaN = none): they hold until the set changes that parameter.
    overrides: [f32; NUM_PARAMS],
    target: ParamValues,
    /// Voice parameters, glided (voices read these).
    now: ParamValues,
    glides: [Glide; NUM_PARAMS],
    bend: Glide,
    bend_raw: i16,
    pedal: bool,
    /// Expression (CC11) as a gain on the channel's volume, 0..=1.
    expression: f32,
    /// The program selected by a program change (until the set changes the channel's instrument).
    program: Option<u8>,
    bus: Bus,
    input: ChannelInput,
    /// Controllers that sample voices follow (expression, sends, mod wheel, pressure).
    controls: sampler::ChannelControls,
    /// Registered parameter selected by CC101/CC100 (127/127: none).
    rpn: (u8, u8),
    /// Pitch-bend range set through RPN 0, in semitones (over the set's bend_range).
    rpn_bend_range: Option<f32>,
    /// Bank selected by CC0, for program changes on sampled channels.
    bank_select: u16,
    quiet_ticks: u32,
    idle: bool,
    /// Keys down on the channel, oldest first (for legato's return to a held key).
    keys: KeyStack,
    /// The pitch of the last note started (where a glide starts from).
    last_pitch: Option<f64>,
}

/// Keys held on a channel, in the order they went down; a fixed capacity (the
/// oldest is forgotten when full).
#[derive(Clone, Copy)]
struct KeyStack {
    keys: [u8; KEY_STACK],
    len: usize,
}

/// Keys a channel remembers for legato.
const KEY_STACK: usize = 16;

impl KeyStack {
    fn push(&mut self, note: u8) {
        self.remove(note);
        if self.len == KEY_STACK {
            self.keys.copy_within(1.., 0);
            self.len -= 1;
        }
        self.keys[self.len] = note;
        self.len += 1;
    }

    fn remove(&mut self, note: u8) {
        if let Some(i) = self.keys[..self.len].iter().position(|&k| k == note) {
            self.keys.copy_within(i + 1..self.len, i);
            self.len -= 1;
        }
    }

    fn last(&self) -> Option<u8> {
        self.len.checked_sub(1).map(|i| self.keys[i])
    }
}

impl ChannelState {
    fn new(sr: f32) -> Self {
        let d = ParamValues::default();
        ChannelState {
            config: None,
            last: d,
            overrides: [f32::NAN; NUM_PARAMS],
            target: d,
            now: d,
            glides: std::array::from_fn(|i| Glide::new(d.0[i], TICK_FRAMES, sr)),
            bend: Glide::with_time(0.0, BEND_GLIDE_SECONDS, TICK_FRAMES, sr),
            bend_raw: 0,
            pedal: false,
            expression: 1.0,
            program: None,
            bus: Bus::new(sr, TICK_FRAMES),
            input: ChannelInput::default(),
            controls: sampler::ChannelControls::default(),
            rpn: (127, 127),
            rpn_bend_range: None,
            bank_select: 0,
            quiet_ticks: 0,
            idle: true,
            keys: KeyStack { keys: [0; KEY_STACK], len: 0 },
            last_pitch: None,
        }
    }

    fn update_target(&mut self) {
        let base = self.config.as_ref().map(|c| &c.params).unwrap_or(&self.last);
        for i in 0..NUM_PARAMS {
            let o = self.overrides[i];
            self.target.0[i] = if o.is_nan() { base.0[i] } else { o };
        }
        self.target.0[Param::Volume as usize] *= self.expression;
    }

    fn bend_target(&self) -> f32 {
        let range = self.rpn_bend_range.unwrap_or(self.target.get(Param::BendRange));
        self.bend_raw as f32 / 8192.0 * range
    }

    /// Steps voice parameters and pitch bend one tick.
    fn step_voice_params(&mut self, voice_params: &[usize]) {
        for &i in voice_params {
            self.glides[i].step(self.target.0[i], TICK_FRAMES);
            self.now.0[i] = self.glides[i].value();
        }
        let b = self.bend_target();
        self.bend.step(b, TICK_FRAMES);
    }

    /// Jumps every glide to its target (nothing is sounding to glide from).
    fn snap(&mut self) {
        for i in 0..NUM_PARAMS {
            self.glides[i].reset(self.target.0[i]);
            self.now.0[i] = self.target.0[i];
        }
        self.bend.reset(self.bend_target());
        self.bus.snap(&self.target);
    }
}

struct Master {
    gain: Glide,
    limiter_gain: f32,
    release: f32,
    ceiling: f32,
}

impl Master {
    fn new(sr: f32) -> Self {
        Master {
            gain: Glide::new(1.0, TICK_FRAMES, sr),
            limiter_gain: 1.0,
            release: 1.0 - (-1.0 / (LIMITER_RELEASE_SECONDS * sr)).exp(),
            ceiling: db_to_gain(LIMITER_CEILING_DB),
        }
    }

    fn process(&mut self, cfg: &MasterConfig, l: &mut [f32], r: &mut [f32]) {
        let n = l.len();
        let (g0, gd) = self.gain.step(cfg.gain, n);
        if !l.iter().chain(r.iter()).all(|x| x.is_finite()) {
            l.fill(0.0);
            r.fill(0.0);
        }
        match cfg.mode {
            MasterMode::SoftClip => {
                for i in 0..n {
                    let g = g0 + gd * (i as i32 + 1) as f32;
                    l[i] = fast_tanh(l[i] * g).clamp(-1.0, 1.0);
                    r[i] = fast_tanh(r[i] * g).clamp(-1.0, 1.0);
                }
            }
            MasterMode::Limiter => {
                for i in 0..n {
                    let g = g0 + gd * (i as i32 + 1) as f32;
                    let (a, b) = (l[i] * g, r[i] * g);
                    let peak = a.abs().max(b.abs());
                    let want = if peak > self.ceiling { self.ceiling / peak } else { 1.0 };
                    if want < self.limiter_gain {
                        self.limiter_gain = want;
                    } else {
                        self.limiter_gain += (want - self.limiter_gain) * self.release;
                    }
                    l[i] = (a * self.limiter_gain).clamp(-1.0, 1.0);
                    r[i] = (b * self.limiter_gain).clamp(-1.0, 1.0);
                }
            }
        }
    }
}

/// A channel playing a program's instrument, keeping the channel's volume and pan.
fn with_program(channel: ChannelConfig, program: ChannelConfig) -> ChannelConfig {
    let mut c = program;
    c.params.set(Param::Volume, channel.params.get(Param::Volume));
    c.params.set(Param::Pan, channel.params.get(Param::Pan));
    c.voice_limit = channel.voice_limit;
    c
}

/// Where an external channel's messages go (`None`: the channel is not external).
fn out_target(c: &ChannelConfig, sample_rate: f32) -> Option<OutTarget> {
    match c.source {
        Source::External { channel, latency_ms } => Some(OutTarget {
            channel: channel & 15,
            lead_frames: (latency_ms.max(0.0) * sample_rate / 1000.0).round() as u32,
        }),
        _ => None,
    }
}

/// A window after jamrig's own clock Start in which a Start arriving on MIDI in is
/// that Start come back (a device echoes the clock), in seconds.
const CLOCK_LOOP_WINDOW_S: f64 = 0.5;

/// An event ordered within a tick: by frame, then by arrival.
#[derive(Clone, Copy)]
struct Queued {
    seq: u64,
    ev: Event,
    /// From outside the engine (captured), not made by it.
    external: bool,
}

/// Collects what the sequencer emits during one tick.
struct TickSink<'a> {
    events: &'a mut Vec<Queued>,
    note_offs: &'a mut Vec<Event>,
    seq: &'a mut u64,
    hits_left: &'a mut usize,
    stats: &'a EngineStats,
}

impl Sink for TickSink<'_> {
    fn hit(&mut self, frame: u64, channel: u8, note: u8, velocity: u8, off: Option<Event>) -> bool {
        if *self.hits_left == 0 {
            return false;
        }
        if let Some(off) = off
            && !add_note_off(self.note_offs, off)
        {
            // A note that could not be ended is not started.
            self.stats.note_offs_overflow.fetch_add(1, Relaxed);
            return true;
        }
        *self.hits_left -= 1;
        let ev = Event::new(frame, EventKind::NoteOn { channel, note, velocity });
        push_bounded(self.events, Queued { seq: *self.seq, ev, external: false }, &self.stats.hits_overflow);
        *self.seq += 1;
        true
    }

    fn skipped(&mut self) {
        self.stats.hits_overflow.fetch_add(1, Relaxed);
    }
}

/// Adds a pattern note-off. When the list is full, a pending note-off of the same
/// key takes the later frame instead (one note-off releases every voice of a key).
fn add_note_off(note_offs: &mut Vec<Event>, off: Event) -> bool {
    if note_offs.len() < note_offs.capacity() {
        note_offs.push(off);
        return true;
    }
    match note_offs.iter_mut().find(|e| e.kind == off.kind) {
        Some(e) => {
            e.frame = e.frame.max(off.frame);
            true
        }
        None => false,
    }
}

/// How much an event matters when the engine must drop some: note-offs and
/// transport messages most (a lost one leaves a note hanging or the clock wrong),
/// then controller values, then note-ons and the rest.
fn rank(k: &EventKind) -> u8 {
    match k {
        EventKind::NoteOn { .. } | EventKind::PitchBend { .. } | EventKind::Pressure { .. } => 0,
        EventKind::Program { .. } => 0,
        EventKind::Control { .. } | EventKind::Param { .. } => 1,
        _ => 2,
    }
}

/// Hands `g` to the control side to be freed: the trash queue, else the stash (sent
/// on later), else leaked and counted. Never frees on this thread.
fn retire_into(trash: &mut rtrb::Producer<Garbage>, stash: &mut Vec<Garbage>, stats: &EngineStats, g: Garbage) {
    if let Err(rtrb::PushError::Full(g)) = trash.push(g) {
        if stash.len() < stash.capacity() {
            stash.push(g);
        } else {
            stats.trash_overflow.fetch_add(1, Relaxed);
            std::mem::forget(g);
        }
    }
}

/// Pushes within the vector's preallocated capacity, counting overflow instead.
#[inline]
fn push_bounded<T>(v: &mut Vec<T>, item: T, overflow: &AtomicU64) {
    if v.len() < v.capacity() {
        v.push(item);
    } else {
        overflow.fetch_add(1, Relaxed);
    }
}

pub struct Engine {
    sr: f32,
    tables: Arc<Tables>,
    snapshot: Box<Snapshot>,
    ports: EnginePorts,
    trash_stash: Vec<Garbage>,
    future: Vec<Queued>,
    tick_events: Vec<Queued>,
    note_offs: Vec<Event>,
    seq: u64,
    /// Pattern hits the current tick may still play.
    hits_left: usize,
    voices: Vec<Voice>,
    /// Slots of sounding voices, in pitch order.
    active: Vec<u16>,
    /// Free slots.
    free: Vec<u16>,
    serial: u64,
    channels: Vec<ChannelState>,
    /// Indices of the voice-scope parameters.
    voice_params: Vec<usize>,
    transport: Transport,
    /// Reads MIDI clock whatever the source (so switching to it is seamless).
    follower: ClockFollower,
    /// The newest external session timeline (Link), from the audio callback.
    timeline: Option<ExternalTimeline>,
    /// Where a session capture is told what shaped the sound, if one runs.
    capture: Option<Arc<tap::CaptureTap>>,
    /// The timeline last told to the capture.
    captured_timeline: Option<ExternalTimeline>,
    /// Where a recording takes the channel events played, if one is wired.
    record: Option<Arc<crate::capture::recorder::RecordTap>>,
    /// MIDI out: external channels and the clock.
    midi_out: MidiOut,
    /// Clock out is on (the snapshot's, unless refused for a loop).
    clock_out: bool,
    sequencer: Sequencer,
    master: Master,
    /// First frame of the next tick.
    frame: u64,
    fifo: [f32; 2 * TICK_FRAMES],
    fifo_pos: usize,
    wave: [f32; TICK_FRAMES],
    env: [f32; TICK_FRAMES],
    mix_l: [f32; TICK_FRAMES],
    mix_r: [f32; TICK_FRAMES],
    bus_l: [f32; TICK_FRAMES],
    bus_r: [f32; TICK_FRAMES],
    idle_ticks: u32,
    /// The sample banks held, and the current snapshot's banks' slots.
    banks: banks::BankSlots,
    /// Reverbs and choruses the sample voices' sends share.
    sends: sends::Sends,
    bank_map: [u8; banks::MAX_SNAPSHOT_BANKS],
}

impl Engine {
    /// Builds an engine playing `initial`, allocating every buffer it will use.
    /// Control side.
    pub fn new(sample_rate: f32, tables: Arc<Tables>, initial: Snapshot, ports: EnginePorts) -> Self {
        let line_len = synth::line_len(sample_rate);
        let mut e = Engine {
            sr: sample_rate,
            tables,
            snapshot: Box::new(Snapshot::default()),
            ports,
            trash_stash: Vec::with_capacity(TRASH_QUEUE_CAP),
            future: Vec::with_capacity(EVENT_QUEUE_CAP),
            tick_events: Vec::with_capacity(TICK_EVENT_CAP),
            note_offs: Vec::with_capacity(NOTE_OFF_CAP),
            seq: 0,
            hits_left: MAX_TICK_HITS,
            voices: (0..MAX_VOICES + STEAL_RESERVE).map(|_| Voice::new(line_len)).collect(),
            active: Vec::with_capacity(MAX_VOICES + STEAL_RESERVE),
            free: (0..(MAX_VOICES + STEAL_RESERVE) as u16).rev().collect(),
            serial: 0,
            voice_params: Param::ALL.iter().filter(|p| p.info().scope == Scope::Voice).map(|p| *p as usize).collect(),
            channels: (0..MAX_CHANNELS).map(|_| ChannelState::new(sample_rate)).collect(),
            transport: Transport::new(sample_rate as f64, initial.tempo_bpm),
            follower: ClockFollower::new(sample_rate as f64),
            timeline: None,
            capture: None,
            captured_timeline: None,
            record: None,
            midi_out: MidiOut::default(),
            clock_out: false,
            sequencer: Sequencer::default(),
            master: Master::new(sample_rate),
            frame: 0,
            fifo: [0.0; 2 * TICK_FRAMES],
            fifo_pos: TICK_FRAMES,
            wave: [0.0; TICK_FRAMES],
            env: [0.0; TICK_FRAMES],
            mix_l: [0.0; TICK_FRAMES],
            mix_r: [0.0; TICK_FRAMES],
            bus_l: [0.0; TICK_FRAMES],
            bus_r: [0.0; TICK_FRAMES],
            idle_ticks: (IDLE_SECONDS * sample_rate / TICK_FRAMES as f32) as u32,
            banks: banks::BankSlots::default(),
            sends: sends::Sends::new(sample_rate),
            bank_map: [banks::NO_SLOT; banks::MAX_SNAPSHOT_BANKS],
        };
        let autoplay = initial.autoplay && initial.sync == SyncMode::Internal;
        let placeholder = e.adopt(Box::new(initial));
        drop(placeholder); // control side: freeing here is fine
        if autoplay {
            e.transport.start(0);
        }
        e.publish_transport();
        e
    }

    pub fn sample_rate(&self) -> f32 {
        self.sr
    }

    /// The frame the next tick starts at (frames rendered so far, in whole ticks).
    pub fn frame(&self) -> u64 {
        self.frame
    }

    /// Frames handed out by `process` so far.
    pub fn frames_out(&self) -> u64 {
        self.frame - (TICK_FRAMES - self.fifo_pos) as u64
    }

    pub fn stats(&self) -> &Arc<EngineStats> {
        &self.ports.stats
    }

    pub fn transport(&self) -> &Transport {
        &self.transport
    }

    /// Schedules an event directly (the offline renderer, on the engine's own
    /// thread). Audio thread: no allocation. Past [`Engine::room`], events are
    /// dropped by rank and counted (see [`EngineStats::events_overflow`]).
    pub fn schedule(&mut self, ev: Event) {
        self.admit(ev);
    }

    /// Events that can still be scheduled without dropping any.
    pub fn room(&self) -> usize {
        self.future.capacity() - self.future.len()
    }

    /// Whether the next `process` call starts a new tick (the renderer hands over
    /// a tick's events here).
    pub fn at_tick_start(&self) -> bool {
        self.fifo_pos == TICK_FRAMES
    }

    /// Frames until the next tick starts (a whole tick at a tick start).
    pub fn frames_to_tick_end(&self) -> usize {
        if self.fifo_pos == TICK_FRAMES { TICK_FRAMES } else { TICK_FRAMES - self.fifo_pos }
    }

    /// Takes an event into the waiting list. When the list is full the event that
    /// matters least goes: an older value of the same controller, else the newest
    /// event of a lower rank (see [`rank`]), else this one. Counted either way.
    fn admit(&mut self, ev: Event) {
        if self.future.len() == self.future.capacity() {
            let stats = &self.ports.stats;
            stats.events_overflow.fetch_add(1, Relaxed);
            let same_cc = match ev.kind {
                EventKind::Control { channel, cc, .. } => self.future.iter().rposition(
                    |q| matches!(q.ev.kind, EventKind::Control { channel: c, cc: k, .. } if c == channel && k == cc),
                ),
                _ => None,
            };
            let r = rank(&ev.kind);
            // The lowest rank goes first, and within it the newest.
            let victim = same_cc.or_else(|| {
                (0..self.future.len())
                    .filter(|&i| rank(&self.future[i].ev.kind) < r)
                    .min_by_key(|&i| (rank(&self.future[i].ev.kind), std::cmp::Reverse(self.future[i].seq)))
            });
            match victim {
                Some(i) => {
                    self.future.swap_remove(i);
                }
                None => return,
            }
        }
        self.future.push(Queued { seq: self.seq, ev, external: true });
        self.seq += 1;
    }

    /// Hands the engine an external session's timeline (Ableton Link), captured by
    /// the audio callback just before [`Engine::process`]. Used while the set's
    /// sync mode is Link. Audio thread.
    pub fn follow_timeline(&mut self, timeline: ExternalTimeline) {
        self.timeline = Some(timeline);
    }

    /// The audio device has just reported an overrun: what the engine renders is
    /// now heard later than before (cycles it did not render were played as
    /// silence), by `moved` frames when the host measured it. The MIDI clock
    /// follower moves its fit to the new frame line: by `moved`, or else at the
    /// next tick. Audio thread.
    pub fn after_overrun(&mut self, moved: Option<i64>) {
        match moved {
            // Cycles it did not render: the line moves ahead by whole cycles.
            Some(frames) if frames > 0 => self.follower.move_line(-frames as f64),
            Some(_) => {}
            None => self.follower.rebase_next(),
        }
    }

    /// Tells `tap` from now on what shapes the sound (a session capture). Control
    /// side, before the engine starts.
    pub fn capture_into(&mut self, tap: Arc<tap::CaptureTap>) {
        self.capture = Some(tap);
    }

    /// Offers `tap` every channel event as it is played (it keeps them while
    /// recording). Control side, before the engine starts.
    pub fn record_into(&mut self, tap: Arc<crate::capture::recorder::RecordTap>) {
        self.record = Some(tap);
    }

    /// Sends what external channels play, and the MIDI clock, into `tx` (the MIDI
    /// output's queue). Control side, before the engine starts.
    pub fn midi_out_into(&mut self, tx: midi_out::OutQueue) {
        self.midi_out.connect(tx);
    }

    /// The sync mode of the running snapshot.
    pub fn sync_mode(&self) -> SyncMode {
        self.snapshot.sync
    }

    /// Fills `out` (interleaved, `out_channels` per frame) with the next frames, with
    /// denormals flushed to zero for the call. Audio thread.
    pub fn process(&mut self, out: &mut [f32], out_channels: usize) {
        // Decaying tails would otherwise sink into slow denormal arithmetic.
        let _ftz = denormal::FlushDenormals::enter();
        let chans = out_channels.max(1);
        let mut rest = out;
        while !rest.is_empty() {
            if self.fifo_pos == TICK_FRAMES {
                self.render_tick();
                self.fifo_pos = 0;
            }
            let n = (TICK_FRAMES - self.fifo_pos).min(rest.len() / chans);
            if n == 0 {
                rest.fill(0.0);
                break;
            }
            let (now, later) = rest.split_at_mut(n * chans);
            let src = &self.fifo[2 * self.fifo_pos..2 * (self.fifo_pos + n)];
            match chans {
                2 => now.copy_from_slice(src),
                1 => {
                    for (o, lr) in now.iter_mut().zip(src.chunks_exact(2)) {
                        *o = 0.5 * (lr[0] + lr[1]);
                    }
                }
                _ => {
                    for (frame, lr) in now.chunks_exact_mut(chans).zip(src.chunks_exact(2)) {
                        frame[..2].copy_from_slice(lr);
                        frame[2..].fill(0.0);
                    }
                }
            }
            self.fifo_pos += n;
            rest = later;
        }
    }

    fn retire(&mut self, g: Garbage) {
        retire_into(&mut self.ports.trash, &mut self.trash_stash, &self.ports.stats, g);
    }

    fn flush_stash(&mut self) {
        while let Some(g) = self.trash_stash.pop() {
            if let Err(rtrb::PushError::Full(g)) = self.ports.trash.push(g) {
                self.trash_stash.push(g);
                break;
            }
        }
    }

    /// Takes the newest published snapshot, if any.
    fn receive_snapshots(&mut self) {
        self.flush_stash();
        while let Ok(next) = self.ports.snapshots.pop() {
            let old = self.adopt(next);
            if let Some(tap) = &self.capture {
                tap.push(tap::Captured::Adopted { serial: self.snapshot.serial, frame: self.frame });
            }
            self.retire(Garbage::Snapshot(old));
            self.ports.stats.snapshots_adopted.fetch_add(1, Relaxed);
        }
    }

    /// Switches to `next` following the reload rules: unchanged channels are left
    /// alone, changed parameters glide, a changed instrument keeps sounding notes on
    /// the old one, a removed channel releases its voices, patterns switch at the
    /// next bar, tempo changes at once.
    /// Returns the snapshot it replaces.
    fn adopt(&mut self, mut next: Box<Snapshot>) -> Box<Snapshot> {
        let frame = self.frame;
        for ch in 0..MAX_CHANNELS {
            let old = self.channels[ch].config;
            let new = next.channels[ch];
            // An external channel removed, or sent elsewhere: its device's notes end.
            let was_out = old.and_then(|c| out_target(&c, self.sr));
            if was_out.is_some() && was_out != new.and_then(|c| out_target(&c, self.sr)) {
                self.midi_out.release(frame, ch);
            }
            match (old, new) {
                (Some(o), Some(n)) => {
                    let st = &mut self.channels[ch];
                    for i in 0..NUM_PARAMS {
                        if o.params.0[i] != n.params.0[i] {
                            st.overrides[i] = f32::NAN;
                            self.ports.stats.overrides[ch][i].store(f32::NAN.to_bits(), Relaxed);
                        }
                    }
                    let set_changed_instrument = self.snapshot.channels[ch]
                        .is_some_and(|prev| prev.instrument_id != n.instrument_id || prev.source != n.source);
                    let mut n = n;
                    match st.program {
                        Some(p) if !set_changed_instrument => {
                            if let Source::Sampled { .. } = n.source {
                                // Resolved after the banks are taken (below).
                            } else if let Some(prog) = next.programs[p as usize] {
                                n = with_program(n, prog);
                            }
                        }
                        _ => {
                            st.program = None;
                            self.ports.stats.programs[ch].store(NO_PROGRAM, Relaxed);
                        }
                    }
                    if o.instrument_id != n.instrument_id || o.source != n.source {
                        let now = st.now;
                        for v in self.voices.iter_mut().filter(|v| v.active && v.channel as usize == ch) {
                            if v.frozen.is_none() && v.instrument_id == o.instrument_id {
                                v.frozen = Some(now);
                            }
                        }
                    }
                    st.config = Some(n);
                }
                (None, Some(n)) => {
                    let st = &mut self.channels[ch];
                    st.overrides = [f32::NAN; NUM_PARAMS];
                    st.program = None;
                    self.ports.stats.programs[ch].store(NO_PROGRAM, Relaxed);
                    for o in &self.ports.stats.overrides[ch] {
                        o.store(f32::NAN.to_bits(), Relaxed);
                    }
                    st.config = Some(n);
                    st.last = n.params;
                    if st.idle {
                        st.update_target();
                        st.snap();
                    }
                }
                (Some(o), None) => {
                    let st = &mut self.channels[ch];
                    st.last = o.params;
                    st.config = None;
                    let (params, sr) = (st.target, self.sr);
                    for v in self.voices.iter_mut().filter(|v| v.active && v.channel as usize == ch) {
                        v.release(&params, sr);
                    }
                }
                (None, None) => {}
            }
            if let Some(c) = self.channels[ch].config {
                self.channels[ch].last = c.params;
            }
        }
        if next.clock_out != self.snapshot.clock_out || !next.clock_out {
            self.ports.stats.clock_out_looped.store(false, Relaxed);
        }
        self.clock_out = next.clock_out && !self.ports.stats.clock_out_looped.load(Relaxed);
        {
            let (trash, stash, stats) = (&mut self.ports.trash, &mut self.trash_stash, &self.ports.stats);
            let missing = self
                .banks
                .adopt(&next.banks, &mut self.bank_map, |b| retire_into(trash, stash, stats, Garbage::Bank(b)));
            stats.banks_overflow.fetch_add(missing as u64, Relaxed);
            stats.banks_held.store(self.banks.held() as u32, Relaxed);
        }
        for ch in 0..MAX_CHANNELS {
            let st = &self.channels[ch];
            if let (Some(p), Some(n)) = (st.program, next.channels[ch])
                && let Source::Sampled { .. } = n.source
            {
                // A program change outlives a reload that keeps the channel's preset.
                if let Some(sel) = self.sampled_program(n, st.bank_select, p) {
                    self.channels[ch].config = Some(sel);
                }
            }
        }
        if next.sync != self.snapshot.sync {
            self.switch_sync(frame, next.sync, next.tempo_bpm);
        } else if next.tempo_bpm != self.snapshot.tempo_bpm && next.sync == SyncMode::Internal {
            self.transport.set_tempo(frame, next.tempo_bpm);
        }
        if let Some(p) = next.patterns.take() {
            let same = self.sequencer.current().is_some_and(|c| Arc::ptr_eq(c, &p));
            if same {
                self.retire(Garbage::Patterns(p));
                if let Some(queued) = self.sequencer.cancel_pending() {
                    self.retire(Garbage::Patterns(queued));
                }
            } else {
                for old in self.sequencer.replace(p, &self.transport, frame, next.beats_per_bar).into_iter().flatten() {
                    self.retire(Garbage::Patterns(old));
                }
            }
        }
        std::mem::replace(&mut self.snapshot, next)
    }

    /// Moves events due before `end` from the queue and the waiting lists into
    /// `tick_events`.
    fn gather_events(&mut self, start: u64, end: u64) {
        while let Some(ev) = self.ports.events.pop() {
            self.admit(ev);
        }
        self.tick_events.clear();
        self.hits_left = MAX_TICK_HITS;
        let stats = &self.ports.stats;
        let late = |mut q: Queued| {
            if q.ev.frame < start {
                stats.events_late.fetch_add(1, Relaxed);
                q.ev.frame = start;
            }
            q
        };
        let due = self.future.iter().filter(|q| q.ev.frame < end).count();
        if due > MAX_TICK_EVENTS {
            // More than a tick plays: the earliest now, the rest in the next ticks.
            self.future.sort_unstable_by_key(|q| (q.ev.frame, q.seq));
            self.tick_events.extend(self.future.drain(..MAX_TICK_EVENTS).map(late));
        } else {
            let mut i = 0;
            while i < self.future.len() {
                if self.future[i].ev.frame < end {
                    self.tick_events.push(late(self.future.swap_remove(i)));
                } else {
                    i += 1;
                }
            }
        }
        self.take_due_note_offs(end, MAX_TICK_EVENTS + MAX_TICK_NOTE_OFFS);
    }

    /// Moves pattern note-offs due before `end` into the tick, while it has fewer
    /// than `limit` events (the rest wait for the next tick).
    fn take_due_note_offs(&mut self, end: u64, limit: usize) {
        let mut i = 0;
        while i < self.note_offs.len() && self.tick_events.len() < limit.min(TICK_EVENT_CAP) {
            if self.note_offs[i].frame < end {
                let ev = self.note_offs.swap_remove(i);
                self.tick_events.push(Queued { seq: self.seq, ev, external: false });
                self.seq += 1;
            } else {
                i += 1;
            }
        }
    }

    fn sort_tick_events(&mut self) {
        self.tick_events.sort_unstable_by_key(|q| (q.ev.frame, q.seq));
    }

    fn is_transport_event(k: &EventKind) -> bool {
        matches!(
            k,
            EventKind::Start
                | EventKind::Stop
                | EventKind::Continue
                | EventKind::Tempo(_)
                | EventKind::Panic
                | EventKind::Clock
                | EventKind::ClockStart
                | EventKind::ClockStop
                | EventKind::ClockContinue
                | EventKind::SongPosition(_)
                | EventKind::Launch { .. }
        )
    }

    /// Changes where the transport takes its time from, at `frame`, without a
    /// jump: the beat carries on where it is.
    fn switch_sync(&mut self, frame: u64, to: SyncMode, set_tempo: f64) {
        match to {
            SyncMode::Internal => {
                self.follower.release();
                self.transport.set_tempo(frame, set_tempo);
            }
            SyncMode::Midi => {
                if self.transport.is_playing() && !self.follower.is_running() {
                    self.follower.adopt_running(self.transport.beat_at(frame));
                }
            }
            SyncMode::Link { .. } => self.follower.release(),
        }
        if !matches!(to, SyncMode::Link { .. }) {
            // A later return to Link waits for a fresh timeline.
            self.timeline = None;
            self.captured_timeline = None;
        }
    }

    /// Follows the Link session over the tick starting at `start`: the beat and
    /// tempo at the tick's first frame, start at the next quantum when the
    /// session starts, stop when it stops.
    fn follow_link(&mut self, start: u64, end: u64) {
        let (SyncMode::Link { quantum }, Some(tl)) = (self.snapshot.sync, self.timeline) else {
            return;
        };
        if !(tl.bpm > 0.0 && tl.beat.is_finite()) {
            return;
        }
        if let Some(tap) = &self.capture
            && self.captured_timeline != Some(tl)
        {
            tap.push(tap::Captured::Timeline { frame: start, timeline: tl });
            self.captured_timeline = Some(tl);
        }
        let sr = self.sr as f64;
        let target = tl.beat_at(start, sr);
        let playing = self.transport.is_playing();
        if playing && tl.playing {
            self.transport.follow(start, target, tl.bpm, LINK_HORIZON_BEATS, JUMP_BEATS);
        } else if playing {
            self.stop_transport(start);
        } else {
            self.transport.follow(start, target, tl.bpm, LINK_HORIZON_BEATS, JUMP_BEATS);
            if tl.playing {
                // Land on the session's next bar line (its quantum).
                let q = quantum.max(1e-3);
                let next = (target / q - 1e-9).ceil() * q;
                let fpb = 60.0 * sr / tl.bpm;
                let at = start + ((next - target) * fpb).ceil().max(0.0) as u64;
                if at < end {
                    let ev = Event::new(at, EventKind::Launch { beat: next });
                    push_bounded(
                        &mut self.tick_events,
                        Queued { seq: self.seq, ev, external: false },
                        &self.ports.stats.events_overflow,
                    );
                    self.seq += 1;
                }
            }
        }
    }

    /// Runs the sequencer over `[a, b)`.
    fn sequence(&mut self, a: u64, b: u64) {
        if self.clock_out || self.midi_out.clock_running {
            self.clock_reconcile(a);
            if b > a {
                let t = &self.transport;
                self.midi_out.clock_ticks(a, b, t.beat_at(a), |beat| t.frame_at(beat));
            }
        }
        let mut sink = TickSink {
            events: &mut self.tick_events,
            note_offs: &mut self.note_offs,
            seq: &mut self.seq,
            hits_left: &mut self.hits_left,
            stats: &self.ports.stats,
        };
        if let Some(old) = self.sequencer.run(a, b, &self.transport, &mut sink) {
            self.retire(Garbage::Patterns(old));
        }
    }

    /// Applies a transport event at its frame. The sync source owns the transport:
    /// internal commands act only in internal mode, MIDI clock messages only in
    /// MIDI mode (the follower reads the clock in every mode).
    fn apply_transport(&mut self, ev: Event) {
        if matches!(ev.kind, EventKind::ClockStart | EventKind::ClockContinue) && self.clock_out_looped(ev.frame) {
            // jamrig's own Start, come back: never fed into clock in.
            self.ports.stats.clock_out_looped.store(true, Relaxed);
            self.clock_out = false;
            self.clock_reconcile(ev.frame);
            return;
        }
        let (was, beat_before) = (self.transport.is_playing(), self.transport.beat_at(ev.frame));
        self.apply_transport_event(ev);
        if self.midi_out.clock_running
            && was
            && self.transport.is_playing()
            && (self.transport.beat_at(ev.frame) - beat_before).abs() > 1.5 / midi_out::CLOCK_OUT_PPQN
        {
            // A relocation while playing: the clock's receivers go there too.
            self.midi_out.clock_stop(ev.frame);
        }
        self.clock_reconcile(ev.frame);
    }

    /// Whether a clock Start or Continue arriving at `frame` is jamrig's own, come
    /// back through a device.
    fn clock_out_looped(&self, frame: u64) -> bool {
        self.clock_out
            && self
                .midi_out
                .started_at
                .is_some_and(|at| frame >= at && ((frame - at) as f64) < CLOCK_LOOP_WINDOW_S * self.sr as f64)
    }

    /// Brings the clock out in line with the transport at `frame`: Start (or Song
    /// Position and Continue) when it plays and the clock does not, Stop when it
    /// has stopped or clock out was turned off. Audio thread.
    fn clock_reconcile(&mut self, frame: u64) {
        let playing = self.clock_out && self.transport.is_playing();
        if playing && !self.midi_out.clock_running {
            self.midi_out.clock_start(frame, self.transport.beat_at(frame));
        } else if !playing && self.midi_out.clock_running {
            self.midi_out.clock_stop(frame);
        }
    }

    fn apply_transport_event(&mut self, ev: Event) {
        let mode = self.snapshot.sync;
        let internal = mode == SyncMode::Internal;
        let midi = mode == SyncMode::Midi;
        match ev.kind {
            EventKind::Start if internal => self.transport.start(ev.frame),
            EventKind::Continue if internal => self.transport.resume(ev.frame),
            EventKind::Stop if internal => self.stop_transport(ev.frame),
            EventKind::Tempo(bpm) if internal => self.transport.set_tempo(ev.frame, bpm as f64),
            EventKind::Panic => {
                self.note_offs.clear();
            }
            EventKind::Clock
            | EventKind::ClockStart
            | EventKind::ClockContinue
            | EventKind::ClockStop
            | EventKind::SongPosition(_) => {
                let action = match ev.kind {
                    EventKind::ClockStart => self.follower.start(),
                    EventKind::ClockContinue => self.follower.resume(),
                    EventKind::ClockStop => self.follower.stop(),
                    EventKind::SongPosition(p) => self.follower.song_position(p),
                    _ => {
                        let action = self.follower.tick(ev.frame);
                        let stats = &self.ports.stats;
                        stats.clock_ticks.fetch_add(1, Relaxed);
                        if let Some(bpm) = self.follower.shown_tempo(ev.frame) {
                            stats.clock_tempo_bits.store(bpm.to_bits(), Relaxed);
                        }
                        action
                    }
                };
                if midi {
                    self.clock_action(ev.frame, action);
                }
            }
            EventKind::Launch { beat } => {
                let bpm = self.transport.tempo();
                self.transport.play_at(ev.frame, beat, bpm);
            }
            _ => {}
        }
    }

    fn stop_transport(&mut self, frame: u64) {
        self.transport.stop(frame);
        self.release_pattern_notes(frame);
        self.midi_out.release_all(frame);
    }

    /// Does what the MIDI clock follower asks, at `frame` (the message's frame).
    fn clock_action(&mut self, frame: u64, action: ClockAction) {
        let bpm_of = |fpb: f64, sr: f32| 60.0 * sr as f64 / fpb;
        match action {
            ClockAction::None => {}
            ClockAction::Stop => self.stop_transport(frame),
            ClockAction::Locate { beat } => {
                if self.transport.is_playing() {
                    self.stop_transport(frame);
                }
                self.transport.locate(frame, beat);
            }
            ClockAction::Play { frame: at, beat } => {
                // The tick's beat sits at its fitted frame; a tick that came later
                // than the fit says starts on its own frame instead, so that the
                // first beat is never passed over (the next ticks close the gap).
                let (target, bpm) = match self.follower.frames_per_beat() {
                    Some(fpb) => ((beat + (frame as f64 - at) / fpb).min(beat), bpm_of(fpb, self.sr)),
                    None => (beat, self.transport.tempo()),
                };
                self.transport.play_at(frame, target, bpm);
            }
            ClockAction::Rejoin { frame: at } => {
                if self.transport.is_playing() {
                    self.follower.rejoin_at(self.transport.beat_at(at.max(0.0).round() as u64));
                }
            }
            ClockAction::Follow { frame: at, beat, frames_per_beat } => {
                let target = beat + (frame as f64 - at) / frames_per_beat;
                let bpm = bpm_of(frames_per_beat, self.sr);
                self.transport.follow(frame, target, bpm, CLOCK_HORIZON_BEATS, JUMP_BEATS);
            }
        }
    }

    /// Stop releases the notes patterns are holding (at the stop frame).
    fn release_pattern_notes(&mut self, frame: u64) {
        for ev in self.note_offs.iter_mut() {
            ev.frame = frame;
        }
    }

    fn render_tick(&mut self) {
        let start = self.frame;
        let end = start + TICK_FRAMES as u64;
        self.receive_snapshots();
        self.gather_events(start, end);
        if self.follower.is_silent(start) {
            // The clock stopped coming: no tempo to show.
            self.ports.stats.clock_tempo_bits.store(0, Relaxed);
        }
        self.follow_link(start, end);
        self.sort_tick_events();
        if let Some(tap) = &self.capture {
            for q in self.tick_events.iter().filter(|q| q.external) {
                tap.push(tap::Captured::Event(q.ev));
            }
        }

        // Transport changes and the sequencer, at exact frames.
        let mut cursor = start;
        let n_ext = self.tick_events.len();
        for i in 0..n_ext {
            let q = self.tick_events[i];
            if Self::is_transport_event(&q.ev.kind) {
                self.sequence(cursor, q.ev.frame.max(cursor));
                cursor = q.ev.frame.max(cursor);
                self.apply_transport(q.ev);
            }
        }
        self.sequence(cursor, end);
        self.take_due_note_offs(end, TICK_EVENT_CAP);
        self.sort_tick_events();
        if let Some(tap) = &self.record {
            for q in &self.tick_events {
                tap.offer(q.ev, !q.external);
            }
        }

        for st in self.channels.iter_mut().filter(|st| !st.idle) {
            st.update_target();
            st.step_voice_params(&self.voice_params);
            st.input.clear();
        }

        // Voices, segment by segment between events.
        let mut offset = 0usize;
        for i in 0..self.tick_events.len() {
            let q = self.tick_events[i];
            let at = (q.ev.frame.saturating_sub(start) as usize).min(TICK_FRAMES);
            if at > offset {
                self.render_voices(offset, at);
                offset = at;
            }
            if !Self::is_transport_event(&q.ev.kind) {
                self.apply(q.ev);
            } else if q.ev.kind == EventKind::Panic {
                self.panic();
                self.midi_out.release_all(q.ev.frame.max(start));
            }
        }
        if offset < TICK_FRAMES {
            self.render_voices(offset, TICK_FRAMES);
        }

        self.mix_buses();
        self.frame = end;
        self.publish_transport();
        if self.midi_out.overflow > 0 {
            self.ports.stats.midi_out_overflow.fetch_add(std::mem::take(&mut self.midi_out.overflow), Relaxed);
        }
    }

    fn render_voices(&mut self, from: usize, to: usize) {
        let tables = &*self.tables;
        let mut scratch = Scratch { wave: &mut self.wave[..to - from], env: &mut self.env[..to - from] };
        let mut ended = false;
        for &slot in &self.active {
            let v = &mut self.voices[slot as usize];
            let st = &mut self.channels[v.channel as usize];
            let ctx = VoiceCtx {
                sample_rate: self.sr,
                tables,
                params: &st.now,
                bend: st.bend.value(),
                banks: &self.banks,
                controls: st.controls,
            };
            let input = &mut st.input;
            let out = VoiceOut {
                mono: &mut input.mono[from..to],
                left: &mut input.left[from..to],
                right: &mut input.right[from..to],
                chorus: &mut input.chorus[from..to],
                reverb: &mut input.reverb[from..to],
                stereo: &mut input.stereo,
                sent: &mut input.sent,
            };
            v.render(&ctx, &mut scratch, out);
            ended |= !v.active;
        }
        if ended {
            let voices = &self.voices;
            let free = &mut self.free;
            let banks = &mut self.banks;
            let trash = &mut self.ports.trash;
            let stash = &mut self.trash_stash;
            let stats = &self.ports.stats;
            self.active.retain(|&slot| {
                let v = &voices[slot as usize];
                let keep = v.active;
                if !keep {
                    free.push(slot);
                    if let VoiceSource::Sample { slot: b } = v.source {
                        banks.voice_ended(b, |bank| retire_into(trash, stash, stats, Garbage::Bank(bank)));
                    }
                }
                keep
            });
            stats.banks_held.store(self.banks.held() as u32, Relaxed);
        }
    }

    fn mix_buses(&mut self) {
        self.mix_l = [0.0; TICK_FRAMES];
        self.mix_r = [0.0; TICK_FRAMES];
        let mut counts = [0u32; MAX_CHANNELS];
        for &slot in &self.active {
            counts[self.voices[slot as usize].channel as usize] += 1;
        }
        let stats = &self.ports.stats;
        for (ch, st) in self.channels.iter_mut().enumerate() {
            stats.voices[ch].store(counts[ch], Relaxed);
            if counts[ch] == 0 && st.idle {
                continue;
            }
            st.idle = false;
            if st.input.sent
                && self.sends.feed(&st.target, st.target.get(Param::Volume), &st.input.reverb, &st.input.chorus)
            {
                // Shared send effects took them (see `sends`).
                st.input.reverb = [0.0; TICK_FRAMES];
                st.input.chorus = [0.0; TICK_FRAMES];
                st.input.sent = false;
            }
            st.bus.process(&st.input, &st.target, BusOut { left: &mut self.bus_l, right: &mut self.bus_r });
            let mut peak = 0.0f32;
            let mut finite = true;
            for i in 0..TICK_FRAMES {
                let (l, r) = (self.bus_l[i], self.bus_r[i]);
                finite &= l.is_finite() && r.is_finite();
                peak = peak.max(l.abs()).max(r.abs());
            }
            if !finite {
                stats.faults.fetch_add(1, Relaxed);
                st.bus.clear();
                continue;
            }
            for i in 0..TICK_FRAMES {
                self.mix_l[i] += self.bus_l[i];
                self.mix_r[i] += self.bus_r[i];
            }
            stats.peaks[ch].fetch_max(peak.to_bits(), Relaxed);
            if counts[ch] == 0 && peak < 1e-5 {
                st.quiet_ticks += 1;
                // Silence between echoes is not the end: wait longer than an echo period.
                if st.quiet_ticks >= self.idle_ticks
                    && st.quiet_ticks as f32 * TICK_FRAMES as f32 >= st.bus.silent_gap_seconds(&st.target) * self.sr
                {
                    st.idle = true;
                }
            } else {
                st.quiet_ticks = 0;
            }
        }
        self.sends.process(&mut self.mix_l, &mut self.mix_r);
        let master = self.snapshot.master;
        self.master.process(&master, &mut self.mix_l, &mut self.mix_r);
        let mut peak = 0.0f32;
        for i in 0..TICK_FRAMES {
            self.fifo[2 * i] = self.mix_l[i];
            self.fifo[2 * i + 1] = self.mix_r[i];
            peak = peak.max(self.mix_l[i].abs()).max(self.mix_r[i].abs());
        }
        stats.master_peak.fetch_max(peak.to_bits(), Relaxed);
    }

    fn publish_transport(&self) {
        use std::sync::atomic::{Ordering::Release, fence};
        let s = &self.ports.stats;
        s.transport_seq.fetch_add(1, Relaxed);
        fence(Release);
        s.frames.store(self.frame, Relaxed);
        s.playing.store(self.transport.is_playing(), Relaxed);
        s.tempo_bits.store(self.transport.tempo().to_bits(), Relaxed);
        s.beat_bits.store(self.transport.beat_at(self.frame).to_bits(), Relaxed);
        s.transport_seq.fetch_add(1, Release);
    }

    /// Applies a channel event.
    fn apply(&mut self, ev: Event) {
        if let Some(ch) = ev.kind.channel().map(|c| c as usize).filter(|&c| c < MAX_CHANNELS)
            && let Some(to) = self.channels[ch].config.and_then(|c| out_target(&c, self.sr))
        {
            self.external(ev, ch, to);
            return;
        }
        match ev.kind {
            EventKind::NoteOn { channel, note, velocity } => self.note_on(channel, note, velocity),
            EventKind::NoteOff { channel, note } => {
                let Some(st) = self.channels.get_mut(channel as usize) else {
                    return;
                };
                st.keys.remove(note);
                let (pedal, params, sr) = (st.pedal, st.target, self.sr);
                if params.get(Param::Legato) > 0.5
                    && let Some(back) = st.keys.last()
                {
                    // Legato: releasing the sounding key returns to the last one held.
                    let glide = st.now.get(Param::Glide);
                    if let Some(v) = self
                        .voices
                        .iter_mut()
                        .find(|v| v.active && v.channel == channel && v.note == note && v.held && v.steal_left == 0)
                    {
                        v.retarget(back, glide);
                        return;
                    }
                }
                for v in self.voices.iter_mut() {
                    if v.active && v.channel == channel && v.note == note && v.held {
                        v.key_up(pedal, &params, sr);
                    }
                }
            }
            EventKind::Control { channel, cc, value } => self.control(channel, cc, value),
            EventKind::Param { channel, param, value } => {
                let (ch, p) = (channel as usize, param as usize);
                if ch < MAX_CHANNELS && p < NUM_PARAMS && value.is_finite() {
                    self.channels[ch].overrides[p] = value;
                    self.ports.stats.overrides[ch][p].store(value.to_bits(), Relaxed);
                }
            }
            EventKind::PitchBend { channel, value } => {
                if let Some(st) = self.channels.get_mut(channel as usize) {
                    st.bend_raw = value.clamp(-8192, 8191);
                    self.ports.stats.bends[channel as usize].store(st.bend_raw as i32 as u32, Relaxed);
                }
            }
            EventKind::Program { channel, program } => self.program_change(channel, program),
            EventKind::Pressure { channel, value } => {
                if let Some(st) = self.channels.get_mut(channel as usize) {
                    st.controls.pressure = value;
                }
            }
            _ => {}
        }
    }

    /// Sends a channel event of an external channel to its device, at its frame.
    fn external(&mut self, ev: Event, ch: usize, to: OutTarget) {
        let frame = ev.frame.max(self.frame);
        let c = to.channel;
        let out = &mut self.midi_out;
        match ev.kind {
            EventKind::NoteOn { note, velocity, .. } => out.note_on(frame, ch, to, note, velocity),
            EventKind::NoteOff { note, .. } => out.note_off(frame, ch, note),
            EventKind::Control { cc, value, .. } => {
                out.channel_message(frame, ch, to, &[0xB0 | c, cc & 0x7F, value & 0x7F])
            }
            EventKind::PitchBend { value, .. } => {
                let raw = (value.clamp(-8192, 8191) + 8192) as u16;
                out.channel_message(frame, ch, to, &[0xE0 | c, (raw & 0x7F) as u8, (raw >> 7) as u8]);
            }
            EventKind::Program { program, .. } => out.channel_message(frame, ch, to, &[0xC0 | c, program & 0x7F]),
            EventKind::Pressure { value, .. } => out.channel_message(frame, ch, to, &[0xD0 | c, value & 0x7F]),
            _ => {}
        }
    }

    fn note_on(&mut self, channel: u8, note: u8, velocity: u8) {
        let ch = channel as usize;
        let Some(cfg) = self.channels.get(ch).and_then(|c| c.config) else {
            return;
        };
        let source = match cfg.source {
            Source::Synth(s) => VoiceSource::Synth(s),
            Source::Sampled { bank, preset } => {
                self.sample_note_on(channel, note, velocity, bank, preset, &cfg);
                return;
            }
            Source::Drums => {
                if let Some((bank, preset)) = self.snapshot.user_kit
                    && self.sample_note_on(channel, note, velocity, bank, preset, &cfg)
                {
                    return;
                }
                match self.tables.drums.notes.get(note as usize).copied().flatten() {
                    Some(sound) => {
                        // A closed or pedal hi-hat chokes the open one.
                        if matches!(note, 42 | 44) {
                            let sr = self.sr;
                            for v in self.voices.iter_mut().filter(|v| v.active && v.channel == channel && v.note == 46)
                            {
                                v.steal(sr);
                            }
                        }
                        VoiceSource::Drum { sound, pos: 0 }
                    }
                    None => return,
                }
            }
            Source::External { .. } => return,
        };
        let st = &mut self.channels[ch];
        let legato = matches!(source, VoiceSource::Synth(_)) && st.target.get(Param::Legato) > 0.5;
        let glide = st.now.get(Param::Glide);
        let glide_from = if glide > 0.0 { st.last_pitch } else { None };
        st.keys.push(note);
        if legato {
            // One voice per channel: a key pressed while another is held moves it.
            let (active, voices) = (&self.active, &mut self.voices);
            if let Some(&slot) = active.iter().find(|&&s| {
                let v = &voices[s as usize];
                v.active && v.channel == channel && v.held && v.steal_left == 0
            }) {
                let v = &mut voices[slot as usize];
                st.last_pitch = Some(note as f64);
                v.retarget(note, glide);
                return;
            }
        }
        if matches!(source, VoiceSource::Synth(_)) {
            st.last_pitch = Some(note as f64);
        }
        let slot = self.allocate_voice(channel, &cfg);
        self.start_voice(slot, channel, note, velocity, source, &cfg, glide_from);
    }

    /// Plays a note on a sampled preset: one voice per region the key and velocity
    /// fall in (layers), each cutting the voices of its exclusive class. Returns
    /// whether any region matched.
    fn sample_note_on(
        &mut self,
        channel: u8,
        note: u8,
        velocity: u8,
        bank: u8,
        preset: u16,
        cfg: &ChannelConfig,
    ) -> bool {
        let Some(&slot) = self.bank_map.get(bank as usize) else { return false };
        self.channels[channel as usize].keys.push(note);
        let first_serial = self.serial + 1;
        let mut started = false;
        for i in 0.. {
            let region = match self.banks.get(slot).and_then(|b| b.presets.get(preset as usize)) {
                Some(p) => match p.regions.get(i) {
                    Some(r) => *r,
                    None => break,
                },
                None => break,
            };
            if !region.matches(note, velocity) {
                continue;
            }
            if region.exclusive_class != 0 {
                let sr = self.sr;
                for v in self.voices.iter_mut().filter(|v| {
                    v.active
                        && v.channel == channel
                        && v.serial < first_serial
                        && matches!(v.source, VoiceSource::Sample { .. })
                        && v.sample.region.exclusive_class == region.exclusive_class
                }) {
                    v.steal(sr);
                }
            }
            let voice = self.allocate_voice(channel, cfg);
            self.start_voice(voice, channel, note, velocity, VoiceSource::Sample { slot }, cfg, None);
            let sr = self.sr;
            self.voices[voice].sample.start(&region, note, velocity, sr);
            self.banks.voice_started(slot);
            started = true;
        }
        started
    }

    /// A free voice slot on `channel`, making room under the channel's voice limit
    /// (the oldest voice, released ones first, fades out) and in the pool.
    fn allocate_voice(&mut self, channel: u8, cfg: &ChannelConfig) -> usize {
        let limit = cfg.voice_limit.clamp(1, MAX_VOICE_LIMIT) as usize;
        let mut count = 0;
        let mut victim: Option<usize> = None;
        for &slot in &self.active {
            let i = slot as usize;
            let v = &self.voices[i];
            if v.active && v.channel == channel && v.steal_left == 0 {
                count += 1;
                let better = match victim {
                    None => true,
                    Some(j) => {
                        let w = &self.voices[j];
                        (v.is_released(), std::cmp::Reverse(v.serial)) > (w.is_released(), std::cmp::Reverse(w.serial))
                    }
                };
                if better {
                    victim = Some(i);
                }
            }
        }
        if count >= limit
            && let Some(i) = victim
        {
            self.voices[i].steal(self.sr);
            self.ports.stats.voices_stolen.fetch_add(1, Relaxed);
        }
        match self.free.pop() {
            Some(i) => i as usize,
            None => {
                // The whole pool is busy: cut the voice closest to silence.
                self.ports.stats.voices_cut.fetch_add(1, Relaxed);
                let key = |v: &Voice| (v.steal_left == 0, v.steal_left, v.serial);
                let pos =
                    (0..self.active.len()).min_by_key(|&k| key(&self.voices[self.active[k] as usize])).unwrap_or(0);
                let slot = self.active.remove(pos) as usize;
                if let VoiceSource::Sample { slot: b } = self.voices[slot].source {
                    let (trash, stash, stats) = (&mut self.ports.trash, &mut self.trash_stash, &self.ports.stats);
                    self.banks.voice_ended(b, |bank| retire_into(trash, stash, stats, Garbage::Bank(bank)));
                }
                slot
            }
        }
    }

    /// Starts a voice in `slot` and adds it to the active list.
    #[allow(clippy::too_many_arguments)]
    fn start_voice(
        &mut self,
        slot: usize,
        channel: u8,
        note: u8,
        velocity: u8,
        source: VoiceSource,
        cfg: &ChannelConfig,
        glide_from: Option<f64>,
    ) {
        let ch = channel as usize;
        self.serial += 1;
        let st = &mut self.channels[ch];
        if st.idle {
            // Waking mid-tick: this tick's parameters and input were skipped.
            st.update_target();
            st.snap();
            st.input.clear();
            st.idle = false;
        }
        st.quiet_ticks = 0;
        let ctx = VoiceCtx {
            sample_rate: self.sr,
            tables: &self.tables,
            params: &st.now,
            bend: st.bend.value(),
            banks: &self.banks,
            controls: st.controls,
        };
        let seed = self.serial.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ ((channel as u64) << 8 | note as u64);
        self.voices[slot].start(
            channel,
            note,
            velocity,
            self.serial,
            source,
            cfg.instrument_id,
            seed,
            glide_from,
            &ctx,
        );
        // Keep the active list in pitch order: voices reading the same wavetable level
        // then run back to back and find it in cache. (Within capacity: no allocation.)
        let voices = &self.voices;
        let at = self.active.partition_point(|&s| voices[s as usize].note <= note);
        self.active.insert(at, slot as u16);
    }

    fn control(&mut self, channel: u8, cc: u8, value: u8) {
        let ch = channel as usize;
        if ch >= MAX_CHANNELS {
            return;
        }
        // The set's CC map first. A mapping for this channel wins over one without a
        // channel; that one moves the channel the CC arrives on, or every channel when
        // it says "any".
        let map = &self.snapshot.cc_map;
        let specific = map.iter().any(|m| m.cc == cc && m.channel == Some(channel));
        let mut mapped = false;
        let stats = &self.ports.stats;
        for m in map.iter().filter(|m| m.cc == cc) {
            let v = crate::params::Param::cc_value(m.min, m.max, m.exponential, value);
            let p = m.param as usize;
            match m.channel {
                Some(c) if c == channel => {
                    self.channels[ch].overrides[p] = v;
                    stats.overrides[ch][p].store(v.to_bits(), Relaxed);
                }
                None if !specific && !m.any => {
                    self.channels[ch].overrides[p] = v;
                    stats.overrides[ch][p].store(v.to_bits(), Relaxed);
                }
                None if !specific => {
                    for (i, st) in self.channels.iter_mut().enumerate().filter(|(_, s)| s.config.is_some()) {
                        st.overrides[p] = v;
                        stats.overrides[i][p].store(v.to_bits(), Relaxed);
                    }
                }
                _ => continue,
            }
            mapped = true;
        }
        if mapped {
            return;
        }
        let sr = self.sr;
        let sampled = matches!(self.channels[ch].config.map(|c| c.source), Some(Source::Sampled { .. }));
        let st = &mut self.channels[ch];
        match cc {
            0 => st.bank_select = value as u16,
            1 => st.controls.mod_wheel = value,
            // Expression: sample voices follow it through the SoundFont's own curve,
            // a synth channel takes it as a gain on its volume.
            11 => {
                st.controls.expression = value;
                let gain = value as f32 / 127.0;
                st.expression = if sampled { 1.0 } else { gain };
                self.ports.stats.expression[ch].store(gain.to_bits(), Relaxed);
            }
            91 => st.controls.reverb = value,
            93 => st.controls.chorus = value,
            101 => st.rpn.0 = value,
            100 => st.rpn.1 = value,
            // Data entry for RPN 0: the pitch-bend range in semitones (MSB) and cents (LSB).
            6 if st.rpn == (0, 0) => st.rpn_bend_range = Some(value as f32),
            38 if st.rpn == (0, 0) => {
                let semis = st.rpn_bend_range.unwrap_or(0.0).floor();
                st.rpn_bend_range = Some(semis + value.min(99) as f32 / 100.0);
            }
            7 | 10 => {
                let (p, v) = if cc == 7 {
                    // A sampled channel follows General MIDI's volume curve (the default
                    // SoundFont modulator: 40 log10, a square law); synths a linear fader.
                    let g = value as f32 / 127.0;
                    (Param::Volume, if sampled { g * g } else { g })
                } else {
                    (Param::Pan, ((value as f32 - 64.0) / 63.0).clamp(-1.0, 1.0))
                };
                self.channels[ch].overrides[p as usize] = v;
                self.ports.stats.overrides[ch][p as usize].store(v.to_bits(), Relaxed);
            }
            64 => {
                let down = value >= 64;
                let st = &mut self.channels[ch];
                st.pedal = down;
                self.ports.stats.pedals[ch].store(down, Relaxed);
                if !down {
                    let params = st.target;
                    for v in self.voices.iter_mut().filter(|v| v.active && v.channel == channel && v.sustained) {
                        v.release(&params, sr);
                    }
                }
            }
            120 => {
                for v in self.voices.iter_mut().filter(|v| v.active && v.channel == channel) {
                    v.steal(sr);
                }
            }
            121 => {
                let st = &mut self.channels[ch];
                st.overrides = [f32::NAN; NUM_PARAMS];
                for o in &self.ports.stats.overrides[ch] {
                    o.store(f32::NAN.to_bits(), Relaxed);
                }
                st.bend_raw = 0;
                st.pedal = false;
                st.controls.expression = 127;
                st.controls.mod_wheel = 0;
                st.controls.pressure = 0;
                st.rpn = (127, 127);
                st.expression = 1.0;
                let stats = &self.ports.stats;
                stats.bends[ch].store(0, Relaxed);
                stats.pedals[ch].store(false, Relaxed);
                stats.expression[ch].store(1.0f32.to_bits(), Relaxed);
            }
            123 => {
                let params = self.channels[ch].target;
                for v in self.voices.iter_mut().filter(|v| v.active && v.channel == channel) {
                    v.release(&params, sr);
                }
            }
            _ => {}
        }
    }

    /// Selects the General MIDI program's instrument on a channel: new notes use it,
    /// sounding ones finish on the old sound; volume, pan and drum channels stay.
    fn program_change(&mut self, channel: u8, program: u8) {
        let ch = channel as usize;
        let Some(st) = self.channels.get_mut(ch) else { return };
        let Some(cfg) = st.config else { return };
        if cfg.source == Source::Drums {
            return;
        }
        if let Source::Sampled { .. } = cfg.source {
            let base = self.snapshot.channels[ch].unwrap_or(cfg);
            match self.sampled_program(base, self.channels[ch].bank_select, program) {
                Some(next) => {
                    let st = &mut self.channels[ch];
                    st.program = Some(program);
                    st.config = Some(next);
                }
                None => {
                    self.ports.stats.programs_ignored.fetch_add(1, Relaxed);
                }
            }
            return;
        }
        let Some(prog) = self.snapshot.programs.get(program as usize).copied().flatten() else {
            self.ports.stats.programs_ignored.fetch_add(1, Relaxed);
            return;
        };
        let base = self.snapshot.channels[ch].unwrap_or(cfg);
        let next = with_program(base, prog);
        st.program = Some(program);
        self.ports.stats.programs[ch].store(program as u32, Relaxed);
        let now = st.now;
        for v in self.voices.iter_mut().filter(|v| v.active && v.channel == channel) {
            if v.frozen.is_none() && v.instrument_id == cfg.instrument_id {
                v.frozen = Some(now);
            }
        }
        st.config = Some(next);
        st.last = next.params;
    }

    /// The preset a program change selects on a sampled channel playing `base`: the
    /// bank's preset at (selected bank, program), else bank 0's (a kit: bank 128's,
    /// else its first kit). Audio thread: a binary search, no allocation.
    fn sampled_program(&self, base: ChannelConfig, bank_select: u16, program: u8) -> Option<ChannelConfig> {
        let Source::Sampled { bank, preset } = base.source else { return None };
        let b = self.banks.get(*self.bank_map.get(bank as usize)?)?;
        let kit = b.presets.get(preset as usize).is_some_and(|p| p.bank == 128);
        let found = if kit {
            b.find(128, program).or_else(|| b.find(128, 0))
        } else {
            b.find(bank_select, program).or_else(|| b.find(0, program))
        }?;
        let mut next = base;
        next.source = Source::Sampled { bank, preset: found };
        next.instrument_id = base.instrument_id ^ (found as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        Some(next)
    }

    /// Everything fades out at once; pedals up, bends centred.
    fn panic(&mut self) {
        let sr = self.sr;
        for v in self.voices.iter_mut().filter(|v| v.active) {
            v.steal(sr);
        }
        for (ch, st) in self.channels.iter_mut().enumerate() {
            st.pedal = false;
            st.bend_raw = 0;
            self.ports.stats.pedals[ch].store(false, Relaxed);
            self.ports.stats.bends[ch].store(0, Relaxed);
        }
    }

    /// Takes over the MIDI-driven state of channels (from another engine's
    /// [`EngineStats::channel_midi`]): knob positions (volume and pan included),
    /// expression, the program a program change chose, pitch bend and the sustain
    /// pedal, on the channels this engine's set has. For an engine rebuilt on a
    /// reopened audio device. Control side, before the engine runs.
    pub fn restore_channel_midi(&mut self, states: &[ChannelMidi]) {
        for m in states {
            let ch = m.channel as usize;
            if ch >= MAX_CHANNELS || self.channels[ch].config.is_none() {
                continue;
            }
            if let Some(p) = m.program {
                self.program_change(m.channel, p);
            }
            let stats = &self.ports.stats;
            let st = &mut self.channels[ch];
            for &(p, v) in &m.knobs {
                st.overrides[p as usize] = v;
                stats.overrides[ch][p as usize].store(v.to_bits(), Relaxed);
            }
            st.bend_raw = m.bend.clamp(-8192, 8191);
            st.pedal = m.pedal;
            let gain = m.expression.clamp(0.0, 1.0);
            let sampled = matches!(st.config.map(|c| c.source), Some(Source::Sampled { .. }));
            st.controls.expression = (gain * 127.0).round() as u8;
            st.expression = if sampled { 1.0 } else { gain };
            stats.bends[ch].store(st.bend_raw as i32 as u32, Relaxed);
            stats.pedals[ch].store(st.pedal, Relaxed);
            stats.expression[ch].store(gain.to_bits(), Relaxed);
            st.update_target();
            st.snap();
        }
    }
}
