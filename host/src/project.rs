//! The repository iso works in: found once, then handed to every operation.
//!
//! A [`Project`] holds what is fixed for a repository while iso runs: its
//! paths (the main checkout's root, git's common directory and iso's
//! directory inside it), the effective [`Config`], a handle on the registry
//! and an opened git repository. It is `Sync`: `iso serve` keeps one for
//! its whole life and shares it between requests ([`Project::git`] lends
//! the opened repository to one caller at a time and opens another for a
//! concurrent one).
//!
//! This is the composition layer between the concern modules and
//! [`crate::lifecycle`]: it may use config, git and the registry; the
//! concern modules never see it (they are given paths and values).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use thiserror::Error;

use crate::config::{Config, ConfigError, RepoSpec};
use crate::error::{Diagnostic, ErrorKind};
use crate::ledger::{self, Ledger, LedgerError};
use crate::registry::{Registry, RegistryData, RegistryError, RepoIdentity};
use crate::stamp::FileStamp;
use crate::worktree::{Git, GitError};

/// Why a repository could not be opened.
#[derive(Debug, Error)]
pub enum OpenError {
    #[error(transparent)]
    Git(#[from] GitError),
    #[error(transparent)]
    Config(#[from] ConfigError),
}

impl Diagnostic for OpenError {
    fn kind(&self) -> ErrorKind {
        match self {
            OpenError::Git(e) => e.kind(),
            OpenError::Config(e) => e.kind(),
        }
    }
    fn hint(&self) -> Option<String> {
        match self {
            OpenError::Git(e) => e.hint(),
            OpenError::Config(e) => e.hint(),
        }
    }
    fn code(&self) -> &'static str {
        match self {
            OpenError::Git(e) => e.code(),
            OpenError::Config(e) => e.code(),
        }
    }
}

pub struct Project {
    root: PathBuf,
    common_dir: PathBuf,
    pub config: Config,
    registry: Registry,
    /// The per-user port ledger (`None` without a state directory).
    ledger: Option<Ledger>,
    /// An opened repository to lend out (see [`Project::git`]).
    git: Mutex<Option<Git>>,
    /// The configuration files and how they were when `config` was read.
    watched: Vec<(PathBuf, Option<FileStamp>)>,
}

impl std::fmt::Debug for Project {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Project").field("root", &self.root).field("common_dir", &self.common_dir).finish_non_exhaustive()
    }
}

impl Project {
    /// Find the repository containing `start` (the main checkout or any of
    /// its worktrees) and load its configuration with this process's
    /// environment.
    pub fn discover(start: &Path) -> Result<Project, OpenError> {
        let env: BTreeMap<String, String> = std::env::vars().collect();
        Project::discover_with_env(start, &env)
    }

    /// [`Project::discover`] with the environment given explicitly: the
    /// Nushell plugin passes the engine's `$env` (`ISO_*` overrides, and
    /// `ISO_USER_CONFIG`, `XDG_CONFIG_HOME` and `HOME` to find the user
    /// config), not the plugin process's.
    pub fn discover_with_env(start: &Path, env: &BTreeMap<String, String>) -> Result<Project, OpenError> {
        let git = Git::discover(start)?;
        let repo_file = git.root().join(crate::config::REPO_CONFIG_FILE);
        let user_file = crate::config::user_config_path(env);
        // Stamps before reading: a change while reading shows as a change.
        let watched: Vec<(PathBuf, Option<FileStamp>)> = std::iter::once(repo_file.clone())
            .chain(user_file.clone())
            .map(|p| {
                let s = FileStamp::of(&p);
                (p, s)
            })
            .collect();
        let iso_env: BTreeMap<String, String> = env.iter().filter(|(k, _)| k.starts_with("ISO_")).map(|(k, v)| (k.clone(), v.clone())).collect();
        let config = Config::load_layers(&repo_file, user_file.as_deref(), &iso_env)?;
        let mut project = Project::with_config(git, config);
        project.watched = watched;
        project.ledger = ledger::state_dir(env).map(Ledger::new);
        Ok(project)
    }

    /// A project with a configuration made elsewhere (tests, benchmarks).
    pub fn with_config(git: Git, config: Config) -> Project {
        let root = git.root().to_path_buf();
        let common_dir = git.common_dir().to_path_buf();
        let registry = Registry::new(common_dir.join("iso"));
        let env: BTreeMap<String, String> = std::env::vars().collect();
        let ledger = ledger::state_dir(&env).map(Ledger::new);
        Project { root, common_dir, config, registry, ledger, git: Mutex::new(Some(git)), watched: Vec::new() }
    }

    /// The main checkout's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// git's shared directory (the same from every worktree).
    pub fn common_dir(&self) -> &Path {
        &self.common_dir
    }

    /// iso's own files: `<git common dir>/iso` (registry, event log, runs).
    pub fn iso_dir(&self) -> PathBuf {
        self.common_dir.join("iso")
    }

    /// The repository's directory name, used in names of per-thread resources.
    pub fn repo_name(&self) -> String {
        self.root.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_else(|| "repo".into())
    }

    /// Where the worktrees go.
    pub fn worktree_dir(&self) -> PathBuf {
        self.root.join(&self.config.threads.worktree_dir)
    }

    /// The worktree directory of thread `id`.
    pub fn worktree_path(&self, id: u32) -> PathBuf {
        self.worktree_dir().join(format!("thread-{id}"))
    }

    pub fn registry_path(&self) -> PathBuf {
        self.registry.path()
    }

