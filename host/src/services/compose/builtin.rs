//! iso's own Compose loader, for machines without a Compose v2 binary: the
//! same steps as compose-go, in the same order. Per file: parse (YAML
//! anchors and `<<` merge keys), interpolate every string value, resolve
//! `extends`, load `include`d projects, lay it over the files before it;
//! then keep the services of the enabled profiles and spell everything out
//! ([`normalize`]). The corpus test (tests/e2e/compose.rs) holds it to what
//! `docker compose config` says for the same projects.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_yaml_ng::{Mapping, Value};

use super::interpolate::Interpolator;
use super::merge::{merge, scalar_text, untag};
use super::model::Model;
use super::normalize::{self, absolute};
use super::{dotenv, LoadError};

/// One project to load.
pub struct Request<'a> {
    pub files: &'a [PathBuf],
    pub project_dir: &'a Path,
    /// Enabled profiles; empty: `COMPOSE_PROFILES` from the environment or
    /// `.env`, as Compose does.
    pub profiles: &'a [String],
    /// The shell's environment as iso passes it on (with the thread's
    /// values).
    pub env: &'a BTreeMap<String, String>,
}

/// The model, and Compose's warnings (unset variables, ...).
pub fn load(req: &Request) -> Result<(Model, Vec<String>), LoadError> {
    let env = project_env(req.project_dir, req.env)?;
    let mut loader = Loader { env: &env, warnings: BTreeSet::new() };
    let model = loader.project(req.files, req.project_dir, req.profiles)?;
    Ok((model, loader.warnings.into_iter().collect()))
}

/// The shell's environment with the project's `.env` under it (the shell
/// wins, as in Compose).
pub fn project_env(project_dir: &Path, shell: &BTreeMap<String, String>) -> Result<BTreeMap<String, String>, LoadError> {
    let mut env = shell.clone();
    let path = project_dir.join(".env");
    if let Ok(text) = std::fs::read_to_string(&path) {
        let lookup = |k: &str| shell.get(k).cloned();
        let vars = dotenv::parse(&text, &lookup).map_err(|e| LoadError::new(&path, format!("line {}: {}", e.line, e.message)))?;
        for (k, v) in vars {
            if let Some(v) = v {
                env.entry(k).or_insert(v);
            }
        }
    }
    Ok(env)
}

struct Loader<'a> {
    env: &'a BTreeMap<String, String>,
    warnings: BTreeSet<String>,
}

