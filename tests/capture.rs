//! Session capture and replay, offline: a session driven the way the live host
//! drives it (events through the engine's queue at arbitrary block sizes, REPL
//! lines, file reloads with imports, MIDI clock, a Link timeline), captured; the
//! replay of the capture must give the same samples, every time; damaged captures
//! fail naming their first bad line.

mod common;

use common::*;
use jamrig::capture::replay::{self, CaptureError};
use jamrig::capture::session::{CAPTURE_FILE, SessionCapture};
use jamrig::engine::event::{Event, EventKind};
use jamrig::engine::sync::ExternalTimeline;
use jamrig::offline::Renderer;
use jamrig::script::ScriptHost;
use jamrig::script::session::Session;
use std::path::Path;

const SR: u32 = 48000;

const SET_V1: &str = r#"
import "bass" as b;
tempo(118);
channel(1, "electric_piano", #{ reverb: 0.2 });
channel(2, b::BASS);
drums(10);
pattern("beat", 10, "rock");
pattern("line", 2, 4.0, [[0.0, "A1", 100, 0.5], [1.5, "C2", 90, 0.25], [2.0, "E2", 100, 0.5]]);
"#;

const SET_V2: &str = r#"
import "bass" as b;
tempo(124);
channel(1, "organ", #{ reverb: 0.4, chorus: 0.3 });
channel(2, b::BASS);
drums(10);
pattern("beat", 10, "house");
pattern("line", 2, 2.0, [[0.0, "A1", 100, 0.25], [1.0, "G1", 90, 0.25]]);
"#;

const BASS: &str = r#"export const BASS = "synth_bass";"#;

/// What the "live" run produced and where its capture is.
struct Session1 {
    audio: Vec<f32>,
    _dir: tempfile::TempDir,
    capture: std::path::PathBuf,
}

/// Runs a session for `seconds`, the way the live host does, capturing it.
/// `link` hands the engine a Link-like timeline before each block.
fn live_session(seconds: f64, link: bool) -> Session1 {
    let dir = tempfile::tempdir().unwrap();
    let set_path = dir.path().join("set.rhai");
    std::fs::write(&set_path, SET_V1).unwrap();
    std::fs::write(dir.path().join("bass.rhai"), BASS).unwrap();
    let mut session = Session::open(ScriptHost::new().unwrap(), &set_path).unwrap();
    let mut r = Renderer::following_clock(session.set(), tables(SR)).unwrap();
    let cap_dir = dir.path().join("take1");
    let (mut capture, tap) = SessionCapture::start(&cap_dir, SR, &session).unwrap();
    r.engine.capture_into(tap);

    let total = (seconds * SR as f64) as usize;
    let blocks = [256usize, 100, 512, 64, 333, 1024];
    let mut audio = Vec::with_capacity(total * 2);
    let mut step = 0usize;
    let mut beat = 0.0f64;
    while audio.len() / 2 < total {
        let now = r.engine.frames_out();
        let t = now as f64 / SR as f64;
        // Keys, knobs and bend as a player would, placed a little ahead like MIDI input.
        let ahead = now + 300 + (step as u64 * 37) % 200;
        if step.is_multiple_of(7) {
            let note = 60 + (step % 12) as u8;
            r.controller.send(Event::new(ahead, EventKind::NoteOn { channel: 0, note, velocity: 90 }));
            r.controller.send(Event::new(ahead + 9000, EventKind::NoteOff { channel: 0, note }));
        }
        if step.is_multiple_of(11) {
            let value = (step * 5 % 128) as u8;
            r.controller.send(Event::new(ahead, EventKind::Control { channel: 0, cc: 74, value }));
            r.controller.send(Event::new(ahead + 5, EventKind::PitchBend { channel: 1, value: 2000 }));
        }
        // The control side: a REPL tweak, a save of the file, a stop and start.
        match step {
            40 => {
                session.apply_line("ch(1).reverb = 0.6;", &mut r.controller).unwrap();
            }
            90 => {
                std::fs::write(&set_path, SET_V2).unwrap();
                session.reload(&mut r.controller);
            }
            130 => {
                r.controller.send(Event::new(ahead, EventKind::Stop));
            }
            150 => {
                r.controller.send(Event::new(ahead, EventKind::Start));
            }
            170 if link => {
                session.apply_line("clock(\"link\", 4);", &mut r.controller).unwrap();
            }
            _ => {}
        }
        capture.note_set(r.controller.last_serial(), &session);
        if link {
            r.engine.follow_timeline(ExternalTimeline { frame: now, beat, bpm: 121.5, playing: t > 1.0 });
        }
        let n = blocks[step % blocks.len()].min(total - audio.len() / 2);
        let mut buf = vec![0.0f32; n * 2];
        r.engine.process(&mut buf, 2);
        beat += n as f64 * 121.5 / (60.0 * SR as f64) * 1.0001;
        audio.extend_from_slice(&buf);
        r.controller.collect();
        capture.drain();
        step += 1;
    }
    let end = r.engine.frames_out();
    capture.finish(end).unwrap();
    Session1 { audio, capture: cap_dir, _dir: dir }
}

fn replayed(dir: &Path) -> Vec<f32> {
    let log = replay::read(dir).unwrap_or_else(|e| panic!("{e}"));
    let mut out = Vec::new();
    replay::replay(&log, |x| out.extend_from_slice(x)).unwrap_or_else(|e| panic!("{e}"));
    out
}

fn first_difference(a: &[f32], b: &[f32]) -> Option<usize> {
    a.iter().zip(b).position(|(x, y)| x.to_bits() != y.to_bits()).map(|i| i / 2)
}

#[test]
fn replay_gives_the_live_output_sample_for_sample() {
    let live = live_session(12.0, false);
    assert!(rms(&live.audio) > 0.01, "the session is silent");
    let again = replayed(&live.capture);
    assert_eq!(again.len(), live.audio.len(), "the replay's length");
    assert_eq!(first_difference(&live.audio, &again), None, "the replay differs from the live output at this frame");
    let third = replayed(&live.capture);
    assert!(third == again, "two replays differ");
}

#[test]
fn replay_follows_the_captured_link_timeline() {
    let live = live_session(8.0, true);
    let text = std::fs::read_to_string(live.capture.join(CAPTURE_FILE)).unwrap();
    assert!(text.contains("\"record\":\"timeline\""), "no timeline was captured");
    let again = replayed(&live.capture);
    assert_eq!(first_difference(&live.audio, &again), None, "the replay differs from the live output at this frame");
}

#[test]
fn the_capture_holds_the_scripts_repl_lines_and_events() {
    let live = live_session(6.0, false);
    let log = replay::read(&live.capture).unwrap();
    assert_eq!(log.sample_rate, SR);
    assert_eq!(log.set_name, "set.rhai");
    let first = &log.sets[&0];
    assert_eq!(first.files["set.rhai"], SET_V1);
    assert_eq!(first.files["bass.rhai"], BASS, "imports are captured");
    assert!(log.sets.values().any(|s| s.repl == ["ch(1).reverb = 0.6"]), "the REPL line is captured");
    assert!(log.sets.values().any(|s| s.files["set.rhai"] == SET_V2 && s.repl.is_empty()), "the reload is captured");
    assert!(log.adopts.len() >= 3, "adoptions: {:?}", log.adopts);
    assert!(log.events.iter().any(|e| matches!(e.kind, EventKind::NoteOn { .. })));
    assert!(log.events.iter().any(|e| e.kind == EventKind::Stop));
    assert_eq!(log.end, Some((6.0 * SR as f64) as u64));
    assert_eq!(log.lost, 0);
}

/// A capture with one line replaced by `bad` (1-based line `at`).
fn damaged(text: &str, at: usize, bad: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    lines[at - 1] = bad;
    std::fs::write(dir.path().join(CAPTURE_FILE), lines.join("\n") + "\n").unwrap();
    dir
}

#[test]
fn damaged_captures_name_the_first_bad_line() {
    let live = live_session(3.0, false);
    let text = std::fs::read_to_string(live.capture.join(CAPTURE_FILE)).unwrap();
    let n = text.lines().count();
    assert!(n > 20);
    let cases = [
        (n / 2, "{\"record\":\"event\",\"frame\":"),
        (n / 2, "garbage"),
        (n / 3, "{\"record\":\"event\",\"frame\":100,\"midi\":[144,60]}"),
        (n / 3, "{\"record\":\"event\",\"frame\":100}"),
        (n / 3, "{\"frame\":100}"),
        (n / 4, "{\"record\":\"adopt\",\"serial\":999,\"frame\":0}"),
        (1, "{\"record\":\"event\",\"frame\":0,\"midi\":[248]}"),
    ];
    for (line, bad) in cases {
        let dir = damaged(&text, line, bad);
        match replay::read(dir.path()) {
            Err(e @ CaptureError::Damaged { .. }) => {
                let msg = e.to_string();
                assert!(msg.contains(&format!("{CAPTURE_FILE}:{line}:")), "{bad:?} at line {line}: {msg}");
            }
            other => panic!("{bad:?} at line {line}: expected a damaged-record error, got {other:?}"),
        }
    }
    // A truncated file (a crash mid-write) names its last line.
    let cut = &text[..text.len() - 10];
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(CAPTURE_FILE), cut).unwrap();
    let e = replay::read(dir.path()).unwrap_err().to_string();
    assert!(e.contains(&format!(":{n}:")), "truncated: {e}");
}

#[test]
fn newer_records_are_skipped_and_newer_versions_refused() {
    let live = live_session(3.0, false);
    let text = std::fs::read_to_string(live.capture.join(CAPTURE_FILE)).unwrap();
    // A record kind and a field from a later version: skipped, and the replay is
    // unchanged.
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    lines.insert(5, "{\"record\":\"marker\",\"frame\":100,\"text\":\"verse\"}".into());
    lines[3] = lines[3].replacen('{', "{\"colour\":\"red\",", 1);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(CAPTURE_FILE), lines.join("\n")).unwrap();
    let log = replay::read(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(log.skipped, 1);
    assert_eq!(replayed(dir.path()), replayed(&live.capture));

    let newer = text.replacen("\"version\":1", "\"version\":2", 1);
    std::fs::write(dir.path().join(CAPTURE_FILE), newer).unwrap();
    let e = replay::read(dir.path()).unwrap_err();
    assert!(matches!(e, CaptureError::Newer { version: 2, .. }), "{e}");
}

#[test]
fn event_records_round_trip_every_kind() {
    use jamrig::capture::session::{Record, event_record, record_event};
    let kinds = [
        EventKind::NoteOn { channel: 15, note: 127, velocity: 1 },
        EventKind::NoteOff { channel: 3, note: 0 },
        EventKind::Control { channel: 9, cc: 64, value: 127 },
        EventKind::PitchBend { channel: 0, value: -8192 },
        EventKind::PitchBend { channel: 0, value: 8191 },
        EventKind::Program { channel: 2, program: 77 },
        EventKind::Pressure { channel: 2, value: 5 },
        EventKind::Clock,
        EventKind::ClockStart,
        EventKind::ClockStop,
        EventKind::ClockContinue,
        EventKind::SongPosition(16383),
        EventKind::Start,
        EventKind::Stop,
        EventKind::Continue,
        EventKind::Panic,
        EventKind::Tempo(133.5),
        EventKind::Param { channel: 15, param: jamrig::params::Param::Lowpass as u8, value: 900.0 },
    ];
    for kind in kinds {
        let ev = Event::new(12345, kind);
        let rec = event_record(&ev).unwrap();
        let line = serde_json::to_string(&rec).unwrap();
        let back: Record = serde_json::from_str(&line).unwrap();
        let Record::Event { frame, midi, command, tempo, param } = back else { panic!("{line}") };
        assert_eq!(
            record_event(frame, midi.as_deref(), command.as_deref(), tempo, param.as_ref()).unwrap(),
            ev,
            "{line}"
        );
    }
}
