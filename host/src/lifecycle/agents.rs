//! Agent runs: `iso spawn` (a new thread with the agent started in it),
//! starting and stopping a thread's agent, its runs and their logs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::env::thread_env;
use super::init::{init, InitOptions};
use super::{find, Error};
use crate::agent::{self, AgentError, Mode, Run, RunEvent, RunState, Runs, StartSpec, TmuxSession, DEFAULT_TEMPLATE};
use crate::eventlog::{self, EventLog, NewEvent, AGENT};
use crate::progress::Progress;
use crate::project::Project;
use crate::registry::RegistryData;
use crate::thread::{cut, AgentState, AgentStatus, ThreadRecord, ThreadStatus, AGENT_MESSAGE_LIMIT};

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
    /// Headless (the default), or in a tmux session (`iso attach`).
    pub mode: Mode,
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
    let mut command = project.config.agent.command.clone();
    if command.is_empty() {
        return Err(AgentError::NoCommand.into());
    }
    command.extend(project.config.agent.modes.get(opts.mode.as_str()).into_iter().flatten().cloned());
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
        let tmux = opts.mode.in_tmux().then(|| tmux_session(project, thread)).transpose()?;
        Ok(runs.start(&StartSpec {
            thread,
            command: command.clone(),
            prompt: prompt.clone(),
            env: env.clone(),
            iso_exe: &opts.iso_exe,
            mode: opts.mode,
            tmux,
        })?)
    })
}

/// Where an interactive run of `thread` lives: a tmux server of iso's own
/// per state directory (`<state dir>/tmux.sock`, never the user's server),
/// session `iso-<repo>-t<id>`.
fn tmux_session(project: &Project, thread: &ThreadRecord) -> Result<TmuxSession, Error> {
    let env: BTreeMap<String, String> = std::env::vars_os().filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?))).collect();
    let dir = crate::ledger::state_dir(&env).ok_or(crate::ledger::LedgerError::NoStateDir)?;
    std::fs::create_dir_all(&dir).map_err(|source| Error::Io { action: format!("create {}", dir.display()), source })?;
    let repo = project.root().file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    // tmux refuses `.` and `:` in session names.
    let repo: String = repo.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '-' }).take(40).collect();
    Ok(TmuxSession { socket: dir.join("tmux.sock"), session: format!("iso-{repo}-t{}", thread.id) })
}

/// The tmux session of the thread's running interactive run (`iso attach`).
pub fn attach_target(project: &Project, selector: &str) -> Result<TmuxSession, Error> {
    let t = find(project, selector)?;
    match runs(project).running(t.id)? {
        Some(Run { mode: Mode::Interactive | Mode::Semi, tmux: Some(tmux), .. }) => Ok(tmux),
        Some(_) => Err(AgentError::NotInteractive { id: t.id }.into()),
        None => Err(AgentError::NoRun { id: t.id, running: true }.into()),
    }
}

