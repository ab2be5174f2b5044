//! Exact time for patterns: rationals of cycles that never panic (an overflow is
//! recorded as a fault of the expansion under way and yields zero), time spans, and
//! the conversion of a float to the rational Strudel's fraction library makes of it.
//! Control thread.

use super::fault::{Fault, fault};
use num_rational::Ratio;
use num_traits::{CheckedAdd, CheckedDiv, CheckedMul, CheckedSub, ToPrimitive};
use std::cmp::Ordering;
use std::fmt;
use std::ops::{Add, Div, Mul, Neg, Sub};

/// A time or a factor, in cycles: an exact rational.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Frac(Ratio<i64>);

impl Frac {
    pub const ZERO: Frac = Frac(Ratio::new_raw(0, 1));
    pub const ONE: Frac = Frac(Ratio::new_raw(1, 1));

    pub fn int(n: i64) -> Frac {
        Frac(Ratio::from_integer(n))
    }

    /// `n / d`; a zero denominator is a fault (and gives zero).
    pub fn new(n: i64, d: i64) -> Frac {
        if d == 0 {
            fault(Fault::Overflow);
            return Frac::ZERO;
        }
        Frac(Ratio::new(n, d))
    }

    pub fn numer(&self) -> i64 {
        *self.0.numer()
    }

    pub fn denom(&self) -> i64 {
        *self.0.denom()
    }

    pub fn is_zero(&self) -> bool {
        self.numer() == 0
    }

    /// The start of the cycle this time is in.
    pub fn sam(self) -> Frac {
        Frac(self.0.floor())
    }

    pub fn next_sam(self) -> Frac {
        self.sam() + Frac::ONE
    }

    /// The time's position inside its cycle.
    pub fn cycle_pos(self) -> Frac {
        self - self.sam()
    }

    /// The value as a float the way Strudel's fractions give it (numerator over
    /// denominator, both as floats).
    pub fn to_f64(self) -> f64 {
        self.numer().to_f64().unwrap_or(0.0) / self.denom().to_f64().unwrap_or(1.0)
    }

    /// Whole cycle number (floor).
    pub fn floor_int(self) -> i64 {
        self.sam().numer()
    }

    pub fn min(self, other: Frac) -> Frac {
        if other < self { other } else { self }
    }

    pub fn max(self, other: Frac) -> Frac {
        if other > self { other } else { self }
    }

    /// The rational that Strudel's fraction library (fraction.js 4) makes of a float:
    /// integers exactly, others by its Farey-sequence search with denominators up to
    /// 10^7 (after scaling numbers of 1 and above below 1 by a power of ten). This is
    /// what `a*1.5`, `a@0.5` and the per-operator random offsets turn into.
    pub fn from_f64(x: f64) -> Frac {
        if !x.is_finite() {
            fault(Fault::Overflow);
            return Frac::ZERO;
        }
        let negative = x < 0.0;
        let mut p = x.abs();
        let (num, den) = if p % 1.0 == 0.0 {
            (p, 1.0)
        } else {
            const LIMIT: f64 = 10_000_000.0;
            let mut scale = 1.0;
            if p >= 1.0 {
                scale = 10f64.powf((1.0 + p.ln() / std::f64::consts::LN_10).floor());
                p /= scale;
            }
            let (mut a, mut b, mut c, mut d) = (0.0f64, 1.0f64, 1.0f64, 1.0f64);
            let (mut n, mut dd) = (0.0, 1.0);
            while b <= LIMIT && d <= LIMIT {
                let m = (a + c) / (b + d);
                if p == m {
                    if b + d <= LIMIT {
                        n = a + c;
                        dd = b + d;
                    } else if d > b {
                        n = c;
                        dd = d;
                    } else {
                        n = a;
                        dd = b;
                    }
                    break;
                }
                if p > m {
                    a += c;
                    b += d;
                } else {
                    c += a;
                    d += b;
                }
                if b > LIMIT {
                    n = c;
                    dd = d;
                } else {
                    n = a;
                    dd = b;
                }
            }
            (n * scale, dd)
        };
        if num > 1e18 || den > 1e18 {
            fault(Fault::Overflow);
            return Frac::ZERO;
        }
        let f = Frac::new(num as i64, den as i64);
        if negative { -f } else { f }
    }
}

fn checked(r: Option<Ratio<i64>>) -> Frac {
    match r {
        Some(r) => Frac(r),
        None => {
            fault(Fault::Overflow);
            Frac::ZERO
        }
    }
}

