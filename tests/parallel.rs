//! Rendering on several threads: the output is the same, bit for bit, on 1, 2, 3
//! and 8 threads, for the example sets (patterns, played notes, knobs, program
//! changes, a panic) and a SoundFont set with shared effect sends; at any block
//! size; through a reload of the same set; with one heavy channel whose voices are
//! summed in parts handed out apart, a tick at a time and over whole batches;
//! with ticks rendered in batches (several ticks a hand-off, each batch's sum
//! beside the next batch's channels) against one tick at a time. Also the larger voice pool: 256 voices on one
//! channel, thousands in all.

mod common;

use common::*;
use jamrig::engine::TICK_FRAMES;
use jamrig::engine::event::{Event, EventKind};
use jamrig::offline::Renderer;
use jamrig::rig::Set;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;

const SR: u32 = 48_000;
const THREADS: [usize; 4] = [1, 2, 3, 8];
/// The most frames the engine renders in one batch (8 ticks).
const MAX_BATCH_FRAMES: usize = 8 * TICK_FRAMES;

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples").join(name)
}

/// Evaluates an example set from its own folder (it may read files there).
fn example_set(name: &str) -> Set {
    let path = example(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    match host().eval_source(
        &path.to_string_lossy(),
        &text,
        path.parent().map(Path::to_path_buf),
        Set::default(),
        false,
    ) {
        Ok(ev) => ev.set,
        Err(d) => panic!("{name} does not evaluate:\n{}", d.render()),
    }
}

/// Notes on every channel (several at once, some held long), knobs, bends, a
/// program change, the sustain pedal and a panic: the channel events of a busy
/// performance, over `seconds`.
fn performance(seconds: f64) -> Vec<Event> {
    let mut evs = Vec::new();
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    let mut next = |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let frames = (seconds * SR as f64) as u64;
    let mut t = 0u64;
    while t < frames {
        let ch = next(16) as u8;
        let note = 36 + next(48) as u8;
        evs.push(note_on(t, ch, note, 60 + next(60) as u8));
        evs.push(note_off(t + 2000 + next(40_000), ch, note));
        match next(12) {
            0 => evs.push(cc(t + 5, ch, 74, next(128) as u8)),
            1 => evs.push(cc(t + 7, ch, 64, 127)),
            2 => evs.push(cc(t + 9, ch, 64, 0)),
            3 => evs.push(Event::new(t + 3, EventKind::PitchBend { channel: ch, value: next(16384) as i16 - 8192 })),
            4 => evs.push(cc(t + 11, ch, 91, next(128) as u8)),
            5 => evs.push(Event::new(t + 13, EventKind::Program { channel: ch, program: next(128) as u8 })),
            _ => {}
        }
        t += 300 + next(3000);
    }
    evs.push(Event::new(frames * 3 / 4, EventKind::Panic));
    evs
}

/// Renders `set` with `events` on `threads` threads in blocks of `block` frames.
fn render(set: &Set, events: &[Event], threads: usize, seconds: f64, block: usize) -> (Vec<f32>, u64) {
    let mut r = Renderer::with_tables(set, tables(SR)).expect("rig builds");
    r.engine.set_threads(threads, false);
    r.engine.set_parallel_min_micros(0.0);
    r.add_events(events.iter().copied());
    let out = r.render((seconds * SR as f64) as usize, block);
    (out, r.engine.worker_items())
}

fn first_difference(a: &[f32], b: &[f32]) -> Option<usize> {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).position(|(x, y)| x.to_bits() != y.to_bits()).map(|i| i / 2)
}

fn assert_same_on_every_thread_count(what: &str, set: &Set, events: &[Event], seconds: f64) {
    let (one, _) = render(set, events, 1, seconds, 512);
    assert!(rms(&one) > 1e-3, "{what}: the render is silent, so the comparison proves nothing");
    for threads in THREADS.into_iter().skip(1) {
        let (many, by_workers) = render(set, events, threads, seconds, 512);
        if let Some(f) = first_difference(&one, &many) {
            panic!("{what}: {threads} threads differ from one from frame {f}");
        }
        assert!(by_workers > 0, "{what}: on {threads} threads the workers rendered no channel");
    }
}

