//! Shared test helpers: render sets from script text, and measure what comes out
//! (pitch by FFT, onsets, levels). Each test binary uses the parts it needs.
#![allow(dead_code, clippy::result_large_err)]

pub mod sf2;

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

// ---- Script helpers (script_language, script_diagnostics, script_reload, stdlib, cli) ----

/// Evaluates set text named `test.rhai` (no folder: only stdlib imports resolve).
pub fn eval(text: &str) -> Result<jamrig::script::Evaluated, jamrig::script::diagnostic::Diagnostic> {
    host().eval_source("test.rhai", text, None, Set::default(), false)
}

/// The diagnostic set text fails with (panics if it evaluates).
pub fn eval_err(text: &str) -> jamrig::script::diagnostic::Diagnostic {
    match eval(text) {
        Ok(_) => panic!("set evaluates, expected an error:\n{text}"),
        Err(d) => d,
    }
}

/// Where the carets of a rendered diagnostic sit under the line showing `source_line`:
/// (first caret column, number of carets), 0-based chars into the source line.
pub fn caret_span(rendered: &str, source_line: &str) -> Option<(usize, usize)> {
    let lines: Vec<&str> = rendered.lines().collect();
    let i = lines.iter().position(|l| match l.split_once('│') {
        Some((gutter, rest)) => !gutter.trim().is_empty() && rest.strip_prefix(' ') == Some(source_line),
        None => false,
    })?;
    let under = lines.get(i + 1)?;
    let (_, rest) = under.split_once('│')?;
    let rest: Vec<char> = rest.chars().skip(1).collect();
    let start = rest.iter().position(|&c| c == '^')?;
    let len = rest[start..].iter().take_while(|&&c| c == '^').count();
    Some((start, len))
}

/// The text under the carets of a rendered diagnostic for `source_line`.
pub fn underlined(rendered: &str, source_line: &str) -> Option<String> {
    let (start, len) = caret_span(rendered, source_line)?;
    Some(source_line.chars().skip(start).take(len).collect())
}

// ---------------------------------------------------------------------------------
// Helpers added for the engine property tests (engine_sound, engine_timing,
// engine_reload). Append-only: the helpers above keep their behaviour.

pub fn pitch_bend(frame: u64, channel: u8, value: i16) -> Event {
    Event::new(frame, EventKind::PitchBend { channel, value })
}

/// Frame index of `seconds` at `sample_rate`.
pub fn at(seconds: f64, sample_rate: u32) -> usize {
    (seconds * sample_rate as f64).round() as usize
}

/// The part of a mono signal between `t0` and `t1` seconds.
pub fn span(x: &[f32], sample_rate: u32, t0: f64, t1: f64) -> &[f32] {
    let (a, b) = (at(t0, sample_rate).min(x.len()), at(t1, sample_rate).min(x.len()));
    &x[a..b]
}

/// Frequency of the sinusoidal component near `guess` Hz, from the advance of its
/// short-time Fourier phase: the phase of a Hann-windowed DFT at `guess` is taken
/// every `hop` seconds (unwrapped) across the whole signal, and the frequency is
/// `guess` plus the mean phase slope. The analysis window (`win` samples) rejects
/// components more than a few bins away (harmonics, sub-octaves). Over a span that
/// is a whole number of periods of any slow modulation (e.g. a PWM LFO) the
/// modulation's phase contribution cancels, which a spectral peak does not do.
pub fn phase_freq(x: &[f32], sample_rate: u32, guess: f64, win: usize) -> f64 {
    let sr = sample_rate as f64;
    assert!(x.len() > win + 1, "signal shorter than the analysis window");
    let w = std::f64::consts::TAU * guess / sr;
    let phase_at = |start: usize| -> f64 {
        let (mut re, mut im) = (0.0f64, 0.0f64);
        for n in 0..win {
            let h = 0.5 - 0.5 * (std::f64::consts::TAU * n as f64 / win as f64).cos();
            let t = (start + n) as f64;
            let v = x[start + n] as f64 * h;
            re += v * (w * t).cos();
            im -= v * (w * t).sin();
        }
        im.atan2(re)
    };
    let last = x.len() - win;
    // Hops of a quarter window: the phase moves less than half a turn per hop for a
    // frequency up to two window bins away from the guess.
    let hop = (win / 4).max(1);
    let mut starts: Vec<usize> = (0..=last).step_by(hop).collect();
    if *starts.last().unwrap() != last {
        starts.push(last);
    }
    let mut prev = phase_at(starts[0]);
    let mut total = 0.0;
    for &s in &starts[1..] {
        let p = phase_at(s);
        let mut d = p - prev;
        d -= std::f64::consts::TAU * (d / std::f64::consts::TAU).round();
        total += d;
        prev = p;
    }
    guess + total / (std::f64::consts::TAU * last as f64 / sr)
}

