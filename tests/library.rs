//! The sound library: every synth and every instrument preset, at C4 and at the
//! ends of its useful range. Pitched sources sound at their note (within 3 cents),
//! nothing is silent, no synth exceeds full scale or makes a NaN, and every note
//! dies away after its note-off (or by itself, for percussive sounds).
//!
//! `JAMRIG_SYNTH=name` limits the synth checks to synths whose name contains it.

mod common;

use jamrig::engine::synth::{OscState, SYNTHS, SynthCtx, line_len, synth_index};
use jamrig::params::{Param, ParamValues};
use jamrig::theory::note_hz;

const SR: u32 = 48_000;
/// The engine renders synths in ticks of this many frames.
const TICK: usize = 64;

/// Renders `seconds` of synth `name` playing `note` with `params`, straight from
/// the synth (no envelope, no bus).
fn synth_render(name: &str, params: &ParamValues, note: u8, seconds: f64) -> Vec<f32> {
    let entry = &SYNTHS[synth_index(name).unwrap_or_else(|| panic!("no synth {name}"))];
    let tables = common::tables(SR);
    let mut st = OscState::new(line_len(SR as f32));
    st.reset(0x5eed + note as u64);
    let ctx = SynthCtx { sample_rate: SR as f32, freq_hz: note_hz(note as f64), params, waves: &tables.waves };
    entry.synth.start(&mut st, &ctx);
    let mut out = vec![0.0f32; (seconds * SR as f64) as usize];
    for chunk in out.chunks_mut(TICK) {
        entry.synth.render(&mut st, &ctx, chunk);
        st.age += chunk.len() as u64;
    }
    out
}

/// The partial a synth's pitch is heard at, as a multiple of the note's frequency;
/// `None` for unpitched synths.
fn heard_partial(name: &str, params: &ParamValues) -> Option<f64> {
    match name {
        "noise" => None,
        // Seven saws 5 cents apart: engine_sound.rs resolves them one by one.
        "supersaw" => None,
        // Only sum and difference tones: the difference tone is the lowest.
        "ring_mod" => Some((1.0 - params.get(Param::RingRatio) as f64).abs()),
        _ => Some(1.0),
    }
}

fn selected(name: &str) -> bool {
    std::env::var("JAMRIG_SYNTH").map_or(true, |f| name.contains(f.as_str()))
}

/// Checks one synth at one note; returns what is wrong, if anything.
fn check_synth_note(name: &str, params: &ParamValues, note: u8) -> Vec<String> {
    let mut bad = Vec::new();
    // Long enough for 40 periods of the fundamental after the attack.
    let f0 = note_hz(note as f64);
    let window = (40.0 / f0).max(0.8);
    let x = synth_render(name, params, note, 0.2 + window);
    let what = format!("{name} at note {note}");
    if !common::all_finite(&x) {
        bad.push(format!("{what}: NaN or infinity in the output"));
        return bad;
    }
    let peak = common::peak(&x);
    if peak > 1.0 {
        bad.push(format!("{what}: peak {peak:.3} above full scale"));
    }
    if peak < 0.01 {
        bad.push(format!("{what}: silent (peak {peak:.5})"));
        return bad;
    }
    if let Some(partial) = heard_partial(name, params) {
        let f = note_hz(note as f64) * partial;
        let seg = common::span(&x, SR, 0.2, 0.2 + window);
        let (lo, hi) = (f * 2f64.powf(-50.0 / 1200.0), f * 2f64.powf(50.0 / 1200.0));
        let got = common::fine_peak_freq(seg, SR as f64, lo, hi);
        let c = common::cents(got, f);
        if c.abs() > 3.0 {
            bad.push(format!("{what}: fundamental {got:.2} Hz, {c:+.2} cents from {f:.2} Hz"));
        }
        // The fundamental must be a real partial, not the skirt of another.
        let (mags, bin) = common::spectrum(seg, SR as f64, 1 << 16);
        let at = common::band_level(&mags, bin, got, 3.0 * bin);
        let strongest = mags.iter().cloned().fold(0.0, f64::max);
        let rel = 20.0 * (at / strongest.max(1e-30)).log10();
        if rel < -40.0 {
            bad.push(format!("{what}: the fundamental is {rel:.1} dB below the strongest partial"));
        }
    }
    bad
}

