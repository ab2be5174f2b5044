//! Rhai sets: evaluating `set.rhai` (and the modules it imports) into a plain
//! [`Set`], with the stdlib preset library, guard limits, and located diagnostics.
//! Control thread.

pub mod api;
pub mod diagnostic;
pub mod diff;
pub mod library;
pub mod literal;
pub mod memory;
pub mod mini;
pub mod patterns;
pub mod sampled;
pub mod save;
pub mod session;
pub mod source;

use crate::rig::set::Set;
use api::{EvalState, Shared};
use diagnostic::{Diagnostic, Sources, from_eval_error, from_parse_error};
use library::{Library, STDLIB, STDLIB_MODULES};
use rhai::module_resolvers::ModuleResolver;
use rhai::{Dynamic, Engine, EvalAltResult, INT, Module, Position, Scope, Shared as RhaiShared};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

/// Operations a script may run before it is stopped (a runaway loop ends in well
/// under a second).
pub const MAX_OPERATIONS: u64 = 2_000_000;
/// The longest one evaluation may run, in seconds, whatever its operation count
/// (a built-in counts as one operation however large its input: a loop sorting a
/// long list passes the operation limit only after hours). Normal sets take
/// milliseconds; `cargo bench --bench sets` measures the costliest.
pub const MAX_EVAL_SECONDS: f64 = 3.0;
/// Operations between two looks at the clock.
const CLOCK_EVERY_OPS: u64 = 1024;
/// What an evaluation stopped by [`MAX_EVAL_SECONDS`] ends with.
pub(crate) const TOOK_TOO_LONG: &str = "took too long";
/// Nested function calls.
pub const MAX_CALL_DEPTH: usize = 64;
/// Expression nesting (top level, inside functions).
pub const MAX_EXPR_DEPTH: (usize, usize) = (64, 32);
pub const MAX_STRING_LEN: usize = 64 * 1024;
/// Items in a list (growing a list by `push` costs more the longer it is, so this
/// also bounds evaluation time).
pub const MAX_ARRAY_LEN: usize = 16_384;
pub const MAX_MAP_LEN: usize = 10_000;
pub const MAX_MODULES: usize = 32;
/// Variables alive at once.
pub const MAX_VARIABLES: usize = 1024;
/// Script functions a set (with its modules) may define.
pub const MAX_FUNCTIONS: usize = 1024;
/// Lines of `print` output kept from one evaluation (and characters of each).
pub const MAX_PRINTED_LINES: usize = 100;
pub const MAX_PRINTED_CHARS: usize = 1000;

/// The outcome of evaluating a set.
#[derive(Debug, Clone)]
pub struct Evaluated {
    pub set: Set,
    /// Files the set read: itself and every module it imported.
    pub files: Vec<PathBuf>,
    /// The text of each of those files as it was read (what a session capture keeps).
    pub sources: Vec<(PathBuf, String)>,
    /// What the script printed.
    pub printed: Vec<String>,
    /// Notes about the set that are not errors (an index that picks no sample).
    pub notes: Vec<String>,
    /// The GM program map, resolved to instrument names.
    pub gm: BTreeMap<u8, String>,
}

/// Where a set's own modules come from: its folder on disk, or the files a session
/// capture kept (by their names relative to the set's folder).
#[derive(Clone)]
pub enum Folder {
    Disk(PathBuf),
    Files(Arc<BTreeMap<String, String>>),
}

/// Resolves `import "name"` to `name.rhai` in the set's folder, else a stdlib module,
/// recording the files read. Nothing outside the set's folder is reachable: the
/// module's real path (links resolved) must lie inside the folder's real path.
struct Resolver {
    base: Option<Folder>,
    read: Arc<Mutex<Vec<(String, PathBuf, String)>>>,
    /// Modules being imported right now, outermost first (to catch cycles).
    stack: Arc<Mutex<Vec<String>>>,
}

