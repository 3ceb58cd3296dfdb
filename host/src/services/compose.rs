//! docker-compose files: reading a team's file as an iso stack (the file is
//! never edited), and writing what iso started as
//! `docker-compose.thread.yml`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};
use serde_yaml_ng::Value as Yaml;

use super::plan::{ImageSource, MountSource, Plan};
use super::Error;
use crate::config::services::{split_words, CommandSpec, ComposeSpec, HealthCheck, HealthSpec, PortSpec, ServiceSpec, Stack};

/// The file `iso compose` writes into a worktree.
pub const THREAD_FILE: &str = "docker-compose.thread.yml";

/// Read the compose file named by `[compose]` (relative to `repo_root`)
/// into a stack. Published host ports are replaced by ports of the
/// thread's block: a service's first port goes to the slot named in
/// `[compose] slots` or to the slot of the same name, any other port to the
/// next offset no slot uses. `container_name` and `networks` are dropped
/// (each thread gets its own network); named volumes become per-thread.
pub fn import(repo_root: &Path, spec: &ComposeSpec, slots: &BTreeMap<String, u16>, block_size: u16) -> Result<Stack, Error> {
    let path = repo_root.join(&spec.file);
    let fail = |message: String| Error::Compose { path: path.clone(), message };
    let text = std::fs::read_to_string(&path).map_err(|e| fail(format!("cannot read it: {e}")))?;
    let doc: Yaml = serde_yaml_ng::from_str(&text).map_err(|e| fail(e.to_string()))?;
    let services = doc.get("services").and_then(Yaml::as_mapping).ok_or_else(|| fail("no `services:` section".into()))?;
    // Paths in the file are relative to its directory; iso's are relative
    // to the worktree root.
    let dir_rel: PathBuf = spec.file.parent().map(Path::to_path_buf).unwrap_or_default();

    let mut names: Vec<String> = services.keys().filter_map(|k| k.as_str().map(str::to_string)).collect();
    names.sort();
    if !spec.services.is_empty() {
        for wanted in &spec.services {
            if !names.contains(wanted) {
                return Err(fail(format!("[compose] services lists `{wanted}`, which the file does not define")));
            }
        }
        names.retain(|n| spec.services.contains(n));
    }
    for (svc, slot) in &spec.slots {
        if !slots.contains_key(slot) {
            return Err(fail(format!("[compose] slots maps `{svc}` to slot `{slot}`, which is not in [ports.slots]")));
        }
    }

    let mut used_offsets: BTreeSet<u16> = slots.values().copied().collect();
    let next_offset = |used: &mut BTreeSet<u16>| -> Option<u16> {
        let off = (0..block_size).find(|o| !used.contains(o))?;
        used.insert(off);
        Some(off)
    };
    let mut stack = Stack::new();
    for name in &names {
        let s = &services[name.as_str()];
        let ctx = |m: String| fail(format!("services.{name}: {m}"));
        let mut out = ServiceSpec { image: s.get("image").and_then(Yaml::as_str).map(str::to_string), ..Default::default() };
        match s.get("build") {
            Some(Yaml::String(c)) => out.build = Some(dir_rel.join(c)),
            Some(b @ Yaml::Mapping(_)) => {
                out.build = Some(dir_rel.join(b.get("context").and_then(Yaml::as_str).unwrap_or(".")));
                out.dockerfile = b.get("dockerfile").and_then(Yaml::as_str).map(str::to_string);
            }
            _ => {}
        }
        if out.build.is_some() {
            out.image = None; // iso builds and tags it per thread
        }
        out.command = s.get("command").map(command).transpose().map_err(ctx)?;
        out.entrypoint = s.get("entrypoint").map(command).transpose().map_err(ctx)?;
        out.working_dir = s.get("working_dir").and_then(Yaml::as_str).map(str::to_string);
        out.user = s.get("user").and_then(Yaml::as_str).map(str::to_string);
        out.environment = environment(s.get("environment")).map_err(ctx)?;
        out.depends_on = match s.get("depends_on") {
            Some(Yaml::Sequence(l)) => l.iter().filter_map(|d| d.as_str().map(str::to_string)).collect(),
            Some(Yaml::Mapping(m)) => m.keys().filter_map(|d| d.as_str().map(str::to_string)).collect(),
            _ => Vec::new(),
        };
        out.depends_on.retain(|d| names.contains(d));
        out.depends_on.sort();
        for v in s.get("volumes").and_then(Yaml::as_sequence).into_iter().flatten() {
            out.volumes.push(volume(v, &dir_rel).map_err(ctx)?);
        }
        // Published ports.
        let mut first = true;
        for p in s.get("ports").and_then(Yaml::as_sequence).into_iter().flatten() {
            let Some(container) = container_port(p).map_err(ctx)? else { continue };
            let slot = if first { spec.slots.get(name).cloned().or_else(|| slots.contains_key(name).then(|| name.clone())) } else { None };
            first = false;
            match slot {
                Some(slot) => out.ports.push(PortSpec { container, slot: Some(slot), offset: None }),
                None => {
                    let offset =
                        next_offset(&mut used_offsets).ok_or_else(|| ctx(format!("no free port left in a block of {block_size}; raise ports.block_size")))?;
                    out.ports.push(PortSpec { container, slot: None, offset: Some(offset) });
                }
            }
        }
        out.healthcheck = healthcheck(s.get("healthcheck")).map_err(ctx)?;
        if out.image.is_none() && out.build.is_none() {
            return Err(ctx("has neither `image` nor `build`".into()));
        }
        stack.insert(name.clone(), out);
    }
    Ok(stack)
}

