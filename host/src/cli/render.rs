//! How the CLI shows iso's records: one function per shape, used whether the
//! record came from this repository or from a server.

use std::io::Write;
use std::path::Path;

use super::output::{age, print_table, status_style, styled, Cell, BOLD, DIM, GREEN, RED, YELLOW};
use crate::lifecycle::{Created, Listing, Run, StatusView};
use crate::thread::{ThreadRecord, ThreadStatus};

/// `path` relative to `root` when it is inside it.
fn short_path(root: &Path, path: &Path) -> String {
    path.strip_prefix(root).unwrap_or(path).display().to_string()
}

/// The status to show: an init or cleanup whose process died reads as
/// "interrupted".
fn shown_status(t: &ThreadRecord, interrupted: bool) -> (String, anstyle::Style) {
    if interrupted {
        ("interrupted".to_string(), RED)
    } else {
        (t.status.to_string(), status_style(t.status))
    }
}

/// What `iso init` prints for each thread it made.
pub fn created(c: &Created, no_services: bool) {
    let t = &c.thread;
    anstream::println!(
        "{}✓{} thread {}{}{} {}  branch {}  ports {}",
        GREEN.render(),
        GREEN.render_reset(),
        BOLD.render(),
        t.id,
        BOLD.render_reset(),
        t.name,
        t.branch,
        t.port_block
    );
    println!("  worktree {}", t.worktree.display());
    for (repo, linked) in &t.repos {
        println!("  worktree {} ({repo})", linked.worktree.display());
    }
    let named: Vec<String> = t.ports.iter().map(|(k, v)| format!("{k}={v}")).collect();
    if !named.is_empty() {
        println!("  ports    {}", named.join(" "));
    }
    println!("  env      {}", t.env_file.display());
    if let Some(stack) = &c.stack {
        let state = if no_services { "not started (`iso up` starts them)" } else { "healthy" };
        println!("  services {} {state}", stack.services.join(" "));
        for (k, v) in &stack.exports {
            println!("  {k}={v}");
        }
    }
    if t.status == ThreadStatus::Failed {
        anstream::println!("  {}failed:{} {}", RED.render(), RED.render_reset(), t.error.as_deref().unwrap_or(""));
    }
}

/// The hint after a single thread was made.
pub fn cd_hint(id: u32) {
    anstream::println!("{}  cd $(iso path {id}){}", DIM.render(), DIM.render_reset());
}

/// What `iso cleanup` prints for each thread it removed.
pub fn removed(t: &ThreadRecord, delete_branch: bool) {
    let branch = match (delete_branch, t.created_branch) {
        (true, true) => "deleted",
        (true, false) => "kept (iso did not create it)",
        (false, _) => "kept",
    };
    anstream::println!("{}✓{} removed thread {} ({}); branch {} {branch}", GREEN.render(), GREEN.render_reset(), t.id, t.name, t.branch);
}

/// The `iso ls` table.
pub fn listing(l: &Listing) {
    if l.threads.is_empty() {
        eprintln!("no threads yet; create one with `iso init <name>`");
        return;
    }
    if let Some(e) = &l.services_error {
        anstream::eprintln!("{}note:{} services not shown: {}", YELLOW.render(), YELLOW.render_reset(), e.lines().next().unwrap_or(""));
    }
    // REPOS only when some thread has linked repositories (`[repos]`).
    let with_repos = l.threads.iter().any(|t| !t.repos.is_empty());
    let rows: Vec<Vec<Cell>> = l
        .threads
        .iter()
        .map(|t| {
            let (status, style) = shown_status(t, l.interrupted.contains(&t.id));
            let mut row =
                vec![Cell::from(t.id.to_string()), t.name.clone().into(), t.branch.clone().into(), styled(status, style), t.port_block.to_string().into()];
            if let Some(counts) = &l.services {
                row.push(match counts.get(&t.id) {
                    _ if !t.is_live() => Cell::from("-"),
                    Some(c) => styled(format!("{}/{}", c.running, c.total), if c.running == c.total { GREEN } else { YELLOW }),
                    None => Cell::from("0"),
                });
            }
            row.push(agent_cell(t));
            row.push(t.last_activity.map_or_else(|| "-".to_string(), |at| format!("{} ago", age(at))).into());
            if with_repos {
                row.push(Cell::from(if t.repos.is_empty() { "-".to_string() } else { t.repos.keys().cloned().collect::<Vec<_>>().join(",") }));
            }
            row.push(short_path(&l.root, &t.worktree).into());
            row.push(age(t.created).into());
            row
        })
        .collect();
    let mut header = vec!["THREAD", "NAME", "BRANCH", "STATUS", "PORTS"];
    if l.services.is_some() {
        header.push("SERVICES");
    }
    header.extend(["AGENT", "ACTIVITY"]);
    if with_repos {
        header.push("REPOS");
    }
    header.extend(["WORKTREE", "AGE"]);
    print_table(&header, &rows);
}

/// The AGENT column: the state (`failed (exit 3)`), coloured by whether
/// someone needs to look.
fn agent_cell(t: &ThreadRecord) -> Cell {
    use crate::thread::AgentState;
    match &t.agent {
        None => Cell::from("-"),
        Some(a) => {
            let style = match a.state {
                AgentState::Waiting | AgentState::Failed => YELLOW,
                AgentState::Working | AgentState::Running => GREEN,
                _ => anstyle::Style::new(),
            };
            styled(a.label(), style)
        }
    }
}

