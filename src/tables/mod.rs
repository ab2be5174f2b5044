//! Tables prebuilt on the control thread (band-limited wavetables, the drum kit) and
//! only read, never written, on the audio thread. The one exception is the drum kit
//! of `jamrig play`, whose sounds can arrive after the engine starts: each is
//! written once, on the control side, into a slot the audio thread reads with one
//! atomic load ([`KitSounds`]).

pub mod bank;
pub mod drums;
pub mod wavetable;

use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use wavetable::Wavetables;

/// Threads that render the drum kit (the calling thread and one more: the live host
/// evaluates the set on the other core meanwhile).
pub const KIT_THREADS: usize = 2;

/// The kit's sounds, one slot per sound of [`drums::DRUM_SOUNDS`]. A slot is filled
/// once, on the control side, and is empty until then: indexing an empty slot gives
/// an empty hit (no samples). Reading a slot on the audio thread is one atomic load:
/// it neither allocates, locks nor waits, whether the sound is there yet or not.
pub struct KitSounds {
    slots: Box<[OnceLock<Box<[f32]>>]>,
}

impl KitSounds {
    fn with_slots(n: usize) -> Self {
        KitSounds { slots: (0..n).map(|_| OnceLock::new()).collect() }
    }

    /// How many slots (sounds) the kit has.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether the kit has no slots (a rig without a drum-kit channel).
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Whether sound `i` has been rendered (audio thread: one atomic load).
    #[inline]
    pub fn ready(&self, i: usize) -> bool {
        self.slots.get(i).is_some_and(|s| s.get().is_some())
    }

    /// Every slot's hit (empty while not rendered), in sound order.
    pub fn iter(&self) -> impl Iterator<Item = &[f32]> {
        self.slots.iter().map(|s| s.get().map_or(&[][..], |h| &h[..]))
    }

    /// Fills slot `i` (control side). A slot already filled keeps its hit (every
    /// render of a sound is the same).
    fn fill(&self, i: usize, hit: Box<[f32]>) {
        let _ = self.slots[i].set(hit);
    }
}

impl std::ops::Index<usize> for KitSounds {
    type Output = [f32];

    /// Sound `i`'s hit, empty while it is not rendered.
    #[inline]
    fn index(&self, i: usize) -> &[f32] {
        self.slots[i].get().map_or(&[], |h| h)
    }
}

impl PartialEq for KitSounds {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl std::fmt::Debug for KitSounds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ready = (0..self.len()).filter(|&i| self.ready(i)).count();
        write!(f, "KitSounds({ready} of {} rendered)", self.len())
    }
}

