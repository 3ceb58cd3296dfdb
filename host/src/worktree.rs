//! Git: finding the repository, branches and worktrees, through libgit2.

use std::path::{Path, PathBuf};

use git2::{BranchType, Repository, StatusOptions, WorktreePruneOptions};
use thiserror::Error;

use crate::error::{Diagnostic, ErrorKind};

mod checkout;

/// How the reflog of a branch iso created for a thread begins.
pub const CREATED_BY_ISO: &str = "iso: created for ";

/// A commit id.
pub use git2::Oid;

#[derive(Debug, Error)]
pub enum GitError {
    #[error("{} is not inside a git repository", path.display())]
    NotARepo { path: PathBuf },
    #[error("{} is a bare repository; iso needs a working tree to put worktrees beside", path.display())]
    Bare { path: PathBuf },
    #[error("HEAD is detached, so there is no branch to start threads from")]
    DetachedHead,
    #[error("the repository has no commits yet, so a thread has nothing to start from")]
    NoCommits,
    #[error("base `{base}` is not a branch or commit in this repository")]
    BaseNotFound { base: String },
    #[error("no local or remote-tracking branch `{branch}`")]
    BranchNotFound { branch: String },
    #[error("`{branch}` is a branch of several remotes: {}", remotes.join(", "))]
    BranchAmbiguous { branch: String, remotes: Vec<String> },
    #[error("branch `{branch}` is already checked out at {}", path.display())]
    BranchInUse { branch: String, path: PathBuf },
    #[error("{} already exists and is not a worktree of branch `{branch}`", path.display())]
    DirOccupied { path: PathBuf, branch: String },
    #[error("git: {action}: {source}")]
    Git { action: String, source: git2::Error },
    #[error("{action} {}: {source}", path.display())]
    Io { action: &'static str, path: PathBuf, source: std::io::Error },
}

impl Diagnostic for GitError {
    fn kind(&self) -> ErrorKind {
        match self {
            GitError::NotARepo { .. } | GitError::Bare { .. } | GitError::DetachedHead | GitError::NoCommits | GitError::BaseNotFound { .. } => {
                ErrorKind::Invalid
            }
            GitError::BranchInUse { .. } | GitError::DirOccupied { .. } => ErrorKind::Conflict,
            GitError::BranchNotFound { .. } => ErrorKind::NotFound,
            GitError::BranchAmbiguous { .. } => ErrorKind::Invalid,
            GitError::Git { .. } | GitError::Io { .. } => ErrorKind::Internal,
        }
    }

    fn hint(&self) -> Option<String> {
        Some(
            match self {
                GitError::NotARepo { .. } => "cd into your project (or pass -C DIR), or run `git init` first",
                GitError::Bare { .. } => "run iso in a normal (non-bare) clone",
                GitError::DetachedHead => "pass --base BRANCH, set threads.base_branch in iso.toml, or `git switch` to a branch",
                GitError::NoCommits => "make a first commit (`git commit --allow-empty -m init`)",
                GitError::BaseNotFound { .. } => "check the name with `git branch -a`, or pass another --base",
                GitError::BranchNotFound { .. } => "check the name with `git branch -a` (`git fetch` first for a new remote branch)",
                GitError::BranchAmbiguous { branch, remotes } => return Some(format!("name the remote: `--branch {}/{branch}`", remotes[0])),
                GitError::BranchInUse { .. } => {
                    "pick another name or branch, switch that checkout to another branch or remove it first; `iso adopt PATH` makes a worktree a thread"
                }
                GitError::DirOccupied { .. } => "move that directory away, or run `iso doctor`",
                GitError::Git { .. } | GitError::Io { .. } => return None,
            }
            .to_string(),
        )
    }

    fn code(&self) -> &'static str {
        match self {
            GitError::NotARepo { .. } => "not_a_repo",
            GitError::BaseNotFound { .. } => "base_not_found",
            GitError::BranchNotFound { .. } => "branch_not_found",
            GitError::BranchInUse { .. } | GitError::DirOccupied { .. } => "conflict",
            GitError::Git { .. } | GitError::Io { .. } => "git",
            _ => "invalid",
        }
    }
}

