//! The endpoints. Bodies are read as bytes (limited by `DefaultBodyLimit`)
//! and parsed here, so every rejection is a JSON error.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::{State as AppState, BODY_LIMIT, OPENAPI};
use crate::lifecycle::{self, agents, CleanupOptions, InitOptions, StartOptions, Update};
use crate::progress::{HookLogsOnly, Silent};
use crate::thread::ThreadStatus;

pub(crate) fn router(state: AppState) -> Router {
    let protected = Router::new()
        .route("/api/status", get(status))
        .route("/api/threads", get(list).post(create))
        .route("/api/adopt", post(adopt))
        .route("/api/listing", get(listing))
        .route("/api/threads/{id}", get(show).patch(patch).delete(delete))
        .route("/api/threads/{id}/start", post(start))
        .route("/api/threads/{id}/stop", post(stop))
        .route("/api/threads/{id}/runs", get(runs))
        .route("/api/threads/{id}/agent-status", post(agent_status))
        .route("/api/threads/{id}/logs", get(logs))
        .route("/api/snapshots", get(snapshots).post(snapshot_save))
        .route("/api/snapshots/{name}", axum::routing::delete(snapshot_rm))
        .route("/api/events", get(events).post(publish))
        .route("/api/openapi.json", get(openapi))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), super::auth::require_token));
    Router::new()
        .route("/api/health", get(health))
        .merge(protected)
        .fallback(|| async { ApiError::not_found("no such endpoint; see /api/openapi.json") })
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
}

/// A JSON response.
pub(crate) fn json(status: StatusCode, value: &impl Serialize) -> Response {
    let body = serde_json::to_vec(value).unwrap_or_else(|_| b"null".to_vec());
    json_bytes(status, Bytes::from(body))
}

fn json_bytes(status: StatusCode, body: Bytes) -> Response {
    (status, [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], body).into_response()
}

type ApiResult = Result<Response, ApiError>;

/// Parse a JSON body: 413 past the limit, 400 for malformed JSON, 422 for
/// well-formed JSON of the wrong shape (unknown fields included).
fn parse<T: DeserializeOwned>(body: Result<Bytes, BytesRejection>) -> Result<T, ApiError> {
    let bytes = body.map_err(|r| {
        let status = r.status();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(status, "too_large", format!("request body larger than {BODY_LIMIT} bytes"))
        } else {
            ApiError::new(status, "bad_body", r.body_text())
        }
    })?;
    let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) { b"{}" } else { &bytes };
    // Syntax first (400), then shape (422), so a malformed body is never
    // reported as a wrong field.
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| ApiError::bad_request(format!("malformed JSON: {e}")))?;
    serde_json::from_value(value).map_err(|e| ApiError::unprocessable(e.to_string()))
}

fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    q.map(|Query(t)| t).map_err(|r| ApiError::bad_request(r.body_text()))
}

/// Run a blocking library call with the server's project.
async fn blocking<T: Send + 'static>(
    state: &AppState,
    f: impl FnOnce(&std::sync::Arc<crate::project::Project>) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let project = state.project()?;
    tokio::task::spawn_blocking(move || f(&project)).await.map_err(|e| ApiError::internal(format!("request task failed: {e}")))?
}

async fn health() -> Response {
    json(StatusCode::OK, &serde_json::json!({ "ok": true, "version": env!("CARGO_PKG_VERSION") }))
}

async fn openapi() -> Response {
    (StatusCode::OK, [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], OPENAPI).into_response()
}

async fn status(State(state): State<AppState>) -> ApiResult {
    let (started, subscribers) = (state.started, state.events.receiver_count());
    let body = blocking(&state, move |p| {
        let data = lifecycle::load(p)?;
        let mut by_status: BTreeMap<String, usize> = BTreeMap::new();
        for t in &data.threads {
            *by_status.entry(t.status.to_string()).or_default() += 1;
        }
        Ok(super::ServerStatus {
            version: env!("CARGO_PKG_VERSION").into(),
            root: p.root().to_path_buf(),
            registry: p.registry_path(),
            threads: data.threads.len(),
            by_status,
            max_threads: p.config.threads.max,
            agents_running: agents::running_count(p, &data),
            agent_configured: !p.config.agent.command.is_empty(),
            server_started: started,
            event_subscribers: subscribers,
        })
    })
    .await?;
    Ok(json(StatusCode::OK, &body))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    #[serde(default)]
    all: bool,
}