impl ModuleResolver for Resolver {
    fn resolve(
        &self,
        engine: &Engine,
        _source: Option<&str>,
        path: &str,
        pos: Position,
    ) -> Result<RhaiShared<Module>, Box<EvalAltResult>> {
        let not_found = || Box::new(EvalAltResult::ErrorModuleNotFound(path.to_string(), pos));
        let refuse = |why: String| {
            Box::new(EvalAltResult::ErrorRuntime(
                Dynamic::from(api::ApiError { message: why, token: Some(path.to_string()), help: None }),
                pos,
            ))
        };
        if path.is_empty() || path.contains("..") || Path::new(path).is_absolute() || path.contains(':') {
            return Err(refuse(format!(
                "cannot import \"{path}\": imports name a module in the set's own folder (no .., no absolute paths)"
            )));
        }
        let local = match &self.base {
            Some(Folder::Disk(base)) => {
                let file = base.join(format!("{path}.rhai"));
                match (std::fs::canonicalize(base), std::fs::canonicalize(&file)) {
                    (Ok(real_base), Ok(real)) if file.exists() => {
                        if !real.starts_with(&real_base) {
                            return Err(refuse(format!(
                                "cannot import \"{path}\": {path}.rhai leads outside the set's folder (a link?); imports stay inside it"
                            )));
                        }
                        let text = source::read_set(&file)
                            .map_err(|d| refuse(format!("cannot import \"{path}\": {}", d.message)))?;
                        Some((file.display().to_string(), file, text))
                    }
                    _ => None,
                }
            }
            Some(Folder::Files(files)) => files
                .get(&format!("{path}.rhai"))
                .map(|t| (format!("{path}.rhai"), PathBuf::from(format!("{path}.rhai")), t.clone())),
            None => None,
        };
        let (name, file, text) = match local {
            Some(found) => found,
            None => match STDLIB_MODULES.iter().find(|(n, _)| *n == path) {
                Some((n, text)) => (format!("stdlib/{n}.rhai"), PathBuf::new(), text.to_string()),
                None => return Err(not_found()),
            },
        };
        {
            let mut stack = self.stack.lock().unwrap_or_else(|p| p.into_inner());
            if stack.contains(&name) {
                let mut chain: Vec<String> = stack.iter().map(|s| module_name(s)).collect();
                chain.push(module_name(&name));
                return Err(refuse(format!(
                    "cannot import \"{path}\": modules import each other ({})",
                    chain.join(" -> ")
                )));
            }
            stack.push(name.clone());
        }
        self.read.lock().unwrap_or_else(|p| p.into_inner()).push((name.clone(), file, text.clone()));
        let result = (|| {
            if let Some((at, message, token)) = source::problem(&text) {
                let (line, column) = source::line_col(&text, at);
                // Rhai positions count to 65535 (never 0).
                let (line, column) = (line.clamp(1, u16::MAX as usize) as u16, column.min(u16::MAX as usize) as u16);
                let e = api::ApiError { message, token: Some(token.into()), help: None };
                return Err(Box::new(EvalAltResult::ErrorInModule(
                    name.clone(),
                    Box::new(EvalAltResult::ErrorRuntime(Dynamic::from(e), Position::new(line, column))),
                    pos,
                )));
            }
            let code = api::rewrite_channel_access(&text);
            let mut ast = engine.compile(&code).map_err(|e| {
                Box::new(EvalAltResult::ErrorInModule(
                    name.clone(),
                    Box::new(EvalAltResult::ErrorParsing(e.err_type().clone(), e.position())),
                    pos,
                ))
            })?;
            ast.set_source(name.as_str());
            Module::eval_ast_as_new(Scope::new(), &ast, engine)
                .map_err(|e| Box::new(EvalAltResult::ErrorInModule(name.clone(), e, pos)))
        })();
        self.stack.lock().unwrap_or_else(|p| p.into_inner()).pop();
        Ok(RhaiShared::new(result?))
    }
}

