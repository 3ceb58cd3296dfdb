//! A team's Compose project as an iso stack (the files are never edited),
//! and what iso started written back as `docker-compose.thread.yml`.
//!
//! Two loaders give the same normalised [`model::Model`]: the real Compose
//! v2 (`config --format json`, [`binary`]) where one is on the machine, and
//! iso's own ([`builtin`]: discovery, `.env`, interpolation, `extends`,
//! `include`, profiles, normalising) where none is. The corpus test
//! (tests/e2e/compose.rs) holds the second to the first. [`review`] names
//! every key iso cannot honour; [`convert`] turns the model into the
//! [`Stack`] the planner runs, with the thread's ports.

pub mod binary;
mod builtin;
pub mod discover;
mod dotenv;
mod export;
mod interpolate;
mod merge;
pub mod model;
mod normalize;
mod review;
mod suggest;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use super::Error;
use crate::config::services::{CommandSpec, ComposeSpec, Condition, DependsOn, EngineHealth, HealthSpec, PortSpec, PullPolicy, ServiceSpec, Stack};
pub use export::{export, THREAD_FILE};
use model::{Model, Service};
pub use suggest::suggest;

/// A problem in a Compose file, with the file (and line, when known).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadError {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub message: String,
}

impl LoadError {
    pub fn new(file: &Path, message: String) -> LoadError {
        LoadError { file: file.to_path_buf(), line: None, message }
    }
}

impl From<LoadError> for Error {
    fn from(e: LoadError) -> Error {
        let path = match e.line {
            Some(l) => PathBuf::from(format!("{}:{l}", e.file.display())),
            None => e.file,
        };
        Error::Compose { path, message: e.message }
    }
}

/// Which loader reads the project.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loader<'a> {
    /// The Compose v2 binary at this path.
    Compose(&'a Path),
    /// iso's own.
    Builtin,
}

impl Loader<'static> {
    /// The real Compose when one is found, else iso's own.
    pub fn preferred() -> Loader<'static> {
        binary::find().map(Loader::Compose).unwrap_or(Loader::Builtin)
    }
}

/// A loaded project.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub model: Model,
    pub files: Vec<PathBuf>,
    pub project_dir: PathBuf,
    /// Compose's own warnings (unset variables, ...) and discovery notes.
    pub warnings: Vec<String>,
}

/// Find and load the project under `root` (the thread's worktree) with
/// `env` as the interpolation environment (the project's `.env` is read
/// under it, as Compose does).
pub fn load(root: &Path, spec: &ComposeSpec, env: &BTreeMap<String, String>, loader: Loader) -> Result<Loaded, Error> {
    let found = discover::find(root, spec, env).map_err(|n| Error::Compose { path: n.path, message: n.message })?;
    // One command often plans a thread's stack more than once (its
    // .env.thread, its hooks' data, its services); Compose's `config` costs
    // ~100 ms a run, so the last result is kept for two seconds while the
    // files, settings and environment are the same (files it reads besides
    // them, such as an `env_file`, may be edited meanwhile: hence the time
    // limit, for `iso serve`).
    let key = fingerprint(&found, spec, env, loader);
    static LAST: std::sync::Mutex<Option<(u64, std::time::Instant, Loaded)>> = std::sync::Mutex::new(None);
    if let Some((k, at, l)) = LAST.lock().ok().and_then(|g| g.clone()) {
        if k == key && at.elapsed() < std::time::Duration::from_secs(2) {
            return Ok(l);
        }
    }
    let (model, mut warnings) = match loader {
        Loader::Compose(bin) => binary::load(bin, &found.files, &found.project_dir, &spec.profiles, env)?,
        Loader::Builtin => builtin::load(&builtin::Request { files: &found.files, project_dir: &found.project_dir, profiles: &spec.profiles, env })?,
    };
    warnings.extend(found.notes);
    let loaded = Loaded { model, files: found.files, project_dir: found.project_dir, warnings };
    if let Ok(mut g) = LAST.lock() {
        *g = Some((key, std::time::Instant::now(), loaded.clone()));
    }
    Ok(loaded)
}

