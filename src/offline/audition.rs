//! `jamrig audition`: one preset of the library, heard alone. An instrument plays a
//! note held for a second, then released and left to ring out; a drum sound plays
//! one hit; a pattern or fill plays two bars at the default tempo. The sound is
//! rendered offline (to a WAV, or into memory and then played on the audio device).

use super::render::Renderer;
use crate::engine::event::{Event, EventKind};
use crate::engine::synth::SYNTHS;
use crate::rig::set::{HitSpec, PatternSpec, Set};
use crate::script::ScriptHost;
use crate::script::diagnostic::{did_you_mean, suggest_many};
use crate::script::library::{Library, PatternDef, drum_key};
use anyhow::{Result, bail};
use std::fmt::Write;

/// How long an instrument's note is held.
pub const HOLD_SECONDS: f64 = 1.0;
/// The longest ring-out after the note-off (a cathedral reverb or a 30 s release
/// is cut here).
pub const MAX_TAIL_SECONDS: f64 = 30.0;
/// The ring-out ends once the output stays below this level (-90 dBFS)...
const SILENCE: f32 = 3.2e-5;
/// ...for this long.
const SILENT_FOR_SECONDS: f64 = 0.25;
/// Bars of a pattern or fill played (whole repeats of it, at least one).
pub const PATTERN_BARS: f64 = 2.0;
/// Time left after a pattern's last repeat for its hits to ring.
const PATTERN_TAIL_SECONDS: f64 = 1.5;
/// The drum channel used for drum sounds, patterns and fills.
const DRUMS: u8 = 10;
/// Starting offset of the first note (so the attack is not at frame 0).
const LEAD_IN_SECONDS: f64 = 0.01;

/// What to audition.
#[derive(Clone, Debug, PartialEq)]
pub enum Item {
    /// An instrument preset or a bare synth.
    Instrument(String),
    /// A drum sound: its name and GM note.
    Drum(String, u8),
    Pattern(String),
    Fill(String),
}

impl Item {
    pub fn name(&self) -> &str {
        match self {
            Item::Instrument(n) | Item::Drum(n, _) | Item::Pattern(n) | Item::Fill(n) => n,
        }
    }

    /// What kind of preset it is, for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Item::Instrument(_) => "instrument",
            Item::Drum(..) => "drum sound",
            Item::Pattern(_) => "pattern",
            Item::Fill(_) => "fill",
        }
    }
}

/// What a name given to `audition` is looked up as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// An instrument, synth or drum sound.
    Sound,
    /// A pattern, or a fill when no pattern has the name.
    Pattern,
    /// A fill (where a pattern and a fill share a name).
    Fill,
}

/// Finds `name` in the library as `kind` says: instruments and synths, then drum
/// sounds; patterns, then fills; or fills. Unknown names get the nearest ones.
pub fn resolve(lib: &Library, name: &str, kind: Kind) -> Result<Item> {
    // Spaces, dashes and underscores are the same ("bossa_nova" is "bossa nova").
    let key = drum_key(name);
    fn same<'a>(mut names: impl Iterator<Item = &'a String>, key: &str) -> Option<String> {
        names.find(|n| drum_key(n) == key).cloned()
    }
    if kind == Kind::Fill {
        if let Some(n) = same(lib.fills.keys(), &key) {
            return Ok(Item::Fill(n));
        }
        bail!("no fill named \"{name}\"{}", hint(name, lib.fills.keys().map(String::as_str)));
    }
    if kind == Kind::Pattern {
        if let Some(n) = same(lib.patterns.keys(), &key) {
            return Ok(Item::Pattern(n));
        }
        if let Some(n) = same(lib.fills.keys(), &key) {
            return Ok(Item::Fill(n));
        }
        let names = lib.patterns.keys().chain(lib.fills.keys()).map(String::as_str);
        bail!("no pattern or fill named \"{name}\"{}", hint(name, names));
    }
    if let Some(n) = same(lib.instruments.keys(), &key) {
        return Ok(Item::Instrument(n));
    }
    if let Some(s) = SYNTHS.iter().find(|s| s.name == key) {
        return Ok(Item::Instrument(s.name.to_string()));
    }
    if let Some(&note) = lib.drum_sounds.get(&drum_key(name)) {
        return Ok(Item::Drum(drum_key(name), note));
    }
    match (same(lib.patterns.keys(), &key).is_some(), same(lib.fills.keys(), &key).is_some()) {
        (true, true) => {
            bail!("\"{name}\" is a pattern and a fill: audition them with --pattern {name} and --fill {name}")
        }
        (true, false) => bail!("\"{name}\" is a pattern: audition it with --pattern {name}"),
        (false, true) => bail!("\"{name}\" is a fill: audition it with --fill {name}"),
        (false, false) => {}
    }
    let names = lib
        .instruments
        .keys()
        .map(String::as_str)
        .chain(SYNTHS.iter().map(|s| s.name))
        .chain(lib.drum_sounds.keys().map(String::as_str));
    bail!("no instrument or drum sound named \"{name}\"{}", hint(name, names))
}

