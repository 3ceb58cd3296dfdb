//! `iso init --seed-from` and `iso snapshot`: new threads whose volumes
//! start as copies of another thread's, a snapshot's or the main
//! checkout's, against the real engine and the test images.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use crate::support::docker::{docker_section, env_value, pg_service, psql, tag, DockerGuard};
use crate::support::server::Server;
use crate::support::{stderr, wait_for, TestRepo};

const PG_STACK: &str = pg_service!();

/// A web server serving its `files` volume.
const FILES_STACK: &str = r#"
[services.api]
image = "iso-test/busybox:1"
command = "busybox httpd -f -p 8080 -h /www"
port = 8080
volumes = ["files:/www", "extra:/extra"]
healthcheck = { tcp = true }
"#;

/// Removes the snapshots' volumes (they carry no thread labels, so the
/// [`DockerGuard`] does not see them), pass or fail.
pub(crate) struct SnapshotGuard(pub(crate) String);

impl Drop for SnapshotGuard {
    fn drop(&mut self) {
        for v in snapshot_volumes(&self.0) {
            let _ = Command::new("docker").args(["volume", "rm", "-f", &v]).output();
        }
    }
}

pub(crate) fn snapshot_volumes(tag: &str) -> Vec<String> {
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
    // The test image runs Postgres with synchronous_commit=off, whose last
    // commits (up to 3 × wal_writer_delay) a crash, and so a paused copy,
    // may lose; on is Postgres's default and what a paused copy relies on.
    let stack = PG_STACK.replace(r#"command = ["iso-postgres"]"#, r#"command = ["iso-postgres", "-c", "synchronous_commit=on"]"#);
    assert_ne!(stack, PG_STACK);
    let (repo, docker, _snaps, _tag) = repo(&stack);
    repo.iso_ok(&["init", "source"]);
    let src = url(&repo, 1);
    psql(&src, "create table t (v int); insert into t values (1), (2), (3);");
    // A client of the source, connected across the seed.
    let mut client = Command::new("psql").args([&src, "-v", "ON_ERROR_STOP=1", "-At"]).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    let mut client_in = client.stdin.take().unwrap();
    let mut client_out = BufReader::new(client.stdout.take().unwrap());
    let mut backend = || {
        writeln!(client_in, "select pg_backend_pid();").unwrap();
        let mut line = String::new();
        client_out.read_line(&mut line).unwrap();
        line.trim().to_string()
    };
    let before = backend();
    assert!(before.parse::<u32>().is_ok(), "{before:?}");

    let out = repo.iso(&["init", "copy", "--seed-from", "source"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("seeded from source"), "{err}");
    assert!(err.contains("paused for"), "the source's pause is reported: {err}");
    let copy = url(&repo, 2);
    // A crash-consistent copy: Postgres recovered it from its WAL on start.
    assert_eq!(psql(&copy, "select sum(v) from t"), "6");

    // The source was paused, not stopped: its client kept its connection.
    assert_eq!(backend(), before, "the same backend serves the client after the seed");
    drop(client_in);
    assert!(client.wait().unwrap().success());
    // Its writes are its own.
    psql(&copy, "insert into t values (100)");
    assert_eq!(psql(&copy, "select sum(v) from t"), "106");
    assert_eq!(psql(&src, "select sum(v) from t"), "6");
    psql(&src, "insert into t values (10)");
    assert_eq!(psql(&copy, "select sum(v) from t"), "106");
    assert_eq!(docker.names("volume", Some(2)).len(), 1);
}

#[test]
fn seed_hold_stop_stops_and_starts_the_source_instead() {
    let t = tag();
    let repo = TestRepo::new(&format!("[threads]\nmax = 3\nseed_hold = \"stop\"\n[ports]\nblock_size = 10\n{}{FILES_STACK}", docker_section(&t, "")));
    let _docker = DockerGuard::new(&repo.root);
    repo.iso_ok(&["init", "one"]);
    let started = || dexec_host(&["inspect", "-f", "{{.State.StartedAt}}", &format!("iso-{t}-t1-api")]);
    let first = started();
    dexec(&format!("iso-{t}-t1-api"), "echo stopped > /www/index.html");
    let out = repo.iso(&["init", "two", "--seed-from", "one"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains(&format!("iso-{t}-t1-api stopped for")), "{}", stderr(&out));
    assert_ne!(started(), first, "the source was stopped and started again");
    assert_eq!(dexec(&format!("iso-{t}-t2-api"), "cat /www/index.html"), "stopped");
    assert_eq!(dexec_host(&["inspect", "-f", "{{.State.Status}}", &format!("iso-{t}-t1-api")]), "running");
}

#[test]
fn a_source_left_paused_by_a_killed_seed_is_unpaused_by_iso_up() {
    let (repo, _docker, _snaps, t) = repo(FILES_STACK);
    repo.iso_ok(&["init", "one"]);
    let c = format!("iso-{t}-t1-api");
    dexec_host(&["pause", &c]);
    repo.iso_ok(&["up", "1"]);
    assert_eq!(dexec_host(&["inspect", "-f", "{{.State.Status}}", &c]), "running");
}

fn dexec_host(args: &[&str]) -> String {
    let out = Command::new("docker").args(args).output().unwrap();
    assert!(out.status.success(), "docker {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn streaming_copies_files_links_and_modes_through_helper_containers() {
    let (repo, docker, _snaps, tag) = repo(FILES_STACK);
    repo.iso_ok(&["init", "one"]);
    let web1 = format!("iso-{tag}-t1-api");
    dexec(&web1, "echo hello > /www/index.html && mkdir -p /www/sub && echo deep > /www/sub/f && chmod 640 /www/sub/f && chown 123:456 /www/sub/f && ln -s /etc/passwd /www/link");

    let out = repo.iso_cmd(&["init", "two", "--seed-from", "1"]).env("ISO_SEED_COPY", "stream").output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("stream"), "{}", stderr(&out));
    let web2 = format!("iso-{tag}-t2-api");
    assert_eq!(dexec(&web2, "cat /www/index.html /www/sub/f"), "hello\ndeep");
    assert_eq!(dexec(&web2, "stat -c %a:%u:%g /www/sub/f"), "640:123:456");
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
    assert_eq!(list[0]["volumes"]["extra"], format!("iso-{tag}-snap-base-extra"));

    // Cleanup takes the thread's volumes, never a snapshot's.
    repo.iso_ok(&["cleanup", "one", "--force"]);
    assert_eq!(snapshot_volumes(&tag).len(), 2);
    let out = repo.iso(&["doctor"]);
    assert!(!String::from_utf8_lossy(&out.stdout).contains("snap"), "a snapshot is no orphan: {}", String::from_utf8_lossy(&out.stdout));

    let out = repo.iso(&["init", "two", "--seed-from", "snapshot:base"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let id = repo.threads()[0]["id"].as_u64().unwrap();
    assert_eq!(dexec(&format!("iso-{tag}-t{id}-api"), "cat /www/index.html"), "fixture");

    let out = repo.iso(&["snapshot", "save", "base", "--from", "two"]);
    assert!(!out.status.success(), "a second `base` is refused");

    // A snapshot that lost a volume is reported by doctor and the listing.
    let out = Command::new("docker").args(["volume", "rm", &format!("iso-{tag}-snap-base-extra")]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = repo.iso(&["doctor"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("snapshot `base` is missing its volume(s) extra"), "{}", String::from_utf8_lossy(&out.stdout));
    assert_eq!(repo.iso_json(&["snapshot", "list"])[0]["missing"], serde_json::json!(["extra"]));
    repo.iso_ok(&["snapshot", "rm", "base"]);
    assert!(snapshot_volumes(&tag).is_empty());
    assert_eq!(repo.iso_json(&["snapshot", "list"]), serde_json::json!([]));
}

#[test]
fn snapshots_through_a_server_are_what_the_local_cli_sees() {
    let (repo, _docker, _snaps, tag) = repo(FILES_STACK);
    repo.iso_ok(&["init", "one"]);
    dexec(&format!("iso-{tag}-t1-api"), "echo remote > /www/index.html");
    let s = Server::start(&repo, Some("seed-token"));
    let elsewhere = tempfile::tempdir().unwrap(); // no repository: everything goes through the server
    let remote = |args: &[&str]| repo.iso_cmd_at(elsewhere.path(), args).env("ISO_API_URL", &s.url).env("ISO_API_TOKEN", "seed-token").output().unwrap();

    let out = remote(&["snapshot", "save", "base", "--from", "one", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let saved: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(saved["snapshot"]["volumes"]["files"], format!("iso-{tag}-snap-base-files"), "{saved}");
    assert_eq!(saved["copies"].as_array().map(Vec::len), Some(2), "{saved}");
    assert_eq!(snapshot_volumes(&tag).len(), 2);

    let out = remote(&["snapshot", "list", "--json"]);
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed, repo.iso_json(&["snapshot", "list"]));
    assert_eq!(listed[0]["from"], "1 (one)", "{listed}");
    let out = remote(&["snapshot", "list"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&repo.iso(&["snapshot", "list"]).stdout));

    // Errors keep their kind (exit code) and message through the server.
    for args in [&["snapshot", "save", "base", "--from", "one"][..], &["snapshot", "save", "other", "--from", "nope"], &["snapshot", "rm", "nope"]] {
        let (here, there) = (repo.iso(args), remote(args));
        assert!(!here.status.success(), "{args:?}");
        assert_eq!((there.status.code(), stderr(&there)), (here.status.code(), stderr(&here)), "{args:?}");
    }

    // Two clients racing to save one name: one snapshot, whole; the other
    // is refused as a name in use, and removes nothing of the first.
    let racers: Vec<_> = (0..2)
        .map(|_| {
            repo.iso_cmd_at(elsewhere.path(), &["snapshot", "save", "race", "--from", "one"])
                .env("ISO_API_URL", &s.url)
                .env("ISO_API_TOKEN", "seed-token")
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let ended: Vec<_> = racers.into_iter().map(|c| c.wait_with_output().unwrap()).collect();
    assert_eq!(ended.iter().filter(|o| o.status.success()).count(), 1, "{:?}", ended.iter().map(stderr).collect::<Vec<_>>());
    assert!(ended.iter().any(|o| stderr(o).contains("snapshot `race` already exists")), "{:?}", ended.iter().map(stderr).collect::<Vec<_>>());
    let race = repo.iso_json(&["snapshot", "list"]).as_array().unwrap().iter().find(|s| s["name"] == "race").cloned().unwrap();
    assert_eq!(race["volumes"].as_object().map(|v| v.len()), Some(2), "{race}");
    repo.iso_ok(&["snapshot", "rm", "race"]);

    // A thread seeded from it, through the server too.
    let out = remote(&["init", "two", "--seed-from", "snapshot:base"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(dexec(&format!("iso-{tag}-t2-api"), "cat /www/index.html"), "remote");

    let out = remote(&["snapshot", "rm", "base", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let removed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(removed["name"], "base", "{removed}");
    assert!(snapshot_volumes(&tag).is_empty());
    assert_eq!(String::from_utf8_lossy(&remote(&["snapshot", "list", "--json"]).stdout).trim(), "[]");
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

/// A second dockerd whose data root is a loop-mounted XFS with reflinks,
/// on its own socket, exec root and pid file (and no bridge, no iptables),
/// so it never touches the shared engine. Everything goes on drop.
struct XfsEngine {
    dir: tempfile::TempDir,
    mnt: std::path::PathBuf,
    dockerd: Option<std::process::Child>,
    host: String,
}

impl XfsEngine {
    /// `Err(reason)` when this machine cannot do it (not root, no mkfs.xfs).
    fn start() -> Result<XfsEngine, String> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Err("not root: cannot mount a loop device".into());
        }
        if Command::new("mkfs.xfs").arg("-V").output().is_err() {
            return Err("mkfs.xfs is missing (apt-get install xfsprogs)".into());
        }
        let dir = tempfile::Builder::new().prefix("iso-xfs").tempdir_in("/tmp").unwrap();
        let img = dir.path().join("xfs.img");
        let mnt = dir.path().join("mnt");
        std::fs::create_dir(&mnt).unwrap();
        let mut e = XfsEngine { host: format!("unix://{}", dir.path().join("d.sock").display()), dir, mnt, dockerd: None };
        let run = |cmd: &mut Command| {
            let out = cmd.output().unwrap();
            assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
        };
        run(Command::new("truncate").args(["-s", "1G"]).arg(&img));
        run(Command::new("mkfs.xfs").args(["-q", "-m", "reflink=1"]).arg(&img));
        run(Command::new("mount").args(["-o", "loop"]).arg(&img).arg(&e.mnt));
        let d = e.dir.path();
        let log = std::fs::File::create(d.join("dockerd.log")).unwrap();
        e.dockerd = Some(
            Command::new("dockerd")
                .arg("--data-root")
                .arg(e.mnt.join("docker"))
                .arg("--exec-root")
                .arg(d.join("exec"))
                .arg("--pidfile")
                .arg(d.join("dockerd.pid"))
                .args(["-H", &e.host, "--bridge=none", "--iptables=false", "--ip-masq=false"])
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap(),
        );
        wait_for("the second dockerd", std::time::Duration::from_secs(60), || e.docker(&["info"]).status.success());
        // The test image, from the shared engine.
        let mut save = Command::new("docker").args(["save", "iso-test/busybox:1"]).stdout(std::process::Stdio::piped()).spawn().unwrap();
        let load = Command::new("docker").args(["-H", &e.host, "load"]).stdin(save.stdout.take().unwrap()).output().unwrap();
        assert!(save.wait().unwrap().success() && load.status.success(), "docker save | load: {}", String::from_utf8_lossy(&load.stderr));
        Ok(e)
    }

    fn docker(&self, args: &[&str]) -> std::process::Output {
        Command::new("docker").args(["-H", &self.host]).args(args).output().unwrap()
    }
}

impl Drop for XfsEngine {
    fn drop(&mut self) {
        if let Some(mut d) = self.dockerd.take() {
            // SIGTERM: dockerd unmounts its layers on the way out.
            // SAFETY: the pid is our own child's.
            unsafe { libc::kill(d.id() as i32, libc::SIGTERM) };
            let t0 = std::time::Instant::now();
            while d.try_wait().ok().flatten().is_none() && t0.elapsed() < std::time::Duration::from_secs(30) {
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            let _ = d.kill();
            let _ = d.wait();
        }
        if Command::new("umount").arg(&self.mnt).status().map_or(true, |s| !s.success()) {
            let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
        }
    }
}

#[test]
fn on_an_xfs_data_root_the_seed_clones_files_by_reflink() {
    let engine = match XfsEngine::start() {
        Ok(e) => e,
        Err(why) => {
            println!("skipped: {why}");
            return;
        }
    };
    let t = tag();
    let repo = TestRepo::new(&format!("[threads]\nmax = 2\n[ports]\nblock_size = 10\n{}{FILES_STACK}", docker_section(&t, "")));
    let iso = |args: &[&str]| repo.iso_cmd(args).env("DOCKER_HOST", &engine.host).env_remove("ISO_SEED_COPY").output().unwrap();
    // Thread one's volume, filled by hand (no stack runs on this engine:
    // it has no bridge).
    assert!(iso(&["init", "one", "--no-services"]).status.success());
    let src = format!("iso-{t}-t1-files");
    let out = engine.docker(&["volume", "create", &src]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let fill = "dd if=/dev/urandom of=/www/blob bs=1M count=64 2>/dev/null && echo hello > /www/index.html";
    let out = engine.docker(&["run", "--rm", "--network", "none", "-v", &format!("{src}:/www"), "iso-test/busybox:1", "sh", "-c", fill]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let out = iso(&["init", "two", "--no-services", "--seed-from", "one"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("reflink"), "the reflink path: {}", stderr(&out));
    let dst = format!("iso-{t}-t2-files");
    let out = engine.docker(&[
        "run",
        "--rm",
        "--network",
        "none",
        "-v",
        &format!("{dst}:/www"),
        "iso-test/busybox:1",
        "sh",
        "-c",
        "cat /www/index.html; wc -c < /www/blob",
    ]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).split_whitespace().collect::<Vec<_>>(), ["hello", "67108864"]);
    // The kernel says so too: the copy's extents are shared with the source's.
    let blob = engine.mnt.join(format!("docker/volumes/{dst}/_data/blob"));
    let frag = Command::new("filefrag").arg("-v").arg(&blob).output().unwrap();
    assert!(String::from_utf8_lossy(&frag.stdout).contains("shared"), "{}", String::from_utf8_lossy(&frag.stdout));

    // Rollback and cleanup work on this engine as on any.
    let out = iso(&["cleanup", "two", "--force"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!engine.docker(&["volume", "ls", "-q"]).stdout.windows(dst.len()).any(|w| w == dst.as_bytes()));
    let _ = engine.docker(&["volume", "rm", "-f", &src]);
}
