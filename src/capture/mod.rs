//! Capture: what was played, kept. Recorded takes become Standard MIDI Files
//! ([`smf`]); the control side collects the events and writes them off the audio
//! thread.

pub mod recorder;
pub mod smf;
