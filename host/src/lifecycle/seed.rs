//! Seeding a new thread's volumes from another thread, a snapshot or the
//! main checkout's Compose project, and the snapshots themselves
//! (`iso snapshot save|list|rm`). See docs/seeding.md.
//!
//! A snapshot is only volumes on the engine: one per stack volume, named
//! `iso-<repo>-snap-<name>-<volume>` and labelled with the snapshot's name,
//! the repository's id, the stack volume it holds and the list of all of
//! the snapshot's volumes (so a missing one is noticed). Snapshot volumes
//! carry none of the thread labels (`iso.managed`, `iso.thread`), so no
//! cleanup or doctor sweep of a thread's resources can take them.

use std::collections::BTreeMap;

use chrono::Utc;
use serde::{Deserialize, Serialize};

use super::stack::stack_plan;
use super::{find, Error};
use crate::config::SeedHold;
use crate::progress::Progress;
use crate::project::Project;
use crate::services::{self, CopyHow, CopyMethod, Engine, Plan, VolumeCopy};

pub const LABEL_SNAPSHOT: &str = "iso.snapshot";
pub const LABEL_SNAPSHOT_REPO_ID: &str = "iso.snapshot.repo-id";
pub const LABEL_SNAPSHOT_VOLUME: &str = "iso.snapshot.volume";
pub const LABEL_SNAPSHOT_VOLUMES: &str = "iso.snapshot.volumes";
pub const LABEL_SNAPSHOT_FROM: &str = "iso.snapshot.from";
pub const LABEL_SNAPSHOT_CREATED: &str = "iso.snapshot.created";

/// What a seed copied, as init reports it.
#[derive(Debug, Clone, Serialize)]
pub struct SeedReport {
    /// The source as given (`2`, `snapshot:base`, `main`).
    pub source: String,
    pub copies: Vec<services::Copied>,
    /// The thread's volumes no source volume matched: created empty.
    pub empty: Vec<String>,
    /// The source's containers held still for the copy (released again).
    pub held: Vec<String>,
    /// Paused or stopped (`threads.seed_hold`; stopped where pausing failed).
    pub hold: services::seed::Hold,
    pub held_millis: u128,
}

impl SeedReport {
    /// "seeded from 2: db (12.0 MB, reflink); empty: cache; iso-app-t2-db paused for 310 ms".
    pub fn describe(&self) -> String {
        let copies: Vec<String> =
            self.copies.iter().map(|c| format!("{} ({}, {}, {} ms)", c.target, services::seed::megabytes(c.bytes), c.path, c.millis)).collect();
        let mut s = format!("seeded from {}: {}", self.source, copies.join(", "));
        if !self.empty.is_empty() {
            s.push_str(&format!("; left empty (no match in the source): {}", self.empty.join(", ")));
        }
        if !self.held.is_empty() {
            s.push_str(&format!("; {} {} for {} ms for a consistent copy", self.held.join(", "), self.hold, self.held_millis));
        }
        s
    }
}

/// One snapshot and its volumes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Snapshot {
    pub name: String,
    /// Stack volume name to the engine volume holding it.
    pub volumes: BTreeMap<String, String>,
    /// Stack volumes the snapshot was saved with that are no longer on the engine.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing: Vec<String>,
    /// The thread it was saved from ("3 (api)").
    pub from: String,
    pub created: String,
}

/// What `iso snapshot save` did: the snapshot, each copy, and the hold of
/// the source for it (`POST /api/snapshots` answers the same).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SnapshotSaved {
    pub snapshot: Snapshot,
    pub copies: Vec<services::Copied>,
    /// The source's containers held still for the copy (released again).
    pub held: Vec<String>,
    pub hold: services::seed::Hold,
    pub held_millis: u128,
}

