//! One channel's share of the engine, on the audio thread or a render worker: its
//! state, its own voice pool, its events of a tick and its bus. A tick of one
//! channel reads only what [`TickCx`] shares (read-only) and writes only its own
//! lane, so channels render in parallel and the engine sums them in channel order:
//! the output does not depend on which thread rendered which channel.

use super::banks::{BankSlots, MAX_BANK_SLOTS, MAX_SNAPSHOT_BANKS};
use super::bus::{Bus, BusOut, ChannelInput};
use super::event::{Event, EventKind};
use super::snapshot::{ChannelConfig, SharedReverb, Snapshot, Source};
use super::voice::{Lines, Scratch, Voice, VoiceCtx, VoiceOut, VoiceSource, render_voices};
use super::{BEND_GLIDE_SECONDS, EngineStats, MAX_CHANNELS, MAX_VOICE_LIMIT, Queued, TICK_FRAMES, sampler};
use crate::dsp::glide::Glide;
use crate::dsp::reverb::Reverb;
use crate::params::{NUM_PARAMS, Param, ParamValues};
use crate::tables::Tables;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::{AcqRel, Relaxed};
use std::time::Instant;

/// `a += b`, sample by sample.
fn add(a: &mut [f32; TICK_FRAMES], b: &[f32; TICK_FRAMES]) {
    for (x, y) in a.iter_mut().zip(b) {
        *x += y;
    }
}

/// Adds a part's sum of voices into the channel's input.
fn add_input(input: &mut ChannelInput, p: &ChannelInput) {
    add(&mut input.mono, &p.mono);
    if p.stereo {
        add(&mut input.left, &p.left);
        add(&mut input.right, &p.right);
        input.stereo = true;
    }
    if p.sent {
        add(&mut input.chorus, &p.chorus);
        add(&mut input.reverb, &p.reverb);
        input.sent = true;
    }
}

/// Nanoseconds since `t0`, as a float (without the 128-bit conversion of `as_nanos`).
fn nanos_since(t0: Option<Instant>) -> f32 {
    t0.map_or(0.0, |t0| {
        let d = t0.elapsed();
        d.as_secs() as f32 * 1e9 + d.subsec_nanos() as f32
    })
}

/// Now, when the tick's costs are measured (see [`TickCx::timed`]).
#[inline]
fn clock(cx: &TickCx) -> Option<Instant> {
    cx.timed.then(Instant::now)
}

/// Extra voice slots of a channel, for its stolen voices fading out.
pub const STEAL_RESERVE: usize = 16;
/// Voice slots of one channel: its largest limit and the fading reserve.
pub const LANE_VOICES: usize = MAX_VOICE_LIMIT as usize + STEAL_RESERVE;
/// Keys a channel remembers for legato.
const KEY_STACK: usize = 16;
/// A channel sums its voices in parts in a tick that brings it no event and in
/// which it sounds at least this many voices; each part may be a work item of its
/// own, so that one heavy channel does not hold the other threads up.
pub const SPLIT_MIN_VOICES: usize = 16;
/// Voices in one part, at least.
pub const PART_MIN_VOICES: usize = 8;
/// Parts of one channel, at most.
pub const MAX_PARTS: usize = 8;
/// How fast a channel's measured cost follows its latest tick (a moving average).
const COST_SMOOTHING: f32 = 0.05;
/// Ticks a channel renders in one hand-off at most (see `Engine::process`).
pub const MAX_BATCH: usize = 8;

/// What a channel's ticks of a batch produced, kept for the engine's sum of each
/// tick (in channel order, after every channel has rendered the batch).
pub(super) struct BatchOut {
    /// The bus's output of each tick, valid where `ready`.
    pub l: [[f32; TICK_FRAMES]; MAX_BATCH],
    pub r: [[f32; TICK_FRAMES]; MAX_BATCH],
    pub ready: [bool; MAX_BATCH],
    /// The input of the reverb this channel shares with others, where it fed one.
    pub feed: [[f32; TICK_FRAMES]; MAX_BATCH],
    pub feed_key: [Option<SharedReverb>; MAX_BATCH],
}

impl BatchOut {
    fn new() -> Box<Self> {
        Box::new(BatchOut {
            l: [[0.0; TICK_FRAMES]; MAX_BATCH],
            r: [[0.0; TICK_FRAMES]; MAX_BATCH],
            ready: [false; MAX_BATCH],
            feed: [[0.0; TICK_FRAMES]; MAX_BATCH],
            feed_key: [None; MAX_BATCH],
        })
    }
}

/// Channels of one batch whose voices are handed out in parts, at most (their
/// parts' sums go into the engine's [`SplitBufs`]).
pub const MAX_SPLIT: usize = 2;

/// The sums of a channel's parts over the ticks of a batch, when its voices are
/// handed out in parts ([`Lane::plan_batch_split`]): part `p`'s sum of tick `t`
/// is `inputs[p * MAX_BATCH + t]`.
pub(super) struct SplitBufs {
    inputs: Box<[ChannelInput]>,
}

impl SplitBufs {
    pub fn new() -> Self {
        SplitBufs { inputs: (0..MAX_PARTS * MAX_BATCH).map(|_| ChannelInput::default()).collect() }
    }
}

/// What every channel's tick reads, shared read-only between the threads.
pub(super) struct TickCx<'a> {
    pub sr: f32,
    pub tables: &'a Tables,
    pub snapshot: &'a Snapshot,
    pub banks: &'a BankSlots,
    pub bank_map: &'a [u8; MAX_SNAPSHOT_BANKS],
    pub stats: &'a EngineStats,
    /// The tick's events, in order.
    pub events: &'a [Queued],
    /// The tick's first frame.
    pub start: u64,
    /// Indices of the voice-scope parameters.
    pub voice_params: &'a [usize],
    /// Ticks of silence after which a channel stops processing.
    pub idle_ticks: u32,
    /// Channels whose events go out to a MIDI device (bit per channel).
    pub external: u16,
    /// Whether the channels' work is timed this tick: only an engine on several
    /// threads uses the costs (to hand the work out), and reading the clock around
    /// every channel every tick costs a few percent on one.
    pub timed: bool,
}

impl TickCx<'_> {
    fn is_external(&self, ch: u8) -> bool {
        self.external & (1 << ch) != 0
    }
}

/// Per-channel engine state. It outlives snapshots: a channel keeps its bus (and
/// tails) and its CC positions across swaps.
pub(super) struct ChannelState {
    /// The channel as the current snapshot has it; `None` if not in the rig.
    pub config: Option<ChannelConfig>,
    /// Parameters of the last configuration, kept for the tail of a removed channel.
    pub last: ParamValues,
    /// Values set by CC (NaN = none): they hold until the set changes that parameter.
    pub overrides: [f32; NUM_PARAMS],
    pub target: ParamValues,
    /// Voice parameters, glided (voices read these).
    pub now: ParamValues,
    glides: [Glide; NUM_PARAMS],
    bend: Glide,
    pub bend_raw: i16,
    pub pedal: bool,
    /// Expression (CC11) as a gain on the channel's volume, 0..=1.
    pub expression: f32,
    /// The program selected by a program change (until the set changes the channel's instrument).
    pub program: Option<u8>,
    pub bus: Bus,
    pub input: ChannelInput,
    /// Controllers that sample voices follow (expression, sends, mod wheel, pressure).
    pub controls: sampler::ChannelControls,
    /// Registered parameter selected by CC101/CC100 (127/127: none).
    rpn: (u8, u8),
    /// Pitch-bend range set through RPN 0, in semitones (over the set's bend_range).
    rpn_bend_range: Option<f32>,
    /// Bank selected by CC0, for program changes on sampled channels.
    pub bank_select: u16,
    quiet_ticks: u32,
    /// Every voice parameter's glide and the bend rest on the targets of the last
    /// step (the next step changes nothing unless a target moves).
    voices_at_rest: bool,
    pub idle: bool,
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
    #[cfg(test)]
    fn new(sr: f32) -> Self {
        Self::with_bus(sr, Bus::new(sr, TICK_FRAMES))
    }