/// 4-term Blackman-Harris window value (sidelobes below -92 dB).
pub fn blackman_harris(i: usize, n: usize) -> f64 {
    let t = std::f64::consts::TAU * i as f64 / n as f64;
    0.35875 - 0.48829 * t.cos() + 0.14128 * (2.0 * t).cos() - 0.01168 * (3.0 * t).cos()
}

/// Magnitude spectrum with a Blackman-Harris window (for measurements that need a
/// low leakage floor, such as aliasing), zero-padded to `fft_len`; with bin width.
pub fn spectrum_bh(x: &[f32], sample_rate: f64, fft_len: usize) -> (Vec<f64>, f64) {
    let n = x.len().min(fft_len);
    let mut buf: Vec<Complex<f64>> = (0..fft_len)
        .map(|i| if i < n { Complex::new(x[i] as f64 * blackman_harris(i, n), 0.0) } else { Complex::new(0.0, 0.0) })
        .collect();
    FftPlanner::new().plan_fft_forward(fft_len).process(&mut buf);
    let mags = buf[..fft_len / 2].iter().map(|c| c.norm()).collect();
    (mags, sample_rate / fft_len as f64)
}

/// Level (dB relative to the fundamental) and frequency of the strongest spectral
/// peak that is not a harmonic of `f0`, from a Blackman-Harris spectrum (sidelobes
/// below -92 dB, so leakage around the harmonics cannot pass for a peak). Peaks
/// within 12 window bins of a harmonic belong to it (the main lobe is +/-4 bins,
/// the first sidelobes just beyond it sit at -92 dB: the measurement floor).
pub fn worst_inharmonic(x: &[f32], sr: f64, f0: f64) -> (f64, f64) {
    let s = harmonic_scan(x, sr, f0, sr / 2.0);
    (20.0 * (s.worst / s.fundamental).log10(), s.worst_hz)
}

/// Level (dB relative to the strongest harmonic of `f0`) and frequency of the
/// strongest spectral peak up to `max_hz` that is not a harmonic: the images a
/// nonlinearity folds back (measured as [`worst_inharmonic`] does).
pub fn worst_image(x: &[f32], sr: f64, f0: f64, max_hz: f64) -> (f64, f64) {
    let s = harmonic_scan(x, sr, f0, max_hz);
    (20.0 * (s.worst / s.strongest_harmonic).log10(), s.worst_hz)
}

struct HarmonicScan {
    fundamental: f64,
    strongest_harmonic: f64,
    worst: f64,
    worst_hz: f64,
}

fn harmonic_scan(x: &[f32], sr: f64, f0: f64, max_hz: f64) -> HarmonicScan {
    let fft_len = (x.len() * 4).next_power_of_two();
    let (m, bin) = spectrum_bh(x, sr, fft_len);
    let fundamental = band_level(&m, bin, f0, 3.0);
    let guard = 12.0 * sr / x.len() as f64;
    let mut s = HarmonicScan { fundamental, strongest_harmonic: fundamental, worst: 0.0, worst_hz: 0.0 };
    for k in 1..m.len() - 1 {
        let f = k as f64 * bin;
        if f < 20.0 || f > max_hz || m[k] < m[k - 1] || m[k] < m[k + 1] {
            continue;
        }
        let h = (f / f0).round();
        if h >= 1.0 && (f - h * f0).abs() <= guard {
            s.strongest_harmonic = s.strongest_harmonic.max(m[k]);
            continue;
        }
        if m[k] > s.worst {
            s.worst = m[k];
            s.worst_hz = f;
        }
    }
    s
}

/// Magnitude of the Blackman-Harris-windowed DTFT of `x` at `hz`.
pub fn dtft_mag(x: &[f32], sample_rate: f64, hz: f64) -> f64 {
    dft_mag(&windowed(x), sample_rate, hz)
}

/// `x` times a Blackman-Harris window.
fn windowed(x: &[f32]) -> Vec<f64> {
    let n = x.len();
    x.iter().enumerate().map(|(i, v)| *v as f64 * blackman_harris(i, n)).collect()
}

/// Magnitude of the DTFT of (already windowed) `xw` at `hz`.
fn dft_mag(xw: &[f64], sample_rate: f64, hz: f64) -> f64 {
    let w = std::f64::consts::TAU * hz / sample_rate;
    let (c, s) = (w.cos(), w.sin());
    // Rotating phasor, renormalised now and then.
    let (mut pr, mut pi) = (1.0f64, 0.0f64);
    let (mut re, mut im) = (0.0, 0.0);
    for (i, a) in xw.iter().enumerate() {
        re += a * pr;
        im -= a * pi;
        let (nr, ni) = (pr * c - pi * s, pr * s + pi * c);
        pr = nr;
        pi = ni;
        if i % 1024 == 1023 {
            let m = (pr * pr + pi * pi).sqrt();
            pr /= m;
            pi /= m;
        }
    }
    (re * re + im * im).sqrt()
}

