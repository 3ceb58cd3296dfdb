//! Copying untracked files (a gitignored `.env`, local certificates…) from
//! the main checkout into a new worktree. Patterns come from
//! `threads.copy` in the config and from a `.worktreeinclude` file at the
//! repository root (one glob pattern per line, `#` comments).

use std::path::{Path, PathBuf};

use crate::error::{Diagnostic, ErrorKind};
use crate::rooted::{Root, RootedError};
use thiserror::Error;

pub const INCLUDE_FILE: &str = ".worktreeinclude";

#[derive(Debug, Error)]
pub enum CopyError {
    #[error("copy pattern `{pattern}` is not a valid glob: {message}")]
    Pattern { pattern: String, message: String },
    #[error("copy pattern `{pattern}` reaches outside the repository")]
    Outside { pattern: String },
    #[error("copy {}: {source}", from.display())]
    Io { from: PathBuf, source: std::io::Error },
    /// The destination in the worktree (a symlink from the branch, …).
    #[error(transparent)]
    Rooted(#[from] RootedError),
}

impl Diagnostic for CopyError {
    fn kind(&self) -> ErrorKind {
        match self {
            CopyError::Pattern { .. } | CopyError::Outside { .. } => ErrorKind::Config,
            CopyError::Io { .. } => ErrorKind::Internal,
            CopyError::Rooted(e) => e.kind(),
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            CopyError::Pattern { .. } => Some(format!("correct it in iso.toml threads.copy or {INCLUDE_FILE}")),
            CopyError::Outside { .. } => Some("use a path relative to the repository root".into()),
            CopyError::Io { .. } => None,
            CopyError::Rooted(e) => e.hint(),
        }
    }

    fn code(&self) -> &'static str {
        match self {
            CopyError::Rooted(e) => e.code(),
            _ => self.kind().as_str(),
        }
    }
}

/// The patterns to copy: the configured ones, then `.worktreeinclude`'s.
pub fn patterns(root: &Path, configured: &[String]) -> Vec<String> {
    let mut out = configured.to_vec();
    if let Ok(text) = std::fs::read_to_string(root.join(INCLUDE_FILE)) {
        out.extend(text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(|l| l.trim_start_matches('/').to_string()));
    }
    out
}

/// Copy everything matching `patterns` under `root` into `dest`, keeping
/// relative paths: files with their mode and mtime (shared with a reflink
/// where the filesystem can, see [`Root::clone_new`]), directories with
/// their mtime, symlinks as symlinks with the same target (never followed,
/// so a link out of the repository copies nothing from where it points).
/// Large trees are copied on several threads. What already exists in `dest`
/// (tracked files came with the checkout) is left alone, and so is anything
/// under `skip` (the paths [`link_matching`] linked); a symlink in `dest`
/// (or on the way) is an error, never written through ([`crate::rooted`]).
/// Returns the relative paths of the files and links copied.
pub fn copy_matching(root: &Path, dest: &Path, patterns: &[String], skip: &[PathBuf]) -> Result<Vec<PathBuf>, CopyError> {
    let dest = Root::open(dest)?;
    let mut plan = Plan::default();
    for (from, rel) in matches(root, patterns)? {
        if !skip.iter().any(|s| rel.starts_with(s)) {
            plan.walk(&from, rel)?;
        }
    }
    plan.run(&dest)
}

/// Make each path matching `patterns` under `root` a symlink in `dest` to
/// the main checkout's (`threads.link`, for folders such as node_modules
/// that threads may share). Something already at that path in `dest` is
/// left alone. Returns the relative paths linked.
pub fn link_matching(root: &Path, dest: &Path, patterns: &[String]) -> Result<Vec<PathBuf>, CopyError> {
    let dest = Root::open(dest)?;
    let mut linked = Vec::new();
    for (from, rel) in matches(root, patterns)? {
        if dest.symlink_new(&from, &rel)? {
            linked.push(rel);
        }
    }
    Ok(linked)
}

/// The paths under `root` that `patterns` match, with their relative form:
/// never iso's worktrees or git's data, never beneath a symlink (a glob
/// may descend through one, out of the repository).
fn matches(root: &Path, patterns: &[String]) -> Result<Vec<(PathBuf, PathBuf)>, CopyError> {
    let mut out = Vec::new();
    for pattern in patterns {
        if Path::new(pattern).components().any(|c| matches!(c, std::path::Component::ParentDir)) || Path::new(pattern).is_absolute() {
            return Err(CopyError::Outside { pattern: pattern.clone() });
        }
        let full = root.join(pattern);
        let found = glob::glob(&full.to_string_lossy()).map_err(|e| CopyError::Pattern { pattern: pattern.clone(), message: e.msg.to_string() })?;
        for from in found.flatten() {
            let Ok(rel) = from.strip_prefix(root) else { continue };
            // Never copy iso's own worktrees or git's data into a worktree.
            let first = rel.components().next().map(|c| c.as_os_str().to_string_lossy().to_string());
            if matches!(first.as_deref(), Some(".git") | Some(".worktrees")) {
                continue;
            }
            let through_link =
                rel.ancestors().skip(1).filter(|a| !a.as_os_str().is_empty()).any(|a| root.join(a).symlink_metadata().is_ok_and(|m| m.is_symlink()));
            if !through_link {
                out.push((from.clone(), rel.to_path_buf()));
            }
        }
    }
    Ok(out)
}

