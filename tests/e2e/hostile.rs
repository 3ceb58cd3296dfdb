//! Hostile input against the real binary (issue 11): branches that plant
//! symlinks, hooks that inject into `.env.thread` or override iso's
//! variables, agents that would see the API token or save on SIGTERM, and
//! operations racing inside one server. Each test is the attack as a user
//! (or a branch, a hook, an agent) would mount it; see docs/security.md.
//!
//! Hook limits (timeouts, output floods, WASM plugins) are tested in
//! `hostile_hooks`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::support::{stderr, stdout, wait_for, TestRepo};
use serde_json::Value;

/// A repository with few, small port blocks (the suite's windows are shared).
fn small_repo(extra: &str) -> TestRepo {
    TestRepo::new(&format!("[ports]\nblock_size = 5\n[threads]\nmax = 4\n{extra}"))
}

/// Commit `links` (name → target) as symlinks on a new branch `branch`
/// (in a scratch worktree, so the main checkout's own files stay).
fn branch_with_links(repo: &TestRepo, branch: &str, links: &[(&str, &Path)]) {
    let scratch = tempfile::tempdir().unwrap();
    let wt = scratch.path().join("wt");
    repo.git(&["worktree", "add", "-q", "-b", branch, wt.to_str().unwrap(), "main"]);
    for (name, target) in links {
        let p = wt.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(target, &p).unwrap();
        crate::support::git_in(&wt, &["add", "-f", name]);
    }
    crate::support::git_in(&wt, &["commit", "-q", "-m", "links"]);
    repo.git(&["worktree", "remove", "--force", wt.to_str().unwrap()]);
}

#[test]
fn a_branch_cannot_make_init_write_through_a_symlink() {
    let outside = tempfile::tempdir().unwrap();
    let victim = outside.path().join("bashrc");
    std::fs::write(&victim, "mine\n").unwrap();
    let dangling = outside.path().join("created-by-iso");

    // `.env.thread` as a link to a file the user can write.
    let repo = small_repo("");
    branch_with_links(&repo, "evil", &[(".env.thread", &victim)]);
    let out = repo.iso(&["init", "t", "--base", "evil", "--no-services"]);
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains(".env.thread is a symlink") && err.contains("came from the branch"), "{err}");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "mine\n", "the link's target is untouched");
    assert!(repo.threads().is_empty(), "the failed init rolled back");
    assert!(!repo.git(&["branch", "--list", "t"]).contains('t'), "and deleted its branch");

    // A dangling link creates nothing where it points.
    let repo = small_repo("");
    branch_with_links(&repo, "evil", &[(".env.thread", &dangling)]);
    let out = repo.iso(&["init", "t", "--base", "evil", "--no-services"]);
    assert!(!out.status.success() && stderr(&out).contains("came from the branch"), "{}", stderr(&out));
    assert!(!dangling.exists(), "a dangling link creates no file");

    // `threads.copy`: `.env` (copied from the main checkout) committed on
    // the branch as a link, and a directory on the way as a link.
    let repo = TestRepo::new("[ports]\nblock_size = 5\n[threads]\nmax = 4\ncopy = [\".env\", \"conf/local.toml\"]\n");
    repo.write("conf/local.toml", "x = 1\n");
    std::fs::create_dir(outside.path().join("dir")).unwrap();
    branch_with_links(&repo, "evil", &[(".env", &victim)]);
    let out = repo.iso(&["init", "t", "--base", "evil", "--no-services"]);
    assert!(!out.status.success() && stderr(&out).contains(".env is a symlink"), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "mine\n");
    branch_with_links(&repo, "evil2", &[("conf", &outside.path().join("dir"))]);
    let out = repo.iso(&["init", "t2", "--base", "evil2", "--no-services"]);
    let err = stderr(&out);
    assert!(!out.status.success() && err.contains("conf is a symlink (on the way to conf/local.toml)"), "{err}");
    assert!(std::fs::read_dir(outside.path().join("dir")).unwrap().next().is_none(), "nothing written through the directory link");
    assert!(repo.threads().is_empty());
}

