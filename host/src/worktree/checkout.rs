//! Creating a new worktree and checking it out, faster than libgit2 does.
//!
//! Why this exists: `git_worktree_add` ends in libgit2's general checkout,
//! which diffs against the working directory and looks up attributes and
//! ignore rules for every path (about 14 `readlink` and 2 `access` calls per
//! file). On a 5,000-file repository that made `iso init` about 1.5x slower
//! than `git worktree add`. A new worktree is the simplest checkout there is:
//! an empty directory and a tree to write out as it is. So, when nothing can
//! change a file's bytes on the way out, [`check_out`] writes the files and
//! the index itself (on two or more threads for large trees), with the stat
//! data git needs to see the worktree clean without re-reading it.
//!
//! It falls back to libgit2's own checkout ([`Fallback`] says why) when:
//!   - attributes could apply: a `.gitattributes` anywhere in the tree,
//!     `$GIT_COMMON_DIR/info/attributes`, the global attributes file
//!     (`core.attributesFile` or `~/.config/git/attributes`), a system
//!     `gitattributes`, or `attr.tree` / `$GIT_ATTR_SOURCE`. Attributes drive
//!     end-of-line conversion, `ident`, `filter` drivers (Git LFS) and
//!     `working-tree-encoding`;
//!   - the new worktree's config (includes evaluated for it) sets
//!     `core.autocrlf` (other than false), `core.eol` (other than lf or
//!     native), `core.symlinks=false`, `core.ignorecase`,
//!     `core.precomposeUnicode`, `core.fileMode=false`, `core.sparseCheckout`
//!     or `core.worktree`, or a value of these cannot be read;
//!   - the tree has anything unusual: a name git or libgit2 may refuse or
//!     treat specially (`.git` in any spelling, `git~1`, `.`/`..`, a
//!     backslash or colon, a trailing dot or space, a symlink named `.git*`),
//!     two entries of one name, an empty subtree, or an unknown file mode;
//!   - the platform is not Unix.
//!
//! The metadata (`.git` file, `$GIT_COMMON_DIR/worktrees/<name>/`) is written
//! by [`create_worktree`] exactly as `git_worktree_add` writes it, before
//! either checkout.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use git2::{Config, ErrorCode, Repository, Tree};

use super::{git, GitError};

/// Why a checkout is left to libgit2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fallback(pub String);

/// Create worktree `name` at `path` with HEAD on `refname`, as
/// `git_worktree_add` does before it checks out: the directories
/// `$GIT_COMMON_DIR/worktrees/<name>` and `path` (neither may exist yet),
/// `path/.git`, and `commondir`, `gitdir` and `HEAD` in the former. Returns
/// that metadata directory. On failure, what was created is removed again.
pub(super) fn create_worktree(common_dir: &Path, name: &str, path: &Path, refname: &[u8]) -> Result<PathBuf, GitError> {
    let io = |action: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| GitError::Io { action, path, source }
    };
    if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\\']) {
        let source = io::Error::new(io::ErrorKind::InvalidInput, format!("`{name}` is not a valid worktree name"));
        return Err(GitError::Io { action: "create worktree", path: path.to_path_buf(), source });
    }
    let worktrees = common_dir.join("worktrees");
    match fs::create_dir(&worktrees) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(io("create", &worktrees)(e)),
        _ => {}
    }
    let gitdir = worktrees.join(name);
    fs::create_dir(&gitdir).map_err(io("create", &gitdir))?;
    if let Err(e) = fs::create_dir(path) {
        let _ = fs::remove_dir(&gitdir);
        return Err(io("create", path)(e));
    }
    let written = (|| {
        // libgit2 writes canonical directories with a trailing slash.
        let wt = fs::canonicalize(path).map_err(io("resolve", path))?;
        let common = fs::canonicalize(common_dir).map_err(io("resolve", common_dir))?;
        let gitdir_abs = common.join("worktrees").join(name);
        let line = |parts: &[&[u8]]| -> Vec<u8> { parts.concat() };
        let files: [(PathBuf, Vec<u8>); 4] = [
            (path.join(".git"), line(&[b"gitdir: ", gitdir_abs.as_os_str().as_encoded_bytes(), b"/\n"])),
            (gitdir.join("commondir"), line(&[common.as_os_str().as_encoded_bytes(), b"/\n"])),
            (gitdir.join("gitdir"), line(&[wt.join(".git").as_os_str().as_encoded_bytes(), b"\n"])),
            (gitdir.join("HEAD"), line(&[b"ref: ", refname, b"\n"])),
        ];
        for (file, bytes) in &files {
            fs::write(file, bytes).map_err(io("write", file))?;
        }
        Ok(())
    })();
    if written.is_err() {
        let _ = fs::remove_dir_all(path);
        let _ = fs::remove_dir_all(&gitdir);
    }
    written.map(|()| gitdir)
}

