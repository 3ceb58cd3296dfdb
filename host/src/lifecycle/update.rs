//! `iso update`: a thread's task, PR and user-set status.

use super::{find_in, Error};
use crate::project::Project;
use crate::thread::{ThreadRecord, ThreadStatus};

#[derive(Debug, Clone, Default)]
pub struct Update {
    /// `Some("")` clears the task.
    pub task: Option<String>,
    /// `Some(None)` clears the PR.
    pub pr: Option<Option<u64>>,
    pub status: Option<ThreadStatus>,
}

pub fn update(project: &Project, selector: &str, change: &Update) -> Result<ThreadRecord, Error> {
    if let Some(s) = change.status {
        if !matches!(s, ThreadStatus::Active | ThreadStatus::Merged | ThreadStatus::Abandoned) {
            return Err(Error::StatusNotSettable(s));
        }
    }
    project
        .registry()
        .update(|d| {
            let id = find_in(d, selector)?.id;
            let t = d.thread_mut(id).expect("found above");
            let mut said = Vec::new();
            if let Some(task) = &change.task {
                t.task = (!task.is_empty()).then(|| task.clone());
                said.push(format!("task: {}", if task.is_empty() { "(cleared)" } else { task }));
            }
            if let Some(pr) = change.pr {
                t.pr = pr;
                said.push(match pr {
                    Some(n) => format!("pr: #{n}"),
                    None => "pr: (cleared)".into(),
                });
            }
            if let Some(s) = change.status {
                if let Some(busy) = super::busy(t) {
                    return Err(busy);
                }
                t.status = s;
                t.error = None;
                t.last_activity = Some(chrono::Utc::now());
                said.push(format!("status: {s}"));
            }
            t.record("updated", said.join(", "));
            Ok(t.clone())
        })
        .inspect(|t| {
            // The spare copy beside the worktree follows (best effort: the
            // registry is the source of truth).
            let _ = super::recover::keep(project, t);
        })
}
