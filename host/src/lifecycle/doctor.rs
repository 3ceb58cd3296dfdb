//! `iso doctor`: compare the registry with git, the filesystem and Docker,
//! and with `--fix` repair what can be repaired without losing work.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::Serialize;

use super::cleanup::finish_cleanup;
use super::init::{rebuild_linked, rebuild_primary, rollback};
use super::recover;
use super::stack::stop_timeout;
use super::Error;
use crate::project::Project;
use crate::services::{self, Engine};
use crate::thread::{Owner, ThreadStatus};
use crate::worktree;

/// One problem `iso doctor` found, and what it did about it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Finding {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thread: Option<u32>,
    pub problem: String,
    /// What `--fix` does (or did) about it.
    pub fix: String,
    pub fixed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Compare the registry with git and the filesystem; with `fix`, repair
/// what can be repaired without losing work. Volumes (they hold data) are
/// never removed unless `volumes` is given too: they are listed with the
/// command that removes them.
pub fn doctor(project: &Project, fix: bool, volumes: bool) -> Result<Vec<Finding>, Error> {
    let mut findings = Vec::new();
    let data = project.registry().load()?;
    let attempt = |findings: &mut Vec<Finding>, thread: Option<u32>, problem: String, fix_text: &str, action: &dyn Fn() -> Result<(), Error>| {
        let mut f = Finding { thread, problem, fix: fix_text.to_string(), fixed: false, error: None };
        if fix {
            match action() {
                Ok(()) => f.fixed = true,
                Err(e) => f.error = Some(crate::error::with_hint(&e)),
            }
        }
        findings.push(f);
    };

    let wt_dir = project.root().join(&project.config.threads.worktree_dir);
    for t in &data.threads {
        let owner_alive = t.owner.as_ref().is_some_and(Owner::is_alive);
        match t.status {
            ThreadStatus::Creating if !owner_alive => attempt(
                &mut findings,
                Some(t.id),
                format!("thread {} ({}) was interrupted while being created", t.id, t.name),
                "roll back what it created (worktree, new branch, registry entry)",
                &|| rollback(project, t.id).map(|_| ()),
            ),
            ThreadStatus::Cleaning if !owner_alive => attempt(
                &mut findings,
                Some(t.id),
                format!("thread {} ({}) was interrupted while being cleaned up", t.id, t.name),
                "finish the cleanup (remove the worktree, keep the branch)",
                &|| finish_cleanup(project, t),
            ),
            ThreadStatus::Creating | ThreadStatus::Cleaning => {}
            // An adopted worktree outside iso's directory is the user's own
            // place: checked out there again rather than given up.
            _ if !t.worktree.exists() && !t.worktree.starts_with(&wt_dir) && project.git()?.branch_exists(&t.branch) => attempt(
                &mut findings,
                Some(t.id),
                format!("thread {} ({}): its adopted worktree {} is missing", t.id, t.name, t.worktree.display()),
                &format!("check it out there again on branch {}", t.branch),
                &|| rebuild_primary(project, t),
            ),
            _ if !t.worktree.exists() => attempt(
                &mut findings,
                Some(t.id),
                format!("thread {} ({}): worktree {} is missing", t.id, t.name, t.worktree.display()),
                "mark the thread removed and free its ports (the branch is kept)",
                &|| finish_cleanup(project, t),
            ),
            _ => {
                let head = worktree::head_branch(&t.worktree);
                if head.as_deref() != Some(t.branch.as_str()) {
                    findings.push(Finding {
                        thread: Some(t.id),
                        problem: format!(
                            "thread {} ({}): worktree is on {} instead of branch {}",
                            t.id,
                            t.name,
                            head.as_deref().unwrap_or("a detached HEAD"),
                            t.branch
                        ),
                        fix: format!("none automatic: `git -C {} switch {}`", t.worktree.display(), t.branch),
                        fixed: false,
                        error: None,
                    });
                }
                for (name, w) in t.repos.iter().filter(|(_, w)| !w.worktree.exists()) {
                    attempt(
                        &mut findings,
                        Some(t.id),
                        format!("thread {} ({}): its worktree {} in repository `{name}` is missing", t.id, t.name, w.worktree.display()),
                        &format!("check it out again on branch {} (made again from {} if it is gone too)", w.branch, w.base),
                        &|| rebuild_linked(project, t, name),
                    );
                }
            }
        }
    }

    // Worktrees in a linked repository's iso directory that no thread of
    // this repository owns: listed only, as they may hold work.
    if !project.config.repos.is_empty() {
        let owned: BTreeSet<&Path> = data.threads.iter().flat_map(|t| t.repos.values().map(|w| w.worktree.as_path())).collect();
        match project.linked_repos() {
            Err(e) => findings.push(Finding {
                thread: None,
                problem: e.to_string(),
                fix: crate::error::Diagnostic::hint(&e).unwrap_or_default(),
                fixed: false,
                error: None,
            }),
            Ok(repos) => {
                for repo in repos {
                    let dir = repo.root.join(&project.config.threads.worktree_dir);
                    let Ok(git) = worktree::Git::discover(&repo.root) else { continue };
                    for wt in git.worktrees()?.into_iter().filter(|w| w.path.starts_with(&dir) && !owned.contains(w.path.as_path())) {
                        findings.push(Finding {
                            thread: None,
                            problem: format!("worktree {} in repository `{}` belongs to no thread", wt.path.display(), repo.name),
                            fix: format!(
                                "none automatic (it may hold work): `git -C {} worktree unlock {} && git -C {} worktree remove {}`",
                                repo.root.display(),
                                wt.name,
                                repo.root.display(),
                                wt.path.display()
                            ),
                            fixed: false,
                            error: None,
                        });
                    }
                }
            }
        }
    }

    // Worktrees in iso's directory that no thread owns: a thread whose
    // registry entry was lost (its record is kept beside the worktree's git
    // metadata), or a leftover.
    let owned: BTreeSet<&Path> = data.threads.iter().map(|t| t.worktree.as_path()).collect();
    let repo_id = project.identity()?.id;
    let mut recoverable = BTreeSet::new();
    // This path's containers (this id's, or an older iso's without one):
    // what is left of threads an older iso made, which kept no record.
    let labelled: Vec<services::ContainerInfo> = if project.config.has_stack() {
        Engine::connect()
            .and_then(|e| e.containers(services::Scope { repo_root: project.root(), repo_id: &repo_id, unlabelled: true }, None))
            .unwrap_or_default()
    } else {
        Vec::new()
    };
    for wt in project.git()?.worktrees()? {
        if !wt.path.starts_with(&wt_dir) || owned.contains(wt.path.as_path()) {
            continue;
        }
        let kept = if wt.valid { recover::kept_thread(project.common_dir(), &wt.name, &repo_id) } else { None };
        if let Some(t) = kept.filter(|t| t.worktree == wt.path) {
            recoverable.insert(t.id);
            attempt(
                &mut findings,
                Some(t.id),
                format!("thread {} ({}) is missing from the registry; its worktree {} and iso's record of it are still there", t.id, t.name, wt.path.display()),
                &format!("re-register it as it was (id {}, branch {}, ports {})", t.id, t.branch, t.port_block),
                &|| recover::reregister(project, &t, "by iso doctor --fix, from the record beside its worktree"),
            );
        } else if let Some(rebuilt) = wt.valid.then(|| from_labels(project, &wt.path, &labelled, &data)).flatten() {
            match rebuilt {
                Ok((t, names)) => {
                    recoverable.insert(t.id);
                    attempt(
                        &mut findings,
                        Some(t.id),
                        format!(
                            "thread {} ({}) is missing from the registry; its worktree {} on branch {} and its containers {} are still there (made by an iso that kept no record of it)",
                            t.id,
                            t.name,
                            wt.path.display(),
                            t.branch,
                            names.join(", ")
                        ),
                        &format!("re-register it from the worktree and the Docker labels (id {}, branch {}, ports {}; base and task unknown)", t.id, t.branch, t.port_block),
                        &|| {
                            recover::reregister(project, &t, "by iso doctor --fix, from its worktree and Docker labels")?;
                            // Kept from now on, like any thread's.
                            let _ = recover::keep(project, &t);
                            Ok(())
                        },
                    );
                }
                Err(why) => findings.push(Finding {
                    thread: None,
                    problem: format!("worktree {} is not in the registry and Docker has containers of its thread, but {why}", wt.path.display()),
                    fix: "none automatic: it is not re-registered or removed (check the worktree and `docker ps -a --filter label=iso.thread`)".into(),
                    fixed: false,
                    error: None,
                }),
            }
        } else if wt.valid {
            attempt(
                &mut findings,
                None,
                format!("worktree {} is not in the registry", wt.path.display()),
                "remove it if it has no uncommitted changes (branch kept)",
                &|| {
                    let dirty = worktree::uncommitted_files(&wt.path)?;
                    if !dirty.is_empty() {
                        return Err(Error::DirtyWorktree { path: wt.path.clone(), uncommitted: dirty });
                    }
                    Ok(project.git()?.remove_worktree(&wt.name, &wt.path)?)
                },
            );
        } else {
            attempt(
                &mut findings,
                None,
                format!("git still lists worktree {} whose directory is gone", wt.path.display()),
                "prune git's metadata for it",
                &|| Ok(project.git()?.remove_worktree(&wt.name, &wt.path)?),
            );
        }
    }

    // Branches an init created and never got to use: made by iso (their
    // reflog says so), no commit since, and no thread, live or removed,
    // has them (an init whose registry entry was lost).
    let known: BTreeSet<&str> = data.threads.iter().chain(data.removed.iter()).map(|t| t.branch.as_str()).collect();
    let git = project.git()?;
    for branch in git.untouched_iso_branches()? {
        if known.contains(branch.as_str()) || git.branch_checked_out_at(&branch)?.is_some() {
            continue;
        }
        attempt(
            &mut findings,
            None,
            format!("branch {branch} was created by an iso init that did not finish, and no thread has it"),
            "delete it (it has no commits of its own)",
            &|| Ok(project.git()?.delete_branch(&branch)?),
        );
    }
    drop(git);

    // Live threads still naming an owner that is gone (an operation that
    // ended without clearing it): nothing is in progress.
    for t in data.threads.iter().filter(|t| !matches!(t.status, ThreadStatus::Creating | ThreadStatus::Cleaning)) {
        if let Some(o) = t.owner.as_ref().filter(|o| !o.is_alive()) {
            attempt(
                &mut findings,
                Some(t.id),
                format!("thread {} ({}) names process {} as working on it, which is gone", t.id, t.name, o.pid),
                "clear the owner",
                &|| {
                    project.registry().update(|d| {
                        if let Some(t) = d.thread_mut(t.id).filter(|t| t.owner.as_ref().is_some_and(|o| !o.is_alive())) {
                            t.owner = None;
                        }
                        Ok::<_, Error>(())
                    })
                },
            );
        }
    }

    // Containers, volumes and networks whose thread is gone (found by
    // label, so this works even when the registry was lost).
    if project.config.has_stack() {
        doctor_services(project, fix, volumes, &recoverable, &mut findings)?;
    }

    // Two live threads must never share ports.
    for (i, a) in data.threads.iter().enumerate() {
        for b in &data.threads[i + 1..] {
            if a.port_block.start <= b.port_block.end && b.port_block.start <= a.port_block.end {
                findings.push(Finding {
                    thread: Some(b.id),
                    problem: format!("threads {} and {} overlap in ports ({} and {})", a.id, b.id, a.port_block, b.port_block),
                    fix: format!("none automatic: clean up one of them (`iso cleanup {}`)", b.id),
                    fixed: false,
                    error: None,
                });
            }
        }
    }
    doctor_leases(project, fix, &recoverable, &mut findings);
    Ok(findings)
}

