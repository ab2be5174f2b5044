//! The four MIDI workloads of the speed targets, rendered by `jamrig render --midi`
//! and, when it is installed, by FluidSynth on the same files, side by side in one
//! run, each pinned to one core; and jamrig again on every core (`--threads`). Prints real-time factors, their ratio, peak memory
//! and callgrind-free wall times; BENCHMARKS.md records the figures.
//!
//! Run with `cargo bench --bench workloads` (add `-- NAME` for one workload:
//! chords, held, song, notes). With `-- --callgrind` each render runs once under
//! callgrind instead and the instructions executed are printed: figures that hold
//! on a busy machine, where wall times do not; `-- --no-fluidsynth` runs jamrig
//! alone. `-- --dir DIR` writes the set and the MIDI files into DIR and keeps them
//! (for a profiler; with `--files-only` it stops there). FluidSynth uses FluidR3_GM
//! where it is installed
//! (`fluid-soundfont-gm`), else TimGM6mb; `JAMRIG_BENCH_FONT` picks another font.
//!
//! The jamrig rig: channels 1 and 5 electric_piano, 2 and 6 bass_guitar, 3 and 7
//! synth_pad, 4 and 8 synth_lead, each with reverb 0.3, lowpass 4000 and chorus
//! 0.2; drums on 10. FluidSynth gets the same notes with General MIDI program
//! changes for the same families (electric piano 1, fingered bass, warm pad, saw
//! lead), with its default reverb and chorus on.

use midly::num::{u4, u7, u15, u28};
use midly::{Format, Header, MetaMessage, MidiMessage, Smf, Timing, TrackEvent, TrackEventKind};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

const PPQ: u16 = 480;
const RATE: u32 = 48000;

const SET: &str = r#"// The speed workloads' rig.
let fx = #{ reverb: 0.3, lowpass: 4000.0, chorus: 0.2 };
for ch in [1, 5] { channel(ch, "electric_piano", fx); }
for ch in [2, 6] { channel(ch, "bass_guitar", fx); }
for ch in [3, 7] { channel(ch, "synth_pad", fx); }
for ch in [4, 8] { channel(ch, "synth_lead", fx); }
drums(10);
"#;

/// General MIDI programs (0-based) for the same families, per channel 1..8.
const PROGRAMS: [u8; 8] = [4, 33, 89, 81, 4, 33, 89, 81];

/// A note: start and end in ticks, 0-based channel, key, velocity.
#[derive(Clone, Copy)]
struct Note {
    on: u32,
    off: u32,
    channel: u8,
    key: u8,
    velocity: u8,
}

/// A small deterministic generator (the workloads are the same on every run).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u32 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 33) as u32
    }
    fn below(&mut self, n: u32) -> u32 {
        self.next() % n
    }
}

struct Workload {
    name: &'static str,
    what: &'static str,
    bpm: f64,
    notes: Vec<Note>,
}

fn ticks(beats: f64) -> u32 {
    (beats * PPQ as f64).round() as u32
}

/// Held 3 to 8 note chords on channels 1 to 4, changing every 2 s, for 30 s.
fn chords() -> Workload {
    let (bpm, mut rng, mut notes) = (120.0, Lcg(1), Vec::new());
    for step in 0..15 {
        let (on, off) = (ticks(step as f64 * 4.0), ticks(step as f64 * 4.0 + 4.0));
        for ch in 0..4u8 {
            let size = 3 + rng.below(6) as u8;
            let root = [36u8, 28, 48, 60][ch as usize] + rng.below(12) as u8;
            for i in 0..size {
                let key = root + [0u8, 4, 7, 11, 14, 17, 21, 24][i as usize];
                notes.push(Note { on, off, channel: ch, key, velocity: 70 + rng.below(40) as u8 });
            }
        }
    }
    Workload { name: "chords", what: "4 channels of 3-8 note chords changing every 2 s, 30 s", bpm, notes }
}

/// 32 notes on each of channels 1 to 4, held 8 s and then replaced, for 30 s. The
/// keys of a channel are distinct (FluidSynth 2.3 holds one voice of a key struck
/// twice at once past both note-offs, and then never ends its render).
fn held() -> Workload {
    let (bpm, mut rng, mut notes) = (120.0, Lcg(2), Vec::new());
    let mut start = 0.0;
    while start < 60.0 {
        let end = (start + 16.0f64).min(60.0);
        for ch in 0..4u8 {
            let shift = rng.below(3) as u8;
            for i in 0..32u8 {
                let key = 36 + (i * 7 + shift) % 60;
                notes.push(Note { on: ticks(start), off: ticks(end), channel: ch, key, velocity: 90 });
            }
        }
        start += 16.0;
    }
    Workload { name: "held", what: "4 channels x 32 notes held 8 s then replaced, 30 s", bpm, notes }
}

