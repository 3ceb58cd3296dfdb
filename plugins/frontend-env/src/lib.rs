//! `frontend-env`: points a frontend's `.env` file at the thread's own API
//! port, and puts the file back as it was when the thread is cleaned up.
//!
//! A frontend checked out in a thread's worktree still talks to
//! `http://localhost:8000` (or whatever its `.env` says), i.e. to the main
//! checkout's backend. This hook rewrites one key of that file so the
//! thread's frontend talks to the thread's backend.
//!
//! Events:
//! - `post-init`, `post-up` (any `post-*` event except `post-cleanup`): if
//!   the file exists and `<file>.original` does not, copies the file to
//!   `<file>.original`; then sets `KEY=url`, replacing an existing `KEY=…`
//!   or `export KEY=…` line, else appending one. Every other line is kept as
//!   it was. A missing file is created (and nothing is backed up). Running it
//!   twice changes nothing. The variable is also returned for the thread's
//!   `.env.thread`.
//! - `pre-cleanup`: renames `<file>.original` back over the file, if it is
//!   there.
//! - anything else: does nothing.
//!
//! Which worktree: with a `file` configured, the thread's (primary)
//! worktree, as before. Without one, the thread's worktree in the linked
//! repository `repo` (config; default `frontend`) when the thread has one
//! (`[repos]` in iso.toml; listed by `host.worktrees`, since iso:hooks
//! 0.1.2), else the primary worktree. A linked worktree must be granted:
//! `allow.paths = [{ repo = "frontend", path = "." }]`.
//!
//! Config (the hook's `config` table in `iso.toml`):
//! - `file`: the file, relative to the worktree. Default `".env"`.
//! - `repo`: the linked repository whose worktree holds `.env`. Default
//!   `frontend` when the thread has it; naming one the thread lacks fails.
//! - `key`: the variable to set. Default `"VITE_BACKEND_API_URL"`.
//! - `port`: the name of the thread's port to point at. Default `"api"`.
//! - `url`: the value; `{port}` is replaced by that port's number. Default
//!   `"http://localhost:{port}"`.
//!
//! Grants: none beyond the defaults (the worktree, read-write).

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use serde::Deserialize;

wit_bindgen::generate!({
    path: "../../wit",
    world: "iso:hooks/hook",
    generate_all,
});

use exports::iso::hooks::handler::Guest;
use iso::hooks::host;
use iso::hooks::types::{EnvVar, Event, Failure, Outcome};

struct FrontendEnv;

export!(FrontendEnv);

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Config {
    file: Option<String>,
    repo: Option<String>,
    key: String,
    port: String,
    url: String,
}

impl Default for Config {
    fn default() -> Self {
        Config { file: None, repo: None, key: "VITE_BACKEND_API_URL".into(), port: "api".into(), url: "http://localhost:{port}".into() }
    }
}

impl Guest for FrontendEnv {
    fn handle(event: Event) -> Result<Outcome, Failure> {
        let config: Config = serde_json::from_str(&host::config()).map_err(|e| {
            let e = config_error(e);
            Failure::Failed(format!(
                "bad `config` table in this hook's [[hooks]] entry: {e} \
                 (keys: file, repo, key, port, url)"
            ))
        })?;
        if config.key.is_empty() || config.key.contains(['=', '\n', ' ']) {
            return Err(Failure::Failed(format!("config `key` = {:?} is not a variable name; set it to e.g. \"VITE_BACKEND_API_URL\"", config.key)));
        }
        let worktrees = host::worktrees();
        let linked = |name: &str| worktrees.iter().find(|(n, _)| n == name && n != "main").map(|(_, p)| p.clone());
        let (dir, shown) = match (&config.file, &config.repo) {
            (Some(_), None) => (event.thread.worktree_path.clone(), None),
            (_, Some(name)) => match linked(name) {
                Some(p) => (p, Some(name.clone())),
                None => {
                    let names: Vec<&str> = worktrees.iter().map(|(n, _)| n.as_str()).filter(|n| *n != "main").collect();
                    return Err(Failure::Failed(format!(
                        "config `repo` = {name:?}, but thread {} has no worktree in such a repository (it has: {}); see [repos] in iso.toml",
                        event.thread.id,
                        if names.is_empty() { "none".to_string() } else { names.join(", ") }
                    )));
                }
            },
            (None, None) => match linked("frontend") {
                Some(p) => (p, Some("frontend".to_string())),
                None => (event.thread.worktree_path.clone(), None),
            },
        };
        let file_rel = config.file.clone().unwrap_or_else(|| ".env".to_string());
        let file = Path::new(&dir).join(&file_rel);
        let backup = backup_path(&file);
        let shown_file = match &shown {
            Some(repo) => format!("{repo}:{file_rel}"),
            None => file_rel.clone(),
        };
        let backup_name = format!("{shown_file}.original");

        match event.name.as_str() {
            "pre-cleanup" => restore(&file, &backup, &shown_file, &backup_name),
            "post-cleanup" => nothing_to_do(&event.name),
            name if name.starts_with("post-") => {
                let Some(port) = event.thread.ports.iter().find(|p| p.name == config.port) else {
                    let names: Vec<&str> = event.thread.ports.iter().map(|p| p.name.as_str()).collect();
                    let has = if names.is_empty() { "the thread has no ports".to_string() } else { format!("the thread has: {}", names.join(", ")) };
                    return Err(Failure::Failed(format!("no port named `{}`; {has} (set config `port` to one of them)", config.port)));
                };
                let url = config.url.replace("{port}", &port.number.to_string());
                if url.contains('\n') {
                    return Err(Failure::Failed("config `url` must be a single line".into()));
                }
                set(&file, &backup, &shown_file, &backup_name, &config.key, &url)
            }
            _ => nothing_to_do(&event.name),
        }
    }
}

