//! The command line: `jamrig check` prints the rig or the diagnostic; `jamrig render`
//! writes a valid, musical, repeatable WAV from each example, the built-in set and
//! MIDI files (on time against their tempo map), and on bad input prints one clear
//! error, exits non-zero and leaves no file behind.

mod common;

use common::{host, mono, peak, rms};
use jamrig::offline::render::offline_view;
use jamrig::rig::describe::describe;
use midly::num::{u4, u7, u15, u24, u28};
use midly::{Format, Header, MetaMessage, MidiMessage, Smf, Timing, TrackEvent, TrackEventKind};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const EXAMPLES: &[&str] = &[
    "examples/set.rhai",
    "examples/live-coding.rhai",
    "examples/op-xy.rhai",
    "examples/minimal.rhai",
    "examples/tour.rhai",
    "examples/soundfont.rhai",
];

fn jamrig(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_jamrig")).args(args).output().expect("jamrig runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Names in a folder, sorted.
fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

/// A WAV as read back by hound: its spec and interleaved samples scaled to -1..1.
fn read_wav(path: &Path) -> (hound::WavSpec, Vec<f32>) {
    let mut r = hound::WavReader::open(path).unwrap_or_else(|e| panic!("{} is a WAV: {e}", path.display()));
    let spec = r.spec();
    let samples = match (spec.sample_format, spec.bits_per_sample) {
        (hound::SampleFormat::Int, 16) => r.samples::<i16>().map(|x| x.unwrap() as f32 / 32767.0).collect(),
        (hound::SampleFormat::Int, 24) => r.samples::<i32>().map(|x| x.unwrap() as f32 / 8_388_607.0).collect(),
        (hound::SampleFormat::Float, 32) => r.samples::<f32>().map(|x| x.unwrap()).collect(),
        other => panic!("unexpected WAV format {other:?}"),
    };
    (spec, samples)
}

/// A rough count of onsets: 10 ms windows whose level is over 1.5 times the
/// quietest of the three before, loud enough to matter (a fifth of the loudest
/// window), at least 50 ms after the previous onset.
fn energy_rises(x: &[f32], sr: u32) -> usize {
    let w = common::rms_windows(x, sr as usize / 100);
    let loudest = w.iter().copied().fold(0.0, f32::max);
    let mut count = 0;
    let mut last: Option<usize> = None;
    for i in 3..w.len() {
        let quiet = w[i - 3..i].iter().copied().fold(f32::MAX, f32::min);
        if w[i] > 1.5 * quiet && w[i] > 0.2 * loudest && last.is_none_or(|l| i - l >= 5) {
            count += 1;
            last = Some(i);
        }
    }
    count
}

// ---- check ----

#[test]
fn check_prints_the_rig_for_each_example() {
    for ex in EXAMPLES {
        let o = jamrig(&["check", ex]);
        assert!(o.status.success(), "{ex}: {}", stderr(&o));
        let ev = host().eval_file(Path::new(ex)).unwrap();
        let mut want = format!("{ex}: ok\n{}", describe(&ev.set));
        for line in &ev.printed {
            want.push_str(&format!("printed: {line}\n"));
        }
        assert_eq!(stdout(&o), want, "{ex}");
        assert!(stdout(&o).contains("\nchannels:\n"), "{ex}");
        assert!(stderr(&o).is_empty(), "{ex}: {}", stderr(&o));
    }
}

#[test]
fn check_reports_a_broken_set() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.rhai");
    std::fs::write(&path, "tempo(120);\nchannel(1, \"organ\", #{ revreb: 0.3 });\n").unwrap();
    let o = jamrig(&["check", s(&path)]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).is_empty(), "{}", stdout(&o));
    let err = stderr(&o);
    assert!(err.starts_with("error: unknown parameter revreb\n"), "{err}");
    assert!(err.contains(&format!("┌─ {}:2:24\n", path.display())), "{err}");
    assert!(err.contains("2 │ channel(1, \"organ\", #{ revreb: 0.3 });\n"), "{err}");
    assert_eq!(
        common::underlined(&err, "channel(1, \"organ\", #{ revreb: 0.3 });").as_deref(),
        Some("revreb"),
        "{err}"
    );
    assert!(err.contains("did you mean reverb, reverb_type or reverb_decay?"), "{err}");
    // A syntax error.
    std::fs::write(&path, "tempo(120;\n").unwrap();
    let o = jamrig(&["check", s(&path)]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains(&format!("┌─ {}:1:10\n", path.display())), "{err}");
    assert_eq!(common::underlined(&err, "tempo(120;").as_deref(), Some(";"), "{err}");
}

