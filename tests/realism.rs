//! Basses and pianos against sampled General MIDI instruments: each preset's note and
//! FluidSynth's rendering of TimGM6mb (installed by scripts/deps.sh) are measured side
//! by side in one run, with figures recorded from FluidR3_GM (Debian's
//! fluid-soundfont-gm) as a second reference. The measures: the spectral centroid of
//! the first second, the pitch, and the decay (dB/s) of partials 1-12 by short-time
//! spectra from 0.3 s after the onset.
//!
//! `JAMRIG_REFERENCE_FONT=/usr/share/sounds/sf2/FluidR3_GM.sf2 cargo test --release
//! --test realism -- --nocapture` prints a font's figures in the form of
//! [`FLUID_R3`] (how its rows were recorded).

mod common;

use jamrig::theory::note_hz;
use midly::num::{u4, u7, u15, u28};
use midly::{Format, Header, MetaMessage, MidiMessage, Smf, Timing, TrackEvent, TrackEventKind};

const SR: u32 = 48_000;
const FONT: &str = "/usr/share/sounds/sf2/TimGM6mb.sf2";
/// Every note is held this long, then released.
const HOLD_S: f64 = 3.0;
/// Partials measured.
const PARTIALS: usize = 12;
/// Decay is measured from here (after the attack)...
const DECAY_FROM_S: f64 = 0.3;
/// ... to here for basses, and to `PIANO_DECAY_TO_S` for pianos.
const BASS_DECAY_TO_S: f64 = 1.5;
const PIANO_DECAY_TO_S: f64 = 2.0;
/// Short-time spectra: window length and hop.
const FRAME_S: f64 = 0.2;
const HOP_S: f64 = 0.05;
/// The notes the basses are measured at: E1, C2, G2, G3.
const BASS_NOTES: [u8; 4] = [28, 36, 43, 55];
/// The notes the piano is measured at: C3, C4, C5.
const PIANO_NOTES: [u8; 3] = [48, 60, 72];

/// A note's figures: spectral centroid (Hz) and the decay of partials 1-12 (dB/s).
#[derive(Clone, Copy, Debug)]
struct Figures {
    centroid_hz: f64,
    rates: [f64; PARTIALS],
}

impl Figures {
    /// Mean decay of partials `from..=to` (1-based).
    fn mean(&self, from: usize, to: usize) -> f64 {
        self.rates[from - 1..to].iter().sum::<f64>() / (to + 1 - from) as f64
    }
}

