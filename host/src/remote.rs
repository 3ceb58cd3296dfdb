//! The client side of `iso serve`: `iso remote connect|status|disconnect`,
//! and the HTTP calls the CLI makes in remote mode.
//!
//! The connection is kept in `$XDG_CONFIG_HOME/iso/remote.json` (mode 0600:
//! it holds the token). `ISO_API_URL` and `ISO_API_TOKEN` override it, and
//! `ISO_API_URL` alone is enough to be in remote mode.

use std::path::PathBuf;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::error::{Diagnostic, ErrorKind};
use crate::lifecycle::{CleanupOptions, Created, InitOptions, Listing, Run, Snapshot, SnapshotSaved, StatusView, Update};
use crate::thread::{ThreadRecord, ThreadStatus};

#[derive(Debug, Error)]
pub enum RemoteError {
    /// The server's error, with the kind and hint it gave.
    #[error("{}", api_message(*.status, .code, .message))]
    Api { status: u16, code: String, kind: ErrorKind, message: String, hint: Option<String> },
    #[error("cannot reach {url}: {message}")]
    Unreachable { url: String, message: String },
    #[error("`{0}` is not an http:// URL")]
    BadUrl(String),
    #[error("{action}: {source}")]
    Io { action: String, source: std::io::Error },
    #[error("the server answered with something iso does not understand: {0}")]
    BadAnswer(String),
}

impl Diagnostic for RemoteError {
    fn kind(&self) -> ErrorKind {
        match self {
            RemoteError::Api { kind, .. } => *kind,
            RemoteError::Unreachable { .. } => ErrorKind::Unavailable,
            RemoteError::BadUrl(_) => ErrorKind::Invalid,
            RemoteError::Io { .. } | RemoteError::BadAnswer(_) => ErrorKind::Internal,
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            RemoteError::Api { hint, .. } => hint.clone(),
            RemoteError::Unreachable { .. } => Some("is `iso serve` running there? `iso remote status` checks; --local works without it".into()),
            RemoteError::BadUrl(_) => Some("e.g. iso remote connect http://127.0.0.1:31337 --token T".into()),
            _ => None,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            // The server's code, when it is one of the kinds; a specific
            // code is kept in `code` for display.
            RemoteError::Api { kind, .. } => kind.as_str(),
            RemoteError::Unreachable { .. } => "unreachable",
            RemoteError::BadUrl(_) => "invalid",
            RemoteError::Io { .. } | RemoteError::BadAnswer(_) => "internal",
        }
    }
}

/// An operation's error reads as it would locally; an error of the HTTP
/// exchange itself (no token, a malformed request) also says the status.
fn api_message(status: u16, code: &str, message: &str) -> String {
    if matches!(code, "unauthorized" | "bad_request" | "bad_body" | "too_large") || status == 401 {
        format!("{status} {code}: {message}")
    } else {
        message.to_string()
    }
}

/// The kind of an error answer from a server that gave none (an older iso,
/// or a proxy in between), from its HTTP status.
fn kind_of_status(status: u16) -> ErrorKind {
    match status {
        404 => ErrorKind::NotFound,
        409 => ErrorKind::Conflict,
        400 | 401 | 403 | 413 | 422 => ErrorKind::Invalid,
        503 => ErrorKind::Unavailable,
        _ => ErrorKind::Internal,
    }
}

/// A stored connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Connection {
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

/// Where the connection is stored: `ISO_REMOTE_FILE` if set (empty: none),
/// else `$XDG_CONFIG_HOME/iso/remote.json`.
pub fn connection_file() -> Option<PathBuf> {
    match std::env::var_os("ISO_REMOTE_FILE") {
        Some(p) if p.is_empty() => None,
        Some(p) => Some(PathBuf::from(p)),
        None => dirs::config_dir().map(|d| d.join("iso").join("remote.json")),
    }
}

fn check_url(url: &str) -> Result<String, RemoteError> {
    let u = url.trim().trim_end_matches('/');
    if !u.starts_with("http://") || u.len() <= "http://".len() {
        return Err(RemoteError::BadUrl(url.to_string()));
    }
    Ok(u.to_string())
}

/// The stored connection with the environment laid over it; `None` when
/// not connected.
pub fn current() -> Result<Option<Connection>, RemoteError> {
    let stored: Option<Connection> = connection_file().and_then(|p| std::fs::read_to_string(p).ok()).and_then(|t| serde_json::from_str(&t).ok());
    let env_url = std::env::var("ISO_API_URL").ok().filter(|u| !u.is_empty());
    let env_token = std::env::var("ISO_API_TOKEN").ok().filter(|t| !t.is_empty());
    Ok(match (env_url, stored) {
        (Some(url), stored) => Some(Connection { url: check_url(&url)?, token: env_token.or(stored.and_then(|s| s.token)) }),
        (None, Some(s)) => Some(Connection { url: s.url, token: env_token.or(s.token) }),
        (None, None) => None,
    })
}

