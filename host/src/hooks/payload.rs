//! What a hook is given (the WIT `event` record, engine-neutral) and what
//! it hands back.

use std::collections::BTreeMap;

use serde::Serialize;

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
}

/// Why one hook call did not succeed, in words for the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    /// The hook refused the operation (WIT `failure::refuse`).
    Refused(String),
    /// The hook failed, trapped, timed out, ran out of memory, or could not
    /// be loaded.
    Failed(String),
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
