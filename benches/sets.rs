//! How long `jamrig check` takes on the largest and costliest sets the limits let
//! through (issue: a set must evaluate in well under a second or fail with an
//! error): generated worst cases of at most 128 KiB, and the example sets. Each
//! is checked by the release binary, best of 3 wall times, start-up included.
//!
//! Run with `cargo bench --bench sets`; BENCHMARKS.md records the figures.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// The largest set file jamrig reads (`files::MAX_SET_BYTES`).
const MAX_SET_BYTES: usize = 128 * 1024;

fn binary() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let status = Command::new("cargo").args(["build", "--release", "--quiet"]).current_dir(root).status();
    assert!(status.is_ok_and(|s| s.success()), "cargo build --release failed");
    root.join("target/release/jamrig")
}

/// Fills a set up to `MAX_SET_BYTES` with `line(i)` after `head`.
fn fill(head: &str, line: impl Fn(usize) -> String) -> String {
    let mut s = head.to_string();
    for i in 0.. {
        let l = line(i);
        if s.len() + l.len() > MAX_SET_BYTES {
            break;
        }
        s.push_str(&l);
    }
    s
}

fn cases() -> Vec<(&'static str, String)> {
    let sum = |n: usize| (0..n).map(|k| format!("v{k}")).collect::<Vec<_>>().join(" + ");
    vec![
        (
            "1000 lets, then sums of 20 names to 128 KiB",
            fill(&(0..1000).map(|i| format!("let v{i} = {i};\n")).chain((0..20).map(|k| format!("let s{k} = 0;\n"))).collect::<String>(), |i| {
                format!("s{} = {};\n", i % 20, sum(20))
            }),
        ),
        ("patterns with 4000 hits in one 128 KiB literal", {
            let mut s = String::from("channel(1, \"piano\");\npattern(\"p\", 1, 64.0, [\n");
            s.push_str(&fill("", |i| format!("[{}.0, \"C{}\", 90, 0.25],\n", (i % 256) / 4, 2 + i % 5)));
            s.truncate(MAX_SET_BYTES - 8);
            let cut = s.rfind("],\n").unwrap() + 3;
            s.truncate(cut);
            s.push_str("]);\n");
            s
        }),
        (
            "a loop that runs into the operation limit",
            "let x = 0; for i in 0..100000000 { x += i % 7; }\n".to_string(),
        ),
        (
            "lists of 16 000 items sorted until the operation limit",
            "let a = []; for i in 0..16000 { a.push((i * 7919) % 16000); }\nloop { let b = a; b.sort(); }\n".to_string(),
        ),
        (
            "64 KiB texts built and searched until a limit",
            "let s = \"x\"; while s.len() < 30000 { s += s; }\nloop { let t = s + \"y\"; let k = t.index_of(\"y\"); }\n"
                .to_string(),
        ),
        (
            "16 mini-notation patterns of 4 KiB each",
            fill("drums(10);\n", |i| {
                let words: Vec<&str> = ["bd", "sn", "hh*2", "[~ cp]", "<oh hh>", "bd(3,8)"].to_vec();
                let text: String = (0..500).map(|k| words[(k + i) % words.len()]).collect::<Vec<_>>().join(" ");
                format!("pattern(\"m{i}\", 10, mini(\"{text}\"));\n")
            }),
        ),
    ]
}

fn time_check(jamrig: &Path, file: &Path) -> (f64, String) {
    let mut best = f64::MAX;
    let mut outcome = String::new();
    for _ in 0..3 {
        let t0 = Instant::now();
        let out = Command::new(jamrig).arg("check").arg(file).output().expect("jamrig runs");
        best = best.min(t0.elapsed().as_secs_f64());
        let text = String::from_utf8_lossy(if out.status.success() { &out.stdout } else { &out.stderr }).to_string();
        outcome = if out.status.success() {
            "ok".to_string()
        } else {
            let first = text.lines().find(|l| l.contains("error")).unwrap_or("").trim().to_string();
            format!("error: {}", first.chars().take(70).collect::<String>())
        };
    }
    (best, outcome)
}

fn main() {
    let jamrig = binary();
    let dir = tempfile::tempdir().expect("temp dir");
    println!("{:<52} {:>8} {:>9}  outcome", "set", "KiB", "check s");
    for (name, text) in cases() {
        let file = dir.path().join("set.rhai");
        std::fs::write(&file, &text).unwrap();
        let (s, outcome) = time_check(&jamrig, &file);
        println!("{name:<52} {:>8.1} {s:>9.3}  {outcome}", text.len() as f64 / 1024.0);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut examples: Vec<PathBuf> = std::fs::read_dir(root.join("examples"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "rhai"))
        .collect();
    examples.sort();
    for file in examples {
        let (s, outcome) = time_check(&jamrig, &file);
        let kib = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0) as f64 / 1024.0;
        println!(
            "{:<52} {kib:>8.1} {s:>9.3}  {outcome}",
            format!("examples/{}", file.file_name().unwrap().to_string_lossy())
        );
    }
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("(wall time of `jamrig check`, best of 3, start-up included; load average {})", load.trim());
}
