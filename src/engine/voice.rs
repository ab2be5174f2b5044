//! Voices: one sounding note each, from a fixed pool allocated with the engine.
//! Rendered on the audio thread, a segment of a tick at a time.

use super::envelope::{Adsr, Envelope, Stage};
use super::sampler::{ChannelControls, SampleOut, SampleVoice};
use super::synth::{Lane, OscState, STRING_LANES, SYNTHS, SynthCtx, run_lanes};
use crate::dsp::svf::{Svf, SvfCoefs};
use crate::params::{Param, ParamValues};
use crate::tables::Tables;
use crate::tables::wavetable::phase_inc;
use crate::theory::note_hz;
use crossbeam_queue::ArrayQueue;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

/// Fade applied to a stolen voice.
pub const STEAL_FADE_SECONDS: f32 = 0.005;
/// A self-decaying voice is freed after this long below [`SILENCE`].
const SILENT_SECONDS: f32 = 0.05;
/// Level treated as silence (-80 dB).
const SILENCE: f32 = 1e-4;
/// Release (to -60 dB) of a sustaining synth whose envelope leaves the release to the
/// instrument (release 0): -40 dB after 100 ms, no splatter at note-off.
pub const NATURAL_RELEASE_SECONDS: f32 = 0.15;
/// Release of the sub-oscillator and noise layers of a damped or ringing note (they
/// do not die away with the string by themselves).
const LAYER_RELEASE_SECONDS: f32 = 0.3;
/// Largest per-note pitch offset at `analog` 1, in semitones (10 cents).
const ANALOG_OFFSET: f64 = 0.1;
/// Depth of the slow pitch wander at `analog` 1, in semitones (4 cents).
const ANALOG_WANDER: f64 = 0.04;
/// The voice filter's cutoff when the channel's low-pass is off.
const OPEN_CUTOFF: f32 = 20_000.0;

/// How long a note that found no delay line free waits for the line of the voice
/// stolen for it: the steal fade, then the note starts at its next segment (so it
/// starts at the same frame whichever thread renders either voice). It sounds that
/// much late, about 5 ms.
pub const LINE_WAIT_SECONDS: f32 = STEAL_FADE_SECONDS;

/// Delay lines each channel keeps for its own voices: its default voice limit and
/// the reserve for stolen voices fading out, so that a channel at its default limit
/// never waits on another.
pub const CHANNEL_LINES: usize = super::DEFAULT_VOICE_LIMIT as usize + super::channel::STEAL_RESERVE;
/// Delay lines every channel may borrow once its own are lent: with a channel's own,
/// one line for each voice slot of a channel ([`super::channel::LANE_VOICES`]).
pub const SHARED_LINES: usize = super::channel::LANE_VOICES - CHANNEL_LINES;

/// The engine's delay lines, lent to the voices of synths that use one (see
/// [`super::synth::Synth::uses_line`]) from note-on to the end of the note:
/// [`CHANNEL_LINES`] for each channel, then [`SHARED_LINES`] any channel may
/// borrow. A channel takes its own first, so what one channel hears does not depend
/// on another unless the shared lines run out. Then the note takes the line of its
/// channel's oldest voice that holds one (released voices first): that voice fades
/// out over the steal fade and the note starts once the line is back (see
/// [`LINE_WAIT_SECONDS`]). A note that still finds none is counted in
/// [`super::EngineStats::lines_missed`] and stays silent.
///
/// The lines are allocated on the control side, the first time a snapshot uses such
/// a synth ([`Lines::provide`]): a rig that never does (a SoundFont's, samples,
/// wavetable synths) holds none. A channel's own lines come with the first such
/// snapshot that configures the channel (a channel that is not configured plays no
/// note, so it never lends one). They are lent and taken back on the audio thread
/// and the render workers through lock-free queues of buffers, without allocating.
pub struct Lines {
    own: [ArrayQueue<Box<[f32]>>; super::MAX_CHANNELS],
    shared: ArrayQueue<Box<[f32]>>,
    /// The shared lines have been allocated (control side).
    provided: AtomicBool,
    /// Each channel's own lines have been allocated (control side).
    own_provided: [AtomicBool; super::MAX_CHANNELS],
    /// Where notes that found no line free are counted.
    stats: Arc<super::EngineStats>,
}

impl Lines {
    /// The queues, empty until [`Lines::provide`] fills them (control side).
    pub fn new(stats: Arc<super::EngineStats>) -> Arc<Self> {
        Arc::new(Lines {
            own: std::array::from_fn(|_| ArrayQueue::new(CHANNEL_LINES)),
            shared: ArrayQueue::new(SHARED_LINES),
            provided: AtomicBool::new(false),
            own_provided: std::array::from_fn(|_| AtomicBool::new(false)),
            stats,
        })
    }

    /// Allocates the lines `snapshot` may lend, of [`super::synth::line_len`] floats
    /// at `sample_rate`, that are not there yet: the shared lines and the own lines
    /// of each channel that may play a synth that uses one (by its own synth, or
    /// through a program change). Control side, before the snapshot is published.
    pub fn provide(&self, snapshot: &super::snapshot::Snapshot, sample_rate: f32) {
        let lined = Self::lined(snapshot);
        let new = |c: &usize| lined[*c] && !self.own_provided[*c].load(Relaxed);
        if !(0..super::MAX_CHANNELS).any(|c| new(&c)) {
            return;
        }
        let len = super::synth::line_len(sample_rate);
        let fill = |queue: &ArrayQueue<Box<[f32]>>| {
            for _ in 0..queue.capacity() {
                let _ = queue.push(crate::dsp::zeroed(len));
            }
        };
        for c in (0..super::MAX_CHANNELS).filter(new) {
            self.own_provided[c].store(true, Relaxed);
            fill(&self.own[c]);
        }
        if !self.provided.swap(true, Relaxed) {
            fill(&self.shared);
        }
    }

    /// Whether the (shared) lines have been allocated.
    pub fn provided(&self) -> bool {
        self.provided.load(Relaxed)
    }

    /// Which channels of `snapshot` may play a synth that uses a delay line: by their
    /// own synth, or through a program change (which only synth and external channels
    /// follow).
    fn lined(snapshot: &super::snapshot::Snapshot) -> [bool; super::MAX_CHANNELS] {
        use super::snapshot::{ChannelConfig, Source};
        let lined = |c: &ChannelConfig| match c.source {
            Source::Synth(s) => SYNTHS.get(s as usize).is_some_and(|e| e.synth.uses_line()),
            _ => false,
        };
        let programs = snapshot.programs.iter().flatten().any(lined);
        std::array::from_fn(|c| {
            snapshot.channels[c]
                .as_ref()
                .is_some_and(|c| lined(c) || programs && matches!(c.source, Source::Synth(_) | Source::External { .. }))
        })
    }

    /// A zeroed line for a voice of `channel`, its own first; `None` when every
    /// line is lent. Audio thread: no allocation.
    fn lend(&self, channel: u8) -> Option<Box<[f32]>> {
        let own = &self.own[channel as usize % super::MAX_CHANNELS];
        let mut line = own.pop().or_else(|| self.shared.pop())?;
        line.fill(0.0);
        Some(line)
    }

    /// Counts a note that found no line, even after waiting (it stays silent).
    fn missed(&self) {
        self.stats.lines_missed.fetch_add(1, Relaxed);
    }

