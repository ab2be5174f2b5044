//! The stdlib preset library: its size, its drum names against the synthesized
//! kit, the reference-data fixes, every pattern and fill played on a drum channel
//! (heard, and on time), and every instrument preset either building a channel or
//! naming the synth it is waiting for.

mod common;

use common::{host, mono, onsets, peak, rms, tables};
use jamrig::engine::event::{Event, EventKind};
use jamrig::engine::synth::SYNTHS;
use jamrig::offline::Renderer;
use jamrig::rig::Set;
use jamrig::rig::set::{HitSpec, PatternSpec};
use jamrig::script::library::{Library, PatternDef};
use jamrig::tables::drums::{DRUM_ALIASES, DRUM_SOUNDS, drum_index, drum_index_for_note};
use std::collections::{BTreeMap, BTreeSet};

fn lib() -> &'static Library {
    host().library()
}

fn has_synth(name: &str) -> bool {
    SYNTHS.iter().any(|s| s.name == name)
}

// ---- Counts and cross-references ----

#[test]
fn counts() {
    let l = lib();
    assert_eq!(l.instruments.len(), 84, "instruments");
    assert_eq!(l.envelopes.len(), 10, "envelopes");
    assert_eq!(l.patterns.len(), 100, "patterns");
    assert_eq!(l.fills.len(), 37, "fills");
    assert_eq!(l.gm.len(), 128, "GM programs");
    assert_eq!(l.gm.keys().copied().collect::<Vec<u8>>(), (0..=127).collect::<Vec<u8>>());
    assert_eq!(
        l.envelopes.keys().map(String::as_str).collect::<BTreeSet<_>>(),
        BTreeSet::from(["none", "piano", "organ", "pluck", "pad", "strings", "bowed", "bell", "mallet", "staccato"])
    );
}

#[test]
fn every_gm_program_names_an_existing_instrument() {
    for (program, name) in &lib().gm {
        assert!(lib().instruments.contains_key(name), "GM program {program} names {name}, which is not an instrument");
    }
    // Program 0 is the piano, 24 a nylon guitar's nearest preset, and so on: spot checks.
    assert_eq!(lib().gm[&0], "piano");
    assert_eq!(lib().gm[&4], "electric_piano");
}

#[test]
fn every_instrument_names_a_known_envelope_and_valid_parameters() {
    for (name, def) in &lib().instruments {
        if let Some(e) = &def.envelope {
            assert!(lib().envelopes.contains_key(e), "{name}: envelope {e}");
        }
        for (p, v) in &def.params {
            assert_eq!(p.check(*v), Ok(*v), "{name}: {p}");
        }
        assert!(!def.synth.is_empty(), "{name} has a synth");
    }
}

#[test]
fn gm_programs_in_the_set_are_the_ones_whose_synth_exists() {
    let ev = common::eval("").unwrap();
    let want: BTreeSet<u8> =
        lib().gm.iter().filter(|(_, n)| has_synth(&lib().instruments[*n].synth)).map(|(p, _)| *p).collect();
    assert_eq!(ev.set.programs.keys().copied().collect::<BTreeSet<_>>(), want);
    for (p, spec) in &ev.set.programs {
        assert_eq!(spec.instrument, lib().gm[p]);
    }
}

// ---- Drum names ----

#[test]
fn drum_names_match_the_kit() {
    let aliases: BTreeMap<&str, &str> = DRUM_ALIASES.iter().copied().collect();
    assert_eq!(aliases, BTreeMap::from([("maracas", "shaker")]));
    let from_script: BTreeMap<&str, u8> = lib()
        .drum_sounds
        .iter()
        .filter(|(name, _)| !aliases.contains_key(name.as_str()))
        .map(|(n, v)| (n.as_str(), *v))
        .collect();
    let kit: BTreeMap<&str, u8> = DRUM_SOUNDS.iter().map(|s| (s.name, s.note)).collect();
    assert_eq!(from_script, kit, "stdlib/drums.rhai and jamrig::tables::drums::DRUM_SOUNDS");
    assert_eq!(DRUM_SOUNDS.len(), 75);
    // Aliases.
    assert_eq!(lib().drum_sounds["maracas"], lib().drum_sounds["shaker"]);
    assert_eq!(drum_index("maracas"), drum_index("shaker"));
    assert_eq!(lib().drum_sounds.len(), DRUM_SOUNDS.len() + DRUM_ALIASES.len());
}

