//! End-to-end tests of per-thread Docker stacks against a real engine and
//! the locally built test images (`.ci/install-deps`):
//! `iso-test/pg-redis:1` (iso-postgres, iso-redis) and `iso-test/busybox:1`
//! (busybox httpd).
//!
//! Isolation: each test repository has its own port window (from
//! `support::ports`), its own directory (so its own `iso.repo` label) and
//! its own resource name tag; a [`DockerGuard`] removes whatever carries its
//! label when the test ends, pass or fail. Every resource also carries
//! `iso.test=1`.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::docker::{docker_section, env_value, http_status, pg_service, psql, redis_ping, tag, try_psql, DockerGuard};
use crate::support::{stderr, stdout, TestRepo};

/// Postgres + Redis + an HTTP service, from the test images.
const FULL_STACK: &str = concat!(
    pg_service!(),
    r#"
[services.redis]
image = "iso-test/pg-redis:1"
command = "iso-redis"
port = 6379
healthcheck = { tcp = true }
export = { REDIS_URL = "redis://{{ host }}:{{ port }}" }

[services.api]
image = "iso-test/busybox:1"
command = "busybox httpd -f -p 8080 -h /www"
port = 8080
depends_on = ["postgres", "redis"]
healthcheck = { http = "/" }
export = { API_URL = "http://{{ host }}:{{ port }}" }
"#
);

/// Just the HTTP service: fast, for the tests that are not about Postgres.
const WEB_STACK: &str = r#"
[services.api]
image = "iso-test/busybox:1"
command = "busybox httpd -f -p 8080 -h /www"
port = 8080
healthcheck = { http = "/" }
export = { API_URL = "http://{{ host }}:{{ port }}" }
"#;

/// A test repository with `stack`; resource names are `iso-<tag>-t<id>-*`.
fn repo(stack: &str) -> (TestRepo, DockerGuard, String) {
    let t = tag();
    let repo = TestRepo::new(&format!("{}{stack}", docker_section(&t, "")));
    let guard = DockerGuard::new(&repo.root);
    (repo, guard, t)
}

/// [`repo`] with a small port window (2 threads, blocks of 10), for tests
/// that need only a thread or two.
fn small_repo(stack: &str) -> (TestRepo, DockerGuard, String) {
    let t = tag();
    let repo = TestRepo::new(&format!("[threads]\nmax = 2\n[ports]\nblock_size = 10\n{}{stack}", docker_section(&t, "")));
    let guard = DockerGuard::new(&repo.root);
    (repo, guard, t)
}

fn env_file(repo: &TestRepo, id: u32) -> std::path::PathBuf {
    repo.path(&format!(".worktrees/thread-{id}/.env.thread"))
}

