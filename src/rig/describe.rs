//! A readable summary of a set, for `jamrig check` and the REPL's `:status`.

use super::set::{ChannelKind, Set, SyncMode};
use crate::params::{Kind, PARAMS, Param, ParamValues, fmt_num};
use crate::text::plural;
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

/// What the set's sampled sound holds in memory, one line (`None` without any):
/// each font's decoded samples, and the set's own samples.
pub fn sample_memory(set: &Set) -> Option<String> {
    let mb = |b: usize| b as f64 / (1 << 20) as f64;
    let mut parts: Vec<String> = set
        .fonts
        .iter()
        .map(|(name, f)| {
            let b = &f.bank.0;
            format!(
                "SoundFont {name} ({}): {}, {}, {:.1} MB of samples",
                f.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
                plural(b.presets.len() as u64, "preset"),
                plural(b.region_count() as u64, "zone"),
                mb(b.sample_bytes())
            )
        })
        .collect();
    if !set.samples.is_empty() {
        // Kept as 16-bit frames at the engine's rate (about the file's length at 48 kHz).
        let bytes: usize = set
            .samples
            .iter()
            .map(|s| {
                let d = &s.audio.0;
                (d.frames() as f64 * 48_000.0 / d.rate.max(1) as f64) as usize * d.channels.len() * 2
            })
            .sum();
        parts.push(format!("{} of the set: {:.1} MB", plural(set.samples.len() as u64, "sample"), mb(bytes)));
    }
    (!parts.is_empty()).then(|| format!("memory: {}", parts.join("; ")))
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
    if set.clock_out {
        let _ = writeln!(s, "MIDI clock out: on");
    }
    for (device, ms) in &set.midi_outs {
        let _ = writeln!(s, "MIDI out to \"{device}\": {} ms early", fmt_num(*ms));
    }
    let _ = writeln!(s, "channels:");
    if set.channels.is_empty() {
        let _ = writeln!(s, "  (none)");
    }
    for (ch, spec) in &set.channels {
        let what = match &spec.kind {
            ChannelKind::Drums => "drum kit".to_string(),
            ChannelKind::External { device, channel } => format!("MIDI out to \"{device}\", channel {channel}"),
            ChannelKind::Sampled { .. } => format!("SoundFont preset {}", spec.instrument),
            ChannelKind::SampleInstrument { name } => format!("sample instrument {name}"),
            ChannelKind::Synth { synth, .. } if *synth == spec.instrument => synth.clone(),
            ChannelKind::Synth { synth, .. } => format!("{} ({synth})", spec.instrument),
        };
        if spec.is_external() {
            let _ = writeln!(s, "  ch{ch:<2} {what}");
            continue;
        }
        let p = &spec.params;
        let env = if spec.is_drums() || matches!(spec.kind, ChannelKind::Sampled { .. }) {
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
        let _ = writeln!(s, "  ch{ch:<2} {what}, {}{env}", plural(spec.voices as u64, "voice"));
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
                "  {} on ch{}{from}: {} {}, {}",
                p.name,
                p.channel,
                fmt_num(p.length_beats as f32),
                if p.length_beats == 1.0 { "beat" } else { "beats" },
                plural(p.hits.len() as u64, "hit")
            );
        }
    }
    if let Some(m) = sample_memory(set) {
        let _ = writeln!(s, "{m}");
    }
    s
}
