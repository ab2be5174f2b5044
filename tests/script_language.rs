//! The set language: scripts evaluate to the expected plain `Set` (channels from
//! presets, maps and properties; CC maps; patterns from presets, written hits and
//! fills; clock, master, meter), evaluation is repeatable, sets may override the
//! stdlib and import modules from their folder, and the guard limits hold.

mod common;

use common::{eval, eval_err, host, set};
use jamrig::engine::snapshot::MasterMode;
use jamrig::params::{Param, ParamValues};
use jamrig::rig::Set;
use jamrig::rig::set::{ChannelKind, ChannelSpec, HitSpec, SyncMode};
use jamrig::script::diff::diff;
use std::path::Path;
use std::time::{Duration, Instant};

fn ch(set: &Set, n: u8) -> &ChannelSpec {
    set.channels.get(&n).unwrap_or_else(|| panic!("channel {n} is in the set"))
}

fn p(spec: &ChannelSpec, param: Param) -> f32 {
    spec.params.get(param)
}

fn synth_of(spec: &ChannelSpec) -> &str {
    match &spec.kind {
        ChannelKind::Synth { synth, .. } => synth,
        ChannelKind::Drums => "drums",
        ChannelKind::External { .. } => "external",
        ChannelKind::Sampled { .. } => "soundfont",
        ChannelKind::SampleInstrument { .. } => "sample",
    }
}

/// Envelope values (attack, decay, sustain, release) of a stdlib envelope.
fn envelope(name: &str) -> [f32; 4] {
    let e = host().library().envelopes.get(name).unwrap_or_else(|| panic!("envelope {name}"));
    [e.attack, e.decay, e.sustain, e.release]
}

fn adsr(spec: &ChannelSpec) -> [f32; 4] {
    [p(spec, Param::Attack), p(spec, Param::Decay), p(spec, Param::Sustain), p(spec, Param::Release)]
}

fn printed(text: &str) -> Vec<String> {
    match eval(text) {
        Ok(ev) => ev.printed,
        Err(d) => panic!("set does not evaluate:\n{}", d.render()),
    }
}

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

// ---- Channels ----

