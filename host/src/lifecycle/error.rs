//! The error every lifecycle operation returns: a concern's error, or one of
//! the lifecycle's own, each with its kind and hint ([`Diagnostic`]).

use thiserror::Error;

use crate::agent::AgentError;
use crate::config::ConfigError;
use crate::copyfiles::CopyError;
use crate::envfile::EnvFileError;
use crate::error::{Diagnostic, ErrorKind};
use crate::events::HookFailure;
use crate::ledger::LedgerError;
use crate::names::NameError;
use crate::ports::PortsError;
use crate::project::OpenError;
use crate::registry::RegistryError;
use crate::rooted::RootedError;
use crate::servers::ServerError;
use crate::services;
use crate::thread::ThreadStatus;
use crate::worktree::GitError;

#[derive(Debug, Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Git(#[from] GitError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Ports(#[from] PortsError),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(transparent)]
    Name(#[from] NameError),
    #[error(transparent)]
    Env(#[from] EnvFileError),
    #[error(transparent)]
    Copy(#[from] CopyError),
    #[error(transparent)]
    Hook(#[from] HookFailure),
    /// Boxed: a Docker error is large, and every lifecycle result carries this.
    #[error(transparent)]
    Services(Box<services::Error>),
    #[error(transparent)]
    Agent(#[from] AgentError),
    #[error(transparent)]
    Rooted(#[from] RootedError),
    #[error(transparent)]
    Server(#[from] ServerError),
    #[error("thread {id} is already named `{name}`")]
    NameTaken { name: String, id: u32 },
    #[error("branch `{branch}` already belongs to thread {id}")]
    BranchTaken { branch: String, id: u32 },
    #[error("no thread `{selector}`{known}")]
    NotFound { selector: String, known: String },
    #[error("thread {id} is being {doing} by process {pid}{by}")]
    Busy { id: u32, doing: &'static str, pid: u32, by: &'static str },
    #[error("cleanup of thread {id} would lose work:{}", lost_list(.uncommitted, .unmerged))]
    WouldLoseWork { id: u32, uncommitted: Vec<String>, unmerged: Vec<String> },
    #[error("worktree {} has uncommitted changes:{}", path.display(), lost_list(.uncommitted, &[]))]
    DirtyWorktree { path: std::path::PathBuf, uncommitted: Vec<String> },
    #[error("init of `{name}` failed at step `{step}`: {source}{}", rolled_back_list(.rolled_back))]
    InitFailed { name: String, step: &'static str, source: Box<Error>, rolled_back: Vec<String> },
    #[error("status `{0}` cannot be set by hand")]
    StatusNotSettable(ThreadStatus),
    #[error("this repository defines no Docker stack")]
    NoStack,
    #[error("thread {id} has no worktree (status {status}); {what} needs a live thread")]
    NotLive { id: u32, status: ThreadStatus, what: &'static str },
    #[error("`{0}` is not an event: iso's are pre-init, post-init, post-up, pre-cleanup, post-cleanup; a custom one is 1-64 of a-z 0-9 . _ -, starting with a letter, and not agent-*")]
    BadEvent(String),
    #[error("`{0}` is not a state an agent reports: use working, waiting, idle or done")]
    BadAgentState(String),
    #[error("`{0}` is not a thread status: use creating, active, merged, abandoned, cleaning, failed or removed")]
    BadStatus(String),
    #[error("`{text}` is not a duration: {why}")]
    BadDuration { text: String, why: String },
    #[error("{} is in no thread's worktree, and ISO_THREAD_ID is not set", dir.display())]
    NoThreadHere { dir: std::path::PathBuf },
    #[error("{} already exists", path.display())]
    Exists { path: std::path::PathBuf, hint: &'static str },
    #[error("seed source `{from}` has no volume matching this thread's ({}){}", wanted.join(", "), offered_list(.offered))]
    NoSeedMatch { from: String, wanted: Vec<String>, offered: Vec<String> },
    #[error("no snapshot `{name}`{}", if known.is_empty() { "; there are none".to_string() } else { format!("; snapshots: {}", known.join(", ")) })]
    NoSnapshot { name: String, known: Vec<String> },
    #[error("`{0}` is not a snapshot name: 1-40 of a-z 0-9 - _, starting with a letter or digit")]
    BadSnapshotName(String),
    #[error("snapshot `{name}` already exists")]
    SnapshotExists { name: String },
    #[error("{0}")]
    Usage(String),
    #[error("{} cannot be adopted: {why}", path.display())]
    NotAdoptable { path: std::path::PathBuf, why: String, hint: String },
    #[error("{} already is thread {id}'s worktree", path.display())]
    AlreadyThread { path: std::path::PathBuf, id: u32 },
    #[error("{action}: {source}")]
    Io { action: String, source: std::io::Error },
    #[error("thread {id} has no worktree in repository `{repo}`{}", if known.is_empty() { "; it has no linked repositories".to_string() } else { format!("; its repositories: main, {}", known.join(", ")) })]
    NoRepo { id: u32, repo: String, known: Vec<String> },
    /// A step in linked repository `repo` (`[repos]`) failed.
    #[error("in repository `{repo}`: {source}")]
    LinkedRepo { repo: String, source: Box<Error> },
}

fn offered_list(offered: &[String]) -> String {
    if offered.is_empty() {
        "; it has no volumes on the engine".into()
    } else {
        format!("; it has: {}", offered.join(", "))
    }
}

impl From<OpenError> for Error {
    fn from(e: OpenError) -> Error {
        match e {
            OpenError::Git(e) => Error::Git(e),
            OpenError::Config(e) => Error::Config(e),
        }
    }
}

impl From<services::Error> for Error {
    /// A port that is taken is named with the process holding it, when the
    /// engine runs here (the services module does not look at processes).
    fn from(e: services::Error) -> Error {
        match e {
            services::Error::PortTaken { service, port, owner } if owner.is_empty() && services::engine_is_local() => {
                let owner = crate::listeners::owner_of(port).map(|o| format!(" by {o}")).unwrap_or_default();
                Error::Services(Box::new(services::Error::PortTaken { service, port, owner }))
            }
            e => Error::Services(Box::new(e)),
        }
    }
}

impl Error {
    /// The error an init failure wraps, or this one.
    pub fn root_cause(&self) -> &Error {
        match self {
            Error::InitFailed { source, .. } => source.root_cause(),
            e => e,
        }
    }

    /// The concern's error behind this one, as a [`Diagnostic`].
    fn inner(&self) -> Option<&dyn Diagnostic> {
        Some(match self {
            Error::Config(e) => e,
            Error::Git(e) => e,
            Error::Registry(e) => e,
            Error::Ports(e) => e,
            Error::Ledger(e) => e,
            Error::Name(e) => e,
            Error::Env(e) => e,
            Error::Copy(e) => e,
            Error::Hook(e) => e,
            Error::Services(e) => e.as_ref(),
            Error::Agent(e) => e,
            Error::Rooted(e) => e,
            Error::Server(e) => e,
            Error::InitFailed { source, .. } | Error::LinkedRepo { source, .. } => source.as_ref(),
            _ => return None,
        })
    }
}

impl Diagnostic for Error {
    fn kind(&self) -> ErrorKind {
        if let Some(e) = self.inner() {
            return e.kind();
        }
        match self {
            Error::NameTaken { .. } | Error::BranchTaken { .. } => ErrorKind::Conflict,
            Error::NotFound { .. } => ErrorKind::NotFound,
            Error::Busy { .. } => ErrorKind::Busy,
            Error::WouldLoseWork { .. } | Error::DirtyWorktree { .. } => ErrorKind::WouldLoseWork,
            Error::StatusNotSettable(_) | Error::BadEvent(_) | Error::BadAgentState(_) | Error::BadStatus(_) | Error::BadDuration { .. } => ErrorKind::Invalid,
            Error::NoThreadHere { .. } => ErrorKind::NotFound,
            Error::Usage(_) | Error::NotAdoptable { .. } => ErrorKind::Invalid,
            Error::AlreadyThread { .. } => ErrorKind::Conflict,
            Error::NoStack => ErrorKind::Config,
            Error::NoSeedMatch { .. } | Error::NoSnapshot { .. } | Error::NoRepo { .. } => ErrorKind::NotFound,
            Error::BadSnapshotName(_) => ErrorKind::Invalid,
            Error::SnapshotExists { .. } => ErrorKind::Conflict,
            Error::NotLive { .. } | Error::Exists { .. } => ErrorKind::Conflict,
            _ => ErrorKind::Internal,
        }
    }

    fn hint(&self) -> Option<String> {
        if let Some(e) = self.inner() {
            return e.hint();
        }
        Some(match self {
            Error::NameTaken { id, .. } => format!("pick another name, or free it with `iso cleanup {id}`"),
            Error::BranchTaken { .. } => "pick another name".into(),
            Error::NotFound { .. } => "see `iso list` for ids and names".into(),
            Error::Busy { .. } => "wait for it, or if that process is gone run `iso doctor --fix`".into(),
            Error::WouldLoseWork { .. } => "commit and push (or stash) it, or pass --force to throw it away".into(),
            Error::DirtyWorktree { path, .. } => format!("commit or stash them there, or remove it by hand: `git worktree remove --force {}`", path.display()),
            Error::StatusNotSettable(_) => "use active, merged or abandoned".into(),
            Error::NoStack => {
                "add [services.<name>] or [compose] to iso.toml (see docs/services.md), or start from a template: `iso setup --template postgres-redis-api`"
                    .into()
            }
            Error::NotLive { .. } => "see `iso list --all`; a removed thread has no worktree".into(),
            Error::Exists { hint, .. } => hint.to_string(),
            Error::BadAgentState(_) => "e.g. `iso agent-status waiting --message \"needs a decision\"`".into(),
            Error::BadStatus(_) => "e.g. `iso ls --status active`".into(),
            Error::BadDuration { .. } => "write a number and a unit, e.g. 30m, 2h or 1d".into(),
            Error::NoThreadHere { .. } => "run it inside a thread's worktree, or name the thread: `iso agent-status working 2`".into(),
            Error::NoSeedMatch { .. } => {
                "seed from a thread, snapshot or `main` whose stack has volumes of the same names (as in iso.toml or the Compose file), or pass --no-seed"
                    .into()
            }
            Error::NoSnapshot { .. } => "`iso snapshot list` shows the snapshots; `iso snapshot save NAME --from THREAD` makes one".into(),
            Error::BadSnapshotName(_) => "use e.g. `base` or `fixtures-2026`".into(),
            Error::SnapshotExists { name } => format!("pick another name, or remove it first with `iso snapshot rm {name}`"),
            Error::NotAdoptable { hint, .. } => hint.clone(),
            Error::AlreadyThread { id, .. } => format!("it is tracked already: `iso status {id}`"),
            Error::NoRepo { id, .. } => format!("`iso status {id}` lists its worktrees; [repos] in iso.toml names the repositories new threads get"),
            _ => return None,
        })
    }

    fn code(&self) -> &'static str {
        if let Some(e) = self.inner() {
            return e.code();
        }
        match self {
            Error::NameTaken { .. } | Error::BranchTaken { .. } => "conflict",
            Error::NotFound { .. } => "not_found",
            Error::Busy { .. } => "busy",
            Error::WouldLoseWork { .. } | Error::DirtyWorktree { .. } => "would_lose_work",
            Error::StatusNotSettable(_) => "invalid",
            Error::BadEvent(_) => "bad_event",
            Error::BadAgentState(_) => "bad_agent_state",
            Error::BadStatus(_) => "invalid",
            Error::BadDuration { .. } => "bad_duration",
            Error::NoThreadHere { .. } => "not_found",
            Error::NoStack => "no_stack",
            Error::NotLive { .. } => "not_live",
            Error::Exists { .. } => "exists",
            Error::NoSeedMatch { .. } => "no_seed_match",
            Error::NoSnapshot { .. } => "no_snapshot",
            Error::NoRepo { .. } => "not_found",
            Error::BadSnapshotName(_) => "invalid",
            Error::SnapshotExists { .. } => "conflict",
            Error::Usage(_) => "invalid",
            Error::NotAdoptable { .. } => "not_adoptable",
            Error::AlreadyThread { .. } => "conflict",
            _ => "internal",
        }
    }
}

fn lost_list(uncommitted: &[String], unmerged: &[String]) -> String {
    let mut s = String::new();
    if !uncommitted.is_empty() {
        s.push_str(&format!("\n  {} uncommitted file(s):", uncommitted.len()));
        for f in uncommitted.iter().take(10) {
            s.push_str(&format!("\n    {f}"));
        }
        if uncommitted.len() > 10 {
            s.push_str(&format!("\n    … and {} more", uncommitted.len() - 10));
        }
    }
    if !unmerged.is_empty() {
        s.push_str(&format!("\n  {} commit(s) on no other branch or remote:", unmerged.len()));
        for c in unmerged {
            s.push_str(&format!("\n    {c}"));
        }
    }
    s
}

fn rolled_back_list(items: &[String]) -> String {
    if items.is_empty() {
        "\n  nothing had been created".to_string()
    } else {
        format!("\n  rolled back: {}", items.join(", "))
    }
}
