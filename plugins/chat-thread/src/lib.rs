//! `chat-thread`: a chat thread (Slack or Discord) per iso thread. The
//! same behaviour as `hooks/chat-thread.rhai`:
//!
//! - `post-init` opens the chat thread and keeps it as the thread's links
//!   (`host.set-link`): `chat`, for people, and `chat-thread`, what later
//!   posts need (Slack `<channel>/<ts>`, Discord the forum post's channel id).
//! - `agent-status` (a custom event; payload `{"state", "message",
//!   "previous"}`) posts the change into the chat thread.
//! - `pre-cleanup` posts the final summary (commits, files changed, task,
//!   PR) into the chat thread, or opens one with it when there is none.
//!
//! It never deletes or archives the chat thread.
//!
//! Slack: `POST {api}/chat.postMessage` with `Authorization: Bearer <token>`
//! and `{channel, text[, thread_ts]}`; the answer's `ts` is the thread and
//! `chat` is `https://slack.com/archives/<channel>/p<ts without the dot>`
//! (Slack's permalink form, so no extra call or scope is needed).
//! Discord: `POST {webhook}?wait=true` with `{content, thread_name}` (a
//! forum channel's webhook); the answer's `channel_id` is the thread, later
//! posts go to `{webhook}?wait=true&thread_id=<id>`, and `chat` is
//! `https://discord.com/channels/<guild>/<id>`.
//!
//! Config: `provider` = `"slack"` (`token` or `token_env` naming a variable
//! of the hook's env, `channel`, `api` default `https://slack.com/api`) or
//! `"discord"` (`webhook`, `guild` for the link).
//! Grants: `allow.hosts` must list the API's (webhook's) host.
//!
//! A chat service that answers with an error (HTTP >= 400, Slack
//! `ok: false`) or cannot be reached is a warning (logged, and a message in
//! the thread's history); a bad config or a host outside `allow.hosts`
//! (`HTTP-request-denied`) fails the hook.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Value, json};

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

struct ChatThread;

export!(ChatThread);

const EXAMPLE: &str = r#"config = { provider = "slack", token_env = "SLACK_BOT_TOKEN", channel = "C123" }"#;
/// Most of a response body that is read.
const MAX_RESPONSE: usize = 64 * 1024;
/// Largest write to a wasi:io output stream in one call.
const CHUNK: usize = 4096;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    provider: Option<String>,
    token: Option<String>,
    token_env: Option<String>,
    channel: Option<String>,
    api: Option<String>,
    webhook: Option<String>,
    guild: Option<String>,
}

/// What one hook call says (its links go through `host.set-link`).
#[derive(Default)]
struct Said {
    messages: Vec<String>,
}

impl Said {
    fn message(&mut self, text: String) {
        self.messages.push(text);
    }

    fn warn(&mut self, text: String) {
        host::log(host::Level::Warn, &text);
        self.messages.push(format!("warning: {text}"));
    }
}

impl Guest for ChatThread {
    fn handle(event: Event) -> Result<Outcome, Failure> {
        let config: Config = serde_json::from_str(&host::config())
            .map_err(|e| failed(format!("bad `config` table in this hook's [[hooks]] entry: {} (e.g. {EXAMPLE})", config_error(e))))?;
        let chat = Chat::new(config, &event.thread)?;
        let mut said = Said::default();
        let thread = &event.thread;
        match event.name.as_str() {
            "post-init" => match host::link("chat-thread") {
                Some(_) => host::log(host::Level::Info, &format!("thread {} has its chat thread already", thread.id)),
                None => chat.open(thread, &opening(thread), &mut said)?,
            },
            "agent-status" => {
                let p: Value = event.payload.as_deref().and_then(|p| serde_json::from_str(p).ok()).unwrap_or(Value::Null);
                let word = |k: &str| match &p[k] {
                    Value::Null => None,
                    Value::String(s) => Some(s.clone()),
                    v => Some(v.to_string()),
                };
                let state = word("state");
                let mut text = format!("Agent of thread {} ({}): ", thread.id, thread.name);
                if let Some(prev) = word("previous") {
                    text.push_str(&format!("{prev} → "));
                }
                text.push_str(state.as_deref().unwrap_or("(no state)"));
                if let Some(m) = word("message").filter(|m| !m.is_empty()) {
                    text.push_str(&format!(": {}", cut(&m, 1000)));
                }
                let what = format!("agent status {}", state.as_deref().unwrap_or("()"));
                if !chat.reply(&text, &what, &mut said)? {
                    said.warn(format!("{what} was not posted: thread {} has no chat thread", thread.id));
                }
            }
            "pre-cleanup" => {
                let text = summary(thread, event.git.as_ref());
                if !chat.reply(&text, "the summary", &mut said)? {
                    chat.open(thread, &text, &mut said)?;
                }
            }
            other => host::log(host::Level::Info, &format!("chat-thread does nothing on {other}")),
        }
        Ok(Outcome { messages: said.messages, env: Vec::new() })
    }
}

