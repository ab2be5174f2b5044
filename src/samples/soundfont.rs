//! SoundFont 2 and 3 files read into a [`SampleBank`] (control thread): the RIFF
//! structure, the preset and instrument zones combined by the SoundFont 2.04 rules
//! (global zones, preset generators added to instrument ones, key and velocity
//! ranges intersected), the 16-bit samples, and SoundFont 3's Ogg Vorbis samples
//! decoded once with symphonia.
//!
//! The reader works on the file's bytes in memory with checked access only: no
//! input, however damaged, makes it panic or allocate more than the file's size
//! (fuzzed in tests/soundfont.rs). Values out of range are clamped as FluidSynth
//! does, and a zone that cannot play (a bad sample, an empty range) is dropped
//! rather than failing the whole font. (The parser crates considered either panic on
//! malformed input or refuse SoundFont 3, so this one is written here.)

use crate::tables::bank::{EnvGens, LoopMode, Pcm, Preset, Region, SampleBank};
use std::sync::Arc;

/// A font that cannot be read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FontError {
    #[error("is not a SoundFont (no RIFF sfbk header)")]
    NotSoundFont,
    #[error("is truncated or damaged ({0})")]
    Damaged(String),
    #[error("has no presets")]
    NoPresets,
    #[error("has no sample data")]
    NoSamples,
}

/// SoundFont generator numbers (SF2.04 section 8.1.2).
mod g {
    pub const START_OFS: usize = 0;
    pub const END_OFS: usize = 1;
    pub const LOOP_START_OFS: usize = 2;
    pub const LOOP_END_OFS: usize = 3;
    pub const START_COARSE: usize = 4;
    pub const MOD_LFO_TO_PITCH: usize = 5;
    pub const VIB_LFO_TO_PITCH: usize = 6;
    pub const MOD_ENV_TO_PITCH: usize = 7;
    pub const FILTER_FC: usize = 8;
    pub const FILTER_Q: usize = 9;
    pub const MOD_LFO_TO_FC: usize = 10;
    pub const MOD_ENV_TO_FC: usize = 11;
    pub const END_COARSE: usize = 12;
    pub const MOD_LFO_TO_VOL: usize = 13;
    pub const CHORUS: usize = 15;
    pub const REVERB: usize = 16;
    pub const PAN: usize = 17;
    pub const MOD_LFO_DELAY: usize = 21;
    pub const MOD_LFO_FREQ: usize = 22;
    pub const VIB_LFO_DELAY: usize = 23;
    pub const VIB_LFO_FREQ: usize = 24;
    pub const MOD_ENV: usize = 25; // delay, attack, hold, decay, sustain, release, key->hold, key->decay
    pub const VOL_ENV: usize = 33;
    pub const INSTRUMENT: usize = 41;
    pub const KEY_RANGE: usize = 43;
    pub const VEL_RANGE: usize = 44;
    pub const LOOP_START_COARSE: usize = 45;
    pub const KEYNUM: usize = 46;
    pub const VELOCITY: usize = 47;
    pub const ATTENUATION: usize = 48;
    pub const LOOP_END_COARSE: usize = 50;
    pub const COARSE_TUNE: usize = 51;
    pub const FINE_TUNE: usize = 52;
    pub const SAMPLE_ID: usize = 53;
    pub const SAMPLE_MODES: usize = 54;
    pub const SCALE_TUNING: usize = 56;
    pub const EXCLUSIVE_CLASS: usize = 57;
    pub const ROOT_KEY: usize = 58;
    pub const COUNT: usize = 61;
    /// Generators a preset zone may not set (sample addresses and the like).
    pub const INSTRUMENT_ONLY: [usize; 12] = [
        START_OFS,
        END_OFS,
        LOOP_START_OFS,
        LOOP_END_OFS,
        START_COARSE,
        END_COARSE,
        LOOP_START_COARSE,
        KEYNUM,
        VELOCITY,
        LOOP_END_COARSE,
        SAMPLE_MODES,
        EXCLUSIVE_CLASS,
    ];
}

/// FluidSynth (and the EMU hardware) scale the initial attenuation generator.
const ATTENUATION_FACTOR: f32 = 0.4;
/// The most frames one SoundFont 3 sample decodes to (about 6 minutes at 48 kHz).
const MAX_VORBIS_FRAMES: usize = 1 << 24;