    fn with_bus(sr: f32, bus: Bus) -> Self {
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
            bus,
            input: ChannelInput::default(),
            controls: sampler::ChannelControls::default(),
            rpn: (127, 127),
            rpn_bend_range: None,
            bank_select: 0,
            quiet_ticks: 0,
            voices_at_rest: false,
            idle: true,
            keys: KeyStack { keys: [0; KEY_STACK], len: 0 },
            last_pitch: None,
        }
    }

    /// Takes the parameters' targets from the configuration, the CC overrides and
    /// the expression; returns whether any moved (bit for bit) since the last call.
    pub fn update_target(&mut self) -> bool {
        let before = self.target;
        self.target = self.next_target();
        before.0.iter().zip(&self.target.0).fold(false, |moved, (a, b)| moved | (a.to_bits() != b.to_bits()))
    }

    /// The parameters' targets [`ChannelState::update_target`] would take.
    fn next_target(&self) -> ParamValues {
        let base = self.config.as_ref().map(|c| &c.params).unwrap_or(&self.last);
        let mut target = self.target;
        for ((t, &o), &b) in target.0.iter_mut().zip(&self.overrides).zip(&base.0) {
            *t = if o.is_nan() { b } else { o };
        }
        target.0[Param::Volume as usize] *= self.expression;
        target
    }

    /// Whether the next tick's step (targets and glides) changes nothing: the
    /// targets stay where they are, and every voice parameter's glide and the bend
    /// rest on them. Then so does every step after it until an event comes.
    fn rests(&self) -> bool {
        let b = self.bend_target();
        self.voices_at_rest
            && self.bend.value().to_bits() == b.to_bits()
            && b.is_finite()
            && self.next_target().0.iter().zip(&self.target.0).all(|(a, b)| a.to_bits() == b.to_bits())
    }

    fn bend_target(&self) -> f32 {
        let range = self.rpn_bend_range.unwrap_or(self.target.get(Param::BendRange));
        self.bend_raw as f32 / 8192.0 * range
    }

    /// Steps voice parameters and pitch bend one tick. With the targets where they
    /// were (`targets_moved` false) and every glide resting on its target, a step
    /// changes nothing, so none is taken.
    fn step_voice_params(&mut self, voice_params: &[usize], targets_moved: bool) {
        let b = self.bend_target();
        let bend_rests = self.bend.value().to_bits() == b.to_bits() && b.is_finite();
        if self.voices_at_rest && !targets_moved && bend_rests {
            return;
        }
        let mut rest = bend_rests;
        for &i in voice_params {
            let t = self.target.0[i];
            self.glides[i].step(t, TICK_FRAMES);
            let v = self.glides[i].value();
            self.now.0[i] = v;
            rest &= v.to_bits() == t.to_bits() && t.is_finite();
        }
        self.bend.step(b, TICK_FRAMES);
        self.voices_at_rest = rest;
    }

    /// Jumps every glide to its target (nothing is sounding to glide from).
    pub fn snap(&mut self) {
        for i in 0..NUM_PARAMS {
            self.glides[i].reset(self.target.0[i]);
            self.now.0[i] = self.target.0[i];
        }
        self.bend.reset(self.bend_target());
        self.voices_at_rest = self.target.0.iter().all(|x| x.is_finite()) && self.bend.value().is_finite();
        self.bus.snap(&self.target);
    }
}

/// A channel playing a program's instrument, keeping the channel's volume and pan.
pub(super) fn with_program(channel: ChannelConfig, program: ChannelConfig) -> ChannelConfig {
    let mut c = program;
    c.params.set(Param::Volume, channel.params.get(Param::Volume));
    c.params.set(Param::Pan, channel.params.get(Param::Pan));
    c.voice_limit = channel.voice_limit;
    c
}

