//! The set language: the functions a set calls and the channel properties it sets,
//! registered with Rhai. Each call edits the [`EvalState`] being built. Control
//! thread (during evaluation).

use super::diagnostic::{did_you_mean, suggest_many};
use super::library::{EnvelopeDef, InstrumentDef, LibHit, Library, PatternDef, drum_key};
use crate::engine::sequencer::{MAX_HIT_LENGTH_BEATS, MAX_PATTERN_BEATS, MIN_PATTERN_BEATS};
use crate::engine::snapshot::{MAX_CHANNELS, MasterMode};
use crate::engine::synth::synth_index;
use crate::engine::{DEFAULT_VOICE_LIMIT, MAX_VOICE_LIMIT};
use crate::params::{Kind, PARAMS, Param, ParamValues, fmt_num};
use crate::rig::set::{CcSpec, ChannelKind, ChannelSpec, HitSpec, PatternSpec, Set, SyncMode};
use crate::theory::parse_note;
use rhai::{Array, Dynamic, Engine, EvalAltResult, FLOAT, INT, Map, Position};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// Default length of a note-pattern hit whose length is not given, in beats.
pub const DEFAULT_HIT_LENGTH: f64 = 0.5;
/// Channel properties beyond the parameter table.
pub const CHANNEL_PROPERTIES: &[&str] = &["voices", "envelope", "synth", "instrument", "number"];

/// An error raised by an API function: a sentence, and optionally the text to
/// underline and a short note under it.
#[derive(Clone, Debug)]
pub struct ApiError {
    pub message: String,
    pub token: Option<String>,
    pub help: Option<String>,
}

pub(crate) type Res<T> = Result<T, Box<EvalAltResult>>;

pub(crate) fn fail<T>(message: impl Into<String>) -> Res<T> {
    Err(EvalAltResult::ErrorRuntime(
        Dynamic::from(ApiError { message: message.into(), token: None, help: None }),
        Position::NONE,
    )
    .into())
}

pub(crate) fn fail_at<T>(message: impl Into<String>, token: &str, help: Option<String>) -> Res<T> {
    let e = ApiError { message: message.into(), token: Some(token.to_string()), help };
    Err(EvalAltResult::ErrorRuntime(Dynamic::from(e), Position::NONE).into())
}

/// The set under construction, with the library it resolves names against.
pub struct EvalState {
    pub set: Set,
    pub lib: Library,
    /// Where each channel was declared (to catch duplicates).
    pub declared: BTreeMap<u8, String>,
    /// REPL mode: declaring a channel again replaces it.
    pub repl: bool,
    /// Lines the script printed.
    pub printed: Vec<String>,
    /// What the set should be told about itself that is not an error (shown by
    /// `jamrig check`).
    pub notes: Vec<String>,
    /// The patterns placed from mini-notation (expanded again if the meter changes).
    pub minis: super::patterns::Placed,
    /// Loaded fonts and samples, kept across evaluations.
    pub library: Arc<crate::samples::SampleLibrary>,
    /// Where the set may read files from.
    pub roots: crate::samples::Roots,
}

impl EvalState {
    pub fn new(lib: Library, base: Set, repl: bool) -> Self {
        EvalState {
            set: base,
            lib,
            declared: BTreeMap::new(),
            repl,
            printed: Vec::new(),
            notes: Vec::new(),
            minis: Default::default(),
            library: Default::default(),
            roots: Default::default(),
        }
    }
}

pub type Shared = Arc<Mutex<EvalState>>;

pub(crate) fn lock(s: &Shared) -> MutexGuard<'_, EvalState> {
    s.lock().unwrap_or_else(|p| p.into_inner())
}

/// The channels as a variable, `c_[2].lowpass = 900`: what `ch(2).lowpass = 900`
/// is rewritten to, since Rhai cannot assign through a call's result.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Channels;

/// The variable `ch(N).` is rewritten to use (two letters, so columns are kept; not
/// `ch` itself, which would shadow loop variables named `ch`).
pub const CHANNELS_VAR: &str = "c_";

/// The `)` closing a call's arguments from byte `from`, skipping strings; `None` if
/// the arguments hold another call (not rewritten).
fn closing_paren(line: &str, from: usize) -> Option<usize> {
    let b = line.as_bytes();
    let mut in_str = false;
    let mut k = from;
    while k < b.len() {
        match b[k] {
            b'\\' if in_str => k += 1,
            b'"' => in_str = !in_str,
            b'(' if !in_str => return None,
            b')' if !in_str => return Some(k),
            _ => {}
        }
        k += 1;
    }
    None
}

/// Rewrites `ch(N).` as `c_[N].` outside strings and comments, keeping every column.
pub fn rewrite_channel_access(src: &str) -> String {
    let mut out = String::with_capacity(src.len());
    for line in src.split_inclusive('\n') {
        let bytes = line.as_bytes();
        let mut s = bytes.to_vec();
        let mut in_str = false;
        let mut k = 0;
        while k < bytes.len() {
            match bytes[k] {
                b'\\' if in_str => k += 1,
                b'"' => in_str = !in_str,
                b'/' if !in_str && bytes.get(k + 1) == Some(&b'/') => break,
                b'c' if !in_str
                    && line[k..].starts_with("ch(")
                    && (k == 0
                        || !(bytes[k - 1].is_ascii_alphanumeric() || bytes[k - 1] == b'_' || bytes[k - 1] == b'.')) =>
                {
                    if let Some(close) = closing_paren(line, k + 3) {
                        let after = line[close + 1..].trim_start_matches([' ', '\t']);
                        if bytes[close] == b')' && after.starts_with('.') {
                            s[k..k + 2].copy_from_slice(CHANNELS_VAR.as_bytes());
                            s[k + 2] = b'[';
                            s[close] = b']';
                            k = close;
                        }
                    }
                }
                _ => {}
            }
            k += 1;
        }
        out.push_str(&String::from_utf8(s).unwrap_or_else(|_| line.to_string()));
    }
    out
}

/// A handle on a channel of the set being built (what `channel(...)` returns).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ChannelRef {
    pub number: u8,
}

/// A value as the REPL shows it: text in quotes, a channel as `ch(N)`.
pub fn show_value(v: &Dynamic) -> String {
    if let Some(c) = v.clone().try_cast::<ChannelRef>() {
        return format!("ch({})", c.number);
    }
    if v.is_string() {
        return format!("{v:?}");
    }
    v.to_string()
}

pub(crate) fn type_name(d: &Dynamic) -> &'static str {
    if d.is_string() {
        "text"
    } else if d.is_int() {
        "a whole number"
    } else if d.is_float() {
        "a number"
    } else if d.is_array() {
        "a list"
    } else if d.is_map() {
        "a map"
    } else if d.is_bool() {
        "true/false"
    } else if d.is_unit() {
        "nothing"
    } else {
        "a value"
    }
}

