//! The shipped chat-thread hook (hooks/chat-thread.rhai and
//! plugins/chat-thread) against a chat service in the test: a real HTTP
//! server on 127.0.0.1 that implements the few Slack and Discord endpoints
//! the hook uses (Slack `chat.postMessage`, a Discord forum webhook with
//! `?wait=true` and `thread_id`) and records every request.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use crate::hooks::{iso, iso_ok, repo, thread, wasm};
use crate::support::{git_in, stderr, TestRepo};

const TOKEN: &str = "xoxb-test-token";

/// One request the service got.
#[derive(Debug, Clone)]
struct Request {
    method: String,
    /// Path and query.
    target: String,
    authorization: Option<String>,
    body: serde_json::Value,
}

/// How the service answers.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    Works,
    /// HTTP 500 with an error body.
    Fails,
    /// Slack's HTTP 200 with `ok: false`.
    NotOk,
}

struct Chat {
    base: String,
    port: u16,
    requests: Arc<Mutex<Vec<Request>>>,
}

impl Chat {
    fn start(mode: Mode) -> Chat {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        std::thread::spawn(move || {
            // Slack threads (ts) and Discord forum posts (channel ids) made so far.
            let mut made: Vec<String> = Vec::new();
            for conn in l.incoming() {
                let Ok(mut s) = conn else { continue };
                let Some(req) = read_request(&mut s) else { continue };
                let (status, answer) = answer(mode, &req, &mut made);
                seen.lock().unwrap().push(req);
                let body = answer.to_string();
                let _ = write!(s, "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len());
            }
        });
        Chat { base: format!("http://127.0.0.1:{port}"), port, requests }
    }

    fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }
}

fn read_request(s: &mut std::net::TcpStream) -> Option<Request> {
    let mut r = BufReader::new(s.try_clone().ok()?);
    let mut first = String::new();
    r.read_line(&mut first).ok()?;
    let mut parts = first.split_whitespace();
    let (method, target) = (parts.next()?.to_string(), parts.next()?.to_string());
    let (mut len, mut chunked, mut authorization) = (0usize, false, None);
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).ok()? == 0 || line == "\r\n" {
            break;
        }
        let (name, value) = line.split_once(':')?;
        let (name, value) = (name.trim().to_ascii_lowercase(), value.trim().to_string());
        match name.as_str() {
            "content-length" => len = value.parse().unwrap_or(0),
            "transfer-encoding" => chunked = value.contains("chunked"),
            "authorization" => authorization = Some(value),
            _ => {}
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            let mut size = String::new();
            r.read_line(&mut size).ok()?;
            let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            let mut chunk = vec![0; n + 2];
            r.read_exact(&mut chunk).ok()?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
    } else {
        body.resize(len, 0);
        r.read_exact(&mut body).ok()?;
    }
    Some(Request { method, target, authorization, body: serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null) })
}

/// What Slack or Discord would answer (the parts the hook reads).
fn answer(mode: Mode, req: &Request, made: &mut Vec<String>) -> (u16, serde_json::Value) {
    use serde_json::json;
    match mode {
        Mode::Fails => return (500, json!({"ok": false, "error": "internal_error"})),
        Mode::NotOk => return (200, json!({"ok": false, "error": "channel_not_found"})),
        Mode::Works => {}
    }
    let b = &req.body;
    if req.method == "POST" && req.target == "/api/chat.postMessage" {
        if req.authorization.as_deref() != Some(&format!("Bearer {TOKEN}")) {
            return (200, json!({"ok": false, "error": "invalid_auth"}));
        }
        let Some(channel) = b["channel"].as_str() else { return (200, json!({"ok": false, "error": "channel_not_found"})) };
        if let Some(ts) = b["thread_ts"].as_str() {
            if !made.iter().any(|m| m == ts) {
                return (200, json!({"ok": false, "error": "thread_not_found"}));
            }
        }
        let ts = format!("1700000000.{:06}", made.len() + 1);
        made.push(ts.clone());
        return (200, json!({"ok": true, "channel": channel, "ts": ts, "message": {"text": b["text"]}}));
    }
    if req.method == "POST" && req.target.starts_with("/api/webhooks/77/secret-token?") {
        let query = req.target.split_once('?').unwrap().1;
        if !query.split('&').any(|p| p == "wait=true") {
            return (204, json!(null));
        }
        let channel = match query.split('&').find_map(|p| p.strip_prefix("thread_id=")) {
            Some(id) if made.iter().any(|m| m == id) => id.to_string(),
            Some(_) => return (400, json!({"message": "Unknown Channel", "code": 10003})),
            None if b["thread_name"].as_str().is_some_and(|n| !n.is_empty()) => {
                let id = format!("900{}", made.len() + 1);
                made.push(id.clone());
                id
            }
            None => return (400, json!({"message": "Webhooks posted to forum channels must have a thread_name or thread_id", "code": 220001})),
        };
        return (200, json!({"id": format!("55{}", made.len()), "channel_id": channel, "content": b["content"]}));
    }
    (404, json!({"ok": false, "error": "unknown_method"}))
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Rhai,
    Wasm,
}

