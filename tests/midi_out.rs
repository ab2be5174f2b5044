//! End-to-end tests of MIDI out and MIDI clock out: `jamrig play` against a JACK
//! server on the dummy backend, with an independent probe client that records what
//! `jamrig:out` sends, each message with its JACK frame time (and, where it
//! matters, the onsets of jamrig's audio, to line the two up).
//!
//! Run with: `cargo test --release --features jack --test midi_out` (needs jackd2).
#![cfg(feature = "jack")]

#[path = "common/live.rs"]
mod live_support;

use live_support::*;
use std::path::PathBuf;
use std::time::{Duration, Instant};

const SR: f64 = SAMPLE_RATE as f64;
const S: fn(u64) -> Duration = Duration::from_secs;
const MS: fn(u64) -> Duration = Duration::from_millis;

/// A server, a probe, and jamrig playing a set, its MIDI input on the probe's MIDI
/// out, its audio outputs on the probe's inputs. Fields drop in order.
struct Rig {
    probe: Probe,
    jam: Jamrig,
    server: JackServer,
    _set: PathBuf,
    _dir: tempfile::TempDir,
}

impl Rig {
    fn start(set_text: &str, extra: &[&str]) -> Rig {
        let server = JackServer::start(server());
        let dir = tempfile::tempdir().expect("temp dir");
        let set = dir.path().join("set.rhai");
        std::fs::write(&set, set_text).unwrap();
        let probe = Probe::open(&server.name);
        let mut args = vec!["--port", PROBE_MIDI];
        args.extend_from_slice(extra);
        let jam = Jamrig::start(&server.name, &set, &args);
        jam.wait_started(S(20));
        probe.connect_jamrig_audio(S(5));
        Rig { probe, jam, server, _set: set, _dir: dir }
    }

    /// Waits until jamrig says its MIDI output reaches the probe.
    fn wait_out_connected(&self) {
        self.wait_port_connected("jamrig:out", "probe:midi_in");
    }

    /// Waits until jamrig says its output port `port` reaches `to`.
    fn wait_port_connected(&self, port: &str, to: &str) {
        let line = format!("MIDI out: {port} -> {to}");
        self.jam.expect_line(0, S(5), &format!("connecting {port} to {to}"), |l| l.starts_with(&line));
    }

    /// The messages the probe receives over `d` (dropping what came before).
    fn receive_for(&mut self, d: Duration) -> Vec<Received> {
        self.probe.take_received();
        std::thread::sleep(d);
        self.probe.take_received()
    }

    /// What the probe receives until a message `bytes` arrives (within 5 s).
    fn receive_until(&mut self, bytes: &[u8], what: &str) -> Vec<Received> {
        let t0 = Instant::now();
        let mut rx = Vec::new();
        while !rx.iter().any(|m: &Received| m.bytes == bytes) {
            assert!(t0.elapsed() < S(5), "{what}: {rx:?}");
            std::thread::sleep(MS(20));
            rx.extend(self.probe.take_received());
        }
        rx
    }

    /// The delay `:status` says MIDI out leaves after the audio, in frames.
    fn status_latency(&mut self) -> i64 {
        let (_, line) = self.jam.command(":status", S(5), |l| l.starts_with("MIDI out:"));
        let frames = line.split(", ").nth(1).and_then(|w| w.split(' ').next()).and_then(|n| n.parse().ok());
        frames.unwrap_or_else(|| panic!("no latency in the status line: {line}"))
    }
}

/// Overruns the server logged (each may skip whole cycles: then everything jamrig
/// plays after it, audio and MIDI alike, is that much later).
fn xruns(server: &JackServer) -> usize {
    server.log().matches("XRun").count()
}

/// Checks spacings against `expected` frames: each within one frame, except at
/// most `overruns` that are later by whole cycles (the server skipped them).
/// Returns the spacings with those skips taken out.
fn check_spacing(spacing: &[i64], expected: f64, overruns: usize, what: &str) -> Vec<f64> {
    let period = PERIOD as f64;
    let mut skips = 0;
    let mut kept = Vec::new();
    for &d in spacing {
        let e = d as f64 - expected;
        let cycles = (e / period).round();
        assert!(
            (e - cycles * period).abs() <= 1.0,
            "{what}: spacing {d} is not {expected} within a frame: {spacing:?}"
        );
        if cycles != 0.0 {
            assert!(cycles > 0.0, "{what}: a spacing of {d} frames is whole cycles short: {spacing:?}");
            skips += 1;
        }
        kept.push(e - cycles * period + expected);
    }
    assert!(skips <= overruns, "{what}: {skips} spacings whole cycles long, but only {overruns} overruns: {spacing:?}");
    kept
}

/// Frames between two JACK frame times (wrapping).
fn between(a: u32, b: u32) -> i64 {
    b.wrapping_sub(a) as i32 as i64
}

fn status_of(r: &Received) -> u8 {
    r.bytes[0]
}

/// The frames of the received messages whose bytes are `bytes`.
fn frames_of(rx: &[Received], bytes: &[u8]) -> Vec<u32> {
    rx.iter().filter(|r| r.bytes == bytes).map(|r| r.frame).collect()
}

