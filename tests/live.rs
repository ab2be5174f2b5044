//! End-to-end tests of the live host: `jamrig play` against a JACK server on the
//! dummy backend (a paced audio clock, no sound card), with a probe JACK client that
//! sends MIDI through a real JACK MIDI port and records jamrig's audio outputs.
//!
//! Run with: `CARGO_TARGET_DIR=target/jack cargo test --release --features jack --test live`
//! (needs jackd2: `jackd`, `jack_wait`). The tests run one at a time (a global
//! lock), each with its own server (always named [`server()`]: see there why); every
//! process is stopped even on a panic.
#![cfg(feature = "jack")]

mod common;
#[path = "common/live.rs"]
mod live_support;

use common::{band_level, cents, db, onsets, peak, peak_freq, rms, spectrum};
use live_support::*;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const SR: f64 = SAMPLE_RATE as f64;
const A4: f64 = 440.0;
const C5: f64 = 523.251_130_6;
const S: fn(u64) -> Duration = Duration::from_secs;
const MS: fn(u64) -> Duration = Duration::from_millis;

const SINE_SET: &str = "tempo(120);\nchannel(1, #{ synth: \"sine\", envelope: \"organ\" });\n";

/// Writes `text` to `path` the way an editor saves: a temporary file renamed over it.
fn save_like_an_editor(path: &Path, text: &str) {
    let tmp = path.with_extension("rhai.swp");
    std::fs::write(&tmp, text).expect("write the temporary file");
    std::fs::rename(&tmp, path).expect("rename over the set");
}

/// A server, a probe, and jamrig playing a set with its MIDI input on the probe's
/// port and its audio outputs connected to the probe's inputs. Fields drop in
/// order: the probe, jamrig, the server, the folder.
struct Rig {
    probe: Probe,
    jam: Jamrig,
    server: JackServer,
    set: PathBuf,
    _dir: tempfile::TempDir,
}

/// How jamrig reaches the JACK server: as a JACK client (the `jack` build's
/// default), or through ALSA and its jack plugin (the default build's way).
#[derive(Clone, Copy, Debug, PartialEq)]
enum Via {
    Jack,
    Alsa,
}

impl Rig {
    fn start(set_text: &str, extra: &[&str]) -> Rig {
        Rig::start_at(set_text, PERIOD, Via::Jack, extra)
    }

    /// A rig on a server whose cycles are `period` frames, jamrig reaching it `via`.
    fn start_at(set_text: &str, period: u32, via: Via, extra: &[&str]) -> Rig {
        let server = JackServer::start_with_period(server(), period);
        let dir = tempfile::tempdir().expect("temp dir");
        let set = dir.path().join("set.rhai");
        std::fs::write(&set, set_text).unwrap();
        let probe = Probe::open(&server.name);
        let mut args = vec!["--port", PROBE_MIDI];
        args.extend_from_slice(extra);
        let jam = match via {
            Via::Jack => Jamrig::start(&server.name, &set, &args),
            Via::Alsa => Jamrig::start_alsa(&server.name, &set, &args),
        };
        let line = jam.wait_started(S(20));
        let audio = match via {
            Via::Jack => "audio: JACK Output (JACK), 48000 Hz",
            Via::Alsa => "(ALSA), 48000 Hz",
        };
        assert!(line.contains(audio), "startup line (expected `{audio}`): {line}");
        assert!(line.contains(&format!("MIDI in: {}", probe.midi_port)), "jamrig is not on the probe's port: {line}");
        if via == Via::Jack {
            probe.connect_jamrig_audio(S(5));
        }
        Rig { probe, jam, server, set, _dir: dir }
    }
}

/// The server periods the device tests run at.
const PERIODS: [u32; 3] = [128, 256, 1024];

/// The share of the spectrum's energy above `hz`.
fn energy_above(x: &[f32], hz: f64) -> f64 {
    let (mags, bin) = spectrum(x, SR, 1 << 15);
    let total: f64 = mags.iter().map(|m| m * m).sum();
    let high: f64 = mags.iter().enumerate().filter(|(i, _)| *i as f64 * bin >= hz).map(|(_, m)| m * m).sum();
    high / total.max(1e-30)
}

/// Spectral centroid (magnitude-weighted), Hz.
fn centroid(x: &[f32]) -> f64 {
    let (mags, bin) = spectrum(x, SR, 1 << 15);
    let w: f64 = mags.iter().sum();
    mags.iter().enumerate().map(|(i, m)| i as f64 * bin * m).sum::<f64>() / w.max(1e-30)
}

