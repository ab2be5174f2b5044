//! The `jamrig` command: parses arguments and calls into the library.

use clap::{Parser, Subcommand};
use jamrig::live::PlayOutcome;
use jamrig::live::control::PlayOptions;
use jamrig::offline::job::{self, RenderJob, ScriptFailure};
use jamrig::offline::{Length, wav::SampleFormat};
use jamrig::rig::set::SyncMode;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "jamrig", version, about = "A live-coding host for a MIDI-driven synth rig")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Play a set live: audio out, MIDI in, a REPL, and reload on save.
    Play {
        /// The set (a .rhai file).
        set: PathBuf,
        /// MIDI input: a name (case-insensitive part of it) or an index from `jamrig ports`.
        #[arg(long)]
        port: Option<String>,
        /// Audio buffer in frames, asked of the device; when it takes other sizes
        /// only (a JACK server's period, say), the nearest it takes is used, and a
        /// line says so.
        #[arg(long, value_name = "FRAMES", default_value_t = jamrig::live::audio::DEFAULT_BUFFER_FRAMES,
              value_parser = clap::value_parser!(u32).range(16..=16384))]
        buffer: u32,
        /// Audio output device: part of its name, from `jamrig ports`; a host
        /// first picks it (`alsa:default`, `jack:`).
        #[arg(long)]
        device: Option<String>,
        /// No REPL: play until SIGINT or SIGTERM.
        #[arg(long)]
        no_repl: bool,
        /// Do not reload the set when it is saved.
        #[arg(long)]
        no_watch: bool,
        /// Where the transport takes tempo and start/stop from (overrides the set's clock).
        #[arg(long, value_parser = ["internal", "midi", "link"])]
        sync: Option<String>,
        /// Record the MIDI input of the whole run into this file (written on exit).
        #[arg(long, value_name = "FILE.mid")]
        record: Option<PathBuf>,
        /// With --record: record the notes the patterns play too, on their channels.
        #[arg(long, requires = "record")]
        record_patterns: bool,
        /// Capture the session into this folder: MIDI input, transport changes,
        /// every reload's script text and REPL change, with sample positions; play
        /// it again with `jamrig render --replay DIR -o OUT.wav`.
        #[arg(long, value_name = "DIR")]
        capture: Option<PathBuf>,
        /// Take REPL lines from editors (TCP, one per line) and OSC messages
        /// (UDP) on this port; on loopback only unless an address is given.
        #[arg(long, value_name = "[ADDR:]PORT", value_parser = jamrig::live::listen::parse_addr)]
        listen: Option<std::net::SocketAddr>,
        /// The token every message to the port must carry; needed to listen
        /// beyond loopback.
        #[arg(long, value_name = "TOKEN", requires = "listen")]
        listen_token: Option<String>,
        /// Connect jamrig's MIDI output (`jamrig:out`) to this device: a name (part
        /// of it) or an index from `jamrig ports`.
        #[arg(long, value_name = "NAME|INDEX")]
        midi_out: Option<String>,
        /// Send MIDI clock (24 ppqn, Start, Stop, Continue, Song Position) from the
        /// transport, whatever its source (overrides the set's clock_out).
        #[arg(long)]
        clock_out: bool,
        /// A folder whose samples and SoundFonts the set may read too, besides its
        /// own folder (may be given more than once).
        #[arg(long, value_name = "DIR")]
        samples: Vec<PathBuf>,
        /// Threads that render channels (the audio thread and workers beside it;
        /// 0: every core); default: one (workers only when asked). The sound is the same whatever the count.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(0..=16))]
        threads: Option<u16>,
    },
    /// List MIDI inputs and outputs and audio outputs.
    Ports,
    /// Render a set (and optionally a MIDI file) to a WAV file, faster than real time;
    /// or play a session capture again (`--replay DIR`).
    Render {
        /// The set (a .rhai file); without one, the built-in example set plays.
        #[arg(conflicts_with = "replay")]
        set: Option<PathBuf>,
        /// A session capture folder (from `jamrig play --capture DIR`) to play again,
        /// exactly as the session sounded, at its own sample rate.
        #[arg(long, value_name = "DIR", conflicts_with_all = ["midi", "bars", "seconds", "rate"])]
        replay: Option<PathBuf>,
        /// The WAV file to write.
        #[arg(short, long)]
        out: PathBuf,
        /// A Standard MIDI File to play: through the set's channels, or without a set
        /// through the built-in General MIDI rig (program changes pick instruments).
        #[arg(long)]
        midi: Option<PathBuf>,
        /// With --midi and no set: the General MIDI SoundFont to play the file through
        /// (without it: $JAMRIG_SOUNDFONT, the path in ~/.config/jamrig/soundfont,
        /// then /usr/share/sounds/sf2 and /usr/share/soundfonts; else jamrig's own
        /// synthesized instruments).
        #[arg(long, value_name = "FILE", requires = "midi", conflicts_with_all = ["set", "no_soundfont"])]
        soundfont: Option<PathBuf>,
        /// With --midi and no set: play through jamrig's own synthesized instruments
        /// even when a SoundFont is found.
        #[arg(long, requires = "midi", conflicts_with = "set")]
        no_soundfont: bool,
        /// With --midi and a set: play the set's patterns over the file too.
        #[arg(long, requires = "midi")]
        patterns: bool,
        /// After the end, ring out until the output falls below -90 dBFS, for at most
        /// this many seconds (default 30); 0 cuts exactly at the end, with a 5 ms fade.
        #[arg(long, value_name = "SECONDS", conflicts_with = "replay")]
        tail: Option<f64>,
        /// Length in bars (at the set's tempo and meter).
        #[arg(long, conflicts_with = "seconds")]
        bars: Option<f64>,
        /// Length in seconds.
        #[arg(long)]
        seconds: Option<f64>,
        /// Sample rate in Hz.
        #[arg(long, default_value_t = 48000)]
        rate: u32,
        /// Sample format: s16, s24 or f32.
        #[arg(long, default_value = "s16")]
        format: SampleFormat,
        /// A folder whose samples and SoundFonts the set may read too, besides its
        /// own folder (may be given more than once).
        #[arg(long, value_name = "DIR")]
        samples: Vec<PathBuf>,
        /// Threads that render channels (the audio thread and workers beside it;
        /// 0: every core); default: every core. The sound is the same whatever the count.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(0..=16))]
        threads: Option<u16>,
    },
    /// Evaluate and validate a set, print the rig; exits non-zero on error.
    Check {
        set: PathBuf,
        /// Print the events the set's patterns play in the first BARS bars instead of
        /// the rig (sorted by time): one JSON object per line with the keys pattern,
        /// channel, beat, note, velocity and length (beats).
        #[arg(long, value_name = "BARS")]
        events: Option<f64>,
        /// With --events: json (one object per line), text (a readable table) or grid
        /// (each pattern, one line per bar).
        #[arg(long, value_enum, default_value = "json", requires = "events")]
        format: job::EventFormat,
        /// A folder whose samples and SoundFonts the set may read too, besides its
        /// own folder (may be given more than once).
        #[arg(long, value_name = "DIR")]
        samples: Vec<PathBuf>,
    },
    /// Hear one preset of the library: an instrument's note (held 1 s, then left to
    /// ring out), a drum sound's hit, or two bars of a pattern or fill.
    Audition(AuditionArgs),
    /// Measure loudness (EBU R128): every instrument preset and the drum kit against
    /// the library's target, or each channel of the sets named.
    Levels {
        /// Sets whose channels to measure (each alone, 8 bars); none: the library.
        sets: Vec<PathBuf>,
        /// Also measure every preset across its range (an octave apart).
        #[arg(long)]
        range: bool,
    },
}

