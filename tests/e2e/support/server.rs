//! A real `iso serve` for the API and discovery suites.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use super::TestRepo;

/// A running `iso serve` on 127.0.0.1 (port 0), killed on drop, so a
/// failing test stops it too.
pub struct Server {
    pub child: Child,
    pub url: String,
}

impl Server {
    /// Starts it with `token` as `ISO_API_TOKEN` (none: the server makes
    /// one) and waits for its "listening on" line.
    pub fn start(repo: &TestRepo, token: Option<&str>) -> Server {
        let mut cmd = repo.iso_cmd(&["serve", "--bind", "127.0.0.1:0"]);
        match token {
            Some(t) => cmd.env("ISO_API_TOKEN", t),
            None => cmd.env_remove("ISO_API_TOKEN"),
        };
        let mut child = cmd.env_remove("ISO_API_URL").stdout(Stdio::piped()).stderr(Stdio::null()).spawn().expect("start iso serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let url = line.trim().strip_prefix("listening on ").unwrap_or_else(|| panic!("unexpected first line {line:?}")).to_string();
        assert!(url.starts_with("http://127.0.0.1:"), "{url}");
        Server { child, url }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM (a graceful stop), and wait for it to end.
    pub fn stop(&mut self) {
        let st = Command::new("kill").args(["-TERM", &self.pid().to_string()]).status().unwrap();
        assert!(st.success());
        let _ = self.child.wait();
    }

    /// SIGKILL: no chance to remove anything.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}
