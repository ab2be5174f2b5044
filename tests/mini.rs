//! Mini-notation in sets: parse errors and bad values located at `path:line:col`
//! with the caret on the character inside the string; no panic on fuzzed strings;
//! random choices reproducible and distributed as asked; patterns as long as their
//! period (capped, with a clear error); velocity and length; `jamrig check --events`
//! (exact keys, sorted, text format); the `:events` grid; and the engine playing a
//! pattern on its exact frames.

mod common;

use common::{caret_span, eval, eval_err};
use jamrig::rig::set::HitSpec;
use jamrig::script::mini;
use rand::{RngExt, SeedableRng};
use std::process::Command;

fn hits(text: &str, name: &str) -> (f64, Vec<HitSpec>) {
    let ev = eval(text).unwrap_or_else(|d| panic!("{}", d.render()));
    let p = &ev.set.patterns[name];
    (p.length_beats, p.hits.clone())
}

fn beats(h: &[HitSpec]) -> Vec<f64> {
    h.iter().map(|h| h.beat).collect()
}

// ---- errors ----

/// The report's caret for `line` of `text`: (column, carets) 0-based.
fn caret(text: &str, line: &str) -> (String, (usize, usize)) {
    let d = eval_err(text);
    let r = d.render();
    (d.headline(), caret_span(&r, line).unwrap_or_else(|| panic!("no caret under {line:?}:\n{r}")))
}

#[test]
fn unclosed_bracket_points_at_the_end_of_the_string() {
    let line = "pattern(\"b\", 10, mini(\"bd [sn\"));";
    let (head, (col, len)) = caret(&format!("drums(10);\n{line}\n"), line);
    // The caret sits on the closing quote, just after "bd [sn".
    assert_eq!((col, len), (line.find("\"))").unwrap(), 1));
    assert_eq!(
        head,
        format!(
            "test.rhai:2:{}: expected a step or ']' to close the '[' at character 4, not the end of the pattern",
            col + 1
        )
    );
}

#[test]
fn parse_errors_point_at_the_offending_character() {
    for (s, offending, message) in [
        ("bd sn]", 5, "']' closes a bracket that was never opened"),
        ("bd(3 8)", 5, "expected ',' and a step count, not '8'"),
        ("bd <sn hh", 9, "expected a step or '>' to close the '<' at character 4, not the end of the pattern"),
        ("bd , , sn", 5, "expected a step (a word, a number, ~ or a bracket), not ','"),
        ("bd*", 3, "expected a step (a word, a number, ~ or a bracket), not the end of the pattern"),
        ("", 0, "the pattern is empty: write ~ for a rest that lasts the whole cycle"),
    ] {
        let line = format!("let p = mini(\"{s}\");");
        let d = eval_err(&format!("{line}\n"));
        assert_eq!(d.message, message, "{s:?}");
        let (col, _) = caret_span(&d.render(), &line).unwrap();
        assert_eq!(col, line.find('"').unwrap() + 1 + offending, "{s:?}:\n{}", d.render());
    }
}

#[test]
fn a_string_on_another_line_is_still_found() {
    let text = "drums(10);\nlet groove = mini(\"bd sd hx\");\npattern(\"b\", 10, groove);\n";
    let d = eval_err(text);
    assert_eq!(d.line, 2, "{}", d.render());
    assert!(d.message.starts_with("unknown drum sound \"hx\""), "{}", d.message);
    let (col, len) = caret_span(&d.render(), "let groove = mini(\"bd sd hx\");").unwrap();
    assert_eq!((col, len), ("let groove = mini(\"bd sd ".len(), 1));
}

