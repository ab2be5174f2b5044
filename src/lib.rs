//! jamrig: a live-coding host for a MIDI-driven synth rig.
//!
//! The source tree follows the threads: [`engine`] runs on the audio thread only;
//! [`rig`] and [`script`] run on the control (script) thread and build what the
//! engine reads; [`tables`] are built on the control side and read by the engine;
//! [`offline`] drives the engine on a sample clock; [`dsp`], [`params`] and
//! [`theory`] are pure building blocks any thread may use.

// Script diagnostics carry their source line for the caret report; they are made on
// the control side, rarely, so their size in `Result`s does not matter.
#![allow(clippy::result_large_err)]

pub mod capture;
pub mod dsp;
pub mod engine;
pub mod files;
pub mod live;
pub mod offline;
pub mod params;
pub mod rig;
pub mod samples;
pub mod script;
pub mod tables;
pub mod text;
pub mod theory;