/// A 120 s song at 110 BPM: drums, bass, chords, a pad and a lead.
fn song() -> Workload {
    let (bpm, mut rng, mut notes) = (110.0, Lcg(3), Vec::new());
    let bars = (120.0 * bpm / 60.0 / 4.0) as u32;
    let roots = [45u8, 41, 48, 43];
    for bar in 0..bars {
        let b0 = bar as f64 * 4.0;
        let root = roots[(bar % 4) as usize];
        // Drums: kick on 1 and 3, snare on 2 and 4, eighth hats.
        for e in 0..8 {
            let at = b0 + e as f64 * 0.5;
            let hat = Note { on: ticks(at), off: ticks(at + 0.25), channel: 9, key: 42, velocity: 80 };
            notes.push(hat);
            if e % 4 == 0 {
                notes.push(Note { key: 36, velocity: 110, ..hat });
            }
            if e % 4 == 2 {
                notes.push(Note { key: 38, velocity: 100, ..hat });
            }
        }
        // Bass: eighths on the root.
        for e in 0..8 {
            let at = b0 + e as f64 * 0.5;
            let key = root - 12 + if e % 4 == 3 { 7 } else { 0 };
            notes.push(Note { on: ticks(at), off: ticks(at + 0.45), channel: 1, key, velocity: 100 });
        }
        // Keys: a chord on each half bar.
        for h in 0..2 {
            let at = b0 + h as f64 * 2.0;
            for i in [0u8, 3, 7, 10] {
                notes.push(Note { on: ticks(at), off: ticks(at + 1.9), channel: 0, key: root + 12 + i, velocity: 80 });
            }
        }
        // Pad: the whole bar.
        for i in [0u8, 7, 12, 16] {
            notes.push(Note { on: ticks(b0), off: ticks(b0 + 4.0), channel: 2, key: root + i, velocity: 70 });
        }
        // Lead: sixteenths from a pentatonic scale, every other bar.
        if bar % 2 == 1 {
            for s in 0..16 {
                let at = b0 + s as f64 * 0.25;
                let key = root + 24 + [0u8, 3, 5, 7, 10][rng.below(5) as usize];
                notes.push(Note { on: ticks(at), off: ticks(at + 0.2), channel: 3, key, velocity: 90 });
            }
        }
    }
    Workload { name: "song", what: "a 120 s song at 110 BPM: drums, bass, keys, pad, lead", bpm, notes }
}

/// 200 notes a second over channels 1 to 8 for 10 s (2000 notes, 0.25 s each).
fn notes() -> Workload {
    let (bpm, mut rng, mut notes) = (120.0, Lcg(4), Vec::new());
    for i in 0..2000u32 {
        let at = i as f64 * 0.005; // seconds
        let beat = at * 2.0;
        let key = 40 + rng.below(48) as u8;
        let channel = (i % 8) as u8;
        notes.push(Note { on: ticks(beat), off: ticks(beat + 0.5), channel, key, velocity: 60 + rng.below(60) as u8 });
    }
    Workload { name: "notes", what: "2000 notes in 10 s over 8 channels", bpm, notes }
}