/// Little-endian reads from a byte slice, every one checked.
struct Bytes<'a>(&'a [u8]);

impl<'a> Bytes<'a> {
    fn u8(&self, at: usize) -> Option<u8> {
        self.0.get(at).copied()
    }
    fn u16(&self, at: usize) -> Option<u16> {
        Some(u16::from_le_bytes(self.0.get(at..at.checked_add(2)?)?.try_into().ok()?))
    }
    fn i16(&self, at: usize) -> Option<i16> {
        self.u16(at).map(|v| v as i16)
    }
    fn u32(&self, at: usize) -> Option<u32> {
        Some(u32::from_le_bytes(self.0.get(at..at.checked_add(4)?)?.try_into().ok()?))
    }
    fn name(&self, at: usize) -> String {
        let raw = self.0.get(at..at + 20).unwrap_or(&[]);
        let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
        String::from_utf8_lossy(&raw[..end]).trim().to_string()
    }
}

/// The chunks directly inside a RIFF list body: (id, body).
fn chunks(body: &[u8]) -> Vec<([u8; 4], &[u8])> {
    let mut out = Vec::new();
    let mut at = 0usize;
    while at + 8 <= body.len() {
        let id: [u8; 4] = body[at..at + 4].try_into().unwrap_or([0; 4]);
        let size = u32::from_le_bytes(body[at + 4..at + 8].try_into().unwrap_or([0; 4])) as usize;
        let start = at + 8;
        let end = start.saturating_add(size).min(body.len());
        out.push((id, &body[start..end]));
        at = end + (size & 1);
    }
    out
}

fn list<'a>(top: &[([u8; 4], &'a [u8])], kind: &[u8; 4]) -> Option<&'a [u8]> {
    top.iter().find(|(id, b)| id == b"LIST" && b.get(..4) == Some(kind)).map(|(_, b)| &b[4..])
}

fn sub<'a>(items: &[([u8; 4], &'a [u8])], id: &[u8; 4]) -> &'a [u8] {
    items.iter().find(|(i, _)| i == id).map(|(_, b)| *b).unwrap_or(&[])
}

/// One zone's generators: the values set, by generator number.
#[derive(Clone, Copy)]
struct Gens {
    val: [i16; g::COUNT],
    set: u64,
}

impl Gens {
    const EMPTY: Gens = Gens { val: [0; g::COUNT], set: 0 };

    fn get(&self, n: usize) -> Option<i16> {
        (self.set >> n & 1 == 1).then_some(self.val[n])
    }

    fn put(&mut self, n: usize, v: i16) {
        self.val[n] = v;
        self.set |= 1 << n;
    }

    /// `self` over `base` (a local zone over its global zone).
    fn over(&self, base: &Gens) -> Gens {
        let mut out = *base;
        for n in 0..g::COUNT {
            if let Some(v) = self.get(n) {
                out.put(n, v);
            }
        }
        out
    }

    /// A range generator (lo, hi), or the full range.
    fn range(&self, n: usize) -> (u8, u8) {
        match self.get(n) {
            Some(v) => {
                let b = (v as u16).to_le_bytes();
                (b[0].min(127), b[1].min(127))
            }
            None => (0, 127),
        }
    }
}

/// Zones of a preset or instrument: generators, and the instrument or sample they
/// point at (the last generator).
struct Zone {
    gens: Gens,
    link: Option<u16>,
}

/// Reads the zones `bag_lo..bag_hi` from bag and generator chunks.
fn zones(bags: &Bytes, gens: &Bytes, bag_lo: usize, bag_hi: usize, link_gen: usize) -> Vec<Zone> {
    let bag_count = bags.0.len() / 4;
    let gen_count = gens.0.len() / 4;
    let mut out = Vec::new();
    for b in bag_lo..bag_hi.min(bag_count.saturating_sub(1)) {
        let (Some(g0), Some(g1)) = (bags.u16(b * 4), bags.u16((b + 1) * 4)) else { break };
        let (g0, g1) = (g0 as usize, (g1 as usize).min(gen_count));
        let mut z = Zone { gens: Gens::EMPTY, link: None };
        for i in g0..g1.max(g0) {
            let (Some(op), Some(amount)) = (gens.u16(i * 4), gens.i16(i * 4 + 2)) else { break };
            let op = op as usize;
            if op == link_gen {
                z.link = Some(amount as u16);
                break; // the link ends the zone's generators
            }
            if op < g::COUNT {
                z.gens.put(op, amount);
            }
        }
        out.push(z);
    }
    out
}