#[test]
fn every_synth_sounds_at_its_pitch_within_full_scale() {
    let params = ParamValues::default();
    let mut bad = Vec::new();
    for s in SYNTHS.iter().filter(|s| selected(s.name)) {
        let (lo, hi) = s.range;
        for note in [lo, 60u8.clamp(lo, hi), hi] {
            bad.extend(check_synth_note(s.name, &params, note));
        }
    }
    assert!(bad.is_empty(), "{} problems:\n{}", bad.len(), bad.join("\n"));
}

/// Plays `note` on channel 1 of `set` for `hold` seconds, then releases it, and
/// renders `tail` seconds more; returns the output and the voice count at the end.
fn play(set: &str, note: u8, hold: f64, tail: f64) -> (Vec<f32>, u32) {
    let mut r = common::renderer(set, SR);
    r.add_events([
        common::note_on(common::at(0.01, SR) as u64, 0, note, 100),
        common::note_off(common::at(0.01 + hold, SR) as u64, 0, note),
    ]);
    let frames = common::at(0.01 + hold + tail, SR);
    let out = r.render(frames, 256);
    let voices = r.stats().voices[0].load(std::sync::atomic::Ordering::Relaxed);
    (out, voices)
}

#[test]
fn every_synth_dies_away_after_note_off() {
    let mut bad = Vec::new();
    for s in SYNTHS.iter().filter(|s| selected(s.name)) {
        let set = format!("channel(1, \"{}\", #{{ volume: 0.5, release: 0.3 }});", s.name);
        let (out, voices) = play(&set, 60, 0.5, 5.0);
        let l = common::left(&out);
        let end = common::rms(&l[l.len() - SR as usize / 10..]);
        if voices != 0 || end > 1e-5 {
            bad.push(format!("{}: {voices} voices left, {:.1} dB at the end", s.name, common::db(end)));
        }
    }
    assert!(bad.is_empty(), "{} problems:\n{}", bad.len(), bad.join("\n"));
}

/// Every instrument preset of the stdlib, through the engine with its own effects:
/// sounds, stays finite and below full scale. Then its pitch at C4, dry: the
/// layers that detune on purpose (`detune`, `analog`) and the effects that smear
/// a spectrum (chorus, delay, reverb) off, measured while the note sounds (some
/// envelopes are percussive).
#[test]
fn every_instrument_preset_plays() {
    let lib = common::host().library();
    let mut names: Vec<&String> = lib.instruments.keys().collect();
    names.sort();
    let mut bad = Vec::new();
    for name in names {
        let synth = &lib.instruments[name].synth;
        if !selected(synth) {
            continue;
        }
        let set = format!("channel(1, \"{name}\", #{{ volume: 0.5 }});");
        let (out, _) = play(&set, 60, 1.0, 0.5);
        let l = common::left(&out);
        if !common::all_finite(&l) {
            bad.push(format!("{name}: NaN in the output"));
            continue;
        }
        let peak = common::peak(&l);
        if peak < 0.003 {
            bad.push(format!("{name} ({synth}): silent, peak {peak:.5}"));
        }
        if peak > 1.0 {
            bad.push(format!("{name} ({synth}): peak {peak:.3} above full scale"));
        }
        let dry = format!(
            "channel(1, \"{name}\", #{{ volume: 0.5, analog: 0.0, detune: 0.0, chorus: 0.0, delay: 0.0, reverb: 0.0 }});"
        );
        let params = common::set(&dry).channels[&1].params;
        if let Some(partial) = heard_partial(synth, &params) {
            let (out, _) = play(&dry, 60, 1.0, 0.1);
            let l = common::left(&out);
            let f = note_hz(60.0) * partial;
            // While the note is within 40 dB of its peak, at most 0.9 s.
            let loud = common::peak(&l) * 0.01;
            let last = l.iter().rposition(|v| v.abs() > loud).unwrap_or(0) as f64 / SR as f64;
            let seg = common::span(&l, SR, 0.03, last.min(0.9));
            let got = common::fine_peak_freq(seg, SR as f64, f * 0.97, f * 1.03);
            let c = common::cents(got, f);
            if c.abs() > 3.0 {
                bad.push(format!("{name} ({synth}): C4 heard at {got:.2} Hz, {c:+.2} cents"));
            }
        }
    }
    assert!(bad.is_empty(), "{} problems:\n{}", bad.len(), bad.join("\n"));
}

