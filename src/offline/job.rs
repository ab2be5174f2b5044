//! The `jamrig render` job: evaluate the set (or a built-in rig), read an optional
//! MIDI file, render to the requested length and then ring out, streaming the WAV
//! to disk (constant memory whatever the length) with a progress bar on a
//! terminal; the file appears only once complete. Runs on the caller's thread.

use super::render::{
    CUT_FADE_SECONDS, DEFAULT_BARS, DEFAULT_BLOCK, Length, MAX_RENDER_SECONDS, Renderer, SILENCE, SILENT_FOR_SECONDS,
    TAIL_SECONDS,
};
use super::wav::{SampleFormat, WavStream};
use crate::engine::{EngineStats, MAX_TICK_EVENTS, MAX_TICK_HITS, TICK_FRAMES};
use crate::script::ScriptHost;
use crate::script::diagnostic::Diagnostic;
use crate::text::{plural, was};
use anyhow::{Context, Result, bail};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

/// The example set rendered when no set is named.
pub const BUILTIN_SET: &str = include_str!("../../examples/set.rhai");
pub const BUILTIN_NAME: &str = "examples/set.rhai (built in)";

/// The General MIDI rig a MIDI file plays through when no set is named: sixteen
/// channels (channel 10 the drum kit), each starting on program 0; a program change
/// picks the instrument of `stdlib/gm.rhai`'s map.
pub const GM_SET: &str = r#"
for n in 1..=16 {
    if n == 10 { drums(10); } else { channel(n, "piano"); }
}
"#;
pub const GM_NAME: &str = "the General MIDI rig (built in)";

/// Which SoundFont a General MIDI render (a MIDI file and no set) plays through.
#[derive(Clone, Debug, PartialEq)]
pub enum FontChoice {
    /// The font named with `--soundfont`.
    Named(PathBuf),
    /// The first General MIDI font found ([`crate::samples::find_gm_font`]), else
    /// jamrig's own synthesized map.
    Search,
    /// jamrig's own synthesized map (`--no-soundfont`).
    Synthesized,
}

/// What plays a render: the one place the rig is chosen.
#[derive(Clone, Debug, PartialEq)]
pub enum RigChoice {
    /// The set named on the command line.
    Set(PathBuf),
    /// The built-in example set (no set, no MIDI file).
    Example,
    /// A MIDI file and no set: the General MIDI rig on a SoundFont (program changes
    /// pick its presets, channel 10 its kit). `from` says where the font was found.
    GeneralMidiFont { font: PathBuf, from: String },
    /// A MIDI file and no set: the General MIDI rig on jamrig's own synthesized map
    /// (`searched`: because no SoundFont was found, else because `--no-soundfont` asked).
    GeneralMidi { searched: bool },
}

impl RigChoice {
    pub fn for_job(set: Option<&Path>, midi: Option<&Path>, font: &FontChoice) -> Self {
        match (set, midi) {
            (Some(p), _) => RigChoice::Set(p.to_path_buf()),
            (None, Some(_)) => match font {
                FontChoice::Named(f) => RigChoice::GeneralMidiFont { font: f.clone(), from: "--soundfont".into() },
                FontChoice::Search => match crate::samples::find_gm_font() {
                    Some(found) => RigChoice::GeneralMidiFont { font: found.path, from: found.from },
                    None => RigChoice::GeneralMidi { searched: true },
                },
                FontChoice::Synthesized => RigChoice::GeneralMidi { searched: false },
            },
            (None, None) => RigChoice::Example,
        }
    }

    /// The line that says which General MIDI rig plays (none for a set).
    pub fn line(&self) -> Option<String> {
        match self {
            RigChoice::GeneralMidiFont { font, from } => {
                let how =
                    if from == "--soundfont" { "named with --soundfont".to_string() } else { format!("from {from}") };
                Some(format!("General MIDI rig: SoundFont {} ({how})", font.display()))
            }
            RigChoice::GeneralMidi { searched: false } => {
                Some("General MIDI rig: jamrig's own synthesized instruments (--no-soundfont)".to_string())
            }
            RigChoice::GeneralMidi { searched: true } => Some(format!(
                "General MIDI rig: jamrig's own synthesized instruments (no SoundFont found: give --soundfont FILE, set \
                 ${}, or install {})",
                crate::samples::SOUNDFONT_ENV,
                GM_FONT_PACKAGES
            )),
            _ => None,
        }
    }

