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
/// progress, an agent being started). If it dies, `iso doctor` sees a record
/// whose owner is gone. `op` tells apart the operations of one process
/// (`iso serve` and the Nushell plugin run several at once): the owner is
/// alive while its process runs *and*, for this process, while that
/// operation's [`Operation`] lives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    pub pid: u32,
    /// Process start time in clock ticks since boot (Linux), so a recycled
    /// pid is not mistaken for the owner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_ticks: Option<u64>,
    /// The operation of that process (see [`Operation`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub op: Option<u64>,
}

/// One operation of this process on a thread, from its start until it is
/// dropped: its [`Owner`] record names it, so another operation of the same
/// process sees the thread busy, and one that ended without clearing its
/// record (an error half-way) does not hold the thread for the life of a
/// server.
#[derive(Debug)]
pub struct Operation {
    id: u64,
}

/// The operations of this process that are running.
fn running_ops() -> std::sync::MutexGuard<'static, std::collections::BTreeSet<u64>> {
    static RUNNING: std::sync::Mutex<std::collections::BTreeSet<u64>> = std::sync::Mutex::new(std::collections::BTreeSet::new());
    RUNNING.lock().unwrap_or_else(|p| p.into_inner())
}

impl Operation {
    pub fn begin() -> Operation {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let id = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        running_ops().insert(id);
        Operation { id }
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    /// The owner record of this operation.
    pub fn owner(&self) -> Owner {
        Owner { op: Some(self.id), ..Owner::current() }
    }

    /// Whether `owner` is this very operation.
    pub fn owns(&self, owner: Option<&Owner>) -> bool {
        owner.is_some_and(|o| o.pid == std::process::id() && o.op == Some(self.id))
    }
}

impl Drop for Operation {
    fn drop(&mut self) {
        running_ops().remove(&self.id);
    }
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
    /// A branch made in the linked repository whose main checkout is `repo`.
    LinkedBranch { repo: PathBuf, name: String },
    /// A worktree added in the linked repository whose main checkout is `repo`.
    LinkedWorktree { repo: PathBuf, name: String, path: PathBuf },
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
/// The longest detail of one history entry (and a thread's `error`), in
/// bytes: a longer one is cut, with a mark saying how much.
pub const HISTORY_ENTRY_LIMIT: usize = 4 * 1024;
/// The most bytes of detail a thread's history keeps in all: the oldest
/// entries go first.
pub const HISTORY_BYTES_LIMIT: usize = 64 * 1024;

/// `text` cut to at most `limit` bytes (on a character boundary), ending in
/// `… (N bytes cut)` when anything was cut.
pub fn cut(text: &str, limit: usize) -> String {
    if text.len() <= limit {
        return text.to_string();
    }
    let mark_room = 32;
    let mut end = limit.saturating_sub(mark_room);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes cut)", &text[..end], text.len() - end)
}

/// What a thread's agent is doing. The first four are reported by the agent
/// itself (`iso agent-status`); the others are what iso sees of the run's
/// process when the report says nothing newer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AgentState {
    /// Busy with its task.
    Working,
    /// Waiting for a human (a question, a permission).
    Waiting,
    /// Finished a turn; ready for the next prompt.
    Idle,
    /// Finished its task.
    Done,
    /// (iso) The agent process runs and has reported nothing since it started.
    Running,
    /// (iso) The agent process exited with a non-zero code or could not start.
    Failed,
    /// (iso) Ended by `iso stop`.
    Stopped,
}

impl AgentState {
    /// The states an agent may report (the others are iso's).
    pub const REPORTABLE: [AgentState; 4] = [AgentState::Working, AgentState::Waiting, AgentState::Idle, AgentState::Done];

    pub fn as_str(self) -> &'static str {
        match self {
            AgentState::Working => "working",
            AgentState::Waiting => "waiting",
            AgentState::Idle => "idle",
            AgentState::Done => "done",
            AgentState::Running => "running",
            AgentState::Failed => "failed",
            AgentState::Stopped => "stopped",
        }
    }

    pub fn parse(s: &str) -> Option<AgentState> {
        [AgentState::Running, AgentState::Failed, AgentState::Stopped].into_iter().chain(AgentState::REPORTABLE).find(|a| a.as_str() == s)
    }
}

