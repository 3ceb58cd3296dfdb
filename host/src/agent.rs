//! Agent runs: the configured agent command (`[agent] command`) started in a
//! thread's worktree with the thread's environment and a rendered prompt.
//!
//! Every run is a small JSON file under `<git common dir>/iso/runs/thread-N/`
//! (`<run>.json`, its output in `<run>.log`, its prompt in `<run>.prompt`).
//! The agent is started by a detached supervisor process
//! (`iso agent-supervise <run file>`) that records the agent's pid and start
//! time, waits for it and records how it ended, so neither the CLI nor the
//! server has to stay alive, and a restarted server still knows every run.
//!
//! States: `running` → `completed` (exit 0) | `failed` (other exit, or the
//! agent could not start) | `stopped` (ended by `iso stop`).
//!
//! The supervisor also appends `agent-started` (once the agent runs) and
//! `agent-stopped` (however it ended) to the event log
//! ([`crate::eventlog`]), so runs started by the CLI, the plugin or a server
//! are all seen by `iso events` and every server's `GET /api/events`.
//!
//! Old runs are pruned: when a run starts, only the newest [`RUNS_KEPT`]
//! finished runs of the thread are kept (running ones always are). When a
//! thread is cleaned up its finished runs move to
//! `runs/removed/<time>-thread-N-<name>/` (a later thread gets the same id
//! and must start with no runs), where the runs of the last
//! [`REMOVED_THREADS_KEPT`] cleaned-up threads stay for reading by hand.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::eventlog;
use crate::lifecycle::{self, Project};
use crate::thread::{Owner, ThreadRecord};

/// The prompt used when neither `--template` nor `[agent] template` is given.
pub const DEFAULT_TEMPLATE: &str = "You are working in thread {{ thread.id }} ({{ thread.name }}) of this repository, \
on branch {{ thread.branch }} in {{ thread.worktree }}.\n\
{% if thread.task %}Your task: {{ thread.task }}\n{% endif %}\
{% if context %}Context (JSON): {{ context_json }}\n{% endif %}";

#[derive(Debug, Error)]
pub enum AgentError {
    #[error(transparent)]
    Lifecycle(Box<lifecycle::Error>),
    #[error("no agent command is configured\n  fix: add [agent] command = [\"claude\", \"-p\", \"{{prompt}}\"] to iso.toml")]
    NoCommand,
    #[error("thread {id} already has a running agent (run {run}, pid {pid})\n  fix: `iso stop {id}` first")]
    AlreadyRunning { id: u32, run: u32, pid: u32 },
    #[error("thread {id} has no agent run{}", if *.running { " in progress" } else { "" })]
    NoRun { id: u32, running: bool },
    #[error("prompt template: {0}")]
    Template(String),
    #[error("{action}: {source}")]
    Io { action: String, source: std::io::Error },
    #[error("run file {}: {message}", path.display())]
    Corrupt { path: PathBuf, message: String },
}

impl From<lifecycle::Error> for AgentError {
    fn from(e: lifecycle::Error) -> AgentError {
        AgentError::Lifecycle(Box::new(e))
    }
}

impl AgentError {
    /// The process exit code (README, "Exit codes").
    pub fn exit_code(&self) -> i32 {
        match self {
            AgentError::Lifecycle(e) => e.exit_code(),
            AgentError::NoCommand | AgentError::Template(_) => 78,
            AgentError::AlreadyRunning { .. } => 5,
            AgentError::NoRun { .. } => 3,
            _ => 1,
        }
    }
}