/// Check out `tree` into the new, empty worktree `wt` (whose metadata
/// directory is `gitdir`): ourselves when that is sure to give what git
/// gives, otherwise with libgit2's checkout, as `git_worktree_add` would.
/// `repo` is the main repository, used to read objects.
pub(super) fn check_out(repo: &Repository, wt: &Repository, tree: &Tree, gitdir: &Path) -> Result<Option<Fallback>, GitError> {
    match plan(wt, tree)? {
        Ok(plan) => {
            let root = wt.workdir().ok_or_else(|| GitError::Bare { path: wt.path().to_path_buf() })?;
            plan.write(repo, root, &gitdir.join("index"))?;
            Ok(None)
        }
        Err(why) => {
            // The same call and options `git_worktree_add` uses.
            wt.checkout_head(None).map_err(git("check out worktree"))?;
            Ok(Some(why))
        }
    }
}

/// What the fast checkout will write, or why it must not be used for the
/// worktree `wt` (opened from the new worktree, so its config is the one
/// the checkout would see).
pub(super) fn plan(wt: &Repository, tree: &Tree) -> Result<Result<Plan, Fallback>, GitError> {
    if !cfg!(unix) {
        return Ok(Err(Fallback("not a Unix platform".into())));
    }
    let config = wt.config().map_err(git("read config"))?;
    if let Some(why) = config_fallback(&config) {
        return Ok(Err(Fallback(why)));
    }
    if let Some(why) = attribute_files(wt, &config) {
        return Ok(Err(Fallback(why)));
    }
    let mut plan = Plan { dirs: Vec::new(), items: Vec::new() };
    match walk(wt, tree, b"", &mut plan)? {
        Some(why) => Ok(Err(Fallback(why))),
        None => Ok(Ok(plan)),
    }
}

/// A config setting that changes how a checkout writes files.
fn config_fallback(config: &Config) -> Option<String> {
    // (key, the value under which our plain write is what git does)
    let flags: [(&str, bool); 6] = [
        ("core.symlinks", true),
        ("core.ignorecase", false),
        ("core.precomposeunicode", false),
        ("core.filemode", true),
        ("core.sparsecheckout", false),
        ("core.autocrlf", false),
    ];
    for (key, fine) in flags {
        match config.get_bool(key) {
            Ok(v) if v == fine => {}
            Err(e) if e.code() == ErrorCode::NotFound => {}
            Ok(_) | Err(_) => return Some(format!("{key} is set")),
        }
    }
    match config.get_string("core.eol") {
        Ok(v) if v.eq_ignore_ascii_case("lf") || v.eq_ignore_ascii_case("native") => {}
        Err(e) if e.code() == ErrorCode::NotFound => {}
        Ok(_) | Err(_) => return Some("core.eol is set".into()),
    }
    for key in ["core.worktree", "attr.tree"] {
        match config.get_entry(key) {
            Err(e) if e.code() == ErrorCode::NotFound => {}
            _ => return Some(format!("{key} is set")),
        }
    }
    None
}

/// An attributes file outside the tree that git or libgit2 would read.
fn attribute_files(wt: &Repository, config: &Config) -> Option<String> {
    if std::env::var_os("GIT_ATTR_SOURCE").is_some() {
        return Some("GIT_ATTR_SOURCE is set".into());
    }
    let mut candidates = vec![wt.commondir().join("info").join("attributes")];
    match config.get_path("core.attributesfile") {
        Ok(p) => candidates.push(p),
        Err(e) if e.code() == ErrorCode::NotFound => {
            let xdg = std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()).map(PathBuf::from);
            if let Some(dir) = xdg.or_else(|| dirs::home_dir().map(|h| h.join(".config"))) {
                candidates.push(dir.join("git").join("attributes"));
            }
        }
        Err(_) => return Some("core.attributesFile cannot be read".into()),
    }
    // The system file sits beside the system gitconfig: /etc for distribution
    // builds, $prefix/etc for others.
    if let Some(dir) = Config::find_system().ok().and_then(|p| p.parent().map(Path::to_path_buf)) {
        candidates.push(dir.join("gitattributes"));
    }
    for dir in ["/etc", "/usr/local/etc", "/opt/homebrew/etc"] {
        candidates.push(Path::new(dir).join("gitattributes"));
    }
    candidates.into_iter().find(|p| p.exists()).map(|p| format!("attributes file {} exists", p.display()))
}