/// The body of `iso agent-exec RUN_FILE` (an interactive run's pane):
/// returns only when the agent could not be started.
pub fn agent_exec(run_file: &Path) -> Error {
    agent::agent_exec(run_file).into()
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

/// The live thread whose worktree contains `dir` (`iso agent-status` run
/// by an agent in its worktree).
pub fn thread_at(project: &Project, dir: &Path) -> Result<ThreadRecord, Error> {
    let here = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    let data = super::load(project)?;
    data.threads
        .iter()
        .filter(|t| t.is_live())
        .find(|t| here.starts_with(t.worktree.canonicalize().unwrap_or_else(|_| t.worktree.clone())))
        .cloned()
        .ok_or_else(|| Error::NoThreadHere { dir: dir.to_path_buf() })
}

/// `iso agent-status STATE`: keep the agent's report on its thread (the
/// message cut to [`AGENT_MESSAGE_LIMIT`]), log an `agent-status` event
/// `{state, message, previous}` and run the hooks subscribed to
/// `agent-status` with that payload. `previous` is the state listings
/// showed before (the run's, when the agent had not reported). Returns the
/// thread as listings show it now.
pub fn report_status(project: &Project, selector: &str, state: &str, message: Option<&str>) -> Result<ThreadRecord, Error> {
    let state = AgentState::parse(state).filter(|s| AgentState::REPORTABLE.contains(s)).ok_or_else(|| Error::BadAgentState(cut(state, 64)))?;
    let thread = find(project, selector)?;
    if !thread.is_live() || !thread.worktree.exists() {
        return Err(Error::NotLive { id: thread.id, status: thread.status, what: "an agent status" });
    }
    let previous = with_agent(project, thread.clone()).agent.map(|a| a.state);
    // Shown in tables and terminals: control characters (escapes, newlines) become spaces.
    let message = message
        .map(|m| cut(&m.chars().map(|c| if c.is_control() { ' ' } else { c }).collect::<String>(), AGENT_MESSAGE_LIMIT))
        .filter(|m| !m.trim().is_empty());
    let now = chrono::Utc::now();
    let report =
        AgentStatus { state, message: message.clone(), since: now, reported_by: "agent".into(), run: None, alive: None, exit_code: None, last_output: None };
    let updated = project.registry().update(|d| {
        let t = d.thread_mut(thread.id).ok_or_else(|| Error::NotFound { selector: thread.id.to_string(), known: String::new() })?;
        t.agent = Some(report.clone());
        t.last_activity = Some(now);
        Ok::<_, Error>(t.clone())
    })?;
    let data = serde_json::json!({ "state": state, "message": message, "previous": previous });
    let log = super::env::event_log(project);
    let new = NewEvent {
        kind: AGENT.into(),
        event: crate::config::hooks::AGENT_STATUS.into(),
        thread: Some(thread.id),
        name: Some(thread.name.clone()),
        data: data.clone(),
    };
    eventlog::append_quietly(&log, new);
    // Run here, not in the background: the CLI exits right after.
    if super::hooks::wanted(project, crate::config::hooks::AGENT_STATUS) {
        super::hooks::run_custom(project, thread.id, crate::config::hooks::AGENT_STATUS, data);
    }
    Ok(with_agent(project, updated))
}

/// `thread` as listings show it: its agent status merged with its latest
/// run ([`merge_agent`]) and its last activity the latest of the recorded
/// one, the run's start, end and last output and the agent's report.
pub fn with_agent(project: &Project, mut thread: ThreadRecord) -> ThreadRecord {
    let latest = runs(project).of(thread.id).ok().and_then(|r| r.into_iter().last());
    let last_output = latest.as_ref().and_then(|r| {
        let m = std::fs::metadata(&r.log).ok().filter(|m| m.len() > 0)?;
        m.modified().ok().map(chrono::DateTime::<chrono::Utc>::from)
    });
    thread.agent = merge_agent(thread.agent.as_ref(), latest.as_ref(), last_output);
    let run_times = latest.iter().flat_map(|r| [Some(r.started), r.finished]).flatten();
    let reported = thread.agent.as_ref().map(|a| a.since);
    thread.last_activity = [thread.last_activity, reported, last_output].into_iter().flatten().chain(run_times).max();
    thread
}

/// The agent status to show for a thread: the agent's `reported` status and
/// what iso knows of its latest `run`. While the run goes, a report made
/// since it started stands (else `running`); once it ended, what the run
/// did stands (`done`, `failed` with the exit code, `stopped`) unless the
/// report is newer than the end, or the agent said `done` and it exited 0.
pub fn merge_agent(reported: Option<&AgentStatus>, run: Option<&Run>, last_output: Option<chrono::DateTime<chrono::Utc>>) -> Option<AgentStatus> {
    let Some(run) = run else { return reported.cloned() };
    let alive = run.state == RunState::Running;
    let status = |state, message: Option<String>, since, by: &str| AgentStatus {
        state,
        message,
        since,
        reported_by: by.into(),
        run: Some(run.run),
        alive: Some(alive),
        exit_code: run.exit_code,
        last_output,
    };
    let report = reported.filter(|r| r.since >= run.started);
    if alive {
        return Some(match report {
            Some(r) => status(r.state, r.message.clone(), r.since, "agent"),
            None => status(AgentState::Running, None, run.started, "iso"),
        });
    }
    let finished = run.finished.unwrap_or(run.started);
    let ended = match run.state {
        RunState::Completed => AgentState::Done,
        RunState::Stopped => AgentState::Stopped,
        _ => AgentState::Failed,
    };
    Some(match report {
        Some(r) if r.since > finished || (r.state == AgentState::Done && ended == AgentState::Done) => status(r.state, r.message.clone(), r.since, "agent"),
        Some(r) => {
            let said = r.message.as_deref().map(|m| format!(": {m}")).unwrap_or_default();
            status(ended, Some(cut(&format!("last reported {}{said}", r.state), AGENT_MESSAGE_LIMIT)), finished, "iso")
        }
        None => status(ended, run.error.clone(), finished, "iso"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_finished_run_outranks_an_older_report_and_a_running_one_keeps_it() {
        let t0 = chrono::Utc::now() - chrono::Duration::minutes(10);
        let at = |m| t0 + chrono::Duration::minutes(m);
        let report = |state, m| AgentStatus {
            state,
            message: Some("hi".into()),
            since: at(m),
            reported_by: "agent".into(),
            run: None,
            alive: None,
            exit_code: None,
            last_output: None,
        };
        let mut run: Run = serde_json::from_value(serde_json::json!({
            "run": 2, "thread": 1, "state": "running", "command": ["a"], "started": at(1), "supervisor": crate::thread::Owner::current(),
            "log": "/x/2.log", "prompt": "/x/2.prompt", "worktree": "/x"
        }))
        .unwrap();
        assert_eq!(merge_agent(None, None, None), None);
        assert_eq!(merge_agent(Some(&report(AgentState::Waiting, 0)), None, None).unwrap().state, AgentState::Waiting);
        let m = merge_agent(Some(&report(AgentState::Waiting, 0)), Some(&run), None).unwrap();
        assert_eq!((m.state, m.reported_by.as_str(), m.alive), (AgentState::Running, "iso", Some(true)), "a report from before the run is stale");
        let m = merge_agent(Some(&report(AgentState::Waiting, 2)), Some(&run), None).unwrap();
        assert_eq!((m.state, m.reported_by.as_str(), m.run), (AgentState::Waiting, "agent", Some(2)));
        run.state = RunState::Failed;
        run.exit_code = Some(3);
        run.finished = Some(at(3));
        let m = merge_agent(Some(&report(AgentState::Working, 2)), Some(&run), None).unwrap();
        assert_eq!((m.state, m.label(), m.reported_by.as_str()), (AgentState::Failed, "failed (exit 3)".to_string(), "iso"));
        assert_eq!(m.message.as_deref(), Some("last reported working: hi"));
        assert_eq!(merge_agent(Some(&report(AgentState::Idle, 4)), Some(&run), None).unwrap().state, AgentState::Idle, "reported after the end");
        run.state = RunState::Completed;
        run.exit_code = Some(0);
        let m = merge_agent(Some(&report(AgentState::Done, 2)), Some(&run), None).unwrap();
        assert_eq!((m.state, m.reported_by.as_str(), m.message.as_deref()), (AgentState::Done, "agent", Some("hi")));
        assert_eq!(merge_agent(None, Some(&run), None).unwrap().state, AgentState::Done);
    }

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