    /// Takes a line back: to `channel`'s own while it has room, else to the shared
    /// lines (every line came from one of them, so one has room). Audio thread.
    fn take_back(&self, channel: u8, line: Box<[f32]>) {
        if line.is_empty() {
            return;
        }
        let own = &self.own[channel as usize % super::MAX_CHANNELS];
        if let Err(line) = own.push(line)
            && let Err(line) = self.shared.push(line)
        {
            // Unreachable (the queues have room for every line there is); never
            // free on this thread.
            std::mem::forget(line);
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum VoiceSource {
    Synth(u16),
    /// A drum one-shot: sound index and read position.
    Drum {
        sound: u16,
        pos: usize,
    },
    /// A sampled region (SoundFont or user sample) from the bank in engine slot `slot`.
    Sample {
        slot: u8,
    },
}

/// Where a voice adds its segment: the channel's mono input (synths, drum kit), or
/// its stereo input and effect sends (sample voices).
pub struct VoiceOut<'a> {
    pub mono: &'a mut [f32],
    pub left: &'a mut [f32],
    pub right: &'a mut [f32],
    pub chorus: &'a mut [f32],
    pub reverb: &'a mut [f32],
    /// Set when the stereo input or the sends were written.
    pub stereo: &'a mut bool,
    pub sent: &'a mut bool,
}

/// What a voice plays with: a synth's oscillator state or a sample's playback
/// state. A slot holds one at a time, so the pool's slots are no larger than the
/// larger of the two.
pub enum VoiceBody {
    Synth(OscState),
    Sample(SampleVoice),
}

impl VoiceBody {
    /// The synth state. [`Voice::start`] gives a synth or drum voice one; a body that
    /// holds sample state is given a fresh one (no allocation: it holds no line).
    fn synth(&mut self) -> &mut OscState {
        if let VoiceBody::Sample(_) = self {
            *self = VoiceBody::Synth(OscState::new(0));
        }
        match self {
            VoiceBody::Synth(osc) => osc,
            VoiceBody::Sample(_) => unreachable!("the body was just made a synth's"),
        }
    }
}

pub struct Voice {
    pub active: bool,
    pub channel: u8,
    pub note: u8,
    /// Start order: lower is older.
    pub serial: u64,
    pub source: VoiceSource,
    /// The key is down.
    pub held: bool,
    /// The key is up but the sustain pedal holds the note.
    pub sustained: bool,
    pub instrument_id: u64,
    /// Parameters frozen when the channel changed instrument under this note.
    pub frozen: Option<ParamValues>,
    pub env: Envelope,
    /// Velocity gain.
    pub gain: f32,
    /// Frames left of the steal fade (0 = not being stolen).
    pub steal_left: u32,
    steal_total: u32,
    quiet: u32,
    /// The instrument's own release has started (damper, mute or free ring).
    damped: bool,
    sub_phase: u32,
    /// The pitch sounding, in semitones (the note, or on the way to it while gliding).
    pitch: f64,
    /// Glide speed toward `note`, in semitones per second.
    glide_rate: f64,
    /// Per-note analog character: a fixed offset (-1..1 of [`ANALOG_OFFSET`]), and
    /// the wander's phase (cycles) and rate (Hz).
    analog_offset: f64,
    analog_phase: f64,
    /// The pitch (Hz) [`scan_voices`] computed for this segment when it set up the
    /// voice's string loop beside others': the segment's render takes it (the same
    /// value, computed once).
    lane_freq: Option<f64>,
    /// Whether the voice's synth [`runs_beside`](super::synth::Synth::runs_beside)
    /// others (set at the start of a note).
    beside: bool,
    analog_rate: f64,
    /// Velocity, 0..1 (opens the voice filter).
    velocity: f32,
    /// The voice filter and its envelope (when the channel has a filter envelope or
    /// velocity-to-filter).
    filter_env: Envelope,
    filter: Svf,
    /// The synth's or the sample's state, as the source asks.
    body: VoiceBody,
    /// Where the voice borrows a delay line from.
    lines: Arc<Lines>,
    /// Frames waited for a delay line, when the note found none free at note-on
    /// (`None`: not waiting).
    line_wait: Option<u32>,
}

/// Scratch space for one segment (at most a tick).
pub struct Scratch<'a> {
    pub wave: &'a mut [f32],
    pub env: &'a mut [f32],
}

/// Everything a voice reads from its channel while rendering.
pub struct VoiceCtx<'a> {
    pub sample_rate: f32,
    pub tables: &'a Tables,
    /// The channel's current voice parameters.
    pub params: &'a ParamValues,
    /// The channel's current pitch bend, in semitones.
    pub bend: f32,
    /// The sample banks the engine holds, by slot.
    pub banks: &'a super::banks::BankSlots,
    /// The channel's controllers that sample voices follow.
    pub controls: ChannelControls,
}

impl Voice {
    /// A free voice that borrows its delay lines from `lines` (control side). It
    /// holds none until it plays a synth that uses one.
    pub fn new(lines: &Arc<Lines>) -> Self {
        Voice {
            active: false,
            channel: 0,
            note: 0,
            serial: 0,
            source: VoiceSource::Synth(0),
            held: false,
            sustained: false,
            instrument_id: 0,
            frozen: None,
            env: Envelope::idle(),
            gain: 0.0,
            steal_left: 0,
            steal_total: 0,
            quiet: 0,
            damped: false,
            sub_phase: 0,
            pitch: 0.0,
            glide_rate: 0.0,
            analog_offset: 0.0,
            analog_phase: 0.0,
            lane_freq: None,
            beside: false,
            analog_rate: 0.0,
            velocity: 0.0,
            filter_env: Envelope::idle(),
            filter: Svf::default(),
            body: VoiceBody::Synth(OscState::new(0)),
            lines: lines.clone(),
            line_wait: None,
        }
    }

    /// Ends the note: the slot is free and its delay line goes back to the pool.
    fn end(&mut self) {
        self.active = false;
        self.give_back_line();
    }

    fn give_back_line(&mut self) {
        if let VoiceBody::Synth(osc) = &mut self.body
            && !osc.line.is_empty()
        {
            self.lines.take_back(self.channel, std::mem::take(&mut osc.line));
        }
    }

    /// The sample playback state, if the voice plays a sample.
    pub fn sample(&self) -> Option<&SampleVoice> {
        match &self.body {
            VoiceBody::Sample(s) => Some(s),
            VoiceBody::Synth(_) => None,
        }
    }

    /// The sample playback state to start, if the voice plays a sample.
    pub fn sample_mut(&mut self) -> Option<&mut SampleVoice> {
        match &mut self.body {
            VoiceBody::Sample(s) => Some(s),
            VoiceBody::Synth(_) => None,
        }
    }

    /// The synth state (see [`VoiceBody::synth`]).
    fn osc(&mut self) -> &mut OscState {
        self.body.synth()
    }

    /// Makes the slot's state the kind `source` plays with: sample state for a
    /// sample (its delay line, if it held one, goes back first), synth state
    /// otherwise. Audio thread: nothing is allocated or freed.
    fn fit_body(&mut self, source: VoiceSource) {
        match (source, &self.body) {
            (VoiceSource::Sample { .. }, VoiceBody::Synth(_)) => {
                self.give_back_line();
                self.body = VoiceBody::Sample(SampleVoice::idle());
            }
            (VoiceSource::Synth(_) | VoiceSource::Drum { .. }, VoiceBody::Sample(_)) => {
                self.body = VoiceBody::Synth(OscState::new(0));
            }
            _ => {}
        }
    }

