//! The mini-notation grammar (Tidal's and Strudel's): a recursive-descent parser
//! following the rules of Strudel's `krill` grammar, whose every node keeps its
//! byte range in the string, and whose errors name the character where the string
//! stops making sense and what was expected there. Control thread.

use std::ops::Range;

/// Nesting of brackets (and operator arguments) a string may have.
pub const MAX_DEPTH: usize = 64;
/// Longest string the parser takes, in bytes.
pub const MAX_LEN: usize = 16 * 1024;

/// A parse error: where (a byte range in the string) and what was expected.
#[derive(Clone, Debug, PartialEq)]
pub struct ParseError {
    pub at: Range<usize>,
    pub message: String,
}

/// How the parts of a group combine.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Align {
    /// `a, b`: played together.
    Stack,
    /// `a | b`: one of them, chosen at random each cycle.
    Rand,
    /// `a . b`: one part after the other, equal shares of the cycle.
    Feet,
    /// `{a b, c d e}`: steps of the same length, the first part's count per cycle
    /// (or the `%` count).
    Polymeter,
    /// `<a b c>`: one step per cycle.
    Slowcat,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Node {
    /// A word or number (`~` and `-` are rests).
    Atom { word: String, at: Range<usize> },
    /// Elements one after the other in a cycle, by weight.
    Sequence { elements: Vec<Element>, at: Range<usize> },
    /// Sequences combined by `align`; `seed` numbers the random stream of `|`.
    Group { align: Align, parts: Vec<Node>, seed: u32, steps: Option<Box<Node>>, at: Range<usize> },
}

impl Node {
    pub fn at(&self) -> Range<usize> {
        match self {
            Node::Atom { at, .. } | Node::Sequence { at, .. } | Node::Group { at, .. } => at.clone(),
        }
    }
}

/// A step of a sequence with its operators.
#[derive(Clone, Debug, PartialEq)]
pub struct Element {
    pub node: Node,
    pub ops: Vec<Op>,
    /// Share of the sequence (`@`, `_`, `!`); 1 by default.
    pub weight: f64,
    pub at: Range<usize>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// `*x` (fast) or `/x` (slow).
    Stretch { fast: bool, amount: Node },
    /// `!n`: the element n times.
    Replicate(f64),
    /// `(k,n,r)`: a Euclidean rhythm.
    Euclid { pulses: Box<Element>, steps: Box<Element>, rotation: Option<Box<Element>> },
    /// `?` or `?x`: random removal, with the random stream's seed.
    Degrade { amount: Option<f64>, seed: u32, at: Range<usize> },
    /// `:n`: a sample or bank index.
    Tail(Node),
    /// `..n`: a run of numbers.
    Range(Node),
}

/// What was expected where the parse stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Expect {
    Step,
    Close(char),
    Number,
    Comma,
    End,
}

struct Parser<'a> {
    s: &'a str,
    pos: usize,
    seed: u32,
    depth: usize,
    /// The furthest position a rule failed at, what was expected there, and the
    /// innermost bracket open at that moment.
    far: usize,
    expected: Vec<Expect>,
    open_at_far: Option<(char, usize)>,
    open: Vec<(char, usize)>,
    too_deep: Option<usize>,
}

/// Parses a mini-notation string.
pub fn parse(s: &str) -> Result<Node, ParseError> {
    if s.len() > MAX_LEN {
        return Err(ParseError {
            at: 0..0,
            message: format!("the pattern is {} characters long; the limit is {MAX_LEN}", s.chars().count()),
        });
    }
    let mut p = Parser {
        s,
        pos: 0,
        seed: 0,
        depth: 0,
        far: 0,
        expected: Vec::new(),
        open_at_far: None,
        open: Vec::new(),
        too_deep: None,
    };
    p.ws();
    if p.pos == s.len() {
        return Err(ParseError {
            at: 0..s.len().min(1),
            message: "the pattern is empty: write ~ for a rest that lasts the whole cycle".into(),
        });
    }
    let node = p.stack_or_choose();
    if let Some(at) = p.too_deep {
        return Err(ParseError {
            at: at..p.char_end(at),
            message: format!("brackets and operators nest more than {MAX_DEPTH} deep here"),
        });
    }
    match node {
        Some(n) => {
            p.ws();
            if p.pos == s.len() {
                return Ok(n);
            }
            p.fail(Expect::End);
            Err(p.error())
        }
        None => Err(p.error()),
    }
}