/// What a load depends on: the files (and the `.env` files beside them)
/// with their sizes and times, the settings, the environment, the loader.
fn fingerprint(found: &discover::Found, spec: &ComposeSpec, env: &BTreeMap<String, String>, loader: Loader) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    let dirs = found.files.iter().filter_map(|f| f.parent().map(|d| d.join(".env")));
    for f in found.files.iter().cloned().chain(dirs).chain([found.project_dir.join(".env")]) {
        f.hash(&mut h);
        if let Ok(m) = std::fs::metadata(&f) {
            (m.len(), m.modified().ok()).hash(&mut h);
        }
    }
    format!("{spec:?}{loader:?}").hash(&mut h);
    env.hash(&mut h);
    h.finish()
}

/// The project as an iso stack, and the warnings to show (keys iso does not
/// honour, Compose's own). Published host ports are replaced by ports of
/// the thread's block: a service's first port goes to the slot named in
/// `[compose] slots` or to the slot of the same name, any other port to the
/// next offset no slot uses. `container_name` and `networks` are replaced
/// (each thread gets its own network and names); named volumes become
/// per-thread.
pub fn import(loaded: &Loaded, spec: &ComposeSpec, slots: &BTreeMap<String, u16>, block_size: u16) -> Result<(Stack, Vec<String>), Error> {
    let first = loaded.files.first().cloned().unwrap_or_default();
    let fail = |message: String| Error::Compose { path: first.clone(), message };
    for wanted in &spec.services {
        if !loaded.model.services.contains_key(wanted) {
            let known: Vec<&str> = loaded.model.services.keys().map(String::as_str).collect();
            return Err(fail(format!("[compose] services lists `{wanted}`, which the project does not define (services: {})", known.join(", "))));
        }
    }
    for (svc, slot) in &spec.slots {
        if !slots.contains_key(slot) {
            return Err(fail(format!("[compose] slots maps `{svc}` to slot `{slot}`, which is not in [ports.slots]")));
        }
    }
    let chosen: Vec<String> = loaded.model.services.keys().filter(|n| spec.services.is_empty() || spec.services.contains(n)).cloned().collect();
    let findings = review::review(&loaded.model, &chosen);
    if let Some(e) = findings.errors.first() {
        return Err(fail(e.clone()));
    }
    let mut warnings = loaded.warnings.clone();
    warnings.extend(findings.warnings);
    let stack = convert(&loaded.model, &chosen, spec, slots, block_size).map_err(fail)?;
    Ok((stack, warnings))
}

/// The chosen services of `model` as iso services.
fn convert(model: &Model, chosen: &[String], spec: &ComposeSpec, slots: &BTreeMap<String, u16>, block_size: u16) -> Result<Stack, String> {
    let mut used_offsets: BTreeSet<u16> = slots.values().copied().collect();
    let mut next_offset = || -> Option<u16> {
        let off = (0..block_size).find(|o| !used_offsets.contains(o))?;
        used_offsets.insert(off);
        Some(off)
    };
    let mut stack = Stack::new();
    for name in chosen {
        let s = &model.services[name];
        let at = |m: String| format!("services.{name}: {m}");
        let mut out = service(name, s, model).map_err(at)?;
        // Published ports: iso publishes each TCP port the file publishes,
        // on a port of the thread's block.
        let mut first = true;
        for p in s.ports.iter().filter(|p| p.protocol == "tcp") {
            let slot = if first { spec.slots.get(name).cloned().or_else(|| slots.contains_key(name).then(|| name.clone())) } else { None };
            first = false;
            match slot {
                Some(slot) => out.ports.push(PortSpec { container: p.target, slot: Some(slot), offset: None }),
                None => {
                    let offset = next_offset().ok_or_else(|| at(format!("no free port left in a block of {block_size}; raise ports.block_size")))?;
                    out.ports.push(PortSpec { container: p.target, slot: None, offset: Some(offset) });
                }
            }
        }
        out.port = None;
        stack.insert(name.clone(), out);
    }
    // A dependency outside the chosen services is not started by iso.
    for s in stack.values_mut() {
        s.depends_on.0.retain(|d, _| chosen.contains(d));
    }
    Ok(stack)
}

