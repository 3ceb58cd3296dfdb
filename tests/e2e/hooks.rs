//! Hooks end to end: the real `iso` binary running the shipped WASM plugins
//! (built from plugins/ for wasm32-wasip2) and Rhai scripts (hooks/) in
//! real repositories, a real HTTP receiver on 127.0.0.1, and hostile
//! plugins and scripts that must be stopped and reported with the
//! registry intact.
//!
//! Ports: every test repository has 4 blocks of 5 (`threads.max = 3`) in a
//! window of its own from `support::ports`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc;
use std::sync::OnceLock;
use std::time::Duration;

use crate::support::{stderr, stdout, TestRepo};

/// The workspace root (tests live in tests/e2e, the package in host/).
fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// Build plugins/ once per test run and return its release output dir.
pub(crate) fn plugins() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = workspace().join("plugins");
        let out = Command::new(env!("CARGO"))
            .args(["build", "--release", "--locked", "--quiet"])
            .current_dir(&dir)
            .env_remove("CARGO_TARGET_DIR")
            .env_remove("RUSTFLAGS")
            .output()
            .expect("run cargo for plugins/");
        assert!(out.status.success(), "building plugins/ failed (is the wasm32-wasip2 target installed? `rustup target add wasm32-wasip2`):\n{}", stderr(&out));
        dir.join("target/wasm32-wasip2/release")
    })
}

pub(crate) fn wasm(name: &str) -> String {
    let p = plugins().join(name);
    assert!(p.is_file(), "{} was not built", p.display());
    p.display().to_string()
}

/// A repository with the given hooks, port block size 5; `frontend/.env`
/// is copied into new worktrees.
pub(crate) fn repo(hooks_toml: &str) -> TestRepo {
    TestRepo::new(&format!("[threads]\nmax = 3\ncopy = [\".env\", \"frontend/.env\"]\n[ports]\nblock_size = 5\n{hooks_toml}"))
}

/// `iso` with a compile cache shared by this suite's tests.
pub(crate) fn iso(repo: &TestRepo, args: &[&str]) -> std::process::Output {
    let mut c = repo.iso_cmd(args);
    c.env("ISO_CACHE_DIR", cache_dir());
    c.output().unwrap()
}

pub(crate) fn iso_ok(repo: &TestRepo, args: &[&str]) -> String {
    let out = iso(repo, args);
    assert!(out.status.success(), "iso {args:?} failed ({:?}):\n{}", out.status.code(), stderr(&out));
    stdout(&out)
}

pub(crate) fn cache_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("iso-hooks-cache")
}

/// An HTTP server on 127.0.0.1 that answers every request with `status`
/// and hands over each request's body.
pub(crate) struct Receiver {
    pub(crate) url: String,
    pub(crate) port: u16,
    pub(crate) bodies: mpsc::Receiver<String>,
}

pub(crate) fn receiver(status: u16) -> Receiver {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut s) = conn else { continue };
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut len = 0usize;
            let mut chunked = false;
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                let l = line.to_ascii_lowercase();
                if let Some(v) = l.strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
                if l.starts_with("transfer-encoding:") && l.contains("chunked") {
                    chunked = true;
                }
                if line == "\r\n" {
                    break;
                }
            }
            let mut body = Vec::new();
            if chunked {
                loop {
                    let mut size = String::new();
                    r.read_line(&mut size).unwrap();
                    let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
                    let mut chunk = vec![0; n + 2];
                    r.read_exact(&mut chunk).unwrap();
                    if n == 0 {
                        break;
                    }
                    body.extend_from_slice(&chunk[..n]);
                }
            } else {
                body.resize(len, 0);
                r.read_exact(&mut body).unwrap();
            }
            let _ = tx.send(String::from_utf8_lossy(&body).to_string());
            let _ = write!(s, "HTTP/1.1 {status} X\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
        }
    });
    Receiver { url: format!("http://127.0.0.1:{port}/hook"), port, bodies: rx }
}

pub(crate) fn thread(repo: &TestRepo, id: u32) -> serde_json::Value {
    let out = iso_ok(repo, &["status", &id.to_string(), "--json"]);
    serde_json::from_str(&out).unwrap()
}

