//! The set language's SoundFont and sample functions: `soundfont`, `sf`, `sample`,
//! `samples` and `sample_instrument`, and the channel settings that pick a font's
//! preset. Files load here, on the control thread, through the host's cache; every
//! failure is a located error naming what is nearest to what was asked.
//! Control thread (during evaluation).

use super::api::{EvalState, Res, Shared, fail, fail_at, lit, lock, number, text};
use super::diagnostic::{did_you_mean, suggest_many};
use super::library::drum_key;
use crate::engine::DEFAULT_VOICE_LIMIT;
use crate::params::{ParamValues, fmt_num};
use crate::rig::set::{ChannelKind, ChannelSpec, FontSpec, SampleUse, UserSample};
use crate::samples::Shared as Same;
use crate::theory::parse_note;
use rhai::{Dynamic, Engine, Map};
use std::path::Path;

/// Map keys that choose a SoundFont preset.
pub const FONT_KEYS: &[&str] = &["soundfont", "preset", "bank", "program"];

/// A SoundFont channel's volume unless the set says otherwise: (100/127)^2, what
/// General MIDI's default CC7 of 100 gives.
pub const GM_VOLUME: f32 = 0.62;

pub const FUNCTIONS: &[&str] = &["soundfont", "sf", "sample", "samples", "sample_instrument"];

pub fn usage(name: &str) -> Option<&'static str> {
    Some(match name {
        "soundfont" => "soundfont(\"name\", \"file.sf2\")",
        "sf" => "sf(\"font\", \"preset name\") or sf(\"font\", bank, program)",
        "sample" => "sample(\"name\", \"file.wav\"[, #{ note: 36 }])",
        "samples" => "samples(\"name\", \"folder\")",
        "sample_instrument" => {
            "sample_instrument(\"name\", \"file.wav\", #{ root: \"C4\", lo: \"C1\", hi: \"C7\", loop_start: 0, loop_end: 1000 })"
        }
        _ => return None,
    })
}

/// A whole number in `lo..=hi` or a note name.
fn key(v: &Dynamic, what: &str) -> Res<u8> {
    if let Ok(n) = number(v, what) {
        if n.fract() != 0.0 || !(0.0..=127.0).contains(&n) {
            return fail_at(format!("{what} {} is outside the MIDI notes 0..127", fmt_num(n as f32)), &lit(v), None);
        }
        return Ok(n as u8);
    }
    let s = text(v, what)?;
    parse_note(&s).ok_or(()).or_else(|_| fail_at(format!("\"{s}\" is not a note name (like C4, F#2 or Eb3)"), &s, None))
}

/// A path the set may read: resolved against its folder and checked to lie within
/// the allowed roots.
fn resolve(st: &EvalState, path: &str) -> Res<std::path::PathBuf> {
    st.roots.resolve(path).or_else(|msg| fail_at(msg, path, None))
}

/// A channel spec playing a font preset chosen by a map's keys (`soundfont` and
/// `preset`, or `bank` and `program`). `kit_default`: a drum channel, whose default
/// is the font's first kit.
pub fn font_channel(st: &EvalState, map: &Map, kit_default: bool) -> Res<ChannelSpec> {
    let font = text(map.get("soundfont").unwrap_or(&Dynamic::UNIT), "soundfont")?;
    let Some(spec) = st.set.fonts.get(&font) else {
        let help = did_you_mean(&suggest_many(&font, st.set.fonts.keys().map(String::as_str)))
            .or_else(|| Some(format!("register it first: soundfont(\"{font}\", \"FILE.sf2\")")));
        return fail_at(format!("no SoundFont is registered as \"{font}\""), &font, help);
    };
    let bank = &spec.bank.0;
    let index = if let Some(p) = map.get("preset") {
        let name = text(p, "preset")?;
        match bank.find_name(&name) {
            Some(i) => i,
            None => {
                let help = did_you_mean(&nearest_presets(&name, bank.presets.iter().map(|p| p.name.as_str())));
                return fail_at(format!("the SoundFont \"{font}\" has no preset \"{name}\""), &name, help);
            }
        }
    } else {
        let b = match map.get("bank") {
            Some(v) => number(v, "bank")?,
            None if kit_default => 128.0,
            None => 0.0,
        };
        let prog = match map.get("program") {
            Some(v) => number(v, "program")?,
            None => 0.0,
        };
        if !(0.0..=16383.0).contains(&b) || b.fract() != 0.0 || !(0.0..=127.0).contains(&prog) || prog.fract() != 0.0 {
            return fail(format!("bank {} program {} is not a preset number (bank 0..16383, program 0..127)", b, prog));
        }
        match bank.find(b as u16, prog as u8) {
            Some(i) => i,
            None => {
                let near: Vec<String> = bank
                    .presets
                    .iter()
                    .filter(|p| p.bank == b as u16 || p.program == prog as u8)
                    .take(6)
                    .map(|p| format!("{}:{} {}", p.bank, p.program, p.name))
                    .collect();
                let help = (!near.is_empty()).then(|| format!("it has {}", near.join(", ")));
                return fail_at(
                    format!("the SoundFont \"{font}\" has no preset at bank {} program {}", b, prog),
                    &font,
                    help,
                );
            }
        }
    };
    let preset = &bank.presets[index as usize];
    let mut params = ParamValues::default();
    // General MIDI's initial channel volume (CC7 at 100, through the square law).
    params.set(crate::params::Param::Volume, GM_VOLUME);
    Ok(ChannelSpec {
        instrument: format!("{font}: {}", preset.name),
        kind: ChannelKind::Sampled { font, preset: index, kit: preset.bank == 128 },
        params,
        voices: crate::engine::MAX_VOICE_LIMIT,
    })
}

