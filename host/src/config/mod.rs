//! Configuration: built-in defaults, the team's `iso.toml`, the user's own
//! config file and `ISO_*` environment variables.
//!
//! Precedence, lowest first: defaults, `iso.toml` at the repository root, the
//! user config (`$XDG_CONFIG_HOME/iso/config.toml`, or the file named by
//! `ISO_USER_CONFIG`), then environment variables. A later layer replaces each
//! key it sets; the tables `[ports.slots]` and `[env]` are replaced whole, so a
//! team can drop a slot it does not use.
//!
//! Unknown keys and bad values are errors that name the file, line and key.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::error::{Diagnostic, ErrorKind};
use toml::Spanned;

pub mod hooks;
pub mod services;

use self::hooks::{HookDefaults, HookSpec};
use self::services::{check_service, check_stack, ComposeSpec, DockerSettings, ServiceSpec};

/// The file name teams check in at the repository root.
pub const REPO_CONFIG_FILE: &str = "iso.toml";

/// The user config file `env` points at: `ISO_USER_CONFIG` (empty: none),
/// else `$XDG_CONFIG_HOME/iso/config.toml`, else `$HOME/.config/iso/config.toml`.
pub fn user_config_path(env: &BTreeMap<String, String>) -> Option<PathBuf> {
    if let Some(p) = env.get("ISO_USER_CONFIG") {
        return (!p.is_empty()).then(|| PathBuf::from(p));
    }
    let base = match (env.get("XDG_CONFIG_HOME").filter(|p| !p.is_empty()), env.get("HOME").filter(|p| !p.is_empty())) {
        (Some(xdg), _) => PathBuf::from(xdg),
        (None, Some(home)) => Path::new(home).join(".config"),
        (None, None) => dirs::config_dir()?,
    };
    Some(base.join("iso").join("config.toml"))
}

/// Effective configuration after all layers are merged.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Config {
    pub threads: ThreadsConfig,
    pub ports: PortsConfig,
    /// `.env.thread` entries: variable name to a minijinja template.
    pub env: BTreeMap<String, String>,
    /// `[services.<name>]`: the thread's Docker stack (empty: no Docker).
    /// A later layer replaces a service whole.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub services: BTreeMap<String, ServiceSpec>,
    /// `[compose]`: take the stack from a docker-compose file instead.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compose: Option<ComposeSpec>,
    /// `[docker]`: timeouts, publish address, extra labels.
    pub docker: DockerSettings,
    /// `[api]`: `iso serve` (see docs/api.md).
    pub api: ApiConfig,
    /// `[agent]`: the agent `iso spawn` starts in a thread.
    pub agent: AgentConfig,
    /// `[[hooks]]`: hook plugins and scripts, in the order they run. The
    /// user config's entries come after the team's.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hooks: Vec<HookSpec>,
    /// `[hook_defaults]`: the discovered scripts' directory, default limits.
    pub hook_defaults: HookDefaults,
    /// `[repos]`: the other repositories every thread gets a worktree in
    /// (name to where it is). A later layer adds or replaces each name.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub repos: BTreeMap<String, RepoSpec>,
    /// The files that contributed, in the order they were applied.
    #[serde(skip)]
    pub sources: Vec<PathBuf>,
}

/// The name `[repos]` may not use: it is the primary repository's own in
/// thread env files (`ISO_WORKTREE_MAIN`) and hook payloads.
pub const PRIMARY_REPO: &str = "main";

/// One `[repos]` entry: `frontend = "../app-frontend"` or its table form.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RepoSpec {
    /// The repository's main checkout: relative to the primary's root, `~/…`
    /// or absolute (resolved by the project, which can ask git).
    pub path: PathBuf,
    /// Where a new branch starts there (default: its current branch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<String>,
    /// Untracked files copied into its worktrees (like `threads.copy`).
    #[serde(default = "default_repo_copy")]
    pub copy: Vec<String>,
    /// Paths symlinked into its worktrees (like `threads.link`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub link: Vec<String>,
}

fn default_repo_copy() -> Vec<String> {
    vec![".env".to_string()]
}

/// `[repos]` values: a path, or a table.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RepoEntry {
    Path(String),
    Table(RepoSpec),
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ThreadsConfig {
    /// Where worktrees go, relative to the repository root.
    pub worktree_dir: PathBuf,
    /// Branch name template; `{id}` and `{name}` are replaced.
    pub branch_template: String,
    /// How many threads may hold a port block at once.
    pub max: u32,
    /// Default base branch; `None` means the main checkout's current branch.
    pub base_branch: Option<String>,
    /// Files (glob patterns, relative to the root) copied into new worktrees,
    /// typically gitignored ones such as `.env`.
    pub copy: Vec<String>,
    /// Where new threads' volumes are seeded from unless `--seed-from` or
    /// `--no-seed` says otherwise: a thread, `snapshot:NAME` or `main`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<String>,
    /// How the source's running containers are held still while their
    /// volumes are copied (seeding, snapshots).
    pub seed_hold: SeedHold,
    /// Paths (glob patterns, relative to the root) made symlinks to the
    /// main checkout's in new worktrees instead of copies (`node_modules`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub link: Vec<String>,
}

/// `threads.seed_hold`: `docker pause` (crash-consistent, the source keeps
/// its connections; the default) or `docker stop` (a clean shutdown: no
/// recovery in the copy, and in-memory stores save first). docs/seeding.md
/// compares them.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum SeedHold {
    #[default]
    Pause,
    Stop,
}

/// `[api]`: the HTTP API of `iso serve`.
#[derive(Debug, Clone, Serialize, PartialEq, Default)]
pub struct ApiConfig {
    /// The bearer token clients must send; `ISO_API_TOKEN` overrides it.
    /// Never printed (`iso config` shows whether one is set).
    #[serde(skip)]
    pub token: Option<String>,
    /// Where `iso serve` listens unless `--bind` is given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bind: Option<String>,
}