/// How a value is written in a script (to find it on the line for the caret).
pub(crate) fn lit(d: &Dynamic) -> String {
    if d.is_string() { format!("\"{}\"", d.clone().into_string().unwrap_or_default()) } else { d.to_string() }
}

/// A number from an int or a float (never NaN or infinite).
pub(crate) fn number(d: &Dynamic, what: &str) -> Res<f64> {
    if let Some(i) = d.clone().try_cast::<INT>() {
        Ok(i as f64)
    } else if let Some(f) = d.clone().try_cast::<FLOAT>() {
        if !f.is_finite() {
            return fail_at(format!("{what} must be a finite number, not {f}"), &lit(d), None);
        }
        Ok(f)
    } else {
        fail_at(format!("{what} must be a number, not {}", type_name(d)), &lit(d), None)
    }
}

pub(crate) fn channel_number(d: &Dynamic) -> Res<u8> {
    let n = number(d, "a channel")?;
    if n.fract() != 0.0 || !(1.0..=MAX_CHANNELS as f64).contains(&n) {
        return fail_at(
            format!("channel must be a whole number from 1 to 16, not {}", fmt_num(n as f32)),
            &lit(d),
            None,
        );
    }
    Ok(n as u8)
}

/// Adds `token` to an error that does not say where it is yet.
pub(crate) fn at_token<T>(r: Res<T>, token: &str) -> Res<T> {
    r.map_err(|mut e| {
        if let EvalAltResult::ErrorRuntime(v, _) = &mut *e
            && let Some(mut api) = v.clone().try_cast::<ApiError>()
            && api.token.is_none()
        {
            api.token = Some(token.to_string());
            *v = Dynamic::from(api);
        }
        e
    })
}

pub(crate) fn text(d: &Dynamic, what: &str) -> Res<String> {
    match d.clone().into_immutable_string() {
        Ok(s) => Ok(s.to_string()),
        Err(_) => fail(format!("{what} must be text in quotes, not {}", type_name(d))),
    }
}

/// Sets one parameter from a script value, checking its type and range.
fn set_param(values: &mut ParamValues, p: Param, v: &Dynamic) -> Res<()> {
    let info = p.info();
    let value = match info.kind {
        Kind::Choice(names) => {
            let s = text(v, info.name)?;
            match names.iter().position(|n| *n == s) {
                Some(i) => i as f32,
                None => {
                    let help = did_you_mean(&suggest_many(&s, names.iter().copied()));
                    return fail_at(
                        format!("{} must be one of {}, not \"{s}\"", info.name, names.join(", ")),
                        &s,
                        help,
                    );
                }
            }
        }
        Kind::Toggle => match v.as_bool() {
            Ok(b) => b as u8 as f32,
            Err(_) => {
                return fail(format!("{} must be true or false, not {}", info.name, type_name(v)));
            }
        },
        _ => number(v, info.name)? as f32,
    };
    match p.check(value) {
        Ok(v) => {
            values.set(p, v);
            Ok(())
        }
        Err(msg) => fail(msg),
    }
}

/// The script value of a parameter.
fn get_param(values: &ParamValues, p: Param) -> Dynamic {
    let v = values.get(p);
    match p.info().kind {
        Kind::Choice(names) => Dynamic::from(names.get(v as usize).copied().unwrap_or("").to_string()),
        Kind::Toggle => Dynamic::from(v != 0.0),
        _ => Dynamic::from(v as FLOAT),
    }
}

/// An instrument's `range: [lowest, highest]` (MIDI notes).
fn note_range(v: &Dynamic) -> Res<(u8, u8)> {
    const HELP: &str = "range is [lowest, highest]: two MIDI notes from 0 to 127, the lowest first";
    let Some(a) = v.clone().try_cast::<Array>() else {
        return fail(HELP);
    };
    let notes: Vec<i64> = a.iter().filter_map(|x| x.as_int().ok()).collect();
    match notes[..] {
        [lo, hi] if a.len() == 2 && (0..=hi).contains(&lo) && hi <= 127 => Ok((lo as u8, hi as u8)),
        _ => fail(HELP),
    }
}

pub(crate) fn unknown_param<T>(name: &str) -> Res<T> {
    let names = PARAMS.iter().map(|p| p.name).chain(CHANNEL_PROPERTIES.iter().copied());
    fail_at(format!("unknown parameter {name}"), name, did_you_mean(&suggest_many(name, names)))
}

fn apply_envelope(values: &mut ParamValues, lib: &Library, v: &Dynamic) -> Res<()> {
    if let Some(map) = v.clone().try_cast::<Map>() {
        for (k, val) in map {
            let p = match k.as_str() {
                "attack" => Param::Attack,
                "decay" => Param::Decay,
                "sustain" => Param::Sustain,
                "release" => Param::Release,
                other => {
                    let help = did_you_mean(&suggest_many(other, ["attack", "decay", "sustain", "release"]));
                    return fail_at(
                        format!("an envelope has attack, decay, sustain and release, not {other}"),
                        other,
                        help,
                    );
                }
            };
            set_param(values, p, &val)?;
        }
        return Ok(());
    }
    let name = text(v, "envelope")?;
    match lib.envelopes.get(&name) {
        Some(e) => {
            values.set(Param::Attack, e.attack);
            values.set(Param::Decay, e.decay);
            values.set(Param::Sustain, e.sustain);
            values.set(Param::Release, e.release);
            Ok(())
        }
        None => {
            let help = did_you_mean(&suggest_many(&name, lib.envelopes.keys().map(String::as_str)));
            fail_at(format!("unknown envelope \"{name}\""), &name, help)
        }
    }
}

/// Sets the parameters a `synth_kw` map names (the reference presets' synth
/// options: `slave_ratio`, `mod_ratio`, `folds`, `tape`, ...), returning them.
fn synth_kw(values: &mut ParamValues, v: &Dynamic) -> Res<Vec<Param>> {
    let Some(map) = v.clone().try_cast::<Map>() else {
        return fail(format!("synth_kw must be a map #{{...}}, not {}", type_name(v)));
    };
    let mut set = Vec::new();
    for (k, v) in &map {
        let Some(&(_, p)) = crate::params::SYNTH_KW.iter().find(|(name, _)| *name == k.as_str()) else {
            let names = crate::params::SYNTH_KW.iter().map(|(n, _)| *n);
            let help = did_you_mean(&suggest_many(k, names));
            return fail_at(format!("unknown synth_kw key {k}"), k, help);
        };
        at_token(set_param(values, p, v), k)?;
        set.push(p);
    }
    Ok(set)
}

