//! Watches a set, the modules it imports and the sample files and folders it reads.
//! It watches their folders, not the files (editors save by writing a new file and
//! renaming it over the old one), and reports a file once it is complete: closed
//! after writing, or renamed into place. A watched folder (a numbered sample bank)
//! is reported when a file in it is added, removed, renamed or rewritten.
//! Known limit: a program that writes the file in several open/close rounds
//! triggers one reload per round (the control thread merges events 5 ms apart).

use notify::event::{AccessKind, AccessMode, CreateKind, ModifyKind, RemoveKind, RenameMode};
use notify::{Event, EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

pub struct SetWatcher {
    _watcher: RecommendedWatcher,
    pub files: BTreeSet<PathBuf>,
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

/// Whether `event` completes a write of one of `files`: which one.
pub fn completed_write(event: &Event, files: &BTreeSet<PathBuf>) -> Option<PathBuf> {
    let done = matches!(
        event.kind,
        EventKind::Access(AccessKind::Close(AccessMode::Write))
            | EventKind::Modify(ModifyKind::Name(RenameMode::To | RenameMode::Both | RenameMode::Any))
    );
    let in_folder = done
        || matches!(
            event.kind,
            EventKind::Create(CreateKind::File | CreateKind::Any)
                | EventKind::Remove(RemoveKind::File | RemoveKind::Any)
                | EventKind::Modify(ModifyKind::Name(RenameMode::From))
        );
    if !in_folder {
        return None;
    }
    // For a rename with both paths, the destination is last.
    let file = event.paths.iter().rev().map(|p| absolute(p)).find(|p| done && files.contains(p));
    // A file coming, going or changing inside a watched folder: the folder.
    file.or_else(|| {
        event
            .paths
            .iter()
            .rev()
            .find_map(|p| absolute(p).parent().filter(|d| files.contains(*d)).map(Path::to_path_buf))
    })
}

/// Starts watching `files`; `notify` is called with the changed file.
pub fn watch(files: &[PathBuf], notify: impl Fn(PathBuf) + Send + 'static) -> notify::Result<SetWatcher> {
    let files: BTreeSet<PathBuf> = files.iter().map(|f| absolute(f)).collect();
    let watched = files.clone();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<Event>| {
        if let Ok(ev) = res
            && let Some(p) = completed_write(&ev, &watched)
        {
            notify(p);
        }
    })?;
    let folders: BTreeSet<PathBuf> = files
        .iter()
        .filter_map(|f| if f.is_dir() { Some(f.clone()) } else { f.parent().map(Path::to_path_buf) })
        .collect();
    for folder in &folders {
        watcher.watch(folder, RecursiveMode::NonRecursive)?;
    }
    Ok(SetWatcher { _watcher: watcher, files })
}
