//! The thread lifecycle: the one module that orchestrates config, registry,
//! ports, git and hooks.
//!
//! ```text
//! creating ──► active ──► cleaning ──► removed
//!     │          (merged / abandoned are user-set flavours of active)
//!     └──► rolled back (entry dropped)      any step ──► failed
//! ```
//!
//! Every resource an init creates is first written to the thread's step
//! journal in the registry (write-ahead), so a failed init undoes exactly
//! what it made, and an init killed half-way is undone by `iso doctor --fix`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use chrono::Utc;
use serde::Serialize;
use thiserror::Error;

use crate::config::{Config, ConfigError};
use crate::copyfiles::{self, CopyError};
use crate::envfile::{self, EnvFileError};
use crate::events::{Event, EventContext, EventReceiver, GitSummary, HookError, Outcome, ServiceEndpoint};
use crate::names::{self, NameError};
use crate::ports::{PortLayout, PortsError};
use crate::progress::Progress;
use crate::registry::{Registry, RegistryData, RegistryError};
use crate::services::{self, Engine};
use crate::thread::{Owner, Step, ThreadRecord, ThreadStatus};
use crate::worktree::{self, Git, GitError};

/// The name of a thread's env file inside its worktree.
pub const ENV_FILE: &str = ".env.thread";

/// Test-only fault injection: with `ISO_FAULT_PAUSE=<point>` in the
/// environment, init stops for a minute at that point (after the step's
/// journal entry is written and the step is done), so a test can kill the
/// process there with a real SIGKILL. Points: `reserved`, `branch`,
/// `worktree`, `services` (stack started and healthy).
fn fault_point(point: &str) {
    if std::env::var("ISO_FAULT_PAUSE").is_ok_and(|p| p == point) {
        eprintln!("iso: paused at {point} (ISO_FAULT_PAUSE)");
        std::thread::sleep(std::time::Duration::from_secs(60));
    }
}

