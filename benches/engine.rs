//! Engine benchmarks: prints the figures BENCHMARKS.md records. Run with
//! `cargo bench --bench engine` (add `-- NAME` to run one: throughput, voices,
//! startup, memory, reload).
//!
//! Every figure is measured on one core, offline (the renderer's thread plays the
//! audio thread's part), at 48 kHz with 128-frame blocks unless it says otherwise.

use jamrig::engine::event::{Event, EventKind};
use jamrig::engine::{TICK_FRAMES, snapshot::MAX_CHANNELS};
use jamrig::offline::Renderer;
use jamrig::params::Param;
use jamrig::rig::set::{ChannelKind, ChannelSpec, Set};
use jamrig::script::ScriptHost;
use jamrig::tables::Tables;
use std::sync::Arc;
use std::time::{Duration, Instant};

const SR: u32 = 48000;
const BLOCK: usize = 128;

fn synth_channel(synth: &str, fx: bool, voices: u8) -> ChannelSpec {
    let mut params = jamrig::params::ParamValues::default();
    params.set(Param::Sustain, 1.0);
    params.set(Param::Volume, 0.1);
    if fx {
        params.set(Param::Lowpass, 2000.0);
        params.set(Param::Chorus, 0.3);
        params.set(Param::Delay, 0.3);
        params.set(Param::Reverb, 0.3);
    }
    ChannelSpec {
        instrument: synth.into(),
        kind: ChannelKind::Synth { synth: synth.into(), options: vec![] },
        params,
        voices,
    }
}

/// `channels` channels of `voices` held notes each.
fn held(tables: &Arc<Tables>, synth: &str, channels: usize, voices: usize, fx: bool) -> Renderer {
    let mut set = Set::default();
    for ch in 0..channels {
        set.channels.insert(ch as u8 + 1, synth_channel(synth, fx, voices.clamp(1, 64) as u8));
    }
    let mut r = Renderer::with_tables(&set, tables.clone()).expect("rig builds");
    let mut evs = Vec::new();
    for ch in 0..channels {
        for v in 0..voices {
            evs.push(Event::new(
                0,
                EventKind::NoteOn { channel: ch as u8, note: 36 + (v * 7 % 48) as u8, velocity: 100 },
            ));
        }
    }
    r.add_events(evs);
    // Let every note start and every effect engage.
    r.render(SR as usize / 2, BLOCK);
    r
}

/// Times rendering `seconds` of audio in blocks; returns (real-time factor, worst block).
fn time_blocks(r: &mut Renderer, seconds: f64) -> (f64, Duration) {
    let blocks = (seconds * SR as f64 / BLOCK as f64) as usize;
    let mut buf = vec![0.0f32; BLOCK * 2];
    let mut worst = Duration::ZERO;
    let t0 = Instant::now();
    for _ in 0..blocks {
        let t = Instant::now();
        r.render_into(&mut buf, BLOCK);
        worst = worst.max(t.elapsed());
    }
    let took = t0.elapsed().as_secs_f64();
    (blocks as f64 * BLOCK as f64 / SR as f64 / took, worst)
}

fn throughput(tables: &Arc<Tables>) {
    let mut a = held(tables, "saw", 4, 8, true);
    let (rtf_a, _) = time_blocks(&mut a, 20.0);
    println!(
        "(a) 4 channels x 8 held saw voices, lowpass+chorus+delay+reverb on each: {rtf_a:.0}x real time (target >= 100x)"
    );
    let mut b = held(tables, "saw", 16, 8, true);
    let (rtf_b, _) = time_blocks(&mut b, 10.0);
    println!("(b) 128 held saw voices (16 x 8), same effects on each channel: {rtf_b:.0}x real time (target >= 50x)");
}

fn voices(tables: &Arc<Tables>) {
    let budget = Duration::from_secs_f64(BLOCK as f64 / SR as f64);
    let mut best = 0;
    for per_channel in [16usize, 32, 48, 56, 60, 64] {
        let mut r = held(tables, "saw", MAX_CHANNELS, per_channel, false);
        let (_, worst) = time_blocks(&mut r, 3.0);
        let n = per_channel * MAX_CHANNELS;
        let frac = worst.as_secs_f64() / budget.as_secs_f64();
        println!(
            "    {n:4} saw voices: worst 128-frame block {:7.1} us = {:4.0}% of its {:.0} us budget",
            worst.as_secs_f64() * 1e6,
            frac * 100.0,
            budget.as_secs_f64() * 1e6
        );
        if frac < 0.5 {
            best = n;
        }
    }
    println!(
        "(c) most basic-synth voices with the worst 128-frame block under half its budget: {best} (target >= 1000; the pool holds {})",
        jamrig::engine::MAX_VOICES
    );
}