    /// A script host for this rig: the General MIDI rig on a SoundFont starts without
    /// the stdlib (`evaluate` adds it if the font lacks a melodic preset or a kit).
    pub fn host(&self) -> Result<ScriptHost, Diagnostic> {
        match self {
            RigChoice::GeneralMidiFont { .. } => Ok(ScriptHost::without_stdlib()),
            _ => ScriptHost::new(),
        }
    }

    /// Evaluates the rig's set.
    pub fn evaluate(&self, host: &ScriptHost) -> Result<crate::script::Evaluated, Diagnostic> {
        match self {
            RigChoice::Set(path) => host.eval_file(path),
            RigChoice::Example => host.eval_source(BUILTIN_NAME, BUILTIN_SET, None, Default::default(), false),
            RigChoice::GeneralMidi { .. } => host.eval_source(GM_NAME, GM_SET, None, Default::default(), false),
            RigChoice::GeneralMidiFont { font, .. } => {
                let bank = host.samples().font(font).map_err(|e| {
                    Diagnostic::whole_file(
                        &font.display().to_string(),
                        format!("cannot play the MIDI file through this SoundFont: {e}; give --soundfont a General MIDI .sf2 or .sf3 file"),
                    )
                })?;
                let folder = font.parent().map(Path::to_path_buf);
                let name = font.file_name().and_then(|n| n.to_str()).ok_or_else(|| {
                    Diagnostic::whole_file(
                        &font.display().to_string(),
                        "the SoundFont's file name is not UTF-8: rename it or link it under a UTF-8 name",
                    )
                })?;
                let (text, fallback) = gm_font_set(name, &bank);
                // The synthesized piano or kit in place of what the font lacks is the stdlib's.
                let with_stdlib;
                let host = if fallback && !host.has_stdlib() {
                    with_stdlib = host.with_stdlib()?;
                    &with_stdlib
                } else {
                    host
                };
                host.eval_source(
                    &format!("the General MIDI rig on {}", font.display()),
                    &text,
                    folder,
                    Default::default(),
                    false,
                )
            }
        }
    }
}

/// The Debian packages of General MIDI SoundFonts, smallest first.
pub const GM_FONT_PACKAGES: &str = "timgm6mb-soundfont or fluid-soundfont-gm";

/// The General MIDI rig on the SoundFont `file` (in the set's folder) holding `bank`:
/// sixteen channels starting on bank 0 program 0 (else the font's first melodic
/// preset), channel 10 on the kit at bank 128 program 0 (else its first kit, else
/// jamrig's synthesized kit); program changes and bank selects pick the font's presets.
/// Also says whether the rig falls back on the stdlib's piano or kit (the font lacks
/// a melodic preset or a kit).
pub fn gm_font_set(file: &str, bank: &crate::tables::bank::SampleBank) -> (String, bool) {
    let first = |kit: bool| {
        let mut p: Vec<(u16, u8)> =
            bank.presets.iter().filter(|p| (p.bank == 128) == kit).map(|p| (p.bank, p.program)).collect();
        p.sort();
        p.first().copied()
    };
    let melodic = bank.find(0, 0).map(|i| (0, bank.presets[i as usize].program)).or_else(|| first(false));
    let kit = bank.find(128, 0).map(|_| (128, 0)).or_else(|| first(true));
    let quoted = file.replace('\\', "\\\\").replace('"', "\\\"");
    let melodic_channel = match melodic {
        Some((b, p)) => format!("channel(n, #{{ soundfont: \"gm\", bank: {b}, program: {p} }})"),
        None => "channel(n, \"piano\")".to_string(),
    };
    let drum_channel = match kit {
        Some((b, p)) => format!("drums(10, #{{ soundfont: \"gm\", bank: {b}, program: {p} }})"),
        None => "drums(10)".to_string(),
    };
    let text = format!(
        "soundfont(\"gm\", \"{quoted}\");\nfor n in 1..=16 {{\n    if n == 10 {{ {drum_channel}; }} else {{ {melodic_channel}; }}\n}}\n"
    );
    (text, melodic.is_none() || kit.is_none())
}