/// The sample headers of the font.
#[derive(Clone, Copy, Debug)]
struct SampleHeader {
    start: u32,
    end: u32,
    loop_start: u32,
    loop_end: u32,
    rate: u32,
    pitch: u8,
    correction: i8,
    kind: u16,
}

/// A font's sample data as [`build`] asks for it, once it knows whether the font
/// is compressed: 16-bit frames (SoundFont 2), or the Ogg Vorbis streams' bytes
/// (SoundFont 3).
enum SampleData<'a> {
    Pcm(Pcm),
    Compressed(std::borrow::Cow<'a, [u8]>),
}

/// Reads a SoundFont 2 or 3 from its bytes. `name` is how messages call it.
pub fn read(name: &str, bytes: &[u8]) -> Result<SampleBank, FontError> {
    let b = Bytes(bytes);
    if bytes.get(..4) != Some(b"RIFF") || bytes.get(8..12) != Some(b"sfbk") {
        return Err(FontError::NotSoundFont);
    }
    let size = b.u32(4).unwrap_or(0) as usize;
    let body = &bytes[12..(8usize.saturating_add(size)).clamp(12, bytes.len())];
    let top = chunks(body);
    let sdta = chunks(list(&top, b"sdta").ok_or_else(|| FontError::Damaged("no sample data list".into()))?);
    let pdta = list(&top, b"pdta").ok_or_else(|| FontError::Damaged("no preset data list".into()))?;
    let smpl = sub(&sdta, b"smpl");
    build(name, pdta, smpl.len(), |compressed| {
        Ok(if compressed { SampleData::Compressed(smpl.into()) } else { SampleData::Pcm(pcm16(smpl)) })
    })
}

