//! Script diagnostics: every error names `path:line:col`, shows the source line with
//! a caret and says in one sentence what was expected. Rhai's errors are translated
//! here; the report is rendered by codespan-reporting. Control thread.

use super::api::ApiError;
use codespan_reporting::diagnostic::{Diagnostic as Report, Label};
use codespan_reporting::files::SimpleFile;
use codespan_reporting::term::{self, Config};
use rhai::{EvalAltResult, ParseError, Position};
use std::fmt;

/// A located error in a set (or one of its imports).
#[derive(Clone, Debug, PartialEq)]
pub struct Diagnostic {
    /// The file as the user named it.
    pub path: String,
    /// The file's text (empty if it could not be read).
    pub source: String,
    /// 1-based line and column (0 = unknown).
    pub line: usize,
    pub column: usize,
    pub message: String,
    /// Text to underline, searched for from the column on (defaults to one character).
    pub token: Option<String>,
    /// A short note under the caret ("did you mean ...?").
    pub label: Option<String>,
}

/// The most characters of a source line a report shows (a longer line is cut
/// around the caret).
pub const MAX_SHOWN_LINE_CHARS: usize = 160;

impl Diagnostic {
    /// An error about a whole file (it cannot be read, or is not a set).
    pub fn whole_file(path: &str, message: impl Into<String>) -> Self {
        Diagnostic {
            path: path.to_string(),
            source: String::new(),
            line: 0,
            column: 0,
            message: message.into(),
            token: None,
            label: None,
        }
    }

    /// An error at 1-based `line` and `column` (in characters) of `source`.
    pub fn at(path: &str, source: &str, line: usize, column: usize, message: impl Into<String>) -> Self {
        Diagnostic { line, column, ..Diagnostic::new(path, source, Position::NONE, message) }
    }

    pub fn new(path: &str, source: &str, pos: Position, message: impl Into<String>) -> Self {
        Diagnostic {
            path: path.to_string(),
            source: source.to_string(),
            line: pos.line().unwrap_or(0),
            column: pos.position().unwrap_or(0),
            message: message.into(),
            token: None,
            label: None,
        }
    }

    /// `path:line:col: message` on one line (the column of the underlined text);
    /// `path: message` for an error about the whole file.
    pub fn headline(&self) -> String {
        if self.line > 0 {
            let (line, column) = self.underlined_position();
            format!("{}:{}:{}: {}", self.path, line, column, self.message)
        } else if self.message.contains(&self.path) {
            self.message.clone()
        } else {
            format!("{}: {}", self.path, self.message)
        }
    }

    /// 1-based column (in characters) where the underline starts.
    pub fn underlined_column(&self) -> usize {
        self.underlined_position().1
    }

    /// 1-based line and column (in characters) where the underline starts (the
    /// text it underlines may be on another line than the error's, e.g. a note in
    /// a list written over several lines).
    pub fn underlined_position(&self) -> (usize, usize) {
        match self.span() {
            Some(span) => {
                let line_start = self.source[..span.start].rfind('\n').map(|i| i + 1).unwrap_or(0);
                let line = self.source[..span.start].matches('\n').count() + 1;
                (line, self.source[line_start..span.start].chars().count() + 1)
            }
            None => (self.line, self.column.max(1)),
        }
    }

    /// Moves the error to where its underline starts.
    fn locate(&mut self) {
        if self.line > 0 {
            (self.line, self.column) = self.underlined_position();
        }
    }

