//! Hooks by hand: `iso hooks list`, `iso hooks run`, `iso plugin check`,
//! and custom events (`POST /api/events`) that run the hooks subscribed to
//! them.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::env::{apply_outcome, event_log, git_summary, repo_hooks, store_links, thread_env, thread_env_and_file, thread_services};
use super::{find, Error};
use crate::config::hooks::{subscribable_event, valid_custom_event, Allow, DEFAULT_MEMORY, DEFAULT_TIMEOUT};
use crate::eventlog::{EventRecord, NewEvent, CUSTOM};
use crate::events::Event;
use crate::hooks::{self, wasm, Kind, RunReport};
use crate::progress::{Progress, Silent};
use crate::project::Project;
use crate::thread::{ThreadRecord, ThreadStatus};

/// Whether `event` is one of iso's lifecycle events or a valid custom one.
pub fn is_event(event: &str) -> bool {
    event.parse::<Event>().is_ok() || subscribable_event(event)
}

/// One hook as `iso hooks list` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct HookInfo {
    pub name: String,
    pub events: Vec<String>,
    /// `wasm` or `rhai`.
    pub kind: &'static str,
    pub path: PathBuf,
    /// Found in the hooks directory rather than declared in iso.toml.
    pub discovered: bool,
    pub optional: bool,
    pub timeout_ms: u128,
    pub memory_mib: u64,
    /// `{"paths": [...], "exec": [...], "hosts": [...]}`, the default made explicit.
    pub allow: serde_json::Value,
    pub exists: bool,
}

/// The repository's hooks in the order they run, and where discovered
/// scripts are looked for.
pub fn list(project: &Project) -> (Vec<HookInfo>, PathBuf) {
    let d = &project.config.hook_defaults;
    let infos = repo_hooks(project, &Silent)
        .list()
        .iter()
        .map(|hook| {
            let timeout = hook.spec.timeout.as_ref().or(d.timeout.as_ref()).and_then(|t| t.duration().ok()).unwrap_or(DEFAULT_TIMEOUT);
            let memory = hook.spec.memory.as_ref().or(d.memory.as_ref()).and_then(|m| m.bytes().ok()).unwrap_or(DEFAULT_MEMORY);
            HookInfo {
                name: hook.name.clone(),
                events: hook.events.clone(),
                kind: kind_name(hook.kind),
                path: hook.path.clone(),
                discovered: hook.discovered,
                optional: hook.spec.optional,
                timeout_ms: timeout.as_millis(),
                memory_mib: memory >> 20,
                allow: allow_json(&hook.spec.allow),
                exists: hook.path.is_file(),
            }
        })
        .collect();
    (infos, d.dir.clone())
}

fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Wasm => "wasm",
        Kind::Rhai => "rhai",
    }
}

/// A hook's grants as JSON, the default made explicit.
fn allow_json(allow: &Allow) -> serde_json::Value {
    serde_json::json!({
        "paths": allow.paths.as_ref().map(|p| serde_json::to_value(p).unwrap_or_default()).unwrap_or(serde_json::json!([{"path": ".", "mode": "rw"}])),
        "exec": allow.exec,
        "hosts": allow.hosts,
    })
}

/// Whether any hook of the repository listens to `event`.
pub fn wanted(project: &Project, event: &str) -> bool {
    repo_hooks(project, &Silent).wants(event)
}

/// Run the hooks of `event` (one of iso's or a custom one) for a live
/// thread now: `iso hooks run`, and custom events published to the API.
/// Variables returned by post-init/post-up hooks are added to
/// `.env.thread`, as in init.
pub fn run(project: &Project, selector: &str, event: &str, custom: Option<String>, progress: &dyn Progress) -> Result<(ThreadRecord, RunReport), Error> {
    if !is_event(event) {
        return Err(Error::BadEvent(event.to_string()));
    }
    let hooks = repo_hooks(project, progress);
    let mut record = find(project, selector)?;
    if record.status == ThreadStatus::Removed || !record.worktree.exists() {
        return Err(Error::NotLive { id: record.id, status: record.status, what: "running hooks" });
    }
    let mut env = thread_env_and_file(project, &record)?;
    let services = thread_services(project, &record);
    let git = if event == Event::PreCleanup.as_str() { Some(git_summary(&*project.git()?, &record)) } else { None };
    let payload = hooks::payload(event, &record, project.root(), &env, &services, git.as_ref(), custom);
    let own = thread_env(project, &record)?;
    let report = hooks.run(payload, &own)?;
    if let Ok(ev) = event.parse::<Event>() {
        let outcome = report.outcome();
        apply_outcome(project, &mut record, ev, &outcome, &mut env, &Silent);
    } else {
        store_links(project, &mut record, &report.links);
    }
    for r in &report.runs {
        progress.note(&format!("{}: {} ({} ms)", r.name, r.result, r.millis));
    }
    Ok((record, report))
}

