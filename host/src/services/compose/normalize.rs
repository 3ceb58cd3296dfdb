//! From a merged, interpolated Compose tree to the [`Model`]: every short
//! form spelled out the way `docker compose config` spells it (ports,
//! volumes, environment, depends_on, healthcheck, secrets, ...), paths made
//! absolute against the project directory, `env_file`s read in.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use serde_json::Value as Json;
use serde_yaml_ng::{Mapping, Value};

use super::dotenv;
use super::merge::scalar_text;
use super::model::{
    parse_duration_ms, BindOptions, Build, Dependency, FileMount, Healthcheck, Model, Mount, Port, Service, TmpfsOptions, TopFile, TopVolume, VolumeOptions,
};
use crate::config::services::split_words;

/// What normalising needs besides the tree.
pub struct Context<'a> {
    pub project_dir: &'a Path,
    /// The project's environment (the shell's, then `.env`): bare
    /// `environment` entries and `env_file` variables are looked up here.
    pub env: &'a dyn Fn(&str) -> Option<String>,
}

type Result<T> = std::result::Result<T, String>;

/// The whole project (`services` already filtered by profile).
pub fn project(tree: &Value, cx: &Context) -> Result<Model> {
    let mut model = Model::default();
    if let Some(services) = tree.get("services").and_then(Value::as_mapping) {
        for (name, svc) in services {
            let name = scalar_text(name);
            let s = service(&name, svc, cx).map_err(|m| format!("services.{name}.{m}"))?;
            model.services.insert(name, s);
        }
    }
    for (name, v) in mapping_of(tree.get("volumes")) {
        let v = v.unwrap_or(Value::Null);
        let external = v.get("external").is_some_and(truthy);
        model.volumes.insert(
            name,
            TopVolume { external, driver: v.get("driver").map(scalar_text), driver_opts: v.get("driver_opts").map(json_map).unwrap_or_default() },
        );
    }
    for (key, out) in [("secrets", &mut model.secrets), ("configs", &mut model.configs)] {
        for (name, v) in mapping_of(tree.get(key)) {
            let v = v.unwrap_or(Value::Null);
            out.insert(
                name,
                TopFile {
                    file: v.get("file").map(|f| absolute(cx.project_dir, &scalar_text(f))),
                    environment: v.get("environment").map(scalar_text),
                    external: v.get("external").is_some_and(truthy),
                },
            );
        }
    }
    // Validated by the caller, once the included projects are in.
    Ok(model)
}

/// References Compose refuses to leave dangling.
pub(super) fn validate(m: &Model) -> Result<()> {
    for (name, s) in &m.services {
        for dep in s.depends_on.keys() {
            if !m.services.contains_key(dep) {
                return Err(format!("service \"{name}\" depends on undefined service \"{dep}\""));
            }
        }
        for v in &s.volumes {
            if let (Some(src), "volume") = (&v.source, v.kind.as_str()) {
                if !m.volumes.contains_key(src) {
                    return Err(format!("service \"{name}\" refers to undefined volume {src}"));
                }
            }
        }
        for (key, list, top) in [("secret", &s.secrets, &m.secrets), ("config", &s.configs, &m.configs)] {
            for f in list {
                if !top.contains_key(&f.source) {
                    return Err(format!("service \"{name}\" refers to undefined {key} {}", f.source));
                }
            }
        }
    }
    Ok(())
}

