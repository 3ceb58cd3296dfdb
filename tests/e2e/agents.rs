//! Agents as first-class: the status an agent reports (`iso agent-status`)
//! merged with what iso sees of its run, and threads' last activity.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::support::{git_in, stderr, stdout, wait_for, TestRepo};

/// A repository whose agent is `sh <script>`, the agent given the variables
/// it needs to run this test's iso (its state directory, no user config).
fn agent_repo(script_body: &str, extra: &str) -> (TestRepo, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("agent.sh");
    std::fs::write(&script, script_body).unwrap();
    let env = r#"env = ["ISO_BIN", "ISO_STATE_DIR", "XDG_STATE_HOME", "ISO_USER_CONFIG", "ISO_REMOTE_FILE", "NO_COLOR"]"#;
    let toml = format!("[threads]\nmax = 3\n[ports]\nblock_size = 10\n[agent]\ncommand = [\"sh\", \"{}\"]\n{env}\n{extra}", script.display());
    (TestRepo::new(&toml), dir)
}

fn by_name<'a>(threads: &'a Value, name: &str) -> &'a Value {
    threads.as_array().unwrap().iter().find(|t| t["name"] == name).unwrap_or_else(|| panic!("no {name} in {threads}"))
}

fn names(threads: &Value) -> Vec<String> {
    threads.as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap().to_string()).collect()
}

fn events(repo: &TestRepo) -> Vec<Value> {
    repo.iso_ok(&["events", "--json"]).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn an_agent_reports_from_its_worktree_and_every_view_shows_it() {
    // A Rhai hook subscribed to agent-status sees the payload.
    let hook = "[[hooks]]\nevent = \"agent-status\"\nrhai = \"hooks/status.rhai\"\n";
    let (repo, _s) = agent_repo("exit 0\n", hook);
    repo.write(
        "hooks/status.rhai",
        "let d = parse_json(payload);\nlet prev = if d.previous == () { \"none\" } else { d.previous };\nwrite_file(`status-${d.state}.txt`, `${event} ${d.state} ${d.message} after ${prev}`);\nmessage(`saw ${d.state}`);",
    );
    repo.iso_ok(&["init", "alpha", "beta"]);
    let threads = repo.iso_json(&["ls"]);
    let wt = PathBuf::from(by_name(&threads, "alpha")["worktree"].as_str().unwrap());
    assert!(by_name(&threads, "alpha").get("agent").is_none(), "no status before a report: {threads}");

    // From a subdirectory of the worktree, no thread named: the worktree says which.
    std::fs::create_dir_all(wt.join("src/deep")).unwrap();
    let out = repo.iso_cmd_at(&wt.join("src/deep"), &["agent-status", "waiting", "--message", "which db?\x1b[31m"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("agent waiting"), "{}", stdout(&out));

    let a = &repo.iso_json(&["status", "alpha"])["agent"];
    assert_eq!((a["state"].as_str(), a["reported_by"].as_str()), (Some("waiting"), Some("agent")), "{a}");
    assert_eq!(a["message"], "which db? [31m", "control characters never reach a terminal");
    let table = repo.iso_ok(&["ls"]);
    let row = table.lines().find(|l| l.contains("alpha")).unwrap();
    assert!(row.contains("waiting") && row.contains("ago"), "{table}");
    assert!(repo.iso_ok(&["status", "alpha"]).contains("agent     waiting: which db?"), "{}", repo.iso_ok(&["status", "alpha"]));

    // Filters, alone and combined.
    assert_eq!(names(&repo.iso_json(&["ls", "--agent", "waiting"])), ["alpha"]);
    assert_eq!(names(&repo.iso_json(&["ls", "--agent", "waiting", "--status", "active"])), ["alpha"]);
    assert!(names(&repo.iso_json(&["ls", "--agent", "waiting", "--status", "merged"])).is_empty());
    assert!(names(&repo.iso_json(&["ls", "--agent", "working"])).is_empty());
    assert_eq!(names(&repo.iso_json(&["ls", "--status", "active"])), ["alpha", "beta"]);
    let out = repo.iso(&["ls", "--agent", "working"]);
    assert!(out.status.success() && stderr(&out).contains("no thread matches"), "{}", stderr(&out));
    let out = repo.iso(&["ls", "--agent", "sleepy"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));

    // ISO_THREAD_ID (the agent's environment has it) outside any worktree.
    let beta = by_name(&threads, "beta")["id"].to_string();
    let out = repo.iso_cmd(&["-q", "agent-status", "working"]).env("ISO_THREAD_ID", &beta).output().unwrap();
    assert!(out.status.success() && stdout(&out).is_empty(), "-q prints nothing: {}{}", stderr(&out), stdout(&out));
    assert_eq!(names(&repo.iso_json(&["ls", "--agent", "working"])), ["beta"]);
    let out = repo.iso_cmd(&["agent-status", "working"]).env_remove("ISO_THREAD_ID").output().unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("in no thread's worktree") && stderr(&out).contains("fix:"), "{}", stderr(&out));
    assert_eq!(repo.iso(&["agent-status", "sleeping", "1"]).status.code(), Some(2), "only the four reportable states");

    // A second report names the one before.
    repo.iso_ok(&["agent-status", "idle", "alpha"]);
    let logged: Vec<Value> = events(&repo).into_iter().filter(|e| e["event"] == "agent-status" && e["kind"] == "agent").collect();
    assert_eq!(logged.len(), 3, "{logged:?}");
    assert_eq!(logged[0]["data"], serde_json::json!({"state": "waiting", "message": "which db? [31m", "previous": null}));
    assert_eq!(logged[0]["name"], "alpha");
    assert_eq!(logged[2]["data"], serde_json::json!({"state": "idle", "message": null, "previous": "waiting"}));

    // The hook ran for each report, synchronously, with the payload.
    assert_eq!(std::fs::read_to_string(wt.join("status-waiting.txt")).unwrap(), "agent-status waiting which db? [31m after none");
    assert_eq!(std::fs::read_to_string(wt.join("status-idle.txt")).unwrap(), "agent-status idle  after waiting");
    let hook_runs: Vec<Value> = events(&repo).into_iter().filter(|e| e["kind"] == "hook" && e["event"] == "agent-status").collect();
    assert_eq!(hook_runs.len(), 3, "{hook_runs:?}");
    assert_eq!(hook_runs[2]["data"]["messages"][0], "status: saw idle", "{:?}", hook_runs[2]);
    // Only iso publishes agent-status: it is not a custom event anyone may post.
    let out = repo.iso(&["hooks", "run", "agent-status", "alpha", "--payload", r#"{"state":"done","message":null,"previous":null}"#]);
    assert!(out.status.success(), "running its hooks by hand works: {}", stderr(&out));
}

#[test]
fn a_run_that_ends_shows_how_without_a_report() {
    let script = r#"
case "$ISO_THREAD_NAME" in
  ok*) echo fine; exit 0 ;;
  bad*) echo failing; exit 3 ;;
  liar*) "$ISO_BIN" agent-status working --message "on it"; exit 0 ;;
  long*) exec sleep 300 ;;
