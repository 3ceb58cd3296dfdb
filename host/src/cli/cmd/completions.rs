//! `iso completions SHELL`.

use clap::CommandFactory;

use crate::cli::args::{Cli, CompletionShell};
use crate::cli::exit;

pub fn run(shell: CompletionShell) -> i32 {
    use clap_complete::Shell;
    let mut cmd = Cli::command();
    let out = &mut std::io::stdout();
    match shell {
        CompletionShell::Bash => clap_complete::generate(Shell::Bash, &mut cmd, "iso", out),
        CompletionShell::Zsh => clap_complete::generate(Shell::Zsh, &mut cmd, "iso", out),
        CompletionShell::Fish => clap_complete::generate(Shell::Fish, &mut cmd, "iso", out),
        CompletionShell::Powershell => clap_complete::generate(Shell::PowerShell, &mut cmd, "iso", out),
        CompletionShell::Elvish => clap_complete::generate(Shell::Elvish, &mut cmd, "iso", out),
        CompletionShell::Nushell => clap_complete::generate(clap_complete_nushell::Nushell, &mut cmd, "iso", out),
    }
    exit::OK
}
