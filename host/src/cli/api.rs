//! The CLI side of the HTTP API: `iso serve`, `iso remote …`, agent runs
//! (`iso spawn`, `iso run-logs`, `iso stop`), and remote mode: while
//! connected (`iso remote connect`, or `ISO_API_URL`), init / list / status /
//! update / cleanup / spawn / run-logs / stop go through the server unless
//! `--local` is given.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::{json, Value};

use super::output::{print_json, print_table, Cell};
use super::{exit, Cli, Command, GREEN, RED, DIM};
use crate::agent::{self, Run, RunState, StartOptions};
use crate::lifecycle::{self, InitRequest, Project};
use crate::progress::Silent;
use crate::remote::{self, Client, Connection, RemoteError};

#[derive(Debug, Subcommand)]
pub enum RemoteCommand {
    /// Send init, list, status, update, cleanup and spawn to an `iso serve` (stored with mode 0600)
    Connect {
        /// The server, e.g. http://127.0.0.1:31337
        url: String,
        /// Its token (else ISO_API_TOKEN at use time)
        #[arg(long)]
        token: Option<String>,
    },
    /// Show the connection and check the server answers
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Forget the connection: commands work locally again
    Disconnect,
}

#[derive(Debug, Args)]
pub struct SpawnArgs {
    /// Thread name
    pub name: String,
    /// A minijinja prompt template file ({{ thread.* }}, {{ context.* }}) [default: [agent] template]
    #[arg(long, value_name = "FILE")]
    pub template: Option<PathBuf>,
    /// JSON handed to the template as `context`
    #[arg(long, value_name = "JSON")]
    pub context: Option<String>,
    /// Branch (or commit) to start from
    #[arg(short, long, value_name = "BRANCH")]
    pub base: Option<String>,
    /// What the thread is for
    #[arg(short, long)]
    pub task: Option<String>,
    /// Wait for the agent to end; exit with its exit code
    #[arg(long)]
    pub wait: bool,
    /// Print the run as JSON
    #[arg(long)]
    pub json: bool,
}

fn err_line(msg: &str) {
    anstream::eprintln!("{}error:{} {msg}", RED.render(), RED.render_reset());
}

fn fail_remote(e: RemoteError) -> i32 {
    err_line(&e.to_string());
    e.exit_code()
}

fn fail_agent(e: agent::AgentError) -> i32 {
    err_line(&e.to_string());
    e.exit_code()
}

fn fail_life(e: lifecycle::Error) -> i32 {
    err_line(&e.to_string());
    e.exit_code()
}

/// Handle the commands that belong here, and the ones that go remote.
/// `None`: the caller runs the command locally.
pub(super) fn dispatch(cli: &Cli, cwd: &Path) -> Option<i32> {
    match &cli.command {
        Command::Serve { bind } => return Some(serve(cwd, bind.clone())),
        Command::Remote(cmd) => return Some(remote_cmd(cmd)),
        Command::AgentSupervise { run_file } => return Some(agent::supervise(run_file).unwrap_or_else(fail_agent)),
        _ => {}
    }
    let conn = if cli.local {
        None
    } else {
        match remote::current() {
            Ok(c) => c,
            Err(e) => return Some(fail_remote(e)),
        }
    };
    match (&cli.command, conn) {
        (Command::Spawn(args), conn) => Some(spawn(cwd, args, conn.as_ref())),
        (Command::RunLogs { thread, follow, run }, conn) => Some(run_logs(cwd, thread, *follow, *run, conn.as_ref())),
        (Command::Stop { thread, json }, conn) => Some(stop(cwd, thread, *json, conn.as_ref())),
        (_, None) => None,
        (cmd, Some(conn)) => {
            let client = match Client::new(&conn) {
                Ok(c) => c,
                Err(e) => return Some(fail_remote(e)),
            };
            let r = match cmd {
                Command::Init(a) => remote_init(&client, a),
                Command::List { all, json } => remote_list(&client, *all, json.json),
                Command::Status { thread, json } => remote_status(&client, thread, json.json),
                Command::Update(a) => remote_update(&client, a),
                Command::Cleanup(a) => remote_cleanup(&client, a),
                _ => return None,
            };
            Some(r.unwrap_or_else(fail_remote))
        }
    }
}

