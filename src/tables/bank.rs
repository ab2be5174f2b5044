//! Sample banks: decoded sample data and the regions that play it (a SoundFont's
//! presets, a set's user samples). Built on the control side (`crate::samples`),
//! immutable once built, shared behind `Arc` by snapshots and sounding voices, and
//! only read on the audio thread.

use std::sync::Arc;

/// Decoded mono sample data, 16-bit (what SoundFonts store; half the memory of f32).
#[derive(Debug, Default)]
pub struct Pcm {
    pub frames: Box<[i16]>,
}

impl Pcm {
    pub fn bytes(&self) -> usize {
        self.frames.len() * std::mem::size_of::<i16>()
    }
}

/// How a region's sample loops (SoundFont `sampleModes`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum LoopMode {
    /// Plays once to its end.
    #[default]
    None,
    /// Loops for as long as the voice sounds (through the release too).
    Continuous,
    /// Loops while the key is held, then plays on to the end during the release.
    UntilRelease,
}

/// A delay-attack-hold-decay-sustain-release envelope as a SoundFont gives it:
/// times in timecents (seconds = 2^(tc/1200)), sustain as the generator has it
/// (volume envelope: centibels of attenuation; modulation envelope: tenths of a
/// percent below full), and the key scaling of hold and decay (timecents per key
/// from key 60).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EnvGens {
    pub delay: f32,
    pub attack: f32,
    pub hold: f32,
    pub decay: f32,
    pub sustain: f32,
    pub release: f32,
    pub key_to_hold: f32,
    pub key_to_decay: f32,
}

impl Default for EnvGens {
    fn default() -> Self {
        EnvGens {
            delay: -12000.0,
            attack: -12000.0,
            hold: -12000.0,
            decay: -12000.0,
            sustain: 0.0,
            release: -12000.0,
            key_to_hold: 0.0,
            key_to_decay: 0.0,
        }
    }
}

/// Which envelope shapes a region's loudness.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Shape {
    /// The region's own SoundFont volume envelope.
    #[default]
    Font,
    /// The channel's ADSR (a user sample played as an instrument).
    Channel,
    /// Plays to its end whatever the key does (a drum hit).
    OneShot,
}

/// One playable zone: a sample over a key and velocity range with everything that
/// shapes it (a SoundFont preset zone and instrument zone combined, or a user
/// sample). Copied into a voice when a note starts.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Region {
    pub lo_key: u8,
    pub hi_key: u8,
    pub lo_vel: u8,
    pub hi_vel: u8,
    /// Index into the bank's `pcm`.
    pub pcm: u32,
    /// Frames of the pcm: the sample is `start..end`, its loop `loop_start..loop_end`.
    pub start: u32,
    pub end: u32,
    pub loop_start: u32,
    pub loop_end: u32,
    pub loop_mode: LoopMode,
    pub sample_rate: f32,
    /// The key at which the sample sounds at its recorded pitch, in cents (root key
    /// times 100 less the sample's pitch correction).
    pub root_cents: f32,
    /// Coarse and fine tune, in cents.
    pub tune_cents: f32,
    /// Cents per key (100: chromatic; 0: every key at the root's pitch).
    pub scale_tuning: f32,
    /// A key and velocity forced by the region (-1: the note's own).
    pub fixed_key: i8,
    pub fixed_vel: i8,
    /// Voices of the same class on the channel cut each other (0: none).
    pub exclusive_class: u16,
    /// Initial attenuation in centibels (SoundFont values already scaled as
    /// hardware synths and FluidSynth do).
    pub attenuation_cb: f32,
    /// -500 (left) .. 500 (right).
    pub pan: f32,
    /// Effect sends, 0..1.
    pub chorus: f32,
    pub reverb: f32,
    pub vol_env: EnvGens,
    pub mod_env: EnvGens,
    pub mod_env_to_pitch: f32,
    pub mod_env_to_fc: f32,
    /// Filter cutoff in absolute cents (13500: open) and resonance in centibels.
    pub filter_fc: f32,
    pub filter_q: f32,
    /// LFOs: delay in timecents, frequency in absolute cents (0 = 8.176 Hz).
    pub mod_lfo_delay: f32,
    pub mod_lfo_freq: f32,
    pub mod_lfo_to_pitch: f32,
    pub mod_lfo_to_fc: f32,
    /// Centibels.
    pub mod_lfo_to_vol: f32,
    pub vib_lfo_delay: f32,
    pub vib_lfo_freq: f32,
    pub vib_lfo_to_pitch: f32,
    pub shape: Shape,
    /// The sample's peak level over `start..end` (1: full scale): a voice whose
    /// level at that peak falls below the noise floor can end.
    pub peak: f32,
}