/// Applies a map of channel settings (parameters, envelope, synth, voices).
pub(crate) fn apply_map(spec: &mut ChannelSpec, lib: &Library, map: &Map) -> Res<()> {
    // The envelope first, so that attack/decay/... given alongside override it.
    if let Some(env) = map.get("envelope") {
        apply_envelope(&mut spec.params, lib, env)?;
    }
    for (k, v) in map {
        match k.as_str() {
            "envelope" => {}
            k if super::sampled::FONT_KEYS.contains(&k) => {}
            "synth" => {
                let s = text(v, "synth")?;
                check_synth(&s, &s)?;
                if spec.is_drums() {
                    return fail("a drum channel plays the drum kit; it has no synth");
                }
                spec.kind = ChannelKind::Synth { synth: s };
            }
            "synth_kw" => {
                synth_kw(&mut spec.params, v)?;
            }
            "voices" => spec.voices = voices(v)?,
            name => match Param::from_name(name) {
                Some(p) => at_token(set_param(&mut spec.params, p, v), name)?,
                None => return unknown_param(name),
            },
        }
    }
    Ok(())
}

/// An external channel: `#{ midi_out: "device", out_channel: 1 }` (the out
/// channel is the channel's own number unless given).
fn external_channel(n: u8, map: &Map) -> Res<ChannelSpec> {
    let mut device = String::new();
    let mut channel = n;
    for (k, v) in map {
        match k.as_str() {
            "midi_out" => {
                device = text(v, "midi_out")?;
                if device.trim().is_empty() {
                    return fail("midi_out names a MIDI output device (part of its name), e.g. midi_out: \"op-xy\"");
                }
            }
            "out_channel" => channel = at_token(channel_number(v), "out_channel")?,
            other => {
                return fail_at(
                    format!("an external channel takes midi_out and out_channel, not {other}"),
                    other,
                    did_you_mean(&suggest_many(other, ["midi_out", "out_channel"])),
                );
            }
        }
    }
    Ok(ChannelSpec {
        instrument: format!("midi out {device} ch{channel}"),
        kind: ChannelKind::External { device, channel },
        params: ParamValues::default(),
        voices: DEFAULT_VOICE_LIMIT,
    })
}

/// The longest `latency_ms` a MIDI output may be given.
const MAX_OUT_LATENCY_MS: f64 = 500.0;

fn voices(v: &Dynamic) -> Res<u16> {
    let n = number(v, "voices")?;
    if n.fract() != 0.0 || !(1.0..=MAX_VOICE_LIMIT as f64).contains(&n) {
        return fail(format!("voices is {}, outside 1..{MAX_VOICE_LIMIT}", fmt_num(n as f32)));
    }
    Ok(n as u16)
}

/// Fails, naming the synth (and the nearest ones), if the engine does not have it.
fn check_synth(synth: &str, instrument: &str) -> Res<()> {
    if synth_index(synth).is_some() {
        return Ok(());
    }
    let near = suggest_many(synth, crate::engine::synth::SYNTHS.iter().map(|s| s.name));
    let help = did_you_mean(&near).or_else(|| Some("`jamrig audition --list` lists the synths".to_string()));
    let what = if synth == instrument {
        format!("synth \"{synth}\"")
    } else {
        format!("instrument \"{instrument}\" needs the synth \"{synth}\", which")
    };
    let msg = if synth == instrument {
        format!("{what} is not one jamrig has")
    } else {
        format!("{what} jamrig does not have")
    };
    fail_at(msg, instrument, help)
}

/// A channel spec for preset `name` (an instrument preset, or a bare synth name).
pub(crate) fn preset_channel(lib: &Library, name: &str) -> Res<ChannelSpec> {
    let mut params = ParamValues::default();
    if let Some(def) = lib.instruments.get(name) {
        check_synth(&def.synth, name)?;
        if let Some(e) = lib.envelopes.get(def.envelope.as_deref().unwrap_or("piano")) {
            params.set(Param::Attack, e.attack);
            params.set(Param::Decay, e.decay);
            params.set(Param::Sustain, e.sustain);
            params.set(Param::Release, e.release);
        }
        for (p, v) in &def.params {
            params.set(*p, *v);
        }
        return Ok(ChannelSpec {
            instrument: name.to_string(),
            kind: ChannelKind::Synth { synth: def.synth.clone() },
            params,
            voices: DEFAULT_VOICE_LIMIT,
        });
    }
    if synth_index(name).is_some() {
        return Ok(ChannelSpec {
            instrument: name.to_string(),
            kind: ChannelKind::Synth { synth: name.to_string() },
            params,
            voices: DEFAULT_VOICE_LIMIT,
        });
    }
    let names = lib.instruments.keys().map(String::as_str).chain(crate::engine::synth::SYNTHS.iter().map(|s| s.name));
    fail_at(format!("unknown instrument \"{name}\""), name, did_you_mean(&suggest_many(name, names)))
}

pub(crate) fn drum_channel() -> ChannelSpec {
    ChannelSpec {
        instrument: "drums".into(),
        kind: ChannelKind::Drums,
        params: ParamValues::default(),
        voices: DEFAULT_VOICE_LIMIT,
    }
}

pub(crate) fn declare(st: &mut EvalState, n: u8, spec: ChannelSpec, ctx_pos: Position) -> Res<ChannelRef> {
    if !st.repl
        && let Some(at) = st.declared.get(&n)
    {
        return fail(format!("channel {n} is declared twice (first at {at}); change the first declaration instead"));
    }
    st.declared.insert(n, format!("line {}", ctx_pos.line().unwrap_or(0)));
    st.set.channels.insert(n, spec);
    Ok(ChannelRef { number: n })
}

/// Parses a list of hits: `[beat, note or sound, velocity, length?]`.
fn hits(lib: &Library, list: &Array, drums: bool, what: &str) -> Res<Vec<LibHit>> {
    let mut out = Vec::with_capacity(list.len());
    for (i, h) in list.iter().enumerate() {
        let Some(a) = h.clone().try_cast::<Array>() else {
            return fail(format!(
                "{what}: hit {} must be a list [beat, note, velocity, length], not {}",
                i + 1,
                type_name(h)
            ));
        };
        if !(2..=4).contains(&a.len()) {
            return fail(format!(
                "{what}: hit {} must be [beat, note, velocity] or [beat, note, velocity, length]",
                i + 1
            ));
        }
        let beat = number(&a[0], "a hit's beat")?;
        if beat < 0.0 {
            return fail(format!(
                "{what}: hit {} is at beat {}, before the pattern starts",
                i + 1,
                fmt_num(beat as f32)
            ));
        }
        let (note, drum) = hit_note(lib, &a[1], drums)?;
        let velocity = match a.get(2) {
            Some(v) => {
                let v = number(v, "velocity")?;
                if !(1.0..=127.0).contains(&v) {
                    return fail(format!("{what}: velocity {} is outside 1..127", fmt_num(v as f32)));
                }
                v as u8
            }
            None => 100,
        };
        let length = match a.get(3) {
            Some(l) => {
                let l = number(l, "a hit's length")?;
                if l <= 0.0 || l > MAX_HIT_LENGTH_BEATS {
                    return fail(format!(
                        "{what}: hit {} has length {l}; lengths are beats, above 0 and at most {}",
                        i + 1,
                        fmt_num(MAX_HIT_LENGTH_BEATS as f32)
                    ));
                }
                Some(l)
            }
            None => None,
        };
        out.push(LibHit { beat, note, velocity, length, drum });
    }
    Ok(out)
}

