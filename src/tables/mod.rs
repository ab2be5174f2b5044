//! Tables prebuilt on the control thread (band-limited wavetables, the drum kit) and
//! only read, never written, on the audio thread.

pub mod bank;
pub mod drums;
pub mod wavetable;

use wavetable::Wavetables;

/// The synthesized drum kit at one sample rate.
pub struct DrumKit {
    /// One hit per sound, indexed like [`drums::DRUM_SOUNDS`].
    pub sounds: Vec<Box<[f32]>>,
    /// Sound index per MIDI note.
    pub notes: [Option<u16>; 128],
}

impl DrumKit {
    /// Renders every sound of the kit (control thread; a few tens of ms), using
    /// both cores.
    pub fn new(sample_rate: f64) -> Self {
        let n = drums::DRUM_SOUNDS.len();
        let half = n / 2;
        let render = |range: std::ops::Range<usize>| -> Vec<Box<[f32]>> {
            range.map(|i| drums::render_drum(i, sample_rate, 0).into_boxed_slice()).collect()
        };
        let sounds = std::thread::scope(|s| {
            let second = s.spawn(|| render(half..n));
            let mut first = render(0..half);
            first.extend(second.join().expect("drum rendering panicked"));
            first
        });
        DrumKit { sounds, notes: drums::note_table() }
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

    /// The tables, with the drum kit rendered only if `kit` (a rig that never plays
    /// the synthesized kit, such as a SoundFont's General MIDI rig, saves its memory
    /// and the time to render it).
    pub fn with_kit(sample_rate: f32, kit: bool) -> Self {
        let drums = if kit { DrumKit::new(sample_rate as f64) } else { DrumKit::empty() };
        Tables { sample_rate, waves: Wavetables::new(), drums }
    }
}