fn git(action: impl Into<String>) -> impl FnOnce(git2::Error) -> GitError {
    let action = action.into();
    move |source| GitError::Git { action, source }
}

/// A git worktree as git knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorktreeInfo {
    /// The name of its metadata directory under `.git/worktrees/`.
    pub name: String,
    pub path: PathBuf,
    pub locked: bool,
    /// False when the directory is gone (git would call it prunable).
    pub valid: bool,
}

/// What [`Git::existing_branch`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExistingBranch {
    /// A local branch of that name.
    Local(String),
    /// Only a remote-tracking branch: `local` is to be created at `tip`,
    /// tracking `upstream` (`origin/foo`).
    Remote { local: String, upstream: String, tip: Oid },
}

/// The main repository, opened once per command.
pub struct Git {
    repo: Repository,
    root: PathBuf,
    common_dir: PathBuf,
}

impl Git {
    /// Find the repository containing `start`; from inside a linked worktree
    /// this opens the main repository it belongs to.
    pub fn discover(start: &Path) -> Result<Git, GitError> {
        // git itself does not re-hash objects it reads; libgit2 does by
        // default, which costs a checkout of thousands of files real CPU
        // time. Object integrity is still checked by `git fsck`.
        git2::opts::strict_hash_verification(false);
        let found = Repository::discover(start).map_err(|e| match e.code() {
            git2::ErrorCode::NotFound => GitError::NotARepo { path: start.to_path_buf() },
            _ => GitError::Git { action: format!("open repository at {}", start.display()), source: e },
        })?;
        let repo = if found.is_worktree() { Repository::open(found.commondir()).map_err(git("open the main repository"))? } else { found };
        Git::from_repo(repo)
    }

    /// Open the main repository whose shared git directory is `common_dir`
    /// (another handle on a repository found with [`Git::discover`]).
    pub fn open(common_dir: &Path) -> Result<Git, GitError> {
        git2::opts::strict_hash_verification(false);
        let repo = Repository::open(common_dir).map_err(git(format!("open the repository at {}", common_dir.display())))?;
        Git::from_repo(repo)
    }

    fn from_repo(repo: Repository) -> Result<Git, GitError> {
        if repo.is_bare() {
            return Err(GitError::Bare { path: repo.path().to_path_buf() });
        }
        let root = repo.workdir().ok_or_else(|| GitError::Bare { path: repo.path().to_path_buf() })?;
        let root = dunce(root);
        let common_dir = dunce(repo.commondir());
        Ok(Git { repo, root, common_dir })
    }

    /// The main checkout's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The shared `.git` directory (the same for every worktree).
    pub fn common_dir(&self) -> &Path {
        &self.common_dir
    }

    /// The branch checked out in the main checkout, `None` when detached.
    /// A repository without commits is an error: nothing can branch off it.
    pub fn current_branch(&self) -> Result<Option<String>, GitError> {
        if self.repo.head_detached().unwrap_or(false) {
            return Ok(None);
        }
        match self.repo.head() {
            Ok(head) => Ok(head.shorthand().ok().map(str::to_string)),
            Err(e) if e.code() == git2::ErrorCode::UnbornBranch => Err(GitError::NoCommits),
            Err(e) => Err(GitError::Git { action: "read HEAD".into(), source: e }),
        }
    }

    /// The commit `base` names: a local branch, a remote-tracking branch or
    /// any revision git understands.
    pub fn resolve_base(&self, base: &str) -> Result<Oid, GitError> {
        let not_found = || GitError::BaseNotFound { base: base.to_string() };
        if let Ok(b) = self.repo.find_branch(base, BranchType::Local) {
            return b.get().peel_to_commit().map(|c| c.id()).map_err(|_| not_found());
        }
        let obj = self.repo.revparse_single(base).map_err(|_| not_found())?;
        obj.peel_to_commit().map(|c| c.id()).map_err(|_| not_found())
    }

    /// The commit time (committer date, seconds since the epoch) of the tip
    /// of local branch `name`, if it exists.
    pub fn branch_tip_time(&self, name: &str) -> Option<i64> {
        let b = self.repo.find_branch(name, BranchType::Local).ok()?;
        b.get().peel_to_commit().ok().map(|c| c.time().seconds())
    }

