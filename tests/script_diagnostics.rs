//! Every script error is a located diagnostic: `path:line:col: message` on one line
//! (`headline()`), and a report (`render()`) that shows the source line with carets
//! under the culprit and, where it helps, a "did you mean" note. These tests pin the
//! text exactly.

mod common;

use common::{caret_span, eval_err, host, underlined};
use jamrig::script::diagnostic::Diagnostic;
use std::path::{Path, PathBuf};

/// What a diagnostic should say and point at.
struct Want<'a> {
    headline: &'a str,
    /// The source line shown in the report.
    line: &'a str,
    /// The text the carets underline.
    under: &'a str,
    /// The note under the carets, if any.
    label: Option<&'a str>,
}

/// Checks the message, the report's `┌─ path:line:col`, the line shown, the carets
/// and the note against `want`. The headline itself is checked by
/// [`check_headline`] (see `headline_column_is_the_underlined_tokens`).
fn check(d: &Diagnostic, want: Want) {
    let r = d.render();
    let (loc, message) = want.headline.split_once(": ").expect("headline is path:line:col: message");
    assert_eq!(d.message, message, "message; report:\n{r}");
    assert!(r.starts_with(&format!("error: {message}\n")), "report starts with the message:\n{r}");
    assert!(r.contains(&format!("┌─ {loc}\n")), "report shows {loc}:\n{r}");
    let mut parts = loc.rsplitn(3, ':');
    let (col, line, path) = (parts.next().unwrap(), parts.next().unwrap(), parts.next().unwrap());
    assert_eq!((d.path.as_str(), d.line.to_string().as_str()), (path, line), "path and line; report:\n{r}");
    assert!(r.contains(&format!("│ {}\n", want.line)), "report shows the line:\n{r}");
    assert_eq!(underlined(&r, want.line).as_deref(), Some(want.under), "carets; report:\n{r}");
    let (start, _) = caret_span(&r, want.line).unwrap();
    assert_eq!((start + 1).to_string(), col, "carets start at the reported column; report:\n{r}");
    assert_eq!(d.label.as_deref(), want.label, "label; report:\n{r}");
    if let Some(l) = want.label {
        assert!(r.contains(&format!(" {l}\n")), "report shows the note:\n{r}");
    }
    if d.token.is_none() {
        // Without a token, the headline and the report agree today.
        assert_eq!(d.headline(), want.headline, "headline; report:\n{r}");
    }
}

