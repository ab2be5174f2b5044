//! The channel bus, on the audio thread: distortion, saturation, tremolo, chorus,
//! phaser, high-pass, low-pass, delay, reverb, then volume and constant-power pan.
//! Every parameter glides; each stage is skipped while its mix rests at zero, and
//! its state (delay lines, reverb tail) persists across ticks and snapshot swaps.

use crate::dsp::chorus::{Chorus, ChorusTaps};
use crate::dsp::delay::StereoDelay;
use crate::dsp::glide::Glide;
use crate::dsp::math::{db_to_gain, fast_tanh, fract_turns, sin_turns};
use crate::dsp::oversample::Oversampler4;
use crate::dsp::phaser::Phaser;
use crate::dsp::reverb::Reverb;
use crate::dsp::svf::{Svf, SvfCoefs, SvfPair, SvfPairCoefs};
use crate::engine::TICK_FRAMES;
use crate::engine::snapshot::SharedReverb;
use crate::params::{NUM_PARAMS, Param, ParamValues};
use std::f32::consts::FRAC_PI_4;
use wide::f32x4;

/// Longest echo the delay line holds.
pub const MAX_DELAY_SECONDS: f32 = 2.0;

/// Fade-in of a wet path's input when the effect switches on.
const WAKE_FADE_SECONDS: f32 = 0.01;
const CHORUS: usize = 0;
const DELAY: usize = 1;
const REVERB: usize = 2;

/// Multiplies `buf` by a gain rising by `step` per sample up to 1.
#[inline]
fn ramp_in(gain: &mut f32, step: f32, buf: &mut [f32]) {
    if *gain >= 1.0 {
        return;
    }
    for x in buf.iter_mut() {
        *gain = (*gain + step).min(1.0);
        *x *= *gain;
    }
}

/// The bus output of one tick.
/// Per reverb type (in [`crate::params::REVERB_TYPES`] order): decay time in seconds
/// at `reverb_decay` 1, and high-frequency damping. The algorithmic reverb's decay
/// is `reverb_decay` itself.
const REVERB_CHARACTERS: [(f32, f32); 9] = [
    (1.0, crate::dsp::reverb::DEFAULT_DAMPING), // algorithmic
    (4.0, 0.15),                                // plate: long, bright
    (2.5, 0.4),                                 // hall
    (6.0, 0.6),                                 // cathedral: long, dark
    (3.0, 0.45),                                // spring
    (8.0, 0.7),                                 // cave: very dark
    (3.0, 0.15),                                // parking garage: hard surfaces
    (5.0, 0.35),                                // canyon
    (12.0, 0.5),                                // taj mahal: the longest
];

/// How long the chorus and reverb keep running after the last effect send of a
/// sample voice, beyond the reverb's own decay time.
const SEND_TAIL_SECONDS: f32 = 0.5;

/// A reverb type's decay time at `reverb_decay` 1 and its damping, for `t`'s type.
pub fn reverb_character(t: &ParamValues) -> (f32, f32) {
    reverb_type_character(t.get(Param::ReverbType))
}

/// A reverb type's decay time at `reverb_decay` 1 and its damping.
pub fn reverb_type_character(reverb_type: f32) -> (f32, f32) {
    REVERB_CHARACTERS.get(reverb_type as usize).copied().unwrap_or(REVERB_CHARACTERS[0])
}

/// One tick of a channel's input: the mono sum of its synth and drum-kit voices,
/// and the stereo sum and effect sends of its sample voices (those are written
/// only while sample voices play, and the flags say so).
pub struct ChannelInput {
    pub mono: [f32; TICK_FRAMES],
    pub left: [f32; TICK_FRAMES],
    pub right: [f32; TICK_FRAMES],
    pub chorus: [f32; TICK_FRAMES],
    pub reverb: [f32; TICK_FRAMES],
    pub stereo: bool,
    pub sent: bool,
}

impl Default for ChannelInput {
    fn default() -> Self {
        ChannelInput {
            mono: [0.0; TICK_FRAMES],
            left: [0.0; TICK_FRAMES],
            right: [0.0; TICK_FRAMES],
            chorus: [0.0; TICK_FRAMES],
            reverb: [0.0; TICK_FRAMES],
            stereo: false,
            sent: false,
        }
    }
}

impl ChannelInput {
    /// Zeroes what the last tick wrote.
    pub fn clear(&mut self) {
        self.mono = [0.0; TICK_FRAMES];
        if self.stereo {
            self.left = [0.0; TICK_FRAMES];
            self.right = [0.0; TICK_FRAMES];
            self.stereo = false;
        }
        if self.sent {
            self.chorus = [0.0; TICK_FRAMES];
            self.reverb = [0.0; TICK_FRAMES];
            self.sent = false;
        }
    }
}

/// The stereo spread's delay `D`: while spread is on, the channel is heard `D` late,
/// with the side signal `mid(t) - mid(t - 2D)` added left and taken right.
const SPREAD_DELAY_SECONDS: f32 = 0.003;

pub struct BusOut<'a> {
    pub left: &'a mut [f32],
    pub right: &'a mut [f32],
    /// The reverb the snapshot has this channel share (see `engine::sends`).
    pub shared_reverb: Option<SharedReverb>,
}

/// A cutoff filter stage: its frequency glides in octaves, and its wet mix glides
/// between 0 (off) and 1 so that switching it on or off never clicks.
struct FilterStage {
    log_cutoff: Glide,
    q: Glide,
    mix: Glide,
    state: [Svf; 2],
}

impl FilterStage {
    fn new(tick: usize, sr: f32) -> Self {
        FilterStage {
            log_cutoff: Glide::new(10.0, tick, sr),
            q: Glide::new(0.707, tick, sr),
            mix: Glide::new(0.0, tick, sr),
            state: [Svf::default(); 2],
        }
    }

    fn snap(&mut self, cutoff: f32, q: f32) {
        if cutoff > 0.0 {
            self.log_cutoff.reset(cutoff.log2());
        }
        self.q.reset(q);
        self.mix.reset(if cutoff > 0.0 { 1.0 } else { 0.0 });
    }

    /// Steps the glides over a block of `n` samples: the filter's coefficients and
    /// the wet mix's start and step, or `None` while it is off (nothing to run).
    fn begin(&mut self, cutoff: f32, q: f32, sr: f32, n: usize) -> Option<FilterRun> {
        let on = cutoff > 0.0;
        if on && self.mix.value() == 0.0 {
            // Engaging from off: start at the target rather than sweeping to it.
            self.log_cutoff.reset(cutoff.log2());
        }
        let (m0, dm) = self.mix.step(if on { 1.0 } else { 0.0 }, n);
        if m0 == 0.0 && dm == 0.0 {
            return None;
        }
        if on {
            self.log_cutoff.step(cutoff.log2(), n);
        }
        self.q.step(q, n);
        let c = SvfCoefs::new(self.log_cutoff.value().exp2(), self.q.value(), sr);
        Some(FilterRun { c, m0, dm })
    }