/// `text.pad(len, padding)`: pads `text` to `len` characters with `padding`
/// repeated (refusing an empty padding, and a length past the text limit).
fn pad_text(text: &mut rhai::ImmutableString, len: INT, padding: &str) -> Result<(), Box<EvalAltResult>> {
    let fail = |message: String| {
        let e = api::ApiError { message, token: Some("pad".into()), help: None };
        Box::new(EvalAltResult::ErrorRuntime(Dynamic::from(e), Position::NONE))
    };
    if padding.is_empty() {
        return Err(fail("pad needs a padding text of at least one character".into()));
    }
    if len > MAX_STRING_LEN as INT {
        return Err(fail(format!("a text grew past {MAX_STRING_LEN} characters, more than a set may build")));
    }
    let mut count = text.chars().count();
    if len <= 0 || count >= len as usize {
        return Ok(());
    }
    let mut out = text.to_string();
    'fill: loop {
        for c in padding.chars() {
            if count >= len as usize {
                break 'fill;
            }
            out.push(c);
            count += 1;
        }
    }
    *text = out.into();
    Ok(())
}

fn no_sleep() -> Box<EvalAltResult> {
    let e = api::ApiError {
        message:
            "sleep is not available in a set: a set is evaluated at once; timing belongs to patterns and the tempo"
                .into(),
        token: Some("sleep".into()),
        help: None,
    };
    Box::new(EvalAltResult::ErrorRuntime(Dynamic::from(e), Position::NONE))
}

/// A module's short name, from its file name.
fn module_name(path: &str) -> String {
    Path::new(path).file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| path.to_string())
}

struct EvalSources<'a> {
    main: &'a str,
    main_text: &'a str,
    modules: &'a [(String, PathBuf, String)],
}

impl Sources for EvalSources<'_> {
    fn text_of(&self, path: &str) -> Option<String> {
        if path == self.main {
            return Some(self.main_text.to_string());
        }
        self.modules.iter().find(|(n, _, _)| n == path).map(|(_, _, t)| t.clone())
    }

    fn main_path(&self) -> &str {
        self.main
    }
}

/// Builds Rhai engines with the set language and limits, and holds the stdlib.
pub struct ScriptHost {
    stdlib: Arc<Library>,
    /// Whether `stdlib` holds the stdlib (else it is empty: [`ScriptHost::without_stdlib`]).
    has_stdlib: bool,
    /// Fonts and samples loaded so far (a reload that keeps a file reuses it).
    samples: Arc<crate::samples::SampleLibrary>,
    /// Folders beyond the set's own that sets may read files from.
    sample_roots: Vec<PathBuf>,
}

impl ScriptHost {
    /// Evaluates the stdlib (once).
    pub fn new() -> Result<Self, Diagnostic> {
        let lib = match Self::stdlib_by_calls() {
            Some(lib) => lib,
            None => Self::stdlib_by_rhai()?,
        };
        Ok(ScriptHost {
            stdlib: Arc::new(lib),
            has_stdlib: true,
            samples: Default::default(),
            sample_roots: Vec::new(),
        })
    }

    /// The stdlib's library, each file's calls read by [`literal::calls`] and made
    /// directly (the same functions a set calls): what evaluating the files with
    /// Rhai gives, without Rhai's parser and engine (most of a render's start-up
    /// before). `None` if a file holds anything else, or a call fails (the caller
    /// then evaluates the stdlib with Rhai, which says where).
    fn stdlib_by_calls() -> Option<Library> {
        let state: Shared = Arc::new(Mutex::new(EvalState::new(Library::default(), Set::default(), false)));
        for (_, text) in STDLIB {
            for (name, args) in literal::calls(text)? {
                api::library_call(&state, &name, args)?.ok()?;
            }
        }
        let lib = std::mem::take(&mut state.lock().unwrap_or_else(|p| p.into_inner()).lib);
        Some(lib)
    }

