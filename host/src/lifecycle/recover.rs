//! Threads outlive their registry: each live thread's record is also kept
//! beside its worktree's git metadata, `<git common dir>/worktrees/<name>/
//! iso-thread.json` (written at init and on every `iso update`, through the
//! same atomic writer as the registry). git removes that directory with the
//! worktree, so a record there always belongs to a worktree that exists.
//!
//! When `registry.toml` is lost (deleted by hand, by a disk tool), `iso
//! doctor` finds each worktree under the worktree directory whose record
//! names this repository, reports the thread as missing from the registry
//! (so its containers and volumes are not taken for leftovers), and `--fix`
//! re-registers it as it was: same id, name, branch, ports, task.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::Error;
use crate::lockedfile;
use crate::project::Project;
use crate::thread::ThreadRecord;

const FILE: &str = "iso-thread.json";

/// What is kept: the thread, and the repository it belongs to.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Kept {
    repo_id: String,
    thread: ThreadRecord,
}

fn path_of(common_dir: &Path, worktree_name: &str) -> PathBuf {
    common_dir.join("worktrees").join(worktree_name).join(FILE)
}

/// Keep `record` beside its worktree's git metadata. Best effort for the
/// caller: the registry is the source of truth, this is the spare.
pub(crate) fn keep(project: &Project, record: &ThreadRecord) -> Result<(), Error> {
    let git = project.git()?;
    let Some(wt) = git.worktrees()?.into_iter().find(|w| w.path == record.worktree) else { return Ok(()) };
    let mut thread = record.clone();
    thread.owner = None;
    thread.steps.clear();
    thread.history.clear();
    let kept = Kept { repo_id: project.identity()?.id, thread };
    let text = serde_json::to_string_pretty(&kept).expect("a thread record serialises");
    lockedfile::write_atomic(&path_of(project.common_dir(), &wt.name), text.as_bytes())
        .map_err(|e| Error::Io { action: format!("keep the record of thread {} beside its worktree", record.id), source: e.source })?;
    Ok(())
}

/// The thread kept beside worktree `worktree_name`, when its record names
/// repository `repo_id`.
pub(crate) fn kept_thread(common_dir: &Path, worktree_name: &str, repo_id: &str) -> Option<ThreadRecord> {
    let text = std::fs::read_to_string(path_of(common_dir, worktree_name)).ok()?;
    let kept: Kept = serde_json::from_str(&text).ok()?;
    (kept.repo_id == repo_id).then_some(kept.thread)
}

/// Every thread of repository `repo_id` kept beside a worktree's git
/// metadata (listed by the registry or not).
pub(crate) fn kept_threads(common_dir: &Path, repo_id: &str) -> Vec<ThreadRecord> {
    let Ok(dir) = std::fs::read_dir(common_dir.join("worktrees")) else { return Vec::new() };
    dir.flatten().filter_map(|e| kept_thread(common_dir, &e.file_name().to_string_lossy(), repo_id)).collect()
}

/// Put `thread` back into the registry as it was (refused when its id,
/// name or branch was taken meanwhile), and its lease into the ledger.
pub(crate) fn reregister(project: &Project, thread: &ThreadRecord, how: &str) -> Result<(), Error> {
    project.registry().update(|d| {
        if let Some(t) = d.threads.iter().find(|t| t.id == thread.id || t.name == thread.name || t.branch == thread.branch) {
            return Err(Error::NameTaken { name: t.name.clone(), id: t.id });
        }
        let mut t = thread.clone();
        t.record("re-registered", how);
        d.threads.push(t);
        d.threads.sort_by_key(|t| t.id);
        Ok(())
    })?;
    super::machine::sync(project)
}
