//! The files a user hands jamrig: inputs are read only if they are regular files of
//! bounded size (never a device, a FIFO or a folder), and an output may not be one of
//! the inputs or anything but a regular file. Control thread.

use std::io::Read;
use std::path::{Path, PathBuf};

/// The largest set or module file read (a set is a page of script, not megabytes).
pub const MAX_SET_BYTES: u64 = 128 * 1024;
/// The largest MIDI file read.
pub const MAX_MIDI_BYTES: u64 = 4 * 1024 * 1024;
/// The largest capture file (one part) read.
pub const MAX_CAPTURE_BYTES: u64 = 512 * 1024 * 1024;

/// An input or output that jamrig will not use.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("cannot read {path}: {reason}")]
    Io { path: String, reason: String },
    #[error("{path} is not a regular file ({kind}): give a {what} file")]
    NotRegular { path: String, kind: &'static str, what: &'static str },
    #[error("{path} is {size} bytes, more than the {limit} bytes a {what} file may have")]
    TooBig { path: String, size: u64, limit: u64, what: &'static str },
    #[error("{path} is also an input of this command: write the output to another file")]
    OutputIsInput { path: String },
    #[error("{path} exists and is not a WAV file: jamrig replaces only WAV files; remove it or choose another name")]
    NotWav { path: String },
    #[error("{path} exists and is not a regular file ({kind}): write the output to a file")]
    OutputNotRegular { path: String, kind: &'static str },
}

/// What a path is, in a word, for messages.
fn kind_of(meta: &std::fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    if t.is_dir() {
        "a folder"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_char_device() || t.is_block_device() {
        "a device"
    } else if t.is_socket() {
        "a socket"
    } else {
        "not a plain file"
    }
}

/// Reads `path` (following links) if it is a regular file of at most `limit` bytes.
/// `what` names the kind of file in messages ("set", "MIDI").
pub fn read_bounded(path: &Path, limit: u64, what: &'static str) -> Result<Vec<u8>, FileError> {
    let shown = path.display().to_string();
    let io = |e: std::io::Error| FileError::Io { path: shown.clone(), reason: e.to_string() };
    let meta = std::fs::metadata(path).map_err(io)?;
    if !meta.is_file() {
        return Err(FileError::NotRegular { path: shown, kind: kind_of(&meta), what });
    }
    if meta.len() > limit {
        return Err(FileError::TooBig { path: shown, size: meta.len(), limit, what });
    }
    let file = std::fs::File::open(path).map_err(io)?;
    // The file may grow between the check and the read: never read past the limit.
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(limit + 1).read_to_end(&mut bytes).map_err(io)?;
    if bytes.len() as u64 > limit {
        return Err(FileError::TooBig { path: shown, size: bytes.len() as u64, limit, what });
    }
    Ok(bytes)
}

/// Checks that `path` is a regular file of at most `limit` bytes without reading it
/// (for inputs read as a stream).
pub fn check_input(path: &Path, limit: u64, what: &'static str) -> Result<(), FileError> {
    let shown = path.display().to_string();
    let meta = std::fs::metadata(path).map_err(|e| FileError::Io { path: shown.clone(), reason: e.to_string() })?;
    if !meta.is_file() {
        return Err(FileError::NotRegular { path: shown, kind: kind_of(&meta), what });
    }
    if meta.len() > limit {
        return Err(FileError::TooBig { path: shown, size: meta.len(), limit, what });
    }
    Ok(())
}

/// The identity of an existing file (device and inode), following links.
fn identity(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// Refuses an output that is one of `inputs` (the same file by any name or link) or
/// that exists and is not a regular file (a device, a FIFO, a folder).
pub fn check_output(out: &Path, inputs: &[PathBuf]) -> Result<(), FileError> {
    let shown = out.display().to_string();
    if let Ok(meta) = std::fs::symlink_metadata(out) {
        // A link is judged by what it points to (renaming over it replaces the link).
        let meta = if meta.file_type().is_symlink() { std::fs::metadata(out).unwrap_or(meta) } else { meta };
        if !meta.is_file() && !meta.file_type().is_symlink() {
            return Err(FileError::OutputNotRegular { path: shown, kind: kind_of(&meta) });
        }
    }
    if let Some(id) = identity(out)
        && inputs.iter().any(|i| identity(i) == Some(id))
    {
        return Err(FileError::OutputIsInput { path: shown });
    }
    // Only a WAV is replaced: a set, a MIDI file or a capture given by mistake stays.
    if let Ok(mut f) = std::fs::File::open(out) {
        let mut head = [0u8; 4];
        let n = f.read(&mut head).unwrap_or(0);
        if n > 0 && !(head == *b"RIFF" || head == *b"RF64") {
            return Err(FileError::NotWav { path: shown });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_and_fifos_are_refused() {
        let e = read_bounded(Path::new("/dev/zero"), 100, "set").unwrap_err().to_string();
        assert!(e.contains("not a regular file (a device)"), "{e}");
        let e = check_output(Path::new("/dev/null"), &[]).unwrap_err().to_string();
        assert!(e.contains("a device"), "{e}");
    }

    #[test]
    fn an_output_that_is_an_input_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.rhai");
        std::fs::write(&a, "tempo(120);").unwrap();
        let link = dir.path().join("b.wav");
        std::os::unix::fs::symlink(&a, &link).unwrap();
        assert!(check_output(&a, std::slice::from_ref(&a)).is_err());
        assert!(check_output(&link, std::slice::from_ref(&a)).is_err());
        assert!(check_output(&dir.path().join("new.wav"), &[a]).is_ok());
        let wav = dir.path().join("old.wav");
        std::fs::write(&wav, b"RIFF....WAVE").unwrap();
        assert!(check_output(&wav, &[]).is_ok(), "a WAV is replaced");
        let e = check_output(&dir.path().join("a.rhai"), &[]).unwrap_err().to_string();
        assert!(e.contains("is not a WAV file"), "{e}");
    }

    #[test]
    fn sizes_are_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.mid");
        std::fs::write(&a, [0u8; 101]).unwrap();
        let e = read_bounded(&a, 100, "MIDI").unwrap_err().to_string();
        assert!(e.contains("more than the 100 bytes a MIDI file may have"), "{e}");
        assert_eq!(read_bounded(&a, 101, "MIDI").unwrap().len(), 101);
    }
}
