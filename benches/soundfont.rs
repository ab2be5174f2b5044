//! SoundFont benchmarks against FluidSynth, on the same font (Debian's TimGM6mb,
//! installed by scripts/deps.sh with FluidSynth and `time`) and the same MIDI files,
//! written here. Run with `cargo bench --bench soundfont` (add `-- NAME` for one
//! group: render, voices, memory, startup; `-- files` writes the MIDI files to
//! target/soundfont-bench/ for profiling). Prints the figures BENCHMARKS.md records.
//!
//! Both run on one core (FluidSynth with synth.cpu-cores=1 under `taskset -c 0`,
//! jamrig's offline renderer on the bench's own thread, also pinned), at 48 kHz, with
//! reverb and chorus on (every channel sends CC91 = 40 and CC93 = 40). Times are CPU
//! time (the thread's for the in-process render, user + system for whole runs), so
//! that other work on a shared machine does not stretch them.

use jamrig::offline::Renderer;
use jamrig::offline::job::RigChoice;
use jamrig::rig::Set;
use jamrig::tables::Tables;
use midly::num::{u4, u7, u15, u24, u28};
use midly::{Format, Header, MetaMessage, MidiMessage, Smf, Timing, TrackEvent, TrackEventKind};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

const SR: u32 = 48_000;
const FONT: &str = "/usr/share/sounds/sf2/TimGM6mb.sf2";
const TPB: u32 = 480;
/// Frames per `process` call (FluidSynth's file renderer writes 64-frame periods;
/// block size does not change jamrig's output).
const BLOCK: usize = 512;

type Note = (u8, u8, f64, f64, u8); // channel, key, start s, length s, velocity

fn smf(programs: &[(u8, u8)], notes: &[Note], seconds: f64) -> Vec<u8> {
    let ticks = |s: f64| (s * 2.0 * TPB as f64).round() as u32;
    let mut evs: Vec<(u32, u8, MidiMessage)> = Vec::new();
    for ch in 0..16u8 {
        evs.push((0, ch, MidiMessage::Controller { controller: u7::new(91), value: u7::new(40) }));
        evs.push((0, ch, MidiMessage::Controller { controller: u7::new(93), value: u7::new(40) }));
    }
    for &(ch, p) in programs {
        evs.push((0, ch, MidiMessage::ProgramChange { program: u7::new(p) }));
    }
    for &(ch, key, start, len, vel) in notes {
        evs.push((ticks(start), ch, MidiMessage::NoteOn { key: u7::new(key), vel: u7::new(vel) }));
        evs.push((ticks(start + len), ch, MidiMessage::NoteOff { key: u7::new(key), vel: u7::new(0) }));
    }
    evs.sort_by_key(|e| e.0);
    let mut track =
        vec![TrackEvent { delta: u28::new(0), kind: TrackEventKind::Meta(MetaMessage::Tempo(u24::new(500_000))) }];
    let mut last = 0;
    for (t, ch, message) in evs {
        track.push(TrackEvent {
            delta: u28::new(t - last),
            kind: TrackEventKind::Midi { channel: u4::new(ch), message },
        });
        last = t;
    }
    let end = ticks(seconds).max(last);
    track.push(TrackEvent { delta: u28::new(end - last), kind: TrackEventKind::Meta(MetaMessage::EndOfTrack) });
    let smf =
        Smf { header: Header::new(Format::SingleTrack, Timing::Metrical(u15::new(TPB as u16))), tracks: vec![track] };
    let mut out = Vec::new();
    smf.write_std(&mut out).unwrap();
    out
}

/// A 30-second General MIDI piece: piano chords, a string pad, bass, a flute line
/// and drums in sixteenths.
fn song() -> Vec<u8> {
    let mut notes = Vec::new();
    let beats = 60;
    for b in 0..beats {
        let t = b as f64 * 0.5;
        let root = [48u8, 53, 55, 50][(b / 4) % 4];
        if b % 2 == 0 {
            for k in [0u8, 4, 7, 12] {
                notes.push((0, root + 12 + k, t, 0.9, 90));
            }
        }
        if b % 4 == 0 {
            for k in [0u8, 7, 12, 16] {
                notes.push((1, root + k, t, 1.9, 70));
            }
        }
        notes.push((2, root - 12, t, 0.4, 100));
        notes.push((2, root - 12 + 12 * (b % 2) as u8, t + 0.25, 0.2, 80));
        for s in 0..4 {
            let ts = t + s as f64 * 0.125;
            notes.push((3, root + 24 + [0u8, 2, 4, 7][s], ts, 0.12, 70));
            notes.push((9, 42, ts, 0.1, 60 + 20 * (s % 2) as u8));
        }
        notes.push((9, if b % 2 == 0 { 36 } else { 38 }, t, 0.2, 110));
    }
    smf(&[(0, 0), (1, 48), (2, 33), (3, 73)], &notes, beats as f64 * 0.5)
}