#[derive(Debug, Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Git(#[from] GitError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Ports(#[from] PortsError),
    #[error(transparent)]
    Name(#[from] NameError),
    #[error(transparent)]
    Env(#[from] EnvFileError),
    #[error(transparent)]
    Copy(#[from] CopyError),
    #[error(transparent)]
    Hook(#[from] HookError),
    #[error(transparent)]
    Hooks(crate::hooks::HookFailure),
    #[error("thread {id} is already named `{name}`\n  fix: pick another name, or free it with `iso cleanup {id}`")]
    NameTaken { name: String, id: u32 },
    #[error("branch `{branch}` already belongs to thread {id}\n  fix: pick another name")]
    BranchTaken { branch: String, id: u32 },
    #[error("no thread `{selector}`{known}\n  fix: see `iso list` for ids and names")]
    NotFound { selector: String, known: String },
    #[error("thread {id} is being {doing} by process {pid}\n  fix: wait for it, or if that process is gone run `iso doctor --fix`")]
    Busy { id: u32, doing: &'static str, pid: u32 },
    #[error("cleanup of thread {id} would lose work:{}\n  fix: commit and push (or stash) it, or pass --force to throw it away", lost_list(.uncommitted, .unmerged))]
    WouldLoseWork { id: u32, uncommitted: Vec<String>, unmerged: Vec<String> },
    #[error("init of `{name}` failed at step `{step}`: {source}{}", rolled_back_list(.rolled_back))]
    InitFailed { name: String, step: &'static str, source: Box<Error>, rolled_back: Vec<String> },
    #[error("status `{0}` cannot be set by hand\n  fix: use active, merged or abandoned")]
    StatusNotSettable(ThreadStatus),
    #[error(transparent)]
    Services(#[from] services::Error),
    #[error("this repository defines no Docker stack\n  fix: add [services.<name>] or [compose] to iso.toml (see docs/services.md), or start from a template: `iso setup --template postgres-redis-api`")]
    NoStack,
}

fn lost_list(uncommitted: &[String], unmerged: &[String]) -> String {
    let mut s = String::new();
    if !uncommitted.is_empty() {
        s.push_str(&format!("\n  {} uncommitted file(s):", uncommitted.len()));
        for f in uncommitted.iter().take(10) {
            s.push_str(&format!("\n    {f}"));
        }
        if uncommitted.len() > 10 {
            s.push_str(&format!("\n    … and {} more", uncommitted.len() - 10));
        }
    }
    if !unmerged.is_empty() {
        s.push_str(&format!("\n  {} commit(s) on no other branch or remote:", unmerged.len()));
        for c in unmerged {
            s.push_str(&format!("\n    {c}"));
        }
    }
    s
}

fn rolled_back_list(items: &[String]) -> String {
    if items.is_empty() {
        "\n  nothing had been created".to_string()
    } else {
        format!("\n  rolled back: {}", items.join(", "))
    }
}

impl Error {
    /// The process exit code for this error (see README, "Exit codes").
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::NotFound { .. } => 3,
            Error::WouldLoseWork { .. } | Error::Busy { .. } => 5,
            Error::Hook(HookError::Refused { .. }) => 5,
            Error::Hooks(f) if f.refused => 5,
            Error::InitFailed { source, .. } => source.exit_code(),
            Error::Config(_) => 78, // EX_CONFIG
            _ => 1,
        }
    }
}

/// A repository iso works in: git, the effective config and the registry.
pub struct Project {
    pub git: Git,
    pub config: Config,
    pub registry: Registry,
}

impl Project {
    /// Find the repository containing `start` (the main checkout or any of
    /// its worktrees) and load its configuration.
    pub fn discover(start: &Path) -> Result<Project, Error> {
        let git = Git::discover(start)?;
        let config = Config::load(git.root())?;
        Ok(Project::with_config(git, config))
    }

    pub fn with_config(git: Git, config: Config) -> Project {
        let registry = Registry::new(git.common_dir().join("iso"));
        Project { git, config, registry }
    }

    pub fn root(&self) -> &Path {
        self.git.root()
    }

    pub fn layout(&self) -> PortLayout {
        let p = &self.config.ports;
        PortLayout { base: p.base, block_size: p.block_size, slots: p.slots.clone() }
    }

    /// The worktree directory of thread `id`.
    pub fn worktree_path(&self, id: u32) -> PathBuf {
        self.root().join(&self.config.threads.worktree_dir).join(format!("thread-{id}"))
    }

    pub fn load(&self) -> Result<RegistryData, Error> {
        Ok(self.registry.load()?)
    }

    /// The live thread named by `selector` (id, name or branch).
    pub fn find(&self, selector: &str) -> Result<ThreadRecord, Error> {
        find_in(&self.load()?, selector).cloned()
    }
}

/// Resolve `selector` among live threads: an id first, then a name, then a
/// branch.
pub fn find_in<'a>(data: &'a RegistryData, selector: &str) -> Result<&'a ThreadRecord, Error> {
    let by_id = selector.parse::<u32>().ok().and_then(|id| data.thread(id));
    by_id
        .or_else(|| data.threads.iter().find(|t| t.name == selector))
        .or_else(|| data.threads.iter().find(|t| t.branch == selector))
        .ok_or_else(|| {
            let names: Vec<String> = data.threads.iter().map(|t| format!("{} ({})", t.id, t.name)).collect();
            let known = if names.is_empty() { "; there are no threads".to_string() } else { format!("; threads: {}", names.join(", ")) };
            Error::NotFound { selector: selector.to_string(), known }
        })
}

// ---- init ------------------------------------------------------------------

#[derive(Debug, Clone, Default)]
pub struct InitRequest {
    pub name: String,
    pub base: Option<String>,
    pub task: Option<String>,
}

/// Create a thread: reserve an id and a port block, make (or reuse) its
/// branch and worktree, copy local files, write `.env.thread`, and emit the
/// lifecycle events. On failure everything created is rolled back.
pub fn init(project: &Project, req: &InitRequest, hooks: &dyn EventReceiver, progress: &dyn Progress) -> Result<ThreadRecord, Error> {
    init_opts(project, req, &StackOptions::default(), hooks, progress)
}

/// Options about the thread's Docker stack, for [`init_opts`] and
/// [`cleanup_opts`].
#[derive(Debug, Clone, Copy, Default)]
pub struct StackOptions {
    /// init: create worktree, ports and env file without starting the stack.
    pub no_services: bool,
    /// cleanup: keep the stack's named volumes (containers are stopped first).
    pub keep_volumes: bool,
    /// cleanup: end this user's processes still listening on the thread's ports.
    pub kill_ports: bool,
}

/// [`init`], and the thread's Docker stack (unless `stack.no_services`):
/// started after `.env.thread` is written and healthy before `post-up`.
pub fn init_opts(project: &Project, req: &InitRequest, stack: &StackOptions, hooks: &dyn EventReceiver, progress: &dyn Progress) -> Result<ThreadRecord, Error> {
    let name = names::sanitize(&req.name)?;
    let base = match req.base.clone().or_else(|| project.config.threads.base_branch.clone()) {
        Some(b) => b,
        None => project.git.current_branch()?.ok_or(GitError::DetachedHead)?,
    };
    let base_oid = project.git.resolve_base(&base)?;

    progress.step(&format!("{name}: reserving id and ports"));
    let mut record = reserve(project, &name, &base, req.task.clone(), progress)?;
    fault_point("reserved");

    match build(project, &mut record, base_oid, stack, hooks, progress) {
        Ok(()) => Ok(record),
        Err((step, err)) => {
            progress.step(&format!("{name}: rolling back"));
            let rolled_back = match rollback(project, record.id) {
                Ok(items) => items,
                Err(e) => vec![format!("(rollback incomplete: {e}; run `iso doctor --fix`)")],
            };
            Err(Error::InitFailed { name, step, source: Box::new(err), rolled_back })
        }
    }
}

/// Under the registry lock: pick the id and ports, and write a `creating`
/// record owned by this process.
fn reserve(project: &Project, name: &str, base: &str, task: Option<String>, progress: &dyn Progress) -> Result<ThreadRecord, Error> {
    let layout = project.layout();
    project.registry.update(|data| {
        if let Some(t) = data.threads.iter().find(|t| t.name == name) {
            return Err(Error::NameTaken { name: name.to_string(), id: t.id });
        }
        let held: BTreeSet<u32> = data.threads.iter().map(|t| t.id).collect();
        let (id, block, skipped) = layout.allocate(project.config.threads.max, &held)?;
        for s in &skipped {
            progress.note(&s.to_string());
        }
        let branch = project.config.branch_name(id, name);
        if let Some(t) = data.threads.iter().find(|t| t.branch == branch) {
            return Err(Error::BranchTaken { branch, id: t.id });
        }
        let worktree = project.worktree_path(id);
        let now = Utc::now();
        let mut record = ThreadRecord {
            id,
            name: name.to_string(),
            branch,
            base: base.to_string(),
            status: ThreadStatus::Creating,
            env_file: worktree.join(ENV_FILE),
            worktree,
            ports: block.named,
            port_block: block.range,
            task,
            pr: None,
            created: now,
            updated: now,
            created_branch: false,
            error: None,
            owner: Some(Owner::current()),
            steps: Vec::new(),
            history: Vec::new(),
        };
        record.record("reserved", format!("id {id}, ports {}", record.port_block));
        data.threads.push(record.clone());
        // Serialised by the registry lock, so parallel inits don't race on
        // the exclude file.
        let dir = format!("/{}/", project.config.threads.worktree_dir.display());
        project.git.ensure_excluded(&[&dir, ENV_FILE])?;
        Ok(record)
    })
}

type StepResult = Result<(), (&'static str, Error)>;

fn build(project: &Project, record: &mut ThreadRecord, base_oid: git2::Oid, stack: &StackOptions, hooks: &dyn EventReceiver, progress: &dyn Progress) -> StepResult {
    let name = record.name.clone();
    let at = |step: &'static str| move |e: Error| (step, e);

    let pre_env = thread_env(project, record).unwrap_or_default();
    emit(project, record, Event::PreInit, hooks, &EventData { env: Some(&pre_env), ..Default::default() }).map_err(at("pre-init hook"))?;

    // Branch: reuse an existing one, otherwise create it from the base.
    progress.step(&format!("{name}: branch {}", record.branch));
    if project.git.branch_exists(&record.branch) {
        if let Some(at_path) = project.git.branch_checked_out_at(&record.branch).map_err(|e| ("branch", e.into()))? {
            if at_path != record.worktree {
                return Err(("branch", GitError::BranchInUse { branch: record.branch.clone(), path: at_path }.into()));
            }
        }
    } else {
        journal(project, record, Step::Branch { name: record.branch.clone() }).map_err(at("branch"))?;
        project.git.create_branch(&record.branch, base_oid).map_err(|e| ("branch", e.into()))?;
        record.created_branch = true;
        fault_point("branch");
    }

    // Worktree: reuse the directory only if it already is this branch's.
    progress.step(&format!("{name}: checking out worktree {}", record.worktree.display()));
    if record.worktree.exists() {
        if worktree::head_branch(&record.worktree).as_deref() != Some(record.branch.as_str())
            || !record.worktree.join(".git").is_file()
        {
            return Err(("worktree", GitError::DirOccupied { path: record.worktree.clone(), branch: record.branch.clone() }.into()));
        }
        progress.note(&format!("reusing existing worktree {}", record.worktree.display()));
    } else {
        let wt_name = format!("thread-{}", record.id);
        journal(project, record, Step::Worktree { name: wt_name.clone(), path: record.worktree.clone() }).map_err(at("worktree"))?;
        let reason = format!("iso thread {} ({})", record.id, record.name);
        project.git.add_worktree(&wt_name, &record.worktree, &record.branch, &reason).map_err(|e| ("worktree", e.into()))?;
        fault_point("worktree");
    }

    progress.step(&format!("{name}: copying local files"));
    let patterns = copyfiles::patterns(project.root(), &project.config.threads.copy);
    let copied = copyfiles::copy_matching(project.root(), &record.worktree, &patterns).map_err(|e| ("copy files", e.into()))?;

    progress.step(&format!("{name}: writing {ENV_FILE}"));
    // Planned once: the env file takes its connection details, the stack
    // below is started from it.
    let plan = if project.config.has_stack() { Some(stack_plan(project, record).map_err(at("env file"))?) } else { None };
    let mut env = write_env(project, record, plan.as_ref()).map_err(at("env file"))?;
    let services = plan.as_ref().map(endpoints).unwrap_or_default();

    // The Docker stack: journaled before anything is created, so a failed
    // or killed init removes it by label.
    let mut stack_detail = String::new();
    if let Some(plan) = plan.as_ref().filter(|_| !stack.no_services) {
        progress.step(&format!("{name}: connecting to Docker"));
        let engine = Engine::connect().map_err(|e| ("services", e.into()))?;
        journal(project, record, Step::Services { project: plan.project.clone() }).map_err(at("services"))?;
        let report = |phases: &[(String, services::Phase)]| progress.step(&format!("{name}: {}", describe_phases(phases)));
        let started = engine.up(plan, &report).map_err(|e| ("services", e.into()))?;
        fault_point("services");
        stack_detail = format!(", services {} healthy", started.iter().map(|s| format!("{} ({} ms)", s.service, s.millis)).collect::<Vec<_>>().join(", "));
    }

    // The thread is usable from here on.
    record.status = ThreadStatus::Active;
    record.owner = None;
    record.steps.clear();
    let detail = format!("branch {} from {}, {} file(s) copied{stack_detail}", record.branch, record.base, copied.len());
    let snapshot = record.clone();
    project
        .registry
        .update(|d| {
            let t = d.thread_mut(snapshot.id).ok_or_else(|| RegistryError::Corrupt {
                path: project.registry.path(),
                line: 0,
                message: format!("thread {} vanished from the registry during init", snapshot.id),
            })?;
            *t = ThreadRecord { history: std::mem::take(&mut t.history), ..snapshot.clone() };
            t.record("created", detail.clone());
            *record = t.clone();
            Ok::<_, Error>(())
        })
        .map_err(at("registry"))?;

    // Post events do not undo the thread; a failure marks it failed.
    for event in [Event::PostInit, Event::PostUp] {
        let data = EventData { env: Some(&env), services: services.clone(), git: None };
        match emit(project, record, event, hooks, &data) {
            Ok(outcome) => apply_outcome(project, record, event, &outcome, &mut env, progress),
            Err(e) => {
                mark_failed(project, record, &e.to_string());
                progress.note(&format!("{name}: {e}"));
                break;
            }
        }
    }
    Ok(())
}

/// What the receiver of an event is told besides the thread.
#[derive(Default)]
struct EventData<'a> {
    env: Option<&'a BTreeMap<String, String>>,
    services: Vec<ServiceEndpoint>,
    git: Option<GitSummary>,
}

/// Deliver `event`; the caller applies what the receiver hands back.
fn emit(project: &Project, record: &ThreadRecord, event: Event, hooks: &dyn EventReceiver, data: &EventData<'_>) -> Result<Outcome, Error> {
    let empty = BTreeMap::new();
    let ctx = EventContext { event, thread: record, repo_root: project.root(), env: data.env.unwrap_or(&empty), services: &data.services, git: data.git.as_ref() };
    crate::eventlog::observe(project, record, event);
    Ok(hooks.deliver(&ctx)?)
}

/// Show the hooks' messages, keep them in the thread's history, and add
/// the variables they returned to `.env.thread` (and to `env`).
fn apply_outcome(project: &Project, record: &mut ThreadRecord, event: Event, outcome: &Outcome, env: &mut BTreeMap<String, String>, progress: &dyn Progress) {
    for m in &outcome.messages {
        progress.note(m);
    }
    let mut entries: Vec<(String, String)> = outcome.messages.iter().map(|m| (format!("{event} hook"), m.clone())).collect();
    if !outcome.env.is_empty() && matches!(event, Event::PostInit | Event::PostUp) {
        env.extend(outcome.env.clone());
        let header = format!("Written by iso for thread {} ({}), with variables from hooks.", record.id, record.name);
        match envfile::write(&record.env_file, &header, env) {
            Ok(()) => entries.push((format!("{event} hook"), format!("added {} to {ENV_FILE}", outcome.env.keys().cloned().collect::<Vec<_>>().join(", ")))),
            Err(e) => progress.note(&format!("could not add the hooks' variables to {ENV_FILE}: {e}")),
        }
    }
    if entries.is_empty() {
        return;
    }
    let id = record.id;
    let _ = project.registry.update(|d| {
        if let Some(t) = d.thread_mut(id) {
            for (ev, detail) in &entries {
                t.record(ev, detail.clone());
            }
            *record = t.clone();
        }
        Ok::<_, Error>(())
    });
}

fn apply_progress(progress: &dyn Progress, report: &crate::hooks::RunReport) {
    for r in &report.runs {
        progress.note(&format!("{}: {} ({} ms)", r.name, r.result, r.millis));
    }
}

/// Where each service of a planned stack answers on the host.
fn endpoints(plan: &services::Plan) -> Vec<ServiceEndpoint> {
    plan.services
        .iter()
        .filter_map(|s| s.ports.first().map(|(_, host)| ServiceEndpoint { name: s.name.clone(), host: plan.connect_host.clone(), port: *host }))
        .collect()
}

/// The services of `record`'s stack, if the repository has one.
fn thread_services(project: &Project, record: &ThreadRecord) -> Vec<ServiceEndpoint> {
    if !project.config.has_stack() {
        return Vec::new();
    }
    stack_plan(project, record).map(|p| endpoints(&p)).unwrap_or_default()
}

/// What pre-cleanup hooks are told about the branch.
fn git_summary(project: &Project, record: &ThreadRecord) -> GitSummary {
    let commits = project.git.unmerged_commits(&record.branch, &record.base).unwrap_or_default();
    let uncommitted = if record.worktree.exists() { worktree::uncommitted_files(&record.worktree).unwrap_or_default() } else { Vec::new() };
    let files_changed = project.git.changed_files(&record.base, &record.branch, 1000).unwrap_or_default();
    GitSummary { commits_ahead: commits.len() as u32, commits: commits.into_iter().take(100).collect(), files_changed, uncommitted }
}

/// The repository's hooks: its `[[hooks]]` and the discovered scripts.
pub fn hooks(project: &Project) -> crate::hooks::Hooks {
    crate::hooks::Hooks::new(project.root(), &project.config.hooks, &project.config.hook_defaults)
}

/// Run the hooks of `event` (one of iso's or a custom one) for a live
/// thread now: `iso hooks run`, and custom events published to the API.
/// Variables returned by post-init/post-up hooks are added to
/// `.env.thread`, as in init.
pub fn run_hooks(project: &Project, selector: &str, event: &str, custom: Option<String>, hooks: &crate::hooks::Hooks, progress: &dyn Progress) -> Result<(ThreadRecord, crate::hooks::RunReport), Error> {
    let mut record = project.find(selector)?;
    if record.status == ThreadStatus::Removed || !record.worktree.exists() {
        return Err(Error::Hooks(crate::hooks::HookFailure {
            plugin: "iso".into(),
            event: event.into(),
            message: format!("thread {} has no worktree (status {}); hooks run against live threads", record.id, record.status),
            refused: false,
        }));
    }
    let mut env = thread_env(project, &record)?;
    // Variables hooks added earlier live only in the file.
    for (k, v) in envfile::read(&record.env_file) {
        env.entry(k).or_insert(v);
    }
    let services = thread_services(project, &record);
    let git = (event == Event::PreCleanup.as_str()).then(|| git_summary(project, &record));
    let payload = crate::hooks::payload(event, &record, project.root(), &env, &services, git.as_ref(), custom);
    let report = hooks.run(payload).map_err(Error::Hooks)?;
    if let Ok(ev) = event.parse::<Event>() {
        let outcome = Outcome { messages: report.messages.clone(), env: report.env.clone() };
        apply_outcome(project, &mut record, ev, &outcome, &mut env, &crate::progress::Silent);
    }
    apply_progress(progress, &report);
    Ok((record, report))
}

fn mark_failed(project: &Project, record: &mut ThreadRecord, message: &str) {
    let id = record.id;
    let _ = project.registry.update(|d| {
        if let Some(t) = d.thread_mut(id) {
            t.status = ThreadStatus::Failed;
            t.error = Some(message.to_string());
            t.record("failed", message);
            *record = t.clone();
        }
        Ok::<_, Error>(())
    });
}

/// Append `step` to the thread's journal before the step is carried out.
fn journal(project: &Project, record: &mut ThreadRecord, step: Step) -> Result<(), Error> {
    record.steps.push(step.clone());
    project.registry.update(|d| {
        if let Some(t) = d.thread_mut(record.id) {
            t.steps.push(step);
        }
        Ok(())
    })
}

/// The values env templates can use.
#[derive(Serialize)]
struct TemplateContext<'a> {
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

/// The variables of a thread's `.env.thread`: iso's own `ISO_*` values,
/// then the rendered `[env]` templates.
pub fn thread_env(project: &Project, record: &ThreadRecord) -> Result<BTreeMap<String, String>, Error> {
    let plan = if project.config.has_stack() { Some(stack_plan(project, record)?) } else { None };
    thread_env_with(project, record, plan.as_ref())
}

/// [`thread_env`] with the stack's plan already made (`None` without a stack).
fn thread_env_with(project: &Project, record: &ThreadRecord, plan: Option<&services::Plan>) -> Result<BTreeMap<String, String>, Error> {
    let ctx = template_context(project, record);
    let mut env = BTreeMap::new();
    env.insert("ISO_THREAD_ID".to_string(), record.id.to_string());
    env.insert("ISO_THREAD_NAME".to_string(), record.name.clone());
    env.insert("ISO_BRANCH".to_string(), record.branch.clone());
    env.insert("ISO_WORKTREE".to_string(), record.worktree.display().to_string());
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

fn template_context<'a>(project: &'a Project, record: &'a ThreadRecord) -> TemplateContext<'a> {
    TemplateContext {
        thread: ThreadValues { id: record.id, name: &record.name, branch: &record.branch, base: &record.base, worktree: &record.worktree },
        ports: &record.ports,
        repo: RepoValues { root: project.root(), name: repo_name(project.root()) },
    }
}

fn write_env(project: &Project, record: &ThreadRecord, plan: Option<&services::Plan>) -> Result<BTreeMap<String, String>, Error> {
    let env = thread_env_with(project, record, plan)?;
    let header = format!("Written by iso for thread {} ({}). Regenerated by iso; edit iso.toml [env] instead.", record.id, record.name);
    envfile::write(&record.env_file, &header, &env)?;
    Ok(env)
}

/// The repository's directory name, used in names of per-thread resources.
pub fn repo_name(root: &Path) -> String {
    root.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_else(|| "repo".into())
}

/// Undo the journal of thread `id` in reverse order and drop its entry.
/// Returns what was undone, in words.
pub fn rollback(project: &Project, id: u32) -> Result<Vec<String>, Error> {
    let Some(record) = project.load()?.thread(id).cloned() else { return Ok(Vec::new()) };
    let mut undone = Vec::new();
    for step in record.steps.iter().rev() {
        match step {
            Step::Worktree { name, path } => {
                project.git.remove_worktree(name, path)?;
                undone.push(format!("worktree {}", path.display()));
            }
            Step::Branch { name } => {
                project.git.delete_branch(name)?;
                undone.push(format!("branch {name}"));
            }
            Step::Services { project: prefix } => {
                let removed = Engine::connect()?.teardown(project.root(), Some(id), false, stop_timeout(project))?;
                undone.push(format!("services {prefix} ({})", removed.describe()));
            }
        }
    }
    project.registry.update(|d| {
        d.take(id);
        Ok::<_, Error>(())
    })?;
    undone.push(format!("registry entry and ports {}", record.port_block));
    Ok(undone)
}

// ---- cleanup ---------------------------------------------------------------

#[derive(Debug, Clone, Copy, Default)]
pub struct CleanupOptions {
    pub delete_branch: bool,
    pub force: bool,
}

/// Remove a thread's worktree (and, later, its services), keep its branch
/// unless asked, free its ports, and keep its record among removed threads.
pub fn cleanup(project: &Project, selector: &str, opts: CleanupOptions, hooks: &dyn EventReceiver, progress: &dyn Progress) -> Result<ThreadRecord, Error> {
    cleanup_opts(project, selector, opts, &StackOptions::default(), hooks, progress)
}

/// [`cleanup`], and the thread's Docker stack: its containers, volumes
/// (unless `stack.keep_volumes`) and network are removed before the
/// worktree; with `stack.kill_ports`, this user's processes still
/// listening on the thread's ports are ended (each named first).
pub fn cleanup_opts(project: &Project, selector: &str, opts: CleanupOptions, stack: &StackOptions, hooks: &dyn EventReceiver, progress: &dyn Progress) -> Result<ThreadRecord, Error> {
    let record = project.find(selector)?;
    if let Some(owner) = record.owner.as_ref().filter(|o| o.is_alive() && o.pid != std::process::id()) {
        let doing = if record.status == ThreadStatus::Creating { "created" } else { "cleaned up" };
        return Err(Error::Busy { id: record.id, doing, pid: owner.pid });
    }
    // An init that died half-way: undo its journal.
    if record.status == ThreadStatus::Creating {
        progress.step(&format!("{}: rolling back interrupted init", record.name));
        rollback(project, record.id)?;
        let mut r = record;
        r.status = ThreadStatus::Removed;
        return Ok(r);
    }
    if !opts.force {
        let uncommitted = if record.worktree.exists() { worktree::uncommitted_files(&record.worktree)? } else { Vec::new() };
        let unmerged = if opts.delete_branch { project.git.unmerged_commits(&record.branch, &record.base)? } else { Vec::new() };
        if !uncommitted.is_empty() || !unmerged.is_empty() {
            return Err(Error::WouldLoseWork { id: record.id, uncommitted, unmerged });
        }
    }
    let env = thread_env(project, &record).unwrap_or_default();
    let data = EventData { env: Some(&env), services: thread_services(project, &record), git: Some(git_summary(project, &record)) };
    match emit(project, &record, Event::PreCleanup, hooks, &data) {
        Err(e) if !opts.force => return Err(e),
        Err(e) => progress.note(&format!("ignoring because of --force: {e}")),
        Ok(_) => {}
    }

    // Docker first (before anything is changed), so a stopped engine
    // leaves the thread as it was.
    let engine = if project.config.has_stack() {
        progress.step(&format!("{}: connecting to Docker", record.name));
        match Engine::connect() {
            Ok(e) => Some(e),
            Err(e) if opts.force || !had_services(&record) => {
                progress.note(&format!("not removing services of thread {}: {}", record.id, e.to_string().lines().next().unwrap_or("")));
                None
            }
            Err(e) => return Err(e.into()),
        }
    } else {
        None
    };

    let id = record.id;
    let record = set_status(project, id, ThreadStatus::Cleaning, Some(Owner::current()), "cleanup started")?;
    // An agent still running in the worktree would go on writing into a
    // directory that is about to disappear.
    match crate::agent::stop(project, &id.to_string(), std::time::Duration::from_secs(5)) {
        Ok(run) => progress.note(&format!("stopped agent run {} of thread {id} ({})", run.run, record.name)),
        Err(crate::agent::AgentError::NoRun { .. }) => {}
        Err(e) => progress.note(&format!("could not stop the agent of thread {id}: {e}")),
    }
    if let Some(engine) = &engine {
        progress.step(&format!("{}: removing services", record.name));
        let removed = engine.teardown(project.root(), Some(id), stack.keep_volumes, stop_timeout(project))?;
        if !removed.is_empty() {
            let _ = project.registry.update(|d| {
                if let Some(t) = d.thread_mut(id) {
                    t.record("services removed", removed.describe());
                }
                Ok::<_, Error>(())
            });
        }
    }
    if stack.kill_ports {
        kill_listeners(&record, progress);
    }
    progress.step(&format!("{}: removing worktree", record.name));
    remove_worktree_of(project, &record)?;
    if opts.delete_branch {
        progress.step(&format!("{}: deleting branch {}", record.name, record.branch));
        project.git.delete_branch(&record.branch)?;
    }
    let detail = if opts.delete_branch { "worktree and branch removed" } else { "worktree removed, branch kept" };
    let removed = project.registry.update(|d| {
        let mut t = d.take(id).unwrap_or_else(|| record.clone());
        t.status = ThreadStatus::Removed;
        t.owner = None;
        t.record("removed", detail);
        d.archive(t.clone());
        Ok::<_, Error>(t)
    })?;
    let data = EventData { env: Some(&env), services: data.services, git: None };
    if let Err(e) = emit(project, &removed, Event::PostCleanup, hooks, &data) {
        progress.note(&e.to_string());
    }
    Ok(removed)
}

fn remove_worktree_of(project: &Project, record: &ThreadRecord) -> Result<(), Error> {
    // The worktree may have been reused under another metadata name.
    let name = project
        .git
        .worktrees()?
        .into_iter()
        .find(|w| w.path == record.worktree)
        .map(|w| w.name)
        .unwrap_or_else(|| format!("thread-{}", record.id));
    project.git.remove_worktree(&name, &record.worktree)?;
    Ok(())
}

fn set_status(project: &Project, id: u32, status: ThreadStatus, owner: Option<Owner>, event: &str) -> Result<ThreadRecord, Error> {
    project.registry.update(|d| {
        let t = d.thread_mut(id).ok_or_else(|| Error::NotFound { selector: id.to_string(), known: String::new() })?;
        t.status = status;
        t.owner = owner;
        t.record(event, "");
        Ok(t.clone())
    })
}

// ---- update ----------------------------------------------------------------

#[derive(Debug, Clone, Default)]
pub struct Update {
    /// `Some("")` clears the task.
    pub task: Option<String>,
    /// `Some(None)` clears the PR.
    pub pr: Option<Option<u64>>,
    pub status: Option<ThreadStatus>,
}

pub fn update(project: &Project, selector: &str, change: &Update) -> Result<ThreadRecord, Error> {
    if let Some(s) = change.status {
        if !matches!(s, ThreadStatus::Active | ThreadStatus::Merged | ThreadStatus::Abandoned) {
            return Err(Error::StatusNotSettable(s));
        }
    }
    project.registry.update(|d| {
        let id = find_in(d, selector)?.id;
        let t = d.thread_mut(id).expect("found above");
        let mut said = Vec::new();
        if let Some(task) = &change.task {
            t.task = (!task.is_empty()).then(|| task.clone());
            said.push(format!("task: {}", if task.is_empty() { "(cleared)" } else { task }));
        }
        if let Some(pr) = change.pr {
            t.pr = pr;
            said.push(match pr {
                Some(n) => format!("pr: #{n}"),
                None => "pr: (cleared)".into(),
            });
        }
        if let Some(s) = change.status {
            t.status = s;
            t.error = None;
            said.push(format!("status: {s}"));
        }
        t.record("updated", said.join(", "));
        Ok(t.clone())
    })
}

// ---- doctor ----------------------------------------------------------------

/// One problem `iso doctor` found, and what it did about it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Finding {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thread: Option<u32>,
    pub problem: String,
    /// What `--fix` does (or did) about it.
    pub fix: String,
    pub fixed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Compare the registry with git and the filesystem; with `fix`, repair
/// what can be repaired without losing work.
pub fn doctor(project: &Project, fix: bool) -> Result<Vec<Finding>, Error> {
    let mut findings = Vec::new();
    let data = project.load()?;
    let attempt = |findings: &mut Vec<Finding>, thread: Option<u32>, problem: String, fix_text: &str, action: &dyn Fn() -> Result<(), Error>| {
        let mut f = Finding { thread, problem, fix: fix_text.to_string(), fixed: false, error: None };
        if fix {
            match action() {
                Ok(()) => f.fixed = true,
                Err(e) => f.error = Some(e.to_string()),
            }
        }
        findings.push(f);
    };

    for t in &data.threads {
        let owner_alive = t.owner.as_ref().is_some_and(Owner::is_alive);
        match t.status {
            ThreadStatus::Creating if !owner_alive => attempt(
                &mut findings,
                Some(t.id),
                format!("thread {} ({}) was interrupted while being created", t.id, t.name),
                "roll back what it created (worktree, new branch, registry entry)",
                &|| rollback(project, t.id).map(|_| ()),
            ),
            ThreadStatus::Cleaning if !owner_alive => attempt(
                &mut findings,
                Some(t.id),
                format!("thread {} ({}) was interrupted while being cleaned up", t.id, t.name),
                "finish the cleanup (remove the worktree, keep the branch)",
                &|| finish_cleanup(project, t),
            ),
            ThreadStatus::Creating | ThreadStatus::Cleaning => {}
            _ if !t.worktree.exists() => attempt(
                &mut findings,
                Some(t.id),
                format!("thread {} ({}): worktree {} is missing", t.id, t.name, t.worktree.display()),
                "mark the thread removed and free its ports (the branch is kept)",
                &|| finish_cleanup(project, t),
            ),
            _ => {
                let head = worktree::head_branch(&t.worktree);
                if head.as_deref() != Some(t.branch.as_str()) {
                    findings.push(Finding {
                        thread: Some(t.id),
                        problem: format!(
                            "thread {} ({}): worktree is on {} instead of branch {}",
                            t.id,
                            t.name,
                            head.as_deref().unwrap_or("a detached HEAD"),
                            t.branch
                        ),
                        fix: format!("none automatic: `git -C {} switch {}`", t.worktree.display(), t.branch),
                        fixed: false,
                        error: None,
                    });
                }
            }
        }
    }

    // Worktrees in iso's directory that no thread owns.
    let wt_dir = project.root().join(&project.config.threads.worktree_dir);
    let owned: BTreeSet<&Path> = data.threads.iter().map(|t| t.worktree.as_path()).collect();
    for wt in project.git.worktrees()? {
        if !wt.path.starts_with(&wt_dir) || owned.contains(wt.path.as_path()) {
            continue;
        }
        if wt.valid {
            attempt(
                &mut findings,
                None,
                format!("worktree {} is not in the registry", wt.path.display()),
                "remove it if it has no uncommitted changes (branch kept)",
                &|| {
                    let dirty = worktree::uncommitted_files(&wt.path)?;
                    if !dirty.is_empty() {
                        return Err(Error::WouldLoseWork { id: 0, uncommitted: dirty, unmerged: Vec::new() });
                    }
                    Ok(project.git.remove_worktree(&wt.name, &wt.path)?)
                },
            );
        } else {
            attempt(
                &mut findings,
                None,
                format!("git still lists worktree {} whose directory is gone", wt.path.display()),
                "prune git's metadata for it",
                &|| Ok(project.git.remove_worktree(&wt.name, &wt.path)?),
            );
        }
    }

    // Containers, volumes and networks whose thread is gone (found by
    // label, so this works even when the registry was lost).
    if project.config.has_stack() {
        doctor_services(project, fix, &mut findings)?;
    }

    // Two live threads must never share ports.
    for (i, a) in data.threads.iter().enumerate() {
        for b in &data.threads[i + 1..] {
            if a.port_block.start <= b.port_block.end && b.port_block.start <= a.port_block.end {
                findings.push(Finding {
                    thread: Some(b.id),
                    problem: format!("threads {} and {} overlap in ports ({} and {})", a.id, b.id, a.port_block, b.port_block),
                    fix: format!("none automatic: clean up one of them (`iso cleanup {}`)", b.id),
                    fixed: false,
                    error: None,
                });
            }
        }
    }
    Ok(findings)
}

/// Remove what is left of a thread and archive it as removed.
fn finish_cleanup(project: &Project, t: &ThreadRecord) -> Result<(), Error> {
    if project.config.has_stack() {
        Engine::connect()?.teardown(project.root(), Some(t.id), false, stop_timeout(project))?;
    }
    remove_worktree_of(project, t)?;
    project.registry.update(|d| {
        if let Some(mut r) = d.take(t.id) {
            r.status = ThreadStatus::Removed;
            r.owner = None;
            r.record("removed", "by iso doctor --fix");
            d.archive(r);
        }
        Ok::<_, Error>(())
    })
}

// ---- services --------------------------------------------------------------

/// The repository's stack: `[services.*]`, or the services of the compose
/// file named by `[compose]`.
pub fn stack(project: &Project) -> Result<services::Stack, Error> {
    match &project.config.compose {
        Some(c) => Ok(services::compose::import(project.root(), c, &project.config.ports.slots, project.config.ports.block_size)?),
        None => Ok(project.config.services.clone()),
    }
}

/// The Docker resources of `record`'s stack (names, ports, environment).
pub fn stack_plan(project: &Project, record: &ThreadRecord) -> Result<services::Plan, Error> {
    let stack = stack(project)?;
    let export = project.config.compose.as_ref().map(|c| c.export.clone()).unwrap_or_default();
    let repo = repo_name(project.root());
    let values = serde_json::to_value(template_context(project, record)).unwrap_or_default();
    let t = services::ThreadStack {
        repo_root: project.root(),
        repo_name: &repo,
        thread: record.id,
        ports: &record.ports,
        block_start: record.port_block.start,
        workdir: &record.worktree,
        values,
        stack: &stack,
        export: &export,
        settings: &project.config.docker,
    };
    Ok(services::plan(&t)?)
}

fn stop_timeout(project: &Project) -> std::time::Duration {
    std::time::Duration::from_secs(project.config.docker.stop_timeout)
}

/// Whether iso started services for this thread at some point.
fn had_services(record: &ThreadRecord) -> bool {
    record.history.iter().any(|h| h.event == "services up" || (h.event == "created" && h.detail.contains("services ")))
}

/// "postgres healthy · redis health check · api waiting".
pub fn describe_phases(phases: &[(String, services::Phase)]) -> String {
    phases.iter().map(|(n, p)| format!("{n} {}", p.as_str())).collect::<Vec<_>>().join(" · ")
}

/// End this user's processes still listening on the thread's port block,
/// naming each first.
fn kill_listeners(record: &ThreadRecord, progress: &dyn Progress) {
    let uid = crate::listeners::current_uid();
    let me = std::process::id();
    let found = crate::listeners::listening(record.port_block.start..=record.port_block.end);
    for l in found.into_iter().filter(|l| l.uid == uid && l.pid != me && !l.command.contains("docker-proxy")) {
        progress.note(&format!("ending {l}"));
        if !crate::listeners::terminate(&l, std::time::Duration::from_secs(3)) {
            progress.note(&format!("pid {} is still running", l.pid));
        }
    }
}

fn doctor_services(project: &Project, fix: bool, findings: &mut Vec<Finding>) -> Result<(), Error> {
    let engine = match Engine::connect() {
        Ok(e) => e,
        Err(e) => {
            findings.push(Finding {
                thread: None,
                problem: format!("Docker is not reachable, so leftover containers were not looked for ({})", e.to_string().lines().next().unwrap_or("")),
                fix: "none automatic: start Docker and run `iso doctor` again".into(),
                fixed: false,
                error: None,
            });
            return Ok(());
        }
    };
    // Reload: fixes above may have rolled threads back.
    let live: BTreeSet<u32> = project.load()?.threads.iter().map(|t| t.id).collect();
    let mut orphans: BTreeMap<u32, Vec<services::Resource>> = BTreeMap::new();
    for r in engine.resources(project.root())? {
        if let Some(t) = r.thread.filter(|t| !live.contains(t)) {
            orphans.entry(t).or_default().push(r);
        }
    }
    for (thread, res) in orphans {
        let list: Vec<String> = res.iter().map(|r| format!("{} {}", r.kind, r.name)).collect();
        let mut f = Finding {
            thread: Some(thread),
            problem: format!("thread {thread} no longer exists but Docker still has {}", list.join(", ")),
            fix: "remove them".into(),
            fixed: false,
            error: None,
        };
        if fix {
            match engine.teardown(project.root(), Some(thread), false, stop_timeout(project)) {
                Ok(_) => f.fixed = true,
                Err(e) => f.error = Some(e.to_string()),
            }
        }
        findings.push(f);
    }
    Ok(())
}

fn require_stack(project: &Project) -> Result<(), Error> {
    if project.config.has_stack() {
        Ok(())
    } else {
        Err(Error::NoStack)
    }
}

/// `iso up`: create what is missing of the thread's stack and start it,
/// waiting until every service is healthy.
pub fn services_up(project: &Project, selector: &str, progress: &dyn Progress) -> Result<(ThreadRecord, services::Plan, Vec<services::Started>), Error> {
    require_stack(project)?;
    let record = project.find(selector)?;
    let plan = stack_plan(project, &record)?;
    let engine = Engine::connect()?;
    let name = record.name.clone();
    let report = |phases: &[(String, services::Phase)]| progress.step(&format!("{name}: {}", describe_phases(phases)));
    let started = engine.up(&plan, &report)?;
    let record = project.registry.update(|d| {
        let t = d.thread_mut(record.id).ok_or_else(|| Error::NotFound { selector: selector.to_string(), known: String::new() })?;
        t.record("services up", started.iter().map(|s| s.service.as_str()).collect::<Vec<_>>().join(", "));
        Ok::<_, Error>(t.clone())
    })?;
    Ok((record, plan, started))
}

/// `iso down`: stop the thread's containers without removing anything.
pub fn services_down(project: &Project, selector: &str) -> Result<(ThreadRecord, Vec<String>), Error> {
    require_stack(project)?;
    let record = project.find(selector)?;
    let stopped = Engine::connect()?.stop(project.root(), record.id, stop_timeout(project))?;
    Ok((record, stopped))
}

/// One service of a thread as `iso status` shows it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ServiceState {
    pub service: String,
    pub container: String,
    /// running, exited, created, ... or `missing`.
    pub state: String,
    pub status: String,
    /// healthy, unhealthy, or `-` when not running.
    pub health: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health_detail: Option<String>,
    pub ports: Vec<String>,
}

/// Each service's container state, health (checked now) and ports.
pub fn service_states(project: &Project, record: &ThreadRecord) -> Result<Vec<ServiceState>, Error> {
    require_stack(project)?;
    let plan = stack_plan(project, record)?;
    let engine = Engine::connect()?;
    let containers = engine.containers(project.root(), Some(record.id))?;
    let health = engine.health(&plan);
    Ok(plan
        .services
        .iter()
        .map(|s| {
            let c = containers.iter().find(|c| c.name == s.container);
            let running = c.is_some_and(|c| c.running());
            let (health, detail) = match (running, health.get(&s.name)) {
                (false, _) => ("-".to_string(), None),
                (true, Some(Ok(()))) => ("healthy".to_string(), None),
                (true, Some(Err(m))) => ("unhealthy".to_string(), Some(m.clone())),
                (true, None) => ("-".to_string(), None),
            };
            ServiceState {
                service: s.name.clone(),
                container: s.container.clone(),
                state: c.map_or("missing".to_string(), |c| c.state.clone()),
                status: c.map_or(String::new(), |c| c.status.clone()),
                health,
                health_detail: detail,
                ports: c.map_or_else(Vec::new, |c| c.ports.clone()),
            }
        })
        .collect())
}

/// Running and total containers per thread, from one Docker call.
pub fn container_counts(project: &Project) -> Result<BTreeMap<u32, (usize, usize)>, Error> {
    require_stack(project)?;
    let total = stack(project)?.len();
    let mut counts: BTreeMap<u32, (usize, usize)> = BTreeMap::new();
    for c in Engine::connect()?.containers(project.root(), None)? {
        if let Some(t) = c.thread {
            let e = counts.entry(t).or_insert((0, 0));
            e.0 += usize::from(c.running());
            e.1 += 1;
        }
    }
    for e in counts.values_mut() {
        e.1 = e.1.max(total);
    }
    Ok(counts)
}

fn pick_services<'a>(plan: &'a services::Plan, service: Option<&str>) -> Result<Vec<&'a services::PlannedService>, Error> {
    match service {
        None => Ok(plan.services.iter().collect()),
        Some(name) => match plan.services.iter().find(|s| s.name == name) {
            Some(s) => Ok(vec![s]),
            None => {
                let known: Vec<&str> = plan.services.iter().map(|s| s.name.as_str()).collect();
                Err(services::Error::NoSuchService { name: name.to_string(), known: known.join(", ") }.into())
            }
        },
    }
}