/// FluidR3_GM's figures, recorded with `JAMRIG_REFERENCE_FONT` (above) on FluidSynth
/// 2.3.1: (General MIDI program, 0-based; note; centroid Hz; partials 1-12 dB/s).
const FLUID_R3: &[(u8, u8, f64, [f64; PARTIALS])] = &[
    (32, 28, 172.0, [-8.2, -8.2, -8.3, -8.6, -7.5, -7.8, -7.4, -7.3, -12.0, -11.4, -11.4, -13.1]),
    (32, 36, 241.0, [-8.9, -8.7, -10.4, -8.6, -9.2, -6.1, -8.4, -6.7, -7.2, -7.1, -8.8, -9.1]),
    (32, 43, 346.0, [-11.7, -12.2, -13.7, -12.1, -11.1, -11.6, -11.9, -12.7, -15.2, -16.4, -16.3, -12.7]),
    (32, 55, 538.0, [-20.6, -20.5, -19.7, -21.2, -21.1, -23.5, -27.1, -24.0, -27.1, -30.3, -23.7, -25.6]),
    (33, 28, 266.0, [-9.1, -4.3, -4.7, -5.5, -5.9, -12.5, -9.1, -15.1, -7.5, -11.4, -10.9, -5.6]),
    (33, 36, 239.0, [-3.9, -5.5, -4.8, -9.6, -11.0, -5.2, -8.5, -0.2, -4.5, -15.9, -8.8, -6.9]),
    (33, 43, 411.0, [-2.8, -5.2, -6.8, -1.7, -2.2, 0.5, -8.8, -6.8, -8.6, -6.8, -6.4, -13.3]),
    (33, 55, 531.0, [-3.8, -17.5, -5.2, 2.3, -13.2, -11.2, -16.9, -11.7, -19.2, -15.1, -14.3, -23.0]),
    (34, 28, 405.0, [-6.4, -6.9, -10.8, -3.9, -3.0, -16.4, -18.8, -19.9, -11.5, -10.7, -14.5, -4.9]),
    (34, 36, 410.0, [-5.6, -5.0, -4.4, -5.1, -9.2, -4.2, 0.2, -4.7, -5.7, -18.5, -12.9, -20.2]),
    (34, 43, 705.0, [-7.8, -1.2, 1.0, -4.0, -2.7, -8.7, -11.3, -0.6, -8.8, -6.2, -4.7, -2.1]),
    (34, 55, 820.0, [-3.8, -19.5, -5.1, -6.0, -8.9, -11.5, -11.8, -11.9, -15.9, -15.0, -13.9, -13.5]),
    (0, 48, 1411.0, [-10.8, -7.4, -10.6, -12.2, -17.9, -21.3, -13.9, -1.9, -9.1, -5.3, -12.4, -8.1]),
    (0, 60, 1466.0, [-11.6, -15.3, -17.0, -13.0, -9.9, -14.8, -13.4, -14.6, -18.7, -10.3, -12.3, -17.4]),
    (0, 72, 2018.0, [-11.2, -11.8, -9.9, -10.0, -11.2, -16.6, -17.2, -21.5, -21.8, -21.4, -27.3, -20.2]),
];

/// The sampled instruments a preset is held against (0-based programs): fingered and
/// picked electric bass, acoustic bass, grand piano.
fn references(preset: &str) -> &'static [u8] {
    match preset {
        "bass_guitar" => &[33, 34],
        "upright_bass" => &[32],
        _ => &[0],
    }
}

/// A MIDI file of one note on channel 1, program `program`, reverb and chorus sends
/// at zero, held [`HOLD_S`] at velocity 100.
fn note_file(program: u8, key: u8) -> Vec<u8> {
    const TPB: u16 = 480;
    let ch = u4::new(0);
    let midi = |delta: u32, message: MidiMessage| TrackEvent {
        delta: u28::new(delta),
        kind: TrackEventKind::Midi { channel: ch, message },
    };
    let track = vec![
        TrackEvent {
            delta: u28::new(0),
            kind: TrackEventKind::Meta(MetaMessage::Tempo(midly::num::u24::new(500_000))),
        },
        midi(0, MidiMessage::ProgramChange { program: u7::new(program) }),
        midi(0, MidiMessage::Controller { controller: u7::new(91), value: u7::new(0) }),
        midi(0, MidiMessage::Controller { controller: u7::new(93), value: u7::new(0) }),
        midi(0, MidiMessage::NoteOn { key: u7::new(key), vel: u7::new(100) }),
        midi((HOLD_S * 2.0 * TPB as f64) as u32, MidiMessage::NoteOff { key: u7::new(key), vel: u7::new(0) }),
        TrackEvent { delta: u28::new(TPB as u32), kind: TrackEventKind::Meta(MetaMessage::EndOfTrack) },
    ];
    let smf = Smf { header: Header::new(Format::SingleTrack, Timing::Metrical(u15::new(TPB))), tracks: vec![track] };
    let mut out = Vec::new();
    smf.write_std(&mut out).expect("writing a MIDI file to memory");
    out
}

