//! The REPL thread: reads lines with rustyline (history across runs, completion of
//! commands, functions, parameters and preset names; piped stdin works too) and
//! hands them to the control thread. `:keys` and `:meters` run here, on the terminal.

use super::control::{COMMANDS, Handles, Msg};
use super::keys;
use crate::params::PARAMS;
use crate::script::api::{CHANNEL_PROPERTIES, FUNCTIONS};
use crate::script::library::Library;
use crossbeam_channel::Sender;
use rustyline::completion::{Completer, Pair};
use rustyline::error::ReadlineError;
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::history::DefaultHistory;
use rustyline::validate::Validator;
use rustyline::{Context, Editor, Helper};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// Completion candidates.
pub struct Names {
    commands: Vec<String>,
    code: Vec<String>,
    quoted: Vec<String>,
}

impl Names {
    pub fn new(lib: &Library) -> Self {
        let commands = COMMANDS.iter().map(|(c, _)| c.split(' ').next().unwrap_or(c).to_string()).collect();
        let code = FUNCTIONS
            .iter()
            .chain(crate::script::patterns::FUNCTIONS)
            .map(|s| s.to_string())
            .chain(PARAMS.iter().map(|p| p.name.to_string()))
            .chain(CHANNEL_PROPERTIES.iter().map(|s| s.to_string()))
            .collect();
        let quoted = lib
            .instruments
            .keys()
            .chain(lib.patterns.keys())
            .chain(lib.fills.keys())
            .chain(lib.drum_sounds.keys())
            .chain(lib.envelopes.keys())
            .cloned()
            .chain(crate::engine::synth::SYNTHS.iter().map(|s| s.name.to_string()))
            .collect();
        Names { commands, code, quoted }
    }

    /// Start of the word being completed and the candidates.
    pub fn complete(&self, line: &str, pos: usize) -> (usize, Vec<String>) {
        let head = &line[..pos];
        // A command's argument: its choices.
        if let Some(rest) = head.trim_start().strip_prefix(':')
            && let Some((cmd, _)) = rest.split_once(' ')
        {
            let start = head.rfind(' ').map(|i| i + 1).unwrap_or(pos);
            let word = &head[start..];
            let choices: &[&str] = match cmd {
                "sync" => &["internal", "midi", "link"],
                "log" | "watch" => &["on", "off"],
                "rec" if !rest.trim_start_matches("rec").trim_start().contains(' ') => &["patterns", "stop", "save"],
                _ => &[],
            };
            let out = choices.iter().filter(|c| c.starts_with(word)).map(|c| c.to_string()).collect();
            return (start, out);
        }
        let quotes = head.matches('"').count();
        let in_string = quotes % 2 == 1;
        let start = if in_string {
            head.rfind('"').map(|i| i + 1).unwrap_or(0)
        } else {
            head.rfind(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':')).map(|i| i + 1).unwrap_or(0)
        };
        let word = &head[start..];
        let pool = if in_string {
            &self.quoted
        } else if word.starts_with(':') {
            &self.commands
        } else {
            &self.code
        };
        let mut out: Vec<String> = pool.iter().filter(|n| n.starts_with(word)).cloned().collect();
        out.sort();
        out.dedup();
        (start, out)
    }
}

struct ReplHelper(Names);

impl Completer for ReplHelper {
    type Candidate = Pair;
    fn complete(&self, line: &str, pos: usize, _: &Context<'_>) -> rustyline::Result<(usize, Vec<Pair>)> {
        let (start, names) = self.0.complete(line, pos);
        Ok((start, names.into_iter().map(|n| Pair { display: n.clone(), replacement: n }).collect()))
    }
}
impl Hinter for ReplHelper {
    type Hint = String;
}
impl Highlighter for ReplHelper {}
impl Validator for ReplHelper {}
impl Helper for ReplHelper {}