// ---- Drum sounds, patterns and fills, through `jamrig audition`'s planner ----

use jamrig::offline::audition::{self, Item};

fn audition_render(item: &Item) -> (audition::Plan, Vec<f32>) {
    let plan = audition::plan(common::host(), item, 60, 100, SR).expect("plan");
    let out = audition::render(&plan, common::tables(SR)).expect("render");
    (plan, out)
}

/// First frame that is not exactly zero.
fn first_sound(x: &[f32]) -> Option<usize> {
    x.iter().position(|v| *v != 0.0)
}

#[test]
fn every_drum_sound_hits_on_time_and_decays_to_silence() {
    let lib = common::host().library();
    let lead_in = common::at(0.01, SR);
    let mut bad = Vec::new();
    for (name, &note) in &lib.drum_sounds {
        let (_, out) = audition_render(&Item::Drum(name.clone(), note));
        let l = common::left(&out);
        let peak = common::peak(&l);
        let onset = first_sound(&l);
        let seconds = l.len() as f64 / SR as f64;
        let tail = common::peak(&l[l.len().saturating_sub(SR as usize / 10)..]);
        if peak < 0.01 {
            bad.push(format!("{name} ({note}): silent, peak {peak:.4}"));
        } else if onset.is_none_or(|o| o < lead_in || o > lead_in + 4) {
            bad.push(format!("{name} ({note}): first sound at frame {onset:?}, the hit is at {lead_in}"));
        } else if seconds > 10.0 || tail > 1e-4 {
            bad.push(format!("{name} ({note}): still at {:.1} dB after {seconds:.1} s", common::db(tail)));
        }
    }
    assert!(lib.drum_sounds.len() >= 74, "{} drum sounds", lib.drum_sounds.len());
    assert!(bad.is_empty(), "{} problems:\n{}", bad.len(), bad.join("\n"));
}

/// Renders pattern or fill `item` one drum note at a time; every onset found (a
/// sound after exact silence) must be a hit of the data, and every hit whose
/// sound has ended before the next one must be found.
fn check_pattern_onsets(item: &Item, def: &jamrig::script::library::PatternDef) -> Vec<String> {
    let lib = common::host().library();
    let mut bad = Vec::new();
    let (plan, full) = audition_render(item);
    if common::peak(&full) < 0.01 {
        return vec![format!("{}: silent", item.name())];
    }
    let spb = 60.0 / plan.set.tempo_bpm;
    let mut notes: Vec<u8> = def.hits.iter().map(|h| h.note).collect();
    notes.sort();
    notes.dedup();
    for note in notes {
        // The sound's own length, and its own onsets (some sounds, a guiro's scrape,
        // have silences inside), from a single hit.
        let sound = lib.drum_name(note).map(str::to_string).unwrap_or_default();
        let mut single = audition::plan(common::host(), &Item::Drum(sound.clone(), note), 60, 100, SR).expect("plan");
        single.seconds = Some(10.0); // all of it, not only down to -90 dB
        let one = common::left(&audition::render(&single, common::tables(SR)).expect("render"));
        let hit_at = first_sound(&one).unwrap_or(0);
        let length = one.iter().rposition(|v| *v != 0.0).unwrap_or(0) - hit_at;
        let inner: Vec<usize> = common::onsets(&one, 1).iter().map(|o| o - hit_at).collect();
        let mut p = audition::plan(common::host(), item, 60, 100, SR).expect("plan");
        for pat in p.set.patterns.values_mut() {
            pat.hits.retain(|h| h.note == note && h.velocity > 0);
        }
        let out = audition::render(&p, common::tables(SR)).expect("render");
        let l = common::left(&out);
        let mut expected: Vec<usize> = Vec::new();
        for rep in 0..audition::repeats(def) {
            for h in def.hits.iter().filter(|h| h.note == note && h.velocity > 0) {
                expected.push(((h.beat + rep as f64 * def.beats) * spb * SR as f64).round() as usize);
            }
        }
        expected.sort();
        expected.dedup();
        let found = common::onsets(&l, 1);
        for &o in &found {
            if !expected.iter().any(|&e| inner.iter().any(|&d| o >= e + d && o <= e + d + 4)) {
                bad.push(format!("{} {sound}: a sound at frame {o}, where the data has no hit", item.name()));
            }
        }
        for (k, &e) in expected.iter().enumerate() {
            let clear = k == 0 || e - expected[k - 1] > length + 8;
            if clear && !found.iter().any(|&o| o >= e && o <= e + 4) {
                bad.push(format!(
                    "{} {sound}: no onset at frame {e} (beat {:.3})",
                    item.name(),
                    e as f64 / SR as f64 / spb
                ));
            }
        }
    }
    bad
}

