//! What of a Compose project iso cannot honour, named key by key: an error
//! where running without it would be wrong (a service sharing another's
//! network namespace, an external secret), a warning where the stack still
//! runs (logging drivers, resource limits, ...). Nothing is dropped
//! silently. Keys iso rewrites on purpose (published host ports,
//! `container_name`, `networks`) are documented in docs/services.md
//! instead.

use super::model::{Model, Service};

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Findings {
    pub errors: Vec<String>,
    pub warnings: Vec<String>,
}

/// Service keys iso replaces by design (docs/services.md, "Using your
/// Compose project"), so no warning: names, networks, the init process.
const BY_DESIGN: [&str; 3] = ["container_name", "networks", "init"];

/// Keys that change what a service is so much that running it without
/// them would mislead.
const REFUSED: [(&str, &str); 4] = [
    ("network_mode", "iso puts every service on the thread's own network; run this service outside iso or drop the key"),
    ("volumes_from", "iso does not mount another container's volumes; declare the volumes on this service"),
    ("ipc", "iso does not share namespaces between containers"),
    ("pid", "iso does not share namespaces between containers"),
];

pub fn review(model: &Model, services: &[String]) -> Findings {
    let mut f = Findings::default();
    for (name, s) in model.services.iter().filter(|(n, _)| services.is_empty() || services.contains(n)) {
        service(name, s, &mut f);
    }
    for (name, v) in &model.volumes {
        if v.external {
            f.warnings.push(format!("volumes.{name}.external: iso gives each thread its own volume `{name}` (empty at first), not the external one"));
        }
        if let Some(d) = &v.driver {
            f.warnings.push(format!("volumes.{name}.driver `{d}` is not honoured: iso creates a local volume"));
        }
    }
    for (kind, top) in [("secrets", &model.secrets), ("configs", &model.configs)] {
        for (name, s) in top.iter() {
            if s.file.is_none() {
                f.errors.push(format!("{kind}.{name}: iso supports {kind} from a `file` only (not external or environment ones)"));
            }
        }
    }
    f
}

fn service(name: &str, s: &Service, f: &mut Findings) {
    let at = |key: &str| format!("services.{name}.{key}");
    for (key, value) in &s.other {
        if key.starts_with("x-") || BY_DESIGN.contains(&key.as_str()) {
            if key == "networks" {
                if let Some(nets) = value.as_object() {
                    if nets.values().any(|v| v.as_object().is_some_and(|o| !o.is_empty())) {
                        f.warnings.push(format!(
                            "{}: aliases and addresses are not kept; iso puts every service on the thread's one network, reachable by its service name",
                            at(key)
                        ));
                    }
                }
            }
            continue;
        }
        if let Some((_, why)) = REFUSED.iter().find(|(k, _)| k == key) {
            if !(key == "network_mode" && matches!(value.as_str(), Some("bridge" | "default"))) {
                f.errors.push(format!("{} is not supported: {why}", at(key)));
            }
            continue;
        }
        f.warnings.push(format!("{} is not honoured by iso (ignored)", at(key)));
    }
    if let Some(p) = &s.pull_policy {
        if !matches!(p.as_str(), "missing" | "if_not_present" | "always" | "never" | "build") {
            f.warnings.push(format!("{} `{p}`: iso pulls only when the image is missing", at("pull_policy")));
        }
    }
    for p in s.ports.iter().filter(|p| p.protocol != "tcp") {
        f.warnings.push(format!("{}: {}/{} is not published (iso publishes TCP ports only)", at("ports"), p.target, p.protocol));
    }
    if let Some(h) = &s.healthcheck {
        if h.start_interval.is_some() {
            f.warnings.push(format!(
                "{}: iso checks every 100 ms itself while a service starts; start_interval is not passed to Docker",
                at("healthcheck.start_interval")
            ));
        }
    }
    for m in &s.volumes {
        let key = format!("volumes[{}]", m.target);
        if !matches!(m.kind.as_str(), "bind" | "volume" | "tmpfs") {
            f.errors.push(format!("{}: volume type `{}` is not supported", at(&key), m.kind));
        }
        if m.bind.as_ref().is_some_and(|b| b.propagation.is_some()) {
            f.warnings.push(format!("{}.bind.propagation is not honoured", at(&key)));
        }
        if m.volume.as_ref().is_some_and(|v| v.subpath.is_some()) {
            f.warnings.push(format!("{}.volume.subpath is not honoured (Docker 20.10 cannot mount a subpath)", at(&key)));
        }
        for k in m.other.keys() {
            f.warnings.push(format!("{}.{k} is not honoured", at(&key)));
        }
    }
    if let Some(b) = &s.build {
        for k in b.other.keys() {
            f.warnings.push(format!("{} is not honoured (iso builds with the context, dockerfile, args and target)", at(&format!("build.{k}"))));
        }
    }
    for (kind, list) in [("secrets", &s.secrets), ("configs", &s.configs)] {
        for m in list {
            for k in m.other.keys() {
                f.warnings.push(format!("{}: {k} is not honoured (the file is mounted read-only as it is)", at(&format!("{kind}[{}]", m.source))));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_each_key_it_cannot_honour() {
        let json = r#"{"services":{
            "web":{"image":"x","networks":{"default":null},"container_name":"w","deploy":{"replicas":2},"logging":{"driver":"syslog"},
                   "ports":[{"target":53,"protocol":"udp"}],"x-note":1},
            "side":{"image":"y","network_mode":"service:web"}},
            "secrets":{"token":{"environment":"TOKEN"}}}"#;
        let m: Model = serde_json::from_str(json).unwrap();
        let f = review(&m, &[]);
        assert_eq!(f.errors.len(), 2, "{f:?}");
        assert!(f.errors[0].contains("services.side.network_mode"), "{f:?}");
        assert!(f.errors[1].contains("secrets.token"), "{f:?}");
        let w = f.warnings.join("\n");
        assert!(w.contains("services.web.deploy") && w.contains("services.web.logging") && w.contains("53/udp"), "{w}");
        assert!(!w.contains("container_name") && !w.contains("x-note") && !w.contains("networks"), "{w}");
        assert!(review(&m, &["web".to_string()]).errors.len() == 1, "only the services asked for, and the top level");
    }
}
