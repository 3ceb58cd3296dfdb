//! The thread record: what iso knows about one thread. It is stored in the
//! registry and is also the stable JSON shape of `iso status --json` and
//! `iso list --json` (see README, "JSON output").

use std::collections::BTreeMap;
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Where a thread is in its life.
///
/// `creating → active → cleaning → removed`, with `failed` when a step could
/// not be completed. `merged` and `abandoned` are set by the user with
/// `iso update` and otherwise behave like `active`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum ThreadStatus {
    Creating,
    Active,
    Merged,
    Abandoned,
    Cleaning,
    Failed,
    Removed,
}

impl ThreadStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ThreadStatus::Creating => "creating",
            ThreadStatus::Active => "active",
            ThreadStatus::Merged => "merged",
            ThreadStatus::Abandoned => "abandoned",
            ThreadStatus::Cleaning => "cleaning",
            ThreadStatus::Failed => "failed",
            ThreadStatus::Removed => "removed",
        }
    }
}

impl std::fmt::Display for ThreadStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The inclusive range of ports a thread holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortRange {
    pub start: u16,
    pub end: u16,
}

impl PortRange {
    pub fn contains(&self, port: u16) -> bool {
        (self.start..=self.end).contains(&port)
    }
}

impl std::fmt::Display for PortRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.start, self.end)
    }
}

/// A process that is working on a thread right now (an init or cleanup in
/// progress). If it dies, `iso doctor` sees a record whose owner is gone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    pub pid: u32,
    /// Process start time in clock ticks since boot (Linux), so a recycled
    /// pid is not mistaken for the owner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_ticks: Option<u64>,
}

/// Something iso created for a thread, recorded *before* it is created so
/// that an interrupted init can be rolled back exactly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Step {
    /// A branch that did not exist before this thread.
    Branch { name: String },
    /// A worktree directory (and its git metadata) this thread added.
    Worktree { name: String, path: PathBuf },
    /// The thread's Docker stack (containers, volumes and network labelled
    /// with the repository and thread; `project` is their name prefix).
    Services { project: String },
}

/// One entry of a thread's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub at: DateTime<Utc>,
    pub event: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

/// How many history entries a thread keeps.
pub const HISTORY_LIMIT: usize = 100;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThreadRecord {
    pub id: u32,
    pub name: String,
    pub branch: String,
    pub base: String,
    pub status: ThreadStatus,
    pub worktree: PathBuf,
    /// Named ports (slot name to port).
    pub ports: BTreeMap<String, u16>,
    pub port_block: PortRange,
    pub env_file: PathBuf,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pr: Option<u64>,
    pub created: DateTime<Utc>,
    pub updated: DateTime<Utc>,
    /// Whether iso created the branch (so `--delete-branch` and rollback know).
    #[serde(default)]
    pub created_branch: bool,
    /// The last error, for failed threads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<Owner>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<Step>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<HistoryEntry>,
}

impl ThreadRecord {
    /// Record `event` in the history and bump `updated`.
    pub fn record(&mut self, event: &str, detail: impl Into<String>) {
        let now = Utc::now();
        self.updated = now;
        self.history.push(HistoryEntry { at: now, event: event.to_string(), detail: detail.into() });
        if self.history.len() > HISTORY_LIMIT {
            let excess = self.history.len() - HISTORY_LIMIT;
            self.history.drain(..excess);
        }
    }

    /// Whether the thread still holds its worktree and port block.
    pub fn is_live(&self) -> bool {
        self.status != ThreadStatus::Removed
    }

    /// Whether `selector` (id, name or branch) names this thread.
    pub fn matches(&self, selector: &str) -> bool {
        selector.parse::<u32>().ok() == Some(self.id) || self.name == selector || self.branch == selector
    }
}

impl Owner {
    /// The current process.
    pub fn current() -> Owner {
        Owner::of(std::process::id())
    }

    /// Another process, by pid (its start time read now).
    pub fn of(pid: u32) -> Owner {
        Owner { pid, start_ticks: process_start_ticks(pid) }
    }

    /// Whether the owning process is still running. On Linux the start time
    /// is compared as well, so a pid reused by another process counts as dead.
    pub fn is_alive(&self) -> bool {
        #[cfg(target_os = "linux")]
        {
            match process_start_ticks(self.pid) {
                None => false,
                Some(ticks) => self.start_ticks.is_none_or(|t| t == ticks),
            }
        }
        #[cfg(all(unix, not(target_os = "linux")))]
        {
            // SAFETY: kill with signal 0 only checks that the pid exists.
            unsafe { libc::kill(self.pid as libc::pid_t, 0) == 0 }
        }
        #[cfg(not(unix))]
        {
            true
        }
    }
}

/// Field 22 of `/proc/PID/stat`: the process start time in clock ticks.
fn process_start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may contain spaces.
    let after_comm = &stat[stat.rfind(')')? + 2..];
    after_comm.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_is_alive_and_a_stranger_is_not() {
        let me = Owner::current();
        assert!(me.is_alive());
        let recycled = Owner { pid: me.pid, start_ticks: me.start_ticks.map(|t| t + 1) };
        if cfg!(target_os = "linux") {
            assert!(!recycled.is_alive(), "same pid, other start time is another process");
        }
        assert!(!Owner { pid: u32::MAX - 1, start_ticks: None }.is_alive());
    }
}
