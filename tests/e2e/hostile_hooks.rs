//! Hostile hooks (issue 11): the attacks of the issue as real Rhai scripts
//! and WASM plugins (plugins/testing/hostile) run by the real `iso`:
//! commands that outlive their time or fork, floods of output, blocking
//! WASI calls, bad variable names, writes through planted symlinks,
//! redirects out of `allow.hosts`, and grants that lead out of the
//! worktree. Each must be stopped, named, and leave nothing behind.
//!
//! Ports: every test repository has 4 blocks of 5 (`threads.max = 3`).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::hooks::{assert_blocked, iso, iso_ok, receiver, repo, run_hostile, thread, wasm};
use crate::support::TestRepo;

/// Whether iso can put `exec`'d programs in a pids cgroup here (what
/// host/src/hooks/jail.rs looks for: a writable v1 pids hierarchy, as on
/// CI, which runs as root).
fn cgroup_containment() -> bool {
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    own.lines().filter_map(|l| l.splitn(3, ':').nth(2).filter(|_| l.split(':').nth(1).is_some_and(|c| c.split(',').any(|c| c == "pids")))).any(|p| {
        let dir = Path::new("/sys/fs/cgroup/pids").join(p.trim_start_matches('/'));
        dir.is_dir() && unsafe { libc::geteuid() } == 0
    })
}

/// Pids of running processes whose command line is exactly `args`.
fn processes(args: &[&str]) -> Vec<i32> {
    let want: Vec<u8> = args.iter().flat_map(|a| a.bytes().chain([0])).collect();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c == want))
        .filter(|pid| std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.rsplit(')').next().unwrap_or("").trim_start().starts_with('Z')))
        .collect()
}

/// A repository with `scripts` (event, file, source, extra manifest lines)
/// committed as Rhai hooks and the given extra `[[hooks]]` TOML, with
/// thread 1 initialised; returns it and the thread's worktree.
fn setup(scripts: &[(&str, &str, &str, &str)], extra: &str) -> (TestRepo, PathBuf) {
    let repo = repo("");
    let mut cfg = repo.read("iso.toml");
    for (event, file, src, more) in scripts {
        repo.write(&format!("hooks/{file}"), src);
        cfg.push_str(&format!("\n[[hooks]]\nevent = \"{event}\"\nrhai = \"hooks/{file}\"\n{more}\n"));
    }
    cfg.push_str(extra);
    repo.write("iso.toml", &cfg);
    repo.git(&["add", "."]);
    repo.git(&["commit", "-q", "-m", "hooks"]);
    iso_ok(&repo, &["init", "target"]);
    let wt = PathBuf::from(thread(&repo, 1)["worktree"].as_str().unwrap().to_string());
    (repo, wt)
}

#[test]
fn commands_end_with_their_hook_and_leave_nothing_running() {
    let forks = "exec 2>forks.err; n=0; while [ $n -lt 600 ]; do sleep 3031 & n=$((n+1)); done; echo started $n";
    let scripts = [
        ("h-sleep", "sleep.rhai", "exec(\"sh\", [\"-c\", \"sleep 60; true\"]);\nmessage(\"ESCAPED\");", "timeout = \"2s\"\nallow.exec = [\"sh\"]"),
        (
            "h-background",
            "bg.rhai",
            "exec(\"sh\", [\"-c\", \"sleep 3061 & echo $! > bg.pid; setsid sleep 3062 & echo $! > setsid.pid\"]);",
            "allow.exec = [\"sh\"]",
        ),
        ("h-forks", "forks.rhai", &format!("let r = exec(\"sh\", [\"-c\", \"{forks}\"]);"), "timeout = \"30s\"\nallow.exec = [\"sh\"]"),
    ];
    let (repo, wt) = setup(&scripts, "");

    // `sleep 60` in an allowed `sh` ends with the hook's 2 s, not after 60.
    let started = Instant::now();
    assert_blocked(&repo, "h-sleep", "timeout: still running after 2000 ms");
    assert!(started.elapsed() < Duration::from_secs(45), "the hook held iso (the sleep is 60 s) for {:?}", started.elapsed());
    assert!(processes(&["sleep", "60"]).into_iter().all(|p| !is_ours(p, &wt)), "a `sleep 60` of the hook is still running");

    // What a command leaves running in the background is killed when it exits.
    let (code, text) = run_hostile(&repo, "h-background");
    assert_eq!(code, 0, "{text}");
    let pid: i32 = std::fs::read_to_string(wt.join("bg.pid")).unwrap().trim().parse().unwrap();
    assert!(processes(&["sleep", "3061"]).is_empty(), "the background sleep {pid} outlived its command");
    if cgroup_containment() {
        // Leaving the process group does not help inside a cgroup.
        assert!(processes(&["sleep", "3062"]).is_empty(), "`setsid sleep` outlived its command");
    }
    for p in processes(&["sleep", "3062"]) {
        unsafe { libc::kill(p, libc::SIGKILL) };
    }

    // A fork loop: capped by the cgroup (where there is one), and nothing survives.
    let (code, text) = run_hostile(&repo, "h-forks");
    assert_eq!(code, 0, "{text}");
    let err = std::fs::read_to_string(wt.join("forks.err")).unwrap_or_default();
    if cgroup_containment() {
        assert!(err.to_ascii_lowercase().contains("fork"), "600 background sleeps were not capped: {err}");
    }
    assert!(processes(&["sleep", "3031"]).is_empty(), "sleeps of the fork loop outlived the hook");
}

