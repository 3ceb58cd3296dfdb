//! Turning what a user types into a safe thread name.
//!
//! The name ends up inside a branch name (`thread-{id}-{name}`), so it must be
//! a valid git ref component; it also shows up in container names later, so we
//! keep it to lowercase letters, digits, `.`, `_` and `-`.

use crate::error::{Diagnostic, ErrorKind};
use thiserror::Error;

/// The longest name we accept after normalisation.
pub const MAX_NAME_LEN: usize = 64;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum NameError {
    #[error("the thread name is empty")]
    Empty,
    #[error("thread name `{0}` starts with `-`, so it would read as an option")]
    LeadingDash(String),
    #[error("thread name `{0}` contains `..`, which git does not allow in branch names")]
    DoubleDot(String),
    #[error("thread name {0:?} contains a control character")]
    ControlChar(String),
    #[error("thread name `{0}` has no letters or digits")]
    NothingLeft(String),
    #[error("thread name `{0}` is all digits, so it would read as a thread id")]
    AllDigits(String),
    #[error("thread name `{name}` is {len} characters long, more than {MAX_NAME_LEN}")]
    TooLong { name: String, len: usize },
}

impl Diagnostic for NameError {
    fn kind(&self) -> ErrorKind {
        ErrorKind::Invalid
    }

    fn hint(&self) -> Option<String> {
        Some(match self {
            NameError::Empty => "give a short name such as `add-auth`".into(),
            NameError::LeadingDash(_) => "drop the leading dash".into(),
            NameError::DoubleDot(_) => "use a single `.` or `-`".into(),
            NameError::ControlChar(_) => "use letters, digits and `-`".into(),
            NameError::NothingLeft(_) => "use something like `fix-login`".into(),
            NameError::AllDigits(n) => format!("add a letter, such as `t{n}` or `issue-{n}`"),
            NameError::TooLong { .. } => format!("keep it to {MAX_NAME_LEN} characters"),
        })
    }

    fn code(&self) -> &'static str {
        "invalid_name"
    }
}

/// The name of a thread as the user typed it (trimmed), for display and
/// lookup; [`sanitize`] gives the ASCII form its branch is named with. The
/// same checks apply (an error if [`sanitize`] refuses it).
pub fn display(raw: &str) -> Result<String, NameError> {
    sanitize(raw)?;
    let trimmed = raw.trim();
    // The slug is bounded; the typed name is too, in bytes (it is stored
    // and shown everywhere).
    if trimmed.len() > 4 * MAX_NAME_LEN {
        return Err(NameError::TooLong { name: trimmed.chars().take(MAX_NAME_LEN).collect(), len: trimmed.chars().count() });
    }
    Ok(trimmed.to_string())
}

/// Validate `raw` and turn it into a safe name: transliterated to ASCII
/// (deunicode), lowercase, every run of
/// characters outside `[a-z0-9._]` becomes one `-`, no leading or trailing
/// separators. `"Add Auth!"` becomes `"add-auth"`. A name of digits only is
/// refused (it would read as a thread id).
pub fn sanitize(raw: &str) -> Result<String, NameError> {
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return Err(NameError::Empty);
    }
    if trimmed.starts_with('-') {
        return Err(NameError::LeadingDash(raw.to_string()));
    }
    if trimmed.contains("..") {
        return Err(NameError::DoubleDot(raw.to_string()));
    }
    if trimmed.chars().any(char::is_control) {
        return Err(NameError::ControlChar(raw.to_string()));
    }
    // Letters with accents and other scripts keep their sound in the branch
    // (`café` → `cafe`, `日本` → `ri-ben`) instead of becoming dashes.
    let ascii = deunicode::deunicode_with_tofu(trimmed, "-");
    let mut out = String::with_capacity(ascii.len());
    for c in ascii.chars().flat_map(char::to_lowercase) {
        let keep = c.is_ascii_alphanumeric() || c == '.' || c == '_';
        // Transliteration can make `..` (from `…`), which git refuses.
        if c == '.' && out.ends_with('.') {
            continue;
        }
        if keep {
            out.push(c);
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    let out = out.trim_matches(|c| c == '-' || c == '.' || c == '_').trim_end_matches(".lock").to_string();
    if !out.chars().any(|c| c.is_ascii_alphanumeric()) {
        return Err(NameError::NothingLeft(raw.to_string()));
    }
    // Ids are numbers: `iso cleanup 123` must never have two meanings.
    if out.bytes().all(|b| b.is_ascii_digit()) {
        return Err(NameError::AllDigits(out));
    }
    if out.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong { len: out.len(), name: out });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_simple_names() {
        assert_eq!(sanitize("add-auth").unwrap(), "add-auth");
        assert_eq!(sanitize("fix_1.2").unwrap(), "fix_1.2");
    }

    #[test]
    fn normalises_unsafe_characters() {
        assert_eq!(sanitize("Add Auth!").unwrap(), "add-auth");
        assert_eq!(sanitize("feature/login  page").unwrap(), "feature-login-page");
        assert_eq!(sanitize("  trim me  ").unwrap(), "trim-me");
        assert_eq!(sanitize("a~b^c:d?e*f[g\\h").unwrap(), "a-b-c-d-e-f-g-h");
        assert_eq!(sanitize("thing.lock").unwrap(), "thing");
        assert_eq!(sanitize("café").unwrap(), "cafe");
        assert_eq!(sanitize("naïve-café").unwrap(), "naive-cafe");
        assert_eq!(sanitize("Ærø Straße").unwrap(), "aero-strasse");
        assert_eq!(sanitize("日本").unwrap(), "ri-ben");
        assert_eq!(sanitize("wait…what").unwrap(), "wait.what");
        assert_eq!(display("  naïve-café ").unwrap(), "naïve-café");
        assert!(display(&"é".repeat(200)).is_err());
    }

    #[test]
    fn rejects_bad_names() {
        assert_eq!(sanitize(""), Err(NameError::Empty));
        assert_eq!(sanitize("   "), Err(NameError::Empty));
        assert!(matches!(sanitize("-rf"), Err(NameError::LeadingDash(_))));
        assert!(matches!(sanitize("a..b"), Err(NameError::DoubleDot(_))));
        assert!(matches!(sanitize("a\u{7}b"), Err(NameError::ControlChar(_))));
        assert!(matches!(sanitize("!!!"), Err(NameError::NothingLeft(_))));
        assert!(matches!(sanitize(&"x".repeat(65)), Err(NameError::TooLong { .. })));
        assert_eq!(sanitize(" 123 "), Err(NameError::AllDigits("123".into())));
        assert!(crate::error::with_hint(&NameError::AllDigits("123".into())).contains("t123"));
        assert_eq!(sanitize("123a").unwrap(), "123a");
        assert_eq!(sanitize("1.2").unwrap(), "1.2");
    }
}
