//! The computer keyboard as a MIDI keyboard (`:keys`), and live level meters
//! (`:meters`). Both run on the REPL thread with the terminal in raw mode.

use super::control::Handles;
use crate::engine::event::{Event, EventKind};
use crossterm::event::{self, Event as TermEvent, KeyCode, KeyEventKind, KeyboardEnhancementFlags};
use crossterm::{execute, terminal};
use std::collections::HashMap;
use std::io::Write;
use std::time::{Duration, Instant};

/// Without key-release events, a key is released this long after its last repeat.
pub const AUTO_RELEASE: Duration = Duration::from_millis(150);
const VELOCITY: u8 = 100;

/// Semitone offset of a key: the lower row (z x c ...) from the octave's C, the
/// upper row (q w e ...) an octave higher, black keys on the rows above each.
pub fn key_offset(c: char) -> Option<u8> {
    let lower = "zsxdcvgbhnjm,l.;/";
    let upper = "q2w3er5t6y7ui9o0p";
    lower.find(c).map(|i| i as u8).or_else(|| upper.find(c).map(|i| i as u8 + 12))
}

struct RawMode {
    enhanced: bool,
}

impl RawMode {
    fn enter() -> std::io::Result<RawMode> {
        terminal::enable_raw_mode()?;
        let enhanced = terminal::supports_keyboard_enhancement().unwrap_or(false);
        if enhanced {
            let _ = execute!(
                std::io::stdout(),
                event::PushKeyboardEnhancementFlags(KeyboardEnhancementFlags::REPORT_EVENT_TYPES)
            );
        }
        Ok(RawMode { enhanced })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if self.enhanced {
            let _ = execute!(std::io::stdout(), event::PopKeyboardEnhancementFlags);
        }
        let _ = terminal::disable_raw_mode();
    }
}

fn send(h: &Handles, kind: EventKind) {
    h.sender.send(Event::new(h.clock.frame_for(Instant::now()), kind));
}

