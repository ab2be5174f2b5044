//! Recording what the engine plays into a take, offline: notes sent the way the
//! REPL and `:keys` send them are in the take; pattern notes are in it only when
//! asked for, on their channels at their exact frames; and a take played back
//! through the set with `jamrig render --midi` sounds like what was played.

mod common;

use common::*;
use jamrig::capture::recorder::{RecordTap, Recorder};
use jamrig::capture::smf::to_bytes;
use jamrig::engine::event::{Event, EventKind};
use jamrig::offline::midifile::events_from_bytes;
use std::sync::Arc;

const SR: u32 = 48000;

/// Plays `set_text` for `seconds` with `events` sent through the engine's queue
/// (like the REPL), recording; returns the audio and the take's events.
fn record(set_text: &str, events: &[Event], seconds: f64, patterns: bool) -> (Vec<f32>, Vec<Event>, Vec<u8>) {
    let mut r = renderer(set_text, SR);
    let tap = Arc::new(RecordTap::default());
    tap.set_patterns(patterns);
    r.engine.record_into(tap.clone());
    let mut rec = Recorder::new(SR as f64);
    rec.start(&tap, 0, r.stats().transport());
    let total = (seconds * SR as f64) as usize;
    let mut audio = Vec::with_capacity(total * 2);
    let mut next = 0;
    while audio.len() / 2 < total {
        let now = r.engine.frames_out();
        while next < events.len() && events[next].frame < now + 2048 {
            r.controller.send(events[next]);
            next += 1;
        }
        let n = 512.min(total - audio.len() / 2);
        let mut buf = vec![0.0f32; 2 * n];
        r.engine.process(&mut buf, 2);
        audio.extend_from_slice(&buf);
        rec.drain(&tap, r.stats().transport());
    }
    let lost = rec.stop(&tap, r.engine.frames_out(), r.stats().transport());
    assert_eq!(lost, 0);
    (audio, rec.take().events.clone(), to_bytes(rec.take()))
}

