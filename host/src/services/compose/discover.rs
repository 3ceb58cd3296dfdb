//! Which Compose files make the project, and its directory, found the way
//! Compose finds them: `[compose] file` (iso's `-f`), else `COMPOSE_FILE`
//! (from the environment or the `.env` beside the files), else the first of
//! Compose's file names and the first of its override names.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::dotenv;
use crate::config::services::ComposeSpec;

/// Compose's file names, in the order it tries them.
pub const NAMES: [&str; 4] = ["compose.yaml", "compose.yml", "docker-compose.yml", "docker-compose.yaml"];
/// Its override file names, in its order.
pub const OVERRIDE_NAMES: [&str; 4] = ["compose.override.yml", "compose.override.yaml", "docker-compose.override.yml", "docker-compose.override.yaml"];

/// The files and project directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub files: Vec<PathBuf>,
    pub project_dir: PathBuf,
    /// Things worth saying (several files with Compose's names).
    pub notes: Vec<String>,
}

/// Why no project was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotFound {
    pub path: PathBuf,
    pub message: String,
}

/// The Compose files Compose itself would use in `dir`: the first default
/// name found, then the first override name found (empty: none).
pub fn default_files(dir: &Path) -> Vec<PathBuf> {
    let first = |names: &[&str]| names.iter().map(|n| dir.join(n)).find(|p| p.is_file());
    match first(&NAMES) {
        Some(main) => std::iter::once(main).chain(first(&OVERRIDE_NAMES)).collect(),
        None => Vec::new(),
    }
}

/// Find the project under `root` (a thread's worktree, or the repository).
/// `env` is the environment iso runs with.
pub fn find(root: &Path, spec: &ComposeSpec, env: &BTreeMap<String, String>) -> Result<Found, NotFound> {
    let mut notes = Vec::new();
    let files: Vec<PathBuf> = if !spec.file.is_empty() {
        spec.file.iter().map(|f| root.join(f)).collect()
    } else if let Some(list) = compose_file_variable(root, env) {
        let sep = env.get("COMPOSE_PATH_SEPARATOR").cloned().unwrap_or_else(|| ":".into());
        list.split(sep.as_str()).filter(|f| !f.is_empty()).map(|f| root.join(f)).collect()
    } else {
        let all: Vec<&str> = NAMES.iter().copied().filter(|n| root.join(n).is_file()).collect();
        if all.len() > 1 {
            notes.push(format!("found several Compose files ({}); using {}, as Compose does", all.join(", "), all[0]));
        }
        let found = default_files(root);
        if found.is_empty() {
            return Err(NotFound { path: root.to_path_buf(), message: format!("no Compose file ({}) in {}", NAMES.join(", "), root.display()) });
        }
        found
    };
    for f in &files {
        if !f.is_file() {
            return Err(NotFound { path: f.clone(), message: "does not exist".into() });
        }
    }
    let project_dir = match &spec.project_directory {
        Some(d) => root.join(d),
        None => files[0].parent().unwrap_or(root).to_path_buf(),
    };
    Ok(Found { files, project_dir, notes })
}

/// `COMPOSE_FILE` from the environment, else from `root/.env`.
fn compose_file_variable(root: &Path, env: &BTreeMap<String, String>) -> Option<String> {
    if let Some(v) = env.get("COMPOSE_FILE").filter(|v| !v.is_empty()) {
        return Some(v.clone());
    }
    let text = std::fs::read_to_string(root.join(".env")).ok()?;
    let lookup = |k: &str| env.get(k).cloned();
    let vars = dotenv::parse(&text, &lookup).ok()?;
    vars.into_iter().find(|(k, _)| k == "COMPOSE_FILE").and_then(|(_, v)| v).filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compose_names_overrides_and_compose_file() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let none = BTreeMap::new();
        let spec = ComposeSpec::default();
        assert!(find(root, &spec, &none).unwrap_err().message.contains("no Compose file"));
        std::fs::write(root.join("docker-compose.yml"), "services: {}\n").unwrap();
        std::fs::write(root.join("compose.yml"), "services: {}\n").unwrap();
        std::fs::write(root.join("compose.override.yml"), "services: {}\n").unwrap();
        let f = find(root, &spec, &none).unwrap();
        assert_eq!(f.files, [root.join("compose.yml"), root.join("compose.override.yml")]);
        assert_eq!(f.project_dir, root);
        assert!(f.notes[0].contains("using compose.yml"), "{:?}", f.notes);

        std::fs::create_dir(root.join("deploy")).unwrap();
        std::fs::write(root.join("deploy/a.yml"), "services: {}\n").unwrap();
        std::fs::write(root.join(".env"), "COMPOSE_FILE=deploy/a.yml:compose.yml\n").unwrap();
        let f = find(root, &spec, &none).unwrap();
        assert_eq!(f.files, [root.join("deploy/a.yml"), root.join("compose.yml")]);
        assert_eq!(f.project_dir, root.join("deploy"), "the first file's directory");

        let spec = ComposeSpec { file: vec!["nope.yml".into()], ..Default::default() };
        assert_eq!(find(root, &spec, &none).unwrap_err().path, root.join("nope.yml"));
    }
}