impl std::fmt::Display for AgentState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The longest message an agent status keeps, in bytes.
pub const AGENT_MESSAGE_LIMIT: usize = 1024;

/// A thread's agent status. The registry keeps the agent's last report
/// (`state`, `message`, `since`, `reported_by: "agent"`); listings and
/// `iso status` show it merged with what iso knows of the latest run (the
/// other fields, and `reported_by: "iso"` when the run's end is newer than
/// the report).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentStatus {
    pub state: AgentState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    pub since: DateTime<Utc>,
    /// `agent` (its own report) or `iso` (seen by iso).
    pub reported_by: String,
    /// The latest run's number, whether its process runs, how it ended and
    /// when it last wrote output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alive: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_output: Option<DateTime<Utc>>,
}

impl AgentStatus {
    /// What `iso ls` shows: `waiting`, `failed (exit 3)`, ….
    pub fn label(&self) -> String {
        match (self.state, self.exit_code) {
            (AgentState::Failed, Some(code)) => format!("failed (exit {code})"),
            (s, _) => s.as_str().to_string(),
        }
    }
}

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
    /// Named links hooks set (e.g. `chat`: the thread's chat thread); kept
    /// when the thread is cleaned up. Within [`LINKS_LIMIT`], see [`link_problem`].
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub links: BTreeMap<String, String>,
    /// The agent's last report (merged with its run in listings).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<AgentStatus>,
    /// The last agent report or status change; listings show the latest of
    /// this, the agent's output and the branch tip's commit time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_activity: Option<DateTime<Utc>>,
    /// The thread's worktrees in the linked repositories (`[repos]`), by
    /// name. Ids, ports and the name stay the primary's; records written
    /// before `[repos]` existed have none.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub repos: BTreeMap<String, LinkedWorktree>,
}

/// A thread's worktree in one linked repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkedWorktree {
    /// The linked repository's main checkout.
    pub repo_root: PathBuf,
    pub worktree: PathBuf,
    pub branch: String,
    pub base: String,
    /// Whether iso made this branch (in this repository).
    #[serde(default)]
    pub created_branch: bool,
}

/// The most links one thread may hold.
pub const LINKS_LIMIT: usize = 16;
/// The longest link name: `[a-z0-9-]`, at most this many characters.
pub const LINK_NAME_LIMIT: usize = 64;
/// The longest link URL, in bytes.
pub const LINK_URL_LIMIT: usize = 2 * 1024;

/// Why `name` = `url` cannot be a link of a thread, naming the limit; `None`
/// when it can. URLs are printed by `iso status` and handed to later hooks,
/// so control characters are refused too.
pub fn link_problem(name: &str, url: &str) -> Option<String> {
    if name.is_empty() || name.len() > LINK_NAME_LIMIT || !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
        let shown: String = name.chars().take(LINK_NAME_LIMIT).collect();
        return Some(format!("link name `{shown}` is not 1 to {LINK_NAME_LIMIT} characters of a-z, 0-9 and -"));
    }
    if url.len() > LINK_URL_LIMIT {
        return Some(format!("link `{name}`: its URL has {} bytes; a link holds at most {LINK_URL_LIMIT} (2 KiB)", url.len()));
    }
    if url.is_empty() || url.chars().any(char::is_control) {
        return Some(format!("link `{name}`: its URL is empty or holds control characters"));
    }
    None
}

impl ThreadRecord {
    /// Record `event` in the history and bump `updated`. The detail is cut
    /// to [`HISTORY_ENTRY_LIMIT`]; the history is kept within
    /// [`HISTORY_LIMIT`] entries and [`HISTORY_BYTES_LIMIT`] bytes.
    pub fn record(&mut self, event: &str, detail: impl Into<String>) {
        let now = Utc::now();
        self.updated = now;
        let detail = cut(&detail.into(), HISTORY_ENTRY_LIMIT);
        self.history.push(HistoryEntry { at: now, event: cut(event, 256), detail });
        self.trim_history();
    }

