//! Engine benchmarks: prints the figures BENCHMARKS.md records. Run with
//! `cargo bench --bench engine` (add `-- NAME` to run one: throughput, voices,
//! startup, memory, reload, save, synths, wavescan, reverb, mini, tail, limits,
//! crossover; `tables` runs only when named; `tables-once` builds the tables once, for
//! callgrind).
//!
//! Every figure is measured on one core, offline (the renderer's thread plays the
//! audio thread's part), at 48 kHz with 128-frame blocks unless it says otherwise;
//! `crossover` compares one thread with two.

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

fn synth_channel(synth: &str, fx: bool, voices: u16) -> ChannelSpec {
    let mut params = jamrig::params::ParamValues::default();
    params.set(Param::Sustain, 1.0);
    params.set(Param::Volume, 0.1);
    if fx {
        params.set(Param::Lowpass, 2000.0);
        params.set(Param::Chorus, 0.3);
        params.set(Param::Delay, 0.3);
        params.set(Param::Reverb, 0.3);
    }
    ChannelSpec { instrument: synth.into(), kind: ChannelKind::Synth { synth: synth.into() }, params, voices }
}

/// `channels` channels of `voices` held notes each.
fn held(tables: &Arc<Tables>, synth: &str, channels: usize, voices: usize, fx: bool) -> Renderer {
    let mut set = Set::default();
    for ch in 0..channels {
        set.channels.insert(ch as u8 + 1, synth_channel(synth, fx, voices.clamp(1, 256) as u16));
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

/// Real-time factors of `runs` timings of `seconds` each: `(best, median)`. The best
/// run is what the code does when the machine is not disturbed (a shared machine
/// only ever slows a run down); the median shows the spread.
fn rtf_runs(r: &mut Renderer, runs: usize, seconds: f64) -> (f64, f64) {
    let mut v: Vec<f64> = (0..runs).map(|_| time_blocks(r, seconds).0).collect();
    v.sort_by(f64::total_cmp);
    (v[runs - 1], v[runs / 2])
}

/// A fixed integer workload, timed: how fast this machine runs right now (shared
/// machines vary), so that figures from different moments can be compared.
fn machine_speed() -> f64 {
    let mut best = f64::MAX;
    for _ in 0..5 {
        let t0 = Instant::now();
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        for i in 0..50_000_000u64 {
            x = x.rotate_left(7) ^ i.wrapping_mul(0x2545_F491_4F6C_DD1D);
        }
        std::hint::black_box(x);
        best = best.min(t0.elapsed().as_secs_f64());
    }
    50.0 / best / 1000.0 // G iterations per second
}

fn throughput(tables: &Arc<Tables>) {
    println!("machine speed now: {:.2} G reference iterations/s (compare runs by this)", machine_speed());
    let mut a = held(tables, "saw", 4, 8, true);
    let (best, median) = rtf_runs(&mut a, 7, 3.0);
    println!(
        "(a) 4 channels x 8 held saw voices, lowpass+chorus+delay+reverb on each: {best:.0}x real time (best of 7; median {median:.0}x) (target >= 100x)"
    );
    let mut b = held(tables, "saw", 4, 32, true);
    let (best, median) = rtf_runs(&mut b, 7, 2.0);
    println!(
        "(b) 128 held saw voices (4 channels x 32), same effects as (a): {best:.0}x real time (best of 7; median {median:.0}x) (target >= 50x)"
    );
    let mut b16 = held(tables, "saw", 16, 8, true);
    let (best, median) = rtf_runs(&mut b16, 5, 2.0);
    println!(
        "    128 held saw voices spread over 16 channels, all four effects on every channel: {best:.0}x real time (best of 5; median {median:.0}x)"
    );
}

fn voices(tables: &Arc<Tables>) {
    let budget = Duration::from_secs_f64(BLOCK as f64 / SR as f64);
    let mut best = 0;
    for per_channel in [16usize, 32, 48, 56, 60, 64, 96, 128, 192, 256] {
        let mut r = held(tables, "saw", MAX_CHANNELS, per_channel, false);
        // The worst block of a trial, then the smallest of three trials: a block the
        // machine's host stalled (it happens on shared machines) does not count.
        let worst = (0..3).map(|_| time_blocks(&mut r, 2.0).1).min().expect("three trials");
        let n = per_channel * MAX_CHANNELS;
        let frac = worst.as_secs_f64() / budget.as_secs_f64();
        println!(
            "    {n:4} saw voices: worst 128-frame block {:7.1} us = {:4.0}% of its {:.0} us budget (least of 3 trials)",
            worst.as_secs_f64() * 1e6,
            frac * 100.0,
            budget.as_secs_f64() * 1e6
        );
        if frac < 0.5 {
            best = n;
        } else {
            break;
        }
    }
    println!(
        "(c) most basic-synth voices with the worst 128-frame block under half its budget: {best} (target >= 1000; the pool holds {})",
        jamrig::engine::MAX_VOICES
    );
}

/// Cost of every synth alone: one voice rendered straight from the synth (no
/// envelope, no bus) at three pitches, in ns per voice-sample; then how many voices
/// of the costliest synth an engine renders with every 128-frame block in time.
fn synth_costs(tables: &Arc<Tables>) {
    use jamrig::engine::synth::{OscState, SYNTHS, SynthCtx, line_len};
    let params = jamrig::params::ParamValues::default();
    let mut rows = Vec::new();
    // JAMRIG_SYNTHS=a,b measures only those synths (and not the held voices), for
    // instruction counts of a few synths under callgrind.
    let only: Option<Vec<String>> =
        std::env::var("JAMRIG_SYNTHS").ok().map(|v| v.split(',').map(str::to_string).collect());
    for entry in SYNTHS.iter().filter(|e| only.as_ref().is_none_or(|o| o.iter().any(|n| n == e.name))) {
        let mut runs = Vec::new();
        for _ in 0..3 {
            let mut samples = 0usize;
            let t0 = Instant::now();
            for note in [48.0, 60.0, 72.0] {
                let mut st = OscState::new(line_len(SR as f32));
                st.reset(7);
                let ctx = SynthCtx {
                    sample_rate: SR as f32,
                    freq_hz: jamrig::theory::note_hz(note),
                    params: &params,
                    waves: &tables.waves,
                };
                entry.synth.start(&mut st, &ctx);
                let mut buf = [0.0f32; TICK_FRAMES];
                for _ in 0..(SR as usize / TICK_FRAMES) {
                    entry.synth.render(&mut st, &ctx, &mut buf);
                    st.age += TICK_FRAMES as u64;
                    std::hint::black_box(&buf);
                }
                samples += SR as usize / TICK_FRAMES * TICK_FRAMES;
            }
            runs.push(t0.elapsed().as_secs_f64() * 1e9 / samples as f64);
        }
        runs.sort_by(f64::total_cmp);
        rows.push((entry.name, runs[0]));
    }
    rows.sort_by(|a, b| b.1.total_cmp(&a.1));
    println!("synth cost, one voice, ns per voice-sample (best of 3; notes 48, 60, 72, 1 s each):");
    for (name, ns) in &rows {
        println!("    {name:28} {ns:7.1}");
    }
    if only.is_some() {
        return;
    }
    let (costliest, _) = rows[0];
    let budget = Duration::from_secs_f64(BLOCK as f64 / SR as f64);
    let mut fits = 0;
    for n in [16usize, 32, 48, 64, 96, 128, 192, 256] {
        let channels = n.div_ceil(64);
        let mut r = held(tables, costliest, channels, n / channels, false);
        let worst = (0..3).map(|_| time_blocks(&mut r, 1.0).1).min().expect("three trials");
        let frac = worst.as_secs_f64() / budget.as_secs_f64();
        // A synth that decays frees its voices: say how many still sounded.
        let sounding: u32 = r.stats().voices.iter().map(|v| v.load(std::sync::atomic::Ordering::Relaxed)).sum();
        println!(
            "    {n:4} {costliest} voices ({sounding} still sounding at the end): worst 128-frame block {:.0}% of its budget",
            frac * 100.0
        );
        if frac < 1.0 {
            fits = n;
        } else {
            break;
        }
    }
    println!("voices of the costliest synth ({costliest}) in real time at 128-frame blocks: {fits} (target >= 64)");
}

/// Cost of the channel reverb alone: mono noise in, stereo out, in ticks of
/// [`TICK_FRAMES`], 10 s of audio at the default decay; ns per frame, best of five.
/// (Its earlier design is measured by putting its source in place of
/// src/dsp/reverb.rs: it has the same interface.)
fn reverb_cost() {
    use jamrig::dsp::reverb::Reverb;
    let frames = SR as usize * 10;
    let mut seed = 1u32;
    let x: Vec<f32> = (0..frames)
        .map(|_| {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (seed >> 8) as f32 / (1u32 << 24) as f32 - 0.5
        })
        .collect();
    let (mut l, mut r) = ([0.0f32; TICK_FRAMES], [0.0f32; TICK_FRAMES]);
    let mut best = f64::INFINITY;
    for _ in 0..5 {
        let mut rev = Reverb::new(SR as f32);
        rev.set_decay(2.0);
        let t0 = Instant::now();
        for chunk in x.chunks_exact(TICK_FRAMES) {
            rev.process(chunk, &mut l, &mut r);
            std::hint::black_box((&l, &r));
        }
        best = best.min(t0.elapsed().as_secs_f64() * 1e9 / frames as f64);
    }
    println!("reverb alone: {best:.1} ns per frame (best of 5, 10 s of noise, {TICK_FRAMES}-frame ticks)");

    // The bus's drive stage (distortion and saturation, oversampled four times):
    // a bus with both on against a bus with every stage off.
    use jamrig::engine::bus::{Bus, BusOut};
    use jamrig::params::ParamValues;
    let mut driven = ParamValues::default();
    driven.set(Param::Distortion, 0.7);
    driven.set(Param::Saturation, 0.3);
    for (name, params) in [("bus, every stage off", ParamValues::default()), ("bus, distortion and saturation", driven)]
    {
        let mut best = f64::INFINITY;
        for _ in 0..5 {
            let mut bus = Bus::new(SR as f32, TICK_FRAMES);
            bus.snap(&params);
            let t0 = Instant::now();
            let mut input = jamrig::engine::bus::ChannelInput::default();
            for chunk in x.chunks_exact(TICK_FRAMES) {
                input.mono.copy_from_slice(chunk);
                bus.process(&input, &params, BusOut { left: &mut l, right: &mut r, shared_reverb: None });
                std::hint::black_box((&l, &r));
            }
            best = best.min(t0.elapsed().as_secs_f64() * 1e9 / frames as f64);
        }
        println!("{name}: {best:.1} ns per frame (best of 5)");
    }
}

fn startup() {
    // Every example set, loaded from scratch (stdlib, tables, drum kit, set).
    for path in ["examples/set.rhai", "examples/tour.rhai", "examples/live-coding.rhai", "examples/op-xy.rhai"] {
        let mut times = Vec::new();
        for _ in 0..5 {
            let t0 = Instant::now();
            let host = ScriptHost::new().expect("stdlib");
            let ev = host.eval_file(std::path::Path::new(path)).expect("example set");
            let r = Renderer::new(&ev.set, SR).expect("rig");
            std::hint::black_box(&r);
            times.push(t0.elapsed());
        }
        times.sort();
        println!(
            "    load {path}: median {:.0} ms, worst {:.0} ms (target < 300 ms)",
            times[2].as_secs_f64() * 1e3,
            times[4].as_secs_f64() * 1e3
        );
    }
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

/// The prebuilt tables at 48 kHz (band-limited wavetables and the drum kit), built from
/// scratch several times: best and median wall time of `Tables::new`, then the drum kit
/// alone, then each sound's own render time (one thread), longest first.
fn table_build() {
    const RUNS: usize = 15;
    let time = |f: &dyn Fn()| -> (f64, f64) {
        let mut ms: Vec<f64> = (0..RUNS)
            .map(|_| {
                let t0 = Instant::now();
                f();
                t0.elapsed().as_secs_f64() * 1e3
            })
            .collect();
        ms.sort_by(f64::total_cmp);
        (ms[0], ms[RUNS / 2])
    };
    let (best, median) = time(&|| {
        std::hint::black_box(Tables::new(SR as f32));
    });
    println!("    Tables::new(48000): best {best:.1} ms, median {median:.1} ms ({RUNS} runs)");
    let (best, median) = time(&|| {
        std::hint::black_box(jamrig::tables::DrumKit::new(SR as f64));
    });
    println!("    DrumKit::new(48000): best {best:.1} ms, median {median:.1} ms ({RUNS} runs)");
    let kit = jamrig::tables::DrumKit::new(SR as f64);
    let kit_samples: usize = kit.sounds.iter().map(|s| s.len()).sum();
    println!("    the kit holds {kit_samples} samples ({:.1} MB)", kit_samples as f64 * 4.0 / 1e6);
    let (best, median) = time(&|| {
        std::hint::black_box(jamrig::tables::wavetable::Wavetables::new());
    });
    println!("    Wavetables::new(): best {best:.1} ms, median {median:.1} ms ({RUNS} runs)");
    let sounds = jamrig::tables::drums::DRUM_SOUNDS;
    let mut each: Vec<(f64, &str)> = (0..sounds.len())
        .map(|i| {
            let mut ms: Vec<f64> = (0..5)
                .map(|_| {
                    let t0 = Instant::now();
                    std::hint::black_box(jamrig::tables::drums::render_drum(i, SR as f64, 0));
                    t0.elapsed().as_secs_f64() * 1e3
                })
                .collect();
            ms.sort_by(f64::total_cmp);
            (ms[0], sounds[i].name)
        })
        .collect();
    let total: f64 = each.iter().map(|e| e.0).sum();
    // The two threads' shares under each way of splitting the work, from the times above
    // (one thread each, no contention): halves by count, and a shared counter handing out
    // the sounds in `render_order` to whichever thread is free.
    let cost = |i: usize| each[i].0;
    let half = sounds.len() / 2;
    let by_count = [(0..half).map(cost).sum::<f64>(), (half..sounds.len()).map(cost).sum::<f64>()];
    let mut shared = [0.0f64; 2];
    for i in jamrig::tables::drums::render_order() {
        let t = if shared[0] <= shared[1] { 0 } else { 1 };
        shared[t] += cost(i);
    }
    println!(
        "    two threads' shares: halves by count {:.1} and {:.1} ms; shared counter, costliest first {:.1} and {:.1} ms",
        by_count[0], by_count[1], shared[0], shared[1]
    );
    each.sort_by(|a, b| b.0.total_cmp(&a.0));
    println!("    the kit's sounds one after another (best of 5 each): {total:.1} ms in all; the slowest:");
    for (ms, name) in each.iter().take(20) {
        println!("      {name}: {ms:.2} ms");
    }
}

fn peak_rss_kb() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The memory an idle engine takes: the process's resident memory before and after
/// building the engine of `examples/set.rhai` (stdlib and tables built first), with
/// its buffers pre-faulted as the live host has them; nothing rendered.
fn idle_memory() {
    let rss_kb = || -> u64 {
        let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        s.lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let host = ScriptHost::new().expect("stdlib");
    let ev = host.eval_file(std::path::Path::new("examples/set.rhai")).expect("example set");
    let tables = Arc::new(Tables::new(SR as f32));
    let before = rss_kb();
    let r = Renderer::with_tables(&ev.set, tables).expect("rig");
    let after = rss_kb();
    std::hint::black_box(&r);
    println!(
        "idle engine of examples/set.rhai, buffers pre-faulted: {:.1} MB resident ({:.1} MB in the process)",
        (after - before) as f64 / 1024.0,
        after as f64 / 1024.0
    );
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

/// Median and p95 of 200 reloads of `path` (evaluate, validate, build, publish).
fn reload_times(host: &ScriptHost, path: &std::path::Path) -> (f64, f64) {
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
    (times[100].as_secs_f64() * 1e3, times[190].as_secs_f64() * 1e3)
}

fn reload() {
    let host = ScriptHost::new().expect("stdlib");
    let (median, p95) = reload_times(&host, std::path::Path::new("examples/set.rhai"));
    println!(
        "reload: evaluate + validate + build + publish examples/set.rhai: median {median:.2} ms, p95 {p95:.2} ms (target: median < 10 ms)"
    );
}

/// Mini-notation on the control thread: a reload of `examples/live-coding.rhai`
/// (whose patterns are mini-notation), and reading plus expanding every string of
/// the conformance corpus on a drum or melodic channel.
fn mini_notation() {
    use jamrig::script::mini::{self, pattern::Pattern};
    let host = ScriptHost::new().expect("stdlib");
    let (median, p95) = reload_times(&host, std::path::Path::new("examples/live-coding.rhai"));
    println!(
        "mini: reload of examples/live-coding.rhai (evaluate, expand, build, publish): median {median:.2} ms, p95 {p95:.2} ms"
    );
    let corpus = std::fs::read_to_string("tests/data/mini-corpus.txt").expect("corpus");
    let lines: Vec<(bool, &str)> =
        corpus.lines().filter_map(|l| l.split_once('\t')).map(|(k, s)| (k == "drums", s)).collect();
    let lib = host.library();
    let mut each = Vec::new();
    let mut hits = 0;
    let t_all = Instant::now();
    for (drums, s) in &lines {
        let t0 = Instant::now();
        let p: Pattern = mini::read(s).expect("corpus string");
        let (_, h) = jamrig::script::patterns::expand(lib, &p, *drums, 4.0, None, &mut Vec::new()).expect("expands");
        each.push(t0.elapsed());
        hits += h.len();
    }
    let total = t_all.elapsed();
    each.sort();
    println!(
        "mini: read + expand {} corpus strings ({hits} hits): {:.1} ms in all, median {:.3} ms, worst {:.2} ms",
        lines.len(),
        total.as_secs_f64() * 1e3,
        each[each.len() / 2].as_secs_f64() * 1e3,
        each[each.len() - 1].as_secs_f64() * 1e3
    );
    let t0 = Instant::now();
    let p = mini::read("[bd | sd | hh]*16?, cp(<3 5>,8,<0 2>)").expect("string");
    let (_, h) = jamrig::script::patterns::expand(lib, &p, true, 4.0, Some(256), &mut Vec::new()).expect("expands");
    println!(
        "mini: 256 bars of \"[bd | sd | hh]*16?, cp(<3 5>,8,<0 2>)\" ({} hits): {:.1} ms",
        h.len(),
        t0.elapsed().as_secs_f64() * 1e3
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

/// From a save of the set to the new snapshot published: the watcher, evaluation,
/// diff and build (what `jamrig play` does on a save). The sound follows one
/// audio buffer later (2.7 ms at 128 frames, 48 kHz).
fn save_latency() {
    use jamrig::script::session::{Reload, Session};
    let dir = std::env::temp_dir().join(format!("jamrig-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("set.rhai");
    let base = std::fs::read_to_string("examples/set.rhai").expect("example set");
    std::fs::write(&path, &base).expect("write");
    let mut session = Session::open(ScriptHost::new().expect("stdlib"), &path).expect("set");
    let mut r = Renderer::with_tables(session.set(), Arc::new(Tables::new(SR as f32))).expect("rig");
    let (tx, rx) = std::sync::mpsc::channel();
    let _w = jamrig::live::watch::watch(session.files(), move |_| {
        let _ = tx.send(Instant::now());
    })
    .expect("watch");
    std::thread::sleep(Duration::from_millis(100));
    let mut lat = Vec::new();
    for i in 0..200 {
        let text = base.replace("tempo(112);", &format!("tempo({});", 100 + i % 50));
        let t0 = Instant::now();
        std::fs::write(&path, &text).expect("write");
        // Merge the events of this save, as the control loop does (5 ms).
        rx.recv_timeout(Duration::from_secs(2)).expect("the watcher saw the save");
        while rx.recv_timeout(Duration::from_millis(5)).is_ok() {}
        match session.reload(&mut r.controller) {
            Reload::Changed { .. } | Reload::Unchanged { .. } => {}
            Reload::Failed(d) => panic!("{}", d.render()),
        }
        lat.push(t0.elapsed());
        r.render(TICK_FRAMES * 2, TICK_FRAMES);
    }
    lat.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "save to published: median {:.1} ms, p99 {:.1} ms, worst {:.1} ms over 200 saves (includes the 5 ms merge wait; add one buffer, 2.7 ms, to hear it) (target p99 < 20 ms)",
        ms(lat[100]),
        ms(lat[198]),
        ms(lat[199])
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// One run of the MIDI clock follower: a clock whose tempo for tick `k` is
/// `bpm(k)`, with uniform jitter of up to `jitter_ms`, Start after one beat of
/// pre-roll, hats on every beat. Returns, per song beat, the hat's onset minus its
/// tick (ms), and per tick the clock tempo the engine reported right after it.
fn clock_run(bpm: &dyn Fn(usize) -> f64, beats: usize, jitter_ms: f64, seed: u64) -> (Vec<f64>, Vec<f64>) {
    use rand::Rng;
    let host = ScriptHost::new().expect("stdlib");
    let text = r#"tempo(100); clock("midi"); drums(10); pattern("beat", 10, 1.0, [[0.0, "closed_hat", 100]]);"#;
    let set = host.eval_source("clock.rhai", text, None, Set::default(), false).expect("set").set;
    let mut r = Renderer::following_clock(&set, Arc::new(Tables::new(SR as f32))).expect("rig");
    let sr = SR as f64;
    let pre = 24;
    let n = pre + beats * 24;
    let mut ideal = Vec::with_capacity(n);
    let mut t = 4800.0;
    for k in 0..n {
        ideal.push(t);
        t += 60.0 * sr / (bpm(k) * 24.0);
    }
    let mut rng = rand_pcg::Pcg32::new(seed, 11);
    let mut events: Vec<Event> = ideal
        .iter()
        .map(|t| {
            let u = (rng.next_u32() as f64 / u32::MAX as f64) * 2.0 - 1.0;
            Event::new((t + u * jitter_ms * 1e-3 * sr).round() as u64, EventKind::Clock)
        })
        .collect();
    events.push(Event::new((ideal[pre] - 100.0) as u64, EventKind::ClockStart));
    r.add_events(events);
    let mut tempos = Vec::with_capacity(n);
    let mut onsets = Vec::new();
    let (mut frame, mut quiet) = (0u64, usize::MAX);
    for k in 0..n {
        let until = if k + 1 < n { ideal[k + 1] as u64 - 64 } else { ideal[k] as u64 + 1000 };
        let out = r.render(until.saturating_sub(frame) as usize, 512);
        for lr in out.chunks_exact(2) {
            if lr[0] != 0.0 {
                if quiet >= 2000 {
                    onsets.push(frame);
                }
                quiet = 0;
            } else {
                quiet = quiet.saturating_add(1);
            }
            frame += 1;
        }
        tempos.push(r.stats().clock_tempo().unwrap_or(0.0));
    }
    let phase = (0..beats)
        .filter_map(|b| {
            let want = ideal[pre + 24 * b];
            onsets.iter().map(|&o| (o as f64 - want) / sr * 1e3).min_by(|x, y| x.abs().total_cmp(&y.abs()))
        })
        .collect();
    (phase, tempos)
}

fn clock_follower() {
    let stats = |x: &[f64]| {
        let mean = x.iter().sum::<f64>() / x.len() as f64;
        let rms = (x.iter().map(|v| v * v).sum::<f64>() / x.len() as f64).sqrt();
        let worst = x.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        (mean, rms, worst)
    };
    for jitter in [0.0, 1.0] {
        let beats = 600;
        let (phase, tempos) = clock_run(&|_| 120.0, beats, jitter, 1);
        let settled: Vec<f64> = tempos[24 * 8..].iter().map(|t| t - 120.0).collect();
        let (tm, _, tw) = stats(&settled);
        let (pm, pr, pw) = stats(&phase[8..]);
        println!(
            "clock, steady 120 BPM, {jitter} ms jitter, {beats} beats: tempo error mean {tm:+.4} worst {tw:.4} BPM; phase error mean {pm:+.3} rms {pr:.3} worst {pw:.3} ms"
        );
    }
    for (from, to, jitter) in [(120.0, 132.0, 0.0), (120.0, 132.0, 1.0), (140.0, 96.0, 1.0), (120.0, 120.5, 1.0)] {
        let step = 32 * 24;
        let (phase, tempos) = clock_run(&move |k: usize| if k < 24 + step { from } else { to }, 64, jitter, 2);
        // Ticks from the change until the estimate stays within 0.1 BPM.
        let after = &tempos[24 + step..];
        let within = after.iter().rposition(|t| (t - to).abs() >= 0.1).map_or(0, |i| i + 1);
        let (_, _, before_w) = stats(&phase[8..32]);
        let (_, _, change_w) = stats(&phase[32..34]);
        let (_, _, after_w) = stats(&phase[34..]);
        println!(
            "clock, step {from} -> {to} BPM, {jitter} ms jitter: within 0.1 BPM after {within} ticks ({:.2} beats); phase error worst {before_w:.3} ms before, {change_w:.3} ms in the two beats of the change, {after_w:.3} ms after",
            within as f64 / 24.0
        );
    }
}

/// A minute of the example set with dense playing on top (a note every 50 ms, a
/// knob every 100 ms), run as the live host runs it, with and without a session
/// capture: the capture's size, its cost on the audio path, and how fast the
/// replay renders (and that it gives the same samples).
fn capture_cost() {
    use jamrig::capture::replay;
    use jamrig::capture::session::{CAPTURE_FILE, SessionCapture};
    use jamrig::script::session::Session;
    let dir = std::env::temp_dir().join(format!("jamrig-bench-capture-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let set_path = dir.join("set.rhai");
    std::fs::copy("examples/set.rhai", &set_path).expect("example set");
    let seconds = 60.0;
    let run = |capture: bool| -> (Vec<f32>, Duration) {
        let session = Session::open(ScriptHost::new().expect("stdlib"), &set_path).expect("set");
        let mut r = Renderer::following_clock(session.set(), Arc::new(Tables::new(SR as f32))).expect("rig");
        let mut cap = capture.then(|| {
            let (c, tap) = SessionCapture::start(&dir.join("take"), SR, &session).expect("capture");
            r.engine.capture_into(tap);
            c
        });
        let total = (seconds * SR as f64) as usize;
        let mut audio = Vec::with_capacity(total * 2);
        let mut buf = vec![0.0f32; 2 * BLOCK];
        let mut busy = Duration::ZERO;
        let mut k = 0u64;
        while audio.len() < total * 2 {
            let now = r.engine.frames_out();
            while k * 2400 < now + 2 * BLOCK as u64 {
                let note = 48 + (k * 7 % 36) as u8;
                r.controller.send(Event::new(k * 2400, EventKind::NoteOn { channel: 0, note, velocity: 90 }));
                r.controller.send(Event::new(k * 2400 + 2000, EventKind::NoteOff { channel: 0, note }));
                if k.is_multiple_of(2) {
                    let value = (k % 128) as u8;
                    r.controller.send(Event::new(k * 2400 + 7, EventKind::Control { channel: 0, cc: 74, value }));
                }
                k += 1;
            }
            let t0 = Instant::now();
            r.engine.process(&mut buf, 2);
            busy += t0.elapsed();
            audio.extend_from_slice(&buf);
            r.controller.collect();
            if let Some(c) = &mut cap {
                c.drain();
            }
        }
        if let Some(c) = cap {
            c.finish(r.engine.frames_out()).expect("capture written");
        }
        (audio, busy)
    };
    let (_, plain) = run(false);
    let (live, with) = run(true);
    let file = dir.join("take").join(CAPTURE_FILE);
    let bytes = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
    let lines = std::fs::read_to_string(&file).map(|t| t.lines().count()).unwrap_or(0);
    let log = replay::read(&dir.join("take")).expect("capture reads");
    let t0 = Instant::now();
    let mut again = Vec::with_capacity(live.len());
    replay::replay(&log, |x| again.extend_from_slice(x)).expect("replay");
    let replay_time = t0.elapsed();
    let same = again.len() >= live.len() && again[..live.len()] == live[..];
    println!(
        "capture, 60 s of examples/set.rhai with a note every 50 ms and a knob every 100 ms: {lines} records, {:.0} kB ({:.1} kB per minute)",
        bytes as f64 / 1e3,
        bytes as f64 / 1e3 / (seconds / 60.0)
    );
    println!(
        "capture, audio path: {:.1} ms without the capture tap, {:.1} ms with it ({:+.1}%); replay: {:.0}x real time, same samples as live: {same}",
        plain.as_secs_f64() * 1e3,
        with.as_secs_f64() * 1e3,
        (with.as_secs_f64() / plain.as_secs_f64() - 1.0) * 100.0,
        seconds / replay_time.as_secs_f64()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// CPU per audio second while notes play, and then in the fading tail that follows
/// (bus filters, delay feedback and reverb ringing out after the last note-off),
/// where values sink towards the denormal range.
fn tail(tables: &Arc<Tables>) {
    for (label, delay_time, feedback) in [("dense echoes", 0.3, 0.85), ("sparse echoes", 1.5, 0.6)] {
        tail_with(tables, label, delay_time, feedback);
    }
}

fn tail_with(tables: &Arc<Tables>, label: &str, delay_time: f32, feedback: f32) {
    let mut set = Set::default();
    for ch in 1..=4u8 {
        let mut c = synth_channel("saw", true, 8);
        c.params.set(Param::Highpass, 80.0);
        c.params.set(Param::Phaser, 0.3);
        c.params.set(Param::DelayFeedback, feedback);
        c.params.set(Param::DelayTime, delay_time);
        c.params.set(Param::Release, 0.05);
        set.channels.insert(ch, c);
    }
    let mut best_play = f64::MAX;
    let mut best_tail = [f64::MAX; 4];
    for _ in 0..3 {
        let mut r = Renderer::with_tables(&set, tables.clone()).expect("rig builds");
        let mut evs = Vec::new();
        for ch in 0..4u8 {
            for v in 0..4u8 {
                let note = 48 + v * 5 + ch;
                evs.push(Event::new(0, EventKind::NoteOn { channel: ch, note, velocity: 100 }));
                evs.push(Event::new(SR as u64 * 2, EventKind::NoteOff { channel: ch, note }));
            }
        }
        r.add_events(evs);
        let (rtf, _) = time_blocks(&mut r, 2.0);
        best_play = best_play.min(1.0 / rtf);
        // The tail, second by second: 0-5 s, 5-10 s, 10-20 s, 20-40 s after the last note.
        for (k, secs) in [5.0, 5.0, 10.0, 20.0].into_iter().enumerate() {
            let (rtf, _) = time_blocks(&mut r, secs);
            best_tail[k] = best_tail[k].min(1.0 / rtf);
        }
    }
    println!(
        "tail, {label}: CPU seconds per audio second (best of 3), 4 channels x 4 saw voices for 2 s, every effect, delay {delay_time} s, feedback {feedback}"
    );
    println!("  while playing: {best_play:.4}");
    for (label, v) in ["0-5 s", "5-10 s", "10-20 s", "20-40 s"].iter().zip(best_tail) {
        println!("  tail {label} after the last note: {v:.4}");
    }
}

/// Evaluating a set at the size limits, in the shape that costs Rhai's parser most
/// (every declaration and every variable read searches the declarations before it):
/// the most declarations a file may have and reads up to the file size limit.
fn limits() {
    use jamrig::files::MAX_SET_BYTES;
    use jamrig::script::source::MAX_DECLARATIONS;
    let n = MAX_DECLARATIONS - 1;
    let mut text: String = (0..n).map(|i| format!("let v{i} = {i};\n")).collect();
    text.push_str("let s = 0;\n");
    let mut i = 0;
    loop {
        let line = format!("s = {};\n", (0..30).map(|j| format!("v{}", (i * 7 + j) % n)).collect::<Vec<_>>().join("+"));
        if text.len() + line.len() > MAX_SET_BYTES as usize {
            break;
        }
        text.push_str(&line);
        i += 1;
    }
    let host = ScriptHost::new().expect("stdlib");
    let mut times: Vec<f64> = (0..5)
        .map(|_| {
            let t0 = Instant::now();
            host.eval_source("worst.rhai", &text, None, Set::default(), false).expect("evaluates");
            t0.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(f64::total_cmp);
    println!(
        "limits: a {} byte set, {} declarations and {} lines of 30 reads: best {:.3} s, median {:.3} s of 5",
        text.len(),
        n + 1,
        i,
        times[0],
        times[2]
    );
}

/// Where rendering on two threads starts to pay: loads of a few channels and voices,
/// rendered on one thread, on two with every tick handed out whatever its size, and
/// on two as the engine decides (a tick is handed out from `PARALLEL_MIN_MICROS` of
/// channel work on), in wall time; the best of 5 runs of 1 s each.
fn crossover(tables: &Arc<Tables>) {
    println!("machine speed now: {:.2} G reference iterations/s", machine_speed());
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("load average before: {}", load.trim());
    println!("    channels x voices (fx)   us per tick   1 thread   2 threads   2 over 1   2 (auto)   auto over 1");
    for fx in [false, true] {
        for (channels, voices) in
            [(2usize, 0usize), (2, 1), (2, 4), (4, 1), (4, 4), (4, 16), (1, 32), (8, 4), (8, 16), (16, 16)]
        {
            let rtf = |threads: usize, min_micros: f32| {
                let mut r = held(tables, "saw", channels, voices.max(1), fx);
                if voices == 0 {
                    // Buses only: the voices released, the tails ringing.
                    let evs = (0..channels as u8)
                        .map(|c| Event::new(r.engine.frame(), EventKind::Control { channel: c, cc: 123, value: 0 }));
                    r.add_events(evs.collect::<Vec<_>>());
                    r.render(SR as usize / 10, BLOCK);
                }
                r.engine.set_threads(threads, false);
                r.engine.set_parallel_min_micros(min_micros);
                rtf_runs(&mut r, 5, 1.0).0
            };
            let (one, two, auto) = (rtf(1, 0.0), rtf(2, 0.0), rtf(2, jamrig::engine::PARALLEL_MIN_MICROS));
            // The whole render's time per 64-frame tick on one thread.
            let micros = TICK_FRAMES as f64 / SR as f64 / one * 1e6;
            println!(
                "    {channels:2} x {voices:2} ({})         {micros:8.1}   {one:7.0}x   {two:8.0}x   {:6.2}   {auto:7.0}x   {:6.2}",
                if fx { "on " } else { "off" },
                two / one,
                auto / one
            );
        }
    }
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("load average after: {}", load.trim());
}

/// The wavetable kernels alone (`jamrig::dsp::wavescan`): a supersaw layer's seven
/// saws on one table, and the sub-oscillator's sine mix, in tick-long blocks.
fn wavescan_cost(tables: &Arc<Tables>) {
    use jamrig::dsp::wavescan::{add_oscillators, mix_oscillator};
    use jamrig::tables::wavetable::{Shape, phase_inc};
    const SAWS: usize = 7;
    const SECONDS: usize = 2;
    let blocks = SECONDS * SR as usize / TICK_FRAMES;
    let mut saw_runs = Vec::new();
    let mut sine_runs = Vec::new();
    for _ in 0..5 {
        let (mut saw_ns, mut sine_ns) = (0.0, 0.0);
        for note in [36.0, 48.0, 60.0, 72.0, 84.0] {
            let hz = jamrig::theory::note_hz(note);
            let incs: [u32; SAWS] = std::array::from_fn(|k| phase_inc(hz * (1.0 + 0.003 * k as f64), SR as f64));
            let table = tables.waves.table(Shape::Saw, incs[SAWS - 1]);
            let mut phases: [u32; SAWS] = std::array::from_fn(|k| (k as u32).wrapping_mul(0x9E37_79B9));
            let mut buf = [0.0f32; TICK_FRAMES];
            let t0 = Instant::now();
            for _ in 0..blocks {
                buf.fill(0.0);
                add_oscillators(&[table; SAWS], &mut phases, &incs, 0.17, &mut buf);
                std::hint::black_box(&mut buf);
            }
            saw_ns += t0.elapsed().as_secs_f64() * 1e9;
            let mut phase = 0u32;
            let t0 = Instant::now();
            for _ in 0..blocks {
                mix_oscillator(tables.waves.sine(), &mut phase, incs[0] / 2, 0.94, 0.06, &mut buf);
                std::hint::black_box(&mut buf);
            }
            sine_ns += t0.elapsed().as_secs_f64() * 1e9;
        }
        let samples = (5 * blocks * TICK_FRAMES) as f64;
        saw_runs.push(saw_ns / (samples * SAWS as f64));
        sine_runs.push(sine_ns / samples);
    }
    saw_runs.sort_by(f64::total_cmp);
    sine_runs.sort_by(f64::total_cmp);
    println!(
        "wavetable kernels, ns per oscillator-sample (median of 5; notes 36 to 84, {SECONDS} s each, {TICK_FRAMES}-frame blocks):"
    );
    println!("    add_oscillators, 7 saws     {:7.3}", saw_runs[2]);
    println!("    mix_oscillator, sine        {:7.3}", sine_runs[2]);
}

fn main() {
    // One thread unless a bench says otherwise (renders default to every core).
    jamrig::engine::workers::set_threads(1);
    let which: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    if which.iter().any(|w| w == "only-b") {
        let tables = Arc::new(Tables::new(SR as f32));
        for _ in 0..4 {
            let mut b = held(&tables, "saw", 4, 32, true);
            let (best, median) = rtf_runs(&mut b, 5, 1.0);
            println!("(b) alone: best {best:.0}x median {median:.0}x");
        }
        return;
    }
    if which.iter().any(|w| w == "fixed-b") {
        let tables = Arc::new(Tables::new(SR as f32));
        let mut r = held(&tables, "saw", 4, 32, true);
        let mut buf = vec![0.0f32; SR as usize * 2];
        r.render_into(&mut buf, BLOCK);
        std::hint::black_box(&buf);
        return;
    }
    if which.iter().any(|w| w == "tables-once") {
        // One build of the tables and nothing else, for instruction counts under callgrind.
        std::hint::black_box(Tables::new(SR as f32));
        return;
    }
    if which.iter().any(|w| w == "fixed") {
        fixed_work(&Arc::new(Tables::new(SR as f32)));
        return;
    }
    let run = |name: &str| which.is_empty() || which.iter().any(|w| w == name);
    if which.iter().any(|w| w == "idle") {
        idle_memory();
        return;
    }
    if run("memory") && which.len() == 1 {
        // Alone, so that peak memory is this scenario's own.
        memory();
        return;
    }
    let tables = Arc::new(Tables::new(SR as f32));
    if run("throughput") {
        throughput(&tables);
    }
    if which.iter().any(|w| w == "crossover") {
        crossover(&tables);
    }
    if run("voices") {
        voices(&tables);
    }
    if run("startup") {
        startup();
    }
    if which.iter().any(|w| w == "tables") {
        table_build();
    }
    if run("reload") {
        reload();
    }
    if run("save") {
        save_latency();
    }
    if run("synths") {
        synth_costs(&tables);
    }
    if run("wavescan") {
        wavescan_cost(&tables);
    }
    if run("reverb") {
        reverb_cost();
    }
    if run("mini") {
        mini_notation();
    }
    if run("clock") {
        clock_follower();
    }
    if run("capture") {
        capture_cost();
    }
    if run("tail") {
        tail(&tables);
    }
    if run("limits") {
        limits();
    }
    if run("memory") {
        println!("(e) run `cargo bench --bench engine -- memory` alone to measure peak memory");
    }
}
