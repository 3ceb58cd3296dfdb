//! What several verbs share: a thread's environment (`.env.thread`), the
//! hooks of a repository, and delivering a lifecycle event (logged, then
//! handed to the hooks).

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use super::stack::stack_plan;
use super::Error;
use crate::envfile;
use crate::eventlog::{self, EventLog, NewEvent, LIFECYCLE};
use crate::events::{Event, EventContext, EventReceiver, GitSummary, Outcome, ServiceEndpoint};
use crate::hooks::Hooks;
use crate::progress::Progress;
use crate::project::Project;
use crate::services;
use crate::thread::ThreadRecord;
use crate::worktree::{self, Git};

/// The name of a thread's env file inside its worktree.
pub const ENV_FILE: &str = ".env.thread";

/// The repository's hooks (its `[[hooks]]` and the discovered scripts),
/// logging on stderr when `progress` wants hook logs shown.
pub(crate) fn repo_hooks(project: &Project, progress: &dyn Progress) -> Hooks {
    let h = Hooks::new(project.root(), &project.config.hooks, &project.config.hook_defaults);
    if progress.show_hook_logs() {
        h.with_log(crate::hooks::stderr_sink())
    } else {
        h
    }
}

/// The event log of the repository.
pub(crate) fn event_log(project: &Project) -> EventLog {
    EventLog::new(project.iso_dir())
}

/// What the receiver of an event is told besides the thread.
#[derive(Default)]
pub(crate) struct EventData<'a> {
    pub env: Option<&'a BTreeMap<String, String>>,
    pub services: Vec<ServiceEndpoint>,
    pub git: Option<GitSummary>,
}

/// Deliver `event`: log it, then hand it to the hooks; the caller applies
/// what they hand back.
pub(crate) fn emit(project: &Project, record: &ThreadRecord, event: Event, hooks: &dyn EventReceiver, data: &EventData<'_>) -> Result<Outcome, Error> {
    let empty = BTreeMap::new();
    // Without a plan (no stack yet, an unreadable compose file) only ISO_*
    // and what `own` holds is protected: the ISO_ prefix always is.
    let own = thread_env(project, record).unwrap_or_default();
    let ctx = EventContext {
        event,
        thread: record,
        repo_root: project.root(),
        env: data.env.unwrap_or(&empty),
        own: &own,
        services: &data.services,
        git: data.git.as_ref(),
    };
    observe(project, record, event);
    Ok(hooks.deliver(&ctx)?)
}

/// What iso itself does on every lifecycle event, whatever hooks are
/// configured: log it (never failing the operation: see
/// [`eventlog::append_quietly`]).
fn observe(project: &Project, thread: &ThreadRecord, event: Event) {
    let data = serde_json::json!({ "branch": thread.branch, "status": thread.status, "ports": thread.port_block });
    eventlog::append_quietly(
        &event_log(project),
        NewEvent { kind: LIFECYCLE.into(), event: event.as_str().into(), thread: Some(thread.id), name: Some(thread.name.clone()), data },
    );
}

/// Show the hooks' messages, keep them in the thread's history, and add
/// the variables they returned to `.env.thread` (and to `env`). The hooks
/// admitted or refused each variable already ([`crate::hooks::admit`]);
/// the refusals are shown and kept here.
pub(crate) fn apply_outcome(
    project: &Project,
    record: &mut ThreadRecord,
    event: Event,
    outcome: &Outcome,
    env: &mut BTreeMap<String, String>,
    progress: &dyn Progress,
) {
    for m in &outcome.messages {
        progress.note(m);
    }
    let mut entries: Vec<(String, String)> = outcome.messages.iter().map(|m| (format!("{event} hook"), m.clone())).collect();
    for why in &outcome.refused {
        progress.note(why);
        entries.push((format!("{event} hook"), why.clone()));
    }
    if !outcome.env.is_empty() && matches!(event, Event::PostInit | Event::PostUp) {
        let added: BTreeMap<String, String> = outcome.env.iter().map(|v| (v.name.clone(), v.value.clone())).collect();
        env.extend(added.clone());
        let header = format!("Written by iso for thread {} ({}), with variables from hooks.", record.id, record.name);
        match write_env_files(record, &header, env) {
            Ok(()) => entries.push((format!("{event} hook"), format!("added {} to {ENV_FILE}", added.keys().cloned().collect::<Vec<_>>().join(", ")))),
            Err(e) => progress.note(&format!("could not add the hooks' variables to {ENV_FILE}: {e}")),
        }
    }
    record_entries(project, record, &entries, &outcome.links);
}