/// The one-line form (`jamrig check`'s report and the reload line use the same
/// location): `path:line:col: message`, col being where the carets start.
fn check_headline(d: &Diagnostic, headline: &str) {
    assert_eq!(d.headline(), headline, "headline; report:\n{}", d.render());
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn file_err(path: &Path) -> Diagnostic {
    match host().eval_file(path) {
        Ok(_) => panic!("{} evaluates, expected an error", path.display()),
        Err(d) => d,
    }
}

// ---- Syntax ----

#[test]
fn syntax_error_location() {
    let d = eval_err("tempo(120;\n");
    assert_eq!((d.path.as_str(), d.line, d.column), ("test.rhai", 1, 10));
    assert!(d.message.starts_with("syntax error: "), "{}", d.message);
    let r = d.render();
    assert!(r.contains("┌─ test.rhai:1:10\n"), "{r}");
    assert_eq!(underlined(&r, "tempo(120;").as_deref(), Some(";"), "{r}");
    // A later line.
    let d = eval_err("tempo(120);\nchannel(1, \"organ\";\n");
    assert_eq!((d.line, d.column), (2, 19));
    let d = eval_err("let x = [1, 2;\n");
    assert_eq!(d.headline(), "test.rhai:1:14: syntax error: expecting ',' to separate the items of this array literal");
}

#[test]
fn syntax_error_missing_paren_says_so() {
    let d = eval_err("tempo(120;\n");
    check(
        &d,
        Want {
            headline: "test.rhai:1:10: syntax error: expected ')' to close tempo(...), or ',' before another argument",
            line: "tempo(120;",
            under: ";",
            label: None,
        },
    );
}

#[test]
fn syntax_error_message_is_rhais_translated() {
    let d = eval_err("tempo(120;\n");
    assert_eq!(
        d.headline(),
        "test.rhai:1:10: syntax error: expected ')' to close tempo(...), or ',' before another argument"
    );
    let d = eval_err("const A = 1; A = 2;");
    assert_eq!(d.headline(), "test.rhai:1:14: syntax error: cannot assign to constant A");
}

#[test]
fn headline_column_is_the_underlined_tokens() {
    // The reload line and the REPL print headline(); it must name the same place as
    // the report's `┌─ path:line:col`.
    for (text, headline) in [
        ("channel(1, \"electric_pianno\");", "test.rhai:1:13: unknown instrument \"electric_pianno\""),
        ("drums(10);\npattern(\"beat\", 10, \"rokc\");", "test.rhai:2:22: unknown pattern \"rokc\""),
        ("let c = channel(1, \"synth_bass\", #{ revreb: 0.3 });", "test.rhai:1:37: unknown parameter revreb"),
        ("channel(1, \"synth_bass\", #{ envelope: \"plucky\" });", "test.rhai:1:40: unknown envelope \"plucky\""),
        ("let c = channel(1, \"organ\");\nc.envelope = \"plucky\";", "test.rhai:2:15: unknown envelope \"plucky\""),
        (
            "define_instrument(\"grand\", #{ synth: \"pianno_synth\" });\nchannel(1, \"grand\");",
            "test.rhai:2:13: instrument \"grand\" needs the synth \"pianno_synth\", which jamrig does not have",
        ),
        ("let c = channel(1, \"organ\");\nc.synth = \"moog\";", "test.rhai:2:12: synth \"moog\" is not one jamrig has"),
        ("clock(\"midl\");", "test.rhai:1:8: clock is \"internal\", \"midi\" or \"link\", not \"midl\""),
        ("cc(74, \"revreb\", 0, 1);", "test.rhai:1:9: unknown parameter revreb"),
        (
            "import \"nothere\" as n;",
            "test.rhai:1:9: cannot import \"nothere\": no nothere.rhai beside the set and no stdlib module of that name",
        ),
        (
            "channel(1, \"organ\");\npattern(\"riff\", 1, 4.0, [[0.0, \"H4\", 90]]);",
            "test.rhai:2:33: \"H4\" is neither a note name nor a drum sound",
        ),
    ] {
        let d = eval_err(text);
        let r = d.render();
        let loc = headline.split_once(": ").unwrap().0;
        assert!(r.contains(&format!("┌─ {loc}\n")), "the report names {loc}:\n{r}");
        check_headline(&d, headline);
    }
}

// ---- Names: instruments, patterns, parameters, envelopes, functions, variables ----

#[test]
fn unknown_instrument_suggests() {
    let d = eval_err("channel(1, \"electric_pianno\");");
    check(
        &d,
        Want {
            headline: "test.rhai:1:13: unknown instrument \"electric_pianno\"",
            line: "channel(1, \"electric_pianno\");",
            under: "electric_pianno",
            label: Some("did you mean electric_piano, electric_guitar or electric_guitar_synth?"),
        },
    );
}

#[test]
fn unknown_instrument_message() {
    let d = eval_err("channel(1, \"electric_pianno\");");
    assert_eq!(d.message, "unknown instrument \"electric_pianno\"");
    assert_eq!(d.label.as_deref(), Some("did you mean electric_piano, electric_guitar or electric_guitar_synth?"));
    assert_eq!(underlined(&d.render(), "channel(1, \"electric_pianno\");").as_deref(), Some("electric_pianno"));
    let d = eval_err("channel(1, \"zzzzqqq\");");
    assert_eq!((d.message.as_str(), d.label.as_deref()), ("unknown instrument \"zzzzqqq\"", None));
}

#[test]
fn unknown_pattern_preset() {
    let d = eval_err("drums(10);\npattern(\"beat\", 10, \"rokc\");");
    check(
        &d,
        Want {
            headline: "test.rhai:2:22: unknown pattern \"rokc\"",
            line: "pattern(\"beat\", 10, \"rokc\");",
            under: "rokc",
            label: Some("did you mean rock?"),
        },
    );
}

#[test]
fn unknown_fill_and_pattern_option() {
    let d = eval_err("drums(10);\npattern(\"b\", 10, \"rock\", #{ fill: \"rokc\" });");
    check(
        &d,
        Want {
            headline: "test.rhai:2:36: unknown fill \"rokc\"",
            line: "pattern(\"b\", 10, \"rock\", #{ fill: \"rokc\" });",
            under: "rokc",
            label: Some("did you mean rock or rock crash?"),
        },
    );
    let d = eval_err("drums(10);\npattern(\"b\", 10, \"rock\", #{ fil: \"rock\" });");
    check(
        &d,
        Want {
            headline: "test.rhai:2:29: unknown pattern option fil (options: fill, every)",
            line: "pattern(\"b\", 10, \"rock\", #{ fil: \"rock\" });",
            under: "fil",
            label: Some("did you mean fill?"),
        },
    );
}

#[test]
fn unknown_parameter_in_a_map() {
    let d = eval_err("let c = channel(1, \"synth_bass\", #{ revreb: 0.3 });");
    check(
        &d,
        Want {
            headline: "test.rhai:1:37: unknown parameter revreb",
            line: "let c = channel(1, \"synth_bass\", #{ revreb: 0.3 });",
            under: "revreb",
            label: Some("did you mean reverb, reverb_type or reverb_decay?"),
        },
    );
}

#[test]
fn unknown_parameter_as_a_property() {
    let d = eval_err("let c = channel(1, \"synth_bass\");\nc.revreb = 0.3;");
    check(
        &d,
        Want {
            headline: "test.rhai:2:3: unknown channel property revreb",
            line: "c.revreb = 0.3;",
            under: "revreb",
            label: Some("did you mean reverb, reverb_type or reverb_decay?"),
        },
    );
}

#[test]
fn unknown_parameter_read_as_a_property() {
    let d = eval_err("let c = channel(1, \"synth_bass\");\nprint(c.revreb);");
    check(
        &d,
        Want {
            headline: "test.rhai:2:9: unknown channel property revreb",
            line: "print(c.revreb);",
            under: "revreb",
            label: Some("did you mean reverb, reverb_type or reverb_decay?"),
        },
    );
}

#[test]
fn assigning_to_a_channel_calls_property_says_how() {
    let d = eval_err("channel(3, \"saw\").voices = 64;");
    assert_eq!(
        d.headline(),
        "test.rhai:1:1: syntax error: cannot set a property of channel(...) directly; write ch(3).voices = 64 or let c = channel(3, ...); c.voices = 64"
    );
}

#[test]
fn ch_with_a_bad_channel_says_what_a_channel_is() {
    let d = eval_err("channel(2, \"organ\");\nch(\"two\").reverb = 0.2;");
    assert_eq!(d.message, "a channel must be a number, not text");
    assert_eq!((d.line, d.column), (2, 4));
}

#[test]
fn ch_with_a_channel_out_of_range_or_undeclared() {
    let d = eval_err("channel(2, \"organ\");\nch(17).reverb = 0.2;");
    assert_eq!((d.line, d.message.as_str()), (2, "channel must be a whole number from 1 to 16, not 17"));
    let d = eval_err("ch(3).reverb = 0.2;");
    assert_eq!((d.line, d.message.as_str()), (1, "channel 3 is not in the rig"));
    assert!(d.render().contains("│ ch(3).reverb = 0.2;\n"), "the report shows the line as written:\n{}", d.render());
}

#[test]
fn unknown_property_location() {
    // Whatever the wording, it points at the property.
    let d = eval_err("let c = channel(1, \"synth_bass\");\nc.revreb = 0.3;");
    assert_eq!((d.line, d.column), (2, 3));
    assert!(d.message.contains("revreb"), "{}", d.message);
}

#[test]
fn unknown_envelope() {
    let d = eval_err("channel(1, \"synth_bass\", #{ envelope: \"plucky\" });");
    check(
        &d,
        Want {
            headline: "test.rhai:1:40: unknown envelope \"plucky\"",
            line: "channel(1, \"synth_bass\", #{ envelope: \"plucky\" });",
            under: "plucky",
            label: Some("did you mean pluck?"),
        },
    );
    let d = eval_err("let c = channel(1, \"organ\");\nc.envelope = \"plucky\";");
    assert_eq!((d.line, d.message.as_str()), (2, "unknown envelope \"plucky\""));
    assert_eq!(underlined(&d.render(), "c.envelope = \"plucky\";").as_deref(), Some("plucky"));
    let d = eval_err("let c = channel(1, \"organ\");\nc.envelope = #{ atack: 1.0 };");
    check(
        &d,
        Want {
            headline: "test.rhai:2:17: an envelope has attack, decay, sustain and release, not atack",
            line: "c.envelope = #{ atack: 1.0 };",
            under: "atack",
            label: Some("did you mean attack?"),
        },
    );
}

#[test]
fn unknown_function_suggests() {
    let d = eval_err("chanel(1, \"organ\");");
    check(
        &d,
        Want {
            headline: "test.rhai:1:1: unknown function chanel",
            line: "chanel(1, \"organ\");",
            under: "chanel",
            label: Some("did you mean channel or ch?"),
        },
    );
    let d = eval_err("tempo(120);\n  tmepo(100);");
    assert_eq!(d.headline(), "test.rhai:2:3: unknown function tmepo");
    assert_eq!(d.label.as_deref(), Some("did you mean tempo?"));
}

#[test]
fn wrong_argument_shape() {
    let d = eval_err("channel(\"one\");");
    check(
        &d,
        Want {
            headline: "test.rhai:1:1: channel cannot take (text): expected channel(number, \"instrument\"[, #{ settings }]) or channel(number, #{ synth: ..., ... }) or channel(number, #{ midi_out: \"device\", out_channel: 1 })",
            line: "channel(\"one\");",
            under: "channel",
            label: None,
        },
    );
    let d = eval_err("cc(74, \"lowpass\");");
    assert_eq!(
        d.headline(),
        "test.rhai:1:1: cc cannot take (a whole number, text): expected cc(cc_number, \"parameter\", min, max[, channel | \"any\" | #{ channel: n | \"any\", curve: \"linear\" | \"exp\" }])"
    );
    let d = eval_err("channel(1, #{ lowpass: 300 });");
    assert_eq!(
        d.headline(),
        "test.rhai:1:1: a channel built from a map needs a synth: channel(1, #{ synth: \"saw\", ... })"
    );
}

#[test]
fn unknown_variable() {
    let d = eval_err("tempo(bpm);");
    check(
        &d,
        Want {
            headline: "test.rhai:1:7: unknown variable bpm (declare it with let first)",
            line: "tempo(bpm);",
            under: "bpm",
            label: None,
        },
    );
}

// ---- Values: ranges, types, notes, CCs ----

#[test]
fn value_out_of_range_message() {
    let d = eval_err("channel(1, \"synth_bass\", #{ reverb: 1.5 });");
    assert_eq!(d.message, "reverb is 1.5, outside 0..1");
    assert_eq!(d.line, 1);
    let d = eval_err("let c = channel(1, \"synth_bass\");\nc.lowpass = 5;");
    assert_eq!(d.message, "lowpass is 5, outside 10..20000 Hz (0 turns it off)");
    assert_eq!(d.line, 2);
    let d = eval_err("tempo(1000);");
    assert_eq!(d.headline(), "test.rhai:1:7: tempo is 1000, outside 20..999 BPM");
    let d = eval_err("let c = channel(1, \"organ\");\nc.voices = 300;");
    assert_eq!(d.headline(), "test.rhai:2:3: voices is 300, outside 1..256");
}

#[test]
fn value_out_of_range_points_at_the_parameter() {
    let d = eval_err("channel(1, \"synth_bass\", #{ reverb: 1.5 });");
    check(
        &d,
        Want {
            headline: "test.rhai:1:29: reverb is 1.5, outside 0..1",
            line: "channel(1, \"synth_bass\", #{ reverb: 1.5 });",
            under: "reverb",
            label: None,
        },
    );
    let d = eval_err("let c = channel(1, \"organ\");\nc.reverb = 1.5;");
    check(
        &d,
        Want {
            headline: "test.rhai:2:3: reverb is 1.5, outside 0..1",
            line: "c.reverb = 1.5;",
            under: "reverb",
            label: None,
        },
    );
}

#[test]
fn a_choice_parameter_lists_its_choices() {
    let d = eval_err("channel(1, \"organ\", #{ reverb_type: \"hal\" });");
    check(
        &d,
        Want {
            headline: "test.rhai:1:38: reverb_type must be one of algorithmic, plate, hall, cathedral, spring, cave, parking_garage, canyon, taj_mahal, not \"hal\"",
            line: "channel(1, \"organ\", #{ reverb_type: \"hal\" });",
            under: "hal",
            label: Some("did you mean hall?"),
        },
    );
}

#[test]
fn wrong_type_message() {
    let d = eval_err("tempo(\"fast\");");
    assert_eq!(d.message, "tempo must be a number, not text");
    let d = eval_err("channel(1, \"organ\", #{ reverb: \"wet\" });");
    assert_eq!(d.message, "reverb must be a number, not text");
    let d = eval_err("let c = channel(1, \"organ\");\nc.reverb = \"lots\";");
    assert_eq!(d.headline(), "test.rhai:2:12: reverb must be a number, not text");
    let d = eval_err("let c = channel(1, \"organ\");\nc.legato = 1;");
    assert_eq!(d.headline(), "test.rhai:2:3: legato must be true or false, not a whole number");
}

#[test]
fn wrong_type_points_at_the_value() {
    let d = eval_err("tempo(\"fast\");");
    check(
        &d,
        Want {
            headline: "test.rhai:1:7: tempo must be a number, not text",
            line: "tempo(\"fast\");",
            under: "\"fast\"",
            label: None,
        },
    );
}

#[test]
fn bad_note_name() {
    let d = eval_err("channel(1, \"organ\");\npattern(\"riff\", 1, 4.0, [[0.0, \"H4\", 90]]);");
    check(
        &d,
        Want {
            headline: "test.rhai:2:33: \"H4\" is neither a note name nor a drum sound",
            line: "pattern(\"riff\", 1, 4.0, [[0.0, \"H4\", 90]]);",
            under: "H4",
            label: Some("notes are written like C4, F#2 or Eb3"),
        },
    );
    // On a drum channel, drum names are suggested.
    let d = eval_err("drums(10);\npattern(\"b\", 10, 4.0, [[0.0, \"kik\", 100]]);");
    check(
        &d,
        Want {
            headline: "test.rhai:2:31: \"kik\" is neither a note name nor a drum sound",
            line: "pattern(\"b\", 10, 4.0, [[0.0, \"kik\", 100]]);",
            under: "kik",
            label: Some("did you mean kick?"),
        },
    );
    let d = eval_err("let n = note(\"X9\");");
    check(
        &d,
        Want {
            headline: "test.rhai:1:15: \"X9\" is not a note name (like C4, F#2 or Eb3)",
            line: "let n = note(\"X9\");",
            under: "X9",
            label: None,
        },
    );
    let d = eval_err("channel(1, \"organ\");\npattern(\"riff\", 1, 4.0, [[0.0, 128, 90]]);");
    assert_eq!(d.headline(), "test.rhai:2:32: note 128 is outside the MIDI notes 0..127");
}

/// Regression (issue 13): an unclosed `tempo(` on line 5 was reported at 7:76, where
/// Rhai gave up looking for the `)`. The error points at the call left open.
#[test]
fn an_unclosed_call_is_pointed_at_not_where_the_parser_gave_up() {
    let text = "// a set\nlet keys = channel(1, \"organ\");\nkeys.reverb = 0.3;\ndrums(10);\ntempo(\npattern(\"beat\", 10, \"rock\");\npattern(\"bass\", 2, 4.0, [[0.0, \"E1\", 110, 0.4], [2.5, \"G1\", 100, 0.4]]);\n";
    let d = eval_err(text);
    check(
        &d,
        Want {
            headline: "test.rhai:5:1: syntax error: tempo( is not closed: expected ')' after its arguments",
            line: "tempo(",
            under: "tempo(",
            label: None,
        },
    );
    // On one line, the place the parser stopped is the place to look.
    let d = eval_err("tempo(120;\n");
    assert!(d.headline().starts_with("test.rhai:1:10: "), "{}", d.headline());
    // A missing `;` is shown where it belongs, at the end of its statement.
    let d = eval_err("tempo(120)\n\nchannel(1, \"organ\");\n");
    assert_eq!(d.headline(), "test.rhai:1:11: syntax error: expecting ';' to terminate this statement");
}

/// Regression (issue 13): a bad note in a pattern written over several lines, or
/// in a list built before the call, pointed at the start of the call. It points at
/// the note.
#[test]
fn a_bad_note_in_a_pattern_is_pointed_at() {
    let d = eval_err(
        "channel(1, \"organ\");\npattern(\"bass\", 1, 4.0, [\n  [0.0, \"C4\", 100, 0.4],\n  [1.0, \"Cx4\", 100]\n]);\n",
    );
    check(
        &d,
        Want {
            headline: "test.rhai:4:10: \"Cx4\" is neither a note name nor a drum sound",
            line: "  [1.0, \"Cx4\", 100]",
            under: "Cx4",
            label: Some("notes are written like C4, F#2 or Eb3"),
        },
    );
    let d = eval_err(
        "let notes = [[0.0, \"E1\", 110], [0.75, \"X9\", 80]];\nchannel(1, \"organ\");\npattern(\"bass\", 1, 4.0, notes);\n",
    );
    assert_eq!(d.headline(), "test.rhai:1:40: \"X9\" is neither a note name nor a drum sound");
}

#[test]
fn hit_shapes() {
    let d = eval_err("drums(10);\npattern(\"b\", 10, 4.0, [0.0, \"kick\", 100]);");
    assert_eq!(
        d.headline(),
        "test.rhai:2:1: pattern b: hit 1 must be a list [beat, note, velocity, length], not a number"
    );
    let d = eval_err("drums(10);\npattern(\"b\", 10, 4.0, [[0.0]]);");
    assert_eq!(
        d.headline(),
        "test.rhai:2:1: pattern b: hit 1 must be [beat, note, velocity] or [beat, note, velocity, length]"
    );
    let d = eval_err("drums(10);\npattern(\"b\", 10, 4.0, [[-1.0, \"kick\", 100]]);");
    assert_eq!(d.headline(), "test.rhai:2:1: pattern b: hit 1 is at beat -1, before the pattern starts");
    let d = eval_err("drums(10);\npattern(\"b\", 10, 4.0, [[0.0, \"kick\", 300]]);");
    assert_eq!(d.headline(), "test.rhai:2:1: pattern b: velocity 300 is outside 1..127");
    let d = eval_err("channel(1, \"organ\");\npattern(\"r\", 1, 4.0, [[0.0, \"C4\", 90, 0]]);");
    assert_eq!(
        d.headline(),
        "test.rhai:2:1: pattern r: hit 1 has length 0; lengths are beats, above 0 and at most 1024"
    );
    let d = eval_err("drums(10);\npattern(\"b\", 10, 0, [[0.0, \"kick\", 100]]);");
    assert_eq!(d.headline(), "test.rhai:2:1: pattern b is 0 beats long; a pattern is 1/64 of a beat to 1024 beats");
}

#[test]
fn a_hit_past_the_end_of_a_pattern_is_an_error() {
    let d = eval_err("channel(1, \"organ\");\npattern(\"r\", 1, 4.0, [[0.0, \"C4\", 90], [5.0, \"D4\", 90]]);");
    assert_eq!(d.headline(), "test.rhai:2:1: pattern r: hit 2 is at beat 5, past the pattern's end (4 beats)");
}

#[test]
fn cc_out_of_range_message() {
    let d = eval_err("cc(128, \"lowpass\", 200, 8000);");
    assert_eq!(d.headline(), "test.rhai:1:4: CC number 128 is outside 0..127");
    let d = eval_err("cc(74, \"lowpass\", 200, 80000);");
    assert_eq!(d.headline(), "test.rhai:1:1: cc 74: lowpass is 80000, outside 10..20000 Hz (0 turns it off)");
    let d = eval_err("cc(74, \"revreb\", 0, 1);");
    check(
        &d,
        Want {
            headline: "test.rhai:1:9: unknown parameter revreb",
            line: "cc(74, \"revreb\", 0, 1);",
            under: "revreb",
            label: Some("did you mean reverb, reverb_type or reverb_decay?"),
        },
    );
    let d = eval_err("cc(74, \"reverb\", 0, 1, #{ curve: \"log\" });");
    check(
        &d,
        Want {
            headline: "test.rhai:1:35: curve is \"linear\" or \"exp\", not \"log\"",
            line: "cc(74, \"reverb\", 0, 1, #{ curve: \"log\" });",
            under: "log",
            label: None,
        },
    );
    let d = eval_err("cc(74, \"reverb\", 0, 1, 17);");
    assert_eq!(d.headline(), "test.rhai:1:24: channel must be a whole number from 1 to 16, not 17");
}

#[test]
fn cc_out_of_range_points_at_the_number() {
    let d = eval_err("cc(128, \"lowpass\", 200, 8000);");
    check(
        &d,
        Want {
            headline: "test.rhai:1:4: CC number 128 is outside 0..127",
            line: "cc(128, \"lowpass\", 200, 8000);",
            under: "128",
            label: None,
        },
    );
}

#[test]
fn clock_and_master_choices() {
    let d = eval_err("clock(\"midl\");");
    check(
        &d,
        Want {
            headline: "test.rhai:1:8: clock is \"internal\", \"midi\" or \"link\", not \"midl\"",
            line: "clock(\"midl\");",
            under: "midl",
            label: Some("did you mean midi?"),
        },
    );
    let d = eval_err("master(#{ gian: 1.0 });");
    check(
        &d,
        Want {
            headline: "test.rhai:1:11: master takes gain and mode, not gian",
            line: "master(#{ gian: 1.0 });",
            under: "gian",
            label: Some("did you mean gain?"),
        },
    );
}

// ---- Runaway scripts ----

#[test]
fn runaway_loop() {
    let d = eval_err("let x = 0;\nloop { x += 1; }");
    assert_eq!(d.message, "the script did not finish: it ran past its operation limit (an endless loop?)");
    assert_eq!(d.line, 2);
    let r = d.render();
    assert!(r.contains("│ loop { x += 1; }\n"), "{r}");
    assert!(caret_span(&r, "loop { x += 1; }").is_some(), "{r}");
}

#[test]
fn stack_overflow() {
    let d = eval_err("fn f(x) { f(x + 1) }\nf(0);");
    check(
        &d,
        Want {
            headline: "test.rhai:2:1: functions call each other too deeply (runaway recursion?)",
            line: "f(0);",
            under: "f",
            label: None,
        },
    );
}

#[test]
fn too_much_data_message() {
    let d = eval_err("let a = [0];\nfor i in 0..20 { a += a; }");
    assert_eq!(d.headline(), "test.rhai:2:20: a list grew past 16384 items, more than a set may build");
    let d = eval_err("let s = \"x\";\nfor i in 0..20 { s += s; }");
    assert_eq!(d.headline(), "test.rhai:2:20: a text grew past 65536 characters, more than a set may build");
}

#[test]
fn runtime_errors_in_plain_script() {
    let d = eval_err("let a = [1, 2];\nlet b = a[3];");
    assert_eq!(d.headline(), "test.rhai:2:11: index 3 is outside the list (it has 2 items)");
    let d = eval_err("throw \"oops\";");
    assert_eq!(d.headline(), "test.rhai:1:1: oops");
    let d = eval_err("let x = 1 / 0;");
    assert_eq!(d.headline(), "test.rhai:1:11: division by zero: 1 / 0");
}

// ---- The rig: channels and patterns ----

#[test]
fn channel_declared_twice() {
    let d = eval_err("channel(1, \"organ\");\nchannel(1, \"synth_bass\");");
    check(
        &d,
        Want {
            headline: "test.rhai:2:1: channel 1 is declared twice (first at line 1); change the first declaration instead",
            line: "channel(1, \"synth_bass\");",
            under: "c",
            label: None,
        },
    );
    let d = eval_err("channel(10, \"organ\");\n\n  drums(10);");
    assert_eq!(
        d.headline(),
        "test.rhai:3:3: channel 10 is declared twice (first at line 1); change the first declaration instead"
    );
}

#[test]
fn pattern_on_an_undeclared_channel() {
    let d = eval_err("pattern(\"riff\", 3, 4.0, [[0.0, \"C4\", 90]]);");
    assert_eq!(
        d.headline(),
        "test.rhai:1:1: pattern riff plays on channel 3, which the set has not declared (declare it first)"
    );
    let d = eval_err("pattern(\"beat\", 10, \"rock\");");
    assert_eq!(
        d.headline(),
        "test.rhai:1:1: pattern beat plays on channel 10, which the set has not declared (declare it first)"
    );
    let d = eval_err("let c = ch(3);");
    assert_eq!(d.headline(), "test.rhai:1:9: channel 3 is not in the rig");
}

#[test]
fn drum_sound_on_a_melodic_channel() {
    let d = eval_err("channel(1, \"organ\");\npattern(\"riff\", 1, 4.0, [[0.0, \"kick\", 90]]);");
    assert_eq!(d.headline(), "test.rhai:2:1: pattern riff has drum sounds (kick) but channel 1 plays organ, not drums");
    let d = eval_err("channel(2, \"synth_bass\");\npattern(\"beat\", 2, \"rock\");");
    assert!(d.message.starts_with("pattern beat has drum sounds ("), "{}", d.message);
    assert!(d.message.ends_with(") but channel 2 plays synth_bass, not drums"), "{}", d.message);
}

#[test]
fn preset_whose_synth_is_missing_names_the_synth() {
    let d = eval_err("define_instrument(\"grand\", #{ synth: \"pianno_synth\" });\nchannel(1, \"grand\");");
    check(
        &d,
        Want {
            headline: "test.rhai:2:13: instrument \"grand\" needs the synth \"pianno_synth\", which jamrig does not have",
            line: "channel(1, \"grand\");",
            under: "grand",
            label: Some("did you mean piano_synth, pipe_organ_synth or mandolin_synth?"),
        },
    );
    let d = eval_err("channel(1, #{ synth: \"pianno_synth\" });");
    assert_eq!(d.message, "synth \"pianno_synth\" is not one jamrig has");
    let d = eval_err("let c = channel(1, \"organ\");\nc.synth = \"moog\";");
    assert_eq!((d.line, d.message.as_str()), (2, "synth \"moog\" is not one jamrig has"));
    assert_eq!(underlined(&d.render(), "c.synth = \"moog\";").as_deref(), Some("moog"));
}

// ---- Imports ----

#[test]
fn missing_import() {
    let dir = tempfile::tempdir().unwrap();
    let set = write(dir.path(), "set.rhai", "tempo(100);\nimport \"nothere\" as n;\n");
    let d = file_err(&set);
    let path = set.display().to_string();
    check(
        &d,
        Want {
            headline: &format!(
                "{path}:2:9: cannot import \"nothere\": no nothere.rhai beside the set and no stdlib module of that name"
            ),
            line: "import \"nothere\" as n;",
            under: "nothere",
            label: None,
        },
    );
}

#[test]
fn an_error_inside_an_imported_module_names_the_modules_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let module = write(
        dir.path(),
        "bass.rhai",
        "// Bass helpers.\nfn bass_line(ch) {\n  channel(ch, \"synth_bass\", #{ lowpas: 500 });\n}\n",
    );
    let set = write(dir.path(), "set.rhai", "import \"bass\" as b;\n\nb::bass_line(2);\n");
    let d = file_err(&set);
    check(
        &d,
        Want {
            headline: &format!("{}:3:32: unknown parameter lowpas", module.display()),
            line: "  channel(ch, \"synth_bass\", #{ lowpas: 500 });",
            under: "lowpas",
            label: Some("did you mean lowpass or lowpass_q?"),
        },
    );
    // At the module's top level.
    let module = write(dir.path(), "rig.rhai", "channel(1, \"organ\");\nchannel(1, \"organ\");\n");
    let set = write(dir.path(), "set2.rhai", "import \"rig\";\n");
    let d = file_err(&set);
    assert_eq!(
        d.headline(),
        format!(
            "{}:2:1: channel 1 is declared twice (first at line 1); change the first declaration instead",
            module.display()
        )
    );
    assert!(d.render().contains("│ channel(1, \"organ\");\n"));
    // A syntax error in the module.
    let module = write(dir.path(), "broken.rhai", "fn f() {\n  let a = 1;\n  a +\n}\n");
    let set = write(dir.path(), "set3.rhai", "import \"broken\" as x;\n");
    let d = file_err(&set);
    check(
        &d,
        Want {
            headline: &format!("{}:4:1: syntax error: unexpected '}}'", module.display()),
            line: "}",
            under: "}",
            label: None,
        },
    );
}