    /// The stdlib's library, its files evaluated by Rhai.
    fn stdlib_by_rhai() -> Result<Library, Diagnostic> {
        let state: Shared = Arc::new(Mutex::new(EvalState::new(Library::default(), Set::default(), false)));
        let engine = Self::engine(&state, None, Arc::default());
        for (path, text) in STDLIB {
            let ast = engine.compile(text).map_err(|e| from_parse_error(&e, path, text))?;
            engine.run_ast(&ast).map_err(|e| {
                let src = EvalSources { main: path, main_text: text, modules: &[] };
                from_eval_error(&e, &src, &api::all_functions(), &api::usage)
            })?;
        }
        drop(engine);
        let lib = std::mem::take(&mut state.lock().unwrap_or_else(|p| p.into_inner()).lib);
        Ok(lib)
    }

    /// A host whose sets evaluate against an empty preset library: for a set that
    /// names nothing of the stdlib (the General MIDI rig on a SoundFont with both a
    /// melodic preset and a kit), which so starts without evaluating the stdlib.
    pub fn without_stdlib() -> Self {
        ScriptHost { stdlib: Arc::default(), has_stdlib: false, samples: Default::default(), sample_roots: Vec::new() }
    }

    /// Whether this host's sets see the stdlib's presets.
    pub fn has_stdlib(&self) -> bool {
        self.has_stdlib
    }

    /// This host's fonts, samples and folders, with the stdlib evaluated.
    pub fn with_stdlib(&self) -> Result<Self, Diagnostic> {
        Ok(ScriptHost { samples: self.samples.clone(), sample_roots: self.sample_roots.clone(), ..Self::new()? })
    }

    pub fn library(&self) -> &Library {
        &self.stdlib
    }

    /// The fonts and samples loaded so far.
    pub fn samples(&self) -> &Arc<crate::samples::SampleLibrary> {
        &self.samples
    }

    /// Lets sets read files beneath `folders` too (`--samples DIR`).
    pub fn allow_folders(&mut self, folders: &[PathBuf]) {
        self.sample_roots.extend(folders.iter().cloned());
    }

    /// The signature of every function a set can call (Rhai's packages and the set
    /// language), as `name(param: type, ...) -> type`.
    pub fn builtin_signatures(&self) -> Vec<String> {
        let state: Shared = Arc::new(Mutex::new(EvalState::new(Library::default(), Set::default(), false)));
        Self::engine(&state, None, Arc::default()).gen_fn_signatures(true)
    }