pub struct RenderJob {
    pub set: Option<PathBuf>,
    pub out: PathBuf,
    pub midi: Option<PathBuf>,
    pub length: Length,
    pub sample_rate: u32,
    pub format: SampleFormat,
    /// The ring-out after the end: `None` until silent (at most [`TAIL_SECONDS`]),
    /// `Some(0.0)` an exact cut ending in a short fade, `Some(t)` until silent, at
    /// most `t` seconds.
    pub tail: Option<f64>,
    /// With a MIDI file and a set: play the set's patterns too.
    pub patterns: bool,
    /// With a MIDI file and no set: the SoundFont of the General MIDI rig.
    pub soundfont: FontChoice,
    /// Folders beyond the set's own that its samples and fonts may come from.
    pub samples: Vec<PathBuf>,
}

/// Supported output rates.
pub const RATES: std::ops::RangeInclusive<u32> = 8000..=192_000;
/// The most bars `--bars` takes.
pub const MAX_BARS: f64 = 10_000.0;

/// What a render produced.
pub struct Rendered {
    pub frames: usize,
    pub seconds: f64,
    pub elapsed: std::time::Duration,
    /// Things the user should know about the result.
    pub warnings: Vec<String>,
    /// Which General MIDI rig played the file (none for a set).
    pub rig: Option<String>,
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

/// Set when SIGINT or SIGTERM arrives during a render (the render stops and removes
/// its partial file instead of the process dying with it in place).
pub fn interrupted() -> &'static Arc<AtomicBool> {
    static FLAG: OnceLock<Arc<AtomicBool>> = OnceLock::new();
    FLAG.get_or_init(|| {
        let flag = Arc::new(AtomicBool::new(false));
        for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            // Without the handler a signal ends the process as before (the partial
            // file then stays): nothing else to do about a failure here.
            let _ = signal_hook::flag::register(sig, flag.clone());
        }
        flag
    })
}

/// The output, checked before any work: not a folder, not one of the inputs, not
/// a device or FIFO.
fn check_output(out: &Path, inputs: &[PathBuf]) -> Result<()> {
    if out.is_dir() {
        bail!("{} is a folder; give a file name for the WAV", out.display());
    }
    crate::files::check_output(out, inputs)?;
    Ok(())
}

/// Writes what a renderer produces into a WAV as it goes, with a progress bar on
/// a terminal, stopping cleanly on SIGINT or SIGTERM.
struct Writer {
    wav: WavStream,
    bar: Option<indicatif::ProgressBar>,
    buf: Vec<f32>,
    chunk: usize,
    /// The largest sample written, to say when a render is silent.
    peak: f32,
}

impl Writer {
    fn new(out: &Path, rate: u32, format: SampleFormat, expected_frames: u64) -> Result<Self> {
        let flag = interrupted();
        flag.store(false, Ordering::Relaxed);
        let bar = std::io::stderr().is_terminal().then(|| {
            let pb = indicatif::ProgressBar::new(expected_frames);
            pb.set_style(
                indicatif::ProgressStyle::with_template("rendering {bar:30} {percent}% {eta}")
                    .expect("static template"),
            );
            pb
        });
        // A tenth of a second per chunk keeps the bar moving and the memory small.
        let chunk = (rate as usize / 10).max(TICK_FRAMES);
        Ok(Writer { wav: WavStream::create(out, rate, format)?, bar, buf: vec![0.0; 2 * chunk], chunk, peak: 0.0 })
    }

    fn check_interrupt(&self) -> Result<()> {
        if interrupted().load(Ordering::Relaxed) {
            bail!("interrupted: nothing was written");
        }
        Ok(())
    }