#[test]
fn every_pattern_and_fill_plays_its_hits_where_the_data_says() {
    let lib = common::host().library();
    let mut bad = Vec::new();
    for (name, def) in &lib.patterns {
        bad.extend(check_pattern_onsets(&Item::Pattern(name.clone()), def));
    }
    for (name, def) in &lib.fills {
        bad.extend(check_pattern_onsets(&Item::Fill(name.clone()), def));
    }
    assert!(lib.patterns.len() >= 100 && lib.fills.len() >= 37);
    assert!(bad.is_empty(), "{} problems:\n{}", bad.len(), bad.join("\n"));
}

// ---- Releases ----

/// Seconds from the note-off at `off_s` until the 5 ms RMS of `x` stays 40 dB under
/// its level over the 20 ms before the note-off; `None` when the note had already
/// died away by itself before its note-off (40 dB under its peak).
fn release_to_minus_40(x: &[f32], off_s: f64) -> Option<f64> {
    let sr = SR as f64;
    let off = (off_s * sr) as usize;
    let before = common::rms(&x[off - (0.02 * sr) as usize..off]);
    let peak = common::rms_windows(&x[..off], 240).into_iter().fold(0.0f32, f32::max);
    if before < peak * 0.01 {
        return None;
    }
    let win = (0.005 * sr) as usize;
    let levels = common::rms_windows(&x[off..], win);
    let last_loud = levels.iter().rposition(|&l| l > before * 0.01).map_or(0, |i| i + 1);
    Some(last_loud as f64 * 0.005)
}

/// Natural releases: every preset, dry (no reverb or delay, which ring on by
/// design), played at its reference note for 0.4 s, falls to -40 dB no sooner than
/// 60 ms after its note-off, unless its envelope asks for a shorter release (organ
/// and staccato: 20 ms) or the note has died away by itself. Before, the 32 presets
/// with envelope "none" fell to -60 dB in 10 ms.
#[test]
fn every_preset_releases_no_faster_than_60_ms_unless_it_asks() {
    let lib = common::host().library();
    let mut names: Vec<&String> = lib.instruments.keys().collect();
    names.sort();
    let mut bad = Vec::new();
    let mut rows = Vec::new();
    for name in names {
        let text = format!("channel(1, \"{name}\", #{{ reverb: 0.0, delay: 0.0 }});");
        let set = common::set(&text);
        let spec = &set.channels[&1];
        let release = spec.params.get(Param::Release);
        let (lo, hi) = jamrig::offline::levels::preset_range(lib, name);
        let note = 60u8.clamp(lo, hi);
        let (out, _) = play(&text, note, 0.4, 2.5);
        let m = common::mono(&out);
        if let Some(t) = release_to_minus_40(&m, 0.41) {
            rows.push(format!("{name} {:.0} ms", t * 1000.0));
            let asks = release > 0.0 && release < 0.09;
            if t < 0.06 && !asks {
                bad.push(format!("{name}: -40 dB {:.0} ms after the note-off (release {release})", t * 1000.0));
            }
        }
    }
    println!("time to -40 dB after note-off: {}", rows.join(", "));
    assert!(bad.is_empty(), "{} problems:\n{}", bad.len(), bad.join("\n"));
}

/// Level (dB) of the component at `hz` in `x` from `t0` to `t1` seconds.
fn partial_db(x: &[f32], hz: f64, t0: f64, t1: f64) -> f64 {
    let seg = common::span(x, SR, t0, t1);
    20.0 * common::dtft_mag(seg, SR as f64, hz).max(1e-30).log10()
}

