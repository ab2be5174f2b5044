//! Loudness of the library and of sets (ITU-R BS.1770 / EBU R128, through the
//! `ebur128` crate), measured on offline renders on the caller's thread: every
//! instrument preset at its reference note and across its range, the drum kit
//! playing a pattern, and each channel of a set alone. `jamrig levels` prints it;
//! the tests hold the library to its target with it.

use super::render::Renderer;
use crate::engine::event::{Event, EventKind};
use crate::engine::synth::{SYNTHS, synth_index};
use crate::rig::set::Set;
use crate::script::ScriptHost;
use crate::script::library::Library;
use crate::tables::Tables;
use anyhow::{Context, Result, anyhow};
use ebur128::{EbuR128, Mode};
use std::sync::Arc;

/// The level every instrument preset is matched to: momentary (400 ms) maximum
/// loudness of one note at its reference note, velocity 100, held
/// [`NOTE_SECONDS`], on a channel at the default volume, in LUFS. The drum kit
/// playing [`KIT_PATTERN`] is matched to the same level.
pub const TARGET_LUFS: f64 = -20.0;
/// The reference note of a preset: C4, or the nearest note of its synth's range.
pub const REFERENCE_NOTE: u8 = 60;
/// Velocity of the measured notes.
pub const VELOCITY: u8 = 100;
/// How long a measured note is held, and how long its tail is measured after.
pub const NOTE_SECONDS: f64 = 1.0;
const TAIL_SECONDS: f64 = 0.5;
/// The kit's reference: this pattern, two bars at 120 BPM.
pub const KIT_PATTERN: &str = "rock";
/// Bars of an example set rendered per channel.
pub const SET_BARS: f64 = 8.0;
/// Step of the momentary-loudness readings (the meter's window is 400 ms).
const STEP_SECONDS: f64 = 0.02;
const LEAD_IN_SECONDS: f64 = 0.01;

/// Loudness of a stereo render.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Loudness {
    /// Largest momentary (400 ms) loudness, LUFS.
    pub momentary_max: f64,
    /// Integrated (gated) loudness, LUFS.
    pub integrated: f64,
}

/// Measures interleaved stereo `x` at `sample_rate`. Silence reads as -inf LUFS.
pub fn loudness(x: &[f32], sample_rate: u32) -> Loudness {
    let mut meter = EbuR128::new(2, sample_rate, Mode::M | Mode::I).expect("the meter supports stereo at audio rates");
    let step = ((STEP_SECONDS * sample_rate as f64) as usize).max(1) * 2;
    let mut momentary_max = f64::NEG_INFINITY;
    for chunk in x.chunks(step) {
        meter.add_frames_f32(chunk).expect("whole frames");
        if let Ok(m) = meter.loudness_momentary() {
            momentary_max = momentary_max.max(m);
        }
    }
    let integrated = meter.loudness_global().unwrap_or(f64::NEG_INFINITY);
    Loudness { momentary_max, integrated }
}

/// The notes a preset of synth range `range` is measured at: its reference note,
/// the octaves around it and the ends of the range, in rising order.
pub fn range_notes(range: (u8, u8)) -> Vec<u8> {
    let (lo, hi) = range;
    let reference = REFERENCE_NOTE.clamp(lo, hi) as i32;
    let mut notes = vec![lo, hi];
    let mut n = reference;
    while n >= lo as i32 {
        notes.push(n as u8);
        n -= 12;
    }
    let mut n = reference + 12;
    while n <= hi as i32 {
        notes.push(n as u8);
        n += 12;
    }
    notes.sort();
    notes.dedup();
    notes
}

/// The useful range of instrument preset `name`: the range the preset names, else
/// its synth's.
pub fn preset_range(lib: &Library, name: &str) -> (u8, u8) {
    if let Some(&r) = lib.ranges.get(name) {
        return r;
    }
    lib.instruments.get(name).and_then(|d| synth_index(&d.synth)).map_or((24, 108), |i| SYNTHS[i].range)
}

/// A set with channel 1 playing instrument `name` at its defaults.
pub fn preset_set(host: &ScriptHost, name: &str) -> Result<Set> {
    let text = format!("channel(1, \"{name}\");");
    host.eval_source("levels", &text, None, Set::default(), false)
        .map(|ev| ev.set)
        .map_err(|d| anyhow!("{}", d.render()))
}

