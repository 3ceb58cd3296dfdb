//! Threads across repositories (`[repos]`): a worktree in every linked
//! repository on the thread's branch, one port block, `.env.thread` in each,
//! rollback of all on any failure, cleanup and doctor over all of them.
//! Real git repositories side by side in one temporary directory.

use std::path::{Path, PathBuf};

use crate::support::{git_in, stderr, stdout, TestRepo};

const TOML: &str = "[ports]\nblock_size = 5\n[threads]\nmax = 3\n[repos]\nfrontend = { path = \"../frontend\", link = [\"node_modules\"] }\n";

/// The primary and its linked `frontend` (`../frontend`).
fn repos() -> (TestRepo, PathBuf) {
    let repo = TestRepo::new(TOML);
    let fe = repo.sibling("frontend");
    std::fs::create_dir(fe.join("node_modules")).unwrap();
    std::fs::write(fe.join("node_modules/dep.js"), "x\n").unwrap();
    (repo, fe)
}

fn env_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).lines().filter(|l| !l.starts_with('#')).map(str::to_string).collect()
}

fn branches(root: &Path) -> Vec<String> {
    git_in(root, &["branch", "--format=%(refname:short)"]).lines().map(str::to_string).collect()
}

fn worktree_count(root: &Path) -> usize {
    git_in(root, &["worktree", "list", "--porcelain"]).matches("worktree ").count()
}