/// An external channel's pattern leaves `jamrig:out` at its exact frames: note-ons
/// on the out channel at the pattern's spacing to the frame, note-offs their length
/// later, and every note at a constant distance from the drum hit jamrig plays on
/// the same beat: the delay `:status` names (the audio's output latency beyond
/// the MIDI port's, so that the two sound together).
#[test]
fn an_external_channels_pattern_leaves_at_its_frames_with_the_audio() {
    let _serial = serial();
    let set = r#"tempo(120);
drums(10);
channel(5, #{ midi_out: "onsets:midi_in", out_channel: 2 });
pattern("hat", 10, 1.0, [[0.0, "closed_hat", 100]]);
pattern("ext", 5, 2.0, [[0.0, "C4", 100, 0.25], [0.5, "E4", 90, 0.25], [1.0, "G4", 80, 0.5]]);
"#;
    // The onset client hears both, downstream of jamrig only (jamrig connects
    // its MIDI output to it when it appears).
    let r = Rig::start(set, &[]);
    let mut onsets = OnsetProbe::open(&r.server.name);
    onsets.connect_jamrig_audio(S(5));
    r.wait_port_connected("jamrig:out-onsets_midi_in", "onsets:midi_in");
    let overruns_before = xruns(&r.server);
    std::thread::sleep(MS(500));
    onsets.take_onsets();
    onsets.take_overrun_frames();
    onsets.take_received();
    std::thread::sleep(S(3));
    let rx = onsets.take_received();
    let hats = onsets.take_onsets();
    let overrun_frames = onsets.take_overrun_frames();
    assert!(rx.iter().all(|m| matches!(status_of(m), 0x91 | 0x81)), "not all on channel 2 as notes: {rx:?}");
    let on: Vec<&Received> = rx.iter().filter(|m| status_of(m) == 0x91).collect();
    assert!(on.len() >= 8, "only {} note-ons in 3 s: {rx:?}", on.len());
    // Every half beat (12000 frames at 120 BPM), C4 E4 G4 and a rest, exactly
    // (but for whole cycles the server skipped).
    let overruns = xruns(&r.server) - overruns_before;
    for w in on.windows(2) {
        let d = between(w[0].frame, w[1].frame);
        let expected = if w[0].bytes[1] == 67 { 24000.0 } else { 12000.0 };
        check_spacing(&[d], expected, overruns, "note-ons");
    }
    for n in &on {
        let (note, vel) = (n.bytes[1], n.bytes[2]);
        assert_eq!(vel, [(60, 100), (64, 90), (67, 80)].iter().find(|(k, _)| *k == note).map(|x| x.1).unwrap_or(0));
        let len = if note == 67 { 12000 } else { 6000 };
        let off = rx.iter().find(|m| m.bytes == [0x81, note, 0] && between(n.frame, m.frame) > 0);
        if let Some(off) = off {
            check_spacing(&[between(n.frame, off.frame)], len as f64, overruns, &format!("note {note}'s length"));
        }
    }
    // Beside the audio: each C4 and G4 falls on a beat, with a hat.
    let mut r = r;
    let latency = r.status_latency();
    let mut distances = Vec::new();
    // Notes from the first hat the onset client heard on (it may start listening
    // after the first beat has sounded).
    let first_hat = *hats.first().expect("hats sound");
    // A hat heard right after a cycle cut short may be heard mid-sound: the
    // notes beside such hats are left out.
    for n in on.iter().filter(|n| {
        n.bytes[1] != 64 && between(first_hat, n.frame) >= 0 && !near_overrun(n.frame, &overrun_frames, PERIOD)
    }) {
        let nearest = hats.iter().map(|h| between(*h, n.frame)).min_by_key(|d| d.abs()).expect("hats sound");
        distances.push(nearest);
    }
    println!("MIDI note - hat onset (frames): {distances:?}; output latency {latency} frames");
    assert!(distances.len() >= 4, "too few notes beside hats: {distances:?}");
    // The onset client itself may miss a cycle when the server overruns (it then
    // hears that hat a cycle late): whole cycles off count against the overruns.
    let overruns = xruns(&r.server) - overruns_before;
    let mut off_by_cycles = 0;
    for d in &distances {
        let e = d - latency;
        let cycles = (e as f64 / PERIOD as f64).round() as i64;
        assert!(
            (e - cycles * PERIOD as i64).abs() <= 2,
            "a note leaves {d} frames after its beat's hat, not {latency}: {distances:?}"
        );
        off_by_cycles += (cycles != 0) as usize;
    }
    assert!(
        off_by_cycles <= overruns,
        "{off_by_cycles} notes whole cycles off with {overruns} overruns: {distances:?}"
    );
    assert!(off_by_cycles * 2 < distances.len(), "most notes are {latency} frames after their hat: {distances:?}");
}

/// Clock out at a steady tempo: ticks 24 to the beat with no jitter beyond one
/// frame (128 BPM: 937.5 frames apart), Stop on `:stop`, and on `:play` Start at
/// the frame of the first tick. Prints the jitter at the port (BENCHMARKS.md).
#[test]
fn clock_out_ticks_evenly_and_starts_and_stops_with_the_transport() {
    let _serial = serial();
    let set = "tempo(128);\nclock_out(true);\nchannel(1, \"organ\");\n";
    let mut r = Rig::start(set, &["--midi-out", "probe:midi_in"]);
    r.wait_out_connected();
    let overruns_before = xruns(&r.server);
    let rx = r.receive_for(S(4));
    let overruns = xruns(&r.server) - overruns_before;
    let ticks = frames_of(&rx, &[0xF8]);
    // 51.2 ticks a second (fewer when the server skips cycles).
    assert!(ticks.len() >= 150, "only {} ticks in 4 s at 128 BPM", ticks.len());
    let period = 60.0 * SR / (128.0 * 24.0);
    let spacing: Vec<i64> = ticks.windows(2).map(|w| between(w[0], w[1])).collect();
    let kept = check_spacing(&spacing, period, overruns, "clock ticks");
    let worst = kept.iter().map(|d| (d - period).abs()).fold(0.0, f64::max);
    // Against the straight line through them (whole skipped cycles taken out): the
    // jitter at the port.
    let n = ticks.len() as f64;
    let at: Vec<f64> = std::iter::once(0.0)
        .chain(kept.iter().scan(0.0, |t, d| {
            *t += d;
            Some(*t)
        }))
        .collect();
    let mean_k = (n - 1.0) / 2.0;
    let mean_t = at.iter().sum::<f64>() / n;
    let slope = at.iter().enumerate().map(|(k, t)| (k as f64 - mean_k) * (t - mean_t)).sum::<f64>()
        / at.iter().enumerate().map(|(k, _)| (k as f64 - mean_k).powi(2)).sum::<f64>();
    let residuals: Vec<f64> = at.iter().enumerate().map(|(k, t)| t - (mean_t + slope * (k as f64 - mean_k))).collect();
    let rms = (residuals.iter().map(|x| x * x).sum::<f64>() / n).sqrt();
    let peak = residuals.iter().fold(0.0f64, |m, x| m.max(x.abs()));
    println!(
        "clock out at 128 BPM, {} ticks ({overruns} server overruns): spacing {:.4} frames (ideal {period}), worst spacing error {worst:.2} frames; jitter against the fit: rms {:.4} ms, peak {:.4} ms",
        ticks.len(),
        slope,
        rms / SR * 1e3,
        peak / SR * 1e3
    );
    assert!(worst <= 1.0, "tick spacing off by {worst} frames: {spacing:?}");
    assert!((slope - period).abs() < 0.01, "ticks {slope} frames apart on average, not {period}");
    assert!(rx.iter().all(|m| m.bytes == [0xF8]), "only ticks while playing: {rx:?}");

    r.jam.command(":stop", S(5), |l| l.contains("stopped"));
    let rx = r.receive_for(MS(500));
    let stops = frames_of(&rx, &[0xFC]);
    assert_eq!(stops.len(), 1, "one Stop on :stop: {rx:?}");
    assert!(rx.iter().all(|m| m.bytes != [0xF8] || between(m.frame, stops[0]) > 0), "ticks after Stop: {rx:?}");

    r.jam.command(":play", S(5), |l| l.contains("playing"));
    let rx = r.receive_for(S(1));
    assert_eq!(rx[0].bytes, [0xFA], "Start first: {:?}", &rx[..rx.len().min(4)]);
    assert_eq!(rx[1].bytes, [0xF8], "then the first tick: {:?}", &rx[..rx.len().min(4)]);
    assert_eq!(rx[0].frame, rx[1].frame, "Start at the frame of the first tick");
    assert!(frames_of(&rx, &[0xF8]).len() > 40);
}

/// Clock out follows an external MIDI clock (a thru with the jitter removed): after
/// the probe's Start, Start and ticks 1000 frames apart (120 BPM) to the frame;
/// Stop on its Stop; Song Position and Continue when it continues from bar 3.
#[test]
fn clock_out_follows_an_external_midi_clock_with_song_position() {
    let _serial = serial();
    let set = "clock(\"midi\");\nclock_out(true);\nchannel(1, \"organ\");\n";
    let mut r = Rig::start(set, &["--midi-out", "probe:midi_in"]);
    r.wait_out_connected();
    r.probe.set_clock(120.0);
    std::thread::sleep(S(1));
    assert!(r.probe.take_received().is_empty(), "clock out sends nothing while the clock in is stopped");
    let overruns_before = xruns(&r.server);
    r.probe.send_now(&[0xFA]);
    let rx = r.receive_for(S(2));
    let overruns = xruns(&r.server) - overruns_before;
    assert_eq!(rx.first().map(|m| m.bytes.clone()), Some(vec![0xFA]), "Start follows the clock's: {:?}", &rx[..3]);
    let ticks = frames_of(&rx, &[0xF8]);
    assert!(ticks.len() > 40, "ticks follow: {}", ticks.len());
    let spacing: Vec<i64> = ticks.windows(2).map(|w| between(w[0], w[1])).collect();
    println!("following 120 BPM: tick spacing {spacing:?}");
    // The follower's fit settles on the incoming ticks within a few; from then on
    // the spacing is the clock's to the frame. An overrun (this machine is shared,
    // and jackd runs without real-time priority) delays the incoming ticks: the
    // ticks around one may move, by less than an engine tick (64 frames).
    let settled = &spacing[8..];
    let off: Vec<i64> = settled.iter().copied().filter(|d| (d - 1000).abs() > 1).collect();
    assert!(
        off.len() <= 6 * overruns,
        "{} ticks off the clock's spacing with {overruns} overruns: {spacing:?}",
        off.len()
    );
    assert!(off.iter().all(|d| (d - 1000).abs() < 64 + PERIOD as i64), "a tick moved too far: {spacing:?}");

    r.probe.send_now(&[0xFC]);
    let rx = r.receive_for(MS(500));
    assert!(rx.iter().any(|m| m.bytes == [0xFC]), "Stop follows the clock's: {rx:?}");
    // Song Position 32 (bar 3 in sixteenths), then Continue.
    r.probe.send(&[(0, &[0xF2, 32, 0]), (100, &[0xFB])]);
    let rx = r.receive_for(S(1));
    let spp = rx.iter().position(|m| m.bytes[0] == 0xF2).expect("Song Position sent");
    assert_eq!(rx[spp].bytes, [0xF2, 32, 0], "Song Position at bar 3");
    assert_eq!(rx[spp + 1].bytes, [0xFB], "then Continue");
    assert!(frames_of(&rx, &[0xF8]).len() > 20, "ticks after Continue");
    r.probe.set_clock(0.0);
}

/// Held external notes are let go: `:panic` sends the note-off of a pattern's long
/// note and of a note held on the MIDI input (which goes out too), and so does
/// quitting, before the port closes.
#[test]
fn held_external_notes_get_note_offs_on_panic_and_on_exit() {
    let _serial = serial();
    let set = r#"tempo(120);
channel(5, #{ midi_out: "probe", out_channel: 1 });
pattern("drone", 5, 4.0, [[0.0, "C3", 100, 3.9]]);
"#;
    let mut r = Rig::start(set, &[]);
    r.wait_port_connected("jamrig:out-probe", "probe:midi_in");
    // A key held on the MIDI input, on the external channel. The drone's first
    // note reaches the probe too when its port is connected before it is sent
    // (the engine plays from the first cycle after it is built): both are waited
    // for, in either order.
    r.probe.send_now(&[0x94, 72, 77]);
    let rx = r.receive_until(&[0x90, 72, 77], "the key on the input does not go out");
    if !rx.iter().any(|m| m.bytes == [0x90, 48, 100]) {
        r.receive_until(&[0x90, 48, 100], "the drone does not start");
    }
    r.jam.command(":panic", S(5), |l| l.starts_with("panic"));
    let rx = r.receive_for(MS(300));
    for note in [48, 72] {
        assert_eq!(frames_of(&rx, &[0x80, note, 0]).len(), 1, "one note-off for {note} on :panic: {rx:?}");
    }
    // The next cycle's drone, then quit while it is held.
    r.receive_until(&[0x90, 48, 100], "the drone does not come back");
    r.jam.send_line(":quit");
    assert!(r.jam.wait_exit(S(5)).is_some_and(|s| s.success()), "jamrig does not quit");
    std::thread::sleep(MS(100));
    let rx = r.probe.take_received();
    assert_eq!(frames_of(&rx, &[0x80, 48, 0]).len(), 1, "the drone's note-off on exit: {rx:?}");
}

/// Clock out never follows itself: with jamrig's output connected back to its
/// input (a device that echoes the clock), its own Start comes back; clock out is
/// refused with a message, and the transport stays jamrig's.
#[test]
fn a_clock_loop_back_into_midi_in_is_refused() {
    let _serial = serial();
    let set = "tempo(120);\nclock_out(true);\nchannel(1, \"organ\");\n";
    let mut r = Rig::start(set, &["--midi-out", "probe:midi_in"]);
    r.wait_out_connected();
    // jamrig:in listens to the probe; the echo joins it.
    r.probe.connect_ports("jamrig:out", "jamrig:in");
    let from = r.jam.out.len();
    r.jam.command(":play", S(5), |l| l.contains("playing"));
    r.jam.expect_line(from, S(3), "refusing the clock loop", |l| l.starts_with("clock out: off: jamrig's own clock"));
    // What was queued before the refusal still leaves, up to its Stop; then nothing.
    let rx = r.receive_for(MS(500));
    let after_stop = rx.iter().skip_while(|m| m.bytes != [0xFC]).skip(1).count();
    assert_eq!(after_stop, 0, "clock messages go on after the loop was refused: {rx:?}");
    assert!(r.receive_for(MS(300)).is_empty(), "the clock is off");
    let (_, line) = r.jam.command(":status", S(5), |l| l.starts_with("MIDI out:"));
    assert!(line.contains("clock out refused (a loop)"), "{line}");
    let (_, line) = r.jam.command(":status", S(5), |l| l.starts_with("set "));
    assert!(line.contains("playing"), "the transport stays jamrig's: {line}");
}

/// Issue 18: `latency_ms` sends a device's messages that many frames earlier. With
/// the clock on (ticks carry no device latency) a note on the beat leaves with its
/// beat's tick; `midi_out("onsets", #{ latency_ms: 5 })` moves it 240 frames (5 ms
/// at 48 kHz) before the tick, to the frame. (The device is the onset client, whose
/// MIDI input is downstream of jamrig only, so that the audio's output latency
/// leaves room to send earlier.)
#[test]
fn latency_ms_sends_a_devices_messages_that_many_frames_earlier() {
    let _serial = serial();
    let set = |latency: &str| {
        format!(
            "tempo(120);\nclock_out(true);\n{latency}channel(5, #{{ midi_out: \"onsets\", out_channel: 1 }});\npattern(\"p\", 5, 1.0, [[0.0, \"C4\", 100, 0.25]]);\n"
        )
    };
    // The clock goes out on jamrig:out, which --midi-out connects to the device
    // too: its ticks and the channel's notes (on jamrig:out-onsets) meet there.
    let mut r = Rig::start(&set(""), &["--no-watch", "--midi-out", "onsets"]);
    let mut onsets = OnsetProbe::open(&r.server.name);
    onsets.connect_jamrig_audio(S(5));
    r.wait_port_connected("jamrig:out", "onsets:midi_in");
    r.wait_port_connected("jamrig:out-onsets", "onsets:midi_in");
    let mut receive = |d: Duration| {
        onsets.take_received();
        std::thread::sleep(d);
        onsets.take_received()
    };
    let shift = |rx: &[Received]| -> Vec<i64> {
        let ticks = frames_of(rx, &[0xF8]);
        let notes = frames_of(rx, &[0x90, 60, 100]);
        assert!(notes.len() >= 3 && ticks.len() >= 60, "notes {notes:?}, {} ticks", ticks.len());
        // The tick nearest each note (ticks are 1000 frames apart).
        notes
            .iter()
            .filter_map(|n| ticks.iter().map(|t| between(*n, *t)).filter(|d| d.abs() < 500).min_by_key(|d| d.abs()))
            .collect()
    };
    std::thread::sleep(MS(300));
    let before = shift(&receive(S(2)));
    let latency = r.status_latency();
    // The earliest a message can leave is one cycle after its frame is handed out.
    let lead = 240.min(latency - PERIOD as i64);
    assert!(lead > 100, "the output latency ({latency} frames) leaves no room to send earlier");
    std::fs::write(&r._set, set("midi_out(\"onsets\", #{ latency_ms: 5 });\n")).unwrap();
    r.jam.command(":reload", S(5), |l| l.starts_with("reload"));
    std::thread::sleep(MS(600));
    let after = shift(&receive(S(2)));
    println!("note-on to its beat's tick (frames): without latency_ms {before:?}, with 5 ms {after:?}");
    assert!(before.len() >= 3 && before.iter().all(|d| *d == 0), "notes leave with their tick: {before:?}");
    assert!(after.len() >= 3 && after.iter().all(|d| *d == lead), "notes leave {lead} frames early: {after:?}");
}

/// Issue 18: an external channel sends out what arrives for it besides notes: a
/// CC-mapped knob as its CC, other controllers, pitch bend, program changes and
/// channel pressure, on its out channel, as far apart as they came in.
#[test]
fn an_external_channel_sends_its_knobs_bend_and_program_changes() {
    let _serial = serial();
    let set =
        "tempo(120);\nchannel(5, #{ midi_out: \"probe\", out_channel: 3 });\ncc(74, \"lowpass\", 200.0, 8000.0, 5);\n";
    let mut r = Rig::start(set, &[]);
    r.wait_port_connected("jamrig:out-probe", "probe:midi_in");
    std::thread::sleep(MS(200));
    r.probe.take_received();
    r.probe.send(&[
        (0, &[0xB4, 74, 100]),
        (10, &[0xB4, 1, 64]),
        (20, &[0xE4, 0, 0x50]),
        (30, &[0xC4, 7]),
        (40, &[0xD4, 60]),
    ]);
    std::thread::sleep(MS(500));
    let rx = r.probe.take_received();
    let bytes: Vec<Vec<u8>> = rx.iter().map(|m| m.bytes.clone()).collect();
    assert_eq!(
        bytes,
        [vec![0xB2, 74, 100], vec![0xB2, 1, 64], vec![0xE2, 0, 0x50], vec![0xC2, 7], vec![0xD2, 60]],
        "{rx:?}"
    );
    let spacing: Vec<i64> = rx.windows(2).map(|w| between(w[0].frame, w[1].frame)).collect();
    assert_eq!(spacing, [10, 10, 10, 10], "as far apart as they came in: {rx:?}");
}

/// Issue 18: `--clock-out` sends the clock whatever the set says; `:midi-out NAME`
/// connects the output at run time; `:clock-out off` stops the clock (Stop, then
/// nothing) and `:clock-out on` starts it again.
#[test]
fn clock_out_and_midi_out_change_at_run_time() {
    let _serial = serial();
    let set = "tempo(120);\nchannel(1, \"organ\");\n";
    let mut r = Rig::start(set, &["--clock-out"]);
    assert!(r.receive_for(MS(500)).is_empty(), "the output goes nowhere until it is connected");
    r.jam.command(":midi-out probe", S(5), |l| l.starts_with("MIDI out: jamrig:out -> probe:midi_in"));
    let rx = r.receive_for(S(1));
    let ticks = frames_of(&rx, &[0xF8]);
    assert!(ticks.len() >= 40, "--clock-out ticks once connected: {} in 1 s", ticks.len());
    let (_, line) = r.jam.command(":midi-out", S(5), |l| l.starts_with("MIDI out:"));
    assert_eq!(line, "MIDI out: jamrig:out -> probe:midi_in");

    r.jam.command(":clock-out off", S(5), |l| l.contains("clock out off"));
    let rx = r.receive_for(MS(500));
    let stops = rx.iter().position(|m| m.bytes == [0xFC]);
    assert!(stops.is_some_and(|i| i == rx.len() - 1), "a Stop, then nothing: {rx:?}");
    assert!(r.receive_for(MS(300)).is_empty(), "the clock is off");
    let (_, line) = r.jam.command(":clock-out", S(5), |l| l.starts_with("clock out"));
    assert_eq!(line, "clock out off (:clock-out on|off)");

    r.jam.command(":clock-out on", S(5), |l| l.contains("clock out on"));
    let rx = r.receive_for(S(1));
    let first = rx.iter().position(|m| m.bytes != [0xF8]).map(|i| rx[i].bytes[0]);
    assert!(matches!(first, Some(0xFA | 0xF2)), "Start, or Song Position and Continue, first: {rx:?}");
    assert!(frames_of(&rx, &[0xF8]).len() >= 40, "ticks again: {rx:?}");
}

/// Issue 18: `:stop`, and a reload that removes an external channel, send the
/// note-off of the note it holds at its device.
#[test]
fn stop_and_a_reload_that_removes_an_external_channel_end_its_notes() {
    let _serial = serial();
    let set = r#"tempo(120);
channel(1, "organ");
channel(5, #{ midi_out: "probe", out_channel: 1 });
pattern("drone", 5, 4.0, [[0.0, "C3", 100, 3.9]]);
"#;
    let mut r = Rig::start(set, &["--no-watch"]);
    r.wait_port_connected("jamrig:out-probe", "probe:midi_in");
    r.receive_until(&[0x90, 48, 100], "the drone does not start");
    r.jam.command(":stop", S(5), |l| l.contains("stopped"));
    let rx = r.receive_for(MS(400));
    assert_eq!(frames_of(&rx, &[0x80, 48, 0]).len(), 1, "the drone's note-off on :stop: {rx:?}");
    r.jam.command(":play", S(5), |l| l.contains("playing"));
    r.receive_until(&[0x90, 48, 100], "the drone does not come back");
    std::fs::write(&r._set, "tempo(120);\nchannel(1, \"organ\");\n").unwrap();
    r.jam.command(":reload", S(5), |l| l.starts_with("reload"));
    let rx = r.receive_for(MS(400));
    assert_eq!(frames_of(&rx, &[0x80, 48, 0]).len(), 1, "the drone's note-off on the reload: {rx:?}");
    assert!(r.receive_for(MS(2500)).is_empty(), "nothing more from the removed channel");
}

/// Opens a stand-in for a hardware device: a probe client `name` whose MIDI input
/// jamrig can send to (its own MIDI output goes nowhere).
fn device(server: &JackServer, name: &str) -> Probe {
    Probe::open_as(&server.name, name, &format!("{name}_out"))
}

/// What `p` receives until a message `bytes` arrives (within 5 s).
fn device_receives_until(p: &mut Probe, bytes: &[u8], what: &str) -> Vec<Received> {
    let t0 = Instant::now();
    let mut rx = Vec::new();
    while !rx.iter().any(|m: &Received| m.bytes == bytes) {
        assert!(t0.elapsed() < S(5), "{what}: {rx:?}");
        std::thread::sleep(MS(20));
        rx.extend(p.take_received());
    }
    rx
}

/// Issue 18: each device a set names has its own output port (`jamrig:out-NAME`,
/// connected to it): two channels naming two devices reach only their own device,
/// each at its own `latency_ms`, to the frame (the device with 5 ms hears its note
/// 240 frames before the other hears the note on the same beat).
#[test]
fn each_device_hears_only_its_own_channel_at_its_own_latency() {
    let _serial = serial();
    let set = r#"tempo(120);
midi_out("synth_b", #{ latency_ms: 5 });
channel(5, #{ midi_out: "synth_a", out_channel: 1 });
channel(6, #{ midi_out: "synth_b", out_channel: 2 });
pattern("a", 5, 1.0, [[0.0, "C4", 100, 0.25]]);
pattern("b", 6, 1.0, [[0.0, "E4", 90, 0.25]]);
"#;
    let mut r = Rig::start(set, &[]);
    let mut a = device(&r.server, "synth_a");
    let mut b = device(&r.server, "synth_b");
    r.wait_port_connected("jamrig:out-synth_a", "synth_a:midi_in");
    r.wait_port_connected("jamrig:out-synth_b", "synth_b:midi_in");
    std::thread::sleep(MS(300));
    a.take_received();
    b.take_received();
    let overruns_before = xruns(&r.server);
    std::thread::sleep(S(3));
    let (rx_a, rx_b) = (a.take_received(), b.take_received());
    let overruns = xruns(&r.server) - overruns_before;
    assert!(
        rx_a.iter().all(|m| m.bytes == [0x90, 60, 100] || m.bytes == [0x80, 60, 0]),
        "synth_a hears channel 5 alone: {rx_a:?}"
    );
    assert!(
        rx_b.iter().all(|m| m.bytes == [0x91, 64, 90] || m.bytes == [0x81, 64, 0]),
        "synth_b hears channel 6 alone: {rx_b:?}"
    );
    let (on_a, on_b) = (frames_of(&rx_a, &[0x90, 60, 100]), frames_of(&rx_b, &[0x91, 64, 90]));
    assert!(on_a.len() >= 4 && on_b.len() >= 4, "notes on every beat: {on_a:?} {on_b:?}");
    check_spacing(&on_a.windows(2).map(|w| between(w[0], w[1])).collect::<Vec<_>>(), 24000.0, overruns, "synth_a");
    check_spacing(&on_b.windows(2).map(|w| between(w[0], w[1])).collect::<Vec<_>>(), 24000.0, overruns, "synth_b");
    let latency = r.status_latency();
    let lead = 240.min(latency - PERIOD as i64);
    assert!(lead > 100, "the output latency ({latency} frames) leaves no room to send earlier");
    // synth_b's note against synth_a's on the same beat.
    let shifts: Vec<i64> =
        on_b.iter().filter_map(|fb| on_a.iter().map(|fa| between(*fa, *fb)).find(|d| d.abs() < 12000)).collect();
    println!("synth_b's note-on - synth_a's on the same beat (frames): {shifts:?}; lead {lead}");
    assert!(shifts.len() >= 3, "too few beats heard by both: {shifts:?}");
    let off = shifts.iter().filter(|d| **d != -lead).count();
    assert!(off <= overruns, "{off} notes not {lead} frames earlier with {overruns} overruns: {shifts:?}");
    let (_, line) = r.jam.command(":midi-out", S(5), |l| l.starts_with("MIDI out:"));
    assert!(
        line.contains("jamrig:out-synth_a -> synth_a:midi_in")
            && line.contains("jamrig:out-synth_b -> synth_b:midi_in"),
        ":midi-out names each device's port: {line}"
    );
}

/// Issue 18: a reload that removes the only channel naming a device sends that
/// device the note-off of the note it held, through its port, and nothing more;
/// the other device plays on, and the removed device's port goes away.
#[test]
fn a_reload_that_removes_a_devices_channel_leaves_no_note_hanging_there() {
    let _serial = serial();
    let keep = "tempo(120);\nchannel(5, #{ midi_out: \"synth_a\", out_channel: 1 });\npattern(\"a\", 5, 1.0, [[0.0, \"C4\", 100, 0.5]]);\n";
    let set = format!(
        "{keep}channel(6, #{{ midi_out: \"synth_b\", out_channel: 1 }});\npattern(\"drone\", 6, 4.0, [[0.0, \"C3\", 100, 3.9]]);\n"
    );
    let mut r = Rig::start(&set, &["--no-watch"]);
    let mut a = device(&r.server, "synth_a");
    let mut b = device(&r.server, "synth_b");
    r.wait_port_connected("jamrig:out-synth_b", "synth_b:midi_in");
    let rx = device_receives_until(&mut b, &[0x90, 48, 100], "the drone does not start");
    assert!(rx.iter().all(|m| m.bytes[1] == 48), "synth_b hears the drone alone: {rx:?}");
    std::fs::write(&r._set, keep).unwrap();
    r.jam.command(":reload", S(5), |l| l.starts_with("reload"));
    std::thread::sleep(MS(400));
    let rx = b.take_received();
    assert_eq!(
        rx.iter().map(|m| m.bytes.clone()).collect::<Vec<_>>(),
        [vec![0x80, 48, 0]],
        "the drone's note-off: {rx:?}"
    );
    a.take_received();
    std::thread::sleep(S(2));
    assert!(b.take_received().is_empty(), "nothing more for the removed device");
    assert!(frames_of(&a.take_received(), &[0x90, 60, 100]).len() >= 3, "synth_a plays on");
    let t0 = Instant::now();
    while !a.ports("jamrig:out-synth_b").is_empty() {
        assert!(t0.elapsed() < S(5), "the removed device's port stays");
        std::thread::sleep(MS(50));
    }
    assert_eq!(a.ports("jamrig:out-synth_a").len(), 1, "the other device keeps its port");
}

/// Issue 18: a knob turned over the control port (`/jamrig/param`) or by a REPL
/// line on an external channel goes out as the CC the set maps to it (the inverse
/// of the position that CC moves it to), and volume without a mapping as CC 7.
#[test]
fn knobs_turned_over_the_control_port_or_the_repl_go_out_as_their_cc() {
    use rosc::{OscMessage, OscPacket, OscType};
    let _serial = serial();
    let set = "tempo(120);\nchannel(5, #{ midi_out: \"synth_a\", out_channel: 3 });\ncc(74, \"lowpass\", 200.0, 8000.0, 5);\n";
    let mut r = Rig::start(set, &["--listen", "0"]);
    let (_, _, line) = r.jam.expect_line(0, S(5), "naming the control port", |l| l.starts_with("control port: "));
    let port: u16 = line
        .split("127.0.0.1:")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {line}"));
    let mut a = device(&r.server, "synth_a");
    r.wait_port_connected("jamrig:out-synth_a", "synth_a:midi_in");
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(S(5))).unwrap();
    let param = |name: &str, value: f32| {
        let args = vec![OscType::Int(5), OscType::String(name.into()), OscType::Float(value)];
        let packet = OscPacket::Message(OscMessage { addr: "/jamrig/param".into(), args });
        sock.send_to(&rosc::encoder::encode(&packet).unwrap(), ("127.0.0.1", port)).unwrap();
        let mut buf = [0u8; 4096];
        let (n, _) = sock.recv_from(&mut buf).expect("a reply");
        match rosc::decoder::decode_udp(&buf[..n]).expect("OSC").1 {
            OscPacket::Message(m) => assert_eq!(m.addr, "/jamrig/reply", "{m:?}"),
            other => panic!("{other:?}"),
        }
    };
    a.take_received();
    // The mapping is exponential (as lowpass is): CC 74 at 64 moves it to
    // 200 * 40^(64/127) Hz.
    param("lowpass", 200.0 * 40f32.powf(64.0 / 127.0));
    let rx = device_receives_until(&mut a, &[0xB2, 74, 64], "the knob's CC does not arrive");
    assert_eq!(rx.len(), 1, "{rx:?}");
    param("volume", 0.5);
    device_receives_until(&mut a, &[0xB2, 7, 64], "volume does not go out as CC 7");
    r.jam.command("ch(5).lowpass = 200", S(5), |l| l.contains("lowpass"));
    device_receives_until(&mut a, &[0xB2, 74, 0], "the REPL's knob does not go out");
}

/// With the audio through ALSA (cpal, here ALSA's jack plugin) rather than JACK,
/// MIDI goes through a JACK client of jamrig's own: an external channel's notes
/// and the clock still leave through their ports, evenly spaced. Frames are placed
/// on JACK's clock through the audio's timestamps there, so the spacing is checked
/// within a millisecond rather than a frame.
#[test]
fn with_the_audio_through_alsa_midi_out_leaves_through_its_own_jack_client() {
    let _serial = serial();
    let server = JackServer::start(server());
    let mut probe = Probe::open(&server.name);
    let dir = tempfile::tempdir().unwrap();
    let set = dir.path().join("set.rhai");
    std::fs::write(
        &set,
        "tempo(120);\nclock_out(true);\nchannel(5, #{ midi_out: \"probe:midi_in\", out_channel: 2 });\npattern(\"p\", 5, 1.0, [[0.0, \"C4\", 100, 0.25]]);\n",
    )
    .unwrap();
    let jam = Jamrig::start_alsa(&server.name, &set, &["--port", PROBE_MIDI]);
    jam.wait_started(S(20));
    jam.expect_line(0, S(5), "connecting the device's port", |l| {
        l.starts_with("MIDI out: jamrig:out-probe_midi_in -> probe:midi_in")
    });
    std::thread::sleep(MS(500));
    probe.take_received();
    let overruns_before = xruns(&server);
    std::thread::sleep(S(4));
    let rx = probe.take_received();
    let overruns = xruns(&server) - overruns_before;
    let notes = frames_of(&rx, &[0x91, 60, 100]);
    assert!(notes.len() >= 6, "only {} notes in 4 s at 120 BPM: {rx:?}", notes.len());
    assert!(!frames_of(&rx, &[0x81, 60, 0]).is_empty(), "no note-off: {rx:?}");
    let ticks = frames_of(&rx, &[0xF8]);
    assert!(ticks.len() >= 150, "only {} clock ticks in 4 s at 120 BPM", ticks.len());
    let spacing: Vec<i64> = notes.windows(2).map(|w| between(w[0], w[1])).collect();
    println!("note-on spacing (frames, 24000 expected): {spacing:?}; overruns {overruns}");
    let off = spacing.iter().filter(|d| (**d - 24000).abs() > 48).count();
    assert!(off <= overruns, "{off} note spacings more than 1 ms from a beat with {overruns} overruns: {spacing:?}");
    let span = between(ticks[0], *ticks.last().unwrap()) as f64 / (ticks.len() - 1) as f64;
    assert!((span - 1000.0).abs() < 10.0, "clock ticks {span:.1} frames apart on average, not 1000");
}
