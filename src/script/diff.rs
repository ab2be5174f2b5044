//! What changed between two sets, in the words of the one-line reload report:
//! `ch2 lowpass 800 -> 1200; pattern beat rock -> house at bar 17; ch5 removed`.

use crate::params::{Kind, Param, fmt_num};
use crate::rig::set::{ChannelSpec, PatternSpec, Set};

/// A parameter's value as the reports write it (`off`, `on`, a choice's name, `800`).
pub fn param_text(p: Param, v: f32) -> String {
    match p.info().kind {
        Kind::Choice(names) => names.get(v as usize).copied().unwrap_or("?").to_string(),
        Kind::Toggle => if v != 0.0 { "on" } else { "off" }.to_string(),
        Kind::Cutoff { .. } if v == 0.0 => "off".to_string(),
        _ => fmt_num(v),
    }
}

fn channel_changes(
    ch: u8,
    old: &ChannelSpec,
    new: &ChannelSpec,
    live: &impl Fn(u8, Param) -> Option<f32>,
    out: &mut Vec<String>,
) {
    if old.instrument != new.instrument || old.kind != new.kind {
        out.push(format!("ch{ch} {} -> {}", old.instrument, new.instrument));
    }
    for p in Param::ALL {
        let (a, b) = (old.params.get(*p), new.params.get(*p));
        if a != b {
            // From the value heard: a knob may have moved it since the set said.
            let from = live(ch, *p).unwrap_or(a);
            out.push(format!("ch{ch} {} {} -> {}", p.name(), param_text(*p, from), param_text(*p, b)));
        }
    }
    if old.voices != new.voices {
        out.push(format!("ch{ch} voices {} -> {}", old.voices, new.voices));
    }
}

/// A sync mode as a reload line names it: Link with its quantum (a change of
/// quantum alone is a change too).
fn sync_text(sync: crate::rig::set::SyncMode) -> String {
    match sync {
        crate::rig::set::SyncMode::Link { quantum } => format!("link (quantum {})", fmt_num(quantum as f32)),
        other => other.name().to_string(),
    }
}

fn pattern_label(p: &PatternSpec) -> String {
    p.preset.clone().unwrap_or_else(|| format!("{} beats", fmt_num(p.length_beats as f32)))
}

/// Every difference from `old` to `new`. `bar` is the bar at which new patterns
/// take over (`None` when the transport is stopped: at once).
pub fn diff(old: &Set, new: &Set, bar: Option<u64>) -> Vec<String> {
    diff_live(old, new, bar, |_, _| None)
}

/// [`diff`], with a changed parameter shown from its live value where a knob has
/// moved it (`live`: channel from 1, parameter; `None` where no knob has).
pub fn diff_live(old: &Set, new: &Set, bar: Option<u64>, live: impl Fn(u8, Param) -> Option<f32>) -> Vec<String> {
    let mut out = Vec::new();
    if old.tempo_bpm != new.tempo_bpm {
        out.push(format!("tempo {} -> {}", fmt_num(old.tempo_bpm as f32), fmt_num(new.tempo_bpm as f32)));
    }
    if old.beats_per_bar != new.beats_per_bar {
        out.push(format!("meter {} -> {}", fmt_num(old.beats_per_bar as f32), fmt_num(new.beats_per_bar as f32)));
    }
    if old.sync != new.sync {
        out.push(format!("sync {} -> {}", sync_text(old.sync), sync_text(new.sync)));
    }
    if old.master != new.master {
        out.push("master changed".to_string());
    }
    if old.clock_out != new.clock_out {
        out.push(format!("clock out {}", if new.clock_out { "on" } else { "off" }));
    }
    for (device, ms) in &new.midi_outs {
        if old.midi_outs.get(device) != Some(ms) {
            out.push(format!("midi out \"{device}\" latency {} ms", fmt_num(*ms)));
        }
    }
    for device in old.midi_outs.keys().filter(|d| !new.midi_outs.contains_key(*d)) {
        out.push(format!("midi out \"{device}\" removed"));
    }
    for ch in 1..=16u8 {
        match (old.channels.get(&ch), new.channels.get(&ch)) {
            (Some(a), Some(b)) => channel_changes(ch, a, b, &live, &mut out),
            (None, Some(b)) => out.push(format!("ch{ch} added ({})", b.instrument)),
            (Some(_), None) => out.push(format!("ch{ch} removed")),
            (None, None) => {}
        }
    }
    let cc_name = |c: &crate::rig::set::CcSpec| match c.channel {
        Some(ch) => format!("cc{} -> ch{ch} {}", c.cc, c.param),
        None if c.any => format!("cc{} -> any channel's {}", c.cc, c.param),
        None => format!("cc{} -> {}", c.cc, c.param),
    };
    for c in &old.cc_map {
        if !new.cc_map.iter().any(|n| n.cc == c.cc && n.channel == c.channel && n.param == c.param) {
            out.push(format!("{} removed", cc_name(c)));
        }
    }
    for c in &new.cc_map {
        match old.cc_map.iter().find(|o| o.cc == c.cc && o.channel == c.channel && o.param == c.param) {
            None => out.push(format!("{} added", cc_name(c))),
            Some(o) if o != c => out.push(format!("{} range {}..{}", cc_name(c), fmt_num(c.min), fmt_num(c.max))),
            _ => {}
        }
    }
    let when = match bar {
        Some(b) => format!(" at bar {b}"),
        None => String::new(),
    };
    for (name, p) in &new.patterns {
        match old.patterns.get(name) {
            None => out.push(format!("pattern {name} added{when}")),
            Some(o) if o != p => {
                let (a, b) = (pattern_label(o), pattern_label(p));
                if a != b {
                    out.push(format!("pattern {name} {a} -> {b}{when}"));
                } else if o.channel != p.channel {
                    out.push(format!("pattern {name} ch{} -> ch{}{when}", o.channel, p.channel));
                } else {
                    out.push(format!("pattern {name} changed{when}"));
                }
            }
            _ => {}
        }
    }
    for name in old.patterns.keys() {
        if !new.patterns.contains_key(name) {
            out.push(format!("pattern {name} removed{when}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rig::set::SyncMode;

    /// Regression (issue 13, item 11): a reload from `clock("link", 4)` to
    /// `clock("link", 3)` said "sync link -> link".
    #[test]
    fn a_quantum_change_is_named() {
        let old = Set { sync: SyncMode::Link { quantum: 4.0 }, ..Set::default() };
        let new = Set { sync: SyncMode::Link { quantum: 3.0 }, ..Set::default() };
        assert_eq!(diff(&old, &new, None), ["sync link (quantum 4) -> link (quantum 3)"]);
        let internal = Set::default();
        assert_eq!(diff(&internal, &new, None), ["sync internal -> link (quantum 3)"]);
    }
}
