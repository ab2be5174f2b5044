//! When the engine plays things: pattern hits and MIDI events on exact frames at
//! every sample rate and block size, output independent of the block size, and
//! renders that repeat bit for bit.

mod common;

use common::*;
use jamrig::engine::event::{Event, EventKind};
use jamrig::offline::Renderer;

/// The frame a beat `num/den` lands on: the first frame at or after it,
/// ceil(beat * 60 * sr / bpm), in exact integer arithmetic.
fn beat_frame(num: u64, den: u64, sr: u64, bpm: u64) -> u64 {
    let (n, d) = (num * 60 * sr, den * bpm);
    n.div_ceil(d)
}

/// A drum pattern of `closed_hat` hits at beats 0, 1/3, 1, 2 and 3 of a 4-beat bar
/// (the closed hat's first sample is non-zero, so its onset is its frame).
fn hat_set(bpm: u64) -> String {
    format!(
        r#"tempo({bpm}); drums(10);
        pattern("beat", 10, 4.0, [[0.0, "closed_hat", 100], [1.0 / 3.0, "closed_hat", 100],
            [1.0, "closed_hat", 100], [2.0, "closed_hat", 100], [3.0, "closed_hat", 100]]);"#
    )
}

/// The closed hat as the kit has it at `sr` starts on a non-zero sample, so an
/// onset (first non-zero sample after silence) is the hit's frame.
fn assert_hat_starts_at_sample_0(sr: u32) {
    let t = tables(sr);
    let hat = &t.drums.sounds[t.drums.notes[42].unwrap() as usize];
    assert_ne!(hat[0], 0.0, "closed hat at {sr} Hz starts with a zero sample: pick another sound");
}

#[test]
fn pattern_hits_land_on_exact_frames_at_any_block_size() {
    for (sr, bpm) in [(48000u32, 120u64), (44100, 120), (96000, 120), (44100, 133), (96000, 97), (48000, 175)] {
        assert_hat_starts_at_sample_0(sr);
        let bars = 2;
        let seconds = (4 * bars) as f64 * 60.0 / bpm as f64 + 0.05;
        let mut expected = Vec::new();
        for bar in 0..=bars {
            let b = 4 * bar as u64;
            for (num, den) in [(b, 1), (3 * b + 1, 3), (b + 1, 1), (b + 2, 1), (b + 3, 1)] {
                expected.push(beat_frame(num, den, sr as u64, bpm) as usize);
            }
        }
        expected.retain(|&f| f < (seconds * sr as f64) as usize);
        let text = hat_set(bpm);
        let reference = render(&text, sr, seconds, 16, &[]);
        for block in [16, 64, 100, 128, 512, 4096] {
            let x = if block == 16 { reference.clone() } else { render(&text, sr, seconds, block, &[]) };
            let on = onsets(&mono(&x), 500);
            assert_eq!(on, expected, "{sr} Hz, {bpm} BPM, block {block}: onsets");
            assert!(x == reference, "{sr} Hz, {bpm} BPM: block {block} renders differently from block 16");
        }
        if sr == 48000 && bpm == 120 {
            assert_eq!(&expected[..3], &[0, 8000, 24000]);
        }
    }
}

fn example_set() -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/set.rhai");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// Live playing on top of the example set's patterns: notes, a bend, knob moves,
/// the pedal, at frames that fall anywhere in ticks and blocks.
fn playing(sr: u32) -> Vec<Event> {
    let f = |t: f64| at(t, sr) as u64;
    let mut ev = vec![
        note_on(f(0.2) + 3, 0, 64, 100),
        note_on(f(0.2) + 3, 0, 67, 90),
        note_off(f(1.1) + 61, 0, 64),
        note_off(f(1.3) + 7, 0, 67),
        pitch_bend(f(0.7) + 1, 0, 3000),
        pitch_bend(f(0.9) + 33, 0, 0),
        cc(f(1.5) + 5, 0, 64, 127),
        note_on(f(1.6) + 13, 0, 72, 110),
        note_off(f(1.8) + 99, 0, 72),
        cc(f(2.4) + 1, 0, 64, 0),
        note_on(f(3.0) + 1, 9, 39, 127),
        Event::new(f(3.5) + 3, EventKind::Program { channel: 0, program: 81 }),
        note_on(f(3.6) + 3, 0, 60, 100),
        note_off(f(4.4) + 3, 0, 60),
    ];
    for k in 0..40u64 {
        ev.push(cc(f(2.0) + k * 997, 0, 74, (k * 3) as u8));
        ev.push(cc(f(2.0) + k * 1009, 2, 91, (127 - k * 3) as u8));
    }
    ev
}

#[test]
fn example_set_renders_identically_at_every_block_size() {
    let sr = 48000;
    let text = example_set();
    let reference = render(&text, sr, 8.0, 16, &playing(sr));
    assert!(peak(&reference) > 0.05, "the example set is silent");
    for block in [37, 128, 4096] {
        let x = render(&text, sr, 8.0, block, &playing(sr));
        let first = x.iter().zip(&reference).position(|(a, b)| a.to_bits() != b.to_bits());
        assert!(first.is_none(), "block {block} differs from block 16 from frame {}", first.unwrap() / 2);
    }
}