    fn put(&mut self, samples: &[f32]) -> Result<()> {
        self.peak = samples.iter().fold(self.peak, |m, x| m.max(x.abs()));
        self.wav.write(samples)?;
        if let Some(pb) = &self.bar {
            pb.inc((samples.len() / 2) as u64);
        }
        Ok(())
    }

    /// Renders up to `max_frames` frames; with `fade`, the last
    /// [`CUT_FADE_SECONDS`] before `max_frames` fade to silence (a cut without a
    /// click); with `until_quiet`, it stops sooner once the output has stayed below
    /// [`SILENCE`] for [`SILENT_FOR_SECONDS`] (a ring-out). Returns the frames
    /// rendered.
    fn render(&mut self, r: &mut Renderer, max_frames: u64, fade: bool, until_quiet: bool) -> Result<u64> {
        let sr = r.sample_rate() as f64;
        let fade_frames = if fade { (CUT_FADE_SECONDS * sr).ceil() as u64 } else { 0 };
        let quiet_needed = if until_quiet { (SILENT_FOR_SECONDS * sr) as u64 } else { u64::MAX };
        let (mut done, mut quiet) = (0u64, 0u64);
        while done < max_frames && quiet < quiet_needed {
            self.check_interrupt()?;
            let n = (max_frames - done).min(self.chunk as u64) as usize;
            let mut buf = std::mem::take(&mut self.buf);
            // The whole chunk in one call: the engine renders its ticks in batches,
            // each batch's sum beside the next batch's channels.
            r.render_into(&mut buf[..2 * n], n.max(DEFAULT_BLOCK));
            // Frames since the last loud one: found from the end (music stops the
            // search at once).
            let loud = |lr: &[f32]| lr[0].abs() > SILENCE || lr[1].abs() > SILENCE;
            quiet = match buf[..2 * n].chunks_exact(2).rev().position(loud) {
                Some(since) => since as u64,
                None => quiet + n as u64,
            };
            // The fade over the last frames: frame `i` has `max_frames - done - i` left.
            let fade_from = (max_frames - done).saturating_sub(fade_frames).min(n as u64) as usize;
            for i in fade_from..n {
                let left = max_frames - (done + i as u64);
                let g = (left - 1) as f32 / fade_frames as f32;
                buf[2 * i] *= g;
                buf[2 * i + 1] *= g;
            }
            let result = self.put(&buf[..2 * n]);
            self.buf = buf;
            result?;
            done += n as u64;
        }
        Ok(done)
    }

    /// Whether nothing written so far rose above [`SILENCE`].
    fn silent(&self) -> bool {
        self.peak <= SILENCE
    }

    fn finish(self) -> Result<u64> {
        if let Some(pb) = &self.bar {
            pb.finish_and_clear();
        }
        let frames = self.wav.frames();
        self.wav.finish()?;
        Ok(frames)
    }
}

/// What the engine had to do that the user should hear about (nothing is dropped
/// offline; a burst of simultaneous events plays over the following ticks).
pub fn engine_warnings(stats: &EngineStats) -> Vec<String> {
    let mut w = Vec::new();
    let n = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    if n(&stats.events_overflow) + n(&stats.events_dropped) > 0 {
        let dropped = n(&stats.events_overflow) + n(&stats.events_dropped);
        w.push(format!(
            "{} {} dropped (more arrived at once than the engine holds)",
            plural(dropped, "event"),
            was(dropped)
        ));
    }
    if n(&stats.events_late) > 0 {
        w.push(format!(
            "{} came in bursts of more than {MAX_TICK_EVENTS} at one instant and played in the ticks after it ({TICK_FRAMES} frames each)",
            plural(n(&stats.events_late), "event")
        ));
    }
    if n(&stats.hits_overflow) > 0 {
        w.push(format!(
            "pattern hits were skipped {} (more than {MAX_TICK_HITS} in one tick)",
            plural(n(&stats.hits_overflow), "time")
        ));
    }
    if n(&stats.lines_missed) > 0 {
        w.push(format!(
            "{} {} silent: more string or oversampled voices sounded at once than there are delay lines ({} a channel, {} shared); lower the channel's voices",
            plural(n(&stats.lines_missed), "note"),
            was(n(&stats.lines_missed)),
            crate::engine::voice::CHANNEL_LINES,
            crate::engine::voice::SHARED_LINES
        ));
    }
    if n(&stats.reverb_tails_cut) > 0 {
        w.push(format!(
            "{} cut short: more groups of channels rang at once than there are shared reverbs ({})",
            plural(n(&stats.reverb_tails_cut), "reverb tail"),
            crate::engine::sends::SEND_SLOTS
        ));
    }
    if n(&stats.note_offs_overflow) > 0 {
        let missed = n(&stats.note_offs_overflow);
        w.push(format!("{} {} not played (too many notes held at once)", plural(missed, "pattern note"), was(missed)));
    }
    w
}

