//! The pattern algebra the mini-notation and the transforms are built from: a
//! pattern is a function from a span of cycles to the events (haps) active in it,
//! with exact rational time, as in Tidal and Strudel. Each combinator here follows
//! the behaviour of Strudel's function of the same name, so that a string plays the
//! same events in jamrig as there. Control thread.

use super::fault::{Fault, Loc, fault, spend};
use super::frac::{Frac, Span};
use std::sync::Arc;

/// What an event carries: a word (a drum or note name), a number, or a list
/// (`bd:3`).
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// A word and where it was written.
    Word(Arc<str>, Option<Loc>),
    Num(f64),
    List(Arc<Vec<Value>>),
    /// A value with a velocity and a length given alongside it.
    Props(Arc<Props>),
}

/// A value with its own velocity (1..127) and length (in beats).
#[derive(Clone, Debug, PartialEq)]
pub struct Props {
    pub base: Value,
    pub velocity: Option<f64>,
    pub length: Option<f64>,
}

impl Value {
    /// JavaScript's truthiness, which `struct` and `mask` use: 0 and "" are false.
    pub fn truthy(&self) -> bool {
        match self {
            Value::Word(w, _) => !w.is_empty(),
            Value::Num(n) => *n != 0.0 && !n.is_nan(),
            Value::List(_) | Value::Props(_) => true,
        }
    }

    pub fn num(&self) -> Option<f64> {
        match self {
            Value::Num(n) => Some(*n),
            _ => None,
        }
    }

    /// As written in a message.
    pub fn show(&self) -> String {
        match self {
            Value::Word(w, _) => w.to_string(),
            Value::Num(n) => crate::params::fmt_num(*n as f32),
            Value::List(l) => l.iter().map(Value::show).collect::<Vec<_>>().join(":"),
            Value::Props(p) => p.base.show(),
        }
    }
}

/// An event: a value over its `whole` span, of which `part` is the fragment inside
/// the query (a continuous value has no whole).
#[derive(Clone, Debug, PartialEq)]
pub struct Hap {
    pub whole: Option<Span>,
    pub part: Span,
    pub value: Value,
}

impl Hap {
    pub fn whole_or_part(&self) -> Span {
        self.whole.unwrap_or(self.part)
    }

    /// Whether this fragment holds the event's start.
    pub fn has_onset(&self) -> bool {
        self.whole.is_some_and(|w| w.begin == self.part.begin)
    }

    fn with_span(mut self, f: &impl Fn(Span) -> Span) -> Hap {
        self.whole = self.whole.map(f);
        self.part = f(self.part);
        self
    }
}

type Query = dyn Fn(Span) -> Vec<Hap> + Send + Sync;

/// A pattern: a query from spans to haps. Cheap to clone.
#[derive(Clone)]
pub struct Pattern {
    query: Arc<Query>,
    /// The value, when this is `pure(value)` (patterned arguments take a short cut).
    pure: Option<Value>,
    /// A time shift that leaves the pattern unchanged, in cycles, when known (random
    /// choices aside): how long the pattern runs before it repeats.
    period: Option<Frac>,
    /// Whether random choices (`?`, `|`, `degrade_by`, `sometimes`) shape it.
    random: bool,
}

/// Longest period, in cycles, worth working out (longer ones count as unknown).
const MAX_KNOWN_PERIOD: i64 = 1 << 20;

/// The smallest whole number of cycles that is a multiple of `p`.
pub fn whole_cycles(p: Option<Frac>) -> Option<Frac> {
    p.map(|p| Frac::int(p.numer().max(1)))
}

/// The least common multiple of two periods (unknown if either is).
pub fn lcm(a: Option<Frac>, b: Option<Frac>) -> Option<Frac> {
    use num_integer::Integer;
    let (a, b) = (a?, b?);
    if a.numer() <= 0 || b.numer() <= 0 {
        return None;
    }
    let n = a.numer().checked_div(a.numer().gcd(&b.numer()))?.checked_mul(b.numer())?;
    let d = a.denom().gcd(&b.denom());
    (n / d <= MAX_KNOWN_PERIOD).then(|| Frac::new(n, d))
}