/// Up to three preset names nearest to `name`: close in spelling, else sharing a
/// word with it ("Grand Piano" finds "Piano 1").
fn nearest_presets<'a>(name: &str, names: impl Iterator<Item = &'a str> + Clone) -> Vec<&'a str> {
    let close = suggest_many(name, names.clone());
    if !close.is_empty() {
        return close;
    }
    let words: Vec<String> =
        name.split(|c: char| !c.is_alphanumeric()).filter(|w| w.len() >= 3).map(str::to_lowercase).collect();
    let mut shared: Vec<&str> =
        names.filter(|n| n.split(|c: char| !c.is_alphanumeric()).any(|w| words.contains(&w.to_lowercase()))).collect();
    let lower = name.to_lowercase();
    let score = |n: &str| strsim::jaro_winkler(&lower, &n.to_lowercase());
    shared.sort_by(|a, b| score(b).total_cmp(&score(a)));
    shared.dedup();
    shared.truncate(3);
    shared
}

/// A channel spec for one of the set's sample instruments, if `name` is one.
pub fn sample_channel(st: &EvalState, name: &str) -> Option<ChannelSpec> {
    st.set.samples.iter().any(|s| s.name == name && matches!(s.use_, SampleUse::Instrument { .. })).then(|| {
        let mut params = ParamValues::default();
        params.set(crate::params::Param::Release, 0.3);
        ChannelSpec {
            instrument: name.to_string(),
            kind: ChannelKind::SampleInstrument { name: name.to_string() },
            params,
            voices: DEFAULT_VOICE_LIMIT,
        }
    })
}

/// A note for a new drum sound: the one asked for, else the highest note no drum
/// sound uses.
fn drum_note(st: &EvalState, asked: Option<&Dynamic>, name: &str) -> Res<u8> {
    if let Some(v) = asked {
        return key(v, "note");
    }
    if let Some(&n) = st.lib.drum_sounds.get(&drum_key(name)) {
        return Ok(n);
    }
    let used: Vec<u8> = st.lib.drum_sounds.values().copied().collect();
    match (0..=127u8).rev().find(|n| !used.contains(n)) {
        Some(n) => Ok(n),
        None => fail(format!("every MIDI note has a drum sound; give sample \"{name}\" a note: #{{ note: 36 }}")),
    }
}

fn add_drum_sample(st: &mut EvalState, name: &str, path: &str, note: Option<&Dynamic>) -> Res<()> {
    let file = resolve(st, path)?;
    let audio = st.library.sample(&file).or_else(|msg| fail_at(msg, path, None))?;
    let note = drum_note(st, note, name)?;
    st.lib.drum_sounds.insert(drum_key(name), note);
    st.set.samples.retain(|s| s.name != name);
    st.set.samples.push(UserSample {
        name: name.into(),
        path: file,
        audio: Same(audio),
        use_: SampleUse::Drum { note },
    });
    Ok(())
}