/// A type-0 Standard MIDI File of the workload, with or without program changes.
fn smf(w: &Workload, programs: bool) -> Vec<u8> {
    let mut evs: Vec<(u32, u8, TrackEventKind<'static>)> = Vec::new();
    let tempo = (60_000_000.0 / w.bpm).round() as u32;
    evs.push((0, 0, TrackEventKind::Meta(MetaMessage::Tempo(midly::num::u24::new(tempo)))));
    if programs {
        for (ch, p) in PROGRAMS.iter().enumerate() {
            let m = MidiMessage::ProgramChange { program: u7::new(*p) };
            evs.push((0, 0, TrackEventKind::Midi { channel: u4::new(ch as u8), message: m }));
        }
    }
    for n in &w.notes {
        let (ch, key, vel) = (u4::new(n.channel), u7::new(n.key), u7::new(n.velocity));
        evs.push((n.on, 2, TrackEventKind::Midi { channel: ch, message: MidiMessage::NoteOn { key, vel } }));
        let off = MidiMessage::NoteOff { key, vel: u7::new(0) };
        evs.push((n.off, 1, TrackEventKind::Midi { channel: ch, message: off }));
    }
    // In time order, note-offs before note-ons at the same tick.
    evs.sort_by_key(|e| (e.0, e.1));
    let mut track = Vec::new();
    let mut last = 0;
    for (t, _, kind) in evs {
        track.push(TrackEvent { delta: u28::new(t - last), kind });
        last = t;
    }
    track.push(TrackEvent { delta: u28::new(0), kind: TrackEventKind::Meta(MetaMessage::EndOfTrack) });
    let smf = Smf { header: Header::new(Format::SingleTrack, Timing::Metrical(u15::new(PPQ))), tracks: vec![track] };
    let mut out = Vec::new();
    smf.write_std(&mut out).expect("writes to memory");
    out
}

/// Runs `cmd` pinned to core 0 under GNU time; returns (wall seconds, peak KB).
fn run_pinned(args: &[&str]) -> Option<(f64, u64)> {
    run_on(args, Some("0"))
}

/// Runs `cmd` on the cores `cpus` (`taskset` list; `None`: every core) under GNU
/// time; returns (wall seconds, peak KB).
fn run_on(args: &[&str], cpus: Option<&str>) -> Option<(f64, u64)> {
    let mut cmd = Command::new("taskset");
    let time = Path::new("/usr/bin/time").exists();
    let all = format!("0-{}", std::thread::available_parallelism().map_or(1, |n| n.get()) - 1);
    cmd.arg("-c").arg(cpus.unwrap_or(&all));
    if time {
        cmd.args(["/usr/bin/time", "-v"]);
    }
    cmd.args(args);
    let t0 = Instant::now();
    let out = cmd.output().ok()?;
    let wall = t0.elapsed().as_secs_f64();
    if !out.status.success() {
        eprintln!("{} failed: {}", args[0], String::from_utf8_lossy(&out.stderr));
        return None;
    }
    let err = String::from_utf8_lossy(&out.stderr);
    let kb = err
        .lines()
        .find(|l| l.contains("Maximum resident set size"))
        .and_then(|l| l.rsplit(':').next())
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    Some((wall, kb))
}

/// Runs `args` once under callgrind; returns the instructions executed.
fn instructions(args: &[&str]) -> Option<u64> {
    let out = Command::new("valgrind")
        .args(["--tool=callgrind", "--callgrind-out-file=/dev/null"])
        .args(args)
        .output()
        .ok()?;
    let err = String::from_utf8_lossy(&out.stderr);
    err.lines().find_map(|l| l.split("Collected :").nth(1)).and_then(|v| v.trim().replace(',', "").parse().ok())
}

fn best(runs: impl Iterator<Item = Option<(f64, u64)>>) -> Option<(f64, u64)> {
    runs.flatten().fold(None, |b: Option<(f64, u64)>, r| match b {
        Some(b) if b.0 <= r.0 => Some(b),
        _ => Some(r),
    })
}

fn font() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("JAMRIG_BENCH_FONT") {
        return Some(PathBuf::from(p));
    }
    ["/usr/share/sounds/sf2/FluidR3_GM.sf2", "/usr/share/sounds/sf2/TimGM6mb.sf2"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// Seconds of audio in a WAV (from its size: 16-bit stereo after a 44-byte header,
/// or whatever hound reads).
fn wav_seconds(path: &Path) -> f64 {
    match hound::WavReader::open(path) {
        Ok(r) => r.duration() as f64 / r.spec().sample_rate as f64,
        Err(_) => 0.0,
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let kept = args.iter().position(|a| a == "--dir").and_then(|i| args.get(i + 1)).map(PathBuf::from);
    let filter: Vec<&String> = args
        .iter()
        .enumerate()
        .filter(|(i, a)| !a.starts_with('-') && (*i == 0 || args[i - 1] != "--dir"))
        .map(|(_, a)| a)
        .collect();
    let callgrind = args.iter().any(|a| a == "--callgrind");
    let temp = tempfile::tempdir().expect("a temporary folder");
    let dir = match &kept {
        Some(d) => {
            std::fs::create_dir_all(d).expect("create the --dir folder");
            d.as_path()
        }
        None => temp.path(),
    };
    let set = dir.join("workloads.rhai");
    std::fs::write(&set, SET).expect("write the set");
    let jamrig = env!("CARGO_BIN_EXE_jamrig");
    // jamrig on every core too: the same render with `--threads` at the core count.
    let cores: &'static str =
        Box::leak(std::thread::available_parallelism().map_or(1, |n| n.get()).to_string().into_boxed_str());
    let fluid = !std::env::args().any(|a| a == "--no-fluidsynth")
        && Command::new("fluidsynth").arg("--version").output().is_ok_and(|o| o.status.success());
    let font = font();
    match (&font, fluid) {
        (Some(f), true) => println!("FluidSynth with {} (one core each, reverb and chorus on)", f.display()),
        _ => println!("FluidSynth or a GM SoundFont is not installed: jamrig's figures alone"),
    }
    if callgrind {
        println!("{:<8} {:>16} {:>16} {:>7}", "workload", "jamrig Ir", "fluidsynth Ir", "ratio");
    } else {
        println!(
            "{:<8} {:>10} {:>12} {:>12} {:>7} {:>11} {:>11} {:>12} {:>9}",
            "workload",
            "audio s",
            "jamrig x RT",
            "fluid x RT",
            "ratio",
            "jamrig MB",
            "fluid MB",
            format!("{cores} cores x RT"),
            "over one"
        );
    }
    for w in [chords(), held(), song(), notes()] {
        if !filter.is_empty() && !filter.iter().any(|f| w.name.contains(f.as_str())) {
            continue;
        }
        let plain = dir.join(format!("{}.mid", w.name));
        let gm = dir.join(format!("{}-gm.mid", w.name));
        std::fs::write(&plain, smf(&w, false)).expect("write MIDI");
        std::fs::write(&gm, smf(&w, true)).expect("write MIDI");
        if args.iter().any(|a| a == "--files-only") {
            println!("{}: {} and {}", w.name, plain.display(), gm.display());
            continue;
        }
        let out = dir.join("j.wav");
        if callgrind {
            let ours = instructions(&[
                jamrig,
                "render",
                set.to_str().unwrap(),
                "--midi",
                plain.to_str().unwrap(),
                "-o",
                out.to_str().unwrap(),
                "--tail",
                "0",
            ]);
            let fout = dir.join("f.wav");
            let theirs = match (&font, fluid) {
                (Some(f), true) => instructions(&[
                    "fluidsynth",
                    "-ni",
                    "-q",
                    "-r",
                    "48000",
                    "-F",
                    fout.to_str().unwrap(),
                    f.to_str().unwrap(),
                    gm.to_str().unwrap(),
                ]),
                _ => None,
            };
            // Per second of audio each wrote (FluidSynth's ends with its release tails).
            let (a, b) = (wav_seconds(&out), wav_seconds(&fout));
            let show = |ir: Option<u64>| ir.map_or("-".to_string(), |v| format!("{:.3e}", v as f64));
            let ratio = match (ours, theirs) {
                (Some(x), Some(y)) if a > 0.0 && b > 0.0 => format!("{:.2}", (y as f64 / b) / (x as f64 / a)),
                _ => "-".to_string(),
            };
            println!(
                "{:<8} {:>16} {:>16} {ratio:>7}   ({}; {a:.1} s and {b:.1} s of audio)",
                w.name,
                show(ours),
                show(theirs),
                w.what
            );
            continue;
        }
        let render = |threads: &'static str| {
            [
                jamrig,
                "render",
                set.to_str().unwrap(),
                "--midi",
                plain.to_str().unwrap(),
                "-o",
                out.to_str().unwrap(),
                "--tail",
                "0",
                "--threads",
                threads,
            ]
        };
        // One core and every core, alternated (a shared machine's load moves).
        let (mut one, mut all) = (Vec::new(), Vec::new());
        for _ in 0..3 {
            one.push(run_pinned(&render("1")));
            all.push(run_on(&render(cores), None));
        }
        let (ours, every) = (best(one.into_iter()), best(all.into_iter()));
        let seconds = wav_seconds(&out);
        let theirs = match (&font, fluid) {
            (Some(f), true) => {
                let fout = dir.join("f.wav");
                let r = best((0..3).map(|_| {
                    run_pinned(&[
                        "fluidsynth",
                        "-ni",
                        "-q",
                        "-r",
                        "48000",
                        "-o",
                        "synth.cpu-cores=1",
                        "-F",
                        fout.to_str().unwrap(),
                        f.to_str().unwrap(),
                        gm.to_str().unwrap(),
                    ])
                }));
                r.map(|(t, kb)| (wav_seconds(&fout) / t, kb))
            }
            _ => None,
        };
        let Some((t, kb)) = ours else { continue };
        let rtf = seconds / t;
        let (f_rtf, f_kb) = theirs.map_or(("-".to_string(), "-".to_string()), |(x, kb)| {
            (format!("{x:.1}"), format!("{:.0}", kb as f64 / 1024.0))
        });
        let ratio = theirs.map_or("-".to_string(), |(x, _)| format!("{:.2}", rtf / x));
        let (all_rtf, gain) = every.map_or(("-".to_string(), "-".to_string()), |(t_all, _)| {
            (format!("{:.1}", seconds / t_all), format!("{:.2}", t / t_all))
        });
        println!(
            "{:<8} {seconds:>10.1} {rtf:>12.1} {f_rtf:>12} {ratio:>7} {:>11.0} {f_kb:>11} {all_rtf:>12} {gain:>9}   ({})",
            w.name,
            kb as f64 / 1024.0,
            w.what
        );
    }
    if callgrind {
        println!(
            "(instructions of the whole process, start-up included; ratio: FluidSynth's per audio second over jamrig's)"
        );
        return;
    }
    println!(
        "(wall time of the whole process, best of 3, start-up included; {RATE} Hz; the one-core runs pinned to core 0 with --threads 1; the {cores}-core runs alternated with them; load average {})",
        std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim()
    );
}
