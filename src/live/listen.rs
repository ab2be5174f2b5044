//! The control port of `jamrig play --listen`: OSC over UDP and a line protocol
//! over TCP on one port number, served by listener threads of their own. What they
//! receive goes to the control thread as REPL lines (or a timed note), where REPL
//! lines go, and the reply goes back to the sender. Nothing here runs on, or
//! waits for, the audio thread.
//!
//! Hostile input is refused cheaply and counted ([`ListenStats`], shown by
//! `:status`): packets and lines have a largest size, each sender has its own rate
//! limit (and all of them together a larger one), OSC requests wait in a bounded
//! queue of which one sender holds a bounded share, TCP connections are limited in
//! number and must send each request whole within [`REQUEST_TIMEOUT`]. Only the
//! colon commands in [`REMOTE_COMMANDS`] are taken (none writes a file or opens a
//! device); set statements can read no more than a set can.
//!
//! An OSC bundle's time tag is honoured: a bundle timed ahead plays its notes and
//! knob moves at the frame of that time, and runs its lines at that time; one timed
//! now, in the past, or "immediately" runs at once.

use super::control::Msg;
use crate::params::Param;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError, bounded};
use rosc::{OscMessage, OscPacket, OscTime, OscType};
use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The largest OSC packet taken, in bytes; a bigger one is refused.
pub const MAX_PACKET_BYTES: usize = 8192;
/// The longest TCP line, in bytes (without its line end); a longer one is refused.
pub const MAX_LINE_BYTES: usize = 16 * 1024;
/// The largest request: a block between `:{` and `:}`, or an OSC eval, in bytes.
pub const MAX_BLOCK_BYTES: usize = 64 * 1024;
/// Messages taken from one OSC bundle (nested bundles included).
pub const MAX_BUNDLE_MESSAGES: usize = 32;
/// OSC requests waiting for the control thread (or for their bundle's time); more
/// are dropped and counted.
pub const OSC_QUEUE_CAP: usize = 64;
/// OSC requests of one sender waiting at once (its share of [`OSC_QUEUE_CAP`]), so
/// that one flooding sender leaves room for the others.
pub const MAX_WAITING_PER_SENDER: usize = 16;
/// The furthest ahead an OSC bundle may be timed; a bundle timed later is refused.
pub const MAX_BUNDLE_AHEAD: Duration = Duration::from_secs(60);
/// TCP connections open at once; more are refused and counted.
pub const MAX_CONNECTIONS: usize = 8;
/// Requests taken per second from one sender (a UDP address and port, or a TCP
/// connection), a token bucket each; the rest are dropped (OSC) or refused (TCP) and
/// counted.
pub const RATE_PER_SECOND: f64 = 200.0;
/// Requests taken at once from one sender before the rate counts (an editor that
/// sends a long selection line by line).
pub const RATE_BURST: f64 = 400.0;
/// Requests taken per second from all senders together (a sender that changes its
/// address with each packet meets this one).
pub const ALL_RATE_PER_SECOND: f64 = 4.0 * RATE_PER_SECOND;
/// Requests taken at once from all senders together.
pub const ALL_RATE_BURST: f64 = 4.0 * RATE_BURST;
/// Senders whose rate is tracked; beyond, the one idle longest is forgotten.
pub const MAX_RATE_SENDERS: usize = 256;
/// A request costs one more of the rate's requests for each this many bytes:
/// the session keeps the lines it evaluates (to replay them), so the rate also
/// bounds how fast senders can make it grow (50 KiB a second).
pub const RATE_BYTES_PER_REQUEST: usize = 256;
/// A TCP request (a line, or a block) must arrive whole within this long of its
/// first byte, or the connection is closed (slowloris).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// A TCP connection that sends nothing for this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// The longest wait for the control thread's reply.
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest OSC reply text, in bytes; a longer one is cut.
pub const MAX_REPLY_BYTES: usize = 4096;
/// How often the listener threads look at their stop flag.
const POLL: Duration = Duration::from_millis(50);
/// The longest note `/jamrig/note` plays, in beats.
pub const MAX_NOTE_BEATS: f64 = 64.0;
/// The shortest `--listen-token`.
pub const MIN_TOKEN_CHARS: usize = 8;
/// Ports tried when `--listen 0` asks for any free one (it must be free for both
/// UDP and TCP).
const FREE_PORT_TRIES: usize = 32;

/// The colon commands the port takes. The others write files (`:save`, `:rec`),
/// read files a set could not (`:load`), change devices (`:port`), stop jamrig
/// (`:quit`) or need a terminal (`:keys`, `:meters`).
pub const REMOTE_COMMANDS: &[&str] =
    &[":help", ":status", ":panic", ":play", ":stop", ":tempo", ":sync", ":reload", ":events", ":log", ":watch"];

/// The OSC addresses and their arguments.
pub const OSC_ADDRESSES: &[(&str, &str)] = &[
    ("/jamrig/eval", "LINE (string): a REPL line, as typed"),
    ("/jamrig/param", "CHANNEL (int) NAME (string) VALUE (number): a channel's parameter, with a glide"),
    ("/jamrig/note", "CHANNEL (int) NOTE (int) VELOCITY (int) LENGTH (number, beats)"),
    ("/jamrig/tempo", "[BPM (number)]: show or change the tempo"),
    ("/jamrig/play", "start the transport"),
    ("/jamrig/stop", "stop the transport"),
    ("/jamrig/reload", "reload the set"),
];

/// Where the port listens, and the token every message must carry.
#[derive(Clone, Debug)]
pub struct ListenOptions {
    pub addr: SocketAddr,
    pub token: Option<String>,
}

/// `[ADDR:]PORT`: a port alone listens on loopback.
pub fn parse_addr(s: &str) -> Result<SocketAddr, String> {
    if let Ok(port) = s.parse::<u16>() {
        return Ok(SocketAddr::new(Ipv4Addr::LOCALHOST.into(), port));
    }
    s.parse::<SocketAddr>()
        .map_err(|_| format!("{s} is not [ADDR:]PORT: give a port (9000) or an address and a port (192.168.1.20:9000)"))
}

impl ListenOptions {
    /// Checks that an address beyond loopback comes with a token.
    pub fn new(addr: SocketAddr, token: Option<String>) -> Result<ListenOptions, String> {
        if let Some(t) = &token {
            if t.chars().count() < MIN_TOKEN_CHARS || t.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(format!(
                    "--listen-token: use one word of at least {MIN_TOKEN_CHARS} characters, without spaces"
                ));
            }
        } else if !addr.ip().is_loopback() {
            return Err(format!(
                "--listen {addr} takes messages from other machines: give --listen-token TOKEN too (every message must then carry it), or listen on loopback only (--listen {})",
                addr.port()
            ));
        }
        Ok(ListenOptions { addr, token })
    }
}

/// Why a message was refused (each kind has its counter).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Refused {
    /// Not an OSC packet; a line that is not UTF-8; a `:}` with no block open.
    BadPacket,
    UnknownAddress,
    /// Arguments of the wrong type, number or range.
    WrongType,
    Oversized,
    BadToken,
    /// A colon command the port does not take.
    Command,
    QueueFull,
}

/// A refused message: its kind and what to tell the sender.
#[derive(Clone, Debug, PartialEq)]
pub struct Refusal {
    pub kind: Refused,
    pub text: String,
}

fn refuse(kind: Refused, text: impl Into<String>) -> Refusal {
    Refusal { kind, text: text.into() }
}

