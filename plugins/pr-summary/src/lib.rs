//! `pr-summary`: posts a summary of a thread (what its branch holds, its
//! task, its pull request) to a webhook as JSON.
//!
//! Events: any; meant for `pre-cleanup`, the only event that carries the
//! branch's git summary (commits ahead of the base, files changed,
//! uncommitted paths). On other events `git` is `null`.
//!
//! The body, sent as `POST <url>` with `content-type: application/json`:
//!
//! ```json
//! { "event": "pre-cleanup",
//!   "thread": { "id": 3, "name": "add-auth", "branch": "thread-3-add-auth",
//!               "base": "main", "status": "active", "task": "…", "pr": 12,
//!               "worktree": "/…/threads/3" },
//!   "git": { "commits_ahead": 2, "commits": ["abc1234 Add login"],
//!            "files_changed": ["src/auth.rs"], "uncommitted": [] },
//!   "text": "Thread 3 (add-auth) on thread-3-add-auth: 2 commits ahead of main, …" }
//! ```
//!
//! Config (the hook's `config` table in `iso.toml`):
//! - `url` (required): the webhook, `http://…` or `https://…`.
//! - `headers` (optional): a table of extra headers, e.g.
//!   `{ Authorization = "Bearer …" }`.
//!
//! Grants: `allow.hosts` must list the webhook's host, e.g.
//! `allow.hosts = ["hooks.example.com"]`.
//!
//! A 2xx answer succeeds; any other status, or no answer, fails the hook.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::json;

wit_bindgen::generate!({
    path: "../../wit",
    world: "iso:hooks/hook",
    generate_all,
});

use exports::iso::hooks::handler::Guest;
use iso::hooks::host;
use iso::hooks::types::{Event, Failure, GitSummary, Outcome, Thread};
use wasi::http::outgoing_handler;
use wasi::http::types::{ErrorCode, Fields, Method, OutgoingBody, OutgoingRequest, Scheme};
use wasi::io::streams::StreamError;

struct PrSummary;

export!(PrSummary);

const EXAMPLE: &str = r#"config = { url = "https://hooks.example.com/iso" }"#;
/// Most of a response body that is read (for error messages).
const MAX_RESPONSE: usize = 64 * 1024;
/// Largest write to a wasi:io output stream in one call.
const CHUNK: usize = 4096;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    url: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
}

impl Guest for PrSummary {
    fn handle(event: Event) -> Result<Outcome, Failure> {
        let config: Config = serde_json::from_str(&host::config()).map_err(|e| {
            let e = config_error(e);
            failed(format!(
                "bad `config` table in this hook's [[hooks]] entry: {e} \
                 (it takes `url` and `headers`, e.g. {EXAMPLE})"
            ))
        })?;
        let Some(url) = config.url else {
            return Err(failed(format!("config `url` is missing; set it to the webhook, e.g. {EXAMPLE}")));
        };
        let target = Url::parse(&url).ok_or_else(|| failed(format!("config `url` = {url:?} is not an http:// or https:// URL, e.g. {EXAMPLE}")))?;

        let body = json!({
            "event": event.name,
            "thread": thread_json(&event.thread),
            "git": event.git.as_ref().map(git_json),
            "text": summary(&event.thread, event.git.as_ref()),
        });
        let body = serde_json::to_vec(&body).expect("JSON values always serialise");

        let (status, answer) = post(&target, &config.headers, &body).map_err(|e| match e {
            PostError::Config(message) => failed(message),
            PostError::Transport(message) => failed(format!("could not reach the webhook at {}: {message} — is its host in allow.hosts?", target.host)),
        })?;
        if !(200..300).contains(&status) {
            let answer = String::from_utf8_lossy(&answer[..answer.len().min(200)]).into_owned();
            let answer = match answer.trim() {
                "" => "(empty body)",
                text => text,
            };
            // Only the host: webhook URLs often carry a secret in the path.
            return Err(failed(format!("the webhook at {} answered {status}: {answer}", target.host)));
        }
        Ok(Outcome { messages: vec![format!("posted the summary of thread {} to {}", event.thread.id, target.host)], env: Vec::new() })
    }
}

fn failed(message: String) -> Failure {
    Failure::Failed(message)
}

fn thread_json(thread: &Thread) -> serde_json::Value {
    json!({
        "id": thread.id,
        "name": thread.name,
        "branch": thread.branch,
        "base": thread.base,
        "status": thread.status,
        "task": thread.task,
        "pr": thread.pr,
        "worktree": thread.worktree_path,
    })
}

fn git_json(git: &GitSummary) -> serde_json::Value {
    json!({
        "commits_ahead": git.commits_ahead,
        "commits": git.commits,
        "files_changed": git.files_changed,
        "uncommitted": git.uncommitted,
    })
}

/// One paragraph for people, e.g. `Thread 3 (add-auth) on thread-3-add-auth:
/// 2 commits ahead of main, 5 files changed. Task: add login. PR #12.`
fn summary(thread: &Thread, git: Option<&GitSummary>) -> String {
    let mut text = format!("Thread {} ({}) on {}", thread.id, thread.name, thread.branch);
    match git {
        Some(git) => {
            text.push_str(&format!(
                ": {} ahead of {}, {} changed",
                plural(git.commits_ahead as usize, "commit"),
                thread.base,
                plural(git.files_changed.len(), "file"),
            ));
            if !git.uncommitted.is_empty() {
                text.push_str(&format!(", {} with uncommitted changes", plural(git.uncommitted.len(), "path")));
            }
            text.push('.');
        }
        None => text.push_str(&format!(" (from {}), {}.", thread.base, thread.status)),
    }
    if let Some(task) = thread.task.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
        text.push_str(" Task: ");
        text.push_str(task);
        if !task.ends_with(['.', '!', '?']) {
            text.push('.');
        }
    }
    if let Some(pr) = thread.pr {
        text.push_str(&format!(" PR #{pr}."));
    }
    text
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 { format!("1 {word}") } else { format!("{n} {word}s") }
}

