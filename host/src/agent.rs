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
//! The supervisor also reports `agent-started` (once the agent runs) and
//! `agent-stopped` (however it ended) to a callback its caller gives
//! ([`supervise`]; the lifecycle appends them to the event log), so runs
//! started by the CLI, the plugin or a server are all seen by `iso events`
//! and every server's `GET /api/events`.
//!
//! This module knows nothing of the registry, the configuration or the
//! lifecycle: it is handed the thread record, the command, the prompt and
//! the environment of a run ([`Runs::start`]).
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

use crate::error::{Diagnostic, ErrorKind};
use crate::thread::{Owner, ThreadRecord};

/// The prompt used when neither `--template` nor `[agent] template` is given.
pub const DEFAULT_TEMPLATE: &str = "You are working in thread {{ thread.id }} ({{ thread.name }}) of this repository, \
on branch {{ thread.branch }} in {{ thread.worktree }}.\n\
{% if thread.task %}Your task: {{ thread.task }}\n{% endif %}\
{% if context %}Context (JSON): {{ context_json }}\n{% endif %}";

#[derive(Debug, Error)]
pub enum AgentError {
    #[error("no agent command is configured")]
    NoCommand,
    #[error("thread {id} already has a running agent (run {run}, pid {pid})")]
    AlreadyRunning { id: u32, run: u32, pid: u32 },
    #[error("thread {id} has no agent run{}", if *.running { " in progress" } else { "" })]
    NoRun { id: u32, running: bool },
    #[error("thread {id}'s agent runs headless, not in a tmux session")]
    NotInteractive { id: u32 },
    #[error("prompt template: {0}")]
    Template(String),
    #[error("{action}: {source}")]
    Io { action: String, source: std::io::Error },
    #[error("run file {}: {message}", path.display())]
    Corrupt { path: PathBuf, message: String },
}

impl Diagnostic for AgentError {
    fn kind(&self) -> ErrorKind {
        match self {
            AgentError::NoCommand => ErrorKind::Config,
            AgentError::AlreadyRunning { .. } => ErrorKind::Busy,
            AgentError::NoRun { .. } | AgentError::NotInteractive { .. } => ErrorKind::NotFound,
            AgentError::Template(_) => ErrorKind::Invalid,
            AgentError::Io { .. } | AgentError::Corrupt { .. } => ErrorKind::Internal,
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            AgentError::NoCommand => Some("add [agent] command = [\"claude\", \"-p\", \"{prompt}\"] to iso.toml".into()),
            AgentError::AlreadyRunning { id, .. } => Some(format!("`iso stop {id}` first")),
            AgentError::NotInteractive { id } => {
                Some(format!("follow its output with `iso run-logs {id} -f`; `iso spawn --mode interactive` starts one you can attach to"))
            }
            AgentError::Template(_) => Some("check the prompt template: it is minijinja, with thread.* and context.*".into()),
            _ => None,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            AgentError::NoCommand => "no_agent",
            AgentError::AlreadyRunning { .. } => "already_running",
            AgentError::NoRun { .. } => "no_run",
            AgentError::NotInteractive { .. } => "not_interactive",
            AgentError::Template(_) => "template",
            AgentError::Io { .. } | AgentError::Corrupt { .. } => "internal",
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

/// How an agent runs: headless with its output in the log (`automatic`),
/// or in a tmux session of its own that a human can attach to
/// (`interactive`; its output still goes to the log through `pipe-pane`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Automatic,
    Interactive,
    /// In a tmux session like `interactive`, with the agent's own
    /// permission mode from `[agent] modes.semi`: it works alone and asks a
    /// human (who attaches) only for what that mode does not allow.
    Semi,
}

impl Mode {
    pub fn is_automatic(&self) -> bool {
        *self == Mode::Automatic
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Automatic => "automatic",
            Mode::Interactive => "interactive",
            Mode::Semi => "semi",
        }
    }

    /// Whether the run lives in a tmux session.
    pub fn in_tmux(self) -> bool {
        self != Mode::Automatic
    }
}

/// The tmux session of an interactive run: a private server (`tmux -S
/// socket`, never the user's own) and the session's name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TmuxSession {
    pub socket: PathBuf,
    pub session: String,
}