#[test]
fn three_threads_get_isolated_stacks_and_cleanup_and_doctor_find_them_by_label() {
    let (repo, docker, tag) = repo(FULL_STACK);
    let base = repo.port_base;
    let out = repo.iso_ok(&["init", "one", "two", "three"]);
    // init ends by printing the connection details.
    assert!(out.contains(&format!("DATABASE_URL=postgresql://postgres@127.0.0.1:{}/app", base + 100)), "{out}");
    assert!(out.contains(&format!("REDIS_URL=redis://127.0.0.1:{}", base + 201)), "{out}");
    assert!(out.contains(&format!("API_URL=http://127.0.0.1:{}", base + 302)), "{out}");

    let name = |id: u32, svc: &str| format!("iso-{tag}-t{id}-{svc}");
    for id in 1..=3 {
        assert_eq!(docker.names("container", Some(id)), [name(id, "api"), name(id, "postgres"), name(id, "redis")]);
        assert_eq!(docker.names("volume", Some(id)), [name(id, "pgdata")]);
        assert_eq!(docker.names("network", Some(id)), [format!("iso-{tag}-t{id}")]);
        // Each thread's own DATABASE_URL, REDIS_URL and API_URL answer.
        let env = env_file(&repo, id);
        assert_eq!(psql(&env_value(&env, "DATABASE_URL"), "select 1"), "1");
        assert_eq!(redis_ping(&env_value(&env, "REDIS_URL")), "+PONG");
        assert_eq!(http_status(&env_value(&env, "API_URL")), 200);
    }
    // Published on 127.0.0.1 only.
    let ports = Command::new("docker").args(["port", &name(1, "postgres"), "5432/tcp"]).output().unwrap();
    assert_eq!(stdout(&ports).trim(), format!("127.0.0.1:{}", base + 100));

    // Databases are separate: a row in thread 1 is not in thread 2.
    let db1 = env_value(&env_file(&repo, 1), "DATABASE_URL");
    let db2 = env_value(&env_file(&repo, 2), "DATABASE_URL");
    psql(&db1, "create table notes (body text); insert into notes values ('only in thread 1')");
    assert_eq!(psql(&db1, "select body from notes"), "only in thread 1");
    let (ok, text) = try_psql(&db2, "select body from notes");
    assert!(!ok && text.contains("does not exist"), "thread 2 sees thread 1's table: {text}");

    // list: running/total per thread; status: state, health and ports.
    let list = repo.iso_ok(&["list"]);
    assert!(list.contains("SERVICES") && list.matches("3/3").count() == 3, "{list}");
    let status = repo.iso_json(&["status", "2"]);
    let services = status["services"].as_array().expect("services in status --json");
    assert_eq!(services.len(), 3, "{status}");
    for s in services {
        assert_eq!((s["state"].as_str(), s["health"].as_str()), (Some("running"), Some("healthy")), "{s}");
    }
    let redis = format!("127.0.0.1:{}->6379/tcp", base + 201);
    assert!(services.iter().any(|s| s["ports"][0] == redis.as_str()), "{status}");

    // Cleanup of thread 2 removes its containers, volume and network; the
    // others still answer.
    let out = repo.iso_ok(&["cleanup", "2"]);
    assert!(out.contains("removed thread 2"), "{out}");
    assert!(docker.names("container", Some(2)).is_empty());
    assert!(docker.names("volume", Some(2)).is_empty());
    assert!(docker.names("network", Some(2)).is_empty());
    for id in [1, 3] {
        let env = env_file(&repo, id);
        assert_eq!(psql(&env_value(&env, "DATABASE_URL"), "select 1"), "1");
        assert_eq!(redis_ping(&env_value(&env, "REDIS_URL")), "+PONG");
        assert_eq!(http_status(&env_value(&env, "API_URL")), 200);
    }
    assert_eq!(psql(&db1, "select body from notes"), "only in thread 1");

    // Thread 3 deleted from the registry and its worktree removed by hand:
    // doctor finds its containers by label and --fix removes them; its
    // volume holds data and goes only with --volumes.
    let reg = repo.path(".git/iso/registry.toml");
    let text = std::fs::read_to_string(&reg).unwrap();
    let mut data: toml::Value = toml::from_str(&text).unwrap();
    data["threads"].as_array_mut().unwrap().retain(|t| t["id"].as_integer() != Some(3));
    std::fs::write(&reg, toml::to_string(&data).unwrap()).unwrap();
    repo.git(&["worktree", "remove", "-f", "-f", repo.path(".worktrees/thread-3").to_str().unwrap()]);
    let out = repo.iso(&["doctor"]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(text.contains("thread 3 no longer exists") && text.contains(&name(3, "postgres")), "{text}");
    assert!(text.contains(&format!("its data is still in volume {}", name(3, "pgdata"))) && text.contains("iso doctor --fix --volumes"), "{text}");
    assert_eq!(repo.iso(&["doctor", "--fix"]).status.code(), Some(1), "the volume is left, so a problem is left");
    assert!(docker.names("container", Some(3)).is_empty());
    assert!(docker.names("network", Some(3)).is_empty());
    assert_eq!(docker.names("volume", Some(3)), [name(3, "pgdata")], "doctor never removes data by itself");
    repo.iso_ok(&["doctor", "--fix", "--volumes"]);
    assert!(docker.names("volume", Some(3)).is_empty());
    assert_eq!(docker.names("container", Some(1)).len(), 3, "thread 1 untouched");
}

#[test]
fn unhealthy_service_rolls_back_everything_and_shows_its_logs() {
    let stack = format!(
        r#"{WEB_STACK}
[services.broken]
image = "iso-test/busybox:1"
command = ["sh", "-c", "echo broken-service-started; echo no listener here >&2; sleep 600"]
port = 8080
slot = "worker"
healthcheck = {{ http = "/" }}
"#
    );
    let t = tag();
    let repo = TestRepo::new(&format!("{}{stack}", docker_section(&t, "health_timeout = 3\n")));
    let docker = DockerGuard::new(&repo.root);
    let t0 = Instant::now();
    let out = repo.iso(&["init", "sick"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("service `broken` did not become healthy within 3 s"), "{err}");
    assert!(err.contains("broken-service-started") && err.contains("no listener here"), "last log lines shown: {err}");
    assert!(err.contains(&format!("rolled back: services iso-{t}-t1")), "{err}");
    // Not a timing check: the service sleeps 600 s, and iso must give up at
    // its health timeout instead of waiting for it (a loaded CI machine can
    // make the rollback itself take a minute).
    assert!(t0.elapsed() < Duration::from_secs(300), "waited for the service: {:?}", t0.elapsed());
    // Every container, volume and network it created is gone, and so is the thread.
    assert!(docker.names("container", None).is_empty(), "{:?}", docker.names("container", None));
    assert!(docker.names("volume", None).is_empty());
    assert!(docker.names("network", None).is_empty());
    assert!(repo.threads().is_empty());
    assert!(!repo.path(".worktrees/thread-1").exists());
}

#[test]
fn missing_image_is_a_clear_error_and_nothing_is_created() {
    // A registry nobody listens on: the pull fails at once (a registry that
    // answers is tests/e2e/compose.rs).
    let stack = WEB_STACK.replace("iso-test/busybox:1", "127.0.0.1:1/iso-test/not-built-here:0");
    let (repo, docker, _) = repo(&stack);
    let out = repo.iso(&["init", "x"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("image `127.0.0.1:1/iso-test/not-built-here:0` for service `api` is not on the Docker engine and was not pulled"), "{err}");
    assert!(err.contains("registry is reachable"), "{err}");
    assert!(docker.names("container", None).is_empty());
    assert!(docker.names("network", None).is_empty());
    assert!(repo.threads().is_empty());
}

#[test]
fn unreachable_engine_is_a_clear_error_and_no_services_still_gives_a_thread() {
    let repo = TestRepo::new(&format!("{}{WEB_STACK}", docker_section(&tag(), "")));
    let dead = repo.root.join("no-docker.sock");
    let host = format!("unix://{}", dead.display());
    let out = repo.iso_cmd(&["init", "x"]).env("DOCKER_HOST", &host).output().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(&format!("cannot reach the Docker engine at {host}")), "{err}");
    assert!(err.contains("start Docker") && err.contains("--no-services"), "{err}");
    assert!(repo.threads().is_empty(), "rolled back");

    // --no-services: worktree, ports and env file, no Docker at all.
    let out = repo.iso_cmd(&["init", "x", "--no-services"]).env("DOCKER_HOST", &host).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("not started"), "{}", stdout(&out));
    assert_eq!(env_value(&env_file(&repo, 1), "API_URL"), format!("http://127.0.0.1:{}", repo.port_base + 102));
    // Cleanup of a thread that never had services does not need Docker.
    let out = repo.iso_cmd(&["cleanup", "1"]).env("DOCKER_HOST", &host).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));

    // Without a stack iso never talks to Docker: a plain repository works
    // with a dead DOCKER_HOST.
    let plain = TestRepo::new("");
    let out = plain.iso_cmd(&["init", "y"]).env("DOCKER_HOST", &host).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let out = plain.iso_cmd(&["list"]).env("DOCKER_HOST", &host).output().unwrap();
    assert!(out.status.success() && !stdout(&out).contains("SERVICES"), "{}", stdout(&out));
}