    /// Filters the block as [`FilterStage::begin`] set it up.
    fn run(&mut self, run: &FilterRun, high: bool, l: &mut [f32], r: &mut [f32]) {
        let FilterRun { c, m0, dm } = *run;
        // Both sides as one pair: two independent recursions in one chain of vector
        // operations.
        let c = SvfPairCoefs::from(&c);
        let mut f = SvfPair::load(&self.state);
        if run.fully_on() {
            // Fully on: the filter's output as is.
            for (xl, xr) in l.iter_mut().zip(r.iter_mut()) {
                let (lo, _, hi) = f.tick(&c, f32x4::from([*xl, *xr, 0.0, 0.0]));
                let y = if high { hi } else { lo }.to_array();
                (*xl, *xr) = (y[0], y[1]);
            }
        } else {
            for (i, (xl, xr)) in l.iter_mut().zip(r.iter_mut()).enumerate() {
                let x = f32x4::from([*xl, *xr, 0.0, 0.0]);
                let (lo, _, hi) = f.tick(&c, x);
                let y = if high { hi } else { lo };
                let m = f32x4::splat(m0 + dm * (i as i32 + 1) as f32);
                let y = (x + (y - x) * m).to_array();
                (*xl, *xr) = (y[0], y[1]);
            }
        }
        f.store(&mut self.state);
        self.guard();
    }

    /// Clears a state that has blown up (never expected; a guard for extreme input).
    fn guard(&mut self) {
        if !(self.state[0].is_finite() && self.state[1].is_finite()) {
            self.state = [Svf::default(); 2];
        }
    }
}

/// A block of a [`FilterStage`]: its coefficients and its wet mix's start and step.
#[derive(Clone, Copy)]
struct FilterRun {
    c: SvfCoefs,
    m0: f32,
    dm: f32,
}

impl FilterRun {
    /// The wet mix at 1 throughout: the filter's output as is.
    fn fully_on(&self) -> bool {
        self.m0 == 1.0 && self.dm == 0.0
    }
}

/// The phaser's wet share at sample `i` of a block whose mix glide starts at `p0`
/// and steps `pd` per sample (half the mix: the phaser is an even blend at full).
#[inline(always)]
fn phaser_mix(p0: f32, pd: f32, i: usize) -> f32 {
    (p0 + pd * (i as i32 + 1) as f32) * 0.5
}

/// The phaser mixed in by [`phaser_mix`] and then the low-pass fully
/// on, sample by sample in one loop: the same operations in the same order as the
/// phaser over a copy of the block, the mix, and [`FilterStage::run`] one after the
/// other, but the phaser's recursion and the filter's overlap rather than running
/// one after the other.
#[allow(clippy::too_many_arguments)] // the two stages' state and the block
#[inline(always)]
fn phaser_then_lowpass(
    phaser: &mut Phaser,
    (al, ar): (f32, f32),
    (p0, pd): (f32, f32),
    lowpass: &mut [Svf; 2],
    c: &SvfCoefs,
    l: &mut [f32],
    r: &mut [f32],
) {
    // The states in locals, kept in registers through the loop (through the
    // references, the compiler kept them in memory); the low-pass's two sides as one
    // pair.
    let mut ph = phaser.clone();
    let mut f = SvfPair::load(lowpass);
    let c = SvfPairCoefs::from(c);
    for (i, (xl, xr)) in l.iter_mut().zip(r.iter_mut()).enumerate() {
        (*xl, *xr) = phaser_lowpass_tick::<true>(&mut ph, (al, ar), (p0, pd), &mut f, &c, i, (*xl, *xr));
    }
    *phaser = ph;
    f.store(lowpass);
}

/// One sample `(yl, yr)`, at sample `i` of the block, through the phaser mixed in by
/// [`phaser_mix`] when `PHASER`, then through the low-pass fully on: the per-sample
/// step of [`phaser_then_lowpass`] and [`chorus_then_filters`].
#[allow(clippy::too_many_arguments)] // the two stages' state and the sample
#[inline(always)]
fn phaser_lowpass_tick<const PHASER: bool>(
    ph: &mut Phaser,
    (al, ar): (f32, f32),
    (p0, pd): (f32, f32),
    f: &mut SvfPair,
    c: &SvfPairCoefs,
    i: usize,
    (mut yl, mut yr): (f32, f32),
) -> (f32, f32) {
    if PHASER {
        let (wl, wr) = ph.tick(al, ar, yl, yr);
        let m = phaser_mix(p0, pd, i);
        yl += (wl - yl) * m;
        yr += (wr - yr) * m;
    }
    let y = f.tick(c, f32x4::from([yl, yr, 0.0, 0.0])).0.to_array();
    (y[0], y[1])
}

/// The chorus's wet sides mixed with the dry ones by the chorus mix at sample `i`
/// (its glide starting at `c0`, stepping `cd`): with the voices' sends, the wet sides
/// add in full.
#[inline(always)]
fn chorus_mixed(dry: f32, wet: f32, c: f32, sends: bool) -> f32 {
    if sends { dry * (1.0 - c) + wet } else { dry * (1.0 - c) + wet * c }
}

/// The chorus's half mix at sample `i` of a block whose mix glide starts at `c0` and
/// steps `cd` per sample.
#[inline(always)]
fn chorus_share(c0: f32, cd: f32, i: usize) -> f32 {
    (c0 + cd * (i as i32 + 1) as f32) * 0.5
}

/// The chorus's output: the dry sides and the wet ones mixed ([`chorus_mixed`]).
#[allow(clippy::too_many_arguments)] // both sides in and out
#[inline(always)]
fn chorus_mix(
    mono: &[f32],
    right_dry: &[f32],
    (c0, cd): (f32, f32),
    sends: bool,
    wl: &[f32],
    wr: &[f32],
    l: &mut [f32],
    r: &mut [f32],
) {
    for i in 0..l.len() {
        let c = chorus_share(c0, cd, i);
        l[i] = chorus_mixed(mono[i], wl[i], c, sends);
        r[i] = chorus_mixed(right_dry[i], wr[i], c, sends);
    }
}

/// The chorus's reads of a block written by [`Chorus::write`], its mix with the mono
/// dry signal (no sends), with `PHASER` the phaser mixed in by [`phaser_mix`], and
/// then the low-pass fully on, sample by sample in one loop: the same operations in
/// the same order as the chorus's reads into buffers, [`chorus_mix`], the phaser (as
/// in [`phaser_then_lowpass`]) and [`FilterStage::run`] one after the other, but the
/// reads and the mix run beside the recursions instead of before them.
#[allow(clippy::too_many_arguments)] // the stages' state and the block
#[inline(always)]
fn chorus_then_filters<const PHASER: bool>(
    (ring, taps): (&[f32], &ChorusTaps),
    mono: &[f32],
    (c0, cd): (f32, f32),
    phaser: &mut Phaser,
    ((al, ar), (p0, pd)): ((f32, f32), (f32, f32)),
    lowpass: &mut [Svf; 2],
    c: &SvfCoefs,
    l: &mut [f32],
    r: &mut [f32],
) {
    // The states in locals, as in [`phaser_then_lowpass`].
    let mut ph = phaser.clone();
    let mut f = SvfPair::load(lowpass);
    let c = SvfPairCoefs::from(c);
    let ((mut dl, sl), (mut dr, sr)) = (taps.left, taps.right);
    for (i, ((xl, xr), &m)) in l.iter_mut().zip(r.iter_mut()).zip(mono).enumerate() {
        dl += sl;
        dr += sr;
        let (wl, wr) = (taps.tap(ring, i, dl), taps.tap(ring, i, dr));
        let share = chorus_share(c0, cd, i);
        let y = (chorus_mixed(m, wl, share, false), chorus_mixed(m, wr, share, false));
        (*xl, *xr) = phaser_lowpass_tick::<PHASER>(&mut ph, (al, ar), (p0, pd), &mut f, &c, i, y);
    }
    if PHASER {
        *phaser = ph;
    }
    f.store(lowpass);
}

