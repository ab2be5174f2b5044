//! The set language's patterns in mini-notation: `mini("bd*2 [~ sn]")`, the
//! transforms (`fast`, `every`, `euclid`, ...) as Rhai functions and methods, and
//! the expansion of such a pattern into a pattern's hits (one cycle per bar of the
//! set's meter). Control thread (during evaluation).

use super::api::EvalState;
use super::diagnostic::{did_you_mean, suggest_many};
use super::library::{Library, drum_key};
use super::mini::build::patterned;
use super::mini::frac::Frac;
use super::mini::pattern::{self, Pattern, Props, Value, pure, rand, silence};
use super::mini::value::{SHORT_DRUMS, drum_number, note_number};
use super::mini::{self, MAX_CYCLES, MiniError};
use crate::params::fmt_num;
use crate::rig::set::{HitSpec, PatternSpec};
use rhai::{Array, Dynamic, Engine, EvalAltResult, FLOAT, FnPtr, INT, Map, NativeCallContext, Position};
use std::ops::Range;
use std::sync::Arc;

type Res<T> = Result<T, Box<EvalAltResult>>;

/// Longest pattern, in beats, that mini-notation expands to (as for written patterns).
pub const MAX_PATTERN_BEATS: f64 = 1024.0;
/// Velocity of an event that has none.
pub const DEFAULT_VELOCITY: u8 = 100;

/// A pattern as a script value (the Rhai type `Pattern`).
#[derive(Clone, Debug)]
pub struct MiniPattern {
    pub pat: Pattern,
}

/// An error in a pattern, carrying the string it is about so that the report can
/// put its caret on the character inside the string.
#[derive(Clone, Debug)]
pub struct MiniFailure {
    pub message: String,
    /// The mini-notation string and the byte range in it.
    pub at: Option<(String, Range<usize>)>,
}

impl From<MiniError> for MiniFailure {
    fn from(e: MiniError) -> Self {
        MiniFailure { message: e.message, at: e.at.map(|l| (l.source.to_string(), l.at)) }
    }
}

fn fail<T>(e: impl Into<MiniFailure>) -> Res<T> {
    Err(EvalAltResult::ErrorRuntime(Dynamic::from(e.into()), Position::NONE).into())
}

fn fail_msg<T>(message: impl Into<String>) -> Res<T> {
    fail(MiniFailure { message: message.into(), at: None })
}

impl From<String> for MiniFailure {
    fn from(message: String) -> Self {
        MiniFailure { message, at: None }
    }
}

/// The 1-based line and column of the character at byte `offset` of the string
/// `text` as written in `source` (in quotes or backticks), searching from byte
/// `from` on and then from the start; None if the string is not written out there.
pub fn locate_in_source(source: &str, from: usize, text: &str, offset: usize) -> Option<(usize, usize)> {
    let candidates = [format!("\"{text}\""), format!("`{text}`")];
    let from = from.min(source.len());
    let found = candidates.iter().find_map(|lit| {
        source.get(from..).and_then(|s| s.find(lit.as_str())).map(|i| i + from).or_else(|| source.find(lit.as_str()))
    })?;
    let at = found + 1 + offset.min(text.len());
    let line_start = source[..at].rfind('\n').map(|i| i + 1).unwrap_or(0);
    let line = source[..at].matches('\n').count() + 1;
    Some((line, source[line_start..at].chars().count() + 1))
}

// ---- conversions ----

fn kind(d: &Dynamic) -> &'static str {
    if d.is_string() {
        "text"
    } else if d.is_int() || d.is_float() {
        "a number"
    } else if d.is_array() {
        "a list"
    } else if d.is_map() {
        "a map"
    } else {
        "a value"
    }
}