#[test]
fn a_branch_cannot_make_the_compose_export_write_through_a_symlink() {
    let outside = tempfile::tempdir().unwrap();
    let victim = outside.path().join("victim.yml");
    std::fs::write(&victim, "mine\n").unwrap();
    let repo = small_repo(
        "[services.api]\nimage = \"iso-test/busybox:1\"\ncommand = \"busybox httpd -f -p 8080 -h /www\"\nport = 8080\nhealthcheck = { http = \"/\" }\n",
    );
    branch_with_links(&repo, "evil", &[("docker-compose.thread.yml", &victim)]);
    repo.iso_ok(&["init", "t", "--base", "evil", "--no-services", "-q"]);
    let out = repo.iso(&["compose", "t"]);
    let err = stderr(&out);
    assert!(!out.status.success() && err.contains("docker-compose.thread.yml is a symlink") && err.contains("came from the branch"), "{err}");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "mine\n");
}

/// `iso init` a thread with a post-init Rhai hook running `script`.
fn hook_repo(script: &str, allow_env: &str) -> TestRepo {
    let repo = small_repo(&format!(
        "[env]\nAPP_URL = \"http://localhost:{{{{ ports.api }}}}\"\n[[hooks]]\nevent = \"post-init\"\nrhai = \"hooks/h.rhai\"\n{allow_env}\n"
    ));
    repo.write("hooks/h.rhai", script);
    repo
}

fn env_file_of(repo: &TestRepo, name: &str) -> (PathBuf, String) {
    let t = repo.iso_json(&["status", name]);
    let wt = PathBuf::from(t["worktree"].as_str().unwrap());
    let text = std::fs::read_to_string(wt.join(".env.thread")).unwrap();
    (wt, text)
}

/// `. ./.env.thread` in `shell`, then print `var`.
fn sourced(shell: &str, wt: &Path, var: &str) -> String {
    let out = Command::new(shell).arg("-c").arg(format!(". ./.env.thread && printf %s \"${var}\"")).current_dir(wt).output().unwrap();
    assert!(out.status.success(), "{shell}: {}", stderr(&out));
    stdout(&out)
}

