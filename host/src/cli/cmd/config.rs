//! `iso config`: the effective configuration and where it came from.

use std::path::PathBuf;

use serde::Serialize;

use crate::cli::{exit, CmdResult};
use crate::project::Project;

pub fn run(project: &Project, json: bool) -> CmdResult {
    if json {
        #[derive(Serialize)]
        struct Shown<'a> {
            sources: &'a [PathBuf],
            config: &'a crate::Config,
            registry: PathBuf,
        }
        super::json(&Shown { sources: &project.config.sources, config: &project.config, registry: project.registry_path() });
    } else {
        let sources: Vec<String> = project.config.sources.iter().map(|p| p.display().to_string()).collect();
        println!("# sources: {}", if sources.is_empty() { "built-in defaults".to_string() } else { sources.join(", ") });
        println!("# registry: {}", project.registry_path().display());
        print!("{}", project.config.to_toml());
    }
    Ok(exit::OK)
}