fn hit_note(lib: &Library, v: &Dynamic, drums: bool) -> Res<(u8, bool)> {
    // (A text is not tried as a number: the error that would say so costs more than
    // the rest of the hit.)
    if (v.is_int() || v.is_float())
        && let Ok(n) = number(v, "a note")
    {
        if n.fract() != 0.0 || !(0.0..=127.0).contains(&n) {
            let shown = fmt_num(n as f32);
            return fail_at(format!("note {shown} is outside the MIDI notes 0..127"), &shown, None);
        }
        return Ok((n as u8, false));
    }
    let name = text(v, "a hit's note")?;
    if let Some(&n) = lib.drum_sounds.get(&drum_key(&name))
        && (drums || parse_note(&name).is_none())
    {
        return Ok((n, true));
    }
    if let Some(n) = parse_note(&name) {
        return Ok((n, false));
    }
    let names = lib.drum_sounds.keys().map(String::as_str);
    let help = if drums {
        did_you_mean(&suggest_many(&name, names))
    } else {
        Some("notes are written like C4, F#2 or Eb3".into())
    };
    fail_at(format!("\"{name}\" is neither a note name nor a drum sound"), &name, help)
}

fn pattern_def(lib: &Library, name: &str, beats: &Dynamic, list: &Array, meter: Option<String>) -> Res<PatternDef> {
    let beats = number(beats, "a pattern's length")?;
    check_pattern_length(name, beats)?;
    let hits = hits(lib, list, true, &format!("pattern {name}"))?;
    check_hits_fit(name, beats, &hits)?;
    Ok(PatternDef { beats, meter, hits })
}

/// A pattern is 1/64 of a beat to 1024 beats long.
fn check_pattern_length(name: &str, beats: f64) -> Res<()> {
    if !(MIN_PATTERN_BEATS..=MAX_PATTERN_BEATS).contains(&beats) {
        return fail(format!(
            "pattern {name} is {} beats long; a pattern is 1/64 of a beat to {} beats",
            if beats != 0.0 && beats.abs() < 1e-3 { format!("{beats:e}") } else { fmt_num(beats as f32) },
            fmt_num(MAX_PATTERN_BEATS as f32)
        ));
    }
    Ok(())
}

/// A hit at or past the pattern's end would never play: say so.
fn check_hits_fit(name: &str, beats: f64, hits: &[LibHit]) -> Res<()> {
    match hits.iter().position(|h| h.beat >= beats) {
        Some(i) => fail(format!(
            "pattern {name}: hit {} is at beat {}, past the pattern's end ({} beats)",
            i + 1,
            fmt_num(hits[i].beat as f32),
            fmt_num(beats as f32)
        )),
        None => Ok(()),
    }
}

/// Adds pattern `name` on `channel` from a library pattern, with options.
fn place_pattern(
    st: &mut EvalState,
    name: &str,
    ch: u8,
    def: PatternDef,
    preset: Option<String>,
    opts: Option<Map>,
) -> Res<()> {
    let Some(spec) = st.set.channels.get(&ch) else {
        return fail(format!(
            "pattern {name} plays on channel {ch}, which the set has not declared (declare it first)"
        ));
    };
    let drums = spec.is_drums();
    if !drums && let Some(h) = def.hits.iter().find(|h| h.drum) {
        let sound = st.lib.drum_name(h.note).unwrap_or("a drum sound").to_string();
        return fail(format!(
            "pattern {name} has drum sounds ({sound}) but channel {ch} plays {}, not drums",
            spec.instrument
        ));
    }
    let mut beats = def.beats;
    let mut hits: Vec<HitSpec> = def.hits.iter().map(hit_spec).collect();
    if let Some(opts) = opts {
        let mut fill: Option<PatternDef> = None;
        let mut every = 4.0;
        for (k, v) in &opts {
            match k.as_str() {
                "fill" => {
                    let f = text(v, "fill")?;
                    match st.lib.fills.get(&f) {
                        Some(d) => fill = Some(d.clone()),
                        None => {
                            let help = did_you_mean(&suggest_many(&f, st.lib.fills.keys().map(String::as_str)));
                            return fail_at(format!("unknown fill \"{f}\""), &f, help);
                        }
                    }
                }
                "every" => {
                    every = number(v, "every")?;
                    if every < 1.0 || every.fract() != 0.0 || every > 64.0 {
                        return fail("every must be a whole number of repeats from 1 to 64");
                    }
                }
                other => {
                    let help = did_you_mean(&suggest_many(other, ["fill", "every"]));
                    return fail_at(format!("unknown pattern option {other} (options: fill, every)"), other, help);
                }
            }
        }
        if let Some(f) = fill {
            // The fill replaces the end of every `every`-th repeat.
            let total = beats * every;
            if f.beats > total {
                return fail(format!(
                    "the fill is {} beats, longer than {} repeats of the {}-beat pattern {name}; raise every",
                    fmt_num(f.beats as f32),
                    fmt_num(every as f32),
                    fmt_num(beats as f32)
                ));
            }
            let fill_at = (total - f.beats).max(0.0);
            let mut all = Vec::new();
            for k in 0..every as usize {
                for h in &hits {
                    let b = h.beat + k as f64 * beats;
                    if b < fill_at {
                        all.push(HitSpec { beat: b, ..*h });
                    }
                }
            }
            all.extend(f.hits.iter().map(|h| HitSpec { beat: fill_at + h.beat, ..hit_spec(h) }));
            hits = all;
            beats = total;
        }
    }
    hits.retain(|h| h.beat < beats);
    st.set.patterns.insert(
        name.to_string(),
        PatternSpec { name: name.to_string(), channel: ch, length_beats: beats, hits, preset },
    );
    Ok(())
}

fn hit_spec(h: &LibHit) -> HitSpec {
    HitSpec {
        beat: h.beat,
        note: h.note,
        velocity: h.velocity,
        length: h.length.unwrap_or(if h.drum { 0.0 } else { DEFAULT_HIT_LENGTH }),
    }
}

