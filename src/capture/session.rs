//! Session capture: everything that shaped the sound of a live session, with the
//! engine frame it took effect at, written as it happens into `DIR/capture.jsonl`;
//! `jamrig render --replay DIR` plays it again through the same engine.
//!
//! The format (documented for users in CAPTURE.md) is JSON Lines: one record per
//! line, each an object whose `record` field names its kind. The first line is the
//! header (`format`, `version`, `sample_rate`, `set`). Readers skip records of
//! kinds they do not know and fields they do not know, so later versions can add
//! both; a change that old readers could not skip safely raises `version`.

use crate::engine::ChannelMidi;
use crate::engine::event::{Event, EventKind};
use crate::engine::sync::SyncMode;
use crate::engine::tap::{CaptureTap, Captured};
use crate::params::Param;
use crate::script::session::Session;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

/// The file inside a capture folder (the first part).
pub const CAPTURE_FILE: &str = "capture.jsonl";

/// The file of part `n` (from 1) of a capture: a session whose audio device was
/// reopened goes on in a new part, since its engine starts again from frame 0.
pub fn part_file(n: u32) -> String {
    if n <= 1 { CAPTURE_FILE.to_string() } else { format!("capture.{n}.jsonl") }
}
/// The header's `format`.
pub const FORMAT: &str = "jamrig-capture";
/// The format version this build writes and the newest it reads.
pub const VERSION: u32 = 1;
/// Records waiting for the writer thread (seconds of the densest session).
pub const WRITE_QUEUE: usize = 1 << 16;
/// The writer flushes to disk when it has been idle this long (and at the end).
const FLUSH_AFTER: Duration = Duration::from_millis(100);

/// One line of a capture.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "record", rename_all = "snake_case")]
pub enum Record {
    /// The first line.
    Header { format: String, version: u32, sample_rate: u32, set: String },
    /// A set as published: its main file, the names of all the files it was made
    /// from (`uses`), the text of each that changed since the previous `set` record
    /// (all of them the first time), the REPL lines applied on top in order, and
    /// the clock forced on the command line.
    Set {
        serial: u64,
        main: String,
        #[serde(default)]
        uses: Vec<String>,
        #[serde(default)]
        files: BTreeMap<String, String>,
        #[serde(default)]
        repl: Vec<String>,
        #[serde(default)]
        sync: Option<String>,
    },
    /// The engine adopted set `serial` at the tick starting at `frame`.
    Adopt { serial: u64, frame: u64 },
    /// An event took effect at `frame`: MIDI bytes (`midi`), a transport
    /// command (`command`: start, stop, continue, panic), a `tempo`, or a knob
    /// (`param`: a parameter set through the control port).
    Event {
        frame: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        midi: Option<Vec<u8>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        command: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tempo: Option<f32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        param: Option<KnobRecord>,
    },
    /// From the tick starting at `frame`, the engine followed an external
    /// session's timeline (Ableton Link): `beat` at engine frame `at`.
    Timeline { frame: u64, at: u64, beat: f64, bpm: f64, playing: bool },
    /// What MIDI had set on channels before this part began (an engine rebuilt on a
    /// reopened audio device takes it over at frame 0): knob positions, program,
    /// bend, pedal, expression.
    Channels { channels: Vec<ChannelRecord> },
    /// Records the engine could not hand over (its queue was full).
    Lost { count: u64 },
    /// The session ended after `frame` frames.
    End { frame: u64 },
}

/// A knob turned through the control port: a channel's parameter, by name, and
/// its value in the parameter's units.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KnobRecord {
    /// 1-based, as in sets.
    pub channel: u8,
    pub name: String,
    pub value: f32,
}

/// One channel of a `channels` record.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChannelRecord {
    /// 1-based, as in sets.
    pub channel: u8,
    /// Parameters set by knobs, by name.
    #[serde(default)]
    pub params: BTreeMap<String, f32>,
    #[serde(default)]
    pub program: Option<u8>,
    #[serde(default)]
    pub bend: i16,
    #[serde(default)]
    pub pedal: bool,
    #[serde(default = "unity")]
    pub expression: f32,
}

fn unity() -> f32 {
    1.0
}

impl ChannelRecord {
    pub fn from_midi(m: &ChannelMidi) -> ChannelRecord {
        ChannelRecord {
            channel: m.channel + 1,
            params: m.knobs.iter().map(|(p, v)| (p.name().to_string(), *v)).collect(),
            program: m.program,
            bend: m.bend,
            pedal: m.pedal,
            expression: m.expression,
        }
    }