/// Brackets (`(`, `[`, `{`) opened and not yet closed in `text`, outside strings
/// and comments: more than zero means the statement goes on on the next line.
pub fn open_brackets(text: &str) -> i32 {
    let mut depth = 0i32;
    let mut chars = text.chars().peekable();
    let mut quote: Option<char> = None;
    let mut block = false;
    while let Some(c) = chars.next() {
        match (quote, block, c) {
            (Some(q), _, '\\') if q != '`' => {
                chars.next();
            }
            (Some(q), _, x) if x == q => quote = None,
            (Some(_), _, _) => {}
            (None, true, '*') if chars.peek() == Some(&'/') => {
                chars.next();
                block = false;
            }
            (None, true, _) => {}
            (None, false, '/') if chars.peek() == Some(&'/') => {
                while chars.peek().is_some_and(|&n| n != '\n') {
                    chars.next();
                }
            }
            (None, false, '/') if chars.peek() == Some(&'*') => {
                chars.next();
                block = true;
            }
            (None, false, '"' | '`' | '\'') => quote = Some(c),
            (None, false, '(' | '[' | '{') => depth += 1,
            (None, false, ')' | ']' | '}') => depth -= 1,
            _ => {}
        }
    }
    depth
}

fn history_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))?;
    let dir = base.join("jamrig");
    std::fs::create_dir_all(&dir).ok()?;
    Some(dir.join("history"))
}

pub struct Repl {
    editor: Editor<ReplHelper, DefaultHistory>,
    history: Option<PathBuf>,
}

impl Repl {
    pub fn new(names: Names) -> rustyline::Result<Repl> {
        let mut editor = Editor::with_config(rustyline::Config::builder().auto_add_history(false).build())?;
        editor.set_helper(Some(ReplHelper(names)));
        let history = history_path();
        if let Some(h) = &history {
            let _ = editor.load_history(h);
        }
        Ok(Repl { editor, history })
    }

    /// A printer that writes above the prompt (terminal), or plain stdout (piped).
    pub fn printer(&mut self) -> Box<dyn FnMut(&str) + Send> {
        if std::io::stdin().is_terminal()
            && let Ok(mut p) = self.editor.create_external_printer()
        {
            use rustyline::ExternalPrinter;
            return Box::new(move |s: &str| {
                let _ = p.print(format!("{s}\n"));
            });
        }
        Box::new(|s: &str| println!("{s}"))
    }

    /// Reads lines until `:quit`, end of input or the control thread stops. A line
    /// that leaves a bracket open (`{`, `(`, `[`) goes on on the next.
    pub fn run(
        mut self,
        tx: Sender<Msg>,
        handles: Arc<Mutex<Option<Handles>>>,
        channels: impl Fn() -> Vec<(u8, String)>,
    ) {
        let terminal = std::io::stdin().is_terminal();
        let (prompt, more) = if terminal { ("jamrig> ", "   ...> ") } else { ("", "") };
        let mut pending = String::new();
        loop {
            match self.editor.readline(if pending.is_empty() { prompt } else { more }) {
                Ok(line) => {
                    if !pending.is_empty() {
                        pending.push('\n');
                    }
                    pending.push_str(&line);
                    if !pending.trim_start().starts_with(':') && open_brackets(&pending) > 0 {
                        continue;
                    }
                    let line = std::mem::take(&mut pending);
                    let trimmed = line.trim();
                    if trimmed.is_empty() {
                        continue;
                    }
                    let _ = self.editor.add_history_entry(trimmed);
                    if let Some(h) = &self.history {
                        let _ = self.editor.save_history(h);
                    }
                    if trimmed.starts_with(":keys") || trimmed.starts_with(":meters") {
                        self.terminal_command(trimmed, &handles, &channels);
                        continue;
                    }
                    let (reply_tx, reply_rx) = crossbeam_channel::bounded(1);
                    if tx.send(Msg::Line(trimmed.to_string(), reply_tx)).is_err() {
                        break;
                    }
                    match reply_rx.recv() {
                        Ok(true) => {}
                        _ => break,
                    }
                }
                Err(ReadlineError::Interrupted) => {
                    pending.clear();
                    println!("(Ctrl-D or :quit leaves)");
                }
                Err(e) => {
                    if matches!(e, ReadlineError::Eof) && !std::io::stdin().is_terminal() {
                        println!("end of input: stopping (--no-repl plays on without reading stdin)");
                    }
                    let _ = tx.send(Msg::Quit);
                    break;
                }
            }
        }
    }

