//! The one error taxonomy every part of iso reports in.
//!
//! Each module has its own error type (what went wrong, in its own words);
//! every one of them also says what *kind* of failure it is and, where there
//! is one, a *hint*: the command or change that fixes it. Both are data, not
//! text to be parsed: the `Display` of an error is only the problem, and each
//! front end renders the hint its own way and maps the kind once:
//!
//! | kind             | CLI exit | HTTP | meaning |
//! |------------------|----------|------|---------|
//! | `not_found`      | 3        | 404  | no such thread, run, service, … |
//! | `conflict`       | 1        | 409  | taken name, branch checked out elsewhere, port in use |
//! | `busy`           | 5        | 409  | another operation is working on it right now |
//! | `refused`        | 5        | 409  | a hook refused the operation |
//! | `would_lose_work`| 5        | 409  | cleanup would throw away uncommitted or unmerged work |
//! | `invalid`        | 1        | 422  | bad input: a name, a base, a value |
//! | `config`         | 78       | 409  | iso.toml, the user config or an `ISO_*` variable |
//! | `unavailable`    | 1        | 503  | Docker, a service or a server cannot be reached or did not come up |
//! | `internal`       | 1        | 500  | a file could not be written, git failed, … |
//!
//! The mappings live in `cli::exit`, `api::error` and `nu::error`; the remote
//! client turns a server's `kind` back into an [`ErrorKind`] so a command
//! exits the same way through a server as locally.

use serde::{Deserialize, Serialize};

/// What kind of failure an error is (see the module docs for the table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    NotFound,
    Conflict,
    Busy,
    Refused,
    WouldLoseWork,
    Invalid,
    Config,
    Unavailable,
    Internal,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 9] = [
        ErrorKind::NotFound,
        ErrorKind::Conflict,
        ErrorKind::Busy,
        ErrorKind::Refused,
        ErrorKind::WouldLoseWork,
        ErrorKind::Invalid,
        ErrorKind::Config,
        ErrorKind::Unavailable,
        ErrorKind::Internal,
    ];

    /// The name used in JSON (`"kind": "not_found"`) and error codes.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::NotFound => "not_found",
            ErrorKind::Conflict => "conflict",
            ErrorKind::Busy => "busy",
            ErrorKind::Refused => "refused",
            ErrorKind::WouldLoseWork => "would_lose_work",
            ErrorKind::Invalid => "invalid",
            ErrorKind::Config => "config",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Internal => "internal",
        }
    }

    /// The kind named `name` ([`ErrorKind::as_str`]).
    pub fn from_name(name: &str) -> Option<ErrorKind> {
        ErrorKind::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What every iso error offers besides its message.
pub trait Diagnostic: std::error::Error {
    fn kind(&self) -> ErrorKind;

    /// What to do about it, as one sentence or command (`None`: nothing to
    /// suggest). Never part of the `Display` text.
    fn hint(&self) -> Option<String> {
        None
    }

    /// A stable code more specific than the kind (the API's `code`, the
    /// Nushell error code after `iso::`): `base_not_found`, `no_ports`, ….
    fn code(&self) -> &'static str {
        self.kind().as_str()
    }
}

/// The message and, on a line of its own, `  fix: <hint>`: an error as the
/// CLI prints it, for text that must carry both (doctor's findings, tests).
pub fn with_hint(e: &dyn Diagnostic) -> String {
    match e.hint() {
        Some(h) => format!("{e}\n  fix: {h}"),
        None => e.to_string(),
    }
}
