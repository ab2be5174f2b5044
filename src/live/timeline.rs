//! The start-up timeline of `jamrig play`, off unless `JAMRIG_STARTUP_TIMELINE` is set: each step's moment on stderr (control side), and two stamps the JACK callback (audio thread) takes.
//!
//! The variable holds the moment to count from, in nanoseconds of the system's
//! monotonic clock (the process that started jamrig reads it just before); empty
//! or unreadable, jamrig counts from its `main`. `benches/live.rs` sets it and
//! gathers the lines (`-- startup`).

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

/// The environment variable that turns the timeline on.
pub const ENV: &str = "JAMRIG_STARTUP_TIMELINE";
/// How long the control side waits for the callback's stamps before it writes them.
const STAMPS_WAIT_MS: u64 = 2000;

/// Set once [`init`] found the variable: read by the callback without a lock.
static ON: AtomicBool = AtomicBool::new(false);
/// The moment counted from (monotonic nanoseconds).
static ORIGIN: OnceLock<u64> = OnceLock::new();
/// The first run of the JACK process callback (0: not yet).
pub static FIRST_CALLBACK: AtomicU64 = AtomicU64::new(0);
/// The first cycle that played the engine (0: not yet).
pub static ENGINE_ADOPTED: AtomicU64 = AtomicU64::new(0);

/// The monotonic clock now, in nanoseconds (the vDSO: no system call, no allocation).
#[inline]
pub fn now_ns() -> u64 {
    let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes the timespec it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut t) };
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

/// Control side, first thing in `main`: turns the timeline on when the variable is set.
pub fn init() {
    let Some(v) = std::env::var_os(ENV) else { return };
    let now = now_ns();
    start_at(v.to_str().and_then(|s| s.trim().parse::<u64>().ok()).filter(|&o| o <= now).unwrap_or(now));
    mark("main");
}

/// Turns the timeline on, counting from `origin_ns` (monotonic nanoseconds; the
/// first call's origin holds).
pub fn start_at(origin_ns: u64) {
    let _ = ORIGIN.set(origin_ns);
    ON.store(true, Relaxed);
}

/// Whether the timeline is on.
pub fn on() -> bool {
    ON.load(Relaxed)
}

fn line(step: &str, at_ns: u64) {
    let origin = ORIGIN.get().copied().unwrap_or(at_ns);
    eprintln!("timeline: {step}: {:.2} ms", at_ns.saturating_sub(origin) as f64 / 1e6);
}

/// Control side: writes `step` and its moment, when the timeline is on.
pub fn mark(step: &str) {
    if on() {
        line(step, now_ns());
    }
}

/// Audio thread: stamps `slot` with the moment now, the first time, when the
/// timeline is on (a relaxed load otherwise).
#[inline]
pub fn stamp(slot: &AtomicU64) {
    if ON.load(Relaxed) && slot.load(Relaxed) == 0 {
        slot.store(now_ns(), Relaxed);
    }
}

/// Control side, once the set plays: writes the callback's stamps (waiting for them
/// up to [`STAMPS_WAIT_MS`]), when the timeline is on.
pub fn write_stamps() {
    if !on() {
        return;
    }
    let t0 = std::time::Instant::now();
    while ENGINE_ADOPTED.load(Relaxed) == 0 && t0.elapsed().as_millis() < STAMPS_WAIT_MS as u128 {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    for (step, slot) in [("first callback", &FIRST_CALLBACK), ("engine adopted", &ENGINE_ADOPTED)] {
        match slot.load(Relaxed) {
            0 => eprintln!("timeline: {step}: not seen"),
            at => line(step, at),
        }
    }
}
