//! End-to-end tests of the `iso` CLI against real git repositories: the
//! foundation (worktrees, branches, port blocks, registry, doctor).
//!
//! Ports: every test repository has a window of its own from
//! `support::ports`; expected ports are offsets from its base.

use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{git_in, stderr, stdout, TestRepo};
use serde_json::Value;

fn port(v: &Value, slot: &str) -> u64 {
    v["ports"][slot].as_u64().unwrap_or_else(|| panic!("no port {slot} in {v}"))
}

#[test]
fn init_creates_worktree_branch_ports_and_env() {
    let repo = TestRepo::new("[threads]\nmax = 3\n");
    let base = repo.port_base;
    let out = repo.iso_ok(&["init", "add-auth", "--task", "add login"]);
    assert!(out.contains("thread 1") && out.contains("thread-1-add-auth"), "{out}");

    let wt = repo.path(".worktrees/thread-1");
    // git's own view: the worktree exists, is on the branch and is locked.
    let porcelain = repo.git(&["worktree", "list", "--porcelain"]);
    let entry = porcelain.split("\n\n").find(|e| e.contains(&wt.display().to_string())).expect(&porcelain);
    assert!(entry.contains("branch refs/heads/thread-1-add-auth"), "{entry}");
    assert!(entry.contains("locked iso thread 1 (add-auth)"), "{entry}");
    let branches = repo.git(&["branch", "--format=%(refname:short)"]);
    assert!(branches.lines().any(|b| b == "thread-1-add-auth"), "{branches}");
    // Created from the current branch (main), at its tip.
    assert_eq!(repo.git(&["rev-parse", "thread-1-add-auth"]), repo.git(&["rev-parse", "main"]));

    // .env.thread with the thread's ports; the gitignored .env was copied.
    let env = std::fs::read_to_string(wt.join(".env.thread")).unwrap();
    assert!(env.contains(&format!("DATABASE_URL=postgresql://postgres:postgres@localhost:{}/app", base + 100)), "{env}");
    assert!(env.contains(&format!("REDIS_URL=redis://localhost:{}", base + 101)), "{env}");
    assert!(env.contains(&format!("API_URL=http://localhost:{}", base + 102)), "{env}");
    assert!(env.contains("ISO_THREAD_ID=1"), "{env}");
    assert_eq!(std::fs::read_to_string(wt.join(".env")).unwrap(), "SECRET=local\n");

    // iso never touches .gitignore; it excludes its own files instead, so
    // the main checkout stays clean.
    assert_eq!(repo.read(".gitignore"), ".env\n");
    assert!(repo.read(".git/info/exclude").contains("/.worktrees/"));
    assert_eq!(repo.git(&["status", "--porcelain"]), "");
    assert_eq!(git_in(&wt, &["status", "--porcelain"]), "", ".env.thread is excluded in the worktree too");

    // JSON views agree.
    let threads = repo.threads();
    assert_eq!(threads.len(), 1);
    let t = &threads[0];
    assert_eq!(t["id"], 1);
    assert_eq!(t["name"], "add-auth");
    assert_eq!(t["branch"], "thread-1-add-auth");
    assert_eq!(t["base"], "main");
    assert_eq!(t["status"], "active");
    assert_eq!(t["task"], "add login");
    assert_eq!(t["worktree"], wt.display().to_string());
    let b = u64::from(base);
    assert_eq!((port(t, "postgres"), port(t, "redis"), port(t, "api"), port(t, "worker")), (b + 100, b + 101, b + 102, b + 103));
    assert_eq!(t["port_block"]["start"], base + 100);
    assert_eq!(t["port_block"]["end"], base + 199);
    let status = repo.iso_json(&["status", "add-auth"]);
    assert_eq!(status["id"], 1);
    let events: Vec<&str> = status["history"].as_array().unwrap().iter().map(|h| h["event"].as_str().unwrap()).collect();
    assert_eq!(events, ["reserved", "created"]);
    assert!(chrono_like(&status["created"]), "{}", status["created"]);
}

fn chrono_like(v: &Value) -> bool {
    v.as_str().is_some_and(|s| s.len() >= 20 && s.contains('T') && s.ends_with('Z'))
}