// ---- serve and remote ------------------------------------------------------

fn serve(cwd: &Path, bind: Option<String>) -> i32 {
    let iso_exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("iso"));
    let token = std::env::var("ISO_API_TOKEN").ok();
    let opts = crate::api::ServeOptions { root: cwd.to_path_buf(), bind, token, iso_exe };
    let r = crate::api::serve(opts, |addr, token| {
        println!("listening on http://{addr}");
        let _ = std::io::stdout().flush();
        if token.generated {
            anstream::eprintln!(
                "{}no token configured (ISO_API_TOKEN or [api] token); this run's token: {}\n  connect with: iso remote connect http://{addr} --token {}{}",
                DIM.render(),
                token.value,
                token.value,
                DIM.render_reset()
            );
        }
    });
    match r {
        Ok(()) => exit::OK,
        Err(e) => {
            err_line(&e.to_string());
            e.exit_code()
        }
    }
}

fn remote_cmd(cmd: &RemoteCommand) -> i32 {
    match cmd {
        RemoteCommand::Connect { url, token } => {
            let conn = Connection { url: url.clone(), token: token.clone() };
            let client = match Client::new(&conn) {
                Ok(c) => c,
                Err(e) => return fail_remote(e),
            };
            // Check both that it answers and that the token is accepted.
            if let Err(e) = client.get("/api/status") {
                return fail_remote(e);
            }
            let conn = Connection { url: client.url.clone(), token: token.clone() };
            match remote::save(&conn) {
                Ok(path) => {
                    anstream::println!("{}✓{} connected to {} (saved in {})", GREEN.render(), GREEN.render_reset(), conn.url, path.display());
                    exit::OK
                }
                Err(e) => fail_remote(e),
            }
        }
        RemoteCommand::Status { json } => {
            let conn = match remote::current() {
                Ok(Some(c)) => c,
                Ok(None) => {
                    if *json {
                        print_json(&json!({ "connected": false }));
                    } else {
                        println!("not connected; commands run locally (`iso remote connect URL --token T`)");
                    }
                    return exit::OK;
                }
                Err(e) => return fail_remote(e),
            };
            let answer = Client::new(&conn).and_then(|c| c.get("/api/status"));
            match answer {
                Ok((_, status)) => {
                    if *json {
                        print_json(&json!({ "connected": true, "url": conn.url, "server": status }));
                    } else {
                        println!("connected to {}", conn.url);
                        println!("  repository {}", status["root"].as_str().unwrap_or("?"));
                        println!("  threads    {}", status["threads"]);
                        println!("  agents     {} running", status["agents_running"]);
                        println!("  version    {}", status["version"].as_str().unwrap_or("?"));
                    }
                    exit::OK
                }
                Err(e) => fail_remote(e),
            }
        }
        RemoteCommand::Disconnect => match remote::forget() {
            Ok(true) => {
                println!("disconnected; commands run locally");
                exit::OK
            }
            Ok(false) => {
                println!("was not connected");
                exit::OK
            }
            Err(e) => fail_remote(e),
        },
    }
}

// ---- remote mode -----------------------------------------------------------

fn print_created(t: &Value) {
    anstream::println!(
        "{}✓{} thread {} {}  branch {}  ports {}-{}",
        GREEN.render(),
        GREEN.render_reset(),
        t["id"],
        t["name"].as_str().unwrap_or(""),
        t["branch"].as_str().unwrap_or(""),
        t["port_block"]["start"],
        t["port_block"]["end"]
    );
    println!("  worktree {}", t["worktree"].as_str().unwrap_or(""));
}

