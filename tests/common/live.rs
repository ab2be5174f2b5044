//! Helpers for the live-host tests (`tests/live.rs` only): a JACK server on the
//! dummy backend, `jamrig play` as a child process whose output lines are
//! collected with their arrival times, and a probe JACK client that sends MIDI
//! (at exact JACK frame times) and records what jamrig plays: its audio, and the
//! MIDI its output port (`jamrig:out`) sends, each message with its JACK frame time.
//!
//! Every guard cleans up on drop, panics included: the probe client is closed,
//! jamrig is killed, the server is stopped. On a panic the guards print what
//! jamrig and jackd wrote, to explain the failure.
#![allow(dead_code)]

use std::ffi::{CString, c_char};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

pub const SAMPLE_RATE: u32 = 48000;
pub const PERIOD: u32 = 256;

/// Serialises the tests of this binary (each runs its own server and processes,
/// and measures timing: they must not share the two cores with each other).
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// The name of the JACK server the live tests start (one at a time).
pub fn server() -> &'static str {
    static NAME: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    NAME.get_or_init(|| server_name("jamrig_live"))
}

/// `base` and a tag of this checkout: the same name on every run of one
/// checkout's tests, another for each checkout.
///
/// Not a name per run: jackd2 keeps its servers in a shared-memory registry of 8
/// slots, and a server that does not shut down cleanly (killed, or killed by
/// SIGPIPE while it notifies a client that died) keeps its slot until a server of
/// the same name starts again. Unique names per run would fill the registry for
/// every JACK user of the machine ("Too many servers already active"). So two runs
/// of one checkout's tests at the same time collide (the second fails to start its
/// server, and says so); two checkouts do not.
pub fn server_name(base: &str) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    env!("CARGO_MANIFEST_DIR").hash(&mut h);
    format!("{base}_{:04x}", h.finish() & 0xffff)
}

fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Waits for `child` to exit, up to `timeout`.
fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let t0 = Instant::now();
    loop {
        if let Ok(Some(s)) = child.try_wait() {
            return Some(s);
        }
        if t0.elapsed() >= timeout {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

// ---------------------------------------------------------------------------------
// The JACK server.

/// `jackd -n NAME -r -d dummy -r 48000 -p 256`, stopped on drop.
pub struct JackServer {
    pub name: String,
    child: Option<Child>,
    dir: tempfile::TempDir,
    starts: usize,
    period: u32,
}

impl JackServer {
    pub fn start(name: &str) -> JackServer {
        JackServer::start_with_period(name, PERIOD)
    }

    /// A server whose cycles are `period` frames. The name gets the test process's
    /// id, so that runs of the suite from two checkouts never share a server.
    pub fn start_with_period(name: &str, period: u32) -> JackServer {
        let mut s = JackServer {
            name: format!("{name}_{}", std::process::id()),
            child: None,
            dir: tempfile::tempdir().expect("temp dir"),
            starts: 0,
            period,
        };
        s.restart();
        s
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join(format!("jackd.{}.log", self.starts))
    }

    /// Starts the server (again, after [`JackServer::kill`]) and waits until it answers.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "the server is running");
        self.starts += 1;
        let log = std::fs::File::create(self.log_path()).expect("jackd log");
        let child = Command::new("jackd")
            .args([
                "-n",
                &self.name,
                "-r",
                "-d",
                "dummy",
                "-r",
                &SAMPLE_RATE.to_string(),
                "-p",
                &self.period.to_string(),
            ])
            .env("JACK_NO_AUDIO_RESERVATION", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("jackd log"))
            .stderr(log)
            .spawn()
            .expect("jackd starts (is jackd2 installed?)");
        self.child = Some(child);
        let ok = Command::new("jack_wait")
            .args(["-s", &self.name, "-w", "-t", "10"])
            .env("JACK_NO_AUDIO_RESERVATION", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "jackd {} did not come up within 10 s:\n{}", self.name, self.log());
        // jack_wait also succeeds on a server of that name that is not ours (another run).
        std::thread::sleep(Duration::from_millis(100));
        let exited = self.child.as_mut().unwrap().try_wait().ok().flatten();
        if let Some(status) = exited {
            self.child = None;
            panic!("jackd {} exited ({status}): is another run of these tests using it?\n{}", self.name, self.log());
        }
    }

    /// Kills the server with `sig` ("KILL", "TERM") and waits for it to exit: the
    /// audio device goes away.
    pub fn kill(&mut self, sig: &str) {
        if let Some(mut c) = self.child.take() {
            signal(c.id(), sig);
            if wait_timeout(&mut c, Duration::from_secs(10)).is_none() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }
}

impl Drop for JackServer {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("---- jackd {} log ----\n{}", self.name, self.log());
        }
        self.kill("TERM");
    }
}

// ---------------------------------------------------------------------------------
// Output lines of a child process, with the instant each arrived.

#[derive(Default)]
struct LinesInner {
    lines: Vec<(Instant, String)>,
    closed: bool,
}

#[derive(Clone, Default)]
pub struct Lines(Arc<(Mutex<LinesInner>, Condvar)>);

impl Lines {
    fn read_from(r: impl Read + Send + 'static) -> Lines {
        let lines = Lines::default();
        let l = lines.clone();
        std::thread::spawn(move || {
            let mut r = BufReader::new(r);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match r.read_until(b'\n', &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let text = String::from_utf8_lossy(&buf).trim_end_matches(['\n', '\r']).to_string();
                        let (m, cv) = &*l.0;
                        m.lock().unwrap().lines.push((Instant::now(), text));
                        cv.notify_all();
                    }
                }
            }
            let (m, cv) = &*l.0;
            m.lock().unwrap().closed = true;
            cv.notify_all();
        });
        lines
    }

    pub fn len(&self) -> usize {
        self.0.0.lock().unwrap().lines.len()
    }

    pub fn all(&self) -> Vec<String> {
        self.0.0.lock().unwrap().lines.iter().map(|(_, s)| s.clone()).collect()
    }

    pub fn text(&self) -> String {
        self.all().join("\n")
    }

    /// The first line at index `from` or later that satisfies `pred`, waiting up to
    /// `timeout` for it: (index, arrival instant, line).
    pub fn wait_for(
        &self,
        from: usize,
        timeout: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> Option<(usize, Instant, String)> {
        let deadline = Instant::now() + timeout;
        let (m, cv) = &*self.0;
        let mut g = m.lock().unwrap();
        let mut next = from;
        loop {
            while next < g.lines.len() {
                let (at, line) = &g.lines[next];
                if pred(line) {
                    return Some((next, *at, line.clone()));
                }
                next += 1;
            }
            let now = Instant::now();
            if g.closed || now >= deadline {
                return None;
            }
            g = cv.wait_timeout(g, deadline - now).unwrap().0;
        }
    }
}

// ---------------------------------------------------------------------------------
// jamrig.

