//! `nu_plugin_iso`: iso as a Nushell plugin that returns structured data.
//!
//! ```nu
//! iso threads | where status == active
//! iso threads | get ports.api
//! cd (iso thread add-auth | get worktree)
//! ```
//!
//! Built against nu-plugin / nu-protocol 0.115.1, so it runs in Nushell
//! 0.115.x (the plugin protocol must match the `nu` it is added to). Every
//! command is a thin call into [`crate::lifecycle`], exactly like the CLI;
//! the repository is found from the engine's `$env.PWD`, and `ISO_*`
//! settings are read from the engine's `$env`, not the plugin process's.
//!
//! Values are built by [`value::thread_value`]; errors become
//! [`LabeledError`]s pointing at the argument they are about ([`error`]).

mod cleanup;
mod init;
mod ports;
mod root;
mod thread;
mod threads;
pub mod value;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use nu_plugin::{EngineInterface, MsgPackSerializer, Plugin, PluginCommand};
use nu_protocol::{Category, LabeledError, Span, Spanned, Value};

use crate::config::{Config, REPO_CONFIG_FILE};
use crate::events::HookError;
use crate::lifecycle::{Error, Project};
use crate::names::NameError;
use crate::worktree::{Git, GitError};

pub use cleanup::IsoCleanup;
pub use init::IsoInit;
pub use ports::IsoPorts;
pub use root::Iso;
pub use thread::IsoThread;
pub use threads::IsoThreads;

/// The plugin: `plugin add ~/.cargo/bin/nu_plugin_iso; plugin use iso`.
#[derive(Debug, Default, Clone, Copy)]
pub struct IsoPlugin;

impl Plugin for IsoPlugin {
    fn version(&self) -> String {
        env!("CARGO_PKG_VERSION").into()
    }

    fn commands(&self) -> Vec<Box<dyn PluginCommand<Plugin = Self>>> {
        vec![Box::new(Iso), Box::new(IsoThreads), Box::new(IsoThread), Box::new(IsoInit), Box::new(IsoCleanup), Box::new(IsoPorts)]
    }
}

/// Serve the plugin on stdin/stdout (the body of `nu_plugin_iso`).
pub fn main() {
    nu_plugin::serve_plugin(&IsoPlugin, MsgPackSerializer)
}

/// The category every iso command is listed under in `help commands`.
pub fn category() -> Category {
    Category::Custom("iso".into())
}

/// The repository iso works in, found from the engine's current directory,
/// with the configuration layered from the engine's environment.
pub fn project(engine: &EngineInterface, head: Span) -> Result<Project, LabeledError> {
    let cwd = engine.get_current_dir().map_err(|e| LabeledError::new(format!("cannot read $env.PWD: {e}")).with_label("here", head))?;
    let env: BTreeMap<String, String> = engine
        .get_env_vars()
        .map_err(|e| LabeledError::new(format!("cannot read the environment: {e}")).with_label("here", head))?
        .into_iter()
        .filter_map(|(k, v)| Some((k, v.coerce_into_string().ok()?)))
        .collect();
    project_in(Path::new(&cwd), &env).map_err(|e| error(&e, head, Spans::default()))
}

/// Like [`Project::discover`] but with the environment given explicitly (the
/// engine's `$env`): `ISO_*` overrides, `ISO_USER_CONFIG` and
/// `XDG_CONFIG_HOME` for the user config file.
pub fn project_in(cwd: &Path, env: &BTreeMap<String, String>) -> Result<Project, Error> {
    let git = Git::discover(cwd)?;
    let user = match env.get("ISO_USER_CONFIG") {
        Some(p) if p.is_empty() => None,
        Some(p) => Some(PathBuf::from(p)),
        None => match env.get("XDG_CONFIG_HOME").filter(|p| !p.is_empty()) {
            Some(xdg) => Some(PathBuf::from(xdg).join("iso").join("config.toml")),
            None => dirs::config_dir().map(|d| d.join("iso").join("config.toml")),
        },
    };
    let iso_env: BTreeMap<String, String> = env.iter().filter(|(k, _)| k.starts_with("ISO_")).map(|(k, v)| (k.clone(), v.clone())).collect();
    let config = Config::load_layers(&git.root().join(REPO_CONFIG_FILE), user.as_deref(), &iso_env)?;
    Ok(Project::with_config(git, config))
}

