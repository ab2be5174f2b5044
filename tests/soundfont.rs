//! SoundFonts and user samples, checked by their properties on synthetic fonts
//! written here (sines of known pitch): pitch of every zone at its root and across
//! its range, loop continuity, envelope times, velocity layers, exclusive classes,
//! determinism and block-size independence; the set functions and their located
//! errors; the loaders fuzzed with mutated files.

mod common;

use common::sf2::{self, Preset, Sample, Zone, gn};
use common::{cents, fine_peak_freq, host, left, note_off, note_on, span, tables};
use jamrig::engine::event::Event;
use jamrig::offline::Renderer;
use jamrig::rig::Set;
use std::path::{Path, PathBuf};

const SR: u32 = 48_000;
const FONT_RATE: u32 = 44_100;

/// Evaluates set text as a file in `dir` (so it may read the files there).
fn eval_in(dir: &Path, text: &str) -> Result<Set, String> {
    host()
        .eval_source("set.rhai", text, Some(dir.to_path_buf()), Set::default(), false)
        .map(|e| e.set)
        .map_err(|d| d.render())
}

/// Renders `set` with `events`, the effect sends of channels 1 and 10 at 0 (the
/// General MIDI default sends reverb, whose tail would blur what is measured) unless
/// the events set them.
fn render_set(set: &Set, seconds: f64, block: usize, events: &[Event]) -> Vec<f32> {
    let mut r = Renderer::with_tables(set, tables(SR)).expect("rig builds");
    r.add_events([common::cc(0, 0, 91, 0), common::cc(0, 9, 91, 0)]);
    r.add_events(events.iter().copied());
    r.render((seconds * SR as f64) as usize, block)
}

/// A looped sine sample (`periods` periods; the loop is the whole sample).
fn looped_sine(hz: f64, root: u8, level: f64) -> Sample {
    let data = sf2::sine(hz, FONT_RATE, 200, level);
    let len = data.len() as u32;
    Sample { data, rate: FONT_RATE, root, correction: 0, loop_points: (0, len) }
}

fn zone(keys: (u8, u8), vels: (u8, u8), sample: u16, gens: &[(u16, i16)]) -> Zone {
    let mut g = vec![(gn::SAMPLE_MODES, 1)];
    g.extend_from_slice(gens);
    Zone { keys, vels, sample, gens: g }
}

/// Writes `presets` over `samples` into a font in a fresh folder; returns the folder.
fn font_dir(presets: Vec<Preset>, samples: &[Sample]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("test.sf2"), sf2::write(&presets, samples)).unwrap();
    dir
}

fn one_preset(zones: Vec<Zone>) -> Vec<Preset> {
    vec![Preset { name: "Test Lead".into(), bank: 0, program: 0, zones }]
}

const SET: &str = r#"soundfont("t", "test.sf2"); channel(1, sf("t", "Test Lead"));"#;

#[test]
fn every_zone_sounds_at_its_pitch_at_the_root_and_across_its_range() {
    // Zone A: keys 0..59, a 440 Hz sine recorded at A4 (69). Zone B: keys 60..127,
    // a 1000 Hz sine recorded at key 72, tuned +30 cents by fine tune, and a sample
    // pitch correction of -20 cents (applied on playback, as FluidSynth does).
    let samples = [looped_sine(440.0, 69, 0.5), Sample { correction: -20, ..looped_sine(1000.0, 72, 0.5) }];
    let dir = font_dir(
        one_preset(vec![zone((0, 59), (0, 127), 0, &[]), zone((60, 127), (0, 127), 1, &[(gn::FINE_TUNE, 30)])]),
        &samples,
    );
    let set = eval_in(dir.path(), SET).unwrap();
    let a = sf2::sine_hz(440.0, FONT_RATE, 200);
    let b = sf2::sine_hz(1000.0, FONT_RATE, 200);
    for (key, expect) in [
        (45u8, a * 2f64.powf(-24.0 / 12.0)),
        (57, a * 0.5),
        (59, a * 2f64.powf(-10.0 / 12.0)),
        (60, b * 2f64.powf((-12.0 * 100.0 - 20.0 + 30.0) / 1200.0)),
        (72, b * 2f64.powf(10.0 / 1200.0)),
        (96, b * 2f64.powf((2400.0 + 10.0) / 1200.0)),
    ] {
        let out = render_set(&set, 0.6, 512, &[note_on(0, 0, key, 100)]);
        let x = left(&out);
        let f = fine_peak_freq(span(&x, SR, 0.1, 0.6), SR as f64, expect * 0.9, expect * 1.1);
        assert!(cents(f, expect).abs() < 1.0, "key {key}: {f:.3} Hz, expected {expect:.3} Hz");
    }
}

#[test]
fn the_loop_point_does_not_click() {
    let dir = font_dir(one_preset(vec![zone((0, 127), (0, 127), 0, &[])]), &[looped_sine(440.0, 69, 0.3)]);
    let set = eval_in(dir.path(), SET).unwrap();
    for key in [57u8, 69, 76, 81] {
        let out = render_set(&set, 1.5, 512, &[note_on(0, 0, key, 127)]);
        let x = left(&out);
        let hz = sf2::sine_hz(440.0, FONT_RATE, 200) * 2f64.powf((key as f64 - 69.0) / 12.0);
        // The sample is 0.45 s long, so this passes its loop point twice or more.
        let (ratio, at) = common::click_ratio(span(&x, SR, 0.05, 1.5), SR, hz, 0.01);
        assert!(ratio < 1.05, "key {key}: a step {ratio:.3} times a sine's largest at frame {at}");
    }
}

