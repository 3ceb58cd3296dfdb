//! `iso serve`: the HTTP API (docs/api.md).

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::cli::output::DIM;
use crate::cli::{exit, CmdResult};

pub fn run(cwd: &Path, bind: Option<SocketAddr>) -> CmdResult {
    let iso_exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("iso"));
    let token = std::env::var("ISO_API_TOKEN").ok();
    let opts = crate::api::ServeOptions { root: cwd.to_path_buf(), bind, token, iso_exe };
    crate::api::serve(opts, |addr, token| {
        println!("listening on http://{addr}");
        let _ = std::io::stdout().flush();
        if token.generated {
            anstream::eprintln!(
                "{}no token configured (ISO_API_TOKEN or [api] token); this run's token: {}\n  connect with: iso remote connect http://{addr} --token {}{}",
                DIM.render(),
                token.value,
                token.value,
                DIM.render_reset()
            );
        }
    })?;
    Ok(exit::OK)
}