enum Chat {
    Slack { api: String, token: String, channel: String },
    Discord { webhook: String, guild: Option<String> },
}

impl Chat {
    fn new(c: Config, thread: &Thread) -> Result<Chat, Failure> {
        match c.provider.as_deref() {
            Some("slack") => {
                let from_env = c.token_env.as_ref().and_then(|name| thread.env.iter().find(|v| &v.name == name).map(|v| v.value.clone()));
                let token = c
                    .token
                    .or(from_env)
                    .ok_or_else(|| failed("config `token` (or `token_env`, a variable of the hook's env) is not set: the Slack bot token".to_string()))?;
                let channel = c.channel.ok_or_else(|| failed("config `channel` is not set: the Slack channel id, e.g. C123".to_string()))?;
                Ok(Chat::Slack { api: c.api.unwrap_or_else(|| "https://slack.com/api".into()), token, channel })
            }
            Some("discord") => {
                let webhook = c.webhook.ok_or_else(|| failed("config `webhook` is not set: the forum channel's webhook URL".to_string()))?;
                Ok(Chat::Discord { webhook, guild: c.guild })
            }
            other => Err(failed(format!("config `provider` must be \"slack\" or \"discord\" (got {other:?}), e.g. {EXAMPLE}"))),
        }
    }

    /// Post `text`, into the chat thread `thread` when given: the parsed
    /// answer, or why there is none (a warning). A denied host is a failure.
    fn post(&self, text: &str, thread: Option<&str>, thread_name: Option<String>) -> Result<Result<Value, String>, Failure> {
        let (url, body, headers) = match self {
            Chat::Slack { api, token, channel } => {
                // Slack reads <…> as mentions and links (<!channel> pings
                // everyone): task and names are the user's text, so they are
                // escaped as Slack asks.
                let text = text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
                let mut body = json!({ "channel": channel, "text": text });
                if let Some(ts) = thread {
                    body["thread_ts"] = json!(ts);
                }
                (format!("{api}/chat.postMessage"), body, vec![("authorization".to_string(), format!("Bearer {token}"))])
            }
            Chat::Discord { webhook, .. } => {
                let sep = if webhook.contains('?') { '&' } else { '?' };
                // No @everyone, @here or role pings from the user's text.
                let mut body = json!({ "content": cut(text, 1900), "allowed_mentions": { "parse": [] } });
                let mut url = format!("{webhook}{sep}wait=true");
                match thread {
                    Some(id) => url.push_str(&format!("&thread_id={id}")),
                    None => body["thread_name"] = json!(cut(&thread_name.unwrap_or_default(), 90)),
                }
                (url, body, Vec::new())
            }
        };
        let target = Url::parse(&url).ok_or_else(|| failed(format!("{url:?} is not an http:// or https:// URL; check config `api` or `webhook`")))?;
        let body = serde_json::to_vec(&body).expect("JSON values always serialise");
        let headers: BTreeMap<String, String> = headers.into_iter().collect();
        let (status, answer) = match post(&target, &headers, &body) {
            Ok(r) => r,
            Err(PostError::Config(m)) => return Err(failed(m)),
            Err(PostError::Denied) => return Err(failed(format!("{} is not in this hook's allow.hosts (HTTP-request-denied)", target.host))),
            Err(PostError::Transport(m)) => return Ok(Err(format!("could not reach {}: {m}", target.host))),
        };
        let parsed: Value = serde_json::from_slice(&answer).unwrap_or(Value::Null);
        let error = |v: &Value| match (&v["error"], &v["message"]) {
            (Value::String(e), _) | (_, Value::String(e)) => Some(e.clone()),
            _ => None,
        };
        if !(200..300).contains(&status) {
            let detail = error(&parsed).unwrap_or_else(|| String::from_utf8_lossy(&answer[..answer.len().min(200)]).trim().to_string());
            return Ok(Err(format!("{} answered {status}: {detail}", target.host)));
        }
        if parsed["ok"] == json!(false) {
            return Ok(Err(format!("{} answered: {}", target.host, error(&parsed).unwrap_or_default())));
        }
        Ok(Ok(parsed))
    }