/// Plays notes from the keyboard on `channel` (1-based) from `octave` until Esc.
pub fn keyboard(h: &Handles, channel: u8, mut octave: i32) -> std::io::Result<()> {
    let ch = channel.clamp(1, 16) - 1;
    let raw = RawMode::enter()?;
    let mode = if raw.enhanced { "key release supported" } else { "keys release 150 ms after you let go" };
    print!(
        "keyboard on channel {channel}, octave {octave} ({mode}); z..m and q..u play, up/down change octave, Esc leaves\r\n"
    );
    let _ = std::io::stdout().flush();
    let mut down: HashMap<char, (u8, Instant)> = HashMap::new();
    loop {
        if event::poll(Duration::from_millis(5))?
            && let TermEvent::Key(k) = event::read()?
        {
            match (k.code, k.kind) {
                (KeyCode::Esc, KeyEventKind::Press) => break,
                (KeyCode::Up, KeyEventKind::Press) => octave = (octave + 1).min(8),
                (KeyCode::Down, KeyEventKind::Press) => octave = (octave - 1).max(0),
                (KeyCode::Char(c), kind) => {
                    let c = c.to_ascii_lowercase();
                    let Some(off) = key_offset(c) else { continue };
                    match kind {
                        KeyEventKind::Release => {
                            if let Some((note, _)) = down.remove(&c) {
                                send(h, EventKind::NoteOff { channel: ch, note });
                            }
                        }
                        _ => {
                            if let Some(entry) = down.get_mut(&c) {
                                entry.1 = Instant::now(); // a repeat: still held
                            } else {
                                let note = ((octave + 1) * 12 + off as i32).clamp(0, 127) as u8;
                                send(h, EventKind::NoteOn { channel: ch, note, velocity: VELOCITY });
                                down.insert(c, (note, Instant::now()));
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        if !raw.enhanced {
            let now = Instant::now();
            down.retain(|_, (note, last)| {
                let held = now.duration_since(*last) < AUTO_RELEASE;
                if !held {
                    send(h, EventKind::NoteOff { channel: ch, note: *note });
                }
                held
            });
        }
    }
    for (_, (note, _)) in down {
        send(h, EventKind::NoteOff { channel: ch, note });
    }
    drop(raw);
    println!("keyboard off");
    Ok(())
}

fn bar(level: f32, width: usize) -> String {
    let db = if level > 0.0 { 20.0 * level.log10() } else { -120.0 };
    let filled = (((db + 60.0) / 60.0).clamp(0.0, 1.0) * width as f32).round() as usize;
    format!("{}{} {:6.1} dB", "#".repeat(filled), ".".repeat(width - filled), db.max(-99.9))
}

/// Width of a level bar, in characters.
const BAR_WIDTH: usize = 40;

/// The lines of `:meters`: one per channel (`(channel, name, peak)`), then the
/// master's; every bar starts in one column, whatever the names' lengths.
fn meter_lines(channels: &[(u8, &str, f32)], master: f32) -> Vec<String> {
    let name_width = channels.iter().map(|(_, n, _)| n.chars().count()).max().unwrap_or(0);
    let mut lines: Vec<String> = channels
        .iter()
        .map(|(ch, name, level)| format!(" ch{ch:<2} {name:<name_width$} {}", bar(*level, BAR_WIDTH)))
        .collect();
    // "chNN " and the name: the master's label fills the same width.
    lines.push(format!(" {:<w$} {}", "master", bar(master, BAR_WIDTH), w = name_width + 5));
    lines
}

/// Level bars per sounding channel and the master, redrawn until a key is pressed.
pub fn meters(h: &Handles, channels: &[(u8, String)]) -> std::io::Result<()> {
    let _raw = RawMode::enter()?;
    let mut out = std::io::stdout();
    let lines = channels.len() + 1;
    let mut first = true;
    loop {
        if !first {
            execute!(out, crossterm::cursor::MoveUp(lines as u16))?;
        }
        first = false;
        let levels: Vec<(u8, &str, f32)> =
            channels.iter().map(|(ch, name)| (*ch, name.as_str(), h.stats.take_peak(*ch as usize - 1))).collect();
        for line in meter_lines(&levels, h.stats.take_master_peak()) {
            write!(out, "\r{line}\x1b[K\r\n")?;
        }
        out.flush()?;
        if event::poll(Duration::from_millis(50))?
            && let TermEvent::Key(k) = event::read()?
            && k.kind == KeyEventKind::Press
        {
            break;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression (issue 13, minor): the meters' bars began wherever the
    /// instrument's name ended. They start in one column, the master's too.
    #[test]
    fn meters_are_aligned() {
        for names in [&["bass", "synth_pad", "drums"][..], &["a", "b"], &["electric_piano_with_a_long_name"]] {
            let channels: Vec<(u8, &str, f32)> =
                names.iter().enumerate().map(|(i, n)| (i as u8 * 5 + 1, *n, 0.5)).collect();
            let lines = meter_lines(&channels, 0.25);
            assert_eq!(lines.len(), names.len() + 1);
            assert!(lines.last().unwrap().starts_with(" master "), "{lines:#?}");
            let starts: Vec<usize> = lines.iter().map(|l| l.find(['#', '.']).unwrap()).collect();
            assert!(starts.iter().all(|&s| s == starts[0]), "bars start at {starts:?}:\n{}", lines.join("\n"));
            assert!(lines[0].ends_with("  -6.0 dB") && lines[names.len()].ends_with(" -12.0 dB"), "{lines:#?}");
        }
    }

    #[test]
    fn two_row_layout() {
        assert_eq!(key_offset('z'), Some(0));
        assert_eq!(key_offset('s'), Some(1));
        assert_eq!(key_offset('m'), Some(11));
        assert_eq!(key_offset(','), Some(12));
        assert_eq!(key_offset('q'), Some(12));
        assert_eq!(key_offset('2'), Some(13));
        assert_eq!(key_offset('u'), Some(23));
        assert_eq!(key_offset('a'), None);
    }
}