#[test]
fn the_example_sets_render_the_same_on_every_thread_count() {
    let events = performance(4.0);
    for name in ["set.rhai", "tour.rhai", "live-coding.rhai", "op-xy.rhai"] {
        assert_same_on_every_thread_count(name, &example_set(name), &events, 4.0);
    }
}

#[test]
fn a_soundfont_set_with_shared_sends_renders_the_same_on_every_thread_count() {
    // examples/soundfont.rhai: TimGM6mb (installed by scripts/deps.sh), samples, a
    // sampled instrument; sampled channels send to the shared reverb and chorus.
    let set = example_set("soundfont.rhai");
    let mut events = performance(4.0);
    for ch in 0..16 {
        events.push(cc(0, ch, 91, 70));
        events.push(cc(0, ch, 93, 50));
    }
    assert_same_on_every_thread_count("soundfont.rhai", &set, &events, 4.0);
}

/// `chords` of `size` notes held on `channel` one after another (each 1.2 s, then
/// released into the next), with a bend and a knob on the way.
fn heavy_chords(channel: u8, size: u8, chords: u64) -> Vec<Event> {
    let mut evs = Vec::new();
    for c in 0..chords {
        let (on, off) = (c * 57_600 + 100, (c + 1) * 57_600 + 100);
        for i in 0..size {
            evs.push(note_on(on + i as u64, channel, 40 + (i * 5 + c as u8 * 3) % 48, 70 + i % 40));
            evs.push(note_off(off + i as u64 * 7, channel, 40 + (i * 5 + c as u8 * 3) % 48));
        }
        evs.push(Event::new(on + 30_000, EventKind::PitchBend { channel, value: 1500 }));
        evs.push(cc(on + 40_000, channel, 74, 40 + c as u8 * 20));
    }
    evs
}

#[test]
fn a_heavy_channel_summed_in_parts_renders_the_same_on_every_thread_count() {
    // One heavy channel (32 supersaw pad voices, released into the next chord, so
    // voices end inside ticks rendered in parts) beside a light one.
    // A heavy lead channel too, whose voice filters run side by side, eight at a time.
    let set = common::set(
        "channel(1, \"synth_pad\", #{ voices: 64, reverb: 0.3, chorus: 0.2, lowpass: 4000.0 });\n\
         channel(2, \"bass_guitar\");\n\
         channel(3, \"synth_lead\", #{ voices: 64, envelope: \"pad\", lowpass: 2000.0 });\n",
    );
    let mut events = heavy_chords(0, 32, 3);
    events.extend(heavy_chords(2, 27, 3));
    for k in 0..12u64 {
        events.push(note_on(k * 12_000, 1, 36 + (k % 5) as u8, 90));
        events.push(note_off(k * 12_000 + 6_000, 1, 36 + (k % 5) as u8));
    }
    let seconds = 3.0;
    let (one, _) = render(&set, &events, 1, seconds, 512);
    assert!(rms(&one) > 1e-3, "the render is silent, so the comparison proves nothing");
    for (threads, block) in [(2, 512), (3, 512), (8, 512), (2, 37), (3, 4096)] {
        let mut r = Renderer::with_tables(&set, tables(SR)).expect("rig builds");
        r.engine.set_threads(threads, false);
        r.engine.set_parallel_min_micros(0.0);
        r.add_events(events.iter().copied());
        let many = r.render((seconds * SR as f64) as usize, block);
        if let Some(f) = first_difference(&one, &many) {
            panic!("{threads} threads at {block}-frame blocks differ from one thread from frame {f}");
        }
        assert!(
            r.engine.parts_handed_out() > 0,
            "on {threads} threads the heavy channel was never handed out in parts"
        );
        assert!(r.engine.worker_items() > 0, "on {threads} threads the workers rendered nothing");
    }
}

