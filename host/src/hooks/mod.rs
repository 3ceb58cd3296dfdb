//! Lifecycle hooks: WASM components ([`wasm`]) and Rhai scripts ([`rhai`])
//! that iso calls on lifecycle and custom events, each inside the
//! [`sandbox::Grants`] its `[[hooks]]` entry gives it.
//!
//! Which hooks run for an event: the `[[hooks]]` entries that list it, in
//! the order they are declared, then `<hook_defaults.dir>/<event>.rhai`
//! (discovered; default `hooks/post-up.rhai` and so on) unless an entry
//! already names that script. Each hook gets the thread, the env and the
//! messages of the hooks before it; what it returns is passed on, its
//! variables only once [`admit`] let them through for that hook. A hook
//! that refuses or fails stops the chain, unless it is `optional` and only
//! failed.

pub mod jail;
pub mod payload;
pub mod rhai;
pub mod sandbox;
pub mod wasm;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;

use crate::config::hooks::{HookDefaults, HookSpec, OneOrMany};
use crate::envvar;
pub use crate::events::HookFailure;
pub use crate::events::HookVariable;
use crate::events::{Event, EventContext, EventReceiver, GitSummary, Outcome, ServiceEndpoint};
use crate::thread::{ThreadRecord, LINKS_LIMIT};
use payload::{CallError, Level, LogLine, LogSink, Payload, ThreadInfo};
use sandbox::Grants;

/// What a hook is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Wasm,
    Rhai,
}

/// One hook, ready to run.
#[derive(Debug, Clone, Serialize)]
pub struct Hook {
    pub name: String,
    pub events: Vec<String>,
    pub kind: Kind,
    /// Absolute path of the plugin or script.
    pub path: PathBuf,
    /// Found in the hooks directory rather than declared in `iso.toml`.
    pub discovered: bool,
    #[serde(skip)]
    pub spec: HookSpec,
}

/// One hook's run, for reports.
#[derive(Debug, Clone, Serialize)]
pub struct HookRun {
    pub name: String,
    pub millis: u64,
    /// `ok`, `failed (optional)`.
    pub result: String,
}

/// What all hooks of one event produced.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RunReport {
    pub messages: Vec<String>,
    /// The admitted variables, merged (a later hook's value wins).
    pub env: BTreeMap<String, String>,
    /// The same, each with the hook that returned it.
    pub variables: Vec<HookVariable>,
    /// Why each variable that was not admitted was refused.
    pub refused: Vec<String>,
    /// The links the hooks set, merged (a later hook's value wins).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub links: BTreeMap<String, String>,
    pub runs: Vec<HookRun>,
}

impl RunReport {
    /// What the lifecycle applies.
    pub fn outcome(&self) -> Outcome {
        Outcome { messages: self.messages.clone(), env: self.variables.clone(), refused: self.refused.clone(), links: self.links.clone() }
    }
}

/// The hooks of one repository.
#[derive(Clone)]
pub struct Hooks {
    hooks: Vec<Hook>,
    defaults: HookDefaults,
    repo_root: PathBuf,
    sink: Option<LogSink>,
}

impl std::fmt::Debug for Hooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hooks").field("hooks", &self.hooks).finish()
    }
}

impl Hooks {
    /// The hooks declared in `specs` plus the scripts discovered in the
    /// hooks directory of `repo_root`.
    pub fn new(repo_root: &Path, specs: &[HookSpec], defaults: &HookDefaults) -> Hooks {
        let mut hooks: Vec<Hook> = specs
            .iter()
            .map(|s| {
                let (kind, rel) = match (&s.wasm, &s.rhai) {
                    (Some(w), _) => (Kind::Wasm, w),
                    (None, Some(r)) => (Kind::Rhai, r),
                    (None, None) => (Kind::Rhai, &s.rhai.clone().unwrap_or_default()),
                };
                let path = if rel.is_absolute() { rel.clone() } else { repo_root.join(rel) };
                Hook { name: s.display_name(), events: s.event.names().iter().map(|e| e.to_string()).collect(), kind, path, discovered: false, spec: s.clone() }
            })
            .collect();
        if defaults.discover {
            let dir = repo_root.join(&defaults.dir);
            for event in Event::ALL {
                let file = dir.join(format!("{event}.rhai"));
                if !file.is_file() || hooks.iter().any(|h| same_file(&h.path, &file)) {
                    continue;
                }
                let rel = defaults.dir.join(format!("{event}.rhai"));
                let spec = HookSpec {
                    name: None,
                    event: OneOrMany::One(event.as_str().into()),
                    wasm: None,
                    rhai: Some(rel),
                    optional: false,
                    timeout: None,
                    memory: None,
                    allow: Default::default(),
                    config: Default::default(),
                };
                hooks.push(Hook {
                    name: format!("{}/{event}.rhai", defaults.dir.display()),
                    events: vec![event.as_str().into()],
                    kind: Kind::Rhai,
                    path: file,
                    discovered: true,
                    spec,
                });
            }
        }
        Hooks { hooks, defaults: defaults.clone(), repo_root: repo_root.to_path_buf(), sink: None }
    }