/// The longest ring-out `tail` allows, in seconds.
fn tail_cap(tail: Option<f64>) -> Result<f64> {
    match tail {
        None => Ok(TAIL_SECONDS),
        Some(t) if (0.0..=MAX_TAIL_OPTION_SECONDS).contains(&t) => Ok(t),
        Some(t) => bail!("--tail must be from 0 to {MAX_TAIL_OPTION_SECONDS} seconds, not {t}"),
    }
}

/// The longest `--tail` (ten minutes).
pub const MAX_TAIL_OPTION_SECONDS: f64 = 600.0;

pub fn run(job: &RenderJob) -> Result<Rendered> {
    if !RATES.contains(&job.sample_rate) {
        bail!("--rate {} is outside {}..{} Hz", job.sample_rate, RATES.start(), RATES.end());
    }
    let hours = MAX_RENDER_SECONDS / 3600.0;
    match job.length {
        Length::Bars(b) if !(b > 0.0 && b <= MAX_BARS) => {
            bail!("--bars must be above 0 and at most {MAX_BARS}, not {b}")
        }
        Length::Seconds(s) if !(s > 0.0 && s <= MAX_RENDER_SECONDS) => {
            bail!("--seconds must be above 0 and at most {MAX_RENDER_SECONDS}, not {s}")
        }
        _ => {}
    }
    let tail = tail_cap(job.tail)?;
    let inputs: Vec<PathBuf> = job.set.iter().chain(job.midi.iter()).cloned().collect();
    check_output(&job.out, &inputs)?;
    let rig = RigChoice::for_job(job.set.as_deref(), job.midi.as_deref(), &job.soundfont);
    let mut host = rig.host().map_err(ScriptFailure)?;
    host.allow_folders(&job.samples);
    if let RigChoice::GeneralMidiFont { font, .. } = &rig {
        check_output(&job.out, std::slice::from_ref(font))?;
    }
    let mut evaluated = rig.evaluate(&host).map_err(ScriptFailure)?;
    // Every module the set read is an input too.
    check_output(&job.out, &evaluated.files)?;
    if job.midi.is_some() && !job.patterns {
        // Over a MIDI file the set is the instrument rig; its patterns play only when asked.
        evaluated.set.patterns.clear();
    }
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
            Some((_, end)) => *end as f64 / sr,
            // At least one full cycle of the longest pattern.
            None => {
                let longest = set.patterns.values().map(|p| p.length_beats).fold(0.0, f64::max);
                (DEFAULT_BARS * seconds_per_bar).max(longest * 60.0 / set.tempo_bpm)
            }
        },
    };
    if seconds > MAX_RENDER_SECONDS {
        let what = match (job.length, &job.midi) {
            (Length::Bars(b), _) => format!("--bars {b} at this set's tempo is"),
            (Length::Auto, Some(p)) => format!("{} lasts", p.display()),
            _ => "the render would be".to_string(),
        };
        bail!(
            "{what} {:.1} hours; jamrig renders at most {hours} hours: give --seconds to render a part",
            seconds / 3600.0
        );
    }
    let frames = (seconds * sr).round().max(1.0) as u64;
    let t0 = std::time::Instant::now();
    // No deadline here: buffers are mapped as they are first used, so channels and
    // voices that never play take no memory.
    crate::dsp::set_prefault(false);
    // Every note the render plays is known here: the drum kit renders only theirs.
    let notes = super::render::notes_played(&set, midi.as_ref().map_or(&[][..], |(events, _)| events));
    let mut r = Renderer::for_notes(&set, job.sample_rate, &notes).context("cannot build the rig")?;
    if let Some((events, _)) = midi {
        r.add_events(events);
    }
    let tail_frames = (tail * sr).round() as u64;
    let mut w = Writer::new(&job.out, job.sample_rate, job.format, frames + tail_frames)?;
    w.render(&mut r, frames, tail_frames == 0, false)?;
    if tail_frames > 0 {
        // The end: patterns stop, held notes are released, the rest of the MIDI
        // file is left out; effects and releases ring on.
        r.end_at(frames);
        w.render(&mut r, tail_frames, true, true)?;
    }
    let silent = w.silent();
    let written = w.finish()?;
    let elapsed = t0.elapsed();
    let mut warnings = engine_warnings(r.stats());
    if silent {
        warnings.push(match (set.patterns.is_empty(), &job.midi) {
            (true, None) => "the render is silent: the set has no patterns (add one, or give --midi FILE)".into(),
            _ => "the render is silent: nothing played above -90 dBFS".into(),
        });
    }
    Ok(Rendered { frames: written as usize, seconds: written as f64 / sr, elapsed, warnings, rig: rig.line() })
}