    /// Byte range to underline.
    fn span(&self) -> Option<std::ops::Range<usize>> {
        if self.line == 0 {
            return None;
        }
        let start_of_line = self.source.split_inclusive('\n').take(self.line - 1).map(str::len).sum::<usize>();
        let line = self.source[start_of_line..].lines().next().unwrap_or("");
        let col_byte = line.char_indices().nth(self.column.saturating_sub(1)).map(|(i, _)| i).unwrap_or(line.len());
        if let Some(tok) = &self.token {
            // On the line, from the column on, then anywhere on it; else where the
            // statement goes on (a list over several lines), else anywhere before
            // (a value built earlier). A quoted token is looked for in its quotes
            // first, so that a name is not found inside another.
            let quoted = format!("\"{tok}\"");
            for want in [quoted.as_str(), tok.as_str()] {
                let on_line = line[col_byte..].find(want).map(|i| i + col_byte).or_else(|| line.find(want));
                let found = on_line.map(|i| start_of_line + i).or_else(|| {
                    self.source[start_of_line..]
                        .find(want)
                        .map(|i| start_of_line + i)
                        .or_else(|| self.source.find(want))
                });
                if let Some(at) = found {
                    let at = if want == quoted { at + 1 } else { at };
                    return Some(at..at + tok.len());
                }
            }
        }
        let width = line[col_byte..].chars().next().map(char::len_utf8).unwrap_or(0);
        Some(start_of_line + col_byte..start_of_line + col_byte + width)
    }

    /// The full report: header, `path:line:col`, the line, a caret under the culprit.
    pub fn render(&self) -> String {
        let Some(span) = self.span() else {
            return format!("error: {}\n", self.headline());
        };
        let (source, span) = self.shown_source(span);
        let file = SimpleFile::new(self.path.as_str(), source.as_str());
        let mut label = Label::primary((), span);
        if let Some(l) = &self.label {
            label = label.with_message(l.clone());
        }
        let report = Report::error().with_message(&self.message).with_labels(vec![label]);
        term::emit_into_string(&Config::default(), &file, &report).unwrap_or_else(|_| self.headline())
    }
}

impl Diagnostic {
    /// The source as the report shows it: a line longer than
    /// [`MAX_SHOWN_LINE_CHARS`] is cut to that many characters around `span` (the
    /// lines before it are kept empty, so the line number stays right).
    fn shown_source(&self, span: std::ops::Range<usize>) -> (String, std::ops::Range<usize>) {
        let src = self.source.as_str();
        let start = src[..span.start].rfind('\n').map_or(0, |i| i + 1);
        let end = src[span.start..].find('\n').map_or(src.len(), |i| span.start + i);
        let line = &src[start..end];
        if line.chars().count() <= MAX_SHOWN_LINE_CHARS {
            return (self.source.clone(), span);
        }
        // Byte offsets of a window of characters around the caret.
        let caret_char = src[start..span.start].chars().count();
        let first = caret_char.saturating_sub(MAX_SHOWN_LINE_CHARS / 2);
        let byte_of = |c: usize| line.char_indices().nth(c).map_or(line.len(), |(i, _)| i);
        let (a, b) = (byte_of(first), byte_of(first + MAX_SHOWN_LINE_CHARS));
        let lead = if a > 0 { "..." } else { "" };
        let tail = if b < line.len() { "..." } else { "" };
        let mut out = "\n".repeat(self.line.saturating_sub(1));
        let offset = out.len() + lead.len();
        out.push_str(lead);
        out.push_str(&line[a..b]);
        out.push_str(tail);
        let from = offset + (span.start - start - a);
        let to = offset + (span.end.min(start + b) - start - a);
        (out, from..to)
    }

    /// The report's quoted line and caret alone (after a line that already gives
    /// the message and `path:line:col`); empty when there is no line to show.
    pub fn render_snippet(&self) -> String {
        if self.span().is_none() {
            return String::new();
        }
        let full = self.render();
        let mut lines = full.lines().skip_while(|l| !l.contains('┌')).skip(1).peekable();
        // The bare gutter line under the location.
        lines.next_if(|l| l.trim() == "│");
        lines.collect::<Vec<_>>().join("\n")
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render())
    }
}

impl std::error::Error for Diagnostic {}

