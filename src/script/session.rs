//! A live session over one set file: load it, re-evaluate it from scratch on demand,
//! diff against the running set, and publish; REPL lines edit the running set until
//! the next reload replaces them. Control thread.

use super::diagnostic::Diagnostic;
use super::diff::diff_live;
use super::{Evaluated, ScriptHost};
use crate::params::Param;
use crate::rig::build::BuildError;
use crate::rig::controller::Controller;
use crate::rig::set::{Set, SyncMode};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

/// Where a session publishes sets (the live engine's controller, or a test double).
pub trait Publish {
    fn publish_set(&mut self, set: &Set) -> Result<(), BuildError>;
    /// The bar at which a pattern change will be heard (`None` if stopped).
    fn next_bar(&self, beats_per_bar: f64) -> Option<u64>;
    /// The value a knob has given channel `ch`'s (from 1) parameter, if one has:
    /// what the change lines start from.
    fn live_value(&self, _ch: u8, _p: Param) -> Option<f32> {
        None
    }
}

impl Publish for Controller {
    fn publish_set(&mut self, set: &Set) -> Result<(), BuildError> {
        Controller::publish_set(self, set)
    }

    fn next_bar(&self, beats_per_bar: f64) -> Option<u64> {
        let st = self.stats();
        st.playing.load(Relaxed).then(|| (st.beat() / beats_per_bar.max(1e-3)).floor() as u64 + 2)
    }

    fn live_value(&self, ch: u8, p: Param) -> Option<f32> {
        self.stats().override_of((ch as usize).checked_sub(1)?, p)
    }
}

/// What a reload did.
#[derive(Debug, Clone, PartialEq)]
pub enum Reload {
    /// The set evaluated to the running set: nothing was published.
    Unchanged { ms: f64 },
    /// Published; `changes` lists what differs.
    Changed { ms: f64, changes: Vec<String>, dropped: Vec<String> },
    /// The set has an error; the running set plays on, untouched.
    Failed(Diagnostic),
}

impl Reload {
    /// The one line a reload prints.
    pub fn line(&self) -> String {
        match self {
            Reload::Unchanged { ms } => format!("reloaded in {ms:.1} ms: no changes"),
            Reload::Changed { ms, changes, dropped } => {
                let what = if changes.is_empty() { "no changes".to_string() } else { changes.join("; ") };
                let mut s = format!("reloaded in {ms:.1} ms: {what}");
                if !dropped.is_empty() {
                    s.push_str(&format!(" (replaced REPL tweaks: {})", dropped.join("; ")));
                }
                s
            }
            Reload::Failed(d) => format!("reload failed, still playing the previous set: {}", d.headline()),
        }
    }
}

pub struct Session {
    host: ScriptHost,
    path: PathBuf,
    /// The running set (the file's, plus REPL tweaks).
    running: Evaluated,
    /// REPL lines applied since the file was last loaded.
    tweaks: Vec<String>,
    /// The REPL's variables: a `let` on one line is there on the next, until the
    /// session ends.
    scope: rhai::Scope<'static>,
    /// Every REPL line that evaluated, in order, with whether it changed the set:
    /// what rebuilds the variables and the tweaks (a reload drops the lines that
    /// changed the set; those that only defined variables stay).
    repl_lines: Vec<(String, bool)>,
    /// The value of the last REPL line, as shown (none for a statement).
    value: Option<String>,
    /// A clock chosen on the command line, which wins over the file's.
    sync_override: Option<SyncMode>,
    /// Clock out chosen on the command line, which wins over the file's.
    clock_out_override: Option<bool>,
}

impl Session {
    /// Evaluates `path` (nothing is published yet: build the rig from `set()`).
    pub fn open(host: ScriptHost, path: &Path) -> Result<Session, Diagnostic> {
        let running = host.eval_file(path)?;
        Ok(Session {
            host,
            path: path.to_path_buf(),
            running,
            tweaks: Vec::new(),
            scope: rhai::Scope::new(),
            repl_lines: Vec::new(),
            value: None,
            sync_override: None,
            clock_out_override: None,
        })
    }

    /// Makes `sync` win over the set's own `clock(...)` (None: the set decides).
    pub fn set_sync_override(&mut self, sync: Option<SyncMode>) {
        self.sync_override = sync;
        if let Some(s) = sync {
            self.running.set.sync = s;
        }
    }

    /// Makes `on` win over the set's own `clock_out(...)` (None: the set decides).
    pub fn set_clock_out_override(&mut self, on: Option<bool>) {
        self.clock_out_override = on;
        if let Some(c) = on {
            self.running.set.clock_out = c;
        }
    }