/// Level in dB of 10 ms windows of `x` from `t0`.
fn level_db(x: &[f32], t: f64) -> f32 {
    common::db(common::rms(span(x, SR, t, t + 0.01)) * std::f32::consts::SQRT_2)
}

#[test]
fn envelope_times_follow_the_generators() {
    // Attack 0.5 s (-1200 timecents), hold 0.25 s (-2400), decay 1 s for the full
    // 96 dB (0 tc) down to a sustain of 300 cB (to -28.8 dB), release 0.5 s for 96 dB.
    let gens = [
        (gn::ATTACK_VOL, -1200),
        (gn::HOLD_VOL, -2400),
        (gn::DECAY_VOL, 0),
        (gn::SUSTAIN_VOL, 300),
        (gn::RELEASE_VOL, -1200),
    ];
    let dir = font_dir(one_preset(vec![zone((0, 127), (0, 127), 0, &gens)]), &[looped_sine(440.0, 69, 0.5)]);
    let set = eval_in(dir.path(), SET).unwrap();
    let off = 2.5;
    let out = render_set(&set, 3.2, 512, &[note_on(0, 0, 69, 127), note_off((off * SR as f64) as u64, 0, 69)]);
    let x = left(&out);
    let peak = level_db(&x, 0.6);
    // Attack: linear in amplitude, half way (-6 dB) at 0.25 s, full by 0.5 s.
    assert!((level_db(&x, 0.245) - (peak - 6.02)).abs() < 0.5, "attack half way");
    assert!((level_db(&x, 0.5) - peak).abs() < 0.3, "attack done at 0.5 s");
    // Hold: full until 0.75 s.
    assert!((level_db(&x, 0.73) - peak).abs() < 0.3, "held");
    // Decay: 96 dB per second, so 19.2 dB after 0.2 s more.
    let fall = level_db(&x, 0.75) - level_db(&x, 0.95);
    assert!((fall - 19.2).abs() < 0.6, "decay fell {fall:.2} dB in 0.2 s");
    // Sustain: 960 cB * 0.3 below the peak.
    let sustain = peak - level_db(&x, 2.0);
    assert!((sustain - 28.8).abs() < 0.6, "sustain {sustain:.2} dB below the peak");
    // Release: 96 dB per 0.5 s from the note-off.
    let rel = level_db(&x, off + 0.01) - level_db(&x, off + 0.11);
    assert!((rel - 19.2).abs() < 0.8, "release fell {rel:.2} dB in 0.1 s");
}

#[test]
fn velocity_layers_switch_at_their_boundary() {
    let samples = [looped_sine(440.0, 69, 0.5), looped_sine(660.0, 69, 0.5)];
    let dir = font_dir(one_preset(vec![zone((0, 127), (0, 63), 0, &[]), zone((0, 127), (64, 127), 1, &[])]), &samples);
    let set = eval_in(dir.path(), SET).unwrap();
    for (vel, hz) in [(1u8, 440.0), (63, 440.0), (64, 660.0), (127, 660.0)] {
        let out = render_set(&set, 0.4, 512, &[note_on(0, 0, 69, vel)]);
        let x = left(&out);
        let f = fine_peak_freq(span(&x, SR, 0.1, 0.4), SR as f64, 300.0, 900.0);
        assert!(cents(f, sf2::sine_hz(hz, FONT_RATE, 200)).abs() < 2.0, "velocity {vel}: {f:.1} Hz");
    }
    // Velocity follows the default modulator: 40 log10(v / 127) dB.
    let lvl = |vel: u8| {
        let x = left(&render_set(&set, 0.3, 512, &[note_on(0, 0, 69, vel)]));
        level_db(&x, 0.2)
    };
    let d = lvl(127) - lvl(90);
    assert!((d - 40.0 * (127f32 / 90.0).log10()).abs() < 0.3, "velocity 90 is {d:.2} dB below 127");
}

