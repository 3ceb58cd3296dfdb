//! `iso init --seed-from` and `iso snapshot`: new threads whose volumes
//! start as copies of another thread's, a snapshot's or the main
//! checkout's, against the real engine and the test images.

use std::process::Command;

use crate::support::docker::{docker_section, env_value, psql, tag, try_psql, DockerGuard};
use crate::support::{stderr, wait_for, TestRepo};

const PG_STACK: &str = r#"
[services.postgres]
image = "iso-test/pg-redis:1"
command = ["iso-postgres"]
port = 5432
environment = { POSTGRES_DB = "app" }
volumes = ["pgdata:/var/lib/iso-pg"]
healthcheck = { command = ["pg_isready", "-U", "postgres", "-h", "127.0.0.1", "-q"] }
export = { DATABASE_URL = "postgresql://postgres@{{ host }}:{{ port }}/app" }
"#;

/// A web server serving its `files` volume.
const FILES_STACK: &str = r#"
[services.api]
image = "iso-test/busybox:1"
command = "busybox httpd -f -p 8080 -h /www"
port = 8080
volumes = ["files:/www"]
healthcheck = { tcp = true }
"#;

/// Removes the snapshots' volumes (they carry no thread labels, so the
/// [`DockerGuard`] does not see them), pass or fail.
struct SnapshotGuard(String);

impl Drop for SnapshotGuard {
    fn drop(&mut self) {
        for v in snapshot_volumes(&self.0) {
            let _ = Command::new("docker").args(["volume", "rm", "-f", &v]).output();
        }
    }
}