    /// Gives the voice a zeroed delay line if its synth uses one (keeping the one it
    /// holds), or returns the one it holds if not. False if a line was needed and
    /// none was free.
    fn fit_line(&mut self, source: VoiceSource) -> bool {
        let wants = matches!(source, VoiceSource::Synth(s) if SYNTHS[s as usize].synth.uses_line());
        if !wants {
            self.give_back_line();
            return true;
        }
        if !self.osc().line.is_empty() {
            self.osc().line.fill(0.0);
            return true;
        }
        match self.lines.lend(self.channel) {
            Some(line) => {
                self.osc().line = line;
                true
            }
            None => false,
        }
    }

    /// Whether the voice holds a delay line (another note may take it: see [`Lines`]).
    pub fn holds_line(&self) -> bool {
        matches!(&self.body, VoiceBody::Synth(osc) if !osc.line.is_empty())
    }

    /// Whether the note found no delay line free and waits for one.
    pub fn awaits_line(&self) -> bool {
        self.line_wait.is_some()
    }

    /// Whether the voice lacks the delay line its synth needs.
    fn lacks_line(&self) -> bool {
        let holds = matches!(&self.body, VoiceBody::Synth(osc) if !osc.line.is_empty());
        matches!(self.source, VoiceSource::Synth(s) if !holds && SYNTHS[s as usize].synth.uses_line())
    }

    /// Whether the voice surely keeps sounding over the next `frames` samples while
    /// no event reaches its channel and the parameters `params` hold still: a synth
    /// voice that holds its delay line, is not stolen, whose synth does not die away
    /// by itself, and whose envelope does not end meanwhile ([`Envelope::lasts`]).
    pub fn lasts(&self, params: &ParamValues, frames: usize) -> bool {
        let VoiceSource::Synth(s) = self.source else { return false };
        self.active
            && self.steal_left == 0
            && self.line_wait.is_none()
            && !self.lacks_line()
            && !SYNTHS[s as usize].synth.decays()
            && self.env.lasts(&Self::adsr(self.frozen.as_ref().unwrap_or(params)), frames)
    }

    fn adsr(p: &ParamValues) -> Adsr {
        let release = match p.get(Param::Release) {
            r if r > 0.0 => r,
            _ => NATURAL_RELEASE_SECONDS,
        };
        Adsr { attack: p.get(Param::Attack), decay: p.get(Param::Decay), sustain: p.get(Param::Sustain), release }
    }

    /// The filter envelope (released with the note's own release time).
    fn filter_adsr(p: &ParamValues) -> Adsr {
        Adsr {
            attack: p.get(Param::FilterAttack),
            decay: p.get(Param::FilterDecay),
            sustain: p.get(Param::FilterSustain),
            release: p.get(Param::Release),
        }
    }

    /// Whether the channel's parameters ask for a filter in every voice.
    pub fn has_voice_filter(p: &ParamValues) -> bool {
        p.get(Param::FilterAmount) != 0.0 || p.get(Param::VelToFilter) != 0.0
    }

    /// The pitch sounding, in semitones (fractional while gliding).
    pub fn pitch(&self) -> f64 {
        self.pitch
    }

    /// Moves a sounding note to `note` without restarting it (legato), gliding over
    /// `glide` seconds.
    pub fn retarget(&mut self, note: u8, glide: f32) {
        self.note = note;
        self.held = true;
        self.sustained = false;
        self.set_glide(glide);
    }

    fn set_glide(&mut self, glide: f32) {
        let distance = (self.note as f64 - self.pitch).abs();
        self.glide_rate = if glide > 0.0 && distance > 0.0 { distance / glide as f64 } else { f64::INFINITY };
    }