fn command(v: &Yaml) -> Result<CommandSpec, String> {
    match v {
        Yaml::String(s) => Ok(CommandSpec::Args(split_words(&interpolate(s)))),
        Yaml::Sequence(l) => Ok(CommandSpec::Args(l.iter().map(|w| scalar(w).map(|w| interpolate(&w))).collect::<Result<_, _>>()?)),
        _ => Err("command must be a string or a list".into()),
    }
}

fn scalar(v: &Yaml) -> Result<String, String> {
    match v {
        Yaml::String(s) => Ok(s.clone()),
        Yaml::Number(n) => Ok(n.to_string()),
        Yaml::Bool(b) => Ok(b.to_string()),
        Yaml::Null => Ok(String::new()),
        other => Err(format!("expected a plain value, found {other:?}")),
    }
}

/// `${VAR}`, `${VAR:-default}`, `${VAR-default}` and `$VAR` from the
/// environment, as compose does; `$$` is a literal `$`.
pub fn interpolate(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(r) = after.strip_prefix('$') {
            out.push('$');
            rest = r;
        } else if let Some(r) = after.strip_prefix('{') {
            let Some(end) = r.find('}') else {
                out.push_str(&rest[i..]);
                return out;
            };
            let expr = &r[..end];
            let (var, default) = if let Some((v, d)) = expr.split_once(":-") {
                (v, Some((d, true)))
            } else if let Some((v, d)) = expr.split_once('-') {
                (v, Some((d, false)))
            } else {
                (expr, None)
            };
            let val = std::env::var(var).ok();
            out.push_str(&match (val, default) {
                (Some(v), Some((d, true))) if v.is_empty() => d.to_string(),
                (Some(v), _) => v,
                (None, Some((d, _))) => d.to_string(),
                (None, None) => String::new(),
            });
            rest = &r[end + 1..];
        } else {
            let len = after.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').count();
            if len == 0 {
                out.push('$');
            } else {
                out.push_str(&std::env::var(&after[..len]).unwrap_or_default());
            }
            rest = &after[len..];
        }
    }
    out.push_str(rest);
    out
}

/// A literal value as an iso template.
fn literal(s: &str) -> String {
    if s.contains("{{") || s.contains("{%") || s.contains("{#") {
        format!("{{% raw %}}{s}{{% endraw %}}")
    } else {
        s.to_string()
    }
}

fn environment(v: Option<&Yaml>) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    match v {
        None | Some(Yaml::Null) => {}
        Some(Yaml::Sequence(l)) => {
            for item in l {
                let s = scalar(item)?;
                match s.split_once('=') {
                    Some((k, v)) => out.insert(k.to_string(), literal(&interpolate(v))),
                    // `- NAME` passes the variable through from the shell.
                    None => out.insert(s.clone(), literal(&std::env::var(&s).unwrap_or_default())),
                };
            }
        }
        Some(Yaml::Mapping(m)) => {
            for (k, v) in m {
                let k = scalar(k)?;
                let v = if v.is_null() { std::env::var(&k).unwrap_or_default() } else { interpolate(&scalar(v)?) };
                out.insert(k, literal(&v));
            }
        }
        Some(_) => return Err("environment must be a list or a mapping".into()),
    }
    Ok(out)
}