/// `[agent]`: what `iso spawn` runs in a new thread's worktree.
#[derive(Debug, Clone, Serialize, PartialEq, Default)]
pub struct AgentConfig {
    /// The program and its arguments; `{prompt}` in an argument is replaced
    /// by the rendered prompt (also on stdin and in `ISO_PROMPT_FILE`).
    pub command: Vec<String>,
    /// A minijinja prompt template file, relative to the repository root.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub template: Option<PathBuf>,
    /// Variables of iso's own environment the agent also gets, besides the
    /// thread's and the fixed list (HOME, PATH, …): names, or patterns
    /// ending in `*` such as `"AWS_*"`. `ISO_API_TOKEN` is never passed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    /// Arguments added to `command` per run mode (`automatic`,
    /// `interactive`, `semi`), e.g. `semi = ["--permission-mode", "acceptEdits"]`.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub modes: std::collections::BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PortsConfig {
    /// Thread N gets the block starting at `base + N * block_size`.
    pub base: u16,
    pub block_size: u16,
    /// Named offsets inside a block.
    pub slots: BTreeMap<String, u16>,
}

impl Default for Config {
    fn default() -> Self {
        let slots = [("postgres", 0), ("redis", 1), ("api", 2), ("worker", 3)].into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        let env = [
            ("DATABASE_URL", "postgresql://postgres:postgres@localhost:{{ ports.postgres }}/app"),
            ("REDIS_URL", "redis://localhost:{{ ports.redis }}"),
            ("API_URL", "http://localhost:{{ ports.api }}"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        Config {
            threads: ThreadsConfig {
                worktree_dir: PathBuf::from(".worktrees"),
                branch_template: "thread-{id}-{name}".into(),
                max: 10,
                base_branch: None,
                copy: vec![".env".to_string()],
                seed: None,
                seed_hold: SeedHold::default(),
                link: Vec::new(),
            },
            ports: PortsConfig { base: 10000, block_size: 100, slots },
            env,
            services: BTreeMap::new(),
            compose: None,
            docker: DockerSettings::default(),
            api: ApiConfig::default(),
            agent: AgentConfig::default(),
            hooks: Vec::new(),
            hook_defaults: HookDefaults::default(),
            repos: BTreeMap::new(),
            sources: Vec::new(),
        }
    }
}

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read {}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    /// A problem at a known place in a file (boxed: it is large, and every
    /// config result carries it).
    #[error(transparent)]
    Invalid(Box<Located>),
    /// A problem in an `ISO_*` environment variable.
    #[error("environment variable {var}={value:?}: {message}")]
    Env { var: String, value: String, message: String, hint: String },
    /// A problem with the merged result that no single place explains.
    #[error("configuration: {0}")]
    Merged(String),
    /// A `[repos]` entry that does not name a usable repository (found when
    /// the project resolves it against the disk).
    #[error("`{key}`: {message}")]
    Repo { key: String, message: String, hint: String },
}

/// Where in which file a problem is, with the line shown and the place marked.
#[derive(Debug, Error)]
#[error("{}:{line}:{column}: {message}\n{snippet}", path.display())]
pub struct Located {
    pub path: PathBuf,
    pub line: usize,
    pub column: usize,
    pub key: Option<String>,
    pub message: String,
    pub snippet: String,
    pub hint: String,
}

impl Diagnostic for ConfigError {
    fn kind(&self) -> ErrorKind {
        ErrorKind::Config
    }