/// The seed an init uses: `--no-seed` none, else `--seed-from`, else
/// `threads.seed` of iso.toml.
pub(crate) fn effective(project: &Project, seed_from: Option<&str>, no_seed: bool) -> Option<String> {
    if no_seed {
        return None;
    }
    seed_from.map(str::to_string).or_else(|| project.config.threads.seed.clone()).filter(|s| !s.is_empty())
}

/// Check that `source` names something that exists, before a thread is
/// made for it.
pub(crate) fn check_source(project: &Project, source: &str) -> Result<(), Error> {
    if let Some(name) = source.strip_prefix("snapshot:") {
        check_snapshot_name(name)?;
        return Ok(());
    }
    if source == "main" {
        return Ok(());
    }
    find(project, source).map(|_| ())
}

/// The volumes `source` offers: stack volume name to engine volume (only
/// those on the engine).
fn source_volumes(project: &Project, engine: &Engine, source: &str, wanted: &BTreeMap<String, String>) -> Result<BTreeMap<String, String>, Error> {
    if let Some(name) = source.strip_prefix("snapshot:") {
        let snap = snapshot(project, engine, name)?;
        return Ok(snap.volumes);
    }
    let candidates: BTreeMap<String, String> = if source == "main" {
        // The main checkout's `docker compose` project: Compose names its
        // volumes `<project>_<volume>`.
        let compose = compose_project_name(project);
        wanted.keys().map(|v| (v.clone(), format!("{compose}_{v}"))).collect()
    } else {
        let record = find(project, source)?;
        stack_plan(project, &record)?.volumes
    };
    let mut out = BTreeMap::new();
    for (short, name) in candidates {
        if engine.volume_exists(&name)? {
            out.insert(short, name);
        }
    }
    Ok(out)
}

/// The Compose project name of the main checkout, as `docker compose` run
/// there picks it: `COMPOSE_PROJECT_NAME`, else the directory's name,
/// lowercased, without the characters Compose drops.
fn compose_project_name(project: &Project) -> String {
    if let Some(n) = std::env::var("COMPOSE_PROJECT_NAME").ok().filter(|n| !n.is_empty()) {
        return n;
    }
    project.repo_name().to_lowercase().chars().filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-').collect()
}

fn helper_images(plan: &Plan) -> Vec<String> {
    let mut images: Vec<String> = plan.services.iter().map(|s| s.image.reference().to_string()).collect();
    images.extend(["busybox:latest".to_string(), "busybox".to_string()]);
    images.dedup();
    images
}

/// Create the volumes of `plan` as copies of `source`'s, before its stack
/// starts. No match at all is an error (the caller rolls back).
/// Seed the volumes of `plan` from `source`. `create_stack`: also create
/// the stack's containers (not started) before the copy, for
/// [`Engine::up`] to start after it (see `copy_volumes`), reporting their
/// phases to `report`.
pub(crate) fn seed(
    project: &Project,
    engine: &Engine,
    plan: &Plan,
    source: &str,
    progress: &dyn Progress,
    create_stack: Option<services::PhaseReport<'_>>,
) -> Result<SeedReport, Error> {
    let offered = source_volumes(project, engine, source, &plan.volumes)?;
    let mut copies = Vec::new();
    let mut empty = Vec::new();
    for (short, target) in &plan.volumes {
        match offered.get(short) {
            Some(from) => copies.push(VolumeCopy { source: from.clone(), target: target.clone(), labels: BTreeMap::new() }),
            None => empty.push(short.clone()),
        }
    }
    if copies.is_empty() {
        return Err(Error::NoSeedMatch {
            from: source.to_string(),
            wanted: plan.volumes.keys().cloned().collect(),
            offered: offered.keys().cloned().collect(),
        });
    }
    let images = helper_images(plan);
    let how = CopyHow { method: CopyMethod::from_env()?, hold: hold(project), helper_images: &images };
    let report = engine.copy_volumes(&copies, &plan.labels, how, &|m| progress.step(m), create_stack.map(|r| (plan, r)))?;
    Ok(SeedReport { source: source.to_string(), copies: report.copies, empty, held: report.held, hold: report.hold, held_millis: report.held_millis })
}