/// FluidSynth's rendering (mono) of `program` playing `key` from `font`, reverb and
/// chorus off.
fn fluidsynth(font: &str, program: u8, key: u8) -> Vec<f32> {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let (mid, wav) = (dir.path().join("note.mid"), dir.path().join("note.wav"));
    std::fs::write(&mid, note_file(program, key)).expect("writing the MIDI file");
    let status = std::process::Command::new("fluidsynth")
        .args(["-ni", "-g", "1.0", "-R", "0", "-C", "0", "-r", "48000", "-F"])
        .arg(&wav)
        .arg(font)
        .arg(&mid)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("fluidsynth is missing: scripts/deps.sh installs it");
    assert!(status.success(), "fluidsynth failed on {font}");
    let mut reader = hound::WavReader::open(&wav).expect("FluidSynth's WAV");
    let spec = reader.spec();
    assert_eq!(spec.sample_rate, SR);
    let samples: Vec<f32> = match spec.sample_format {
        hound::SampleFormat::Float => reader.samples::<f32>().map(|s| s.unwrap()).collect(),
        hound::SampleFormat::Int => {
            let scale = 1.0 / (1u64 << (spec.bits_per_sample - 1)) as f32;
            reader.samples::<i32>().map(|s| s.unwrap() as f32 * scale).collect()
        }
    };
    samples.chunks(spec.channels as usize).map(|f| f.iter().sum::<f32>() / f.len() as f32).collect()
}

