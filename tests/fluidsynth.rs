//! Cross-check against FluidSynth (installed by scripts/deps.sh): the same General
//! MIDI SoundFont (TimGM6mb) and a short MIDI file written here, rendered by both
//! with reverb and chorus sends at zero. Each note's onset, pitch and loudness
//! (relative to the whole file's, so the two renderers' master gains cancel) must
//! agree within the tolerances stated below.

mod common;

use common::{cents, fine_peak_freq, host, span, tables};
use jamrig::offline::Renderer;
use jamrig::rig::Set;
use midly::num::{u4, u7, u15, u28};
use midly::{Format, Header, MetaMessage, MidiMessage, Smf, Timing, TrackEvent, TrackEventKind};

const SR: u32 = 48_000;
const FONT: &str = "/usr/share/sounds/sf2/TimGM6mb.sf2";
/// Onsets agree within this (FluidSynth starts notes on 64-frame block boundaries).
const ONSET_TOLERANCE_MS: f64 = 3.0;
/// Pitches agree within this.
const PITCH_TOLERANCE_CENTS: f64 = 3.0;
/// Each note's loudness, relative to the file's mean, agrees within this.
const LOUDNESS_TOLERANCE_DB: f64 = 1.0;
/// Ticks per beat; the file plays at 120 BPM (a beat is 0.5 s).
const TPB: u32 = 480;

/// (channel, program, key, velocity, start in seconds, length in seconds, pitched)
const NOTES: &[(u8, u8, u8, u8, f64, f64, bool)] = &[
    (0, 0, 60, 100, 0.5, 0.8, true),  // piano C4
    (0, 0, 64, 60, 1.5, 0.8, true),   // piano E4, soft
    (0, 0, 79, 127, 2.5, 0.8, true),  // piano G5, loud
    (1, 40, 57, 90, 3.5, 1.0, true),  // violin A3
    (2, 73, 84, 80, 5.0, 1.0, true),  // flute C6
    (3, 33, 40, 110, 6.5, 0.8, true), // fingered bass E2
    (9, 0, 36, 120, 8.0, 0.2, false), // kick
    (9, 0, 38, 100, 8.5, 0.2, false), // snare
    (9, 0, 42, 90, 9.0, 0.2, false),  // closed hat
];

fn midi_file() -> Vec<u8> {
    let ticks = |s: f64| (s * 2.0 * TPB as f64).round() as u32;
    let mut evs: Vec<(u32, MidiMessage, u8)> = Vec::new();
    for ch in 0..16u8 {
        evs.push((0, MidiMessage::Controller { controller: u7::new(91), value: u7::new(0) }, ch));
        evs.push((0, MidiMessage::Controller { controller: u7::new(93), value: u7::new(0) }, ch));
    }
    for &(ch, prog, key, vel, start, len, _) in NOTES {
        if ch != 9 {
            evs.push((0, MidiMessage::ProgramChange { program: u7::new(prog) }, ch));
        }
        evs.push((ticks(start), MidiMessage::NoteOn { key: u7::new(key), vel: u7::new(vel) }, ch));
        evs.push((ticks(start + len), MidiMessage::NoteOff { key: u7::new(key), vel: u7::new(0) }, ch));
    }
    evs.sort_by_key(|e| e.0);
    let mut track = vec![TrackEvent {
        delta: u28::new(0),
        kind: TrackEventKind::Meta(MetaMessage::Tempo(midly::num::u24::new(500_000))),
    }];
    let mut last = 0;
    for (t, msg, ch) in evs {
        track.push(TrackEvent {
            delta: u28::new(t - last),
            kind: TrackEventKind::Midi { channel: u4::new(ch), message: msg },
        });
        last = t;
    }
    track.push(TrackEvent { delta: u28::new(TPB * 4), kind: TrackEventKind::Meta(MetaMessage::EndOfTrack) });
    let smf =
        Smf { header: Header::new(Format::SingleTrack, Timing::Metrical(u15::new(TPB as u16))), tracks: vec![track] };
    let mut out = Vec::new();
    smf.write_std(&mut out).unwrap();
    out
}