impl Add for Frac {
    type Output = Frac;
    fn add(self, o: Frac) -> Frac {
        checked(self.0.checked_add(&o.0))
    }
}

impl Sub for Frac {
    type Output = Frac;
    fn sub(self, o: Frac) -> Frac {
        checked(self.0.checked_sub(&o.0))
    }
}

impl Mul for Frac {
    type Output = Frac;
    fn mul(self, o: Frac) -> Frac {
        checked(self.0.checked_mul(&o.0))
    }
}

impl Div for Frac {
    type Output = Frac;
    fn div(self, o: Frac) -> Frac {
        if o.is_zero() {
            fault(Fault::Overflow);
            return Frac::ZERO;
        }
        checked(self.0.checked_div(&o.0))
    }
}

impl Neg for Frac {
    type Output = Frac;
    fn neg(self) -> Frac {
        Frac::ZERO - self
    }
}

impl PartialOrd for Frac {
    fn partial_cmp(&self, o: &Frac) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}

impl Ord for Frac {
    fn cmp(&self, o: &Frac) -> Ordering {
        self.0.cmp(&o.0)
    }
}

impl fmt::Debug for Frac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.numer(), self.denom())
    }
}

impl fmt::Display for Frac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.denom() == 1 { write!(f, "{}", self.numer()) } else { write!(f, "{}/{}", self.numer(), self.denom()) }
    }
}

/// A span of time, `[begin, end)` in cycles.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Span {
    pub begin: Frac,
    pub end: Frac,
}

impl Span {
    pub fn new(begin: Frac, end: Frac) -> Span {
        Span { begin, end }
    }

    /// The span cut at cycle boundaries (a zero-width span stays one span).
    pub fn cycles(&self) -> Vec<Span> {
        if self.begin == self.end {
            return vec![*self];
        }
        let mut out = Vec::new();
        let mut begin = self.begin;
        let end_sam = self.end.sam();
        while self.end > begin {
            if !super::fault::spend(1) {
                break;
            }
            if begin.sam() == end_sam {
                out.push(Span::new(begin, self.end));
                break;
            }
            let next = begin.next_sam();
            out.push(Span::new(begin, next));
            begin = next;
        }
        out
    }

    pub fn with_time(&self, f: impl Fn(Frac) -> Frac) -> Span {
        Span::new(f(self.begin), f(self.end))
    }

    /// Applies `f` to the times relative to the start of the begin's cycle.
    pub fn with_cycle(&self, f: impl Fn(Frac) -> Frac) -> Span {
        let sam = self.begin.sam();
        Span::new(sam + f(self.begin - sam), sam + f(self.end - sam))
    }

    pub fn duration(&self) -> Frac {
        self.end - self.begin
    }

    pub fn midpoint(&self) -> Frac {
        self.begin + self.duration() / Frac::int(2)
    }

    /// The common part of two spans; a zero-width result at the end of a span that
    /// has width does not count (Strudel's rule).
    pub fn intersection(&self, other: &Span) -> Option<Span> {
        let b = self.begin.max(other.begin);
        let e = self.end.min(other.end);
        if b > e {
            return None;
        }
        if b == e {
            if b == self.end && self.begin < self.end {
                return None;
            }
            if b == other.end && other.begin < other.end {
                return None;
            }
        }
        Some(Span::new(b, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_become_the_same_rationals_as_in_strudel() {
        assert_eq!(Frac::from_f64(1.5), Frac::new(3, 2));
        assert_eq!(Frac::from_f64(0.25), Frac::new(1, 4));
        assert_eq!(Frac::from_f64(0.0003), Frac::new(3, 10000));
        assert_eq!(Frac::from_f64(-2.0), Frac::int(-2));
        assert_eq!(Frac::from_f64(1.0 / 3.0), Frac::new(1, 3));
    }

    #[test]
    fn span_cycles_and_intersections() {
        let s = Span::new(Frac::new(1, 2), Frac::new(5, 2));
        assert_eq!(
            s.cycles(),
            vec![
                Span::new(Frac::new(1, 2), Frac::ONE),
                Span::new(Frac::ONE, Frac::int(2)),
                Span::new(Frac::int(2), Frac::new(5, 2))
            ]
        );
        let a = Span::new(Frac::ZERO, Frac::ONE);
        let b = Span::new(Frac::ONE, Frac::int(2));
        assert_eq!(a.intersection(&b), None);
        let z = Span::new(Frac::ONE, Frac::ONE);
        assert_eq!(z.intersection(&b), Some(z));
    }
}