fn hold(project: &Project) -> services::seed::Hold {
    match project.config.threads.seed_hold {
        SeedHold::Pause => services::seed::Hold::Paused,
        SeedHold::Stop => services::seed::Hold::Stopped,
    }
}

/// Saves and removals of the repository's snapshots, one at a time (two
/// API clients, two shells): two saves of one name would both pass the
/// "exists" check, share its volumes (creating a volume that exists hands
/// it back), and the one that failed would remove them as its own.
fn snapshots_lock(project: &Project) -> Result<crate::lockedfile::Lock, Error> {
    Ok(crate::lockedfile::lock(&project.registry_path().with_file_name("snapshots.lock")).map_err(crate::registry::RegistryError::from)?)
}

fn check_snapshot_name(name: &str) -> Result<(), Error> {
    let ok = !name.is_empty() && name.len() <= 40 && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if ok && name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        Ok(())
    } else {
        Err(Error::BadSnapshotName(name.to_string()))
    }
}

/// Every snapshot of this repository.
pub fn snapshot_list(project: &Project) -> Result<Vec<Snapshot>, Error> {
    snapshots(project, &Engine::connect()?)
}

pub(crate) fn snapshots(project: &Project, engine: &Engine) -> Result<Vec<Snapshot>, Error> {
    let id = project.identity()?.id;
    let vols = engine.volumes_labelled(&[LABEL_SNAPSHOT.to_string(), format!("{LABEL_SNAPSHOT_REPO_ID}={id}")])?;
    let mut by_name: BTreeMap<String, Snapshot> = BTreeMap::new();
    for v in vols {
        let get = |k: &str| v.labels.get(k).cloned().unwrap_or_default();
        let name = get(LABEL_SNAPSHOT);
        let s = by_name.entry(name.clone()).or_insert_with(|| Snapshot {
            name,
            volumes: BTreeMap::new(),
            missing: get(LABEL_SNAPSHOT_VOLUMES).split(',').filter(|x| !x.is_empty()).map(str::to_string).collect(),
            from: get(LABEL_SNAPSHOT_FROM),
            created: get(LABEL_SNAPSHOT_CREATED),
        });
        s.volumes.insert(get(LABEL_SNAPSHOT_VOLUME), v.name.clone());
    }
    let mut out: Vec<Snapshot> = by_name.into_values().collect();
    for s in &mut out {
        let have = s.volumes.clone();
        s.missing.retain(|m| !have.contains_key(m));
    }
    Ok(out)
}

fn snapshot(project: &Project, engine: &Engine, name: &str) -> Result<Snapshot, Error> {
    check_snapshot_name(name)?;
    let all = snapshots(project, engine)?;
    let known: Vec<String> = all.iter().map(|s| s.name.clone()).collect();
    all.into_iter().find(|s| s.name == name).ok_or_else(|| Error::NoSnapshot { name: name.to_string(), known })
}

