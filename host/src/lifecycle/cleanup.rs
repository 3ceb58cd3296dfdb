//! `iso cleanup`: remove threads' worktrees and stacks, keep their branches.

use std::time::Duration;

use super::env::{apply_outcome, emit, git_summary, repo_hooks, thread_env, thread_services, EventData};
use super::init::rollback;
use super::stack::had_services;
use super::{bulk, busy, find, Bulk, Error};
use crate::agent::{AgentError, Runs};
use crate::events::Event;
use crate::listeners;
use crate::progress::Progress;
use crate::project::Project;
use crate::services::Engine;
use crate::thread::{Operation, ThreadRecord, ThreadStatus};
use crate::worktree::{self, Git};

/// How long a running agent gets to end on SIGTERM before SIGKILL.
const AGENT_GRACE: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, Default)]
pub struct CleanupOptions {
    /// Delete the branch too (refused when that loses commits, unless `force`).
    pub delete_branch: bool,
    /// Throw away uncommitted changes and unmerged commits; go on when a
    /// pre-cleanup hook refuses.
    pub force: bool,
    /// Keep the stack's named volumes (containers are still removed).
    pub keep_volumes: bool,
    /// End this user's processes still listening on the thread's ports that
    /// work in its worktree or belong to its agent run (others are named
    /// and left alone).
    pub kill_ports: bool,
}

/// Clean up each thread named, each on its own.
pub fn cleanup_many(project: &Project, selectors: &[String], opts: CleanupOptions, progress: &dyn Progress) -> Bulk<ThreadRecord> {
    bulk(selectors, progress, |sel, progress| cleanup(project, sel, opts, progress))
}

/// Remove a thread's services (containers, volumes unless `keep_volumes`,
/// network) and worktree, keep its branch unless asked, free its ports, and
/// keep its record among removed threads.
///
/// Order: the thread is marked `cleaning` (owned by this operation, so no
/// agent can be started on it and no other operation can touch it), its
/// agent is stopped, and only then is the worktree checked for work that
/// would be lost, so what an agent saves as it stops is counted. A refusal
/// (lost work, a pre-cleanup hook, Docker not reachable) puts the thread
/// back as it was.
pub fn cleanup(project: &Project, selector: &str, opts: CleanupOptions, progress: &dyn Progress) -> Result<ThreadRecord, Error> {
    let hooks = repo_hooks(project, progress);
    let op = Operation::begin();
    let found = find(project, selector)?;
    let (record, previous) = match claim(project, found.id, &op)? {
        Claim::Interrupted(record) => {
            // An init that died half-way: undo its journal.
            progress.step(&format!("{}: rolling back interrupted init", record.name));
            rollback(project, record.id)?;
            let mut r = record;
            r.status = ThreadStatus::Removed;
            return Ok(r);
        }
        Claim::Claimed { record, previous } => (record, previous),
    };
    let id = record.id;
    let refuse = |e: Error| -> Error {
        release(project, id, &op, previous);
        e
    };

    // An agent still running in the worktree would go on writing into a
    // directory that is about to disappear; what it saves as it stops
    // (SIGTERM) is seen by the check below.
    let runs = Runs::new(&project.iso_dir());
    // The agent's process group, for --kill-ports (its children may have
    // left the worktree).
    let agent_group = runs.running(id).ok().flatten().and_then(|r| r.pid);
    match runs.stop(id, AGENT_GRACE) {
        Ok(run) => progress.note(&format!("stopped agent run {} of thread {id} ({})", run.run, record.name)),
        Err(AgentError::NoRun { .. }) => {}
        Err(e) => progress.note(&format!("could not stop the agent of thread {id}: {e}")),
    }

    let git = project.git().map_err(|e| refuse(e.into()))?;
    if !opts.force {
        let lost = (|| -> Result<_, Error> {
            let mut uncommitted = if record.worktree.exists() { worktree::uncommitted_files(&record.worktree)? } else { Vec::new() };
            let mut unmerged = if opts.delete_branch && record.created_branch { git.unmerged_commits(&record.branch, &record.base)? } else { Vec::new() };
            // Every linked worktree is checked before anything is removed;
            // what would be lost there is named with its repository.
            for (name, w) in &record.repos {
                if w.worktree.exists() {
                    uncommitted.extend(worktree::uncommitted_files(&w.worktree)?.into_iter().map(|f| format!("{name}: {f}")));
                }
                if opts.delete_branch && w.created_branch {
                    if let Ok(g) = Git::discover(&w.repo_root) {
                        unmerged.extend(g.unmerged_commits(&w.branch, &w.base)?.into_iter().map(|c| format!("{name}: {c}")));
                    }
                }
            }
            Ok((uncommitted, unmerged))
        })();
        match lost {
            Ok((uncommitted, unmerged)) if uncommitted.is_empty() && unmerged.is_empty() => {}
            Ok((uncommitted, unmerged)) => return Err(refuse(Error::WouldLoseWork { id, uncommitted, unmerged })),
            Err(e) => return Err(refuse(e)),
        }
    }
    let env = thread_env(project, &record).unwrap_or_default();
    let data = EventData { env: Some(&env), services: thread_services(project, &record), git: Some(git_summary(&git, &record)) };
    match emit(project, &record, Event::PreCleanup, &hooks, &data) {
        Err(e) if !opts.force => return Err(refuse(e)),
        Err(e) => progress.note(&format!("ignoring because of --force: {e}")),
        // Messages (and links) of pre-cleanup hooks are shown and kept in
        // the history, which outlives the thread.
        Ok(outcome) => apply_outcome(project, &mut record.clone(), Event::PreCleanup, &outcome, &mut env.clone(), progress),
    }

    // Docker before anything is removed, so a stopped engine leaves the
    // thread as it was.
    let engine = if project.config.has_stack() {
        progress.step(&format!("{}: connecting to Docker", record.name));
        match Engine::connect() {
            Ok(e) => Some(e),
            Err(e) if opts.force || !had_services(&record) => {
                progress.note(&format!("not removing services of thread {id}: {e}"));
                None
            }
            Err(e) => return Err(refuse(e.into())),
        }
    } else {
        None
    };

    if let Some(engine) = &engine {
        progress.step(&format!("{}: removing services", record.name));
        let removed = super::stack::teardown_listed(project, engine, id, opts.keep_volumes)?;
        if !removed.is_empty() {
            let _ = project.registry().update(|d| {
                if let Some(t) = d.thread_mut(id) {
                    t.record("services removed", removed.describe());
                }
                Ok::<_, Error>(())
            });
        }
    }
    if opts.kill_ports {
        kill_listeners(&record, agent_group, progress);
    }
    progress.step(&format!("{}: removing worktree", record.name));
    remove_worktree_of(&git, &record)?;
    remove_linked_worktrees(&record, opts.delete_branch, progress)?;
    // Only a branch iso made is iso's to delete: an existing one the thread
    // was opened on (or adopted with its worktree) stays, whatever is asked.
    let delete_branch = opts.delete_branch && record.created_branch;
    if delete_branch {
        progress.step(&format!("{}: deleting branch {}", record.name, record.branch));
        git.delete_branch(&record.branch)?;
    } else if opts.delete_branch {
        progress.note(&format!("keeping branch {}: iso did not create it", record.branch));
    }
    let detail = if delete_branch {
        "worktree and branch removed"
    } else if opts.delete_branch {
        "worktree removed, branch kept (iso did not create it)"
    } else {
        "worktree removed, branch kept"
    };
    let removed = archive(project, &record, detail)?;
    let data = EventData { env: Some(&env), services: data.services, git: None };
    if let Err(e) = emit(project, &removed, Event::PostCleanup, &hooks, &data) {
        progress.note(&e.to_string());
    }
    // Best effort: leftover run files only take disk space.
    let _ = runs.retire(&removed);
    Ok(removed)
}

