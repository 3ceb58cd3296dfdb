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

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use thiserror::Error;

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

fn runs_dir(project: &Project, id: u32) -> PathBuf {
    project.git.common_dir().join("iso").join("runs").join(format!("thread-{id}"))
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
    let template = match (&opts.template, &project.config.agent.template) {
        (Some(t), _) => t.clone(),
        (None, Some(path)) => {
            let p = project.root().join(path);
            std::fs::read_to_string(&p).map_err(io(format!("read the prompt template {}", p.display())))?
        }
        (None, None) => DEFAULT_TEMPLATE.to_string(),
    };
    let prompt = render_prompt(&template, &thread, opts.context.as_ref())?;

    let dir = runs_dir(project, thread.id);
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
            return Ok(1);
        }
    };
    let agent = Owner::of(child.id());
    run.pid = Some(agent.pid);
    run.start_ticks = agent.start_ticks;
    write_run(&run)?;

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
    Ok(0)
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
}