    fn hint(&self) -> Option<String> {
        match self {
            ConfigError::Invalid(at) => Some(at.hint.clone()),
            ConfigError::Env { hint, .. } | ConfigError::Repo { hint, .. } => Some(hint.clone()),
            ConfigError::Read { .. } | ConfigError::Merged(_) => None,
        }
    }
}

// ---- the file format -------------------------------------------------------

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    threads: Option<ThreadsSection>,
    ports: Option<PortsSection>,
    env: Option<BTreeMap<Spanned<String>, Spanned<String>>>,
    services: Option<BTreeMap<Spanned<String>, Spanned<ServiceSpec>>>,
    compose: Option<Spanned<ComposeSpec>>,
    docker: Option<DockerSection>,
    api: Option<ApiSection>,
    agent: Option<AgentSection>,
    hooks: Option<Vec<Spanned<HookSpec>>>,
    hook_defaults: Option<Spanned<HookDefaults>>,
    repos: Option<BTreeMap<Spanned<String>, Spanned<RepoEntry>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ApiSection {
    token: Option<Spanned<String>>,
    bind: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AgentSection {
    command: Option<Spanned<Vec<String>>>,
    template: Option<Spanned<String>>,
    env: Option<Spanned<Vec<String>>>,
    modes: Option<Spanned<std::collections::BTreeMap<String, Vec<String>>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct DockerSection {
    health_timeout: Option<Spanned<u64>>,
    stop_timeout: Option<Spanned<u64>>,
    publish_host: Option<Spanned<String>>,
    labels: Option<BTreeMap<String, String>>,
    name: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ThreadsSection {
    worktree_dir: Option<Spanned<String>>,
    branch_template: Option<Spanned<String>>,
    max: Option<Spanned<u32>>,
    base_branch: Option<Spanned<String>>,
    copy: Option<Vec<String>>,
    seed: Option<String>,
    seed_hold: Option<Spanned<String>>,
    link: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PortsSection {
    base: Option<Spanned<u16>>,
    block_size: Option<Spanned<u16>>,
    slots: Option<BTreeMap<Spanned<String>, Spanned<u16>>>,
}

/// Where a value came from, for error messages.
#[derive(Clone)]
enum Origin<'a> {
    File { path: &'a Path, src: &'a str, span: Range<usize> },
    Env { var: &'a str, value: &'a str },
}

impl Origin<'_> {
    fn error(&self, key: &str, message: impl Into<String>, hint: impl Into<String>) -> ConfigError {
        let message = message.into();
        match self {
            Origin::File { path, src, span } => located(path, src, span.clone(), Some(key.to_string()), format!("`{key}`: {message}"), hint.into()),
            Origin::Env { var, value } => ConfigError::Env { var: var.to_string(), value: value.to_string(), message, hint: hint.into() },
        }
    }
}

fn located(path: &Path, src: &str, span: Range<usize>, key: Option<String>, message: String, hint: String) -> ConfigError {
    let start = span.start.min(src.len());
    let line = src[..start].matches('\n').count() + 1;
    let line_start = src[..start].rfind('\n').map_or(0, |i| i + 1);
    let column = src[line_start..start].chars().count() + 1;
    let text = src[line_start..].lines().next().unwrap_or("");
    let width = src[start..span.end.min(src.len())].lines().next().map_or(1, |s| s.chars().count().max(1));
    let gutter = line.to_string().len();
    let snippet = format!("{:gutter$} |\n{line} | {text}\n{:gutter$} | {}{}", "", "", " ".repeat(column - 1), "^".repeat(width));
    ConfigError::Invalid(Box::new(Located { path: path.to_path_buf(), line, column, key, message, snippet, hint }))
}

/// Why `name` cannot be a `[repos]` name (message, hint): it must be a
/// short identifier, as it becomes part of `ISO_WORKTREE_<NAME>`.
pub fn check_repo_name(name: &str) -> Result<(), (String, String)> {
    if name.len() > 32 || !is_identifier(name) {
        return Err((format!("`{name}` is not a repository name"), "use 1 to 32 characters of a-z, 0-9 and _, starting with a letter (e.g. frontend)".into()));
    }
    if name == PRIMARY_REPO {
        return Err((format!("`{name}` is the primary repository's own name"), "pick another name for the linked repository (e.g. frontend)".into()));
    }
    Ok(())
}

// ---- loading ---------------------------------------------------------------

impl Config {
    /// Load the configuration for a repository rooted at `repo_root`, reading
    /// the user config and the process environment.
    pub fn load(repo_root: &Path) -> Result<Config, ConfigError> {
        let env: BTreeMap<String, String> = std::env::vars().collect();
        let user = user_config_path(&env);
        let iso_env: BTreeMap<String, String> = env.into_iter().filter(|(k, _)| k.starts_with("ISO_")).collect();
        Self::load_layers(&repo_root.join(REPO_CONFIG_FILE), user.as_deref(), &iso_env)
    }

    /// Load from explicit layers; missing files are skipped.
    pub fn load_layers(repo_file: &Path, user_file: Option<&Path>, env: &BTreeMap<String, String>) -> Result<Config, ConfigError> {
        let mut config = Config::default();
        for path in std::iter::once(repo_file).chain(user_file) {
            match std::fs::read_to_string(path) {
                Ok(src) => {
                    config.apply_file(path, &src)?;
                    config.sources.push(path.to_path_buf());
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(ConfigError::Read { path: path.to_path_buf(), source }),
            }
        }
        config.apply_env(env)?;
        config.check_whole()?;
        Ok(config)
    }

    /// Parse one file and lay it over `self`.
    pub fn apply_file(&mut self, path: &Path, src: &str) -> Result<(), ConfigError> {
        let file: FileConfig = toml::from_str(src).map_err(|e| {
            let span = e.span().unwrap_or(0..0);
            let message = e.message().trim().to_string();
            let hint = if message.starts_with("unknown field") {
                "remove or rename the key; README.md lists every key".to_string()
            } else if message.contains("duplicate") {
                "each key and table may appear once; merge the two".to_string()
            } else {
                "fix the value; README.md lists every key with its type".to_string()
            };
            located(path, src, span, None, message, hint)
        })?;
        let at = |span: Range<usize>| Origin::File { path, src, span };

        if let Some(t) = file.threads {
            if let Some(v) = t.worktree_dir {
                self.threads.worktree_dir = check_worktree_dir(v.get_ref(), &at(v.span()))?;
            }
            if let Some(v) = t.branch_template {
                self.threads.branch_template = check_branch_template(v.get_ref(), &at(v.span()))?;
            }
            if let Some(v) = t.max {
                self.threads.max = check_max(*v.get_ref(), &at(v.span()))?;
            }
            if let Some(v) = t.base_branch {
                self.threads.base_branch = Some(v.into_inner());
            }
            if let Some(v) = t.copy {
                self.threads.copy = v;
            }
            if let Some(v) = t.seed {
                self.threads.seed = (!v.is_empty()).then_some(v);
            }
            if let Some(v) = t.seed_hold {
                self.threads.seed_hold = check_seed_hold(v.get_ref(), &at(v.span()))?;
            }
            if let Some(v) = t.link {
                self.threads.link = v;
            }
        }
        if let Some(p) = file.ports {
            if let Some(v) = p.base {
                self.ports.base = *v.get_ref();
            }
            if let Some(v) = p.block_size {
                self.ports.block_size = check_block_size(*v.get_ref(), &at(v.span()))?;
            }
            if let Some(slots) = p.slots {
                let mut out = BTreeMap::new();
                for (name, offset) in slots {
                    check_identifier("ports.slots", name.get_ref(), &at(name.span()))?;
                    if *offset.get_ref() >= self.ports.block_size {
                        return Err(at(offset.span()).error(
                            &format!("ports.slots.{}", name.get_ref()),
                            format!("offset {} does not fit in a block of {} ports", offset.get_ref(), self.ports.block_size),
                            format!("use an offset below {} or raise ports.block_size", self.ports.block_size),
                        ));
                    }
                    out.insert(name.into_inner(), offset.into_inner());
                }
                self.ports.slots = out;
            }
        }
        if let Some(env) = file.env {
            let mut out = BTreeMap::new();
            for (key, template) in env {
                check_env_key(key.get_ref(), &at(key.span()))?;
                check_template(key.get_ref(), template.get_ref(), &at(template.span()))?;
                out.insert(key.into_inner(), template.into_inner());
            }
            self.env = out;
        }
        if let Some(services) = file.services {
            for (name, spec) in services {
                let (span, spec) = (spec.span(), spec.into_inner());
                if let Err(p) = check_service(name.get_ref(), &spec) {
                    let at_key = if p.key == "name" { name.span() } else { key_span(src, span, p.key) };
                    return Err(at(at_key).error(&format!("services.{}.{}", p.service, p.key), p.message, p.hint));
                }
                self.services.insert(name.into_inner(), spec);
            }
        }
        if let Some(compose) = file.compose {
            let span = compose.span();
            let c = compose.into_inner();
            let inside = |p: &Path| !p.as_os_str().is_empty() && !p.is_absolute() && !p.components().any(|c| matches!(c, Component::ParentDir));
            if let Some(bad) = c.file.iter().find(|f| !inside(f)) {
                return Err(at(key_span(src, span, "file")).error(
                    "compose.file",
                    format!("`{}` must be a path inside the repository, relative to its root", bad.display()),
                    "e.g. file = \"compose.yml\", or a list: file = [\"compose.yml\", \"compose.dev.yml\"]; leave it out to use Compose's own file names",
                ));
            }
            if let Some(dir) = c
                .project_directory
                .as_ref()
                .filter(|d| d.as_os_str().is_empty() || d.is_absolute() || d.components().any(|c| matches!(c, Component::ParentDir)))
            {
                return Err(at(key_span(src, span, "project_directory")).error(
                    "compose.project_directory",
                    format!("`{}` must be a directory inside the repository, relative to its root", dir.display()),
                    "e.g. project_directory = \"deploy\"",
                ));
            }
            if let Some(p) = c.profiles.iter().find(|p| p.is_empty() || p.contains(',')) {
                return Err(at(key_span(src, span, "profiles")).error(
                    "compose.profiles",
                    format!("`{p}` is not a profile name"),
                    "e.g. profiles = [\"debug\"]",
                ));
            }
            self.compose = Some(c);
        }
        if let Some(d) = file.docker {
            if let Some(v) = d.health_timeout {
                if *v.get_ref() == 0 {
                    return Err(at(v.span()).error("docker.health_timeout", "0 seconds leaves no time to start", "use e.g. 120"));
                }
                self.docker.health_timeout = v.into_inner();
            }
            if let Some(v) = d.stop_timeout {
                self.docker.stop_timeout = v.into_inner();
            }
            if let Some(v) = d.publish_host {
                if v.get_ref().parse::<std::net::IpAddr>().is_err() {
                    return Err(at(v.span()).error(
                        "docker.publish_host",
                        format!("`{}` is not an IP address", v.get_ref()),
                        "use 127.0.0.1 (default), 0.0.0.0 or another local address",
                    ));
                }
                self.docker.publish_host = v.into_inner();
            }
            if let Some(v) = d.labels {
                self.docker.labels = v;
            }
            if let Some(v) = d.name {
                let ok = v.get_ref().chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
                    && v.get_ref().chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c));
                if !ok {
                    return Err(at(v.span()).error(
                        "docker.name",
                        format!("`{}` cannot be part of Docker resource names", v.get_ref()),
                        "use lowercase letters, digits, `-`, `_` and `.`",
                    ));
                }
                self.docker.name = Some(v.into_inner());
            }
        }
        if let Some(a) = file.api {
            if let Some(v) = a.token {
                if v.get_ref().trim().is_empty() {
                    return Err(at(v.span()).error("api.token", "is empty", "remove the key, or set a long random string"));
                }
                self.api.token = Some(v.into_inner());
            }
            if let Some(v) = a.bind {
                if v.get_ref().parse::<std::net::SocketAddr>().is_err() {
                    return Err(at(v.span()).error("api.bind", format!("`{}` is not an address and port", v.get_ref()), "write e.g. \"127.0.0.1:31337\""));
                }
                self.api.bind = Some(v.into_inner());
            }
        }
        if let Some(a) = file.agent {
            if let Some(v) = a.command {
                if v.get_ref().is_empty() || v.get_ref()[0].trim().is_empty() {
                    return Err(at(v.span()).error("agent.command", "names no program", "write e.g. command = [\"claude\", \"-p\", \"{prompt}\"]"));
                }
                self.agent.command = v.into_inner();
            }
            if let Some(v) = a.template {
                let p = PathBuf::from(v.get_ref());
                if p.as_os_str().is_empty() || p.is_absolute() {
                    return Err(at(v.span()).error("agent.template", "must be a path relative to the repository root", "e.g. template = \"prompts/agent.md\""));
                }
                self.agent.template = Some(p);
            }
            if let Some(v) = a.env {
                for pattern in v.get_ref() {
                    let name = pattern.strip_suffix('*').unwrap_or(pattern);
                    // `"*"` alone would hand over everything, the API token's neighbours included.
                    if name.is_empty() || crate::envvar::name_problem(name).is_some() {
                        return Err(at(v.span()).error(
                            "agent.env",
                            format!("`{pattern}` is not a variable name or a prefix pattern"),
                            "name variables (\"ANTHROPIC_API_KEY\") or prefixes ending in `*` (\"AWS_*\")",
                        ));
                    }
                }
                self.agent.env = v.into_inner();
            }
            if let Some(v) = a.modes {
                if let Some(bad) = v.get_ref().keys().find(|k| !["automatic", "interactive", "semi"].contains(&k.as_str())) {
                    return Err(at(v.span()).error(
                        "agent.modes",
                        format!("`{bad}` is not a run mode"),
                        "use automatic, interactive or semi, e.g. modes.semi = [\"--permission-mode\", \"acceptEdits\"]",
                    ));
                }
                self.agent.modes = v.into_inner();
            }
        }
        if let Some(list) = file.hooks {
            let first = self.hooks.len();
            for (i, spec) in list.into_iter().enumerate() {
                let (span, spec) = (spec.span(), spec.into_inner());
                if let Err(p) = spec.check() {
                    return Err(at(key_span(src, span, p.key)).error(&format!("hooks[{}].{}", first + i, p.key), p.message, p.hint));
                }
                self.hooks.push(spec);
            }
        }
        if let Some(d) = file.hook_defaults {
            let (span, d) = (d.span(), d.into_inner());
            if let Some(Err(m)) = d.timeout.as_ref().map(|t| t.duration()) {
                return Err(at(key_span(src, span, "timeout")).error("hook_defaults.timeout", m, "e.g. timeout = \"30s\""));
            }
            if let Some(Err(m)) = d.memory.as_ref().map(|t| t.bytes()) {
                return Err(at(key_span(src, span, "memory")).error("hook_defaults.memory", m, "e.g. memory = \"256MiB\""));
            }
            if d.dir.is_absolute() || d.dir.components().any(|c| matches!(c, Component::ParentDir)) {
                return Err(at(key_span(src, span, "dir")).error("hook_defaults.dir", "must be a directory inside the repository", "e.g. dir = \"hooks\""));
            }
            self.hook_defaults = d;
        }
        if let Some(repos) = file.repos {
            for (name, entry) in repos {
                let key = format!("repos.{}", name.get_ref());
                check_repo_name(name.get_ref()).map_err(|(m, h)| at(name.span()).error(&key, m, h))?;
                let spec = match entry.into_inner() {
                    RepoEntry::Path(p) => RepoSpec { path: PathBuf::from(p), base: None, copy: default_repo_copy(), link: Vec::new() },
                    RepoEntry::Table(t) => t,
                };
                if spec.path.as_os_str().is_empty() {
                    return Err(at(name.span()).error(&key, "names no path", "e.g. frontend = \"../app-frontend\" (relative to this repository's root)"));
                }
                self.repos.insert(name.into_inner(), spec);
            }
        }
        Ok(())
    }

    /// Whether a Docker stack is configured (`[services.*]` or `[compose]`).
    /// Without one iso never talks to Docker.
    pub fn has_stack(&self) -> bool {
        !self.services.is_empty() || self.compose.is_some()
    }

    /// Apply `ISO_*` overrides. Unknown `ISO_*` variables are ignored: other
    /// tools (and iso's own `ISO_API_TOKEN`) share the prefix.
    pub fn apply_env(&mut self, env: &BTreeMap<String, String>) -> Result<(), ConfigError> {
        let get = |k: &'static str| env.get(k).map(|v| (k, v.as_str()));
        if let Some((var, value)) = get("ISO_WORKTREE_DIR") {
            self.threads.worktree_dir = check_worktree_dir(value, &Origin::Env { var, value })?;
        }
        if let Some((var, value)) = get("ISO_BRANCH_TEMPLATE") {
            self.threads.branch_template = check_branch_template(value, &Origin::Env { var, value })?;
        }
        if let Some((var, value)) = get("ISO_MAX_THREADS") {
            let o = Origin::Env { var, value };
            self.threads.max = check_max(parse_num(value, &o, "threads.max")?, &o)?;
        }
        if let Some((_, value)) = get("ISO_BASE_BRANCH") {
            self.threads.base_branch = (!value.is_empty()).then(|| value.to_string());
        }
        if let Some((var, value)) = get("ISO_PORTS_BASE") {
            self.ports.base = parse_num(value, &Origin::Env { var, value }, "ports.base")?;
        }
        if let Some((var, value)) = get("ISO_PORTS_BLOCK_SIZE") {
            let o = Origin::Env { var, value };
            self.ports.block_size = check_block_size(parse_num(value, &o, "ports.block_size")?, &o)?;
        }
        if let Some((var, value)) = get("ISO_PORTS_SLOTS") {
            let o = Origin::Env { var, value };
            let mut slots = BTreeMap::new();
            for pair in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                let Some((name, offset)) = pair.split_once('=') else {
                    return Err(o.error("ports.slots", format!("`{pair}` is not NAME=OFFSET"), "write e.g. postgres=0,redis=1"));
                };
                check_identifier("ports.slots", name.trim(), &o)?;
                slots.insert(name.trim().to_string(), parse_num(offset.trim(), &o, "ports.slots")?);
            }
            self.ports.slots = slots;
        }
        Ok(())
    }

    /// Checks that need the merged values (a slot and the block size may come
    /// from different layers).
    fn check_whole(&self) -> Result<(), ConfigError> {
        let p = &self.ports;
        for (name, offset) in &p.slots {
            if *offset >= p.block_size {
                return Err(ConfigError::Merged(format!(
                    "slot `{name}` has offset {offset}, outside a block of {} ports; lower the offset or raise ports.block_size",
                    p.block_size
                )));
            }
        }
        let last = p.base as u64 + (self.threads.max as u64 + 1) * p.block_size as u64 - 1;
        if last > u16::MAX as u64 {
            return Err(ConfigError::Merged(format!(
                "ports.base {} + (threads.max {} + 1) × ports.block_size {} ends at port {last}, past 65535; lower one of them",
                p.base, self.threads.max, p.block_size
            )));
        }
        if !self.services.is_empty() && self.compose.is_some() {
            return Err(ConfigError::Merged("both [services.*] and [compose] are set; iso takes the stack from one of them, so remove the other".into()));
        }
        if let Err(pr) = check_stack(&self.services, &p.slots, p.block_size) {
            return Err(ConfigError::Merged(format!("services.{}.{}: {}; {}", pr.service, pr.key, pr.message, pr.hint)));
        }
        if p.base < 1024 {
            return Err(ConfigError::Merged(format!("ports.base {} would hand out privileged ports below 1024; use 10000 or another base above 1023", p.base)));
        }
        Ok(())
    }

    /// The branch name for thread `id` called `name`.
    pub fn branch_name(&self, id: u32, name: &str) -> String {
        self.threads.branch_template.replace("{id}", &id.to_string()).replace("{name}", name)
    }

    /// The TOML text of the effective configuration (for `iso config`).
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_default()
    }
}