/// What [`claim`] found.
enum Claim {
    /// An init that died half-way (its owner is gone): to be rolled back.
    Interrupted(ThreadRecord),
    /// Now `cleaning` and owned by the operation; `previous` is the status
    /// to go back to if the cleanup is refused.
    Claimed { record: ThreadRecord, previous: ThreadStatus },
}

/// Under the registry lock: refuse a thread another operation (of any
/// process) is working on, else mark it `cleaning` and owned by `op`.
fn claim(project: &Project, id: u32, op: &Operation) -> Result<Claim, Error> {
    project.registry().update(|d| {
        let t = d.thread_mut(id).ok_or_else(|| Error::NotFound { selector: id.to_string(), known: String::new() })?;
        if let Some(busy) = busy(t) {
            return Err(busy);
        }
        if t.status == ThreadStatus::Creating {
            return Ok(Claim::Interrupted(t.clone()));
        }
        let previous = t.status;
        t.status = ThreadStatus::Cleaning;
        t.owner = Some(op.owner());
        t.record("cleanup started", "");
        Ok(Claim::Claimed { record: t.clone(), previous })
    })
}

/// Give the thread back as `status` (a refused cleanup), if `op` still owns it.
fn release(project: &Project, id: u32, op: &Operation, status: ThreadStatus) {
    let _ = project.registry().update(|d| {
        if let Some(t) = d.thread_mut(id).filter(|t| op.owns(t.owner.as_ref())) {
            t.status = status;
            t.owner = None;
            t.record("cleanup refused", format!("back to {status}"));
        }
        Ok::<_, Error>(())
    });
}

