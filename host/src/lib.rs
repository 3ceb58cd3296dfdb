//! iso: isolated threads of work for parallel coding agents.
//!
//! A *thread* is a git worktree on its own branch, a block of ports, a
//! `.env.thread` file and (with a stack) its own Docker services. The modules
//! here each own one concern and do not know each other; [`lifecycle`] is the
//! one place that orchestrates them, and [`cli`] (and later the Nushell plugin
//! and the HTTP API) are thin front ends over [`lifecycle`].

pub mod agent;
pub mod api;
pub mod cli;
pub mod config;
pub mod copyfiles;
pub mod envfile;
pub mod eventlog;
pub mod events;
pub mod hooks;
pub mod lifecycle;
pub mod listeners;
pub mod names;
#[cfg(feature = "nu")]
pub mod nu;
pub mod ports;
pub mod progress;
pub mod registry;
pub mod remote;
pub mod services;
pub mod thread;
pub mod worktree;

pub use config::Config;
pub use lifecycle::Project;
pub use thread::{ThreadRecord, ThreadStatus};
