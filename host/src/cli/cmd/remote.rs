//! `iso remote connect|status|disconnect`.

use crate::cli::args::RemoteCommand;
use crate::cli::output::{print_json, GREEN};
use crate::cli::{exit, CmdResult};
use crate::remote::{self, Client, Connection};

pub fn run(cmd: &RemoteCommand) -> CmdResult {
    match cmd {
        RemoteCommand::Connect { url, token } => {
            let client = Client::new(&Connection { url: url.clone(), token: token.clone() })?;
            // Check both that it answers and that the token is accepted.
            client.server_status()?;
            let conn = Connection { url: client.url.clone(), token: token.clone() };
            let path = remote::save(&conn)?;
            anstream::println!("{}✓{} connected to {} (saved in {})", GREEN.render(), GREEN.render_reset(), conn.url, path.display());
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
