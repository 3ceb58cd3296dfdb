//! What the read commands show, as data every front end renders the same
//! way, locally or through a server: the thread listing (`iso ls`), one
//! thread's status (`iso status`) and the port table (`iso ports`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::stack::{container_counts, service_states, ServiceState};
use super::{find, load, Error};
use crate::project::Project;
use crate::thread::{AgentState, Owner, PortRange, ThreadRecord, ThreadStatus};

/// Running and total containers of one thread's stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceCounts {
    pub running: usize,
    pub total: usize,
}

/// `iso ls`: the threads, and what the table shows beside them.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Listing {
    /// The main checkout, to show worktrees relative to it.
    pub root: PathBuf,
    /// Live threads by id, then (with `all`) the removed ones, oldest first.
    pub threads: Vec<ThreadRecord>,
    /// Threads whose init or cleanup was interrupted (the process working on
    /// them is gone), judged where the registry is.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub interrupted: BTreeSet<u32>,
    /// Per thread id, when the repository has a stack and they were asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub services: Option<BTreeMap<u32, ServiceCounts>>,
    /// Why `services` could not be counted (Docker not reachable, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub services_error: Option<String>,
}

/// Whether a thread's init or cleanup was interrupted: it is still
/// `creating` or `cleaning` but the process that was doing it is gone.
pub fn is_interrupted(t: &ThreadRecord) -> bool {
    matches!(t.status, ThreadStatus::Creating | ThreadStatus::Cleaning) && t.owner.as_ref().is_some_and(|o| !Owner::is_alive(o))
}

/// The threads of `data` in the order listings show them: live ones by id,
/// then (with `all`) the removed ones, oldest first.
pub fn threads(data: &crate::registry::RegistryData, all: bool) -> Vec<&ThreadRecord> {
    let mut threads: Vec<&ThreadRecord> = data.threads.iter().collect();
    threads.sort_by_key(|t| t.id);
    if all {
        threads.extend(data.removed.iter());
    }
    threads
}

/// Which threads `iso ls` shows (all of them by default).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListFilter {
    /// Only those whose agent status (as listings show it) is this.
    pub agent: Option<AgentState>,
    pub status: Option<ThreadStatus>,
    /// Only those idle (no activity) for longer than this.
    pub idle: Option<std::time::Duration>,
}

impl ListFilter {
    pub fn matches(&self, t: &ThreadRecord, now: chrono::DateTime<chrono::Utc>) -> bool {
        self.agent.is_none_or(|a| t.agent.as_ref().is_some_and(|s| s.state == a))
            && self.status.is_none_or(|s| t.status == s)
            && self.idle.is_none_or(|idle| {
                let idle = chrono::Duration::from_std(idle).unwrap_or(chrono::Duration::MAX);
                t.last_activity.is_none_or(|at| now.signed_duration_since(at) > idle)
            })
    }
}

/// `2h`, `30m`, `1d`, `1h 30m` (humantime's syntax), as `iso ls --idle` and
/// `GET /api/listing?idle=` take it.
pub fn parse_idle(text: &str) -> Result<std::time::Duration, Error> {
    humantime::parse_duration(text.trim()).map_err(|e| Error::BadDuration { text: crate::thread::cut(text, 64), why: e.to_string() })
}

/// A thread status by name: `--status active`.
pub fn parse_status(text: &str) -> Result<ThreadStatus, Error> {
    serde_json::from_value(serde_json::Value::String(text.to_string())).map_err(|_| Error::BadStatus(crate::thread::cut(text, 64)))
}

/// An agent state by name: `--agent waiting`.
pub fn parse_agent_state(text: &str) -> Result<AgentState, Error> {
    AgentState::parse(text).ok_or_else(|| Error::BadAgentState(crate::thread::cut(text, 64)))
}

/// `thread` as `iso status` shows it (see [`list_filtered`]).
pub fn as_shown(project: &Project, thread: ThreadRecord) -> ThreadRecord {
    shown(project, project.git().ok().as_deref(), thread)
}

/// `thread` as listings show it: its agent merged with its runs, and its
/// last activity including its creation and the branch tip's commit time.
/// Creation counts: a thread made a minute ago from an old base commit is
/// not idle.
fn shown(project: &Project, git: Option<&crate::worktree::Git>, thread: ThreadRecord) -> ThreadRecord {
    let mut t = super::agents::with_agent(project, thread);
    if t.is_live() {
        let tip = git.and_then(|g| g.branch_tip_time(&t.branch)).and_then(|s| chrono::DateTime::<chrono::Utc>::from_timestamp(s, 0));
        t.last_activity = t.last_activity.max(tip).max(Some(t.created));
    }
    t
}

/// The threads of the repository (`all`: the removed ones too); with
/// `services`, their containers counted in one Docker call.
pub fn list(project: &Project, all: bool, services: bool) -> Result<Listing, Error> {
    list_filtered(project, all, services, &ListFilter::default())
}