fn io(action: impl Into<String>) -> impl FnOnce(std::io::Error) -> AgentError {
    let action = action.into();
    move |source| AgentError::Io { action, source }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunState {
    Running,
    Completed,
    Failed,
    Stopped,
}

/// One agent run (the JSON of `GET /api/threads/{id}/runs` and `iso spawn --json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Run {
    /// 1, 2, … per thread.
    pub run: u32,
    pub thread: u32,
    pub state: RunState,
    pub command: Vec<String>,
    pub started: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished: Option<DateTime<Utc>>,
    /// The agent process (also its process group).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_ticks: Option<u64>,
    /// The supervisor waiting for the agent.
    pub supervisor: Owner,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub log: PathBuf,
    pub prompt: PathBuf,
    pub worktree: PathBuf,
}

impl Run {
    fn file(&self) -> PathBuf {
        self.log.with_extension("json")
    }

    fn stop_marker(&self) -> PathBuf {
        self.log.with_extension("stop")
    }
}

/// What to start: the prompt template text (else `[agent] template`, else
/// [`DEFAULT_TEMPLATE`]) and the context handed to it.
#[derive(Debug, Clone, Default)]
pub struct StartOptions {
    pub template: Option<String>,
    pub context: Option<serde_json::Value>,
}

/// How many finished runs of a thread are kept when a new one starts
/// (running runs are always kept).
pub const RUNS_KEPT: usize = 20;
/// How many cleaned-up threads keep their runs under `runs/removed/`.
pub const REMOVED_THREADS_KEPT: usize = 20;

fn runs_dir(project: &Project, id: u32) -> PathBuf {
    project.git.common_dir().join("iso").join("runs").join(format!("thread-{id}"))
}

/// Where the runs of cleaned-up threads are kept.
fn removed_dir(project: &Project) -> PathBuf {
    project.git.common_dir().join("iso").join("runs").join("removed")
}

fn context_path(project: &Project, id: u32) -> PathBuf {
    runs_dir(project, id).join("context.json")
}

/// Keep `context` with thread `id` (given at creation, used by its runs).
pub fn save_context(project: &Project, id: u32, context: &serde_json::Value) -> Result<(), AgentError> {
    let path = context_path(project, id);
    std::fs::create_dir_all(path.parent().expect("has a parent")).map_err(io("create the runs directory"))?;
    std::fs::write(&path, context.to_string()).map_err(io(format!("write {}", path.display())))
}

/// The context kept with thread `id`, if any.
pub fn load_context(project: &Project, id: u32) -> Option<serde_json::Value> {
    std::fs::read_to_string(context_path(project, id)).ok().and_then(|t| serde_json::from_str(&t).ok())
}

/// Render the prompt for `thread` with `context`.
pub fn render_prompt(template: &str, thread: &ThreadRecord, context: Option<&serde_json::Value>) -> Result<String, AgentError> {
    let mut env = minijinja::Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Lenient);
    env.add_template("prompt", template).map_err(|e| AgentError::Template(e.to_string()))?;
    let context_json = context.map(|c| c.to_string()).unwrap_or_default();
    let ctx = serde_json::json!({ "thread": thread, "context": context, "context_json": context_json });
    env.get_template("prompt").and_then(|t| t.render(ctx)).map_err(|e| AgentError::Template(e.to_string()))
}

fn read_run(path: &Path) -> Result<Run, AgentError> {
    let text = std::fs::read_to_string(path).map_err(io(format!("read {}", path.display())))?;
    serde_json::from_str(&text).map_err(|e| AgentError::Corrupt { path: path.to_path_buf(), message: e.to_string() })
}

/// Write atomically (temporary file and rename), so readers never see half a record.
fn write_run(run: &Run) -> Result<(), AgentError> {
    let path = run.file();
    let tmp = path.with_extension(format!("json.tmp{}", std::process::id()));
    let text = serde_json::to_string_pretty(run).expect("a run serialises");
    std::fs::write(&tmp, text).map_err(io(format!("write {}", tmp.display())))?;
    std::fs::rename(&tmp, &path).map_err(io(format!("rename {}", path.display())))
}

