//! `iso ports`: the allocation table.

use crate::cli::output::{print_table, Cell, DIM};
use crate::cli::{exit, CmdResult};
use crate::lifecycle;
use crate::project::Project;

pub fn run(project: &Project, all: bool, json: bool) -> CmdResult {
    if all {
        return machine(project, json);
    }
    let rows = lifecycle::view::ports(project)?;
    if json {
        super::json(&rows);
        return Ok(exit::OK);
    }
    let slots: Vec<String> = project.config.ports.slots.keys().cloned().collect();
    let mut header = vec!["THREAD".to_string(), "NAME".into(), "BLOCK".into()];
    header.extend(slots.iter().map(|s| s.to_uppercase()));
    let table: Vec<Vec<Cell>> = rows
        .iter()
        .map(|r| {
            let mut row = vec![Cell::from(r.thread.to_string()), r.name.clone().into(), r.block.to_string().into()];
            row.extend(slots.iter().map(|s| Cell::from(r.ports.get(s).map_or("-".to_string(), |p| p.to_string()))));
            row
        })
        .collect();
    let header: Vec<&str> = header.iter().map(String::as_str).collect();
    print_table(&header, &table);
    let p = &project.config.ports;
    anstream::eprintln!(
        "{}{} of {} blocks in use; thread N holds {} + N×{} unless another repository holds that block{}",
        DIM.render(),
        rows.len(),
        project.config.threads.max,
        p.base,
        p.block_size,
        DIM.render_reset()
    );
    Ok(exit::OK)
}

/// `iso ports --all`: every lease of the machine-wide port ledger.
fn machine(project: &Project, json: bool) -> CmdResult {
    let rows = lifecycle::machine::machine_ports(project)?;
    if json {
        super::json(&rows);
        return Ok(exit::OK);
    }
    let table: Vec<Vec<Cell>> = rows
        .iter()
        .map(|r| {
            let repo = if r.this_repo { format!("{} (this one)", r.repo.display()) } else { r.repo.display().to_string() };
            vec![
                Cell::from(r.block.to_string()),
                repo.into(),
                r.thread.to_string().into(),
                r.name.clone().into(),
                r.stale.clone().map_or("live".to_string(), |why| format!("stale: {why}")).into(),
            ]
        })
        .collect();
    print_table(&["BLOCK", "REPOSITORY", "THREAD", "NAME", "LEASE"], &table);
    let stale = rows.iter().filter(|r| r.stale.is_some()).count();
    let reclaim = if stale > 0 { format!("; `iso doctor --fix` reclaims the {stale} stale one(s)") } else { String::new() };
    anstream::eprintln!("{}{} lease(s) on this machine{reclaim}{}", DIM.render(), rows.len(), DIM.render_reset());
    Ok(exit::OK)
}
