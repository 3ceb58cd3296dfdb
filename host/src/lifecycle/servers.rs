//! Discovery of running `iso serve`s: the server records its URL and where
//! its token is ([`record_server`]); `iso remote discover` finds the server
//! of the repository it runs in, or every server of this user
//! ([`discover`]). Records of dead processes are removed as they are seen.
//! Whether a live process answers HTTP is the front end's to check (it has
//! the client); it hands back the ones that do not ([`forget_server`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::ledger;
use crate::servers;
pub use crate::servers::{ServerError, ServerRecord, TokenSource};
use crate::thread::Owner;

use super::Error;
use crate::project::Project;

/// The per-user state directory of this process's environment.
fn state_dir() -> Option<PathBuf> {
    let env: BTreeMap<String, String> = std::env::vars().collect();
    ledger::state_dir(&env)
}

/// Removes a server's records when it ends (gracefully: a killed server
/// leaves them, and discovery removes them later).
pub struct ServerGuard {
    record: ServerRecord,
    state_dir: Option<PathBuf>,
}

impl ServerGuard {
    pub fn record(&self) -> &ServerRecord {
        &self.record
    }
}

impl Drop for ServerGuard {
    fn drop(&mut self) {
        servers::remove(&self.record, self.state_dir.as_deref());
    }
}

/// Record that this process serves `project` at `url`, with its token at
/// `token`; the records live until the guard is dropped.
pub fn record_server(project: &Project, url: &str, token: TokenSource) -> Result<ServerGuard, Error> {
    let me = Owner::current();
    let record = ServerRecord {
        url: url.to_string(),
        pid: me.pid,
        start_ticks: me.start_ticks,
        started: chrono::Utc::now(),
        root: project.root().to_path_buf(),
        iso_dir: project.iso_dir(),
        token,
    };
    let state_dir = state_dir();
    servers::write(&record, state_dir.as_deref()).map_err(ServerError::from)?;
    Ok(ServerGuard { record, state_dir })
}

/// What discovery found: the server of the repository containing `cwd`
/// (when there is one and its process runs), and every live server of this
/// user (this one included).
#[derive(Debug, Clone, Default)]
pub struct Discovery {
    /// The repository `cwd` is in, if any.
    pub repository: Option<PathBuf>,
    pub here: Option<ServerRecord>,
    pub all: Vec<ServerRecord>,
}

/// Find the running servers, removing the records of dead ones.
pub fn discover(cwd: &Path) -> Discovery {
    let state_dir = state_dir();
    let project = Project::discover(cwd).ok();
    let here = project.as_ref().and_then(|p| servers::read(&p.iso_dir()));
    let here = match here {
        Some(r) if r.is_alive() => Some(r),
        Some(dead) => {
            servers::remove(&dead, state_dir.as_deref());
            None
        }
        None => None,
    };
    let mut all = Vec::new();
    if let Some(dir) = &state_dir {
        for (path, record) in servers::list(dir) {
            match record {
                Some(r) if r.is_alive() => all.push(r),
                Some(dead) => servers::remove(&dead, Some(dir)),
                None => {
                    let _ = std::fs::remove_file(path);
                }
            }
        }
    }
    if let Some(h) = &here {
        if !all.contains(h) {
            all.insert(0, h.clone());
        }
    }
    Discovery { repository: project.map(|p| p.root().to_path_buf()), here, all }
}

/// Remove a server's records (its process runs but it does not answer:
/// not an iso server any more, or hung).
pub fn forget_server(record: &ServerRecord) {
    servers::remove(record, state_dir().as_deref());
}

/// A server's token as read by a client.
#[derive(Debug, Clone)]
pub struct ServerToken {
    pub value: String,
    /// Whether a stored connection should keep it: not when it came from an
    /// environment variable the client has too (it is read at use time, as
    /// for `iso remote connect` without `--token`).
    pub store: bool,
}

/// The server's token, read from where its record says.
pub fn server_token(record: &ServerRecord) -> Result<ServerToken, Error> {
    match &record.token {
        TokenSource::Env { var } => match std::env::var(var) {
            Ok(value) if !value.is_empty() => Ok(ServerToken { value, store: false }),
            _ => Err(ServerError::TokenEnvUnset { var: var.clone() }.into()),
        },
        TokenSource::Config { key } => match super::open(&record.root)?.config.api.token.clone() {
            Some(value) => Ok(ServerToken { value, store: true }),
            None => Err(ServerError::TokenConfigUnset { key: key.clone(), root: record.root.clone() }.into()),
        },
        TokenSource::File { path } => match servers::read_token_file(path).map_err(ServerError::from)? {
            Some(value) => Ok(ServerToken { value, store: true }),
            None => Err(ServerError::TokenFileMissing { path: path.clone() }.into()),
        },
    }
}
