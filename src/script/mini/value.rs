//! What the words of a pattern mean: numbers as JavaScript reads them (as Strudel
//! does), note names with Strudel's octave numbering (`c4` is MIDI 60, no octave is
//! octave 3), chords (`c4'maj7`), and drum names (jamrig's own and the short ones
//! the Tidal world uses). Control thread.

use crate::script::library::{Library, drum_key};

/// The short drum names of Tidal's and Strudel's sample banks, and the jamrig drum
/// sound each plays.
pub const SHORT_DRUMS: &[(&str, &str)] = &[
    ("bd", "kick"),
    ("sd", "snare"),
    ("sn", "snare"),
    ("rim", "rimshot"),
    ("rs", "rimshot"),
    ("cp", "clap"),
    ("hh", "closed_hat"),
    ("ch", "closed_hat"),
    ("oh", "open_hat"),
    ("ph", "pedal_hat"),
    ("lt", "low_tom"),
    ("mt", "mid_tom"),
    ("ht", "high_tom"),
    ("cr", "crash"),
    ("rd", "ride"),
    ("rb", "ride_bell"),
    ("cb", "cowbell"),
    ("sh", "shaker"),
    ("tb", "tambourine"),
    ("cl", "clave"),
];

/// Chord qualities for `root'quality`: semitones above the root.
pub const CHORDS: &[(&str, &[i32])] = &[
    ("maj", &[0, 4, 7]),
    ("major", &[0, 4, 7]),
    ("M", &[0, 4, 7]),
    ("min", &[0, 3, 7]),
    ("minor", &[0, 3, 7]),
    ("m", &[0, 3, 7]),
    ("dim", &[0, 3, 6]),
    ("aug", &[0, 4, 8]),
    ("sus2", &[0, 2, 7]),
    ("sus4", &[0, 5, 7]),
    ("five", &[0, 7]),
    ("six", &[0, 4, 7, 9]),
    ("6", &[0, 4, 7, 9]),
    ("m6", &[0, 3, 7, 9]),
    ("min6", &[0, 3, 7, 9]),
    ("maj7", &[0, 4, 7, 11]),
    ("M7", &[0, 4, 7, 11]),
    ("min7", &[0, 3, 7, 10]),
    ("m7", &[0, 3, 7, 10]),
    ("dom7", &[0, 4, 7, 10]),
    ("7", &[0, 4, 7, 10]),
    ("dim7", &[0, 3, 6, 9]),
    ("m7b5", &[0, 3, 6, 10]),
    ("add9", &[0, 4, 7, 14]),
    ("maj9", &[0, 4, 7, 11, 14]),
    ("min9", &[0, 3, 7, 10, 14]),
    ("m9", &[0, 3, 7, 10, 14]),
    ("dom9", &[0, 4, 7, 10, 14]),
    ("9", &[0, 4, 7, 10, 14]),
];

/// JavaScript's `Number(text)` for the characters a step may hold, `None` for NaN.
pub fn js_number(s: &str) -> Option<f64> {
    if s.is_empty() {
        return None;
    }
    for (prefix, radix) in [("0x", 16), ("0X", 16), ("0o", 8), ("0O", 8), ("0b", 2), ("0B", 2)] {
        if let Some(digits) = s.strip_prefix(prefix) {
            if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
                return None;
            }
            return Some(digits.chars().fold(0.0, |a, c| a * radix as f64 + c.to_digit(radix).unwrap_or(0) as f64));
        }
    }
    let body = s.strip_prefix(['-', '+']).unwrap_or(s);
    if body == "Infinity" {
        return Some(if s.starts_with('-') { f64::NEG_INFINITY } else { f64::INFINITY });
    }
    // digits [. digits] [e [+-] digits], with digits on at least one side of the point
    let b = body.as_bytes();
    let mut i = 0;
    let int_digits = b.iter().take_while(|c| c.is_ascii_digit()).count();
    i += int_digits;
    let mut frac_digits = 0;
    if b.get(i) == Some(&b'.') {
        i += 1;
        frac_digits = b[i..].iter().take_while(|c| c.is_ascii_digit()).count();
        i += frac_digits;
    }
    if int_digits + frac_digits == 0 {
        return None;
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let e = b[i..].iter().take_while(|c| c.is_ascii_digit()).count();
        if e == 0 {
            return None;
        }
        i += e;
    }
    if i != b.len() {
        return None;
    }
    s.parse::<f64>().ok().or_else(|| format!("{s}0").parse().ok())
}