#[test]
fn an_import_cycle_is_an_error() {
    // Today this overflows the stack, which aborts the process: run the check in a
    // child process (this test binary again) so that the failure is reported.
    const CHILD: &str = "JAMRIG_IMPORT_CYCLE_CHILD";
    if std::env::var_os(CHILD).is_none() {
        let o = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "an_import_cycle_is_an_error", "--ignored", "--nocapture", "--test-threads=1"])
            .env(CHILD, "1")
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "exit {:?}\n{}{}",
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a.rhai", "import \"b\" as b;\nfn f() { 1 }\n");
    write(dir.path(), "b.rhai", "import \"a\" as a;\nfn g() { 2 }\n");
    let set = write(dir.path(), "set.rhai", "import \"a\" as a;\n");
    let d = file_err(&set);
    assert!(d.message.contains("import") && d.message.contains("cycle"), "{}", d.message);
    // A set that imports itself by name.
    let set = write(dir.path(), "music.rhai", "import \"music\" as m;\n");
    let d = file_err(&set);
    assert!(d.message.contains("import"), "{}", d.message);
}

#[test]
fn stdlib_music_reports_an_unknown_quality() {
    let d = eval_err("import \"music\" as m;\nlet c = m::chord(\"C4\", \"maj9\");");
    assert_eq!(d.message, "unknown chord quality \"maj9\"");
    assert_eq!(d.label.as_deref(), Some("did you mean maj or maj7?"));
    let d = eval_err("import \"music\" as m;\nlet s = m::scale(\"C4\", \"ionian\", 1);");
    assert_eq!(d.message, "unknown scale \"ionian\"");
}

