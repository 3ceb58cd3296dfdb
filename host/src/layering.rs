//! The layering guard: fails when a module uses one it may not (see the
//! crate docs and README, "Architecture"). It reads the sources, so a new
//! module must be given a layer here before anything compiles against it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Layer {
    /// Plain types every module may use.
    Model,
    /// One concern each; they never use each other.
    Concern,
    /// The opened repository.
    Project,
    /// The one orchestrator.
    Lifecycle,
    /// CLI, Nushell plugin, HTTP API, remote client.
    FrontEnd,
}

const LAYERS: &[(&str, Layer)] = &[
    ("config", Layer::Model),
    ("envvar", Layer::Model),
    ("error", Layer::Model),
    ("events", Layer::Model),
    ("lockedfile", Layer::Model),
    ("progress", Layer::Model),
    ("rooted", Layer::Model),
    ("stamp", Layer::Model),
    ("thread", Layer::Model),
    ("agent", Layer::Concern),
    ("copyfiles", Layer::Concern),
    ("envfile", Layer::Concern),
    ("eventlog", Layer::Concern),
    ("hooks", Layer::Concern),
    ("ledger", Layer::Concern),
    ("listeners", Layer::Concern),
    ("names", Layer::Concern),
    ("ports", Layer::Concern),
    ("registry", Layer::Concern),
    ("servers", Layer::Concern),
    ("services", Layer::Concern),
    ("worktree", Layer::Concern),
    ("project", Layer::Project),
    ("lifecycle", Layer::Lifecycle),
    ("api", Layer::FrontEnd),
    ("cli", Layer::FrontEnd),
    ("nu", Layer::FrontEnd),
    ("remote", Layer::FrontEnd),
];

/// Whether a module of layer `from` may use module `to` of layer `to_layer`.
fn allowed(from: Layer, from_module: &str, to: &str, to_layer: Layer) -> bool {
    if from_module == to {
        return true;
    }
    match from {
        Layer::Model => to_layer == Layer::Model,
        Layer::Concern => to_layer == Layer::Model,
        Layer::Project => matches!(to_layer, Layer::Model | Layer::Concern),
        Layer::Lifecycle => to_layer != Layer::FrontEnd,
        Layer::FrontEnd => matches!(to_layer, Layer::Model | Layer::Project | Layer::Lifecycle | Layer::FrontEnd),
    }
}

/// Source without comments (doc links name other modules without using them).
fn code_of(src: &str) -> String {
    src.lines().map(|l| l.split_once("//").map_or(l, |(code, _)| code)).collect::<Vec<_>>().join("\n")
}

/// The crate modules `code` names: `crate::x`, and each name of `crate::{x, y::z}`.
fn used_modules(code: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        let after = &rest[i + "crate::".len()..];
        // `iso::` in binaries, `crate::` in the library: both start here.
        if let Some(group) = after.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for part in group[..end].split(',') {
                let name: String = part.trim().chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                if !name.is_empty() {
                    out.insert(name);
                }
            }
        } else {
            let name: String = after.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            if !name.is_empty() {
                out.insert(name);
            }
        }
        rest = after;
    }
    out
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src").flatten() {
        let p = entry.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// The top-level module a source file belongs to (`lifecycle/init.rs` →
/// `lifecycle`), `None` for lib.rs and the binaries.
fn module_of(src_dir: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src_dir).ok()?;
    let first = rel.components().next()?.as_os_str().to_string_lossy().to_string();
    match first.as_str() {
        "lib.rs" | "bin" => None,
        f => Some(f.trim_end_matches(".rs").to_string()),
    }
}

#[test]
fn modules_use_only_the_layers_below_them() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let layers: BTreeMap<&str, Layer> = LAYERS.iter().copied().collect();
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut problems = Vec::new();
    let mut seen = BTreeSet::new();
    for file in &files {
        let Some(module) = module_of(&src, file) else { continue };
        if module == "layering" {
            continue;
        }
        seen.insert(module.clone());
        let Some(&layer) = layers.get(module.as_str()) else {
            problems.push(format!("{}: module `{module}` has no layer in layering.rs", file.display()));
            continue;
        };
        let code = code_of(&std::fs::read_to_string(file).unwrap());
        for used in used_modules(&code) {
            match layers.get(used.as_str()) {
                // Re-exports from lib.rs (`crate::Config`) and macros.
                None if used.chars().next().is_some_and(|c| c.is_ascii_uppercase()) => {}
                None => problems.push(format!("{}: uses `crate::{used}`, which has no layer", file.display())),
                Some(&to) if !allowed(layer, &module, &used, to) => problems.push(format!("{}: {module} ({layer:?}) uses {used} ({to:?})", file.display())),
                Some(_) => {}
            }
        }
        // A front end holds a Project only to hand it to the lifecycle.
        if layer == Layer::FrontEnd && (code.contains(".git()") || code.contains(".registry()")) {
            problems.push(format!("{}: a front end reaches into the project's git or registry", file.display()));
        }
    }
    for (m, _) in LAYERS {
        assert!(seen.contains(*m), "layering.rs names `{m}`, which is not a module any more");
    }
    assert!(problems.is_empty(), "layering broken:\n  {}", problems.join("\n  "));
}

#[test]
fn the_guard_sees_imports_in_every_form() {
    let code = code_of("use crate::registry::Registry;\nuse crate::{ports, thread::Owner};\nlet x = crate::hooks::run(); // crate::cli in a comment\n");
    let used: Vec<String> = used_modules(&code).into_iter().collect();
    assert_eq!(used, ["hooks", "ports", "registry", "thread"]);
    assert!(!allowed(Layer::Concern, "agent", "lifecycle", Layer::Lifecycle));
    assert!(!allowed(Layer::Concern, "agent", "eventlog", Layer::Concern));
    assert!(!allowed(Layer::FrontEnd, "cli", "registry", Layer::Concern));
    assert!(allowed(Layer::FrontEnd, "cli", "lifecycle", Layer::Lifecycle));
    assert!(allowed(Layer::Lifecycle, "lifecycle", "hooks", Layer::Concern));
}