/// The median of `measure` over `pieces` equal pieces of `x`: a cycle the server
/// skipped (a click in the recording, on a loaded machine) spoils the piece it
/// falls in, not the measurement.
fn median_of_pieces(x: &[f32], pieces: usize, measure: impl Fn(&[f32]) -> f64) -> f64 {
    let len = x.len() / pieces;
    let mut values: Vec<f64> = x.chunks_exact(len).take(pieces).map(measure).collect();
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Records a second and checks that a steady tone at `hz` (within 1 cent) is
/// what sounds (the median of five pieces of 200 ms).
fn assert_pitch(probe: &mut Probe, hz: f64, what: &str) -> f32 {
    let c = probe.record(1.0);
    let x = c.mono();
    let level = rms(&x);
    assert!(level > 0.02, "{what}: nothing plays (RMS {level})");
    let f = median_of_pieces(&x, 5, |p| peak_freq(p, SR, hz * 0.7, hz * 1.3));
    assert!(cents(f, hz).abs() < 1.0, "{what}: plays {f:.3} Hz, expected {hz:.3} Hz ({:+.2} cents)", cents(f, hz));
    level
}

#[test]
fn notes_through_a_real_midi_port_play_at_their_pitch() {
    let _serial = serial();
    let mut r = Rig::start(SINE_SET, &[]);
    let before = r.probe.record(0.2);
    assert_eq!(peak(&before.mono()), 0.0, "jamrig plays before any note");

    r.probe.send_now(&[0x90, 69, 100]);
    std::thread::sleep(MS(150));
    assert_pitch(&mut r.probe, A4, "A4");

    r.probe.send(&[(0, &[0x80, 69, 0]), (0, &[0x90, 72, 100])]);
    std::thread::sleep(MS(150));
    let c = r.probe.record(1.0);
    let x = c.mono();
    let f = peak_freq(&x, SR, 300.0, 800.0);
    assert!(cents(f, C5).abs() < 1.0, "C5: plays {f:.3} Hz ({:+.2} cents)", cents(f, C5));
    let (mags, bin) = spectrum(&x, SR, 1 << 16);
    let (a, c5) = (band_level(&mags, bin, A4, 5.0), band_level(&mags, bin, C5, 5.0));
    assert!(a < c5 * 0.01, "A4 still sounds after its note-off: {:.1} dB below C5", db((a / c5) as f32));
    assert!(r.jam.running());
}

/// A sine on channel 1 over three channels of held pads, low and dark (their sound
/// stays far below A4): enough work per tick that the engine shares it out.
const HEAVY_SET: &str = "tempo(120);\nchannel(1, #{ synth: \"sine\", envelope: \"organ\" });\n\
    for ch in [2, 3, 4] { channel(ch, \"synth_pad\", #{ voices: 64, volume: 0.05, lowpass: 120.0 }); }\n";

#[test]
fn two_render_threads_play_notes_at_their_pitch_and_the_worker_renders() {
    let _serial = serial();
    let mut r = Rig::start(HEAVY_SET, &["--threads", "2"]);
    let (_, _, line) = r.jam.expect_line(0, S(5), "the render threads at start-up", |l| l.starts_with("render: "));
    assert!(
        line.starts_with("render: 2 threads, the worker ") && line.contains("realtime priority"),
        "start-up line on the render threads: {line}"
    );
    // 40 held notes on each pad channel (C0 to D#3, a fifth apart and wrapped),
    // then A4 on the sine.
    let mut pads: Vec<[u8; 3]> = Vec::new();
    for ch in 1..4u8 {
        for k in 0..40u8 {
            pads.push([0x90 | ch, 12 + (k * 7) % 40, 100]);
        }
    }
    let msgs: Vec<(u32, &[u8])> = pads.iter().map(|m| (0, &m[..])).collect();
    r.probe.send(&msgs);
    r.probe.send_now(&[0x90, 69, 100]);
    std::thread::sleep(MS(300));
    assert_pitch(&mut r.probe, A4, "A4 over the pads on two threads");

    let (start, _) = r.jam.command(":status", S(5), |l| l.starts_with("set "));
    let (end, _, _) = r.jam.expect_line(start, S(5), "ending :status (events: ...)", |l| l.starts_with("events:"));
    let status = r.jam.out.all()[start..=end].to_vec();
    let render =
        status.iter().find(|l| l.starts_with("render: ")).unwrap_or_else(|| panic!("no render line: {status:#?}"));
    let items: u64 = render
        .split(", ")
        .find_map(|p| p.strip_suffix(" items rendered by workers").or(p.strip_suffix(" item rendered by workers")))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count of items in the render line: {render}"));
    assert!(items > 0, "the worker rendered nothing: {render}");
    assert!(!render.contains(" 0% of ticks shared out"), "no tick was shared out: {render}");
    assert!(r.jam.running());
}

/// Sends two closed-hat hits `distance` frames apart (exact JACK frame times) and
/// returns (distance between their onsets in the audio, latency of the first hit
/// from its sending to its sound, in frames).
fn two_hits(r: &mut Rig, distance: u32) -> (i64, i64) {
    let frames = r.probe.start_recording(1.0);
    r.probe.wait_cycles(3, S(5));
    r.probe.clear_sent();
    r.probe.send(&[(10, &[0x99, 42, 100]), (10 + distance, &[0x99, 42, 100])]);
    let sent = r.probe.sent_times(2, S(5));
    assert_eq!(sent[1].wrapping_sub(sent[0]), distance, "the probe sent the hits {distance} frames apart");
    let c = r.probe.finish(frames);
    // A closed hat starts on a non-zero sample and ends in exact silence after 47 ms.
    let on = onsets(&c.left, 500);
    assert_eq!(on.len(), 2, "expected two hits in the capture, found onsets at {on:?}");
    let d = on[1] as i64 - on[0] as i64;
    let latency = c.start.wrapping_add(on[0] as u32).wrapping_sub(sent[0]) as i32 as i64;
    (d, latency)
}

#[test]
fn note_spacing_is_kept_within_1_ms() {
    let _serial = serial();
    let mut r = Rig::start("drums(10);\n", &[]);
    let (d, latency) = two_hits(&mut r, 4800);
    println!("hits sent 4800 frames (100 ms) apart sound {d} frames apart; latency {latency} frames");
    assert!(
        (d - 4800).abs() <= 48,
        "hits sent 4800 frames apart sound {d} frames apart ({:+.2} ms)",
        (d - 4800) as f64 / 48.0
    );
}

/// What jamrig keeps today: the spacing to within one JACK period plus the
/// scheduling jitter of its MIDI thread (up to 5 ms allowed: jackd runs without
/// real-time priority here, on two cores shared with builds), and a latency of
/// about one period plus 64 frames.
#[test]
fn note_spacing_is_kept_within_one_jack_period() {
    let _serial = serial();
    let mut r = Rig::start("drums(10);\n", &[]);
    let mut errors = Vec::new();
    for distance in [4800u32, 4800 + 128, 7200, 4800 + 64, 9600] {
        let (d, latency) = two_hits(&mut r, distance);
        let err = d - distance as i64;
        println!("hits sent {distance} frames apart sound {d} frames apart ({err:+}); latency {latency} frames");
        assert!(
            err.abs() <= PERIOD as i64 + 240,
            "hits sent {distance} frames apart sound {d} frames apart ({err:+} frames, {:+.2} ms)",
            err as f64 / 48.0
        );
        assert!(
            (0..=4 * PERIOD as i64 + 64).contains(&latency),
            "latency {latency} frames from sending to sound (expected about one period + 64 frames)"
        );
        errors.push(err);
    }
    println!("spacing errors (frames): {errors:?}");
}

#[test]
fn editing_the_set_while_playing_changes_the_sound() {
    let _serial = serial();
    let set =
        |cut: u32| format!("tempo(120);\nchannel(1, #{{ synth: \"saw\", envelope: \"organ\", lowpass: {cut} }});\n");
    let mut r = Rig::start(&set(8000), &[]);
    r.probe.send_now(&[0x90, 57, 100]); // A3, held
    std::thread::sleep(MS(200));
    let before = r.probe.record(0.5).mono();
    assert!(rms(&before) > 0.02, "the held note does not sound");

    let from = r.jam.out.len();
    let t0 = Instant::now();
    save_like_an_editor(&r.set, &set(400));
    let (_, at, line) = r.jam.expect_line(from, S(5), "`reloaded ...`", |l| l.starts_with("reloaded"));
    let latency = at.duration_since(t0);
    println!("save -> `{line}` in {:.1} ms", latency.as_secs_f64() * 1e3);
    assert!(line.contains("ch1 lowpass 8000 -> 400"), "the reload line does not name the change: {line}");
    assert!(latency < S(1), "the reload line came {latency:?} after the save");

    std::thread::sleep(MS(100));
    let after = r.probe.record(0.5).mono();
    assert!(rms(&after) > 0.005, "the note stopped with the reload");
    let (hb, ha) = (
        median_of_pieces(&before, 5, |p| energy_above(p, 2000.0)),
        median_of_pieces(&after, 5, |p| energy_above(p, 2000.0)),
    );
    let (cb, ca) = (median_of_pieces(&before, 5, centroid), median_of_pieces(&after, 5, centroid));
    println!(
        "energy above 2 kHz {:.1} dB -> {:.1} dB; centroid {cb:.0} Hz -> {ca:.0} Hz",
        10.0 * hb.log10(),
        10.0 * ha.log10()
    );
    assert!(ha < hb * 0.01, "energy above 2 kHz drops only {:.1} dB", 10.0 * (ha / hb).log10());
    assert!(ca < cb * 0.5, "centroid {cb:.0} Hz -> {ca:.0} Hz");
    assert!(r.jam.running());
}

#[test]
fn a_broken_save_keeps_the_previous_set_playing() {
    let _serial = serial();
    let mut r = Rig::start(SINE_SET, &[]);
    r.probe.send_now(&[0x90, 69, 100]);
    std::thread::sleep(MS(200));
    let before = rms(&r.probe.record(0.5).mono());
    assert!(before > 0.02, "the held note does not sound");

    let from = r.jam.out.len();
    save_like_an_editor(&r.set, &format!("{SINE_SET}let x = ;\n"));
    let (i, _, line) = r.jam.expect_line(from, S(5), "`reload failed ...`", |l| l.starts_with("reload failed"));
    let at = format!("{}:3:9: ", r.set.display());
    assert!(
        line.starts_with("reload failed, still playing the previous set: ") && line.contains(&at),
        "the failure line does not say where (expected `{at}`): {line}"
    );
    let (_, _, caret) =
        r.jam.expect_line(i + 1, S(2), "with the caret", |l| l.contains('│') && l.trim_end().ends_with('^'));
    let (_, _, source) = r.jam.expect_line(i + 1, S(2), "quoting the line", |l| l.contains("│ let x = ;"));
    println!("{line}\n{source}\n{caret}");
    // Regression (issue 13): the error was printed twice (the line, then the
    // report's own header). Once now.
    std::thread::sleep(MS(100));
    let said = r.jam.out.all()[from..].iter().filter(|l| l.contains("syntax error")).count();
    assert_eq!(said, 1, "the error is printed {said} times:\n{}", r.jam.out.text());

    std::thread::sleep(MS(100));
    let c = r.probe.record(0.5).mono();
    let after = rms(&c);
    println!("RMS {:.2} dB -> {:.2} dB", db(before), db(after));
    assert!((db(after) - db(before)).abs() < 1.0, "level changed from {:.2} dB to {:.2} dB", db(before), db(after));
    let f = peak_freq(&c, SR, 300.0, 600.0);
    assert!(cents(f, A4).abs() < 1.0, "plays {f:.2} Hz after the failed reload");

    let from = r.jam.out.len();
    save_like_an_editor(&r.set, "tempo(120);\nchannel(1, #{ synth: \"sine\", envelope: \"organ\", volume: 0.3 });\n");
    let (_, _, line) = r.jam.expect_line(from, S(5), "`reloaded ...` after the fix", |l| l.starts_with("reload"));
    assert!(line.starts_with("reloaded in ") && line.contains("ch1 volume 0.6 -> 0.3"), "after the fix: {line}");
    std::thread::sleep(MS(100));
    let fixed = rms(&r.probe.record(0.5).mono());
    let change = db(fixed) - db(before);
    assert!((change - db(0.5)).abs() < 1.0, "volume 0.6 -> 0.3 changed the level by {change:.2} dB");
}

#[test]
fn the_repl_reads_stdin() {
    let _serial = serial();
    let mut r = Rig::start(&format!("{SINE_SET}drums(10);\n"), &[]);
    r.probe.send_now(&[0x90, 69, 100]);
    std::thread::sleep(MS(200));
    let loud = rms(&r.probe.record(0.5).mono());
    assert!(loud > 0.02, "the held note does not sound");

    let (_, line) = r.jam.command("ch(1).volume = 0.1", S(5), |l| !l.trim().is_empty());
    assert!(line.contains("ch1 volume 0.6 -> 0.1"), "answer to the volume change: {line}");
    std::thread::sleep(MS(100));
    let soft = rms(&r.probe.record(0.5).mono());
    let change = db(soft) - db(loud);
    let expected = db(0.1 / 0.6);
    println!("volume 0.6 -> 0.1: {change:.2} dB (expected {expected:.2} dB)");
    assert!(
        (change - expected).abs() < 1.0,
        "volume 0.6 -> 0.1 changed the level by {change:.2} dB, expected {expected:.2} dB"
    );

    let (start, _) = r.jam.command(":status", S(5), |l| l.starts_with("set "));
    let (end, _, _) = r.jam.expect_line(start, S(5), "ending :status (events: ...)", |l| l.starts_with("events:"));
    let status = r.jam.out.all()[start..=end].to_vec();
    assert!(
        status.iter().any(|l| l.starts_with("  ch1 ") && l.contains("sine")),
        ":status has no line for ch1: {status:#?}"
    );
    assert!(status.iter().any(|l| l.starts_with("  ch10")), ":status has no line for ch10: {status:#?}");
    assert!(status.iter().any(|l| l.starts_with("audio: JACK Output")), ":status has no audio line: {status:#?}");

    let (_, line) = r.jam.command(":tempo 90", S(5), |l| !l.trim().is_empty());
    assert_eq!(line, "tempo 120 -> 90");
    let (_, line) = r.jam.command(":tempo", S(5), |l| !l.trim().is_empty());
    assert_eq!(line, "tempo 90 BPM (:tempo BPM changes it)");

    // Regressions (issue 13): a `let` is there on the next line, a bare
    // expression shows its value, an open brace goes on on the next line.
    let (_, line) = r.jam.command("let v = 0.2;", S(5), |l| !l.trim().is_empty());
    assert_eq!(line, "(no change)");
    let (_, line) = r.jam.command("ch(1).volume = v", S(5), |l| !l.trim().is_empty());
    assert_eq!(line, "ch1 volume 0.1 -> 0.2");
    let (_, line) = r.jam.command("note(\"A4\") + 12", S(5), |l| !l.trim().is_empty());
    assert_eq!(line, "=> 81");
    r.jam.send_line("if v > 0.1 {");
    r.jam.send_line("    ch(1).volume = 0.3;");
    let (_, line) = r.jam.command("}", S(5), |l| !l.trim().is_empty());
    assert_eq!(line, "ch1 volume 0.2 -> 0.3");
    let (_, line) = r.jam.command(":keys 17", S(5), |l| !l.trim().is_empty());
    assert_eq!(line, ":keys: channel 17 is not 1..16 (e.g. :keys 2 3)");
    let (_, line) = r.jam.command(":log", S(5), |l| !l.trim().is_empty());
    assert_eq!(line, "MIDI log off (:log on|off)");
    let (_, line) = r.jam.command(":watch", S(5), |l| !l.trim().is_empty());
    assert_eq!(line, "watching the set: on (:watch on|off)");
    let (_, line) = r.jam.command(":frobnicate", S(5), |l| !l.trim().is_empty());
    assert!(line.starts_with("unknown command :frobnicate"), "answer to an unknown command: {line}");

    // A mini-notation pattern from a REPL line, and its grid (:events).
    let (_, line) = r.jam.command("pattern(\"beat\", 10, mini(\"bd*2 [~ sn]\"));", S(5), |l| !l.trim().is_empty());
    assert!(line.contains("beat"), "answer to the pattern: {line}");
    let (start, line) = r.jam.command(":events beat 2", S(5), |l| l.starts_with("beat on channel 10"));
    assert_eq!(line, "beat on channel 10: 2 bars of 4 beats, 4 steps a bar");
    let (end, _, _) = r.jam.expect_line(start, S(5), "bar 2 of the grid", |l| l.starts_with("bar 2"));
    let grid = r.jam.out.all()[start + 1..=end].to_vec();
    assert_eq!(grid[1..], ["bar 1    xx..   ...x", "bar 2    xx..   ...x"], "grid: {grid:#?}");

    let from = r.jam.out.len();
    r.jam.close_stdin();
    let status = r.jam.wait_exit(S(3));
    assert!(status.is_some_and(|s| s.success()), "closing stdin: jamrig exits with {status:?}\n{}", r.jam.transcript());
    r.jam.expect_line(from, S(1), "saying why it stops", |l| {
        l == "end of input: stopping (--no-repl plays on without reading stdin)"
    });
    r.jam.expect_line(from, S(1), "`stopped`", |l| l == "stopped");
}

#[test]
fn sigterm_stops_cleanly_and_releases_the_notes() {
    let _serial = serial();
    let mut r = Rig::start(SINE_SET, &["--no-repl"]);
    r.probe.send_now(&[0x90, 69, 100]);
    std::thread::sleep(MS(200));
    let frames = r.probe.start_recording(3.0);
    std::thread::sleep(MS(800));
    let t0 = Instant::now();
    r.jam.signal("TERM");
    let status = r.jam.wait_exit(S(2));
    let took = t0.elapsed();
    assert!(status.is_some(), "jamrig still runs 2 s after SIGTERM");
    println!("SIGTERM -> exit in {:.0} ms", took.as_secs_f64() * 1e3);
    assert!(status.unwrap().success(), "exit status after SIGTERM: {status:?}");
    r.jam.expect_line(0, S(1), "`stopped`", |l| l == "stopped");

    let c = r.probe.finish(frames);
    let x = &c.left;
    let steady = peak(&x[(0.1 * SR) as usize..(0.6 * SR) as usize]);
    assert!(steady > 0.05, "the held note does not sound");
    let last = x.iter().rposition(|v| *v != 0.0).expect("sound in the capture");
    assert!(last > (0.7 * SR) as usize, "the sound stopped {:.3} s into the capture, before SIGTERM", last as f64 / SR);
    assert!(last + ((0.1 * SR) as usize) < x.len(), "no silence at the end of the capture");
    let tail = peak(&x[last.saturating_sub(PERIOD as usize - 1)..=last]);
    let loud_end = x[..=last].iter().rposition(|v| v.abs() >= 0.5 * steady).unwrap();
    let fade_ms = (last - loud_end) as f64 / SR * 1e3;
    println!(
        "last block before silence: peak {:.1} dB below the note; fade from -6 dB to silence {fade_ms:.1} ms",
        db(steady) - db(tail)
    );
    assert!(
        tail < 0.1 * steady,
        "hard cut: the last block before silence peaks at {:.1} dB of the note",
        db(tail) - db(steady)
    );
    assert!(fade_ms >= 5.0, "the note ends in {fade_ms:.1} ms from half level: not released");
}

/// Brings the server down and up again (the probe too); returns the time from
/// starting the server again to `audio device back`.
fn restart_server(r: &mut Rig) -> Duration {
    restart_server_via(r, Via::Jack)
}

/// [`restart_server`] for a jamrig reaching the server `via`: through ALSA, the
/// probe is back before jamrig reopens the device (the plugin wires its outputs to
/// the probe's inputs when it opens).
fn restart_server_via(r: &mut Rig, via: Via) -> Duration {
    r.probe.close();
    let from = r.jam.out.len();
    r.server.kill("KILL");
    r.jam.expect_line(from, S(5), "`audio device lost ...`", |l| l.starts_with("audio device lost"));
    assert!(r.jam.running(), "jamrig exited when the server went away");
    std::thread::sleep(MS(500));
    let from = r.jam.out.len();
    let t0 = Instant::now();
    r.server.restart();
    if via == Via::Alsa {
        r.probe.reopen(&r.server.name);
    }
    let (_, at, _) = r.jam.expect_line(from, S(5), "`audio device back ...`", |l| l.starts_with("audio device back"));
    if via == Via::Jack {
        r.probe.reopen(&r.server.name);
    }
    std::thread::sleep(MS(300));
    assert!(r.jam.running(), "jamrig exited after the server came back\n{}", r.jam.transcript());
    at.duration_since(t0)
}

const PATTERN_SET: &str = "tempo(120);\nchannel(1, #{ synth: \"saw\", envelope: \"organ\" });\n\
                           pattern(\"p\", 1, 1.0, [[0.0, \"A3\", 100, 0.75]]);\n";

#[test]
fn audio_comes_back_after_a_jack_server_restart() {
    let _serial = serial();
    let mut r = Rig::start(PATTERN_SET, &[]);
    let c = r.probe.record(1.0).mono();
    assert!(rms(&c) > 0.01, "the pattern does not play");
    let back = restart_server(&mut r);
    println!("server up -> `audio device back` in {:.0} ms", back.as_secs_f64() * 1e3);
    r.probe.connect_jamrig_audio(S(5));
    std::thread::sleep(MS(200));
    let c = r.probe.record(1.5).mono();
    assert!(rms(&c) > 0.01, "no audio after the server came back (RMS {})", rms(&c));
    let f = peak_freq(&c, SR, 150.0, 300.0);
    assert!(cents(f, 220.0).abs() < 5.0, "after the restart the pattern plays {f:.2} Hz, expected A3 (220 Hz)");
    let (_, line) = r.jam.command(":status", S(5), |l| l.starts_with("audio:"));
    assert!(line.starts_with("audio: JACK Output"), "{line}");
}

#[test]
fn the_midi_port_is_reattached_after_a_jack_server_restart() {
    let _serial = serial();
    let mut r = Rig::start(SINE_SET, &[]);
    let from = r.jam.out.len();
    restart_server(&mut r);
    let port = r.probe.midi_port.clone();
    r.jam.expect_line(from, S(4), "re-attaching the MIDI port", |l| l == format!("MIDI in: {port}"));
    r.probe.connect_jamrig_audio(S(5));
    r.probe.send_now(&[0x90, 72, 100]);
    std::thread::sleep(MS(150));
    assert_pitch(&mut r.probe, C5, "C5 after the restart");
}

#[test]
fn jamrigs_own_midi_port_comes_back_after_a_jack_server_restart() {
    let _serial = serial();
    let server = JackServer::start(server());
    let dir = tempfile::tempdir().unwrap();
    let set = dir.path().join("set.rhai");
    std::fs::write(&set, SINE_SET).unwrap();
    // No MIDI port exists when jamrig starts: it opens its own.
    let jam = Jamrig::start(&server.name, &set, &[]);
    let line = jam.wait_started(S(20));
    assert!(line.contains("listening on jamrig:in (jamrig's own port)"), "{line}");
    let mut probe = Probe::open(&server.name);
    probe.close();
    let mut r = Rig { probe, jam, server, set, _dir: dir };
    restart_server(&mut r);
    let t0 = Instant::now();
    while r.probe.ports("^jamrig:in$").is_empty() {
        assert!(t0.elapsed() < S(4), "jamrig:in is not back 4 s after the server; ports: {:?}", r.probe.ports(".*"));
        std::thread::sleep(MS(50));
    }
    r.probe.connect_jamrig_audio(S(5));
    r.probe.connect_midi_to("jamrig:in");
    r.probe.send_now(&[0x90, 72, 100]);
    std::thread::sleep(MS(150));
    assert_pitch(&mut r.probe, C5, "C5 through jamrig:in after the restart");
}

#[test]
fn a_midi_port_that_appears_later_is_attached() {
    let _serial = serial();
    let server = JackServer::start(server());
    let dir = tempfile::tempdir().unwrap();
    let set = dir.path().join("set.rhai");
    std::fs::write(&set, SINE_SET).unwrap();
    let jam = Jamrig::start(&server.name, &set, &["--port", PROBE_MIDI]);
    let line = jam.wait_started(S(20));
    assert!(
        line.contains(&format!("no MIDI input matches \"{PROBE_MIDI}\"; it will be attached when it appears"))
            && line.contains("listening on jamrig:in (jamrig's own port)"),
        "startup line: {line}"
    );
    std::thread::sleep(MS(1500));
    let from = jam.out.len();
    let t0 = Instant::now();
    let probe = Probe::open(&server.name);
    let want = format!("MIDI in: {}", probe.midi_port);
    let (_, at, _) = jam.expect_line(from, S(3), &format!("`{want}`"), |l| l == want);
    println!("port created -> `{want}` in {:.0} ms", at.duration_since(t0).as_secs_f64() * 1e3);
    let mut r = Rig { probe, jam, server, set, _dir: dir };
    r.probe.connect_jamrig_audio(S(5));
    r.probe.send_now(&[0x90, 69, 100]);
    std::thread::sleep(MS(150));
    assert_pitch(&mut r.probe, A4, "A4 through the attached port");
    // jamrig's one client has no second MIDI input once the wanted port is
    // attached: its input is connected to that port.
    assert_eq!(r.probe.ports("^jamrig.*:in$"), ["jamrig:in"], "{:?}", r.probe.ports(".*"));
}

#[test]
fn no_audio_device_exits_with_code_3() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let set = dir.path().join("set.rhai");
    std::fs::write(&set, SINE_SET).unwrap();
    // No server of this name runs, and the machine has no sound card.
    let name = format!("{}_absent", server());
    let mut jam = Jamrig::start(&name, &set, &["--no-repl"]);
    let status = jam.wait_exit(S(15));
    let status =
        status.unwrap_or_else(|| panic!("jamrig still runs 15 s without an audio device\n{}", jam.transcript()));
    std::thread::sleep(MS(50));
    let err = jam.err.text();
    assert_eq!(status.code(), Some(3), "exit status without an audio device\n{}", jam.transcript());
    assert!(err.starts_with("error: no usable audio output ("), "stderr: {err}");
    for noise in ["ALSA lib", "Cannot connect to server", "jack server is not running", "JackShm", "Cannot open"] {
        assert!(!err.contains(noise), "library noise ({noise}) on stderr:\n{err}");
    }
    assert!(err.lines().count() <= 3, "stderr is more than the error message:\n{err}");
    assert!(jam.out.all().iter().all(|l| !l.starts_with("playing ")), "stdout: {}", jam.out.text());
}