/// Collect the tree's directories and entries into `plan`; `Some(why)` when
/// something in it needs libgit2's checkout.
fn walk(repo: &Repository, tree: &Tree, prefix: &[u8], plan: &mut Plan) -> Result<Option<String>, GitError> {
    let shown = |p: &[u8]| String::from_utf8_lossy(p).into_owned();
    // An empty root is a commit without files: nothing to write. An empty
    // subtree is something only hand-made trees have.
    if tree.is_empty() && !prefix.is_empty() {
        return Ok(Some(format!("empty tree at `{}`", shown(prefix))));
    }
    // Only a malformed tree repeats a name (and could then have a file
    // written through a symlink of the same name).
    let mut names: Vec<Vec<u8>> = tree.iter().map(|e| e.name_bytes().to_vec()).collect();
    names.sort_unstable();
    if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
        let mut path = prefix.to_vec();
        path.extend_from_slice(if prefix.is_empty() { b"" } else { b"/" });
        path.extend_from_slice(&w[0]);
        return Ok(Some(format!("repeated name `{}`", shown(&path))));
    }
    for entry in tree.iter() {
        let name = entry.name_bytes();
        let mode = entry.filemode() as u32;
        let mut path = Vec::with_capacity(prefix.len() + 1 + name.len());
        if !prefix.is_empty() {
            path.extend_from_slice(prefix);
            path.push(b'/');
        }
        path.extend_from_slice(name);
        if let Some(why) = unusual_name(name, mode) {
            return Ok(Some(format!("{why}: `{}`", shown(&path))));
        }
        let kind = match mode {
            0o040000 => {
                let sub = repo.find_tree(entry.id()).map_err(git("read tree"))?;
                plan.dirs.push(path.clone());
                match walk(repo, &sub, &path, plan)? {
                    Some(why) => return Ok(Some(why)),
                    None => continue,
                }
            }
            0o100644 => Kind::File,
            0o100755 => Kind::Executable,
            0o120000 => Kind::Symlink,
            0o160000 => Kind::Gitlink,
            other => return Ok(Some(format!("file mode {other:o} at `{}`", shown(&path)))),
        };
        plan.items.push(Item { path, id: entry.id(), kind });
    }
    Ok(None)
}

/// Why a tree entry name is not one we write ourselves. Errs on the side of
/// libgit2, which knows every `.git` spelling NTFS and HFS+ accept.
fn unusual_name(name: &[u8], mode: u32) -> Option<&'static str> {
    if name == b".gitattributes" {
        return Some("attributes file in the tree");
    }
    if name.is_empty() || name == b"." || name == b".." {
        return Some("invalid name");
    }
    if name.iter().any(|&b| matches!(b, b'/' | b'\\' | b':' | 0)) || matches!(name.last(), Some(b'.' | b' ')) {
        return Some("name git may refuse");
    }
    // `.git` in any case and with ignorable characters dropped; `git~1`.
    let folded: Vec<u8> = name.iter().filter(|b| b.is_ascii()).map(u8::to_ascii_lowercase).collect();
    if folded == b".git" || folded.starts_with(b"git~") {
        return Some("name git may refuse");
    }
    if mode == 0o120000 && folded.starts_with(b".git") {
        return Some("symlink named like a git file");
    }
    None
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    File,
    Executable,
    Symlink,
    /// A submodule: checked out as an empty directory, as git does.
    Gitlink,
}

struct Item {
    /// Relative, `/`-separated.
    path: Vec<u8>,
    id: git2::Oid,
    kind: Kind,
}

/// The tree, flattened in index order.
pub(super) struct Plan {
    /// Directories, parents first.
    dirs: Vec<Vec<u8>>,
    items: Vec<Item>,
}

/// Files per thread below which another thread is not worth starting.
const FILES_PER_THREAD: usize = 512;

#[cfg(not(unix))]
impl Plan {
    fn write(self, _repo: &Repository, _root: &Path, _index: &Path) -> Result<(), GitError> {
        unreachable!("plan() falls back on this platform")
    }
}

#[cfg(unix)]
impl Plan {
    #[cfg(test)]
    fn len(&self) -> usize {
        self.items.len()
    }

    /// Write the directories, files and index under `root`.
    fn write(self, repo: &Repository, root: &Path, index_path: &Path) -> Result<(), GitError> {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(4).min(self.items.len() / FILES_PER_THREAD).max(1);
        self.write_with(repo, root, index_path, threads)
    }

