//! `iso ports`: the allocation table.

use crate::cli::output::{print_table, Cell, DIM};
use crate::cli::{exit, CmdResult};
use crate::lifecycle;
use crate::project::Project;

pub fn run(project: &Project, json: bool) -> CmdResult {
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
        "{}{} of {} blocks in use; thread N holds {} + N×{}{}",
        DIM.render(),
        rows.len(),
        project.config.threads.max,
        p.base,
        p.block_size,
        DIM.render_reset()
    );
    Ok(exit::OK)
}