fn hint<'a>(name: &str, names: impl Iterator<Item = &'a str>) -> String {
    let mut near = suggest_many(name, names);
    near.dedup();
    match did_you_mean(&near) {
        Some(h) => format!("; {h}"),
        None => "; `jamrig audition --list` lists them".to_string(),
    }
}

/// Every instrument, synth, drum sound, pattern and fill, one section each.
pub fn list(lib: &Library) -> String {
    let mut out = String::new();
    let mut section = |title: &str, names: Vec<String>| {
        let _ = writeln!(out, "{title} ({}):", names.len());
        let mut line = String::from(" ");
        for n in names {
            // Names with spaces in quotes, as they are typed.
            let n = if n.contains(' ') { format!("\"{n}\"") } else { n };
            if line.len() + n.len() + 1 > 78 {
                let _ = writeln!(out, "{line}");
                line = String::from(" ");
            }
            line.push(' ');
            line.push_str(&n);
        }
        let _ = writeln!(out, "{line}\n");
    };
    section("instruments", lib.instruments.keys().cloned().collect());
    section("synths", SYNTHS.iter().map(|s| s.name.to_string()).collect());
    let mut drums: Vec<(u8, &String)> = lib.drum_sounds.iter().map(|(n, &k)| (k, n)).collect();
    drums.sort();
    section("drum sounds (GM note)", drums.iter().map(|(k, n)| format!("{n}({k})")).collect());
    section("patterns", lib.patterns.keys().cloned().collect());
    section("fills", lib.fills.keys().cloned().collect());
    out
}

/// The set that plays `item`, and the events and length (seconds) of the audition,
/// or `None` for the length when it rings out until silent.
pub fn plan(host: &ScriptHost, item: &Item, note: u8, velocity: u8, sample_rate: u32) -> Result<Plan> {
    let lib = host.library();
    let frame = |s: f64| (s * sample_rate as f64).round() as u64;
    let start = frame(LEAD_IN_SECONDS);
    let (text, events, seconds) = match item {
        Item::Instrument(name) => {
            let text = format!("channel(1, \"{name}\");\n");
            let on = Event::new(start, EventKind::NoteOn { channel: 0, note, velocity });
            let off = Event::new(start + frame(HOLD_SECONDS), EventKind::NoteOff { channel: 0, note });
            (text, vec![on, off], None)
        }
        Item::Drum(_, drum) => {
            let on = Event::new(start, EventKind::NoteOn { channel: DRUMS - 1, note: *drum, velocity });
            (format!("drums({DRUMS});\n"), vec![on], None)
        }
        Item::Pattern(_) | Item::Fill(_) => (format!("drums({DRUMS});\n"), Vec::new(), Some(0.0)),
    };
    let mut set = host
        .eval_source("audition.rhai", &text, None, Default::default(), false)
        .map_err(|d| anyhow::anyhow!("{}", d.render()))?
        .set;
    let def = match item {
        Item::Pattern(name) => Some((name, &lib.patterns[name])),
        Item::Fill(name) => Some((name, &lib.fills[name])),
        _ => None,
    };
    let mut events = events;
    let seconds = match def {
        Some((name, def)) => {
            let play = add_pattern(&mut set, name, def);
            // The transport stops after two bars; the last hits ring on.
            events.push(Event::new(frame(play), EventKind::Stop));
            Some(play + PATTERN_TAIL_SECONDS)
        }
        None => seconds,
    };
    Ok(Plan { set, events, seconds, hold_frames: frame(LEAD_IN_SECONDS + HOLD_SECONDS) })
}

/// Beats in a bar of `def`'s meter ("12/8" is 6 quarter-note beats; 4 without one).
fn bar_beats(def: &PatternDef) -> f64 {
    let parsed = def.meter.as_deref().and_then(|m| {
        let (n, d) = m.split_once('/')?;
        Some(n.trim().parse::<f64>().ok()? * 4.0 / d.trim().parse::<f64>().ok()?)
    });
    parsed.filter(|b| *b > 0.0).unwrap_or(4.0)
}

/// How many times `def` repeats to fill [`PATTERN_BARS`] bars (at least once).
pub fn repeats(def: &PatternDef) -> usize {
    ((PATTERN_BARS * bar_beats(def) / def.beats) - 1e-9).ceil().max(1.0) as usize
}

