//! Telling whether a file changed since it was last read, without reading
//! it: device, inode, size and modification time. iso replaces its files by
//! renaming a new one over the old, which always gives a new inode, so a
//! write is never missed even within one mtime tick.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime_ns: i128,
}

impl FileStamp {
    /// The file's stamp now; `None` when it does not exist (or cannot be
    /// looked at, which reads the same: "not what it was").
    pub fn of(path: &Path) -> Option<FileStamp> {
        let m = std::fs::metadata(path).ok()?;
        Some(FileStamp { dev: m.dev(), ino: m.ino(), len: m.len(), mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rename_over_the_file_changes_the_stamp() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        assert_eq!(FileStamp::of(&f), None);
        std::fs::write(&f, "one").unwrap();
        let a = FileStamp::of(&f).unwrap();
        assert_eq!(FileStamp::of(&f), Some(a), "unchanged");
        let tmp = dir.path().join("f.tmp");
        std::fs::write(&tmp, "two").unwrap();
        std::fs::rename(&tmp, &f).unwrap();
        assert_ne!(FileStamp::of(&f), Some(a), "same size, same second, new file");
    }
}
