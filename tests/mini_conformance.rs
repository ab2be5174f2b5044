//! Conformance of jamrig's mini-notation with Strudel itself: every string of the
//! corpus (tests/data/mini-corpus.txt) and every transform expression
//! (tests/data/mini-transforms.txt) is played by `@strudel/mini` 1.1.0 under Node
//! (tests/strudel/events.mjs) and by `jamrig check --events 8`; the onsets (as
//! fractions of a cycle, one cycle a bar of 4 beats), notes and lengths must be the
//! same events, exactly, random choices (`?`, `|`, degrade_by, sometimes) included.
//! Strudel is installed from npm by scripts/strudel.sh (which the test command
//! runs); without it, or without Node, the test fails and says what to run.

use serde_json::Value as Json;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

const CYCLES: u32 = 8;
const BEATS_PER_BAR: f64 = 4.0;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The GM notes of the short drum names the corpus uses (written out here, apart
/// from jamrig's own table, so that the two are checked against each other).
fn drum_note(name: &str) -> Option<u8> {
    Some(match name {
        "bd" => 36,
        "sd" | "sn" => 38,
        "rim" => 37,
        "cp" => 39,
        "hh" => 42,
        "oh" => 46,
        "lt" => 45,
        "mt" => 47,
        "ht" => 50,
        "cr" => 49,
        "rd" => 51,
        "rb" => 53,
        "cb" => 56,
        _ => return None,
    })
}

/// Installs Strudel if it is missing (scripts/strudel.sh is idempotent) and copies
/// the reference script beside its node_modules; returns the script's path.
fn strudel() -> PathBuf {
    let node = Command::new("node").arg("--version").output();
    assert!(
        node.as_ref().is_ok_and(|o| o.status.success()),
        "Node.js is not installed: the mini-notation conformance test runs Strudel under Node; run ./scripts/deps.sh"
    );
    let status = Command::new(root().join("scripts/strudel.sh")).status().expect("scripts/strudel.sh runs");
    assert!(status.success(), "scripts/strudel.sh could not install Strudel (see its message above)");
    let dir = root().join("target/strudel");
    let script = dir.join("events.mjs");
    std::fs::copy(root().join("tests/strudel/events.mjs"), &script).expect("copy the reference script");
    script
}

/// One event, comparable: beat, note, length.
#[derive(Clone, Debug, PartialEq)]
struct Ev {
    beat: f64,
    note: i64,
    length: f64,
}

fn sorted(mut v: Vec<Ev>) -> Vec<Ev> {
    v.sort_by(|a, b| a.beat.total_cmp(&b.beat).then(a.note.cmp(&b.note)).then(a.length.total_cmp(&b.length)));
    v
}

fn frac(j: &Json) -> f64 {
    j[0].as_f64().unwrap() / j[1].as_f64().unwrap()
}

/// Strudel's events for each case id (or its error), its values read as GM notes
/// (drum names on drum channels, else Strudel's own note numbers).
fn strudel_events(cases: &[(String, Json, bool)]) -> BTreeMap<String, Result<Vec<Ev>, String>> {
    let drums: BTreeMap<String, bool> = cases.iter().map(|(id, _, d)| (id.clone(), *d)).collect();
    strudel_events_as(cases, |id, value, midi| {
        let value = if value.is_array() { value[0].clone() } else { value.clone() };
        match (value.as_str(), drums[id]) {
            (Some(name), true) => drum_note(name).unwrap_or_else(|| panic!("{id}: no GM note for {name}")) as i64,
            _ => midi.as_f64().unwrap_or_else(|| panic!("{id}: Strudel's value {value} is no note")) as i64,
        }
    })
}

/// Strudel's events for each case id (or its error), each value (and Strudel's note
/// number for it) read as a note by `note`.
fn strudel_events_as(
    cases: &[(String, Json, bool)],
    note: impl Fn(&str, &Json, &Json) -> i64,
) -> BTreeMap<String, Result<Vec<Ev>, String>> {
    let script = strudel();
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("cases.json");
    let list: Vec<Json> = cases.iter().map(|(_, c, _)| c.clone()).collect();
    std::fs::write(&file, serde_json::to_string(&list).unwrap()).unwrap();
    let out = Command::new("node").arg(&script).arg(&file).arg(CYCLES.to_string()).output().expect("node runs");
    assert!(out.status.success(), "node failed: {}", String::from_utf8_lossy(&out.stderr));
    let mut map: BTreeMap<String, Result<Vec<Ev>, String>> = BTreeMap::new();
    for (id, _, _) in cases {
        map.insert(id.clone(), Ok(Vec::new()));
    }
    for line in String::from_utf8_lossy(&out.stdout).lines().filter(|l| l.starts_with('{')) {
        let j: Json = serde_json::from_str(line).unwrap();
        let id = j["id"].as_str().unwrap().to_string();
        if let Some(e) = j.get("error") {
            map.insert(id, Err(e.to_string()));
            continue;
        }
        let note = note(&id, &j["value"], &j["midi"]);
        let ev = Ev {
            beat: frac(&j["begin"]) * BEATS_PER_BAR,
            note,
            length: (frac(&j["end"]) - frac(&j["begin"])) * BEATS_PER_BAR,
        };
        if let Some(Ok(v)) = map.get_mut(&id) {
            v.push(ev);
        }
    }
    map
}

/// jamrig's events for each pattern of `set` (by name), from `jamrig check --events`;
/// the error for a set that does not evaluate.
fn try_jamrig_events(set: &str) -> Result<BTreeMap<String, Vec<Ev>>, String> {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("corpus.rhai");
    std::fs::write(&path, set).unwrap();
    events_of_file(&path)
}

/// jamrig's events for each pattern of the set in `path`, or the set's error.
fn events_of_file(path: &Path) -> Result<BTreeMap<String, Vec<Ev>>, String> {
    let out = Command::new(env!("CARGO_BIN_EXE_jamrig"))
        .args(["check", path.to_str().unwrap(), "--events", &CYCLES.to_string()])
        .output()
        .expect("jamrig runs");
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let mut map: BTreeMap<String, Vec<Ev>> = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let j: Json = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        let keys: Vec<&str> = j.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys.len(), 6, "exactly six keys: {line}");
        map.entry(j["pattern"].as_str().unwrap().to_string()).or_default().push(Ev {
            beat: j["beat"].as_f64().unwrap(),
            note: j["note"].as_i64().unwrap(),
            length: j["length"].as_f64().unwrap(),
        });
    }
    Ok(map)
}