#[test]
fn init_gives_every_repository_a_worktree_on_one_branch_with_one_port_block() {
    let (repo, fe) = repos();
    let t = &repo.iso_json(&["init", "auth"])[0];
    let wt = PathBuf::from(t["worktree"].as_str().unwrap());
    let linked = &t["repos"]["frontend"];
    let fwt = PathBuf::from(linked["worktree"].as_str().unwrap());
    assert_eq!(fwt, fe.join(".worktrees/thread-1"), "{t}");
    let branch = t["branch"].as_str().unwrap().to_string();
    assert_eq!(linked["branch"], branch.as_str(), "the same branch name in both");
    assert_eq!(linked["created_branch"], true);
    assert_eq!(git_in(&fwt, &["rev-parse", "--abbrev-ref", "HEAD"]).trim(), branch);
    assert_eq!(git_in(&fe, &["rev-parse", &branch]), git_in(&fe, &["rev-parse", "main"]), "from the linked repository's current branch");
    // Its copy (default .env) and link apply there, from its own checkout.
    assert!(std::fs::read_to_string(fwt.join(".env")).unwrap().contains("VITE_BACKEND_API_URL"));
    assert!(fwt.join("node_modules").is_symlink() && fwt.join("node_modules/dep.js").is_file());
    // Locked against `git worktree prune` like the primary's.
    assert!(git_in(&fe, &["worktree", "list", "--porcelain"]).contains("locked iso"), "{}", git_in(&fe, &["worktree", "list", "--porcelain"]));

    // One .env.thread per worktree: the same ports, ISO_WORKTREE its own.
    let main_env = env_lines(&wt.join(".env.thread"));
    let fe_env = env_lines(&fwt.join(".env.thread"));
    let ports: Vec<&String> = main_env.iter().filter(|l| l.starts_with("ISO_PORT_")).collect();
    assert!(ports.len() >= 2, "{main_env:?}");
    for p in &ports {
        assert!(fe_env.contains(p), "{p} missing from the frontend's: {fe_env:?}");
    }
    let has = |env: &[String], line: String| assert!(env.contains(&line), "{line} not in {env:?}");
    has(&main_env, format!("ISO_WORKTREE={}", wt.display()));
    has(&fe_env, format!("ISO_WORKTREE={}", fwt.display()));
    for env in [&main_env, &fe_env] {
        has(env, format!("ISO_WORKTREE_MAIN={}", wt.display()));
        has(env, format!("ISO_WORKTREE_FRONTEND={}", fwt.display()));
    }
    assert!(git_in(&fe, &["status", "--porcelain"]).is_empty(), ".worktrees and .env.thread are excluded in the linked repository too");

    // Listing, status and path show them.
    assert_eq!(repo.threads()[0]["repos"]["frontend"]["worktree"], linked["worktree"]);
    let ls = repo.iso_ok(&["ls"]);
    assert!(ls.contains("REPOS") && ls.contains("frontend"), "{ls}");
    assert_eq!(repo.iso_ok(&["path", "auth", "--repo", "frontend"]).trim(), fwt.display().to_string());
    let out = repo.iso(&["path", "auth", "--repo", "mobile"]);
    assert!(!out.status.success() && stderr(&out).contains("no worktree in repository `mobile`"), "{}", stderr(&out));
    std::fs::write(fwt.join("App.tsx"), "work\n").unwrap();
    let st = repo.iso_json(&["status", "auth"]);
    let wts = st["worktrees"].as_array().unwrap();
    assert_eq!(wts.len(), 2, "{st}");
    assert_eq!((wts[0]["repo"].as_str(), wts[0]["uncommitted"].as_u64()), (Some("main"), Some(0)));
    assert_eq!((wts[1]["repo"].as_str(), wts[1]["uncommitted"].as_u64(), wts[1]["branch"].as_str()), (Some("frontend"), Some(1), Some(branch.as_str())));
    assert!(repo.iso_ok(&["status", "auth"]).contains("1 uncommitted"));

    // Uncommitted work in the linked worktree stops cleanup of all of them.
    let out = repo.iso(&["cleanup", "auth"]);
    assert!(!out.status.success(), "{}", stdout(&out));
    assert!(stderr(&out).contains("frontend: App.tsx"), "names the repository: {}", stderr(&out));
    assert!(wt.is_dir() && fwt.is_dir(), "nothing removed");
    std::fs::remove_file(fwt.join("App.tsx")).unwrap();
    repo.iso_ok(&["cleanup", "auth"]);
    assert!(!wt.exists() && !fwt.exists());
    assert_eq!(worktree_count(&fe), 1);
    assert!(branches(&fe).contains(&branch) && branches(&repo.root).contains(&branch), "branches kept");

    // --delete-branch deletes the branches iso made, in each repository.
    // (Made without --json: the summary names the linked worktree too.)
    let out = repo.iso_ok(&["init", "two"]);
    let status = repo.iso_json(&["status", "two"]);
    let linked = status["repos"]["frontend"]["worktree"].as_str().unwrap_or_else(|| panic!("{status}"));
    assert!(out.contains(&format!("  worktree {linked} (frontend)")), "{out}");
    let two = status["branch"].as_str().unwrap().to_string();
    assert!(branches(&fe).contains(&two));
    repo.iso_ok(&["cleanup", "two", "--delete-branch"]);
    assert!(!branches(&fe).contains(&two) && !branches(&repo.root).contains(&two));
}

#[test]
fn init_branch_uses_it_where_it_exists_and_makes_it_where_it_does_not() {
    let (repo, fe) = repos();
    repo.git(&["branch", "feature/x", "dev"]);
    let tip = repo.git(&["rev-parse", "feature/x"]);
    let t = &repo.iso_json(&["init", "--branch", "feature/x"])[0];
    assert_eq!(t["created_branch"], false, "the primary's existed");
    assert_eq!(t["repos"]["frontend"]["created_branch"], true, "made in the frontend from its base");
    let fwt = PathBuf::from(t["repos"]["frontend"]["worktree"].as_str().unwrap());
    assert_eq!(git_in(&fwt, &["rev-parse", "--abbrev-ref", "HEAD"]).trim(), "feature/x");
    let out = repo.iso_ok(&["cleanup", "feature/x", "--delete-branch"]);
    assert!(!branches(&fe).contains(&"feature/x".to_string()), "iso's in the frontend deleted: {out}");
    assert_eq!(repo.git(&["rev-parse", "feature/x"]), tip, "the user's in the primary kept");

    // In both: each repository's own branch as it is, neither iso's.
    repo.git(&["branch", "feature/y", "main"]);
    git_in(&fe, &["checkout", "-q", "-b", "feature/y"]);
    git_in(&fe, &["commit", "-q", "--allow-empty", "-m", "frontend work"]);
    git_in(&fe, &["checkout", "-q", "main"]);
    let fe_tip = git_in(&fe, &["rev-parse", "feature/y"]);
    let t = &repo.iso_json(&["init", "--branch", "feature/y"])[0];
    assert_eq!((t["created_branch"].as_bool(), t["repos"]["frontend"]["created_branch"].as_bool()), (Some(false), Some(false)), "{t}");
    let fwt = PathBuf::from(t["repos"]["frontend"]["worktree"].as_str().unwrap());
    assert_eq!(git_in(&fwt, &["rev-parse", "HEAD"]), fe_tip, "the frontend's branch as it is");
    repo.iso_ok(&["cleanup", "feature/y", "--delete-branch"]);
    assert_eq!(git_in(&fe, &["rev-parse", "feature/y"]), fe_tip, "not iso's: kept");
    assert!(branches(&repo.root).contains(&"feature/y".to_string()));
}