/// The `ISO_API_URL` that overrides a saved connection to `saved`, if one
/// is set to another server: `connect` and `discover` warn about it, since
/// the connection they save would not be used.
pub fn env_overrides(saved: &str) -> Option<String> {
    let url = std::env::var("ISO_API_URL").ok().filter(|u| !u.is_empty())?;
    (check_url(&url).ok().as_deref() != Some(saved)).then_some(url)
}

/// Store a connection (file mode 0600, written atomically).
pub fn save(conn: &Connection) -> Result<PathBuf, RemoteError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = connection_file()
        .ok_or_else(|| RemoteError::Io { action: "find the configuration directory".into(), source: std::io::Error::from(std::io::ErrorKind::NotFound) })?;
    let dir = path.parent().expect("has a parent");
    let io = |action: String| move |source| RemoteError::Io { action, source };
    std::fs::create_dir_all(dir).map_err(io(format!("create {}", dir.display())))?;
    let tmp = path.with_extension(format!("json.tmp{}", std::process::id()));
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp).map_err(io(format!("write {}", tmp.display())))?;
    f.write_all(serde_json::to_string_pretty(conn).expect("serialises").as_bytes()).map_err(io(format!("write {}", tmp.display())))?;
    drop(f);
    std::fs::rename(&tmp, &path).map_err(io(format!("write {}", path.display())))?;
    Ok(path)
}

/// Forget the stored connection. Returns whether there was one.
pub fn forget() -> Result<bool, RemoteError> {
    match connection_file() {
        Some(p) => match std::fs::remove_file(&p) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(source) => Err(RemoteError::Io { action: format!("remove {}", p.display()), source }),
        },
        None => Ok(false),
    }
}

/// A blocking HTTP client for one server.
pub struct Client {
    pub url: String,
    token: Option<String>,
    agent: ureq::Agent,
}

/// An answer: the status and the parsed JSON body (text bodies become strings).
pub type Answer = (u16, serde_json::Value);

impl Client {
    pub fn new(conn: &Connection) -> Result<Client, RemoteError> {
        let url = check_url(&conn.url)?;
        let agent = ureq::Agent::config_builder().http_status_as_error(false).timeout_global(Some(Duration::from_secs(300))).build().into();
        Ok(Client { url, token: conn.token.clone(), agent })
    }

    fn finish(&self, r: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Result<Answer, RemoteError> {
        let mut resp = r.map_err(|e| RemoteError::Unreachable { url: self.url.clone(), message: e.to_string() })?;
        let status = resp.status().as_u16();
        let is_json = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with("application/json"));
        let text = resp.body_mut().read_to_string().map_err(|e| RemoteError::Unreachable { url: self.url.clone(), message: e.to_string() })?;
        let value = if is_json {
            serde_json::from_str(&text).map_err(|_| RemoteError::BadAnswer(text.chars().take(200).collect()))?
        } else {
            serde_json::Value::String(text)
        };
        if status >= 400 {
            let err = &value["error"];
            let kind = err["kind"].as_str().and_then(ErrorKind::from_name).unwrap_or_else(|| kind_of_status(status));
            return Err(RemoteError::Api {
                status,
                code: err["code"].as_str().unwrap_or("error").to_string(),
                kind,
                message: err["message"].as_str().map(str::to_string).unwrap_or_else(|| format!("{status}: {value}")),
                hint: err["hint"].as_str().map(str::to_string),
            });
        }
        Ok((status, value))
    }

    fn auth(&self) -> Option<String> {
        self.token.as_ref().map(|t| format!("Bearer {t}"))
    }

    pub fn get(&self, path: &str) -> Result<Answer, RemoteError> {
        let mut req = self.agent.get(format!("{}{path}", self.url));
        if let Some(a) = self.auth() {
            req = req.header("Authorization", a);
        }
        self.finish(req.call())
    }

    pub fn delete(&self, path: &str) -> Result<Answer, RemoteError> {
        let mut req = self.agent.delete(format!("{}{path}", self.url));
        if let Some(a) = self.auth() {
            req = req.header("Authorization", a);
        }
        self.finish(req.call())
    }

    pub fn post(&self, path: &str, body: &serde_json::Value) -> Result<Answer, RemoteError> {
        let mut req = self.agent.post(format!("{}{path}", self.url)).content_type("application/json");
        if let Some(a) = self.auth() {
            req = req.header("Authorization", a);
        }
        self.finish(req.send(body.to_string()))
    }