fn lcm_all(ps: impl IntoIterator<Item = Option<Frac>>) -> Option<Frac> {
    ps.into_iter().fold(Some(Frac::ONE), lcm)
}

impl std::fmt::Debug for Pattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pattern")
    }
}

pub fn silence() -> Pattern {
    Pattern::new(|_| Vec::new()).meta(Some(Frac::ONE), false)
}

/// One event per cycle, filling it.
pub fn pure(value: Value) -> Pattern {
    let v = value.clone();
    let mut p = Pattern::new(move |span: Span| {
        span.cycles()
            .into_iter()
            .filter(|_| spend(1))
            .map(|s| Hap { whole: Some(Span::new(s.begin.sam(), s.begin.next_sam())), part: s, value: v.clone() })
            .collect()
    });
    p.pure = Some(value);
    p.meta(Some(Frac::ONE), false)
}

/// A continuous value, sampled at the middle of each query.
pub fn signal(f: impl Fn(Frac) -> Value + Send + Sync + 'static) -> Pattern {
    Pattern::new(move |span: Span| {
        if !spend(1) {
            return Vec::new();
        }
        vec![Hap { whole: None, part: span, value: f(span.midpoint()) }]
    })
    .meta(Some(Frac::ONE), false)
}

/// Patterns played at the same time.
pub fn stack(pats: Vec<Pattern>) -> Pattern {
    if pats.len() == 1 {
        return pats.into_iter().next().unwrap_or_else(silence);
    }
    let period = lcm_all(pats.iter().map(|p| p.period));
    let random = pats.iter().any(|p| p.random);
    Pattern::new(move |span| pats.iter().flat_map(|p| p.query(span)).collect()).meta(period, random)
}

/// One pattern per cycle, in turn (each keeps its own cycle count).
pub fn slowcat(pats: Vec<Pattern>) -> Pattern {
    match pats.len() {
        0 => return silence(),
        1 => return pats.into_iter().next().unwrap_or_else(silence),
        _ => {}
    }
    let n = pats.len() as i64;
    let period = lcm_all(pats.iter().map(|p| whole_cycles(p.period)))
        .filter(|l| l.numer().saturating_mul(n) <= MAX_KNOWN_PERIOD)
        .map(|l| l * Frac::new(n, 1));
    let random = pats.iter().any(|p| p.random);
    Pattern::new(move |span: Span| {
        let cycle = span.begin.floor_int();
        let i = cycle.rem_euclid(n) as usize;
        let offset = span.begin.sam() - (span.begin / Frac::new(n, 1)).sam();
        pats[i]
            .query(span.with_time(|t| t - offset))
            .into_iter()
            .map(|h| h.with_span(&|s: Span| s.with_time(|t| t + offset)))
            .collect()
    })
    .split_queries()
    .meta(period, random)
}

/// One pattern per cycle, each playing that same cycle (Strudel's `slowcatPrime`).
pub fn slowcat_prime(pats: Vec<Pattern>) -> Pattern {
    if pats.is_empty() {
        return silence();
    }
    let n = pats.len() as i64;
    let period = lcm(Some(Frac::new(n, 1)), lcm_all(pats.iter().map(|p| whole_cycles(p.period))));
    let random = pats.iter().any(|p| p.random);
    Pattern::new(move |span: Span| {
        let cycle = span.begin.floor_int();
        if cycle < 0 {
            return Vec::new();
        }
        pats[(cycle % n) as usize].query(span)
    })
    .split_queries()
    .meta(period, random)
}

/// The patterns squeezed into one cycle, in equal shares.
pub fn fastcat(pats: Vec<Pattern>) -> Pattern {
    let n = pats.len();
    let p = slowcat(pats);
    if n > 1 { p.fast(Frac::int(n as i64)) } else { p }
}

