//! Compose projects as Compose itself reads them.
//!
//! The differential test runs iso's own loader and the real Compose v2
//! (`config --format json`, installed by .ci/install-deps) over every
//! project of tests/fixtures/compose/ and compares what a stack is made of:
//! services, images and builds, commands, environment, ports, volumes,
//! depends_on, healthchecks, secrets and configs, tmpfs, restart, labels.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use iso::config::services::ComposeSpec;
use iso::services::compose::{self, binary, Loader};
use serde_json::Value;

fn corpus() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/compose");
    let mut projects: Vec<PathBuf> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).filter(|p| p.is_dir()).collect();
    projects.sort();
    projects
}

/// The shell environment both loaders interpolate with.
fn shell() -> BTreeMap<String, String> {
    [("FROM_SHELL", "shell"), ("BOTH", "from-shell")].into_iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// The keys compared, per service.
const KEYS: [&str; 18] = [
    "image",
    "build",
    "pull_policy",
    "command",
    "entrypoint",
    "working_dir",
    "user",
    "environment",
    "ports",
    "volumes",
    "tmpfs",
    "depends_on",
    "healthcheck",
    "restart",
    "labels",
    "secrets",
    "configs",
    "profiles",
];

fn services(model: &compose::model::Model) -> BTreeMap<String, BTreeMap<&'static str, Value>> {
    let json = serde_json::to_value(model).unwrap();
    let mut out = BTreeMap::new();
    for (name, s) in json["services"].as_object().cloned().unwrap_or_default() {
        let picked = KEYS.iter().map(|k| (*k, s.get(*k).cloned().unwrap_or(Value::Null))).collect();
        out.insert(name, picked);
    }
    out
}

#[test]
fn isos_loader_reads_every_corpus_project_as_compose_v2_does() {
    let bin = binary::find().expect("Compose v2 is needed for this test (docker compose; .ci/install-deps installs it)");
    let projects = corpus();
    assert!(projects.len() >= 25, "the corpus has {} projects", projects.len());
    let env = shell();
    let spec = ComposeSpec::default();
    let mut diffs = Vec::new();
    for dir in &projects {
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        let real = compose::load(dir, &spec, &env, Loader::Compose(bin)).unwrap_or_else(|e| panic!("{name}: Compose: {e}"));
        let ours = match compose::load(dir, &spec, &env, Loader::Builtin) {
            Ok(o) => o,
            Err(e) => {
                diffs.push(format!("{name}: iso's loader fails: {e}"));
                continue;
            }
        };
        assert_eq!(real.files, ours.files, "{name}: the same files");
        let (a, b) = (services(&real.model), services(&ours.model));
        if a.keys().ne(b.keys()) {
            diffs.push(format!("{name}: services: Compose {:?}, iso {:?}", a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>()));
            continue;
        }
        for (svc, keys) in &a {
            for (k, v) in keys {
                let w = &b[svc][k];
                if v != w {
                    diffs.push(format!("{name}: services.{svc}.{k}:\n    Compose: {v}\n    iso:     {w}"));
                }
            }
        }
        for (k, x, y) in [
            ("volumes", serde_json::to_value(&real.model.volumes).unwrap(), serde_json::to_value(&ours.model.volumes).unwrap()),
            ("secrets", serde_json::to_value(&real.model.secrets).unwrap(), serde_json::to_value(&ours.model.secrets).unwrap()),
            ("configs", serde_json::to_value(&real.model.configs).unwrap(), serde_json::to_value(&ours.model.configs).unwrap()),
        ] {
            if x != y {
                diffs.push(format!("{name}: {k}:\n    Compose: {x}\n    iso:     {y}"));
            }
        }
    }
    assert!(diffs.is_empty(), "iso's loader differs from Compose v2 in {} places:\n{}", diffs.len(), diffs.join("\n"));
}

#[test]
fn a_required_variable_is_an_error_naming_it_and_its_file_in_both_loaders() {
    let bin = binary::find().expect("Compose v2 is needed for this test");
    let dir = tempfile::tempdir().unwrap();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/compose/fullstack-override-env");
    for f in ["compose.yml", "compose.override.yml"] {
        std::fs::copy(fixture.join(f), dir.path().join(f)).unwrap();
    }
    std::fs::write(dir.path().join(".env"), "POSTGRES_PASSWORD=x\nPOSTGRES_USER=u\nPOSTGRES_DB=d\nDOCKER_IMAGE_BACKEND=b\n").unwrap();
    for loader in [Loader::Compose(bin), Loader::Builtin] {
        let e = compose::load(dir.path(), &ComposeSpec::default(), &shell(), loader).unwrap_err().to_string();
        assert!(e.contains("SECRET_KEY") && e.contains("Variable not set") && e.contains("compose.yml"), "{loader:?}: {e}");
    }
}
