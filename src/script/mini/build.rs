//! Turns a parsed mini-notation string into a pattern, the way Strudel's
//! `patternifyAST` does: sequences by weight, `<>` and `{}` by step counts, every
//! operator in the order written, and the random stream of each `?` and `|` offset by
//! its place in the string. Control thread.

use super::fault::{Fault, Loc, fault};
use super::frac::Frac;
use super::parse::{Align, Element, Node, Op};
use super::pattern::{Pattern, Value, choose_cycles, fastcat, pure, rand, silence, stack, timecat};
use super::value::{chord, js_number};
use std::ops::Range;
use std::sync::Arc;

/// How far apart in time the random streams of successive `?` and `|` are, in cycles
/// (Strudel's offset, so that each operator draws its own numbers).
const RAND_OFFSET: f64 = 0.0003;

/// A pattern and the total weight of its steps (for `<>` and `{}`).
struct Built {
    pat: Pattern,
    weight: Option<Frac>,
}

/// The pattern of a parsed string (`source` is the string, for locating errors).
pub fn build(node: &Node, source: &Arc<str>) -> Pattern {
    Builder { source: source.clone() }.enter(node).pat
}

struct Builder {
    source: Arc<str>,
}

fn plain(pat: Pattern) -> Built {
    Built { pat, weight: None }
}

impl Builder {
    fn loc(&self, at: Range<usize>) -> Option<Loc> {
        Some(Loc { source: self.source.clone(), at })
    }

    fn enter(&self, node: &Node) -> Built {
        match node {
            Node::Atom { word, at } => plain(self.atom(word, at.clone())),
            Node::Sequence { elements, .. } => self.sequence(elements),
            Node::Group { align, parts, seed, steps, at } => {
                let children: Vec<Built> = parts.iter().map(|p| self.enter(p)).collect();
                match align {
                    Align::Stack => plain(stack(children.into_iter().map(|c| c.pat).collect())),
                    Align::Feet => plain(fastcat(children.into_iter().map(|c| c.pat).collect())),
                    Align::Rand => {
                        let r = rand().early(Frac::from_f64(RAND_OFFSET * *seed as f64));
                        plain(choose_cycles(&r, children.into_iter().map(|c| c.pat).collect()))
                    }
                    Align::Slowcat => plain(stack(
                        children.into_iter().map(|c| self.with_weight(c, at.clone(), |p, w| p.slow(w))).collect(),
                    )),
                    Align::Polymeter => {
                        let steps = match steps {
                            Some(s) => {
                                let at = self.loc(s.at());
                                self.enter(s).pat.fmap(move |v| match to_frac(v, "a step count after %", &at) {
                                    Some(f) => Value::Num(f.to_f64()),
                                    None => Value::Num(1.0),
                                })
                            }
                            None => pure(Value::Num(children[0].weight.map(|w| w.to_f64()).unwrap_or(1.0))),
                        };
                        let aligned = children
                            .into_iter()
                            .map(|c| {
                                let Some(weight) = c.weight else { return self.missing_weight(at.clone()) };
                                let pat = c.pat;
                                steps.inner_bind(move |v| {
                                    let n = Frac::from_f64(v.num().unwrap_or(1.0));
                                    pat.fast(n / weight)
                                })
                            })
                            .collect();
                        plain(stack(aligned))
                    }
                }
            }
        }
    }

    fn with_weight(&self, c: Built, at: Range<usize>, f: impl Fn(&Pattern, Frac) -> Pattern) -> Pattern {
        match c.weight {
            Some(w) => f(&c.pat, w),
            None => self.missing_weight(at),
        }
    }

    fn missing_weight(&self, at: Range<usize>) -> Pattern {
        fault(Fault::Value {
            message: "every step here has weight 0: give at least one a weight above 0".into(),
            at: self.loc(at),
        });
        silence()
    }

    /// A word or number; `~` and `-` are rests; `root'quality` is a chord.
    fn atom(&self, word: &str, at: Range<usize>) -> Pattern {
        if word == "~" || word == "-" {
            return silence();
        }
        if let Some(n) = js_number(word) {
            return pure(Value::Num(n));
        }
        if word.contains('\'') {
            return match chord(word) {
                Ok(notes) => stack(notes.into_iter().map(|n| pure(Value::Num(n as f64))).collect()),
                Err(message) => {
                    fault(Fault::Value { message, at: self.loc(at) });
                    silence()
                }
            };
        }
        pure(Value::Word(Arc::from(word), self.loc(at)))
    }

    fn sequence(&self, elements: &[Element]) -> Built {
        let children: Vec<Pattern> = elements.iter().map(|e| self.element(e)).collect();
        // A weight of 0 counts as 1 (as in Strudel); if every weight is 0, the steps share
        // the cycle equally and the sequence has no weight.
        if elements.iter().all(|e| e.weight == 0.0) {
            return Built { pat: fastcat(children), weight: None };
        }
        let weights: Vec<Frac> =
            elements.iter().map(|e| if e.weight == 0.0 { Frac::ONE } else { Frac::from_f64(e.weight) }).collect();
        if let Some(e) = elements.iter().find(|e| e.weight < 0.0) {
            fault(Fault::Value {
                message: format!("a step's weight must be above 0, not {}", crate::params::fmt_num(e.weight as f32)),
                at: self.loc(e.at.clone()),
            });
        }
        let total = weights.iter().fold(Frac::ZERO, |a, w| a + *w);
        Built { pat: timecat(weights.into_iter().zip(children).collect()), weight: Some(total) }
    }