/// The closest of `candidates` to `word`, if close enough to be a likely typo.
pub fn suggest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let w = word.to_lowercase();
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(&w, &c.to_lowercase()), c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// Up to three close names, for "did you mean" notes.
pub fn suggest_many<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
    let w = word.to_lowercase();
    let mut scored: Vec<(f64, &str)> = candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(&w, &c.to_lowercase()), c))
        .filter(|(s, _)| *s > 0.75)
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0));
    scored.into_iter().take(3).map(|(_, c)| c).collect()
}

/// "did you mean x?" / "did you mean x, y or z?"
pub fn did_you_mean(names: &[&str]) -> Option<String> {
    match names {
        [] => None,
        [one] => Some(format!("did you mean {one}?")),
        [init @ .., last] => Some(format!("did you mean {} or {last}?", init.join(", "))),
    }
}

/// Where a script came from: its path and text, for locating errors.
pub trait Sources {
    /// The text of `path` (the set or a module it imported), if known.
    fn text_of(&self, path: &str) -> Option<String>;
    /// The main script's path.
    fn main_path(&self) -> &str;
}

/// Translates a Rhai syntax error.
pub fn from_parse_error(err: &ParseError, path: &str, source: &str) -> Diagnostic {
    let mut d = Diagnostic::new(path, source, err.position(), String::new());
    let raw = err.err_type().to_string();
    d.message =
        if raw.starts_with("Expression cannot be assigned to") || raw.starts_with("expression cannot be assigned to") {
            let line = source.lines().nth(d.line.saturating_sub(1)).unwrap_or("");
            format!("syntax error: {}", assignment_help(line))
        } else {
            format!("syntax error: {}", syntax_message(&raw))
        };
    d.column = d.underlined_column();
    if d.message.contains("expected ')'")
        && let Some((line, column, name)) = unclosed_call(source, d.line, d.column)
        && line < d.line
    {
        // Rhai read on to the next lines looking for the `)`: point at the call
        // whose parenthesis is not closed.
        d.message = format!("syntax error: {name}( is not closed: expected ')' after its arguments");
        d.line = line;
        d.column = column;
        d.token = Some(format!("{name}("));
    } else if d.message.contains("expecting ';'") && d.column <= 1 && d.line > 1 {
        // The `;` is missing at the end of the previous statement: point there.
        let previous = (1..d.line).rev().find(|&l| source.lines().nth(l - 1).is_some_and(|t| !t.trim().is_empty()));
        if let Some(l) = previous {
            d.line = l;
            d.column = source.lines().nth(l - 1).map(|t| t.trim_end().chars().count() + 1).unwrap_or(1);
        }
    }
    d
}

/// The innermost call whose `(` is still open at `line`:`column` (1-based, in
/// characters) of `source`: its line, column and name. Strings and comments are
/// skipped.
fn unclosed_call(source: &str, line: usize, column: usize) -> Option<(usize, usize, String)> {
    let mut open: Vec<(usize, usize, usize)> = Vec::new(); // (byte, line, column) of each '('
    let mut chars = source.char_indices().peekable();
    let (mut l, mut c) = (1usize, 0usize);
    let mut quote: Option<char> = None;
    let mut block = false;
    while let Some((i, ch)) = chars.next() {
        if ch == '\n' {
            l += 1;
            c = 0;
            continue;
        }
        c += 1;
        if l > line || (l == line && c >= column) {
            break;
        }
        let next = chars.peek().map(|&(_, n)| n);
        match (quote, block, ch) {
            (Some(q), _, '\\') if q != '`' => {
                chars.next();
                c += 1;
            }
            (Some(q), _, x) if x == q => quote = None,
            (Some(_), _, _) => {}
            (None, true, '*') if next == Some('/') => {
                chars.next();
                c += 1;
                block = false;
            }
            (None, true, _) => {}
            (None, false, '/') if next == Some('/') => {
                // A line comment: skip to the end of the line.
                while chars.peek().is_some_and(|&(_, n)| n != '\n') {
                    chars.next();
                }
            }
            (None, false, '/') if next == Some('*') => {
                chars.next();
                c += 1;
                block = true;
            }
            (None, false, '"' | '`' | '\'') => quote = Some(ch),
            (None, false, '(') => open.push((i, l, c)),
            (None, false, ')') => {
                open.pop();
            }
            _ => {}
        }
    }
    let (byte, l, c) = *open.last()?;
    let name: String = source[..byte]
        .chars()
        .rev()
        .take_while(|ch| ch.is_alphanumeric() || *ch == '_')
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    if name.is_empty() {
        return None;
    }
    let name_chars = name.chars().count();
    Some((l, c - name_chars, name))
}

