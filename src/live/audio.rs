//! Audio output through cpal: picks the host and device, opens a stream with a
//! fixed buffer size, and runs the engine in its callback (the audio thread). The
//! callback only calls the engine, stamps the frame clock and records its timing.

use super::clock::FrameClock;
use super::stats::LiveStats;
use crate::engine::Engine;
use cpal::traits::{DeviceTrait, HostTrait, StreamTrait};
use cpal::{BufferSize, SampleFormat, StreamConfig};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

/// Frames converted per step for devices that want integer samples.
const CONVERT_FRAMES: usize = 1024;

/// Why there is no audio output.
#[derive(Debug, thiserror::Error)]
pub enum AudioError {
    #[error("{0}")]
    NoDevice(String),
    #[error("the audio device could not be opened: {0}")]
    Failed(String),
}

/// A device chosen and configured, not yet running.
pub struct Chosen {
    device: cpal::Device,
    pub config: StreamConfig,
    format: SampleFormat,
    pub description: String,
}

impl Chosen {
    pub fn sample_rate(&self) -> u32 {
        self.config.sample_rate
    }

    pub fn buffer_frames(&self) -> u32 {
        match self.config.buffer_size {
            BufferSize::Fixed(n) => n,
            _ => 256,
        }
    }
}

fn describe(d: &cpal::Device) -> String {
    d.description()
        .map(|d| d.name().to_string())
        .or_else(|_| d.id().map(|i| i.to_string()))
        .unwrap_or_else(|_| "?".into())
}

/// The hosts to look for devices in: a running JACK server first (with the `jack`
/// feature), then the platform's default.
fn hosts() -> Vec<cpal::Host> {
    #[cfg(feature = "jack")]
    let jack = cpal::host_from_id(cpal::HostId::Jack).ok();
    #[cfg(not(feature = "jack"))]
    let jack: Option<cpal::Host> = None;
    jack.into_iter().chain(std::iter::once(cpal::default_host())).collect()
}

/// Names of the audio outputs, for `jamrig ports`.
pub fn list_outputs() -> Vec<String> {
    let _quiet = quiet_alsa();
    let mut names = Vec::new();
    for host in hosts() {
        if let Ok(devs) = host.output_devices() {
            for d in devs.filter(|d| d.supported_output_configs().is_ok_and(|mut c| c.next().is_some())) {
                names.push(format!("{} ({})", describe(&d), host.id().name()));
            }
        }
    }
    names
}

/// Keeps ALSA's own error messages (a screenful when there is no sound card) off
/// the terminal on this thread while it lives.
pub fn quiet_alsa() -> Option<impl Sized> {
    alsa::Output::local_error_handler().ok()
}

fn no_device(reason: &str) -> AudioError {
    AudioError::NoDevice(format!(
        "no usable audio output ({reason}).\nStart JACK or PipeWire (or choose a device with --device), or render offline: jamrig render SET -o out.wav"
    ))
}

/// Picks the output device (`name`: a case-insensitive part of its name) and a
/// configuration with a fixed buffer of `buffer` frames.
pub fn choose(name: Option<&str>, buffer: u32) -> Result<Chosen, AudioError> {
    let _quiet = quiet_alsa();
    let mut device = None;
    for host in hosts() {
        let found = match name {
            None => host.default_output_device(),
            Some(want) => host
                .output_devices()
                .ok()
                .and_then(|mut devs| devs.find(|d| describe(d).to_lowercase().contains(&want.to_lowercase()))),
        };
        if let Some(d) = found {
            device = Some((host.id(), d));
            break;
        }
    }
    let Some((host_id, device)) = device else {
        return Err(match name {
            Some(n) => no_device(&format!("no output device matches \"{n}\"; `jamrig ports` lists them")),
            None => no_device("no default output device: no sound card, and no JACK or PipeWire server"),
        });
    };
    let what = describe(&device);
    let default = device.default_output_config().map_err(|_| {
        no_device(&format!(
            "the {} output \"{what}\" cannot be opened: no sound card, or no server behind it",
            host_id.name()
        ))
    })?;
    let rate = default.sample_rate();
    // Prefer 32-bit float at the device's rate; fall back to its default format.
    let format = device
        .supported_output_configs()
        .ok()
        .and_then(|mut cs| {
            cs.find(|c| {
                c.sample_format() == SampleFormat::F32 && (c.min_sample_rate()..=c.max_sample_rate()).contains(&rate)
            })
        })
        .map(|_| SampleFormat::F32)
        .unwrap_or(default.sample_format());
    let jack = host_id.name().eq_ignore_ascii_case("jack");
    let config = StreamConfig {
        channels: default.channels().max(1),
        sample_rate: rate,
        // A JACK client runs at the server's period; elsewhere ask for `buffer`.
        buffer_size: if jack { BufferSize::Default } else { BufferSize::Fixed(buffer) },
    };
    let description = format!("{} ({})", describe(&device), host_id.name());
    Ok(Chosen { device, config, format, description })
}

/// Starts the stream with `engine` in its callback.
pub fn start(
    chosen: &Chosen,
    mut engine: Engine,
    clock: Arc<FrameClock>,
    stats: Arc<LiveStats>,
) -> Result<cpal::Stream, AudioError> {
    let _quiet = quiet_alsa();
    let channels = chosen.config.channels as usize;
    let err_stats = stats.clone();
    let on_error = move |e: cpal::Error| match e.kind() {
        cpal::ErrorKind::Xrun => {
            err_stats.underruns.fetch_add(1, Relaxed);
        }
        cpal::ErrorKind::RealtimeDenied | cpal::ErrorKind::DeviceChanged => {}
        _ => err_stats.failed.store(true, Relaxed),
    };
    let timeout = Some(Duration::from_secs(5));
    let stream = match chosen.format {
        SampleFormat::F32 => chosen.device.build_output_stream(
            chosen.config,
            move |data: &mut [f32], info: &cpal::OutputCallbackInfo| {
                let t0 = Instant::now();
                let playback = info.timestamp().playback.as_nanos() as u64;
                clock.publish(engine.frames_out(), t0, playback, data.len() / channels);
                engine.process(data, channels);
                stats.record(t0.elapsed(), data.len() / channels);
            },
            on_error,
            timeout,
        ),
        SampleFormat::I16 => {
            let mut scratch = crate::dsp::zeroed(CONVERT_FRAMES * channels);
            chosen.device.build_output_stream(
                chosen.config,
                move |data: &mut [i16], info: &cpal::OutputCallbackInfo| {
                    let t0 = Instant::now();
                    let playback = info.timestamp().playback.as_nanos() as u64;
                    clock.publish(engine.frames_out(), t0, playback, data.len() / channels);
                    for chunk in data.chunks_mut(CONVERT_FRAMES * channels) {
                        let buf = &mut scratch[..chunk.len()];
                        engine.process(buf, channels);
                        for (o, s) in chunk.iter_mut().zip(buf.iter()) {
                            *o = (s * 32767.0) as i16;
                        }
                    }
                    stats.record(t0.elapsed(), data.len() / channels);
                },
                on_error,
                timeout,
            )
        }
        other => return Err(AudioError::Failed(format!("the device wants {other} samples; jamrig writes f32 or i16"))),
    }
    .map_err(|e| AudioError::Failed(e.to_string()))?;
    stream.play().map_err(|e| AudioError::Failed(e.to_string()))?;
    Ok(stream)
}