/// `iso snapshot save NAME --from THREAD`: copy every volume of the
/// thread's stack into the snapshot's own volumes.
pub fn snapshot_save(project: &Project, name: &str, from: &str, progress: &dyn Progress) -> Result<SnapshotSaved, Error> {
    check_snapshot_name(name)?;
    let _one_at_a_time = snapshots_lock(project)?;
    let engine = Engine::connect()?;
    if snapshots(project, &engine)?.iter().any(|s| s.name == name) {
        return Err(Error::SnapshotExists { name: name.to_string() });
    }
    let record = find(project, from)?;
    let plan = stack_plan(project, &record)?;
    let repo_name = project.config.docker.name.clone().unwrap_or_else(|| project.repo_name());
    let mut copies = Vec::new();
    for (short, vol) in &plan.volumes {
        if engine.volume_exists(vol)? {
            copies
                .push((short.clone(), VolumeCopy { source: vol.clone(), target: services::snapshot_volume(&repo_name, name, short), labels: BTreeMap::new() }));
        }
    }
    if copies.is_empty() {
        return Err(Error::NoSeedMatch { from: format!("thread {}", record.id), wanted: plan.volumes.keys().cloned().collect(), offered: Vec::new() });
    }
    let shorts: Vec<String> = copies.iter().map(|(s, _)| s.clone()).collect();
    // `[docker] labels` too, as on every resource iso makes.
    let mut labels: BTreeMap<String, String> = project.config.docker.labels.clone();
    labels.extend(
        [
            (LABEL_SNAPSHOT, name.to_string()),
            (LABEL_SNAPSHOT_REPO_ID, project.identity()?.id),
            (LABEL_SNAPSHOT_VOLUMES, shorts.join(",")),
            (LABEL_SNAPSHOT_FROM, format!("{} ({})", record.id, record.name)),
            (LABEL_SNAPSHOT_CREATED, Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v)),
    );
    let images = helper_images(&plan);
    let how = CopyHow { method: CopyMethod::from_env()?, hold: hold(project), helper_images: &images };
    let copies: Vec<VolumeCopy> = copies
        .into_iter()
        .map(|(short, mut c)| {
            c.labels.insert(LABEL_SNAPSHOT_VOLUME.into(), short);
            c
        })
        .collect();
    // One hold of the source for all its volumes: they are copied from the same point.
    let report = match engine.copy_volumes(&copies, &labels, how, &|m| progress.step(m), None) {
        Ok(r) => r,
        Err(e) => {
            // No half snapshot: what was made goes again (found by its
            // labels, so a volume of that name someone else made stays).
            if let Ok(made) =
                engine.volumes_labelled(&[format!("{LABEL_SNAPSHOT}={name}"), format!("{LABEL_SNAPSHOT_REPO_ID}={}", labels[LABEL_SNAPSHOT_REPO_ID])])
            {
                for v in made {
                    let _ = engine.remove_volume(&v.name);
                }
            }
            return Err(e.into());
        }
    };
    Ok(SnapshotSaved {
        snapshot: snapshot(project, &engine, name)?,
        copies: report.copies,
        held: report.held,
        hold: report.hold,
        held_millis: report.held_millis,
    })
}

/// `iso snapshot rm NAME`: remove the snapshot's volumes.
pub fn snapshot_rm(project: &Project, name: &str) -> Result<Snapshot, Error> {
    let _one_at_a_time = snapshots_lock(project)?;
    let engine = Engine::connect()?;
    let snap = snapshot(project, &engine, name)?;
    for v in snap.volumes.values() {
        engine.remove_volume(v)?;
    }
    Ok(snap)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_names_are_short_plain_words() {
        for ok in ["base", "fixtures-2026", "a_b", "0"] {
            assert!(check_snapshot_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-x", "Base", "a/b", "../x", "a b", &"x".repeat(41), "snap\u{0}"] {
            assert!(matches!(check_snapshot_name(bad), Err(Error::BadSnapshotName(_))), "{bad:?}");
        }
    }

    #[test]
    fn the_report_names_copies_empty_volumes_and_the_stop() {
        let c = services::Copied {
            source: "iso-app-t1-pgdata".into(),
            target: "iso-app-t2-pgdata".into(),
            path: services::CopyPath::Reflink,
            bytes: 12_000_000,
            reflinked_files: 3,
            copied_files: 0,
            millis: 40,
        };
        let r = SeedReport {
            source: "1".into(),
            copies: vec![c],
            empty: vec!["cache".into()],
            held: vec!["iso-app-t1-postgres".into()],
            hold: services::seed::Hold::Paused,
            held_millis: 900,
        };
        assert_eq!(
            r.describe(),
            "seeded from 1: iso-app-t2-pgdata (12.0 MB, reflink, 40 ms); left empty (no match in the source): cache; iso-app-t1-postgres paused for 900 ms for a consistent copy"
        );
    }
}
