//! What one hook call may touch: directories, programs, HTTP hosts, time
//! and memory, resolved from its manifest against a thread. Both engines
//! (WASM and Rhai) enforce the same [`Grants`].

use std::collections::BTreeMap;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::jail::Jail;
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
    /// Where relative paths and commands start (canonical): the thread's
    /// worktree, or, while it does not exist (pre-init, post-cleanup), the
    /// private scratch directory below.
    pub worktree: PathBuf,
    /// The variables the hook (and the commands it runs) see.
    pub env: BTreeMap<String, String>,
    /// A hook whose worktree does not exist gets a fresh directory of its
    /// own (mode 0700 in the system's temporary directory) instead: never
    /// the main checkout, which hooks must not write. It is removed when
    /// the last clone of these grants is dropped, at the end of the call.
    pub scratch: Option<Arc<tempfile::TempDir>>,
}

/// The most output kept from a command's stdout or stderr.
pub const OUTPUT_LIMIT: usize = 1024 * 1024;

/// How long the output of a command that has exited is still read: a
/// process it left behind (killed at once) may hold the pipe a moment.
const PIPE_GRACE: Duration = Duration::from_millis(200);

/// Directories under `$HOME` that hold credentials: no grant may be, hold
/// or lie inside one of them.
const SECRET_DIRS: &[&str] = &[".ssh", ".gnupg", ".aws", ".azure", ".config", ".docker", ".kube", ".netrc", ".git-credentials", ".cargo/credentials.toml"];

/// A grant refused or a limit hit: which one, and its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SandboxError {
    /// An entry of `allow.paths` (or `timeout`, `memory`) cannot be given.
    GrantRefused { grant: String, why: String },
    /// A path outside the granted directories, or written in a read-only one.
    PathDenied { path: String, why: String },
    /// A program not in `allow.exec`.
    ExecDenied { program: String, allowed: Vec<String> },
    /// An allowed program that could not be started or waited for.
    ExecFailed { program: String, why: String },
    /// An HTTP host not in `allow.hosts`.
    HostDenied { host: String },
    /// An HTTP request that failed, or a redirect that was not followed.
    Http { url: String, why: String },
    /// The hook's `timeout`.
    Timeout { limit: Duration },
    /// The hook's `memory`.
    MemoryLimit { limit: u64 },
    /// A cap on what a hook may hand back (`message`, `log`, stdout, …).
    OutputLimit { what: &'static str, limit: usize },
    /// A variable name a hook returned that cannot be a variable.
    BadVariable { name: String, why: String },
    /// A link a hook set that the thread cannot hold (the sentence names the limit).
    BadLink { why: String },
}

impl std::fmt::Display for SandboxError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SandboxError::GrantRefused { grant, why } => write!(f, "{grant}: {why}"),
            SandboxError::PathDenied { path, why } => write!(f, "`{path}` {why}"),
            SandboxError::ExecDenied { program, allowed } if allowed.is_empty() => write!(f, "`{program}` may not be run: this hook's allow.exec is empty"),
            SandboxError::ExecDenied { program, allowed } => write!(f, "`{program}` may not be run: allow.exec lists only {}", allowed.join(", ")),
            SandboxError::ExecFailed { program, why } => write!(f, "cannot run `{program}`: {why}"),
            SandboxError::HostDenied { host } => write!(f, "http_post: {host} is not in this hook's allow.hosts"),
            SandboxError::Http { url, why } => write!(f, "http_post {url}: {why}"),
            SandboxError::Timeout { limit } => write!(f, "timeout: still running after {} ms (its `timeout`); it was stopped", limit.as_millis()),
            SandboxError::MemoryLimit { limit } => write!(
                f,
                "out of memory: it needed more than its limit of {} (its `memory`; raise it in its [[hooks]] entry if that is expected)",
                size(*limit as usize)
            ),
            SandboxError::OutputLimit { what, limit } => write!(f, "output limit: {what} may hold at most {}", size(*limit)),
            SandboxError::BadVariable { name, why } => write!(f, "`{name}` cannot be a variable of .env.thread: {why}"),
            SandboxError::BadLink { why } => write!(f, "set_link: {why}"),
        }
    }
}