    /// Starts a note in this (free) slot; with `glide_from` (a pitch in semitones)
    /// it slides from there to the note over the channel's glide time.
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        &mut self,
        channel: u8,
        note: u8,
        velocity: u8,
        serial: u64,
        source: VoiceSource,
        instrument_id: u64,
        seed: u64,
        glide_from: Option<f64>,
        ctx: &VoiceCtx,
    ) {
        self.active = true;
        self.channel = channel;
        self.note = note;
        self.serial = serial;
        self.fit_body(source);
        self.source = source;
        self.beside = matches!(source, VoiceSource::Synth(s) if SYNTHS[s as usize].synth.runs_beside());
        self.lane_freq = None;
        self.held = true;
        self.sustained = false;
        self.instrument_id = instrument_id;
        self.frozen = None;
        let v = velocity as f32 / 127.0;
        self.gain = v
            * v
            * match source {
                VoiceSource::Synth(_) => key_level(ctx.params, note),
                VoiceSource::Drum { .. } => crate::tables::drums::KIT_GAIN,
                // A sample voice's level is the font's or the sample's own.
                VoiceSource::Sample { .. } => 1.0,
            };
        self.steal_left = 0;
        self.quiet = 0;
        self.damped = false;
        self.sub_phase = 0;
        self.velocity = v;
        self.pitch = glide_from.unwrap_or(note as f64);
        self.set_glide(ctx.params.get(Param::Glide));
        // Analog character from the seed (the synth's noise source stays untouched).
        let h = seed.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ (seed >> 29);
        let unit = |bits: u64| (bits >> 11) as f64 / (1u64 << 53) as f64;
        self.analog_offset = unit(h) * 2.0 - 1.0;
        self.analog_phase = unit(h.rotate_left(23));
        self.analog_rate = 0.1 + 0.3 * unit(h.rotate_left(41));
        self.filter = Svf::default();
        self.filter_env = Envelope::start(&Self::filter_adsr(ctx.params), ctx.sample_rate);
        if let VoiceBody::Synth(osc) = &mut self.body {
            osc.reset(seed);
        }
        self.env = Envelope::start(&Self::adsr(ctx.params), ctx.sample_rate);
        self.line_wait = None;
        if !self.fit_line(source) {
            // No delay line free: the channel steals one for the note, which starts
            // once the line is back (see `render`).
            self.line_wait = Some(0);
            return;
        }
        if let VoiceSource::Synth(s) = source {
            let sctx = self.synth_ctx(ctx, ctx.params);
            SYNTHS[s as usize].synth.start(self.osc(), &sctx);
        }
    }

    fn synth_ctx<'a>(&self, ctx: &VoiceCtx<'a>, params: &'a ParamValues) -> SynthCtx<'a> {
        // Pitch bend is the channel's, and applies to notes kept on an old instrument too.
        let analog = params.get(Param::Analog) as f64;
        let drift = if analog > 0.0 {
            let wander = crate::dsp::math::sin_turns(self.analog_phase);
            analog * (ANALOG_OFFSET * self.analog_offset + ANALOG_WANDER * wander)
        } else {
            0.0
        };
        self.synth_ctx_at(ctx, params, note_hz(self.pitch + ctx.bend as f64 + drift))
    }

    /// The synth's context at pitch `freq_hz`.
    fn synth_ctx_at<'a>(&self, ctx: &VoiceCtx<'a>, params: &'a ParamValues, freq_hz: f64) -> SynthCtx<'a> {
        SynthCtx { sample_rate: ctx.sample_rate, freq_hz, params, waves: &ctx.tables.waves }
    }

    /// Key up: releases, unless the sustain pedal is down.
    pub fn key_up(&mut self, pedal: bool, params: &ParamValues, sample_rate: f32) {
        self.held = false;
        if pedal {
            self.sustained = true;
        } else {
            self.release(params, sample_rate);
        }
    }

    /// Starts the release (drum hits ignore it: they ring out). A synth that dies away
    /// by itself, on a channel whose release is 0 (the `none` envelope), releases as
    /// the instrument does: its damper or mute, or free ring.
    pub fn release(&mut self, params: &ParamValues, sample_rate: f32) {
        self.held = false;
        self.sustained = false;
        match self.source {
            VoiceSource::Synth(s) => {
                let p = self.frozen.as_ref().unwrap_or(params);
                let synth = SYNTHS[s as usize].synth;
                if synth.decays() && p.get(Param::Release) <= 0.0 {
                    if !self.damped {
                        self.damped = true;
                        if let VoiceBody::Synth(osc) = &mut self.body {
                            synth.damp(osc, sample_rate, note_hz(self.pitch));
                        }
                        if p.get(Param::SubOsc) > 0.0 || p.get(Param::NoiseMix) > 0.0 {
                            let layers = Adsr { release: LAYER_RELEASE_SECONDS, ..Self::adsr(p) };
                            self.env.release(&layers, sample_rate);
                        }
                    }
                    return;
                }
                self.env.release(&Self::adsr(p), sample_rate);
                self.filter_env.release(&Self::filter_adsr(p), sample_rate);
            }
            VoiceSource::Sample { .. } => {
                let p = self.frozen.as_ref().unwrap_or(params);
                self.env.release(&Self::adsr(p), sample_rate);
                if let VoiceBody::Sample(sample) = &mut self.body {
                    sample.release();
                }
            }
            VoiceSource::Drum { .. } => {}
        }
    }

    /// Fades the voice out quickly (stolen, choked or silenced).
    pub fn steal(&mut self, sample_rate: f32) {
        if self.steal_left == 0 {
            let n = (STEAL_FADE_SECONDS * sample_rate).max(1.0) as u32;
            self.steal_left = n;
            self.steal_total = n;
        }
    }

    /// Whether the voice has been released (or is fading out).
    pub fn is_released(&self) -> bool {
        self.steal_left > 0 || !self.held && !self.sustained
    }

    /// Renders the voice and adds it into `out`; frees the slot when the note ends.
    pub fn render(&mut self, ctx: &VoiceCtx, scratch: &mut Scratch, vout: VoiceOut) {
        render_wide(self, ctx, scratch, vout);
    }

    /// [`Voice::render`]'s body, inlined into both builds of `render_wide`.
    #[inline(always)]
    fn render_body(&mut self, ctx: &VoiceCtx, scratch: &mut Scratch, vout: VoiceOut) {
        let n = vout.mono.len();
        let wave = &mut scratch.wave[..n];
        let env = &mut scratch.env[..n];
        let out = vout.mono;
        match self.source {
            VoiceSource::Sample { slot } => {
                let (Some(bank), VoiceBody::Sample(sample)) = (ctx.banks.get(slot), &mut self.body) else {
                    self.end();
                    return;
                };
                let Some(pcm) = bank.pcm.get(sample.region.pcm as usize) else {
                    self.end();
                    return;
                };
                let params = self.frozen.as_ref().unwrap_or(ctx.params);
                let env_gain = if sample.region.shape == crate::tables::bank::Shape::Channel {
                    self.env.render(&Self::adsr(params), ctx.sample_rate, env);
                    if self.env.is_done() {
                        sample.done = true;
                    }
                    self.env.level()
                } else {
                    1.0
                };
                let mut controls = ctx.controls;
                controls.bend = ctx.bend;
                if self.steal_left > 0 {
                    // Stolen: fade to silence over the steal time through the gain ramp.
                    let total = self.steal_total as f32;
                    let left = self.steal_left.saturating_sub(n as u32) as f32;
                    controls.expression = ((left / total).sqrt() * 127.0) as u8;
                    self.steal_left = self.steal_left.saturating_sub(n as u32);
                    if self.steal_left == 0 {
                        sample.done = true;
                    }
                }
                *vout.stereo = true;
                let sout = SampleOut {
                    left: vout.left,
                    right: vout.right,
                    chorus: vout.chorus,
                    reverb: vout.reverb,
                    sent: vout.sent,
                };
                sample.render(&pcm.frames, &controls, env_gain, ctx.sample_rate, wave, sout);
                if sample.done {
                    self.end();
                }
                return;
            }
            VoiceSource::Drum { sound, pos } => {
                let hit = &ctx.tables.drums.sounds[sound as usize];
                let take = n.min(hit.len().saturating_sub(pos));
                wave[..take].copy_from_slice(&hit[pos..pos + take]);
                wave[take..].fill(0.0);
                env.fill(1.0);
                self.source = VoiceSource::Drum { sound, pos: pos + take };
                if pos + take >= hit.len() {
                    self.env = Envelope::idle();
                    self.end();
                }
            }
            VoiceSource::Synth(s) if self.lacks_line() => {
                // Waiting for the line of the voice stolen for this note: silent until
                // that voice's fade is over, then the note starts (at a segment after
                // the one in which the stolen voice ended, whichever thread ran it).
                let waited = self.line_wait.unwrap_or(u32::MAX);
                let due = (LINE_WAIT_SECONDS * ctx.sample_rate) as u32;
                if waited < due {
                    self.line_wait = Some(waited + n as u32);
                    return;
                }
                self.line_wait = None;
                if self.fit_line(self.source) {
                    let params = self.frozen.as_ref().unwrap_or(ctx.params);
                    let sctx = self.synth_ctx(ctx, params);
                    SYNTHS[s as usize].synth.start(self.body.synth(), &sctx);
                } else {
                    self.lines.missed();
                    self.end();
                }
                return;
            }
            VoiceSource::Synth(s) => {
                if let Some(c) = self.synth_begin(s, ctx, wave, env) {
                    // The state in a local: kept in registers across the loop rather
                    // than stored and reloaded every sample (the same arithmetic).
                    let mut filter = self.filter;
                    for x in wave.iter_mut() {
                        *x = filter.lowpass(&c, *x);
                    }
                    self.filter = if filter.is_finite() { filter } else { Svf::default() };
                }
                if self.synth_end(s, ctx, wave, env, out) {
                    return;
                }
            }
        }
        self.add_out(wave, env, out);
    }

    /// A synth voice's segment up to its voice filter: the synth and its layers into
    /// `wave`, the glide and the analog wander advanced; with a voice filter, its
    /// envelope advanced (`env` is scratch) and the coefficients returned.
    #[inline(always)]
    fn synth_begin(&mut self, s: u16, ctx: &VoiceCtx, wave: &mut [f32], env: &mut [f32]) -> Option<SvfCoefs> {
        let n = wave.len();
        let params = match &self.frozen {
            Some(p) => p,
            None => ctx.params,
        };
        let sctx = match self.lane_freq.take() {
            Some(freq_hz) => SynthCtx { freq_hz, ..self.synth_ctx_at(ctx, params, 0.0) },
            None => self.synth_ctx(ctx, params),
        };
        let entry = &SYNTHS[s as usize];
        let osc = self.body.synth();
        entry.synth.render(osc, &sctx, wave);
        osc.age += n as u64;
        add_layers(osc, &mut self.sub_phase, &sctx, wave);
        // Advance the glide and the analog wander.
        let dt = n as f64 / ctx.sample_rate as f64;
        let target = self.note as f64;
        if self.pitch != target {
            let step = self.glide_rate * dt;
            self.pitch = if (target - self.pitch).abs() <= step {
                target
            } else {
                self.pitch + step.copysign(target - self.pitch)
            };
        }
        self.analog_phase = crate::dsp::math::fract_turns(self.analog_phase + self.analog_rate * dt);
        if !Self::has_voice_filter(params) {
            return None;
        }
        // Cutoff: the channel's low-pass, opened by velocity and the filter
        // envelope; set once per segment (a tick at most).
        self.filter_env.render(&Self::filter_adsr(params), ctx.sample_rate, env);
        let base = match params.get(Param::Lowpass) {
            c if c > 0.0 => c,
            _ => OPEN_CUTOFF,
        };
        let cutoff = base
            + params.get(Param::VelToFilter) * self.velocity
            + params.get(Param::FilterAmount) * self.filter_env.level();
        Some(SvfCoefs::new(cutoff.max(20.0), params.get(Param::LowpassQ), ctx.sample_rate))
    }

    /// A synth voice's segment after its voice filter: its envelope, and the end of
    /// a note that has died away. True when the segment is already added into `out`
    /// (a held level); otherwise [`Voice::add_out`] adds it.
    #[inline(always)]
    fn synth_end(&mut self, s: u16, ctx: &VoiceCtx, wave: &[f32], env: &mut [f32], out: &mut [f32]) -> bool {
        let n = wave.len();
        let params = match &self.frozen {
            Some(p) => p,
            None => ctx.params,
        };
        let entry = &SYNTHS[s as usize];
        let adsr = Self::adsr(params);
        match self.env.steady_level(&adsr) {
            // Holding: the gain is a constant, no envelope buffer needed.
            Some(level) if self.steal_left == 0 && !entry.synth.decays() => {
                let g = self.gain * level;
                for (o, w) in out.iter_mut().zip(wave.iter()) {
                    *o += w * g;
                }
                return true;
            }
            _ => self.env.render(&adsr, ctx.sample_rate, env),
        }
        if entry.synth.decays() && (self.damped || matches!(self.env.stage(), Stage::Sustain | Stage::Release)) {
            let peak = wave.iter().fold(0.0f32, |m, x| m.max(x.abs()));
            if peak * self.env.level() < SILENCE {
                self.quiet += n as u32;
                if self.quiet as f32 >= SILENT_SECONDS * ctx.sample_rate {
                    self.env = Envelope::idle();
                }
            } else {
                self.quiet = 0;
            }
        }
        if self.env.is_done() {
            self.end();
        }
        false
    }

    /// Adds the segment `wave` times its envelope `env` and the voice's gain into
    /// `out`, fading it while the voice is stolen.
    #[inline(always)]
    fn add_out(&mut self, wave: &[f32], env: &[f32], out: &mut [f32]) {
        let n = wave.len();
        let g = self.gain;
        if self.steal_left > 0 {
            let total = self.steal_total as f32;
            for i in 0..n {
                let left = self.steal_left.saturating_sub(i as u32) as f32;
                out[i] += wave[i] * env[i] * g * (left / total);
            }
            self.steal_left = self.steal_left.saturating_sub(n as u32);
            if self.steal_left == 0 {
                self.end();
            }
        } else {
            for i in 0..n {
                out[i] += wave[i] * env[i] * g;
            }
        }
    }

    /// Whether [`Voice::render`] would now run this voice's filter (a synth voice
    /// that holds the line it needs, its parameters asking for a filter): then
    /// [`render_voices`] runs it beside other voices' filters.
    fn filters(&self, ctx: &VoiceCtx) -> bool {
        matches!(self.source, VoiceSource::Synth(_))
            && !self.lacks_line()
            && Self::has_voice_filter(self.frozen.as_ref().unwrap_or(ctx.params))
    }

    /// [`Voice::render`] up to the voice filter, for a voice that [`Voice::filters`]:
    /// the segment into `wave` (`env` is scratch), the filter's coefficients returned.
    fn begin_filtered(&mut self, ctx: &VoiceCtx, wave: &mut [f32], env: &mut [f32]) -> SvfCoefs {
        let VoiceSource::Synth(s) = self.source else {
            return SvfCoefs::default();
        };
        self.synth_begin(s, ctx, wave, env).unwrap_or_default()
    }

    /// The rest of [`Voice::render`] once the voice filter has run: its state after
    /// the segment is `filter`, the filtered segment `wave`.
    #[inline(always)]
    fn end_filtered_body(&mut self, filter: Svf, ctx: &VoiceCtx, wave: &[f32], env: &mut [f32], out: &mut [f32]) {
        self.filter = if filter.is_finite() { filter } else { Svf::default() };
        let VoiceSource::Synth(s) = self.source else {
            return;
        };
        if !self.synth_end(s, ctx, wave, env, out) {
            self.add_out(wave, env, out);
        }
    }
}

