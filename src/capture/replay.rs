//! Reading a session capture and playing it again offline: the same sets,
//! re-evaluated from the captured script text, adopted at the frames the live
//! engine adopted them, the same events at the frames they took effect, the same
//! external timeline; through the same engine, so the output is the live output.

use super::session::{CAPTURE_FILE, FORMAT, Record, VERSION, parse_sync, part_file, record_event};
use crate::engine::TICK_FRAMES;
use crate::engine::event::Event;
use crate::engine::sync::ExternalTimeline;
use crate::offline::Renderer;
use crate::rig::set::Set;
use crate::script::{Folder, ScriptHost};
use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("cannot read {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}:{line}: damaged capture record: {message}")]
    Damaged { path: PathBuf, line: usize, message: String },
    #[error("{path}: written by a newer jamrig (capture version {version}; this one reads up to {VERSION})")]
    Newer { path: PathBuf, version: u32 },
    #[error("{0}")]
    Set(String),
}

/// A set as the capture describes it: the files it was made from (all of them,
/// as they were at that point), its main file, the REPL lines on top, the clock
/// forced on the command line.
#[derive(Clone, Debug, PartialEq)]
pub struct CapturedSet {
    pub main: String,
    pub files: BTreeMap<String, String>,
    pub repl: Vec<String>,
    pub sync: Option<String>,
}

/// A capture, read.
#[derive(Clone, Debug, Default)]
pub struct CaptureLog {
    pub sample_rate: u32,
    pub set_name: String,
    pub sets: BTreeMap<u64, CapturedSet>,
    /// (frame, serial), in order.
    pub adopts: Vec<(u64, u64)>,
    pub events: Vec<Event>,
    /// (frame, timeline), in order.
    pub timelines: Vec<(u64, ExternalTimeline)>,
    /// The session's last frame (None: it ended without saying so).
    pub end: Option<u64>,
    /// Records the live engine could not hand over (the replay may differ).
    pub lost: u64,
    /// Records of kinds this build does not know (skipped).
    pub skipped: u64,
    /// What MIDI had set on the channels before this part began.
    pub channels: Vec<crate::engine::ChannelMidi>,
}

impl CaptureLog {
    /// The last frame anything happens at.
    pub fn last_frame(&self) -> u64 {
        let e = self.events.last().map_or(0, |e| e.frame);
        let a = self.adopts.last().map_or(0, |a| a.0);
        let t = self.timelines.last().map_or(0, |t| t.0);
        e.max(a).max(t)
    }

    /// Frames to render: to the end the capture gives, else past the last record.
    pub fn frames(&self) -> u64 {
        self.end.unwrap_or(self.last_frame() + 2 * self.sample_rate as u64)
    }
}

/// The files of a capture, in order: `capture.jsonl`, then `capture.2.jsonl` and
/// on if the audio device was reopened (a file named directly is the only part).
pub fn parts(dir: &Path) -> Vec<PathBuf> {
    if !dir.is_dir() {
        return vec![dir.to_path_buf()];
    }
    let mut out = vec![dir.join(CAPTURE_FILE)];
    for n in 2.. {
        let p = dir.join(part_file(n));
        if !p.is_file() {
            break;
        }
        out.push(p);
    }
    out
}

/// Reads every part of a capture (see [`parts`]).
pub fn read_all(dir: &Path) -> Result<Vec<CaptureLog>, CaptureError> {
    parts(dir).iter().map(|p| read(p)).collect()
}

/// Beats a captured external timeline may stand at (far beyond any session: at
/// 999 BPM, two years).
pub const MAX_TIMELINE_BEAT: f64 = 1e9;

/// Reads `dir/capture.jsonl` (or the capture file `dir` names): a regular file of
/// at most [`crate::files::MAX_CAPTURE_BYTES`]. The first damaged record fails the
/// whole read, naming its line; so does a number out of its range (a frame past
/// the longest render, a tempo outside 1..999 BPM, a beat past
/// [`MAX_TIMELINE_BEAT`]).
pub fn read(dir: &Path) -> Result<CaptureLog, CaptureError> {
    let path = if dir.is_dir() { dir.join(CAPTURE_FILE) } else { dir.to_path_buf() };
    crate::files::check_input(&path, crate::files::MAX_CAPTURE_BYTES, "capture")
        .map_err(|e| CaptureError::Set(e.to_string()))?;
    let file = std::fs::File::open(&path).map_err(|source| CaptureError::Io { path: path.clone(), source })?;
    parse(std::io::BufReader::new(file), &path)
}

