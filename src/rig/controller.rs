//! The control side's handle on a running engine: publishes snapshots (newest
//! wins, never more than the queue holds), sends events, and frees on this thread
//! whatever the engine retires.

use super::build::{BuildError, build_with};
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
        }
    }

    /// Builds `set` and publishes it. On error nothing is published.
    pub fn publish_set(&mut self, set: &Set) -> Result<(), BuildError> {
        let snap = build_with(set, self.patterns.as_ref(), &mut self.user_banks)?;
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
        let (control, engine_ports) = ports();
        let mut controller = Controller::new(control, sample_rate as u32);
        let snap = build_with(set, None, &mut controller.user_banks)?;
        controller.patterns = snap.patterns.clone();
        let engine = Engine::new(sample_rate, tables, snap, engine_ports);
        Ok(Rig { engine, controller })
    }
}
