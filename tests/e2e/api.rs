//! End-to-end tests of `iso serve` (the real binary on 127.0.0.1, port 0)
//! with a real HTTP client, the CLI in remote mode, and agent runs.
//!
//! Ports: every test repository has blocks of 10 in a window of its own
//! from `support::ports`; the servers listen on port 0.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::server::Server;
use crate::support::{stderr, stdout, wait_for, TestRepo};
use serde_json::{json, Value};

const TOKEN: &str = "test-token-0123456789";

fn repo(extra: &str) -> TestRepo {
    repo_max(22, extra)
}

/// A repository with `max` threads of 10 ports.
fn repo_max(max: u32, extra: &str) -> TestRepo {
    TestRepo::new(&format!("[ports]\nblock_size = 10\n[threads]\nmax = {max}\n{extra}"))
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder().http_status_as_error(false).timeout_global(Some(Duration::from_secs(60))).build().into()
}

/// One request; returns the status and the body (JSON when it parses, else a string).
fn call(method: &str, url: &str, token: Option<&str>, body: Option<&[u8]>) -> (u16, Value) {
    let a = agent();
    let auth = token.map(|t| format!("Bearer {t}"));
    let r = match (method, body) {
        ("GET", _) | ("DELETE", None) => {
            let mut req = if method == "GET" { a.get(url) } else { a.delete(url) };
            if let Some(h) = &auth {
                req = req.header("Authorization", h);
            }
            req.call()
        }
        (_, body) => {
            let mut req = match method {
                "POST" => a.post(url),
                "PATCH" => a.patch(url),
                other => panic!("{other}"),
            }
            .content_type("application/json");
            if let Some(h) = &auth {
                req = req.header("Authorization", h);
            }
            req.send(body.unwrap_or(b"{}"))
        }
    };
    let mut resp = r.unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = resp.status().as_u16();
    let text = resp.body_mut().with_config().limit(50 << 20).read_to_string().unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

fn ok(method: &str, url: &str, body: Option<Value>) -> Value {
    let b = body.map(|v| v.to_string());
    let (status, v) = call(method, url, Some(TOKEN), b.as_deref().map(str::as_bytes));
    assert!((200..300).contains(&status), "{method} {url}: {status} {v}");
    v
}

#[test]
fn health_is_open_and_every_other_endpoint_needs_the_token() {
    let repo = repo("");
    let s = Server::start(&repo, Some(TOKEN));
    let u = |p: &str| format!("{}{p}", s.url);
    let (st, v) = call("GET", &u("/api/health"), None, None);
    assert_eq!((st, &v["ok"]), (200, &json!(true)));

    ok("POST", &u("/api/threads"), Some(json!({"name": "one"})));
    let endpoints: &[(&str, &str, Option<&str>, u16)] = &[
        ("GET", "/api/status", None, 200),
        ("GET", "/api/threads", None, 200),
        ("POST", "/api/threads", Some(r#"{"name": "two"}"#), 201),
        ("GET", "/api/threads/one", None, 200),
        ("PATCH", "/api/threads/one", Some(r#"{"task": "x"}"#), 200),
        ("POST", "/api/threads/one/start", Some("{}"), 409), // no agent configured
        ("POST", "/api/threads/one/stop", None, 404),
        ("GET", "/api/threads/one/runs", None, 200),
        ("GET", "/api/threads/one/logs", None, 404),
        ("POST", "/api/events", Some(r#"{"event": "ping"}"#), 202),
        ("GET", "/api/openapi.json", None, 200),
        ("DELETE", "/api/threads/two", None, 200),
    ];
    for &(method, path, body, expected) in endpoints {
        let body = body.map(str::as_bytes);
        for bad in [None, Some("wrong"), Some(""), Some("test-token-012345678"), Some("test-token-01234567890")] {
            let (st, v) = call(method, &u(path), bad, body);
            assert_eq!(st, 401, "{method} {path} with {bad:?}: {v}");
            assert_eq!(v["error"]["code"], "unauthorized", "{v}");
        }
        // Not "Bearer": refused too.
        let (st, _) = {
            let mut req = agent().get(u(path));
            req = req.header("Authorization", format!("Basic {TOKEN}"));
            let r = req.call().unwrap();
            (r.status().as_u16(), ())
        };
        if method == "GET" {
            assert_eq!(st, 401, "{path} with Basic");
        }
        let (st, v) = call(method, &u(path), Some(TOKEN), body);
        assert_eq!(st, expected, "{method} {path}: {v}");
    }
    // The SSE endpoint answers with a stream once authorised.
    let r = agent().get(u("/api/events")).header("Authorization", format!("Bearer {TOKEN}")).call().unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
}

#[test]
fn openapi_document_is_the_one_in_the_repository() {
    let repo = repo("");
    let s = Server::start(&repo, Some(TOKEN));
    let served = ok("GET", &format!("{}/api/openapi.json", s.url), None);
    let file = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/openapi.json")).unwrap();
    assert_eq!(served, serde_json::from_str::<Value>(&file).unwrap());
    // Every route the server has is documented: the routes are read from
    // the router's source, so a new one without a schema fails here.
    let routes = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/api/routes.rs")).unwrap();
    let paths: Vec<&str> = routes.split(".route(\"").skip(1).map(|r| &r[..r.find('"').unwrap()]).collect();
    assert!(paths.len() >= 15 && paths.contains(&"/api/snapshots/{name}"), "{paths:?}");
    for p in paths {
        assert!(served["paths"].get(p).is_some(), "{p} missing from openapi.json");
    }
}

#[test]
fn refuses_a_public_address_without_a_token() {
    let repo = repo("");
    let out = repo.iso_cmd(&["serve", "--bind", "0.0.0.0:0"]).env_remove("ISO_API_TOKEN").output().unwrap();
    assert_eq!(out.status.code(), Some(78), "{}", stderr(&out));
    assert!(stderr(&out).contains("refusing to listen on 0.0.0.0"), "{}", stderr(&out));
    let out = repo.iso_cmd(&["serve", "--bind", "nowhere"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

#[test]
fn without_a_configured_token_loopback_gets_a_generated_one() {
    use std::os::unix::fs::PermissionsExt;
    let repo = repo_max(1, "");
    let s = Server::start(&repo, None);
    let (status, _) = call("GET", &format!("{}/api/threads", s.url), None, None);
    assert_eq!(status, 401, "no open API even on loopback");
    let file = repo.path(".git/iso/api-token");
    assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
    let token = std::fs::read_to_string(&file).unwrap().trim().to_string();
    assert_eq!(token.len(), 32, "{token}");
    assert_eq!(call("GET", &format!("{}/api/threads", s.url), Some(&token), None).0, 200);
    assert_eq!(call("GET", &format!("{}/api/threads", s.url), Some("not-it"), None).0, 401);
    // A second server run makes a new one.
    drop(s);
    let _s2 = Server::start(&repo, None);
    assert_ne!(std::fs::read_to_string(&file).unwrap().trim(), token);
}

#[test]
fn twenty_concurrent_creates_get_distinct_threads_and_port_blocks() {
    let repo = repo_max(25, "");
    let s = Server::start(&repo, Some(TOKEN));
    let url = format!("{}/api/threads", s.url);
    let handles: Vec<_> = (0..20)
        .map(|i| {
            let url = url.clone();
            std::thread::spawn(move || {
                let body = json!({"name": format!("par-{i}"), "task": format!("task {i}")}).to_string();
                call("POST", &url, Some(TOKEN), Some(body.as_bytes()))
            })
        })
        .collect();
    let mut ids = std::collections::BTreeSet::new();
    let mut blocks = std::collections::BTreeSet::new();
    for h in handles {
        let (st, t) = h.join().unwrap();
        assert_eq!(st, 201, "{t}");
        assert_eq!(t["status"], "active");
        ids.insert(t["id"].as_u64().unwrap());
        blocks.insert(t["port_block"]["start"].as_u64().unwrap());
        assert!(Path::new(t["worktree"].as_str().unwrap()).join(".env.thread").is_file());
    }
    assert_eq!(ids.len(), 20);
    assert_eq!(blocks.len(), 20);
    let threads = repo.threads();
    for t in &threads {
        let id = t["id"].as_u64().unwrap();
        assert_eq!(t["port_block"]["start"].as_u64().unwrap(), u64::from(repo.port_base) + id * 10, "block follows the id");
    }
    // The CLI beside the running server sees the same registry.
    assert_eq!(threads.len(), 20);
    let out = repo.iso_ok(&["doctor"]);
    assert!(out.contains("agree"), "{out}");
    // A bulk create reports each name.
    let (st, v) = call("POST", &url, Some(TOKEN), Some(br#"{"names": ["par-0", "bulk-a"]}"#));
    assert_eq!(st, 207, "{v}");
    assert_eq!(v["created"][0]["name"], "bulk-a");
    assert_eq!(v["failed"][0]["name"], "par-0");
    assert_eq!(v["failed"][0]["error"]["code"], "conflict");
}

/// Read SSE frames from `r` until `n` events were seen; returns (event, data) pairs.
fn read_events(r: impl Read, n: usize) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    let mut event = String::new();
    for line in BufReader::new(r).lines() {
        let line = line.unwrap();
        if let Some(e) = line.strip_prefix("event: ") {
            event = e.to_string();
        } else if let Some(d) = line.strip_prefix("data: ") {
            out.push((event.clone(), serde_json::from_str(d).unwrap()));
            if out.len() == n {
                break;
            }
        }
    }
    out
}

#[test]
fn event_stream_carries_init_and_cleanup_in_order_and_custom_events() {
    let repo = repo("");
    let s = Server::start(&repo, Some(TOKEN));
    let resp = agent().get(format!("{}/api/events", s.url)).header("Authorization", format!("Bearer {TOKEN}")).call().unwrap();
    let reader = std::thread::spawn(move || read_events(resp.into_body().into_reader(), 7));
    wait_for("the subscriber", Duration::from_secs(10), || ok("GET", &format!("{}/api/status", s.url), None)["event_subscribers"] == 1);

    let t = ok("POST", &format!("{}/api/threads", s.url), Some(json!({"name": "watched"})));
    ok("DELETE", &format!("{}/api/threads/{}", s.url, t["id"]), None);
    ok("POST", &format!("{}/api/events", s.url), Some(json!({"event": "review.requested", "thread": 1, "data": {"pr": 9}})));
    let (st, v) = call("POST", &format!("{}/api/events", s.url), Some(TOKEN), Some(br#"{"event": "post-init"}"#));
    assert_eq!(st, 422, "iso's own events cannot be forged: {v}");
    ok("POST", &format!("{}/api/events", s.url), Some(json!({"event": "done"})));

    let events = reader.join().unwrap();
    let names: Vec<&str> = events.iter().map(|(e, _)| e.as_str()).collect();
    assert_eq!(names, ["pre-init", "post-init", "post-up", "pre-cleanup", "post-cleanup", "review.requested", "done"]);
    let seqs: Vec<u64> = events.iter().map(|(_, d)| d["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    assert_eq!(events[0].1["name"], "watched");
    assert_eq!(events[0].1["kind"], "lifecycle");
    assert_eq!(events[5].1["kind"], "custom");
    assert_eq!(events[5].1["data"]["pr"], 9);
}

/// One server-sent event.
#[derive(Debug)]
struct Frame {
    event: String,
    id: String,
    data: Value,
}

/// Read SSE frames from `r` until one named `until` (included).
fn read_until(r: impl Read, until: &str) -> Vec<Frame> {
    let mut out = Vec::new();
    let (mut event, mut id, mut data) = (String::new(), String::new(), None);
    for line in BufReader::new(r).lines() {
        let line = line.unwrap();
        if let Some(e) = line.strip_prefix("event: ") {
            event = e.to_string();
        } else if let Some(i) = line.strip_prefix("id: ") {
            id = i.to_string();
        } else if let Some(d) = line.strip_prefix("data: ") {
            data = Some(serde_json::from_str(d).unwrap());
        } else if line.is_empty() {
            if let Some(data) = data.take() {
                let done = event == until;
                out.push(Frame { event: std::mem::take(&mut event), id: std::mem::take(&mut id), data });
                if done {
                    break;
                }
            }
        }
    }
    out
}

/// Subscribe to the server's events (with `Last-Event-ID` if given) and
/// read them on a thread until one named `until`.
fn subscribe(url: &str, last_id: Option<u64>, until: &'static str) -> std::thread::JoinHandle<Vec<Frame>> {
    let mut req = agent().get(format!("{url}/api/events")).header("Authorization", format!("Bearer {TOKEN}"));
    if let Some(id) = last_id {
        req = req.header("Last-Event-ID", id.to_string());
    }
    let resp = req.call().unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    std::thread::spawn(move || read_until(resp.into_body().into_reader(), until))
}

/// `iso events --json <args>`: one event per line.
fn logged_events(repo: &TestRepo, args: &[&str]) -> Vec<Value> {
    let mut a = vec!["events", "--json"];
    a.extend_from_slice(args);
    repo.iso_ok(&a).lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect()
}

#[test]
fn cli_lifecycle_beside_a_server_reaches_the_event_stream_once_each() {
    let repo = repo_max(3, "");
    let s = Server::start(&repo, Some(TOKEN));
    let reader = subscribe(&s.url, None, "done");
    wait_for("the subscriber", Duration::from_secs(10), || ok("GET", &format!("{}/api/status", s.url), None)["event_subscribers"] == 1);

    // Plain local CLI commands, not through the server.
    let watched = repo.iso_json(&["init", "watched"])[0]["id"].as_u64().unwrap();
    let other = repo.iso_json(&["init", "other"])[0]["id"].as_u64().unwrap();
    repo.iso_ok(&["cleanup", "watched"]);
    // A sentinel after them: anything sent twice would come before it.
    ok("POST", &format!("{}/api/events", s.url), Some(json!({"event": "done"})));

    let frames = reader.join().unwrap();
    let got: Vec<(&str, Option<u64>)> = frames.iter().map(|f| (f.event.as_str(), f.data["thread"].as_u64())).collect();
    let (w, o) = (Some(watched), Some(other));
    assert_eq!(
        got,
        [
            ("pre-init", w),
            ("post-init", w),
            ("post-up", w),
            ("pre-init", o),
            ("post-init", o),
            ("post-up", o),
            ("pre-cleanup", w),
            ("post-cleanup", w),
            ("done", None)
        ],
        "each event once, in order"
    );
    let seqs: Vec<u64> = frames.iter().map(|f| f.data["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|p| p[0] < p[1]), "{seqs:?}");
    for f in &frames {
        assert_eq!(f.id, f.data["seq"].to_string(), "the SSE id is the seq");
    }
    assert_eq!(frames[0].data["name"], "watched");
    assert_eq!(frames[0].data["kind"], "lifecycle");
    assert_eq!(frames[2].data["data"]["branch"], format!("thread-{watched}-watched"));
    assert_eq!(frames[7].data["data"]["status"], "removed");

    // `iso events --json` shows the same events (the log began with them).
    let data: Vec<Value> = frames.iter().map(|f| f.data.clone()).collect();
    assert_eq!(logged_events(&repo, &[]), data);
    assert_eq!(logged_events(&repo, &["--since", &seqs[6].to_string()]), data[7..]);
    let by_name = logged_events(&repo, &["--thread", "other"]);
    assert_eq!(by_name, data[3..6]);
    // The table: a header and one aligned line per event of thread `watched`.
    let table = repo.iso_ok(&["events", "--thread", &watched.to_string()]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 6, "{table}");
    assert!(lines[0].starts_with("SEQ") && lines[0].contains("TIME") && lines[0].ends_with("NAME"), "{table}");
    let col = lines[0].find("EVENT").unwrap();
    let events: Vec<&str> = lines[1..].iter().map(|l| l[col..].split_whitespace().next().unwrap()).collect();
    assert_eq!(events, ["pre-init", "post-init", "post-up", "pre-cleanup", "post-cleanup"], "{table}");
    assert!(lines[1..].iter().all(|l| l.ends_with("watched") && l.contains("lifecycle")), "{table}");

    // A client reconnecting with Last-Event-ID gets what it missed first, then new events, once each.
    let again = subscribe(&s.url, Some(seqs[5]), "again");
    ok("POST", &format!("{}/api/events", s.url), Some(json!({"event": "again"})));
    let names: Vec<String> = again.join().unwrap().into_iter().map(|f| f.event).collect();
    assert_eq!(names, ["pre-cleanup", "post-cleanup", "done", "again"]);
}

#[test]
fn stops_on_sigterm_and_sigint_with_an_event_stream_open() {
    let repo = repo_max(1, "");
    let token_file = repo.path(".git/iso/api-token");
    for signal in ["TERM", "INT"] {
        let mut child =
            repo.iso_cmd(&["serve", "--bind", "127.0.0.1:0"]).env_remove("ISO_API_TOKEN").stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let url = line.trim().strip_prefix("listening on ").unwrap().to_string();
        let token = std::fs::read_to_string(&token_file).expect("a generated token file").trim().to_string();
        let resp = agent().get(format!("{url}/api/events")).header("Authorization", format!("Bearer {token}")).call().unwrap();
        let reader = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = resp.into_body().into_reader().read_to_string(&mut text);
        });
        wait_for("the subscriber", Duration::from_secs(10), || call("GET", &format!("{url}/api/status"), Some(&token), None).1["event_subscribers"] == 1);

        let started = Instant::now();
        let kill = Command::new("kill").args([&format!("-{signal}"), &child.id().to_string()]).status().unwrap();
        assert!(kill.success());
        let status = loop {
            if let Some(st) = child.try_wait().unwrap() {
                break st;
            }
            if started.elapsed() > Duration::from_secs(5) {
                let _ = child.kill();
                panic!("SIG{signal}: iso serve still running after 5 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut err = String::new();
        child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
        assert_eq!(status.code(), Some(0), "SIG{signal}: {err}");
        assert!(err.lines().any(|l| l == "stopping"), "SIG{signal}: {err}");
        assert!(!token_file.exists(), "SIG{signal}: the generated token file is removed");
        reader.join().unwrap();
    }
}

#[test]
fn request_handling_rejects_bad_input_with_json_errors() {
    let repo = repo("");
    let s = Server::start(&repo, Some(TOKEN));
    let url = format!("{}/api/threads", s.url);
    let post = |body: &[u8]| call("POST", &url, Some(TOKEN), Some(body));

    for bad in [&b"{"[..], b"{\"name\":", b"[1,2", b"nul", b"{\"name\": \"a\",}", b"\xff\xfe"] {
        let (st, v) = post(bad);
        assert_eq!(st, 400, "{:?}: {v}", String::from_utf8_lossy(bad));
        assert_eq!(v["error"]["code"], "bad_request");
    }
    for shape in [r#"{"nmae": "a"}"#, r#"{"name": 5}"#, r#"{"name": "a", "names": ["b"]}"#, r#"{}"#, r#"{"names": []}"#, r#"[]"#] {
        let (st, v) = post(shape.as_bytes());
        assert_eq!(st, 422, "{shape}: {v}");
        assert!(v["error"]["message"].is_string());
    }
    let huge = format!("{{\"name\": \"{}\"}}", "a".repeat(200_000));
    let (st, v) = post(huge.as_bytes());
    assert_eq!((st, v["error"]["code"].as_str()), (413, Some("too_large")), "{v}");
    let (st, v) = call("PATCH", &format!("{url}/1"), Some(TOKEN), Some(br#"{"status": "removed"}"#));
    assert_eq!(st, 422, "only active, merged, abandoned are settable: {v}");
    let (st, v) = call("PATCH", &format!("{url}/1"), Some(TOKEN), Some(br#"{"status": "merged"}"#));
    assert_eq!(st, 404, "no thread yet: {v}");
    let (st, v) = call("PATCH", &format!("{url}/1"), Some(TOKEN), Some(br#"{"status": "bogus"}"#));
    assert_eq!(st, 422, "{v}");
    let (st, v) = call("GET", &format!("{}/api/nothing", s.url), Some(TOKEN), None);
    assert_eq!((st, v["error"]["code"].as_str()), (404, Some("not_found")));
    let (st, _) = call("GET", &format!("{url}?all=maybe"), Some(TOKEN), None);
    assert_eq!(st, 400);

    // Hostile names: refused with 422, or sanitised into a thread inside .worktrees.
    let hostile = [
        "../../etc",
        "-rf",
        "a\u{0}b",
        "..",
        "",
        "a b",
        "x/../../y",
        "$(touch pwned)",
        "`id`",
        "a\nb",
        "refs/heads/main",
        "ünï",
        "a:b",
        "~x",
        "^HEAD",
        "x.lock",
    ];
    let long = "n".repeat(10_000);
    for name in hostile.iter().copied().chain([long.as_str()]) {
        let (st, v) = post(json!({ "name": name }).to_string().as_bytes());
        assert!(matches!(st, 201 | 409 | 422), "{name:?}: {st} {v}");
        if st == 201 {
            let wt = Path::new(v["worktree"].as_str().unwrap()).canonicalize().unwrap();
            assert!(wt.starts_with(repo.path(".worktrees")), "{name:?} -> {}", wt.display());
        } else {
            assert!(v["error"]["code"].is_string(), "{v}");
        }
    }
    assert!(!repo.path("pwned").exists());

    // Random bodies (a fixed-seed generator, so failures reproduce): never a
    // 5xx, always a JSON error or a created thread.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let pieces = ["{", "}", "\"name\"", ":", "\"", "[", "]", ",", "null", "1e999", "\"names\"", "\"task\"", "\\u0000", "true", " ", "\"base\"", "\"ctx\"", "-"];
    for _ in 0..200 {
        let n = (next() % 12) as usize;
        let body: String = (0..n).map(|_| pieces[(next() % pieces.len() as u64) as usize]).collect();
        let (st, v) = post(body.as_bytes());
        assert!(matches!(st, 201 | 207 | 400 | 409 | 422), "{body:?}: {st} {v}");
        if st >= 400 {
            assert!(v["error"]["code"].is_string(), "{body:?}: {v}");
        }
    }
    // Still serving, and the registry is sound.
    assert_eq!(call("GET", &format!("{}/api/health", s.url), None, None).0, 200);
    repo.iso_ok(&["list"]);
}

#[test]
fn cli_in_remote_mode_goes_through_the_server() {
    let repo = repo("");
    let s = Server::start(&repo, Some(TOKEN));
    let home = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap(); // not a git repository
    let iso = |args: &[&str]| {
        let mut c = repo.iso_cmd_at(elsewhere.path(), args);
        c.env("ISO_REMOTE_FILE", home.path().join("iso/remote.json")).env_remove("ISO_API_TOKEN");
        c.output().unwrap()
    };
    let okk = |args: &[&str]| {
        let out = iso(args);
        assert!(out.status.success(), "iso {args:?}: {}", stderr(&out));
        stdout(&out)
    };

    let out = iso(&["remote", "connect", &s.url, "--token", "nope"]);
    assert_eq!(out.status.code(), Some(1), "a wrong token is caught at connect: {}", stderr(&out));
    assert!(stderr(&out).contains("401"), "{}", stderr(&out));
    okk(&["remote", "connect", &s.url, "--token", TOKEN]);
    let file = home.path().join("iso/remote.json");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
    assert!(okk(&["remote", "status"]).contains(&repo.root.display().to_string()));

    let out = okk(&["init", "alpha", "beta", "--task", "remote work"]);
    assert!(out.contains(" alpha  branch thread-") && out.contains(" beta  branch thread-"), "{out}");
    let out = iso(&["init", "alpha"]);
    assert_eq!(out.status.code(), Some(1), "a taken name fails as locally");
    assert!(stderr(&out).contains("already named `alpha`"), "{}", stderr(&out));
    let out = iso(&["init", "alpha", "delta"]);
    assert_eq!(out.status.code(), Some(4), "bulk: partly failed, as locally: {}", stderr(&out));
    okk(&["cleanup", "delta"]);
    let listed: Value = serde_json::from_str(&okk(&["list", "--json"])).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 2);
    assert!(okk(&["ls"]).contains("-beta"));
    okk(&["update", "alpha", "--task", "changed", "--pr", "12", "--status", "merged"]);
    let st: Value = serde_json::from_str(&okk(&["status", "alpha", "--json"])).unwrap();
    assert_eq!((st["task"].as_str(), st["pr"].as_u64(), st["status"].as_str()), (Some("changed"), Some(12), Some("merged")));
    let out = iso(&["status", "gamma"]);
    assert_eq!(out.status.code(), Some(3), "not found maps to exit 3: {}", stderr(&out));
    okk(&["cleanup", "beta"]);
    // The local view of the repository agrees with what went through the server.
    let local = repo.threads();
    assert_eq!(local.len(), 1);
    assert_eq!(local[0]["task"], "changed");
    // --local works on the directory it is run in (not a repository here).
    let out = iso(&["--local", "list"]);
    assert!(!out.status.success(), "--local must not go remote");

    okk(&["remote", "disconnect"]);
    assert!(!file.exists());
    assert!(okk(&["remote", "status"]).contains("not connected"));
    // ISO_API_URL / ISO_API_TOKEN alone are enough.
    let out = repo.iso_cmd_at(elsewhere.path(), &["list", "--json"]).env("ISO_API_URL", &s.url).env("ISO_API_TOKEN", TOKEN).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(serde_json::from_str::<Value>(&stdout(&out)).unwrap().as_array().unwrap().len(), 1);
}

fn agent_repo() -> (TestRepo, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("agent.sh");
    std::fs::write(
        &script,
        r#"#!/bin/sh
echo "agent in $(pwd) for $ISO_THREAD_NAME, api $API_URL"
case "$ISO_THREAD_NAME" in
  ok*) cat > agent-output.txt; echo "arg: $1" >> agent-output.txt; exit 0 ;;
  bad*) echo "failing on purpose" >&2; exit 3 ;;
  long*) echo started; exec sleep 300 ;;
esac
"#,
    )
    .unwrap();
    let toml = format!("[agent]\ncommand = [\"sh\", \"{}\", \"{{prompt}}\"]\n", script.display());
    (repo(&toml), dir)
}

#[test]
fn spawn_runs_the_agent_and_records_how_it_ended() {
    let (repo, _scripts) = agent_repo();
    repo.write("tpl.md", "Work on {{ thread.name }}; ticket {{ context.ticket }}.");

    // Exit 0: the agent ran in the worktree with the thread's env and the prompt.
    let out = repo.iso(&["spawn", "ok-1", "--template", "tpl.md", "--context", r#"{"ticket": "ISO-7"}"#, "--wait", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let run: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!((run["state"].as_str(), run["exit_code"].as_i64()), (Some("completed"), Some(0)), "{run}");
    let wt = Path::new(run["worktree"].as_str().unwrap()).to_path_buf();
    let written = std::fs::read_to_string(wt.join("agent-output.txt")).unwrap();
    assert!(written.starts_with("Work on ok-1; ticket ISO-7."), "{written}");
    assert!(written.contains("arg: Work on ok-1; ticket ISO-7."), "{{prompt}} in the command: {written}");
    let log = repo.iso_ok(&["run-logs", "ok-1"]);
    let t = &repo.iso_json(&["status", "ok-1"]);
    let api = format!("api http://localhost:{}", t["ports"]["api"]);
    assert!(log.contains(&format!("agent in {}", wt.display())) && log.contains(&api), "{log}");

    // Exit 3: failed, with the code, and `iso spawn --wait` exits with it.
    let out = repo.iso(&["spawn", "bad-1", "--wait", "--json"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let run: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!((run["state"].as_str(), run["exit_code"].as_i64()), (Some("failed"), Some(3)));
    assert!(repo.iso_ok(&["run-logs", "bad-1"]).contains("failing on purpose"));

    // Long-running: running with a live pid until `iso stop`.
    let run: Value = serde_json::from_str(&repo.iso_ok(&["spawn", "long-1", "--json"])).unwrap();
    assert_eq!(run["state"], "running", "{run}");
    let pid = run["pid"].as_u64().unwrap();
    assert!(Path::new(&format!("/proc/{pid}")).exists());
    let out = repo.iso(&["spawn", "long-1"]);
    assert!(!out.status.success(), "the name is taken");
    let stopped: Value = serde_json::from_str(&repo.iso_ok(&["stop", "long-1", "--json"])).unwrap();
    assert_eq!(stopped["state"], "stopped", "{stopped}");
    wait_for("the agent to be gone", Duration::from_secs(10), || std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |s| s.contains(") Z ")));
    let out = repo.iso(&["stop", "long-1"]);
    assert_eq!(out.status.code(), Some(3), "nothing left to stop: {}", stderr(&out));
    assert!(repo.iso_ok(&["run-logs", "long-1"]).contains("started"));

    // Every run was logged by its supervisor: started, then how it ended.
    let agent_events = || -> Vec<(String, String, String)> {
        logged_events(&repo, &[])
            .iter()
            .filter(|e| e["kind"] == "agent")
            .map(|e| (e["name"].as_str().unwrap().to_string(), e["event"].as_str().unwrap().to_string(), e["data"]["state"].as_str().unwrap().to_string()))
            .collect()
    };
    wait_for("agent-stopped of long-1", Duration::from_secs(10), || agent_events().len() == 6);
    let s = |a: &str, b: &str, c: &str| (a.to_string(), b.to_string(), c.to_string());
    assert_eq!(
        agent_events(),
        [
            s("ok-1", "agent-started", "running"),
            s("ok-1", "agent-stopped", "completed"),
            s("bad-1", "agent-started", "running"),
            s("bad-1", "agent-stopped", "failed"),
            s("long-1", "agent-started", "running"),
            s("long-1", "agent-stopped", "stopped"),
        ]
    );

    // Cleanup stops an agent that is still running in the thread.
    let run: Value = serde_json::from_str(&repo.iso_ok(&["spawn", "long-2", "--json"])).unwrap();
    let pid = run["pid"].as_u64().unwrap();
    assert!(Path::new(&format!("/proc/{pid}")).exists());
    let out = repo.iso(&["cleanup", "long-2", "--force"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("stopped agent run 1"), "{}", stderr(&out));
    assert!(std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |s| s.contains(") Z ")), "the agent is gone after cleanup");
    // Its run records moved out of the way of the next thread with that id.
    let id = run["thread"].as_u64().unwrap();
    assert!(!repo.path(&format!(".git/iso/runs/thread-{id}")).exists());
    let archived: Vec<_> = std::fs::read_dir(repo.path(".git/iso/runs/removed")).unwrap().flatten().map(|e| e.path()).collect();
    let kept = archived.iter().find(|p| p.to_string_lossy().ends_with(&format!("-thread-{id}-long-2"))).expect("archived runs");
    assert!(std::fs::read_to_string(kept.join("1.log")).unwrap().contains("started"));
}

#[test]
fn agent_runs_through_the_api_survive_a_server_restart() {
    let (repo, _scripts) = agent_repo();
    let s = Server::start(&repo, Some(TOKEN));
    let t = ok("POST", &format!("{}/api/threads", s.url), Some(json!({"name": "long-api", "context": {"ticket": "X-1"}})));
    let id = t["id"].as_u64().unwrap();
    let run = ok("POST", &format!("{}/api/threads/{id}/start", s.url), Some(json!({})));
    assert_eq!(run["state"], "running");
    let prompt = std::fs::read_to_string(run["prompt"].as_str().unwrap()).unwrap();
    assert!(prompt.contains("X-1"), "the context given at creation reaches the prompt: {prompt}");
    let (st, v) = call("POST", &format!("{}/api/threads/{id}/start", s.url), Some(TOKEN), Some(b"{}"));
    assert_eq!((st, v["error"]["code"].as_str()), (409, Some("already_running")));

    // A new server knows the run (pid and start time are on disk).
    drop(s);
    let s = Server::start(&repo, Some(TOKEN));
    let runs = ok("GET", &format!("{}/api/threads/{id}/runs", s.url), None);
    assert_eq!(runs[0]["state"], "running", "{runs}");
    assert_eq!(runs[0]["pid"], run["pid"]);
    wait_for(
        "the log",
        Duration::from_secs(10),
        || matches!(call("GET", &format!("{}/api/threads/{id}/logs", s.url), Some(TOKEN), None), (200, Value::String(ref t)) if t.contains("started")),
    );
    let stopped = ok("POST", &format!("{}/api/threads/{id}/stop", s.url), None);
    assert_eq!(stopped["state"], "stopped");
    // CLI remote spawn through this server, --wait, exit 0.
    let home = tempfile::tempdir().unwrap();
    let out =
        repo.iso_cmd_at(home.path(), &["spawn", "ok-remote", "--wait", "--json"]).env("ISO_API_URL", &s.url).env("ISO_API_TOKEN", TOKEN).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let run: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(run["state"], "completed", "{run}");
    assert!(Path::new(run["worktree"].as_str().unwrap()).join("agent-output.txt").is_file());
}

#[test]
fn custom_events_run_the_hooks_that_subscribe_to_them() {
    let hook = "\n[[hooks]]\nevent = \"deploy.requested\"\nrhai = \"hooks/deploy.rhai\"\n";
    let repo = repo_max(3, hook);
    repo.write(
        "hooks/deploy.rhai",
        "let d = parse_json(payload);\nwrite_file(\"deployed.txt\", `${event} to ${d.env} for ${thread.name}`);\nmessage(\"deployed\");",
    );
    let s = Server::start(&repo, Some(TOKEN));
    let t = ok("POST", &format!("{}/api/threads", s.url), Some(json!({"name": "shop"})));
    let marker = PathBuf::from(t["worktree"].as_str().unwrap()).join("deployed.txt");
    ok("POST", &format!("{}/api/events", s.url), Some(json!({"event": "deploy.requested", "thread": t["id"], "data": {"env": "staging"}})));
    // Written, not only created: write_file creates the file, then writes it.
    wait_for("the hook's file", Duration::from_secs(20), || std::fs::metadata(&marker).is_ok_and(|m| m.len() > 0));
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), "deploy.requested to staging for shop");
    // How the hooks did is logged, and so reaches subscribers.
    let mut result = None;
    wait_for("the hook event", Duration::from_secs(10), || {
        result = logged_events(&repo, &[]).into_iter().find(|e| e["kind"] == "hook");
        result.is_some()
    });
    let r = result.unwrap();
    assert_eq!(r["event"], "deploy.requested");
    assert_eq!(r["data"]["ok"], true, "{r}");
    assert_eq!(r["data"]["messages"][0], "deploy: deployed", "{r}");
    // An event no hook listens to runs nothing.
    ok("POST", &format!("{}/api/events", s.url), Some(json!({"event": "nobody.listens", "thread": t["id"]})));
}

/// `12s` → `Ns`, `(3m ago)` → `(Nm ago)`: ages move on between two runs.
fn mask_ages(text: &str) -> String {
    let mut out = String::new();
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let start_ok = i == 0 || !chars[i - 1].is_ascii_alphanumeric();
        if start_ok && chars[i].is_ascii_digit() {
            let mut j = i;
            while j < chars.len() && chars[j].is_ascii_digit() {
                j += 1;
            }
            let unit_ok = j < chars.len() && "smhd".contains(chars[j]) && chars.get(j + 1).is_none_or(|c| !c.is_ascii_alphanumeric());
            if unit_ok {
                out.push('N');
                out.push(chars[j]);
                i = j + 1;
                continue;
            }
        }
        out.push(chars[i]);
        i += 1;
    }
    out
}

#[test]
fn remote_mode_prints_exactly_what_local_prints() {
    let repo = repo("");
    repo.iso_ok(&["init", "alpha", "beta", "gamma"]);
    repo.iso_ok(&["update", "beta", "--status", "merged", "--task", "ship it", "--pr", "4"]);
    repo.iso_ok(&["cleanup", "alpha"]);
    let s = Server::start(&repo, Some(TOKEN));
    let elsewhere = tempfile::tempdir().unwrap(); // no repository: everything comes from the server
    let remote = |args: &[&str]| repo.iso_cmd_at(elsewhere.path(), args).env("ISO_API_URL", &s.url).env("ISO_API_TOKEN", TOKEN).output().unwrap();
    let cases: [&[&str]; 9] = [
        &["ls"],
        &["ls", "--all"],
        &["ls", "--json"],
        &["ls", "--all", "--json"],
        &["status", "beta"],
        &["status", "beta", "--json"],
        // Errors: the same message, hint and exit code.
        &["status", "nope"],
        &["init", "beta"],
        &["update", "gamma", "--pr", "x"],
    ];
    for args in cases {
        let (local, rem) = (repo.iso(args), remote(args));
        assert_eq!(local.status.code(), rem.status.code(), "{args:?}: exit codes\nlocal: {}\nremote: {}", stderr(&local), stderr(&rem));
        assert_eq!(mask_ages(&stdout(&local)), mask_ages(&stdout(&rem)), "{args:?}: stdout");
        assert_eq!(stderr(&local), stderr(&rem), "{args:?}: stderr");
    }
    // The table really is the full one (AGE included), and the errors carry their hint.
    let header = stdout(&remote(&["ls"])).lines().next().unwrap().split_whitespace().map(str::to_string).collect::<Vec<_>>();
    assert_eq!(header, ["THREAD", "NAME", "BRANCH", "STATUS", "PORTS", "AGENT", "ACTIVITY", "WORKTREE", "AGE"]);
    let missing = remote(&["status", "nope"]);
    assert_eq!(missing.status.code(), Some(3));
    assert!(stderr(&missing).contains("  fix: see `iso list`"), "{}", stderr(&missing));
    let taken = remote(&["init", "beta"]);
    assert!(stderr(&taken).contains("already named `beta`") && stderr(&taken).contains("fix: pick another name"), "{}", stderr(&taken));
}

#[test]
fn agents_report_their_status_through_the_api() {
    let repo = repo_max(3, "");
    repo.iso_ok(&["init", "alpha", "beta"]);
    let s = Server::start(&repo, Some(TOKEN));
    let t = ok("POST", &format!("{}/api/threads/alpha/agent-status", s.url), Some(json!({"state": "waiting", "message": "approve the migration?"})));
    assert_eq!((t["name"].as_str(), t["agent"]["state"].as_str(), t["agent"]["reported_by"].as_str()), (Some("alpha"), Some("waiting"), Some("agent")), "{t}");
    let shown = ok("GET", &format!("{}/api/threads/1", s.url), None);
    assert_eq!(shown["agent"]["message"], "approve the migration?");
    assert!(shown["last_activity"].is_string(), "{shown}");
    let l = ok("GET", &format!("{}/api/listing?agent=waiting&status=active", s.url), None);
    assert_eq!(l["threads"].as_array().unwrap().len(), 1, "{l}");
    let l = ok("GET", &format!("{}/api/listing?idle=1h", s.url), None);
    assert!(l["threads"].as_array().unwrap().is_empty(), "{l}");
    // Wrong input: a state iso reports itself, an unknown field, a bad duration.
    let post = |body: Value| call("POST", &format!("{}/api/threads/alpha/agent-status", s.url), Some(TOKEN), Some(body.to_string().as_bytes()));
    let (st, v) = post(json!({"state": "failed"}));
    assert_eq!((st, v["error"]["code"].as_str()), (422, Some("bad_agent_state")), "{v}");
    assert_eq!(post(json!({"state": "idle", "extra": 1})).0, 422);
    let (st, v) = call("GET", &format!("{}/api/listing?idle=soon", s.url), Some(TOKEN), None);
    assert_eq!((st, v["error"]["code"].as_str()), (422, Some("bad_duration")), "{v}");
    // The event is in the stream's log.
    let e = logged_events(&repo, &[]).into_iter().find(|e| e["event"] == "agent-status").expect("logged");
    assert_eq!(e["data"], json!({"state": "waiting", "message": "approve the migration?", "previous": null}));

    // Remote mode: the CLI reports and filters through the server, printing what it prints locally.
    let elsewhere = tempfile::tempdir().unwrap();
    let remote = |args: &[&str]| repo.iso_cmd_at(elsewhere.path(), args).env("ISO_API_URL", &s.url).env("ISO_API_TOKEN", TOKEN).output().unwrap();
    let out = remote(&["agent-status", "working", "beta"]);
    assert!(out.status.success(), "{}", stderr(&out));
    for args in
        [&["ls", "--agent", "working"][..], &["ls", "--agent", "waiting", "--status", "active", "--json"], &["ls", "--idle", "1h"], &["ls", "--idle", "x"]]
    {
        let (local, rem) = (repo.iso(args), remote(args));
        assert_eq!(local.status.code(), rem.status.code(), "{args:?}: {} / {}", stderr(&local), stderr(&rem));
        assert_eq!(mask_ages(&stdout(&local)), mask_ages(&stdout(&rem)), "{args:?}");
        assert_eq!(stderr(&local), stderr(&rem), "{args:?}");
    }
    assert!(stdout(&remote(&["ls", "--agent", "working"])).contains("beta"));
}

#[test]
fn errors_carry_their_kind_and_hint() {
    let repo = repo("");
    let s = Server::start(&repo, Some(TOKEN));
    let (st, v) = call("GET", &format!("{}/api/threads/nope", s.url), Some(TOKEN), None);
    assert_eq!(st, 404);
    assert_eq!((v["error"]["kind"].as_str(), v["error"]["code"].as_str()), (Some("not_found"), Some("not_found")), "{v}");
    assert_eq!(v["error"]["hint"], "see `iso list` for ids and names", "{v}");
    assert!(!v["error"]["message"].as_str().unwrap().contains("fix:"), "the hint is data, not part of the message: {v}");
    let (st, v) = call("POST", &format!("{}/api/threads", s.url), Some(TOKEN), Some(br#"{"name": "x", "base": "no-such-branch"}"#));
    assert_eq!((st, v["error"]["kind"].as_str(), v["error"]["code"].as_str()), (422, Some("invalid"), Some("base_not_found")), "{v}");
    let (st, v) = call("POST", &format!("{}/api/threads/x/start", s.url), Some(TOKEN), Some(b"{}"));
    assert_eq!((st, v["error"]["kind"].as_str()), (404, Some("not_found")), "{v}");
}

#[test]
fn the_server_sees_config_and_registry_changes_without_a_restart() {
    let repo = repo("");
    let s = Server::start(&repo, Some(TOKEN));
    let status = || ok("GET", &format!("{}/api/status", s.url), None);
    assert_eq!(status()["max_threads"], 22);
    // iso.toml edited while the server runs (same ports, fewer threads).
    let toml = repo.read("iso.toml").replace("max = 22", "max = 2");
    repo.write("iso.toml", &toml);
    assert_eq!(status()["max_threads"], 2, "the next request reads the new configuration");
    // A thread made by the CLI beside the server is listed by it at once,
    // and one removed by the CLI is gone from the listing.
    let list =
        || ok("GET", &format!("{}/api/threads", s.url), None).as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap().to_string()).collect::<Vec<_>>();
    assert!(list().is_empty());
    repo.iso_ok(&["init", "beside"]);
    assert_eq!(list(), ["beside"]);
    assert_eq!(list(), ["beside"], "the same answer again (from the server's copy)");
    repo.iso_ok(&["update", "beside", "--task", "changed by the CLI"]);
    let t = ok("GET", &format!("{}/api/threads", s.url), None);
    assert_eq!(t[0]["task"], "changed by the CLI");
    repo.iso_ok(&["cleanup", "beside"]);
    assert!(list().is_empty());
    // The new limit holds for inits through the server.
    ok("POST", &format!("{}/api/threads", s.url), Some(json!({ "names": ["a", "b"], "no_services": true })));
    let (st, v) = call("POST", &format!("{}/api/threads", s.url), Some(TOKEN), Some(br#"{"name": "c"}"#));
    assert_eq!((st, v["error"]["code"].as_str()), (409, Some("no_ports")), "max = 2 is what the server uses now: {v}");
}

#[test]
fn create_with_seed_from_starts_from_the_sources_volumes() {
    use crate::support::docker::{docker_section, tag, DockerGuard};
    let t = tag();
    let stack = "[services.api]\nimage = \"iso-test/busybox:1\"\ncommand = \"busybox httpd -f -p 8080 -h /www\"\nport = 8080\nvolumes = [\"files:/www\"]\nhealthcheck = { tcp = true }\n";
    let repo = repo_max(3, &format!("{}{stack}", docker_section(&t, "")));
    let _docker = DockerGuard::new(&repo.root);
    let s = Server::start(&repo, Some(TOKEN));
    repo.iso_ok(&["init", "one"]);
    let out = Command::new("docker").args(["exec", &format!("iso-{t}-t1-api"), "sh", "-c", "echo seeded > /www/index.html"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    ok("POST", &format!("{}/api/threads", s.url), Some(json!({ "name": "two", "seed_from": "one" })));
    let out = Command::new("docker").args(["exec", &format!("iso-{t}-t2-api"), "cat", "/www/index.html"]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "seeded");

    let (st, v) = call("POST", &format!("{}/api/threads", s.url), Some(TOKEN), Some(br#"{"name": "three", "seed_from": "nosuch"}"#));
    assert_eq!((st, v["error"]["kind"].as_str()), (404, Some("not_found")), "{v}");
}

#[test]
fn threads_on_existing_branches_and_worktrees_through_the_api_and_remote_mode() {
    let repo = TestRepo::new("[ports]\nblock_size = 5\n[threads]\nmax = 2\n");
    repo.git(&["branch", "feature/x", "dev"]);
    let spike = repo.root.parent().unwrap().join("spike");
    repo.git(&["worktree", "add", "-q", "-b", "spike", &spike.display().to_string()]);
    let spike = spike.canonicalize().unwrap();
    let s = Server::start(&repo, Some(TOKEN));

    let t = ok("POST", &format!("{}/api/threads", s.url), Some(json!({ "branch": "feature/x" })));
    assert_eq!((t["branch"].as_str(), t["name"].as_str()), (Some("feature/x"), Some("feature/x")), "{t}");
    assert_eq!(t["created_branch"], false);
    let b = json!({ "branch": "main", "name": "m" }).to_string();
    let (status, v) = call("POST", &format!("{}/api/threads", s.url), Some(TOKEN), Some(b.as_bytes()));
    assert_eq!(status, 409, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains(&repo.root.display().to_string()), "{v}");
    let b = json!({ "branch": "nope" }).to_string();
    assert_eq!(call("POST", &format!("{}/api/threads", s.url), Some(TOKEN), Some(b.as_bytes())).0, 404);

    let b = json!({ "path": "relative" }).to_string();
    assert_eq!(call("POST", &format!("{}/api/adopt", s.url), Some(TOKEN), Some(b.as_bytes())).0, 422);
    let b = json!({ "path": repo.root }).to_string();
    let (status, v) = call("POST", &format!("{}/api/adopt", s.url), Some(TOKEN), Some(b.as_bytes()));
    assert_eq!(status, 422, "the main checkout: {v}");
    assert_eq!(v["error"]["code"], "not_adoptable");

    // The CLI in remote mode: adopt and cleanup go through the server.
    let home = tempfile::tempdir().unwrap();
    let iso = |args: &[&str]| {
        let mut c = repo.iso_cmd(args);
        c.env("ISO_REMOTE_FILE", home.path().join("remote.json")).env_remove("ISO_API_TOKEN");
        c.output().unwrap()
    };
    assert!(iso(&["remote", "connect", &s.url, "--token", TOKEN]).status.success());
    let out = iso(&["adopt", "../spike", "--name", "spiké", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!((v[0]["name"].as_str(), v[0]["worktree"].as_str()), (Some("spiké"), Some(spike.to_str().unwrap())), "{v}");
    let out = iso(&["adopt", "../spike", "--name", "again"]);
    assert!(!out.status.success() && stderr(&out).contains("already is thread"), "{}", stderr(&out));
    let out = iso(&["init", "--branch", "feature/x", "second"]);
    assert!(!out.status.success() && stderr(&out).contains("checked out at"), "{}", stderr(&out));
    let out = iso(&["cleanup", "spiké", "--delete-branch"]);
    assert!(out.status.success() && stdout(&out).contains("kept (iso did not create it)"), "{}{}", stdout(&out), stderr(&out));
    assert!(!spike.exists());
    assert_eq!(repo.git(&["branch", "--list", "spike"]).trim(), "spike");
}