/// Reads a capture's records from `input` (`path` names it in errors).
pub fn parse(input: impl BufRead, path: &Path) -> Result<CaptureLog, CaptureError> {
    let path = path.to_path_buf();
    let damaged = |line: usize, message: String| CaptureError::Damaged { path: path.clone(), line, message };
    // Frames past the longest render are damage (set once the header gives the rate).
    let mut max_frame = u64::MAX;
    let far = |frame: u64, max: u64| -> Option<String> {
        (frame > max).then(|| {
            format!(
                "frame {frame} is past the longest render ({} hours)",
                crate::offline::render::MAX_RENDER_SECONDS / 3600.0
            )
        })
    };
    let mut log = CaptureLog::default();
    let mut files: BTreeMap<String, String> = BTreeMap::new();
    let mut header = false;
    for (i, line) in input.lines().enumerate() {
        let n = i + 1;
        let line = line.map_err(|e| damaged(n, e.to_string()))?;
        if line.trim().is_empty() {
            continue;
        }
        let value: serde_json::Value = serde_json::from_str(&line).map_err(|e| damaged(n, e.to_string()))?;
        let kind = value
            .get("record")
            .and_then(|k| k.as_str())
            .map(str::to_string)
            .ok_or_else(|| damaged(n, "no \"record\" kind".into()))?;
        const KNOWN: [&str; 8] = ["header", "set", "adopt", "event", "timeline", "channels", "lost", "end"];
        if !KNOWN.contains(&kind.as_str()) {
            log.skipped += 1;
            continue;
        }
        let record: Record = serde_json::from_value(value).map_err(|e| damaged(n, format!("{kind}: {e}")))?;
        if !header && !matches!(record, Record::Header { .. }) {
            return Err(damaged(n, "the first record is not the header: not a jamrig capture".into()));
        }
        match record {
            Record::Header { format, version, sample_rate, set } => {
                if header {
                    return Err(damaged(n, "a second header".into()));
                }
                if format != FORMAT {
                    return Err(damaged(n, format!("format \"{format}\" is not a jamrig capture")));
                }
                if version > VERSION {
                    return Err(CaptureError::Newer { path: path.clone(), version });
                }
                if !(crate::offline::job::RATES).contains(&sample_rate) {
                    return Err(damaged(n, format!("sample rate {sample_rate} Hz")));
                }
                log.sample_rate = sample_rate;
                log.set_name = set;
                max_frame = (crate::offline::render::MAX_RENDER_SECONDS * sample_rate as f64) as u64;
                header = true;
            }
            Record::Set { serial, main, uses, files: changed, repl, sync } => {
                if let Some(s) = &sync
                    && parse_sync(s).is_none()
                {
                    return Err(damaged(n, format!("unknown clock \"{s}\"")));
                }
                files.extend(changed);
                let mut own = files.clone();
                if !uses.is_empty() {
                    if let Some(missing) = uses.iter().find(|u| !files.contains_key(*u)) {
                        return Err(damaged(n, format!("the file {missing} is not in the capture")));
                    }
                    own.retain(|name, _| uses.contains(name));
                }
                if !own.contains_key(&main) {
                    return Err(damaged(n, format!("the set's file {main} is not in the capture")));
                }
                log.sets.insert(serial, CapturedSet { main, files: own, repl, sync });
            }
            Record::Adopt { serial, frame } => {
                if let Some(m) = far(frame, max_frame) {
                    return Err(damaged(n, m));
                }
                if !log.sets.contains_key(&serial) {
                    return Err(damaged(n, format!("set {serial} adopted but never captured")));
                }
                if log.adopts.last().is_some_and(|a| a.0 > frame) {
                    return Err(damaged(n, format!("adoption at frame {frame} goes back in time")));
                }
                log.adopts.push((frame, serial));
            }
            Record::Event { frame, midi, command, tempo, param } => {
                if let Some(m) = far(frame, max_frame) {
                    return Err(damaged(n, m));
                }
                let ev = record_event(frame, midi.as_deref(), command.as_deref(), tempo, param.as_ref())
                    .map_err(|e| damaged(n, e))?;
                if log.events.last().is_some_and(|e| e.frame > frame) {
                    return Err(damaged(n, format!("event at frame {frame} goes back in time")));
                }
                log.events.push(ev);
            }
            Record::Timeline { frame, at, beat, bpm, playing } => {
                if let Some(m) = far(frame.max(at), max_frame) {
                    return Err(damaged(n, m));
                }
                if !(beat.abs() <= MAX_TIMELINE_BEAT && (1.0..=999.0).contains(&bpm)) {
                    return Err(damaged(n, format!("a timeline at beat {beat} and {bpm} BPM is out of range")));
                }
                log.timelines.push((frame, ExternalTimeline { frame: at, beat, bpm, playing }));
            }
            Record::Channels { channels } => {
                for c in channels {
                    log.channels.push(c.to_midi().map_err(|m| damaged(n, m))?);
                }
            }
            Record::Lost { count } => log.lost = log.lost.saturating_add(count),
            Record::End { frame } => {
                if let Some(m) = far(frame, max_frame) {
                    return Err(damaged(n, m));
                }
                log.end = Some(frame)
            }
        }
    }
    if !header {
        return Err(damaged(1, "empty: no header".into()));
    }
    if log.adopts.first().is_none_or(|a| a.0 != 0) {
        return Err(CaptureError::Set(format!("{}: no set at frame 0", path.display())));
    }
    Ok(log)
}

