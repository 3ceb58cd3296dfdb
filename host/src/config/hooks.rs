//! `[[hooks]]` and `[hook_defaults]` in `iso.toml`: which hook runs on which
//! event and what it is granted.
//!
//! ```toml
//! [[hooks]]
//! event = ["post-init", "pre-cleanup"]     # one event or several
//! wasm = "plugins/frontend_env.wasm"       # or: rhai = "hooks/frontend-env.rhai"
//! optional = false                          # a failing post-* hook marks the thread failed
//! timeout = "30s"                           # wall-clock / CPU budget per call
//! memory = "256MiB"                         # linear memory (WASM) / data sizes (Rhai)
//! allow.paths = ["frontend", { path = "/srv/shared", mode = "ro" }]
//! allow.exec = ["npm"]
//! allow.hosts = ["hooks.slack.com"]
//! config = { file = "frontend/.env", key = "VITE_BACKEND_API_URL" }
//! ```

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Events a hook can be declared for besides iso's own: custom events
/// published with `POST /api/events` (1-64 of `a-z 0-9 . _ -`, starting
/// with a letter).
pub fn valid_custom_event(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'))
        && name.parse::<crate::events::Event>().is_err()
        && !name.starts_with("agent-")
}

/// The agent-status event: iso's own (its `agent-` names are not
/// publishable with `POST /api/events`), but hooks may subscribe to it
/// (the chat-thread hook posts each change) and `iso hooks run` may fire it.
pub const AGENT_STATUS: &str = "agent-status";

/// Whether a hook may be declared for (and run by hand on) the custom event `name`.
pub fn subscribable_event(name: &str) -> bool {
    valid_custom_event(name) || name == AGENT_STATUS
}

/// The default CPU / wall-clock budget of one hook call.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// The default memory limit of one hook call.
pub const DEFAULT_MEMORY: u64 = 256 * 1024 * 1024;

/// One `[[hooks]]` entry as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HookSpec {
    /// Shown in messages and errors; defaults to the file's stem.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub event: OneOrMany,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wasm: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rhai: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub optional: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Amount>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<Amount>,
    #[serde(default)]
    pub allow: Allow,
    #[serde(default, skip_serializing_if = "toml::Table::is_empty")]
    pub config: toml::Table,
}

/// `event = "post-up"` or `event = ["post-init", "pre-cleanup"]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn names(&self) -> Vec<&str> {
        match self {
            OneOrMany::One(s) => vec![s.as_str()],
            OneOrMany::Many(v) => v.iter().map(String::as_str).collect(),
        }
    }
}

/// `"30s"`, `"500ms"`, `"2m"`, `"256MiB"`, `"1GiB"`, or a bare number
/// (seconds for `timeout`, MiB for `memory`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Amount {
    Number(u64),
    Text(String),
}

impl Amount {
    pub fn duration(&self) -> Result<Duration, String> {
        let d = match self {
            Amount::Number(s) => Duration::from_secs(*s),
            Amount::Text(t) => {
                let (n, unit) = number_and_unit(t, "duration")?;
                match unit {
                    "ms" => Duration::from_millis(n),
                    "" | "s" => Duration::from_secs(n),
                    "m" | "min" => Duration::from_secs(n * 60),
                    other => return Err(format!("unknown unit `{other}` in `{t}`; use ms, s or m")),
                }
            }
        };
        if d.is_zero() || d > Duration::from_secs(3600) {
            return Err("must be between 1 ms and 1 hour".into());
        }
        Ok(d)
    }

    pub fn bytes(&self) -> Result<u64, String> {
        const MIB: u64 = 1024 * 1024;
        let b = match self {
            Amount::Number(m) => m * MIB,
            Amount::Text(t) => {
                let (n, unit) = number_and_unit(t, "size")?;
                match unit {
                    "" | "MiB" | "M" | "MB" => n * MIB,
                    "KiB" | "K" | "KB" => n * 1024,
                    "GiB" | "G" | "GB" => n * 1024 * MIB,
                    other => return Err(format!("unknown unit `{other}` in `{t}`; use KiB, MiB or GiB")),
                }
            }
        };
        if !(MIB..=16 * 1024 * MIB).contains(&b) {
            return Err("must be between 1 MiB and 16 GiB".into());
        }
        Ok(b)
    }
}

/// `"30s"` → (30, "s").
fn number_and_unit<'a>(text: &'a str, what: &str) -> Result<(u64, &'a str), String> {
    let t = text.trim();
    let (n, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len()));
    let n = n.parse().map_err(|_| format!("`{t}` is not a {what}"))?;
    Ok((n, unit.trim()))
}