/// The span of the line that sets `key` inside the table at `span` (for
/// errors found after parsing), else the table itself.
fn key_span(src: &str, span: Range<usize>, key: &str) -> Range<usize> {
    // A `[table]` header's span may cover the header only: look on to the
    // next header.
    let start = span.start.min(src.len());
    let next_header = src[start..].find("\n[").map_or(src.len(), |i| start + i + 1);
    let end = span.end.max(next_header).min(src.len());
    let mut offset = start;
    for line in src[start..end].split_inclusive('\n') {
        let trimmed = line.trim_start();
        if let Some(rest) = trimmed.strip_prefix(key) {
            if rest.trim_start().starts_with('=') || rest.starts_with('.') {
                let lead = line.len() - trimmed.len();
                return offset + lead..offset + lead + key.len();
            }
        }
        offset += line.len();
    }
    span
}

fn parse_num<T: std::str::FromStr>(value: &str, origin: &Origin, key: &str) -> Result<T, ConfigError> {
    value.trim().parse().map_err(|_| origin.error(key, format!("`{value}` is not a valid number here"), "give a whole number in range"))
}

fn check_worktree_dir(value: &str, origin: &Origin) -> Result<PathBuf, ConfigError> {
    let path = PathBuf::from(value);
    let ok = !value.trim().is_empty()
        && path.components().all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
        && path.components().any(|c| matches!(c, Component::Normal(_)));
    if ok {
        Ok(path)
    } else {
        Err(origin.error("threads.worktree_dir", format!("`{value}` must be a relative path inside the repository"), "use something like `.worktrees`"))
    }
}

