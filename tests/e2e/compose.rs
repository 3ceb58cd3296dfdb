//! Compose projects as Compose itself reads them.
//!
//! The differential test runs iso's own loader and the real Compose v2
//! (`config --format json`, installed by .ci/install-deps) over every
//! project of tests/fixtures/compose/ and compares what a stack is made of:
//! services, images and builds, commands, environment, ports, volumes,
//! depends_on, healthchecks, secrets and configs, tmpfs, restart, labels.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use iso::config::services::ComposeSpec;
use iso::services::compose::{self, binary, Loader};
use serde_json::Value;

use crate::support::docker::{docker_section, env_value, http_status, tag, try_psql, DockerGuard};
use crate::support::{stderr, stdout, TestRepo};

fn corpus() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/compose");
    let mut projects: Vec<PathBuf> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).filter(|p| p.is_dir()).collect();
    projects.sort();
    projects
}

/// The shell environment both loaders interpolate with.
fn shell() -> BTreeMap<String, String> {
    [("FROM_SHELL", "shell"), ("BOTH", "from-shell")].into_iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// The keys compared, per service.
const KEYS: [&str; 18] = [
    "image",
    "build",
    "pull_policy",
    "command",
    "entrypoint",
    "working_dir",
    "user",
    "environment",
    "ports",
    "volumes",
    "tmpfs",
    "depends_on",
    "healthcheck",
    "restart",
    "labels",
    "secrets",
    "configs",
    "profiles",
];

fn services(model: &compose::model::Model) -> BTreeMap<String, BTreeMap<&'static str, Value>> {
    let json = serde_json::to_value(model).unwrap();
    let mut out = BTreeMap::new();
    for (name, s) in json["services"].as_object().cloned().unwrap_or_default() {
        let picked = KEYS.iter().map(|k| (*k, s.get(*k).cloned().unwrap_or(Value::Null))).collect();
        out.insert(name, picked);
    }
    out
}

#[test]
fn isos_loader_reads_every_corpus_project_as_compose_v2_does() {
    let bin = binary::find().expect("Compose v2 is needed for this test (docker compose; .ci/install-deps installs it)");
    let projects = corpus();
    assert!(projects.len() >= 25, "the corpus has {} projects", projects.len());
    let env = shell();
    let spec = ComposeSpec::default();
    let mut diffs = Vec::new();
    for dir in &projects {
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        let real = compose::load(dir, &spec, &env, Loader::Compose(bin)).unwrap_or_else(|e| panic!("{name}: Compose: {e}"));
        let ours = match compose::load(dir, &spec, &env, Loader::Builtin) {
            Ok(o) => o,
            Err(e) => {
                diffs.push(format!("{name}: iso's loader fails: {e}"));
                continue;
            }
        };
        assert_eq!(real.files, ours.files, "{name}: the same files");
        let (a, b) = (services(&real.model), services(&ours.model));
        if a.keys().ne(b.keys()) {
            diffs.push(format!("{name}: services: Compose {:?}, iso {:?}", a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>()));
            continue;
        }
        for (svc, keys) in &a {
            for (k, v) in keys {
                let w = &b[svc][k];
                if v != w {
                    diffs.push(format!("{name}: services.{svc}.{k}:\n    Compose: {v}\n    iso:     {w}"));
                }
            }
        }
        for (k, x, y) in [
            ("volumes", serde_json::to_value(&real.model.volumes).unwrap(), serde_json::to_value(&ours.model.volumes).unwrap()),
            ("secrets", serde_json::to_value(&real.model.secrets).unwrap(), serde_json::to_value(&ours.model.secrets).unwrap()),
            ("configs", serde_json::to_value(&real.model.configs).unwrap(), serde_json::to_value(&ours.model.configs).unwrap()),
        ] {
            if x != y {
                diffs.push(format!("{name}: {k}:\n    Compose: {x}\n    iso:     {y}"));
            }
        }
    }
    assert!(diffs.is_empty(), "iso's loader differs from Compose v2 in {} places:\n{}", diffs.len(), diffs.join("\n"));
}

#[test]
fn a_required_variable_is_an_error_naming_it_and_its_file_in_both_loaders() {
    let bin = binary::find().expect("Compose v2 is needed for this test");
    let dir = tempfile::tempdir().unwrap();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/compose/fullstack-override-env");
    for f in ["compose.yml", "compose.override.yml"] {
        std::fs::copy(fixture.join(f), dir.path().join(f)).unwrap();
    }
    std::fs::write(dir.path().join(".env"), "POSTGRES_PASSWORD=x\nPOSTGRES_USER=u\nPOSTGRES_DB=d\nDOCKER_IMAGE_BACKEND=b\n").unwrap();
    for loader in [Loader::Compose(bin), Loader::Builtin] {
        let e = compose::load(dir.path(), &ComposeSpec::default(), &shell(), loader).unwrap_err().to_string();
        assert!(e.contains("SECRET_KEY") && e.contains("Variable not set") && e.contains("compose.yml"), "{loader:?}: {e}");
    }
}