/// What a copy does, found by walking the sources first: directories
/// (parents first), files and links.
#[derive(Default)]
struct Plan {
    dirs: Vec<(PathBuf, Option<std::time::SystemTime>)>,
    files: Vec<(PathBuf, PathBuf)>,
    links: Vec<(PathBuf, PathBuf)>,
}

/// Files per thread below which another copying thread is not worth starting.
const FILES_PER_THREAD: usize = 256;

impl Plan {
    fn walk(&mut self, from: &Path, rel: PathBuf) -> Result<(), CopyError> {
        let io = |source| CopyError::Io { from: from.to_path_buf(), source };
        let meta = std::fs::symlink_metadata(from).map_err(io)?;
        if meta.file_type().is_symlink() {
            self.links.push((std::fs::read_link(from).map_err(io)?, rel));
        } else if meta.is_dir() {
            self.dirs.push((rel.clone(), meta.modified().ok()));
            let mut entries: Vec<_> = std::fs::read_dir(from).map_err(io)?.collect::<Result<_, _>>().map_err(io)?;
            entries.sort_by_key(|e| e.file_name());
            for entry in entries {
                self.walk(&entry.path(), rel.join(entry.file_name()))?;
            }
        } else if meta.is_file() {
            self.files.push((from.to_path_buf(), rel));
        }
        Ok(())
    }

    fn run(self, dest: &Root) -> Result<Vec<PathBuf>, CopyError> {
        for (rel, _) in &self.dirs {
            dest.create_dir(rel)?;
        }
        let mut copied = Vec::new();
        for (target, rel) in &self.links {
            if dest.symlink_new(target, rel)? {
                copied.push(rel.clone());
            }
        }
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, 8).min(self.files.len() / FILES_PER_THREAD).max(1);
        // One unit of work per directory: its handle is opened once (walked
        // without following links) for all its files.
        let mut by_dir: std::collections::BTreeMap<&Path, Vec<&(PathBuf, PathBuf)>> = std::collections::BTreeMap::new();
        for f in &self.files {
            by_dir.entry(f.1.parent().unwrap_or(Path::new(""))).or_default().push(f);
        }
        let groups: Vec<(&Path, Vec<&(PathBuf, PathBuf)>)> = by_dir.into_iter().collect();
        let next = std::sync::atomic::AtomicUsize::new(0);
        let failed = std::sync::atomic::AtomicBool::new(false);
        let copy_group = |dir: &Path, files: &[&(PathBuf, PathBuf)], done: &mut Vec<PathBuf>| -> Result<(), CopyError> {
            let handle = match files.first() {
                Some((_, rel)) if !dir.as_os_str().is_empty() => Some(dest.parent_dir(rel)?),
                _ => None,
            };
            for (from, rel) in files {
                let copied = match (&handle, rel.file_name()) {
                    (Some(h), Some(name)) => dest.clone_in(h, name, from, rel)?,
                    _ => dest.clone_new(from, rel)?,
                };
                if copied {
                    done.push(rel.clone());
                }
            }
            Ok(())
        };
        let work = || -> Result<Vec<PathBuf>, CopyError> {
            let mut done = Vec::new();
            while !failed.load(std::sync::atomic::Ordering::Relaxed) {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some((dir, files)) = groups.get(i) else { break };
                if let Err(e) = copy_group(dir, files, &mut done) {
                    failed.store(true, std::sync::atomic::Ordering::Relaxed);
                    return Err(e);
                }
            }
            Ok(done)
        };
        let results: Vec<Result<Vec<PathBuf>, CopyError>> = std::thread::scope(|s| {
            (0..threads).map(|_| s.spawn(work)).collect::<Vec<_>>().into_iter().map(|h| h.join().expect("copy thread panicked")).collect()
        });
        for r in results {
            copied.extend(r?);
        }
        // Deepest first: writing into a directory moves its mtime.
        for (rel, mtime) in self.dirs.iter().rev() {
            if let Some(t) = mtime {
                dest.set_dir_mtime(rel, *t)?;
            }
        }
        Ok(copied)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_matches_without_overwriting() {
        let root = tempfile::tempdir().unwrap();
        let dest = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join(".env"), "SECRET=1").unwrap();
        std::fs::write(root.path().join(".env.local"), "X=1").unwrap();
        std::fs::create_dir_all(root.path().join("certs")).unwrap();
        std::fs::write(root.path().join("certs/dev.pem"), "pem").unwrap();
        std::fs::write(root.path().join(INCLUDE_FILE), "# local files\ncerts\n").unwrap();
        std::fs::write(dest.path().join(".env.local"), "mine").unwrap();

