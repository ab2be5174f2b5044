//! Writes small SoundFont 2 files for tests: synthetic samples (sines of known
//! pitch, with loops) in presets whose zones set the generators under test.
#![allow(dead_code)]

/// A sample: 16-bit mono frames at `rate`, recorded at `root` (+ `correction` cents).
#[derive(Clone)]
pub struct Sample {
    pub data: Vec<i16>,
    pub rate: u32,
    pub root: u8,
    pub correction: i8,
    /// Loop start and end (frames from the sample's start).
    pub loop_points: (u32, u32),
}

/// An instrument zone: key and velocity range, a sample, and more generators.
#[derive(Clone)]
pub struct Zone {
    pub keys: (u8, u8),
    pub vels: (u8, u8),
    pub sample: u16,
    pub gens: Vec<(u16, i16)>,
}

pub struct Preset {
    pub name: String,
    pub bank: u16,
    pub program: u16,
    pub zones: Vec<Zone>,
}

/// `periods` whole periods of a sine at `hz` sampled at `rate`, so a loop over the
/// whole sample is seamless; `level` of full scale.
pub fn sine(hz: f64, rate: u32, periods: usize, level: f64) -> Vec<i16> {
    let len = (periods as f64 * rate as f64 / hz).round() as usize;
    // Adjust so the length holds exactly `periods` periods at the rounded length.
    let f = periods as f64 / len as f64;
    (0..len).map(|i| ((i as f64 * f * std::f64::consts::TAU).sin() * level * 32767.0).round() as i16).collect()
}

/// The frequency of `sine`'s output after rounding its length.
pub fn sine_hz(hz: f64, rate: u32, periods: usize) -> f64 {
    let len = (periods as f64 * rate as f64 / hz).round() as usize;
    periods as f64 / len as f64 * rate as f64
}

fn chunk(id: &[u8; 4], body: &[u8]) -> Vec<u8> {
    let mut v = id.to_vec();
    v.extend((body.len() as u32).to_le_bytes());
    v.extend(body);
    if body.len() % 2 == 1 {
        v.push(0);
    }
    v
}

fn list(kind: &[u8; 4], items: &[Vec<u8>]) -> Vec<u8> {
    let mut body = kind.to_vec();
    for i in items {
        body.extend(i);
    }
    chunk(b"LIST", &body)
}

fn name20(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.resize(20, 0);
    v
}

/// Generator numbers used by the tests.
pub mod gn {
    pub const PAN: u16 = 17;
    pub const ATTACK_VOL: u16 = 34;
    pub const HOLD_VOL: u16 = 35;
    pub const DECAY_VOL: u16 = 36;
    pub const SUSTAIN_VOL: u16 = 37;
    pub const RELEASE_VOL: u16 = 38;
    pub const ATTENUATION: u16 = 48;
    pub const COARSE_TUNE: u16 = 51;
    pub const FINE_TUNE: u16 = 52;
    pub const SAMPLE_MODES: u16 = 54;
    pub const EXCLUSIVE_CLASS: u16 = 57;
    pub const ROOT_KEY: u16 = 58;
    pub const FILTER_FC: u16 = 8;
}

/// The bytes of a SoundFont 2 with these presets (one instrument each) and samples.
pub fn write(presets: &[Preset], samples: &[Sample]) -> Vec<u8> {
    // Sample data, 46 zero frames after each sample.
    let mut smpl = Vec::new();
    let mut shdr = Vec::new();
    let mut at = 0u32;
    for (i, s) in samples.iter().enumerate() {
        for x in &s.data {
            smpl.extend(x.to_le_bytes());
        }
        smpl.extend(std::iter::repeat_n(0u8, 92));
        let start = at;
        let end = at + s.data.len() as u32;
        shdr.extend(name20(&format!("s{i}")));
        for v in [start, end, start + s.loop_points.0, start + s.loop_points.1, s.rate] {
            shdr.extend(v.to_le_bytes());
        }
        shdr.push(s.root);
        shdr.push(s.correction as u8);
        shdr.extend(0u16.to_le_bytes());
        shdr.extend(1u16.to_le_bytes());
        at = end + 46;
    }
    shdr.extend(name20("EOS"));
    shdr.extend([0u8; 26]);

    let (mut phdr, mut pbag, mut pgen, mut inst, mut ibag, mut igen) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut pbag_n, mut pgen_n, mut ibag_n, mut igen_n) = (0u16, 0u16, 0u16, 0u16);
    for (pi, p) in presets.iter().enumerate() {
        phdr.extend(name20(&p.name));
        phdr.extend(p.program.to_le_bytes());
        phdr.extend(p.bank.to_le_bytes());
        phdr.extend(pbag_n.to_le_bytes());
        phdr.extend([0u8; 12]);
        // One preset zone: the instrument.
        pbag.extend(pgen_n.to_le_bytes());
        pbag.extend(0u16.to_le_bytes());
        pgen.extend(41u16.to_le_bytes());
        pgen.extend((pi as u16).to_le_bytes());
        pgen_n += 1;
        pbag_n += 1;
        inst.extend(name20(&p.name));
        inst.extend(ibag_n.to_le_bytes());
        for z in &p.zones {
            ibag.extend(igen_n.to_le_bytes());
            ibag.extend(0u16.to_le_bytes());
            let mut gens: Vec<(u16, u16)> =
                vec![(43, u16::from_le_bytes([z.keys.0, z.keys.1])), (44, u16::from_le_bytes([z.vels.0, z.vels.1]))];
            gens.extend(z.gens.iter().map(|(g, v)| (*g, *v as u16)));
            gens.push((53, z.sample));
            for (g, v) in gens {
                igen.extend(g.to_le_bytes());
                igen.extend(v.to_le_bytes());
                igen_n += 1;
            }
            ibag_n += 1;
        }
    }
    phdr.extend(name20("EOP"));
    phdr.extend([0u8; 2]);
    phdr.extend([0u8; 2]);
    phdr.extend(pbag_n.to_le_bytes());
    phdr.extend([0u8; 12]);
    pbag.extend(pgen_n.to_le_bytes());
    pbag.extend(0u16.to_le_bytes());
    pgen.extend([0u8; 4]);
    inst.extend(name20("EOI"));
    inst.extend(ibag_n.to_le_bytes());
    ibag.extend(igen_n.to_le_bytes());
    ibag.extend(0u16.to_le_bytes());
    igen.extend([0u8; 4]);

    let info = list(b"INFO", &[chunk(b"ifil", &[2, 0, 1, 0]), chunk(b"INAM", b"test\0")]);
    let sdta = list(b"sdta", &[chunk(b"smpl", &smpl)]);
    let pdta = list(
        b"pdta",
        &[
            chunk(b"phdr", &phdr),
            chunk(b"pbag", &pbag),
            chunk(b"pmod", &[0u8; 10]),
            chunk(b"pgen", &pgen),
            chunk(b"inst", &inst),
            chunk(b"ibag", &ibag),
            chunk(b"imod", &[0u8; 10]),
            chunk(b"igen", &igen),
            chunk(b"shdr", &shdr),
        ],
    );
    let mut body = b"sfbk".to_vec();
    body.extend(info);
    body.extend(sdta);
    body.extend(pdta);
    chunk(b"RIFF", &body)
}

/// Writes a mono 16-bit WAV.
pub fn wav(path: &std::path::Path, data: &[i16], rate: u32) {
    let spec =
        hound::WavSpec { channels: 1, sample_rate: rate, bits_per_sample: 16, sample_format: hound::SampleFormat::Int };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for x in data {
        w.write_sample(*x).unwrap();
    }
    w.finalize().unwrap();
}