pub struct Bus {
    sr: f32,
    glides: [Glide; NUM_PARAMS],
    trem_phase: f64,
    /// DC blocker after distortion and saturation.
    dc: [f32; 2],
    /// The DC blocker's state for the right side of stereo input.
    dc_right: [f32; 2],
    /// Distortion and saturation run oversampled; how far the output has moved to
    /// the oversampled path (0..1, so that switching them on or off never clicks).
    oversampler: Oversampler4,
    /// The same for the right side of stereo input.
    oversampler_right: Oversampler4,
    drive_on: f32,
    chorus: Chorus,
    chorus_dormant: bool,
    phaser: Phaser,
    highpass: FilterStage,
    lowpass: FilterStage,
    delay: StereoDelay,
    delay_dormant: bool,
    reverb: Reverb,
    reverb_dormant: bool,
    /// Input gains of the wet paths, ramping up from 0 after the path wakes, so the
    /// first delayed sample is not a jump.
    wake: [f32; 3],
    wake_step: f32,
    /// The stereo spread: a history of the mid (2D frames) and of both sides (D
    /// frames), one write position each; how far the output has moved to the delayed
    /// signal (0..1, so that switching spread on or off never clicks).
    spread_mid: Box<[f32]>,
    spread_sides: [Box<[f32]>; 2],
    spread_pos: [usize; 2],
    spread_on: f32,
    spread_dormant: bool,
    mono: Box<[f32]>,
    feed: Box<[f32]>,
    wet_l: Box<[f32]>,
    wet_r: Box<[f32]>,
    /// The right side before the chorus (stereo input).
    right_in: Box<[f32]>,
    /// Frames the chorus and the reverb keep running after the last effect send.
    chorus_tail: u32,
    reverb_tail: u32,
    /// The level trim (dB) and its gain at the end of the last tick.
    trim_end: (f32, f32),
    /// The pan and its left and right gains at the end of the last tick.
    pan_end: (f32, f32, f32),
    /// This tick's input to a shared reverb, and that reverb's settings when fed.
    shared_feed: [f32; TICK_FRAMES],
    shared_fed: Option<SharedReverb>,
    /// The input goes to a shared reverb; frames the bus's own reverb rings out for.
    shared_on: bool,
    own_drain: u32,
}

impl Bus {
    /// Allocates every buffer the bus will ever use (control side).
    pub fn new(sample_rate: f32, tick: usize) -> Self {
        let defaults = ParamValues::default();
        Bus {
            sr: sample_rate,
            glides: std::array::from_fn(|i| Glide::new(defaults.0[i], tick, sample_rate)),
            trem_phase: 0.0,
            dc: [0.0; 2],
            dc_right: [0.0; 2],
            oversampler: Oversampler4::new(),
            oversampler_right: Oversampler4::new(),
            drive_on: 0.0,
            chorus: Chorus::new(sample_rate),
            chorus_dormant: true,
            phaser: Phaser::default(),
            highpass: FilterStage::new(tick, sample_rate),
            lowpass: FilterStage::new(tick, sample_rate),
            delay: StereoDelay::new(MAX_DELAY_SECONDS, sample_rate),
            delay_dormant: true,
            reverb: Reverb::new(sample_rate),
            reverb_dormant: true,
            wake: [1.0; 3],
            wake_step: 1.0 / (WAKE_FADE_SECONDS * sample_rate),
            spread_mid: crate::dsp::zeroed(2 * Self::spread_frames(sample_rate)),
            spread_sides: [(); 2].map(|_| crate::dsp::zeroed(Self::spread_frames(sample_rate))),
            spread_pos: [0; 2],
            spread_on: 0.0,
            spread_dormant: true,
            mono: crate::dsp::zeroed(tick),
            feed: crate::dsp::zeroed(tick),
            wet_l: crate::dsp::zeroed(tick),
            wet_r: crate::dsp::zeroed(tick),
            right_in: crate::dsp::zeroed(tick),
            chorus_tail: 0,
            reverb_tail: 0,
            trim_end: (f32::NAN, 0.0),
            pan_end: (f32::NAN, 0.0, 0.0),
            shared_feed: [0.0; TICK_FRAMES],
            shared_fed: None,
            shared_on: false,
            own_drain: 0,
        }
    }

    /// What this tick fed a shared reverb, if anything: its settings and the input
    /// (the engine adds it to that reverb's input, in channel order).
    pub fn shared_reverb_feed(&self) -> Option<(SharedReverb, &[f32; TICK_FRAMES])> {
        self.shared_fed.map(|k| (k, &self.shared_feed))
    }

    /// The spread's delay `D` in frames.
    fn spread_frames(sample_rate: f32) -> usize {
        ((SPREAD_DELAY_SECONDS * sample_rate).round() as usize).max(1)
    }

    /// Jumps every parameter to its target (a channel that was silent has nothing to
    /// glide from).
    pub fn snap(&mut self, t: &ParamValues) {
        for (g, v) in self.glides.iter_mut().zip(t.0) {
            g.reset(v);
        }
        self.highpass.snap(t.get(Param::Highpass), t.get(Param::HighpassQ));
        self.lowpass.snap(t.get(Param::Lowpass), t.get(Param::LowpassQ));
    }

    /// The longest silence after which the bus can still sound again without new
    /// input: one echo period while the delay runs (the reverb's lines are far
    /// shorter than the idle time). A channel idles only after a longer silence.
    pub fn silent_gap_seconds(&self, t: &ParamValues) -> f32 {
        if self.delay_dormant { 0.0 } else { t.get(Param::DelayTime) * 1.1 + 0.05 }
    }

    /// Clears all state (after a numeric fault).
    pub fn clear(&mut self) {
        self.dc = [0.0; 2];
        self.dc_right = [0.0; 2];
        self.oversampler.clear();
        self.oversampler_right.clear();
        self.chorus.clear();
        self.phaser.clear();
        self.delay.clear();
        self.reverb.clear();
        self.shared_fed = None;
        self.highpass.state = [Svf::default(); 2];
        self.lowpass.state = [Svf::default(); 2];
    }