fn service(name: &str, v: &Value, cx: &Context) -> Result<Service> {
    let empty = Mapping::new();
    let map = match v {
        Value::Mapping(m) => m,
        Value::Null => &empty,
        _ => return Err("must be a mapping".into()),
    };
    let mut s = Service::default();
    let mut env_files: Vec<Value> = Vec::new();
    for (k, val) in map {
        let key = scalar_text(k);
        let at = |m: String| format!("{key}: {m}");
        match key.as_str() {
            "image" => s.image = Some(scalar_text(val)),
            "build" => s.build = Some(build(val, cx).map_err(at)?),
            "pull_policy" => s.pull_policy = Some(scalar_text(val)),
            "command" => s.command = command(val).map_err(at)?,
            "entrypoint" => s.entrypoint = command(val).map_err(at)?,
            "working_dir" => s.working_dir = Some(scalar_text(val)),
            "user" => s.user = Some(scalar_text(val)),
            "hostname" => s.hostname = Some(scalar_text(val)),
            "stop_signal" => s.stop_signal = Some(scalar_text(val)),
            "restart" => s.restart = Some(scalar_text(val)),
            "stop_grace_period" => s.stop_grace_period = Some(duration(val).map_err(at)?),
            "tty" => s.tty = truthy(val),
            "stdin_open" => s.stdin_open = truthy(val),
            "privileged" => s.privileged = truthy(val),
            "cap_add" => s.cap_add = strings(val),
            "cap_drop" => s.cap_drop = strings(val),
            "profiles" => s.profiles = strings(val),
            "expose" => s.expose = strings(val),
            "tmpfs" => s.tmpfs = strings(val),
            "extra_hosts" => s.extra_hosts = extra_hosts(val),
            "environment" => s.environment = key_values(val, cx.env),
            "env_file" => env_files = sequence(val),
            "labels" => s.labels = key_values(val, &|_| Some(String::new())).into_iter().map(|(k, v)| (k, v.unwrap_or_default())).collect(),
            "ports" => {
                for p in sequence(val) {
                    s.ports.extend(ports(&p).map_err(at)?);
                }
                s.ports = unique_by(std::mem::take(&mut s.ports), |p| format!("{:?}:{:?}:{}/{}", p.host_ip, p.published, p.target, p.protocol));
            }
            "volumes" => {
                for m in sequence(val) {
                    s.volumes.push(mount(&m, cx).map_err(at)?);
                }
                s.volumes = unique_by(std::mem::take(&mut s.volumes), |m| m.target.clone());
            }
            "depends_on" => s.depends_on = depends_on(val),
            "healthcheck" => s.healthcheck = Some(healthcheck(val).map_err(at)?),
            "secrets" => s.secrets = unique_by(file_mounts(val, Some("/run/secrets")), |f| f.target.clone().unwrap_or_else(|| f.source.clone())),
            "configs" => s.configs = unique_by(file_mounts(val, None), |f| f.target.clone().unwrap_or_else(|| format!("/{}", f.source))),
            "extends" => {} // applied before
            "networks" => {
                let nets: serde_json::Map<String, Json> = match val {
                    Value::Sequence(l) => l.iter().map(|n| (scalar_text(n), Json::Null)).collect(),
                    other => match to_json(other) {
                        Json::Object(m) => m,
                        _ => serde_json::Map::new(),
                    },
                };
                s.other.insert(key, Json::Object(nets));
            }
            k if k.starts_with("x-") => {}
            _ => {
                s.other.insert(key, to_json(val));
            }
        }
    }
    if !s.other.contains_key("networks") && !s.other.contains_key("network_mode") {
        s.other.insert("networks".into(), serde_json::json!({ "default": null }));
    }
    // env_file first, `environment` wins.
    let mut from_files: BTreeMap<String, Option<String>> = BTreeMap::new();
    for f in env_files {
        let (path, required) = match &f {
            Value::Mapping(_) => (f.get("path").map(scalar_text).unwrap_or_default(), f.get("required").is_none_or(truthy)),
            other => (scalar_text(other), true),
        };
        let full = absolute(cx.project_dir, &path);
        let text = match std::fs::read_to_string(&full) {
            Ok(t) => t,
            Err(_) if !required => continue,
            Err(e) => return Err(format!("env_file: env file {full} not found: {e}")),
        };
        for (k, v) in dotenv::parse(&text, cx.env).map_err(|e| format!("env_file: {full}:{}: {}", e.line, e.message))? {
            from_files.insert(k, v);
        }
    }
    for (k, v) in from_files {
        s.environment.entry(k).or_insert(v);
    }
    let _ = name;
    Ok(s)
}

fn build(v: &Value, cx: &Context) -> Result<Build> {
    let mut b = Build { dockerfile: "Dockerfile".into(), ..Default::default() };
    let context = match v {
        Value::Mapping(m) => {
            for (k, val) in m {
                match scalar_text(k).as_str() {
                    "context" => {}
                    "dockerfile" => b.dockerfile = scalar_text(val),
                    "args" => b.args = key_values(val, cx.env),
                    "target" => b.target = Some(scalar_text(val)),
                    k => {
                        b.other.insert(k.to_string(), to_json(val));
                    }
                }
            }
            v.get("context").map(scalar_text).unwrap_or_else(|| ".".into())
        }
        other => scalar_text(other),
    };
    b.context = if is_remote(&context) { context } else { absolute(cx.project_dir, &context) };
    Ok(b)
}