#[test]
fn malformed_midi_is_ignored() {
    let _serial = serial();
    let mut r = Rig::start(SINE_SET, &[]);
    r.jam.command(":log on", S(5), |l| l == "MIDI log on");
    let garbage: &[&[u8]] = &[
        &[0x90],                               // note on, no data
        &[0x90, 69],                           // note on, no velocity
        &[69, 100],                            // data bytes without status
        &[0x45],                               // one data byte
        &[0xF0, 0x7E, 0x7F, 0x09, 0x01, 0xF7], // sysex (GM on)
        &[0xF0, 0x43, 0x12, 0x00],             // unterminated sysex
        &[0xF7],                               // stray end of sysex
        &[0xF4],                               // undefined status
        &[0xF5, 0x01, 0x02],                   // undefined status with data
        &[0xFD],                               // undefined real-time
        &[0x90, 0xC5, 0xE4],                   // "data" bytes with the top bit set
        &[0xB0, 120],                          // control change, no value
        &[0xE0, 0x00],                         // pitch bend, one byte
        &[0xF2, 0x10],                         // song position, one byte
        &[0xC0],                               // program change, no program
        &[0x80],                               // note off, no data
        &[0xA0, 69, 50],                       // polyphonic aftertouch (unused)
        &[0xFF; 24],                           // a run of resets
    ];
    let frames = r.probe.start_recording(0.6);
    r.probe.wait_cycles(2, S(5));
    let batch: Vec<(u32, &[u8])> = garbage.iter().enumerate().map(|(i, m)| (i as u32 * 7, *m)).collect();
    r.probe.send(&batch);
    let quiet = r.probe.finish(frames);
    assert_eq!(peak(&quiet.mono()), 0.0, "malformed MIDI made a sound");
    assert!(r.jam.running(), "jamrig died on malformed MIDI\n{}", r.jam.transcript());
    r.jam.command(":status", S(5), |l| l.starts_with("events:"));

    let from = r.jam.out.len();
    r.probe.send_now(&[0x90, 72, 100]);
    std::thread::sleep(MS(150));
    assert_pitch(&mut r.probe, C5, "C5 after malformed MIDI");
    r.jam.expect_line(from, S(2), "logging the valid note", |l| {
        l.starts_with("midi ") && l.ends_with(": ch1 note on C5 (72) vel 100")
    });
    assert!(r.jam.running());
}