impl TmuxSession {
    /// `tmux -S <socket> <args>`.
    pub fn command(&self) -> Command {
        let mut c = Command::new("tmux");
        c.arg("-S").arg(&self.socket);
        c
    }
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
    #[serde(default, skip_serializing_if = "Mode::is_automatic")]
    pub mode: Mode,
    /// Where an interactive run's session is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tmux: Option<TmuxSession>,
}

impl Run {
    fn file(&self) -> PathBuf {
        self.log.with_extension("json")
    }

    fn stop_marker(&self) -> PathBuf {
        self.log.with_extension("stop")
    }
}

/// How many finished runs of a thread are kept when a new one starts
/// (running runs are always kept).
pub const RUNS_KEPT: usize = 20;
/// How many cleaned-up threads keep their runs under `runs/removed/`.
pub const REMOVED_THREADS_KEPT: usize = 20;

/// What to start in a thread: everything the caller resolved.
#[derive(Debug, Clone)]
pub struct StartSpec<'a> {
    pub thread: &'a ThreadRecord,
    /// The program and its arguments; `{prompt}` in an argument is replaced
    /// by the prompt.
    pub command: Vec<String>,
    /// The rendered prompt (also the agent's stdin and `ISO_PROMPT_FILE`).
    pub prompt: String,
    /// The agent's whole environment (nothing else is inherited).
    pub env: BTreeMap<String, String>,
    /// The iso binary that supervises the run (`iso agent-supervise`).
    pub iso_exe: &'a Path,
    pub mode: Mode,
    /// For an interactive run: its tmux server and session.
    pub tmux: Option<TmuxSession>,
}

/// The agent runs of one repository, kept under `<iso dir>/runs/`.
#[derive(Debug, Clone)]
pub struct Runs {
    dir: PathBuf,
}

impl Runs {
    /// The runs kept in `<iso_dir>/runs/`.
    pub fn new(iso_dir: &Path) -> Runs {
        Runs { dir: iso_dir.join("runs") }
    }

    fn thread_dir(&self, id: u32) -> PathBuf {
        self.dir.join(format!("thread-{id}"))
    }

    /// Where the runs of cleaned-up threads are kept.
    fn removed_dir(&self) -> PathBuf {
        self.dir.join("removed")
    }

    fn context_path(&self, id: u32) -> PathBuf {
        self.thread_dir(id).join("context.json")
    }

    /// Keep `context` with thread `id` (given at creation, used by its runs).
    pub fn save_context(&self, id: u32, context: &serde_json::Value) -> Result<(), AgentError> {
        let path = self.context_path(id);
        std::fs::create_dir_all(path.parent().expect("has a parent")).map_err(io("create the runs directory"))?;
        std::fs::write(&path, context.to_string()).map_err(io(format!("write {}", path.display())))
    }

    /// The context kept with thread `id`, if any.
    pub fn load_context(&self, id: u32) -> Option<serde_json::Value> {
        std::fs::read_to_string(self.context_path(id)).ok().and_then(|t| serde_json::from_str(&t).ok())
    }

    /// All runs of thread `id`, oldest first.
    pub fn of(&self, id: u32) -> Result<Vec<Run>, AgentError> {
        let dir = self.thread_dir(id);
        match runs_in(&dir) {
            Ok(runs) => Ok(runs),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(AgentError::Io { action: format!("read {}", dir.display()), source: e }),
        }
    }

    /// The running run of thread `id`, if there is one.
    pub fn running(&self, id: u32) -> Result<Option<Run>, AgentError> {
        Ok(self.of(id)?.into_iter().rev().find(|r| r.state == RunState::Running))
    }