#[test]
fn drum_notes_are_midi_notes_and_unique() {
    let mut seen = BTreeMap::new();
    for s in DRUM_SOUNDS {
        assert!(s.note <= 127, "{} on {}", s.name, s.note);
        if let Some(other) = seen.insert(s.note, s.name) {
            panic!("{} and {} share note {}", other, s.name, s.note);
        }
        assert_eq!(drum_index_for_note(s.note).map(|i| DRUM_SOUNDS[i].name), Some(s.name));
    }
    // Every General MIDI percussion note plays something.
    for n in 35..=81 {
        assert!(drum_index_for_note(n).is_some(), "GM percussion note {n}");
    }
}

#[test]
fn reference_bug_fixes() {
    let d = &lib().drum_sounds;
    // cajon_bass is its own sound on 117, not the tabla bend on 108.
    assert_eq!(d["cajon_bass"], 117);
    assert_eq!(d["tabla_ge_bend"], 108);
    let cajon = drum_index("cajon_bass").unwrap();
    assert_eq!(drum_index_for_note(117), Some(cajon));
    assert_ne!(drum_index_for_note(108), Some(cajon));
    // rainstick_slow on 34 (it was 128, not a MIDI note).
    assert_eq!(d["rainstick_slow"], 34);
    assert_eq!(drum_index_for_note(34), drum_index("rainstick_slow"));
    // The salsa and highlife fills have their cowbell.
    for fill in ["salsa", "highlife"] {
        assert!(lib().fills[fill].hits.iter().any(|h| h.note == 56), "{fill} has a cowbell (56)");
    }
    // The cajon patterns and fills play the cajon's bass, not the tabla.
    for name in ["cajon", "cajon folk", "cajon rumba"] {
        let p = &lib().patterns[name];
        assert!(p.hits.iter().any(|h| h.note == 117), "{name} plays cajon_bass");
        assert!(p.hits.iter().all(|h| h.note != 108), "{name} does not play the tabla bend");
    }
    for name in ["cajon breakdown", "cajon flam", "cajon rumble"] {
        let f = &lib().fills[name];
        assert!(f.hits.iter().any(|h| h.note == 117), "{name} plays cajon_bass");
    }
}

#[test]
fn every_pattern_and_fill_uses_sounds_of_the_kit() {
    let kit: BTreeSet<u8> = DRUM_SOUNDS.iter().map(|s| s.note).collect();
    for (what, map) in [("pattern", &lib().patterns), ("fill", &lib().fills)] {
        for (name, def) in map {
            assert!(!def.hits.is_empty(), "{what} {name} has hits");
            assert!(def.beats > 0.0, "{what} {name}");
            for h in &def.hits {
                assert!(h.drum, "{what} {name}: hit at {} is a drum sound", h.beat);
                assert!(kit.contains(&h.note), "{what} {name}: note {} is not a kit sound", h.note);
                assert!(h.beat >= 0.0 && h.beat < def.beats, "{what} {name}: hit at beat {} of {}", h.beat, def.beats);
                assert!((1..=127).contains(&h.velocity), "{what} {name}: velocity {}", h.velocity);
            }
        }
    }
}

// ---- Playing patterns and fills ----

const BPM: f64 = 120.0;

/// A set with a drum kit on channel 10 playing `def`'s hits (exactly as data).
fn drum_set(def: &PatternDef) -> Set {
    let mut s = common::set(&format!("tempo({BPM}); drums(10);"));
    let hits =
        def.hits.iter().map(|h| HitSpec { beat: h.beat, note: h.note, velocity: h.velocity, length: 0.0 }).collect();
    s.patterns
        .insert("p".into(), PatternSpec { name: "p".into(), channel: 10, length_beats: def.beats, hits, preset: None });
    s
}

/// Renders `frames` of `set` plus `events` at `sr`, mono.
fn play(set: &Set, sr: u32, frames: usize, events: &[Event]) -> Vec<f32> {
    let mut r = Renderer::with_tables(set, tables(sr)).expect("rig builds");
    r.add_events(events.iter().copied());
    mono(&r.render(frames, 512))
}

/// The pattern's hits as explicit note-ons at the frames the data says (first pass).
fn expected_events(def: &PatternDef, sr: u32) -> Vec<Event> {
    let fpb = 60.0 * sr as f64 / BPM;
    def.hits
        .iter()
        .map(|h| {
            Event::new(
                (h.beat * fpb).ceil() as u64,
                EventKind::NoteOn { channel: 9, note: h.note, velocity: h.velocity },
            )
        })
        .collect()
}

/// Checks that `def` played by the sequencer sounds like its hits sent as note-ons
/// at the frames its data says; returns the largest sample difference.
fn compare_with_events(def: &PatternDef, sr: u32) -> (f32, f32) {
    let frames = (def.beats * 60.0 / BPM * sr as f64) as usize;
    let sequenced = play(&drum_set(def), sr, frames, &[]);
    let plain = common::set(&format!("tempo({BPM}); drums(10);"));
    let reference = play(&plain, sr, frames, &expected_events(def, sr));
    let diff = sequenced.iter().zip(&reference).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
    (diff, peak(&reference))
}