fn history(t: &serde_json::Value) -> String {
    serde_json::to_string(&t["history"]).unwrap()
}

/// Copy the shipped scripts into the test repository's hooks/.
fn ship_scripts(repo: &TestRepo) {
    for s in ["frontend-env.rhai", "migrate.rhai", "pr-summary.rhai"] {
        repo.write(&format!("hooks/{s}"), &std::fs::read_to_string(workspace().join("hooks").join(s)).unwrap());
    }
}

fn shipped_stack_toml(kind: &str, files: [&str; 3], receiver_port: u16, url: &str) -> String {
    format!(
        r#"
[[hooks]]
event = ["post-init", "pre-cleanup"]
{kind} = "{fe}"
config = {{ file = "frontend/.env", key = "VITE_BACKEND_API_URL", port = "api" }}

[[hooks]]
event = "post-up"
{kind} = "{mig}"
allow.exec = ["sh"]
config = {{ command = ["sh", "-c", "echo \"$DATABASE_URL\" > migrated.txt && echo applied 3 migrations"] }}

[[hooks]]
event = "pre-cleanup"
{kind} = "{pr}"
allow.hosts = ["127.0.0.1:{receiver_port}"]
config = {{ url = "{url}" }}
"#,
        fe = files[0],
        mig = files[1],
        pr = files[2],
    )
}

/// One init / cleanup cycle checking each shipped hook's work.
fn shipped_cycle(repo: &TestRepo, rx: &Receiver) {
    // Gitignored like the root .env, and copied into new worktrees.
    repo.write("frontend/.env", "# frontend\nVITE_BACKEND_API_URL=http://localhost:8000\nVITE_OTHER=1\n");

    let out = iso(repo, &["init", "web"]);
    assert!(out.status.success(), "init failed:\n{}", stderr(&out));
    let t = thread(repo, 1);
    assert_eq!(t["status"], "active", "{t}");
    let api = t["ports"]["api"].as_u64().unwrap();
    let wt = PathBuf::from(t["worktree"].as_str().unwrap());

    // frontend-env: key patched, other lines kept, backup made, variable passed on.
    let env = std::fs::read_to_string(wt.join("frontend/.env")).unwrap();
    assert_eq!(env, format!("# frontend\nVITE_BACKEND_API_URL=http://localhost:{api}\nVITE_OTHER=1\n"));
    let orig = std::fs::read_to_string(wt.join("frontend/.env.original")).unwrap();
    assert!(orig.contains("localhost:8000"), "{orig}");
    let env_thread = std::fs::read_to_string(wt.join(".env.thread")).unwrap();
    assert!(env_thread.contains(&format!("VITE_BACKEND_API_URL=http://localhost:{api}")), "{env_thread}");

    // migrate: ran in the worktree with the thread's env.
    let migrated = std::fs::read_to_string(wt.join("migrated.txt")).unwrap();
    assert!(migrated.contains(&format!(":{}/", t["ports"]["postgres"])), "{migrated}");
    assert!(history(&t).contains("applied 3 migrations"), "{}", history(&t));

    // pr-summary: posted before cleanup, with the git summary.
    std::fs::write(wt.join("feature.txt"), "x").unwrap();
    crate::support::git_in(&wt, &["add", "."]);
    crate::support::git_in(&wt, &["commit", "-q", "-m", "add the feature"]);
    std::fs::remove_file(wt.join("migrated.txt")).unwrap();
    // Run pre-cleanup alone first to see the restore while the worktree exists.
    iso_ok(repo, &["hooks", "run", "pre-cleanup", "1"]);
    let body = rx.bodies.recv_timeout(Duration::from_secs(10)).expect("the webhook got a request");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    assert_eq!(v["thread"]["name"], "web", "{v}");
    assert_eq!(v["git"]["commits_ahead"], 1, "{v}");
    assert!(v["git"]["files_changed"].to_string().contains("feature.txt"), "{v}");
    assert!(v["text"].as_str().unwrap().contains("1 commit"), "{v}");
    let env = std::fs::read_to_string(wt.join("frontend/.env")).unwrap();
    assert!(env.contains("localhost:8000"), "restored: {env}");
    assert!(!wt.join("frontend/.env.original").exists());

    iso_ok(repo, &["cleanup", "1", "--force"]);
    assert!(rx.bodies.recv_timeout(Duration::from_secs(10)).is_ok(), "cleanup posted again");
    assert!(!wt.exists());
}