/// Whether process `pid` runs in `dir` (to tell the hook's `sleep 60` from others').
fn is_ours(pid: i32, dir: &Path) -> bool {
    std::fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|c| c.starts_with(dir))
}

#[test]
fn output_floods_stop_at_their_caps() {
    let h = wasm("iso_hostile.wasm");
    let kib = "let s = \"xxxxxxxxxxxxxxxx\"; while s.len() < 1024 { s += s; }";
    let scripts = [
        ("r-flood", "flood.rhai", "let s = \"xxxxxxxxxxxxxxxx\"; while s.len() < 32 * 1024 * 1024 { s += s; }\nfor i in 0..20 { message(s); }", ""),
        ("r-many", "many.rhai", &format!("{kib}\nfor i in 0..100 {{ message(s); }}"), ""),
        ("r-print", "print.rhai", &format!("{kib}\nfor i in 0..2000 {{ print(s); }}"), ""),
        ("r-log", "log.rhai", "let s = \"xxxxxxxxxxxxxxxx\"; while s.len() < 32 * 1024 { s += s; }\nlog(s);", ""),
        ("r-env", "env.rhai", "let s = \"xxxxxxxxxxxxxxxx\"; while s.len() < 1024 * 1024 { s += s; }\nenv_set(\"BIG\", s);", ""),
        ("r-string", "string.rhai", "let s = \"xxxxxxxxxxxxxxxx\"; loop { s += s; }", ""),
        ("r-string-small", "string-small.rhai", "let s = \"xxxxxxxxxxxxxxxx\"; loop { s += s; }", "memory = \"8MiB\""),
    ];
    let extra = format!(
        r#"
[[hooks]]
event = "w-flood"
wasm = "{h}"
config = {{ mode = "flood", mib = 1, count = 20 }}

[[hooks]]
event = "w-flood-log"
wasm = "{h}"
config = {{ mode = "flood", mib = 1, count = 3, via = "log" }}

[[hooks]]
event = "w-flood-stdout"
wasm = "{h}"
config = {{ mode = "flood", mib = 1, count = 3, via = "stdout" }}
"#
    );
    let (repo, _wt) = setup(&scripts, &extra);
    assert_blocked(&repo, "r-flood", "output limit: one message may hold at most 16 KiB");
    assert_blocked(&repo, "r-many", "output limit: the messages of one hook call may hold at most 64 KiB");
    assert_blocked(&repo, "r-print", "output limit: the log of one hook call may hold at most 1 MiB");
    assert_blocked(&repo, "r-log", "output limit: one log line may hold at most 16 KiB");
    assert_blocked(&repo, "r-env", "output limit: one variable may hold at most 256 KiB");
    // The Rhai string limit names the limit that was really hit.
    assert_blocked(&repo, "r-string", "grew past its limit of 64 MiB (the most iso lets a Rhai string hold)");
    assert_blocked(&repo, "r-string-small", "grew past its limit of 8 MiB (the hook's `memory`)");
    assert_blocked(&repo, "w-flood", "output limit: one message may hold at most 16 KiB");
    assert_blocked(&repo, "w-flood-log", "output limit: one log line may hold at most 16 KiB");
    let (code, text) = run_hostile(&repo, "w-flood-stdout");
    assert_ne!(code, 0, "{text}");
    assert!(!text.contains("ESCAPED") && text.len() < 256 * 1024, "{} bytes: {}", text.len(), &text[..text.len().min(2000)]);

    // Nothing of it reached the registry, and listing stays cheap.
    let reg = std::fs::metadata(repo.path(".git/iso/registry.toml")).unwrap().len();
    assert!(reg < 256 * 1024, "registry.toml grew to {reg} bytes");
    iso_ok(&repo, &["ls"]);
}

