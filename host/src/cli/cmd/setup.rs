//! `iso setup [--template NAME]`.

use crate::cli::output::GREEN;
use crate::cli::{exit, CmdResult};
use crate::lifecycle::setup;
use crate::project::Project;

pub fn run(project: &Project, template: Option<&str>, force: bool) -> CmdResult {
    let Some(name) = template else {
        println!("templates (iso setup --template NAME):");
        for t in setup::templates() {
            println!("  {:<20} {}", t.name, t.about);
        }
        return Ok(exit::OK);
    };
    let (path, t) = setup::setup(project, name, force)?;
    anstream::println!("{}✓{} wrote {} from template {}", GREEN.render(), GREEN.render_reset(), path.display(), t.name);
    Ok(exit::OK)
}
