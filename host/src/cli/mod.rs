//! The `iso` command line. Parsing is clap's; every command is a thin call
//! into [`crate::lifecycle`] followed by printing.

mod api;
mod events;
mod hooks;
mod output;
mod spinner;

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};
use serde::Serialize;

use crate::lifecycle::{self, CleanupOptions, Error, InitRequest, Project, Update};
use crate::thread::{Owner, ThreadRecord, ThreadStatus};
use output::{age, print_json, print_table, status_style, styled, Cell, BOLD, DIM, GREEN, RED, YELLOW};
use spinner::Spinner;

/// Exit codes (documented in README, "Exit codes").
pub mod exit {
    pub const OK: i32 = 0;
    pub const ERROR: i32 = 1;
    pub const USAGE: i32 = 2;
    pub const NOT_FOUND: i32 = 3;
    pub const PARTIAL: i32 = 4;
    pub const REFUSED: i32 = 5;
    pub const CONFIG: i32 = 78;
}

#[derive(Debug, Parser)]
#[command(
    name = "iso",
    version,
    about = "Isolated threads of work for parallel coding agents",
    long_about = "Isolated threads of work for parallel coding agents.\n\n\
        Each thread gets its own git worktree and branch, its own block of ports and a .env.thread \
        file, recorded in a crash-safe registry shared by every worktree of the repository.",
    after_help = "Threads are named by id, name or branch. Run `iso <command> --help` for details."
)]
pub struct Cli {
    /// Run as if iso was started in DIR (like `git -C`)
    #[arg(short = 'C', global = true, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// When to use colour: auto (terminal and no NO_COLOR), always, never
    #[arg(long, global = true, value_name = "WHEN", default_value = "auto")]
    pub color: ColorWhen,
    /// No progress output
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Work on this repository even while connected to a server (`iso remote`)
    #[arg(long, global = true)]
    pub local: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ColorWhen {
    Auto,
    Always,
    Never,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create threads: a worktree, a branch and a port block each
    #[command(after_help = "Examples:\n  iso init add-auth\n  iso init add-auth --base dev\n  iso init fix-a fix-b fix-c")]
    Init(InitArgs),
    /// List threads
    #[command(visible_alias = "ls")]
    List {
        /// Also show removed threads
        #[arg(short, long)]
        all: bool,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Everything about one thread
    Status {
        /// Thread id, name or branch
        thread: String,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Change a thread's task, PR or status
    Update(UpdateArgs),
    /// Print a thread's worktree path: cd $(iso path 1)
    Path {
        /// Thread id, name or branch
        thread: String,
    },
    /// The port allocation table
    Ports {
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Remove threads' worktrees and free their ports (branches are kept)
    #[command(visible_aliases = ["clean", "rm"])]
    Cleanup(CleanupArgs),
    /// Compare the registry with git and the filesystem, and repair it
    Doctor {
        /// Repair what can be repaired without losing work
        #[arg(long)]
        fix: bool,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Print the effective configuration and where it came from
    Config {
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Start a thread's Docker stack (creating what is missing) and wait until it is healthy
    Up {
        /// Thread id, name or branch
        thread: String,
    },
    /// Stop a thread's containers without removing them (`iso up` starts them again)
    Down {
        /// Thread id, name or branch
        thread: String,
    },
    /// Show the logs of a thread's services
    #[command(after_help = "Examples:\n  iso logs 1\n  iso logs 1 postgres -f\n  iso logs add-auth api --tail 50")]
    Logs {
        /// Thread id, name or branch
        thread: String,
        /// Only this service
        service: Option<String>,
        /// Keep printing new lines
        #[arg(short, long)]
        follow: bool,
        /// Only the last N lines of each service
        #[arg(long, value_name = "N")]
        tail: Option<usize>,
    },
    /// Run a command in one of a thread's service containers
    #[command(after_help = "Examples:\n  iso exec 1 postgres -- psql -U postgres\n  iso exec 1 redis -- redis-cli ping")]
    Exec {
        /// Thread id, name or branch
        thread: String,
        /// Service name
        service: String,
        /// The command and its arguments (after --)
        #[arg(required = true, last = true, value_name = "CMD")]
        cmd: Vec<String>,
    },
    /// Write docker-compose.thread.yml into a thread's worktree, describing what iso started
    Compose {
        /// Thread id, name or branch
        thread: String,
    },
    /// Write a new iso.toml from a ready stack template (`iso setup` lists them)
    Setup {
        /// Template name
        #[arg(short, long, value_name = "NAME")]
        template: Option<String>,
        /// Replace an existing iso.toml
        #[arg(long)]
        force: bool,
    },
    /// Serve the HTTP API (docs/api.md): iso serve --bind 127.0.0.1:31337
    Serve {
        /// Address and port [default: [api] bind, else 127.0.0.1:31337]; a non-loopback address needs a token
        #[arg(long, value_name = "ADDR")]
        bind: Option<String>,
    },
    /// Use an `iso serve` for init, list, status, update, cleanup and spawn
    #[command(subcommand)]
    Remote(api::RemoteCommand),
    /// Create a thread and start the configured agent ([agent] command) in it
    #[command(after_help = "Examples:\n  iso spawn fix-login --context '{\"ticket\": \"ISO-7\"}'\n  iso spawn docs --template prompts/docs.md --wait")]
    Spawn(api::SpawnArgs),
    /// Print the output of a thread's agent run (the latest unless --run)
    RunLogs {
        /// Thread id, name or branch
        thread: String,
        /// Keep printing until the run ends
        #[arg(short, long)]
        follow: bool,
        /// Run number
        #[arg(long, value_name = "N")]
        run: Option<u32>,
    },
    /// Stop a thread's running agent (SIGTERM to its process group, SIGKILL after 5 s)
    Stop {
        /// Thread id, name or branch
        thread: String,
        #[arg(long)]
        json: bool,
    },
    /// Print the event log: lifecycle, agent and custom events (-f follows it)
    #[command(after_help = "Examples:\n  iso events\n  iso events -f --thread 2\n  iso events --json --since 120")]
    Events(events::EventsArgs),
    /// List hooks, or run one event's hooks against a live thread now
    #[command(subcommand)]
    Hooks(hooks::HooksCommand),
    /// Inspect WASM hook plugins
    #[command(subcommand)]
    Plugin(hooks::PluginCommand),
    /// (internal) supervise one agent run
    #[command(hide = true)]
    AgentSupervise { run_file: PathBuf },
    /// Print shell completions: iso completions bash > ~/.local/share/bash-completion/completions/iso
    Completions {
        shell: CompletionShell,
    },
}

#[derive(Debug, Args)]
pub struct JsonFlag {
    /// Print JSON instead of a table (schema in README, "JSON output")
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Thread names; each becomes part of a branch name (thread-{id}-{name})
    #[arg(required = true, value_name = "NAME")]
    pub names: Vec<String>,
    /// Branch (or commit) to start from [default: threads.base_branch, else the current branch]
    #[arg(short, long, value_name = "BRANCH")]
    pub base: Option<String>,
    /// What the thread is for
    #[arg(short, long)]
    pub task: Option<String>,
    /// Do not start the Docker stack (worktree, ports and env file only; `iso up` starts it later)
    #[arg(long)]
    pub no_services: bool,
    #[command(flatten)]
    pub json: JsonFlag,
}

#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// Thread id, name or branch
    pub thread: String,
    /// What the thread is for ("" clears it)
    #[arg(long)]
    pub task: Option<String>,
    /// Pull request number (0 clears it)
    #[arg(long)]
    pub pr: Option<u64>,
    #[arg(long)]
    pub status: Option<SettableStatus>,
    #[command(flatten)]
    pub json: JsonFlag,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum SettableStatus {
    Active,
    Merged,
    Abandoned,
}

#[derive(Debug, Args)]
pub struct CleanupArgs {
    /// Thread ids, names or branches
    #[arg(required = true, value_name = "THREAD")]
    pub threads: Vec<String>,
    /// Delete the branch too (refused if it has commits on no other branch, unless --force)
    #[arg(long)]
    pub delete_branch: bool,
    /// Keep the stack's named volumes (its data); containers and network are still removed
    #[arg(long)]
    pub keep_volumes: bool,
    /// Also end this user's processes still listening on the thread's ports (each is named first)
    #[arg(long)]
    pub kill_ports: bool,
    /// Throw away uncommitted changes and unmerged commits, override hooks' refusal
    #[arg(short, long)]
    pub force: bool,
    #[command(flatten)]
    pub json: JsonFlag,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum CompletionShell {
    Bash,
    Zsh,
    Fish,
    Nushell,
    Powershell,
    Elvish,
}

/// Parse the command line, run it, and return the exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { exit::USAGE } else { exit::OK };
        }
    };
    match cli.color {
        ColorWhen::Auto => {}
        ColorWhen::Always => anstream::ColorChoice::Always.write_global(),
        ColorWhen::Never => anstream::ColorChoice::Never.write_global(),
    }
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            report(&e);
            e.exit_code()
        }
    }
}

fn report(e: &Error) {
    anstream::eprintln!("{}error:{} {e}", RED.render(), RED.render_reset());
}

fn run(cli: Cli) -> Result<i32, Error> {
    let cwd = match &cli.dir {
        Some(d) => d.clone(),
        None => std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")),
    };
    if let Command::Completions { shell } = cli.command {
        completions(shell);
        return Ok(exit::OK);
    }
    // Needs no repository.
    if let Command::Plugin(c) = &cli.command {
        return Ok(hooks::plugin(c, &cwd));
    }
    if let Some(code) = api::dispatch(&cli, &cwd) {
        return Ok(code);
    }
    let project = Project::discover(&cwd)?;
    let quiet = cli.quiet;
    match cli.command {
        Command::Init(args) => init(&project, args, quiet),
        Command::List { all, json } => list(&project, all, json.json),
        Command::Status { thread, json } => status(&project, &thread, json.json),
        Command::Update(args) => update(&project, args),
        Command::Path { thread } => {
            println!("{}", project.find(&thread)?.worktree.display());
            Ok(exit::OK)
        }
        Command::Ports { json } => ports(&project, json.json),
        Command::Cleanup(args) => cleanup(&project, args, quiet),
        Command::Doctor { fix, json } => doctor(&project, fix, json.json),
        Command::Config { json } => config(&project, json.json),
        Command::Up { thread } => up(&project, &thread, quiet),
        Command::Down { thread } => down(&project, &thread),
        Command::Logs { thread, service, follow, tail } => {
            lifecycle::logs(&project, &thread, service.as_deref(), follow, tail, &mut std::io::stdout().lock())?;
            Ok(exit::OK)
        }
        Command::Exec { thread, service, cmd } => {
            use std::io::IsTerminal;
            let tty = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
            let _raw = if tty { RawMode::enter() } else { None };
            let code = lifecycle::exec(&project, &thread, &service, &cmd, tty)?;
            Ok(i32::try_from(code).unwrap_or(exit::ERROR))
        }
        Command::Compose { thread } => {
            let (path, name) = lifecycle::compose_export(&project, &thread)?;
            println!("{}", path.display());
            anstream::eprintln!("{}  docker-compose -p {name} -f {} logs{}", DIM.render(), path.display(), DIM.render_reset());
            Ok(exit::OK)
        }
        Command::Setup { template, force } => setup(&project, template.as_deref(), force),
        Command::Events(args) => events::run(&project, args),
        Command::Hooks(c) => hooks::run(&project, c, quiet),
        Command::Plugin(c) => Ok(hooks::plugin(&c, &cwd)),
        Command::Completions { .. } => unreachable!("handled above"),
        Command::Serve { .. } | Command::Remote(_) | Command::Spawn(_) | Command::RunLogs { .. } | Command::Stop { .. } | Command::AgentSupervise { .. } => {
            unreachable!("handled by api::dispatch")
        }
    }
}

fn completions(shell: CompletionShell) {
    use clap_complete::Shell;
    let mut cmd = Cli::command();
    let out = &mut std::io::stdout();
    match shell {
        CompletionShell::Bash => clap_complete::generate(Shell::Bash, &mut cmd, "iso", out),
        CompletionShell::Zsh => clap_complete::generate(Shell::Zsh, &mut cmd, "iso", out),
        CompletionShell::Fish => clap_complete::generate(Shell::Fish, &mut cmd, "iso", out),
        CompletionShell::Powershell => clap_complete::generate(Shell::PowerShell, &mut cmd, "iso", out),
        CompletionShell::Elvish => clap_complete::generate(Shell::Elvish, &mut cmd, "iso", out),
        CompletionShell::Nushell => clap_complete::generate(clap_complete_nushell::Nushell, &mut cmd, "iso", out),
    }
}

/// Worktree path relative to the repository root when it is inside it.
fn short_path(project: &Project, path: &Path) -> String {
    path.strip_prefix(project.root()).unwrap_or(path).display().to_string()
}

fn init(project: &Project, args: InitArgs, quiet: bool) -> Result<i32, Error> {
    let spinner = Spinner::new(quiet || args.json.json);
    let mut created = Vec::new();
    let mut failed = Vec::new();
    for name in &args.names {
        let req = InitRequest { name: name.clone(), base: args.base.clone(), task: args.task.clone() };
        let stack = lifecycle::StackOptions { no_services: args.no_services, ..Default::default() };
        match lifecycle::init_opts(project, &req, &stack, &hooks::receiver(project, quiet), &spinner) {
            Ok(t) => created.push(t),
            Err(e) => failed.push((name.clone(), e)),
        }
    }
    drop(spinner);
    if args.json.json {
        print_json(&created);
    } else {
        for t in &created {
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
            let named: Vec<String> = t.ports.iter().map(|(k, v)| format!("{k}={v}")).collect();
            if !named.is_empty() {
                println!("  ports    {}", named.join(" "));
            }
            println!("  env      {}", t.env_file.display());
            if project.config.has_stack() {
                if let Ok(plan) = lifecycle::stack_plan(project, t) {
                    let names: Vec<&str> = plan.services.iter().map(|s| s.name.as_str()).collect();
                    let state = if args.no_services { "not started (`iso up` starts them)" } else { "healthy" };
                    println!("  services {} {state}", names.join(" "));
                    for (k, v) in &plan.exports {
                        println!("  {k}={v}");
                    }
                }
            }
            if t.status == ThreadStatus::Failed {
                anstream::println!("  {}failed:{} {}", RED.render(), RED.render_reset(), t.error.as_deref().unwrap_or(""));
            }
        }
        if created.len() == 1 && failed.is_empty() {
            anstream::println!("{}  cd $(iso path {}){}", DIM.render(), created[0].id, DIM.render_reset());
        }
    }
    let total = args.names.len();
    match failed.len() {
        0 => Ok(exit::OK),
        _ if total == 1 => Err(failed.pop().expect("one failure").1),
        n => {
            for (name, e) in &failed {
                anstream::eprintln!("{}error:{} {name}: {e}", RED.render(), RED.render_reset());
            }
            let names: Vec<&str> = failed.iter().map(|(n, _)| n.as_str()).collect();
            eprintln!("{} of {total} threads created; failed: {}", total - n, names.join(", "));
            Ok(exit::PARTIAL)
        }
    }
}

/// The status to show: an init whose process died reads as "interrupted".
fn shown_status(t: &ThreadRecord) -> (String, anstyle::Style) {
    let dead_owner = t.owner.as_ref().is_some_and(|o| !Owner::is_alive(o));
    if dead_owner && matches!(t.status, ThreadStatus::Creating | ThreadStatus::Cleaning) {
        ("interrupted".to_string(), RED)
    } else {
        (t.status.to_string(), status_style(t.status))
    }
}

fn list(project: &Project, all: bool, json: bool) -> Result<i32, Error> {
    let data = project.load()?;
    let mut threads: Vec<&ThreadRecord> = data.threads.iter().collect();
    threads.sort_by_key(|t| t.id);
    if all {
        threads.extend(data.removed.iter());
    }
    if json {
        print_json(&threads);
        return Ok(exit::OK);
    }
    if threads.is_empty() {
        eprintln!("no threads yet; create one with `iso init <name>`");
        return Ok(exit::OK);
    }
    // Containers running/total per thread: one Docker call for all.
    let counts = if project.config.has_stack() {
        match lifecycle::container_counts(project) {
            Ok(c) => Some(c),
            Err(e) => {
                anstream::eprintln!("{}note:{} services not shown: {}", YELLOW.render(), YELLOW.render_reset(), e.to_string().lines().next().unwrap_or(""));
                Some(Default::default())
            }
        }
    } else {
        None
    };
    let rows: Vec<Vec<Cell>> = threads
        .iter()
        .map(|t| {
            let (status, style) = shown_status(t);
            let mut row = vec![
                Cell::from(t.id.to_string()),
                t.name.clone().into(),
                t.branch.clone().into(),
                styled(status, style),
                t.port_block.to_string().into(),
            ];
            if let Some(counts) = &counts {
                row.push(match counts.get(&t.id) {
                    _ if !t.is_live() => Cell::from("-"),
                    Some(&(up, total)) => styled(format!("{up}/{total}"), if up == total { GREEN } else { YELLOW }),
                    None => Cell::from("0"),
                });
            }
            row.push(short_path(project, &t.worktree).into());
            row.push(age(t.created).into());
            row
        })
        .collect();
    let mut header = vec!["THREAD", "NAME", "BRANCH", "STATUS", "PORTS"];
    if counts.is_some() {
        header.push("SERVICES");
    }
    header.extend(["WORKTREE", "AGE"]);
    print_table(&header, &rows);
    Ok(exit::OK)
}

fn status(project: &Project, selector: &str, json: bool) -> Result<i32, Error> {
    let t = project.find(selector)?;
    let services = if project.config.has_stack() { Some(lifecycle::service_states(project, &t)) } else { None };
    if json {
        let mut v = serde_json::to_value(&t).unwrap_or_default();
        match (&services, v.as_object_mut()) {
            (Some(Ok(states)), Some(obj)) => {
                obj.insert("services".into(), serde_json::to_value(states).unwrap_or_default());
            }
            (Some(Err(e)), Some(obj)) => {
                obj.insert("services_error".into(), e.to_string().into());
            }
            _ => {}
        }
        print_json(&v);
        return Ok(exit::OK);
    }
    let (status, style) = shown_status(&t);
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
    let _ = writeln!(out, "{b}env file{r}  {}", t.env_file.display());
    let _ = writeln!(out, "{b}ports{r}     {}", t.port_block);
    for (name, port) in &t.ports {
        let _ = writeln!(out, "  {name:<10}{port}");
    }
    match &services {
        None => {}
        Some(Err(e)) => {
            let _ = writeln!(out, "{b}services{r}  unknown: {}", e.to_string().lines().next().unwrap_or(""));
        }
        Some(Ok(states)) => {
            let _ = writeln!(out, "{b}services{r}");
            let w = states.iter().map(|s| s.service.len()).max().unwrap_or(0).max(8);
            for st in states {
                let style = match (st.state.as_str(), st.health.as_str()) {
                    ("running", "healthy") => GREEN,
                    ("running", _) => YELLOW,
                    _ => RED,
                };
                let ports = if st.ports.is_empty() { "-".to_string() } else { st.ports.join(", ") };
                let _ = writeln!(
                    out,
                    "  {:<w$}  {}{:<8}{}  {:<9}  {ports}  {}",
                    st.service,
                    style.render(),
                    st.state,
                    style.render_reset(),
                    st.health,
                    st.container
                );
                if let Some(d) = &st.health_detail {
                    let _ = writeln!(out, "  {:<w$}  {}{d}{}", "", DIM.render(), DIM.render_reset());
                }
            }
        }
    }
    let _ = writeln!(out, "{b}task{r}      {}", t.task.as_deref().unwrap_or("-"));
    let _ = writeln!(out, "{b}pr{r}        {}", t.pr.map_or("-".to_string(), |n| format!("#{n}")));
    let _ = writeln!(out, "{b}created{r}   {} ({} ago)", t.created.format("%Y-%m-%d %H:%M:%S UTC"), age(t.created));
    let _ = writeln!(out, "{b}updated{r}   {} ({} ago)", t.updated.format("%Y-%m-%d %H:%M:%S UTC"), age(t.updated));
    let _ = writeln!(out, "{b}history{r}");
    for h in &t.history {
        let _ = writeln!(out, "  {}  {:<9} {}", h.at.format("%Y-%m-%d %H:%M:%S"), h.event, h.detail);
    }
    Ok(exit::OK)
}

fn update(project: &Project, args: UpdateArgs) -> Result<i32, Error> {
    let change = Update {
        task: args.task,
        pr: args.pr.map(|n| (n != 0).then_some(n)),
        status: args.status.map(|s| match s {
            SettableStatus::Active => ThreadStatus::Active,
            SettableStatus::Merged => ThreadStatus::Merged,
            SettableStatus::Abandoned => ThreadStatus::Abandoned,
        }),
    };
    let t = lifecycle::update(project, &args.thread, &change)?;
    if args.json.json {
        print_json(&t);
    } else {
        println!("updated thread {} ({}): {}", t.id, t.name, t.history.last().map_or("", |h| h.detail.as_str()));
    }
    Ok(exit::OK)
}

#[derive(Serialize)]
struct PortRow<'a> {
    thread: u32,
    name: &'a str,
    block: crate::thread::PortRange,
    ports: &'a std::collections::BTreeMap<String, u16>,
}

fn ports(project: &Project, json: bool) -> Result<i32, Error> {
    let data = project.load()?;
    let mut threads: Vec<&ThreadRecord> = data.threads.iter().collect();
    threads.sort_by_key(|t| t.id);
    if json {
        let rows: Vec<PortRow> = threads.iter().map(|t| PortRow { thread: t.id, name: &t.name, block: t.port_block, ports: &t.ports }).collect();
        print_json(&rows);
        return Ok(exit::OK);
    }
    let slots: Vec<String> = project.config.ports.slots.keys().cloned().collect();
    let mut header = vec!["THREAD".to_string(), "NAME".into(), "BLOCK".into()];
    header.extend(slots.iter().map(|s| s.to_uppercase()));
    let rows: Vec<Vec<Cell>> = threads
        .iter()
        .map(|t| {
            let mut row = vec![Cell::from(t.id.to_string()), t.name.clone().into(), t.port_block.to_string().into()];
            row.extend(slots.iter().map(|s| Cell::from(t.ports.get(s).map_or("-".to_string(), |p| p.to_string()))));
            row
        })
        .collect();
    let header: Vec<&str> = header.iter().map(String::as_str).collect();
    print_table(&header, &rows);
    let layout = project.layout();
    anstream::eprintln!(
        "{}{} of {} blocks in use; thread N holds {} + N×{}{}",
        DIM.render(),
        threads.len(),
        project.config.threads.max,
        layout.base,
        layout.block_size,
        DIM.render_reset()
    );
    Ok(exit::OK)
}

fn cleanup(project: &Project, args: CleanupArgs, quiet: bool) -> Result<i32, Error> {
    let spinner = Spinner::new(quiet || args.json.json);
    let opts = CleanupOptions { delete_branch: args.delete_branch, force: args.force };
    let mut removed = Vec::new();
    let mut failed = Vec::new();
    for sel in &args.threads {
        let stack = lifecycle::StackOptions { keep_volumes: args.keep_volumes, kill_ports: args.kill_ports, ..Default::default() };
        match lifecycle::cleanup_opts(project, sel, opts, &stack, &hooks::receiver(project, quiet), &spinner) {
            Ok(t) => removed.push(t),
            Err(e) => failed.push((sel.clone(), e)),
        }
    }
    drop(spinner);
    if args.json.json {
        print_json(&removed);
    } else {
        for t in &removed {
            let branch = if args.delete_branch { "deleted" } else { "kept" };
            anstream::println!("{}✓{} removed thread {} ({}); branch {} {branch}", GREEN.render(), GREEN.render_reset(), t.id, t.name, t.branch);
        }
    }
    match failed.len() {
        0 => Ok(exit::OK),
        _ if args.threads.len() == 1 => Err(failed.pop().expect("one failure").1),
        _ => {
            let code = failed.iter().map(|(_, e)| e.exit_code()).max().unwrap_or(exit::ERROR);
            for (sel, e) in &failed {
                anstream::eprintln!("{}error:{} {sel}: {e}", RED.render(), RED.render_reset());
            }
            Ok(if removed.is_empty() { code } else { exit::PARTIAL })
        }
    }
}

fn doctor(project: &Project, fix: bool, json: bool) -> Result<i32, Error> {
    let findings = lifecycle::doctor(project, fix)?;
    let left = findings.iter().filter(|f| !f.fixed).count();
    if json {
        print_json(&findings);
    } else if findings.is_empty() {
        anstream::println!("{}✓{} registry, worktrees and ports agree", GREEN.render(), GREEN.render_reset());
    } else {
        for f in &findings {
            let (mark, style) = if f.fixed { ("fixed", GREEN) } else { ("problem", RED) };
            anstream::println!("{}{mark}:{} {}", style.render(), style.render_reset(), f.problem);
            match (&f.error, f.fixed, fix) {
                (Some(e), _, _) => println!("  could not fix: {e}"),
                (None, false, false) => println!("  --fix would: {}", f.fix),
                (None, false, true) => println!("  to fix: {}", f.fix),
                _ => {}
            }
        }
        if left > 0 && !fix {
            eprintln!("{left} problem(s); run `iso doctor --fix` to repair");
        }
    }
    Ok(if left == 0 { exit::OK } else { exit::ERROR })
}

fn config(project: &Project, json: bool) -> Result<i32, Error> {
    if json {
        #[derive(Serialize)]
        struct Shown<'a> {
            sources: &'a [PathBuf],
            config: &'a crate::Config,
            registry: PathBuf,
        }
        print_json(&Shown { sources: &project.config.sources, config: &project.config, registry: project.registry.path() });
    } else {
        let sources: Vec<String> = project.config.sources.iter().map(|p| p.display().to_string()).collect();
        println!("# sources: {}", if sources.is_empty() { "built-in defaults".to_string() } else { sources.join(", ") });
        println!("# registry: {}", project.registry.path().display());
        print!("{}", project.config.to_toml());
    }
    Ok(exit::OK)
}