#[test]
fn exclusive_class_cuts_the_open_hat() {
    // Open hat (key 46, 2 kHz looped) and closed hat (key 42, 500 Hz) in class 1.
    let samples = [looped_sine(2000.0, 46, 0.5), looped_sine(500.0, 42, 0.5)];
    let kit = vec![Preset {
        name: "Kit".into(),
        bank: 128,
        program: 0,
        zones: vec![
            zone((46, 46), (0, 127), 0, &[(gn::EXCLUSIVE_CLASS, 1)]),
            zone((42, 42), (0, 127), 1, &[(gn::EXCLUSIVE_CLASS, 1)]),
        ],
    }];
    let dir = font_dir(kit, &samples);
    let set = eval_in(dir.path(), r#"soundfont("t", "test.sf2"); drums(10, #{ soundfont: "t" });"#).unwrap();
    let hit = (0.3 * SR as f64) as u64;
    let out = render_set(&set, 0.6, 512, &[note_on(0, 9, 46, 120), note_on(hit, 9, 42, 120)]);
    let x = left(&out);
    let band = |a: f64, b: f64| {
        let s = span(&x, SR, a, b);
        common::dtft_mag(s, SR as f64, sf2::sine_hz(2000.0, FONT_RATE, 200)) / s.len() as f64
    };
    let before = band(0.2, 0.3);
    let after = band(0.33, 0.43);
    assert!(before > 0.01, "the open hat sounds");
    assert!(after < before * 0.001, "the open hat is cut: {:.1} dB", 20.0 * (after / before).log10());
    // The closed hat plays.
    let s = span(&x, SR, 0.33, 0.43);
    assert!(common::dtft_mag(s, SR as f64, sf2::sine_hz(500.0, FONT_RATE, 200)) / s.len() as f64 > 0.01);
}

#[test]
fn sample_voices_are_deterministic_and_independent_of_block_size() {
    let gens = [(gn::ATTACK_VOL, -3000), (gn::RELEASE_VOL, -2000), (gn::FILTER_FC, 9000), (gn::PAN, -200)];
    let dir = font_dir(one_preset(vec![zone((0, 127), (0, 127), 0, &gens)]), &[looped_sine(440.0, 69, 0.5)]);
    let set = eval_in(
        dir.path(),
        r#"soundfont("t", "test.sf2"); channel(1, #{ soundfont: "t", preset: "Test Lead", chorus: 0.3 });"#,
    )
    .unwrap();
    let mut evs = Vec::new();
    for (i, k) in [60u8, 64, 67, 72, 76].iter().enumerate() {
        let at = (i as u64) * 3001;
        evs.push(note_on(at, 0, *k, 60 + 10 * i as u8));
        evs.push(note_off(at + 20_000, 0, *k));
    }
    evs.push(common::cc(5000, 0, 91, 100));
    evs.push(common::pitch_bend(9000, 0, 3000));
    let a = render_set(&set, 1.0, 512, &evs);
    let b = render_set(&set, 1.0, 512, &evs);
    let c = render_set(&set, 1.0, 37, &evs);
    let d = render_set(&set, 1.0, 64, &evs);
    assert!(common::peak(&a) > 0.01);
    assert_eq!(a, b, "the same render twice differs");
    assert_eq!(a, c, "37-frame blocks differ from 512");
    assert_eq!(a, d, "64-frame blocks differ from 512");
}

#[test]
fn a_reload_that_keeps_the_font_shares_the_bank() {
    let dir = font_dir(one_preset(vec![zone((0, 127), (0, 127), 0, &[])]), &[looped_sine(440.0, 69, 0.5)]);
    let a = eval_in(dir.path(), SET).unwrap();
    let b = eval_in(dir.path(), SET).unwrap();
    assert!(std::sync::Arc::ptr_eq(&a.fonts["t"].bank.0, &b.fonts["t"].bank.0), "the font was read again");
    // A changed file is read again.
    std::thread::sleep(std::time::Duration::from_millis(20));
    let font = sf2::write(&one_preset(vec![zone((0, 127), (0, 127), 0, &[])]), &[looped_sine(220.0, 69, 0.5)]);
    std::fs::write(dir.path().join("test.sf2"), [font.as_slice(), &[0, 0]].concat()).unwrap();
    let c = eval_in(dir.path(), SET).unwrap();
    assert!(!std::sync::Arc::ptr_eq(&a.fonts["t"].bank.0, &c.fonts["t"].bank.0));
}

fn err_in(dir: &Path, text: &str) -> String {
    eval_in(dir, text).expect_err("the set should fail")
}

#[test]
fn bad_fonts_and_names_are_located_errors_with_the_nearest_names() {
    let dir = font_dir(one_preset(vec![zone((0, 127), (0, 127), 0, &[])]), &[looped_sine(440.0, 69, 0.5)]);
    std::fs::write(dir.path().join("junk.sf2"), b"RIFF\x10\0\0\0sfbkLIST").unwrap();
    let e = err_in(dir.path(), "soundfont(\"t\", \"missing.sf2\");");
    assert!(e.contains("set.rhai:1:") && e.contains("no such file") && e.contains('^'), "{e}");
    let e = err_in(dir.path(), "soundfont(\"t\", \"junk.sf2\");");
    assert!(e.contains("set.rhai:1:") && e.contains("truncated or damaged"), "{e}");
    let e = err_in(dir.path(), "soundfont(\"t\", \"test.sf2\");\nchannel(1, sf(\"t\", \"Test Leed\"));");
    assert!(e.contains("set.rhai:2:") && e.contains("no preset \"Test Leed\"") && e.contains("Test Lead"), "{e}");
    let e = err_in(dir.path(), "soundfont(\"t\", \"test.sf2\");\nchannel(1, sf(\"u\", \"Test Lead\"));");
    assert!(e.contains("set.rhai:2:") && e.contains("no SoundFont is registered as \"u\""), "{e}");
    let e = err_in(dir.path(), "soundfont(\"t\", \"test.sf2\");\nchannel(1, sf(\"t\", 0, 5));");
    assert!(e.contains("no preset at bank 0 program 5") && e.contains("0:0 Test Lead"), "{e}");
    // Outside the set's folder.
    let e = err_in(dir.path(), "soundfont(\"t\", \"/etc/hostname\");");
    assert!(e.contains("outside the set's folder"), "{e}");
    let e = err_in(dir.path(), "soundfont(\"t\", \"../x.sf2\");");
    assert!(e.contains("set.rhai:1:"), "{e}");
}

/// A tiny deterministic generator for the fuzzing.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

fn mutate(base: &[u8], rng: &mut Lcg) -> Vec<u8> {
    let mut b = base.to_vec();
    match rng.next() % 4 {
        0 => b.truncate(rng.next() as usize % (base.len() + 1)),
        1 => {
            for _ in 0..1 + rng.next() % 16 {
                let i = rng.next() as usize % b.len().max(1);
                if let Some(x) = b.get_mut(i) {
                    *x = rng.next() as u8;
                }
            }
        }
        2 => {
            // A size or index field set to something large.
            let i = rng.next() as usize % b.len().max(1);
            for k in 0..4 {
                if let Some(x) = b.get_mut(i + k) {
                    *x = 0xFF;
                }
            }
        }
        _ => {
            let i = rng.next() as usize % b.len().max(1);
            let n = rng.next() as usize % 64;
            b.splice(i..i, std::iter::repeat_n(rng.next() as u8, n));
        }
    }
    b
}

#[test]
fn mutated_fonts_and_samples_never_panic() {
    let gens = [(gn::EXCLUSIVE_CLASS, 1), (gn::ROOT_KEY, 60), (gn::ATTENUATION, 100)];
    let font = sf2::write(
        &one_preset(vec![zone((0, 60), (0, 127), 0, &gens), zone((61, 127), (0, 127), 1, &[])]),
        &[looped_sine(440.0, 69, 0.5), looped_sine(880.0, 69, 0.5)],
    );
    let mut rng = Lcg(7);
    let mut ok = 0;
    for _ in 0..3000 {
        let bytes = mutate(&font, &mut rng);
        if let Ok(bank) = jamrig::samples::soundfont::read("fuzz", &bytes) {
            ok += 1;
            // Whatever loaded must also play.
            for p in &bank.presets {
                for r in &p.regions {
                    assert!(r.start <= r.end && r.end as usize <= bank.pcm[0].frames.len());
                    assert!(r.loop_start >= r.start && r.loop_end <= r.end);
                }
            }
        }
    }
    assert!(ok > 100, "most light damage still loads ({ok})");
    // Samples: a WAV mutated the same ways.
    let dir = tempfile::tempdir().unwrap();
    let wav = dir.path().join("s.wav");
    sf2::wav(&wav, &sf2::sine(440.0, 22_050, 50, 0.5), 22_050);
    let wav = std::fs::read(wav).unwrap();
    for _ in 0..1500 {
        let bytes = mutate(&wav, &mut rng);
        let _ = jamrig::samples::decode::decode(bytes, Some("wav"));
    }
}

/// Loading from the file reads the sample chunk straight into the bank's frames
/// (the file is never held whole): it must give the same bank as reading the
/// file's bytes, for intact fonts and damaged ones alike, and the same errors.
#[test]
fn a_font_loaded_from_its_file_equals_the_font_read_from_its_bytes() {
    let font = sf2::write(
        &one_preset(vec![zone((0, 60), (0, 127), 0, &[(gn::ROOT_KEY, 60)]), zone((61, 127), (0, 127), 1, &[])]),
        &[looped_sine(440.0, 69, 0.5), looped_sine(880.0, 69, 0.5)],
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f.sf2");
    let mut rng = Lcg(11);
    let mut same = 0;
    for i in 0..400 {
        let bytes = if i == 0 { font.clone() } else { mutate(&font, &mut rng) };
        std::fs::write(&path, &bytes).unwrap();
        let shown = path.display().to_string();
        let from_bytes = jamrig::samples::soundfont::read(&shown, &bytes).map_err(|e| format!("{shown} {e}"));
        let from_file = jamrig::samples::soundfont::load(&path);
        match (from_bytes, from_file) {
            (Ok(a), Ok(b)) => {
                assert_eq!(a.presets, b.presets, "case {i}");
                assert_eq!(a.pcm.len(), b.pcm.len());
                for (x, y) in a.pcm.iter().zip(&b.pcm) {
                    assert_eq!(x.frames, y.frames, "case {i}");
                }
                same += 1;
            }
            (Err(a), Err(b)) => assert_eq!(a, b, "case {i}"),
            (a, b) => panic!("case {i}: from the bytes {:?}, from the file {:?}", a.err(), b.err()),
        }
    }
    assert!(same > 20, "most light damage still loads ({same})");
}

#[test]
fn a_font_that_plays_is_rendered_through_the_engine_with_damage() {
    // Damaged fonts that still load also play without faults.
    let font = sf2::write(&one_preset(vec![zone((0, 127), (0, 127), 0, &[])]), &[looped_sine(440.0, 69, 0.5)]);
    let mut rng = Lcg(99);
    let dir = tempfile::tempdir().unwrap();
    let mut played = 0;
    for _ in 0..40 {
        let bytes = mutate(&font, &mut rng);
        std::fs::write(dir.path().join("test.sf2"), &bytes).unwrap();
        let Ok(set) = eval_in(dir.path(), r#"soundfont("t", "test.sf2"); channel(1, sf("t", 0, 0));"#) else {
            continue;
        };
        let out = render_set(&set, 0.2, 512, &[note_on(0, 0, 30, 127), note_on(10, 0, 100, 127)]);
        assert!(common::all_finite(&out));
        played += 1;
    }
    assert!(played > 5, "{played}");
}

fn sample_dir() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let bd = dir.path().join("bd");
    std::fs::create_dir(&bd).unwrap();
    for (i, hz) in [100.0, 150.0, 200.0, 300.0].iter().enumerate() {
        sf2::wav(&bd.join(format!("{i:02}.wav")), &sf2::sine(*hz, 22_050, 40, 0.5), 22_050);
    }
    sf2::wav(&dir.path().join("tone.wav"), &sf2::sine(440.0, 44_100, 400, 0.5), 44_100);
    (dir, bd)
}

#[test]
fn user_samples_play_as_drums_numbered_banks_and_instruments() {
    let (dir, _) = sample_dir();
    let set = eval_in(
        dir.path(),
        r#"
        samples("bd", "bd");
        sample("beep", "tone.wav", #{ note: 37 });
        sample_instrument("tone", "tone.wav", #{ root: "A4", lo: "C2", hi: "C7", loop_start: 0, loop_end: 40000 });
        drums(10);
        channel(1, "tone");
        pattern("d", 10, 4.0, [[0.0, "bd:3", 100], [1.0, "bd", 100], [2.0, "beep", 100], [3.0, "kick", 100]]);
        "#,
    )
    .unwrap();
    let lib_note = set.samples.iter().find(|s| s.name == "bd:3").map(|s| s.use_).unwrap();
    let jamrig::rig::set::SampleUse::Drum { note } = lib_note else { panic!() };
    // The drum note of bd:3 plays the fourth file (300 Hz, resampled from 22.05 kHz).
    let out = render_set(&set, 0.3, 512, &[note_on(0, 9, note, 127)]);
    let x = left(&out);
    let f = fine_peak_freq(span(&x, SR, 0.01, 0.1), SR as f64, 200.0, 400.0);
    assert!(cents(f, sf2::sine_hz(300.0, 22_050, 40)).abs() < 3.0, "bd:3 at {f:.1} Hz");
    // The instrument: A4 is the file's pitch, A5 an octave up; it loops past its end.
    for (key, mul) in [(69u8, 1.0), (81, 2.0), (57, 0.5)] {
        let out = render_set(&set, 1.5, 512, &[note_on(0, 0, key, 100)]);
        let x = left(&out);
        let expect = sf2::sine_hz(440.0, 44_100, 400) * mul;
        let f = fine_peak_freq(span(&x, SR, 1.1, 1.5), SR as f64, expect * 0.9, expect * 1.1);
        assert!(cents(f, expect).abs() < 2.0, "key {key}: {f:.2} Hz, expected {expect:.2}");
    }
    // The pattern's hits all sound.
    let mut r = Renderer::with_tables(&set, tables(SR)).unwrap();
    let x = left(&r.render(SR as usize * 2, 512));
    let beat = SR as f64 / 2.0;
    for b in 0..4 {
        let s = span(&x, SR, b as f64 * 0.5, b as f64 * 0.5 + 0.1);
        assert!(common::peak(s) > 0.01, "hit {b} sounds");
        let _ = beat;
    }
}

#[test]
fn sample_paths_outside_the_set_are_refused() {
    let (dir, _) = sample_dir();
    let e = err_in(dir.path(), "sample(\"x\", \"/etc/passwd\");");
    assert!(e.contains("outside the set's folder") && e.contains("--samples"), "{e}");
    let e = err_in(dir.path(), "sample(\"x\", \"nothing.wav\");");
    assert!(e.contains("set.rhai:1:") && e.contains("no such file"), "{e}");
    std::fs::write(dir.path().join("bad.wav"), b"RIFF....WAVEjunk").unwrap();
    let e = err_in(dir.path(), "sample(\"x\", \"bad.wav\");");
    assert!(e.contains("set.rhai:1:") && e.contains("bad.wav"), "{e}");
}

#[test]
fn a_replaced_sample_is_heard_on_the_next_note_and_sounding_notes_keep_the_old() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tone.wav");
    sf2::wav(&file, &sf2::sine(440.0, 48_000, 2000, 0.4), 48_000);
    let len = sf2::sine(440.0, 48_000, 2000, 0.4).len();
    let text = format!(
        r#"sample_instrument("tone", "tone.wav", #{{ root: "A4", loop_start: 0, loop_end: {len} }}); channel(1, "tone");"#
    );
    let a = eval_in(dir.path(), &text).unwrap();
    let mut r = Renderer::with_tables(&a, tables(SR)).unwrap();
    r.add_events([common::cc(0, 0, 91, 0), note_on(0, 0, 69, 100)]);
    let first = left(&r.render(SR as usize / 2, 512));
    // Replace the file (a different pitch) and reload while the note sounds.
    std::thread::sleep(std::time::Duration::from_millis(20));
    sf2::wav(&file, &sf2::sine(660.0, 48_000, 3000, 0.4), 48_000);
    let len_b = sf2::sine(660.0, 48_000, 3000, 0.4).len();
    let b = eval_in(dir.path(), &text.replace(&len.to_string(), &len_b.to_string())).unwrap();
    r.publish(&b).unwrap();
    let f0 = (SR / 2) as u64;
    r.add_events([note_on(f0 + SR as u64 / 2, 0, 81, 100)]);
    let rest = left(&r.render(SR as usize * 3 / 2, 512));
    let old_hz = sf2::sine_hz(440.0, 48_000, 2000);
    let new_hz = sf2::sine_hz(660.0, 48_000, 3000) * 2.0;
    let f = fine_peak_freq(span(&first, SR, 0.1, 0.5), SR as f64, 300.0, 600.0);
    assert!(cents(f, old_hz).abs() < 2.0, "{f}");
    // After the reload, before the new note: the sounding note is still the old sample.
    let f = fine_peak_freq(span(&rest, SR, 0.05, 0.45), SR as f64, 300.0, 1000.0);
    assert!(cents(f, old_hz).abs() < 2.0, "the sounding note changed to {f} Hz");
    // The new note plays the new sample (an octave above its root), the old note goes on.
    let s = span(&rest, SR, 0.6, 1.4);
    let f = fine_peak_freq(s, SR as f64, 1000.0, 1600.0);
    assert!(cents(f, new_hz).abs() < 2.0, "the new note is at {f} Hz, expected {new_hz}");
    let before = span(&rest, SR, 0.05, 0.45);
    let (m_before, m_after) = (
        common::dtft_mag(before, SR as f64, old_hz) / before.len() as f64,
        common::dtft_mag(s, SR as f64, old_hz) / s.len() as f64,
    );
    assert!((m_after / m_before - 1.0).abs() < 0.1, "the old note changed level: {m_before} then {m_after}");
}

// ---- The General MIDI rig of `jamrig render --midi` with no set ----

/// A font like a General MIDI one: piano 0:0 (440 Hz), violin 0:40 (660 Hz), a
/// variation of the violin at bank 8 (550 Hz), and a kit at 128:0 whose key 36 is
/// a 200 Hz sine.
fn gm_like_font(dir: &Path, file: &str) -> PathBuf {
    let samples = [
        looped_sine(440.0, 69, 0.5),
        looped_sine(660.0, 69, 0.5),
        looped_sine(550.0, 69, 0.5),
        looped_sine(200.0, 36, 0.5),
    ];
    let all = |s: u16| vec![zone((0, 127), (0, 127), s, &[])];
    let presets = vec![
        Preset { name: "Piano".into(), bank: 0, program: 0, zones: all(0) },
        Preset { name: "Violin".into(), bank: 0, program: 40, zones: all(1) },
        Preset { name: "Alt Violin".into(), bank: 8, program: 40, zones: all(2) },
        Preset { name: "Kit".into(), bank: 128, program: 0, zones: vec![zone((36, 36), (0, 127), 3, &[])] },
    ];
    let path = dir.join(file);
    std::fs::write(&path, sf2::write(&presets, &samples)).unwrap();
    path
}

fn program(frame: u64, channel: u8, program: u8) -> Event {
    Event::new(frame, jamrig::engine::event::EventKind::Program { channel, program })
}

#[test]
fn without_a_set_a_midi_file_plays_the_fonts_presets_and_kit() {
    use jamrig::offline::job::{FontChoice, RigChoice};
    let dir = tempfile::tempdir().unwrap();
    // A file name that needs quoting in the rig's script.
    let font = gm_like_font(dir.path(), "my \"gm\" font.sf2");
    let mid = dir.path().join("song.mid");
    let rig = RigChoice::for_job(None, Some(&mid), &FontChoice::Named(font.clone()));
    assert_eq!(rig, RigChoice::GeneralMidiFont { font: font.clone(), from: "--soundfont".into() });
    assert!(rig.line().unwrap().contains("my \"gm\" font.sf2"), "{:?}", rig.line());
    let set = rig.evaluate(host()).map_err(|d| d.render()).unwrap().set;
    assert_eq!(set.channels.len(), 16);
    assert!(set.patterns.is_empty(), "nothing plays but the file");
    let pitch_of = |events: &[Event], channel: u8| {
        let mut all: Vec<Event> = (0..16).map(|c| common::cc(0, c, 91, 0)).collect();
        all.extend((0..16).map(|c| common::cc(0, c, 93, 0)));
        all.extend_from_slice(events);
        let x = left(&render_set(&set, 0.5, 512, &all));
        assert!(common::peak(span(&x, SR, 0.1, 0.5)) > 0.01, "channel {} sounds", channel + 1);
        fine_peak_freq(span(&x, SR, 0.1, 0.5), SR as f64, 150.0, 900.0)
    };
    let hz = |f: f64| sf2::sine_hz(f, FONT_RATE, 200);
    // No program change: program 0 on every melodic channel.
    let f = pitch_of(&[note_on(10, 0, 69, 100)], 0);
    assert!(cents(f, hz(440.0)).abs() < 3.0, "piano: {f:.1} Hz");
    // A program change picks the font's preset.
    let f = pitch_of(&[program(0, 3, 40), note_on(10, 3, 69, 100)], 3);
    assert!(cents(f, hz(660.0)).abs() < 3.0, "violin: {f:.1} Hz");
    // A bank select (CC0) and a program change pick a variation.
    let f = pitch_of(&[common::cc(0, 5, 0, 8), program(1, 5, 40), note_on(10, 5, 69, 100)], 5);
    assert!(cents(f, hz(550.0)).abs() < 3.0, "bank 8 violin: {f:.1} Hz");
    // Channel 10 plays the font's kit (bank 128).
    let f = pitch_of(&[note_on(10, 9, 36, 100)], 9);
    assert!(cents(f, hz(200.0)).abs() < 3.0, "kit: {f:.1} Hz");
}

/// The General MIDI rig on a font starts without evaluating the stdlib, and its
/// channels and font are those of the rig evaluated with it; a font without a kit
/// still gets the stdlib's synthesized kit on channel 10.
#[test]
fn the_general_midi_font_rig_starts_without_the_stdlib_and_plays_the_same() {
    use jamrig::offline::job::{FontChoice, RigChoice};
    use jamrig::rig::set::ChannelKind;
    let dir = tempfile::tempdir().unwrap();
    let font = gm_like_font(dir.path(), "gm.sf2");
    let mid = dir.path().join("song.mid");
    let rig = RigChoice::for_job(None, Some(&mid), &FontChoice::Named(font));
    let bare = rig.host().map_err(|d| d.render()).unwrap();
    assert!(!bare.has_stdlib(), "the rig on a font with presets and a kit starts without the stdlib");
    let lean = rig.evaluate(&bare).map_err(|d| d.render()).unwrap().set;
    let full = rig.evaluate(host()).map_err(|d| d.render()).unwrap().set;
    assert_eq!(lean.channels, full.channels);
    let paths = |s: &Set| s.fonts.iter().map(|(n, f)| (n.clone(), f.path.clone())).collect::<Vec<_>>();
    assert_eq!(paths(&lean), paths(&full));
    // The same sound: the same rig renders the same samples.
    let events = [note_on(0, 0, 69, 100), note_on(0, 9, 36, 100)];
    assert_eq!(render_set(&lean, 0.2, 512, &events), render_set(&full, 0.2, 512, &events));

    let samples = [looped_sine(440.0, 69, 0.5)];
    let no_kit = font_dir(one_preset(vec![zone((0, 127), (0, 127), 0, &[])]), &samples);
    let rig = RigChoice::for_job(None, Some(&mid), &FontChoice::Named(no_kit.path().join("test.sf2")));
    let set = rig.evaluate(&rig.host().unwrap()).map_err(|d| d.render()).unwrap().set;
    assert_eq!(set.channels[&10].kind, ChannelKind::Drums, "channel 10 plays the synthesized kit");
}

#[test]
fn the_general_midi_font_is_searched_in_the_environment_config_and_folders() {
    use jamrig::samples::{FoundFont, search_gm_font};
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let make = |p: &Path| {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, b"x").unwrap();
        p.to_path_buf()
    };
    let env_font = make(&d.join("env/mine.sf2"));
    let conf_font = make(&d.join("conf/other.sf2"));
    let conf = d.join("config/jamrig/soundfont");
    std::fs::create_dir_all(conf.parent().unwrap()).unwrap();
    std::fs::write(&conf, format!("{}\n", conf_font.display())).unwrap();
    let (a, b, empty) = (d.join("a"), d.join("b"), d.join("empty"));
    std::fs::create_dir_all(&empty).unwrap();
    let any_b = make(&b.join("zzz.SF2"));
    let preferred_b = make(&b.join("TimGM6mb.sf2"));
    make(&b.join("aaa.sf2"));
    let folders = [a.clone(), empty.clone(), b.clone()];
    let found = |env: Option<&Path>, conf: Option<&Path>, folders: &[PathBuf]| {
        search_gm_font(env.map(Path::to_path_buf), conf.map(Path::to_path_buf), folders)
    };
    // The environment first, then the config file, then the folders in order.
    assert_eq!(
        found(Some(&env_font), Some(&conf), &folders),
        Some(FoundFont { path: env_font.clone(), from: "$JAMRIG_SOUNDFONT".into() })
    );
    assert_eq!(
        found(Some(&d.join("missing.sf2")), Some(&conf), &folders),
        Some(FoundFont { path: conf_font.clone(), from: conf.display().to_string() })
    );
    assert_eq!(
        found(None, Some(&d.join("no-config")), &folders),
        Some(FoundFont { path: preferred_b.clone(), from: b.display().to_string() })
    );
    // Without a preferred name, the first SoundFont of the folder by name.
    std::fs::remove_file(&preferred_b).unwrap();
    assert_eq!(found(None, None, &folders).unwrap().path, b.join("aaa.sf2"));
    std::fs::remove_file(b.join("aaa.sf2")).unwrap();
    assert_eq!(found(None, None, &folders).unwrap().path, any_b);
    // Nothing anywhere: jamrig's own instruments play.
    assert_eq!(found(None, None, &[a, empty]), None);
    use jamrig::offline::job::{FontChoice, RigChoice};
    let mid = d.join("song.mid");
    assert_eq!(
        RigChoice::for_job(None, Some(&mid), &FontChoice::Synthesized),
        RigChoice::GeneralMidi { searched: false }
    );
    assert!(RigChoice::GeneralMidi { searched: true }.line().unwrap().contains("--soundfont"));
}

#[test]
fn folders_named_with_samples_or_in_the_config_may_be_read() {
    let (lib, _) = sample_dir();
    let sets = tempfile::tempdir().unwrap();
    let set = sets.path().join("set.rhai");
    let tone = lib.path().join("tone.wav");
    std::fs::write(
        &set,
        format!("sample(\"x\", \"{}\");\nsamples(\"b\", \"{}\");\n", tone.display(), lib.path().join("bd").display()),
    )
    .unwrap();
    let home = tempfile::tempdir().unwrap();
    let check = |extra: &[&str], config: Option<&str>| {
        let conf = home.path().join("jamrig/sample-folders");
        let _ = std::fs::remove_file(&conf);
        if let Some(text) = config {
            std::fs::create_dir_all(conf.parent().unwrap()).unwrap();
            std::fs::write(&conf, text).unwrap();
        }
        std::process::Command::new(env!("CARGO_BIN_EXE_jamrig"))
            .arg("check")
            .arg(&set)
            .args(extra)
            .env("XDG_CONFIG_HOME", home.path())
            .env_remove("JAMRIG_SAMPLE_PATH")
            .output()
            .unwrap()
    };
    // Outside the set's folder: refused, saying how to allow it.
    let o = check(&[], None);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && e.contains("set.rhai:1:") && e.contains("--samples DIR"), "{e}");
    // Named on the command line.
    let o = check(&["--samples", lib.path().to_str().unwrap()], None);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // Listed in the config file (comments and blank lines aside).
    let o = check(&[], Some(&format!("# sample libraries\n\n{}\n", lib.path().display())));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // A folder named does not open its parent.
    let o = check(&["--samples", lib.path().join("bd").to_str().unwrap()], None);
    assert!(!o.status.success());
}