fn check_branch_template(value: &str, origin: &Origin) -> Result<String, ConfigError> {
    if !value.contains("{name}") && !value.contains("{id}") {
        return Err(origin.error(
            "threads.branch_template",
            format!("`{value}` contains neither {{id}} nor {{name}}, so every thread would get the same branch"),
            "use something like `thread-{id}-{name}`",
        ));
    }
    let sample = value.replace("{id}", "1").replace("{name}", "x");
    let valid = git2::Branch::name_is_valid(&sample).unwrap_or(false);
    if !valid || sample.contains("..") || sample.starts_with('-') {
        return Err(origin.error(
            "threads.branch_template",
            format!("`{value}` does not give a valid git branch name (`{sample}`)"),
            "use letters, digits, `-`, `_`, `/` and the placeholders {id} and {name}",
        ));
    }
    Ok(value.to_string())
}

fn check_max(value: u32, origin: &Origin) -> Result<u32, ConfigError> {
    if (1..=999).contains(&value) {
        Ok(value)
    } else {
        Err(origin.error("threads.max", format!("{value} is out of range"), "use a number from 1 to 999"))
    }
}

fn check_seed_hold(value: &str, origin: &Origin) -> Result<SeedHold, ConfigError> {
    match value {
        "pause" => Ok(SeedHold::Pause),
        "stop" => Ok(SeedHold::Stop),
        _ => Err(origin.error("threads.seed_hold", format!("`{value}` is not a way to hold the source"), "use \"pause\" (the default) or \"stop\"")),
    }
}

