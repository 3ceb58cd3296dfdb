//! `iso setup`: start an `iso.toml` from one of the ready stack templates
//! (`compose`: written for the repository's own Compose project).

use std::path::PathBuf;

use super::Error;
use crate::config::REPO_CONFIG_FILE;
use crate::project::Project;
use crate::services::{compose, templates};

pub use crate::services::templates::Template;

/// The templates `iso setup --template NAME` knows.
pub fn templates() -> &'static [Template] {
    templates::ALL
}

/// `--template compose`: the `[compose]` section for the Compose project
/// found in the repository (Compose's file names, with the override), slots
/// guessed from its services' images and ports.
fn compose_config(project: &Project) -> Result<String, Error> {
    let env: std::collections::BTreeMap<String, String> = std::env::vars().collect();
    let spec = crate::config::services::ComposeSpec::default();
    let loaded = compose::load(project.root(), &spec, &env, compose::Loader::preferred())?;
    let files: Vec<&std::path::Path> = loaded.files.iter().map(|f| f.strip_prefix(project.root()).unwrap_or(f)).collect();
    Ok(compose::suggest(&loaded.model, &files))
}

/// Write template `name` as the repository's `iso.toml` (refused when one
/// exists, unless `force`). Returns the file written and the template.
pub fn setup(project: &Project, name: &str, force: bool) -> Result<(PathBuf, &'static Template), Error> {
    let t = templates::find(name)?;
    let path = project.root().join(REPO_CONFIG_FILE);
    if path.exists() && !force {
        return Err(Error::Exists { path, hint: "pass --force to replace it" });
    }
    let text = if t.name == "compose" { compose_config(project)? } else { t.text.to_string() };
    std::fs::write(&path, text).map_err(|source| Error::Io { action: format!("write {}", path.display()), source })?;
    Ok((path, t))
}
