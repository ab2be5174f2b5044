//! Vector kernels that read band-limited wavetables for many oscillators at once (the
//! supersaw's saws, the sub-oscillator, the keys' partials); run by the voices on the
//! audio thread.
//!
//! Each kernel computes, sample by sample and oscillator by oscillator, the same
//! operations in the same order as [`crate::tables::wavetable::read`] in a plain loop:
//! the output is the same bit for bit whichever build runs. Work is done in chunks
//! of [`CHUNK`] samples: the table points of a chunk are gathered first, then
//! interpolated and summed as fixed-length vector code. Where the processor has AVX2
//! a hand-vectorised build runs instead: eight samples of one oscillator per vector,
//! each sample's two adjacent points fetched by one 64-bit load, and the same
//! multiplies and adds in the same order (no fused multiply-add).

use crate::tables::wavetable::{TABLE_BITS, Table};

/// Samples per pass: the points are gathered for this many samples, then
/// interpolated together.
pub const CHUNK: usize = 16;
/// Most oscillators one call of [`add_oscillators`] takes.
pub const MAX_OSCILLATORS: usize = 8;

const FRAC_BITS: u32 = 32 - TABLE_BITS;
const FRAC_MASK: u32 = (1 << FRAC_BITS) - 1;
const FRAC_SCALE: f32 = 1.0 / (1u32 << FRAC_BITS) as f32;

/// Most oscillators one call of [`sum_oscillators`] takes: three detune copies of
/// [`MAX_OSCILLATORS`].
pub const MAX_SUMMED: usize = 3 * MAX_OSCILLATORS;

/// Adds `gain` times each oscillator's table reading into `out`: oscillator `k` reads
/// `tables[k]`, starting at phase `phases[k]` (one cycle = 2^32) and stepping
/// `incs[k]` per sample. Per sample the oscillators add in order, each
/// `out[t] += read * gain`. Leaves each phase where its oscillator stopped.
#[inline]
pub fn add_oscillators(tables: &[&Table], phases: &mut [u32], incs: &[u32], gain: f32, out: &mut [f32]) {
    let m = phases.len().min(incs.len()).min(tables.len()).min(MAX_OSCILLATORS);
    sum_oscillators(&tables[..m], &mut phases[..m], &incs[..m], gain, false, None, out);
}

/// As [`add_oscillators`] for up to [`MAX_SUMMED`] oscillators, each sample taken
/// once: it starts from `0.0` (`fresh`, as `out` filled with zeros) or from `out[t]`,
/// adds `read * gain` of each oscillator in order, is multiplied by `scale` if there
/// is one, and is stored. The same operations in the same order as [`add_oscillators`]
/// called for each oscillator in turn (after a fill with zeros when `fresh`) and then
/// a pass of `out[t] *= scale`: the same result bit for bit, with `out` read and
/// written once rather than once per oscillator.
#[inline]
pub fn sum_oscillators(
    tables: &[&Table],
    phases: &mut [u32],
    incs: &[u32],
    gain: f32,
    fresh: bool,
    scale: Option<f32>,
    out: &mut [f32],
) {
    let m = phases.len().min(incs.len()).min(tables.len()).min(MAX_SUMMED);
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the processor has AVX2 (checked just above).
        unsafe { sum_oscillators_avx2(&tables[..m], &mut phases[..m], &incs[..m], gain, fresh, scale, out) };
        return;
    }
    sum_oscillators_body(&tables[..m], &mut phases[..m], &incs[..m], gain, fresh, scale, out);
}

/// Samples per vector in the AVX2 kernels.
#[cfg(target_arch = "x86_64")]
const LANES: usize = 8;