    /// The channel's state for the engine; an unknown parameter name is an error.
    pub fn to_midi(&self) -> Result<ChannelMidi, String> {
        if !(1..=16).contains(&self.channel) {
            return Err(format!("channel {} is outside 1..16", self.channel));
        }
        let knobs = self
            .params
            .iter()
            .map(|(n, v)| Param::from_name(n).map(|p| (p, *v)).ok_or_else(|| format!("unknown parameter \"{n}\"")))
            .collect::<Result<_, _>>()?;
        Ok(ChannelMidi {
            channel: self.channel - 1,
            knobs,
            program: self.program,
            bend: self.bend,
            pedal: self.pedal,
            expression: self.expression,
        })
    }
}

/// A sync mode as a capture writes it.
pub fn sync_name(s: SyncMode) -> String {
    match s {
        SyncMode::Link { quantum } => format!("link:{quantum}"),
        other => other.name().to_string(),
    }
}

pub fn parse_sync(s: &str) -> Option<SyncMode> {
    match s {
        "internal" => Some(SyncMode::Internal),
        "midi" => Some(SyncMode::Midi),
        _ => s
            .strip_prefix("link:")
            .and_then(|q| q.parse::<f64>().ok())
            .filter(|q| (1.0..=64.0).contains(q))
            .map(|quantum| SyncMode::Link { quantum }),
    }
}

/// An engine event as a record (engine-made events are never captured).
pub fn event_record(ev: &Event) -> Option<Record> {
    if let EventKind::Param { channel, param, value } = ev.kind {
        let name = Param::ALL.get(param as usize)?.name().to_string();
        let param = Some(KnobRecord { channel: channel + 1, name, value });
        return Some(Record::Event { frame: ev.frame, midi: None, command: None, tempo: None, param });
    }
    let (midi, command, tempo): (Option<Vec<u8>>, Option<&str>, Option<f32>) = match ev.kind {
        EventKind::NoteOn { channel, note, velocity } => (Some(vec![0x90 | channel, note, velocity]), None, None),
        EventKind::NoteOff { channel, note } => (Some(vec![0x80 | channel, note, 0]), None, None),
        EventKind::Control { channel, cc, value } => (Some(vec![0xB0 | channel, cc, value]), None, None),
        EventKind::PitchBend { channel, value } => {
            let v = (value as i32 + 8192).clamp(0, 16383) as u16;
            (Some(vec![0xE0 | channel, (v & 0x7F) as u8, (v >> 7) as u8]), None, None)
        }
        EventKind::Program { channel, program } => (Some(vec![0xC0 | channel, program]), None, None),
        EventKind::Pressure { channel, value } => (Some(vec![0xD0 | channel, value]), None, None),
        EventKind::Clock => (Some(vec![0xF8]), None, None),
        EventKind::ClockStart => (Some(vec![0xFA]), None, None),
        EventKind::ClockContinue => (Some(vec![0xFB]), None, None),
        EventKind::ClockStop => (Some(vec![0xFC]), None, None),
        EventKind::SongPosition(p) => (Some(vec![0xF2, (p & 0x7F) as u8, (p >> 7) as u8]), None, None),
        EventKind::Start => (None, Some("start"), None),
        EventKind::Stop => (None, Some("stop"), None),
        EventKind::Continue => (None, Some("continue"), None),
        EventKind::Panic => (None, Some("panic"), None),
        EventKind::Tempo(bpm) => (None, None, Some(bpm)),
        EventKind::Launch { .. } | EventKind::Param { .. } => return None,
    };
    Some(Record::Event { frame: ev.frame, midi, command: command.map(str::to_string), tempo, param: None })
}