    /// The local branch `name` names (`iso init --branch`): a local branch,
    /// else a remote-tracking one (`origin/foo`, or `foo` when exactly one
    /// remote has it), whose local branch is to be made unless it exists.
    pub fn existing_branch(&self, name: &str) -> Result<ExistingBranch, GitError> {
        if self.branch_exists(name) {
            return Ok(ExistingBranch::Local(name.to_string()));
        }
        let remote_names = self.repo.remotes().map_err(git("list remotes"))?;
        let remotes: Vec<&str> = remote_names.iter().flatten().flatten().collect();
        let tracking = |remote: &str, local: &str| -> Result<Option<ExistingBranch>, GitError> {
            let upstream = format!("{remote}/{local}");
            let Ok(b) = self.repo.find_branch(&upstream, BranchType::Remote) else { return Ok(None) };
            if self.branch_exists(local) {
                return Ok(Some(ExistingBranch::Local(local.to_string())));
            }
            let tip = b.get().peel_to_commit().map_err(git(format!("read {upstream}")))?.id();
            Ok(Some(ExistingBranch::Remote { local: local.to_string(), upstream, tip }))
        };
        // `origin/foo`: the longest remote name that prefixes it (remote
        // names may hold a `/` themselves).
        let mut prefixed: Vec<&str> =
            remotes.iter().copied().filter(|r| name.strip_prefix(r).is_some_and(|rest| rest.len() > 1 && rest.starts_with('/'))).collect();
        prefixed.sort_by_key(|r| std::cmp::Reverse(r.len()));
        for r in prefixed {
            if let Some(found) = tracking(r, &name[r.len() + 1..])? {
                return Ok(found);
            }
        }
        let mut found = Vec::new();
        for r in &remotes {
            if let Some(b) = tracking(r, name)? {
                found.push((r.to_string(), b));
            }
        }
        match found.len() {
            0 => Err(GitError::BranchNotFound { branch: name.to_string() }),
            1 => Ok(found.pop().expect("one").1),
            _ => Err(GitError::BranchAmbiguous { branch: name.to_string(), remotes: found.into_iter().map(|(r, _)| r).collect() }),
        }
    }

    /// Create local branch `local` at `tip` tracking `upstream` (a
    /// remote-tracking branch), marked as iso's like
    /// [`Git::create_thread_branch`]. The remote branch is never touched.
    pub fn create_tracking_branch(&self, local: &str, upstream: &str, tip: Oid, why: &str) -> Result<(), GitError> {
        self.create_thread_branch(local, tip, why)?;
        let mut b = self.repo.find_branch(local, BranchType::Local).map_err(git(format!("find branch {local}")))?;
        b.set_upstream(Some(upstream)).map_err(git(format!("set the upstream of {local} to {upstream}")))
    }

    pub fn branch_exists(&self, name: &str) -> bool {
        self.repo.find_branch(name, BranchType::Local).is_ok()
    }

    /// Create branch `name` at `base`.
    pub fn create_branch(&self, name: &str, base: Oid) -> Result<(), GitError> {
        let commit = self.repo.find_commit(base).map_err(git("find base commit"))?;
        self.repo.branch(name, &commit, false).map_err(git(format!("create branch {name}")))?;
        Ok(())
    }

    /// Create branch `name` at `base` for an iso thread: its reflog's first
    /// entry says so (`why`, after [`CREATED_BY_ISO`]), which is how
    /// [`Git::untouched_iso_branches`] finds it again.
    pub fn create_thread_branch(&self, name: &str, base: Oid, why: &str) -> Result<(), GitError> {
        self.repo.find_commit(base).map_err(git("find base commit"))?;
        self.repo.reference(&format!("refs/heads/{name}"), base, false, &format!("{CREATED_BY_ISO}{why}")).map_err(git(format!("create branch {name}")))?;
        Ok(())
    }