fn remote_init(c: &Client, a: &super::InitArgs) -> Result<i32, RemoteError> {
    // One name: the thread, or its error (and exit code) as locally.
    if let [name] = a.names.as_slice() {
        let body = json!({ "name": name, "base": a.base, "task": a.task, "no_services": a.no_services });
        let (_, t) = c.post("/api/threads", &body)?;
        if a.json.json {
            print_json(&[&t]);
        } else {
            print_created(&t);
        }
        return Ok(exit::OK);
    }
    let body = json!({ "names": a.names, "base": a.base, "task": a.task, "no_services": a.no_services });
    let (_, v) = c.post("/api/threads", &body)?;
    let created = v["created"].as_array().cloned().unwrap_or_default();
    let failed = v["failed"].as_array().cloned().unwrap_or_default();
    if a.json.json {
        print_json(&created);
    } else {
        created.iter().for_each(print_created);
    }
    for f in &failed {
        err_line(&format!("{}: {}", f["name"].as_str().unwrap_or(""), f["error"]["message"].as_str().unwrap_or("")));
    }
    Ok(if failed.is_empty() { exit::OK } else { exit::PARTIAL })
}

fn remote_list(c: &Client, all: bool, json: bool) -> Result<i32, RemoteError> {
    let (_, v) = c.get(if all { "/api/threads?all=true" } else { "/api/threads" })?;
    if json {
        print_json(&v);
        return Ok(exit::OK);
    }
    let threads = v.as_array().cloned().unwrap_or_default();
    if threads.is_empty() {
        eprintln!("no threads yet; create one with `iso init <name>`");
        return Ok(exit::OK);
    }
    let s = |v: &Value| Cell::from(v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string()));
    let rows: Vec<Vec<Cell>> = threads
        .iter()
        .map(|t| {
            vec![
                s(&t["id"]),
                s(&t["name"]),
                s(&t["branch"]),
                s(&t["status"]),
                Cell::from(format!("{}-{}", t["port_block"]["start"], t["port_block"]["end"])),
                s(&t["worktree"]),
            ]
        })
        .collect();
    print_table(&["THREAD", "NAME", "BRANCH", "STATUS", "PORTS", "WORKTREE"], &rows);
    Ok(exit::OK)
}

fn remote_status(c: &Client, thread: &str, json: bool) -> Result<i32, RemoteError> {
    let (_, t) = c.get(&format!("/api/threads/{}", remote::segment(thread)))?;
    if json {
        print_json(&t);
        return Ok(exit::OK);
    }
    let g = |k: &str| t[k].as_str().map(str::to_string).unwrap_or_else(|| if t[k].is_null() { "-".into() } else { t[k].to_string() });
    println!("thread    {} ({})", t["id"], g("name"));
    println!("status    {}", g("status"));
    println!("branch    {} (from {})", g("branch"), g("base"));
    println!("worktree  {}", g("worktree"));
    println!("ports     {}-{}", t["port_block"]["start"], t["port_block"]["end"]);
    println!("task      {}", g("task"));
    println!("pr        {}", g("pr"));
    Ok(exit::OK)
}

fn remote_update(c: &Client, a: &super::UpdateArgs) -> Result<i32, RemoteError> {
    let status = a.status.map(|s| match s {
        super::SettableStatus::Active => "active",
        super::SettableStatus::Merged => "merged",
        super::SettableStatus::Abandoned => "abandoned",
    });
    let mut body = serde_json::Map::new();
    if let Some(t) = &a.task {
        body.insert("task".into(), t.clone().into());
    }
    if let Some(pr) = a.pr {
        body.insert("pr".into(), pr.into());
    }
    if let Some(s) = status {
        body.insert("status".into(), s.into());
    }
    let (_, t) = c.patch(&format!("/api/threads/{}", remote::segment(&a.thread)), &Value::Object(body))?;
    if a.json.json {
        print_json(&t);
    } else {
        let detail = t["history"].as_array().and_then(|h| h.last()).and_then(|h| h["detail"].as_str()).unwrap_or("");
        println!("updated thread {} ({}): {detail}", t["id"], t["name"].as_str().unwrap_or(""));
    }
    Ok(exit::OK)
}