/// Frame of the first sample where `a` and `b` differ.
fn first_difference(a: &[f32], b: &[f32]) -> Option<usize> {
    a.iter().zip(b).position(|(x, y)| x != y)
}

#[test]
fn rock_hits_land_on_beat_times_24000_frames() {
    // 120 BPM at 48 kHz: a beat is 24000 frames. Adding hits one at a time, the
    // output first changes where the added hit is heard: its beat * 24000 plus the
    // sound's own lead-in (first non-zero sample after a note-on).
    let sr = 48_000;
    let rock = &lib().patterns["rock"];
    let mut hits = rock.hits.clone();
    hits.sort_by(|a, b| a.beat.total_cmp(&b.beat));
    let frames = (rock.beats * 24000.0) as usize;
    let mut lead = BTreeMap::new();
    for note in [36u8, 38, 42] {
        let alone = play(&common::set("drums(10);"), sr, 4800, &[common::note_on(0, 9, note, 100)]);
        let l = alone.iter().position(|v| *v != 0.0).expect("the sound is heard");
        assert!(l < 48, "note {note} starts within 1 ms of its note-on ({l} frames)");
        lead.insert(note, l);
    }
    let mut before = vec![0.0f32; frames];
    for k in 0..hits.len() {
        let def = PatternDef { beats: rock.beats, meter: None, hits: hits[..=k].to_vec() };
        let now = play(&drum_set(&def), sr, frames, &[]);
        let h = hits[k];
        let want = (h.beat * 24000.0) as usize + lead[&h.note];
        let got = first_difference(&before, &now)
            .unwrap_or_else(|| panic!("hit {k} ({} at beat {}) is heard", h.note, h.beat));
        assert!(
            got.abs_diff(want) <= 48,
            "hit {k} ({} at beat {}): heard at frame {got}, want {want} (within 1 ms)",
            h.note,
            h.beat
        );
        before = now;
    }
    // The first hit (a kick at 0) starts at once.
    assert_eq!(hits[0].beat, 0.0);
}

#[test]
fn onsets_of_a_sparse_pattern_follow_silence() {
    // Short sounds a beat apart at 100 BPM, 44.1 kHz: each onset after exact silence.
    let sr = 44_100;
    let s = common::set(
        "tempo(100); drums(10); pattern(\"p\", 10, 4.0, [[0.0, \"clave\", 100], [1.0, \"rimshot\", 100], [2.5, \"clave\", 90], [3.25, \"rimshot\", 80]]);",
    );
    let out = play(&s, sr, sr as usize * 5 / 2, &[]);
    let fpb = 60.0 * sr as f64 / 100.0;
    let found = onsets(&out, 2000);
    let want: Vec<f64> = [0.0, 1.0, 2.5, 3.25, 4.0].iter().map(|b| b * fpb).collect();
    assert_eq!(found.len(), want.len(), "onsets {found:?}");
    for (f, w) in found.iter().zip(&want) {
        assert!((*f as f64 - w).abs() <= 44.1, "onset at {f}, want {w} (within 1 ms)");
    }
}

#[test]
fn rock_as_a_whole_matches_note_ons_at_its_beats() {
    let (diff, pk) = compare_with_events(&lib().patterns["rock"], 48_000);
    assert!(pk > 0.1, "rock is heard");
    assert!(diff <= 1e-4 * pk.max(1.0), "difference {diff} (peak {pk})");
    // The comparison is sensitive: the same note-ons 1 ms late differ clearly.
    let rock = &lib().patterns["rock"];
    let frames = (rock.beats * 24000.0) as usize;
    let sequenced = play(&drum_set(rock), 48_000, frames, &[]);
    let late: Vec<Event> =
        expected_events(rock, 48_000).into_iter().map(|e| Event::new(e.frame + 48, e.kind)).collect();
    let reference = play(&common::set(&format!("tempo({BPM}); drums(10);")), 48_000, frames, &late);
    let off = sequenced.iter().zip(&reference).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
    assert!(off > 0.05 * pk, "1 ms late differs by {off} (peak {pk})");
}

