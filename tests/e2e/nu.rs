//! The Nushell plugin `nu_plugin_iso` in the real `nu` 0.115.1 binary
//! (`ISO_TEST_NU`, else `nu` on PATH, else the one .ci/install-deps puts
//! under /opt/iso-ci/nu; no nu is a failure, not a skip), with the real
//! plugin binary added to a throwaway plugin registry:
//!
//! - `examples`: every command's documented examples, as nu itself lists
//!   them (`scope commands`), run in a real repository laid out as the
//!   examples describe; each must give the result it shows.
//! - the rest: real pipelines checked against what the real `iso` CLI did
//!   in the same repository, and the reverse.
//!
//! Ports: each test's repository has 4 blocks of 10 (`threads.max = 3`) in
//! a window of its own from `support::ports`. The example tests use iso's
//! default window (base 10000, `ports::iso_defaults`) because the examples
//! show default port numbers, and take turns.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::support::{stderr, stdout, TestRepo};
use chrono::{DateTime, FixedOffset};
use serde_json::Value as Json;

const PLUGIN: &str = env!("CARGO_BIN_EXE_nu_plugin_iso");

// ---- the real nu ------------------------------------------------------------

/// The `nu` to test with. Failing (not skipping) when there is none keeps a
/// CI machine without nu from passing silently.
fn nu_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("ISO_TEST_NU").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        assert!(p.is_file(), "ISO_TEST_NU={} is not a file", p.display());
        return p;
    }
    if let Some(p) = std::env::var_os("PATH").and_then(|path| std::env::split_paths(&path).map(|d| d.join("nu")).find(|p| p.is_file())) {
        return p;
    }
    // The real binary first: node_modules/.bin/nu is npm's node wrapper
    // around it, which adds node's start-up to every run.
    let ci = ["/opt/iso-ci/nu/bin/nu", "/opt/iso-ci/nu/node_modules/@nushell/linux-x64/bin/nu", "/opt/iso-ci/nu/node_modules/.bin/nu"]
        .map(PathBuf::from)
        .into_iter()
        .find(|p| p.is_file());
    ci.expect(
        "no Nushell found: set ISO_TEST_NU to a nu 0.115.x binary, put `nu` on PATH, or install it with \
         `npm install --prefix /opt/iso-ci/nu nushell@0.115.1` (.ci/install-deps does this)",
    )
}

