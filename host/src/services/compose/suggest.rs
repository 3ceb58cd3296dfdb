//! `iso setup --template compose`: an `iso.toml` for the Compose project
//! found in the repository, with a port slot for each service that
//! publishes a port, named after what it runs (guessed from the image and
//! the container port), and the connection variables `.env.thread` gets.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::Path;

use super::model::{Model, Service};

/// What a service is, from its image or its port.
struct Kind {
    slot: &'static str,
    images: &'static [&'static str],
    port: u16,
    /// `(variable, template)`; `{svc}` is the service, `{slot}` the slot.
    export: (&'static str, &'static str),
}

const KINDS: &[Kind] = &[
    Kind {
        slot: "postgres",
        images: &["postgres", "postgis", "timescale", "pgvector"],
        port: 5432,
        export: (
            "DATABASE_URL",
            "postgresql://{{ services.{svc}.environment.POSTGRES_USER | default('postgres') }}:{{ services.{svc}.environment.POSTGRES_PASSWORD | default('') }}@{{ host }}:{{ ports.{slot} }}/{{ services.{svc}.environment.POSTGRES_DB | default(services.{svc}.environment.POSTGRES_USER | default('postgres')) }}",
        ),
    },
    Kind {
        slot: "mysql",
        images: &["mysql", "mariadb", "percona"],
        port: 3306,
        export: (
            "DATABASE_URL",
            "mysql://root:{{ services.{svc}.environment.MYSQL_ROOT_PASSWORD | default(services.{svc}.environment.MARIADB_ROOT_PASSWORD | default('')) }}@{{ host }}:{{ ports.{slot} }}/{{ services.{svc}.environment.MYSQL_DATABASE | default(services.{svc}.environment.MARIADB_DATABASE | default('')) }}",
        ),
    },
    Kind { slot: "redis", images: &["redis", "valkey", "keydb"], port: 6379, export: ("REDIS_URL", "redis://{{ host }}:{{ ports.{slot} }}") },
    Kind { slot: "mongo", images: &["mongo"], port: 27017, export: ("MONGO_URL", "mongodb://{{ host }}:{{ ports.{slot} }}") },
    Kind { slot: "rabbitmq", images: &["rabbitmq"], port: 5672, export: ("AMQP_URL", "amqp://guest:guest@{{ host }}:{{ ports.{slot} }}") },
    Kind { slot: "elasticsearch", images: &["elasticsearch", "opensearch"], port: 9200, export: ("ELASTICSEARCH_URL", "http://{{ host }}:{{ ports.{slot} }}") },
    Kind { slot: "memcached", images: &["memcached"], port: 11211, export: ("MEMCACHED_URL", "{{ host }}:{{ ports.{slot} }}") },
    Kind { slot: "minio", images: &["minio"], port: 9000, export: ("S3_ENDPOINT", "http://{{ host }}:{{ ports.{slot} }}") },
];

/// The last path component of an image without its tag (`postgres` of
/// `docker.io/library/postgres:16-alpine`).
fn image_base(image: &str) -> &str {
    let last = image.rsplit('/').next().unwrap_or(image);
    last.split([':', '@']).next().unwrap_or(last)
}

fn kind_of(s: &Service) -> Option<&'static Kind> {
    let base = s.image.as_deref().map(image_base).unwrap_or_default();
    KINDS
        .iter()
        .find(|k| k.images.iter().any(|i| base == *i || base.starts_with(&format!("{i}-"))))
        .or_else(|| KINDS.iter().find(|k| s.ports.iter().any(|p| p.target == k.port)))
}

/// A slot name from a service name (`[a-z0-9_]`).
fn identifier(name: &str) -> String {
    let s: String = name.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' }).collect();
    if s.starts_with(|c: char| c.is_ascii_digit()) {
        format!("s_{s}")
    } else {
        s
    }
}