/// The engine event an `event` record describes.
pub fn record_event(
    frame: u64,
    midi: Option<&[u8]>,
    command: Option<&str>,
    tempo: Option<f32>,
    param: Option<&KnobRecord>,
) -> Result<Event, String> {
    if let Some(k) = param {
        if midi.is_some() || command.is_some() || tempo.is_some() {
            return Err("an event has exactly one of midi, command, tempo or param".into());
        }
        if !(1..=16).contains(&k.channel) {
            return Err(format!("channel {} is outside 1..16", k.channel));
        }
        let p = Param::from_name(&k.name).ok_or_else(|| format!("unknown parameter \"{}\"", k.name))?;
        let value = p.check(k.value)?;
        return Ok(Event::new(frame, EventKind::Param { channel: k.channel - 1, param: p as u8, value }));
    }
    let kind = match (midi, command, tempo) {
        (Some(bytes), None, None) => {
            // A note-on of velocity 0 is a note-off, which is written as 0x80.
            match Event::from_midi(frame, bytes) {
                Some(ev) if bytes.len() == expected_len(bytes[0]) => return Ok(ev),
                _ => return Err(format!("not a MIDI message jamrig plays: {bytes:?}")),
            }
        }
        (None, Some("start"), None) => EventKind::Start,
        (None, Some("stop"), None) => EventKind::Stop,
        (None, Some("continue"), None) => EventKind::Continue,
        (None, Some("panic"), None) => EventKind::Panic,
        (None, None, Some(bpm)) if (1.0..=999.0).contains(&bpm) => EventKind::Tempo(bpm),
        (None, None, Some(bpm)) => return Err(format!("tempo {bpm} is outside 1..999 BPM")),
        (None, Some(other), None) => return Err(format!("unknown command \"{other}\"")),
        _ => return Err("an event has exactly one of midi, command, tempo or param".into()),
    };
    Ok(Event::new(frame, kind))
}

fn expected_len(status: u8) -> usize {
    match status {
        0xF8..=0xFF => 1,
        0xF2 => 3,
        s if (0xC0..=0xDF).contains(&s) => 2,
        _ => 3,
    }
}

/// Writes records on a thread of its own (the control thread never waits on the
/// disk). Records that do not fit the queue are counted and noted in the file.
pub struct CaptureWriter {
    tx: Option<crossbeam_channel::Sender<Record>>,
    thread: Option<std::thread::JoinHandle<std::io::Result<u64>>>,
    dropped: u64,
    pub path: PathBuf,
}

impl CaptureWriter {
    /// Creates `dir` (if needed) and the file of part `part`, and writes the header.
    pub fn create(dir: &Path, part: u32, sample_rate: u32, set: &str) -> std::io::Result<CaptureWriter> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(part_file(part));
        let file = std::fs::File::create(&path)?;
        let mut out = BufWriter::new(file);
        let header = Record::Header { format: FORMAT.into(), version: VERSION, sample_rate, set: set.into() };
        write_line(&mut out, &header)?;
        out.flush()?;
        let (tx, rx) = crossbeam_channel::bounded::<Record>(WRITE_QUEUE);
        let thread = std::thread::Builder::new().name("jamrig-capture".into()).spawn(move || {
            let mut lines = 1u64;
            loop {
                match rx.recv_timeout(FLUSH_AFTER) {
                    Ok(r) => {
                        write_line(&mut out, &r)?;
                        lines += 1;
                    }
                    Err(crossbeam_channel::RecvTimeoutError::Timeout) => out.flush()?,
                    Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
                }
            }
            out.flush()?;
            out.get_ref().sync_all()?;
            Ok(lines)
        })?;
        Ok(CaptureWriter { tx: Some(tx), thread: Some(thread), dropped: 0, path })
    }

    pub fn send(&mut self, r: Record) {
        if let Some(tx) = &self.tx
            && tx.try_send(r).is_err()
        {
            self.dropped += 1;
        }
    }

    /// Writes the end record and waits for the file to be on disk; returns the
    /// number of lines.
    pub fn finish(mut self, end_frame: u64) -> std::io::Result<u64> {
        if self.dropped > 0 {
            let n = self.dropped;
            self.send(Record::Lost { count: n });
        }
        self.send(Record::End { frame: end_frame });
        self.tx = None;
        match self.thread.take().map(|t| t.join()) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err(std::io::Error::other("the capture writer stopped")),
            None => Ok(0),
        }
    }
}