#[test]
fn check_reports_a_preset_the_engine_cannot_play() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("piano.rhai");
    std::fs::write(&path, "define_instrument(\"grand\", #{ synth: \"pianno_synth\" });\nchannel(1, \"grand\");\n")
        .unwrap();
    let o = jamrig(&["check", s(&path)]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o)
            .starts_with("error: instrument \"grand\" needs the synth \"pianno_synth\", which jamrig does not have\n"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn check_reports_an_import_cycle() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.rhai"), "import \"b\" as b;\n").unwrap();
    std::fs::write(dir.path().join("b.rhai"), "import \"a\" as a;\n").unwrap();
    let path = dir.path().join("set.rhai");
    std::fs::write(&path, "import \"a\" as a;\ntempo(100);\n").unwrap();
    let o = jamrig(&["check", s(&path)]);
    assert_eq!(o.status.code(), Some(1), "stderr: {}", stderr(&o));
    assert!(stderr(&o).starts_with("error: "), "{}", stderr(&o));
    assert!(stderr(&o).contains("import"), "{}", stderr(&o));
}

// ---- render ----

/// Renders `args` into `out` and reads it back, checking the run succeeded.
fn render_ok(args: &[&str]) -> Output {
    let o = jamrig(args);
    assert!(o.status.success(), "jamrig {args:?}: {}", stderr(&o));
    o
}

fn expected_frames(set_path: Option<&str>, bars: f64, sr: u32) -> usize {
    let ev = match set_path {
        Some(p) => host().eval_file(Path::new(p)).unwrap(),
        None => host()
            .eval_source(
                jamrig::offline::job::BUILTIN_NAME,
                jamrig::offline::job::BUILTIN_SET,
                None,
                Default::default(),
                false,
            )
            .unwrap(),
    };
    let set = offline_view(&ev.set);
    (bars * set.beats_per_bar * 60.0 / set.tempo_bpm * sr as f64).round() as usize
}

/// Checks a rendered example: the spec, the length, and that it is music.
fn check_music(path: &Path, what: &str, frames: usize, sr: u32, bits: u16, float: bool) {
    // op-xy.rhai is a rig for a hardware sequencer: on its own it plays only a quiet
    // shaker and cowbell layer (about -42 dBFS RMS); the others are full mixes.
    let floor = if what.contains("op-xy") { 0.005 } else { 0.02 };
    let (spec, samples) = read_wav(path);
    assert_eq!(spec.channels, 2, "{what}");
    assert_eq!(spec.sample_rate, sr, "{what}");
    assert_eq!(spec.bits_per_sample, bits, "{what}");
    assert_eq!(spec.sample_format == hound::SampleFormat::Float, float, "{what}");
    assert_eq!(samples.len(), frames * 2, "{what}: length");
    let m = mono(&samples);
    let (level, pk) = (rms(&m), peak(&samples));
    assert!(pk <= 1.0, "{what}: clipped (peak {pk})");
    assert!(pk < 0.999, "{what}: at full scale (peak {pk})");
    assert!(level > floor, "{what}: RMS {level} is near silence");
    let rises = energy_rises(&m, sr);
    println!("{what}: rms {level:.4}, peak {pk:.4}, {rises} onsets");
    assert!(rises >= 4, "{what}: only {rises} onsets");
    assert!(samples.iter().all(|v| v.is_finite()));
    // Both channels carry sound.
    assert!(rms(&common::left(&samples)) > floor / 2.0 && rms(&common::right(&samples)) > floor / 2.0, "{what}");
}