/// Renders one note of channel 1 of `set`: held [`NOTE_SECONDS`], then its tail.
pub fn render_note(set: &Set, tables: &Arc<Tables>, note: u8, velocity: u8) -> Result<Vec<f32>> {
    let sr = tables.sample_rate as u32;
    let mut r = Renderer::with_tables(set, tables.clone()).context("the set builds")?;
    let on = (LEAD_IN_SECONDS * sr as f64) as u64;
    let off = on + (NOTE_SECONDS * sr as f64) as u64;
    r.add_events([
        Event::new(on, EventKind::NoteOn { channel: 0, note, velocity }),
        Event::new(off, EventKind::NoteOff { channel: 0, note }),
    ]);
    let frames = ((LEAD_IN_SECONDS + NOTE_SECONDS + TAIL_SECONDS) * sr as f64) as usize;
    Ok(r.render(frames, 512))
}

/// One preset's levels.
#[derive(Clone, Debug)]
pub struct PresetLevel {
    pub name: String,
    pub reference_note: u8,
    /// Momentary maximum at the reference note, LUFS.
    pub reference_lufs: f64,
    /// (note, momentary maximum in LUFS) across the range.
    pub range: Vec<(u8, f64)>,
}

impl PresetLevel {
    /// Largest departure (LU) of any note of the range from the reference note.
    pub fn range_spread(&self) -> f64 {
        self.range.iter().map(|(_, l)| (l - self.reference_lufs).abs()).fold(0.0, f64::max)
    }
}

/// Measures preset `name` at its reference note and, with `across`, across its range.
pub fn preset_level(host: &ScriptHost, tables: &Arc<Tables>, name: &str, across: bool) -> Result<PresetLevel> {
    let set = preset_set(host, name)?;
    let range = preset_range(host.library(), name);
    let reference_note = REFERENCE_NOTE.clamp(range.0, range.1);
    let sr = tables.sample_rate as u32;
    let measure =
        |note: u8| -> Result<f64> { Ok(loudness(&render_note(&set, tables, note, VELOCITY)?, sr).momentary_max) };
    let reference_lufs = measure(reference_note)?;
    let mut levels = Vec::new();
    if across {
        for note in range_notes(range) {
            let l = if note == reference_note { reference_lufs } else { measure(note)? };
            levels.push((note, l));
        }
    }
    Ok(PresetLevel { name: name.to_string(), reference_note, reference_lufs, range: levels })
}

/// The drum kit's loudness: [`KIT_PATTERN`] on a drum channel at the default
/// volume, two bars at 120 BPM, momentary maximum in LUFS.
pub fn kit_level(host: &ScriptHost, tables: &Arc<Tables>) -> Result<f64> {
    let text = format!("drums(10); pattern(\"beat\", 10, \"{KIT_PATTERN}\");");
    let set = host.eval_source("levels", &text, None, Set::default(), false).map_err(|d| anyhow!("{}", d.render()))?;
    let sr = tables.sample_rate as u32;
    let mut r = Renderer::with_tables(&set.set, tables.clone()).context("the set builds")?;
    let out = r.render((4.0 * sr as f64) as usize, 512);
    Ok(loudness(&out, sr).momentary_max)
}

/// Each channel of `set` alone (the others and their patterns removed), rendered
/// for `bars` bars: (channel, instrument, loudness).
pub fn channel_levels(set: &Set, tables: &Arc<Tables>, bars: f64) -> Result<Vec<(u8, String, Loudness)>> {
    let sr = tables.sample_rate as u32;
    let frames = (bars * set.beats_per_bar * 60.0 / set.tempo_bpm * sr as f64) as usize;
    let mut rows = Vec::new();
    for (&ch, spec) in &set.channels {
        let mut solo = set.clone();
        solo.channels.retain(|&c, _| c == ch);
        solo.patterns.retain(|_, p| p.channel == ch);
        let mut r = Renderer::with_tables(&solo, tables.clone()).context("the set builds")?;
        let out = r.render(frames, 512);
        rows.push((ch, spec.instrument.clone(), loudness(&out, sr)));
    }
    Ok(rows)
}