#[test]
fn shipped_rhai_scripts_do_their_job() {
    let rx = receiver(200);
    let toml = shipped_stack_toml("rhai", ["hooks/frontend-env.rhai", "hooks/migrate.rhai", "hooks/pr-summary.rhai"], rx.port, &rx.url);
    let repo = repo(&toml);
    ship_scripts(&repo);
    shipped_cycle(&repo, &rx);
}

#[test]
fn shipped_wasm_plugins_do_their_job() {
    let rx = receiver(200);
    let files = [wasm("iso_frontend_env.wasm"), wasm("iso_migrate.wasm"), wasm("iso_pr_summary.wasm")];
    let toml = shipped_stack_toml("wasm", [&files[0], &files[1], &files[2]], rx.port, &rx.url);
    let repo = repo(&toml);
    shipped_cycle(&repo, &rx);
    // Compiled once, then taken from the cache.
    let cached = std::fs::read_dir(cache_dir().join("wasm")).unwrap().filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "cwasm")).count();
    assert!(cached >= 3, "{cached} compiled components cached");
}

/// `iso hooks run EVENT 1` for a hostile hook; returns (exit code, stderr).
pub(crate) fn run_hostile(repo: &TestRepo, event: &str) -> (i32, String) {
    let out = iso(repo, &["hooks", "run", event, "1"]);
    (out.status.code().unwrap_or(-1), format!("{}{}", stderr(&out), stdout(&out)))
}

pub(crate) fn assert_blocked(repo: &TestRepo, event: &str, needle: &str) {
    let (code, text) = run_hostile(repo, event);
    assert_ne!(code, 0, "{event} succeeded: {text}");
    assert!(!text.contains("ESCAPED"), "{event} escaped: {text}");
    assert!(text.contains(needle), "{event}: expected `{needle}` in:\n{text}");
    assert!(text.contains(event), "{event}: the event is named:\n{text}");
}

fn assert_intact(repo: &TestRepo) {
    let threads = repo.threads();
    assert_eq!(threads.len(), 1, "{threads:?}");
    assert_eq!(threads[0]["status"], "active");
    let reg = std::fs::read_to_string(repo.path(".git/iso/registry.toml")).unwrap();
    toml::from_str::<toml::Value>(&reg).expect("registry parses");
}

#[test]
fn hostile_wasm_plugins_are_contained_and_reported() {
    let rx = receiver(200);
    let h = wasm("iso_hostile.wasm");
    let other = wasm("iso-other-world.wasm");
    let future = wasm("iso_future_world.wasm");
    let repo = repo("");
    let main_file = repo.path("README.md").display().to_string();
    let toml = format!(
        r#"
[[hooks]]
name = "looper"
event = "h-loop"
wasm = "{h}"
timeout = "300ms"
config = {{ mode = "loop" }}

[[hooks]]
name = "hog"
event = "h-memory"
wasm = "{h}"
memory = "32MiB"
config = {{ mode = "memory" }}

[[hooks]]
event = "h-passwd"
wasm = "{h}"
config = {{ mode = "read", path = "/etc/passwd" }}

[[hooks]]
event = "h-main"
wasm = "{h}"
config = {{ mode = "read", path = "{main_file}" }}

[[hooks]]
event = "h-dotdot"
wasm = "{h}"
config = {{ mode = "write", path = "../../escaped.txt" }}

[[hooks]]
event = "h-symlink"
wasm = "{h}"
config = {{ mode = "read", path = "etc-link/passwd" }}

[[hooks]]
event = "h-http"
wasm = "{h}"
allow.hosts = ["example.invalid"]
config = {{ mode = "http", url = "{url}" }}

[[hooks]]
event = "h-exec"
wasm = "{h}"
allow.exec = ["true"]
config = {{ mode = "exec", program = "rm", args = ["-rf", "{root}"] }}

[[hooks]]
event = "h-panic"
wasm = "{h}"
config = {{ mode = "panic" }}

[[hooks]]
event = "h-other"
wasm = "{other}"

[[hooks]]
event = "h-future"
wasm = "{future}"
"#,
        url = rx.url,
        root = repo.root.display(),
    );
    let mut cfg = repo.read("iso.toml");
    cfg.push_str(&toml);
    repo.write("iso.toml", &cfg);
    iso_ok(&repo, &["init", "target"]);
    let wt = PathBuf::from(thread(&repo, 1)["worktree"].as_str().unwrap().to_string());
    std::os::unix::fs::symlink("/etc", wt.join("etc-link")).unwrap();

    assert_blocked(&repo, "h-loop", "timeout");
    assert_blocked(&repo, "h-memory", "out of memory");
    assert_blocked(&repo, "h-passwd", "blocked");
    assert_blocked(&repo, "h-main", "blocked");
    assert_blocked(&repo, "h-dotdot", "blocked");
    assert!(!repo.root.join(".worktrees/escaped.txt").exists() && !repo.root.join("escaped.txt").exists());
    assert_blocked(&repo, "h-symlink", "blocked");
    assert_blocked(&repo, "h-http", "denied");
    assert!(rx.bodies.try_recv().is_err(), "the receiver got nothing");
    assert_blocked(&repo, "h-exec", "may not be run");
    assert!(repo.root.join("README.md").exists());
    assert_blocked(&repo, "h-panic", "panic at");
    let (_, text) = run_hostile(&repo, "h-panic");
    assert!(text.contains("boom from the hostile plugin"), "{text}");
    assert_blocked(&repo, "h-other", "iso:hooks/handler@0.1.*");
    assert_blocked(&repo, "h-future", "0.2.0");
    assert_intact(&repo);
}

