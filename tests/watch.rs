//! The set watcher reacts once per save, whatever the editor does: writing in place,
//! writing a new file and renaming it over (vim, VS Code, JetBrains), deleting and
//! recreating, truncating then writing; and never to a half-written file.

use jamrig::live::watch::watch;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

/// Events closer together than this are one save (the control loop merges them).
const SETTLE: Duration = Duration::from_millis(5);

fn setup() -> (tempfile::TempDir, PathBuf, Receiver<(Instant, PathBuf)>, jamrig::live::watch::SetWatcher) {
    let dir = tempfile::tempdir().unwrap();
    let set = dir.path().join("set.rhai");
    std::fs::write(&set, "tempo(120);\n").unwrap();
    let (tx, rx) = channel();
    let w = watch(std::slice::from_ref(&set), move |p| {
        let _ = tx.send((Instant::now(), p));
    })
    .unwrap();
    std::thread::sleep(Duration::from_millis(50));
    (dir, set, rx, w)
}

/// Waits for events, then counts bursts (groups separated by more than SETTLE).
fn bursts(rx: &Receiver<(Instant, PathBuf)>, wait: Duration) -> Vec<Vec<PathBuf>> {
    let deadline = Instant::now() + wait;
    let mut events = Vec::new();
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(e) => events.push(e),
            Err(_) => break,
        }
    }
    let mut out: Vec<Vec<PathBuf>> = Vec::new();
    let mut last: Option<Instant> = None;
    for (t, p) in events {
        if last.is_none_or(|l| t.duration_since(l) > SETTLE) {
            out.push(Vec::new());
        }
        out.last_mut().unwrap().push(p);
        last = Some(t);
    }
    out
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap()
}

#[test]
fn in_place_write_is_one_save() {
    let (_d, set, rx, _w) = setup();
    std::fs::write(&set, "tempo(121);\n").unwrap();
    let b = bursts(&rx, Duration::from_millis(300));
    assert_eq!(b.len(), 1, "{b:?}");
    assert!(b[0].iter().all(|p| *p == absolute(&set)));
}

#[test]
fn rename_over_is_one_save() {
    let (d, set, rx, _w) = setup();
    let tmp = d.path().join(".set.rhai.swp");
    std::fs::write(&tmp, "tempo(122);\n").unwrap();
    std::fs::rename(&tmp, &set).unwrap();
    let b = bursts(&rx, Duration::from_millis(300));
    assert_eq!(b.len(), 1, "{b:?}");
    assert_eq!(std::fs::read_to_string(&set).unwrap(), "tempo(122);\n");
}

#[test]
fn delete_and_recreate_is_one_save() {
    let (_d, set, rx, _w) = setup();
    std::fs::remove_file(&set).unwrap();
    std::thread::sleep(Duration::from_millis(30));
    std::fs::write(&set, "tempo(123);\n").unwrap();
    let b = bursts(&rx, Duration::from_millis(300));
    assert_eq!(b.len(), 1, "{b:?}");
}

#[test]
fn truncate_then_write_reports_each_closed_state() {
    // Truncating and closing leaves an empty file (the control loop keeps playing the
    // previous set for an empty file); the write that follows is the real save.
    let (_d, set, rx, _w) = setup();
    std::fs::File::create(&set).unwrap();
    std::thread::sleep(Duration::from_millis(40));
    std::fs::write(&set, "tempo(124);\n").unwrap();
    let b = bursts(&rx, Duration::from_millis(300));
    assert_eq!(b.len(), 2, "{b:?}");
}

#[test]
fn a_half_written_file_is_never_reported() {
    let (_d, set, rx, _w) = setup();
    let mut f = std::fs::OpenOptions::new().write(true).truncate(true).open(&set).unwrap();
    f.write_all(b"channel(1, \"org").unwrap();
    f.flush().unwrap();
    let early = bursts(&rx, Duration::from_millis(150));
    assert!(early.is_empty(), "reported before the file was closed: {early:?}");
    f.write_all(b"an\");\n").unwrap();
    drop(f);
    let b = bursts(&rx, Duration::from_millis(300));
    assert_eq!(b.len(), 1, "{b:?}");
}

#[test]
fn other_files_in_the_folder_are_ignored() {
    let (d, _set, rx, _w) = setup();
    std::fs::write(d.path().join("notes.txt"), "x").unwrap();
    std::fs::write(d.path().join("other.rhai"), "tempo(90);").unwrap();
    assert!(bursts(&rx, Duration::from_millis(200)).is_empty());
}

#[test]
fn imported_modules_are_watched_too() {
    let dir = tempfile::tempdir().unwrap();
    let set = dir.path().join("set.rhai");
    let module = dir.path().join("bass.rhai");
    std::fs::write(&set, "import \"bass\" as b;\n").unwrap();
    std::fs::write(&module, "fn line() { [] }\n").unwrap();
    let (tx, rx) = channel();
    let _w = watch(&[set.clone(), module.clone()], move |p| {
        let _ = tx.send((Instant::now(), p));
    })
    .unwrap();
    std::thread::sleep(Duration::from_millis(50));
    std::fs::write(&module, "fn line() { [[0.0, \"C2\", 100]] }\n").unwrap();
    let b = bursts(&rx, Duration::from_millis(300));
    assert_eq!(b.len(), 1, "{b:?}");
    assert!(b[0].iter().all(|p| *p == absolute(&module)));
}

#[test]
fn a_sample_folder_reports_files_coming_going_and_changing() {
    let dir = tempfile::tempdir().unwrap();
    let bank = dir.path().join("bd");
    std::fs::create_dir(&bank).unwrap();
    std::fs::write(bank.join("a.wav"), b"x").unwrap();
    let (tx, rx) = channel();
    let _w = watch(std::slice::from_ref(&bank), move |p| {
        let _ = tx.send((Instant::now(), p));
    })
    .unwrap();
    std::thread::sleep(Duration::from_millis(50));
    let folder = absolute(&bank);
    std::fs::write(bank.join("b.wav"), b"new").unwrap();
    let b = bursts(&rx, Duration::from_millis(300));
    assert!(!b.is_empty() && b.iter().flatten().all(|p| *p == folder), "added: {b:?}");
    std::fs::remove_file(bank.join("a.wav")).unwrap();
    let b = bursts(&rx, Duration::from_millis(300));
    assert!(!b.is_empty() && b.iter().flatten().all(|p| *p == folder), "removed: {b:?}");
    std::fs::write(bank.join("b.wav"), b"changed").unwrap();
    let b = bursts(&rx, Duration::from_millis(300));
    assert!(!b.is_empty() && b.iter().flatten().all(|p| *p == folder), "rewritten: {b:?}");
}
