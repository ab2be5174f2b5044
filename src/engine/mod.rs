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
mod channel;
pub mod denormal;
pub mod envelope;
pub mod event;
pub mod inbox;
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
pub mod workers;

use crate::dsp::glide::Glide;
use crate::dsp::math::{db_to_gain, fast_tanh};
use crate::params::{NUM_PARAMS, Param, Scope};
use crate::tables::Tables;
use channel::{Lane, MAX_BATCH, MAX_PARTS, MAX_SPLIT, SplitBufs, TickCx, Work};
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

/// Frames per engine tick.
pub const TICK_FRAMES: usize = 64;
/// [`EngineStats::programs`] of a channel no program change has touched.
pub const NO_PROGRAM: u32 = u32::MAX;
/// Voices a channel may sound at once unless the set says otherwise.
pub const DEFAULT_VOICE_LIMIT: u16 = 16;
/// The largest per-channel voice limit.
pub const MAX_VOICE_LIMIT: u16 = 256;
/// Voices in all (every channel at its largest limit). Each channel has its own
/// pool of [`MAX_VOICE_LIMIT`] voices and a reserve for stolen voices fading out
/// ([`channel::STEAL_RESERVE`]), so that channels render apart.
pub const MAX_VOICES: usize = MAX_CHANNELS * MAX_VOICE_LIMIT as usize;
/// Voice slots in all, the fading reserves included.
pub const VOICE_SLOTS: usize = MAX_CHANNELS * channel::LANE_VOICES;
/// A tick renders its channels on several threads only while the channels' work
/// per tick, as measured over the last ticks, is at least this (microseconds):
/// below it, handing the work out costs more than it saves (`cargo bench --bench
/// engine -- crossover`; BENCHMARKS.md: on a quiet 2-core machine every tick
/// handed out gained from about 3 us of work a tick, and 1.2x to 2x from 7 us in
/// all but one load). Back on one thread below half of it.
pub const PARALLEL_MIN_MICROS: f32 = 10.0;
/// Work items of one tick, at most: every channel in its most parts, and the
/// preparation of every shared reverb.
const MAX_WORK: usize = MAX_CHANNELS * channel::MAX_PARTS + sends::SHARED_REVERBS;
const _: () = assert!(MAX_WORK <= workers::MAX_ITEMS);
/// How fast the measured work per tick follows the latest tick (a moving average).
const WORK_SMOOTHING: f32 = 0.05;
/// Capacity of the event queue from producers (MIDI, REPL, renderer) to the engine.
pub use inbox::EVENT_QUEUE_CAP;
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
/// Room for the events of a batch of ticks: a batch ends before a tick whose
/// events might not fit.
const BATCH_EVENT_CAP: usize = 2 * TICK_EVENT_CAP;
/// How much more than an even share of the work a thread may get in a batch (whole
/// channels); beyond it the ticks render one at a time, heavy channels in parts. A
/// tick alone pays a hand-off of its own, so a batch a little uneven still gains:
/// at 1.1 chords and held rendered 6-10% of their ticks alone on two threads, at
/// 1.25 2-4%.
const BATCH_IMBALANCE: f32 = 1.25;
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
    /// The placeholder a channel's built parts replaced ([`channel::Lane::fit`]).
    Channel(Box<channel::ChannelParts>),
}

/// Counters and meters the engine publishes for the REPL and tests (atomics only).
pub struct EngineStats {
    pub frames: AtomicU64,
    pub snapshots_adopted: AtomicU64,
    /// Events lost because the event queue was full (counted by producers; a
    /// release and each controller's newest value are kept: [`inbox::Inbox`]).
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
    /// Notes of a synth that uses a delay line that found none free, even once the
    /// voice stolen for them had faded (they stay silent; see [`voice::Lines`]).
    pub lines_missed: AtomicU64,
    /// Shared reverb tails cut short because every shared reverb rang with another
    /// channel group's tail ([`sends::SEND_SLOTS`] at once).
    pub reverb_tails_cut: AtomicU64,
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
    /// Threads the engine renders on (the audio thread and its workers).
    pub render_threads: AtomicU32,
    /// Render workers the system let run at realtime priority.
    pub realtime_workers: AtomicU32,
    /// Ticks whose channels were shared out between the threads.
    pub parallel_ticks: AtomicU64,
    /// Work items (channels, parts of a heavy one, or shared reverbs' preparations)
    /// the workers rendered.
    pub worker_items: AtomicU64,
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
            lines_missed: AtomicU64::new(0),
            reverb_tails_cut: AtomicU64::new(0),
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
            render_threads: AtomicU32::new(1),
            realtime_workers: AtomicU32::new(0),
            parallel_ticks: AtomicU64::new(0),
            worker_items: AtomicU64::new(0),
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
    pub events: Arc<inbox::Inbox>,
    pub stats: Arc<EngineStats>,
    pub lines: Arc<voice::Lines>,
    pub prebuilt: Arc<channel::Prebuilt>,
}

/// The control side's ends.
pub struct ControlPorts {
    pub snapshots: rtrb::Producer<Box<Snapshot>>,
    pub trash: rtrb::Consumer<Garbage>,
    pub events: Arc<inbox::Inbox>,
    pub stats: Arc<EngineStats>,
    /// The voices' delay lines, provided before a snapshot that needs them is sent.
    pub lines: Arc<voice::Lines>,
    /// The channels' voice slots and buses, built before the first snapshot that
    /// configures each channel is sent.
    pub prebuilt: Arc<channel::Prebuilt>,
}

