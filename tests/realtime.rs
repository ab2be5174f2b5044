//! The realtime contract: the engine's process path (snapshot adoption and reload
//! included, with bursts of every kind of event) never allocates or frees. Every
//! call runs under `assert_no_alloc`, which counts violations in this build.

use assert_no_alloc::{AllocDisabler, assert_no_alloc, reset_violation_count, violation_count};
use jamrig::capture::recorder::{RecordTap, Recorder};
use jamrig::engine::event::{Event, EventKind};
use jamrig::engine::tap::CaptureTap;
use jamrig::offline::Renderer;
use jamrig::rig::Set;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

mod common;

#[global_allocator]
static ALLOCATOR: AllocDisabler = AllocDisabler;

/// Two sets that differ in every way a reload can: parameters, an instrument, a
/// channel removed and one added, patterns, CC map, tempo.
fn sets() -> (Set, Set) {
    let a = common::set(
        r#"
        tempo(120);
        channel(1, "synth_bass", #{ reverb: 0.3, delay: 0.3, chorus: 0.4, phaser: 0.3, tremolo_depth: 0.3 });
        channel(2, #{ synth: "fm", envelope: "pad", lowpass: 900.0, distortion: 0.5, saturation: 0.4 });
        channel(3, "pluck_synth", #{ highpass: 200.0, voices: 4 });
        channel(4, "synth_pad");
        drums(10);
        cc(74, "lowpass", 200.0, 8000.0);
        cc(71, "reverb", 0.0, 0.8, 2);
        pattern("beat", 10, "rock");
        pattern("bass", 1, 4.0, [[0.0, "A1", 100, 0.5], [1.5, "C2", 90, 0.25], [2.0, "E2", 100, 0.5]]);
        "#,
    );
    let b = common::set(
        r#"
        tempo(133);
        channel(1, "organ", #{ reverb: 0.6, delay_time: 0.5 });
        channel(2, #{ synth: "fm", envelope: "pad", lowpass: 3000.0, fm_index: 8.0 });
        channel(5, "supersaw", #{ detune: 20.0, sub_osc: 0.5, noise_mix: 0.2 });
        channel(4, "synth_pad", #{ volume: 0.2 });
        drums(10, #{ volume: 0.9 });
        cc(74, "lowpass", 300.0, 6000.0, 5);
        pattern("beat", 10, "house", #{ fill: "house", every: 2 });
        pattern("lead", 5, 2.0, [[0.0, "A4", 100, 0.2], [0.5, "C5", 90, 0.2], [1.0, "E5", 100, 0.2]]);
        "#,
    );
    (a, b)
}

/// Every kind of event, at frames inside the next block.
fn burst(base: u64, round: usize) -> Vec<Event> {
    let mut evs = Vec::new();
    let f = |k: u64| base + k * 7;
    for n in 0..24u8 {
        let ch = n % 6;
        evs.push(Event::new(f(n as u64), EventKind::NoteOn { channel: ch, note: 40 + n, velocity: 100 }));
    }
    for n in 0..12u8 {
        evs.push(Event::new(f(30 + n as u64), EventKind::NoteOff { channel: n % 6, note: 40 + n }));
    }
    for note in [36u8, 38, 42, 46, 44, 49, 51] {
        evs.push(Event::new(f(40), EventKind::NoteOn { channel: 9, note, velocity: 110 }));
    }
    evs.push(Event::new(f(41), EventKind::Control { channel: 0, cc: 74, value: (round % 128) as u8 }));
    evs.push(Event::new(f(42), EventKind::Control { channel: 1, cc: 71, value: 64 }));
    evs.push(Event::new(f(43), EventKind::Control { channel: 2, cc: 64, value: 127 }));
    evs.push(Event::new(f(44), EventKind::Control { channel: 2, cc: 64, value: 0 }));
    evs.push(Event::new(f(45), EventKind::Control { channel: 3, cc: 7, value: 90 }));
    evs.push(Event::new(f(46), EventKind::Control { channel: 3, cc: 10, value: 20 }));
    evs.push(Event::new(f(46), EventKind::Control { channel: 3, cc: 11, value: (round % 128) as u8 }));
    evs.push(Event::new(f(47), EventKind::Control { channel: 4, cc: 123, value: 0 }));
    evs.push(Event::new(f(48), EventKind::Control { channel: 4, cc: 120, value: 0 }));
    evs.push(Event::new(f(49), EventKind::PitchBend { channel: 0, value: (round as i16 * 97) % 8000 }));
    evs.push(Event::new(f(50), EventKind::Program { channel: 1, program: 5 }));
    evs.push(Event::new(f(51), EventKind::Pressure { channel: 1, value: 50 }));
    // Knobs from the control port.
    let lowpass = jamrig::params::Param::Lowpass as u8;
    evs.push(Event::new(f(51), EventKind::Param { channel: 0, param: lowpass, value: 300.0 + round as f32 }));
    evs.push(Event::new(f(51), EventKind::Param { channel: 5, param: 0, value: 0.5 }));
    match round % 50 {
        10 => evs.push(Event::new(f(52), EventKind::Stop)),
        11 => evs.push(Event::new(f(52), EventKind::Continue)),
        20 => evs.push(Event::new(f(52), EventKind::Start)),
        30 => evs.push(Event::new(f(52), EventKind::Tempo(90.0 + round as f32 % 60.0))),
        40 => evs.push(Event::new(f(52), EventKind::Panic)),
        _ => evs.push(Event::new(f(52), EventKind::Clock)),
    }
    evs
}

#[test]
fn the_detector_sees_allocations() {
    reset_violation_count();
    assert_no_alloc(|| {
        let v: Vec<u64> = Vec::with_capacity(64);
        std::hint::black_box(v);
    });
    assert!(
        violation_count() > 0,
        "assert_no_alloc is not active in this build: the realtime test would prove nothing"
    );
    reset_violation_count();
}

#[test]
fn process_never_allocates_across_1000_snapshot_swaps_and_event_bursts() {
    let (a, b) = sets();
    let Renderer { mut engine, mut controller, .. } = Renderer::with_tables(&a, common::tables(48000)).expect("rig");
    // A recording of everything played (pattern notes too) and a session capture
    // run all along.
    let record = Arc::new(RecordTap::default());
    record.set_patterns(true);
    engine.record_into(record.clone());
    let capture = Arc::new(CaptureTap::default());
    engine.capture_into(capture.clone());
    let mut recorder = Recorder::new(48000.0);
    recorder.start(&record, 0, controller.stats().transport());
    let mut captured = 0usize;
    let sizes = [16usize, 64, 100, 128, 512, 4096];
    let mut out = vec![0.0f32; 4096 * 2];
    for round in 0..1000 {
        // Control side (allocation allowed): publish the other set, send a burst.
        controller.publish_set(if round % 2 == 0 { &b } else { &a }).expect("publish");
        for ev in burst(engine.frames_out(), round) {
            controller.send(ev);
        }
        let frames = sizes[round % sizes.len()];
        let buf = &mut out[..frames * 2];
        reset_violation_count();
        assert_no_alloc(|| engine.process(buf, 2));
        assert_eq!(violation_count(), 0, "the process path allocated or freed in round {round} ({frames} frames)");
        assert!(buf.iter().all(|x| x.is_finite() && x.abs() <= 1.0));
        controller.collect();
        recorder.drain(&record, controller.stats().transport());
        while capture.pop().is_some() {
            captured += 1;
        }
    }
    assert!(recorder.take().events.len() > 10_000, "the recording kept what was played");
    assert!(captured > 10_000, "the capture was told what was played");
    assert_eq!(capture.lost.load(Relaxed), 0);
    let stats = controller.stats();
    assert_eq!(stats.snapshots_adopted.load(Relaxed), 1000, "every published snapshot was adopted");
    assert_eq!(stats.trash_overflow.load(Relaxed), 0);
    assert!(stats.voices_stolen.load(Relaxed) > 0, "the bursts exercised voice stealing");
}

#[test]
fn retired_snapshots_are_freed_on_the_control_side() {
    let (a, b) = sets();
    let Renderer { mut engine, mut controller, .. } = Renderer::with_tables(&a, common::tables(48000)).expect("rig");
    let mut out = vec![0.0f32; 256];
    // Publish several times without collecting: retired snapshots wait in the queue
    // for the control side; the engine neither frees nor loses them.
    for i in 0..3 {
        controller.publish_set(if i % 2 == 0 { &b } else { &a }).expect("publish");
        reset_violation_count();
        assert_no_alloc(|| engine.process(&mut out, 2));
        assert_eq!(violation_count(), 0);
    }
    assert_eq!(controller.stats().trash_overflow.load(Relaxed), 0);
    controller.collect();
    assert!(!controller.has_pending());
}

/// Every synth of the library, with the voice filter, glide, legato, analog and
/// spread in play: note-on (the synth's `start`), rendering and release all run
/// without allocating.
#[test]
fn every_synth_plays_without_allocating() {
    let synths: Vec<&str> = jamrig::engine::synth::SYNTHS.iter().map(|s| s.name).collect();
    for group in synths.chunks(15) {
        let mut text = String::new();
        for (i, name) in group.iter().enumerate() {
            let ch = if i >= 9 { i + 2 } else { i + 1 };
            text.push_str(&format!(
                "channel({ch}, #{{ synth: \"{name}\", envelope: \"pluck\", filter_amount: 3000.0, vel_to_filter: 2000.0, \
                 glide: 0.05, legato: {}, analog: 0.5, spread: 0.5 }});\n",
                i % 2 == 0
            ));
        }
        let set = common::set(&text);
        let Renderer { mut engine, mut controller, .. } =
            Renderer::with_tables(&set, common::tables(48000)).expect("rig");
        let mut out = vec![0.0f32; 256 * 2];
        for round in 0..200u64 {
            for i in 0..group.len() {
                let channel = if i >= 9 { i as u8 + 1 } else { i as u8 };
                let note = 36 + ((round * 7 + i as u64 * 5) % 60) as u8;
                let frame = engine.frames_out();
                controller.send(Event::new(frame, EventKind::NoteOn { channel, note, velocity: 100 }));
                if round % 3 == 2 {
                    controller.send(Event::new(frame + 100, EventKind::NoteOff { channel, note }));
                }
            }
            reset_violation_count();
            assert_no_alloc(|| engine.process(&mut out, 2));
            assert_eq!(violation_count(), 0, "playing {group:?} allocated in round {round}");
            assert!(out.iter().all(|x| x.is_finite()));
            controller.collect();
        }
    }
}

/// The sync path: the sync mode switching between internal, MIDI clock and Link
/// with every reload, MIDI clock ticks (steady and with tempo jumps, ticks lost or
/// doubled, a silence), Start, Stop, Continue and Song Position, and a Link
/// timeline handed in before every call.
#[test]
fn sync_sources_never_allocate() {
    let (a, b) = sets();
    let modes = [
        jamrig::rig::set::SyncMode::Internal,
        jamrig::rig::set::SyncMode::Midi,
        jamrig::rig::set::SyncMode::Link { quantum: 4.0 },
    ];
    let with = |s: &Set, m| {
        let mut s = s.clone();
        s.sync = m;
        s
    };
    let Renderer { mut engine, mut controller, .. } =
        Renderer::following_clock(&with(&a, modes[1]), common::tables(48000)).expect("rig");
    let mut out = vec![0.0f32; 4096 * 2];
    let sizes = [64usize, 128, 256, 512];
    let mut tick_at = 0.0f64;
    let mut beat = 0.0f64;
    for round in 0..600 {
        if round % 20 == 0 {
            let m = modes[(round / 20) % 3];
            controller.publish_set(&with(if round % 40 == 0 { &b } else { &a }, m)).expect("publish");
        }
        let frames = sizes[round % sizes.len()];
        let base = engine.frames_out();
        let period = if (round / 50) % 2 == 0 { 1000.0 } else { 700.0 };
        let mut n = 0u64;
        while tick_at < (base + frames as u64) as f64 {
            // Now and then a tick lost or sent twice; a silence (the clock comes
            // back without Start) from round 300 to 330.
            n += 1;
            let at = tick_at.max(base as f64) as u64;
            if !(300..330).contains(&round) && !(round * 7 + n as usize).is_multiple_of(37) {
                controller.send(Event::new(at, EventKind::Clock));
                if (round + n as usize).is_multiple_of(53) {
                    controller.send(Event::new(at + 20, EventKind::Clock));
                }
            }
            tick_at += period;
        }
        let kind = match round % 60 {
            1 => Some(EventKind::ClockStart),
            25 => Some(EventKind::ClockStop),
            27 => Some(EventKind::SongPosition(32)),
            30 => Some(EventKind::ClockContinue),
            _ => None,
        };
        if let Some(k) = kind {
            controller.send(Event::new(base + 3, k));
        }
        let timeline =
            jamrig::engine::sync::ExternalTimeline { frame: base, beat, bpm: 125.0, playing: (round / 30) % 2 == 0 };
        beat += frames as f64 * 125.0 / (60.0 * 48000.0);
        let buf = &mut out[..frames * 2];
        reset_violation_count();
        assert_no_alloc(|| {
            engine.follow_timeline(timeline);
            engine.process(buf, 2)
        });
        assert_eq!(violation_count(), 0, "the sync path allocated or freed in round {round}");
        assert!(buf.iter().all(|x| x.is_finite() && x.abs() <= 1.0));
        controller.collect();
    }
    assert!(controller.stats().clock_ticks.load(Relaxed) > 100, "the clock was read");
}

/// The sound paths: dampers and string mutes (presets with the instrument's own
/// release, notes released while they ring), the synths' DC blockers (sitar,
/// electric piano, mellotron, saxophone, didgeridoo), the bus's oversampled
/// distortion and saturation and its DC blocker (switched on and off by controllers,
/// so the crossfades run both ways), `spread` switched on and off, and the reverb in
/// each of its types, its decay gliding: note-on, rendering and release run without
/// allocating, at several block sizes.
#[test]
fn sound_paths_never_allocate() {
    let types = jamrig::params::REVERB_TYPES;
    let mut text = String::from(
        r#"
        channel(1, "piano", #{ reverb: 0.4, reverb_type: "hall" });
        channel(2, "electric_piano", #{ reverb: 0.3, reverb_type: "plate", spread: 0.5 });
        channel(3, "bass_guitar", #{ distortion: 0.0, saturation: 0.0 });
        channel(4, "sitar");
        channel(5, "mellotron");
        channel(6, "tenor_sax");
        channel(7, "didgeridoo");
        channel(8, "acid_bass");
        cc(20, "distortion", 0.0, 1.0, 3);
        cc(21, "saturation", 0.0, 1.0, 3);
        cc(22, "spread", 0.0, 1.0, 2);
        cc(23, "reverb_decay", 0.2, 4.0, 1);
        "#,
    );
    // Hall and plate are on channels 1 and 2; the others take 9 and 11 to 16.
    let others: Vec<&&str> = types.iter().filter(|t| !matches!(**t, "hall" | "plate")).collect();
    assert_eq!(others.len(), 7);
    for (ch, t) in [9, 11, 12, 13, 14, 15, 16].into_iter().zip(others) {
        text.push_str(&format!("channel({ch}, #{{ synth: \"saw\", reverb: 0.5, reverb_type: \"{t}\" }});\n"));
    }
    let set = common::set(&text);
    let Renderer { mut engine, mut controller, .. } = Renderer::with_tables(&set, common::tables(48000)).expect("rig");
    let channels: Vec<u8> = set.channels.keys().map(|c| c - 1).collect();
    let sizes = [64usize, 128, 256, 500];
    let mut out = vec![0.0f32; 500 * 2];
    for round in 0..300u64 {
        let frame = engine.frames_out();
        for (i, &channel) in channels.iter().enumerate() {
            let note = 40 + ((round * 5 + i as u64 * 7) % 36) as u8;
            controller.send(Event::new(frame, EventKind::NoteOn { channel, note, velocity: 100 }));
            if round % 2 == 1 {
                controller.send(Event::new(frame + 10, EventKind::NoteOff { channel, note }));
            }
        }
        // Drive, saturation and spread on for 20 rounds, off for 20; the decay sweeps.
        let on = if (round / 20) % 2 == 0 { 127 } else { 0 };
        for cc in [20u8, 21, 22] {
            controller.send(Event::new(frame, EventKind::Control { channel: 2, cc, value: on }));
        }
        controller.send(Event::new(frame, EventKind::Control { channel: 0, cc: 23, value: (round % 128) as u8 }));
        let frames = sizes[round as usize % sizes.len()];
        let buf = &mut out[..frames * 2];
        reset_violation_count();
        assert_no_alloc(|| engine.process(buf, 2));
        assert_eq!(violation_count(), 0, "the sound paths allocated in round {round} ({frames} frames)");
        assert!(buf.iter().all(|x| x.is_finite()));
        controller.collect();
    }
}

/// Overload: more events than the engine holds (the overflow policy makes room by
/// rank), thousands due in one tick (the rest wait for later ticks), and a pattern
/// with more hits on one beat than a tick plays (the hit budget), all under
/// `assert_no_alloc`, with flush-to-zero set and restored around each call.
#[test]
fn overload_and_overflow_never_allocate() {
    let set = common::set(
        r#"
        channel(1, "saw");
        drums(10);
        let hits = [];
        for i in 0..600 { hits.push([0.0, "kick", 100]); }
        pattern("dense", 10, 1.0, hits);
        pattern("long", 1, 1.0, [[0.0, "C4", 100, 900.0], [0.5, "E4", 100, 900.0]]);
        "#,
    );
    let Renderer { mut engine, mut controller, .. } = Renderer::new(&set, 48000).expect("rig");
    let mut out = vec![0.0f32; 512 * 2];
    for round in 0..40u64 {
        let base = engine.frames_out();
        reset_violation_count();
        assert_no_alloc(|| {
            // 6000 events: note-ons, controllers and note-offs, most at one frame.
            for i in 0..6000u64 {
                let kind = match i % 3 {
                    0 => EventKind::NoteOn { channel: 0, note: (i % 128) as u8, velocity: 90 },
                    1 => EventKind::Control { channel: 0, cc: 20 + (i % 30) as u8, value: (i % 128) as u8 },
                    _ => EventKind::NoteOff { channel: 0, note: (i % 128) as u8 },
                };
                let at = if i % 5 == 0 { base + 100_000 } else { base + 10 };
                engine.schedule(Event::new(at + round, kind));
            }
            engine.process(&mut out, 2);
        });
        assert_eq!(violation_count(), 0, "overload allocated or freed in round {round}");
        assert!(out.iter().all(|x| x.is_finite() && x.abs() <= 1.0));
        assert!(!jamrig::engine::denormal::FlushDenormals::active(), "the caller's float mode is restored");
        controller.collect();
    }
    let stats = controller.stats();
    assert!(stats.events_overflow.load(Relaxed) > 0, "the queue overflowed");
    assert!(stats.hits_overflow.load(Relaxed) > 0, "the hit budget was reached");
    assert!(stats.events_late.load(Relaxed) > 0, "a burst waited for later ticks");
}
