//! `iso setup`: start an `iso.toml` from one of the ready stack templates.

use std::path::PathBuf;

use super::Error;
use crate::config::REPO_CONFIG_FILE;
use crate::project::Project;
use crate::services::templates;

pub use crate::services::templates::Template;

/// The templates `iso setup --template NAME` knows.
pub fn templates() -> &'static [Template] {
    templates::ALL
}

/// Write template `name` as the repository's `iso.toml` (refused when one
/// exists, unless `force`). Returns the file written and the template.
pub fn setup(project: &Project, name: &str, force: bool) -> Result<(PathBuf, &'static Template), Error> {
    let t = templates::find(name)?;
    let path = project.root().join(REPO_CONFIG_FILE);
    if path.exists() && !force {
        return Err(Error::Exists { path, hint: "pass --force to replace it" });
    }
    std::fs::write(&path, t.text).map_err(|source| Error::Io { action: format!("write {}", path.display()), source })?;
    Ok((path, t))
}