/// The two table points of eight samples, the first at phase `p` and each next one
/// `inc` further: each sample's pair of adjacent points comes in one 64-bit load,
/// two pairs to a 128-bit half, and two shuffles split the pairs into the first
/// points and the second. (An AVX2 gather fetches the same points but is no faster
/// than the plain loop's loads on the processors measured.)
///
/// # Safety
/// The processor has AVX2, and `at` points at a [`Table`].
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn points(at: *const f32, p: u32, inc: u32) -> (std::arch::x86_64::__m256, std::arch::x86_64::__m256) {
    use std::arch::x86_64::*;
    // SAFETY: a phase shifted down is below TABLE_LEN, so both points of a pair lie in
    // the table's TABLE_LEN + 1; the loads have no alignment requirement.
    let pair = |p: u32| unsafe { at.add((p >> FRAC_BITS) as usize) as *const f64 };
    let two = |p: u32| unsafe { _mm_castpd_ps(_mm_loadh_pd(_mm_load_sd(pair(p)), pair(p.wrapping_add(inc)))) };
    let step2 = inc.wrapping_mul(2);
    let x01 = two(p);
    let x23 = two(p.wrapping_add(step2));
    let x45 = two(p.wrapping_add(step2.wrapping_mul(2)));
    let x67 = two(p.wrapping_add(step2.wrapping_mul(3)));
    // lo = a0 b0 a1 b1 | a4 b4 a5 b5, hi = a2 b2 a3 b3 | a6 b6 a7 b7.
    let lo = _mm256_insertf128_ps::<1>(_mm256_castps128_ps256(x01), x45);
    let hi = _mm256_insertf128_ps::<1>(_mm256_castps128_ps256(x23), x67);
    (_mm256_shuffle_ps::<0x88>(lo, hi), _mm256_shuffle_ps::<0xDD>(lo, hi))
}

/// Eight samples' readings, the first at phase `p` (its lanes' phases in `pv`) and
/// each next one `inc` further: the points ([`points`]) interpolated with the plain
/// loop's operations (`a + (b - a) * frac`, no fused multiply-add).
///
/// # Safety
/// As for [`points`].
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn reading(at: *const f32, p: u32, inc: u32, pv: std::arch::x86_64::__m256i) -> std::arch::x86_64::__m256 {
    use std::arch::x86_64::*;
    // SAFETY: as the contract says.
    let (a, b) = unsafe { points(at, p, inc) };
    let frac = _mm256_mul_ps(
        _mm256_cvtepi32_ps(_mm256_and_si256(pv, _mm256_set1_epi32(FRAC_MASK as i32))),
        _mm256_set1_ps(FRAC_SCALE),
    );
    _mm256_add_ps(a, _mm256_mul_ps(_mm256_sub_ps(b, a), frac))
}

/// The phases of eight samples, the first at `p` and each next one `inc` further,
/// and the step from one vector of eight to the next (as a number and in every lane).
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx2")]
fn lane_phases(p: u32, inc: u32) -> (std::arch::x86_64::__m256i, u32, std::arch::x86_64::__m256i) {
    use std::arch::x86_64::*;
    let steps = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    let pv = _mm256_add_epi32(_mm256_set1_epi32(p as i32), _mm256_mullo_epi32(steps, _mm256_set1_epi32(inc as i32)));
    let step = inc.wrapping_mul(LANES as u32);
    (pv, step, _mm256_set1_epi32(step as i32))
}

/// Vectors of eight samples that [`sum_oscillators_avx2`] keeps in registers while
/// every oscillator adds into them.
#[cfg(target_arch = "x86_64")]
const TILE: usize = 2;