#[test]
fn render_each_example() {
    let dir = tempfile::tempdir().unwrap();
    for (i, ex) in EXAMPLES.iter().enumerate() {
        let (sr, format, bits, float) =
            [(22_050, "s16", 16, false), (44_100, "s24", 24, false), (22_050, "f32", 32, true)][i % 3];
        let out = dir.path().join(format!("ex{i}.wav"));
        let o = render_ok(&[
            "render",
            ex,
            "-o",
            s(&out),
            "--bars",
            "2",
            "--tail",
            "0",
            "--rate",
            &sr.to_string(),
            "--format",
            format,
        ]);
        let err = stderr(&o);
        assert!(err.starts_with(&format!("wrote {} (", out.display())), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        check_music(&out, ex, expected_frames(Some(ex), 2.0, sr), sr, bits, float);
    }
    let want: Vec<String> = (0..EXAMPLES.len()).map(|i| format!("ex{i}.wav")).collect();
    assert_eq!(entries(dir.path()), want, "no stray files");
}

#[test]
fn the_tour_renders_its_whole_cycle_and_every_stop_sounds() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("tour.wav");
    render_ok(&["render", "examples/tour.rhai", "-o", s(&out), "--rate", "16000", "--tail", "2"]);
    let (spec, x) = read_wav(&out);
    let sr = spec.sample_rate as f64;
    let left = common::left(&x);
    // 15 stops of 8 beats and 8 beats more at 96 BPM, then a ring-out of at most 2 s.
    let beat = 60.0 / 96.0;
    let seconds = left.len() as f64 / sr;
    assert!((128.0 * beat..=128.0 * beat + 2.0).contains(&seconds), "the tour lasts {seconds:.1} s");
    // Each stop adds clearly to the drums alone (the last 8 beats): at least 70%
    // of their energy.
    let window = |b0: f64| rms(&left[(b0 * beat * sr) as usize..((b0 + 8.0) * beat * sr) as usize]);
    let drums_alone = window(120.0);
    for stop in 0..15 {
        let level = window(stop as f64 * 8.0);
        assert!(level > 1.3 * drums_alone, "stop {stop}: {level:.4} against the drums alone {drums_alone:.4}");
    }
}

#[test]
fn render_one_example_in_every_format() {
    let dir = tempfile::tempdir().unwrap();
    let mut decoded = Vec::new();
    for (format, bits, float) in [("s16", 16, false), ("s24", 24, false), ("f32", 32, true)] {
        let out = dir.path().join(format!("{format}.wav"));
        render_ok(&[
            "render",
            "examples/minimal.rhai",
            "-o",
            s(&out),
            "--seconds",
            "1.5",
            "--tail",
            "0",
            "--rate",
            "22050",
            "--format",
            format,
        ]);
        let frames = (1.5f64 * 22050.0).round() as usize;
        let (spec, samples) = read_wav(&out);
        assert_eq!((spec.bits_per_sample, spec.sample_format == hound::SampleFormat::Float), (bits, float));
        assert_eq!(samples.len(), frames * 2);
        decoded.push(samples);
    }
    // The same audio in each: within the coarser format's step.
    for (a, b, tol) in [(0, 2, 1.0 / 32767.0), (1, 2, 1.0 / 8_388_607.0)] {
        let d = decoded[a].iter().zip(&decoded[b]).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max);
        assert!(d <= tol * 1.01, "format {a} vs f32: {d}");
    }
}

#[test]
fn render_the_built_in_example() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("builtin.wav");
    render_ok(&["render", "-o", s(&out), "--bars", "2", "--tail", "0", "--rate", "22050"]);
    check_music(&out, "built-in", expected_frames(None, 2.0, 22_050), 22_050, 16, false);
    // It is examples/set.rhai.
    let file = dir.path().join("file.wav");
    render_ok(&["render", "examples/set.rhai", "-o", s(&file), "--bars", "2", "--tail", "0", "--rate", "22050"]);
    assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&file).unwrap());
}

#[test]
fn render_default_length_is_eight_bars() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("default.wav");
    render_ok(&["render", "examples/minimal.rhai", "-o", s(&out), "--rate", "8000", "--tail", "0"]);
    let (spec, samples) = read_wav(&out);
    assert_eq!(spec.sample_rate, 8000);
    assert_eq!(samples.len() / 2, expected_frames(Some("examples/minimal.rhai"), 8.0, 8000));
}

