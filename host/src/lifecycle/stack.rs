//! A thread's Docker stack: planning it from `[services]` or `[compose]`,
//! and `iso up`, `down`, `logs`, `exec`, `compose` and the service states
//! `iso status` shows.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::env::{describe_phases, template_context};
use super::{find, Error};
use crate::progress::Progress;
use crate::project::Project;
use crate::services::{self, Engine};
use crate::thread::ThreadRecord;

/// The repository's stack: `[services.*]`, or the services of the Compose
/// project of `[compose]`, with the warnings to show (keys of the project
/// iso does not honour). A thread's stack is read from its own worktree, as
/// its branch may change the Compose files (docs/services.md); without a
/// thread (or before its worktree exists), from the repository root.
pub(crate) fn stack(project: &Project, record: Option<&ThreadRecord>) -> Result<(services::Stack, Vec<String>), Error> {
    let Some(c) = &project.config.compose else { return Ok((project.config.services.clone(), Vec::new())) };
    let env = compose_env(record);
    let worktree = record.map(|r| r.worktree.as_path()).filter(|w| w.is_dir());
    let mut note = None;
    let root = match worktree {
        Some(w) if services::compose::discover::find(w, c, &env).is_ok() => w,
        // Files the branch does not have (not committed yet): the
        // repository's own, said so.
        Some(w) if services::compose::discover::find(project.root(), c, &env).is_ok() => {
            note = Some(format!(
                "the Compose files are not in the thread's worktree {} (not committed?); using the repository's, so the branch cannot change them",
                w.display()
            ));
            project.root()
        }
        _ => worktree.unwrap_or(project.root()),
    };
    let loaded = services::compose::load(root, c, &env, services::compose::Loader::preferred())?;
    let (stack, mut warnings) = services::compose::import(&loaded, c, &project.config.ports.slots, project.config.ports.block_size)?;
    warnings.extend(note);
    Ok((stack, warnings))
}

/// What Compose interpolates the files with: iso's environment (as the
/// user's own `docker compose` would see it), and the thread's `ISO_*`
/// values (its id, name, branch, worktree and `ISO_PORT_<SLOT>` ports) over
/// it, so a file may use them.
fn compose_env(record: Option<&ThreadRecord>) -> BTreeMap<String, String> {
    let mut env: BTreeMap<String, String> = std::env::vars().collect();
    if let Some(r) = record {
        env.insert("ISO_THREAD_ID".into(), r.id.to_string());
        env.insert("ISO_THREAD_NAME".into(), r.name.clone());
        env.insert("ISO_BRANCH".into(), r.branch.clone());
        env.insert("ISO_WORKTREE".into(), r.worktree.display().to_string());
        for (slot, port) in &r.ports {
            env.insert(format!("ISO_PORT_{}", slot.to_uppercase()), port.to_string());
        }
    }
    env
}

/// The Docker resources of `record`'s stack (names, ports, environment),
/// with the warnings of the Compose import in `plan.warnings`.
pub(crate) fn stack_plan(project: &Project, record: &ThreadRecord) -> Result<services::Plan, Error> {
    let (stack, warnings) = stack(project, Some(record))?;
    let export = project.config.compose.as_ref().map(|c| c.export.clone()).unwrap_or_default();
    let repo = project.repo_name();
    let values = serde_json::to_value(template_context(project, record)).unwrap_or_default();
    let t = services::ThreadStack {
        repo_root: project.root(),
        repo_name: &repo,
        thread: record.id,
        ports: &record.ports,
        block_start: record.port_block.start,
        workdir: &record.worktree,
        values,
        stack: &stack,
        export: &export,
        settings: &project.config.docker,
    };
    let mut plan = services::plan(&t)?;
    plan.warnings = warnings;
    plan.warnings.extend(unpublished_slots(project, record, &plan));
    services::label_repo_id(&mut plan, &project.identity()?.id);
    Ok(plan)
}

/// Slots that `.env.thread` uses (`ports.<slot>` in `[env]` or `[compose]
/// export`) but no service of a Compose stack publishes: a URL to a closed
/// port is named rather than written silently.
fn unpublished_slots(project: &Project, record: &ThreadRecord, plan: &services::Plan) -> Vec<String> {
    let Some(compose) = &project.config.compose else { return Vec::new() };
    let published: std::collections::BTreeSet<u16> = plan.services.iter().flat_map(|s| s.ports.iter().map(|(_, h)| *h)).collect();
    let templates: Vec<(String, &String)> =
        project.config.env.iter().map(|(k, v)| (format!("env.{k}"), v)).chain(compose.export.iter().map(|(k, v)| (format!("compose.export.{k}"), v))).collect();
    let mut out = Vec::new();
    for (slot, port) in &record.ports {
        if published.contains(port) {
            continue;
        }
        let users: Vec<&str> = templates.iter().filter(|(_, t)| mentions_slot(t, slot)).map(|(k, _)| k.as_str()).collect();
        if !users.is_empty() {
            out.push(format!(
                "slot `{slot}` (port {port}) is used by {} but no service publishes it: publish the service's port in the Compose file (ports:), or map it with [compose] slots",
                users.join(", ")
            ));
        }
    }
    out
}