/// Creates the bounded channels between the control side and the engine.
pub fn ports() -> (ControlPorts, EnginePorts) {
    let (snap_tx, snap_rx) = rtrb::RingBuffer::new(SNAPSHOT_QUEUE_CAP);
    let (trash_tx, trash_rx) = rtrb::RingBuffer::new(TRASH_QUEUE_CAP);
    let events = Arc::new(inbox::Inbox::default());
    let stats = Arc::new(EngineStats::default());
    let lines = voice::Lines::new(stats.clone());
    let prebuilt = channel::Prebuilt::new(lines.clone());
    (
        ControlPorts {
            snapshots: snap_tx,
            trash: trash_rx,
            events: events.clone(),
            stats: stats.clone(),
            lines: lines.clone(),
            prebuilt: prebuilt.clone(),
        },
        EnginePorts { snapshots: snap_rx, trash: trash_tx, events, stats, lines, prebuilt },
    )
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
        if !crate::dsp::math::stereo_peak(l, r).1 {
            l.fill(0.0);
            r.fill(0.0);
        }
        match cfg.mode {
            MasterMode::SoftClip => {
                for (i, (a, b)) in l.iter_mut().zip(r.iter_mut()).enumerate() {
                    let g = g0 + gd * (i as i32 + 1) as f32;
                    *a = fast_tanh(*a * g).clamp(-1.0, 1.0);
                    *b = fast_tanh(*b * g).clamp(-1.0, 1.0);
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

/// Where an external channel's messages go (`None`: the channel is not external).
fn out_target(c: &ChannelConfig, sample_rate: f32) -> Option<OutTarget> {
    match c.source {
        Source::External { port, channel, latency_ms } => Some(OutTarget {
            port,
            channel: channel & 15,
            lead_frames: (latency_ms.max(0.0) * sample_rate / 1000.0).round() as u32,
        }),
        _ => None,
    }
}

/// A window after jamrig's own clock Start in which a Start arriving on MIDI in is
/// that Start come back (a device echoes the clock), in seconds.
const CLOCK_LOOP_WINDOW_S: f64 = 0.5;

/// Copies `src` (interleaved stereo) into `out` (`chans` per frame, as many frames):
/// mono as the mean of the two, more channels with the rest silent.
fn emit(src: &[f32], out: &mut [f32], chans: usize) {
    match chans {
        2 => out.copy_from_slice(src),
        1 => {
            for (o, lr) in out.iter_mut().zip(src.chunks_exact(2)) {
                *o = 0.5 * (lr[0] + lr[1]);
            }
        }
        _ => {
            for (frame, lr) in out.chunks_exact_mut(chans).zip(src.chunks_exact(2)) {
                frame[..2].copy_from_slice(lr);
                frame[2..].fill(0.0);
            }
        }
    }
}

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
    /// The channels: state, voices and bus each (rendered in parallel).
    lanes: Vec<Lane>,
    /// Threads that render channels beside this one.
    pool: workers::Pool,
    /// The least channel work per tick, in microseconds, handed out to the
    /// workers ([`PARALLEL_MIN_MICROS`]).
    parallel_min_micros: f32,
    /// The channels' work per tick, measured (a moving average, microseconds).
    work_micros: f32,
    /// The last tick was handed out.
    parallel: bool,
    /// Parts of channels handed out as work items of their own, so far.
    parts_handed_out: u64,
    /// Shared reverbs' preparations handed out beside the channels, so far.
    reverbs_handed_out: u64,
    /// Ticks rendered in batches, so far.
    batched_ticks: u64,
    /// Batches summed beside the next batch's channels (in its hand-off), so far.
    sums_overlapped: u64,
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
    mix_l: [f32; TICK_FRAMES],
    mix_r: [f32; TICK_FRAMES],
    idle_ticks: u32,
    /// The sample banks held, and the current snapshot's banks' slots.
    banks: banks::BankSlots,
    /// Reverbs and choruses the sample voices' sends share.
    sends: sends::Sends,
    bank_map: [u8; banks::MAX_SNAPSHOT_BANKS],
    /// The events of the ticks of a batch, one after the other: tick `t`'s are
    /// `batch_events[batch_bounds[t]..batch_bounds[t + 1]]`.
    batch_events: Vec<Queued>,
    batch_bounds: [usize; MAX_BATCH + 1],
    /// The channels each tick's events reach (bit per channel).
    batch_reach: [u32; MAX_BATCH],
    /// The half of the lanes' batch outputs the next batch writes.
    batch_half: usize,
    /// What summing a batch's tick takes (sum, shared reverbs, master), measured on
    /// several threads (a moving average, nanoseconds), for the hand-out.
    tail_nanos: f32,
    /// The sums of the parts of the channels a batch hands out in parts.
    split_bufs: Box<[SplitBufs]>,
    /// Channels of batches handed out in parts, so far.
    batch_splits: u64,
}

/// A batch whose channels have rendered but whose ticks are not yet summed: the sum
/// in channel order, the shared reverbs and the master of each of its `n` ticks,
/// into `out`. It runs beside the next batch's channels in the same call, or alone.
struct Pending<'o> {
    half: usize,
    n: usize,
    list: [u8; MAX_CHANNELS],
    m: usize,
    out: &'o mut [f32],
    chans: usize,
}

/// What summing a batch's ticks changes and reads, apart from the lanes.
struct TailParts<'a> {
    sends: &'a mut sends::Sends,
    master: &'a mut Master,
    cfg: MasterConfig,
    stats: &'a EngineStats,
    mix_l: &'a mut [f32; TICK_FRAMES],
    mix_r: &'a mut [f32; TICK_FRAMES],
    fifo: &'a mut [f32; 2 * TICK_FRAMES],
}

impl TailParts<'_> {
    /// The end of a tick, its channels summed into the mix: the shared send
    /// effects, the master, into the FIFO.
    fn finish_tick(&mut self) {
        let stats = self.stats;
        self.sends.process(self.mix_l, self.mix_r);
        stats.reverb_tails_cut.store(self.sends.tails_cut, Relaxed);
        self.master.process(&self.cfg, self.mix_l, self.mix_r);
        for (lr, (&l, &r)) in self.fifo.chunks_exact_mut(2).zip(self.mix_l.iter().zip(self.mix_r.iter())) {
            lr[0] = l;
            lr[1] = r;
        }
        let (peak, _) = crate::dsp::math::stereo_peak(self.mix_l, self.mix_r);
        stats.master_peak.fetch_max(peak.to_bits(), Relaxed);
    }

    /// Sums `p`'s ticks from the lanes' outputs `outs` (`outs[i]` is the half of
    /// channel `p.list[i]` that `p` rendered into) and masters them into `p.out`.
    ///
    /// # Safety
    /// Each of `outs[..p.m]` points at a live [`channel::BatchOut`] that nothing
    /// writes meanwhile.
    unsafe fn sum(&mut self, p: &mut Pending, outs: &[*const channel::BatchOut; MAX_CHANNELS]) {
        for (t, out) in p.out.chunks_exact_mut(TICK_FRAMES * p.chans).take(p.n).enumerate() {
            *self.mix_l = [0.0; TICK_FRAMES];
            *self.mix_r = [0.0; TICK_FRAMES];
            for &b in &outs[..p.m] {
                // SAFETY: the function's contract.
                let b = unsafe { &*b };
                if !b.ready[t] {
                    continue;
                }
                for (m, x) in self.mix_l.iter_mut().zip(&b.l[t]) {
                    *m += x;
                }
                for (m, x) in self.mix_r.iter_mut().zip(&b.r[t]) {
                    *m += x;
                }
                if let Some(key) = b.feed_key[t] {
                    self.sends.feed_bus_reverb(key, &b.feed[t]);
                }
            }
            self.finish_tick();
            emit(self.fifo, out, p.chans);
        }
    }
}

