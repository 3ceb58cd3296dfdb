//! What one hook call may touch: directories, programs, HTTP hosts, time
//! and memory, resolved from its manifest against a thread. Both engines
//! (WASM and Rhai) enforce the same [`Grants`].

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::config::hooks::{HookDefaults, HookSpec, Mode, DEFAULT_MEMORY, DEFAULT_TIMEOUT};

/// A directory a hook may open, canonical (symlinks resolved).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirGrant {
    pub path: PathBuf,
    pub mode: Mode,
}

/// Everything one hook call is allowed.
#[derive(Debug, Clone)]
pub struct Grants {
    pub dirs: Vec<DirGrant>,
    pub exec: Vec<String>,
    pub hosts: Vec<String>,
    pub timeout: Duration,
    pub memory: u64,
    /// The thread's worktree (canonical): relative paths and commands start here.
    pub worktree: PathBuf,
    /// The variables the hook (and the commands it runs) see.
    pub env: BTreeMap<String, String>,
}

/// The most output kept from a command's stdout or stderr.
pub const OUTPUT_LIMIT: usize = 1024 * 1024;

/// What a command run through `exec` produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandOutput {
    pub exit_code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Grants {
    /// Resolve `spec`'s grants for a thread whose worktree is `worktree`
    /// in the repository at `repo_root`. Refuses grants that would expose
    /// the main checkout, `$HOME` or `/`.
    pub fn resolve(spec: &HookSpec, defaults: &HookDefaults, worktree: &Path, repo_root: &Path, env: BTreeMap<String, String>) -> Result<Grants, String> {
        // Before the worktree exists (pre-init) a hook gets no directory.
        let exists = worktree.is_dir();
        let worktree = worktree.canonicalize().unwrap_or_else(|_| worktree.to_path_buf());
        let repo_root = repo_root.canonicalize().unwrap_or_else(|_| repo_root.to_path_buf());
        let home = dirs::home_dir().and_then(|h| h.canonicalize().ok());
        let mut dirs = Vec::new();
        match &spec.allow.paths {
            None if !exists => {}
            None => dirs.push(DirGrant { path: worktree.clone(), mode: Mode::ReadWrite }),
            Some(list) => {
                for g in list {
                    let raw = Path::new(g.path());
                    if !exists && raw.is_relative() {
                        continue;
                    }
                    let joined = if raw.is_absolute() { raw.to_path_buf() } else { worktree.join(raw) };
                    let path = joined.canonicalize().map_err(|e| format!("allow.paths: `{}` ({}) cannot be opened: {e}", g.path(), joined.display()))?;
                    if !path.is_dir() {
                        return Err(format!("allow.paths: `{}` is not a directory", g.path()));
                    }
                    let inside_worktree = path.starts_with(&worktree);
                    if path == Path::new("/") || home.as_deref().is_some_and(|h| h.starts_with(&path)) {
                        return Err(format!("allow.paths: `{}` would give the hook / or your home directory; grant a narrower directory", g.path()));
                    }
                    if !inside_worktree && (path.starts_with(&repo_root) || repo_root.starts_with(&path)) {
                        return Err(format!(
                            "allow.paths: `{}` is (inside) the main checkout {}; hooks only get the thread's worktree, so grant a path inside it",
                            g.path(),
                            repo_root.display()
                        ));
                    }
                    dirs.push(DirGrant { path, mode: g.mode() });
                }
            }
        }
        let timeout = match spec.timeout.as_ref().or(defaults.timeout.as_ref()) {
            Some(a) => a.duration()?,
            None => DEFAULT_TIMEOUT,
        };
        let memory = match spec.memory.as_ref().or(defaults.memory.as_ref()) {
            Some(a) => a.bytes()?,
            None => DEFAULT_MEMORY,
        };
        Ok(Grants { dirs, exec: spec.allow.exec.clone(), hosts: spec.allow.hosts.clone(), timeout, memory, worktree, env })
    }

    /// The real path a hook means by `path` (relative to the worktree, or
    /// absolute), if a grant covers it, for reading or (with `write`)
    /// writing. Symlinks are resolved before the check, so a link inside
    /// the worktree cannot lead out of it; `..` after the existing part of
    /// the path is refused.
    pub fn check_path(&self, path: &str, write: bool) -> Result<PathBuf, String> {
        let raw = Path::new(path);
        let joined = if raw.is_absolute() { raw.to_path_buf() } else { self.worktree.join(raw) };
        let real = real_path(&joined).map_err(|e| format!("`{path}`: {e}"))?;
        let grant = self.dirs.iter().filter(|g| real.starts_with(&g.path)).max_by_key(|g| g.path.as_os_str().len());
        match grant {
            None => Err(format!("`{path}` is outside the directories this hook may use (allow.paths)")),
            Some(g) if write && g.mode == Mode::ReadOnly => Err(format!("`{path}` is in {}, which this hook may only read", g.path.display())),
            Some(_) => Ok(real),
        }
    }

    /// Whether `program` is in `allow.exec`.
    pub fn check_exec(&self, program: &str) -> Result<(), String> {
        if self.exec.iter().any(|p| p == program) {
            Ok(())
        } else if self.exec.is_empty() {
            Err(format!("`{program}` may not be run: this hook's allow.exec is empty"))
        } else {
            Err(format!("`{program}` may not be run: allow.exec lists only {}", self.exec.join(", ")))
        }
    }

    /// Whether `host` (with `port`) is in `allow.hosts`: an entry without a
    /// port allows every port of that host.
    pub fn allows_host(&self, host: &str, port: Option<u16>) -> bool {
        let host = host.trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase();
        self.hosts.iter().any(|entry| {
            let entry = entry.to_ascii_lowercase();
            match entry.rsplit_once(':').filter(|(_, p)| p.chars().all(|c| c.is_ascii_digit())) {
                Some((h, p)) => h.trim_start_matches('[').trim_end_matches(']') == host && port.is_some_and(|port| p.parse() == Ok(port)),
                None => entry == host,
            }
        })
    }

    /// Run an allowed command in the worktree with the thread's variables
    /// (and the host's `PATH`, so programs are found), ending it when
    /// `deadline` passes.
    pub fn run(&self, program: &str, args: &[String], deadline: Instant) -> Result<CommandOutput, String> {
        self.check_exec(program)?;
        let mut cmd = Command::new(program);
        cmd.args(args).current_dir(&self.worktree).env_clear().envs(&self.env).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        if let Some(path) = std::env::var_os("PATH") {
            cmd.env("PATH", path);
        }
        let mut child = cmd.spawn().map_err(|e| format!("cannot start `{program}`: {e}"))?;
        let out = child.stdout.take().map(|s| std::thread::spawn(move || read_capped(s)));
        let err = child.stderr.take().map(|s| std::thread::spawn(move || read_capped(s)));
        let mut timed_out = false;
        let status = loop {
            match child.try_wait() {
                Ok(Some(s)) => break Some(s),
                Ok(None) if Instant::now() >= deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    timed_out = true;
                    break None;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(5)),
                Err(e) => return Err(format!("waiting for `{program}`: {e}")),
            }
        };
        let stdout = out.and_then(|h| h.join().ok()).unwrap_or_default();
        let mut stderr = err.and_then(|h| h.join().ok()).unwrap_or_default();
        if timed_out {
            stderr.push_str("\n[iso: ended because the hook's time ran out]");
        }
        Ok(CommandOutput { exit_code: status.and_then(|s| s.code()).unwrap_or(-1), stdout, stderr })
    }
}