/// As [`try_jamrig_events`]; if the set fails, each pattern line is tried alone and
/// every failing one is reported.
fn jamrig_events(head: &str, lines: &[String]) -> BTreeMap<String, Vec<Ev>> {
    match try_jamrig_events(&format!("{head}{}", lines.concat())) {
        Ok(m) => m,
        Err(_) => {
            let errors: Vec<String> = lines
                .iter()
                .filter_map(|l| try_jamrig_events(&format!("{head}{l}")).err().map(|e| format!("{l}{e}")))
                .collect();
            panic!("{} patterns fail in jamrig:\n{}", errors.len(), errors.join("\n"));
        }
    }
}

fn rhai_string(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Compares the two sides case by case; returns the cases that differ, described.
fn compare(
    cases: &[(String, Json, bool)],
    what: &BTreeMap<String, String>,
    strudel: &BTreeMap<String, Result<Vec<Ev>, String>>,
    jamrig: &BTreeMap<String, Vec<Ev>>,
) -> Vec<String> {
    let mut bad = Vec::new();
    for (id, _, _) in cases {
        let want = match &strudel[id] {
            Ok(v) => sorted(v.clone()),
            Err(e) => {
                bad.push(format!("{id} {}: Strudel cannot play it: {e}", what[id]));
                continue;
            }
        };
        let got = sorted(jamrig.get(id).cloned().unwrap_or_default());
        let same = want.len() == got.len()
            && want
                .iter()
                .zip(&got)
                .all(|(a, b)| a.note == b.note && (a.beat - b.beat).abs() < 1e-9 && (a.length - b.length).abs() < 1e-9);
        if !same {
            let show =
                |v: &[Ev]| v.iter().take(12).map(|e| format!("{}:{}", e.beat, e.note)).collect::<Vec<_>>().join(" ");
            bad.push(format!(
                "{id} {}: Strudel {} events [{}], jamrig {} [{}]",
                what[id],
                want.len(),
                show(&want),
                got.len(),
                show(&got)
            ));
        }
    }
    bad
}

fn run(corpus: &Path, expressions: bool) -> usize {
    let text = std::fs::read_to_string(corpus).unwrap();
    let mut cases = Vec::new();
    let mut what = BTreeMap::new();
    let head = "drums(10);\nchannel(1, \"organ\");\n";
    let mut set = Vec::new();
    for (i, line) in text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()).enumerate() {
        let (kind, rest) = line.split_once('\t').unwrap_or_else(|| panic!("corpus line without a tab: {line}"));
        let drums = kind == "drums";
        let id = format!("c{i}");
        let ch = if drums { 10 } else { 1 };
        if expressions {
            // `jamrig expression` or `jamrig expression <TAB> Strudel expression`
            let (ours, theirs) = rest.split_once('\t').unwrap_or((rest, rest));
            cases.push((id.clone(), serde_json::json!({ "id": id, "expr": theirs }), drums));
            set.push(format!("pattern(\"{id}\", {ch}, {ours});\n"));
            what.insert(id, ours.to_string());
        } else {
            cases.push((id.clone(), serde_json::json!({ "id": id, "mini": rest }), drums));
            set.push(format!("pattern(\"{id}\", {ch}, mini({}));\n", rhai_string(rest)));
            what.insert(id, format!("\"{rest}\""));
        }
    }
    let strudel = strudel_events(&cases);
    let jamrig = jamrig_events(head, &set);
    let bad = compare(&cases, &what, &strudel, &jamrig);
    assert!(bad.is_empty(), "{} of {} cases differ from Strudel:\n{}", bad.len(), cases.len(), bad.join("\n"));
    cases.len()
}

