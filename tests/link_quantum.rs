//! Ableton Link: a quantum changed while the session plays (a reload from
//! `clock("link", 4)` to `clock("link", 3)`) takes effect at once, as the README
//! says: jamrig takes the session's phase at the new quantum, and its patterns go
//! on from there, on the session's bar lines at that quantum. Against a JACK
//! server on the dummy backend and a second Link peer in this process, inside a
//! loopback-only network namespace (see tests/link.rs).
//!
//! Run with: `cargo test --release --features jack --test link_quantum`
//! (needs `unshare` and `ip`, and jackd2).
#![cfg(feature = "jack")]

mod common;
#[path = "common/live.rs"]
mod live_support;

use live_support::*;
use rusty_link::{AblLink, SessionState};
use std::time::Duration;

const S: fn(u64) -> Duration = Duration::from_secs;

/// A closed hat on the first beat of every 4-beat bar, following Link at a
/// quantum of 4.
const BAR_OF_4: &str = r#"tempo(120); clock("link", 4); drums(10);
pattern("bar", 10, 4.0, [[0.0, "closed_hat", 100]]);
"#;

/// The same at 3 beats a bar, at a quantum of 3.
const BAR_OF_3: &str = r#"tempo(120); meter(3); clock("link", 3); drums(10);
pattern("bar", 10, 3.0, [[0.0, "closed_hat", 100]]);
"#;

/// How long the hats are listened to at each quantum.
const LISTEN_SECONDS: f64 = 4.5;

fn peer_state(link: &AblLink) -> SessionState {
    let mut s = SessionState::new();
    link.capture_app_session_state(&mut s);
    s
}

/// `:status`'s first line (the transport) and its `sync:` line.
fn status(jam: &mut Jamrig) -> (String, String) {
    let from = jam.out.len();
    jam.send_line(":status");
    let (i, _, first) = jam.expect_line(from, S(5), "`set ...` of :status", |l| l.starts_with("set "));
    let (_, _, sync) = jam.expect_line(i, S(5), "`sync: ...` of :status", |l| l.starts_with("sync: "));
    (first, sync)
}

/// The hats heard over [`LISTEN_SECONDS`], at the peer's beats at `quantum`: they
/// fall on its bar lines (every `quantum` beats, none missing), on time unless the
/// server overran meanwhile.
fn assert_on_bar_lines(
    probe: &mut OnsetProbe,
    link: &AblLink,
    out_port: &str,
    server: &JackServer,
    quantum: f64,
    transcript: &str,
) {
    let x0 = xruns(server);
    let phase = measure_link_phase(probe, link, out_port, quantum, LISTEN_SECONDS);
    let overruns = xruns(server) - x0;
    println!("quantum {quantum}: beats {:?}, errors (ms) {:?}; {overruns} overruns", phase.beats, phase.errors_ms);
    assert!(phase.beats.len() >= 2, "at quantum {quantum}, too few hats: {:?}\n{transcript}", phase.beats);
    assert!(
        phase.beats.iter().all(|b| b.rem_euclid(quantum) == 0.0),
        "at quantum {quantum}, hats off the session's bar lines: {:?}\n{transcript}",
        phase.beats
    );
    assert!(
        phase.beats.windows(2).all(|w| w[1] - w[0] == quantum),
        "at quantum {quantum}, a bar missing: {:?}",
        phase.beats
    );
    if overruns == 0 {
        assert!(phase.worst_ms() < 1.0, "at quantum {quantum}, hats off the peer's beats: {:?}", phase.errors_ms);
    }
}

#[test]
fn a_quantum_changed_while_playing_takes_effect_at_once() {
    let _serial = serial();
    run_in_loopback_netns("inner_a_quantum_changed_while_playing_takes_effect_at_once");
}

/// Regression (issue 13, item 11): what a quantum changed while playing does was
/// not said. A reload from `clock("link", 4)` to `clock("link", 3)` (with
/// `meter(3)`) names the change, jamrig plays on without a stop, `:status` shows
/// the new quantum, and the 3-beat pattern's first beat falls on the session's
/// bar lines at a quantum of 3, as the peer sees them.
#[test]
#[ignore = "runs inside a loopback-only network namespace: see a_quantum_changed_while_playing_takes_effect_at_once"]
fn inner_a_quantum_changed_while_playing_takes_effect_at_once() {
    require_loopback_netns();
    let server = JackServer::start_with_period(&server_name("jamrig_link_quantum"), 128);
    let dir = tempfile::tempdir().expect("temp dir");
    let set = dir.path().join("set.rhai");
    std::fs::write(&set, BAR_OF_4).expect("write the set");
    let mut probe = OnsetProbe::open(&server.name);
    let mut jam = Jamrig::start(&server.name, &set, &["--buffer", "128"]);
    let line = jam.wait_started(S(20));
    assert!(line.contains("clock link"), "startup line: {line}");
    let out_port = probe.connect_jamrig_audio(S(5));

    let link = AblLink::new(120.0);
    link.enable_start_stop_sync(true);
    link.enable(true);
    wait_for(S(5), || (link.num_peers() == 1).then_some(())).expect("the peer sees jamrig");
    jam.command(":play", S(5), |l| l.starts_with("transport: Link session started"));
    wait_for(S(5), || status(&mut jam).0.contains("(playing").then_some(()))
        .unwrap_or_else(|| panic!("jamrig does not play:\n{}", jam.transcript()));
    assert!(peer_state(&link).is_playing(), "the peer does not play");
    assert_on_bar_lines(&mut probe, &link, &out_port, &server, 4.0, &jam.transcript());

    let from = jam.out.len();
    std::fs::write(&set, BAR_OF_3).expect("write the set");
    let (_, _, reload) = jam.expect_line(from, S(5), "the reload", |l| l.starts_with("reload"));
    assert!(
        reload.contains("meter 4 -> 3") && reload.contains("sync link (quantum 4) -> link (quantum 3)"),
        "the reload line does not name the new quantum: {reload}"
    );
    let (first, sync) = status(&mut jam);
    assert!(first.contains("(playing"), "jamrig stopped with the new quantum: {first}");
    assert!(sync.starts_with("sync: link, quantum 3: 1 peer") && sync.contains("session playing"), "{sync}");
    assert!(peer_state(&link).is_playing(), "the quantum change stopped the session");
    // The new pattern takes over at the next bar (3 beats, 1.5 s at 120 BPM).
    std::thread::sleep(Duration::from_millis(2000));
    assert_on_bar_lines(&mut probe, &link, &out_port, &server, 3.0, &jam.transcript());
}
