//! Crash-safe small files: an exclusive lock beside a file, and writes that
//! leave either the old or the new content, never a torn one.
//!
//! The registry (one per repository) and the port ledger (one per user)
//! both change their file as *lock, read, change, write*: [`lock`] takes an
//! flock-style lock on a lock file (released by the kernel if the process
//! dies), and [`write_atomic`] writes a temporary file in the same
//! directory, fsyncs it, renames it over the old one and fsyncs the
//! directory so the rename itself survives a crash. Readers need no lock:
//! rename is atomic.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use thiserror::Error;

use crate::error::{Diagnostic, ErrorKind};

/// A file could not be locked, read or written.
#[derive(Debug, Error)]
#[error("{}: {action}: {source}", path.display())]
pub struct FileError {
    pub path: PathBuf,
    pub action: &'static str,
    pub source: std::io::Error,
}

impl Diagnostic for FileError {
    fn kind(&self) -> ErrorKind {
        ErrorKind::Internal
    }
}

fn at<'a>(path: &'a Path, action: &'static str) -> impl FnOnce(std::io::Error) -> FileError + 'a {
    move |source| FileError { path: path.to_path_buf(), action, source }
}

/// An exclusive lock, held until dropped.
#[derive(Debug)]
pub struct Lock {
    _file: File,
}

/// Take the exclusive lock on `lock_path` (created, with its directory, if
/// missing), waiting for another holder to let go.
pub fn lock(lock_path: &Path) -> Result<Lock, FileError> {
    if let Some(dir) = lock_path.parent() {
        std::fs::create_dir_all(dir).map_err(at(dir, "create directory"))?;
    }
    let file = OpenOptions::new().create(true).truncate(false).write(true).open(lock_path).map_err(at(lock_path, "open lock"))?;
    file.lock().map_err(at(lock_path, "lock"))?;
    Ok(Lock { _file: file })
}

/// The content of `path`, `None` when there is no such file.
pub fn read_optional(path: &Path) -> Result<Option<String>, FileError> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(at(path, "read")(e)),
    }
}

/// Replace `path` with `bytes` atomically and durably (temporary file in the
/// same directory, fsync, rename, fsync of the directory). The directory is
/// created if missing.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), FileError> {
    // Unique within the process too: two threads of a server may write
    // different files of one directory at once.
    static COUNT: AtomicU64 = AtomicU64::new(0);
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(at(dir, "create directory"))?;
    let name = path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    let tmp = dir.join(format!("{name}.tmp.{}.{}", std::process::id(), COUNT.fetch_add(1, Ordering::Relaxed)));
    let result = (|| {
        let mut file = File::create(&tmp).map_err(at(path, "create temporary file"))?;
        file.write_all(bytes).map_err(at(path, "write"))?;
        file.sync_all().map_err(at(path, "fsync"))?;
        drop(file);
        std::fs::rename(&tmp, path).map_err(at(path, "rename"))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result?;
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_replace_whole_files_and_leave_no_temporary_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/f.toml");
        assert_eq!(read_optional(&path).unwrap(), None);
        write_atomic(&path, b"one").unwrap();
        write_atomic(&path, b"two").unwrap();
        assert_eq!(read_optional(&path).unwrap().as_deref(), Some("two"));
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap()).unwrap().flatten().map(|e| e.file_name()).collect();
        assert_eq!(names, ["f.toml"]);
    }

    #[test]
    fn the_lock_serialises_read_modify_write() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("n");
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let path = path.clone();
                std::thread::spawn(move || {
                    for _ in 0..10 {
                        let _l = lock(&path.with_extension("lock")).unwrap();
                        let n: u32 = read_optional(&path).unwrap().map_or(0, |s| s.parse().unwrap());
                        write_atomic(&path, (n + 1).to_string().as_bytes()).unwrap();
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(read_optional(&path).unwrap().as_deref(), Some("80"));
    }
}