/// Regression (issue 13): a render that came out silent said nothing.
#[test]
fn a_silent_render_is_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    let set = dir.path().join("quiet.rhai");
    std::fs::write(&set, "channel(1, \"organ\");\n").unwrap();
    let out = dir.path().join("quiet.wav");
    let o = render_ok(&["render", s(&set), "-o", s(&out), "--bars", "1", "--rate", "8000"]);
    assert!(stderr(&o).contains("warning: the render is silent: the set has no patterns"), "{}", stderr(&o));
    let o = render_ok(&["render", "examples/minimal.rhai", "-o", s(&out), "--bars", "1", "--rate", "8000"]);
    assert!(!stderr(&o).contains("silent"), "{}", stderr(&o));
}

#[test]
fn the_same_render_twice_is_byte_identical() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.wav"), dir.path().join("b.wav"));
    for out in [&a, &b] {
        render_ok(&[
            "render",
            "examples/live-coding.rhai",
            "-o",
            s(out),
            "--bars",
            "2",
            "--rate",
            "22050",
            "--format",
            "f32",
        ]);
    }
    let (x, y) = (std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    assert!(x.len() > 1000);
    assert!(x == y, "two renders differ");
    // Overwriting an existing file replaces it.
    render_ok(&["render", "examples/minimal.rhai", "-o", s(&a), "--bars", "1", "--rate", "22050"]);
    assert_ne!(std::fs::read(&a).unwrap(), x);
    assert_eq!(entries(dir.path()), ["a.wav", "b.wav"]);
}

// ---- render --midi ----

const TPB: u16 = 480;
const DRUM: u8 = 9; // MIDI channel 10
const SYNTH: u8 = 0; // MIDI channel 1
const CLAVE: u8 = 75;

/// A set with nothing playing on its own: a drum kit on 10, a short synth on 1.
const MIDI_SET: &str = "tempo(100);\ndrums(10);\nchannel(1, \"saw\", #{ envelope: \"staccato\" });\n";

fn note(delta: u32, channel: u8, key: u8, vel: u8) -> TrackEvent<'static> {
    TrackEvent {
        delta: u28::new(delta),
        kind: TrackEventKind::Midi {
            channel: u4::new(channel),
            // Note-offs as note-on velocity 0: consecutive events share a status byte.
            message: MidiMessage::NoteOn { key: u7::new(key), vel: u7::new(vel) },
        },
    }
}

fn tempo(delta: u32, us_per_beat: u32) -> TrackEvent<'static> {
    TrackEvent { delta: u28::new(delta), kind: TrackEventKind::Meta(MetaMessage::Tempo(u24::new(us_per_beat))) }
}

fn end() -> TrackEvent<'static> {
    TrackEvent { delta: u28::new(0), kind: TrackEventKind::Meta(MetaMessage::EndOfTrack) }
}

/// Absolute-tick (tick, channel, key, velocity) events into a delta-timed track.
fn track(mut evs: Vec<(u32, u8, u8, u8)>) -> Vec<TrackEvent<'static>> {
    evs.sort_by_key(|e| e.0);
    let mut last = 0;
    let mut out: Vec<TrackEvent> = evs
        .into_iter()
        .map(|(t, c, k, v)| {
            let e = note(t - last, c, k, v);
            last = t;
            e
        })
        .collect();
    out.push(end());
    out
}

/// The seconds at `tick` of a tempo map of (tick, microseconds per beat), sorted.
fn seconds_at(tick: u32, map: &[(u32, u32)]) -> f64 {
    let mut s = 0.0;
    for (i, &(t0, us)) in map.iter().enumerate() {
        let t1 = map.get(i + 1).map_or(u32::MAX, |m| m.0);
        if tick <= t0 {
            break;
        }
        s += (tick.min(t1) - t0) as f64 * us as f64 / 1e6 / TPB as f64;
    }
    s
}

/// Note-on ticks: clave hits and synth notes, alternating, each done before the next.
fn midi_notes() -> Vec<(u32, u8, u8)> {
    let mut v = Vec::new();
    for i in 0..8u32 {
        let t = i * 480;
        v.push((t, DRUM, CLAVE));
        v.push((t + 240, SYNTH, 60 + i as u8));
    }
    v
}