#[test]
fn hostile_rhai_scripts_are_contained_and_reported() {
    let rx = receiver(200);
    let repo = repo("");
    let scripts = [
        ("h-loop", "loop.rhai", "let x = 0; loop { x += 1; }", "timeout = \"300ms\""),
        ("h-memory", "bomb.rhai", "let s = \"xxxxxxxxxxxxxxxx\"; loop { s += s; }", "memory = \"8MiB\""),
        ("h-passwd", "passwd.rhai", "read_file(\"/etc/passwd\"); message(\"ESCAPED\");", ""),
        ("h-dotdot", "dotdot.rhai", "write_file(\"../../escaped.txt\", \"x\"); message(\"ESCAPED\");", ""),
        ("h-symlink", "symlink.rhai", "read_file(\"etc-link/passwd\"); message(\"ESCAPED\");", ""),
        ("h-http", "http.rhai", &format!("http_post(\"{}\", \"x\"); message(\"ESCAPED\");", rx.url), ""),
        ("h-exec", "exec.rhai", "exec(\"rm\", [\"-rf\", \"/tmp/nothing\"]); message(\"ESCAPED\");", "allow.exec = [\"true\"]"),
        ("h-eval", "eval.rhai", "eval(\"40 + 2\"); message(\"ESCAPED\");", ""),
        ("h-import", "import.rhai", "import \"../../etc/passwd\" as p; message(\"ESCAPED\");", ""),
        ("h-throw", "throw.rhai", "let a = 1;\nlet b = 2;\n    throw \"no luck\";", ""),
    ];
    let mut cfg = repo.read("iso.toml");
    for (event, file, src, extra) in &scripts {
        repo.write(&format!("hooks/{file}"), src);
        cfg.push_str(&format!("\n[[hooks]]\nevent = \"{event}\"\nrhai = \"hooks/{file}\"\n{extra}\n"));
    }
    repo.write("iso.toml", &cfg);
    repo.git(&["add", "."]);
    repo.git(&["commit", "-q", "-m", "hooks"]);
    iso_ok(&repo, &["init", "target"]);
    let wt = PathBuf::from(thread(&repo, 1)["worktree"].as_str().unwrap().to_string());
    std::os::unix::fs::symlink("/etc", wt.join("etc-link")).unwrap();

    assert_blocked(&repo, "h-loop", "timeout");
    assert_blocked(&repo, "h-memory", "out of memory");
    assert_blocked(&repo, "h-passwd", "outside the directories");
    assert_blocked(&repo, "h-dotdot", "outside the directories");
    assert!(!repo.root.join(".worktrees/escaped.txt").exists());
    assert_blocked(&repo, "h-symlink", "outside the directories");
    assert_blocked(&repo, "h-http", "not in this hook's allow.hosts");
    assert!(rx.bodies.try_recv().is_err(), "the receiver got nothing");
    assert_blocked(&repo, "h-exec", "may not be run");
    assert_blocked(&repo, "h-eval", "eval");
    assert_blocked(&repo, "h-import", "may only import");
    // Errors name the script, line and column.
    assert_blocked(&repo, "h-throw", "hooks/throw.rhai:3:5: no luck");
    assert_intact(&repo);
}