    /// Start `spec.command` in the thread's worktree under a detached
    /// supervisor; returns once the supervisor has recorded the agent's pid
    /// (or after 5 s).
    pub fn start(&self, spec: &StartSpec<'_>) -> Result<Run, AgentError> {
        let thread = spec.thread;
        if spec.command.is_empty() {
            return Err(AgentError::NoCommand);
        }
        let existing = self.of(thread.id)?;
        if let Some(r) = existing.iter().find(|r| r.state == RunState::Running) {
            return Err(AgentError::AlreadyRunning { id: thread.id, run: r.run, pid: r.pid.unwrap_or(r.supervisor.pid) });
        }
        // Pruning is best effort: old run files only take disk space.
        let dir = self.thread_dir(thread.id);
        if existing.iter().any(|r| r.started < thread.created) {
            // Runs of an earlier thread with this id, removed without a
            // post-cleanup (`iso doctor --fix`, an older iso).
            let _ = retire_dir(&dir, &self.removed_dir(), &format!("thread-{}", thread.id), Some(thread.created));
        }
        let _ = prune_dir(&dir, RUNS_KEPT);
        let existing = self.of(thread.id)?;

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
        std::fs::write(&prompt_path, &spec.prompt).map_err(io(format!("write {}", prompt_path.display())))?;
        let mut run = Run {
            run: n,
            thread: thread.id,
            state: RunState::Running,
            command: spec.command.clone(),
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
            mode: spec.mode,
            tmux: spec.tmux.clone(),
        };
        write_run(&run)?;

        let mut env = spec.env.clone();
        env.insert("ISO_PROMPT_FILE".into(), run.prompt.display().to_string());
        env.insert("ISO_RUN".into(), n.to_string());
        let env_path = run.log.with_extension("env.json");
        write_private(&env_path, serde_json::to_string(&env).expect("env serialises").as_bytes()).map_err(io(format!("write {}", env_path.display())))?;

        use std::os::unix::process::CommandExt;
        let child = Command::new(spec.iso_exe)
            .arg("agent-supervise")
            .arg(run.file())
            .current_dir(&thread.worktree)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .map_err(io(format!("start the supervisor {}", spec.iso_exe.display())))?;
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

    /// Stop the running agent of thread `id`: SIGTERM to its process group,
    /// SIGKILL after `grace`. Returns the run as it ended.
    pub fn stop(&self, id: u32, grace: Duration) -> Result<Run, AgentError> {
        let run = self.running(id)?.ok_or(AgentError::NoRun { id, running: true })?;
        stop_run(run, id, grace)
    }

    /// After `thread` was cleaned up: move its finished runs and saved
    /// context out of `runs/thread-N/` (the next thread with that id starts
    /// with none) to `runs/removed/<time>-thread-N-<name>/`, where the last
    /// [`REMOVED_THREADS_KEPT`] cleaned-up threads' runs stay. A run still
    /// going (its agent could not be stopped) stays where its supervisor
    /// writes. Returns the directory the runs went to, if any.
    pub fn retire(&self, thread: &ThreadRecord) -> Result<Option<PathBuf>, AgentError> {
        let label = format!("thread-{}-{}", thread.id, thread.name);
        retire_dir(&self.thread_dir(thread.id), &self.removed_dir(), &label, None).map_err(io(format!("retire the runs of thread {}", thread.id)))
    }
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

/// Write a file only its owner can read (it may hold secrets from the
/// agent's environment).
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    f.write_all(bytes)
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

/// What a supervisor reports as the run goes: `agent-started` once the agent
/// runs, `agent-stopped` however it ended (each after the run file says so).
#[derive(Debug, Clone, PartialEq)]
pub struct RunEvent<'a> {
    /// `agent-started` or `agent-stopped`.
    pub event: &'static str,
    pub run: &'a Run,
    /// The thread's name (from the run's environment).
    pub name: Option<String>,
}

impl RunEvent<'_> {
    /// The event's data as logged: run, state, pid, exit code, error.
    pub fn data(&self) -> serde_json::Value {
        let run = self.run;
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
        data
    }
}