/// What the control thread is asked to do.
#[derive(Clone, Debug, PartialEq)]
pub enum Request {
    /// A REPL line (or a block of them), run as the REPL runs it.
    Line(String),
    /// A note now, `beats` long at the tempo it starts at. Channel 1..=16.
    Note { channel: u8, note: u8, velocity: u8, beats: f64 },
    /// A channel's parameter set as a knob sets it (checked against its range).
    Param { channel: u8, param: Param, value: f32 },
}

impl Request {
    /// As `:log` shows it.
    pub fn describe(&self) -> String {
        match self {
            Request::Line(l) => l.replace('\n', " \u{23ce} "),
            Request::Note { channel, note, velocity, beats } => format!(
                "note {} on channel {channel}, velocity {velocity}, {} beats",
                crate::theory::note_name(*note),
                crate::params::fmt_num(*beats as f32)
            ),
            Request::Param { channel, param, value } => {
                format!("knob ch{channel} {param} {}", crate::script::diff::param_text(*param, *value))
            }
        }
    }

    /// The event of a knob request at engine frame `at` (`None` otherwise).
    pub fn param_event(&self, at: u64) -> Option<crate::engine::event::Event> {
        use crate::engine::event::{Event, EventKind};
        let Request::Param { channel, param, value } = *self else { return None };
        Some(Event::new(at, EventKind::Param { channel: channel - 1, param: param as u8, value }))
    }

    /// The note-on and note-off of a note request starting at engine frame `at`
    /// (`None` for a line).
    pub fn note_events(&self, at: u64, bpm: f64, sample_rate: f64) -> Option<[crate::engine::event::Event; 2]> {
        use crate::engine::event::{Event, EventKind};
        let Request::Note { channel, note, velocity, beats } = *self else { return None };
        let frames = (beats * 60.0 / bpm.max(1.0) * sample_rate).round().max(1.0) as u64;
        let channel = channel - 1;
        Some([
            Event::new(at, EventKind::NoteOn { channel, note, velocity }),
            Event::new(at + frames, EventKind::NoteOff { channel, note }),
        ])
    }
}

/// The control thread's answer: what the REPL would have printed, and whether it
/// was an error.
#[derive(Clone, Debug)]
pub struct Reply {
    pub text: String,
    pub ok: bool,
}

/// A request on its way to the control thread.
pub struct Remote {
    /// "OSC 127.0.0.1:5000", "TCP 127.0.0.1:40312".
    pub from: String,
    pub request: Request,
    /// When a note or knob request plays (an OSC bundle's time); `None`: now.
    pub at: Option<Instant>,
    pub reply: Sender<Reply>,
}

/// What the port took and refused, for `:status`.
#[derive(Default)]
pub struct ListenStats {
    pub requests: AtomicU64,
    pub bad_packets: AtomicU64,
    pub unknown_addresses: AtomicU64,
    pub wrong_types: AtomicU64,
    pub oversized: AtomicU64,
    pub bad_tokens: AtomicU64,
    pub commands_refused: AtomicU64,
    pub rate_limited: AtomicU64,
    pub queue_full: AtomicU64,
    pub connections_refused: AtomicU64,
    pub timed_out: AtomicU64,
    pub connections_open: AtomicUsize,
}

impl ListenStats {
    fn count(&self, kind: Refused) {
        let c = match kind {
            Refused::BadPacket => &self.bad_packets,
            Refused::UnknownAddress => &self.unknown_addresses,
            Refused::WrongType => &self.wrong_types,
            Refused::Oversized => &self.oversized,
            Refused::BadToken => &self.bad_tokens,
            Refused::Command => &self.commands_refused,
            Refused::QueueFull => &self.queue_full,
        };
        c.fetch_add(1, Relaxed);
    }

    /// The `control port:` line of `:status`.
    pub fn line(&self, addr: SocketAddr) -> String {
        let n = |c: &AtomicU64| c.load(Relaxed);
        format!(
            "control port {addr} (OSC/UDP, lines/TCP): {} requests; refused: {} bad packets, {} unknown addresses, {} wrong types, {} oversized, {} bad tokens, {} commands not taken; dropped: {} over the rate limit, {} queue full; connections: {} open, {} refused, {} timed out",
            n(&self.requests),
            n(&self.bad_packets),
            n(&self.unknown_addresses),
            n(&self.wrong_types),
            n(&self.oversized),
            n(&self.bad_tokens),
            n(&self.commands_refused),
            n(&self.rate_limited),
            n(&self.queue_full),
            self.connections_open.load(Relaxed),
            n(&self.connections_refused),
            n(&self.timed_out),
        )
    }
}

/// Whether the port takes `line`: any set statement, and the colon commands of
/// [`REMOTE_COMMANDS`]; nothing larger than [`MAX_BLOCK_BYTES`].
pub fn check_line(line: &str) -> Result<(), Refusal> {
    if line.len() > MAX_BLOCK_BYTES {
        return Err(refuse(Refused::Oversized, format!("a request of more than {MAX_BLOCK_BYTES} bytes is refused")));
    }
    let t = line.trim_start();
    if t.starts_with(':') {
        let cmd = t.split_whitespace().next().unwrap_or(":");
        if !REMOTE_COMMANDS.contains(&cmd) {
            return Err(refuse(
                Refused::Command,
                format!(
                    "the control port does not take {cmd} (it takes {}); type it in jamrig's REPL",
                    REMOTE_COMMANDS.join(" ")
                ),
            ));
        }
    }
    Ok(())
}

/// The messages of an OSC packet, bundles flattened in order.
pub fn osc_messages(packet: &[u8]) -> Result<Vec<OscMessage>, Refusal> {
    Ok(osc_timed(packet, SystemTime::now())?.into_iter().map(|(_, m)| m).collect())
}

/// How long after `now` a bundle's time tag `tag` falls: `None` to run at once (the
/// tag "immediately", a time now or past). A time further ahead than
/// [`MAX_BUNDLE_AHEAD`] is refused.
pub fn ahead_of(tag: OscTime, now: SystemTime) -> Result<Option<Duration>, Refusal> {
    if (tag.seconds, tag.fractional) == (0, 1) {
        return Ok(None);
    }
    let Ok(unix) = now.duration_since(UNIX_EPOCH) else { return Ok(None) };
    let now_osc = (unix.as_secs() + OSC_UNIX_OFFSET_S) as f64 + unix.subsec_nanos() as f64 * 1e-9;
    let at = tag.seconds as f64 + tag.fractional as f64 / 4_294_967_296.0;
    let ahead = at - now_osc;
    if ahead <= 0.0 {
        return Ok(None);
    }
    if ahead > MAX_BUNDLE_AHEAD.as_secs_f64() {
        return Err(refuse(
            Refused::WrongType,
            format!(
                "a bundle timed {} s ahead is refused (at most {} s ahead; check the sender's clock)",
                ahead.round(),
                MAX_BUNDLE_AHEAD.as_secs()
            ),
        ));
    }
    Ok(Some(Duration::from_secs_f64(ahead)))
}

/// Seconds from the OSC (NTP) epoch, 1900, to the Unix epoch, 1970.
const OSC_UNIX_OFFSET_S: u64 = 2_208_988_800;