/// Signature help for each API function (for "cannot take" errors).
pub fn usage(name: &str) -> Option<&'static str> {
    Some(match name {
        "tempo" => "tempo(bpm)",
        "meter" => "meter(beats_per_bar)",
        "clock" => "clock(\"internal\" | \"midi\" | \"link\"[, quantum])",
        "master" => "master(#{ gain: 0.8, mode: \"softclip\" | \"limiter\" })",
        "channel" => {
            "channel(number, \"instrument\"[, #{ settings }]) or channel(number, #{ synth: ..., ... }) or channel(number, #{ midi_out: \"device\", out_channel: 1 })"
        }
        "midi_out" => "midi_out(\"device\", #{ latency_ms: 10 })",
        "clock_out" => "clock_out(true | false)",
        "drums" => "drums(number[, #{ settings }])",
        "ch" => "ch(number)",
        "cc" => {
            "cc(cc_number, \"parameter\", min, max[, channel | \"any\" | #{ channel: n | \"any\", curve: \"linear\" | \"exp\" }])"
        }
        "pattern" => {
            "pattern(\"name\", channel, \"preset\"[, #{ fill, every }]) or pattern(\"name\", channel, beats, [hits])"
        }
        "define_instrument" => "define_instrument(\"name\", #{ synth: ..., envelope: ..., parameters })",
        "define_envelope" => "define_envelope(\"name\", #{ attack, decay, sustain, release })",
        "define_pattern" | "define_fill" => {
            "define_pattern(\"name\", beats, [[beat, sound, velocity], ...][, \"meter\"])"
        }
        "drum_sound" => "drum_sound(\"name\", note)",
        "drum_alias" => "drum_alias(\"alias\", \"sound\")",
        "gm_program" => "gm_program(program, \"instrument\")",
        "note" => "note(\"C4\")",
        _ => return super::patterns::usage(name).or_else(|| super::sampled::usage(name)),
    })
}

/// Every function a set can call, the pattern functions included (for suggestions).
pub fn all_functions() -> Vec<&'static str> {
    FUNCTIONS.iter().chain(super::patterns::FUNCTIONS).chain(super::sampled::FUNCTIONS).copied().collect()
}

/// Every function a set can call (for suggestions).
pub const FUNCTIONS: &[&str] = &[
    "tempo",
    "meter",
    "clock",
    "master",
    "channel",
    "midi_out",
    "clock_out",
    "drums",
    "ch",
    "cc",
    "pattern",
    "define_instrument",
    "define_envelope",
    "define_pattern",
    "define_fill",
    "drum_sound",
    "drum_alias",
    "gm_program",
    "note",
    "print",
];