/// A run as it is now: a `running` run whose supervisor is gone (killed, or
/// the machine rebooted) reads as failed.
fn refreshed(mut run: Run) -> Run {
    if run.state == RunState::Running && !run.supervisor.is_alive() {
        run.state = RunState::Failed;
        run.error = Some(format!("the supervisor (pid {}) ended without recording an exit", run.supervisor.pid));
    }
    run
}

/// All runs of thread `id`, oldest first.
pub fn runs_of(project: &Project, id: u32) -> Result<Vec<Run>, AgentError> {
    let dir = runs_dir(project, id);
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(AgentError::Io { action: format!("read {}", dir.display()), source: e }),
    };
    let mut runs = Vec::new();
    for entry in entries.flatten() {
        let p = entry.path();
        if p.extension().is_some_and(|e| e == "json") && p.file_stem().is_some_and(|s| s.to_string_lossy().parse::<u32>().is_ok()) {
            runs.push(refreshed(read_run(&p)?));
        }
    }
    runs.sort_by_key(|r| r.run);
    Ok(runs)
}

/// The latest run of the thread named by `selector`.
pub fn latest(project: &Project, selector: &str) -> Result<Run, AgentError> {
    let t = project.find(selector)?;
    runs_of(project, t.id)?.pop().ok_or(AgentError::NoRun { id: t.id, running: false })
}

