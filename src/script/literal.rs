//! A reader for scripts that are only calls with literal arguments, like the
//! stdlib's files: `name(arg, ...);` at the top level, each argument a number,
//! a text in quotes, `true`/`false`, a list `[...]` or a map `#{key: value, ...}`
//! of those. It gives the same values Rhai's parser would give them (whole
//! numbers as `INT`, others as `FLOAT`, a leading `-` negating), at a small
//! fraction of the cost; anything else (an escape in a text, an expression, a
//! variable, a repeated map key) is refused, and the caller evaluates the
//! script with Rhai instead. Control thread.

use rhai::{Array, Dynamic, FLOAT, INT, Map};

/// One top-level call: the function's name and its arguments.
pub type Call = (String, Vec<Dynamic>);

/// The calls in `text`, in order; `None` if it holds anything else.
pub fn calls(text: &str) -> Option<Vec<Call>> {
    let mut r = Reader { b: text.as_bytes(), at: 0 };
    let mut out = Vec::new();
    loop {
        r.skip();
        if r.at == r.b.len() {
            return Some(out);
        }
        let name = r.ident()?;
        r.expect(b'(')?;
        let args = r.items(b')')?;
        r.expect(b';')?;
        out.push((name.to_string(), args));
    }
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.at).copied()
    }

    /// Skips white space and comments.
    fn skip(&mut self) {
        loop {
            match (self.peek(), self.b.get(self.at + 1)) {
                (Some(c), _) if c.is_ascii_whitespace() => self.at += 1,
                (Some(b'/'), Some(b'/')) => {
                    while self.peek().is_some_and(|c| c != b'\n') {
                        self.at += 1;
                    }
                }
                _ => return,
            }
        }
    }

    fn expect(&mut self, c: u8) -> Option<()> {
        self.skip();
        (self.peek() == Some(c)).then(|| self.at += 1)
    }

    fn ident(&mut self) -> Option<&'a str> {
        self.skip();
        let start = self.at;
        while self.peek().is_some_and(|c| c.is_ascii_alphanumeric() || c == b'_') {
            self.at += 1;
        }
        let word = &self.b[start..self.at];
        if word.is_empty() || word[0].is_ascii_digit() {
            return None;
        }
        std::str::from_utf8(word).ok()
    }

    /// Values separated by commas up to `close` (a trailing comma allowed).
    fn items(&mut self, close: u8) -> Option<Vec<Dynamic>> {
        let mut out = Vec::new();
        loop {
            self.skip();
            if self.peek() == Some(close) {
                self.at += 1;
                return Some(out);
            }
            out.push(self.value()?);
            self.skip();
            match self.peek()? {
                b',' => self.at += 1,
                c if c == close => {}
                _ => return None,
            }
        }
    }

    fn value(&mut self) -> Option<Dynamic> {
        self.skip();
        match self.peek()? {
            b'"' => self.text().map(|s| Dynamic::from(rhai::ImmutableString::from(s))),
            b'[' => {
                self.at += 1;
                self.items(b']').map(|items| Dynamic::from_array(items as Array))
            }
            b'#' => {
                self.at += 1;
                self.expect(b'{')?;
                self.map().map(Dynamic::from_map)
            }
            b'-' => {
                self.at += 1;
                self.skip();
                self.number(true)
            }
            c if c.is_ascii_digit() => self.number(false),
            _ => match self.ident()? {
                "true" => Some(Dynamic::TRUE),
                "false" => Some(Dynamic::FALSE),
                _ => None,
            },
        }
    }

    /// A text in quotes, without escapes.
    fn text(&mut self) -> Option<String> {
        self.at += 1;
        let start = self.at;
        loop {
            match self.peek()? {
                b'"' => break,
                b'\\' | b'\n' | b'\r' => return None,
                _ => self.at += 1,
            }
        }
        let s = std::str::from_utf8(&self.b[start..self.at]).ok()?.to_string();
        self.at += 1;
        Some(s)
    }

    /// Decimal digits with an optional fraction (`1.5`); a whole number is an `INT`.
    fn number(&mut self, negative: bool) -> Option<Dynamic> {
        let start = self.at;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.at += 1;
        }
        if self.at == start {
            return None;
        }
        let whole = self.peek() != Some(b'.');
        if !whole {
            self.at += 1;
            let frac = self.at;
            while self.peek().is_some_and(|c| c.is_ascii_digit()) {
                self.at += 1;
            }
            if self.at == frac {
                return None;
            }
        }
        // An exponent, a digit separator or a letter: left to Rhai.
        if self.peek().is_some_and(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'.') {
            return None;
        }
        let digits = std::str::from_utf8(&self.b[start..self.at]).ok()?;
        if whole {
            let n: INT = digits.parse().ok()?;
            Some(Dynamic::from_int(if negative { n.checked_neg()? } else { n }))
        } else {
            let f: FLOAT = digits.parse().ok()?;
            Some(Dynamic::from_float(if negative { -f } else { f }))
        }
    }

    /// The entries of a map literal after its `#{`, keys as names or texts.
    fn map(&mut self) -> Option<Map> {
        let mut map = Map::new();
        loop {
            self.skip();
            if self.peek() == Some(b'}') {
                self.at += 1;
                return Some(map);
            }
            let key = if self.peek() == Some(b'"') { self.text()? } else { self.ident()?.to_string() };
            self.expect(b':')?;
            let v = self.value()?;
            if map.insert(key.into(), v).is_some() {
                return None;
            }
            self.skip();
            match self.peek()? {
                b',' => self.at += 1,
                b'}' => {}
                _ => return None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(text: &str) -> Option<Vec<Dynamic>> {
        calls(text).map(|mut c| c.remove(0).1)
    }

    #[test]
    fn literals_read_as_rhai_reads_them() {
        let args = one("f(\"a b\", 3, -2, 0.5, -0.25, true, [1, [2.0,],], #{ x: 1, \"y z\": \"w\" }); // end").unwrap();
        assert_eq!(args.len(), 8);
        assert_eq!(args[0].clone().into_string().unwrap(), "a b");
        assert_eq!(args[1].as_int().unwrap(), 3);
        assert_eq!(args[2].as_int().unwrap(), -2);
        assert_eq!(args[3].as_float().unwrap(), 0.5);
        assert_eq!(args[4].as_float().unwrap(), -0.25);
        assert!(args[5].as_bool().unwrap());
        let list = args[6].clone().into_array().unwrap();
        assert_eq!(list[0].as_int().unwrap(), 1);
        assert_eq!(list[1].clone().into_array().unwrap()[0].as_float().unwrap(), 2.0);
        let map = args[7].clone().try_cast::<Map>().unwrap();
        assert_eq!(map["x"].as_int().unwrap(), 1);
        assert_eq!(map["y z"].clone().into_string().unwrap(), "w");
    }

    #[test]
    fn anything_else_is_left_to_rhai() {
        for text in [
            "let x = 1;",
            "f(x);",
            "f(1 + 2);",
            "f(\"a\\\"b\");",
            "f(1e3);",
            "f(1_000);",
            "f(0x10);",
            "f(1.);",
            "f(#{ a: 1, a: 2 });",
            "f(1)",
            "f(1); /* c */",
            "f(1) g(2);",
            "f(99999999999999999999);",
        ] {
            assert!(calls(text).is_none(), "{text}");
        }
        assert_eq!(calls("// only a comment\n").unwrap().len(), 0);
    }
}