fn midi_events() -> Vec<(u32, u8, u8, u8)> {
    let mut evs = Vec::new();
    for (t, c, k) in midi_notes() {
        evs.push((t, c, k, 100));
        evs.push((t + 60, c, k, 0));
    }
    evs
}

/// 120 BPM, then 90 BPM from beat 3, then 150 BPM from beat 6.
const TEMPO_MAP: &[(u32, u32)] = &[(0, 500_000), (1440, 666_667), (2880, 400_000)];

fn tempo_track() -> Vec<TrackEvent<'static>> {
    let mut v = Vec::new();
    let mut last = 0;
    for &(t, us) in TEMPO_MAP {
        v.push(tempo(t - last, us));
        last = t;
    }
    v.push(end());
    v
}

fn write_smf(path: &Path, format: Format, tracks: Vec<Vec<TrackEvent<'static>>>) -> Vec<u8> {
    let smf = Smf { header: Header { format, timing: Timing::Metrical(u15::new(TPB)) }, tracks };
    let mut bytes = Vec::new();
    smf.write_std(&mut bytes).unwrap();
    std::fs::write(path, &bytes).unwrap();
    bytes
}

/// Renders the MIDI file through MIDI_SET; checks onsets against the tempo map.
fn check_midi_render(dir: &Path, midi: &Path) {
    let set = dir.join("midi-set.rhai");
    std::fs::write(&set, MIDI_SET).unwrap();
    let out = dir.join(format!("{}.wav", midi.file_stem().unwrap().to_string_lossy()));
    let sr = 48_000u32;
    render_ok(&["render", s(&set), "--midi", s(midi), "-o", s(&out), "--rate", "48000", "--format", "f32"]);
    let (spec, samples) = read_wav(&out);
    assert_eq!(spec.sample_rate, sr);
    // Without a length: the file's end, then a ring-out until silent.
    let last_tick = midi_events().iter().map(|e| e.0).max().unwrap();
    let end_frames = (seconds_at(last_tick, TEMPO_MAP) * sr as f64).round() as usize;
    let frames = samples.len() / 2;
    assert!(
        (end_frames..end_frames + 3 * sr as usize).contains(&frames),
        "{frames} frames, the file ends at {end_frames}"
    );
    let m = mono(&samples);
    let found = common::onsets(&m, 480);
    let want: Vec<f64> = midi_notes().iter().map(|(t, _, _)| seconds_at(*t, TEMPO_MAP) * sr as f64).collect();
    assert_eq!(found.len(), want.len(), "onsets {found:?}\nwant {want:?}");
    for (i, (f, w)) in found.iter().zip(&want).enumerate() {
        assert!((*f as f64 - w).abs() <= 48.0, "note {i}: onset at frame {f}, want {w:.0} (within 1 ms)");
    }
    // Nothing after the last note but silence.
    let quiet_from = ((want.last().unwrap() + 0.5 * sr as f64) as usize).min(m.len());
    assert!(m[quiet_from..].iter().all(|v| *v == 0.0));
}

#[test]
fn render_a_type_1_midi_file_with_tempo_changes_and_running_status() {
    let dir = tempfile::tempdir().unwrap();
    let midi = dir.path().join("type1.mid");
    let drums = midi_events().into_iter().filter(|e| e.1 == DRUM).collect();
    let synth = midi_events().into_iter().filter(|e| e.1 == SYNTH).collect();
    let bytes = write_smf(&midi, Format::Parallel, vec![tempo_track(), track(drums), track(synth)]);
    // Running status is in the byte stream: fewer status bytes than note events.
    let status = bytes.iter().filter(|&&b| b == 0x90 | DRUM).count();
    assert!(status < 16, "{status} drum status bytes for 16 events: no running status");
    check_midi_render(dir.path(), &midi);
}