#[test]
fn down_up_logs_exec_compose_and_a_port_taken_meanwhile() {
    let (repo, docker, tag) = repo(WEB_STACK);
    // A container of the same name that is not this thread's is never taken over.
    let squatter = format!("iso-{tag}-t1-api");
    let made = Command::new("docker").args(["create", "--name", &squatter, "--label", "iso.test=1", "iso-test/busybox:1", "true"]).output().unwrap();
    assert!(made.status.success(), "{}", stderr(&made));
    let out = repo.iso(&["init", "web"]);
    let _ = Command::new("docker").args(["rm", "-f", &squatter]).output();
    assert!(stderr(&out).contains(&format!("container {squatter} already exists and is not this thread's")), "{}", stderr(&out));
    repo.iso_ok(&["init", "web"]);
    let api = env_value(&env_file(&repo, 1), "API_URL");
    assert_eq!(http_status(&api), 200);

    // exec: exit code and output come through.
    let out = repo.iso(&["exec", "1", "api", "--", "sh", "-c", "echo hello-from-container; exit 7"]);
    assert_eq!(out.status.code(), Some(7));
    assert!(stdout(&out).contains("hello-from-container"), "{}", stdout(&out));

    // logs: what the container wrote (httpd logs nothing, so write some).
    repo.iso_ok(&["exec", "1", "api", "--", "sh", "-c", "echo line-in-logs > /proc/1/fd/1"]);
    let logs = repo.iso_ok(&["logs", "1", "api"]);
    assert!(logs.contains("line-in-logs"), "{logs}");
    let mut follow = repo.iso_cmd(&["logs", "1", "-f"]).stdout(Stdio::piped()).spawn().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert!(follow.try_wait().unwrap().is_none(), "logs -f keeps running");
    follow.kill().unwrap();
    let _ = follow.wait();

    // down stops without removing; up starts again.
    repo.iso_ok(&["down", "1"]);
    assert_eq!(http_status(&api), 0);
    assert_eq!(docker.names("container", Some(1)), [format!("iso-{tag}-t1-api")]);
    assert!(repo.iso_ok(&["list"]).contains("0/1"));
    repo.iso_ok(&["up", "1"]);
    assert_eq!(http_status(&api), 200);

    // A port taken meanwhile: the error names it and its process.
    repo.iso_ok(&["down", "1"]);
    let api_port = repo.port_base + 102;
    let holder = std::net::TcpListener::bind(("127.0.0.1", api_port)).unwrap();
    let out = repo.iso(&["up", "1"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(&format!("port {api_port} for service `api` is already in use")), "{err}");
    assert!(err.contains(&format!("pid {}", std::process::id())), "names the holder: {err}");
    drop(holder);
    repo.iso_ok(&["up", "1"]);

    // compose export: docker-compose finds iso's containers with it.
    let path = repo.iso_ok(&["compose", "1"]);
    let path = std::path::PathBuf::from(path.trim());
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(&format!("container_name: iso-{tag}-t1-api")) && text.contains(&format!("127.0.0.1:{api_port}:8080")), "{text}");
    assert!(text.contains("iso.thread: '1'") || text.contains("iso.thread: \"1\""), "{text}");
    let wt = repo.path(".worktrees/thread-1");
    assert_eq!(crate::support::git_in(&wt, &["status", "--porcelain"]), "", "the export is excluded from git");
    if Command::new("docker-compose").arg("version").output().is_ok_and(|o| o.status.success()) {
        let out = Command::new("docker-compose").args(["-p", &format!("iso-{tag}-t1"), "-f", path.to_str().unwrap(), "ps"]).current_dir(&wt).output().unwrap();
        assert!(out.status.success() && stdout(&out).contains(&format!("iso-{tag}-t1-api")) && stdout(&out).contains("Up"), "{}{}", stdout(&out), stderr(&out));
    }

    // cleanup --keep-volumes keeps named volumes only.
    repo.iso_ok(&["cleanup", "1"]);
    assert!(docker.names("container", None).is_empty() && docker.names("network", None).is_empty());
}

