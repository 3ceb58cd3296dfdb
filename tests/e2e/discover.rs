//! End-to-end tests of discovery: a real `iso serve` (127.0.0.1, port 0)
//! records itself, `iso remote discover` finds it in the repository and
//! from anywhere (`--all`), and a killed server's records are removed.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::support::server::Server;
use crate::support::{stderr, stdout, TestRepo};
use serde_json::Value;

fn repo() -> TestRepo {
    TestRepo::new("[ports]\nblock_size = 10\n[threads]\nmax = 4\n")
}

/// The repository's discovery record.
fn record_file(repo: &TestRepo) -> PathBuf {
    repo.root.join(".git/iso/server.json")
}

/// The per-user index entry of a server.
fn index_file(repo: &TestRepo, pid: u32) -> PathBuf {
    repo.state_env()[1].1.join("servers").join(format!("{pid}.json"))
}

/// iso in `dir` with a connection file of this test's own.
fn iso_at(repo: &TestRepo, dir: &Path, remote_file: &Path, args: &[&str]) -> Output {
    repo.iso_cmd_at(dir, args).env("ISO_REMOTE_FILE", remote_file).env_remove("ISO_API_TOKEN").output().unwrap()
}

fn assert_gone(path: &Path) {
    assert!(!path.exists(), "{} is still there", path.display());
}

