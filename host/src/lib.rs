//! iso: isolated threads of work for parallel coding agents.
//!
//! A *thread* is a git worktree on its own branch, a block of ports, a
//! `.env.thread` file and (with a stack) its own Docker services.
//!
//! The modules are layered, and the unit test in `layering.rs` fails when
//! an import breaks the layers (README, "Architecture"):
//!
//! - **model** — [`thread`], [`events`], [`error`], [`progress`], [`stamp`],
//!   [`envvar`] (variable names and `.env.thread` quoting), [`rooted`]
//!   (writes beneath a worktree, never through a symlink), [`lockedfile`]
//!   (crash-safe locked files) and [`config`]
//!   (the schema of `iso.toml`, including `[[hooks]]` and
//!   `[services]`): plain types every module may use; they use nothing but
//!   each other.
//! - **concerns** — [`registry`], [`ports`], [`worktree`], [`envfile`],
//!   [`copyfiles`], [`names`], [`listeners`], [`ledger`] (the per-user port ledger), [`servers`] (records of running `iso serve`s), [`services`], [`hooks`],
//!   [`eventlog`], [`agent`]: each owns one concern, uses only the model and
//!   never another concern.
//! - [`project`] — the opened repository (config, registry, git) handed to
//!   every operation.
//! - [`lifecycle`] — the one orchestrator: every operation a front end
//!   needs, and the types they need re-exported.
//! - **front ends** — [`cli`], [`nu`], [`api`] and [`remote`] (the client of
//!   `iso serve`): they parse, call [`lifecycle`] and render, and never use a
//!   concern module.

// model
pub mod config;
pub mod envvar;
pub mod error;
pub mod events;
pub mod lockedfile;
pub mod progress;
pub mod rooted;
pub mod stamp;
pub mod thread;

// concerns
pub mod agent;
pub mod copyfiles;
pub mod envfile;
pub mod eventlog;
pub mod hooks;
pub mod ledger;
pub mod listeners;
pub mod names;
pub mod ports;
pub mod registry;
pub mod servers;
pub mod services;
pub mod worktree;

pub mod lifecycle;
pub mod project;

// front ends
pub mod api;
pub mod cli;
#[cfg(feature = "nu")]
pub mod nu;
pub mod remote;

#[cfg(test)]
mod layering;

pub use config::Config;
pub use error::{Diagnostic, ErrorKind};
pub use project::Project;
pub use thread::{ThreadRecord, ThreadStatus};