/// Registers the set language on `engine`, editing `state`.
pub fn register(engine: &mut Engine, state: &Shared) {
    engine.register_type_with_name::<ChannelRef>("Channel");
    super::patterns::register(engine);
    super::sampled::register(engine, state);

    let s = state.clone();
    engine.register_fn("tempo", move |bpm: Dynamic| -> Res<()> {
        let value = number(&bpm, "tempo")?;
        let range = crate::engine::transport::TEMPO_RANGE_BPM;
        if !range.contains(&value) {
            let (lo, hi) = (fmt_num(*range.start() as f32), fmt_num(*range.end() as f32));
            return fail_at(format!("tempo is {}, outside {lo}..{hi} BPM", fmt_num(value as f32)), &lit(&bpm), None);
        }
        let bpm = value;
        lock(&s).set.tempo_bpm = bpm;
        Ok(())
    });
    let s = state.clone();
    engine.register_fn("meter", move |beats: Dynamic| -> Res<()> {
        let b = number(&beats, "meter")?;
        if !(1.0..=64.0).contains(&b) {
            return fail(format!("meter is {} beats per bar, outside 1..64", fmt_num(b as f32)));
        }
        let mut st = lock(&s);
        st.set.beats_per_bar = b;
        super::patterns::replace_all(&mut st)
    });
    let sync = |s: Shared| {
        move |mode: Dynamic, quantum: Option<Dynamic>| -> Res<()> {
            let m = text(&mode, "clock")?;
            let mode = match m.as_str() {
                "internal" => SyncMode::Internal,
                "midi" => SyncMode::Midi,
                "link" => {
                    let q = match &quantum {
                        Some(q) => number(q, "quantum")?,
                        None => 4.0,
                    };
                    if !(1.0..=64.0).contains(&q) {
                        return fail(format!("quantum is {}, outside 1..64 beats", fmt_num(q as f32)));
                    }
                    SyncMode::Link { quantum: q }
                }
                other => {
                    let help = did_you_mean(&suggest_many(other, ["internal", "midi", "link"]));
                    return fail_at(
                        format!("clock is \"internal\", \"midi\" or \"link\", not \"{other}\""),
                        other,
                        help,
                    );
                }
            };
            lock(&s).set.sync = mode;
            Ok(())
        }
    };
    let f = sync(state.clone());
    engine.register_fn("clock", move |m: Dynamic| f(m, None));
    let f = sync(state.clone());
    engine.register_fn("clock", move |m: Dynamic, q: Dynamic| f(m, Some(q)));

    let s = state.clone();
    engine.register_fn("master", move |map: Map| -> Res<()> {
        let mut st = lock(&s);
        for (k, v) in map {
            match k.as_str() {
                "gain" => {
                    let g = number(&v, "master gain")?;
                    if !(0.0..=4.0).contains(&g) {
                        return fail(format!("master gain is {}, outside 0..4", fmt_num(g as f32)));
                    }
                    st.set.master.gain = g as f32;
                }
                "mode" => {
                    st.set.master.mode = match text(&v, "master mode")?.as_str() {
                        "softclip" => MasterMode::SoftClip,
                        "limiter" => MasterMode::Limiter,
                        other => {
                            return fail_at(
                                format!("master mode is \"softclip\" or \"limiter\", not \"{other}\""),
                                other,
                                None,
                            );
                        }
                    }
                }
                other => {
                    return fail_at(
                        format!("master takes gain and mode, not {other}"),
                        other,
                        did_you_mean(&suggest_many(other, ["gain", "mode"])),
                    );
                }
            }
        }
        Ok(())
    });

    let s = state.clone();
    engine.register_fn("clock_out", move |on: bool| {
        lock(&s).set.clock_out = on;
    });
    let s = state.clone();
    engine.register_fn("midi_out", move |device: Dynamic, map: Map| -> Res<()> {
        let device = text(&device, "midi_out's device")?;
        let mut latency = 0.0;
        for (k, v) in &map {
            match k.as_str() {
                "latency_ms" => {
                    latency = number(v, "latency_ms")?;
                    if !(0.0..=MAX_OUT_LATENCY_MS).contains(&latency) {
                        return fail_at(
                            format!("latency_ms is {}, outside 0..{MAX_OUT_LATENCY_MS}", fmt_num(latency as f32)),
                            &lit(v),
                            None,
                        );
                    }
                }
                other => {
                    return fail_at(format!("midi_out takes latency_ms, not {other}"), other, None);
                }
            }
        }
        let mut st = lock(&s);
        let device = st.set.device_spelling(&device);
        st.set.midi_outs.insert(device, latency as f32);
        Ok(())
    });

    // Channels.
    let s = state.clone();
    engine.register_fn("channel", move |ctx: rhai::NativeCallContext, n: Dynamic, what: Dynamic| -> Res<ChannelRef> {
        let n = channel_number(&n)?;
        let mut st = lock(&s);
        let spec = if let Some(map) = what.clone().try_cast::<Map>()
            && map.contains_key("midi_out")
        {
            let mut spec = external_channel(n, &map)?;
            if let ChannelKind::External { device, channel } = &mut spec.kind {
                *device = st.set.device_spelling(device);
                spec.instrument = format!("midi out {device} ch{channel}");
            }
            spec
        } else if let Some(map) = what.clone().try_cast::<Map>() {
            if map.contains_key("soundfont") {
                let mut spec = super::sampled::font_channel(&st, &map, false)?;
                apply_map(&mut spec, &st.lib, &map)?;
                return declare(&mut st, n, spec, ctx.call_position());
            }
            let Some(synth) = map.get("synth") else {
                return fail("a channel built from a map needs a synth: channel(1, #{ synth: \"saw\", ... })");
            };
            let synth = text(synth, "synth")?;
            let mut spec = ChannelSpec {
                instrument: synth.clone(),
                kind: ChannelKind::Synth { synth },
                params: ParamValues::default(),
                voices: DEFAULT_VOICE_LIMIT,
            };
            if !map.contains_key("envelope") {
                apply_envelope(&mut spec.params, &st.lib, &Dynamic::from("piano".to_string()))?;
            }
            apply_map(&mut spec, &st.lib, &map)?;
            spec
        } else {
            let name = text(&what, "an instrument")?;
            match super::sampled::sample_channel(&st, &name) {
                Some(spec) => spec,
                None => preset_channel(&st.lib, &name)?,
            }
        };
        declare(&mut st, n, spec, ctx.call_position())
    });
    let s = state.clone();
    engine.register_fn(
        "channel",
        move |ctx: rhai::NativeCallContext, n: Dynamic, name: Dynamic, map: Map| -> Res<ChannelRef> {
            let n = channel_number(&n)?;
            let mut st = lock(&s);
            let name = text(&name, "an instrument")?;
            let mut spec = match super::sampled::sample_channel(&st, &name) {
                Some(spec) => spec,
                None => preset_channel(&st.lib, &name)?,
            };
            apply_map(&mut spec, &st.lib, &map)?;
            declare(&mut st, n, spec, ctx.call_position())
        },
    );
    let s = state.clone();
    engine.register_fn("drums", move |ctx: rhai::NativeCallContext, n: Dynamic| -> Res<ChannelRef> {
        let n = channel_number(&n)?;
        let mut st = lock(&s);
        declare(&mut st, n, drum_channel(), ctx.call_position())
    });
    let s = state.clone();
    engine.register_fn("drums", move |ctx: rhai::NativeCallContext, n: Dynamic, map: Map| -> Res<ChannelRef> {
        let n = channel_number(&n)?;
        let mut st = lock(&s);
        let mut spec =
            if map.contains_key("soundfont") { super::sampled::font_channel(&st, &map, true)? } else { drum_channel() };
        apply_map(&mut spec, &st.lib, &map)?;
        declare(&mut st, n, spec, ctx.call_position())
    });
    engine.register_type_with_name::<Channels>("Channels");
    let s = state.clone();
    engine.register_indexer_get(move |_: &mut Channels, n: INT| -> Res<ChannelRef> {
        let n = channel_number(&Dynamic::from(n))?;
        if !lock(&s).set.channels.contains_key(&n) {
            return fail(format!("channel {n} is not in the rig"));
        }
        Ok(ChannelRef { number: n })
    });
    engine.register_indexer_set(|_: &mut Channels, _: INT, _: ChannelRef| {});
    engine.register_indexer_get(|_: &mut Channels, key: Dynamic| -> Res<ChannelRef> {
        channel_number(&key).map(|number| ChannelRef { number })
    });
    let s = state.clone();
    engine.register_fn("ch", move |n: Dynamic| -> Res<ChannelRef> {
        let n = channel_number(&n)?;
        if !lock(&s).set.channels.contains_key(&n) {
            return fail(format!("channel {n} is not in the rig"));
        }
        Ok(ChannelRef { number: n })
    });

    // Channel properties: every parameter, plus voices/envelope/synth/instrument.
    for info in PARAMS {
        let p = Param::from_name(info.name).expect("table is consistent");
        let (g, st_set) = (state.clone(), state.clone());
        engine.register_get_set(
            info.name,
            move |c: &mut ChannelRef| -> Res<Dynamic> {
                let st = lock(&g);
                match st.set.channels.get(&c.number) {
                    Some(spec) => Ok(get_param(&spec.params, p)),
                    None => fail(format!("channel {} is no longer in the rig", c.number)),
                }
            },
            move |c: &mut ChannelRef, v: Dynamic| -> Res<()> {
                let mut st = lock(&st_set);
                match st.set.channels.get_mut(&c.number) {
                    Some(spec) => at_token(set_param(&mut spec.params, p, &v), p.name()),
                    None => fail(format!("channel {} is no longer in the rig", c.number)),
                }
            },
        );
    }
    let g = state.clone();
    engine.register_get("voices", move |c: &mut ChannelRef| -> INT {
        lock(&g).set.channels.get(&c.number).map(|s| s.voices as INT).unwrap_or(0)
    });
    let s = state.clone();
    engine.register_set("voices", move |c: &mut ChannelRef, v: Dynamic| -> Res<()> {
        let n = voices(&v)?;
        if let Some(spec) = lock(&s).set.channels.get_mut(&c.number) {
            spec.voices = n;
        }
        Ok(())
    });
    let s = state.clone();
    engine.register_set("envelope", move |c: &mut ChannelRef, v: Dynamic| -> Res<()> {
        let mut st = lock(&s);
        let EvalState { set, lib, .. } = &mut *st;
        match set.channels.get_mut(&c.number) {
            Some(spec) => apply_envelope(&mut spec.params, lib, &v),
            None => fail(format!("channel {} is not in the rig", c.number)),
        }
    });
    let s = state.clone();
    engine.register_set("synth", move |c: &mut ChannelRef, v: Dynamic| -> Res<()> {
        let name = text(&v, "synth")?;
        check_synth(&name, &name)?;
        let mut st = lock(&s);
        match st.set.channels.get_mut(&c.number) {
            Some(spec) if !spec.is_drums() => {
                spec.instrument = name.clone();
                spec.kind = ChannelKind::Synth { synth: name };
                Ok(())
            }
            Some(_) => fail("a drum channel plays the drum kit; it has no synth"),
            None => fail(format!("channel {} is not in the rig", c.number)),
        }
    });
    let g = state.clone();
    engine.register_get("instrument", move |c: &mut ChannelRef| -> String {
        lock(&g).set.channels.get(&c.number).map(|s| s.instrument.clone()).unwrap_or_default()
    });
    engine.register_get("number", |c: &mut ChannelRef| c.number as INT);
    engine.register_fn("to_string", |c: &mut ChannelRef| format!("channel {}", c.number));

    // CC mappings.
    let cc = |s: Shared| {
        move |n: Dynamic, param: Dynamic, min: Dynamic, max: Dynamic, opts: Option<Dynamic>| -> Res<()> {
            let raw = n;
            let n = number(&raw, "a CC number")?;
            if n.fract() != 0.0 || !(0.0..=127.0).contains(&n) {
                return fail_at(format!("CC number {} is outside 0..127", fmt_num(n as f32)), &lit(&raw), None);
            }
            let name = text(&param, "a parameter name")?;
            let Some(p) = Param::from_name(&name) else {
                return unknown_param(&name);
            };
            if matches!(p.info().kind, Kind::Choice(_) | Kind::Toggle) {
                return fail(format!("{name} is not a number and cannot follow a CC"));
            }
            let (lo, hi) = (number(&min, "min")? as f32, number(&max, "max")? as f32);
            for v in [lo, hi] {
                if let Err(msg) = p.check(v) {
                    return fail(format!("cc {}: {msg}", n as u8));
                }
            }
            let mut channel = None;
            let mut any = false;
            // A channel number, or "any": every channel, whatever channel the CC comes on.
            let mut target = |v: &Dynamic| -> Res<()> {
                if v.is_string() && v.clone().into_string().is_ok_and(|t| t == "any") {
                    any = true;
                    Ok(())
                } else {
                    channel = Some(channel_number(v)?);
                    Ok(())
                }
            };
            let mut exponential = p.info().exponential && lo > 0.0 && hi > 0.0;
            match &opts {
                Some(o) if o.is_map() => {
                    for (k, v) in o.clone().cast::<Map>() {
                        match k.as_str() {
                            "channel" => target(&v)?,
                            "curve" => {
                                exponential = match text(&v, "curve")?.as_str() {
                                    "linear" => false,
                                    "exp" | "exponential" => {
                                        if lo <= 0.0 || hi <= 0.0 {
                                            return fail("an exponential curve needs min and max above 0");
                                        }
                                        true
                                    }
                                    other => {
                                        return fail_at(
                                            format!("curve is \"linear\" or \"exp\", not \"{other}\""),
                                            other,
                                            None,
                                        );
                                    }
                                }
                            }
                            other => {
                                return fail_at(format!("cc options are channel and curve, not {other}"), other, None);
                            }
                        }
                    }
                }
                Some(o) => target(o)?,
                None => {}
            }
            let mut st = lock(&s);
            let spec = CcSpec { cc: n as u8, param: p, min: lo, max: hi, channel, any, exponential };
            // A later mapping of the same CC, channel and parameter replaces the earlier one.
            st.set.cc_map.retain(|c| !(c.cc == spec.cc && c.channel == spec.channel && c.param == spec.param));
            st.set.cc_map.push(spec);
            Ok(())
        }
    };
    let f = cc(state.clone());
    engine.register_fn("cc", move |n: Dynamic, p: Dynamic, lo: Dynamic, hi: Dynamic| f(n, p, lo, hi, None));
    let f = cc(state.clone());
    engine.register_fn("cc", move |n: Dynamic, p: Dynamic, lo: Dynamic, hi: Dynamic, o: Dynamic| {
        f(n, p, lo, hi, Some(o))
    });

    // Patterns.
    let pat = |s: Shared| {
        move |name: Dynamic, ch: Dynamic, what: Dynamic, list: Option<Array>, opts: Option<Map>| -> Res<()> {
            let name = text(&name, "a pattern name")?;
            let ch = channel_number(&ch)?;
            let mut st = lock(&s);
            if let Some(p) = what.clone().try_cast::<super::patterns::MiniPattern>() {
                return super::patterns::place(&mut st, &name, ch, &p, opts);
            }
            st.minis.patterns.remove(&name);
            match list {
                None => {
                    let preset = text(&what, "a pattern preset")?;
                    let Some(def) = st.lib.patterns.get(&preset).cloned() else {
                        let help = did_you_mean(&suggest_many(&preset, st.lib.patterns.keys().map(String::as_str)));
                        return fail_at(format!("unknown pattern \"{preset}\""), &preset, help);
                    };
                    place_pattern(&mut st, &name, ch, def, Some(preset), opts)
                }
                Some(list) => {
                    let drums = st.set.channels.get(&ch).is_some_and(|c| c.is_drums());
                    let beats = number(&what, "a pattern's length in beats")?;
                    check_pattern_length(&name, beats)?;
                    let hits = hits(&st.lib, &list, drums, &format!("pattern {name}"))?;
                    check_hits_fit(&name, beats, &hits)?;
                    place_pattern(&mut st, &name, ch, PatternDef { beats, meter: None, hits }, None, opts)
                }
            }
        }
    };
    let f = pat(state.clone());
    engine.register_fn("pattern", move |n: Dynamic, c: Dynamic, p: Dynamic| f(n, c, p, None, None));
    let f = pat(state.clone());
    engine.register_fn("pattern", move |n: Dynamic, c: Dynamic, p: Dynamic, o: Map| f(n, c, p, None, Some(o)));
    let f = pat(state.clone());
    engine.register_fn("pattern", move |n: Dynamic, c: Dynamic, b: Dynamic, l: Array| f(n, c, b, Some(l), None));
    let f = pat(state.clone());
    engine.register_fn("pattern", move |n: Dynamic, c: Dynamic, b: Dynamic, l: Array, o: Map| {
        f(n, c, b, Some(l), Some(o))
    });

    // Library definitions (the stdlib uses these; sets may too).
    let s = state.clone();
    engine.register_fn("define_instrument", move |name: Dynamic, map: Map| define_instrument(&s, name, map));
    let s = state.clone();
    engine.register_fn("define_envelope", move |name: Dynamic, map: Map| define_envelope(&s, name, map));
    let s = state.clone();
    engine.register_fn("drum_sound", move |name: Dynamic, note: Dynamic| drum_sound(&s, name, note));
    let s = state.clone();
    engine.register_fn("drum_alias", move |alias: Dynamic, target: Dynamic| drum_alias(&s, alias, target));
    for (fname, fills) in [("define_pattern", false), ("define_fill", true)] {
        let s = state.clone();
        engine.register_fn(fname, move |n: Dynamic, b: Dynamic, l: Array| define_pattern(&s, fills, n, b, l, None));
        let s = state.clone();
        engine.register_fn(fname, move |n: Dynamic, b: Dynamic, l: Array, m: Dynamic| {
            define_pattern(&s, fills, n, b, l, Some(m))
        });
    }
    let s = state.clone();
    engine.register_fn("gm_program", move |program: Dynamic, name: Dynamic| gm_program(&s, program, name));
    engine.register_fn("note", |name: Dynamic| -> Res<INT> {
        if name.is_int() || name.is_float() {
            let n = number(&name, "a note")?;
            if n.fract() != 0.0 || !(0.0..=127.0).contains(&n) {
                return fail_at(format!("note {n} is outside the MIDI notes 0..127"), &lit(&name), None);
            }
            return Ok(n as INT);
        }
        let s = text(&name, "a note name")?;
        match parse_note(&s) {
            Some(n) => Ok(n as INT),
            None => fail_at(format!("\"{s}\" is not a note name (like C4, F#2 or Eb3)"), &s, None),
        }
    });
}

