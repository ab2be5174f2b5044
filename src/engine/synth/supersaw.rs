//! Supersaw: seven band-limited saws spread evenly over -15..+15 cents, started at
//! fixed, spread phases (the same sound every note). Rendered on the audio thread,
//! the seven saws of a detune copy side by side (`crate::dsp::wavescan`).

use super::{OscState, Synth, SynthCtx, detune_ratio, track_main_copy};
use crate::dsp::wavescan::sum_oscillators;
use crate::tables::wavetable::Shape;

const VOICES: usize = 7;
/// The saws' increments are computed in this many lanes (two vectors of four).
const LANES: usize = 8;
/// Per saw: seven saws at their spread phases peak below full scale.
const GAIN: f32 = 0.17;
/// Each saw's frequency over the note's: 2^(cents / 1200) for -15, -10, .. +15 cents
/// (constants: no `exp2` while rendering).
const RATIOS: [f64; VOICES] = [
    0.9913730874626621,
    0.9942404238175473,
    0.9971160533345892,
    1.0,
    1.0028922878693671,
    1.0057929410678534,
    1.008701983790399,
];

pub struct Supersaw;

impl Synth for Supersaw {
    fn start(&self, st: &mut OscState, _ctx: &SynthCtx) {
        for copy in 0..3 {
            for k in 0..VOICES {
                st.phase[copy * VOICES + k] = ((k as u64 * 0x2545_F491) as u32).wrapping_mul(0x9E37_79B9);
            }
        }
    }

    fn render(&self, st: &mut OscState, ctx: &SynthCtx, out: &mut [f32]) {
        match detune_ratio(st, ctx) {
            None => {
                layer_wide(ctx, &mut st.phase[..VOICES], ctx.freq_hz, out, false);
                track_main_copy(st, VOICES);
            }
            Some(ratio) => detuned_wide(ctx, &mut st.phase[..3 * VOICES], ratio, out),
        }
    }
}

crate::dsp::wide_build!(fn layer_wide = layer, (ctx: &SynthCtx, ph: &mut [u32], f: f64, out: &mut [f32], add: bool));

/// One detune copy's seven saws at `f` Hz from the phases `ph`, added into `out`
/// (`add`) or written over it; inlined into both builds of `layer_wide`.
#[inline(always)]
fn layer(ctx: &SynthCtx, ph: &mut [u32], f: f64, out: &mut [f32], add: bool) {
    let sr = ctx.sample_rate as f64;
    // The table is the highest saw's, which the others share.
    let incs = increments(f, sr);
    let table = ctx.waves.table(Shape::Saw, incs[VOICES - 1]);
    sum_oscillators(&[table; VOICES], ph, &incs, GAIN, !add, None, out);
}

crate::dsp::wide_build!(fn detuned_wide = detuned, (ctx: &SynthCtx, ph: &mut [u32], ratio: f64, out: &mut [f32]));

/// The three detune copies of [`with_detune`](super::with_detune) (at the note's
/// pitch, `ratio` above it and `ratio` below, from the phases `ph`, seven each) in one
/// pass over `out`: per sample the copies' saws summed in that order from zero, then
/// averaged with `* (1 / 3)`, the same operations as [`layer`] for each copy in turn
/// and then the average; inlined into both builds of `detuned_wide`.
#[inline(always)]
fn detuned(ctx: &SynthCtx, ph: &mut [u32], ratio: f64, out: &mut [f32]) {
    let sr = ctx.sample_rate as f64;
    let mut tables = [ctx.waves.sine(); 3 * VOICES];
    let mut incs = [0u32; 3 * VOICES];
    for (c, f) in [ctx.freq_hz, ctx.freq_hz * ratio, ctx.freq_hz / ratio].into_iter().enumerate() {
        let copy = increments(f, sr);
        let table = ctx.waves.table(Shape::Saw, copy[VOICES - 1]);
        incs[c * VOICES..(c + 1) * VOICES].copy_from_slice(&copy);
        tables[c * VOICES..(c + 1) * VOICES].fill(table);
    }
    sum_oscillators(&tables, ph, &incs, GAIN, true, Some(1.0 / 3.0), out);
}