#[test]
fn threads_are_found_by_id_name_or_branch_and_from_inside_a_worktree() {
    let repo = TestRepo::new("[threads]\nmax = 4\n");
    repo.iso_ok(&["init", "one", "two"]);
    let wt2 = repo.path(".worktrees/thread-2");
    for sel in ["2", "two", "thread-2-two"] {
        assert_eq!(repo.iso_ok(&["path", sel]).trim(), wt2.display().to_string());
    }
    // From inside thread 2's worktree iso finds the main repository.
    let inside = repo.iso_cmd_at(&wt2.join("src"), &["list", "--json"]).output().unwrap();
    assert!(inside.status.success(), "{}", stderr(&inside));
    let listed: Vec<Value> = serde_json::from_slice(&inside.stdout).unwrap();
    assert_eq!(listed.len(), 2);
    let created = repo.iso_cmd_at(&wt2, &["init", "three"]).output().unwrap();
    assert!(created.status.success(), "{}", stderr(&created));
    assert!(repo.path(".worktrees/thread-3").is_dir(), "worktrees go beside the main checkout");
    // -C works like git's.
    let other = tempfile::tempdir().unwrap();
    let out = repo.iso_cmd_at(other.path(), &["-C", repo.root.to_str().unwrap(), "path", "three"]).output().unwrap();
    assert_eq!(stdout(&out).trim(), repo.path(".worktrees/thread-3").display().to_string());

    let missing = repo.iso(&["status", "nope"]);
    assert_eq!(missing.status.code(), Some(3));
    assert!(stderr(&missing).contains("no thread `nope`") && stderr(&missing).contains("1 (one)"), "{}", stderr(&missing));
}