crate::dsp::wide_build!(fn end_filtered_wide = Voice::end_filtered_body, (this: &mut Voice, filter: Svf, ctx: &VoiceCtx, wave: &[f32], env: &mut [f32], out: &mut [f32]));

/// Voices whose filters run side by side: up to [`FILTER_LANES`] consecutive ones,
/// each segment already rendered up to its filter.
struct FilterGroup {
    slots: [u16; FILTER_LANES],
    coefs: [SvfCoefs; FILTER_LANES],
    filters: [Svf; FILTER_LANES],
    waves: [[f32; super::TICK_FRAMES]; FILTER_LANES],
    len: usize,
}

/// Voice filters run side by side (see [`crate::dsp::svf::lowpass_8`]).
const FILTER_LANES: usize = 8;

/// Renders the voices at `slots` of `voices`, in that order, into `out`, as
/// [`Voice::render`] renders each, and returns whether one ended. The voice filters
/// of consecutive voices that [`Voice::filters`] run side by side, up to eight at a
/// time: each such voice renders up to its filter, the group's filters run in vector
/// lanes, then each voice of the group finishes and adds into `out` in order. A
/// filtered voice with no filtered neighbour runs its filter alone, as `render` does
/// (no group is made). Every voice does the same arithmetic as alone and the voices
/// add in the same order, so the sum is the same bit for bit. Audio thread or a
/// worker: nothing is allocated (the group lives on the stack).
///
/// # Safety
/// `voices` points at voices that include every slot of `slots`, which are
/// distinct, and no other thread touches those voices during the call.
pub unsafe fn render_voices(
    voices: *mut Voice,
    slots: &[u16],
    ctx: &VoiceCtx,
    scratch: &mut Scratch,
    mut out: VoiceOut,
) -> bool {
    // SAFETY: as this function's.
    let paired = unsafe { scan_voices(voices, slots, ctx, out.mono.len()) };
    // Most channels have no two filtered voices side by side (sample voices never
    // filter): each voice renders alone, with none of the grouping's bookkeeping.
    if !paired {
        let mut ended = false;
        for &slot in slots {
            let v = unsafe { &mut *voices.add(slot as usize) };
            v.render(ctx, scratch, out.reborrow());
            ended |= !v.active;
        }
        return ended;
    }
    let n = out.mono.len().min(super::TICK_FRAMES);
    // Made (2 KB zeroed) only once two filtered voices meet.
    let mut made: Option<FilterGroup> = None;
    // A filtered voice rendered up to its filter into `scratch.wave`, with its
    // filter's coefficients, while no other has joined it.
    let mut pending: Option<(u16, SvfCoefs)> = None;
    let mut ended = false;
    for &slot in slots {
        // SAFETY: the slot is one of `voices`', touched by this thread alone (the contract).
        let v = unsafe { &mut *voices.add(slot as usize) };
        if n == out.mono.len() && v.filters(ctx) {
            let group = match (pending.take(), made.as_mut()) {
                (None, Some(group)) if group.len > 0 => group,
                (None, _) => {
                    let c = v.begin_filtered(ctx, &mut scratch.wave[..n], &mut scratch.env[..n]);
                    pending = Some((slot, c));
                    continue;
                }
                (Some((first, c)), _) => {
                    let group = made.get_or_insert_with(|| FilterGroup {
                        slots: [0; FILTER_LANES],
                        coefs: [SvfCoefs::default(); FILTER_LANES],
                        filters: [Svf::default(); FILTER_LANES],
                        waves: [[0.0; super::TICK_FRAMES]; FILTER_LANES],
                        len: 0,
                    });
                    // SAFETY: as above (`first` is another slot than `slot`).
                    let w = unsafe { &*voices.add(first as usize) };
                    group.waves[0][..n].copy_from_slice(&scratch.wave[..n]);
                    (group.coefs[0], group.filters[0], group.slots[0], group.len) = (c, w.filter, first, 1);
                    group
                }
            };
            let i = group.len;
            group.coefs[i] = v.begin_filtered(ctx, &mut group.waves[i][..n], &mut scratch.env[..n]);
            group.filters[i] = v.filter;
            group.slots[i] = slot;
            group.len += 1;
            if group.len == FILTER_LANES {
                // SAFETY: as above.
                ended |= unsafe { finish_group(group, voices, ctx, scratch, &mut out, n) };
            }
            continue;
        }
        // SAFETY: as above.
        ended |= unsafe { finish_filtered(&mut pending, &mut made, voices, ctx, scratch, &mut out, n) };
        v.render(ctx, scratch, out.reborrow());
        ended |= !v.active;
    }
    // SAFETY: as above.
    ended | unsafe { finish_filtered(&mut pending, &mut made, voices, ctx, scratch, &mut out, n) }
}