/// A pattern from a script value: a pattern, a mini-notation string or a number.
fn to_pattern(d: &Dynamic, what: &str) -> Res<Pattern> {
    if let Some(p) = d.clone().try_cast::<MiniPattern>() {
        return Ok(p.pat);
    }
    if let Ok(s) = d.clone().into_immutable_string() {
        return mini::read(&s).or_else(fail);
    }
    if let Some(n) = number(d) {
        return Ok(pure(Value::Num(n)));
    }
    fail_msg(format!("{what} must be a pattern, a mini-notation string or a number, not {}", kind(d)))
}

fn number(d: &Dynamic) -> Option<f64> {
    d.clone().try_cast::<INT>().map(|i| i as f64).or_else(|| d.clone().try_cast::<FLOAT>())
}

fn wrap(pat: Pattern) -> Res<MiniPattern> {
    mini::check(&pat).or_else(fail)?;
    Ok(MiniPattern { pat })
}

/// A factor or a time from an event's value, recording a fault otherwise.
fn arg_frac(v: &Value, what: &str, negative_ok: bool) -> Option<Frac> {
    match v.num() {
        Some(n) if n.is_finite() && (negative_ok || n >= 0.0) => Some(Frac::from_f64(n)),
        _ => {
            let need = if negative_ok { "a number" } else { "a number of 0 or more" };
            mini::fault::fault(mini::fault::Fault::Value {
                message: format!("{what} must be {need}, not {}", v.show()),
                at: None,
            });
            None
        }
    }
}

/// `f(subject, value)` with a patterned argument (a number or a mini string).
fn with_arg(
    subject: &Dynamic,
    arg: &Dynamic,
    what: &'static str,
    f: impl Fn(&Pattern, &Value) -> Pattern + Send + Sync + Clone + 'static,
) -> Res<MiniPattern> {
    let p = to_pattern(subject, "the pattern")?;
    let a = to_pattern(arg, what)?;
    wrap(patterned(vec![a], move |p, v| f(p, &v[0]))(&p))
}

fn whole(n: &Dynamic, what: &str, lo: i64, hi: i64) -> Res<i64> {
    match number(n) {
        Some(x) if x.fract() == 0.0 && (lo as f64..=hi as f64).contains(&x) => Ok(x as i64),
        _ => fail_msg(format!("{what} must be a whole number from {lo} to {hi}")),
    }
}

fn probability(x: &Dynamic, what: &str) -> Res<f64> {
    match number(x) {
        Some(p) if (0.0..=1.0).contains(&p) => Ok(p),
        _ => fail_msg(format!("{what} takes a probability from 0 to 1")),
    }
}

fn call(ctx: &NativeCallContext, f: &FnPtr, p: Pattern) -> Res<Pattern> {
    let r: Dynamic = f.call_within_context(ctx, (MiniPattern { pat: p },))?;
    to_pattern(&r, "what the function returns")
}

/// Patterns from a list or from separate arguments.
fn patterns(args: &[Dynamic]) -> Res<Vec<Pattern>> {
    let mut out = Vec::new();
    for a in args {
        match a.clone().try_cast::<Array>() {
            Some(list) => {
                for x in &list {
                    out.push(to_pattern(x, "each part")?);
                }
            }
            None => out.push(to_pattern(a, "each part")?),
        }
    }
    Ok(out)
}

/// `a + n` on a value: notes become MIDI numbers (as Strudel's `add`).
fn transposed(v: &Value, n: &Value) -> Option<Value> {
    let k = match n {
        Value::Num(k) => *k,
        Value::Props(p) => return transposed(v, &p.base),
        other => {
            mini::fault::fault(mini::fault::Fault::Value {
                message: format!("transpose adds numbers, not {}", other.show()),
                at: None,
            });
            return None;
        }
    };
    Some(match v {
        Value::Num(x) => Value::Num(x + k),
        Value::Word(w, at) => match note_number(w) {
            Some(x) => Value::Num(x as f64 + k),
            None => {
                mini::fault::fault(mini::fault::Fault::Value {
                    message: format!("transpose works on notes and numbers; \"{w}\" is not a note name"),
                    at: at.clone(),
                });
                return None;
            }
        },
        Value::List(l) => {
            let mut l = (**l).clone();
            l[0] = transposed(&l[0], n)?;
            Value::List(Arc::new(l))
        }
        Value::Props(p) => Value::Props(Arc::new(Props { base: transposed(&p.base, n)?, ..(**p).clone() })),
    })
}