    /// Processes one tick of input into `out`, gliding toward the targets `t`. Mono
    /// input (synths) runs mono up to the chorus; with stereo input (sample voices)
    /// the stages before the chorus run on each side, and the voices' effect sends
    /// feed the chorus and the reverb whatever their mix (their wet output adds on).
    pub fn process(&mut self, input: &ChannelInput, t: &ParamValues, out: BusOut) {
        process_wide(self, input, t, out);
    }

    /// [`Bus::process`]'s body, inlined into both builds of `process_wide`.
    #[inline(always)]
    fn process_body(&mut self, input: &ChannelInput, t: &ParamValues, out: BusOut) {
        let n = input.mono.len();
        let sr = self.sr;
        let stereo = input.stereo;
        let mono = &mut self.mono[..n];
        mono.copy_from_slice(&input.mono);
        let right_in = &mut self.right_in[..n];
        if stereo {
            for ((ri, m), (&il, &ir)) in
                right_in.iter_mut().zip(mono.iter_mut()).zip(input.left.iter().zip(&input.right))
            {
                *ri = *m + ir;
                *m += il;
            }
        }
        if input.sent {
            let (type_decay, _) =
                REVERB_CHARACTERS.get(t.get(Param::ReverbType) as usize).copied().unwrap_or(REVERB_CHARACTERS[0]);
            let decay = t.get(Param::ReverbDecay) * type_decay;
            self.chorus_tail = (SEND_TAIL_SECONDS * sr) as u32;
            self.reverb_tail = ((decay * 1.5 + SEND_TAIL_SECONDS) * sr) as u32;
        }
        let chorus_send = self.chorus_tail > 0;
        let reverb_send = self.reverb_tail > 0;
        self.chorus_tail = self.chorus_tail.saturating_sub(n as u32);
        self.reverb_tail = self.reverb_tail.saturating_sub(n as u32);

        // Distortion (a driven tanh blended in by the amount), then saturation (a gentle
        // tanh, blended), at four times the rate: the harmonics the curves make above
        // the audio band are filtered out before they fold back into it. While the
        // stage switches on or off, the output crossfades over the wake fade between
        // the dry signal and the oversampled one (which runs `LATENCY_SAMPLES` late).
        let (d0, dd) = self.glides[Param::Distortion as usize].step(t.get(Param::Distortion), n);
        let (g0, gd) = self.glides[Param::DistortionDrive as usize].step(t.get(Param::DistortionDrive), n);
        let (s0, sd) = self.glides[Param::Saturation as usize].step(t.get(Param::Saturation), n);
        let driven = d0 > 0.0 || dd != 0.0 || s0 > 0.0 || sd != 0.0;
        if driven || self.drive_on > 0.0 {
            if self.drive_on == 0.0 {
                self.oversampler.clear();
                self.oversampler_right.clear();
            }
            let curve = |i: usize, x: f32| {
                let k = (i as i32 + 1) as f32;
                let a = d0 + dd * k;
                let drive = (g0 + gd * k) * (1.0 + 3.0 * a);
                let x = x + (fast_tanh(x * drive) * 0.5 - x) * a;
                let b = s0 + sd * k;
                x + (fast_tanh(x * (1.0 + 2.0 * b)) - x) * b
            };
            let dry = &mut self.feed[..n];
            dry.copy_from_slice(mono);
            self.oversampler.process(mono, curve);
            // The right side of stereo input (sample voices) through its own stage;
            // its dry copy waits in the chorus's scratch buffer.
            let dry_right = &mut self.wet_l[..n];
            if stereo {
                dry_right.copy_from_slice(right_in);
                self.oversampler_right.process(right_in, curve);
            }
            let target = if driven { 1.0 } else { 0.0 };
            if self.drive_on != target || target != 1.0 {
                let start = self.drive_on;
                for (x, d) in mono.iter_mut().zip(dry.iter()) {
                    let w = self.drive_on;
                    *x = d + (*x - d) * w;
                    self.drive_on = w + (target - w).clamp(-self.wake_step, self.wake_step);
                }
                if stereo {
                    let mut w = start;
                    for (x, d) in right_in.iter_mut().zip(dry_right.iter()) {
                        *x = d + (*x - d) * w;
                        w += (target - w).clamp(-self.wake_step, self.wake_step);
                    }
                }
            }
            if !self.oversampler.is_finite() {
                self.oversampler.clear();
            }
            if !self.oversampler_right.is_finite() {
                self.oversampler_right.clear();
            }
            // DC out: driven even harmonics (an asymmetric wave through the curves
            // above) leave it. A 5 Hz corner leaves the lowest bass alone.
            crate::dsp::math::dc_block(mono, &mut self.dc, sr);
            if stereo {
                crate::dsp::math::dc_block(right_in, &mut self.dc_right, sr);
            }
        }

        // Tremolo: gain 1 - depth * (1 + sin) / 2.
        let (t0, td) = self.glides[Param::TremoloDepth as usize].step(t.get(Param::TremoloDepth), n);
        let rate = t.get(Param::TremoloRate) as f64;
        let dphase = rate / sr as f64 * n as f64;
        if t0 > 0.0 || td != 0.0 {
            let s_a = sin_turns(self.trem_phase) as f32;
            let s_b = sin_turns(self.trem_phase + dphase) as f32;
            let ds = (s_b - s_a) / n as f32;
            for side in [&mut *mono, &mut *right_in].into_iter().take(1 + stereo as usize) {
                for (i, x) in side.iter_mut().enumerate() {
                    let k = (i as i32 + 1) as f32;
                    let depth = t0 + td * k;
                    let s = s_a + ds * k;
                    *x *= 1.0 - depth * 0.5 * (1.0 + s);
                }
            }
        }
        self.trem_phase = fract_turns(self.trem_phase + dphase);

        // The phaser's and the filters' glides step first (each stage's own state, so
        // the order does not matter). With no high-pass and the low-pass fully on (the
        // common case): for mono input and the chorus on without sends, the chorus's
        // reads and mix, the phaser if on and the low-pass run in one loop
        // (`chorus_then_filters`); otherwise, with the phaser on, the phaser and the
        // low-pass do (`phaser_then_lowpass`). Anything else runs one stage after the
        // other.
        let (p0, pd) = self.glides[Param::Phaser as usize].step(t.get(Param::Phaser), n);
        let phasing = p0 > 0.0 || pd != 0.0;
        let highpass = self.highpass.begin(t.get(Param::Highpass), t.get(Param::HighpassQ), sr, n);
        // With a filter envelope or velocity-to-filter the low-pass is in every voice.
        let cutoff = if super::voice::Voice::has_voice_filter(t) { 0.0 } else { t.get(Param::Lowpass) };
        let lowpass = self.lowpass.begin(cutoff, t.get(Param::LowpassQ), sr, n);
        let fused_lowpass = lowpass.filter(|run| highpass.is_none() && run.fully_on());
        let mut filtered = false;

        // Chorus: mono in, stereo out.
        let l = &mut out.left[..n];
        let r = &mut out.right[..n];
        let (c0, cd) = self.glides[Param::Chorus as usize].step(t.get(Param::Chorus), n);
        let (cdep0, _) = self.glides[Param::ChorusDepth as usize].step(t.get(Param::ChorusDepth), n);
        let right_dry: &[f32] = if stereo { right_in } else { mono };
        if c0 > 0.0 || cd != 0.0 || chorus_send {
            if self.chorus_dormant {
                self.chorus.clear();
                self.chorus_dormant = false;
                self.wake[CHORUS] = 0.0;
            }
            let feed = &mut self.feed[..n];
            if stereo {
                for ((f, m), r) in feed.iter_mut().zip(mono.iter()).zip(right_dry.iter()) {
                    *f = 0.5 * (m + r);
                }
            } else {
                feed.copy_from_slice(mono);
            }
            if chorus_send {
                // The mix scales the channel's own feed; the voices' sends add in full.
                for (i, (f, send)) in feed.iter_mut().zip(input.chorus.iter()).enumerate() {
                    *f = *f * (c0 + cd * (i as i32 + 1) as f32) * 0.5 + send;
                }
            }
            ramp_in(&mut self.wake[CHORUS], self.wake_step, feed);
            if let (Some(run), false, false) = (fused_lowpass, stereo, chorus_send) {
                let taps = self.chorus.write(feed, t.get(Param::ChorusRate), cdep0, sr);
                let chorus = (self.chorus.ring(), &taps);
                let state = &mut self.lowpass.state;
                if phasing {
                    let coefs = (self.phaser.coefs(sr), (p0, pd));
                    chorus_then_filters::<true>(chorus, mono, (c0, cd), &mut self.phaser, coefs, state, &run.c, l, r);
                    self.phaser.advance(t.get(Param::PhaserRate), n, sr);
                } else {
                    let coefs = ((0.0, 0.0), (0.0, 0.0));
                    chorus_then_filters::<false>(chorus, mono, (c0, cd), &mut self.phaser, coefs, state, &run.c, l, r);
                    self.phaser.clear();
                }
                self.lowpass.guard();
                filtered = true;
            } else {
                let (wl, wr) = (&mut self.wet_l[..n], &mut self.wet_r[..n]);
                self.chorus.process(feed, t.get(Param::ChorusRate), cdep0, sr, wl, wr);
                chorus_mix(mono, right_dry, (c0, cd), chorus_send, wl, wr, l, r);
            }
        } else {
            self.chorus_dormant = true;
            l.copy_from_slice(mono);
            r.copy_from_slice(right_dry);
        }

        match fused_lowpass {
            _ if filtered => {}
            Some(run) if phasing => {
                let coefs = self.phaser.coefs(sr);
                phaser_then_lowpass(&mut self.phaser, coefs, (p0, pd), &mut self.lowpass.state, &run.c, l, r);
                self.phaser.advance(t.get(Param::PhaserRate), n, sr);
                self.lowpass.guard();
            }
            _ => {
                if phasing {
                    let (wl, wr) = (&mut self.wet_l[..n], &mut self.wet_r[..n]);
                    wl.copy_from_slice(l);
                    wr.copy_from_slice(r);
                    self.phaser.process(wl, wr, t.get(Param::PhaserRate), sr);
                    for i in 0..n {
                        let m = phaser_mix(p0, pd, i);
                        l[i] += (wl[i] - l[i]) * m;
                        r[i] += (wr[i] - r[i]) * m;
                    }
                } else {
                    self.phaser.clear();
                }
                if let Some(run) = highpass {
                    self.highpass.run(&run, true, l, r);
                }
                if let Some(run) = lowpass {
                    self.lowpass.run(&run, false, l, r);
                }
            }
        }

        // Stereo spread: the channel delayed by D, plus a side signal
        // a (mid(t) - mid(t - 2D)) added left and taken right. The side's correlation
        // with the delayed mid is R(D) - R(D) = 0 for any signal, so left and right
        // carry the same energy (a mono source stays centred) and their sum is the mid,
        // D late (the mono sum is kept). Switching it on or off crossfades to and from
        // the delayed signal over the wake fade.
        let (s0, sd) = self.glides[Param::Spread as usize].step(t.get(Param::Spread), n);
        let active = s0 > 0.0 || sd != 0.0;
        if active || self.spread_on > 0.0 {
            self.spread_dormant = false;
            let (mid_len, side_len) = (self.spread_mid.len(), self.spread_sides[0].len());
            let [pm, ps] = &mut self.spread_pos;
            let [hl, hr] = &mut self.spread_sides;
            let target = if active { 1.0 } else { 0.0 };
            if self.spread_on == target {
                // Settled (the common case): the crossfade holds still, so the loop runs
                // over stretches where neither history wraps, with no state in `self`
                // (the same operations as below, in vector code).
                let w = target;
                let mut i = 0;
                while i < n {
                    let m = (n - i).min(mid_len - *pm).min(side_len - *ps);
                    let mid_h = &mut self.spread_mid[*pm..*pm + m];
                    let (hl, hr) = (&mut hl[*ps..*ps + m], &mut hr[*ps..*ps + m]);
                    let (ls, rs) = (&mut l[i..i + m], &mut r[i..i + m]);
                    for j in 0..m {
                        let old = mid_h[j];
                        let mid = 0.5 * (ls[j] + rs[j]);
                        mid_h[j] = mid;
                        let (dl, dr) = (hl[j], hr[j]);
                        hl[j] = ls[j];
                        hr[j] = rs[j];
                        let side = 0.5 * (s0 + sd * ((i + j) as i32 + 1) as f32) * (mid - old);
                        ls[j] += (dl - ls[j]) * w + side;
                        rs[j] += (dr - rs[j]) * w - side;
                    }
                    *pm = if *pm + m == mid_len { 0 } else { *pm + m };
                    *ps = if *ps + m == side_len { 0 } else { *ps + m };
                    i += m;
                }
            } else {
                for i in 0..n {
                    // The mid history: read 2D back (the oldest slot), then write now.
                    let old = self.spread_mid[*pm];
                    let mid = 0.5 * (l[i] + r[i]);
                    self.spread_mid[*pm] = mid;
                    *pm = if *pm + 1 == mid_len { 0 } else { *pm + 1 };
                    let (dl, dr) = (hl[*ps], hr[*ps]);
                    hl[*ps] = l[i];
                    hr[*ps] = r[i];
                    *ps = if *ps + 1 == side_len { 0 } else { *ps + 1 };
                    let side = 0.5 * (s0 + sd * (i as i32 + 1) as f32) * (mid - old);
                    let w = self.spread_on;
                    l[i] += (dl - l[i]) * w + side;
                    r[i] += (dr - r[i]) * w - side;
                    // Toward the target, and still once there (a bare "up, else down"
                    // stepped away from 1 on every other sample).
                    self.spread_on = w + (target - w).clamp(-self.wake_step, self.wake_step);
                }
            }
        } else if !self.spread_dormant {
            self.spread_mid.fill(0.0);
            self.spread_sides.iter_mut().for_each(|h| h.fill(0.0));
            self.spread_dormant = true;
        }

        // Delay: the time is not glided here; the delay line crossfades big jumps and
        // slews small moves itself.
        let (e0, ed) = self.glides[Param::Delay as usize].step(t.get(Param::Delay), n);
        let (fb0, fbd) = self.glides[Param::DelayFeedback as usize].step(t.get(Param::DelayFeedback), n);
        let delay_samples = t.get(Param::DelayTime) * sr;
        if e0 > 0.0 || ed != 0.0 {
            if self.delay_dormant {
                self.delay.clear();
                self.delay.reset_time(delay_samples);
                self.delay_dormant = false;
                self.wake[DELAY] = 0.0;
            }
            let (wl, wr) = (&mut self.wet_l[..n], &mut self.wet_r[..n]);
            wl.copy_from_slice(l);
            wr.copy_from_slice(r);
            let mut g = self.wake[DELAY];
            ramp_in(&mut g, self.wake_step, wl);
            ramp_in(&mut self.wake[DELAY], self.wake_step, wr);
            self.delay.process(wl, wr, delay_samples, fb0, fbd);
            for i in 0..n {
                let m = e0 + ed * (i as i32 + 1) as f32;
                l[i] += (wl[i] - l[i]) * m;
                r[i] += (wr[i] - r[i]) * m;
            }
        } else {
            self.delay_dormant = true;
        }

        // Volume and constant-power pan (gains interpolated across the tick).
        let (vol0, vold) = self.glides[Param::Volume as usize].step(t.get(Param::Volume), n);
        // The level trim (dB), as gains at both ends of the tick.
        let (lv0, lvd) = self.glides[Param::Level as usize].step(t.get(Param::Level), n);
        // The gains at the tick's ends; the start is the last tick's end, and a
        // settled value is not converted again (no powf, sin, cos per tick at rest).
        let lv1 = lv0 + lvd * n as f32;
        let trim0 = if lv0 == self.trim_end.0 { self.trim_end.1 } else { db_to_gain(lv0) };
        let trim1 = if lv1 == lv0 { trim0 } else { db_to_gain(lv1) };
        self.trim_end = (lv1, trim1);
        let (vol0, vold) = (vol0 * trim0, ((vol0 + vold * n as f32) * trim1 - vol0 * trim0) / n as f32);
        let (pan0, pand) = self.glides[Param::Pan as usize].step(t.get(Param::Pan), n);
        let angle = |pan: f32| (pan.clamp(-1.0, 1.0) + 1.0) * FRAC_PI_4;
        let pan1 = pan0 + pand * n as f32;
        let (gl0, gr0) = if pan0 == self.pan_end.0 {
            (self.pan_end.1, self.pan_end.2)
        } else {
            let a0 = angle(pan0);
            (a0.cos(), a0.sin())
        };
        let (gl1, gr1) = if pan1 == pan0 {
            (gl0, gr0)
        } else {
            let a1 = angle(pan1);
            (a1.cos(), a1.sin())
        };
        self.pan_end = (pan1, gl1, gr1);
        // Per-sample gains, each a straight line across the tick.
        let (dl, dr) = ((gl1 - gl0) / n as f32, (gr1 - gr0) / n as f32);

        // Reverb.
        let (v0, vd) = self.glides[Param::Reverb as usize].step(t.get(Param::Reverb), n);
        let (rd0, _) = self.glides[Param::ReverbDecay as usize].step(t.get(Param::ReverbDecay), n);
        // A reverb shared with other channels: while this channel sits centred at the
        // group's settings, its reverb input goes to the engine's reverb for the group
        // with the mix, volume and pan applied (they are linear; see `engine::sends`).
        let share = out.shared_reverb.filter(|k| {
            !reverb_send
                && pan0 == 0.0
                && pand == 0.0
                && k.reverb_type == t.get(Param::ReverbType)
                && k.reverb_decay == t.get(Param::ReverbDecay)
                && rd0 == k.reverb_decay
        });
        self.shared_fed = None;
        if let (Some(key), true) = (share, v0 > 0.0 || vd != 0.0) {
            if !self.shared_on {
                self.shared_on = true;
                if self.reverb_dormant {
                    self.wake[REVERB] = 0.0;
                } else {
                    // The bus's own reverb rings out (fed nothing) while the shared one
                    // takes the input.
                    let (type_decay, _) = reverb_type_character(t.get(Param::ReverbType));
                    self.own_drain = ((rd0 * type_decay * 1.5 + SEND_TAIL_SECONDS) * sr) as u32;
                }
            }
            for ((m, a), b) in mono.iter_mut().zip(l.iter()).zip(r.iter()) {
                *m = 0.5 * (a + b);
            }
            ramp_in(&mut self.wake[REVERB], self.wake_step, mono);
            for (i, (f, x)) in self.shared_feed.iter_mut().zip(mono.iter()).enumerate() {
                let k = (i as i32 + 1) as f32;
                *f = x * (v0 + vd * k) * (vol0 + vold * k) * (gl0 + dl * k);
            }
            self.shared_fed = Some(key);
            if !self.reverb_dormant {
                let (type_decay, damping) = reverb_type_character(t.get(Param::ReverbType));
                self.reverb.set_decay(rd0 * type_decay);
                self.reverb.set_damping(damping);
                let (wl, wr) = (&mut self.wet_l[..n], &mut self.wet_r[..n]);
                mono.fill(0.0);
                self.reverb.process(mono, wl, wr);
                for i in 0..n {
                    let m = v0 + vd * (i as i32 + 1) as f32;
                    l[i] += (wl[i] - l[i]) * m;
                    r[i] += (wr[i] - r[i]) * m;
                }
                self.own_drain = self.own_drain.saturating_sub(n as u32);
                if self.own_drain == 0 || !self.reverb.is_finite() {
                    self.reverb_dormant = true;
                }
            } else {
                for i in 0..n {
                    let m = v0 + vd * (i as i32 + 1) as f32;
                    l[i] -= l[i] * m;
                    r[i] -= r[i] * m;
                }
            }
        } else if v0 > 0.0 || vd != 0.0 || reverb_send {
            self.shared_on = false;
            if self.reverb_dormant {
                self.reverb.clear();
                self.reverb_dormant = false;
                self.wake[REVERB] = 0.0;
            }
            // The type's character: its own decay time (scaled by reverb_decay over
            // its 1 s default) and its damping.
            let (type_decay, damping) =
                REVERB_CHARACTERS.get(t.get(Param::ReverbType) as usize).copied().unwrap_or(REVERB_CHARACTERS[0]);
            self.reverb.set_decay(rd0 * type_decay);
            self.reverb.set_damping(damping);
            let (wl, wr) = (&mut self.wet_l[..n], &mut self.wet_r[..n]);
            for ((m, a), b) in mono.iter_mut().zip(l.iter()).zip(r.iter()) {
                *m = 0.5 * (a + b);
            }
            if reverb_send {
                // As the chorus: the mix scales the channel's feed, the sends add in full.
                for (i, (m, send)) in mono.iter_mut().zip(input.reverb.iter()).enumerate() {
                    *m = *m * (v0 + vd * (i as i32 + 1) as f32) + send;
                }
            }
            ramp_in(&mut self.wake[REVERB], self.wake_step, mono);
            self.reverb.process(mono, wl, wr);
            for i in 0..n {
                let m = v0 + vd * (i as i32 + 1) as f32;
                if reverb_send {
                    l[i] = l[i] * (1.0 - m) + wl[i];
                    r[i] = r[i] * (1.0 - m) + wr[i];
                } else {
                    l[i] += (wl[i] - l[i]) * m;
                    r[i] += (wr[i] - r[i]) * m;
                }
            }
            if !self.reverb.is_finite() {
                self.reverb.clear();
            }
        } else {
            self.reverb_dormant = true;
            self.shared_on = false;
        }

        for (i, (a, b)) in l.iter_mut().zip(r.iter_mut()).enumerate() {
            let k = (i as i32 + 1) as f32;
            let vol = vol0 + vold * k;
            *a *= vol * (gl0 + dl * k);
            *b *= vol * (gr0 + dr * k);
        }
        // These are not glided per sample; keep them at their targets.
        for p in [Param::TremoloRate, Param::ChorusRate, Param::PhaserRate, Param::DelayTime] {
            self.glides[p as usize].reset(t.get(p));
        }
    }
}

