//! Karplus-Strong plucked string: a noise burst circulating in a delay loop through
//! a two-point average and a first-order all-pass that supplies the fractional part
//! of the period, designed for an exact phase delay at the fundamental, so the pitch
//! is exact (the classic integer loop is up to ~11 cents sharp). Lowest pitch is
//! bounded by the voice's line length. Ignores `detune`.

use super::{OscState, Synth, SynthCtx};
use std::f64::consts::PI;

/// Level of the noise burst: the filtered loop stays below full scale.
const BURST: f32 = 0.85;
/// Loop gain per period.
const DECAY: f32 = 0.998;

pub struct Pluck;

/// Integer loop length and all-pass coefficient that make a two-point-average
/// loop sound at `freq_hz` exactly.
pub(super) fn tuning(freq_hz: f64, sample_rate: f64, max_len: usize) -> (usize, f32) {
    let period = (sample_rate / freq_hz.max(1.0)).min(max_len as f64 - 1.0).max(2.2);
    let n = (period - 0.6).floor();
    let delta = period - 0.5 - n; // 0.1 ..= 1.1
    let w = 2.0 * PI * freq_hz / sample_rate;
    let c = ((1.0 - delta) * w / 2.0).sin() / ((1.0 + delta) * w / 2.0).sin();
    (n as usize, c as f32)
}

/// Runs the tuned loop (state as below) for `frames` samples with `gain` per
/// pass, handing each line output to `emit(i, sample)`.
#[inline]
pub(super) fn run_loop(st: &mut OscState, ctx: &SynthCtx, gain: f32, frames: usize, mut emit: impl FnMut(usize, f32)) {
    let (n, c) = tuning(ctx.freq_hz, ctx.sample_rate as f64, st.line.len());
    let len = n.clamp(1, st.line.len().max(1));
    let mut pos = st.n[0] % len;
    let [mut prev, mut ap_x, mut ap_y, ..] = st.z;
    for i in 0..frames {
        let d = st.line[pos];
        let avg = 0.5 * (d + prev);
        prev = d;
        let y = c * avg + ap_x - c * ap_y;
        ap_x = avg;
        ap_y = y;
        st.line[pos] = y * gain;
        pos += 1;
        if pos >= len {
            pos = 0;
        }
        emit(i, d);
    }
    st.n[0] = pos;
    st.n[1] = len;
    st.z[0] = prev;
    st.z[1] = ap_x;
    st.z[2] = ap_y;
}

// State: n[0] = write position, n[1] = loop length; z[0] = previous line output,
// z[1] = all-pass input memory, z[2] = all-pass output memory, z[3] = 1 once muted.
impl Synth for Pluck {
    fn start(&self, st: &mut OscState, ctx: &SynthCtx) {
        let (n, _) = tuning(ctx.freq_hz, ctx.sample_rate as f64, st.line.len());
        let mut mean = 0.0;
        for i in 0..n {
            let v = st.noise() * BURST;
            st.line[i] = v;
            mean += v;
        }
        mean /= n as f32;
        for v in &mut st.line[..n] {
            *v -= mean;
        }
        st.n[0] = 0;
        st.n[1] = n;
    }

    fn render(&self, st: &mut OscState, ctx: &SynthCtx, out: &mut [f32]) {
        let mute = if st.z[3] > 0.0 { super::plucked::mute_gain(ctx.freq_hz) } else { 1.0 };
        run_loop(st, ctx, DECAY * mute, out.len(), |i, d| out[i] = d);
    }

    fn decays(&self) -> bool {
        true
    }

    fn uses_line(&self) -> bool {
        true
    }

    fn damp(&self, st: &mut OscState, _sample_rate: f32, _freq_hz: f64) {
        st.z[3] = 1.0;
    }
}
