//! Audio file decoding (WAV, FLAC, Ogg/Vorbis, MP3 through symphonia) and
//! resampling to the engine's rate (rubato), on the control thread. Decoders are
//! third-party code fed untrusted bytes: they run under `catch_unwind`, so a
//! damaged file is an error, never a crash, and decoded lengths are bounded.

use rubato::{FftFixedIn, Resampler};
use std::io::Cursor;
use symphonia::core::audio::SampleBuffer;
use symphonia::core::codecs::{CODEC_TYPE_NULL, DecoderOptions};
use symphonia::core::errors::Error as SymError;
use symphonia::core::formats::FormatOptions;
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;
use symphonia::core::probe::Hint;

/// The longest user sample, in seconds of the file's own rate.
pub const MAX_SAMPLE_SECONDS: f64 = 600.0;
/// Most channels kept from a file (more are folded into these two).
const MAX_CHANNELS: usize = 2;
/// Frames per resampling chunk.
const RESAMPLE_CHUNK: usize = 4096;

/// A decoded file: one or two channels of f32 at `rate`.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    pub channels: Vec<Vec<f32>>,
    pub rate: u32,
}

impl Decoded {
    pub fn frames(&self) -> usize {
        self.channels.first().map_or(0, Vec::len)
    }
}

/// Runs third-party decoding code, turning a panic into an error.
fn guarded<T>(f: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
        .unwrap_or_else(|_| Err("the decoder failed on damaged data".to_string()))
}

/// Decodes a whole file from its bytes; `ext` (the file's extension) helps the probe.
pub fn decode(bytes: Vec<u8>, ext: Option<&str>) -> Result<Decoded, String> {
    guarded(|| decode_inner(bytes, ext))
}