/// A build context Compose passes on as it is (a git or HTTP URL).
fn is_remote(c: &str) -> bool {
    c.contains("://") || c.starts_with("git@") || c.starts_with("github.com/")
}

fn command(v: &Value) -> Result<Option<Vec<String>>> {
    match v {
        Value::Null => Ok(None),
        Value::Sequence(l) => Ok(Some(l.iter().map(scalar_text).collect())),
        Value::String(s) => Ok(Some(split_words(s))),
        other => Ok(Some(split_words(&scalar_text(other)))),
    }
}

fn duration(v: &Value) -> Result<u64> {
    let s = scalar_text(v);
    parse_duration_ms(&s).ok_or_else(|| format!("`{s}` is not a duration (e.g. 10s, 1m30s)"))
}

fn truthy(v: &Value) -> bool {
    match v {
        Value::Bool(b) => *b,
        Value::String(s) => matches!(s.as_str(), "true" | "True" | "yes" | "1"),
        Value::Mapping(_) => true, // `external: {name: x}` (old form)
        _ => false,
    }
}

fn sequence(v: &Value) -> Vec<Value> {
    match v {
        Value::Sequence(l) => l.clone(),
        Value::Null => Vec::new(),
        other => vec![other.clone()],
    }
}

fn strings(v: &Value) -> Vec<String> {
    sequence(v).iter().map(scalar_text).collect()
}

fn mapping_of(v: Option<&Value>) -> Vec<(String, Option<Value>)> {
    match v {
        Some(Value::Mapping(m)) => m.iter().map(|(k, v)| (scalar_text(k), Some(v.clone()))).collect(),
        _ => Vec::new(),
    }
}

/// `[K=V, K]` or `{K: V, K: null}`; a key without a value is looked up.
fn key_values(v: &Value, lookup: &dyn Fn(&str) -> Option<String>) -> BTreeMap<String, Option<String>> {
    let mut out = BTreeMap::new();
    match v {
        Value::Sequence(l) => {
            for item in l {
                let s = scalar_text(item);
                match s.split_once('=') {
                    Some((k, v)) => out.insert(k.to_string(), Some(v.to_string())),
                    None => out.insert(s.clone(), lookup(&s)),
                };
            }
        }
        Value::Mapping(m) => {
            for (k, val) in m {
                let k = scalar_text(k);
                let val = if val.is_null() { lookup(&k) } else { Some(scalar_text(val)) };
                out.insert(k, val);
            }
        }
        _ => {}
    }
    out
}

fn extra_hosts(v: &Value) -> Vec<String> {
    match v {
        Value::Mapping(m) => m.iter().map(|(k, v)| format!("{}={}", scalar_text(k), scalar_text(v))).collect(),
        other => strings(other).into_iter().map(|h| h.replacen(':', "=", 1)).collect(),
    }
}

/// Keep the last of entries with the same key, at the first one's place.
fn unique_by<T>(items: Vec<T>, key: impl Fn(&T) -> String) -> Vec<T> {
    let mut out: Vec<T> = Vec::new();
    let mut index: BTreeMap<String, usize> = BTreeMap::new();
    for item in items {
        let k = key(&item);
        match index.get(&k) {
            Some(&i) => out[i] = item,
            None => {
                index.insert(k, out.len());
                out.push(item);
            }
        }
    }
    out
}

