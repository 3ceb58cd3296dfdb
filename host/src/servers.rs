//! The records of running `iso serve` processes, for `iso remote discover`.
//!
//! A server writes `<git common dir>/iso/server.json` (its repository's
//! server) and the same record as `<state dir>/servers/<pid>.json` (the
//! per-user index, so discovery works outside a repository), both
//! atomically, and removes both when it stops gracefully. A server killed
//! with SIGKILL leaves them behind: a record whose process is gone is stale
//! ([`ServerRecord::is_alive`] compares the process start time too, so a
//! reused pid does not count) and the lifecycle removes it when it sees it.
//!
//! A record never holds the token: it says where the token is
//! ([`TokenSource`]), so the files may be world-readable. This module only
//! keeps the files; it does not decide what is stale or talk to servers.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::error::{Diagnostic, ErrorKind};
use crate::lockedfile::{self, FileError};
use crate::thread::Owner;

/// Where a server's token is, for a client of the same user to read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "from", rename_all = "snake_case")]
pub enum TokenSource {
    /// An environment variable of the server (`ISO_API_TOKEN`): the client
    /// must have it set too; its value is not written anywhere.
    Env { var: String },
    /// A key of the repository's configuration (`api.token`), read again by
    /// the client from the same files.
    Config { key: String },
    /// A token generated for this run, in a file of mode 0600.
    File { path: PathBuf },
}

/// One running server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerRecord {
    /// Where a local client reaches it, e.g. `http://127.0.0.1:31337`.
    pub url: String,
    pub pid: u32,
    /// The process start time (Linux clock ticks), to tell a reused pid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_ticks: Option<u64>,
    pub started: DateTime<Utc>,
    /// The repository's main checkout.
    pub root: PathBuf,
    /// Its iso directory, where `server.json` is.
    pub iso_dir: PathBuf,
    pub token: TokenSource,
}

impl ServerRecord {
    /// Whether the server's process still runs (the same process, not one
    /// that got its pid).
    pub fn is_alive(&self) -> bool {
        Owner { pid: self.pid, start_ticks: self.start_ticks, op: None }.is_alive()
    }
}

#[derive(Debug, Error)]
pub enum ServerError {
    #[error("no running iso server of this user{}", .here.as_ref().map(|r| format!(" (none for {})", r.display())).unwrap_or_default())]
    NoneRunning { here: Option<PathBuf> },
    #[error("the server's token is in ${var}, which is not set here")]
    TokenEnvUnset { var: String },
    #[error("the server's token (`{key}` of {}) is not configured here", root.display())]
    TokenConfigUnset { key: String, root: PathBuf },
    #[error("the server's token file {} is gone", path.display())]
    TokenFileMissing { path: PathBuf },
    #[error(transparent)]
    File(#[from] FileError),
}

impl Diagnostic for ServerError {
    fn kind(&self) -> ErrorKind {
        match self {
            ServerError::NoneRunning { .. } => ErrorKind::NotFound,
            ServerError::TokenEnvUnset { .. } | ServerError::TokenConfigUnset { .. } => ErrorKind::Config,
            ServerError::TokenFileMissing { .. } => ErrorKind::Unavailable,
            ServerError::File(_) => ErrorKind::Internal,
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            ServerError::NoneRunning { .. } => Some("start one with `iso serve` in the repository".into()),
            ServerError::TokenEnvUnset { var } => Some(format!("set {var} to the server's token, or `iso remote connect URL --token T`")),
            ServerError::TokenConfigUnset { .. } => Some("`iso remote connect URL --token T` with the server's token".into()),
            ServerError::TokenFileMissing { .. } => Some("restart `iso serve`; it writes the file when it starts".into()),
            ServerError::File(_) => None,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            ServerError::NoneRunning { .. } => "not_found",
            ServerError::TokenEnvUnset { .. } | ServerError::TokenConfigUnset { .. } => "config",
            ServerError::TokenFileMissing { .. } => "unavailable",
            ServerError::File(_) => "internal",
        }
    }
}

/// `<iso dir>/server.json`.
pub fn record_path(iso_dir: &Path) -> PathBuf {
    iso_dir.join("server.json")
}

/// `<state dir>/servers`.
pub fn index_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("servers")
}