/// What a hook may touch besides its own memory.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Allow {
    /// Directories, relative to the worktree or absolute. Unset: the
    /// worktree, read-write. Set: exactly these (list `"."` to keep the
    /// worktree).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paths: Option<Vec<PathGrant>>,
    /// Programs `exec` may start, matched exactly against the name given.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exec: Vec<String>,
    /// HTTP hosts (`host` or `host:port`) the hook may send requests to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    /// Variables the hook may *replace* in `.env.thread`: iso's own
    /// (`ISO_*`) and those of `[env]` and stack exports are otherwise kept
    /// as iso made them (a hook may always add new ones).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
}

/// `"frontend"` (read-write) or `{ path = "docs", mode = "ro" }`; with
/// `repo = "<name>"` the path is in the thread's worktree of that linked
/// repository (`[repos]`) instead of the primary's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PathGrant {
    Plain(String),
    Table {
        path: String,
        #[serde(default)]
        mode: Mode,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        repo: Option<String>,
    },
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Mode {
    #[serde(rename = "ro")]
    ReadOnly,
    #[default]
    #[serde(rename = "rw")]
    ReadWrite,
}

impl PathGrant {
    pub fn path(&self) -> &str {
        match self {
            PathGrant::Plain(p) | PathGrant::Table { path: p, .. } => p,
        }
    }
    pub fn mode(&self) -> Mode {
        match self {
            PathGrant::Plain(_) => Mode::ReadWrite,
            PathGrant::Table { mode, .. } => *mode,
        }
    }
    /// The linked repository whose worktree `path` is relative to (none:
    /// the primary's).
    pub fn repo(&self) -> Option<&str> {
        match self {
            PathGrant::Plain(_) => None,
            PathGrant::Table { repo, .. } => repo.as_deref(),
        }
    }
}

/// `[hook_defaults]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HookDefaults {
    /// Where `<event>.rhai` scripts are discovered, relative to the root.
    #[serde(default = "default_dir")]
    pub dir: PathBuf,
    /// Whether `<dir>/<event>.rhai` runs without a `[[hooks]]` entry.
    #[serde(default = "yes")]
    pub discover: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Amount>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<Amount>,
}

fn default_dir() -> PathBuf {
    PathBuf::from("hooks")
}
fn yes() -> bool {
    true
}

impl Default for HookDefaults {
    fn default() -> Self {
        HookDefaults { dir: default_dir(), discover: true, timeout: None, memory: None }
    }
}

/// A problem with one entry: the key, what is wrong, how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecProblem {
    pub key: &'static str,
    pub message: String,
    pub hint: String,
}

fn problem(key: &'static str, message: impl Into<String>, hint: impl Into<String>) -> SpecProblem {
    SpecProblem { key, message: message.into(), hint: hint.into() }
}

impl HookSpec {
    /// The checks that need no file system.
    pub fn check(&self) -> Result<(), SpecProblem> {
        let events = self.event.names();
        if events.is_empty() {
            return Err(problem("event", "names no event", "e.g. event = \"post-up\""));
        }
        for e in events {
            // `post_up` would be a valid custom event that never fires.
            if let Ok(meant) = e.replace('_', "-").to_ascii_lowercase().parse::<crate::events::Event>() {
                if e != meant.as_str() {
                    return Err(problem("event", format!("`{e}` is not an event; iso's is `{meant}`"), format!("write event = \"{meant}\"")));
                }
            }
            if e.parse::<crate::events::Event>().is_err() && !subscribable_event(e) {
                return Err(problem(
                    "event",
                    format!("`{e}` is neither one of iso's events nor a custom event name"),
                    "use pre-init, post-init, post-up, pre-cleanup, post-cleanup, or a custom name of a-z 0-9 . _ - starting with a letter",
                ));
            }
        }
        match (&self.wasm, &self.rhai) {
            (Some(_), Some(_)) => return Err(problem("wasm", "both `wasm` and `rhai` are set", "a hook is one plugin: keep one of them")),
            (None, None) => return Err(problem("event", "names no plugin", "add wasm = \"path/to/plugin.wasm\" or rhai = \"hooks/script.rhai\"")),
            _ => {}
        }
        if let Some(p) = self.wasm.as_ref().or(self.rhai.as_ref()) {
            if p.as_os_str().is_empty() {
                return Err(problem(if self.wasm.is_some() { "wasm" } else { "rhai" }, "is empty", "give the file's path relative to the repository root"));
            }
        }
        if let Some(t) = &self.timeout {
            t.duration().map_err(|m| problem("timeout", m, "e.g. timeout = \"30s\" or \"500ms\""))?;
        }
        if let Some(m) = &self.memory {
            m.bytes().map_err(|m| problem("memory", m, "e.g. memory = \"256MiB\""))?;
        }
        for g in self.allow.paths.iter().flatten() {
            if g.path().trim().is_empty() {
                return Err(problem("allow", "a path in allow.paths is empty", "use \".\" for the worktree"));
            }
        }
        for h in &self.allow.hosts {
            if h.is_empty() || h.contains('/') || h.contains('@') || h.chars().any(char::is_whitespace) {
                return Err(problem(
                    "allow",
                    format!("`{h}` in allow.hosts is not a host"),
                    "write a host name or host:port, e.g. \"hooks.slack.com\" or \"127.0.0.1:8080\"",
                ));
            }
        }
        for v in &self.allow.env {
            if let Some(why) = crate::envvar::name_problem(v) {
                return Err(problem("allow", format!("allow.env: {why}"), "name the variables the hook may replace, e.g. [\"DATABASE_URL\"]"));
            }
        }
        for p in &self.allow.exec {
            if p.trim().is_empty() {
                return Err(problem("allow", "a program in allow.exec is empty", "name programs as you call them, e.g. \"npm\""));
            }
        }
        if let Some(n) = &self.name {
            if n.trim().is_empty() || n.chars().any(char::is_control) {
                return Err(problem("name", "is empty or has control characters", "e.g. name = \"frontend-env\""));
            }
        }
        Ok(())
    }