#[test]
fn refusals_failures_and_the_chain() {
    let h = wasm("iso_hostile.wasm");
    let repo = repo("");
    let mut cfg = repo.read("iso.toml");
    cfg.push_str(&format!(
        r#"
[[hooks]]
name = "first"
event = "post-init"
rhai = "hooks/first.rhai"

[[hooks]]
name = "seer"
event = "post-init"
wasm = "{h}"
config = {{ mode = "env" }}

[[hooks]]
name = "flaky"
event = "post-init"
wasm = "{h}"
optional = true
config = {{ mode = "fail", message = "optional trouble" }}

[[hooks]]
name = "gatekeeper"
event = "pre-cleanup"
wasm = "{h}"
config = {{ mode = "refuse", message = "unpushed work, says policy" }}
"#
    ));
    repo.write("iso.toml", &cfg);
    repo.write("hooks/first.rhai", "env_set(\"FROM_FIRST\", \"yes\"); message(\"first ran\");");
    // A discovered pre-init policy script.
    repo.write("hooks/pre-init.rhai", "if thread.name.starts_with(\"bad\") { refuse(`name ${thread.name} is not allowed`); }");
    repo.git(&["add", "."]);
    repo.git(&["commit", "-q", "-m", "hooks"]);

    // pre-init refusal: nothing is left behind.
    let out = iso(&repo, &["init", "bad-name"]);
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    assert!(stderr(&out).contains("name bad-name is not allowed"), "{}", stderr(&out));
    assert!(stderr(&out).contains("pre-init"), "{}", stderr(&out));
    assert!(repo.threads().is_empty());
    assert!(!repo.git(&["branch"]).contains("bad-name"));
    assert!(!repo.root.join(".worktrees/thread-1").exists());

    // The chain: env and messages passed on; an optional failure ignored.
    let out = iso(&repo, &["init", "good"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("optional trouble"), "{}", stderr(&out));
    let t = thread(&repo, 1);
    assert_eq!(t["status"], "active", "{t}");
    let h = history(&t);
    assert!(h.contains("FROM_FIRST=yes"), "the second hook saw the first's env: {h}");
    assert!(h.contains("messages-before=1"), "{h}");
    let wt = PathBuf::from(t["worktree"].as_str().unwrap());
    let env = std::fs::read_to_string(wt.join(".env.thread")).unwrap();
    assert!(env.contains("FROM_FIRST=yes") && env.contains("HOSTILE_SAW=post-init"), "{env}");

    // pre-cleanup refusal, overridden by --force.
    let out = iso(&repo, &["cleanup", "1"]);
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    assert!(stderr(&out).contains("gatekeeper") && stderr(&out).contains("unpushed work, says policy"), "{}", stderr(&out));
    assert!(wt.exists());
    iso_ok(&repo, &["cleanup", "1", "--force"]);
    assert!(!wt.exists());
}

#[test]
fn a_failing_post_hook_marks_the_thread_failed() {
    let repo = repo("\n[[hooks]]\nevent = \"post-up\"\nrhai = \"hooks/bad.rhai\"\n");
    repo.write("hooks/bad.rhai", "throw \"database unreachable\";");
    let out = iso(&repo, &["init", "x"]);
    let t = thread(&repo, 1);
    assert_eq!(t["status"], "failed", "{t}\n{}", stderr(&out));
    let err = t["error"].as_str().unwrap();
    assert!(err.contains("bad") && err.contains("post-up") && err.contains("database unreachable"), "{err}");
}

#[test]
fn hooks_list_and_plugin_check() {
    let fe = wasm("iso_frontend_env.wasm");
    let repo = repo(&format!("\n[[hooks]]\nevent = [\"post-init\", \"pre-cleanup\"]\nwasm = \"{fe}\"\nallow.paths = [{{ path = \".\", mode = \"ro\" }}]\n"));
    repo.write("hooks/post-up.rhai", "message(\"hi\");");
    let list: serde_json::Value = serde_json::from_str(&iso_ok(&repo, &["hooks", "list", "--json"])).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 2, "{list}");
    assert_eq!(list[0]["kind"], "wasm");
    assert_eq!(list[0]["events"][1], "pre-cleanup");
    assert_eq!(list[0]["allow"]["paths"][0]["mode"], "ro");
    assert_eq!(list[1]["discovered"], true);
    assert_eq!(list[1]["events"][0], "post-up");
    let table = iso_ok(&repo, &["hooks", "list"]);
    assert!(table.starts_with("HOOK"), "{table}");

    let ok = iso(&repo, &["plugin", "check", &fe, "--json"]);
    assert!(ok.status.success(), "{}", stderr(&ok));
    let v: serde_json::Value = serde_json::from_slice(&ok.stdout).unwrap();
    assert_eq!(v["world"], "iso:hooks@0.1.2", "{v}");
    assert!(v["imports"].to_string().contains("iso:hooks/host@0.1.2"), "{v}");
    // What the repository's manifest grants it.
    assert_eq!(v["manifests"][0]["allow"]["paths"][0]["mode"], "ro", "{v}");
    assert_eq!(v["manifests"][0]["events"][0], "post-init", "{v}");
    let human = iso_ok(&repo, &["plugin", "check", &fe]);
    assert!(human.contains("ok: this iso can run it"), "{human}");
    assert!(human.contains("paths .:ro"), "{human}");

    let bad = iso(&repo, &["plugin", "check", &wasm("iso-other-world.wasm")]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(stdout(&bad).contains("does not export iso:hooks/handler@0.1.*"), "{}", stdout(&bad));
    // A plugin built for 0.1.0, before 0.1.1 added `set-link` and `link`, still links.
    let old = iso(&repo, &["plugin", "check", &wasm("iso_v0_1_0.wasm"), "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&old.stdout).unwrap();
    assert!(old.status.success() && v["ok"] == true, "{v}");
    assert_eq!(v["world"], "iso:hooks@0.1.0", "{v}");
    let future = iso(&repo, &["plugin", "check", &wasm("iso_future_world.wasm")]);
    assert_eq!(future.status.code(), Some(1));
    assert!(stdout(&future).contains("iso:hooks@0.2.0"), "{}", stdout(&future));
    let missing = iso(&repo, &["plugin", "check", "nope.wasm"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(stderr(&missing).contains("nope.wasm"));
}

#[test]
fn a_malformed_hook_entry_points_at_the_line() {
    let repo = repo("\n[[hooks]]\nevent = \"post_up\"\nrhai = \"hooks/x.rhai\"\n");
    let out = iso(&repo, &["hooks", "list"]);
    assert_eq!(out.status.code(), Some(78), "{}", stderr(&out));
    let e = stderr(&out);
    assert!(e.contains("iso.toml:9:") && e.contains("hooks[0].event") && e.contains("post_up"), "{e}");
}

/// iso:hooks 0.1.1 only added functions to `host`: a plugin built for
/// 0.1.0 (its own copy of that world) links and runs, and what it returns
/// is applied.
#[test]
fn a_plugin_built_for_the_0_1_0_world_still_runs() {
    let old = wasm("iso_v0_1_0.wasm");
    let repo = repo(&format!("\n[[hooks]]\nname = \"old\"\nevent = \"post-init\"\nwasm = \"{old}\"\nconfig = {{ k = 1 }}\n"));
    iso_ok(&repo, &["init", "web"]);
    let t = thread(&repo, 1);
    assert_eq!(t["status"], "active", "{t}");
    assert!(history(&t).contains("v0.1.0 plugin handled post-init of thread 1 (config {\\\"k\\\":1})"), "{}", history(&t));
    let env = std::fs::read_to_string(PathBuf::from(t["worktree"].as_str().unwrap()).join(".env.thread")).unwrap();
    assert!(env.contains("OLD_WORLD=linked"), "{env}");
}