/// Calls one of the library definitions (`define_instrument`, `define_envelope`,
/// `drum_sound`, `drum_alias`, `define_pattern`, `define_fill`, `gm_program`) as a
/// set's call of it with these arguments would: `None` if no such function takes
/// these arguments (Rhai would not find one to call).
pub(crate) fn library_call(s: &Shared, name: &str, args: Vec<Dynamic>) -> Option<Res<()>> {
    let mut args = args.into_iter();
    let (a, b, c, d) = (args.next(), args.next(), args.next(), args.next());
    if args.next().is_some() {
        return None;
    }
    let map = |m: Dynamic| m.try_cast::<Map>();
    let array = |l: Dynamic| l.try_cast::<Array>();
    Some(match (name, a, b, c, d) {
        ("define_instrument", Some(a), Some(b), None, None) => define_instrument(s, a, map(b)?),
        ("define_envelope", Some(a), Some(b), None, None) => define_envelope(s, a, map(b)?),
        ("drum_sound", Some(a), Some(b), None, None) => drum_sound(s, a, b),
        ("drum_alias", Some(a), Some(b), None, None) => drum_alias(s, a, b),
        ("define_pattern" | "define_fill", Some(a), Some(b), Some(c), d) => {
            define_pattern(s, name == "define_fill", a, b, array(c)?, d)
        }
        ("gm_program", Some(a), Some(b), None, None) => gm_program(s, a, b),
        _ => return None,
    })
}

