//! Tidal/Strudel mini-notation and pattern transforms, expanded on the control
//! thread into the timed hits the engine already plays. A string is parsed
//! ([`parse`]), turned into a pattern ([`build`]) of the algebra in [`pattern`],
//! transformed by the set's script, and finally queried cycle by cycle (one cycle is
//! one bar) for the events of its period. Control thread.

pub mod build;
pub mod fault;
pub mod frac;
pub mod parse;
pub mod pattern;
pub mod value;

use fault::{Fault, Loc, guarded};
use frac::{Frac, Span};
use pattern::{Hap, Pattern, Value, whole_cycles};
use std::sync::Arc;

/// Most cycles (bars) an expanded pattern may last before it repeats.
pub const MAX_CYCLES: u32 = 256;
/// Cycles of a pattern with random choices that are expanded (then repeated), unless
/// its structure repeats later or the set asks for more with `cycles`.
pub const RANDOM_CYCLES: u32 = 16;
/// Most events an expanded pattern may hold.
pub const MAX_EVENTS: usize = 16_384;
/// Cycles tried when a string is read, to catch bad values where they are written.
const TRIAL_CYCLES: u32 = 16;

/// An error in a mini-notation string or in what a pattern asks for, with the place
/// in the string it comes from when there is one.
#[derive(Clone, Debug, PartialEq)]
pub struct MiniError {
    pub message: String,
    pub at: Option<Loc>,
}

impl MiniError {
    fn plain(message: impl Into<String>) -> Self {
        MiniError { message: message.into(), at: None }
    }
}

impl From<Fault> for MiniError {
    fn from(f: Fault) -> Self {
        match f {
            Fault::Overflow => MiniError::plain(
                "the pattern's timing is too fine or too long to compute exactly (speeds and weights multiply up)",
            ),
            Fault::TooMuchWork => {
                MiniError::plain("the pattern makes too many events to expand (a speed like *100000?); slow it down")
            }
            Fault::Value { message, at } => MiniError { message, at },
        }
    }
}

/// Reads a mini-notation string into a pattern. Errors point into the string.
pub fn read(text: &str) -> Result<Pattern, MiniError> {
    let source: Arc<str> = Arc::from(text);
    let node = parse::parse(text)
        .map_err(|e| MiniError { message: e.message, at: Some(Loc { source: source.clone(), at: e.at }) })?;
    let pat = guarded(|| build::build(&node, &source))?;
    check(&pat)?;
    Ok(pat)
}

/// Queries the first cycles of `pat`, so that values an operator cannot use are
/// reported where the pattern is written rather than where it is played.
pub fn check(pat: &Pattern) -> Result<(), MiniError> {
    let n = whole_cycles(pat.period()).map(|p| p.numer().clamp(1, TRIAL_CYCLES as i64)).unwrap_or(1);
    guarded(|| pat.query(Span::new(Frac::ZERO, Frac::int(n))))?;
    Ok(())
}

/// How many cycles `pat` is expanded over: its period (random patterns: at least
/// [`RANDOM_CYCLES`], a whole number of periods), or `cycles` if the set gives it.
pub fn cycles_of(pat: &Pattern, cycles: Option<u32>) -> Result<u32, MiniError> {
    if let Some(c) = cycles {
        return Ok(c);
    }
    let Some(period) = whole_cycles(pat.period()).map(|p| p.numer()) else {
        return Err(MiniError::plain(format!(
            "jamrig cannot tell after how many bars this pattern repeats; give it with #{{ cycles: N }} (at most {MAX_CYCLES})"
        )));
    };
    let n = if pat.is_random() { period * ((RANDOM_CYCLES as i64 + period - 1) / period) } else { period };
    if n > MAX_CYCLES as i64 {
        return Err(MiniError::plain(format!(
            "the pattern repeats only after {n} bars; at most {MAX_CYCLES} are expanded (make it shorter, or give #{{ cycles: N }} to play its first N bars on a loop)"
        )));
    }
    Ok(n as u32)
}

/// An event of an expanded pattern: when (in cycles) and what.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    pub begin: Frac,
    pub end: Frac,
    pub value: Value,
}

/// The events that start in the first `cycles` cycles, in time order.
pub fn events(pat: &Pattern, cycles: u32) -> Result<Vec<Event>, MiniError> {
    let haps = guarded(|| pat.query(Span::new(Frac::ZERO, Frac::int(cycles as i64))))?;
    let mut out: Vec<Event> = haps
        .into_iter()
        .filter(Hap::has_onset)
        .filter_map(|h| h.whole.map(|w| Event { begin: w.begin, end: w.end, value: h.value }))
        .collect();
    if out.len() > MAX_EVENTS {
        return Err(MiniError::plain(format!(
            "the pattern has {} events in {cycles} bars; at most {MAX_EVENTS} are expanded",
            out.len()
        )));
    }
    out.sort_by_key(|a| a.begin);
    Ok(out)
}
