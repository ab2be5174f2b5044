//! Note names, MIDI note numbers and equal-tempered frequencies. Pure functions.

/// Frequency of a (possibly fractional) MIDI note, A4 = 69 = 440 Hz.
#[inline]
pub fn note_hz(note: f64) -> f64 {
    440.0 * ((note - 69.0) / 12.0).exp2()
}

const SHARP_NAMES: [&str; 12] = ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"];

/// The name of a MIDI note with sharps, middle C = C4 (`60` -> `"C4"`).
pub fn note_name(note: u8) -> String {
    format!("{}{}", SHARP_NAMES[note as usize % 12], note as i32 / 12 - 1)
}

/// The pitch class of a note letter (`c` or `C` is 0, `b` 11).
pub fn letter_chroma(letter: char) -> Option<i32> {
    Some(match letter.to_ascii_uppercase() {
        'C' => 0,
        'D' => 2,
        'E' => 4,
        'F' => 5,
        'G' => 7,
        'A' => 9,
        'B' => 11,
        _ => return None,
    })
}

/// Parses a note name (`"C4"`, `"c#3"`, `"Eb4"`, `"F##2"`, `"Bb-1"`) into a MIDI note.
/// Middle C is C4 = 60. Returns `None` for anything else or outside 0..=127.
pub fn parse_note(name: &str) -> Option<u8> {
    let s = name.trim();
    let mut chars = s.chars();
    let base = letter_chroma(chars.next()?)?;
    let rest = chars.as_str();
    let accidentals = rest.len() - rest.trim_start_matches(['#', 'b', '♯', '♭']).len();
    let (acc, octave) = rest.split_at(accidentals);
    let shift: i32 = acc.chars().map(|c| if c == '#' || c == '♯' { 1 } else { -1 }).sum();
    // Octaves -1..9 hold the MIDI notes; a longer number is no note (and would
    // overflow the arithmetic).
    let octave: i32 = octave.parse().ok().filter(|o| (-2..=10).contains(o))?;
    let n = (octave + 1) * 12 + base + shift;
    (0..=127).contains(&n).then_some(n as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for n in 0..=127u8 {
            assert_eq!(parse_note(&note_name(n)), Some(n));
        }
        assert_eq!(parse_note("C4"), Some(60));
        assert_eq!(parse_note("c#3"), Some(49));
        assert_eq!(parse_note("Eb4"), Some(63));
        assert_eq!(parse_note("B#3"), Some(60));
        assert_eq!(parse_note("C-1"), Some(0));
        assert_eq!(parse_note("G9"), Some(127));
        assert_eq!(parse_note("G#9"), None);
        assert_eq!(parse_note("H2"), None);
        assert_eq!(parse_note("C"), None);
        assert_eq!(parse_note("C1073741828"), None, "no wrap-around to C4");
        assert_eq!(parse_note("C-2147483648"), None);
    }

    #[test]
    fn a4_is_440() {
        assert_eq!(note_hz(69.0), 440.0);
        assert!((note_hz(60.0) - 261.6256).abs() < 1e-3);
    }
}