#[derive(Clone, Copy, PartialEq)]
enum Provider {
    Slack,
    Discord,
}

/// A repository whose chat-thread hook (Rhai or WASM) talks to `chat`;
/// `hosts` is its allow.hosts.
fn chat_repo(kind: Kind, provider: Provider, chat: &Chat, hosts: &str) -> TestRepo {
    let file = match kind {
        Kind::Rhai => "rhai = \"hooks/chat-thread.rhai\"".to_string(),
        Kind::Wasm => format!("wasm = \"{}\"", wasm("iso_chat_thread.wasm")),
    };
    let (config, env) = match provider {
        // The token through token_env: a variable of the hook's env.
        Provider::Slack => (
            format!("{{ provider = \"slack\", token_env = \"SLACK_BOT_TOKEN\", channel = \"C123\", api = \"{}/api\" }}", chat.base),
            format!("[env]\nSLACK_BOT_TOKEN = \"{TOKEN}\"\n"),
        ),
        Provider::Discord => (format!("{{ provider = \"discord\", webhook = \"{}/api/webhooks/77/secret-token\", guild = \"42\" }}", chat.base), String::new()),
    };
    let repo = repo(&format!(
        "{env}\n[[hooks]]\nname = \"chat\"\nevent = [\"post-init\", \"agent-status\", \"pre-cleanup\"]\n{file}\nallow.hosts = [{hosts}]\nconfig = {config}\n"
    ));
    if kind == Kind::Rhai {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../hooks/chat-thread.rhai");
        repo.write("hooks/chat-thread.rhai", &std::fs::read_to_string(script).unwrap());
    }
    repo
}

fn history(t: &serde_json::Value) -> String {
    serde_json::to_string(&t["history"]).unwrap()
}

