//! `iso serve`: the HTTP API (see docs/api.md and docs/openapi.json).
//!
//! The server is a thin front end over [`crate::lifecycle`], like the CLI.
//! It opens the repository once and keeps it ([`Project`]): the
//! configuration is read again only when iso.toml or the user config
//! changes, and the registry is read through its in-memory snapshot, read
//! again only when the file changed. Lifecycle calls run on tokio's
//! blocking pool; the registry's file lock serialises them with CLI use
//! beside the server.
//!
//! Security: every endpoint but `GET /api/health` requires
//! `Authorization: Bearer <token>` (compared in constant time). The token
//! comes from `ISO_API_TOKEN` or `[api] token`; without one the server only
//! binds to loopback addresses and makes up a random token for this run,
//! printed on start and written (mode 0600) to `<git dir>/iso/api-token`,
//! so that other local users cannot drive it either.
//! Request bodies are limited to [`BODY_LIMIT`] bytes.
//!
//! Events: the server tails the repository's event log
//! ([`crate::lifecycle::events`]) and streams it on `GET /api/events`; it publishes
//! nothing to its subscribers directly, so an event made here and one made
//! by a CLI beside it arrive the same way, once each.
//!
//! Shutdown: on SIGINT or SIGTERM the server prints `stopping`, stops
//! accepting connections, ends open event streams, lets requests in flight
//! finish for up to [`SHUTDOWN_GRACE`], removes the token file and the
//! discovery records it wrote, and returns.
//!
//! Discovery: once listening, the server writes `<git dir>/iso/server.json`
//! and an entry of the per-user index (`lifecycle::servers`): its URL, pid
//! and where its token is (`ISO_API_TOKEN`, `api.token`, or the 0600 token
//! file), never the token.

mod auth;
mod error;
mod routes;
mod sse;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::error::{Diagnostic, ErrorKind};
use crate::lifecycle;
use crate::project::Project;

/// One event of `GET /api/events` (`Event` in docs/openapi.json): a line of
/// the event log.
pub use crate::lifecycle::EventRecord as ApiEvent;
pub use auth::constant_time_eq;
pub use error::ApiError;

/// Where `iso serve` listens by default.
pub const DEFAULT_BIND: &str = "127.0.0.1:31337";
/// The largest request body accepted (413 beyond).
pub const BODY_LIMIT: usize = 64 * 1024;
/// The OpenAPI document served at `/api/openapi.json` (kept in docs/).
pub const OPENAPI: &str = include_str!("../../../docs/openapi.json");
/// How long requests in flight may take to finish once a shutdown signal came.
pub const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

#[derive(Debug, Error)]
pub enum ServeError {
    #[error(transparent)]
    Lifecycle(Box<lifecycle::Error>),
    #[error("refusing to listen on {0} without a token: anyone who can reach it could run commands")]
    NeedToken(SocketAddr),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("server: {0}")]
    Io(#[from] std::io::Error),
}

impl From<lifecycle::Error> for ServeError {
    fn from(e: lifecycle::Error) -> ServeError {
        ServeError::Lifecycle(Box::new(e))
    }
}

impl Diagnostic for ServeError {
    fn kind(&self) -> ErrorKind {
        match self {
            ServeError::Lifecycle(e) => e.kind(),
            ServeError::NeedToken(_) => ErrorKind::Config,
            ServeError::Bind { .. } => ErrorKind::Unavailable,
            ServeError::Io(_) => ErrorKind::Internal,
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            ServeError::Lifecycle(e) => e.hint(),
            ServeError::NeedToken(_) => Some("set ISO_API_TOKEN (or [api] token), or bind to 127.0.0.1".into()),
            ServeError::Bind { .. } => Some("pick another address with --bind, or stop what listens there".into()),
            ServeError::Io(_) => None,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            ServeError::Lifecycle(e) => e.code(),
            ServeError::NeedToken(_) => "need_token",
            ServeError::Bind { .. } => "bind",
            ServeError::Io(_) => "internal",
        }
    }
}

/// `GET /api/status`: what a server says about itself.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServerStatus {
    pub version: String,
    pub root: std::path::PathBuf,
    pub registry: std::path::PathBuf,
    pub threads: usize,
    #[serde(default)]
    pub by_status: std::collections::BTreeMap<String, usize>,
    pub max_threads: u32,
    pub agents_running: usize,
    pub agent_configured: bool,
    pub server_started: chrono::DateTime<chrono::Utc>,
    pub event_subscribers: usize,
}

/// What `iso serve` needs.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Any directory inside the repository.
    pub root: PathBuf,
    /// `--bind`; else `[api] bind`; else [`DEFAULT_BIND`].
    pub bind: Option<SocketAddr>,
    /// `ISO_API_TOKEN`; else `[api] token`.
    pub token: Option<String>,
    /// The iso binary that supervises agent runs.
    pub iso_exe: PathBuf,
}

pub(crate) struct Inner {
    pub root: PathBuf,
    /// The repository, opened again when its configuration changed.
    project: std::sync::RwLock<Arc<Project>>,
    pub token: Option<String>,
    /// New lines of the event log, fed by [`sse::tail`].
    pub events: tokio::sync::broadcast::Sender<ApiEvent>,
    /// `GET /api/threads` as last sent, for the snapshot it was made from.
    pub list_cache: std::sync::Mutex<Option<routes::ListCache>>,
    /// Turns true when the server is stopping.
    pub shutdown: tokio::sync::watch::Receiver<bool>,
    pub iso_exe: PathBuf,
    pub started: chrono::DateTime<chrono::Utc>,
}