/// Adds `def` on the drum channel; returns the length of its repeats in seconds.
fn add_pattern(set: &mut Set, name: &str, def: &PatternDef) -> f64 {
    let hits = def
        .hits
        .iter()
        .map(|h| HitSpec { beat: h.beat, note: h.note, velocity: h.velocity, length: h.length.unwrap_or(0.0) })
        .collect();
    set.patterns.insert(
        name.to_string(),
        PatternSpec {
            name: name.to_string(),
            channel: DRUMS,
            length_beats: def.beats,
            hits,
            preset: Some(name.to_string()),
        },
    );
    repeats(def) as f64 * def.beats * 60.0 / set.tempo_bpm
}

/// A planned audition.
pub struct Plan {
    pub set: Set,
    pub events: Vec<Event>,
    /// A fixed length, or `None`: until silent after the note.
    pub seconds: Option<f64>,
    /// Frames before the ring-out may end (the lead-in and the held note).
    pub hold_frames: u64,
}

/// Renders the plan: interleaved stereo at the tables' sample rate.
pub fn render(plan: &Plan, tables: std::sync::Arc<crate::tables::Tables>) -> Result<Vec<f32>> {
    let mut out = Vec::new();
    render_with(plan, tables, |x| {
        out.extend_from_slice(x);
        Ok(())
    })?;
    Ok(out)
}

/// Renders the plan into a WAV file (16-bit), streaming it; returns the frames.
pub fn write(plan: &Plan, tables: std::sync::Arc<crate::tables::Tables>, path: &std::path::Path) -> Result<u64> {
    let stop = super::job::interrupted();
    stop.store(false, std::sync::atomic::Ordering::Relaxed);
    let mut wav = super::wav::WavStream::create(path, tables.sample_rate as u32, super::wav::SampleFormat::S16)?;
    // Stopped by SIGINT or SIGTERM, the partial file is removed (`wav` is dropped).
    render_with(plan, tables, |x| {
        if stop.load(std::sync::atomic::Ordering::Relaxed) {
            anyhow::bail!("interrupted: nothing was written");
        }
        wav.write(x)
    })?;
    let frames = wav.frames();
    wav.finish()?;
    Ok(frames)
}

/// Renders the plan chunk by chunk into `sink` (interleaved stereo).
pub fn render_with(
    plan: &Plan,
    tables: std::sync::Arc<crate::tables::Tables>,
    mut sink: impl FnMut(&[f32]) -> Result<()>,
) -> Result<()> {
    let sample_rate = tables.sample_rate as u32;
    let mut r = Renderer::with_tables(&plan.set, tables)?;
    r.add_events(plan.events.iter().copied());
    let sr = sample_rate as f64;
    let chunk = (sr * 0.05) as usize;
    let mut part = vec![0.0f32; 2 * chunk];
    if let Some(s) = plan.seconds {
        let total = (s * sr).round() as usize;
        let mut done = 0;
        while done < total {
            let n = chunk.min(total - done);
            r.render_into(&mut part[..2 * n], super::render::DEFAULT_BLOCK);
            sink(&part[..2 * n])?;
            done += n;
        }
        return Ok(());
    }
    let max = plan.hold_frames as usize + (MAX_TAIL_SECONDS * sr) as usize;
    let (mut done, mut quiet) = (0usize, 0usize);
    while done < max {
        r.render_into(&mut part, super::render::DEFAULT_BLOCK);
        let loud = part.iter().any(|x| x.abs() > SILENCE);
        sink(&part)?;
        done += chunk;
        quiet = if loud { 0 } else { quiet + chunk };
        if done >= plan.hold_frames as usize + chunk && quiet as f64 >= SILENT_FOR_SECONDS * sr {
            break;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_resolve_to_their_kind() {
        let host = ScriptHost::new().expect("stdlib");
        let lib = host.library();
        assert_eq!(resolve(lib, "saw", Kind::Sound).unwrap(), Item::Instrument("saw".into()));
        assert!(matches!(resolve(lib, "kick", Kind::Sound).unwrap(), Item::Drum(_, 36)));
        assert_eq!(resolve(lib, "rock", Kind::Pattern).unwrap(), Item::Pattern("rock".into()));
        assert_eq!(resolve(lib, "bossa_nova", Kind::Pattern).unwrap(), Item::Pattern("bossa nova".into()));
        let e = resolve(lib, "sawz", Kind::Sound).unwrap_err().to_string();
        assert!(e.contains("saw"), "{e}");
        let e = resolve(lib, "rock", Kind::Sound).unwrap_err().to_string();
        assert!(e.contains("--pattern") && e.contains("--fill"), "{e}");
        assert_eq!(resolve(lib, "rock", Kind::Fill).unwrap(), Item::Fill("rock".into()));
        assert!(resolve(lib, "bebop", Kind::Fill).is_err(), "bebop is a pattern, not a fill");
    }
}