#[test]
fn preset_channel_gets_preset_params_and_its_envelope() {
    let s = set(r#"channel(2, "synth_bass");"#);
    let c = ch(&s, 2);
    assert_eq!(c.instrument, "synth_bass");
    assert_eq!(synth_of(c), "saw");
    assert_eq!(p(c, Param::Lowpass), 800.0);
    assert_eq!(p(c, Param::LowpassQ), 1.3);
    assert_eq!(p(c, Param::SubOsc), 0.4);
    // Non-rendered parameters of the preset are kept too.
    assert_eq!(p(c, Param::FilterAmount), 2000.0);
    assert_eq!(p(c, Param::Analog), 0.2);
    // The pluck envelope.
    assert_eq!(envelope("pluck"), [0.002, 0.15, 0.0, 0.1]);
    assert_eq!(adsr(c), envelope("pluck"));
    // Everything else at the table's defaults.
    let d = ParamValues::default();
    for param in [Param::Volume, Param::Pan, Param::Reverb, Param::Delay, Param::Highpass, Param::Chorus] {
        assert_eq!(p(c, param), d.get(param), "{param}");
    }
    assert_eq!(c.voices, 16);
    assert!(s.patterns.is_empty() && s.cc_map.is_empty());
}

#[test]
fn a_bare_synth_name_is_a_channel_with_default_parameters() {
    let s = set(r#"channel(1, "pluck_synth");"#);
    let c = ch(&s, 1);
    assert_eq!((c.instrument.as_str(), synth_of(c)), ("pluck_synth", "pluck_synth"));
    assert_eq!(c.params, ParamValues::default());
}

#[test]
fn overrides_map_changes_only_what_it_names() {
    let s = set(r#"channel(2, "synth_bass", #{ lowpass: 1200, volume: 0.7, voices: 8, reverb_type: "hall" });"#);
    let c = ch(&s, 2);
    assert_eq!(p(c, Param::Lowpass), 1200.0);
    assert_eq!(p(c, Param::Volume), 0.7);
    assert_eq!(p(c, Param::ReverbType), 2.0, "hall is the third reverb type");
    assert_eq!(c.voices, 8);
    // The rest of the preset stays.
    assert_eq!(p(c, Param::LowpassQ), 1.3);
    assert_eq!(p(c, Param::SubOsc), 0.4);
    assert_eq!(adsr(c), envelope("pluck"));
}

#[test]
fn an_envelope_in_the_map_is_applied_before_single_envelope_values() {
    // Whatever the map's order, attack given alongside the envelope wins.
    for text in [
        r#"channel(1, "synth_bass", #{ attack: 0.05, envelope: "pad" });"#,
        r#"channel(1, "synth_bass", #{ envelope: "pad", attack: 0.05 });"#,
    ] {
        let s = set(text);
        let [_, d, su, r] = envelope("pad");
        assert_eq!(adsr(ch(&s, 1)), [0.05, d, su, r], "{text}");
    }
}

#[test]
fn channel_from_a_map() {
    let s = set(r#"channel(1, #{ synth: "fm", fm_ratio: 1.0, fm_index: 1.6, reverb: 0.3 });"#);
    let c = ch(&s, 1);
    assert_eq!((c.instrument.as_str(), synth_of(c)), ("fm", "fm"));
    assert_eq!((p(c, Param::FmRatio), p(c, Param::FmIndex), p(c, Param::Reverb)), (1.0, 1.6, 0.3));
    // Without an envelope, the "piano" envelope.
    assert_eq!(adsr(c), envelope("piano"));
    let s = set(r#"channel(1, #{ synth: "square", envelope: "organ" });"#);
    assert_eq!(adsr(ch(&s, 1)), envelope("organ"));
}

#[test]
fn properties_set_and_read_back() {
    let out = printed(
        r#"
        let c = channel(1, "organ");
        print(c.lowpass);
        c.reverb = 0.25;
        c.lowpass = c.lowpass * 2;
        let again = ch(1);
        again.pan = -0.5;
        print(c.reverb);
        print(ch(1).lowpass);
        print(c.pan);
        print(c.instrument);
        print(c.number);
        print(c.voices);
        print(c.reverb_type);
        print(c.legato);
        c.legato = true;
        c.reverb_type = "plate";
        print(c.legato);
        print(c.reverb_type);
        "#,
    );
    assert_eq!(out, ["5000.0", "0.25", "10000.0", "-0.5", "organ", "1", "16", "algorithmic", "false", "true", "plate"]);
    let s = set(r#"let c = channel(1, "organ"); c.reverb = 0.25; c.lowpass = 300; c.legato = true;"#);
    let c = ch(&s, 1);
    assert_eq!((p(c, Param::Reverb), p(c, Param::Lowpass), p(c, Param::Legato)), (0.25, 300.0, 1.0));
}

#[test]
fn every_parameter_is_a_property() {
    // Each numeric parameter can be set to its maximum and read back.
    let mut text = String::from("let c = channel(1, \"saw\");\n");
    for info in jamrig::params::PARAMS {
        if let jamrig::params::Kind::Number { max, .. } | jamrig::params::Kind::Cutoff { max, .. } = info.kind {
            text.push_str(&format!(
                "c.{0} = {max:?}; if (c.{0} - {max:?}).abs() > 1e-3 {{ throw \"{0}\"; }}\n",
                info.name
            ));
        }
    }
    let s = set(&text);
    for (i, info) in jamrig::params::PARAMS.iter().enumerate() {
        if let jamrig::params::Kind::Number { max, .. } | jamrig::params::Kind::Cutoff { max, .. } = info.kind {
            assert_eq!(ch(&s, 1).params.0[i], max, "{}", info.name);
        }
    }
}

#[test]
fn envelope_by_name_and_by_map() {
    let s = set(r#"let c = channel(1, "organ"); c.envelope = "bell";"#);
    assert_eq!(adsr(ch(&s, 1)), envelope("bell"));
    // A partial map changes only what it names.
    let s = set(r#"let c = channel(1, "organ"); c.envelope = #{ attack: 0.5, release: 2.0 };"#);
    let [_, d, su, _] = envelope("organ");
    assert_eq!(adsr(ch(&s, 1)), [0.5, d, su, 2.0]);
    let s = set(r#"channel(1, "organ", #{ envelope: #{ attack: 1.0, decay: 0.5, sustain: 0.2, release: 3.0 } });"#);
    assert_eq!(adsr(ch(&s, 1)), [1.0, 0.5, 0.2, 3.0]);
}

#[test]
fn properties_of_ch_can_be_assigned_directly() {
    // The form the REPL and the docs use for a quick tweak.
    let s = set(r#"
        channel(1, "organ"); ch(1).reverb = 0.3; drums(10); ch(10).volume = 0.9;
        for n in [1, 10] { ch(n).pan = -0.25; }
        ch(1).envelope = "bell";
        ch(1).lowpass = ch(1).lowpass / 2; // a comment with ch(1).reverb = 1.0
        print("ch(1).reverb = 1.0");
        "#);
    assert_eq!(
        (p(ch(&s, 1), Param::Reverb), p(ch(&s, 1), Param::Lowpass), p(ch(&s, 1), Param::Pan)),
        (0.3, 2500.0, -0.25)
    );
    assert_eq!(adsr(ch(&s, 1)), envelope("bell"));
    assert_eq!((p(ch(&s, 10), Param::Volume), p(ch(&s, 10), Param::Pan)), (0.9, -0.25));
    assert_eq!(
        printed("channel(1, \"organ\"); ch(1).reverb = 0.5; print(ch(1).reverb); print(ch(1).instrument);"),
        ["0.5", "organ"]
    );
}

#[test]
fn ch_assignment_inside_a_function() {
    let s = set("channel(2, \"organ\");\nfn tweak() { ch(2).lowpass = 900; }\ntweak();");
    assert_eq!(p(ch(&s, 2), Param::Lowpass), 900.0);
}

#[test]
fn ch_assignment_inside_a_module() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "tweaks.rhai", "ch(2).reverb = 0.4;\nfn tweak() { ch(2).lowpass = 900; }\n");
    let main = write(dir.path(), "set.rhai", "channel(2, \"organ\");\nimport \"tweaks\" as t;\nt::tweak();\n");
    let ev = host().eval_file(&main).unwrap_or_else(|d| panic!("{}", d.render()));
    assert_eq!((p(ch(&ev.set, 2), Param::Reverb), p(ch(&ev.set, 2), Param::Lowpass)), (0.4, 900.0));
}

#[test]
fn ch_assignment_edge_cases() {
    let s = set("channel(2, \"organ\"); ch(2) .reverb = 0.1;");
    assert_eq!(p(ch(&s, 2), Param::Reverb), 0.1);
    let s = set("channel(2, \"organ\"); print(\"say \\\"hi\\\"\"); ch(2).reverb = 0.2;");
    assert_eq!(p(ch(&s, 2), Param::Reverb), 0.2);
}

#[test]
fn voices() {
    let s = set(
        r#"channel(1, "organ", #{ voices: 8 }); let c = channel(2, "saw"); c.voices = 1; let d = channel(3, "saw"); d.voices = 256;"#,
    );
    assert_eq!((ch(&s, 1).voices, ch(&s, 2).voices, ch(&s, 3).voices), (8, 1, 256));
    assert!(eval(r#"channel(1, "organ", #{ voices: 0 });"#).is_err());
    assert!(eval(r#"channel(1, "organ", #{ voices: 257 });"#).is_err());
    assert!(eval(r#"channel(1, "organ", #{ voices: 2.5 });"#).is_err());
}

#[test]
fn synth_property_swaps_the_synth() {
    let s = set(r#"let c = channel(1, "synth_bass"); c.synth = "square";"#);
    let c = ch(&s, 1);
    assert_eq!((c.instrument.as_str(), synth_of(c)), ("square", "square"));
    // The preset's parameters stay.
    assert_eq!(p(c, Param::Lowpass), 800.0);
    assert!(eval(r#"drums(10).synth = "saw";"#).is_err(), "a drum channel has no synth");
}

#[test]
fn drums_channel() {
    let s = set("drums(10);");
    let c = ch(&s, 10);
    assert!(c.is_drums());
    assert_eq!(c.kind, ChannelKind::Drums);
    assert_eq!(c.instrument, "drums");
    assert_eq!(c.params, ParamValues::default());
    let s = set("drums(9, #{ volume: 0.8, reverb: 0.2 }); let d = drums(10); d.pan = 0.3;");
    assert_eq!((p(ch(&s, 9), Param::Volume), p(ch(&s, 9), Param::Reverb)), (0.8, 0.2));
    assert_eq!(p(ch(&s, 10), Param::Pan), 0.3);
}

#[test]
fn all_sixteen_channels() {
    let mut text = String::new();
    for n in 1..=16 {
        text.push_str(&format!("channel({n}, \"saw\");\n"));
    }
    assert_eq!(set(&text).channels.len(), 16);
    assert!(eval(r#"channel(17, "saw");"#).is_err());
    assert!(eval(r#"channel(0, "saw");"#).is_err());
    assert!(eval(r#"channel(1.5, "saw");"#).is_err());
}

// ---- CC ----

#[test]
fn cc_mapping_defaults_follow_the_parameter() {
    let s = set(r#"
        cc(74, "lowpass", 200, 12000);
        cc(91, "reverb", 0.0, 0.8);
        cc(73, "attack", 0.001, 2.0);
        cc(72, "attack", 0.0, 2.0);
        "#);
    assert_eq!(s.cc_map.len(), 4);
    let lp = s.cc_map[0];
    assert_eq!(
        (lp.cc, lp.param, lp.min, lp.max, lp.channel, lp.exponential),
        (74, Param::Lowpass, 200.0, 12000.0, None, true)
    );
    let rv = s.cc_map[1];
    assert_eq!(
        (rv.cc, rv.param, rv.min, rv.max, rv.channel, rv.exponential),
        (91, Param::Reverb, 0.0, 0.8, None, false)
    );
    assert!(s.cc_map[2].exponential, "attack is a time: exponential");
    assert!(!s.cc_map[3].exponential, "an exponential curve cannot start at 0: linear");
}

#[test]
fn channel_specific_cc_and_curves() {
    let s = set(r#"
        cc(1, "tremolo_depth", 0.0, 0.6, 1);
        cc(74, "lowpass", 200, 8000, #{ channel: 2, curve: "linear" });
        cc(75, "reverb", 0.1, 0.9, #{ curve: "exp" });
        "#);
    assert_eq!((s.cc_map[0].channel, s.cc_map[0].exponential), (Some(1), false));
    assert_eq!((s.cc_map[1].channel, s.cc_map[1].exponential), (Some(2), false));
    assert_eq!((s.cc_map[2].channel, s.cc_map[2].exponential), (None, true));
    assert!(eval(r#"cc(75, "reverb", 0.0, 0.9, #{ curve: "exp" });"#).is_err(), "exp needs min above 0");
    assert!(eval(r#"cc(75, "reverb", 0.0, 0.9, 17);"#).is_err());
    assert!(eval(r#"cc(75, "legato", 0.0, 1.0);"#).is_err(), "a toggle cannot follow a CC");
}

#[test]
fn a_later_cc_of_the_same_cc_channel_and_parameter_replaces_the_earlier() {
    let s = set(r#"
        cc(74, "lowpass", 200, 12000);
        cc(74, "lowpass", 200, 8000, 2);
        cc(74, "lowpass_q", 0.5, 4.0);
        cc(74, "lowpass", 300, 5000);
        cc(74, "lowpass", 100, 1000, 2);
        "#);
    let got: Vec<_> = s.cc_map.iter().map(|c| (c.cc, c.param, c.channel, c.min, c.max)).collect();
    assert_eq!(
        got,
        [
            (74, Param::LowpassQ, None, 0.5, 4.0),
            (74, Param::Lowpass, None, 300.0, 5000.0),
            (74, Param::Lowpass, Some(2), 100.0, 1000.0),
        ]
    );
}

// ---- Patterns ----

fn hits_of(s: &Set, name: &str) -> Vec<(f64, u8, u8, f64)> {
    let p = s.patterns.get(name).unwrap_or_else(|| panic!("pattern {name}"));
    p.hits.iter().map(|h| (h.beat, h.note, h.velocity, h.length)).collect()
}

#[test]
fn pattern_from_a_preset_plays_gm_drum_notes() {
    let s = set(r#"drums(10); pattern("beat", 10, "rock");"#);
    let pat = &s.patterns["beat"];
    assert_eq!(
        (pat.name.as_str(), pat.channel, pat.length_beats, pat.preset.as_deref()),
        ("beat", 10, 4.0, Some("rock"))
    );
    let mut hits: Vec<(f64, u8)> = pat.hits.iter().map(|h| (h.beat, h.note)).collect();
    hits.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let mut want = vec![(0.0, 36), (2.0, 36), (1.0, 38), (3.0, 38)];
    want.extend((0..8).map(|i| (i as f64 * 0.5, 42)));
    want.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    assert_eq!(hits, want);
    assert!(pat.hits.iter().all(|h| h.velocity == 100 && h.length == 0.0), "drum hits: one-shots");
}

#[test]
fn written_pattern_with_note_names_midi_numbers_and_default_length() {
    let s = set(r#"
        channel(1, "organ");
        pattern("riff", 1, 4.0, [[0.0, "C4", 90, 0.9], [1, 64, 80], [2.5, "F#3", 70, 0.25], [3.0, "Eb2"]]);
        "#);
    assert_eq!(hits_of(&s, "riff"), [(0.0, 60, 90, 0.9), (1.0, 64, 80, 0.5), (2.5, 54, 70, 0.25), (3.0, 39, 100, 0.5)]);
    let pat = &s.patterns["riff"];
    assert_eq!((pat.channel, pat.length_beats, pat.preset.as_deref()), (1, 4.0, None));
    assert_eq!(jamrig::script::api::DEFAULT_HIT_LENGTH, 0.5);
}

#[test]
fn written_pattern_with_drum_names_on_a_drum_channel() {
    let s = set(r#"
        drums(10);
        pattern("kit", 10, 2.0, [[0.0, "kick", 110], [0.5, "closed hat", 70], [1.0, "Maracas", 90], [1.5, 38, 80], [1.75, "cajon-bass", 60]]);
        "#);
    assert_eq!(
        hits_of(&s, "kit"),
        [(0.0, 36, 110, 0.0), (0.5, 42, 70, 0.0), (1.0, 70, 90, 0.0), (1.5, 38, 80, 0.5), (1.75, 117, 60, 0.0)]
    );
    // Drum names only on drum channels.
    let d = eval_err(r#"channel(1, "organ"); pattern("riff", 1, 4.0, [[0.0, "kick", 90]]);"#);
    assert!(d.message.contains("drum"), "{}", d.message);
}

#[test]
fn note_function() {
    let out = printed(r#"print(note("C#3")); print(note("C4")); print(note("Bb-1")); print(note(62));"#);
    assert_eq!(out, ["49", "60", "10", "62"]);
}

#[test]
fn fill_replaces_the_end_of_every_nth_repeat() {
    let s = set(r#"drums(10); pattern("beat", 10, "rock", #{ fill: "rock", every: 4 });"#);
    let lib = host().library();
    let (rock, fill) = (&lib.patterns["rock"], &lib.fills["rock"]);
    assert_eq!((rock.beats, fill.beats), (4.0, 4.0));
    let pat = &s.patterns["beat"];
    assert_eq!(pat.length_beats, 16.0);
    let mut want: Vec<(f64, u8)> = Vec::new();
    for k in 0..3 {
        want.extend(rock.hits.iter().map(|h| (h.beat + 4.0 * k as f64, h.note)));
    }
    want.extend(fill.hits.iter().map(|h| (h.beat + 12.0, h.note)));
    let mut got: Vec<(f64, u8)> = pat.hits.iter().map(|h| (h.beat, h.note)).collect();
    let by = |a: &(f64, u8), b: &(f64, u8)| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1));
    want.sort_by(by);
    got.sort_by(by);
    assert_eq!(got, want);
    // The last bar is the fill: toms and a crash, no hats.
    assert!(got.iter().filter(|h| h.0 >= 12.0).all(|h| h.1 != 42));
    assert!(got.iter().any(|h| h.0 >= 12.0 && h.1 == 49), "crash in the fill bar");
    // every defaults to 4; every: 2 makes an 8-beat pattern.
    let s = set(
        r#"drums(10); pattern("a", 10, "rock", #{ fill: "rock" }); pattern("b", 10, "rock", #{ fill: "rock", every: 2 });"#,
    );
    assert_eq!((s.patterns["a"].length_beats, s.patterns["b"].length_beats), (16.0, 8.0));
    assert_eq!(s.patterns["b"].hits.iter().filter(|h| h.beat >= 4.0).count(), fill.hits.len());
}

#[test]
fn hits_past_a_patterns_end_are_not_kept() {
    // Whatever happens to a hit written past the end (an error, see
    // script_diagnostics), the set never holds one.
    if let Ok(ev) = eval(r#"channel(1, "organ"); pattern("r", 1, 4.0, [[0.0, "C4", 90], [4.0, "D4", 90]]);"#) {
        assert!(ev.set.patterns["r"].hits.iter().all(|h| h.beat < 4.0));
    }
}

// ---- Clock, master, meter, tempo ----

#[test]
fn clock_modes_and_quantum() {
    assert_eq!(set("").sync, SyncMode::Internal);
    assert_eq!(set(r#"clock("midi"); clock("internal");"#).sync, SyncMode::Internal);
    assert_eq!(set(r#"clock("midi");"#).sync, SyncMode::Midi);
    assert_eq!(set(r#"clock("link");"#).sync, SyncMode::Link { quantum: 4.0 });
    assert_eq!(set(r#"clock("link", 8);"#).sync, SyncMode::Link { quantum: 8.0 });
    assert!(eval(r#"clock("link", 0);"#).is_err());
    assert!(eval(r#"clock("link", 65);"#).is_err());
    assert!(eval(r#"clock("smpte");"#).is_err());
}

#[test]
fn master_meter_and_tempo() {
    let s = set("");
    assert_eq!((s.tempo_bpm, s.beats_per_bar, s.master.gain, s.master.mode), (120.0, 4.0, 1.0, MasterMode::SoftClip));
    let s = set(r#"tempo(128); meter(3); master(#{ gain: 0.8, mode: "limiter" });"#);
    assert_eq!((s.tempo_bpm, s.beats_per_bar, s.master.gain, s.master.mode), (128.0, 3.0, 0.8, MasterMode::Limiter));
    assert_eq!(set(r#"master(#{ mode: "softclip" });"#).master.mode, MasterMode::SoftClip);
    assert_eq!(set("tempo(20);").tempo_bpm, 20.0);
    assert_eq!(set("tempo(400);").tempo_bpm, 400.0);
    assert_eq!(set("tempo(999);").tempo_bpm, 999.0);
    assert_eq!(set("tempo(97.5);").tempo_bpm, 97.5);
    for bad in ["tempo(19.9);", "tempo(1000);", "meter(0);", "master(#{ gain: 5.0 });", r#"master(#{ mode: "loud" });"#]
    {
        assert!(eval(bad).is_err(), "{bad} is refused");
    }
}

// ---- Evaluation as a whole ----

#[test]
fn evaluation_is_idempotent() {
    for path in ["examples/set.rhai", "examples/live-coding.rhai", "examples/op-xy.rhai", "examples/minimal.rhai"] {
        let a = host().eval_file(Path::new(path)).unwrap_or_else(|d| panic!("{}", d.render()));
        let b = host().eval_file(Path::new(path)).unwrap_or_else(|d| panic!("{}", d.render()));
        assert_eq!(a.set, b.set, "{path}");
        assert!(diff(&a.set, &b.set, Some(17)).is_empty(), "{path}");
        assert_eq!(a.files, b.files);
    }
}

#[test]
fn what_disappears_from_the_script_disappears_from_the_rig() {
    let full = r#"
        channel(2, "synth_bass");
        channel(5, "synth_pad");
        drums(10);
        cc(74, "lowpass", 200, 8000);
        cc(91, "reverb", 0.0, 0.5, 5);
        pattern("beat", 10, "rock");
        pattern("pad", 5, 4.0, [[0.0, "C4", 80, 3.0]]);
    "#;
    let trimmed = r#"
        channel(2, "synth_bass");
        drums(10);
        cc(74, "lowpass", 200, 8000);
        pattern("beat", 10, "rock");
    "#;
    let (a, b) = (set(full), set(trimmed));
    assert!(!b.channels.contains_key(&5));
    assert!(!b.patterns.contains_key("pad"));
    assert_eq!(b.cc_map.len(), 1);
    let changes = diff(&a, &b, Some(17));
    assert_eq!(changes, ["ch5 removed", "cc91 -> ch5 reverb removed", "pattern pad removed at bar 17"]);
    // And back.
    let changes = diff(&b, &a, None);
    assert_eq!(changes, ["ch5 added (synth_pad)", "cc91 -> ch5 reverb added", "pattern pad added"]);
}

#[test]
fn set_defined_presets_override_the_stdlibs_for_that_set_only() {
    let s = set(r#"
        define_envelope("slow", #{ attack: 2.0, decay: 0.5, sustain: 0.5, release: 4.0 });
        define_instrument("synth_bass", #{ synth: "square", envelope: "slow", lowpass: 500.0 });
        define_instrument("my_lead", #{ synth: "pulse", detune: 7.0 });
        define_pattern("rock", 2.0, [[0.0, "kick", 120], [1.0, "clap", 90]]);
        define_fill("rock", 1.0, [[0.0, "crash", 100]]);
        drum_sound("zap", 39);
        channel(1, "synth_bass");
        channel(2, "my_lead");
        drums(10);
        pattern("beat", 10, "rock", #{ fill: "rock", every: 2 });
        pattern("zaps", 10, 1.0, [[0.0, "zap", 100]]);
        "#);
    let c = ch(&s, 1);
    assert_eq!(synth_of(c), "square");
    assert_eq!(p(c, Param::Lowpass), 500.0);
    assert_eq!(p(c, Param::LowpassQ), ParamValues::default().get(Param::LowpassQ), "the whole preset is replaced");
    assert_eq!(adsr(c), [2.0, 0.5, 0.5, 4.0]);
    // An instrument without an envelope gets the "piano" envelope.
    assert_eq!(adsr(ch(&s, 2)), envelope("piano"));
    assert_eq!(p(ch(&s, 2), Param::Detune), 7.0);
    assert_eq!(
        hits_of(&s, "beat"),
        [(0.0, 36, 120, 0.0), (1.0, 39, 90, 0.0), (2.0, 36, 120, 0.0), (3.0, 49, 100, 0.0)]
    );
    assert_eq!(hits_of(&s, "zaps"), [(0.0, 39, 100, 0.0)]);
    // The next evaluation sees the stdlib again.
    let s = set(r#"channel(1, "synth_bass"); drums(10); pattern("beat", 10, "rock");"#);
    assert_eq!(synth_of(ch(&s, 1)), "saw");
    assert_eq!(s.patterns["beat"].hits.len(), 12);
    assert!(eval(r#"channel(2, "my_lead");"#).is_err());
    assert_eq!(host().library().patterns["rock"].beats, 4.0);
}

#[test]
fn gm_programs_resolve_to_channels_and_a_set_may_remap_them() {
    let ev = eval("").unwrap();
    assert_eq!(ev.gm.len(), 128);
    assert_eq!(ev.gm[&0], "piano");
    // Every program resolves to a playable instrument.
    assert_eq!(ev.set.programs.len(), 128);
    assert_eq!(ev.set.programs[&0].instrument, "piano");
    let ev = eval(r#"gm_program(0, "synth_bass");"#).unwrap();
    assert_eq!(ev.gm[&0], "synth_bass");
    assert_eq!(ev.set.programs[&0].instrument, "synth_bass");
}

#[test]
fn print_is_captured() {
    assert_eq!(printed(r#"print("hello"); print(1 + 2);"#), ["hello", "3"]);
}

// ---- Imports ----

#[test]
fn imports_from_the_sets_folder() {
    let dir = tempfile::tempdir().unwrap();
    let helpers = write(
        dir.path(),
        "helpers.rhai",
        r#"
        // Pattern helpers for the set.
        fn four(note, vel) {
            let out = [];
            for i in 0..4 { out.push([i * 1.0, note, vel, 0.5]); }
            out
        }
        export const ROOT = "A1";
        "#,
    );
    let rig = write(
        dir.path(),
        "rig.rhai",
        r#"
        // Declares the pad channel for whoever imports it.
        channel(3, "synth_pad", #{ volume: 0.3 });
        "#,
    );
    let main = write(
        dir.path(),
        "set.rhai",
        r#"
        import "helpers" as h;
        import "rig";
        channel(2, "synth_bass");
        pattern("bass", 2, 4.0, h::four(h::ROOT, 100));
        pattern("pad", 3, 4.0, h::four("A3", 60));
        "#,
    );
    let ev = host().eval_file(&main).unwrap_or_else(|d| panic!("{}", d.render()));
    assert_eq!(ev.files, [main.clone(), helpers, rig]);
    assert_eq!(p(ch(&ev.set, 3), Param::Volume), 0.3);
    assert_eq!(synth_of(ch(&ev.set, 3)), "supersaw");
    assert_eq!(
        hits_of(&ev.set, "bass"),
        [(0.0, 33, 100, 0.5), (1.0, 33, 100, 0.5), (2.0, 33, 100, 0.5), (3.0, 33, 100, 0.5)]
    );
    assert_eq!(hits_of(&ev.set, "pad")[0], (0.0, 57, 60, 0.5));
}

#[test]
fn a_local_module_shadows_a_stdlib_module() {
    let dir = tempfile::tempdir().unwrap();
    let music = write(dir.path(), "music.rhai", "fn chord(r, q) { [1, 2, 3] }\n");
    let main = write(dir.path(), "set.rhai", "import \"music\" as m;\nprint(m::chord(\"C4\", \"maj\"));\n");
    let ev = host().eval_file(&main).unwrap_or_else(|d| panic!("{}", d.render()));
    assert_eq!(ev.printed, ["[1, 2, 3]"]);
    assert_eq!(ev.files, [main, music]);
}

#[test]
fn stdlib_music_module() {
    let out = printed(
        r#"
        import "music" as m;
        print(m::chord("C4", "maj"));
        print(m::chord("C3", "min7"));
        print(m::chord(60, "dom7"));
        print(m::scale("A2", "minor", 1));
        print(m::scale("C4", "pentatonic", 2));
        print(m::euclid(3, 8));
        print(m::euclid(4, 16));
        print(m::arpeggio(m::chord("C4", "maj"), 0.25, 0.2, 90));
        print(m::rhythm("kick", m::euclid(3, 8), 0.5, 110));
        "#,
    );
    assert_eq!(
        out,
        [
            "[60, 64, 67]",
            "[48, 51, 55, 58]",
            "[60, 64, 67, 70]",
            "[45, 47, 48, 50, 52, 53, 55]",
            "[60, 62, 64, 67, 69, 72, 74, 76, 79, 81]",
            "[0, 3, 6]",
            "[0, 4, 8, 12]",
            "[[0.0, 60, 90, 0.2], [0.25, 64, 90, 0.2], [0.5, 67, 90, 0.2]]",
            "[[0.0, \"kick\", 110], [1.5, \"kick\", 110], [3.0, \"kick\", 110]]",
        ]
    );
    // Its results are pattern hits as they are.
    let s = set(r#"
        import "music" as m;
        channel(1, "organ");
        drums(10);
        pattern("arp", 1, 1.0, m::arpeggio(m::chord("C4", "maj"), 0.25, 0.2, 90));
        pattern("k", 10, 4.0, m::rhythm("kick", m::euclid(3, 8), 0.5, 110));
        "#);
    assert_eq!(hits_of(&s, "arp"), [(0.0, 60, 90, 0.2), (0.25, 64, 90, 0.2), (0.5, 67, 90, 0.2)]);
    assert_eq!(hits_of(&s, "k"), [(0.0, 36, 110, 0.0), (1.5, 36, 110, 0.0), (3.0, 36, 110, 0.0)]);
}

#[test]
fn euclid_spreads_pulses_evenly() {
    for (k, n) in [(1, 4), (3, 8), (5, 8), (7, 16), (5, 12), (4, 4), (0, 8)] {
        let out = printed(&format!("import \"music\" as m; print(m::euclid({k}, {n}));"));
        let steps: Vec<i64> = out[0]
            .trim_matches(['[', ']'])
            .split(',')
            .filter(|s| !s.trim().is_empty())
            .map(|s| s.trim().parse().unwrap())
            .collect();
        assert_eq!(steps.len(), k, "euclid({k}, {n}) = {steps:?}");
        if k > 0 {
            assert_eq!(steps[0], 0);
            assert!(steps.windows(2).all(|w| w[0] < w[1]) && *steps.last().unwrap() < n as i64);
            // Gaps (wrapping) differ by at most one step.
            let mut gaps: Vec<i64> = steps.windows(2).map(|w| w[1] - w[0]).collect();
            gaps.push(n as i64 - steps.last().unwrap() + steps[0]);
            let (lo, hi) = (gaps.iter().min().unwrap(), gaps.iter().max().unwrap());
            assert!(hi - lo <= 1, "euclid({k}, {n}) = {steps:?}");
        }
    }
}

// ---- Limits and sandbox ----

#[test]
fn an_endless_loop_ends_with_an_error_in_well_under_a_second() {
    host();
    let t0 = Instant::now();
    let d = eval_err("let x = 0; loop { x += 1; }");
    let took = t0.elapsed();
    assert!(d.message.contains("operation limit"), "{}", d.message);
    assert!(took < Duration::from_millis(1000), "took {took:?}");
    let t0 = Instant::now();
    let d = eval_err("loop {}");
    assert!(d.message.contains("operation limit"), "{}", d.message);
    assert!(t0.elapsed() < Duration::from_millis(1000), "took {:?}", t0.elapsed());
    let t0 = Instant::now();
    assert!(eval("while true { }").is_err());
    assert!(eval("let x = 0; for i in 0..1000000000 { x += i; }").is_err());
    assert!(t0.elapsed() < Duration::from_millis(2000), "took {:?}", t0.elapsed());
}

#[test]
fn a_busy_but_finite_set_evaluates() {
    // Well inside the operation limit: 10000 iterations.
    let s = set("let n = 0; for i in 0..10000 { n += i; } tempo(20 + n % 300);");
    assert_eq!(s.tempo_bpm, 20.0 + (49995000 % 300) as f64);
}

#[test]
fn deep_recursion_is_an_error() {
    let d = eval_err("fn f(x) { f(x + 1) }\nf(0);");
    assert!(d.message.contains("too deeply"), "{}", d.message);
    // Well within the limit is fine.
    let s = set("fn f(x) { if x == 0 { 0 } else { 1 + f(x - 1) } }\ntempo(100 + f(30));");
    assert_eq!(s.tempo_bpm, 130.0);
}

#[test]
fn huge_data_is_an_error() {
    let d = eval_err("let s = \"x\"; for i in 0..20 { s += s; }");
    assert!(d.message.contains("more than a set may build"), "{}", d.message);
    let d = eval_err("let a = [0]; for i in 0..20 { a += a; }");
    assert!(d.message.contains("more than a set may build"), "{}", d.message);
    let mut m = String::from("let m = #{}; for i in 0..20000 { m[`k${i}`] = i; } print(m.len());");
    m.push('\n');
    assert!(eval(&m).is_err());
}

#[test]
fn growing_a_list_to_the_limit_fails_fast() {
    // 100000 pushes measured at 5.2 s, 50000 at 1.3 s (quadratic): a reload stalls.
    let t0 = Instant::now();
    let d = eval_err("let a = []; for i in 0..200000 { a.push(i); }");
    assert!(d.message.contains("more than a set may build"), "{}", d.message);
    assert!(t0.elapsed() < Duration::from_millis(1000), "took {:?}", t0.elapsed());
    let t0 = Instant::now();
    let _ = eval("let a = []; for i in 0..99999 { a.push([i, \"C4\", 100]); }");
    assert!(t0.elapsed() < Duration::from_millis(1000), "took {:?}", t0.elapsed());
}

#[test]
fn no_file_access_outside_the_sets_folder() {
    let dir = tempfile::tempdir().unwrap();
    let inner = dir.path().join("sets");
    std::fs::create_dir(&inner).unwrap();
    // Modules that exist, but outside the set's folder.
    write(dir.path(), "outside.rhai", "fn secret() { 42 }\n");
    let abs = write(dir.path(), "abs.rhai", "fn secret() { 42 }\n");
    let abs_name = abs.with_extension("");
    for import in ["../outside".to_string(), abs_name.display().to_string(), "sets/../outside".to_string()] {
        let main = write(&inner, "set.rhai", &format!("import \"{import}\" as x;\nprint(x::secret());\n"));
        let d = host().eval_file(&main).expect_err(&import);
        assert!(d.message.starts_with("cannot import"), "{import}: {}", d.message);
        assert_eq!((d.line, d.path.as_str()), (1, main.to_str().unwrap()), "{import}");
    }
    // A subfolder of the set's folder is the set's own.
    std::fs::create_dir(inner.join("lib")).unwrap();
    write(&inner.join("lib"), "util.rhai", "fn secret() { 7 }\n");
    let main = write(&inner, "set.rhai", "import \"lib/util\" as x;\nprint(x::secret());\n");
    assert_eq!(host().eval_file(&main).map(|e| e.printed).map_err(|d| d.render()), Ok(vec!["7".to_string()]));
}

#[test]
fn eval_is_unavailable() {
    let d = eval_err(r#"eval("tempo(100)");"#);
    assert!(d.message.contains("eval"), "{}", d.message);
    assert_eq!((d.line, d.column), (1, 1));
}

#[test]
fn set_text_without_a_folder_imports_only_the_stdlib() {
    let d = eval_err(r#"import "helpers" as h;"#);
    assert!(d.message.starts_with("cannot import \"helpers\""), "{}", d.message);
    assert!(eval(r#"import "music" as m;"#).is_ok());
}

#[test]
fn every_hit_spec_is_inside_its_pattern() {
    // A compact cross-check over every stdlib pattern placed with every fill length.
    let lib = host().library();
    for name in lib.patterns.keys().take(10) {
        let s = set(&format!("drums(10); pattern(\"p\", 10, {name:?}, #{{ fill: \"rock\", every: 3 }});"));
        let pat = &s.patterns["p"];
        assert_eq!(pat.length_beats, lib.patterns[name].beats * 3.0);
        assert!(pat.hits.iter().all(|h: &HitSpec| h.beat >= 0.0 && h.beat < pat.length_beats), "{name}");
    }
}

#[test]
fn an_external_channel_its_device_latency_and_clock_out() {
    let s = set(r#"
midi_out("op-xy", #{ latency_ms: 12 });
channel(5, #{ midi_out: "op-xy", out_channel: 1 });
channel(6, #{ midi_out: "digitakt" });
clock_out(true);
"#);
    assert_eq!(ch(&s, 5).kind, ChannelKind::External { device: "op-xy".into(), channel: 1 });
    // The out channel is the channel's own unless given.
    assert_eq!(ch(&s, 6).kind, ChannelKind::External { device: "digitakt".into(), channel: 6 });
    assert_eq!(s.midi_outs.get("op-xy"), Some(&12.0));
    assert!(s.clock_out);
    assert!(!set("tempo(120);").clock_out, "clock out is off unless asked");
    let snap = jamrig::rig::build::build(&s, None).unwrap();
    assert_eq!(
        snap.channels[4].unwrap().source,
        jamrig::engine::snapshot::Source::External { port: 0, channel: 0, latency_ms: 12.0 }
    );
    assert!(snap.clock_out);
}

/// Device names are matched without regard to case, as ports are: one device
/// however a set spells it, with one port and its latency.
#[test]
fn a_device_spelled_in_two_cases_is_one_device() {
    let s = set(r#"
midi_out("OP-XY", #{ latency_ms: 12 });
channel(5, #{ midi_out: "op-xy", out_channel: 1 });
channel(6, #{ midi_out: "Op-Xy", out_channel: 2 });
"#);
    assert_eq!(s.out_devices(), vec!["OP-XY".to_string()]);
    assert_eq!(ch(&s, 5).kind, ChannelKind::External { device: "OP-XY".into(), channel: 1 });
    assert_eq!(ch(&s, 6).kind, ChannelKind::External { device: "OP-XY".into(), channel: 2 });
    assert_eq!(s.midi_outs.len(), 1);
    let snap = jamrig::rig::build::build(&s, None).unwrap();
    for (i, out) in [(4, 0), (5, 1)] {
        assert_eq!(
            snap.channels[i].unwrap().source,
            jamrig::engine::snapshot::Source::External { port: 0, channel: out, latency_ms: 12.0 }
        );
    }
}

#[test]
fn external_channel_mistakes_are_reported() {
    let d = eval_err(r#"channel(5, #{ midi_out: "op-xy", out_channel: 17 });"#);
    assert!(d.message.contains("channel must be a whole number from 1 to 16"), "{}", d.message);
    let d = eval_err(r#"channel(5, #{ midi_out: "op-xy", outchannel: 2 });"#);
    assert!(d.message.contains("takes midi_out and out_channel, not outchannel"), "{}", d.message);
    let d = eval_err(r#"midi_out("op-xy", #{ latency_ms: 900 });"#);
    assert!(d.message.contains("latency_ms is 900, outside 0..500"), "{}", d.message);
}
