//! Rendering and writing `.env.thread`.

use std::collections::BTreeMap;
use std::path::Path;

use crate::error::{Diagnostic, ErrorKind};
use serde::Serialize;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum EnvFileError {
    #[error("env template for `{key}` failed: {message}")]
    Template { key: String, message: String },
    #[error("write {}: {source}", path.display())]
    Write { path: std::path::PathBuf, source: std::io::Error },
}

impl Diagnostic for EnvFileError {
    fn kind(&self) -> ErrorKind {
        match self {
            EnvFileError::Template { .. } => ErrorKind::Config,
            EnvFileError::Write { .. } => ErrorKind::Internal,
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            EnvFileError::Template { .. } => Some("check [env] in iso.toml; available values are thread.*, ports.*, repo.*".into()),
            EnvFileError::Write { .. } => None,
        }
    }
}

/// Render every template in `templates` against `context`. Undefined
/// values are errors, so a typo such as `ports.postgress` is caught.
pub fn render(templates: &BTreeMap<String, String>, context: &impl Serialize) -> Result<BTreeMap<String, String>, EnvFileError> {
    let mut env = minijinja::Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    let ctx = minijinja::Value::from_serialize(context);
    templates
        .iter()
        .map(|(key, template)| {
            let fail = |e: minijinja::Error| EnvFileError::Template { key: key.clone(), message: e.to_string() };
            let value = env.render_str(template, &ctx).map_err(fail)?;
            Ok((key.clone(), value))
        })
        .collect()
}

/// Write `vars` as a dotenv file, quoting values that need it.
pub fn write(path: &Path, header: &str, vars: &BTreeMap<String, String>) -> Result<(), EnvFileError> {
    let mut text = String::new();
    for line in header.lines() {
        text.push_str("# ");
        text.push_str(line);
        text.push('\n');
    }
    for (k, v) in vars {
        text.push_str(k);
        text.push('=');
        text.push_str(&quote(v));
        text.push('\n');
    }
    std::fs::write(path, text).map_err(|source| EnvFileError::Write { path: path.to_path_buf(), source })
}

/// The variables of a file [`write`] wrote (comments skipped, quoting
/// undone). A missing or unreadable file gives none.
pub fn read(path: &Path) -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), unquote(v.trim())))
        .collect()
}

fn unquote(value: &str) -> String {
    let Some(inner) = value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) else { return value.to_string() };
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

fn quote(value: &str) -> String {
    let plain = !value.is_empty() && value.chars().all(|c| c.is_ascii_alphanumeric() || "-_./:@%+,=?&".contains(c));
    if plain {
        value.to_string()
    } else {
        let escaped = value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n").replace('$', "\\$");
        format!("\"{escaped}\"")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_and_rejects_undefined_values() {
        let ctx = serde_json::json!({"ports": {"api": 10102}, "thread": {"id": 1}});
        let t: BTreeMap<String, String> = [("API_URL".into(), "http://localhost:{{ ports.api }}".into())].into();
        assert_eq!(render(&t, &ctx).unwrap()["API_URL"], "http://localhost:10102");
        let bad: BTreeMap<String, String> = [("X".into(), "{{ ports.apy }}".into())].into();
        let err = render(&bad, &ctx).unwrap_err().to_string();
        assert!(err.contains("`X`"), "{err}");
    }

    #[test]
    fn quotes_values_that_need_it() {
        assert_eq!(quote("postgresql://u:p@localhost:1/app"), "postgresql://u:p@localhost:1/app");
        assert_eq!(quote("two words"), "\"two words\"");
        assert_eq!(quote("a\"b$c"), "\"a\\\"b\\$c\"");
        assert_eq!(quote(""), "\"\"");
    }

    #[test]
    fn read_undoes_write() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join(".env.thread");
        let vars: BTreeMap<String, String> =
            [("A".into(), "plain".into()), ("B".into(), "two words".into()), ("C".into(), "a\"b$c\\d\ne".into()), ("D".into(), "".into())].into();
        write(&f, "header", &vars).unwrap();
        assert_eq!(read(&f), vars);
        assert!(read(&dir.path().join("missing")).is_empty());
    }
}