        let pats = patterns(root.path(), &[".env*".to_string()]);
        let mut copied = copy_matching(root.path(), dest.path(), &pats, &[]).unwrap();
        copied.sort();
        assert_eq!(copied, vec![PathBuf::from(".env"), PathBuf::from("certs/dev.pem")]);
        assert_eq!(std::fs::read_to_string(dest.path().join(".env.local")).unwrap(), "mine");
        assert!(matches!(copy_matching(root.path(), dest.path(), &["../x".into()], &[]), Err(CopyError::Outside { .. })));

        // A branch that has `certs` as a link out of the worktree.
        let elsewhere = tempfile::tempdir().unwrap();
        let dest2 = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(elsewhere.path(), dest2.path().join("certs")).unwrap();
        let e = copy_matching(root.path(), dest2.path(), &pats, &[]).unwrap_err();
        assert!(matches!(&e, CopyError::Rooted(RootedError::Symlink { .. })), "{e}");
        assert!(std::fs::read_dir(elsewhere.path()).unwrap().next().is_none(), "nothing written through the link");
    }

    #[test]
    fn copies_keep_modes_mtimes_and_links_and_never_follow_a_link() {
        use std::os::unix::fs::{symlink, PermissionsExt};
        let dir = tempfile::tempdir().unwrap();
        let (root, dest, outside) = (dir.path().join("repo"), dir.path().join("wt"), dir.path().join("outside"));
        for d in [root.join("node_modules/.bin"), root.join("node_modules/pkg/lib"), dest.clone(), outside.clone()] {
            std::fs::create_dir_all(d).unwrap();
        }
        std::fs::write(outside.join("secret"), "not to be copied").unwrap();
        std::fs::write(root.join("node_modules/pkg/lib/index.js"), "x").unwrap();
        let tool = root.join("node_modules/pkg/lib/cli.js");
        std::fs::write(&tool, "#!/usr/bin/env node\n").unwrap();
        std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).unwrap();
        symlink("../pkg/lib/cli.js", root.join("node_modules/.bin/pkg")).unwrap();
        symlink(&outside, root.join("node_modules/escape")).unwrap();
        let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_500_000_000);
        std::fs::File::options().write(true).open(&tool).unwrap().set_modified(old).unwrap();
        std::fs::File::open(root.join("node_modules/pkg")).unwrap().set_modified(old).unwrap();

        let mut copied = copy_matching(&root, &dest, &["node_modules".into(), "node_modules/escape/*".into()], &[]).unwrap();
        copied.sort();
        let want: Vec<PathBuf> = ["node_modules/.bin/pkg", "node_modules/escape", "node_modules/pkg/lib/cli.js", "node_modules/pkg/lib/index.js"]
            .iter()
            .map(PathBuf::from)
            .collect();
        assert_eq!(copied, want);
        let md = std::fs::metadata(dest.join("node_modules/pkg/lib/cli.js")).unwrap();
        assert_eq!(md.permissions().mode() & 0o777, 0o755, "exec bit kept");
        assert_eq!(md.modified().unwrap(), old, "mtime kept");
        assert_eq!(std::fs::metadata(dest.join("node_modules/pkg")).unwrap().modified().unwrap(), old, "directory mtime kept");
        assert_eq!(std::fs::read_link(dest.join("node_modules/.bin/pkg")).unwrap(), Path::new("../pkg/lib/cli.js"), "a link stays a link");
        let escape = dest.join("node_modules/escape");
        assert!(escape.symlink_metadata().unwrap().file_type().is_symlink(), "copied as the link it is, not what it points to");
        assert!(std::fs::read_dir(&outside).unwrap().count() == 1, "nothing written outside");
        assert!(!copied.iter().any(|p| p.ends_with("secret")), "a glob through the link copies nothing from outside");

        // Link mode: the folder is a symlink to the main checkout's, and
        // copying skips what was linked.
        let dest2 = dir.path().join("wt2");
        std::fs::create_dir(&dest2).unwrap();
        let linked = link_matching(&root, &dest2, &["node_modules".into()]).unwrap();
        assert_eq!(linked, vec![PathBuf::from("node_modules")]);
        assert_eq!(std::fs::read_link(dest2.join("node_modules")).unwrap(), root.join("node_modules"));
        assert!(copy_matching(&root, &dest2, &["node_modules".into()], &linked).unwrap().is_empty());
    }

    #[test]
    fn a_large_tree_is_copied_in_full_on_several_threads() {
        let dir = tempfile::tempdir().unwrap();
        let (root, dest) = (dir.path().join("repo"), dir.path().join("wt"));
        for i in 0..40 {
            std::fs::create_dir_all(root.join(format!("deps/d{i}"))).unwrap();
            for j in 0..50 {
                std::fs::write(root.join(format!("deps/d{i}/f{j}")), format!("{i}-{j}")).unwrap();
            }
        }
        std::fs::create_dir(&dest).unwrap();
        let copied = copy_matching(&root, &dest, &["deps".into()], &[]).unwrap();
        assert_eq!(copied.len(), 2000);
        assert_eq!(std::fs::read_to_string(dest.join("deps/d39/f49")).unwrap(), "39-49");
    }
}