/// A note name as Strudel reads it: a letter `a`..`g`, accidentals (`#` or `s`
/// sharp, `b` or `f` flat) and an octave (3 if none); `c4` is MIDI 60.
pub fn note_number(word: &str) -> Option<i64> {
    let mut chars = word.chars();
    let chroma = crate::theory::letter_chroma(chars.next()?)? as i64;
    let rest = chars.as_str();
    let acc_len = rest.len() - rest.trim_start_matches(['#', 'b', 's', 'f']).len();
    let (acc, octave) = rest.split_at(acc_len);
    if !octave.chars().all(|c| c.is_ascii_digit()) || octave.len() > 3 {
        return None;
    }
    let octave: i64 = if octave.is_empty() { 3 } else { octave.parse().ok()? };
    let shift: i64 = acc.chars().map(|c| if c == '#' || c == 's' { 1 } else { -1 }).sum();
    Some((octave + 1) * 12 + chroma + shift)
}

/// The notes of `root'quality` (`c4'maj7`, `e'min`).
pub fn chord(word: &str) -> Result<Vec<i64>, String> {
    let (root, quality) = word.split_once('\'').unwrap_or((word, ""));
    let Some(root_note) = note_number(root) else {
        return Err(format!("\"{root}\" is not a note name, so {word} is not a chord (write it like c4'maj7)"));
    };
    match CHORDS.iter().find(|(q, _)| *q == quality) {
        Some((_, steps)) => Ok(steps.iter().map(|s| root_note + *s as i64).collect()),
        None => {
            let names: Vec<&str> = CHORDS.iter().map(|(q, _)| *q).collect();
            Err(format!("unknown chord quality \"{quality}\" (known: {})", names.join(" ")))
        }
    }
}

/// The MIDI note of a drum word: a jamrig drum sound or alias, or a short name.
pub fn drum_number(lib: &Library, word: &str) -> Option<u8> {
    let key = drum_key(word);
    if let Some(n) = lib.drum_sounds.get(&key) {
        return Some(*n);
    }
    SHORT_DRUMS.iter().find(|(s, _)| *s == key).and_then(|(_, name)| lib.drum_sounds.get(*name).copied())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_as_javascript_reads_them() {
        assert_eq!(js_number("3"), Some(3.0));
        assert_eq!(js_number("-1.5"), Some(-1.5));
        assert_eq!(js_number(".5"), Some(0.5));
        assert_eq!(js_number("5."), Some(5.0));
        assert_eq!(js_number("1e3"), Some(1000.0));
        assert_eq!(js_number("0x10"), Some(16.0));
        assert_eq!(js_number("-0x10"), None);
        assert_eq!(js_number("bd"), None);
        assert_eq!(js_number("."), None);
        assert_eq!(js_number("1e"), None);
        assert_eq!(js_number("1_0"), None);
        assert_eq!(js_number("-"), None);
    }

    #[test]
    fn notes_with_strudel_octaves() {
        assert_eq!(note_number("c4"), Some(60));
        assert_eq!(note_number("a4"), Some(69));
        assert_eq!(note_number("eb4"), Some(63));
        assert_eq!(note_number("a#2"), Some(46));
        assert_eq!(note_number("c"), Some(48));
        assert_eq!(note_number("fs3"), Some(54));
        assert_eq!(note_number("Bb1"), Some(34));
        assert_eq!(note_number("h2"), None);
        assert_eq!(note_number("c-1"), None);
        assert_eq!(chord("c4'maj7").unwrap(), [60, 64, 67, 71]);
        assert!(chord("c4'bogus").is_err());
    }
}