fn up(project: &Project, selector: &str, quiet: bool) -> Result<i32, Error> {
    let spinner = Spinner::new(quiet);
    let (t, plan, started) = lifecycle::services_up(project, selector, &spinner)?;
    drop(spinner);
    for s in &started {
        anstream::println!("{}✓{} {} healthy ({} ms)  {}", GREEN.render(), GREEN.render_reset(), s.service, s.millis, s.container);
    }
    for (k, v) in &plan.exports {
        println!("  {k}={v}");
    }
    anstream::eprintln!("{}thread {} ({}): {} service(s) up{}", DIM.render(), t.id, t.name, started.len(), DIM.render_reset());
    Ok(exit::OK)
}

fn down(project: &Project, selector: &str) -> Result<i32, Error> {
    let (t, stopped) = lifecycle::services_down(project, selector)?;
    for name in &stopped {
        println!("stopped {name}");
    }
    anstream::eprintln!("{}thread {} ({}): {} container(s) stopped; `iso up {}` starts them again{}", DIM.render(), t.id, t.name, stopped.len(), t.id, DIM.render_reset());
    Ok(exit::OK)
}

fn setup(project: &Project, template: Option<&str>, force: bool) -> Result<i32, Error> {
    use crate::services::templates;
    let Some(name) = template else {
        println!("templates (iso setup --template NAME):");
        for t in templates::ALL {
            println!("  {:<20} {}", t.name, t.about);
        }
        return Ok(exit::OK);
    };
    let t = templates::find(name)?;
    let path = project.root().join(crate::config::REPO_CONFIG_FILE);
    if path.exists() && !force {
        return Err(crate::services::Error::Io {
            action: format!("{} already exists; pass --force to replace it", path.display()),
            source: std::io::Error::from(std::io::ErrorKind::AlreadyExists),
        }
        .into());
    }
    std::fs::write(&path, t.text).map_err(|source| crate::services::Error::Io { action: format!("write {}", path.display()), source })?;
    anstream::println!("{}✓{} wrote {} from template {}", GREEN.render(), GREEN.render_reset(), path.display(), t.name);
    Ok(exit::OK)
}

/// The terminal in raw mode for an interactive `iso exec`, restored on drop.
struct RawMode {
    saved: libc::termios,
}

impl RawMode {
    fn enter() -> Option<RawMode> {
        // SAFETY: termios calls on fd 0 with a zeroed struct filled by tcgetattr.
        unsafe {
            let mut t: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(0, &mut t) != 0 {
                return None;
            }
            let saved = t;
            libc::cfmakeraw(&mut t);
            if libc::tcsetattr(0, libc::TCSANOW, &t) != 0 {
                return None;
            }
            Some(RawMode { saved })
        }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        // SAFETY: restores the attributes saved in `enter`.
        unsafe {
            libc::tcsetattr(0, libc::TCSANOW, &self.saved);
        }
    }
}