impl Drop for CaptureWriter {
    fn drop(&mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn write_line(out: &mut impl Write, r: &Record) -> std::io::Result<()> {
    serde_json::to_writer(&mut *out, r)?;
    out.write_all(b"\n")
}

/// The live host's side of a capture: turns what the engine tells its tap and the
/// sets the session publishes into records.
pub struct SessionCapture {
    writer: CaptureWriter,
    tap: Arc<CaptureTap>,
    /// The serial of the last set written.
    serial: u64,
    /// Every file's text as last written, by its name relative to the set's folder.
    files: BTreeMap<String, String>,
    lost_noted: u64,
    part: u32,
}

/// A file's name in a capture: relative to the set's folder.
fn capture_name(folder: &Path, path: &Path) -> String {
    path.strip_prefix(folder)
        .ok()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| Path::new(path.file_name().unwrap_or(path.as_os_str())))
        .to_string_lossy()
        .into_owned()
}

impl SessionCapture {
    /// Starts a capture in `dir` of a session whose engine starts with set 0 (the
    /// session's current one) at frame 0. Returns the tap to give the engine.
    pub fn start(
        dir: &Path,
        sample_rate: u32,
        session: &Session,
    ) -> std::io::Result<(SessionCapture, Arc<CaptureTap>)> {
        Self::start_part(dir, 1, sample_rate, session)
    }

    /// The same for part `part` of the capture (a new engine after the audio
    /// device was reopened).
    pub fn start_part(
        dir: &Path,
        part: u32,
        sample_rate: u32,
        session: &Session,
    ) -> std::io::Result<(SessionCapture, Arc<CaptureTap>)> {
        let set_name = session.path().file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let writer = CaptureWriter::create(dir, part, sample_rate, &set_name)?;
        let tap = Arc::new(CaptureTap::default());
        let mut c = SessionCapture { writer, tap: tap.clone(), serial: 0, files: BTreeMap::new(), lost_noted: 0, part };
        c.write_set(0, session);
        c.writer.send(Record::Adopt { serial: 0, frame: 0 });
        Ok((c, tap))
    }

    pub fn path(&self) -> &Path {
        &self.writer.path
    }

    /// Notes what MIDI had set on the channels that the engine of this part took
    /// over (nothing when MIDI had left them alone).
    pub fn note_channel_midi(&mut self, state: &[ChannelMidi]) {
        if !state.is_empty() {
            self.writer.send(Record::Channels { channels: state.iter().map(ChannelRecord::from_midi).collect() });
        }
    }

    /// Which part of the capture this is (from 1).
    pub fn part(&self) -> u32 {
        self.part
    }

    /// Notes the session's set if a newer one than the last written has been
    /// published (`serial` is the controller's last). Call after anything that may
    /// publish.
    pub fn note_set(&mut self, serial: u64, session: &Session) {
        if serial != self.serial {
            self.write_set(serial, session);
        }
    }

    fn write_set(&mut self, serial: u64, session: &Session) {
        let folder = session.path().parent().unwrap_or(Path::new("")).to_path_buf();
        let mut changed = BTreeMap::new();
        let mut uses = Vec::new();
        for (path, text) in session.sources() {
            let name = capture_name(&folder, path);
            uses.push(name.clone());
            if self.files.get(&name) != Some(text) {
                self.files.insert(name.clone(), text.clone());
                changed.insert(name, text.clone());
            }
        }
        self.writer.send(Record::Set {
            serial,
            main: capture_name(&folder, session.path()),
            uses,
            files: changed,
            repl: session.repl_lines(),
            sync: session.sync_override().map(sync_name),
        });
        self.serial = serial;
    }

    /// Moves what the engine told the tap into the file.
    pub fn drain(&mut self) {
        while let Some(c) = self.tap.pop() {
            let r = match c {
                Captured::Event(ev) => event_record(&ev),
                Captured::Adopted { serial, frame } => Some(Record::Adopt { serial, frame }),
                Captured::Timeline { frame, timeline: t } => {
                    Some(Record::Timeline { frame, at: t.frame, beat: t.beat, bpm: t.bpm, playing: t.playing })
                }
            };
            if let Some(r) = r {
                self.writer.send(r);
            }
        }
        let lost = self.tap.lost.load(Relaxed);
        if lost > self.lost_noted {
            self.writer.send(Record::Lost { count: lost - self.lost_noted });
            self.lost_noted = lost;
        }
    }

    /// Ends the capture after `end_frame` frames; returns a line for the user.
    pub fn finish(mut self, end_frame: u64) -> std::io::Result<String> {
        self.drain();
        let lost = self.lost_noted;
        let path = self.writer.path.clone();
        let lines = self.writer.finish(end_frame)?;
        let mut s = format!("capture: wrote {} ({lines} records)", path.display());
        if lost > 0 {
            s.push_str(&format!("; {lost} records were lost (the capture is incomplete)"));
        }
        Ok(s)
    }
}