    pub(crate) fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The machine-wide port ledger.
    pub(crate) fn ledger(&self) -> Result<&Ledger, LedgerError> {
        self.ledger.as_ref().ok_or(LedgerError::NoStateDir)
    }

    /// This repository's identity, made on first use. When iso's directory
    /// was lost with it, the id is taken back from the thread records kept
    /// beside the worktrees' git metadata (`lifecycle::recover`), so the
    /// threads, leases and Docker resources stay this repository's.
    pub fn identity(&self) -> Result<RepoIdentity, RegistryError> {
        self.registry.identity(|| recorded_repo_id(&self.common_dir))
    }

    /// The registry as it is now (from memory when the file is unchanged).
    pub fn snapshot(&self) -> Result<Arc<RegistryData>, RegistryError> {
        self.registry.snapshot()
    }

    /// The opened repository, lent to the caller until the lease is dropped;
    /// a caller that finds it lent out opens another handle.
    pub(crate) fn git(&self) -> Result<GitLease<'_>, GitError> {
        let lent = self.git.lock().unwrap_or_else(|p| p.into_inner()).take();
        let git = match lent {
            Some(g) => g,
            None => Git::open(&self.common_dir)?,
        };
        Ok(GitLease { slot: &self.git, git: Some(git) })
    }

    /// The `[repos]` of the configuration, each resolved to its main
    /// checkout and checked: it exists, is a git repository's main checkout
    /// (not a worktree, not a folder inside one), is not this repository,
    /// and no two names share one. Resolved when a verb needs them, not at
    /// open, so a linked repository that went missing does not stop
    /// `iso ls`, `cleanup` or `doctor`.
    pub fn linked_repos(&self) -> Result<Vec<LinkedRepo>, ConfigError> {
        let mut out: Vec<LinkedRepo> = Vec::new();
        for (name, spec) in &self.config.repos {
            let key = format!("repos.{name}");
            let fail = |message: String, hint: String| ConfigError::Repo { key: key.clone(), message, hint };
            let written = spec.path.to_string_lossy();
            let path = match written.strip_prefix("~/").or((written == "~").then_some("")) {
                Some(rest) => match dirs::home_dir() {
                    Some(home) => home.join(rest),
                    None => return Err(fail("`~` cannot be resolved: no home directory".into(), "write the path out in full".into())),
                },
                None => self.root.join(&spec.path),
            };
            let full = std::fs::canonicalize(&path).map_err(|e| {
                fail(
                    format!("{} cannot be opened ({e})", path.display()),
                    "clone the repository there, or fix the path (relative to this repository's root)".into(),
                )
            })?;
            let git = Git::discover(&full).map_err(|_| {
                fail(format!("{} is not a git repository", full.display()), "point it at the main checkout of a git repository (`git clone …` it first)".into())
            })?;
            if git.common_dir() == self.common_dir {
                return Err(fail(format!("{} is this repository itself", full.display()), "name another repository; this one is the thread's primary".into()));
            }
            if git.root() != full {
                return Err(fail(
                    format!("{} is not a repository's main checkout", full.display()),
                    format!("point it at the main checkout, {}", git.root().display()),
                ));
            }
            if let Some(other) = out.iter().find(|r| r.root == full) {
                return Err(fail(format!("names the same repository as repos.{}", other.name), "keep one of the two names".into()));
            }
            out.push(LinkedRepo { name: name.clone(), root: full, spec: spec.clone() });
        }
        Ok(out)
    }

    /// Whether iso.toml or the user config changed (or appeared, or went)
    /// since this project was opened: a long-lived server then opens the
    /// project again.
    pub fn config_changed(&self) -> bool {
        self.watched.iter().any(|(path, then)| FileStamp::of(path) != *then)
    }
}

/// A `[repos]` entry resolved by [`Project::linked_repos`].
#[derive(Debug, Clone)]
pub struct LinkedRepo {
    pub name: String,
    /// Its main checkout (canonical).
    pub root: PathBuf,
    pub spec: RepoSpec,
}

impl LinkedRepo {
    /// Where thread `id`'s worktree goes: the primary's `threads.worktree_dir`
    /// (default `.worktrees`) under this repository's root. Its own iso.toml
    /// is not read.
    pub fn worktree_path(&self, config: &Config, id: u32) -> PathBuf {
        self.root.join(&config.threads.worktree_dir).join(format!("thread-{id}"))
    }
}

/// The repository id in the first thread record kept beside a worktree's
/// git metadata (`<common dir>/worktrees/*/iso-thread.json`).
fn recorded_repo_id(common_dir: &Path) -> Option<String> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(common_dir.join("worktrees")).ok()?.flatten().map(|e| e.path()).collect();
    dirs.sort();
    dirs.iter().find_map(|d| {
        let text = std::fs::read_to_string(d.join("iso-thread.json")).ok()?;
        let kept: serde_json::Value = serde_json::from_str(&text).ok()?;
        kept["repo_id"].as_str().map(str::to_string)
    })
}

/// An opened repository on loan from a [`Project`]; given back on drop.
pub(crate) struct GitLease<'a> {
    slot: &'a Mutex<Option<Git>>,
    git: Option<Git>,
}

impl std::ops::Deref for GitLease<'_> {
    type Target = Git;
    fn deref(&self) -> &Git {
        self.git.as_ref().expect("present until drop")
    }
}

impl Drop for GitLease<'_> {
    fn drop(&mut self) {
        let mut slot = self.slot.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            *slot = self.git.take();
        }
    }
}
