//! The events a set's patterns play in its first bars: as JSON lines (`jamrig check
//! --events`), as a readable table (`--format text`), and as a grid of one line per
//! bar for one pattern (the REPL's `:events`). Control thread.

use super::set::Set;
use crate::script::library::Library;
use crate::theory::note_name;
use serde::Serialize;

/// Most bars `check --events` and `:events` list.
pub const MAX_BARS: f64 = 10_000.0;
/// Finest grid `:events` draws, in steps per bar.
pub const MAX_GRID_STEPS: usize = 96;

/// One note a pattern plays, with exactly the keys `check --events` prints.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PatternEvent {
    pub pattern: String,
    /// 1 to 16.
    pub channel: u8,
    /// Beats from the start.
    pub beat: f64,
    pub note: u8,
    pub velocity: u8,
    /// In beats.
    pub length: f64,
}

/// Every event the set's patterns (or the one named `only`) start in the first
/// `bars` bars, sorted by time (then channel, pattern and note).
pub fn events(set: &Set, bars: f64, only: Option<&str>) -> Vec<PatternEvent> {
    let end = bars * set.beats_per_bar;
    let mut out = Vec::new();
    for p in set.patterns.values().filter(|p| only.is_none_or(|n| n == p.name)) {
        if p.length_beats <= 0.0 || p.hits.is_empty() {
            continue;
        }
        let mut k = 0u64;
        while (k as f64) * p.length_beats < end {
            let base = k as f64 * p.length_beats;
            for h in &p.hits {
                let beat = base + h.beat;
                if beat < end {
                    out.push(PatternEvent {
                        pattern: p.name.clone(),
                        channel: p.channel,
                        beat,
                        note: h.note,
                        velocity: h.velocity,
                        length: h.length,
                    });
                }
            }
            k += 1;
        }
    }
    out.sort_by(|a, b| {
        a.beat
            .total_cmp(&b.beat)
            .then(a.channel.cmp(&b.channel))
            .then(a.pattern.cmp(&b.pattern))
            .then(a.note.cmp(&b.note))
    });
    out
}

/// One JSON object per line.
pub fn json_lines(events: &[PatternEvent]) -> String {
    let mut s = String::new();
    for e in events {
        s.push_str(&serde_json::to_string(e).unwrap_or_default());
        s.push('\n');
    }
    s
}

fn sound_name(lib: &Library, drums: bool, note: u8) -> String {
    if drums {
        lib.drum_name(note).map(str::to_string).unwrap_or_else(|| format!("note {note}"))
    } else {
        note_name(note)
    }
}

/// A readable table: bar and beat, pattern, channel, note (with its name), velocity
/// and length.
pub fn table(set: &Set, lib: &Library, events: &[PatternEvent]) -> String {
    let mut s = format!(
        "{:>5} {:>9}  {:<12} {:>2}  {:<16} {:>3}  {}\n",
        "bar", "beat", "pattern", "ch", "note", "vel", "length"
    );
    for e in events {
        let drums = set.channels.get(&e.channel).is_some_and(|c| c.is_drums());
        let bar = bar_pos(e.beat, set.beats_per_bar).0 + 1;
        let note = format!("{} {}", e.note, sound_name(lib, drums, e.note));
        s.push_str(&format!(
            "{bar:>5} {:>9}  {:<12} {:>2}  {:<16} {:>3}  {}\n",
            fmt_beat(e.beat),
            e.pattern,
            e.channel,
            note,
            e.velocity,
            fmt_beat(e.length)
        ));
    }
    s
}

/// The bar (from 0) a beat is in and its position in the bar (0..1), robust to the
/// rounding of beats that are not binary fractions.
fn bar_pos(beat: f64, bpb: f64) -> (u64, f64) {
    let x = beat / bpb;
    let bar = (x + 1e-9).floor().max(0.0);
    (bar as u64, (x - bar).max(0.0))
}

fn fmt_beat(b: f64) -> String {
    let s = format!("{b:.4}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// The smallest number of steps a bar needs for every onset in `positions` (as
/// fractions of a bar) to fall on a step; None if none up to [`MAX_GRID_STEPS`].
fn grid_steps(positions: &[f64]) -> Option<usize> {
    (1..=MAX_GRID_STEPS).find(|n| positions.iter().all(|p| ((p * *n as f64) - (p * *n as f64).round()).abs() < 1e-6))
}

/// Pattern `name`'s events over `bars` bars (its own length if None, up to 8) as a
/// grid: one line per bar, a column of steps per sound, `x` where a note starts.
pub fn grid(set: &Set, lib: &Library, name: &str, bars: Option<f64>) -> Result<String, String> {
    let Some(p) = set.patterns.get(name) else {
        let names: Vec<&str> = set.patterns.keys().map(String::as_str).collect();
        let have = if names.is_empty() {
            "the set has no patterns".to_string()
        } else {
            format!("patterns: {}", names.join(", "))
        };
        return Err(format!("no pattern named {name} ({have})"));
    };
    let bpb = set.beats_per_bar;
    let bars = match bars {
        Some(b) if (1.0..=MAX_BARS).contains(&b) && b.fract() == 0.0 => b,
        Some(_) => return Err(format!("the number of bars is a whole number from 1 to {MAX_BARS}")),
        None => (p.length_beats / bpb).ceil().clamp(1.0, 8.0),
    };
    let evs = events(set, bars, Some(name));
    let drums = set.channels.get(&p.channel).is_some_and(|c| c.is_drums());
    let positions: Vec<f64> = evs.iter().map(|e| bar_pos(e.beat, bpb).1).collect();
    let (steps, rounded) = match grid_steps(&positions) {
        Some(n) => (n, false),
        None => (MAX_GRID_STEPS, true),
    };
    let mut sounds: Vec<u8> = evs.iter().map(|e| e.note).collect();
    sounds.sort_unstable();
    sounds.dedup();
    if !drums {
        sounds.reverse();
    }
    let names: Vec<String> = sounds.iter().map(|n| sound_name(lib, drums, *n)).collect();
    let width = names.iter().map(|n| n.chars().count()).max().unwrap_or(0).max(steps);
    let mut s = format!(
        "{name} on channel {}: {} bar{} of {} beats, {steps} step{} a bar{}\n",
        p.channel,
        bars,
        if bars == 1.0 { "" } else { "s" },
        crate::params::fmt_num(bpb as f32),
        if steps == 1 { "" } else { "s" },
        if rounded { " (onsets rounded to the nearest step)" } else { "" }
    );
    let mut header = String::from("       ");
    for n in &names {
        header.push_str(&format!("  {n:<width$}"));
    }
    s.push_str(header.trim_end());
    s.push('\n');
    for bar in 0..bars as u64 {
        let mut line = format!("bar {:<3}", bar + 1);
        for note in &sounds {
            let mut cells = vec!['.'; steps];
            for e in evs.iter().filter(|e| e.note == *note && bar_pos(e.beat, bpb).0 == bar) {
                let i = ((bar_pos(e.beat, bpb).1 * steps as f64).round() as usize).min(steps - 1);
                cells[i] = 'x';
            }
            let cells: String = cells.into_iter().collect();
            line.push_str(&format!("  {cells:<width$}"));
        }
        s.push_str(line.trim_end());
        s.push('\n');
    }
    if evs.is_empty() {
        s.push_str("(no events)\n");
    }
    Ok(s)
}