impl std::error::Error for SandboxError {}

/// `64 MiB`, `4 KiB`, `100 bytes`.
pub fn size(bytes: usize) -> String {
    match bytes {
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{} MiB", b >> 20),
        b if b >= 1 << 10 && b % (1 << 10) == 0 => format!("{} KiB", b >> 10),
        b => format!("{b} bytes"),
    }
}

/// What a command run through `exec` produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandOutput {
    pub exit_code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Grants {
    /// Resolve `spec`'s grants for a thread whose worktree is `worktree`
    /// in the repository at `repo_root`.
    ///
    /// A relative grant names a directory of the branch: it must resolve
    /// (symlinks included) inside the worktree. An absolute grant comes
    /// from the trusted configuration (the main checkout's iso.toml, the
    /// user's config) and may name a directory elsewhere, but never `/`,
    /// `$HOME` or a directory holding it, the main checkout, or the
    /// credential directories of `$HOME` ([`SECRET_DIRS`]).
    pub fn resolve(spec: &HookSpec, defaults: &HookDefaults, worktree: &Path, repo_root: &Path, env: BTreeMap<String, String>) -> Result<Grants, SandboxError> {
        Grants::resolve_linked(spec, defaults, worktree, repo_root, env, &BTreeMap::new())
    }

    /// [`Grants::resolve`] for a thread with worktrees in linked
    /// repositories (`linked`: name to worktree). A grant with `repo = NAME`
    /// is relative to that worktree and must stay inside it, as a relative
    /// grant must stay inside the primary's; one naming a repository the
    /// thread has no (existing) worktree in grants nothing. Linked
    /// worktrees are never granted by default.
    pub fn resolve_linked(
        spec: &HookSpec,
        defaults: &HookDefaults,
        worktree: &Path,
        repo_root: &Path,
        env: BTreeMap<String, String>,
        linked: &BTreeMap<String, String>,
    ) -> Result<Grants, SandboxError> {
        // Before the worktree exists (pre-init), or once it is gone
        // (post-cleanup), the hook works in a scratch directory of its own:
        // commands need a directory to start in, and the main checkout is
        // not one hooks may write.
        let exists = worktree.is_dir();
        let scratch = if exists {
            None
        } else {
            let dir = tempfile::Builder::new().prefix("iso-hook-").tempdir().map_err(|e| SandboxError::GrantRefused {
                grant: "its working directory".into(),
                why: format!("the worktree does not exist yet, and no scratch directory could be made in {}: {e}", std::env::temp_dir().display()),
            })?;
            Some(Arc::new(dir))
        };
        let worktree = match &scratch {
            Some(d) => d.path().canonicalize().unwrap_or_else(|_| d.path().to_path_buf()),
            None => worktree.canonicalize().unwrap_or_else(|_| worktree.to_path_buf()),
        };
        let repo_root = repo_root.canonicalize().unwrap_or_else(|_| repo_root.to_path_buf());
        let home = dirs::home_dir().and_then(|h| h.canonicalize().ok());
        let refused = |g: &str, why: String| SandboxError::GrantRefused { grant: format!("allow.paths: `{g}`"), why };
        let mut dirs = Vec::new();
        if !exists {
            // The scratch directory stands in for the worktree, whatever
            // `allow.paths` lists: relative grants name directories of a
            // branch that is not checked out, and are skipped below.
            dirs.push(DirGrant { path: worktree.clone(), mode: Mode::ReadWrite });
        }
        match &spec.allow.paths {
            None if !exists => {}
            None => dirs.push(DirGrant { path: worktree.clone(), mode: Mode::ReadWrite }),
            Some(list) => {
                for g in list {
                    let raw = Path::new(g.path());
                    // The directory a relative grant is in: the primary's
                    // worktree, or the named linked repository's.
                    let base = match g.repo() {
                        None if !exists && raw.is_relative() => continue,
                        None => worktree.clone(),
                        Some(name) => {
                            if raw.is_absolute() {
                                return Err(refused(g.path(), format!("is absolute; with repo = \"{name}\" the path is relative to that worktree")));
                            }
                            match linked.get(name).map(Path::new).and_then(|p| p.canonicalize().ok()) {
                                Some(p) => p,
                                None => continue,
                            }
                        }
                    };
                    let joined = if raw.is_absolute() { raw.to_path_buf() } else { base.join(raw) };
                    let path = joined.canonicalize().map_err(|e| refused(g.path(), format!("({}) cannot be opened: {e}", joined.display())))?;
                    if !path.is_dir() {
                        return Err(refused(g.path(), "is not a directory".into()));
                    }
                    if g.repo().is_some() && !path.starts_with(&base) {
                        return Err(refused(
                            g.path(),
                            format!("resolves to {}, outside the thread's worktree {} (through a symlink or `..`)", path.display(), base.display()),
                        ));
                    }
                    let inside_worktree = path.starts_with(&worktree) || g.repo().is_some();
                    if raw.is_relative() && !inside_worktree {
                        return Err(refused(
                            g.path(),
                            format!(
                                "resolves to {}, outside the thread's worktree (through a symlink or `..` in the branch); a relative grant must stay inside the worktree",
                                path.display()
                            ),
                        ));
                    }
                    if path == Path::new("/") || home.as_deref().is_some_and(|h| h.starts_with(&path)) {
                        return Err(refused(g.path(), "would give the hook / or your home directory; grant a narrower directory".into()));
                    }
                    if let Some(secret) =
                        home.as_deref().and_then(|h| SECRET_DIRS.iter().map(|s| h.join(s)).find(|s| s.starts_with(&path) || path.starts_with(s)))
                    {
                        return Err(refused(
                            g.path(),
                            format!("would give the hook {}, where credentials are kept; grant another directory", secret.display()),
                        ));
                    }
                    if !inside_worktree && (path.starts_with(&repo_root) || repo_root.starts_with(&path)) {
                        return Err(refused(
                            g.path(),
                            format!("is (inside) the main checkout {}; hooks only get the thread's worktree, so grant a path inside it", repo_root.display()),
                        ));
                    }
                    dirs.push(DirGrant { path, mode: g.mode() });
                }
            }
        }
        let bad = |grant: &'static str| move |why: String| SandboxError::GrantRefused { grant: grant.to_string(), why };
        let timeout = match spec.timeout.as_ref().or(defaults.timeout.as_ref()) {
            Some(a) => a.duration().map_err(bad("timeout"))?,
            None => DEFAULT_TIMEOUT,
        };
        let memory = match spec.memory.as_ref().or(defaults.memory.as_ref()) {
            Some(a) => a.bytes().map_err(bad("memory"))?,
            None => DEFAULT_MEMORY,
        };
        Ok(Grants { dirs, exec: spec.allow.exec.clone(), hosts: spec.allow.hosts.clone(), timeout, memory, worktree, env, scratch })
    }

    /// The real path a hook means by `path` (relative to the worktree, or
    /// absolute), if a grant covers it, for reading or (with `write`)
    /// writing. Symlinks are resolved before the check, so a link inside
    /// the worktree cannot lead out of it; `..` after the existing part of
    /// the path is refused.
    pub fn check_path(&self, path: &str, write: bool) -> Result<PathBuf, SandboxError> {
        let denied = |why: String| SandboxError::PathDenied { path: path.to_string(), why };
        let raw = Path::new(path);
        let joined = if raw.is_absolute() { raw.to_path_buf() } else { self.worktree.join(raw) };
        let real = real_path(&joined).map_err(|e| denied(format!("cannot be used: {e}")))?;
        let grant = self.dirs.iter().filter(|g| real.starts_with(&g.path)).max_by_key(|g| g.path.as_os_str().len());
        match grant {
            None => Err(denied("is outside the directories this hook may use (allow.paths)".into())),
            Some(g) if write && g.mode == Mode::ReadOnly => Err(denied(format!("is in {}, which this hook may only read", g.path.display()))),
            Some(_) => Ok(real),
        }
    }

    /// Where a file operation on `path` happens: the granted directory that
    /// holds it and the path beneath that directory, to be opened with a
    /// rooted handle ([`crate::rooted::Root`]). [`Grants::check_path`]
    /// decides whether the path may be used at all; the path itself (not
    /// its resolution) must then lie in a grant, so a symlink inside the
    /// worktree that leads into another granted directory is refused too.
    pub fn locate(&self, path: &str, write: bool) -> Result<(PathBuf, PathBuf), SandboxError> {
        self.check_path(path, write)?;
        let denied = |why: &str| SandboxError::PathDenied { path: path.to_string(), why: why.to_string() };
        let raw = Path::new(path);
        if raw.components().any(|c| matches!(c, Component::ParentDir)) {
            return Err(denied("uses `..`: name the file by its path inside a granted directory"));
        }
        let joined = if raw.is_absolute() { raw.to_path_buf() } else { self.worktree.join(raw) };
        let grant = self.dirs.iter().filter(|g| joined.starts_with(&g.path)).max_by_key(|g| g.path.as_os_str().len());
        let Some(g) = grant else {
            return Err(denied("leads through a symlink into another directory; use the directory's own path"));
        };
        let rel = joined.strip_prefix(&g.path).unwrap_or(Path::new("")).to_path_buf();
        if rel.as_os_str().is_empty() {
            return Err(denied("is a granted directory itself, not a file in it"));
        }
        Ok((g.path.clone(), rel))
    }

    /// Whether `program` is in `allow.exec`.
    pub fn check_exec(&self, program: &str) -> Result<(), SandboxError> {
        if self.exec.iter().any(|p| p == program) {
            Ok(())
        } else {
            Err(SandboxError::ExecDenied { program: program.to_string(), allowed: self.exec.clone() })
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
    /// (and the host's `PATH`, so programs are found), contained by a
    /// [`Jail`]: when the command exits, or `deadline` passes, everything it
    /// started is killed, and its output is read no longer than that.
    pub fn run(&self, program: &str, args: &[String], deadline: Instant) -> Result<CommandOutput, SandboxError> {
        self.check_exec(program)?;
        let failed = |why: String| SandboxError::ExecFailed { program: program.to_string(), why };
        let command = |jail: &Jail| {
            let mut cmd = Command::new(program);
            cmd.args(args).current_dir(&self.worktree).env_clear().envs(&self.env).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
            if let Some(path) = std::env::var_os("PATH") {
                cmd.env("PATH", path);
            }
            jail.prepare(&mut cmd);
            cmd
        };
        let mut jail = Jail::new();
        let spawned = match command(&jail).spawn() {
            // The cgroup could not be joined (or the program not started):
            // once more without it.
            Err(_) if jail.has_cgroup() => {
                jail.without_cgroup();
                command(&jail).spawn()
            }
            other => other,
        };
        let mut child = spawned.map_err(|e| failed(format!("cannot start it: {e}")))?;
        jail.started(child.id());
        let mut out = Capture::new(child.stdout.take().ok_or_else(|| failed("no stdout".into()))?);
        let mut err = Capture::new(child.stderr.take().ok_or_else(|| failed("no stderr".into()))?);
        let mut status = None;
        let mut timed_out = false;
        let mut read_until: Option<Instant> = None;
        loop {
            if status.is_none() {
                match child.try_wait() {
                    Ok(Some(s)) => status = Some(s),
                    Ok(None) if Instant::now() >= deadline => {
                        timed_out = true;
                        jail.kill_all();
                        status = child.wait().ok();
                    }
                    Ok(None) => {}
                    Err(e) => {
                        jail.kill_all();
                        let _ = child.wait();
                        return Err(failed(format!("cannot wait for it: {e}")));
                    }
                }
                if status.is_some() {
                    // What it left running goes now: nothing outlives the call.
                    jail.kill_all();
                    read_until = Some(Instant::now() + PIPE_GRACE);
                }
            }
            let reading = !(out.done && err.done);
            if status.is_some() && (!reading || read_until.is_some_and(|t| Instant::now() >= t)) {
                break;
            }
            let wait =
                if status.is_some() { read_until.map_or(Duration::ZERO, |t| t.saturating_duration_since(Instant::now())) } else { Duration::from_millis(10) };
            wait_readable(&[out.open_fd(), err.open_fd()], wait.min(Duration::from_millis(10)));
            out.read_available();
            err.read_available();
        }
        drop(jail);
        let stdout = out.text("stdout");
        let mut stderr = err.text("stderr");
        if timed_out {
            stderr.push_str("\n[iso: ended because the hook's time ran out]");
        }
        let exit_code = if timed_out { -1 } else { status.and_then(|s| s.code()).unwrap_or(-1) };
        Ok(CommandOutput { exit_code, stdout, stderr })
    }
}

/// The output of one stream of a command: read without blocking, the first
/// [`OUTPUT_LIMIT`] bytes kept and the rest counted.
struct Capture<R> {
    pipe: R,
    kept: Vec<u8>,
    cut: usize,
    done: bool,
}

impl<R: Read + AsRawFd> Capture<R> {
    fn new(pipe: R) -> Capture<R> {
        // SAFETY: fcntl on a pipe this process owns.
        unsafe {
            let fd = pipe.as_raw_fd();
            let flags = libc::fcntl(fd, libc::F_GETFL);
            libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK);
        }
        Capture { pipe, kept: Vec::new(), cut: 0, done: false }
    }

    fn read_available(&mut self) {
        let mut buf = [0u8; 64 * 1024];
        while !self.done {
            match self.pipe.read(&mut buf) {
                Ok(0) => self.done = true,
                Ok(n) => {
                    let room = OUTPUT_LIMIT.saturating_sub(self.kept.len()).min(n);
                    self.kept.extend_from_slice(&buf[..room]);
                    self.cut += n - room;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(_) => self.done = true,
            }
        }
    }

    /// The pipe, while it may still have something to read.
    fn open_fd(&self) -> Option<std::os::fd::RawFd> {
        (!self.done).then(|| self.pipe.as_raw_fd())
    }

    fn text(&self, name: &str) -> String {
        let mut s = String::from_utf8_lossy(&self.kept).into_owned();
        if self.cut > 0 {
            s.push_str(&format!("\n[iso: {} bytes of {name} cut: output limit of {} a stream]", self.cut, size(OUTPUT_LIMIT)));
        }
        s
    }
}

/// Wait until one of the open pipes has something to read, at most `wait`.
fn wait_readable(open: &[Option<std::os::fd::RawFd>], wait: Duration) {
    let mut fds: Vec<libc::pollfd> = open.iter().flatten().map(|&fd| libc::pollfd { fd, events: libc::POLLIN, revents: 0 }).collect();
    let ms = wait.as_millis().min(1000) as libc::c_int;
    // SAFETY: `fds` is a valid array of `fds.len()` pollfd; with none it only sleeps.
    unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
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
    fn a_linked_worktree_is_granted_only_by_a_repo_grant_and_stays_rooted_in_it() {
        let (d, root, wt) = setup();
        let fe = d.path().join("frontend/.worktrees/thread-1");
        std::fs::create_dir_all(fe.join("src")).unwrap();
        std::fs::write(fe.join(".env"), "A=1").unwrap();
        std::fs::write(d.path().join("frontend/secret"), "main checkout of the frontend").unwrap();
        let linked: BTreeMap<String, String> = [("frontend".to_string(), fe.display().to_string())].into();
        let fe_env = fe.join(".env").display().to_string();
        // Not granted by default.
        let g =
            Grants::resolve_linked(&spec("event = \"post-up\"\nrhai = \"x.rhai\""), &HookDefaults::default(), &wt, &root, BTreeMap::new(), &linked).unwrap();
        assert!(g.check_path(&fe_env, false).is_err());
        // Granted read-only, then read-write; the primary's is then not granted.
        let s = spec("event = \"post-up\"\nrhai = \"x.rhai\"\nallow.paths = [{ repo = \"frontend\", path = \".\", mode = \"ro\" }]");
        let g = Grants::resolve_linked(&s, &HookDefaults::default(), &wt, &root, BTreeMap::new(), &linked).unwrap();
        assert!(g.check_path(&fe_env, false).is_ok() && g.check_path(&fe_env, true).is_err());
        assert!(g.check_path("frontend/.env", false).is_err());
        let s = spec("event = \"post-up\"\nrhai = \"x.rhai\"\nallow.paths = [\".\", { repo = \"frontend\", path = \"src\" }]");
        let g = Grants::resolve_linked(&s, &HookDefaults::default(), &wt, &root, BTreeMap::new(), &linked).unwrap();
        assert!(g.check_path(&fe.join("src/App.tsx").display().to_string(), true).is_ok());
        assert!(g.check_path(&fe_env, false).is_err(), "only src was granted");
        // A symlink in the linked worktree does not lead out of it: not as a
        // grant, not as a path.
        std::os::unix::fs::symlink("../..", fe.join("up")).unwrap();
        std::os::unix::fs::symlink("/etc", fe.join("src/etc")).unwrap();
        let s = spec("event = \"post-up\"\nrhai = \"x.rhai\"\nallow.paths = [{ repo = \"frontend\", path = \"up\" }]");
        let e = Grants::resolve_linked(&s, &HookDefaults::default(), &wt, &root, BTreeMap::new(), &linked).unwrap_err();
        assert!(e.to_string().contains("outside the thread's worktree"), "{e}");
        assert!(g.check_path(&fe.join("src/etc/passwd").display().to_string(), false).is_err());
        let s = spec("event = \"post-up\"\nrhai = \"x.rhai\"\nallow.paths = [{ repo = \"frontend\", path = \"/etc\" }]");
        assert!(Grants::resolve_linked(&s, &HookDefaults::default(), &wt, &root, BTreeMap::new(), &linked).is_err(), "absolute with repo");
        // A repository the thread has no worktree in grants nothing.
        let s = spec("event = \"post-up\"\nrhai = \"x.rhai\"\nallow.paths = [{ repo = \"mobile\", path = \".\" }]");
        assert!(Grants::resolve_linked(&s, &HookDefaults::default(), &wt, &root, BTreeMap::new(), &linked).unwrap().dirs.is_empty());
    }

    #[test]
    fn without_a_worktree_a_hook_works_in_a_private_scratch_directory() {
        let (_d, root, _wt) = setup();
        let missing = root.join(".worktrees/thread-2");
        let s = spec("event = \"pre-init\"\nrhai = \"x.rhai\"\nallow.exec = [\"sh\"]\nallow.paths = [\"frontend\"]");
        let g = Grants::resolve(&s, &HookDefaults::default(), &missing, &root, BTreeMap::new()).unwrap();
        let scratch = g.worktree.clone();
        assert!(scratch.is_dir() && !scratch.starts_with(&root), "{}", scratch.display());
        assert_eq!(g.dirs, vec![DirGrant { path: scratch.clone(), mode: Mode::ReadWrite }], "relative grants are skipped, the scratch is granted");
        assert!(g.check_path(root.join("secret.txt").to_str().unwrap(), false).is_err());
        let out = g.run("sh", &["-c".into(), "pwd; echo x > made".into()], Instant::now() + Duration::from_secs(10)).unwrap();
        assert_eq!((out.exit_code, out.stdout.trim()), (0, scratch.to_str().unwrap()), "{out:?}");
        assert!(scratch.join("made").is_file());
        let copy = g.clone();
        drop(g);
        assert!(scratch.is_dir(), "kept while a clone of the grants lives");
        drop(copy);
        assert!(!scratch.exists(), "removed with the grants");
    }

    #[test]
    fn grants_refuse_the_main_checkout_home_and_root() {
        let (_d, root, wt) = setup();
        for bad in ["../..", "/", "../../.."] {
            let s = spec(&format!("event = \"post-up\"\nrhai = \"x.rhai\"\nallow.paths = [\"{bad}\"]"));
            let e = Grants::resolve(&s, &HookDefaults::default(), &wt, &root, BTreeMap::new()).unwrap_err();
            assert!(e.to_string().contains("allow.paths"), "{bad}: {e}");
        }
        let s = spec("event = \"post-up\"\nrhai = \"x.rhai\"\nallow.paths = [{ path = \"frontend\", mode = \"ro\" }]");
        let g = Grants::resolve(&s, &HookDefaults::default(), &wt, &root, BTreeMap::new()).unwrap();
        assert!(g.check_path("frontend/.env", false).is_ok());
        assert!(g.check_path("frontend/.env", true).unwrap_err().to_string().contains("only read"));
        assert!(g.check_path("README.md", false).is_err());
    }

    #[test]
    fn exec_and_hosts_are_allowlists() {
        let (_d, root, wt) = setup();
        let s = spec("event = \"post-up\"\nrhai = \"x.rhai\"\nallow.exec = [\"sh\"]\nallow.hosts = [\"127.0.0.1:8080\", \"hooks.example.com\"]");
        let mut env = BTreeMap::new();
        env.insert("THREAD_VAR".to_string(), "42".to_string());
        let g = Grants::resolve(&s, &HookDefaults::default(), &wt, &root, env).unwrap();
        assert!(g.check_exec("rm").unwrap_err().to_string().contains("allow.exec lists only sh"));
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

    fn alive(pid: i32) -> bool {
        // A zombie is dead for our purposes: its state is `Z`.
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.rsplit(')').next().unwrap_or("").trim_start().starts_with('Z'))
    }

    #[test]
    fn nothing_a_command_starts_outlives_it() {
        let (_d, root, wt) = setup();
        let s = spec("event = \"post-up\"\nrhai = \"x.rhai\"\nallow.exec = [\"sh\"]");
        let g = Grants::resolve(&s, &HookDefaults::default(), &wt, &root, BTreeMap::new()).unwrap();
        // A background child keeps the pipes open: reading must not wait for it.
        let started = Instant::now();
        let out = g.run("sh", &["-c".into(), "sleep 60 & echo $!".into()], Instant::now() + Duration::from_secs(20)).unwrap();
        assert!(started.elapsed() < Duration::from_secs(5), "waited {:?} for a background child", started.elapsed());
        let pid: i32 = out.stdout.trim().parse().unwrap();
        assert!(!alive(pid), "the background sleep {pid} outlived the command");
        // At the deadline the whole group goes, not only the shell.
        let started = Instant::now();
        let out = g.run("sh", &["-c".into(), "sleep 60 & echo $!; sleep 60; true".into()], Instant::now() + Duration::from_millis(500)).unwrap();
        assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
        assert_eq!(out.exit_code, -1);
        assert!(out.stderr.contains("time ran out"), "{out:?}");
        let pid: i32 = out.stdout.trim().parse().unwrap();
        assert!(!alive(pid), "the background sleep {pid} outlived the deadline");
    }

    #[test]
    fn output_is_cut_at_its_limit_and_says_so() {
        let (_d, root, wt) = setup();
        let s = spec("event = \"post-up\"\nrhai = \"x.rhai\"\nallow.exec = [\"sh\"]");
        let g = Grants::resolve(&s, &HookDefaults::default(), &wt, &root, BTreeMap::new()).unwrap();
        let out = g.run("sh", &["-c".into(), "head -c 3000000 /dev/zero | tr '\\0' x".into()], Instant::now() + Duration::from_secs(20)).unwrap();
        assert_eq!(out.exit_code, 0, "{}", out.stderr);
        assert!(out.stdout.starts_with(&"x".repeat(OUTPUT_LIMIT)), "{}", out.stdout.len());
        assert!(out.stdout.ends_with("[iso: 1951424 bytes of stdout cut: output limit of 1 MiB a stream]"), "{}", &out.stdout[OUTPUT_LIMIT..]);
    }

    #[test]
    fn relative_grants_stay_in_the_worktree_and_secrets_are_never_granted() {
        let (d, root, wt) = setup();
        let outside = d.path().join("outside");
        std::fs::create_dir_all(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, wt.join("data")).unwrap();
        let s = spec("event = \"post-up\"\nrhai = \"x.rhai\"\nallow.paths = [\"data\"]");
        let e = Grants::resolve(&s, &HookDefaults::default(), &wt, &root, BTreeMap::new()).unwrap_err();
        assert!(e.to_string().contains("outside the thread's worktree"), "{e}");
        // The same directory named by its absolute path (trusted config) is fine.
        let s = spec(&format!("event = \"post-up\"\nrhai = \"x.rhai\"\nallow.paths = [\"{}\"]", outside.display()));
        let g = Grants::resolve(&s, &HookDefaults::default(), &wt, &root, BTreeMap::new()).unwrap();
        assert!(g.check_path(&outside.join("f").display().to_string(), true).is_ok());
        // A path through the worktree's link into that grant resolves there,
        // but a file operation must name it by the grant's own path.
        assert!(g.locate("data/f", true).is_err());
        let (dir, rel) = g.locate(&outside.join("sub/f").display().to_string(), true).unwrap();
        assert_eq!((dir, rel), (outside.canonicalize().unwrap(), PathBuf::from("sub/f")));
        if let Some(home) = dirs::home_dir().filter(|h| h.join(".ssh").is_dir()) {
            let s = spec(&format!("event = \"post-up\"\nrhai = \"x.rhai\"\nallow.paths = [\"{}\"]", home.join(".ssh").display()));
            let e = Grants::resolve(&s, &HookDefaults::default(), &wt, &root, BTreeMap::new()).unwrap_err();
            assert!(e.to_string().contains("credentials"), "{e}");
        }
    }

    #[test]
    fn leaving_the_process_group_does_not_escape_a_cgroup() {
        if super::super::jail::Jail::new().containment() != super::super::jail::Containment::Cgroup {
            eprintln!("no pids cgroup here: only the process group is killed");
            return;
        }
        let (_d, root, wt) = setup();
        let s = spec("event = \"post-up\"\nrhai = \"x.rhai\"\nallow.exec = [\"sh\"]");
        let g = Grants::resolve(&s, &HookDefaults::default(), &wt, &root, BTreeMap::new()).unwrap();
        let out = g.run("sh", &["-c".into(), "setsid sleep 60 & echo $!".into()], Instant::now() + Duration::from_secs(20)).unwrap();
        let pid: i32 = out.stdout.trim().parse().unwrap_or_else(|_| panic!("{out:?}"));
        assert!(!alive(pid), "the setsid sleep {pid} outlived the command");
    }
}