// ---- Recording to a MIDI file ----

/// A track as (absolute tick, message bytes), meta events as `FF type data`.
type SmfTrack = Vec<(u64, Vec<u8>)>;

/// A Standard MIDI File read by a reader written here, independent of the one
/// jamrig writes with: (format, ticks per beat, tracks).
fn read_smf(bytes: &[u8]) -> (u16, u16, Vec<SmfTrack>) {
    let be16 = |b: &[u8]| u16::from_be_bytes([b[0], b[1]]);
    let be32 = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    assert_eq!(&bytes[..4], b"MThd");
    let hlen = be32(&bytes[4..]) as usize;
    let (format, ntracks, division) = (be16(&bytes[8..]), be16(&bytes[10..]), be16(&bytes[12..]));
    let mut at = 8 + hlen;
    let mut tracks = Vec::new();
    for _ in 0..ntracks {
        assert_eq!(&bytes[at..at + 4], b"MTrk", "track chunk at byte {at}");
        let len = be32(&bytes[at + 4..]) as usize;
        let data = &bytes[at + 8..at + 8 + len];
        at += 8 + len;
        let (mut i, mut tick, mut status) = (0usize, 0u64, 0u8);
        let mut events = Vec::new();
        let vlq = |i: &mut usize| {
            let mut v = 0u64;
            loop {
                let b = data[*i];
                *i += 1;
                v = v << 7 | (b & 0x7f) as u64;
                if b & 0x80 == 0 {
                    return v;
                }
            }
        };
        while i < data.len() {
            tick += vlq(&mut i);
            if data[i] & 0x80 != 0 {
                status = data[i];
                i += 1;
            }
            match status {
                0xFF => {
                    let kind = data[i];
                    i += 1;
                    let n = vlq(&mut i) as usize;
                    let mut e = vec![0xFF, kind];
                    e.extend_from_slice(&data[i..i + n]);
                    i += n;
                    events.push((tick, e));
                }
                0xF0 | 0xF7 => {
                    let n = vlq(&mut i) as usize;
                    i += n;
                }
                s => {
                    let n = if matches!(s & 0xF0, 0xC0 | 0xD0) { 1 } else { 2 };
                    let mut e = vec![s];
                    e.extend_from_slice(&data[i..i + n]);
                    i += n;
                    events.push((tick, e));
                }
            }
        }
        tracks.push(events);
    }
    (format, division, tracks)
}

#[test]
fn rec_records_midi_input_to_a_type_1_file_with_exact_times() {
    let _serial = serial();
    let mut r = Rig::start(&format!("{SINE_SET}channel(2, \"saw\");\ndrums(10);\n"), &[]);
    // Past the start-up, when the server skips cycles of new clients now and then.
    std::thread::sleep(S(2));
    r.jam.command(":rec", S(5), |l| l.starts_with("recording"));
    // A chord, the same note overlapping itself, a controller, a bend, a drum hit.
    let msgs: Vec<(u32, Vec<u8>)> = vec![
        (0, vec![0x90, 60, 100]),
        (0, vec![0x90, 64, 90]),
        (0, vec![0x90, 67, 80]),
        (4800, vec![0xB0, 74, 33]),
        (9600, vec![0x90, 60, 70]),
        (12000, vec![0x80, 60, 0]),
        (14400, vec![0xE1, 0x00, 0x50]),
        (16800, vec![0x99, 36, 127]),
        (19200, vec![0x80, 60, 0]),
        (21600, vec![0x80, 64, 0]),
        (21600, vec![0x80, 67, 0]),
        (24000, vec![0x91, 48, 100]),
        (28800, vec![0x81, 48, 0]),
    ];
    r.probe.clear_sent();
    let batch: Vec<(u32, &[u8])> = msgs.iter().map(|(d, b)| (*d, b.as_slice())).collect();
    r.probe.send(&batch);
    let sent = r.probe.sent_times(msgs.len(), S(5));
    std::thread::sleep(MS(200));
    r.jam.command(":rec stop", S(5), |l| l.starts_with("recorded"));
    let path = r._dir.path().join("take.mid");
    let (_, line) = r.jam.command(&format!(":rec save {}", path.display()), S(5), |l| l.starts_with("wrote"));
    assert!(line.contains("5 notes") || line.contains("6 notes"), "{line}");

    let (format, tpb, tracks) = read_smf(&std::fs::read(&path).expect("the take was written"));
    assert_eq!(format, 1);
    assert_eq!(tracks.len(), 4, "conductor and channels 1, 2 and 10");
    assert!(
        tracks[0].iter().any(|(t, e)| *t == 0 && e[..2] == [0xFF, 0x51] && e[2..] == [0x07, 0xA1, 0x20]),
        "120 BPM at the start of the conductor track: {:?}",
        tracks[0]
    );
    // Every message comes back on its channel's track, in order, at its time.
    let frames_per_tick = SR * 0.5 / tpb as f64;
    let mut got: Vec<(u64, Vec<u8>)> = tracks[1..].iter().flatten().filter(|(_, e)| e[0] != 0xFF).cloned().collect();
    got.sort_by_key(|(t, _)| *t);
    // The take closes the drum note nobody let go of, at its end.
    assert_eq!(got.last().map(|(_, e)| e.clone()), Some(vec![0x89, 36, 64]), "{got:?}");
    got.pop();
    assert_eq!(got.len(), msgs.len(), "{got:?}");
    let t0 = got[0].0 as f64 * frames_per_tick;
    for ((tick, bytes), ((_, want), sent_at)) in got.iter().zip(msgs.iter().zip(&sent)) {
        let mut want = want.clone();
        if want[0] & 0xF0 == 0x80 {
            // Note-offs are written with the note-off status (velocity 64).
            want[2] = 64;
        }
        assert_eq!(bytes, &want, "message at tick {tick}");
        let at = *tick as f64 * frames_per_tick - t0;
        let expected = sent_at.wrapping_sub(sent[0]) as f64;
        // Within a tick of where the engine placed it; on a loaded machine without
        // real-time scheduling the placement itself can move by a JACK cycle or two
        // (benches/live.rs measures it on a quiet machine: 0 frames).
        let slack = 3.0 * PERIOD as f64 + frames_per_tick;
        assert!((at - expected).abs() <= slack, "{want:?} at frame {at:.0}, sent at {expected}");
    }
}

#[test]
fn record_flag_writes_the_whole_run_on_sigterm() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run.mid");
    let mut r = Rig::start(SINE_SET, &["--no-repl", "--record", path.to_str().unwrap()]);
    std::thread::sleep(S(2));
    r.probe.send(&[(0, &[0x90, 69, 100][..]), (4800, &[0x80, 69, 0][..])]);
    r.probe.sent_times(2, S(5));
    std::thread::sleep(MS(100));
    r.jam.signal("TERM");
    assert!(r.jam.wait_exit(S(3)).is_some_and(|s| s.success()), "jamrig exits cleanly");
    let (_, tpb, tracks) = read_smf(&std::fs::read(&path).expect("--record wrote the file on exit"));
    let notes: Vec<&(u64, Vec<u8>)> = tracks.iter().flatten().filter(|(_, e)| e[0] & 0xF0 == 0x90).collect();
    assert_eq!(notes.len(), 1, "{tracks:?}");
    let offs: Vec<u64> = tracks.iter().flatten().filter(|(_, e)| e[0] & 0xF0 == 0x80).map(|(t, _)| *t).collect();
    assert_eq!(offs.len(), 1);
    let beats = (offs[0] - notes[0].0) as f64 / tpb as f64;
    assert!((beats - 0.2).abs() < 0.002 + 3.0 * PERIOD as f64 / 24_000.0, "0.1 s at 120 BPM is 0.2 beats, got {beats}");
    // Regression (issue 13): stopping sent all-notes-off on every channel, and
    // the take kept them though nobody had played them.
    let controls: Vec<_> = tracks.iter().flatten().filter(|(_, e)| e[0] & 0xF0 == 0xB0).collect();
    assert!(controls.is_empty(), "messages nobody sent in the take: {controls:?}");
}

