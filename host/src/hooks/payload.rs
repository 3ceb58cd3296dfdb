//! What a hook is given (the WIT `event` record, engine-neutral) and what
//! it hands back.

use std::collections::BTreeMap;

use serde::Serialize;

use super::sandbox::SandboxError;
use crate::events::{GitSummary, ServiceEndpoint};

/// The thread, as hooks see it (WIT `thread`).
#[derive(Debug, Clone, Serialize)]
pub struct ThreadInfo {
    pub id: u32,
    pub name: String,
    pub branch: String,
    pub base: String,
    pub status: String,
    pub repo_path: String,
    pub worktree_path: String,
    pub ports: BTreeMap<String, u16>,
    pub env: BTreeMap<String, String>,
    pub task: Option<String>,
    pub pr: Option<u64>,
    pub services: Vec<ServiceEndpoint>,
    /// The thread's links (`chat`, …), with those earlier hooks of this
    /// event set. Rhai sees them as `thread.links`; WASM asks `host.link`
    /// (the WIT `thread` record is kept as 0.1.0 had it).
    pub links: BTreeMap<String, String>,
    /// Every worktree of the thread by repository: `main` (the primary's)
    /// and each linked repository's (`[repos]`). Rhai sees `thread.worktrees`;
    /// WASM asks `host.worktrees` (since 0.1.2). Listed, not granted: a hook
    /// opens a linked one only with `allow.paths = [{ repo = NAME, … }]`.
    pub worktrees: BTreeMap<String, String>,
}

/// One event for one hook (WIT `event`).
#[derive(Debug, Clone, Serialize)]
pub struct Payload {
    pub event: String,
    pub thread: ThreadInfo,
    pub git: Option<GitSummary>,
    /// Custom events: the JSON `data` they were published with.
    pub payload: Option<String>,
    /// Messages of the hooks that ran before, in order.
    pub messages: Vec<String>,
}

/// What one hook call returned.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallOutcome {
    pub messages: Vec<String>,
    pub env: Vec<(String, String)>,
    /// Links the hook set, in order (a later one of a name wins); each
    /// already passed [`crate::thread::link_problem`].
    pub links: Vec<(String, String)>,
}

/// Why one hook call did not succeed, in words for the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    /// The hook refused the operation (WIT `failure::refuse`).
    Refused(String),
    /// The hook failed, trapped, or could not be loaded.
    Failed(String),
    /// The hook was stopped by a grant or limit of its sandbox; `at` says
    /// where (a script's line), when known.
    Limit { error: SandboxError, at: Option<String> },
}

impl CallError {
    pub fn limit(error: SandboxError) -> CallError {
        CallError::Limit { error, at: None }
    }
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Refused(m) | CallError::Failed(m) => f.write_str(m),
            CallError::Limit { error, at: None } => write!(f, "{error}"),
            CallError::Limit { error, at: Some(at) } => write!(f, "{error} (at {at})"),
        }
    }
}

/// Add `name` = `url` to the links one call set (a name set again is
/// replaced), so a hook calling `set_link` in a loop holds at most
/// `LINKS_LIMIT` of them in iso's memory.
pub fn keep_link(links: &mut Vec<(String, String)>, name: String, url: String) -> Result<(), String> {
    use crate::thread::LINKS_LIMIT;
    let full = links.len() >= LINKS_LIMIT;
    match links.iter_mut().find(|(n, _)| *n == name) {
        Some(l) => l.1 = url,
        None if full => return Err(format!("a thread holds at most {LINKS_LIMIT} links; `{name}` would be one more")),
        None => links.push((name, url)),
    }
    Ok(())
}

/// The most one `message` may hold.
pub const MESSAGE_LIMIT: usize = 16 * 1024;
/// The most all messages of one hook call may hold together.
pub const MESSAGES_LIMIT: usize = 64 * 1024;
/// The most one log line (`log`, `print`, a line of stdout) may hold.
pub const LOG_LINE_LIMIT: usize = 16 * 1024;
/// The most a hook may log in one call, stdout and stderr included.
pub const LOG_LIMIT: usize = 1024 * 1024;
/// The most the variables one hook call returns may hold together.
pub const ENV_LIMIT: usize = 256 * 1024;

/// What one hook call has handed back so far, against the caps above.
#[derive(Debug, Default)]
pub struct Budget {
    messages: usize,
    log: usize,
    env: usize,
}

impl Budget {
    pub fn message(&mut self, m: &str) -> Result<(), SandboxError> {
        take(&mut self.messages, m.len(), MESSAGE_LIMIT, "one message", MESSAGES_LIMIT, "the messages of one hook call")
    }

    pub fn log(&mut self, line: &str) -> Result<(), SandboxError> {
        take(&mut self.log, line.len(), LOG_LINE_LIMIT, "one log line", LOG_LIMIT, "the log of one hook call")
    }

    pub fn env(&mut self, name: &str, value: &str) -> Result<(), SandboxError> {
        take(&mut self.env, name.len() + value.len(), ENV_LIMIT, "one variable", ENV_LIMIT, "the variables of one hook call")
    }
}

fn take(used: &mut usize, n: usize, one: usize, one_what: &'static str, all: usize, all_what: &'static str) -> Result<(), SandboxError> {
    if n > one {
        return Err(SandboxError::OutputLimit { what: one_what, limit: one });
    }
    if *used + n > all {
        return Err(SandboxError::OutputLimit { what: all_what, limit: all });
    }
    *used += n;
    Ok(())
}

/// How important a hook's log line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Debug,
    Info,
    Warn,
    Error,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        }
    }
}

/// One line a hook logged.
#[derive(Debug, Clone, Serialize)]
pub struct LogLine {
    pub plugin: String,
    pub event: String,
    pub level: Level,
    pub message: String,
}

/// Where log lines go (the CLI prints them on stderr).
pub type LogSink = std::sync::Arc<dyn Fn(&LogLine) + Send + Sync>;

/// How one hook call logs: a level and a line, tagged with the hook by the caller.
pub type LogFn = std::sync::Arc<dyn Fn(Level, &str) + Send + Sync>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_name_the_cap_that_was_hit() {
        let mut b = Budget::default();
        let big = "x".repeat(MESSAGE_LIMIT + 1);
        assert_eq!(b.message(&big), Err(SandboxError::OutputLimit { what: "one message", limit: MESSAGE_LIMIT }));
        let ok = "x".repeat(MESSAGE_LIMIT);
        for _ in 0..MESSAGES_LIMIT / MESSAGE_LIMIT {
            b.message(&ok).unwrap();
        }
        let e = b.message("x").unwrap_err();
        assert_eq!(e.to_string(), "output limit: the messages of one hook call may hold at most 64 KiB");
        assert!(b.log("fine").is_ok());
    }
}