impl Loader<'_> {
    fn project(&mut self, files: &[PathBuf], project_dir: &Path, profiles: &[String]) -> Result<Model, LoadError> {
        let mut dict = Value::Mapping(Mapping::new());
        let mut included: Vec<(PathBuf, Model)> = Vec::new();
        for file in files {
            let mut tree = self.read(file)?;
            if let Some(inc) = tree.as_mapping_mut().and_then(|m| m.remove("include")) {
                for entry in sequence(&inc) {
                    included.push(self.include(&entry, file, profiles)?);
                }
            }
            self.extends(&mut tree, file)?;
            dict = merge(dict, tree, &[]);
        }
        let enabled = self.enabled_profiles(profiles);
        if let Some(services) = dict.get_mut("services").and_then(Value::as_mapping_mut) {
            services.retain(|_, s| {
                let wanted: Vec<String> = s.get("profiles").map(|p| sequence(p).iter().map(scalar_text).collect()).unwrap_or_default();
                wanted.is_empty() || wanted.iter().any(|p| p.is_empty() || enabled.contains(p) || enabled.contains("*"))
            });
        }
        let lookup = |k: &str| self.env.get(k).cloned();
        let first = files.first().cloned().unwrap_or_default();
        let cx = normalize::Context { project_dir, env: &lookup };
        let mut model = normalize::project(&strip_tags(dict), &cx).map_err(|m| LoadError::new(&first, m))?;
        for (file, sub) in included {
            for (name, s) in sub.services {
                if model.services.contains_key(&name) {
                    return Err(LoadError::new(
                        &first,
                        format!("services.{name} conflicts with the service of the same name in the included {}", file.display()),
                    ));
                }
                model.services.insert(name, s);
            }
            model.volumes.extend(sub.volumes);
            model.secrets.extend(sub.secrets);
            model.configs.extend(sub.configs);
        }
        normalize::validate(&model).map_err(|m| LoadError::new(&first, m))?;
        Ok(model)
    }

    fn enabled_profiles(&self, asked: &[String]) -> BTreeSet<String> {
        if !asked.is_empty() {
            return asked.iter().cloned().collect();
        }
        self.env.get("COMPOSE_PROFILES").map(|p| p.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect()).unwrap_or_default()
    }

    /// Parse and interpolate one file.
    fn read(&mut self, file: &Path) -> Result<Value, LoadError> {
        let text = std::fs::read_to_string(file).map_err(|e| LoadError::new(file, format!("cannot read it: {e}")))?;
        let mut tree: Value = serde_yaml_ng::from_str(&text).map_err(|e| LoadError::new(file, e.to_string()))?;
        if tree.is_null() {
            tree = Value::Mapping(Mapping::new());
        }
        tree.apply_merge().map_err(|e| LoadError::new(file, e.to_string()))?;
        if !tree.is_mapping() {
            return Err(LoadError::new(file, "the top level must be a mapping (services:, volumes:, ...)".into()));
        }
        let lookup = |k: &str| self.env.get(k).cloned();
        let mut interp = Interpolator::new(&lookup);
        let mut path = Vec::new();
        interpolate(&mut tree, &mut interp, &mut path).map_err(|(at, p)| LoadError::new(file, format!("{at}: {p}")))?;
        for name in &interp.unset {
            self.warnings.insert(format!("The \"{name}\" variable is not set. Defaulting to a blank string."));
        }
        Ok(tree)
    }

    /// Resolve `extends` of every service of `tree` (read from `file`).
    fn extends(&mut self, tree: &mut Value, file: &Path) -> Result<(), LoadError> {
        let Some(services) = tree.get("services").and_then(Value::as_mapping).cloned() else { return Ok(()) };
        let mut resolved = Mapping::new();
        for (name, _) in &services {
            let name = scalar_text(name);
            let mut seen = Vec::new();
            let s = self.resolve(&services, &name, file, &mut seen)?;
            resolved.insert(Value::String(name), s);
        }
        tree["services"] = Value::Mapping(resolved);
        Ok(())
    }

    fn resolve(&mut self, services: &Mapping, name: &str, file: &Path, seen: &mut Vec<(PathBuf, String)>) -> Result<Value, LoadError> {
        let key = (file.to_path_buf(), name.to_string());
        if seen.contains(&key) {
            return Err(LoadError::new(file, format!("services.{name}: extends makes a cycle")));
        }
        seen.push(key);
        let mut svc = services.get(name).cloned().ok_or_else(|| LoadError::new(file, format!("extends: no service `{name}` in this file")))?;
        let Some(ext) = svc.as_mapping_mut().and_then(|m| m.remove("extends")) else { return Ok(svc) };
        let (base_name, base_file) = match &ext {
            Value::Mapping(_) => (ext.get("service").map(scalar_text).unwrap_or_default(), ext.get("file").map(scalar_text)),
            other => (scalar_text(other), None),
        };
        let base = match base_file {
            None => self.resolve(services, &base_name, file, seen)?,
            Some(f) => {
                let dir = file.parent().unwrap_or(Path::new("."));
                let other = PathBuf::from(absolute(dir, &f));
                let tree = self.read(&other)?;
                let others = tree.get("services").and_then(Value::as_mapping).cloned().unwrap_or_default();
                let mut base = self.resolve(&others, &base_name, &other, seen)?;
                rebase_paths(&mut base, other.parent().unwrap_or(Path::new(".")));
                base
            }
        };
        Ok(merge(base, svc, &["services", name]))
    }

    fn include(&mut self, entry: &Value, file: &Path, profiles: &[String]) -> Result<(PathBuf, Model), LoadError> {
        let dir = file.parent().unwrap_or(Path::new("."));
        let paths: Vec<String> = match entry {
            Value::Mapping(_) => entry.get("path").map(|p| sequence(p).iter().map(scalar_text).collect()).unwrap_or_default(),
            other => vec![scalar_text(other)],
        };
        let files: Vec<PathBuf> = paths.iter().map(|p| PathBuf::from(absolute(dir, p))).collect();
        let first = files.first().cloned().ok_or_else(|| LoadError::new(file, "include: an entry without a path".into()))?;
        let project_dir = match entry.get("project_directory") {
            Some(p) => PathBuf::from(absolute(dir, &scalar_text(p))),
            None => first.parent().unwrap_or(dir).to_path_buf(),
        };
        let env = project_env(&project_dir, self.env)?;
        let mut sub = Loader { env: &env, warnings: BTreeSet::new() };
        let model = sub.project(&files, &project_dir, profiles)?;
        self.warnings.extend(sub.warnings);
        Ok((first, model))
    }
}