/// Regression (issue 13): `:quit` with a take that was never saved dropped it
/// silently, and `:rec save` with nothing recorded wrote an empty file. The take
/// is saved beside the set under a free name, and says where; an empty one is
/// not written, and jamrig says why.
#[test]
fn an_unsaved_take_is_saved_on_quit_and_an_empty_one_is_not() {
    let _serial = serial();
    let mut r = Rig::start(SINE_SET, &[]);
    let empty = r._dir.path().join("empty.mid");
    let (_, line) = r.jam.command(&format!(":rec save {}", empty.display()), S(5), |l| !l.trim().is_empty());
    assert!(line.starts_with("nothing recorded: :rec starts a recording"), "{line}");
    assert!(!empty.exists(), "an empty take was written");
    r.jam.command(":rec", S(5), |l| l.starts_with("recording"));
    r.probe.send(&[(0, &[0x90, 69, 100][..]), (4800, &[0x80, 69, 0][..]), (9600, &[0x90, 72, 100][..])]);
    r.probe.sent_times(3, S(5));
    std::thread::sleep(MS(200));
    r.jam.send_line(":quit");
    assert!(r.jam.wait_exit(S(10)).is_some_and(|s| s.success()), "{}", r.jam.transcript());
    let path = r._dir.path().join("take-1.mid");
    let said = format!("the take was not saved: saving it as {}", path.display());
    r.jam.expect_line(0, S(1), "saying where the take went", |l| l == said);
    let (_, _, tracks) = read_smf(&std::fs::read(&path).expect("the take was written"));
    let ons = tracks.iter().flatten().filter(|(_, e)| e[0] & 0xF0 == 0x90).count();
    let offs = tracks.iter().flatten().filter(|(_, e)| e[0] & 0xF0 == 0x80).count();
    assert_eq!((ons, offs), (2, 2), "both notes, the held one ended with the take: {tracks:?}");
}

/// For each onset, its distance in frames to the tick of its beat (`ticks` are the
/// JACK frame times of the song's ticks from its first; every 24th is a beat).
fn offsets_to_beats(on: &[u32], ticks: &[u32]) -> Vec<i64> {
    let beats: Vec<u32> = ticks.iter().step_by(24).copied().collect();
    on.iter()
        .map(|&o| beats.iter().map(|&b| o.wrapping_sub(b) as i32 as i64).min_by_key(|d| d.abs()).expect("beats"))
        .collect()
}

/// MIDI clock through a real MIDI port: the probe runs a jitter-free 24 ppqn
/// clock, then Start. The hats a pattern plays on every beat sound a fixed
/// latency after the tick of their beat (the same for every beat, within 1 ms),
/// follow a tempo change within a beat, and stop with Stop.
#[test]
fn midi_clock_drives_the_patterns_on_the_tick_grid() {
    let _serial = serial();
    let set = "tempo(90); clock(\"midi\"); drums(10);\npattern(\"beat\", 10, 1.0, [[0.0, \"closed_hat\", 100]]);\n";
    let mut r = Rig::start(set, &[]);
    // Onsets stamped with their JACK frame times as they come (a recording would
    // lose a cycle the server skips, and shift everything after it).
    let mut onset_probe = OnsetProbe::open(&r.server.name);
    onset_probe.connect_jamrig_audio(S(5));
    r.probe.set_clock(120.0);
    std::thread::sleep(S(2));
    let silent = r.probe.record(0.5);
    assert_eq!(peak(&silent.mono()), 0.0, "the pattern plays before Start");

    r.probe.take_ticks();
    r.probe.clear_sent();
    onset_probe.take_onsets();
    onset_probe.take_overrun_frames();
    let xruns_before = xruns(&r.server);
    r.probe.send_now(&[0xFA]);
    let start = r.probe.sent_times(1, S(5))[0];
    std::thread::sleep(MS(3000));
    r.probe.set_clock(140.0);
    std::thread::sleep(MS(3000));
    let overruns = xruns(&r.server) - xruns_before;
    let ticks: Vec<u32> = r.probe.take_ticks().into_iter().filter(|t| (t.wrapping_sub(start) as i32) > 0).collect();
    let on: Vec<u32> = onset_probe.take_onsets().into_iter().filter(|o| (o.wrapping_sub(start) as i32) > 0).collect();
    let overrun_frames = onset_probe.take_overrun_frames();

    let offsets = offsets_to_beats(&on, &ticks);
    println!("onset - beat tick (frames): {offsets:?}; {overruns} JACK overruns meanwhile");
    assert!(on.len() >= 12, "only {} hats in 6 s of a 120-140 BPM clock", on.len());
    // The first hat is beat 1 of the song: on the first tick after Start.
    assert_eq!(offsets_to_beats(&on[..1], &ticks[..1]), offsets[..1], "the first hat is not on the first tick");
    let mut sorted = offsets.clone();
    sorted.sort();
    let median = sorted[sorted.len() / 2];
    assert!(
        (0..=4 * PERIOD as i64 + 64).contains(&median),
        "hats sound {median} frames after their ticks (expected about one period + 64)"
    );
    // Every beat, before and after the change (skipping the beat in which the
    // change happens), sits at the same latency within 1 ms.
    // The first tick at 140 BPM (857 frames apart, against 1000 at 120).
    let change = (1..ticks.len()).find(|&i| ticks[i].wrapping_sub(ticks[i - 1]) < 930).expect("the tempo changed");
    let change_beat_frame = ticks[change];
    for (o, d) in on.iter().zip(&offsets) {
        let after_change = o.wrapping_sub(change_beat_frame) as i32;
        if (0..2 * 48000 * 60 / 140).contains(&after_change) {
            continue; // the beat of the change and the one after it: catching up
        }
        // A busy machine makes the server skip a cycle now and then (an XRun in
        // its log), and MIDI placement is then off by whole cycles for a while
        // (see the live benchmarks): only then may a hat be a whole number of
        // periods away.
        let off = d - median;
        let by_cycles = off - (off as f64 / PERIOD as f64).round() as i64 * PERIOD as i64;
        // A hat heard right after a cycle cut short may be heard mid-sound, a
        // fraction of a cycle late: not timed.
        let ok =
            off.abs() <= 48 || (overruns > 0 && by_cycles.abs() <= 48) || near_overrun(*o, &overrun_frames, PERIOD);
        assert!(ok, "a hat is {off} frames off the others' latency ({offsets:?}; {overruns} overruns)");
    }

    // Stop: the hats stop.
    r.probe.send_now(&[0xFC]);
    std::thread::sleep(MS(300));
    let after = r.probe.record(1.0);
    assert_eq!(peak(&after.mono()), 0.0, "hats after Stop");
    r.probe.set_clock(0.0);
}

/// A session through the live path (MIDI notes and a knob through a real port, a
/// REPL tweak, a save of the file), captured with `--capture`; the probe records
/// what jamrig played. `jamrig render --replay` then gives the same samples as
/// the live output, bit for bit, and the same file twice.
#[test]
fn a_captured_session_replays_exactly_as_it_played_live() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let capture = dir.path().join("take");
    let set_v1 = "tempo(112);\nchannel(1, #{ synth: \"saw\", envelope: \"pluck\", lowpass: 2000.0, reverb: 0.2 });\ndrums(10);\npattern(\"beat\", 10, \"rock\");\n";
    let set_v2 = "tempo(128);\nchannel(1, #{ synth: \"square\", envelope: \"pluck\", lowpass: 3000.0, delay: 0.3 });\ndrums(10);\npattern(\"beat\", 10, \"house\");\n";
    let mut r = Rig::start(set_v1, &["--capture", capture.to_str().unwrap()]);
    let xruns_before = xruns(&r.server);
    let frames = r.probe.start_recording(5.0);
    for i in 0..8u8 {
        let note = 57 + i * 2;
        r.probe.send(&[(0, &[0x90, note, 100]), (4000, &[0x80, note, 0]), (6000, &[0xB0, 74, i * 15])]);
        std::thread::sleep(MS(250));
        match i {
            2 => r.jam.send_line("ch(1).reverb = 0.5"),
            5 => save_like_an_editor(&r.set, set_v2),
            _ => {}
        }
    }
    let live = r.probe.finish(frames);
    let overruns = xruns(&r.server) - xruns_before;
    r.jam.send_line(":quit");
    assert!(r.jam.wait_exit(S(10)).is_some_and(|s| s.success()), "jamrig exits cleanly\n{}", r.jam.transcript());
    assert!(r.jam.out.text().contains("capture: wrote"), "{}", r.jam.transcript());

    let (a, _) = replay_capture(&capture, &dir.path().join("a.wav"));
    let (b, _) = replay_capture(&capture, &dir.path().join("b.wav"));
    assert!(a == b, "two replays of the same capture differ");
    assert_found_exactly(&wav_samples(&a), &live, overruns);
}

/// A JACK server restart mid-session: the engine starts again, the capture goes
/// on in a second part, and the replay plays both parts, the second as it was
/// heard after the restart.
#[test]
fn a_capture_goes_on_in_a_new_part_after_the_audio_device_comes_back() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let capture = dir.path().join("take");
    let mut r = Rig::start(PATTERN_SET, &["--capture", capture.to_str().unwrap()]);
    r.probe.send_now(&[0x90, 64, 100]);
    std::thread::sleep(MS(500));
    restart_server(&mut r);
    r.probe.connect_jamrig_audio(S(5));
    std::thread::sleep(MS(200));
    let xruns_before = xruns(&r.server);
    let frames = r.probe.start_recording(2.0);
    r.probe.send(&[(100, &[0x90, 67, 90]), (30_000, &[0x80, 67, 0])]);
    let live = r.probe.finish(frames);
    let overruns = xruns(&r.server) - xruns_before;
    r.jam.send_line(":quit");
    assert!(r.jam.wait_exit(S(10)).is_some_and(|s| s.success()), "jamrig exits cleanly\n{}", r.jam.transcript());
    let out = r.jam.out.text();
    assert!(out.contains("this part ends here: the audio device was reopened"), "{out}");
    assert!(out.contains("capture: goes on in") && out.contains("capture.2.jsonl"), "{out}");
    assert!(capture.join("capture.2.jsonl").is_file());
    let (wav, said) = replay_capture(&capture, &dir.path().join("both.wav"));
    assert!(said.contains("2 parts"), "{said}");
    assert_found_exactly(&wav_samples(&wav), &live, overruns);
}

// ---- The default build's path to JACK or PipeWire: ALSA and its jack plugin ----

