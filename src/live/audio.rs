//! Audio output through cpal: picks the host and device, opens a stream with a
//! fixed buffer size, and runs the engine in its callback (the audio thread). The
//! callback only calls the engine, stamps the frame clock, hands the engine the
//! Link session's timeline (when Link is on) and records its timing.

use super::clock::FrameClock;
#[cfg(feature = "jack")]
use super::clock::WindowedMin;
use super::link::LinkClock;
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
    /// The device is a JACK client.
    jack: bool,
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
    Ok(Chosen { device, config, format, description, jack })
}

/// The output latency of a callback: from its callback timestamp to the playback
/// timestamp of its first frame (zero if the stream gives them out of order).
#[inline]
fn output_latency(info: &cpal::OutputCallbackInfo) -> Duration {
    let t = info.timestamp();
    t.playback.saturating_duration_since(t.callback)
}

/// Audio thread, before `engine.process`: hands the engine the Link session's
/// timeline at the first frame this callback hands out, while Link is on.
#[inline]
fn follow_link(engine: &mut Engine, link: &mut LinkClock, info: &cpal::OutputCallbackInfo) {
    if let Some(t) = link.timeline(engine.frames_out(), output_latency(info), engine.sample_rate() as f64) {
        engine.follow_timeline(t);
    }
}