/// `iso status`, for people.
pub fn status(v: &StatusView) {
    let t = &v.thread;
    let (status, style) = shown_status(t, v.interrupted);
    let mut out = anstream::stdout().lock();
    let b = BOLD.render();
    let r = BOLD.render_reset();
    let _ = writeln!(out, "{b}thread{r}    {} ({})", t.id, t.name);
    let _ = writeln!(out, "{b}status{r}    {}{status}{}", style.render(), style.render_reset());
    if let Some(err) = &t.error {
        let _ = writeln!(out, "{b}error{r}     {err}");
    }
    let _ = writeln!(out, "{b}branch{r}    {} (from {})", t.branch, t.base);
    let _ = writeln!(out, "{b}worktree{r}  {}", t.worktree.display());
    if !t.repos.is_empty() {
        let _ = writeln!(out, "{b}worktrees{r}");
        let w = v.worktrees.iter().map(|x| x.repo.len()).max().unwrap_or(0);
        for x in &v.worktrees {
            let state = match (x.exists, x.uncommitted) {
                (false, _) => "missing".to_string(),
                (true, Some(0)) => "clean".to_string(),
                (true, Some(n)) => format!("{n} uncommitted"),
                (true, None) => "unreadable".to_string(),
            };
            let _ = writeln!(out, "  {:<w$}  {}  {}  {state}", x.repo, x.path.display(), x.branch);
        }
    }
    let _ = writeln!(out, "{b}env file{r}  {}", t.env_file.display());
    let _ = writeln!(out, "{b}ports{r}     {}", t.port_block);
    for (name, port) in &t.ports {
        let _ = writeln!(out, "  {name:<10}{port}");
    }
    if let Some(e) = &v.services_error {
        let _ = writeln!(out, "{b}services{r}  unknown: {}", e.lines().next().unwrap_or(""));
    }
    if let Some(states) = &v.services {
        let _ = writeln!(out, "{b}services{r}");
        let w = states.iter().map(|s| s.service.len()).max().unwrap_or(0).max(8);
        for st in states {
            let style = match (st.state.as_str(), st.health.as_str()) {
                ("running", "healthy") => GREEN,
                ("running", _) => YELLOW,
                _ => RED,
            };
            let ports = if st.ports.is_empty() { "-".to_string() } else { st.ports.join(", ") };
            let _ =
                writeln!(out, "  {:<w$}  {}{:<8}{}  {:<9}  {ports}  {}", st.service, style.render(), st.state, style.render_reset(), st.health, st.container);
            if let Some(d) = &st.health_detail {
                let _ = writeln!(out, "  {:<w$}  {}{d}{}", "", DIM.render(), DIM.render_reset());
            }
        }
    }
    if let Some(a) = &t.agent {
        let msg = a.message.as_deref().map(|m| format!(": {m}")).unwrap_or_default();
        let run = a.run.map(|n| format!(", run {n}{}", if a.alive == Some(true) { " running" } else { "" })).unwrap_or_default();
        let _ = writeln!(out, "{b}agent{r}     {}{msg} (since {} ago, by {}{run})", a.label(), age(a.since), a.reported_by);
    }
    if let Some(at) = t.last_activity {
        let _ = writeln!(out, "{b}activity{r}  {} ({} ago)", at.format("%Y-%m-%d %H:%M:%S UTC"), age(at));
    }
    let _ = writeln!(out, "{b}task{r}      {}", t.task.as_deref().unwrap_or("-"));
    let _ = writeln!(out, "{b}pr{r}        {}", t.pr.map_or("-".to_string(), |n| format!("#{n}")));
    for (name, url) in &t.links {
        let _ = writeln!(out, "{b}links{r}     {name:<10}{url}");
    }
    let _ = writeln!(out, "{b}created{r}   {} ({} ago)", t.created.format("%Y-%m-%d %H:%M:%S UTC"), age(t.created));
    let _ = writeln!(out, "{b}updated{r}   {} ({} ago)", t.updated.format("%Y-%m-%d %H:%M:%S UTC"), age(t.updated));
    let _ = writeln!(out, "{b}history{r}");
    for h in &t.history {
        let _ = writeln!(out, "  {}  {:<9} {}", h.at.format("%Y-%m-%d %H:%M:%S"), h.event, h.detail);
    }
}

/// What `iso update` prints.
pub fn updated(t: &ThreadRecord) {
    println!("updated thread {} ({}): {}", t.id, t.name, t.history.last().map_or("", |h| h.detail.as_str()));
}

/// One agent run: `thread 1 run 2: completed, pid 123, exit code 0`.
pub fn run(run: &Run) {
    let state = serde_json::to_value(run.state).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
    let mut line = format!("thread {} run {}: {state}", run.thread, run.run);
    if let Some(pid) = run.pid {
        line.push_str(&format!(", pid {pid}"));
    }
    if let Some(code) = run.exit_code {
        line.push_str(&format!(", exit code {code}"));
    }
    if let Some(e) = &run.error {
        line.push_str(&format!(" ({e})"));
    }
    println!("{line}");
    println!("  log {}", run.log.display());
}