fn remote_cleanup(c: &Client, a: &super::CleanupArgs) -> Result<i32, RemoteError> {
    let q = format!("?delete_branch={}&force={}&keep_volumes={}&kill_ports={}", a.delete_branch, a.force, a.keep_volumes, a.kill_ports);
    let mut removed = Vec::new();
    let mut failed = Vec::new();
    for sel in &a.threads {
        match c.delete(&format!("/api/threads/{}{q}", remote::segment(sel))) {
            Ok((_, t)) => removed.push(t),
            Err(e) => failed.push((sel.clone(), e)),
        }
    }
    if a.json.json {
        print_json(&removed);
    } else {
        for t in &removed {
            let branch = if a.delete_branch { "deleted" } else { "kept" };
            anstream::println!("{}✓{} removed thread {} ({}); branch {} {branch}", GREEN.render(), GREEN.render_reset(), t["id"], t["name"].as_str().unwrap_or(""), t["branch"].as_str().unwrap_or(""));
        }
    }
    if failed.len() == 1 && a.threads.len() == 1 {
        return Err(failed.pop().expect("one").1);
    }
    let code = failed.iter().map(|(_, e)| e.exit_code()).max();
    for (sel, e) in &failed {
        err_line(&format!("{sel}: {e}"));
    }
    Ok(match code {
        None => exit::OK,
        Some(_) if !removed.is_empty() => exit::PARTIAL,
        Some(c) => c,
    })
}

// ---- agent runs ------------------------------------------------------------

fn print_run(run: &Value, json: bool) {
    if json {
        print_json(run);
        return;
    }
    let state = run["state"].as_str().unwrap_or("?");
    let mut line = format!("thread {} run {}: {state}", run["thread"], run["run"]);
    if let Some(pid) = run["pid"].as_u64() {
        line.push_str(&format!(", pid {pid}"));
    }
    if let Some(code) = run["exit_code"].as_i64() {
        line.push_str(&format!(", exit code {code}"));
    }
    if let Some(e) = run["error"].as_str() {
        line.push_str(&format!(" ({e})"));
    }
    println!("{line}");
    if let Some(log) = run["log"].as_str() {
        println!("  log {log}");
    }
}

fn run_exit(run: &Value) -> i32 {
    match run["state"].as_str() {
        Some("completed") => exit::OK,
        _ => run["exit_code"].as_i64().and_then(|c| i32::try_from(c).ok()).filter(|c| *c != 0).unwrap_or(exit::ERROR),
    }
}

fn spawn(cwd: &Path, a: &SpawnArgs, conn: Option<&Connection>) -> i32 {
    let template = match &a.template {
        Some(p) => match std::fs::read_to_string(cwd.join(p)) {
            Ok(t) => Some(t),
            Err(e) => {
                err_line(&format!("cannot read the template {}: {e}", p.display()));
                return exit::USAGE;
            }
        },
        None => None,
    };
    let context: Option<Value> = match &a.context {
        Some(text) => match serde_json::from_str(text) {
            Ok(v) => Some(v),
            Err(e) => {
                err_line(&format!("--context is not JSON: {e}"));
                return exit::USAGE;
            }
        },
        None => None,
    };
    let run: Value = match conn {
        Some(conn) => {
            let r = Client::new(conn).and_then(|c| {
                let body = json!({ "name": a.name, "base": a.base, "task": a.task, "context": context });
                let (_, t) = c.post("/api/threads", &body)?;
                let id = t["id"].to_string();
                let (_, run) = c.post(&format!("/api/threads/{id}/start"), &json!({ "template": template, "context": context }))?;
                if !a.wait {
                    return Ok(run);
                }
                loop {
                    let (_, runs) = c.get(&format!("/api/threads/{id}/runs"))?;
                    let last = runs.as_array().and_then(|r| r.last().cloned()).unwrap_or(Value::Null);
                    if last["state"] != "running" {
                        return Ok(last);
                    }
                    std::thread::sleep(Duration::from_millis(200));
                }
            });
            match r {
                Ok(run) => run,
                Err(e) => return fail_remote(e),
            }
        }
        None => {
            let project = match Project::discover(cwd) {
                Ok(p) => p,
                Err(e) => return fail_life(e),
            };
            if project.config.agent.command.is_empty() {
                return fail_agent(agent::AgentError::NoCommand);
            }
            let req = InitRequest { name: a.name.clone(), base: a.base.clone(), task: a.task.clone() };
            let hooks = lifecycle::hooks(&project).with_log(crate::hooks::stderr_sink());
            let t = match lifecycle::init(&project, &req, &hooks, &Silent) {
                Ok(t) => t,
                Err(e) => return fail_life(e),
            };
            if let Some(ctx) = &context {
                let _ = agent::save_context(&project, t.id, ctx);
            }
            let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("iso"));
            let mut run = match agent::start(&project, &t.id.to_string(), &StartOptions { template, context }, &exe) {
                Ok(r) => r,
                Err(e) => return fail_agent(e),
            };
            if a.wait {
                while run.state == RunState::Running {
                    std::thread::sleep(Duration::from_millis(100));
                    run = match agent::reload(&run) {
                        Ok(r) => r,
                        Err(e) => return fail_agent(e),
                    };
                }
            }
            serde_json::to_value(&run).unwrap_or_default()
        }
    };
    print_run(&run, a.json);
    if a.wait {
        run_exit(&run)
    } else {
        exit::OK
    }
}