#[test]
fn unknown_words_say_what_they_are_not() {
    let d = eval_err("drums(10);\npattern(\"b\", 10, mini(\"bd snare hhh\"));\n");
    assert_eq!(d.message, "unknown drum sound \"hhh\" (did you mean hh?)");
    let d = eval_err("channel(1, \"organ\");\npattern(\"m\", 1, mini(\"c4 bd\"));\n");
    assert_eq!(d.message, "\"bd\" is not a note name (like c4, eb3 or a#2) on a melodic channel");
    let d = eval_err("channel(1, \"organ\");\npattern(\"m\", 1, mini(\"c4 200\"));\n");
    assert_eq!(d.message, "200 is not a MIDI note (0 to 127)");
    let d = eval_err("let p = mini(\"bd*x\");\n");
    assert_eq!(d.message, "a speed factor after * must be a number of 0 or more, not x");
    let (col, _) = caret_span(&d.render(), "let p = mini(\"bd*x\");").unwrap();
    assert_eq!(col, "let p = mini(\"bd*".len());
    let d = eval_err("let p = mini(\"c4'maj11\");\n");
    assert!(d.message.starts_with("unknown chord quality \"maj11\""), "{}", d.message);
    let d = eval_err("let p = mini(\"bd(9,8)\");\n");
    assert!(d.message.starts_with("a Euclidean rhythm needs whole numbers"), "{}", d.message);
    let d = eval_err("let p = mini(\"bd\", #{ velocty: \"1\" });\n");
    assert_eq!(d.message, "mini options are velocity and length, not velocty (did you mean velocity?)");
}

#[test]
fn a_pattern_too_long_is_refused_with_its_length() {
    let d = eval_err("drums(10);\npattern(\"b\", 10, mini(\"bd/300\"));\n");
    assert_eq!(
        d.message,
        "the pattern repeats only after 300 bars; at most 256 are expanded (make it shorter, or give #{ cycles: N } to play its first N bars on a loop)"
    );
    assert_eq!(d.line, 2);
    let (len, h) = hits("drums(10);\npattern(\"b\", 10, mini(\"bd/300\"), #{ cycles: 4 });\n", "b");
    assert_eq!((len, h.len()), (16.0, 1));
    // 4/4: 256 bars are 1024 beats; in 7/4, fewer bars fit.
    let d = eval_err("meter(7);\ndrums(10);\npattern(\"b\", 10, mini(\"<bd sd>/100\"));\n");
    assert!(d.message.starts_with("the pattern lasts 200 bars (1400 beats)"), "{}", d.message);
}

// ---- fuzzing ----

#[test]
fn fuzzed_strings_never_panic() {
    let alphabet: Vec<char> = "bd sn hh ~-[]<>{}(),.|:!?@_*/%^'0123456789 c4e#\t\u{e9}\u{1F600}".chars().collect();
    let corpus = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/mini-corpus.txt")).unwrap();
    let seeds: Vec<&str> = corpus.lines().filter_map(|l| l.split_once('\t').map(|x| x.1)).collect();
    let mut rng = rand_pcg::Pcg64::seed_from_u64(17);
    let (mut ok, mut errors) = (0, 0);
    for i in 0..6000 {
        let s: String = if i % 2 == 0 {
            let n = rng.random_range(0..24);
            (0..n).map(|_| alphabet[rng.random_range(0..alphabet.len())]).collect()
        } else {
            // A corpus string with a few characters replaced, inserted or deleted.
            let mut c: Vec<char> = seeds[rng.random_range(0..seeds.len())].chars().collect();
            for _ in 0..rng.random_range(1..4) {
                let at = rng.random_range(0..=c.len());
                match rng.random_range(0..3) {
                    0 if at < c.len() => c[at] = alphabet[rng.random_range(0..alphabet.len())],
                    1 => c.insert(at, alphabet[rng.random_range(0..alphabet.len())]),
                    _ if at < c.len() => {
                        c.remove(at);
                    }
                    _ => {}
                }
            }
            c.into_iter().collect()
        };
        match mini::read(&s) {
            Ok(p) => {
                ok += 1;
                let _ = mini::events(&p, 4);
            }
            Err(e) => {
                errors += 1;
                assert!(!e.message.is_empty());
                if let Some(l) = e.at {
                    assert!(l.at.start <= l.at.end && l.at.end <= s.len(), "{s:?}: {:?}", l.at);
                    assert!(s.is_char_boundary(l.at.start) && s.is_char_boundary(l.at.end), "{s:?}: {:?}", l.at);
                }
            }
        }
    }
    assert!(ok > 500 && errors > 500, "{ok} parsed, {errors} refused");
}

