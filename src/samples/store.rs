//! The set's own samples as one bank at the engine's rate (control thread): each
//! decoded file resampled once (rubato) and kept while a set uses it, drum samples
//! as a kit (one key each, played to their end), sample instruments as presets
//! over their key range with the channel's envelope. A set whose samples did not
//! change gets the same bank back, so the engine sees no change.

use super::decode::{self, Decoded};
use crate::rig::set::{SampleUse, UserSample};
use crate::tables::bank::{LoopMode, Pcm, Preset, Region, SampleBank, Shape};
use std::collections::HashMap;
use std::sync::Arc;

/// The name of the user bank's kit preset (preset 0 when the set has drum samples).
pub const KIT_PRESET: &str = "kit";

pub struct UserBanks {
    rate: u32,
    /// Resampled channels per decoded file (keyed by identity; the `Arc` keeps the
    /// key valid).
    resampled: HashMap<usize, (Arc<Decoded>, Vec<Arc<Pcm>>)>,
    last: Option<(Vec<UserSample>, Arc<SampleBank>)>,
}

impl UserBanks {
    pub fn new(rate: u32) -> Self {
        UserBanks { rate, resampled: HashMap::new(), last: None }
    }

    fn pcm_of(&mut self, d: &Arc<Decoded>) -> Result<Vec<Arc<Pcm>>, String> {
        let key = Arc::as_ptr(d) as usize;
        if let Some((_, p)) = self.resampled.get(&key) {
            return Ok(p.clone());
        }
        let r = decode::resample((**d).clone(), self.rate)?;
        let pcm: Vec<Arc<Pcm>> = r
            .channels
            .iter()
            .map(|c| Arc::new(Pcm { frames: c.iter().map(|x| decode::to_i16(*x)).collect() }))
            .collect();
        self.resampled.insert(key, (d.clone(), pcm.clone()));
        Ok(pcm)
    }

    /// The bank for `samples` and the preset each instrument sample is (by name), or
    /// `None` when the set has no samples.
    pub fn bank(&mut self, samples: &[UserSample]) -> Result<Option<Arc<SampleBank>>, String> {
        if samples.is_empty() {
            self.last = None;
            self.resampled.clear();
            return Ok(None);
        }
        if let Some((s, b)) = &self.last
            && s.as_slice() == samples
        {
            return Ok(Some(b.clone()));
        }
        let mut pcm: Vec<Arc<Pcm>> = Vec::new();
        let mut kit = Preset { name: KIT_PRESET.into(), bank: 128, program: 0, regions: Vec::new() };
        let mut instruments = Vec::new();
        for s in samples {
            let chans = self.pcm_of(&s.audio.0)?;
            let ratio = self.rate as f64 / s.audio.0.rate.max(1) as f64;
            let stereo = chans.len() > 1;
            let mut regions = Vec::new();
            for (c, p) in chans.iter().enumerate() {
                let len = p.frames.len() as u32;
                let mut r = Region {
                    pcm: pcm.len() as u32,
                    start: 0,
                    end: len,
                    loop_start: 0,
                    loop_end: len,
                    sample_rate: self.rate as f32,
                    pan: if stereo { if c == 0 { -500.0 } else { 500.0 } } else { 0.0 },
                    ..Region::default()
                };
                r.measure_peak(p);
                pcm.push(p.clone());
                match s.use_ {
                    SampleUse::Drum { note } => {
                        r.lo_key = note;
                        r.hi_key = note;
                        r.root_cents = note as f32 * 100.0;
                        r.shape = Shape::OneShot;
                    }
                    SampleUse::Instrument { lo, hi, root, loop_frames } => {
                        r.lo_key = lo;
                        r.hi_key = hi;
                        r.root_cents = root as f32 * 100.0;
                        r.shape = Shape::Channel;
                        if let Some((a, b)) = loop_frames {
                            let (a, b) = ((a as f64 * ratio) as u32, (b as f64 * ratio) as u32);
                            if b > a + 1 && b <= len {
                                r.loop_mode = LoopMode::Continuous;
                                r.loop_start = a;
                                r.loop_end = b;
                            }
                        }
                    }
                }
                regions.push(r);
            }
            match s.use_ {
                SampleUse::Drum { .. } => {
                    // A later sample on the same note replaces the earlier one.
                    let key = regions[0].lo_key;
                    kit.regions.retain(|r| r.lo_key != key);
                    kit.regions.extend(regions);
                }
                SampleUse::Instrument { .. } => {
                    instruments.push(Preset { name: s.name.clone(), bank: 0, program: 0, regions });
                }
            }
        }
        let mut presets = vec![kit];
        presets.extend(instruments);
        let bank = Arc::new(SampleBank::new("the set's samples".into(), pcm, presets));
        // Forget resampled files the set no longer uses.
        let used: Vec<usize> = samples.iter().map(|s| Arc::as_ptr(&s.audio.0) as usize).collect();
        self.resampled.retain(|k, _| used.contains(k));
        self.last = Some((samples.to_vec(), bank.clone()));
        Ok(Some(bank))
    }
}
