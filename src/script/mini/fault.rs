//! What can go wrong while a pattern is queried, recorded on the side so that the
//! pattern algebra stays plain: the first fault of an expansion (an overflowing
//! time, a value an operator cannot use, too much work) and a work budget that
//! stops runaway patterns. Control thread (each expansion runs on one thread).

use std::cell::RefCell;
use std::ops::Range;
use std::sync::Arc;

/// Haps and cycle steps one expansion may create before it gives up: far beyond
/// any pattern a performer writes (a bar of 64th notes for 256 bars is 16384 hits),
/// small enough that a runaway string stops in well under a second.
pub const WORK_BUDGET: u64 = 4_000_000;

/// A fault found while querying a pattern.
#[derive(Clone, Debug, PartialEq)]
pub enum Fault {
    /// Times or factors too fine or too large to compute exactly.
    Overflow,
    /// More work than [`WORK_BUDGET`].
    TooMuchWork,
    /// A value an operator cannot use, with where it came from.
    Value { message: String, at: Option<Loc> },
}

/// A place in a mini-notation string: the string and a byte range of it.
#[derive(Clone, Debug, PartialEq)]
pub struct Loc {
    pub source: Arc<str>,
    pub at: Range<usize>,
}

struct State {
    budget: u64,
    fault: Option<Fault>,
}

thread_local! {
    static STATE: RefCell<State> = const { RefCell::new(State { budget: WORK_BUDGET, fault: None }) };
}

/// Records `f` unless a fault is already recorded.
pub fn fault(f: Fault) {
    STATE.with(|s| {
        let mut s = s.borrow_mut();
        if s.fault.is_none() {
            s.fault = Some(f);
        }
        // Nothing more is worth computing: let every loop stop.
        s.budget = 0;
    });
}

/// Spends `n` units of work; false (and a fault) once the budget is gone.
pub fn spend(n: u64) -> bool {
    STATE.with(|s| {
        let mut s = s.borrow_mut();
        if s.budget >= n {
            s.budget -= n;
            true
        } else {
            if s.fault.is_none() {
                s.fault = Some(Fault::TooMuchWork);
            }
            s.budget = 0;
            false
        }
    })
}

/// Runs `f` with a fresh budget, returning its result or the first fault.
pub fn guarded<T>(f: impl FnOnce() -> T) -> Result<T, Fault> {
    let saved = STATE.with(|s| {
        let mut s = s.borrow_mut();
        let saved = (s.budget, s.fault.take());
        s.budget = WORK_BUDGET;
        saved
    });
    let out = f();
    STATE.with(|s| {
        let mut s = s.borrow_mut();
        let fault = s.fault.take();
        s.budget = saved.0;
        s.fault = saved.1;
        match fault {
            Some(f) => Err(f),
            None => Ok(out),
        }
    })
}