/// Evaluates a captured set from the files the capture kept (in memory: nothing is
/// written to disk): the main file evaluated, the REPL lines applied in order, the
/// forced clock applied, as the live session did.
pub fn evaluate(host: &ScriptHost, set: &CapturedSet) -> Result<Set, CaptureError> {
    let err = |m: String| CaptureError::Set(m);
    let folder = Folder::Files(Arc::new(set.files.clone()));
    let sync = set.sync.as_deref().and_then(parse_sync);
    let main = &set.files[&set.main];
    let mut ev =
        host.eval_in(&set.main, main, Some(folder.clone()), Set::default(), false).map_err(|d| err(d.render()))?;
    if let Some(s) = sync {
        ev.set.sync = s;
    }
    let mut current = ev.set;
    // The lines share their variables, as they did in the REPL.
    let mut scope = rhai::Scope::new();
    for line in &set.repl {
        let (mut e, _) =
            host.eval_repl(line, Some(folder.clone()), current.clone(), &mut scope).map_err(|d| err(d.render()))?;
        if let Some(s) = sync {
            e.set.sync = s;
        }
        current = e.set;
    }
    Ok(current)
}

/// Plays a capture again: `sink` receives interleaved stereo in order.
pub fn replay(log: &CaptureLog, mut sink: impl FnMut(&[f32])) -> Result<u64, CaptureError> {
    replay_while(log, |x| {
        sink(x);
        true
    })
}

/// Same, block by block, for as long as `sink` returns true (a streaming writer
/// stops it on an error or an interrupt). Returns the frames played.
pub fn replay_while(log: &CaptureLog, mut sink: impl FnMut(&[f32]) -> bool) -> Result<u64, CaptureError> {
    let host = ScriptHost::new().map_err(|d| CaptureError::Set(d.render()))?;
    let mut sets: BTreeMap<u64, Set> = BTreeMap::new();
    for (_, serial) in &log.adopts {
        if !sets.contains_key(serial) {
            sets.insert(*serial, evaluate(&host, &log.sets[serial])?);
        }
    }
    let tables = Arc::new(crate::tables::Tables::new(log.sample_rate as f32));
    let first = &sets[&log.adopts[0].1];
    let mut r = Renderer::following_clock(first, tables).map_err(|e| CaptureError::Set(e.to_string()))?;
    r.engine.restore_channel_midi(&log.channels);
    r.add_events(log.events.iter().copied());
    let total = log.frames();
    let (mut adopts, mut timelines) = (log.adopts[1..].iter().peekable(), log.timelines.iter().peekable());
    let mut buf = vec![0.0f32; 2 * crate::offline::render::DEFAULT_BLOCK];
    let mut done = 0u64;
    while done < total {
        // Whatever the live engine received before this tick.
        while let Some((_, serial)) = adopts.next_if(|a| a.0 <= done) {
            r.publish(&sets[serial]).map_err(|e| CaptureError::Set(e.to_string()))?;
        }
        while let Some((_, t)) = timelines.next_if(|t| t.0 <= done) {
            r.engine.follow_timeline(*t);
        }
        let next = [adopts.peek().map(|a| a.0), timelines.peek().map(|t| t.0), Some(total)]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(total);
        // Up to the next change, in whole ticks (changes fall on tick starts).
        let n = (next.max(done + TICK_FRAMES as u64) - done).min(total - done).min((buf.len() / 2) as u64) as usize;
        r.render_into(&mut buf[..2 * n], n);
        done += n as u64;
        if !sink(&buf[..2 * n]) {
            break;
        }
    }
    Ok(done)
}
