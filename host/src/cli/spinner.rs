//! The CLI's [`Progress`]: a spinner on stderr when it is a terminal,
//! nothing when piped (notes still go to stderr).

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::progress::Progress;

pub struct Spinner {
    bar: Option<ProgressBar>,
    hook_logs: bool,
}

impl Spinner {
    pub fn new(quiet: bool) -> Spinner {
        if quiet || !std::io::stderr().is_terminal() {
            return Spinner { bar: None, hook_logs: false };
        }
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        bar.set_style(ProgressStyle::with_template("{spinner} {msg} {elapsed:.dim}").expect("valid template"));
        bar.enable_steady_tick(Duration::from_millis(100));
        Spinner { bar: Some(bar), hook_logs: false }
    }

    /// Show what hooks log (on stderr) while they run.
    pub fn hook_logs(mut self, show: bool) -> Spinner {
        self.hook_logs = show;
        self
    }
}

impl Progress for Spinner {
    fn step(&self, message: &str) {
        if let Some(bar) = &self.bar {
            bar.set_message(message.to_string());
        }
    }

    fn note(&self, message: &str) {
        match &self.bar {
            Some(bar) => bar.suspend(|| anstream::eprintln!("{}note:{} {message}", super::output::YELLOW.render(), super::output::YELLOW.render_reset())),
            None => eprintln!("note: {message}"),
        }
    }

    fn show_hook_logs(&self) -> bool {
        self.hook_logs
    }
}

impl Drop for Spinner {
    fn drop(&mut self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