/// Sets the velocity or the length of each event from `other`'s values.
fn with_props(p: &Pattern, other: &Pattern, velocity: bool) -> Pattern {
    p.app_left(other, move |a, b| {
        let x = match b {
            Value::Num(x) => *x,
            other => {
                let what = if velocity { "a velocity" } else { "a length" };
                mini::fault::fault(mini::fault::Fault::Value {
                    message: format!("{what} must be a number, not {}", other.show()),
                    at: match other {
                        Value::Word(_, at) => at.clone(),
                        _ => None,
                    },
                });
                return None;
            }
        };
        let mut props = match a {
            Value::Props(p) => (**p).clone(),
            base => Props { base: base.clone(), velocity: None, length: None },
        };
        if velocity {
            props.velocity = Some(x);
        } else {
            props.length = Some(x);
        }
        Some(Value::Props(Arc::new(props)))
    })
}

fn mini_with(text: &str, opts: &Map) -> Res<MiniPattern> {
    let mut p = mini::read(text).or_else(fail)?;
    for (k, v) in opts {
        match k.as_str() {
            "velocity" | "length" => {
                let other = to_pattern(v, k)?;
                p = with_props(&p, &other, k == "velocity");
            }
            other => {
                let help = did_you_mean(&suggest_many(other, ["velocity", "length"]));
                let help = help.map(|h| format!(" ({h})")).unwrap_or_default();
                return fail_msg(format!("mini options are velocity and length, not {other}{help}"));
            }
        }
    }
    wrap(p)
}

/// Every function this module adds to the set language (for suggestions).
pub const FUNCTIONS: &[&str] = &[
    "mini",
    "fast",
    "slow",
    "rev",
    "every",
    "shift",
    "late",
    "early",
    "stack",
    "cat",
    "slowcat",
    "fastcat",
    "seq",
    "euclid",
    "degrade_by",
    "degrade",
    "sometimes",
    "sometimes_by",
    "ply",
    "palindrome",
    "transpose",
    "add",
    "struct",
    "mask",
    "velocity",
    "length",
];

