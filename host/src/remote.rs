//! The client side of `iso serve`: `iso remote connect|status|disconnect`,
//! and the HTTP calls the CLI makes in remote mode.
//!
//! The connection is kept in `$XDG_CONFIG_HOME/iso/remote.json` (mode 0600:
//! it holds the token). `ISO_API_URL` and `ISO_API_TOKEN` override it, and
//! `ISO_API_URL` alone is enough to be in remote mode.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum RemoteError {
    #[error("{status} {code}: {message}")]
    Api { status: u16, code: String, message: String },
    #[error("cannot reach {url}: {message}\n  fix: is `iso serve` running there? `iso remote status` checks; --local works without it")]
    Unreachable { url: String, message: String },
    #[error("`{0}` is not an http:// URL\n  fix: e.g. iso remote connect http://127.0.0.1:31337 --token T")]
    BadUrl(String),
    #[error("{action}: {source}")]
    Io { action: String, source: std::io::Error },
    #[error("the server answered with something that is not JSON: {0}")]
    BadAnswer(String),
}

impl RemoteError {
    /// The process exit code, as the same failure would give locally.
    pub fn exit_code(&self) -> i32 {
        match self {
            RemoteError::Api { status: 404, .. } => 3,
            RemoteError::Api { code, .. } if matches!(code.as_str(), "busy" | "would_lose_work" | "refused" | "already_running") => 5,
            RemoteError::Api { code, .. } if code == "config" || code == "no_agent" => 78,
            _ => 1,
        }
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
    let stored: Option<Connection> = connection_file()
        .and_then(|p| std::fs::read_to_string(p).ok())
        .and_then(|t| serde_json::from_str(&t).ok());
    let env_url = std::env::var("ISO_API_URL").ok().filter(|u| !u.is_empty());
    let env_token = std::env::var("ISO_API_TOKEN").ok().filter(|t| !t.is_empty());
    Ok(match (env_url, stored) {
        (Some(url), stored) => Some(Connection { url: check_url(&url)?, token: env_token.or(stored.and_then(|s| s.token)) }),
        (None, Some(s)) => Some(Connection { url: s.url, token: env_token.or(s.token) }),
        (None, None) => None,
    })
}

/// Store a connection (file mode 0600, written atomically).
pub fn save(conn: &Connection) -> Result<PathBuf, RemoteError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = connection_file().ok_or_else(|| RemoteError::Io {
        action: "find the configuration directory".into(),
        source: std::io::Error::from(std::io::ErrorKind::NotFound),
    })?;
    let dir = path.parent().expect("has a parent");
    let io = |action: String| move |source| RemoteError::Io { action, source };
    std::fs::create_dir_all(dir).map_err(io(format!("create {}", dir.display())))?;
    let tmp = path.with_extension(format!("json.tmp{}", std::process::id()));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io(format!("write {}", tmp.display())))?;
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
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(300)))
            .build()
            .into();
        Ok(Client { url, token: conn.token.clone(), agent })
    }

    fn finish(&self, r: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Result<Answer, RemoteError> {
        let mut resp = r.map_err(|e| RemoteError::Unreachable { url: self.url.clone(), message: e.to_string() })?;
        let status = resp.status().as_u16();
        let is_json = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with("application/json"));
        let text = resp.body_mut().read_to_string().map_err(|e| RemoteError::Unreachable { url: self.url.clone(), message: e.to_string() })?;
        let value = if is_json { serde_json::from_str(&text).map_err(|_| RemoteError::BadAnswer(text.chars().take(200).collect()))? } else { serde_json::Value::String(text) };
        if status >= 400 {
            let err = &value["error"];
            return Err(RemoteError::Api {
                status,
                code: err["code"].as_str().unwrap_or("error").to_string(),
                message: err["message"].as_str().map(str::to_string).unwrap_or_else(|| value.to_string()),
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