/// Starts the stream with `engine` in its callback; `link` is the Link session's
/// end for the callback.
pub fn start(
    chosen: &Chosen,
    mut engine: Engine,
    clock: Arc<FrameClock>,
    stats: Arc<LiveStats>,
    mut link: LinkClock,
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
    let mut jack_clock = JackClock::open(chosen.jack, stats.clone());
    let stream = match chosen.format {
        SampleFormat::F32 => chosen.device.build_output_stream(
            chosen.config,
            move |data: &mut [f32], info: &cpal::OutputCallbackInfo| {
                let t0 = Instant::now();
                let playback = info.timestamp().playback.as_nanos() as u64;
                let block = data.len() / channels;
                let frame = engine.frames_out();
                clock.publish_with_jack_frame(frame, t0, playback, block, jack_clock.frame(frame));
                follow_link(&mut engine, &mut link, info);
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
                    let block = data.len() / channels;
                    let frame = engine.frames_out();
                    clock.publish_with_jack_frame(frame, t0, playback, block, jack_clock.frame(frame));
                    follow_link(&mut engine, &mut link, info);
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

/// Callbacks per window of the JACK frame offset's minimum (about a third of a
/// second at 128 frames).
#[cfg(feature = "jack")]
const JACK_OFFSET_WINDOW: u32 = 128;

/// The JACK frame time of the current cycle, read in the audio callback when the
/// stream is a JACK client, so that JACK MIDI can be placed by frame counts. A
/// separate (never activated) client of the same server: cpal keeps its own to
/// itself, and `jack_last_frame_time` reads the server's frame timer, the same for
/// every client in a cycle.
///
/// A callback that runs late (after the server has begun the next cycle, which a
/// busy machine without real-time scheduling does now and then) reads a later
/// cycle's frame time, never an earlier one. So the offset between JACK frames
/// and engine frames is taken as the smallest one seen over the last one or two
/// windows of callbacks; a lasting change (a skipped callback) is followed within
/// two windows.
#[cfg(feature = "jack")]
struct JackClock {
    client: Option<jack::Client>,
    stats: Arc<LiveStats>,
    /// Smallest `jack frame - engine frame` (wrapping) in this window and the last.
    offset: WindowedMin<u32>,
    callbacks: u32,
}

#[cfg(feature = "jack")]
impl JackClock {
    fn open(jack: bool, stats: Arc<LiveStats>) -> JackClock {
        let client = jack
            .then(|| jack::Client::new("jamrig_clock", jack::ClientOptions::NO_START_SERVER).ok())
            .flatten()
            .map(|(c, _)| c);
        let wrapping_less = |a: u32, b: u32| (a.wrapping_sub(b) as i32) < 0;
        JackClock { client, stats, offset: WindowedMin::new(wrapping_less), callbacks: 0 }
    }

    /// Audio thread: the JACK frame time of the cycle whose output starts at engine
    /// frame `engine_frame`. Reads the server's shared memory, no system call.
    #[inline]
    fn frame(&mut self, engine_frame: u64) -> Option<u32> {
        // SAFETY: the client is open (closed only when this is dropped), and this
        // runs in a process callback of the same server.
        let jf = unsafe { jack::jack_sys::jack_last_frame_time(self.client.as_ref()?.raw()) };
        self.offset.push(jf.wrapping_sub(engine_frame as u32));
        self.callbacks += 1;
        if self.callbacks == JACK_OFFSET_WINDOW {
            self.offset.roll();
            self.callbacks = 0;
        }
        Some((engine_frame as u32).wrapping_add(self.offset.best()?))
    }
}

#[cfg(feature = "jack")]
impl Drop for JackClock {
    fn drop(&mut self) {
        if let Some(c) = self.client.take()
            && self.stats.failed.load(Relaxed)
        {
            // Closing a client whose server has gone crashes libjack.
            std::mem::forget(c);
        }
    }
}

#[cfg(not(feature = "jack"))]
struct JackClock;

#[cfg(not(feature = "jack"))]
impl JackClock {
    fn open(_jack: bool, _stats: Arc<LiveStats>) -> JackClock {
        JackClock
    }

    #[inline]
    fn frame(&mut self, _engine_frame: u64) -> Option<u32> {
        None
    }
}

/// Plays `samples` (interleaved stereo at the device's rate) once on the chosen
/// device and returns when they have been heard. For `jamrig audition`: the sound
/// is rendered beforehand, the callback only copies it.
pub fn play_buffer(chosen: &Chosen, samples: Vec<f32>) -> Result<(), AudioError> {
    let _quiet = quiet_alsa();
    let frames = samples.len() / 2;
    let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let failed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (pos, fail) = (done.clone(), failed.clone());
    let on_error = move |e: cpal::Error| {
        if !matches!(e.kind(), cpal::ErrorKind::Xrun) {
            fail.store(true, Relaxed);
        }
    };
    /// A stream of `T` samples copying `samples` (stereo) to any channel count.
    fn build<T: cpal::SizedSample + cpal::FromSample<f32>>(
        chosen: &Chosen,
        samples: Vec<f32>,
        pos: Arc<std::sync::atomic::AtomicUsize>,
        on_error: impl FnMut(cpal::Error) + Send + 'static,
    ) -> Result<cpal::Stream, cpal::Error> {
        let channels = chosen.config.channels as usize;
        chosen.device.build_output_stream(
            chosen.config,
            move |data: &mut [T], _: &cpal::OutputCallbackInfo| {
                let start = pos.load(Relaxed);
                for (i, frame) in data.chunks_mut(channels).enumerate() {
                    for (c, o) in frame.iter_mut().enumerate() {
                        let x = samples.get((start + i) * 2 + c.min(1)).copied().unwrap_or(0.0);
                        *o = T::from_sample(x);
                    }
                }
                pos.store(start + data.len() / channels, Relaxed);
            },
            on_error,
            Some(Duration::from_secs(5)),
        )
    }
    let stream = match chosen.format {
        SampleFormat::F32 => build::<f32>(chosen, samples, pos, on_error),
        SampleFormat::I16 => build::<i16>(chosen, samples, pos, on_error),
        other => return Err(AudioError::Failed(format!("the device wants {other} samples; jamrig writes f32 or i16"))),
    }
    .map_err(|e| AudioError::Failed(e.to_string()))?;
    stream.play().map_err(|e| AudioError::Failed(e.to_string()))?;
    // Until every frame has gone out, plus the device's buffer.
    let deadline = Instant::now() + Duration::from_secs_f64(frames as f64 / chosen.sample_rate() as f64 + 5.0);
    while done.load(Relaxed) < frames + chosen.buffer_frames() as usize && Instant::now() < deadline {
        if failed.load(Relaxed) {
            return Err(AudioError::Failed("the audio device stopped".into()));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}