/// Keep the links the hooks of a custom event set on the thread record
/// (lifecycle events go through [`apply_outcome`]). Each passed
/// `thread::link_problem` and the count limit in the hook runner already.
pub(crate) fn store_links(project: &Project, record: &mut ThreadRecord, links: &BTreeMap<String, String>) {
    record_entries(project, record, &[], links);
}

fn record_entries(project: &Project, record: &mut ThreadRecord, entries: &[(String, String)], links: &BTreeMap<String, String>) {
    if entries.is_empty() && links.is_empty() {
        return;
    }
    let id = record.id;
    let _ = project.registry().update(|d| {
        if let Some(t) = d.thread_mut(id) {
            for (ev, detail) in entries {
                t.record(ev, detail.clone());
            }
            for (name, url) in links {
                // The hook runner checked the count against the record it
                // read; another event's hooks may have added links since.
                if !t.links.contains_key(name) && t.links.len() >= crate::thread::LINKS_LIMIT {
                    t.record("link", format!("{name} not kept: a thread holds at most {} links", crate::thread::LINKS_LIMIT));
                } else if t.links.get(name) != Some(url) {
                    t.record("link", format!("{name} = {url}"));
                    t.links.insert(name.clone(), url.clone());
                }
            }
            *record = t.clone();
        }
        Ok::<_, Error>(())
    });
    // The spare copy beside the worktree's git metadata (see `recover`)
    // keeps the links too, so a lost registry does not lose them.
    if !links.is_empty() {
        let _ = super::recover::keep(project, record);
    }
}

/// Where each service of a planned stack answers on the host.
pub(crate) fn endpoints(plan: &services::Plan) -> Vec<ServiceEndpoint> {
    plan.services
        .iter()
        .filter_map(|s| s.ports.first().map(|(_, host)| ServiceEndpoint { name: s.name.clone(), host: plan.connect_host.clone(), port: *host }))
        .collect()
}

/// The services of `record`'s stack, if the repository has one.
pub(crate) fn thread_services(project: &Project, record: &ThreadRecord) -> Vec<ServiceEndpoint> {
    if !project.config.has_stack() {
        return Vec::new();
    }
    stack_plan(project, record).map(|p| endpoints(&p)).unwrap_or_default()
}

/// What pre-cleanup hooks are told about the branch.
pub(crate) fn git_summary(git: &Git, record: &ThreadRecord) -> GitSummary {
    let commits = git.unmerged_commits(&record.branch, &record.base).unwrap_or_default();
    let uncommitted = if record.worktree.exists() { worktree::uncommitted_files(&record.worktree).unwrap_or_default() } else { Vec::new() };
    let files_changed = git.changed_files(&record.base, &record.branch, 1000).unwrap_or_default();
    GitSummary { commits_ahead: commits.len() as u32, commits: commits.into_iter().take(100).collect(), files_changed, uncommitted }
}

/// The values env templates can use.
#[derive(Serialize)]
pub(crate) struct TemplateContext<'a> {
    thread: ThreadValues<'a>,
    ports: &'a BTreeMap<String, u16>,
    repo: RepoValues<'a>,
}

#[derive(Serialize)]
struct ThreadValues<'a> {
    id: u32,
    name: &'a str,
    branch: &'a str,
    base: &'a str,
    worktree: &'a Path,
}

#[derive(Serialize)]
struct RepoValues<'a> {
    root: &'a Path,
    name: String,
}

pub(crate) fn template_context<'a>(project: &'a Project, record: &'a ThreadRecord) -> TemplateContext<'a> {
    TemplateContext {
        thread: ThreadValues { id: record.id, name: &record.name, branch: &record.branch, base: &record.base, worktree: &record.worktree },
        ports: &record.ports,
        repo: RepoValues { root: project.root(), name: project.repo_name() },
    }
}

/// The variables of a thread's `.env.thread`: iso's own `ISO_*` values,
/// then the rendered `[env]` templates, then the stack's connection details.
pub fn thread_env(project: &Project, record: &ThreadRecord) -> Result<BTreeMap<String, String>, Error> {
    let plan = if project.config.has_stack() { Some(stack_plan(project, record)?) } else { None };
    thread_env_with(project, record, plan.as_ref())
}