/// A font of one looped A4 sine with a quick release, and the set that plays it (the
/// folder must outlive the set's use).
fn sine_font_set() -> (tempfile::TempDir, Set) {
    let dir = font_dir(
        one_preset(vec![zone((0, 127), (0, 127), 0, &[(gn::RELEASE_VOL, -6000)])]),
        &[looped_sine(440.0, 69, 0.5)],
    );
    let set = eval_in(dir.path(), SET).unwrap();
    (dir, set)
}

/// Peak-to-peak pitch in cents about `a4` over `count` 25 ms windows of `x`, every
/// `step_s` seconds from `from_s`.
fn pitch_swing(x: &[f32], a4: f64, from_s: f64, step_s: f64, count: usize) -> f64 {
    let pitches: Vec<f64> = (0..count)
        .map(|k| {
            let t = from_s + k as f64 * step_s;
            cents(common::phase_freq(span(x, SR, t, t + 0.025), SR, a4, 600), a4)
        })
        .collect();
    pitches.iter().cloned().fold(f64::MIN, f64::max) - pitches.iter().cloned().fold(f64::MAX, f64::min)
}

#[test]
fn sample_voices_follow_the_pedal_the_rpn_bend_range_and_the_mod_wheel() {
    let (_dir, set) = sine_font_set();
    let a4 = sf2::sine_hz(440.0, FONT_RATE, 200);
    let off = (0.2 * SR as f64) as u64;
    // CC64: a note released under the pedal holds until the pedal lifts.
    let x = left(&render_set(
        &set,
        0.8,
        512,
        &[common::cc(0, 0, 64, 127), note_on(0, 0, 69, 100), note_off(off, 0, 69), common::cc(2 * off, 0, 64, 0)],
    ));
    assert!(common::peak(span(&x, SR, 0.3, 0.38)) > 0.05, "held by the pedal");
    assert!(common::peak(span(&x, SR, 0.6, 0.8)) < 1e-3, "released with the pedal");
    // RPN 0 sets the bend range: 12 semitones, full bend up is an octave.
    let x = left(&render_set(
        &set,
        0.6,
        512,
        &[
            common::cc(0, 0, 101, 0),
            common::cc(0, 0, 100, 0),
            common::cc(0, 0, 6, 12),
            common::cc(0, 0, 38, 0),
            common::pitch_bend(0, 0, 8191),
            note_on(0, 0, 69, 100),
        ],
    ));
    let f = fine_peak_freq(span(&x, SR, 0.2, 0.6), SR as f64, 600.0, 1100.0);
    assert!(cents(f, 2.0 * a4).abs() < 5.0, "an octave up: {f:.1} Hz");
    // CC1 adds vibrato: the pitch swings around the note.
    let swing = |wheel: u8| {
        let x = left(&render_set(&set, 1.2, 512, &[common::cc(0, 0, 1, wheel), note_on(0, 0, 69, 100)]));
        pitch_swing(&x, a4, 0.4, 0.04, 16)
    };
    let (still, wobbly) = (swing(0), swing(127));
    assert!(still < 3.0, "no vibrato without the wheel: {still:.1} cents");
    assert!(wobbly > 40.0, "vibrato with the wheel: {wobbly:.1} cents peak to peak");
}