    fn element(&self, e: &Element) -> Pattern {
        let mut pat = self.enter(&e.node).pat;
        for op in &e.ops {
            pat = match op {
                Op::Stretch { fast, amount } => {
                    let at = self.loc(amount.at());
                    let what = if *fast { "a speed factor after *" } else { "a slowing factor after /" };
                    let fast = *fast;
                    patterned(vec![self.enter(amount).pat], move |p, v| match to_frac(&v[0], what, &at) {
                        Some(f) if fast => p.fast(f),
                        Some(f) => p.slow(f),
                        None => silence(),
                    })(&pat)
                }
                Op::Replicate(n) => {
                    if *n <= 0.0 {
                        fault(Fault::Value {
                            message: "a step is repeated at least once (!1 or more)".into(),
                            at: self.loc(e.at.clone()),
                        });
                        silence()
                    } else {
                        let n = Frac::from_f64(*n);
                        pat.repeat_cycles(n).fast(n)
                    }
                }
                Op::Euclid { pulses, steps, rotation } => {
                    let mut args = vec![self.enter(&pulses.node).pat, self.enter(&steps.node).pat];
                    if let Some(r) = rotation {
                        args.push(self.enter(&r.node).pat);
                    }
                    let at = self.loc(pulses.at.start..steps.at.end);
                    patterned(args, move |p, v| {
                        let num = |i: usize| v.get(i).and_then(Value::num);
                        match (num(0), num(1)) {
                            (Some(k), Some(n)) => p.euclid(k, n, num(2).unwrap_or(0.0), at.clone()),
                            _ => {
                                fault(Fault::Value {
                                    message: "a Euclidean rhythm (k,n,r) takes numbers".into(),
                                    at: at.clone(),
                                });
                                silence()
                            }
                        }
                    })(&pat)
                }
                Op::Degrade { amount, seed, at } => {
                    let amount = amount.unwrap_or(0.5);
                    if !(0.0..=1.0).contains(&amount) {
                        fault(Fault::Value {
                            message: format!(
                                "? takes a probability from 0 to 1, not {}",
                                crate::params::fmt_num(amount as f32)
                            ),
                            at: self.loc(at.clone()),
                        });
                    }
                    let r = rand().early(Frac::from_f64(RAND_OFFSET * *seed as f64));
                    pat.degrade_by_with(&r, amount)
                }
                Op::Tail(node) => pat.app_left(&self.enter(node).pat, |a, b| {
                    Some(match a {
                        Value::List(l) => {
                            let mut l = (**l).clone();
                            l.push(b.clone());
                            Value::List(Arc::new(l))
                        }
                        a => Value::List(Arc::new(vec![a.clone(), b.clone()])),
                    })
                }),
                Op::Range(node) => {
                    let friend = self.enter(node).pat;
                    let at = self.loc(node.at());
                    pat.squeeze_bind(move |a| {
                        let a = a.clone();
                        let at = at.clone();
                        friend.bind(move |b| match (a.num(), b.num()) {
                            (Some(x), Some(y)) => number_run(x, y, &at),
                            _ => {
                                fault(Fault::Value { message: "a range a..b takes numbers".into(), at: at.clone() });
                                silence()
                            }
                        })
                    })
                }
            };
        }
        pat
    }
}

/// `x..y` as Strudel spells it out: whole steps from x towards y.
fn number_run(x: f64, y: f64, at: &Option<Loc>) -> Pattern {
    let len = ((y - x).abs() + 1.0).floor();
    if len > 1024.0 {
        fault(Fault::Value { message: "a range a..b has at most 1024 steps".into(), at: at.clone() });
        return silence();
    }
    let steps = (0..len as i64).map(|i| if x < y { x + i as f64 } else { x - i as f64 });
    fastcat(steps.map(|v| pure(Value::Num(v))).collect())
}

/// A number of cycles or a factor from a value, with a fault (and None) if it is not
/// a number at least 0.
fn to_frac(v: &Value, what: &str, at: &Option<Loc>) -> Option<Frac> {
    match v.num() {
        Some(n) if n >= 0.0 && n.is_finite() => Some(Frac::from_f64(n)),
        _ => {
            fault(Fault::Value {
                message: format!("{what} must be a number of 0 or more, not {}", v.show()),
                at: at.clone(),
            });
            None
        }
    }
}

/// Applies `f` with arguments that are themselves patterns (Strudel's patterned
/// arguments): directly when they are plain values, otherwise per event of the
/// arguments, with the structure of the first.
pub fn patterned(
    args: Vec<Pattern>,
    f: impl Fn(&Pattern, &[Value]) -> Pattern + Send + Sync + Clone + 'static,
) -> impl Fn(&Pattern) -> Pattern {
    move |pat: &Pattern| {
        if let Some(values) = args.iter().map(|a| a.pure_value().cloned()).collect::<Option<Vec<Value>>>() {
            return f(pat, &values);
        }
        let mut combined = args[0].fmap(|v| Value::List(Arc::new(vec![v.clone()])));
        for a in &args[1..] {
            combined = combined.app_left(a, |acc, v| {
                let Value::List(l) = acc else { return None };
                let mut l = (**l).clone();
                l.push(v.clone());
                Some(Value::List(Arc::new(l)))
            });
        }
        let (pat, f) = (pat.clone(), f.clone());
        combined.inner_bind(move |v| match v {
            Value::List(l) => f(&pat, l),
            other => f(&pat, std::slice::from_ref(other)),
        })
    }
}