/// The shape of the popular full-stack templates, on the test images: a
/// database whose entrypoint first runs a socket-only temporary server (as
/// the official Postgres image does), a backend with both `image` and a
/// `build` whose base image cannot be pulled, secrets as
/// `${VAR:?Variable not set}` from `.env`, the published ports in
/// `compose.override.yml`, Compose's 10 s healthcheck interval.
const TEAM_COMPOSE: &str = r#"services:
  db:
    image: iso-test/pg-redis:1
    entrypoint:
      - sh
      - -c
      - "iso-postgres -c listen_addresses= & pid=$$!; sleep 3; kill $$pid; wait $$pid; exec iso-postgres"
    environment:
      POSTGRES_DB: ${POSTGRES_DB:?Variable not set}
    volumes:
      - app-db-data:/var/lib/iso-pg
    healthcheck:
      test: ["CMD-SHELL", "pg_isready -U postgres -q"]
      interval: 10s
      timeout: 5s
      retries: 5
  backend:
    image: iso-test/busybox:1
    build:
      context: ./backend
    command: busybox httpd -f -p 8080 -h /www
    environment:
      DATABASE_URL: postgresql://postgres@db:5432/${POSTGRES_DB}
      SECRET_KEY: ${SECRET_KEY:?Variable not set}
    depends_on:
      db:
        condition: service_healthy
    x-team-note: ignored by everyone
volumes:
  app-db-data:
"#;

const TEAM_OVERRIDE: &str = r#"services:
  db:
    ports:
      - "5432:5432"
  backend:
    ports:
      - "8080:8080"
"#;

#[test]
fn a_teams_compose_project_runs_per_thread_as_compose_up_would() {
    let t = tag();
    let toml = format!(
        "{}[threads]\nmax = 2\n[ports]\nblock_size = 4\n[ports.slots]\npostgres = 0\napi = 1\nredis = 2\n\
         [compose]\nslots = {{ db = \"postgres\", backend = \"api\" }}\n\
         export = {{ DATABASE_URL = \"postgresql://postgres@{{{{ host }}}}:{{{{ ports.postgres }}}}/{{{{ services.db.environment.POSTGRES_DB }}}}\", \
         REDIS_URL = \"redis://{{{{ host }}}}:{{{{ ports.redis }}}}\" }}\n",
        docker_section(&t, "")
    );
    let repo = TestRepo::new(&toml);
    let docker = DockerGuard::new(&repo.root);
    repo.write("compose.yml", TEAM_COMPOSE);
    repo.write("compose.override.yml", TEAM_OVERRIDE);
    repo.write("backend/Dockerfile", "FROM 127.0.0.1:1/never/pulled:0\n");
    repo.git(&["add", "."]);
    repo.git(&["commit", "-q", "-m", "compose project"]);
    // `.env` is the developer's (gitignored), copied into each worktree.
    repo.write(".env", "POSTGRES_DB=app\nSECRET_KEY=changethis\n");

    let out = repo.iso(&["init", "x"]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    // Healthy means usable: the database answers on its published port as
    // soon as init returns (the socket-only server passed pg_isready first).
    let env = repo.path(".worktrees/thread-1/.env.thread");
    let url = env_value(&env, "DATABASE_URL");
    assert!(url.ends_with("/app"), "{url}");
    let (ok, text) = try_psql(&url, "select 1");
    assert!(ok, "right after init: {text}");
    // A slot .env.thread uses that no service publishes is named.
    assert!(err.contains("slot `redis`") && err.contains("REDIS_URL"), "{err}");

    let db = format!("iso-{t}-t1-db");
    let backend = format!("iso-{t}-t1-backend");
    let env_of = |c: &str| stdout(&Command::new("docker").args(["inspect", "-f", "{{json .Config.Env}}", c]).output().unwrap());
    let be = env_of(&backend);
    assert!(be.contains("SECRET_KEY=changethis") && be.contains("DATABASE_URL=postgresql://postgres@db:5432/app"), "{be}");
    // Docker's own healthcheck keeps Compose's timings.
    let hc = stdout(&Command::new("docker").args(["inspect", "-f", "{{json .Config.Healthcheck}}", &db]).output().unwrap());
    assert!(hc.contains("pg_isready -U postgres -q") && hc.contains("\"Interval\":10000000000"), "{hc}");
    // The image is used as it is: the build (whose base cannot be pulled) never ran.
    let img = stdout(&Command::new("docker").args(["inspect", "-f", "{{.Config.Image}}", &backend]).output().unwrap());
    assert_eq!(img.trim(), "iso-test/busybox:1");
    assert_eq!(http_status(&format!("http://127.0.0.1:{}", env_value(&env, "ISO_PORT_API"))), 200);

    repo.iso_ok(&["cleanup", "1"]);
    assert!(docker.names("container", None).is_empty() && docker.names("volume", None).is_empty());

    // An unset required variable: an error naming it and the file, and a clean rollback.
    repo.write(".env", "POSTGRES_DB=app\n");
    let out = repo.iso(&["init", "y"]);
    let err = stderr(&out);
    assert!(!out.status.success());
    assert!(err.contains("SECRET_KEY") && err.contains("Variable not set") && err.contains("compose.yml"), "{err}");
    assert!(docker.names("container", None).is_empty());
    assert!(repo.threads().is_empty(), "rolled back");
}

/// A registry on loopback (`docker-registry`, the Debian package), stopped
/// and its pushed image removed when dropped.
struct Registry {
    child: std::process::Child,
    port: u16,
    image: String,
    _dir: tempfile::TempDir,
}

impl Registry {
    fn start(port: u16) -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("config.yml");
        let store = dir.path().join("store");
        std::fs::write(
            &cfg,
            format!("version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n", store.display()),
        )
        .unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker-registry (the Debian package; .ci/install-deps installs it)");
        let t0 = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(t0.elapsed() < Duration::from_secs(60), "the registry did not listen on {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        Registry { child, port, image: String::new(), _dir: dir }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !self.image.is_empty() {
            let _ = Command::new("docker").args(["rmi", "-f", &self.image]).output();
        }
    }
}