#[test]
fn compose_file_is_imported_per_thread_and_never_edited() {
    let compose = r#"services:
  web:
    image: iso-test/busybox:1
    container_name: fixed-name
    command: busybox httpd -f -p 80 -h /www
    ports: ["8080:80", "9999:9999"]
    volumes: ["webdata:/data"]
    networks: [front]
  worker:
    image: iso-test/busybox:1
    command: ["sh", "-c", "echo $$GREETING; sleep 600"]
    environment:
      - GREETING=hello
    depends_on: [web]
networks:
  front: {}
volumes:
  webdata: {}
"#;
    let (repo, docker, tag) = repo("[compose]\nfile = \"docker-compose.yml\"\nslots = { web = \"api\" }\n");
    repo.write("docker-compose.yml", compose);
    let out = repo.iso_ok(&["init", "c"]);
    assert_eq!(repo.read("docker-compose.yml"), compose, "the user's file is untouched");
    assert!(out.contains("services web worker healthy") || out.contains("services web worker"), "{out}");
    assert_eq!(docker.names("container", Some(1)), [format!("iso-{tag}-t1-web"), format!("iso-{tag}-t1-worker")]);
    assert_eq!(docker.names("volume", Some(1)), [format!("iso-{tag}-t1-webdata")]);
    assert_eq!(docker.names("network", Some(1)), [format!("iso-{tag}-t1")]);
    // Published ports moved into the thread's block: the `api` slot, then a free offset.
    let base = repo.port_base;
    assert_eq!(http_status(&format!("http://127.0.0.1:{}", base + 102)), 200);
    let p = Command::new("docker").args(["port", &format!("iso-{tag}-t1-web")]).output().unwrap();
    let ports = stdout(&p);
    assert!(ports.contains(&format!("80/tcp -> 127.0.0.1:{}", base + 102)) && ports.contains(&format!("9999/tcp -> 127.0.0.1:{}", base + 104)), "{ports}");
    let logs = repo.iso_ok(&["logs", "1", "worker"]);
    assert!(logs.contains("hello"), "{logs}");
    repo.iso_ok(&["cleanup", "1"]);
    assert!(docker.names("container", None).is_empty() && docker.names("volume", None).is_empty());
}

