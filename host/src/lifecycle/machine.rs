//! The machine-wide side of ports: the per-user port ledger
//! ([`crate::ledger`]) that every repository of this user shares, kept in
//! line with each repository's registry.
//!
//! - `iso init` takes the ledger's lock, then the registry's (always in that
//!   order), brings this repository's leases in line with its registry,
//!   and picks a block no lease overlaps ([`reserve_block`]).
//! - cleanup and rollback release the thread's lease ([`release`]).
//! - a lease is *stale* when its repository is gone (its iso directory has
//!   no `repo-id`, or another one: a new checkout at that path) or its
//!   thread is gone from that repository's registry; `iso doctor --fix`
//!   reclaims stale leases ([`reclaim`]).
//! - a deleted ledger is rebuilt from the registries of the repositories it
//!   knew (`repos/` beside it), whenever it is next used.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde::Serialize;

use super::Error;
use crate::ledger::{Lease, LedgerData, RepoEntry};
use crate::project::Project;
use crate::registry::{Registry, RegistryData};
use crate::thread::{PortRange, ThreadRecord};

/// One lease as `iso ports --all` shows it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct LeaseRow {
    /// The repository's main checkout.
    pub repo: PathBuf,
    pub repo_id: String,
    pub thread: u32,
    pub name: String,
    pub block: PortRange,
    /// Whether the lease belongs to the repository iso runs in.
    pub this_repo: bool,
    /// Why the lease is stale (its repository or thread is gone); `None`
    /// for a live one.
    pub stale: Option<String>,
}

/// This repository as the ledger names it.
pub(crate) fn repo_entry(project: &Project) -> Result<RepoEntry, Error> {
    Ok(RepoEntry { repo_id: project.identity()?.id, repo: project.root().to_path_buf(), iso_dir: project.iso_dir() })
}

fn lease_of(me: &RepoEntry, t: &ThreadRecord) -> Lease {
    Lease {
        repo_id: me.repo_id.clone(),
        repo: me.repo.clone(),
        iso_dir: me.iso_dir.clone(),
        thread: t.id,
        name: t.name.clone(),
        block: t.port_block,
        since: t.created,
    }
}

/// Threads of this repository the registry lost (deleted by hand) whose
/// worktree directory or kept record ([`super::recover`]) is still there,
/// with the kept record when there is one: `iso doctor --fix` can
/// re-register them, so until then their ids and ports stay theirs.
pub(crate) type Lost = BTreeMap<u32, Option<ThreadRecord>>;

/// The [`Lost`] threads of `project` next to `registry`.
pub(crate) fn lost_threads(project: &Project, repo_id: &str, registry: &RegistryData) -> Lost {
    let listed = |id: u32| registry.thread(id).is_some();
    let mut lost: Lost = super::recover::kept_threads(project.common_dir(), repo_id).into_iter().filter(|t| !listed(t.id)).map(|t| (t.id, Some(t))).collect();
    // A worktree directory without a record (made by an older iso, or a
    // leftover): its id is not free, as init would collide with it.
    let owned: BTreeSet<&std::path::Path> = registry.threads.iter().map(|t| t.worktree.as_path()).collect();
    for id in 1..=project.config.threads.max {
        let path = project.worktree_path(id);
        if !listed(id) && !owned.contains(path.as_path()) && path.exists() {
            lost.entry(id).or_insert(None);
        }
    }
    lost
}

/// Make `ledger`'s leases of repository `me` exactly its live threads'
/// blocks in `registry`, and the leases of its `lost` threads (a kept
/// record's block is leased again when the ledger lost it too).
fn reconcile(ledger: &mut LedgerData, me: &RepoEntry, registry: &RegistryData, lost: &Lost) {
    ledger.leases.retain(|l| {
        l.repo_id != me.repo_id
            || registry.thread(l.thread).is_some_and(|t| t.port_block == l.block)
            || lost.get(&l.thread).is_some_and(|t| t.as_ref().is_none_or(|t| t.port_block == l.block))
    });
    for t in registry.threads.iter().chain(lost.values().flatten()) {
        if !ledger.leases.iter().any(|l| l.repo_id == me.repo_id && l.thread == t.id) {
            ledger.leases.push(lease_of(me, t));
        }
    }
}

/// A ledger file that was missing gets the leases of every other
/// repository it knew, from their registries (this one's come from
/// [`reconcile`]).
fn rebuild_if_missing(known: &[RepoEntry], ledger: &mut LedgerData, me: &RepoEntry) {
    if !ledger.missing {
        return;
    }
    for repo in known.iter().filter(|r| r.repo_id != me.repo_id) {
        let registry = Registry::new(&repo.iso_dir);
        if registry.read_identity().ok().flatten().is_some_and(|id| id.id == repo.repo_id) {
            if let Ok(data) = registry.load() {
                reconcile(ledger, repo, &data, &Lost::new());
            }
        }
    }
}