/// Regression (issue 13, item 1): through ALSA, a server whose period is not 128
/// refused the default 128-frame buffer ("Buffer size 128 is not in the supported
/// range 256..=16384") and jamrig exited. The buffer now adapts: the nearest size
/// the device takes, in one line; then notes play at their pitch. The same through
/// JACK's own client.
#[test]
fn the_default_buffer_adapts_to_the_server_period() {
    let _serial = serial();
    for via in [Via::Alsa, Via::Jack] {
        for period in PERIODS {
            let mut r = Rig::start_at(SINE_SET, period, via, &[]);
            let said: Vec<String> = r.jam.out.all().into_iter().filter(|l| l.starts_with("audio buffer:")).collect();
            if period == 128 {
                assert!(said.is_empty(), "{via:?} at {period}: {said:?}");
            } else {
                assert_eq!(said.len(), 1, "{via:?} at {period}: one line says the buffer changed: {said:?}");
                assert!(
                    said[0].starts_with(&format!("audio buffer: {period} frames (")) && said[0].contains("not 128"),
                    "{via:?} at {period}: {}",
                    said[0]
                );
            }
            r.probe.send_now(&[0x90, 69, 100]);
            std::thread::sleep(MS(150) + Duration::from_secs_f64(4.0 * period as f64 / SR));
            assert_pitch(&mut r.probe, A4, &format!("A4 {via:?} at period {period}"));
            let (_, line) = r.jam.command(":status", S(5), |l| l.starts_with("audio:"));
            assert!(line.contains(&format!(" {period}-frame callbacks")), "{via:?} at {period}: {line}");
        }
    }
}