#[derive(clap::Args)]
struct AuditionArgs {
    /// An instrument, synth or drum sound (with --pattern: a pattern or fill;
    /// with --fill: a fill).
    #[arg(required_unless_present = "list")]
    name: Option<String>,
    /// The name is a pattern (or, when no pattern has it, a fill).
    #[arg(long, conflicts_with = "fill")]
    pattern: bool,
    /// The name is a fill (where a pattern and a fill share a name).
    #[arg(long)]
    fill: bool,
    /// The note to play: a name (C4, F#2, Eb5) or a MIDI number.
    #[arg(long, default_value = "C4")]
    note: String,
    /// Velocity, 1 to 127.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u8).range(1..=127))]
    velocity: u8,
    /// Write a WAV file instead of playing on the audio device.
    #[arg(short, long)]
    out: Option<PathBuf>,
    /// Audio output device (without --out): part of its name, from `jamrig ports`.
    #[arg(long)]
    device: Option<String>,
    /// Audio buffer in frames (without --out), asked of the device; the nearest
    /// size it takes is used.
    #[arg(long, value_name = "FRAMES", default_value_t = jamrig::live::audio::DEFAULT_BUFFER_FRAMES,
          value_parser = clap::value_parser!(u32).range(16..=16384))]
    buffer: u32,
    /// List every instrument, synth, drum sound, pattern and fill.
    #[arg(long)]
    list: bool,
}

