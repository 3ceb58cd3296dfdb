//! `docker-compose.thread.yml`: what iso started for a thread, written as a
//! Compose file so that `docker compose -p <project> -f ... logs|ps|exec`
//! act on iso's containers.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use crate::config::services::{Condition, HealthCheck};
use crate::services::plan::{ImageSource, MountSource, Plan};

/// The file `iso compose` writes into a worktree.
pub const THREAD_FILE: &str = "docker-compose.thread.yml";

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
            ImageSource::Build(b) | ImageSource::ImageOrBuild(_, b) => {
                svc.insert("image".into(), json!(s.image.reference()));
                svc.insert("build".into(), json!({ "context": b.context.display().to_string(), "dockerfile": b.dockerfile }));
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
                .map(|(d, condition)| {
                    // Compose knows only command checks: a dependency on
                    // iso's own tcp/http check waits for its start there.
                    let has_check = plan.services.iter().any(|x| &x.name == d && matches!(x.health, Some(HealthCheck::Command(_))));
                    let condition = match condition {
                        Condition::ServiceHealthy if !has_check => Condition::ServiceStarted,
                        c => *c,
                    };
                    (d.clone(), json!({ "condition": condition.as_str() }))
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