#[test]
fn render_a_type_0_midi_file() {
    let dir = tempfile::tempdir().unwrap();
    let midi = dir.path().join("type0.mid");
    // One track: tempo changes and notes of both channels, interleaved.
    type Timed = (u32, Option<(u8, u8, u8)>, Option<u32>);
    let mut all: Vec<Timed> = Vec::new();
    for &(t, us) in TEMPO_MAP {
        all.push((t, None, Some(us)));
    }
    for (t, c, k, v) in midi_events() {
        all.push((t, Some((c, k, v)), None));
    }
    all.sort_by_key(|e| (e.0, e.2.is_none()));
    let mut last = 0;
    let mut tr = Vec::new();
    for (t, n, us) in all {
        let d = t - last;
        last = t;
        match (n, us) {
            (Some((c, k, v)), _) => tr.push(note(d, c, k, v)),
            (None, Some(us)) => tr.push(tempo(d, us)),
            _ => unreachable!(),
        }
    }
    tr.push(end());
    write_smf(&midi, Format::SingleTrack, vec![tr]);
    check_midi_render(dir.path(), &midi);
}

// ---- render errors ----

/// Runs a render expected to fail: non-zero exit, nothing on stdout, stderr checked
/// by the caller, and no new entry in `dir`.
fn render_fails(dir: &Path, args: &[&str]) -> String {
    let before = entries(dir);
    let o = jamrig(args);
    assert!(!o.status.success(), "jamrig {args:?} succeeded");
    assert_eq!(o.status.code(), Some(1), "jamrig {args:?}: {}", stderr(&o));
    assert!(stdout(&o).is_empty(), "{}", stdout(&o));
    assert_eq!(entries(dir), before, "jamrig {args:?} left files behind");
    stderr(&o)
}

fn one_error_line(err: &str) {
    assert!(err.starts_with("error: "), "{err}");
    assert_eq!(err.lines().count(), 1, "one line:\n{err}");
    assert!(err.ends_with('\n'));
}

struct Folder {
    dir: tempfile::TempDir,
}

impl Folder {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("set.rhai"), MIDI_SET).unwrap();
        Folder { dir }
    }
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    fn out(&self) -> String {
        s(&self.path("out.wav")).to_string()
    }
}

#[test]
fn render_error_missing_midi_file() {
    let f = Folder::new();
    let mid = f.path("nothere.mid");
    let err = render_fails(f.dir.path(), &["render", s(&f.path("set.rhai")), "--midi", s(&mid), "-o", &f.out()]);
    one_error_line(&err);
    assert!(err.starts_with(&format!("error: cannot read {}: ", mid.display())), "{err}");
}

#[test]
fn render_error_malformed_midi_file() {
    let f = Folder::new();
    for (name, bytes) in [
        ("text.mid", b"this is not a MIDI file\n".to_vec()),
        ("header-only.mid", b"MThd\x00\x00\x00\x06\x00".to_vec()),
        ("empty.mid", Vec::new()),
    ] {
        let mid = f.path(name);
        std::fs::write(&mid, bytes).unwrap();
        let err = render_fails(f.dir.path(), &["render", s(&f.path("set.rhai")), "--midi", s(&mid), "-o", &f.out()]);
        one_error_line(&err);
        assert!(err.starts_with(&format!("error: {} is not a valid MIDI file: ", mid.display())), "{err}");
    }
}

#[test]
fn render_error_truncated_midi_file() {
    let f = Folder::new();
    let mid = f.path("truncated.mid");
    // Two tracks announced, one present, 256 bytes announced, 4 present.
    std::fs::write(&mid, b"MThd\x00\x00\x00\x06\x00\x01\x00\x02\x01\xe0MTrk\x00\x00\x01\x00\x00\x90\x3c\x64").unwrap();
    let err = render_fails(f.dir.path(), &["render", s(&f.path("set.rhai")), "--midi", s(&mid), "-o", &f.out()]);
    one_error_line(&err);
    assert!(err.starts_with(&format!("error: {} is not a valid MIDI file: ", mid.display())), "{err}");
}

#[test]
fn render_error_bad_rate() {
    let f = Folder::new();
    let err = render_fails(f.dir.path(), &["render", s(&f.path("set.rhai")), "-o", &f.out(), "--rate", "1000"]);
    assert_eq!(err, "error: --rate 1000 is outside 8000..192000 Hz\n");
    let err = render_fails(f.dir.path(), &["render", "-o", &f.out(), "--rate", "400000"]);
    assert_eq!(err, "error: --rate 400000 is outside 8000..192000 Hz\n");
}