/// Whether a template refers to `ports.<slot>` (`ports.x` or `ports["x"]`).
fn mentions_slot(template: &str, slot: &str) -> bool {
    let dotted = format!("ports.{slot}");
    let by_key = [format!("ports[\"{slot}\"]"), format!("ports['{slot}']")];
    template.match_indices(&dotted).any(|(i, _)| !template[i + dotted.len()..].starts_with(|c: char| c.is_alphanumeric() || c == '_'))
        || by_key.iter().any(|k| template.contains(k.as_str()))
}

/// The Docker resources of a thread the registry lists: those carrying
/// this repository's id, and those without any id (made by an older iso)
/// because the registry lists the thread. Another checkout's at this path
/// (same labels but another id) are never shown, stopped or removed.
/// Every command that finds a listed thread's resources uses this rule.
pub(crate) fn listed_scope<'a>(project: &'a Project, repo_id: &'a str) -> services::Scope<'a> {
    services::Scope { repo_root: project.root(), repo_id, unlabelled: true }
}

/// Tear down thread `id`'s stack, as [`listed_scope`] admits.
pub(crate) fn teardown_listed(project: &Project, engine: &Engine, id: u32, keep_volumes: bool) -> Result<services::Removed, Error> {
    let repo_id = project.identity()?.id;
    Ok(engine.teardown(listed_scope(project, &repo_id), Some(id), keep_volumes, stop_timeout(project))?)
}

pub(crate) fn stop_timeout(project: &Project) -> std::time::Duration {
    std::time::Duration::from_secs(project.config.docker.stop_timeout)
}

/// Whether iso started services for this thread at some point.
pub(crate) fn had_services(record: &ThreadRecord) -> bool {
    record.history.iter().any(|h| h.event == "services up" || (h.event == "created" && h.detail.contains("services ")))
}

pub(crate) fn require_stack(project: &Project) -> Result<(), Error> {
    if project.config.has_stack() {
        Ok(())
    } else {
        Err(Error::NoStack)
    }
}

/// `iso up`: create what is missing of the thread's stack and start it,
/// waiting until every service is healthy.
pub fn up(project: &Project, selector: &str, progress: &dyn Progress) -> Result<(ThreadRecord, services::Plan, Vec<services::Started>), Error> {
    require_stack(project)?;
    let record = find(project, selector)?;
    let plan = stack_plan(project, &record)?;
    let engine = Engine::connect()?;
    let name = record.name.clone();
    for w in &plan.warnings {
        progress.note(&format!("{name}: {w}"));
    }
    let report = |phases: &[(String, services::Phase)]| progress.step(&format!("{name}: {}", describe_phases(phases)));
    let started = engine.up(&plan, &report)?;
    let record = project.registry().update(|d| {
        let t = d.thread_mut(record.id).ok_or_else(|| Error::NotFound { selector: selector.to_string(), known: String::new() })?;
        t.record("services up", started.iter().map(|s| s.service.as_str()).collect::<Vec<_>>().join(", "));
        Ok::<_, Error>(t.clone())
    })?;
    Ok((record, plan, started))
}

/// `iso down`: stop the thread's containers without removing anything.
pub fn down(project: &Project, selector: &str) -> Result<(ThreadRecord, Vec<String>), Error> {
    require_stack(project)?;
    let record = find(project, selector)?;
    let repo_id = project.identity()?.id;
    let stopped = Engine::connect()?.stop(listed_scope(project, &repo_id), record.id, stop_timeout(project))?;
    Ok((record, stopped))
}

/// One service of a thread as `iso status` shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ServiceState {
    pub service: String,
    pub container: String,
    /// running, exited, created, ... or `missing`.
    pub state: String,
    pub status: String,
    /// healthy, unhealthy, or `-` when not running.
    pub health: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health_detail: Option<String>,
    pub ports: Vec<String>,
}

/// Each service's container state, health (checked now) and ports.
pub fn service_states(project: &Project, record: &ThreadRecord) -> Result<Vec<ServiceState>, Error> {
    require_stack(project)?;
    let plan = stack_plan(project, record)?;
    let engine = Engine::connect()?;
    let repo_id = project.identity()?.id;
    let containers = engine.containers(listed_scope(project, &repo_id), Some(record.id))?;
    // Probed only where the container is ours and running: a command
    // check is an exec, and another checkout's container of the same name
    // is not ours to exec in.
    let mut ours = plan.clone();
    ours.services.retain(|s| containers.iter().any(|c| c.name == s.container && c.running()));
    let health = engine.health(&ours);
    Ok(plan
        .services
        .iter()
        .map(|s| {
            let c = containers.iter().find(|c| c.name == s.container);
            let running = c.is_some_and(|c| c.running());
            let (health, detail) = match (running, health.get(&s.name)) {
                (false, _) => ("-".to_string(), None),
                (true, Some(Ok(()))) => ("healthy".to_string(), None),
                (true, Some(Err(m))) => ("unhealthy".to_string(), Some(m.clone())),
                (true, None) => ("-".to_string(), None),
            };
            ServiceState {
                service: s.name.clone(),
                container: s.container.clone(),
                state: c.map_or("missing".to_string(), |c| c.state.clone()),
                status: c.map_or(String::new(), |c| c.status.clone()),
                health,
                health_detail: detail,
                ports: c.map_or_else(Vec::new, |c| c.ports.clone()),
            }
        })
        .collect())
}

