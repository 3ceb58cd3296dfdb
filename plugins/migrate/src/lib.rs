//! `migrate`: runs a thread's database migrations once its stack is up.
//!
//! Events: any (meant for `post-up`, when the thread's database answers on
//! its own port). The command runs in the thread's worktree with the
//! thread's environment (`DATABASE_URL`, port variables, …).
//!
//! Config (the hook's `config` table in `iso.toml`):
//! - `command` (required): the program and its arguments, e.g.
//!   `["sh", "-c", "psql \"$DATABASE_URL\" -f db/schema.sql"]`.
//!
//! Grants: `allow.exec` must list the program (`command[0]`) exactly, e.g.
//! `allow.exec = ["sh"]`.
//!
//! Outcome: `migrations ran: <last line of standard output>`; a non-zero exit
//! fails the hook with the end of the command's standard error.

use serde::Deserialize;

wit_bindgen::generate!({
    path: "../../wit",
    world: "iso:hooks/hook",
    generate_all,
});

use exports::iso::hooks::handler::Guest;
use iso::hooks::host;
use iso::hooks::types::{Event, Failure, Outcome};

struct Migrate;

export!(Migrate);

const EXAMPLE: &str = r#"config = { command = ["sh", "-c", "psql \"$DATABASE_URL\" -f db/schema.sql"] }"#;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    command: Option<Vec<String>>,
}

impl Guest for Migrate {
    fn handle(_event: Event) -> Result<Outcome, Failure> {
        let config: Config = serde_json::from_str(&host::config()).map_err(|e| {
            let e = config_error(e);
            Failure::Failed(format!(
                "bad `config` table in this hook's [[hooks]] entry: {e} \
                 (it takes `command`, e.g. {EXAMPLE})"
            ))
        })?;
        let command = match config.command {
            Some(command) if !command.is_empty() && !command[0].is_empty() => command,
            Some(_) => {
                return Err(Failure::Failed(format!("config `command` is empty; give the program and its arguments, e.g. {EXAMPLE}")));
            }
            None => {
                return Err(Failure::Failed(format!("config `command` is missing; set it in this hook's [[hooks]] entry, e.g. {EXAMPLE}")));
            }
        };
        let shown = show_command(&command);

        let output = host::exec(&command[0], &command[1..]).map_err(|e| {
            Failure::Failed(format!(
                "could not run `{shown}`: {e} (if it is not allowed: grant it with \
                 allow.exec = [\"{}\"] in the hook's [[hooks]] entry)",
                command[0]
            ))
        })?;

        match output.exit_code {
            0 => {
                let last = output.stdout.lines().map(str::trim).rfind(|line| !line.is_empty()).unwrap_or("done");
                Ok(Outcome { messages: vec![format!("migrations ran: {last}")], env: Vec::new() })
            }
            code => {
                let how = if code == -1 { "was ended (by a signal, or the hook's timeout ran out)".to_string() } else { format!("exited with {code}") };
                let tail = match tail(&output.stderr, 20) {
                    t if !t.is_empty() => t,
                    _ => match tail(&output.stdout, 20) {
                        t if !t.is_empty() => t,
                        _ => "(no output)".to_string(),
                    },
                };
                Err(Failure::Failed(format!("migration command `{shown}` {how}: {tail}")))
            }
        }
    }
}

/// The last `n` lines of `text`, without trailing blank lines.
fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.trim_end().lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The command as a shell would read it, for messages.
fn show_command(command: &[String]) -> String {
    command
        .iter()
        .map(|arg| {
            let plain = !arg.is_empty() && arg.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:@%+,".contains(c));
            if plain { arg.clone() } else { format!("'{}'", arg.replace('\'', r"'\''")) }
        })
        .collect::<Vec<_>>()
        .join(" ")
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