fn snapshot_volumes(tag: &str) -> Vec<String> {
    let out = Command::new("docker").args(["volume", "ls", "-q", "--filter", "label=iso.snapshot"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).lines().filter(|v| v.starts_with(&format!("iso-{tag}-snap-"))).map(str::to_string).collect()
}

fn repo(stack: &str) -> (TestRepo, DockerGuard, SnapshotGuard, String) {
    let t = tag();
    let repo = TestRepo::new(&format!("[threads]\nmax = 3\n[ports]\nblock_size = 10\n{}{stack}", docker_section(&t, "")));
    let guard = DockerGuard::new(&repo.root);
    (repo, guard, SnapshotGuard(t.clone()), t)
}

fn dexec(container: &str, sh: &str) -> String {
    let out = Command::new("docker").args(["exec", container, "sh", "-c", sh]).output().unwrap();
    assert!(out.status.success(), "docker exec {container} {sh}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn url(repo: &TestRepo, id: u32) -> String {
    env_value(&repo.path(&format!(".worktrees/thread-{id}/.env.thread")), "DATABASE_URL")
}

#[test]
fn a_seeded_postgres_sees_the_sources_rows_keeps_its_writes_and_the_source_keeps_serving() {
    let (repo, docker, _snaps, _tag) = repo(PG_STACK);
    repo.iso_ok(&["init", "source"]);
    let src = url(&repo, 1);
    psql(&src, "create table t (v int); insert into t values (1), (2), (3);");

    let out = repo.iso(&["init", "copy", "--seed-from", "source"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("seeded from source"), "{err}");
    assert!(err.contains("stopped for"), "the source's pause is reported: {err}");
    let copy = url(&repo, 2);
    assert_eq!(psql(&copy, "select sum(v) from t"), "6");

    // The source serves again (it was stopped for the copy and started).
    wait_for("the source to serve again", std::time::Duration::from_secs(90), || try_psql(&src, "select 1").0);
    // Its writes are its own.
    psql(&copy, "insert into t values (100)");
    assert_eq!(psql(&copy, "select sum(v) from t"), "106");
    assert_eq!(psql(&src, "select sum(v) from t"), "6");
    psql(&src, "insert into t values (10)");
    assert_eq!(psql(&copy, "select sum(v) from t"), "106");
    assert_eq!(docker.names("volume", Some(2)).len(), 1);
}

#[test]
fn streaming_copies_files_links_and_modes_through_helper_containers() {
    let (repo, docker, _snaps, tag) = repo(FILES_STACK);
    repo.iso_ok(&["init", "one"]);
    let web1 = format!("iso-{tag}-t1-api");
    dexec(&web1, "echo hello > /www/index.html && mkdir -p /www/sub && echo deep > /www/sub/f && chmod 640 /www/sub/f && ln -s /etc/passwd /www/link");

    let out = repo.iso_cmd(&["init", "two", "--seed-from", "1"]).env("ISO_SEED_COPY", "stream").output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("stream"), "{}", stderr(&out));
    let web2 = format!("iso-{tag}-t2-api");
    assert_eq!(dexec(&web2, "cat /www/index.html /www/sub/f"), "hello\ndeep");
    assert_eq!(dexec(&web2, "stat -c %a /www/sub/f"), "640");
    assert_eq!(dexec(&web2, "readlink /www/link"), "/etc/passwd");
    // The helpers are gone; the source runs again.
    assert!(docker.names("container", None).iter().all(|c| !c.contains("-seed-")), "{:?}", docker.names("container", None));
    assert_eq!(dexec(&web1, "cat /www/index.html"), "hello");
}

#[test]
fn a_missing_source_or_no_matching_volume_is_an_error_and_rolls_back() {
    let (repo, docker, _snaps, _tag) = repo(FILES_STACK);
    let out = repo.iso(&["init", "two", "--seed-from", "nosuch"]);
    assert_eq!(out.status.code(), Some(3), "not found: {}", stderr(&out));
    assert!(stderr(&out).contains("nosuch"), "{}", stderr(&out));
    assert!(repo.threads().is_empty());

    // `main` has no Compose project here: nothing matches, the thread and
    // the volumes made for it go again.
    let out = repo.iso(&["init", "two", "--seed-from", "main"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("no volume matching"), "{}", stderr(&out));
    assert!(stderr(&out).contains("rolled back"), "{}", stderr(&out));
    assert!(repo.threads().is_empty());
    assert!(docker.names("volume", None).is_empty(), "{:?}", docker.names("volume", None));
    assert!(docker.names("container", None).is_empty());

    let out = repo.iso(&["init", "two", "--seed-from", "snapshot:nope"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("no snapshot `nope`"), "{}", stderr(&out));
    assert!(repo.threads().is_empty());
}

#[test]
fn snapshots_are_saved_listed_seeded_from_after_their_source_is_gone_and_removed() {
    let (repo, _docker, _snaps, tag) = repo(FILES_STACK);
    repo.iso_ok(&["init", "one"]);
    dexec(&format!("iso-{tag}-t1-api"), "echo fixture > /www/index.html");
    repo.iso_ok(&["snapshot", "save", "base", "--from", "one"]);
    let list = repo.iso_json(&["snapshot", "list"]);
    assert_eq!(list[0]["name"], "base", "{list}");
    assert_eq!(list[0]["volumes"]["files"], format!("iso-{tag}-snap-base-files"));

    // Cleanup takes the thread's volumes, never a snapshot's.
    repo.iso_ok(&["cleanup", "one", "--force"]);
    assert_eq!(snapshot_volumes(&tag).len(), 1);
    let out = repo.iso(&["doctor"]);
    assert!(!String::from_utf8_lossy(&out.stdout).contains("snap"), "a snapshot is no orphan: {}", String::from_utf8_lossy(&out.stdout));

    let out = repo.iso(&["init", "two", "--seed-from", "snapshot:base"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let id = repo.threads()[0]["id"].as_u64().unwrap();
    assert_eq!(dexec(&format!("iso-{tag}-t{id}-api"), "cat /www/index.html"), "fixture");

    let out = repo.iso(&["snapshot", "save", "base", "--from", "two"]);
    assert!(!out.status.success(), "a second `base` is refused");
    repo.iso_ok(&["snapshot", "rm", "base"]);
    assert!(snapshot_volumes(&tag).is_empty());
    assert_eq!(repo.iso_json(&["snapshot", "list"]), serde_json::json!([]));
}

#[test]
fn threads_seed_in_iso_toml_is_the_default_and_no_seed_skips_it() {
    let t = tag();
    let repo = TestRepo::new(&format!("[threads]\nmax = 3\nseed = \"1\"\n[ports]\nblock_size = 10\n{}{FILES_STACK}", docker_section(&t, "")));
    let _docker = DockerGuard::new(&repo.root);
    // Thread 1 itself has no source yet: the first init skips with --no-seed.
    repo.iso_ok(&["init", "one", "--no-seed"]);
    dexec(&format!("iso-{t}-t1-api"), "echo from-one > /www/index.html");
    repo.iso_ok(&["init", "two"]);
    assert_eq!(dexec(&format!("iso-{t}-t2-api"), "cat /www/index.html"), "from-one");
    repo.iso_ok(&["init", "three", "--no-seed"]);
    // (Docker fills an empty volume from the image's /www: not from thread 1.)
    assert_ne!(dexec(&format!("iso-{t}-t3-api"), "cat /www/index.html 2>/dev/null; true"), "from-one");
}
