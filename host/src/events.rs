//! Lifecycle events and the receiver they are delivered to.
//!
//! The lifecycle emits one [`Event`] at each point below; hooks (WASM
//! components and Rhai scripts) plug in as an [`EventReceiver`]. Until a
//! receiver is configured, [`NoHooks`] accepts everything.
//!
//! | event          | when                                            | may refuse |
//! |----------------|-------------------------------------------------|------------|
//! | `pre-init`     | id and ports reserved, nothing created yet      | yes: init rolls back |
//! | `post-init`    | worktree, branch and `.env.thread` ready        | no |
//! | `post-up`      | services healthy (right after post-init without a stack) | no |
//! | `pre-cleanup`  | before anything is removed                      | yes, unless `--force` |
//! | `post-cleanup` | worktree (and services) removed                 | no |

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::error::{Diagnostic, ErrorKind};
use crate::thread::ThreadRecord;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "kebab-case")]
pub enum Event {
    PreInit,
    PostInit,
    PostUp,
    PreCleanup,
    PostCleanup,
}

impl Event {
    pub const ALL: [Event; 5] = [Event::PreInit, Event::PostInit, Event::PostUp, Event::PreCleanup, Event::PostCleanup];

    pub fn as_str(self) -> &'static str {
        match self {
            Event::PreInit => "pre-init",
            Event::PostInit => "post-init",
            Event::PostUp => "post-up",
            Event::PreCleanup => "pre-cleanup",
            Event::PostCleanup => "post-cleanup",
        }
    }

    /// `pre-*` events may refuse the operation.
    pub fn can_refuse(self) -> bool {
        matches!(self, Event::PreInit | Event::PreCleanup)
    }
}

impl std::fmt::Display for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Event {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Event::ALL
            .into_iter()
            .find(|e| e.as_str() == s)
            .ok_or_else(|| format!("unknown event `{s}`; events are pre-init, post-init, post-up, pre-cleanup, post-cleanup"))
    }
}

/// Where one service of a thread's stack answers on the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceEndpoint {
    pub name: String,
    pub host: String,
    pub port: u16,
}

/// What a thread's branch holds beyond its base (sent with pre-cleanup).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GitSummary {
    pub commits_ahead: u32,
    /// `<short id> <subject>`, newest first (at most 100).
    pub commits: Vec<String>,
    /// Paths changed between the base and the branch (at most 1000).
    pub files_changed: Vec<String>,
    /// Paths with uncommitted changes in the worktree.
    pub uncommitted: Vec<String>,
}

/// What a receiver is told.
#[derive(Debug, Clone)]
pub struct EventContext<'a> {
    pub event: Event,
    pub thread: &'a ThreadRecord,
    pub repo_root: &'a Path,
    /// The variables written to `.env.thread`.
    pub env: &'a BTreeMap<String, String>,
    /// iso's own variables (`ISO_*`, `[env]`, the stack's exports): a hook
    /// replaces one only with an `allow.env` grant of its own.
    pub own: &'a BTreeMap<String, String>,
    /// The thread's services (empty without a stack).
    pub services: &'a [ServiceEndpoint],
    /// Set for pre-cleanup.
    pub git: Option<&'a GitSummary>,
}

/// What receivers hand back: messages for the user and variables to add to
/// `.env.thread`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    pub messages: Vec<String>,
    /// The variables admitted, each with the hook that returned it, in the
    /// order they were returned (a later one wins).
    pub env: Vec<HookVariable>,
    /// A sentence for each variable a hook returned that was not admitted.
    pub refused: Vec<String>,
    /// Links the hooks set (`chat` = …), to be kept on the thread record.
    pub links: BTreeMap<String, String>,
}

/// A variable a hook returned, and which hook returned it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HookVariable {
    pub hook: String,
    pub name: String,
    pub value: String,
}

/// A hook that refused the operation or failed (from [`EventReceiver::deliver`]
/// and from running hooks by hand).
#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[error("hook `{plugin}` {} {event}: {message}", if *.refused { "refused" } else { "failed on" })]
pub struct HookFailure {
    pub plugin: String,
    /// The event's name: one of iso's ([`Event`]) or a custom one.
    pub event: String,
    pub message: String,
    /// The hook refused (only `pre-*` events can be refused; a refusal of
    /// any other event is reported as a failure).
    pub refused: bool,
}

impl Diagnostic for HookFailure {
    fn kind(&self) -> ErrorKind {
        if self.refused {
            ErrorKind::Refused
        } else {
            ErrorKind::Internal
        }
    }

    fn hint(&self) -> Option<String> {
        (!self.refused).then(|| format!("run it again with `iso hooks run {} <thread>` to see its log, or fix `{}`", self.event, self.plugin))
    }

    fn code(&self) -> &'static str {
        if self.refused {
            "refused"
        } else {
            "hook_failed"
        }
    }
}

pub trait EventReceiver {
    fn deliver(&self, ctx: &EventContext<'_>) -> Result<Outcome, HookFailure>;
}

/// The receiver used when no hooks are configured.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoHooks;

impl EventReceiver for NoHooks {
    fn deliver(&self, _ctx: &EventContext<'_>) -> Result<Outcome, HookFailure> {
        Ok(Outcome::default())
    }
}