/// init opens the chat thread and keeps its link; an agent-status event and
/// the cleanup summary go into that thread; nothing is ever deleted.
fn lifecycle(kind: Kind, provider: Provider) {
    let chat = Chat::start(Mode::Works);
    let repo = chat_repo(kind, provider, &chat, &format!("\"127.0.0.1:{}\"", chat.port));
    let out = iso(&repo, &["init", "web", "--task", "add the login page <!channel> @everyone"]);
    assert!(out.status.success(), "init failed:\n{}", stderr(&out));
    let t = thread(&repo, 1);
    assert_eq!(t["status"], "active", "{t}");

    let first = &chat.requests()[0];
    let (link, reference) = match provider {
        Provider::Slack => {
            assert_eq!(first.target, "/api/chat.postMessage");
            assert_eq!(first.authorization.as_deref(), Some(format!("Bearer {TOKEN}").as_str()));
            assert_eq!(first.body["channel"], "C123", "{:?}", first.body);
            assert!(first.body["thread_ts"].is_null(), "{:?}", first.body);
            ("https://slack.com/archives/C123/p1700000000000001", "C123/1700000000.000001")
        }
        Provider::Discord => {
            assert_eq!(first.target, "/api/webhooks/77/secret-token?wait=true");
            assert_eq!(first.body["thread_name"], "iso 1: web", "{:?}", first.body);
            ("https://discord.com/channels/42/9001", "9001")
        }
    };
    let text = |r: &Request| r.body[if provider == Provider::Slack { "text" } else { "content" }].as_str().unwrap_or_default().to_string();
    assert!(text(first).contains("iso thread 1 (web)") && text(first).contains("add the login page"), "{:?}", first.body);
    // The user's text pings no one.
    match provider {
        Provider::Slack => assert!(text(first).contains("&lt;!channel&gt;") && !text(first).contains('<'), "{:?}", first.body),
        Provider::Discord => assert_eq!(first.body["allowed_mentions"], serde_json::json!({"parse": []}), "{:?}", first.body),
    }
    assert_eq!(t["links"]["chat"], link, "{t}");
    assert_eq!(t["links"]["chat-thread"], reference, "{t}");
    assert!(history(&t).contains(&format!("opened a chat thread: {link}")), "{}", history(&t));
    let human = iso_ok(&repo, &["status", "1"]);
    assert!(human.lines().any(|l| l.starts_with("links") && l.contains("chat") && l.contains(link)), "{human}");
    // The webhook's secret is not in the thread's record.
    assert!(!t.to_string().contains("secret-token"), "{t}");
    if kind == Kind::Rhai && provider == Provider::Slack {
        // The API's thread has the links too.
        let server = crate::support::server::Server::start(&repo, Some("chat-test-token"));
        let agent: ureq::Agent = ureq::Agent::config_builder().timeout_global(Some(std::time::Duration::from_secs(60))).build().into();
        let mut res = agent.get(format!("{}/api/threads/1", server.url)).header("authorization", "Bearer chat-test-token").call().unwrap();
        let v: serde_json::Value = serde_json::from_str(&res.body_mut().read_to_string().unwrap()).unwrap();
        assert_eq!(v["links"]["chat"], link, "{v}");
    }

    // An agent status change, published through the custom-event path.
    let payload = r#"{"state": "waiting", "message": "needs a decision on the schema", "previous": "working"}"#;
    let out = iso(&repo, &["hooks", "run", "agent-status", "1", "--payload", payload]);
    assert!(out.status.success(), "{}", stderr(&out));
    let status = &chat.requests()[1];
    match provider {
        Provider::Slack => assert_eq!(status.body["thread_ts"], "1700000000.000001", "{:?}", status.body),
        Provider::Discord => assert_eq!(status.target, "/api/webhooks/77/secret-token?wait=true&thread_id=9001"),
    }
    assert!(text(status).contains("working → waiting: needs a decision on the schema"), "{:?}", status.body);

    if kind == Kind::Wasm && provider == Provider::Slack {
        // A lost registry does not lose the links: the spare record beside
        // the worktree's git metadata has them.
        std::fs::remove_file(repo.path(".git/iso/registry.toml")).unwrap();
        let out = iso(&repo, &["doctor", "--fix"]);
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(thread(&repo, 1)["links"]["chat"], link, "{}", stderr(&out));
    }

    // Cleanup posts the summary, with the commits, into the same thread.
    let wt = PathBuf::from(t["worktree"].as_str().unwrap());
    std::fs::write(wt.join("login.html"), "<form>").unwrap();
    git_in(&wt, &["add", "login.html"]);
    git_in(&wt, &["commit", "-q", "-m", "add the login form"]);
    iso_ok(&repo, &["update", "1", "--pr", "12"]);
    let out = iso(&repo, &["cleanup", "1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let all = chat.requests();
    assert_eq!(all.len(), 3, "{all:?}");
    let summary = &all[2];
    match provider {
        Provider::Slack => assert_eq!(summary.body["thread_ts"], "1700000000.000001", "{:?}", summary.body),
        Provider::Discord => assert!(summary.target.ends_with("thread_id=9001"), "{}", summary.target),
    }
    let s = text(summary);
    assert!(s.contains("1 commit(s) ahead of main") && s.contains("add the login form") && s.contains("login.html"), "{s}");
    assert!(s.contains("Task: add the login page") && s.contains("PR #12"), "{s}");
    // Only posts: nothing was deleted or archived.
    assert!(all.iter().all(|r| r.method == "POST" && !r.target.contains("delete") && !r.target.contains("archive")), "{all:?}");

    // The removed thread keeps its links.
    let list = repo.iso_json(&["list", "--all"]);
    let removed = list.as_array().unwrap().iter().find(|t| t["id"] == 1).unwrap().clone();
    assert_eq!(removed["status"], "removed", "{removed}");
    assert_eq!(removed["links"]["chat"], link, "{removed}");
    assert!(history(&removed).contains("posted the summary to the chat thread"), "{}", history(&removed));
}

#[test]
fn rhai_hook_keeps_a_slack_thread() {
    lifecycle(Kind::Rhai, Provider::Slack);
}

#[test]
fn rhai_hook_keeps_a_discord_thread() {
    lifecycle(Kind::Rhai, Provider::Discord);
}

#[test]
fn wasm_hook_keeps_a_slack_thread() {
    lifecycle(Kind::Wasm, Provider::Slack);
}

#[test]
fn wasm_hook_keeps_a_discord_thread() {
    lifecycle(Kind::Wasm, Provider::Discord);
}

/// A chat service that fails is a warning: the thread is made, without a
/// link. A host outside allow.hosts is denied and reaches nothing.
fn service_errors(kind: Kind) {
    for (mode, said) in [(Mode::Fails, "answered 500: internal_error"), (Mode::NotOk, "channel_not_found")] {
        let chat = Chat::start(mode);
        let repo = chat_repo(kind, Provider::Slack, &chat, &format!("\"127.0.0.1:{}\"", chat.port));
        let out = iso(&repo, &["init", "web"]);
        assert!(out.status.success(), "init failed:\n{}", stderr(&out));
        assert!(stderr(&out).contains(said), "{}", stderr(&out));
        let t = thread(&repo, 1);
        assert_eq!(t["status"], "active", "{t}");
        assert!(t["links"].is_null(), "{t}");
        assert!(history(&t).contains("warning: no chat thread was opened") && history(&t).contains(said), "{}", history(&t));
        assert_eq!(chat.requests().len(), 1);
    }

    let chat = Chat::start(Mode::Works);
    let repo = chat_repo(kind, Provider::Slack, &chat, "\"127.0.0.1:1\"");
    let out = iso(&repo, &["init", "web"]);
    let t = thread(&repo, 1);
    // Not optional: the thread is kept, marked failed, with why.
    assert_eq!(t["status"], "failed", "{t}\n{}", stderr(&out));
    let why = format!("{} {}", t["error"], stderr(&out));
    assert!(why.contains("allow.hosts"), "{why}");
    assert!(chat.requests().is_empty(), "{:?}", chat.requests());
}

/// Links a hook sets are checked: a bad name or a 17th link is a hook error
/// that names the limit, and nothing of that call is kept.
#[test]
fn links_past_their_limits_fail_the_hook() {
    for (script, said) in [
        ("for i in 0..17 { set_link(`l${i}`, \"https://x.example\"); }", "at most 16 links"),
        ("set_link(\"Chat Room\", \"https://x.example\");", "a-z, 0-9 and -"),
        ("let s = \"x\";\ns.pad(3000, \"x\");\nset_link(\"chat\", \"https://x.example/\" + s);", "at most 2048 (2 KiB)"),
    ] {
        let repo = repo("\n[[hooks]]\nname = \"links\"\nevent = \"post-init\"\nrhai = \"hooks/links.rhai\"\n");
        repo.write("hooks/links.rhai", script);
        let out = iso(&repo, &["init", "web"]);
        let t = thread(&repo, 1);
        assert_eq!(t["status"], "failed", "{t}");
        let why = format!("{} {}", t["error"], stderr(&out));
        assert!(why.contains(said), "{said}: {why}");
        assert!(t["links"].is_null(), "{t}");
    }
}

#[test]
fn rhai_hook_service_errors_are_warnings_and_hosts_are_granted() {
    service_errors(Kind::Rhai);
}

#[test]
fn wasm_hook_service_errors_are_warnings_and_hosts_are_granted() {
    service_errors(Kind::Wasm);
}
