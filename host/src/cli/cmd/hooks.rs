//! `iso hooks list|run` and `iso plugin check`.

use std::io::Write;

use crate::cli::args::{HooksCommand, PluginCommand};
use crate::cli::output::{print_json, print_table, styled, Cell, DIM, GREEN, RED};
use crate::cli::spinner::Spinner;
use crate::cli::{exit, CmdResult};
use crate::lifecycle::hooks;
use crate::project::Project;

pub fn run(project: &Project, cmd: &HooksCommand, quiet: bool) -> CmdResult {
    match cmd {
        HooksCommand::List { json } => list(project, json.json),
        HooksCommand::Run { event, thread, payload, json } => {
            if !hooks::is_event(event) {
                eprintln!("error: `{event}` is not an event\n  fix: use pre-init, post-init, post-up, pre-cleanup, post-cleanup or a custom event name (a-z 0-9 . _ -)");
                return Ok(exit::USAGE);
            }
            if let Some(p) = payload {
                if let Err(e) = serde_json::from_str::<serde_json::Value>(p) {
                    eprintln!("error: --payload is not JSON: {e}");
                    return Ok(exit::USAGE);
                }
            }
            if !hooks::wanted(project, event) {
                eprintln!("no hook listens to {event} (see `iso hooks list`)");
            }
            let spinner = Spinner::new(quiet || json.json).hook_logs(!quiet);
            let (thread, report) = hooks::run(project, thread, event, payload.clone(), &spinner)?;
            drop(spinner);
            if json.json {
                print_json(&serde_json::json!({ "thread": thread.id, "event": event, "report": report }));
            } else {
                for m in &report.messages {
                    println!("{m}");
                }
            }
            Ok(exit::OK)
        }
    }
}

fn list(project: &Project, json: bool) -> CmdResult {
    let (rows, dir) = hooks::list(project);
    if json {
        print_json(&rows);
        return Ok(exit::OK);
    }
    if rows.is_empty() {
        println!("no hooks: declare [[hooks]] in iso.toml or add {}/<event>.rhai (see README, \"Hooks\")", dir.display());
        return Ok(exit::OK);
    }
    let table: Vec<Vec<Cell>> = rows
        .iter()
        .map(|r| {
            let rel = r.path.strip_prefix(project.root()).unwrap_or(&r.path).display().to_string();
            let grants = grants_summary(&r.allow);
            vec![
                Cell::from(r.name.as_str()),
                Cell::from(r.events.join(",")),
                Cell::from(r.kind),
                if r.exists { Cell::from(rel) } else { styled(format!("{rel} (missing)"), RED) },
                Cell::from(format!("{} ms / {} MiB{}", r.timeout_ms, r.memory_mib, if r.optional { ", optional" } else { "" })),
                if r.discovered { styled(format!("{grants} (discovered)"), DIM) } else { Cell::from(grants) },
            ]
        })
        .collect();
    print_table(&["HOOK", "EVENTS", "KIND", "FILE", "LIMITS", "GRANTS"], &table);
    Ok(exit::OK)
}

fn grants_summary(allow: &serde_json::Value) -> String {
    let paths: Vec<String> = allow["paths"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|p| match p {
                    serde_json::Value::String(s) => format!("{s}:rw"),
                    v => format!("{}:{}", v["path"].as_str().unwrap_or("?"), v["mode"].as_str().unwrap_or("rw")),
                })
                .collect()
        })
        .unwrap_or_default();
    let mut parts = vec![format!("paths {}", paths.join(" "))];
    let list = |k: &str| allow[k].as_array().map(|a| a.iter().filter_map(|v| v.as_str()).collect::<Vec<_>>().join(" ")).unwrap_or_default();
    if !list("exec").is_empty() {
        parts.push(format!("exec {}", list("exec")));
    }
    if !list("hosts").is_empty() {
        parts.push(format!("hosts {}", list("hosts")));
    }
    parts.join("; ")
}

/// `iso plugin check FILE`: exit 0 when this iso can run it, 1 otherwise.
/// Inside a repository it also shows what the `[[hooks]]` entries that use
/// the file grant it.
pub fn plugin(cmd: &PluginCommand, cwd: &std::path::Path) -> i32 {
    let PluginCommand::Check { file, json } = cmd;
    let r = match hooks::check_plugin(cwd, file) {
        Ok(r) => r,
        Err(e) => {
            if json.json {
                print_json(&serde_json::json!({ "file": file, "ok": false, "error": e }));
            } else {
                anstream::eprintln!("{}error:{} {e}", RED.render(), RED.render_reset());
            }
            return exit::ERROR;
        }
    };
    if json.json {
        print_json(&r);
    } else {
        let verdict = match &r.error {
            None => styled("ok: this iso can run it", GREEN),
            Some(e) => styled(format!("not runnable: {e}"), RED),
        };
        let mut out = anstream::stdout().lock();
        let _ = writeln!(out, "file:     {}", r.file.display());
        let _ = writeln!(out, "world:    {}", r.world.as_deref().unwrap_or("none (no iso:hooks/handler export)"));
        let _ = writeln!(out, "host:     {}", r.host_world);
        let _ = writeln!(out, "imports:  {}", if r.imports.is_empty() { "none".into() } else { r.imports.join("\n          ") });
        let _ = writeln!(out, "exports:  {}", if r.exports.is_empty() { "none".into() } else { r.exports.join("\n          ") });
        if r.manifests.is_empty() {
            let _ =
                writeln!(out, "grants:   none here: what a plugin may touch is set by its [[hooks]] entry in iso.toml (allow.paths, allow.exec, allow.hosts)");
        }
        for m in &r.manifests {
            let events = m["events"].as_array().map(|a| a.iter().filter_map(|v| v.as_str()).collect::<Vec<_>>().join(", ")).unwrap_or_default();
            let _ = writeln!(out, "grants:   [[hooks]] `{}` on {events}: {}", m["name"].as_str().unwrap_or(""), grants_summary(&m["allow"]));
        }
        let _ = writeln!(out, "{}{}{}", verdict.style.render(), verdict.text, verdict.style.render_reset());
    }
    if r.ok {
        exit::OK
    } else {
        exit::ERROR
    }
}
