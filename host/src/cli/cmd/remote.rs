//! `iso remote connect|discover|status|disconnect`.

use std::path::Path;

use crate::cli::args::RemoteCommand;
use crate::cli::output::{print_json, GREEN};
use crate::cli::{exit, CmdResult};
use crate::lifecycle::servers::{self, ServerError, ServerRecord};
use crate::remote::{self, Client, Connection};

pub fn run(cmd: &RemoteCommand, cwd: &Path) -> CmdResult {
    match cmd {
        RemoteCommand::Discover { all, json } => discover(cwd, *all, *json),
        RemoteCommand::Connect { url, token } => {
            let client = Client::new(&Connection { url: url.clone(), token: token.clone() })?;
            // Check both that it answers and that the token is accepted.
            client.server_status()?;
            let conn = Connection { url: client.url.clone(), token: token.clone() };
            let path = remote::save(&conn)?;
            anstream::println!("{}✓{} connected to {} (saved in {})", GREEN.render(), GREEN.render_reset(), conn.url, path.display());
            warn_if_overridden(&conn.url);
            Ok(exit::OK)
        }
        RemoteCommand::Status { json } => {
            let Some(conn) = remote::current()? else {
                if *json {
                    print_json(&serde_json::json!({ "connected": false }));
                } else {
                    println!("not connected; commands run locally (`iso remote connect URL --token T`)");
                }
                return Ok(exit::OK);
            };
            let status = Client::new(&conn)?.server_status()?;
            if *json {
                print_json(&serde_json::json!({ "connected": true, "url": conn.url, "server": status }));
            } else {
                println!("connected to {}", conn.url);
                println!("  repository {}", status.root.display());
                println!("  threads    {}", status.threads);
                println!("  agents     {} running", status.agents_running);
                println!("  version    {}", status.version);
            }
            Ok(exit::OK)
        }
        RemoteCommand::Disconnect => {
            if remote::forget()? {
                println!("disconnected; commands run locally");
            } else {
                println!("was not connected");
            }
            Ok(exit::OK)
        }
    }
}

/// A saved connection is not used while `ISO_API_URL` names another server.
fn warn_if_overridden(saved: &str) {
    if let Some(url) = remote::env_overrides(saved) {
        eprintln!("warning: ISO_API_URL={url} is set and overrides this connection; unset it to use {saved}");
    }
}

/// Whether a server answers `GET /api/health` (which needs no token).
fn answers(record: &ServerRecord) -> bool {
    Client::new(&Connection { url: record.url.clone(), token: None }).and_then(|c| c.get("/api/health")).is_ok()
}

/// `iso remote discover`: connect to this repository's server, or list them all.
fn discover(cwd: &Path, all: bool, json: bool) -> CmdResult {
    let found = servers::discover(cwd);
    // A live process that does not answer is not a server any more (or a
    // hung one): its records go too.
    let live: Vec<ServerRecord> = found
        .all
        .into_iter()
        .filter(|r| {
            let ok = answers(r);
            if !ok {
                servers::forget_server(r);
            }
            ok
        })
        .collect();
    let here = found.here.filter(|h| live.contains(h));
    if let (Some(record), false) = (&here, all) {
        let token = servers::server_token(record)?;
        let client = Client::new(&Connection { url: record.url.clone(), token: Some(token.value.clone()) })?;
        // As `iso remote connect` does: it answers and takes the token.
        client.server_status()?;
        let conn = Connection { url: client.url.clone(), token: token.store.then_some(token.value) };
        let path = remote::save(&conn)?;
        if json {
            print_json(&serde_json::json!({ "connected": true, "url": conn.url, "server": record, "saved": path }));
        } else {
            anstream::println!(
                "{}✓{} connected to {} (the server of {}, pid {}; saved in {})",
                GREEN.render(),
                GREEN.render_reset(),
                conn.url,
                record.root.display(),
                record.pid,
                path.display()
            );
        }
        warn_if_overridden(&conn.url);
        return Ok(exit::OK);
    }
    if live.is_empty() {
        return Err(ServerError::NoneRunning { here: if all { None } else { found.repository } }.into());
    }
    if json {
        print_json(&live);
        return Ok(exit::OK);
    }
    if !all {
        if let Some(repo) = &found.repository {
            println!("no running server for {}; this user's servers:", repo.display());
        }
    }
    let width = live.iter().map(|r| r.url.len()).max().unwrap_or(0);
    for r in &live {
        println!("{:<width$}  pid {:<7}  since {}  {}", r.url, r.pid, r.started.format("%Y-%m-%d %H:%M:%S UTC"), r.root.display());
    }
    Ok(exit::OK)
}
