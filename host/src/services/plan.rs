//! From a stack definition and one thread's values to the exact resources
//! to create: names, labels, rendered environment, port bindings, mounts.
//! Pure: no Docker here, so it is unit-tested and shared by `up` and
//! compose export.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use super::Error;
use crate::config::services::{
    parse_volume, start_order, Condition, ContainerExtras, DockerSettings, EngineHealth, HealthCheck, PullPolicy, Stack, VolumeSource,
};

/// Label keys. Every resource iso creates carries `iso.managed`,
/// `iso.repo`, `iso.repo-id` and `iso.thread`; containers also `iso.service`.
pub const LABEL_MANAGED: &str = "iso.managed";
pub const LABEL_REPO: &str = "iso.repo";
/// The repository's identity (`.git/iso/repo-id`): a path can be reused by
/// another checkout, or by another machine on a shared engine; the id not.
pub const LABEL_REPO_ID: &str = "iso.repo-id";
pub const LABEL_THREAD: &str = "iso.thread";
pub const LABEL_SERVICE: &str = "iso.service";

/// What the services module needs to know about one thread: a plain
/// description, no registry or worktree types.
#[derive(Debug, Clone)]
pub struct ThreadStack<'a> {
    /// The canonical repository root (the `iso.repo` label).
    pub repo_root: &'a Path,
    /// The repository's directory name (sanitized into resource names).
    pub repo_name: &'a str,
    pub thread: u32,
    /// Named ports of the thread (slot to host port).
    pub ports: &'a BTreeMap<String, u16>,
    /// First port of the thread's block (for `offset` ports).
    pub block_start: u16,
    /// Where relative bind mounts and build contexts resolve (the worktree).
    pub workdir: &'a Path,
    /// Values templates can use (`thread.*`, `ports.*`, `repo.*`).
    pub values: serde_json::Value,
    pub stack: &'a Stack,
    /// Extra `.env.thread` templates (from `[compose] export`).
    pub export: &'a BTreeMap<String, String>,
    pub settings: &'a DockerSettings,
}

/// Everything to create for one thread.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    /// `iso-<repo>-t<id>`: the network's name and every resource's prefix.
    pub project: String,
    pub network: String,
    /// Labels on every resource.
    pub labels: BTreeMap<String, String>,
    /// In dependency order.
    pub services: Vec<PlannedService>,
    /// Short name (as in iso.toml) to full volume name.
    pub volumes: BTreeMap<String, String>,
    /// Variables for `.env.thread`.
    pub exports: BTreeMap<String, String>,
    pub publish_host: String,
    /// Where published ports are reached from this machine.
    pub connect_host: String,
    #[serde(skip)]
    pub stop_timeout: Duration,
    #[serde(skip)]
    pub health_timeout: Duration,
    /// What the Compose import could not honour (shown, never dropped).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PlannedService {
    pub name: String,
    pub container: String,
    pub image: ImageSource,
    pub pull: PullPolicy,
    pub command: Option<Vec<String>>,
    pub entrypoint: Option<Vec<String>>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
    pub env: BTreeMap<String, String>,
    /// (container port, host port), TCP.
    pub ports: Vec<(u16, u16)>,
    pub mounts: Vec<Mount>,
    pub health: Option<HealthCheck>,
    #[serde(skip)]
    pub health_interval: Duration,
    /// How long one check may take.
    #[serde(skip)]
    pub health_timeout: Duration,
    /// The healthcheck Docker runs itself (Compose's), if any.
    pub engine_health: Option<EngineHealth>,
    pub depends_on: Vec<(String, Condition)>,
    pub labels: BTreeMap<String, String>,
    pub restart: Option<String>,
    /// `/path[:options]`.
    pub tmpfs: Vec<String>,
    pub extras: ContainerExtras,
}