/// Registers `mini` and the transforms.
pub fn register(engine: &mut Engine) {
    engine.register_type_with_name::<MiniPattern>("Pattern");
    engine.register_fn("to_string", |_: &mut MiniPattern| "pattern".to_string());
    engine.register_fn("mini", |s: &str| -> Res<MiniPattern> { mini_with(s, &Map::new()) });
    engine.register_fn("mini", |s: &str, opts: Map| -> Res<MiniPattern> { mini_with(s, &opts) });

    engine.register_fn("fast", |p: Dynamic, x: Dynamic| {
        with_arg(&p, &x, "fast's factor", |p, v| {
            arg_frac(v, "fast's factor", false).map_or_else(silence, |f| p.fast(f))
        })
    });
    engine.register_fn("slow", |p: Dynamic, x: Dynamic| {
        with_arg(&p, &x, "slow's factor", |p, v| {
            arg_frac(v, "slow's factor", false).map_or_else(silence, |f| p.slow(f))
        })
    });
    for name in ["late", "shift"] {
        engine.register_fn(name, |p: Dynamic, x: Dynamic| {
            with_arg(&p, &x, "the shift", |p, v| arg_frac(v, "the shift", true).map_or_else(silence, |t| p.late(t)))
        });
    }
    engine.register_fn("early", |p: Dynamic, x: Dynamic| {
        with_arg(&p, &x, "the shift", |p, v| arg_frac(v, "the shift", true).map_or_else(silence, |t| p.early(t)))
    });
    engine.register_fn("ply", |p: Dynamic, x: Dynamic| {
        with_arg(&p, &x, "ply's count", |p, v| arg_frac(v, "ply's count", false).map_or_else(silence, |n| p.ply(n)))
    });
    engine.register_fn("rev", |p: Dynamic| wrap(to_pattern(&p, "the pattern")?.rev()));
    engine.register_fn("palindrome", |p: Dynamic| wrap(to_pattern(&p, "the pattern")?.palindrome()));
    engine.register_fn("every", |ctx: NativeCallContext, p: Dynamic, n: Dynamic, f: FnPtr| -> Res<MiniPattern> {
        let n = whole(&n, "every's count", 1, 1024)?;
        let p = to_pattern(&p, "the pattern")?;
        let changed = call(&ctx, &f, p.clone())?;
        wrap(p.every(n as usize, |_| changed.clone()))
    });
    let euclid = |p: Dynamic, args: Vec<Dynamic>| -> Res<MiniPattern> {
        let p = to_pattern(&p, "the pattern")?;
        let args = args.iter().map(|a| to_pattern(a, "euclid's counts")).collect::<Res<Vec<_>>>()?;
        wrap(patterned(args, |p, v| match (v[0].num(), v[1].num()) {
            (Some(k), Some(n)) => p.euclid(k, n, v.get(2).and_then(Value::num).unwrap_or(0.0), None),
            _ => {
                mini::fault::fault(mini::fault::Fault::Value {
                    message: "euclid takes numbers of pulses and steps".into(),
                    at: None,
                });
                silence()
            }
        })(&p))
    };
    engine.register_fn("euclid", move |p: Dynamic, k: Dynamic, n: Dynamic| euclid(p, vec![k, n]));
    engine.register_fn("euclid", move |p: Dynamic, k: Dynamic, n: Dynamic, r: Dynamic| euclid(p, vec![k, n, r]));
    for name in ["degrade_by", "degradeBy"] {
        engine.register_fn(name, |p: Dynamic, x: Dynamic| -> Res<MiniPattern> {
            let x = probability(&x, "degrade_by")?;
            wrap(to_pattern(&p, "the pattern")?.degrade_by_with(&rand(), x))
        });
    }
    engine.register_fn("degrade", |p: Dynamic| wrap(to_pattern(&p, "the pattern")?.degrade_by_with(&rand(), 0.5)));
    let sometimes = |ctx: &NativeCallContext, p: Dynamic, x: f64, f: FnPtr| -> Res<MiniPattern> {
        let p = to_pattern(&p, "the pattern")?;
        let kept = p.degrade_by_with(&rand(), x);
        let other = p.degrade_by_with(&rand().fmap(|r| Value::Num(1.0 - r.num().unwrap_or(0.0))), 1.0 - x);
        wrap(pattern::stack(vec![kept, call(ctx, &f, other)?]))
    };
    engine.register_fn("sometimes", move |ctx: NativeCallContext, p: Dynamic, f: FnPtr| sometimes(&ctx, p, 0.5, f));
    for name in ["sometimes_by", "sometimesBy"] {
        engine.register_fn(name, move |ctx: NativeCallContext, p: Dynamic, x: Dynamic, f: FnPtr| {
            let x = probability(&x, "sometimes_by")?;
            sometimes(&ctx, p, x, f)
        });
    }
    for name in ["transpose", "add"] {
        engine.register_fn(name, |p: Dynamic, n: Dynamic| -> Res<MiniPattern> {
            let p = to_pattern(&p, "the pattern")?;
            let n = to_pattern(&n, "the interval")?;
            wrap(p.app_left(&n, transposed))
        });
    }
    engine.register_fn("struct", |p: Dynamic, s: Dynamic| -> Res<MiniPattern> {
        wrap(to_pattern(&p, "the pattern")?.keep_if_out(&to_pattern(&s, "the structure")?))
    });
    engine.register_fn("mask", |p: Dynamic, s: Dynamic| -> Res<MiniPattern> {
        wrap(to_pattern(&p, "the pattern")?.keep_if_in(&to_pattern(&s, "the mask")?))
    });
    for (name, velocity) in [("velocity", true), ("length", false)] {
        engine.register_fn(name, move |p: Dynamic, v: Dynamic| -> Res<MiniPattern> {
            let p = to_pattern(&p, "the pattern")?;
            wrap(with_props(&p, &to_pattern(&v, name)?, velocity))
        });
    }
    type Combine = fn(Vec<Pattern>) -> Pattern;
    let combiners: [(&str, Combine); 6] = [
        ("stack", pattern::stack),
        ("cat", pattern::slowcat),
        ("slowcat", pattern::slowcat),
        ("fastcat", pattern::fastcat),
        ("seq", pattern::fastcat),
        ("sequence", pattern::fastcat),
    ];
    for (name, f) in combiners {
        engine.register_fn(name, move |a: Array| wrap(f(patterns(&a)?)));
        engine.register_fn(name, move |a: Dynamic, b: Dynamic| wrap(f(patterns(&[a, b])?)));
        engine.register_fn(name, move |a: Dynamic, b: Dynamic, c: Dynamic| wrap(f(patterns(&[a, b, c])?)));
        engine
            .register_fn(name, move |a: Dynamic, b: Dynamic, c: Dynamic, d: Dynamic| wrap(f(patterns(&[a, b, c, d])?)));
    }
}