    /// Note in the reflog of a branch [`Git::create_thread_branch`] made that
    /// its thread was created in full: from then on the branch is the user's
    /// (cleanup keeps it), and [`Git::untouched_iso_branches`] no longer
    /// lists it, even with no commit of its own and no thread left.
    pub fn mark_thread_branch_used(&self, name: &str, why: &str) -> Result<(), GitError> {
        let refname = format!("refs/heads/{name}");
        let action = || format!("mark branch {name} in its reflog");
        let tip = self.repo.refname_to_id(&refname).map_err(git(action()))?;
        let sig = self.repo.signature().or_else(|_| git2::Signature::now("iso", "iso@localhost")).map_err(git(action()))?;
        let mut log = self.repo.reflog(&refname).map_err(git(action()))?;
        log.append(tip, &sig, Some(why)).map_err(git(action()))?;
        log.write().map_err(git(action()))
    }

    /// Local branches that [`Git::create_thread_branch`] made and nothing
    /// changed since: one reflog entry (an init that finished adds a second,
    /// [`Git::mark_thread_branch_used`]), and the tip still where it was
    /// created (so deleting one loses no commit).
    pub fn untouched_iso_branches(&self) -> Result<Vec<String>, GitError> {
        let mut out = Vec::new();
        for b in self.repo.branches(Some(BranchType::Local)).map_err(git("list branches"))? {
            let (b, _) = b.map_err(git("list branches"))?;
            let (Some(name), Some(tip)) = (b.name().ok().flatten().map(str::to_string), b.get().target()) else { continue };
            let Ok(log) = self.repo.reflog(&format!("refs/heads/{name}")) else { continue };
            let created =
                log.len() == 1 && log.get(0).is_some_and(|e| e.id_new() == tip && e.message().ok().flatten().is_some_and(|m| m.starts_with(CREATED_BY_ISO)));
            if created {
                out.push(name);
            }
        }
        Ok(out)
    }

    /// Whether local branch `name` was made by iso (its reflog begins with
    /// [`CREATED_BY_ISO`]): a branch kept by an earlier cleanup and reused
    /// is still iso's to delete with `--delete-branch`, any other is not.
    pub fn made_by_iso(&self, name: &str) -> bool {
        let Ok(log) = self.repo.reflog(&format!("refs/heads/{name}")) else { return false };
        !log.is_empty() && log.get(log.len() - 1).is_some_and(|e| e.message().ok().flatten().is_some_and(|m| m.starts_with(CREATED_BY_ISO)))
    }

    pub fn delete_branch(&self, name: &str) -> Result<(), GitError> {
        match self.repo.find_branch(name, BranchType::Local) {
            Ok(mut b) => b.delete().map_err(git(format!("delete branch {name}"))),
            Err(e) if e.code() == git2::ErrorCode::NotFound => Ok(()),
            Err(e) => Err(GitError::Git { action: format!("find branch {name}"), source: e }),
        }
    }

    /// Where `branch` is checked out, if anywhere (main checkout included).
    pub fn branch_checked_out_at(&self, branch: &str) -> Result<Option<PathBuf>, GitError> {
        if self.current_branch()?.as_deref() == Some(branch) {
            return Ok(Some(self.root.clone()));
        }
        for wt in self.worktrees()? {
            if wt.valid && head_branch(&wt.path).as_deref() == Some(branch) {
                return Ok(Some(wt.path));
            }
        }
        Ok(None)
    }

    /// Every linked worktree git knows about.
    pub fn worktrees(&self) -> Result<Vec<WorktreeInfo>, GitError> {
        let names = self.repo.worktrees().map_err(git("list worktrees"))?;
        let mut out = Vec::new();
        for name in names.iter().flatten().flatten() {
            let Ok(wt) = self.repo.find_worktree(name) else { continue };
            out.push(WorktreeInfo {
                name: name.to_string(),
                path: dunce(wt.path()),
                locked: !matches!(wt.is_locked(), Ok(git2::WorktreeLockStatus::Unlocked)),
                valid: wt.validate().is_ok(),
            });
        }
        Ok(out)
    }