crate::dsp::wide_build!(fn process_wide = Bus::process_body, (this: &mut Bus, input: &ChannelInput, t: &ParamValues, out: BusOut));

#[cfg(test)]
mod tests {
    use super::*;

    /// The phaser over a copy, the mix and the low-pass fully on, one after the other.
    fn one_after_the_other(
        phaser: &mut Phaser,
        lowpass: &mut FilterStage,
        run: &FilterRun,
        (p0, pd): (f32, f32),
        sr: f32,
        l: &mut [f32],
        r: &mut [f32],
    ) {
        let (mut wl, mut wr) = (l.to_vec(), r.to_vec());
        phaser.process(&mut wl, &mut wr, 0.3, sr);
        for i in 0..l.len() {
            let m = phaser_mix(p0, pd, i);
            l[i] += (wl[i] - l[i]) * m;
            r[i] += (wr[i] - r[i]) * m;
        }
        lowpass.run(run, false, l, r);
    }

    fn in_one_loop(
        phaser: &mut Phaser,
        lowpass: &mut FilterStage,
        run: &FilterRun,
        mix: (f32, f32),
        sr: f32,
        l: &mut [f32],
        r: &mut [f32],
    ) {
        let coefs = phaser.coefs(sr);
        phaser_then_lowpass(phaser, coefs, mix, &mut lowpass.state, &run.c, l, r);
        phaser.advance(0.3, l.len(), sr);
        lowpass.guard();
    }

