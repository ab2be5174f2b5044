//! Offline rendering: the realtime engine driven on a sample clock by the caller's
//! thread (which plays the audio thread's part), far faster than real time and
//! bit-identical from run to run. Used by `jamrig render` and by the tests.

pub mod audition;
pub mod job;
pub mod levels;
pub mod midifile;
pub mod render;
pub mod wav;

pub use render::{Length, RenderOptions, Renderer};