    /// Add worktree `name` at `path` with `branch` checked out, and lock it
    /// with `reason` so `git worktree prune` leaves it alone. The checkout is
    /// our own when that gives what git gives, otherwise libgit2's (see
    /// `worktree/checkout.rs` for why and when).
    pub fn add_worktree(&self, name: &str, path: &Path, branch: &str, reason: &str) -> Result<(), GitError> {
        // Stale metadata of a worktree whose directory is gone would make
        // the name unusable.
        if let Ok(old) = self.repo.find_worktree(name) {
            if old.validate().is_err() {
                let _ = old.unlock();
                old.prune(Some(WorktreePruneOptions::new().locked(true))).map_err(git(format!("prune stale worktree {name}")))?;
            }
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|source| GitError::Io { action: "create", path: parent.to_path_buf(), source })?;
        }
        let reference = self.repo.find_branch(branch, BranchType::Local).map_err(git(format!("find branch {branch}")))?.into_reference();
        // libgit2's worktree add refuses a branch checked out elsewhere too.
        if let Ok(Some(at)) = self.branch_checked_out_at(branch) {
            return Err(GitError::BranchInUse { branch: branch.to_string(), path: at });
        }
        let tree = reference.peel_to_tree().map_err(git(format!("read the tree of {branch}")))?;
        let gitdir = checkout::create_worktree(&self.common_dir, name, path, reference.name_bytes())?;
        let wt = Repository::open(path).map_err(git(format!("open worktree {}", path.display())))?;
        checkout::check_out(&self.repo, &wt, &tree, &gitdir)?;
        let wt = self.repo.find_worktree(name).map_err(git(format!("find worktree {name}")))?;
        wt.lock(Some(reason)).map_err(git("lock worktree"))?;
        Ok(())
    }

    /// Lock the worktree at `path` against `git worktree prune` (as
    /// [`Git::add_worktree`] locks the ones it makes), unless it is locked
    /// already; for a worktree made by someone else and adopted.
    pub fn lock_worktree_at(&self, path: &Path, reason: &str) -> Result<(), GitError> {
        let Some(info) = self.worktrees()?.into_iter().find(|w| w.path == path) else { return Ok(()) };
        if info.locked {
            return Ok(());
        }
        let wt = self.repo.find_worktree(&info.name).map_err(git(format!("find worktree {}", info.name)))?;
        wt.lock(Some(reason)).map_err(git("lock worktree"))
    }

    /// Remove worktree `name`: its directory (at `path`) and git's metadata.
    /// A worktree that is already gone is not an error.
    pub fn remove_worktree(&self, name: &str, path: &Path) -> Result<(), GitError> {
        if let Ok(wt) = self.repo.find_worktree(name) {
            let _ = wt.unlock();
        }
        match std::fs::remove_dir_all(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(GitError::Io { action: "remove", path: path.to_path_buf(), source }),
        }
        if let Ok(wt) = self.repo.find_worktree(name) {
            wt.prune(Some(WorktreePruneOptions::new().locked(true).valid(true))).map_err(git(format!("prune worktree {name}")))?;
        }
        Ok(())
    }

    /// Drop git's metadata for worktrees whose directory is gone and that are
    /// not locked. Returns their names.
    pub fn prune_stale(&self) -> Result<Vec<String>, GitError> {
        let mut pruned = Vec::new();
        for info in self.worktrees()?.into_iter().filter(|w| !w.valid && !w.locked) {
            if let Ok(wt) = self.repo.find_worktree(&info.name) {
                wt.prune(None).map_err(git(format!("prune worktree {}", info.name)))?;
                pruned.push(info.name);
            }
        }
        Ok(pruned)
    }

    /// Paths that differ between the merge base of `base` and `branch` and
    /// the tip of `branch` (what `git diff --name-only base...branch`
    /// shows), at most `limit`.
    pub fn changed_files(&self, base: &str, branch: &str, limit: usize) -> Result<Vec<String>, GitError> {
        let tip = self.repo.revparse_single(branch).and_then(|o| o.peel_to_commit()).map_err(git(format!("read branch {branch}")))?;
        let Ok(base) = self.repo.revparse_single(base).and_then(|o| o.peel_to_commit()) else { return Ok(Vec::new()) };
        let mb = self.repo.merge_base(base.id(), tip.id()).map_err(git("find merge base"))?;
        let old = self.repo.find_commit(mb).and_then(|c| c.tree()).map_err(git("read merge base"))?;
        let new = tip.tree().map_err(git("read branch tree"))?;
        let diff = self.repo.diff_tree_to_tree(Some(&old), Some(&new), None).map_err(git("diff branch"))?;
        Ok(diff.deltas().filter_map(|d| d.new_file().path().or(d.old_file().path()).map(|p| p.to_string_lossy().to_string())).take(limit).collect())
    }

    /// Commits on `branch` that are neither on `base` nor on the branch's
    /// upstream: what `--delete-branch` would throw away. One line each.
    pub fn unmerged_commits(&self, branch: &str, base: &str) -> Result<Vec<String>, GitError> {
        let Ok(b) = self.repo.find_branch(branch, BranchType::Local) else { return Ok(Vec::new()) };
        let tip = b.get().peel_to_commit().map_err(git("read branch tip"))?.id();
        let mut walk = self.repo.revwalk().map_err(git("walk history"))?;
        walk.push(tip).map_err(git("walk history"))?;
        if let Ok(base) = self.resolve_base(base) {
            walk.hide(base).map_err(git("walk history"))?;
        }
        if let Ok(up) = b.upstream() {
            if let Ok(c) = up.get().peel_to_commit() {
                walk.hide(c.id()).map_err(git("walk history"))?;
            }
        }
        let mut out = Vec::new();
        for oid in walk.take(20) {
            let oid = oid.map_err(git("walk history"))?;
            let commit = self.repo.find_commit(oid).map_err(git("read commit"))?;
            let short = oid.to_string()[..8].to_string();
            out.push(format!("{short} {}", commit.summary().ok().flatten().unwrap_or("")));
        }
        Ok(out)
    }

    /// Append `patterns` to `.git/info/exclude` where missing. iso never
    /// edits the user's `.gitignore`.
    pub fn ensure_excluded(&self, patterns: &[&str]) -> Result<(), GitError> {
        let path = self.common_dir.join("info").join("exclude");
        let io = |action| {
            let path = path.clone();
            move |source| GitError::Io { action, path, source }
        };
        let current = match std::fs::read_to_string(&path) {
            Ok(s) => s,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(io("read")(e)),
        };
        let missing: Vec<&str> = patterns.iter().copied().filter(|p| !current.lines().any(|l| l.trim() == *p)).collect();
        if missing.is_empty() {
            return Ok(());
        }
        let mut text = current;
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str("# added by iso\n");
        for p in missing {
            text.push_str(p);
            text.push('\n');
        }
        std::fs::create_dir_all(path.parent().unwrap()).map_err(io("create"))?;
        std::fs::write(&path, text).map_err(io("write"))
    }
}