/// The patterns squeezed into one cycle, each its share of the total weight.
pub fn timecat(parts: Vec<(Frac, Pattern)>) -> Pattern {
    if parts.len() == 1 {
        return parts.into_iter().next().map(|(_, p)| p).unwrap_or_else(silence);
    }
    let total = parts.iter().fold(Frac::ZERO, |a, (w, _)| a + *w);
    let mut begin = Frac::ZERO;
    let mut out = Vec::new();
    for (w, p) in parts {
        if w.is_zero() {
            continue;
        }
        let end = begin + w;
        out.push(p.compress(begin / total, end / total));
        begin = end;
    }
    stack(out)
}

impl Pattern {
    pub fn new(f: impl Fn(Span) -> Vec<Hap> + Send + Sync + 'static) -> Pattern {
        Pattern { query: Arc::new(f), pure: None, period: None, random: false }
    }

    /// Sets the period and the random flag.
    pub fn meta(mut self, period: Option<Frac>, random: bool) -> Pattern {
        self.period = period;
        self.random = random;
        self
    }

    pub fn period(&self) -> Option<Frac> {
        self.period
    }

    pub fn is_random(&self) -> bool {
        self.random
    }

    /// The distinct values of the events over one period (None if the period is not
    /// known or too long to look at).
    fn values_over_period(&self) -> Option<Vec<Value>> {
        let n = whole_cycles(self.period)?;
        if n > Frac::int(256) {
            return None;
        }
        let mut out: Vec<Value> = Vec::new();
        for h in self.query(Span::new(Frac::ZERO, n)) {
            if !out.contains(&h.value) {
                out.push(h.value);
            }
        }
        Some(out)
    }

    /// The period of a join of this pattern's events with the patterns `f` makes.
    fn joined_period(&self, f: &impl Fn(&Value) -> Pattern, squeeze: bool) -> (Option<Frac>, bool) {
        let Some(values) = self.values_over_period() else { return (None, self.random) };
        let inner: Vec<Pattern> = values.iter().map(f).collect();
        let random = self.random || inner.iter().any(|p| p.random);
        if squeeze {
            let simple = inner.iter().all(|p| whole_cycles(p.period) == Some(Frac::ONE));
            return (if simple { self.period } else { None }, random);
        }
        (lcm(self.period, lcm_all(inner.iter().map(|p| p.period))), random)
    }

    pub fn query(&self, span: Span) -> Vec<Hap> {
        (self.query)(span)
    }

    /// The value of a `pure` pattern.
    pub fn pure_value(&self) -> Option<&Value> {
        self.pure.as_ref()
    }

    fn split_queries(self) -> Pattern {
        let (period, random) = (self.period, self.random);
        Pattern::new(move |span: Span| span.cycles().into_iter().flat_map(|s| self.query(s)).collect())
            .meta(period, random)
    }

    fn with_query_time(&self, f: impl Fn(Frac) -> Frac + Send + Sync + 'static) -> Pattern {
        let p = self.clone();
        Pattern::new(move |span: Span| p.query(span.with_time(&f))).meta(self.period, self.random)
    }

    fn with_hap_time(&self, f: impl Fn(Frac) -> Frac + Send + Sync + 'static) -> Pattern {
        let p = self.clone();
        Pattern::new(move |span| p.query(span).into_iter().map(|h| h.with_span(&|s: Span| s.with_time(&f))).collect())
            .meta(self.period, self.random)
    }

    pub fn fmap(&self, f: impl Fn(&Value) -> Value + Send + Sync + 'static) -> Pattern {
        let p = self.clone();
        Pattern::new(move |span| {
            p.query(span)
                .into_iter()
                .map(|mut h| {
                    h.value = f(&h.value);
                    h
                })
                .collect()
        })
        .meta(self.period, self.random)
    }

    pub fn filter_values(&self, f: impl Fn(&Value) -> bool + Send + Sync + 'static) -> Pattern {
        let p = self.clone();
        Pattern::new(move |span| p.query(span).into_iter().filter(|h| f(&h.value)).collect())
            .meta(self.period, self.random)
    }

    /// Speeds the pattern up by `factor` (0 gives silence).
    pub fn fast(&self, factor: Frac) -> Pattern {
        if factor.is_zero() {
            return silence();
        }
        let period = self.period.map(|p| p / factor);
        self.with_query_time(move |t| t * factor).with_hap_time(move |t| t / factor).meta(period, self.random)
    }