/// The body of `iso agent-supervise RUN_FILE`: start the agent, record its
/// pid, wait, record how it ended, telling `report` at the start and the
/// end. Returns the exit code to exit with.
pub fn supervise(run_file: &Path, report: &dyn Fn(&RunEvent<'_>)) -> Result<i32, AgentError> {
    let mut run = read_run(run_file)?;
    run.supervisor = Owner::current();
    if let (true, Some(tmux)) = (run.mode.in_tmux(), run.tmux.clone()) {
        return supervise_tmux(run, &tmux, report);
    }
    let env_path = run.log.with_extension("env.json");
    let env: BTreeMap<String, String> = std::fs::read_to_string(&env_path).ok().and_then(|t| serde_json::from_str(&t).ok()).unwrap_or_default();
    let log = std::fs::OpenOptions::new().append(true).open(&run.log).map_err(io(format!("open {}", run.log.display())))?;
    let log2 = log.try_clone().map_err(io("duplicate the log file"))?;
    let prompt_text = std::fs::read_to_string(&run.prompt).unwrap_or_default();
    let args: Vec<String> = run.command[1..].iter().map(|a| a.replace("{prompt}", &prompt_text)).collect();
    let stdin = std::fs::File::open(&run.prompt).map(Stdio::from).unwrap_or_else(|_| Stdio::null());

    use std::os::unix::process::CommandExt;
    let spawned = Command::new(&run.command[0])
        .args(&args)
        .current_dir(&run.worktree)
        .env_clear()
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
            report(&RunEvent { event: "agent-stopped", run: &run, name });
            return Ok(1);
        }
    };
    let agent = Owner::of(child.id());
    run.pid = Some(agent.pid);
    run.start_ticks = agent.start_ticks;
    write_run(&run)?;
    report(&RunEvent { event: "agent-started", run: &run, name: name.clone() });

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
    report(&RunEvent { event: "agent-stopped", run: &run, name });
    Ok(0)
}

/// The arguments of the agent command, `{prompt}` replaced.
fn agent_args(run: &Run) -> Vec<String> {
    let prompt_text = std::fs::read_to_string(&run.prompt).unwrap_or_default();
    run.command[1..].iter().map(|a| a.replace("{prompt}", &prompt_text)).collect()
}