#[test]
fn runaway_strings_stop_with_an_error() {
    for s in ["[[[bd*999]*999]*999]*999", "bd*99999999999", "bd@1e300 sd", "bd*0.0000001"] {
        let t0 = std::time::Instant::now();
        let r = mini::read(s).and_then(|p| mini::events(&p, 8).map(|_| ()));
        assert!(r.is_err() || s.contains("0.0000001"), "{s:?} expands");
        // Not a timing assertion on speed, a guard that the budget applies at all.
        assert!(t0.elapsed().as_secs() < 30, "{s:?} took {:?}", t0.elapsed());
    }
}

// ---- random choices ----

#[test]
fn random_choices_are_reproducible_and_differ_per_cycle() {
    let set = "drums(10);\npattern(\"h\", 10, mini(\"hh*16?\"));\npattern(\"c\", 10, mini(\"[bd | sd | cp]*4\"));\n";
    let (a, b) = (hits(set, "h"), hits(set, "h"));
    assert_eq!(a, b, "the same set gives the same hits");
    // 16 bars by default, each bar different from the first.
    assert_eq!(a.0, 64.0);
    let bar = |h: &[HitSpec], k: f64| -> Vec<f64> {
        h.iter().filter(|x| x.beat >= 4.0 * k && x.beat < 4.0 * (k + 1.0)).map(|x| x.beat - 4.0 * k).collect()
    };
    let differing = (1..16).filter(|k| bar(&a.1, *k as f64) != bar(&a.1, 0.0)).count();
    assert!(differing >= 12, "{differing} of 15 bars differ from the first");
    // Each `?` draws its own numbers: two degraded copies are not the same.
    let two = hits("drums(10);\npattern(\"t\", 10, mini(\"hh*16?, oh*16?\"));\n", "t").1;
    let hh: Vec<f64> = two.iter().filter(|h| h.note == 42).map(|h| h.beat).collect();
    let oh: Vec<f64> = two.iter().filter(|h| h.note == 46).map(|h| h.beat).collect();
    assert_ne!(hh, oh);
}

#[test]
fn random_choices_follow_their_probabilities() {
    let kept = |s: &str| {
        let set = format!("drums(10);\npattern(\"h\", 10, mini(\"{s}\"), #{{ cycles: 128 }});\n");
        hits(&set, "h").1.len() as f64 / (16.0 * 128.0)
    };
    let half = kept("hh*16?");
    assert!((half - 0.5).abs() < 0.04, "? keeps {half}");
    let most = kept("hh*16?0.2");
    assert!((most - 0.8).abs() < 0.04, "?0.2 keeps {most}");
    let few = kept("hh*16?0.9");
    assert!((few - 0.1).abs() < 0.03, "?0.9 keeps {few}");
    let set = "drums(10);\npattern(\"c\", 10, mini(\"bd | sd | cp\"), #{ cycles: 240 });\n";
    let h = hits(set, "c").1;
    for note in [36, 38, 39] {
        let share = h.iter().filter(|x| x.note == note).count() as f64 / 240.0;
        assert!((share - 1.0 / 3.0).abs() < 0.08, "note {note}: {share}");
    }
}

// ---- periods, values, velocity and length ----

