//! `jamrig play`: the live host. Threads: the audio callback (cpal) runs the engine;
//! the MIDI callback (midir) stamps and queues events; the control thread
//! ([`control`]) owns the set, the Link session ([`link`]) and everything that may
//! allocate; the main thread runs the REPL ([`repl`]) or waits for a signal.

pub mod audio;
pub mod clock;
pub mod control;
#[cfg(feature = "jack")]
pub mod jack_host;
pub mod keys;
pub mod link;
pub mod link_peers;
pub mod listen;
pub mod midi;
pub mod midi_out;
pub mod repl;
pub mod stats;
pub mod timeline;
pub mod watch;

use control::{Handles, Live, Msg, Out, PlayOptions, StartError};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How `play` ended.
#[derive(Debug)]
pub enum PlayOutcome {
    Stopped,
    NoAudio(String),
    Failed(String),
}

/// The terminal's settings as they were before the REPL changed them (rustyline
/// and `:keys` put it in raw mode), put back when `play` ends, however it ends.
struct Terminal(Option<libc::termios>);

impl Terminal {
    fn save() -> Terminal {
        let mut t = std::mem::MaybeUninit::<libc::termios>::uninit();
        // SAFETY: tcgetattr writes a termios into `t` when it returns 0.
        let ok = unsafe { libc::tcgetattr(libc::STDIN_FILENO, t.as_mut_ptr()) } == 0;
        // SAFETY: initialised by tcgetattr above.
        Terminal(ok.then(|| unsafe { t.assume_init() }))
    }

    fn restore(&self) {
        if let Some(t) = &self.0 {
            // SAFETY: `t` is a termios tcgetattr filled in.
            unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, t) };
        }
    }
}

/// Why the REPL cannot read the terminal or stdin, if it cannot: jamrig runs in
/// the background of its terminal (`jamrig play set.rhai &`), or stdin is
/// `/dev/null`.
fn repl_unusable() -> Option<&'static str> {
    use std::io::IsTerminal;
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    if std::io::stdin().is_terminal() {
        // SAFETY: plain queries of this process and its terminal.
        let (fg, own) = unsafe { (libc::tcgetpgrp(libc::STDIN_FILENO), libc::getpgrp()) };
        return (fg > 0 && fg != own).then_some("jamrig runs in the background of its terminal");
    }
    let null = std::fs::metadata("/dev/null").ok()?;
    let stdin = std::fs::metadata("/proc/self/fd/0").ok()?;
    (stdin.file_type().is_char_device() && stdin.rdev() == null.rdev()).then_some("stdin is /dev/null")
}

/// Plays a set until `:quit`, end of input, or SIGINT/SIGTERM.
pub fn play(mut opts: PlayOptions) -> PlayOutcome {
    let mut hint = None;
    if opts.repl
        && let Some(why) = repl_unusable()
    {
        hint = Some(format!("{why}: playing without a REPL (--no-repl says so; SIGINT or SIGTERM stops)"));
        opts.repl = false;
    }
    // Only the REPL changes the terminal's modes, so only then are they put back:
    // setting them from the background of the terminal would stop jamrig (SIGTTOU)
    // on its way out.
    let terminal = if opts.repl { Terminal::save() } else { Terminal(None) };
    let repl = opts.repl;
    let outcome = play_with_terminal(opts, hint);
    terminal.restore();
    if repl && terminal.0.is_some() {
        // Clear the prompt the REPL left on the last line.
        use std::io::Write;
        print!("\r\x1b[K");
        let _ = std::io::stdout().flush();
    }
    outcome
}

/// Plays; `hint` (why there is no REPL) is said once the set plays.
fn play_with_terminal(opts: PlayOptions, hint: Option<String>) -> PlayOutcome {
    let (tx, rx) = crossbeam_channel::unbounded::<Msg>();
    let handles: Arc<Mutex<Option<Handles>>> = Arc::new(Mutex::new(None));
    let mut repl = None;
    let printer: Box<dyn FnMut(&str) + Send> = if opts.repl {
        match crate::script::ScriptHost::new().map(|h| repl::Names::new(h.library())) {
            Ok(names) => match repl::Repl::new(names) {
                Ok(mut r) => {
                    let p = r.printer();
                    repl = Some(r);
                    p
                }
                Err(e) => return PlayOutcome::Failed(format!("cannot start the REPL: {e}")),
            },
            Err(d) => return PlayOutcome::Failed(d.render()),
        }
    } else {
        Box::new(|s: &str| println!("{s}"))
    };
    let out: Out = Arc::new(Mutex::new(printer));

    // Signals ask the control thread to stop cleanly.
    let term = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        let _ = signal_hook::flag::register(sig, term.clone());
    }
    let (ready_tx, ready_rx) = crossbeam_channel::bounded::<Result<Vec<(u8, String)>, StartError>>(1);
    let control = {
        let (out, tx, handles, opts) = (out.clone(), tx.clone(), handles.clone(), opts.clone());
        std::thread::Builder::new()
            .name("jamrig-control".into())
            .spawn(move || match Live::start(opts, out, tx, handles) {
                Ok(live) => {
                    let _ = ready_tx.send(Ok(live.channel_names()));
                    live.run(rx);
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                }
            })
            .expect("spawn the control thread")
    };
    let channels = match ready_rx.recv() {
        Ok(Ok(ch)) => ch,
        Ok(Err(StartError::Audio(e))) => {
            let _ = control.join();
            return PlayOutcome::NoAudio(e.to_string());
        }
        Ok(Err(e)) => {
            let _ = control.join();
            return PlayOutcome::Failed(e.to_string());
        }
        Err(_) => {
            let _ = control.join();
            return PlayOutcome::Failed("the control thread stopped".into());
        }
    };
    if let Some(h) = hint {
        (out.lock().unwrap_or_else(|p| p.into_inner()))(&h);
    }
    // A watchdog turns SIGINT/SIGTERM into a clean stop.
    {
        let (term, tx) = (term.clone(), tx.clone());
        std::thread::spawn(move || {
            while !term.load(std::sync::atomic::Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = tx.send(Msg::Quit);
        });
    }
    if let Some(r) = repl {
        // The REPL reads on a thread of its own: when the control thread stops (a
        // signal, `:quit`, end of input), `play` returns at once, even while the
        // REPL waits for a line.
        let (tx, handles) = (tx.clone(), handles.clone());
        let _ = std::thread::Builder::new()
            .name("jamrig-repl".into())
            .spawn(move || r.run(tx, handles, move || channels.clone()));
    }
    let _ = control.join();
    PlayOutcome::Stopped
}

/// `jamrig ports`.
pub fn ports() -> String {
    let mut s = String::new();
    for (title, ports) in [("MIDI inputs", midi::list_inputs()), ("MIDI outputs", midi::list_outputs())] {
        s.push_str(&format!("{title}:\n"));
        if ports.is_empty() {
            s.push_str(&midi::no_ports_line());
        }
        for (i, p) in ports.iter().enumerate() {
            s.push_str(&format!("  {i}: {p}\n"));
        }
    }
    s.push_str(&format!("jamrig's own MIDI outputs (while it plays):\n  {}\n", midi::OUT_PORTS_NOTE));
    s.push_str("audio outputs:\n");
    let outs = audio::list_outputs();
    if outs.is_empty() {
        s.push_str("  (none: no sound card, and no JACK or PipeWire server)\n");
    }
    for o in outs {
        s.push_str(&format!("  {o}\n"));
    }
    s
}
