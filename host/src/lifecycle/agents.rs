//! Agent runs: `iso spawn` (a new thread with the agent started in it),
//! starting and stopping a thread's agent, its runs and their logs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::env::thread_env;
use super::init::{init, InitOptions};
use super::{find, Error};
use crate::agent::{self, AgentError, Run, RunEvent, RunState, Runs, StartSpec, DEFAULT_TEMPLATE};
use crate::eventlog::{self, EventLog, NewEvent, AGENT};
use crate::progress::Progress;
use crate::project::Project;
use crate::registry::RegistryData;
use crate::thread::{ThreadRecord, ThreadStatus};

/// How long `stop` waits after SIGTERM before SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(5);

/// What to start an agent with.
#[derive(Debug, Clone, Default)]
pub struct StartOptions {
    /// Prompt template text (minijinja); else `[agent] template`, else
    /// [`DEFAULT_TEMPLATE`].
    pub template: Option<String>,
    /// Handed to the template as `context`; else what was kept with the
    /// thread when it was created.
    pub context: Option<serde_json::Value>,
    /// The iso binary that supervises the run.
    pub iso_exe: PathBuf,
}

/// `iso spawn`: a new thread, and the agent started in it.
#[derive(Debug, Clone, Default)]
pub struct SpawnRequest {
    pub name: String,
    pub init: InitOptions,
    pub start: StartOptions,
}

fn runs(project: &Project) -> Runs {
    Runs::new(&project.iso_dir())
}

/// Create the thread and start the configured agent in it.
pub fn spawn(project: &Project, req: &SpawnRequest, progress: &dyn Progress) -> Result<(ThreadRecord, Run), Error> {
    if project.config.agent.command.is_empty() {
        return Err(AgentError::NoCommand.into());
    }
    let init_opts = InitOptions { context: req.init.context.clone().or_else(|| req.start.context.clone()), ..req.init.clone() };
    let thread = init(project, &req.name, &init_opts, progress)?;
    let run = start_in(project, &thread, &req.start)?;
    Ok((thread, run))
}

/// Start the configured agent in the thread named by `selector`.
pub fn start(project: &Project, selector: &str, opts: &StartOptions) -> Result<Run, Error> {
    let thread = find(project, selector)?;
    start_in(project, &thread, opts)
}

/// Variables of iso's own environment every agent gets: what a program
/// needs to run as the user (names, or prefixes ending in `*`). Anything
/// else only through `[agent] env`.
pub const AGENT_ENV_ALLOWED: &[&str] = &["HOME", "PATH", "USER", "LOGNAME", "SHELL", "LANG", "LC_*", "TERM", "TMPDIR", "SSH_AUTH_SOCK"];

/// Never handed to an agent, whatever `[agent] env` says: the key to the
/// API that drives every thread.
pub const AGENT_ENV_NEVER: &[&str] = &["ISO_API_TOKEN"];

fn env_matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => name == pattern,
    }
}

/// An agent's whole environment: the variables of `caller` (iso's own
/// environment) that [`AGENT_ENV_ALLOWED`] or the `extra` patterns
/// (`[agent] env`) name, never [`AGENT_ENV_NEVER`], then the thread's
/// variables over them.
pub fn agent_env(caller: impl IntoIterator<Item = (String, String)>, extra: &[String], thread: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let wanted =
        |name: &str| !AGENT_ENV_NEVER.contains(&name) && (AGENT_ENV_ALLOWED.iter().any(|p| env_matches(p, name)) || extra.iter().any(|p| env_matches(p, name)));
    let mut env: BTreeMap<String, String> = caller.into_iter().filter(|(k, _)| wanted(k)).collect();
    env.extend(thread.iter().filter(|(k, _)| !AGENT_ENV_NEVER.contains(&k.as_str())).map(|(k, v)| (k.clone(), v.clone())));
    env
}

