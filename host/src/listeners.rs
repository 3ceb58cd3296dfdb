//! Which processes listen on which TCP ports (Linux `/proc`), to name the
//! holder of a busy port and for `iso cleanup --kill-ports`.

use std::collections::BTreeMap;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A process listening on a TCP port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    pub port: u16,
    pub pid: u32,
    pub uid: u32,
    /// The process's command line (or its name).
    pub command: String,
    /// Its working directory (`None` when it cannot be read).
    pub cwd: Option<PathBuf>,
    /// Its process group.
    pub pgid: Option<u32>,
}

impl Listener {
    /// Whether the process works inside `dir` (its working directory is
    /// `dir` or below it) or is in process group `group` (an agent run's).
    /// `dir` should be canonical, as /proc reports working directories.
    pub fn belongs_to(&self, dir: &Path, group: Option<u32>) -> bool {
        self.cwd.as_deref().is_some_and(|cwd| cwd.starts_with(dir)) || (group.is_some() && self.pgid == group)
    }
}

impl std::fmt::Display for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "pid {} ({}) on port {}", self.pid, self.command, self.port)
    }
}

/// Listening sockets in `ports`, with the processes that hold them. A
/// socket whose process cannot be seen (another user's, without root) is
/// left out.
pub fn listening(ports: RangeInclusive<u16>) -> Vec<Listener> {
    // inode -> (port, uid)
    let mut sockets: BTreeMap<u64, (u16, u32)> = BTreeMap::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else { continue };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 10 || f[3] != "0A" {
                continue; // not LISTEN
            }
            let Some(port) = f[1].rsplit(':').next().and_then(|p| u16::from_str_radix(p, 16).ok()) else { continue };
            if !ports.contains(&port) {
                continue;
            }
            let (Ok(uid), Ok(inode)) = (f[7].parse::<u32>(), f[9].parse::<u64>()) else { continue };
            sockets.insert(inode, (port, uid));
        }
    }
    if sockets.is_empty() {
        return Vec::new();
    }
    let mut out = Vec::new();
    let Ok(procs) = std::fs::read_dir("/proc") else { return out };
    for p in procs.flatten() {
        let Some(pid) = p.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        let Ok(fds) = std::fs::read_dir(p.path().join("fd")) else { continue };
        for fd in fds.flatten() {
            let Ok(target) = std::fs::read_link(fd.path()) else { continue };
            let t = target.to_string_lossy();
            let Some(inode) = t.strip_prefix("socket:[").and_then(|s| s.strip_suffix(']')).and_then(|s| s.parse::<u64>().ok()) else { continue };
            if let Some(&(port, uid)) = sockets.get(&inode) {
                let cwd = std::fs::read_link(p.path().join("cwd")).ok();
                let l = Listener { port, pid, uid, command: command_of(pid), cwd, pgid: pgid_of(pid) };
                if !out.contains(&l) {
                    out.push(l);
                }
            }
        }
    }
    out.sort_by_key(|l| (l.port, l.pid));
    out
}

/// The process holding `port`, in words, if it can be found.
pub fn owner_of(port: u16) -> Option<String> {
    listening(port..=port).into_iter().next().map(|l| format!("pid {} ({})", l.pid, l.command))
}

fn command_of(pid: u32) -> String {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let words: Vec<String> = cmdline.split(|b| *b == 0).filter(|w| !w.is_empty()).map(|w| String::from_utf8_lossy(w).to_string()).collect();
    if words.is_empty() {
        std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default().trim().to_string()
    } else {
        let s = words.join(" ");
        if s.chars().count() > 80 {
            format!("{}…", s.chars().take(80).collect::<String>())
        } else {
            s
        }
    }
}

/// The process group of `pid` (field 5 of /proc/PID/stat, after the
/// parenthesised command, which may itself contain spaces).
fn pgid_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 1..].split_whitespace().nth(2)?.parse().ok()
}

/// The real user id of this process.
pub fn current_uid() -> u32 {
    // SAFETY: getuid has no preconditions and cannot fail.
    unsafe { libc::getuid() }
}

/// End `l` with SIGTERM, then SIGKILL if it is still there after `grace`.
/// Returns whether it is gone.
pub fn terminate(l: &Listener, grace: Duration) -> bool {
    let pid = l.pid as libc::pid_t;
    // SAFETY: plain signal delivery to a pid we just looked up.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let deadline = Instant::now() + grace;
    let alive = || std::path::Path::new(&format!("/proc/{pid}")).exists() && !is_zombie(pid as u32);
    while Instant::now() < deadline {
        if !alive() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    std::thread::sleep(Duration::from_millis(100));
    !alive()
}

fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).ok().and_then(|s| s.rfind(')').map(|i| s[i + 2..].starts_with('Z'))).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_our_own_listener() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let found = listening(port..=port);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].pid, std::process::id());
        assert_eq!(found[0].uid, current_uid());
        assert!(owner_of(port).unwrap().contains(&std::process::id().to_string()));
        let here = std::env::current_dir().unwrap().canonicalize().unwrap();
        assert_eq!(found[0].cwd.as_deref(), Some(here.as_path()));
        // SAFETY: getpgrp has no preconditions.
        let group = unsafe { libc::getpgrp() } as u32;
        assert_eq!(found[0].pgid, Some(group));
        assert!(found[0].belongs_to(&here, None) && found[0].belongs_to(Path::new("/"), None));
        assert!(found[0].belongs_to(Path::new("/nonexistent"), Some(group)), "by its process group");
        assert!(!found[0].belongs_to(Path::new("/nonexistent"), Some(group + 1)) && !found[0].belongs_to(Path::new("/nonexistent"), None));
    }
}