/// The vibrato LFO does not run while nothing reaches it; a mod wheel raised in the
/// middle of a held note brings the vibrato in (the LFO catches up on the frames it
/// missed), the same whatever the block size.
#[test]
fn a_mod_wheel_raised_mid_note_brings_vibrato_in_independent_of_block_size() {
    let (_dir, set) = sine_font_set();
    let a4 = sf2::sine_hz(440.0, FONT_RATE, 200);
    let raise = (0.5 * SR as f64) as u64 + 17;
    let events = [note_on(0, 0, 69, 100), common::cc(raise, 0, 1, 127)];
    let x = render_set(&set, 1.4, 512, &events);
    assert_eq!(x, render_set(&set, 1.4, 37, &events), "37-frame blocks differ from 512");
    assert_eq!(x, render_set(&set, 1.4, 64, &events), "64-frame blocks differ from 512");
    let x = left(&x);
    let (before, after) = (pitch_swing(&x, a4, 0.1, 0.03, 12), pitch_swing(&x, a4, 0.9, 0.03, 12));
    assert!(before < 3.0, "no vibrato before the wheel: {before:.1} cents");
    assert!(after > 40.0, "vibrato once the wheel is up: {after:.1} cents peak to peak");
}

#[test]
fn a_missing_preset_names_presets_sharing_a_word_when_none_is_spelled_alike() {
    let dir = font_dir(one_preset(vec![zone((0, 127), (0, 127), 0, &[])]), &[looped_sine(440.0, 69, 0.5)]);
    let e = err_in(dir.path(), "soundfont(\"t\", \"test.sf2\");\nchannel(1, sf(\"t\", \"Big Lead Sound\"));");
    assert!(e.contains("set.rhai:2:") && e.contains("no preset \"Big Lead Sound\""), "{e}");
    assert!(e.contains("did you mean Test Lead?"), "{e}");
}