#[test]
fn hook_variables_cannot_inject_commands_or_replace_isos_own() {
    let marker = tempfile::tempdir().unwrap();
    let touched = marker.path().join("x");
    let script = format!(
        "env_set(\"BT\", \"`touch {0}` $(touch {0}) it is\");\nenv_set(\"CR\", \"a\\rb\");\nenv_set(\"ISO_THREAD_ID\", \"99\");\nenv_set(\"APP_URL\", \"http://evil\");\nenv_set(\"NEW_ONE\", \"fine\");\n",
        touched.display()
    );
    let repo = hook_repo(&script, "");
    let out = repo.iso(&["init", "t", "--no-services"]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("hook `h` tried to replace ISO_THREAD_ID, which is iso's own"), "{err}");
    assert!(err.contains("hook `h` tried to replace APP_URL") && err.contains("allow.env = [\"APP_URL\"]"), "{err}");
    assert!(err.contains("CR was not added") && err.contains("carriage return"), "{err}");
    let (wt, text) = env_file_of(&repo, "t");
    let id = repo.iso_json(&["status", "t"])["id"].to_string();
    for shell in ["sh", "bash"] {
        assert_eq!(sourced(shell, &wt, "BT"), format!("`touch {0}` $(touch {0}) it is", touched.display()), "{shell}: {text}");
        assert_eq!(sourced(shell, &wt, "ISO_THREAD_ID"), id, "{text}");
        assert_eq!(sourced(shell, &wt, "NEW_ONE"), "fine");
        assert!(sourced(shell, &wt, "APP_URL").starts_with("http://localhost:"), "{text}");
    }
    assert!(!touched.exists(), "sourcing .env.thread ran nothing");
    assert!(!text.contains('\r'));

    // Granted by the manifest: the hook may replace it.
    let repo = hook_repo("env_set(\"APP_URL\", \"http://granted\");\n", "allow.env = [\"APP_URL\"]");
    let out = repo.iso(&["init", "t", "--no-services"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let (wt, _) = env_file_of(&repo, "t");
    assert_eq!(sourced("sh", &wt, "APP_URL"), "http://granted");
}

/// `allow.env` is a grant of one hook, not of its event: with two hooks of
/// one event, the one without the grant can neither replace APP_URL (before
/// or after the granted one) nor hand its value to the next hook.
#[test]
fn allow_env_is_checked_per_hook_and_before_the_next_hook_sees_it() {
    let hook = |name: &str, grant: &str| format!("[[hooks]]\nname = \"{name}\"\nevent = \"post-init\"\nrhai = \"hooks/{name}.rhai\"\n{grant}\n");
    let repo = small_repo(&format!(
        "[env]\nAPP_URL = \"http://localhost:{{{{ ports.api }}}}\"\n{}{}{}",
        hook("sneaky", ""),
        hook("granted", "allow.env = [\"APP_URL\"]"),
        hook("late", "")
    ));
    repo.write("hooks/sneaky.rhai", "env_set(\"APP_URL\", \"http://evil\");\n");
    repo.write("hooks/granted.rhai", "env_set(\"SEEN\", thread.env.APP_URL);\nenv_set(\"APP_URL\", \"http://granted\");\n");
    repo.write("hooks/late.rhai", "env_set(\"APP_URL\", \"http://late\");\n");
    let out = repo.iso(&["init", "t", "--no-services"]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("hook `sneaky` tried to replace APP_URL"), "{err}");
    assert!(err.contains("hook `late` tried to replace APP_URL"), "{err}");
    assert!(!err.contains("hook `granted` tried"), "{err}");
    let (wt, text) = env_file_of(&repo, "t");
    assert!(sourced("sh", &wt, "SEEN").starts_with("http://localhost:"), "the next hook saw a refused value: {text}");
    assert_eq!(sourced("sh", &wt, "APP_URL"), "http://granted", "{text}");
    let history = repo.iso_json(&["status", "t"]).to_string();
    assert!(history.contains("hook `late` tried to replace APP_URL"), "{history}");
}

/// Values as `[env]` templates (TOML literal strings), read back by every
/// reader of `.env.thread`: sh, bash, python-dotenv and Compose's env_file.
#[test]
fn env_thread_reads_back_the_same_in_shells_python_dotenv_and_compose() {
    let values: &[(&str, &str)] = &[
        ("PLAIN", "postgresql://u:p@localhost:1/app"),
        ("SPACES", "two words  and more"),
        ("SHELLY", "`id` $(id) $HOME ; | & > < * ? ~ !"),
        ("HASH", "#not a comment"),
        ("QUOTE", "it's"),
        ("BACKSLASH", "C:\\dir\\file"),
        ("DQ", "say \"hi\""),
        ("EMPTY", ""),
        ("EQUALS", "a=b==c"),
        ("UNICODE", "grüße ✓"),
    ];
    let mut toml = String::from("[env]\n");
    for (k, v) in values {
        toml.push_str(&format!("{k} = {}\n", toml::Value::String(v.to_string())));
    }
    let repo = small_repo(&toml);
    repo.iso_ok(&["init", "t", "--no-services", "-q"]);
    let (wt, text) = env_file_of(&repo, "t");

    // zsh comes from .ci/install-deps.
    for shell in ["sh", "bash", "zsh"] {
        for (k, v) in values {
            assert_eq!(&sourced(shell, &wt, k), v, "{shell} {k}:\n{text}");
        }
    }

    let python = "/opt/iso-ci/compose/bin/python";
    let out = Command::new(python)
        .args(["-c", "import json, dotenv; print(json.dumps(dotenv.dotenv_values('.env.thread')))"])
        .current_dir(&wt)
        .output()
        .unwrap_or_else(|e| panic!("{python} (installed by .ci/install-deps): {e}"));
    assert!(out.status.success(), "{}", stderr(&out));
    let read: Value = serde_json::from_str(&stdout(&out)).unwrap();
    for (k, v) in values {
        assert_eq!(read[k].as_str(), Some(*v), "python-dotenv {k}:\n{text}");
    }

    std::fs::write(wt.join("c.yml"), "services:\n  s:\n    image: iso-test/busybox:1\n    env_file: .env.thread\n").unwrap();
    let out = Command::new("docker").args(["compose", "-f", "c.yml", "config", "--format", "json"]).current_dir(&wt).output().unwrap();
    assert!(out.status.success(), "docker compose: {}", stderr(&out));
    let config: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let read = &config["services"]["s"]["environment"];
    for (k, v) in values {
        // Compose gives an empty value as null, and `config` prints its
        // output as a Compose file again: a literal `$` as `$$`.
        let got = read[k].as_str().unwrap_or("").replace("$$", "$");
        assert_eq!(got, *v, "compose {k}:\n{text}");
    }
}

fn agent_repo(script_body: &str, extra: &str) -> (TestRepo, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("agent.sh");
    std::fs::write(&script, script_body).unwrap();
    let repo = small_repo(&format!("[agent]\ncommand = [\"sh\", \"{}\"]\n{extra}", script.display()));
    (repo, dir)
}

#[test]
fn agents_get_the_thread_env_and_the_allowlist_never_the_token() {
    let (repo, _d) = agent_repo("env > agent-env.txt\n", "env = [\"AWS_*\"]\n");
    let out = repo
        .iso_cmd(&["spawn", "a", "--wait", "--json"])
        .env("ISO_API_TOKEN", "the-server-token")
        .env("AWS_REGION", "eu-west-1")
        .env("UNLISTED_SECRET", "s3cret")
        .env("LC_ALL", "C")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let run: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let env = std::fs::read_to_string(Path::new(run["worktree"].as_str().unwrap()).join("agent-env.txt")).unwrap();
    assert!(!env.contains("the-server-token") && !env.contains("ISO_API_TOKEN"), "{env}");
    assert!(!env.contains("UNLISTED_SECRET"), "{env}");
    for line in ["AWS_REGION=eu-west-1", "LC_ALL=C", "ISO_THREAD_NAME=a"] {
        assert!(env.lines().any(|l| l == line), "{line} missing:\n{env}");
    }
    assert!(env.lines().any(|l| l.starts_with("PATH=")) && env.lines().any(|l| l.starts_with("APP_URL=") || l.starts_with("API_URL=")), "{env}");
}

#[test]
fn cleanup_stops_the_agent_before_it_checks_for_lost_work() {
    // The agent saves its work on SIGTERM.
    let body = "trap 'echo saved > w.txt; exit 0' TERM\necho started\nwhile :; do sleep 0.1; done\n";
    let (repo, _d) = agent_repo(body, "");
    let run: Value = serde_json::from_str(&repo.iso_ok(&["spawn", "a", "--json"])).unwrap();
    let wt = PathBuf::from(run["worktree"].as_str().unwrap());
    wait_for("the agent to start", Duration::from_secs(10), || repo.iso_ok(&["run-logs", "a"]).contains("started"));

    let out = repo.iso(&["cleanup", "a"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(5), "refused: the agent's saved file would be lost: {err}");
    assert!(err.contains("would lose work") && err.contains("w.txt"), "{err}");
    assert_eq!(std::fs::read_to_string(wt.join("w.txt")).unwrap(), "saved\n");
    let t = repo.iso_json(&["status", "a"]);
    assert_eq!(t["status"], "active", "put back as it was: {t}");
}

/// A running `iso serve` with a token, killed on drop.
struct Server {
    child: Child,
    url: String,
}

const TOKEN: &str = "hostile-token-0123456789";

impl Server {
    fn start(repo: &TestRepo) -> Server {
        let mut child = repo
            .iso_cmd(&["serve", "--bind", "127.0.0.1:0"])
            .env("ISO_API_TOKEN", TOKEN)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start iso serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let url = line.trim().strip_prefix("listening on ").unwrap_or_else(|| panic!("unexpected first line {line:?}")).to_string();
        Server { child, url }
    }

    fn call(&self, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
        call(&self.url, method, path, body)
    }
}

/// One request to the server at `base` with the token.
fn call(base: &str, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
    let a: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).timeout_global(Some(Duration::from_secs(60))).build().into();
    let url = format!("{base}{path}");
    let auth = format!("Bearer {TOKEN}");
    let r = match method {
        "DELETE" => a.delete(&url).header("Authorization", &auth).call(),
        "POST" => a.post(&url).header("Authorization", &auth).content_type("application/json").send(body.unwrap_or("{}")),
        _ => a.get(&url).header("Authorization", &auth).call(),
    };
    let mut resp = r.unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = resp.status().as_u16();
    let text = resp.body_mut().read_to_string().unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_delete_during_a_post_in_the_same_server_is_busy_and_nothing_leaks() {
    // The pre-init hook reads a FIFO: the init waits in it until the test opens the gate.
    let gate = tempfile::tempdir().unwrap();
    let fifo = gate.path().join("open");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let repo = small_repo(&format!(
        "[[hooks]]\nevent = \"pre-init\"\nrhai = \"hooks/slow.rhai\"\nallow.paths = [{{ path = \"{}\", mode = \"ro\" }}]\ntimeout = \"30s\"\n",
        gate.path().display()
    ));
    repo.write("hooks/slow.rhai", &format!("read_file(\"{}\");\n", fifo.display()));
    let server = Server::start(&repo);
    let url = server.url.clone();
    let post = std::thread::spawn(move || call(&url, "POST", "/api/threads", Some(r#"{"name": "race", "no_services": true}"#)));
    wait_for("the thread to be creating", Duration::from_secs(10), || repo.threads().iter().any(|t| t["status"] == "creating"));
    let (status, body) = server.call("DELETE", "/api/threads/race?delete_branch=true", None);
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "busy", "{body}");
    assert!(body.to_string().contains("another operation of the same process"), "{body}");
    std::fs::write(&fifo, "go").unwrap();
    let (status, body) = post.join().unwrap();
    assert!((200..300).contains(&status), "the POST wins: {status} {body}");
    let t = repo.threads();
    assert_eq!(t.len(), 1);
    assert_eq!(t[0]["status"], "active");
    assert!(t[0].get("owner").is_none_or(Value::is_null), "the init let go of it: {}", t[0]);
    // Now the DELETE goes through, and leaves no branch or worktree behind.
    let (status, body) = server.call("DELETE", "/api/threads/race?delete_branch=true", None);
    assert_eq!(status, 200, "{body}");
    assert!(repo.threads().is_empty());
    assert!(repo.git(&["branch", "--list", "*race*"]).trim().is_empty());
    assert!(!repo.path(".worktrees").exists() || std::fs::read_dir(repo.path(".worktrees")).unwrap().next().is_none());
}

#[test]
fn doctor_fix_removes_the_branch_of_an_init_whose_entry_was_lost() {
    let repo = small_repo("");
    let mut child = repo.iso_cmd(&["init", "lost"]).env("ISO_FAULT_PAUSE", "branch").stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let branch = || repo.git(&["branch", "--list", "thread-*-lost"]).trim().to_string();
    wait_for("the branch", Duration::from_secs(20), || !branch().is_empty());
    child.kill().unwrap();
    child.wait().unwrap();
    // The registry entry is lost (a crash before it was written, a hand edit).
    let registry = repo.path(".git/iso/registry.toml");
    let text = std::fs::read_to_string(&registry).unwrap();
    let data: toml::Table = toml::from_str(&text).unwrap();
    let mut data = data;
    data.remove("threads");
    std::fs::write(&registry, toml::to_string(&data).unwrap()).unwrap();
    // A branch the user made at the same commit is not iso's.
    repo.git(&["branch", "mine"]);

    let out = repo.iso(&["doctor", "--fix"]);
    let out = format!("{}{}", stdout(&out), stderr(&out));
    assert!(out.contains("-lost was created by an iso init that did not finish"), "{out}");
    assert!(branch().is_empty(), "deleted");
    assert!(!repo.git(&["branch", "--list", "mine"]).trim().is_empty(), "the user's branch stays");
}

#[test]
fn doctor_fix_keeps_the_branch_of_a_thread_that_was_created_in_full() {
    // Cleanup keeps the branch, even one with no commit of its own; a lost
    // registry must not make it look like the leftover of an interrupted init.
    let repo = small_repo("");
    repo.iso_ok(&["init", "kept"]);
    repo.iso_ok(&["cleanup", "kept"]);
    std::fs::remove_file(repo.path(".git/iso/registry.toml")).unwrap();
    let out = repo.iso(&["doctor", "--fix"]);
    let out = format!("{}{}", stdout(&out), stderr(&out));
    assert!(!out.contains("did not finish"), "{out}");
    assert!(!repo.git(&["branch", "--list", "thread-*-kept"]).trim().is_empty(), "the kept branch was deleted: {out}");
}

#[test]
fn no_agent_starts_on_a_thread_being_cleaned_up() {
    // The pre-cleanup hook holds the cleanup (thread `cleaning`) for a while.
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("agent.sh");
    std::fs::write(&script, "echo ran > ran.txt\n").unwrap();
    let toml = format!(
        "[agent]\ncommand = [\"sh\", \"{}\"]\n[[hooks]]\nevent = \"pre-cleanup\"\nrhai = \"hooks/slow.rhai\"\nallow.exec = [\"sh\"]\ntimeout = \"20s\"\n",
        script.display()
    );
    let repo = small_repo(&toml);
    repo.write("hooks/slow.rhai", "exec(\"sh\", [\"-c\", \"sleep 3\"]);\n");
    repo.iso_ok(&["init", "c", "--no-services", "-q"]);
    let server = Server::start(&repo);
    let mut cleanup = repo.iso_cmd(&["cleanup", "c", "--force"]).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    wait_for("the thread to be cleaning", Duration::from_secs(10), || repo.threads().iter().any(|t| t["status"] == "cleaning"));
    let (status, body) = server.call("POST", "/api/threads/c/start", None);
    assert_eq!(status, 409, "{body}");
    assert!(body.to_string().contains("cleaning"), "{body}");
    assert!(cleanup.wait().unwrap().success());
    assert!(repo.threads().is_empty());
}

#[test]
fn a_hook_flooding_output_cannot_bloat_the_registry() {
    let repo = small_repo("[[hooks]]\nevent = \"post-init\"\nrhai = \"hooks/flood.rhai\"\n");
    // Messages as large as the hook caps allow (8 of 8 KiB, see
    // hostile_hooks for what is refused), then a failure with a 4 MiB
    // string (within the Rhai string limit).
    repo.write(
        "hooks/flood.rhai",
        "let m = \"x\"; while m.len() < 8192 { m += m; }\nfor i in 0..8 { message(m); }\nlet s = m; while s.len() < 4194304 { s += s; }\nthrow s;\n",
    );
    repo.iso_cmd(&["init", "f", "--no-services"]).stderr(Stdio::null()).output().unwrap();
    let size = std::fs::metadata(repo.path(".git/iso/registry.toml")).unwrap().len();
    assert!(size < 200 * 1024, "registry.toml is {size} bytes");
    let t = repo.iso_json(&["status", "f"]);
    let history = t["history"].as_array().unwrap_or_else(|| panic!("{t}"));
    assert!(!history.is_empty());
    for h in history {
        assert!(h["detail"].as_str().unwrap().len() <= 4096, "{}", &h["detail"].as_str().unwrap()[..100]);
    }
    assert!(t["error"].as_str().is_some_and(|e| e.len() <= 4096 && e.ends_with("bytes cut)")), "{}", t["error"].as_str().map_or(0, str::len));
}