/// Frequency of the strongest component between `lo` and `hi` Hz by direct DTFT
/// (Blackman-Harris window): a grid search then golden-section refinement. For
/// resolving close components (a supersaw's voices) over long windows.
pub fn fine_peak_freq(x: &[f32], sample_rate: f64, lo: f64, hi: f64) -> f64 {
    let xw = windowed(x);
    let mag = |hz: f64| dft_mag(&xw, sample_rate, hz);
    let steps = 64;
    let grid: Vec<f64> = (0..=steps).map(|i| lo + (hi - lo) * i as f64 / steps as f64).collect();
    let mags: Vec<f64> = grid.iter().map(|&f| mag(f)).collect();
    let k = (0..=steps).max_by(|&a, &b| mags[a].total_cmp(&mags[b])).unwrap();
    let (mut a, mut b) = (grid[k.saturating_sub(1)], grid[(k + 1).min(steps)]);
    let g = (5f64.sqrt() - 1.0) / 2.0;
    let (mut c, mut d) = (b - g * (b - a), a + g * (b - a));
    let (mut fc, mut fd) = (mag(c), mag(d));
    for _ in 0..40 {
        if fc > fd {
            b = d;
            d = c;
            fd = fc;
            c = b - g * (b - a);
            fc = mag(c);
        } else {
            a = c;
            c = d;
            fc = fd;
            d = a + g * (b - a);
            fd = mag(d);
        }
    }
    0.5 * (a + b)
}

/// Amplitude envelope of a narrow-band signal: the magnitude of its analytic signal
/// (FFT, negative frequencies removed).
pub fn analytic_envelope(x: &[f32]) -> Vec<f32> {
    let n = (2 * x.len()).next_power_of_two();
    let mut buf: Vec<Complex<f64>> =
        (0..n).map(|i| Complex::new(x.get(i).copied().unwrap_or(0.0) as f64, 0.0)).collect();
    let mut planner = FftPlanner::new();
    planner.plan_fft_forward(n).process(&mut buf);
    for (k, c) in buf.iter_mut().enumerate() {
        if k == 0 || k == n / 2 {
            continue;
        }
        *c = if k < n / 2 { *c * 2.0 } else { Complex::new(0.0, 0.0) };
    }
    planner.plan_fft_inverse(n).process(&mut buf);
    buf[..x.len()].iter().map(|c| (c.norm() / n as f64) as f32).collect()
}

/// Renders `frames` more frames from `r` in `block`-frame calls, returning the
/// interleaved output and the largest per-channel voice count (`channel` 0-based)
/// seen after any call.
pub fn render_watching_voices(r: &mut Renderer, frames: usize, block: usize, channel: usize) -> (Vec<f32>, u32) {
    let mut out = vec![0.0; frames * 2];
    let mut most = 0;
    for chunk in out.chunks_mut(block * 2) {
        r.render_into(chunk, block);
        most = most.max(r.stats().voices[channel].load(std::sync::atomic::Ordering::Relaxed));
    }
    (out, most)
}

/// Whether every sample is finite.
pub fn all_finite(x: &[f32]) -> bool {
    x.iter().all(|v| v.is_finite())
}

/// Click detector for a signal that should be a sinusoid of `hz` with slowly moving
/// amplitude and phase (a held sine through gains, filters, echoes): the largest
/// sample step divided by the largest step a sinusoid of the local peak level can
/// make, 2 sin(pi hz / sr) * peak over the surrounding +/-1.5 periods. A steady or
/// gliding sinusoid stays at or just under 1; a discontinuity (a cut, a jump, an
/// echo starting on a non-zero sample) shows as a step the local level cannot
/// explain. Samples where the local peak is below `floor` are skipped.
pub fn click_ratio(x: &[f32], sample_rate: u32, hz: f64, floor: f32) -> (f32, usize) {
    let p = (1.5 * sample_rate as f64 / hz).ceil() as usize;
    let unit = 2.0 * (std::f64::consts::PI * hz / sample_rate as f64).sin() as f32;
    let mut worst = (0.0f32, 0usize);
    for n in 0..x.len().saturating_sub(1) {
        let (a, b) = (n.saturating_sub(p), (n + p + 2).min(x.len()));
        let local = peak(&x[a..b]);
        if local < floor {
            continue;
        }
        let r = (x[n + 1] - x[n]).abs() / (unit * local);
        if r > worst.0 {
            worst = (r, n);
        }
    }
    worst
}