    fn engine(state: &Shared, base: Option<Folder>, read: Arc<Mutex<Vec<(String, PathBuf, String)>>>) -> Engine {
        let mut engine = Engine::new();
        engine.set_max_operations(MAX_OPERATIONS);
        engine.set_max_variables(MAX_VARIABLES);
        engine.set_max_functions(MAX_FUNCTIONS);
        // Memory is checked as the script runs (the operation limit alone lets a
        // few operations build gigabytes).
        let baseline = memory::held();
        // And time: an evaluation starts again from few operations.
        let clock = std::time::Instant::now();
        let (last_ops, started_ns) = (AtomicU64::new(u64::MAX), AtomicU64::new(0));
        engine.on_progress(move |ops| {
            let now_ns = || clock.elapsed().as_nanos() as u64;
            if ops < last_ops.swap(ops, Relaxed) {
                started_ns.store(now_ns(), Relaxed);
            }
            if memory::over_ceiling(baseline) {
                return Some(Dynamic::from(memory::MAX_SCRIPT_BYTES as INT));
            }
            (ops % CLOCK_EVERY_OPS == 0 && (now_ns() - started_ns.load(Relaxed)) as f64 > MAX_EVAL_SECONDS * 1e9)
                .then(|| Dynamic::from(TOOK_TOO_LONG))
        });
        engine.set_max_call_levels(MAX_CALL_DEPTH);
        engine.set_max_expr_depths(MAX_EXPR_DEPTH.0, MAX_EXPR_DEPTH.1);
        engine.set_max_string_size(MAX_STRING_LEN);
        engine.set_max_array_size(MAX_ARRAY_LEN);
        engine.set_max_map_size(MAX_MAP_LEN);
        engine.set_max_modules(MAX_MODULES);
        engine.disable_symbol("eval");
        engine.set_module_resolver(Resolver { base, read, stack: Arc::default() });
        // The channels as a variable everywhere (top level, functions, modules), so that
        // `ch(2).lowpass = 900` (rewritten to `c_[2].lowpass = 900`) works anywhere.
        let mut globals = Module::new();
        globals.set_var(api::CHANNELS_VAR, api::Channels);
        engine.register_global_module(globals.into());
        let printed = state.clone();
        engine.on_print(move |s| {
            let mut st = printed.lock().unwrap_or_else(|p| p.into_inner());
            match st.printed.len() {
                n if n < MAX_PRINTED_LINES => {
                    let line: String = s.chars().take(MAX_PRINTED_CHARS).collect();
                    st.printed.push(line);
                }
                n if n == MAX_PRINTED_LINES => st
                    .printed
                    .push(format!("(more printed lines are not kept: a set keeps its first {MAX_PRINTED_LINES})")),
                _ => {}
            }
        });
        // Nothing a set runs may block: a set is evaluated at once (timing belongs to
        // patterns and the tempo), and a reload must not stall the control thread.
        engine.register_fn("sleep", |_: INT| -> Result<(), Box<EvalAltResult>> { Err(no_sleep()) });
        engine.register_fn("sleep", |_: rhai::FLOAT| -> Result<(), Box<EvalAltResult>> { Err(no_sleep()) });
        // Rhai's own `pad` loops forever on an empty padding text.
        engine.register_fn("pad", pad_text);
        engine.on_debug(|_, _, _| {});
        api::register(&mut engine, state);
        engine
    }

    /// Evaluates a set file (a regular file of at most
    /// [`crate::files::MAX_SET_BYTES`], in UTF-8).
    pub fn eval_file(&self, path: &Path) -> Result<Evaluated, Diagnostic> {
        let shown = path.display().to_string();
        let text = source::read_set(path)?;
        let base = path.parent().map(|p| if p.as_os_str().is_empty() { PathBuf::from(".") } else { p.to_path_buf() });
        let mut ev = self.eval_source(&shown, &text, base, Set::default(), false)?;
        ev.files.insert(0, path.to_path_buf());
        ev.sources.insert(0, (path.to_path_buf(), text));
        Ok(ev)
    }

    /// Evaluates script text named `name`, on top of `base` (an empty set for a
    /// file; the live set for REPL lines, with `repl` allowing redeclaration).
    pub fn eval_source(
        &self,
        name: &str,
        text: &str,
        folder: Option<PathBuf>,
        base: Set,
        repl: bool,
    ) -> Result<Evaluated, Diagnostic> {
        self.eval_scoped(name, text, folder.map(Folder::Disk), base, repl, None).map(|(ev, _)| ev)
    }

    /// Evaluates script text named `name` whose modules come from `folder`.
    pub fn eval_in(
        &self,
        name: &str,
        text: &str,
        folder: Option<Folder>,
        base: Set,
        repl: bool,
    ) -> Result<Evaluated, Diagnostic> {
        self.eval_scoped(name, text, folder, base, repl, None).map(|(ev, _)| ev)
    }

    /// Evaluates a REPL line on top of the live set `base`, in `scope` (where the
    /// variables of earlier lines live, and this line's stay). Also returns the
    /// line's value, shown as the REPL shows it, if it has one.
    pub fn eval_repl(
        &self,
        text: &str,
        folder: Option<Folder>,
        base: Set,
        scope: &mut Scope<'static>,
    ) -> Result<(Evaluated, Option<String>), Diagnostic> {
        self.eval_scoped("repl", text, folder, base, true, Some(scope))
    }

