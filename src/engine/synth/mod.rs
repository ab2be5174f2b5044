//! The synth interface and registry. A synth turns a pitch into a mono signal, one
//! tick at a time, on the audio thread; its per-voice state lives in a fixed-size
//! [`OscState`] owned by the voice. Adding a synth is one file implementing
//! [`Synth`] plus one line in [`SYNTHS`].

mod basic;
mod fm;
mod noise;
mod organ;
mod pluck;
mod supersaw;

use crate::params::{Param, ParamValues};
use crate::tables::wavetable::Wavetables;
use rand_pcg::Pcg32;

/// Oscillator phases a voice can hold (three detuned copies of up to eight).
pub const MAX_PHASES: usize = 24;

/// Per-voice synth state: allocated once with the voice pool, reset at note-on.
pub struct OscState {
    /// 32-bit phase accumulators (one cycle = 2^32): exact pitch, no drift.
    pub phase: [u32; MAX_PHASES],
    /// Filter and miscellaneous state.
    pub z: [f32; 8],
    /// Integer state (delay lengths, positions).
    pub n: [usize; 4],
    /// Seeded noise source: renders are deterministic.
    pub rng: Pcg32,
    /// Samples rendered since note-on.
    pub age: u64,
    /// A delay line for physical models (Karplus-Strong), fixed length.
    pub line: Box<[f32]>,
}

impl OscState {
    pub fn new(line_len: usize) -> Self {
        OscState {
            phase: [0; MAX_PHASES],
            z: [0.0; 8],
            n: [0; 4],
            rng: Pcg32::new(0, 0),
            age: 0,
            line: crate::dsp::zeroed(line_len),
        }
    }

    /// Clears the state for a new note, seeding the noise source.
    pub fn reset(&mut self, seed: u64) {
        self.phase = [0; MAX_PHASES];
        self.z = [0.0; 8];
        self.n = [0; 4];
        self.rng = Pcg32::new(seed, 0x0a02_bdbf_7bb3_c0a7);
        self.age = 0;
    }

    /// A uniform sample in -1..1.
    #[inline]
    pub fn noise(&mut self) -> f32 {
        use rand::RngExt;
        self.rng.random::<f32>() * 2.0 - 1.0
    }
}

/// What a synth may read while rendering.
pub struct SynthCtx<'a> {
    pub sample_rate: f32,
    /// The pitch right now, pitch bend included.
    pub freq_hz: f64,
    /// The channel's voice parameters (or the ones the note started with, if the
    /// channel's instrument has changed since).
    pub params: &'a ParamValues,
    pub waves: &'a Wavetables,
}

impl SynthCtx<'_> {
    #[inline]
    pub fn param(&self, p: Param) -> f32 {
        self.params.get(p)
    }
}

/// A sound source. Implementations run on the audio thread: no allocation, no locks.
pub trait Synth: Sync {
    /// Prepares `st` (already reset and seeded) for a new note.
    fn start(&self, _st: &mut OscState, _ctx: &SynthCtx) {}
    /// Writes the next `out.len()` samples (overwriting `out`).
    fn render(&self, st: &mut OscState, ctx: &SynthCtx, out: &mut [f32]);
    /// Whether the sound dies away by itself (a plucked string), so that a held note
    /// can free its voice once silent.
    fn decays(&self) -> bool {
        false
    }
}

/// A registered synth.
pub struct SynthEntry {
    pub name: &'static str,
    pub synth: &'static dyn Synth,
    /// One line for listings.
    pub about: &'static str,
}

/// Every synth the engine has, by the name sets use.
pub static SYNTHS: &[SynthEntry] = &[
    SynthEntry { name: "sine", synth: &basic::Sine, about: "pure sine" },
    SynthEntry { name: "saw", synth: &basic::Wave(basic::WaveKind::Saw), about: "band-limited sawtooth" },
    SynthEntry { name: "triangle", synth: &basic::Wave(basic::WaveKind::Triangle), about: "band-limited triangle" },
    SynthEntry { name: "square", synth: &basic::Wave(basic::WaveKind::Square), about: "band-limited square" },
    SynthEntry { name: "pulse", synth: &basic::Pulse, about: "band-limited pulse, 25% duty" },
    SynthEntry { name: "pwm_slow", synth: &basic::Pwm { rate_hz: 0.3 }, about: "pulse-width modulation, 0.3 Hz sweep" },
    SynthEntry { name: "pwm_fast", synth: &basic::Pwm { rate_hz: 3.0 }, about: "pulse-width modulation, 3 Hz sweep" },
    SynthEntry { name: "fm", synth: &fm::Fm, about: "two-operator FM (fm_ratio, fm_index)" },
    SynthEntry { name: "supersaw", synth: &supersaw::Supersaw, about: "seven saws spread over +/-15 cents" },
    SynthEntry { name: "noise", synth: &noise::Noise, about: "white noise" },
    SynthEntry { name: "organ_synth", synth: &organ::Organ, about: "additive drawbar organ" },
    SynthEntry { name: "pluck_synth", synth: &pluck::Pluck, about: "Karplus-Strong plucked string" },
];

/// The registry index of a synth name.
pub fn synth_index(name: &str) -> Option<usize> {
    SYNTHS.iter().position(|s| s.name == name)
}

/// Renders a phase-based oscillator with the `detune` layers: the main copy, and
/// with detune two more at +/- `detune` cents, averaged. `each` renders one copy
/// from its `phases` slice at increment `inc`, adding (`add`) or overwriting.
/// While detune is 0 the extra copies track the main one, so turning detune up
/// starts from the same sound (no step).
#[inline]
pub fn with_detune(
    st: &mut OscState,
    ctx: &SynthCtx,
    out: &mut [f32],
    phases_per_copy: usize,
    mut each: impl FnMut(&mut [u32], f64, &mut [f32], bool),
) {
    let cents = ctx.param(Param::Detune) as f64;
    let (main, rest) = st.phase.split_at_mut(phases_per_copy);
    if cents <= 0.0 {
        each(main, ctx.freq_hz, out, false);
        for copy in rest.chunks_exact_mut(phases_per_copy).take(2) {
            copy.copy_from_slice(main);
        }
        return;
    }
    let ratio = (cents / 1200.0).exp2();
    each(main, ctx.freq_hz, out, false);
    let (up, rest) = rest.split_at_mut(phases_per_copy);
    each(up, ctx.freq_hz * ratio, out, true);
    each(&mut rest[..phases_per_copy], ctx.freq_hz / ratio, out, true);
    for x in out.iter_mut() {
        *x *= 1.0 / 3.0;
    }
}
