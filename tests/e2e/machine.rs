//! One machine, many repositories: the per-user port ledger shared by
//! several repositories (one state directory for all of them, as for one
//! user), concurrent inits across them, a lost ledger, a vanished
//! repository, and thread names as users type them.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::support::{ports, stderr, TestRepo};

/// Blocks of 10 ports, at most 5 threads per repository.
const TOML: &str = "[threads]\nmax = 5\n[ports]\nblock_size = 10\n";

/// A state directory shared by several repositories (one user).
struct Machine {
    state: tempfile::TempDir,
}

impl Machine {
    fn new() -> Machine {
        Machine { state: tempfile::Builder::new().prefix("iso-e2e-state-").tempdir().unwrap() }
    }

    fn dir(&self) -> PathBuf {
        self.state.path().join("iso")
    }

    fn cmd(&self, repo: &TestRepo, args: &[&str]) -> Command {
        let mut cmd = repo.iso_cmd(args);
        cmd.env("ISO_STATE_DIR", self.dir()).env("XDG_STATE_HOME", self.state.path());
        cmd
    }

    fn ok(&self, repo: &TestRepo, args: &[&str]) -> String {
        let out = self.cmd(repo, args).output().unwrap();
        assert!(out.status.success(), "iso {args:?} failed ({:?}):\n{}", out.status.code(), stderr(&out));
        String::from_utf8(out.stdout).unwrap()
    }

    fn json(&self, repo: &TestRepo, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.push("--json");
        serde_json::from_str(&self.ok(repo, &a)).unwrap()
    }

