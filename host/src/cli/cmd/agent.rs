//! Agent runs: `iso spawn`, `iso run-logs`, `iso stop`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::cli::args::SpawnArgs;
use crate::cli::output::RED;
use crate::cli::spinner::Spinner;
use crate::cli::{exit, render, CmdResult, Target};
use crate::lifecycle::{agents, InitOptions, Run, RunState, SpawnRequest, StartOptions};

/// How often a waiting or following command looks at the run again.
const POLL: Duration = Duration::from_millis(200);

fn print_run(run: &Run, json: bool) {
    if json {
        super::json(run);
    } else {
        render::run(run);
    }
}

/// The exit code of a finished run: 0 when it completed, else its own
/// exit code (1 when it has none).
fn run_exit(run: &Run) -> i32 {
    match run.state {
        RunState::Completed => exit::OK,
        _ => run.exit_code.filter(|c| *c != 0).unwrap_or(exit::ERROR),
    }
}

/// A problem with the command's own input: `error: …`, exit 2.
fn usage(message: String) -> CmdResult {
    anstream::eprintln!("{}error:{} {message}", RED.render(), RED.render_reset());
    Ok(exit::USAGE)
}

pub fn spawn(target: &Target, cwd: &Path, a: &SpawnArgs, quiet: bool) -> CmdResult {
    let template = match &a.template {
        Some(p) => match std::fs::read_to_string(cwd.join(p)) {
            Ok(t) => Some(t),
            Err(e) => return usage(format!("cannot read the template {}: {e}", p.display())),
        },
        None => None,
    };
    let context: Option<Value> = match &a.context {
        Some(text) => match serde_json::from_str(text) {
            Ok(v) => Some(v),
            Err(e) => return usage(format!("--context is not JSON: {e}")),
        },
        None => None,
    };
    let init = InitOptions { base: a.base.clone(), task: a.task.clone(), no_services: false, context: context.clone(), ..Default::default() };
    let run = match target {
        Target::Local(project) => {
            let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("iso"));
            let req = SpawnRequest { name: a.name.clone(), init, start: StartOptions { template, context, iso_exe: exe, mode: a.mode.into() } };
            let spinner = Spinner::new(true).hook_logs(!quiet);
            let (_, mut run) = agents::spawn(project, &req, &spinner)?;
            drop(spinner);
            if a.wait {
                while run.state == RunState::Running {
                    std::thread::sleep(POLL / 2);
                    run = agents::reload(&run)?;
                }
            }
            run
        }
        Target::Remote(client) => {
            let created = client.init(std::slice::from_ref(&a.name), &init)?;
            let (_, t) = created.into_iter().next().expect("one name");
            let id = t?.thread.id.to_string();
            let run = client.start(&id, template.as_deref(), context.as_ref(), a.mode.into())?;
            if a.wait {
                loop {
                    let last = client.runs(&id)?.into_iter().last();
                    match last {
                        Some(r) if r.state != RunState::Running => break r,
                        None => break run,
                        Some(_) => std::thread::sleep(POLL),
                    }
                }
            } else {
                run
            }
        }
    };
    print_run(&run, a.json);
    if let (Some(tmux), false) = (&run.tmux, a.json) {
        eprintln!("the agent runs in tmux session {}: `iso attach {}` (detach with Ctrl-b d)", tmux.session, run.thread);
    }
    Ok(if a.wait { run_exit(&run) } else { exit::OK })
}

pub fn run_logs(target: &Target, thread: &str, follow: bool, which: Option<u32>) -> CmdResult {
    let mut out = std::io::stdout().lock();
    match target {
        Target::Remote(client) => {
            let mut from = 0u64;
            loop {
                let text = client.log(thread, which, from)?;
                from += text.len() as u64;
                let _ = out.write_all(text.as_bytes());
                let _ = out.flush();
                if !follow {
                    return Ok(exit::OK);
                }
                let running =
                    client.runs(thread).map(|runs| runs.iter().any(|r| r.state == RunState::Running && which.is_none_or(|n| r.run == n))).unwrap_or(false);
                if !running && text.is_empty() {
                    return Ok(exit::OK);
                }
                std::thread::sleep(POLL);
            }
        }
        Target::Local(project) => {
            let mut run = agents::run(project, thread, which)?;
            let mut from = 0u64;
            loop {
                let chunk = agents::read_log(&run, from)?;
                from += chunk.len() as u64;
                let _ = out.write_all(&chunk);
                let _ = out.flush();
                if !follow {
                    return Ok(exit::OK);
                }
                if run.state != RunState::Running && chunk.is_empty() {
                    return Ok(exit::OK);
                }
                std::thread::sleep(POLL);
                run = agents::reload(&run).unwrap_or(run);
            }
        }
    }
}

pub fn stop(target: &Target, thread: &str, json: bool) -> CmdResult {
    let run = match target {
        Target::Local(project) => agents::stop(project, thread)?,
        Target::Remote(client) => client.stop(thread)?,
    };
    print_run(&run, json);
    Ok(exit::OK)
}

/// `iso agent-status STATE [--message TEXT] [THREAD]`: the thread named,
/// else the one whose worktree holds `cwd`, else `$ISO_THREAD_ID` (the
/// agent's environment has it).
pub fn agent_status(target: &Target, cwd: &Path, state: &str, message: Option<&str>, thread: Option<&str>, json: bool, quiet: bool) -> CmdResult {
    let selector = match thread {
        Some(t) => t.to_string(),
        None => {
            let here = match target {
                Target::Local(project) => agents::thread_at(project, cwd).map(|t| t.id.to_string()),
                // Through a server: the repository here, when there is one, says which thread this is.
                Target::Remote(_) => crate::lifecycle::open(cwd).and_then(|p| agents::thread_at(&p, cwd)).map(|t| t.id.to_string()),
            };
            match (here, std::env::var("ISO_THREAD_ID").ok().filter(|v| !v.is_empty())) {
                (Ok(id), _) => id,
                (Err(_), Some(id)) => id,
                (Err(e), None) => return Err(e.into()),
            }
        }
    };
    let t = match target {
        Target::Local(project) => agents::report_status(project, &selector, state, message)?,
        Target::Remote(client) => client.agent_status(&selector, state, message)?,
    };
    if json {
        super::json(&t);
    } else if !quiet {
        println!("thread {} ({}): agent {}", t.id, t.name, t.agent.as_ref().map_or_else(|| state.to_string(), |a| a.label()));
    }
    Ok(exit::OK)
}

/// `iso attach THREAD`: become `tmux attach` to the session of the thread's
/// interactive run.
pub fn attach(project: &crate::project::Project, thread: &str) -> CmdResult {
    use std::io::IsTerminal;
    let tmux = agents::attach_target(project, thread)?;
    if !std::io::stdin().is_terminal() || !std::io::stdout().is_terminal() {
        anstream::eprintln!("{}error:{} iso attach needs a terminal", RED.render(), RED.render_reset());
        eprintln!("  fix: run it in a terminal; from a script, `iso run-logs {thread} -f` follows the output");
        return Ok(exit::ERROR);
    }
    eprintln!("attaching to tmux session {}; detach with Ctrl-b d (the agent keeps running)", tmux.session);
    use std::os::unix::process::CommandExt;
    let e = tmux.command().args(["attach-session", "-t", &tmux.session]).exec();
    anstream::eprintln!("{}error:{} cannot run tmux: {e}", RED.render(), RED.render_reset());
    eprintln!("  fix: install tmux");
    Ok(exit::ERROR)
}