/// Rhai's syntax messages, in the words of this project.
fn syntax_message(raw: &str) -> String {
    let msg = sentence(raw);
    if msg.starts_with("'sync' is a reserved keyword") {
        // Rhai keeps `sync` for itself: the function is `clock`.
        return "'sync' is a reserved word in Rhai: the transport's source is chosen with clock(\"internal\"), clock(\"midi\") or clock(\"link\", quantum)".into();
    }
    if let Some(rest) = msg.split("to separate the arguments to function call '").nth(1) {
        let f = rest.trim_end_matches('\'');
        return format!("expected ')' to close {f}(...), or ',' before another argument");
    }
    msg
}

/// For `channel(3, "saw").voices = 64`: say how to write it instead.
fn assignment_help(line: &str) -> String {
    let t = line.trim().trim_end_matches(';');
    let parsed = (|| {
        let (call, rest) = t.split_once(").")?;
        let (func, args) = call.split_once('(')?;
        let n = args.split(',').next()?.trim();
        let (prop, value) = rest.split_once('=')?;
        let (func, prop, value) = (func.trim(), prop.trim(), value.trim());
        (matches!(func, "channel" | "drums") && n.parse::<u8>().is_ok() && !prop.is_empty())
            .then(|| format!("cannot set a property of {func}(...) directly; write ch({n}).{prop} = {value} or let c = {func}({n}, ...); c.{prop} = {value}"))
    })();
    parsed.unwrap_or_else(|| {
        "cannot assign to the result of a call; assign through a variable (let c = ...; c.x = ...) or ch(N).x = ..."
            .into()
    })
}

fn sentence(s: &str) -> String {
    let s = s.trim().trim_end_matches('.');
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

/// Names a Rhai type the way a musician would read it.
fn type_word(t: &str) -> &'static str {
    let t = t.trim();
    if t.contains("ImmutableString") || t.contains("&str") || t.contains("String") || t == "string" {
        "text"
    } else if t == "i64" || t == "i32" || t == "int" {
        "a whole number"
    } else if t == "f64" || t == "f32" || t == "float" {
        "a number"
    } else if t.contains("Array") || t == "array" {
        "a list [...]"
    } else if t.contains("Map") || t == "map" {
        "a map #{...}"
    } else if t == "bool" {
        "true/false"
    } else if t.contains("ChannelRef") || t == "Channel" {
        "a channel"
    } else if t == "()" {
        "nothing"
    } else {
        "a value"
    }
}