/// One pass over the voices at `slots` before they render `len` frames: the string
/// loops of voices whose synth [`runs_beside`](super::synth::Synth::runs_beside) others run side by side,
/// up to [`STRING_LANES`] at a time ([`run_lanes`]: each string's operations
/// as alone; their independent recursions overlap), each voice's next `render`
/// then playing its string's output. Returns whether two consecutive voices
/// [`Voice::filters`] (the check of [`render_voices`]).
///
/// # Safety
/// As for [`render_voices`].
unsafe fn scan_voices(voices: *mut Voice, slots: &[u16], ctx: &VoiceCtx, len: usize) -> bool {
    let mut paired = false;
    let mut last_filters = false;
    let mut lanes: [Option<Lane<'_>>; STRING_LANES] = Default::default();
    let mut count = 0;
    for &slot in slots {
        // SAFETY: the slot is one of `voices`', touched by this thread alone (the
        // contract); each lane borrows a different voice's state.
        let v: &mut Voice = unsafe { &mut *voices.add(slot as usize) };
        let VoiceSource::Synth(s) = v.source else {
            last_filters = false;
            continue;
        };
        if v.lacks_line() {
            last_filters = false;
            continue;
        }
        let params = match &v.frozen {
            Some(p) => p,
            None => ctx.params,
        };
        let filters = Voice::has_voice_filter(params);
        paired |= last_filters && filters;
        last_filters = filters;
        if !v.beside {
            continue;
        }
        let synth = SYNTHS[s as usize].synth;
        let sctx = v.synth_ctx(ctx, params);
        let VoiceBody::Synth(osc) = &mut v.body else {
            continue;
        };
        if let Some(lane) = synth.begin_lane(osc, &sctx, len) {
            v.lane_freq = Some(sctx.freq_hz);
            lanes[count] = Some(lane);
            count += 1;
            if count == STRING_LANES {
                run_lanes(&mut lanes, len);
                count = 0;
            }
        }
    }
    if count > 0 {
        run_lanes(&mut lanes[..count], len);
    }
    paired
}

/// Finishes the filtered voices waiting: the one rendered alone into `scratch.wave`
/// (its filter runs there, as in `render`), or the group. Returns whether a voice
/// ended.
///
/// # Safety
/// As for [`render_voices`].
unsafe fn finish_filtered(
    pending: &mut Option<(u16, SvfCoefs)>,
    made: &mut Option<FilterGroup>,
    voices: *mut Voice,
    ctx: &VoiceCtx,
    scratch: &mut Scratch,
    out: &mut VoiceOut,
    n: usize,
) -> bool {
    if let Some((slot, c)) = pending.take() {
        // SAFETY: the contract.
        let v = unsafe { &mut *voices.add(slot as usize) };
        let wave = &mut scratch.wave[..n];
        let mut filter = v.filter;
        for x in wave.iter_mut() {
            *x = filter.lowpass(&c, *x);
        }
        end_filtered_wide(v, filter, ctx, wave, &mut scratch.env[..n], out.mono);
        return !v.active;
    }
    match made.as_mut() {
        // SAFETY: the contract.
        Some(group) if group.len > 0 => unsafe { finish_group(group, voices, ctx, scratch, out, n) },
        _ => false,
    }
}

/// Runs the filters of the voices in `group` side by side, then finishes each voice
/// in order into `out`; empties the group. Returns whether a voice ended.
///
/// # Safety
/// As for [`render_voices`]: the group's slots are voices of `voices` that no other
/// thread touches.
unsafe fn finish_group(
    group: &mut FilterGroup,
    voices: *mut Voice,
    ctx: &VoiceCtx,
    scratch: &mut Scratch,
    out: &mut VoiceOut,
    n: usize,
) -> bool {
    let len = group.len;
    // The lanes no voice uses run on silence.
    for i in len..FILTER_LANES {
        group.coefs[i] = SvfCoefs::default();
        group.filters[i] = Svf::default();
        group.waves[i][..n].fill(0.0);
    }
    lowpass_lanes(&mut group.filters, &group.coefs, &mut group.waves, n);
    let mut ended = false;
    for i in 0..len {
        // SAFETY: the contract.
        let v = unsafe { &mut *voices.add(group.slots[i] as usize) };
        end_filtered_wide(v, group.filters[i], ctx, &group.waves[i][..n], &mut scratch.env[..n], out.mono);
        ended |= !v.active;
    }
    group.len = 0;
    ended
}

crate::dsp::wide_build!(fn lowpass_lanes = crate::dsp::svf::lowpass_8::<{ super::TICK_FRAMES }>, (filters: &mut [Svf; FILTER_LANES], coefs: &[SvfCoefs; FILTER_LANES], x: &mut [[f32; super::TICK_FRAMES]; FILTER_LANES], n: usize));

impl VoiceOut<'_> {
    /// The same buffers, for one voice.
    pub fn reborrow(&mut self) -> VoiceOut<'_> {
        VoiceOut {
            mono: self.mono,
            left: self.left,
            right: self.right,
            chorus: self.chorus,
            reverb: self.reverb,
            stereo: self.stereo,
            sent: self.sent,
        }
    }
}

crate::dsp::wide_build!(fn render_wide = Voice::render_body, (this: &mut Voice, ctx: &VoiceCtx, scratch: &mut Scratch, vout: VoiceOut));

