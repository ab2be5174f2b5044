//! DSP building blocks: pure, allocation-free processing that any thread may run.
//! The engine runs them on the audio thread; the table builders on the control thread.
//! Buffers are allocated by constructors (control side) and never resized.

pub mod biquad;
pub mod chorus;
pub mod delay;
pub mod glide;
pub mod math;
pub mod oversample;
pub mod phaser;
pub mod reverb;
pub mod svf;
pub mod wavescan;

/// Whether [`zeroed`] maps its pages at once (the default, for the live host).
static PREFAULT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

/// Turns page pre-faulting off or on. An offline render, where the engine's thread
/// has no deadline, turns it off: buffers of channels and voices that never play
/// then take no memory.
pub fn set_prefault(on: bool) {
    PREFAULT.store(on, std::sync::atomic::Ordering::Relaxed);
}

/// Whether buffers are pre-faulted (see [`set_prefault`]).
pub fn prefaults() -> bool {
    PREFAULT.load(std::sync::atomic::Ordering::Relaxed)
}

/// A zeroed buffer whose pages are already mapped: a buffer the audio thread will
/// write must not page-fault there on first touch (control side).
pub fn zeroed(len: usize) -> Box<[f32]> {
    let mut buf = vec![0.0f32; len].into_boxed_slice();
    if !PREFAULT.load(std::sync::atomic::Ordering::Relaxed) {
        return buf;
    }
    // Freshly allocated zeroed memory is mapped lazily; store to every page so the
    // faults happen here. `black_box` keeps the stores from being elided.
    for x in buf.iter_mut().step_by(1024) {
        *std::hint::black_box(x) = 0.0;
    }
    buf
}
