//! Containment for the programs a hook runs through `exec`: each runs in
//! its own process group and, where the machine allows it, in a pids
//! cgroup of its own with a cap on its processes; at the end of the call
//! (its deadline, or as soon as the program itself exits) everything in
//! the group and the cgroup is killed, so nothing a hook started outlives
//! it.
//!
//! What holds where (docs/hooks.md, "Limits"):
//! - a pids cgroup (v1 `/sys/fs/cgroup/pids`, or v2 where the `pids`
//!   controller is delegated to iso's cgroup) when iso can create one
//!   (root, or a delegated v2 subtree): at most [`MAX_PROCESSES`] tasks,
//!   so a fork loop stops there, and a process that leaves the process
//!   group (`setsid`) is still found and killed;
//! - otherwise, for a normal user, `RLIMIT_NPROC` set to the user's current
//!   tasks plus [`MAX_PROCESSES`]: a fork loop stops there, but a process
//!   that calls `setsid` escapes the kill at the end;
//! - otherwise (root without a writable cgroup) only the process group: a
//!   fork loop is not capped (root ignores `RLIMIT_NPROC`), only ended at
//!   the deadline.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The most tasks (processes and threads) the programs of one `exec` may
/// have at once.
pub const MAX_PROCESSES: u64 = 256;

/// How the programs of one `exec` are contained (for docs, tests and the log).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Containment {
    /// A pids cgroup: capped and all killed at the end.
    Cgroup,
    /// `RLIMIT_NPROC` (normal users): capped; the process group killed at the end.
    Rlimit,
    /// Only the process group, killed at the end.
    ProcessGroup,
}

/// The containment of one `exec`, set up before the program starts.
pub struct Jail {
    cgroup: Option<Cgroup>,
    nproc: Option<u64>,
    pgid: Option<i32>,
}

impl Jail {
    /// The strongest containment this process can set up.
    pub fn new() -> Jail {
        let cgroup = Cgroup::create().ok();
        // Root ignores RLIMIT_NPROC, so it is only worth setting for others.
        // SAFETY: getuid has no preconditions.
        let nproc = (cgroup.is_none() && unsafe { libc::getuid() } != 0).then(|| user_tasks() + MAX_PROCESSES);
        Jail { cgroup, nproc, pgid: None }
    }

    pub fn containment(&self) -> Containment {
        match (&self.cgroup, self.nproc) {
            (Some(_), _) => Containment::Cgroup,
            (None, Some(_)) => Containment::Rlimit,
            (None, None) => Containment::ProcessGroup,
        }
    }

    /// Make `cmd` start in its own process group, inside the cgroup, under
    /// the process limit. If the child cannot join the cgroup, starting it
    /// fails: call [`Jail::without_cgroup`] and prepare a new command.
    pub fn prepare(&self, cmd: &mut Command) {
        cmd.process_group(0);
        let procs_fd = self.cgroup.as_ref().map(|c| c.procs.as_raw_fd());
        let nproc = self.nproc;
        // SAFETY: the closure only makes async-signal-safe calls (write,
        // setrlimit) on values prepared before the fork; it allocates nothing
        // unless it fails.
        unsafe {
            cmd.pre_exec(move || {
                // "0" moves the writing process (the child, before exec).
                if procs_fd.is_some_and(|fd| libc::write(fd, b"0".as_ptr().cast(), 1) != 1) {
                    return Err(std::io::Error::last_os_error());
                }
                if let Some(n) = nproc {
                    let lim = libc::rlimit { rlim_cur: n as libc::rlim_t, rlim_max: n as libc::rlim_t };
                    libc::setrlimit(libc::RLIMIT_NPROC, &lim);
                }
                Ok(())
            });
        }
    }

    /// Whether the jail has a cgroup (a failed start may be retried without).
    pub fn has_cgroup(&self) -> bool {
        self.cgroup.is_some()
    }

    /// Give up the cgroup (the child could not join it).
    pub fn without_cgroup(&mut self) {
        self.cgroup = None;
        // SAFETY: getuid has no preconditions.
        if unsafe { libc::getuid() } != 0 {
            self.nproc = Some(user_tasks() + MAX_PROCESSES);
        }
    }