/// [`list`], only the threads `filter` selects. Each thread shows its
/// agent status and last activity as they are now ([`ThreadRecord::agent`]
/// merged with its latest run, [`ThreadRecord::last_activity`] with its
/// output and its branch tip).
pub fn list_filtered(project: &Project, all: bool, services: bool, filter: &ListFilter) -> Result<Listing, Error> {
    let data = load(project)?;
    let git = project.git().ok();
    let now = chrono::Utc::now();
    let threads: Vec<ThreadRecord> =
        threads(&data, all).into_iter().cloned().map(|t| shown(project, git.as_deref(), t)).filter(|t| filter.matches(t, now)).collect();
    drop(git);
    let interrupted = threads.iter().filter(|t| is_interrupted(t)).map(|t| t.id).collect();
    let (services, services_error) = if services && project.config.has_stack() {
        match container_counts(project) {
            Ok(c) => (Some(c.into_iter().map(|(id, (running, total))| (id, ServiceCounts { running, total })).collect()), None),
            Err(e) => (Some(BTreeMap::new()), Some(e.to_string())),
        }
    } else {
        (None, None)
    };
    Ok(Listing { root: project.root().to_path_buf(), threads, interrupted, services, services_error })
}

/// `iso status`: one thread and, with a stack, its services as Docker has
/// them now. Its JSON is the thread's record with `services` (or
/// `services_error`) added.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusView {
    #[serde(flatten)]
    pub thread: ThreadRecord,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub services: Option<Vec<ServiceState>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub services_error: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub interrupted: bool,
    /// Every worktree of the thread: the primary's first (named
    /// [`crate::config::PRIMARY_REPO`]), then the linked repositories'.
    #[serde(default)]
    pub worktrees: Vec<WorktreeState>,
}

/// One worktree of a thread as it is on disk now (`iso status`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorktreeState {
    /// `main` for the primary, else the `[repos]` name.
    pub repo: String,
    pub path: PathBuf,
    pub branch: String,
    /// Whether the directory is there.
    pub exists: bool,
    /// How many files have uncommitted changes (untracked included); none
    /// when it is missing or git could not read it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uncommitted: Option<usize>,
}

/// The thread's worktrees, the primary's first, with their dirty state;
/// none for a thread that is not live (removed: its worktrees are gone).
pub fn worktree_states(t: &ThreadRecord) -> Vec<WorktreeState> {
    if !t.is_live() {
        return Vec::new();
    }
    let primary = (crate::config::PRIMARY_REPO.to_string(), t.worktree.clone(), t.branch.clone());
    let linked = t.repos.iter().map(|(name, w)| (name.clone(), w.worktree.clone(), w.branch.clone()));
    std::iter::once(primary)
        .chain(linked)
        .map(|(repo, path, branch)| {
            let exists = path.is_dir();
            let uncommitted = exists.then(|| crate::worktree::uncommitted_files(&path).ok().map(|f| f.len())).flatten();
            WorktreeState { repo, path, branch, exists, uncommitted }
        })
        .collect()
}

/// `iso path THREAD [--repo NAME]`: the thread's worktree in the primary
/// repository (`main` or none) or in linked repository `repo`.
pub fn worktree_path(project: &Project, selector: &str, repo: Option<&str>) -> Result<PathBuf, Error> {
    let t = find(project, selector)?;
    match repo {
        None => Ok(t.worktree),
        Some(r) if r == crate::config::PRIMARY_REPO => Ok(t.worktree),
        Some(r) => match t.repos.get(r) {
            Some(w) => Ok(w.worktree.clone()),
            None => Err(Error::NoRepo { id: t.id, repo: r.to_string(), known: t.repos.keys().cloned().collect() }),
        },
    }
}

pub fn status(project: &Project, selector: &str) -> Result<StatusView, Error> {
    let thread = find(project, selector)?;
    let thread = as_shown(project, thread);
    let (services, services_error) = if project.config.has_stack() {
        match service_states(project, &thread) {
            Ok(s) => (Some(s), None),
            Err(e) => (None, Some(e.to_string())),
        }
    } else {
        (None, None)
    };
    let interrupted = is_interrupted(&thread);
    let worktrees = worktree_states(&thread);
    Ok(StatusView { thread, services, services_error, interrupted, worktrees })
}

/// A thread's stack as `iso init` reports it: the services and the
/// connection details `.env.thread` got.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StackSummary {
    pub services: Vec<String>,
    pub exports: BTreeMap<String, String>,
}

/// A thread just created, with its stack (when the repository has one).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Created {
    #[serde(flatten)]
    pub thread: ThreadRecord,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stack: Option<StackSummary>,
}

/// [`Created`] for `thread`.
pub fn created(project: &Project, thread: ThreadRecord) -> Created {
    let stack = if project.config.has_stack() {
        super::stack::stack_plan(project, &thread)
            .ok()
            .map(|plan| StackSummary { services: plan.services.iter().map(|s| s.name.clone()).collect(), exports: plan.exports.clone() })
    } else {
        None
    };
    Created { thread, stack }
}

/// One row of `iso ports`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PortRow {
    pub thread: u32,
    pub name: String,
    pub block: PortRange,
    pub ports: BTreeMap<String, u16>,
}

/// The port allocation table: each live thread's block and named ports.
pub fn ports(project: &Project) -> Result<Vec<PortRow>, Error> {
    let data = load(project)?;
    let mut rows: Vec<PortRow> =
        data.threads.iter().map(|t| PortRow { thread: t.id, name: t.name.clone(), block: t.port_block, ports: t.ports.clone() }).collect();
    rows.sort_by_key(|r| r.thread);
    Ok(rows)
}
