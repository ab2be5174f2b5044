//! The control side's handle on a running engine: publishes snapshots (newest
//! wins, never more than the queue holds), sends events, and frees on this thread
//! whatever the engine retires.

use super::build::{BuildError, OutPorts, build_with};
use super::set::Set;
use crate::engine::event::Event;
use crate::engine::snapshot::PatternSet;
use crate::engine::{ControlPorts, Engine, EngineStats, Garbage, SNAPSHOT_QUEUE_CAP, ports};
use crate::tables::Tables;
use std::sync::Arc;

pub struct Controller {
    ports: ControlPorts,
    /// A snapshot waiting for room in the queue (replaced by anything newer).
    pending: Option<Box<crate::engine::snapshot::Snapshot>>,
    /// Snapshots sent and not yet returned.
    in_flight: usize,
    /// The pattern set last published, shared when unchanged.
    patterns: Option<Arc<PatternSet>>,
    /// The serial of the last snapshot published (0: the engine's first).
    serial: u64,
    /// The set's own samples as a bank at the engine's rate.
    user_banks: crate::samples::store::UserBanks,
    sample_rate: u32,
    /// The output port of each MIDI output device (made before a snapshot routes
    /// to it).
    out_ports: OutPorts,
}

impl Controller {
    pub fn new(ports: ControlPorts, sample_rate: u32) -> Self {
        Controller {
            ports,
            pending: None,
            in_flight: 0,
            patterns: None,
            serial: 0,
            user_banks: crate::samples::store::UserBanks::new(sample_rate),
            sample_rate,
            out_ports: OutPorts::new(),
        }
    }

    /// From the next set published on, external channels go out on these ports
    /// (each must exist before a snapshot routes to it).
    pub fn set_out_ports(&mut self, ports: OutPorts) {
        self.out_ports = ports;
    }

    /// Builds `set` and publishes it. On error nothing is published.
    pub fn publish_set(&mut self, set: &Set) -> Result<(), BuildError> {
        let ports = self.out_ports.clone();
        self.publish_set_with(set, ports, || ())
    }

    /// Builds `set` with its external channels on `out_ports`; once it is built,
    /// runs `before` (which makes the ports), then publishes it and routes later
    /// sets the same way. On error nothing is run or published.
    pub fn publish_set_with(
        &mut self,
        set: &Set,
        out_ports: OutPorts,
        before: impl FnOnce(),
    ) -> Result<(), BuildError> {
        let snap = build_with(set, self.patterns.as_ref(), &mut self.user_banks, &out_ports)?;
        before();
        self.out_ports = out_ports;
        self.patterns = snap.patterns.clone();
        self.publish(snap);
        Ok(())
    }

    /// The serial of the last snapshot published (0 before any).
    pub fn last_serial(&self) -> u64 {
        self.serial
    }

    /// Publishes a snapshot; the engine adopts the newest at its next tick.
    pub fn publish(&mut self, mut snap: crate::engine::snapshot::Snapshot) {
        self.serial += 1;
        snap.serial = self.serial;
        // The voices' delay lines, the first time a synth needs them, and the voice
        // slots and bus of each channel the snapshot is the first to configure.
        self.ports.lines.provide(&snap, self.sample_rate as f32);
        self.ports.prebuilt.provide(&snap, self.sample_rate as f32);
        self.pending = Some(Box::new(snap));
        self.collect();
    }

    /// Frees what the engine has retired and sends a waiting snapshot if there is
    /// room. Call it regularly (the live host does, every few milliseconds).
    pub fn collect(&mut self) {
        while let Ok(g) = self.ports.trash.pop() {
            if let Garbage::Snapshot(_) = g {
                self.in_flight = self.in_flight.saturating_sub(1);
            }
            drop(g);
        }
        if self.in_flight < SNAPSHOT_QUEUE_CAP
            && let Some(s) = self.pending.take()
        {
            match self.ports.snapshots.push(s) {
                Ok(()) => self.in_flight += 1,
                Err(rtrb::PushError::Full(s)) => self.pending = Some(s),
            }
        }
    }

    /// Whether a published snapshot is still waiting to be sent.
    pub fn has_pending(&self) -> bool {
        self.pending.is_some()
    }

    /// Sends an event; a full queue refuses it and counts it (a release or a
    /// controller's newest value is kept all the same: [`crate::engine::inbox`]).
    pub fn send(&self, ev: Event) -> bool {
        self.ports.events.push(ev, &self.ports.stats)
    }

    /// A cloneable sender for other threads (MIDI input, keyboard).
    pub fn event_sender(&self) -> EventSender {
        EventSender { queue: self.ports.events.clone(), stats: self.ports.stats.clone() }
    }

    pub fn stats(&self) -> &Arc<EngineStats> {
        &self.ports.stats
    }

    /// The channels whose voice slots and bus have been built (bit `ch`, 0-based),
    /// and those of them still waiting for the engine to adopt a snapshot that
    /// configures them.
    pub fn channels_built(&self) -> (u32, u32) {
        (self.ports.prebuilt.provided(), self.ports.prebuilt.waiting())
    }
}

/// Sends events to the engine from any thread.
#[derive(Clone)]
pub struct EventSender {
    queue: Arc<crate::engine::inbox::Inbox>,
    stats: Arc<EngineStats>,
}

impl EventSender {
    pub fn send(&self, ev: Event) -> bool {
        self.queue.push(ev, &self.stats)
    }
}

/// An engine and its controller, built together for a set (control side).
pub struct Rig {
    pub engine: Engine,
    pub controller: Controller,
}

impl Rig {
    pub fn new(set: &Set, sample_rate: f32, tables: Arc<Tables>) -> Result<Rig, BuildError> {
        Rig::routed(set, sample_rate, tables, OutPorts::new())
    }

    /// [`Rig::new`], with the external channels' devices on `out_ports` (ports
    /// that exist before the engine runs).
    pub fn routed(set: &Set, sample_rate: f32, tables: Arc<Tables>, out_ports: OutPorts) -> Result<Rig, BuildError> {
        let (control, engine_ports) = ports();
        let mut controller = Controller::new(control, sample_rate as u32);
        controller.out_ports = out_ports;
        let snap = build_with(set, None, &mut controller.user_banks, &controller.out_ports)?;
        controller.patterns = snap.patterns.clone();
        let engine = Engine::new(sample_rate, tables, snap, engine_ports);
        Ok(Rig { engine, controller })
    }
}