/// Start the agent in the thread named by `selector`. `iso_exe` is the iso
/// binary that will supervise the run.
pub fn start(project: &Project, selector: &str, opts: &StartOptions, iso_exe: &Path) -> Result<Run, AgentError> {
    let command = project.config.agent.command.clone();
    if command.is_empty() {
        return Err(AgentError::NoCommand);
    }
    let thread = project.find(selector)?;
    let existing = runs_of(project, thread.id)?;
    if let Some(r) = existing.iter().find(|r| r.state == RunState::Running) {
        return Err(AgentError::AlreadyRunning { id: thread.id, run: r.run, pid: r.pid.unwrap_or(r.supervisor.pid) });
    }
    // Pruning is best effort: old run files only take disk space.
    let dir = runs_dir(project, thread.id);
    if existing.iter().any(|r| r.started < thread.created) {
        // Runs of an earlier thread with this id, removed without a
        // post-cleanup (`iso doctor --fix`, an older iso).
        let _ = retire_dir(&dir, &removed_dir(project), &format!("thread-{}", thread.id), Some(thread.created));
    }
    let _ = prune_dir(&dir, RUNS_KEPT);
    let existing = runs_of(project, thread.id)?;
    let template = match (&opts.template, &project.config.agent.template) {
        (Some(t), _) => t.clone(),
        (None, Some(path)) => {
            let p = project.root().join(path);
            std::fs::read_to_string(&p).map_err(io(format!("read the prompt template {}", p.display())))?
        }
        (None, None) => DEFAULT_TEMPLATE.to_string(),
    };
    let prompt = render_prompt(&template, &thread, opts.context.as_ref())?;

    std::fs::create_dir_all(&dir).map_err(io(format!("create {}", dir.display())))?;
    // Claim the next run number with create_new, so two starts never share one.
    let mut n = existing.last().map_or(0, |r| r.run) + 1;
    let log = loop {
        let log = dir.join(format!("{n}.log"));
        match std::fs::OpenOptions::new().write(true).create_new(true).open(&log) {
            Ok(_) => break log,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => n += 1,
            Err(e) => return Err(AgentError::Io { action: format!("create {}", log.display()), source: e }),
        }
    };
    let prompt_path = log.with_extension("prompt");
    std::fs::write(&prompt_path, &prompt).map_err(io(format!("write {}", prompt_path.display())))?;
    let mut run = Run {
        run: n,
        thread: thread.id,
        state: RunState::Running,
        command,
        started: Utc::now(),
        finished: None,
        pid: None,
        start_ticks: None,
        supervisor: Owner::current(),
        exit_code: None,
        error: None,
        log,
        prompt: prompt_path,
        worktree: thread.worktree.clone(),
    };
    write_run(&run)?;

    // The thread's environment, as in .env.thread, plus the prompt.
    let mut env = lifecycle::thread_env(project, &thread)?;
    env.insert("ISO_PROMPT_FILE".into(), run.prompt.display().to_string());
    env.insert("ISO_RUN".into(), n.to_string());
    let env_path = run.log.with_extension("env.json");
    std::fs::write(&env_path, serde_json::to_string(&env).expect("env serialises")).map_err(io(format!("write {}", env_path.display())))?;

    use std::os::unix::process::CommandExt;
    let child = Command::new(iso_exe)
        .arg("agent-supervise")
        .arg(run.file())
        .current_dir(&thread.worktree)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .map_err(io(format!("start the supervisor {}", iso_exe.display())))?;
    run.supervisor = Owner::of(child.id());
    // The supervisor rewrites the file with the agent's pid; wait for it
    // briefly so the answer names the agent process.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let now = read_run(&run.file())?;
        if now.pid.is_some() || now.state != RunState::Running || Instant::now() > deadline {
            run = now;
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // Reap the supervisor in the background when it ends (it is our child).
    let mut child = child;
    std::thread::spawn(move || {
        let _ = child.wait();
    });
    Ok(run)
}

/// The body of `iso agent-supervise RUN_FILE`: start the agent, record its
/// pid, wait, record how it ended. Returns the exit code to exit with.
pub fn supervise(run_file: &Path) -> Result<i32, AgentError> {
    let mut run = read_run(run_file)?;
    run.supervisor = Owner::current();
    let env_path = run.log.with_extension("env.json");
    let env: BTreeMap<String, String> = std::fs::read_to_string(&env_path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    let log = std::fs::OpenOptions::new().append(true).open(&run.log).map_err(io(format!("open {}", run.log.display())))?;
    let log2 = log.try_clone().map_err(io("duplicate the log file"))?;
    let prompt_text = std::fs::read_to_string(&run.prompt).unwrap_or_default();
    let args: Vec<String> = run.command[1..].iter().map(|a| a.replace("{prompt}", &prompt_text)).collect();
    let stdin = std::fs::File::open(&run.prompt).map(Stdio::from).unwrap_or_else(|_| Stdio::null());

    use std::os::unix::process::CommandExt;
    let spawned = Command::new(&run.command[0])
        .args(&args)
        .current_dir(&run.worktree)
        .envs(&env)
        .stdin(stdin)
        .stdout(log)
        .stderr(log2)
        .process_group(0)
        .spawn();
    let name = env.get("ISO_THREAD_NAME").cloned();
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => {
            let msg = format!("cannot start `{}`: {e}", run.command[0]);
            if let Ok(mut f) = std::fs::OpenOptions::new().append(true).open(&run.log) {
                let _ = writeln!(f, "iso: {msg}");
            }
            run.state = RunState::Failed;
            run.error = Some(msg);
            run.finished = Some(Utc::now());
            write_run(&run)?;
            log_event(run_file, &run, "agent-stopped", name);
            return Ok(1);
        }
    };
    let agent = Owner::of(child.id());
    run.pid = Some(agent.pid);
    run.start_ticks = agent.start_ticks;
    write_run(&run)?;
    log_event(run_file, &run, "agent-started", name.clone());

    let status = child.wait().map_err(io("wait for the agent"))?;
    use std::os::unix::process::ExitStatusExt;
    run.finished = Some(Utc::now());
    run.exit_code = status.code().or_else(|| status.signal().map(|s| 128 + s));
    run.state = if run.stop_marker().exists() {
        RunState::Stopped
    } else if status.success() {
        RunState::Completed
    } else {
        RunState::Failed
    };
    if let Some(sig) = status.signal() {
        run.error = Some(format!("ended by signal {sig}"));
    }
    write_run(&run)?;
    log_event(run_file, &run, "agent-stopped", name);
    Ok(0)
}

/// Append `agent-started` / `agent-stopped` for `run` to the event log of
/// the repository the run file is in (`<iso dir>/runs/thread-N/<run>.json`).
/// Logged after the run file is written, so a client that sees the event
/// reads the run as it says. Never fails (see [`eventlog::append_quietly`]).
fn log_event(run_file: &Path, run: &Run, event: &str, name: Option<String>) {
    let Some(iso_dir) = run_file.parent().and_then(Path::parent).and_then(Path::parent) else { return };
    let mut data = serde_json::json!({ "run": run.run, "state": run.state });
    if let Some(pid) = run.pid {
        data["pid"] = pid.into();
    }
    if let Some(code) = run.exit_code {
        data["exit_code"] = code.into();
    }
    if let Some(error) = &run.error {
        data["error"] = error.clone().into();
    }
    let new = eventlog::NewEvent { kind: eventlog::AGENT.into(), event: event.into(), thread: Some(run.thread), name, data };
    eventlog::append_quietly(&eventlog::EventLog::new(iso_dir), new);
}

/// Stop the running agent of the thread named by `selector`: SIGTERM to its
/// process group, SIGKILL after `grace`. Returns the run as it ended.
pub fn stop(project: &Project, selector: &str, grace: Duration) -> Result<Run, AgentError> {
    let t = project.find(selector)?;
    let run = runs_of(project, t.id)?
        .into_iter()
        .rev()
        .find(|r| r.state == RunState::Running)
        .ok_or(AgentError::NoRun { id: t.id, running: true })?;
    std::fs::write(run.stop_marker(), b"").map_err(io("write the stop marker"))?;
    let file = run.file();
    let wait_until_done = |limit: Duration| -> Result<Option<Run>, AgentError> {
        let deadline = Instant::now() + limit;
        loop {
            let now = refreshed(read_run(&file)?);
            if now.state != RunState::Running {
                return Ok(Some(now));
            }
            if Instant::now() > deadline {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    };
    // The supervisor writes the agent pid right after starting it.
    let run = match run.pid {
        Some(_) => run,
        None => {
            std::thread::sleep(Duration::from_millis(200));
            read_run(&run.file())?
        }
    };
    let Some(pid) = run.pid else {
        return Err(AgentError::NoRun { id: t.id, running: true });
    };
    let agent = Owner { pid, start_ticks: run.start_ticks };
    if agent.is_alive() {
        // SAFETY: signals the agent's own process group (it was started as its leader).
        unsafe { libc::kill(-(pid as libc::pid_t), libc::SIGTERM) };
    }
    if let Some(done) = wait_until_done(grace)? {
        return Ok(done);
    }
    if agent.is_alive() {
        // SAFETY: as above.
        unsafe { libc::kill(-(pid as libc::pid_t), libc::SIGKILL) };
    }
    Ok(wait_until_done(Duration::from_secs(5))?.unwrap_or_else(|| refreshed(run.clone())))
}

/// The log of `run` from byte `from` on.
pub fn read_log(run: &Run, from: u64) -> Result<Vec<u8>, AgentError> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(&run.log).map_err(io(format!("open {}", run.log.display())))?;
    f.seek(SeekFrom::Start(from)).map_err(io("seek in the log"))?;
    let mut out = Vec::new();
    f.read_to_end(&mut out).map_err(io("read the log"))?;
    Ok(out)
}

/// Reload `run` from its file.
pub fn reload(run: &Run) -> Result<Run, AgentError> {
    Ok(refreshed(read_run(&run.file())?))
}

// ---- pruning -------------------------------------------------------------

/// The runs recorded in `dir` (unreadable records skipped), by run number.
fn runs_in(dir: &Path) -> std::io::Result<Vec<Run>> {
    let mut runs = Vec::new();
    for entry in std::fs::read_dir(dir)?.flatten() {
        let p = entry.path();
        if p.extension().is_some_and(|e| e == "json") && p.file_stem().is_some_and(|s| s.to_string_lossy().parse::<u32>().is_ok()) {
            if let Ok(run) = read_run(&p) {
                runs.push(refreshed(run));
            }
        }
    }
    runs.sort_by_key(|r| r.run);
    Ok(runs)
}

/// The files of run `n` in `dir`: `<n>.json`, `.log`, `.prompt`, `.env.json`, `.stop`, ….
fn files_of(dir: &Path, n: u32) -> std::io::Result<Vec<PathBuf>> {
    let prefix = format!("{n}.");
    Ok(std::fs::read_dir(dir)?
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .map(|e| e.path())
        .collect())
}

/// Delete the files of all but the newest `keep` finished runs in `dir`;
/// running runs are never touched. Returns the run numbers deleted.
fn prune_dir(dir: &Path, keep: usize) -> std::io::Result<Vec<u32>> {
    let finished: Vec<u32> = match runs_in(dir) {
        Ok(runs) => runs.iter().filter(|r| r.state != RunState::Running).map(|r| r.run).collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let doomed = &finished[..finished.len().saturating_sub(keep)];
    for &n in doomed {
        // The record last, so a run is never left with a record and no log.
        let mut files = files_of(dir, n)?;
        files.sort_by_key(|p| p.extension().is_some_and(|e| e == "json") && p.file_stem().is_some_and(|s| !s.to_string_lossy().contains('.')));
        for f in files {
            std::fs::remove_file(&f)?;
        }
    }
    Ok(doomed.to_vec())
}

/// Move the finished runs in `dir` (with `cutoff`, only those started before
/// it) and the saved context (with `cutoff`, only if older) into a new
/// directory `<removed>/<time>-<label>/`, their records pointing at their
/// new place; then keep only the newest [`REMOVED_THREADS_KEPT`]
/// directories in `removed`. Returns the new directory, if anything moved.
fn retire_dir(dir: &Path, removed: &Path, label: &str, cutoff: Option<DateTime<Utc>>) -> std::io::Result<Option<PathBuf>> {
    let runs: Vec<Run> = match runs_in(dir) {
        Ok(runs) => runs.into_iter().filter(|r| r.state != RunState::Running && cutoff.is_none_or(|c| r.started < c)).collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let context = dir.join("context.json");
    let context_old = match (std::fs::metadata(&context), cutoff) {
        (Err(_), _) => false,
        (Ok(_), None) => true,
        (Ok(m), Some(c)) => m.modified().is_ok_and(|t| DateTime::<Utc>::from(t) < c),
    };
    if runs.is_empty() && !context_old {
        return Ok(None);
    }
    let target = removed.join(format!("{}-{label}", Utc::now().format("%Y%m%dT%H%M%S%.3fZ")));
    std::fs::create_dir_all(&target)?;
    for run in runs {
        let record = run.file();
        for f in files_of(dir, run.run)? {
            if f != record {
                std::fs::rename(&f, target.join(f.file_name().expect("a file")))?;
            }
        }
        let moved = Run { log: target.join(format!("{}.log", run.run)), prompt: target.join(format!("{}.prompt", run.run)), ..run };
        write_run(&moved).map_err(|e| std::io::Error::other(e.to_string()))?;
        std::fs::remove_file(&record)?;
    }
    if context_old {
        std::fs::rename(&context, target.join("context.json"))?;
    }
    // Gone when nothing (no running run) is left in it.
    let _ = std::fs::remove_dir(dir);
    let mut kept: Vec<PathBuf> = std::fs::read_dir(removed)?.flatten().map(|e| e.path()).filter(|p| p.is_dir()).collect();
    kept.sort();
    for old in &kept[..kept.len().saturating_sub(REMOVED_THREADS_KEPT)] {
        std::fs::remove_dir_all(old)?;
    }
    Ok(Some(target))
}

/// After `thread` was cleaned up: move its finished runs and saved context
/// out of `runs/thread-N/` (the next thread with that id starts with none)
/// to `runs/removed/<time>-thread-N-<name>/`, where the last
/// [`REMOVED_THREADS_KEPT`] cleaned-up threads' runs stay. A run still
/// going (its agent could not be stopped) stays where its supervisor
/// writes. Returns the directory the runs went to, if any.
pub fn retire_runs(project: &Project, thread: &ThreadRecord) -> Result<Option<PathBuf>, AgentError> {
    let label = format!("thread-{}-{}", thread.id, thread.name);
    retire_dir(&runs_dir(project, thread.id), &removed_dir(project), &label, None).map_err(io(format!("retire the runs of thread {}", thread.id)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompt_renders_thread_and_context() {
        let now = Utc::now();
        let t = ThreadRecord {
            id: 4,
            name: "auth".into(),
            branch: "thread-4-auth".into(),
            base: "main".into(),
            status: crate::ThreadStatus::Active,
            worktree: "/tmp/wt".into(),
            ports: Default::default(),
            port_block: crate::thread::PortRange { start: 1, end: 2 },
            env_file: "/tmp/wt/.env.thread".into(),
            task: Some("add login".into()),
            pr: None,
            created: now,
            updated: now,
            created_branch: true,
            error: None,
            owner: None,
            steps: vec![],
            history: vec![],
        };
        let ctx = serde_json::json!({"ticket": "ISO-7"});
        let p = render_prompt(DEFAULT_TEMPLATE, &t, Some(&ctx)).unwrap();
        assert!(p.contains("thread 4 (auth)") && p.contains("Your task: add login") && p.contains("ISO-7"), "{p}");
        let p = render_prompt("{{ thread.name }}/{{ context.ticket }}", &t, Some(&ctx)).unwrap();
        assert_eq!(p, "auth/ISO-7");
        assert!(matches!(render_prompt("{% if %}", &t, None), Err(AgentError::Template(_))));
    }

    /// A recorded run `n` in `dir` with its log and prompt; `running` ones
    /// are supervised by this (live) test process.
    fn fake_run(dir: &Path, n: u32, state: RunState, started: DateTime<Utc>) -> Run {
        let log = dir.join(format!("{n}.log"));
        std::fs::write(&log, format!("output of run {n}\n")).unwrap();
        std::fs::write(log.with_extension("prompt"), "prompt").unwrap();
        std::fs::write(log.with_extension("env.json"), "{}").unwrap();
        let run = Run {
            run: n,
            thread: 1,
            state,
            command: vec!["agent".into()],
            started,
            finished: (state != RunState::Running).then_some(started),
            pid: None,
            start_ticks: None,
            supervisor: Owner::current(),
            exit_code: None,
            error: None,
            prompt: log.with_extension("prompt"),
            log,
            worktree: "/tmp/wt".into(),
        };
        write_run(&run).unwrap();
        run
    }

    fn names_in(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
        v.sort();
        v
    }

    #[test]
    fn pruning_keeps_the_newest_finished_runs_and_every_running_one() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("thread-1");
        std::fs::create_dir_all(&dir).unwrap();
        let now = Utc::now();
        for n in 1..=12 {
            let state = match n {
                2 | 7 => RunState::Running,
                n if n % 3 == 0 => RunState::Failed,
                _ => RunState::Completed,
            };
            fake_run(&dir, n, state, now);
        }
        std::fs::write(dir.join("context.json"), "{}").unwrap();
        // 10 finished runs (1 3 4 5 6 8 9 10 11 12); keep the newest 4.
        let deleted = prune_dir(&dir, 4).unwrap();
        assert_eq!(deleted, [1, 3, 4, 5, 6, 8]);
        let left: Vec<u32> = runs_in(&dir).unwrap().iter().map(|r| r.run).collect();
        assert_eq!(left, [2, 7, 9, 10, 11, 12], "running 2 and 7 stay, however old");
        let files = names_in(&dir);
        assert!(files.iter().all(|f| !f.starts_with("1.") && !f.starts_with("3.") && !f.starts_with("8.")), "every file of a pruned run goes: {files:?}");
        assert!(files.contains(&"10.log".to_string()) && files.contains(&"12.prompt".to_string()) && files.contains(&"context.json".to_string()), "{files:?}");
        assert!(prune_dir(&dir, 4).unwrap().is_empty(), "nothing more to prune");
        assert!(prune_dir(&tmp.path().join("nowhere"), 4).unwrap().is_empty());
    }

    #[test]
    fn retiring_moves_finished_runs_of_a_removed_thread_and_keeps_a_bounded_archive() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("runs/thread-1");
        let removed = tmp.path().join("runs/removed");
        std::fs::create_dir_all(&dir).unwrap();
        let old = Utc::now() - chrono::Duration::hours(1);
        fake_run(&dir, 1, RunState::Completed, old);
        fake_run(&dir, 2, RunState::Failed, old);
        fake_run(&dir, 3, RunState::Running, old);
        std::fs::write(dir.join("context.json"), r#"{"ticket":"T-1"}"#).unwrap();

        let target = retire_dir(&dir, &removed, "thread-1-auth", None).unwrap().expect("runs moved");
        assert!(target.file_name().unwrap().to_string_lossy().ends_with("-thread-1-auth"));
        // The finished runs and the context moved; the running one stayed.
        assert_eq!(names_in(&dir), ["3.env.json", "3.json", "3.log", "3.prompt"]);
        let moved = runs_in(&target).unwrap();
        assert_eq!(moved.iter().map(|r| r.run).collect::<Vec<_>>(), [1, 2]);
        // The moved records point at their logs' new place.
        assert_eq!(read_log(&moved[0], 0).unwrap(), b"output of run 1\n");
        assert_eq!(moved[1].prompt, target.join("2.prompt"));
        assert!(target.join("context.json").is_file());
        assert_eq!(retire_dir(&dir, &removed, "again", None).unwrap(), None, "nothing finished is left");

        // With a cutoff (a new thread with the same id), only what is older goes.
        let newer = fake_run(&dir, 4, RunState::Completed, Utc::now());
        fake_run(&dir, 5, RunState::Completed, old);
        std::fs::write(dir.join("context.json"), "{}").unwrap();
        retire_dir(&dir, &removed, "thread-1", Some(newer.started - chrono::Duration::seconds(1))).unwrap().expect("run 5 moved");
        let left: Vec<u32> = runs_in(&dir).unwrap().iter().map(|r| r.run).collect();
        assert_eq!(left, [3, 4]);
        assert!(dir.join("context.json").exists(), "a context saved after the cutoff belongs to the new thread");

        // Only the newest REMOVED_THREADS_KEPT archives are kept.
        for i in 0..REMOVED_THREADS_KEPT + 3 {
            let d = tmp.path().join(format!("runs/thread-{}", 10 + i));
            std::fs::create_dir_all(&d).unwrap();
            fake_run(&d, 1, RunState::Completed, old);
            retire_dir(&d, &removed, &format!("thread-{}", 10 + i), None).unwrap().unwrap();
            assert!(!d.exists(), "an emptied thread directory is removed");
        }
        let archives = names_in(&removed);
        assert_eq!(archives.len(), REMOVED_THREADS_KEPT);
        assert!(archives.last().unwrap().ends_with(&format!("thread-{}", 10 + REMOVED_THREADS_KEPT + 2)), "{archives:?}");
        assert!(!archives.iter().any(|a| a.ends_with("thread-1-auth")), "the oldest went first: {archives:?}");
    }
}