/// [`thread_env`] with the stack's plan already made (`None` without a stack).
pub(crate) fn thread_env_with(project: &Project, record: &ThreadRecord, plan: Option<&services::Plan>) -> Result<BTreeMap<String, String>, Error> {
    let ctx = template_context(project, record);
    let mut env = BTreeMap::new();
    env.insert("ISO_THREAD_ID".to_string(), record.id.to_string());
    env.insert("ISO_THREAD_NAME".to_string(), record.name.clone());
    env.insert("ISO_BRANCH".to_string(), record.branch.clone());
    env.insert("ISO_WORKTREE".to_string(), record.worktree.display().to_string());
    // With `[repos]`, every worktree of the thread by name; `ISO_WORKTREE`
    // is the one the file is in (see `write_env_files`).
    if !record.repos.is_empty() {
        env.insert(format!("ISO_WORKTREE_{}", crate::config::PRIMARY_REPO.to_uppercase()), record.worktree.display().to_string());
        for (name, w) in &record.repos {
            env.insert(format!("ISO_WORKTREE_{}", name.to_uppercase()), w.worktree.display().to_string());
        }
    }
    env.insert("ISO_PORT_BLOCK".to_string(), record.port_block.to_string());
    for (slot, port) in &record.ports {
        env.insert(format!("ISO_PORT_{}", slot.to_uppercase()), port.to_string());
    }
    env.extend(envfile::render(&project.config.env, &ctx)?);
    // The stack's connection details (DATABASE_URL, ...) win over [env].
    if let Some(plan) = plan {
        env.extend(plan.exports.clone());
    }
    Ok(env)
}

/// The thread's environment with what hooks added to its file since.
pub(crate) fn thread_env_and_file(project: &Project, record: &ThreadRecord) -> Result<BTreeMap<String, String>, Error> {
    let mut env = thread_env(project, record)?;
    // Variables hooks added earlier live only in the file.
    for (k, v) in envfile::read(&record.worktree, Path::new(ENV_FILE)) {
        env.entry(k).or_insert(v);
    }
    Ok(env)
}

/// Write `.env.thread` for `record`; returns what it holds.
pub(crate) fn write_env(project: &Project, record: &ThreadRecord, plan: Option<&services::Plan>) -> Result<BTreeMap<String, String>, Error> {
    let env = thread_env_with(project, record, plan)?;
    write_env_files(record, &regenerated_header(record), &env)?;
    Ok(env)
}

/// Write `.env.thread` again in each of the thread's worktrees, keeping
/// what hooks added to it (`iso doctor --fix` rebuilding a worktree).
pub(crate) fn rewrite_env(project: &Project, record: &ThreadRecord) -> Result<(), Error> {
    let env = thread_env_and_file(project, record)?;
    write_env_files(record, &regenerated_header(record), &env)?;
    Ok(())
}

fn regenerated_header(record: &ThreadRecord) -> String {
    format!("Written by iso for thread {} ({}). Regenerated by iso; edit iso.toml [env] instead.", record.id, record.name)
}

/// Write `env` as `.env.thread` in each of the thread's worktrees: the
/// same variables everywhere but `ISO_WORKTREE`, which is the worktree the
/// file is in. A linked worktree that is gone is skipped (doctor names it).
pub(crate) fn write_env_files(record: &ThreadRecord, header: &str, env: &BTreeMap<String, String>) -> Result<(), envfile::EnvFileError> {
    envfile::write(&record.worktree, Path::new(ENV_FILE), header, env)?;
    for w in record.repos.values().filter(|w| w.worktree.is_dir()) {
        let mut own = env.clone();
        own.insert("ISO_WORKTREE".to_string(), w.worktree.display().to_string());
        envfile::write(&w.worktree, Path::new(ENV_FILE), header, &own)?;
    }
    Ok(())
}

/// Mark the thread failed with `message` (a post-* hook that failed).
pub(crate) fn mark_failed(project: &Project, record: &mut ThreadRecord, message: &str) {
    let id = record.id;
    let _ = project.registry().update(|d| {
        if let Some(t) = d.thread_mut(id) {
            t.status = crate::thread::ThreadStatus::Failed;
            t.set_error(message);
            t.record("failed", message);
            *record = t.clone();
        }
        Ok::<_, Error>(())
    });
}

/// "postgres healthy · redis health check · api waiting".
pub(crate) fn describe_phases(phases: &[(String, services::Phase)]) -> String {
    phases.iter().map(|(n, p)| format!("{n} {p}")).collect::<Vec<_>>().join(" · ")
}