fn service(name: &str, s: &Service, model: &Model) -> Result<ServiceSpec, String> {
    let mut out = ServiceSpec { image: s.image.clone(), ..Default::default() };
    if let Some(b) = &s.build {
        if b.context.contains("://") {
            return Err(format!("build.context `{}`: iso builds from a local directory only", b.context));
        }
        out.build = Some(PathBuf::from(&b.context));
        out.dockerfile = Some(b.dockerfile.clone());
        out.container.build_args = b.args.iter().filter_map(|(k, v)| Some((k.clone(), v.clone()?))).collect();
        out.container.build_target = b.target.clone();
    }
    out.pull_policy = match s.pull_policy.as_deref() {
        None | Some("missing" | "if_not_present") => None,
        Some("always") => Some(PullPolicy::Always),
        Some("never") => Some(PullPolicy::Never),
        Some("build") => Some(PullPolicy::Build),
        Some(_) => None, // named by the review
    };
    if out.pull_policy == Some(PullPolicy::Build) && out.build.is_none() {
        return Err("pull_policy: build without build".into());
    }
    out.command = s.command.clone().map(CommandSpec::Args);
    out.entrypoint = s.entrypoint.clone().map(CommandSpec::Args);
    out.working_dir = s.working_dir.clone();
    out.user = s.user.clone();
    // `NAME` without a value and unset: left out of the container, as in Compose.
    out.environment = s.environment.iter().filter_map(|(k, v)| Some((k.clone(), literal(v.as_ref()?)))).collect();
    out.depends_on = DependsOn(
        s.depends_on
            .iter()
            .map(|(d, dep)| {
                let c = match dep.condition.as_str() {
                    "service_healthy" => Condition::ServiceHealthy,
                    "service_completed_successfully" => Condition::ServiceCompletedSuccessfully,
                    _ => Condition::ServiceStarted,
                };
                (d.clone(), c)
            })
            .collect(),
    );
    for m in &s.volumes {
        let mode = if m.read_only { ":ro" } else { "" };
        match (m.kind.as_str(), &m.source) {
            ("tmpfs", _) => out.tmpfs.push(m.target.clone()),
            ("volume", Some(src)) => out.volumes.push(format!("{src}:{}{mode}", m.target)),
            // An anonymous volume: a per-thread volume of its own.
            ("volume", None) => out.volumes.push(format!("anon{}:{}{mode}", m.target.replace('/', "-"), m.target)),
            ("bind", Some(src)) => out.volumes.push(format!("{src}:{}{mode}", m.target)),
            (kind, _) => return Err(format!("volume type `{kind}` at {} is not supported", m.target)),
        }
        if let Some(sel) = m.bind.as_ref().and_then(|b| b.selinux.clone()) {
            out.container.mount_options.insert(m.target.clone(), sel);
        }
        if m.volume.as_ref().is_some_and(|v| v.nocopy) {
            out.container.mount_options.insert(m.target.clone(), "nocopy".into());
        }
    }
    // Secrets and configs from files: the file, mounted read-only.
    for (kind, list, top) in [("secrets", &s.secrets, &model.secrets), ("configs", &s.configs, &model.configs)] {
        for f in list {
            let file = top.get(&f.source).and_then(|t| t.file.clone()).ok_or_else(|| format!("{kind}.{}: iso supports {kind} from a `file` only", f.source))?;
            let target = f.target.clone().unwrap_or_else(|| format!("/{}", f.source));
            let target = if target.starts_with('/') { target } else { format!("/run/secrets/{target}") };
            out.volumes.push(format!("{file}:{target}:ro"));
        }
    }
    out.tmpfs.extend(s.tmpfs.iter().cloned());
    out.restart = s.restart.clone();
    out.labels = s.labels.clone();
    out.healthcheck = healthcheck(s.healthcheck.as_ref());
    out.container.hostname = s.hostname.clone();
    out.container.extra_hosts = s.extra_hosts.clone();
    out.container.stop_signal = s.stop_signal.clone();
    out.container.stop_timeout = s.stop_grace_period.map(|ms| ms.div_ceil(1000));
    out.container.tty = s.tty;
    out.container.stdin_open = s.stdin_open;
    out.container.cap_add = s.cap_add.clone();
    out.container.cap_drop = s.cap_drop.clone();
    out.container.privileged = s.privileged;
    if out.image.is_none() && out.build.is_none() {
        return Err("has neither `image` nor `build`".into());
    }
    let _ = name;
    Ok(out)
}