impl Default for Region {
    fn default() -> Self {
        Region {
            lo_key: 0,
            hi_key: 127,
            lo_vel: 0,
            hi_vel: 127,
            pcm: 0,
            start: 0,
            end: 0,
            loop_start: 0,
            loop_end: 0,
            loop_mode: LoopMode::None,
            sample_rate: 44_100.0,
            root_cents: 6000.0,
            tune_cents: 0.0,
            scale_tuning: 100.0,
            fixed_key: -1,
            fixed_vel: -1,
            exclusive_class: 0,
            attenuation_cb: 0.0,
            pan: 0.0,
            chorus: 0.0,
            reverb: 0.0,
            vol_env: EnvGens::default(),
            mod_env: EnvGens::default(),
            mod_env_to_pitch: 0.0,
            mod_env_to_fc: 0.0,
            filter_fc: 13_500.0,
            filter_q: 0.0,
            mod_lfo_delay: -12000.0,
            mod_lfo_freq: 0.0,
            mod_lfo_to_pitch: 0.0,
            mod_lfo_to_fc: 0.0,
            mod_lfo_to_vol: 0.0,
            vib_lfo_delay: -12000.0,
            vib_lfo_freq: 0.0,
            vib_lfo_to_pitch: 0.0,
            shape: Shape::Font,
            peak: 1.0,
        }
    }
}

impl Region {
    /// Sets `peak` from the sample data.
    pub fn measure_peak(&mut self, pcm: &Pcm) {
        let (a, b) = (self.start as usize, (self.end as usize).min(pcm.frames.len()));
        let most = pcm.frames.get(a..b).map_or(0, |s| s.iter().map(|x| x.unsigned_abs()).max().unwrap_or(0));
        self.peak = most as f32 / 32768.0;
    }

    pub fn matches(&self, key: u8, vel: u8) -> bool {
        (self.lo_key..=self.hi_key).contains(&key) && (self.lo_vel..=self.hi_vel).contains(&vel)
    }
}

/// A playable instrument of a bank: a SoundFont preset, or a set's sample instrument
/// or kit.
#[derive(Clone, Debug, PartialEq)]
pub struct Preset {
    pub name: String,
    /// MIDI bank (128: percussion) and program.
    pub bank: u16,
    pub program: u8,
    pub regions: Vec<Region>,
}

/// Decoded samples and the presets that play them.
#[derive(Debug, Default)]
pub struct SampleBank {
    /// What the bank was loaded from (for messages).
    pub name: String,
    pub pcm: Vec<Arc<Pcm>>,
    pub presets: Vec<Preset>,
    /// Preset indices sorted by (bank, program), for program changes on the audio thread.
    by_program: Vec<(u16, u8, u16)>,
}

impl SampleBank {
    pub fn new(name: String, pcm: Vec<Arc<Pcm>>, presets: Vec<Preset>) -> Self {
        let mut by_program: Vec<(u16, u8, u16)> =
            presets.iter().enumerate().map(|(i, p)| (p.bank, p.program, i as u16)).collect();
        by_program.sort();
        by_program.dedup_by_key(|e| (e.0, e.1));
        SampleBank { name, pcm, presets, by_program }
    }

    /// The preset at (bank, program), if the bank has one. No allocation: the audio
    /// thread calls it on program changes.
    pub fn find(&self, bank: u16, program: u8) -> Option<u16> {
        self.by_program.binary_search_by(|e| (e.0, e.1).cmp(&(bank, program))).ok().map(|i| self.by_program[i].2)
    }

    /// A preset by name (exact, then ignoring case).
    pub fn find_name(&self, name: &str) -> Option<u16> {
        let exact = self.presets.iter().position(|p| p.name == name);
        exact.or_else(|| self.presets.iter().position(|p| p.name.eq_ignore_ascii_case(name))).map(|i| i as u16)
    }

    /// Bytes of decoded sample data.
    pub fn sample_bytes(&self) -> usize {
        self.pcm.iter().map(|p| p.bytes()).sum()
    }

    /// Regions in all presets.
    pub fn region_count(&self) -> usize {
        self.presets.iter().map(|p| p.regions.len()).sum()
    }
}
