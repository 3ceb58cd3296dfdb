//! Helpers shared by the end-to-end suites: real temporary git repositories
//! and the real `iso` binary.
//!
//! Every test repository gets its own port window from [`ports`] and its
//! own state directory, so tests running in parallel never meet on a port
//! or in iso's per-user state.

pub mod docker;
pub mod ports;
pub mod server;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

pub const ISO: &str = env!("CARGO_BIN_EXE_iso");

/// A temporary git repository with a few commits, branches `main` and
/// `dev`, a gitignored `.env`, and an `iso.toml` giving it its own ports.
pub struct TestRepo {
    dir: tempfile::TempDir,
    pub root: PathBuf,
    /// `ports.base` in its iso.toml: the start of its port window.
    pub port_base: u16,
    /// The length of the window, when it is this repository's own (from
    /// [`TestRepo::new`]): given back when the repository is dropped.
    own_window: Option<u32>,
}

impl Drop for TestRepo {
    fn drop(&mut self) {
        if let Some(len) = self.own_window {
            ports::release(self.port_base, len);
        }
    }
}

impl TestRepo {
    /// A repository whose iso.toml is `extra_toml` with `ports.base` set
    /// to the start of a port window of its own, as long as the
    /// configuration's blocks need ([`ports::span`]).
    pub fn new(extra_toml: &str) -> TestRepo {
        let len = ports::span(extra_toml);
        let mut repo = TestRepo::at(ports::window(len), extra_toml);
        repo.own_window = Some(len);
        repo
    }

    /// A repository in iso's default window (base 10000), for tests whose
    /// expected values are iso's default ports; `turn` keeps other such
    /// tests out while it lives.
    pub fn with_iso_defaults(turn: &ports::IsoDefaults, extra_toml: &str) -> TestRepo {
        TestRepo::at(turn.base, extra_toml)
    }

    /// A repository at `port_base`, for tests where several repositories
    /// share one window on purpose (the machine-wide port ledger); the
    /// window must come from [`ports::window`].
    pub fn at(port_base: u16, extra_toml: &str) -> TestRepo {
        let dir = tempfile::Builder::new().prefix("iso-e2e-").tempdir().expect("tempdir");
        let root = dir.path().join("app");
        std::fs::create_dir(&root).unwrap();
        let root = root.canonicalize().unwrap();
        let repo = TestRepo { dir, root, port_base, own_window: None };
        repo.git(&["init", "-q", "-b", "main"]);
        repo.write("README.md", "# app\n");
        repo.write("src/main.rs", "fn main() {}\n");
        repo.write(".gitignore", ".env\n");
        let toml = if extra_toml.contains("[ports]\n") {
            extra_toml.replacen("[ports]\n", &format!("[ports]\nbase = {port_base}\n"), 1)
        } else {
            format!("[ports]\nbase = {port_base}\n{extra_toml}")
        };
        repo.write("iso.toml", &toml);
        repo.git(&["add", "."]);
        repo.git(&["commit", "-q", "-m", "initial"]);
        repo.git(&["branch", "dev"]);
        repo.write("src/lib.rs", "pub fn two() -> u8 { 2 }\n");
        repo.git(&["add", "."]);
        repo.git(&["commit", "-q", "-m", "second"]);
        repo.write(".env", "SECRET=local\n");
        repo
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    pub fn write(&self, rel: &str, text: &str) {
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"))
    }

    /// Run git in the repository; panics on failure.
    pub fn git(&self, args: &[&str]) -> String {
        git_in(&self.root, args)
    }

    /// A `Command` for the real iso binary in this repository, isolated from
    /// the user's own configuration and state.
    pub fn iso_cmd(&self, args: &[&str]) -> Command {
        self.iso_cmd_at(&self.root, args)
    }

    /// Like [`TestRepo::iso_cmd`], run in `dir` (a worktree, or a directory
    /// outside any repository), with this test's state directory.
    pub fn iso_cmd_at(&self, dir: &Path, args: &[&str]) -> Command {
        let mut cmd = Command::new(ISO);
        cmd.args(args)
            .current_dir(dir)
            .env("ISO_USER_CONFIG", "")
            .env("NO_COLOR", "1")
            .env_remove("ISO_PORTS_BASE")
            // Never talk to a server the developer is connected to.
            .env("ISO_REMOTE_FILE", "")
            .env_remove("ISO_API_URL")
            .env_remove("ISO_FAULT_PAUSE")
            .envs(self.state_env());
        cmd
    }

    /// `ISO_STATE_DIR` and `XDG_STATE_HOME` for everything this test runs:
    /// a state directory of its own (iso's per-user state, such as a port
    /// ledger, never reaches the user's or another test's).
    pub fn state_env(&self) -> [(&'static str, PathBuf); 2] {
        let home = self.dir.path().join("state");
        [("XDG_STATE_HOME", home.clone()), ("ISO_STATE_DIR", home.join("iso"))]
    }

    pub fn iso(&self, args: &[&str]) -> Output {
        self.iso_cmd(args).output().expect("run iso")
    }

    /// Run iso and return stdout; panics with stderr if it fails.
    pub fn iso_ok(&self, args: &[&str]) -> String {
        let out = self.iso(args);
        assert!(out.status.success(), "iso {args:?} failed ({:?}):\n{}", out.status.code(), stderr(&out));
        String::from_utf8(out.stdout).unwrap()
    }

    /// `iso <args> --json` parsed.
    pub fn iso_json(&self, args: &[&str]) -> serde_json::Value {
        let mut a = args.to_vec();
        a.push("--json");
        serde_json::from_str(&self.iso_ok(&a)).expect("valid JSON")
    }

    /// A second git repository `name` beside this one (`../name` from its
    /// root, for `[repos]`), with branches `main` and `dev`, a gitignored
    /// `.env` and no iso.toml. It is in this repository's temporary
    /// directory, so it goes when this is dropped.
    pub fn sibling(&self, name: &str) -> PathBuf {
        let root = self.root.parent().unwrap().join(name);
        std::fs::create_dir(&root).unwrap();
        let root = root.canonicalize().unwrap();
        git_in(&root, &["init", "-q", "-b", "main"]);
        std::fs::write(root.join("package.json"), "{}\n").unwrap();
        std::fs::write(root.join(".gitignore"), ".env\nnode_modules\n").unwrap();
        git_in(&root, &["add", "."]);
        git_in(&root, &["commit", "-q", "-m", "initial"]);
        git_in(&root, &["branch", "dev"]);
        std::fs::write(root.join(".env"), "VITE_BACKEND_API_URL=http://localhost:3000\n").unwrap();
        root
    }

    /// The live threads as JSON.
    pub fn threads(&self) -> Vec<serde_json::Value> {
        self.iso_json(&["list"]).as_array().unwrap().clone()
    }
}

pub fn git_in(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "test")
        .env("GIT_AUTHOR_EMAIL", "test@example.invalid")
        .env("GIT_COMMITTER_NAME", "test")
        .env("GIT_COMMITTER_EMAIL", "test@example.invalid")
        .output()
        .expect("run git");
    assert!(out.status.success(), "git {args:?} failed: {}", stderr(&out));
    String::from_utf8(out.stdout).unwrap()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// Polls `f` every 50 ms until it holds. `limit` only bounds a test that
/// would otherwise hang, so it is at least a minute: a loaded 2-core CI
/// machine runs these steps ten times slower than an idle one.
pub fn wait_for(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit.max(Duration::from_secs(60));
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