/// The ALSA configuration that makes ALSA's default device the JACK server of
/// `JACK_DEFAULT_SERVER`, wired to the probe's inputs (the default build's path to
/// JACK or PipeWire).
pub const ALSA_JACK_CONF: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/alsa/jack-probe.conf");

/// `jamrig play SET ...` against a JACK server, killed on drop.
pub struct Jamrig {
    child: Mutex<Child>,
    stdin: Option<ChildStdin>,
    pub out: Lines,
    pub err: Lines,
    _data: tempfile::TempDir,
}

impl Jamrig {
    /// Starts `jamrig play set args...` with `JACK_DEFAULT_SERVER=server`; stdin is
    /// piped (the REPL reads it) unless `args` has `--no-repl`.
    pub fn start(server: &str, set: &Path, args: &[&str]) -> Jamrig {
        Jamrig::start_with_env(server, set, args, &[])
    }

    /// [`Jamrig::start`] through ALSA: ALSA's default device is the server, through
    /// ALSA's jack plugin ([`ALSA_JACK_CONF`]), wired to the probe's inputs; MIDI
    /// still comes through JACK.
    pub fn start_alsa(server: &str, set: &Path, args: &[&str]) -> Jamrig {
        let mut all = vec!["--device", "alsa:default"];
        all.extend_from_slice(args);
        Jamrig::start_with_env(server, set, &all, &[("ALSA_CONFIG_PATH", ALSA_JACK_CONF)])
    }

    /// [`Jamrig::start`] with more environment variables.
    pub fn start_with_env(server: &str, set: &Path, args: &[&str], env: &[(&str, &str)]) -> Jamrig {
        Jamrig::spawn(server, set, args, env, args.contains(&"--no-repl"))
    }

    /// [`Jamrig::start_with_env`], with stdin from `/dev/null` if `stdin_null`
    /// (else a pipe the test writes REPL lines into).
    pub fn spawn(server: &str, set: &Path, args: &[&str], env: &[(&str, &str)], stdin_null: bool) -> Jamrig {
        let data = tempfile::tempdir().expect("temp dir");
        let no_repl = stdin_null;
        let mut child = Command::new(env!("CARGO_BIN_EXE_jamrig"))
            .arg("play")
            .arg(set)
            .args(args)
            .envs(env.iter().copied())
            .env("JACK_DEFAULT_SERVER", server)
            .env("JACK_NO_AUDIO_RESERVATION", "1")
            // REPL history goes here, not into the user's home.
            .env("XDG_DATA_HOME", data.path())
            .stdin(if no_repl { Stdio::null() } else { Stdio::piped() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("jamrig starts");
        let out = Lines::read_from(child.stdout.take().unwrap());
        let err = Lines::read_from(child.stderr.take().unwrap());
        let stdin = child.stdin.take();
        Jamrig { child: Mutex::new(child), stdin, out, err, _data: data }
    }

    pub fn pid(&self) -> u32 {
        self.child.lock().unwrap().id()
    }

    /// Its exit status, if it has exited.
    pub fn exited(&self) -> Option<ExitStatus> {
        self.child.lock().unwrap().try_wait().ok().flatten()
    }

    /// Waits for the startup line (`playing ...`) and returns it.
    pub fn wait_started(&self, timeout: Duration) -> String {
        match self.out.wait_for(0, timeout, |l| l.starts_with("playing ")) {
            Some((_, _, l)) => l,
            None => panic!("jamrig did not start within {timeout:?}{}\n{}", self.state(), self.transcript()),
        }
    }

    /// A line on stdout at `from` or later that satisfies `pred`, or a panic that
    /// says what was expected and what jamrig printed.
    pub fn expect_line(
        &self,
        from: usize,
        timeout: Duration,
        what: &str,
        pred: impl Fn(&str) -> bool,
    ) -> (usize, Instant, String) {
        match self.out.wait_for(from, timeout, pred) {
            Some(x) => x,
            None => panic!("no line {what} within {timeout:?}{}\n{}", self.state(), self.transcript()),
        }
    }

    /// Writes one REPL line.
    pub fn send_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin is open");
        writeln!(stdin, "{line}").expect("write to jamrig's stdin");
        stdin.flush().expect("flush jamrig's stdin");
    }

    /// Sends `line` and waits for the first line after it that satisfies `pred`.
    pub fn command(&mut self, line: &str, timeout: Duration, pred: impl Fn(&str) -> bool) -> (usize, String) {
        let from = self.out.len();
        self.send_line(line);
        let (i, _, l) = self.expect_line(from, timeout, &format!("answering `{line}`"), pred);
        (i, l)
    }

    /// Closes stdin (end of input for the REPL).
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    pub fn signal(&self, sig: &str) {
        signal(self.pid(), sig);
    }

    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        wait_timeout(&mut self.child.lock().unwrap(), timeout)
    }

    /// Whether jamrig is still running.
    pub fn running(&self) -> bool {
        self.exited().is_none()
    }

    /// ": jamrig exited (status)" when it has, for failure messages.
    fn state(&self) -> String {
        match self.exited() {
            Some(s) => format!(": jamrig exited ({s})"),
            None => String::new(),
        }
    }

    pub fn transcript(&self) -> String {
        format!("---- jamrig stdout ----\n{}\n---- jamrig stderr ----\n{}", self.out.text(), self.err.text())
    }
}

