//! Helpers shared by the end-to-end suites: real temporary git repositories
//! and the real `iso` binary.
//!
//! Every test repository gets its own port base (pass a distinct one per
//! test) so suites running in parallel never meet on a port.

pub mod docker;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const ISO: &str = env!("CARGO_BIN_EXE_iso");

/// A temporary git repository with a few commits, branches `main` and
/// `dev`, a gitignored `.env`, and an `iso.toml` giving it its own ports.
pub struct TestRepo {
    _dir: tempfile::TempDir,
    pub root: PathBuf,
}

impl TestRepo {
    /// A repository whose iso.toml sets `ports.base = port_base` plus
    /// `extra_toml`.
    pub fn new(port_base: u16, extra_toml: &str) -> TestRepo {
        let dir = tempfile::Builder::new().prefix("iso-e2e-").tempdir().expect("tempdir");
        let root = dir.path().join("app");
        std::fs::create_dir(&root).unwrap();
        let root = root.canonicalize().unwrap();
        let repo = TestRepo { _dir: dir, root };
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
    /// the user's own configuration.
    pub fn iso_cmd(&self, args: &[&str]) -> Command {
        iso_cmd_in(&self.root, args)
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

    /// The live threads as JSON.
    pub fn threads(&self) -> Vec<serde_json::Value> {
        self.iso_json(&["list"]).as_array().unwrap().clone()
    }
}

pub fn iso_cmd_in(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(ISO);
    cmd.args(args)
        .current_dir(dir)
        .env("ISO_USER_CONFIG", "")
        .env("NO_COLOR", "1")
        .env_remove("ISO_PORTS_BASE")
        // Never talk to a server the developer is connected to.
        .env("ISO_REMOTE_FILE", "")
        .env_remove("ISO_API_URL")
        .env_remove("ISO_FAULT_PAUSE");
    cmd
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
