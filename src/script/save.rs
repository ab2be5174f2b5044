//! Writes a [`Set`] back out as a Rhai set that reproduces it (the REPL's `:save`):
//! channels as their preset plus what differs from it, CC maps, patterns (by
//! preset name when unchanged, else written out). Control thread.

use super::api::preset_channel;
use super::library::Library;
use crate::engine::snapshot::MasterMode;
use crate::params::{Kind, PARAMS, Param, ParamValues, fmt_num};
use crate::rig::set::{ChannelKind, ChannelSpec, PatternSpec, Set, SyncMode};
use crate::theory::note_name;
use std::fmt::Write;

fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

fn num(v: f64) -> String {
    let s = fmt_num(v as f32);
    if s.contains('.') || s.contains('e') { s } else { format!("{s}.0") }
}

/// A beat or a length exactly (shortest form that reads back as the same f64), so
/// that triplets and the lengths of mini-notation hits survive a save.
fn exact(v: f64) -> String {
    format!("{v:?}")
}

fn value(p: Param, v: f32) -> String {
    match p.info().kind {
        Kind::Choice(names) => quote(names.get(v as usize).copied().unwrap_or("")),
        Kind::Toggle => (v != 0.0).to_string(),
        _ => num(v as f64),
    }
}

/// `key: value` for every parameter where `spec` differs from `base`.
fn param_diff(spec: &ParamValues, base: &ParamValues) -> Vec<String> {
    PARAMS
        .iter()
        .enumerate()
        .filter(|(i, _)| spec.0[*i] != base.0[*i])
        .map(|(i, info)| format!("{}: {}", info.name, value(Param::ALL[i], spec.0[i])))
        .collect()
}

fn map_literal(items: &[String]) -> String {
    if items.is_empty() { String::new() } else { format!(", #{{ {} }}", items.join(", ")) }
}

fn channel_line(n: u8, spec: &ChannelSpec, lib: &Library, out: &mut String) {
    let mut items = Vec::new();
    match &spec.kind {
        ChannelKind::External { device, channel } => {
            let _ = writeln!(out, "channel({n}, #{{ midi_out: {}, out_channel: {channel} }});", quote(device));
        }
        ChannelKind::Drums => {
            items.extend(param_diff(&spec.params, &ParamValues::default()));
            if spec.voices != crate::engine::DEFAULT_VOICE_LIMIT {
                items.push(format!("voices: {}", spec.voices));
            }
            let _ = writeln!(out, "drums({n}{});", map_literal(&items));
        }
        ChannelKind::Synth { synth } => {
            let base = preset_channel(lib, &spec.instrument).ok().filter(|b| b.kind == spec.kind);
            let base = match base {
                Some(b) => b,
                None => {
                    // Not a library preset (or changed): define it here first.
                    let _ = writeln!(
                        out,
                        "define_instrument({}, #{{ synth: {} }});",
                        quote(&spec.instrument),
                        quote(synth)
                    );
                    let mut lib = lib.clone();
                    lib.instruments.insert(
                        spec.instrument.clone(),
                        super::library::InstrumentDef { synth: synth.clone(), envelope: None, params: Vec::new() },
                    );
                    preset_channel(&lib, &spec.instrument).expect("the synth was checked when the set was built")
                }
            };
            items.extend(param_diff(&spec.params, &base.params));
            if spec.voices != base.voices {
                items.push(format!("voices: {}", spec.voices));
            }
            let _ = writeln!(out, "channel({n}, {}{});", quote(&spec.instrument), map_literal(&items));
        }
        ChannelKind::Sampled { font, preset, kit } => {
            let mut items =
                vec![format!("soundfont: {}", quote(font)), format!("preset: {}", quote(&sampled_preset(spec)))];
            let _ = preset;
            items.extend(param_diff(&spec.params, &ParamValues::default()));
            let f = if *kit { "drums" } else { "channel" };
            let _ = writeln!(out, "{f}({n}, #{{ {} }});", items.join(", "));
        }
        ChannelKind::SampleInstrument { name } => {
            let items = param_diff(&spec.params, &ParamValues::default());
            let _ = writeln!(out, "channel({n}, {}{});", quote(name), map_literal(&items));
        }
    }
}

/// The preset name of a sampled channel (its instrument reads "font: preset").
fn sampled_preset(spec: &ChannelSpec) -> String {
    spec.instrument.split_once(": ").map(|(_, p)| p.to_string()).unwrap_or_default()
}