#[test]
fn every_pattern_renders_and_plays_on_time() {
    let sr = 22_050;
    let mut failures = Vec::new();
    for (name, def) in &lib().patterns {
        let (diff, pk) = compare_with_events(def, sr);
        let frames = (def.beats * 60.0 / BPM * sr as f64) as usize;
        let out = play(&drum_set(def), sr, frames, &[]);
        if !(rms(&out) > 1e-3 && pk > 1e-2) {
            failures.push(format!("pattern {name}: nearly silent (rms {}, peak {pk})", rms(&out)));
        }
        if peak(&out) > 1.0 {
            failures.push(format!("pattern {name}: clips (peak {})", peak(&out)));
        }
        if diff > 1e-4 * pk.max(1.0) {
            failures.push(format!("pattern {name}: differs from note-ons at its beats by {diff} (peak {pk})"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_fill_renders_and_plays_on_time() {
    let sr = 22_050;
    let mut failures = Vec::new();
    for (name, def) in &lib().fills {
        let (diff, pk) = compare_with_events(def, sr);
        let frames = (def.beats * 60.0 / BPM * sr as f64) as usize;
        let out = play(&drum_set(def), sr, frames, &[]);
        if !(rms(&out) > 1e-3 && pk > 1e-2) {
            failures.push(format!("fill {name}: nearly silent (rms {}, peak {pk})", rms(&out)));
        }
        if diff > 1e-4 * pk.max(1.0) {
            failures.push(format!("fill {name}: differs from note-ons at its beats by {diff} (peak {pk})"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_pattern_placed_by_a_script_matches_its_data() {
    // The script path (pattern(name, ch, "preset")) holds exactly the library's hits.
    for (name, def) in &lib().patterns {
        let s = common::set(&format!("drums(10); pattern(\"p\", 10, {name:?});"));
        let p = &s.patterns["p"];
        assert_eq!(p.length_beats, def.beats, "{name}");
        let got: Vec<(f64, u8, u8)> = p.hits.iter().map(|h| (h.beat, h.note, h.velocity)).collect();
        let want: Vec<(f64, u8, u8)> = def.hits.iter().map(|h| (h.beat, h.note, h.velocity)).collect();
        assert_eq!(got, want, "{name}");
    }
    for name in lib().fills.keys() {
        let s = common::set(&format!("drums(10); pattern(\"p\", 10, \"rock\", #{{ fill: {name:?} }});"));
        assert_eq!(s.patterns["p"].length_beats, 16.0, "{name}");
    }
}

// ---- Instruments ----

#[test]
fn every_instrument_builds_a_channel_or_names_its_missing_synth() {
    let mut working = Vec::new();
    let mut waiting: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, def) in &lib().instruments {
        match common::eval(&format!("channel(1, {name:?});")) {
            Ok(ev) => {
                assert!(has_synth(&def.synth), "{name} builds though {} is missing", def.synth);
                let spec = &ev.set.channels[&1];
                assert_eq!(spec.instrument, *name);
                working.push(name.clone());
            }
            Err(d) => {
                assert!(!has_synth(&def.synth), "{name} ({}) fails: {}", def.synth, d.headline());
                assert_eq!(
                    d.message,
                    format!("instrument \"{name}\" needs the synth \"{}\", which jamrig does not have", def.synth)
                );
                assert_eq!(d.token.as_deref(), Some(name.as_str()));
                waiting.entry(def.synth.clone()).or_default().push(name.clone());
            }
        }
    }
    assert_eq!(working.len() + waiting.values().map(Vec::len).sum::<usize>(), 84);
    assert!(waiting.is_empty(), "instruments waiting for a synth: {waiting:?}");
    println!("{} instruments build now: {}", working.len(), working.join(", "));
    for (synth, names) in &waiting {
        println!("waiting for {synth}: {}", names.join(", "));
    }
    // The ones that work today (more as synths arrive).
    for name in [
        "808_bass",
        "acid_bass",
        "bassoon",
        "brass_ensemble",
        "celesta",
        "french_horn",
        "glockenspiel",
        "koto",
        "music_box",
        "organ",
        "synth_bass",
        "synth_lead",
        "synth_pad",
        "tuba",
        "tubular_bells",
        "xylophone",
    ] {
        assert!(working.iter().any(|w| w == name), "{name} builds a channel");
    }
}

#[test]
fn every_working_instrument_plays_a_note() {
    let sr = 22_050;
    let mut failures = Vec::new();
    for (name, def) in &lib().instruments {
        if !has_synth(&def.synth) {
            continue;
        }
        let s = common::set(&format!("channel(1, {name:?});"));
        let events = [common::note_on(0, 0, 60, 100), common::note_off(sr as u64 / 4, 0, 60)];
        let out = play(&s, sr, sr as usize / 2, &events);
        let (r, pk) = (rms(&out[..sr as usize / 4]), peak(&out));
        if r.is_nan() || r <= 1e-3 || !pk.is_finite() || pk > 1.0 {
            failures.push(format!("{name} ({}): rms {r}, peak {pk}", def.synth));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