/// `jamrig levels`: with no sets, every instrument preset (and with `range`, across
/// its range) and the drum kit against [`TARGET_LUFS`]; otherwise each channel of
/// each set alone.
pub fn report(sets: &[std::path::PathBuf], range: bool) -> Result<String> {
    use std::fmt::Write;
    let host = ScriptHost::new().map_err(|d| anyhow!("{}", d.render()))?;
    let tables = Arc::new(Tables::new(48_000.0));
    let mut out = String::new();
    if sets.is_empty() {
        let lib = host.library();
        let mut names: Vec<&String> = lib.instruments.keys().collect();
        names.sort();
        let _ = writeln!(
            out,
            "preset loudness: momentary max, one note at velocity {VELOCITY} held {NOTE_SECONDS} s, \
             default volume; target {TARGET_LUFS} LUFS"
        );
        let _ = writeln!(out, "{:22} {:>5} {:>7} {:>6} {:>7}", "preset", "note", "LUFS", "dev", "range");
        let mut devs = Vec::new();
        for name in names {
            let p = preset_level(&host, &tables, name, range)?;
            let dev = p.reference_lufs - TARGET_LUFS;
            devs.push(p.reference_lufs);
            let spread = if range { format!("{:7.1}", p.range_spread()) } else { String::new() };
            let _ = writeln!(
                out,
                "{:22} {:>5} {:7.1} {:+6.1} {spread}",
                p.name,
                crate::theory::note_name(p.reference_note),
                p.reference_lufs,
                dev
            );
            if range {
                let row: Vec<String> = p.range.iter().map(|(n, l)| format!("{} {:+.1}", n, l - TARGET_LUFS)).collect();
                let _ = writeln!(out, "{:22}   {}", "", row.join(", "));
            }
        }
        let kit = kit_level(&host, &tables)?;
        let _ = writeln!(out, "{:22} {:>5} {:7.1} {:+6.1}", "drum kit", KIT_PATTERN, kit, kit - TARGET_LUFS);
        let lo = devs.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = devs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let _ = writeln!(out, "presets span {:.1} LU (median {:.1} LUFS)", hi - lo, median(&devs));
        return Ok(out);
    }
    for path in sets {
        let ev = host.eval_file(path).map_err(|d| anyhow!("{}", d.render()))?;
        let set = super::render::offline_view(&ev.set);
        let _ = writeln!(out, "{}: each channel alone, {SET_BARS} bars", path.display());
        let rows = channel_levels(&set, &tables, SET_BARS)?;
        let loudest = rows.iter().map(|r| r.2.integrated).fold(f64::NEG_INFINITY, f64::max);
        for (ch, inst, l) in rows {
            let _ = writeln!(
                out,
                "  channel {ch:2} {inst:18} integrated {:6.1} LUFS ({:+5.1} LU from the loudest), momentary max {:6.1}",
                l.integrated,
                l.integrated - loudest,
                l.momentary_max
            );
        }
    }
    Ok(out)
}

/// The median of `values` (0 for none).
pub fn median(values: &[f64]) -> f64 {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 { v[m] } else { 0.5 * (v[m - 1] + v[m]) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_scale_1k_sine_reads_about_minus_3_lufs() {
        // BS.1770: a 0 dBFS 997 Hz sine in both channels reads +0.0 LUFS per channel
        // pair minus 3 dB for a one-channel sine; both channels: about 0 LUFS.
        let sr = 48_000;
        let x: Vec<f32> = (0..sr * 2)
            .flat_map(|i| {
                let v = (std::f64::consts::TAU * 997.0 * i as f64 / sr as f64).sin() as f32;
                [v, v]
            })
            .collect();
        let l = loudness(&x, sr as u32);
        assert!((l.integrated - 0.0).abs() < 0.2, "{l:?}");
        assert!((l.momentary_max - l.integrated).abs() < 0.2, "{l:?}");
    }

    #[test]
    fn range_notes_cover_the_ends_and_the_octaves() {
        assert_eq!(range_notes((28, 67)), vec![28, 36, 48, 60, 67]);
        assert_eq!(range_notes((72, 108)), vec![72, 84, 96, 108]);
    }
}