impl Drop for Jamrig {
    fn drop(&mut self) {
        // A clean stop first: a JACK client that just dies makes jackd's own
        // shutdown die of SIGPIPE later (and leak its registry slot).
        self.stdin = None;
        let child = self.child.get_mut().unwrap_or_else(|p| p.into_inner());
        if matches!(child.try_wait(), Ok(None)) {
            signal(child.id(), "TERM");
            if wait_timeout(child, Duration::from_secs(3)).is_none() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        if std::thread::panicking() {
            // Give the reader threads a moment to collect the last lines.
            std::thread::sleep(Duration::from_millis(50));
            eprintln!("{}", self.transcript());
        }
    }
}

// ---------------------------------------------------------------------------------
// The probe: a JACK client with a MIDI out port, a MIDI in port and two audio in
// ports.

pub const PROBE_CLIENT: &str = "probe";
pub const PROBE_MIDI: &str = "probe_midi";
/// The probe's MIDI input (what jamrig's MIDI output is connected to).
pub const PROBE_MIDI_IN: &str = "midi_in";
/// A MIDI message the probe received: its JACK frame time and its bytes.
#[derive(Clone, Copy)]
struct RawReceived {
    frame: u32,
    bytes: [u8; 3],
    len: u8,
}

/// A MIDI message the probe received, at its JACK frame time.
#[derive(Clone, Debug, PartialEq)]
pub struct Received {
    pub frame: u32,
    pub bytes: Vec<u8>,
}
const MAX_MSG: usize = 32;
const MAX_PENDING: usize = 256;

#[derive(Clone, Copy)]
struct MidiMsg {
    /// Frames after the start of the cycle that picks the batch up.
    delay: u32,
    bytes: [u8; MAX_MSG],
    len: usize,
}

struct Proc {
    midi: jack::Port<jack::MidiOut>,
    midi_in: jack::Port<jack::MidiIn>,
    /// What the MIDI input received (frame time, message).
    received: rtrb::Producer<RawReceived>,
    in_l: jack::Port<jack::AudioIn>,
    in_r: jack::Port<jack::AudioIn>,
    /// Batches from the test thread (taken whole, so a batch's delays share a cycle).
    inbox: Arc<Mutex<Vec<MidiMsg>>>,
    /// (due frame time, message), sorted by due time.
    pending: Vec<(u32, MidiMsg)>,
    /// Frame times at which messages were written.
    sent: rtrb::Producer<u32>,
    /// The built-in MIDI clock: frames per tick (f64 bits; 0 = off), the next
    /// tick's frame time (fractional) as (the cycle it was reckoned from, frames
    /// after that cycle's start), and the frame times ticks were written.
    clock_period: Arc<AtomicU64>,
    clock_next: Option<(u32, f64)>,
    ticks_sent: rtrb::Producer<u32>,
    /// This cycle's messages, put in time order before writing.
    out: Vec<(u32, MidiMsg, bool)>,
    rec: rtrb::Producer<[f32; 2]>,
    rec_req: Arc<AtomicU64>,
    rec_start: Arc<AtomicU32>,
    rec_left: u64,
    cycles: Arc<AtomicU64>,
    /// Milliseconds the next cycle sleeps (0: none), to force an overrun.
    stall_ms: Arc<AtomicU32>,
}

impl jack::ProcessHandler for Proc {
    fn process(&mut self, _: &jack::Client, ps: &jack::ProcessScope) -> jack::Control {
        let n = ps.n_frames();
        let t0 = ps.last_frame_time();
        for ev in self.midi_in.iter(ps) {
            let mut bytes = [0u8; 3];
            let len = ev.bytes.len().min(3);
            bytes[..len].copy_from_slice(&ev.bytes[..len]);
            let _ = self.received.push(RawReceived { frame: t0.wrapping_add(ev.time), bytes, len: len as u8 });
        }
        let stall = self.stall_ms.swap(0, Ordering::AcqRel);
        if stall > 0 {
            std::thread::sleep(Duration::from_millis(stall as u64));
        }
        if let Ok(mut inbox) = self.inbox.try_lock() {
            for m in inbox.drain(..) {
                if self.pending.len() < MAX_PENDING {
                    let due = t0.wrapping_add(m.delay);
                    // Insert after every message due at or before it (keeps batch order).
                    let at = self
                        .pending
                        .iter()
                        .position(|(d, _)| (d.wrapping_sub(due) as i32) > 0)
                        .unwrap_or(self.pending.len());
                    self.pending.insert(at, (due, m));
                }
            }
        }
        self.out.clear();
        let mut i = 0;
        while i < self.pending.len() {
            let (due, m) = self.pending[i];
            let d = due.wrapping_sub(t0) as i32;
            if d < n as i32 {
                self.out.push((d.max(0) as u32, m, false));
                self.pending.remove(i);
            } else {
                i += 1;
            }
        }
        let period = f64::from_bits(self.clock_period.load(Ordering::Acquire));
        if period > 0.0 {
            // Frame times as f64 relative to this cycle (JACK's u32 frame time wraps).
            // The clock keeps its own time, as a device does: ticks due in cycles the
            // server skipped go out late, at the start of this one.
            let mut at = match self.clock_next {
                Some((cycle, rel)) => rel - t0.wrapping_sub(cycle) as f64,
                None => 0.0,
            };
            let mut tick = [0u8; MAX_MSG];
            tick[0] = 0xF8;
            while at < n as f64 {
                self.out.push((at.max(0.0).round() as u32, MidiMsg { delay: 0, bytes: tick, len: 1 }, true));
                // The tick's own time (before this cycle if it goes out late).
                let _ = self.ticks_sent.push(t0.wrapping_add_signed(at.round() as i32));
                at += period;
            }
            self.clock_next = Some((t0, at));
        } else {
            self.clock_next = None;
        }
        // At one offset, ticks first: a tick due before a message (Start) goes out
        // before it even when both go out late, at the start of the cycle.
        self.out.sort_by_key(|(offset, _, is_tick)| (*offset, !*is_tick));
        let mut w = self.midi.writer(ps);
        for (offset, m, is_tick) in self.out.iter() {
            let offset = (*offset).min(n - 1);
            if m.len > 0 {
                let _ = w.write(&jack::RawMidi { time: offset, bytes: &m.bytes[..m.len] });
            }
            if !*is_tick {
                let _ = self.sent.push(t0.wrapping_add(offset));
            }
        }
        if self.rec_left == 0 {
            let req = self.rec_req.swap(0, Ordering::AcqRel);
            if req > 0 {
                self.rec_left = req;
                self.rec_start.store(t0, Ordering::Release);
            }
        }
        if self.rec_left > 0 {
            let (l, r) = (self.in_l.as_slice(ps), self.in_r.as_slice(ps));
            let k = (n as u64).min(self.rec_left) as usize;
            for j in 0..k {
                let _ = self.rec.push([l[j], r[j]]);
            }
            self.rec_left -= k as u64;
        }
        self.cycles.fetch_add(1, Ordering::Release);
        jack::Control::Continue
    }
}

/// A stereo capture: `start` is the JACK frame time of its first frame.
pub struct Capture {
    pub left: Vec<f32>,
    pub right: Vec<f32>,
    pub start: u32,
}

impl Capture {
    pub fn mono(&self) -> Vec<f32> {
        self.left.iter().zip(&self.right).map(|(l, r)| 0.5 * (l + r)).collect()
    }

