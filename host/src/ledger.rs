//! The per-user port ledger: which repository's thread holds which port
//! block, for every repository of this user on this machine.
//!
//! Thread ids stay per repository, so two repositories would both give
//! their thread 1 the block `base + 1 × size`; the ledger is what lets
//! `iso init` see the blocks other repositories hold. It lives in the state
//! directory ([`state_dir`]: `$ISO_STATE_DIR`, else `$XDG_STATE_HOME/iso`,
//! else `~/.local/state/iso`) as `ports.json`, changed only under the lock
//! `ports.lock` with an atomic, durable write ([`crate::lockedfile`]).
//! Lock order: the ledger's lock first, then a registry's (see
//! `lifecycle::init`), never the other way round.
//!
//! Beside it, `repos/<repo-id>.json` names each repository the ledger has
//! seen. That list survives deleting `ports.json`, and each repository's
//! registry knows its own blocks, so a lost ledger is rebuilt from them
//! (`lifecycle::machine`). This module only keeps the files; deciding what
//! is stale needs the registries and is the lifecycle's work.

use std::collections::BTreeMap;
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::error::{Diagnostic, ErrorKind};
use crate::lockedfile::{self, FileError};
use crate::thread::PortRange;

/// The ledger's schema version.
pub const SCHEMA_VERSION: u32 = 1;

/// The state directory for `env` (a process's or a Nushell engine's
/// environment): `ISO_STATE_DIR`, else `XDG_STATE_HOME/iso`, else
/// `HOME/.local/state/iso`; `None` without any of them.
pub fn state_dir(env: &BTreeMap<String, String>) -> Option<PathBuf> {
    let set = |k: &str| env.get(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    set("ISO_STATE_DIR").or_else(|| set("XDG_STATE_HOME").map(|d| d.join("iso"))).or_else(|| set("HOME").map(|h| h.join(".local/state/iso")))
}

/// One block held by one thread of one repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// The repository's identity (its `repo-id`).
    pub repo_id: String,
    /// Its main checkout.
    pub repo: PathBuf,
    /// Its iso directory (`<git common dir>/iso`): registry and `repo-id`.
    pub iso_dir: PathBuf,
    /// The thread's id in that repository.
    pub thread: u32,
    pub name: String,
    pub block: PortRange,
    pub since: DateTime<Utc>,
}

impl Lease {
    pub fn overlaps(&self, block: &PortRange) -> bool {
        self.block.start <= block.end && block.start <= self.block.end
    }

    /// The repository this lease belongs to, as the ledger remembers it.
    pub fn repo_entry(&self) -> RepoEntry {
        RepoEntry { repo_id: self.repo_id.clone(), repo: self.repo.clone(), iso_dir: self.iso_dir.clone() }
    }
}

/// A repository the ledger has seen (`repos/<repo-id>.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepoEntry {
    pub repo_id: String,
    pub repo: PathBuf,
    pub iso_dir: PathBuf,
}

/// What `ports.json` holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerData {
    pub version: u32,
    #[serde(default)]
    pub leases: Vec<Lease>,
    /// The file did not exist when this was read (first use, or deleted):
    /// the caller rebuilds it from the repositories it knew.
    #[serde(skip)]
    pub missing: bool,
}

#[derive(Debug, Error)]
pub enum LedgerError {
    #[error(transparent)]
    File(#[from] FileError),
    #[error("port ledger {} is not valid: {message}", path.display())]
    Corrupt { path: PathBuf, message: String },
    #[error("port ledger {} has schema {found}, newer than this iso understands ({SCHEMA_VERSION})", path.display())]
    TooNew { path: PathBuf, found: u32 },
    #[error("no state directory for the port ledger: none of ISO_STATE_DIR, XDG_STATE_HOME and HOME is set")]
    NoStateDir,
}

impl Diagnostic for LedgerError {
    fn kind(&self) -> ErrorKind {
        match self {
            LedgerError::File(_) => ErrorKind::Internal,
            _ => ErrorKind::Config,
        }
    }

    fn hint(&self) -> Option<String> {
        Some(match self {
            LedgerError::File(_) => return None,
            LedgerError::Corrupt { .. } => "delete the file: the next iso command rebuilds it from the repositories' registries".into(),
            LedgerError::TooNew { .. } => "upgrade iso (`cargo install --path host`)".into(),
            LedgerError::NoStateDir => "set ISO_STATE_DIR (or HOME)".into(),
        })
    }

    fn code(&self) -> &'static str {
        match self {
            LedgerError::File(_) => "internal",
            LedgerError::NoStateDir => "config",
            _ => "ledger",
        }
    }
}

/// The ledger in one state directory.
#[derive(Debug, Clone)]
pub struct Ledger {
    dir: PathBuf,
}

impl Ledger {
    pub fn new(dir: impl Into<PathBuf>) -> Ledger {
        Ledger { dir: dir.into() }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join("ports.json")
    }

    fn repos_dir(&self) -> PathBuf {
        self.dir.join("repos")
    }

    /// The ledger as it is now (no lock: writes are atomic renames).
    pub fn load(&self) -> Result<LedgerData, LedgerError> {
        let path = self.path();
        let Some(text) = lockedfile::read_optional(&path)? else { return Ok(LedgerData { version: SCHEMA_VERSION, leases: Vec::new(), missing: true }) };
        let data: LedgerData = serde_json::from_str(&text).map_err(|e| LedgerError::Corrupt { path: path.clone(), message: e.to_string() })?;
        if data.version > SCHEMA_VERSION {
            return Err(LedgerError::TooNew { path, found: data.version });
        }
        Ok(data)
    }

