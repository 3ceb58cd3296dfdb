//! `iso list` (alias `ls`).

use crate::cli::{exit, render, CmdResult, Target};
use crate::lifecycle;
use crate::lifecycle::view::ListFilter;

pub fn run(target: &Target, all: bool, agent: Option<&str>, status: Option<&str>, idle: Option<&str>, json: bool) -> CmdResult {
    let filter = ListFilter {
        agent: agent.map(lifecycle::view::parse_agent_state).transpose()?,
        status: status.map(lifecycle::view::parse_status).transpose()?,
        idle: idle.map(lifecycle::view::parse_idle).transpose()?,
    };
    // Containers are counted (one Docker call) only for the table.
    let listing = match target {
        Target::Local(project) => lifecycle::view::list_filtered(project, all, !json, &filter)?,
        Target::Remote(client) => client.listing_filtered(all, !json, agent, status, idle)?,
    };
    if json {
        super::json(&listing.threads);
    } else if listing.threads.is_empty() && filter != ListFilter::default() {
        eprintln!("no thread matches");
    } else {
        render::listing(&listing);
    }
    Ok(exit::OK)
}