    pub fn patch(&self, path: &str, body: &serde_json::Value) -> Result<Answer, RemoteError> {
        let mut req = self.agent.patch(format!("{}{path}", self.url)).content_type("application/json");
        if let Some(a) = self.auth() {
            req = req.header("Authorization", a);
        }
        self.finish(req.send(body.to_string()))
    }
}

fn typed<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, RemoteError> {
    let text = value.to_string();
    serde_json::from_value(value).map_err(|e| RemoteError::BadAnswer(format!("{e}: {}", text.chars().take(200).collect::<String>())))
}

/// One result per name of `POST /api/threads`, in the order asked.
pub type InitResults = Vec<(String, Result<Created, RemoteError>)>;

/// The operations the CLI sends to a server in remote mode, with the same
/// typed records as the local ones.
impl Client {
    /// `POST /api/threads`: one result per name, in order.
    pub fn init(&self, names: &[String], opts: &InitOptions) -> Result<InitResults, RemoteError> {
        let base = serde_json::json!({ "base": opts.base, "task": opts.task, "no_services": opts.no_services, "context": opts.context, "seed_from": opts.seed_from, "no_seed": opts.no_seed });
        if let Some(branch) = &opts.branch {
            // One thread on an existing branch (the server refuses more names).
            let mut body = base;
            body["branch"] = branch.clone().into();
            let label = match names {
                [] => branch.clone(),
                [name] => {
                    body["name"] = name.clone().into();
                    name.clone()
                }
                _ => {
                    body["names"] = names.into();
                    branch.clone()
                }
            };
            return Ok(vec![(label, self.post("/api/threads", &body).and_then(|(_, t)| typed(t)))]);
        }
        if let [name] = names {
            let mut body = base;
            body["name"] = name.clone().into();
            return Ok(vec![(name.clone(), self.post("/api/threads", &body).and_then(|(_, t)| typed(t)))]);
        }
        let mut body = base;
        body["names"] = names.into();
        let (_, v) = self.post("/api/threads", &body)?;
        let created: Vec<Created> = typed(v["created"].clone())?;
        let mut out: Vec<(String, Result<Created, RemoteError>)> = Vec::new();
        let mut created = created.into_iter();
        let failed = v["failed"].as_array().cloned().unwrap_or_default();
        for name in names {
            match failed.iter().find(|f| f["name"] == name.as_str()) {
                Some(f) => {
                    let err = &f["error"];
                    let status = err["status"].as_u64().unwrap_or(500) as u16;
                    out.push((
                        name.clone(),
                        Err(RemoteError::Api {
                            status,
                            code: err["code"].as_str().unwrap_or("error").to_string(),
                            kind: err["kind"].as_str().and_then(ErrorKind::from_name).unwrap_or_else(|| kind_of_status(status)),
                            message: err["message"].as_str().unwrap_or("").to_string(),
                            hint: err["hint"].as_str().map(str::to_string),
                        }),
                    ))
                }
                None => match created.next() {
                    Some(t) => out.push((name.clone(), Ok(t))),
                    None => return Err(RemoteError::BadAnswer(format!("no result for `{name}`"))),
                },
            }
        }
        Ok(out)
    }

    /// `POST /api/adopt`: make the worktree at `path` (absolute) a thread.
    pub fn adopt(&self, path: &std::path::Path, name: Option<&str>, opts: &InitOptions) -> Result<Created, RemoteError> {
        let body = serde_json::json!({ "path": path, "name": name, "task": opts.task, "no_services": opts.no_services });
        self.post("/api/adopt", &body).and_then(|(_, t)| typed(t))
    }

    /// `GET /api/snapshots`: the repository's snapshots.
    pub fn snapshot_list(&self) -> Result<Vec<Snapshot>, RemoteError> {
        typed(self.get("/api/snapshots")?.1)
    }

    /// `POST /api/snapshots`: save snapshot `name` from thread `from`.
    pub fn snapshot_save(&self, name: &str, from: &str) -> Result<SnapshotSaved, RemoteError> {
        typed(self.post("/api/snapshots", &serde_json::json!({ "name": name, "from": from }))?.1)
    }

    /// `DELETE /api/snapshots/{name}`: the snapshot as it was.
    pub fn snapshot_rm(&self, name: &str) -> Result<Snapshot, RemoteError> {
        typed(self.delete(&format!("/api/snapshots/{}", segment(name)))?.1)
    }

