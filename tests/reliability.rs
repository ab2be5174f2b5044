//! Reliability: nothing a user feeds jamrig hangs it, crashes it, eats the machine's
//! memory, drops notes silently or destroys a file. Seeded generated inputs (MIDI
//! files, sets, captures) and one regression test per defect found, each checked
//! against its class of input.

mod common;

use jamrig::capture::replay;
use jamrig::engine::event::{Event, EventKind};
use jamrig::offline::midifile::events_from_bytes;
use jamrig::offline::render::MAX_RENDER_SECONDS;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::Ordering::Relaxed;

const SR: u32 = 48000;

/// A small seeded generator (splitmix64): the same cases on every run.
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len())]
    }
}

fn jamrig(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_jamrig")).args(args).output().expect("jamrig runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

/// Fails with the command's error, one line naming `what`.
fn fails_with(o: &Output, what: &str) {
    let err = stderr(o);
    assert!(!o.status.success(), "expected a failure mentioning {what:?}, got success: {err}");
    assert_eq!(o.status.code(), Some(1), "a clean failure, not a crash: {err}");
    assert!(err.contains(what), "expected {what:?} in: {err}");
}

// ---------------------------------------------------------------- MIDI files

fn vlq(mut v: u32, out: &mut Vec<u8>) {
    let mut bytes = vec![(v & 0x7F) as u8];
    v >>= 7;
    while v > 0 {
        bytes.push((v & 0x7F) as u8 | 0x80);
        v >>= 7;
    }
    bytes.reverse();
    out.extend(bytes);
}

/// A Standard MIDI File from raw track bodies.
fn smf(format: u16, division: u16, tracks: &[Vec<u8>]) -> Vec<u8> {
    let mut b = b"MThd".to_vec();
    b.extend(6u32.to_be_bytes());
    b.extend(format.to_be_bytes());
    b.extend((tracks.len() as u16).to_be_bytes());
    b.extend(division.to_be_bytes());
    for t in tracks {
        b.extend(b"MTrk");
        b.extend((t.len() as u32).to_be_bytes());
        b.extend(t);
    }
    b
}

/// A generated track: notes, controllers, tempo changes and long gaps.
fn random_track(g: &mut Gen) -> Vec<u8> {
    let mut t = Vec::new();
    for _ in 0..g.below(40) {
        let delta = *g.pick(&[0, 1, 96, 480, 0x3FFF, 0x0FFF_FFFF]);
        vlq(delta, &mut t);
        match g.below(5) {
            0 => {
                let us = *g.pick(&[0u32, 1, 500_000, 0xFF_FFFF]);
                t.extend([0xFF, 0x51, 0x03]);
                t.extend(&us.to_be_bytes()[1..]);
            }
            1 => t.extend([0x90 | g.below(16) as u8, g.below(128) as u8, g.below(128) as u8]),
            2 => t.extend([0x80 | g.below(16) as u8, g.below(128) as u8, 0]),
            3 => t.extend([0xB0 | g.below(16) as u8, g.below(128) as u8, g.below(128) as u8]),
            _ => t.extend([0xC0 | g.below(16) as u8, g.below(128) as u8]),
        }
    }
    vlq(0, &mut t);
    t.extend([0xFF, 0x2F, 0x00]);
    t
}

#[test]
fn generated_midi_files_never_panic_and_their_events_come_in_order() {
    let mut g = Gen(0x5EED_0001);
    let mut parsed = 0;
    for case in 0..1500 {
        let tracks: Vec<Vec<u8>> = (0..1 + g.below(3)).map(|_| random_track(&mut g)).collect();
        let division = *g.pick(&[0u16, 1, 96, 0x7FFF, 0xE728, 0xFF01]);
        let mut bytes = smf(g.below(3) as u16, division, &tracks);
        // Damage a third of them: flip bytes, cut the end.
        if g.below(3) == 0 {
            for _ in 0..1 + g.below(3) {
                let i = g.below(bytes.len());
                bytes[i] = g.next() as u8;
            }
        }
        if g.below(6) == 0 {
            bytes.truncate(g.below(bytes.len()));
        }
        let result = std::panic::catch_unwind(|| events_from_bytes(&bytes, "fuzz.mid", SR as f64));
        let Ok(result) = result else { panic!("case {case} panicked on {bytes:?}") };
        if let Ok((events, end)) = result {
            parsed += 1;
            assert!(events.windows(2).all(|w| w[0].frame <= w[1].frame), "case {case}: out of order");
            assert!(events.iter().all(|e| e.frame <= end), "case {case}: an event past the end");
        }
    }
    assert!(parsed > 300, "the generator makes mostly readable files ({parsed} parsed)");
}

/// A valid 37-byte file whose one gap lasts days asks for a render of that length.
fn huge_gap_midi() -> Vec<u8> {
    let mut t = Vec::new();
    vlq(0, &mut t);
    t.extend([0xFF, 0x51, 0x03, 0xFF, 0xFF, 0xFF]);
    vlq(0x0FFF_FFFF, &mut t);
    t.extend([0x90, 60, 100]);
    vlq(0, &mut t);
    t.extend([0xFF, 0x2F, 0x00]);
    smf(0, 1, &[t])
}

#[test]
fn render_refuses_a_midi_file_longer_than_the_longest_render() {
    let dir = tempfile::tempdir().unwrap();
    let mid = dir.path().join("long.mid");
    let bytes = huge_gap_midi();
    assert!(bytes.len() <= 40, "a tiny file ({} bytes)", bytes.len());
    std::fs::write(&mid, &bytes).unwrap();
    let out = dir.path().join("out.wav");
    let o = jamrig(&["render", "--midi", s(&mid), "-o", s(&out)]);
    fails_with(&o, "long.mid lasts");
    assert!(stderr(&o).contains("--seconds"), "{}", stderr(&o));
    assert_eq!(names(dir.path()), ["long.mid"], "nothing written");
    // With a length it renders (the start of the file).
    let o = jamrig(&["render", "--midi", s(&mid), "-o", s(&out), "--seconds", "0.5", "--tail", "0"]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn render_lengths_past_the_limit_are_refused_up_front() {
    let dir = tempfile::tempdir().unwrap();
    let set = dir.path().join("slow.rhai");
    std::fs::write(&set, "tempo(20); meter(64); channel(1, \"piano\");").unwrap();
    let out = dir.path().join("out.wav");
    let o = jamrig(&["render", s(&set), "-o", s(&out), "--bars", "10000"]);
    fails_with(&o, "--bars 10000 at this set's tempo is");
    let o = jamrig(&["render", s(&set), "-o", s(&out), "--seconds", "36001"]);
    fails_with(&o, "--seconds must be above 0 and at most 36000");
    let o = jamrig(&["render", s(&set), "-o", s(&out), "--seconds", "NaN"]);
    fails_with(&o, "--seconds must be");
    let o = jamrig(&["render", s(&set), "-o", s(&out), "--seconds", "1", "--tail=-1"]);
    fails_with(&o, "--tail must be from 0 to");
    assert_eq!(names(dir.path()), ["slow.rhai"]);
}

// ---------------------------------------------------------------- sets

const HOSTILE: &[&str] = &[
    "0",
    "-1",
    "1",
    "127",
    "128",
    "1e300",
    "-1e300",
    "1e-300",
    "0.0/0.0",
    "1.0/0.0",
    "-1.0/0.0",
    "9223372036854775807",
    "-9223372036854775807",
    "0.015625",
    "1024",
    "1025",
    "\"C1073741828\"",
    "\"C4\"",
    "\"\"",
    "[]",
    "#{}",
    "()",
    "true",
];

/// Values a set would normally use.
const SANE: &[&str] = &["0", "1", "2", "4", "0.5", "60", "100", "120", "\"C4\""];

fn hostile_call(g: &mut Gen) -> String {
    // One value in six is hostile.
    let mut v = || if g.below(6) == 0 { g.pick(HOSTILE).to_string() } else { g.pick(SANE).to_string() };
    let forms: Vec<String> = vec![
        format!("tempo({});", v()),
        format!("meter({});", v()),
        format!("channel({}, \"piano\");", v()),
        format!("channel(2, \"piano\", #{{ lowpass: {}, delay_feedback: {} }});", v(), v()),
        format!("drums({});", v()),
        format!("cc({}, \"lowpass\", {}, {});", v(), v(), v()),
        format!("pattern(\"p\", 1, {}, [[{}, \"C4\", {}, {}]]);", v(), v(), v(), v()),
        format!("pattern(\"d\", 10, {});", v()),
        format!("pattern(\"q\", 1, 4, [[0, {}, 100]]);", v()),
        format!("print(note({}));", v()),
        format!("clock(\"link\", {});", v()),
        format!("master(#{{ gain: {} }});", v()),
        format!("ch(1).reverb = {};", v()),
        format!("ch(1).voices = {};", v()),
        format!("define_pattern(\"x\", {}, [[{}, \"kick\", {}]]);", v(), v(), v()),
        format!("gm_program({}, \"piano\");", v()),
        format!("drum_sound(\"zap\", {});", v()),
        format!("sleep({});", v()),
    ];
    g.pick(&forms).clone()
}

#[test]
fn generated_hostile_sets_fail_with_a_located_error_or_play_finite_audio() {
    let mut g = Gen(0x5EED_0002);
    let (mut ok, mut refused) = (0, 0);
    for case in 0..400 {
        let mut text = String::from("channel(1, \"piano\");\ndrums(10);\n");
        for _ in 0..1 + g.below(3) {
            text.push_str(&hostile_call(&mut g));
            text.push('\n');
        }
        let result = std::panic::catch_unwind(|| common::eval(&text).map_err(Box::new));
        let Ok(result) = result else { panic!("case {case} panicked:\n{text}") };
        match result {
            Err(d) => {
                refused += 1;
                assert!(d.line > 0 || !d.message.is_empty(), "case {case}: an empty error for\n{text}");
            }
            Ok(ev) => {
                ok += 1;
                let Ok(mut r) = jamrig::offline::Renderer::new(&ev.set, SR) else { continue };
                r.add_events([Event::new(0, EventKind::NoteOn { channel: 0, note: 60, velocity: 100 })]);
                let x = r.render(SR as usize / 10, 512);
                assert!(common::all_finite(&x), "case {case}: NaN or Inf in the output of\n{text}");
            }
        }
    }
    assert!(ok > 50 && refused > 50, "both outcomes are exercised ({ok} ok, {refused} refused)");
}

#[test]
fn sleep_is_refused_in_sets_modules_and_repl_lines() {
    for line in ["sleep(3600);", "sleep(1e300);", "sleep(-1);", "let f = Fn(\"sleep\"); f.call(3600);"] {
        let d = common::eval_err(line);
        assert!(d.message.contains("sleep is not available in a set"), "{line}: {}", d.message);
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("slow.rhai"), "sleep(3600);\nexport const X = 1;\n").unwrap();
    std::fs::write(dir.path().join("set.rhai"), "import \"slow\" as s;\n").unwrap();
    let d = common::host().eval_file(&dir.path().join("set.rhai")).unwrap_err();
    assert!(d.message.contains("sleep is not available"), "{}", d.message);
    let d = common::host()
        .eval_source("repl", "sleep(10);", Some(dir.path().to_path_buf()), Default::default(), true)
        .unwrap_err();
    assert!(d.message.contains("sleep is not available"), "{}", d.message);
}

#[test]
fn a_set_cannot_read_the_clock() {
    // A set evaluates to the same rig every time (reloads, captures and replays rely
    // on it): Rhai's time functions are not part of the language.
    for line in ["let t = timestamp();", "let t = timestamp(); print(t.elapsed);"] {
        let d = common::eval_err(line);
        assert!(d.message.contains("timestamp"), "{line}: {}", d.message);
    }
}

/// Arguments of every type a built-in may take, at their extremes.
fn extreme_args(ty: &str) -> Vec<String> {
    let ty = ty.trim();
    let ints = ["0", "-1", "9223372036854775807", "-9223372036854775807", "65536", "100000000"];
    let floats = ["0.0", "-1.0", "1e300", "-1e300", "0.0/0.0", "1.0/0.0", "1e-300"];
    let strings = ["\"\"", "\"abc\"", "big"];
    if ty.contains("INT") || ty == "i64" || ty.contains("int") {
        ints.iter().map(|s| s.to_string()).collect()
    } else if ty.contains("FLOAT") || ty == "f64" || ty.contains("float") {
        floats.iter().map(|s| s.to_string()).collect()
    } else if ty.contains("String") || ty.contains("str") {
        strings.iter().map(|s| s.to_string()).collect()
    } else if ty.contains("char") {
        vec!["'x'".into(), "'\\0'".into()]
    } else if ty.contains("bool") {
        vec!["true".into()]
    } else if ty.contains("Blob") {
        vec!["blob(10)".into(), "blob()".into()]
    } else if ty.contains("Array") {
        vec!["[]".into(), "[1, 2.0, \"x\"]".into(), "list".into()]
    } else if ty.contains("Map") {
        vec!["#{}".into(), "#{a: 1}".into()]
    } else if ty.contains("FnPtr") {
        vec!["Fn(\"f\")".into()]
    } else {
        let mut all: Vec<String> = ints.iter().chain(&floats).chain(&strings).map(|s| s.to_string()).collect();
        all.push("[]".into());
        all
    }
}

#[test]
fn no_builtin_blocks_or_panics() {
    // Every function a set can call, with arguments of its types at their extremes:
    // each call returns (a value or an error) on a thread that is watched; a call
    // that blocked would leave the watch waiting, a panic fails the test.
    let sigs = common::host().builtin_signatures();
    assert!(sigs.len() > 200, "the built-ins are listed ({})", sigs.len());
    let mut calls = Vec::new();
    for sig in &sigs {
        let Some((name, rest)) = sig.split_once('(') else { continue };
        let name = name.trim().trim_start_matches("fn ").trim();
        if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') || name.is_empty() {
            continue; // operators and property accessors
        }
        let params: Vec<&str> = rest
            .split(')')
            .next()
            .unwrap_or("")
            .split(',')
            .map(|p| p.rsplit(':').next().unwrap_or("").trim())
            .filter(|p| !p.is_empty())
            .collect();
        // One argument at a time at each extreme, the others at their first value.
        let choices: Vec<Vec<String>> = params.iter().map(|p| extreme_args(p)).collect();
        let base: Vec<String> = choices.iter().map(|c| c[0].clone()).collect();
        calls.push(format!("{name}({})", base.join(", ")));
        for (i, c) in choices.iter().enumerate() {
            for v in c.iter().skip(1) {
                let mut args = base.clone();
                args[i] = v.clone();
                calls.push(format!("{name}({})", args.join(", ")));
            }
        }
    }
    assert!(calls.len() > 1000, "{} calls", calls.len());
    let (tx, rx) = std::sync::mpsc::channel();
    let total = calls.len();
    let current = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let now = current.clone();
    std::thread::spawn(move || {
        let prelude = "fn f(a) { a }\nlet big = \"x\"; while big.len() < 60000 { big += big; }\nlet list = []; list.pad(16000, 1);\n";
        for call in calls {
            *now.lock().unwrap() = call.clone();
            let text = format!("{prelude}let r = {call};\n");
            let outcome = std::panic::catch_unwind(|| {
                let _ = common::host().eval_source("builtin.rhai", &text, None, Default::default(), false);
            });
            tx.send((call, outcome.is_ok())).unwrap();
        }
    });
    for _ in 0..total {
        // Generous: each call takes milliseconds at most (the operation limit bounds
        // it); only a blocked call waits this long, even on a loaded machine.
        let Ok((call, ok)) = rx.recv_timeout(std::time::Duration::from_secs(30)) else {
            panic!("a built-in blocked: {}", current.lock().unwrap());
        };
        assert!(ok, "{call} panicked");
    }
}

#[test]
fn tiny_and_non_finite_pattern_numbers_are_refused_where_they_enter() {
    for (text, what) in [
        ("channel(1, \"piano\"); pattern(\"p\", 1, 1e-300, [[0, \"C4\", 100]]);", "1/64 of a beat"),
        ("channel(1, \"piano\"); pattern(\"p\", 1, 1e-6, [[0, \"C4\", 100]]);", "1/64 of a beat"),
        ("channel(1, \"piano\"); pattern(\"p\", 1, 0.0/0.0, [[0, \"C4\", 100]]);", "finite"),
        ("channel(1, \"piano\"); pattern(\"p\", 1, 4, [[0.0/0.0, \"C4\", 100]]);", "finite"),
        ("channel(1, \"piano\"); pattern(\"p\", 1, 4, [[0, \"C4\", 100, 1.0/0.0]]);", "finite"),
        ("channel(1, \"piano\"); pattern(\"p\", 1, 4, [[0, \"C4\", 100, 1e9]]);", "at most 1024"),
        ("define_pattern(\"x\", 1e-9, [[0, \"kick\", 100]]);", "1/64 of a beat"),
        ("tempo(0.0/0.0);", "finite"),
        ("print(note(1e30));", "outside the MIDI notes"),
        ("print(note(\"C1073741828\"));", "is not a note name"),
    ] {
        let d = common::eval_err(text);
        assert!(d.message.contains(what), "{text}: {}", d.message);
    }
    // Pattern data made elsewhere (not through a script) is checked when built.
    let mut set = common::set("channel(1, \"piano\"); pattern(\"p\", 1, 4, [[0, \"C4\", 100]]);");
    set.patterns.get_mut("p").unwrap().length_beats = 1e-300;
    assert!(jamrig::rig::build::build(&set, None).is_err());
    set.patterns.get_mut("p").unwrap().length_beats = f64::NAN;
    assert!(jamrig::rig::build::build(&set, None).is_err());
}

#[test]
fn a_transport_far_along_plays_no_patterns_and_does_not_hang() {
    // A Link timeline far beyond exact beats: each tick returns, hits are counted as
    // skipped, the output stays finite.
    use jamrig::engine::sync::ExternalTimeline;
    let set = common::set("channel(1, \"piano\"); clock(\"link\"); pattern(\"p\", 1, 4, [[0, \"C4\", 100, 0.5]]);");
    let mut r = jamrig::offline::Renderer::following_clock(&set, common::tables(SR)).unwrap();
    for beat in [1e17, 1e20, 1e300] {
        r.engine.follow_timeline(ExternalTimeline { frame: 0, beat, bpm: 999.0, playing: true });
        let before = r.stats().hits_overflow.load(Relaxed);
        let x = r.render(4096, 512);
        assert!(common::all_finite(&x));
        assert!(r.stats().hits_overflow.load(Relaxed) > before, "at beat {beat:e} the skipped hits are counted");
    }
}

#[test]
fn scripts_keep_a_bounded_print_log() {
    let ev = common::eval("let s = \"x\"; while s.len() < 60000 { s += s; }\nfor i in 0..5000 { print(s); }").unwrap();
    assert_eq!(ev.printed.len(), jamrig::script::MAX_PRINTED_LINES + 1);
    assert!(ev.printed.iter().all(|l| l.chars().count() <= jamrig::script::MAX_PRINTED_CHARS));
    assert!(ev.printed.last().unwrap().contains("not kept"));
}

/// Regression (issue 12, item 7): a built-in counts as one operation however large
/// its input, so a loop sorting a 16 000-item list (or copying a 32 000-character
/// text) stayed within the operation limit for hours. An evaluation now ends with
/// an error after `MAX_EVAL_SECONDS` whatever its operation count.
#[test]
fn costly_built_ins_in_a_loop_end_with_an_error() {
    for text in [
        "let a = []; for i in 0..16000 { a.push((i * 7919) % 16000); }\nloop { let b = a; b.sort(); }",
        "let s = \"x\"; while s.len() < 30000 { s += s; }\nloop { let t = s + \"y\"; let k = t.index_of(\"y\"); }",
    ] {
        let d = common::eval_err(text);
        assert!(d.message.contains("ran for more than"), "{}", d.message);
    }
    // A set that stays within the limits is not stopped by the clock.
    assert!(common::eval("let x = 0; for i in 0..100000 { x += i; }").is_ok());
}

#[test]
fn quadratic_script_work_is_refused() {
    let lets: String = (0..2000).map(|i| format!("let v{i} = {i};\n")).collect();
    let d = common::eval_err(&lets);
    assert!(d.message.contains("let and const declarations"), "{}", d.message);
    assert_eq!(d.line, jamrig::script::source::MAX_DECLARATIONS + 1);
    let d = common::eval_err("fn f(a) { a }\nlet p = Fn(\"f\");\nfor i in 0..80000 { p = p.curry(1); }");
    assert!(d.message.contains("curry is not available"), "{}", d.message);
    // A file past the size limit is refused before it is parsed.
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.rhai");
    std::fs::write(&big, "// padding\n".repeat(30_000)).unwrap();
    let d = common::host().eval_file(&big).unwrap_err();
    assert!(d.message.contains("more than the 131072 bytes a set file may have"), "{}", d.message);
}

// ---------------------------------------------------------------- memory ceilings

/// Runs jamrig with its address space capped at `mib` MiB (a `ulimit -v`): past
/// it an allocation fails and the process aborts, which fails the test.
fn jamrig_capped(args: &[&str], mib: u64) -> Output {
    use std::os::unix::process::CommandExt;
    let bytes = mib * 1024 * 1024;
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_jamrig"));
    cmd.args(args);
    // SAFETY: setrlimit is async-signal-safe; the closure touches nothing else.
    unsafe {
        cmd.pre_exec(move || {
            let lim = libc::rlimit { rlim_cur: bytes, rlim_max: bytes };
            if libc::setrlimit(libc::RLIMIT_AS, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.output().expect("jamrig runs")
}

#[test]
fn memory_stays_bounded_on_adversarial_inputs() {
    let dir = tempfile::tempdir().unwrap();
    // A long render streams: 300 s of f32 stereo (115 MB of samples) within 150 MiB
    // of address space (holding the samples, it needed 275 MB).
    let out = dir.path().join("long.wav");
    let o = jamrig_capped(&["render", "-o", s(&out), "--seconds", "300", "--format", "f32", "--tail", "0"], 150);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(std::fs::metadata(&out).unwrap().len(), 80 + 300 * 48000 * 8);
    std::fs::remove_file(&out).unwrap();
    // Printing 64 KB 30 000 times keeps only the first lines (it kept 3.8 GB).
    let set = dir.path().join("print.rhai");
    std::fs::write(&set, "let s = \"x\"; while s.len() < 60000 { s += s; }\nfor i in 0..30000 { print(s); }\n")
        .unwrap();
    let o = jamrig_capped(&["check", s(&set)], 150);
    assert!(o.status.success(), "{}", stderr(&o));
    // A map grown by index assignment stops at the evaluation's memory ceiling
    // (256 MiB) with an error, within 400 MiB.
    let set = dir.path().join("map.rhai");
    std::fs::write(
        &set,
        "let s = \"x\"; while s.len() < 30000 { s += s; }\nlet m = #{};\nfor i in 0..200000 { m[`k${i}`] = s + i; }\n",
    )
    .unwrap();
    fails_with(&jamrig_capped(&["check", s(&set)], 400), "more than 256 MiB of memory");
    // The largest MIDI file read, all notes, within 400 MiB.
    let mut t = Vec::new();
    while t.len() < jamrig::files::MAX_MIDI_BYTES as usize - 64 {
        vlq(1, &mut t);
        t.extend([0x90, 60, 100]);
    }
    vlq(0, &mut t);
    t.extend([0xFF, 0x2F, 0x00]);
    let mid = dir.path().join("dense.mid");
    std::fs::write(&mid, smf(0, 96, &[t])).unwrap();
    let o = jamrig_capped(&["render", "--midi", s(&mid), "-o", s(&out), "--seconds", "1", "--tail", "0"], 400);
    assert!(o.status.success(), "{}", stderr(&o));
}

// ---------------------------------------------------------------- captures

fn capture_lines(g: &mut Gen) -> Vec<String> {
    let set = r#"{"record":"set","serial":0,"main":"set.rhai","files":{"set.rhai":"channel(1, \"piano\");"}}"#;
    let mut lines = vec![
        format!(r#"{{"record":"header","format":"jamrig-capture","version":1,"sample_rate":{SR},"set":"set.rhai"}}"#),
        set.to_string(),
        r#"{"record":"adopt","serial":0,"frame":0}"#.to_string(),
    ];
    let frames = ["0", "100", "4800", "10000000000", "9223372036854775808", "18446744073709551615"];
    let nums = ["0", "-5", "120", "1e20", "1e300", "-1e300", "1.5"];
    let mut frame = 0u64;
    for _ in 0..g.below(6) {
        frame += g.below(3000) as u64;
        if g.below(2) == 0 {
            // A sound record.
            let line = match g.below(3) {
                0 => format!(r#"{{"record":"event","frame":{frame},"midi":[144,60,100]}}"#),
                1 => format!(r#"{{"record":"event","frame":{frame},"tempo":130}}"#),
                _ => format!(
                    r#"{{"record":"timeline","frame":{frame},"at":{frame},"beat":1.5,"bpm":120,"playing":true}}"#
                ),
            };
            lines.push(line);
            continue;
        }
        let line = match g.below(6) {
            0 => format!(r#"{{"record":"event","frame":{frame},"midi":[144,60,100]}}"#),
            1 => format!(r#"{{"record":"event","frame":{},"tempo":{}}}"#, g.pick(&frames), g.pick(&nums)),
            2 => format!(
                r#"{{"record":"timeline","frame":{frame},"at":{},"beat":{},"bpm":{},"playing":true}}"#,
                g.pick(&frames),
                g.pick(&nums),
                g.pick(&nums)
            ),
            3 => format!(r#"{{"record":"end","frame":{}}}"#, g.pick(&frames)),
            4 => format!(
                r#"{{"record":"set","serial":1,"main":"set.rhai","sync":"{}"}}"#,
                g.pick(&["link:inf", "link:1e300", "link:0", "link:4", "midi", "warp"])
            ),
            _ => format!(r#"{{"record":"lost","count":{}}}"#, g.pick(&frames)),
        };
        lines.push(line);
    }
    lines
}

#[test]
fn generated_damaged_captures_are_refused_or_replay_in_bounds() {
    let mut g = Gen(0x5EED_0003);
    let dir = tempfile::tempdir().unwrap();
    let (mut replayed, mut refused) = (0, 0);
    for case in 0..300 {
        let path = dir.path().join(format!("c{case}.jsonl"));
        std::fs::write(&path, capture_lines(&mut g).join("\n")).unwrap();
        match replay::read(&path) {
            Err(_) => refused += 1,
            Ok(log) => {
                assert!(
                    log.frames() as f64 <= (MAX_RENDER_SECONDS + 2.0) * SR as f64,
                    "case {case}: {} frames",
                    log.frames()
                );
                if log.frames() <= 3 * SR as u64 {
                    let mut out = Vec::new();
                    replay::replay(&log, |x| out.extend_from_slice(x)).unwrap_or_else(|e| panic!("case {case}: {e}"));
                    assert!(common::all_finite(&out));
                    replayed += 1;
                }
            }
        }
    }
    assert!(replayed > 20 && refused > 20, "both outcomes are exercised ({replayed} replayed, {refused} refused)");
}

#[test]
fn captures_with_far_frames_huge_beats_or_tempi_are_damaged() {
    let dir = tempfile::tempdir().unwrap();
    let head = [
        format!(r#"{{"record":"header","format":"jamrig-capture","version":1,"sample_rate":{SR},"set":"set.rhai"}}"#),
        r#"{"record":"set","serial":0,"main":"set.rhai","files":{"set.rhai":"channel(1, \"piano\");"}}"#.into(),
        r#"{"record":"adopt","serial":0,"frame":0}"#.into(),
    ];
    for (bad, what) in [
        (r#"{"record":"end","frame":18446744073709551615}"#, "past the longest render"),
        (r#"{"record":"end","frame":9223372036854775808}"#, "past the longest render"),
        (r#"{"record":"end","frame":10000000000}"#, "past the longest render"),
        (r#"{"record":"timeline","frame":0,"at":0,"beat":1e20,"bpm":120,"playing":true}"#, "out of range"),
        (r#"{"record":"timeline","frame":0,"at":0,"beat":0,"bpm":1e300,"playing":true}"#, "out of range"),
        (r#"{"record":"set","serial":1,"main":"set.rhai","sync":"link:inf"}"#, "unknown clock"),
        (r#"{"record":"event","frame":0,"tempo":0.0001}"#, "outside 1..999"),
    ] {
        let path = dir.path().join("c.jsonl");
        std::fs::write(&path, format!("{}\n{bad}\n", head.join("\n"))).unwrap();
        let e = replay::read(&path).unwrap_err().to_string();
        assert!(e.contains(what), "{bad}: {e}");
    }
}

#[test]
fn replay_leaves_no_scratch_folder() {
    // Captured sets are evaluated from memory: nothing is written to the
    // temporary folder, so a killed replay leaves nothing behind either.
    let dir = tempfile::tempdir().unwrap();
    let tmp = dir.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let cap = dir.path().join("capture.jsonl");
    std::fs::write(
        &cap,
        [
            format!(r#"{{"record":"header","format":"jamrig-capture","version":1,"sample_rate":{SR},"set":"set.rhai"}}"#),
            r#"{"record":"set","serial":0,"main":"set.rhai","files":{"set.rhai":"import \"m\" as m;\nchannel(1, m::INST);","m.rhai":"export const INST = \"piano\";"}}"#.into(),
            r#"{"record":"adopt","serial":0,"frame":0}"#.into(),
            r#"{"record":"event","frame":100,"midi":[144,60,100]}"#.into(),
            r#"{"record":"end","frame":24000}"#.into(),
        ]
        .join("\n"),
    )
    .unwrap();
    let out = dir.path().join("out.wav");
    let o = Command::new(env!("CARGO_BIN_EXE_jamrig"))
        .args(["render", "--replay", s(&cap), "-o", s(&out)])
        .env("TMPDIR", &tmp)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(names(&tmp).is_empty(), "the temporary folder holds {:?}", names(&tmp));
}

// ---------------------------------------------------------------- events at one instant

fn renders(set: &str, events: Vec<Event>, seconds: f64) -> (Vec<f32>, jamrig::offline::Renderer) {
    let mut r = common::renderer(set, SR);
    r.add_events(events);
    let x = r.render((seconds * SR as f64) as usize, 512);
    (x, r)
}

#[test]
fn a_note_after_thousands_of_ccs_at_the_same_instant_sounds() {
    // Controllers 20..59 (no pedal, volume or all-notes-off among them).
    let mut evs: Vec<Event> = (0..3000).map(|i| common::cc(0, 0, 20 + (i % 40) as u8, (i % 128) as u8)).collect();
    evs.push(common::note_on(0, 0, 69, 100));
    let (x, r) = renders("channel(1, \"sine\");", evs, 0.5);
    let f = common::peak_freq(&common::mono(&x[x.len() / 2..]), SR as f64, 200.0, 2000.0);
    assert!((f - 440.0).abs() < 5.0, "the note sounds at 440 Hz, found {f}");
    assert_eq!(r.stats().events_overflow.load(Relaxed), 0, "nothing dropped offline");
}

#[test]
fn a_note_off_after_thousands_of_ccs_at_the_same_instant_ends_the_note() {
    let mut evs = vec![common::note_on(0, 0, 69, 100)];
    evs.extend((0..4095).map(|i| common::cc(SR as u64 / 4, 0, 20 + (i % 40) as u8, (i % 128) as u8)));
    evs.push(common::note_off(SR as u64 / 4, 0, 69));
    let (x, r) = renders("channel(1, \"sine\", #{ release: 0.05 });", evs, 1.0);
    let tail = &x[(0.8 * SR as f64) as usize * 2..];
    assert!(common::peak(tail) < 1e-4, "the note has ended ({})", common::peak(tail));
    assert_eq!(r.stats().events_overflow.load(Relaxed), 0);
}

#[test]
fn hundreds_of_thousands_of_events_at_once_are_all_played_not_silence() {
    let mut evs: Vec<Event> = (0..200_000).map(|i| common::cc(0, 0, 20 + (i % 50) as u8, (i % 128) as u8)).collect();
    evs.push(common::note_on(0, 0, 69, 100));
    let (x, r) = renders("channel(1, \"sine\");", evs, 4.0);
    assert_eq!(r.stats().events_overflow.load(Relaxed), 0);
    assert_eq!(r.events_waiting(), 0, "every event was handed over");
    assert!(common::rms(&x[x.len() / 2..]) > 0.05, "the note sounds once the burst is played");
    let warnings = jamrig::offline::job::engine_warnings(r.stats());
    assert!(warnings.iter().any(|w| w.contains("played in the ticks after it")), "{warnings:?}");
}

#[test]
fn live_overflow_keeps_note_offs_and_the_newest_controller_values() {
    use jamrig::engine::EVENT_QUEUE_CAP;
    let mut r = common::renderer("channel(1, \"sine\", #{ release: 0.02 });", SR);
    // A note is held; then far more events wait than the engine holds.
    r.engine.schedule(common::note_on(0, 0, 69, 100));
    let x = r.render(4800, 512);
    assert!(common::rms(&x[4000..]) > 0.05);
    let later = 48_000;
    for i in 0..EVENT_QUEUE_CAP as u64 {
        r.engine.schedule(common::note_on(later + i % 64, 1, (i % 128) as u8, 100));
    }
    for v in 0..100u8 {
        r.engine.schedule(common::cc(later, 0, 7, v)); // volume: only the newest matters
    }
    r.engine.schedule(common::note_off(later, 0, 69));
    let dropped = r.stats().events_overflow.load(Relaxed);
    assert_eq!(dropped, 101, "one event made way for each that came after the queue was full");
    let x = r.render(SR as usize * 2, 512);
    let end = &x[x.len() - 4800..];
    // The note-off was kept: channel 1's note has ended (channel 2 is not declared).
    assert!(common::peak(end) < 1e-4, "the held note ended ({})", common::peak(end));
    let vol = r.stats().override_of(0, jamrig::params::Param::Volume).unwrap();
    assert!((vol - 99.0 / 127.0).abs() < 1e-6, "the newest volume value was kept ({vol})");
}

/// Regression (issue 12, item 5, the live path): MIDI input reaches the engine
/// through a bounded queue that MIDI, keyboard and control threads fill between
/// two ticks. A flood that filled it refused the newest events whatever they
/// were, note-offs included, so a note could hang. The queue now keeps a release
/// and the newest value of each controller when it has no room, and plays them
/// after what it queued; what it refused is counted.
#[test]
fn a_flood_through_the_live_event_queue_keeps_note_offs_and_the_newest_controller_values() {
    use jamrig::engine::EVENT_QUEUE_CAP;
    let mut r = common::renderer("channel(1, \"sine\", #{ release: 0.02 }); channel(2, \"sine\");", SR);
    let sender = r.controller.event_sender();
    assert!(sender.send(common::note_on(0, 0, 69, 100)));
    let x = r.render(4800, 512);
    assert!(common::rms(&x[4000..]) > 0.05, "the held note sounds");
    // Between two ticks: more events than the queue holds, then the note-off,
    // the pedal lifted and a volume move, which find it full.
    let now = 4800;
    let mut refused = 0;
    for i in 0..EVENT_QUEUE_CAP as u64 + 500 {
        if !sender.send(common::cc(now + i % 64, 1, 74, (i % 128) as u8)) {
            refused += 1;
        }
    }
    for v in 0..100u8 {
        assert!(!sender.send(common::cc(now, 0, 7, v)), "the queue is full");
    }
    assert!(!sender.send(common::note_off(now, 0, 69)), "the queue is full");
    assert_eq!(refused, 500);
    // Lost at the queue: the older values of CC 74 and CC 7 (their newest are
    // kept, and so is the note-off).
    assert_eq!(r.stats().events_dropped.load(Relaxed), 499 + 99, "what the queue lost is counted");
    let x = r.render(SR as usize, 512);
    let end = &x[x.len() - 4800..];
    assert!(
        common::peak(end) < 1e-4,
        "the note ended although its note-off found the queue full ({})",
        common::peak(end)
    );
    let vol = r.stats().override_of(0, jamrig::params::Param::Volume).unwrap();
    assert!((vol - 99.0 / 127.0).abs() < 1e-6, "the newest volume value was kept ({vol})");
    let warnings = jamrig::offline::job::engine_warnings(r.stats());
    // The engine's own list (4096 events) was full too: the note-off took the
    // place of a CC 74 value, and the kept CC 74 value that of an older one.
    let lost = r.stats().events_dropped.load(Relaxed) + r.stats().events_overflow.load(Relaxed);
    assert_eq!(lost, 600, "what was lost is counted");
    assert!(warnings.iter().any(|w| w.starts_with("600 events were dropped")), "the count is reported: {warnings:?}");
}

// ---------------------------------------------------------------- files

#[test]
fn output_never_replaces_an_input_or_a_device() {
    let dir = tempfile::tempdir().unwrap();
    let set = dir.path().join("set.rhai");
    let text = "channel(1, \"piano\");";
    std::fs::write(&set, text).unwrap();
    let module = dir.path().join("m.rhai");
    std::fs::write(&module, "export const X = 1;").unwrap();
    let uses = dir.path().join("uses.rhai");
    std::fs::write(&uses, "import \"m\" as m; channel(1, \"piano\");").unwrap();
    let mid = dir.path().join("song.mid");
    std::fs::write(&mid, huge_gap_midi()).unwrap();
    let fails = |args: &[&str], what: &str| fails_with(&jamrig(args), what);
    fails(&["render", s(&set), "-o", s(&set)], "is also an input");
    fails(&["render", s(&uses), "-o", s(&module)], "is not a WAV file");
    fails(&["render", s(&set), "--midi", s(&mid), "-o", s(&mid)], "is also an input");
    let link = dir.path().join("link.wav");
    std::os::unix::fs::symlink(&set, &link).unwrap();
    fails(&["render", s(&set), "-o", s(&link)], "is also an input");
    fails(&["render", s(&set), "-o", "/dev/null"], "not a regular file (a device)");
    let fifo = dir.path().join("fifo");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    fails(&["render", s(&set), "-o", s(&fifo)], "not a regular file (a FIFO)");
    fails(&["audition", "piano", "-o", s(&fifo)], "not a regular file (a FIFO)");
    fails(&["audition", "piano", "-o", s(&set)], "is not a WAV file");
    assert_eq!(std::fs::read_to_string(&set).unwrap(), text, "the set is untouched");
    // A capture: the replay's output may not be its capture file.
    let cap = dir.path().join("capture.jsonl");
    std::fs::write(&cap, "{}").unwrap();
    fails(&["render", "--replay", s(&cap), "-o", s(&cap)], "is also an input");
    assert_eq!(std::fs::read_to_string(&cap).unwrap(), "{}");
}

#[test]
fn devices_and_fifos_as_inputs_are_refused_without_reading_them() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let out = dir.path().join("o.wav");
    let set = dir.path().join("set.rhai");
    std::fs::write(&set, "channel(1, \"piano\");").unwrap();
    for (args, what) in [
        (vec!["check", "/dev/zero"], "not a regular file (a device)"),
        (vec!["check", s(&fifo)], "not a regular file (a FIFO)"),
        (vec!["render", s(&set), "--midi", "/dev/zero", "-o", s(&out)], "not a regular file (a device)"),
        (vec!["render", s(&set), "--midi", s(&fifo), "-o", s(&out)], "not a regular file (a FIFO)"),
        (vec!["render", "--replay", "/dev/zero", "-o", s(&out)], "not a regular file (a device)"),
        (vec!["render", "--replay", s(&fifo), "-o", s(&out)], "not a regular file (a FIFO)"),
    ] {
        fails_with(&jamrig(&args), what);
    }
}

#[test]
fn imports_do_not_follow_links_out_of_the_sets_folder() {
    let dir = tempfile::tempdir().unwrap();
    let outside = dir.path().join("secret.txt");
    std::fs::write(&outside, "the first line of a private file\n").unwrap();
    let set_dir = dir.path().join("set");
    std::fs::create_dir(&set_dir).unwrap();
    std::os::unix::fs::symlink(&outside, set_dir.join("leak.rhai")).unwrap();
    std::fs::write(set_dir.join("set.rhai"), "import \"leak\" as l;\n").unwrap();
    let o = jamrig(&["check", s(&set_dir.join("set.rhai"))]);
    fails_with(&o, "leads outside the set's folder");
    assert!(!stderr(&o).contains("private file"), "the file's text is not shown: {}", stderr(&o));
    // A link to a folder outside is the same.
    std::fs::create_dir(dir.path().join("lib")).unwrap();
    std::fs::write(dir.path().join("lib/m.rhai"), "export const X = 1;").unwrap();
    std::os::unix::fs::symlink(dir.path().join("lib"), set_dir.join("lib")).unwrap();
    std::fs::write(set_dir.join("set2.rhai"), "import \"lib/m\" as m;\n").unwrap();
    fails_with(&jamrig(&["check", s(&set_dir.join("set2.rhai"))]), "leads outside the set's folder");
    // A link inside the folder is fine.
    std::fs::write(set_dir.join("real.rhai"), "export const X = 1;").unwrap();
    std::os::unix::fs::symlink(set_dir.join("real.rhai"), set_dir.join("alias.rhai")).unwrap();
    std::fs::write(set_dir.join("set3.rhai"), "import \"alias\" as a;\nchannel(1, \"piano\");\n").unwrap();
    let o = jamrig(&["check", s(&set_dir.join("set3.rhai"))]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn an_interrupted_render_leaves_no_partial_file() {
    for (sig, signal) in [("TERM", libc::SIGTERM), ("INT", libc::SIGINT)] {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out.wav");
        let mut child = Command::new(env!("CARGO_BIN_EXE_jamrig"))
            .args(["render", "-o", s(&out), "--seconds", "30000"])
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Wait for the partial file to appear (the render has started writing).
        let started = (0..600).any(|_| {
            std::thread::sleep(std::time::Duration::from_millis(50));
            names(dir.path()).iter().any(|n| n.contains(".partial"))
        });
        assert!(started, "the render started: {:?}", names(dir.path()));
        // SAFETY: signals our own child, which has not been waited for yet.
        assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, signal) }, 0);
        let status = child.wait().unwrap();
        assert!(!status.success());
        let mut err = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
        assert!(err.contains("interrupted"), "{sig}: {err}");
        assert!(names(dir.path()).is_empty(), "{sig}: left {:?}", names(dir.path()));
    }
}

// ---------------------------------------------------------------- diagnostics

#[test]
fn rough_edges_of_set_text_get_located_errors() {
    // An unterminated block comment.
    let d = common::eval_err("channel(1, \"piano\");\n/* never closed\nchannel(2, \"organ\");\n");
    assert_eq!((d.line, d.column), (2, 1));
    assert!(d.message.contains("never closed"), "{}", d.message);
    // Bytes that are not UTF-8.
    let dir = tempfile::tempdir().unwrap();
    // A module whose unclosed comment is past line 65535 (Rhai's positions end there).
    std::fs::write(dir.path().join("far.rhai"), format!("{}/* open", "\n".repeat(70_000))).unwrap();
    std::fs::write(dir.path().join("main.rhai"), "import \"far\" as f;\n").unwrap();
    let d = common::host().eval_file(&dir.path().join("main.rhai")).unwrap_err();
    assert!(d.message.contains("never closed"), "{}", d.message);
    let bad = dir.path().join("bad.rhai");
    std::fs::write(&bad, b"tempo(120);\nlet x = \"\xff\xfe\";\n").unwrap();
    let o = jamrig(&["check", s(&bad)]);
    fails_with(&o, "bad.rhai:2:10");
    assert!(stderr(&o).contains("not UTF-8"));
    // A very long line is shown in part around the caret.
    let long = dir.path().join("long.rhai");
    std::fs::write(&long, format!("tempo(120);\nlet x = {} y;\n", "1 + ".repeat(25_000))).unwrap();
    let o = jamrig(&["check", s(&long)]);
    assert!(!o.status.success());
    assert!(stderr(&o).len() < 2000, "{} bytes of error", stderr(&o).len());
    assert!(stderr(&o).contains("long.rhai:2:"), "{}", stderr(&o));
}

// ---------------------------------------------------------------- the end of a render

fn wav(path: &Path) -> (u32, Vec<f32>) {
    let mut r = hound::WavReader::open(path).unwrap();
    let rate = r.spec().sample_rate;
    (rate, r.samples::<i16>().map(|x| x.unwrap() as f32 / 32767.0).collect())
}

#[test]
fn a_render_rings_out_after_the_last_bar_until_silent() {
    let dir = tempfile::tempdir().unwrap();
    let set = dir.path().join("set.rhai");
    std::fs::write(
        &set,
        "tempo(120);\nchannel(1, \"saw\", #{ sustain: 1.0, release: 1.5, reverb: 0.5 });\npattern(\"p\", 1, 4, [[0, \"A3\", 100, 4]]);\n",
    )
    .unwrap();
    let out = dir.path().join("out.wav");
    let o = jamrig(&["render", s(&set), "-o", s(&out), "--bars", "1"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let (rate, x) = wav(&out);
    let frames = x.len() / 2;
    let bar = 2 * rate as usize;
    assert!(frames > bar + rate as usize, "the release rings past the bar ({frames} frames)");
    assert!(frames < bar + 30 * rate as usize, "and stops once silent ({frames} frames)");
    let last = &x[x.len() - rate as usize / 4 * 2..];
    assert!(common::peak(last) < 1e-4, "the last quarter second is below -80 dBFS");
    assert!(common::peak(&x[2 * bar..2 * bar + rate as usize]) > 0.01, "the second after the bar still sounds");
    // --tail caps the ring-out; --tail 0 cuts exactly, ending without a click.
    let o = jamrig(&["render", s(&set), "-o", s(&out), "--bars", "1", "--tail", "0.5"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(wav(&out).1.len() / 2, bar + rate as usize / 2);
    let o = jamrig(&["render", s(&set), "-o", s(&out), "--bars", "1", "--tail", "0"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let (_, x) = wav(&out);
    assert_eq!(x.len() / 2, bar, "exactly one bar");
    assert_eq!(x[x.len() - 2..], [0.0, 0.0], "the cut ends at zero");
    // The 5 ms before the cut fade out (no step to silence at the cut).
    let before = common::peak(&x[x.len() - 2 * 2000..x.len() - 2 * 240]);
    let last = common::peak(&x[x.len() - 2 * 20..]);
    assert!(last < 0.15 * before, "the cut fades: {last} at the end, {before} before");
}

// ---------------------------------------------------------------- MIDI files and rigs

fn song() -> Vec<u8> {
    // Program 40 (violin) on channel 1, then A4 for half a second; division 480.
    let mut t = Vec::new();
    vlq(0, &mut t);
    t.extend([0xC0, 40]);
    vlq(0, &mut t);
    t.extend([0x90, 69, 100]);
    vlq(480, &mut t);
    t.extend([0x80, 69, 0]);
    vlq(0, &mut t);
    t.extend([0xFF, 0x2F, 0x00]);
    smf(0, 480, &[t])
}

#[test]
fn a_midi_file_without_a_set_plays_through_the_general_midi_rig_without_patterns() {
    let dir = tempfile::tempdir().unwrap();
    let mid = dir.path().join("song.mid");
    std::fs::write(&mid, song()).unwrap();
    let out = dir.path().join("out.wav");
    let o = jamrig(&["render", "--midi", s(&mid), "-o", s(&out), "--seconds", "2", "--tail", "0", "--no-soundfont"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("General MIDI rig: jamrig's own synthesized instruments"), "{}", stderr(&o));
    let (rate, x) = wav(&out);
    let note = &x[..rate as usize];
    let f = common::peak_freq(&common::mono(note), rate as f64, 200.0, 2000.0);
    assert!((f - 440.0).abs() < 8.0, "A4 sounds ({f} Hz)");
    // No drum patterns (the example set's) over the file: the second half is quiet.
    assert!(common::peak(&x[3 * rate as usize..]) < 0.01, "nothing plays after the note");
    // The choice of rig is in one place.
    use jamrig::offline::job::{FontChoice, RigChoice};
    let synth = FontChoice::Synthesized;
    assert_eq!(RigChoice::for_job(None, Some(&mid), &synth), RigChoice::GeneralMidi { searched: false });
    assert_eq!(RigChoice::for_job(None, None, &synth), RigChoice::Example);
    let p = PathBuf::from("x.rhai");
    assert_eq!(RigChoice::for_job(Some(&p), Some(&mid), &synth), RigChoice::Set(p.clone()));
    let f = FontChoice::Named(PathBuf::from("gm.sf2"));
    assert_eq!(RigChoice::for_job(Some(&p), Some(&mid), &f), RigChoice::Set(p.clone()));
}

/// The small General MIDI font scripts/deps.sh installs.
const GM_FONT: &str = "/usr/share/sounds/sf2/TimGM6mb.sf2";

#[test]
fn a_midi_file_without_a_set_plays_through_a_general_midi_soundfont_and_says_which() {
    assert!(Path::new(GM_FONT).is_file(), "{GM_FONT} is missing: scripts/deps.sh installs timgm6mb-soundfont");
    let dir = tempfile::tempdir().unwrap();
    let mid = dir.path().join("song.mid");
    std::fs::write(&mid, song()).unwrap();
    let out = dir.path().join("out.wav");
    let args = ["render", "--midi", s(&mid), "-o", s(&out), "--seconds", "1", "--tail", "0"];
    // Named on the command line.
    let o = jamrig(&[&args[..], &["--soundfont", GM_FONT]].concat());
    assert!(o.status.success(), "{}", stderr(&o));
    let line = format!("General MIDI rig: SoundFont {GM_FONT} (named with --soundfont)");
    assert_eq!(stderr(&o).lines().filter(|l| l.starts_with("General MIDI rig")).collect::<Vec<_>>(), [line.as_str()]);
    let (rate, x) = wav(&out);
    let f = common::peak_freq(&common::mono(&x[..rate as usize]), rate as f64, 200.0, 2000.0);
    assert!((f - 440.0).abs() < 8.0, "the font's violin plays A4 ({f} Hz)");
    // Named by the environment (a copy, so the line shows which).
    let copy = dir.path().join("copy.sf2");
    std::fs::copy(GM_FONT, &copy).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_jamrig")).args(args).env("JAMRIG_SOUNDFONT", &copy).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains(&format!("SoundFont {} (from $JAMRIG_SOUNDFONT)", copy.display())), "{}", stderr(&o));
    // A file that is not a font: one clear line, nothing written.
    std::fs::remove_file(&out).unwrap();
    let o = jamrig(&[&args[..], &["--soundfont", s(&mid)]].concat());
    assert!(!o.status.success());
    assert!(stderr(&o).contains("is not a SoundFont") && stderr(&o).contains("--soundfont"), "{}", stderr(&o));
    assert!(!out.exists());
    // --soundfont is for the General MIDI rig: a set names its own fonts.
    let set = dir.path().join("set.rhai");
    std::fs::write(&set, "channel(1, \"sine\");").unwrap();
    let o = jamrig(&["render", s(&set), "--midi", s(&mid), "-o", s(&out), "--soundfont", GM_FONT]);
    assert!(!o.status.success(), "{}", stderr(&o));
}

#[test]
fn with_a_midi_file_a_sets_patterns_play_only_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let mid = dir.path().join("song.mid");
    std::fs::write(&mid, song()).unwrap();
    let set = dir.path().join("set.rhai");
    std::fs::write(&set, "channel(1, \"sine\");\ndrums(10);\npattern(\"beat\", 10, \"rock\");\n").unwrap();
    let out = dir.path().join("out.wav");
    let render = |extra: &[&str]| {
        let mut args = vec!["render", s(&set), "--midi", s(&mid), "-o", s(&out), "--seconds", "2", "--tail", "0"];
        args.extend(extra);
        let o = jamrig(&args);
        assert!(o.status.success(), "{}", stderr(&o));
        let (rate, x) = wav(&out);
        common::peak(&x[3 * rate as usize..])
    };
    assert!(render(&[]) < 0.01, "no drums without --patterns");
    assert!(render(&["--patterns"]) > 0.05, "drums with --patterns");
}

// ---------------------------------------------------------------- quiet tails

#[test]
fn a_fading_delay_feedback_tail_goes_idle() {
    // Echoes every 0.25 s, each half the one before: below -100 dB after about
    // 4 s; the channel then stops processing and its output is exactly zero
    // (values in the delay line no longer decay through the denormal range).
    let (x, r) = renders(
        "channel(1, \"sine\", #{ envelope: \"staccato\", delay: 0.8, delay_time: 0.25, delay_feedback: 0.5, highpass: 40.0 });",
        vec![common::note_on(0, 0, 69, 100), common::note_off(2400, 0, 69)],
        8.0,
    );
    let echo = &x[2 * SR as usize..2 * (SR as usize + SR as usize / 4)];
    assert!(common::peak(echo) > 1e-3, "echoes still sound after 1 s");
    let last = &x[x.len() - 2 * SR as usize..];
    assert!(last.iter().all(|v| *v == 0.0), "the channel idles once the echoes are inaudible");
    assert_eq!(r.stats().faults.load(Relaxed), 0);
}