/// `tmux` output of `args`, `None` when tmux fails (no such session).
fn tmux_out(tmux: &TmuxSession, args: &[&str]) -> Option<String> {
    let out = tmux.command().args(args).stdin(Stdio::null()).stderr(Stdio::null()).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// An interactive run: the pane's process is `iso agent-exec RUN_FILE`,
/// which execs the agent with the run's environment (kept in a file only
/// the user can read, never on a command line), so the pane's pid is the
/// agent's. The pane stays after the agent exits (`remain-on-exit`) until
/// its exit status is read; then the session is killed.
fn supervise_tmux(mut run: Run, tmux: &TmuxSession, report: &dyn Fn(&RunEvent<'_>)) -> Result<i32, AgentError> {
    let env_path = run.log.with_extension("env.json");
    let env: BTreeMap<String, String> = std::fs::read_to_string(&env_path).ok().and_then(|t| serde_json::from_str(&t).ok()).unwrap_or_default();
    let name = env.get("ISO_THREAD_NAME").cloned();
    let iso = std::env::current_exe().map_err(io("find the iso binary"))?;
    let quoted_log = format!("'{}'", run.log.display().to_string().replace('\'', "'\\''"));
    let started = Command::new("tmux")
        .arg("-S")
        .arg(&tmux.socket)
        .args(["new-session", "-d", "-x", "200", "-y", "50", "-s", &tmux.session, "-c"])
        .arg(&run.worktree)
        .arg(&iso)
        .arg("agent-exec")
        .arg(run.file())
        .args([";", "set-option", "-t", &tmux.session, "remain-on-exit", "on", ";", "pipe-pane", "-t", &tmux.session, "-o"])
        .arg(format!("cat >> {quoted_log}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .output();
    let pid = match started {
        Ok(o) if o.status.success() => tmux_out(tmux, &["display-message", "-p", "-t", &tmux.session, "#{pane_pid}"]).and_then(|p| p.parse::<u32>().ok()),
        Ok(o) => {
            run.error = Some(format!("tmux new-session failed: {}", String::from_utf8_lossy(&o.stderr).trim()));
            None
        }
        Err(e) => {
            run.error = Some(format!("cannot start tmux: {e}"));
            None
        }
    };
    let Some(pid) = pid else {
        run.state = RunState::Failed;
        run.error.get_or_insert_with(|| "the tmux session ended before its pane could be read".into());
        run.finished = Some(Utc::now());
        if let Ok(mut f) = std::fs::OpenOptions::new().append(true).open(&run.log) {
            let _ = writeln!(f, "iso: {}", run.error.as_deref().unwrap_or(""));
        }
        write_run(&run)?;
        report(&RunEvent { event: "agent-stopped", run: &run, name });
        return Ok(1);
    };
    let agent = Owner::of(pid);
    run.pid = Some(pid);
    run.start_ticks = agent.start_ticks;
    write_run(&run)?;
    report(&RunEvent { event: "agent-started", run: &run, name: name.clone() });
    let status = loop {
        match tmux_out(tmux, &["display-message", "-p", "-t", &tmux.session, "#{pane_dead} #{pane_dead_status}"]) {
            // The session is gone (killed by hand): no exit status.
            None => break None,
            Some(s) if s.starts_with('1') => break s.split_whitespace().nth(1).and_then(|c| c.parse::<i32>().ok()),
            Some(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    };
    let _ = tmux.command().args(["kill-session", "-t", &tmux.session]).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).status();
    run.finished = Some(Utc::now());
    run.exit_code = status;
    run.state = if run.stop_marker().exists() {
        RunState::Stopped
    } else if status == Some(0) {
        RunState::Completed
    } else {
        RunState::Failed
    };
    if status.is_none() {
        run.error = Some("the tmux session ended without an exit status".into());
    }
    write_run(&run)?;
    report(&RunEvent { event: "agent-stopped", run: &run, name });
    Ok(0)
}

/// The body of `iso agent-exec RUN_FILE`, the process of an interactive
/// run's tmux pane: become the agent (exec), in the worktree, with exactly
/// the run's environment. Returns only if the exec failed.
pub fn agent_exec(run_file: &Path) -> AgentError {
    let run = match read_run(run_file) {
        Ok(r) => r,
        Err(e) => return e,
    };
    let env_path = run.log.with_extension("env.json");
    let env: BTreeMap<String, String> = std::fs::read_to_string(&env_path).ok().and_then(|t| serde_json::from_str(&t).ok()).unwrap_or_default();
    use std::os::unix::process::CommandExt;
    // tmux gives the pane its own TERM; keep it over the caller's.
    let term = std::env::var("TERM").ok();
    let mut cmd = Command::new(&run.command[0]);
    cmd.args(agent_args(&run)).current_dir(&run.worktree).env_clear().envs(&env);
    if let Some(t) = term {
        cmd.env("TERM", t);
    }
    let e = cmd.exec();
    AgentError::Io { action: format!("start `{}`", run.command[0]), source: e }
}

/// SIGTERM to the process group of `run`'s agent, SIGKILL after `grace`.
fn stop_run(run: Run, id: u32, grace: Duration) -> Result<Run, AgentError> {
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
        return Err(AgentError::NoRun { id, running: true });
    };
    let agent = Owner { pid, start_ticks: run.start_ticks, op: None };
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
    Ok(std::fs::read_dir(dir)?.flatten().filter(|e| e.file_name().to_string_lossy().starts_with(&prefix)).map(|e| e.path()).collect())
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
            links: Default::default(),
            agent: None,
            last_activity: None,
            repos: Default::default(),
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
            mode: Mode::Automatic,
            tmux: None,
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