fn ports(v: &Value) -> Result<Vec<Port>> {
    if let Value::Mapping(_) = v {
        let target = v.get("target").map(scalar_text).ok_or("a port needs `target`")?;
        let target = target.parse().map_err(|_| format!("port target `{target}` is not a number"))?;
        let published = v.get("published").map(scalar_text).filter(|p| !p.is_empty());
        return Ok(vec![Port {
            target,
            published,
            host_ip: v.get("host_ip").map(scalar_text),
            protocol: v.get("protocol").map(scalar_text).unwrap_or_else(|| "tcp".into()),
        }]);
    }
    let text = scalar_text(v);
    let (spec, protocol) = match text.rsplit_once('/') {
        Some((s, p)) => (s.to_string(), p.to_string()),
        None => (text.clone(), "tcp".to_string()),
    };
    let (host_ip, rest) = if let Some(r) = spec.strip_prefix('[') {
        let (ip, r) = r.split_once("]:").ok_or_else(|| format!("port `{text}` is not understood"))?;
        (Some(ip.to_string()), r.to_string())
    } else {
        let parts: Vec<&str> = spec.split(':').collect();
        match parts.len() {
            3 => (Some(parts[0].to_string()), format!("{}:{}", parts[1], parts[2])),
            1 | 2 => (None, spec.clone()),
            _ => return Err(format!("port `{text}` is not understood")),
        }
    };
    let (published, target) = match rest.split_once(':') {
        Some((p, t)) => (Some(p.to_string()).filter(|p| !p.is_empty()), t.to_string()),
        None => (None, rest),
    };
    let range = |s: &str| -> Result<(u16, u16)> {
        let bad = || format!("port `{text}` is not understood");
        match s.split_once('-') {
            Some((a, b)) => Ok((a.trim().parse().map_err(|_| bad())?, b.trim().parse().map_err(|_| bad())?)),
            None => {
                let n = s.trim().parse().map_err(|_| bad())?;
                Ok((n, n))
            }
        }
    };
    let (t0, t1) = range(&target)?;
    let pub_range = published.as_deref().map(range).transpose()?;
    let mut out = Vec::new();
    for (i, t) in (t0..=t1).enumerate() {
        let published = match (pub_range, &published) {
            // Ranges on both sides pair up; one published range for one
            // target stays a range.
            (Some((p0, p1)), _) if t1 > t0 && p1 > p0 => Some((p0 + i as u16).to_string()),
            (_, p) => p.clone(),
        };
        out.push(Port { target: t, published, host_ip: host_ip.clone(), protocol: protocol.clone() });
    }
    Ok(out)
}

fn mount(v: &Value, cx: &Context) -> Result<Mount> {
    if let Value::Mapping(m) = v {
        let mut out = Mount::default();
        for (k, val) in m {
            match scalar_text(k).as_str() {
                "type" => out.kind = scalar_text(val),
                "source" => out.source = Some(scalar_text(val)),
                "target" => out.target = scalar_text(val),
                "read_only" => out.read_only = truthy(val),
                "bind" => {
                    out.bind = Some(BindOptions {
                        selinux: val.get("selinux").map(scalar_text),
                        propagation: val.get("propagation").map(scalar_text),
                        create_host_path: val.get("create_host_path").map(truthy),
                    })
                }
                "volume" => out.volume = Some(VolumeOptions { nocopy: val.get("nocopy").is_some_and(truthy), subpath: val.get("subpath").map(scalar_text) }),
                "tmpfs" => out.tmpfs = Some(TmpfsOptions { size: val.get("size").map(to_json), mode: val.get("mode").map(to_json) }),
                k => {
                    out.other.insert(k.to_string(), to_json(val));
                }
            }
        }
        if out.kind == "bind" {
            out.source = out.source.map(|s| absolute(cx.project_dir, &s));
        }
        if out.target.is_empty() {
            return Err("a volume needs `target`".into());
        }
        return Ok(out);
    }
    let text = scalar_text(v);
    let parts: Vec<&str> = text.split(':').collect();
    let (source, target, mode) = match parts.as_slice() {
        [t] => (None, *t, None),
        [s, t] => (Some(*s), *t, None),
        [s, t, m] => (Some(*s), *t, Some(*m)),
        _ => return Err(format!("volume `{text}` is not SOURCE:TARGET[:MODE]")),
    };
    let mut out = Mount { target: target.to_string(), ..Default::default() };
    match source {
        None => {
            out.kind = "volume".into();
            out.volume = Some(VolumeOptions::default());
        }
        Some(s) if s.starts_with('.') || s.starts_with('/') || s.starts_with('~') => {
            out.kind = "bind".into();
            out.source = Some(absolute(cx.project_dir, s));
            out.bind = Some(BindOptions { create_host_path: Some(true), ..Default::default() });
        }
        Some(s) => {
            out.kind = "volume".into();
            out.source = Some(s.to_string());
            out.volume = Some(VolumeOptions::default());
        }
    }
    for opt in mode.into_iter().flat_map(|m| m.split(',')) {
        match opt {
            "ro" => out.read_only = true,
            "rw" | "" => {}
            "z" | "Z" => {
                if let Some(b) = out.bind.as_mut() {
                    b.selinux = Some(opt.to_string());
                }
            }
            "nocopy" => {
                if let Some(v) = out.volume.as_mut() {
                    v.nocopy = true;
                }
            }
            "cached" | "delegated" | "consistent" => {
                out.other.insert("consistency".into(), Json::String(opt.to_string()));
            }
            other => {
                out.other.insert("mode".into(), Json::String(other.to_string()));
            }
        }
    }
    Ok(out)
}