/// The preset a program change selects on a sampled channel playing `base`: the
/// bank's preset at (selected bank, program), else bank 0's (a kit: bank 128's,
/// else its first kit). Audio thread: a binary search, no allocation.
pub(super) fn sampled_program(
    banks: &BankSlots,
    bank_map: &[u8; MAX_SNAPSHOT_BANKS],
    base: ChannelConfig,
    bank_select: u16,
    program: u8,
) -> Option<ChannelConfig> {
    let Source::Sampled { bank, preset } = base.source else { return None };
    let b = banks.get(*bank_map.get(bank as usize)?)?;
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

/// One part of a channel's voices: their sum over a tick, and its scratch. Which
/// voices a part holds follows from the channel's data alone (positions in its
/// active list), so the sum is the same whichever thread renders which part.
pub(super) struct Part {
    input: ChannelInput,
    wave: [f32; TICK_FRAMES],
    env: [f32; TICK_FRAMES],
    /// Its voices: positions `from..to` of the channel's active list.
    from: usize,
    to: usize,
    /// A voice of the part ended this tick.
    ended: bool,
    /// What rendering it took, in nanoseconds (for handing out the costliest first).
    nanos: f32,
}

impl Part {
    fn new() -> Self {
        Part {
            input: ChannelInput::default(),
            wave: [0.0; TICK_FRAMES],
            env: [0.0; TICK_FRAMES],
            from: 0,
            to: 0,
            ended: false,
            nanos: 0.0,
        }
    }
}

/// One channel: its state, its voices, and what its tick produced.
pub(super) struct Lane {
    /// The channel, 0-based.
    pub ch: u8,
    pub st: ChannelState,
    /// The voice slots made so far, of room for [`LANE_VOICES`] (see
    /// [`ChannelParts::new`]); none until the lane is built.
    pub voices: Vec<Voice>,
    /// Slots of sounding voices, in pitch order.
    pub active: Vec<u16>,
    /// Free slots.
    free: Vec<u16>,
    /// The channel's voice slots and bus are here ([`Lane::fit`]); until then its
    /// bus is a placeholder and it starts no voice.
    built: bool,
    /// Where new voice slots borrow delay lines from.
    lines: std::sync::Arc<Lines>,
    /// Voices started on this channel (start order, and the voices' noise seeds).
    serial: u64,
    wave: [f32; TICK_FRAMES],
    env: [f32; TICK_FRAMES],
    /// The bus's output of this tick, valid when `out_ready`.
    pub out_l: [f32; TICK_FRAMES],
    pub out_r: [f32; TICK_FRAMES],
    pub out_ready: bool,
    /// The channel's sends wait for the shared send effects (the bus runs after).
    pub send_pending: bool,
    /// Voices started and ended per bank slot this tick (the engine settles them).
    pub banks_started: [u16; MAX_BANK_SLOTS],
    pub banks_ended: [u16; MAX_BANK_SLOTS],
    pub banks_touched: bool,
    /// Parts of this tick's voice sum (0: the voices add into the input directly).
    parts: Box<[Part]>,
    n_parts: usize,
    /// Parts not yet rendered this tick; the thread that renders the last one
    /// finishes the channel.
    parts_left: AtomicUsize,
    /// What this tick took, in nanoseconds, and its moving average over the ticks.
    spent_nanos: f32,
    pub cost_nanos: f32,
    /// Its ticks of a batch, in two halves: batches use them in turn, so that one
    /// batch's ticks can be summed while the next batch's channels render.
    pub batch: [Box<BatchOut>; 2],
}

/// Work of a tick, as handed to a thread: a whole channel, one part of its voices
/// (the last part to finish runs the rest of the channel), or the preparation of a
/// shared reverb (`Reverb::prepare`, which needs none of the channels' output).
#[derive(Clone, Copy)]
pub(super) struct Work {
    lane: *mut Lane,
    /// The lane's voices and parts (for a part).
    voices: *mut Voice,
    parts: *mut Part,
    /// `usize::MAX`: the whole channel.
    part: usize,
    /// A shared reverb to prepare (then `lane` is null), and where its time goes.
    reverb: *mut Reverb,
    spent_nanos: *mut f32,
    /// Its expected cost, in nanoseconds.
    pub cost: f32,
}

// SAFETY: a `Work` points into the engine's lanes or shared reverbs, which outlive
// the job it is part of; the engine hands each `Work` to one thread, and distinct
// `Work`s of one tick touch distinct data (a whole channel, distinct voices and
// parts of one, or one shared reverb).
unsafe impl Send for Work {}

impl Work {
    /// No work (a placeholder in a list of work).
    pub const NONE: Work = Work {
        lane: std::ptr::null_mut(),
        voices: std::ptr::null_mut(),
        parts: std::ptr::null_mut(),
        part: usize::MAX,
        reverb: std::ptr::null_mut(),
        spent_nanos: std::ptr::null_mut(),
        cost: 0.0,
    };

    /// The preparation of a tick of `reverb` (its settings already made), its time
    /// written to `spent_nanos`.
    ///
    /// # Safety
    /// Both point at live data that nothing else uses until the job ends.
    pub unsafe fn reverb(reverb: *mut Reverb, spent_nanos: *mut f32, cost: f32) -> Work {
        Work { reverb, spent_nanos, cost, ..Work::NONE }
    }

    /// The whole of channel `lane`.
    ///
    /// # Safety
    /// `lane` points at a live lane that nothing else uses meanwhile.
    pub unsafe fn whole(lane: *mut Lane) -> Work {
        // SAFETY: as the contract says.
        let cost = unsafe { (*lane).cost_nanos };
        Work { lane, cost, ..Work::NONE }
    }

    /// Each part of the voices of `lane` (planned by `Lane::plan_parts`) as a work
    /// item of its own, into `out`; returns how many.
    ///
    /// # Safety
    /// As for [`Work::whole`].
    pub unsafe fn parts(lane: *mut Lane, out: &mut [Work]) -> usize {
        // SAFETY: as the contract says; the references end before this returns.
        unsafe {
            let l = &mut *lane;
            let n = l.n_parts.min(out.len());
            let per_voice = l.cost_nanos / l.active.len().max(1) as f32;
            for (p, w) in out[..n].iter_mut().enumerate() {
                let voices_in_part = l.parts[p].to - l.parts[p].from;
                *w = Work { lane, part: p, cost: per_voice * voices_in_part as f32, ..Work::NONE };
            }
            // Pointers taken last, so that no reference made here outlives them.
            let (voices, parts) = (l.voices.as_mut_ptr(), l.parts.as_mut_ptr());
            for w in &mut out[..n] {
                w.voices = voices;
                w.parts = parts;
            }
            n
        }
    }

    /// Whether this is a shared reverb's preparation (rather than a channel's work).
    pub fn is_reverb(&self) -> bool {
        !self.reverb.is_null()
    }

    /// Parts the channel was planned in this tick (0: it runs whole).
    ///
    /// # Safety
    /// As for [`Work::whole`].
    pub unsafe fn planned_parts(lane: *const Lane) -> usize {
        // SAFETY: as the contract says.
        unsafe { (*lane).n_parts }
    }

    /// Prepares the shared reverb of a reverb item and returns true; returns false
    /// for a channel's item. Audio thread or a worker.
    ///
    /// # Safety
    /// The reverb outlives the call, and no other thread works on the same item.
    pub unsafe fn run_reverb(&mut self) -> bool {
        if self.reverb.is_null() {
            return false;
        }
        let t0 = Some(Instant::now());
        // SAFETY: the reverb and its time are this thread's alone (the contract).
        unsafe {
            (*self.reverb).prepare(TICK_FRAMES);
            *self.spent_nanos = nanos_since(t0);
        }
        true
    }

    /// Renders this item. Audio thread or a worker.
    ///
    /// # Safety
    /// The lane outlives the call, and no other thread works on the same item or,
    /// for a whole channel, on any part of it.
    pub unsafe fn run(&mut self, cx: &TickCx) {
        // SAFETY: as the contract says.
        if unsafe { self.run_reverb() } {
            return;
        }
        if self.part == usize::MAX {
            // SAFETY: the whole channel is this thread's (the contract).
            unsafe { (*self.lane).tick(cx) };
            return;
        }
        // SAFETY: the lane was planned and its list of voices does not change until
        // every part is done; part `self.part` and its voices are this thread's
        // alone. Only shared references to the rest of the lane are made, and they
        // end before the count of parts left is taken down.
        unsafe {
            let lane = self.lane as *const Lane;
            let part = &mut *self.parts.add(self.part);
            Lane::render_part(&(*lane).st, &(*lane).active, self.voices, part, cx);
            if (*lane).parts_left.fetch_sub(1, AcqRel) == 1 {
                // The last part: every other part is done with the lane.
                (*self.lane).finish_parts(cx);
            }
        }
    }
}

/// The sample rate of a placeholder's bus ([`ChannelParts::placeholder`]): its
/// delay lines, reverb and chorus are sized by it, so at 1 Hz they take next to
/// nothing to build.
const PLACEHOLDER_RATE: f32 = 1.0;

/// What a channel needs before it can sound: its voice slots and its bus, with
/// their buffers (pre-faulted where buffers are: the live host). The engine starts
/// with the channels its first snapshot configures built, the others as
/// placeholders; a channel a later snapshot first names is built on the control
/// side ([`Prebuilt::provide`]) and handed to the engine with it, which swaps it in
/// at adoption and sends the placeholder back to be freed ([`super::Garbage`]).
pub struct ChannelParts {
    voices: Vec<Voice>,
    free: Vec<u16>,
    bus: Bus,
}

impl ChannelParts {
    /// Allocates a channel's voice pool, whose voices borrow delay lines from
    /// `lines`, and its bus (control side). Where buffers are pre-faulted (the live
    /// host), every slot is made here; otherwise (an offline render) the pool's room
    /// is reserved and a slot is made when the channel first needs it (a push within
    /// the room: no allocation), so slots a render never plays take no memory.
    pub fn new(sr: f32, lines: &std::sync::Arc<Lines>) -> Self {
        let eager = crate::dsp::prefaults();
        let mut voices = Vec::with_capacity(LANE_VOICES);
        let mut free = Vec::with_capacity(LANE_VOICES);
        if eager {
            voices.extend((0..LANE_VOICES).map(|_| Voice::new(lines)));
            free.extend((0..LANE_VOICES as u16).rev());
        }
        ChannelParts { voices, free, bus: Bus::new(sr, TICK_FRAMES) }
    }

    /// A placeholder: no voice slots, and a bus at [`PLACEHOLDER_RATE`], whose
    /// buffers (sized by the rate) hold a few hundred samples in all. The engine
    /// never runs it: a channel that has never been configured starts no voice and
    /// stays idle, and its bus is swapped for a real one before it is configured.
    fn placeholder() -> Self {
        ChannelParts { voices: Vec::new(), free: Vec::new(), bus: Bus::new(PLACEHOLDER_RATE, TICK_FRAMES) }
    }
}

/// The channels built ahead for the engine, one slot each: the control side fills
/// a channel's slot before it publishes the first snapshot that configures it (and
/// never again), the engine empties it when it adopts such a snapshot. Lock-free,
/// no allocation on the engine's side.
pub struct Prebuilt {
    slots: [crossbeam_queue::ArrayQueue<Box<ChannelParts>>; MAX_CHANNELS],
    /// The channels whose parts have been built (control side only).
    provided: std::sync::atomic::AtomicU32,
    lines: std::sync::Arc<Lines>,
}

impl Prebuilt {
    pub fn new(lines: std::sync::Arc<Lines>) -> std::sync::Arc<Self> {
        std::sync::Arc::new(Prebuilt {
            slots: std::array::from_fn(|_| crossbeam_queue::ArrayQueue::new(1)),
            provided: std::sync::atomic::AtomicU32::new(0),
            lines,
        })
    }

    /// Builds the parts of every channel `snapshot` configures that has none yet, at
    /// `sample_rate`. Control side, before the snapshot is published.
    pub fn provide(&self, snapshot: &Snapshot, sample_rate: f32) {
        let mut provided = self.provided.load(Relaxed);
        for (ch, slot) in self.slots.iter().enumerate() {
            if snapshot.channels[ch].is_none() || provided & (1 << ch) != 0 {
                continue;
            }
            if slot.push(Box::new(ChannelParts::new(sample_rate, &self.lines))).is_ok() {
                provided |= 1 << ch;
            }
        }
        self.provided.store(provided, Relaxed);
    }

    /// The channels built so far (bit `ch`), handed over or waiting.
    pub fn provided(&self) -> u32 {
        self.provided.load(Relaxed)
    }

    /// The channels whose parts wait for the engine (bit `ch`).
    pub fn waiting(&self) -> u32 {
        self.slots.iter().enumerate().filter(|(_, s)| !s.is_empty()).fold(0, |m, (ch, _)| m | 1 << ch)
    }

    /// Channel `ch`'s parts, if they wait. Audio thread: no allocation.
    pub(super) fn take(&self, ch: usize) -> Option<Box<ChannelParts>> {
        self.slots.get(ch)?.pop()
    }
}

impl Lane {
    /// A channel that is not built yet: its state, with a placeholder for its voice
    /// slots and bus until [`Lane::fit`] (control side).
    pub fn unbuilt(ch: u8, sr: f32, lines: &std::sync::Arc<Lines>) -> Self {
        let ChannelParts { voices, free, bus } = ChannelParts::placeholder();
        Lane {
            ch,
            st: ChannelState::with_bus(sr, bus),
            voices,
            active: Vec::with_capacity(LANE_VOICES),
            free,
            built: false,
            lines: lines.clone(),
            serial: 0,
            wave: [0.0; TICK_FRAMES],
            env: [0.0; TICK_FRAMES],
            out_l: [0.0; TICK_FRAMES],
            out_r: [0.0; TICK_FRAMES],
            out_ready: false,
            send_pending: false,
            banks_started: [0; MAX_BANK_SLOTS],
            banks_ended: [0; MAX_BANK_SLOTS],
            banks_touched: false,
            parts: (0..MAX_PARTS).map(|_| Part::new()).collect(),
            n_parts: 0,
            parts_left: AtomicUsize::new(0),
            spent_nanos: 0.0,
            cost_nanos: 0.0,
            batch: [BatchOut::new(), BatchOut::new()],
        }
    }

    /// Whether the channel's voice slots and bus are in place.
    pub fn is_built(&self) -> bool {
        self.built
    }

    /// Puts `parts` in place of the placeholder, which it returns in the same box
    /// (to be freed on the control side). The lane has never sounded, so its bus
    /// takes over from a placeholder that was never run: the channel sounds as if it
    /// had been built at the start. Audio thread: no allocation, nothing freed.
    pub fn fit(&mut self, mut parts: Box<ChannelParts>) -> Box<ChannelParts> {
        debug_assert!(!self.built && self.active.is_empty());
        std::mem::swap(&mut self.voices, &mut parts.voices);
        std::mem::swap(&mut self.free, &mut parts.free);
        std::mem::swap(&mut self.st.bus, &mut parts.bus);
        self.built = true;
        parts
    }

    /// Calls `f` on every sounding voice.
    pub fn for_sounding(&mut self, mut f: impl FnMut(&mut Voice)) {
        for &slot in &self.active {
            let v = &mut self.voices[slot as usize];
            if v.active {
                f(v);
            }
        }
    }

    fn bank_started(&mut self, slot: u8) {
        if let Some(n) = self.banks_started.get_mut(slot as usize) {
            *n += 1;
            self.banks_touched = true;
        }
    }

    fn bank_ended(&mut self, slot: u8) {
        if let Some(n) = self.banks_ended.get_mut(slot as usize) {
            *n += 1;
            self.banks_touched = true;
        }
    }

    /// Whether this tick's events leave the channel alone (an event of another
    /// channel may reach it through the CC map, a panic reaches every channel).
    fn untouched_by(&self, events: &[Queued], cx: &TickCx) -> bool {
        events.iter().all(|q| match q.ev.kind {
            EventKind::Panic => false,
            EventKind::Control { channel, cc, .. } => {
                channel != self.ch && !cx.snapshot.cc_map.iter().any(|m| m.cc == cc)
            }
            k => k.channel() != Some(self.ch),
        })
    }

    /// Plans the tick of a channel that sounds at least [`SPLIT_MIN_VOICES`] voices
    /// and that no event of the tick reaches: its parameters step now, and its
    /// voices are summed in parts (at most [`MAX_PARTS`], of at least
    /// [`PART_MIN_VOICES`] voices each, in the order of its active list). Returns
    /// the number of parts, 0 if the channel does not qualify (its tick then runs
    /// whole, as [`Lane::tick`]). Which voices make a part depends on the channel's
    /// data alone, never on the threads. Audio thread.
    pub fn plan_parts(&mut self, cx: &TickCx) -> usize {
        self.n_parts = 0;
        let n = self.active.len();
        if self.st.idle || n < SPLIT_MIN_VOICES || !self.untouched_by(cx.events, cx) {
            return 0;
        }
        self.begin(cx);
        self.partition()
    }

    /// Shares the active voices out in parts (their positions in the active list),
    /// as many as [`Lane::plan_parts`] says; returns how many.
    fn partition(&mut self) -> usize {
        let n = self.active.len();
        let parts = (n / PART_MIN_VOICES).min(MAX_PARTS);
        for (p, part) in self.parts[..parts].iter_mut().enumerate() {
            part.from = p * n / parts;
            part.to = (p + 1) * n / parts;
            part.input.clear();
            part.ended = false;
            part.nanos = 0.0;
        }
        self.n_parts = parts;
        self.parts_left.store(parts, Relaxed);
        parts
    }

    /// Whether the channel's voices can be handed out in parts over a whole batch
    /// (whose ticks' contexts are `cxs`; none: the events not yet known): it sounds
    /// at least [`SPLIT_MIN_VOICES`] voices, no event of the batch reaches it, every
    /// tick's step changes nothing (its parameters and bend rest), and none of its
    /// voices can end before the batch's last tick. Then each tick's parts hold the
    /// same voices and read the same parameters as when the ticks render one after
    /// the other, so each part can render all the batch's ticks on its own.
    pub fn splits_over(&self, cxs: &[TickCx]) -> bool {
        let frames = cxs.len().max(MAX_BATCH) * TICK_FRAMES;
        !self.st.idle
            && self.active.len() >= SPLIT_MIN_VOICES
            && cxs.iter().all(|cx| self.untouched_by(cx.events, cx))
            && self.st.rests()
            && self.active.iter().all(|&slot| self.voices[slot as usize].lasts(&self.st.now, frames))
    }

    /// The measured cost of each part [`Lane::partition`] would make, into `out`;
    /// returns how many.
    pub fn part_costs(&self, out: &mut [f32]) -> usize {
        let n = self.active.len();
        let parts = (n / PART_MIN_VOICES).min(MAX_PARTS).min(out.len());
        let per_voice = self.cost_nanos / n.max(1) as f32;
        for (p, c) in out[..parts].iter_mut().enumerate() {
            *c = per_voice * ((p + 1) * n / parts - p * n / parts) as f32;
        }
        parts
    }

    /// The lane's voices and parts, for [`Lane::run_batch_part`] (taken last, after
    /// the batch is planned).
    pub fn split_ptrs(&mut self) -> (*mut Voice, *mut Part) {
        (self.voices.as_mut_ptr(), self.parts.as_mut_ptr())
    }

    /// Plans a batch whose ticks the channel renders with its voices in parts
    /// ([`Lane::splits_over`] holds): the first tick's step now (the others' change
    /// nothing), and the parts. Returns how many. Audio thread.
    pub fn plan_batch_split(&mut self, cx: &TickCx) -> usize {
        self.begin(cx);
        self.partition()
    }

    /// Part `p` of a channel planned by [`Lane::plan_batch_split`]: its voices over
    /// the batch's `n` ticks (contexts from `cx_of`) into `bufs`; the thread that
    /// renders the last part then finishes each tick ([`Lane::finish_batch_split`]),
    /// into half `h` of the batch outputs. Audio thread or a worker.
    ///
    /// # Safety
    /// `lane`, `voices` (its voices), `parts` (its parts) and `bufs` are live; no
    /// other thread touches part `p`, its voices or its sums in `bufs` meanwhile, and
    /// nothing changes the lane until every part is done.
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn run_batch_part<'c>(
        lane: *mut Lane,
        voices: *mut Voice,
        parts: *mut Part,
        p: usize,
        bufs: *mut SplitBufs,
        h: usize,
        n: usize,
        cx_of: &dyn Fn(usize) -> TickCx<'c>,
    ) {
        // SAFETY: the contract. Only shared references to the rest of the lane are
        // made, and they end before the count of parts left is taken down.
        unsafe {
            let l = lane as *const Lane;
            let part = &mut *parts.add(p);
            let inputs = (*bufs).inputs.as_mut_ptr().add(p * MAX_BATCH);
            part.ended = false;
            for t in 0..n {
                let cx = cx_of(t);
                let t0 = clock(&cx);
                let input = &mut *inputs.add(t);
                input.clear();
                let Part { wave, env, from, to, .. } = &mut *part;
                let slots = &(&(*l).active)[*from..*to];
                let ended = Lane::render_part_into(&(*l).st, slots, voices, wave, env, input, &cx);
                debug_assert!(!ended || t + 1 == n, "a voice of a channel split over a batch ended early");
                part.ended |= ended;
                part.nanos += nanos_since(t0);
            }
            if (*l).parts_left.fetch_sub(1, AcqRel) == 1 {
                // The last part: every other part is done with the lane.
                (*lane).finish_batch_split(h, n, &*bufs, cx_of);
            }
        }
    }

    /// The rest of each tick of a batch whose voices rendered in parts, in tick
    /// order, as [`Lane::batch_tick`] would run it: the step (the first tick's was
    /// taken when planned), the parts' sums added in part order, ended voices freed
    /// (only the last tick's can end), the bus, the output kept in half `h`.
    fn finish_batch_split<'c>(&mut self, h: usize, n: usize, bufs: &SplitBufs, cx_of: &dyn Fn(usize) -> TickCx<'c>) {
        for t in 0..n {
            let cx = cx_of(t);
            let t0 = clock(&cx);
            if t > 0 {
                self.begin(&cx);
            }
            let input = &mut self.st.input;
            for p in 0..self.n_parts {
                add_input(input, &bufs.inputs[p * MAX_BATCH + t]);
            }
            if t + 1 == n {
                let mut ended = false;
                for part in &self.parts[..self.n_parts] {
                    ended |= part.ended;
                    self.spent_nanos += part.nanos;
                }
                if ended {
                    self.free_ended();
                }
            }
            self.end(&cx);
            self.spent_nanos += nanos_since(t0);
            self.keep_batch_out(h, t);
        }
    }

    /// The parameters' step at the start of a tick.
    fn begin(&mut self, cx: &TickCx) {
        self.out_ready = false;
        self.send_pending = false;
        if !self.st.idle {
            let moved = self.st.update_target();
            self.st.step_voice_params(cx.voice_params, moved);
            self.st.input.clear();
        }
    }

    /// Renders the voices of `part` over the whole tick into its own input.
    ///
    /// # Safety
    /// `voices` points at the lane's voices, and no other thread touches the voices
    /// at the part's positions of `active` during the call.
    unsafe fn render_part(st: &ChannelState, active: &[u16], voices: *mut Voice, part: &mut Part, cx: &TickCx) {
        let t0 = clock(cx);
        let Part { input, wave, env, from, to, .. } = part;
        // SAFETY: the contract.
        let ended = unsafe { Lane::render_part_into(st, &active[*from..*to], voices, wave, env, input, cx) };
        part.ended = ended;
        part.nanos = nanos_since(t0);
    }

    /// Renders the voices at `slots` over the whole tick into `input`, with the
    /// scratch `wave` and `env`; returns whether one ended.
    ///
    /// # Safety
    /// As for [`Lane::render_part`], for the voices at `slots`.
    unsafe fn render_part_into(
        st: &ChannelState,
        slots: &[u16],
        voices: *mut Voice,
        wave: &mut [f32; TICK_FRAMES],
        env: &mut [f32; TICK_FRAMES],
        input: &mut ChannelInput,
        cx: &TickCx,
    ) -> bool {
        let mut scratch = Scratch { wave, env };
        let ctx = VoiceCtx {
            sample_rate: cx.sr,
            tables: cx.tables,
            params: &st.now,
            bend: st.bend.value(),
            banks: cx.banks,
            controls: st.controls,
        };
        let out = VoiceOut {
            mono: &mut input.mono,
            left: &mut input.left,
            right: &mut input.right,
            chorus: &mut input.chorus,
            reverb: &mut input.reverb,
            stereo: &mut input.stereo,
            sent: &mut input.sent,
        };
        // SAFETY: the slots are this part's (the contract).
        unsafe { render_voices(voices, slots, &ctx, &mut scratch, out) }
    }

    /// A channel planned in parts, rendered whole on this thread: every part in
    /// order, then the rest of the tick.
    pub fn tick_parts(&mut self, cx: &TickCx) {
        for p in 0..self.n_parts {
            let voices = self.voices.as_mut_ptr();
            // SAFETY: this thread holds the whole lane.
            unsafe { Lane::render_part(&self.st, &self.active, voices, &mut self.parts[p], cx) };
        }
        self.finish_parts(cx);
    }

    /// The rest of a tick planned in parts, once every part is rendered: the
    /// parts' sums added into the channel's input in part order, ended voices
    /// freed, then the bus. Audio thread or a worker.
    fn finish_parts(&mut self, cx: &TickCx) {
        let t0 = clock(cx);
        let input = &mut self.st.input;
        let mut ended = false;
        for part in &self.parts[..self.n_parts] {
            add_input(input, &part.input);
            ended |= part.ended;
            self.spent_nanos += part.nanos;
        }
        if ended {
            self.free_ended();
        }
        self.end(cx);
        self.spent_nanos += nanos_since(t0);
    }

    /// Takes this tick's measured time into the channel's moving cost. Audio thread.
    pub fn settle_cost(&mut self) {
        self.cost_nanos += (self.spent_nanos - self.cost_nanos) * COST_SMOOTHING;
        self.spent_nanos = 0.0;
    }

    /// The same after `ticks` ticks (a batch): their mean time. Audio thread.
    pub fn settle_cost_over(&mut self, ticks: usize) {
        self.spent_nanos /= ticks.max(1) as f32;
        self.settle_cost();
    }

    /// Tick `t` of a batch, as the engine's tick would run it: when an event of
    /// the tick reaches the channel (`reached`) or it is not idle, its parts are
    /// planned and it ticks; its output (and its shared reverb's input) is kept in
    /// half `h` of `batch` for the tick's sum (the other half is left alone: the
    /// engine may be summing it meanwhile). The channel's sends must not wait for the
    /// shared send effects (no sample voice sounds in a batch). Audio thread or a
    /// worker.
    pub fn batch_tick(&mut self, h: usize, t: usize, reached: bool, cx: &TickCx) {
        if !reached && self.st.idle {
            self.batch[h].ready[t] = false;
            return;
        }
        self.plan_parts(cx);
        self.tick(cx);
        self.keep_batch_out(h, t);
    }

    /// Keeps tick `t`'s output (and its shared reverb's input) in half `h` of the
    /// batch outputs.
    fn keep_batch_out(&mut self, h: usize, t: usize) {
        debug_assert!(!self.send_pending, "a batch has no sends to the shared effects");
        let b = &mut *self.batch[h];
        b.ready[t] = self.out_ready;
        b.feed_key[t] = None;
        if self.out_ready {
            b.l[t] = self.out_l;
            b.r[t] = self.out_r;
            if let Some((key, feed)) = self.st.bus.shared_reverb_feed() {
                b.feed_key[t] = Some(key);
                b.feed[t] = *feed;
            }
        }
    }

    /// The first part of a tick: parameters step, the tick's events apply at their
    /// frames with the voices rendered between them, then the bus runs (unless the
    /// channel's sends wait for the shared send effects). Audio thread or a worker.
    pub fn tick(&mut self, cx: &TickCx) {
        if self.n_parts > 0 {
            self.tick_parts(cx);
            return;
        }
        let t0 = clock(cx);
        self.begin(cx);
        let mut offset = 0usize;
        for q in cx.events {
            let at = (q.ev.frame.saturating_sub(cx.start) as usize).min(TICK_FRAMES);
            if at > offset {
                self.render_voices(offset, at, cx);
                offset = at;
            }
            self.event(q.ev, cx);
        }
        if offset < TICK_FRAMES {
            self.render_voices(offset, TICK_FRAMES, cx);
        }
        self.end(cx);
        self.spent_nanos += nanos_since(t0);
    }

    /// The end of a tick, once the voices are summed: the bus runs, unless the
    /// channel's sends wait for the shared send effects.
    fn end(&mut self, cx: &TickCx) {
        cx.stats.voices[self.ch as usize].store(self.active.len() as u32, Relaxed);
        if self.active.is_empty() && self.st.idle {
            return;
        }
        self.st.idle = false;
        if self.st.input.sent {
            self.send_pending = true;
            return;
        }
        self.run_bus(cx);
    }

    /// The bus over the tick's input, into `out_l`/`out_r`; a channel silent long
    /// enough goes idle. Audio thread or a worker.
    pub fn run_bus(&mut self, cx: &TickCx) {
        let st = &mut self.st;
        let shared_reverb = cx.snapshot.shared_reverbs[self.ch as usize];
        st.bus.process(&st.input, &st.target, BusOut { left: &mut self.out_l, right: &mut self.out_r, shared_reverb });
        let (peak, finite) = crate::dsp::math::stereo_peak(&self.out_l, &self.out_r);
        if !finite {
            cx.stats.faults.fetch_add(1, Relaxed);
            st.bus.clear();
            return;
        }
        self.out_ready = true;
        cx.stats.peaks[self.ch as usize].fetch_max(peak.to_bits(), Relaxed);
        if self.active.is_empty() && peak < 1e-5 {
            st.quiet_ticks += 1;
            // Silence between echoes is not the end: wait longer than an echo period.
            if st.quiet_ticks >= cx.idle_ticks
                && st.quiet_ticks as f32 * TICK_FRAMES as f32 >= st.bus.silent_gap_seconds(&st.target) * cx.sr
            {
                st.idle = true;
            }
        } else {
            st.quiet_ticks = 0;
        }
    }

    fn render_voices(&mut self, from: usize, to: usize, cx: &TickCx) {
        let mut scratch = Scratch { wave: &mut self.wave[..to - from], env: &mut self.env[..to - from] };
        let st = &mut self.st;
        // The same for every voice of the tick.
        let ctx = VoiceCtx {
            sample_rate: cx.sr,
            tables: cx.tables,
            params: &st.now,
            bend: st.bend.value(),
            banks: cx.banks,
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
        // SAFETY: the active slots are distinct voices of this lane, which this
        // thread holds.
        let ended = unsafe { render_voices(self.voices.as_mut_ptr(), &self.active, &ctx, &mut scratch, out) };
        if ended {
            self.free_ended();
        }
    }

    /// Frees the slots of voices that ended, keeping the active list's order.
    fn free_ended(&mut self) {
        let (voices, free) = (&self.voices, &mut self.free);
        let (ended_banks, touched) = (&mut self.banks_ended, &mut self.banks_touched);
        self.active.retain(|&slot| {
            let v = &voices[slot as usize];
            if !v.active {
                free.push(slot);
                if let VoiceSource::Sample { slot: b } = v.source
                    && let Some(n) = ended_banks.get_mut(b as usize)
                {
                    *n += 1;
                    *touched = true;
                }
            }
            v.active
        });
    }

    /// Applies what `ev` does to this channel (an event of another channel may
    /// reach it through the CC map; a panic reaches every channel).
    fn event(&mut self, ev: Event, cx: &TickCx) {
        match ev.kind {
            EventKind::Panic => self.panic(cx),
            EventKind::Control { channel, cc, value } => {
                if (channel as usize) < MAX_CHANNELS && !cx.is_external(channel) {
                    self.control(channel, cc, value, cx);
                }
            }
            k => {
                if k.channel() == Some(self.ch) && !cx.is_external(self.ch) {
                    self.apply(ev, cx);
                }
            }
        }
    }

    /// Applies an event of this channel (not a controller: see [`Lane::control`]).
    fn apply(&mut self, ev: Event, cx: &TickCx) {
        let ch = self.ch as usize;
        match ev.kind {
            EventKind::NoteOn { note, velocity, .. } => self.note_on(note, velocity, cx),
            EventKind::NoteOff { note, .. } => {
                let st = &mut self.st;
                st.keys.remove(note);
                let (pedal, params, sr) = (st.pedal, st.target, cx.sr);
                if params.get(Param::Legato) > 0.5
                    && let Some(back) = st.keys.last()
                {
                    // Legato: releasing the sounding key returns to the last one held.
                    let glide = st.now.get(Param::Glide);
                    let voices = &mut self.voices;
                    if let Some(&slot) = self.active.iter().find(|&&s| {
                        let v = &voices[s as usize];
                        v.active && v.note == note && v.held && v.steal_left == 0
                    }) {
                        voices[slot as usize].retarget(back, glide);
                        return;
                    }
                }
                for &slot in &self.active {
                    let v = &mut self.voices[slot as usize];
                    if v.active && v.note == note && v.held {
                        v.key_up(pedal, &params, sr);
                    }
                }
            }
            EventKind::Param { param, value, .. } => {
                let p = param as usize;
                if p < NUM_PARAMS && value.is_finite() {
                    self.st.overrides[p] = value;
                    cx.stats.overrides[ch][p].store(value.to_bits(), Relaxed);
                }
            }
            EventKind::PitchBend { value, .. } => {
                self.st.bend_raw = value.clamp(-8192, 8191);
                cx.stats.bends[ch].store(self.st.bend_raw as i32 as u32, Relaxed);
            }
            EventKind::Program { program, .. } => self.program_change(program, cx),
            EventKind::Pressure { value, .. } => self.st.controls.pressure = value,
            _ => {}
        }
    }

    /// Everything fades out at once; the pedal up, the bend centred.
    fn panic(&mut self, cx: &TickCx) {
        for &slot in &self.active {
            self.voices[slot as usize].steal(cx.sr);
        }
        self.st.pedal = false;
        self.st.bend_raw = 0;
        cx.stats.pedals[self.ch as usize].store(false, Relaxed);
        cx.stats.bends[self.ch as usize].store(0, Relaxed);
    }

    fn note_on(&mut self, note: u8, velocity: u8, cx: &TickCx) {
        let Some(cfg) = self.st.config else {
            return;
        };
        if !self.built {
            // Its parts have not come (the control side provides them before any
            // snapshot that configures the channel, so this does not happen).
            return;
        }
        let source = match cfg.source {
            Source::Synth(s) => VoiceSource::Synth(s),
            Source::Sampled { bank, preset } => {
                self.sample_note_on(note, velocity, bank, preset, &cfg, cx);
                return;
            }
            Source::Drums => {
                if let Some((bank, preset)) = cx.snapshot.user_kit
                    && self.sample_note_on(note, velocity, bank, preset, &cfg, cx)
                {
                    return;
                }
                // A sound not rendered yet (the live host renders the sounds its
                // patterns play first and the rest just after it starts playing) is
                // silent: no voice starts, nothing is choked.
                match cx.tables.drums.notes.get(note as usize).copied().flatten() {
                    Some(sound) if cx.tables.drums.sounds.ready(sound as usize) => {
                        // A closed or pedal hi-hat chokes the open one.
                        if matches!(note, 42 | 44) {
                            for &slot in &self.active {
                                let v = &mut self.voices[slot as usize];
                                if v.active && v.note == 46 {
                                    v.steal(cx.sr);
                                }
                            }
                        }
                        VoiceSource::Drum { sound, pos: 0 }
                    }
                    _ => return,
                }
            }
            Source::External { .. } => return,
        };
        let st = &mut self.st;
        let legato = matches!(source, VoiceSource::Synth(_)) && st.target.get(Param::Legato) > 0.5;
        let glide = st.now.get(Param::Glide);
        let glide_from = if glide > 0.0 { st.last_pitch } else { None };
        st.keys.push(note);
        if legato {
            // One voice per channel: a key pressed while another is held moves it.
            let voices = &mut self.voices;
            if let Some(&slot) = self.active.iter().find(|&&s| {
                let v = &voices[s as usize];
                v.active && v.held && v.steal_left == 0
            }) {
                st.last_pitch = Some(note as f64);
                voices[slot as usize].retarget(note, glide);
                return;
            }
        }
        if matches!(source, VoiceSource::Synth(_)) {
            st.last_pitch = Some(note as f64);
        }
        let slot = self.allocate_voice(&cfg, cx);
        self.start_voice(slot, note, velocity, source, &cfg, glide_from, cx);
    }

    /// Plays a note on a sampled preset: one voice per region the key and velocity
    /// fall in (layers), each cutting the voices of its exclusive class. Returns
    /// whether any region matched.
    fn sample_note_on(
        &mut self,
        note: u8,
        velocity: u8,
        bank: u8,
        preset: u16,
        cfg: &ChannelConfig,
        cx: &TickCx,
    ) -> bool {
        let Some(&slot) = cx.bank_map.get(bank as usize) else { return false };
        self.st.keys.push(note);
        let first_serial = self.serial + 1;
        let mut started = false;
        for i in 0.. {
            let region = match cx.banks.get(slot).and_then(|b| b.presets.get(preset as usize)) {
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
                for &s in &self.active {
                    let v = &mut self.voices[s as usize];
                    if v.active
                        && v.serial < first_serial
                        && matches!(v.source, VoiceSource::Sample { .. })
                        && v.sample().is_some_and(|s| s.region.exclusive_class == region.exclusive_class)
                    {
                        v.steal(cx.sr);
                    }
                }
            }
            let voice = self.allocate_voice(cfg, cx);
            self.start_voice(voice, note, velocity, VoiceSource::Sample { slot }, cfg, None, cx);
            if let Some(sample) = self.voices[voice].sample_mut() {
                sample.start(&region, note, velocity, cx.sr);
            }
            self.bank_started(slot);
            started = true;
        }
        started
    }

    /// A free voice slot, making room under the channel's voice limit (the oldest
    /// voice, released ones first, fades out) and in its pool (the voice closest to
    /// silence is cut).
    fn allocate_voice(&mut self, cfg: &ChannelConfig, cx: &TickCx) -> usize {
        let limit = cfg.voice_limit.clamp(1, MAX_VOICE_LIMIT) as usize;
        let mut count = 0;
        let mut victim: Option<usize> = None;
        for &slot in &self.active {
            let i = slot as usize;
            let v = &self.voices[i];
            if v.active && v.steal_left == 0 {
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
            self.voices[i].steal(cx.sr);
            cx.stats.voices_stolen.fetch_add(1, Relaxed);
        }
        match self.free.pop() {
            Some(i) => i as usize,
            None if self.voices.len() < LANE_VOICES => {
                // A slot not made yet (within the pool's room: no allocation).
                self.voices.push(Voice::new(&self.lines));
                self.voices.len() - 1
            }
            None => {
                // Every slot of the channel is busy: cut the voice closest to silence.
                cx.stats.voices_cut.fetch_add(1, Relaxed);
                let key = |v: &Voice| (v.steal_left == 0, v.steal_left, v.serial);
                let pos =
                    (0..self.active.len()).min_by_key(|&k| key(&self.voices[self.active[k] as usize])).unwrap_or(0);
                let slot = self.active.remove(pos) as usize;
                if let VoiceSource::Sample { slot: b } = self.voices[slot].source {
                    self.bank_ended(b);
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
        note: u8,
        velocity: u8,
        source: VoiceSource,
        cfg: &ChannelConfig,
        glide_from: Option<f64>,
        cx: &TickCx,
    ) {
        self.serial += 1;
        let st = &mut self.st;
        if st.idle {
            // Waking mid-tick: this tick's parameters and input were skipped.
            st.update_target();
            st.snap();
            st.input.clear();
            st.idle = false;
        }
        st.quiet_ticks = 0;
        let ctx = VoiceCtx {
            sample_rate: cx.sr,
            tables: cx.tables,
            params: &st.now,
            bend: st.bend.value(),
            banks: cx.banks,
            controls: st.controls,
        };
        let channel = self.ch;
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
        if self.voices[slot].awaits_line() {
            self.steal_line(cx);
        }
    }

    /// No delay line was free for a note: the channel's oldest voice holding one
    /// (released ones first) fades out, and its line goes to the note when it ends
    /// (see [`Lines`]). The channel's own lines are all lent then, so such a voice is
    /// there unless every one is already fading.
    fn steal_line(&mut self, cx: &TickCx) {
        let voices = &self.voices;
        let victim = self
            .active
            .iter()
            .map(|&s| s as usize)
            .filter(|&i| voices[i].active && voices[i].steal_left == 0 && voices[i].holds_line())
            .max_by_key(|&i| (voices[i].is_released(), std::cmp::Reverse(voices[i].serial)));
        if let Some(i) = victim {
            self.voices[i].steal(cx.sr);
            cx.stats.voices_stolen.fetch_add(1, Relaxed);
        }
    }

    /// A controller arriving on `channel`, as it concerns this channel: the set's
    /// CC map may move this channel's parameters whichever channel it arrives on;
    /// the rest acts only on its own channel.
    fn control(&mut self, channel: u8, cc: u8, value: u8, cx: &TickCx) {
        let me = self.ch;
        let ch = me as usize;
        // The set's CC map first. A mapping for this channel wins over one without a
        // channel; that one moves the channel the CC arrives on, or every channel when
        // it says "any".
        let map = &cx.snapshot.cc_map;
        let specific = map.iter().any(|m| m.cc == cc && m.channel == Some(channel));
        let mut mapped = false;
        let stats = cx.stats;
        for m in map.iter().filter(|m| m.cc == cc) {
            let moves_me = match m.channel {
                Some(c) if c == channel => me == channel,
                None if !specific && !m.any => me == channel,
                None if !specific => self.st.config.is_some(),
                _ => continue,
            };
            if moves_me {
                let v = crate::params::Param::cc_value(m.min, m.max, m.exponential, value);
                let p = m.param as usize;
                self.st.overrides[p] = v;
                stats.overrides[ch][p].store(v.to_bits(), Relaxed);
            }
            mapped = true;
        }
        if mapped || me != channel {
            return;
        }
        let sr = cx.sr;
        let sampled = matches!(self.st.config.map(|c| c.source), Some(Source::Sampled { .. }));
        let st = &mut self.st;
        match cc {
            0 => st.bank_select = value as u16,
            1 => st.controls.mod_wheel = value,
            // Expression: sample voices follow it through the SoundFont's own curve,
            // a synth channel takes it as a gain on its volume.
            11 => {
                st.controls.expression = value;
                let gain = value as f32 / 127.0;
                st.expression = if sampled { 1.0 } else { gain };
                stats.expression[ch].store(gain.to_bits(), Relaxed);
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
                st.overrides[p as usize] = v;
                stats.overrides[ch][p as usize].store(v.to_bits(), Relaxed);
            }
            64 => {
                let down = value >= 64;
                st.pedal = down;
                stats.pedals[ch].store(down, Relaxed);
                if !down {
                    let params = st.target;
                    for &slot in &self.active {
                        let v = &mut self.voices[slot as usize];
                        if v.active && v.sustained {
                            v.release(&params, sr);
                        }
                    }
                }
            }
            120 => {
                for &slot in &self.active {
                    self.voices[slot as usize].steal(sr);
                }
            }
            121 => {
                st.overrides = [f32::NAN; NUM_PARAMS];
                for o in &stats.overrides[ch] {
                    o.store(f32::NAN.to_bits(), Relaxed);
                }
                st.bend_raw = 0;
                st.pedal = false;
                st.controls.expression = 127;
                st.controls.mod_wheel = 0;
                st.controls.pressure = 0;
                st.rpn = (127, 127);
                st.expression = 1.0;
                stats.bends[ch].store(0, Relaxed);
                stats.pedals[ch].store(false, Relaxed);
                stats.expression[ch].store(1.0f32.to_bits(), Relaxed);
            }
            123 => {
                let params = st.target;
                for &slot in &self.active {
                    self.voices[slot as usize].release(&params, sr);
                }
            }
            _ => {}
        }
    }

    /// Selects the General MIDI program's instrument on the channel: new notes use
    /// it, sounding ones finish on the old sound; volume, pan and drum channels stay.
    pub fn program_change(&mut self, program: u8, cx: &TickCx) {
        let ch = self.ch as usize;
        let Some(cfg) = self.st.config else { return };
        if cfg.source == Source::Drums {
            return;
        }
        if let Source::Sampled { .. } = cfg.source {
            let base = cx.snapshot.channels[ch].unwrap_or(cfg);
            match sampled_program(cx.banks, cx.bank_map, base, self.st.bank_select, program) {
                Some(next) => {
                    self.st.program = Some(program);
                    self.st.config = Some(next);
                }
                None => {
                    cx.stats.programs_ignored.fetch_add(1, Relaxed);
                }
            }
            return;
        }
        let Some(prog) = cx.snapshot.programs.get(program as usize).copied().flatten() else {
            cx.stats.programs_ignored.fetch_add(1, Relaxed);
            return;
        };
        let base = cx.snapshot.channels[ch].unwrap_or(cfg);
        let next = with_program(base, prog);
        let st = &mut self.st;
        st.program = Some(program);
        cx.stats.programs[ch].store(program as u32, Relaxed);
        let now = st.now;
        for &slot in &self.active {
            let v = &mut self.voices[slot as usize];
            if v.frozen.is_none() && v.instrument_id == cfg.instrument_id {
                v.frozen = Some(now);
            }
        }
        st.config = Some(next);
        st.last = next.params;
    }

    /// Takes over what MIDI had set on the channel (knobs, expression, bend, pedal),
    /// the program aside. Control side.
    pub fn restore(&mut self, m: &super::ChannelMidi, stats: &EngineStats) {
        let ch = self.ch as usize;
        let st = &mut self.st;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::Scope;

    /// A channel whose voice parameters rest on their targets skips their step; the
    /// parameters it gives the voices are the same, bit for bit, as those of a
    /// channel that steps every tick, through overrides, bends, expression and
    /// bend-range changes and the rests between them.
    #[test]
    fn a_channel_at_rest_skips_the_parameter_step_and_gives_the_same_values() {
        let voice_params: Vec<usize> =
            Param::ALL.iter().filter(|p| p.info().scope == Scope::Voice).map(|p| *p as usize).collect();
        let sr = 48_000.0;
        let (mut skips, mut steps) = (ChannelState::new(sr), ChannelState::new(sr));
        for st in [&mut skips, &mut steps] {
            st.update_target();
            st.snap();
        }
        let glide = voice_params[0];
        let mut rested = 0;
        for tick in 0..600 {
            for st in [&mut skips, &mut steps] {
                match tick {
                    50 => st.overrides[glide] = 0.25,
                    200 => st.bend_raw = 4000,
                    300 => st.expression = 0.5,
                    400 => st.rpn_bend_range = Some(7.0),
                    500 => st.overrides[glide] = f32::NAN,
                    _ => {}
                }
            }
            let moved = skips.update_target();
            skips.step_voice_params(&voice_params, moved);
            rested += skips.voices_at_rest as usize;
            steps.update_target();
            steps.voices_at_rest = false;
            steps.step_voice_params(&voice_params, true);
            let bits = |st: &ChannelState| (st.now.0.map(f32::to_bits), st.bend.value().to_bits());
            assert_eq!(bits(&skips), bits(&steps), "tick {tick}");
        }
        assert!(rested > 300, "the channel rested in {rested} of 600 ticks");
    }
}