/// The branch checked out in the worktree at `path`, if it is a git checkout
/// on a branch.
pub fn head_branch(path: &Path) -> Option<String> {
    let repo = Repository::open(path).ok()?;
    let head = repo.head().ok()?;
    head.is_branch().then(|| head.shorthand().ok().map(str::to_string)).flatten()
}

/// Files with uncommitted changes (modified, staged, untracked; not ignored)
/// in the worktree at `path`.
pub fn uncommitted_files(path: &Path) -> Result<Vec<String>, GitError> {
    let repo = Repository::open(path).map_err(git(format!("open {}", path.display())))?;
    let mut opts = StatusOptions::new();
    opts.include_untracked(true).recurse_untracked_dirs(true).include_ignored(false).exclude_submodules(true);
    let statuses = repo.statuses(Some(&mut opts)).map_err(git("read status"))?;
    Ok(statuses.iter().filter(|s| s.status() != git2::Status::CURRENT).filter_map(|s| s.path().ok().map(str::to_string)).collect())
}

/// Canonical path without a trailing separator.
fn dunce(p: &Path) -> PathBuf {
    let p = std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let s = p.to_string_lossy();
    match s.strip_suffix('/') {
        Some(t) if !t.is_empty() => PathBuf::from(t),
        _ => p,
    }
}
