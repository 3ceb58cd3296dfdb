//! How Compose lays one file over another (override files, `extends`):
//! mappings merge key by key, sequences append, scalars are replaced, with
//! the exceptions Compose v2 makes (compose-go's `override` rules):
//! `command`, `entrypoint` and `healthcheck.test` are replaced whole;
//! `environment`, `labels`, `build.args`, `extra_hosts`, `sysctls`,
//! `env_file`, `tmpfs` and `dns*` accept either form (list or mapping) on
//! each side; `depends_on`, `networks` and `build` may mix short and long
//! forms. YAML tags `!reset` (drop the key) and `!override` (replace
//! without merging) work as in Compose.

use serde_yaml_ng::value::{Tag, TaggedValue};
use serde_yaml_ng::{Mapping, Value};

/// Merge `over` onto `base` (both a whole file, or one service).
pub fn merge(base: Value, over: Value, path: &[&str]) -> Value {
    if let Value::Tagged(t) = &over {
        if t.tag == Tag::new("override") {
            return untag(over);
        }
    }
    let over = untag(over);
    if over.is_null() {
        return base;
    }
    match special(path) {
        Some(Rule::Replace) => return over,
        Some(Rule::Sequence) => {
            let mut seq = to_sequence(base);
            seq.extend(to_sequence(over));
            return Value::Sequence(seq);
        }
        Some(Rule::Mapping(default)) => {
            return merge_mappings(to_mapping(base, default), to_mapping(over, default), path);
        }
        Some(Rule::Build) => {
            let as_map = |v: Value| match v {
                Value::String(s) => {
                    let mut m = Mapping::new();
                    m.insert("context".into(), Value::String(s));
                    Value::Mapping(m)
                }
                other => other,
            };
            return merge_plain(as_map(base), as_map(over), path);
        }
        None => {}
    }
    merge_plain(base, over, path)
}

fn merge_plain(base: Value, over: Value, path: &[&str]) -> Value {
    match (base, over) {
        (Value::Mapping(b), Value::Mapping(o)) => merge_mappings(b, o, path),
        (Value::Sequence(mut b), Value::Sequence(o)) => {
            b.extend(o);
            Value::Sequence(b)
        }
        (_, over) => over,
    }
}

fn merge_mappings(mut base: Mapping, over: Mapping, path: &[&str]) -> Value {
    for (k, v) in over {
        let key = k.as_str().unwrap_or("").to_string();
        if let Value::Tagged(t) = &v {
            if t.tag == Tag::new("reset") {
                base.remove(&k);
                continue;
            }
        }
        match base.remove(&k) {
            None => {
                base.insert(k, untag(v));
            }
            Some(existing) => {
                let mut next: Vec<&str> = path.to_vec();
                next.push(&key);
                base.insert(k, merge(existing, v, &next));
            }
        }
    }
    Value::Mapping(base)
}

/// Remove a `!override` or `!reset` tag left where nothing was merged.
pub fn untag(v: Value) -> Value {
    match v {
        Value::Tagged(t) => {
            let TaggedValue { tag, value } = *t;
            if tag == Tag::new("reset") {
                Value::Null
            } else {
                untag(value)
            }
        }
        other => other,
    }
}

enum Rule {
    Replace,
    Sequence,
    /// Short (list) and long (mapping) forms, the list's entries getting
    /// this value.
    Mapping(fn() -> Value),
    Build,
}

fn special(path: &[&str]) -> Option<Rule> {
    let null = || Value::Null;
    let started = || {
        let mut m = Mapping::new();
        m.insert("condition".into(), "service_started".into());
        m.insert("required".into(), true.into());
        Value::Mapping(m)
    };
    match path {
        ["services", _, "command" | "entrypoint"] | ["services", _, "healthcheck", "test"] => Some(Rule::Replace),
        ["services", _, "environment" | "labels" | "extra_hosts" | "sysctls" | "env_file" | "tmpfs" | "dns" | "dns_opt" | "dns_search" | "annotations"]
        | ["services", _, "build", "args" | "labels" | "extra_hosts" | "additional_contexts"]
        | ["services", _, "deploy", "labels"]
        | ["volumes" | "networks", _, "labels"] => Some(Rule::Sequence),
        ["services", _, "depends_on"] => Some(Rule::Mapping(started)),
        ["services", _, "networks"] => Some(Rule::Mapping(null)),
        ["services", _, "build"] => Some(Rule::Build),
        _ => None,
    }
}

/// A list, or a mapping as `KEY=VALUE` entries sorted (Compose's way).
fn to_sequence(v: Value) -> Vec<Value> {
    match v {
        Value::Sequence(s) => s,
        Value::Mapping(m) => {
            let mut out: Vec<String> = m
                .into_iter()
                .map(|(k, v)| {
                    let k = scalar_text(&k);
                    match v {
                        Value::Null => k,
                        v => format!("{k}={}", scalar_text(&v)),
                    }
                })
                .collect();
            out.sort();
            out.into_iter().map(Value::String).collect()
        }
        Value::Null => Vec::new(),
        other => vec![other],
    }
}

fn to_mapping(v: Value, default: fn() -> Value) -> Mapping {
    match v {
        Value::Mapping(m) => m,
        Value::Sequence(s) => s.into_iter().map(|k| (k, default())).collect(),
        _ => Mapping::new(),
    }
}

/// A scalar as Compose prints it in `KEY=VALUE`.
pub fn scalar_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Null => String::new(),
        Value::Tagged(t) => scalar_text(&t.value),
        other => serde_yaml_ng::to_string(other).unwrap_or_default().trim().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn y(s: &str) -> Value {
        serde_yaml_ng::from_str(s).unwrap()
    }

    #[test]
    fn override_rules() {
        let base = y("services:\n  web:\n    command: [a, b]\n    ports: ['80:80']\n    environment: {A: '1', B: '2'}\n    depends_on: [db]\n    build: .\n    labels: [x=1]\n");
        let over = y("services:\n  web:\n    command: [c]\n    ports: ['81:81']\n    environment: [B=3, C]\n    depends_on: {cache: {condition: service_healthy}}\n    build: {dockerfile: Dev}\n    labels: {y: '2'}\n");
        let m = merge(base, over, &[]);
        let web = &m["services"]["web"];
        assert_eq!(web["command"], y("[c]"));
        assert_eq!(web["ports"], y("['80:80', '81:81']"));
        assert_eq!(web["environment"], y("[A=1, B=2, B=3, C]"));
        assert_eq!(web["depends_on"]["db"]["condition"], y("service_started"));
        assert_eq!(web["depends_on"]["cache"]["condition"], y("service_healthy"));
        assert_eq!(web["build"], y("{context: ., dockerfile: Dev}"));
        assert_eq!(web["labels"], y("[x=1, y=2]"));
    }

    #[test]
    fn reset_and_override_tags() {
        let base = y("services:\n  web:\n    ports: ['80:80']\n    environment: {A: '1'}\n");
        let over = y("services:\n  web:\n    ports: !reset []\n    environment: !override {B: '2'}\n");
        let m = merge(base, over, &[]);
        assert!(m["services"]["web"].get("ports").is_none());
        assert_eq!(m["services"]["web"]["environment"], y("{B: '2'}"));
    }
}