/// The seven saws' [`phase_inc`](crate::tables::wavetable::phase_inc) at `f` Hz, its
/// steps one after the other so that the divisions go side by side in vectors (the
/// same operations: the same increments).
#[inline(always)]
fn increments(f: f64, sr: f64) -> [u32; VOICES] {
    let mut cycles = [0.0f64; LANES];
    for (c, r) in cycles.iter_mut().zip(RATIOS) {
        *c = (f * r / sr).clamp(0.0, 0.5) * 4_294_967_296.0 + 0.5;
    }
    std::array::from_fn(|k| cycles[k] as i64 as u32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::ParamValues;
    use crate::tables::wavetable::{Wavetables, phase_inc};

    #[test]
    fn increments_are_phase_inc_of_each_saw() {
        for sr in [44_100.0, 48_000.0, 96_000.0] {
            let mut f = 8.0;
            while f < 30_000.0 {
                let want = RATIOS.map(|r| phase_inc(f * r, sr));
                assert_eq!(increments(f, sr), want, "{f} Hz at {sr} Hz");
                f *= 1.0137;
            }
        }
    }

    #[test]
    fn the_wide_build_plays_the_plain_one_bit_for_bit() {
        let waves = Wavetables::new();
        let params = ParamValues::default();
        for f in [27.5, 110.0, 261.63, 1760.0, 7040.0, 15_000.0] {
            let ctx = SynthCtx { sample_rate: 48_000.0, freq_hz: f, params: &params, waves: &waves };
            let start: [u32; VOICES] = std::array::from_fn(|k| (k as u32).wrapping_mul(0x9E37_79B9));
            let (mut pa, mut pb) = (start, start);
            for len in [64, 1, 13, 200] {
                let (mut a, mut b) = (vec![0.25f32; len], vec![0.25f32; len]);
                for add in [false, true] {
                    layer(&ctx, &mut pa, f, &mut a, add);
                    layer_wide(&ctx, &mut pb, f, &mut b, add);
                }
                assert_eq!(a, b, "{f} Hz, {len} samples");
                assert_eq!(pa, pb, "{f} Hz, {len} samples: phases");
            }
        }
    }

    #[test]
    fn the_detune_copies_in_one_pass_play_each_copy_in_turn_bit_for_bit() {
        use crate::params::Param;
        let waves = Wavetables::new();
        for cents in [0.0f32, 0.5, 12.0, 50.0] {
            let mut params = ParamValues::default();
            params.set(Param::Detune, cents);
            for f in [27.5, 261.63, 1760.0, 15_000.0] {
                let ctx = SynthCtx { sample_rate: 48_000.0, freq_hz: f, params: &params, waves: &waves };
                let (mut sa, mut sb) = (OscState::new(0), OscState::new(0));
                Supersaw.start(&mut sa, &ctx);
                Supersaw.start(&mut sb, &ctx);
                for len in [64, 1, 13, 200, 128] {
                    let (mut a, mut b) = (vec![0.25f32; len], vec![0.25f32; len]);
                    // Each copy in turn over the block, then the average.
                    super::super::with_detune(&mut sa, &ctx, &mut a, VOICES, |ph, f, out, add| {
                        if !add {
                            out.fill(0.0);
                        }
                        let incs = increments(f, 48_000.0);
                        let table = ctx.waves.table(Shape::Saw, incs[VOICES - 1]);
                        for (k, p) in ph.iter_mut().enumerate() {
                            crate::dsp::wavescan::add_oscillators(
                                &[table],
                                std::slice::from_mut(p),
                                &incs[k..k + 1],
                                GAIN,
                                out,
                            );
                        }
                    });
                    Supersaw.render(&mut sb, &ctx, &mut b);
                    assert!(
                        a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()),
                        "{cents} cents, {f} Hz, {len} samples"
                    );
                    assert_eq!(sa.phase, sb.phase, "{cents} cents, {f} Hz, {len} samples: phases");
                    let (mut pa, mut pb) = (sa.phase, sa.phase);
                    let (mut c, mut d) = (vec![0.5f32; len], vec![0.5f32; len]);
                    detuned(&ctx, &mut pa[..3 * VOICES], 1.01, &mut c);
                    detuned_wide(&ctx, &mut pb[..3 * VOICES], 1.01, &mut d);
                    assert!(c.iter().zip(&d).all(|(x, y)| x.to_bits() == y.to_bits()), "wide: {f} Hz, {len} samples");
                    assert_eq!(pa, pb);
                }
            }
        }
    }

    #[test]
    fn ratios_are_the_cents_they_stand_for() {
        for (k, r) in RATIOS.iter().enumerate() {
            let cents = -15.0 + 5.0 * k as f64;
            assert_eq!(*r, (cents / 1200.0f64).exp2(), "saw {k}");
        }
    }
}