    /// `iso doctor [--fix] --json`: its findings, whatever its exit code.
    fn doctor(&self, repo: &TestRepo, args: &[&str]) -> Vec<Value> {
        let out = self.cmd(repo, &[&["doctor"], args, &["--json"]].concat()).output().unwrap();
        serde_json::from_slice::<Value>(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", stderr(&out))).as_array().unwrap().clone()
    }

    fn leases(&self, repo: &TestRepo) -> Vec<Value> {
        self.json(repo, &["ports", "--all"]).as_array().unwrap().clone()
    }
}

fn block(v: &Value) -> (u64, u64) {
    let b = if v["port_block"].is_object() { &v["port_block"] } else { &v["block"] };
    (b["start"].as_u64().unwrap(), b["end"].as_u64().unwrap())
}

fn assert_disjoint(blocks: &[(u64, u64)]) {
    let mut sorted = blocks.to_vec();
    sorted.sort();
    for w in sorted.windows(2) {
        assert!(w[0].1 < w[1].0, "blocks overlap: {:?} and {:?} (all: {sorted:?})", w[0], w[1]);
    }
}

fn same_path(a: &Value, b: &Path) -> bool {
    a.as_str().is_some_and(|a| Path::new(a) == b)
}

#[test]
fn repositories_on_one_machine_never_share_a_block_even_when_inits_race() {
    // One window for three repositories with the same ports.base: their
    // thread 1s all want the same block.
    let base = ports::window(16 * 10);
    let machine = Machine::new();
    let repos: Vec<TestRepo> = (0..3).map(|_| TestRepo::at(base, TOML)).collect();

    // 3 repositories × 5 inits, all at once, each its own process.
    let children: Vec<_> = repos
        .iter()
        .flat_map(|repo| (1..=5).map(move |n| (repo, n)))
        .map(|(repo, n)| machine.cmd(repo, &["init", &format!("t{n}"), "--no-services"]).stdout(std::process::Stdio::null()).spawn().unwrap())
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "a concurrent init failed:\n{}", stderr(&out));
    }

    let mut all = Vec::new();
    for repo in &repos {
        let threads = repo.threads();
        let ids: BTreeSet<u64> = threads.iter().map(|t| t["id"].as_u64().unwrap()).collect();
        assert_eq!(ids, (1..=5).collect(), "ids stay per repository");
        all.extend(threads.iter().map(block));
    }
    assert_eq!(all.len(), 15);
    assert_disjoint(&all);
    assert!(all.iter().all(|&(s, e)| s >= u64::from(base) + 10 && e < u64::from(base) + 160), "all inside the window: {all:?}");

    // The machine-wide view: every lease, none stale, each naming its repository.
    let leases = machine.leases(&repos[0]);
    assert_eq!(leases.len(), 15, "{leases:?}");
    assert!(leases.iter().all(|l| l["stale"].is_null()), "{leases:?}");
    assert_eq!(leases.iter().filter(|l| l["this_repo"] == true).count(), 5);
    for repo in &repos {
        assert_eq!(leases.iter().filter(|l| same_path(&l["repo"], &repo.root)).count(), 5);
    }
    let ids: BTreeSet<&str> = leases.iter().map(|l| l["repo_id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 3, "each repository has its own id");
    let table = machine.ok(&repos[1], &["ports", "--all"]);
    assert!(table.contains("(this one)") && table.contains(&repos[2].root.display().to_string()), "{table}");

    // Cleanup releases the lease; the block goes to the next init, of any repository.
    machine.ok(&repos[0], &["cleanup", "t3"]);
    assert_eq!(machine.leases(&repos[1]).len(), 14);
    machine.ok(&repos[0], &["cleanup", "t4"]);
    let t5 = repos[1].threads().into_iter().find(|t| t["name"] == "t5").unwrap()["id"].clone();
    machine.ok(&repos[1], &["cleanup", "t5"]);
    machine.ok(&repos[1], &["init", "again", "--no-services"]);
    let again = repos[1].threads().into_iter().find(|t| t["name"] == "again").unwrap();
    assert_eq!(again["id"], t5, "the id is the lowest free one of its repository");
    let taken: Vec<(u64, u64)> = repos.iter().flat_map(|r| r.threads()).map(|t| block(&t)).collect();
    assert_disjoint(&taken);

    // A deleted ledger is rebuilt from the repositories it knew.
    let before: BTreeSet<(u64, u64)> = machine.leases(&repos[2]).iter().map(block).collect();
    std::fs::remove_file(machine.dir().join("ports.json")).unwrap();
    let rebuilt: BTreeSet<(u64, u64)> = machine.leases(&repos[2]).iter().map(block).collect();
    assert_eq!(rebuilt, before, "rebuilt as it was");
    std::fs::remove_file(machine.dir().join("ports.json")).unwrap();
    machine.ok(&repos[0], &["init", "after-loss", "--no-services"]);
    let taken: Vec<(u64, u64)> = repos.iter().flat_map(|r| r.threads()).map(|t| block(&t)).collect();
    assert_disjoint(&taken);
    assert_eq!(machine.leases(&repos[0]).len(), taken.len(), "every live thread has its lease");
}

#[test]
fn a_repository_that_is_gone_leaves_stale_leases_that_doctor_reclaims() {
    let base = ports::window(16 * 10);
    let machine = Machine::new();
    let a = TestRepo::at(base, TOML);
    let b = TestRepo::at(base, TOML);
    machine.ok(&a, &["init", "one", "--no-services"]);
    // b's thread 1 would get a's block: it is told why and gets the next one.
    let out = machine.cmd(&b, &["init", "two", "--no-services"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    let a_block = block(&a.threads()[0]);
    assert!(err.contains(&format!("ports {}-{} are held by thread 1 (one) of {}", a_block.0, a_block.1, a.root.display())), "{err}");
    assert_eq!(block(&b.threads()[0]).0, a_block.0 + 10);

    // Repository b disappears without cleaning up (deleted, re-cloned).
    std::fs::remove_dir_all(&b.root).unwrap();
    let leases = machine.leases(&a);
    let stale: Vec<&Value> = leases.iter().filter(|l| !l["stale"].is_null()).collect();
    assert_eq!(stale.len(), 1, "{leases:?}");
    assert!(stale[0]["stale"].as_str().unwrap().contains("repository gone"), "{stale:?}");

    // doctor reports it and changes nothing; --fix reclaims it.
    let text = Value::from(machine.doctor(&a, &[])).to_string();
    assert!(text.contains("stale") && text.contains(&b.root.display().to_string()), "{text}");
    assert_eq!(machine.leases(&a).len(), 2, "doctor without --fix changes nothing");
    let fixed = machine.doctor(&a, &["--fix"]);
    assert!(fixed.iter().all(|f| f["fixed"] == true), "{fixed:?}");
    let leases = machine.leases(&a);
    assert_eq!(leases.len(), 1, "{leases:?}");
    assert!(same_path(&leases[0]["repo"], &a.root) && leases[0]["stale"].is_null());
    // The freed block is anyone's again.
    let c = TestRepo::at(base, TOML);
    machine.ok(&c, &["init", "three", "--no-services"]);
    assert_eq!(block(&c.threads()[0]).0, a_block.0 + 10);
    assert_eq!(machine.doctor(&a, &[]), Vec::<Value>::new(), "clean afterwards");
}

#[test]
fn threads_are_found_by_the_name_as_typed_and_all_digit_names_are_refused() {
    let repo = TestRepo::new("[threads]\nmax = 2\n[ports]\nblock_size = 10\n");
    repo.iso_ok(&["init", "raceA", "--no-services"]);
    assert_eq!(repo.threads()[0]["name"], "raceA");
    assert_eq!(repo.iso_json(&["status", "raceA"])["name"], "raceA", "found as typed");
    assert_eq!(repo.iso_json(&["status", "racea"])["name"], "raceA", "and by its ASCII form");
    let out = repo.iso(&["init", "123", "--no-services"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("all digits") && err.contains("t123"), "{err}");
    repo.iso_ok(&["cleanup", "RaceA"]);
    assert!(repo.threads().is_empty());
}

#[test]
fn init_after_a_lost_registry_skips_the_lost_threads_ids_and_ports_until_doctor_re_registers_them() {
    let base = ports::window(6 * 10);
    let machine = Machine::new();
    let repo = TestRepo::at(base, TOML);
    machine.ok(&repo, &["init", "keep", "--no-services"]);
    let kept = repo.threads()[0].clone();
    // The registry is lost; thread 1's worktree and kept record are not.
    // A plain directory where thread 2's worktree would go (a leftover).
    std::fs::remove_file(repo.path(".git/iso/registry.toml")).unwrap();
    std::fs::create_dir_all(repo.path(".worktrees/thread-2")).unwrap();
    assert!(repo.threads().is_empty());

    let out = machine.cmd(&repo, &["init", "next", "--no-services"]).output().unwrap();
    let err = stderr(&out);
    assert!(out.status.success(), "init collided with a lost thread: {err}");
    let b = block(&kept);
    assert!(
        err.contains(&format!("thread 1 (keep, ports {}-{}) is missing from the registry", b.0, b.1)) && err.contains("`iso doctor --fix` re-registers it"),
        "{err}"
    );
    assert!(err.contains("thread-2 exists but no thread has it: id 2 is skipped"), "{err}");
    let next = repo.threads()[0].clone();
    assert_eq!(next["id"], 3, "ids 1 (lost thread) and 2 (occupied directory) are skipped");
    assert_disjoint(&[b, block(&next)]);
    // The lost thread's lease is kept, beside the new one's.
    let leases: BTreeSet<(u64, u64)> = machine.leases(&repo).iter().map(block).collect();
    assert_eq!(leases, [b, block(&next)].into(), "the lost thread's lease was dropped");
    // Its name is still its own.
    let out = machine.cmd(&repo, &["init", "keep", "--no-services"]).output().unwrap();
    assert!(!out.status.success(), "a second thread named like the lost one was made");

    // doctor --fix re-registers it as it was, next to the new one.
    let fixed = machine.doctor(&repo, &["--fix"]);
    assert!(fixed.iter().all(|f| f["fixed"] == true), "{fixed:?}");
    let threads = repo.threads();
    assert_eq!(threads.iter().map(|t| t["id"].as_u64().unwrap()).collect::<Vec<_>>(), [1, 3]);
    assert_eq!(threads[0]["port_block"], kept["port_block"]);
    assert_eq!(machine.leases(&repo).len(), 2);
    assert_eq!(machine.doctor(&repo, &[]), Vec::<Value>::new(), "clean afterwards");
}
