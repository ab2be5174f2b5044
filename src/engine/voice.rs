//! Voices: one sounding note each, from a fixed pool allocated with the engine.
//! Rendered on the audio thread, a segment of a tick at a time.

use super::envelope::{Adsr, Envelope, Stage};
use super::synth::{OscState, SYNTHS, SynthCtx};
use crate::params::{Param, ParamValues};
use crate::tables::Tables;
use crate::tables::wavetable::{phase_inc, read};
use crate::theory::note_hz;

/// Fade applied to a stolen voice.
pub const STEAL_FADE_SECONDS: f32 = 0.005;
/// A self-decaying voice is freed after this long below [`SILENCE`].
const SILENT_SECONDS: f32 = 0.05;
/// Level treated as silence (-80 dB).
const SILENCE: f32 = 1e-4;

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum VoiceSource {
    Synth(u16),
    /// A drum one-shot: sound index and read position.
    Drum {
        sound: u16,
        pos: usize,
    },
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
    sub_phase: u32,
    pub osc: OscState,
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
}

impl Voice {
    pub fn new(line_len: usize) -> Self {
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
            sub_phase: 0,
            osc: OscState::new(line_len),
        }
    }

    fn adsr(p: &ParamValues) -> Adsr {
        Adsr {
            attack: p.get(Param::Attack),
            decay: p.get(Param::Decay),
            sustain: p.get(Param::Sustain),
            release: p.get(Param::Release),
        }
    }

    /// Starts a note in this (free) slot.
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
        ctx: &VoiceCtx,
    ) {
        self.active = true;
        self.channel = channel;
        self.note = note;
        self.serial = serial;
        self.source = source;
        self.held = true;
        self.sustained = false;
        self.instrument_id = instrument_id;
        self.frozen = None;
        let v = velocity as f32 / 127.0;
        self.gain = v * v;
        self.steal_left = 0;
        self.quiet = 0;
        self.sub_phase = 0;
        self.osc.reset(seed);
        self.env = Envelope::start(&Self::adsr(ctx.params), ctx.sample_rate);
        if let VoiceSource::Synth(s) = source {
            let sctx = self.synth_ctx(ctx, ctx.params);
            SYNTHS[s as usize].synth.start(&mut self.osc, &sctx);
        }
    }

    fn synth_ctx<'a>(&self, ctx: &VoiceCtx<'a>, params: &'a ParamValues) -> SynthCtx<'a> {
        // Pitch bend is the channel's, and applies to notes kept on an old instrument too.
        SynthCtx {
            sample_rate: ctx.sample_rate,
            freq_hz: note_hz(self.note as f64 + ctx.bend as f64),
            params,
            waves: &ctx.tables.waves,
        }
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

    /// Starts the release (drum hits ignore it: they ring out).
    pub fn release(&mut self, params: &ParamValues, sample_rate: f32) {
        self.held = false;
        self.sustained = false;
        if matches!(self.source, VoiceSource::Synth(_)) {
            let p = self.frozen.as_ref().unwrap_or(params);
            self.env.release(&Self::adsr(p), sample_rate);
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
    pub fn render(&mut self, ctx: &VoiceCtx, scratch: &mut Scratch, out: &mut [f32]) {
        let n = out.len();
        let wave = &mut scratch.wave[..n];
        let env = &mut scratch.env[..n];
        match self.source {
            VoiceSource::Drum { sound, pos } => {
                let hit = &ctx.tables.drums.sounds[sound as usize];
                let take = n.min(hit.len().saturating_sub(pos));
                wave[..take].copy_from_slice(&hit[pos..pos + take]);
                wave[take..].fill(0.0);
                env.fill(1.0);
                self.source = VoiceSource::Drum { sound, pos: pos + take };
                if pos + take >= hit.len() {
                    self.env = Envelope::idle();
                    self.active = false;
                }
            }
            VoiceSource::Synth(s) => {
                let params = match &self.frozen {
                    Some(p) => p,
                    None => ctx.params,
                };
                let sctx = SynthCtx {
                    sample_rate: ctx.sample_rate,
                    freq_hz: note_hz(self.note as f64 + ctx.bend as f64),
                    params,
                    waves: &ctx.tables.waves,
                };
                let entry = &SYNTHS[s as usize];
                entry.synth.render(&mut self.osc, &sctx, wave);
                self.osc.age += n as u64;
                add_layers(&mut self.osc, &mut self.sub_phase, &sctx, wave);
                let adsr = Self::adsr(params);
                match self.env.steady_level(&adsr) {
                    // Holding: the gain is a constant, no envelope buffer needed.
                    Some(level) if self.steal_left == 0 && !entry.synth.decays() => {
                        let g = self.gain * level;
                        for (o, w) in out.iter_mut().zip(wave.iter()) {
                            *o += w * g;
                        }
                        return;
                    }
                    _ => self.env.render(&adsr, ctx.sample_rate, env),
                }
                if entry.synth.decays() && matches!(self.env.stage(), Stage::Sustain | Stage::Release) {
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
                    self.active = false;
                }
            }
        }
        let g = self.gain;
        if self.steal_left > 0 {
            let total = self.steal_total as f32;
            for i in 0..n {
                let left = self.steal_left.saturating_sub(i as u32) as f32;
                out[i] += wave[i] * env[i] * g * (left / total);
            }
            self.steal_left = self.steal_left.saturating_sub(n as u32);
            if self.steal_left == 0 {
                self.active = false;
            }
        } else {
            for i in 0..n {
                out[i] += wave[i] * env[i] * g;
            }
        }
    }
}

/// The sub-oscillator (a sine an octave down) and noise layers.
fn add_layers(osc: &mut OscState, sub_phase: &mut u32, ctx: &SynthCtx, wave: &mut [f32]) {
    let sub = ctx.param(Param::SubOsc);
    if sub > 0.0 {
        let inc = phase_inc(ctx.freq_hz * 0.5, ctx.sample_rate as f64);
        let sine = ctx.waves.sine();
        let (keep, add) = (1.0 - 0.3 * sub, 0.3 * sub);
        let mut p = *sub_phase;
        for x in wave.iter_mut() {
            *x = *x * keep + read(sine, p) * add;
            p = p.wrapping_add(inc);
        }
        *sub_phase = p;
    }
    let noise = ctx.param(Param::NoiseMix);
    if noise > 0.0 {
        let (keep, add) = (1.0 - 0.5 * noise, 0.5 * noise);
        for x in wave.iter_mut() {
            *x = *x * keep + osc.noise() * add;
        }
    }
}