/// Resolves a value to a MIDI note on a drum or melodic channel.
/// `notes` gathers what the set should be told (an index that picks nothing).
fn note_of(lib: &Library, v: &Value, drums: bool, notes: &mut Vec<String>) -> Result<u8, MiniError> {
    let at = |v: &Value| match v {
        Value::Word(_, at) => at.clone(),
        _ => None,
    };
    match v {
        Value::Props(p) => note_of(lib, &p.base, drums, notes),
        Value::List(l) => {
            let Some(i) = l.get(1) else { return note_of(lib, &l[0], drums, notes) };
            let Some(index) = i.num() else {
                return Err(MiniError {
                    message: format!("the index after ':' must be a number, not {}", i.show()),
                    at: at(i),
                });
            };
            match &l[0] {
                Value::Word(w, loc) if drums => indexed_drum(lib, w, index, loc, notes),
                base => note_of(lib, base, drums, notes),
            }
        }
        Value::Num(n) => {
            if n.fract() == 0.0 && (0.0..=127.0).contains(n) {
                Ok(*n as u8)
            } else {
                Err(MiniError { message: format!("{} is not a MIDI note (0 to 127)", fmt_num(*n as f32)), at: None })
            }
        }
        Value::Word(w, loc) if drums => drum_number(lib, w).ok_or_else(|| {
            let names = lib.drum_sounds.keys().map(String::as_str).chain(SHORT_DRUMS.iter().map(|(s, _)| *s));
            let help = did_you_mean(&suggest_many(w, names)).map(|h| format!(" ({h})")).unwrap_or_default();
            MiniError { message: format!("unknown drum sound \"{w}\"{help}"), at: loc.clone() }
        }),
        Value::Word(w, loc) => match note_number(w) {
            Some(n) if (0..=127).contains(&n) => Ok(n as u8),
            Some(n) => Err(MiniError { message: format!("{w} is MIDI note {n}, outside 0..127"), at: loc.clone() }),
            None => Err(MiniError {
                message: format!("\"{w}\" is not a note name (like c4, eb3 or a#2) on a melodic channel"),
                at: loc.clone(),
            }),
        },
    }
}

