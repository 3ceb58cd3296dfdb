//! Docker helpers for the end-to-end suites: a guard that removes every
//! resource a test repository's threads created (by label, even when the
//! test fails), and clients for what the stacks serve.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// The test image's Postgres as an iso.toml service (a volume `pgdata`,
/// `DATABASE_URL` exported): a macro, so stacks can `concat!` it.
macro_rules! pg_service {
    () => {
        r#"
[services.postgres]
image = "iso-test/pg-redis:1"
command = ["iso-postgres"]
port = 5432
environment = { POSTGRES_DB = "app" }
volumes = ["pgdata:/var/lib/iso-pg"]
healthcheck = { command = ["pg_isready", "-U", "postgres", "-h", "127.0.0.1", "-q"] }
export = { DATABASE_URL = "postgresql://postgres@{{ host }}:{{ port }}/app" }
"#
    };
}
pub(crate) use pg_service;

/// The `[docker]` table of a test repository: every resource carries
/// `iso.test=1` (so `.ci/cleanup-test-resources` finds leftovers), and
/// resource names get `tag` instead of the directory name (every test
/// repository's directory is called `app`), so tests running at the same
/// time never share a name. Names are then `iso-<tag>-t<id>-<service>`.
pub fn docker_section(tag: &str, extra: &str) -> String {
    format!("[docker]\nlabels = {{ \"iso.test\" = \"1\" }}\nstop_timeout = 1\nname = \"{tag}\"\n{extra}")
}

/// A tag no other test repository of any test process has: a count within
/// this process, and the process id.
pub fn tag() -> String {
    static COUNT: AtomicU32 = AtomicU32::new(1);
    format!("e{}-{}", COUNT.fetch_add(1, Ordering::Relaxed), std::process::id())
}

/// Removes every container, volume and network labelled with the test
/// repository's root when dropped.
pub struct DockerGuard {
    pub repo_root: PathBuf,
}

impl DockerGuard {
    pub fn new(repo_root: &Path) -> DockerGuard {
        assert_docker();
        DockerGuard { repo_root: repo_root.to_path_buf() }
    }

    /// Names of `kind` (container, volume, network) labelled with this
    /// repository and, if given, thread.
    pub fn names(&self, kind: &str, thread: Option<u32>) -> Vec<String> {
        resources(kind, &self.repo_root, thread)
    }
}

impl Drop for DockerGuard {
    fn drop(&mut self) {
        let c = resources("container", &self.repo_root, None);
        if !c.is_empty() {
            let _ = Command::new("docker").args(["rm", "-f", "-v"]).args(&c).output();
        }
        let v = resources("volume", &self.repo_root, None);
        if !v.is_empty() {
            let _ = Command::new("docker").args(["volume", "rm", "-f"]).args(&v).output();
        }
        let ids = ids("network", &self.repo_root, None);
        if !ids.is_empty() {
            let _ = Command::new("docker").args(["network", "rm"]).args(&ids).output();
        }
    }
}

/// Fail loudly when there is no engine: these tests need a real one
/// (`.ci/install-deps` starts it).
pub fn assert_docker() {
    let ok = Command::new("docker").args(["info", "--format", "{{.ServerVersion}}"]).output().is_ok_and(|o| o.status.success());
    assert!(ok, "no Docker engine reachable: run `bash .ci/install-deps` (it installs and starts dockerd and builds the test images)");
}

fn filter_args(repo_root: &Path, thread: Option<u32>) -> Vec<String> {
    let mut f = vec!["--filter".to_string(), format!("label=iso.repo={}", repo_root.display())];
    if let Some(t) = thread {
        f.push("--filter".into());
        f.push(format!("label=iso.thread={t}"));
    }
    f
}

fn list(kind: &str, repo_root: &Path, thread: Option<u32>, format: &str) -> Vec<String> {
    let mut cmd = Command::new("docker");
    match kind {
        "container" => cmd.args(["ps", "-a"]),
        "volume" => cmd.args(["volume", "ls"]),
        "network" => cmd.args(["network", "ls"]),
        other => panic!("unknown kind {other}"),
    };
    cmd.args(filter_args(repo_root, thread)).args(["--format", format]);
    // Never panics: the guard calls this while a failed test unwinds.
    let Ok(out) = cmd.output() else { return Vec::new() };
    if !out.status.success() {
        eprintln!("docker {kind} list: {}", String::from_utf8_lossy(&out.stderr));
        return Vec::new();
    }
    let mut v: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).filter(|l| !l.is_empty()).collect();
    v.sort();
    v
}

pub fn resources(kind: &str, repo_root: &Path, thread: Option<u32>) -> Vec<String> {
    list(kind, repo_root, thread, if kind == "container" { "{{.Names}}" } else { "{{.Name}}" })
}

fn ids(kind: &str, repo_root: &Path, thread: Option<u32>) -> Vec<String> {
    list(kind, repo_root, thread, "{{.ID}}")
}

/// The value of `key` in a dotenv file.
pub fn env_value(env_file: &Path, key: &str) -> String {
    let text = std::fs::read_to_string(env_file).unwrap_or_else(|e| panic!("read {}: {e}", env_file.display()));
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no {key} in {}:\n{text}", env_file.display()))
        .trim_matches('"')
        .to_string()
}

/// Run psql with `sql` against `url`; stdout, trimmed. Panics on failure.
pub fn psql(url: &str, sql: &str) -> String {
    let out = Command::new("psql").args([url, "-v", "ON_ERROR_STOP=1", "-Atc", sql]).output().expect("run psql");
    assert!(out.status.success(), "psql {url} -c {sql:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// psql that may fail: (success, stdout + stderr).
pub fn try_psql(url: &str, sql: &str) -> (bool, String) {
    let out = Command::new("psql").args([url, "-v", "ON_ERROR_STOP=1", "-Atc", sql]).output().expect("run psql");
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

/// `host:port` of a URL such as `redis://127.0.0.1:20101`.
pub fn host_port(url: &str) -> (String, u16) {
    let rest = url.split("://").nth(1).unwrap_or(url);
    let rest = rest.rsplit('@').next().unwrap_or(rest);
    let hp = rest.split('/').next().unwrap_or(rest);
    let (h, p) = hp.rsplit_once(':').expect("host:port");
    (h.to_string(), p.parse().expect("port"))
}

/// Redis PING over RESP; the reply line.
pub fn redis_ping(url: &str) -> String {
    let (h, p) = host_port(url);
    let mut s = TcpStream::connect((h.as_str(), p)).unwrap_or_else(|e| panic!("connect {url}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    s.write_all(b"PING\r\n").unwrap();
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).unwrap_or(0);
    String::from_utf8_lossy(&buf[..n]).trim().to_string()
}

/// `GET /` status code, or 0 when nothing answers.
pub fn http_status(url: &str) -> u16 {
    let (h, p) = host_port(url);
    let Ok(mut s) = TcpStream::connect((h.as_str(), p)) else { return 0 };
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    if s.write_all(format!("GET / HTTP/1.0\r\nHost: {h}\r\n\r\n").as_bytes()).is_err() {
        return 0;
    }
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0)
}