/// Why `lease` is stale, `None` when it is live. `registries` caches each
/// repository's registry for one pass over the ledger.
fn staleness(lease: &Lease, registries: &mut BTreeMap<PathBuf, Option<(String, RegistryData)>>) -> Option<String> {
    let entry = registries.entry(lease.iso_dir.clone()).or_insert_with(|| {
        let registry = Registry::new(&lease.iso_dir);
        let id = registry.read_identity().ok().flatten()?.id;
        Some((id, registry.load().ok()?))
    });
    match entry {
        None => Some(format!("repository gone ({} has no iso repo-id)", lease.iso_dir.display())),
        Some((id, _)) if *id != lease.repo_id => Some(format!("another repository is at {} now", lease.repo.display())),
        Some((_, data)) => match data.thread(lease.thread) {
            None => Some(format!("thread {} is gone from its registry", lease.thread)),
            Some(t) if t.port_block != lease.block => Some(format!("thread {} holds {} now", lease.thread, t.port_block)),
            Some(_) => None,
        },
    }
}

/// Under the ledger's lock, with the ledger rebuilt first if it was lost.
fn with_ledger<T>(project: &Project, change: impl FnOnce(&mut LedgerData, &RepoEntry) -> Result<T, Error>) -> Result<T, Error> {
    // The identity is made under the registry lock alone, before the
    // ledger's is taken: the order ledger → registry is never reversed.
    let me = repo_entry(project)?;
    let ledger = project.ledger()?;
    ledger.remember(&me)?;
    let known = ledger.known_repos();
    ledger.update(|leases| {
        rebuild_if_missing(&known, leases, &me);
        change(leases, &me)
    })
}

/// Under the ledger's lock and then the registry's: bring the ledger in line
/// (rebuilt if it was lost, this repository's leases as its registry says,
/// lost threads' kept), then let `pick` choose the thread and its block
/// with `taken` (every other lease's block, the lost threads' included)
/// and the lost threads, and write the new record to both.
pub(crate) fn reserve_block(
    project: &Project,
    pick: impl FnOnce(&mut RegistryData, &[PortRange], &[Lease], &Lost) -> Result<ThreadRecord, Error>,
) -> Result<ThreadRecord, Error> {
    with_ledger(project, |leases, me| {
        project.registry().update(|data| {
            let lost = lost_threads(project, &me.repo_id, data);
            reconcile(leases, me, data, &lost);
            let taken: Vec<PortRange> = leases.leases.iter().filter(|l| l.repo_id != me.repo_id || lost.contains_key(&l.thread)).map(|l| l.block).collect();
            let record = pick(data, &taken, &leases.leases, &lost)?;
            leases.leases.push(lease_of(me, &record));
            Ok(record)
        })
    })
}

/// Release thread `id`'s lease. Callers treat a failure as a note: a lease
/// left behind is stale and reclaimed by the next init or `iso doctor --fix`.
pub(crate) fn release(project: &Project, id: u32) -> Result<(), Error> {
    with_ledger(project, |d, me| {
        d.leases.retain(|l| !(l.repo_id == me.repo_id && l.thread == id));
        Ok(())
    })
}

/// Bring this repository's leases in line with its registry (after
/// `iso doctor --fix` re-registered threads).
pub(crate) fn sync(project: &Project) -> Result<(), Error> {
    let snapshot = project.registry().load()?;
    let lost = lost_threads(project, &project.identity()?.id, &snapshot);
    with_ledger(project, |leases, me| {
        reconcile(leases, me, &snapshot, &lost);
        Ok(())
    })
}

/// Every lease on this machine (for this user), with why it is stale.
/// A lost ledger is rebuilt on the way.
pub fn machine_ports(project: &Project) -> Result<Vec<LeaseRow>, Error> {
    let snapshot = project.registry().load()?;
    let lost = lost_threads(project, &project.identity()?.id, &snapshot);
    with_ledger(project, |leases, me| {
        // Read without the registry's lock: the ledger's lock keeps inits
        // out, and a cleanup racing this releases its lease after us.
        reconcile(leases, me, &snapshot, &lost);
        let mut registries = BTreeMap::new();
        Ok(leases
            .leases
            .iter()
            .map(|l| LeaseRow {
                repo: l.repo.clone(),
                repo_id: l.repo_id.clone(),
                thread: l.thread,
                name: l.name.clone(),
                block: l.block,
                this_repo: l.repo_id == me.repo_id,
                stale: staleness(l, &mut registries),
            })
            .collect())
    })
}

/// The stale leases (for `iso doctor`); with `fix`, drop them (and forget
/// repositories that are gone). Returns each with why it is stale. The
/// leases of this repository's threads in `recoverable` (missing from the
/// registry, but `iso doctor --fix` can re-register them) are not stale.
pub(crate) fn reclaim(project: &Project, fix: bool, recoverable: &BTreeSet<u32>) -> Result<Vec<(Lease, String)>, Error> {
    let stale = with_ledger(project, |leases, me| {
        let mut registries = BTreeMap::new();
        let stale: Vec<(Lease, String)> = leases
            .leases
            .iter()
            .filter(|l| !(l.repo_id == me.repo_id && recoverable.contains(&l.thread)))
            .filter_map(|l| staleness(l, &mut registries).map(|why| (l.clone(), why)))
            .collect();
        if fix {
            leases.leases.retain(|l| !stale.iter().any(|(s, _)| s == l));
        }
        Ok(stale)
    })?;
    if fix {
        let ledger = project.ledger()?;
        for repo in ledger.known_repos() {
            let id = Registry::new(&repo.iso_dir).read_identity().ok().flatten();
            if id.is_none_or(|id| id.id != repo.repo_id) {
                ledger.forget(&repo.repo_id);
            }
        }
    }
    Ok(stale)
}
