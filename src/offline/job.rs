//! The `jamrig render` job: evaluate the set (or the built-in example), read an
//! optional MIDI file, render to the requested length with a progress bar on a
//! terminal, and write the WAV atomically. Runs on the caller's thread.

use super::render::{DEFAULT_BARS, Length, Renderer, TAIL_SECONDS};
use super::wav::{self, SampleFormat};
use crate::script::ScriptHost;
use crate::script::diagnostic::Diagnostic;
use anyhow::{Context, Result, bail};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

/// The example set rendered when no set is named.
pub const BUILTIN_SET: &str = include_str!("../../examples/set.rhai");
pub const BUILTIN_NAME: &str = "examples/set.rhai (built in)";

pub struct RenderJob {
    pub set: Option<PathBuf>,
    pub out: PathBuf,
    pub midi: Option<PathBuf>,
    pub length: Length,
    pub sample_rate: u32,
    pub format: SampleFormat,
}

/// Supported output rates.
pub const RATES: std::ops::RangeInclusive<u32> = 8000..=192_000;

/// What a render produced.
pub struct Rendered {
    pub frames: usize,
    pub seconds: f64,
    pub elapsed: std::time::Duration,
    /// Things the user should know about the result.
    pub warnings: Vec<String>,
}

/// Errors that are a script diagnostic (printed as the full report).
#[derive(Debug)]
pub struct ScriptFailure(pub Diagnostic);

impl std::fmt::Display for ScriptFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.render())
    }
}

impl std::error::Error for ScriptFailure {}

pub fn run(job: &RenderJob) -> Result<Rendered> {
    if !RATES.contains(&job.sample_rate) {
        bail!("--rate {} is outside {}..{} Hz", job.sample_rate, RATES.start(), RATES.end());
    }
    match job.length {
        Length::Bars(b) if !(b > 0.0 && b <= 10_000.0) => {
            bail!("--bars must be above 0 and at most 10000, not {b}")
        }
        Length::Seconds(s) if !(s > 0.0 && s <= 36_000.0) => {
            bail!("--seconds must be above 0 and at most 36000, not {s}")
        }
        _ => {}
    }
    if job.out.is_dir() {
        bail!("{} is a folder; give a file name for the WAV", job.out.display());
    }
    let host = ScriptHost::new().map_err(ScriptFailure)?;
    let evaluated = match &job.set {
        Some(path) => host.eval_file(path).map_err(ScriptFailure)?,
        None => host.eval_source(BUILTIN_NAME, BUILTIN_SET, None, Default::default(), false).map_err(ScriptFailure)?,
    };
    let set = evaluated.set;
    let sr = job.sample_rate as f64;
    let midi = match &job.midi {
        Some(p) => Some(super::midifile::read(p, sr)?),
        None => None,
    };
    let seconds_per_bar = set.beats_per_bar * 60.0 / set.tempo_bpm;
    let seconds = match job.length {
        Length::Bars(b) => b * seconds_per_bar,
        Length::Seconds(s) => s,
        Length::Auto => match &midi {
            Some((_, end)) => *end as f64 / sr + TAIL_SECONDS,
            // At least one full cycle of the longest pattern.
            None => {
                let longest = set.patterns.values().map(|p| p.length_beats).fold(0.0, f64::max);
                (DEFAULT_BARS * seconds_per_bar).max(longest * 60.0 / set.tempo_bpm + TAIL_SECONDS)
            }
        },
    };
    let frames = (seconds * sr).round() as usize;
    let t0 = std::time::Instant::now();
    // No deadline here: buffers are mapped as they are first used, so channels and
    // voices that never play take no memory.
    crate::dsp::set_prefault(false);
    let mut r = Renderer::new(&set, job.sample_rate).context("cannot build the rig")?;
    if let Some((events, _)) = midi {
        r.add_events(events);
    }
    let mut samples = vec![0.0f32; frames * 2];
    let bar = std::io::stderr().is_terminal().then(|| {
        let pb = indicatif::ProgressBar::new(frames as u64);
        pb.set_style(
            indicatif::ProgressStyle::with_template("rendering {bar:30} {percent}% {eta}").expect("static template"),
        );
        pb
    });
    // Chunks of about a second keep the bar moving.
    let chunk = job.sample_rate as usize * 2;
    for part in samples.chunks_mut(chunk) {
        r.render_into(part, super::render::DEFAULT_BLOCK);
        if let Some(pb) = &bar {
            pb.inc((part.len() / 2) as u64);
        }
    }
    if let Some(pb) = bar {
        pb.finish_and_clear();
    }
    let elapsed = t0.elapsed();
    wav::write(&job.out, &samples, job.sample_rate, job.format)?;
    Ok(Rendered { frames, seconds, elapsed, warnings: Vec::new() })
}