/// The arguments an error may be about.
#[derive(Debug, Clone, Copy, Default)]
pub struct Spans {
    /// The thread selector or new thread name the operation was given.
    pub subject: Option<Span>,
    /// The `--base` value.
    pub base: Option<Span>,
}

/// An iso error as a Nushell error: the message, its `fix:` hint as help,
/// and a label on the argument it is about (else on the command).
pub fn error(err: &Error, head: Span, spans: Spans) -> LabeledError {
    let text = nu_words(&err.to_string());
    let mut msg = Vec::new();
    let mut help = Vec::new();
    for line in text.lines() {
        match line.trim_start().strip_prefix("fix: ") {
            Some(fix) => help.push(fix.to_string()),
            None => msg.push(line),
        }
    }
    let (label, span) = label_for(root_cause(err), head, spans);
    let mut e = LabeledError::new(msg.join("\n")).with_label(label, span).with_code(code(err));
    if !help.is_empty() {
        e = e.with_help(help.join("\n"));
    }
    e
}

/// The error an init failure wraps.
fn root_cause(err: &Error) -> &Error {
    match err {
        Error::InitFailed { source, .. } => root_cause(source),
        e => e,
    }
}

fn label_for(err: &Error, head: Span, spans: Spans) -> (String, Span) {
    let subject = spans.subject.unwrap_or(head);
    match err {
        Error::NotFound { .. } => ("no such thread".into(), subject),
        Error::Name(NameError::Empty) => ("empty name".into(), subject),
        Error::Name(_) => ("not a usable thread name".into(), subject),
        Error::NameTaken { id, .. } => (format!("already the name of thread {id}"), subject),
        Error::BranchTaken { id, .. } => (format!("branch belongs to thread {id}"), subject),
        Error::Busy { pid, .. } => (format!("busy: process {pid} is working on it"), subject),
        Error::WouldLoseWork { .. } => ("has work that would be lost".into(), subject),
        Error::StatusNotSettable(_) => ("cannot be set by hand".into(), subject),
        Error::Git(GitError::BaseNotFound { .. }) => ("no such branch or commit".into(), spans.base.unwrap_or(head)),
        Error::Git(GitError::NotARepo { .. }) => ("$env.PWD is not inside a git repository".into(), head),
        Error::Hook(HookError::Refused { .. }) => ("refused by a hook".into(), subject),
        Error::Config(_) => ("the repository's iso configuration is invalid".into(), head),
        Error::Ports(_) => ("no free port block".into(), head),
        _ => ("failed".into(), spans.subject.unwrap_or(head)),
    }
}

/// A stable code for scripts (`try { … } catch {|e| $e.code }`).
fn code(err: &Error) -> &'static str {
    match root_cause(err) {
        Error::NotFound { .. } => "iso::not_found",
        Error::WouldLoseWork { .. } => "iso::would_lose_work",
        Error::Busy { .. } => "iso::busy",
        Error::Hook(HookError::Refused { .. }) => "iso::refused",
        Error::Config(_) => "iso::config",
        Error::Name(_) | Error::NameTaken { .. } | Error::BranchTaken { .. } => "iso::name",
        Error::Git(_) => "iso::git",
        Error::Ports(_) => "iso::ports",
        _ => "iso::error",
    }
}

/// The library's hints name CLI commands; in Nushell the same things are
/// plugin commands.
fn nu_words(text: &str) -> String {
    text.replace("`iso list`", "`iso threads`").replace("`iso status", "`iso thread").replace(" (or pass -C DIR)", "")
}

/// A thread selector from an argument that is an id (int) or a name or
/// branch (string).
pub fn selector(value: &Value) -> Result<Spanned<String>, LabeledError> {
    let span = value.span();
    match value {
        Value::Int { val, .. } => Ok(Spanned { item: val.to_string(), span }),
        Value::String { val, .. } => Ok(Spanned { item: val.clone(), span }),
        Value::Record { val, .. } => match val.get("id") {
            Some(id @ Value::Int { .. }) => Ok(Spanned { item: id.as_int().unwrap_or_default().to_string(), span }),
            _ => Err(LabeledError::new("a thread record needs an `id` column")
                .with_label("this record has no int `id`", span)
                .with_help("pass an id, a name, or rows of `iso threads`")),
        },
        other => Err(LabeledError::new(format!("a thread is named by its id, name or branch, not by a {}", other.get_type()))
            .with_label("expected an int or a string", span)),
    }
}