/// The AVX2 build of [`sum_oscillators`]: the block in tiles of [`TILE`] vectors
/// (then single vectors, then the last `out.len() % LANES` samples one by one), each
/// tile loaded once (or zeros), every oscillator's readings added into it in order
/// (points as in [`points`]), scaled, and stored once. Per sample the plain loop's
/// multiplies and adds in the same order (no fused multiply-add): the same result bit
/// for bit.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn sum_oscillators_avx2(
    tables: &[&Table],
    phases: &mut [u32],
    incs: &[u32],
    gain: f32,
    fresh: bool,
    scale: Option<f32>,
    out: &mut [f32],
) {
    let whole = out.len() - out.len() % LANES;
    let (vectors, rest) = out.split_at_mut(whole);
    let mut tiles = vectors.chunks_exact_mut(TILE * LANES);
    for o in &mut tiles {
        tile::<TILE>(tables, phases, incs, gain, fresh, scale, o);
    }
    for o in tiles.into_remainder().chunks_exact_mut(LANES) {
        tile::<1>(tables, phases, incs, gain, fresh, scale, o);
    }
    for x in rest {
        let mut v = if fresh { 0.0 } else { *x };
        for ((table, p), &inc) in tables.iter().zip(phases.iter_mut()).zip(incs) {
            v += crate::tables::wavetable::read(table, *p) * gain;
            *p = p.wrapping_add(inc);
        }
        if let Some(s) = scale {
            v *= s;
        }
        *x = v;
    }
}

/// `T` vectors of [`sum_oscillators_avx2`]: `o` holds `T * LANES` samples.
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx2")]
fn tile<const T: usize>(
    tables: &[&Table],
    phases: &mut [u32],
    incs: &[u32],
    gain: f32,
    fresh: bool,
    scale: Option<f32>,
    o: &mut [f32],
) {
    use std::arch::x86_64::*;
    assert!(o.len() >= T * LANES);
    let gain_v = _mm256_set1_ps(gain);
    // SAFETY: `o` holds T vectors (asserted above).
    let mut acc: [__m256; T] = std::array::from_fn(|v| {
        if fresh { _mm256_setzero_ps() } else { unsafe { _mm256_loadu_ps(o.as_ptr().add(v * LANES)) } }
    });
    for ((table, phase), &inc) in tables.iter().zip(phases.iter_mut()).zip(incs) {
        let at = table.as_ptr();
        let mut p = *phase;
        let (mut pv, step, step_v) = lane_phases(p, inc);
        for a in acc.iter_mut() {
            // SAFETY: AVX2 is enabled here and `at` is a table.
            let read = unsafe { reading(at, p, inc, pv) };
            *a = _mm256_add_ps(*a, _mm256_mul_ps(read, gain_v));
            pv = _mm256_add_epi32(pv, step_v);
            p = p.wrapping_add(step);
        }
        *phase = p;
    }
    if let Some(s) = scale {
        let s = _mm256_set1_ps(s);
        for a in acc.iter_mut() {
            *a = _mm256_mul_ps(*a, s);
        }
    }
    for (v, a) in acc.iter().enumerate() {
        // SAFETY: as for the loads.
        unsafe { _mm256_storeu_ps(o.as_mut_ptr().add(v * LANES), *a) };
    }
}

/// Steps one oscillator over `out`, eight samples per vector (see [`points`]):
/// `out[t] = each(out[t], reading)`, the reading interpolated with the plain loop's
/// operations; the last `out.len() % LANES` samples go through `tail`, the scalar
/// form of `each`. Returns the phase after the block.
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx2")]
fn scan(
    table: &Table,
    phase: u32,
    inc: u32,
    out: &mut [f32],
    each: impl Fn(std::arch::x86_64::__m256, std::arch::x86_64::__m256) -> std::arch::x86_64::__m256,
    tail: impl Fn(f32, f32) -> f32,
) -> u32 {
    use std::arch::x86_64::*;
    let whole = out.len() - out.len() % LANES;
    let at = table.as_ptr();
    let mut p = phase;
    let (mut pv, step, step_v) = lane_phases(p, inc);
    for o in out[..whole].chunks_exact_mut(LANES) {
        // SAFETY: AVX2 is enabled here and `at` is a table; `o` holds LANES floats.
        unsafe {
            let read = reading(at, p, inc, pv);
            _mm256_storeu_ps(o.as_mut_ptr(), each(_mm256_loadu_ps(o.as_ptr()), read));
        }
        pv = _mm256_add_epi32(pv, step_v);
        p = p.wrapping_add(step);
    }
    for x in &mut out[whole..] {
        *x = tail(*x, crate::tables::wavetable::read(table, p));
        p = p.wrapping_add(inc);
    }
    p
}

