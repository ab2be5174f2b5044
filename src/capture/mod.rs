//! Capture: what was played, kept. Recorded takes become Standard MIDI Files
//! ([`smf`]); the control side collects the events and writes them off the audio
//! thread. A session capture ([`session`]) logs everything that shaped the sound,
//! and [`replay`] plays it again offline.

pub mod recorder;
pub mod replay;
pub mod session;
pub mod smf;