#[test]
fn patterns_last_their_period() {
    let drums = |s: &str| hits(&format!("drums(10);\npattern(\"p\", 10, {s});\n"), "p");
    assert_eq!(drums("mini(\"bd sd\")").0, 4.0);
    assert_eq!(drums("mini(\"<bd sd hh>\")").0, 12.0);
    assert_eq!(drums("mini(\"bd/4\")").0, 16.0);
    assert_eq!(drums("mini(\"<bd sd>*2, hh(3,8)\")").0, 4.0);
    assert_eq!(drums("mini(\"{bd sd hh}%4\")").0, 12.0);
    assert_eq!(drums("mini(\"<bd sd>/2 <hh oh cp>\")").0, 48.0);
    assert_eq!(drums("mini(\"bd sd\").every(3, |p| p.fast(2))").0, 12.0);
    assert_eq!(drums("mini(\"bd sd hh\").palindrome()").0, 8.0);
    assert_eq!(drums("mini(\"bd*1.5\")").0, 8.0);
    let (len, h) = drums("mini(\"<bd sd>\")");
    assert_eq!((len, beats(&h)), (8.0, vec![0.0, 4.0]));
    assert_eq!(h.iter().map(|h| h.note).collect::<Vec<_>>(), [36, 38]);
}

#[test]
fn meter_sets_the_length_of_a_cycle_even_after_the_pattern() {
    let (len, h) = hits("drums(10);\npattern(\"p\", 10, mini(\"bd sd hh\"));\nmeter(3);\n", "p");
    assert_eq!((len, beats(&h)), (3.0, vec![0.0, 1.0, 2.0]));
    let (len, _) = hits("meter(6);\ndrums(10);\npattern(\"p\", 10, mini(\"<bd sd>\"));\n", "p");
    assert_eq!(len, 12.0);
}

#[test]
fn words_numbers_chords_and_sample_indexes() {
    let (_, h) = hits("drums(10);\npattern(\"d\", 10, mini(\"kick closed_hat bd:3 sn 49 maracas\"));\n", "d");
    assert_eq!(h.iter().map(|h| h.note).collect::<Vec<_>>(), [36, 42, 36, 38, 49, 70]);
    let (_, h) = hits("channel(1, \"organ\");\npattern(\"m\", 1, mini(\"c4 eb4 a#2 e 60 c4'maj7\"));\n", "m");
    let notes: Vec<u8> = h.iter().map(|h| h.note).collect();
    assert_eq!(notes, [60, 63, 46, 52, 60, 60, 64, 67, 71]);
    // A set may redefine a drum name; the short names follow it.
    let (_, h) = hits("drum_sound(\"kick\", 35);\ndrums(10);\npattern(\"d\", 10, mini(\"bd\"));\n", "d");
    assert_eq!(h[0].note, 35);
}

#[test]
fn velocity_and_length_from_strings_numbers_and_methods() {
    let set = "drums(10);\npattern(\"d\", 10, mini(\"bd sd hh cp\", #{ velocity: \"100 80\", length: 0.25 }));\n";
    let (_, h) = hits(set, "d");
    assert_eq!(h.iter().map(|h| h.velocity).collect::<Vec<_>>(), [100, 100, 80, 80]);
    assert!(h.iter().all(|h| h.length == 0.25));
    // The default length is the event's span (in beats); the default velocity 100.
    let (_, h) = hits("channel(1, \"organ\");\npattern(\"m\", 1, mini(\"c4 [e4 g4]\"));\n", "m");
    assert_eq!(h.iter().map(|h| h.length).collect::<Vec<_>>(), [2.0, 1.0, 1.0]);
    assert!(h.iter().all(|h| h.velocity == 100));
    // Transforms carry velocities along.
    let set =
        "channel(1, \"organ\");\npattern(\"m\", 1, mini(\"c4 e4\").velocity(\"<90 60>\").fast(2).transpose(12));\n";
    let (_, h) = hits(set, "m");
    let got: Vec<(u8, u8)> = h.iter().map(|h| (h.note, h.velocity)).collect();
    assert_eq!(got, [(72, 90), (76, 90), (72, 60), (76, 60)]);
    let d = eval_err("drums(10);\npattern(\"d\", 10, mini(\"bd\", #{ velocity: 200 }));\n");
    assert_eq!(d.message, "velocity 200 is outside 1..127");
}