/// Counts what each thread holds, so that a set's evaluation can be stopped at its
/// memory ceiling (`jamrig::script::memory`).
#[global_allocator]
static ALLOCATOR: jamrig::script::memory::CountingAlloc = jamrig::script::memory::CountingAlloc;

/// Exit status when there is no usable audio output.
const EXIT_NO_AUDIO: u8 = 3;

/// `jamrig audition`: lists, or renders one preset to a WAV or the audio device.
fn audition(args: AuditionArgs) -> anyhow::Result<()> {
    let AuditionArgs { name, pattern, fill, note, velocity, out, device, buffer, list } = args;
    let note = note.as_str();
    use jamrig::offline::audition;
    let host = jamrig::script::ScriptHost::new().map_err(ScriptFailure)?;
    if list {
        print!("{}", audition::list(host.library()));
        return Ok(());
    }
    let name = name.unwrap_or_default();
    let note_number = jamrig::theory::parse_note(note)
        .or_else(|| note.parse::<u8>().ok().filter(|n| *n < 128))
        .ok_or_else(|| anyhow::anyhow!("--note {note} is not a note: give a name like C4, F#2 or Eb5, or 0..127"))?;
    let kind = if fill {
        audition::Kind::Fill
    } else if pattern {
        audition::Kind::Pattern
    } else {
        audition::Kind::Sound
    };
    let item = audition::resolve(host.library(), &name, kind)?;
    let chosen = match &out {
        Some(_) => None,
        None => {
            let c = jamrig::live::audio::choose(device.as_deref(), buffer)?;
            if let Some(note) = &c.buffer_note {
                eprintln!("{note}");
            }
            Some(c)
        }
    };
    let rate = chosen.as_ref().map_or(48_000, |c| c.sample_rate());
    let plan = audition::plan(&host, &item, note_number, velocity, rate)?;
    let tables = std::sync::Arc::new(jamrig::tables::Tables::new(rate as f32));
    let what = match &item {
        audition::Item::Instrument(n) => format!("{n} at {}", jamrig::theory::note_name(note_number)),
        other => format!("{} {}", other.kind(), other.name()),
    };
    if let Some(path) = &out {
        // Streamed to the file as it is rendered.
        jamrig::files::check_output(path, &[])?;
        let frames = audition::write(&plan, tables, path)?;
        eprintln!("wrote {} ({what}, {:.1} s)", path.display(), frames as f64 / rate as f64);
        return Ok(());
    }
    // For the audio device: at most a second's note and its ring-out, in memory.
    let samples = audition::render(&plan, tables)?;
    let seconds = samples.len() as f64 / 2.0 / rate as f64;
    match (out, chosen) {
        (Some(_), _) => unreachable!("written above"),
        (None, Some(c)) => {
            eprintln!("playing {what} ({seconds:.1} s) on {}", c.description);
            jamrig::live::audio::play_buffer(&c, samples)?;
        }
        (None, None) => unreachable!("a device was chosen when there is no --out"),
    }
    Ok(())
}

