//! The offline renderer: owns an engine and its controller, feeds scheduled events
//! in time, and renders blocks of interleaved stereo.

use crate::engine::event::Event;
use crate::engine::{Engine, EngineStats, TICK_FRAMES};
use crate::rig::build::BuildError;
use crate::rig::controller::Rig;
use crate::rig::set::SyncMode;
use crate::rig::{Controller, Set};
use crate::tables::Tables;
use std::sync::Arc;

/// Frames per `process` call unless told otherwise.
pub const DEFAULT_BLOCK: usize = 512;

/// How long to render.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Length {
    Bars(f64),
    Seconds(f64),
    /// The MIDI file's length plus a tail; without one, 8 bars or one cycle of the
    /// longest pattern (and a tail), whichever is longer.
    Auto,
}

#[derive(Clone, Debug)]
pub struct RenderOptions {
    pub sample_rate: u32,
    pub length: Length,
    /// Frames per `process` call (the result does not depend on it).
    pub block: usize,
}

impl Default for RenderOptions {
    fn default() -> Self {
        RenderOptions { sample_rate: 48000, length: Length::Auto, block: DEFAULT_BLOCK }
    }
}

/// Bars rendered when neither a length nor a MIDI file is given.
pub const DEFAULT_BARS: f64 = 8.0;
/// The longest ring-out after the end of a render (after the last bar, or the end
/// of the MIDI file): it ends sooner once the output stays below [`SILENCE`].
pub const TAIL_SECONDS: f64 = 30.0;
/// The level under which a ring-out has ended (-90 dBFS)...
pub const SILENCE: f32 = 3.2e-5;
/// ...for this long.
pub const SILENT_FOR_SECONDS: f64 = 0.25;
/// The fade that ends an exact cut (`--tail 0`) without a click.
pub const CUT_FADE_SECONDS: f64 = 0.005;
/// The longest render, in seconds of audio (ten hours): longer lengths, MIDI files
/// and captures are refused with an error.
pub const MAX_RENDER_SECONDS: f64 = 36_000.0;

/// The set as rendered offline: there is no external clock, so the transport runs
/// on the set's own tempo whatever its `clock(...)` says (Link keeps its quantum).
pub fn offline_view(set: &Set) -> Set {
    let mut s = set.clone();
    if let SyncMode::Link { quantum } = s.sync {
        s.beats_per_bar = quantum;
    }
    s.sync = SyncMode::Internal;
    s
}

/// Starts the render threads the command line asked for (none by default).
fn with_threads(engine: &mut Engine) {
    let n = crate::engine::workers::configured_threads();
    if n > 1 {
        engine.set_threads(n, false);
    }
}

/// The notes that `events` and the patterns of `set` play on the channels that play
/// the drum kit (what [`Renderer::for_notes`] takes). Only those reach the kit: a
/// channel's kind cannot change in a render, and a program change never makes a
/// channel a drum channel.
pub fn notes_played(set: &Set, events: &[Event]) -> [bool; 128] {
    let drums = |channel: u8| set.channels.get(&channel).is_some_and(|c| c.kind == crate::rig::set::ChannelKind::Drums);
    let mut notes = [false; 128];
    let from_events = events.iter().filter_map(|e| match e.kind {
        crate::engine::event::EventKind::NoteOn { channel, note, .. } if drums(channel.wrapping_add(1)) => Some(note),
        _ => None,
    });
    let from_patterns = set.patterns.values().filter(|p| drums(p.channel)).flat_map(|p| p.hits.iter().map(|h| h.note));
    for note in from_events.chain(from_patterns) {
        notes[note as usize & 127] = true;
    }
    notes
}

/// Whether a channel of `set` plays the drum kit (the set cannot change in a render).
fn plays_kit(set: &Set) -> bool {
    set.channels.values().any(|c| c.kind == crate::rig::set::ChannelKind::Drums)
}

pub struct Renderer {
    pub engine: Engine,
    pub controller: Controller,
    /// Events to feed, sorted by frame; `next` is the first not yet scheduled.
    events: Vec<Event>,
    next: usize,
    /// Keep the set's sync mode (MIDI clock among the events drives the transport).
    keep_sync: bool,
}

impl Renderer {
    /// An engine playing `set` at `sample_rate`, building its tables (the drum kit
    /// only if a channel plays it: the set cannot change here).
    pub fn new(set: &Set, sample_rate: u32) -> Result<Self, BuildError> {
        Self::with_tables(set, Arc::new(Tables::with_kit(sample_rate as f32, plays_kit(set))))
    }

    /// Same, for a render whose notes are all known before it starts: the drum kit
    /// holds only the sounds of the notes marked in `notes` (every note that an event
    /// or a pattern of the render plays on a drum channel), which start-up then renders
    /// alone. The sounds played are the whole kit's.
    pub fn for_notes(set: &Set, sample_rate: u32, notes: &[bool; 128]) -> Result<Self, BuildError> {
        let sr = sample_rate as f32;
        let tables = if plays_kit(set) { Tables::for_drum_notes(sr, notes) } else { Tables::with_kit(sr, false) };
        Self::with_tables(set, Arc::new(tables))
    }