fn run_logs(cwd: &Path, thread: &str, follow: bool, which: Option<u32>, conn: Option<&Connection>) -> i32 {
    let mut out = std::io::stdout().lock();
    if let Some(conn) = conn {
        let client = match Client::new(conn) {
            Ok(c) => c,
            Err(e) => return fail_remote(e),
        };
        let mut from = 0u64;
        loop {
            let mut path = format!("/api/threads/{}/logs?from={from}", remote::segment(thread));
            if let Some(n) = which {
                path.push_str(&format!("&run={n}"));
            }
            let text = match client.get(&path) {
                Ok((_, Value::String(s))) => s,
                Ok((_, v)) => v.to_string(),
                Err(e) => return fail_remote(e),
            };
            from += text.len() as u64;
            let _ = out.write_all(text.as_bytes());
            let _ = out.flush();
            if !follow {
                return exit::OK;
            }
            let runs = client.get(&format!("/api/threads/{}/runs", remote::segment(thread)));
            let running = runs.ok().and_then(|(_, r)| r.as_array().cloned()).is_some_and(|r| r.iter().any(|r| r["state"] == "running" && which.is_none_or(|n| r["run"] == n)));
            if !running && text.is_empty() {
                return exit::OK;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }
    let project = match Project::discover(cwd) {
        Ok(p) => p,
        Err(e) => return fail_life(e),
    };
    let run: Result<Run, agent::AgentError> = match which {
        None => agent::latest(&project, thread),
        Some(n) => project
            .find(thread)
            .map_err(agent::AgentError::from)
            .and_then(|t| agent::runs_of(&project, t.id)?.into_iter().find(|r| r.run == n).ok_or(agent::AgentError::NoRun { id: t.id, running: false })),
    };
    let mut run = match run {
        Ok(r) => r,
        Err(e) => return fail_agent(e),
    };
    let mut from = 0u64;
    loop {
        let chunk = match agent::read_log(&run, from) {
            Ok(c) => c,
            Err(e) => return fail_agent(e),
        };
        from += chunk.len() as u64;
        let _ = out.write_all(&chunk);
        let _ = out.flush();
        if !follow {
            return exit::OK;
        }
        let was_running = run.state == RunState::Running;
        if !was_running && chunk.is_empty() {
            return exit::OK;
        }
        std::thread::sleep(Duration::from_millis(200));
        run = agent::reload(&run).unwrap_or(run);
    }
}

fn stop(cwd: &Path, thread: &str, json: bool, conn: Option<&Connection>) -> i32 {
    let run = match conn {
        Some(conn) => match Client::new(conn).and_then(|c| c.post(&format!("/api/threads/{}/stop", remote::segment(thread)), &json!({}))) {
            Ok((_, run)) => run,
            Err(e) => return fail_remote(e),
        },
        None => {
            let project = match Project::discover(cwd) {
                Ok(p) => p,
                Err(e) => return fail_life(e),
            };
            match agent::stop(&project, thread, Duration::from_secs(5)) {
                Ok(r) => serde_json::to_value(&r).unwrap_or_default(),
                Err(e) => return fail_agent(e),
            }
        }
    };
    print_run(&run, json);
    exit::OK
}