    /// Note the started child: its pid is its process group's id.
    pub fn started(&mut self, pid: u32) {
        self.pgid = Some(pid as i32);
    }

    /// Kill everything the program started: its process group, and every
    /// task in the cgroup (repeatedly, since a fork loop races the kill).
    pub fn kill_all(&mut self) {
        if let Some(pgid) = self.pgid {
            // SAFETY: kill has no memory preconditions; a negative pid is a group.
            unsafe { libc::kill(-pgid, libc::SIGKILL) };
        }
        if let Some(c) = &self.cgroup {
            for _ in 0..200 {
                let pids = c.pids();
                if pids.is_empty() {
                    break;
                }
                for p in pids {
                    // SAFETY: as above.
                    unsafe { libc::kill(p, libc::SIGKILL) };
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    }
}

impl Default for Jail {
    fn default() -> Self {
        Jail::new()
    }
}

impl Drop for Jail {
    fn drop(&mut self) {
        self.kill_all();
    }
}

/// A pids cgroup of one `exec`, removed when dropped.
struct Cgroup {
    dir: PathBuf,
    procs: File,
}

impl Cgroup {
    fn create() -> std::io::Result<Cgroup> {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let parent = pids_parent().ok_or_else(|| std::io::Error::other("no writable pids cgroup"))?;
        let dir = parent.join(format!("iso-hook-{}-{}", std::process::id(), SEQ.fetch_add(1, Ordering::Relaxed)));
        std::fs::create_dir(&dir)?;
        let setup = || -> std::io::Result<File> {
            std::fs::write(dir.join("pids.max"), MAX_PROCESSES.to_string())?;
            std::fs::OpenOptions::new().write(true).open(dir.join("cgroup.procs"))
        };
        match setup() {
            Ok(procs) => Ok(Cgroup { dir, procs }),
            Err(e) => {
                let _ = std::fs::remove_dir(&dir);
                Err(e)
            }
        }
    }

    fn pids(&self) -> Vec<i32> {
        std::fs::read_to_string(self.dir.join("cgroup.procs")).unwrap_or_default().lines().filter_map(|l| l.trim().parse().ok()).collect()
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        // The kernel refuses while a task is still exiting: try a few times.
        for _ in 0..50 {
            if std::fs::remove_dir(&self.dir).is_ok() || !self.dir.exists() {
                return;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

/// The cgroup directory under which iso may create a pids cgroup: iso's
/// own pids cgroup (v1), or its v2 cgroup when `pids` is delegated to
/// its children.
fn pids_parent() -> Option<PathBuf> {
    let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let mut v2 = None;
    for line in own.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        let rel = path.trim_start_matches('/');
        if controllers.split(',').any(|c| c == "pids") {
            let dir = Path::new("/sys/fs/cgroup/pids").join(rel);
            if writable_dir(&dir) {
                return Some(dir);
            }
        } else if controllers.is_empty() {
            v2 = Some(rel.to_string());
        }
    }
    let rel = v2?;
    for root in ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"] {
        let dir = Path::new(root).join(&rel);
        let delegated = std::fs::read_to_string(dir.join("cgroup.subtree_control")).is_ok_and(|s| s.split_whitespace().any(|c| c == "pids"));
        if delegated && writable_dir(&dir) {
            return Some(dir);
        }
    }
    None
}

fn writable_dir(dir: &Path) -> bool {
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()) else { return false };
    // SAFETY: `c` is a valid C string.
    dir.is_dir() && unsafe { libc::access(c.as_ptr(), libc::W_OK) } == 0
}

/// How many tasks (threads) the current user has: RLIMIT_NPROC counts them.
fn user_tasks() -> u64 {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: getuid has no preconditions.
    let uid = unsafe { libc::getuid() };
    let Ok(entries) = std::fs::read_dir("/proc") else { return 0 };
    let mut n = 0;
    for e in entries.flatten() {
        if !e.file_name().to_string_lossy().bytes().all(|b| b.is_ascii_digit()) || !e.metadata().is_ok_and(|m| m.uid() == uid) {
            continue;
        }
        let status = std::fs::read_to_string(e.path().join("status")).unwrap_or_default();
        n += status.lines().find_map(|l| l.strip_prefix("Threads:")).and_then(|t| t.trim().parse::<u64>().ok()).unwrap_or(1);
    }
    n
}