/// The keyboard level scaling's gain for `note`: `key_level_low` dB per octave below
/// C4, `key_level_high` above.
fn key_level(p: &ParamValues, note: u8) -> f32 {
    let octaves = (note as f32 - 60.0) / 12.0;
    let per_octave = if octaves < 0.0 { p.get(Param::KeyLevelLow) } else { p.get(Param::KeyLevelHigh) };
    crate::dsp::math::db_to_gain(per_octave * octaves.abs())
}

/// The sub-oscillator (a sine an octave down) and noise layers.
fn add_layers(osc: &mut OscState, sub_phase: &mut u32, ctx: &SynthCtx, wave: &mut [f32]) {
    let sub = ctx.param(Param::SubOsc);
    if sub > 0.0 {
        let inc = phase_inc(ctx.freq_hz * 0.5, ctx.sample_rate as f64);
        let (keep, add) = (1.0 - 0.3 * sub, 0.3 * sub);
        crate::dsp::wavescan::mix_oscillator(ctx.waves.sine(), sub_phase, inc, keep, add, wave);
    }
    let noise = ctx.param(Param::NoiseMix);
    if noise > 0.0 {
        let (keep, add) = (1.0 - 0.5 * noise, 0.5 * noise);
        for x in wave.iter_mut() {
            *x = *x * keep + osc.noise() * add;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::snapshot::{ChannelConfig, Snapshot, Source};
    use crate::engine::synth::{line_len, synth_index};
    use crate::tables::Tables;
    use crate::tables::wavetable::Wavetables;

    const SR: f32 = 48_000.0;

    /// Renders `synth` for 0.2 s from note-on, its state holding a line of `len`.
    fn play(synth: usize, len: usize, waves: &Wavetables) -> Vec<f32> {
        let params = ParamValues::default();
        let ctx = SynthCtx { sample_rate: SR, freq_hz: 220.0, params: &params, waves };
        let mut st = OscState::new(len);
        st.reset(7);
        let entry = &SYNTHS[synth];
        entry.synth.start(&mut st, &ctx);
        let mut out = vec![0.0f32; 9600];
        for block in out.chunks_mut(64) {
            entry.synth.render(&mut st, &ctx, block);
        }
        out
    }

    /// Renders `voices` at `slots` one segment of `n` frames, one by one or through
    /// [`render_voices`]; returns the sum.
    fn segment(voices: &mut [Voice], slots: &[u16], ctx: &VoiceCtx, n: usize, side_by_side: bool) -> Vec<f32> {
        let mut bufs = [[0.0f32; super::super::TICK_FRAMES]; 5];
        let [mono, left, right, chorus, reverb] = &mut bufs;
        let (mut wave, mut env) = ([0.0f32; super::super::TICK_FRAMES], [0.0f32; super::super::TICK_FRAMES]);
        let mut scratch = Scratch { wave: &mut wave, env: &mut env };
        let (mut stereo, mut sent) = (false, false);
        let mut out = VoiceOut {
            mono: &mut mono[..n],
            left: &mut left[..n],
            right: &mut right[..n],
            chorus: &mut chorus[..n],
            reverb: &mut reverb[..n],
            stereo: &mut stereo,
            sent: &mut sent,
        };
        if side_by_side {
            // SAFETY: the slots are distinct voices of `voices`, on this thread alone.
            unsafe { render_voices(voices.as_mut_ptr(), slots, ctx, &mut scratch, out) };
        } else {
            for &slot in slots {
                voices[slot as usize].render(ctx, &mut scratch, out.reborrow());
            }
        }
        mono[..n].to_vec()
    }

    /// Parameter values: the defaults, with `pairs` set.
    fn params_of(pairs: &[(Param, f32)]) -> ParamValues {
        let mut params = ParamValues::default();
        for &(p, v) in pairs {
            params.set(p, v);
        }
        params
    }

    /// A voice context at `SR` without bend or channel controls.
    fn plain_ctx<'a>(
        tables: &'a Tables,
        params: &'a ParamValues,
        banks: &'a super::super::banks::BankSlots,
    ) -> VoiceCtx<'a> {
        VoiceCtx { sample_rate: SR, tables, params, bend: 0.0, banks, controls: ChannelControls::default() }
    }

    #[test]
    fn voice_filters_side_by_side_play_each_voice_as_alone_bit_for_bit() {
        let lines = Lines::new(Arc::new(super::super::EngineStats::default()));
        let tables = Tables::with_kit(SR, false);
        let banks = super::super::banks::BankSlots::default();
        let params = params_of(&[
            (Param::FilterAmount, 3000.0),
            (Param::VelToFilter, 1000.0),
            (Param::Lowpass, 2000.0),
            (Param::LowpassQ, 2.0),
            (Param::FilterDecay, 0.2),
            (Param::FilterSustain, 0.2),
            (Param::Detune, 8.0),
            (Param::Analog, 0.3),
            (Param::Decay, 0.3),
            (Param::Sustain, 0.5),
            (Param::Release, 0.05),
        ]);
        let ctx = plain_ctx(&tables, &params, &banks);
        let saw = synth_index("saw").expect("saw") as u16;
        // 21 voices: every seventh keeps parameters without a filter (as a voice
        // left on the channel's old instrument does), so groups of filtered voices
        // are cut short as well as full.
        let make = || -> Vec<Voice> {
            (0..21u8)
                .map(|i| {
                    let mut v = Voice::new(&lines);
                    v.start(0, 40 + i * 2, 50 + i * 3, i as u64, VoiceSource::Synth(saw), 1, 77 + i as u64, None, &ctx);
                    if i % 7 == 3 {
                        v.frozen = Some(ParamValues::default());
                    }
                    v
                })
                .collect()
        };
        let (mut alone, mut side) = (make(), make());
        let mut slots: Vec<u16> = (0..21).collect();
        let mut filtered = 0;
        for (k, n) in [64usize, 64, 17, 47, 1, 63, 64].into_iter().cycle().take(300).enumerate() {
            filtered += slots.iter().filter(|&&s| side[s as usize].filters(&ctx)).count();
            let a = segment(&mut alone, &slots, &ctx, n, false);
            let b = segment(&mut side, &slots, &ctx, n, true);
            assert!(a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()), "segment {k} of {n} frames differs");
            if k == 100 {
                for (x, y) in alone.iter_mut().zip(side.iter_mut()).step_by(2) {
                    x.release(&params, SR);
                    y.release(&params, SR);
                }
            }
            slots.retain(|&s| side[s as usize].active);
            assert!(alone.iter().zip(&side).all(|(x, y)| x.active == y.active));
        }
        assert!(filtered > 1000, "only {filtered} filtered voice segments: the test proves little");
        assert!(slots.len() < 21 && !slots.is_empty(), "{} voices left: some should have ended", slots.len());
    }

    #[test]
    fn string_loops_side_by_side_play_each_voice_as_alone_bit_for_bit() {
        let stats = Arc::new(super::super::EngineStats::default());
        let mut snap = Snapshot::default();
        snap.channels[0] = Some(channel("bass_guitar_synth"));
        let (lines_a, lines_b) = (Lines::new(stats.clone()), Lines::new(stats));
        lines_a.provide(&snap, SR);
        lines_b.provide(&snap, SR);
        let tables = Tables::with_kit(SR, false);
        let banks = super::super::banks::BankSlots::default();
        let params =
            params_of(&[(Param::Analog, 0.3), (Param::Decay, 0.3), (Param::Sustain, 0.5), (Param::Release, 0.05)]);
        let ctx = plain_ctx(&tables, &params, &banks);
        // Strings that run beside others (two kinds) among ones that do not and a
        // saw; notes from 16 to 98, so that some loops are shorter than a segment
        // or nearly as long as the line (those run alone).
        let synths = ["bass_guitar_synth", "upright_bass_synth", "bass_guitar_synth", "acoustic_guitar_synth", "saw"]
            .map(|name| synth_index(name).expect("synth") as u16);
        let make = |lines: &Arc<Lines>| -> Vec<Voice> {
            (0..23u8)
                .map(|i| {
                    let mut v = Voice::new(lines);
                    let s = synths[i as usize % synths.len()];
                    v.start(
                        0,
                        16 + i * 4 - i % 3,
                        40 + i * 3,
                        i as u64,
                        VoiceSource::Synth(s),
                        1,
                        91 + i as u64,
                        None,
                        &ctx,
                    );
                    v
                })
                .collect()
        };
        let (mut alone, mut side) = (make(&lines_a), make(&lines_b));
        let mut slots: Vec<u16> = (0..23).collect();
        let mut beside = 0;
        for (k, n) in [64usize, 64, 17, 47, 1, 63, 64, 8, 9].into_iter().cycle().take(400).enumerate() {
            beside += slots.iter().filter(|&&s| side[s as usize].beside).count();
            let a = segment(&mut alone, &slots, &ctx, n, false);
            let b = segment(&mut side, &slots, &ctx, n, true);
            assert!(a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()), "segment {k} of {n} frames differs");
            if k == 120 {
                // Key up (the strings muted), and releases.
                for (i, (x, y)) in alone.iter_mut().zip(side.iter_mut()).enumerate() {
                    if i % 2 == 0 {
                        x.key_up(false, &ParamValues::default(), SR);
                        y.key_up(false, &ParamValues::default(), SR);
                    } else if i % 3 == 0 {
                        x.release(&params, SR);
                        y.release(&params, SR);
                    }
                }
            }
            slots.retain(|&s| side[s as usize].active);
            assert!(alone.iter().zip(&side).all(|(x, y)| x.active == y.active));
        }
        assert!(beside > 2000, "only {beside} voice segments of strings beside others: the test proves little");
    }

    #[test]
    fn synths_that_do_not_ask_for_a_line_play_the_same_without_one() {
        let waves = Wavetables::new();
        for (i, entry) in SYNTHS.iter().enumerate() {
            let with = play(i, line_len(SR), &waves);
            if entry.synth.uses_line() {
                assert!(with.iter().any(|x| *x != 0.0), "{} is silent with its line", entry.name);
                continue;
            }
            let without = play(i, 0, &waves);
            assert!(with == without, "{} reads the delay line: declare it in Synth::uses_line", entry.name);
        }
    }

    fn channel(synth: &str) -> ChannelConfig {
        let s = synth_index(synth).expect("synth") as u16;
        ChannelConfig { source: Source::Synth(s), instrument_id: 1, params: ParamValues::default(), voice_limit: 16 }
    }

    #[test]
    fn lines_are_allocated_only_for_rigs_that_may_play_a_synth_using_one() {
        let stats = Arc::new(super::super::EngineStats::default());
        // Sampled, drum and wavetable channels, with a program map of string synths
        // that only a synth channel would follow.
        let mut snap = Snapshot::default();
        snap.channels[9] = Some(ChannelConfig { source: Source::Drums, ..channel("saw") });
        snap.programs[24] = Some(channel("pluck_synth"));
        let lines = Lines::new(stats.clone());
        lines.provide(&snap, SR);
        assert!(!lines.provided(), "a drum channel does not follow program changes");
        assert!(lines.lend(0).is_none());
        snap.channels[0] = Some(channel("saw"));
        lines.provide(&snap, SR);
        assert!(lines.provided(), "a synth channel may change program to a string");
        let direct = Lines::new(stats);
        let mut snap = Snapshot::default();
        snap.channels[3] = Some(channel("harp_synth"));
        direct.provide(&snap, SR);
        assert!(direct.provided());
    }

    /// A channel's own lines come with the first snapshot that lets it play a synth
    /// that uses one; until then it may only borrow the shared ones.
    #[test]
    fn a_channel_gets_its_own_lines_once_it_may_lend_one() {
        let stats = Arc::new(super::super::EngineStats::default());
        let lines = Lines::new(stats);
        let mut snap = Snapshot::default();
        snap.channels[0] = Some(channel("pluck_synth"));
        snap.channels[9] = Some(ChannelConfig { source: Source::Drums, ..channel("saw") });
        lines.provide(&snap, SR);
        // Lines lent to channel `c`, then given back as channel `back`'s.
        let count = |c: u8, back: u8| {
            let lent: Vec<_> = std::iter::from_fn(|| lines.lend(c)).take(1000).collect();
            let n = lent.len();
            for line in lent {
                lines.take_back(back, line);
            }
            n
        };
        assert_eq!(count(5, 0), SHARED_LINES, "channel 6 is not configured: the shared lines only");
        assert_eq!(count(9, 0), SHARED_LINES, "the drum channel lends none: the shared lines only");
        snap.channels[5] = Some(channel("harp_synth"));
        lines.provide(&snap, SR);
        assert_eq!(count(5, 5), CHANNEL_LINES + SHARED_LINES, "channel 6 configured: its own too");
        assert_eq!(count(0, 0), CHANNEL_LINES + SHARED_LINES);
    }

    /// A slot holds synth state or sample state, never both: the pool's 4352 slots
    /// are written when it is built, so every byte here is resident.
    #[test]
    fn a_voice_slot_holds_synth_or_sample_state_not_both() {
        use std::mem::size_of;
        let (osc, sample, voice) = (size_of::<OscState>(), size_of::<SampleVoice>(), size_of::<Voice>());
        println!("OscState {osc} bytes, SampleVoice {sample}, Voice {voice}");
        assert!(size_of::<VoiceBody>() <= osc.max(sample) + 16);
        assert!(voice < osc + sample, "a voice is {voice} bytes: its synth and sample state are side by side again");
    }

    #[test]
    fn a_lent_line_is_zeroed_and_every_line_comes_back() {
        let stats = Arc::new(super::super::EngineStats::default());
        let lines = Lines::new(stats.clone());
        let mut snap = Snapshot::default();
        snap.channels[0] = Some(channel("pluck_synth"));
        lines.provide(&snap, SR);
        let mut lent = Vec::new();
        while let Some(mut line) = lines.lend(0) {
            assert_eq!(line.len(), line_len(SR));
            assert!(line.iter().all(|x| *x == 0.0), "a lent line starts silent");
            line.fill(1.0);
            lent.push(line);
        }
        assert_eq!(lent.len(), CHANNEL_LINES + SHARED_LINES, "channel 1 has its own and the shared lines");
        assert_eq!(stats.lines_missed.load(Relaxed), 0, "a note that waits for a line is not lost yet");
        assert!(lines.lend(1).is_none(), "channel 2 has no lines of its own while it is not configured");
        snap.channels[1] = Some(channel("pluck_synth"));
        lines.provide(&snap, SR);
        assert_eq!(lines.lend(1).map(|l| l.len()), Some(line_len(SR)), "channel 2 has its own once configured");
        for line in lent {
            lines.take_back(0, line);
        }
        let again = std::iter::from_fn(|| lines.lend(0)).take(1000).count();
        assert_eq!(again, CHANNEL_LINES + SHARED_LINES);
    }
}