fn is_step_char(c: char) -> bool {
    c.is_alphabetic() || c.is_ascii_digit() || matches!(c, '~' | '-' | '#' | '.' | '^' | '_' | '\'')
}

fn is_ws(c: char) -> bool {
    matches!(c, ' ' | '\n' | '\r' | '\t' | '\u{a0}')
}

impl Parser<'_> {
    fn peek(&self) -> Option<char> {
        self.s[self.pos..].chars().next()
    }

    fn char_end(&self, at: usize) -> usize {
        at + self.s[at..].chars().next().map(char::len_utf8).unwrap_or(0)
    }

    fn fail(&mut self, e: Expect) {
        if self.pos > self.far {
            self.far = self.pos;
            self.expected.clear();
            self.open_at_far = self.open.last().copied();
        }
        if self.pos == self.far && !self.expected.contains(&e) {
            self.expected.push(e);
            if matches!(e, Expect::Close(_)) {
                self.open_at_far = self.open.last().copied();
            }
        }
    }

    fn eat(&mut self, c: char, e: Expect) -> bool {
        if self.peek() == Some(c) {
            self.pos += c.len_utf8();
            true
        } else {
            self.fail(e);
            false
        }
    }

    fn eat_str(&mut self, t: &str) -> bool {
        if self.s[self.pos..].starts_with(t) {
            self.pos += t.len();
            true
        } else {
            false
        }
    }

    fn ws(&mut self) {
        while let Some(c) = self.peek() {
            if !is_ws(c) {
                break;
            }
            self.pos += c.len_utf8();
        }
    }

    /// `ws <c> ws` (the separators `,`, `|`, `.`), or nothing consumed.
    fn sep(&mut self, c: char) -> bool {
        let start = self.pos;
        self.ws();
        if self.eat(c, Expect::Comma) {
            self.ws();
            true
        } else {
            self.pos = start;
            false
        }
    }

    fn enter(&mut self) -> bool {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            self.too_deep.get_or_insert(self.pos);
            return false;
        }
        true
    }

    fn error(&self) -> ParseError {
        let at = self.far..self.char_end(self.far);
        let found = match self.s[self.far..].chars().next() {
            None => "the end of the pattern".to_string(),
            Some(c) => format!("'{c}'"),
        };
        let mut exp = self.expected.clone();
        exp.sort();
        let closing = exp.iter().find_map(|e| match e {
            Expect::Close(c) => Some(*c),
            _ => None,
        });
        let opened = |close: char| {
            let open = match close {
                ']' => '[',
                '>' => '<',
                '}' => '{',
                _ => '(',
            };
            match self.open_at_far {
                Some((o, at)) if o == open => {
                    format!(" to close the '{open}' at character {}", self.s[..at].chars().count() + 1)
                }
                _ => String::new(),
            }
        };
        let found_char = self.s[self.far..].chars().next();
        let message = if let (Some(c @ (']' | '>' | '}' | ')')), None) = (found_char, closing) {
            format!("'{c}' closes a bracket that was never opened")
        } else if let Some(c) = closing {
            if exp.contains(&Expect::Step) {
                format!("expected a step or '{c}'{}, not {found}", opened(c))
            } else {
                format!("expected '{c}'{}, not {found}", opened(c))
            }
        } else if exp == [Expect::Number] {
            format!("expected a number, not {found}")
        } else if exp == [Expect::Comma] {
            format!("expected ',' and a step count, not {found}")
        } else if exp == [Expect::End] {
            format!("expected a step, an operator or the end of the pattern, not {found}")
        } else {
            format!("expected a step (a word, a number, ~ or a bracket), not {found}")
        };
        ParseError { at, message }
    }

    // ---- rules ----

    /// `sequence ((, sequence)+ | (| sequence)+ | (. sequence)+)?`
    fn stack_or_choose(&mut self) -> Option<Node> {
        let start = self.pos;
        let head = self.sequence()?;
        for (c, align) in [(',', Align::Stack), ('|', Align::Rand), ('.', Align::Feet)] {
            let mut parts = vec![head.clone()];
            self.more_sequences(c, &mut parts);
            if parts.len() > 1 {
                let seed = match align {
                    Align::Stack => 0,
                    _ => {
                        self.seed += 1;
                        self.seed - 1
                    }
                };
                return Some(Node::Group { align, parts, seed, steps: None, at: start..self.pos });
            }
        }
        Some(head)
    }

    /// `sequence (, sequence)*`, as a polymeter group.
    fn polymeter_stack(&mut self, align: Align) -> Option<Node> {
        let start = self.pos;
        let mut parts = vec![self.sequence()?];
        self.more_sequences(',', &mut parts);
        Some(Node::Group { align, parts, seed: 0, steps: None, at: start..self.pos })
    }

    /// `(c sequence)*`, appended to `parts`.
    fn more_sequences(&mut self, c: char, parts: &mut Vec<Node>) {
        loop {
            let save = self.pos;
            if !self.sep(c) {
                break;
            }
            match self.sequence() {
                Some(s) => parts.push(s),
                None => {
                    self.pos = save;
                    break;
                }
            }
        }
    }

    /// `'^'? slice_with_ops+`
    fn sequence(&mut self) -> Option<Node> {
        let start = self.pos;
        self.eat_str("^");
        let mut elements = Vec::new();
        while let Some(e) = self.slice_with_ops() {
            elements.push(e);
        }
        if elements.is_empty() {
            self.pos = start;
            return None;
        }
        Some(Node::Sequence { elements, at: start..self.pos })
    }

    fn slice_with_ops(&mut self) -> Option<Element> {
        if !self.enter() {
            self.depth -= 1;
            return None;
        }
        let start = self.pos;
        let r = self.slice().map(|node| {
            let mut e = Element { node, ops: Vec::new(), weight: 1.0, at: start..start };
            let mut reps = 1.0;
            while self.slice_op(&mut e, &mut reps) {}
            e.at = start..self.pos;
            e
        });
        self.depth -= 1;
        r
    }

    /// `step / sub_cycle / polymeter / slow_sequence`
    fn slice(&mut self) -> Option<Node> {
        let start = self.pos;
        if let Some(n) = self.step() {
            return Some(n);
        }
        self.ws();
        let open = self.pos;
        let (close, align) = match self.peek() {
            Some('[') => (']', None),
            Some('{') => ('}', Some(Align::Polymeter)),
            Some('<') => ('>', Some(Align::Slowcat)),
            _ => {
                self.fail(Expect::Step);
                self.pos = start;
                return None;
            }
        };
        let c = self.peek().unwrap_or('[');
        self.pos += 1;
        self.open.push((c, open));
        self.ws();
        let inner = match align {
            None => self.stack_or_choose(),
            Some(a) => self.polymeter_stack(a),
        };
        let Some(mut inner) = inner else {
            self.open.pop();
            self.pos = start;
            return None;
        };
        self.ws();
        if !self.eat(close, Expect::Close(close)) {
            self.open.pop();
            self.pos = start;
            return None;
        }
        self.open.pop();
        if align == Some(Align::Polymeter) && self.peek() == Some('%') {
            let save = self.pos;
            self.pos += 1;
            match self.slice() {
                Some(steps) => {
                    if let Node::Group { steps: s, .. } = &mut inner {
                        *s = Some(Box::new(steps));
                    }
                }
                None => self.pos = save,
            }
        }
        if let Node::Group { at, .. } | Node::Sequence { at, .. } = &mut inner
            && align.is_some()
        {
            *at = open..self.pos;
        }
        self.ws();
        Some(inner)
    }

    /// `ws step_char+ ws`, not `.` or `_` alone.
    fn step(&mut self) -> Option<Node> {
        let start = self.pos;
        self.ws();
        let w0 = self.pos;
        while let Some(c) = self.peek() {
            if !is_step_char(c) {
                break;
            }
            self.pos += c.len_utf8();
        }
        let w1 = self.pos;
        let word = &self.s[w0..w1];
        if word.is_empty() || word == "." || word == "_" {
            if word.is_empty() {
                self.fail(Expect::Step);
            }
            self.pos = start;
            return None;
        }
        self.ws();
        Some(Node::Atom { word: word.to_string(), at: w0..w1 })
    }

    /// One operator after a slice; false when there is none.
    fn slice_op(&mut self, e: &mut Element, reps: &mut f64) -> bool {
        let start = self.pos;
        // op_weight: ws ("@" / "_") number?
        self.ws();
        if matches!(self.peek(), Some('@' | '_')) {
            self.pos += 1;
            let a = self.number();
            e.weight += a.unwrap_or(2.0) - 1.0;
            return true;
        }
        self.pos = start;
        // op_bjorklund: "(" ws slice_with_ops ws comma ws slice_with_ops ws comma? ws slice_with_ops? ws ")"
        if self.peek() == Some('(') {
            if let Some(op) = self.euclid() {
                e.ops.push(op);
                return true;
            }
            self.pos = start;
        }
        // op_slow, op_fast
        if let Some(c @ ('/' | '*')) = self.peek() {
            self.pos += 1;
            match self.slice() {
                Some(amount) => {
                    e.ops.push(Op::Stretch { fast: c == '*', amount });
                    return true;
                }
                None => {
                    self.pos = start;
                }
            }
        }
        // op_replicate: ws "!" number?
        self.ws();
        if self.peek() == Some('!') {
            self.pos += 1;
            let a = self.number();
            *reps += a.unwrap_or(2.0) - 1.0;
            e.ops.retain(|o| !matches!(o, Op::Replicate(_)));
            e.ops.push(Op::Replicate(*reps));
            e.weight = *reps;
            return true;
        }
        self.pos = start;
        // op_degrade: "?" number?
        if self.peek() == Some('?') {
            self.pos += 1;
            let amount = self.number();
            let seed = self.seed;
            self.seed += 1;
            e.ops.push(Op::Degrade { amount, seed, at: start..self.pos });
            return true;
        }
        // op_tail: ":" slice
        if self.peek() == Some(':') {
            self.pos += 1;
            match self.slice() {
                Some(n) => {
                    e.ops.push(Op::Tail(n));
                    return true;
                }
                None => self.pos = start,
            }
        }
        // op_range: ".." slice
        if self.eat_str("..") {
            match self.slice() {
                Some(n) => {
                    e.ops.push(Op::Range(n));
                    return true;
                }
                None => self.pos = start,
            }
        }
        false
    }

    fn euclid(&mut self) -> Option<Op> {
        let open = self.pos;
        self.pos += 1;
        self.open.push(('(', open));
        let r = (|| {
            self.ws();
            let pulses = self.slice_with_ops()?;
            self.ws();
            if !self.sep(',') {
                self.fail(Expect::Comma);
                return None;
            }
            self.ws();
            let steps = self.slice_with_ops()?;
            self.ws();
            self.sep(',');
            self.ws();
            let rotation = self.slice_with_ops();
            self.ws();
            if !self.eat(')', Expect::Close(')')) {
                return None;
            }
            Some(Op::Euclid { pulses: Box::new(pulses), steps: Box::new(steps), rotation: rotation.map(Box::new) })
        })();
        self.open.pop();
        r
    }

    /// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [-+]? [0-9]+)?`, as a float.
    fn number(&mut self) -> Option<f64> {
        let start = self.pos;
        let b = self.s.as_bytes();
        let mut i = self.pos;
        if b.get(i) == Some(&b'-') {
            i += 1;
        }
        match b.get(i) {
            Some(b'0') => i += 1,
            Some(b'1'..=b'9') => {
                while b.get(i).is_some_and(u8::is_ascii_digit) {
                    i += 1;
                }
            }
            _ => {
                self.fail(Expect::Number);
                return None;
            }
        }
        if b.get(i) == Some(&b'.') && b.get(i + 1).is_some_and(u8::is_ascii_digit) {
            i += 1;
            while b.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
        }
        if matches!(b.get(i), Some(b'e' | b'E')) {
            let mut j = i + 1;
            if matches!(b.get(j), Some(b'-' | b'+')) {
                j += 1;
            }
            if b.get(j).is_some_and(u8::is_ascii_digit) {
                while b.get(j).is_some_and(u8::is_ascii_digit) {
                    j += 1;
                }
                i = j;
            }
        }
        self.pos = i;
        let v = self.s[start..i].parse::<f64>().ok();
        if v.is_none() {
            self.pos = start;
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(s: &str) -> ParseError {
        parse(s).expect_err(s)
    }

    #[test]
    fn sequences_groups_and_operators() {
        let n = parse("bd*2 [~ sn] <hh oh>, cp(3,8)").unwrap();
        let Node::Group { align: Align::Stack, parts, .. } = n else { panic!("a stack") };
        assert_eq!(parts.len(), 2);
        let Node::Sequence { elements, .. } = &parts[0] else { panic!() };
        assert_eq!(elements.len(), 3);
        assert!(matches!(elements[0].ops[0], Op::Stretch { fast: true, .. }));
        let Node::Sequence { elements, .. } = &parts[1] else { panic!() };
        assert!(matches!(elements[0].ops[0], Op::Euclid { .. }));
    }

    #[test]
    fn weights_and_replication() {
        let Node::Sequence { elements, .. } = parse("a@3 b _ _ c!3 d!!").unwrap() else { panic!() };
        let w: Vec<f64> = elements.iter().map(|e| e.weight).collect();
        assert_eq!(w, [3.0, 3.0, 3.0, 3.0]);
    }

    #[test]
    fn seeds_follow_the_text() {
        let Node::Group { align: Align::Rand, seed, parts, .. } = parse("a? | b?").unwrap() else { panic!() };
        assert_eq!(seed, 2);
        let Node::Sequence { elements, .. } = &parts[1] else { panic!() };
        assert!(matches!(elements[0].ops[0], Op::Degrade { seed: 1, .. }));
    }

    #[test]
    fn errors_point_at_the_character() {
        let e = err("bd [sn");
        assert_eq!(e.at, 6..6);
        assert_eq!(e.message, "expected a step or ']' to close the '[' at character 4, not the end of the pattern");
        let e = err("bd sn]");
        assert_eq!(e.at, 5..6);
        assert_eq!(e.message, "']' closes a bracket that was never opened");
        let e = err("bd(3 8)");
        assert_eq!(e.at, 5..6);
        assert!(e.message.contains("expected"), "{}", e.message);
        assert!(err("").message.contains("empty"));
        assert!(err("   ").message.contains("empty"));
        let e = err("a <b c");
        assert!(e.message.contains("'>' to close the '<' at character 3"), "{}", e.message);
        let e = err("a, , b");
        assert_eq!(e.at, 3..4);
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let s = format!("{}a{}", "[".repeat(5_000), "]".repeat(5_000));
        assert!(parse(&s).unwrap_err().message.contains("nest"));
    }
}