#[test]
fn blocking_wasi_calls_end_at_the_timeout_and_bad_names_are_refused() {
    let h = wasm("iso_hostile.wasm");
    let extra = format!(
        r#"
[[hooks]]
event = "w-sleep"
wasm = "{h}"
timeout = "1s"
config = {{ mode = "sleep", seconds = 60 }}

[[hooks]]
event = "w-badenv"
wasm = "{h}"
config = {{ mode = "badenv", name = "BAD NAME" }}

[[hooks]]
event = "w-badenv-eq"
wasm = "{h}"
config = {{ mode = "badenv", name = "A=B" }}
"#
    );
    let (repo, _wt) = setup(&[("r-badenv", "badenv.rhai", "env_set(\"X;touch /tmp/x\", \"1\");\nmessage(\"ESCAPED\");", "")], &extra);
    let started = Instant::now();
    assert_blocked(&repo, "w-sleep", "timeout: still running after 1000 ms");
    assert!(started.elapsed() < Duration::from_secs(45), "a 60 s WASI sleep held iso for {:?}", started.elapsed());
    assert_blocked(&repo, "w-badenv", "`BAD NAME` cannot be a variable of .env.thread");
    assert_blocked(&repo, "w-badenv-eq", "cannot be a variable");
    assert_blocked(&repo, "r-badenv", "cannot be a variable");
}

#[test]
fn planted_symlinks_are_not_written_through() {
    let h = wasm("iso_hostile.wasm");
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().join("target.txt");
    std::fs::write(&target, "original").unwrap();
    let fresh = outside.path().join("fresh.txt");
    let extra = format!(
        r#"
[[hooks]]
event = "w-planted"
wasm = "{h}"
config = {{ mode = "write", path = "planted" }}

[[hooks]]
event = "w-dangling"
wasm = "{h}"
config = {{ mode = "write", path = "dangling" }}
"#
    );
    let scripts = [
        ("r-planted", "planted.rhai", "write_file(\"planted\", \"x\");\nmessage(\"ESCAPED\");", ""),
        ("r-dangling", "dangling.rhai", "write_file(\"dangling\", \"x\");\nmessage(\"ESCAPED\");", ""),
        ("r-inner", "inner.rhai", "write_file(\"inner\", \"x\");\nmessage(\"ESCAPED\");", ""),
        ("r-through", "through.rhai", "write_file(\"linkdir/new.txt\", \"x\");\nmessage(\"ESCAPED\");", ""),
    ];
    let (repo, wt) = setup(&scripts, &extra);
    // What a branch could carry: links out of the worktree, a dangling
    // one, a link to a file of the worktree, a link to a directory in it.
    std::os::unix::fs::symlink(&target, wt.join("planted")).unwrap();
    std::os::unix::fs::symlink(&fresh, wt.join("dangling")).unwrap();
    std::os::unix::fs::symlink("README.md", wt.join("inner")).unwrap();
    std::fs::create_dir(wt.join("real")).unwrap();
    std::os::unix::fs::symlink("real", wt.join("linkdir")).unwrap();
    let readme = std::fs::read_to_string(wt.join("README.md")).unwrap();

    assert_blocked(&repo, "w-planted", "blocked");
    assert_blocked(&repo, "w-dangling", "blocked");
    assert_blocked(&repo, "r-planted", "outside the directories");
    assert_blocked(&repo, "r-dangling", "dangling symlink");
    assert_blocked(&repo, "r-inner", "is a symlink: it came from the branch");
    assert_blocked(&repo, "r-through", "is a symlink");
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "original");
    assert!(!fresh.exists(), "a write went through the dangling link");
    assert_eq!(std::fs::read_to_string(wt.join("README.md")).unwrap(), readme);
    assert!(!wt.join("real/new.txt").exists());
}

/// An HTTP server on 127.0.0.1 that answers every request with a 302 to
/// `location`.
fn redirector(location: String) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut s) = conn else { continue };
            let mut r = BufReader::new(s.try_clone().unwrap());
            let (mut len, mut chunked) = (0usize, false);
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                let lower = line.to_ascii_lowercase();
                if let Some(v) = lower.strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
                chunked |= lower.starts_with("transfer-encoding:") && lower.contains("chunked");
            }
            // Read the whole request before answering: a reply sent while the
            // client still writes its (chunked) body resets the connection.
            if chunked {
                read_chunks(&mut r);
            } else {
                let mut body = vec![0; len];
                let _ = r.read_exact(&mut body);
            }
            let _ = write!(s, "HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 5\r\nConnection: close\r\n\r\nmoved");
        }
    });
    port
}

/// Consumes a chunked body: size lines, each chunk with its CRLF, up to the empty last chunk.
fn read_chunks(r: &mut impl BufRead) {
    loop {
        let mut size = String::new();
        if r.read_line(&mut size).unwrap_or(0) == 0 {
            return;
        }
        let n = usize::from_str_radix(size.trim().split(';').next().unwrap_or(""), 16).unwrap_or(0);
        let mut chunk = vec![0; n + 2];
        if r.read_exact(&mut chunk).is_err() || n == 0 {
            return;
        }
    }
}