/// The bank from the preset data list's body `pdta` and a sample chunk of
/// `smpl_len` bytes, which `samples` reads when asked (told whether the font is
/// compressed).
fn build<'a>(
    name: &str,
    pdta: &[u8],
    smpl_len: usize,
    samples: impl FnOnce(bool) -> Result<SampleData<'a>, FontError>,
) -> Result<SampleBank, FontError> {
    let pdta = chunks(pdta);
    if smpl_len < 2 {
        return Err(FontError::NoSamples);
    }
    let (phdr, pbag, pgen) = (Bytes(sub(&pdta, b"phdr")), Bytes(sub(&pdta, b"pbag")), Bytes(sub(&pdta, b"pgen")));
    let (inst, ibag, igen) = (Bytes(sub(&pdta, b"inst")), Bytes(sub(&pdta, b"ibag")), Bytes(sub(&pdta, b"igen")));
    let shdr = Bytes(sub(&pdta, b"shdr"));
    let n_presets = (phdr.0.len() / 38).saturating_sub(1);
    let n_inst = (inst.0.len() / 22).saturating_sub(1);
    let n_samples = (shdr.0.len() / 46).saturating_sub(1);
    if n_presets == 0 {
        return Err(FontError::NoPresets);
    }
    let headers: Vec<SampleHeader> = (0..n_samples)
        .map(|i| {
            let at = i * 46;
            SampleHeader {
                start: shdr.u32(at + 20).unwrap_or(0),
                end: shdr.u32(at + 24).unwrap_or(0),
                loop_start: shdr.u32(at + 28).unwrap_or(0),
                loop_end: shdr.u32(at + 32).unwrap_or(0),
                rate: shdr.u32(at + 36).unwrap_or(0),
                pitch: shdr.u8(at + 40).unwrap_or(60),
                correction: shdr.u8(at + 41).unwrap_or(0) as i8,
                kind: shdr.u16(at + 44).unwrap_or(1),
            }
        })
        .collect();

    // Sample data: SoundFont 2 keeps 16-bit frames; SoundFont 3 an Ogg Vorbis stream
    // per sample, at byte offsets.
    let compressed = headers.iter().any(|h| h.kind & 0x10 != 0);
    let (pcm, headers) = match samples(compressed)? {
        SampleData::Compressed(ogg) => decode_vorbis(&ogg, &headers)?,
        SampleData::Pcm(pcm) => (pcm, headers),
    };
    let pool_len = pcm.frames.len() as u32;

    // Instruments: their zones with the global zone folded in.
    let instruments: Vec<Vec<(Gens, u16)>> = (0..n_inst)
        .map(|i| {
            let lo = inst.u16(i * 22 + 20).unwrap_or(0) as usize;
            let hi = inst.u16((i + 1) * 22 + 20).unwrap_or(0) as usize;
            let zs = zones(&ibag, &igen, lo, hi, g::SAMPLE_ID);
            let global = zs.first().filter(|z| z.link.is_none()).map(|z| z.gens).unwrap_or(Gens::EMPTY);
            zs.iter().filter_map(|z| z.link.map(|s| (z.gens.over(&global), s))).collect()
        })
        .collect();

    let mut presets: Vec<Preset> = Vec::with_capacity(n_presets);
    for p in 0..n_presets {
        let at = p * 38;
        let lo = phdr.u16(at + 24).unwrap_or(0) as usize;
        let hi = phdr.u16(at + 38 + 24).unwrap_or(0) as usize;
        let zs = zones(&pbag, &pgen, lo, hi, g::INSTRUMENT);
        let global = zs.first().filter(|z| z.link.is_none()).map(|z| z.gens).unwrap_or(Gens::EMPTY);
        let mut regions = Vec::new();
        for z in &zs {
            let Some(ins) = z.link.and_then(|i| instruments.get(i as usize)) else { continue };
            let pz = z.gens.over(&global);
            for (iz, sample) in ins {
                let Some(h) = headers.get(*sample as usize) else { continue };
                if h.kind & 0x8000 != 0 {
                    continue; // ROM samples are not in the file
                }
                if let Some(r) = region(&pz, iz, h, pool_len) {
                    regions.push(r);
                }
            }
        }
        presets.push(Preset {
            name: phdr.name(at),
            bank: phdr.u16(at + 22).unwrap_or(0),
            program: phdr.u16(at + 20).unwrap_or(0).min(127) as u8,
            regions,
        });
    }
    // Many regions play the same stretch of a sample: its peak is measured once.
    let mut peaks: std::collections::HashMap<(u32, u32), f32> = std::collections::HashMap::new();
    for r in presets.iter_mut().flat_map(|p| p.regions.iter_mut()) {
        let key = (r.start, r.end);
        match peaks.get(&key) {
            Some(&peak) => r.peak = peak,
            None => {
                r.measure_peak(&pcm);
                peaks.insert(key, r.peak);
            }
        }
    }
    Ok(SampleBank::new(name.to_string(), vec![Arc::new(pcm)], presets))
}

fn pcm16(smpl: &[u8]) -> Pcm {
    Pcm { frames: smpl.chunks_exact(2).map(|c| i16::from_le_bytes([c[0], c[1]])).collect() }
}

/// Decodes SoundFont 3 samples into one pool, and the headers pointing into it
/// (a SoundFont 3 loop is relative to its sample's start).
fn decode_vorbis(smpl: &[u8], headers: &[SampleHeader]) -> Result<(Pcm, Vec<SampleHeader>), FontError> {
    let mut pool: Vec<i16> = Vec::new();
    let mut out = Vec::with_capacity(headers.len());
    for h in headers {
        let mut nh = *h;
        if h.kind & 0x10 == 0 {
            // An uncompressed sample in a SoundFont 3 cannot be placed: leave it empty.
            nh.start = 0;
            nh.end = 0;
            out.push(nh);
            continue;
        }
        let (s, e) = (h.start as usize, (h.end as usize).min(smpl.len()));
        let frames = if s < e { super::decode::vorbis_mono(&smpl[s..e], MAX_VORBIS_FRAMES) } else { None };
        let start = pool.len() as u32;
        match frames {
            Some(f) => pool.extend(f),
            None => {
                nh.start = 0;
                nh.end = 0;
                out.push(nh);
                continue;
            }
        }
        let end = pool.len() as u32;
        // Guard frames after each sample, as SoundFont 2 has them.
        pool.extend(std::iter::repeat_n(0, 46));
        nh.start = start;
        nh.end = end;
        nh.loop_start = start.saturating_add(h.loop_start);
        nh.loop_end = start.saturating_add(h.loop_end);
        out.push(nh);
    }
    if pool.is_empty() {
        return Err(FontError::Damaged("no sample of the SoundFont 3 decodes".into()));
    }
    Ok((Pcm { frames: pool.into_boxed_slice() }, out))
}

