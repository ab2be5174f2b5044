//! Live-host benchmarks: `jamrig play` against a JACK server on the dummy backend
//! (a paced audio clock, no sound card), with a probe client that sends MIDI at
//! exact JACK frame times and records what jamrig plays. Prints the figures
//! BENCHMARKS.md records. Run with (jackd2 installed, no other run of the live
//! tests at the same time):
//!
//! `cargo bench --features jack --bench live` (add `-- latency`, `-- cpu`,
//! `-- link` or `-- control` for one part; `-- cpu --long 60` sets the length of
//! the long run in seconds).
//!
//! - MIDI in to audio out: 100 closed-hat hits sent at random frame offsets (any
//!   position inside a JACK cycle), their onsets found in the recording; latency is
//!   onset frame minus sending frame, jitter is its spread.
//! - Callback CPU: the mean and worst callback time that `:status` reports, idle
//!   and with 64 held voices (4 channels x 16, saw with low-pass, chorus, delay and
//!   reverb) plus a drum pattern, the second over a long run (60 s by default).
//! - Link phase: `jamrig play --sync link` and a second Link peer (in this
//!   process), inside a network namespace with the loopback only (the bench re-runs
//!   itself under `unshare -rn`); a click on every beat for 60 s, each onset's
//!   moment at the speaker against the time the peer gives its beat: mean and worst
//!   error.
//! - Start-up (`-- startup`): `jamrig play examples/set.rhai --no-repl` started
//!   against a running server at periods 256 and 1024, five times each (`--starts N`: N times): the time
//!   from the process's start to its audio ports, to its "playing" line, and to the
//!   first non-zero sample the probe receives (the JACK frame time at the start
//!   against the frame the sound reached the probe's input). Beside it, started
//!   alternately by the same probe and timing, the floor: a minimal JACK client
//!   (this binary run with `floor-client`: open, two outputs, activate, a constant
//!   from the first cycle). Both write their steps (`JAMRIG_STARTUP_TIMELINE`),
//!   from the process's start: the bench prints each step's range.
//!   Also printed: each start's own time for some steps (the rig's build, say).
//! - The rig's build alone (`-- rig-build`, not part of the default run): the
//!   example set's `Rig::new` at 48 kHz with its buffers pre-faulted, as `jamrig
//!   play` builds it once the tables are ready, 20 times (wall and CPU time), and
//!   what one more rig adds to the resident memory.
//! - Control port (`--listen`): the round trip of requests sent one at a time
//!   (paced under the port's rate limit) over OSC and TCP: an evaluated line, a
//!   knob (`/jamrig/param`) and the same change as a REPL line; and the callback
//!   time while knobs turn at the port's full rate.

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "../tests/common/live.rs"]
mod live_support;

use live_support::*;
use std::time::Duration;

/// JACK cycle of the benchmark server: jamrig's default buffer.
const CYCLE: u32 = 128;
const HITS: usize = 100;
const S: fn(u64) -> Duration = Duration::from_secs;

/// Four channels of held saws with the effects of engine load (a), and drums.
const SET: &str = r#"tempo(120);
for c in 1..=4 {
    channel(c, #{ synth: "saw", envelope: "organ", volume: 0.1, lowpass: 2000.0,
                  chorus: 0.3, delay: 0.3, reverb: 0.3 });
}
drums(10, #{ volume: 0.5 });
"#;

const PATTERN: &str = "pattern(\"beat\", 10, \"house\");\n";

struct Rig {
    probe: Probe,
    jam: Jamrig,
    _server: JackServer,
    set: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

fn start(set_text: &str) -> Rig {
    let server = JackServer::start_with_period(server(), CYCLE);
    let dir = tempfile::tempdir().expect("temp dir");
    let set = dir.path().join("set.rhai");
    std::fs::write(&set, set_text).expect("write the set");
    let probe = Probe::open(&server.name);
    let jam = Jamrig::start(&server.name, &set, &["--port", PROBE_MIDI, "--buffer", &CYCLE.to_string()]);
    let line = jam.wait_started(S(20));
    println!("{line}");
    probe.connect_jamrig_audio(S(5));
    Rig { probe, jam, _server: server, set, _dir: dir }
}

/// A small deterministic generator (the offsets need not be random, only varied).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, n: u32) -> u32 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((self.0 >> 33) % n as u64) as u32
    }
}

