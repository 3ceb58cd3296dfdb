//! Rendering, writing and reading `.env.thread`.

use std::collections::BTreeMap;
use std::path::Path;

use crate::envvar;
use crate::error::{Diagnostic, ErrorKind};
use crate::rooted::{Root, RootedError};
use serde::Serialize;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum EnvFileError {
    #[error("env template for `{key}` failed: {message}")]
    Template { key: String, message: String },
    #[error("{problem}")]
    Name { problem: String },
    #[error("cannot write `{key}` to {file}: {why}")]
    Value { key: String, file: String, why: String },
    #[error(transparent)]
    Rooted(#[from] RootedError),
}

impl Diagnostic for EnvFileError {
    fn kind(&self) -> ErrorKind {
        match self {
            EnvFileError::Template { .. } => ErrorKind::Config,
            EnvFileError::Name { .. } | EnvFileError::Value { .. } => ErrorKind::Invalid,
            EnvFileError::Rooted(e) => e.kind(),
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            EnvFileError::Template { .. } => Some("check [env] in iso.toml; available values are thread.*, ports.*, repo.*".into()),
            EnvFileError::Name { .. } => Some("variable names are letters, digits and `_`, not starting with a digit".into()),
            EnvFileError::Value { .. } => Some("change the value (or the [env] template or hook that makes it)".into()),
            EnvFileError::Rooted(e) => e.hint(),
        }
    }

    fn code(&self) -> &'static str {
        match self {
            EnvFileError::Template { .. } => "config",
            EnvFileError::Name { .. } | EnvFileError::Value { .. } => "env_value",
            EnvFileError::Rooted(e) => e.code(),
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

/// The text of a dotenv file holding `vars` (see [`crate::envvar`] for
/// the quoting), or the first variable that cannot be written.
pub fn text(file: &str, header: &str, vars: &BTreeMap<String, String>) -> Result<String, EnvFileError> {
    let mut text = String::new();
    for line in header.lines() {
        text.push_str("# ");
        text.push_str(line);
        text.push('\n');
    }
    for (k, v) in vars {
        if let Some(problem) = envvar::name_problem(k) {
            return Err(EnvFileError::Name { problem });
        }
        let quoted = envvar::quote(v).map_err(|why| EnvFileError::Value { key: k.clone(), file: file.to_string(), why })?;
        text.push_str(k);
        text.push('=');
        text.push_str(&quoted);
        text.push('\n');
    }
    Ok(text)
}

/// Write `vars` as the dotenv file `rel` inside `worktree`, atomically and
/// never through a symlink the branch put there ([`crate::rooted`]).
pub fn write(worktree: &Path, rel: &Path, header: &str, vars: &BTreeMap<String, String>) -> Result<(), EnvFileError> {
    let text = text(&rel.display().to_string(), header, vars)?;
    Root::open(worktree)?.write(rel, text.as_bytes())?;
    Ok(())
}

/// The variables of a file [`write`] wrote (comments skipped, quoting
/// undone; a symlink is followed only inside the worktree). A missing or
/// unreadable file gives none.
pub fn read(worktree: &Path, rel: &Path) -> BTreeMap<String, String> {
    let bytes = Root::open(worktree).and_then(|r| r.read(rel)).unwrap_or_default();
    parse(&String::from_utf8_lossy(&bytes))
}

/// Where the quote `q` opening `v` closes. Inside double quotes a
/// backslash escapes the next character (files of iso's old writer).
fn closing(v: &str, q: char) -> Option<usize> {
    let mut chars = v.char_indices().skip(1);
    while let Some((i, c)) = chars.next() {
        if c == '\\' && q == '"' {
            chars.next();
        } else if c == q {
            return Some(i);
        }
    }
    None
}

/// The variables of dotenv text as [`text`] writes it: `NAME=value` lines,
/// a quoted value possibly spanning lines.
pub fn parse(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if line.trim_start().starts_with('#') {
            continue;
        }
        let Some((k, rest)) = line.split_once('=') else { continue };
        let mut value = rest.to_string();
        if let Some(q) = value.chars().next().filter(|c| *c == '\'' || *c == '"') {
            // A quoted value ends at its closing quote, lines later maybe.
            loop {
                if let Some(end) = closing(&value, q) {
                    value.truncate(end + 1);
                    break;
                }
                let Some(next) = lines.next() else { break };
                value.push('\n');
                value.push_str(next);
            }
        }
        out.insert(k.trim().to_string(), envvar::unquote(&value));
    }
    out
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
    fn read_undoes_write() {
        let dir = tempfile::tempdir().unwrap();
        let vars: BTreeMap<String, String> = [
            ("A".into(), "plain".into()),
            ("B".into(), "two words".into()),
            ("C".into(), "a\"b$c\\d\ne".into()),
            ("D".into(), "".into()),
            ("E".into(), "it's\nmulti\n# line".into()),
            ("F".into(), "`touch /tmp/x`".into()),
        ]
        .into();
        write(dir.path(), Path::new(".env.thread"), "header", &vars).unwrap();
        assert_eq!(read(dir.path(), Path::new(".env.thread")), vars);
        assert!(read(dir.path(), Path::new("missing")).is_empty());
        let bad: BTreeMap<String, String> = [("X".into(), "a\rb".into())].into();
        let e = write(dir.path(), Path::new(".env.thread"), "h", &bad).unwrap_err();
        assert!(e.to_string().contains("`X`") && e.to_string().contains("carriage return"), "{e}");
        let bad: BTreeMap<String, String> = [("X Y".into(), "1".into())].into();
        assert!(matches!(write(dir.path(), Path::new(".env.thread"), "h", &bad), Err(EnvFileError::Name { .. })));
        assert_eq!(read(dir.path(), Path::new(".env.thread")), vars, "a refused write leaves the file as it was");
    }

    /// What iso writes, dotenvy (a real parser, as Rust programs read
    /// `.env` files) reads back the same; python-dotenv, Compose and the
    /// shells are checked end to end (tests/e2e/hostile.rs).
    #[test]
    fn dotenvy_reads_back_what_write_wrote() {
        let vars: BTreeMap<String, String> = [
            ("PLAIN", "postgresql://u:p@localhost:1/app"),
            ("SPACES", "two  words"),
            ("SHELLY", "`id` $(id) $HOME ; | & > < * ? ~ !"),
            ("HASH", "#not a comment"),
            ("QUOTE", "it's"),
            ("BACKSLASH", "C:\\dir\\file"),
            ("DQ", "say \"hi\""),
            ("EMPTY", ""),
            ("MULTI", "one\ntwo"),
            ("UNICODE", "grüße ✓"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .into();
        let written = text(".env.thread", "header", &vars).unwrap();
        let read: BTreeMap<String, String> = dotenvy::from_read_iter(written.as_bytes()).map(|r| r.unwrap()).collect();
        assert_eq!(read, vars, "{written}");
        assert_eq!(parse(&written), vars);
    }

    #[test]
    fn files_of_the_old_writer_still_read() {
        let old = "# header\nA=plain\nC=\"a\\\"b\\$c\\\\d\\ne\"\n";
        assert_eq!(parse(old).get("C").map(String::as_str), Some("a\"b$c\\d\ne"));
    }
}