esac
"#;
    let (repo, _s) = agent_repo(script, "");
    let run = |name: &str| {
        let out = repo.iso_cmd(&["spawn", name, "--wait"]).env("ISO_BIN", env!("CARGO_BIN_EXE_iso")).output().unwrap();
        assert!(out.status.code().is_some(), "{}", stderr(&out));
    };
    run("ok-1");
    run("bad-1");
    let threads = repo.iso_json(&["ls"]);
    let ok = &by_name(&threads, "ok-1")["agent"];
    assert_eq!(
        (ok["state"].as_str(), ok["reported_by"].as_str(), ok["alive"].as_bool(), ok["exit_code"].as_i64()),
        (Some("done"), Some("iso"), Some(false), Some(0)),
        "{ok}"
    );
    assert!(ok["last_output"].is_string(), "the log grew: {ok}");
    let bad = &by_name(&threads, "bad-1")["agent"];
    assert_eq!((bad["state"].as_str(), bad["exit_code"].as_i64()), (Some("failed"), Some(3)), "{bad}");
    let table = repo.iso_ok(&["ls"]);
    assert!(table.lines().any(|l| l.contains("bad-1") && l.contains("failed (exit 3)")), "{table}");
    assert_eq!(names(&repo.iso_json(&["ls", "--agent", "failed"])), ["bad-1"]);
    repo.iso_ok(&["cleanup", "ok-1", "bad-1", "--force"]);

    // It said `working` from inside its run, then exited: the exit wins, the report is kept as the message.
    run("liar-1");
    let a = &repo.iso_json(&["status", "liar-1"])["agent"];
    assert_eq!((a["state"].as_str(), a["reported_by"].as_str()), (Some("done"), Some("iso")), "{a}");
    assert_eq!(a["message"], "last reported working: on it");

    // Running and silent: `running`, alive; stopped: `stopped`.
    let out = repo.iso(&["spawn", "long-1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let a = repo.iso_json(&["status", "long-1"])["agent"].clone();
    assert_eq!((a["state"].as_str(), a["alive"].as_bool(), a["reported_by"].as_str()), (Some("running"), Some(true), Some("iso")), "{a}");
    repo.iso_ok(&["agent-status", "waiting", "long-1"]);
    assert_eq!(repo.iso_json(&["status", "long-1"])["agent"]["state"], "waiting", "a report during the run stands");
    repo.iso_ok(&["stop", "long-1"]);
    wait_for("the run to be recorded as stopped", Duration::from_secs(60), || repo.iso_json(&["status", "long-1"])["agent"]["state"] == "stopped");
}

#[test]
fn idle_threads_are_listed_by_their_last_activity() {
    let (repo, _s) = agent_repo("exit 0\n", "");
    repo.iso_ok(&["init", "fresh", "stale"]);
    let threads = repo.iso_json(&["ls"]);
    let stale_wt = Path::new(by_name(&threads, "stale")["worktree"].as_str().unwrap()).to_path_buf();
    assert!(names(&repo.iso_json(&["ls", "--idle", "1h"])).is_empty(), "new threads are not idle: {threads}");

    // A commit in the worktree dated long ago is its last activity.
    std::fs::write(stale_wt.join("old.txt"), "old\n").unwrap();
    git_in(&stale_wt, &["add", "old.txt"]);
    let out = std::process::Command::new("git")
        .args(["-c", "user.name=t", "-c", "user.email=t@example.invalid", "commit", "-qm", "old work"])
        .current_dir(&stale_wt)
        .env("GIT_COMMITTER_DATE", "2020-01-02T03:04:05Z")
        .env("GIT_AUTHOR_DATE", "2020-01-02T03:04:05Z")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(names(&repo.iso_json(&["ls", "--idle", "1h"])).is_empty(), "a thread made now is not idle, whatever its commits' dates");
    // The same thread as if made in 2020: its record says so.
    let reg = repo.path(".git/iso/registry.toml");
    let mut data: toml::Value = toml::from_str(&std::fs::read_to_string(&reg).unwrap()).unwrap();
    for t in data["threads"].as_array_mut().unwrap().iter_mut().filter(|t| t["name"].as_str() == Some("stale")) {
        for field in ["created", "updated"] {
            t[field] = toml::Value::String("2020-01-01T00:00:00Z".into());
        }
    }
    std::fs::write(&reg, toml::to_string(&data).unwrap()).unwrap();
    let idle = repo.iso_json(&["ls", "--idle", "2h"]);
    assert_eq!(names(&idle), ["stale"]);
    assert!(idle[0]["last_activity"].as_str().unwrap().starts_with("2020-01-02T03:04:05"), "{idle}");
    assert_eq!(names(&repo.iso_json(&["ls", "--idle", "1d", "--status", "active"])), ["stale"]);
    assert!(names(&repo.iso_json(&["ls", "--idle", "3000d"])).is_empty(), "not that idle");
    let table = repo.iso_ok(&["ls"]);
    assert!(table.lines().any(|l| l.contains("stale") && l.contains("d ago")), "{table}");

    // A bad duration is a clear error.
    let out = repo.iso(&["ls", "--idle", "2 fortnights"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("`2 fortnights` is not a duration") && stderr(&out).contains("fix: write a number and a unit"), "{}", stderr(&out));

    // A status change, or a report, is activity.
    repo.iso_ok(&["update", "stale", "--status", "merged"]);
    assert!(names(&repo.iso_json(&["ls", "--idle", "2h"])).is_empty());
}

/// Kills this test's own tmux server (`<state dir>/tmux.sock`) when dropped,
/// also when the test fails.
struct TmuxGuard(PathBuf);

impl TmuxGuard {
    fn tmux(&self, args: &[&str]) -> std::process::Output {
        std::process::Command::new("tmux").arg("-S").arg(&self.0).args(args).output().unwrap()
    }
}

impl Drop for TmuxGuard {
    fn drop(&mut self) {
        let _ = self.tmux(&["kill-server"]);
    }
}

#[test]
fn an_interactive_agent_runs_in_its_own_tmux_session() {
    let (repo, _s) = agent_repo("printf 'ready> '\nread line\necho \"got: $line\"\nexit 4\n", "");
    let tmux = TmuxGuard(repo.state_env()[1].1.join("tmux.sock"));
    let run: Value = serde_json::from_str(&repo.iso_ok(&["spawn", "talk", "--mode", "interactive", "--json"])).unwrap();
    let repo_name = repo.root.file_name().unwrap().to_string_lossy().replace('.', "-");
    let session = format!("iso-{repo_name}-t1");
    assert_eq!((run["mode"].as_str(), run["tmux"]["session"].as_str()), (Some("interactive"), Some(session.as_str())), "{run}");
    assert_eq!(run["tmux"]["socket"].as_str(), Some(tmux.0.to_str().unwrap()), "a server of iso's own, per state directory");
    let pid = run["pid"].as_u64().expect("the pane's process is recorded");
    assert!(Path::new(&format!("/proc/{pid}")).exists());
    let screen = || stdout(&tmux.tmux(&["capture-pane", "-p", "-t", &session]));
    wait_for("the agent's prompt on its screen", Duration::from_secs(60), || screen().contains("ready>"));
    assert_eq!(repo.iso_json(&["status", "talk"])["agent"]["state"], "running");

    // Not from a pipe; the error says what to do instead.
    let out = repo.iso(&["attach", "talk"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("needs a terminal") && stderr(&out).contains("iso run-logs talk -f"), "{}", stderr(&out));

    // A human types into the session; the agent answers and exits 4.
    assert!(tmux.tmux(&["send-keys", "-t", &session, "hello there", "Enter"]).status.success());
    wait_for("the run to end", Duration::from_secs(60), || repo.iso_json(&["status", "talk"])["agent"]["alive"] == false);
    let a = repo.iso_json(&["status", "talk"])["agent"].clone();
    assert_eq!((a["state"].as_str(), a["exit_code"].as_i64()), (Some("failed"), Some(4)), "{a}");
    // Its output reached the run log through pipe-pane.
    let log = repo.iso_ok(&["run-logs", "talk"]);
    assert!(log.contains("got: hello there"), "{log}");
    assert!(!tmux.tmux(&["has-session", "-t", &session]).status.success(), "the session ends with the agent");
    let logged: Vec<String> =
        events(&repo).iter().filter(|e| e["kind"] == "agent" && e["name"] == "talk").map(|e| e["event"].as_str().unwrap().to_string()).collect();
    assert_eq!(logged, ["agent-started", "agent-stopped"]);
    let out = repo.iso(&["attach", "talk"]);
    assert_eq!(out.status.code(), Some(3), "no session left: {}", stderr(&out));

    // `iso stop` ends a session that is waiting.
    let run: Value = serde_json::from_str(&repo.iso_ok(&["spawn", "wait", "--mode", "interactive", "--json"])).unwrap();
    let session = run["tmux"]["session"].as_str().unwrap().to_string();
    wait_for("the second prompt", Duration::from_secs(60), || stdout(&tmux.tmux(&["capture-pane", "-p", "-t", &session])).contains("ready>"));
    let stopped: Value = serde_json::from_str(&repo.iso_ok(&["stop", "wait", "--json"])).unwrap();
    assert_eq!(stopped["state"], "stopped", "{stopped}");
    assert!(!tmux.tmux(&["has-session", "-t", &session]).status.success());

    // An automatic run has no session to attach to.
    assert_eq!(repo.iso(&["spawn", "headless", "--wait"]).status.code(), Some(4), "it read no line");
    let out = repo.iso(&["attach", "headless"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
}

#[test]
fn semi_automatic_runs_in_tmux_with_the_agents_own_permission_mode() {
    let modes = "modes.semi = [\"--permission-mode\", \"acceptEdits\"]\nmodes.automatic = [\"--print\"]\n";
    let (repo, _s) = agent_repo("echo \"args: $*\"\nprintf 'ready> '\nread line\n", modes);
    let tmux = TmuxGuard(repo.state_env()[1].1.join("tmux.sock"));
    let run: Value = serde_json::from_str(&repo.iso_ok(&["spawn", "semi", "--mode", "semi", "--json"])).unwrap();
    assert_eq!(run["mode"], "semi");
    assert_eq!(run["command"].as_array().unwrap()[2..], [serde_json::json!("--permission-mode"), serde_json::json!("acceptEdits")], "{run}");
    let session = run["tmux"]["session"].as_str().unwrap().to_string();
    wait_for("its screen", Duration::from_secs(60), || {
        stdout(&tmux.tmux(&["capture-pane", "-p", "-t", &session])).contains("args: --permission-mode acceptEdits")
    });
    assert_eq!(serde_json::from_str::<Value>(&repo.iso_ok(&["stop", "semi", "--json"])).unwrap()["state"], "stopped");
    // Each mode gets its own arguments.
    repo.iso(&["spawn", "auto", "--wait"]);
    assert!(repo.iso_ok(&["run-logs", "auto"]).contains("args: --print"));
    let out = TestRepo::new("[threads]\nmax = 1\n[ports]\nblock_size = 10\n[agent]\ncommand = [\"sh\"]\nmodes.yolo = []\n").iso(&["ls"]);
    assert!(!out.status.success() && stderr(&out).contains("`yolo` is not a run mode"), "{}", stderr(&out));
}