/// The parts of an http(s) URL that wasi:http wants.
struct Url {
    scheme: Scheme,
    /// `host[:port]`.
    authority: String,
    /// The host alone, for messages.
    host: String,
    /// `/path?query`.
    path_with_query: String,
}

impl Url {
    fn parse(url: &str) -> Option<Url> {
        let (scheme, rest) = if let Some(rest) = url.strip_prefix("https://") {
            (Scheme::Https, rest)
        } else if let Some(rest) = url.strip_prefix("http://") {
            (Scheme::Http, rest)
        } else {
            return None;
        };
        let rest = rest.split('#').next().unwrap_or_default();
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(end);
        if authority.is_empty() || authority.contains(['@', ' ']) {
            return None;
        }
        let host = if authority.starts_with('[') {
            // [::1]:8080
            authority.split(']').next().map(|h| format!("{h}]"))?
        } else {
            authority.split(':').next()?.to_string()
        };
        let path_with_query = match path {
            "" => "/".to_string(),
            p if p.starts_with('?') => format!("/{p}"),
            p => p.to_string(),
        };
        Some(Url { scheme, authority: authority.to_string(), host, path_with_query })
    }
}

enum PostError {
    /// The request could not be built (a bad header, …).
    Config(String),
    /// The request was refused or got no answer.
    Transport(String),
}

/// POSTs `body` as JSON; returns the status and up to [`MAX_RESPONSE`] bytes
/// of the response body.
fn post(url: &Url, extra_headers: &BTreeMap<String, String>, body: &[u8]) -> Result<(u16, Vec<u8>), PostError> {
    let headers = Fields::new();
    let mut all = vec![("content-type", "application/json".to_string()), ("content-length", body.len().to_string())];
    all.extend(extra_headers.iter().map(|(k, v)| (k.as_str(), v.clone())));
    for (name, value) in &all {
        headers.append(name, value.as_bytes()).map_err(|e| PostError::Config(format!("header `{name}` cannot be sent ({e:?}); check config `headers`")))?;
    }

    let request = OutgoingRequest::new(headers);
    let bad = |what: &str| PostError::Config(format!("the host rejected the request's {what}"));
    request.set_method(&Method::Post).map_err(|()| bad("method"))?;
    request.set_scheme(Some(&url.scheme)).map_err(|()| bad("scheme"))?;
    request.set_authority(Some(&url.authority)).map_err(|()| bad("authority"))?;
    request.set_path_with_query(Some(&url.path_with_query)).map_err(|()| bad("path"))?;
    let outgoing_body = request.body().map_err(|()| bad("body"))?;

    // Send first and write the body after: the host streams the body to the
    // server as it comes and buffers little, so writing a large body before
    // `handle` would block for good.
    let future = outgoing_handler::handle(request, None).map_err(transport)?;
    let sent = write_body(outgoing_body, body);

    // A refused or failed request closes the body stream: its error code,
    // which says why, comes with the response, so look there first.
    let response = loop {
        if let Some(result) = future.get() {
            break result.map_err(|()| PostError::Transport("the response was already taken".into()))?.map_err(transport)?;
        }
        future.subscribe().block();
    };
    sent?;
    let status = response.status();

    let mut answer = Vec::new();
    if let Ok(incoming) = response.consume() {
        if let Ok(stream) = incoming.stream() {
            while answer.len() < MAX_RESPONSE {
                match stream.blocking_read((MAX_RESPONSE - answer.len()) as u64) {
                    Ok(bytes) => answer.extend_from_slice(&bytes),
                    Err(_) => break,
                }
            }
        }
    }
    Ok((status, answer))
}

/// Writes `body` in chunks of at most [`CHUNK`] bytes and finishes it.
fn write_body(outgoing_body: OutgoingBody, body: &[u8]) -> Result<(), PostError> {
    {
        let stream = outgoing_body.write().map_err(|()| PostError::Config("the host gave no body stream".into()))?;
        for chunk in body.chunks(CHUNK) {
            stream.blocking_write_and_flush(chunk).map_err(|e| stream_error("sending the body", e))?;
        }
        // The stream is dropped here: it must be before the body is finished.
    }
    OutgoingBody::finish(outgoing_body, None).map_err(transport)
}

fn transport(code: ErrorCode) -> PostError {
    PostError::Transport(format!("{code:?}"))
}

fn stream_error(what: &str, e: StreamError) -> PostError {
    match e {
        StreamError::LastOperationFailed(error) => PostError::Transport(format!("{what} failed: {}", error.to_debug_string())),
        StreamError::Closed => PostError::Transport(format!("{what} failed: the connection closed")),
    }
}

/// A config error without serde_json's position: the JSON is iso's
/// rendering of the user's TOML, so its lines and columns mean nothing to them.
fn config_error(e: serde_json::Error) -> String {
    let text = e.to_string();
    match text.rfind(" at line ") {
        Some(at) => text[..at].to_string(),
        None => text,
    }
}