#[test]
fn a_heavy_sampled_channel_with_sends_summed_in_parts_renders_the_same() {
    // The SoundFont set's strings (sampled, sending to the shared reverb and
    // chorus) hold 24-note chords: their parts carry the sends too.
    let set = example_set("soundfont.rhai");
    let mut events = heavy_chords(2, 24, 2);
    events.push(cc(0, 2, 91, 90));
    events.push(cc(0, 2, 93, 60));
    let seconds = 2.5;
    let (one, _) = render(&set, &events, 1, seconds, 512);
    assert!(rms(&one) > 1e-3, "the render is silent, so the comparison proves nothing");
    for threads in [2, 3] {
        let mut r = Renderer::with_tables(&set, tables(SR)).expect("rig builds");
        r.engine.set_threads(threads, false);
        r.engine.set_parallel_min_micros(0.0);
        r.add_events(events.iter().copied());
        let many = r.render((seconds * SR as f64) as usize, 512);
        if let Some(f) = first_difference(&one, &many) {
            panic!("{threads} threads differ from one from frame {f}");
        }
        assert!(r.engine.parts_handed_out() > 0, "on {threads} threads the strings were never handed out in parts");
    }
}

#[test]
fn a_heavy_channel_handed_out_in_parts_within_batches_renders_the_same() {
    // 32 held pad voices that no event reaches for seconds (their parameters at
    // rest: each part renders its voices over a whole batch, the last to finish
    // runs the channel's ticks), then released (still handed out in parts while no
    // voice can end within a batch, then whole as they end), beside a lead channel
    // of held voices and a bass line; against one thread a tick at a time.
    let set = common::set(
        "channel(1, \"synth_pad\", #{ voices: 64, reverb: 0.3, chorus: 0.2, lowpass: 4000.0, release: 0.5 });\n\
         channel(2, \"bass_guitar\");\n\
         channel(3, \"synth_lead\", #{ voices: 64, envelope: \"pad\", release: 0.3 });\n",
    );
    let mut events = Vec::new();
    for i in 0..32u8 {
        let note = 36 + (i * 7) % 60;
        events.push(note_on(100 + i as u64, 0, note, 70 + i));
        events.push(note_off(110_000 + i as u64 * 500, 0, note));
    }
    for i in 0..20u8 {
        events.push(note_on(3_000 + i as u64 * 40, 2, 48 + i, 80));
        events.push(note_off(120_000, 2, 48 + i));
    }
    for k in 0..12u64 {
        events.push(note_on(k * 12_000, 1, 36 + (k % 5) as u8, 90));
        events.push(note_off(k * 12_000 + 6_000, 1, 36 + (k % 5) as u8));
    }
    let seconds = 3.5;
    let (reference, _) = render(&set, &events, 1, seconds, TICK_FRAMES);
    assert!(rms(&reference) > 1e-3, "the render is silent, so the comparison proves nothing");
    for (threads, block) in [(1, 512), (2, 512), (2, 4800), (3, 1024), (2, 1000), (8, 2048)] {
        let mut r = Renderer::with_tables(&set, tables(SR)).expect("rig builds");
        r.engine.set_threads(threads, false);
        r.engine.set_parallel_min_micros(0.0);
        r.add_events(events.iter().copied());
        let x = r.render((seconds * SR as f64) as usize, block);
        if let Some(f) = first_difference(&reference, &x) {
            panic!("{threads} threads at {block}-frame blocks differ from one tick at a time from frame {f}");
        }
        if threads == 1 {
            assert_eq!(r.engine.batch_splits(), 0, "one thread hands nothing out");
        } else if threads <= 3 {
            // (On 8 threads three channels share out unevenly whatever the parts:
            // ticks render one at a time.)
            assert!(
                r.engine.batch_splits() > 20,
                "on {threads} threads at {block}-frame blocks the heavy channel was handed out in parts in few \
                 batches ({})",
                r.engine.batch_splits()
            );
        }
    }
}

