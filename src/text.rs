//! Small text helpers for the messages jamrig prints (counted nouns); pure
//! functions for the control side and the command line, never the audio thread.

/// `n` and the noun, in the plural unless `n` is 1: "1 channel", "2 channels",
/// "0 peers". `noun` is the singular and takes an `s` in the plural.
pub fn plural(n: u64, noun: &str) -> String {
    if n == 1 { format!("1 {noun}") } else { format!("{n} {noun}s") }
}

/// The verb that agrees with a count: "1 event was", "2 events were".
pub fn was(n: u64) -> &'static str {
    if n == 1 { "was" } else { "were" }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression (issue 13): counts were printed as "1 channels", "1 voices".
    #[test]
    fn a_count_agrees_with_its_noun() {
        assert_eq!(plural(0, "peer"), "0 peers");
        assert_eq!(plural(1, "channel"), "1 channel");
        assert_eq!(plural(2, "channel"), "2 channels");
        assert_eq!(plural(1, "held note"), "1 held note");
        assert_eq!(format!("{} {} dropped", plural(1, "event"), was(1)), "1 event was dropped");
        assert_eq!(format!("{} {} dropped", plural(3, "event"), was(3)), "3 events were dropped");
    }
}
