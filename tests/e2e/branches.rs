//! Threads on existing branches (`iso init --branch`), on existing worktrees
//! (`iso adopt`), and names that are not ASCII: real git repositories, a
//! bare repository as `origin` for remote-tracking branches.

use std::path::Path;

use crate::support::{git_in, stderr, stdout, TestRepo};

fn repo() -> TestRepo {
    TestRepo::new("[ports]\nblock_size = 5\n[threads]\nmax = 3\n")
}

/// A commit on a new branch `name` (left checked out nowhere).
fn branch_with_commit(repo: &TestRepo, name: &str, file: &str) -> String {
    repo.git(&["branch", name, "main"]);
    let wt = repo.root.parent().unwrap().join(format!("tmp-{}", name.replace('/', "-")));
    repo.git(&["worktree", "add", "-q", &wt.display().to_string(), name]);
    std::fs::write(wt.join(file), "work\n").unwrap();
    git_in(&wt, &["add", file]);
    git_in(&wt, &["commit", "-q", "-m", &format!("work on {name}")]);
    repo.git(&["worktree", "remove", &wt.display().to_string()]);
    repo.git(&["rev-parse", name])
}

fn local_branches(repo: &TestRepo) -> Vec<String> {
    repo.git(&["branch", "--format=%(refname:short)"]).lines().map(str::to_string).collect()
}

#[test]
fn init_on_an_existing_local_branch_creates_no_branch_and_cleanup_keeps_it() {
    let repo = repo();
    let tip = branch_with_commit(&repo, "feature/auth", "auth.rs");
    let before = local_branches(&repo);
    let t = &repo.iso_json(&["init", "--branch", "feature/auth"])[0];
    assert_eq!(t["branch"], "feature/auth");
    assert_eq!(t["name"], "feature/auth", "the name defaults to the branch");
    assert_eq!(t["created_branch"], false);
    let wt = Path::new(t["worktree"].as_str().unwrap()).to_path_buf();
    assert_eq!(git_in(&wt, &["rev-parse", "HEAD"]), tip, "the branch as it is, not a new one from the base");
    assert!(wt.join("auth.rs").is_file());
    assert!(wt.join(".env.thread").is_file());
    assert_eq!(local_branches(&repo), before, "no branch made");
    assert_eq!(repo.iso_json(&["status", "feature/auth"])["id"], t["id"]);

    // --delete-branch never deletes a branch iso did not make, and says so.
    let out = repo.iso_ok(&["cleanup", "feature/auth", "--delete-branch"]);
    assert!(out.contains("branch feature/auth kept (iso did not create it)"), "{out}");
    assert!(!wt.exists());
    assert_eq!(repo.git(&["rev-parse", "feature/auth"]), tip, "branch and its commit kept");

    // A second thread on it, with a name of its own.
    let t = &repo.iso_json(&["init", "--branch", "feature/auth", "review"])[0];
    assert_eq!((t["name"].as_str(), t["branch"].as_str()), (Some("review"), Some("feature/auth")));
    let out = repo.iso(&["init", "--branch", "feature/auth", "a", "b"]);
    assert!(!out.status.success() && stderr(&out).contains("--branch opens one thread"), "{}", stderr(&out));
    let out = repo.iso(&["init", "--branch", "no-such-branch"]);
    assert_eq!(out.status.code(), Some(3), "not found: {}", stderr(&out));
    assert!(stderr(&out).contains("no local or remote-tracking branch `no-such-branch`"), "{}", stderr(&out));
}

