//! The `iso` command line. Parsing is clap's ([`args`]); each command is a
//! file under [`cmd`] that calls [`crate::lifecycle`] (or, in remote mode,
//! the same operations on a server through [`crate::remote`]) and renders
//! the result with [`render`], so a command prints the same either way.
//! Errors are rendered and mapped to exit codes once, here and in [`exit`].

pub mod args;
mod cmd;
pub mod exit;
mod output;
mod render;
mod spinner;
mod terminal;

use std::path::{Path, PathBuf};

use clap::Parser;

use crate::error::Diagnostic;
use crate::lifecycle;
use crate::project::Project;
use crate::remote::{self, Client};
pub use args::Cli;
use args::{ColorWhen, Command};
use output::RED;

/// An error on its way to the user: any of iso's errors, with its kind and
/// hint ([`Diagnostic`]).
pub struct CliError(pub Box<dyn Diagnostic>);

impl<E: Diagnostic + 'static> From<E> for CliError {
    fn from(e: E) -> CliError {
        CliError(Box::new(e))
    }
}

/// What a command returns: its exit code, or the error to report.
pub type CmdResult = Result<i32, CliError>;

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
        Err(CliError(e)) => {
            report(&*e);
            exit::of(e.kind())
        }
    }
}

/// `error: <message>` and, on the next line, `  fix: <hint>`.
pub(crate) fn report(e: &dyn Diagnostic) {
    report_as(None, e)
}

/// [`report`] for one item of a bulk command: `error: <item>: <message>`.
pub(crate) fn report_as(item: Option<&str>, e: &dyn Diagnostic) {
    let prefix = item.map(|i| format!("{i}: ")).unwrap_or_default();
    anstream::eprintln!("{}error:{} {prefix}{e}", RED.render(), RED.render_reset());
    if let Some(hint) = e.hint() {
        eprintln!("  fix: {hint}");
    }
}

/// Where a command is carried out: on the repository here, or by the
/// server this user connected to (`iso remote connect`, `ISO_API_URL`).
pub(crate) enum Target {
    Local(Box<Project>),
    Remote(Client),
}

/// The project of the repository containing `cwd`.
fn open(cwd: &Path) -> Result<Project, CliError> {
    Ok(lifecycle::open(cwd)?)
}

/// The target of a command that can go through a server.
fn target(cli: &Cli, cwd: &Path) -> Result<Target, CliError> {
    let conn = if cli.local { None } else { remote::current()? };
    Ok(match conn {
        Some(conn) => Target::Remote(Client::new(&conn)?),
        None => Target::Local(Box::new(open(cwd)?)),
    })
}

fn run(cli: Cli) -> CmdResult {
    let cwd = match &cli.dir {
        Some(d) => d.clone(),
        None => std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")),
    };
    let quiet = cli.quiet;
    match &cli.command {
        // Need no repository.
        Command::Completions { shell } => return Ok(cmd::completions::run(*shell)),
        Command::Plugin(c) => return Ok(cmd::hooks::plugin(c, &cwd)),
        Command::Remote(c) => return cmd::remote::run(c, &cwd),
        Command::AgentSupervise { run_file } => return Ok(lifecycle::agents::supervise(run_file)?),
        Command::AgentExec { run_file } => return Err(lifecycle::agents::agent_exec(run_file).into()),
        Command::Serve { bind } => return cmd::serve::run(&cwd, *bind),
        // Local, or through a server.
        Command::Init(a) => return cmd::init::run(&target(&cli, &cwd)?, a, quiet),
        Command::Adopt(a) => return cmd::init::adopt(&target(&cli, &cwd)?, a, &cwd, quiet),
        Command::List { all, agent, status, idle, json } => {
            return cmd::list::run(&target(&cli, &cwd)?, *all, agent.as_deref(), status.as_deref(), idle.as_deref(), json.json)
        }
        Command::AgentStatus { state, message, thread, json } => {
            return cmd::agent::agent_status(&target(&cli, &cwd)?, &cwd, state, message.as_deref(), thread.as_deref(), json.json, quiet)
        }
        Command::Status { thread, json } => return cmd::status::run(&target(&cli, &cwd)?, thread, json.json),
        Command::Update(a) => return cmd::update::run(&target(&cli, &cwd)?, a),
        Command::Cleanup(a) => return cmd::cleanup::run(&target(&cli, &cwd)?, a, quiet),
        Command::Spawn(a) => return cmd::agent::spawn(&target(&cli, &cwd)?, &cwd, a, quiet),
        Command::RunLogs { thread, follow, run } => return cmd::agent::run_logs(&target(&cli, &cwd)?, thread, *follow, *run),
        Command::Stop { thread, json } => return cmd::agent::stop(&target(&cli, &cwd)?, thread, *json),
        Command::Snapshot(c) => return cmd::snapshot::run(&target(&cli, &cwd)?, c, quiet),
        _ => {}
    }
    // Local only.
    let project = open(&cwd)?;
    match cli.command {
        Command::Attach { thread } => cmd::agent::attach(&project, &thread),
        Command::Path { thread, repo } => {
            println!("{}", lifecycle::view::worktree_path(&project, &thread, repo.as_deref())?.display());
            Ok(exit::OK)
        }
        Command::Ports { all, json } => cmd::ports::run(&project, all, json.json),
        Command::Doctor { fix, volumes, json } => cmd::doctor::run(&project, fix, volumes, json.json),
        Command::Config { json } => cmd::config::run(&project, json.json),
        Command::Up { thread } => cmd::stack::up(&project, &thread, quiet),
        Command::Down { thread } => cmd::stack::down(&project, &thread),
        Command::Logs { thread, service, follow, tail } => cmd::stack::logs(&project, &thread, service.as_deref(), follow, tail),
        Command::Exec { thread, service, cmd } => cmd::stack::exec(&project, &thread, &service, &cmd),
        Command::Compose { thread } => cmd::stack::compose(&project, &thread),
        Command::Setup { template, force } => cmd::setup::run(&project, template.as_deref(), force),
        Command::Events(args) => cmd::events::run(&project, args),
        Command::Hooks(c) => cmd::hooks::run(&project, &c, quiet),
        _ => unreachable!("handled above"),
    }
}