#[test]
fn mini_notation_strings_play_as_in_strudel() {
    let n = run(&root().join("tests/data/mini-corpus.txt"), false);
    assert!(n >= 300, "the corpus has {n} strings; it covers every operator with at least 300");
}

#[test]
fn transforms_play_as_in_strudel() {
    let n = run(&root().join("tests/data/mini-transforms.txt"), true);
    assert!(n >= 40, "{n} transform expressions");
}

#[test]
fn strings_strudel_rejects_are_errors_that_point_into_the_string() {
    let text = std::fs::read_to_string(root().join("tests/data/mini-rejected.txt")).unwrap();
    let strings: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
    let cases: Vec<(String, Json, bool)> = strings
        .iter()
        .enumerate()
        .map(|(i, s)| (format!("r{i}"), serde_json::json!({ "id": format!("r{i}"), "mini": s }), true))
        .collect();
    let strudel = strudel_events(&cases);
    for ((id, _, _), s) in cases.iter().zip(&strings) {
        assert!(strudel[id].is_err(), "Strudel plays {s:?}, which this list says it rejects");
        let err = jamrig::script::mini::read(s).expect_err(s);
        let at = err.at.expect("a parse error has a place").at;
        assert!(at.start <= s.len() && at.end <= s.len() && at.start <= at.end, "{s:?}: {at:?}");
        assert!(err.message.len() > 10 && !err.message.ends_with('.'), "{s:?}: {}", err.message);
    }
    assert!(strings.len() >= 30);
}