/// `GET /api/threads` as last sent: the body, for the registry snapshot
/// (and `all`) it was made from.
pub(crate) struct ListCache {
    snapshot: std::sync::Arc<lifecycle::RegistryData>,
    all: bool,
    body: Bytes,
}

/// The thread records, as `iso list --json` prints them. The answer for an
/// unchanged registry is sent again as it was (a `stat` and a copy of the
/// bytes), so clients may poll it.
async fn list(State(state): State<AppState>, q: Result<Query<ListQuery>, QueryRejection>) -> ApiResult {
    let q = query(q)?;
    let project = state.project()?;
    // A stat, or a read when the registry changed: quick enough not to
    // need the blocking pool.
    let snapshot = lifecycle::load(&project)?;
    {
        let cache = state.list_cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = cache.as_ref().filter(|c| c.all == q.all && std::sync::Arc::ptr_eq(&c.snapshot, &snapshot)) {
            return Ok(json_bytes(StatusCode::OK, c.body.clone()));
        }
    }
    let threads = lifecycle::view::threads(&snapshot, q.all);
    let body = Bytes::from(serde_json::to_vec(&threads).map_err(|e| ApiError::internal(e.to_string()))?);
    *state.list_cache.lock().unwrap_or_else(|p| p.into_inner()) = Some(ListCache { snapshot, all: q.all, body: body.clone() });
    Ok(json_bytes(StatusCode::OK, body))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListingQuery {
    #[serde(default)]
    all: bool,
    #[serde(default)]
    services: bool,
    agent: Option<String>,
    status: Option<String>,
    idle: Option<String>,
}

/// What `iso ls` shows: the threads, which of them were interrupted, and
/// (with `services=true`) their containers.
async fn listing(State(state): State<AppState>, q: Result<Query<ListingQuery>, QueryRejection>) -> ApiResult {
    let q = query(q)?;
    let l = blocking(&state, move |p| {
        let filter = lifecycle::view::ListFilter {
            agent: q.agent.as_deref().map(lifecycle::view::parse_agent_state).transpose()?,
            status: q.status.as_deref().map(lifecycle::view::parse_status).transpose()?,
            idle: q.idle.as_deref().map(lifecycle::view::parse_idle).transpose()?,
        };
        Ok(lifecycle::view::list_filtered(p, q.all, q.services, &filter)?)
    })
    .await?;
    Ok(json(StatusCode::OK, &l))
}

/// Most threads one request may create.
pub const MAX_NAMES: usize = 50;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    name: Option<String>,
    names: Option<Vec<String>>,
    base: Option<String>,
    task: Option<String>,
    /// Kept with the thread for its agent's prompt.
    context: Option<serde_json::Value>,
    #[serde(default)]
    no_services: bool,
    /// A thread, `snapshot:NAME` or `main` to copy the volumes of.
    seed_from: Option<String>,
    #[serde(default)]
    no_seed: bool,
    /// An existing branch to open the one thread on (`name` optional).
    branch: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AdoptBody {
    /// An absolute path: the server's working directory is no one's.
    path: std::path::PathBuf,
    name: Option<String>,
    task: Option<String>,
    #[serde(default)]
    no_services: bool,
}

/// `POST /api/adopt`: an existing worktree becomes a thread.
async fn adopt(State(state): State<AppState>, body: Result<Bytes, BytesRejection>) -> ApiResult {
    let b: AdoptBody = parse(body)?;
    if !b.path.is_absolute() {
        return Err(ApiError::unprocessable("`path` must be absolute"));
    }
    let opts = InitOptions { task: b.task, no_services: b.no_services, ..Default::default() };
    let created = blocking(&state, move |p| {
        let t = lifecycle::init::adopt(p, &b.path, b.name.as_deref(), &opts, &HookLogsOnly)?;
        Ok(lifecycle::view::created(p, t))
    })
    .await?;
    Ok(json(StatusCode::CREATED, &created))
}

async fn snapshots(State(state): State<AppState>) -> ApiResult {
    let list = blocking(&state, move |p| Ok(lifecycle::seed::snapshot_list(p)?)).await?;
    Ok(json(StatusCode::OK, &list))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SnapshotBody {
    name: String,
    /// Thread id, name or branch.
    from: String,
}

/// `POST /api/snapshots`: the thread's containers are held still (paused,
/// or stopped: `threads.seed_hold`) for the copy, as with `iso snapshot
/// save`; the request waits for it, and for a save already running.
async fn snapshot_save(State(state): State<AppState>, body: Result<Bytes, BytesRejection>) -> ApiResult {
    let b: SnapshotBody = parse(body)?;
    let saved = blocking(&state, move |p| Ok(lifecycle::seed::snapshot_save(p, &b.name, &b.from, &Silent)?)).await?;
    Ok(json(StatusCode::CREATED, &saved))
}

async fn snapshot_rm(State(state): State<AppState>, Path(name): Path<String>) -> ApiResult {
    let snap = blocking(&state, move |p| Ok(lifecycle::seed::snapshot_rm(p, &name)?)).await?;
    Ok(json(StatusCode::OK, &snap))
}

#[derive(Debug, Serialize)]
struct Failure {
    name: String,
    error: serde_json::Value,
}

async fn create(State(state): State<AppState>, body: Result<Bytes, BytesRejection>) -> ApiResult {
    let b: CreateBody = parse(body)?;
    let (single, names) = match (b.name, b.names) {
        // With a branch the name is optional: it defaults to the branch's.
        (None, None) if b.branch.is_some() => (true, Vec::new()),
        (Some(n), None) => (true, vec![n]),
        (None, Some(ns)) if !ns.is_empty() && ns.len() <= MAX_NAMES => (false, ns),
        (None, Some(_)) => return Err(ApiError::unprocessable(format!("`names` must hold 1 to {MAX_NAMES} names"))),
        _ => return Err(ApiError::unprocessable("give either `name` or `names`")),
    };
    let single = single || b.branch.is_some();
    let opts = InitOptions {
        base: b.base,
        task: b.task,
        no_services: b.no_services,
        context: b.context,
        seed_from: b.seed_from,
        no_seed: b.no_seed,
        branch: b.branch,
    };
    // The events reach subscribers through the event log, as the CLI's do.
    let bulk = blocking(&state, move |p| {
        let bulk = lifecycle::init::init_many(p, &names, &opts, &HookLogsOnly);
        Ok(bulk.items.into_iter().map(|i| (i.input, i.result.map(|t| lifecycle::view::created(p, t)))).collect::<Vec<_>>())
    })
    .await?;
    if single {
        let (_, result) = bulk.into_iter().next().expect("one name");
        return Ok(json(StatusCode::CREATED, &result?));
    }
    let mut created = Vec::new();
    let mut failed = Vec::new();
    for (name, result) in bulk {
        match result {
            Ok(t) => created.push(t),
            Err(e) => failed.push(Failure { name, error: ApiError::from(e).body()["error"].clone() }),
        }
    }
    // 207 as soon as one failed: each failure carries its own status.
    let status = if failed.is_empty() { StatusCode::CREATED } else { StatusCode::MULTI_STATUS };
    Ok(json(status, &serde_json::json!({ "created": created, "failed": failed })))
}

async fn show(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult {
    let t = blocking(&state, move |p| Ok(lifecycle::view::status(p, &id)?)).await?;
    Ok(json(StatusCode::OK, &t))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PatchBody {
    task: Option<String>,
    /// 0 clears it.
    pr: Option<u64>,
    status: Option<ThreadStatus>,
}

async fn patch(State(state): State<AppState>, Path(id): Path<String>, body: Result<Bytes, BytesRejection>) -> ApiResult {
    let b: PatchBody = parse(body)?;
    let change = Update { task: b.task, pr: b.pr.map(|n| (n != 0).then_some(n)), status: b.status };
    let t = blocking(&state, move |p| Ok(lifecycle::update::update(p, &id, &change)?)).await?;
    Ok(json(StatusCode::OK, &t))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeleteQuery {
    #[serde(default)]
    delete_branch: bool,
    #[serde(default)]
    force: bool,
    #[serde(default)]
    keep_volumes: bool,
    #[serde(default)]
    kill_ports: bool,
}

async fn delete(State(state): State<AppState>, Path(id): Path<String>, q: Result<Query<DeleteQuery>, QueryRejection>) -> ApiResult {
    let q = query(q)?;
    let opts = CleanupOptions { delete_branch: q.delete_branch, force: q.force, keep_volumes: q.keep_volumes, kill_ports: q.kill_ports };
    let t = blocking(&state, move |p| Ok(lifecycle::cleanup::cleanup(p, &id, opts, &HookLogsOnly)?)).await?;
    Ok(json(StatusCode::OK, &t))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct StartBody {
    /// Prompt template text (minijinja).
    template: Option<String>,
    context: Option<serde_json::Value>,
    /// `automatic` (default) or `interactive` (a tmux session on the server's machine).
    #[serde(default)]
    mode: crate::lifecycle::RunMode,
}

async fn start(State(state): State<AppState>, Path(id): Path<String>, body: Result<Bytes, BytesRejection>) -> ApiResult {
    let b: StartBody = parse(body)?;
    let opts = StartOptions { template: b.template, context: b.context, iso_exe: state.iso_exe.clone(), mode: b.mode };
    // agent-started / agent-stopped are logged by the run's supervisor.
    let run = blocking(&state, move |p| Ok(agents::start(p, &id, &opts)?)).await?;
    Ok(json(StatusCode::CREATED, &run))
}

async fn stop(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult {
    let run = blocking(&state, move |p| Ok(agents::stop(p, &id)?)).await?;
    Ok(json(StatusCode::OK, &run))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AgentStatusBody {
    state: String,
    message: Option<String>,
}

/// An agent's report of its state (`iso agent-status`): the thread as
/// listings show it after it.
async fn agent_status(State(state): State<AppState>, Path(id): Path<String>, body: Result<Bytes, BytesRejection>) -> ApiResult {
    let b: AgentStatusBody = parse(body)?;
    let t = blocking(&state, move |p| Ok(agents::report_status(p, &id, &b.state, b.message.as_deref())?)).await?;
    Ok(json(StatusCode::OK, &t))
}

async fn runs(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult {
    let runs = blocking(&state, move |p| Ok(agents::runs_of(p, &id)?.1)).await?;
    Ok(json(StatusCode::OK, &runs))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LogsQuery {
    run: Option<u32>,
    #[serde(default)]
    from: u64,
}

/// The log of a run (the latest unless `run=N`) from byte `from`, as text.
/// Headers: `x-iso-run`, `x-iso-run-state`, `x-iso-log-next` (the offset to
/// ask from next time, for following).
async fn logs(State(state): State<AppState>, Path(id): Path<String>, q: Result<Query<LogsQuery>, QueryRejection>) -> ApiResult {
    let q = query(q)?;
    let (run, bytes) = blocking(&state, move |p| {
        let run = agents::run(p, &id, q.run)?;
        let bytes = agents::read_log(&run, q.from)?;
        Ok((run, bytes))
    })
    .await?;
    let next = q.from + bytes.len() as u64;
    let state_name = serde_json::to_value(run.state).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
    let mut r = (StatusCode::OK, [(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"))], bytes).into_response();
    let h = r.headers_mut();
    h.insert("x-iso-run", HeaderValue::from(run.run));
    h.insert("x-iso-log-next", HeaderValue::from(next));
    if let Ok(v) = HeaderValue::from_str(&state_name) {
        h.insert("x-iso-run-state", v);
    }
    if let Some(code) = run.exit_code {
        h.insert("x-iso-exit-code", HeaderValue::from(code));
    }
    Ok(r)
}

/// The event stream; a reconnecting client's `Last-Event-ID` (a seq) first
/// replays the logged events after it.
async fn events(State(state): State<AppState>, headers: axum::http::HeaderMap) -> Response {
    let last_id = headers.get("last-event-id").and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse::<u64>().ok());
    super::sse::stream(&state, last_id).await.into_response()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PublishBody {
    event: String,
    thread: Option<u32>,
    #[serde(default)]
    data: serde_json::Value,
}

async fn publish(State(state): State<AppState>, body: Result<Bytes, BytesRejection>) -> ApiResult {
    let b: PublishBody = parse(body)?;
    // Logged like every other event; the log is what subscribers are sent.
    // Hooks subscribed to the event run for the thread after the answer;
    // how they did is logged as a `hook` event.
    let e = blocking(&state, move |p| Ok(lifecycle::hooks::publish(p, &b.event, b.thread, b.data)?)).await?;
    Ok(json(StatusCode::ACCEPTED, &e))
}
