//! The control side of the rig: the set as plain data ([`set::Set`]), the step that
//! turns it into an engine snapshot ([`build`]), and the [`controller::Controller`]
//! that publishes snapshots, sends events and frees what the engine retires. Runs on
//! the control (script) thread; allocation is allowed here.

pub mod build;
pub mod controller;
pub mod describe;
pub mod events;
pub mod set;

pub use controller::{Controller, Rig};
pub use set::Set;