/// `jamrig render --replay DIR`: plays a session capture again into a WAV at the
/// capture's sample rate.
pub fn replay(dir: &Path, out: &Path, format: SampleFormat) -> Result<Rendered> {
    use crate::capture::replay;
    if out.is_dir() {
        bail!("{} is a folder; give a file name for the WAV", out.display());
    }
    let logs = replay::read_all(dir)?;
    let names = replay::parts(dir);
    let rate = logs[0].sample_rate;
    let mut warnings = Vec::new();
    for (log, name) in logs.iter().zip(&names) {
        let name = name.display();
        if log.sample_rate != rate {
            bail!(
                "{name} was captured at {} Hz and the first part at {rate} Hz: replay the parts one at a time (jamrig render --replay {name} -o ...)",
                log.sample_rate
            );
        }
        if log.lost > 0 {
            warnings.push(format!(
                "{name}: {} records were lost while it was made: the replay may differ from the session",
                log.lost
            ));
        }
        if log.skipped > 0 {
            warnings.push(format!("{name}: skipped {} records of kinds this version does not know", log.skipped));
        }
        if log.end.is_none() {
            warnings.push(format!(
                "{name} has no end record (the session did not end cleanly): replaying to its last record plus 2 s"
            ));
        }
    }
    if logs.len() > 1 {
        warnings.push(format!("{} parts (the audio device was reopened), played one after the other", logs.len()));
    }
    let t0 = std::time::Instant::now();
    let mut samples = Vec::with_capacity(logs.iter().map(|l| l.frames() as usize * 2).sum());
    let mut frames = 0;
    for log in &logs {
        frames += replay::replay(log, |x| samples.extend_from_slice(x))? as usize;
    }
    let elapsed = t0.elapsed();
    wav::write(out, &samples, rate, format)?;
    Ok(Rendered { frames, seconds: frames as f64 / rate as f64, elapsed, warnings })
}

/// `jamrig check`: evaluates and validates a set, returning its description.
pub fn check(path: &Path) -> Result<String> {
    let host = ScriptHost::new().map_err(ScriptFailure)?;
    let ev = host.eval_file(path).map_err(ScriptFailure)?;
    crate::rig::build::build(&ev.set, None)?;
    let mut s = format!("{}: ok\n", path.display());
    s.push_str(&crate::rig::describe::describe(&ev.set));
    for line in &ev.printed {
        s.push_str(&format!("printed: {line}\n"));
    }
    Ok(s)
}

/// How `jamrig check --events` prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum EventFormat {
    /// One JSON object per line.
    Json,
    /// A readable table.
    Text,
    /// Each pattern as a grid, one line per bar (as the REPL's `:events`).
    Grid,
}

/// `jamrig check SET --events BARS`: the events the set's patterns play in the first
/// `bars` bars.
pub fn check_events(path: &Path, bars: f64, format: EventFormat) -> Result<String> {
    use crate::rig::events;
    if !(bars > 0.0 && bars <= events::MAX_BARS) {
        bail!("--events takes a number of bars above 0 and at most {}, not {bars}", events::MAX_BARS);
    }
    let host = ScriptHost::new().map_err(ScriptFailure)?;
    let ev = host.eval_file(path).map_err(ScriptFailure)?;
    crate::rig::build::build(&ev.set, None)?;
    let list = events::events(&ev.set, bars, None);
    Ok(match format {
        EventFormat::Json => events::json_lines(&list),
        EventFormat::Text => events::table(&ev.set, host.library(), &list),
        EventFormat::Grid => {
            let mut s = String::new();
            for name in ev.set.patterns.keys() {
                s.push_str(
                    &events::grid(&ev.set, host.library(), name, Some(bars.ceil())).map_err(anyhow::Error::msg)?,
                );
            }
            s
        }
    })
}
