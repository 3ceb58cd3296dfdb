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
use crate::agent::{self, StartOptions};
use crate::eventlog::{NewEvent, CUSTOM};
use crate::lifecycle::{self, CleanupOptions, InitRequest, Project, StackOptions, Update};
use crate::progress::Silent;
use crate::thread::{ThreadRecord, ThreadStatus};

pub(crate) fn router(state: AppState) -> Router {
    let protected = Router::new()
        .route("/api/status", get(status))
        .route("/api/threads", get(list).post(create))
        .route("/api/threads/{id}", get(show).patch(patch).delete(delete))
        .route("/api/threads/{id}/start", post(start))
        .route("/api/threads/{id}/stop", post(stop))
        .route("/api/threads/{id}/runs", get(runs))
        .route("/api/threads/{id}/logs", get(logs))
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

/// Run a blocking library call with the project opened for this request.
async fn blocking<T: Send + 'static>(state: &AppState, f: impl FnOnce(&Project) -> Result<T, ApiError> + Send + 'static) -> Result<T, ApiError> {
    let root = state.root.clone();
    tokio::task::spawn_blocking(move || {
        let project = Project::discover(&root)?;
        f(&project)
    })
    .await
    .map_err(|e| ApiError::internal(format!("request task failed: {e}")))?
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
        let data = p.load()?;
        let mut by_status: BTreeMap<String, usize> = BTreeMap::new();
        let mut running = 0;
        for t in &data.threads {
            *by_status.entry(t.status.to_string()).or_default() += 1;
            running += agent::runs_of(p, t.id).map(|r| r.iter().filter(|r| r.state == agent::RunState::Running).count()).unwrap_or(0);
        }
        Ok(serde_json::json!({
            "version": env!("CARGO_PKG_VERSION"),
            "root": p.root(),
            "registry": p.registry.path(),
            "threads": data.threads.len(),
            "by_status": by_status,
            "max_threads": p.config.threads.max,
            "agents_running": running,
            "agent_configured": !p.config.agent.command.is_empty(),
            "server_started": started,
            "event_subscribers": subscribers,
        }))
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

async fn list(State(state): State<AppState>, q: Result<Query<ListQuery>, QueryRejection>) -> ApiResult {
    let q = query(q)?;
    let threads = blocking(&state, move |p| {
        let data = p.load()?;
        let mut threads: Vec<ThreadRecord> = data.threads;
        threads.sort_by_key(|t| t.id);
        if q.all {
            threads.extend(data.removed);
        }
        Ok(threads)
    })
    .await?;
    Ok(json(StatusCode::OK, &threads))
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
}

#[derive(Debug, Serialize)]
struct Failure {
    name: String,
    error: serde_json::Value,
}

async fn create(State(state): State<AppState>, body: Result<Bytes, BytesRejection>) -> ApiResult {
    let b: CreateBody = parse(body)?;
    let (single, names) = match (b.name, b.names) {
        (Some(n), None) => (true, vec![n]),
        (None, Some(ns)) if !ns.is_empty() && ns.len() <= MAX_NAMES => (false, ns),
        (None, Some(_)) => return Err(ApiError::unprocessable(format!("`names` must hold 1 to {MAX_NAMES} names"))),
        _ => return Err(ApiError::unprocessable("give either `name` or `names`")),
    };
    let (base, task, context, no_services) = (b.base, b.task, b.context, b.no_services);
    let results = blocking(&state, move |p| {
        // The events reach subscribers through the event log, as the CLI's do.
        let hooks = lifecycle::hooks(p).with_log(crate::hooks::stderr_sink());
        let stack = StackOptions { no_services, ..Default::default() };
        Ok(names
            .into_iter()
            .map(|name| {
                let req = InitRequest { name: name.clone(), base: base.clone(), task: task.clone() };
                let r = lifecycle::init_opts(p, &req, &stack, &hooks, &Silent).map_err(ApiError::from);
                if let (Ok(t), Some(ctx)) = (&r, &context) {
                    let _ = agent::save_context(p, t.id, ctx);
                }
                (name, r)
            })
            .collect::<Vec<_>>())
    })
    .await?;
    if single {
        let (_, r) = results.into_iter().next().expect("one name");
        return Ok(json(StatusCode::CREATED, &r?));
    }
    let mut created = Vec::new();
    let mut failed = Vec::new();
    for (name, r) in results {
        match r {
            Ok(t) => created.push(t),
            Err(e) => failed.push(Failure { name, error: e.body()["error"].clone() }),
        }
    }
    // 207 as soon as one failed: each failure carries its own status.
    let status = if failed.is_empty() { StatusCode::CREATED } else { StatusCode::MULTI_STATUS };
    Ok(json(status, &serde_json::json!({ "created": created, "failed": failed })))
}

async fn show(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult {
    let t = blocking(&state, move |p| Ok(p.find(&id)?)).await?;
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
    let t = blocking(&state, move |p| Ok(lifecycle::update(p, &id, &change)?)).await?;
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
    let t = blocking(&state, move |p| {
        let opts = CleanupOptions { delete_branch: q.delete_branch, force: q.force };
        let stack = StackOptions { keep_volumes: q.keep_volumes, kill_ports: q.kill_ports, ..Default::default() };
        let hooks = lifecycle::hooks(p).with_log(crate::hooks::stderr_sink());
        Ok(lifecycle::cleanup_opts(p, &id, opts, &stack, &hooks, &Silent)?)
    })
    .await?;
    Ok(json(StatusCode::OK, &t))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct StartBody {
    /// Prompt template text (minijinja).
    template: Option<String>,
    context: Option<serde_json::Value>,
}

async fn start(State(state): State<AppState>, Path(id): Path<String>, body: Result<Bytes, BytesRejection>) -> ApiResult {
    let b: StartBody = parse(body)?;
    let exe = state.iso_exe.clone();
    // agent-started / agent-stopped are logged by the run's supervisor.
    let run = blocking(&state, move |p| {
        let t = p.find(&id)?;
        let context = b.context.or_else(|| agent::load_context(p, t.id));
        Ok(agent::start(p, &id, &StartOptions { template: b.template, context }, &exe)?)
    })
    .await?;
    Ok(json(StatusCode::CREATED, &run))
}

async fn stop(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult {
    let run = blocking(&state, move |p| Ok(agent::stop(p, &id, std::time::Duration::from_secs(5))?)).await?;
    Ok(json(StatusCode::OK, &run))
}

async fn runs(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult {
    let runs = blocking(&state, move |p| {
        let t = p.find(&id)?;
        Ok(agent::runs_of(p, t.id)?)
    })
    .await?;
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
        let t = p.find(&id)?;
        let runs = agent::runs_of(p, t.id)?;
        let run = match q.run {
            Some(n) => runs.into_iter().find(|r| r.run == n),
            None => runs.into_iter().last(),
        }
        .ok_or(agent::AgentError::NoRun { id: t.id, running: false })?;
        let bytes = agent::read_log(&run, q.from)?;
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
    if !crate::hooks::manifest::valid_custom_event(&b.event) {
        return Err(ApiError::unprocessable(format!(
            "`{}` is not a custom event name: use 1-64 of a-z 0-9 . _ -, starting with a letter, and none of iso's own (pre-init, …, agent-*)",
            b.event
        )));
    }
    // Logged like every other event; the log is what subscribers are sent.
    let log = state.log.clone();
    let (event, thread, data) = (b.event.clone(), b.thread, b.data.clone());
    let new = NewEvent { kind: CUSTOM.into(), event: b.event, thread: b.thread, name: None, data: b.data };
    let e = tokio::task::spawn_blocking(move || log.append(new))
        .await
        .map_err(|e| ApiError::internal(format!("request task failed: {e}")))?
        .map_err(|e| ApiError::internal(format!("cannot write the event log: {e}")))?;
    // Hooks subscribed to this event run for the thread after the answer;
    // how they did is logged as a `hook` event.
    if let Some(thread) = thread {
        let (root, log) = (state.root.clone(), state.log.clone());
        tokio::task::spawn_blocking(move || run_custom_hooks(&root, &log, thread, &event, data));
    }
    Ok(json(StatusCode::ACCEPTED, &e))
}

/// Run the hooks of custom `event` for `thread` and log the result.
fn run_custom_hooks(root: &std::path::Path, log: &crate::eventlog::EventLog, thread: u32, event: &str, data: serde_json::Value) {
    let Ok(project) = Project::discover(root) else { return };
    let hooks = lifecycle::hooks(&project).with_log(crate::hooks::stderr_sink());
    if !hooks.wants(event) {
        return;
    }
    let payload = (!data.is_null()).then(|| data.to_string());
    let data = match lifecycle::run_hooks(&project, &thread.to_string(), event, payload, &hooks, &Silent) {
        Ok((_, report)) => serde_json::json!({ "ok": true, "messages": report.messages, "runs": report.runs }),
        Err(e) => serde_json::json!({ "ok": false, "error": e.to_string() }),
    };
    crate::eventlog::append_quietly(log, NewEvent { kind: "hook".into(), event: event.to_string(), thread: Some(thread), name: None, data });
}