fn volume(v: &Yaml, dir_rel: &Path) -> Result<String, String> {
    let rebase = |src: &str| -> String {
        if dir_rel.as_os_str().is_empty() {
            src.to_string()
        } else if src.starts_with("./") || src.starts_with("../") || src == "." {
            format!("./{}", dir_rel.join(src.trim_start_matches("./")).display())
        } else {
            src.to_string()
        }
    };
    match v {
        Yaml::String(s) => {
            let s = interpolate(s);
            let mut parts: Vec<String> = s.split(':').map(str::to_string).collect();
            match parts.len() {
                // An anonymous volume: give it a name of its own.
                1 => Ok(format!("anon{}:{}", parts[0].replace('/', "-"), parts[0])),
                2 | 3 => {
                    parts[0] = rebase(&parts[0]);
                    if parts.len() == 3 && parts[2] != "ro" && parts[2] != "rw" {
                        parts.truncate(2); // z, Z, cached, ...: not modes iso knows
                    }
                    Ok(parts.join(":"))
                }
                _ => Err(format!("volume `{s}` is not SOURCE:TARGET[:MODE]")),
            }
        }
        Yaml::Mapping(_) => {
            let source = v.get("source").and_then(Yaml::as_str).ok_or("a volume needs `source`")?;
            let target = v.get("target").and_then(Yaml::as_str).ok_or("a volume needs `target`")?;
            let ro = v.get("read_only").and_then(Yaml::as_bool).unwrap_or(false);
            Ok(format!("{}:{target}{}", rebase(source), if ro { ":ro" } else { "" }))
        }
        _ => Err("volumes must be strings or mappings".into()),
    }
}

/// The container port of a `ports:` entry (`"8080"`, `"5432:5432"`,
/// `"127.0.0.1:5432:5432"`, `"3000-3001:3000-3001"` takes the first,
/// `{target: 80, published: 8080}`); `None` for UDP.
fn container_port(v: &Yaml) -> Result<Option<u16>, String> {
    let (text, proto) = match v {
        Yaml::Mapping(_) => {
            let t = v.get("target").map(scalar).transpose()?.ok_or("a port needs `target`")?;
            let p = v.get("protocol").and_then(Yaml::as_str).unwrap_or("tcp").to_string();
            (t, p)
        }
        other => {
            let s = interpolate(&scalar(other)?);
            match s.split_once('/') {
                Some((a, p)) => (a.to_string(), p.to_string()),
                None => (s, "tcp".to_string()),
            }
        }
    };
    if proto != "tcp" {
        return Ok(None);
    }
    let last = text.rsplit(':').next().unwrap_or(&text);
    let first = last.split('-').next().unwrap_or(last);
    first.trim().parse::<u16>().map(Some).map_err(|_| format!("port `{text}` is not understood"))
}

fn healthcheck(v: Option<&Yaml>) -> Result<Option<HealthSpec>, String> {
    let Some(h) = v else { return Ok(None) };
    if h.get("disable").and_then(Yaml::as_bool) == Some(true) {
        return Ok(None);
    }
    let cmd: Vec<String> = match h.get("test") {
        None => return Ok(None),
        Some(Yaml::String(s)) => vec!["sh".into(), "-c".into(), s.clone()],
        Some(Yaml::Sequence(l)) => {
            let words: Vec<String> = l.iter().map(scalar).collect::<Result<_, _>>()?;
            match words.first().map(String::as_str) {
                Some("NONE") => return Ok(None),
                Some("CMD") => words[1..].to_vec(),
                Some("CMD-SHELL") => vec!["sh".into(), "-c".into(), words[1..].join(" ")],
                _ => words,
            }
        }
        Some(_) => return Err("healthcheck.test must be a string or a list".into()),
    };
    let interval_ms = h.get("interval").and_then(Yaml::as_str).and_then(parse_duration_ms).map(|ms| ms.min(1000));
    Ok(Some(HealthSpec { command: Some(CommandSpec::Args(cmd)), interval_ms, ..Default::default() }))
}

/// Compose durations: `1m30s`, `500ms`, `10s`.
fn parse_duration_ms(s: &str) -> Option<u64> {
    let mut total = 0u64;
    let mut num = String::new();
    let mut chars = s.trim().chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            continue;
        }
        let n: f64 = num.parse().ok()?;
        num.clear();
        let unit = match c {
            'h' => 3_600_000.0,
            'm' if chars.peek() == Some(&'s') => {
                chars.next();
                1.0
            }
            'm' => 60_000.0,
            's' => 1000.0,
            'u' | 'µ' => {
                chars.next();
                0.001
            }
            _ => return None,
        };
        total += (n * unit) as u64;
    }
    if !num.is_empty() {
        total += (num.parse::<f64>().ok()? * 1000.0) as u64;
    }
    Some(total)
}