    /// Send the hooks' log lines to `sink`.
    pub fn with_log(mut self, sink: LogSink) -> Hooks {
        self.sink = Some(sink);
        self
    }

    pub fn list(&self) -> &[Hook] {
        &self.hooks
    }

    pub fn is_empty(&self) -> bool {
        self.hooks.is_empty()
    }

    /// Whether any hook listens to `event`.
    pub fn wants(&self, event: &str) -> bool {
        self.hooks.iter().any(|h| h.events.iter().any(|e| e == event))
    }

    /// Run every hook of `payload.event`, in order, passing each one's
    /// messages and admitted variables on to the next; `own` are iso's own
    /// variables (see [`admit`]).
    pub fn run(&self, mut payload: Payload, own: &BTreeMap<String, String>) -> Result<RunReport, HookFailure> {
        let event = payload.event.clone();
        let mut report = RunReport::default();
        let worktree = PathBuf::from(&payload.thread.worktree_path);
        for hook in self.hooks.iter().filter(|h| h.events.contains(&event)) {
            payload.messages = report.messages.clone();
            let mut env = payload.thread.env.clone();
            env.extend(report.env.clone());
            payload.thread.env = env.clone();
            let fail = |message: String, refused: bool| HookFailure { plugin: hook.name.clone(), event: event.clone(), message, refused };
            let started = Instant::now();
            let linked: BTreeMap<String, String> =
                payload.thread.worktrees.iter().filter(|(n, _)| n.as_str() != crate::config::PRIMARY_REPO).map(|(n, p)| (n.clone(), p.clone())).collect();
            let result = match Grants::resolve_linked(&hook.spec, &self.defaults, &worktree, &self.repo_root, env, &linked) {
                Err(e) => Err(CallError::Failed(format!("its grants cannot be given: {e}"))),
                Ok(grants) => {
                    let log = self.log_for(&hook.name, &event);
                    let config = hook.spec.config_json();
                    match hook.kind {
                        Kind::Wasm => wasm::call(&hook.path, &payload, &grants, &config, log),
                        Kind::Rhai => {
                            let display = hook.path.strip_prefix(&self.repo_root).unwrap_or(&hook.path).display().to_string();
                            rhai::call(&hook.path, &display, &self.repo_root.join(&self.defaults.dir), &payload, &grants, &config, log)
                        }
                    }
                }
            };
            let millis = started.elapsed().as_millis() as u64;
            // A thread holds at most LINKS_LIMIT links, those it had included.
            let result = result.and_then(|o| {
                let mut all = payload.thread.links.clone();
                all.extend(o.links.iter().cloned());
                if all.len() > LINKS_LIMIT {
                    let why = format!("a thread holds at most {LINKS_LIMIT} links; this one would hold {}", all.len());
                    return Err(CallError::limit(sandbox::SandboxError::BadLink { why }));
                }
                payload.thread.links = all;
                Ok(o)
            });
            match result {
                Ok(o) => {
                    report.links.extend(o.links);
                    report.messages.extend(o.messages.into_iter().map(|m| format!("{}: {m}", hook.name)));
                    // Filtered here, per hook, so the next hook never sees
                    // a variable this one was not allowed to set.
                    for (name, value) in o.env {
                        match admit(&hook.name, &hook.spec.allow.env, own, &name, &value) {
                            Ok(()) => {
                                report.env.insert(name.clone(), value.clone());
                                report.variables.push(HookVariable { hook: hook.name.clone(), name, value });
                            }
                            Err(why) => {
                                self.emit_log(&hook.name, &event, Level::Warn, &why);
                                report.refused.push(why);
                            }
                        }
                    }
                    report.runs.push(HookRun { name: hook.name.clone(), millis, result: "ok".into() });
                }
                Err(CallError::Refused(m)) => return Err(fail(m, true)),
                Err(e) if hook.spec.optional => {
                    self.emit_log(&hook.name, &event, Level::Warn, &format!("failed, ignored because the hook is optional: {e}"));
                    report.runs.push(HookRun { name: hook.name.clone(), millis, result: "failed (optional)".into() });
                }
                Err(e) => return Err(fail(e.to_string(), false)),
            }
        }
        Ok(report)
    }

    fn log_for(&self, plugin: &str, event: &str) -> payload::LogFn {
        let sink = self.sink.clone();
        let (plugin, event) = (plugin.to_string(), event.to_string());
        Arc::new(move |level, message| {
            if let Some(s) = &sink {
                s(&LogLine { plugin: plugin.clone(), event: event.clone(), level, message: message.to_string() });
            }
        })
    }

    fn emit_log(&self, plugin: &str, event: &str, level: Level, message: &str) {
        (self.log_for(plugin, event))(level, message)
    }
}