fn define_instrument(s: &Shared, name: Dynamic, map: Map) -> Res<()> {
    let name = text(&name, "an instrument name")?;
    let mut st = lock(s);
    let Some(synth) = map.get("synth") else {
        return fail(format!("instrument {name} needs a synth"));
    };
    let mut def = InstrumentDef { synth: text(synth, "synth")?, envelope: None, params: Vec::new() };
    let mut scratch = ParamValues::default();
    let mut range = None;
    for (k, v) in &map {
        match k.as_str() {
            "synth" => {}
            "range" => range = Some(note_range(v)?),
            "envelope" => {
                let e = text(v, "envelope")?;
                if !st.lib.envelopes.contains_key(&e) {
                    let help = did_you_mean(&suggest_many(&e, st.lib.envelopes.keys().map(String::as_str)));
                    return fail_at(format!("unknown envelope \"{e}\""), &e, help);
                }
                def.envelope = Some(e);
            }
            "synth_kw" => {
                for p in synth_kw(&mut scratch, v)? {
                    def.params.push((p, scratch.get(p)));
                }
            }
            pname => {
                let Some(p) = Param::from_name(pname) else {
                    return unknown_param(pname);
                };
                set_param(&mut scratch, p, v)?;
                def.params.push((p, scratch.get(p)));
            }
        }
    }
    match range {
        Some(r) => st.lib.ranges.insert(name.clone(), r),
        None => st.lib.ranges.remove(&name),
    };
    st.lib.instruments.insert(name, def);
    Ok(())
}

fn define_envelope(s: &Shared, name: Dynamic, map: Map) -> Res<()> {
    let name = text(&name, "an envelope name")?;
    let mut v = ParamValues::default();
    for k in ["attack", "decay", "sustain", "release"] {
        if !map.contains_key(k) {
            return fail(format!("envelope {name} needs attack, decay, sustain and release ({k} is missing)"));
        }
    }
    apply_envelope(&mut v, &lock(s).lib, &Dynamic::from(map))?;
    let def = EnvelopeDef {
        attack: v.get(Param::Attack),
        decay: v.get(Param::Decay),
        sustain: v.get(Param::Sustain),
        release: v.get(Param::Release),
    };
    lock(s).lib.envelopes.insert(name, def);
    Ok(())
}

fn drum_sound(s: &Shared, name: Dynamic, note: Dynamic) -> Res<()> {
    let name = drum_key(&text(&name, "a drum sound name")?);
    let n = number(&note, "a MIDI note")?;
    if n.fract() != 0.0 || !(0.0..=127.0).contains(&n) {
        return fail(format!("drum note {} is outside 0..127", fmt_num(n as f32)));
    }
    lock(s).lib.drum_sounds.insert(name, n as u8);
    Ok(())
}

fn drum_alias(s: &Shared, alias: Dynamic, target: Dynamic) -> Res<()> {
    let (alias, target) = (drum_key(&text(&alias, "an alias")?), drum_key(&text(&target, "a drum sound")?));
    let mut st = lock(s);
    match st.lib.drum_sounds.get(&target).copied() {
        Some(n) => {
            st.lib.drum_sounds.insert(alias, n);
            Ok(())
        }
        None => fail_at(format!("unknown drum sound \"{target}\""), &target, None),
    }
}

fn define_pattern(
    s: &Shared,
    fills: bool,
    name: Dynamic,
    beats: Dynamic,
    list: Array,
    meter: Option<Dynamic>,
) -> Res<()> {
    let name = text(&name, "a pattern name")?;
    let meter = meter.map(|m| text(&m, "a meter")).transpose()?;
    let mut st = lock(s);
    let def = pattern_def(&st.lib, &name, &beats, &list, meter)?;
    if fills {
        st.lib.fills.insert(name, def);
    } else {
        st.lib.patterns.insert(name, def);
    }
    Ok(())
}

fn gm_program(s: &Shared, program: Dynamic, name: Dynamic) -> Res<()> {
    let p = number(&program, "a program number")?;
    if p.fract() != 0.0 || !(0.0..=127.0).contains(&p) {
        return fail(format!("program {} is outside 0..127", fmt_num(p as f32)));
    }
    let name = text(&name, "an instrument name")?;
    let mut st = lock(s);
    if !st.lib.instruments.contains_key(&name) {
        let help = did_you_mean(&suggest_many(&name, st.lib.instruments.keys().map(String::as_str)));
        return fail_at(format!("unknown instrument \"{name}\""), &name, help);
    }
    st.lib.gm.insert(p as u8, name);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::rewrite_channel_access as rw;

    #[test]
    fn channel_access_rewrite_keeps_columns() {
        assert_eq!(rw("ch(2).lowpass = 900;"), "c_[2].lowpass = 900;");
        assert_eq!(rw("ch(2).reverb = ch(3).reverb + 0.1;"), "c_[2].reverb = c_[3].reverb + 0.1;");
        assert_eq!(rw("ch(2) .reverb = 1;"), "c_[2] .reverb = 1;");
        assert_eq!(rw("print(\"a \\\" b\"); ch(2).x = 1;"), "print(\"a \\\" b\"); c_[2].x = 1;");
        assert_eq!(rw("let c = ch(2);"), "let c = ch(2);");
        assert_eq!(rw("print(\"ch(2).x\"); // ch(1).y"), "print(\"ch(2).x\"); // ch(1).y");
        assert_eq!(rw("mych(2).x"), "mych(2).x");
        assert_eq!(rw("ch(note(\"C4\")).x"), "ch(note(\"C4\")).x");
    }
}