fn check_block_size(value: u16, origin: &Origin) -> Result<u16, ConfigError> {
    if value >= 1 {
        Ok(value)
    } else {
        Err(origin.error("ports.block_size", "a block needs at least one port", "use e.g. 100"))
    }
}

/// A slot or repository name: lowercase letters, digits and `_`, starting
/// with a letter (it becomes part of template keys and variable names).
fn is_identifier(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_lowercase()) && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

fn check_identifier(table: &str, name: &str, origin: &Origin) -> Result<(), ConfigError> {
    if is_identifier(name) {
        Ok(())
    } else {
        Err(origin.error(
            &format!("{table}.{name}"),
            format!("`{name}` is not a valid slot name"),
            "use lowercase letters, digits and `_`, starting with a letter (it is used as `ports.NAME` in templates)",
        ))
    }
}

fn check_env_key(key: &str, origin: &Origin) -> Result<(), ConfigError> {
    match crate::envvar::name_problem(key) {
        None => Ok(()),
        Some(problem) => Err(origin.error(&format!("env.{key}"), problem, "use letters, digits and `_`, not starting with a digit")),
    }
}

fn check_template(key: &str, template: &str, origin: &Origin) -> Result<(), ConfigError> {
    let env = minijinja::Environment::new();
    env.template_from_str(template).map(|_| ()).map_err(|e| {
        origin.error(
            &format!("env.{key}"),
            format!("template does not parse: {}", e.detail().unwrap_or("syntax error")),
            "templates use minijinja syntax, e.g. \"http://localhost:{{ ports.api }}\"",
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(src: &str) -> Result<Config, ConfigError> {
        let mut c = Config::default();
        c.apply_file(Path::new("iso.toml"), src)?;
        c.check_whole()?;
        Ok(c)
    }

    #[test]
    fn repos_short_and_table_forms_and_bad_names() {
        let c = load("[repos]\nfrontend = \"../app-frontend\"\ndocs = { path = \"~/docs\", base = \"main\", copy = [], link = [\"node_modules\"] }\n").unwrap();
        assert_eq!(c.repos["frontend"].path, Path::new("../app-frontend"));
        assert_eq!(c.repos["frontend"].copy, [".env"], "the short form copies .env like threads.copy");
        assert_eq!(c.repos["docs"].base.as_deref(), Some("main"));
        assert!(c.repos["docs"].copy.is_empty() && c.repos["docs"].link == ["node_modules"]);
        let err = load("[repos]\nmain = \"../x\"\n").unwrap_err();
        assert!(err.to_string().contains("repos.main") && err.hint().unwrap().contains("another name"), "{err}");
        let err = load("[repos]\nFront-End = \"../x\"\n").unwrap_err();
        assert!(err.to_string().contains("repos.Front-End") && err.hint().unwrap().contains("a-z"), "{err}");
        let err = load("[repos]\nfrontend = \"\"\n").unwrap_err();
        assert!(err.to_string().contains("repos.frontend") && err.to_string().contains("no path"), "{err}");
        assert!(load("[repos]\nfrontend = { path = \"../x\", colour = \"red\" }\n").is_err(), "unknown keys of the table are errors");
        // A later layer adds names and replaces the ones it sets.
        let mut c = load("[repos]\nfrontend = \"../a\"\n").unwrap();
        c.apply_file(Path::new("user.toml"), "[repos]\nfrontend = \"../b\"\nmobile = \"../m\"\n").unwrap();
        assert_eq!(c.repos["frontend"].path, Path::new("../b"));
        assert_eq!(c.repos.len(), 2);
    }

    #[test]
    fn api_and_agent_sections() {
        let c = load(
            "[api]\ntoken = \"s3cret\"\nbind = \"127.0.0.1:4000\"\n[agent]\ncommand = [\"sh\", \"agent.sh\", \"{prompt}\"]\ntemplate = \"prompts/a.md\"\n",
        )
        .unwrap();
        assert_eq!(c.api.token.as_deref(), Some("s3cret"));
        assert_eq!(c.api.bind.as_deref(), Some("127.0.0.1:4000"));
        assert_eq!(c.agent.command, ["sh", "agent.sh", "{prompt}"]);
        assert_eq!(c.agent.template.as_deref(), Some(Path::new("prompts/a.md")));
        assert!(!c.to_toml().contains("s3cret"), "the token is never printed");
        let err = load("[api]\nbind = \"nowhere\"\n").unwrap_err().to_string();
        assert!(err.starts_with("iso.toml:2:8:") && err.contains("api.bind"), "{err}");
        let err = load("[agent]\ncommand = []\n").unwrap_err().to_string();
        assert!(err.contains("agent.command"), "{err}");
        assert_eq!(load("[agent]\nenv = [\"ANTHROPIC_API_KEY\", \"AWS_*\"]\n").unwrap().agent.env, ["ANTHROPIC_API_KEY", "AWS_*"]);
        assert_eq!(load("[agent]\nmodes.semi = [\"--permission-mode\", \"acceptEdits\"]\n").unwrap().agent.modes["semi"], ["--permission-mode", "acceptEdits"]);
        assert!(load("[agent]\nmodes.yolo = []\n").unwrap_err().to_string().contains("agent.modes"));
        for bad in ["*", "A-B", "X*Y"] {
            let err = load(&format!("[agent]\nenv = [\"{bad}\"]\n")).unwrap_err().to_string();
            assert!(err.contains("agent.env"), "{bad}: {err}");
        }
        let err = load("[api]\ntokn = \"x\"\n").unwrap_err().to_string();
        assert!(err.contains("tokn"), "{err}");
    }

    #[test]
    fn seed_hold_is_pause_unless_set_to_stop() {
        assert_eq!(load("").unwrap().threads.seed_hold, SeedHold::Pause);
        assert_eq!(load("[threads]\nseed_hold = \"stop\"\n").unwrap().threads.seed_hold, SeedHold::Stop);
        let err = crate::error::with_hint(&load("[threads]\nseed_hold = \"freeze\"\n").unwrap_err());
        assert!(err.starts_with("iso.toml:2:13:") && err.contains("threads.seed_hold") && err.contains("\"pause\""), "{err}");
    }

    #[test]
    fn defaults_serve_without_a_file() {
        let c = Config::load_layers(Path::new("/nonexistent/iso.toml"), None, &BTreeMap::new()).unwrap();
        assert_eq!(c.ports.base, 10000);
        assert_eq!(c.ports.block_size, 100);
        assert_eq!(c.ports.slots["redis"], 1);
        assert_eq!(c.threads.max, 10);
        assert_eq!(c.branch_name(3, "x"), "thread-3-x");
    }

    #[test]
    fn file_values_override_defaults() {
        let c = load("[ports]\nbase = 20000\n[ports.slots]\napi = 5\n[threads]\nmax = 3\n").unwrap();
        assert_eq!(c.ports.base, 20000);
        assert_eq!(c.ports.slots.len(), 1, "slots table is replaced whole");
        assert_eq!(c.threads.max, 3);
    }

    #[test]
    fn unknown_key_names_file_line_and_key() {
        let err = crate::error::with_hint(&load("[ports]\nbase = 20000\nbsae = 3\n").unwrap_err());
        assert!(err.starts_with("iso.toml:3:1:"), "{err}");
        assert!(err.contains("bsae"), "{err}");
        assert!(err.contains("fix:"), "{err}");
    }

    #[test]
    fn wrong_type_points_at_the_value() {
        let err = load("[threads]\n\nmax = \"ten\"\n").unwrap_err();
        match err {
            ConfigError::Invalid(at) => assert_eq!((at.line, at.column), (3, 7)),
            other => panic!("{other}"),
        }
    }

    #[test]
    fn semantic_errors_name_the_key() {
        let err = load("[ports]\nblock_size = 10\n[ports.slots]\napi = 12\n").unwrap_err().to_string();
        assert!(err.contains("iso.toml:4:7") && err.contains("ports.slots.api"), "{err}");
        let err = load("[threads]\nworktree_dir = \"../out\"\n").unwrap_err().to_string();
        assert!(err.contains("threads.worktree_dir") && err.contains(":2:"), "{err}");
        let err = load("[threads]\nbranch_template = \"fixed\"\n").unwrap_err().to_string();
        assert!(err.contains("neither"), "{err}");
        let err = load("[env]\nX = \"{{ ports.api \"\n").unwrap_err().to_string();
        assert!(err.contains("env.X") && err.contains("template"), "{err}");
        let err = load("[ports]\nbase = 65000\n").unwrap_err().to_string();
        assert!(err.contains("past 65535"), "{err}");
    }

    #[test]
    fn environment_wins_and_reports_bad_values() {
        let env: BTreeMap<String, String> =
            [("ISO_PORTS_BASE", "30000"), ("ISO_PORTS_SLOTS", "db=0, cache=1")].into_iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
        let mut c = load("[ports]\nbase = 20000\n").unwrap();
        c.apply_env(&env).unwrap();
        assert_eq!(c.ports.base, 30000);
        assert_eq!(c.ports.slots.keys().collect::<Vec<_>>(), ["cache", "db"]);

        let bad: BTreeMap<String, String> = [("ISO_MAX_THREADS".to_string(), "many".to_string())].into();
        let err = Config::default().apply_env(&bad).unwrap_err().to_string();
        assert!(err.contains("ISO_MAX_THREADS") && err.contains("many"), "{err}");
    }

    #[test]
    fn services_compose_and_docker_sections_parse() {
        let c = load(
            "[services.postgres]\nimage = \"pg:16\"\nport = 5432\nhealthcheck = { tcp = true }\n\
             [services.api]\nbuild = \".\"\nport = 8080\ndepends_on = [\"postgres\"]\n\
             [docker]\nhealth_timeout = 30\nstop_timeout = 1\nlabels = { team = \"web\" }\n",
        )
        .unwrap();
        assert!(c.has_stack());
        assert_eq!(c.services["api"].depends_on, services::DependsOn::healthy(["postgres"]));
        assert_eq!((c.docker.health_timeout, c.docker.stop_timeout, c.docker.publish_host.as_str()), (30, 1, "127.0.0.1"));
        assert_eq!(c.docker.labels["team"], "web");
        assert!(!Config::default().has_stack(), "no stack without [services] or [compose]");
        let c = load("[compose]\nfile = \"docker-compose.yml\"\nslots = { db = \"postgres\" }\n").unwrap();
        assert!(c.has_stack() && c.compose.is_some());
        assert!(c.to_toml().contains("[docker]"));
    }

    #[test]
    fn service_errors_name_file_line_and_key() {
        // A structural problem points at the key's own line.
        let err = crate::error::with_hint(&load("[services.api]\nimage = \"x\"\nport = 80\nhealthcheck = { tcp = true, http = \"/\" }\n").unwrap_err());
        assert!(err.starts_with("iso.toml:4:1:") && err.contains("services.api.healthcheck") && err.contains("fix:"), "{err}");
        let err = load("[services.api]\nport = 80\n").unwrap_err().to_string();
        assert!(err.contains("services.api.image") && err.contains("needs `image` or `build`"), "{err}");
        let err = load("[services.api]\nimage = \"x\"\nvolumes = [\"data:relative\"]\n").unwrap_err().to_string();
        assert!(err.starts_with("iso.toml:3:") && err.contains("services.api.volumes"), "{err}");
        // Unknown keys are refused with their place.
        let err = load("[services.api]\nimage = \"x\"\nimgae = \"y\"\n").unwrap_err().to_string();
        assert!(err.contains("iso.toml:") && err.contains("imgae"), "{err}");
        let err = load("[docker]\npublish_host = \"localhost:1\"\n").unwrap_err().to_string();
        assert!(err.contains("docker.publish_host"), "{err}");
        // Cross-service problems once layers are merged.
        let err = load("[services.api]\nimage = \"x\"\ndepends_on = [\"db\"]\n").unwrap_err().to_string();
        assert!(err.contains("services.api.depends_on") && err.contains("`db`"), "{err}");
        let err = load("[services.cache]\nimage = \"x\"\nport = 6379\n").unwrap_err().to_string();
        assert!(err.contains("services.cache.slot") && err.contains("[ports.slots]"), "{err}");
        let err = load("[services.api]\nimage = \"x\"\n[compose]\nfile = \"c.yml\"\n").unwrap_err().to_string();
        assert!(err.contains("both [services.*] and [compose]"), "{err}");
    }

    #[test]
    fn user_file_overrides_repo_file() {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("iso.toml");
        let user = dir.path().join("user.toml");
        std::fs::write(&repo, "[ports]\nbase = 20000\nblock_size = 50\n").unwrap();
        std::fs::write(&user, "[ports]\nbase = 40000\n").unwrap();
        let c = Config::load_layers(&repo, Some(&user), &BTreeMap::new()).unwrap();
        assert_eq!((c.ports.base, c.ports.block_size), (40000, 50));
        assert_eq!(c.sources, vec![repo, user]);
    }
}