    /// `GET /api/listing`: what `iso ls` shows.
    pub fn listing(&self, all: bool, services: bool) -> Result<Listing, RemoteError> {
        typed(self.get(&format!("/api/listing?all={all}&services={services}"))?.1)
    }

    /// `GET /api/listing` with the filters of `iso ls` (`--agent`,
    /// `--status`, `--idle`), checked by the server.
    pub fn listing_filtered(&self, all: bool, services: bool, agent: Option<&str>, status: Option<&str>, idle: Option<&str>) -> Result<Listing, RemoteError> {
        let mut path = format!("/api/listing?all={all}&services={services}");
        for (k, v) in [("agent", agent), ("status", status), ("idle", idle)] {
            if let Some(v) = v {
                path.push_str(&format!("&{k}={}", segment(v)));
            }
        }
        typed(self.get(&path)?.1)
    }

    /// `POST /api/threads/{id}/agent-status`: the thread as listings show it after the report.
    pub fn agent_status(&self, thread: &str, state: &str, message: Option<&str>) -> Result<ThreadRecord, RemoteError> {
        typed(self.post(&format!("/api/threads/{}/agent-status", segment(thread)), &serde_json::json!({ "state": state, "message": message }))?.1)
    }

    /// `GET /api/threads/{id}`: what `iso status` shows.
    pub fn status(&self, thread: &str) -> Result<StatusView, RemoteError> {
        typed(self.get(&format!("/api/threads/{}", segment(thread)))?.1)
    }

    /// `PATCH /api/threads/{id}`.
    pub fn update(&self, thread: &str, change: &Update) -> Result<ThreadRecord, RemoteError> {
        let mut body = serde_json::Map::new();
        if let Some(t) = &change.task {
            body.insert("task".into(), t.clone().into());
        }
        if let Some(pr) = change.pr {
            body.insert("pr".into(), pr.unwrap_or(0).into());
        }
        if let Some(s) = change.status {
            body.insert("status".into(), serde_json::to_value::<ThreadStatus>(s).unwrap_or_default());
        }
        typed(self.patch(&format!("/api/threads/{}", segment(thread)), &serde_json::Value::Object(body))?.1)
    }

    /// `DELETE /api/threads/{id}`.
    pub fn cleanup(&self, thread: &str, opts: CleanupOptions) -> Result<ThreadRecord, RemoteError> {
        let q = format!("?delete_branch={}&force={}&keep_volumes={}&kill_ports={}", opts.delete_branch, opts.force, opts.keep_volumes, opts.kill_ports);
        typed(self.delete(&format!("/api/threads/{}{q}", segment(thread)))?.1)
    }

    /// `POST /api/threads/{id}/start`.
    pub fn start(
        &self,
        thread: &str,
        template: Option<&str>,
        context: Option<&serde_json::Value>,
        mode: crate::lifecycle::RunMode,
    ) -> Result<Run, RemoteError> {
        typed(self.post(&format!("/api/threads/{}/start", segment(thread)), &serde_json::json!({ "template": template, "context": context, "mode": mode }))?.1)
    }

    /// `POST /api/threads/{id}/stop`.
    pub fn stop(&self, thread: &str) -> Result<Run, RemoteError> {
        typed(self.post(&format!("/api/threads/{}/stop", segment(thread)), &serde_json::json!({}))?.1)
    }

    /// `GET /api/threads/{id}/runs`.
    pub fn runs(&self, thread: &str) -> Result<Vec<Run>, RemoteError> {
        typed(self.get(&format!("/api/threads/{}/runs", segment(thread)))?.1)
    }

    /// `GET /api/threads/{id}/logs`: the log of run `run` (the latest when
    /// `None`) from byte `from` on.
    pub fn log(&self, thread: &str, run: Option<u32>, from: u64) -> Result<String, RemoteError> {
        let mut path = format!("/api/threads/{}/logs?from={from}", segment(thread));
        if let Some(n) = run {
            path.push_str(&format!("&run={n}"));
        }
        match self.get(&path)? {
            (_, serde_json::Value::String(s)) => Ok(s),
            (_, v) => Ok(v.to_string()),
        }
    }

    /// `GET /api/status`.
    pub fn server_status(&self) -> Result<crate::api::ServerStatus, RemoteError> {
        typed(self.get("/api/status")?.1)
    }
}

/// Percent-encode a path segment (thread names and branches).
pub fn segment(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_segments() {
        assert_eq!(check_url("http://127.0.0.1:1/").unwrap(), "http://127.0.0.1:1");
        assert!(check_url("ftp://x").is_err());
        assert!(check_url("http://").is_err());
        assert_eq!(segment("thread-1/x y"), "thread-1%2Fx%20y");
    }
}
