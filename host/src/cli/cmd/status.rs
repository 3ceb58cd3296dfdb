//! `iso status THREAD`.

use crate::cli::{exit, render, CmdResult, Target};
use crate::lifecycle;

pub fn run(target: &Target, thread: &str, json: bool) -> CmdResult {
    let view = match target {
        Target::Local(project) => lifecycle::view::status(project, thread)?,
        Target::Remote(client) => client.status(thread)?,
    };
    if json {
        super::json(&view);
    } else {
        render::status(&view);
    }
    Ok(exit::OK)
}
