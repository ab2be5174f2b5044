//! The basic oscillators: sine, saw, triangle, square (mip-mapped band-limited
//! tables), pulse and pulse-width modulation (differences of two band-limited saws,
//! so they stay alias-free and DC-free at any width).

use super::{OscState, Synth, SynthCtx, with_detune};
use crate::dsp::wavescan::add_oscillators;
use crate::params::Param;
use crate::tables::wavetable::{Shape, Table, phase_inc, read};

/// Renders one oscillator copy: `f` gives the sample at a phase; adds into `out`
/// or overwrites it (two loops, no per-sample branch).
#[inline(always)]
fn run(out: &mut [f32], phase: &mut u32, inc: u32, add: bool, f: impl Fn(u32) -> f32) {
    let mut p = *phase;
    if add {
        for x in out.iter_mut() {
            *x += f(p);
            p = p.wrapping_add(inc);
        }
    } else {
        for x in out.iter_mut() {
            *x = f(p);
            p = p.wrapping_add(inc);
        }
    }
    *phase = p;
}

pub struct Sine;

impl Synth for Sine {
    fn render(&self, st: &mut OscState, ctx: &SynthCtx, out: &mut [f32]) {
        let table = ctx.waves.sine();
        with_detune(st, ctx, out, 1, |ph, f, out, add| {
            let inc = phase_inc(f, ctx.sample_rate as f64);
            run(out, &mut ph[0], inc, add, |p| read(table, p));
        });
    }
}

#[derive(Clone, Copy)]
pub enum WaveKind {
    Saw,
    Triangle,
    Square,
}

pub struct Wave(pub WaveKind);

impl Synth for Wave {
    /// The main copy and, with detune, the two detuned copies side by side in one
    /// pass (`crate::dsp::wavescan`), each on the table its own pitch needs: the same
    /// sum, in the same order, as [`with_detune`] gives the other shapes.
    fn render(&self, st: &mut OscState, ctx: &SynthCtx, out: &mut [f32]) {
        let shape = match self.0 {
            WaveKind::Saw => Shape::Saw,
            WaveKind::Triangle => Shape::Triangle,
            WaveKind::Square => Shape::Square,
        };
        let sr = ctx.sample_rate as f64;
        let cents = ctx.param(Param::Detune) as f64;
        out.fill(0.0);
        if cents <= 0.0 {
            let inc = phase_inc(ctx.freq_hz, sr);
            add_oscillators(&[ctx.waves.table(shape, inc)], &mut st.phase[..1], &[inc], 1.0, out);
            // The extra copies track the main one (turning detune up starts in tune).
            [st.phase[1], st.phase[2]] = [st.phase[0]; 2];
            return;
        }
        // The ratio's `exp2` only when the detune changes (as in `with_detune`).
        if st.detune.0.to_bits() != cents.to_bits() {
            st.detune = (cents, (cents / 1200.0).exp2());
        }
        let ratio = st.detune.1;
        let incs = [ctx.freq_hz, ctx.freq_hz * ratio, ctx.freq_hz / ratio].map(|f| phase_inc(f, sr));
        let tables = incs.map(|inc| ctx.waves.table(shape, inc));
        add_oscillators(&tables, &mut st.phase[..3], &incs, 1.0, out);
        for x in out.iter_mut() {
            *x *= 1.0 / 3.0;
        }
    }
}

/// Half a cycle as a 32-bit phase: the saw table's jump sits there.
const HALF: u32 = 1 << 31;

/// A band-limited pulse of duty `duty` (0..1), DC-free: the difference of two saws.
#[inline]
fn pulse_sample(table: &Table, p: u32, duty: f32) -> f32 {
    let offset = (duty as f64 * 4_294_967_296.0) as u32;
    read(table, p.wrapping_sub(offset).wrapping_sub(HALF)) - read(table, p.wrapping_sub(HALF))
}

pub struct Pulse;

impl Synth for Pulse {
    fn render(&self, st: &mut OscState, ctx: &SynthCtx, out: &mut [f32]) {
        with_detune(st, ctx, out, 1, |ph, f, out, add| {
            let inc = phase_inc(f, ctx.sample_rate as f64);
            let table = ctx.waves.table(Shape::Saw, inc);
            run(out, &mut ph[0], inc, add, |p| pulse_sample(table, p, 0.25) * 0.5);
        });
    }
}

/// Pulse whose width sweeps 15%..85% with a sine LFO at `rate_hz`, from note-on.
pub struct Pwm {
    pub rate_hz: f64,
}

impl Synth for Pwm {
    fn render(&self, st: &mut OscState, ctx: &SynthCtx, out: &mut [f32]) {
        let sr = ctx.sample_rate as f64;
        let t0 = st.age as f64 / sr;
        let n = out.len() as f64;
        let duty_at = |t: f64| (0.5 + 0.35 * (std::f64::consts::TAU * self.rate_hz * t).sin()) as f32;
        let (d0, d1) = (duty_at(t0), duty_at(t0 + n / sr));
        with_detune(st, ctx, out, 1, |ph, f, out, add| {
            let inc = phase_inc(f, sr);
            let table = ctx.waves.table(Shape::Saw, inc);
            let mut p = ph[0];
            let len = out.len() as f32;
            for (i, x) in out.iter_mut().enumerate() {
                let duty = d0 + (d1 - d0) * (i as f32 / len);
                let v = pulse_sample(table, p, duty) * 0.5;
                *x = if add { *x + v } else { v };
                p = p.wrapping_add(inc);
            }
            ph[0] = p;
        });
    }
}
