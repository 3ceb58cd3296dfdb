//! The real Compose: where a Compose v2 binary is on the machine, its
//! normalised model (`config --format json`) is the truth.
//!
//! Found in this order: `ISO_COMPOSE_BIN` (a path, or `builtin` for iso's
//! own loader), the Docker CLI plugin directories (`docker compose`), then a
//! `docker-compose` on PATH that says it is v2 (Compose v1, Debian's 1.29,
//! has no `config --format json`). The binary is run directly rather than
//! through `docker compose`: the Docker CLI in between costs ~40 ms a call.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use super::model::Model;
use super::LoadError;

/// Where the plugin lives for the Docker CLI (its own search order).
fn plugin_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    match std::env::var_os("DOCKER_CONFIG") {
        Some(c) => dirs.push(PathBuf::from(c).join("cli-plugins")),
        None => {
            if let Some(h) = dirs::home_dir() {
                dirs.push(h.join(".docker/cli-plugins"));
            }
        }
    }
    for d in ["/usr/local/lib/docker/cli-plugins", "/usr/local/libexec/docker/cli-plugins", "/usr/lib/docker/cli-plugins", "/usr/libexec/docker/cli-plugins"] {
        dirs.push(PathBuf::from(d));
    }
    dirs
}

/// The Compose v2 binary to use, if any (looked up once per process).
pub fn find() -> Option<&'static Path> {
    static FOUND: OnceLock<Option<PathBuf>> = OnceLock::new();
    FOUND.get_or_init(find_uncached).as_deref()
}

fn find_uncached() -> Option<PathBuf> {
    if let Some(v) = std::env::var_os("ISO_COMPOSE_BIN").filter(|v| !v.is_empty()) {
        return (v != "builtin").then(|| PathBuf::from(v));
    }
    if let Some(p) = plugin_dirs().into_iter().map(|d| d.join("docker-compose")).find(|p| is_executable(p)) {
        return Some(p);
    }
    let on_path = std::env::var_os("PATH").into_iter().flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>()).map(|d| d.join("docker-compose"));
    on_path.filter(|p| is_executable(p)).find(|p| version(p).is_some_and(|v| v.starts_with('2') || v.starts_with("v2")))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// `version --short` of the binary at `p`.
pub fn version(p: &Path) -> Option<String> {
    let out = Command::new(p).args(["version", "--short"]).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Run `config --format json` on the project. `env` is the complete
/// environment Compose interpolates with (it reads the project's `.env`
/// itself). Returns the model and Compose's warnings.
pub fn load(bin: &Path, files: &[PathBuf], project_dir: &Path, profiles: &[String], env: &BTreeMap<String, String>) -> Result<(Model, Vec<String>), LoadError> {
    let first = files.first().cloned().unwrap_or_default();
    let mut cmd = Command::new(bin);
    cmd.arg("--project-directory").arg(project_dir);
    for f in files {
        cmd.arg("-f").arg(f);
    }
    for p in profiles {
        cmd.args(["--profile", p]);
    }
    cmd.args(["config", "--format", "json"]).env_clear().envs(env).current_dir(project_dir);
    let out = cmd.output().map_err(|e| LoadError::new(&first, format!("could not run {}: {e}", bin.display())))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        return Err(located_error(files, compose_message(&stderr)));
    }
    // `config` writes every `$` of a value as `$$` (so the output is a
    // valid Compose file again); `$` appears in JSON only inside strings.
    let json = String::from_utf8_lossy(&out.stdout).replace("$$", "$");
    let model: Model = serde_json::from_str(&json).map_err(|e| LoadError::new(&first, format!("unexpected output of {} config: {e}", bin.display())))?;
    Ok((model, warnings(&stderr)))
}

/// Compose's words for a failure, without its log decoration.
fn compose_message(stderr: &str) -> String {
    let lines: Vec<String> = stderr.lines().filter(|l| !l.trim().is_empty()).map(|l| log_msg(l).unwrap_or_else(|| l.trim().to_string())).collect();
    lines.join("\n")
}

/// The `msg="..."` of a logrus line (`time=... level=warning msg="..."`).
fn log_msg(line: &str) -> Option<String> {
    let i = line.find("msg=\"")?;
    let rest = &line[i + 5..];
    let mut out = String::new();
    let mut chars = rest.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.extend(chars.next()),
            '"' => break,
            c => out.push(c),
        }
    }
    Some(out)
}

fn warnings(stderr: &str) -> Vec<String> {
    stderr.lines().filter(|l| l.contains("level=warning")).filter_map(log_msg).collect()
}

/// A required-variable error names the variable; find the file and line
/// that asks for it, which Compose does not say.
fn located_error(files: &[PathBuf], message: String) -> LoadError {
    let first = files.first().cloned().unwrap_or_default();
    let var = message.split("required variable ").nth(1).and_then(|r| r.split_whitespace().next()).map(str::to_string);
    if let Some(var) = var {
        for f in files {
            let Ok(text) = std::fs::read_to_string(f) else { continue };
            for (i, line) in text.lines().enumerate() {
                if line.contains(&format!("${{{var}:?")) || line.contains(&format!("${{{var}?")) {
                    let mut e = LoadError::new(f, message.clone());
                    e.line = Some(i + 1);
                    return e;
                }
            }
        }
    }
    LoadError::new(&first, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_lines_become_messages() {
        let s = "time=\"2026-01-01T00:00:00Z\" level=warning msg=\"The \\\"X\\\" variable is not set. Defaulting to a blank string.\"\nerror here\n";
        assert_eq!(warnings(s), ["The \"X\" variable is not set. Defaulting to a blank string."]);
        assert_eq!(compose_message(s), "The \"X\" variable is not set. Defaulting to a blank string.\nerror here");
    }

    #[test]
    fn a_required_variable_is_found_in_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("compose.yml");
        let b = dir.path().join("compose.override.yml");
        std::fs::write(&a, "services:\n  x:\n    image: y\n").unwrap();
        std::fs::write(&b, "services:\n  x:\n    environment:\n      K: ${SECRET_KEY:?Variable not set}\n").unwrap();
        let e = located_error(&[a, b.clone()], "error while interpolating services.x.environment.K: required variable SECRET_KEY is missing a value".into());
        assert_eq!((e.file, e.line), (b, Some(4)));
    }
}