/// The synthesized drum kit at one sample rate.
pub struct DrumKit {
    /// One hit per sound, indexed like [`drums::DRUM_SOUNDS`].
    pub sounds: KitSounds,
    /// Sound index per MIDI note.
    pub notes: [Option<u16>; 128],
    sample_rate: f64,
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
        let kit = Self::unrendered(sample_rate, drums::note_table());
        kit.render(&[true; drums::DRUM_SOUNDS.len()], threads);
        kit
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
        let kit = Self::unrendered(sample_rate, map);
        kit.render(&kit.wanted_for(notes), KIT_THREADS);
        kit
    }

    /// The whole kit's note map with no sound rendered yet: every note is silent until
    /// its sound is rendered ([`DrumKit::render`], [`DrumKit::render_rest`]).
    pub fn unrendered(sample_rate: f64, notes: [Option<u16>; 128]) -> Self {
        DrumKit { sounds: KitSounds::with_slots(drums::DRUM_SOUNDS.len()), notes, sample_rate }
    }

    /// The sounds that the notes marked in `notes` play (for [`DrumKit::render`]).
    pub fn wanted_for(&self, notes: &[bool; 128]) -> Vec<bool> {
        let mut wanted = vec![false; self.sounds.len()];
        for (&sound, _) in self.notes.iter().zip(notes).filter(|(_, on)| **on) {
            if let Some(i) = sound {
                wanted[i as usize] = true;
            }
        }
        wanted
    }

    /// Renders the sounds marked in `wanted` that are not rendered yet, by `threads`
    /// threads (at least one; the calling thread is one of them), and returns once
    /// they are all in their slots (control side).
    pub fn render(&self, wanted: &[bool], threads: usize) {
        let order: Vec<usize> = drums::render_order()
            .into_iter()
            .filter(|&i| wanted.get(i).copied().unwrap_or(false) && !self.sounds.ready(i))
            .collect();
        let next = AtomicUsize::new(0);
        let work = || loop {
            let k = next.fetch_add(1, Ordering::Relaxed);
            let Some(&i) = order.get(k) else { break };
            self.sounds.fill(i, drums::render_drum(i, self.sample_rate, 0).into_boxed_slice());
        };
        let threads = threads.clamp(1, order.len().max(1));
        std::thread::scope(|s| {
            let helpers: Vec<_> = (1..threads).map(|_| s.spawn(work)).collect();
            work();
            for h in helpers {
                h.join().expect("drum rendering panicked");
            }
        });
    }

    /// Renders, on the calling thread, every sound the note map plays that is not
    /// rendered yet, the costliest first, each published the moment it is done (the
    /// engine may be playing the kit meanwhile). Stops early, returning false, when
    /// `go_on` says so before a sound.
    pub fn render_rest(&self, go_on: impl Fn() -> bool) -> bool {
        let mut wanted = vec![false; self.sounds.len()];
        for i in self.notes.iter().flatten() {
            wanted[*i as usize] = true;
        }
        for i in drums::render_order() {
            if !wanted[i] || self.sounds.ready(i) {
                continue;
            }
            if !go_on() {
                return false;
            }
            self.sounds.fill(i, drums::render_drum(i, self.sample_rate, 0).into_boxed_slice());
        }
        true
    }

    /// Whether every sound the note map plays is rendered.
    pub fn complete(&self) -> bool {
        self.notes.iter().flatten().all(|&i| self.sounds.ready(i as usize))
    }

    /// No sounds: every note is silent (for rigs without a drum-kit channel).
    pub fn empty() -> Self {
        DrumKit { sounds: KitSounds::with_slots(0), notes: [None; 128], sample_rate: 48_000.0 }
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

    /// The tables with the whole kit's note map, but only the drum sounds that the
    /// notes marked in `notes` play rendered (by [`KIT_THREADS`] threads); the rest
    /// come later, into the same tables, with [`DrumKit::render_rest`] (the live
    /// host: the sounds its patterns play first, the others once it plays).
    pub fn with_drum_notes_first(sample_rate: f32, notes: &[bool; 128]) -> Self {
        let drums = DrumKit::unrendered(sample_rate as f64, drums::note_table());
        drums.render(&drums.wanted_for(notes), KIT_THREADS);
        Tables { sample_rate, waves: Wavetables::new(), drums }
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
                assert_eq!(*hit, *drums::render_drum(i, sr, 0), "{} at {sr} Hz", drums::DRUM_SOUNDS[i].name);
            }
            for threads in [2, 3] {
                let many = DrumKit::with_threads(sr, threads);
                assert!(one.sounds == many.sounds, "{threads} threads at {sr} Hz differ from one");
            }
        }
    }

    #[test]
    fn a_kit_rendered_first_for_some_notes_then_the_rest_is_the_whole_kit() {
        let whole = DrumKit::with_threads(48_000.0, 1);
        let mut notes = [false; 128];
        for n in [36, 38, 42, 46] {
            notes[n] = true;
        }
        let tables = Tables::with_drum_notes_first(48_000.0, &notes);
        let kit = &tables.drums;
        assert_eq!(kit.notes, whole.notes, "the whole kit's note map from the start");
        for note in 0..128 {
            let Some(i) = kit.notes[note] else { continue };
            let i = i as usize;
            assert_eq!(kit.sounds.ready(i), kit.wanted_for(&notes)[i], "note {note}");
            if notes[note] {
                assert_eq!(kit.sounds[i], whole.sounds[i], "note {note}");
            } else if !kit.sounds.ready(i) {
                assert!(kit.sounds[i].is_empty(), "note {note}: silent until rendered");
            }
        }
        assert!(!kit.complete());
        assert!(!kit.render_rest(|| false), "stopped before the first sound");
        assert!(kit.render_rest(|| true));
        assert!(kit.complete());
        assert!(kit.sounds == whole.sounds, "the rest rendered into the same tables is the whole kit");
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