/// A thread made by an iso that kept no record of it, rebuilt from its
/// worktree (`<worktree dir>/thread-<id>`, on the branch the template
/// gives for that id) and the containers labelled with its id (their
/// published ports inside the id's usual block). `None`: not such a
/// thread (no containers of that id); `Err`: they disagree, and why.
fn from_labels(
    project: &Project,
    path: &Path,
    containers: &[services::ContainerInfo],
    data: &crate::registry::RegistryData,
) -> Option<Result<(crate::thread::ThreadRecord, Vec<String>), String>> {
    let id: u32 = path.file_name()?.to_str()?.strip_prefix("thread-")?.parse().ok()?;
    if project.worktree_path(id) != path || data.thread(id).is_some() {
        return None;
    }
    let mine: Vec<&services::ContainerInfo> = containers.iter().filter(|c| c.thread == Some(id)).collect();
    if mine.is_empty() {
        return None;
    }
    let names: Vec<String> = mine.iter().map(|c| c.name.clone()).collect();
    let Some(branch) = worktree::head_branch(path) else { return Some(Err("its worktree has a detached HEAD".into())) };
    let template = &project.config.threads.branch_template;
    let name = template.split_once("{name}").and_then(|(pre, post)| {
        let (pre, post) = (pre.replace("{id}", &id.to_string()), post.replace("{id}", &id.to_string()));
        branch.strip_prefix(pre.as_str())?.strip_suffix(post.as_str()).map(str::to_string)
    });
    let Some(name) = name.filter(|n| crate::names::sanitize(n).is_ok_and(|s| s == *n) && project.config.branch_name(id, n) == branch) else {
        return Some(Err(format!("its branch {branch} is not what the branch template `{template}` gives for thread {id}")));
    };
    let p = &project.config.ports;
    let block = crate::ports::PortLayout { base: p.base, block_size: p.block_size, slots: p.slots.clone() }.block(id);
    let outside: Vec<u16> = mine
        .iter()
        .flat_map(|c| c.ports.iter())
        .filter_map(|p| p.split("->").next()?.rsplit(':').next()?.parse().ok())
        .filter(|port| !(block.range.start..=block.range.end).contains(port))
        .collect();
    if !outside.is_empty() {
        return Some(Err(format!("its containers publish ports {outside:?} outside thread {id}'s block {}", block.range)));
    }
    let now = chrono::Utc::now();
    let t = crate::thread::ThreadRecord {
        id,
        name,
        branch,
        base: project.config.threads.base_branch.clone().unwrap_or_else(|| "main".into()),
        status: ThreadStatus::Active,
        env_file: path.join(super::env::ENV_FILE),
        worktree: path.to_path_buf(),
        ports: block.named,
        port_block: block.range,
        task: None,
        pr: None,
        created: now,
        updated: now,
        // The branch was not made by this re-registration: cleanup keeps it.
        created_branch: false,
        error: None,
        owner: None,
        steps: Vec::new(),
        history: Vec::new(),
        links: Default::default(),
        agent: None,
        last_activity: None,
        repos: Default::default(),
    };
    Some(Ok((t, names)))
}