fn start_in(project: &Project, thread: &ThreadRecord, opts: &StartOptions) -> Result<Run, Error> {
    let command = project.config.agent.command.clone();
    if command.is_empty() {
        return Err(AgentError::NoCommand.into());
    }
    let runs = runs(project);
    let template = match (&opts.template, &project.config.agent.template) {
        (Some(t), _) => t.clone(),
        (None, Some(path)) => {
            let p = project.root().join(path);
            std::fs::read_to_string(&p).map_err(|source| Error::Io { action: format!("read the prompt template {}", p.display()), source })?
        }
        (None, None) => DEFAULT_TEMPLATE.to_string(),
    };
    let context = opts.context.clone().or_else(|| runs.load_context(thread.id));
    let prompt = agent::render_prompt(&template, thread, context.as_ref())?;
    let env = agent_env(
        std::env::vars_os().filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?))),
        &project.config.agent.env,
        &thread_env(project, thread)?,
    );
    // Checked and started under the registry lock, so a cleanup that marks
    // the thread `cleaning` either comes first (and this start is refused)
    // or after (and stops the agent it finds).
    project.registry().update(|d| {
        let t = d.thread_mut(thread.id).ok_or_else(|| Error::NotFound { selector: thread.id.to_string(), known: String::new() })?;
        if !matches!(t.status, ThreadStatus::Active | ThreadStatus::Merged | ThreadStatus::Abandoned) {
            return Err(Error::NotLive { id: t.id, status: t.status, what: "starting an agent" });
        }
        Ok(runs.start(&StartSpec { thread, command: command.clone(), prompt: prompt.clone(), env: env.clone(), iso_exe: &opts.iso_exe })?)
    })
}

/// Stop the running agent of the thread named by `selector` (SIGTERM to
/// its process group, SIGKILL after [`STOP_GRACE`]).
pub fn stop(project: &Project, selector: &str) -> Result<Run, Error> {
    let t = find(project, selector)?;
    Ok(runs(project).stop(t.id, STOP_GRACE)?)
}

/// Every run of the thread named by `selector`, oldest first.
pub fn runs_of(project: &Project, selector: &str) -> Result<(ThreadRecord, Vec<Run>), Error> {
    let t = find(project, selector)?;
    let all = runs(project).of(t.id)?;
    Ok((t, all))
}

/// Run `which` of the thread (the latest when `None`).
pub fn run(project: &Project, selector: &str, which: Option<u32>) -> Result<Run, Error> {
    let (t, all) = runs_of(project, selector)?;
    let found = match which {
        Some(n) => all.into_iter().find(|r| r.run == n),
        None => all.into_iter().last(),
    };
    Ok(found.ok_or(AgentError::NoRun { id: t.id, running: false })?)
}

/// How many agents are running among `data`'s threads.
pub fn running_count(project: &Project, data: &RegistryData) -> usize {
    let runs = runs(project);
    data.threads.iter().map(|t| runs.of(t.id).map(|r| r.iter().filter(|r| r.state == RunState::Running).count()).unwrap_or(0)).sum()
}

/// The log of `run` from byte `from` on.
pub fn read_log(run: &Run, from: u64) -> Result<Vec<u8>, Error> {
    Ok(agent::read_log(run, from)?)
}

/// `run` as its file says now.
pub fn reload(run: &Run) -> Result<Run, Error> {
    Ok(agent::reload(run)?)
}

/// The body of `iso agent-supervise RUN_FILE`: run the agent and log
/// `agent-started` / `agent-stopped` to the event log of the repository the
/// run file is in (`<iso dir>/runs/thread-N/<run>.json`).
pub fn supervise(run_file: &Path) -> Result<i32, Error> {
    let iso_dir = run_file.parent().and_then(Path::parent).and_then(Path::parent).map(Path::to_path_buf);
    let log = iso_dir.map(EventLog::new);
    let report = |e: &RunEvent<'_>| {
        if let Some(log) = &log {
            let new = NewEvent { kind: AGENT.into(), event: e.event.into(), thread: Some(e.run.thread), name: e.name.clone(), data: e.data() };
            eventlog::append_quietly(log, new);
        }
    };
    Ok(agent::supervise(run_file, &report)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agents_get_the_allowlist_the_patterns_and_the_thread_never_the_token() {
        let caller = [
            ("HOME", "/home/u"),
            ("PATH", "/bin"),
            ("LC_ALL", "C"),
            ("ISO_API_TOKEN", "s3cret"),
            ("AWS_REGION", "eu"),
            ("ANTHROPIC_API_KEY", "k"),
            ("SECRET", "x"),
            ("ISO_THREAD_ID", "99"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()));
        let thread: BTreeMap<String, String> = [("ISO_THREAD_ID".to_string(), "3".to_string())].into();
        let env = agent_env(caller.clone(), &["AWS_*".into(), "ISO_*".into()], &thread);
        let names: Vec<&str> = env.keys().map(String::as_str).collect();
        assert_eq!(names, ["AWS_REGION", "HOME", "ISO_THREAD_ID", "LC_ALL", "PATH"]);
        assert_eq!(env["ISO_THREAD_ID"], "3", "the thread's values win");
        let env = agent_env(caller, &["ANTHROPIC_API_KEY".into()], &thread);
        assert!(env.contains_key("ANTHROPIC_API_KEY") && !env.contains_key("AWS_REGION") && !env.contains_key("SECRET"));
    }
}