#[test]
fn a_branch_checked_out_elsewhere_is_refused_with_that_path() {
    let repo = repo();
    let out = repo.iso(&["init", "--branch", "main"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains(&format!("branch `main` is already checked out at {}", repo.root.display())), "{err}");
    assert!(err.contains("iso adopt"), "the hint names adopt: {err}");

    let other = repo.root.parent().unwrap().join("elsewhere");
    repo.git(&["worktree", "add", "-q", "-b", "busy", &other.display().to_string()]);
    let out = repo.iso(&["init", "--branch", "busy"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains(&format!("checked out at {}", other.canonicalize().unwrap().display())), "{}", stderr(&out));
    assert!(repo.threads().is_empty(), "nothing reserved");
}

#[test]
fn init_on_a_remote_tracking_branch_makes_the_local_tracking_branch() {
    let repo = repo();
    let origin = repo.root.parent().unwrap().join("origin.git");
    git_in(repo.root.parent().unwrap(), &["init", "-q", "--bare", &origin.display().to_string()]);
    repo.git(&["remote", "add", "origin", &origin.display().to_string()]);
    let pr = branch_with_commit(&repo, "pr-42", "pr.rs");
    let other = branch_with_commit(&repo, "pr-43", "other.rs");
    repo.git(&["push", "-q", "origin", "pr-42", "pr-43"]);
    repo.git(&["branch", "-q", "-D", "pr-42", "pr-43"]);
    repo.git(&["fetch", "-q", "origin"]);

    // `origin/pr-42`: local pr-42 made, tracking it.
    let t = &repo.iso_json(&["init", "--branch", "origin/pr-42", "review"])[0];
    assert_eq!(t["branch"], "pr-42");
    assert_eq!(t["created_branch"], true);
    assert_eq!(repo.git(&["rev-parse", "--abbrev-ref", "pr-42@{upstream}"]).trim(), "origin/pr-42");
    assert_eq!(git_in(Path::new(t["worktree"].as_str().unwrap()), &["rev-parse", "HEAD"]), pr);
    // `pr-43`, a branch of one remote only.
    let t2 = &repo.iso_json(&["init", "--branch", "pr-43"])[0];
    assert_eq!((t2["branch"].as_str(), t2["name"].as_str()), (Some("pr-43"), Some("pr-43")));
    assert_eq!(repo.git(&["rev-parse", "pr-43"]), other);

    // The local tracking branch iso made may go with --delete-branch (it
    // has no commit of its own); the remote one never does.
    let out = repo.iso_ok(&["cleanup", "review", "--delete-branch"]);
    assert!(out.contains("branch pr-42 deleted"), "{out}");
    assert!(!local_branches(&repo).contains(&"pr-42".to_string()));
    assert!(git_in(&origin, &["branch", "--format=%(refname:short)"]).lines().any(|b| b == "pr-42"), "the remote branch stays");
    assert_eq!(repo.git(&["rev-parse", "origin/pr-42"]), pr);
    repo.iso_ok(&["cleanup", "pr-43"]);
    assert_eq!(repo.git(&["rev-parse", "pr-43"]), other, "kept without --delete-branch");
}

#[test]
fn adopt_registers_a_worktree_and_cleanup_removes_it_keeping_the_branch() {
    let repo = repo();
    let wt = repo.root.parent().unwrap().join("spike");
    repo.git(&["worktree", "add", "-q", "-b", "spike", &wt.display().to_string()]);
    let wt = wt.canonicalize().unwrap();
    let out = repo.iso_ok(&["adopt", "../spike"]);
    assert!(out.contains("spike"), "{out}");
    let t = repo.iso_json(&["status", "spike"]);
    assert_eq!(t["worktree"], wt.display().to_string());
    assert_eq!(t["branch"], "spike");
    assert_eq!(t["created_branch"], false);
    let env = std::fs::read_to_string(wt.join(".env.thread")).unwrap();
    assert!(env.contains(&format!("ISO_THREAD_ID={}", t["id"])), "{env}");
    assert_eq!(std::fs::read_to_string(wt.join(".env")).unwrap(), "SECRET=local\n", "local files copied");
    assert_eq!(git_in(&wt, &["status", "--porcelain"]), "", "iso's files are excluded there too");

    // Refusals: already a thread, the main checkout, not a worktree.
    let out = repo.iso(&["adopt", &wt.display().to_string(), "--name", "again"]);
    assert!(!out.status.success() && stderr(&out).contains(&format!("{} already is thread {}'s worktree", wt.display(), t["id"])), "{}", stderr(&out));
    let out = repo.iso(&["adopt", "."]);
    assert!(!out.status.success() && stderr(&out).contains("it is the main checkout"), "{}", stderr(&out));
    let plain = tempfile::tempdir().unwrap();
    let out = repo.iso(&["adopt", &plain.path().display().to_string()]);
    assert!(!out.status.success() && stderr(&out).contains("is not a worktree of this repository"), "{}", stderr(&out));
    let other = TestRepo::new("[ports]\nblock_size = 5\n[threads]\nmax = 1\n");
    let foreign = other.root.parent().unwrap().join("foreign");
    other.git(&["worktree", "add", "-q", "-b", "f", &foreign.display().to_string()]);
    let out = repo.iso(&["adopt", &foreign.display().to_string()]);
    assert!(!out.status.success() && stderr(&out).contains("is not a worktree of this repository"), "another repository's: {}", stderr(&out));
    assert_eq!(repo.threads().len(), 1);

    // Cleanup as for any thread: uncommitted work is never lost.
    std::fs::write(wt.join("notes.txt"), "mine\n").unwrap();
    let out = repo.iso(&["cleanup", "spike", "--delete-branch"]);
    assert!(!out.status.success() && stderr(&out).contains("notes.txt"), "{}", stderr(&out));
    assert!(wt.join("notes.txt").is_file());
    std::fs::remove_file(wt.join("notes.txt")).unwrap();
    let out = repo.iso_ok(&["cleanup", "spike", "--delete-branch"]);
    assert!(out.contains("branch spike kept (iso did not create it)"), "{out}");
    assert!(!wt.exists(), "worktree removed");
    assert!(!repo.git(&["worktree", "list"]).contains("spike"), "and git's metadata");
    assert!(local_branches(&repo).contains(&"spike".to_string()), "branch kept");
}

#[test]
fn adopt_refuses_a_detached_worktree() {
    let repo = repo();
    let wt = repo.root.parent().unwrap().join("detached");
    repo.git(&["worktree", "add", "-q", "--detach", &wt.display().to_string()]);
    let out = repo.iso(&["adopt", &wt.display().to_string()]);
    assert!(!out.status.success() && stderr(&out).contains("HEAD is detached"), "{}", stderr(&out));
    assert!(repo.threads().is_empty());
}

#[test]
fn names_stay_as_typed_and_branches_get_their_ascii_form() {
    let repo = repo();
    let t = &repo.iso_json(&["init", "naïve-café"])[0];
    assert_eq!(t["name"], "naïve-café");
    assert_eq!(t["branch"], format!("thread-{}-naive-cafe", t["id"]));
    assert_eq!(repo.iso_json(&["status", "naïve-café"])["id"], t["id"], "found by the name as typed");
    assert_eq!(repo.iso_json(&["status", "naive-cafe"])["id"], t["id"], "and by its ASCII form");
    let out = repo.iso(&["init", "Naive Cafe"]);
    assert!(!out.status.success() && stderr(&out).contains("already named `naïve-café`"), "one thread per ASCII form: {}", stderr(&out));
    let list = stdout(&repo.iso(&["list"]));
    assert!(list.contains("naïve-café"), "{list}");
    let t = &repo.iso_json(&["init", "日本 語"])[0];
    assert_eq!(t["branch"], format!("thread-{}-ri-ben-yu", t["id"]));
    repo.iso_ok(&["cleanup", "naïve-café"]);
}
