//! Sampled sound on the control side: SoundFonts and user samples loaded, decoded
//! once and cached across reloads (a reload that keeps a file does not read it
//! again, and snapshots share the same bank), the set's sample bank composed at
//! the engine's rate, where a set may read files from, and where a General MIDI
//! SoundFont is found. Control (script) thread only.

pub mod decode;
pub mod soundfont;
pub mod store;

use crate::tables::bank::SampleBank;
use decode::Decoded;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// The largest SoundFont read (FluidR3_GM is 141 MB).
pub const MAX_FONT_BYTES: u64 = 2 << 30;
/// The largest sample file read.
pub const MAX_SAMPLE_BYTES: u64 = 512 << 20;
/// Files a sample folder may hold (a numbered bank).
pub const MAX_FOLDER_SAMPLES: usize = 256;
/// Extensions read as samples.
pub const SAMPLE_EXTENSIONS: &[&str] = &["wav", "flac", "ogg", "oga", "mp3"];
/// Folders searched for a General MIDI SoundFont, in order, after `$JAMRIG_SOUNDFONT`.
pub const GM_FONT_FOLDERS: &[&str] = &["/usr/share/sounds/sf2", "/usr/share/soundfonts", "/usr/local/share/soundfonts"];
/// Preferred General MIDI fonts, best first (any other .sf2/.sf3 found comes after).
pub const GM_FONT_NAMES: &[&str] =
    &["FluidR3_GM.sf2", "FluidR3_GM.sf3", "TimGM6mb.sf2", "default-GM.sf2", "default.sf2"];

/// Reads a whole file, refusing what is not a regular file or is larger than `limit`.
pub fn read_limited(path: &Path, limit: u64) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let mut file = open_limited(path, limit)?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).map_err(|e| format!("cannot read {}: {}", path.display(), io_reason(&e)))?;
    Ok(bytes)
}

/// Opens a file for reading in parts, refusing what is not a regular file or is
/// larger than `limit`.
pub(crate) fn open_limited(path: &Path, limit: u64) -> Result<std::fs::File, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("cannot read {}: {}", path.display(), io_reason(&e)))?;
    let meta = file.metadata().map_err(|e| format!("cannot read {}: {}", path.display(), io_reason(&e)))?;
    if !meta.is_file() {
        return Err(format!("{} is not a regular file", path.display()));
    }
    if meta.len() > limit {
        return Err(format!(
            "{} is {} MB, more than the {} MB jamrig reads",
            path.display(),
            meta.len() >> 20,
            limit >> 20
        ));
    }
    Ok(file)
}

fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => e.to_string(),
    }
}

/// A file's identity for the cache: a change of either means a new read.
fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

/// Shared, immutable data compared by identity (two sets holding the same bank are
/// equal; a reloaded file is a new one).
pub struct Shared<T>(pub Arc<T>);

impl<T> Clone for Shared<T> {
    fn clone(&self) -> Self {
        Shared(self.0.clone())
    }
}

impl<T> PartialEq for Shared<T> {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl std::fmt::Debug for Shared<SampleBank> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SampleBank({})", self.0.name)
    }
}

impl std::fmt::Debug for Shared<Decoded> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Decoded({} frames at {} Hz)", self.0.frames(), self.0.rate)
    }
}

#[derive(Default)]
struct Caches {
    fonts: HashMap<PathBuf, ((SystemTime, u64), Arc<SampleBank>)>,
    files: HashMap<PathBuf, ((SystemTime, u64), Arc<Decoded>)>,
}

/// Everything loaded so far, kept across reloads (control thread; the lock is only
/// ever taken there).
#[derive(Default)]
pub struct SampleLibrary {
    caches: Mutex<Caches>,
}