fn docker_ok(args: &[&str]) {
    let out = Command::new("docker").args(args).output().unwrap();
    assert!(out.status.success(), "docker {args:?}: {}", stderr(&out));
}

#[test]
fn a_missing_image_is_pulled_from_its_registry_and_a_missing_tag_rolls_back() {
    let t = tag();
    let stack = |image: &str| {
        format!(
            "services:\n  web:\n    image: {image}\n    command: busybox httpd -f -p 80 -h /www\n    ports: [\"80\"]\n    healthcheck:\n      test: [\"CMD\", \"busybox\", \"true\"]\n"
        )
    };
    let toml =
        format!("{}[threads]\nmax = 2\n[ports]\nblock_size = 4\n[compose]\nfile = \"compose.yml\"\nslots = {{ web = \"api\" }}\n", docker_section(&t, ""));
    let repo = TestRepo::new(&toml);
    let docker = DockerGuard::new(&repo.root);
    // The last port of the repository's window: iso skips a block with a port in use.
    let mut reg = Registry::start(repo.port_base + 11);
    let image = format!("127.0.0.1:{}/team/x-{t}:1", reg.port);
    reg.image = image.clone();
    docker_ok(&["tag", "iso-test/busybox:1", &image]);
    docker_ok(&["push", &image]);
    docker_ok(&["rmi", &image]);

    repo.write("compose.yml", &stack(&image));
    repo.git(&["add", "compose.yml"]);
    repo.git(&["commit", "-q", "-m", "compose"]);
    let out = repo.iso(&["init", "pulled"]);
    assert!(out.status.success(), "{}", stderr(&out));
    docker_ok(&["image", "inspect", &image]);
    let web = format!("iso-{t}-t1-web");
    let img = stdout(&Command::new("docker").args(["inspect", "-f", "{{.Config.Image}}", &web]).output().unwrap());
    assert_eq!(img.trim(), image);
    repo.iso_ok(&["cleanup", "1"]);

    // A tag the registry does not have: the registry's words, and nothing left.
    let missing = format!("127.0.0.1:{}/team/x-{t}:2", reg.port);
    repo.write("compose.yml", &stack(&missing));
    repo.git(&["commit", "-q", "-am", "a tag the registry lacks"]);
    let out = repo.iso(&["init", "missing"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(&format!("image `{missing}` for service `web` is not on the Docker engine and was not pulled")), "{err}");
    assert!(err.contains("manifest unknown") || err.contains("not found"), "{err}");
    assert!(docker.names("container", None).is_empty() && docker.names("network", None).is_empty());
    assert!(repo.threads().is_empty(), "rolled back");
}

#[test]
fn setup_writes_a_compose_section_for_the_project_it_finds() {
    let repo = TestRepo::new("");
    repo.write("compose.yaml", "services:\n  pg:\n    image: postgres:16\n    ports: [\"5432:5432\"]\n  cache:\n    image: redis:7\n    ports: [\"6379\"]\n  worker:\n    image: acme/worker\n");
    repo.write("compose.override.yaml", "services:\n  web:\n    image: acme/web\n    ports: [\"8000:8000\"]\n");
    repo.iso_ok(&["setup", "--template", "compose", "--force"]);
    let toml = repo.read("iso.toml");
    assert!(toml.contains("compose.yaml, compose.override.yaml"), "{toml}");
    assert!(toml.contains(r#"slots = { cache = "redis", pg = "postgres", web = "web" }"#), "{toml}");
    assert!(toml.contains("DATABASE_URL") && toml.contains("services.pg.environment.POSTGRES_PASSWORD") && toml.contains("REDIS_URL"), "{toml}");
    assert!(!toml.contains("worker"), "publishes nothing: {toml}");
    // What it wrote is a valid configuration iso reads back.
    let cfg = repo.iso_ok(&["config"]);
    assert!(cfg.contains("compose"), "{cfg}");
}