#[test]
fn base_branch_and_existing_branches() {
    let repo = TestRepo::new("[threads]\nmax = 4\nbranch_template = \"work/{name}\"\n");
    repo.iso_ok(&["init", "from-dev", "--base", "dev"]);
    assert_eq!(repo.git(&["rev-parse", "work/from-dev"]), repo.git(&["rev-parse", "dev"]));

    // An existing branch is used as it is, not recreated.
    repo.git(&["branch", "work/existing", "dev"]);
    let tip = repo.git(&["rev-parse", "work/existing"]);
    repo.iso_ok(&["init", "existing"]);
    let t = repo.iso_json(&["status", "existing"]);
    assert_eq!(t["created_branch"], false);
    assert_eq!(git_in(&repo.path(".worktrees/thread-2"), &["rev-parse", "HEAD"]), tip);

    let bad = repo.iso(&["init", "x", "--base", "no-such-branch"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(stderr(&bad).contains("base `no-such-branch`") && stderr(&bad).contains("fix:"), "{}", stderr(&bad));
    assert_eq!(repo.threads().len(), 2, "a bad base creates nothing");
}

#[test]
fn bulk_init_reports_each_name_and_fails_if_any_failed() {
    let repo = TestRepo::new("[threads]\nmax = 4\n");
    let out = repo.iso(&["init", "fix-a", "bad..name", "fix-c"]);
    assert_eq!(out.status.code(), Some(4), "partial failure exit code");
    let err = stderr(&out);
    assert!(err.contains("bad..name") && err.contains("2 of 3 threads created"), "{err}");
    let names: Vec<String> = repo.threads().iter().map(|t| t["name"].as_str().unwrap().to_string()).collect();
    assert_eq!(names, ["fix-a", "fix-c"]);
}

#[test]
fn twenty_parallel_inits_get_distinct_ids_and_blocks() {
    let repo = TestRepo::new("[threads]\nmax = 25\n[ports]\nblock_size = 10\n");
    let children: Vec<_> =
        (0..20).map(|i| repo.iso_cmd(&["init", &format!("par-{i}"), "-q"]).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap()).collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let threads = repo.threads();
    assert_eq!(threads.len(), 20);
    let mut ids: Vec<u64> = threads.iter().map(|t| t["id"].as_u64().unwrap()).collect();
    ids.sort();
    assert_eq!(ids, (1..=20).collect::<Vec<u64>>());
    let mut starts: Vec<u64> = threads.iter().map(|t| t["port_block"]["start"].as_u64().unwrap()).collect();
    starts.sort();
    starts.dedup();
    assert_eq!(starts.len(), 20, "blocks are distinct");
    // The registry parses as TOML on its own and git agrees.
    let reg: toml::Table = toml::from_str(&repo.read(".git/iso/registry.toml")).unwrap();
    assert_eq!(reg["threads"].as_array().unwrap().len(), 20);
    let worktrees = repo.git(&["worktree", "list", "--porcelain"]);
    assert_eq!(worktrees.matches("locked iso thread").count(), 20);
    let exclude = repo.read(".git/info/exclude");
    assert_eq!(exclude.matches("/.worktrees/").count(), 1, "exclude edited once: {exclude}");
}

/// Start an init that pauses at `point`, then kill it with SIGKILL.
fn kill_init_at(repo: &TestRepo, name: &str, point: &str) {
    let mut child = repo.iso_cmd(&["init", name]).env("ISO_FAULT_PAUSE", point).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    // Wait until it reports the pause point, then kill -9.
    let mut err = child.stderr.take().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = String::new();
    let mut buf = [0u8; 256];
    use std::io::Read;
    while !seen.contains("paused at") {
        assert!(Instant::now() < deadline, "init never paused: {seen}");
        let n = err.read(&mut buf).unwrap();
        assert!(n > 0, "init exited before pausing: {seen}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    let status = Command::new("kill").args(["-9", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    child.wait().unwrap();
}

#[test]
fn kill_9_mid_init_then_doctor_fix_leaves_nothing_behind() {
    let repo = TestRepo::new("[threads]\nmax = 4\n");
    for (i, point) in ["reserved", "branch", "worktree"].into_iter().enumerate() {
        let name = format!("killed-{i}");
        kill_init_at(&repo, &name, point);

        // The registry is intact and shows the interrupted thread.
        let list = repo.iso_ok(&["list"]);
        assert!(list.contains("interrupted"), "{point}: {list}");
        let doctor = repo.iso(&["doctor"]);
        assert_eq!(doctor.status.code(), Some(1), "{point}: problems found");
        assert!(stdout(&doctor).contains("interrupted while being created"), "{point}: {}", stdout(&doctor));

        let fixed = repo.iso(&["doctor", "--fix"]);
        assert!(fixed.status.success(), "{point}: {}{}", stdout(&fixed), stderr(&fixed));
        assert!(repo.threads().is_empty(), "{point}: entry removed");
        assert!(!repo.path(".worktrees/thread-1").exists(), "{point}: worktree removed");
        let branches = repo.git(&["branch", "--format=%(refname:short)"]);
        assert!(!branches.contains(&name), "{point}: branch removed: {branches}");
        assert!(!repo.git(&["worktree", "list", "--porcelain"]).contains("thread-1"), "{point}: git metadata pruned");
        assert!(repo.iso(&["doctor"]).status.success(), "{point}: doctor is clean afterwards");
    }
    // And the id and ports are free again.
    repo.iso_ok(&["init", "after"]);
    assert_eq!(repo.threads()[0]["id"], 1);
}

#[test]
fn a_busy_port_block_is_skipped_with_the_reason() {
    let repo = TestRepo::new("[threads]\nmax = 4\n");
    // Thread 1's redis slot (offset 1) is taken by another program.
    let busy = repo.port_base + 101;
    let _listener = TcpListener::bind(("127.0.0.1", busy)).unwrap();
    let out = repo.iso(&["init", "busy"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("skipped block 1") && err.contains(&busy.to_string()) && err.contains("redis"), "{err}");
    // The id stays the lowest free one; only the block moves on.
    let t = &repo.threads()[0];
    assert_eq!(t["id"], 1);
    assert_eq!(port(t, "postgres"), u64::from(repo.port_base) + 200);
}

#[test]
fn running_out_of_blocks_says_how_many_are_held() {
    let repo = TestRepo::new("[threads]\nmax = 2\n");
    repo.iso_ok(&["init", "a", "b"]);
    let out = repo.iso(&["init", "c"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("all 2 thread ids are taken (2 threads live)") && err.contains("iso cleanup"), "{err}");
    assert_eq!(repo.threads().len(), 2);
}

#[test]
fn cleanup_keeps_the_branch_and_refuses_to_lose_work() {
    let repo = TestRepo::new("[threads]\nmax = 4\n");
    repo.iso_ok(&["init", "work"]);
    let wt = repo.path(".worktrees/thread-1");

    // Uncommitted changes: refused, and nothing is touched.
    std::fs::write(wt.join("src/main.rs"), "fn main() { println!(\"wip\"); }\n").unwrap();
    std::fs::write(wt.join("notes.txt"), "new file\n").unwrap();
    let out = repo.iso(&["cleanup", "work"]);
    assert_eq!(out.status.code(), Some(5));
    let err = stderr(&out);
    assert!(err.contains("src/main.rs") && err.contains("notes.txt") && err.contains("--force"), "{err}");
    assert!(wt.join("notes.txt").exists());

    // Committed but on no other branch: plain cleanup is fine (the branch is
    // kept), deleting the branch is refused.
    git_in(&wt, &["add", "."]);
    git_in(&wt, &["commit", "-q", "-m", "wip commit"]);
    let out = repo.iso(&["rm", "1", "--delete-branch"]);
    assert_eq!(out.status.code(), Some(5));
    assert!(stderr(&out).contains("wip commit"), "{}", stderr(&out));

    repo.iso_ok(&["clean", "1"]);
    assert!(!wt.exists());
    assert!(repo.git(&["branch", "--format=%(refname:short)"]).lines().any(|b| b == "thread-1-work"));
    assert!(!repo.git(&["worktree", "list", "--porcelain"]).contains(".worktrees/thread-1"));
    assert!(repo.threads().is_empty());
    let all = repo.iso_json(&["list", "--all"]);
    assert_eq!(all[0]["status"], "removed");

    // The id, ports and name are free again; with --force --delete-branch
    // everything goes.
    repo.iso_ok(&["init", "work"]);
    std::fs::write(repo.path(".worktrees/thread-1/dirty.txt"), "x").unwrap();
    repo.iso_ok(&["cleanup", "work", "--force", "--delete-branch"]);
    assert!(!repo.git(&["branch", "--format=%(refname:short)"]).contains("thread-1-work"));
}

#[test]
fn a_failed_init_rolls_back_what_it_created() {
    let repo = TestRepo::new("[threads]\nmax = 3\n");
    // git's metadata directory for thread 1's worktree is taken (a
    // directory at `.worktrees/thread-1` would only make init skip id 1).
    repo.write(".git/worktrees/thread-1/keep.txt", "user data\n");
    let out = repo.iso(&["init", "blocked"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("failed at step `worktree`") && err.contains("rolled back: ") && err.contains("branch thread-1-blocked"), "{err}");
    assert_eq!(repo.read(".git/worktrees/thread-1/keep.txt"), "user data\n", "what was there is untouched");
    assert!(!repo.git(&["branch"]).contains("thread-1-blocked"));
    assert!(repo.threads().is_empty());
}

#[test]
fn update_changes_task_pr_and_status() {
    let repo = TestRepo::new("[threads]\nmax = 3\n");
    repo.iso_ok(&["init", "upd"]);
    repo.iso_ok(&["update", "upd", "--task", "ship it", "--pr", "123", "--status", "merged"]);
    let t = repo.iso_json(&["status", "1"]);
    assert_eq!((t["task"].as_str(), t["pr"].as_u64(), t["status"].as_str()), (Some("ship it"), Some(123), Some("merged")));
    repo.iso_ok(&["update", "1", "--task", "", "--pr", "0", "--status", "active"]);
    let t = repo.iso_json(&["status", "1"]);
    assert!(t.get("task").is_none() && t.get("pr").is_none(), "{t}");
    let bad = repo.iso(&["update", "1", "--status", "removed"]);
    assert_eq!(bad.status.code(), Some(2), "clap rejects unknown statuses");
}

#[test]
fn bad_names_and_bad_places_get_clear_errors() {
    let repo = TestRepo::new("[threads]\nmax = 3\n");
    for (name, needle) in [("", "empty"), ("-rf", "starts with `-`"), ("a..b", "`..`"), ("a\u{1}b", "control character")] {
        let out = repo.iso(&["init", "--", name]);
        assert_eq!(out.status.code(), Some(1), "{name:?}");
        assert!(stderr(&out).contains(needle), "{name:?}: {}", stderr(&out));
    }
    repo.iso_ok(&["init", "Add Auth!"]);
    assert_eq!(repo.threads()[0]["name"], "Add Auth!", "kept as typed");
    assert_eq!(repo.threads()[0]["branch"], "thread-1-add-auth");
    let dup = repo.iso(&["init", "add-auth"]);
    assert!(stderr(&dup).contains("already named `Add Auth!`"), "the same ASCII form: {}", stderr(&dup));

    // Outside a repository.
    let plain = tempfile::tempdir().unwrap();
    let out = repo.iso_cmd_at(plain.path(), &["list"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("not inside a git repository"), "{}", stderr(&out));

    // A bare repository.
    let bare = plain.path().join("bare.git");
    git_in(plain.path(), &["init", "-q", "--bare", bare.to_str().unwrap()]);
    let out = repo.iso_cmd_at(&bare, &["list"]).output().unwrap();
    assert!(stderr(&out).contains("bare repository"), "{}", stderr(&out));

    // A repository without commits.
    let empty = plain.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    git_in(&empty, &["init", "-q", "-b", "main"]);
    let out = repo.iso_cmd_at(&empty, &["init", "first"]).output().unwrap();
    assert!(stderr(&out).contains("no commits yet") && stderr(&out).contains("fix:"), "{}", stderr(&out));
    assert!(!empty.join(".worktrees").exists(), "nothing created");

    // A detached HEAD without --base.
    let head = repo.git(&["rev-parse", "HEAD"]);
    repo.git(&["checkout", "-q", head.trim()]);
    let out = repo.iso(&["init", "detached"]);
    assert!(stderr(&out).contains("HEAD is detached") && stderr(&out).contains("--base"), "{}", stderr(&out));
    repo.iso_ok(&["init", "detached", "--base", "main"]);
}

#[test]
fn a_malformed_iso_toml_points_at_the_line() {
    let repo = TestRepo::new("[threads]\nmaxx = 3\n");
    let out = repo.iso(&["list"]);
    assert_eq!(out.status.code(), Some(78));
    let err = stderr(&out);
    assert!(err.contains("iso.toml:4:1") && err.contains("maxx"), "{err}");

    let base = repo.port_base;
    repo.write("iso.toml", &format!("[ports]\nbase = {base}\nblock_size = \"big\"\n"));
    let err = stderr(&repo.iso(&["list"]));
    assert!(err.contains("iso.toml:3:14"), "{err}");

    // Environment overrides win, and bad ones are named.
    repo.write("iso.toml", &format!("[ports]\nbase = {base}\n[threads]\nmax = 3\n"));
    let out = repo.iso_cmd(&["config", "--json"]).env("ISO_PORTS_BLOCK_SIZE", "0").output().unwrap();
    assert!(stderr(&out).contains("ISO_PORTS_BLOCK_SIZE"), "{}", stderr(&out));
    let out = repo.iso_cmd(&["config", "--json"]).env("ISO_MAX_THREADS", "4").output().unwrap();
    let cfg: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(cfg["config"]["threads"]["max"], 4);
    assert_eq!(cfg["config"]["ports"]["base"], base);
}

#[test]
fn output_is_plain_when_piped_and_completions_exist() {
    let repo = TestRepo::new("[threads]\nmax = 2\n[ports]\nblock_size = 10\n");
    let out = repo.iso_cmd(&["init", "plain"]).env_remove("NO_COLOR").output().unwrap();
    assert!(out.status.success());
    assert!(!out.stdout.contains(&0x1b) && !out.stderr.contains(&0x1b), "no escape codes when piped");
    let table = repo.iso_ok(&["ls"]);
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["THREAD", "NAME", "BRANCH", "STATUS", "PORTS", "AGENT", "ACTIVITY", "WORKTREE", "AGE"]);
    let ports = repo.iso_json(&["ports"]);
    assert_eq!(ports[0]["ports"]["api"], repo.port_base + 12);
    for shell in ["bash", "zsh", "fish", "nushell", "powershell"] {
        let text = repo.iso_ok(&["completions", shell]);
        assert!(text.contains("cleanup") && text.len() > 500, "{shell}");
    }
}

#[test]
fn doctor_finds_orphans_and_missing_worktrees() {
    let repo = TestRepo::new("[threads]\nmax = 5\n[ports]\nblock_size = 10\n");
    repo.iso_ok(&["init", "gone", "kept"]);
    // Someone deleted thread 1's worktree by hand.
    std::fs::remove_dir_all(repo.path(".worktrees/thread-1")).unwrap();
    // Someone added a worktree in iso's directory behind its back.
    repo.git(&["worktree", "add", "-q", "-b", "stray", repo.path(".worktrees/stray").to_str().unwrap()]);
    let out = repo.iso(&["doctor", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let findings: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(findings.len(), 2, "{findings:?}");
    assert!(findings.iter().any(|f| f["thread"] == 1 && f["problem"].as_str().unwrap().contains("missing")));
    assert!(findings.iter().any(|f| f["problem"].as_str().unwrap().contains("stray")));

    let fixed = repo.iso(&["doctor", "--fix", "--json"]);
    assert!(fixed.status.success(), "{}", stdout(&fixed));
    let names: Vec<String> = repo.threads().iter().map(|t| t["name"].as_str().unwrap().to_string()).collect();
    assert_eq!(names, ["kept"]);
    assert!(!repo.path(".worktrees/stray").exists());
    assert!(repo.git(&["branch"]).contains("stray"), "branches are kept");
    assert!(repo.iso(&["doctor"]).status.success());
}

#[test]
fn events_lists_and_follows_what_the_cli_did() {
    let repo = TestRepo::new("[threads]\nmax = 4\n[ports]\nblock_size = 10\n");
    let out = repo.iso(&["events"]);
    assert!(out.status.success() && out.stdout.is_empty(), "{}", stderr(&out));
    assert!(stderr(&out).contains("no events logged yet"), "{}", stderr(&out));

    // A follower started first sees the events as they are logged.
    let mut follower = repo.iso_cmd(&["events", "--follow", "--json"]).stdout(Stdio::piped()).spawn().unwrap();
    let lines = follower.stdout.take().unwrap();
    let followed = std::thread::spawn(move || {
        use std::io::BufRead;
        let mut seen = Vec::new();
        for line in std::io::BufReader::new(lines).lines() {
            let v: Value = serde_json::from_str(&line.unwrap()).unwrap();
            let last = v["event"] == "post-cleanup";
            seen.push(v);
            if last {
                break;
            }
        }
        seen
    });
    repo.iso_ok(&["init", "one", "two"]);
    repo.iso_ok(&["cleanup", "one"]);
    let seen = followed.join().unwrap();
    let _ = follower.kill();
    let _ = follower.wait();

    let all: Vec<Value> = repo.iso_ok(&["events", "--json"]).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let names: Vec<(&str, u64)> = all.iter().map(|e| (e["event"].as_str().unwrap(), e["thread"].as_u64().unwrap())).collect();
    assert_eq!(
        names,
        [("pre-init", 1), ("post-init", 1), ("post-up", 1), ("pre-init", 2), ("post-init", 2), ("post-up", 2), ("pre-cleanup", 1), ("post-cleanup", 1)]
    );
    assert_eq!(seen, all, "--follow printed the same events, once each");
    let seqs: Vec<u64> = all.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=8).collect::<Vec<u64>>());
    assert!(all.iter().all(|e| e["kind"] == "lifecycle" && chrono_like(&e["at"])));

    // The table, filtered by thread id or name, and --since.
    let table = repo.iso_ok(&["events", "--thread", "2"]);
    let lines: Vec<&str> = table.lines().collect();
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(header, ["SEQ", "TIME", "KIND", "EVENT", "THREAD", "NAME"]);
    assert_eq!(lines.len(), 4, "{table}");
    let col = lines[0].find("THREAD").unwrap();
    assert!(lines[1..].iter().all(|l| l[col..].starts_with("2 ") && l.ends_with("two")), "aligned: {table}");
    assert_eq!(repo.iso_ok(&["events", "--thread", "one"]).lines().count(), 6);
    assert_eq!(repo.iso_ok(&["events", "--since", "6", "--json"]).lines().count(), 2);
    assert!(repo.path(".git/iso/events.jsonl").is_file());
}