fn read_capped(mut r: impl Read) -> String {
    let mut buf = Vec::new();
    let _ = r.by_ref().take(OUTPUT_LIMIT as u64).read_to_end(&mut buf);
    // Drain the rest so the child is not blocked on a full pipe.
    let _ = std::io::copy(&mut r, &mut std::io::sink());
    String::from_utf8_lossy(&buf).into_owned()
}

/// `path` with every symlink in its existing part resolved. The part that
/// does not exist yet may not contain `..`; a dangling symlink is refused
/// (writing through it would land wherever it points).
fn real_path(path: &Path) -> Result<PathBuf, String> {
    let mut existing = path.to_path_buf();
    let mut rest: Vec<std::ffi::OsString> = Vec::new();
    loop {
        match std::fs::symlink_metadata(&existing) {
            Ok(_) => break,
            Err(_) => {
                let Some(name) = existing.file_name().map(|n| n.to_os_string()) else {
                    return Err("no part of the path exists".into());
                };
                rest.push(name);
                if !existing.pop() {
                    return Err("no part of the path exists".into());
                }
            }
        }
    }
    // `file_name` is None for a trailing `..`: refuse those outright.
    if path.components().skip(existing.components().count()).any(|c| matches!(c, Component::ParentDir)) {
        return Err("`..` in a path that does not exist".into());
    }
    let mut real = existing.canonicalize().map_err(|_| "it is (or passes through) a dangling symlink".to_string())?;
    for name in rest.into_iter().rev() {
        real.push(name);
    }
    Ok(real)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::hooks::HookSpec;

    fn spec(src: &str) -> HookSpec {
        toml::from_str(src).unwrap()
    }

    fn setup() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("repo");
        let wt = root.join(".worktrees/thread-1");
        std::fs::create_dir_all(wt.join("frontend")).unwrap();
        std::fs::write(root.join("secret.txt"), "main checkout").unwrap();
        std::fs::write(wt.join("frontend/.env"), "A=1").unwrap();
        (dir, root, wt)
    }

    #[test]
    fn default_grant_is_the_worktree_and_nothing_else() {
        let (_d, root, wt) = setup();
        let g = Grants::resolve(&spec("event = \"post-up\"\nrhai = \"x.rhai\""), &HookDefaults::default(), &wt, &root, BTreeMap::new()).unwrap();
        assert!(g.check_path("frontend/.env", true).is_ok());
        assert!(g.check_path("new/file.txt", true).is_ok());
        assert!(g.check_path("/etc/passwd", false).is_err());
        assert!(g.check_path("../../secret.txt", false).is_err());
        assert!(g.check_path(root.join("secret.txt").to_str().unwrap(), false).is_err());
        assert!(g.check_path("nothere/../../../secret.txt", false).is_err());
        std::os::unix::fs::symlink("/etc", wt.join("etc-link")).unwrap();
        assert!(g.check_path("etc-link/passwd", false).is_err());
        std::os::unix::fs::symlink("/tmp/iso-no-such-target", wt.join("dangling")).unwrap();
        assert!(g.check_path("dangling", true).is_err());
    }

    #[test]
    fn grants_refuse_the_main_checkout_home_and_root() {
        let (_d, root, wt) = setup();
        for bad in ["../..", "/", "../../.."] {
            let s = spec(&format!("event = \"post-up\"\nrhai = \"x.rhai\"\nallow.paths = [\"{bad}\"]"));
            let e = Grants::resolve(&s, &HookDefaults::default(), &wt, &root, BTreeMap::new()).unwrap_err();
            assert!(e.contains("allow.paths"), "{bad}: {e}");
        }
        let s = spec("event = \"post-up\"\nrhai = \"x.rhai\"\nallow.paths = [{ path = \"frontend\", mode = \"ro\" }]");
        let g = Grants::resolve(&s, &HookDefaults::default(), &wt, &root, BTreeMap::new()).unwrap();
        assert!(g.check_path("frontend/.env", false).is_ok());
        assert!(g.check_path("frontend/.env", true).unwrap_err().contains("only read"));
        assert!(g.check_path("README.md", false).is_err());
    }

    #[test]
    fn exec_and_hosts_are_allowlists() {
        let (_d, root, wt) = setup();
        let s = spec("event = \"post-up\"\nrhai = \"x.rhai\"\nallow.exec = [\"sh\"]\nallow.hosts = [\"127.0.0.1:8080\", \"hooks.example.com\"]");
        let mut env = BTreeMap::new();
        env.insert("THREAD_VAR".to_string(), "42".to_string());
        let g = Grants::resolve(&s, &HookDefaults::default(), &wt, &root, env).unwrap();
        assert!(g.check_exec("rm").unwrap_err().contains("allow.exec lists only sh"));
        let out = g.run("sh", &["-c".into(), "echo $THREAD_VAR; pwd; echo oops >&2; exit 3".into()], Instant::now() + Duration::from_secs(10)).unwrap();
        assert_eq!(out.exit_code, 3);
        assert!(out.stdout.starts_with("42\n"), "{out:?}");
        assert!(out.stdout.contains("thread-1"), "{out:?}");
        assert_eq!(out.stderr.trim(), "oops");
        let slow = g.run("sh", &["-c".into(), "sleep 5".into()], Instant::now() + Duration::from_millis(200)).unwrap();
        assert_eq!(slow.exit_code, -1);
        assert!(g.allows_host("127.0.0.1", Some(8080)));
        assert!(!g.allows_host("127.0.0.1", Some(8081)));
        assert!(g.allows_host("HOOKS.example.com", Some(443)));
        assert!(!g.allows_host("evil.example.com", Some(443)));
    }
}