    /// Lock, read, let `change` edit, and write the result if its leases
    /// changed (a missing file stays missing until there is a lease, so it
    /// is rebuilt the next time too). Nothing is written when `change` fails.
    pub fn update<T, E: From<LedgerError>>(&self, change: impl FnOnce(&mut LedgerData) -> Result<T, E>) -> Result<T, E> {
        let _lock = lockedfile::lock(&self.dir.join("ports.lock")).map_err(LedgerError::from)?;
        let before = self.load()?;
        let mut data = before.clone();
        let out = change(&mut data)?;
        if data.leases != before.leases {
            data.version = SCHEMA_VERSION;
            data.leases.sort_by(|a, b| (a.block.start, &a.repo_id, a.thread).cmp(&(b.block.start, &b.repo_id, b.thread)));
            let text = serde_json::to_string_pretty(&data).expect("the ledger serialises");
            lockedfile::write_atomic(&self.path(), text.as_bytes()).map_err(LedgerError::from)?;
        }
        Ok(out)
    }

    /// Remember `repo` (a no-op when it is already remembered as it is).
    pub fn remember(&self, repo: &RepoEntry) -> Result<(), LedgerError> {
        let path = self.repos_dir().join(format!("{}.json", repo.repo_id));
        let text = serde_json::to_string_pretty(repo).expect("a repository entry serialises");
        if lockedfile::read_optional(&path)?.as_deref() != Some(text.as_str()) {
            lockedfile::write_atomic(&path, text.as_bytes())?;
        }
        Ok(())
    }

    /// Forget `repo_id` (its repository is gone).
    pub fn forget(&self, repo_id: &str) {
        let _ = std::fs::remove_file(self.repos_dir().join(format!("{repo_id}.json")));
    }

    /// Every repository the ledger has seen; unreadable entries are skipped.
    pub fn known_repos(&self) -> Vec<RepoEntry> {
        let Ok(entries) = std::fs::read_dir(self.repos_dir()) else { return Vec::new() };
        let mut out: Vec<RepoEntry> = entries
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
            .filter_map(|e| serde_json::from_str(&std::fs::read_to_string(e.path()).ok()?).ok())
            .collect();
        out.sort_by(|a, b| a.repo.cmp(&b.repo));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(repo: &str, thread: u32, start: u16) -> Lease {
        Lease {
            repo_id: format!("{repo:0>32}"),
            repo: PathBuf::from(format!("/r/{repo}")),
            iso_dir: PathBuf::from(format!("/r/{repo}/.git/iso")),
            thread,
            name: format!("t{thread}"),
            block: PortRange { start, end: start + 9 },
            since: Utc::now(),
        }
    }

    #[test]
    fn leases_survive_a_reload_and_a_failed_change_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::new(dir.path().join("iso"));
        assert!(ledger.load().unwrap().missing);
        ledger
            .update(|d| {
                assert!(d.missing);
                d.leases.push(lease("b", 1, 200));
                d.leases.push(lease("a", 1, 100));
                Ok::<_, LedgerError>(())
            })
            .unwrap();
        let data = ledger.load().unwrap();
        assert!(!data.missing);
        assert_eq!(data.leases.iter().map(|l| l.block.start).collect::<Vec<_>>(), [100, 200], "kept in port order");
        let failed: Result<(), LedgerError> = ledger.update(|d| {
            d.leases.clear();
            Err(LedgerError::NoStateDir)
        });
        assert!(failed.is_err());
        assert_eq!(ledger.load().unwrap().leases.len(), 2);
    }

    #[test]
    fn the_repository_list_outlives_the_ledger_file() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::new(dir.path());
        let l = lease("a", 1, 100);
        ledger.remember(&l.repo_entry()).unwrap();
        ledger
            .update(|d| {
                d.leases.push(l.clone());
                Ok::<_, LedgerError>(())
            })
            .unwrap();
        std::fs::remove_file(ledger.path()).unwrap();
        assert!(ledger.load().unwrap().missing);
        assert_eq!(ledger.known_repos(), [l.repo_entry()]);
        ledger.forget(&l.repo_id);
        assert!(ledger.known_repos().is_empty());
    }

    #[test]
    fn damaged_and_newer_ledgers_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::new(dir.path());
        std::fs::write(ledger.path(), "{not json").unwrap();
        assert!(matches!(ledger.load(), Err(LedgerError::Corrupt { .. })));
        std::fs::write(ledger.path(), r#"{"version": 99, "leases": []}"#).unwrap();
        assert!(matches!(ledger.load(), Err(LedgerError::TooNew { found: 99, .. })));
    }

    #[test]
    fn the_state_dir_follows_the_documented_order() {
        let env = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>();
        assert_eq!(state_dir(&env(&[("ISO_STATE_DIR", "/s"), ("XDG_STATE_HOME", "/x"), ("HOME", "/h")])), Some("/s".into()));
        assert_eq!(state_dir(&env(&[("XDG_STATE_HOME", "/x"), ("HOME", "/h")])), Some("/x/iso".into()));
        assert_eq!(state_dir(&env(&[("ISO_STATE_DIR", ""), ("HOME", "/h")])), Some("/h/.local/state/iso".into()));
        assert_eq!(state_dir(&env(&[])), None);
    }
}
