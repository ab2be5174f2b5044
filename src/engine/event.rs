//! Events the engine consumes: fixed-size, `Copy`, stamped with the engine frame at
//! which they take effect. Producers (MIDI input, the REPL, the offline renderer)
//! push them into a bounded queue; the audio thread drains it every tick.

/// What happens. Channels are 0-based here (MIDI channel 1 is 0).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum EventKind {
    NoteOn {
        channel: u8,
        note: u8,
        velocity: u8,
    },
    NoteOff {
        channel: u8,
        note: u8,
    },
    /// A MIDI control change (standard meanings and the set's CC map).
    Control {
        channel: u8,
        cc: u8,
        value: u8,
    },
    /// Pitch bend, -8192..=8191.
    PitchBend {
        channel: u8,
        value: i16,
    },
    /// Program change: selects an instrument through the General MIDI map.
    Program {
        channel: u8,
        program: u8,
    },
    /// Channel pressure (aftertouch), 0..=127.
    Pressure {
        channel: u8,
        value: u8,
    },
    /// A parameter set as a knob sets it (the control port's `/jamrig/param`):
    /// `param` is a [`crate::params::Param`] index, `value` in its units, checked
    /// against its range by the sender. It glides there, and stays until the
    /// next knob or reset (a reload keeps it), like a CC-mapped knob.
    Param {
        channel: u8,
        param: u8,
        value: f32,
    },
    /// MIDI clock tick (24 per quarter note).
    Clock,
    /// MIDI Start: the clock's source plays from the top at its next tick.
    ClockStart,
    /// MIDI Stop.
    ClockStop,
    /// MIDI Continue: from the song position at the next tick.
    ClockContinue,
    /// Song position in MIDI beats (sixteenth notes).
    SongPosition(u16),
    /// Internal transport start from the top (`:play`).
    Start,
    /// Internal transport stop (`:stop`).
    Stop,
    /// Internal transport continue from where it stopped.
    Continue,
    /// The engine's own: an external session starts playing here, at `beat`.
    Launch {
        beat: f64,
    },
    /// Internal tempo, in BPM.
    Tempo(f32),
    /// Silence everything at once (all notes off and all sound off, every channel).
    Panic,
}

/// An event and the engine frame it applies at.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Event {
    pub frame: u64,
    pub kind: EventKind,
}

impl EventKind {
    /// The (0-based) channel of a channel event; `None` for transport events.
    pub fn channel(&self) -> Option<u8> {
        match *self {
            EventKind::NoteOn { channel, .. }
            | EventKind::NoteOff { channel, .. }
            | EventKind::Control { channel, .. }
            | EventKind::PitchBend { channel, .. }
            | EventKind::Program { channel, .. }
            | EventKind::Pressure { channel, .. }
            | EventKind::Param { channel, .. } => Some(channel),
            _ => None,
        }
    }
}

impl Event {
    pub fn new(frame: u64, kind: EventKind) -> Self {
        Event { frame, kind }
    }

    /// Decodes a raw MIDI message (channel voice or system realtime). Malformed,
    /// truncated or unsupported messages give `None`; they never panic.
    pub fn from_midi(frame: u64, bytes: &[u8]) -> Option<Event> {
        let status = *bytes.first()?;
        let data = |i: usize| bytes.get(i).copied().filter(|b| *b < 0x80);
        let kind = match status {
            0xF8 => EventKind::Clock,
            0xFA => EventKind::ClockStart,
            0xFB => EventKind::ClockContinue,
            0xFC => EventKind::ClockStop,
            0xF2 => EventKind::SongPosition(data(1)? as u16 | (data(2)? as u16) << 7),
            0x80..=0xEF => {
                let channel = status & 0x0F;
                match status & 0xF0 {
                    0x80 => EventKind::NoteOff { channel, note: data(1)? },
                    0x90 => match (data(1)?, data(2)?) {
                        (note, 0) => EventKind::NoteOff { channel, note },
                        (note, velocity) => EventKind::NoteOn { channel, note, velocity },
                    },
                    0xB0 => EventKind::Control { channel, cc: data(1)?, value: data(2)? },
                    0xC0 => EventKind::Program { channel, program: data(1)? },
                    0xD0 => EventKind::Pressure { channel, value: data(1)? },
                    0xE0 => {
                        let raw = data(1)? as i16 | (data(2)? as i16) << 7;
                        EventKind::PitchBend { channel, value: raw - 8192 }
                    }
                    _ => return None, // polyphonic aftertouch: not used
                }
            }
            _ => return None,
        };
        Some(Event { frame, kind })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_voice_messages() {
        let on = Event::from_midi(5, &[0x91, 60, 100]).unwrap();
        assert_eq!(on.kind, EventKind::NoteOn { channel: 1, note: 60, velocity: 100 });
        assert_eq!(on.frame, 5);
        assert_eq!(Event::from_midi(0, &[0x90, 60, 0]).unwrap().kind, EventKind::NoteOff { channel: 0, note: 60 });
        assert_eq!(Event::from_midi(0, &[0xE0, 0, 0x40]).unwrap().kind, EventKind::PitchBend { channel: 0, value: 0 });
        assert_eq!(
            Event::from_midi(0, &[0xE0, 0x7F, 0x7F]).unwrap().kind,
            EventKind::PitchBend { channel: 0, value: 8191 }
        );
        assert_eq!(Event::from_midi(0, &[0xF2, 0x10, 0x01]).unwrap().kind, EventKind::SongPosition(144));
    }

    #[test]
    fn malformed_messages_are_ignored() {
        for bad in [&[][..], &[0x90], &[0x90, 60], &[0x90, 0x80, 1], &[0x45, 1, 2], &[0xF0, 1, 2, 0xF7], &[0xA0, 1, 2]]
        {
            assert_eq!(Event::from_midi(0, bad), None, "{bad:?}");
        }
    }
}