    fn write_with(self, repo: &Repository, root: &Path, index_path: &Path, threads: usize) -> Result<(), GitError> {
        use std::os::unix::fs::DirBuilderExt;
        let mut builder = fs::DirBuilder::new();
        builder.mode(0o777);
        for dir in &self.dirs {
            let path = unix::join(root, dir);
            builder.create(&path).map_err(|source| GitError::Io { action: "create", path, source })?;
        }
        let stats = unix::write_items(repo, root, &self.items, threads)?;

        // An index of its own (not the repository's) so that libgit2 does
        // not look every blob up again to check it exists: they were just read.
        let mut index = git2::Index::open(index_path).map_err(git("open the worktree's index"))?;
        for (item, st) in self.items.iter().zip(&stats) {
            let mode = match item.kind {
                Kind::File => 0o100644,
                Kind::Executable => 0o100755,
                Kind::Symlink => 0o120000,
                Kind::Gitlink => 0o160000,
            };
            index.add(&st.entry(mode, item.id, item.path.clone())).map_err(git("build the worktree's index"))?;
        }
        index.write().map_err(git("write the worktree's index"))?;
        Ok(())
    }
}

#[cfg(unix)]
mod unix {
    use std::ffi::OsStr;
    use std::fs;
    use std::io::Write;
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    use git2::{IndexEntry, IndexTime, Odb, Repository};

    use super::{Item, Kind};
    use crate::worktree::{git, GitError};

    pub(super) fn join(root: &Path, rel: &[u8]) -> PathBuf {
        root.join(OsStr::from_bytes(rel))
    }

    /// The stat data git keeps in the index.
    #[derive(Debug, Clone, Copy, Default)]
    pub(super) struct Stat {
        ctime: (i64, i64),
        mtime: (i64, i64),
        dev: u64,
        ino: u64,
        uid: u32,
        gid: u32,
        size: u64,
    }

    impl Stat {
        fn of(md: &fs::Metadata) -> Stat {
            Stat {
                ctime: (md.ctime(), md.ctime_nsec()),
                mtime: (md.mtime(), md.mtime_nsec()),
                dev: md.dev(),
                ino: md.ino(),
                uid: md.uid(),
                gid: md.gid(),
                size: md.size(),
            }
        }

        /// Truncated to the index's 32-bit fields as git does.
        pub(super) fn entry(&self, mode: u32, id: git2::Oid, path: Vec<u8>) -> IndexEntry {
            IndexEntry {
                ctime: IndexTime::new(self.ctime.0 as i32, self.ctime.1 as u32),
                mtime: IndexTime::new(self.mtime.0 as i32, self.mtime.1 as u32),
                dev: self.dev as u32,
                ino: self.ino as u32,
                mode,
                uid: self.uid,
                gid: self.gid,
                file_size: self.size as u32,
                id,
                flags: 0,
                flags_extended: 0,
                path,
            }
        }
    }

    /// Items handed out to a thread at a time.
    const BATCH: usize = 32;