fn latency() {
    let mut r = start("drums(10);\n");
    let mut rng = Lcg(7);
    // 150 ms apart on average (a closed hat rings 47 ms), at any frame of a cycle.
    let mut at = 2 * CYCLE;
    let mut batch = Vec::new();
    for _ in 0..HITS {
        batch.push(at);
        at += 6000 + rng.next(2400);
    }
    let seconds = at as f64 / SAMPLE_RATE as f64 + 0.5;
    // Past the stream's first second, when callbacks that start late can still
    // shift the JACK frame offset by a cycle (it is a minimum over a window).
    std::thread::sleep(S(1));
    let frames = r.probe.start_recording(seconds);
    r.probe.wait_cycles(3, S(5));
    r.probe.clear_sent();
    let msgs: Vec<(u32, &[u8])> = batch.iter().map(|&d| (d, &[0x99u8, 42, 100][..])).collect();
    r.probe.send(&msgs);
    let sent = r.probe.sent_times(HITS, S(seconds as u64 + 10));
    let c = r.probe.finish(frames);
    let on = common::onsets(&c.left, 500);
    assert_eq!(on.len(), HITS, "expected {HITS} hits in the recording, found {}", on.len());
    let lat: Vec<i64> =
        on.iter().zip(&sent).map(|(&o, &s)| c.start.wrapping_add(o as u32).wrapping_sub(s) as i32 as i64).collect();
    if std::env::var_os("JAMRIG_BENCH_VERBOSE").is_some() {
        println!("latencies (frames): {lat:?}");
    }
    let (min, max) = (*lat.iter().min().unwrap(), *lat.iter().max().unwrap());
    let mean = lat.iter().sum::<i64>() as f64 / lat.len() as f64;
    let sd = (lat.iter().map(|&l| (l as f64 - mean).powi(2)).sum::<f64>() / lat.len() as f64).sqrt();
    let ms = |f: f64| f / SAMPLE_RATE as f64 * 1e3;
    println!(
        "MIDI in -> audio out, {HITS} hits at random offsets, {CYCLE}-frame JACK cycles: latency mean {:.2} ms \
         ({mean:.0} frames), min {:.2} ms, max {:.2} ms; jitter (max - min) {:.3} ms ({} frames), sd {:.3} ms",
        ms(mean),
        ms(min as f64),
        ms(max as f64),
        ms((max - min) as f64),
        max - min,
        ms(sd)
    );
    drop(r.jam);
}

/// Sends `:status` and returns its `audio:` line.
fn status(jam: &mut Jamrig) -> String {
    jam.command(":status", S(5), |l| l.starts_with("audio:")).1
}

fn cpu(long: u64) {
    let mut r = start(SET);
    std::thread::sleep(S(3));
    status(&mut r.jam);
    std::thread::sleep(S(10));
    println!("idle, 10 s: {}", status(&mut r.jam));

    // 64 held voices: 16 per channel, spread over four octaves.
    let mut msgs: Vec<[u8; 3]> = Vec::new();
    for ch in 0..4u8 {
        for k in 0..16u8 {
            msgs.push([0x90 | ch, 36 + k * 3 + ch, 90]);
        }
    }
    let batch: Vec<(u32, &[u8])> = msgs.iter().map(|m| (0, &m[..])).collect();
    r.probe.send(&batch);
    std::fs::write(&r.set, format!("{SET}{PATTERN}")).expect("add the drum pattern");
    r.jam.expect_line(0, S(5), "reloaded", |l| l.starts_with("reloaded"));
    std::thread::sleep(S(2));
    let voices = r.jam.command(":status", S(5), |l| l.trim_start().starts_with("ch1 ")).1;
    status(&mut r.jam);
    std::thread::sleep(S(long));
    println!("64 voices + drum pattern, {long} s: {}", status(&mut r.jam));
    println!("(channel 1 while playing: {})", voices.trim());
    let events = r.jam.command(":status", S(5), |l| l.starts_with("events:")).1;
    println!("{events}");
}