/// A Compose healthcheck as iso's check (the same command, run by iso every
/// 100 ms while the service starts, so a 10 s interval does not delay the
/// start) and as Docker's own (what `docker ps` shows later).
fn healthcheck(h: Option<&model::Healthcheck>) -> Option<HealthSpec> {
    let h = h.filter(|h| !h.disable)?;
    let (kind, args) = h.test.split_first()?;
    let cmd: Vec<String> = match kind.as_str() {
        "NONE" => return None,
        "CMD" => args.to_vec(),
        "CMD-SHELL" => vec!["/bin/sh".into(), "-c".into(), args.join(" ")],
        _ => h.test.clone(),
    };
    let engine = EngineHealth { test: h.test.clone(), interval_ms: h.interval, timeout_ms: h.timeout, retries: h.retries, start_period_ms: h.start_period };
    Some(HealthSpec { command: Some(CommandSpec::Args(cmd)), timeout_ms: h.timeout, engine: Some(engine), ..Default::default() })
}

/// A literal value as an iso template.
fn literal(s: &str) -> String {
    if s.contains("{{") || s.contains("{%") || s.contains("{#") {
        format!("{{% raw %}}{s}{{% endraw %}}")
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::services::{DockerSettings, HealthCheck};
    use crate::services::plan::{plan, ThreadStack};
    use serde_json::json;
    use serde_yaml_ng::Value as Yaml;

    const FILE: &str = r#"
services:
  db:
    image: postgres:16
    container_name: my-db
    environment:
      POSTGRES_PASSWORD: ${POSTGRES_PASSWORD:?Variable not set}
      POSTGRES_DB: ${ISO_TEST_UNSET_VAR:-app}
    volumes:
      - dbdata:/var/lib/postgresql/data
      - ./init:/docker-entrypoint-initdb.d:ro
    healthcheck:
      test: ["CMD-SHELL", "pg_isready -U postgres"]
      interval: 10s
      retries: 5
    networks: [back]
  cache:
    image: redis:7
    ports:
      - "127.0.0.1:6379:6379"
  web:
    image: acme/web:latest
    build: ./web
    command: npm start
    depends_on:
      db: { condition: service_healthy }
      cache: { condition: service_started }
    environment:
      - NODE_ENV=development
      - SECRET_KEY
networks:
  back: {}
volumes:
  dbdata: {}
"#;
    const OVERRIDE: &str = "services:\n  db:\n    ports: [\"5432:5432\"]\n  web:\n    ports: [\"3000:3000\", \"9229:9229\"]\n";

    #[test]
    fn a_project_with_override_and_env_becomes_a_thread_stack() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("compose.yml"), FILE).unwrap();
        std::fs::write(dir.path().join("compose.override.yml"), OVERRIDE).unwrap();
        std::fs::write(dir.path().join(".env"), "POSTGRES_PASSWORD=s3cret\nSECRET_KEY=k\n").unwrap();
        let slots: BTreeMap<String, u16> = [("postgres".to_string(), 0), ("redis".to_string(), 1), ("api".to_string(), 2)].into();
        let spec = ComposeSpec {
            slots: [("db".to_string(), "postgres".to_string()), ("web".to_string(), "api".to_string()), ("cache".to_string(), "redis".to_string())].into(),
            ..Default::default()
        };
        let env = BTreeMap::new();
        let loaded = load(dir.path(), &spec, &env, Loader::Builtin).unwrap();
        assert_eq!(loaded.files.len(), 2, "compose.yml and its override");
        let (stack, warnings) = import(&loaded, &spec, &slots, 100).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        let db = &stack["db"];
        assert_eq!(db.ports, [PortSpec { container: 5432, slot: Some("postgres".into()), offset: None }], "published by the override");
        assert_eq!(db.environment["POSTGRES_PASSWORD"], "s3cret", "from .env");
        assert_eq!(db.environment["POSTGRES_DB"], "app");
        let init = dir.path().join("init").display().to_string();
        assert_eq!(db.volumes, ["dbdata:/var/lib/postgresql/data".to_string(), format!("{init}:/docker-entrypoint-initdb.d:ro")]);
        let h = db.healthcheck.as_ref().unwrap();
        assert_eq!(h.check().unwrap(), HealthCheck::Command(vec!["/bin/sh".into(), "-c".into(), "pg_isready -U postgres".into()]));
        assert_eq!(h.engine.as_ref().unwrap().interval_ms, Some(10_000), "Docker's own check keeps Compose's timings");
        let web = &stack["web"];
        assert_eq!((web.image.as_deref(), web.build.as_deref()), (Some("acme/web:latest"), Some(dir.path().join("web").as_path())));
        assert_eq!(web.ports[1], PortSpec { container: 9229, slot: None, offset: Some(3) }, "next offset after the slots");
        assert_eq!(web.depends_on.0["db"], Condition::ServiceHealthy);
        assert_eq!(web.depends_on.0["cache"], Condition::ServiceStarted);
        assert_eq!(web.environment["SECRET_KEY"], "k");
        assert_eq!(web.command.as_ref().unwrap().args(), ["npm", "start"]);

        // Through the planner: host ports in the thread's block, names per thread.
        let ports: BTreeMap<String, u16> = [("postgres".to_string(), 20100), ("redis".to_string(), 20101), ("api".to_string(), 20102)].into();
        let settings = DockerSettings::default();
        let none = BTreeMap::new();
        let t = ThreadStack {
            repo_root: dir.path(),
            repo_name: "shop",
            thread: 1,
            ports: &ports,
            block_start: 20100,
            workdir: dir.path(),
            values: json!({}),
            stack: &stack,
            export: &none,
            settings: &settings,
        };
        let p = plan(&t).unwrap();
        let web = p.services.iter().find(|s| s.name == "web").unwrap();
        assert_eq!(web.ports, [(3000, 20102), (9229, 20103)]);
        assert_eq!(web.image.reference(), "acme/web:latest", "image and build: the image, built only when missing");
        assert_eq!(p.services.iter().find(|s| s.name == "db").unwrap().container, "iso-shop-t1-db");

        let text = export(&p, "thread 1");
        assert!(text.starts_with("# thread 1\n"), "{text}");
        let back: Yaml = serde_yaml_ng::from_str(&text).unwrap();
        assert_eq!(back["services"]["db"]["container_name"].as_str(), Some("iso-shop-t1-db"));
        assert_eq!(back["services"]["db"]["ports"][0].as_str(), Some("127.0.0.1:20100:5432"));
        assert_eq!(back["volumes"]["dbdata"]["name"].as_str(), Some("iso-shop-t1-dbdata"));
        assert_eq!(back["services"]["web"]["depends_on"]["db"]["condition"].as_str(), Some("service_healthy"));

        // A required variable that is unset: an error naming it and the file.
        std::fs::write(dir.path().join(".env"), "SECRET_KEY=k\n").unwrap();
        let e = load(dir.path(), &spec, &env, Loader::Builtin).unwrap_err().to_string();
        assert!(e.contains("POSTGRES_PASSWORD") && e.contains("Variable not set") && e.contains("compose.yml"), "{e}");
    }

    #[test]
    fn keys_iso_cannot_honour_are_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("compose.yml"),
            "services:\n  a:\n    image: x\n    deploy: {replicas: 2}\n  b:\n    image: y\n    network_mode: service:a\n",
        )
        .unwrap();
        let loaded = load(dir.path(), &ComposeSpec::default(), &BTreeMap::new(), Loader::Builtin).unwrap();
        let e = import(&loaded, &ComposeSpec::default(), &BTreeMap::new(), 10).unwrap_err().to_string();
        assert!(e.contains("services.b.network_mode"), "{e}");
        let only_a = ComposeSpec { services: vec!["a".into()], ..Default::default() };
        let (_, warnings) = import(&loaded, &only_a, &BTreeMap::new(), 10).unwrap();
        assert!(warnings.iter().any(|w| w.contains("services.a.deploy")), "{warnings:?}");
    }
}