    fn eval_scoped(
        &self,
        name: &str,
        text: &str,
        folder: Option<Folder>,
        base: Set,
        repl: bool,
        scope: Option<&mut Scope<'static>>,
    ) -> Result<(Evaluated, Option<String>), Diagnostic> {
        if text.len() as u64 > crate::files::MAX_SET_BYTES {
            return Err(Diagnostic::whole_file(
                name,
                format!(
                    "the script is {} bytes, more than the {} bytes a set may have",
                    text.len(),
                    crate::files::MAX_SET_BYTES
                ),
            ));
        }
        source::check_code(name, text)?;
        let mut es = EvalState::new((*self.stdlib).clone(), base, repl);
        es.library = self.samples.clone();
        let set_folder = match &folder {
            Some(Folder::Disk(p)) => Some(p.as_path()),
            _ => None,
        };
        es.roots = crate::samples::Roots::for_set(set_folder, &self.sample_roots);
        let state: Shared = Arc::new(Mutex::new(es));
        let read = Arc::new(Mutex::new(Vec::new()));
        let engine = Self::engine(&state, folder, read.clone());
        let code = api::rewrite_channel_access(text);
        let result = engine.compile(&code).map_err(|e| from_parse_error(&e, name, text)).and_then(|mut ast| {
            ast.set_source(name);
            let value = match scope {
                Some(scope) => engine.eval_ast_with_scope::<Dynamic>(scope, &ast).map(Some),
                None => engine.run_ast(&ast).map(|()| None),
            };
            value.map_err(|e| {
                let modules = read.lock().unwrap_or_else(|p| p.into_inner());
                let src = EvalSources { main: name, main_text: text, modules: &modules };
                from_eval_error(&e, &src, &api::all_functions(), &api::usage)
            })
        });
        drop(engine);
        let value = result?.filter(|v| !v.is_unit()).map(|v| api::show_value(&v));
        let mut st =
            Arc::try_unwrap(state).ok().expect("engine dropped").into_inner().unwrap_or_else(|p| p.into_inner());
        st.set.programs = st
            .lib
            .gm
            .iter()
            .filter_map(|(&p, name)| api::preset_channel(&st.lib, name).ok().map(|spec| (p, spec)))
            .collect();
        let sources: Vec<(PathBuf, String)> = read
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|(_, f, _)| !f.as_os_str().is_empty())
            .map(|(_, f, text)| (f.clone(), text.clone()))
            .collect();
        let mut files: Vec<PathBuf> = sources.iter().map(|(f, _)| f.clone()).collect();
        // Sample and font files are watched too (a changed sample is heard on the next note).
        files.extend(st.set.fonts.values().map(|f| f.path.clone()));
        files.extend(st.set.samples.iter().map(|s| s.path.clone()));
        files.extend(st.set.sample_folders.iter().cloned());
        files.sort();
        files.dedup();
        self.samples.trim();
        Ok((Evaluated { set: st.set, files, sources, printed: st.printed, notes: st.notes, gm: st.lib.gm }, value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The stdlib read as literal calls gives exactly the library Rhai's evaluation gives.
    #[test]
    fn the_stdlib_read_as_calls_is_the_stdlib_evaluated_by_rhai() {
        for (path, text) in STDLIB {
            assert!(literal::calls(text).is_some(), "{path} is not read as literal calls");
        }
        let by_calls = ScriptHost::stdlib_by_calls().expect("the stdlib read as calls");
        let by_rhai = ScriptHost::stdlib_by_rhai().expect("the stdlib evaluated by Rhai");
        assert_eq!(format!("{by_calls:?}"), format!("{by_rhai:?}"));
        assert!(by_calls.instruments.len() > 50 && by_calls.patterns.len() > 50 && by_calls.gm.len() == 128);
    }
}