    /// Keep the history (and `error`) within its limits; registries written
    /// by an older iso are trimmed this way on their next write.
    pub fn trim_history(&mut self) {
        if let Some(e) = self.error.as_mut().filter(|e| e.len() > HISTORY_ENTRY_LIMIT) {
            *e = cut(e, HISTORY_ENTRY_LIMIT);
        }
        for h in self.history.iter_mut().filter(|h| h.detail.len() > HISTORY_ENTRY_LIMIT) {
            h.detail = cut(&h.detail, HISTORY_ENTRY_LIMIT);
        }
        let mut bytes: usize = self.history.iter().map(|h| h.detail.len() + h.event.len()).sum();
        let mut first = self.history.len().saturating_sub(HISTORY_LIMIT);
        for h in &self.history[..first] {
            bytes -= h.detail.len() + h.event.len();
        }
        while bytes > HISTORY_BYTES_LIMIT && first + 1 < self.history.len() {
            bytes -= self.history[first].detail.len() + self.history[first].event.len();
            first += 1;
        }
        self.history.drain(..first);
    }

    /// Set the thread's last error (cut to [`HISTORY_ENTRY_LIMIT`]).
    pub fn set_error(&mut self, message: &str) {
        self.error = Some(cut(message, HISTORY_ENTRY_LIMIT));
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
    /// The current process (no particular operation).
    pub fn current() -> Owner {
        Owner::of(std::process::id())
    }

    /// Another process, by pid (its start time read now).
    pub fn of(pid: u32) -> Owner {
        Owner { pid, start_ticks: process_start_ticks(pid), op: None }
    }

    /// Whether the owner is still working. Its process must run (on Linux
    /// the start time is compared as well, so a pid reused by another
    /// process counts as dead); for an owner in this process naming an
    /// operation, that operation must not have ended.
    pub fn is_alive(&self) -> bool {
        if self.pid == std::process::id() {
            if let Some(op) = self.op {
                return running_ops().contains(&op) && self.start_ticks.is_none_or(|t| process_start_ticks(self.pid) == Some(t));
            }
        }
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
        let recycled = Owner { pid: me.pid, start_ticks: me.start_ticks.map(|t| t + 1), op: None };
        if cfg!(target_os = "linux") {
            assert!(!recycled.is_alive(), "same pid, other start time is another process");
        }
        assert!(!Owner { pid: u32::MAX - 1, start_ticks: None, op: None }.is_alive());
    }

    #[test]
    fn an_operation_owns_while_it_lives() {
        let op = Operation::begin();
        let owner = op.owner();
        assert!(owner.is_alive() && op.owns(Some(&owner)));
        let other = Operation::begin();
        assert!(!other.owns(Some(&owner)), "another operation of the same process is not the owner");
        drop(op);
        assert!(!owner.is_alive(), "an ended operation holds nothing, though its process runs");
        assert!(other.owner().is_alive());
    }

    #[test]
    fn history_is_bounded_in_entries_and_bytes() {
        let now = Utc::now();
        let mut t: ThreadRecord = toml::from_str(&format!(
            "id = 1\nname = \"a\"\nbranch = \"b\"\nbase = \"main\"\nstatus = \"active\"\nworktree = \"/w\"\nenv_file = \"/w/.env.thread\"\ncreated = \"{now:?}\"\nupdated = \"{now:?}\"\n[ports]\n[port_block]\nstart = 1\nend = 2\n"
        ))
        .unwrap();
        t.record("hook", "x".repeat(32 << 20));
        let d = &t.history[0].detail;
        assert!(d.len() <= HISTORY_ENTRY_LIMIT && d.ends_with(&format!("({} bytes cut)", (32 << 20) - (HISTORY_ENTRY_LIMIT - 32))), "{}", &d[d.len() - 40..]);
        for i in 0..500 {
            t.record("hook", format!("{i} {}", "y".repeat(3000)));
        }
        let bytes: usize = t.history.iter().map(|h| h.detail.len() + h.event.len()).sum();
        assert!(bytes <= HISTORY_BYTES_LIMIT && t.history.len() <= HISTORY_LIMIT, "{bytes} bytes, {} entries", t.history.len());
        assert!(t.history.last().unwrap().detail.starts_with("499 "), "the newest stay");
        assert!(t.repos.is_empty(), "a record from before [repos] loads with none");
        t.set_error(&"e".repeat(10_000));
        assert!(t.error.as_ref().unwrap().len() <= HISTORY_ENTRY_LIMIT);
        assert_eq!(cut("héllo", 100), "héllo");
    }
}