/// Interpolate every string value in place (keys are left alone, as in
/// Compose); an error names the path of the value.
fn interpolate(v: &mut Value, interp: &mut Interpolator, path: &mut Vec<String>) -> Result<(), (String, super::interpolate::Problem)> {
    match v {
        Value::String(s) => {
            *s = interp.apply(s).map_err(|p| (path.join("."), p))?;
        }
        Value::Sequence(l) => {
            for (i, item) in l.iter_mut().enumerate() {
                path.push(i.to_string());
                interpolate(item, interp, path)?;
                path.pop();
            }
        }
        Value::Mapping(m) => {
            for (k, item) in m.iter_mut() {
                path.push(scalar_text(k));
                interpolate(item, interp, path)?;
                path.pop();
            }
        }
        Value::Tagged(t) => interpolate(&mut t.value, interp, path)?,
        _ => {}
    }
    Ok(())
}

/// A service read from another file keeps its relative paths relative to
/// that file's directory: make them absolute before it is merged.
fn rebase_paths(svc: &mut Value, dir: &Path) {
    let fix = |s: &str| if s.starts_with('/') || s.contains("://") { s.to_string() } else { absolute(dir, s) };
    match svc.get_mut("build") {
        Some(Value::String(s)) => *s = fix(s),
        Some(b @ Value::Mapping(_)) => {
            let ctx = b.get("context").map(scalar_text).unwrap_or_else(|| ".".into());
            b["context"] = Value::String(fix(&ctx));
        }
        _ => {}
    }
    if let Some(Value::Sequence(vols)) = svc.get_mut("volumes") {
        for v in vols {
            match v {
                Value::String(s) if s.starts_with('.') => {
                    if let Some((src, rest)) = s.split_once(':') {
                        *s = format!("{}:{rest}", fix(src));
                    }
                }
                Value::Mapping(_) if v.get("type").map(scalar_text).as_deref() == Some("bind") => {
                    if let Some(src) = v.get("source").map(scalar_text) {
                        v["source"] = Value::String(fix(&src));
                    }
                }
                _ => {}
            }
        }
    }
    match svc.get_mut("env_file") {
        Some(Value::String(s)) => *s = fix(s),
        Some(Value::Sequence(l)) => {
            for e in l {
                match e {
                    Value::String(s) => *s = fix(s),
                    Value::Mapping(_) => {
                        if let Some(p) = e.get("path").map(scalar_text) {
                            e["path"] = Value::String(fix(&p));
                        }
                    }
                    _ => {}
                }
            }
        }
        _ => {}
    }
}

fn sequence(v: &Value) -> Vec<Value> {
    match v {
        Value::Sequence(l) => l.clone(),
        Value::Null => Vec::new(),
        other => vec![other.clone()],
    }
}

/// Tags left after merging (a `!reset` in the first file) count as their value.
fn strip_tags(v: Value) -> Value {
    match untag(v) {
        Value::Sequence(l) => Value::Sequence(l.into_iter().map(strip_tags).collect()),
        Value::Mapping(m) => Value::Mapping(m.into_iter().map(|(k, v)| (k, strip_tags(v))).collect()),
        other => other,
    }
}