#[test]
fn render_error_bad_length() {
    let f = Folder::new();
    for bars in ["0", "-1", "20000", "NaN"] {
        let err = render_fails(f.dir.path(), &["render", "-o", &f.out(), &format!("--bars={bars}")]);
        one_error_line(&err);
        assert!(err.starts_with("error: --bars must be "), "{err}");
    }
    let err = render_fails(f.dir.path(), &["render", "-o", &f.out(), "--seconds=0"]);
    one_error_line(&err);
    assert!(err.starts_with("error: --seconds must be "), "{err}");
}

#[test]
fn render_error_bad_length_message() {
    let f = Folder::new();
    let err = render_fails(f.dir.path(), &["render", "-o", &f.out(), "--bars", "0"]);
    assert_eq!(err, "error: --bars must be above 0 and at most 10000, not 0\n");
    let err = render_fails(f.dir.path(), &["render", "-o", &f.out(), "--seconds", "0"]);
    assert_eq!(err, "error: --seconds must be above 0 and at most 36000, not 0\n");
}

#[test]
fn render_error_output_is_a_folder() {
    let f = Folder::new();
    let sub = f.path("wavs");
    std::fs::create_dir(&sub).unwrap();
    let err = render_fails(f.dir.path(), &["render", s(&f.path("set.rhai")), "-o", s(&sub), "--bars", "1"]);
    assert_eq!(err, format!("error: {} is a folder; give a file name for the WAV\n", sub.display()));
    assert!(entries(&sub).is_empty());
}

#[test]
fn render_error_output_folder_missing() {
    let f = Folder::new();
    let out = f.path("no/such/folder/out.wav");
    let err = render_fails(f.dir.path(), &["render", s(&f.path("set.rhai")), "-o", s(&out), "--bars", "1"]);
    one_error_line(&err);
    assert!(err.starts_with(&format!("error: cannot create {}: ", out.display())), "{err}");
}

#[test]
fn render_error_script_prints_the_diagnostic() {
    let f = Folder::new();
    let set = f.path("bad.rhai");
    std::fs::write(&set, "tempo(120);\nchannel(1, \"electric_pianno\");\n").unwrap();
    let err = render_fails(f.dir.path(), &["render", s(&set), "-o", &f.out(), "--bars", "1"]);
    assert!(err.starts_with("error: unknown instrument \"electric_pianno\"\n"), "{err}");
    assert!(err.contains(&format!("┌─ {}:2:13\n", set.display())), "{err}");
    assert_eq!(
        common::underlined(&err, "channel(1, \"electric_pianno\");").as_deref(),
        Some("electric_pianno"),
        "{err}"
    );
}

#[test]
fn render_error_missing_set_file_fails_cleanly() {
    let f = Folder::new();
    let set = f.path("nothere.rhai");
    let err = render_fails(f.dir.path(), &["render", s(&set), "-o", &f.out()]);
    assert!(err.starts_with("error: "), "{err}");
    assert!(err.contains(&set.display().to_string()), "{err}");
}

#[test]
fn render_error_missing_set_file_is_one_line() {
    let f = Folder::new();
    let set = f.path("nothere.rhai");
    let err = render_fails(f.dir.path(), &["render", s(&set), "-o", &f.out()]);
    assert_eq!(err, format!("error: cannot read {}: No such file or directory (os error 2)\n", set.display()));
    let o = jamrig(&["check", s(&set)]);
    assert_eq!(stderr(&o), format!("error: cannot read {}: No such file or directory (os error 2)\n", set.display()));
}

#[test]
fn a_failed_render_keeps_an_existing_output_file() {
    let f = Folder::new();
    let out = f.path("keep.wav");
    std::fs::write(&out, b"RIFF previous").unwrap();
    let mid = f.path("bad.mid");
    std::fs::write(&mid, b"garbage").unwrap();
    render_fails(f.dir.path(), &["render", s(&f.path("set.rhai")), "--midi", s(&mid), "-o", s(&out)]);
    assert_eq!(std::fs::read(&out).unwrap(), b"RIFF previous");
}