/// `n` held string notes for `seconds` (no percussion), spread over four channels.
fn held(n: usize, seconds: f64) -> Vec<u8> {
    let notes: Vec<Note> = (0..n).map(|i| ((i % 4) as u8, 36 + (i * 7 % 48) as u8, 0.0, seconds, 90)).collect();
    smf(&[(0, 48), (1, 48), (2, 48), (3, 48)], &notes, seconds)
}

/// The General MIDI rig on `FONT`, as `jamrig render --soundfont FONT --midi` builds it.
fn gm_rig() -> Set {
    let rig = RigChoice::GeneralMidiFont { font: PathBuf::from(FONT), from: "--soundfont".into() };
    rig.evaluate(&rig.host().unwrap()).map_err(|d| d.render()).unwrap().set
}

/// CPU seconds this thread has used (the machine is shared: CPU time, not wall
/// time, is the figure that other work does not stretch).
fn thread_cpu() -> f64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a valid timespec to write into.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// Renders `midi` through jamrig in this process: (CPU seconds taken, audio seconds, most voices at once).
fn jamrig_render(set: &Set, tables: &Arc<Tables>, midi: &[u8]) -> (f64, f64, u32) {
    let (events, end) = jamrig::offline::midifile::events_from_bytes(midi, "bench.mid", SR as f64).unwrap();
    let mut r = Renderer::with_tables(set, tables.clone()).unwrap();
    r.add_events(events);
    let frames = end as usize + SR as usize;
    let mut buf = vec![0.0f32; BLOCK * 2];
    let mut most = 0;
    let t0 = thread_cpu();
    for _ in 0..frames / BLOCK {
        r.render_into(&mut buf, BLOCK);
        let v: u32 = r.stats().voices.iter().map(|v| v.load(std::sync::atomic::Ordering::Relaxed)).sum();
        most = most.max(v);
    }
    std::hint::black_box(&buf);
    (thread_cpu() - t0, frames as f64 / SR as f64, most)
}

/// Runs FluidSynth on one core over `midi`: CPU seconds (user and system). With
/// `polyphony` its voice limit (256 by default) is set to that.
fn fluidsynth(midi: &Path, out: &Path, polyphony: Option<u32>) -> f64 {
    let polyphony = format!("synth.polyphony={}", polyphony.unwrap_or(256));
    let st = Command::new("/usr/bin/time")
        .args(["-f", "%U %S %M", "taskset", "-c", "0"])
        .args(["fluidsynth", "-ni", "-q", "-r", "48000", "-o", "synth.cpu-cores=1", "-o", &polyphony, "-F"])
        .arg(out)
        .arg(FONT)
        .arg(midi)
        .output()
        .expect("fluidsynth and taskset run (scripts/deps.sh installs them)");
    assert!(st.status.success(), "{}", String::from_utf8_lossy(&st.stderr));
    time_output(&st.stderr).0
}

/// (user + system CPU seconds, peak KB) from the last line of `/usr/bin/time -f "%U %S %M"`.
fn time_output(stderr: &[u8]) -> (f64, u64) {
    let text = String::from_utf8_lossy(stderr);
    let last = text.lines().rev().find(|l| l.split_whitespace().count() == 3).unwrap_or("0 0 0");
    let v: Vec<&str> = last.split_whitespace().collect();
    let cpu = v[0].parse::<f64>().unwrap_or(0.0) + v[1].parse::<f64>().unwrap_or(0.0);
    (cpu, v[2].parse().unwrap_or(0))
}

fn best(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(f64::total_cmp);
    (v[0], v[v.len() / 2])
}

fn pin_to_first_core() {
    // This thread renders; keep it on core 0 like FluidSynth.
    let _ = Command::new("taskset").args(["-cp", "0", &std::process::id().to_string()]).output();
}

