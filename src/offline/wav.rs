//! Writes interleaved stereo to a WAV file as it is rendered, in constant memory, on
//! the rendering thread. The samples go to a temporary file in the same folder that
//! is renamed over the target only once complete, so a failed or interrupted render
//! never leaves a partial file. A file past 4 GiB is written as RF64 (EBU Tech 3306):
//! the header reserves a `JUNK` chunk that becomes the `ds64` chunk with the 64-bit
//! sizes.

use anyhow::Context;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SampleFormat {
    S16,
    S24,
    F32,
}

impl SampleFormat {
    pub fn bytes_per_sample(self) -> u64 {
        match self {
            SampleFormat::S16 => 2,
            SampleFormat::S24 => 3,
            SampleFormat::F32 => 4,
        }
    }
}

impl std::str::FromStr for SampleFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "s16" => Ok(SampleFormat::S16),
            "s24" => Ok(SampleFormat::S24),
            "f32" => Ok(SampleFormat::F32),
            other => Err(format!("unknown format {other} (use s16, s24 or f32)")),
        }
    }
}

/// The largest RIFF size a plain WAV header can state.
const RIFF_LIMIT: u64 = u32::MAX as u64;
/// Bytes of the header before the samples: RIFF (12), JUNK/ds64 (8 + 28), fmt (8 + 16),
/// data (8).
const HEADER_BYTES: u64 = 12 + 36 + 24 + 8;
/// Where the JUNK chunk (later ds64) starts.
const DS64_AT: u64 = 12;
/// Where the data chunk's size field is.
const DATA_SIZE_AT: u64 = HEADER_BYTES - 4;
/// Samples converted to 16-bit in one pass of vector code.
const CONVERT_LANES: usize = 8;
/// Buffered bytes between writes to the file.
const WRITE_BUFFER_BYTES: usize = 256 * 1024;

/// `x.round() as i32` (halves away from zero) for `|x|` below 2^23, without a library
/// call: the truncation plus one step away from zero where the dropped fraction is at
/// least a half. The fraction `x - trunc(x)` of such a float is exact, so this is the
/// same integer for every input in that range.
#[inline]
fn round_half_away(x: f32) -> i32 {
    let t = x as i32;
    let frac = x - t as f32;
    t + (frac >= 0.5) as i32 - (frac <= -0.5) as i32
}

/// A WAV file being written. Dropped without [`WavStream::finish`], it removes its
/// temporary file and leaves the target as it was.
pub struct WavStream {
    out: Option<BufWriter<std::fs::File>>,
    tmp: PathBuf,
    dest: PathBuf,
    format: SampleFormat,
    sample_rate: u32,
    data_bytes: u64,
    riff_limit: u64,
    scratch: Vec<u8>,
}

impl WavStream {
    /// Starts `path` (written to a temporary file beside it until finished).
    pub fn create(path: &Path, sample_rate: u32, format: SampleFormat) -> anyhow::Result<Self> {
        Self::with_riff_limit(path, sample_rate, format, RIFF_LIMIT)
    }

    /// Same, switching to RF64 past `riff_limit` bytes instead of 4 GiB (for tests).
    #[doc(hidden)]
    pub fn with_riff_limit(
        path: &Path,
        sample_rate: u32,
        format: SampleFormat,
        riff_limit: u64,
    ) -> anyhow::Result<Self> {
        let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let name = path.file_name().context("the output path has no file name")?.to_string_lossy();
        let tmp = dir.join(format!(".{name}.partial-{}", std::process::id()));
        let file = std::fs::File::create(&tmp).with_context(|| format!("cannot create {}", path.display()))?;
        let mut w = WavStream {
            out: Some(BufWriter::with_capacity(WRITE_BUFFER_BYTES, file)),
            tmp,
            dest: path.to_path_buf(),
            format,
            sample_rate,
            data_bytes: 0,
            riff_limit,
            scratch: Vec::new(),
        };
        w.write_header().with_context(|| format!("cannot write {}", path.display()))?;
        Ok(w)
    }

    fn write_header(&mut self) -> std::io::Result<()> {
        let (tag, bits): (u16, u16) = match self.format {
            SampleFormat::S16 => (1, 16),
            SampleFormat::S24 => (1, 24),
            SampleFormat::F32 => (3, 32),
        };
        let block_align = 2 * bits / 8;
        let mut h = Vec::with_capacity(HEADER_BYTES as usize);
        h.extend_from_slice(b"RIFF");
        h.extend_from_slice(&0u32.to_le_bytes());
        h.extend_from_slice(b"WAVE");
        h.extend_from_slice(b"JUNK");
        h.extend_from_slice(&28u32.to_le_bytes());
        h.extend_from_slice(&[0u8; 28]);
        h.extend_from_slice(b"fmt ");
        h.extend_from_slice(&16u32.to_le_bytes());
        h.extend_from_slice(&tag.to_le_bytes());
        h.extend_from_slice(&2u16.to_le_bytes());
        h.extend_from_slice(&self.sample_rate.to_le_bytes());
        h.extend_from_slice(&(self.sample_rate * block_align as u32).to_le_bytes());
        h.extend_from_slice(&block_align.to_le_bytes());
        h.extend_from_slice(&bits.to_le_bytes());
        h.extend_from_slice(b"data");
        h.extend_from_slice(&0u32.to_le_bytes());
        debug_assert_eq!(h.len() as u64, HEADER_BYTES);
        self.out.as_mut().expect("open").write_all(&h)
    }