fn startup() {
    let mut times = Vec::new();
    for _ in 0..5 {
        let t0 = Instant::now();
        let host = ScriptHost::new().expect("stdlib");
        let ev = host.eval_file(std::path::Path::new("examples/set.rhai")).expect("example set");
        let mut r = Renderer::new(&ev.set, SR).expect("rig");
        let mut buf = vec![0.0f32; BLOCK * 2];
        // First sound: render until the first non-zero sample.
        'outer: loop {
            r.render_into(&mut buf, BLOCK);
            if buf.iter().any(|x| *x != 0.0) {
                break 'outer;
            }
        }
        times.push(t0.elapsed());
    }
    times.sort();
    println!(
        "(d) start-up to first sound, examples/set.rhai (stdlib, tables, drum kit, set): median {:.0} ms, worst {:.0} ms (target < 300 ms)",
        times[2].as_secs_f64() * 1e3,
        times[4].as_secs_f64() * 1e3
    );
}

fn peak_rss_kb() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn memory() {
    let tables = Arc::new(Tables::new(SR as f32));
    let mut set = Set::default();
    for ch in 1..=16u8 {
        let mut c = synth_channel("saw", true, 16);
        c.params.set(Param::Phaser, 0.3);
        set.channels.insert(ch, c);
    }
    let mut r = Renderer::with_tables(&set, tables).expect("rig");
    r.render(SR as usize, BLOCK);
    println!(
        "(e) peak memory (VmHWM) with a 16-channel set, every effect on, at 48 kHz: {:.1} MB (target < 64 MB)",
        peak_rss_kb() as f64 / 1024.0
    );
}

fn reload() {
    let host = ScriptHost::new().expect("stdlib");
    let path = std::path::Path::new("examples/set.rhai");
    let ev = host.eval_file(path).expect("set");
    let tables = Arc::new(Tables::new(SR as f32));
    let mut r = Renderer::with_tables(&ev.set, tables).expect("rig");
    let mut times = Vec::new();
    for i in 0..200 {
        let t0 = Instant::now();
        let mut ev = host.eval_file(path).expect("set");
        // Change something each time so that a snapshot is really built and published.
        ev.set.tempo_bpm = 100.0 + (i % 2) as f64;
        r.publish(&ev.set).expect("publish");
        times.push(t0.elapsed());
        r.render(TICK_FRAMES * 4, TICK_FRAMES);
    }
    times.sort();
    println!(
        "reload: evaluate + validate + build + publish examples/set.rhai: median {:.2} ms, p95 {:.2} ms (target: median < 10 ms)",
        times[100].as_secs_f64() * 1e3,
        times[190].as_secs_f64() * 1e3
    );
}

/// A fixed amount of work for instruction counting (`valgrind --tool=callgrind
/// --toggle-collect='*render_into*'`): 2 s of scenario (a).
fn fixed_work(tables: &Arc<Tables>) {
    let mut a = held(tables, "saw", 4, 8, true);
    let mut buf = vec![0.0f32; SR as usize * 4];
    a.render_into(&mut buf, BLOCK);
    std::hint::black_box(&buf);
}

fn main() {
    let which: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    if which.iter().any(|w| w == "fixed") {
        fixed_work(&Arc::new(Tables::new(SR as f32)));
        return;
    }
    let run = |name: &str| which.is_empty() || which.iter().any(|w| w == name);
    if run("memory") && which.len() == 1 {
        // Alone, so that peak memory is this scenario's own.
        memory();
        return;
    }
    let tables = Arc::new(Tables::new(SR as f32));
    if run("throughput") {
        throughput(&tables);
    }
    if run("voices") {
        voices(&tables);
    }
    if run("startup") {
        startup();
    }
    if run("reload") {
        reload();
    }
    if run("memory") {
        println!("(e) run `cargo bench --bench engine -- memory` alone to measure peak memory");
    }
}
