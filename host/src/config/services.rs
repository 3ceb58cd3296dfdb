//! The stack definition: what `[services.<name>]`, `[compose]` and
//! `[docker]` in `iso.toml` say. Plain data; [`crate::config`] parses and
//! locates errors, this module checks what a stack must satisfy.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// One service of a stack (`[services.<name>]`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSpec {
    /// Image to run; pulled when missing (see `pull_policy`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Build context (a directory with a Dockerfile, relative to the
    /// thread's worktree), instead of `image`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build: Option<PathBuf>,
    /// Dockerfile inside the build context (default `Dockerfile`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dockerfile: Option<String>,
    /// The port the service listens on inside the container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// The port slot (`[ports.slots]`) it is published on; default: the
    /// service's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot: Option<String>,
    /// More published ports.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortSpec>,
    /// Container environment; values are templates (`{{ ports.api }}`,
    /// `{{ thread.id }}`, ...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub environment: BTreeMap<String, String>,
    /// Command: a list, or a string split like a shell would.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<CommandSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<CommandSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// `NAME:/path[:ro]` (a named volume, made per thread) or
    /// `./dir:/path[:ro]` (a bind mount, relative to the worktree).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<HealthSpec>,
    /// Services that must be healthy (a list), or each in its own
    /// condition (a table: `service_healthy`, `service_started`,
    /// `service_completed_successfully`), before this one starts.
    #[serde(default, skip_serializing_if = "DependsOn::is_empty")]
    pub depends_on: DependsOn,
    /// When to pull `image`: `missing` (default: when it is not on the
    /// engine), `always`, `never`, `build` (build it, never pull).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_policy: Option<PullPolicy>,
    /// Docker's restart policy: `no`, `always`, `unless-stopped`,
    /// `on-failure[:N]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart: Option<String>,
    /// Labels on the container (besides iso's own).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// `/path[:options]` tmpfs mounts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tmpfs: Vec<String>,
    /// What a Compose file says that `iso.toml` has no key for (set by the
    /// compose import only).
    #[serde(skip)]
    pub container: ContainerExtras,
    /// Variables this service adds to `.env.thread` (templates; also
    /// `{{ host }}` and `{{ port }}`, this service's published port).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub export: BTreeMap<String, String>,
}

/// A published port: the container port and where in the thread's block
/// it goes (a named slot or an offset).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortSpec {
    pub container: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum CommandSpec {
    Line(String),
    Args(Vec<String>),
}

impl CommandSpec {
    /// The argument vector.
    pub fn args(&self) -> Vec<String> {
        match self {
            CommandSpec::Args(a) => a.clone(),
            CommandSpec::Line(s) => split_words(s),
        }
    }
}

/// How iso decides that a service is ready. Exactly one of `tcp`, `http`
/// and `command`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthSpec {
    /// Connect to the published port (and see the service keep the
    /// connection open).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<bool>,
    /// GET this path on the published port; 2xx and 3xx are healthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<String>,
    /// Run this in the container; exit code 0 is healthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<CommandSpec>,
    /// Milliseconds between checks (default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_ms: Option<u64>,
    /// Milliseconds one check may take before it counts as failed
    /// (default 30000, Docker's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// The healthcheck Docker itself runs in the container (what `docker
    /// ps` shows), with Compose's timings; set by the compose import.
    #[serde(skip)]
    pub engine: Option<EngineHealth>,
}

/// A Compose healthcheck as Docker runs it: its command and timings
/// (milliseconds; `None`: Docker's default).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct EngineHealth {
    /// `["CMD", ...]` or `["CMD-SHELL", "..."]`.
    pub test: Vec<String>,
    pub interval_ms: Option<u64>,
    pub timeout_ms: Option<u64>,
    pub retries: Option<u64>,
    pub start_period_ms: Option<u64>,
}

/// Container settings a Compose file can give and `iso.toml` cannot.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ContainerExtras {
    pub hostname: Option<String>,
    /// `host=ip` (or `host:ip`).
    pub extra_hosts: Vec<String>,
    pub stop_signal: Option<String>,
    /// Seconds before SIGKILL (`stop_grace_period`), instead of `[docker] stop_timeout`.
    pub stop_timeout: Option<u64>,
    pub tty: bool,
    pub stdin_open: bool,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub privileged: bool,
    pub build_args: BTreeMap<String, String>,
    pub build_target: Option<String>,
    /// The `Z`/`z` relabelling or `nocopy` of a mount, by target.
    pub mount_options: BTreeMap<String, String>,
}

