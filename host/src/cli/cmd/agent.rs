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
    let init = InitOptions { base: a.base.clone(), task: a.task.clone(), no_services: false, context: context.clone() };
    let run = match target {
        Target::Local(project) => {
            let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("iso"));
            let req = SpawnRequest { name: a.name.clone(), init, start: StartOptions { template, context, iso_exe: exe } };
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
            let run = client.start(&id, template.as_deref(), context.as_ref())?;
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
