//! Live sessions over a set file: a reload re-evaluates the file from scratch,
//! publishes only a set that differs, and says what changed in one line; a broken
//! file leaves the running set alone; REPL lines edit the running set until the
//! next reload replaces them; imported modules are part of the set.

mod common;

use jamrig::rig::Set;
use jamrig::rig::build::BuildError;
use jamrig::script::ScriptHost;
use jamrig::script::session::{Publish, Reload, Session};
use std::path::{Path, PathBuf};

/// Records what a session publishes; `next_bar` is fixed.
struct Recorder {
    sets: Vec<Set>,
    bar: Option<u64>,
    /// Refuse every publish with this error.
    refuse: Option<BuildError>,
}

impl Recorder {
    fn new() -> Self {
        Recorder { sets: Vec::new(), bar: Some(17), refuse: None }
    }
}

impl Publish for Recorder {
    fn publish_set(&mut self, set: &Set) -> Result<(), BuildError> {
        if let Some(e) = &self.refuse {
            return Err(e.clone());
        }
        self.sets.push(set.clone());
        Ok(())
    }

    fn next_bar(&self, beats_per_bar: f64) -> Option<u64> {
        assert!(beats_per_bar > 0.0);
        self.bar
    }
}

const SET: &str = r#"
tempo(120);
channel(2, "synth_bass");
channel(5, "synth_pad");
drums(10);
cc(74, "lowpass", 200, 8000);
pattern("beat", 10, "rock");
pattern("bass", 2, 4.0, [[0.0, "A1", 100], [2.0, "C2", 90]]);
"#;

struct Fixture {
    _dir: tempfile::TempDir,
    path: PathBuf,
    session: Session,
}

fn open(text: &str) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("set.rhai");
    std::fs::write(&path, text).unwrap();
    let session = Session::open(ScriptHost::new().unwrap(), &path).unwrap_or_else(|d| panic!("{}", d.render()));
    Fixture { _dir: dir, path, session }
}

fn edit(path: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.contains(from), "the set contains {from:?}");
    std::fs::write(path, text.replacen(from, to, 1)).unwrap();
}

fn changed(r: &Reload) -> (&[String], &[String]) {
    match r {
        Reload::Changed { changes, dropped, .. } => (changes, dropped),
        other => panic!("expected a change, got {other:?}"),
    }
}

/// The reload line without its timing: `reloaded in 1.2 ms: X` -> `X`.
fn line_after_timing(r: &Reload) -> String {
    let line = r.line();
    let rest = line.strip_prefix("reloaded in ").unwrap_or_else(|| panic!("line: {line}"));
    let (ms, rest) = rest.split_once(" ms: ").unwrap_or_else(|| panic!("line: {line}"));
    let (whole, frac) = ms.split_once('.').unwrap_or_else(|| panic!("one decimal: {line}"));
    assert!(whole.parse::<u64>().is_ok() && frac.len() == 1 && frac.parse::<u8>().is_ok(), "timing: {line}");
    rest.to_string()
}

#[test]
fn opening_evaluates_without_publishing() {
    let f = open(SET);
    assert_eq!(f.session.set(), &common::set(SET));
    assert_eq!(f.session.files(), std::slice::from_ref(&f.path));
    assert_eq!(f.session.path(), f.path);
}

#[test]
fn an_unchanged_reload_publishes_nothing() {
    let mut f = open(SET);
    let mut out = Recorder::new();
    let r = f.session.reload(&mut out);
    assert!(matches!(r, Reload::Unchanged { .. }), "{r:?}");
    assert!(out.sets.is_empty());
    assert_eq!(line_after_timing(&r), "no changes");
    // A cosmetic edit (a comment, spacing) is no change either.
    edit(&f.path, "tempo(120);", "// faster later\ntempo( 120 );");
    let r = f.session.reload(&mut out);
    assert!(matches!(r, Reload::Unchanged { .. }), "{r:?}");
    assert!(out.sets.is_empty());
}