    /// Slows the pattern down by `factor` (0 gives silence).
    pub fn slow(&self, factor: Frac) -> Pattern {
        if factor.is_zero() {
            return silence();
        }
        self.fast(Frac::ONE / factor)
    }

    /// Shifts the pattern earlier by `t` cycles.
    pub fn early(&self, t: Frac) -> Pattern {
        self.with_query_time(move |x| x + t).with_hap_time(move |x| x - t)
    }

    /// Shifts the pattern later by `t` cycles.
    pub fn late(&self, t: Frac) -> Pattern {
        self.early(-t)
    }

    /// Speeds each cycle up by `factor`, leaving the rest of the cycle empty.
    fn fast_gap(&self, factor: Frac) -> Pattern {
        let p = self.clone();
        Pattern::new(move |span: Span| {
            let cycle = span.begin.sam();
            let bpos = ((span.begin - cycle) * factor).min(Frac::ONE);
            let epos = ((span.end - cycle) * factor).min(Frac::ONE);
            if bpos >= Frac::ONE {
                return Vec::new();
            }
            p.query(Span::new(cycle + bpos, cycle + epos))
                .into_iter()
                .map(|h| {
                    let (begin, end) = (h.part.begin, h.part.end);
                    let cycle = begin.sam();
                    let b = ((begin - cycle) / factor).min(Frac::ONE);
                    let e = ((end - cycle) / factor).min(Frac::ONE);
                    let part = Span::new(cycle + b, cycle + e);
                    let whole = h
                        .whole
                        .map(|w| Span::new(part.begin - (begin - w.begin) / factor, part.end + (w.end - end) / factor));
                    Hap { whole, part, value: h.value }
                })
                .collect()
        })
        .split_queries()
        .meta(whole_cycles(self.period), self.random)
    }

    /// Squeezes each cycle into `[b, e)` of the cycle.
    pub fn compress(&self, b: Frac, e: Frac) -> Pattern {
        if b > e || b > Frac::ONE || e > Frac::ONE || b < Frac::ZERO || e < Frac::ZERO || b == e {
            return silence();
        }
        self.fast_gap(Frac::ONE / (e - b)).late(b)
    }

    /// Plays `[b, e)` of each cycle as a whole cycle.
    fn focus(&self, b: Frac, e: Frac) -> Pattern {
        self.fast(Frac::ONE / (e - b)).late(b.cycle_pos())
    }

    /// Repeats each cycle `n` times.
    pub fn repeat_cycles(&self, n: Frac) -> Pattern {
        let p = self.clone();
        Pattern::new(move |span: Span| {
            let cycle = span.begin.sam();
            let source = (cycle / n).sam();
            let delta = cycle - source;
            p.query(span.with_time(|t| t - delta))
                .into_iter()
                .map(|h| h.with_span(&|s: Span| s.with_time(|t| t + delta)))
                .collect()
        })
        .split_queries()
        .meta(if n.denom() == 1 { whole_cycles(self.period).map(|p| p * n) } else { None }, self.random)
    }

    /// Each cycle backwards.
    pub fn rev(&self) -> Pattern {
        let p = self.clone();
        Pattern::new(move |span: Span| {
            let cycle = span.begin.sam();
            let next = span.begin.next_sam();
            let reflect = |s: Span| Span::new(cycle + (next - s.end), cycle + (next - s.begin));
            p.query(reflect(span)).into_iter().map(|h| h.with_span(&reflect)).collect()
        })
        .split_queries()
        .meta(whole_cycles(self.period), self.random)
    }

    /// Structure from `self`, values combined with those of `other` sampled over
    /// each event (`f` returning None drops the event).
    pub fn app_left(
        &self,
        other: &Pattern,
        f: impl Fn(&Value, &Value) -> Option<Value> + Send + Sync + 'static,
    ) -> Pattern {
        app(self, other, true, f)
    }

    /// Structure from `other`, values from `self` sampled over each of its events.
    pub fn app_right(
        &self,
        other: &Pattern,
        f: impl Fn(&Value, &Value) -> Option<Value> + Send + Sync + 'static,
    ) -> Pattern {
        app(self, other, false, f)
    }