/// Seconds of clicks the Link phase is measured over.
const LINK_SECONDS: f64 = 60.0;

fn link_phase() {
    if std::env::var_os(NETNS_ENV).is_none() {
        // Link only ever runs inside a loopback-only namespace.
        let exe = std::env::current_exe().expect("the bench binary's path");
        run_in_loopback_netns_with(&exe, &["link"]);
        return;
    }
    require_loopback_netns();
    let server = JackServer::start_with_period("jamrig_link", CYCLE);
    let dir = tempfile::tempdir().expect("temp dir");
    let set = dir.path().join("set.rhai");
    std::fs::write(
        &set,
        "tempo(120); clock(\"link\", 4); drums(10);\npattern(\"click\", 10, 1.0, [[0.0, \"closed_hat\", 100]]);\n",
    )
    .expect("write the set");
    let mut probe = OnsetProbe::open(&server.name);
    let jam = Jamrig::start(&server.name, &set, &["--sync", "link", "--buffer", &CYCLE.to_string()]);
    println!("{}", jam.wait_started(S(20)));
    let out_port = probe.connect_jamrig_audio(S(5));
    let peer = rusty_link::AblLink::new(120.0);
    peer.enable_start_stop_sync(true);
    peer.enable(true);
    let t0 = std::time::Instant::now();
    while peer.num_peers() != 1 {
        assert!(t0.elapsed() < S(5), "jamrig and the peer do not find each other");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut s = rusty_link::SessionState::new();
    peer.capture_app_session_state(&mut s);
    s.set_is_playing_and_request_beat_at_time(true, peer.clock_micros(), 0.0, 4.0);
    peer.commit_app_session_state(&s);
    // The transport starts on the session's next bar; a bar more to settle.
    std::thread::sleep(S(5));
    let xruns = |s: &JackServer| s.log().matches("XRun").count();
    let before = xruns(&server);
    let phase = measure_link_phase(&mut probe, &peer, &out_port, 4.0, LINK_SECONDS);
    let overruns = xruns(&server) - before;
    let mut abs: Vec<f64> = phase.errors_ms.iter().map(|e| e.abs()).collect();
    abs.sort_by(f64::total_cmp);
    let within = abs.iter().filter(|e| **e < 1.0).count();
    if std::env::var_os("JAMRIG_BENCH_VERBOSE").is_some() {
        println!("errors (ms): {:?}", phase.errors_ms);
    }
    println!(
        "Link phase against a peer, {} clicks over {LINK_SECONDS} s at 120 BPM, {CYCLE}-frame JACK cycles: \
         mean {:+.3} ms, median |error| {:.3} ms, worst {:.3} ms; {within} of {} within 1 ms; \
         {overruns} JACK overruns meanwhile",
        phase.errors_ms.len(),
        phase.mean_ms(),
        abs.get(abs.len() / 2).copied().unwrap_or(0.0),
        phase.worst_ms(),
        phase.errors_ms.len(),
    );
    drop(jam);
}

/// Requests timed per kind in the control port bench.
const CONTROL_REQUESTS: usize = 300;

/// Median, 99th percentile and worst of `ms`, as text.
fn spread(mut ms: Vec<f64>) -> String {
    ms.sort_by(f64::total_cmp);
    let at = |q: f64| ms[((ms.len() - 1) as f64 * q).round() as usize];
    format!("median {:.3} ms, p99 {:.3} ms, worst {:.3} ms (n = {})", at(0.5), at(0.99), at(1.0), ms.len())
}

fn control() {
    use rosc::{OscMessage, OscPacket, OscType};
    use std::io::{BufRead, Write};
    let server = JackServer::start_with_period(server(), CYCLE);
    let dir = tempfile::tempdir().expect("temp dir");
    let set = dir.path().join("set.rhai");
    std::fs::write(&set, format!("{SET}{PATTERN}")).expect("write the set");
    let mut jam = Jamrig::start(&server.name, &set, &["--buffer", &CYCLE.to_string(), "--listen", "0"]);
    jam.wait_started(S(20));
    let line = jam.expect_line(0, S(5), "naming the port", |l| l.starts_with("control port: ")).2;
    let addr: std::net::SocketAddr =
        line.split_whitespace().nth(4).and_then(|a| a.parse().ok()).expect("the port's address");
    std::thread::sleep(S(2));
    let pace = Duration::from_millis(6);
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.set_read_timeout(Some(S(5))).unwrap();
    let osc = |addr_: &str, args: Vec<OscType>| {
        let p = OscPacket::Message(OscMessage { addr: addr_.into(), args });
        let bytes = rosc::encoder::encode(&p).unwrap();
        let t0 = std::time::Instant::now();
        udp.send_to(&bytes, addr).unwrap();
        let mut buf = [0u8; 65536];
        udp.recv_from(&mut buf).expect("a reply");
        let ms = t0.elapsed().as_secs_f64() * 1e3;
        std::thread::sleep(pace);
        ms
    };
    let eval: Vec<f64> =
        (0..CONTROL_REQUESTS).map(|_| osc("/jamrig/eval", vec![OscType::String("1 + 1".into())])).collect();
    println!("OSC /jamrig/eval \"1 + 1\": {}", spread(eval));
    let knob = |i: usize| vec![OscType::Int(1), OscType::String("lowpass".into()), OscType::Float(500.0 + i as f32)];
    let knobs: Vec<f64> = (0..CONTROL_REQUESTS).map(|i| osc("/jamrig/param", knob(i))).collect();
    println!("OSC /jamrig/param 1 lowpass X (a knob): {}", spread(knobs));
    let line = |i: usize| vec![OscType::String(format!("ch(1).lowpass = {}.0", 500 + i))];
    let lines: Vec<f64> = (0..CONTROL_REQUESTS).map(|i| osc("/jamrig/eval", line(i))).collect();
    println!("OSC /jamrig/eval \"ch(1).lowpass = X\" (a REPL line, a new snapshot each): {}", spread(lines));
    let stream = std::net::TcpStream::connect(addr).unwrap();
    stream.set_nodelay(true).unwrap();
    let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    let tcp: Vec<f64> = (0..CONTROL_REQUESTS)
        .map(|_| {
            let t0 = std::time::Instant::now();
            writer.write_all(b"1 + 1\n").unwrap();
            let mut l = String::new();
            while reader.read_line(&mut l).unwrap() > 0 && !l.ends_with("\n\n") {}
            let ms = t0.elapsed().as_secs_f64() * 1e3;
            std::thread::sleep(pace);
            ms
        })
        .collect();
    println!("TCP line \"1 + 1\": {}", spread(tcp));
    // The callback while knobs turn as fast as the port takes them.
    status(&mut jam);
    std::thread::sleep(S(5));
    println!("callback, 5 s idle (drum pattern, 4 channels): {}", status(&mut jam));
    let t0 = std::time::Instant::now();
    let mut i = 0;
    while t0.elapsed() < S(5) {
        osc("/jamrig/param", knob(i % 1000));
        i += 1;
    }
    println!("callback, 5 s of {i} knob moves: {}", status(&mut jam));
    let port = jam.command(":status", S(5), |l| l.starts_with("control port ")).1;
    println!("{port}");
}

/// The argument that makes this binary the minimal JACK client of the start-up
/// bench's reference row (see [`floor_client`]).
const FLOOR_ARG: &str = "floor-client";
/// The minimal client's JACK name.
const FLOOR_CLIENT: &str = "floor";
/// The value the minimal client writes from its first cycle on.
const FLOOR_LEVEL: f32 = 0.25;
/// Starts per period and per program in the start-up bench (`--starts N` sets it).
const STARTS: usize = 5;

/// The floor of the start-up bench: the least any JACK client does before its
/// first sound, with the `jack` crate jamrig uses. It opens a client, registers two
/// audio outputs, activates it and writes [`FLOOR_LEVEL`] from its first cycle on;
/// it closes the client when its stdin ends. With `JAMRIG_STARTUP_TIMELINE` it
/// writes its steps as jamrig does.
fn floor_client() {
    use jamrig::live::timeline;
    timeline::init();
    timeline::mark("client floor: open called");
    let (client, _) = jack::Client::new(FLOOR_CLIENT, jack::ClientOptions::NO_START_SERVER)
        .expect("a JACK server to open a client on");
    timeline::mark("client floor: open returned");
    let mut left = client.register_port("out_0", jack::AudioOut::default()).expect("the port out_0");
    let mut right = client.register_port("out_1", jack::AudioOut::default()).expect("the port out_1");
    timeline::mark("ports registered");
    let process = jack::contrib::ClosureProcessHandler::new(move |_: &jack::Client, ps: &jack::ProcessScope| {
        timeline::stamp(&timeline::FIRST_CALLBACK);
        left.as_mut_slice(ps).fill(FLOOR_LEVEL);
        right.as_mut_slice(ps).fill(FLOOR_LEVEL);
        timeline::stamp(&timeline::ENGINE_ADOPTED);
        jack::Control::Continue
    });
    let active = client.activate_async((), process).expect("the client activates");
    timeline::mark("activate returned");
    timeline::write_stamps();
    std::io::copy(&mut std::io::stdin(), &mut std::io::sink()).ok();
    drop(active);
}

/// What the start-up bench starts: `jamrig play` or the minimal client.
enum Started {
    Jamrig(Jamrig),
    Floor(std::process::Child),
}

impl Started {
    /// Stops it and returns its timeline (the steps on its stderr).
    fn stop(self) -> Vec<(String, f64)> {
        let text = match self {
            Started::Jamrig(jam) => {
                let text = jam.err.text();
                drop(jam);
                text
            }
            Started::Floor(mut child) => {
                drop(child.stdin.take());
                let mut text = String::new();
                use std::io::Read;
                child.stderr.take().expect("piped").read_to_string(&mut text).ok();
                child.wait().ok();
                text
            }
        };
        text.lines()
            .filter_map(|l| l.strip_prefix("timeline: "))
            .filter_map(|l| {
                let (step, at) = l.rsplit_once(": ")?;
                Some((step.to_string(), at.strip_suffix(" ms")?.parse().ok()?))
            })
            .collect()
    }
}

/// The steps of several timelines: each step's range and median, in the order of
/// the first.
fn timeline_text(runs: &[Vec<(String, f64)>]) -> String {
    let mut steps: Vec<&str> = Vec::new();
    for run in runs {
        for (s, _) in run {
            if !steps.contains(&s.as_str()) {
                steps.push(s);
            }
        }
    }
    let mut out = String::new();
    for step in steps {
        let at: Vec<f64> = runs.iter().filter_map(|r| r.iter().find(|(s, _)| s == step).map(|(_, t)| *t)).collect();
        out.push_str(&spread_line(step, at));
    }
    out
}

/// One line of a timeline: `label`, the range and median of `ms` (not empty) and their count.
fn spread_line(label: &str, mut ms: Vec<f64>) -> String {
    ms.sort_by(f64::total_cmp);
    format!(
        "    {label}: {:.1}-{:.1} ms (median {:.1}, n = {})\n",
        ms[0],
        ms[ms.len() - 1],
        ms[(ms.len() - 1) / 2],
        ms.len()
    )
}

/// How long some steps of jamrig's start-up took, each start's own difference of
/// two timeline steps (ranges and medians), so that the time a step takes can be
/// told from how late the steps before it came.
fn durations_text(runs: &[Vec<(String, f64)>]) -> String {
    const SPANS: [(&str, &str, &str); 5] = [
        ("the tables' build, waited for after the set", "set evaluated", "tables ready"),
        ("the rig's build", "tables ready", "rig built"),
        ("rig built to engine handed over", "rig built", "engine handed over"),
        ("engine handed over to adopted", "engine handed over", "engine adopted"),
        ("the rest of the drum kit, after the hand-over", "engine handed over", "drum kit complete"),
    ];
    let mut out = String::new();
    for (what, from, to) in SPANS {
        let at = |r: &Vec<(String, f64)>, step: &str| r.iter().find(|(s, _)| s == step).map(|(_, t)| *t);
        let d: Vec<f64> = runs.iter().filter_map(|r| Some(at(r, to)? - at(r, from)?)).collect();
        if !d.is_empty() {
            out.push_str(&spread_line(what, d));
        }
    }
    out
}

/// Start-up of `jamrig play` on JACK, beside the minimal client's: see the module's comment.
fn startup(starts: usize) {
    let exe = std::env::current_exe().expect("the bench binary's path");
    for period in [256u32, 1024] {
        let server = JackServer::start_with_period(server(), period);
        let mut probe = Probe::open(&server.name);
        let (mut ports_ms, mut line_ms, mut sound_ms) = (Vec::new(), Vec::new(), Vec::new());
        let (mut floor_ports_ms, mut floor_sound_ms) = (Vec::new(), Vec::new());
        let (mut jam_steps, mut floor_steps) = (Vec::new(), Vec::new());
        // Alternated, so that both see the same machine.
        for i in 0..2 * starts {
            let floor = i % 2 == 1;
            let frames = probe.start_recording(4.0);
            probe.wait_cycles(2, S(5));
            let origin = jamrig::live::timeline::now_ns().to_string();
            let (t0, f0) = (std::time::Instant::now(), probe.frame_time());
            let (started, client) = if floor {
                let child = std::process::Command::new(&exe)
                    .arg(FLOOR_ARG)
                    .env("JACK_DEFAULT_SERVER", &server.name)
                    .env("JACK_NO_AUDIO_RESERVATION", "1")
                    .env(jamrig::live::timeline::ENV, &origin)
                    .stdin(std::process::Stdio::piped())
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .expect("the minimal client starts");
                (Started::Floor(child), FLOOR_CLIENT)
            } else {
                let jam = Jamrig::start_with_env(
                    &server.name,
                    std::path::Path::new("examples/set.rhai"),
                    &["--no-repl"],
                    &[(jamrig::live::timeline::ENV, &origin)],
                );
                (Started::Jamrig(jam), "jamrig")
            };
            while probe.ports(&format!("^{client}:out_[01]$")).len() < 2 {
                assert!(t0.elapsed() < S(10), "the audio ports of {client} did not appear");
                std::thread::sleep(Duration::from_micros(500));
            }
            let ports_at = t0.elapsed().as_secs_f64() * 1e3;
            // Connected the moment the client is active, before its first cycle.
            while !probe.try_connect_audio_of(client) {
                assert!(t0.elapsed() < S(10), "the audio ports of {client} could not be connected");
                std::thread::sleep(Duration::from_micros(200));
            }
            if let Started::Jamrig(jam) = &started {
                jam.wait_started(S(10));
                line_ms.push(t0.elapsed().as_secs_f64() * 1e3);
            }
            let rec = probe.finish(frames);
            let first = rec.left.iter().zip(&rec.right).position(|(l, r)| l.abs().max(r.abs()) > 1e-6);
            let first = first.unwrap_or_else(|| panic!("{client} made a sound within the recording"));
            let at = rec.start.wrapping_add(first as u32).wrapping_sub(f0);
            let sound_at = at as f64 * 1e3 / SAMPLE_RATE as f64;
            let steps = started.stop();
            if floor {
                floor_ports_ms.push(ports_at);
                floor_sound_ms.push(sound_at);
                floor_steps.push(steps);
            } else {
                ports_ms.push(ports_at);
                sound_ms.push(sound_at);
                jam_steps.push(steps);
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        let cycle_ms = period as f64 * 1e3 / SAMPLE_RATE as f64;
        // The sound reaches the probe at the start of a cycle, and the start is
        // timed just after one begins: each start's time is near a whole number of
        // cycles (the frame time at the start is the server's estimate).
        let cycles = |ms: &[f64]| {
            let v: Vec<String> = ms.iter().map(|m| format!("{m:.1} ms = {}", (m / cycle_ms).round() as u32)).collect();
            v.join(", ")
        };
        println!(
            "start-up at period {period} ({cycle_ms:.1} ms cycles): jamrig: audio ports {}; \"playing\" line {}; \
             first sound at the probe {} (each start, in cycles: {})",
            spread(ports_ms),
            spread(line_ms),
            spread(sound_ms.clone()),
            cycles(&sound_ms)
        );
        println!("  jamrig's timeline (from the process's start):\n{}", timeline_text(&jam_steps));
        println!("  jamrig's steps, each start's own:\n{}", durations_text(&jam_steps));
        println!(
            "start-up at period {period}: floor (minimal JACK client): audio ports {}; first sound at the probe {} \
             (each start, in cycles: {})",
            spread(floor_ports_ms),
            spread(floor_sound_ms.clone()),
            cycles(&floor_sound_ms)
        );
        println!("  the minimal client's timeline (from the process's start):\n{}", timeline_text(&floor_steps));
    }
}

/// The argument that runs [`rig_build`] alone.
const RIG_BUILD_ARG: &str = "rig-build";

/// The thread's CPU time, in milliseconds.
fn thread_cpu_ms() -> f64 {
    let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a valid pointer to a timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    t.tv_sec as f64 * 1e3 + t.tv_nsec as f64 / 1e6
}

/// The rig's build alone, as `jamrig play` runs it once the tables are ready
/// (buffers pre-faulted, 48 kHz): `examples/set.rhai` evaluated and the tables built
/// once, then `Rig::new` 20 times, each build's wall and CPU time (the building
/// thread's, page faults included); each rig is dropped before the next build.
/// `-- rig-build` (not part of the default run).
fn rig_build() {
    let host = jamrig::script::ScriptHost::new().expect("stdlib");
    let ev = host.eval_file(std::path::Path::new("examples/set.rhai")).expect("example set");
    let tables = std::sync::Arc::new(jamrig::tables::Tables::new(SAMPLE_RATE as f32));
    let (mut wall, mut cpu) = (Vec::new(), Vec::new());
    for _ in 0..20 {
        let (t0, c0) = (std::time::Instant::now(), thread_cpu_ms());
        let rig = jamrig::rig::Rig::new(&ev.set, SAMPLE_RATE as f32, tables.clone()).expect("rig");
        cpu.push(thread_cpu_ms() - c0);
        wall.push(t0.elapsed().as_secs_f64() * 1e3);
        drop(std::hint::black_box(rig));
    }
    // What one rig keeps resident (its buffers are pre-faulted, so all of them).
    let rss_kb = || -> u64 {
        let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let line = s.lines().find(|l| l.starts_with("VmRSS:")).unwrap_or_default().to_string();
        line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).unwrap_or(0)
    };
    let before = rss_kb();
    let rig = jamrig::rig::Rig::new(&ev.set, SAMPLE_RATE as f32, tables.clone()).expect("rig");
    let kept = rss_kb().saturating_sub(before);
    drop(std::hint::black_box(rig));
    let text = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        format!("best {:.2} ms, median {:.2} ms, worst {:.2} ms", v[0], v[v.len() / 2], v[v.len() - 1])
    };
    println!(
        "rig build of examples/set.rhai at 48 kHz, pre-faulted (20 builds): wall {}; CPU {}; one more rig added \
         {:.1} MB resident",
        text(wall),
        text(cpu),
        kept as f64 / 1024.0
    );
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == RIG_BUILD_ARG) {
        rig_build();
        return;
    }
    if args.iter().any(|a| a == FLOOR_ARG) {
        floor_client();
        return;
    }
    let long = args.iter().position(|a| a == "--long").and_then(|i| args.get(i + 1)).map_or(60, |v| v.parse().unwrap());
    let which: Vec<&String> =
        args.iter().filter(|a| ["latency", "cpu", "link", "control", "startup"].contains(&a.as_str())).collect();
    let run = |name: &str| which.is_empty() || which.iter().any(|w| *w == name);
    let _serial = serial();
    if run("latency") {
        latency();
    }
    if run("cpu") {
        cpu(long);
    }
    if run("link") {
        link_phase();
    }
    if run("control") {
        control();
    }
    if run("startup") {
        let starts = args
            .iter()
            .position(|a| a == "--starts")
            .and_then(|i| args.get(i + 1))
            .map_or(STARTS, |v| v.parse().unwrap());
        startup(starts);
    }
}