    pub fn set(&self) -> &Set {
        &self.running.set
    }

    pub fn evaluated(&self) -> &Evaluated {
        &self.running
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn host(&self) -> &ScriptHost {
        &self.host
    }

    /// Files to watch: the set and its imports.
    pub fn files(&self) -> &[PathBuf] {
        &self.running.files
    }

    /// The REPL lines applied, in order, on top of the file's set.
    pub fn tweaks(&self) -> &[String] {
        &self.tweaks
    }

    /// The REPL lines that make the running set and the REPL's variables on top of
    /// the file's set, in order: those that changed the set since the file was
    /// loaded, and every line before them that only defined variables.
    pub fn repl_lines(&self) -> Vec<String> {
        self.repl_lines.iter().map(|(l, _)| l.clone()).collect()
    }

    /// The value of the last REPL line, as the REPL shows it (`None` for a
    /// statement).
    pub fn value(&self) -> Option<&str> {
        self.value.as_deref()
    }

    /// The file was read again: the lines that changed the set are gone with it.
    fn forget_tweaks(&mut self) -> Vec<String> {
        self.repl_lines.retain(|(_, changed)| !changed);
        std::mem::take(&mut self.tweaks)
    }

    /// The clock chosen on the command line, if any.
    pub fn sync_override(&self) -> Option<SyncMode> {
        self.sync_override
    }

    /// The text of every file the running set was made from (the set, its imports,
    /// and modules REPL lines imported), as read.
    pub fn sources(&self) -> &[(PathBuf, String)] {
        &self.running.sources
    }

    /// Re-evaluates the file from scratch; publishes only if it differs.
    pub fn reload(&mut self, out: &mut impl Publish) -> Reload {
        let t0 = Instant::now();
        let mut next = match self.host.eval_file(&self.path) {
            Ok(ev) => ev,
            Err(d) => return Reload::Failed(d),
        };
        if let Some(s) = self.sync_override {
            next.set.sync = s;
        }
        if let Some(c) = self.clock_out_override {
            next.set.clock_out = c;
        }
        let changes =
            diff_live(&self.running.set, &next.set, out.next_bar(next.set.beats_per_bar), |c, p| out.live_value(c, p));
        if changes.is_empty() {
            self.running.files = next.files;
            self.running.sources = next.sources;
            self.running.printed = next.printed;
            let dropped = self.forget_tweaks();
            let ms = t0.elapsed().as_secs_f64() * 1e3;
            return if dropped.is_empty() {
                Reload::Unchanged { ms }
            } else {
                Reload::Changed { ms, changes, dropped }
            };
        }
        if let Err(e) = out.publish_set(&next.set) {
            let mut d = Diagnostic::new(&self.path.display().to_string(), "", rhai::Position::NONE, e.to_string());
            d.source.clear();
            return Reload::Failed(d);
        }
        self.running = next;
        let dropped = self.forget_tweaks();
        Reload::Changed { ms: t0.elapsed().as_secs_f64() * 1e3, changes, dropped }
    }

    /// Applies a REPL line (Rhai statements) to the running set; returns what changed.
    pub fn apply_line(&mut self, line: &str, out: &mut impl Publish) -> Result<Vec<String>, Diagnostic> {
        let folder = self.path.parent().map(|p| super::Folder::Disk(p.to_path_buf()));
        self.value = None;
        let (mut ev, value) = self.host.eval_repl(line, folder, self.running.set.clone(), &mut self.scope)?;
        self.value = value;
        if let Some(s) = self.sync_override {
            ev.set.sync = s;
        }
        if let Some(c) = self.clock_out_override {
            ev.set.clock_out = c;
        }
        let changes =
            diff_live(&self.running.set, &ev.set, out.next_bar(ev.set.beats_per_bar), |c, p| out.live_value(c, p));
        let kept = line.trim().trim_end_matches(';').trim().to_string();
        if !changes.is_empty() {
            out.publish_set(&ev.set).map_err(|e| Diagnostic::new("repl", line, rhai::Position::NONE, e.to_string()))?;
        }
        self.repl_lines.push((kept.clone(), !changes.is_empty()));
        if !changes.is_empty() {
            self.tweaks.push(kept);
            self.running.set = ev.set;
            for (path, text) in ev.sources {
                if !self.running.sources.iter().any(|(p, _)| *p == path) {
                    self.running.sources.push((path, text));
                }
            }
        }
        self.running.printed = ev.printed;
        Ok(changes)
    }
}