    /// Appends interleaved stereo samples (clamped to -1..1 for the integer formats).
    pub fn write(&mut self, samples: &[f32]) -> anyhow::Result<()> {
        let width = self.format.bytes_per_sample() as usize;
        self.scratch.clear();
        self.scratch.resize(samples.len() * width, 0);
        match self.format {
            SampleFormat::S16 => {
                // Eight at a time (vector code), then the rest.
                let ins = samples.chunks_exact(CONVERT_LANES);
                let rest = ins.remainder();
                let mut outs = self.scratch.chunks_exact_mut(2 * CONVERT_LANES);
                for (b, s) in (&mut outs).zip(ins) {
                    let mut v = [0i16; CONVERT_LANES];
                    for (v, &s) in v.iter_mut().zip(s) {
                        *v = round_half_away(s.clamp(-1.0, 1.0) * 32767.0) as i16;
                    }
                    for (b, v) in b.chunks_exact_mut(2).zip(v) {
                        b.copy_from_slice(&v.to_le_bytes());
                    }
                }
                for (b, &s) in outs.into_remainder().chunks_exact_mut(2).zip(rest) {
                    let v = round_half_away(s.clamp(-1.0, 1.0) * 32767.0) as i16;
                    b.copy_from_slice(&v.to_le_bytes());
                }
            }
            SampleFormat::S24 => {
                for (b, &s) in self.scratch.chunks_exact_mut(3).zip(samples) {
                    let v = round_half_away(s.clamp(-1.0, 1.0) * 8_388_607.0);
                    b.copy_from_slice(&v.to_le_bytes()[..3]);
                }
            }
            SampleFormat::F32 => {
                for (b, &s) in self.scratch.chunks_exact_mut(4).zip(samples) {
                    b.copy_from_slice(&s.to_le_bytes());
                }
            }
        }
        let out = self.out.as_mut().expect("open until finished");
        out.write_all(&self.scratch).with_context(|| format!("cannot write {}", self.dest.display()))?;
        self.data_bytes += self.scratch.len() as u64;
        Ok(())
    }

    /// Frames written so far.
    pub fn frames(&self) -> u64 {
        self.data_bytes / (2 * self.format.bytes_per_sample())
    }

    /// Whether the file will be RF64 (past the plain header's 4 GiB).
    pub fn is_rf64(&self) -> bool {
        HEADER_BYTES - 8 + self.data_bytes > self.riff_limit
    }

    /// Completes the header and renames the file into place.
    pub fn finish(mut self) -> anyhow::Result<()> {
        let dest = self.dest.clone();
        let rf64 = self.is_rf64();
        let riff = HEADER_BYTES - 8 + self.data_bytes;
        let frames = self.frames();
        let data = self.data_bytes;
        let mut out = self.out.take().expect("finished once");
        let result = (|| -> std::io::Result<()> {
            out.flush()?;
            let mut f = out.into_inner().map_err(|e| e.into_error())?;
            if rf64 {
                f.seek(SeekFrom::Start(0))?;
                f.write_all(b"RF64")?;
                f.write_all(&u32::MAX.to_le_bytes())?;
                f.seek(SeekFrom::Start(DS64_AT))?;
                f.write_all(b"ds64")?;
                f.write_all(&28u32.to_le_bytes())?;
                f.write_all(&riff.to_le_bytes())?;
                f.write_all(&data.to_le_bytes())?;
                f.write_all(&frames.to_le_bytes())?;
                f.write_all(&0u32.to_le_bytes())?;
                f.seek(SeekFrom::Start(DATA_SIZE_AT))?;
                f.write_all(&u32::MAX.to_le_bytes())?;
            } else {
                f.seek(SeekFrom::Start(4))?;
                f.write_all(&(riff as u32).to_le_bytes())?;
                f.seek(SeekFrom::Start(DATA_SIZE_AT))?;
                f.write_all(&(data as u32).to_le_bytes())?;
            }
            f.sync_all()?;
            Ok(())
        })();
        result.with_context(|| format!("cannot write {}", dest.display()))?;
        std::fs::rename(&self.tmp, &dest).with_context(|| format!("cannot write {}", dest.display()))?;
        self.tmp = PathBuf::new();
        Ok(())
    }
}