/// `docker-compose.thread.yml`: the same containers, names, ports, volumes,
/// network and labels that iso started for the thread. Volumes and the
/// network are marked external (iso owns them), so
/// `docker-compose -p <project> -f docker-compose.thread.yml logs|ps|exec`
/// act on iso's containers.
pub fn export(plan: &Plan, header: &str) -> String {
    let mut services = Map::new();
    for s in &plan.services {
        let mut svc = Map::new();
        svc.insert("container_name".into(), json!(s.container));
        match &s.image {
            ImageSource::Image(i) => {
                svc.insert("image".into(), json!(i));
            }
            ImageSource::Build { context, dockerfile, tag } => {
                svc.insert("image".into(), json!(tag));
                svc.insert("build".into(), json!({ "context": context.display().to_string(), "dockerfile": dockerfile }));
            }
        }
        if let Some(c) = &s.entrypoint {
            svc.insert("entrypoint".into(), json!(c));
        }
        if let Some(c) = &s.command {
            svc.insert("command".into(), json!(c));
        }
        if let Some(w) = &s.working_dir {
            svc.insert("working_dir".into(), json!(w));
        }
        if let Some(u) = &s.user {
            svc.insert("user".into(), json!(u));
        }
        if !s.env.is_empty() {
            svc.insert("environment".into(), json!(s.env));
        }
        if !s.ports.is_empty() {
            let ports: Vec<String> = s.ports.iter().map(|(c, h)| format!("{}:{h}:{c}", plan.publish_host)).collect();
            svc.insert("ports".into(), json!(ports));
        }
        if !s.mounts.is_empty() {
            let vols: Vec<String> = s
                .mounts
                .iter()
                .map(|m| {
                    let src = match &m.source {
                        MountSource::Volume { short, .. } => short.clone(),
                        MountSource::Bind(p) => p.display().to_string(),
                    };
                    format!("{src}:{}{}", m.target, if m.read_only { ":ro" } else { "" })
                })
                .collect();
            svc.insert("volumes".into(), json!(vols));
        }
        if let Some(HealthCheck::Command(cmd)) = &s.health {
            let mut test = vec!["CMD".to_string()];
            test.extend(cmd.iter().cloned());
            let ms = s.health_interval.as_millis().max(1000);
            svc.insert("healthcheck".into(), json!({ "test": test, "interval": format!("{ms}ms"), "retries": 300 }));
        }
        if !s.depends_on.is_empty() {
            let deps: Map<String, Value> = s
                .depends_on
                .iter()
                .map(|d| {
                    let has_check = plan.services.iter().any(|x| &x.name == d && matches!(x.health, Some(HealthCheck::Command(_))));
                    (d.clone(), json!({ "condition": if has_check { "service_healthy" } else { "service_started" } }))
                })
                .collect();
            svc.insert("depends_on".into(), Value::Object(deps));
        }
        let labels: BTreeMap<&String, &String> = s.labels.iter().filter(|(k, _)| !k.starts_with("com.docker.compose.")).collect();
        svc.insert("labels".into(), json!(labels));
        svc.insert("init".into(), json!(true));
        svc.insert("stop_grace_period".into(), json!(format!("{}s", plan.stop_timeout.as_secs())));
        services.insert(s.name.clone(), Value::Object(svc));
    }
    let volumes: Map<String, Value> = plan.volumes.iter().map(|(short, full)| (short.clone(), json!({ "name": full, "external": true }))).collect();
    let mut doc = Map::new();
    doc.insert("services".into(), Value::Object(services));
    if !volumes.is_empty() {
        doc.insert("volumes".into(), Value::Object(volumes));
    }
    doc.insert("networks".into(), json!({ "default": { "name": plan.network, "external": true } }));
    let yaml = serde_yaml_ng::to_string(&Value::Object(doc)).unwrap_or_default();
    let mut out = String::new();
    for line in header.lines() {
        out.push_str("# ");
        out.push_str(line);
        out.push('\n');
    }
    out.push_str(&yaml);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::services::DockerSettings;
    use crate::services::plan::{plan, ThreadStack};

    const FILE: &str = r#"
version: "3.8"
services:
  db:
    image: postgres:16
    container_name: my-db
    environment:
      POSTGRES_PASSWORD: secret
      POSTGRES_DB: ${ISO_TEST_UNSET_VAR:-app}
    ports: ["5432:5432"]
    volumes:
      - dbdata:/var/lib/postgresql/data
      - ./init:/docker-entrypoint-initdb.d:ro
    healthcheck:
      test: ["CMD-SHELL", "pg_isready -U postgres"]
      interval: 2s
    networks: [back]
  cache:
    image: redis:7
    ports:
      - "127.0.0.1:6379:6379"
  web:
    build: ./web
    command: npm start
    ports: ["3000:3000", "9229:9229"]
    depends_on:
      db: { condition: service_healthy }
      cache: { condition: service_started }
    environment:
      - NODE_ENV=development
networks:
  back: {}
volumes:
  dbdata: {}
"#;

    #[test]
    fn imports_services_with_thread_ports_and_volumes() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("docker-compose.yml"), FILE).unwrap();
        let slots: BTreeMap<String, u16> = [("postgres".to_string(), 0), ("redis".to_string(), 1), ("api".to_string(), 2)].into();
        let spec = ComposeSpec {
            file: "docker-compose.yml".into(),
            slots: [("db".to_string(), "postgres".to_string()), ("web".to_string(), "api".to_string()), ("cache".to_string(), "redis".to_string())].into(),
            ..Default::default()
        };
        let stack = import(dir.path(), &spec, &slots, 100).unwrap();
        let db = &stack["db"];
        assert_eq!(db.ports, [PortSpec { container: 5432, slot: Some("postgres".into()), offset: None }]);
        assert_eq!(db.environment["POSTGRES_DB"], "app");
        assert_eq!(db.volumes, ["dbdata:/var/lib/postgresql/data", "./init:/docker-entrypoint-initdb.d:ro"]);
        assert_eq!(db.healthcheck.as_ref().unwrap().check().unwrap(), HealthCheck::Command(vec!["sh".into(), "-c".into(), "pg_isready -U postgres".into()]));
        let web = &stack["web"];
        assert_eq!(web.build.as_deref(), Some(Path::new("./web")));
        assert_eq!(web.ports[1], PortSpec { container: 9229, slot: None, offset: Some(3) }, "next offset after the slots");
        assert_eq!(web.depends_on, ["cache", "db"]);
        assert_eq!(web.command.as_ref().unwrap().args(), ["npm", "start"]);

        // Through the planner: host ports in the thread's block, names per thread.
        let ports: BTreeMap<String, u16> = [("postgres".to_string(), 20100), ("redis".to_string(), 20101), ("api".to_string(), 20102)].into();
        let settings = DockerSettings::default();
        let none = BTreeMap::new();
        let t = ThreadStack {
            repo_root: dir.path(),
            repo_name: "shop",
            thread: 1,
            ports: &ports,
            block_start: 20100,
            workdir: Path::new("/w"),
            values: json!({}),
            stack: &stack,
            export: &none,
            settings: &settings,
        };
        let p = plan(&t).unwrap();
        let web = p.services.iter().find(|s| s.name == "web").unwrap();
        assert_eq!(web.ports, [(3000, 20102), (9229, 20103)]);
        assert_eq!(p.services.iter().find(|s| s.name == "db").unwrap().container, "iso-shop-t1-db");

        let text = export(&p, "thread 1");
        assert!(text.starts_with("# thread 1\n"), "{text}");
        let back: Yaml = serde_yaml_ng::from_str(&text).unwrap();
        assert_eq!(back["services"]["db"]["container_name"].as_str(), Some("iso-shop-t1-db"));
        assert_eq!(back["services"]["db"]["ports"][0].as_str(), Some("127.0.0.1:20100:5432"));
        assert_eq!(back["volumes"]["dbdata"]["name"].as_str(), Some("iso-shop-t1-dbdata"));
        assert_eq!(back["networks"]["default"]["name"].as_str(), Some("iso-shop-t1"));
        assert_eq!(back["services"]["web"]["depends_on"]["db"]["condition"].as_str(), Some("service_healthy"));
        assert_eq!(back["services"]["db"]["labels"]["iso.thread"].as_str(), Some("1"));
    }

    #[test]
    fn durations_and_interpolation() {
        assert_eq!(parse_duration_ms("1m30s"), Some(90_000));
        assert_eq!(parse_duration_ms("500ms"), Some(500));
        assert_eq!(interpolate("a$$b ${ISO_TEST_UNSET_VAR-x} ${ISO_TEST_UNSET_VAR}"), "a$b x ");
        assert_eq!(literal("{{ x }}"), "{% raw %}{{ x }}{% endraw %}");
    }
}
