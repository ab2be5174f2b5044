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
/// The buffer asked of the device unless `--buffer` says otherwise.
pub const DEFAULT_BUFFER_FRAMES: u32 = 128;

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
    /// The cpal device (`None`: jamrig's own JACK client, in `client`).
    device: Option<cpal::Device>,
    /// jamrig's JACK client, opened while choosing and being activated (playing
    /// silence) in a thread of its own: the stream runs on it (see [`choose_live`]).
    #[cfg(feature = "jack")]
    client: std::sync::Mutex<Option<Activating>>,
    /// What the stream's callback records its timing and overruns into.
    stats: Arc<LiveStats>,
    pub config: StreamConfig,
    format: SampleFormat,
    pub description: String,
    /// The device is a JACK client.
    jack: bool,
    /// Why the buffer is not the size asked for (the nearest the device takes), in
    /// one line; `None` when it is.
    pub buffer_note: Option<String>,
}

impl Chosen {
    pub fn sample_rate(&self) -> u32 {
        self.config.sample_rate
    }

    /// What the stream's callback records its timing and overruns into (for the
    /// JACK client, counting since it was activated).
    pub fn stats(&self) -> Arc<LiveStats> {
        self.stats.clone()
    }

    pub fn buffer_frames(&self) -> u32 {
        match self.config.buffer_size {
            BufferSize::Fixed(n) => n,
            BufferSize::Default => DEFAULT_BUFFER_FRAMES,
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
///
/// Each host is opened only when the one before it has been tried: opening one
/// costs tens of milliseconds (cpal's JACK host opens two clients of the server,
/// ALSA reads its configuration), paid before the first sound.
fn hosts() -> impl Iterator<Item = cpal::Host> {
    #[cfg(feature = "jack")]
    let jack = std::iter::once_with(|| cpal::host_from_id(cpal::HostId::Jack).ok()).flatten();
    #[cfg(not(feature = "jack"))]
    let jack = std::iter::empty::<cpal::Host>();
    jack.chain(std::iter::once_with(cpal::default_host))
}

/// Whether `d` plays sound: cpal lists a JACK server's input beside its output,
/// both saying they take output configurations.
fn is_output(d: &cpal::Device) -> bool {
    let jack_input = d.id().is_ok_and(|id| id.host().name().eq_ignore_ascii_case("jack") && id.id() == "input");
    !jack_input && d.supported_output_configs().is_ok_and(|mut c| c.next().is_some())
}

/// Names of the audio outputs, for `jamrig ports`.
pub fn list_outputs() -> Vec<String> {
    let _quiet = quiet_alsa();
    let mut names = Vec::new();
    for host in hosts() {
        if let Ok(devs) = host.output_devices() {
            for d in devs.filter(is_output) {
                names.push(format!("{} ({})", describe(&d), host.id().name()));
            }
        }
    }
    names
}

/// How long a new stream is watched to see that it keeps time.
const PACING_CHECK: Duration = Duration::from_millis(150);
/// A stream that hands out frames this many times faster than real time does not
/// keep time (a null device, a file).
const UNPACED_RATIO: f64 = 3.0;

/// Watches a stream that has just started: a device that does not keep time
/// (ALSA's "Discard all samples", a file) runs the engine far faster than real
/// time, and is refused. Control side, for [`PACING_CHECK`].
pub fn check_pacing(chosen: &Chosen, stats: &LiveStats) -> Result<(), AudioError> {
    if chosen.jack {
        // A JACK server keeps time (its clock is the device's, or its own), and
        // runs the cycles it missed while starting back to back.
        return Ok(());
    }
    let t0 = Instant::now();
    let sr = chosen.sample_rate() as f64;
    // Two buffers may be filled at once when a stream starts.
    let slack = 2.0 * chosen.buffer_frames() as f64;
    while t0.elapsed() < PACING_CHECK {
        std::thread::sleep(Duration::from_millis(10));
        let frames = stats.frames_total.load(Relaxed) as f64;
        let elapsed = t0.elapsed().as_secs_f64();
        if frames > slack + UNPACED_RATIO * elapsed * sr {
            return Err(AudioError::NoDevice(format!(
                "the audio output \"{}\" does not keep time: it took {:.1} s of audio in {:.2} s (a null or file device).\nChoose one that plays with --device (jamrig ports lists them), or render offline: jamrig render SET -o out.wav",
                chosen.description,
                frames / sr,
                elapsed
            )));
        }
    }
    Ok(())
}

/// Keeps ALSA's own error messages (a screenful when there is no sound card) off
/// the terminal on this thread while it lives.
pub fn quiet_alsa() -> Option<impl Sized> {
    alsa::Output::local_error_handler().ok()
}

/// The buffer to ask for: `want` frames, or the nearest size in what the device
/// takes (`None`: it does not say), with a line saying so when it differs.
fn fit_buffer(want: u32, supported: Option<(u32, u32)>, device: &str) -> (u32, Option<String>) {
    match supported {
        Some((min, max)) if min <= max && !(min..=max).contains(&want) => {
            let got = want.clamp(min, max);
            let range = if min == max { format!("only {min}") } else { format!("{min} to {max}") };
            (got, Some(format!("audio buffer: {got} frames ({device} takes {range} frames, not {want})")))
        }
        _ => (want, None),
    }
}

/// Periods an ALSA PCM takes at this format, rate and channel count (the stream
/// asks for two of them), as ALSA says once they are set; `None` if it cannot be
/// opened or does not say.
fn alsa_period_range(pcm: &str, format: SampleFormat, rate: u32, channels: u16) -> Option<(u32, u32)> {
    use alsa::pcm::{Access, Format, HwParams, PCM};
    let handle = PCM::new(pcm, alsa::Direction::Playback, true).ok()?;
    let hw = HwParams::any(&handle).ok()?;
    hw.set_access(Access::RWInterleaved).ok()?;
    let format = match format {
        SampleFormat::F32 => Format::float(),
        SampleFormat::I16 => Format::s16(),
        _ => return None,
    };
    hw.set_format(format).ok()?;
    hw.set_rate(rate, alsa::ValueOr::Nearest).ok()?;
    hw.set_channels(channels as u32).ok()?;
    let (min, max) = (hw.get_period_size_min().ok()?, hw.get_period_size_max().ok()?);
    let max = match hw.get_buffer_size_max() {
        Ok(b) if b > 0 => max.min(b / 2),
        _ => max,
    };
    (max > 0 && max >= min).then(|| (min.max(1) as u32, max.min(u32::MAX as alsa::pcm::Frames) as u32))
}

/// The error of a stream that could not be built or started: one that names a
/// buffer size says how to choose another.
fn stream_failed(e: impl std::fmt::Display) -> AudioError {
    let text = e.to_string();
    if text.to_lowercase().contains("buffer size") {
        AudioError::Failed(format!("{text}; choose another with --buffer FRAMES"))
    } else {
        AudioError::Failed(text)
    }
}

/// A host named at the start of a device name (`alsa:default`, `jack:`), and the
/// rest of the name.
fn split_host(want: &str) -> (Option<cpal::HostId>, &str) {
    if let Some((host, rest)) = want.split_once(':') {
        for id in cpal::available_hosts() {
            if id.name().eq_ignore_ascii_case(host.trim()) {
                return (Some(id), rest.trim());
            }
        }
    }
    (None, want)
}

fn no_device(reason: &str) -> AudioError {
    AudioError::NoDevice(format!(
        "no usable audio output ({reason}).\nStart JACK or PipeWire (or choose a device with --device), or render offline: jamrig render SET -o out.wav"
    ))
}

/// Picks the output device and a configuration with a fixed buffer of `buffer`
/// frames, or the nearest size the device takes ([`Chosen::buffer_note`] says so).
/// `name` is a case-insensitive part of the device's name, optionally after its
/// host (`alsa:default`, `jack:`); a host alone, or with `default`, picks that
/// host's default device.
pub fn choose(name: Option<&str>, buffer: u32) -> Result<Chosen, AudioError> {
    let _quiet = quiet_alsa();
    let (only_host, name) = match name.map(split_host) {
        Some((host, rest)) => (host, Some(rest).filter(|r| !(r.is_empty() || (host.is_some() && *r == "default")))),
        None => (None, None),
    };
    let mut device = None;
    let candidates: Box<dyn Iterator<Item = cpal::Host>> = match only_host {
        Some(id) => Box::new(cpal::host_from_id(id).into_iter()),
        None => Box::new(hosts()),
    };
    for host in candidates {
        let found = match name {
            None => host.default_output_device(),
            Some(want) => host.output_devices().ok().and_then(|mut devs| {
                devs.find(|d| is_output(d) && describe(d).to_lowercase().contains(&want.to_lowercase()))
            }),
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
    let channels = default.channels().max(1);
    // The buffer sizes the device takes in this format (a JACK client: only the
    // server's period).
    let configs: Vec<_> = device
        .supported_output_configs()
        .map(|cs| {
            cs.filter(|c| c.sample_format() == format && (c.min_sample_rate()..=c.max_sample_rate()).contains(&rate))
                .collect()
        })
        .unwrap_or_default();
    let supported = match device.id() {
        // ALSA's plug layers say they take nearly any size until the rate is set:
        // ask ALSA itself, as the stream will.
        Ok(id) if id.host() == cpal::HostId::Alsa => alsa_period_range(id.id(), format, rate, channels),
        _ => {
            configs.iter().find(|c| c.channels() == channels).or(configs.first()).and_then(|c| match *c.buffer_size() {
                cpal::SupportedBufferSize::Range { min, max } => Some((min, max)),
                cpal::SupportedBufferSize::Unknown => None,
            })
        }
    };
    let description = format!("{} ({})", describe(&device), host_id.name());
    let (frames, buffer_note) = fit_buffer(buffer, supported, &description);
    let config = StreamConfig { channels, sample_rate: rate, buffer_size: BufferSize::Fixed(frames) };
    Ok(Chosen {
        device: Some(device),
        #[cfg(feature = "jack")]
        client: std::sync::Mutex::new(None),
        stats: Arc::new(LiveStats::default()),
        config,
        format,
        description,
        jack,
        buffer_note,
    })
}

/// [`choose`] for `jamrig play`. With the `jack` feature and no device named (or
/// JACK's default), jamrig's own JACK client is opened at once and the stream runs
/// on it: cpal's JACK host, which opens two clients of its own only to describe
/// the server, is skipped (tens of milliseconds before the first sound). Without a
/// JACK server, the same as [`choose`].
pub fn choose_live(name: Option<&str>, buffer: u32) -> Result<Chosen, AudioError> {
    #[cfg(feature = "jack")]
    {
        let default = match name.map(split_host) {
            None => true,
            Some((host, rest)) => {
                host == Some(cpal::HostId::Jack) && (rest.is_empty() || rest.eq_ignore_ascii_case("default"))
            }
        };
        if default && let Some(c) = super::jack_host::open_clients() {
            let (rate, frames) = (c.own.sample_rate(), c.own.buffer_size());
            let description = JACK_DESCRIPTION.to_string();
            let (frames, buffer_note) = fit_buffer(buffer, Some((frames, frames)), &description);
            let stats = Arc::new(LiveStats::default());
            return Ok(Chosen {
                device: None,
                client: std::sync::Mutex::new(Some(Activating::start(c, stats.clone()))),
                stats,
                config: StreamConfig { channels: 2, sample_rate: rate, buffer_size: BufferSize::Fixed(frames) },
                format: SampleFormat::F32,
                description,
                jack: true,
                buffer_note,
            });
        }
    }
    choose(name, buffer)
}

/// [`choose_live`] in a thread of its own, beside the set's evaluation (mostly
/// waiting on the audio server). Dropped unjoined (the set failed), it waits for
/// the thread and closes what it opened.
pub struct Choosing {
    handle: Option<std::thread::JoinHandle<Result<Chosen, AudioError>>>,
    name: Option<String>,
    buffer: u32,
}

impl Choosing {
    pub fn start(name: Option<String>, buffer: u32) -> Choosing {
        let n = name.clone();
        let handle = std::thread::Builder::new()
            .name("jamrig-device".into())
            .spawn(move || choose_live(n.as_deref(), buffer))
            .ok();
        Choosing { handle, name, buffer }
    }

    /// The device chosen (chosen here if the thread could not run).
    pub fn join(mut self) -> Result<Chosen, AudioError> {
        match self.handle.take().map(|h| h.join()) {
            Some(Ok(chosen)) => chosen,
            _ => choose_live(self.name.as_deref(), self.buffer),
        }
    }
}

impl Drop for Choosing {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// jamrig's JACK client being activated in a thread of its own: registering its
/// ports, activating it and connecting it each wait on the server's cycle (21 ms
/// at 1024 frames), so they run while the set is evaluated and the rig built, not
/// after. Dropped unused (the set failed), it waits for the thread and closes the
/// client.
#[cfg(feature = "jack")]
struct Activating(Option<std::thread::JoinHandle<Result<super::jack_host::JackStream, AudioError>>>);

#[cfg(feature = "jack")]
impl Activating {
    fn start(clients: super::jack_host::Clients, stats: Arc<LiveStats>) -> Activating {
        let run = move || super::jack_host::JackStream::activate(Some(clients), stats, None);
        match std::thread::Builder::new().name("jamrig-jack-start".into()).spawn(run) {
            Ok(h) => Activating(Some(h)),
            // No thread to spare: the stream is activated when it starts (the
            // clients are closed here and opened again then).
            Err(_) => Activating(None),
        }
    }

    /// The active client, once its thread is done.
    fn join(mut self) -> Option<Result<super::jack_host::JackStream, AudioError>> {
        let h = self.0.take()?;
        Some(h.join().unwrap_or_else(|_| {
            Err(AudioError::Failed("JACK: the client could not be activated; restart jamrig or the JACK server".into()))
        }))
    }
}

#[cfg(feature = "jack")]
impl Drop for Activating {
    fn drop(&mut self) {
        if let Some(h) = self.0.take() {
            // The stream's own drop closes the client.
            let _ = h.join();
        }
    }
}

/// How the JACK output is described (as cpal's JACK host names it).
#[cfg(feature = "jack")]
const JACK_DESCRIPTION: &str = "JACK Output (JACK)";

impl Chosen {
    /// The cpal device, for a stream that does not run on jamrig's JACK client.
    fn cpal_device(&self) -> Result<&cpal::Device, cpal::Error> {
        self.device.as_ref().ok_or(cpal::Error::new(cpal::ErrorKind::DeviceNotAvailable))
    }
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

/// Notices, in the audio callback, that the device has reported an overrun since
/// the last callback (the error callback counts them).
struct Overruns {
    stats: Arc<LiveStats>,
    seen: u64,
}

impl Overruns {
    /// Audio thread: whether an overrun has been reported since the last call.
    #[inline]
    fn fresh(&mut self) -> bool {
        let n = self.stats.underruns.load(Relaxed);
        let fresh = n != self.seen;
        self.seen = n;
        fresh
    }
}

/// Audio thread, at the start of each callback: the clocks that map the device's
/// time to engine frames start afresh after an overrun, so MIDI and Link clicks
/// land right at once rather than whole cycles late for up to two windows.
/// Returns whether there was one (then [`frame_line_moved`] follows the publish).
#[inline]
fn after_overruns(overruns: &mut Overruns, jack_clock: &mut JackClock, link: &mut LinkClock) -> bool {
    let fresh = overruns.fresh();
    if fresh {
        jack_clock.after_overrun();
        link.after_overrun();
    }
    fresh
}

/// Audio thread, after the frame clock's publish: once the JACK frame clock has
/// measured how far an overrun moved the frame line, the MIDI clock follower
/// moves its fit with it; without a JACK frame clock, at the next tick.
#[inline]
fn frame_line_moved(overran: bool, jack_clock: &mut JackClock, engine: &mut Engine) {
    if let Some(frames) = jack_clock.take_moved() {
        engine.after_overrun(Some(frames));
    } else if overran && !jack_clock.measures() {
        engine.after_overrun(None);
    }
}

/// A running audio stream: cpal's, or (the `jack` build on a JACK server) jamrig's
/// own JACK client, which carries the MIDI ports too.
pub enum Stream {
    Cpal(cpal::Stream),
    #[cfg(feature = "jack")]
    Jack(super::jack_host::JackStream),
}

impl Stream {
    /// The JACK client, when the stream is one.
    #[cfg(feature = "jack")]
    pub fn jack(&self) -> Option<&super::jack_host::JackStream> {
        match self {
            Stream::Jack(j) => Some(j),
            Stream::Cpal(_) => None,
        }
    }
}

/// Starts the stream with `engine` in its callback (on JACK, hands it to the
/// client's running callback); `link` is the Link session's end for the callback;
/// `tap` is where MIDI input goes when the stream carries it (a JACK client). The
/// callback records into [`Chosen::stats`].
pub fn start(
    chosen: &Chosen,
    mut engine: Engine,
    clock: Arc<FrameClock>,
    link: LinkClock,
    tap: &super::midi::MidiTap,
) -> Result<Stream, AudioError> {
    let stats = chosen.stats();
    // The render workers (`--threads`) start with the stream, at realtime priority
    // where the system grants it; the callback hands them channels (`engine::workers`).
    // Live, the workers render only when `--threads` asks for them: a worker the
    // system puts aside (one without realtime priority, or one that starves the
    // sound server's threads when it has it) holds up the callback waiting for
    // the channel it took. Offline renders use every core by default.
    let threads =
        if crate::engine::workers::threads_chosen() { crate::engine::workers::configured_threads() } else { 1 };
    if threads > 1 {
        engine.set_threads(threads, true);
    }
    #[cfg(feature = "jack")]
    if chosen.jack {
        let activating = chosen.client.lock().unwrap_or_else(|p| p.into_inner()).take();
        let stream = match activating.and_then(Activating::join) {
            Some(s) => s?,
            // A JACK server cpal's host found: jamrig's own client on it, now.
            None => super::jack_host::JackStream::activate(None, stats, None)?,
        };
        stream.start(engine, clock, link, tap)?;
        return Ok(Stream::Jack(stream));
    }
    let _ = tap;
    start_cpal(chosen, engine, clock, stats, link).map(Stream::Cpal)
}

fn start_cpal(
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
    let device = chosen.cpal_device().map_err(|e| AudioError::Failed(e.to_string()))?;
    let sr = chosen.sample_rate() as f64;
    let mut jack_clock = JackClock::open(chosen.jack, stats.clone());
    let mut overruns = Overruns { stats: stats.clone(), seen: 0 };
    let stream = match chosen.format {
        SampleFormat::F32 => device.build_output_stream(
            chosen.config,
            move |data: &mut [f32], info: &cpal::OutputCallbackInfo| {
                let t0 = Instant::now();
                let playback = info.timestamp().playback.as_nanos() as u64;
                let block = data.len() / channels;
                let frame = engine.frames_out();
                let overran = after_overruns(&mut overruns, &mut jack_clock, &mut link);
                clock.publish_with_jack_frame(frame, t0, playback, block, jack_clock.frame(frame));
                clock.set_output_latency(jack_clock.latency_from_cycle_start(output_latency(info).as_secs_f64() * sr));
                frame_line_moved(overran, &mut jack_clock, &mut engine);
                follow_link(&mut engine, &mut link, info);
                engine.process(data, channels);
                stats.record(t0.elapsed(), data.len() / channels);
            },
            on_error,
            timeout,
        ),
        SampleFormat::I16 => {
            let mut scratch = crate::dsp::zeroed(CONVERT_FRAMES * channels);
            device.build_output_stream(
                chosen.config,
                move |data: &mut [i16], info: &cpal::OutputCallbackInfo| {
                    let t0 = Instant::now();
                    let playback = info.timestamp().playback.as_nanos() as u64;
                    let block = data.len() / channels;
                    let frame = engine.frames_out();
                    let overran = after_overruns(&mut overruns, &mut jack_clock, &mut link);
                    clock.publish_with_jack_frame(frame, t0, playback, block, jack_clock.frame(frame));
                    clock.set_output_latency(
                        jack_clock.latency_from_cycle_start(output_latency(info).as_secs_f64() * sr),
                    );
                    frame_line_moved(overran, &mut jack_clock, &mut engine);
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
    .map_err(stream_failed)?;
    stream.play().map_err(stream_failed)?;
    Ok(stream)
}

/// Callbacks per window of the JACK frame offset's minimum (about a third of a
/// second at 128 frames).
#[cfg(feature = "jack")]
const JACK_OFFSET_WINDOW: u32 = 128;
/// Callbacks after an overrun over which the new JACK frame offset is measured
/// (one that runs late reads a later cycle's frame time).
#[cfg(feature = "jack")]
const OVERRUN_SETTLE: u32 = 4;

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
    /// How far the offset moved over the last overrun, in frames, until taken.
    moved: Option<i64>,
}

#[cfg(feature = "jack")]
impl JackClock {
    fn open(jack: bool, stats: Arc<LiveStats>) -> JackClock {
        let client = jack
            .then(|| jack::Client::new("jamrig_clock", jack::ClientOptions::NO_START_SERVER).ok())
            .flatten()
            .map(|(c, _)| c);
        let wrapping_less = |a: u32, b: u32| (a.wrapping_sub(b) as i32) < 0;
        JackClock { client, stats, offset: WindowedMin::new(wrapping_less), callbacks: 0, moved: None }
    }

    /// Audio thread: the JACK frame time of the cycle whose output starts at engine
    /// frame `engine_frame`. Reads the server's shared memory, no system call.
    #[inline]
    fn frame(&mut self, engine_frame: u64) -> Option<u32> {
        // SAFETY: the client is open (closed only when this is dropped), and this
        // runs in a process callback of the same server.
        let jf = unsafe { jack::jack_sys::jack_last_frame_time(self.client.as_ref()?.raw()) };
        let old = self.offset.best();
        if self.offset.push(jf.wrapping_sub(engine_frame as u32))
            && let (Some(old), Some(new)) = (old, self.offset.best())
        {
            self.moved = Some(new.wrapping_sub(old) as i32 as i64);
        }
        self.callbacks += 1;
        if self.callbacks == JACK_OFFSET_WINDOW {
            self.offset.roll();
            self.callbacks = 0;
        }
        Some((engine_frame as u32).wrapping_add(self.offset.best()?))
    }

    /// Audio thread: after an overrun the server may have skipped cycles, so the
    /// offset may have grown for good: measure it afresh over the next callbacks.
    #[inline]
    fn after_overrun(&mut self) {
        self.offset.settle_afresh(OVERRUN_SETTLE);
    }

    /// Whether it reads JACK frame times (the stream is a JACK client).
    #[inline]
    fn measures(&self) -> bool {
        self.client.is_some()
    }

    /// Audio thread: an output latency measured from the callback (`frames`), as
    /// measured from the start of its JACK cycle: the port's own latency, the same
    /// in every cycle however late the callback runs in it.
    #[inline]
    fn latency_from_cycle_start(&self, frames: f64) -> u64 {
        let since = match &self.client {
            // SAFETY: the client is open; the call reads the server's timer.
            Some(c) => (unsafe { jack::jack_sys::jack_frames_since_cycle_start(c.raw()) }) as f64,
            None => 0.0,
        };
        (frames + since).round().max(0.0) as u64
    }

    /// Audio thread: how many frames the JACK frame line moved ahead of the
    /// engine's over the last overrun (the cycles the engine did not render), once,
    /// after the next [`JackClock::frame`]; `None` when not measured.
    #[inline]
    fn take_moved(&mut self) -> Option<i64> {
        self.moved.take()
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

    #[inline]
    fn take_moved(&mut self) -> Option<i64> {
        None
    }

    #[inline]
    fn measures(&self) -> bool {
        false
    }

    #[inline]
    fn latency_from_cycle_start(&self, frames: f64) -> u64 {
        frames.round().max(0.0) as u64
    }

    #[inline]
    fn after_overrun(&mut self) {}
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
        chosen.cpal_device()?.build_output_stream(
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
    .map_err(stream_failed)?;
    stream.play().map_err(stream_failed)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression (issue 13, item 1 and minor): a device that takes other buffer
    /// sizes than the one asked for failed ("Buffer size 128 is not in the
    /// supported range 256..=16384"). The nearest size it takes is used, and one
    /// line says so.
    #[test]
    fn the_buffer_is_the_nearest_the_device_takes() {
        assert_eq!(fit_buffer(128, Some((64, 4096)), "hw"), (128, None));
        assert_eq!(fit_buffer(128, None, "hw"), (128, None));
        assert_eq!(
            fit_buffer(128, Some((256, 16384)), "default"),
            (256, Some("audio buffer: 256 frames (default takes 256 to 16384 frames, not 128)".to_string()))
        );
        assert_eq!(
            fit_buffer(128, Some((1024, 1024)), "JACK Output (JACK)"),
            (1024, Some("audio buffer: 1024 frames (JACK Output (JACK) takes only 1024 frames, not 128)".to_string()))
        );
        assert_eq!(fit_buffer(9000, Some((16, 4096)), "hw").0, 4096);
    }

    /// Regression (issue 13, minor): an error that names a buffer size did not
    /// say how to choose another. It names `--buffer FRAMES`; others are as they
    /// came.
    #[test]
    fn a_buffer_size_error_names_the_option() {
        let e = stream_failed("Buffer size 128 is not in the supported range 256..=16384");
        assert_eq!(
            e.to_string(),
            "the audio device could not be opened: Buffer size 128 is not in the supported range 256..=16384; choose another with --buffer FRAMES"
        );
        assert_eq!(stream_failed("device busy").to_string(), "the audio device could not be opened: device busy");
    }
}
