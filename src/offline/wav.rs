//! Writes interleaved stereo to a WAV file (hound), atomically: a temporary file in
//! the same folder is renamed over the target only once complete, so a failed
//! render never leaves a partial file.

use std::path::Path;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SampleFormat {
    S16,
    S24,
    F32,
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

/// Writes `samples` (interleaved stereo, within -1..1) to `path`.
pub fn write(path: &Path, samples: &[f32], sample_rate: u32, format: SampleFormat) -> anyhow::Result<()> {
    use anyhow::Context;
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate,
        bits_per_sample: match format {
            SampleFormat::S16 => 16,
            SampleFormat::S24 => 24,
            SampleFormat::F32 => 32,
        },
        sample_format: if format == SampleFormat::F32 { hound::SampleFormat::Float } else { hound::SampleFormat::Int },
    };
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().context("the output path has no file name")?.to_string_lossy();
    let tmp = dir.join(format!(".{name}.partial-{}", std::process::id()));
    let result = (|| -> anyhow::Result<()> {
        let mut w =
            hound::WavWriter::create(&tmp, spec).with_context(|| format!("cannot create {}", path.display()))?;
        match format {
            SampleFormat::S16 => {
                let mut w16 = w.get_i16_writer(samples.len() as u32);
                for &s in samples {
                    w16.write_sample((s.clamp(-1.0, 1.0) * 32767.0).round() as i16);
                }
                w16.flush()?;
            }
            SampleFormat::S24 => {
                for &s in samples {
                    w.write_sample((s.clamp(-1.0, 1.0) * 8_388_607.0).round() as i32)?;
                }
            }
            SampleFormat::F32 => {
                for &s in samples {
                    w.write_sample(s)?;
                }
            }
        }
        w.finalize().with_context(|| format!("cannot write {}", path.display()))?;
        std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