    /// Same, sharing already-built tables (they fix the sample rate).
    pub fn with_tables(set: &Set, tables: Arc<Tables>) -> Result<Self, BuildError> {
        let sr = tables.sample_rate;
        let Rig { mut engine, controller } = Rig::new(&offline_view(set), sr, tables)?;
        with_threads(&mut engine);
        Ok(Renderer { engine, controller, events: Vec::new(), next: 0, keep_sync: false })
    }

    /// An engine playing `set` with its own sync mode: with `clock("midi")`, the
    /// MIDI clock ticks and Start/Stop/Continue/Song Position among the events drive
    /// the transport, as they would live.
    pub fn following_clock(set: &Set, tables: Arc<Tables>) -> Result<Self, BuildError> {
        let sr = tables.sample_rate;
        let Rig { mut engine, controller } = Rig::new(set, sr, tables)?;
        with_threads(&mut engine);
        Ok(Renderer { engine, controller, events: Vec::new(), next: 0, keep_sync: true })
    }

    pub fn sample_rate(&self) -> u32 {
        self.engine.sample_rate() as u32
    }

    pub fn stats(&self) -> &Arc<EngineStats> {
        self.engine.stats()
    }

    /// Adds events to play (any order; frames are absolute).
    pub fn add_events(&mut self, evs: impl IntoIterator<Item = Event>) {
        self.events.extend(evs);
        self.events[self.next..].sort_by_key(|e| e.frame);
    }

    /// Publishes a new set; the engine adopts it at its next tick.
    pub fn publish(&mut self, set: &Set) -> Result<(), BuildError> {
        if self.keep_sync { self.controller.publish_set(set) } else { self.controller.publish_set(&offline_view(set)) }
    }

    /// Renders `frames` frames of interleaved stereo, `block` frames per call.
    pub fn render(&mut self, frames: usize, block: usize) -> Vec<f32> {
        let mut out = vec![0.0; frames * 2];
        self.render_into(&mut out, block);
        out
    }

    /// Ends the music at `frame` (or the next tick start, if later): the transport
    /// stops (patterns stop and release their notes), every channel releases its
    /// notes and its sustain pedal, and events not yet played are dropped. What
    /// sounds rings on.
    pub fn end_at(&mut self, frame: u64) {
        use crate::engine::event::EventKind;
        let at = frame.max(self.engine.frame());
        self.events.truncate(self.next);
        self.events.push(Event::new(at, EventKind::Stop));
        for channel in 0..crate::engine::snapshot::MAX_CHANNELS as u8 {
            self.events.push(Event::new(at, EventKind::Control { channel, cc: 64, value: 0 }));
            self.events.push(Event::new(at, EventKind::Control { channel, cc: 123, value: 0 }));
        }
    }

    /// Events not yet handed to the engine.
    pub fn events_waiting(&self) -> usize {
        self.events.len() - self.next
    }

    /// Renders into `out` (interleaved stereo), at most `block` frames per `process`
    /// call. At each tick start the engine is handed the events due in that tick,
    /// as many as it has room for: the rest wait for the next tick, so no event is
    /// ever dropped (and the output does not depend on `block`). Where `block`
    /// holds several whole ticks, the events of as many ticks as fit are handed
    /// over at once and the engine renders those ticks in one call (a batch).
    pub fn render_into(&mut self, out: &mut [f32], block: usize) {
        let block = block.max(1);
        let mut rest = out;
        let mut since_collect = 0;
        while rest.len() >= 2 {
            let mut n = self.engine.frames_to_tick_end().min(block).min(rest.len() / 2);
            if self.engine.at_tick_start() {
                // The ticks whose events all fit; a tick whose events do not is
                // rendered alone, first in its call (the rest wait, as above).
                let ticks = block.min(rest.len() / 2) / TICK_FRAMES;
                let mut whole = 0;
                let mut end = self.engine.frame() + TICK_FRAMES as u64;
                while whole < ticks.max(1) {
                    while self.next < self.events.len() && self.events[self.next].frame < end && self.engine.room() > 0
                    {
                        self.engine.schedule(self.events[self.next]);
                        self.next += 1;
                    }
                    if self.next < self.events.len() && self.events[self.next].frame < end {
                        break;
                    }
                    whole += 1;
                    end += TICK_FRAMES as u64;
                }
                n = n.max(whole.min(ticks) * TICK_FRAMES);
            }
            let (now, later) = rest.split_at_mut(2 * n);
            self.engine.process(now, 2);
            rest = later;
            since_collect += n;
            if since_collect >= block {
                self.controller.collect();
                since_collect = 0;
            }
        }
        self.controller.collect();
    }
}