fn nothing_to_do(event: &str) -> Result<Outcome, Failure> {
    Ok(Outcome {
        messages: vec![format!("nothing to do on `{event}` (frontend-env sets the key on post-init/post-up and restores the file on pre-cleanup)")],
        env: Vec::new(),
    })
}

/// `<file>.original`, next to the file.
fn backup_path(file: &Path) -> PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push(".original");
    PathBuf::from(name)
}

fn set(file: &Path, backup: &Path, file_name: &str, backup_name: &str, key: &str, url: &str) -> Result<Outcome, Failure> {
    let existing = match fs::read_to_string(file) {
        Ok(text) => Some(text),
        Err(e) if e.kind() == ErrorKind::NotFound => None,
        Err(e) => {
            return Err(Failure::Failed(format!(
                "could not read {file_name}: {e} \
                 (is it a UTF-8 text file inside the worktree, or a granted directory?)"
            )));
        }
    };

    let note = match &existing {
        Some(_) => {
            if !exists(backup, backup_name)? {
                fs::copy(file, backup).map_err(|e| Failure::Failed(format!("could not back up {file_name} to {backup_name}: {e}")))?;
            }
            format!("backup in {backup_name}")
        }
        None => "created it; there was no file to back up".to_string(),
    };

    let updated = set_key(existing.as_deref().unwrap_or(""), key, url);
    if existing.as_deref() != Some(updated.as_str()) {
        fs::write(file, &updated).map_err(|e| {
            let hint = match file.parent() {
                Some(dir) if existing.is_none() && !dir.exists() => " (its directory does not exist in the worktree: check config `file`)",
                _ => "",
            };
            Failure::Failed(format!("could not write {file_name}: {e}{hint}"))
        })?;
    }

    Ok(Outcome { messages: vec![format!("set {key}={url} in {file_name} ({note})")], env: vec![EnvVar { name: key.to_string(), value: url.to_string() }] })
}

fn restore(file: &Path, backup: &Path, file_name: &str, backup_name: &str) -> Result<Outcome, Failure> {
    if !exists(backup, backup_name)? {
        return Ok(Outcome { messages: vec![format!("nothing to restore: there is no {backup_name} (left {file_name} as it is)")], env: Vec::new() });
    }
    fs::rename(backup, file).map_err(|e| Failure::Failed(format!("could not restore {file_name} from {backup_name}: {e}")))?;
    Ok(Outcome { messages: vec![format!("restored {file_name} from {backup_name}")], env: Vec::new() })
}

fn exists(path: &Path, name: &str) -> Result<bool, Failure> {
    path.try_exists().map_err(|e| Failure::Failed(format!("could not look for {name}: {e}")))
}

/// Sets `key=value` in the text of an env file: every `key=…` or
/// `export key=…` line gets the new value (keeping its `export`), or a line is
/// appended when there is none. Other lines, line endings and the final
/// newline are kept.
fn set_key(text: &str, key: &str, value: &str) -> String {
    let mut out = String::with_capacity(text.len() + key.len() + value.len() + 2);
    let mut found = false;
    for line in text.split_inclusive('\n') {
        let ending = if line.ends_with("\r\n") {
            "\r\n"
        } else if line.ends_with('\n') {
            "\n"
        } else {
            ""
        };
        let body = &line[..line.len() - ending.len()];
        match assignment_prefix(body, key) {
            Some(prefix) => {
                found = true;
                out.push_str(prefix);
                out.push_str(key);
                out.push('=');
                out.push_str(value);
                out.push_str(ending);
            }
            None => out.push_str(line),
        }
    }
    if !found {
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        out.push_str(key);
        out.push('=');
        out.push_str(value);
        out.push('\n');
    }
    out
}

/// When `line` assigns `key`, what stands before the key (indentation and
/// `export `).
fn assignment_prefix<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let rest = line.trim_start();
    let rest = match rest.strip_prefix("export") {
        Some(after) if after.starts_with([' ', '\t']) => after.trim_start(),
        _ => rest,
    };
    let after_key = rest.strip_prefix(key)?;
    if !after_key.trim_start_matches([' ', '\t']).starts_with('=') {
        return None;
    }
    Some(&line[..line.len() - rest.len()])
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

#[cfg(test)]
mod tests {
    use super::set_key;

    #[test]
    fn replaces_appends_and_keeps_the_rest() {
        let text = "# api\nVITE_BACKEND_API_URL=http://localhost:8000\nOTHER=1\n";
        let once = set_key(text, "VITE_BACKEND_API_URL", "http://localhost:10102");
        assert_eq!(once, "# api\nVITE_BACKEND_API_URL=http://localhost:10102\nOTHER=1\n");
        assert_eq!(set_key(&once, "VITE_BACKEND_API_URL", "http://localhost:10102"), once);
        assert_eq!(set_key("export K = a\r\nKEY=b", "K", "x"), "export K=x\r\nKEY=b");
        assert_eq!(set_key("A=1", "K", "x"), "A=1\nK=x\n");
        assert_eq!(set_key("", "K", "x"), "K=x\n");
    }
}
