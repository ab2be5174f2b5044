//! Tables prebuilt on the control thread (band-limited wavetables, the drum kit) and
//! only read, never written, on the audio thread.

pub mod bank;
pub mod drums;
pub mod wavetable;

use std::sync::atomic::{AtomicUsize, Ordering};

use wavetable::Wavetables;

/// Threads that render the drum kit (the calling thread and one more: the live host
/// evaluates the set on the other core meanwhile).
pub const KIT_THREADS: usize = 2;

/// The synthesized drum kit at one sample rate.
pub struct DrumKit {
    /// One hit per sound, indexed like [`drums::DRUM_SOUNDS`].
    pub sounds: Vec<Box<[f32]>>,
    /// Sound index per MIDI note.
    pub notes: [Option<u16>; 128],
}

impl DrumKit {
    /// Renders every sound of the kit (control thread; a few tens of ms), using
    /// both cores: two threads take the next sound from a shared counter, the
    /// costliest first ([`drums::render_order`]), so neither waits long for the
    /// other. Every sound depends only on its index, so the kit is the same
    /// whichever thread renders what.
    pub fn new(sample_rate: f64) -> Self {
        Self::with_threads(sample_rate, KIT_THREADS)
    }

    /// The kit rendered by `threads` threads (at least one; the calling thread is one of them).
    pub fn with_threads(sample_rate: f64, threads: usize) -> Self {
        Self::rendered(sample_rate, threads, drums::note_table(), &[true; drums::DRUM_SOUNDS.len()])
    }

    /// Only the sounds that the notes marked in `notes` play, each the same as in the
    /// whole kit; the other notes play nothing. For a render whose notes are all known
    /// before it starts (control thread).
    pub fn for_notes(sample_rate: f64, notes: &[bool; 128]) -> Self {
        let mut map = drums::note_table();
        for (slot, &on) in map.iter_mut().zip(notes) {
            if !on {
                *slot = None;
            }
        }
        let mut wanted = [false; drums::DRUM_SOUNDS.len()];
        for i in map.iter().flatten() {
            wanted[*i as usize] = true;
        }
        Self::rendered(sample_rate, KIT_THREADS, map, &wanted)
    }

    /// The sounds marked in `wanted`, rendered by `threads` threads (at least one; the
    /// calling thread is one of them), the others left empty; `map` gives the sound
    /// of each note.
    fn rendered(sample_rate: f64, threads: usize, map: [Option<u16>; 128], wanted: &[bool]) -> Self {
        let n = drums::DRUM_SOUNDS.len();
        let order: Vec<usize> = drums::render_order().into_iter().filter(|&i| wanted[i]).collect();
        let next = AtomicUsize::new(0);
        let work = || -> Vec<(usize, Box<[f32]>)> {
            let mut done = Vec::with_capacity(n);
            loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                let Some(&i) = order.get(k) else { break };
                done.push((i, drums::render_drum(i, sample_rate, 0).into_boxed_slice()));
            }
            done
        };
        let mut slots: Vec<Option<Box<[f32]>>> =
            (0..n).map(|i| if wanted[i] { None } else { Some(Box::default()) }).collect();
        std::thread::scope(|s| {
            let helpers: Vec<_> = (1..threads.max(1)).map(|_| s.spawn(work)).collect();
            let mut all = work();
            for h in helpers {
                all.extend(h.join().expect("drum rendering panicked"));
            }
            for (i, hit) in all {
                slots[i] = Some(hit);
            }
        });
        let sounds = slots.into_iter().map(|s| s.expect("every sound is in the render order")).collect();
        DrumKit { sounds, notes: map }
    }

    /// No sounds: every note is silent (for rigs without a drum-kit channel).
    pub fn empty() -> Self {
        DrumKit { sounds: Vec::new(), notes: [None; 128] }
    }
}

/// Everything prebuilt that the engine reads.
pub struct Tables {
    pub sample_rate: f32,
    pub waves: Wavetables,
    pub drums: DrumKit,
}

impl Tables {
    pub fn new(sample_rate: f32) -> Self {
        Self::with_kit(sample_rate, true)
    }

    /// The tables with only the drum sounds that the notes marked in `notes` play
    /// ([`DrumKit::for_notes`]).
    pub fn for_drum_notes(sample_rate: f32, notes: &[bool; 128]) -> Self {
        Tables { sample_rate, waves: Wavetables::new(), drums: DrumKit::for_notes(sample_rate as f64, notes) }
    }

    /// The tables, with the drum kit rendered only if `kit` (a rig that never plays
    /// the synthesized kit, such as a SoundFont's General MIDI rig, saves its memory
    /// and the time to render it).
    pub fn with_kit(sample_rate: f32, kit: bool) -> Self {
        let drums = if kit { DrumKit::new(sample_rate as f64) } else { DrumKit::empty() };
        Tables { sample_rate, waves: Wavetables::new(), drums }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kit_for_notes_plays_the_whole_kits_sounds_for_those_notes_and_nothing_else() {
        let whole = DrumKit::with_threads(48_000.0, 1);
        let mut notes = [false; 128];
        for n in [36, 38, 42, 46, 49] {
            notes[n] = true;
        }
        let some = DrumKit::for_notes(48_000.0, &notes);
        assert_eq!(some.sounds.len(), whole.sounds.len());
        for (note, &asked) in notes.iter().enumerate() {
            match (asked, whole.notes[note], some.notes[note]) {
                (true, w, s) => {
                    assert_eq!(w, s, "note {note}");
                    if let Some(i) = s {
                        assert!(!some.sounds[i as usize].is_empty(), "note {note}");
                        assert_eq!(some.sounds[i as usize], whole.sounds[i as usize], "note {note}");
                    }
                }
                (false, _, s) => assert_eq!(s, None, "note {note} is not asked for"),
            }
        }
        let played: Vec<u16> = some.notes.iter().flatten().copied().collect();
        for (i, hit) in some.sounds.iter().enumerate() {
            assert_eq!(hit.is_empty(), !played.contains(&(i as u16)), "sound {i}");
        }
    }

    #[test]
    fn kit_is_the_same_whatever_the_split() {
        for sr in [44_100.0, 48_000.0] {
            let one = DrumKit::with_threads(sr, 1);
            assert_eq!(one.sounds.len(), drums::DRUM_SOUNDS.len());
            for (i, hit) in one.sounds.iter().enumerate() {
                assert_eq!(**hit, *drums::render_drum(i, sr, 0), "{} at {sr} Hz", drums::DRUM_SOUNDS[i].name);
            }
            for threads in [2, 3] {
                let many = DrumKit::with_threads(sr, threads);
                assert!(one.sounds == many.sounds, "{threads} threads at {sr} Hz differ from one");
            }
        }
    }

    #[test]
    fn render_order_holds_every_sound_once() {
        let mut order = drums::render_order();
        assert_eq!(order.len(), drums::DRUM_SOUNDS.len());
        assert_eq!(order[0], drums::drum_index(drums::COSTLIEST[0]).unwrap());
        order.sort_unstable();
        assert!(order.iter().copied().eq(0..drums::DRUM_SOUNDS.len()));
    }
}