    crate::dsp::wide_build!(fn in_one_loop_wide = in_one_loop, (phaser: &mut Phaser, lowpass: &mut FilterStage, run: &FilterRun, mix: (f32, f32), sr: f32, l: &mut [f32], r: &mut [f32]));

    /// [`FilterStage::run`] as it was before the two sides ran as one pair: two
    /// [`Svf::tick`]s side by side.
    fn run_side_by_side(stage: &mut FilterStage, run: &FilterRun, high: bool, l: &mut [f32], r: &mut [f32]) {
        let FilterRun { c, m0, dm } = *run;
        let [fl, fr] = &mut stage.state;
        for (i, (xl, xr)) in l.iter_mut().zip(r.iter_mut()).enumerate() {
            let (lo_l, _, hi_l) = fl.tick(&c, *xl);
            let (lo_r, _, hi_r) = fr.tick(&c, *xr);
            let (yl, yr) = if high { (hi_l, hi_r) } else { (lo_l, lo_r) };
            if run.fully_on() {
                (*xl, *xr) = (yl, yr);
            } else {
                let m = m0 + dm * (i as i32 + 1) as f32;
                *xl += (yl - *xl) * m;
                *xr += (yr - *xr) * m;
            }
        }
        stage.guard();
    }

    fn run_plain(stage: &mut FilterStage, run: &FilterRun, high: bool, l: &mut [f32], r: &mut [f32]) {
        stage.run(run, high, l, r);
    }