fn tc_or(gens: &Gens, n: usize, default: f32) -> f32 {
    gens.get(n).map(|v| v as f32).unwrap_or(default)
}

fn env(sum: &dyn Fn(usize, f32) -> f32, base: usize) -> EnvGens {
    EnvGens {
        delay: sum(base, -12000.0),
        attack: sum(base + 1, -12000.0),
        hold: sum(base + 2, -12000.0),
        decay: sum(base + 3, -12000.0),
        sustain: sum(base + 4, 0.0),
        release: sum(base + 5, -12000.0),
        key_to_hold: sum(base + 6, 0.0),
        key_to_decay: sum(base + 7, 0.0),
    }
}

/// Combines a preset zone and an instrument zone over a sample into a region;
/// `None` when it cannot sound.
fn region(pz: &Gens, iz: &Gens, h: &SampleHeader, pool_len: u32) -> Option<Region> {
    let (ik, pk) = (iz.range(g::KEY_RANGE), pz.range(g::KEY_RANGE));
    let (iv, pv) = (iz.range(g::VEL_RANGE), pz.range(g::VEL_RANGE));
    let (lo_key, hi_key) = (ik.0.max(pk.0), ik.1.min(pk.1));
    let (lo_vel, hi_vel) = (iv.0.max(pv.0), iv.1.min(pv.1));
    if lo_key > hi_key || lo_vel > hi_vel {
        return None;
    }
    // Instrument value (or default) plus the preset's offset where presets may set it.
    let sum = |n: usize, default: f32| -> f32 {
        let base = tc_or(iz, n, default);
        if g::INSTRUMENT_ONLY.contains(&n) { base } else { base + pz.get(n).map(|v| v as f32).unwrap_or(0.0) }
    };
    let ofs = |fine: usize, coarse: usize| -> i64 {
        iz.get(fine).unwrap_or(0) as i64 + 32768 * iz.get(coarse).unwrap_or(0) as i64
    };
    let clamp = |v: i64| v.clamp(0, pool_len as i64) as u32;
    let start = clamp(h.start as i64 + ofs(g::START_OFS, g::START_COARSE));
    let end = clamp(h.end as i64 + ofs(g::END_OFS, g::END_COARSE)).max(start);
    if end <= start + 1 || h.rate == 0 {
        return None;
    }
    let mut loop_start = clamp(h.loop_start as i64 + ofs(g::LOOP_START_OFS, g::LOOP_START_COARSE));
    let mut loop_end = clamp(h.loop_end as i64 + ofs(g::LOOP_END_OFS, g::LOOP_END_COARSE));
    let mut loop_mode = match iz.get(g::SAMPLE_MODES).unwrap_or(0) & 3 {
        1 => LoopMode::Continuous,
        3 => LoopMode::UntilRelease,
        _ => LoopMode::None,
    };
    loop_start = loop_start.clamp(start, end);
    loop_end = loop_end.clamp(start, end);
    if loop_end <= loop_start + 1 {
        // A loop of less than two frames cannot play: the region plays once.
        loop_mode = LoopMode::None;
        loop_start = start;
        loop_end = end;
    }
    let root = match iz.get(g::ROOT_KEY) {
        Some(k) if (0..=127).contains(&k) => k as f32,
        _ => h.pitch.min(127) as f32,
    };
    let fixed = |n: usize| match iz.get(n) {
        Some(v) if (0..=127).contains(&v) => v as i8,
        _ => -1,
    };
    Some(Region {
        lo_key,
        hi_key,
        lo_vel,
        hi_vel,
        pcm: 0,
        start,
        end,
        loop_start,
        loop_end,
        loop_mode,
        sample_rate: h.rate.clamp(400, 384_000) as f32,
        root_cents: root * 100.0 - h.correction as f32,
        tune_cents: sum(g::COARSE_TUNE, 0.0) * 100.0 + sum(g::FINE_TUNE, 0.0),
        scale_tuning: sum(g::SCALE_TUNING, 100.0),
        fixed_key: fixed(g::KEYNUM),
        fixed_vel: fixed(g::VELOCITY),
        exclusive_class: iz.get(g::EXCLUSIVE_CLASS).unwrap_or(0).max(0) as u16,
        attenuation_cb: (sum(g::ATTENUATION, 0.0) * ATTENUATION_FACTOR).clamp(0.0, 1440.0),
        pan: sum(g::PAN, 0.0).clamp(-500.0, 500.0),
        chorus: (sum(g::CHORUS, 0.0) / 1000.0).clamp(0.0, 1.0),
        reverb: (sum(g::REVERB, 0.0) / 1000.0).clamp(0.0, 1.0),
        vol_env: env(&sum, g::VOL_ENV),
        mod_env: env(&sum, g::MOD_ENV),
        mod_env_to_pitch: sum(g::MOD_ENV_TO_PITCH, 0.0).clamp(-12000.0, 12000.0),
        mod_env_to_fc: sum(g::MOD_ENV_TO_FC, 0.0).clamp(-12000.0, 12000.0),
        filter_fc: sum(g::FILTER_FC, 13500.0).clamp(1500.0, 13500.0),
        filter_q: sum(g::FILTER_Q, 0.0).clamp(0.0, 960.0),
        mod_lfo_delay: sum(g::MOD_LFO_DELAY, -12000.0),
        mod_lfo_freq: sum(g::MOD_LFO_FREQ, 0.0).clamp(-16000.0, 4500.0),
        mod_lfo_to_pitch: sum(g::MOD_LFO_TO_PITCH, 0.0).clamp(-12000.0, 12000.0),
        mod_lfo_to_fc: sum(g::MOD_LFO_TO_FC, 0.0).clamp(-12000.0, 12000.0),
        mod_lfo_to_vol: sum(g::MOD_LFO_TO_VOL, 0.0).clamp(-960.0, 960.0),
        vib_lfo_delay: sum(g::VIB_LFO_DELAY, -12000.0),
        vib_lfo_freq: sum(g::VIB_LFO_FREQ, 0.0).clamp(-16000.0, 4500.0),
        vib_lfo_to_pitch: sum(g::VIB_LFO_TO_PITCH, 0.0).clamp(-12000.0, 12000.0),
        shape: crate::tables::bank::Shape::Font,
        peak: 1.0,
    })
}