    /// Frames `[from_s, to_s)` seconds into the capture, mono.
    pub fn mono_range(&self, from_s: f64, to_s: f64) -> Vec<f32> {
        let m = self.mono();
        let a = ((from_s * SAMPLE_RATE as f64) as usize).min(m.len());
        let b = ((to_s * SAMPLE_RATE as f64) as usize).min(m.len());
        m[a..b].to_vec()
    }
}

pub struct Probe {
    client: Option<jack::AsyncClient<(), Proc>>,
    received: rtrb::Consumer<RawReceived>,
    /// The probe's MIDI input port (full name).
    pub midi_in_port: String,
    inbox: Arc<Mutex<Vec<MidiMsg>>>,
    sent: rtrb::Consumer<u32>,
    clock_period: Arc<AtomicU64>,
    ticks_sent: rtrb::Consumer<u32>,
    rec: rtrb::Consumer<[f32; 2]>,
    rec_req: Arc<AtomicU64>,
    rec_start: Arc<AtomicU32>,
    cycles: Arc<AtomicU64>,
    stall_ms: Arc<AtomicU32>,
    pub midi_port: String,
    pub inputs: [String; 2],
}

/// Connects jamrig's audio outputs (`jamrig:out_0/1`) to `inputs`,
/// waiting up to `timeout` for them to exist. Returns jamrig's left output port.
fn connect_jamrig_outputs(client: &jack::Client, inputs: &[String], timeout: Duration) -> String {
    let t0 = Instant::now();
    loop {
        let outs = client.ports(Some("^jamrig:out_[01]$"), Some("audio"), jack::PortFlags::IS_OUTPUT);
        let l = outs.iter().find(|p| p.ends_with(":out_0"));
        let r = outs.iter().find(|p| p.ends_with(":out_1"));
        if let (Some(l), Some(r)) = (l, r) {
            client.connect_ports_by_name(l, &inputs[0]).expect("connect out_0");
            client.connect_ports_by_name(r, &inputs[1]).expect("connect out_1");
            return l.clone();
        }
        if t0.elapsed() >= timeout {
            let all = client.ports(Some(".*"), None, jack::PortFlags::empty());
            panic!("jamrig's audio ports do not appear; ports: {all:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Polls `f` until it gives `Some`, up to `timeout`.
pub fn wait_for<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let t0 = Instant::now();
    loop {
        if let Some(x) = f() {
            return Some(x);
        }
        if t0.elapsed() >= timeout {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Opens a JACK client on the server `server` (jack's `Client::new` has no way to
/// name the server: `jack_client_open` is variadic).
pub fn open_client(server: &str, name: &str) -> Result<jack::Client, String> {
    use jack::jack_sys as j;
    type Open =
        unsafe extern "C" fn(*const c_char, j::jack_options_t, *mut j::jack_status_t, ...) -> *mut j::jack_client_t;
    let lib = j::library().map_err(|e| format!("libjack: {e}"))?;
    let open: Open = unsafe { *lib.get::<Open>(b"jack_client_open\0").map_err(|e| format!("jack_client_open: {e}"))? };
    let (cname, sname) = (CString::new(name).unwrap(), CString::new(server).unwrap());
    let mut status: j::jack_status_t = 0;
    let p = unsafe {
        open(
            cname.as_ptr(),
            j::JackNoStartServer | j::JackServerName | j::JackUseExactName,
            &mut status,
            sname.as_ptr(),
        )
    };
    if p.is_null() {
        return Err(format!("cannot open a JACK client on {server} (status {status:#x})"));
    }
    Ok(unsafe { jack::Client::from_raw(p) })
}

impl Probe {
    /// Opens the probe on `server`: `probe:probe_midi` (MIDI out), `probe:in_l` and
    /// `probe:in_r` (audio in), and activates it.
    pub fn open(server: &str) -> Probe {
        Probe::open_as(server, PROBE_CLIENT, PROBE_MIDI)
    }

    /// A probe of another name (client `client`, MIDI port `midi_port`), e.g. one
    /// that listens while the first goes away.
    pub fn open_as(server: &str, client: &str, midi_port: &str) -> Probe {
        let client = open_client(server, client).unwrap_or_else(|e| panic!("{e}"));
        jack::set_logger(jack::LoggerType::None);
        assert_eq!(client.sample_rate(), SAMPLE_RATE);
        let midi = client.register_port(midi_port, jack::MidiOut::default()).expect("MIDI port");
        let midi_in = client.register_port(PROBE_MIDI_IN, jack::MidiIn::default()).expect("MIDI in port");
        let midi_in_port = midi_in.name().unwrap();
        let (received_p, received) = rtrb::RingBuffer::new(1 << 16);
        let in_l = client.register_port("in_l", jack::AudioIn::default()).expect("audio port");
        let in_r = client.register_port("in_r", jack::AudioIn::default()).expect("audio port");
        let midi_port = midi.name().unwrap();
        let inputs = [in_l.name().unwrap(), in_r.name().unwrap()];
        let inbox = Arc::new(Mutex::new(Vec::with_capacity(MAX_PENDING)));
        let (sent_p, sent) = rtrb::RingBuffer::new(4096);
        let (ticks_p, ticks_sent) = rtrb::RingBuffer::new(1 << 16);
        let clock_period = Arc::new(AtomicU64::new(0));
        let (rec_p, rec) = rtrb::RingBuffer::new(SAMPLE_RATE as usize * 30);
        let rec_req = Arc::new(AtomicU64::new(0));
        let rec_start = Arc::new(AtomicU32::new(0));
        let cycles = Arc::new(AtomicU64::new(0));
        let stall_ms = Arc::new(AtomicU32::new(0));
        let proc_ = Proc {
            midi,
            midi_in,
            received: received_p,
            in_l,
            in_r,
            inbox: inbox.clone(),
            pending: Vec::with_capacity(MAX_PENDING),
            sent: sent_p,
            clock_period: clock_period.clone(),
            clock_next: None,
            ticks_sent: ticks_p,
            out: Vec::with_capacity(4 * MAX_PENDING),
            rec: rec_p,
            rec_req: rec_req.clone(),
            rec_start: rec_start.clone(),
            rec_left: 0,
            cycles: cycles.clone(),
            stall_ms: stall_ms.clone(),
        };
        let client = client.activate_async((), proc_).expect("the probe activates");
        let p = Probe {
            client: Some(client),
            received,
            midi_in_port,
            inbox,
            sent,
            clock_period,
            ticks_sent,
            rec,
            rec_req,
            rec_start,
            cycles,
            stall_ms,
            midi_port,
            inputs,
        };
        p.wait_cycles(2, Duration::from_secs(5));
        p
    }

    fn client(&self) -> &jack::Client {
        self.client.as_ref().expect("open").as_client()
    }

    /// Waits until the process callback has run `n` more times.
    pub fn wait_cycles(&self, n: u64, timeout: Duration) {
        let start = self.cycles.load(Ordering::Acquire);
        let t0 = Instant::now();
        while self.cycles.load(Ordering::Acquire) < start + n {
            assert!(t0.elapsed() < timeout, "the probe's process callback does not run");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Makes the next process cycle take `ms` milliseconds longer: the server
    /// overruns (an XRun in its log) and skips cycles, as on a busy machine.
    pub fn stall(&self, ms: u32) {
        self.stall_ms.store(ms, Ordering::Release);
    }

    /// The server's frame time now (an estimate between cycles), on the same
    /// line as [`Capture::start`].
    pub fn frame_time(&self) -> u32 {
        self.client().frame_time()
    }

    /// Ports matching a JACK port-name regex.
    pub fn ports(&self, pattern: &str) -> Vec<String> {
        self.client().ports(Some(pattern), None, jack::PortFlags::empty())
    }

    /// Connects jamrig's audio outputs (`jamrig:out_0/1`) to the probe's
    /// inputs, waiting up to `timeout` for them to exist. Returns jamrig's client name.
    pub fn connect_jamrig_audio(&self, timeout: Duration) -> String {
        let l = connect_jamrig_outputs(self.client(), &self.inputs, timeout);
        self.wait_cycles(2, Duration::from_secs(5));
        l.split(':').next().unwrap().to_string()
    }

    /// Connects the probe's MIDI port to `port` (an input port of another client).
    pub fn connect_midi_to(&self, port: &str) {
        self.client()
            .connect_ports_by_name(&self.midi_port, port)
            .unwrap_or_else(|e| panic!("connect {} -> {port}: {e}", self.midi_port));
        self.wait_cycles(2, Duration::from_secs(5));
    }

    /// Sends a batch of messages: each `(delay, bytes)` is written `delay` frames
    /// after the start of the cycle that picks the batch up (exact JACK frame time).
    pub fn send(&self, batch: &[(u32, &[u8])]) {
        let mut inbox = self.inbox.lock().unwrap();
        for (delay, bytes) in batch {
            assert!(bytes.len() <= MAX_MSG);
            let mut b = [0u8; MAX_MSG];
            b[..bytes.len()].copy_from_slice(bytes);
            inbox.push(MidiMsg { delay: *delay, bytes: b, len: bytes.len() });
        }
    }

    /// Sends one message now.
    pub fn send_now(&self, bytes: &[u8]) {
        self.send(&[(0, bytes)]);
    }

    /// The frame times of the next `n` messages written, in order.
    pub fn sent_times(&mut self, n: usize, timeout: Duration) -> Vec<u32> {
        let t0 = Instant::now();
        let mut out = Vec::new();
        while out.len() < n {
            match self.sent.pop() {
                Ok(t) => out.push(t),
                Err(_) => {
                    assert!(t0.elapsed() < timeout, "only {} of {n} MIDI messages were written", out.len());
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
        out
    }

    /// Runs the probe's MIDI clock at `bpm` (24 ticks per beat, at exact fractional
    /// frame times; a change takes effect from the next tick); 0 stops it.
    pub fn set_clock(&self, bpm: f64) {
        let period = if bpm > 0.0 { 60.0 * SAMPLE_RATE as f64 / (bpm * 24.0) } else { 0.0 };
        self.clock_period.store(period.to_bits(), Ordering::Release);
    }

    /// The frame times of the clock ticks written since the last call: each tick's
    /// own time on the clock's grid (a tick due in a cycle the server skipped goes
    /// out late, but is listed at its time).
    pub fn take_ticks(&mut self) -> Vec<u32> {
        let mut out = Vec::new();
        while let Ok(t) = self.ticks_sent.pop() {
            out.push(t);
        }
        out
    }

    /// The MIDI messages the probe's input received since the last call, with their
    /// JACK frame times, in order.
    pub fn take_received(&mut self) -> Vec<Received> {
        let mut out = Vec::new();
        while let Ok(r) = self.received.pop() {
            out.push(Received { frame: r.frame, bytes: r.bytes[..r.len as usize].to_vec() });
        }
        out
    }

    /// Connects two ports of other clients (`from`, an output, to `to`).
    pub fn connect_ports(&self, from: &str, to: &str) {
        self.client().connect_ports_by_name(from, to).unwrap_or_else(|e| panic!("connect {from} -> {to}: {e}"));
        self.wait_cycles(2, Duration::from_secs(5));
    }

    /// Tries to connect the audio outputs `out_0` and `out_1` of the client
    /// `client` (jamrig's is "jamrig") to the probe's inputs now: false while they
    /// are not there or that client is not active yet.
    pub fn try_connect_audio_of(&self, client: &str) -> bool {
        let c = self.client();
        ["out_0", "out_1"].iter().zip(&self.inputs).all(|(port, to)| {
            let from = format!("{client}:{port}");
            c.connect_ports_by_name(&from, to).is_ok()
                || c.port_by_name(&from).is_some_and(|p| p.is_connected_to(to).unwrap_or(false))
        })
    }

    /// Connects `port` (an output of another client) to the probe's MIDI input.
    pub fn connect_midi_from(&self, port: &str) {
        self.client()
            .connect_ports_by_name(port, &self.midi_in_port)
            .unwrap_or_else(|e| panic!("connect {port} -> {}: {e}", self.midi_in_port));
        self.wait_cycles(2, Duration::from_secs(5));
    }

    /// Forgets the frame times of messages written so far.
    pub fn clear_sent(&mut self) {
        while self.sent.pop().is_ok() {}
    }

    /// Starts recording `seconds` from the next cycle on; [`Probe::finish`] collects it.
    pub fn start_recording(&mut self, seconds: f64) -> u64 {
        while self.rec.pop().is_ok() {}
        let frames = (seconds * SAMPLE_RATE as f64).round() as u64;
        self.rec_req.store(frames, Ordering::Release);
        frames
    }

    /// Collects a recording of `frames` started by [`Probe::start_recording`].
    pub fn finish(&mut self, frames: u64) -> Capture {
        let timeout = Duration::from_secs_f64(frames as f64 / SAMPLE_RATE as f64 * 3.0 + 5.0);
        let t0 = Instant::now();
        let (mut left, mut right) = (Vec::with_capacity(frames as usize), Vec::with_capacity(frames as usize));
        while (left.len() as u64) < frames {
            match self.rec.pop() {
                Ok([l, r]) => {
                    left.push(l);
                    right.push(r);
                }
                Err(_) => {
                    assert!(t0.elapsed() < timeout, "recorded only {} of {frames} frames in {timeout:?}", left.len());
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
        }
        Capture { left, right, start: self.rec_start.load(Ordering::Acquire) }
    }

    /// Records `seconds` from now.
    pub fn record(&mut self, seconds: f64) -> Capture {
        let n = self.start_recording(seconds);
        self.finish(n)
    }

    /// Closes the client (before its server goes away); [`Probe::reopen`] opens it again.
    pub fn close(&mut self) {
        self.client = None;
    }

    /// Opens the probe again on `server` (a new client, ports and recording).
    pub fn reopen(&mut self, server: &str) {
        self.close();
        *self = Probe::open(server);
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        // Deactivates and closes the client.
        self.client = None;
    }
}

// ---------------------------------------------------------------------------------
// Ableton Link: a network namespace with the loopback only, and the clocks to
// compare what jamrig plays with a Link peer's timeline.

/// Set (to "1") in the environment of a test run inside the loopback-only network
/// namespace by [`run_in_loopback_netns`].
pub const NETNS_ENV: &str = "JAMRIG_LINK_NETNS";

/// The network interfaces this process sees (its network namespace's, from
/// `/proc/self/net/dev`).
pub fn net_interfaces() -> Vec<String> {
    let text = std::fs::read_to_string("/proc/self/net/dev").expect("read /proc/self/net/dev");
    text.lines().skip(2).filter_map(|l| l.split(':').next()).map(|n| n.trim().to_string()).collect()
}

/// Panics unless this process was started by [`run_in_loopback_netns`] and sees no
/// network interface but the loopback: a test that opens Link calls it first, so
/// that no Link traffic ever leaves the machine.
pub fn require_loopback_netns() {
    assert_eq!(
        std::env::var(NETNS_ENV).as_deref(),
        Ok("1"),
        "this test opens Ableton Link and runs only inside a loopback-only network namespace: \
         run the test of the same name without `inner_` (it starts this one under `unshare -rn`)"
    );
    let ifs = net_interfaces();
    assert_eq!(ifs, ["lo"], "not in a loopback-only network namespace: interfaces {ifs:?}");
}

/// Runs the test `name` of this test binary (`--exact`, ignored tests included)
/// inside a new user and network namespace (`unshare -rn`) whose only interface is
/// the loopback, brought up, with [`NETNS_ENV`] set. Prints its output (the test
/// harness shows it on failure) and panics if it failed.
pub fn run_in_loopback_netns(name: &str) {
    let exe = std::env::current_exe().expect("the test binary's path");
    run_in_loopback_netns_with(&exe, &[name, "--exact", "--include-ignored", "--nocapture", "--test-threads=1"]);
}

/// Runs `exe args...` inside a new loopback-only network namespace (see
/// [`run_in_loopback_netns`]) and panics if it fails.
pub fn run_in_loopback_netns_with(exe: &Path, args: &[&str]) {
    let out = Command::new("unshare")
        .args(["-rn", "sh", "-c", "ip link set lo up && exec \"$0\" \"$@\""])
        .arg(exe)
        .args(args)
        .env(NETNS_ENV, "1")
        .stdin(Stdio::null())
        .output()
        .expect("run unshare (util-linux; scripts/deps.sh installs it)");
    print!("{}", String::from_utf8_lossy(&out.stdout));
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{} {args:?} failed in the loopback-only namespace ({})", exe.display(), out.status);
}

/// Frames either side of a moment whose cycle starts time it (a quarter second).
const CYCLE_WINDOW_FRAMES: i64 = 12_000;

/// `(first frame, start µs)` of JACK cycles on JACK's clock, as measured when they
/// began (not JACK's filtered estimate, which jumps after an overrun), sampled while
/// a recording runs, to give each recorded frame its time.
///
/// The dummy backend starts its cycles on a fixed schedule, and a cycle can begin
/// late (the machine is busy), never early: so a frame's time is taken from the
/// earliest cycle starts around it, on the frame line (the smallest offset between
/// measured start and frame count within [`CYCLE_WINDOW_FRAMES`]).
#[derive(Default)]
pub struct CycleMap {
    points: Vec<(u32, f64)>,
}

impl CycleMap {
    /// The JACK time (µs) at which frame time `frame` began.
    pub fn usecs(&self, frame: u32) -> Option<f64> {
        let per_frame = 1e6 / SAMPLE_RATE as f64;
        self.points
            .iter()
            .map(|&(f, us)| (frame.wrapping_sub(f) as i32 as i64, us))
            .filter(|&(d, _)| d.abs() <= CYCLE_WINDOW_FRAMES)
            .map(|(d, us)| us + d as f64 * per_frame)
            .min_by(f64::total_cmp)
    }

    /// Cycle starts sampled.
    pub fn len(&self) -> usize {
        self.points.len()
    }
}

/// Pairs of readings of JACK's clock and Link's (which may differ: Link reads
/// CLOCK_MONOTONIC_RAW on Linux), to convert one into the other.
#[derive(Default)]
pub struct ClockPairs {
    /// (JACK µs, Link µs - JACK µs), each taken between two JACK readings at most a
    /// few µs apart.
    pairs: Vec<(f64, f64)>,
}

impl ClockPairs {
    /// Reads both clocks now (keeps the reading only if it was not interrupted).
    pub fn sample(&mut self, jack: &jack::Client, link: &rusty_link::AblLink) {
        for _ in 0..20 {
            let a = jack.time();
            let l = link.clock_micros();
            let b = jack.time();
            if b - a <= 20 {
                let j = (a + b) as f64 / 2.0;
                self.pairs.push((j, l as f64 - j));
                return;
            }
        }
    }

    /// The Link time of JACK time `jack_us`, with the offset interpolated between
    /// (or extrapolated from) the first and last pairs.
    pub fn to_link(&self, jack_us: f64) -> f64 {
        let (Some(&(j0, o0)), Some(&(j1, o1))) = (self.pairs.first(), self.pairs.last()) else {
            panic!("no clock pairs sampled");
        };
        let o = if j1 > j0 { o0 + (o1 - o0) * (jack_us - j0) / (j1 - j0) } else { o0 };
        jack_us + o
    }

    /// How far Link's clock ran from JACK's over the pairs (µs).
    pub fn drift(&self) -> f64 {
        match (self.pairs.first(), self.pairs.last()) {
            (Some(a), Some(b)) => b.1 - a.1,
            _ => 0.0,
        }
    }
}

/// Silent frames before a sound that make it an onset (a closed hat rings ~47 ms,
/// beats are 500 ms apart at 120 BPM).
const ONSET_GAP: u32 = 500;

/// The onset client's process callback: stamps every onset on its left input
/// with its JACK frame time, so a cycle the server skips (an overrun on a busy
/// machine) costs no timing.
struct OnsetProc {
    in_l: jack::Port<jack::AudioIn>,
    /// A MIDI input too, downstream of jamrig only (the probe, which also feeds
    /// jamrig's input, may run before jamrig in a cycle and then hears its MIDI
    /// output a cycle late): to line jamrig's MIDI out up with its audio.
    midi_in: jack::Port<jack::MidiIn>,
    received: rtrb::Producer<RawReceived>,
    _in_r: jack::Port<jack::AudioIn>,
    quiet: u32,
    onsets: rtrb::Producer<u32>,
    /// The frame time this client's next cycle starts at, if it runs every cycle.
    next_cycle: Option<u32>,
    /// First frames of cycles that came after cycles this client missed.
    missed: rtrb::Producer<u32>,
}

/// Notices the server's overruns for the onset client: the JACK frame time each
/// was reported at (a little after it happened).
struct OnsetNotify {
    xruns: Arc<Mutex<Vec<u32>>>,
}

impl jack::NotificationHandler for OnsetNotify {
    fn xrun(&mut self, client: &jack::Client) -> jack::Control {
        self.xruns.lock().unwrap().push(client.frame_time());
        jack::Control::Continue
    }
}

impl jack::ProcessHandler for OnsetProc {
    fn process(&mut self, _: &jack::Client, ps: &jack::ProcessScope) -> jack::Control {
        let t0 = ps.last_frame_time();
        if self.next_cycle.is_some_and(|f| f != t0) {
            // Cycles went by unheard (an overrun): a sound that began in them is
            // heard first now, mid-sound (the tests leave onsets near these out).
            let _ = self.missed.push(t0);
        }
        self.next_cycle = Some(t0.wrapping_add(ps.n_frames()));
        for ev in self.midi_in.iter(ps) {
            let mut bytes = [0u8; 3];
            let len = ev.bytes.len().min(3);
            bytes[..len].copy_from_slice(&ev.bytes[..len]);
            let _ = self.received.push(RawReceived { frame: t0.wrapping_add(ev.time), bytes, len: len as u8 });
        }
        for (i, &x) in self.in_l.as_slice(ps).iter().enumerate() {
            if x != 0.0 {
                if self.quiet >= ONSET_GAP {
                    let _ = self.onsets.push(t0.wrapping_add(i as u32));
                }
                self.quiet = 0;
            } else {
                self.quiet = self.quiet.saturating_add(1);
            }
        }
        jack::Control::Continue
    }
}

/// A JACK client listening to jamrig's outputs for onsets (the first sound after
/// [`ONSET_GAP`] silent frames), each stamped with its JACK frame time.
pub struct OnsetProbe {
    client: Option<jack::AsyncClient<OnsetNotify, OnsetProc>>,
    onsets: rtrb::Consumer<u32>,
    missed: rtrb::Consumer<u32>,
    xruns: Arc<Mutex<Vec<u32>>>,
    received: rtrb::Consumer<RawReceived>,
    inputs: [String; 2],
}

impl OnsetProbe {
    pub fn open(server: &str) -> OnsetProbe {
        let client = open_client(server, "onsets").unwrap_or_else(|e| panic!("{e}"));
        jack::set_logger(jack::LoggerType::None);
        assert_eq!(client.sample_rate(), SAMPLE_RATE);
        let in_l = client.register_port("in_l", jack::AudioIn::default()).expect("audio port");
        let in_r = client.register_port("in_r", jack::AudioIn::default()).expect("audio port");
        let inputs = [in_l.name().unwrap(), in_r.name().unwrap()];
        let (tx, onsets) = rtrb::RingBuffer::new(4096);
        let midi_in = client.register_port(PROBE_MIDI_IN, jack::MidiIn::default()).expect("MIDI in port");
        let (received_p, received) = rtrb::RingBuffer::new(1 << 16);
        let (missed_p, missed) = rtrb::RingBuffer::new(4096);
        let xruns = Arc::new(Mutex::new(Vec::new()));
        let proc_ = OnsetProc {
            in_l,
            midi_in,
            received: received_p,
            _in_r: in_r,
            quiet: 0,
            onsets: tx,
            next_cycle: None,
            missed: missed_p,
        };
        let client =
            client.activate_async(OnsetNotify { xruns: xruns.clone() }, proc_).expect("the onset client activates");
        OnsetProbe { client: Some(client), onsets, missed, xruns, received, inputs }
    }

    fn client(&self) -> &jack::Client {
        self.client.as_ref().expect("open").as_client()
    }

    /// Connects jamrig's audio outputs to the inputs, waiting up to `timeout` for
    /// them. Returns jamrig's left output port.
    pub fn connect_jamrig_audio(&self, timeout: Duration) -> String {
        connect_jamrig_outputs(self.client(), &self.inputs, timeout)
    }

    /// The MIDI messages its input received since the last call, at their JACK
    /// frame times.
    pub fn take_received(&mut self) -> Vec<Received> {
        let mut out = Vec::new();
        while let Ok(r) = self.received.pop() {
            out.push(Received { frame: r.frame, bytes: r.bytes[..r.len as usize].to_vec() });
        }
        out
    }

    /// The onsets found since the last call, as JACK frame times.
    pub fn take_onsets(&mut self) -> Vec<u32> {
        let mut v = Vec::new();
        while let Ok(f) = self.onsets.pop() {
            v.push(f);
        }
        v
    }

    /// JACK frame times around which overruns happened since the last call: the
    /// server's reports (at the frame time they reached this client, a little
    /// late) and the first frames of cycles after ones this client missed.
    pub fn take_overrun_frames(&mut self) -> Vec<u32> {
        let mut v = std::mem::take(&mut *self.xruns.lock().unwrap());
        while let Ok(f) = self.missed.pop() {
            v.push(f);
        }
        v
    }

    /// The current JACK cycle's first frame time, read from any thread.
    fn cycle_frames(&self) -> Option<u32> {
        let (mut frames, mut usecs, mut next, mut period) = (0, 0, 0, 0.0);
        // SAFETY: the client is open; the call only reads the server's timer.
        let r = unsafe {
            (jack::jack_sys::jack_get_cycle_times)(self.client().raw(), &mut frames, &mut usecs, &mut next, &mut period)
        };
        (r == Some(0)).then_some(frames)
    }

    /// The current JACK cycle's first frame time and the moment it began on JACK's
    /// clock (µs, as measured then, to a frame), read from any thread.
    pub fn cycle_start(&self) -> Option<(u32, f64)> {
        let before = self.cycle_frames()?;
        let now = self.client().time();
        // SAFETY: as above.
        let since = unsafe { jack::jack_sys::jack_frames_since_cycle_start(self.client().raw()) };
        let after = self.cycle_frames()?;
        (before == after).then(|| (before, now as f64 - since as f64 * 1e6 / SAMPLE_RATE as f64))
    }

    /// The playback latency JACK reports for `port` (the largest of its range), in
    /// frames: how long after its cycle a frame written to it reaches the speaker.
    pub fn playback_latency(&self, port: &str) -> u32 {
        let p = self.client().port_by_name(port).unwrap_or_else(|| panic!("no port {port}"));
        p.get_latency_range(jack::LatencyType::Playback).1
    }

    /// Listens for `seconds`, sampling the cycle starts and the JACK/Link clock
    /// pairs all along: the onsets heard, and the maps to time them.
    pub fn listen(&mut self, seconds: f64, link: &rusty_link::AblLink) -> (Vec<u32>, CycleMap, ClockPairs) {
        let (mut map, mut pairs) = (CycleMap::default(), ClockPairs::default());
        self.take_onsets();
        let t0 = Instant::now();
        while t0.elapsed().as_secs_f64() < seconds {
            if let Some(p) = self.cycle_start()
                && map.points.last() != Some(&p)
            {
                map.points.push(p);
            }
            pairs.sample(self.client(), link);
            std::thread::sleep(Duration::from_millis(2));
        }
        (self.take_onsets(), map, pairs)
    }
}

impl Drop for OnsetProbe {
    fn drop(&mut self) {
        self.client = None;
    }
}

/// The phase of what jamrig plays against a Link peer's timeline.
pub struct LinkPhase {
    /// Per onset: how late it sounds against the peer's nearest beat, in ms.
    pub errors_ms: Vec<f64>,
    /// The beats the onsets fell on.
    pub beats: Vec<f64>,
    pub latency_frames: u32,
    /// How far Link's clock ran from JACK's during the recording (µs).
    pub clock_drift_us: f64,
    /// Cycle starts sampled while listening.
    pub cycle_starts: usize,
}

impl LinkPhase {
    pub fn mean_ms(&self) -> f64 {
        self.errors_ms.iter().sum::<f64>() / self.errors_ms.len().max(1) as f64
    }

    pub fn worst_ms(&self) -> f64 {
        self.errors_ms.iter().fold(0.0, |w: f64, e| w.max(e.abs()))
    }
}

/// Listens `seconds` to what jamrig plays (a click on every beat, its first sample
/// the hit) and compares each onset with the peer's timeline: the onset's frame
/// time becomes a JACK time (from the cycle starts), plus the playback latency of
/// jamrig's output port `out_port` (the moment it reaches the speaker), then a
/// Link time (from the clock pairs); its error is its distance from the time the
/// peer gives the nearest beat.
pub fn measure_link_phase(
    probe: &mut OnsetProbe,
    peer: &rusty_link::AblLink,
    out_port: &str,
    quantum: f64,
    seconds: f64,
) -> LinkPhase {
    let latency_frames = probe.playback_latency(out_port);
    let (onsets, map, pairs) = probe.listen(seconds, peer);
    let mut state = rusty_link::SessionState::new();
    peer.capture_app_session_state(&mut state);
    let latency_us = latency_frames as f64 * 1e6 / SAMPLE_RATE as f64;
    let (mut errors_ms, mut beats) = (Vec::new(), Vec::new());
    for frame in onsets {
        let Some(us) = map.usecs(frame) else { continue };
        let link_us = pairs.to_link(us + latency_us);
        let beat = state.beat_at_time(link_us.round() as i64, quantum).round();
        let expected = state.time_at_beat(beat, quantum) as f64;
        errors_ms.push((link_us - expected) / 1e3);
        beats.push(beat);
    }
    LinkPhase { errors_ms, beats, latency_frames, clock_drift_us: pairs.drift(), cycle_starts: map.len() }
}

// ---------------------------------------------------------------------------------
// Session captures: replayed, and compared with what was heard live.

/// Where `part` (a stretch of live output) sits in `whole` (a replay), matched
/// bit for bit on its first 4096 samples, searching from `from`.
pub fn find_in(whole: &[f32], part: &[f32], from: usize) -> Option<usize> {
    let probe = &part[..4096.min(part.len())];
    (from..whole.len().saturating_sub(probe.len()) + 1)
        .find(|&d| whole[d..d + probe.len()].iter().zip(probe).all(|(a, b)| a.to_bits() == b.to_bits()))
}

/// How many frames of the live capture stand in the replay bit for bit (both
/// channels), and where the first difference is. Where they part (a cycle the
/// server skipped: the live output lost a cycle the engine did render), the rest
/// is looked for again further on.
pub fn exact_frames(replay: &[f32], live: &Capture) -> (usize, Option<usize>) {
    let left: Vec<f32> = replay.iter().step_by(2).copied().collect();
    let right: Vec<f32> = replay.iter().skip(1).step_by(2).copied().collect();
    let same = |a: usize, i: usize| {
        left[a].to_bits() == live.left[i].to_bits() && right[a].to_bits() == live.right[i].to_bits()
    };
    let (mut matched, mut first_diff, mut i, mut from) = (0, None, 0, 0);
    while i + 4096 <= live.left.len() {
        let Some(at) = find_in(&left, &live.left[i..], from) else {
            first_diff = first_diff.or(Some(i));
            i += PERIOD as usize;
            continue;
        };
        let mut k = 0;
        while i + k < live.left.len() && at + k < left.len() && same(at + k, i + k) {
            k += 1;
        }
        matched += k;
        if i + k < live.left.len() {
            first_diff = first_diff.or(Some(i + k));
        }
        i += k.max(PERIOD as usize);
        from = at + k;
    }
    (matched, first_diff)
}

/// The live capture stands in the replay bit for bit: all of it when the server
/// ran every cycle on time (`xruns` = 0). A busy machine makes the server skip
/// cycles now and then (each an XRun in its log); the live output then lacks a
/// cycle the engine rendered, and the rest must still match once found again.
pub fn assert_found_exactly(replay: &[f32], live: &Capture, xruns: usize) {
    let rms = (live.left.iter().map(|x| (*x as f64).powi(2)).sum::<f64>() / live.left.len().max(1) as f64).sqrt();
    assert!(rms > 0.01, "the live session is silent");
    let (matched, first_diff) = exact_frames(replay, live);
    let n = live.left.len();
    println!("{matched} of {n} live frames found bit for bit in the replay; {xruns} JACK overruns meanwhile");
    if xruns == 0 {
        assert_eq!(
            first_diff,
            None,
            "the replay departs from the live output {:?} s into the recording ({matched} of {n} frames match)",
            first_diff.map(|i| i as f64 / SAMPLE_RATE as f64)
        );
    } else {
        assert!(
            matched as f64 >= 0.9 * n as f64,
            "with {xruns} overruns, only {matched} of {n} frames match the replay bit for bit"
        );
    }
}

/// Whether an onset at JACK frame `onset` may have been heard wrong because of an
/// overrun at one of `overruns` ([`OnsetProbe::take_overrun_frames`]): a cycle the
/// onset client missed, or one jamrig did not finish, moves an onset to the next
/// cycle heard. Within four periods and 100 ms either side (reports come late).
pub fn near_overrun(onset: u32, overruns: &[u32], period: u32) -> bool {
    let reach = 4 * period as i64 + SAMPLE_RATE as i64 / 10;
    overruns.iter().any(|&x| (onset.wrapping_sub(x) as i32 as i64).abs() <= reach)
}

pub fn xruns(server: &JackServer) -> usize {
    server.log().matches("XRun").count()
}

/// Runs `jamrig render --replay DIR -o OUT --format f32`; returns the file and
/// what it printed.
pub fn replay_capture(capture: &Path, out: &Path) -> (Vec<u8>, String) {
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_jamrig"))
        .args(["render", "--replay"])
        .arg(capture)
        .arg("-o")
        .arg(out)
        .args(["--format", "f32"])
        .output()
        .expect("jamrig runs");
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "render --replay fails: {err}");
    (std::fs::read(out).unwrap(), err)
}

pub fn wav_samples(bytes: &[u8]) -> Vec<f32> {
    hound::WavReader::new(std::io::Cursor::new(bytes)).unwrap().into_samples::<f32>().map(|s| s.unwrap()).collect()
}