pub fn register(engine: &mut Engine, state: &Shared) {
    let s = state.clone();
    engine.register_fn("soundfont", move |name: Dynamic, path: Dynamic| -> Res<()> {
        let name = text(&name, "a SoundFont name")?;
        let path = text(&path, "a SoundFont file")?;
        let mut st = lock(&s);
        // A bare file name not in the set's folder may be a system SoundFont.
        let system = (!path.contains('/'))
            .then(|| crate::samples::GM_FONT_FOLDERS.iter().map(|d| Path::new(d).join(&path)).find(|p| p.is_file()))
            .flatten();
        let file = match (resolve(&st, &path), system) {
            (Ok(f), _) => f,
            (Err(_), Some(f)) => f,
            (Err(e), None) => return Err(e),
        };
        let bank = st.library.font(&file).or_else(|msg| fail_at(msg, &path, None))?;
        st.set.fonts.insert(name, FontSpec { path: file, bank: Same(bank) });
        Ok(())
    });
    engine.register_fn("sf", |font: Dynamic, preset: Dynamic| -> Res<Map> {
        let mut m = Map::new();
        m.insert("soundfont".into(), Dynamic::from(text(&font, "a SoundFont name")?));
        m.insert("preset".into(), Dynamic::from(text(&preset, "a preset name")?));
        Ok(m)
    });
    engine.register_fn("sf", |font: Dynamic, bank: Dynamic, program: Dynamic| -> Res<Map> {
        let mut m = Map::new();
        m.insert("soundfont".into(), Dynamic::from(text(&font, "a SoundFont name")?));
        m.insert("bank".into(), bank);
        m.insert("program".into(), program);
        Ok(m)
    });
    let s = state.clone();
    engine.register_fn("sample", move |name: Dynamic, path: Dynamic| -> Res<()> {
        let (name, path) = (text(&name, "a sample name")?, text(&path, "a sample file")?);
        add_drum_sample(&mut lock(&s), &name, &path, None)
    });
    let s = state.clone();
    engine.register_fn("sample", move |name: Dynamic, path: Dynamic, opts: Map| -> Res<()> {
        let (name, path) = (text(&name, "a sample name")?, text(&path, "a sample file")?);
        for k in opts.keys() {
            if k.as_str() != "note" {
                return fail_at(format!("sample takes the option note, not {k}"), k, None);
            }
        }
        add_drum_sample(&mut lock(&s), &name, &path, opts.get("note"))
    });
    let s = state.clone();
    engine.register_fn("samples", move |name: Dynamic, folder: Dynamic| -> Res<()> {
        let (name, folder) = (text(&name, "a bank name")?, text(&folder, "a folder")?);
        let mut st = lock(&s);
        let dir = resolve(&st, &folder)?;
        let files = crate::samples::folder_samples(&dir).or_else(|msg| fail_at(msg, &folder, None))?;
        if files.is_empty() {
            return fail_at(format!("the folder {folder} holds no samples (WAV, FLAC, Ogg or MP3)"), &folder, None);
        }
        st.set.sample_folders.push(dir);
        for (i, f) in files.iter().enumerate() {
            let shown = f.display().to_string();
            let numbered = format!("{name}:{i}");
            add_drum_sample(&mut st, &numbered, &shown, None)?;
            if i == 0 {
                let note = st.lib.drum_sounds[&drum_key(&numbered)];
                st.lib.drum_sounds.insert(drum_key(&name), note);
            }
        }
        Ok(())
    });
    let s = state.clone();
    engine.register_fn("sample_instrument", move |name: Dynamic, path: Dynamic, opts: Map| -> Res<()> {
        let (name, path) = (text(&name, "an instrument name")?, text(&path, "a sample file")?);
        let mut st = lock(&s);
        let file = resolve(&st, &path)?;
        let audio = st.library.sample(&file).or_else(|msg| fail_at(msg, &path, None))?;
        let (mut lo, mut hi, mut root) = (0u8, 127u8, 60u8);
        let (mut loop_start, mut loop_end) = (None, None);
        for (k, v) in &opts {
            match k.as_str() {
                "root" => root = key(v, "root")?,
                "lo" => lo = key(v, "lo")?,
                "hi" => hi = key(v, "hi")?,
                "loop_start" => loop_start = Some(number(v, "loop_start")?),
                "loop_end" => loop_end = Some(number(v, "loop_end")?),
                other => {
                    let keys = ["root", "lo", "hi", "loop_start", "loop_end"];
                    let help = did_you_mean(&suggest_many(other, keys));
                    return fail_at(
                        format!("sample_instrument takes root, lo, hi, loop_start and loop_end, not {other}"),
                        other,
                        help,
                    );
                }
            }
        }
        let frames = audio.frames() as f64;
        let loop_frames = match (loop_start, loop_end) {
            (None, None) => None,
            (x, y) => {
                let (x, y) = (x.unwrap_or(0.0), y.unwrap_or(frames));
                if x < 0.0 || y <= x + 1.0 || y > frames || x.fract() != 0.0 || y.fract() != 0.0 {
                    return fail(format!(
                        "the loop {x}..{y} is not inside the sample ({frames} frames): give whole frames, start before end"
                    ));
                }
                Some((x as u32, y as u32))
            }
        };
        if lo > hi {
            return fail("lo must be at or below hi");
        }
        st.set.samples.retain(|x| x.name != name);
        st.set.samples.push(UserSample {
            name,
            path: file,
            audio: Same(audio),
            use_: SampleUse::Instrument { lo, hi, root, loop_frames },
        });
        Ok(())
    });
}
