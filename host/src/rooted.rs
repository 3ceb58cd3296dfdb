//! The one way iso writes inside a worktree: through a directory handle
//! rooted at it, never by path.
//!
//! A worktree holds whatever its branch holds, symlinks included: a
//! `.env.thread` committed as a link to `~/.bashrc` must not make
//! `iso init` overwrite `~/.bashrc`. [`Root`] opens the directory once and
//! resolves every path beneath it with `openat`-style calls (cap-primitives,
//! the Bytecode Alliance crate wasmtime-wasi's own sandbox is built on, so
//! no new dependency is compiled):
//!
//! - writes ([`Root::write`], [`Root::copy_new`], [`Root::remove`],
//!   [`Root::rename`]) refuse a symlink at the file and at every directory
//!   on the way to it, with an error that names the file and says it came
//!   from the branch; missing directories are created (never through a
//!   link), and a file is replaced atomically (a temporary file in the same
//!   directory, renamed over it);
//! - reads ([`Root::read`], [`Root::exists`]) may follow symlinks, but only
//!   ones that stay beneath the root: a link out of it is an error.
//!
//! Paths are relative to the root; an absolute path or a `..` is refused.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use cap_primitives::fs::{self as cap, FollowSymlinks, OpenOptions, OpenOptionsExt};
use thiserror::Error;

use crate::error::{Diagnostic, ErrorKind};

#[derive(Debug, Error)]
pub enum RootedError {
    /// A symlink where iso wanted to write (or on the way there).
    #[error("{} is a symlink{}: it came from the branch, and iso never writes through a link", .root.join(.link).display(), via(.path, .link))]
    Symlink { root: PathBuf, path: PathBuf, link: PathBuf },
    /// An absolute path or `..` where a path beneath the root was expected.
    #[error("`{}` is not a path inside {}", .path.display(), .root.display())]
    Outside { root: PathBuf, path: PathBuf },
    #[error("{action} {}: {source}", .path.display())]
    Io { action: &'static str, path: PathBuf, source: std::io::Error },
}

fn via(path: &Path, link: &Path) -> String {
    if path == link {
        String::new()
    } else {
        format!(" (on the way to {})", path.display())
    }
}

impl Diagnostic for RootedError {
    fn kind(&self) -> ErrorKind {
        match self {
            RootedError::Symlink { .. } | RootedError::Outside { .. } => ErrorKind::Invalid,
            RootedError::Io { .. } => ErrorKind::Internal,
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            RootedError::Symlink { link, .. } => {
                Some(format!("remove the link from the branch (`git rm {}` and commit), or start the thread from another base", link.display()))
            }
            RootedError::Outside { .. } => Some("use a path relative to the worktree, without `..`".into()),
            RootedError::Io { .. } => None,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            RootedError::Symlink { .. } => "symlink",
            RootedError::Outside { .. } => "outside",
            RootedError::Io { .. } => "internal",
        }
    }
}

/// A directory iso writes beneath (a worktree).
#[derive(Debug)]
pub struct Root {
    dir: File,
    path: PathBuf,
}

/// Tells the temporary files of concurrent writes apart.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl Root {
    /// Open the directory at `path` (the root itself is iso's own path,
    /// such as `.worktrees/thread-3`, and is opened as it is).
    pub fn open(path: &Path) -> Result<Root, RootedError> {
        let dir = cap::open_ambient_dir(path, cap_primitives::ambient_authority()).map_err(io("open", path))?;
        Ok(Root { dir, path: path.to_path_buf() })
    }

    /// The root's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The full path of `rel`, for messages.
    pub fn display(&self, rel: &Path) -> PathBuf {
        self.path.join(rel)
    }

    /// `rel` as plain names, or `Outside`.
    fn names(&self, rel: &Path) -> Result<Vec<OsString>, RootedError> {
        let mut names = Vec::new();
        for c in rel.components() {
            match c {
                Component::Normal(n) => names.push(n.to_os_string()),
                Component::CurDir => {}
                _ => return Err(RootedError::Outside { root: self.path.clone(), path: rel.to_path_buf() }),
            }
        }
        if names.is_empty() {
            return Err(RootedError::Outside { root: self.path.clone(), path: rel.to_path_buf() });
        }
        Ok(names)
    }

