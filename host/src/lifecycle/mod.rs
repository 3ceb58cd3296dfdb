//! The thread lifecycle: the one module that orchestrates the others, and
//! the operations every front end (CLI, Nushell plugin, HTTP API) calls.
//!
//! ```text
//! creating ──► active ──► cleaning ──► removed
//!     │          (merged / abandoned are user-set flavours of active)
//!     └──► rolled back (entry dropped)      any step ──► failed
//! ```
//!
//! Every resource an init creates is first written to the thread's step
//! journal in the registry (write-ahead), so a failed init undoes exactly
//! what it made, and an init killed half-way is undone by `iso doctor --fix`.
//!
//! One file per verb: [`init`], [`cleanup`], [`update`], [`doctor`],
//! [`stack`] (a thread's Docker services), [`agents`] (spawn, runs, stop),
//! [`hooks`] (listing and running hooks, custom events), [`events`] (the
//! event log), [`machine`] (the per-user port ledger), [`servers`] (discovery of running `iso serve`s), [`view`] (listing and status as front ends show them) and
//! [`setup`]. [`env`] holds what several of them share: a thread's
//! environment and the delivery of lifecycle events.
//!
//! Front ends never reach past this module into a concern module: the types
//! they need are re-exported here.

pub mod agents;
pub mod cleanup;
pub mod doctor;
mod env;
mod error;
pub mod events;
pub mod hooks;
pub mod init;
pub mod machine;
mod recover;
pub mod seed;
pub mod servers;
pub mod setup;
pub mod stack;
pub mod update;
pub mod view;

use crate::project::Project;
use crate::thread::ThreadRecord;

pub use crate::agent::{Mode as RunMode, Run, RunState, DEFAULT_TEMPLATE};
pub use crate::eventlog::{EventRecord, Tail as EventTail, AGENT as AGENT_EVENT, CUSTOM as CUSTOM_EVENT, LIFECYCLE as LIFECYCLE_EVENT};
pub use crate::hooks::{HookRun, RunReport};
pub use crate::registry::RegistryData;
pub use crate::services::{Copied, CopyReport, Phase, Plan, Started};
pub use agents::{SpawnRequest, StartOptions};
pub use cleanup::CleanupOptions;
pub use doctor::Finding;
pub use env::{thread_env, ENV_FILE};
pub use error::Error;
pub use init::InitOptions;
pub use machine::LeaseRow;
pub use seed::{SeedReport, Snapshot, SnapshotSaved};
pub use stack::ServiceState;
pub use update::Update;
pub use view::{Created, Listing, PortRow, ServiceCounts, StackSummary, StatusView};

/// The outcome of one item of a bulk operation (`iso init a b c`,
/// `iso cleanup 1 2`): what it was asked for, how it ended, and the notes
/// made along the way (skipped port blocks, hook messages).
#[derive(Debug)]
pub struct BulkItem<T> {
    pub input: String,
    pub result: Result<T, Error>,
    pub notes: Vec<String>,
}

/// Every item of a bulk operation, in the order asked.
#[derive(Debug)]
pub struct Bulk<T> {
    pub items: Vec<BulkItem<T>>,
}

impl<T> Bulk<T> {
    pub fn done(&self) -> impl Iterator<Item = &T> {
        self.items.iter().filter_map(|i| i.result.as_ref().ok())
    }

    pub fn failed(&self) -> impl Iterator<Item = (&str, &Error)> {
        self.items.iter().filter_map(|i| i.result.as_ref().err().map(|e| (i.input.as_str(), e)))
    }

    pub fn failed_count(&self) -> usize {
        self.failed().count()
    }
}

/// Run `op` for each input, each with its own notes.
fn bulk<T>(
    inputs: &[String],
    progress: &dyn crate::progress::Progress,
    mut op: impl FnMut(&str, &dyn crate::progress::Progress) -> Result<T, Error>,
) -> Bulk<T> {
    let items = inputs
        .iter()
        .map(|input| {
            let collect = crate::progress::Collect::new(progress);
            let result = op(input, &collect);
            BulkItem { input: input.clone(), result, notes: collect.into_notes() }
        })
        .collect();
    Bulk { items }
}

/// Open the repository containing `start` (see [`Project::discover`]).
pub fn open(start: &std::path::Path) -> Result<Project, Error> {
    Ok(Project::discover(start)?)
}

/// [`open`] with the environment given explicitly (the Nushell plugin's
/// engine `$env`).
pub fn open_with_env(start: &std::path::Path, env: &std::collections::BTreeMap<String, String>) -> Result<Project, Error> {
    Ok(Project::discover_with_env(start, env)?)
}

/// The registry as it is now.
pub fn load(project: &Project) -> Result<std::sync::Arc<RegistryData>, Error> {
    Ok(project.snapshot()?)
}

/// The live thread named by `selector` (id, name or branch).
pub fn find(project: &Project, selector: &str) -> Result<ThreadRecord, Error> {
    find_in(&*load(project)?, selector).cloned()
}

/// Resolve `selector` among live threads: an id first, then a name as
/// typed, then a name of the same ASCII form (`racea` finds `raceA`,
/// `naive-cafe` finds `naïve-café`, see [`crate::names::sanitize`]; init
/// keeps that form unique), then a branch. Names are never all digits, so an
/// id and a name cannot be confused.
pub fn find_in<'a>(data: &'a RegistryData, selector: &str) -> Result<&'a ThreadRecord, Error> {
    let by_id = selector.parse::<u32>().ok().and_then(|id| data.thread(id));
    let by_name = |name: &str| data.threads.iter().find(|t| t.name == name);
    let normalised = crate::names::sanitize(selector).ok();
    let by_slug = |slug: &str| data.threads.iter().find(|t| crate::names::sanitize(&t.name).ok().as_deref() == Some(slug));
    by_id
        .or_else(|| by_name(selector))
        .or_else(|| normalised.as_deref().and_then(by_name))
        .or_else(|| normalised.as_deref().and_then(by_slug))
        .or_else(|| data.threads.iter().find(|t| t.branch == selector))
        .ok_or_else(|| {
            let names: Vec<String> = data.threads.iter().map(|t| format!("{} ({})", t.id, t.name)).collect();
            let known = if names.is_empty() { "; there are no threads".to_string() } else { format!("; threads: {}", names.join(", ")) };
            Error::NotFound { selector: selector.to_string(), known }
        })
}

/// `Busy` if an operation (of any process, this one included) is working
/// on `t` right now.
pub(crate) fn busy(t: &ThreadRecord) -> Option<Error> {
    let owner = t.owner.as_ref().filter(|o| o.is_alive())?;
    let doing = match t.status {
        crate::thread::ThreadStatus::Creating => "created",
        crate::thread::ThreadStatus::Cleaning => "cleaned up",
        _ => "worked on",
    };
    let by = if owner.pid == std::process::id() { " (another operation of the same process)" } else { "" };
    Some(Error::Busy { id: t.id, doing, pid: owner.pid, by })
}

/// Test-only fault injection: with `ISO_FAULT_PAUSE=<point>` in the
/// environment, an operation stops for a minute at that point (after the
/// step's journal entry is written and the step is done), so a test can
/// kill the process there with a real SIGKILL. Points: `reserved`,
/// `branch`, `worktree`, `services` (stack started and healthy).
fn fault_point(point: &str) {
    if std::env::var("ISO_FAULT_PAUSE").is_ok_and(|p| p == point) {
        eprintln!("iso: paused at {point} (ISO_FAULT_PAUSE)");
        std::thread::sleep(std::time::Duration::from_secs(60));
    }
}