/// When iso pulls a service's image (Compose's `pull_policy`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PullPolicy {
    /// Pull when the image is not on the engine (Compose's default).
    #[default]
    Missing,
    Always,
    Never,
    /// Build it (a service with `build`), never pull.
    Build,
}

/// Under which condition a dependency lets a service start (Compose's
/// `depends_on.<name>.condition`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Condition {
    /// Its healthcheck passes and its published ports accept connections.
    ServiceHealthy,
    /// Its container runs.
    ServiceStarted,
    /// It ran and exited with code 0 (a migration, a seed job).
    ServiceCompletedSuccessfully,
}

impl Condition {
    pub fn as_str(self) -> &'static str {
        match self {
            Condition::ServiceHealthy => "service_healthy",
            Condition::ServiceStarted => "service_started",
            Condition::ServiceCompletedSuccessfully => "service_completed_successfully",
        }
    }
}

/// `depends_on`: a list of services that must be healthy, or a table of
/// service to [`Condition`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DependsOn(pub BTreeMap<String, Condition>);

impl DependsOn {
    /// Every one of `names` healthy.
    pub fn healthy<S: Into<String>>(names: impl IntoIterator<Item = S>) -> DependsOn {
        DependsOn(names.into_iter().map(|n| (n.into(), Condition::ServiceHealthy)).collect())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn names(&self) -> impl Iterator<Item = &String> {
        self.0.keys()
    }
}

impl Serialize for DependsOn {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.0.values().all(|c| *c == Condition::ServiceHealthy) {
            s.collect_seq(self.0.keys())
        } else {
            s.collect_map(self.0.iter())
        }
    }
}

impl<'de> Deserialize<'de> for DependsOn {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            List(Vec<String>),
            Table(BTreeMap<String, Condition>),
        }
        match Form::deserialize(d)? {
            Form::List(l) => Ok(DependsOn::healthy(l)),
            Form::Table(t) => Ok(DependsOn(t)),
        }
    }
}

/// The check kinds, once validated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum HealthCheck {
    Tcp,
    Http(String),
    Command(Vec<String>),
}

impl HealthSpec {
    pub fn check(&self) -> Result<HealthCheck, String> {
        let kinds = [self.tcp == Some(true), self.http.is_some(), self.command.is_some()];
        match kinds {
            [true, false, false] => Ok(HealthCheck::Tcp),
            [false, true, false] => Ok(HealthCheck::Http(self.http.clone().unwrap_or_default())),
            [false, false, true] => {
                let args = self.command.as_ref().map(CommandSpec::args).unwrap_or_default();
                if args.is_empty() {
                    Err("healthcheck.command is empty".into())
                } else {
                    Ok(HealthCheck::Command(args))
                }
            }
            _ => Err("a healthcheck needs exactly one of tcp = true, http = \"/path\" or command = [...]".into()),
        }
    }

    pub fn interval(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.interval_ms.unwrap_or(100).max(10))
    }

    pub fn timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.timeout_ms.unwrap_or(30_000).max(10))
    }
}

/// `[compose]`: take the stack from the team's Compose project.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComposeSpec {
    /// The Compose files, relative to the repository root, in the order
    /// Compose lays them over each other (a string or a list). Empty:
    /// Compose's discovery (`COMPOSE_FILE`, else compose.yaml, compose.yml,
    /// docker-compose.yml or docker-compose.yaml and its override file).
    #[serde(default, deserialize_with = "one_or_many", skip_serializing_if = "Vec::is_empty")]
    pub file: Vec<PathBuf>,
    /// The project directory (relative paths, `.env`), relative to the
    /// repository root; default: the first file's directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project_directory: Option<PathBuf>,
    /// Profiles to enable besides the default (services without
    /// `profiles`); default: `COMPOSE_PROFILES`, as Compose does.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub profiles: Vec<String>,
    /// Compose service name to port slot (default: a slot of the same name,
    /// else the next free offset in the block).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub slots: BTreeMap<String, String>,
    /// Variables added to `.env.thread` (templates, as `[env]`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub export: BTreeMap<String, String>,
    /// Only these compose services (default: all).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<String>,
}

fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<PathBuf>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Files {
        One(PathBuf),
        Many(Vec<PathBuf>),
    }
    Ok(match Files::deserialize(d)? {
        Files::One(p) => vec![p],
        Files::Many(l) => l,
    })
}

/// `[docker]`: how iso talks to the engine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DockerSettings {
    /// Seconds init waits for every service to become healthy.
    pub health_timeout: u64,
    /// Seconds a container gets to stop before it is killed.
    pub stop_timeout: u64,
    /// Host address ports are published on.
    pub publish_host: String,
    /// Extra labels put on every container, volume and network.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// The `<repo>` part of resource names (default: the repository's
    /// directory name). Two checkouts with the same directory name on one
    /// engine need different names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl Default for DockerSettings {
    fn default() -> Self {
        DockerSettings { health_timeout: 120, stop_timeout: 3, publish_host: "127.0.0.1".into(), labels: BTreeMap::new(), name: None }
    }
}

/// A stack: services by name.
pub type Stack = BTreeMap<String, ServiceSpec>;

/// A problem with one key of one service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecProblem {
    pub service: String,
    /// The key inside the service table, e.g. `healthcheck`.
    pub key: &'static str,
    pub message: String,
    pub hint: String,
}

fn problem(service: &str, key: &'static str, message: impl Into<String>, hint: impl Into<String>) -> SpecProblem {
    SpecProblem { service: service.to_string(), key, message: message.into(), hint: hint.into() }
}

/// Whether `name` may name a service (it becomes part of container names
/// and a DNS name on the thread's network).
pub fn valid_service_name(name: &str) -> bool {
    name.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        && name.len() <= 40
}

/// Checks on one service alone.
pub fn check_service(name: &str, s: &ServiceSpec) -> Result<(), SpecProblem> {
    if !valid_service_name(name) {
        return Err(problem(
            name,
            "name",
            format!("`{name}` is not a valid service name"),
            "use lowercase letters, digits, `-` and `_` (it becomes part of container names)",
        ));
    }
    match (&s.image, &s.build) {
        (None, None) => return Err(problem(name, "image", "needs `image` or `build`", "e.g. image = \"postgres:16\"")),
        (Some(i), _) if i.trim().is_empty() => return Err(problem(name, "image", "`image` is empty", "e.g. image = \"postgres:16\"")),
        _ => {}
    }
    if s.pull_policy == Some(PullPolicy::Build) && s.build.is_none() {
        return Err(problem(
            name,
            "pull_policy",
            "`pull_policy = \"build\"` without `build`",
            "add build = \"<context dir>\", or use missing, always or never",
        ));
    }
    if let Some(r) = &s.restart {
        let ok =
            matches!(r.as_str(), "no" | "always" | "unless-stopped" | "on-failure") || r.strip_prefix("on-failure:").is_some_and(|n| n.parse::<u32>().is_ok());
        if !ok {
            return Err(problem(name, "restart", format!("`{r}` is not a restart policy"), "use no, always, unless-stopped or on-failure[:N]"));
        }
    }
    if let Some(t) = s.tmpfs.iter().find(|t| !t.starts_with('/')) {
        return Err(problem(name, "tmpfs", format!("`{t}` is not an absolute path in the container"), "e.g. tmpfs = [\"/run\", \"/tmp:size=64m\"]"));
    }
    if s.slot.is_some() && s.port.is_none() {
        return Err(problem(name, "slot", "`slot` without `port`", "add the container port, e.g. port = 5432"));
    }
    for p in &s.ports {
        if p.slot.is_some() == p.offset.is_some() {
            return Err(problem(
                name,
                "ports",
                format!("port {} needs exactly one of `slot` and `offset`", p.container),
                "e.g. { container = 9001, offset = 10 }",
            ));
        }
    }
    for key in s.environment.keys().chain(s.export.keys()) {
        let ok = key.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_') && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !ok {
            return Err(problem(name, "environment", format!("`{key}` is not a valid variable name"), "use letters, digits and `_`"));
        }
    }
    for (key, templates) in [("environment", &s.environment), ("export", &s.export)] {
        for (var, t) in templates {
            if let Err(e) = minijinja::Environment::new().template_from_str(t) {
                return Err(problem(
                    name,
                    key,
                    format!("template for `{var}` does not parse: {}", e.detail().unwrap_or("syntax error")),
                    "templates use minijinja syntax, e.g. \"{{ ports.api }}\"",
                ));
            }
        }
    }
    if let Some(c) = &s.command {
        if c.args().is_empty() {
            return Err(problem(name, "command", "`command` is empty", "give the program and its arguments, or drop the key"));
        }
    }
    for v in &s.volumes {
        parse_volume(v).map_err(|m| problem(name, "volumes", m, "write NAME:/path or ./dir:/path, optionally with :ro"))?;
    }
    if let Some(h) = &s.healthcheck {
        let check = h.check().map_err(|m| problem(name, "healthcheck", m, "e.g. healthcheck = { tcp = true }"))?;
        if matches!(check, HealthCheck::Tcp | HealthCheck::Http(_)) && s.port.is_none() && s.ports.is_empty() {
            return Err(problem(name, "healthcheck", "a tcp or http check needs a published `port`", "add port = ..., or use command = [...]"));
        }
    }
    Ok(())
}