#[test]
fn replacing_a_mini_pattern_by_a_list_keeps_the_list_on_meter_change() {
    let text = "drums(10);\npattern(\"p\", 10, mini(\"bd sd\"));\npattern(\"p\", 10, 2.0, [[0.0, \"kick\", 100]]);\nmeter(3);\n";
    let (len, h) = hits(text, "p");
    assert_eq!((len, h.len()), (2.0, 1));
}

// ---- the engine plays it ----

#[test]
fn the_engine_plays_a_mini_pattern_on_its_frames() {
    let sr = 48_000;
    let frames = sr as usize * 2;
    let mut r = common::renderer("tempo(120);\ndrums(10);\npattern(\"b\", 10, mini(\"bd ~ bd ~, ~ ~ ~ cp\"));\n", sr);
    let played = common::mono(&r.render(frames, 256));
    // The same hits as note-ons at the frames the notation says: kicks on beats 0 and
    // 2 (0 s, 1 s), the clap on beat 3 (1.5 s), at 120 BPM.
    let mut r = common::renderer("tempo(120);\ndrums(10);\n", sr);
    r.add_events([
        common::note_on(0, 9, 36, 100),
        common::note_on(sr as u64, 9, 36, 100),
        common::note_on(sr as u64 * 3 / 2, 9, 39, 100),
    ]);
    let sent = common::mono(&r.render(frames, 256));
    assert!(common::rms(&played) > 0.01, "the pattern is heard");
    let diff = played.iter().zip(&sent).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
    assert!(diff < 1e-4, "the pattern and the note-ons differ by {diff}");
}

// ---- check --events and :events ----

fn jamrig(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_jamrig")).args(args).output().expect("jamrig runs")
}

