//! One file per command (or per family of small ones).

pub mod agent;
pub mod cleanup;
pub mod completions;
pub mod config;
pub mod doctor;
pub mod events;
pub mod hooks;
pub mod init;
pub mod list;
pub mod ports;
pub mod remote;
pub mod serve;
pub mod setup;
pub mod snapshot;
pub mod stack;
pub mod status;
pub mod update;

use super::output::print_json;
use super::{exit, report_as, CliError};
use crate::error::Diagnostic;

/// The exit code and report of a bulk command: each failure printed, exit
/// 0 when all went well, the error's own code when the only item failed,
/// [`exit::PARTIAL`] when some did. `failures` are (item, error).
fn finish_bulk(total: usize, done: usize, failures: Vec<(String, Box<dyn Diagnostic>)>, summary: impl FnOnce(usize, &[String])) -> Result<i32, CliError> {
    if failures.is_empty() {
        return Ok(exit::OK);
    }
    if total == 1 {
        let (_, e) = failures.into_iter().next().expect("one failure");
        return Err(CliError(e));
    }
    for (item, e) in &failures {
        report_as(Some(item), &**e);
    }
    let names: Vec<String> = failures.iter().map(|(n, _)| n.clone()).collect();
    summary(done, &names);
    let code = failures.iter().map(|(_, e)| exit::of(e.kind())).max().unwrap_or(exit::ERROR);
    Ok(if done == 0 { code } else { exit::PARTIAL })
}

/// Each item of a bulk command and how it ended, in the order asked.
type Outcomes<T> = Vec<(String, Result<T, Box<dyn Diagnostic>>)>;

/// Print `value` as JSON on stdout.
fn json(value: &impl serde::Serialize) {
    print_json(value)
}