/// Whether the variable `name` = `value` that hook `hook` returned may be
/// passed on (to the next hook, into `.env.thread`): the one place that
/// decides. Refused, with the sentence that says why: a name or value
/// `.env.thread` cannot hold, or one that would replace iso's own (`ISO_*`,
/// or a variable of `own` with another value) unless the hook's own
/// `allow.env` (`granted`) names it; another hook's grant does not count.
pub fn admit(hook: &str, granted: &[String], own: &BTreeMap<String, String>, name: &str, value: &str) -> Result<(), String> {
    let replaces = name.starts_with("ISO_") || own.get(name).is_some_and(|old| old != value);
    if let Some(why) = envvar::name_problem(name) {
        Err(format!("hook `{hook}` returned a variable that was not added to .env.thread: {why}"))
    } else if replaces && !granted.iter().any(|g| g == name) {
        let whose = if name.starts_with("ISO_") { "iso's own" } else { "set by iso.toml ([env] or the stack)" };
        Err(format!("hook `{hook}` tried to replace {name}, which is {whose}; kept iso's value (grant it with allow.env = [\"{name}\"] on that hook)"))
    } else if let Err(why) = envvar::quote(value) {
        Err(format!("hook `{hook}`'s variable {name} was not added to .env.thread: {why}"))
    } else {
        Ok(())
    }
}

fn same_file(a: &Path, b: &Path) -> bool {
    a == b || matches!((a.canonicalize(), b.canonicalize()), (Ok(x), Ok(y)) if x == y)
}

/// The payload of `event` for `thread`.
pub fn payload(
    event: &str,
    thread: &ThreadRecord,
    repo_root: &Path,
    env: &BTreeMap<String, String>,
    services: &[ServiceEndpoint],
    git: Option<&GitSummary>,
    custom: Option<String>,
) -> Payload {
    Payload {
        event: event.to_string(),
        thread: ThreadInfo {
            id: thread.id,
            name: thread.name.clone(),
            branch: thread.branch.clone(),
            base: thread.base.clone(),
            status: thread.status.as_str().to_string(),
            repo_path: repo_root.display().to_string(),
            worktree_path: thread.worktree.display().to_string(),
            ports: thread.ports.clone(),
            env: env.clone(),
            task: thread.task.clone(),
            pr: thread.pr,
            services: services.to_vec(),
            links: thread.links.clone(),
            worktrees: std::iter::once((crate::config::PRIMARY_REPO.to_string(), thread.worktree.display().to_string()))
                .chain(thread.repos.iter().map(|(n, w)| (n.clone(), w.worktree.display().to_string())))
                .collect(),
        },
        git: git.cloned(),
        payload: custom,
        messages: Vec::new(),
    }
}

impl EventReceiver for Hooks {
    fn deliver(&self, ctx: &EventContext<'_>) -> Result<Outcome, HookFailure> {
        let name = ctx.event.as_str();
        if !self.wants(name) {
            return Ok(Outcome::default());
        }
        let p = payload(name, ctx.thread, ctx.repo_root, ctx.env, ctx.services, ctx.git, None);
        match self.run(p, ctx.own) {
            Ok(r) => Ok(r.outcome()),
            Err(f) => Err(HookFailure { refused: f.refused && ctx.event.can_refuse(), ..f }),
        }
    }
}

/// A log sink that prints `[hook NAME] event: message` lines on stderr.
pub fn stderr_sink() -> LogSink {
    Arc::new(|l: &LogLine| {
        let prefix = match l.level {
            Level::Debug => "debug: ",
            Level::Info => "",
            Level::Warn => "warning: ",
            Level::Error => "error: ",
        };
        eprintln!("[hook {}] {}: {prefix}{}", l.plugin, l.event, l.message);
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admit_decides_for_the_hook_that_returned_the_variable() {
        let own: BTreeMap<String, String> = [("APP_URL", "http://localhost:1"), ("ISO_THREAD_ID", "1")].map(|(k, v)| (k.to_string(), v.to_string())).into();
        let granted = vec!["APP_URL".to_string()];
        assert!(admit("a", &granted, &own, "APP_URL", "http://granted").is_ok());
        let e = admit("b", &[], &own, "APP_URL", "http://evil").unwrap_err();
        assert!(e.contains("hook `b` tried to replace APP_URL") && e.contains("allow.env = [\"APP_URL\"]"), "{e}");
        assert!(admit("b", &[], &own, "APP_URL", "http://localhost:1").is_ok(), "iso's own value is no replacement");
        assert!(admit("b", &granted, &own, "ISO_THREAD_ID", "9").unwrap_err().contains("iso's own"));
        assert!(admit("b", &[], &own, "ISO_NEW", "x").is_err(), "the ISO_ prefix is iso's even for a new name");
        assert!(admit("b", &[], &own, "NEW_ONE", "fine").is_ok());
        assert!(admit("b", &[], &own, "CR", "a\rb").unwrap_err().contains("CR was not added"));
    }
}
