//! What the read commands show, as data every front end renders the same
//! way, locally or through a server: the thread listing (`iso ls`), one
//! thread's status (`iso status`) and the port table (`iso ports`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::stack::{container_counts, service_states, ServiceState};
use super::{find, load, Error};
use crate::project::Project;
use crate::thread::{Owner, PortRange, ThreadRecord, ThreadStatus};

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

/// The threads of the repository (`all`: the removed ones too); with
/// `services`, their containers counted in one Docker call.
pub fn list(project: &Project, all: bool, services: bool) -> Result<Listing, Error> {
    let data = load(project)?;
    let threads: Vec<ThreadRecord> = threads(&data, all).into_iter().cloned().collect();
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
}

pub fn status(project: &Project, selector: &str) -> Result<StatusView, Error> {
    let thread = find(project, selector)?;
    let (services, services_error) = if project.config.has_stack() {
        match service_states(project, &thread) {
            Ok(s) => (Some(s), None),
            Err(e) => (None, Some(e.to_string())),
        }
    } else {
        (None, None)
    };
    let interrupted = is_interrupted(&thread);
    Ok(StatusView { thread, services, services_error, interrupted })
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
