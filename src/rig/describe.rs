//! A readable summary of a set, for `jamrig check` and the REPL's `:status`.

use super::set::{ChannelKind, Set, SyncMode};
use crate::params::{Kind, PARAMS, Param, ParamValues, fmt_num};
use std::fmt::Write;

/// Parameters always shown per channel, then any other that differs from its default.
const KEY_PARAMS: &[Param] = &[Param::Volume, Param::Pan];

fn value_text(p: Param, v: f32) -> String {
    let info = p.info();
    match info.kind {
        Kind::Choice(names) => names.get(v as usize).copied().unwrap_or("?").to_string(),
        Kind::Toggle => if v != 0.0 { "on" } else { "off" }.to_string(),
        Kind::Cutoff { .. } if v == 0.0 => "off".to_string(),
        _ if info.unit.is_empty() => fmt_num(v),
        _ => format!("{} {}", fmt_num(v), info.unit),
    }
}

/// `name value` pairs for the parameters worth showing.
pub fn key_values(params: &ParamValues) -> Vec<String> {
    let defaults = ParamValues::default();
    let mut out: Vec<String> =
        KEY_PARAMS.iter().map(|p| format!("{} {}", p.name(), value_text(*p, params.get(*p)))).collect();
    for (i, info) in PARAMS.iter().enumerate() {
        let p = Param::ALL[i];
        if KEY_PARAMS.contains(&p) || matches!(p, Param::Attack | Param::Decay | Param::Sustain | Param::Release) {
            continue;
        }
        if params.0[i] != defaults.0[i] {
            let mut s = format!("{} {}", info.name, value_text(p, params.0[i]));
            if !info.rendered {
                s.push_str(" (not rendered yet)");
            }
            out.push(s);
        }
    }
    out
}

/// The whole rig, as `jamrig check` prints it.
pub fn describe(set: &Set) -> String {
    let mut s = String::new();
    let sync = match set.sync {
        SyncMode::Link { quantum } => format!("link (quantum {})", fmt_num(quantum as f32)),
        other => other.name().to_string(),
    };
    let _ = writeln!(
        s,
        "tempo {} BPM, {} beats per bar, sync {sync}, master gain {} ({})",
        fmt_num(set.tempo_bpm as f32),
        fmt_num(set.beats_per_bar as f32),
        fmt_num(set.master.gain),
        match set.master.mode {
            crate::engine::snapshot::MasterMode::SoftClip => "soft clip",
            crate::engine::snapshot::MasterMode::Limiter => "limiter",
        }
    );
    let _ = writeln!(s, "channels:");
    if set.channels.is_empty() {
        let _ = writeln!(s, "  (none)");
    }
    for (ch, spec) in &set.channels {
        let what = match &spec.kind {
            ChannelKind::Drums => "drum kit".to_string(),
            ChannelKind::Synth { synth, .. } if *synth == spec.instrument => synth.clone(),
            ChannelKind::Synth { synth, .. } => format!("{} ({synth})", spec.instrument),
        };
        let p = &spec.params;
        let env = if spec.is_drums() {
            String::new()
        } else {
            format!(
                ", envelope {}/{}/{}/{}",
                fmt_num(p.get(Param::Attack)),
                fmt_num(p.get(Param::Decay)),
                fmt_num(p.get(Param::Sustain)),
                fmt_num(p.get(Param::Release))
            )
        };
        let _ = writeln!(s, "  ch{ch:<2} {what}, {} voices{env}", spec.voices);
        let _ = writeln!(s, "        {}", key_values(p).join(", "));
    }
    if !set.cc_map.is_empty() {
        let _ = writeln!(s, "cc map:");
        for c in &set.cc_map {
            let target = match (c.channel, c.any) {
                (Some(ch), _) => format!("ch{ch}"),
                (None, true) => "every channel".into(),
                (None, false) => "the channel it arrives on".into(),
            };
            let curve = if c.exponential { "exp" } else { "linear" };
            let _ = writeln!(
                s,
                "  cc{:<3} -> {} {}..{} ({curve}), {target}",
                c.cc,
                c.param,
                fmt_num(c.min),
                fmt_num(c.max)
            );
        }
    }
    if !set.patterns.is_empty() {
        let _ = writeln!(s, "patterns:");
        for p in set.patterns.values() {
            let from = p.preset.as_ref().map(|n| format!(" from \"{n}\"")).unwrap_or_default();
            let _ = writeln!(
                s,
                "  {} on ch{}{from}: {} beats, {} hits",
                p.name,
                p.channel,
                fmt_num(p.length_beats as f32),
                p.hits.len()
            );
        }
    }
    s
}
