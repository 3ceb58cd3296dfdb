//! `iso list` (alias `ls`).

use crate::cli::{exit, render, CmdResult, Target};
use crate::lifecycle;

pub fn run(target: &Target, all: bool, json: bool) -> CmdResult {
    // Containers are counted (one Docker call) only for the table.
    let listing = match target {
        Target::Local(project) => lifecycle::view::list(project, all, !json)?,
        Target::Remote(client) => client.listing(all, !json)?,
    };
    if json {
        super::json(&listing.threads);
    } else {
        render::listing(&listing);
    }
    Ok(exit::OK)
}