/// The messages of an OSC packet, bundles flattened in order, each with how long
/// after `now` it is timed (its innermost bundle's time tag; `None`: at once).
pub fn osc_timed(packet: &[u8], now: SystemTime) -> Result<Vec<(Option<Duration>, OscMessage)>, Refusal> {
    if packet.len() > MAX_PACKET_BYTES {
        return Err(refuse(
            Refused::Oversized,
            format!("an OSC packet of more than {MAX_PACKET_BYTES} bytes is refused"),
        ));
    }
    let (_, p) = rosc::decoder::decode_udp(packet).map_err(|e| {
        refuse(Refused::BadPacket, format!("not an OSC packet ({e}); send e.g. /jamrig/eval \"ch(1).volume = 0.5\""))
    })?;
    let mut out = Vec::new();
    let mut stack = vec![(None, p)];
    while let Some((ahead, p)) = stack.pop() {
        match p {
            OscPacket::Message(m) => out.push((ahead, m)),
            OscPacket::Bundle(b) => {
                let ahead = ahead_of(b.timetag, now)?;
                stack.extend(b.content.into_iter().rev().map(|p| (ahead, p)));
            }
        }
        if out.len() + stack.len() > MAX_BUNDLE_MESSAGES {
            return Err(refuse(
                Refused::Oversized,
                format!("a bundle of more than {MAX_BUNDLE_MESSAGES} messages is refused"),
            ));
        }
    }
    Ok(out)
}

fn number(a: &OscType) -> Option<f64> {
    let v = match *a {
        OscType::Int(i) => i as f64,
        OscType::Long(i) => i as f64,
        OscType::Float(f) => f as f64,
        OscType::Double(d) => d,
        _ => return None,
    };
    v.is_finite().then_some(v)
}

/// A whole number in `lo..=hi`.
fn whole(a: &OscType, lo: u8, hi: u8) -> Option<u8> {
    number(a).filter(|v| v.fract() == 0.0 && *v >= lo as f64 && *v <= hi as f64).map(|v| v as u8)
}

/// Compares without stopping at the first difference (the time taken tells nothing).
fn same_token(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The request an OSC message makes. With a `token`, the message's first argument
/// must be it.
pub fn osc_request(msg: &OscMessage, token: Option<&str>) -> Result<Request, Refusal> {
    let mut args = msg.args.as_slice();
    if let Some(t) = token {
        match args.first() {
            Some(OscType::String(s)) if same_token(s, t) => args = &args[1..],
            _ => {
                return Err(refuse(
                    Refused::BadToken,
                    "this port needs the token (--listen-token) as the first argument of every message",
                ));
            }
        }
    }
    let usage = |addr: &str| {
        let what = OSC_ADDRESSES.iter().find(|(a, _)| *a == addr).map_or("", |(_, w)| *w);
        refuse(Refused::WrongType, format!("{addr} takes {what}"))
    };
    let addr = msg.addr.as_str();
    let line = |l: String| Ok(Request::Line(l));
    match (addr, args) {
        ("/jamrig/eval", [OscType::String(s)]) => check_line(s).and(line(s.clone())),
        ("/jamrig/param", [ch, OscType::String(name), value]) => {
            let channel = whole(ch, 1, 16).ok_or_else(|| usage(addr))?;
            let value = number(value).ok_or_else(|| usage(addr))?;
            let Some(param) = Param::from_name(name) else {
                let names = crate::params::PARAMS.iter().map(|p| p.name);
                let hint = crate::script::diagnostic::suggest(name, names)
                    .map(|s| format!(" (did you mean {s}?)"))
                    .unwrap_or_default();
                return Err(refuse(Refused::WrongType, format!("/jamrig/param: unknown parameter {name}{hint}")));
            };
            let value =
                param.check(value as f32).map_err(|e| refuse(Refused::WrongType, format!("/jamrig/param: {e}")))?;
            Ok(Request::Param { channel, param, value })
        }
        ("/jamrig/note", [ch, note, velocity, length]) => {
            let (Some(channel), Some(note), Some(velocity)) =
                (whole(ch, 1, 16), whole(note, 0, 127), whole(velocity, 1, 127))
            else {
                return Err(usage(addr));
            };
            let beats = number(length).filter(|b| *b > 0.0 && *b <= MAX_NOTE_BEATS).ok_or_else(|| usage(addr))?;
            Ok(Request::Note { channel, note, velocity, beats })
        }
        ("/jamrig/tempo", []) => line(":tempo".into()),
        ("/jamrig/tempo", [bpm]) => line(format!(":tempo {}", number(bpm).ok_or_else(|| usage(addr))?)),
        ("/jamrig/play", []) => line(":play".into()),
        ("/jamrig/stop", []) => line(":stop".into()),
        ("/jamrig/reload", []) => line(":reload".into()),
        _ if OSC_ADDRESSES.iter().any(|(a, _)| *a == addr) => Err(usage(addr)),
        _ => {
            let names: Vec<&str> = OSC_ADDRESSES.iter().map(|(a, _)| *a).collect();
            Err(refuse(Refused::UnknownAddress, format!("unknown address {addr}: the port takes {}", names.join(" "))))
        }
    }
}

/// What the line protocol makes of the bytes received.
#[derive(Clone, Debug, PartialEq)]
pub enum Item {
    /// A line, or a block's lines joined with newlines.
    Request(String),
    Refused(Refusal),
}

/// The TCP line protocol: one request per line, or a block of lines between a
/// line `:{` and a line `:}`. Lines end with `\n` (or `\r\n`); empty lines outside
/// a block are skipped.
#[derive(Default)]
pub struct LineReader {
    buf: Vec<u8>,
    /// The block being read.
    block: Option<String>,
    /// The rest of a line too long is being skipped.
    skip_line: bool,
    /// The rest of a block too large is being skipped (up to its `:}`).
    skip_block: bool,
}

impl LineReader {
    /// Whether part of a request has arrived and the rest not yet.
    pub fn pending(&self) -> bool {
        !self.buf.is_empty() || self.block.is_some() || self.skip_line || self.skip_block
    }

    /// Takes `bytes`; each request completed (or refused) goes into `out`.
    pub fn feed(&mut self, bytes: &[u8], out: &mut Vec<Item>) {
        let mut rest = bytes;
        while !rest.is_empty() {
            match rest.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    let (head, tail) = rest.split_at(i);
                    rest = &tail[1..];
                    if self.skip_line {
                        self.skip_line = false;
                        continue;
                    }
                    if self.buf.len() + head.len() > MAX_LINE_BYTES {
                        self.buf.clear();
                        out.push(Item::Refused(too_long()));
                        continue;
                    }
                    self.buf.extend_from_slice(head);
                    let line = std::mem::take(&mut self.buf);
                    self.line(&line, out);
                }
                None => {
                    if !self.skip_line {
                        if self.buf.len() + rest.len() > MAX_LINE_BYTES {
                            self.buf.clear();
                            self.skip_line = true;
                            out.push(Item::Refused(too_long()));
                        } else {
                            self.buf.extend_from_slice(rest);
                        }
                    }
                    rest = &[];
                }
            }
        }
    }

    fn line(&mut self, bytes: &[u8], out: &mut Vec<Item>) {
        let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
        let Ok(line) = std::str::from_utf8(bytes) else {
            out.push(Item::Refused(refuse(Refused::BadPacket, "a line that is not UTF-8 text is refused")));
            return;
        };
        let mark = line.trim();
        match (&mut self.block, mark) {
            (Some(_), ":}") => {
                let block = self.block.take().unwrap_or_default();
                if !std::mem::take(&mut self.skip_block) {
                    out.push(Item::Request(block));
                }
            }
            (Some(block), _) => {
                if self.skip_block {
                } else if block.len() + line.len() + 1 > MAX_BLOCK_BYTES {
                    self.skip_block = true;
                    out.push(Item::Refused(refuse(
                        Refused::Oversized,
                        format!("a block of more than {MAX_BLOCK_BYTES} bytes is refused"),
                    )));
                } else {
                    if !block.is_empty() {
                        block.push('\n');
                    }
                    block.push_str(line);
                }
            }
            (None, ":{") => self.block = Some(String::new()),
            (None, ":}") => {
                out.push(Item::Refused(refuse(Refused::BadPacket, ":} ends a block that :{ did not open")));
            }
            (None, "") => {}
            (None, _) => out.push(Item::Request(line.to_string())),
        }
    }
}