/// Reads the font at `path` (control thread). The file is not read whole: the
/// preset data is, and the sample chunk goes straight into the 16-bit frames the
/// bank keeps (a SoundFont 3's compressed chunk into memory, to be decoded), so the
/// sample data is held once, never twice. An `sm24` chunk (the low byte of 24-bit
/// samples) is left out: the bank plays the samples' top 16 bits, as FluidSynth
/// does by default.
pub fn load(path: &std::path::Path) -> Result<SampleBank, String> {
    let shown = path.display().to_string();
    let io = |e: std::io::Error| format!("cannot read {shown}: {e}");
    let mut file = crate::samples::open_limited(path, crate::samples::MAX_FONT_BYTES)?;
    let len = file.metadata().map_err(io)?.len();
    let parts = locate(&mut file, len).map_err(io)?;
    let fail = |e: FontError| format!("{shown} {e}");
    if !parts.riff {
        return Err(fail(FontError::NotSoundFont));
    }
    if parts.sdta.is_none() {
        return Err(fail(FontError::Damaged("no sample data list".into())));
    }
    let Some((pdta_at, pdta_len)) = parts.pdta else {
        return Err(fail(FontError::Damaged("no preset data list".into())));
    };
    let pdta = read_at(&mut file, pdta_at, pdta_len).map_err(io)?;
    let (smpl_at, smpl_len) = parts.smpl.unwrap_or((0, 0));
    let mut failed = None;
    let bank = build(&shown, &pdta, smpl_len as usize, |compressed| {
        let got = if compressed {
            read_at(&mut file, smpl_at, smpl_len).map(|b| SampleData::Compressed(b.into()))
        } else {
            read_pcm16(&mut file, smpl_at, smpl_len).map(SampleData::Pcm)
        };
        got.map_err(|e| {
            let e = io(e);
            failed = Some(e.clone());
            FontError::Damaged(e)
        })
    });
    match (bank, failed) {
        (_, Some(e)) => Err(e),
        (Ok(b), None) => Ok(b),
        (Err(e), None) => Err(fail(e)),
    }
}