#[test]
fn a_parameter_change_is_one_line() {
    let mut f = open(SET);
    let mut out = Recorder::new();
    edit(&f.path, r#"channel(2, "synth_bass");"#, r#"channel(2, "synth_bass", #{ lowpass: 1200 });"#);
    let r = f.session.reload(&mut out);
    assert_eq!(changed(&r), (&["ch2 lowpass 800 -> 1200".to_string()][..], &[][..]));
    assert_eq!(line_after_timing(&r), "ch2 lowpass 800 -> 1200");
    assert_eq!(out.sets.len(), 1);
    assert_eq!(&out.sets[0], f.session.set());
    assert_eq!(out.sets[0].channels[&2].params.get(jamrig::params::Param::Lowpass), 1200.0);
    // Reloading again: nothing more.
    assert!(matches!(f.session.reload(&mut out), Reload::Unchanged { .. }));
    assert_eq!(out.sets.len(), 1);
}

#[test]
fn pattern_changes_name_the_bar() {
    let mut f = open(SET);
    let mut out = Recorder::new();
    edit(&f.path, r#"pattern("beat", 10, "rock");"#, r#"pattern("beat", 10, "house");"#);
    let r = f.session.reload(&mut out);
    assert_eq!(line_after_timing(&r), "pattern beat rock -> house at bar 17");
    // A stopped transport: at once, no bar.
    out.bar = None;
    edit(&f.path, r#"pattern("beat", 10, "house");"#, r#"pattern("beat", 10, "funk");"#);
    assert_eq!(line_after_timing(&f.session.reload(&mut out)), "pattern beat house -> funk");
    out.bar = Some(33);
    edit(&f.path, r#"[2.0, "C2", 90]"#, r#"[2.0, "D2", 90]"#);
    assert_eq!(line_after_timing(&f.session.reload(&mut out)), "pattern bass changed at bar 33");
    edit(&f.path, r#"pattern("bass", 2, 4.0,"#, r#"pattern("bass", 5, 4.0,"#);
    assert_eq!(line_after_timing(&f.session.reload(&mut out)), "pattern bass ch2 -> ch5 at bar 33");
    edit(&f.path, r#"pattern("bass", 5, 4.0,"#, r#"pattern("bass", 5, 8.0,"#);
    assert_eq!(line_after_timing(&f.session.reload(&mut out)), "pattern bass 4 beats -> 8 beats at bar 33");
    assert_eq!(out.sets.len(), 5);
}

#[test]
fn removals_and_additions() {
    let mut f = open(SET);
    let mut out = Recorder::new();
    edit(&f.path, "channel(5, \"synth_pad\");\n", "");
    assert_eq!(line_after_timing(&f.session.reload(&mut out)), "ch5 removed");
    assert!(!out.sets[0].channels.contains_key(&5));
    edit(&f.path, "pattern(\"beat\", 10, \"rock\");\n", "");
    assert_eq!(line_after_timing(&f.session.reload(&mut out)), "pattern beat removed at bar 17");
    edit(
        &f.path,
        "cc(74, \"lowpass\", 200, 8000);\n",
        "cc(74, \"lowpass\", 200, 12000);\ncc(91, \"reverb\", 0, 0.5, 2);\n",
    );
    assert_eq!(
        line_after_timing(&f.session.reload(&mut out)),
        "cc74 -> lowpass range 200..12000; cc91 -> ch2 reverb added"
    );
    edit(&f.path, "drums(10);\n", "drums(10);\nchannel(7, \"organ\");\n");
    assert_eq!(line_after_timing(&f.session.reload(&mut out)), "ch7 added (organ)");
}

#[test]
fn tempo_meter_clock_and_several_changes_in_one_line() {
    let mut f = open(SET);
    let mut out = Recorder::new();
    edit(&f.path, "tempo(120);", "tempo(128);");
    assert_eq!(line_after_timing(&f.session.reload(&mut out)), "tempo 120 -> 128");
    edit(&f.path, "tempo(128);", "tempo(96); meter(3); clock(\"midi\");");
    assert_eq!(line_after_timing(&f.session.reload(&mut out)), "tempo 128 -> 96; meter 4 -> 3; sync internal -> midi");
    edit(
        &f.path,
        r#"channel(2, "synth_bass");"#,
        r#"channel(2, "synth_bass", #{ lowpass: 1200, reverb: 0.3 }); master(#{ gain: 0.5 });"#,
    );
    assert_eq!(
        line_after_timing(&f.session.reload(&mut out)),
        "master changed; ch2 lowpass 800 -> 1200; ch2 reverb 0 -> 0.3"
    );
    edit(&f.path, r#"channel(2, "synth_bass", "#, r#"channel(2, "acid_bass", "#);
    let r = f.session.reload(&mut out);
    let (changes, _) = changed(&r);
    assert_eq!(changes[0], "ch2 synth_bass -> acid_bass");
}

#[test]
fn a_broken_file_keeps_the_previous_set() {
    let mut f = open(SET);
    let mut out = Recorder::new();
    let before = f.session.set().clone();
    edit(&f.path, r#"channel(5, "synth_pad");"#, r#"channel(5, "synth_pad";"#);
    let r = f.session.reload(&mut out);
    let Reload::Failed(d) = &r else { panic!("expected a failure, got {r:?}") };
    let path = f.path.display().to_string();
    let headline =
        format!("{path}:4:23: syntax error: expected ')' to close channel(...), or ',' before another argument");
    assert_eq!(d.headline(), headline);
    assert!(d.render().contains("│ channel(5, \"synth_pad\";\n"), "{}", d.render());
    assert_eq!(r.line(), format!("reload failed, still playing the previous set: {headline}"));
    assert!(out.sets.is_empty(), "nothing published");
    assert_eq!(f.session.set(), &before);
    // An evaluation error too.
    edit(&f.path, r#"channel(5, "synth_pad";"#, r#"channel(5, "synth_pda");"#);
    let r = f.session.reload(&mut out);
    assert!(matches!(&r, Reload::Failed(d) if d.message == "unknown instrument \"synth_pda\""), "{r:?}");
    assert!(out.sets.is_empty());
    assert_eq!(f.session.set(), &before);
    // Fixed, with a change: diffed against the set that kept playing.
    edit(&f.path, r#"channel(5, "synth_pda");"#, r#"channel(5, "synth_pad", #{ volume: 0.3 });"#);
    let r = f.session.reload(&mut out);
    assert_eq!(line_after_timing(&r), "ch5 volume 0.6 -> 0.3");
    assert_eq!(out.sets.len(), 1);
}

#[test]
fn a_deleted_file_is_a_failed_reload() {
    let mut f = open(SET);
    let mut out = Recorder::new();
    std::fs::remove_file(&f.path).unwrap();
    let r = f.session.reload(&mut out);
    let Reload::Failed(d) = &r else { panic!("{r:?}") };
    assert!(d.message.starts_with(&format!("cannot read {}: ", f.path.display())), "{}", d.message);
    assert!(
        r.line()
            .starts_with(&format!("reload failed, still playing the previous set: cannot read {}: ", f.path.display())),
        "{}",
        r.line()
    );
    assert!(out.sets.is_empty());
}

#[test]
fn a_set_the_rig_refuses_is_a_failed_reload() {
    let mut f = open(SET);
    let mut out = Recorder::new();
    let before = f.session.set().clone();
    out.refuse = Some(BuildError::BadChannel(17));
    edit(&f.path, "tempo(120);", "tempo(130);");
    let r = f.session.reload(&mut out);
    let Reload::Failed(d) = &r else { panic!("{r:?}") };
    assert_eq!(d.message, "channel 17 is outside 1..16");
    assert_eq!(
        r.line(),
        format!("reload failed, still playing the previous set: {}: channel 17 is outside 1..16", f.path.display())
    );
    assert_eq!(f.session.set(), &before);
    // Once the rig accepts it, the change goes through.
    out.refuse = None;
    assert_eq!(line_after_timing(&f.session.reload(&mut out)), "tempo 120 -> 130");
}

#[test]
fn repl_lines_edit_the_running_set_until_the_next_reload() {
    let mut f = open(SET);
    let mut out = Recorder::new();
    let changes = f.session.apply_line("let c = ch(2); c.lowpass = 900;", &mut out).unwrap();
    assert_eq!(changes, ["ch2 lowpass 800 -> 900"]);
    assert_eq!(out.sets.len(), 1);
    assert_eq!(f.session.set().channels[&2].params.get(jamrig::params::Param::Lowpass), 900.0);
    // The REPL may redeclare a channel.
    let changes = f.session.apply_line("channel(5, \"organ\");", &mut out).unwrap();
    assert_eq!(changes[0], "ch5 synth_pad -> organ");
    // A line that changes nothing is not a tweak.
    assert!(f.session.apply_line("tempo(120);", &mut out).unwrap().is_empty());
    assert_eq!(out.sets.len(), 2);
    // The file, unchanged, replaces the tweaks; the line says which.
    let r = f.session.reload(&mut out);
    let (changes, dropped) = changed(&r);
    assert!(changes.contains(&"ch2 lowpass 900 -> 800".to_string()), "{changes:?}");
    assert!(changes.contains(&"ch5 organ -> synth_pad".to_string()), "{changes:?}");
    assert_eq!(dropped, ["let c = ch(2); c.lowpass = 900", "channel(5, \"organ\")"]);
    assert!(
        r.line().ends_with(" (replaced REPL tweaks: let c = ch(2); c.lowpass = 900; channel(5, \"organ\"))"),
        "{}",
        r.line()
    );
    assert_eq!(out.sets.len(), 3);
    assert_eq!(f.session.set(), &common::set(SET));
    // Dropped once: the next reload has nothing to report.
    assert!(matches!(f.session.reload(&mut out), Reload::Unchanged { .. }));
}

#[test]
fn repl_tweak_with_ch() {
    let mut f = open(SET);
    let mut out = Recorder::new();
    let changes = f.session.apply_line("ch(2).lowpass = 900", &mut out).unwrap_or_else(|d| panic!("{}", d.render()));
    assert_eq!(changes, ["ch2 lowpass 800 -> 900"]);
    let r = f.session.reload(&mut out);
    assert_eq!(line_after_timing(&r), "ch2 lowpass 900 -> 800 (replaced REPL tweaks: ch(2).lowpass = 900)");
}

#[test]
fn a_reload_that_matches_the_tweaks_says_no_changes() {
    let mut f = open(SET);
    let mut out = Recorder::new();
    f.session.apply_line("let c = ch(2); c.lowpass = 900;", &mut out).unwrap();
    // The file now says what the tweak did.
    edit(&f.path, r#"channel(2, "synth_bass");"#, r#"channel(2, "synth_bass", #{ lowpass: 900 });"#);
    let r = f.session.reload(&mut out);
    assert_eq!(out.sets.len(), 1, "nothing new to publish");
    assert_eq!(line_after_timing(&r), "no changes (replaced REPL tweaks: let c = ch(2); c.lowpass = 900)");
}

#[test]
fn a_repl_error_changes_nothing() {
    let mut f = open(SET);
    let mut out = Recorder::new();
    let before = f.session.set().clone();
    let d = f.session.apply_line("let c = ch(2); c.reverb = 1.5;", &mut out).unwrap_err();
    assert_eq!(d.path, "repl");
    assert_eq!(d.message, "reverb is 1.5, outside 0..1");
    assert!(d.headline().starts_with("repl:1:"), "{}", d.headline());
    let d = f.session.apply_line("ch(3)", &mut out).unwrap_err();
    assert_eq!(d.headline(), "repl:1:1: channel 3 is not in the rig");
    assert!(out.sets.is_empty());
    assert_eq!(f.session.set(), &before);
    assert!(matches!(f.session.reload(&mut out), Reload::Unchanged { .. }));
}

#[test]
fn printed_lines_follow_the_latest_evaluation() {
    let mut f = open("print(\"one\");\ntempo(100);\n");
    let mut out = Recorder::new();
    assert_eq!(f.session.evaluated().printed, ["one"]);
    edit(&f.path, "print(\"one\");", "print(\"two\");");
    assert!(matches!(f.session.reload(&mut out), Reload::Unchanged { .. }));
    assert_eq!(f.session.evaluated().printed, ["two"]);
}

#[test]
fn a_reload_picks_up_a_changed_module() {
    let dir = tempfile::tempdir().unwrap();
    let module = dir.path().join("bass.rhai");
    std::fs::write(
        &module,
        "fn bass(ch) { channel(ch, \"synth_bass\", #{ lowpass: 600 }) }\nfn line() { [[0.0, \"A1\", 100]] }\n",
    )
    .unwrap();
    let path = dir.path().join("set.rhai");
    std::fs::write(
        &path,
        "import \"bass\" as b;\nimport \"music\" as m;\nb::bass(2);\npattern(\"bass\", 2, 4.0, b::line());\n",
    )
    .unwrap();
    let mut session = Session::open(ScriptHost::new().unwrap(), &path).unwrap_or_else(|d| panic!("{}", d.render()));
    // The files to watch: the set and its local module (not the embedded stdlib).
    assert_eq!(session.files(), [path.clone(), module.clone()]);
    let mut out = Recorder::new();
    edit(&module, "lowpass: 600", "lowpass: 1500");
    assert_eq!(line_after_timing(&session.reload(&mut out)), "ch2 lowpass 600 -> 1500");
    edit(&module, "[[0.0, \"A1\", 100]]", "[[0.0, \"A1\", 100], [1.0, \"E2\", 90]]");
    assert_eq!(line_after_timing(&session.reload(&mut out)), "pattern bass changed at bar 17");
    assert_eq!(out.sets.len(), 2);
    // A broken module fails the reload, named by its own path.
    edit(&module, "fn line() {", "fn line( {");
    let r = session.reload(&mut out);
    let Reload::Failed(d) = &r else { panic!("{r:?}") };
    assert_eq!((d.path.as_str(), d.line), (module.to_str().unwrap(), 2));
    assert_eq!(out.sets.len(), 2);
    // A module imported later joins the watch list.
    edit(&module, "fn line( {", "fn line() {");
    std::fs::write(dir.path().join("drums.rhai"), "drums(10);\n").unwrap();
    edit(&path, "b::bass(2);", "import \"drums\";\nb::bass(2);");
    assert_eq!(line_after_timing(&session.reload(&mut out)), "ch10 added (drums)");
    assert_eq!(session.files(), [path.clone(), module, dir.path().join("drums.rhai")]);
}

/// Regression (issue 13): each REPL line started with no variables, so a `let` was
/// gone on the next line, and a bare expression showed nothing. Variables now last
/// from line to line (through reloads too), a line's value is kept to be shown, and
/// the lines that rebuild the running set and the variables are listed in order
/// (the capture's REPL lines: a reload drops only those that changed the set).
#[test]
fn repl_variables_last_from_line_to_line_and_through_a_reload() {
    let mut f = open(SET);
    let mut out = Recorder::new();
    assert!(f.session.apply_line("let cut = 900;", &mut out).unwrap().is_empty());
    assert_eq!(f.session.value(), None);
    let changes = f.session.apply_line("ch(2).lowpass = cut", &mut out).unwrap_or_else(|d| panic!("{}", d.render()));
    assert_eq!(changes, ["ch2 lowpass 800 -> 900"]);
    f.session.apply_line("cut * 2", &mut out).unwrap();
    assert_eq!(f.session.value(), Some("1800"));
    f.session.apply_line("ch(2)", &mut out).unwrap();
    assert_eq!(f.session.value(), Some("ch(2)"));
    assert_eq!(f.session.repl_lines(), ["let cut = 900", "ch(2).lowpass = cut", "cut * 2", "ch(2)"]);
    f.session.reload(&mut out);
    assert_eq!(f.session.repl_lines(), ["let cut = 900", "cut * 2", "ch(2)"]);
    let changes = f.session.apply_line("ch(5).lowpass = cut", &mut out).unwrap_or_else(|d| panic!("{}", d.render()));
    assert_eq!(changes.len(), 1, "{changes:?}");
}
