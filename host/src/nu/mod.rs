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
mod snapshots;
mod thread;
mod threads;
pub mod value;

use std::collections::BTreeMap;
use std::path::Path;

use nu_plugin::{EngineInterface, MsgPackSerializer, Plugin, PluginCommand};
use nu_protocol::{Category, LabeledError, Span, Spanned, Value};

use crate::error::{Diagnostic, ErrorKind};
use crate::lifecycle;
use crate::project::Project;

pub use cleanup::IsoCleanup;
pub use init::{IsoAdopt, IsoInit};
pub use ports::IsoPorts;
pub use root::Iso;
pub use snapshots::IsoSnapshots;
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
        vec![
            Box::new(Iso),
            Box::new(IsoThreads),
            Box::new(IsoThread),
            Box::new(IsoInit),
            Box::new(IsoAdopt),
            Box::new(IsoCleanup),
            Box::new(IsoPorts),
            Box::new(IsoSnapshots),
        ]
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
    lifecycle::open_with_env(Path::new(&cwd), &env).map_err(|e| error(&e, head, Spans::default()))
}

/// The arguments an error may be about.
#[derive(Debug, Clone, Copy, Default)]
pub struct Spans {
    /// The thread selector or new thread name the operation was given.
    pub subject: Option<Span>,
    /// The `--base` value.
    pub base: Option<Span>,
}

/// An iso error as a Nushell error: its message, its hint as help, the code
/// `iso::<code>` for scripts (`try { … } catch {|e| $e.code }`), and a label
/// on the argument it is about (else on the command). The one place iso's
/// errors become Nushell's.
pub fn error(err: &lifecycle::Error, head: Span, spans: Spans) -> LabeledError {
    let code = err.code();
    let (label, span) = match specific_label(err.root_cause()) {
        Some(label) => (label, spans.subject.unwrap_or(head)),
        None => label_for(err.kind(), code, head, spans),
    };
    let mut e = LabeledError::new(err.to_string()).with_label(label, span).with_code(format!("iso::{code}"));
    if let Some(help) = nu_hint(code).map(str::to_string).or_else(|| err.hint()) {
        e = e.with_help(help);
    }
    e
}

/// Hints that name a CLI command where the plugin has its own.
fn nu_hint(code: &str) -> Option<&'static str> {
    match code {
        "not_found" => Some("see `iso threads` for ids and names"),
        "not_a_repo" => Some("cd into your project, or run `git init` first"),
        _ => None,
    }
}

/// Labels that say more than the kind, from the error's own data.
fn specific_label(err: &lifecycle::Error) -> Option<String> {
    use lifecycle::Error as E;
    Some(match err {
        E::NameTaken { id, .. } => format!("already the name of thread {id}"),
        E::BranchTaken { id, .. } => format!("branch belongs to thread {id}"),
        E::Busy { pid, .. } => format!("busy: process {pid} is working on it"),
        E::StatusNotSettable(_) => "cannot be set by hand".into(),
        _ => return None,
    })
}

fn label_for(kind: ErrorKind, code: &str, head: Span, spans: Spans) -> (String, Span) {
    let subject = spans.subject.unwrap_or(head);
    match (kind, code) {
        (_, "base_not_found") => ("no such branch or commit".into(), spans.base.unwrap_or(head)),
        (_, "not_a_repo") => ("$env.PWD is not inside a git repository".into(), head),
        (_, "invalid_name") => ("not a usable thread name".into(), subject),
        (_, "no_ports") => ("no free port block".into(), head),
        (ErrorKind::NotFound, _) => ("no such thread".into(), subject),
        (ErrorKind::Conflict, _) => ("conflicts with what exists".into(), subject),
        (ErrorKind::Busy, _) => ("busy: another process is working on it".into(), subject),
        (ErrorKind::WouldLoseWork, _) => ("has work that would be lost".into(), subject),
        (ErrorKind::Refused, _) => ("refused by a hook".into(), subject),
        (ErrorKind::Invalid, _) => ("invalid".into(), subject),
        (ErrorKind::Config, _) => ("the repository's iso configuration is invalid".into(), head),
        (ErrorKind::Unavailable | ErrorKind::Internal, _) => ("failed".into(), subject),
    }
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