/// Writes a folder of `n` short WAV files (each a different length, so that each is
/// a sample of its own) as a numbered bank for `samples()`.
fn bank_folder(dir: &Path, n: usize) {
    std::fs::create_dir_all(dir).unwrap();
    for i in 0..n {
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 48000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(dir.join(format!("{i:02}.wav")), spec).unwrap();
        for k in 0..(480 * (i + 1)) {
            w.write_sample(((k as f32 * 0.05).sin() * 8000.0) as i16).unwrap();
        }
        w.finalize().unwrap();
    }
}

/// Issue 17: `bd:3` in mini-notation picks sample 3 of the numbered bank `bd` that
/// the set loaded (`samples("bd", "folder")`), wrapping around the bank as Strudel
/// does; Strudel defines the value (`s("bd:3")` is `{ s: "bd", n: 3 }`), jamrig's
/// list patterns say which note each sample of the bank plays.
#[test]
fn sample_indexes_pick_from_a_loaded_bank_as_in_strudel() {
    let tmp = tempfile::tempdir().unwrap();
    let sizes = [("bd", 3usize), ("sd", 2), ("hh", 4)];
    for (name, n) in sizes {
        bank_folder(&tmp.path().join(name), n);
    }
    let strings = [
        "bd:3 sd:1 hh:2",
        "bd:<0 1 2 3 4 5> sd:[0 1 2]",
        "hh:3*4 bd:1(3,8)",
        "[bd:2 sd]:1 cp",
        "<bd:1 sd:2>!2 hh:7?",
        "bd sd hh:0",
        "{bd:1 sd:1 hh:1}%4",
        "bd:0 . sd:5 hh:<1 6>",
    ];
    // Which note each sample of each bank plays, from written patterns.
    let mut head = String::from("drums(10);\n");
    for (name, n) in sizes {
        head.push_str(&format!("samples(\"{name}\", \"{name}\");\n"));
        let hits: Vec<String> = (0..n).map(|i| format!("[{i}.0, \"{name}:{i}\", 100, 0.5]")).collect();
        head.push_str(&format!("pattern(\"bank_{name}\", 10, 4.0, [{}]);\n", hits.join(", ")));
    }
    let mut set = head.clone();
    let mut cases = Vec::new();
    let mut what = BTreeMap::new();
    for (i, s) in strings.iter().enumerate() {
        let id = format!("s{i}");
        set.push_str(&format!("pattern(\"{id}\", 10, mini({}));\n", rhai_string(s)));
        cases.push((id.clone(), serde_json::json!({ "id": id, "expr": format!("s({})", serde_json::json!(s)) }), true));
        what.insert(id, format!("\"{s}\""));
    }
    let path = tmp.path().join("banks.rhai");
    std::fs::write(&path, &set).unwrap();
    let jamrig = events_of_file(&path).unwrap_or_else(|e| panic!("{e}"));
    let mut banks: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for (name, n) in sizes {
        let notes: Vec<i64> = jamrig[&format!("bank_{name}")].iter().take(n).map(|e| e.note).collect();
        assert_eq!(notes.len(), n);
        let mut distinct = notes.clone();
        distinct.sort();
        distinct.dedup();
        assert_eq!(distinct.len(), n, "each sample of {name} plays a note of its own: {notes:?}");
        banks.insert(name.to_string(), notes);
    }
    let strudel = strudel_events_as(&cases, |id, value, _| {
        let s = value["s"].as_str().unwrap_or_else(|| panic!("{id}: Strudel's value {value} has no s"));
        match (banks.get(s), value.get("n").and_then(Json::as_f64)) {
            (Some(bank), n) => bank[n.unwrap_or(0.0) as usize % bank.len()],
            (None, _) => drum_note(s).unwrap_or_else(|| panic!("{id}: no GM note for {s}")) as i64,
        }
    });
    let bad = compare(&cases, &what, &strudel, &jamrig);
    assert!(bad.is_empty(), "{} of {} cases differ from Strudel:\n{}", bad.len(), cases.len(), bad.join("\n"));
}