fn render_group(dir: &Path, tables: &Arc<Tables>) {
    let midi = song();
    let path = dir.join("song.mid");
    std::fs::write(&path, &midi).unwrap();
    let set = gm_rig();
    let runs = 5;
    let mut ours = Vec::new();
    let mut voices = 0;
    let mut audio = 0.0;
    for _ in 0..runs {
        let (t, a, v) = jamrig_render(&set, tables, &midi);
        ours.push(t);
        audio = a;
        voices = v;
    }
    let fluid: Vec<f64> = (0..runs).map(|_| fluidsynth(&path, &dir.join("fluid.wav"), None)).collect();
    let (ob, om) = best(ours);
    let (fb, fm) = best(fluid);
    println!(
        "render: a {audio:.1} s General MIDI piece (piano, strings, bass, flute, drums), TimGM6mb, reverb and chorus on"
    );
    println!(
        "  jamrig (in process, render only, CPU): best {:.3} s ({:.0}x real time), median {:.3} s; at most {voices} voices",
        ob,
        audio / ob,
        om
    );
    println!(
        "  fluidsynth -ni -F (whole run, CPU):   best {:.3} s ({:.0}x real time), median {:.3} s",
        fb,
        audio / fb,
        fm
    );
    let cli: Vec<f64> = (0..runs).map(|_| jamrig_cli(dir, &path, &[]).0).collect();
    let (cb, cm) = best(cli);
    println!(
        "  jamrig render --soundfont --midi (whole run, CPU): best {:.3} s ({:.0}x real time), median {:.3} s",
        cb,
        audio / cb,
        cm
    );
    println!(
        "  speed: {:.1}x FluidSynth's (whole runs, best of {runs}), {:.1}x (jamrig render only)",
        fb / cb,
        fb / ob
    );
}