/// Publish a custom event: log it (what every subscriber of the event
/// stream is sent), then, for a thread, run the hooks subscribed to it in
/// the background and log how they did as a `hook` event.
pub fn publish(project: &std::sync::Arc<Project>, event: &str, thread: Option<u32>, data: serde_json::Value) -> Result<EventRecord, Error> {
    if !valid_custom_event(event) {
        return Err(Error::BadEvent(event.to_string()));
    }
    let log = event_log(project);
    let new = NewEvent { kind: CUSTOM.into(), event: event.to_string(), thread, name: None, data: data.clone() };
    let logged = log.append(new).map_err(|source| Error::Io { action: format!("write the event log {}", log.path().display()), source })?;
    if let Some(thread) = thread {
        if wanted(project, event) {
            let (project, event) = (std::sync::Arc::clone(project), event.to_string());
            std::thread::spawn(move || run_custom(&project, thread, &event, data));
        }
    }
    Ok(logged)
}

pub(crate) fn run_custom(project: &Project, thread: u32, event: &str, data: serde_json::Value) {
    let payload = (!data.is_null()).then(|| data.to_string());
    let data = match run(project, &thread.to_string(), event, payload, &crate::progress::HookLogsOnly) {
        Ok((_, report)) => serde_json::json!({ "ok": true, "messages": report.messages, "runs": report.runs }),
        Err(e) => serde_json::json!({ "ok": false, "error": e.to_string() }),
    };
    crate::eventlog::append_quietly(&event_log(project), NewEvent { kind: "hook".into(), event: event.to_string(), thread: Some(thread), name: None, data });
}

/// What `iso plugin check` found out about a component.
#[derive(Debug, Clone, Serialize)]
pub struct PluginReport {
    pub file: PathBuf,
    /// This iso can run it.
    pub ok: bool,
    /// `iso:hooks@0.1.0`, if it exports a handler.
    pub world: Option<String>,
    pub host_world: String,
    pub exports: Vec<String>,
    pub imports: Vec<String>,
    /// Why it cannot run, when it cannot.
    pub error: Option<String>,
    /// The `[[hooks]]` entries of the repository at `cwd` that use the file.
    pub manifests: Vec<serde_json::Value>,
}

/// Look inside a WASM component: the world it implements, whether this iso
/// can run it and, inside a repository, what its `[[hooks]]` entries grant
/// it. `Err` when it is not a component at all (or not readable).
pub fn check_plugin(cwd: &Path, file: &Path) -> Result<PluginReport, String> {
    let manifests: Vec<serde_json::Value> = Project::discover(cwd)
        .ok()
        .map(|p| {
            let target = cwd.join(file).canonicalize().ok();
            repo_hooks(&p, &Silent)
                .list()
                .iter()
                .filter(|h| h.kind == Kind::Wasm && h.path.canonicalize().ok() == target && target.is_some())
                .map(|h| serde_json::json!({ "name": h.name, "events": h.events, "optional": h.spec.optional, "allow": allow_json(&h.spec.allow) }))
                .collect()
        })
        .unwrap_or_default();
    let i = wasm::inspect(file)?;
    Ok(PluginReport {
        file: file.to_path_buf(),
        ok: i.compatible.is_ok(),
        world: i.world_version.as_ref().map(|v| format!("iso:hooks@{v}")),
        host_world: format!("iso:hooks@{}", wasm::WORLD_VERSION),
        exports: i.exports,
        imports: i.imports,
        error: i.compatible.err(),
        manifests,
    })
}
