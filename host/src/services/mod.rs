//! Per-thread Docker stacks, through the Docker Engine API (bollard).
//!
//! This module knows nothing of the registry, worktrees or the lifecycle:
//! it takes a plain description of one thread ([`ThreadStack`]), works out
//! the resources ([`plan()`]) and creates, inspects and removes them on an
//! [`Engine`]. Every resource is named `iso-<repo>-t<id>[-<name>]` and
//! labelled `iso.managed=1`, `iso.repo=<root>`, `iso.thread=<id>` (and
//! `iso.service=<name>` on containers), so cleanup and `iso doctor` find them
//! by label even when the registry is gone.
//!
//! The rest of iso is synchronous; [`Engine`] wraps a current-thread tokio
//! runtime and every method blocks until its work is done. Within one call
//! services start concurrently, in dependency order.

pub mod compose;
mod docker;
mod health;
pub mod plan;
mod pull;
pub mod seed;
pub mod templates;

use std::path::PathBuf;

use serde::Serialize;
use thiserror::Error;

use crate::error::{Diagnostic, ErrorKind};

pub use crate::config::services::{ComposeSpec, DockerSettings, ServiceSpec, Stack};
pub use docker::{engine_address, engine_is_local, ContainerInfo, Engine, Removed, Resource, ResourceKind, Scope};
pub use plan::{label_filters, label_repo_id, plan, project_name, snapshot_volume, Plan, PlannedService, ThreadStack};
pub use seed::{Copied, CopyHow, CopyMethod, CopyPath, CopyReport, VolumeCopy};

#[derive(Debug, Error)]
pub enum Error {
    #[error("cannot reach the Docker engine at {host}: {detail}")]
    Unavailable { host: String, detail: String },
    /// `detail`: why it could not be pulled (the registry's words), or
    /// that `pull_policy` says never.
    #[error("image `{image}` for service `{service}` is not on the Docker engine and was not pulled: {detail}")]
    ImageMissing { service: String, image: String, detail: String },
    /// `owner` is empty here; the lifecycle names the process (" by pid 12
    /// (python3)") when the engine is local, as this module knows nothing of
    /// the host's processes.
    #[error("port {port} for service `{service}` is already in use{owner}")]
    PortTaken { service: String, port: u16, owner: String },
    #[error("service `{service}` did not become healthy within {secs} s (last check: {last}){}", log_tail(.service, .logs))]
    Unhealthy { service: String, secs: u64, last: String, logs: Vec<String> },
    #[error("service `{service}` stopped (exit code {code}) before it became healthy{}", log_tail(.service, .logs))]
    Exited { service: String, code: i64, logs: Vec<String> },
    #[error("service `{service}` was not started because `{dependency}` failed")]
    DependencyFailed { service: String, dependency: String },
    #[error("building the image of service `{service}` failed: {message}")]
    Build { service: String, message: String },
    #[error("service `{service}`: {message}")]
    Spec { service: String, message: String },
    #[error("template {what}: {message}")]
    Template { what: String, message: String },
    #[error("compose file {}: {message}", path.display())]
    Compose { path: PathBuf, message: String },
    #[error("no service `{name}` in this thread's stack; services: {known}")]
    NoSuchService { name: String, known: String },
    #[error("{kind} {name} already exists and is not this thread's ({owner})")]
    NameConflict { kind: &'static str, name: String, owner: String },
    #[error("no template `{name}`")]
    NoSuchTemplate { name: String, known: String },
    #[error("container {container} does not exist")]
    NoContainer { container: String, thread: u32 },
    #[error("ISO_SEED_COPY is `{value}`, not one of auto, host, stream")]
    BadSeedCopy { value: String },
    #[error("volume {name} does not exist")]
    NoVolume { name: String },
    #[error("copying volume {from} into {to} failed: {message}")]
    SeedCopy { from: String, to: String, message: String },
    #[error("docker: {action}: {source}")]
    Docker { action: String, source: bollard::errors::Error },
    #[error("{action}: {source}")]
    Io { action: String, source: std::io::Error },
}

impl Diagnostic for Error {
    fn kind(&self) -> ErrorKind {
        match self {
            Error::Unavailable { .. }
            | Error::ImageMissing { .. }
            | Error::Unhealthy { .. }
            | Error::Exited { .. }
            | Error::DependencyFailed { .. }
            | Error::Build { .. } => ErrorKind::Unavailable,
            Error::PortTaken { .. } | Error::NameConflict { .. } => ErrorKind::Conflict,
            Error::Spec { .. } | Error::Template { .. } | Error::Compose { .. } | Error::BadSeedCopy { .. } => ErrorKind::Config,
            Error::NoSuchService { .. } | Error::NoSuchTemplate { .. } | Error::NoContainer { .. } | Error::NoVolume { .. } => ErrorKind::NotFound,
            Error::SeedCopy { .. } => ErrorKind::Internal,
            Error::Docker { .. } | Error::Io { .. } => ErrorKind::Internal,
        }
    }

