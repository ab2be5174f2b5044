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

    /// Reads lines until `:quit`, end of input or the control thread stops.
    pub fn run(
        mut self,
        tx: Sender<Msg>,
        handles: Arc<Mutex<Option<Handles>>>,
        channels: impl Fn() -> Vec<(u8, String)>,
    ) {
        let prompt = if std::io::stdin().is_terminal() { "jamrig> " } else { "" };
        loop {
            match self.editor.readline(prompt) {
                Ok(line) => {
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
                Err(ReadlineError::Interrupted) => println!("(Ctrl-D or :quit leaves)"),
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
        if !std::io::stdin().is_terminal() {
            println!("{} needs a terminal", line.split_whitespace().next().unwrap_or(line));
            return;
        }
        let Some(h) = handles.lock().unwrap_or_else(|p| p.into_inner()).clone() else { return };
        let words: Vec<&str> = line.split_whitespace().collect();
        let result = if words[0] == ":keys" {
            let ch = words.get(1).and_then(|w| w.parse().ok()).unwrap_or(1);
            let oct = words.get(2).and_then(|w| w.parse().ok()).unwrap_or(4);
            keys::keyboard(&h, ch, oct)
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
}