fn too_long() -> Refusal {
    refuse(
        Refused::Oversized,
        format!(
            "a line of more than {MAX_LINE_BYTES} bytes is refused (send a block between :{{ and :}} for long code)"
        ),
    )
}

/// A token bucket: `rate` requests a second, bursts of `burst`; a request of `n`
/// bytes counts as `1 + n / RATE_BYTES_PER_REQUEST`.
pub struct RateLimit {
    tokens: f64,
    last: Instant,
    rate: f64,
    burst: f64,
}

impl RateLimit {
    /// One sender's bucket: [`RATE_PER_SECOND`], bursts of [`RATE_BURST`].
    pub fn new(now: Instant) -> RateLimit {
        RateLimit::with(now, RATE_PER_SECOND, RATE_BURST)
    }

    pub fn with(now: Instant, rate: f64, burst: f64) -> RateLimit {
        RateLimit { tokens: burst, last: now, rate, burst }
    }

    fn refill(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = self.last.max(now);
        self.tokens = (self.tokens + dt * self.rate).min(self.burst);
    }

    fn cost(bytes: usize) -> f64 {
        (1 + bytes / RATE_BYTES_PER_REQUEST) as f64
    }

    /// Whether one more request of `bytes` could pass at `now` (takes nothing).
    fn could(&mut self, now: Instant, bytes: usize) -> bool {
        self.refill(now);
        self.tokens >= Self::cost(bytes)
    }

    /// Whether one more request of `bytes` may pass at `now` (taken if so).
    pub fn take(&mut self, now: Instant, bytes: usize) -> bool {
        let ok = self.could(now, bytes);
        if ok {
            self.tokens -= Self::cost(bytes);
        }
        ok
    }
}

/// The rate limits of the port: a bucket per sender, and one for all of them.
pub struct Rates {
    senders: HashMap<SocketAddr, RateLimit>,
    all: RateLimit,
}

impl Rates {
    pub fn new(now: Instant) -> Rates {
        Rates { senders: HashMap::new(), all: RateLimit::with(now, ALL_RATE_PER_SECOND, ALL_RATE_BURST) }
    }

    /// Whether one more request of `bytes` from `from` may pass at `now`: within its
    /// sender's rate and everyone's (taken from both if so).
    pub fn take(&mut self, from: SocketAddr, now: Instant, bytes: usize) -> bool {
        if !self.senders.contains_key(&from) && self.senders.len() >= MAX_RATE_SENDERS {
            // Forget the sender idle longest (a new sender starts with a full bucket,
            // as a forgotten one would have refilled; everyone's bucket still holds).
            if let Some(oldest) = self.senders.iter().min_by_key(|(_, r)| r.last).map(|(a, _)| *a) {
                self.senders.remove(&oldest);
            }
        }
        let mine = self.senders.entry(from).or_insert_with(|| RateLimit::new(now));
        if !mine.could(now, bytes) || !self.all.could(now, bytes) {
            return false;
        }
        mine.take(now, bytes) && self.all.take(now, bytes)
    }

    /// Senders tracked.
    pub fn senders(&self) -> usize {
        self.senders.len()
    }
}

/// What the listener threads share.
struct Shared {
    stats: Arc<ListenStats>,
    stop: AtomicBool,
    rate: Mutex<Rates>,
    /// Per OSC sender, its requests waiting (queued, or held for their time).
    waiting: Mutex<HashMap<SocketAddr, usize>>,
    token: Option<String>,
    tx: Sender<Msg>,
}

impl Shared {
    fn stopping(&self) -> bool {
        self.stop.load(Relaxed)
    }

    /// Whether the rate limits let one more request of `bytes` from `from` pass
    /// (counted when they do not).
    fn allow(&self, from: SocketAddr, bytes: usize) -> bool {
        let ok = self.rate.lock().unwrap_or_else(|p| p.into_inner()).take(from, Instant::now(), bytes);
        if !ok {
            self.stats.rate_limited.fetch_add(1, Relaxed);
        }
        ok
    }

    /// One more request of `from` waits, if its share of the queue has room.
    fn wait_more(&self, from: SocketAddr) -> bool {
        let mut w = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
        let n = w.entry(from).or_insert(0);
        if *n >= MAX_WAITING_PER_SENDER {
            return false;
        }
        *n += 1;
        true
    }

    /// A request of `from` waits no more.
    fn waited(&self, from: SocketAddr) {
        let mut w = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = w.get_mut(&from) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                w.remove(&from);
            }
        }
    }

    /// Hands `request` to the control thread and waits for its reply; a note or
    /// knob request plays `at` that time (`None`: now).
    fn ask(&self, from: String, request: Request, at: Option<Instant>) -> Reply {
        let (reply, answer) = bounded(1);
        self.stats.requests.fetch_add(1, Relaxed);
        if self.tx.send(Msg::Remote(Remote { from, request, reply, at })).is_err() {
            return Reply { text: "jamrig is stopping".into(), ok: false };
        }
        answer.recv_timeout(REPLY_TIMEOUT).unwrap_or_else(|_| Reply {
            text: format!("no reply from jamrig within {} s (it may be stopping)", REPLY_TIMEOUT.as_secs()),
            ok: false,
        })
    }
}

/// The running port; its threads stop when it is dropped.
pub struct Listener {
    shared: Arc<Shared>,
    /// The address bound (for both protocols).
    pub addr: SocketAddr,
}

impl Listener {
    /// Binds UDP and TCP on the same address and port (a free one for port 0) and
    /// starts the listener threads; requests go to the control thread through `tx`.
    pub fn start(opts: &ListenOptions, tx: Sender<Msg>) -> std::io::Result<Listener> {
        let (tcp, udp) = bind(opts.addr)?;
        let addr = tcp.local_addr()?;
        let shared = Arc::new(Shared {
            stats: Arc::new(ListenStats::default()),
            stop: AtomicBool::new(false),
            rate: Mutex::new(Rates::new(Instant::now())),
            waiting: Mutex::new(HashMap::new()),
            token: opts.token.clone(),
            tx,
        });
        udp.set_read_timeout(Some(POLL))?;
        tcp.set_nonblocking(true)?;
        let (queue_tx, queue_rx) = bounded(OSC_QUEUE_CAP);
        let spawn = |name: &str, f: Box<dyn FnOnce() + Send>| std::thread::Builder::new().name(name.into()).spawn(f);
        {
            let (udp, shared) = (udp.try_clone()?, shared.clone());
            spawn("jamrig-osc-in", Box::new(move || osc_receive(udp, &shared, queue_tx)))?;
        }
        {
            let shared = shared.clone();
            spawn("jamrig-osc-reply", Box::new(move || osc_answer(udp, &shared, queue_rx)))?;
        }
        {
            let shared = shared.clone();
            spawn("jamrig-tcp", Box::new(move || tcp_accept(tcp, shared)))?;
        }
        Ok(Listener { shared, addr })
    }

    pub fn stats(&self) -> &ListenStats {
        &self.shared.stats
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.shared.stop.store(true, Relaxed);
    }
}