/// `jamrig render --replay DIR`: plays a session capture again into a WAV at the
/// capture's sample rate, streaming it to disk.
pub fn replay(dir: &Path, out: &Path, format: SampleFormat) -> Result<Rendered> {
    use crate::capture::replay;
    if out.is_dir() {
        bail!("{} is a folder; give a file name for the WAV", out.display());
    }
    let names = replay::parts(dir);
    check_output(out, &names)?;
    let logs = replay::read_all(dir)?;
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
    let total: u64 = logs.iter().map(|l| l.frames()).sum();
    if total as f64 > MAX_RENDER_SECONDS * rate as f64 {
        bail!(
            "the capture lasts {:.1} hours; jamrig replays at most {} hours",
            total as f64 / rate as f64 / 3600.0,
            MAX_RENDER_SECONDS / 3600.0
        );
    }
    let t0 = std::time::Instant::now();
    let mut w = Writer::new(out, rate, format, total)?;
    let mut failed: Option<anyhow::Error> = None;
    for log in &logs {
        replay::replay_while(log, |x| {
            let r = w.check_interrupt().and_then(|_| w.put(x));
            match r {
                Ok(()) => true,
                Err(e) => {
                    failed = Some(e);
                    false
                }
            }
        })?;
        if let Some(e) = failed {
            return Err(e);
        }
    }
    if w.silent() {
        warnings.push("the render is silent: nothing played above -90 dBFS".into());
    }
    let frames = w.finish()?;
    let elapsed = t0.elapsed();
    Ok(Rendered { frames: frames as usize, seconds: frames as f64 / rate as f64, elapsed, warnings, rig: None })
}

/// `jamrig check`: evaluates and validates a set, returning its description.
pub fn check(path: &Path, samples: &[PathBuf]) -> Result<String> {
    let mut host = ScriptHost::new().map_err(ScriptFailure)?;
    host.allow_folders(samples);
    let ev = host.eval_file(path).map_err(ScriptFailure)?;
    crate::rig::build::build(&ev.set, None)?;
    let mut s = format!("{}: ok\n", path.display());
    s.push_str(&crate::rig::describe::describe(&ev.set));
    for line in &ev.printed {
        s.push_str(&format!("printed: {line}\n"));
    }
    for line in &ev.notes {
        s.push_str(&format!("note: {line}\n"));
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
pub fn check_events(path: &Path, bars: f64, format: EventFormat, samples: &[PathBuf]) -> Result<String> {
    use crate::rig::events;
    if !(bars > 0.0 && bars <= events::MAX_BARS) {
        bail!("--events takes a number of bars above 0 and at most {}, not {bars}", events::MAX_BARS);
    }
    let mut host = ScriptHost::new().map_err(ScriptFailure)?;
    host.allow_folders(samples);
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