fn decode_inner(bytes: Vec<u8>, ext: Option<&str>) -> Result<Decoded, String> {
    let mss = MediaSourceStream::new(Box::new(Cursor::new(bytes)), Default::default());
    let mut hint = Hint::new();
    if let Some(e) = ext {
        hint.with_extension(e);
    }
    let probed = symphonia::default::get_probe()
        .format(&hint, mss, &FormatOptions::default(), &MetadataOptions::default())
        .map_err(|_| "is not in a format jamrig reads (WAV, FLAC, Ogg/Vorbis or MP3)".to_string())?;
    let mut format = probed.format;
    let track = format
        .tracks()
        .iter()
        .find(|t| t.codec_params.codec != CODEC_TYPE_NULL)
        .ok_or_else(|| "has no audio track".to_string())?;
    let id = track.id;
    let rate = track.codec_params.sample_rate.unwrap_or(0);
    let mut decoder = symphonia::default::get_codecs()
        .make(&track.codec_params, &DecoderOptions::default())
        .map_err(|_| "uses a codec jamrig does not decode".to_string())?;
    let mut channels: Vec<Vec<f32>> = Vec::new();
    let mut rate_seen = rate;
    let mut limit = usize::MAX;
    let mut buf: Option<SampleBuffer<f32>> = None;
    loop {
        let packet = match format.next_packet() {
            Ok(p) => p,
            Err(SymError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(SymError::ResetRequired) => break,
            Err(_) if !channels.is_empty() => break, // a damaged tail: keep what decoded
            Err(_) => return Err("is damaged (no audio could be read)".into()),
        };
        if packet.track_id() != id {
            continue;
        }
        let decoded = match decoder.decode(&packet) {
            Ok(d) => d,
            Err(SymError::DecodeError(_)) => continue,
            Err(_) => break,
        };
        let spec = *decoded.spec();
        if rate_seen == 0 {
            rate_seen = spec.rate;
        }
        let n_ch = spec.channels.count().max(1);
        if channels.is_empty() {
            channels = vec![Vec::new(); n_ch.min(MAX_CHANNELS)];
            limit = (MAX_SAMPLE_SECONDS * rate_seen.max(1) as f64) as usize;
        }
        let needed = decoded.capacity() as u64;
        if buf.as_ref().is_none_or(|b| b.capacity() < needed as usize * n_ch) {
            buf = Some(SampleBuffer::new(needed, spec));
        }
        let Some(b) = buf.as_mut() else { continue };
        b.copy_interleaved_ref(decoded);
        for frame in b.samples().chunks_exact(n_ch) {
            let keep = channels.len();
            if keep == 1 {
                channels[0].push(frame.iter().sum::<f32>() / n_ch as f32);
            } else {
                channels[0].push(frame[0]);
                channels[1].push(frame[1..].iter().sum::<f32>() / (n_ch - 1) as f32);
            }
        }
        if channels[0].len() > limit {
            return Err(format!(
                "is longer than {} minutes; jamrig takes samples up to that",
                MAX_SAMPLE_SECONDS / 60.0
            ));
        }
    }
    if channels.first().is_none_or(|c| c.is_empty()) {
        return Err("holds no audio".into());
    }
    if rate_seen == 0 {
        return Err("does not say its sample rate".into());
    }
    for c in channels.iter_mut() {
        for x in c.iter_mut() {
            if !x.is_finite() {
                *x = 0.0;
            }
        }
    }
    Ok(Decoded { channels, rate: rate_seen })
}

/// Decodes one SoundFont 3 sample (an Ogg Vorbis stream) to 16-bit mono; `None` if
/// it does not decode.
pub fn vorbis_mono(bytes: &[u8], max_frames: usize) -> Option<Vec<i16>> {
    let d = decode(bytes.to_vec(), Some("ogg")).ok()?;
    let mono = d.channels.first()?;
    if mono.len() > max_frames {
        return None;
    }
    Some(mono.iter().map(|x| to_i16(*x)).collect())
}

pub fn to_i16(x: f32) -> i16 {
    (x * 32767.0).round().clamp(-32768.0, 32767.0) as i16
}

/// Resamples every channel from `from` Hz to `to` Hz (band-limited FFT resampling),
/// keeping the length in time and the alignment of the start.
pub fn resample(d: Decoded, to: u32) -> Result<Decoded, String> {
    if d.rate == to || d.frames() == 0 {
        return Ok(Decoded { channels: d.channels, rate: to });
    }
    guarded(|| {
        let n_ch = d.channels.len();
        let mut r = FftFixedIn::<f32>::new(d.rate as usize, to as usize, RESAMPLE_CHUNK, 2, n_ch)
            .map_err(|e| format!("cannot be resampled from {} Hz ({e})", d.rate))?;
        let delay = r.output_delay();
        let want = (d.frames() as f64 * to as f64 / d.rate as f64).ceil() as usize;
        let mut out: Vec<Vec<f32>> = vec![Vec::with_capacity(want + delay + RESAMPLE_CHUNK); n_ch];
        let mut pos = 0;
        let zeros = vec![0.0f32; RESAMPLE_CHUNK];
        while out[0].len() < want + delay {
            let input: Vec<&[f32]> = d
                .channels
                .iter()
                .map(|c| if pos + RESAMPLE_CHUNK <= c.len() { &c[pos..pos + RESAMPLE_CHUNK] } else { &zeros[..] })
                .collect();
            let padded: Vec<Vec<f32>>;
            let input = if pos < d.frames() && pos + RESAMPLE_CHUNK > d.frames() {
                // The last partial chunk, zero-padded.
                padded = d
                    .channels
                    .iter()
                    .map(|c| {
                        let mut v = c[pos..].to_vec();
                        v.resize(RESAMPLE_CHUNK, 0.0);
                        v
                    })
                    .collect();
                padded.iter().map(|v| v.as_slice()).collect()
            } else {
                input
            };
            let chunk = r.process(&input, None).map_err(|e| format!("cannot be resampled ({e})"))?;
            for (o, c) in out.iter_mut().zip(chunk) {
                o.extend(c);
            }
            pos += RESAMPLE_CHUNK;
        }
        let channels = out.into_iter().map(|c| c[delay..delay + want].to_vec()).collect();
        Ok(Decoded { channels, rate: to })
    })
}