    fn hint(&self) -> Option<String> {
        Some(match self {
            Error::Unavailable { .. } => "start Docker (`sudo systemctl start docker`, or `sudo dockerd &`, or open Docker Desktop), or point DOCKER_HOST at a running engine; `iso init --no-services` creates the thread without its stack".into(),
            Error::ImageMissing { image, .. } => {
                format!("check the name and tag of `{image}` and that its registry is reachable (`docker login` for a private one), or build it; then run the command again")
            }
            Error::PortTaken { .. } => "stop that program (or run `iso cleanup --kill-ports` on the thread that holds it), then run the command again".into(),
            Error::Unhealthy { .. } => "check its command and healthcheck in iso.toml, or raise [docker] health_timeout if it is only slow".into(),
            Error::Exited { .. } => "check its image, command and environment in iso.toml".into(),
            Error::Build { .. } => "check the build context and Dockerfile (try `docker build` there)".into(),
            Error::Spec { service, .. } => format!("correct [services.{service}] in iso.toml (docs/services.md)"),
            Error::Template { .. } => "templates can use thread.*, ports.*, repo.*, host, port and services.<name>.port".into(),
            Error::Compose { .. } => "correct the Compose file (`docker compose config` in its directory shows how Compose reads it), or [compose] in iso.toml".into(),
            Error::NameConflict { kind, name, .. } => {
                format!("remove it (`docker {kind} rm {name}`) if it is a leftover, or give this repository other resource names with `[docker] name = \"...\"` in iso.toml")
            }
            Error::NoSuchTemplate { known, .. } => format!("use one of: {known}"),
            Error::NoContainer { thread, .. } => format!("start the thread's stack with `iso up {thread}`"),
            Error::BadSeedCopy { .. } => "unset it (auto: on the host where the volumes' directories are readable, else streamed), or set it to host or stream".into(),
            Error::NoVolume { .. } => "`docker volume ls` lists the volumes there are; `iso snapshot list` the snapshots".into(),
            Error::SeedCopy { .. } => "the new volume was removed; ISO_SEED_COPY=stream or =host picks the other copy path (docs/seeding.md)".into(),
            Error::DependencyFailed { .. } | Error::NoSuchService { .. } | Error::Docker { .. } | Error::Io { .. } => return None,
        })
    }

    fn code(&self) -> &'static str {
        match self {
            Error::Unavailable { .. } => "docker_unavailable",
            Error::ImageMissing { .. } => "image_missing",
            Error::PortTaken { .. } => "port_taken",
            Error::Unhealthy { .. } | Error::Exited { .. } | Error::DependencyFailed { .. } => "unhealthy",
            Error::Build { .. } => "build_failed",
            Error::NameConflict { .. } => "conflict",
            Error::Spec { .. } | Error::Template { .. } | Error::Compose { .. } => "config",
            Error::NoSuchService { .. } => "no_such_service",
            Error::NoSuchTemplate { .. } => "no_such_template",
            Error::NoContainer { .. } => "no_container",
            Error::NoVolume { .. } => "no_volume",
            Error::BadSeedCopy { .. } => "config",
            Error::SeedCopy { .. } => "seed_failed",
            Error::Docker { .. } => "docker",
            Error::Io { .. } => "internal",
        }
    }
}

fn log_tail(service: &str, logs: &[String]) -> String {
    if logs.is_empty() {
        return format!("\n  ({service} wrote nothing to its log)");
    }
    let mut s = format!("\n  last log lines of {service}:");
    for l in logs {
        s.push_str("\n    | ");
        s.push_str(l);
    }
    s
}

/// Where one service got to while a stack was starting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Phase {
    Waiting,
    /// Pulling its image: "3/5 layers, 12.0/40.0 MB".
    Pulling(String),
    Building,
    Creating,
    Starting,
    Checking,
    Healthy,
    Failed,
}

impl Phase {
    pub fn as_str(&self) -> &'static str {
        match self {
            Phase::Waiting => "waiting",
            Phase::Pulling(_) => "pulling",
            Phase::Building => "building",
            Phase::Creating => "creating",
            Phase::Starting => "starting",
            Phase::Checking => "health check",
            Phase::Healthy => "healthy",
            Phase::Failed => "failed",
        }
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Phase::Pulling(detail) if !detail.is_empty() => write!(f, "pulling ({detail})"),
            other => f.write_str(other.as_str()),
        }
    }
}

/// What `up` is told as services move on: every service's phase so far.
pub type PhaseReport<'a> = &'a dyn Fn(&[(String, Phase)]);

/// What `up` reports for each service: how long it took to be healthy.
#[derive(Debug, Clone, Serialize)]
pub struct Started {
    pub service: String,
    pub container: String,
    pub millis: u128,
}