#[test]
fn renders_repeat_bit_for_bit() {
    let extra = r#"
        channel(4, #{ synth: "pluck_synth", reverb: 0.3 });
        channel(5, #{ synth: "noise", envelope: "staccato", delay: 0.4, delay_time: 0.21 });
        channel(6, #{ synth: "supersaw", noise_mix: 0.2, sub_osc: 0.5, detune: 12.0, chorus: 0.5, phaser: 0.5 });
        pattern("pluck", 4, 2.0, [[0.0, "E3", 100, 0.3], [0.75, "B3", 90, 0.3], [1.5, "G#3", 80, 0.3]]);
        pattern("hiss", 5, 1.0, [[0.5, "C4", 100, 0.1]]);
        pattern("wash", 6, 4.0, [[0.0, "A3", 70, 3.0], [0.0, "E4", 70, 3.0]]);
    "#;
    let text = format!("{}\n{extra}", example_set());
    for sr in [44100u32, 48000, 96000] {
        let a = render(&text, sr, 4.0, 512, &playing(sr));
        let b = render(&text, sr, 4.0, 512, &playing(sr));
        assert!(peak(&a) > 0.05);
        assert!(a == b, "{sr} Hz: two renders of the same set differ");
    }
    // With tables built afresh (not the cached ones): the drum kit and wavetables
    // are deterministic too.
    let sr = 44100;
    let s = set(&text);
    let mut r = Renderer::new(&s, sr).unwrap();
    r.add_events(playing(sr));
    let fresh = r.render(at(4.0, sr), 512);
    assert!(fresh == render(&text, sr, 4.0, 512, &playing(sr)), "fresh tables render differently");
}

#[test]
fn midi_events_take_effect_at_their_frame() {
    let sr = 48000;
    // Frames on, just before and just after tick boundaries (ticks are 64 frames),
    // far enough apart for each hit (a 47 ms closed hat) to end in silence.
    let frames: Vec<u64> = vec![0, 5000, 9663, 12864, 19265, 25601, 31999, 40000 + 37];
    let hats: Vec<Event> = frames.iter().map(|&f| note_on(f, 9, 42, 100)).collect();
    for block in [1, 7, 64, 333, 4096] {
        let x = mono(&render("drums(10);", sr, 1.0, block, &hats));
        let on: Vec<u64> = onsets(&x, 500).iter().map(|&o| o as u64).collect();
        assert_eq!(on, frames, "drum hits, block {block}");
    }
    // A synth note: white noise has a non-zero first sample, so its onset is its
    // frame; the note-off at its frame starts a 10 ms release that ends exactly
    // 10 ms later.
    let text = r#"channel(1, #{ synth: "noise", attack: 0.0, decay: 0.0, sustain: 1.0, release: 0.01 });"#;
    for (on_f, off_f) in [(1001u64, 5007u64), (6400, 9663), (13313, 20000)] {
        let x = mono(&render(text, sr, 0.5, 100, &[note_on(on_f, 0, 60, 100), note_off(off_f, 0, 60)]));
        let first = x.iter().position(|v| *v != 0.0).unwrap() as u64;
        let last = x.iter().rposition(|v| *v != 0.0).unwrap() as u64;
        assert_eq!(first, on_f, "noise note on at {on_f}");
        let release = last + 1 - off_f;
        assert!(release.abs_diff(480) <= 2, "note off at {off_f}: sound ends {release} frames later, expected 480");
    }
}

/// A render whose notes are known before it starts (`jamrig render`) builds a kit of
/// only the sounds those notes play: it must sound exactly as with the whole kit.
#[test]
fn a_render_with_the_kit_of_its_notes_only_sounds_as_with_the_whole_kit() {
    let sr = 48000;
    let text = hat_set(120);
    let s = set(&text);
    let f = |t: f64| at(t, sr) as u64;
    // Kick and snare from events, the closed hat from the pattern; a note on channel
    // 1, which is not a drum channel (it plays nothing here), marks no sound.
    let events = vec![
        note_on(f(0.05), 0, 49, 100),
        note_on(f(0.1), 9, 36, 110),
        note_on(f(0.6) + 5, 9, 38, 100),
        note_off(f(0.9), 9, 38),
        note_on(f(1.2) + 17, 9, 36, 90),
    ];
    let notes = jamrig::offline::render::notes_played(&s, &events);
    let marked: Vec<usize> = (0..128).filter(|&n| notes[n]).collect();
    assert_eq!(marked, [36, 38, 42], "the notes the events and the pattern play on the drum channel");
    let mut whole = Renderer::new(&s, sr).unwrap();
    whole.add_events(events.iter().copied());
    let mut some = Renderer::for_notes(&s, sr, &notes).unwrap();
    some.add_events(events.iter().copied());
    let (a, b) = (whole.render(at(2.0, sr), 512), some.render(at(2.0, sr), 512));
    assert!(peak(&a) > 0.05, "the drums play");
    assert!(a == b, "the kit of the render's notes renders differently from the whole kit");
}