impl Drop for WavStream {
    fn drop(&mut self) {
        if !self.tmp.as_os_str().is_empty() {
            self.out = None;
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Writes `samples` (interleaved stereo, within -1..1) to `path` in one go.
pub fn write(path: &Path, samples: &[f32], sample_rate: u32, format: SampleFormat) -> anyhow::Result<()> {
    let mut w = WavStream::create(path, sample_rate, format)?;
    for part in samples.chunks(1 << 16) {
        w.write(part)?;
    }
    w.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u32_at(b: &[u8], at: usize) -> u32 {
        u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
    }

    fn u64_at(b: &[u8], at: usize) -> u64 {
        u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
    }

    /// 16-bit samples are exactly `f32::round` of the clamped, scaled input, in the
    /// vector pass and in the rest of a write whose length is not a multiple of it.
    #[test]
    fn s16_samples_are_the_rounded_input_whatever_the_write_length() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.wav");
        let samples: Vec<f32> = (0..2 * 1001)
            .map(|i| ((i as f32) * 0.37).sin() * 1.2 + if i % 7 == 0 { 0.5 / 32767.0 } else { 0.0 })
            .collect();
        let mut w = WavStream::create(&p, 48000, SampleFormat::S16).unwrap();
        for part in samples.chunks(2 * 333 + 1) {
            w.write(part).unwrap();
        }
        w.finish().unwrap();
        let back: Vec<i16> = hound::WavReader::open(&p).unwrap().into_samples::<i16>().map(Result::unwrap).collect();
        let expected: Vec<i16> = samples.iter().map(|s| (s.clamp(-1.0, 1.0) * 32767.0).round() as i16).collect();
        assert_eq!(back, expected);
    }

    #[test]
    fn a_plain_wav_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        for format in [SampleFormat::S16, SampleFormat::S24, SampleFormat::F32] {
            let p = dir.path().join("a.wav");
            let samples: Vec<f32> = (0..2000).map(|i| ((i as f32) * 0.01).sin() * 0.5).collect();
            write(&p, &samples, 44100, format).unwrap();
            let r = hound::WavReader::open(&p).unwrap();
            assert_eq!(r.spec().sample_rate, 44100);
            assert_eq!(r.duration(), 1000);
            let back: Vec<f32> = match format {
                SampleFormat::F32 => r.into_samples::<f32>().map(Result::unwrap).collect(),
                SampleFormat::S16 => r.into_samples::<i32>().map(|s| s.unwrap() as f32 / 32767.0).collect(),
                SampleFormat::S24 => r.into_samples::<i32>().map(|s| s.unwrap() as f32 / 8_388_607.0).collect(),
            };
            for (a, b) in samples.iter().zip(&back) {
                assert!((a - b).abs() < 1e-4, "{format:?}: {a} vs {b}");
            }
        }
    }

    /// The integer conversion rounds as `f32::round` does (halves away from zero) for
    /// every sample value the integer formats take: every float near each integer and
    /// each half-integer of the 24-bit range's ends and of the whole 16-bit range, and
    /// a spread of others.
    #[test]
    fn wav_rounding_without_a_library_call_matches_round() {
        let check = |x: f32| assert_eq!(round_half_away(x), x.round() as i32, "{x:e} ({:#x})", x.to_bits());
        let near = |x: f32| {
            let mut down = x;
            let mut up = x;
            for _ in 0..4 {
                check(down);
                check(up);
                down = down.next_down();
                up = up.next_up();
            }
        };
        for k in -32768..=32768 {
            near(k as f32);
            near(k as f32 + 0.5);
        }
        for k in (8_388_607 - 4096)..=8_388_607 {
            near(k as f32);
            near(-(k as f32));
            near(k as f32 - 0.5);
            near(0.5 - k as f32);
        }
        let mut bits = 0x1234_5678u32;
        for _ in 0..2_000_000 {
            bits = bits.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            let x = (bits >> 8) as f32 / (1u32 << 24) as f32 * 2.0 - 1.0;
            check(x * 32767.0);
            check(x * 8_388_607.0);
        }
        for x in [0.0, -0.0, 0.49999997, -0.49999997, 0.5, -0.5, 1.5, -2.5, 32767.0, -32767.0] {
            check(x);
        }
    }

    #[test]
    fn past_the_riff_limit_the_header_is_rf64_with_the_true_sizes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("big.wav");
        let mut w = WavStream::with_riff_limit(&p, 48000, SampleFormat::F32, 1000).unwrap();
        w.write(&vec![0.25f32; 2 * 300]).unwrap();
        assert!(w.is_rf64());
        w.finish().unwrap();
        let b = std::fs::read(&p).unwrap();
        assert_eq!(&b[0..4], b"RF64");
        assert_eq!(u32_at(&b, 4), u32::MAX);
        assert_eq!(&b[12..16], b"ds64");
        assert_eq!(u64_at(&b, 20), b.len() as u64 - 8, "RIFF size");
        assert_eq!(u64_at(&b, 28), 2400, "data size");
        assert_eq!(u64_at(&b, 36), 300, "sample count (frames)");
        assert_eq!(&b[72..76], b"data");
        assert_eq!(u32_at(&b, 76), u32::MAX);
        assert_eq!(f32::from_le_bytes(b[80..84].try_into().unwrap()), 0.25);
    }

    #[test]
    fn an_unfinished_stream_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.wav");
        std::fs::write(&p, b"old").unwrap();
        let mut w = WavStream::create(&p, 48000, SampleFormat::S16).unwrap();
        w.write(&[0.1; 64]).unwrap();
        drop(w);
        assert_eq!(std::fs::read(&p).unwrap(), b"old");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
