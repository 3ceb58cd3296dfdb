//! `iso hooks list|run` and `iso plugin check`.

use std::path::PathBuf;

use clap::Subcommand;
use serde::Serialize;

use super::output::{print_json, print_table, styled, Cell, DIM, GREEN, RED};
use super::spinner::Spinner;
use super::{exit, JsonFlag};
use crate::hooks::{self, wasm, Hooks, Kind};
use crate::lifecycle::{self, Error, Project};

#[derive(Debug, Subcommand)]
pub enum HooksCommand {
    /// The hooks of this repository: declared in iso.toml and discovered scripts, in the order they run
    #[command(visible_alias = "ls")]
    List {
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Run the hooks of one event against a live thread now
    #[command(after_help = "Examples:\n  iso hooks run post-up 1\n  iso hooks run pre-cleanup add-auth\n  iso hooks run deploy 2 --payload '{\"env\": \"staging\"}'")]
    Run {
        /// pre-init, post-init, post-up, pre-cleanup, post-cleanup, or a custom event
        event: String,
        /// Thread id, name or branch
        thread: String,
        /// JSON data handed to hooks of a custom event
        #[arg(long, value_name = "JSON")]
        payload: Option<String>,
        #[command(flatten)]
        json: JsonFlag,
    },
}

#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Does a .wasm file implement the iso:hooks world, which version, what would it import
    #[command(after_help = "Example:\n  iso plugin check plugins/target/wasm32-wasip2/release/iso_frontend_env.wasm")]
    Check {
        /// The component
        file: PathBuf,
        #[command(flatten)]
        json: JsonFlag,
    },
}

/// The receiver init and cleanup deliver events to: the repository's
/// hooks, logging on stderr unless `--quiet`.
pub fn receiver(project: &Project, quiet: bool) -> Hooks {
    let h = lifecycle::hooks(project);
    if quiet { h } else { h.with_log(hooks::stderr_sink()) }
}