/// The General MIDI rig as a set on `FONT`.
const GM_SET: &str = r#"
soundfont("gm", "TimGM6mb.sf2");
for n in 1..=16 {
    if n == 10 { drums(10, #{ soundfont: "gm" }); } else { channel(n, sf("gm", 0, 0)); }
}
"#;

fn mono_of(stereo: &[f32]) -> Vec<f32> {
    stereo.chunks_exact(2).map(|f| 0.5 * (f[0] + f[1])).collect()
}

struct Measured {
    onset_s: f64,
    pitch_hz: Option<f64>,
    level_db: f64,
}

fn measure(x: &[f32]) -> Vec<Measured> {
    NOTES
        .iter()
        .map(|&(_, _, key, _, start, len, pitched)| {
            let from = ((start - 0.1) * SR as f64) as usize;
            let win = &x[from..((start + 0.3) * SR as f64) as usize];
            let top = common::peak(win);
            let first = win.iter().position(|v| v.abs() > 0.1 * top).unwrap_or(0);
            let onset_s = (from + first) as f64 / SR as f64;
            let hz = 440.0 * 2f64.powf((key as f64 - 69.0) / 12.0);
            let pitch_hz = pitched.then(|| {
                let s = span(x, SR, onset_s + 0.1, onset_s + len.min(0.6));
                fine_peak_freq(s, SR as f64, hz * 0.97, hz * 1.03)
            });
            let level = common::rms(span(x, SR, onset_s + 0.01, onset_s + 0.15));
            Measured { onset_s, pitch_hz, level_db: 20.0 * (level as f64).log10() }
        })
        .collect()
}

#[test]
fn jamrig_and_fluidsynth_agree_on_onsets_pitches_and_loudness() {
    assert!(
        std::path::Path::new(FONT).is_file(),
        "{FONT} is missing: scripts/deps.sh installs it (Debian's timgm6mb-soundfont)"
    );
    let dir = tempfile::tempdir().unwrap();
    let mid = dir.path().join("song.mid");
    std::fs::write(&mid, midi_file()).unwrap();

    // FluidSynth: no reverb or chorus, default interpolation, same rate.
    let fluid_wav = dir.path().join("fluid.wav");
    let status = std::process::Command::new("fluidsynth")
        .args(["-ni", "-R", "0", "-C", "0", "-g", "0.5", "-r", "48000", "-F"])
        .arg(&fluid_wav)
        .arg(FONT)
        .arg(&mid)
        .output()
        .expect("fluidsynth runs (scripts/deps.sh installs it)");
    assert!(status.status.success(), "fluidsynth failed: {}", String::from_utf8_lossy(&status.stderr));
    let mut reader = hound::WavReader::open(&fluid_wav).unwrap();
    let spec = reader.spec();
    assert_eq!(spec.sample_rate, SR);
    let fluid: Vec<f32> = match spec.sample_format {
        hound::SampleFormat::Int => reader.samples::<i32>().map(|s| s.unwrap() as f32 / 32768.0).collect(),
        hound::SampleFormat::Float => reader.samples::<f32>().map(|s| s.unwrap()).collect(),
    };
    let fluid = mono_of(&fluid);

    // jamrig: the same font through its General MIDI rig.
    let set = host()
        .eval_source("gm.rhai", GM_SET, Some(dir.path().to_path_buf()), Set::default(), false)
        .map_err(|d| d.render())
        .unwrap()
        .set;
    let (events, end) = jamrig::offline::midifile::events_from_bytes(&midi_file(), "song.mid", SR as f64).unwrap();
    let mut r = Renderer::with_tables(&set, tables(SR)).unwrap();
    r.add_events(events);
    let ours = mono_of(&r.render(end as usize + SR as usize, 512));

    let (a, b) = (measure(&ours), measure(&fluid));
    let mean = |m: &[Measured]| m.iter().map(|x| x.level_db).sum::<f64>() / m.len() as f64;
    let (ma, mb) = (mean(&a), mean(&b));
    let mut report = String::new();
    let mut bad = Vec::new();
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        let (ch, prog, key, vel, ..) = NOTES[i];
        let d_onset = (x.onset_s - y.onset_s) * 1e3;
        let d_level = (x.level_db - ma) - (y.level_db - mb);
        let d_pitch = match (x.pitch_hz, y.pitch_hz) {
            (Some(p), Some(q)) => cents(p, q),
            _ => 0.0,
        };
        report.push_str(&format!(
            "ch{} prog {prog} key {key} vel {vel}: onset {:+.2} ms, pitch {:+.2} cents, loudness {:+.2} dB\n",
            ch + 1,
            d_onset,
            d_pitch,
            d_level
        ));
        if d_onset.abs() > ONSET_TOLERANCE_MS
            || d_pitch.abs() > PITCH_TOLERANCE_CENTS
            || d_level.abs() > LOUDNESS_TOLERANCE_DB
        {
            bad.push(i);
        }
    }
    println!("{report}");
    assert!(bad.is_empty(), "notes {bad:?} disagree:\n{report}");
}