fn index_path(state_dir: &Path, pid: u32) -> PathBuf {
    index_dir(state_dir).join(format!("{pid}.json"))
}

/// Write the repository's record and, with a state directory, its index entry.
pub fn write(record: &ServerRecord, state_dir: Option<&Path>) -> Result<(), FileError> {
    let bytes = serde_json::to_vec_pretty(record).expect("serialises");
    lockedfile::write_atomic(&record_path(&record.iso_dir), &bytes)?;
    if let Some(dir) = state_dir {
        lockedfile::write_atomic(&index_path(dir, record.pid), &bytes)?;
    }
    Ok(())
}

/// Remove a server's records: its index entry, and the repository's record
/// if it is still this server's (a newer server may have replaced it).
pub fn remove(record: &ServerRecord, state_dir: Option<&Path>) {
    if let Some(dir) = state_dir {
        let _ = std::fs::remove_file(index_path(dir, record.pid));
    }
    let path = record_path(&record.iso_dir);
    if read_at(&path).is_some_and(|r| r.pid == record.pid && r.start_ticks == record.start_ticks) {
        let _ = std::fs::remove_file(path);
    }
}

/// A record file; `None` when missing or unreadable (a damaged record
/// names no server).
pub fn read_at(path: &Path) -> Option<ServerRecord> {
    serde_json::from_str(&lockedfile::read_optional(path).ok()??).ok()
}

/// The repository's record, if any.
pub fn read(iso_dir: &Path) -> Option<ServerRecord> {
    read_at(&record_path(iso_dir))
}

/// Every record of the index, with its file (damaged ones too, as `None`,
/// so they can be removed).
pub fn list(state_dir: &Path) -> Vec<(PathBuf, Option<ServerRecord>)> {
    let Ok(entries) = std::fs::read_dir(index_dir(state_dir)) else { return Vec::new() };
    let mut out: Vec<(PathBuf, Option<ServerRecord>)> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| {
            let r = read_at(&p);
            (p, r)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// The token a [`TokenSource::File`] holds.
pub fn read_token_file(path: &Path) -> Result<Option<String>, FileError> {
    Ok(lockedfile::read_optional(path)?.map(|t| t.trim().to_string()).filter(|t| !t.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(iso_dir: &Path) -> ServerRecord {
        let me = Owner::current();
        ServerRecord {
            url: "http://127.0.0.1:1".into(),
            pid: me.pid,
            start_ticks: me.start_ticks,
            started: Utc::now(),
            root: "/r".into(),
            iso_dir: iso_dir.to_path_buf(),
            token: TokenSource::File { path: iso_dir.join("api-token") },
        }
    }

    #[test]
    fn records_are_written_listed_and_removed_only_by_their_server() {
        let dir = tempfile::tempdir().unwrap();
        let (iso, state) = (dir.path().join("iso"), dir.path().join("state"));
        let r = record(&iso);
        write(&r, Some(&state)).unwrap();
        assert_eq!(read(&iso), Some(r.clone()));
        assert!(r.is_alive());
        let listed = list(&state);
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].1, Some(r.clone()));
        let text = std::fs::read_to_string(record_path(&iso)).unwrap();
        assert!(text.contains("\"from\": \"file\""), "{text}");
        // Another server replaced the repository's record: it stays.
        let newer = ServerRecord { pid: r.pid + 1, ..r.clone() };
        write(&newer, None).unwrap();
        remove(&r, Some(&state));
        assert!(list(&state).is_empty());
        assert_eq!(read(&iso), Some(newer.clone()));
        remove(&newer, Some(&state));
        assert_eq!(read(&iso), None);
        assert!(!ServerRecord { start_ticks: r.start_ticks.map(|t| t + 1), ..r }.is_alive() || cfg!(not(target_os = "linux")));
    }
}