/// Translates a Rhai evaluation error into a diagnostic located in the right file.
/// `usage` gives the signature help for an API function name.
pub fn from_eval_error(
    err: &EvalAltResult,
    sources: &dyn Sources,
    functions: &[&str],
    usage: &dyn Fn(&str) -> Option<&'static str>,
) -> Diagnostic {
    // Unwrap to the innermost error, tracking the file it happened in; errors inside
    // the stdlib's own modules are shown where the user's script called them.
    let mut file = sources.main_path().to_string();
    let mut e = err;
    let mut outer_pos = e.position();
    let mut user: Option<(String, Position)> = None;
    loop {
        let (next_file, next_pos, inner) = match e {
            EvalAltResult::ErrorInModule(name, inner, _) => (name.clone(), inner.position(), inner),
            EvalAltResult::ErrorInFunctionCall(_, src, inner, pos) => {
                let f = if src.is_empty() { file.clone() } else { src.clone() };
                (f, if inner.position().is_none() { *pos } else { inner.position() }, inner)
            }
            _ => break,
        };
        if next_file.starts_with("stdlib/") && !file.starts_with("stdlib/") && user.is_none() {
            user = Some((file.clone(), if e.position().is_none() { outer_pos } else { e.position() }));
        }
        file = next_file;
        outer_pos = next_pos;
        e = inner;
    }
    let mut pos = if e.position().is_none() { outer_pos } else { e.position() };
    if let Some((f, p)) = user {
        file = f;
        pos = p;
    }
    let text = sources.text_of(&file).unwrap_or_default();
    let mut d = Diagnostic::new(&file, &text, pos, String::new());
    match e {
        EvalAltResult::ErrorRuntime(v, _) => {
            if let Some(api) = v.clone().try_cast::<ApiError>() {
                d.message = api.message;
                d.token = api.token;
                d.label = api.help;
            } else if let Some(m) = v.clone().try_cast::<super::patterns::MiniFailure>() {
                super::patterns::locate(&mut d, &m);
            } else if v.is_string() {
                d.message = sentence(&v.to_string());
            } else if let Some(m) = v.clone().try_cast::<rhai::Map>() {
                // `throw #{ unknown: "chord quality", name: "maj9", options: [...] }`
                let get = |k: &str| m.get(k).map(|v| v.to_string());
                match (get("unknown"), get("name")) {
                    (Some(what), Some(name)) => {
                        d.message = format!("unknown {what} \"{name}\"");
                        let options: Vec<String> = m
                            .get("options")
                            .and_then(|o| o.clone().try_cast::<rhai::Array>())
                            .map(|a| a.iter().map(|x| x.to_string()).collect())
                            .unwrap_or_default();
                        d.label = did_you_mean(&suggest_many(&name, options.iter().map(String::as_str)));
                    }
                    _ => d.message = format!("the script stopped: {v}"),
                }
            } else {
                d.message = format!("the script stopped: {v}");
            }
        }
        EvalAltResult::ErrorParsing(p, _) => d.message = format!("syntax error: {}", syntax_message(&p.to_string())),
        EvalAltResult::ErrorFunctionNotFound(sig, _) => {
            let name = sig.split([' ', '(']).next().unwrap_or(sig).to_string();
            let args: Vec<&str> = sig
                .find('(')
                .map(|i| sig[i + 1..].trim_end_matches(')').split(',').filter(|s| !s.trim().is_empty()).collect())
                .unwrap_or_default();
            if let Some(prop) = name.strip_prefix("set$").or_else(|| name.strip_prefix("get$")) {
                let names: Vec<&str> = crate::params::PARAMS
                    .iter()
                    .map(|p| p.name)
                    .chain(super::api::CHANNEL_PROPERTIES.iter().copied())
                    .collect();
                if args.first().is_some_and(|a| a.contains("ChannelRef")) {
                    d.message = format!("unknown channel property {prop}");
                    d.label = did_you_mean(&suggest_many(prop, names));
                } else {
                    d.message =
                        format!("{prop} is not a property of {}", type_word(args.first().copied().unwrap_or("")));
                }
                d.token = Some(prop.to_string());
            } else if let Some(help) = usage(&name) {
                let kinds: Vec<&str> = args.iter().map(|a| type_word(a)).collect();
                d.message = format!("{name} cannot take ({}): expected {help}", kinds.join(", "));
                d.token = Some(name);
            } else {
                d.message = format!("unknown function {name}");
                d.label = did_you_mean(&suggest_many(&name, functions.iter().copied()));
                d.token = Some(name);
            }
        }
        EvalAltResult::ErrorVariableNotFound(name, _) => {
            d.message = format!("unknown variable {name} (declare it with let first)");
            d.token = Some(name.clone());
        }
        EvalAltResult::ErrorPropertyNotFound(name, _) => {
            d.message = format!("unknown property {name}");
            d.token = Some(name.clone());
        }
        EvalAltResult::ErrorModuleNotFound(name, _) => {
            d.message =
                format!("cannot import \"{name}\": no {name}.rhai beside the set and no stdlib module of that name");
            d.token = Some(name.clone());
        }
        EvalAltResult::ErrorTooManyOperations(_) => {
            d.message = "the script did not finish: it ran past its operation limit (an endless loop?)".into();
        }
        EvalAltResult::ErrorTerminated(why, _)
            if why.clone().into_string().is_ok_and(|w| w == super::TOOK_TOO_LONG) =>
        {
            d.message = format!(
                "the script ran for more than {} s (a loop over large lists or texts?)",
                super::MAX_EVAL_SECONDS
            );
        }
        EvalAltResult::ErrorTerminated(..) => {
            d.message = format!(
                "the script took more than {} MiB of memory while it ran, more than a set may build",
                super::memory::MAX_SCRIPT_BYTES / (1024 * 1024)
            );
        }
        EvalAltResult::ErrorStackOverflow(_) => {
            d.message = "functions call each other too deeply (runaway recursion?)".into();
        }
        EvalAltResult::ErrorDataTooLarge(what, _) => {
            d.message = if what.contains("array") {
                format!("a list grew past {} items, more than a set may build", super::MAX_ARRAY_LEN)
            } else if what.contains("string") {
                format!("a text grew past {} characters, more than a set may build", super::MAX_STRING_LEN)
            } else if what.contains("map") {
                format!("a map grew past {} entries, more than a set may build", super::MAX_MAP_LEN)
            } else {
                format!("{} is more than a set may build", sentence(what))
            }
        }
        EvalAltResult::ErrorTooManyModules(_) => d.message = "too many imports".into(),
        EvalAltResult::ErrorTooManyVariables(_) => d.message = "too many variables".into(),
        EvalAltResult::ErrorMismatchDataType(want, got, _) | EvalAltResult::ErrorMismatchOutputType(want, got, _) => {
            d.message = format!("expected {}, found {}", type_word(want), type_word(got));
        }
        EvalAltResult::ErrorArithmetic(msg, _) => d.message = sentence(msg),
        EvalAltResult::ErrorArrayBounds(len, i, _) => {
            d.message = format!("index {i} is outside the list (it has {len} items)")
        }
        EvalAltResult::ErrorIndexingType(t, _) => d.message = format!("{} cannot be indexed", type_word(t)),
        EvalAltResult::ErrorAssignmentToConstant(name, _) => {
            d.message = format!("{name} is a constant and cannot change")
        }
        EvalAltResult::ErrorDotExpr(msg, _) => {
            // "no writable property 'x' - a setter is not registered for type 'Channel' ..."
            // "unknown property 'x' - a getter is not registered for type 'Channel'"
            let quoted: Vec<&str> = msg.split('\'').skip(1).step_by(2).collect();
            match quoted.as_slice() {
                [prop, ty, ..] if *ty == "Channel" => {
                    let names = crate::params::PARAMS
                        .iter()
                        .map(|p| p.name)
                        .chain(super::api::CHANNEL_PROPERTIES.iter().copied());
                    d.message = format!("unknown channel property {prop}");
                    d.label = did_you_mean(&suggest_many(prop, names));
                    d.token = Some(prop.to_string());
                }
                [prop, ty, ..] => {
                    d.message = format!("{} has no property {prop}", type_word(ty));
                    d.token = Some(prop.to_string());
                }
                _ => d.message = sentence(msg),
            }
        }
        EvalAltResult::ErrorFor(_) => d.message = "for needs a range or a list to loop over".into(),
        other => d.message = sentence(&other.to_string()),
    }
    d.locate();
    d
}