    /// Open a chat thread with `text` as its first message and keep its links.
    fn open(&self, thread: &Thread, text: &str, said: &mut Said) -> Result<(), Failure> {
        let answer = match self.post(text, None, Some(format!("iso {}: {}", thread.id, thread.name)))? {
            Ok(a) => a,
            Err(why) => {
                said.warn(format!("no chat thread was opened: {why}"));
                return Ok(());
            }
        };
        let field = |v: &Value| match v {
            Value::String(s) if !s.is_empty() => Some(s.clone()),
            _ => None,
        };
        let (chat, reference) = match self {
            Chat::Slack { channel, .. } => {
                let channel = field(&answer["channel"]).unwrap_or_else(|| channel.clone());
                let Some(ts) = field(&answer["ts"]) else {
                    said.warn("no chat thread was opened: Slack's answer has no ts".into());
                    return Ok(());
                };
                (format!("https://slack.com/archives/{channel}/p{}", ts.replace('.', "")), format!("{channel}/{ts}"))
            }
            Chat::Discord { guild, .. } => {
                let Some(id) = field(&answer["channel_id"]) else {
                    said.warn("no chat thread was opened: Discord's answer has no channel_id".into());
                    return Ok(());
                };
                let guild = field(&answer["guild_id"]).or(guild.clone()).unwrap_or_else(|| "@me".into());
                (format!("https://discord.com/channels/{guild}/{id}"), id)
            }
        };
        host::set_link("chat", &chat).map_err(failed)?;
        host::set_link("chat-thread", &reference).map_err(failed)?;
        said.message(format!("opened a chat thread: {chat}"));
        Ok(())
    }

    /// Post `text` into the thread's chat thread; false when it has none.
    fn reply(&self, text: &str, what: &str, said: &mut Said) -> Result<bool, Failure> {
        let Some(at) = host::link("chat-thread") else { return Ok(false) };
        let target = match self {
            Chat::Slack { .. } => at.split_once('/').map_or(at.clone(), |(_, ts)| ts.to_string()),
            Chat::Discord { .. } => at,
        };
        match self.post(text, Some(&target), None)? {
            Ok(_) => said.message(format!("posted {what} to the chat thread {}", host::link("chat").unwrap_or_default())),
            Err(why) => said.warn(format!("{what} was not posted: {why}")),
        }
        Ok(true)
    }
}

fn failed(message: String) -> Failure {
    Failure::Failed(message)
}

/// At most `n` characters of `text`, with `…` when cut.
fn cut(text: &str, n: usize) -> String {
    match text.char_indices().nth(n) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_string(),
    }
}

/// The chat thread's first message.
fn opening(thread: &Thread) -> String {
    let mut text = format!("iso thread {} ({}) on {}, from {}", thread.id, thread.name, thread.branch, thread.base);
    if let Some(task) = &thread.task {
        text.push_str(&format!(". Task: {}", cut(task, 1000)));
    }
    if let Some(pr) = thread.pr {
        text.push_str(&format!(". PR #{pr}"));
    }
    text
}

/// The cleanup summary: commits (at most 20), files (at most 30), task, PR.
fn summary(thread: &Thread, git: Option<&GitSummary>) -> String {
    let mut text = format!("Thread {} ({}) on {} is being cleaned up", thread.id, thread.name, thread.branch);
    if let Some(git) = git {
        text.push_str(&format!(": {} commit(s) ahead of {}, {} file(s) changed", git.commits_ahead, thread.base, git.files_changed.len()));
        if !git.uncommitted.is_empty() {
            text.push_str(&format!(", {} uncommitted", git.uncommitted.len()));
        }
        text.push('.');
        for c in git.commits.iter().take(20) {
            text.push_str(&format!("\n• {}", cut(c, 200)));
        }
        if git.commits.len() > 20 {
            text.push_str(&format!("\n• … and {} more", git.commits.len() - 20));
        }
        if !git.files_changed.is_empty() {
            text.push_str("\nFiles:");
            for f in git.files_changed.iter().take(30) {
                text.push_str(&format!(" {}", cut(f, 200)));
            }
            if git.files_changed.len() > 30 {
                text.push_str(&format!(" … and {} more", git.files_changed.len() - 30));
            }
        }
    }
    if let Some(task) = &thread.task {
        text.push_str(&format!("\nTask: {}", cut(task, 1000)));
    }
    if let Some(pr) = thread.pr {
        text.push_str(&format!("\nPR #{pr}"));
    }
    text
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
    /// The host is not in allow.hosts.
    Denied,
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
    match code {
        ErrorCode::HttpRequestDenied => PostError::Denied,
        code => PostError::Transport(format!("{code:?}")),
    }
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