#[test]
fn a_failure_in_a_linked_repository_rolls_back_every_repository() {
    // Two linked repositories, made in name order: `frontend` gets its
    // branch and worktree, then `web` fails.
    let repo = TestRepo::new(&format!("{TOML}web = \"../web\"\n"));
    let fe = repo.sibling("frontend");
    let web = repo.sibling("web");
    // The branch thread 1 gets is checked out in another worktree of `web`.
    let other = web.parent().unwrap().join("web-busy");
    git_in(&web, &["worktree", "add", "-q", "-b", "thread-1-busy", &other.display().to_string()]);
    let out = repo.iso(&["init", "busy"]);
    assert!(!out.status.success(), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(err.contains("`web`") && err.contains("thread-1-busy"), "{err}");
    assert!(!repo.path(".worktrees/thread-1").exists(), "primary worktree rolled back");
    assert!(!branches(&repo.root).contains(&"thread-1-busy".to_string()), "primary branch iso made deleted");
    assert_eq!(worktree_count(&repo.root), 1);
    assert!(!fe.join(".worktrees/thread-1").exists(), "frontend worktree rolled back: {err}");
    assert_eq!(worktree_count(&fe), 1);
    assert!(!branches(&fe).contains(&"thread-1-busy".to_string()), "frontend branch iso made deleted");
    assert!(!web.join(".worktrees/thread-1").exists());
    assert_eq!(worktree_count(&web), 2, "web has its own two, no more");
    assert!(branches(&web).contains(&"thread-1-busy".to_string()), "the user's branch stays");
    assert!(repo.threads().is_empty(), "{:?}", repo.threads());
    assert!(repo.iso_json(&["ports"]).as_array().unwrap().is_empty(), "ports released");
    assert!(repo.iso(&["doctor"]).status.success(), "{}", stdout(&repo.iso(&["doctor"])));

    // And the ids and ports are free for the next thread.
    git_in(&web, &["worktree", "remove", &other.display().to_string()]);
    let t = &repo.iso_json(&["init", "free"])[0];
    assert_eq!(t["id"], 1);
}

#[test]
fn a_linked_repository_that_is_not_there_stops_init_before_anything_is_made() {
    let repo = TestRepo::new(TOML);
    let out = repo.iso(&["init", "a"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("repos.frontend") && err.contains("cannot be opened"), "{err}");
    assert!(!repo.path(".worktrees").exists() && repo.threads().is_empty());
    // A folder inside a repository is not its main checkout.
    let fe = repo.sibling("frontend");
    std::fs::create_dir(fe.join("sub")).unwrap();
    repo.write("iso.toml", &format!("[ports]\nbase = {}\n[repos]\nfrontend = \"../frontend/sub\"\n", repo.port_base));
    let err = stderr(&repo.iso(&["init", "a"]));
    assert!(err.contains("not a repository's main checkout") && err.contains(&fe.display().to_string()), "{err}");
    // The primary itself, and two names for one repository.
    repo.write("iso.toml", &format!("[ports]\nbase = {}\n[repos]\nself = \".\"\n", repo.port_base));
    assert!(stderr(&repo.iso(&["init", "a"])).contains("this repository itself"));
    repo.write("iso.toml", &format!("[ports]\nbase = {}\n[repos]\na = \"../frontend\"\nb = \"../frontend/\"\n", repo.port_base));
    assert!(stderr(&repo.iso(&["init", "a"])).contains("same repository as repos.a"));
    assert!(repo.threads().is_empty());
}

#[test]
fn doctor_finds_a_missing_or_stray_linked_worktree_and_fix_rebuilds_the_missing_one() {
    let (repo, fe) = repos();
    let t = &repo.iso_json(&["init", "a"])[0];
    let fwt = PathBuf::from(t["repos"]["frontend"]["worktree"].as_str().unwrap());
    std::fs::remove_dir_all(&fwt).unwrap();
    let out = repo.iso(&["doctor"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stdout(&out).contains("in repository `frontend` is missing"), "{}", stdout(&out));
    let out = repo.iso(&["doctor", "--fix"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert_eq!(git_in(&fwt, &["rev-parse", "--abbrev-ref", "HEAD"]).trim(), t["branch"].as_str().unwrap());
    assert!(env_lines(&fwt.join(".env.thread")).contains(&format!("ISO_WORKTREE={}", fwt.display())));
    assert!(fwt.join(".env").is_file() && fwt.join("node_modules").is_symlink(), "copy and link again");
    assert!(repo.iso(&["doctor"]).status.success(), "{}", stdout(&repo.iso(&["doctor"])));

    // A worktree in the frontend's .worktrees that no thread owns is named,
    // never removed.
    let stray = fe.join(".worktrees/thread-9");
    git_in(&fe, &["worktree", "add", "-q", "-b", "stray", &stray.display().to_string()]);
    let out = repo.iso(&["doctor", "--fix"]);
    assert!(stdout(&out).contains("belongs to no thread") && stdout(&out).contains("thread-9"), "{}", stdout(&out));
    assert!(stray.is_dir());
    git_in(&fe, &["worktree", "remove", &stray.display().to_string()]);

    // The primary's worktree gone while the frontend's holds work: --fix
    // does not remove the thread (and with it that work).
    std::fs::write(fwt.join("App.tsx"), "work\n").unwrap();
    std::fs::remove_dir_all(repo.path(".worktrees/thread-1")).unwrap();
    let out = repo.iso(&["doctor", "--fix"]);
    assert!(!out.status.success());
    assert!(stdout(&out).contains("frontend: App.tsx") || stderr(&out).contains("frontend: App.tsx"), "{}{}", stdout(&out), stderr(&out));
    assert!(fwt.join("App.tsx").is_file(), "the work is still there");
}

#[test]
fn adopt_gives_the_adopted_worktree_linked_worktrees_too() {
    let (repo, fe) = repos();
    let wt = repo.root.parent().unwrap().join("app-review");
    repo.git(&["worktree", "add", "-q", "-b", "review", &wt.display().to_string()]);
    let t = &repo.iso_json(&["adopt", &wt.display().to_string()])[0];
    let linked = &t["repos"]["frontend"];
    assert_eq!(linked["branch"], "review");
    assert_eq!(linked["created_branch"], true, "made in the frontend");
    let fwt = fe.join(".worktrees").join(format!("thread-{}", t["id"]));
    assert_eq!(linked["worktree"].as_str(), Some(fwt.to_str().unwrap()));
    assert!(env_lines(&fwt.join(".env.thread")).contains(&format!("ISO_WORKTREE_MAIN={}", wt.display())));
    // The adopted worktree, outside .worktrees/, is locked against
    // `git worktree prune` like the ones iso makes.
    let list = repo.git(&["worktree", "list", "--porcelain"]);
    let entry = list.split("\n\n").find(|e| e.starts_with(&format!("worktree {}", wt.display()))).unwrap_or_else(|| panic!("{list}"));
    assert!(entry.contains("locked iso thread"), "{entry}");

    // Gone (and kept by git thanks to the lock): doctor --fix checks it out
    // there again instead of giving the thread up.
    std::fs::remove_dir_all(&wt).unwrap();
    repo.git(&["worktree", "prune"]);
    let out = repo.iso(&["doctor"]);
    assert!(stdout(&out).contains("adopted worktree") && stdout(&out).contains("is missing"), "{}", stdout(&out));
    let out = repo.iso(&["doctor", "--fix"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert_eq!(git_in(&wt, &["rev-parse", "--abbrev-ref", "HEAD"]).trim(), "review");
    assert!(wt.join(".env.thread").is_file() && wt.join(".env").is_file());
    assert_eq!(repo.threads()[0]["status"], "active");
    assert!(repo.iso(&["doctor"]).status.success(), "{}", stdout(&repo.iso(&["doctor"])));
}

/// The API's thread JSON carries the linked worktrees, and its cleanup
/// removes them.
#[test]
fn api_creates_and_removes_a_thread_across_repositories() {
    use crate::support::server::Server;
    let (repo, fe) = repos();
    let s = Server::start(&repo, Some("test-token-0123456789"));
    let a: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let auth = "Bearer test-token-0123456789";
    let mut resp =
        a.post(&format!("{}/api/threads", s.url)).header("Authorization", auth).content_type("application/json").send(br#"{"name": "api"}"#).unwrap();
    assert_eq!(resp.status().as_u16(), 201);
    let t: serde_json::Value = serde_json::from_str(&resp.body_mut().read_to_string().unwrap()).unwrap();
    let fwt = PathBuf::from(t["repos"]["frontend"]["worktree"].as_str().unwrap_or_else(|| panic!("{t}")));
    assert!(fwt.join(".env.thread").is_file());
    let id = t["id"].as_u64().unwrap();
    let mut resp = a.get(&format!("{}/api/threads/{id}", s.url)).header("Authorization", auth).call().unwrap();
    let st: serde_json::Value = serde_json::from_str(&resp.body_mut().read_to_string().unwrap()).unwrap();
    assert_eq!(st["worktrees"][1]["repo"], "frontend", "{st}");
    std::fs::write(fwt.join("App.tsx"), "work\n").unwrap();
    let resp = a.delete(&format!("{}/api/threads/{id}", s.url)).header("Authorization", auth).call().unwrap();
    assert_eq!(resp.status().as_u16(), 409, "dirty linked worktree: would lose work");
    std::fs::remove_file(fwt.join("App.tsx")).unwrap();
    let resp = a.delete(&format!("{}/api/threads/{id}", s.url)).header("Authorization", auth).call().unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert!(!fwt.exists() && worktree_count(&fe) == 1);
}

#[cfg(feature = "nu")]
#[test]
fn nu_threads_carry_the_linked_worktrees() {
    let (repo, fe) = repos();
    let nu = crate::nu::Nu::new(&repo);
    let made = nu.json(&repo.root, "iso init fromnu | get 0.repos.frontend.worktree");
    assert_eq!(made, serde_json::json!(fe.join(".worktrees/thread-1").display().to_string()));
    let listed = nu.json(&repo.root, "iso threads | get 0.repos.frontend.branch");
    assert_eq!(listed, repo.threads()[0]["repos"]["frontend"]["branch"]);
    let wts = nu.json(&repo.root, "iso thread fromnu | get worktrees | select repo uncommitted");
    assert_eq!(wts, serde_json::json!([{"repo": "main", "uncommitted": 0}, {"repo": "frontend", "uncommitted": 0}]));
}

/// The primary and `frontend` with hooks: `[repos]` first, then `hooks_toml`.
fn repos_with_hooks(hooks_toml: &str) -> (TestRepo, PathBuf) {
    let repo = TestRepo::new(&format!("{TOML}{hooks_toml}"));
    let fe = repo.sibling("frontend");
    (repo, fe)
}

fn history(t: &serde_json::Value) -> String {
    serde_json::to_string(&t["history"]).unwrap()
}

#[test]
fn hooks_see_every_worktree_and_open_a_linked_one_only_when_granted() {
    let toml = "\n[[hooks]]\nname = \"look\"\nevent = \"post-init\"\nrhai = \"hooks/look.rhai\"\n\n[[hooks]]\nname = \"granted\"\nevent = \"post-init\"\nrhai = \"hooks/look.rhai\"\nallow.paths = [\".\", { repo = \"frontend\", path = \".\", mode = \"ro\" }]\n";
    let (repo, fe) = repos_with_hooks(toml);
    repo.write(
        "hooks/look.rhai",
        "message(`sees ${thread.worktrees.keys().len()}: ${thread.worktrees.frontend}`);\n\
         try { let t = read_file(thread.worktrees.frontend + \"/package.json\"); message(`read ${t.len()}`); } catch (e) { message(`denied: ${e}`); }\n\
         try { write_file(thread.worktrees.frontend + \"/x\", \"x\"); message(\"wrote\"); } catch (e) { message(\"not written\"); }\n",
    );
    repo.git(&["add", "hooks"]);
    repo.git(&["commit", "-q", "-m", "hooks"]);
    let out = crate::hooks::iso(&repo, &["init", "web"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let t = crate::hooks::thread(&repo, 1);
    let h = history(&t);
    let fwt = fe.join(".worktrees/thread-1");
    assert!(h.contains(&format!("sees 2: {}", fwt.display())), "{h}");
    assert!(h.contains("denied: ") && h.contains("allow.paths"), "the ungranted hook is refused: {h}");
    assert!(h.contains("read 3"), "the granted one reads: {h}");
    assert!(h.contains("not written") && !h.contains("wrote"), "read-only: {h}");
    assert!(!fwt.join("x").exists());
}

/// The shipped frontend-env hook with no `config`: the thread's `frontend`
/// worktree's `.env` points at the thread's API, and is put back before
/// cleanup.
fn frontend_env_patches_the_linked_frontend(kind: &str, hook: &str) {
    let toml = format!("\n[[hooks]]\nevent = [\"post-init\", \"pre-cleanup\"]\n{kind} = \"{hook}\"\nallow.paths = [{{ repo = \"frontend\", path = \".\" }}]\n");
    let (repo, fe) = repos_with_hooks(&toml);
    if kind == "rhai" {
        let src = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../hooks/frontend-env.rhai")).unwrap();
        repo.write(hook, &src);
    }
    let out = crate::hooks::iso(&repo, &["init", "web"]);
    assert!(out.status.success(), "{kind}: {}", stderr(&out));
    let t = crate::hooks::thread(&repo, 1);
    assert_eq!(t["status"], "active", "{kind}: {t}");
    let api = t["ports"]["api"].as_u64().unwrap();
    let fwt = fe.join(".worktrees/thread-1");
    let env = std::fs::read_to_string(fwt.join(".env")).unwrap();
    assert_eq!(env, format!("VITE_BACKEND_API_URL=http://localhost:{api}\n"), "{kind}");
    assert!(std::fs::read_to_string(fwt.join(".env.original")).unwrap().contains("localhost:3000"), "{kind}");
    let wt = PathBuf::from(t["worktree"].as_str().unwrap());
    assert!(!wt.join(".env.original").exists(), "{kind}: the primary's .env is left alone");
    assert!(history(&t).contains("frontend:.env"), "{kind}: {}", history(&t));
    crate::hooks::iso_ok(&repo, &["hooks", "run", "pre-cleanup", "1"]);
    assert!(std::fs::read_to_string(fwt.join(".env")).unwrap().contains("localhost:3000"), "{kind}: restored");
    assert!(!fwt.join(".env.original").exists(), "{kind}");
    let out = crate::hooks::iso(&repo, &["cleanup", "1"]);
    assert!(out.status.success(), "{kind}: {}", stderr(&out));
    assert!(!fwt.exists());
}

#[test]
fn frontend_env_rhai_patches_the_linked_frontend_with_no_config() {
    frontend_env_patches_the_linked_frontend("rhai", "hooks/frontend-env.rhai");
}

#[test]
fn frontend_env_wasm_patches_the_linked_frontend_with_no_config() {
    frontend_env_patches_the_linked_frontend("wasm", &crate::hooks::wasm("iso_frontend_env.wasm"));
}