fn bind(addr: SocketAddr) -> std::io::Result<(TcpListener, UdpSocket)> {
    if addr.port() != 0 {
        return Ok((TcpListener::bind(addr)?, UdpSocket::bind(addr)?));
    }
    let mut last = None;
    for _ in 0..FREE_PORT_TRIES {
        let tcp = TcpListener::bind(addr)?;
        let at = SocketAddr::new(addr.ip(), tcp.local_addr()?.port());
        match UdpSocket::bind(at) {
            Ok(udp) => return Ok((tcp, udp)),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no free port")))
}

/// Sends an OSC reply (`/jamrig/reply` or `/jamrig/error` with one string).
fn send_osc(sock: &UdpSocket, to: SocketAddr, ok: bool, text: &str) {
    let text = text.trim_end();
    let mut text = text.to_string();
    if text.len() > MAX_REPLY_BYTES {
        let mut cut = MAX_REPLY_BYTES;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push_str("\n(cut)");
    }
    let addr = if ok { "/jamrig/reply" } else { "/jamrig/error" };
    let packet = OscPacket::Message(OscMessage { addr: addr.into(), args: vec![OscType::String(text)] });
    if let Ok(bytes) = rosc::encoder::encode(&packet) {
        let _ = sock.send_to(&bytes, to);
    }
}

/// An OSC request on its way to [`osc_answer`]: its sender, and when it is timed
/// (`None`: at once).
type Queued = (SocketAddr, Request, Option<Instant>);

/// Reads OSC packets: refuses what is wrong at once (with an error to the sender),
/// queues the requests for [`osc_answer`], each sender within its share of the
/// queue.
fn osc_receive(sock: UdpSocket, shared: &Shared, queue: Sender<Queued>) {
    let mut buf = vec![0u8; MAX_PACKET_BYTES + 1];
    while !shared.stopping() {
        let (n, from) = match sock.recv_from(&mut buf) {
            Ok(r) => r,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted) => {
                continue;
            }
            Err(_) => {
                std::thread::sleep(POLL);
                continue;
            }
        };
        let (now, wall) = (Instant::now(), SystemTime::now());
        if !shared.allow(from, n) {
            continue;
        }
        let refused = |r: Refusal| {
            shared.stats.count(r.kind);
            send_osc(&sock, from, false, &r.text);
        };
        let msgs = match osc_timed(&buf[..n], wall) {
            Ok(m) => m,
            Err(r) => {
                refused(r);
                continue;
            }
        };
        for (ahead, m) in &msgs {
            match osc_request(m, shared.token.as_deref()) {
                Ok(req) => {
                    if !shared.wait_more(from) {
                        refused(refuse(
                            Refused::QueueFull,
                            format!(
                                "busy: {MAX_WAITING_PER_SENDER} of your requests wait already; this one was dropped"
                            ),
                        ));
                        continue;
                    }
                    match queue.try_send((from, req, ahead.map(|d| now + d))) {
                        Ok(()) => {}
                        Err(TrySendError::Full(_)) => {
                            shared.waited(from);
                            refused(refuse(
                                Refused::QueueFull,
                                format!("busy: {OSC_QUEUE_CAP} requests wait already; this one was dropped"),
                            ))
                        }
                        Err(TrySendError::Disconnected(_)) => return,
                    }
                }
                Err(r) => refused(r),
            }
        }
    }
}

/// Hands queued OSC requests to the control thread, one at a time, and sends each
/// reply back. A note or knob timed ahead goes at once, with its time (it plays at
/// that time's frame); a line timed ahead is held until its time.
fn osc_answer(sock: UdpSocket, shared: &Shared, queue: Receiver<Queued>) {
    let mut held: Vec<(Instant, SocketAddr, Request)> = Vec::with_capacity(OSC_QUEUE_CAP);
    let answer = |from: SocketAddr, req: Request, at: Option<Instant>| {
        let reply = shared.ask(format!("OSC {from}"), req, at);
        shared.waited(from);
        send_osc(&sock, from, reply.ok, &reply.text);
    };
    loop {
        let now = Instant::now();
        // The earliest held line that is due, in time order (then arrival).
        if let Some(i) = (0..held.len()).filter(|&i| held[i].0 <= now).min_by_key(|&i| (held[i].0, i)) {
            let (_, from, req) = held.remove(i);
            answer(from, req, None);
            continue;
        }
        let next = held.iter().map(|h| h.0).min();
        let wait = next.map_or(POLL, |t| t.saturating_duration_since(now).min(POLL));
        match queue.recv_timeout(wait) {
            Ok((from, req @ Request::Line(_), Some(at))) if at > Instant::now() => {
                if held.len() < held.capacity() {
                    held.push((at, from, req));
                } else {
                    shared.waited(from);
                    shared.stats.count(Refused::QueueFull);
                    let text = format!("busy: {OSC_QUEUE_CAP} timed requests wait already; this one was dropped");
                    send_osc(&sock, from, false, &text);
                }
            }
            Ok((from, req, at)) => answer(from, req, at),
            Err(RecvTimeoutError::Timeout) if !shared.stopping() => {}
            Err(_) => return,
        }
    }
}

fn tcp_accept(listener: TcpListener, shared: Arc<Shared>) {
    while !shared.stopping() {
        match listener.accept() {
            Ok((mut stream, peer)) => {
                let _ = stream.set_nonblocking(false);
                let _ = stream.set_write_timeout(Some(REQUEST_TIMEOUT));
                let open = &shared.stats.connections_open;
                if open.load(Relaxed) >= MAX_CONNECTIONS {
                    shared.stats.connections_refused.fetch_add(1, Relaxed);
                    let text = format!("error: too many connections (at most {MAX_CONNECTIONS}); try again later");
                    let _ = write_reply(&mut stream, &text);
                    continue;
                }
                open.fetch_add(1, Relaxed);
                let shared = shared.clone();
                let spawned = std::thread::Builder::new().name("jamrig-tcp-conn".into()).spawn({
                    let shared = shared.clone();
                    move || {
                        tcp_connection(stream, peer, &shared);
                        shared.stats.connections_open.fetch_sub(1, Relaxed);
                    }
                });
                if spawned.is_err() {
                    shared.stats.connections_open.fetch_sub(1, Relaxed);
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => std::thread::sleep(POLL / 5),
            Err(_) => std::thread::sleep(POLL),
        }
    }
}

/// Writes a reply: its lines (an empty one sent as a space), then an empty line.
fn write_reply(stream: &mut TcpStream, text: &str) -> std::io::Result<()> {
    let mut out = String::with_capacity(text.len() + 2);
    for line in text.trim_end().lines() {
        out.push_str(if line.is_empty() { " " } else { line });
        out.push('\n');
    }
    out.push('\n');
    stream.write_all(out.as_bytes())
}

/// Serves one TCP connection: reads requests, one at a time, and writes each reply.
fn tcp_connection(mut stream: TcpStream, peer: SocketAddr, shared: &Shared) {
    let _ = stream.set_read_timeout(Some(POLL));
    let _ = stream.set_nodelay(true);
    let mut reader = LineReader::default();
    let mut authed = shared.token.is_none();
    let mut last = Instant::now();
    let mut started: Option<Instant> = None;
    let mut chunk = [0u8; 4096];
    let mut items = Vec::new();
    while !shared.stopping() {
        match stream.read(&mut chunk) {
            Ok(0) => return,
            Ok(n) => {
                last = Instant::now();
                let was_pending = reader.pending();
                reader.feed(&chunk[..n], &mut items);
                // A request that began in these bytes is timed from now.
                if reader.pending() && (!was_pending || !items.is_empty()) {
                    started = Some(last);
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted) => {}
            Err(_) => return,
        }
        for item in items.drain(..) {
            let text = match item {
                Item::Refused(r) => {
                    shared.stats.count(r.kind);
                    format!("error: {}", r.text)
                }
                Item::Request(line) if line.trim_start().starts_with(":token") => {
                    let given = line.split_whitespace().nth(1).unwrap_or("");
                    match &shared.token {
                        Some(t) if same_token(given, t) => {
                            authed = true;
                            "token accepted".to_string()
                        }
                        Some(_) => {
                            shared.stats.count(Refused::BadToken);
                            let _ = write_reply(&mut stream, "error: wrong token; closing the connection");
                            return;
                        }
                        None => "this port takes no token".to_string(),
                    }
                }
                Item::Request(_) if !authed => {
                    shared.stats.count(Refused::BadToken);
                    let _ = write_reply(
                        &mut stream,
                        "error: this port needs `:token TOKEN` (--listen-token) as the first line; closing the connection",
                    );
                    return;
                }
                Item::Request(line) if !shared.allow(peer, line.len()) => {
                    format!(
                        "error: too many requests (at most {RATE_PER_SECOND} a second, a request counting once more for each {RATE_BYTES_PER_REQUEST} bytes); this one was dropped"
                    )
                }
                Item::Request(line) => match check_line(&line) {
                    Err(r) => {
                        shared.stats.count(r.kind);
                        format!("error: {}", r.text)
                    }
                    Ok(()) => shared.ask(format!("TCP {peer}"), Request::Line(line), None).text,
                },
            };
            if write_reply(&mut stream, &text).is_err() {
                return;
            }
        }
        if !reader.pending() {
            started = None;
        }
        let now = Instant::now();
        if started.is_some_and(|s| now.duration_since(s) > REQUEST_TIMEOUT) {
            shared.stats.timed_out.fetch_add(1, Relaxed);
            let text = format!(
                "error: a request must arrive whole within {} s of its first byte; closing the connection",
                REQUEST_TIMEOUT.as_secs()
            );
            let _ = write_reply(&mut stream, &text);
            return;
        }
        if started.is_none() && now.duration_since(last) > IDLE_TIMEOUT {
            shared.stats.timed_out.fetch_add(1, Relaxed);
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(addr: &str, args: Vec<OscType>) -> OscMessage {
        OscMessage { addr: addr.into(), args }
    }

    fn packet(addr: &str, args: Vec<OscType>) -> Vec<u8> {
        rosc::encoder::encode(&OscPacket::Message(msg(addr, args))).unwrap()
    }

    fn s(v: &str) -> OscType {
        OscType::String(v.into())
    }

    fn request(addr: &str, args: Vec<OscType>) -> Result<Request, Refusal> {
        let m = osc_messages(&packet(addr, args))?;
        assert_eq!(m.len(), 1);
        osc_request(&m[0], None)
    }

    fn line(l: &str) -> Result<Request, Refusal> {
        Ok(Request::Line(l.into()))
    }

    #[test]
    fn osc_messages_become_repl_lines_and_notes() {
        assert_eq!(request("/jamrig/eval", vec![s("ch(1).volume = 0.5")]), line("ch(1).volume = 0.5"));
        assert_eq!(request("/jamrig/eval", vec![s(":status")]), line(":status"));
        let param = |ch, name, v| request("/jamrig/param", vec![ch, s(name), v]);
        let knob = |channel, param, value| Ok(Request::Param { channel, param, value });
        assert_eq!(param(OscType::Int(2), "lowpass", OscType::Float(900.0)), knob(2, Param::Lowpass, 900.0));
        assert_eq!(param(OscType::Float(2.0), "lowpass", OscType::Double(0.0)), knob(2, Param::Lowpass, 0.0));
        assert_eq!(param(OscType::Long(16), "pan", OscType::Int(-1)), knob(16, Param::Pan, -1.0));
        assert_eq!(
            request("/jamrig/note", vec![OscType::Int(3), OscType::Int(60), OscType::Int(100), OscType::Float(0.5)]),
            Ok(Request::Note { channel: 3, note: 60, velocity: 100, beats: 0.5 })
        );
        assert_eq!(request("/jamrig/tempo", vec![]), line(":tempo"));
        assert_eq!(request("/jamrig/tempo", vec![OscType::Float(128.5)]), line(":tempo 128.5"));
        assert_eq!(request("/jamrig/tempo", vec![OscType::Int(90)]), line(":tempo 90"));
        assert_eq!(request("/jamrig/play", vec![]), line(":play"));
        assert_eq!(request("/jamrig/stop", vec![]), line(":stop"));
        assert_eq!(request("/jamrig/reload", vec![]), line(":reload"));
    }

    fn refused(r: Result<Request, Refusal>) -> (Refused, String) {
        let e = r.expect_err("refused");
        (e.kind, e.text)
    }

    #[test]
    fn wrong_osc_arguments_are_refused_with_their_usage() {
        let (k, t) = refused(request("/jamrig/eval", vec![OscType::Int(1)]));
        assert_eq!(k, Refused::WrongType);
        assert!(t.starts_with("/jamrig/eval takes LINE (string)"), "{t}");
        for args in [
            vec![OscType::Int(0), s("lowpass"), OscType::Float(1.0)],
            vec![OscType::Int(17), s("lowpass"), OscType::Float(1.0)],
            vec![OscType::Float(1.5), s("lowpass"), OscType::Float(1.0)],
            vec![OscType::Int(1), OscType::Int(3), OscType::Float(1.0)],
            vec![OscType::Int(1), s("lowpass"), OscType::Float(f32::NAN)],
            vec![OscType::Int(1), s("lowpass"), OscType::Double(1e12)],
            vec![OscType::Int(1), s("lowpass"), OscType::Double(5.0)],
            vec![OscType::Int(1), s("volume"), OscType::Double(1.5)],
            vec![OscType::Int(1), s("lowpass")],
        ] {
            assert_eq!(refused(request("/jamrig/param", args.clone())).0, Refused::WrongType, "{args:?}");
        }
        let (k, t) = refused(request("/jamrig/param", vec![OscType::Int(1), s("lowpas"), OscType::Int(3)]));
        assert_eq!(k, Refused::WrongType);
        assert_eq!(t, "/jamrig/param: unknown parameter lowpas (did you mean lowpass?)");
        let (_, t) = refused(request("/jamrig/param", vec![OscType::Int(1), s("lowpass"), OscType::Int(3)]));
        assert_eq!(t, "/jamrig/param: lowpass is 3, outside 10..20000 Hz (0 turns it off)");
        // Names are checked, so nothing but a parameter reaches the script.
        let (k, _) = refused(request("/jamrig/param", vec![OscType::Int(1), s("volume = 0; x"), OscType::Int(3)]));
        assert_eq!(k, Refused::WrongType);
        let note = |n, v, l| request("/jamrig/note", vec![OscType::Int(1), n, v, l]);
        assert!(note(OscType::Int(128), OscType::Int(100), OscType::Float(1.0)).is_err());
        assert!(note(OscType::Int(60), OscType::Int(0), OscType::Float(1.0)).is_err());
        assert!(note(OscType::Int(60), OscType::Int(100), OscType::Float(0.0)).is_err());
        assert!(note(OscType::Int(60), OscType::Int(100), OscType::Float(65.0)).is_err());
        assert!(note(OscType::Int(60), OscType::Int(100), s("1")).is_err());
        assert_eq!(refused(request("/jamrig/play", vec![OscType::Int(1)])).0, Refused::WrongType);
        assert_eq!(refused(request("/jamrig/tempo", vec![s("fast")])).0, Refused::WrongType);
        let (k, t) = refused(request("/jamrig/quit", vec![]));
        assert_eq!(k, Refused::UnknownAddress);
        assert!(t.starts_with("unknown address /jamrig/quit: the port takes /jamrig/eval"), "{t}");
    }

    #[test]
    fn bad_and_oversized_packets_are_refused() {
        assert_eq!(osc_messages(b"").unwrap_err().kind, Refused::BadPacket);
        assert_eq!(osc_messages(b"ch(1).volume = 0.5\n").unwrap_err().kind, Refused::BadPacket);
        let big = packet("/jamrig/eval", vec![s(&"x".repeat(MAX_PACKET_BYTES))]);
        assert_eq!(osc_messages(&big).unwrap_err().kind, Refused::Oversized);
        // A bundle is flattened in order; too many messages are refused.
        let bundle = |n: usize| {
            let content = (0..n).map(|i| OscPacket::Message(msg("/jamrig/eval", vec![s(&i.to_string())]))).collect();
            let b = OscPacket::Bundle(rosc::OscBundle { timetag: (0, 1).into(), content });
            rosc::encoder::encode(&b).unwrap()
        };
        let m = osc_messages(&bundle(3)).unwrap();
        assert_eq!(
            m.iter().map(|m| osc_request(m, None).unwrap()).collect::<Vec<_>>(),
            [Request::Line("0".into()), Request::Line("1".into()), Request::Line("2".into())]
        );
        assert_eq!(osc_messages(&bundle(MAX_BUNDLE_MESSAGES + 1)).unwrap_err().kind, Refused::Oversized);
    }

    #[test]
    fn with_a_token_every_osc_message_carries_it_first() {
        let m = msg("/jamrig/eval", vec![s("sesame-123"), s("1 + 1")]);
        assert_eq!(osc_request(&m, Some("sesame-123")), line("1 + 1"));
        for token in ["sesame-124", "sesame-12", ""] {
            assert_eq!(osc_request(&m, Some(token)).unwrap_err().kind, Refused::BadToken);
        }
        let m = msg("/jamrig/play", vec![]);
        assert_eq!(osc_request(&m, Some("sesame-123")).unwrap_err().kind, Refused::BadToken);
        let m = msg("/jamrig/play", vec![s("sesame-123")]);
        assert_eq!(osc_request(&m, Some("sesame-123")), line(":play"));
    }

    #[test]
    fn commands_that_write_files_or_open_devices_are_refused() {
        for ok in
            [":status", ":tempo 120", ":play", ":stop", ":panic", ":reload", ":help", "  :log on", "ch(1).volume = 1"]
        {
            assert_eq!(check_line(ok), Ok(()), "{ok}");
        }
        for bad in [":save /tmp/x.rhai", ":load /etc/passwd", ":rec save x.mid", ":port 1", ":quit", ":q", ":keys", ":"]
        {
            let r = check_line(bad).unwrap_err();
            assert_eq!(r.kind, Refused::Command, "{bad}");
            assert!(r.text.contains("type it in jamrig's REPL"), "{}", r.text);
        }
        assert_eq!(check_line(&"1".repeat(MAX_BLOCK_BYTES + 1)).unwrap_err().kind, Refused::Oversized);
    }

    fn feed(reader: &mut LineReader, bytes: &[u8]) -> Vec<Item> {
        let mut out = Vec::new();
        reader.feed(bytes, &mut out);
        out
    }

    fn req(l: &str) -> Item {
        Item::Request(l.into())
    }

    #[test]
    fn the_line_protocol_takes_lines_and_blocks() {
        let mut r = LineReader::default();
        assert_eq!(feed(&mut r, b"ch(1).volume = 0.5\r\n\n:status\n"), [req("ch(1).volume = 0.5"), req(":status")]);
        assert!(!r.pending());
        // A line in pieces.
        assert_eq!(feed(&mut r, b"tem"), []);
        assert!(r.pending());
        assert_eq!(feed(&mut r, b"po(99);\n:{\nlet x = 3;\n"), [req("tempo(99);")]);
        assert!(r.pending(), "inside a block");
        assert_eq!(
            feed(&mut r, b"\nch(1).volume = x / 10.0;\r\n :} \n"),
            [req("let x = 3;\n\nch(1).volume = x / 10.0;")]
        );
        assert!(!r.pending());
        let e = feed(&mut r, b":}\n\xff\xfe\n");
        assert!(
            matches!(&e[..], [Item::Refused(a), Item::Refused(b)] if a.kind == Refused::BadPacket && b.kind == Refused::BadPacket),
            "{e:?}"
        );
    }

    #[test]
    fn the_line_protocol_refuses_what_is_too_long_and_goes_on() {
        let mut r = LineReader::default();
        let long = vec![b'x'; MAX_LINE_BYTES + 1];
        // Too long before its end arrives: refused once, the rest skipped.
        let e = feed(&mut r, &long);
        assert!(matches!(&e[..], [Item::Refused(a)] if a.kind == Refused::Oversized), "{e:?}");
        assert_eq!(feed(&mut r, &long), []);
        assert_eq!(feed(&mut r, b"xx\n1 + 1\n"), [req("1 + 1")]);
        // Too long with its end in the same bytes.
        let mut bytes = long.clone();
        bytes.extend_from_slice(b"\n2\n");
        let e = feed(&mut r, &bytes);
        assert!(
            matches!(&e[..], [Item::Refused(a), Item::Request(b)] if a.kind == Refused::Oversized && b == "2"),
            "{e:?}"
        );
        // A block too large: refused once, skipped up to its end.
        let mut block = b":{\n".to_vec();
        for _ in 0..(MAX_BLOCK_BYTES / 1000 + 1) {
            block.extend_from_slice(&[b'y'; 999]);
            block.push(b'\n');
        }
        block.extend_from_slice(b":}\n3\n");
        let e = feed(&mut r, &block);
        assert!(
            matches!(&e[..], [Item::Refused(a), Item::Request(b)] if a.kind == Refused::Oversized && b == "3"),
            "{e:?}"
        );
        assert!(!r.pending());
    }

    #[test]
    fn the_rate_limit_passes_a_burst_then_the_rate() {
        let t0 = Instant::now();
        let mut rate = RateLimit::new(t0);
        let burst = (0..2 * RATE_BURST as usize).filter(|_| rate.take(t0, 10)).count();
        assert_eq!(burst, RATE_BURST as usize);
        let later = t0 + Duration::from_secs(1);
        let more = (0..2 * RATE_BURST as usize).filter(|_| rate.take(later, 0)).count();
        assert_eq!(more, RATE_PER_SECOND as usize);
        // Large requests count for their size: 50 KiB a second.
        let later = later + Duration::from_secs(1);
        let block = 4 * RATE_BYTES_PER_REQUEST - 1;
        let blocks = (0..RATE_BURST as usize).filter(|_| rate.take(later, block)).count();
        assert_eq!(blocks, RATE_PER_SECOND as usize / 4);
    }

    /// Issue 18: the rate limit is per sender, so one flooding sender does not
    /// starve another; all senders together meet a larger one.
    #[test]
    fn each_sender_has_its_own_rate_and_all_share_a_larger_one() {
        let t0 = Instant::now();
        let mut rates = Rates::new(t0);
        let a: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:5001".parse().unwrap();
        let flood = (0..3000).filter(|_| rates.take(a, t0, 10)).count();
        assert_eq!(flood, RATE_BURST as usize);
        // The other sender still has its whole burst.
        assert_eq!((0..100).filter(|_| rates.take(b, t0, 10)).count(), 100);
        // Many senders at once meet everyone's bucket.
        let mut rates = Rates::new(t0);
        let taken = (0..MAX_RATE_SENDERS as u16)
            .map(|i| SocketAddr::from(([127, 0, 0, 1], 6000 + i)))
            .map(|from| (0..RATE_BURST as usize).filter(|_| rates.take(from, t0, 0)).count())
            .sum::<usize>();
        assert_eq!(taken, ALL_RATE_BURST as usize);
        assert!(rates.senders() <= MAX_RATE_SENDERS);
        // Senders beyond the most tracked replace the one idle longest.
        let later = t0 + Duration::from_secs(10);
        assert!(rates.take(SocketAddr::from(([127, 0, 0, 2], 1)), later, 0));
        assert_eq!(rates.senders(), MAX_RATE_SENDERS);
    }

    fn bundle_at(tag: OscTime, addr: &str) -> Vec<u8> {
        let b =
            OscPacket::Bundle(rosc::OscBundle { timetag: tag, content: vec![OscPacket::Message(msg(addr, vec![]))] });
        rosc::encoder::encode(&b).unwrap()
    }

    /// Issue 18: an OSC bundle's time tag says when its messages run: "immediately"
    /// or a time past at once, a time ahead after that long, a time too far ahead is
    /// refused; a nested bundle has its own time.
    #[test]
    fn bundle_time_tags_say_when_their_messages_run() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_750_000_000);
        let tag = |d: f64| OscTime::try_from(now + Duration::from_secs_f64(d)).unwrap();
        let past = OscTime::try_from(now - Duration::from_secs(3)).unwrap();
        let when = |p: &[u8]| osc_timed(p, now).map(|v| v.into_iter().map(|(d, _)| d).collect::<Vec<_>>());
        assert_eq!(when(&bundle_at((0, 1).into(), "/jamrig/play")), Ok(vec![None]));
        assert_eq!(when(&bundle_at(past, "/jamrig/play")), Ok(vec![None]));
        assert_eq!(when(&bundle_at((0, 0).into(), "/jamrig/play")), Ok(vec![None]));
        let d = when(&bundle_at(tag(1.5), "/jamrig/play")).unwrap()[0].unwrap();
        assert!((d.as_secs_f64() - 1.5).abs() < 1e-6, "{d:?}");
        assert_eq!(when(&packet("/jamrig/play", vec![])), Ok(vec![None]));
        let e = osc_timed(&bundle_at(tag(3600.0), "/jamrig/play"), now).unwrap_err();
        assert_eq!(e.kind, Refused::WrongType);
        assert_eq!(e.text, "a bundle timed 3600 s ahead is refused (at most 60 s ahead; check the sender's clock)");
        // A bundle timed ahead holding one timed further ahead and a message.
        let inner = OscPacket::Bundle(rosc::OscBundle {
            timetag: tag(2.0),
            content: vec![OscPacket::Message(msg("/jamrig/stop", vec![]))],
        });
        let outer = OscPacket::Bundle(rosc::OscBundle {
            timetag: tag(1.0),
            content: vec![inner, OscPacket::Message(msg("/jamrig/play", vec![]))],
        });
        let v = osc_timed(&rosc::encoder::encode(&outer).unwrap(), now).unwrap();
        let got: Vec<(String, u64)> = v.iter().map(|(d, m)| (m.addr.clone(), d.unwrap().as_millis() as u64)).collect();
        assert_eq!(got, [("/jamrig/stop".to_string(), 2000), ("/jamrig/play".to_string(), 1000)]);
    }

    #[test]
    fn listen_addresses_are_loopback_unless_given_and_need_a_token_beyond() {
        assert_eq!(parse_addr("9000").unwrap(), "127.0.0.1:9000".parse().unwrap());
        assert_eq!(parse_addr("[::1]:9000").unwrap(), "[::1]:9000".parse().unwrap());
        assert!(parse_addr("localhost").unwrap_err().contains("is not [ADDR:]PORT"));
        assert!(ListenOptions::new(parse_addr("9000").unwrap(), None).is_ok());
        let lan = parse_addr("0.0.0.0:9000").unwrap();
        let e = ListenOptions::new(lan, None).unwrap_err();
        assert!(e.contains("give --listen-token TOKEN"), "{e}");
        assert!(ListenOptions::new(lan, Some("sesame-123".into())).is_ok());
        assert!(ListenOptions::new(lan, Some("short".into())).unwrap_err().contains("at least 8"));
        assert!(ListenOptions::new(lan, Some("two words".into())).is_err());
    }

    #[test]
    fn a_note_is_a_note_on_now_and_its_note_off_beats_later() {
        use crate::engine::event::{Event, EventKind};
        let n = Request::Note { channel: 2, note: 60, velocity: 90, beats: 0.5 };
        assert_eq!(
            n.note_events(1000, 120.0, 48000.0),
            Some([
                Event::new(1000, EventKind::NoteOn { channel: 1, note: 60, velocity: 90 }),
                Event::new(13_000, EventKind::NoteOff { channel: 1, note: 60 }),
            ])
        );
        assert_eq!(Request::Line("1".into()).note_events(0, 120.0, 48000.0), None);
        let k = Request::Param { channel: 3, param: Param::Lowpass, value: 900.0 };
        assert_eq!(
            k.param_event(77),
            Some(Event::new(77, EventKind::Param { channel: 2, param: Param::Lowpass as u8, value: 900.0 }))
        );
        assert_eq!(k.describe(), "knob ch3 lowpass 900");
    }

    /// Mutated packets and lines (bytes flipped, cut, repeated, spliced), seeded:
    /// the parsers refuse or take them, never panic, and keep to their bounds.
    #[test]
    fn fuzzed_packets_and_lines_never_panic() {
        use rand::RngExt;
        let mut rng = rand_pcg::Pcg32::new(18, 0);
        let seeds = [
            packet("/jamrig/eval", vec![s("ch(1).volume = 0.5")]),
            packet("/jamrig/param", vec![OscType::Int(2), s("lowpass"), OscType::Float(900.0)]),
            packet("/jamrig/note", vec![OscType::Int(1), OscType::Int(60), OscType::Int(100), OscType::Float(1.0)]),
            packet("/jamrig/tempo", vec![OscType::Double(120.0)]),
            rosc::encoder::encode(&OscPacket::Bundle(rosc::OscBundle {
                timetag: (0, 1).into(),
                content: vec![OscPacket::Message(msg("/jamrig/play", vec![]))],
            }))
            .unwrap(),
        ];
        let mut taken = 0;
        for i in 0..20_000 {
            let mut p = seeds[i % seeds.len()].clone();
            for _ in 0..rng.random_range(1..6) {
                match rng.random_range(0..4) {
                    0 if !p.is_empty() => {
                        let at = rng.random_range(0..p.len());
                        p[at] ^= 1 << rng.random_range(0..8);
                    }
                    1 if !p.is_empty() => {
                        let at = rng.random_range(0..p.len());
                        p.truncate(at);
                    }
                    2 => {
                        let at = rng.random_range(0..=p.len());
                        p.insert(at, rng.random());
                    }
                    _ => {
                        let other = &seeds[rng.random_range(0..seeds.len())];
                        let from = rng.random_range(0..other.len());
                        p.extend_from_slice(&other[from..]);
                    }
                }
            }
            if let Ok(msgs) = osc_messages(&p) {
                assert!(msgs.len() <= MAX_BUNDLE_MESSAGES);
                for m in &msgs {
                    if let Ok(r) = osc_request(m, None) {
                        taken += 1;
                        if let Request::Line(l) = &r {
                            assert!(check_line(l).is_ok());
                        }
                    }
                    let _ = osc_request(m, Some("sesame-123"));
                }
            }
            let mut reader = LineReader::default();
            let mut out = Vec::new();
            reader.feed(&p, &mut out);
            reader.feed(b"\n", &mut out);
            for item in &out {
                if let Item::Request(l) = item {
                    assert!(l.len() <= MAX_BLOCK_BYTES);
                }
            }
        }
        assert!(taken > 100, "the mutations left some packets valid ({taken})");
    }
}