impl SampleLibrary {
    /// The font at `path`, read once while the file is unchanged.
    pub fn font(&self, path: &Path) -> Result<Arc<SampleBank>, String> {
        let key = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        let st = stamp(&key);
        let mut c = self.caches.lock().unwrap_or_else(|p| p.into_inner());
        if let (Some(s), Some((was, bank))) = (st, c.fonts.get(&key))
            && *was == s
        {
            return Ok(bank.clone());
        }
        let bank = Arc::new(soundfont::load(&key)?);
        if let Some(s) = st {
            c.fonts.insert(key, (s, bank.clone()));
        }
        Ok(bank)
    }

    /// The decoded sample at `path`, read once while the file is unchanged.
    pub fn sample(&self, path: &Path) -> Result<Arc<Decoded>, String> {
        let key = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        let st = stamp(&key);
        let mut c = self.caches.lock().unwrap_or_else(|p| p.into_inner());
        if let (Some(s), Some((was, d))) = (st, c.files.get(&key))
            && *was == s
        {
            return Ok(d.clone());
        }
        let bytes = read_limited(&key, MAX_SAMPLE_BYTES)?;
        let ext = key.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
        let d = Arc::new(decode::decode(bytes, ext.as_deref()).map_err(|e| format!("{} {e}", path.display()))?);
        if let Some(s) = st {
            c.files.insert(key, (s, d.clone()));
        }
        Ok(d)
    }

    /// Forgets what no set holds any more (entries only this cache references).
    pub fn trim(&self) {
        let mut c = self.caches.lock().unwrap_or_else(|p| p.into_inner());
        c.fonts.retain(|_, (_, b)| Arc::strong_count(b) > 1);
        c.files.retain(|_, (_, d)| Arc::strong_count(d) > 1);
    }
}

/// The environment variable naming more folders sets may read (separated by `:`).
pub const SAMPLE_PATH_ENV: &str = "JAMRIG_SAMPLE_PATH";

/// The user's config file naming more folders sets may read, one a line:
/// `$XDG_CONFIG_HOME/jamrig/sample-folders`, else `~/.config/jamrig/sample-folders`.
pub fn sample_folders_file() -> Option<PathBuf> {
    font_config_file().map(|f| f.with_file_name("sample-folders"))
}

/// Where a set may read sample and font files from: beneath its own folder, and
/// beneath the folders given with `--samples`, named in `$JAMRIG_SAMPLE_PATH`
/// (separated by `:`) or listed in [`sample_folders_file`].
#[derive(Clone, Debug, Default)]
pub struct Roots {
    pub folders: Vec<PathBuf>,
}

impl Roots {
    /// The set's folder and the folders the environment names.
    pub fn for_set(set_folder: Option<&Path>, extra: &[PathBuf]) -> Self {
        let mut folders: Vec<PathBuf> = set_folder.map(Path::to_path_buf).into_iter().collect();
        folders.extend(extra.iter().cloned());
        if let Some(env) = std::env::var_os(SAMPLE_PATH_ENV) {
            folders.extend(std::env::split_paths(&env).filter(|p| !p.as_os_str().is_empty()));
        }
        if let Some(text) = sample_folders_file().and_then(|f| std::fs::read_to_string(f).ok()) {
            folders.extend(
                text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(PathBuf::from),
            );
        }
        Roots { folders: folders.iter().filter_map(|f| std::fs::canonicalize(f).ok()).collect() }
    }

    /// Resolves `name` (relative to the set's folder, the first root) and checks it
    /// lies beneath a root, links followed. The error says what is allowed.
    pub fn resolve(&self, name: &str) -> Result<PathBuf, String> {
        let p = Path::new(name);
        let joined = match (p.is_absolute(), self.folders.first()) {
            (true, _) => p.to_path_buf(),
            (false, Some(base)) => base.join(p),
            (false, None) => p.to_path_buf(),
        };
        let real = std::fs::canonicalize(&joined)
            .map_err(|e| format!("cannot read {}: {}", joined.display(), io_reason(&e)))?;
        if self.folders.iter().any(|root| real.starts_with(root)) {
            Ok(real)
        } else {
            Err(format!(
                "{name} is outside the set's folder; a set reads files beneath its own folder, or beneath folders \
                 named with --samples DIR, in ${SAMPLE_PATH_ENV} or in ~/.config/jamrig/sample-folders"
            ))
        }
    }
}

