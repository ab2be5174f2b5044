//! Shared test helpers: render sets from script text, and measure what comes out
//! (pitch by FFT, onsets, levels). Each test binary uses the parts it needs.
#![allow(dead_code)]

use jamrig::engine::event::{Event, EventKind};
use jamrig::offline::Renderer;
use jamrig::rig::Set;
use jamrig::script::ScriptHost;
use jamrig::tables::Tables;
use rustfft::{FftPlanner, num_complex::Complex};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

/// The stdlib host, built once per test binary.
pub fn host() -> &'static ScriptHost {
    static HOST: OnceLock<ScriptHost> = OnceLock::new();
    HOST.get_or_init(|| ScriptHost::new().expect("stdlib evaluates"))
}

/// Tables per sample rate, built once per test binary.
pub fn tables(sample_rate: u32) -> Arc<Tables> {
    static CACHE: OnceLock<Mutex<HashMap<u32, Arc<Tables>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    cache.lock().unwrap().entry(sample_rate).or_insert_with(|| Arc::new(Tables::new(sample_rate as f32))).clone()
}

/// Evaluates set text (panics with the diagnostic on error).
pub fn set(text: &str) -> Set {
    match host().eval_source("test.rhai", text, None, Set::default(), false) {
        Ok(ev) => ev.set,
        Err(d) => panic!("set does not evaluate:\n{}", d.render()),
    }
}

/// A renderer for set text at `sample_rate`.
pub fn renderer(text: &str, sample_rate: u32) -> Renderer {
    Renderer::with_tables(&set(text), tables(sample_rate)).expect("rig builds")
}

/// Renders `seconds` of set text with `events`, in blocks of `block` frames;
/// returns interleaved stereo.
pub fn render(text: &str, sample_rate: u32, seconds: f64, block: usize, events: &[Event]) -> Vec<f32> {
    let mut r = renderer(text, sample_rate);
    r.add_events(events.iter().copied());
    r.render((seconds * sample_rate as f64) as usize, block)
}

pub fn note_on(frame: u64, channel: u8, note: u8, velocity: u8) -> Event {
    Event::new(frame, EventKind::NoteOn { channel, note, velocity })
}

pub fn note_off(frame: u64, channel: u8, note: u8) -> Event {
    Event::new(frame, EventKind::NoteOff { channel, note })
}

pub fn cc(frame: u64, channel: u8, cc: u8, value: u8) -> Event {
    Event::new(frame, EventKind::Control { channel, cc, value })
}

pub fn left(stereo: &[f32]) -> Vec<f32> {
    stereo.iter().step_by(2).copied().collect()
}

pub fn right(stereo: &[f32]) -> Vec<f32> {
    stereo.iter().skip(1).step_by(2).copied().collect()
}

pub fn mono(stereo: &[f32]) -> Vec<f32> {
    stereo.chunks_exact(2).map(|f| 0.5 * (f[0] + f[1])).collect()
}

pub fn rms(x: &[f32]) -> f32 {
    if x.is_empty() {
        return 0.0;
    }
    (x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32).sqrt()
}

pub fn peak(x: &[f32]) -> f32 {
    x.iter().fold(0.0f32, |m, v| m.max(v.abs()))
}

pub fn db(x: f32) -> f32 {
    20.0 * x.max(1e-12).log10()
}

/// Magnitude spectrum of `x` (Hann window, zero-padded to `fft_len`), with the bin
/// width in Hz.
pub fn spectrum(x: &[f32], sample_rate: f64, fft_len: usize) -> (Vec<f64>, f64) {
    let n = x.len().min(fft_len);
    let mut buf: Vec<Complex<f64>> = (0..fft_len)
        .map(|i| {
            if i < n {
                let w = 0.5 - 0.5 * (std::f64::consts::TAU * i as f64 / n as f64).cos();
                Complex::new(x[i] as f64 * w, 0.0)
            } else {
                Complex::new(0.0, 0.0)
            }
        })
        .collect();
    FftPlanner::new().plan_fft_forward(fft_len).process(&mut buf);
    let mags = buf[..fft_len / 2].iter().map(|c| c.norm()).collect();
    (mags, sample_rate / fft_len as f64)
}

/// Frequency of the strongest spectral peak between `lo` and `hi` Hz, refined by
/// quadratic interpolation of the log magnitude.
pub fn peak_freq(x: &[f32], sample_rate: f64, lo: f64, hi: f64) -> f64 {
    let fft_len = (x.len() * 8).next_power_of_two().max(1 << 16);
    let (mags, bin) = spectrum(x, sample_rate, fft_len);
    let (a, b) = ((lo / bin) as usize, ((hi / bin) as usize).min(mags.len() - 2));
    let k = (a.max(1)..=b).max_by(|&i, &j| mags[i].total_cmp(&mags[j])).expect("non-empty range");
    let (l, c, r) = (mags[k - 1].max(1e-30).ln(), mags[k].max(1e-30).ln(), mags[k + 1].max(1e-30).ln());
    let d = 0.5 * (l - r) / (l - 2.0 * c + r);
    (k as f64 + d) * bin
}

/// Level (linear magnitude) of the spectrum's strongest bin within `hz` +/- `width`.
pub fn band_level(mags: &[f64], bin: f64, hz: f64, width: f64) -> f64 {
    let (a, b) = (((hz - width) / bin).max(0.0) as usize, (((hz + width) / bin) as usize).min(mags.len() - 1));
    mags[a..=b].iter().cloned().fold(0.0, f64::max)
}

/// Cents between two frequencies.
pub fn cents(f: f64, reference: f64) -> f64 {
    1200.0 * (f / reference).log2()
}

/// Frames where the signal starts after at least `gap` frames of exact silence.
pub fn onsets(x: &[f32], gap: usize) -> Vec<usize> {
    let mut out = Vec::new();
    let mut quiet = gap;
    for (i, v) in x.iter().enumerate() {
        if *v != 0.0 {
            if quiet >= gap {
                out.push(i);
            }
            quiet = 0;
        } else {
            quiet += 1;
        }
    }
    out
}

/// Largest sample-to-sample step.
pub fn max_step(x: &[f32]) -> f32 {
    x.windows(2).map(|w| (w[1] - w[0]).abs()).fold(0.0, f32::max)
}

/// RMS over consecutive windows of `win` frames.
pub fn rms_windows(x: &[f32], win: usize) -> Vec<f32> {
    x.chunks(win).map(rms).collect()
}