/// Take the thread out of the live list and keep it among removed ones.
fn archive(project: &Project, record: &ThreadRecord, detail: &str) -> Result<ThreadRecord, Error> {
    project
        .registry()
        .update(|d| {
            let mut t = d.take(record.id).unwrap_or_else(|| record.clone());
            t.status = ThreadStatus::Removed;
            t.owner = None;
            t.record("removed", detail);
            d.archive(t.clone());
            Ok::<_, Error>(t)
        })
        .inspect(|t| {
            // Best effort: a lease left behind is stale, and the next init of
            // this repository or `iso doctor --fix` drops it.
            let _ = super::machine::release(project, t.id);
        })
}

/// Remove what is left of a thread and archive it as removed (`iso doctor
/// --fix` on a thread whose cleanup was interrupted or whose worktree is
/// gone). Its volumes are kept: doctor lists them with the command that
/// removes them (`iso doctor --fix --volumes`).
pub(crate) fn finish_cleanup(project: &Project, t: &ThreadRecord) -> Result<(), Error> {
    // A linked worktree may hold work even when the primary's is gone:
    // then nothing is removed (`iso cleanup --force` throws it away).
    let mut uncommitted = Vec::new();
    for (name, w) in t.repos.iter().filter(|(_, w)| w.worktree.is_dir()) {
        uncommitted.extend(worktree::uncommitted_files(&w.worktree)?.into_iter().map(|f| format!("{name}: {f}")));
    }
    if !uncommitted.is_empty() {
        return Err(Error::WouldLoseWork { id: t.id, uncommitted, unmerged: Vec::new() });
    }
    if project.config.has_stack() {
        super::stack::teardown_listed(project, &Engine::connect()?, t.id, true)?;
    }
    remove_worktree_of(&*project.git()?, t)?;
    remove_linked_worktrees(t, false, progress_none())?;
    archive(project, t, "by iso doctor --fix")?;
    Ok(())
}

fn progress_none() -> &'static dyn Progress {
    &crate::progress::Silent
}

/// Remove the thread's worktree in each linked repository (a repository
/// that is gone is named and skipped: nothing of it is left to remove) and,
/// with `delete_branch`, the branches iso made there.
fn remove_linked_worktrees(record: &ThreadRecord, delete_branch: bool, progress: &dyn Progress) -> Result<(), Error> {
    for (name, w) in &record.repos {
        let git = match Git::discover(&w.repo_root) {
            Ok(g) => g,
            Err(e) => {
                progress.note(&format!("{name}: not removing worktree {}: {e}", w.worktree.display()));
                continue;
            }
        };
        let in_repo = |e: crate::worktree::GitError| Error::LinkedRepo { repo: name.clone(), source: Box::new(e.into()) };
        progress.step(&format!("{}: removing worktree {}", record.name, w.worktree.display()));
        let wt = worktree_name(&git, &w.worktree, record.id).map_err(in_repo)?;
        git.remove_worktree(&wt, &w.worktree).map_err(in_repo)?;
        if delete_branch && w.created_branch {
            git.delete_branch(&w.branch).map_err(in_repo)?;
        } else if delete_branch {
            progress.note(&format!("{name}: keeping branch {}: iso did not create it", w.branch));
        }
    }
    Ok(())
}

pub(crate) fn remove_worktree_of(git: &Git, record: &ThreadRecord) -> Result<(), Error> {
    let name = worktree_name(git, &record.worktree, record.id)?;
    git.remove_worktree(&name, &record.worktree)?;
    Ok(())
}

/// The name of git's metadata for the worktree at `path`: the worktree may
/// have been made (or reused) under another name than `thread-<id>`.
pub(crate) fn worktree_name(git: &Git, path: &std::path::Path, id: u32) -> Result<String, crate::worktree::GitError> {
    Ok(git.worktrees()?.into_iter().find(|w| w.path == path).map(|w| w.name).unwrap_or_else(|| format!("thread-{id}")))
}

/// End this user's processes still listening on the thread's port block
/// that are the thread's own: working inside its worktree, or in its agent
/// run's process group. Each is named first; any other listener in the
/// block (another repository's dev server, say) is named and left alone.
fn kill_listeners(record: &ThreadRecord, agent_group: Option<u32>, progress: &dyn Progress) {
    let uid = listeners::current_uid();
    let me = std::process::id();
    let worktree = record.worktree.canonicalize().unwrap_or_else(|_| record.worktree.clone());
    let found = listeners::listening(record.port_block.start..=record.port_block.end);
    for l in found.into_iter().filter(|l| l.uid == uid && l.pid != me && !l.command.contains("docker-proxy")) {
        if !l.belongs_to(&worktree, agent_group) {
            let cwd = l.cwd.as_ref().map_or("unknown".to_string(), |c| c.display().to_string());
            progress.note(&format!("leaving {l} alone: it works in {cwd}, outside the thread's worktree, and is not its agent's"));
            continue;
        }
        progress.note(&format!("ending {l}"));
        if !listeners::terminate(&l, Duration::from_secs(3)) {
            progress.note(&format!("pid {} is still running", l.pid));
        }
    }
}
