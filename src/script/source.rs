//! Reading a set's text: only regular files of bounded size, only UTF-8; and a scan
//! of its code for a block comment left open (which would hide the rest of the
//! file), words a set may not use, and too many declarations. Control thread.

use super::diagnostic::Diagnostic;
use crate::files::{MAX_SET_BYTES, read_bounded};
use std::path::Path;

/// Reads the set (or module) at `path` as text, or says why it cannot be one.
pub fn read_set(path: &Path) -> Result<String, Diagnostic> {
    let shown = path.display().to_string();
    let bytes = read_bounded(path, MAX_SET_BYTES, "set").map_err(|e| Diagnostic::whole_file(&shown, e.to_string()))?;
    text_of(&shown, bytes)
}

/// The text of `bytes`, or a diagnostic at the first byte that is not UTF-8.
pub fn text_of(shown: &str, bytes: Vec<u8>) -> Result<String, Diagnostic> {
    String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let lossy = String::from_utf8_lossy(e.as_bytes()).into_owned();
        let good = String::from_utf8_lossy(&e.as_bytes()[..at]).into_owned();
        let (line, column) = line_col(&good, good.len());
        Diagnostic::at(shown, &lossy, line, column, "this is not UTF-8 text: save the set as UTF-8")
    })
}

/// 1-based line and column (in characters) of byte `at` of `text`.
pub fn line_col(text: &str, at: usize) -> (usize, usize) {
    let before = &text[..at];
    let line = before.matches('\n').count() + 1;
    let start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[start..].chars().count() + 1)
}

/// Identifiers a set may not use: `curry` copies its growing argument list on
/// every call, so a short loop of them takes minutes (the operation limit counts
/// calls, not their cost).
pub const FORBIDDEN: &[&str] = &["curry"];
/// `let` and `const` declarations a set (or module) may write. Each declaration
/// and each use of a variable searches the ones before it while the script is
/// parsed, so their number bounds the parse time.
pub const MAX_DECLARATIONS: usize = 1024;

/// What a scan of a script's code (outside strings and comments) found.
#[derive(Debug, Default, PartialEq)]
pub struct Scan {
    /// Where a block comment that is never closed opens (the outermost one;
    /// Rhai's block comments nest).
    pub unclosed_comment: Option<usize>,
    /// Where the first forbidden identifier is, and which.
    pub forbidden: Option<(usize, &'static str)>,
    /// `let` and `const` keywords, and where the one past the limit is.
    pub declarations: usize,
    pub too_many_at: Option<usize>,
}

/// Scans the code of `text`, skipping strings, characters and comments.
pub fn scan(text: &str) -> Scan {
    let b = text.as_bytes();
    let mut out = Scan::default();
    let mut open: Vec<usize> = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let two = |s: &[u8]| b[i..].starts_with(s);
        if !open.is_empty() {
            if two(b"*/") {
                open.pop();
                i += 2;
            } else if two(b"/*") {
                open.push(i);
                i += 2;
            } else {
                i += 1;
            }
            continue;
        }
        match b[i] {
            b'/' if two(b"//") => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if two(b"/*") => {
                open.push(i);
                i += 2;
                continue;
            }
            q @ (b'"' | b'`') => {
                i += 1;
                while i < b.len() && b[i] != q {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
            }
            b'\'' => {
                // A character literal: 'x' or '\n' (never more than a few bytes).
                if let Some(end) = b[i + 1..].iter().take(8).position(|&c| c == b'\'') {
                    i += end + 1;
                }
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let start = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                    i += 1;
                }
                let word = &text[start..i];
                if word == "let" || word == "const" {
                    out.declarations += 1;
                    if out.declarations > MAX_DECLARATIONS && out.too_many_at.is_none() {
                        out.too_many_at = Some(start);
                    }
                } else if let Some(f) = FORBIDDEN.iter().find(|f| **f == word)
                    && out.forbidden.is_none()
                {
                    out.forbidden = Some((start, f));
                }
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    out.unclosed_comment = open.first().copied();
    out
}

/// The byte where a block comment that is never closed opens.
pub fn unclosed_comment(text: &str) -> Option<usize> {
    scan(text).unclosed_comment
}

/// The first thing [`scan`] finds wrong with `text`, as (byte, message, token).
pub fn problem(text: &str) -> Option<(usize, String, &'static str)> {
    let sc = scan(text);
    if let Some(at) = sc.unclosed_comment {
        let msg = "this comment is never closed, so the rest of the file is ignored: close it with */";
        return Some((at, msg.into(), "/*"));
    }
    if let Some((at, word)) = sc.forbidden {
        return Some((at, format!("{word} is not available in a set (its cost grows without bound)"), word));
    }
    if let Some(at) = sc.too_many_at {
        let msg = format!(
            "more than {MAX_DECLARATIONS} let and const declarations; a set needs far fewer (use lists or maps)"
        );
        return Some((at, msg, "let"));
    }
    None
}

/// Fails with a diagnostic at the first thing [`problem`] finds in `text`.
pub fn check_code(shown: &str, text: &str) -> Result<(), Diagnostic> {
    match problem(text) {
        Some((at, message, token)) => {
            let (line, column) = line_col(text, at);
            let mut d = Diagnostic::at(shown, text, line, column, message);
            d.token = Some(token.into());
            Err(d)
        }
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_that_close_pass_and_one_that_does_not_is_found() {
        assert_eq!(unclosed_comment("a /* b */ c"), None);
        assert_eq!(unclosed_comment("a /* b /* nested */ */ c"), None);
        assert_eq!(unclosed_comment("print(\"/*\"); // /* not a comment"), None);
        assert_eq!(unclosed_comment("let c = '/'; /* x */"), None);
        assert_eq!(unclosed_comment("x;\n/* open\nmore"), Some(3));
        assert_eq!(unclosed_comment("/* a /* b */"), Some(0));
    }

    #[test]
    fn forbidden_words_and_too_many_declarations_are_found_in_code_only() {
        assert_eq!(scan("let p = Fn(\"f\"); p = p.curry(1);").forbidden, Some((23, "curry")));
        assert_eq!(scan("print(\"curry\"); // curry\nlet curry_x = 1;").forbidden, None);
        let many = "let x = 1;\n".repeat(MAX_DECLARATIONS + 1);
        assert_eq!(scan(&many).too_many_at, Some(11 * MAX_DECLARATIONS));
        assert_eq!(scan(&"let x = 1;\n".repeat(MAX_DECLARATIONS)).too_many_at, None);
    }

    #[test]
    fn bytes_that_are_not_utf8_are_located() {
        let d = text_of("s.rhai", b"tempo(120);\nlet x = \"\xff\";\n".to_vec()).unwrap_err();
        assert_eq!((d.line, d.column), (2, 10));
        assert!(d.render().contains("s.rhai:2:10"), "{}", d.render());
    }
}