/// jamrig's rendering (mono) of preset `name` playing `key`, alone, velocity 100:
/// reverb, delay, chorus and humanize off, the limiter master (linear below full scale).
fn jamrig(name: &str, key: u8) -> Vec<f32> {
    let text = format!(
        r#"master(#{{ gain: 1.0, mode: "limiter" }});
        channel(1, "{name}", #{{ reverb: 0.0, delay: 0.0, chorus: 0.0, humanize: 0.0 }});"#
    );
    let mut r = common::renderer(&text, SR);
    r.add_events([common::note_on(0, 0, key, 100), common::note_off(common::at(HOLD_S, SR) as u64, 0, key)]);
    common::mono(&r.render(common::at(HOLD_S + 0.5, SR), 256))
}

/// The first sample above a tenth of the peak.
fn onset(x: &[f32]) -> usize {
    let top = common::peak(x);
    x.iter().position(|v| v.abs() > 0.1 * top).unwrap_or(0)
}

/// The figures of a note at `f0` Hz in `x`, its decay measured up to `to_s` seconds
/// after the onset: the centroid of the magnitude spectrum (Hann window) of the first
/// second; each partial's frequency, the strongest peak from 2% under to 4% over its
/// harmonic (stiff strings are sharp), from 0.1 to 0.6 s; its level in 0.2 s frames
/// (Blackman-Harris, every 50 ms) from 0.3 s to `to_s`, and the slope of the
/// least-squares line through them.
fn measure(x: &[f32], f0: f64, to_s: f64) -> Figures {
    let start = onset(x);
    let t0 = start as f64 / SR as f64;
    let first = common::span(x, SR, t0, t0 + 1.0);
    let (mags, bin) = common::spectrum(first, SR as f64, 1 << 16);
    let total: f64 = mags.iter().sum();
    let centroid_hz = mags.iter().enumerate().map(|(i, m)| i as f64 * bin * m).sum::<f64>() / total.max(1e-30);
    let early = common::span(x, SR, t0 + 0.1, t0 + 0.6);
    let frames: Vec<f64> = (0..).map(|i| DECAY_FROM_S + i as f64 * HOP_S).take_while(|t| *t <= to_s + 1e-9).collect();
    let rates = std::array::from_fn(|k| {
        let h = (k + 1) as f64 * f0;
        let hz = common::peak_freq(early, SR as f64, 0.98 * h, 1.04 * h);
        let levels: Vec<f64> = frames
            .iter()
            .map(|t| {
                let seg = common::span(x, SR, t0 + t - FRAME_S / 2.0, t0 + t + FRAME_S / 2.0);
                20.0 * common::dtft_mag(seg, SR as f64, hz).max(1e-30).log10()
            })
            .collect();
        slope(&frames, &levels)
    });
    Figures { centroid_hz, rates }
}

/// Slope of the least-squares line through `(x, y)`.
fn slope(x: &[f64], y: &[f64]) -> f64 {
    let n = x.len() as f64;
    let (mx, my) = (x.iter().sum::<f64>() / n, y.iter().sum::<f64>() / n);
    let sxy: f64 = x.iter().zip(y).map(|(a, b)| (a - mx) * (b - my)).sum();
    let sxx: f64 = x.iter().map(|a| (a - mx) * (a - mx)).sum();
    sxy / sxx
}

fn decay_to(preset: &str) -> f64 {
    if preset.contains("bass") { BASS_DECAY_TO_S } else { PIANO_DECAY_TO_S }
}

/// The sampled references' figures for `preset` at `key`: TimGM6mb rendered now by
/// FluidSynth, and the recorded FluidR3_GM rows.
fn sampled(preset: &str, key: u8) -> Vec<(String, Figures)> {
    let f0 = note_hz(key as f64);
    let mut out = Vec::new();
    for &program in references(preset) {
        let x = fluidsynth(FONT, program, key);
        out.push((format!("TimGM6mb {program}"), measure(&x, f0, decay_to(preset))));
        let recorded = FLUID_R3.iter().find(|r| r.0 == program && r.1 == key);
        let (_, _, centroid_hz, rates) = recorded.unwrap_or_else(|| panic!("no FluidR3_GM row for {program} {key}"));
        out.push((format!("FluidR3_GM {program}"), Figures { centroid_hz: *centroid_hz, rates: *rates }));
    }
    out
}

fn row(name: &str, f: &Figures) -> String {
    let rates: Vec<String> = f.rates.iter().map(|r| format!("{r:6.1}")).collect();
    format!("{name:16} {:6.0} Hz | {}", f.centroid_hz, rates.join(""))
}

/// A range of decay rates (dB/s, negative) drawn from the sampled ones: from 30% and
/// 1 dB/s faster than the fastest to 30% and 1 dB/s slower than the slowest.
fn rate_range(refs: &[f64]) -> (f64, f64) {
    let lo = refs.iter().cloned().fold(f64::INFINITY, f64::min);
    let hi = refs.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    (lo * 1.3 - 1.0, hi * 0.7 + 1.0)
}

/// Prints the figures of `JAMRIG_REFERENCE_FONT`, if set, as rows of [`FLUID_R3`].
#[test]
fn print_a_reference_fonts_figures_when_asked() {
    let Ok(font) = std::env::var("JAMRIG_REFERENCE_FONT") else {
        println!("JAMRIG_REFERENCE_FONT is not set: nothing to record");
        return;
    };
    for (programs, notes, to) in
        [(&[32u8, 33, 34][..], &BASS_NOTES[..], BASS_DECAY_TO_S), (&[0u8][..], &PIANO_NOTES[..], PIANO_DECAY_TO_S)]
    {
        for &p in programs {
            for &k in notes {
                let f = measure(&fluidsynth(&font, p, k), note_hz(k as f64), to);
                let rates: Vec<String> = f.rates.iter().map(|r| format!("{r:.1}")).collect();
                println!("    ({p}, {k}, {:.0}.0, [{}]),", f.centroid_hz, rates.join(", "));
            }
        }
    }
}

/// The basses at E1, C2, G2 and G3 sit among the sampled ones: their spectral
/// centroid within 0.8 to 1.25 times the sampled range (the Karplus-Strong basses
/// had 1130 Hz at C2 against 228 to 482 Hz), partials 1-4, 5-8 and 9-12 decaying on
/// average within the sampled range (see `rate_range`; they lost about 1 dB/s),
/// every partial decaying, the upper ones (9-12) at least 1 dB/s faster than the
/// lower (1-4), and the note in tune (3 cents).
#[test]
fn basses_sound_like_sampled_basses_from_e1_to_g3() {
    let mut bad = Vec::new();
    for preset in ["bass_guitar", "upright_bass"] {
        for key in BASS_NOTES {
            let f0 = note_hz(key as f64);
            let x = jamrig(preset, key);
            let ours = measure(&x, f0, BASS_DECAY_TO_S);
            let refs = sampled(preset, key);
            println!("{preset} at note {key}:");
            println!("  {}", row("jamrig", &ours));
            for (name, f) in &refs {
                println!("  {}", row(name, f));
            }
            let what = format!("{preset} at note {key}");
            let cs: Vec<f64> = refs.iter().map(|r| r.1.centroid_hz).collect();
            let (lo, hi) = (cs.iter().cloned().fold(f64::INFINITY, f64::min), cs.iter().cloned().fold(0.0, f64::max));
            if !(0.8 * lo..=1.25 * hi).contains(&ours.centroid_hz) {
                bad.push(format!("{what}: centroid {:.0} Hz, sampled {lo:.0} to {hi:.0}", ours.centroid_hz));
            }
            for (from, to) in [(1, 4), (5, 8), (9, 12)] {
                let group: Vec<f64> = refs.iter().map(|r| r.1.mean(from, to)).collect();
                let (lo, hi) = rate_range(&group);
                let m = ours.mean(from, to);
                if !(lo..=hi).contains(&m) {
                    bad.push(format!("{what}: partials {from}-{to} decay at {m:.1} dB/s, allowed {lo:.1} to {hi:.1}"));
                }
            }
            if let Some((k, r)) = ours.rates.iter().enumerate().find(|(_, r)| **r > -1.0) {
                bad.push(format!("{what}: partial {} decays at only {r:.1} dB/s", k + 1));
            }
            if ours.mean(9, 12) > ours.mean(1, 4) - 1.0 {
                bad.push(format!(
                    "{what}: partials 9-12 decay at {:.1} dB/s, 1-4 at {:.1}",
                    ours.mean(9, 12),
                    ours.mean(1, 4)
                ));
            }
            let t0 = onset(&x) as f64 / SR as f64;
            let hz = common::fine_peak_freq(common::span(&x, SR, t0 + 0.1, t0 + 1.0), SR as f64, 0.97 * f0, 1.03 * f0);
            if common::cents(hz, f0).abs() > 3.0 {
                bad.push(format!("{what}: {:+.1} cents", common::cents(hz, f0)));
            }
        }
    }
    assert!(bad.is_empty(), "{} problems:\n{}", bad.len(), bad.join("\n"));
}

/// The piano's partials decay like a sampled grand's at C3, C4 and C5: the mean rate
/// of partials 8-12, and that of partials 1-6, within a factor of 1.5 of the sampled
/// range (from 1.5 times the fastest to the slowest divided by 1.5). Before, partials 8-12
/// died 1.6 to 3 times faster than the sampled grands' (C4: -41 dB/s against -15 and
/// -24; C5: -72 against -25 and -23).
#[test]
fn piano_partials_decay_like_a_sampled_grand() {
    let mut bad = Vec::new();
    for key in PIANO_NOTES {
        let f0 = note_hz(key as f64);
        let ours = measure(&jamrig("piano", key), f0, PIANO_DECAY_TO_S);
        let refs = sampled("piano", key);
        println!("piano at note {key}:");
        println!("  {}", row("jamrig", &ours));
        for (name, f) in &refs {
            println!("  {}", row(name, f));
        }
        for (from, to) in [(1, 6), (8, 12)] {
            let group: Vec<f64> = refs.iter().map(|r| r.1.mean(from, to)).collect();
            let lo = group.iter().cloned().fold(f64::INFINITY, f64::min) * 1.5;
            let hi = group.iter().cloned().fold(f64::NEG_INFINITY, f64::max) / 1.5;
            let m = ours.mean(from, to);
            println!("  partials {from}-{to}: {m:.1} dB/s, sampled {group:.1?}, allowed {lo:.1} to {hi:.1}");
            if !(lo..=hi).contains(&m) {
                bad.push(format!(
                    "piano at note {key}: partials {from}-{to} decay at {m:.1} dB/s, allowed {lo:.1} to {hi:.1}"
                ));
            }
        }
    }
    assert!(bad.is_empty(), "{} problems:\n{}", bad.len(), bad.join("\n"));
}
