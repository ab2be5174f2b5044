//! MIDI out through ALSA's sequencer, in the default build (midir's ALSA backend;
//! the `jack` build takes MIDI from JACK and has its own tests, tests/midi_out.rs):
//! jamrig's output port is named `jamrig out`, an independent ALSA sequencer
//! client reads what it sends, and the clock and an external channel's notes
//! arrive at their times (an output thread sends each at its frame's wall time).
//! The audio goes to a JACK dummy server through ALSA's jack plugin.
//!
//! Needs the ALSA sequencer (`/dev/snd/seq`, the kernel module snd-seq), which
//! scripts/deps.sh loads where it can. Run with
//! `cargo test --release --test midi_out_alsa` (without the `jack` feature);
//! scripts/test runs it wherever the sequencer exists and says so where it does
//! not. Without a sequencer the test fails, saying what to do.
#![cfg(not(feature = "jack"))]

#[path = "common/live.rs"]
mod live_support;

use live_support::*;
use std::sync::mpsc;
use std::time::Duration;

const S: fn(u64) -> Duration = Duration::from_secs;

/// jamrig's ALSA output is `jamrig out`; connected to a sequencer client's input
/// (the device an external channel names), it sends 24 ticks a beat and the
/// channel's notes on their beats, within a few milliseconds of wall time.
#[test]
fn alsa_midi_out_is_named_jamrig_out_and_sends_clock_and_notes_on_time() {
    assert!(
        std::path::Path::new("/dev/snd/seq").exists(),
        "this machine has no ALSA sequencer (/dev/snd/seq): load it (modprobe snd-seq) to run the ALSA MIDI out test"
    );
    let _serial = serial();
    let server = JackServer::start(server());
    let _probe = Probe::open(&server.name);
    // The reader: a sequencer client of its own, with an input port to send to.
    let (tx, rx) = mpsc::channel::<(u64, Vec<u8>)>();
    let reader = midir::MidiInput::new("alsa-reader").expect("an ALSA sequencer client");
    let _conn = {
        use midir::os::unix::VirtualInput;
        reader
            .create_virtual("reader in", move |us, bytes, _| drop(tx.send((us, bytes.to_vec()))), ())
            .expect("the reader's input port")
    };
    let dir = tempfile::tempdir().unwrap();
    let set = dir.path().join("set.rhai");
    std::fs::write(
        &set,
        "tempo(120);\nclock_out(true);\nchannel(5, #{ midi_out: \"reader in\", out_channel: 2 });\npattern(\"p\", 5, 1.0, [[0.0, \"C4\", 100, 0.25]]);\n",
    )
    .unwrap();
    let mut jam = Jamrig::start_alsa(&server.name, &set, &[]);
    jam.wait_started(S(20));
    jam.expect_line(0, S(5), "connecting the output to the reader", |l| {
        l.starts_with("MIDI out: jamrig out -> ") && l.contains("reader in")
    });
    // The port's name, as other sequencer clients see it.
    let names: Vec<String> = {
        let probe = midir::MidiInput::new("alsa-lister").unwrap();
        probe.ports().iter().filter_map(|p| probe.port_name(p).ok()).collect()
    };
    assert!(names.iter().any(|n| n.contains("jamrig out")), "no port named `jamrig out` among {names:?}");
    while rx.try_recv().is_ok() {}
    std::thread::sleep(S(3));
    let got: Vec<(u64, Vec<u8>)> = rx.try_iter().collect();
    let ticks: Vec<f64> = got.iter().filter(|(_, b)| b[..] == [0xF8]).map(|(t, _)| *t as f64).collect();
    let notes: Vec<f64> = got.iter().filter(|(_, b)| b[..] == [0x91, 60, 100]).map(|(t, _)| *t as f64).collect();
    assert!(ticks.len() >= 120, "{} ticks in 3 s at 120 BPM (48 a second)", ticks.len());
    assert!(notes.len() >= 5, "{} notes in 3 s, one a beat", notes.len());
    assert!(got.iter().any(|(_, b)| b[..] == [0x81, 60, 0]), "note-offs go out too");
    // Timestamps in µs: ticks 20833 µs apart, notes 500 ms apart, each on a tick.
    let tick_gaps: Vec<f64> = ticks.windows(2).map(|w| w[1] - w[0]).collect();
    let worst = tick_gaps.iter().map(|g| (g - 20_833.3).abs()).fold(0.0, f64::max);
    println!("ALSA clock out: {} ticks, worst spacing error {:.0} µs", ticks.len(), worst);
    assert!(worst < 3000.0, "ticks {worst} µs off their spacing: {tick_gaps:?}");
    for w in notes.windows(2) {
        assert!((w[1] - w[0] - 500_000.0).abs() < 3000.0, "notes {} µs apart", w[1] - w[0]);
    }
    for n in &notes {
        let nearest = ticks.iter().map(|t| (t - n).abs()).fold(f64::MAX, f64::min);
        assert!(nearest < 2000.0, "a note {nearest} µs from the nearest tick");
    }
    jam.send_line(":quit");
    assert!(jam.wait_exit(S(10)).is_some_and(|s| s.success()), "jamrig exits cleanly");
}