/// Where a font file keeps its parts: (byte offset, length) of the preset data
/// list's body and of the sample chunk, found by walking the RIFF headers with the
/// same bounds as [`read`] (a chunk that runs past the file's end is cut there).
#[derive(Default)]
struct Parts {
    riff: bool,
    sdta: Option<()>,
    pdta: Option<(u64, u64)>,
    smpl: Option<(u64, u64)>,
}

fn locate(file: &mut std::fs::File, len: u64) -> std::io::Result<Parts> {
    let mut parts = Parts::default();
    let head = read_at(file, 0, 12.min(len))?;
    if head.get(..4) != Some(b"RIFF") || head.get(8..12) != Some(b"sfbk") {
        return Ok(parts);
    }
    parts.riff = true;
    let size = u32::from_le_bytes(head[4..8].try_into().unwrap_or([0; 4])) as u64;
    let end = 8u64.saturating_add(size).clamp(12, len);
    let mut at = 12u64;
    while at + 8 <= end {
        let h = read_at(file, at, 12.min(end - at))?;
        let size = u32::from_le_bytes(h[4..8].try_into().unwrap_or([0; 4])) as u64;
        let start = at + 8;
        let stop = start.saturating_add(size).min(end);
        if &h[..4] == b"LIST" && h.len() >= 12 && stop - start >= 4 {
            let kind = &h[8..12];
            if kind == b"pdta" && parts.pdta.is_none() {
                parts.pdta = Some((start + 4, stop - start - 4));
            } else if kind == b"sdta" && parts.sdta.is_none() {
                parts.sdta = Some(());
                // The first `smpl` chunk inside.
                let mut sub = start + 4;
                while sub + 8 <= stop {
                    let sh = read_at(file, sub, 8)?;
                    let size = u32::from_le_bytes(sh[4..8].try_into().unwrap_or([0; 4])) as u64;
                    let body = sub + 8;
                    let body_end = body.saturating_add(size).min(stop);
                    if &sh[..4] == b"smpl" {
                        parts.smpl = Some((body, body_end - body));
                        break;
                    }
                    sub = body_end + (size & 1);
                }
            }
        }
        at = stop + (size & 1);
    }
    Ok(parts)
}

/// `len` bytes of `file` from `at` (the file is at least that long).
fn read_at(file: &mut std::fs::File, at: u64, len: u64) -> std::io::Result<Vec<u8>> {
    use std::io::{Read, Seek, SeekFrom};
    file.seek(SeekFrom::Start(at))?;
    let mut out = Vec::new();
    file.take(len).read_to_end(&mut out)?;
    if (out.len() as u64) < len {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    Ok(out)
}

/// The 16-bit little-endian frames of `len` bytes from `at`, read straight into
/// the buffer that keeps them.
fn read_pcm16(file: &mut std::fs::File, at: u64, len: u64) -> std::io::Result<Pcm> {
    use std::io::{Read, Seek, SeekFrom};
    /// Frames read per system call.
    const READ_FRAMES: usize = 1 << 16;
    file.seek(SeekFrom::Start(at))?;
    let mut frames = vec![0i16; (len / 2) as usize].into_boxed_slice();
    let mut bytes = [0u8; READ_FRAMES * 2];
    for chunk in frames.chunks_mut(READ_FRAMES) {
        let b = &mut bytes[..chunk.len() * 2];
        file.read_exact(b)?;
        for (f, c) in chunk.iter_mut().zip(b.chunks_exact(2)) {
            *f = i16::from_le_bytes([c[0], c[1]]);
        }
    }
    Ok(Pcm { frames })
}