#[test]
fn block_size_does_not_matter_on_several_threads() {
    let set = example_set("set.rhai");
    let events = performance(2.0);
    let (reference, _) = render(&set, &events, 1, 2.0, 512);
    for (threads, block) in [(2, 1), (3, 37), (2, 64), (8, 100), (3, 4096)] {
        let (x, _) = render(&set, &events, threads, 2.0, block);
        if let Some(f) = first_difference(&reference, &x) {
            panic!("{threads} threads at {block}-frame blocks differ from one thread at 512 from frame {f}");
        }
    }
}

#[test]
fn republishing_the_same_set_changes_nothing_on_several_threads() {
    let set = example_set("set.rhai");
    // Without program changes: a reload returns a channel to the set's own
    // instrument's parameters, so it is not a null reload after one.
    let events: Vec<Event> =
        performance(3.0).into_iter().filter(|e| !matches!(e.kind, EventKind::Program { .. })).collect();
    let (whole, _) = render(&set, &events, 1, 3.0, 512);
    for (threads, split) in [(1, 72_000usize), (2, 72_000usize), (3, 72_017)] {
        let mut r = Renderer::with_tables(&set, tables(SR)).unwrap();
        r.engine.set_threads(threads, false);
        r.engine.set_parallel_min_micros(0.0);
        r.add_events(events.iter().copied());
        let mut x = r.render(split, 512);
        r.publish(&example_set("set.rhai")).expect("set builds");
        x.extend(r.render(3 * SR as usize - split, 512));
        assert_eq!(r.stats().snapshots_adopted.load(Relaxed), 1);
        if let Some(f) = first_difference(&whole, &x) {
            panic!("republishing on {threads} threads (split {split}) changes the output from frame {f}");
        }
    }
}

#[test]
fn a_channel_holds_256_voices_and_the_pool_holds_them_on_every_channel() {
    const { assert!(jamrig::engine::MAX_VOICE_LIMIT >= 256 && jamrig::engine::MAX_VOICES >= 4096) };
    let text = (1..=16)
        .filter(|ch| *ch != 10)
        .map(|ch| format!("channel({ch}, #{{ synth: \"sine\", envelope: \"organ\", voices: 256 }});\n"))
        .collect::<String>();
    let mut r = renderer(&text, SR);
    r.engine.set_threads(2, false);
    r.engine.set_parallel_min_micros(0.0);
    // 256 held notes on each of 15 channels: 3840 voices; then one more note on
    // channel 1 steals its oldest.
    let mut evs = Vec::new();
    for ch in (0..16u8).filter(|&c| c != 9) {
        for k in 0..256u32 {
            evs.push(note_on(k as u64 * 3, ch, (k % 96) as u8 + 12, 40));
        }
    }
    evs.push(note_on(3000, 0, 100, 40));
    r.add_events(evs);
    r.render(2400, 512);
    let stats = r.stats().clone();
    let sounding: u32 = stats.voices.iter().map(|v| v.load(Relaxed)).sum();
    assert_eq!(sounding, 15 * 256, "every note sounds");
    assert_eq!(stats.voices_stolen.load(Relaxed), 0);
    r.render(2400, 512);
    assert_eq!(stats.voices_stolen.load(Relaxed), 1, "the 257th note on a channel steals one");
    assert_eq!(stats.voices_cut.load(Relaxed), 0);
    assert_eq!(stats.voices[0].load(Relaxed), 256, "after the stolen voice's fade the channel holds its limit");
}