fn pattern_lines(p: &PatternSpec, set: &Set, lib: &Library, out: &mut String) {
    let drums = set.channels.get(&p.channel).is_some_and(|c| c.is_drums());
    if let Some(preset) = &p.preset {
        let from_lib = lib.patterns.get(preset).map(|d| (d.beats, d.hits.len()));
        let same = from_lib == Some((p.length_beats, p.hits.len()))
            && lib.patterns[preset]
                .hits
                .iter()
                .zip(&p.hits)
                .all(|(a, b)| a.beat == b.beat && a.note == b.note && a.velocity == b.velocity);
        if same {
            let _ = writeln!(out, "pattern({}, {}, {});", quote(&p.name), p.channel, quote(preset));
            return;
        }
        let _ = writeln!(out, "// pattern {} started from the preset {}", p.name, quote(preset));
    }
    let _ = writeln!(out, "pattern({}, {}, {}, [", quote(&p.name), p.channel, exact(p.length_beats));
    for h in &p.hits {
        let note = match (drums, lib.drum_name(h.note)) {
            (true, Some(name)) => quote(name),
            _ => quote(&note_name(h.note)),
        };
        if drums && h.length == 0.0 {
            let _ = writeln!(out, "    [{}, {note}, {}],", exact(h.beat), h.velocity);
        } else {
            let _ = writeln!(out, "    [{}, {note}, {}, {}],", exact(h.beat), h.velocity, exact(h.length));
        }
    }
    let _ = writeln!(out, "]);");
}

/// `set` with the instruments program changes have chosen: channel `n` plays
/// program `program_of(n)`'s instrument (the set's own program map), keeping its
/// volume, pan and voices, as the engine does.
pub fn with_programs(set: &Set, program_of: impl Fn(u8) -> Option<u8>) -> Set {
    let mut out = set.clone();
    for (&n, spec) in out.channels.iter_mut() {
        if spec.is_drums() || spec.is_external() {
            continue;
        }
        let Some(prog) = program_of(n).and_then(|p| set.programs.get(&p)) else { continue };
        let mut next = prog.clone();
        for p in [Param::Volume, Param::Pan] {
            next.params.set(p, spec.params.get(p));
        }
        next.voices = spec.voices;
        *spec = next;
    }
    out
}

/// The set as Rhai source. `lib` is the library the set is read back with.
pub fn to_rhai(set: &Set, lib: &Library) -> String {
    let mut out = String::from("// Saved from a live jamrig session.\n\n");
    let _ = writeln!(out, "tempo({});", num(set.tempo_bpm));
    if set.beats_per_bar != 4.0 {
        let _ = writeln!(out, "meter({});", num(set.beats_per_bar));
    }
    match set.sync {
        SyncMode::Internal => {}
        SyncMode::Midi => out.push_str("clock(\"midi\");\n"),
        SyncMode::Link { quantum } => {
            let _ = writeln!(out, "clock(\"link\", {});", num(quantum));
        }
    }
    if set.clock_out {
        out.push_str("clock_out(true);\n");
    }
    for (device, ms) in &set.midi_outs {
        let _ = writeln!(out, "midi_out({}, #{{ latency_ms: {} }});", quote(device), num(*ms as f64));
    }
    if set.master != Default::default() {
        let mode = match set.master.mode {
            MasterMode::SoftClip => "softclip",
            MasterMode::Limiter => "limiter",
        };
        let _ = writeln!(out, "master(#{{ gain: {}, mode: \"{mode}\" }});", num(set.master.gain as f64));
    }
    // Programs the set maps otherwise than the library does.
    let mut gm = String::new();
    for (p, spec) in &set.programs {
        if lib.gm.get(p) != Some(&spec.instrument) && lib.instruments.contains_key(&spec.instrument) {
            let _ = writeln!(gm, "gm_program({p}, {});", quote(&spec.instrument));
        }
    }
    if !gm.is_empty() {
        out.push('\n');
        out.push_str(&gm);
    }
    out.push('\n');
    for (&n, spec) in &set.channels {
        channel_line(n, spec, lib, &mut out);
    }
    if !set.cc_map.is_empty() {
        out.push('\n');
    }
    for c in &set.cc_map {
        let curve = if c.exponential { "exp" } else { "linear" };
        let ch = match (c.channel, c.any) {
            (Some(n), _) => format!("channel: {n}, "),
            (None, true) => "channel: \"any\", ".into(),
            (None, false) => String::new(),
        };
        let _ = writeln!(
            out,
            "cc({}, {}, {}, {}, #{{ {ch}curve: \"{curve}\" }});",
            c.cc,
            quote(c.param.name()),
            num(c.min as f64),
            num(c.max as f64)
        );
    }
    if !set.patterns.is_empty() {
        out.push('\n');
    }
    for p in set.patterns.values() {
        pattern_lines(p, set, lib, &mut out);
    }
    out
}
