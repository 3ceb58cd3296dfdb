//! `iso snapshot save|list|rm`, here or through a server (`POST|GET
//! /api/snapshots`, `DELETE /api/snapshots/{name}`).

use crate::cli::args::SnapshotCommand;
use crate::cli::output::{print_table, Cell};
use crate::cli::spinner::Spinner;
use crate::cli::{exit, CmdResult, Target};
use crate::lifecycle;

pub fn run(target: &Target, c: &SnapshotCommand, quiet: bool) -> CmdResult {
    match c {
        SnapshotCommand::Save { name, from, json } => {
            let saved = match target {
                Target::Local(project) => {
                    let spinner = Spinner::new(quiet || json.json);
                    lifecycle::seed::snapshot_save(project, name, from, &spinner)?
                }
                Target::Remote(client) => client.snapshot_save(name, from)?,
            };
            let (snap, report) = (&saved.snapshot, &saved);
            if json.json {
                super::json(&saved);
            } else {
                for c in &report.copies {
                    println!("{} -> {}: {:.1} MB, {}, {} ms", c.source, c.target, c.bytes as f64 / 1e6, c.path, c.millis);
                }
                if !report.held.is_empty() {
                    println!("{} {} for {} ms", report.hold, report.held.join(", "), report.held_millis);
                }
                println!("snapshot {} saved from thread {}", snap.name, snap.from);
            }
            Ok(exit::OK)
        }
        SnapshotCommand::List { json } => {
            let list = match target {
                Target::Local(project) => lifecycle::seed::snapshot_list(project)?,
                Target::Remote(client) => client.snapshot_list()?,
            };
            if json.json {
                super::json(&list);
                return Ok(exit::OK);
            }
            let rows: Vec<Vec<Cell>> = list
                .iter()
                .map(|s| {
                    let vols: Vec<&str> = s.volumes.keys().map(String::as_str).collect();
                    let missing = if s.missing.is_empty() { String::new() } else { format!(" (missing: {})", s.missing.join(", ")) };
                    vec![s.name.clone().into(), s.from.clone().into(), s.created.clone().into(), format!("{}{missing}", vols.join(", ")).into()]
                })
                .collect();
            print_table(&["NAME", "FROM", "CREATED", "VOLUMES"], &rows);
            Ok(exit::OK)
        }
        SnapshotCommand::Rm { name, json } => {
            let snap = match target {
                Target::Local(project) => lifecycle::seed::snapshot_rm(project, name)?,
                Target::Remote(client) => client.snapshot_rm(name)?,
            };
            if json.json {
                super::json(&snap);
            } else {
                println!("removed snapshot {} ({})", snap.name, snap.volumes.values().cloned().collect::<Vec<_>>().join(", "));
            }
            Ok(exit::OK)
        }
    }
}
