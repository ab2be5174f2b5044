//! Vector kernels that read band-limited wavetables for many oscillators at once (the
//! supersaw's saws, the sub-oscillator); run by the voices on the audio thread.
//!
//! Each kernel computes, sample by sample and oscillator by oscillator, the same
//! operations in the same order as [`crate::tables::wavetable::read`] in a plain loop:
//! the output is the same bit for bit whichever build runs. Work is done in chunks
//! of [`CHUNK`] samples: the table points of a chunk are gathered first, then
//! interpolated and summed as fixed-length vector code. Where the processor has AVX2
//! a build of the same code for it runs (wider vectors, no fused multiply-add).

use crate::tables::wavetable::{TABLE_BITS, Table};

/// Samples per pass: the points are gathered for this many samples, then
/// interpolated together.
pub const CHUNK: usize = 16;
/// Most oscillators one call of [`add_oscillators`] takes.
pub const MAX_OSCILLATORS: usize = 8;

const FRAC_BITS: u32 = 32 - TABLE_BITS;
const FRAC_MASK: u32 = (1 << FRAC_BITS) - 1;
const FRAC_SCALE: f32 = 1.0 / (1u32 << FRAC_BITS) as f32;

/// Adds `gain` times each oscillator's table reading into `out`: oscillator `k` reads
/// `tables[k]`, starting at phase `phases[k]` (one cycle = 2^32) and stepping
/// `incs[k]` per sample. Per sample the oscillators add in order, each
/// `out[t] += read * gain`. Leaves each phase where its oscillator stopped.
#[inline]
pub fn add_oscillators(tables: &[&Table], phases: &mut [u32], incs: &[u32], gain: f32, out: &mut [f32]) {
    let m = phases.len().min(incs.len()).min(tables.len()).min(MAX_OSCILLATORS);
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the processor has AVX2 (checked just above).
        unsafe { add_oscillators_avx2(&tables[..m], &mut phases[..m], &incs[..m], gain, out) };
        return;
    }
    add_oscillators_body(&tables[..m], &mut phases[..m], &incs[..m], gain, out);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn add_oscillators_avx2(tables: &[&Table], phases: &mut [u32], incs: &[u32], gain: f32, out: &mut [f32]) {
    add_oscillators_body(tables, phases, incs, gain, out);
}

#[inline(always)]
fn add_oscillators_body(tables: &[&Table], phases: &mut [u32], incs: &[u32], gain: f32, out: &mut [f32]) {
    let m = phases.len();
    let mut ph = [0u32; MAX_OSCILLATORS];
    ph[..m].copy_from_slice(phases);
    for chunk in out.chunks_mut(CHUNK) {
        let len = chunk.len();
        let mut acc = [0.0f32; CHUNK];
        acc[..len].copy_from_slice(chunk);
        for k in 0..m {
            let (mut p, inc, table) = (ph[k], incs[k], tables[k]);
            let (mut a, mut b, mut frac) = ([0.0f32; CHUNK], [0.0f32; CHUNK], [0.0f32; CHUNK]);
            for j in 0..CHUNK {
                let i = (p >> FRAC_BITS) as usize;
                a[j] = table[i];
                b[j] = table[i + 1];
                frac[j] = (p & FRAC_MASK) as i32 as f32 * FRAC_SCALE;
                p = p.wrapping_add(inc);
            }
            for j in 0..CHUNK {
                acc[j] += (a[j] + (b[j] - a[j]) * frac[j]) * gain;
            }
            ph[k] = ph[k].wrapping_add(inc.wrapping_mul(len as u32));
        }
        chunk.copy_from_slice(&acc[..len]);
    }
    phases.copy_from_slice(&ph[..m]);
}

/// Mixes a sine-like layer into `out`: `out[t] = out[t] * keep + read(table, phase) *
/// add`, the phase stepping `inc` per sample. Leaves the phase where it stopped.
#[inline]
pub fn mix_oscillator(table: &Table, phase: &mut u32, inc: u32, keep: f32, add: f32, out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the processor has AVX2 (checked just above).
        unsafe { mix_oscillator_avx2(table, phase, inc, keep, add, out) };
        return;
    }
    mix_oscillator_body(table, phase, inc, keep, add, out);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn mix_oscillator_avx2(table: &Table, phase: &mut u32, inc: u32, keep: f32, add: f32, out: &mut [f32]) {
    mix_oscillator_body(table, phase, inc, keep, add, out);
}

#[inline(always)]
fn mix_oscillator_body(table: &Table, phase: &mut u32, inc: u32, keep: f32, add: f32, out: &mut [f32]) {
    let mut p = *phase;
    for chunk in out.chunks_mut(CHUNK) {
        let len = chunk.len();
        let (mut a, mut b, mut frac) = ([0.0f32; CHUNK], [0.0f32; CHUNK], [0.0f32; CHUNK]);
        let mut q = p;
        for j in 0..CHUNK {
            let i = (q >> FRAC_BITS) as usize;
            a[j] = table[i];
            b[j] = table[i + 1];
            frac[j] = (q & FRAC_MASK) as i32 as f32 * FRAC_SCALE;
            q = q.wrapping_add(inc);
        }
        let mut x = [0.0f32; CHUNK];
        x[..len].copy_from_slice(chunk);
        for j in 0..CHUNK {
            x[j] = x[j] * keep + (a[j] + (b[j] - a[j]) * frac[j]) * add;
        }
        chunk.copy_from_slice(&x[..len]);
        p = p.wrapping_add(inc.wrapping_mul(len as u32));
    }
    *phase = p;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tables::wavetable::{Shape, Wavetables, phase_inc, read};

    #[test]
    fn kernels_equal_the_plain_loops_bit_for_bit() {
        let w = Wavetables::new();
        for (n, hz) in [(64usize, 55.0f64), (37, 440.0), (5, 3520.0), (1, 12000.0)] {
            let table = w.table(Shape::Saw, phase_inc(hz, 48000.0));
            let incs: Vec<u32> = (0..7).map(|k| phase_inc(hz * (1.0 + 0.003 * k as f64), 48000.0)).collect();
            let start: Vec<u32> = (0..7u32).map(|k| k.wrapping_mul(0x9E37_79B9)).collect();
            let seed: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
            // Plain loops.
            let mut want = seed.clone();
            let mut want_ph = start.clone();
            for (p, &inc) in want_ph.iter_mut().zip(&incs) {
                for x in want.iter_mut() {
                    *x += read(table, *p) * 0.17;
                    *p = p.wrapping_add(inc);
                }
            }
            let mut got = seed.clone();
            let mut got_ph = start.clone();
            let tables = [table; 7];
            add_oscillators(&tables, &mut got_ph, &incs, 0.17, &mut got);
            assert_eq!(got_ph, want_ph);
            assert!(got.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits()), "{n} samples at {hz} Hz");
            let mut plain = seed.clone();
            let mut plain_ph = start.clone();
            add_oscillators_body(&tables, &mut plain_ph, &incs, 0.17, &mut plain);
            assert!(plain.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits()));

            let sine = w.sine();
            let mut want = seed.clone();
            let mut p = 12345u32;
            for x in want.iter_mut() {
                *x = *x * 0.94 + read(sine, p) * 0.06;
                p = p.wrapping_add(incs[0]);
            }
            let (mut got, mut q) = (seed.clone(), 12345u32);
            mix_oscillator(sine, &mut q, incs[0], 0.94, 0.06, &mut got);
            assert_eq!(q, p);
            assert!(got.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits()));
        }
    }
}
