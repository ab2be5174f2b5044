//! The documentation cannot go stale: every `rhai` example in the README and the
//! set-language reference evaluates, the reference's parameter table is the
//! engine's, and every function and preset is documented.

mod common;

use jamrig::rig::Set;

fn rhai_blocks(markdown: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current: Option<String> = None;
    for line in markdown.lines() {
        match (&mut current, line.trim_start()) {
            (None, l) if l.starts_with("```rhai") => current = Some(String::new()),
            (Some(_), l) if l.starts_with("```") => out.push(current.take().unwrap()),
            (Some(block), _) => {
                block.push_str(line);
                block.push('\n');
            }
            _ => {}
        }
    }
    out
}

fn check_examples(path: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    let blocks = rhai_blocks(&text);
    assert!(!blocks.is_empty(), "{path} has rhai examples");
    for (i, block) in blocks.iter().enumerate() {
        if let Err(d) =
            common::host().eval_source(&format!("{path} example {}", i + 1), block, None, Set::default(), false)
        {
            panic!("{path}: example {} does not evaluate:\n{}\n{}", i + 1, block, d.render());
        }
    }
}

#[test]
fn reference_examples_evaluate() {
    check_examples("stdlib/README.md");
}

#[test]
fn readme_examples_evaluate() {
    check_examples("README.md");
}

/// Each `grid NAME` block shows what the rhai block before it plays: the pattern
/// NAME's grid over the bars the block shows.
#[test]
fn reference_grids_are_what_the_examples_play() {
    let text = std::fs::read_to_string("stdlib/README.md").unwrap();
    let mut last_rhai: Option<String> = None;
    let mut checked = 0;
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let block = |lines: &mut std::str::Lines| {
            lines.by_ref().take_while(|l| !l.starts_with("```")).map(|l| format!("{l}\n")).collect::<String>()
        };
        if line.starts_with("```rhai") {
            last_rhai = Some(block(&mut lines));
        } else if let Some(name) = line.strip_prefix("```grid ") {
            let want = block(&mut lines);
            let code = last_rhai.as_ref().expect("a grid follows a rhai example");
            let ev = common::host().eval_source("grid example", code, None, Set::default(), false).unwrap();
            let bars = want.lines().filter(|l| l.starts_with("bar ")).count() as f64;
            let got = jamrig::rig::events::grid(&ev.set, common::host().library(), name, Some(bars)).unwrap();
            assert_eq!(got, want, "stdlib/README.md: the grid of {name} is now:\n{got}");
            checked += 1;
        }
    }
    assert!(checked >= 3, "{checked} grids");
}

#[test]
fn reference_parameter_table_is_the_engines() {
    let text = std::fs::read_to_string("stdlib/README.md").unwrap();
    assert!(
        text.contains(&jamrig::params::reference_table()),
        "stdlib/README.md's parameter table differs from jamrig::params::reference_table(); paste the new one in"
    );
}

#[test]
fn every_function_and_preset_is_documented() {
    let text = std::fs::read_to_string("stdlib/README.md").unwrap();
    for f in jamrig::script::api::all_functions() {
        assert!(
            text.contains(&format!("`{f}")) || text.contains(&format!("{f}(")),
            "function {f} is not in the reference"
        );
    }
    let lib = common::host().library();
    let names = lib
        .instruments
        .keys()
        .chain(lib.envelopes.keys())
        .chain(lib.patterns.keys())
        .chain(lib.fills.keys())
        .chain(lib.drum_sounds.keys());
    for name in names {
        assert!(text.contains(&format!("`{name}`")), "{name} is not in the reference");
    }
    for s in jamrig::engine::synth::SYNTHS {
        assert!(text.contains(&format!("`{}`", s.name)), "synth {} is not in the reference", s.name);
    }
}