#[test]
fn ticks_rendered_in_batches_match_ticks_rendered_one_at_a_time() {
    // Patterns, played notes, knobs, program changes and a panic (these two end a
    // batch: their tick renders alone), against one thread at 64-frame blocks,
    // where every tick renders alone; the example set, and channels sharing their
    // buses' reverbs (fed in channel order in each tick's sum).
    let shared = common::set(
        "let fx = #{ reverb: 0.3, lowpass: 4000.0, chorus: 0.2 };
         for ch in [1, 5] { channel(ch, \"electric_piano\", fx); }
         for ch in [2, 6] { channel(ch, \"bass_guitar\", fx); }
         drums(10);",
    );
    let events = performance(3.0);
    for (what, set) in [("set.rhai", example_set("set.rhai")), ("shared reverbs", shared)] {
        let (reference, _) = render(&set, &events, 1, 3.0, 64);
        assert!(rms(&reference) > 1e-3, "{what}: the render is silent, so the comparison proves nothing");
        for (threads, block) in
            [(1, 512), (2, 128), (2, 512), (3, 200), (2, 1024), (3, 4096), (2, 4800), (8, 512), (8, 2048)]
        {
            let mut r = Renderer::with_tables(&set, tables(SR)).expect("rig builds");
            r.engine.set_threads(threads, false);
            r.engine.set_parallel_min_micros(0.0);
            r.add_events(events.iter().copied());
            let x = r.render(3 * SR as usize, block);
            if let Some(f) = first_difference(&reference, &x) {
                panic!(
                    "{what}: {threads} threads at {block}-frame blocks (in batches) differ from one tick at a time from frame {f}"
                );
            }
            assert!(
                r.engine.batched_ticks() > 0,
                "{what}: {threads} threads at {block}-frame blocks rendered no batch"
            );
            if threads > 1 {
                assert!(r.engine.worker_items() > 0, "{what}: on {threads} threads the workers rendered nothing");
            }
            if threads == 2 && block >= 2 * MAX_BATCH_FRAMES {
                // Several batches a call: each one's sum beside the next one's channels
                // (on more threads the channels may share out unevenly, and then
                // ticks render one at a time).
                assert!(
                    r.engine.sums_overlapped() > 0,
                    "{what}: {threads} threads at {block}-frame blocks summed no batch beside the next"
                );
            }
        }
    }
}

#[test]
fn batches_at_any_block_size_with_events_and_a_snapshot_mid_stream_match() {
    // As the live host calls it: events arrive through the queue, the engine is
    // asked for 1 to 1024 frames at a time, and another set is published at a tick
    // start mid-stream (adopted there in every run).
    let (a, b) = (example_set("set.rhai"), example_set("live-coding.rhai"));
    let mut events: Vec<Event> = performance(3.0);
    events.sort_by_key(|e| e.frame);
    let frames = 3 * SR as usize;
    let switch_at = 1000 * TICK_FRAMES;
    let run = |threads: usize, sizes: &mut dyn FnMut() -> usize| -> (Vec<f32>, u64) {
        let mut r = Renderer::with_tables(&a, tables(SR)).expect("rig builds");
        r.engine.set_threads(threads, false);
        r.engine.set_parallel_min_micros(0.0);
        let mut sent = 0;
        let mut out = vec![0.0f32; 2 * frames];
        let mut done = 0;
        while done < frames {
            if done == switch_at {
                r.publish(&b).expect("set builds");
            }
            // Events up to a second ahead, as an input would deliver them (sooner).
            while sent < events.len() && events[sent].frame < (done + SR as usize) as u64 {
                assert!(r.controller.send(events[sent]), "the event queue has room");
                sent += 1;
            }
            let limit = if done < switch_at { switch_at } else { frames };
            let n = sizes().clamp(1, 1024).min(limit - done);
            r.engine.process(&mut out[2 * done..2 * (done + n)], 2);
            done += n;
            r.controller.collect();
        }
        assert_eq!(r.stats().snapshots_adopted.load(Relaxed), 1);
        (out, r.engine.batched_ticks())
    };
    let (reference, none) = run(1, &mut || TICK_FRAMES);
    assert_eq!(none, 0, "64-frame calls render one tick at a time");
    assert!(rms(&reference) > 1e-3, "the render is silent, so the comparison proves nothing");
    for threads in [1, 2, 3] {
        let mut seed = 0x9E37_79B9_7F4A_7C15u64 ^ threads as u64;
        let mut sizes = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            1 + (seed % 1024) as usize
        };
        let (x, batched) = run(threads, &mut sizes);
        if let Some(f) = first_difference(&reference, &x) {
            panic!("{threads} threads at 1..1024-frame calls differ from 64-frame calls from frame {f}");
        }
        assert!(batched > 0, "{threads} threads rendered no batch");
    }
}
