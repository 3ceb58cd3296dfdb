//! `iso doctor [--fix [--volumes]]`.

use crate::cli::output::{GREEN, RED};
use crate::cli::{exit, CmdResult};
use crate::lifecycle;
use crate::project::Project;

pub fn run(project: &Project, fix: bool, volumes: bool, json: bool) -> CmdResult {
    let findings = lifecycle::doctor::doctor(project, fix, volumes)?;
    let left = findings.iter().filter(|f| !f.fixed).count();
    if json {
        super::json(&findings);
    } else if findings.is_empty() {
        anstream::println!("{}✓{} registry, worktrees and ports agree", GREEN.render(), GREEN.render_reset());
    } else {
        for f in &findings {
            let (mark, style) = if f.fixed { ("fixed", GREEN) } else { ("problem", RED) };
            anstream::println!("{}{mark}:{} {}", style.render(), style.render_reset(), f.problem);
            match (&f.error, f.fixed, fix) {
                (Some(e), _, _) => println!("  could not fix: {e}"),
                (None, false, false) => println!("  --fix would: {}", f.fix),
                (None, false, true) => println!("  to fix: {}", f.fix),
                _ => {}
            }
        }
        if left > 0 && !fix {
            eprintln!("{left} problem(s); run `iso doctor --fix` to repair");
        }
    }
    Ok(if left == 0 { exit::OK } else { exit::ERROR })
}