/// `iso logs`: print (and with `follow`, keep printing) the logs of the
/// thread's services, or of one.
pub fn logs(project: &Project, selector: &str, service: Option<&str>, follow: bool, tail: Option<usize>, out: &mut dyn std::io::Write) -> Result<(), Error> {
    require_stack(project)?;
    let record = project.find(selector)?;
    let plan = stack_plan(project, &record)?;
    let targets: Vec<(String, String)> = pick_services(&plan, service)?.into_iter().map(|s| (s.name.clone(), s.container.clone())).collect();
    Ok(Engine::connect()?.logs(&targets, follow, tail, out)?)
}

/// `iso exec`: run `cmd` in a service's container; returns its exit code.
pub fn exec(project: &Project, selector: &str, service: &str, cmd: &[String], tty: bool) -> Result<i64, Error> {
    require_stack(project)?;
    let record = project.find(selector)?;
    let plan = stack_plan(project, &record)?;
    let s = pick_services(&plan, Some(service))?[0];
    let engine = Engine::connect()?;
    let running = engine.containers(project.root(), Some(record.id))?.iter().any(|c| c.name == s.container && c.running());
    if !running {
        return Err(services::Error::NoContainer { container: s.container.clone(), thread: record.id }.into());
    }
    Ok(engine.exec(&s.container, cmd, tty)?)
}

/// `iso compose`: write `docker-compose.thread.yml` into the worktree.
/// Returns its path and the compose project name to use with it.
pub fn compose_export(project: &Project, selector: &str) -> Result<(PathBuf, String), Error> {
    require_stack(project)?;
    let record = project.find(selector)?;
    let plan = stack_plan(project, &record)?;
    let header = format!(
        "Written by iso for thread {} ({}): what iso started for it. Regenerate with `iso compose {}`.\nUse with: docker-compose -p {} -f {} logs|ps|exec|stop|start\nVolumes and the network are iso's (external): remove them with `iso cleanup {}`.",
        record.id,
        record.name,
        record.id,
        plan.project,
        services::compose::THREAD_FILE,
        record.id
    );
    let text = services::compose::export(&plan, &header);
    let path = record.worktree.join(services::compose::THREAD_FILE);
    project.git.ensure_excluded(&[services::compose::THREAD_FILE])?;
    std::fs::write(&path, text).map_err(|source| services::Error::Io { action: format!("write {}", path.display()), source })?;
    Ok((path, plan.project))
}