    crate::dsp::wide_build!(fn run_wide = run_plain, (stage: &mut FilterStage, run: &FilterRun, high: bool, l: &mut [f32], r: &mut [f32]));

    fn same(a: &[f32], b: &[f32]) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
    }

    #[test]
    fn the_filter_stage_runs_as_two_filters_side_by_side_bit_for_bit() {
        let sr = 48_000.0;
        for high in [false, true] {
            for (cutoff, q) in [(4000.0f32, 0.707f32), (60.0, 4.0), (19_000.0, 0.3)] {
                // Switching on (a mix ramp), fully on, switching off (a ramp down).
                let (mut a, mut b, mut c) =
                    (FilterStage::new(64, sr), FilterStage::new(64, sr), FilterStage::new(64, sr));
                let mut at = 0usize;
                for (k, n) in [64usize, 1, 37, 64, 200, 7, 64, 64, 64, 13, 64, 64].into_iter().enumerate() {
                    let target = if k < 8 { cutoff } else { 0.0 };
                    let l: Vec<f32> = (at..at + n).map(|i| (i as f32 * 0.031).sin() * 0.8).collect();
                    let r: Vec<f32> = (at..at + n).map(|i| (i as f32 * 0.17).cos() * 0.6 - 0.1).collect();
                    at += n;
                    let run = a.begin(target, q, sr, n);
                    let (rb, rc) = (b.begin(target, q, sr, n), c.begin(target, q, sr, n));
                    let Some(run) = run else {
                        assert!(rb.is_none() && rc.is_none());
                        continue;
                    };
                    let (mut la, mut ra) = (l.clone(), r.clone());
                    run_side_by_side(&mut a, &run, high, &mut la, &mut ra);
                    let (mut lb, mut rb_) = (l.clone(), r.clone());
                    run_plain(&mut b, &rb.expect("on"), high, &mut lb, &mut rb_);
                    let (mut lc, mut rc_) = (l.clone(), r.clone());
                    run_wide(&mut c, &rc.expect("on"), high, &mut lc, &mut rc_);
                    let what = format!("high {high}, {cutoff} Hz, q {q}, block {k} ({n} samples)");
                    assert!(same(&la, &lb) && same(&ra, &rb_), "{what}");
                    assert!(same(&la, &lc) && same(&ra, &rc_), "wide: {what}");
                }
            }
        }
    }

    /// The chorus into buffers, its mix, the phaser over a copy and its mix, and the
    /// low-pass, one after the other.
    #[allow(clippy::too_many_arguments)]
    fn chorus_then_each(
        chorus: &mut Chorus,
        phaser: Option<&mut Phaser>,
        lowpass: &mut FilterStage,
        run: &FilterRun,
        (c0, cd): (f32, f32),
        (p0, pd): (f32, f32),
        sr: f32,
        mono: &[f32],
        l: &mut [f32],
        r: &mut [f32],
    ) {
        let n = mono.len();
        let (mut wl, mut wr) = (vec![0.0; n], vec![0.0; n]);
        chorus.process(mono, 0.8, 0.004, sr, &mut wl, &mut wr);
        chorus_mix(mono, mono, (c0, cd), false, &wl, &wr, l, r);
        if let Some(phaser) = phaser {
            let (mut wl, mut wr) = (l.to_vec(), r.to_vec());
            phaser.process(&mut wl, &mut wr, 0.3, sr);
            for i in 0..n {
                let m = phaser_mix(p0, pd, i);
                l[i] += (wl[i] - l[i]) * m;
                r[i] += (wr[i] - r[i]) * m;
            }
        }
        run_side_by_side(lowpass, run, false, l, r);
    }

    type Stages<'a> = (&'a mut Chorus, Option<&'a mut Phaser>, &'a mut FilterStage, &'a FilterRun);

    fn chorus_in_one_loop(
        (chorus, phaser, lowpass, run): Stages,
        (mix, phaser_mix): ((f32, f32), (f32, f32)),
        sr: f32,
        mono: &[f32],
        l: &mut [f32],
        r: &mut [f32],
    ) {
        let taps = chorus.write(mono, 0.8, 0.004, sr);
        let ring = (chorus.ring(), &taps);
        match phaser {
            Some(phaser) => {
                let coefs = (phaser.coefs(sr), phaser_mix);
                chorus_then_filters::<true>(ring, mono, mix, phaser, coefs, &mut lowpass.state, &run.c, l, r);
                phaser.advance(0.3, mono.len(), sr);
            }
            None => {
                let coefs = ((0.0, 0.0), (0.0, 0.0));
                let mut unused = Phaser::default();
                chorus_then_filters::<false>(ring, mono, mix, &mut unused, coefs, &mut lowpass.state, &run.c, l, r);
            }
        }
        lowpass.guard();
    }

    crate::dsp::wide_build!(fn chorus_in_one_loop_wide = chorus_in_one_loop, (stages: Stages, mixes: ((f32, f32), (f32, f32)), sr: f32, mono: &[f32], l: &mut [f32], r: &mut [f32]));

    #[test]
    fn the_chorus_phaser_and_low_pass_in_one_loop_equal_them_one_after_the_other_bit_for_bit() {
        let sr = 48_000.0;
        for phasing in [false, true] {
            for (cutoff, q) in [(4000.0f32, 0.707f32), (180.0, 3.0)] {
                for (mix, pmix) in
                    [((0.2f32, 0.0f32), (0.3f32, 0.0f32)), ((0.0, 0.004), (0.0, 0.002)), ((0.9, -0.003), (0.6, -0.001))]
                {
                    let (mut ca, mut cb, mut cc) = (Chorus::new(sr), Chorus::new(sr), Chorus::new(sr));
                    let (mut pa, mut pb, mut pc) = (Phaser::default(), Phaser::default(), Phaser::default());
                    let mut fs: [FilterStage; 3] = std::array::from_fn(|_| FilterStage::new(64, sr));
                    fs.iter_mut().for_each(|f| f.snap(cutoff, q));
                    let [fa, fb, fc] = &mut fs;
                    let mut at = 0usize;
                    // Odd blocks, and enough of them to wrap the chorus's ring.
                    for n in [64usize, 1, 37, 64, 200, 7].into_iter().cycle().take(120) {
                        let mono: Vec<f32> = (at..at + n)
                            .map(|i| (i as f32 * 0.013).sin() * 0.7 + (i as f32 * 0.29).sin() * 0.2)
                            .collect();
                        at += n;
                        let run = fa.begin(cutoff, q, sr, n).expect("on");
                        assert!(
                            run.fully_on()
                                && fb.begin(cutoff, q, sr, n).is_some()
                                && fc.begin(cutoff, q, sr, n).is_some()
                        );
                        let (mut la, mut ra) = (vec![0.0; n], vec![0.0; n]);
                        chorus_then_each(
                            &mut ca,
                            Some(&mut pa).filter(|_| phasing),
                            fa,
                            &run,
                            mix,
                            pmix,
                            sr,
                            &mono,
                            &mut la,
                            &mut ra,
                        );
                        let (mut lb, mut rb) = (vec![0.0; n], vec![0.0; n]);
                        let stages = (&mut cb, Some(&mut pb).filter(|_| phasing), &mut *fb, &run);
                        chorus_in_one_loop(stages, (mix, pmix), sr, &mono, &mut lb, &mut rb);
                        let (mut lc, mut rc) = (vec![0.0; n], vec![0.0; n]);
                        let stages = (&mut cc, Some(&mut pc).filter(|_| phasing), &mut *fc, &run);
                        chorus_in_one_loop_wide(stages, (mix, pmix), sr, &mono, &mut lc, &mut rc);
                        let what =
                            format!("phaser {phasing}, {cutoff} Hz, q {q}, mix {mix:?} {pmix:?}, at {at}, {n} samples");
                        assert!(same(&la, &lb) && same(&ra, &rb), "{what}");
                        assert!(same(&la, &lc) && same(&ra, &rc), "wide: {what}");
                    }
                }
            }
        }
    }

    #[test]
    fn the_phaser_and_low_pass_in_one_loop_equal_them_one_after_the_other_bit_for_bit() {
        let sr = 48_000.0;
        for (cutoff, q) in [(4000.0f32, 0.707f32), (180.0, 3.0), (15_000.0, 0.5)] {
            for mix in [(0.3f32, 0.0f32), (0.0, 0.002), (0.6, -0.001)] {
                let (mut pa, mut pb, mut pc) = (Phaser::default(), Phaser::default(), Phaser::default());
                let mut fa = FilterStage::new(128, sr);
                fa.snap(cutoff, q);
                let (mut fb, mut fc) = (FilterStage::new(128, sr), FilterStage::new(128, sr));
                fb.snap(cutoff, q);
                fc.snap(cutoff, q);
                let mut at = 0usize;
                for n in [128usize, 1, 37, 64, 200, 7] {
                    let l: Vec<f32> = (at..at + n).map(|i| (i as f32 * 0.031).sin() * 0.8).collect();
                    let r: Vec<f32> = (at..at + n).map(|i| (i as f32 * 0.017).cos() * 0.6 - 0.1).collect();
                    at += n;
                    let run = fa.begin(cutoff, q, sr, n).expect("on");
                    assert!(run.fully_on());
                    assert!(fb.begin(cutoff, q, sr, n).is_some() && fc.begin(cutoff, q, sr, n).is_some());
                    let (mut la, mut ra) = (l.clone(), r.clone());
                    one_after_the_other(&mut pa, &mut fa, &run, mix, sr, &mut la, &mut ra);
                    let (mut lb, mut rb) = (l.clone(), r.clone());
                    in_one_loop(&mut pb, &mut fb, &run, mix, sr, &mut lb, &mut rb);
                    let (mut lc, mut rc) = (l.clone(), r.clone());
                    in_one_loop_wide(&mut pc, &mut fc, &run, mix, sr, &mut lc, &mut rc);
                    let same = |a: &[f32], b: &[f32]| a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits());
                    let what = format!("{cutoff} Hz, q {q}, mix {mix:?}, {n} samples");
                    assert!(same(&la, &lb) && same(&ra, &rb), "{what}");
                    assert!(same(&la, &lc) && same(&ra, &rc), "wide: {what}");
                }
            }
        }
    }
}