/// A process of this user listening on `port`, working in `dir`; returns
/// once it listens.
fn listener_in(dir: &std::path::Path, port: u16) -> std::process::Child {
    let mut server = Command::new("python3")
        .args(["-c", &format!("import socket,time\ns=socket.socket()\ns.bind(('127.0.0.1',{port}))\ns.listen()\nprint('ready',flush=True)\ntime.sleep(600)")])
        .current_dir(dir)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(server.stdout.take().unwrap()), &mut line).unwrap();
    assert_eq!(line.trim(), "ready");
    server
}

#[test]
fn cleanup_kill_ports_ends_only_the_threads_own_listeners() {
    let repo = TestRepo::new("[threads]\nmax = 2\n[ports]\nblock_size = 10\n");
    repo.iso_ok(&["init", "k"]);
    let worktree = repo.path(".worktrees/thread-1");
    // The thread's dev server, working in its worktree, and another
    // repository's, which happens to listen in the same block.
    let (own_port, other_port) = (repo.port_base + 15, repo.port_base + 16);
    let mut own = listener_in(&worktree.join("src"), own_port);
    let elsewhere = tempfile::tempdir().unwrap();
    let mut other = listener_in(elsewhere.path(), other_port);
    let out = repo.iso(&["cleanup", "1", "--kill-ports"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains(&format!("ending pid {}", own.id())) && err.contains(&format!("port {own_port}")), "{err}");
    assert!(err.contains(&format!("leaving pid {}", other.id())) && err.contains("alone"), "the other one is named: {err}");
    let deadline = Instant::now() + Duration::from_secs(5);
    while own.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the thread's listener is still running");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(other.try_wait().unwrap().is_none(), "the other repository's listener was ended");
    other.kill().unwrap();
    other.wait().unwrap();
}

#[test]
fn init_killed_after_starting_services_is_undone_by_doctor_fix() {
    let (repo, docker, _) = repo(WEB_STACK);
    let mut child = repo.iso_cmd(&["init", "doomed"]).env("ISO_FAULT_PAUSE", "services").stderr(Stdio::piped()).spawn().unwrap();
    let mut err = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        let n = std::io::BufRead::read_line(&mut err, &mut line).unwrap();
        assert!(n > 0, "iso exited before the pause point");
        if line.contains("paused at services") {
            break;
        }
    }
    child.kill().unwrap(); // SIGKILL
    let _ = child.wait();
    assert_eq!(docker.names("container", Some(1)).len(), 1, "the stack was running when init died");
    let out = repo.iso(&["doctor"]);
    assert!(stdout(&out).contains("interrupted while being created"), "{}", stdout(&out));
    repo.iso_ok(&["doctor", "--fix"]);
    assert!(docker.names("container", None).is_empty());
    assert!(docker.names("network", None).is_empty());
    assert!(repo.threads().is_empty());
}