/// The sample files of a folder (a numbered bank), sorted by name.
pub fn folder_samples(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let rd =
        std::fs::read_dir(dir).map_err(|e| format!("cannot read the folder {}: {}", dir.display(), io_reason(&e)))?;
    let mut files: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file()
                && p.extension()
                    .and_then(|e| e.to_str())
                    .is_some_and(|e| SAMPLE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
        })
        .collect();
    files.sort();
    if files.len() > MAX_FOLDER_SAMPLES {
        return Err(format!(
            "{} holds {} samples; a bank takes up to {MAX_FOLDER_SAMPLES}",
            dir.display(),
            files.len()
        ));
    }
    Ok(files)
}

/// A General MIDI SoundFont found without being named, and where it was found.
#[derive(Clone, Debug, PartialEq)]
pub struct FoundFont {
    pub path: PathBuf,
    /// Where it came from, for the line that says which font plays: `$JAMRIG_SOUNDFONT`,
    /// the config file's path, or the folder searched.
    pub from: String,
}

/// The environment variable naming a General MIDI SoundFont.
pub const SOUNDFONT_ENV: &str = "JAMRIG_SOUNDFONT";

/// The user's config file naming a General MIDI SoundFont (a file holding one path):
/// `$XDG_CONFIG_HOME/jamrig/soundfont`, else `~/.config/jamrig/soundfont`.
pub fn font_config_file() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".config")))?;
    Some(base.join("jamrig").join("soundfont"))
}

/// The General MIDI SoundFont to use when none is named: `$JAMRIG_SOUNDFONT`, then
/// the config file ([`font_config_file`]), then the usual system folders
/// ([`GM_FONT_FOLDERS`], preferred names first).
pub fn find_gm_font() -> Option<FoundFont> {
    let folders: Vec<PathBuf> = GM_FONT_FOLDERS.iter().map(PathBuf::from).collect();
    search_gm_font(std::env::var_os(SOUNDFONT_ENV).map(PathBuf::from), font_config_file(), &folders)
}

/// [`find_gm_font`] with its places given: a path from the environment, the config
/// file, and the folders to search in order. A place that names no readable file is
/// passed over.
pub fn search_gm_font(env: Option<PathBuf>, config: Option<PathBuf>, folders: &[PathBuf]) -> Option<FoundFont> {
    if let Some(p) = env.filter(|p| !p.as_os_str().is_empty())
        && p.is_file()
    {
        return Some(FoundFont { path: p, from: format!("${SOUNDFONT_ENV}") });
    }
    if let Some(conf) = config
        && let Ok(text) = std::fs::read_to_string(&conf)
    {
        let p = PathBuf::from(text.trim());
        if !text.trim().is_empty() && p.is_file() {
            return Some(FoundFont { path: p, from: conf.display().to_string() });
        }
    }
    for dir in folders {
        let from = dir.display().to_string();
        for name in GM_FONT_NAMES {
            let p = dir.join(name);
            if p.is_file() {
                return Some(FoundFont { path: p, from });
            }
        }
        if let Ok(rd) = std::fs::read_dir(dir) {
            let mut any: Vec<PathBuf> = rd
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.is_file()
                        && p.extension()
                            .and_then(|e| e.to_str())
                            .is_some_and(|e| e.eq_ignore_ascii_case("sf2") || e.eq_ignore_ascii_case("sf3"))
                })
                .collect();
            any.sort();
            if let Some(p) = any.into_iter().next() {
                return Some(FoundFont { path: p, from });
            }
        }
    }
    None
}