/// `word:index` on a drum channel (`bd:3`): sample `index` of the numbered bank the
/// set loaded as `word` (`samples("bd", "folder")` names its files bd:0, bd:1, ...),
/// the index wrapping around the bank as in Strudel; without such a bank, the drum
/// sound `word` itself, and a note that the index picks nothing.
fn indexed_drum(
    lib: &Library,
    word: &str,
    index: f64,
    loc: &Option<mini::fault::Loc>,
    notes: &mut Vec<String>,
) -> Result<u8, MiniError> {
    let key = drum_key(word);
    let bank = |i: usize| lib.drum_sounds.get(&format!("{key}:{i}")).copied();
    let size = (0..).take_while(|i| bank(*i).is_some()).count();
    if size == 0 {
        let note = note_of(lib, &Value::Word(Arc::from(word), loc.clone()), true, notes)?;
        if index != 0.0 {
            let line = format!(
                "{word}:{} plays the drum sound {word}: the set has loaded no sample bank \"{word}\" (load one before the pattern with samples(\"{word}\", \"FOLDER\"))",
                fmt_num(index as f32)
            );
            if !notes.contains(&line) {
                notes.push(line);
            }
        }
        return Ok(note);
    }
    if index < 0.0 || index.fract() != 0.0 || !index.is_finite() {
        return Err(MiniError {
            message: format!(
                "the index after {word}: picks a sample of the bank {word}, so it is a whole number 0 or more, not {}",
                fmt_num(index as f32)
            ),
            at: loc.clone(),
        });
    }
    Ok(bank((index as usize) % size).expect("an index below the bank's size"))
}

fn props(v: &Value) -> (Option<f64>, Option<f64>) {
    match v {
        Value::Props(p) => (p.velocity, p.length),
        _ => (None, None),
    }
}

/// The pattern `p` expanded into hits: its period (or `cycles` bars) at
/// `beats_per_bar` beats a cycle.
pub fn expand(
    lib: &Library,
    p: &Pattern,
    drums: bool,
    beats_per_bar: f64,
    cycles: Option<u32>,
    notes: &mut Vec<String>,
) -> Result<(f64, Vec<HitSpec>), MiniError> {
    let n = mini::cycles_of(p, cycles)?;
    let beats = n as f64 * beats_per_bar;
    if beats > MAX_PATTERN_BEATS {
        return Err(MiniError {
            message: format!(
                "the pattern lasts {n} bars ({} beats) before it repeats; a pattern is at most {} beats",
                fmt_num(beats as f32),
                fmt_num(MAX_PATTERN_BEATS as f32)
            ),
            at: None,
        });
    }
    let mut hits = Vec::new();
    for e in mini::events(p, n)? {
        let note = note_of(lib, &e.value, drums, notes)?;
        let (velocity, length) = props(&e.value);
        let velocity = match velocity {
            None => DEFAULT_VELOCITY,
            Some(v) if (1.0..=127.0).contains(&v) => v.round() as u8,
            Some(v) => {
                return Err(MiniError {
                    message: format!("velocity {} is outside 1..127", fmt_num(v as f32)),
                    at: None,
                });
            }
        };
        let length = match length {
            None => (e.end - e.begin).to_f64() * beats_per_bar,
            Some(l) if l > 0.0 && l.is_finite() => l,
            Some(l) => {
                return Err(MiniError {
                    message: format!("length {} is not a length in beats above 0", fmt_num(l as f32)),
                    at: None,
                });
            }
        };
        hits.push(HitSpec { beat: e.begin.to_f64() * beats_per_bar, note, velocity, length });
    }
    Ok((beats, hits))
}

/// The mini-notation patterns of the set being evaluated, kept to be expanded again
/// if the meter changes after them.
#[derive(Clone, Debug, Default)]
pub struct Placed {
    pub patterns: std::collections::BTreeMap<String, (Pattern, Option<u32>)>,
}