/// The `iso.toml` text for `model`, found as `files` (relative to the
/// repository root).
pub fn suggest(model: &Model, files: &[&Path]) -> String {
    let mut slots: BTreeMap<String, u16> = BTreeMap::new();
    let mut service_slots: BTreeMap<String, String> = BTreeMap::new();
    let mut exports: BTreeMap<String, String> = BTreeMap::new();
    for (name, s) in model.services.iter().filter(|(_, s)| s.ports.iter().any(|p| p.protocol == "tcp")) {
        let kind = kind_of(s);
        let mut slot = kind.map(|k| k.slot.to_string()).unwrap_or_else(|| identifier(name));
        if slots.contains_key(&slot) {
            slot = format!("{slot}_{}", identifier(name));
        }
        let offset = slots.len() as u16;
        slots.insert(slot.clone(), offset);
        service_slots.insert(name.clone(), slot.clone());
        let (var, template) = match kind {
            Some(k) => (k.export.0.to_string(), k.export.1.to_string()),
            None => (format!("{}_URL", identifier(name).to_uppercase()), "http://{{ host }}:{{ ports.{slot} }}".to_string()),
        };
        let var = if exports.contains_key(&var) { format!("{}_{var}", identifier(name).to_uppercase()) } else { var };
        exports.insert(var, template.replace("{svc}", name).replace("{slot}", &slot));
    }
    let names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    let mut out = String::new();
    let _ = writeln!(out, "# iso stack from this repository's Compose project ({}), never edited by iso.", names.join(", "));
    out.push_str(
        "# Each thread runs it on its own network, with its own volumes and the published\n\
         # ports moved into the thread's port block. Reference: docs/services.md.\n\n",
    );
    if !slots.is_empty() {
        out.push_str("[ports.slots]\n");
        for (slot, offset) in &slots {
            let _ = writeln!(out, "{slot} = {offset}");
        }
        out.push('\n');
    }
    out.push_str("[compose]\n");
    out.push_str("# Files: Compose's own discovery (compose.yaml, compose.yml, docker-compose.yml, ... and the\n");
    out.push_str("# override file); set `file = [\"a.yml\", \"b.yml\"]` to choose. `profiles = [\"...\"]` enables more.\n");
    if !service_slots.is_empty() {
        out.push_str("# Compose service -> port slot; other published ports get free offsets.\n");
        let pairs: Vec<String> = service_slots.iter().map(|(s, slot)| format!("{} = \"{slot}\"", toml_key(s))).collect();
        let _ = writeln!(out, "slots = {{ {} }}", pairs.join(", "));
    }
    if !exports.is_empty() {
        out.push_str("\n[compose.export]\n");
        for (k, v) in &exports {
            let _ = writeln!(out, "{k} = {}", toml_string(v));
        }
    }
    out
}

fn toml_key(k: &str) -> String {
    if k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        k.to_string()
    } else {
        toml_string(k)
    }
}

fn toml_string(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn slots_and_urls_from_images_and_ports() {
        let json = r#"{"services":{
            "db":{"image":"docker.io/library/postgres:16-alpine","ports":[{"target":5432,"published":"5432"}]},
            "cache":{"image":"bitnami/redis","ports":[{"target":6379}]},
            "store":{"image":"acme/kv","ports":[{"target":27017}]},
            "web":{"image":"acme/web","ports":[{"target":8000},{"target":53,"protocol":"udp"}]},
            "worker":{"image":"acme/web"}}}"#;
        let m: Model = serde_json::from_str(json).unwrap();
        let text = suggest(&m, &[Path::new("compose.yml")]);
        let mut c = Config::default();
        c.apply_file(Path::new("iso.toml"), &text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let compose = c.compose.as_ref().unwrap();
        assert_eq!(compose.slots["db"], "postgres");
        assert_eq!(compose.slots["cache"], "redis");
        assert_eq!(compose.slots["store"], "mongo", "by its port");
        assert_eq!(compose.slots["web"], "web");
        assert!(!compose.slots.contains_key("worker"), "publishes nothing");
        assert_eq!(c.ports.slots.len(), 4);
        assert!(compose.export["DATABASE_URL"].contains("{{ ports.postgres }}"), "{text}");
        assert!(compose.export["DATABASE_URL"].contains("services.db.environment.POSTGRES_PASSWORD"), "{text}");
        assert_eq!(compose.export["WEB_URL"], "http://{{ host }}:{{ ports.web }}");
        assert!(compose.file.is_empty(), "discovery");
    }
}