/// The plain build of [`sum_oscillators`], [`CHUNK`] samples at a time.
#[inline(always)]
fn sum_oscillators_body(
    tables: &[&Table],
    phases: &mut [u32],
    incs: &[u32],
    gain: f32,
    fresh: bool,
    scale: Option<f32>,
    out: &mut [f32],
) {
    let m = phases.len();
    let mut ph = [0u32; MAX_SUMMED];
    ph[..m].copy_from_slice(phases);
    for chunk in out.chunks_mut(CHUNK) {
        let len = chunk.len();
        let mut acc = [0.0f32; CHUNK];
        if !fresh {
            acc[..len].copy_from_slice(chunk);
        }
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
        if let Some(s) = scale {
            for x in acc.iter_mut() {
                *x *= s;
            }
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

/// The AVX2 build (see [`scan`]), the plain loop's multiplies and adds in the same
/// order.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn mix_oscillator_avx2(table: &Table, phase: &mut u32, inc: u32, keep: f32, add: f32, out: &mut [f32]) {
    use std::arch::x86_64::*;
    let (keep_v, add_v) = (_mm256_set1_ps(keep), _mm256_set1_ps(add));
    *phase = scan(
        table,
        *phase,
        inc,
        out,
        |o, read| _mm256_add_ps(_mm256_mul_ps(o, keep_v), _mm256_mul_ps(read, add_v)),
        |x, read| x * keep + read * add,
    );
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

/// Partials summed before they are added to the output, in [`add_partials`].
pub const PARTIAL_GROUP: usize = 4;
/// Samples whose gains [`add_partials`] steps ahead at a time (a multiple of the
/// AVX2 kernels' vector length).
const GAIN_CHUNK: usize = 64;

/// Adds partials read from `table` into `out`: partial `j` starts at phase
/// `phases[j]` and steps `incs[j]` per sample; its gain starts at `gains[j]` and grows
/// by `steps[j]` after each sample (`g += dg`, as a ramp in a plain loop). The
/// partials go in groups of [`PARTIAL_GROUP`]: per sample a group's readings times
/// their gains are summed in order from zero and the sum added to `out[t]`; the
/// partials left over after the last whole group are added so one by one. Leaves
/// each phase where its partial stopped.
#[inline]
pub fn add_partials(table: &Table, phases: &mut [u32], incs: &[u32], gains: &[f32], steps: &[f32], out: &mut [f32]) {
    partials_into::<false>(table, phases, incs, gains, steps, out);
}

/// As `out.fill(0.0)` then [`add_partials`], bit for bit, without the clear: the
/// first group (or partial alone) adds its sums to zeros it holds in registers
/// rather than to the output's old contents, which are never read.
#[inline]
pub fn set_partials(table: &Table, phases: &mut [u32], incs: &[u32], gains: &[f32], steps: &[f32], out: &mut [f32]) {
    partials_into::<true>(table, phases, incs, gains, steps, out);
}

/// [`add_partials`] (`FRESH` false) or [`set_partials`] (`FRESH` true).
#[inline]
fn partials_into<const FRESH: bool>(
    table: &Table,
    phases: &mut [u32],
    incs: &[u32],
    gains: &[f32],
    steps: &[f32],
    out: &mut [f32],
) {
    let m = phases.len().min(incs.len()).min(gains.len()).min(steps.len());
    if FRESH && m == 0 {
        out.fill(0.0);
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the processor has AVX2 (checked just above).
        unsafe { add_partials_avx2::<FRESH>(table, &mut phases[..m], &incs[..m], &gains[..m], &steps[..m], out) };
        return;
    }
    add_partials_plain::<FRESH>(table, &mut phases[..m], &incs[..m], &gains[..m], &steps[..m], out);
}

/// The plain build of [`add_partials`] and [`set_partials`]: each group (or partial
/// alone) in turn, the first one onto zeros when `FRESH`.
fn add_partials_plain<const FRESH: bool>(
    table: &Table,
    phases: &mut [u32],
    incs: &[u32],
    gains: &[f32],
    steps: &[f32],
    out: &mut [f32],
) {
    let m = phases.len();
    let mut at = 0;
    while at < m {
        let n = if m - at >= PARTIAL_GROUP { PARTIAL_GROUP } else { 1 };
        let r = at..at + n;
        let (ph, inc, g, dg) = (&mut phases[r.clone()], &incs[r.clone()], &gains[r.clone()], &steps[r]);
        if FRESH && at == 0 {
            add_partials_body::<true>(table, ph, inc, g, dg, out);
        } else {
            add_partials_body::<false>(table, ph, inc, g, dg, out);
        }
        at += n;
    }
}

/// The plain loop: one group (or one partial alone) over the block, its sums added
/// to zeros rather than to the output when `FRESH`.
#[inline(always)]
fn add_partials_body<const FRESH: bool>(
    table: &Table,
    phases: &mut [u32],
    incs: &[u32],
    gains: &[f32],
    steps: &[f32],
    out: &mut [f32],
) {
    let n = phases.len();
    let mut p = [0u32; PARTIAL_GROUP];
    let mut g = [0.0f32; PARTIAL_GROUP];
    p[..n].copy_from_slice(phases);
    g[..n].copy_from_slice(gains);
    for x in out.iter_mut() {
        let mut sum = 0.0;
        for j in 0..n {
            sum += crate::tables::wavetable::read(table, p[j]) * g[j];
            g[j] += steps[j];
            p[j] = p[j].wrapping_add(incs[j]);
        }
        *x = if FRESH { 0.0 } else { *x } + sum;
    }
    phases.copy_from_slice(&p[..n]);
}

/// The AVX2 build: each whole group, then the partials left over (side by side in
/// one pass, each still added alone), with [`partials_avx2`]; when `FRESH`, the
/// first of these passes starts from zeros rather than the output.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn add_partials_avx2<const FRESH: bool>(
    table: &Table,
    phases: &mut [u32],
    incs: &[u32],
    gains: &[f32],
    steps: &[f32],
    out: &mut [f32],
) {
    let m = phases.len();
    let whole = m - m % PARTIAL_GROUP;
    for at in (0..whole).step_by(PARTIAL_GROUP) {
        let r = at..at + PARTIAL_GROUP;
        let (ph, inc, g, dg) = (&mut phases[r.clone()], &incs[r.clone()], &gains[r.clone()], &steps[r]);
        if FRESH && at == 0 {
            partials_avx2::<PARTIAL_GROUP, false, true>(table, ph, inc, g, dg, out);
        } else {
            partials_avx2::<PARTIAL_GROUP, false, false>(table, ph, inc, g, dg, out);
        }
    }
    let r = whole..m;
    let (ph, inc, g, dg) = (&mut phases[r.clone()], &incs[r.clone()], &gains[r.clone()], &steps[r]);
    if FRESH && whole == 0 {
        match m {
            1 => partials_avx2::<1, true, true>(table, ph, inc, g, dg, out),
            2 => partials_avx2::<2, true, true>(table, ph, inc, g, dg, out),
            3 => partials_avx2::<3, true, true>(table, ph, inc, g, dg, out),
            _ => {}
        }
    } else {
        match m - whole {
            1 => partials_avx2::<1, true, false>(table, ph, inc, g, dg, out),
            2 => partials_avx2::<2, true, false>(table, ph, inc, g, dg, out),
            3 => partials_avx2::<3, true, false>(table, ph, inc, g, dg, out),
            _ => {}
        }
    }
}

/// `N` partials over the block, eight samples per vector (the points as in
/// [`scan`]). Each partial's gains for up to [`GAIN_CHUNK`] samples are stepped
/// first with the plain loop's scalar adds (the same values), then used in the vector
/// pass. `ALONE`: each partial's product is added to the output by itself (through a
/// sum from zero, as a group of one); otherwise the group's products are summed
/// first. The plain loop's multiplies and adds in the same order, no fused
/// multiply-add: the result is the same bit for bit. `FRESH`: the output's old
/// contents are taken as zeros (not read).
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx2")]
fn partials_avx2<const N: usize, const ALONE: bool, const FRESH: bool>(
    table: &Table,
    phases: &mut [u32],
    incs: &[u32],
    gains: &[f32],
    steps: &[f32],
    out: &mut [f32],
) {
    use std::arch::x86_64::*;
    let lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    let at = table.as_ptr();
    let inc: [u32; N] = std::array::from_fn(|j| incs[j]);
    let dg: [f32; N] = std::array::from_fn(|j| steps[j]);
    let mut p: [u32; N] = std::array::from_fn(|j| phases[j]);
    let mut g: [f32; N] = std::array::from_fn(|j| gains[j]);
    let step_v: [__m256i; N] = std::array::from_fn(|j| _mm256_set1_epi32(inc[j].wrapping_mul(LANES as u32) as i32));
    let mut gbuf = [[0.0f32; GAIN_CHUNK]; N];
    for chunk in out.chunks_mut(GAIN_CHUNK) {
        let len = chunk.len();
        #[allow(clippy::needless_range_loop)] // the partials' ramps side by side, sample by sample
        for t in 0..len {
            for j in 0..N {
                gbuf[j][t] = g[j];
                g[j] += dg[j];
            }
        }
        let mut pv: [__m256i; N] = std::array::from_fn(|j| {
            _mm256_add_epi32(
                _mm256_set1_epi32(p[j] as i32),
                _mm256_mullo_epi32(lanes, _mm256_set1_epi32(inc[j] as i32)),
            )
        });
        let whole = len - len % LANES;
        for (c, o) in chunk[..whole].chunks_exact_mut(LANES).enumerate() {
            // SAFETY: AVX2 is enabled here and `at` is a table; `o` and each gain
            // slice hold LANES floats from `c * LANES`.
            unsafe {
                let mut x = if FRESH { _mm256_setzero_ps() } else { _mm256_loadu_ps(o.as_ptr()) };
                let mut sum = _mm256_setzero_ps();
                for j in 0..N {
                    let read = reading(at, p[j], inc[j], pv[j]);
                    let gv = _mm256_loadu_ps(gbuf[j].as_ptr().add(c * LANES));
                    sum = _mm256_add_ps(sum, _mm256_mul_ps(read, gv));
                    if ALONE {
                        x = _mm256_add_ps(x, sum);
                        sum = _mm256_setzero_ps();
                    }
                    pv[j] = _mm256_add_epi32(pv[j], step_v[j]);
                    p[j] = p[j].wrapping_add(inc[j].wrapping_mul(LANES as u32));
                }
                if !ALONE {
                    x = _mm256_add_ps(x, sum);
                }
                _mm256_storeu_ps(o.as_mut_ptr(), x);
            }
        }
        for (t, x) in chunk.iter_mut().enumerate().skip(whole) {
            let mut acc = if FRESH { 0.0 } else { *x };
            let mut sum = 0.0;
            for j in 0..N {
                sum += crate::tables::wavetable::read(table, p[j]) * gbuf[j][t];
                p[j] = p[j].wrapping_add(inc[j]);
                if ALONE {
                    acc += sum;
                    sum = 0.0;
                }
            }
            if !ALONE {
                acc += sum;
            }
            *x = acc;
        }
    }
    phases.copy_from_slice(&p);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tables::wavetable::{Shape, Wavetables, phase_inc, read};

    #[test]
    fn kernels_equal_the_plain_loops_bit_for_bit() {
        let w = Wavetables::new();
        for (n, hz) in
            [(64usize, 55.0f64), (37, 440.0), (5, 3520.0), (1, 12000.0), (256, 110.0), (8, 880.0), (9, 23999.0)]
        {
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
            sum_oscillators_body(&tables, &mut plain_ph, &incs, 0.17, false, None, &mut plain);
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
            let (mut plain, mut q) = (seed.clone(), 12345u32);
            mix_oscillator_body(sine, &mut q, incs[0], 0.94, 0.06, &mut plain);
            assert_eq!(q, p);
            assert!(plain.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits()));
        }
    }

    #[test]
    fn summed_oscillators_equal_each_in_turn_bit_for_bit() {
        let w = Wavetables::new();
        for m in [1usize, 3, 7, 8, 14, 21, 24] {
            for n in [1usize, 5, 8, 13, 31, 32, 37, 64, 65, 128, 200] {
                let hz = 40.0 * (1.0 + m as f64) * (1.0 + n as f64 / 100.0);
                let incs: Vec<u32> = (0..m).map(|k| phase_inc(hz * (1.0 + 0.003 * k as f64), 48000.0)).collect();
                // A table per copy of seven, as the detune copies take.
                let tables: Vec<&Table> = (0..m).map(|k| w.table(Shape::Saw, incs[k / 7 * 7])).collect();
                let start: Vec<u32> = (0..m as u32).map(|k| k.wrapping_mul(0x9E37_79B9)).collect();
                // Signed zeros and a negative seed: a fresh start must not read them.
                let seed: Vec<f32> = (0..n).map(|i| if i % 3 == 0 { -0.0 } else { (i as f32 * 0.37).sin() }).collect();
                for (fresh, scale) in [(false, None), (true, None), (true, Some(1.0 / 3.0)), (false, Some(0.5))] {
                    // Each oscillator in turn, after a fill with zeros when fresh, then the scale.
                    let (mut want, mut want_ph) = (seed.clone(), start.clone());
                    if fresh {
                        want.fill(0.0);
                    }
                    for k in 0..m {
                        for x in want.iter_mut() {
                            *x += read(tables[k], want_ph[k]) * 0.17;
                            want_ph[k] = want_ph[k].wrapping_add(incs[k]);
                        }
                    }
                    if let Some(s) = scale {
                        for x in want.iter_mut() {
                            *x *= s;
                        }
                    }
                    let (mut got, mut got_ph) = (seed.clone(), start.clone());
                    sum_oscillators(&tables, &mut got_ph, &incs, 0.17, fresh, scale, &mut got);
                    let what = format!("{m} oscillators, {n} samples, fresh {fresh}, scale {scale:?}");
                    assert_eq!(got_ph, want_ph, "{what}");
                    assert!(got.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits()), "{what}");
                    let (mut plain, mut plain_ph) = (seed.clone(), start.clone());
                    sum_oscillators_body(&tables, &mut plain_ph, &incs, 0.17, fresh, scale, &mut plain);
                    assert_eq!(plain_ph, want_ph, "plain: {what}");
                    assert!(plain.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits()), "plain: {what}");
                }
            }
        }
    }

    /// The partial groups' sum written out: per sample, each group of four summed
    /// from zero and added, then each partial left over added alone.
    fn partials_plainly(
        table: &Table,
        phases: &mut [u32],
        incs: &[u32],
        gains: &[f32],
        steps: &[f32],
        out: &mut [f32],
    ) {
        let m = phases.len();
        let mut g = gains.to_vec();
        for x in out.iter_mut() {
            let mut j = 0;
            while j < m {
                let n = if m - j >= PARTIAL_GROUP { PARTIAL_GROUP } else { 1 };
                let mut sum = 0.0;
                for k in j..j + n {
                    sum += read(table, phases[k]) * g[k];
                    g[k] += steps[k];
                    phases[k] = phases[k].wrapping_add(incs[k]);
                }
                *x += sum;
                j += n;
            }
        }
    }

    #[test]
    fn partials_equal_the_plain_loop_bit_for_bit() {
        let w = Wavetables::new();
        let sine = w.sine();
        for m in [1usize, 2, 3, 4, 5, 6, 7, 8, 11, 32] {
            for n in [1usize, 5, 8, 37, 64, 65, 200] {
                let incs: Vec<u32> = (0..m).map(|k| phase_inc(261.63 * (k + 1) as f64 * 1.001, 48000.0)).collect();
                let start: Vec<u32> = (0..m as u32).map(|k| k.wrapping_mul(0x9E37_79B9)).collect();
                // Gains ramping up and down, some through zero.
                let gains: Vec<f32> = (0..m).map(|k| 0.9 / (k + 1) as f32 - 0.05).collect();
                let steps: Vec<f32> = (0..m).map(|k| (0.3 - 0.11 * k as f32) / n as f32).collect();
                let seed: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin() * 0.5).collect();
                let (mut want, mut want_ph) = (seed.clone(), start.clone());
                partials_plainly(sine, &mut want_ph, &incs, &gains, &steps, &mut want);
                let (mut got, mut got_ph) = (seed.clone(), start.clone());
                add_partials(sine, &mut got_ph, &incs, &gains, &steps, &mut got);
                assert_eq!(got_ph, want_ph, "{m} partials, {n} samples");
                assert!(got.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits()), "{m} partials, {n} samples");
                // The plain build.
                let (mut plain, mut plain_ph) = (seed.clone(), start.clone());
                add_partials_plain::<false>(sine, &mut plain_ph, &incs, &gains, &steps, &mut plain);
                assert_eq!(plain_ph, want_ph);
                assert!(
                    plain.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits()),
                    "plain: {m} partials, {n} samples"
                );
            }
        }
    }

    #[test]
    fn set_partials_equals_a_clear_then_add_partials_bit_for_bit() {
        let w = Wavetables::new();
        let sine = w.sine();
        for m in [0usize, 1, 2, 3, 4, 5, 6, 7, 8, 11, 32] {
            for n in [1usize, 5, 8, 37, 64, 65, 127, 200] {
                let incs: Vec<u32> = (0..m).map(|k| phase_inc(261.63 * (k + 1) as f64 * 1.001, 48000.0)).collect();
                let start: Vec<u32> = (0..m as u32).map(|k| k.wrapping_mul(0x9E37_79B9)).collect();
                // Gains ramping through zero, some negative (sums of -0.0 and 0.0).
                let gains: Vec<f32> = (0..m).map(|k| 0.9 / (k + 1) as f32 - 0.3).collect();
                let steps: Vec<f32> = (0..m).map(|k| (0.3 - 0.11 * k as f32) / n as f32).collect();
                // Old contents the clear throws away, NaN among them.
                let seed: Vec<f32> = (0..n).map(|i| if i % 7 == 3 { f32::NAN } else { i as f32 - 2.5 }).collect();
                let (mut want, mut want_ph) = (seed.clone(), start.clone());
                want.fill(0.0);
                add_partials(sine, &mut want_ph, &incs, &gains, &steps, &mut want);
                let (mut got, mut got_ph) = (seed.clone(), start.clone());
                set_partials(sine, &mut got_ph, &incs, &gains, &steps, &mut got);
                assert_eq!(got_ph, want_ph, "{m} partials, {n} samples");
                assert!(got.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits()), "{m} partials, {n} samples");
                // The plain build against the AVX2 one (where the processor has it).
                let (mut plain, mut plain_ph) = (seed.clone(), start.clone());
                if m == 0 {
                    plain.fill(0.0);
                } else {
                    add_partials_plain::<true>(sine, &mut plain_ph, &incs, &gains, &steps, &mut plain);
                }
                assert_eq!(plain_ph, want_ph);
                assert!(
                    plain.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits()),
                    "plain: {m} partials, {n} samples"
                );
            }
        }
    }
}