/// A web service whose named volume holds the data a user wrote.
const DATA_STACK: &str = r#"
[services.api]
image = "iso-test/busybox:1"
command = "busybox httpd -f -p 8080 -h /data"
port = 8080
volumes = ["data:/data"]
healthcheck = { tcp = true }
"#;

#[test]
fn a_lost_registry_loses_nothing_doctor_re_registers_the_thread_with_its_data() {
    let (repo, docker, tag) = small_repo(DATA_STACK);
    repo.iso_ok(&["init", "keep", "--task", "the data one"]);
    repo.iso_ok(&["exec", "1", "api", "--", "sh", "-c", "echo precious > /data/note"]);
    let before = repo.threads()[0].clone();

    // iso's whole directory is lost (deleted by hand, by a disk tool):
    // registry, repository id, event log.
    let repo_id = std::fs::read_to_string(repo.path(".git/iso/repo-id")).unwrap();
    std::fs::remove_dir_all(repo.path(".git/iso")).unwrap();
    assert!(repo.threads().is_empty());

    // doctor says what it found and changes nothing.
    let out = repo.iso(&["doctor", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let findings: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let text = serde_json::Value::from(findings.clone()).to_string();
    assert_eq!(findings.len(), 1, "only the missing thread, not its containers or volume: {text}");
    assert_eq!(findings[0]["thread"], 1);
    assert!(findings[0]["problem"].as_str().unwrap().contains("thread 1 (keep) is missing from the registry"), "{text}");
    assert!(!text.contains("thread 0") && !text.contains("no longer exists"), "{text}");
    assert!(repo.threads().is_empty(), "doctor without --fix changes nothing");
    assert_eq!(docker.names("volume", Some(1)), [format!("iso-{tag}-t1-data")]);
    assert_eq!(docker.names("container", Some(1)).len(), 1);

    // --fix re-registers it as it was, and the data is still there.
    let out = repo.iso(&["doctor", "--fix", "--json"]);
    assert!(out.status.success(), "{}", stdout(&out));
    let after = repo.threads()[0].clone();
    for key in ["id", "name", "branch", "base", "ports", "port_block", "worktree", "task", "created"] {
        assert_eq!(after[key], before[key], "{key}");
    }
    assert_eq!(repo.iso_ok(&["exec", "1", "api", "--", "cat", "/data/note"]).trim(), "precious");
    let id_of = |text: &str| text.lines().find(|l| l.starts_with("id =")).unwrap().to_string();
    assert_eq!(id_of(&std::fs::read_to_string(repo.path(".git/iso/repo-id")).unwrap()), id_of(&repo_id), "the id is taken back from the kept record");
    let leases = repo.iso_json(&["ports", "--all"]);
    assert_eq!(leases.as_array().unwrap().len(), 1, "{leases}");
    assert_eq!(leases[0]["block"], before["port_block"]);
    assert!(repo.iso(&["doctor"]).status.success(), "clean afterwards");
    repo.iso_ok(&["cleanup", "1"]);
    assert!(docker.names("volume", Some(1)).is_empty());
}

/// [`WEB_STACK`] whose container writes a line to its log first, so a
/// test can tell whose logs `iso logs` shows.
const LOGGING_WEB_STACK: &str = r#"
[services.api]
image = "iso-test/busybox:1"
command = ["sh", "-c", "echo old-checkout-log-line; exec busybox httpd -f -p 8080 -h /www"]
port = 8080
healthcheck = { http = "/" }
"#;

fn container_running(name: &str) -> bool {
    let out = Command::new("docker").args(["inspect", "-f", "{{.State.Running}}", name]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim() == "true"
}

#[test]
fn a_new_checkout_at_the_same_path_never_takes_the_old_ones_resources() {
    let (repo, docker, tag) = small_repo(LOGGING_WEB_STACK);
    repo.iso_ok(&["init", "old"]);
    let old_container = format!("iso-{tag}-t1-api");
    assert_eq!(docker.names("container", Some(1)), [old_container.as_str()]);
    let old_id = std::fs::read_to_string(repo.path(".git/iso/repo-id")).unwrap();

    // The repository is deleted and made again at the same path (a
    // re-clone): its files stay, git and iso's state are new.
    std::fs::remove_dir_all(repo.path(".git")).unwrap();
    std::fs::remove_dir_all(repo.path(".worktrees")).unwrap();
    repo.git(&["init", "-q", "-b", "main"]);
    repo.git(&["add", "."]);
    repo.git(&["commit", "-q", "-m", "again"]);

    // doctor reports the old checkout's resources and leaves them, with --fix too.
    let out = repo.iso(&["doctor", "--fix"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let text = stdout(&out);
    assert!(text.contains(&old_container) && text.contains("another repository at this path") && text.contains("left alone"), "{text}");
    assert_eq!(docker.names("container", Some(1)), [old_container.as_str()], "doctor --fix removed another checkout's container");
    assert_ne!(std::fs::read_to_string(repo.path(".git/iso/repo-id")).unwrap(), old_id, "the new checkout has its own id");

    // Its thread 1 would need the same resource names: a clear error, and
    // the rollback leaves the old container alone.
    let out = repo.iso(&["init", "new"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains(&format!("iso-{tag}-t1")) && err.contains("another repository at"), "{err}");
    assert_eq!(docker.names("container", Some(1)), [old_container.as_str()], "rollback removed another checkout's container");
    assert!(repo.threads().is_empty());

    // Its own thread 1, without services: status, logs, exec and down
    // find containers by path and thread too, and must see only this
    // checkout's (none), never the old one's of the same name.
    repo.iso_ok(&["init", "new", "--no-services"]);
    assert_eq!(repo.threads()[0]["id"], 1);
    assert!(container_running(&old_container));
    let status = repo.iso_json(&["status", "1"]);
    let api = &status["services"][0];
    assert_eq!(api["container"], old_container.as_str(), "{status}");
    assert_eq!(api["state"], "missing", "status showed another checkout's container: {status}");
    assert_eq!(api["health"], "-", "{status}");
    let out = repo.iso(&["logs", "1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stdout(&out).contains("old-checkout-log-line"), "logs showed another checkout's container: {}", stdout(&out));
    let out = repo.iso(&["exec", "1", "api", "--", "true"]);
    assert!(!out.status.success(), "exec ran in another checkout's container");
    let out = repo.iso(&["down", "1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(container_running(&old_container), "down stopped another checkout's container");
    let list = repo.iso_ok(&["list"]);
    assert!(!list.contains("1/1"), "list counted another checkout's container: {list}");
    assert!(container_running(&old_container));
}

#[test]
fn a_thread_an_older_iso_made_is_rebuilt_from_its_worktree_and_docker_labels() {
    let (repo, docker, tag) = small_repo(WEB_STACK);
    repo.iso_ok(&["init", "old"]);
    let before = repo.threads()[0].clone();
    let container = format!("iso-{tag}-t1-api");
    let label = |key: &str| {
        let out = Command::new("docker").args(["inspect", "-f", &format!("{{{{index .Config.Labels \"{key}\"}}}}"), &container]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let (repo_label, network) = (label("iso.repo"), format!("iso-{tag}-t1"));
    let port = before["ports"]["api"].as_u64().unwrap();
    // What an iso before kept records and repository ids left: the
    // container without `iso.repo-id`, no record beside the worktree, and
    // then the registry is lost.
    assert!(Command::new("docker").args(["rm", "-f", &container]).status().unwrap().success());
    let run = Command::new("docker")
        .args(["run", "-d", "--name", &container, "--network", &network, "-p", &format!("127.0.0.1:{port}:8080")])
        .args(["--label", "iso.managed=1", "--label", &format!("iso.repo={repo_label}"), "--label", "iso.thread=1", "--label", "iso.service=api"])
        .args(["--label", "iso.test=1", "iso-test/busybox:1", "busybox", "httpd", "-f", "-p", "8080", "-h", "/www"])
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", stderr(&run));
    std::fs::remove_file(repo.path(".git/worktrees/thread-1/iso-thread.json")).unwrap();
    std::fs::remove_file(repo.path(".git/iso/registry.toml")).unwrap();
    assert!(repo.threads().is_empty());

    // doctor says what it knows and changes nothing.
    let out = repo.iso(&["doctor", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    let findings: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
    assert_eq!(findings.len(), 1, "only the missing thread, not its container as a leftover or another's: {text}");
    let problem = findings[0]["problem"].as_str().unwrap();
    assert!(problem.contains("thread 1 (old) is missing from the registry") && problem.contains("thread-1-old") && problem.contains(&container), "{text}");
    assert!(repo.threads().is_empty(), "doctor without --fix changes nothing");

    // On another branch, they disagree: reported, nothing re-registered or removed.
    let wt = repo.path(".worktrees/thread-1");
    let git_in_wt = |args: &[&str]| assert!(Command::new("git").arg("-C").arg(&wt).args(args).status().unwrap().success());
    // (A commit of its own, or doctor takes thread-1-old for a branch an
    // unfinished init left unused, and deletes it.)
    git_in_wt(&["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty", "-m", "work"]);
    git_in_wt(&["switch", "-q", "-c", "elsewhere"]);
    let out = repo.iso(&["doctor", "--fix"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("branch elsewhere is not what the branch template"), "{}", stdout(&out));
    assert!(repo.threads().is_empty() && wt.is_dir() && docker.names("container", Some(1)) == [container.as_str()]);
    git_in_wt(&["switch", "-q", "thread-1-old"]);

    // --fix re-registers it: the worktree, branch and labels agree.
    let out = repo.iso(&["doctor", "--fix", "--json"]);
    assert!(out.status.success(), "{}", stdout(&out));
    let after = repo.threads()[0].clone();
    for key in ["id", "name", "branch", "ports", "port_block", "worktree"] {
        assert_eq!(after[key], before[key], "{key}");
    }
    assert!(repo.path(".git/worktrees/thread-1/iso-thread.json").is_file(), "its record is kept from now on");
    let status = repo.iso_json(&["status", "1"]);
    assert_eq!(status["services"][0]["state"], "running", "{status}");
    assert_eq!(repo.iso_json(&["ports", "--all"]).as_array().unwrap().len(), 1);
    assert!(repo.iso(&["doctor"]).status.success(), "clean afterwards: {}", stdout(&repo.iso(&["doctor"])));
    repo.iso_ok(&["cleanup", "1"]);
    assert!(docker.names("container", Some(1)).is_empty());
}