/// `pattern("name", channel, mini(...)[, #{ cycles }])`: expands and places it.
pub fn place(st: &mut EvalState, name: &str, ch: u8, p: &MiniPattern, opts: Option<Map>) -> Res<()> {
    let Some(spec) = st.set.channels.get(&ch) else {
        return fail_msg(format!(
            "pattern {name} plays on channel {ch}, which the set has not declared (declare it first)"
        ));
    };
    let drums = spec.is_drums();
    let mut cycles = None;
    for (k, v) in opts.unwrap_or_default() {
        match k.as_str() {
            "cycles" => cycles = Some(whole(&v, "cycles", 1, MAX_CYCLES as i64)? as u32),
            other => return fail_msg(format!("a mini-notation pattern takes the option cycles, not {other}")),
        }
    }
    let (beats, hits) = expand(&st.lib, &p.pat, drums, st.set.beats_per_bar, cycles, &mut st.notes).or_else(fail)?;
    st.set.patterns.insert(
        name.to_string(),
        PatternSpec { name: name.to_string(), channel: ch, length_beats: beats, hits, preset: None },
    );
    st.minis.patterns.insert(name.to_string(), (p.pat.clone(), cycles));
    Ok(())
}

/// Expands the set's mini-notation patterns again (after a change of meter).
pub fn replace_all(st: &mut EvalState) -> Res<()> {
    let minis = st.minis.patterns.clone();
    for (name, (pat, cycles)) in minis {
        let Some(spec) = st.set.patterns.get(&name) else { continue };
        let drums = st.set.channels.get(&spec.channel).is_some_and(|c| c.is_drums());
        let (beats, hits) = expand(&st.lib, &pat, drums, st.set.beats_per_bar, cycles, &mut st.notes).or_else(fail)?;
        if let Some(spec) = st.set.patterns.get_mut(&name) {
            spec.length_beats = beats;
            spec.hits = hits;
        }
    }
    Ok(())
}

/// Signature help for the pattern functions (for "cannot take" errors).
pub fn usage(name: &str) -> Option<&'static str> {
    Some(match name {
        "mini" => "mini(\"bd*2 [~ sn]\"[, #{ velocity: \"100 80\", length: \"0.5\" }])",
        "fast" | "slow" | "late" | "shift" | "early" | "ply" => "pattern.fast(factor), a number or a mini string",
        "rev" | "palindrome" | "degrade" => "pattern.rev()",
        "every" => "pattern.every(n, |p| p.rev())",
        "stack" | "cat" | "slowcat" | "fastcat" | "seq" | "sequence" => {
            "stack(pattern, pattern, ...) or stack([patterns])"
        }
        "euclid" => "pattern.euclid(pulses, steps[, rotation])",
        "degrade_by" | "degradeBy" => "pattern.degrade_by(probability)",
        "sometimes" => "pattern.sometimes(|p| p.fast(2))",
        "sometimes_by" | "sometimesBy" => "pattern.sometimes_by(probability, |p| p.fast(2))",
        "transpose" | "add" => "pattern.transpose(semitones)",
        "struct" | "mask" => "pattern.struct(\"x ~ x x\")",
        "velocity" | "length" => "pattern.velocity(\"100 80\")",
        _ => return None,
    })
}

/// Puts a pattern error's caret on its character inside the string, where the
/// string is written out in the script; otherwise names the character.
pub fn locate(d: &mut super::diagnostic::Diagnostic, m: &MiniFailure) {
    d.message = m.message.clone();
    d.token = None;
    let Some((text, at)) = &m.at else { return };
    let call = if d.line > 0 {
        let line_start: usize = d.source.split_inclusive('\n').take(d.line - 1).map(str::len).sum();
        let line = d.source[line_start.min(d.source.len())..].lines().next().unwrap_or("");
        line_start + line.char_indices().nth(d.column.saturating_sub(1)).map(|(i, _)| i).unwrap_or(0)
    } else {
        0
    };
    match locate_in_source(&d.source, call, text, at.start) {
        Some((line, column)) => {
            d.line = line;
            d.column = column;
        }
        None => {
            let k = text[..at.start.min(text.len())].chars().count() + 1;
            d.message = format!("{} (character {k} of \"{text}\")", m.message);
        }
    }
}
