//! DSP building blocks: pure, allocation-free processing that any thread may run.
//! The engine runs them on the audio thread; the table builders on the control thread.
//! Buffers are allocated by constructors (control side) and never resized.

pub mod biquad;
pub mod chorus;
pub mod delay;
pub mod glide;
pub mod math;
pub mod phaser;
pub mod reverb;
pub mod svf;