const KEYS: &str = r#"tempo(120);
channel(1, #{ synth: "sine", envelope: "organ" });
channel(2, #{ synth: "triangle", envelope: "pluck" });
drums(10);
pattern("beat", 10, 4.0, [[0.0, "kick", 100], [1.0, "snare", 90], [2.5, "closed_hat", 80]]);
pattern("bass", 2, 2.0, [[0.0, "A2", 100, 0.5], [1.0, "E2", 90, 0.25]]);
"#;

fn played() -> Vec<Event> {
    let mut ev = Vec::new();
    for (i, note) in [60u8, 64, 67, 72].iter().enumerate() {
        let at = 10_000 + i as u64 * 20_000;
        ev.push(Event::new(at, EventKind::NoteOn { channel: 0, note: *note, velocity: 80 + i as u8 }));
        ev.push(Event::new(at + 15_000, EventKind::NoteOff { channel: 0, note: *note }));
    }
    ev.push(Event::new(30_000, EventKind::Control { channel: 0, cc: 74, value: 40 }));
    ev.sort_by_key(|e| e.frame);
    ev
}

#[test]
fn notes_sent_through_the_engine_are_recorded_at_their_frames() {
    let (_, take, _) = record(KEYS, &played(), 2.0, false);
    let ch0: Vec<Event> = take.iter().copied().filter(|e| e.kind.channel() == Some(0)).collect();
    assert_eq!(ch0, played(), "the played notes and knob, at their frames");
    assert!(take.iter().all(|e| e.kind.channel() == Some(0)), "pattern notes recorded without being asked");
}

#[test]
fn pattern_notes_are_recorded_when_asked_on_their_channels() {
    let (_, take, bytes) = record(KEYS, &played(), 4.0, true);
    let on = |ch: u8| -> Vec<(u64, u8)> {
        take.iter()
            .filter_map(|e| match e.kind {
                EventKind::NoteOn { channel, note, .. } if channel == ch => Some((e.frame, note)),
                _ => None,
            })
            .collect()
    };
    // 120 BPM at 48 kHz: 24000 frames a beat.
    let beat = |b: f64| (b * 24_000.0).round() as u64;
    let drums: Vec<(u64, u8)> = on(9);
    let want_drums: Vec<(u64, u8)> = [(0.0, 36), (1.0, 38), (2.5, 42), (4.0, 36), (5.0, 38), (6.5, 42)]
        .iter()
        .map(|(b, n)| (beat(*b), *n))
        .collect();
    assert_eq!(drums, want_drums, "drum hits on channel 10");
    let bass: Vec<u64> = on(1).iter().map(|(f, _)| *f).collect();
    assert_eq!(bass, [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0].map(beat).to_vec(), "bass notes on channel 2");
    assert_eq!(on(0).len(), 4, "the played notes are there too");
    // And the file has them on their channels.
    let (events, _) = events_from_bytes(&bytes, "take.mid", SR as f64).unwrap();
    for ch in [0u8, 1, 9] {
        let n = events.iter().filter(|e| matches!(e.kind, EventKind::NoteOn { channel, .. } if channel == ch)).count();
        assert_eq!(n, on(ch).len(), "channel {} in the file", ch + 1);
    }
}

/// A take played back through the set sounds like what was played: the same
/// onsets (within the file's tick, 0.52 ms at 120 BPM), the same pitches, the
/// same loudness contour.
#[test]
fn a_take_rendered_with_midi_sounds_like_the_take() {
    let set_text = r#"tempo(120); channel(1, #{ synth: "sine", envelope: "pluck" }); channel(2, #{ synth: "triangle", envelope: "pluck" });"#;
    let mut ev = Vec::new();
    let notes = [(0u8, 60u8), (1, 48), (0, 64), (0, 67), (1, 55), (0, 72), (0, 60), (1, 43)];
    for (i, (ch, note)) in notes.iter().enumerate() {
        let at = 4_800 + i as u64 * 13_337;
        ev.push(Event::new(at, EventKind::NoteOn { channel: *ch, note: *note, velocity: 70 + 5 * i as u8 }));
        ev.push(Event::new(at + 9_000 + 977 * i as u64, EventKind::NoteOff { channel: *ch, note: *note }));
    }
    // A chord and an overlapping repeat of one note.
    for note in [57u8, 61, 64] {
        ev.push(Event::new(120_000, EventKind::NoteOn { channel: 0, note, velocity: 90 }));
        ev.push(Event::new(150_000, EventKind::NoteOff { channel: 0, note }));
    }
    ev.push(Event::new(130_000, EventKind::NoteOn { channel: 0, note: 64, velocity: 60 }));
    ev.push(Event::new(160_000, EventKind::NoteOff { channel: 0, note: 64 }));
    ev.sort_by_key(|e| e.frame);
    let seconds = 4.0;
    let (live, _, bytes) = record(set_text, &ev, seconds, false);

    let dir = tempfile::tempdir().unwrap();
    let (mid, wav) = (dir.path().join("take.mid"), dir.path().join("take.wav"));
    std::fs::write(&mid, &bytes).unwrap();
    let set_path = dir.path().join("set.rhai");
    std::fs::write(&set_path, set_text).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_jamrig"))
        .arg("render")
        .arg(&set_path)
        .arg("--midi")
        .arg(&mid)
        .arg("-o")
        .arg(&wav)
        .args(["--seconds", "4", "--tail", "0", "--format", "f32"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let again: Vec<f32> = hound::WavReader::open(&wav).unwrap().into_samples::<f32>().map(|s| s.unwrap()).collect();
    let (a, b) = (mono(&live), mono(&again));
    assert_eq!(a.len(), b.len());

    // Onsets: the first non-silent frame of each note, within half a tick.
    let on_a = onsets(&a, 200);
    let on_b = onsets(&b, 200);
    assert!(on_a.len() >= 4, "onsets {on_a:?}");
    assert_eq!(on_a.len(), on_b.len(), "onsets {on_a:?} against {on_b:?}");
    for (x, y) in on_a.iter().zip(&on_b) {
        assert!(x.abs_diff(*y) <= 13, "an onset moved by {} frames", *x as i64 - *y as i64);
    }
    // Pitch and loudness contour, window by window (10 ms).
    let win = 480;
    let (env_a, env_b) = (rms_windows(&a, win), rms_windows(&b, win));
    let dot: f32 = env_a.iter().zip(&env_b).map(|(x, y)| x * y).sum();
    let norm = (env_a.iter().map(|x| x * x).sum::<f32>() * env_b.iter().map(|x| x * x).sum::<f32>()).sqrt();
    assert!(dot / norm > 0.99, "the loudness contours differ (correlation {:.4})", dot / norm);
    for i in 0..8 {
        let t = (4_800 + i * 13_337 + 2_000) as usize;
        let (fa, fb) =
            (peak_freq(&a[t..t + 4096], SR as f64, 80.0, 2000.0), peak_freq(&b[t..t + 4096], SR as f64, 80.0, 2000.0));
        assert!((fa - fb).abs() < 2.0, "note {i}: {fa:.1} Hz live, {fb:.1} Hz from the file");
    }
}