#[test]
fn check_events_prints_sorted_json_lines_with_exactly_the_keys() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("set.rhai");
    std::fs::write(
        &path,
        "drums(10);\nchannel(2, \"organ\");\npattern(\"beat\", 10, mini(\"bd*2 [~ sn] <hh oh>, cp(3,8)\"));\npattern(\"keys\", 2, 4.0, [[1.0, \"C4\", 90, 0.5]]);\n",
    )
    .unwrap();
    let out = jamrig(&["check", path.to_str().unwrap(), "--events", "2"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let rows: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    for (line, r) in text.lines().zip(&rows) {
        let mut keys: Vec<&str> = r.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort();
        assert_eq!(keys, ["beat", "channel", "length", "note", "pattern", "velocity"]);
        let order: Vec<usize> = ["pattern", "channel", "beat", "note", "velocity", "length"]
            .iter()
            .map(|k| line.find(&format!("\"{k}\":")).unwrap())
            .collect();
        assert!(order.windows(2).all(|w| w[0] < w[1]), "keys in order: {line}");
    }
    let b: Vec<f64> = rows.iter().map(|r| r["beat"].as_f64().unwrap()).collect();
    assert!(b.windows(2).all(|w| w[0] <= w[1]), "sorted by time: {b:?}");
    // 2 bars: kicks 4, snares 2, hats 2 (hh then oh), claps 6, keys 2.
    assert_eq!(rows.len(), 16);
    let oh: Vec<&serde_json::Value> = rows.iter().filter(|r| r["note"] == 46).collect();
    // "<hh oh>" is the last third of the bar: the open hat in bar 2, at 4 + 8/3 beats.
    assert_eq!(oh.len(), 1);
    assert!((oh[0]["beat"].as_f64().unwrap() - (4.0 + 8.0 / 3.0)).abs() < 1e-12);
    assert!((oh[0]["length"].as_f64().unwrap() - 4.0 / 3.0).abs() < 1e-12);
    let keys: Vec<f64> = rows.iter().filter(|r| r["pattern"] == "keys").map(|r| r["beat"].as_f64().unwrap()).collect();
    assert_eq!(keys, [1.0, 5.0]);
    assert!(rows.iter().any(|r| r["channel"] == 10 && r["beat"] == 1.5 && r["note"] == 39));

    let out = jamrig(&["check", path.to_str().unwrap(), "--events", "1", "--format", "text"]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("  bar      beat  pattern"), "{text}");
    assert!(text.contains("    1       1.5  beat         10  39 clap          100  0.5\n"), "{text}");

    let out = jamrig(&["check", path.to_str().unwrap(), "--events", "0"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--events takes a number of bars above 0"));
}

#[test]
fn the_events_grid_shows_one_line_per_bar() {
    let ev = eval("drums(10);\npattern(\"beat\", 10, mini(\"bd*2 [~ sn] <hh oh>\"));\n").unwrap();
    let g = jamrig::rig::events::grid(&ev.set, common::host().library(), "beat", None).unwrap();
    // "bd*2" fills the first third of the bar, "[~ sn]" the second, the hats the last.
    let want = "beat on channel 10: 2 bars of 4 beats, 6 steps a bar\n\
                \x20        kick        snare       closed_hat  open_hat\n\
                bar 1    xx....      ...x..      ....x.      ......\n\
                bar 2    xx....      ...x..      ......      ....x.\n";
    assert_eq!(g, want, "\n{g}");
    let g = jamrig::rig::events::grid(&ev.set, common::host().library(), "beat", Some(1.0)).unwrap();
    assert_eq!(g.lines().count(), 3);
    let e = jamrig::rig::events::grid(&ev.set, common::host().library(), "bass", None).unwrap_err();
    assert_eq!(e, "no pattern named bass (patterns: beat)");
}

/// Issue 17: `bd:3` with no sample bank named bd plays the drum sound bd (as a
/// written `bd`), and `jamrig check` says that the index picks nothing and how to
/// load a bank; with a bank, an index that is not a whole number is an error at the
/// word.
#[test]
fn a_sample_index_without_a_bank_plays_the_drum_and_check_says_so() {
    let (_, h) = hits("drums(10);\npattern(\"d\", 10, mini(\"bd:3 sd:0 hh\"));\n", "d");
    assert_eq!(h.iter().map(|h| h.note).collect::<Vec<_>>(), [36, 38, 42]);
    let ev = eval("drums(10);\npattern(\"d\", 10, mini(\"bd:3 bd:3 sd:0 sd:1\"));\n").unwrap();
    assert_eq!(
        ev.notes,
        [
            "bd:3 plays the drum sound bd: the set has loaded no sample bank \"bd\" (load one before the pattern with samples(\"bd\", \"FOLDER\"))",
            "sd:1 plays the drum sound sd: the set has loaded no sample bank \"sd\" (load one before the pattern with samples(\"sd\", \"FOLDER\"))",
        ]
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("set.rhai");
    std::fs::write(&path, "drums(10);\npattern(\"d\", 10, mini(\"bd:3 sn\"));\n").unwrap();
    let out = jamrig(&["check", path.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("\nnote: bd:3 plays the drum sound bd: the set has loaded no sample bank \"bd\""), "{text}");

    let bank = dir.path().join("bd");
    std::fs::create_dir(&bank).unwrap();
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 48000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(bank.join("a.wav"), spec).unwrap();
    for k in 0..480 {
        w.write_sample(((k as f32 * 0.05).sin() * 8000.0) as i16).unwrap();
    }
    w.finalize().unwrap();
    let line = "pattern(\"d\", 10, mini(\"sn bd:1.5\"));";
    std::fs::write(&path, format!("samples(\"bd\", \"bd\");\ndrums(10);\n{line}\n")).unwrap();
    let out = jamrig(&["check", path.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    let col = line.find("bd:1.5").unwrap() + 1;
    assert!(
        err.starts_with(
            "error: the index after bd: picks a sample of the bank bd, so it is a whole number 0 or more, not 1.5\n"
        ) && err.contains(&format!("set.rhai:3:{col}\n")),
        "{err}"
    );
}