/// Regression (issue 13, item 1): `audition` said "playing ..." and then failed
/// at a 1024-frame period, and had no `--buffer`. Through ALSA at every period it
/// now plays the sound on the device.
#[test]
fn audition_plays_through_alsa_at_any_server_period() {
    let _serial = serial();
    for period in PERIODS {
        let server = JackServer::start_with_period(server(), period);
        let mut probe = Probe::open(&server.name);
        let frames = probe.start_recording(2.0);
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_jamrig"))
            .args(["audition", "snare", "--device", "alsa:default"])
            .env("ALSA_CONFIG_PATH", ALSA_JACK_CONF)
            .env("JACK_DEFAULT_SERVER", &server.name)
            .env("JACK_NO_AUDIO_RESERVATION", "1")
            .output()
            .expect("jamrig runs");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "audition at period {period} fails ({}): {err}", out.status);
        assert!(err.contains("playing drum sound snare"), "{err}");
        if period > 128 {
            assert!(err.contains(&format!("audio buffer: {period} frames")), "at {period}: {err}");
        }
        let heard = peak(&probe.finish(frames).mono());
        assert!(heard > 0.05, "at period {period} the probe heard nothing of the snare (peak {heard})");
        // --buffer asks for another size: the nearest the device takes.
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_jamrig"))
            .args(["audition", "snare", "--device", "alsa:default", "--buffer", "2048"])
            .env("ALSA_CONFIG_PATH", ALSA_JACK_CONF)
            .env("JACK_DEFAULT_SERVER", &server.name)
            .env("JACK_NO_AUDIO_RESERVATION", "1")
            .output()
            .expect("jamrig runs");
        assert!(out.status.success(), "--buffer 2048 at {period}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

/// A held A3 on channel 1, after `settle`: its level, its pitch, its share of
/// energy above 2 kHz, and how much louder the left output is than the right (dB).
fn held_a3(r: &mut Rig, settle: Duration) -> (f32, f64, f64, f64) {
    r.probe.send_now(&[0x90, 57, 100]);
    std::thread::sleep(settle);
    let c = r.probe.record(1.0);
    let x = c.mono();
    (rms(&x), peak_freq(&x, SR, 150.0, 400.0), energy_above(&x, 2000.0), (db(rms(&c.left)) - db(rms(&c.right))) as f64)
}

/// Regression (issue 13, item 2): after the JACK server restarted, a channel
/// turned down with CC7 and switched to a flute by program change came back as
/// the set's saw, 25 dB louder, and a knob-closed filter reopened. What MIDI set
/// (a knob, CC7, CC10, CC11, a program change, pitch bend, the pedal) now goes on
/// in the rebuilt engine: the same level, pitch, tone and stereo balance (pan),
/// and the pedal still holds a released note. At periods 128, 256 and 1024.
#[test]
fn midi_state_survives_an_audio_device_restart() {
    let _serial = serial();
    let set =
        "tempo(120);\nchannel(1, #{ synth: \"saw\", envelope: \"organ\" });\ncc(74, \"lowpass\", 200.0, 8000.0, 1);\n";
    for period in PERIODS {
        let mut r = Rig::start_at(set, period, Via::Jack, &[]);
        let (loud, _, bright, centred) = held_a3(&mut r, MS(300));
        r.probe.send_now(&[0x80, 57, 0]);
        // Program 73 (flute), volume 64, pan 30, expression 90, the filter knob
        // half closed, bend up a whole tone (+2 semitones), pedal down.
        r.probe.send(&[
            (0, &[0xC0, 73][..]),
            (0, &[0xB0, 7, 64]),
            (0, &[0xB0, 10, 30]),
            (0, &[0xB0, 11, 90]),
            (0, &[0xB0, 74, 40]),
            (0, &[0xE0, 0x7F, 0x7F]),
            (0, &[0xB0, 64, 127]),
        ]);
        std::thread::sleep(MS(300));
        let settle = MS(400) + Duration::from_secs_f64(4.0 * period as f64 / SR);
        let (level, pitch, tone, balance) = held_a3(&mut r, settle);
        // Pan 30 of 127 is left of centre (constant power: about 8 dB).
        assert!(
            centred.abs() < 1.0 && balance > 4.0,
            "at {period}: CC10 did not pan the channel left (balance {centred:.1} dB -> {balance:.1} dB; level {:.1} -> {:.1} dB, pitch {pitch:.2} Hz)\n{}",
            db(loud),
            db(level),
            r.jam.transcript()
        );
        let b3 = 220.0 * 2f64.powf(2.0 / 12.0 * 8191.0 / 8192.0);
        // A flute's breath moves the measured pitch by a few cents; a lost bend is 200.
        assert!(cents(pitch, b3).abs() < 10.0, "at {period}: bent A3 plays {pitch:.2} Hz, expected {b3:.2}");
        assert!(
            db(level) < db(loud) - 6.0,
            "at {period}: CC7 and CC11 did not turn the channel down ({:.1} dB -> {:.1} dB; pitch {pitch:.2} Hz)\n{}",
            db(loud),
            db(level),
            r.jam.transcript()
        );
        assert!(tone < bright * 0.3, "at {period}: the flute and the knob did not change the tone");
        let from = r.jam.out.len();
        restart_server(&mut r);
        r.probe.connect_jamrig_audio(S(5));
        let port = r.probe.midi_port.clone();
        r.jam.expect_line(from, S(4), "re-attaching the MIDI port", |l| l == format!("MIDI in: {port}"));
        let (level2, pitch2, tone2, balance2) = held_a3(&mut r, settle);
        println!(
            "period {period}: level {:.1} dB before the restart, {:.1} dB after (the set's saw: {:.1} dB); pitch {pitch:.2} -> {pitch2:.2} Hz; energy above 2 kHz {:.1} -> {:.1} dB; left over right {balance:.1} -> {balance2:.1} dB",
            db(level),
            db(level2),
            db(loud),
            10.0 * tone.log10(),
            10.0 * tone2.log10()
        );
        assert!((db(level2) - db(level)).abs() < 1.5, "at {period}: level {:.1} dB -> {:.1} dB", db(level), db(level2));
        assert!(
            (balance2 - balance).abs() < 1.0,
            "at {period}: the pan moved with the restart (left over right {balance:.1} dB -> {balance2:.1} dB)"
        );
        assert!(cents(pitch2, b3).abs() < 10.0, "at {period}: after the restart A3 plays {pitch2:.2} Hz (bend lost?)");
        // The flute behind a half-closed filter has next to nothing above 2 kHz
        // (its breath noise moves that share by a few dB); the set's saw has much.
        assert!(
            (10.0 * (tone2 / tone).log10()).abs() < 10.0 && tone2 < bright * 0.03,
            "at {period}: the tone changed ({:.1} -> {:.1} dB above 2 kHz; the set's saw {:.1} dB)",
            10.0 * tone.log10(),
            10.0 * tone2.log10(),
            10.0 * bright.log10()
        );
        // The pedal is still down: a released note keeps sounding.
        r.probe.send_now(&[0x80, 57, 0]);
        std::thread::sleep(MS(500));
        let held = rms(&r.probe.record(0.5).mono());
        assert!(db(held) > db(level2) - 3.0, "at {period}: the pedal did not hold the note after the restart");
    }
}

/// Regression (issue 13, item 5): a MIDI input that disappeared left its held
/// notes sounding until `:panic` (jamrig said the input was gone). Its notes are
/// now released and its pedal lifted (which lets go of the notes it sustained).
#[test]
fn a_midi_input_that_disappears_releases_its_notes_and_pedal() {
    let _serial = serial();
    let mut r = Rig::start(SINE_SET, &[]);
    let mut listener = Probe::open_as(&r.server.name, "listener", "listener_midi");
    listener.connect_jamrig_audio(S(5));
    // A4 held with the pedal down, C5 pressed and released under the pedal.
    r.probe.send(&[(0, &[0xB0, 64, 127][..]), (0, &[0x90, 69, 100]), (0, &[0x90, 72, 100]), (2400, &[0x80, 72, 0])]);
    std::thread::sleep(MS(400));
    let before = rms(&listener.record(0.3).mono());
    assert!(before > 0.02, "the held notes do not sound");
    let from = r.jam.out.len();
    r.probe.close();
    let (_, _, line) = r.jam.expect_line(from, S(4), "`MIDI input ... is gone`", |l| l.starts_with("MIDI input "));
    assert!(line.contains("is gone (1 held note released, 1 pedal lifted)"), "{line}");
    std::thread::sleep(MS(300));
    let after = peak(&listener.record(0.5).mono());
    assert!(after < 1e-4, "the input is gone and its notes still sound (peak {after}; RMS before {before})");
}

/// A pseudo-terminal: jamrig's stdin, stdout and stderr are its other end, as in a
/// terminal window; what jamrig writes is collected.
struct Pty {
    master: std::fs::File,
    slave: std::fs::File,
}

impl Pty {
    fn open() -> Pty {
        use std::os::fd::FromRawFd;
        let (mut m, mut s) = (0, 0);
        // SAFETY: openpty fills in two new file descriptors, which become Files.
        let r = unsafe { libc::openpty(&mut m, &mut s, std::ptr::null_mut(), std::ptr::null(), std::ptr::null()) };
        assert_eq!(r, 0, "openpty");
        unsafe { Pty { master: std::fs::File::from_raw_fd(m), slave: std::fs::File::from_raw_fd(s) } }
    }

    /// The terminal's local modes (ICANON, ECHO, ...).
    fn lflag(&self) -> libc::tcflag_t {
        use std::os::fd::AsRawFd;
        let mut t = std::mem::MaybeUninit::<libc::termios>::uninit();
        // SAFETY: tcgetattr fills in `t` when it returns 0.
        assert_eq!(unsafe { libc::tcgetattr(self.slave.as_raw_fd(), t.as_mut_ptr()) }, 0);
        unsafe { t.assume_init() }.c_lflag
    }
}

/// Starts `program args...` in a new session whose controlling terminal is `pty`
/// (its stdin, stdout and stderr), with jamrig's environment for `server` and its
/// history under `home`. Returns the child and what it writes to the terminal,
/// collected as it comes.
fn spawn_on_pty(
    pty: &Pty,
    program: &str,
    args: &[&std::ffi::OsStr],
    server: &str,
    home: &Path,
) -> (std::process::Child, Arc<Mutex<String>>) {
    use std::io::Read;
    use std::os::unix::process::CommandExt;
    // SAFETY: pre_exec runs only async-signal-safe calls (setsid, ioctl).
    let child = unsafe {
        std::process::Command::new(program)
            .args(args)
            .env("JACK_DEFAULT_SERVER", server)
            .env("JACK_NO_AUDIO_RESERVATION", "1")
            .env("XDG_DATA_HOME", home)
            .env("TERM", "xterm")
            .stdin(pty.slave.try_clone().unwrap())
            .stdout(pty.slave.try_clone().unwrap())
            .stderr(pty.slave.try_clone().unwrap())
            .pre_exec(|| {
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            })
            .spawn()
            .unwrap_or_else(|e| panic!("{program} does not start: {e}"))
    };
    let seen = Arc::new(Mutex::new(String::new()));
    {
        let (mut master, seen) = (pty.master.try_clone().unwrap(), seen.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = master.read(&mut buf) {
                if n == 0 {
                    break;
                }
                seen.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
    }
    (child, seen)
}

/// Regression (issue 13, item 4): with the REPL on a terminal, SIGTERM printed
/// "stopped" and wrote the capture, but the process lived on until Enter was
/// pressed. It now exits at once, and the terminal is as it was (canonical mode
/// and echo back on).
#[test]
fn sigterm_with_the_repl_on_a_terminal_exits_at_once_and_restores_it() {
    let _serial = serial();
    let server = JackServer::start(server());
    let dir = tempfile::tempdir().unwrap();
    let set = dir.path().join("set.rhai");
    std::fs::write(&set, SINE_SET).unwrap();
    let pty = Pty::open();
    let before = pty.lflag();
    assert!(before & libc::ICANON != 0 && before & libc::ECHO != 0, "a fresh terminal is canonical with echo");
    // The terminal is jamrig's controlling terminal, jamrig in its foreground.
    let (mut child, seen) =
        spawn_on_pty(&pty, env!("CARGO_BIN_EXE_jamrig"), &["play".as_ref(), set.as_os_str()], &server.name, dir.path());
    let t0 = Instant::now();
    while !seen.lock().unwrap().contains("jamrig> ") {
        assert!(t0.elapsed() < S(20), "no prompt on the terminal:\n{}", seen.lock().unwrap());
        std::thread::sleep(MS(20));
    }
    let during = pty.lflag();
    assert!(during & libc::ICANON == 0, "the REPL reads the terminal in raw mode (lflag {during:#x})");
    let t0 = Instant::now();
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .stderr(std::process::Stdio::null())
        .status();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if t0.elapsed() > S(3) {
            let _ = child.kill();
            panic!("jamrig still runs 3 s after SIGTERM:\n{}", seen.lock().unwrap());
        }
        std::thread::sleep(MS(10));
    };
    println!("SIGTERM -> exit in {:.0} ms", t0.elapsed().as_secs_f64() * 1e3);
    assert!(status.success(), "exit status {status}:\n{}", seen.lock().unwrap());
    assert!(seen.lock().unwrap().contains("stopped"), "{}", seen.lock().unwrap());
    let after = pty.lflag();
    assert_eq!(after, before, "the terminal's modes after jamrig exited ({after:#x}, before {before:#x})");
}

/// Regression (issue 13, minor): `jamrig play set.rhai </dev/null` exited at once,
/// silently (the REPL read end of input). It now says that it plays without a
/// REPL, points at `--no-repl`, and plays until SIGTERM. A pipe that ends says
/// why jamrig stops (see `the_repl_reads_stdin`).
#[test]
fn stdin_from_dev_null_plays_on_and_hints_at_no_repl() {
    let _serial = serial();
    let server = JackServer::start(server());
    let dir = tempfile::tempdir().unwrap();
    let set = dir.path().join("set.rhai");
    std::fs::write(&set, SINE_SET).unwrap();
    let mut jam = Jamrig::spawn(&server.name, &set, &[], &[], true);
    jam.wait_started(S(20));
    let (_, _, hint) = jam.expect_line(0, S(1), "the hint", |l| l.contains("--no-repl"));
    assert_eq!(hint, "stdin is /dev/null: playing without a REPL (--no-repl says so; SIGINT or SIGTERM stops)");
    std::thread::sleep(MS(1500));
    assert!(jam.running(), "jamrig stopped with stdin from /dev/null\n{}", jam.transcript());
    jam.signal("TERM");
    assert!(jam.wait_exit(S(3)).is_some_and(|s| s.success()), "{}", jam.transcript());
}

/// Regression (issue 13, item 9): after a JACK overrun, hats that a MIDI clock
/// drives were late by whole cycles (5 to 32 ms) for up to 1.4 s, because the map
/// from JACK frames to engine frames kept its old offset. The probe stalls one
/// cycle (the server overruns and skips cycles); from the next beat on every hat
/// is back at its latency after its beat's tick. At periods 128, 256 and 1024.
#[test]
fn midi_clock_hats_are_on_time_right_after_a_jack_overrun() {
    let _serial = serial();
    let set = "tempo(90); clock(\"midi\"); drums(10);\npattern(\"beat\", 10, 1.0, [[0.0, \"closed_hat\", 100]]);\n";
    for period in PERIODS {
        let mut r = Rig::start_at(set, period, Via::Jack, &[]);
        let mut onset_probe = OnsetProbe::open(&r.server.name);
        onset_probe.connect_jamrig_audio(S(5));
        r.probe.set_clock(120.0);
        std::thread::sleep(S(1));
        r.probe.send_now(&[0xFA]);
        let start = r.probe.sent_times(1, S(5))[0];
        std::thread::sleep(S(3));
        let xruns_before = xruns(&r.server);
        // Mid-beat (beats are 500 ms apart): a stall of three periods and more.
        let stall_ms = (3.0 * period as f64 / SR * 1e3).ceil().max(20.0) as u32;
        onset_probe.take_overrun_frames();
        r.probe.stall(stall_ms);
        let stalled_at = Instant::now();
        std::thread::sleep(S(4));
        let overruns = xruns(&r.server) - xruns_before;
        assert!(overruns > 0, "at {period}: the stall made no overrun:\n{}", r.server.log());
        let mut ticks: Vec<u32> =
            r.probe.take_ticks().into_iter().filter(|t| (t.wrapping_sub(start) as i32) > 0).collect();
        // The stall's frame on the probe's clock (its ticks are at their frames).
        let stall_frame = {
            let waited = stalled_at.elapsed().as_secs_f64();
            ticks.last().unwrap().wrapping_sub((waited * SR) as u32)
        };
        let mut on: Vec<u32> =
            onset_probe.take_onsets().into_iter().filter(|o| (o.wrapping_sub(start) as i32) > 0).collect();
        let mut overrun_frames = onset_probe.take_overrun_frames();
        // The hats before the stall give the latency.
        let before: Vec<i64> = {
            let before_on: Vec<u32> = on.iter().copied().filter(|o| (o.wrapping_sub(stall_frame) as i32) < 0).collect();
            offsets_to_beats(&before_on, &ticks)
        };
        assert!(before.len() >= 3, "at {period}: only {} hats before the stall", before.len());
        let mut sorted = before.clone();
        sorted.sort();
        let latency = sorted[sorted.len() / 2];
        // Every hat from 0.6 s after the stall on (the first may fall in the stall
        // itself) sits at the latency of those before it, within 1 ms. A busy machine
        // overruns now and then by itself: a hat heard in or right after a cycle that
        // was cut short is not timed (the onset client may first hear it a cycle
        // late, mid-sound), and the test listens on, for a bounded time, until four
        // hats are timed.
        let listen_until = stalled_at + S(12);
        loop {
            let offsets = offsets_to_beats(&on, &ticks);
            let (mut checked, mut left_out) = (0, 0);
            for (o, d) in on.iter().zip(&offsets) {
                let after = o.wrapping_sub(stall_frame) as i32;
                if after < (SR * 0.6) as i32 {
                    continue;
                }
                if near_overrun(*o, &overrun_frames, period) {
                    left_out += 1;
                    continue;
                }
                checked += 1;
                assert!(
                    (d - latency).abs() <= 48,
                    "at {period}: a hat {:.1} ms after the overrun is {} frames off the others' latency ({offsets:?})",
                    after as f64 / SR * 1e3,
                    d - latency
                );
            }
            println!(
                "period {period}: stall {stall_ms} ms, {overruns} overruns; onset - beat tick (frames): {offsets:?}; \
                 {checked} hats timed after the stall, {left_out} left out beside overruns"
            );
            if checked >= 4 {
                break;
            }
            assert!(Instant::now() < listen_until, "at {period}: only {checked} hats after the overrun");
            std::thread::sleep(S(2));
            ticks.extend(r.probe.take_ticks());
            on.extend(onset_probe.take_onsets());
            overrun_frames.extend(onset_probe.take_overrun_frames());
        }
        r.probe.set_clock(0.0);
        drop(onset_probe);
    }
}

/// Regression (issue 13, item 3): through ALSA's jack plugin, a killed server left
/// the stream open and silent: `:status` froze ("0-frame callbacks"), with no
/// "device lost" line and no recovery. A callback that stops for a second now
/// counts as a lost device: jamrig says so, reopens the device when the server is
/// back, says so, and the pattern plays again. At periods 128, 256 and 1024.
#[test]
fn a_dead_server_behind_alsa_is_noticed_and_the_device_reopened() {
    let _serial = serial();
    for period in PERIODS {
        let mut r = Rig::start_at(PATTERN_SET, period, Via::Alsa, &[]);
        let c = r.probe.record(1.0).mono();
        assert!(rms(&c) > 0.01, "at {period}: the pattern does not play through ALSA");
        let from = r.jam.out.len();
        let back = restart_server_via(&mut r, Via::Alsa);
        let out = r.jam.out.all()[from..].to_vec();
        let lost = out.iter().find(|l| l.starts_with("audio device lost")).expect("a lost line");
        assert!(lost.contains("no audio callback for 1 s"), "at {period}: {lost}");
        println!("period {period}: {lost}; back {:.0} ms after the server", back.as_secs_f64() * 1e3);
        std::thread::sleep(MS(300));
        let c = r.probe.record(1.5).mono();
        assert!(rms(&c) > 0.01, "at {period}: no audio after the server came back (RMS {})", rms(&c));
        // The median of three half-second pieces (each holds one note of the
        // pattern): a click from an overrun in one piece does not move it.
        let f = median_of_pieces(&c, 3, |p| peak_freq(p, SR, 150.0, 300.0));
        println!("period {period}: after the restart {f:.2} Hz");
        assert!(cents(f, 220.0).abs() < 5.0, "at {period}: after the restart the pattern plays {f:.2} Hz");
        let (_, line) = r.jam.command(":status", S(5), |l| l.starts_with("audio:"));
        assert!(line.contains(&format!(" {period}-frame callbacks")), "at {period}: {line}");
    }
}

/// Runs `jamrig ARGS` with `JACK_DEFAULT_SERVER=server`: (status, stdout, stderr).
fn jamrig_cli(server: &str, args: &[&str]) -> (std::process::ExitStatus, String, String) {
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_jamrig"))
        .args(args)
        .env("JACK_DEFAULT_SERVER", server)
        .env("JACK_NO_AUDIO_RESERVATION", "1")
        .output()
        .expect("jamrig runs");
    (o.status, String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
}

/// Regressions (issue 13): `jamrig ports` listed the JACK server's input among the
/// audio outputs, and with no server said only "(none)" for MIDI. MIDI sources
/// are listed under inputs, the server's output alone under outputs, and without
/// a server jamrig says there is none.
#[test]
fn ports_lists_inputs_and_outputs_apart_and_says_why_midi_is_missing() {
    let _serial = serial();
    let (_, out, _) = jamrig_cli(&format!("{}_absent", server()), &["ports"]);
    assert!(
        out.contains(
            "MIDI inputs:\n  (none: MIDI is unavailable: no JACK server running (this build takes MIDI from JACK))"
        ),
        "{out}"
    );
    let server = JackServer::start(server());
    let probe = Probe::open(&server.name);
    let (status, out, err) = jamrig_cli(&server.name, &["ports"]);
    assert!(status.success(), "{err}");
    let (ins, outs) = out.split_once("audio outputs:").expect("two sections");
    assert!(ins.contains(&probe.midi_port), "the probe's MIDI port is not under the MIDI inputs:\n{out}");
    assert!(outs.contains("JACK Output (JACK)") && !outs.contains("JACK Input"), "audio outputs:\n{outs}");
}

/// Regression (issue 13): `--device Discard` (ALSA's null device, which does not
/// keep time) ran the set hundreds of times faster than real time. It is refused,
/// with exit status 3 (no usable audio output), and says why.
#[test]
fn a_device_that_does_not_keep_time_is_refused() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let set = dir.path().join("set.rhai");
    std::fs::write(&set, SINE_SET).unwrap();
    let (status, out, err) = jamrig_cli(
        &format!("{}_absent", server()),
        &["play", set.to_str().unwrap(), "--device", "Discard", "--no-repl"],
    );
    assert_eq!(status.code(), Some(3), "stdout: {out}\nstderr: {err}");
    assert!(err.contains("does not keep time") && err.contains("--device"), "{err}");
    assert!(!out.contains("playing "), "{out}");
}

/// Regressions (issue 13, minor): `:status` showed the set's instrument on a
/// channel that a MIDI program change had switched, and a reload line started
/// from the file's old value when a knob had moved the parameter ("lowpass 800 ->
/// 900" with the knob at 200). `:status` shows the program's instrument (from the
/// set's `gm_program`, which overrides General MIDI's flute for 73), `:save`
/// keeps it and the knob's position, and the reload line starts from the value
/// heard.
#[test]
fn program_changes_and_knobs_show_in_status_save_and_reload_lines() {
    let _serial = serial();
    let set = |cut: u32| {
        format!(
            "tempo(120);\ngm_program(73, \"organ\");\nchannel(1, #{{ synth: \"saw\", envelope: \"organ\", lowpass: {cut} }});\ncc(74, \"lowpass\", 200.0, 8000.0, 1);\n"
        )
    };
    let mut r = Rig::start(&set(800), &[]);
    r.probe.send(&[(0, &[0xC0, 73][..]), (0, &[0xB0, 74, 0])]);
    let t0 = Instant::now();
    let line = loop {
        let (_, line) = r.jam.command(":status", S(5), |l| l.starts_with("  ch1 "));
        if line.contains("(program 73)") || t0.elapsed() > S(3) {
            break line;
        }
        std::thread::sleep(MS(100));
    };
    assert!(line.starts_with("  ch1  organ (program 73) "), ":status after the program change: {line}");
    let saved = r.set.with_file_name("saved.rhai");
    r.jam.command(&format!(":save {}", saved.display()), S(5), |l| l.starts_with("saved the live rig"));
    let text = std::fs::read_to_string(&saved).expect("the saved set");
    let ch1 = text.lines().find(|l| l.starts_with("channel(1, ")).unwrap_or_else(|| panic!("no channel 1:\n{text}"));
    assert!(ch1.starts_with("channel(1, \"organ\"") && ch1.contains("lowpass: 200.0"), "{ch1}");

    let from = r.jam.out.len();
    save_like_an_editor(&r.set, &set(900));
    let (_, _, line) = r.jam.expect_line(from, S(5), "`reloaded ...`", |l| l.starts_with("reloaded"));
    assert!(line.contains(": ch1 lowpass 200 -> 900"), "the reload line does not start from the knob's value: {line}");
}

/// Regression (issue 13, minor): `jamrig play set.rhai &` from a shell with job
/// control said it played without a REPL, but on its way out it put the
/// terminal's modes back from the background, and the terminal stopped it
/// (SIGTTOU: "Stopped", never "Done"). It plays, hints at `--no-repl`, and exits
/// at SIGTERM.
#[test]
fn in_the_background_of_a_terminal_it_plays_and_exits_at_sigterm() {
    let _serial = serial();
    let server = JackServer::start(server());
    let dir = tempfile::tempdir().unwrap();
    let set = dir.path().join("set.rhai");
    std::fs::write(&set, SINE_SET).unwrap();
    let pty = Pty::open();
    // A shell with job control on the terminal runs jamrig in the background.
    let script = "set -m; \"$0\" play \"$1\" & echo \"pid $!\"; wait $!; echo \"exit $?\"";
    let args = ["-c".as_ref(), script.as_ref(), env!("CARGO_BIN_EXE_jamrig").as_ref(), set.as_os_str()];
    let (mut shell, seen) = spawn_on_pty(&pty, "bash", &args, &server.name, dir.path());
    let wait_for = |what: &str, timeout: Duration| {
        let t0 = Instant::now();
        while !seen.lock().unwrap().contains(what) {
            if t0.elapsed() > timeout {
                return false;
            }
            std::thread::sleep(MS(20));
        }
        true
    };
    let started = wait_for("playing ", S(20));
    let text = seen.lock().unwrap().clone();
    let pid: Option<u32> = text.lines().find_map(|l| l.trim().strip_prefix("pid ")).and_then(|p| p.trim().parse().ok());
    let finish = |shell: &mut std::process::Child| {
        if let Some(p) = pid {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &p.to_string()])
                .stderr(std::process::Stdio::null())
                .status();
        }
        let _ = shell.kill();
        let _ = shell.wait();
    };
    if !started || pid.is_none() {
        finish(&mut shell);
        panic!("jamrig did not start in the background:\n{text}");
    }
    let pid = pid.unwrap();
    let hint = "jamrig runs in the background of its terminal: playing without a REPL (--no-repl says so; SIGINT or SIGTERM stops)";
    let hinted = wait_for(hint, S(2));
    std::thread::sleep(MS(1000));
    let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = state.rsplit_once(") ").and_then(|(_, rest)| rest.chars().next());
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .stderr(std::process::Stdio::null())
        .status();
    let exited = wait_for("exit ", S(3));
    let text = seen.lock().unwrap().clone();
    finish(&mut shell);
    assert!(hinted, "no hint at --no-repl:\n{text}");
    assert!(matches!(state, Some('S' | 'R')), "jamrig is not running in the background (state {state:?}):\n{text}");
    assert!(exited && text.contains("exit 0"), "jamrig did not exit at SIGTERM:\n{text}");
    assert!(text.contains("stopped") && !text.contains("Stopped"), "{text}");
}

/// On JACK, jamrig's client is activated while the set is evaluated. A set that
/// fails to evaluate ends the start as before: the script's error, `path:line:col`
/// with a caret, exit status 1, nothing from JACK on stderr, and the client
/// closed (its ports gone from the server) before jamrig exits.
#[test]
fn a_set_that_fails_to_evaluate_closes_the_jack_client_and_says_why() {
    let _serial = serial();
    let server = JackServer::start(server());
    let dir = tempfile::tempdir().unwrap();
    let set = dir.path().join("set.rhai");
    std::fs::write(&set, "tempo(120);\nchannel(1, \"synth_bass\"\n").unwrap();
    let mut jam = Jamrig::start(&server.name, &set, &["--no-repl"]);
    let status = jam.wait_exit(S(15));
    let status = status.unwrap_or_else(|| panic!("jamrig still runs 15 s after a broken set\n{}", jam.transcript()));
    std::thread::sleep(MS(50));
    let err = jam.err.text();
    assert_eq!(status.code(), Some(1), "exit status after a broken set\n{}", jam.transcript());
    assert!(err.starts_with("error: syntax error"), "stderr: {err}");
    assert!(err.contains("set.rhai:3:1") && err.contains('^'), "the error says where, with a caret:\n{err}");
    for noise in ["Cannot connect to server", "jack server is not running", "JackShm", "Cannot open"] {
        assert!(!err.contains(noise), "library noise ({noise}) on stderr:\n{err}");
    }
    assert!(jam.out.all().iter().all(|l| !l.starts_with("playing ")), "stdout: {}", jam.out.text());
    let lister = open_client(&server.name, "lister").expect("a client");
    assert_eq!(lister.ports(Some("^jamrig"), None, jack::PortFlags::empty()), Vec::<String>::new());
}