    /// The directory holding `rel` (created with its parents when `create`)
    /// and the file's name in it; no symlink on the way.
    fn parent_of(&self, rel: &Path, create: bool) -> Result<(File, OsString), RootedError> {
        let mut names = self.names(rel)?;
        let file = names.pop().expect("at least one name");
        let mut dir = self.dir.try_clone().map_err(io("open", &self.path))?;
        let mut walked = PathBuf::new();
        for name in names {
            walked.push(&name);
            let next = match cap::open_dir_nofollow(&dir, Path::new(&name)) {
                Ok(d) => d,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => {
                    match cap::create_dir(&dir, Path::new(&name), &cap::DirOptions::new()) {
                        Ok(()) => {}
                        // Made by a concurrent writer in between.
                        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                        Err(e) => return Err(io("create directory", &self.path.join(&walked))(e)),
                    }
                    cap::open_dir_nofollow(&dir, Path::new(&name)).map_err(|e| self.explain(&dir, &name, rel, &walked, "open", e))?
                }
                Err(e) => return Err(self.explain(&dir, &name, rel, &walked, "open", e)),
            };
            dir = next;
        }
        Ok((dir, file))
    }

    /// An error opening `name` in `dir` in words: a symlink is named as one.
    fn explain(&self, dir: &File, name: &OsString, rel: &Path, walked: &Path, action: &'static str, e: std::io::Error) -> RootedError {
        if is_symlink(dir, name) {
            RootedError::Symlink { root: self.path.clone(), path: rel.to_path_buf(), link: walked.to_path_buf() }
        } else {
            io(action, &self.path.join(walked))(e)
        }
    }

    /// Refuse a symlink at `name` in `dir` (the file about to be written).
    fn no_link_at(&self, dir: &File, name: &OsString, rel: &Path) -> Result<(), RootedError> {
        if is_symlink(dir, name) {
            return Err(RootedError::Symlink { root: self.path.clone(), path: rel.to_path_buf(), link: rel.to_path_buf() });
        }
        Ok(())
    }

    /// Write `bytes` to `rel`, replacing it atomically; the directories on
    /// the way are created. A file that existed keeps its permissions.
    pub fn write(&self, rel: &Path, bytes: &[u8]) -> Result<(), RootedError> {
        let (dir, name) = self.parent_of(rel, true)?;
        self.no_link_at(&dir, &name, rel)?;
        let mode = cap::stat(&dir, Path::new(&name), FollowSymlinks::No).ok().map(|m| cap_primitives::fs::MetadataExt::mode(&m));
        self.replace(&dir, &name, rel, bytes, mode)
    }