fn depends_on(v: &Value) -> BTreeMap<String, Dependency> {
    match v {
        Value::Sequence(l) => l.iter().map(|d| (scalar_text(d), Dependency::default())).collect(),
        Value::Mapping(m) => m
            .iter()
            .map(|(k, d)| {
                let dep = Dependency {
                    condition: d.get("condition").map(scalar_text).unwrap_or_else(|| "service_started".into()),
                    required: d.get("required").is_none_or(truthy),
                    restart: d.get("restart").is_some_and(truthy),
                };
                (scalar_text(k), dep)
            })
            .collect(),
        _ => BTreeMap::new(),
    }
}

fn healthcheck(v: &Value) -> Result<Healthcheck> {
    let mut h = Healthcheck::default();
    let dur = |k: &str| v.get(k).map(duration).transpose();
    h.test = match v.get("test") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Sequence(l)) => l.iter().map(scalar_text).collect(),
        Some(other) => vec!["CMD-SHELL".into(), scalar_text(other)],
    };
    h.interval = dur("interval")?;
    h.timeout = dur("timeout")?;
    h.start_period = dur("start_period")?;
    h.start_interval = dur("start_interval")?;
    h.retries =
        v.get("retries").map(|r| scalar_text(r).parse().map_err(|_| format!("healthcheck.retries `{}` is not a number", scalar_text(r)))).transpose()?;
    h.disable = v.get("disable").is_some_and(truthy);
    Ok(h)
}

fn file_mounts(v: &Value, default_dir: Option<&str>) -> Vec<FileMount> {
    sequence(v)
        .iter()
        .map(|item| {
            let (source, target, other) = match item {
                Value::Mapping(m) => {
                    let other = m.iter().filter(|(k, _)| !matches!(k.as_str(), Some("source" | "target"))).map(|(k, v)| (scalar_text(k), to_json(v))).collect();
                    (item.get("source").map(scalar_text).unwrap_or_default(), item.get("target").map(scalar_text), other)
                }
                other => (scalar_text(other), None, BTreeMap::new()),
            };
            let target = target.or_else(|| default_dir.map(|d| format!("{d}/{source}")));
            FileMount { source, target, other }
        })
        .collect()
}

/// `p` made absolute against `dir` (with `~` for the home directory), `.`
/// and `..` folded away as Compose does.
pub fn absolute(dir: &Path, p: &str) -> String {
    let path = if let Some(rest) = p.strip_prefix("~/") {
        dirs::home_dir().map(|h| h.join(rest)).unwrap_or_else(|| PathBuf::from(p))
    } else if p == "~" {
        dirs::home_dir().unwrap_or_else(|| PathBuf::from(p))
    } else {
        dir.join(p)
    };
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out.display().to_string()
}

fn json_map(v: &Value) -> BTreeMap<String, Json> {
    match to_json(v) {
        Json::Object(m) => m.into_iter().collect(),
        _ => BTreeMap::new(),
    }
}

pub fn to_json(v: &Value) -> Json {
    match v {
        Value::Null => Json::Null,
        Value::Bool(b) => Json::Bool(*b),
        Value::Number(n) => serde_json::to_value(n).unwrap_or(Json::Null),
        Value::String(s) => Json::String(s.clone()),
        Value::Sequence(l) => Json::Array(l.iter().map(to_json).collect()),
        Value::Mapping(m) => Json::Object(m.iter().map(|(k, v)| (scalar_text(k), to_json(v))).collect()),
        Value::Tagged(t) => to_json(&t.value),
    }
}