/// Leases of the machine-wide port ledger whose repository or thread is
/// gone: they keep ports from every other repository until dropped.
fn doctor_leases(project: &Project, fix: bool, recoverable: &BTreeSet<u32>, findings: &mut Vec<Finding>) {
    let mine = project.identity().ok().map(|i| i.id);
    match super::machine::reclaim(project, fix, recoverable) {
        Ok(stale) => findings.extend(stale.into_iter().map(|(l, why)| Finding {
            thread: Some(l.thread).filter(|_| mine.as_deref() == Some(l.repo_id.as_str())),
            problem: format!("port lease {} of thread {} ({}) of {} is stale: {why}", l.block, l.thread, l.name, l.repo.display()),
            fix: "drop the lease (its ports are free for every repository again)".into(),
            fixed: fix,
            error: None,
        })),
        Err(e) => findings.push(Finding {
            thread: None,
            problem: format!("the port ledger could not be checked: {e}"),
            fix: "none automatic".into(),
            fixed: false,
            error: Some(crate::error::with_hint(&e)),
        }),
    }
}

fn doctor_services(project: &Project, fix: bool, volumes: bool, recoverable: &BTreeSet<u32>, findings: &mut Vec<Finding>) -> Result<(), Error> {
    let engine = match Engine::connect() {
        Ok(e) => e,
        Err(e) => {
            findings.push(Finding {
                thread: None,
                problem: format!("Docker is not reachable, so leftover containers were not looked for ({})", e.to_string().lines().next().unwrap_or("")),
                fix: "none automatic: start Docker and run `iso doctor` again".into(),
                fixed: false,
                error: None,
            });
            return Ok(());
        }
    };
    // Snapshots are no thread's (they carry no thread labels, so they are
    // never orphans); one that lost a volume would seed threads partly.
    for s in super::seed::snapshots(project, &engine)?.into_iter().filter(|s| !s.missing.is_empty()) {
        findings.push(Finding {
            thread: None,
            problem: format!("snapshot `{}` is missing its volume(s) {}: a seed from it leaves those empty", s.name, s.missing.join(", ")),
            fix: format!("none automatic: `iso snapshot rm {}`, then `iso snapshot save {} --from THREAD` again", s.name, s.name),
            fixed: false,
            error: None,
        });
    }
    // Reload: fixes above may have rolled threads back or re-registered
    // them; a thread that can be re-registered is not gone either.
    let live: BTreeSet<u32> = project.registry().load()?.threads.iter().map(|t| t.id).chain(recoverable.iter().copied()).collect();
    // Only resources with this repository's id are ours to remove; one
    // with this path and another id (an earlier checkout here, another
    // machine on a shared engine) or none (an older iso) is reported only.
    let repo_id = project.identity()?.id;
    let scope = services::Scope { repo_root: project.root(), repo_id: &repo_id, unlabelled: false };
    let mut orphans: BTreeMap<u32, Vec<services::Resource>> = BTreeMap::new();
    let mut foreign: Vec<services::Resource> = Vec::new();
    for r in engine.resources(project.root())? {
        match r.thread {
            Some(t) if r.repo_id.as_deref() == Some(repo_id.as_str()) && !live.contains(&t) => orphans.entry(t).or_default().push(r),
            Some(_) if r.repo_id.as_deref() == Some(repo_id.as_str()) => {}
            // An older iso's (no id) of a thread the registry lists, or
            // doctor re-registers: that thread's, as `listed_scope` says.
            Some(t) if r.repo_id.is_none() && live.contains(&t) => {}
            _ => foreign.push(r),
        }
    }
    if !foreign.is_empty() {
        let list: Vec<String> = foreign.iter().map(|r| format!("{} {}", r.kind, r.name)).collect();
        let whose = if foreign.iter().any(|r| r.repo_id.is_some()) {
            "another repository at this path (an earlier checkout, or another machine on this engine)"
        } else {
            "an older iso that did not label repository ids"
        };
        findings.push(Finding {
            thread: None,
            problem: format!("Docker has {} labelled with this path but not with this repository's id: made by {whose}; left alone", list.join(", ")),
            fix: format!(
                "none automatic: if they are leftovers, remove them by hand (`docker rm -f` / `docker volume rm` / `docker network rm` {})",
                foreign.iter().map(|r| r.name.as_str()).collect::<Vec<_>>().join(" ")
            ),
            fixed: false,
            error: None,
        });
    }
    for (thread, res) in orphans {
        let (data, rest): (Vec<_>, Vec<_>) = res.iter().partition(|r| r.kind == services::ResourceKind::Volume);
        let names = |rs: &[&services::Resource]| rs.iter().map(|r| format!("{} {}", r.kind, r.name)).collect::<Vec<_>>().join(", ");
        if !rest.is_empty() {
            let mut f = Finding {
                thread: Some(thread),
                problem: format!("thread {thread} no longer exists but Docker still has {}", names(&rest)),
                fix: "remove them (volumes are kept)".into(),
                fixed: false,
                error: None,
            };
            if fix {
                match engine.teardown(scope, Some(thread), !volumes, stop_timeout(project)) {
                    Ok(_) => f.fixed = true,
                    Err(e) => f.error = Some(crate::error::with_hint(&e)),
                }
            }
            findings.push(f);
        }
        if !data.is_empty() {
            // Volumes hold data: removed only when asked for by name.
            let mut f = Finding {
                thread: Some(thread),
                problem: format!("thread {thread} no longer exists but its data is still in {}", names(&data)),
                fix: "none without --volumes: `iso doctor --fix --volumes` removes them".into(),
                fixed: false,
                error: None,
            };
            if fix && volumes {
                match engine.teardown(scope, Some(thread), false, stop_timeout(project)) {
                    Ok(_) => f.fixed = true,
                    Err(e) => f.error = Some(crate::error::with_hint(&e)),
                }
            }
            findings.push(f);
        }
    }
    Ok(())
}