pub(crate) type State = Arc<Inner>;

impl Inner {
    /// The repository, with its configuration as the files say now: two
    /// `stat` calls unless iso.toml or the user config changed.
    pub fn project(&self) -> Result<Arc<Project>, ApiError> {
        let current = Arc::clone(&self.project.read().unwrap_or_else(|p| p.into_inner()));
        if !current.config_changed() {
            return Ok(current);
        }
        let fresh = Arc::new(Project::discover(&self.root).map_err(|e| ApiError::of(&e))?);
        *self.project.write().unwrap_or_else(|p| p.into_inner()) = Arc::clone(&fresh);
        Ok(fresh)
    }
}

/// The token a server checks, and whether it was made up for this run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub value: String,
    pub generated: bool,
}

/// Resolve the address and token, refusing a non-loopback address without a
/// configured token; on loopback a missing token is generated.
pub fn plan(opts: &ServeOptions, project: &Project) -> Result<(SocketAddr, Token), ServeError> {
    // `[api] bind` was checked when the config was read.
    let addr: SocketAddr =
        opts.bind.or_else(|| project.config.api.bind.as_deref().and_then(|b| b.parse().ok())).unwrap_or_else(|| DEFAULT_BIND.parse().expect("a valid address"));
    let token = opts.token.clone().filter(|t| !t.is_empty()).or_else(|| project.config.api.token.clone());
    match token {
        Some(value) => Ok((addr, Token { value, generated: false })),
        None if !addr.ip().is_loopback() => Err(ServeError::NeedToken(addr)),
        None => Ok((addr, Token { value: random_token()?, generated: true })),
    }
}

/// 32 hex digits from the kernel's random source.
fn random_token() -> std::io::Result<String> {
    use std::io::Read;
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Where a generated token is written for local clients to read.
pub fn token_file(project: &Project) -> PathBuf {
    project.iso_dir().join("api-token")
}

fn write_token_file(path: &std::path::Path, token: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let _ = std::fs::remove_file(path);
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    writeln!(f, "{token}")
}

/// Removes the token file a server generated when the server ends (also
/// on errors after it was written), unless another server has since
/// replaced it with its own token.
struct TokenFile {
    path: PathBuf,
    token: String,
}

impl Drop for TokenFile {
    fn drop(&mut self) {
        if std::fs::read_to_string(&self.path).is_ok_and(|t| t.trim() == self.token) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Resolves when SIGINT or SIGTERM arrives (both handlers are installed
/// before this returns), printing `stopping` on stderr.
fn stop_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
        eprintln!("stopping");
    })
}

/// Run the server until SIGINT or SIGTERM. `on_listen` is called with the
/// bound address and the token (the CLI prints `listening on http://ADDR`).
pub fn serve(opts: ServeOptions, on_listen: impl FnOnce(SocketAddr, &Token)) -> Result<(), ServeError> {
    let project = lifecycle::open(&opts.root)?;
    let (addr, token) = plan(&opts, &project)?;
    let _token_file = if token.generated {
        let path = token_file(&project);
        write_token_file(&path, &token.value)?;
        Some(TokenFile { path, token: token.value.clone() })
    } else {
        None
    };
    let token_source = if token.generated {
        lifecycle::servers::TokenSource::File { path: token_file(&project) }
    } else if opts.token.as_deref().is_some_and(|t| !t.is_empty()) {
        lifecycle::servers::TokenSource::Env { var: "ISO_API_TOKEN".into() }
    } else {
        lifecycle::servers::TokenSource::Config { key: "api.token".into() }
    };
    let root = project.root().to_path_buf();
    // From the end of the log as it is now: events before the server started
    // are not news (a client can ask for them with Last-Event-ID).
    let tail = lifecycle::events::follow(&project);
    let project = Arc::new(project);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let result = runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(|source| ServeError::Bind { addr, source })?;
        let local = listener.local_addr()?;
        // Discovery (`iso remote discover`): where a local client reaches
        // this server and where the token is, never the token itself. The
        // records go when the guard does, as the server returns.
        let connect = if local.ip().is_unspecified() { SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), local.port()) } else { local };
        let _record = lifecycle::servers::record_server(&project, &format!("http://{connect}"), token_source)?;
        let signal = stop_signal()?;
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let (events, _) = tokio::sync::broadcast::channel(1024);
        tokio::spawn(sse::tail(tail, events.clone(), stop_rx.clone()));
        let state: State = Arc::new(Inner {
            root,
            project: std::sync::RwLock::new(project),
            token: Some(token.value.clone()),
            events,
            list_cache: Default::default(),
            shutdown: stop_rx.clone(),
            iso_exe: opts.iso_exe,
            started: chrono::Utc::now(),
        });
        tokio::spawn(async move {
            signal.await;
            let _ = stop_tx.send(true);
        });
        on_listen(local, &token);
        let mut stopping = stop_rx.clone();
        let server = axum::serve(listener, routes::router(state)).with_graceful_shutdown(async move {
            let _ = stopping.wait_for(|s| *s).await;
        });
        let server = std::future::IntoFuture::into_future(server);
        let mut stopping = stop_rx;
        let deadline = async move {
            let _ = stopping.wait_for(|s| *s).await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        };
        tokio::select! {
            r = server => r?,
            _ = deadline => eprintln!("requests still running after {} s; stopping anyway", SHUTDOWN_GRACE.as_secs()),
        }
        Ok(())
    });
    // Requests still running on the blocking pool (past the grace period)
    // are abandoned, not waited for.
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    result
}