    /// A pattern of patterns flattened, with the inner events' timing (Strudel's
    /// `innerJoin`): `f` makes the inner pattern from each outer value.
    pub fn inner_bind(&self, f: impl Fn(&Value) -> Pattern + Send + Sync + 'static) -> Pattern {
        let (period, random) = self.joined_period(&f, false);
        let p = self.clone();
        Pattern::new(move |span| {
            let mut out = Vec::new();
            for outer in p.query(span) {
                out.extend(f(&outer.value).query(outer.part));
            }
            out
        })
        .meta(period, random)
    }

    /// Flattened with the wholes of outer and inner intersected (Strudel's `bind`).
    pub fn bind(&self, f: impl Fn(&Value) -> Pattern + Send + Sync + 'static) -> Pattern {
        let (period, random) = self.joined_period(&f, false);
        let p = self.clone();
        Pattern::new(move |span| {
            let mut out = Vec::new();
            for outer in p.query(span) {
                for inner in f(&outer.value).query(outer.part) {
                    let whole = match (outer.whole, inner.whole) {
                        (Some(a), Some(b)) => match a.intersection(&b) {
                            Some(w) => Some(w),
                            None => {
                                fault(Fault::Value { message: "events that do not meet".into(), at: None });
                                return Vec::new();
                            }
                        },
                        _ => None,
                    };
                    out.push(Hap { whole, part: inner.part, value: inner.value });
                }
            }
            out
        })
        .meta(period, random)
    }

    /// Each event replaced by a whole cycle of the pattern `f` makes of its value,
    /// squeezed into the event (Strudel's `squeezeJoin`).
    pub fn squeeze_bind(&self, f: impl Fn(&Value) -> Pattern + Send + Sync + 'static) -> Pattern {
        let (period, random) = self.joined_period(&f, true);
        let p = self.clone();
        Pattern::new(move |span| {
            let mut out = Vec::new();
            for outer in p.query(span) {
                let Some(ow) = outer.whole else { continue };
                let inner = f(&outer.value).focus(ow.begin, ow.end);
                for ih in inner.query(outer.part) {
                    let whole = match ih.whole {
                        Some(iw) => match iw.intersection(&ow) {
                            Some(w) => Some(w),
                            None => continue,
                        },
                        None => None,
                    };
                    let Some(part) = ih.part.intersection(&outer.part) else { continue };
                    out.push(Hap { whole, part, value: ih.value });
                }
            }
            out
        })
        .meta(period, random)
    }

    /// Keeps the events where `bools` is true, with its structure (`struct`).
    pub fn keep_if_out(&self, bools: &Pattern) -> Pattern {
        self.app_right(bools, |a, b| b.truthy().then(|| a.clone()))
    }

    /// Keeps the events where `bools` is true, with this pattern's structure (`mask`).
    pub fn keep_if_in(&self, bools: &Pattern) -> Pattern {
        self.app_left(bools, |a, b| b.truthy().then(|| a.clone()))
    }

    /// Keeps the events where `rand` (sampled over each event) is above `amount`.
    pub fn degrade_by_with(&self, rand: &Pattern, amount: f64) -> Pattern {
        let r = rand.filter_values(move |v| v.num().is_some_and(|x| x > amount));
        self.app_left(&r, |a, _| Some(a.clone()))
    }

    /// Each event repeated `factor` times inside its span.
    pub fn ply(&self, factor: Frac) -> Pattern {
        self.squeeze_bind(move |v| pure(v.clone()).fast(factor))
    }

    /// Applies `f` on the first of every `n` cycles (Strudel's `every`/`firstOf`).
    pub fn every(&self, n: usize, f: impl Fn(&Pattern) -> Pattern) -> Pattern {
        let mut pats = vec![self.clone(); n.max(1)];
        pats[0] = f(self);
        slowcat_prime(pats)
    }

    /// Applies `f` on the last of every `n` cycles (Strudel's `lastOf`).
    pub fn last_of(&self, n: usize, f: impl Fn(&Pattern) -> Pattern) -> Pattern {
        let mut pats = vec![self.clone(); n.max(1)];
        let last = pats.len() - 1;
        pats[last] = f(self);
        slowcat_prime(pats)
    }