/// The damper: a piano's C4 falls 40 dB in 0.15 to 0.8 s after its key is released
/// (a sampled grand: about 0.34 s), its fourth partial faster than its fundamental;
/// an electric piano's and a bass guitar's notes are stopped the same way (mute),
/// within 0.1 to 0.8 s; a vibraphone rings on (free ring, no damper), as do the
/// piano's top strings (no dampers above F6, as on a grand).
#[test]
fn dampers_stop_released_notes_upper_partials_first() {
    let f = note_hz(60.0);
    let mut bad = Vec::new();
    for name in ["piano", "electric_piano", "wurlitzer", "bass_guitar", "acoustic_guitar", "harpsichord"] {
        let note = if name == "bass_guitar" { 40 } else { 60 };
        let text = format!("channel(1, \"{name}\", #{{ reverb: 0.0, delay: 0.0, chorus: 0.0 }});");
        let (out, _) = play(&text, note, 0.5, 1.5);
        let m = common::mono(&out);
        let t = release_to_minus_40(&m, 0.51).unwrap_or(0.0);
        println!("{name}: -40 dB {:.0} ms after the note-off", t * 1000.0);
        if !(0.1..=0.8).contains(&t) {
            bad.push(format!("{name}: -40 dB {:.0} ms after the note-off", t * 1000.0));
        }
    }
    let (out, _) = play("channel(1, \"piano\", #{ reverb: 0.0 });", 60, 0.5, 1.0);
    let m = common::mono(&out);
    let fall = |k: f64| partial_db(&m, k * f, 0.45, 0.5) - partial_db(&m, k * f, 0.6, 0.65);
    let (f1, f4) = (fall(1.0), fall(4.0 * (1.0 + 0.00022 * 16.0f64).sqrt()));
    println!("piano C4 in the 150 ms after the note-off: fundamental -{f1:.1} dB, fourth partial -{f4:.1} dB");
    if f4 <= f1 {
        bad.push(format!("piano: fourth partial fell {f4:.1} dB, the fundamental {f1:.1} dB"));
    }
    for (name, note) in [("vibraphone", 72u8), ("piano", 96)] {
        let text = format!("channel(1, \"{name}\", #{{ reverb: 0.0 }});");
        let (out, _) = play(&text, note, 0.3, 0.7);
        let m = common::mono(&out);
        let after = common::rms(common::span(&m, SR, 0.45, 0.5));
        let before = common::rms(common::span(&m, SR, 0.28, 0.31));
        let drop = common::db(before) - common::db(after);
        println!("{name} at {note}: {drop:.1} dB in the 150 ms after its note-off");
        if drop > 12.0 {
            bad.push(format!("{name} at note {note}: fell {drop:.1} dB in 150 ms after its note-off (should ring on)"));
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

/// Regression: the sitar carried DC at -8.5 dB of its RMS (its one-sided bridge),
/// acid bass and the electric pianos some too (distortion and saturation of even
/// harmonics), which thumps at note-off. Their DC (the mean of a whole note, 0.7 s
/// held and 0.5 s after, left and right; DC-free sound averages to nothing over its
/// whole life) is now at least 40 dB under the RMS of the held note, and so is every
/// other preset's. Regression too: the mellotrons (to -17 dB: their tape saturation of
/// an asymmetric wave), the saxophones (-34 dB, the reed shaper) and the didgeridoo
/// (-37 dB) carried DC until their synths got a DC blocker of their own.
#[test]
fn no_preset_carries_dc() {
    let lib = common::host().library();
    let mut names: Vec<&String> = lib.instruments.keys().collect();
    names.sort();
    let mut bad = Vec::new();
    let mut worst = (f32::NEG_INFINITY, String::new());
    for name in names {
        let text = format!("channel(1, \"{name}\");");
        let (lo, hi) = jamrig::offline::levels::preset_range(lib, name);
        let (out, _) = play(&text, 60u8.clamp(lo, hi), 0.7, 0.5);
        for side in [common::left(&out), common::right(&out)] {
            let mean = side.iter().map(|v| *v as f64).sum::<f64>() / side.len() as f64;
            let rel = common::db(mean.abs() as f32) - common::db(common::rms(common::span(&side, SR, 0.01, 0.71)));
            if rel > worst.0 {
                worst = (rel, name.clone());
            }
            if rel > -40.0 {
                bad.push(format!("{name}: DC {rel:.1} dB of the RMS"));
            }
        }
    }
    println!("largest DC: {} at {:.1} dB of its RMS", worst.1, worst.0);
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

// ---- Loudness ----

/// Gain staging: every instrument preset, one note at velocity 100 at its reference
/// note (C4, or the nearest note of its range), reads the library's target within
/// 2 LU (momentary maximum, EBU R128 through `ebur128`; the pads' voicing of -1.5 LU
/// included), and every note of its range tried (the ends and the octaves around the
/// reference) within 3 LU of its reference note. The drum kit playing the `rock`
/// pattern reads the target within 2 LU. Before the presets carried level trims and
/// key scaling they spanned 25.6 LU at C4 (sync_lead at -37.5 LUFS, metal_guitar at
/// -11.9), and their ranges strayed up to 47 LU. Prints the table.
#[test]
fn every_preset_is_level_matched_across_its_range() {
    use jamrig::offline::levels::{TARGET_LUFS, kit_level, preset_level};
    let lib = common::host().library();
    let mut names: Vec<&String> = lib.instruments.keys().collect();
    names.sort();
    let tables = common::tables(SR);
    // Two halves side by side (two cores).
    let half = names.len().div_ceil(2);
    let rows: Vec<_> = std::thread::scope(|s| {
        let jobs: Vec<_> = names
            .chunks(half)
            .map(|chunk| {
                let tables = tables.clone();
                s.spawn(move || {
                    chunk
                        .iter()
                        .map(|n| preset_level(common::host(), &tables, n, true).expect("preset renders"))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        jobs.into_iter().flat_map(|j| j.join().expect("measuring thread")).collect()
    });
    let mut bad = Vec::new();
    for p in &rows {
        let dev = p.reference_lufs - TARGET_LUFS;
        let notes: Vec<String> = p.range.iter().map(|(n, l)| format!("{n} {:+.1}", l - p.reference_lufs)).collect();
        println!("{:20} {:3} {dev:+5.1} LU | {}", p.name, p.reference_note, notes.join(", "));
        if dev.abs() > 2.0 {
            bad.push(format!("{}: {dev:+.1} LU from the target at note {}", p.name, p.reference_note));
        }
        for (n, l) in &p.range {
            if (l - p.reference_lufs).abs() > 3.0 {
                bad.push(format!("{} at note {n}: {:+.1} LU from its reference note", p.name, l - p.reference_lufs));
            }
        }
    }
    let kit = kit_level(common::host(), &tables).expect("kit renders") - TARGET_LUFS;
    println!("drum kit {kit:+.1} LU");
    if kit.abs() > 2.0 {
        bad.push(format!("the drum kit: {kit:+.1} LU from the target"));
    }
    assert!(rows.len() >= 84, "{} presets", rows.len());
    assert!(bad.is_empty(), "{} problems:\n{}", bad.len(), bad.join("\n"));
}

/// Integrated loudness (LUFS) of each channel of example set `path` that plays a
/// pattern, alone, over 8 bars from its pattern's first hit (the tour's stops take
/// their turns late in its cycle). Channels with no pattern (played from a device)
/// are left out: their presets are matched, and their volumes set the mix.
fn example_channel_levels(path: &str) -> Vec<(u8, String, f64)> {
    use jamrig::offline::levels::loudness;
    let ev = common::host().eval_file(std::path::Path::new(path)).expect("example evaluates");
    let set = jamrig::offline::render::offline_view(&ev.set);
    let frames = (8.0 * set.beats_per_bar * 60.0 / set.tempo_bpm * SR as f64) as usize;
    let mut rows = Vec::new();
    for (&ch, spec) in &set.channels {
        let mut solo = set.clone();
        solo.channels.retain(|&c, _| c == ch);
        solo.patterns.retain(|_, p| p.channel == ch);
        let Some(first) = solo.patterns.values().flat_map(|p| p.hits.iter().map(|h| h.beat)).reduce(f64::min) else {
            continue;
        };
        for p in solo.patterns.values_mut() {
            for h in &mut p.hits {
                h.beat = (h.beat - first).rem_euclid(p.length_beats);
            }
        }
        let mut r = jamrig::offline::Renderer::with_tables(&solo, common::tables(SR)).expect("rig builds");
        let out = r.render(frames, 512);
        rows.push((ch, spec.instrument.clone(), loudness(&out, SR).integrated));
    }
    rows
}

/// Every example set is mixed so that each of its channels is heard: alone, each
/// channel that plays a pattern reads within 8 LU of the set's loudest channel
/// (integrated loudness), and the tour's stops, which take turns, within 3 LU of
/// each other (its drums, a quiet groove under them, within 8 LU of the loudest). Before: in set.rhai the keys sat 17.6 LU under the drums, the pad 11
/// LU; live-coding.rhai's celesta 14.3 LU and pad 9.9 LU under; op-xy.rhai's pad 9.6
/// LU under its drums; the tour's drums 15 LU under its loudest stop. Prints the
/// figures.
#[test]
fn every_example_channel_is_audible_in_its_mix() {
    let mut bad = Vec::new();
    for path in ["examples/set.rhai", "examples/live-coding.rhai", "examples/op-xy.rhai", "examples/minimal.rhai"] {
        let rows = example_channel_levels(path);
        let loudest = rows.iter().map(|r| r.2).fold(f64::NEG_INFINITY, f64::max);
        for (ch, inst, l) in &rows {
            println!("{path} channel {ch:2} {inst:16} {l:6.1} LUFS ({:+5.1} LU)", l - loudest);
            if l - loudest < -8.0 {
                bad.push(format!("{path}: channel {ch} ({inst}) {:.1} LU under the loudest", loudest - l));
            }
        }
    }
    let rows = example_channel_levels("examples/tour.rhai");
    let stops = rows.iter().filter(|r| r.1 != "drums");
    let (lo, hi) = stops.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), r| (a.min(r.2), b.max(r.2)));
    for (ch, inst, l) in &rows {
        println!("examples/tour.rhai channel {ch:2} {inst:16} {l:6.1} LUFS ({:+5.1} LU)", l - hi);
        if l - hi < -8.0 {
            bad.push(format!("examples/tour.rhai: channel {ch} ({inst}) {:.1} LU under the loudest stop", hi - l));
        }
    }
    if hi - lo > 3.0 {
        bad.push(format!("examples/tour.rhai: the stops span {:.1} LU", hi - lo));
    }
    assert!(rows.len() >= 16, "{} tour channels measured", rows.len());
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

// ---- Aliasing ----

/// The presets that drive a nonlinearity: the bus's distortion or saturation, the
/// wavefolder, or FM (whose sidebands reach past Nyquist at high notes).
fn driven_presets() -> Vec<String> {
    let lib = common::host().library();
    lib.instruments
        .iter()
        .filter(|(_, d)| {
            matches!(d.synth.as_str(), "wavefold" | "fm")
                || d.params.iter().any(|(p, v)| matches!(p, Param::Distortion | Param::Saturation) && *v > 0.0)
        })
        .map(|(n, _)| n.clone())
        .collect()
}

/// The band images are counted in: the audible band. The half-band filters that
/// bring the oversampled curves back to the base rate fold what lies just above
/// Nyquist into the band between 0.4 and 0.5 times the rate (19.2 to 24 kHz at
/// 48 kHz), at their transition; the table prints the whole band too.
const AUDIBLE_HZ: f64 = 20_000.0;

/// The worst image in the audible band and in the whole band: (dB, Hz) each.
type Images = [(f64, f64); 2];

/// Worst image in the audible band and in the whole band (dB under the strongest
/// harmonic, and its frequency) of preset `name` (or a channel map, `#{...}`, played
/// as it is) at `note`, velocity 100, over 0.05 to 0.55 s after the note starts. The note is
/// held at its peak level (envelope "organ": the drive stages see the loudest the
/// preset plays, and a fast decay does not smear the harmonics), and everything that
/// moves pitch or adds copies of it (reverb, delay, chorus, phaser, tremolo, detune,
/// ensemble, drift, humanize, spread) is off, so every inharmonic peak left is an
/// image. A sub-oscillator puts the harmonic series an octave down. The master bus
/// is the limiter (linear below full scale).
fn preset_images(name: &str, note: u8) -> Images {
    let text = if name.starts_with('#') {
        format!(r#"master(#{{ gain: 1.0, mode: "limiter" }}); channel(1, {name});"#)
    } else {
        format!(
            r#"master(#{{ gain: 1.0, mode: "limiter" }}); channel(1, "{name}", #{{ envelope: "organ", reverb: 0.0,
            delay: 0.0, chorus: 0.0, phaser: 0.0, tremolo_depth: 0.0, detune: 0.0, ensemble: 1.0, analog: 0.0,
            humanize: 0.0, spread: 0.0, noise_mix: 0.0 }});"#
        )
    };
    let sub = common::set(&text).channels[&1].params.get(Param::SubOsc) > 0.0;
    let mut r = common::renderer(&text, SR);
    r.add_events([common::note_on(0, 0, note, 100)]);
    let x = common::mono(&r.render(common::at(0.6, SR), 256));
    let f0 = note_hz(note as f64) * if sub { 0.5 } else { 1.0 };
    let seg = common::span(&x, SR, 0.05, 0.55);
    [AUDIBLE_HZ, SR as f64 / 2.0].map(|max_hz| common::worst_image(seg, SR as f64, f0, max_hz))
}

/// Distortion, saturation and wavefolding run oversampled, and FM keeps its
/// sidebands under Nyquist: every preset that drives one, played at each C from C4
/// inside its range and at the top of its range (up to C7), and fm and tubular_bells at
/// C8, keep their images (inharmonic peaks, by FFT against the harmonic series) 60 dB
/// under the strongest harmonic. Before, the
/// bus's curves ran at the base rate: acid_bass had images at -43 dB at C5 (-22 dB
/// at C8), fm and tubular_bells at -34 dB at C8. Prints the table.
#[test]
fn driven_presets_keep_images_under_60_db_up_to_c7() {
    let lib = common::host().library();
    let names = driven_presets();
    assert!(names.len() >= 10, "{names:?}");
    // The bare FM synth at the top of its range, bright.
    let fm = r#"#{ synth: "fm", envelope: "organ", fm_ratio: 3.0, fm_index: 8.0 }"#.to_string();
    let mut jobs: Vec<(String, u8, bool)> = names
        .iter()
        .flat_map(|name| {
            let (lo, hi) = jamrig::offline::levels::preset_range(lib, name);
            let top = hi.min(96);
            let mut notes: Vec<u8> = [60u8, 72, 84, 96].into_iter().filter(|n| (lo..=top).contains(n)).collect();
            notes.push(top);
            notes.sort();
            notes.dedup();
            notes.into_iter().map(move |n| (name.clone(), n, true))
        })
        .chain([(fm.clone(), 96, true)])
        .collect();
    // The issue's -34 dB images of fm and tubular_bells at C8: checked there too (the
    // bare synth plays the whole keyboard; the bells' preset range ends at C6).
    jobs.extend([(fm.clone(), 108, true), ("tubular_bells".to_string(), 108, true)]);
    // Beyond their ranges, for the record (the issue measured them there): printed,
    // not checked.
    for (name, notes) in [("acid_bass", &[72u8, 84, 96, 108][..]), ("tubular_bells", &[96])] {
        jobs.extend(notes.iter().map(|&n| (name.to_string(), n, false)));
    }
    // Two halves side by side (two cores).
    let half = jobs.len().div_ceil(2);
    let rows: Vec<(String, u8, bool, Images)> = std::thread::scope(|s| {
        let handles: Vec<_> = jobs
            .chunks(half)
            .map(|chunk| {
                s.spawn(move || {
                    chunk.iter().map(|(n, k, check)| (n.clone(), *k, *check, preset_images(n, *k))).collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().expect("measuring thread")).collect()
    });
    let mut bad = Vec::new();
    for (name, note, check, [(db, hz), (all_db, all_hz)]) in &rows {
        let mark = if *check { "" } else { " (beyond its range)" };
        println!(
            "{name:20} note {note:3}: worst image {db:6.1} dB at {hz:6.0} Hz (whole band {all_db:6.1} dB at {all_hz:6.0} Hz){mark}"
        );
        if *check && *db > -60.0 {
            bad.push(format!("{name} at note {note}: image {db:.1} dB at {hz:.0} Hz"));
        }
    }
    assert!(bad.is_empty(), "{} problems:\n{}", bad.len(), bad.join("\n"));
}
