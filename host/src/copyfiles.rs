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

/// Copy every file matching `patterns` under `root` into `dest`, keeping
/// relative paths. Files that already exist in `dest` (tracked ones came
/// with the checkout) are left alone; a symlink there (or on the way) is
/// an error, never written through ([`crate::rooted`]). Returns the
/// relative paths copied.
pub fn copy_matching(root: &Path, dest: &Path, patterns: &[String]) -> Result<Vec<PathBuf>, CopyError> {
    let mut copied = Vec::new();
    let dest = Root::open(dest)?;
    for pattern in patterns {
        if Path::new(pattern).components().any(|c| matches!(c, std::path::Component::ParentDir)) || Path::new(pattern).is_absolute() {
            return Err(CopyError::Outside { pattern: pattern.clone() });
        }
        let full = root.join(pattern);
        let matches = glob::glob(&full.to_string_lossy()).map_err(|e| CopyError::Pattern { pattern: pattern.clone(), message: e.msg.to_string() })?;
        for from in matches.flatten() {
            let Ok(rel) = from.strip_prefix(root) else { continue };
            // Never copy iso's own worktrees or git's data into a worktree.
            let first = rel.components().next().map(|c| c.as_os_str().to_string_lossy().to_string());
            if matches!(first.as_deref(), Some(".git") | Some(".worktrees")) {
                continue;
            }
            copy_tree(&from, &dest, rel, &mut copied)?;
        }
    }
    Ok(copied)
}

fn copy_tree(from: &Path, dest: &Root, rel: &Path, copied: &mut Vec<PathBuf>) -> Result<(), CopyError> {
    let io = |source| CopyError::Io { from: from.to_path_buf(), source };
    let meta = std::fs::symlink_metadata(from).map_err(io)?;
    if meta.is_dir() {
        for entry in std::fs::read_dir(from).map_err(io)? {
            let entry = entry.map_err(io)?;
            let name = entry.file_name();
            copy_tree(&entry.path(), dest, &rel.join(&name), copied)?;
        }
    } else if meta.is_file() && dest.copy_new(from, rel)? {
        copied.push(rel.to_path_buf());
    }
    Ok(())
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
        let mut copied = copy_matching(root.path(), dest.path(), &pats).unwrap();
        copied.sort();
        assert_eq!(copied, vec![PathBuf::from(".env"), PathBuf::from("certs/dev.pem")]);
        assert_eq!(std::fs::read_to_string(dest.path().join(".env.local")).unwrap(), "mine");
        assert!(matches!(copy_matching(root.path(), dest.path(), &["../x".into()]), Err(CopyError::Outside { .. })));

        // A branch that has `certs` as a link out of the worktree.
        let elsewhere = tempfile::tempdir().unwrap();
        let dest2 = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(elsewhere.path(), dest2.path().join("certs")).unwrap();
        let e = copy_matching(root.path(), dest2.path(), &pats).unwrap_err();
        assert!(matches!(&e, CopyError::Rooted(RootedError::Symlink { .. })), "{e}");
        assert!(std::fs::read_dir(elsewhere.path()).unwrap().next().is_none(), "nothing written through the link");
    }
}