fn main() -> ExitCode {
    jamrig::live::timeline::init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Play {
            set,
            port,
            buffer,
            device,
            no_repl,
            no_watch,
            sync,
            record,
            record_patterns,
            capture,
            listen,
            listen_token,
            midi_out,
            clock_out,
            samples,
            threads,
        } => {
            jamrig::engine::workers::set_threads(threads.map_or(jamrig::engine::workers::DEFAULT_THREADS, usize::from));
            if threads.is_some() {
                jamrig::engine::workers::mark_chosen();
            }
            let listen = match listen.map(|a| jamrig::live::listen::ListenOptions::new(a, listen_token)).transpose() {
                Ok(l) => l,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let sync = sync.map(|s| match s.as_str() {
                "midi" => SyncMode::Midi,
                "link" => SyncMode::Link { quantum: 4.0 },
                _ => SyncMode::Internal,
            });
            let opts = PlayOptions {
                set,
                port,
                buffer,
                device,
                repl: !no_repl,
                watch: !no_watch,
                sync,
                record,
                record_patterns,
                capture,
                listen,
                midi_out,
                clock_out,
                samples,
            };
            return match jamrig::live::play(opts) {
                PlayOutcome::Stopped => ExitCode::SUCCESS,
                PlayOutcome::NoAudio(msg) => {
                    eprintln!("error: {msg}");
                    ExitCode::from(EXIT_NO_AUDIO)
                }
                PlayOutcome::Failed(msg) => {
                    eprint!("{}", if msg.starts_with("error") { msg } else { format!("error: {msg}\n") });
                    ExitCode::FAILURE
                }
            };
        }
        Command::Ports => {
            print!("{}", jamrig::live::ports());
            Ok(())
        }
        Command::Render {
            set,
            replay,
            out,
            midi,
            soundfont,
            no_soundfont,
            patterns,
            tail,
            bars,
            seconds,
            rate,
            format,
            samples,
            threads,
        } => {
            jamrig::engine::workers::set_threads(threads.map_or(jamrig::engine::workers::DEFAULT_THREADS, usize::from));
            let length = match (bars, seconds) {
                (Some(b), _) => Length::Bars(b),
                (_, Some(s)) => Length::Seconds(s),
                _ => Length::Auto,
            };
            let soundfont = match (soundfont, no_soundfont) {
                (Some(f), _) => job::FontChoice::Named(f),
                (None, true) => job::FontChoice::Synthesized,
                (None, false) => job::FontChoice::Search,
            };
            let job = RenderJob {
                set,
                out: out.clone(),
                midi,
                length,
                sample_rate: rate,
                format,
                tail,
                patterns,
                soundfont,
                samples,
            };
            let result = match &replay {
                Some(dir) => job::replay(dir, &out, format),
                None => job::run(&job),
            };
            result.map(|r| {
                if let Some(line) = &r.rig {
                    eprintln!("{line}");
                }
                for w in &r.warnings {
                    eprintln!("warning: {w}");
                }
                eprintln!(
                    "wrote {} ({:.1} s of audio in {:.2} s, {:.0}x real time)",
                    out.display(),
                    r.seconds,
                    r.elapsed.as_secs_f64(),
                    r.seconds / r.elapsed.as_secs_f64().max(1e-9)
                );
            })
        }
        Command::Check { set, events, format, samples } => match events {
            Some(bars) => job::check_events(&set, bars, format, &samples).map(|s| print!("{s}")),
            None => job::check(&set, &samples).map(|s| print!("{s}")),
        },
        Command::Levels { sets, range } => jamrig::offline::levels::report(&sets, range).map(|s| print!("{s}")),
        Command::Audition(args) => match audition(args) {
            Err(e) if e.downcast_ref::<jamrig::live::audio::AudioError>().is_some() => {
                eprintln!("error: {e}\nwrite a WAV instead with -o OUT.wav");
                return ExitCode::from(EXIT_NO_AUDIO);
            }
            other => other,
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            match e.downcast_ref::<ScriptFailure>() {
                Some(f) => eprint!("{f}"),
                None => eprintln!("error: {e:#}"),
            }
            ExitCode::FAILURE
        }
    }
}