/// Checks across services, once every layer is merged: dependencies exist
/// and form no cycle, slots exist.
pub fn check_stack(stack: &Stack, slots: &BTreeMap<String, u16>, block_size: u16) -> Result<(), SpecProblem> {
    for (name, s) in stack {
        check_service(name, s)?;
        for d in s.depends_on.names() {
            if !stack.contains_key(d) {
                let known: Vec<&str> = stack.keys().map(String::as_str).collect();
                return Err(problem(name, "depends_on", format!("depends on `{d}`, which is not a service"), format!("services are: {}", known.join(", "))));
            }
        }
        if s.port.is_some() {
            let slot = s.slot.as_deref().unwrap_or(name);
            if !slots.contains_key(slot) {
                return Err(problem(
                    name,
                    "slot",
                    format!("port slot `{slot}` is not in [ports.slots]"),
                    format!("add `{slot} = <offset>` to [ports.slots], or set slot = one of: {}", slots.keys().cloned().collect::<Vec<_>>().join(", ")),
                ));
            }
        }
        for p in &s.ports {
            if let Some(slot) = &p.slot {
                if !slots.contains_key(slot) {
                    return Err(problem(name, "ports", format!("port slot `{slot}` is not in [ports.slots]"), "add it to [ports.slots]"));
                }
            }
            if let Some(off) = p.offset {
                if off >= block_size {
                    return Err(problem(name, "ports", format!("offset {off} is outside a block of {block_size} ports"), "use a smaller offset"));
                }
            }
        }
    }
    start_order(stack).map(|_| ())
}

/// Services in an order where each comes after its dependencies.
pub fn start_order(stack: &Stack) -> Result<Vec<String>, SpecProblem> {
    let mut done: Vec<String> = Vec::new();
    let mut placed = BTreeSet::new();
    while done.len() < stack.len() {
        let ready: Vec<&String> = stack
            .iter()
            .filter(|(n, s)| !placed.contains(*n) && s.depends_on.names().all(|d| placed.contains(d) || !stack.contains_key(d)))
            .map(|(n, _)| n)
            .collect();
        if ready.is_empty() {
            let left: Vec<&str> = stack.keys().filter(|n| !placed.contains(*n)).map(String::as_str).collect();
            return Err(problem(left[0], "depends_on", format!("dependency cycle among {}", left.join(", ")), "remove one of the depends_on entries"));
        }
        for n in ready {
            placed.insert(n.clone());
            done.push(n.clone());
        }
    }
    Ok(done)
}

/// A parsed `volumes` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeEntry {
    /// A named volume (made per thread) or a host path.
    pub source: VolumeSource,
    pub target: String,
    pub read_only: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VolumeSource {
    Named(String),
    /// Relative paths are relative to the thread's worktree.
    Path(PathBuf),
}

pub fn parse_volume(v: &str) -> Result<VolumeEntry, String> {
    let parts: Vec<&str> = v.split(':').collect();
    let (src, target, mode) = match parts.as_slice() {
        [s, t] => (*s, *t, None),
        [s, t, m] => (*s, *t, Some(*m)),
        _ => return Err(format!("`{v}` is not SOURCE:TARGET[:ro]")),
    };
    if !target.starts_with('/') {
        return Err(format!("`{v}`: the target `{target}` must be an absolute path in the container"));
    }
    let read_only = match mode {
        None | Some("rw") => false,
        Some("ro") => true,
        Some(m) => return Err(format!("`{v}`: unknown mode `{m}` (use ro or rw)")),
    };
    let source = if src.starts_with('.') || src.starts_with('/') || src.starts_with('~') {
        VolumeSource::Path(PathBuf::from(src))
    } else if !src.is_empty() && src.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
        VolumeSource::Named(src.to_string())
    } else {
        return Err(format!("`{v}`: `{src}` is neither a volume name nor a path"));
    };
    Ok(VolumeEntry { source, target: target.to_string(), read_only })
}