/// A nu session setup: the plugin added to a throwaway plugin registry, and
/// no user config, history or plugin registry touched; iso's state goes to
/// the test repository's state directory, as the CLI's does.
pub(crate) struct Nu {
    bin: PathBuf,
    home: tempfile::TempDir,
    state_env: [(&'static str, PathBuf); 2],
}

impl Nu {
    pub(crate) fn new(repo: &TestRepo) -> Nu {
        let home = tempfile::Builder::new().prefix("iso-nu-").tempdir().unwrap();
        let nu = Nu { bin: nu_binary(), home, state_env: repo.state_env() };
        let version = nu.raw(nu.home.path(), "version | get version");
        assert!(version.status.success(), "{} does not run: {}", nu.bin.display(), stderr(&version));
        assert!(
            stdout(&version).trim().starts_with("0.115."),
            "nu_plugin_iso is built for Nushell 0.115.x, but {} is {}",
            nu.bin.display(),
            stdout(&version).trim()
        );
        let added = nu.raw(nu.home.path(), &format!("plugin add '{PLUGIN}'"));
        assert!(added.status.success(), "plugin add failed: {}", stderr(&added));
        assert!(nu.plugin_config().is_file(), "plugin add did not write {}", nu.plugin_config().display());
        nu
    }

    fn plugin_config(&self) -> PathBuf {
        self.home.path().join("plugin.msgpackz")
    }

    /// Run `script` in `dir` without loading the plugin.
    fn raw(&self, dir: &Path, script: &str) -> Output {
        let empty = self.home.path().join("empty.nu");
        std::fs::write(&empty, "").unwrap();
        Command::new(&self.bin)
            .arg("--plugin-config")
            .arg(self.plugin_config())
            .arg("--config")
            .arg(&empty)
            .arg("--env-config")
            .arg(&empty)
            .arg("--no-history")
            .arg("-c")
            .arg(script)
            .current_dir(dir)
            .env("HOME", self.home.path())
            .env("XDG_CONFIG_HOME", self.home.path().join("config"))
            .env("XDG_DATA_HOME", self.home.path().join("data"))
            .env("ISO_USER_CONFIG", "")
            .env("NO_COLOR", "1")
            .env_remove("ISO_PORTS_BASE")
            .envs(self.state_env.clone())
            .output()
            .expect("run nu")
    }

    /// `plugin use iso; <script>` in `dir`.
    fn run(&self, dir: &Path, script: &str) -> Output {
        self.raw(dir, &format!("plugin use iso; {script}"))
    }

    /// Run and return stdout, failing the test with nu's stderr otherwise.
    fn ok(&self, dir: &Path, script: &str) -> String {
        let out = self.run(dir, script);
        assert!(out.status.success(), "nu -c {script:?} failed ({:?}):\n{}{}", out.status.code(), stderr(&out), stdout(&out));
        stdout(&out)
    }

    /// `<script> | to json`, parsed.
    pub(crate) fn json(&self, dir: &Path, script: &str) -> Json {
        let text = self.ok(dir, &format!("{script} | to json"));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{script}: not JSON ({e}): {text}"))
    }

    /// Run a script that must fail; returns stderr.
    fn err(&self, dir: &Path, script: &str) -> String {
        let out = self.run(dir, script);
        assert!(!out.status.success(), "nu -c {script:?} should have failed:\n{}", stdout(&out));
        stderr(&out)
    }
}

fn date(v: &Json) -> DateTime<FixedOffset> {
    DateTime::parse_from_rfc3339(v.as_str().unwrap_or_else(|| panic!("not a date: {v}"))).unwrap()
}

/// Fields of the CLI's JSON that `iso threads` rows leave to `iso thread`.
const FULL_ONLY: [&str; 5] = ["created_branch", "owner", "steps", "history", "worktrees"];

/// Every field the CLI's JSON has must be in the plugin's record with the
/// same value (times compared as instants; the plugin adds explicit nulls).
/// A row (`full == false`) leaves out [`FULL_ONLY`], and must not have them.
fn assert_same_thread(cli: &Json, nu: &Json, full: bool) {
    let cli = cli.as_object().unwrap();
    if !full {
        for key in FULL_ONLY {
            assert!(nu.get(key).is_none(), "row has `{key}`: {nu}");
        }
    }
    for (key, want) in cli {
        if !full && FULL_ONLY.contains(&key.as_str()) {
            continue;
        }
        let got = nu.get(key).unwrap_or_else(|| panic!("plugin record lacks `{key}`: {nu}"));
        match key.as_str() {
            "created" | "updated" | "last_activity" => assert_eq!(date(got), date(want), "{key}"),
            "history" => {
                let (g, w) = (got.as_array().unwrap(), want.as_array().unwrap());
                assert_eq!(g.len(), w.len(), "history: {got} vs {want}");
                for (g, w) in g.iter().zip(w) {
                    assert_eq!(date(&g["at"]), date(&w["at"]));
                    assert_eq!(g["event"], w["event"]);
                    assert_eq!(g["detail"].as_str().unwrap_or(""), w["detail"].as_str().unwrap_or(""));
                }
            }
            _ => assert_eq!(got, want, "field `{key}`"),
        }
    }
    for (key, got) in nu.as_object().unwrap() {
        // The CLI leaves out empty lists and maps (steps, links); the plugin has them empty.
        let empty = got.is_null() || got == &Json::Array(vec![]) || got == &Json::Object(Default::default());
        assert!(cli.contains_key(key) || empty, "plugin has `{key}` = {got} that the CLI does not");
    }
}

/// Threads a (active), b (merged, pr 7), c (removed), made with the CLI.
fn three_threads() -> TestRepo {
    let repo = TestRepo::new("[threads]\nmax = 3\n[ports]\nblock_size = 10\n");
    repo.iso_ok(&["init", "alpha", "--task", "first one"]);
    repo.iso_ok(&["init", "beta", "--base", "dev"]);
    repo.iso_ok(&["init", "gamma"]);
    repo.iso_ok(&["update", "beta", "--status", "merged", "--pr", "7"]);
    repo.iso_ok(&["cleanup", "gamma"]);
    repo
}

#[test]
fn pipelines_over_threads_agree_with_the_cli() {
    let repo = three_threads();
    let nu = Nu::new(&repo);
    let root = &repo.root;
    let cli = repo.threads();
    assert_eq!(cli.len(), 2);

    // The whole table, field by field.
    let table = nu.json(root, "iso threads");
    let rows = table.as_array().unwrap();
    assert_eq!(rows.len(), 2, "{table}");
    for (c, n) in cli.iter().zip(rows) {
        assert_same_thread(c, n, false);
    }

    // Real types: ints, records, datetimes.
    assert_eq!(nu.ok(root, "iso threads | get id | describe").trim(), "list<int>");
    assert_eq!(nu.ok(root, "iso threads | get created | describe").trim(), "list<datetime>");
    assert_eq!(nu.ok(root, "iso threads | get last_activity | describe").trim(), "list<datetime>");
    assert_eq!(nu.ok(root, "iso thread alpha | get ports | describe").trim(), "record<api: int, postgres: int, redis: int, worker: int>");
    assert_eq!(nu.ok(root, "iso threads | first | get pr | describe").trim(), "nothing");
    assert!(nu.ok(root, "iso threads | first | get links | describe").trim().starts_with("record"), "links are a record");

    // The pipelines of the issue.
    assert_eq!(nu.json(root, "iso threads | where status == active | get name"), serde_json::json!(["alpha"]));
    assert_eq!(nu.json(root, "iso threads | where status == merged | get pr"), serde_json::json!([7]));
    let postgres: Vec<Json> = cli.iter().map(|t| t["ports"]["postgres"].clone()).collect();
    assert_eq!(nu.json(root, "iso threads | get ports.postgres"), Json::Array(postgres.clone()));
    let base = repo.port_base;
    assert_eq!(postgres, [serde_json::json!(base + 10), serde_json::json!(base + 20)]);
    assert_eq!(nu.json(root, "iso threads | sort-by created | last | get name"), serde_json::json!("beta"));
    assert_eq!(nu.json(root, "iso threads | sort-by id --reverse | get worktree"), serde_json::json!([cli[1]["worktree"], cli[0]["worktree"]]));
    assert_eq!(nu.json(root, "iso threads | where created > ((date now) - 1hr) | length"), serde_json::json!(2));

    // --all adds the removed thread, as `iso list --all` does.
    let all_cli = repo.iso_json(&["list", "--all"]);
    let all_nu = nu.json(root, "iso threads --all");
    assert_eq!(all_nu.as_array().unwrap().len(), 3);
    for (c, n) in all_cli.as_array().unwrap().iter().zip(all_nu.as_array().unwrap()) {
        assert_same_thread(c, n, false);
    }
    assert_eq!(nu.json(root, "iso threads --all | where status == removed | get name"), serde_json::json!(["gamma"]));

    // One thread: everything `iso status --json` has.
    for sel in ["alpha", "2", "thread-2-beta"] {
        let want = repo.iso_json(&["status", sel]);
        assert_same_thread(&want, &nu.json(root, &format!("iso thread {sel}")), true);
    }
    assert_eq!(nu.json(root, "iso threads | get id | each {|id| iso thread $id | get name }"), serde_json::json!(["alpha", "beta"]));

    // The port table.
    let ports_cli = repo.iso_json(&["ports"]);
    assert_eq!(nu.json(root, "iso ports"), ports_cli);
    // The machine-wide view, as `iso ports --all --json` gives it.
    let leases = repo.iso_json(&["ports", "--all"]);
    assert_eq!(leases.as_array().unwrap().len(), 2, "{leases}");
    assert_eq!(nu.json(root, "iso ports --all"), leases);

    // The agent status is a typed record (null until there is one).
    repo.iso_ok(&["agent-status", "waiting", "--message", "which db?", "alpha"]);
    assert_eq!(nu.json(root, "iso threads | where agent != null | where agent.state == waiting | get name"), serde_json::json!(["alpha"]));
    assert_eq!(nu.json(root, "iso thread alpha | get agent.message"), serde_json::json!("which db?"));
    assert_eq!(nu.ok(root, "iso thread alpha | get agent.since | describe").trim(), "datetime");
    assert_eq!(nu.ok(root, "iso threads | last | get agent | describe").trim(), "nothing");
}

#[test]
fn repository_is_found_from_the_engines_pwd() {
    let repo = three_threads();
    let nu = Nu::new(&repo);
    // nu (and so the plugin process) starts outside any repository; only
    // $env.PWD leads to it.
    let elsewhere = tempfile::tempdir().unwrap();
    let script = format!("cd '{}'; iso threads | get name", repo.root.display());
    assert_eq!(nu.json(elsewhere.path(), &script), serde_json::json!(["alpha", "beta"]));
    // From inside a thread's worktree, and `cd (iso thread … | get worktree)`.
    let script = format!("cd '{}'; cd (iso thread beta | get worktree); {{pwd: $env.PWD, names: (iso threads | get name)}}", repo.root.display());
    let got = nu.json(elsewhere.path(), &script);
    assert_eq!(got["pwd"], repo.threads()[1]["worktree"]);
    assert_eq!(got["names"], serde_json::json!(["alpha", "beta"]));
    // And outside a repository it says so.
    let err = nu.err(elsewhere.path(), "iso threads");
    assert!(err.contains("not inside a git repository"), "{err}");
}

#[test]
fn init_from_nu_is_seen_by_the_cli() {
    let repo = TestRepo::new("[threads]\nmax = 3\n[ports]\nblock_size = 10\n");
    let nu = Nu::new(&repo);
    let root = &repo.root;
    let made = nu.json(root, "iso init one two --base dev --task 'from nu'");
    let made = made.as_array().unwrap();
    assert_eq!(made.len(), 2);

    let cli = repo.threads();
    assert_eq!(cli.len(), 2);
    for (c, n) in cli.iter().zip(made) {
        assert_same_thread(c, n, false);
        assert_eq!(c["base"], "dev");
        assert_eq!(c["task"], "from nu");
        assert_eq!(c["status"], "active");
        let wt = PathBuf::from(c["worktree"].as_str().unwrap());
        assert!(wt.join(".env.thread").is_file(), "{}", wt.display());
        assert_eq!(crate::support::git_in(&wt, &["branch", "--show-current"]).trim(), c["branch"].as_str().unwrap());
    }
    assert_eq!(cli[0]["ports"]["postgres"], repo.port_base + 10);

    // The record that init returns is the one later commands see.
    assert_eq!(nu.json(root, "iso init three | get 0.id"), serde_json::json!(3));
    assert_eq!(repo.iso_json(&["status", "three"])["id"], 3);
}

#[test]
fn cleanup_from_nu_takes_arguments_or_piped_rows() {
    let repo = TestRepo::new("[threads]\nmax = 3\n[ports]\nblock_size = 10\n");
    repo.iso_ok(&["init", "a", "b", "c"]);
    repo.iso_ok(&["update", "b", "--status", "merged"]);
    repo.iso_ok(&["update", "c", "--status", "merged"]);
    let nu = Nu::new(&repo);
    let root = &repo.root;

    let removed = nu.json(root, "iso threads | where status == merged | iso cleanup --delete-branch | get name");
    assert_eq!(removed, serde_json::json!(["b", "c"]));
    let left: Vec<Json> = repo.threads().iter().map(|t| t["name"].clone()).collect();
    assert_eq!(left, [serde_json::json!("a")]);
    assert!(repo.git(&["branch", "--list", "thread-2-b"]).trim().is_empty(), "branch deleted");

    // Uncommitted work is refused, with the CLI's fix hint, unless --force.
    std::fs::write(repo.path(".worktrees/thread-1/new.txt"), "work\n").unwrap();
    let err = nu.err(root, "iso cleanup 1");
    assert!(err.contains("would lose work") && err.contains("new.txt") && err.contains("--force"), "{err}");
    assert_eq!(repo.threads().len(), 1);
    assert_eq!(nu.json(root, "iso cleanup a --force | get 0.status"), serde_json::json!("removed"));
    assert!(repo.threads().is_empty());
    assert!(repo.git(&["branch", "--list", "thread-1-a"]).contains("thread-1-a"), "branch kept without --delete-branch");
}

#[test]
fn wrong_arguments_are_labelled() {
    let repo = TestRepo::new("[threads]\nmax = 3\n[ports]\nblock_size = 10\n");
    repo.iso_ok(&["init", "taken"]);
    let nu = Nu::new(&repo);
    let root = &repo.root;

    // Unknown thread: message, label under the argument, the hint in nu's words.
    let err = nu.err(root, "iso thread nope");
    assert!(err.contains("no thread `nope`"), "{err}");
    assert!(err.contains("no such thread"), "label: {err}");
    assert!(err.contains("iso threads") && !err.contains("iso list"), "hint: {err}");
    assert_label_under(&err, "nope", "no such thread");

    let err = nu.err(root, "iso init 'bad..name'");
    assert!(err.contains("contains `..`"), "{err}");
    assert_label_under(&err, "'bad..name'", "not a usable thread name");

    let err = nu.err(root, "iso init taken");
    assert!(err.contains("already named `taken`"), "{err}");
    assert_label_under(&err, "taken", "already the name of thread 1");

    let err = nu.err(root, "iso init x --base no-such-branch");
    assert!(err.contains("base `no-such-branch` is not a branch"), "{err}");
    assert_label_under(&err, "no-such-branch", "no such branch or commit");

    // Several names: the good one is created, the error says so.
    let err = nu.err(root, "iso init fine 'bad..' ");
    assert!(err.contains("1 of 2 failed") && err.contains("fine"), "{err}");
    assert_eq!(repo.threads().len(), 2);

    // Errors are catchable with a code.
    assert_eq!(nu.json(root, "try { iso thread 99 } catch {|e| $e.details.code }"), serde_json::json!("iso::not_found"));
    assert_eq!(nu.json(root, "try { iso init ok-1 'bad..' } catch {|e| $e.details.code }"), serde_json::json!("iso::partial"));

    // A thread is an int or a string (or a row of `iso threads`).
    let err = nu.err(root, "iso thread 1.5");
    assert!(err.contains("not by a float"), "{err}");
    assert_label_under(&err, "1.5", "expected an int or a string");
    let err = nu.err(root, "[{a: 1}] | iso cleanup");
    assert!(err.contains("needs an `id` column"), "{err}");
    let err = nu.err(root, "iso init");
    assert!(err.contains("needs a thread name or --branch"), "{err}");
    let err = nu.err(root, "iso cleanup");
    assert!(err.contains("which threads?"), "{err}");
}

/// nu draws a label as `^^|^^` (`─┬─` with colour) under the argument and
/// the text below it; check the text is there and the marker is under `arg`
/// in the source line.
fn assert_label_under(err: &str, arg: &str, label: &str) {
    let lines: Vec<&str> = err.lines().collect();
    let is_source = |l: &&str| l.trim_start().starts_with(|c: char| c.is_ascii_digit()) && l.contains(" | ") && l.contains(arg);
    let src = lines.iter().position(is_source).unwrap_or_else(|| panic!("`{arg}` not shown in:\n{err}"));
    let col = lines[src].find(arg).unwrap();
    let marker = lines[src + 1];
    let under: String = marker.chars().skip(lines[src][..col].chars().count()).take(arg.chars().count()).collect();
    assert!(!under.is_empty() && under.chars().all(|c| matches!(c, '^' | '|' | '─' | '┬')), "no label under `{arg}`:\n{err}");
    assert!(err.contains(label), "label `{label}` missing:\n{err}");
}

#[test]
fn commands_are_documented_in_nu_help() {
    let repo = TestRepo::new("[threads]\nmax = 3\n[ports]\nblock_size = 10\n");
    let nu = Nu::new(&repo);
    let help = nu.ok(&repo.root, "help iso threads");
    assert!(help.contains("List the repository's threads") && help.contains("--all") && help.contains("where status == active"), "{help}");
    let overview = nu.ok(&repo.root, "iso");
    for cmd in ["iso threads", "iso thread", "iso init", "iso adopt", "iso cleanup", "iso ports", "iso snapshots"] {
        assert!(overview.contains(cmd), "`iso` lists {cmd}: {overview}");
    }
    let found = nu.json(&repo.root, "help commands | where category == iso | get name | sort");
    assert_eq!(found, serde_json::json!(["iso", "iso adopt", "iso cleanup", "iso init", "iso ports", "iso snapshots", "iso thread", "iso threads"]));
    assert_eq!(
        nu.json(&repo.root, "help commands | where name == 'iso threads' | get 0.search_terms"),
        serde_json::json!("list, ls, worktrees, status, iso list")
    );
}

// ---- the documented examples, in the real nu ---------------------------------

mod examples {
    use super::Nu;
    use crate::support::{ports, TestRepo};
    use serde_json::Value as Json;

    /// Every iso command, by the test that runs its examples.
    const READ_ONLY: [&str; 5] = ["iso threads", "iso thread", "iso ports", "iso snapshots", "iso"];
    const INIT: [&str; 1] = ["iso init"];
    const CLEANUP: [&str; 1] = ["iso cleanup"];
    const ADOPT: [&str; 1] = ["iso adopt"];

    /// The iso commands as nu lists them, with what `plugin add` registered
    /// of their signatures: category, description, search terms, examples
    /// (`example`, `description`, `result`).
    fn documented(nu: &Nu, repo: &TestRepo) -> Vec<Json> {
        let script = "scope commands | where name == iso or name starts-with 'iso ' | select name category description search_terms examples";
        nu.json(&repo.root, script).as_array().unwrap().clone()
    }

    /// Check the documentation of the commands `names` and run all their
    /// examples, in order, in one nu session in `repo`: each must give the
    /// result it documents (compared by nu's own `==`, so as nu sees values:
    /// records regardless of column order).
    fn check(nu: &Nu, repo: &TestRepo, names: &[&str]) {
        let documented = documented(nu, repo);
        let mut script = String::from("let docs = (scope commands | where name starts-with iso)\n[\n");
        let mut run = Vec::new();
        for &name in names {
            let cmd = documented.iter().find(|c| c["name"] == name).unwrap_or_else(|| panic!("nu does not list `{name}`"));
            assert_eq!(cmd["category"], "iso", "{name}");
            assert!(cmd["description"].as_str().is_some_and(|d| !d.is_empty()), "{name}: no description");
            assert!(cmd["search_terms"].as_str().is_some_and(|t| !t.is_empty()), "{name}: no search terms");
            let examples = cmd["examples"].as_array().unwrap_or_else(|| panic!("{name}: examples are {}", cmd["examples"]));
            assert!(!examples.is_empty(), "{name}: no examples");
            for (i, example) in examples.iter().enumerate() {
                let source = example["example"].as_str().unwrap();
                assert!(!example["result"].is_null(), "{name}: `{source}` shows no result");
                script.push_str(&format!(
                    "  (try {{ let got = ({source}); let want = ($docs | where name == '{name}' | get 0.examples.{i}.result); \
                     {{same: ($got == $want), got: ($got | to nuon), want: ($want | to nuon)}} }} \
                     catch {{|e| {{same: false, error: $e.rendered}} }})\n"
                ));
                run.push((name, example));
            }
        }
        script.push(']');
        let results = nu.json(&repo.root, &script);
        let results = results.as_array().unwrap();
        assert_eq!(results.len(), run.len(), "{results:?}");
        let failed: Vec<String> = run
            .iter()
            .zip(results)
            .filter(|(_, r)| r["same"] != true)
            .map(|((name, example), r)| {
                let what = match r["error"].as_str() {
                    Some(error) => format!("failed:\n{error}"),
                    None => format!("gave {}\n  documented: {}", r["got"].as_str().unwrap(), r["want"].as_str().unwrap()),
                };
                format!("{name}: `{}` ({}) {what}", example["example"].as_str().unwrap(), example["description"].as_str().unwrap())
            })
            .collect();
        assert!(failed.is_empty(), "{} of {} examples do not do what they show:\n{}", failed.len(), run.len(), failed.join("\n"));
    }

    /// The repository the read-only examples describe: 1 add-auth (active),
    /// 2 fix-login (merged), old-spike cleaned up; default ports.
    fn described_repo(turn: &ports::IsoDefaults) -> TestRepo {
        let repo = TestRepo::with_iso_defaults(turn, "");
        repo.iso_ok(&["init", "add-auth", "fix-login", "old-spike"]);
        repo.iso_ok(&["update", "fix-login", "--status", "merged"]);
        repo.iso_ok(&["cleanup", "old-spike"]);
        repo
    }

    #[test]
    fn read_only_commands() {
        let turn = ports::iso_defaults();
        let repo = described_repo(&turn);
        let nu = Nu::new(&repo);
        check(&nu, &repo, &READ_ONLY);
        // Every command nu lists has its examples run by one of these tests.
        let mut listed: Vec<String> = documented(&nu, &repo).iter().map(|c| c["name"].as_str().unwrap().to_string()).collect();
        let mut tested: Vec<&str> = [&READ_ONLY[..], &INIT, &CLEANUP, &ADOPT].concat();
        listed.sort();
        tested.sort_unstable();
        assert_eq!(listed, tested);
    }

    #[test]
    fn init() {
        let turn = ports::iso_defaults();
        let repo = TestRepo::with_iso_defaults(&turn, "");
        check(&Nu::new(&repo), &repo, &INIT);
    }

    #[test]
    fn adopt() {
        let turn = ports::iso_defaults();
        let repo = TestRepo::with_iso_defaults(&turn, "");
        check(&Nu::new(&repo), &repo, &ADOPT);
    }

    #[test]
    fn cleanup() {
        let turn = ports::iso_defaults();
        let repo = TestRepo::with_iso_defaults(&turn, "");
        repo.iso_ok(&["init", "add-auth", "fix-login"]);
        repo.iso_ok(&["update", "fix-login", "--status", "merged"]);
        check(&Nu::new(&repo), &repo, &CLEANUP);
    }
}

#[test]
fn init_from_nu_can_skip_the_stack_and_shows_what_hooks_said() {
    // A stack whose image does not exist: starting it would fail.
    let repo = TestRepo::new("[threads]\nmax = 3\n[ports]\nblock_size = 10\n[services.api]\nimage = \"iso-test/never-built:0\"\nport = 8080\n");
    repo.write("hooks/post-init.rhai", "message(`hello from ${thread.name}`);\n");
    let nu = Nu::new(&repo);
    let root = &repo.root;
    let made = nu.json(root, "iso init quiet-one --no-services --task 'no stack'");
    let row = &made[0];
    assert_eq!((row["name"].as_str(), row["task"].as_str(), row["status"].as_str()), (Some("quiet-one"), Some("no stack"), Some("active")), "{made}");
    let messages: Vec<&str> = row["messages"].as_array().unwrap().iter().filter_map(|m| m.as_str()).collect();
    assert!(messages.iter().any(|m| m.contains("hello from quiet-one")), "the hook's message is in the row: {messages:?}");
    assert!(repo.iso_json(&["status", "quiet-one"])["history"]
        .as_array()
        .unwrap()
        .iter()
        .any(|h| h["detail"].as_str().unwrap_or("").contains("hello from quiet-one")));
    // Without --no-services the stack is started, and here that fails.
    let err = nu.err(root, "iso init with-stack");
    assert!(err.contains("iso-test/never-built:0"), "{err}");
}

#[test]
fn init_from_nu_seeds_from_another_thread() {
    use crate::support::docker::{docker_section, tag, DockerGuard};
    let t = tag();
    let stack = "[services.api]\nimage = \"iso-test/busybox:1\"\ncommand = \"busybox httpd -f -p 8080 -h /www\"\nport = 8080\nvolumes = [\"files:/www\"]\nhealthcheck = { tcp = true }\n";
    let repo = TestRepo::new(&format!("[threads]\nmax = 3\n[ports]\nblock_size = 10\n{}{stack}", docker_section(&t, "")));
    let _docker = DockerGuard::new(&repo.root);
    let nu = Nu::new(&repo);
    repo.iso_ok(&["init", "one"]);
    let out = Command::new("docker").args(["exec", &format!("iso-{t}-t1-api"), "sh", "-c", "echo from-nu > /www/index.html"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let made = nu.json(&repo.root, "iso init two --seed-from one");
    let messages = made[0]["messages"].to_string();
    assert!(messages.contains("seeded from one"), "{made}");
    let out = Command::new("docker").args(["exec", &format!("iso-{t}-t2-api"), "cat", "/www/index.html"]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "from-nu");
}

#[test]
fn snapshots_from_nu_are_the_clis_as_a_table() {
    use crate::seed::SnapshotGuard;
    use crate::support::docker::{docker_section, tag, DockerGuard};
    let t = tag();
    let stack = "[services.api]\nimage = \"iso-test/busybox:1\"\ncommand = \"busybox httpd -f -p 8080 -h /www\"\nport = 8080\nvolumes = [\"files:/www\"]\nhealthcheck = { tcp = true }\n";
    let repo = TestRepo::new(&format!("[threads]\nmax = 3\n[ports]\nblock_size = 10\n{}{stack}", docker_section(&t, "")));
    let (_docker, _snaps) = (DockerGuard::new(&repo.root), SnapshotGuard(t.clone()));
    let nu = Nu::new(&repo);
    assert_eq!(nu.json(&repo.root, "iso snapshots"), serde_json::json!([]));
    repo.iso_ok(&["init", "one"]);
    repo.iso_ok(&["snapshot", "save", "base", "--from", "one"]);
    let cli = repo.iso_json(&["snapshot", "list"]);
    let row = nu.json(&repo.root, "iso snapshots | update created { format date '%+' } | get 0");
    for key in ["name", "from", "volumes"] {
        assert_eq!(row[key], cli[0][key], "{key}: {row} vs {cli}");
    }
    assert_eq!(row["missing"], serde_json::json!([]), "a column even when empty (the CLI's JSON leaves it out): {row}");
    let (a, b) =
        (DateTime::<FixedOffset>::parse_from_rfc3339(row["created"].as_str().unwrap()), DateTime::parse_from_rfc3339(cli[0]["created"].as_str().unwrap()));
    assert_eq!(a.unwrap(), b.unwrap(), "created is a date: {row}");
    assert_eq!(nu.json(&repo.root, "iso snapshots | get volumes.0.files"), format!("iso-{t}-snap-base-files"));
}

#[test]
fn init_on_a_branch_and_adopt_from_nu() {
    let repo = TestRepo::new("[threads]\nmax = 2\n[ports]\nblock_size = 5\n");
    let nu = Nu::new(&repo);
    let root = &repo.root;
    repo.git(&["branch", "feature/nu", "dev"]);
    let t = nu.json(root, "iso init --branch feature/nu | get 0");
    assert_eq!((t["branch"].as_str(), t["name"].as_str()), (Some("feature/nu"), Some("feature/nu")), "{t}");
    let err = nu.err(root, "iso init --branch main");
    assert!(err.contains("iso::conflict") && err.contains(&root.display().to_string()), "{err}");

    let wt = root.parent().unwrap().join("nu-wt");
    repo.git(&["worktree", "add", "-q", "-b", "nu-wt", &wt.display().to_string()]);
    let t = nu.json(root, "iso adopt ../nu-wt --no-services");
    assert_eq!((t["name"].as_str(), t["worktree"].as_str()), (Some("nu-wt"), Some(wt.canonicalize().unwrap().to_str().unwrap())), "{t}");
    let err = nu.err(root, "iso adopt .");
    assert!(err.contains("iso::not_adoptable") && err.contains("main checkout"), "{err}");
    assert_eq!(repo.threads().len(), 2);
}