#[test]
fn redirects_are_not_followed_and_grants_stay_beneath_the_worktree() {
    let rx = receiver(200);
    let port = redirector(rx.url.clone());
    let url = format!("http://127.0.0.1:{port}/hook");
    let h = wasm("iso_hostile.wasm");
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(home.path().join(".ssh")).unwrap();
    let outside = tempfile::tempdir().unwrap();
    let extra = format!(
        r#"
[[hooks]]
event = "w-redirect"
wasm = "{h}"
allow.hosts = ["127.0.0.1:{port}"]
config = {{ mode = "http", url = "{url}" }}

[[hooks]]
event = "g-ssh"
wasm = "{h}"
allow.paths = ["{ssh}"]

[[hooks]]
event = "g-link"
wasm = "{h}"
allow.paths = ["data"]
"#,
        ssh = home.path().join(".ssh").display()
    );
    // Both hosts allowed: even then the redirect is not followed.
    let script = format!("let r = http_post(\"{url}\", \"secret\");\nif r.status != 302 {{ throw `followed: ${{r.status}}`; }}\nmessage(`status ${{r.status}} to ${{r.location}}`);");
    let (repo, wt) = setup(&[("r-redirect", "redirect.rhai", &script, &format!("allow.hosts = [\"127.0.0.1:{port}\", \"127.0.0.1:{}\"]", rx.port))], &extra);
    std::os::unix::fs::symlink(outside.path(), wt.join("data")).unwrap();

    let out = iso_ok(&repo, &["hooks", "run", "r-redirect", "1"]);
    assert!(out.contains("status 302 to http://127.0.0.1"), "{out}");
    let (code, text) = run_hostile(&repo, "w-redirect");
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("302"), "wasi:http answered with the redirect itself: {text}");
    assert!(rx.bodies.recv_timeout(Duration::from_millis(300)).is_err(), "the redirect was followed");

    let mut c = repo.iso_cmd(&["hooks", "run", "g-ssh", "1"]);
    c.env("HOME", home.path()).env("ISO_CACHE_DIR", crate::hooks::cache_dir());
    let o = c.output().unwrap();
    let text = crate::support::stderr(&o);
    assert!(!o.status.success() && text.contains("where credentials are kept"), "{text}");
    assert_blocked(&repo, "g-link", "outside the thread's worktree");
    let _ = iso(&repo, &["ls"]);
}

/// Before the worktree exists a hook works in a private scratch directory:
/// `exec` starts there (it used to fail: the worktree it started in did not
/// exist), relative files land there and are removed with it, and the main
/// checkout stays out of reach.
#[test]
fn pre_init_hooks_run_commands_in_a_scratch_directory_never_the_main_checkout() {
    let out = tempfile::tempdir().unwrap();
    let report = out.path().join("pwd.txt");
    let script = format!(
        r#"let r = exec("sh", ["-c", "echo made > by-sh.txt && pwd"]);
if r.code != 0 {{ throw `sh failed: ${{r.stderr}}`; }}
write_file("by-rhai.txt", "x");
if !file_exists("by-sh.txt") {{ throw "the command and the script disagree on the working directory"; }}
write_file("{}", r.stdout);
"#,
        report.display()
    );
    let repo = repo("");
    let mut cfg = repo.read("iso.toml");
    cfg.push_str(&format!(
        "\n[[hooks]]\nevent = \"pre-init\"\nrhai = \"hooks/pre.rhai\"\nallow.exec = [\"sh\"]\nallow.paths = [\"{}\"]\n",
        out.path().display()
    ));
    repo.write("hooks/pre.rhai", &script);
    repo.write("iso.toml", &cfg);
    repo.git(&["add", "."]);
    repo.git(&["commit", "-q", "-m", "hooks"]);
    iso_ok(&repo, &["init", "scratch"]);
    let pwd = PathBuf::from(std::fs::read_to_string(&report).expect("the pre-init hook ran its command").trim());
    let root = repo.path("").canonicalize().unwrap();
    assert!(!pwd.starts_with(&root), "the command ran in the main checkout: {}", pwd.display());
    assert!(!pwd.exists(), "the scratch directory {} was left behind", pwd.display());
    for f in ["by-sh.txt", "by-rhai.txt"] {
        assert!(!root.join(f).exists(), "{f} landed in the main checkout");
    }

    // Writing into the main checkout by its absolute path is refused, and
    // the refusal fails the init.
    repo.write("hooks/pre.rhai", "write_file(thread.repo_path + \"/planted.txt\", \"x\");\n");
    let o = iso(&repo, &["init", "planter"]);
    let text = crate::support::stderr(&o);
    assert!(!o.status.success() && text.contains("outside the directories this hook may use"), "{text}");
    assert!(!root.join("planted.txt").exists(), "a pre-init hook wrote into the main checkout");
}