#[test]
fn an_error_in_the_stdlib_music_module_is_shown_at_the_call() {
    // The user's line is what the user can fix, not the library's.
    let d = eval_err("import \"music\" as m;\nlet c = m::chord(\"Q4\", \"maj\");");
    assert_eq!((d.path.as_str(), d.line), ("test.rhai", 2));
    assert_eq!(d.message, "\"Q4\" is not a note name (like C4, F#2 or Eb3)");
    assert!(d.render().contains("m::chord(\"Q4\", \"maj\")"), "{}", d.render());
}

#[test]
fn a_set_file_that_cannot_be_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nothere.rhai");
    let d = file_err(&path);
    assert_eq!((d.line, d.column), (0, 0));
    assert!(d.headline().starts_with(&format!("cannot read {}: ", path.display())), "{}", d.headline());
    assert!(d.render().starts_with(&format!("error: cannot read {}: ", path.display())), "{}", d.render());
    assert_eq!(d.render().lines().count(), 1, "{}", d.render());
}

#[test]
fn eval_is_refused_with_a_clear_message() {
    let d = eval_err("eval(\"tempo(100)\");");
    assert_eq!(d.headline(), "test.rhai:1:1: syntax error: reserved keyword 'eval' is disabled");
}

#[test]
fn sync_points_to_clock() {
    let d = common::eval_err("tempo(120);\nsync(\"midi\");\n");
    assert_eq!(d.line, 2, "{}", d.render());
    assert!(d.message.contains("clock(\"midi\")"), "{}", d.message);
}