    /// Copy the file at `from` (outside the root: the main checkout) to
    /// `rel` with its permissions, unless something is already there.
    /// Returns whether it copied; a symlink at `rel` is an error.
    pub fn copy_new(&self, from: &Path, rel: &Path) -> Result<bool, RootedError> {
        let (dir, name) = self.parent_of(rel, true)?;
        self.no_link_at(&dir, &name, rel)?;
        if cap::stat(&dir, Path::new(&name), FollowSymlinks::No).is_ok() {
            return Ok(false);
        }
        let bytes = std::fs::read(from).map_err(io("read", from))?;
        let mode = std::fs::metadata(from).ok().map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()));
        self.replace(&dir, &name, rel, &bytes, mode)?;
        Ok(true)
    }

    /// Copy the regular file `from` (outside the root: the main checkout) to
    /// `rel` unless something is already there, keeping its mode and mtime.
    /// The data is shared (a reflink, `FICLONE`) where the filesystem can
    /// (XFS with reflink, btrfs), else copied (`copy_file_range`). `from` is
    /// opened with `O_NOFOLLOW`: a link there is never followed. Returns
    /// whether it copied; a symlink at `rel` or on the way is an error.
    pub fn clone_new(&self, from: &Path, rel: &Path) -> Result<bool, RootedError> {
        let (dir, name) = self.parent_of(rel, true)?;
        self.clone_into(&dir, &name, from, rel)
    }

    /// The directory that holds the file `rel` (created with its parents if
    /// missing), reached without following a link on the way, for
    /// [`Root::clone_in`]: many files of one directory are copied without
    /// walking to it again for each.
    pub fn parent_dir(&self, rel: &Path) -> Result<File, RootedError> {
        Ok(self.parent_of(rel, true)?.0)
    }

    /// [`Root::clone_new`] into `dir` (from [`Root::parent_dir`] of `rel`)
    /// as `name`.
    pub fn clone_in(&self, dir: &File, name: &OsStr, from: &Path, rel: &Path) -> Result<bool, RootedError> {
        self.clone_into(dir, &name.to_os_string(), from, rel)
    }

    fn clone_into(&self, dir: &File, name: &OsString, from: &Path, rel: &Path) -> Result<bool, RootedError> {
        use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt};
        let src = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW).open(from).map_err(io("read", from))?;
        let meta = src.metadata().map_err(io("read", from))?;
        let mode = meta.permissions().mode() & 0o7777;
        let full = self.display(rel);
        // `create_new` is O_CREAT|O_EXCL: whatever is at `name` (a file from
        // the checkout, a symlink from the branch) is left alone and never
        // followed, so nothing is replaced and no temporary file is needed.
        let mut opts = OpenOptions::new();
        opts.write(true).create_new(true)._cap_fs_ext_follow(FollowSymlinks::No);
        opts.mode(mode);
        let mut f = match cap::open(dir, Path::new(name), &opts) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                self.no_link_at(dir, name, rel)?;
                return Ok(false);
            }
            Err(e) => return Err(io("create", &full)(e)),
        };
        let result = (|| {
            clone_or_copy(&src, &mut f).map_err(io("copy", &full))?;
            // The mode at creation is reduced by the umask; an executable stays one.
            f.set_permissions(std::fs::Permissions::from_mode(mode)).map_err(io("set permissions of", &full))?;
            let times = std::fs::FileTimes::new();
            let times = match (meta.modified(), meta.accessed()) {
                (Ok(m), Ok(a)) => times.set_modified(m).set_accessed(a),
                (Ok(m), Err(_)) => times.set_modified(m),
                _ => times,
            };
            f.set_times(times).map_err(io("set the times of", &full))
        })();
        if result.is_err() {
            drop(f);
            let _ = cap::remove_file(dir, Path::new(name));
        }
        result.map(|()| true)
    }

    /// Make `rel` a symlink to `target` (stored as it is, never resolved by
    /// iso) unless something is already there. Returns whether it made one;
    /// a symlink on the way to `rel` is an error.
    pub fn symlink_new(&self, target: &Path, rel: &Path) -> Result<bool, RootedError> {
        let (dir, name) = self.parent_of(rel, true)?;
        if cap::stat(&dir, Path::new(&name), FollowSymlinks::No).is_ok() {
            return Ok(false);
        }
        // `symlinkat` on the directory handle and one plain name: nothing on
        // the way is followed.
        rustix::fs::symlinkat(target, &dir, Path::new(&name)).map_err(|e| io("create the link", &self.display(rel))(e.into()))?;
        Ok(true)
    }

    /// Create the directory `rel` (and the ones on the way) unless it
    /// exists; a symlink there or on the way is an error.
    pub fn create_dir(&self, rel: &Path) -> Result<(), RootedError> {
        let (dir, name) = self.parent_of(rel, true)?;
        self.no_link_at(&dir, &name, rel)?;
        match cap::create_dir(&dir, Path::new(&name), &cap::DirOptions::new()) {
            Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => Err(io("create directory", &self.display(rel))(e)),
            _ => Ok(()),
        }
    }

    /// Set the modification time of the directory `rel` (best kept last,
    /// after what is written into it).
    pub fn set_dir_mtime(&self, rel: &Path, mtime: std::time::SystemTime) -> Result<(), RootedError> {
        let (dir, name) = self.parent_of(rel, false)?;
        self.no_link_at(&dir, &name, rel)?;
        let since = mtime.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let ts = rustix::fs::Timestamps {
            last_access: rustix::fs::Timespec { tv_sec: 0, tv_nsec: rustix::fs::UTIME_OMIT },
            last_modification: rustix::fs::Timespec { tv_sec: since.as_secs() as i64, tv_nsec: i64::from(since.subsec_nanos()) },
        };
        // On the handle of its parent and one name, not following a link
        // (the handles here are `O_PATH`, which `futimens` refuses).
        rustix::fs::utimensat(&dir, Path::new(&name), &ts, rustix::fs::AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| io("set the times of", &self.display(rel))(e.into()))
    }

    /// Write a temporary file beside `name` in `dir` and rename it over `name`.
    fn replace(&self, dir: &File, name: &OsString, rel: &Path, bytes: &[u8], mode: Option<u32>) -> Result<(), RootedError> {
        let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let tmp = OsString::from(format!(".{}.iso-tmp-{}-{n}", name.to_string_lossy(), std::process::id()));
        let full = self.display(rel);
        let mut opts = OpenOptions::new();
        opts.write(true).create_new(true)._cap_fs_ext_follow(FollowSymlinks::No);
        if let Some(m) = mode {
            opts.mode(m & 0o7777);
        }
        let result = (|| {
            let mut f = cap::open(dir, Path::new(&tmp), &opts).map_err(io("create a temporary file for", &full))?;
            f.write_all(bytes).map_err(io("write", &full))?;
            if let Some(m) = mode {
                // `mode` at creation is reduced by the umask; the old file's is kept whole.
                f.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(m & 0o7777)).map_err(io("set permissions of", &full))?;
            }
            drop(f);
            cap::rename(dir, Path::new(&tmp), dir, Path::new(name)).map_err(io("rename into", &full))
        })();
        if result.is_err() {
            let _ = cap::remove_file(dir, Path::new(&tmp));
        }
        result
    }

    /// The bytes of `rel`; symlinks are followed only while they stay
    /// beneath the root.
    pub fn read(&self, rel: &Path) -> Result<Vec<u8>, RootedError> {
        self.names(rel)?;
        let mut opts = OpenOptions::new();
        opts.read(true);
        let mut f = cap::open(&self.dir, rel, &opts).map_err(|e| self.escape_or(rel, "read", e))?;
        let mut out = Vec::new();
        f.read_to_end(&mut out).map_err(io("read", &self.display(rel)))?;
        Ok(out)
    }

    /// Whether `rel` exists (following symlinks that stay beneath the root).
    pub fn exists(&self, rel: &Path) -> Result<bool, RootedError> {
        self.names(rel)?;
        match cap::stat(&self.dir, rel, FollowSymlinks::Yes) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(self.escape_or(rel, "look at", e)),
        }
    }

    /// Remove the file `rel` (a symlink on the way is an error).
    pub fn remove(&self, rel: &Path) -> Result<(), RootedError> {
        let (dir, name) = self.parent_of(rel, false)?;
        self.no_link_at(&dir, &name, rel)?;
        cap::remove_file(&dir, Path::new(&name)).map_err(io("remove", &self.display(rel)))
    }

    /// Rename `from` to `to`, both beneath the root; the directories on the
    /// way to `to` are created.
    pub fn rename(&self, from: &Path, to: &Path) -> Result<(), RootedError> {
        let (from_dir, from_name) = self.parent_of(from, false)?;
        self.no_link_at(&from_dir, &from_name, from)?;
        let (to_dir, to_name) = self.parent_of(to, true)?;
        self.no_link_at(&to_dir, &to_name, to)?;
        cap::rename(&from_dir, Path::new(&from_name), &to_dir, Path::new(&to_name)).map_err(io("rename", &self.display(from)))
    }

    /// cap-primitives reports a path that would leave the root as
    /// `PermissionDenied` ("a path led outside of the filesystem"): say so.
    fn escape_or(&self, rel: &Path, action: &'static str, e: std::io::Error) -> RootedError {
        if e.kind() == std::io::ErrorKind::PermissionDenied && e.to_string().contains("outside") {
            RootedError::Outside { root: self.path.clone(), path: rel.to_path_buf() }
        } else {
            io(action, &self.display(rel))(e)
        }
    }
}