impl PlannedService {
    /// Whether another service waits for this one to finish (a one-shot
    /// job, such as a migration): it is done when it exits with code 0.
    pub fn is_job(&self, plan: &Plan) -> bool {
        plan.services.iter().any(|o| o.depends_on.iter().any(|(d, c)| d == &self.name && *c == Condition::ServiceCompletedSuccessfully))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum ImageSource {
    Image(String),
    /// Built from a context directory and tagged `tag`.
    Build(BuildPlan),
    /// Both, as Compose has them: the image when it is on the engine or
    /// can be pulled, else built and tagged per thread.
    ImageOrBuild(String, BuildPlan),
}

/// How to build a service's image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BuildPlan {
    pub context: PathBuf,
    pub dockerfile: String,
    /// `iso-<repo>-t<id>-<service>:latest`: per thread, as each thread's
    /// worktree may build something else.
    pub tag: String,
    pub args: BTreeMap<String, String>,
    pub target: Option<String>,
}

impl ImageSource {
    /// The image named in the stack, or the build's tag.
    pub fn reference(&self) -> &str {
        match self {
            ImageSource::Image(i) | ImageSource::ImageOrBuild(i, _) => i,
            ImageSource::Build(b) => &b.tag,
        }
    }

    pub fn build(&self) -> Option<&BuildPlan> {
        match self {
            ImageSource::Image(_) => None,
            ImageSource::Build(b) | ImageSource::ImageOrBuild(_, b) => Some(b),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mount {
    pub source: MountSource,
    pub target: String,
    pub read_only: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum MountSource {
    /// Full name of a per-thread volume, and the name in iso.toml.
    Volume {
        name: String,
        short: String,
    },
    Bind(PathBuf),
}

/// The repository's directory name made safe for Docker resource names.
pub fn sanitize_repo(name: &str) -> String {
    let mut s: String = name.to_lowercase().chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-' { c } else { '-' }).collect();
    s = s.trim_matches(|c: char| !c.is_ascii_alphanumeric()).to_string();
    s.truncate(40);
    if s.is_empty() {
        "repo".into()
    } else {
        s
    }
}

/// `iso-<repo>-t<id>`.
pub fn project_name(repo_name: &str, thread: u32) -> String {
    format!("iso-{}-t{thread}", sanitize_repo(repo_name))
}

/// The volume that holds stack volume `volume` of snapshot `snapshot`.
pub fn snapshot_volume(repo_name: &str, snapshot: &str, volume: &str) -> String {
    format!("iso-{}-snap-{snapshot}-{volume}", sanitize_repo(repo_name))
}

/// Labels that select every resource of one thread (or of the whole
/// repository with `thread = None`), as Docker `label=` filters.
pub fn label_filters(repo_root: &Path, thread: Option<u32>) -> Vec<String> {
    let mut f = vec![format!("{LABEL_MANAGED}=1"), format!("{LABEL_REPO}={}", repo_root.display())];
    if let Some(t) = thread {
        f.push(format!("{LABEL_THREAD}={t}"));
    }
    f
}

/// Label every resource of `plan` with the repository's id.
pub fn label_repo_id(plan: &mut Plan, repo_id: &str) {
    plan.labels.insert(LABEL_REPO_ID.into(), repo_id.into());
    for s in &mut plan.services {
        s.labels.insert(LABEL_REPO_ID.into(), repo_id.into());
    }
}

/// The host that ports published on the engine are reached at: the
/// DOCKER_HOST machine for a tcp engine, else the publish address.
pub fn connect_host(publish_host: &str) -> String {
    if let Ok(h) = std::env::var("DOCKER_HOST") {
        if let Some(rest) = h.strip_prefix("tcp://").or_else(|| h.strip_prefix("http://")).or_else(|| h.strip_prefix("https://")) {
            let host = rest.split('/').next().unwrap_or(rest);
            let host = host.rsplit_once(':').map_or(host, |(h, _)| h);
            if !host.is_empty() {
                return host.trim_matches(|c| c == '[' || c == ']').to_string();
            }
        }
    }
    match publish_host {
        "0.0.0.0" | "" => "127.0.0.1".into(),
        "::" => "::1".into(),
        h => h.to_string(),
    }
}

fn render(template: &str, ctx: &serde_json::Value, what: impl Fn() -> String) -> Result<String, Error> {
    let mut env = minijinja::Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    env.render_str(template, ctx).map_err(|e| Error::Template { what: what(), message: e.to_string() })
}

fn with(base: &serde_json::Value, extra: &[(&str, serde_json::Value)]) -> serde_json::Value {
    let mut v = match base {
        serde_json::Value::Object(m) => m.clone(),
        _ => serde_json::Map::new(),
    };
    for (k, x) in extra {
        v.insert(k.to_string(), x.clone());
    }
    serde_json::Value::Object(v)
}

/// Work out the resources of one thread's stack.
pub fn plan(t: &ThreadStack) -> Result<Plan, Error> {
    let project = project_name(t.settings.name.as_deref().unwrap_or(t.repo_name), t.thread);
    let mut labels = t.settings.labels.clone();
    labels.insert(LABEL_MANAGED.into(), "1".into());
    labels.insert(LABEL_REPO.into(), t.repo_root.display().to_string());
    labels.insert(LABEL_THREAD.into(), t.thread.to_string());
    let connect = connect_host(&t.settings.publish_host);
    let order = start_order(t.stack).map_err(|p| Error::Spec { service: p.service, message: format!("{} ({})", p.message, p.hint) })?;

    // Host ports of every service first: environment templates may use
    // `services.<name>.port`.
    let mut host_ports: BTreeMap<String, Vec<(u16, u16)>> = BTreeMap::new();
    for name in &order {
        let s = &t.stack[name];
        let mut ports = Vec::new();
        if let Some(c) = s.port {
            let slot = s.slot.as_deref().unwrap_or(name);
            let host =
                *t.ports.get(slot).ok_or_else(|| Error::Spec { service: name.clone(), message: format!("port slot `{slot}` is not in [ports.slots]") })?;
            ports.push((c, host));
        }
        for p in &s.ports {
            let host = match (&p.slot, p.offset) {
                (Some(slot), _) => {
                    *t.ports.get(slot).ok_or_else(|| Error::Spec { service: name.clone(), message: format!("port slot `{slot}` is not in [ports.slots]") })?
                }
                (None, Some(off)) => t.block_start.saturating_add(off),
                (None, None) => continue,
            };
            ports.push((p.container, host));
        }
        host_ports.insert(name.clone(), ports);
    }
    // A service's environment as plain values: Compose services' are
    // literals (`{% raw %}`-wrapped), which a template may quote
    // (`{{ services.db.environment.POSTGRES_PASSWORD }}`).
    let literal_env = |name: &str| -> BTreeMap<String, String> { t.stack[name].environment.iter().filter_map(|(k, v)| Some((k.clone(), unraw(v)?))).collect() };
    let services_value: serde_json::Value = host_ports
        .iter()
        .map(|(n, p)| {
            let port = p.first().map(|(_, h)| *h);
            (n.clone(), serde_json::json!({ "port": port, "host": connect, "container": format!("{project}-{n}"), "environment": literal_env(n) }))
        })
        .collect::<serde_json::Map<_, _>>()
        .into();
    let base = with(&t.values, &[("host", connect.clone().into()), ("services", services_value)]);

    let mut volumes = BTreeMap::new();
    let mut services = Vec::new();
    let mut exports = BTreeMap::new();
    for name in &order {
        let s = &t.stack[name];
        let ports = host_ports[name].clone();
        let first_port = ports.first().map(|(_, h)| serde_json::Value::from(*h)).unwrap_or(serde_json::Value::Null);
        let ctx = with(&base, &[("port", first_port), ("service", name.clone().into())]);
        let mut env = BTreeMap::new();
        for (k, v) in &s.environment {
            env.insert(k.clone(), render(v, &ctx, || format!("services.{name}.environment.{k}"))?);
        }
        for (k, v) in &s.export {
            exports.insert(k.clone(), render(v, &ctx, || format!("services.{name}.export.{k}"))?);
        }
        let mut mounts = Vec::new();
        for v in &s.volumes {
            let entry = parse_volume(v).map_err(|m| Error::Spec { service: name.clone(), message: m })?;
            let source = match entry.source {
                VolumeSource::Named(short) => {
                    let full = format!("{project}-{short}");
                    volumes.insert(short.clone(), full.clone());
                    MountSource::Volume { name: full, short }
                }
                VolumeSource::Path(p) => MountSource::Bind(resolve(t.workdir, &p)),
            };
            mounts.push(Mount { source, target: entry.target, read_only: entry.read_only });
        }
        let build = s.build.as_ref().map(|ctx_dir| BuildPlan {
            context: resolve(t.workdir, ctx_dir),
            dockerfile: s.dockerfile.clone().unwrap_or_else(|| "Dockerfile".into()),
            tag: format!("{project}-{name}:latest"),
            args: s.container.build_args.clone(),
            target: s.container.build_target.clone(),
        });
        let pull = s.pull_policy.unwrap_or_default();
        let image = match (&s.image, build) {
            (Some(i), Some(b)) if pull != PullPolicy::Build => ImageSource::ImageOrBuild(i.clone(), b),
            (_, Some(b)) => ImageSource::Build(b),
            (Some(i), None) => ImageSource::Image(i.clone()),
            (None, None) => return Err(Error::Spec { service: name.clone(), message: "needs `image` or `build`".into() }),
        };
        let (health, health_interval, health_timeout) = match &s.healthcheck {
            Some(h) => (Some(h.check().map_err(|m| Error::Spec { service: name.clone(), message: m })?), h.interval(), h.timeout()),
            None => (None, Duration::from_millis(100), Duration::from_secs(30)),
        };

        // The service's own labels first: iso's win on a clash.
        let mut svc_labels = s.labels.clone();
        svc_labels.extend(labels.clone());
        svc_labels.insert(LABEL_SERVICE.into(), name.clone());
        // So that `docker-compose -p <project>` finds them (see `iso compose`).
        svc_labels.insert("com.docker.compose.project".into(), project.clone());
        svc_labels.insert("com.docker.compose.service".into(), name.clone());
        svc_labels.insert("com.docker.compose.oneoff".into(), "False".into());
        svc_labels.insert("com.docker.compose.container-number".into(), "1".into());
        services.push(PlannedService {
            name: name.clone(),
            container: format!("{project}-{name}"),
            image,
            pull,
            command: s.command.as_ref().map(|c| c.args()),
            entrypoint: s.entrypoint.as_ref().map(|c| c.args()),
            working_dir: s.working_dir.clone(),
            user: s.user.clone(),
            env,
            ports,
            mounts,
            health,
            health_interval,
            health_timeout,
            engine_health: s.healthcheck.as_ref().and_then(|h| h.engine.clone()),
            depends_on: s.depends_on.0.iter().map(|(d, c)| (d.clone(), *c)).collect(),
            labels: svc_labels,
            restart: s.restart.clone(),
            tmpfs: s.tmpfs.clone(),
            extras: s.container.clone(),
        });
    }
    for (k, v) in t.export {
        exports.insert(k.clone(), render(v, &base, || format!("compose.export.{k}"))?);
    }
    Ok(Plan {
        network: project.clone(),
        project,
        labels,
        services,
        volumes,
        exports,
        publish_host: t.settings.publish_host.clone(),
        connect_host: connect,
        stop_timeout: Duration::from_secs(t.settings.stop_timeout),
        health_timeout: Duration::from_secs(t.settings.health_timeout),
        warnings: Vec::new(),
    })
}

/// The value of a `{% raw %}...{% endraw %}` literal (how imported Compose
/// values are kept), or of a template without any markup; `None` for a
/// real template.
fn unraw(v: &str) -> Option<String> {
    if let Some(inner) = v.strip_prefix("{% raw %}").and_then(|r| r.strip_suffix("{% endraw %}")) {
        return Some(inner.to_string());
    }
    (!v.contains("{{") && !v.contains("{%") && !v.contains("{#")).then(|| v.to_string())
}

fn resolve(workdir: &Path, p: &Path) -> PathBuf {
    let s = p.to_string_lossy();
    if let Some(rest) = s.strip_prefix("~/") {
        if let Some(home) = dirs::home_dir() {
            return home.join(rest);
        }
    }
    let joined = if p.is_absolute() { p.to_path_buf() } else { workdir.join(p) };
    // Lexically drop `.` components so names stay readable.
    joined.components().filter(|c| !matches!(c, std::path::Component::CurDir)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::services::{HealthSpec, ServiceSpec};

    fn stack() -> Stack {
        let mut s = Stack::new();
        s.insert(
            "postgres".into(),
            ServiceSpec {
                image: Some("pg:1".into()),
                port: Some(5432),
                environment: [("POSTGRES_DB".to_string(), "app_{{ thread.id }}".to_string())].into(),
                volumes: vec!["pgdata:/var/lib/pg".into(), "./init:/docker-entrypoint.d:ro".into()],
                export: [("DATABASE_URL".to_string(), "postgresql://postgres@{{ host }}:{{ port }}/app_{{ thread.id }}".to_string())].into(),
                healthcheck: Some(HealthSpec { tcp: Some(true), ..Default::default() }),
                ..Default::default()
            },
        );
        s.insert(
            "api".into(),
            ServiceSpec {
                build: Some(".".into()),
                port: Some(8080),
                environment: [("DB".to_string(), "postgres:5432 {{ services.postgres.port }}".to_string())].into(),
                depends_on: crate::config::services::DependsOn::healthy(["postgres"]),
                ..Default::default()
            },
        );
        s
    }

    #[test]
    fn names_labels_ports_and_exports_follow_the_thread() {
        let stack = stack();
        let ports: BTreeMap<String, u16> = [("postgres".to_string(), 20100), ("api".to_string(), 20102)].into();
        let settings = DockerSettings::default();
        let export = BTreeMap::new();
        let t = ThreadStack {
            repo_root: Path::new("/src/My App"),
            repo_name: "My App",
            thread: 1,
            ports: &ports,
            block_start: 20100,
            workdir: Path::new("/src/My App/.worktrees/thread-1"),
            values: serde_json::json!({"thread": {"id": 1}, "ports": ports}),
            stack: &stack,
            export: &export,
            settings: &settings,
        };
        std::env::remove_var("DOCKER_HOST");
        let mut p = plan(&t).unwrap();
        label_repo_id(&mut p, "ab12");
        assert_eq!(p.labels[LABEL_REPO_ID], "ab12");
        assert!(p.services.iter().all(|s| s.labels[LABEL_REPO_ID] == "ab12"), "every container carries the id");
        assert_eq!(p.project, "iso-my-app-t1");
        assert_eq!(p.services.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["postgres", "api"]);
        let pg = &p.services[0];
        assert_eq!(pg.container, "iso-my-app-t1-postgres");
        assert_eq!(pg.ports, [(5432, 20100)]);
        assert_eq!(pg.env["POSTGRES_DB"], "app_1");
        assert_eq!(pg.labels[LABEL_SERVICE], "postgres");
        assert_eq!(pg.labels[LABEL_REPO], "/src/My App");
        assert_eq!(pg.mounts[0].source, MountSource::Volume { name: "iso-my-app-t1-pgdata".into(), short: "pgdata".into() });
        assert_eq!(pg.mounts[1].source, MountSource::Bind("/src/My App/.worktrees/thread-1/init".into()));
        assert!(pg.mounts[1].read_only);
        assert_eq!(p.exports["DATABASE_URL"], "postgresql://postgres@127.0.0.1:20100/app_1");
        let api = &p.services[1];
        assert_eq!(api.env["DB"], "postgres:5432 20100");
        assert_eq!(
            api.image,
            ImageSource::Build(BuildPlan {
                context: "/src/My App/.worktrees/thread-1".into(),
                dockerfile: "Dockerfile".into(),
                tag: "iso-my-app-t1-api:latest".into(),
                args: BTreeMap::new(),
                target: None
            })
        );
        assert_eq!(p.volumes.len(), 1);
    }

    #[test]
    fn repo_names_are_sanitized() {
        assert_eq!(sanitize_repo("My Repo!"), "my-repo");
        assert_eq!(sanitize_repo("..."), "repo");
        assert_eq!(project_name("api_server", 12), "iso-api_server-t12");
    }
}