#[test]
fn discover_in_the_repository_connects_and_remote_commands_work() {
    let repo = repo();
    let mut s = Server::start(&repo, None);
    let home = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let remote_file = home.path().join("remote.json");

    // The record: URL, pid, where the token is; never the token itself.
    let record: Value = serde_json::from_str(&std::fs::read_to_string(record_file(&repo)).unwrap()).unwrap();
    assert_eq!(record["url"], s.url.as_str());
    assert_eq!(record["pid"], s.pid());
    assert_eq!(record["token"]["from"], "file", "{record}");
    let token_file = PathBuf::from(record["token"]["path"].as_str().unwrap());
    let token = std::fs::read_to_string(&token_file).unwrap().trim().to_string();
    assert_eq!(token.len(), 32);
    assert_eq!(std::fs::metadata(&token_file).unwrap().permissions().mode() & 0o077, 0, "the token file is the user's only");
    for f in [record_file(&repo), index_file(&repo, s.pid())] {
        let text = std::fs::read_to_string(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        assert!(!text.contains(&token), "{} holds the token", f.display());
    }

    let out = iso_at(&repo, &repo.root, &remote_file, &["remote", "discover"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains(&format!("connected to {}", s.url)), "{}", stdout(&out));
    assert_eq!(std::fs::metadata(&remote_file).unwrap().permissions().mode() & 0o777, 0o600);
    assert!(!stderr(&out).contains("warning"), "{}", stderr(&out));
    // ISO_API_URL would win over what discover saves: it says so.
    let out = repo.iso_cmd(&["remote", "discover"]).env("ISO_REMOTE_FILE", &remote_file).env("ISO_API_URL", "http://127.0.0.1:9").output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("ISO_API_URL=http://127.0.0.1:9 is set and overrides this connection"), "{}", stderr(&out));

    // Through the server, from a directory that is no repository at all.
    let out = iso_at(&repo, elsewhere.path(), &remote_file, &["init", "alpha", "--no-services"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = iso_at(&repo, elsewhere.path(), &remote_file, &["ls"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("alpha"), "{}", stdout(&out));
    assert_eq!(repo.threads().len(), 1, "the thread is the repository's");

    // A graceful stop removes the records (and the token file).
    let pid = s.pid();
    s.stop();
    assert!(!record_file(&repo).exists() && !index_file(&repo, pid).exists() && !token_file.exists());
}

#[test]
fn discover_all_lists_the_servers_of_this_user_from_anywhere() {
    let repo = repo();
    let s = Server::start(&repo, Some("a-configured-token-0123"));
    let home = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let remote_file = home.path().join("remote.json");
    let record: Value = serde_json::from_str(&std::fs::read_to_string(record_file(&repo)).unwrap()).unwrap();
    assert_eq!((record["token"]["from"].as_str(), record["token"]["var"].as_str()), (Some("env"), Some("ISO_API_TOKEN")));

    for args in [&["remote", "discover", "--json"][..], &["remote", "discover", "--all", "--json"]] {
        let out = iso_at(&repo, elsewhere.path(), &remote_file, args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        let listed: Value = serde_json::from_str(&stdout(&out)).unwrap();
        let listed = listed.as_array().unwrap();
        assert_eq!(listed.len(), 1, "{listed:?}");
        assert_eq!((listed[0]["url"].as_str(), listed[0]["pid"].as_u64()), (Some(s.url.as_str()), Some(s.pid() as u64)));
        assert_eq!(listed[0]["root"].as_str().map(PathBuf::from), Some(repo.root.canonicalize().unwrap()));
    }
    let out = iso_at(&repo, elsewhere.path(), &remote_file, &["remote", "discover", "--all"]);
    assert!(stdout(&out).contains(&s.url) && stdout(&out).contains(&repo.root.canonicalize().unwrap().display().to_string()), "{}", stdout(&out));
    assert!(!remote_file.exists(), "listing connects to nothing");

    // In the repository, the token is where the record says: not set here, a config error.
    let out = iso_at(&repo, &repo.root, &remote_file, &["remote", "discover"]);
    assert_eq!(out.status.code(), Some(78), "{}", stderr(&out));
    assert!(stderr(&out).contains("ISO_API_TOKEN"), "{}", stderr(&out));
    let out = repo.iso_cmd(&["remote", "discover"]).env("ISO_REMOTE_FILE", &remote_file).env("ISO_API_TOKEN", "a-configured-token-0123").output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let saved = std::fs::read_to_string(&remote_file).unwrap();
    assert!(!saved.contains("a-configured-token"), "an environment token stays in the environment: {saved}");
}

#[test]
fn a_killed_servers_records_are_ignored_and_removed() {
    let repo = repo();
    let mut s = Server::start(&repo, None);
    let home = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let remote_file = home.path().join("remote.json");
    let pid = s.pid();
    assert!(record_file(&repo).exists() && index_file(&repo, pid).exists());
    s.kill();
    assert!(record_file(&repo).exists(), "SIGKILL leaves the record behind");

    let out = iso_at(&repo, &repo.root, &remote_file, &["remote", "discover"]);
    assert_eq!(out.status.code(), Some(3), "none running is not found: {}", stderr(&out));
    assert!(stderr(&out).contains("no running iso server"), "{}", stderr(&out));
    assert!(!remote_file.exists());
    assert_gone(&record_file(&repo));
    assert_gone(&index_file(&repo, pid));

    // An index entry of a dead server, seen only from outside the repository.
    let mut s2 = Server::start(&repo, None);
    let pid2 = s2.pid();
    s2.kill();
    let out = iso_at(&repo, elsewhere.path(), &remote_file, &["remote", "discover", "--all"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert_gone(&index_file(&repo, pid2));
    assert_gone(&record_file(&repo));

    // A live process that does not answer as a server (its pid was reused
    // by something else, or it hangs): ignored and removed too.
    let mut sleeper = Command::new("sleep").arg("60").spawn().unwrap();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let fake = serde_json::json!({
        "url": format!("http://{closed}"), "pid": sleeper.id(), "started": "2026-01-01T00:00:00Z",
        "root": repo.root, "iso_dir": repo.root.join(".git/iso"), "token": { "from": "env", "var": "ISO_API_TOKEN" },
    });
    let entry = index_file(&repo, sleeper.id());
    std::fs::write(&entry, fake.to_string()).unwrap();
    std::fs::write(record_file(&repo), fake.to_string()).unwrap();
    let out = iso_at(&repo, &repo.root, &remote_file, &["remote", "discover"]);
    let _ = sleeper.kill();
    let _ = sleeper.wait();
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert_gone(&entry);
    assert_gone(&record_file(&repo));
}