    fn terminal_command(
        &self,
        line: &str,
        handles: &Arc<Mutex<Option<Handles>>>,
        channels: &impl Fn() -> Vec<(u8, String)>,
    ) {
        let words: Vec<&str> = line.split_whitespace().collect();
        if words[0] == ":keys"
            && let Err(e) = super::control::keys_args(&words[1..])
        {
            println!("{e}");
            return;
        }
        if !std::io::stdin().is_terminal() {
            println!("{} needs a terminal", words[0]);
            return;
        }
        let Some(h) = handles.lock().unwrap_or_else(|p| p.into_inner()).clone() else { return };
        let result = if words[0] == ":keys" {
            match super::control::keys_args(&words[1..]) {
                Ok((ch, oct)) => keys::keyboard(&h, ch, oct),
                Err(e) => {
                    println!("{e}");
                    return;
                }
            }
        } else {
            keys::meters(&h, &channels())
        };
        if let Err(e) = result {
            println!("{}: {e}", words[0]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Names {
        let mut lib = Library::default();
        lib.instruments.insert(
            "synth_bass".into(),
            crate::script::library::InstrumentDef { synth: "saw".into(), envelope: None, params: vec![] },
        );
        lib.patterns
            .insert("rock".into(), crate::script::library::PatternDef { beats: 4.0, meter: None, hits: vec![] });
        Names::new(&lib)
    }

    #[test]
    fn completes_commands_parameters_and_names() {
        let n = names();
        assert_eq!(n.complete(":sta", 4), (0, vec![":status".to_string()]));
        let (start, c) = n.complete("ch(2).lowp", 10);
        assert_eq!(start, 6);
        assert!(c.contains(&"lowpass".to_string()) && c.contains(&"lowpass_q".to_string()));
        let (start, c) = n.complete("channel(2, \"synth_b", 19);
        assert_eq!((start, c), (12, vec!["synth_bass".to_string()]));
        let (_, c) = n.complete("pattern(\"b\", 10, \"ro", 20);
        assert_eq!(c, vec!["rock".to_string()]);
    }

    /// Regression (issue 13): a line that opened a brace was evaluated alone (and
    /// failed); it goes on until the brackets close. Brackets in strings and
    /// comments do not count.
    #[test]
    fn an_open_bracket_continues_the_line() {
        assert_eq!(open_brackets("if true {"), 1);
        assert_eq!(open_brackets("if true {\n  ch(1).volume = 0.3;\n}"), 0);
        assert_eq!(open_brackets("pattern(\"bass\", 2, 4.0, ["), 2);
        assert_eq!(open_brackets("print(\"{ not a brace\"); // nor this {"), 0);
        assert_eq!(open_brackets("let s = \"a \\\" {\"; /* { */"), 0);
    }

    /// Regression (issue 13): completion offered command names after a command;
    /// a command's argument completes from its own choices.
    #[test]
    fn command_arguments_complete_from_their_choices() {
        let n = names();
        assert_eq!(n.complete(":sync l", 7), (6, vec!["link".to_string()]));
        assert_eq!(n.complete(":sync ", 6), (6, vec!["internal".into(), "midi".into(), "link".into()]));
        assert_eq!(n.complete(":log o", 6), (5, vec!["on".to_string(), "off".to_string()]));
        assert_eq!(n.complete(":watch of", 9), (7, vec!["off".to_string()]));
        assert_eq!(n.complete(":rec s", 6), (5, vec!["stop".to_string(), "save".to_string()]));
        assert_eq!(n.complete(":rec save ta", 12).1, Vec::<String>::new());
        assert_eq!(n.complete(":tempo 1", 8).1, Vec::<String>::new());
    }
}