    /// Forwards, then backwards, every other cycle.
    pub fn palindrome(&self) -> Pattern {
        self.last_of(2, |p| p.rev())
    }

    /// The events on the onsets of a Euclidean rhythm of `pulses` in `steps`, rotated
    /// by `rotation` (an error for impossible rhythms).
    pub fn euclid(&self, pulses: f64, steps: f64, rotation: f64, at: Option<Loc>) -> Pattern {
        match bjorklund(pulses, steps) {
            Some(mut bits) => {
                if rotation != 0.0 {
                    bits = rotate(&bits, -(rotation.trunc() as i64));
                }
                let bools = fastcat(bits.into_iter().map(|b| pure(Value::Num(b as f64))).collect());
                self.keep_if_out(&bools)
            }
            None => {
                fault(Fault::Value {
                    message: format!(
                        "a Euclidean rhythm needs whole numbers of pulses and steps, pulses at most steps, not ({},{})",
                        crate::params::fmt_num(pulses as f32),
                        crate::params::fmt_num(steps as f32)
                    ),
                    at,
                });
                silence()
            }
        }
    }
}

/// Values of `l` and `r` combined by `f`, with the structure of `l` (`left`) or of
/// `r`: each event of the structure samples the other pattern over its whole.
fn app(
    l: &Pattern,
    r: &Pattern,
    left: bool,
    f: impl Fn(&Value, &Value) -> Option<Value> + Send + Sync + 'static,
) -> Pattern {
    let (meta_period, meta_random) = (lcm(l.period, r.period), l.random || r.random);
    let (structure, other) = if left { (l.clone(), r.clone()) } else { (r.clone(), l.clone()) };
    Pattern::new(move |span| {
        let mut out = Vec::new();
        for hs in structure.query(span) {
            for ho in other.query(hs.whole_or_part()) {
                let (hl, hr) = if left { (&hs, &ho) } else { (&ho, &hs) };
                if let Some(part) = hl.part.intersection(&hr.part)
                    && let Some(value) = f(&hl.value, &hr.value)
                {
                    out.push(Hap { whole: hs.whole, part, value });
                }
            }
        }
        out
    })
    .meta(meta_period, meta_random)
}

/// Bjorklund's algorithm as Strudel runs it (negative pulses give the complement).
pub fn bjorklund(pulses: f64, steps: f64) -> Option<Vec<u8>> {
    if pulses.fract() != 0.0 || steps.fract() != 0.0 || pulses.abs() > steps || steps > 4096.0 {
        return None;
    }
    let inverted = pulses < 0.0;
    let ons = pulses.abs() as usize;
    let offs = steps as usize - ons;
    type Seqs = Vec<Vec<u8>>;
    let mut n = (ons, offs);
    let mut x: (Seqs, Seqs) = (vec![vec![1]; ons], vec![vec![0]; offs]);
    while n.0.min(n.1) > 1 {
        let (ons, offs) = n;
        let (xs, ys) = x;
        if ons > offs {
            let (head, rest) = xs.split_at(offs);
            let zipped = head.iter().zip(&ys).map(|(a, b)| [a.as_slice(), b.as_slice()].concat()).collect();
            n = (offs, ons - offs);
            x = (zipped, rest.to_vec());
        } else {
            let (head, rest) = ys.split_at(ons);
            let zipped = xs.iter().zip(head).map(|(a, b)| [a.as_slice(), b.as_slice()].concat()).collect();
            n = (ons, offs - ons);
            x = (zipped, rest.to_vec());
        }
    }
    let bits: Vec<u8> = x.0.into_iter().chain(x.1).flatten().collect();
    Some(if inverted { bits.into_iter().map(|b| 1 - b).collect() } else { bits })
}

/// JavaScript's `arr.slice(n).concat(arr.slice(0, n))`.
fn rotate(bits: &[u8], n: i64) -> Vec<u8> {
    let len = bits.len() as i64;
    let k = if n < 0 { (len + n).max(0) } else { n.min(len) } as usize;
    [&bits[k..], &bits[..k]].concat()
}