    /// The name shown in messages: `name`, else the plugin file's stem.
    pub fn display_name(&self) -> String {
        if let Some(n) = &self.name {
            return n.clone();
        }
        let p = self.wasm.as_ref().or(self.rhai.as_ref());
        p.and_then(|p| p.file_stem()).map(|s| s.to_string_lossy().to_string()).unwrap_or_else(|| "hook".into())
    }

    /// The `config` table as JSON, the form plugins read it in.
    pub fn config_json(&self) -> String {
        serde_json::to_string(&toml_to_json(&toml::Value::Table(self.config.clone()))).unwrap_or_else(|_| "{}".into())
    }
}

/// TOML values as JSON (dates become strings).
pub fn toml_to_json(v: &toml::Value) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        toml::Value::String(s) => J::String(s.clone()),
        toml::Value::Integer(i) => J::from(*i),
        toml::Value::Float(f) => serde_json::Number::from_f64(*f).map(J::Number).unwrap_or(J::Null),
        toml::Value::Boolean(b) => J::Bool(*b),
        toml::Value::Datetime(d) => J::String(d.to_string()),
        toml::Value::Array(a) => J::Array(a.iter().map(toml_to_json).collect()),
        toml::Value::Table(t) => J::Object(t.iter().map(|(k, v)| (k.clone(), toml_to_json(v))).collect::<serde_json::Map<_, _>>()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(src: &str) -> HookSpec {
        toml::from_str(src).unwrap()
    }

    #[test]
    fn amounts_parse_with_units() {
        assert_eq!(Amount::Text("500ms".into()).duration().unwrap(), Duration::from_millis(500));
        assert_eq!(Amount::Number(2).duration().unwrap(), Duration::from_secs(2));
        assert_eq!(Amount::Text("2m".into()).duration().unwrap(), Duration::from_secs(120));
        assert!(Amount::Text("2 fortnights".into()).duration().is_err());
        assert!(Amount::Number(0).duration().is_err());
        assert_eq!(Amount::Text("64MiB".into()).bytes().unwrap(), 64 << 20);
        assert_eq!(Amount::Number(32).bytes().unwrap(), 32 << 20);
        assert_eq!(Amount::Text("1GiB".into()).bytes().unwrap(), 1 << 30);
        assert!(Amount::Text("12 parsecs".into()).bytes().is_err());
    }

    #[test]
    fn checks_name_the_key() {
        let s = spec("event = \"post-up\"\nrhai = \"a.rhai\"\nwasm = \"a.wasm\"");
        assert_eq!(s.check().unwrap_err().key, "wasm");
        let s = spec("event = \"post_up\"\nrhai = \"a.rhai\"");
        let p = s.check().unwrap_err();
        assert_eq!(p.key, "event");
        assert!(p.message.contains("post_up"), "{p:?}");
        let s = spec("event = [\"post-init\", \"deploy\"]\nrhai = \"hooks/x.rhai\"\nallow.paths = [\"a\", { path = \"b\", mode = \"ro\" }]");
        s.check().unwrap();
        assert_eq!(s.display_name(), "x");
        let paths = s.allow.paths.unwrap();
        assert_eq!(paths[1].mode(), Mode::ReadOnly);
        assert_eq!(paths[0].mode(), Mode::ReadWrite);
        let s = spec("event = \"post-up\"\nwasm = \"p.wasm\"\nallow.hosts = [\"http://x\"]");
        assert_eq!(s.check().unwrap_err().key, "allow");
    }

    #[test]
    fn config_reaches_plugins_as_json() {
        let s = spec("event = \"post-up\"\nwasm = \"p.wasm\"\nconfig = { file = \"f\", n = 3, list = [1, 2] }");
        let v: serde_json::Value = serde_json::from_str(&s.config_json()).unwrap();
        assert_eq!(v["file"], "f");
        assert_eq!(v["n"], 3);
        assert_eq!(v["list"][1], 2);
    }
}