/// Running and total containers per thread, from one Docker call.
pub fn container_counts(project: &Project) -> Result<BTreeMap<u32, (usize, usize)>, Error> {
    require_stack(project)?;
    let total = stack(project, None)?.0.len();
    let repo_id = project.identity()?.id;
    let listed: std::collections::BTreeSet<u32> = project.registry().load()?.threads.iter().map(|t| t.id).collect();
    let mut counts: BTreeMap<u32, (usize, usize)> = BTreeMap::new();
    // Unlabelled containers count only for threads the registry lists (as
    // in `listed_scope`); those with another id are never ours.
    for c in Engine::connect()?.containers(listed_scope(project, &repo_id), None)? {
        if let Some(t) = c.thread.filter(|t| c.repo_id.is_some() || listed.contains(t)) {
            let e = counts.entry(t).or_insert((0, 0));
            e.0 += usize::from(c.running());
            e.1 += 1;
        }
    }
    for e in counts.values_mut() {
        e.1 = e.1.max(total);
    }
    Ok(counts)
}

fn pick_services<'a>(plan: &'a services::Plan, service: Option<&str>) -> Result<Vec<&'a services::PlannedService>, Error> {
    match service {
        None => Ok(plan.services.iter().collect()),
        Some(name) => match plan.services.iter().find(|s| s.name == name) {
            Some(s) => Ok(vec![s]),
            None => {
                let known: Vec<&str> = plan.services.iter().map(|s| s.name.as_str()).collect();
                Err(services::Error::NoSuchService { name: name.to_string(), known: known.join(", ") }.into())
            }
        },
    }
}

/// `iso logs`: print (and with `follow`, keep printing) the logs of the
/// thread's services, or of one.
pub fn logs(project: &Project, selector: &str, service: Option<&str>, follow: bool, tail: Option<usize>, out: &mut dyn std::io::Write) -> Result<(), Error> {
    require_stack(project)?;
    let record = find(project, selector)?;
    let plan = stack_plan(project, &record)?;
    let engine = Engine::connect()?;
    let repo_id = project.identity()?.id;
    // Logs are read by container name: only names this thread's own
    // containers have (another checkout's at this path has the same ones).
    let ours = engine.containers(listed_scope(project, &repo_id), Some(record.id))?;
    let targets: Vec<(String, String)> = pick_services(&plan, service)?
        .into_iter()
        .filter(|s| ours.iter().any(|c| c.name == s.container))
        .map(|s| (s.name.clone(), s.container.clone()))
        .collect();
    Ok(engine.logs(&targets, follow, tail, out)?)
}

/// `iso exec`: run `cmd` in a service's container; returns its exit code.
pub fn exec(project: &Project, selector: &str, service: &str, cmd: &[String], tty: bool) -> Result<i64, Error> {
    require_stack(project)?;
    let record = find(project, selector)?;
    let plan = stack_plan(project, &record)?;
    let s = pick_services(&plan, Some(service))?[0];
    let engine = Engine::connect()?;
    let repo_id = project.identity()?.id;
    let running = engine.containers(listed_scope(project, &repo_id), Some(record.id))?.iter().any(|c| c.name == s.container && c.running());
    if !running {
        return Err(services::Error::NoContainer { container: s.container.clone(), thread: record.id }.into());
    }
    Ok(engine.exec(&s.container, cmd, tty)?)
}

/// `iso compose`: write `docker-compose.thread.yml` into the worktree.
/// Returns its path and the compose project name to use with it.
pub fn compose_export(project: &Project, selector: &str) -> Result<(PathBuf, String), Error> {
    require_stack(project)?;
    let record = find(project, selector)?;
    let plan = stack_plan(project, &record)?;
    let header = format!(
        "Written by iso for thread {} ({}): what iso started for it. Regenerate with `iso compose {}`.\nUse with: docker-compose -p {} -f {} logs|ps|exec|stop|start\nVolumes and the network are iso's (external): remove them with `iso cleanup {}`.",
        record.id,
        record.name,
        record.id,
        plan.project,
        services::compose::THREAD_FILE,
        record.id
    );
    let text = services::compose::export(&plan, &header);
    let path = record.worktree.join(services::compose::THREAD_FILE);
    project.git()?.ensure_excluded(&[services::compose::THREAD_FILE])?;
    // Beneath the worktree by handle: a link the branch committed under
    // that name is refused, not written through.
    crate::rooted::Root::open(&record.worktree)?.write(Path::new(services::compose::THREAD_FILE), text.as_bytes())?;
    Ok((path, plan.project))
}