// ---- Strudel's random stream ----

fn xorwise(x: i32) -> i32 {
    let a = (x << 13) ^ x;
    let b = (a >> 17) ^ a;
    (b << 5) ^ b
}

/// The random number Strudel's `rand` gives at time `t` (in cycles): a hash of the
/// time, repeating every 300 cycles.
pub fn time_to_rand(t: f64) -> f64 {
    let x = t / 300.0;
    let frac = x - x.trunc();
    let seed = xorwise((frac * 536_870_912.0).trunc() as i32);
    ((seed % 536_870_912) as f64 / 536_870_912.0).abs()
}

/// Strudel's `rand`: a continuous random value in 0..1.
pub fn rand() -> Pattern {
    let p = signal(|t| Value::Num(time_to_rand(t.to_f64())));
    let period = p.period;
    p.meta(period, true)
}

/// One random choice of `pats` per cycle, from `rand` (Strudel's `chooseInWith`
/// over `rand.segment(1)`).
pub fn choose_cycles(rand: &Pattern, pats: Vec<Pattern>) -> Pattern {
    if pats.is_empty() {
        return silence();
    }
    let n = pats.len();
    let period = lcm_all(pats.iter().map(|p| p.period));
    let seg = rand.keep_if_out(&pure(Value::Num(1.0)));
    let p = Pattern::new(move |span| {
        let mut out = Vec::new();
        for outer in seg.query(span) {
            let i = outer.value.num().unwrap_or(0.0) * n as f64 + 0.0;
            let k = (i.floor().max(0.0) as usize).min(n - 1);
            out.extend(pats[k].query(outer.part));
        }
        out
    });
    p.meta(period, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn onsets(p: &Pattern, cycles: i64) -> Vec<(Frac, Value)> {
        let mut v: Vec<(Frac, Value)> = p
            .query(Span::new(Frac::ZERO, Frac::int(cycles)))
            .into_iter()
            .filter(Hap::has_onset)
            .map(|h| (h.whole.unwrap().begin, h.value))
            .collect();
        v.sort_by_key(|a| a.0);
        v
    }

    fn w(s: &str) -> Value {
        Value::Word(s.into(), None)
    }

    #[test]
    fn fastcat_and_slowcat() {
        let p = fastcat(vec![pure(w("a")), pure(w("b"))]);
        assert_eq!(onsets(&p, 1), vec![(Frac::ZERO, w("a")), (Frac::new(1, 2), w("b"))]);
        let p = slowcat(vec![pure(w("a")), fastcat(vec![pure(w("b")), pure(w("c"))])]);
        assert_eq!(onsets(&p, 2), vec![(Frac::ZERO, w("a")), (Frac::ONE, w("b")), (Frac::new(3, 2), w("c"))]);
    }

    #[test]
    fn bjorklund_rhythms() {
        assert_eq!(bjorklund(3.0, 8.0).unwrap(), [1, 0, 0, 1, 0, 0, 1, 0]);
        assert_eq!(bjorklund(5.0, 8.0).unwrap(), [1, 0, 1, 1, 0, 1, 1, 0]);
        assert_eq!(bjorklund(-3.0, 8.0).unwrap(), [0, 1, 1, 0, 1, 1, 0, 1]);
        assert_eq!(bjorklund(0.0, 4.0).unwrap(), [0, 0, 0, 0]);
        assert!(bjorklund(9.0, 8.0).is_none());
        assert!(bjorklund(2.5, 8.0).is_none());
    }

    #[test]
    fn rev_and_rand() {
        let p = fastcat(vec![pure(w("a")), pure(w("b")), pure(w("c"))]).rev();
        let v: Vec<Value> = onsets(&p, 1).into_iter().map(|x| x.1).collect();
        assert_eq!(v, [w("c"), w("b"), w("a")]);
        let r = time_to_rand(0.5);
        assert!((0.0..1.0).contains(&r));
        assert_eq!(r, time_to_rand(0.5));
        assert_ne!(r, time_to_rand(1.5));
    }
}
