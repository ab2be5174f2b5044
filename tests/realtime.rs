//! The realtime contract: the engine's process path (snapshot adoption and reload
//! included, with bursts of every kind of event) never allocates or frees. Every
//! call runs under `assert_no_alloc`, which counts violations in this build.

use assert_no_alloc::{AllocDisabler, assert_no_alloc, reset_violation_count, violation_count};
use jamrig::capture::recorder::{RecordTap, Recorder};
use jamrig::engine::Engine;
use jamrig::engine::event::{Event, EventKind};
use jamrig::engine::tap::CaptureTap;
use jamrig::offline::Renderer;
use jamrig::rig::Set;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

mod common;

#[global_allocator]
static ALLOCATOR: AllocDisabler = AllocDisabler;

/// One call of the audio thread's path, `engine.process`, under `assert_no_alloc`:
/// it neither allocates nor frees (`what` says what failed if it does).
fn process_unallocating(engine: &mut Engine, buf: &mut [f32], what: std::fmt::Arguments) {
    reset_violation_count();
    assert_no_alloc(|| engine.process(buf, 2));
    assert_eq!(violation_count(), 0, "{what}");
}

/// Two sets that differ in every way a reload can: parameters, an instrument, a
/// channel removed and one added, patterns, CC map, tempo.
fn sets() -> (Set, Set) {
    let a = common::set(
        r#"
        tempo(120);
        channel(1, "synth_bass", #{ reverb: 0.3, delay: 0.3, chorus: 0.4, phaser: 0.3, tremolo_depth: 0.3 });
        channel(2, #{ synth: "fm", envelope: "pad", lowpass: 900.0, distortion: 0.5, saturation: 0.4 });
        channel(3, "pluck_synth", #{ highpass: 200.0, voices: 4 });
        channel(4, "synth_pad", #{ lowpass: 4000.0 });
        channel(6, "saw", #{ reverb: 0.3, lowpass: 4000.0, chorus: 0.2 });
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
        channel(6, "saw", #{ reverb: 0.2, reverb_decay: 2.0 });
        channel(7, "saw", #{ reverb: 0.4, reverb_decay: 2.0 });
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
        process_unallocating(
            &mut engine,
            buf,
            format_args!("the process path allocated or freed in round {round} ({frames} frames)"),
        );
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
        process_unallocating(&mut engine, &mut out, format_args!("the audio thread allocated or freed"));
    }
    assert_eq!(controller.stats().trash_overflow.load(Relaxed), 0);
    controller.collect();
    assert!(!controller.has_pending());
}

/// A channel the engine did not start with: its voice slots and bus are built on
/// the control side when the first snapshot that configures it is published, and
/// the engine swaps them for the placeholder at adoption and sends the placeholder
/// back, without allocating or freeing; the channel then plays. Removed and named
/// again, it keeps what it has (nothing is built twice).
#[test]
fn a_channel_first_configured_by_a_reload_arrives_built_without_allocating() {
    let a = common::set(r#"channel(1, "saw");"#);
    let b = common::set(
        r#"channel(1, "saw");
        channel(12, "pluck_synth", #{ reverb: 0.3, delay: 0.3, chorus: 0.3 });
        drums(14);"#,
    );
    let Renderer { mut engine, mut controller, .. } = Renderer::with_tables(&a, common::tables(48000)).expect("rig");
    controller.collect();
    assert_eq!(controller.channels_built(), (1, 0), "only the set's channel is built at the start");
    let (pluck, drums) = (11u8, 13u8);
    let mut out = vec![0.0f32; 256 * 2];
    let mut sounded = [0usize; 3];
    let mut last = [0u32; 2];
    for round in 0..90 {
        let phase = round / 30;
        if round % 30 == 0 {
            // Control side: b, then a (the two channels removed), then b again.
            controller.publish_set(if phase == 1 { &a } else { &b }).expect("publish");
            let built = 1 | 1 << pluck | 1 << drums;
            let waiting = if phase == 0 { 1 << pluck | 1 << drums } else { 0 };
            assert_eq!(controller.channels_built(), (built, waiting));
        }
        let frame = engine.frames_out();
        for ch in [pluck, drums] {
            let note = if ch == drums { 38 } else { 48 + (round % 24) as u8 };
            controller.send(Event::new(frame + 10, EventKind::NoteOn { channel: ch, note, velocity: 100 }));
            controller.send(Event::new(frame + 200, EventKind::NoteOff { channel: ch, note }));
        }
        process_unallocating(&mut engine, &mut out, format_args!("round {round} allocated or freed"));
        assert!(out.iter().all(|x| x.is_finite() && x.abs() <= 1.0));
        let stats = controller.stats();
        let voices = [pluck, drums].map(|ch| stats.voices[ch as usize].load(Relaxed));
        if voices.iter().all(|&v| v > 0) {
            sounded[phase] += 1;
        }
        if phase == 1 {
            // Removed: the notes sent start nothing (the old ones fade).
            assert!(voices[0] <= last[0] && voices[1] <= last[1], "round {round}: {voices:?} after {last:?}");
        }
        last = voices;
        controller.collect();
        assert_eq!(controller.channels_built().1, 0, "the engine took the parts at its first tick after");
    }
    assert!(sounded[0] >= 25 && sounded[2] >= 25, "the new channels played: {sounded:?}");
    assert_eq!(controller.stats().trash_overflow.load(Relaxed), 0);
}

/// The live host's drum kit in two parts: the sounds the set's patterns play before
/// the engine starts, the rest rendered into the same tables (on the control side)
/// while the engine plays. A drum note whose sound is not there yet starts no voice
/// and stays silent; once its sound is published the same note plays. Neither the
/// silent note, the published sound's first read nor its playing allocates or frees.
#[test]
fn drum_sounds_published_while_the_engine_plays_never_allocate() {
    let set = common::set("drums(10);");
    let mut notes = [false; 128];
    notes[36] = true;
    let tables = Arc::new(jamrig::tables::Tables::with_drum_notes_first(48_000.0, &notes));
    let crash = tables.drums.notes[49].expect("the crash") as usize;
    assert!(!tables.drums.sounds.ready(crash), "only the kick is rendered at the start");
    let Renderer { mut engine, mut controller, .. } = Renderer::with_tables(&set, tables.clone()).expect("rig");
    let drums = 9u8;
    let mut out = vec![0.0f32; 256 * 2];
    // One block with `note` struck in it (none if 0): the drum channel's voices after it,
    // and whether it made a sound.
    let mut block = |note: u8, what: &str| {
        if note > 0 {
            let frame = engine.frames_out();
            controller.send(Event::new(frame + 10, EventKind::NoteOn { channel: drums, note, velocity: 100 }));
        }
        process_unallocating(&mut engine, &mut out, format_args!("{what}: allocated or freed"));
        assert!(out.iter().all(|x| x.is_finite() && x.abs() <= 1.0), "{what}");
        let voices = controller.stats().voices[drums as usize].load(Relaxed);
        controller.collect();
        (voices, out.iter().any(|x| *x != 0.0))
    };
    assert_eq!(block(49, "the crash before it is rendered"), (0, false), "silent: no voice");
    assert_eq!(block(36, "the kick").0, 1, "the kick plays from the start");
    let mut blocks = 0;
    while block(0, "the kick ringing").0 > 0 {
        blocks += 1;
        assert!(blocks < 2000, "the kick ends");
    }
    assert_eq!(block(49, "the crash, still not rendered"), (0, false));
    // Control side: the rest of the kit, while the engine plays.
    assert!(tables.drums.render_rest(|| true));
    assert!(tables.drums.complete());
    assert_eq!(block(49, "the crash once published"), (1, true), "the crash plays");
    for i in 0..10 {
        block(0, &format!("the crash ringing, block {i}"));
    }
    assert_eq!(controller.stats().trash_overflow.load(Relaxed), 0);
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
            process_unallocating(&mut engine, &mut out, format_args!("playing {group:?} allocated in round {round}"));
            assert!(out.iter().all(|x| x.is_finite()));
            controller.collect();
        }
    }
}

/// An offline render makes a channel's voice slots as it first needs them (buffers
/// not pre-faulted): 200 notes struck over a second make their slots without
/// allocating, and the render is the same bit for bit as with every slot made up
/// front (the live host's pool).
#[test]
fn voice_slots_made_on_first_use_never_allocate() {
    let set = common::set(r#"channel(1, "saw", #{ voices: 256, release: 0.5 });"#);
    let render = |made_up_front: bool| {
        jamrig::dsp::set_prefault(made_up_front);
        let built = Renderer::new(&set, 48000);
        jamrig::dsp::set_prefault(true);
        let Renderer { mut engine, mut controller, .. } = built.expect("rig");
        let mut out = vec![0.0f32; 256 * 2];
        let mut all = Vec::new();
        for round in 0..200u64 {
            let frame = engine.frames_out();
            let note = 30 + (round % 90) as u8;
            controller.send(Event::new(frame, EventKind::NoteOn { channel: 0, note, velocity: 100 }));
            process_unallocating(&mut engine, &mut out, format_args!("round {round} allocated"));
            controller.collect();
            all.extend_from_slice(&out);
        }
        let sounding = controller.stats().voices[0].load(Relaxed);
        (all, sounding)
    };
    let (lazy, sounding) = render(false);
    assert!(sounding > 100, "only {sounding} voices sound");
    let (eager, _) = render(true);
    assert!(lazy.iter().zip(&eager).all(|(a, b)| a.to_bits() == b.to_bits()), "the pools play differently");
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

/// Sample voices (SoundFont presets with layers, loops and exclusive classes, a
/// font kit, user drum samples and a sample instrument) under every controller a
/// General MIDI file uses, while the control side loads fonts and swaps them:
/// the process path allocates and frees nothing, and a bank no snapshot names is
/// freed on the control side once its last voice ends.
#[test]
fn sample_voices_and_font_swaps_never_allocate() {
    use common::sf2::{self, Preset, Sample, Zone};
    let dir = tempfile::tempdir().unwrap();
    let sine = |hz: f64, root: u8| {
        let data = sf2::sine(hz, 44_100, 100, 0.4);
        let len = data.len() as u32;
        Sample { data, rate: 44_100, root, correction: 0, loop_points: (len / 4, len) }
    };
    let zone = |keys: (u8, u8), vels: (u8, u8), sample: u16, gens: Vec<(u16, i16)>| Zone { keys, vels, sample, gens };
    let font = |hz: f64| {
        let looped = vec![(54, 1), (8, 8000), (34, -3000), (38, -2000), (5, 50), (22, 100)];
        let presets = vec![
            Preset {
                name: "Lead".into(),
                bank: 0,
                program: 0,
                zones: vec![zone((0, 127), (0, 80), 0, looped.clone()), zone((0, 127), (81, 127), 1, looped.clone())],
            },
            Preset {
                name: "Other".into(),
                bank: 8,
                program: 5,
                zones: vec![zone((0, 127), (0, 127), 1, looped.clone())],
            },
            Preset {
                name: "Kit".into(),
                bank: 128,
                program: 0,
                zones: vec![
                    zone((42, 42), (0, 127), 0, vec![(57, 1)]),
                    zone((46, 46), (0, 127), 1, vec![(57, 1), (54, 1)]),
                ],
            },
        ];
        sf2::write(&presets, &[sine(hz, 60), sine(hz * 1.5, 60)])
    };
    std::fs::write(dir.path().join("a.sf2"), font(220.0)).unwrap();
    std::fs::write(dir.path().join("b.sf2"), font(330.0)).unwrap();
    sf2::wav(&dir.path().join("hit.wav"), &sf2::sine(200.0, 22_050, 20, 0.5), 22_050);
    let text = |f: &str| {
        format!(
            r#"soundfont("f", "{f}");
            sample("hit", "hit.wav", #{{ note: 60 }});
            sample_instrument("tone", "hit.wav", #{{ root: "C4", loop_start: 100, loop_end: 2000 }});
            channel(1, sf("f", "Lead"));
            channel(2, #{{ soundfont: "f", bank: 8, program: 5, reverb: 0.2, distortion: 0.5, saturation: 0.3 }});
            channel(3, "tone", #{{ chorus: 0.3 }});
            drums(10, #{{ soundfont: "f" }});
            drums(11);"#
        )
    };
    let eval = |t: &str| {
        common::host().eval_source("set.rhai", t, Some(dir.path().to_path_buf()), Set::default(), false).unwrap().set
    };
    let a = eval(&text("a.sf2"));
    let b = eval(&text("b.sf2"));
    let none = common::set("channel(1, \"organ\");");
    let font_a = a.fonts["f"].bank.0.clone();
    let Renderer { mut engine, mut controller, .. } = Renderer::with_tables(&a, common::tables(48000)).expect("rig");
    let mut out = vec![0.0f32; 512 * 2];
    let mut sets = [a, b];
    for round in 0..600usize {
        if round % 50 == 25 {
            // Load a changed font on the control side while voices of the old one sound.
            std::fs::write(dir.path().join("b.sf2"), font(300.0 + round as f64)).unwrap();
            sets[1] = eval(&text("b.sf2"));
        }
        if round % 7 == 0 {
            controller.publish_set(&sets[(round / 7) % 2]).expect("publish");
        }
        let f = engine.frames_out();
        let mut evs = Vec::new();
        for k in 0..6u8 {
            let ch = [0u8, 1, 2, 9, 10, 9][k as usize];
            let note = [40 + (round % 40) as u8, 60, 64, 42 + 4 * (round % 2) as u8, 36, 60][k as usize];
            evs.push(Event::new(f + k as u64 * 11, EventKind::NoteOn { channel: ch, note, velocity: 40 + k * 15 }));
            evs.push(Event::new(f + 300 + k as u64, EventKind::NoteOff { channel: ch, note }));
        }
        for (cc, value) in [
            (0u8, 8u8),
            (1, 64),
            (11, 100),
            (91, 70),
            (93, 40),
            (101, 0),
            (100, 0),
            (6, 12),
            (38, 50),
            (64, 127),
            (64, 0),
            (7, 100),
            (10, 30),
        ] {
            evs.push(Event::new(f + 5, EventKind::Control { channel: (round % 3) as u8, cc, value }));
        }
        evs.push(Event::new(f + 6, EventKind::Program { channel: 1, program: (round % 7) as u8 }));
        evs.push(Event::new(f + 7, EventKind::PitchBend { channel: 0, value: (round as i16 * 131) % 8000 }));
        evs.push(Event::new(f + 8, EventKind::Pressure { channel: 0, value: 90 }));
        for ev in evs {
            controller.send(ev);
        }
        process_unallocating(&mut engine, &mut out, format_args!("sample voices allocated or freed in round {round}"));
        assert!(out.iter().all(|x| x.is_finite() && x.abs() <= 1.0));
        controller.collect();
    }
    let stats = controller.stats().clone();
    assert_eq!(stats.trash_overflow.load(Relaxed), 0);
    assert_eq!(stats.banks_overflow.load(Relaxed), 0);
    // A set without banks: once the voices end, the engine holds no bank and the old
    // ones come back to be freed here.
    drop(sets);
    controller.publish_set(&none).expect("publish");
    for _ in 0..400 {
        process_unallocating(&mut engine, &mut out, format_args!("the audio thread allocated or freed"));
        controller.collect();
    }
    assert_eq!(stats.banks_held.load(Relaxed), 0, "the engine still holds banks");
    assert_eq!(std::sync::Arc::strong_count(&font_a), 2, "font a is held beyond this test and the host's cache");
}

/// The sound paths: dampers and string mutes (presets with the instrument's own
/// release, notes released while they ring), the synths' DC blockers (sitar,
/// electric piano, mellotron, saxophone, didgeridoo), the bus's oversampled
/// distortion and saturation and its DC blocker (switched on and off by controllers,
/// so the crossfades run both ways), `spread` switched on and off, and the reverb in
/// each of its types, its decay gliding, shared between channels and not: note-on, rendering and release run without
/// allocating, at several block sizes.
#[test]
fn sound_paths_never_allocate() {
    let types = jamrig::params::REVERB_TYPES;
    let mut text = String::from(
        r#"
        channel(1, "piano", #{ reverb: 0.4, reverb_type: "hall" });
        channel(2, "electric_piano", #{ reverb: 0.3, reverb_type: "plate", spread: 0.5 });
        channel(3, "bass_guitar", #{ distortion: 0.0, saturation: 0.0, reverb: 0.3, reverb_type: "cathedral" });
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
        // Channel 3 shares the cathedral reverb of a saw channel while centred, and
        // runs its own while panned (the other rings out meanwhile).
        let pan = if (round / 10) % 2 == 0 { 64 } else { 100 };
        controller.send(Event::new(frame, EventKind::Control { channel: 2, cc: 10, value: pan }));
        let frames = sizes[round as usize % sizes.len()];
        let buf = &mut out[..frames * 2];
        process_unallocating(
            &mut engine,
            buf,
            format_args!("the sound paths allocated in round {round} ({frames} frames)"),
        );
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
    let sender = controller.event_sender();
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
                // Half the rounds through the live event queue (which keeps
                // releases and controller values when full), half straight in.
                if round % 2 == 0 {
                    engine.schedule(Event::new(at + round, kind));
                } else {
                    sender.send(Event::new(at + round, kind));
                }
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
    assert!(stats.events_dropped.load(Relaxed) > 0, "the live event queue overflowed");
    assert!(stats.hits_overflow.load(Relaxed) > 0, "the hit budget was reached");
    assert!(stats.events_late.load(Relaxed) > 0, "a burst waited for later ticks");
}

/// MIDI out and clock out: external channels (patterns, input notes, controllers,
/// bend, programs, knobs turned from the control port and by reloads), each
/// device on its own port, the clock through Start, Stop, Continue, Song Position
/// and relocations in every sync mode, note-offs on stop, panic and reloads that
/// remove an external channel or move it to another device's port, a full queue;
/// and the writer that drains the queue and routes each message to its port. None
/// of it allocates or frees.
#[test]
fn midi_out_and_clock_out_never_allocate() {
    let a = common::set(
        r#"
        tempo(120);
        clock_out(true);
        midi_out("op-xy", #{ latency_ms: 5 });
        channel(1, "synth_bass");
        channel(3, #{ midi_out: "op-xy", out_channel: 1 });
        channel(4, #{ midi_out: "digitakt", out_channel: 9 });
        drums(10);
        pattern("ext", 3, 1.0, [[0.0, "C3", 100, 0.75], [0.5, "G3", 100, 0.1]]);
        pattern("beat", 10, "rock");
        "#,
    );
    let b = common::set(
        r#"
        tempo(97);
        channel(1, "synth_bass");
        channel(4, #{ midi_out: "digitakt", out_channel: 2 });
        drums(10);
        pattern("ext", 4, 2.0, [[0.0, "C2", 100, 1.5]]);
        cc(74, "lowpass", 200.0, 8000.0, 4);
        "#,
    );
    // The devices' ports: set `b` moves the digitakt to another port.
    let ports_a: jamrig::rig::build::OutPorts = [("op-xy".to_string(), 1), ("digitakt".to_string(), 2)].into();
    let ports_b: jamrig::rig::build::OutPorts = [("digitakt".to_string(), 3)].into();
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
    let Renderer { mut engine, mut controller, .. } = Renderer::with_tables(&a, common::tables(48000)).expect("rig");
    let queue = jamrig::engine::midi_out::queue();
    engine.midi_out_into(queue.clone());
    let mut writer = jamrig::live::midi_out::OutWriter::default();
    let mut written = 0usize;
    let mut per_port = [0usize; jamrig::engine::midi_out::OUT_PORTS];
    let mut out = vec![0.0f32; 1024 * 2];
    let mut tick_at = 0.0f64;
    for round in 0..600usize {
        if round % 25 == 0 {
            let m = modes[(round / 25) % 3];
            let (set, ports) = if round % 50 == 0 { (&a, &ports_a) } else { (&b, &ports_b) };
            controller.set_out_ports(ports.clone());
            controller.publish_set(&with(set, m)).expect("publish");
        }
        let base = engine.frames_out();
        let frames = [64usize, 256, 1000, 1024][round % 4];
        while tick_at < (base + frames as u64) as f64 {
            controller.send(Event::new(tick_at as u64, EventKind::Clock));
            tick_at += 1000.0;
        }
        let kind = match round % 40 {
            1 => Some(EventKind::ClockStart),
            5 => Some(EventKind::NoteOn { channel: 2, note: 64, velocity: 90 }),
            6 => Some(EventKind::Control { channel: 2, cc: 74, value: 64 }),
            7 => Some(EventKind::PitchBend { channel: 3, value: -300 }),
            8 => Some(EventKind::Program { channel: 3, program: 12 }),
            9 => Some(EventKind::Pressure { channel: 2, value: 30 }),
            12 => Some(EventKind::Stop),
            13 => Some(EventKind::ClockStop),
            14 => Some(EventKind::SongPosition(48)),
            16 => Some(EventKind::ClockContinue),
            18 => Some(EventKind::Continue),
            22 => Some(EventKind::Start),
            30 => Some(EventKind::Panic),
            33 => Some(EventKind::Control { channel: 3, cc: 123, value: 0 }),
            35 => Some(EventKind::Param { channel: 3, param: jamrig::params::Param::Lowpass as u8, value: 900.0 }),
            36 => Some(EventKind::Param { channel: 2, param: jamrig::params::Param::Volume as u8, value: 0.5 }),
            _ => None,
        };
        if let Some(k) = kind {
            controller.send(Event::new(base + 5, k));
        }
        let timeline = jamrig::engine::sync::ExternalTimeline {
            frame: base,
            beat: base as f64 / 24000.0 + if round % 90 == 45 { 3.0 } else { 0.0 },
            bpm: 120.0,
            playing: (round / 30) % 2 == 0,
        };
        let buf = &mut out[..frames * 2];
        // Now and then the writer falls behind and the queue fills up.
        let drain = round % 100 < 90;
        reset_violation_count();
        assert_no_alloc(|| {
            engine.follow_timeline(timeline);
            engine.process(buf, 2);
            if drain {
                writer.write_due(
                    &queue,
                    (base + frames as u64) as i64,
                    |m| Some(m.frame as i64),
                    |_, m| {
                        written += 1;
                        per_port[m.port as usize] += 1;
                    },
                );
            }
        });
        assert_eq!(violation_count(), 0, "the MIDI out path allocated or freed in round {round}");
        controller.collect();
    }
    assert!(written > 100, "the writer wrote what the engine sent ({written})");
    assert!(per_port[..4].iter().all(|n| *n > 0), "the clock's port and each device's got messages: {per_port:?}");
}

/// What a guard saw: the allocations made inside it and how often it ran (every
/// thread, every run). Each test has its own, as the tests run side by side.
struct Guarded {
    violations: std::sync::atomic::AtomicU32,
    runs: std::sync::atomic::AtomicU64,
}

impl Guarded {
    const fn new() -> Self {
        Guarded { violations: std::sync::atomic::AtomicU32::new(0), runs: std::sync::atomic::AtomicU64::new(0) }
    }

    /// Runs `f` under `assert_no_alloc` and counts what it finds.
    fn run(&self, f: &mut dyn FnMut()) {
        reset_violation_count();
        assert_no_alloc(f);
        self.violations.fetch_add(violation_count(), Relaxed);
        self.runs.fetch_add(1, Relaxed);
    }

    fn violations(&self) -> u32 {
        self.violations.load(Relaxed)
    }

    fn runs(&self) -> u64 {
        self.runs.load(Relaxed)
    }
}

/// What the render workers' guard saw.
static WORKERS: Guarded = Guarded::new();

/// Runs what a render worker does between two sleeps (waiting, spinning, parking,
/// rendering channels) under `assert_no_alloc`, and counts what it finds.
fn worker_guard(f: &mut dyn FnMut()) {
    WORKERS.run(f);
}

#[test]
fn render_workers_never_allocate_across_snapshot_swaps_and_event_bursts() {
    let (a, b) = sets();
    let Renderer { mut engine, mut controller, .. } = Renderer::with_tables(&a, common::tables(48000)).expect("rig");
    engine.set_threads_guarded(3, false, Some(worker_guard));
    engine.set_parallel_min_micros(0.0);
    let sizes = [16usize, 64, 100, 128, 512, 4096];
    let mut out = vec![0.0f32; 4096 * 2];
    for round in 0..400 {
        controller.publish_set(if round % 2 == 0 { &b } else { &a }).expect("publish");
        for ev in burst(engine.frames_out(), round) {
            controller.send(ev);
        }
        let frames = sizes[round % sizes.len()];
        let buf = &mut out[..frames * 2];
        process_unallocating(
            &mut engine,
            buf,
            format_args!("the audio thread allocated or freed in round {round} ({frames} frames)"),
        );
        assert!(buf.iter().all(|x| x.is_finite() && x.abs() <= 1.0));
        controller.collect();
    }
    let rendered = engine.worker_items();
    let reverbs = engine.reverbs_handed_out();
    // Stopping the engine wakes and ends the workers: their last wake is counted.
    drop(engine);
    assert!(rendered > 0, "the workers rendered no channel: the test proves nothing about them");
    assert!(reverbs > 0, "no shared reverb was prepared beside the channels: the test proves nothing about them");
    assert!(WORKERS.runs() > 0);
    assert_eq!(WORKERS.violations(), 0, "a render worker allocated or freed");
}

/// What the guard of the batch workers below saw.
static BATCH: Guarded = Guarded::new();

fn batch_guard(f: &mut dyn FnMut()) {
    BATCH.run(f);
}

#[test]
fn ticks_rendered_in_batches_never_allocate() {
    // Several ticks a call (batches handed out to the workers, each batch's sum
    // beside the next batch's channels in calls of several batches), on 2 and 3
    // threads, across snapshot swaps and event bursts (a program change or a panic
    // ends a batch: its tick renders alone).
    let (a, b) = sets();
    for threads in [2, 3] {
        let Renderer { mut engine, mut controller, .. } =
            Renderer::with_tables(&a, common::tables(48000)).expect("rig");
        engine.set_threads_guarded(threads, false, Some(batch_guard));
        engine.set_parallel_min_micros(0.0);
        let sizes = [128usize, 512, 4096, 1000, 256];
        let mut out = vec![0.0f32; 4096 * 2];
        for round in 0..300 {
            if round % 3 == 0 {
                controller.publish_set(if round % 2 == 0 { &b } else { &a }).expect("publish");
            }
            let mut evs = burst(engine.frames_out() + 200, round);
            if round % 4 != 0 {
                evs.retain(|e| !matches!(e.kind, EventKind::Program { .. } | EventKind::Panic));
            }
            for ev in evs {
                controller.send(ev);
            }
            let frames = sizes[round % sizes.len()];
            let buf = &mut out[..frames * 2];
            process_unallocating(
                &mut engine,
                buf,
                format_args!("the audio thread allocated or freed in round {round} ({frames} frames)"),
            );
            assert!(buf.iter().all(|x| x.is_finite() && x.abs() <= 1.0));
            controller.collect();
        }
        let (batched, rendered) = (engine.batched_ticks(), engine.worker_items());
        let overlapped = engine.sums_overlapped();
        drop(engine);
        assert!(batched > 1000, "{threads} threads: few ticks rendered in batches ({batched}): the test proves little");
        assert!(overlapped > 0, "{threads} threads: no batch summed beside the next batch's channels");
        assert!(rendered > 0, "{threads} threads: the workers rendered nothing");
    }
    assert!(BATCH.runs() > 0);
    assert_eq!(BATCH.violations(), 0, "a render worker allocated or freed while rendering batches");
}

/// What the guard of the heavy-channel workers below saw.
static PARTS: Guarded = Guarded::new();

fn part_guard(f: &mut dyn FnMut()) {
    PARTS.run(f);
}

#[test]
fn a_heavy_channel_handed_out_in_parts_never_allocates() {
    // 40 held pad voices (their voices summed in parts, the parts handed out, the
    // last to finish running the bus; in calls of several ticks each part renders
    // its voices over a whole batch), then released so that voices end inside
    // ticks rendered in parts; a light channel beside it; 40 lead voices whose voice
    // filters run side by side, eight at a time, in parts too. On 2 and 3 threads,
    // through a reload of the same set and the adoption of another.
    let text = "channel(1, \"synth_pad\", #{ voices: 64, reverb: 0.3, chorus: 0.2 });\nchannel(2, \"bass_guitar\");\n\
                channel(3, \"synth_lead\", #{ voices: 64, envelope: \"pad\" });\n";
    let set = common::set(text);
    let louder = common::set(&text.replace("chorus: 0.2 }", "chorus: 0.2, volume: 0.9 }"));
    for threads in [2, 3] {
        let Renderer { mut engine, mut controller, .. } =
            Renderer::with_tables(&set, common::tables(48000)).expect("rig");
        engine.set_threads_guarded(threads, false, Some(part_guard));
        engine.set_parallel_min_micros(0.0);
        let mut out = vec![0.0f32; 1024 * 2];
        for round in 0..300usize {
            match round {
                60 => controller.publish_set(&set).expect("publish"),
                100 => controller.publish_set(&louder).expect("publish"),
                _ => {}
            }
            let at = engine.frames_out() + 3;
            let mut evs = Vec::new();
            match round {
                2 => evs.extend(
                    (0..40u8)
                        .flat_map(|k| [0, 2].map(|channel| EventKind::NoteOn { channel, note: 40 + k, velocity: 90 })),
                ),
                150 => evs
                    .extend((0..40u8).flat_map(|k| [0, 2].map(|channel| EventKind::NoteOff { channel, note: 40 + k }))),
                r if r % 20 == 0 => evs.push(EventKind::NoteOn { channel: 1, note: 40, velocity: 90 }),
                _ => {}
            }
            for k in evs {
                assert!(controller.send(Event::new(at, k)), "the event queue has room");
            }
            let frames = [64usize, 256, 1000, 1024][round % 4];
            let buf = &mut out[..frames * 2];
            process_unallocating(
                &mut engine,
                buf,
                format_args!("the audio thread allocated or freed in round {round} ({threads} threads)"),
            );
            assert!(buf.iter().all(|x| x.is_finite()));
            controller.collect();
        }
        let (parts, splits) = (engine.parts_handed_out(), engine.batch_splits());
        drop(engine);
        assert!(parts > 0, "{threads} threads: the heavy channel was never handed out in parts a tick at a time");
        assert!(splits > 0, "{threads} threads: the heavy channel was never handed out in parts over a batch");
    }
    assert!(PARTS.runs() > 0);
    assert_eq!(PARTS.violations(), 0, "a render worker allocated or freed while rendering parts");
}

/// What the guard of the detector check below saw.
static PROBE: Guarded = Guarded::new();

fn probe_guard(f: &mut dyn FnMut()) {
    PROBE.run(f);
}

#[test]
fn the_worker_guard_sees_a_worker_allocate() {
    use jamrig::engine::workers::Pool;
    let pool = Pool::start(2, false, Some(probe_guard));
    let mut items = vec![0u64; 8];
    let order: Vec<u8> = (0..8).collect();
    let allocate = |x: &mut u64| {
        let v: Vec<u64> = Vec::with_capacity(64);
        std::hint::black_box(&v);
        for i in 0..100_000u64 {
            *x = std::hint::black_box(x.wrapping_add(i));
        }
    };
    while pool.worker_items() == 0 {
        pool.run(&mut items, &order, &allocate);
    }
    drop(pool);
    assert!(PROBE.violations() > 0, "the guard did not see the worker's allocations");
}

/// Delay lines running out: three string channels strike 128 notes each, more
/// than their own lines and the shared ones hold (3 x 32 + 240 = 336 of 384). Each
/// note past them takes the line of its channel's oldest string (which fades out)
/// and starts once that line is back: no note is lost (none counted missed), 336
/// strings sound a few milliseconds later, each holding a line, nothing allocates,
/// and once the strings have died away every line is back (the same strike steals
/// the same number again).
#[test]
fn delay_lines_running_out_never_allocate_and_all_come_back() {
    use jamrig::engine::voice::{CHANNEL_LINES, SHARED_LINES};
    let set = common::set(
        r#"
        channel(1, "pluck_synth", #{ voices: 256 });
        channel(2, "pluck_synth", #{ voices: 256 });
        channel(3, "pluck_synth", #{ voices: 256 });
        "#,
    );
    let Renderer { mut engine, mut controller, .. } = Renderer::new(&set, 48000).expect("rig");
    let mut out = vec![0.0f32; 512 * 2];
    let lines = (3 * CHANNEL_LINES + SHARED_LINES) as u64;
    let short = 3 * 128 - lines;
    for strike in 1..=2u64 {
        let at = engine.frames_out() + 64;
        for channel in 0..3u8 {
            for note in 0..128u8 {
                engine.schedule(Event::new(at, EventKind::NoteOn { channel, note, velocity: 100 }));
                engine.schedule(Event::new(at + 4800, EventKind::NoteOff { channel, note }));
            }
        }
        // Strike, release, and let every string die away (10 s).
        for block in 0..(10 * 48000 / 512) {
            process_unallocating(
                &mut engine,
                &mut out,
                format_args!("lending, stealing or taking back lines allocated or freed"),
            );
            assert!(out.iter().all(|x| x.is_finite()));
            controller.collect();
            if block == 1 {
                // 21 ms after the strike: the stolen strings have faded, the notes that
                // waited for their lines sound.
                let stats = controller.stats();
                let sounding: u64 = (0..3).map(|ch| stats.voices[ch].load(Relaxed) as u64).sum();
                assert_eq!(sounding, lines, "strike {strike}: every line in use, by as many strings");
            }
        }
        let stats = controller.stats();
        assert_eq!(stats.lines_missed.load(Relaxed), 0, "strike {strike}: a note was lost");
        assert_eq!(stats.voices_stolen.load(Relaxed), strike * short, "strike {strike}");
        assert_eq!(stats.voices_cut.load(Relaxed), 0);
        for ch in 0..3 {
            assert_eq!(stats.voices[ch].load(Relaxed), 0, "channel {} rang on", ch + 1);
        }
    }
}

/// A note short of a delay line is not lost: channels 2 to 4 hold every shared
/// line, channel 1 its own 32 with 32 strings; a 33rd string on channel 1 takes the
/// oldest one's line (that string fades out) and then sounds, so 32 strings still
/// sound there, none missed, nothing allocated.
#[test]
fn a_note_short_of_a_delay_line_takes_one_and_sounds() {
    use jamrig::engine::voice::{CHANNEL_LINES, SHARED_LINES};
    let set = common::set(
        r#"
        channel(1, "pluck_synth", #{ voices: 256 });
        channel(2, "pluck_synth", #{ voices: 256 });
        channel(3, "pluck_synth", #{ voices: 256 });
        channel(4, "pluck_synth", #{ voices: 256 });
        "#,
    );
    let Renderer { mut engine, mut controller, .. } = Renderer::new(&set, 48000).expect("rig");
    let mut out = vec![0.0f32; 512 * 2];
    let at = engine.frames_out() + 64;
    // Channels 2 to 4: their own lines and every shared one.
    let mut others = CHANNEL_LINES * 3 + SHARED_LINES;
    for channel in 1..4u8 {
        for note in 0..(others.min(128) as u8) {
            engine.schedule(Event::new(at, EventKind::NoteOn { channel, note, velocity: 100 }));
        }
        others -= others.min(128);
    }
    assert_eq!(others, 0);
    for note in 0..CHANNEL_LINES as u8 {
        engine.schedule(Event::new(at, EventKind::NoteOn { channel: 0, note: 40 + note, velocity: 100 }));
    }
    engine.schedule(Event::new(at + 4800, EventKind::NoteOn { channel: 0, note: 100, velocity: 127 }));
    for _ in 0..20 {
        process_unallocating(&mut engine, &mut out, format_args!("the audio thread allocated or freed"));
        assert!(out.iter().all(|x| x.is_finite()));
        controller.collect();
    }
    let stats = controller.stats();
    assert_eq!(stats.lines_missed.load(Relaxed), 0, "the 33rd string was lost");
    assert_eq!(stats.voices_stolen.load(Relaxed), 1, "one string gave up its line");
    assert_eq!(stats.voices[0].load(Relaxed) as usize, CHANNEL_LINES, "channel 1: 31 old strings and the new one");
}

#[cfg(feature = "jack")]
#[path = "common/live.rs"]
mod live_support;

/// The process thread's side of MIDI out on JACK: every cycle it takes the output
/// ports the control thread made or asked back, clears each port's buffer and
/// writes every queued message to its device's port. While the control thread
/// makes and drops device ports (reloads adding and removing devices) and the
/// queue is kept full, the callback never allocates or frees.
#[cfg(feature = "jack")]
#[test]
fn jack_output_ports_come_and_go_without_the_process_thread_allocating() {
    use jamrig::engine::midi_out::{OUT_PORTS, OutMessage};
    use jamrig::live::midi_out::{JackClientOwner, JackOutPorts, OutDevices, OutShared, OutWriter};
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicU32, AtomicU64};
    let _serial = live_support::serial();
    let server = live_support::JackServer::start(live_support::server());
    let client = live_support::open_client(&server.name, "jamrig").expect("a client");
    let named = |devices: &[&str]| {
        let mut set = Set::default();
        for (i, d) in devices.iter().enumerate() {
            let spec = jamrig::rig::set::ChannelSpec {
                instrument: "external".into(),
                kind: jamrig::rig::set::ChannelKind::External { device: d.to_string(), channel: 1 },
                params: Default::default(),
                voices: 1,
            };
            set.channels.insert(i as u8 + 1, spec);
        }
        set
    };
    let mut devices = OutDevices::default().plan(&named(&["op-xy"]), 0).unwrap();
    let (mut outs, names) = JackOutPorts::register(&client, &devices).expect("ports");
    let shared = Arc::new(OutShared::new(jamrig::engine::midi_out::queue()));
    let (violations, cycles) = (Arc::new(AtomicU32::new(0)), Arc::new(AtomicU64::new(0)));
    let (v, c, out) = (violations.clone(), cycles.clone(), shared.clone());
    let mut writer = OutWriter::default();
    let process = jack::contrib::ClosureProcessHandler::new(move |_: &jack::Client, ps: &jack::ProcessScope| {
        reset_violation_count();
        assert_no_alloc(|| outs.write_cycle(ps, &mut writer, &out, |m: &OutMessage| Some(m.frame as i64 % 64)));
        v.fetch_add(violation_count(), Relaxed);
        c.fetch_add(1, Relaxed);
        jack::Control::Continue
    });
    let active = Arc::new(Mutex::new(Some(client.activate_async((), process).expect("activates"))));
    let owner: Arc<dyn JackClientOwner> = active.clone();
    let mut control = names.owned_by(owner);
    let lists = [&["op-xy", "digitakt"][..], &["digitakt", "keystep"], &["op-xy"], &[]];
    let mut adopted = 0;
    let t0 = std::time::Instant::now();
    for round in 0..24u64 {
        // A reload: new devices get ports, removed ones retire (here at once).
        devices = devices.plan(&named(lists[round as usize % lists.len()]), adopted).unwrap();
        adopted += 1;
        control.sync(&devices);
        devices.due(adopted, true, std::time::Instant::now());
        let later = std::time::Instant::now() + jamrig::live::midi_out::RETIRE_AFTER;
        for gone in devices.due(adopted, true, later) {
            control.retire(gone.port);
        }
        control.collect();
        // A full queue of messages for every port, the ones without a port too.
        for k in 0..200u64 {
            let port = (k % OUT_PORTS as u64) as u8;
            let _ = shared.queue.push(OutMessage { frame: k, lead_frames: 0, port, bytes: [0x90, 60, 100], len: 3 });
        }
        let seen = cycles.load(Relaxed);
        while cycles.load(Relaxed) < seen + 3 {
            assert!(t0.elapsed().as_secs() < 30, "the process callback stopped");
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
    }
    // The last round named no device: every device's port was given back, and
    // unregistered on this thread.
    std::thread::sleep(std::time::Duration::from_millis(20));
    control.collect();
    let ports = live_support::open_client(&server.name, "lister").expect("a client");
    assert_eq!(
        ports.ports(Some("jamrig:"), None, jack::PortFlags::empty()),
        ["jamrig:out"],
        "only the default port stays"
    );
    let _ = active.lock().unwrap().take();
    assert_eq!(violations.load(Relaxed), 0, "the process callback allocated or freed");
    assert!(shared.written.load(Relaxed) > 200, "messages were written to their ports");
    assert!(shared.refused.load(Relaxed) > 0, "messages for ports that are not there were refused");
}

/// What the guard of jamrig's JACK process callback below saw (its runs are the
/// callback's cycles).
#[cfg(feature = "jack")]
static CALLBACK: Guarded = Guarded::new();

/// Runs one cycle of jamrig's JACK process callback under `assert_no_alloc`.
#[cfg(feature = "jack")]
fn callback_guard(f: &mut dyn FnMut()) {
    CALLBACK.run(f);
}

/// `jamrig play` on JACK activates its client before the rig is built: the process
/// callback plays silence, polling for the engine, then takes it (and the device
/// ports registered on the active client) and plays it from that cycle. The whole
/// callback, waiting, adoption and playing, runs under `assert_no_alloc`; the
/// engine is dropped on this thread when the client closes.
#[cfg(feature = "jack")]
#[test]
fn the_jack_callback_waits_for_the_engine_and_takes_it_without_allocating() {
    use crossbeam_queue::ArrayQueue;
    use jamrig::live::clock::FrameClock;
    use jamrig::live::jack_host::{Clients, JackStream};
    use jamrig::live::link::LinkSession;
    use jamrig::live::midi::MidiTap;
    use jamrig::live::midi_out::OutShared;
    use jamrig::live::stats::LiveStats;
    use jamrig::rig::Rig;
    use std::sync::atomic::AtomicBool;
    use std::time::Duration;
    let _serial = live_support::serial();
    let server = live_support::JackServer::start(live_support::server());
    let own = live_support::open_client(&server.name, "jamrig").expect("a client");
    let ports = live_support::open_client(&server.name, "jamrig_ports").expect("a second client");
    let (sample_rate, buffer) = (own.sample_rate(), own.buffer_size());
    let stats = Arc::new(LiveStats::default());
    let stream = JackStream::activate(Some(Clients { own, ports: Some(ports) }), stats.clone(), Some(callback_guard))
        .expect("the client activates");
    // Cycles without an engine: silence, nothing recorded.
    let waited = live_support::wait_for(Duration::from_secs(30), || (CALLBACK.runs() >= 6).then_some(()));
    assert!(waited.is_some(), "the callback does not run before the engine arrives");
    assert_eq!(stats.callbacks_total.load(Relaxed), 0, "no engine ran before one was handed over");

    // The rig, as `play` builds it, with a MIDI output device and the clock out.
    let set = common::set(
        r#"
        tempo(120);
        clock_out(true);
        midi_out("op-xy", #{ latency_ms: 5 });
        channel(1, "synth_bass");
        channel(3, #{ midi_out: "op-xy", out_channel: 1 });
        pattern("bass", 1, 1.0, [[0.0, "C2", 100, 0.5], [0.5, "G2", 100, 0.25]]);
        pattern("ext", 3, 1.0, [[0.0, "C3", 100, 0.25]]);
        "#,
    );
    let shared = Arc::new(OutShared::new(jamrig::engine::midi_out::queue()));
    let devices = shared.devices.lock().unwrap().plan(&set, 0).expect("devices");
    let out_ports = devices.ports();
    *shared.devices.lock().unwrap() = devices;
    let Rig { mut engine, controller } =
        Rig::routed(&set, sample_rate as f32, common::tables(sample_rate), out_ports).expect("rig");
    engine.midi_out_into(shared.queue.clone());
    let clock = Arc::new(FrameClock::new(sample_rate, buffer));
    let tap = MidiTap {
        sender: controller.event_sender(),
        clock: clock.clone(),
        log: Arc::new(ArrayQueue::new(64)),
        log_on: Arc::new(AtomicBool::new(false)),
        out: shared.clone(),
    };
    let link = LinkSession::new(120.0);
    let before = CALLBACK.runs();
    stream.start(engine, clock, link.clock(), &tap).expect("the engine is handed over");
    let played = live_support::wait_for(Duration::from_secs(30), || {
        // The guard counts a run after the callback's own count: wait for both.
        (stats.callbacks_total.load(Relaxed) >= 40 && CALLBACK.runs() > before + 40 && shared.written.load(Relaxed) > 0)
            .then_some(())
    });
    assert!(played.is_some(), "the callback did not play the engine it was handed, or wrote no MIDI");
    assert!(controller.stats().frames.load(Relaxed) > 0, "the engine rendered");
    assert!(CALLBACK.runs() > before + 40);
    let port = shared.devices.lock().unwrap().all()[0].port;
    let device_port = stream.outs.lock().unwrap().name(port).map(str::to_string);
    let want = format!("jamrig:{}", jamrig::live::midi_out::port_name_for("op-xy"));
    assert_eq!(device_port, Some(want), "the device's port was made on the active client");
    drop(stream);
    assert_eq!(CALLBACK.violations(), 0, "the process callback allocated or freed");
}

/// With the start-up timeline on (`JAMRIG_STARTUP_TIMELINE`), the JACK process
/// callback stamps its first run and the cycle that adopts the engine: the stamp
/// reads the clock and stores it, without allocating, once.
#[test]
fn the_start_up_timeline_stamps_without_allocating() {
    use jamrig::live::timeline;
    use std::sync::atomic::AtomicU64;
    timeline::start_at(timeline::now_ns());
    let slot = AtomicU64::new(0);
    reset_violation_count();
    assert_no_alloc(|| {
        for _ in 0..3 {
            timeline::stamp(&slot);
        }
    });
    assert_eq!(violation_count(), 0, "the stamp allocated");
    let first = slot.load(Relaxed);
    assert!(first > 0, "the timeline is on, so the stamp is taken");
    timeline::stamp(&slot);
    assert_eq!(slot.load(Relaxed), first, "only the first stamp holds");
}