// ---- jamrig audition ----

#[test]
fn audition_renders_an_instrument_note_held_then_rung_out() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("a.wav");
    let o = jamrig(&["audition", "organ", "--note", "A4", "-o", s(&out)]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("organ at A4"), "{}", stderr(&o));
    let (spec, x) = read_wav(&out);
    let x = mono(&x);
    let sr = spec.sample_rate as f64;
    let seconds = x.len() as f64 / sr;
    // One second held, then the release and a quarter second of silence.
    assert!((1.2..4.0).contains(&seconds), "{seconds:.2} s");
    let held = &x[(0.3 * sr) as usize..(0.9 * sr) as usize];
    let f = common::fine_peak_freq(held, sr, 400.0, 480.0);
    assert!(common::cents(f, 440.0).abs() < 3.0, "A4 heard at {f:.2} Hz");
    assert!(peak(&x[x.len() - (0.1 * sr) as usize..]) < 1e-4, "rings out to silence");
}

#[test]
fn audition_plays_drum_sounds_and_patterns_and_lists_the_library() {
    let dir = tempfile::tempdir().unwrap();
    let hit = dir.path().join("k.wav");
    let o = jamrig(&["audition", "snare", "-o", s(&hit)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let (_, x) = read_wav(&hit);
    assert!(peak(&x) > 0.05);
    let pat = dir.path().join("p.wav");
    let o = jamrig(&["audition", "--pattern", "rock", "-o", s(&pat)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let (spec, x) = read_wav(&pat);
    // Two 4-beat bars at 120 BPM, and the last hits ringing.
    let seconds = x.len() as f64 / 2.0 / spec.sample_rate as f64;
    assert!((4.0..6.0).contains(&seconds), "{seconds:.2} s");
    // Regression (issue 13): "rock" is a pattern and a fill; --fill plays the fill (one bar).
    let fill = dir.path().join("f.wav");
    let o = jamrig(&["audition", "--fill", "rock", "-o", s(&fill)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let (_, y) = read_wav(&fill);
    assert!(peak(&y) > 0.05 && y != x, "the fill sounds, and is not the pattern");
    let o = jamrig(&["audition", "rock", "-o", "/dev/null"]);
    assert!(stderr(&o).contains("--pattern rock and --fill rock"), "{}", stderr(&o));
    let list = stdout(&jamrig(&["audition", "--list"]));
    for section in ["instruments (84)", "drum sounds", "patterns (", "fills (37)", "synths (57)"] {
        assert!(list.contains(section), "--list has no {section}:\n{list}");
    }
}

#[test]
fn audition_suggests_names_and_rejects_bad_notes() {
    let o = jamrig(&["audition", "pianno", "-o", "/dev/null"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("did you mean") && stderr(&o).contains("piano"), "{}", stderr(&o));
    let o = jamrig(&["audition", "--pattern", "rok", "-o", "/dev/null"]);
    assert!(stderr(&o).contains("rock"), "{}", stderr(&o));
    let o = jamrig(&["audition", "piano", "--note", "H2", "-o", "/dev/null"]);
    assert!(!o.status.success() && stderr(&o).contains("not a note"), "{}", stderr(&o));
}

/// Regressions (issue 13, item 1 and minor): `jamrig play --help` claimed that
/// JACK always sets its own buffer, and a buffer size out of range did not say
/// how to give one. `--help` says that the nearest size the device takes is used,
/// and the error names `--buffer <FRAMES>` and the range.
#[test]
fn play_help_and_errors_tell_how_the_buffer_is_chosen() {
    let help = stdout(&jamrig(&["play", "--help"]));
    let line =
        help.lines().find(|l| l.trim_start().starts_with("--buffer <FRAMES>")).unwrap_or_else(|| panic!("{help}"));
    assert!(line.contains("the nearest it takes is used") && line.contains("[default: 128]"), "{line}");
    assert!(!help.to_lowercase().contains("sets its own buffer"), "{help}");
    let o = jamrig(&["play", "examples/set.rhai", "--buffer", "8"]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(err.contains("'--buffer <FRAMES>'") && err.contains("16..=16384"), "{err}");
}