pub fn run(project: &Project, cmd: HooksCommand, quiet: bool) -> Result<i32, Error> {
    match cmd {
        HooksCommand::List { json } => list(project, json.json),
        HooksCommand::Run { event, thread, payload, json } => {
            let known = event.parse::<crate::events::Event>().is_ok() || hooks::manifest::valid_custom_event(&event);
            if !known {
                eprintln!("error: `{event}` is not an event\n  fix: use pre-init, post-init, post-up, pre-cleanup, post-cleanup or a custom event name (a-z 0-9 . _ -)");
                return Ok(exit::USAGE);
            }
            if let Some(p) = &payload {
                if let Err(e) = serde_json::from_str::<serde_json::Value>(p) {
                    eprintln!("error: --payload is not JSON: {e}");
                    return Ok(exit::USAGE);
                }
            }
            let h = receiver(project, quiet);
            if !h.wants(&event) {
                eprintln!("no hook listens to {event} (see `iso hooks list`)");
            }
            let spinner = Spinner::new(quiet || json.json);
            let (thread, report) = lifecycle::run_hooks(project, &thread, &event, payload, &h, &spinner)?;
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

#[derive(Serialize)]
struct HookRow<'a> {
    name: &'a str,
    events: &'a [String],
    kind: Kind,
    path: &'a std::path::Path,
    discovered: bool,
    optional: bool,
    timeout_ms: u128,
    memory_mib: u64,
    allow: serde_json::Value,
    exists: bool,
}

fn list(project: &Project, json: bool) -> Result<i32, Error> {
    let h = lifecycle::hooks(project);
    let d = &project.config.hook_defaults;
    let rows: Vec<HookRow> = h
        .list()
        .iter()
        .map(|hook| {
            let timeout = hook.spec.timeout.as_ref().or(d.timeout.as_ref()).and_then(|t| t.duration().ok()).unwrap_or(hooks::manifest::DEFAULT_TIMEOUT);
            let memory = hook.spec.memory.as_ref().or(d.memory.as_ref()).and_then(|m| m.bytes().ok()).unwrap_or(hooks::manifest::DEFAULT_MEMORY);
            let allow = allow_json(&hook.spec.allow);
            HookRow {
                name: &hook.name,
                events: &hook.events,
                kind: hook.kind,
                path: &hook.path,
                discovered: hook.discovered,
                optional: hook.spec.optional,
                timeout_ms: timeout.as_millis(),
                memory_mib: memory >> 20,
                allow,
                exists: hook.path.is_file(),
            }
        })
        .collect();
    if json {
        print_json(&rows);
        return Ok(exit::OK);
    }
    if rows.is_empty() {
        println!("no hooks: declare [[hooks]] in iso.toml or add {}/<event>.rhai (see README, \"Hooks\")", d.dir.display());
        return Ok(exit::OK);
    }
    let table: Vec<Vec<Cell>> = rows
        .iter()
        .map(|r| {
            let rel = r.path.strip_prefix(project.root()).unwrap_or(r.path).display().to_string();
            let grants = grants_summary(&r.allow);
            vec![
                Cell::from(r.name),
                Cell::from(r.events.join(",")),
                Cell::from(match r.kind {
                    Kind::Wasm => "wasm",
                    Kind::Rhai => "rhai",
                }),
                if r.exists { Cell::from(rel) } else { styled(format!("{rel} (missing)"), RED) },
                Cell::from(format!("{} ms / {} MiB{}", r.timeout_ms, r.memory_mib, if r.optional { ", optional" } else { "" })),
                if r.discovered { styled(format!("{grants} (discovered)"), DIM) } else { Cell::from(grants) },
            ]
        })
        .collect();
    print_table(&["HOOK", "EVENTS", "KIND", "FILE", "LIMITS", "GRANTS"], &table);
    Ok(exit::OK)
}

/// A hook's grants as JSON, the default made explicit.
fn allow_json(allow: &hooks::manifest::Allow) -> serde_json::Value {
    serde_json::json!({
        "paths": allow.paths.as_ref().map(|p| serde_json::to_value(p).unwrap_or_default()).unwrap_or(serde_json::json!([{"path": ".", "mode": "rw"}])),
        "exec": allow.exec,
        "hosts": allow.hosts,
    })
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
    let manifests: Vec<serde_json::Value> = Project::discover(cwd)
        .ok()
        .map(|p| {
            let target = cwd.join(file).canonicalize().ok();
            lifecycle::hooks(&p)
                .list()
                .iter()
                .filter(|h| h.kind == Kind::Wasm && h.path.canonicalize().ok() == target && target.is_some())
                .map(|h| serde_json::json!({ "name": h.name, "events": h.events, "optional": h.spec.optional, "allow": allow_json(&h.spec.allow) }))
                .collect()
        })
        .unwrap_or_default();
    match wasm::inspect(file) {
        Err(e) => {
            if json.json {
                print_json(&serde_json::json!({ "file": file, "ok": false, "error": e }));
            } else {
                anstream::eprintln!("{}error:{} {e}", RED.render(), RED.render_reset());
            }
            exit::ERROR
        }
        Ok(i) => {
            let ok = i.compatible.is_ok();
            if json.json {
                print_json(&serde_json::json!({
                    "file": file,
                    "ok": ok,
                    "world": i.world_version.as_ref().map(|v| format!("iso:hooks@{v}")),
                    "host_world": format!("iso:hooks@{}", wasm::WORLD_VERSION),
                    "exports": i.exports,
                    "imports": i.imports,
                    "error": i.compatible.as_ref().err(),
                    "manifests": manifests,
                }));
            } else {
                let verdict = match &i.compatible {
                    Ok(()) => styled("ok: this iso can run it", GREEN),
                    Err(e) => styled(format!("not runnable: {e}"), RED),
                };
                let mut out = anstream::stdout().lock();
                use std::io::Write;
                let _ = writeln!(out, "file:     {}", file.display());
                let _ = writeln!(out, "world:    {}", i.world_version.as_ref().map_or("none (no iso:hooks/handler export)".to_string(), |v| format!("iso:hooks@{v}")));
                let _ = writeln!(out, "host:     iso:hooks@{}", wasm::WORLD_VERSION);
                let _ = writeln!(out, "imports:  {}", if i.imports.is_empty() { "none".into() } else { i.imports.join("\n          ") });
                let _ = writeln!(out, "exports:  {}", if i.exports.is_empty() { "none".into() } else { i.exports.join("\n          ") });
                if manifests.is_empty() {
                    let _ = writeln!(out, "grants:   none here: what a plugin may touch is set by its [[hooks]] entry in iso.toml (allow.paths, allow.exec, allow.hosts)");
                }
                for m in &manifests {
                    let _ = writeln!(out, "grants:   [[hooks]] `{}` on {}: {}", m["name"].as_str().unwrap_or(""), m["events"].as_array().map(|a| a.iter().filter_map(|v| v.as_str()).collect::<Vec<_>>().join(", ")).unwrap_or_default(), grants_summary(&m["allow"]));
                }
                let _ = writeln!(out, "{}{}{}", verdict.style.render(), verdict.text, verdict.style.render_reset());
            }
            if ok { exit::OK } else { exit::ERROR }
        }
    }
}