/// Put the data of `src` into the new, empty `dst`: shared with a reflink
/// (`FICLONE`) where the filesystem can (XFS with reflink, btrfs), else
/// copied (std's copy uses `copy_file_range`, no user-space buffers).
/// Returns whether it was a reflink. (The volume copies of `services` split
/// big files into ranges copied in parallel, so they clone and copy on
/// their own.)
pub fn clone_or_copy(src: &File, dst: &mut File) -> std::io::Result<bool> {
    if rustix::fs::ioctl_ficlone(&*dst, src).is_ok() {
        return Ok(true);
    }
    std::io::copy(&mut &*src, dst)?;
    Ok(false)
}

fn is_symlink(dir: &File, name: &OsString) -> bool {
    cap::stat(dir, Path::new(name), FollowSymlinks::No).is_ok_and(|m| m.file_type().is_symlink())
}

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> RootedError {
    let path = path.to_path_buf();
    move |source| RootedError::Io { action, path, source }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn setup() -> (tempfile::TempDir, PathBuf, Root) {
        let dir = tempfile::tempdir().unwrap();
        let wt = dir.path().join("wt");
        std::fs::create_dir_all(wt.join("sub")).unwrap();
        std::fs::write(dir.path().join("target.txt"), "outside").unwrap();
        let root = Root::open(&wt).unwrap();
        (dir, wt, root)
    }

    #[test]
    fn writes_create_directories_and_replace_atomically() {
        let (_d, wt, root) = setup();
        root.write(Path::new("a/b/c.txt"), b"one").unwrap();
        root.write(Path::new("a/b/c.txt"), b"two").unwrap();
        assert_eq!(std::fs::read_to_string(wt.join("a/b/c.txt")).unwrap(), "two");
        let left: Vec<_> = std::fs::read_dir(wt.join("a/b")).unwrap().flatten().map(|e| e.file_name()).collect();
        assert_eq!(left.len(), 1, "no temporary file left: {left:?}");
        assert_eq!(root.read(Path::new("a/b/c.txt")).unwrap(), b"two");
        assert!(root.exists(Path::new("a/b")).unwrap());
        root.rename(Path::new("a/b/c.txt"), Path::new("d/e.txt")).unwrap();
        root.remove(Path::new("d/e.txt")).unwrap();
        assert!(!root.exists(Path::new("d/e.txt")).unwrap());
    }

    #[test]
    fn a_symlink_at_the_file_or_on_the_way_is_refused_and_its_target_untouched() {
        let (d, wt, root) = setup();
        let target = d.path().join("target.txt");
        symlink(&target, wt.join(".env.thread")).unwrap();
        symlink(d.path(), wt.join("linkdir")).unwrap();
        symlink(d.path().join("nowhere.txt"), wt.join("dangling")).unwrap();
        symlink("sub", wt.join("inner")).unwrap();
        for (rel, link) in
            [(".env.thread", ".env.thread"), ("linkdir/target.txt", "linkdir"), ("linkdir/new/x", "linkdir"), ("dangling", "dangling"), ("inner/x", "inner")]
        {
            let e = root.write(Path::new(rel), b"pwned").unwrap_err();
            match &e {
                RootedError::Symlink { link: l, .. } => assert_eq!(l, Path::new(link), "{rel}: {e}"),
                other => panic!("{rel}: {other}"),
            }
            assert!(e.to_string().contains("came from the branch"), "{e}");
        }
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "outside");
        assert!(!d.path().join("nowhere.txt").exists(), "a dangling link creates nothing");
        assert!(!d.path().join("new").exists());
        assert!(matches!(root.copy_new(&target, Path::new(".env.thread")), Err(RootedError::Symlink { .. })));
        assert!(matches!(root.remove(Path::new(".env.thread")), Err(RootedError::Symlink { .. })));
        assert!(matches!(root.rename(Path::new("sub"), Path::new("dangling")), Err(RootedError::Symlink { .. })));
    }

    #[test]
    fn reads_follow_links_only_beneath_the_root() {
        let (_d, wt, root) = setup();
        std::fs::write(wt.join("sub/x"), "inside").unwrap();
        symlink("sub/x", wt.join("inner-link")).unwrap();
        symlink("/etc/passwd", wt.join("passwd")).unwrap();
        assert_eq!(root.read(Path::new("inner-link")).unwrap(), b"inside");
        assert!(matches!(root.read(Path::new("passwd")), Err(RootedError::Outside { .. })), "{:?}", root.read(Path::new("passwd")));
        assert!(matches!(root.read(Path::new("../target.txt")), Err(RootedError::Outside { .. })));
        assert!(matches!(root.write(Path::new("/etc/x"), b""), Err(RootedError::Outside { .. })));
        assert!(matches!(root.write(Path::new("."), b""), Err(RootedError::Outside { .. })));
    }

    #[test]
    fn copies_keep_permissions_and_never_overwrite() {
        let (d, wt, root) = setup();
        let src = d.path().join("secret.env");
        std::fs::write(&src, "S=1").unwrap();
        std::fs::set_permissions(&src, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        assert!(root.copy_new(&src, Path::new("conf/.env")).unwrap());
        let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(wt.join("conf/.env")).unwrap().permissions());
        assert_eq!(mode & 0o777, 0o600);
        std::fs::write(&src, "S=2").unwrap();
        assert!(!root.copy_new(&src, Path::new("conf/.env")).unwrap());
        assert_eq!(std::fs::read_to_string(wt.join("conf/.env")).unwrap(), "S=1");
    }
}