/// Split a command line into words the way a POSIX shell would for plain
/// words, single and double quotes and backslashes (no expansion).
pub fn split_words(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                for c in chars.by_ref() {
                    if c == '\'' {
                        break;
                    }
                    cur.push(c);
                }
            }
            '"' => {
                in_word = true;
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => {
                            if let Some(n) = chars.next() {
                                cur.push(n);
                            }
                        }
                        c => cur.push(c),
                    }
                }
            }
            '\\' => {
                in_word = true;
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        out.push(cur);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(image: &str) -> ServiceSpec {
        ServiceSpec { image: Some(image.into()), ..Default::default() }
    }

    #[test]
    fn words_split_like_a_shell() {
        assert_eq!(split_words("busybox httpd -f -p 8080"), ["busybox", "httpd", "-f", "-p", "8080"]);
        assert_eq!(split_words(r#"sh -c 'echo "a b"' x\ y"#), ["sh", "-c", "echo \"a b\"", "x y"]);
        assert!(split_words("   ").is_empty());
    }

    #[test]
    fn volumes_are_named_or_paths() {
        let v = parse_volume("pgdata:/var/lib/pg").unwrap();
        assert_eq!(v.source, VolumeSource::Named("pgdata".into()));
        let v = parse_volume("./conf:/etc/app:ro").unwrap();
        assert_eq!((v.source, v.read_only), (VolumeSource::Path("./conf".into()), true));
        assert!(parse_volume("data:relative").is_err());
        assert!(parse_volume("a:/b:rx").is_err());
    }

    #[test]
    fn stack_checks_dependencies_slots_and_cycles() {
        let slots: BTreeMap<String, u16> = [("postgres".to_string(), 0), ("api".to_string(), 2)].into();
        let mut stack = Stack::new();
        stack.insert("postgres".into(), ServiceSpec { port: Some(5432), ..svc("pg") });
        stack.insert("api".into(), ServiceSpec { port: Some(80), depends_on: DependsOn::healthy(["postgres"]), ..svc("api") });
        check_stack(&stack, &slots, 100).unwrap();
        assert_eq!(start_order(&stack).unwrap(), ["postgres", "api"]);

        let mut bad = stack.clone();
        bad.get_mut("postgres").unwrap().depends_on = DependsOn::healthy(["api"]);
        assert!(check_stack(&bad, &slots, 100).unwrap_err().message.contains("cycle"));

        let mut bad = stack.clone();
        bad.insert("redis".into(), ServiceSpec { port: Some(6379), ..svc("redis") });
        let p = check_stack(&bad, &slots, 100).unwrap_err();
        assert_eq!((p.service.as_str(), p.key), ("redis", "slot"));

        let mut bad = stack;
        bad.get_mut("api").unwrap().depends_on = DependsOn::healthy(["db"]);
        assert!(check_stack(&bad, &slots, 100).unwrap_err().message.contains("`db`"));
    }

    #[test]
    fn a_service_needs_one_image_source_and_one_check() {
        assert_eq!(check_service("x", &ServiceSpec::default()).unwrap_err().key, "image");
        let both = ServiceSpec { build: Some(".".into()), ..svc("a") };
        assert!(check_service("x", &both).is_ok(), "image and build: the image when it exists, else built");
        let build_only = ServiceSpec { pull_policy: Some(PullPolicy::Build), ..svc("a") };
        assert_eq!(check_service("x", &build_only).unwrap_err().key, "pull_policy");
        let restart = ServiceSpec { restart: Some("sometimes".into()), ..svc("a") };
        assert_eq!(check_service("x", &restart).unwrap_err().key, "restart");
        let two_checks =
            ServiceSpec { port: Some(1), healthcheck: Some(HealthSpec { tcp: Some(true), http: Some("/".into()), ..Default::default() }), ..svc("a") };
        assert_eq!(check_service("x", &two_checks).unwrap_err().key, "healthcheck");
        assert_eq!(check_service("Bad Name", &svc("a")).unwrap_err().key, "name");
    }
}