/// Runs `jamrig render --soundfont FONT --midi FILE` (the General MIDI rig on the
/// font) on core 0 under `time`: (CPU seconds, peak KB).
fn jamrig_cli(dir: &Path, midi: &Path, extra: &[&str]) -> (f64, u64) {
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_jamrig"));
    let out = Command::new("/usr/bin/time")
        .args(["-f", "%U %S %M", "taskset", "-c", "0"])
        .arg(&exe)
        .args(["render", "--soundfont", FONT, "--midi"])
        .arg(midi)
        .arg("-o")
        .arg(dir.join("ours.wav"))
        .args(extra)
        .output()
        .expect("jamrig runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    time_output(&out.stderr)
}

/// FluidSynth's polyphony in the held-note runs: above the most voices they play
/// (338), so that both play every voice. (Raised for the piece, which needs at most
/// 67, it would only slow FluidSynth down: it walks its voice slots every block.)
const FLUID_POLYPHONY: u32 = 1024;

fn voices_group(dir: &Path, tables: &Arc<Tables>) {
    let set = gm_rig();
    let seconds = 10.0;
    println!(
        "voices: held string notes (program 48: four looped, filtered voices a note), 10 s, CPU per voice per 512-frame block (an empty render subtracted; FluidSynth's polyphony raised to {FLUID_POLYPHONY} so that both play every voice)"
    );
    let base_midi = held(0, seconds);
    std::fs::write(dir.join("held0.mid"), &base_midi).unwrap();
    let base_ours = best((0..3).map(|_| jamrig_render(&set, tables, &base_midi).0).collect()).0;
    let base_fluid =
        best((0..3).map(|_| fluidsynth(&dir.join("held0.mid"), &dir.join("f.wav"), Some(FLUID_POLYPHONY))).collect()).0;
    for n in [8usize, 16, 32, 64] {
        let midi = held(n, seconds);
        let path = dir.join(format!("held{n}.mid"));
        std::fs::write(&path, &midi).unwrap();
        let runs: Vec<(f64, f64, u32)> = (0..3).map(|_| jamrig_render(&set, tables, &midi)).collect();
        let ours = best(runs.iter().map(|r| r.0).collect()).0;
        let (audio, v) = (runs[0].1, runs[0].2.max(1));
        let fluid = best((0..3).map(|_| fluidsynth(&path, &dir.join("f.wav"), Some(FLUID_POLYPHONY))).collect()).0;
        // Both play the same regions of the same font for the same notes: per voice,
        // the voices jamrig counted (FluidSynth's polyphony is above them).
        let blocks = audio * SR as f64 / 512.0;
        let per = |t: f64, base: f64| (t - base).max(0.0) / blocks / v as f64 * 1e9;
        let (a, b) = (per(ours, base_ours), per(fluid, base_fluid));
        println!(
            "  {n:>2} notes, {v:>3} voices: jamrig {a:.0} ns, fluidsynth {b:.0} ns per voice per block; {:.2}x",
            b / a.max(1e-9)
        );
    }
}

fn memory_group(dir: &Path) {
    let midi = song();
    let path = dir.join("song.mid");
    std::fs::write(&path, &midi).unwrap();
    let (_, ours) = jamrig_cli(dir, &path, &[]);
    let out = Command::new("/usr/bin/time")
        .args(["-f", "%U %S %M", "fluidsynth", "-ni", "-q", "-r", "48000", "-F"])
        .arg(dir.join("fluid.wav"))
        .arg(FONT)
        .arg(&path)
        .output()
        .expect("fluidsynth runs");
    let fluid = time_output(&out.stderr).1;
    println!("memory: peak resident set (VmHWM) rendering the piece with TimGM6mb");
    println!(
        "  jamrig render --soundfont --midi: {:.1} MB; fluidsynth -ni -F: {:.1} MB",
        ours as f64 / 1024.0,
        fluid as f64 / 1024.0
    );
}

fn startup_group(dir: &Path, tables: &Arc<Tables>) {
    // From nothing loaded to the first block of sound: a fresh host (so the font is
    // read and decoded again), the set, the rig, one block with a note.
    let mut times = Vec::new();
    for _ in 0..7 {
        let t0 = Instant::now();
        let set = gm_rig();
        let mut r = Renderer::with_tables(&set, tables.clone()).unwrap();
        r.add_events([jamrig::engine::event::Event::new(
            0,
            jamrig::engine::event::EventKind::NoteOn { channel: 0, note: 60, velocity: 100 },
        )]);
        let x = r.render(BLOCK, BLOCK);
        std::hint::black_box(x);
        times.push(t0.elapsed().as_secs_f64());
    }
    let (b, m) = best(times);
    let load = {
        let t0 = Instant::now();
        let bank = jamrig::samples::soundfont::load(Path::new(FONT)).unwrap();
        std::hint::black_box(bank);
        t0.elapsed()
    };
    println!(
        "startup in process (wall): font loaded, set evaluated, rig built, first block: best {:.1} ms, median {:.1} ms (reading the 5.7 MB font alone {:.1} ms)",
        b * 1e3,
        m * 1e3,
        load.as_secs_f64() * 1e3
    );
    // Whole runs over a file of one short note: start-up, a tenth of a second of
    // sound, exit.
    let one = dir.join("one.mid");
    std::fs::write(&one, smf(&[], &[(0, 60, 0.0, 0.1, 100)], 0.1)).unwrap();
    let ours = best((0..7).map(|_| jamrig_cli(dir, &one, &["--tail", "0"]).0).collect());
    let fluid = best((0..7).map(|_| fluidsynth(&one, &dir.join("f.wav"), None)).collect());
    println!(
        "startup, whole runs over one 0.1 s note, CPU: jamrig render --soundfont --midi best {:.0} ms, median {:.0} ms; fluidsynth -ni -F best {:.0} ms, median {:.0} ms",
        ours.0 * 1e3,
        ours.1 * 1e3,
        fluid.0 * 1e3,
        fluid.1 * 1e3
    );
}

/// Writes the bench's MIDI files into `target/soundfont-bench/` (for profiling
/// and callgrind runs of `jamrig render` over the same workloads).
fn files_group() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target").join("soundfont-bench");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("song.mid"), song()).unwrap();
    for n in [8usize, 16, 32, 64] {
        std::fs::write(dir.join(format!("held{n}.mid")), held(n, 10.0)).unwrap();
    }
    println!("files: song.mid, held8/16/32/64.mid written to {}", dir.display());
}

fn main() {
    assert!(Path::new(FONT).is_file(), "{FONT} is missing: run scripts/deps.sh");
    let which: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let run = |name: &str| which.is_empty() || which.iter().any(|w| w == name);
    pin_to_first_core();
    let dir = tempfile::tempdir().unwrap();
    let tables = Arc::new(Tables::new(SR as f32));
    if which.iter().any(|w| w == "files") {
        files_group();
        return;
    }
    if run("startup") {
        startup_group(dir.path(), &tables);
    }
    if run("render") {
        render_group(dir.path(), &tables);
    }
    if run("voices") {
        voices_group(dir.path(), &tables);
    }
    if run("memory") {
        memory_group(dir.path());
    }
}