/// A pending batch's sum as a work item beside the next batch's channels.
struct TailJob<'a, 'o> {
    parts: TailParts<'a>,
    pending: Pending<'o>,
    outs: [*const channel::BatchOut; MAX_CHANNELS],
    timed: bool,
    spent_nanos: f32,
}

// SAFETY: the pointers in `outs` are read by the one thread that runs the item, and
// nothing writes what they point at until the job ends (the lanes write the other
// half of their batch outputs).
unsafe impl Send for TailJob<'_, '_> {}

impl TailJob<'_, '_> {
    fn run(&mut self) {
        let t0 = self.timed.then(std::time::Instant::now);
        // SAFETY: as for `Send` above.
        unsafe { self.parts.sum(&mut self.pending, &self.outs) };
        if let Some(t0) = t0 {
            self.spent_nanos = t0.elapsed().as_secs_f32() * 1e9;
        }
    }
}

/// An item of a batch's hand-off: a channel's ticks, or the sum of the batch before.
enum BatchItem<'b, 'a, 'o> {
    Lane(&'b mut Lane),
    Tail(&'b mut TailJob<'a, 'o>),
    /// A part of a channel's voices over the batch ([`Lane::run_batch_part`]).
    Part(SplitPart),
}

/// A part of a channel whose voices a batch hands out in parts.
struct SplitPart {
    lane: *mut Lane,
    voices: *mut voice::Voice,
    parts: *mut channel::Part,
    part: usize,
    bufs: *mut SplitBufs,
}

// SAFETY: each part is run by one thread; the parts of one channel touch distinct
// voices and sums, and read the rest of the lane, which nothing changes until the
// last part (which then finishes the channel alone).
unsafe impl Send for SplitPart {}

/// The cost above which a channel holds the other threads up, so that its voices go
/// in parts: half a thread's share of `total`.
fn split_above(total: f32, threads: usize) -> f32 {
    total / (2 * threads) as f32
}

impl Engine {
    /// Builds an engine playing `initial`, allocating every buffer it will use
    /// until a snapshot configures another channel (whose voice slots and bus the
    /// control side then builds: [`channel::Prebuilt`]). Control side.
    pub fn new(sample_rate: f32, tables: Arc<Tables>, initial: Snapshot, ports: EnginePorts) -> Self {
        ports.lines.provide(&initial, sample_rate);
        ports.prebuilt.provide(&initial, sample_rate);
        let lines = ports.lines.clone();
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
            voice_params: Param::ALL.iter().filter(|p| p.info().scope == Scope::Voice).map(|p| *p as usize).collect(),
            lanes: (0..MAX_CHANNELS).map(|ch| Lane::unbuilt(ch as u8, sample_rate, &lines)).collect(),
            pool: workers::Pool::start(1, false, None),
            parallel_min_micros: PARALLEL_MIN_MICROS,
            work_micros: 0.0,
            parallel: false,
            parts_handed_out: 0,
            reverbs_handed_out: 0,
            batched_ticks: 0,
            sums_overlapped: 0,
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
            mix_l: [0.0; TICK_FRAMES],
            mix_r: [0.0; TICK_FRAMES],
            idle_ticks: (IDLE_SECONDS * sample_rate / TICK_FRAMES as f32) as u32,
            banks: banks::BankSlots::default(),
            sends: sends::Sends::new(sample_rate),
            bank_map: [banks::NO_SLOT; banks::MAX_SNAPSHOT_BANKS],
            batch_events: Vec::with_capacity(BATCH_EVENT_CAP),
            batch_bounds: [0; MAX_BATCH + 1],
            batch_reach: [0; MAX_BATCH],
            batch_half: 0,
            tail_nanos: 0.0,
            split_bufs: (0..MAX_SPLIT).map(|_| SplitBufs::new()).collect(),
            batch_splits: 0,
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

    /// Renders on `threads` threads from now on: this one and `threads - 1` workers
    /// (at realtime priority when `realtime`, where the system allows it), started
    /// here. The output is the same whatever the count. Control side, before the
    /// engine runs.
    pub fn set_threads(&mut self, threads: usize, realtime: bool) {
        self.set_threads_guarded(threads, realtime, None);
    }

    /// [`Engine::set_threads`], with `guard` wrapping everything each worker does
    /// between two sleeps (tests run it under an allocation detector).
    pub fn set_threads_guarded(&mut self, threads: usize, realtime: bool, guard: Option<workers::WorkerGuard>) {
        self.pool = workers::Pool::start(threads, realtime, guard);
        let stats = &self.ports.stats;
        stats.render_threads.store(self.pool.threads() as u32, Relaxed);
        stats.realtime_workers.store(self.pool.realtime_workers() as u32, Relaxed);
    }

    /// Sets the least channel work per tick (microseconds, measured) that is handed
    /// out to the workers; below it ticks run on this thread alone. 0 hands out
    /// every tick (the tests and the benchmarks' crossover). Control side.
    pub fn set_parallel_min_micros(&mut self, micros: f32) {
        self.parallel_min_micros = micros;
    }

    /// Threads this engine renders on.
    pub fn threads(&self) -> usize {
        self.pool.threads()
    }

    /// Work items (channels, parts of a heavy channel, or shared reverbs'
    /// preparations) the workers, not the calling thread, have rendered so far.
    pub fn worker_items(&self) -> u64 {
        self.pool.worker_items()
    }

    /// Ticks rendered in batches (several ticks a hand-off), so far.
    pub fn batched_ticks(&self) -> u64 {
        self.batched_ticks
    }

    /// Batches whose sum (the shared reverbs, the master) ran beside the next
    /// batch's channels, so far.
    pub fn sums_overlapped(&self) -> u64 {
        self.sums_overlapped
    }

    /// Parts of heavy channels handed out as work items of their own, so far (a
    /// channel that no event reaches in a tick sums its voices in parts).
    pub fn parts_handed_out(&self) -> u64 {
        self.parts_handed_out
    }

    /// Channels of batches whose voices were handed out in parts, so far.
    pub fn batch_splits(&self) -> u64 {
        self.batch_splits
    }

    /// Shared reverbs' preparations (their reads, output and feedback) handed out
    /// beside the channels, so far.
    pub fn reverbs_handed_out(&self) -> u64 {
        self.reverbs_handed_out
    }

    /// Workers that run at realtime priority.
    pub fn realtime_workers(&self) -> usize {
        self.pool.realtime_workers()
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
    /// event of a lower rank (see [`rank`]), else this one; but a release or a
    /// controller value that finds no room waits in the inbox's tables for the
    /// next tick ([`inbox::Inbox::keep`]). What is lost is counted.
    fn admit(&mut self, ev: Event) {
        if self.future.len() == self.future.capacity() {
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
            let stats = &self.ports.stats;
            match victim {
                Some(i) => {
                    stats.events_overflow.fetch_add(1, Relaxed);
                    self.future.swap_remove(i);
                }
                None => {
                    if self.ports.events.keep(ev) != inbox::Kept::Yes {
                        stats.events_overflow.fetch_add(1, Relaxed);
                    }
                    return;
                }
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

    /// The host saw its frame line (device frames against engine frames) jump in
    /// the cycle whose MIDI is placed from engine frame `since` on, and measures
    /// the jump over the next cycles ([`Engine::after_overrun`] says how far). The
    /// MIDI clock follower keeps its ticks back until then. Audio thread.
    pub fn line_jumped(&mut self, since: u64) {
        self.follower.hold_for_move(since as f64);
    }

    /// The audio device has just reported an overrun: what the engine renders is
    /// now heard later than before (cycles it did not render were played as
    /// silence), by `moved` frames when the host measured it (0: not at all). The
    /// MIDI clock follower moves its fit to the new frame line: by `moved`, or else
    /// at the next tick. Audio thread.
    pub fn after_overrun(&mut self, moved: Option<i64>) {
        match moved {
            // Cycles it did not render: the line moves ahead by whole cycles.
            Some(frames) => {
                self.follower.move_line(-frames.max(0) as f64);
            }
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
    /// denormals flushed to zero for the call. Whole ticks asked for at once are
    /// rendered as batches (see [`Engine::render_batch`]); the output is the same
    /// whatever the size of `out`. Audio thread.
    pub fn process(&mut self, out: &mut [f32], out_channels: usize) {
        // Decaying tails would otherwise sink into slow denormal arithmetic.
        let _ftz = denormal::FlushDenormals::enter();
        let chans = out_channels.max(1);
        let mut rest = out;
        let mut pending = None;
        while !rest.is_empty() {
            if self.fifo_pos == TICK_FRAMES {
                let ticks = rest.len() / chans / TICK_FRAMES;
                if ticks >= 2 {
                    let (later, next) = self.render_batch(ticks.min(MAX_BATCH), rest, chans, pending.take());
                    rest = later;
                    pending = next;
                    continue;
                }
                self.flush_pending(pending.take());
                self.render_tick();
                self.fifo_pos = 0;
            }
            let n = (TICK_FRAMES - self.fifo_pos).min(rest.len() / chans);
            if n == 0 {
                rest.fill(0.0);
                break;
            }
            let (now, later) = rest.split_at_mut(n * chans);
            emit(&self.fifo[2 * self.fifo_pos..2 * (self.fifo_pos + n)], now, chans);
            self.fifo_pos += n;
            rest = later;
        }
        self.flush_pending(pending);
    }

    /// The parts of the engine a batch's sum changes.
    fn tail_parts(&mut self) -> TailParts<'_> {
        TailParts {
            sends: &mut self.sends,
            master: &mut self.master,
            cfg: self.snapshot.master,
            stats: &self.ports.stats,
            mix_l: &mut self.mix_l,
            mix_r: &mut self.mix_r,
            fifo: &mut self.fifo,
        }
    }

    /// Sums and masters a pending batch's ticks, if there is one, on this thread.
    fn flush_pending(&mut self, pending: Option<Pending>) {
        let Some(mut p) = pending else { return };
        let mut outs = [std::ptr::null(); MAX_CHANNELS];
        for (o, &ch) in outs.iter_mut().zip(&p.list[..p.m]) {
            *o = &*self.lanes[ch as usize].batch[p.half] as *const channel::BatchOut;
        }
        // SAFETY: the lanes are not used while the sum runs.
        unsafe { self.tail_parts().sum(&mut p, &outs) };
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
            let old = self.lanes[ch].st.config;
            let new = next.channels[ch];
            // A channel configured for the first time: its voice slots and bus,
            // built on the control side, take the placeholder's place.
            if new.is_some()
                && !self.lanes[ch].is_built()
                && let Some(parts) = self.ports.prebuilt.take(ch)
            {
                let placeholder = self.lanes[ch].fit(parts);
                self.retire(Garbage::Channel(placeholder));
            }
            // An external channel removed, or sent elsewhere: its device's notes end.
            let was_out = old.and_then(|c| out_target(&c, self.sr));
            let to = new.and_then(|c| out_target(&c, self.sr));
            if was_out.is_some() && was_out != to {
                self.midi_out.release(frame, ch);
            }
            // Its knobs the set moved (a REPL line) go out as their controllers.
            if let (Some(o), Some(n), Some(to)) = (old, new, to) {
                for i in (0..NUM_PARAMS).filter(|&i| o.params.0[i] != n.params.0[i]) {
                    self.midi_out.knob(frame, ch, to, &next.cc_map, i as u8, n.params.0[i]);
                }
            }
            match (old, new) {
                (Some(o), Some(n)) => {
                    let lane = &mut self.lanes[ch];
                    let st = &mut lane.st;
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
                                n = channel::with_program(n, prog);
                            }
                        }
                        _ => {
                            st.program = None;
                            self.ports.stats.programs[ch].store(NO_PROGRAM, Relaxed);
                        }
                    }
                    if o.instrument_id != n.instrument_id || o.source != n.source {
                        let now = st.now;
                        lane.for_sounding(|v| {
                            if v.frozen.is_none() && v.instrument_id == o.instrument_id {
                                v.frozen = Some(now);
                            }
                        });
                    }
                    lane.st.config = Some(n);
                }
                (None, Some(n)) => {
                    let st = &mut self.lanes[ch].st;
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
                    let lane = &mut self.lanes[ch];
                    lane.st.last = o.params;
                    lane.st.config = None;
                    let (params, sr) = (lane.st.target, self.sr);
                    lane.for_sounding(|v| v.release(&params, sr));
                }
                (None, None) => {}
            }
            if let Some(c) = self.lanes[ch].st.config {
                self.lanes[ch].st.last = c.params;
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
            let st = &self.lanes[ch].st;
            if let (Some(p), Some(n)) = (st.program, next.channels[ch])
                && let Source::Sampled { .. } = n.source
            {
                // A program change outlives a reload that keeps the channel's preset.
                if let Some(sel) = channel::sampled_program(&self.banks, &self.bank_map, n, st.bank_select, p) {
                    self.lanes[ch].st.config = Some(sel);
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
        let events = Arc::clone(&self.ports.events);
        events.drain(|ev| self.admit(ev));
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
        self.tick_events_of(start);
        self.render_channels(start);
        self.frame = end;
        self.publish_transport();
        if self.midi_out.overflow > 0 {
            self.ports.stats.midi_out_overflow.fetch_add(std::mem::take(&mut self.midi_out.overflow), Relaxed);
        }
    }

    /// The serial event work of the tick at `start` (`self.frame`): the events due
    /// gathered, transport changes and the sequencer at their frames, pattern
    /// note-offs, all in order in `tick_events`.
    fn tick_events_of(&mut self, start: u64) {
        let end = start + TICK_FRAMES as u64;
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
    }

    /// What of a tick's events does not belong to one channel, in event order:
    /// external channels' messages and the MIDI a panic ends. Returns the external
    /// channels and the channels the events reach (bit per channel).
    fn route_events(&mut self, start: u64) -> (u16, u32) {
        let mut external = 0u16;
        for (ch, lane) in self.lanes.iter().enumerate() {
            if lane.st.config.is_some_and(|c| out_target(&c, self.sr).is_some()) {
                external |= 1 << ch;
            }
        }
        let mut work = 0u32;
        let configured =
            (0..MAX_CHANNELS).filter(|&ch| self.lanes[ch].st.config.is_some()).fold(0u32, |m, ch| m | 1 << ch);
        for i in 0..self.tick_events.len() {
            let ev = self.tick_events[i].ev;
            if ev.kind == EventKind::Panic {
                self.midi_out.release_all(ev.frame.max(start));
                work = (1 << MAX_CHANNELS) - 1;
                continue;
            }
            let Some(ch) = ev.kind.channel().map(|c| c as usize).filter(|&c| c < MAX_CHANNELS) else { continue };
            if external & (1 << ch) != 0 {
                if let Some(to) = self.lanes[ch].st.config.and_then(|c| out_target(&c, self.sr)) {
                    self.external(ev, ch, to);
                }
                continue;
            }
            work |= 1 << ch;
            if let EventKind::Control { cc, .. } = ev.kind
                && self.snapshot.cc_map.iter().any(|m| m.cc == cc && m.channel.is_none() && m.any)
            {
                // A knob that moves every channel.
                work |= configured;
            }
        }
        (external, work)
    }

    /// Whether ticks can render in a batch: no sample voice can sound (their sends
    /// wait for the shared send effects within a tick, and their banks are settled
    /// tick by tick).
    fn batchable(&self) -> bool {
        self.banks.held() == 0
            && self.lanes.iter().all(|l| !l.st.config.is_some_and(|c| matches!(c.source, Source::Sampled { .. })))
    }

    /// Whether the sounding channels, whole, share out between the threads within
    /// [`BATCH_IMBALANCE`] of an even split, by their measured costs (a batch
    /// hands out whole channels; a tick alone splits a heavy channel's voices).
    fn batch_balanced(&self) -> bool {
        let threads = self.pool.threads();
        if threads < 2 {
            return true;
        }
        const ITEMS: usize = MAX_CHANNELS + MAX_SPLIT * MAX_PARTS;
        let mut costs = [0.0f32; ITEMS];
        let mut m = 0;
        let mut splits = 0;
        let total: f32 = self.lanes.iter().filter(|l| !l.st.idle).map(|l| l.cost_nanos).sum();
        let split_above = split_above(total, threads);
        for lane in self.lanes.iter().filter(|l| !l.st.idle) {
            // A heavy channel whose voices a batch can hand out in parts counts as
            // its parts (unless an event of the batch then reaches it).
            if splits < MAX_SPLIT && lane.cost_nanos > split_above && lane.splits_over(&[]) {
                m += lane.part_costs(&mut costs[m..m + MAX_PARTS]);
                splits += 1;
            } else {
                costs[m] = lane.cost_nanos;
                m += 1;
            }
        }
        costs[..m].sort_unstable_by(|a, b| b.total_cmp(a));
        let mut order = [0u8; ITEMS];
        workers::split_order(&costs[..m], 0, threads, &mut order[..m]) <= BATCH_IMBALANCE * total / threads as f32
    }

    /// Renders up to `max_ticks` whole ticks into `out` (interleaved, `chans` per
    /// frame) with one hand-off to the workers: the serial event work of every tick
    /// first, then each channel renders its ticks in order (keeping each tick's
    /// output), beside the sum of the batch before (`prev`, of the same call), if
    /// any. This batch's own sum, tick by tick in channel order with the shared
    /// reverbs and the master, is returned pending (on one thread it runs at once).
    /// Snapshots are taken at the batch's start. A tick whose events reach beyond
    /// the channels (a panic, a program change) ends the batch: it renders alone
    /// after it. Returns what is left of `out` (at least a tick is written or
    /// pending). The output is the same as tick by tick. Audio thread.
    fn render_batch<'o>(
        &mut self,
        max_ticks: usize,
        out: &'o mut [f32],
        chans: usize,
        mut prev: Option<Pending<'o>>,
    ) -> (&'o mut [f32], Option<Pending<'o>>) {
        if !self.ports.snapshots.is_empty() {
            // The sum before must hear the snapshot it was rendered with.
            self.flush_pending(prev.take());
        }
        self.receive_snapshots();
        if !self.batchable() || !self.batch_balanced() {
            self.flush_pending(prev.take());
            self.render_tick();
            let (now, later) = out.split_at_mut(TICK_FRAMES * chans);
            emit(&self.fifo, now, chans);
            return (later, None);
        }
        let start0 = self.frame;
        self.batch_events.clear();
        self.batch_bounds[0] = 0;
        let mut n = 0;
        let mut alone = false;
        let mut external = 0;
        while n < max_ticks && self.batch_events.len() + TICK_EVENT_CAP <= BATCH_EVENT_CAP {
            let start = self.frame;
            self.tick_events_of(start);
            if self.tick_events.iter().any(|q| matches!(q.ev.kind, EventKind::Panic | EventKind::Program { .. })) {
                alone = true;
                break;
            }
            let (ext, reach) = self.route_events(start);
            external = ext;
            self.batch_reach[n] = reach;
            self.batch_events.extend_from_slice(&self.tick_events);
            n += 1;
            self.batch_bounds[n] = self.batch_events.len();
            self.frame = start + TICK_FRAMES as u64;
        }
        let (mine, mut rest) = out.split_at_mut(n * TICK_FRAMES * chans);
        let mut pending = None;
        if n > 0 {
            pending = Some(self.render_batch_channels(start0, n, external, mine, chans, prev.take()));
        }
        self.flush_pending(prev);
        if alone || self.pool.threads() < 2 {
            self.flush_pending(pending.take());
        }
        if alone {
            let start = self.frame;
            self.render_channels(start);
            self.frame = start + TICK_FRAMES as u64;
            let (now, later) = rest.split_at_mut(TICK_FRAMES * chans);
            emit(&self.fifo, now, chans);
            rest = later;
        }
        self.publish_transport();
        if self.midi_out.overflow > 0 {
            self.ports.stats.midi_out_overflow.fetch_add(std::mem::take(&mut self.midi_out.overflow), Relaxed);
        }
        (rest, pending)
    }

    /// The channels' part of the `n` ticks of a batch from `start0`, their events
    /// in `batch_events`: each channel that an event reaches or that sounds renders
    /// its ticks in order (in parallel, a channel per item, when the work is worth
    /// it), beside the sum of the batch before (`prev`), which this consumes.
    /// Returns this batch's sum, to be run, into `out`.
    fn render_batch_channels<'o>(
        &mut self,
        start0: u64,
        n: usize,
        external: u16,
        out: &'o mut [f32],
        chans: usize,
        prev: Option<Pending<'o>>,
    ) -> Pending<'o> {
        let reach = self.batch_reach[..n].iter().fold(0u32, |m, r| m | r);
        let mut list = [0u8; MAX_CHANNELS];
        let mut costs = [0.0f32; MAX_CHANNELS];
        let mut m = 0;
        for (ch, lane) in self.lanes.iter().enumerate() {
            if reach & (1 << ch) != 0 || !lane.st.idle {
                list[m] = ch as u8;
                costs[m] = lane.cost_nanos;
                m += 1;
            }
        }
        let half = self.batch_half;
        self.batch_half ^= 1;
        let threads = self.pool.threads();
        let timed = threads > 1;
        let threshold = if self.parallel { 0.5 } else { 1.0 } * self.parallel_min_micros;
        let parallel = threads > 1 && m >= 2 && self.work_micros >= threshold;
        self.parallel = parallel;
        // The batch before's sum: the lanes' outputs it reads (the other half).
        let mut outs = [std::ptr::null(); MAX_CHANNELS];
        if let Some(p) = &prev {
            for (o, &ch) in outs.iter_mut().zip(&p.list[..p.m]) {
                *o = &*self.lanes[ch as usize].batch[p.half] as *const channel::BatchOut;
            }
        }
        let t0 = timed.then(std::time::Instant::now);
        let mut tail_spent = None;
        {
            let (events, bounds, reaches) = (&self.batch_events, &self.batch_bounds, &self.batch_reach);
            let (sr, tables, snapshot, banks, bank_map) =
                (self.sr, &*self.tables, &*self.snapshot, &self.banks, &self.bank_map);
            let (stats, voice_params, idle_ticks) = (&*self.ports.stats, &self.voice_params[..], self.idle_ticks);
            let cx_of = |t: usize| TickCx {
                sr,
                tables,
                snapshot,
                banks,
                bank_map,
                stats,
                events: &events[bounds[t]..bounds[t + 1]],
                start: start0 + (t * TICK_FRAMES) as u64,
                voice_params,
                idle_ticks,
                external,
                timed,
            };
            let run = |lane: &mut Lane| {
                for (t, reach) in reaches[..n].iter().enumerate() {
                    lane.batch_tick(half, t, reach & (1 << lane.ch) != 0, &cx_of(t));
                }
            };
            let mut tail = prev.map(|pending| TailJob {
                parts: TailParts {
                    sends: &mut self.sends,
                    master: &mut self.master,
                    cfg: snapshot.master,
                    stats,
                    mix_l: &mut self.mix_l,
                    mix_r: &mut self.mix_r,
                    fifo: &mut self.fifo,
                },
                pending,
                outs,
                timed,
                spent_nanos: 0.0,
            });
            if parallel {
                // The sum before first (this thread takes it: the shared reverbs' and
                // the master's state stay in its core's cache), then the channels,
                // costliest first, shared out between this thread and the workers. A
                // channel that would hold the other threads up (more than half a
                // thread's share) goes in parts of its voices when it can
                // (`Lane::splits_over`): each part renders its voices over the whole
                // batch, and the last to finish runs the channel's ticks on their sum.
                const ITEMS: usize = MAX_CHANNELS + 1 + MAX_SPLIT * MAX_PARTS;
                let cxs: [TickCx; MAX_BATCH] = std::array::from_fn(|t| cx_of(t.min(n - 1)));
                let total: f32 = costs[..m].iter().sum();
                let split_above = split_above(total, threads);
                let mut items: [Option<BatchItem>; ITEMS] = std::array::from_fn(|_| None);
                let mut item_costs = [0.0f32; ITEMS];
                let mut k = 0;
                if let Some(tail) = &mut tail {
                    // Its cost in the channels' units (a tick's).
                    item_costs[0] = self.tail_nanos * tail.pending.n as f32 / n as f32;
                    items[0] = Some(BatchItem::Tail(tail));
                    k = 1;
                }
                let pinned = k;
                let lanes = self.lanes.as_mut_ptr();
                let bufs = self.split_bufs.as_mut_ptr();
                let mut splits = 0;
                for (&ch, &cost) in list[..m].iter().zip(&costs[..m]) {
                    // SAFETY: each listed lane is taken once, and used through these
                    // items alone until the job below ends.
                    let lane = unsafe { &mut *lanes.add(ch as usize) };
                    if splits < MAX_SPLIT && cost > split_above && lane.splits_over(&cxs[..n]) {
                        let mut part_costs = [0.0f32; MAX_PARTS];
                        let parts = lane.part_costs(&mut part_costs);
                        let planned = lane.plan_batch_split(&cxs[0]);
                        debug_assert_eq!(parts, planned);
                        let (voices, parts_at) = lane.split_ptrs();
                        let lane = lane as *mut Lane;
                        for (p, &c) in part_costs[..planned].iter().enumerate() {
                            items[k] = Some(BatchItem::Part(SplitPart {
                                lane,
                                voices,
                                parts: parts_at,
                                part: p,
                                // SAFETY: `splits` is below MAX_SPLIT, the buffers' count.
                                bufs: unsafe { bufs.add(splits) },
                            }));
                            item_costs[k] = c;
                            k += 1;
                        }
                        splits += 1;
                    } else {
                        items[k] = Some(BatchItem::Lane(lane));
                        item_costs[k] = cost;
                        k += 1;
                    }
                }
                self.batch_splits += splits as u64;
                let mut by_cost = [0u8; ITEMS];
                for (j, b) in by_cost[..k].iter_mut().enumerate() {
                    *b = j as u8;
                }
                by_cost[pinned..k].sort_unstable_by(|&a, &b| item_costs[b as usize].total_cmp(&item_costs[a as usize]));
                let mut sorted = [0.0f32; ITEMS];
                for (c, &b) in sorted[..k].iter_mut().zip(&by_cost[..k]) {
                    *c = item_costs[b as usize];
                }
                let mut order = [0u8; ITEMS];
                workers::split_order(&sorted[..k], pinned, threads, &mut order[..k]);
                for o in &mut order[..k] {
                    *o = by_cost[*o as usize];
                }
                self.pool.run(&mut items[..k], &order[..k], &|item: &mut Option<BatchItem>| match item {
                    Some(BatchItem::Lane(lane)) => run(lane),
                    Some(BatchItem::Tail(tail)) => tail.run(),
                    // SAFETY: the part's pointers are its lane's, planned above; each
                    // part is run once, by one thread, while the lanes live.
                    Some(BatchItem::Part(sp)) => unsafe {
                        Lane::run_batch_part(sp.lane, sp.voices, sp.parts, sp.part, sp.bufs, half, n, &cx_of)
                    },
                    None => {}
                });
            } else {
                if let Some(tail) = &mut tail {
                    tail.run();
                }
                for &ch in &list[..m] {
                    run(&mut self.lanes[ch as usize]);
                }
            }
            if let Some(tail) = tail {
                tail_spent = Some((tail.spent_nanos, tail.pending.n));
                self.sums_overlapped += parallel as u64;
            }
        }
        self.batched_ticks += n as u64;
        if let Some(t0) = t0 {
            let took = t0.elapsed().as_secs_f32() * 1e6 * if parallel { threads as f32 } else { 1.0 } / n as f32;
            self.work_micros += (took - self.work_micros) * WORK_SMOOTHING;
            for &ch in &list[..m] {
                self.lanes[ch as usize].settle_cost_over(n);
            }
            if let Some((spent, ticks)) = tail_spent {
                let per_tick = spent / ticks.max(1) as f32;
                self.tail_nanos += (per_tick - self.tail_nanos) * WORK_SMOOTHING;
            }
        }
        if parallel {
            let stats = &self.ports.stats;
            stats.parallel_ticks.fetch_add(n as u64, Relaxed);
            stats.worker_items.store(self.pool.worker_items(), Relaxed);
        }
        Pending { half, n, list, m, out, chans }
    }

    /// The channels' part of a tick: their voices and buses (in parallel when the
    /// work is worth it), then the sum in channel order, the shared send effects and
    /// the master. The result is the same whichever thread rendered which channel.
    fn render_channels(&mut self, start: u64) {
        let (external, mut work) = self.route_events(start);
        for (ch, lane) in self.lanes.iter().enumerate() {
            if !lane.st.idle {
                work |= 1 << ch;
            }
        }
        let threads = self.pool.threads();
        let timed = threads > 1;
        let cx = TickCx {
            sr: self.sr,
            tables: &self.tables,
            snapshot: &self.snapshot,
            banks: &self.banks,
            bank_map: &self.bank_map,
            stats: &self.ports.stats,
            events: &self.tick_events,
            start,
            voice_params: &self.voice_params,
            idle_ticks: self.idle_ticks,
            external,
            timed,
        };
        // Heavy channels that no event reaches sum their voices in parts (decided by
        // their data alone); the measured cost of every channel, for the hand-out.
        let mut n = 0;
        let mut total_nanos = 0.0f32;
        let mut splittable = false;
        for ch in 0..MAX_CHANNELS {
            if work & (1 << ch) != 0 {
                let lane = &mut self.lanes[ch];
                splittable |= lane.plan_parts(&cx) > 1;
                total_nanos += lane.cost_nanos;
                n += 1;
            }
        }
        // On several threads while the work is worth it (with some hysteresis), as
        // measured; the output is the same either way.
        let threshold = if self.parallel { 0.5 } else { 1.0 } * self.parallel_min_micros;
        let parallel = threads > 1 && (n >= 2 || splittable) && self.work_micros >= threshold;
        self.parallel = parallel;
        let t0 = timed.then(std::time::Instant::now);

        // The work items: whole channels, and the parts of a channel that would
        // otherwise hold the other threads up (more than half a thread's share).
        let mut items = [Work::NONE; MAX_WORK];
        let mut m = 0;
        let split_above = if parallel { split_above(total_nanos, threads) } else { f32::INFINITY };
        let lanes = self.lanes.as_mut_ptr();
        for ch in 0..MAX_CHANNELS {
            if work & (1 << ch) == 0 {
                continue;
            }
            // SAFETY: `ch` is within the lanes, each taken once; the lanes are used
            // through these items alone until the job below ends.
            unsafe {
                let lane = lanes.add(ch);
                if Work::planned_parts(lane) > 1 && (*lane).cost_nanos > split_above {
                    let parts = Work::parts(lane, &mut items[m..]);
                    self.parts_handed_out += parts as u64;
                    m += parts;
                } else {
                    items[m] = Work::whole(lane);
                    m += 1;
                }
            }
        }
        // The shared reverbs' reads, output and feedback need nothing of this tick's
        // channels: on several threads they are prepared beside them, and only their
        // input's diffusion and writes are left for after.
        if parallel {
            // SAFETY: the items are run in the job below, before `sends` is used again.
            let reverbs = unsafe { self.sends.prepare_items(&mut items[m..]) };
            self.reverbs_handed_out += reverbs as u64;
            m += reverbs;
        }
        // SAFETY (both branches): each item is run once, by one thread, while the lanes live.
        if parallel && m >= 2 {
            // The shared reverbs' preparations first (this thread takes them, and
            // finishes them after the channels: their state stays in its core's cache),
            // then the costliest first, shared out between this thread (from the front)
            // and the workers (from the back) so that the two sides meet at their
            // cheapest items.
            items[..m].sort_unstable_by(|a, b| b.is_reverb().cmp(&a.is_reverb()).then(b.cost.total_cmp(&a.cost)));
            let pinned = items[..m].iter().take_while(|w| w.is_reverb()).count();
            let mut costs = [0.0f32; MAX_WORK];
            for (c, w) in costs.iter_mut().zip(&items[..m]) {
                *c = w.cost;
            }
            let mut order = [0u8; MAX_WORK];
            workers::split_order(&costs[..m], pinned, threads, &mut order[..m]);
            self.pool.run(&mut items[..m], &order[..m], &|w: &mut Work| unsafe { w.run(&cx) });
        } else {
            // On one thread the order does not matter (the items are independent).
            for w in &mut items[..m] {
                unsafe { w.run(&cx) };
            }
        }

        // Sends to the shared effects, in channel order; those channels' buses after.
        let mut pending = [0u8; MAX_CHANNELS];
        let mut m = 0;
        for (ch, lane) in self.lanes.iter_mut().enumerate() {
            if work & (1 << ch) == 0 || !lane.send_pending {
                continue;
            }
            let st = &mut lane.st;
            if self.sends.feed(&st.target, st.target.get(Param::Volume), &st.input.reverb, &st.input.chorus) {
                // Shared send effects took them (see `sends`).
                st.input.reverb = [0.0; TICK_FRAMES];
                st.input.chorus = [0.0; TICK_FRAMES];
                st.input.sent = false;
            }
            pending[m] = ch as u8;
            m += 1;
        }
        if m > 0 {
            if parallel {
                self.pool.run(&mut self.lanes, &pending[..m], &|lane: &mut Lane| lane.run_bus(&cx));
            } else {
                for &ch in &pending[..m] {
                    self.lanes[ch as usize].run_bus(&cx);
                }
            }
        }

        // What the channels cost this tick, for the next ticks' choice: on several
        // threads the wall time is taken as a share of the work.
        if let Some(t0) = t0 {
            let took = t0.elapsed().as_secs_f32() * 1e6 * if parallel { threads as f32 } else { 1.0 };
            self.work_micros += (took - self.work_micros) * WORK_SMOOTHING;
        }
        if parallel {
            let stats = &self.ports.stats;
            stats.parallel_ticks.fetch_add(1, Relaxed);
            stats.worker_items.store(self.pool.worker_items(), Relaxed);
        }
        if timed {
            for ch in 0..MAX_CHANNELS {
                if work & (1 << ch) != 0 {
                    self.lanes[ch].settle_cost();
                }
            }
        }

        // The sum, in channel order; voices' sample banks settled.
        self.mix_l = [0.0; TICK_FRAMES];
        self.mix_r = [0.0; TICK_FRAMES];
        let mut banks_changed = false;
        for (ch, lane) in self.lanes.iter_mut().enumerate() {
            if work & (1 << ch) == 0 {
                continue;
            }
            if lane.out_ready {
                for (m, x) in self.mix_l.iter_mut().zip(&lane.out_l) {
                    *m += x;
                }
                for (m, x) in self.mix_r.iter_mut().zip(&lane.out_r) {
                    *m += x;
                }
                // A reverb shared between channels takes its input in channel order.
                if let Some((key, feed)) = lane.st.bus.shared_reverb_feed() {
                    self.sends.feed_bus_reverb(key, feed);
                }
            }
            if lane.banks_touched {
                let (trash, stash, stats) = (&mut self.ports.trash, &mut self.trash_stash, &self.ports.stats);
                for k in 0..banks::MAX_BANK_SLOTS {
                    for _ in 0..std::mem::take(&mut lane.banks_started[k]) {
                        self.banks.voice_started(k as u8);
                    }
                }
                for k in 0..banks::MAX_BANK_SLOTS {
                    for _ in 0..std::mem::take(&mut lane.banks_ended[k]) {
                        self.banks.voice_ended(k as u8, |bank| retire_into(trash, stash, stats, Garbage::Bank(bank)));
                    }
                }
                lane.banks_touched = false;
                banks_changed = true;
            }
        }
        if banks_changed {
            self.ports.stats.banks_held.store(self.banks.held() as u32, Relaxed);
        }
        self.finish_tick();
    }

    /// The end of a tick, its channels summed into the mix: the shared send
    /// effects, the master, into the FIFO.
    fn finish_tick(&mut self) {
        self.tail_parts().finish_tick();
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
            // A knob turned from the control port: as the controller that carries it.
            EventKind::Param { param, value, .. } => out.knob(frame, ch, to, &self.snapshot.cc_map, param, value),
            _ => {}
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
            if ch >= MAX_CHANNELS || self.lanes[ch].st.config.is_none() {
                continue;
            }
            if let Some(p) = m.program {
                let cx = TickCx {
                    sr: self.sr,
                    tables: &self.tables,
                    snapshot: &self.snapshot,
                    banks: &self.banks,
                    bank_map: &self.bank_map,
                    stats: &self.ports.stats,
                    events: &[],
                    start: self.frame,
                    voice_params: &self.voice_params,
                    idle_ticks: self.idle_ticks,
                    external: 0,
                    timed: false,
                };
                self.lanes[ch].program_change(p, &cx);
            }
            self.lanes[ch].restore(m, &self.ports.stats);
        }
    }
}