    /// Write every item, on `threads` threads (this one included); the stat
    /// data comes back in the items' order.
    pub(super) fn write_items(repo: &Repository, root: &Path, items: &[Item], threads: usize) -> Result<Vec<Stat>, GitError> {
        let next = AtomicUsize::new(0);
        let failed = AtomicBool::new(false);
        let odb = repo.odb().map_err(git("open the object database"))?;
        let repo_path = repo.path().to_path_buf();
        let results: Vec<Result<Vec<(usize, Stat)>, GitError>> = std::thread::scope(|s| {
            let helpers: Vec<_> = (1..threads)
                .map(|_| {
                    let (repo_path, next, failed) = (&repo_path, &next, &failed);
                    s.spawn(move || {
                        // A repository is not shareable between threads;
                        // each helper reads objects through its own.
                        let result = (|| {
                            let repo = Repository::open(repo_path).map_err(git(format!("open {}", repo_path.display())))?;
                            let odb = repo.odb().map_err(git("open the object database"))?;
                            work(&odb, root, items, next, failed)
                        })();
                        if result.is_err() {
                            failed.store(true, Ordering::Relaxed);
                        }
                        result
                    })
                })
                .collect();
            let mut results = vec![work(&odb, root, items, &next, &failed)];
            results.extend(helpers.into_iter().map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))));
            results
        });
        let mut stats = vec![Stat::default(); items.len()];
        for part in results {
            for (i, st) in part? {
                stats[i] = st;
            }
        }
        Ok(stats)
    }

    fn work(odb: &Odb, root: &Path, items: &[Item], next: &AtomicUsize, failed: &AtomicBool) -> Result<Vec<(usize, Stat)>, GitError> {
        let mut done = Vec::new();
        while !failed.load(Ordering::Relaxed) {
            let start = next.fetch_add(BATCH, Ordering::Relaxed);
            if start >= items.len() {
                break;
            }
            for (i, item) in items.iter().enumerate().skip(start).take(BATCH) {
                match write_one(odb, root, item) {
                    Ok(st) => done.push((i, st)),
                    Err(e) => {
                        failed.store(true, Ordering::Relaxed);
                        return Err(e);
                    }
                }
            }
        }
        Ok(done)
    }

    /// Write one entry the way git's checkout does: files created (never
    /// opened through an existing path) with mode 0666 or 0777 less the
    /// umask, symlinks as symlinks, submodules as empty directories.
    fn write_one(odb: &Odb, root: &Path, item: &Item) -> Result<Stat, GitError> {
        let path = join(root, &item.path);
        let io = |action: &'static str| {
            let path = path.clone();
            move |source| GitError::Io { action, path, source }
        };
        let read = || {
            let obj = odb.read(item.id).map_err(git(format!("read blob {}", item.id)))?;
            if obj.kind() != git2::ObjectType::Blob {
                let e = git2::Error::from_str(&format!("{} is a {}, not a blob", item.id, obj.kind()));
                return Err(GitError::Git { action: format!("check out {}", path.display()), source: e });
            }
            Ok(obj)
        };
        let md = match item.kind {
            Kind::File | Kind::Executable => {
                let blob = read()?;
                let mut f = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(if item.kind == Kind::Executable { 0o777 } else { 0o666 })
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(&path)
                    .map_err(io("create"))?;
                f.write_all(blob.data()).map_err(io("write"))?;
                f.metadata().map_err(io("stat"))?
            }
            Kind::Symlink => {
                let blob = read()?;
                std::os::unix::fs::symlink(OsStr::from_bytes(blob.data()), &path).map_err(io("create symlink"))?;
                fs::symlink_metadata(&path).map_err(io("stat"))?
            }
            Kind::Gitlink => {
                fs::DirBuilder::new().mode(0o777).create(&path).map_err(io("create"))?;
                fs::symlink_metadata(&path).map_err(io("stat"))?
            }
        };
        Ok(Stat::of(&md))
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use crate::worktree::Git;
    use std::os::unix::fs::PermissionsExt;
    use std::process::Command;

    fn run(dir: &Path, args: &[&str]) -> String {
        let out = Command::new("git")
            .args(args)
            .current_dir(dir)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("HOME", dir)
            .env("XDG_CONFIG_HOME", dir.join(".xdg"))
            .output()
            .expect("run git");
        assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    fn git_bytes(dir: &Path, args: &[&str]) -> Vec<u8> {
        let out = Command::new("git").args(args).current_dir(dir).output().unwrap();
        assert!(out.status.success());
        out.stdout
    }

    /// A repository with nested directories, an executable, symlinks (one
    /// dangling, one to a directory), an empty file and a submodule entry.
    fn sample_repo() -> (tempfile::TempDir, PathBuf) {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("repo");
        fs::create_dir_all(root.join("src/deep/er")).unwrap();
        run(&root, &["init", "-q", "-b", "main"]);
        run(&root, &["config", "user.name", "t"]);
        run(&root, &["config", "user.email", "t@t"]);
        fs::write(root.join("README.md"), "hello\r\nworld\n").unwrap();
        fs::write(root.join("src/lib.rs"), "pub fn f() {}\n").unwrap();
        fs::write(root.join("src/deep/er/data.txt"), "x".repeat(100_000)).unwrap();
        fs::write(root.join("src/empty"), "").unwrap();
        fs::write(root.join("run.sh"), "#!/bin/sh\necho hi\n").unwrap();
        fs::set_permissions(root.join("run.sh"), fs::Permissions::from_mode(0o755)).unwrap();
        std::os::unix::fs::symlink("src/lib.rs", root.join("link")).unwrap();
        std::os::unix::fs::symlink("../nowhere", root.join("src/dangling")).unwrap();
        std::os::unix::fs::symlink("deep", root.join("src/dirlink")).unwrap();
        fs::write(root.join(".gitignore"), "target/\n").unwrap();
        run(&root, &["add", "-A"]);
        run(&root, &["commit", "-qm", "one"]);
        let head = run(&root, &["rev-parse", "HEAD"]);
        run(&root, &["update-index", "--add", "--cacheinfo", &format!("160000,{},vendor/sub", head.trim())]);
        run(&root, &["commit", "-qm", "submodule"]);
        (tmp, root)
    }

    fn add(root: &Path, name: &str, branch: &str) -> PathBuf {
        let g = Git::discover(root).unwrap();
        let base = g.resolve_base("main").unwrap();
        g.create_branch(branch, base).unwrap();
        let path = root.parent().unwrap().join("wts").join(name);
        g.add_worktree(name, &path, branch, "test").unwrap();
        path
    }

    fn fallback_of(root: &Path) -> Option<Fallback> {
        let repo = Repository::open(root).unwrap();
        let tree = repo.head().unwrap().peel_to_tree().unwrap();
        plan(&repo, &tree).unwrap().err()
    }

    #[test]
    fn writes_the_tree_like_git_and_leaves_a_clean_worktree() {
        let (_tmp, root) = sample_repo();
        assert_eq!(fallback_of(&root), None, "the sample takes the fast path");
        let wt = add(&root, "thread-1", "t1");

        assert_eq!(run(&wt, &["status", "--porcelain", "--ignored"]), "");
        assert_eq!(run(&wt, &["rev-parse", "--abbrev-ref", "HEAD"]).trim(), "t1");
        let list = run(&root, &["worktree", "list", "--porcelain"]);
        let canon = fs::canonicalize(&wt).unwrap();
        assert!(list.contains(&format!("worktree {}\n", canon.display())), "{list}");
        assert!(list.contains("branch refs/heads/t1\nlocked test"), "{list}");
        assert!(crate::worktree::uncommitted_files(&wt).unwrap().is_empty());

        // Every entry of the commit, with its bytes and type.
        let listing = run(&root, &["ls-tree", "-r", "main"]);
        assert_eq!(listing.lines().count(), 10);
        for line in listing.lines() {
            let (meta, path) = line.split_once('\t').unwrap();
            let mut meta = meta.split(' ');
            let (mode, _, id) = (meta.next().unwrap(), meta.next(), meta.next().unwrap());
            let on_disk = wt.join(path);
            let md = fs::symlink_metadata(&on_disk).unwrap();
            match mode {
                "100644" | "100755" => {
                    assert!(md.is_file(), "{path}");
                    assert_eq!(fs::read(&on_disk).unwrap(), git_bytes(&root, &["cat-file", "blob", id]), "{path}");
                    assert_eq!(md.permissions().mode() & 0o100 != 0, mode == "100755", "{path}");
                }
                "120000" => {
                    assert!(md.file_type().is_symlink(), "{path}");
                    let target = fs::read_link(&on_disk).unwrap();
                    assert_eq!(target.as_os_str().as_encoded_bytes(), git_bytes(&root, &["cat-file", "blob", id]), "{path}");
                }
                "160000" => {
                    assert!(md.is_dir() && fs::read_dir(&on_disk).unwrap().next().is_none(), "{path}");
                }
                other => panic!("mode {other}"),
            }
        }
        assert_eq!(fs::read(wt.join("README.md")).unwrap(), b"hello\r\nworld\n", "bytes are written unconverted");

        // The index carries the files' stat data, so git trusts it without
        // reading the files again.
        let index = git2::Index::open(&root.join(".git/worktrees/thread-1/index")).unwrap();
        assert_eq!(index.len(), 10);
        for e in index.iter() {
            let md = fs::symlink_metadata(wt.join(String::from_utf8(e.path.clone()).unwrap())).unwrap();
            use std::os::unix::fs::MetadataExt;
            assert_eq!((e.mtime.seconds() as i64, e.mtime.nanoseconds() as i64), (md.mtime(), md.mtime_nsec()));
            assert_eq!((e.ctime.seconds() as i64, e.ctime.nanoseconds() as i64), (md.ctime(), md.ctime_nsec()));
            assert_eq!((e.ino, e.file_size as u64, e.uid, e.gid), (md.ino() as u32, md.size(), md.uid(), md.gid()));
        }
        assert_eq!(run(&wt, &["diff-files", "--name-only"]), "");
    }

    #[test]
    fn a_commit_without_files_checks_out() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("repo");
        fs::create_dir(&root).unwrap();
        run(&root, &["init", "-q", "-b", "main"]);
        run(&root, &["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty", "-m", "init"]);
        assert_eq!(fallback_of(&root), None);
        let wt = add(&root, "thread-1", "t1");
        assert_eq!(fs::read_dir(&wt).unwrap().count(), 1, "only .git");
        assert_eq!(run(&wt, &["status", "--porcelain"]), "");
    }

    #[test]
    fn metadata_is_what_libgit2_writes() {
        let (_tmp, root) = sample_repo();
        let ours = add(&root, "thread-1", "t1");
        // libgit2's own worktree add, for comparison.
        let repo = Repository::open(&root).unwrap();
        let reference = repo.find_branch("main", git2::BranchType::Local).unwrap().into_reference();
        repo.branch("t2", &reference.peel_to_commit().unwrap(), false).unwrap();
        let r2 = repo.find_branch("t2", git2::BranchType::Local).unwrap().into_reference();
        let theirs = root.parent().unwrap().join("wts").join("thread-2");
        repo.worktree("thread-2", &theirs, Some(git2::WorktreeAddOptions::new().reference(Some(&r2)))).unwrap();

        let read = |p: PathBuf| fs::read_to_string(p).unwrap().replace("thread-2", "thread-1").replace("refs/heads/t2", "refs/heads/t1");
        assert_eq!(fs::read_to_string(ours.join(".git")).unwrap(), read(theirs.join(".git")));
        for f in ["commondir", "gitdir", "HEAD"] {
            let meta = root.join(".git/worktrees");
            assert_eq!(fs::read_to_string(meta.join("thread-1").join(f)).unwrap(), read(meta.join("thread-2").join(f)), "{f}");
        }
    }

    #[test]
    fn attributes_take_libgit2s_checkout_and_convert_like_git() {
        let (_tmp, root) = sample_repo();
        fs::write(root.join(".gitattributes"), "*.txt text eol=crlf\n").unwrap();
        fs::write(root.join("notes.txt"), "a\nb\n").unwrap();
        run(&root, &["add", ".gitattributes", "notes.txt"]);
        run(&root, &["commit", "-qm", "attributes"]);
        assert!(fallback_of(&root).unwrap().0.contains(".gitattributes"));

        let wt = add(&root, "thread-1", "t1");
        assert_eq!(fs::read(wt.join("notes.txt")).unwrap(), b"a\r\nb\r\n");
        assert_eq!(run(&wt, &["status", "--porcelain"]), "");
        // What git itself checks out.
        let by_git = root.parent().unwrap().join("by-git");
        run(&root, &["worktree", "add", "-q", "-b", "g", by_git.to_str().unwrap(), "main"]);
        for f in ["notes.txt", "README.md", "src/deep/er/data.txt"] {
            assert_eq!(fs::read(wt.join(f)).unwrap(), fs::read(by_git.join(f)).unwrap(), "{f}");
        }
    }

    #[test]
    fn settings_that_change_a_checkout_fall_back() {
        let (_tmp, root) = sample_repo();
        for (key, value) in [
            ("core.autocrlf", "true"),
            ("core.autocrlf", "input"),
            ("core.eol", "crlf"),
            ("core.symlinks", "false"),
            ("core.ignorecase", "true"),
            ("core.filemode", "false"),
            ("core.sparseCheckout", "true"),
        ] {
            run(&root, &["config", key, value]);
            assert!(fallback_of(&root).is_some_and(|f| f.0.contains(&key.to_lowercase())), "{key}={value}");
            run(&root, &["config", "--unset", key]);
        }
        for (key, value) in [("core.autocrlf", "false"), ("core.eol", "lf"), ("core.symlinks", "true")] {
            run(&root, &["config", key, value]);
            assert_eq!(fallback_of(&root), None, "{key}={value}");
        }

        let info = root.join(".git/info/attributes");
        fs::write(&info, "* ident\n").unwrap();
        assert!(fallback_of(&root).unwrap().0.contains("info/attributes"));
        fs::remove_file(&info).unwrap();

        // A global attributes file named in config.
        let global = root.parent().unwrap().join("attrs");
        fs::write(&global, "* text\n").unwrap();
        run(&root, &["config", "core.attributesFile", global.to_str().unwrap()]);
        assert!(fallback_of(&root).unwrap().0.contains("attrs"));
        fs::remove_file(&global).unwrap();
        assert_eq!(fallback_of(&root), None, "a named file that does not exist is no reason");
    }

    /// `git mktree`, which takes names libgit2's tree builder refuses.
    fn mktree(repo: &Repository, root: &Path, lines: &str) -> git2::Oid {
        use std::io::Write;
        let mut child = Command::new("git")
            .args(["mktree", "--missing"])
            .current_dir(root)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(lines.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        let id = git2::Oid::from_str(String::from_utf8(out.stdout).unwrap().trim()).unwrap();
        repo.find_tree(id).unwrap().id()
    }

    #[test]
    fn unusual_trees_fall_back() {
        let (_tmp, root) = sample_repo();
        let repo = Repository::open(&root).unwrap();
        let blob = repo.blob(b"x").unwrap();
        let top = run(&root, &["ls-tree", "main"]);
        let with = |extra: &str| repo.find_tree(mktree(&repo, &root, &format!("{top}{extra}"))).unwrap();
        let why = |tree: &Tree| plan(&repo, tree).unwrap().err().map(|f| f.0);

        for name in ["git~1", ".GIT", ".git", "..", "a\\b", "c:d", "trailing.", "trailing "] {
            assert!(why(&with(&format!("100644 blob {blob}\t{name}\n"))).is_some(), "{name}");
        }
        assert!(why(&with(&format!("120000 blob {blob}\t.gitmodules\n"))).is_some());
        // Old trees' 100664 is a plain file to git and libgit2 alike.
        assert_eq!(why(&with(&format!("100664 blob {blob}\tgroup-writable\n"))), None);
        assert_eq!(why(&with(&format!("100644 blob {blob}\t.github\n"))), None);

        // The same name twice, with another name sorted between them.
        let sub = run(&root, &["rev-parse", "main:src"]);
        let dup = with(&format!("100644 blob {blob}\tsrc\n100644 blob {blob}\tsrc.txt\n040000 tree {}\tsrc\n", sub.trim()));
        assert!(why(&dup).unwrap().contains("repeated name `src`"), "{:?}", why(&dup));

        let empty = run(&root, &["hash-object", "-t", "tree", "-w", "/dev/null"]);
        assert!(why(&with(&format!("040000 tree {}\tnothing\n", empty.trim()))).unwrap().contains("empty tree"));

        let nested = mktree(&repo, &root, &format!("100644 blob {blob}\t.gitattributes\n"));
        let nested = with(&format!("040000 tree {nested}\tdocs\n"));
        assert!(why(&nested).unwrap().contains("docs/.gitattributes"));
    }

    #[test]
    fn many_files_on_several_threads() {
        let (_tmp, root) = sample_repo();
        for i in 0..300 {
            let dir = root.join(format!("gen/d{}", i % 7));
            fs::create_dir_all(&dir).unwrap();
            fs::write(dir.join(format!("f{i}")), format!("{i}\n").repeat(i)).unwrap();
        }
        run(&root, &["add", "gen"]);
        run(&root, &["commit", "-qm", "many"]);
        let repo = Repository::open(&root).unwrap();
        let tree = repo.head().unwrap().peel_to_tree().unwrap();
        // Write through the fast path directly with three threads.
        let out = root.parent().unwrap().join("plain");
        fs::create_dir(&out).unwrap();
        let plan = plan(&repo, &tree).unwrap().unwrap_or_else(|f| panic!("{f:?}"));
        assert_eq!(plan.len(), 310);
        plan.write_with(&repo, &out, &root.parent().unwrap().join("index"), 3).unwrap();
        for i in [0, 1, 150, 299] {
            let rel = format!("gen/d{}/f{i}", i % 7);
            assert_eq!(fs::read(out.join(&rel)).unwrap(), fs::read(root.join(&rel)).unwrap());
        }
        let index = git2::Index::open(&root.parent().unwrap().join("index")).unwrap();
        assert_eq!(index.len(), 310);
        assert!(index.iter().all(|e| e.mtime.seconds() != 0 || e.mode == 0o160000));

        // And end to end.
        let wt = add(&root, "thread-1", "t1");
        assert_eq!(run(&wt, &["status", "--porcelain"]), "");
    }

    #[test]
    fn an_existing_directory_or_metadata_is_refused() {
        let (_tmp, root) = sample_repo();
        let g = Git::discover(&root).unwrap();
        g.create_branch("t1", g.resolve_base("main").unwrap()).unwrap();
        let path = root.parent().unwrap().join("occupied");
        fs::create_dir(&path).unwrap();
        assert!(g.add_worktree("thread-1", &path, "t1", "test").is_err());
        // Nothing was left behind: the name is free again.
        assert!(!root.join(".git/worktrees/thread-1").exists());
        fs::remove_dir(&path).unwrap();
        g.add_worktree("thread-1", &path, "t1", "test").unwrap();
        assert_eq!(run(&path, &["status", "--porcelain"]), "");
        // The branch is now checked out there.
        let other = root.parent().unwrap().join("other");
        assert!(matches!(g.add_worktree("thread-2", &other, "t1", "test"), Err(GitError::BranchInUse { .. })));
        assert!(!other.exists());
    }
}
