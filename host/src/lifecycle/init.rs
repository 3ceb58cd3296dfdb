//! `iso init`: create threads, and undo a failed or interrupted one.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use chrono::Utc;

use super::env::{apply_outcome, describe_phases, emit, endpoints, mark_failed, repo_hooks, thread_env, write_env, EventData, ENV_FILE};
use super::stack::stack_plan;
use super::{bulk, fault_point, Bulk, Error};
use crate::config::RepoSpec;
use crate::copyfiles;
use crate::events::{Event, EventReceiver};
use crate::names;
use crate::ports::{self, PortLayout};
use crate::progress::Progress;
use crate::project::{LinkedRepo, Project};
use crate::registry::RegistryError;
use crate::services::{self, Engine};
use crate::thread::{LinkedWorktree, Operation, PortRange, Step, ThreadRecord, ThreadStatus};
use crate::worktree::{self, ExistingBranch, Git, GitError, Oid};

/// How to create threads (the same for every name of one `iso init`).
#[derive(Debug, Clone, Default)]
pub struct InitOptions {
    /// Branch or commit to start from (default: `threads.base_branch`, else
    /// the main checkout's current branch).
    pub base: Option<String>,
    /// What the thread is for.
    pub task: Option<String>,
    /// Create worktree, ports and env file without starting the stack.
    pub no_services: bool,
    /// Kept with the thread for its agent's prompt (`iso spawn`, the API).
    pub context: Option<serde_json::Value>,
    /// Create the thread's volumes as copies of this source's (a thread,
    /// `snapshot:NAME` or `main`); default `threads.seed`.
    pub seed_from: Option<String>,
    /// Do not seed, whatever `threads.seed` says.
    pub no_seed: bool,
    /// Open the thread on this existing branch (local, or remote-tracking:
    /// then its local tracking branch is made) instead of a new one.
    pub branch: Option<String>,
}

/// What a thread is made on: a new branch, an existing one, or an existing
/// worktree.
struct Target {
    /// As typed (for display and lookup).
    name: String,
    /// Its ASCII form, for the branch name.
    slug: String,
    /// The existing branch to use (`None`: make one from the template).
    branch: Option<String>,
    /// A remote-tracking branch to make the local `branch` from.
    track: Option<(String, Oid)>,
    /// An existing worktree to adopt (`None`: `thread-{id}` under the
    /// worktree dir).
    worktree: Option<PathBuf>,
}

/// Create one thread per name, each on its own: one failing does not stop
/// the others.
/// With `opts.branch` there is one thread, named `names[0]` or after the
/// branch.
pub fn init_many(project: &Project, names: &[String], opts: &InitOptions, progress: &dyn Progress) -> Bulk<ThreadRecord> {
    if let Some(branch) = &opts.branch {
        let label = names.first().cloned().unwrap_or_else(|| branch.clone());
        return bulk(&[label], progress, |_, progress| {
            if names.len() > 1 {
                return Err(Error::Usage(format!("--branch opens one thread, on `{branch}`; {} names were given", names.len())));
            }
            init_on_branch(project, branch, names.first().map(String::as_str), opts, progress)
        });
    }
    bulk(names, progress, |name, progress| init(project, name, opts, progress))
}

/// A thread on the existing branch `branch` (see [`InitOptions::branch`]),
/// named `name` or after the branch. A branch checked out anywhere (the
/// main checkout, another worktree) is refused with that path.
pub fn init_on_branch(project: &Project, branch: &str, name: Option<&str>, opts: &InitOptions, progress: &dyn Progress) -> Result<ThreadRecord, Error> {
    let git = project.git()?;
    let (local, track) = match git.existing_branch(branch)? {
        ExistingBranch::Local(l) => (l, None),
        ExistingBranch::Remote { local, upstream, tip } => {
            progress.note(&format!("making local branch {local} to track {upstream}"));
            (local, Some((upstream, tip)))
        }
    };
    if let Some(path) = git.branch_checked_out_at(&local)? {
        return Err(GitError::BranchInUse { branch: local, path }.into());
    }
    let typed = name.unwrap_or(&local);
    let target = Target { name: names::display(typed)?, slug: names::sanitize(typed)?, branch: Some(local), track, worktree: None };
    create(project, &git, target, opts, progress)
}

/// Register the existing worktree at `path` (made with `git worktree add`)
/// as a thread, named `name` or after its branch: ports, env file, copied
/// files (none overwritten), services and hooks as for [`init`]. Cleanup
/// removes the worktree and keeps its branch, as for any thread. Refused for
/// a path that is not a linked worktree of this repository, the main
/// checkout, a detached HEAD, or a worktree that already is a thread's.
pub fn adopt(project: &Project, path: &Path, name: Option<&str>, opts: &InitOptions, progress: &dyn Progress) -> Result<ThreadRecord, Error> {
    let git = project.git()?;
    let refuse = |why: String, hint: &str| Error::NotAdoptable { path: path.to_path_buf(), why, hint: hint.to_string() };
    let full =
        std::fs::canonicalize(path).map_err(|e| refuse(format!("it cannot be opened ({e})"), "give the path of a worktree made with `git worktree add`"))?;
    if full == git.root() {
        return Err(refuse("it is the main checkout".into(), "adopt a linked worktree (`git worktree add PATH BRANCH`), or `iso init --branch BRANCH`"));
    }
    if !git.worktrees()?.iter().any(|w| w.valid && w.path == full) {
        return Err(refuse(
            "it is not a worktree of this repository".into(),
            "`git worktree list` shows this repository's worktrees; run iso from the repository the worktree belongs to",
        ));
    }
    let Some(branch) = worktree::head_branch(&full) else {
        return Err(refuse("its HEAD is detached; a thread needs a branch".into(), "`git switch BRANCH` (or `git switch -c NAME`) in it first"));
    };
    let typed = name.unwrap_or(&branch);
    let target = Target { name: names::display(typed)?, slug: names::sanitize(typed)?, branch: Some(branch), track: None, worktree: Some(full) };
    create(project, &git, target, opts, progress)
}

/// Create a thread: reserve an id and a port block, make (or reuse) its
/// branch and worktree, copy local files, write `.env.thread`, start its
/// Docker stack (unless `no_services`; healthy before `post-up`) and emit
/// the lifecycle events. On failure everything created is rolled back.
pub fn init(project: &Project, name: &str, opts: &InitOptions, progress: &dyn Progress) -> Result<ThreadRecord, Error> {
    let git = project.git()?;
    let target = Target { name: names::display(name)?, slug: names::sanitize(name)?, branch: None, track: None, worktree: None };
    create(project, &git, target, opts, progress)
}

fn create(project: &Project, git: &Git, target: Target, opts: &InitOptions, progress: &dyn Progress) -> Result<ThreadRecord, Error> {
    let hooks = repo_hooks(project, progress);
    // Owns the thread from its reservation until the post events are
    // delivered: another operation (a DELETE to the same server) is busy.
    let op = Operation::begin();
    let name = target.name.clone();
    let base = match opts.base.clone().or_else(|| project.config.threads.base_branch.clone()) {
        Some(b) => b,
        None => git.current_branch()?.ok_or(GitError::DetachedHead)?,
    };
    let base_oid = git.resolve_base(&base)?;
    // A source that does not exist is named before anything is made.
    let seed = super::seed::effective(project, opts.seed_from.as_deref(), opts.no_seed).filter(|_| project.config.has_stack());
    if let Some(s) = &seed {
        super::seed::check_source(project, s)?;
    }
    // From here on `seed_from` is the seed in effect.
    let opts = &InitOptions { seed_from: seed, no_seed: false, ..opts.clone() };

    // Every linked repository is checked (and its base found) before
    // anything is made.
    let mut linked = Vec::new();
    for repo in project.linked_repos()? {
        let lgit = Git::discover(&repo.root)?;
        let lbase = match repo.spec.base.clone() {
            Some(b) => b,
            None => lgit.current_branch()?.ok_or(GitError::DetachedHead)?,
        };
        lgit.resolve_base(&lbase)?;
        linked.push((repo, lbase));
    }

    progress.step(&format!("{name}: reserving id and ports"));
    let mut record = reserve(project, git, &target, &base, opts.task.clone(), &op, &linked, progress)?;
    fault_point("reserved");

    let branching = match target.track {
        Some((upstream, tip)) => Branching::Track { upstream, tip },
        None if target.branch.is_some() => Branching::Existing,
        None => Branching::New(base_oid),
    };
    match build(project, git, &mut record, &branching, opts, &hooks, progress) {
        Ok(()) => {
            release(project, &mut record, &op);
            if let Some(ctx) = &opts.context {
                // Best effort: the thread is made; a lost context only
                // leaves its agent's prompt without it.
                if let Err(e) = crate::agent::Runs::new(&project.iso_dir()).save_context(record.id, ctx) {
                    progress.note(&format!("could not keep the context of thread {}: {e}", record.id));
                }
            }
            Ok(record)
        }
        Err((step, err)) => {
            progress.step(&format!("{name}: rolling back"));
            let rolled_back = match rollback(project, record.id) {
                Ok(items) => items,
                Err(e) => vec![format!("(rollback incomplete: {e}; run `iso doctor --fix`)")],
            };
            Err(Error::InitFailed { name, step, source: Box::new(err), rolled_back })
        }
    }
}

fn layout(project: &Project) -> PortLayout {
    let p = &project.config.ports;
    PortLayout { base: p.base, block_size: p.block_size, slots: p.slots.clone() }
}

/// Under the ledger's lock and then the registry's (see [`super::machine`]):
/// pick the id (per repository) and a block no thread of any repository on
/// this machine holds, and write a `creating` record owned by this process
/// and its lease.
// One call site; a struct of these would only rename them.
#[allow(clippy::too_many_arguments)]
fn reserve(
    project: &Project,
    git: &Git,
    target: &Target,
    base: &str,
    task: Option<String>,
    op: &Operation,
    linked: &[(LinkedRepo, String)],
    progress: &dyn Progress,
) -> Result<ThreadRecord, Error> {
    let layout = layout(project);
    let name = target.name.as_str();
    super::machine::reserve_block(project, |data, taken, leases, lost| {
        // One ASCII form per name, so a lookup by it finds one thread.
        let same = |t: &ThreadRecord| t.name == name || names::sanitize(&t.name).ok().as_deref() == Some(target.slug.as_str());
        if let Some(t) = data.threads.iter().find(|t| same(t)) {
            return Err(Error::NameTaken { name: t.name.clone(), id: t.id });
        }
        if let Some(path) = &target.worktree {
            if let Some(t) = data.threads.iter().find(|t| &t.worktree == path) {
                return Err(Error::AlreadyThread { path: path.clone(), id: t.id });
            }
        }
        // A thread the registry lost keeps its id (and, through `taken`,
        // its ports) until `iso doctor --fix` re-registers it: its worktree
        // would collide with a new thread's of the same id.
        if let Some(t) = lost.values().flatten().find(|t| t.name == name) {
            return Err(Error::NameTaken { name: name.to_string(), id: t.id });
        }
        note_lost(project, lost, progress);
        let held: BTreeSet<u32> = data.threads.iter().map(|t| t.id).chain(lost.keys().copied()).collect();
        let id = ports::free_id(project.config.threads.max, &held)?;
        // This repository's own threads hold their blocks too (one may sit
        // outside the formula after an earlier move).
        let mine: Vec<PortRange> = data.threads.iter().map(|t| t.port_block).collect();
        let all_taken: Vec<PortRange> = taken.iter().chain(&mine).copied().collect();
        let (block, skipped) = layout.allocate(id, &all_taken)?;
        // Only the thread's own block is worth a word: a busy one further
        // down the search would be named again by every later init.
        for s in skipped.iter().filter(|s| s.block == id) {
            progress.note(&s.to_string());
        }
        let usual = layout.block(id).range;
        if block.range != usual {
            if let Some(l) = leases.iter().find(|l| l.overlaps(&usual) && taken.contains(&l.block)) {
                progress.note(&format!("ports {usual} are held by thread {} ({}) of {}: thread {id} gets {}", l.thread, l.name, l.repo.display(), block.range));
            }
        }
        let branch = target.branch.clone().unwrap_or_else(|| project.config.branch_name(id, &target.slug));
        if let Some(t) = data.threads.iter().find(|t| t.branch == branch) {
            return Err(Error::BranchTaken { branch, id: t.id });
        }
        let worktree = target.worktree.clone().unwrap_or_else(|| project.worktree_path(id));
        let now = Utc::now();
        let mut record = ThreadRecord {
            id,
            name: name.to_string(),
            branch: branch.clone(),
            base: base.to_string(),
            status: ThreadStatus::Creating,
            env_file: worktree.join(ENV_FILE),
            worktree,
            ports: block.named,
            port_block: block.range,
            task,
            pr: None,
            created: now,
            updated: now,
            created_branch: false,
            error: None,
            owner: Some(op.owner()),
            steps: Vec::new(),
            history: Vec::new(),
            links: Default::default(),
            agent: None,
            last_activity: None,
            repos: linked
                .iter()
                .map(|(repo, lbase)| {
                    let w = LinkedWorktree {
                        repo_root: repo.root.clone(),
                        worktree: repo.worktree_path(&project.config, id),
                        branch: branch.clone(),
                        base: lbase.clone(),
                        created_branch: false,
                    };
                    (repo.name.clone(), w)
                })
                .collect(),
        };
        let adopted = target.worktree.as_ref().map(|p| format!(", adopting {}", p.display())).unwrap_or_default();
        record.record("reserved", format!("id {id}, ports {}{adopted}", record.port_block));
        data.threads.push(record.clone());
        // Serialised by the registry lock, so parallel inits don't race on
        // the exclude file.
        let dir = format!("/{}/", project.config.threads.worktree_dir.display());
        git.ensure_excluded(&[&dir, ENV_FILE])?;
        Ok(record)
    })
}

/// Say which ids init skips for threads the registry lost, and how to get
/// them back.
fn note_lost(project: &Project, lost: &super::machine::Lost, progress: &dyn Progress) {
    let (kept, bare): (Vec<_>, Vec<_>) = lost.iter().partition(|(_, t)| t.is_some());
    if !kept.is_empty() {
        let list: Vec<String> = kept.iter().filter_map(|(_, t)| t.as_ref()).map(|t| format!("{} ({}, ports {})", t.id, t.name, t.port_block)).collect();
        let one = list.len() == 1;
        let (s, is, its, it) = if one { ("", "is", "its", "it") } else { ("s", "are", "their", "them") };
        progress.note(&format!(
            "thread{s} {} {is} missing from the registry but {its} worktree{s} {is} still there: {its} id{s} and ports are skipped; `iso doctor --fix` re-registers {it}",
            list.join(", ")
        ));
    }
    for (id, _) in bare {
        progress.note(&format!("{} exists but no thread has it: id {id} is skipped; `iso doctor` shows what it is", project.worktree_path(*id).display()));
    }
}

type StepResult = Result<(), (&'static str, Error)>;

/// Where a thread's branch comes from.
enum Branching {
    /// Made by iso from this commit (the base).
    New(Oid),
    /// An existing local branch: never iso's to delete.
    Existing,
    /// A local branch iso makes to track a remote-tracking one.
    Track { upstream: String, tip: Oid },
}

fn build(
    project: &Project,
    git: &Git,
    record: &mut ThreadRecord,
    branching: &Branching,
    opts: &InitOptions,
    hooks: &dyn EventReceiver,
    progress: &dyn Progress,
) -> StepResult {
    let name = record.name.clone();
    let at = |step: &'static str| move |e: Error| (step, e);
    let git_at = |step: &'static str| move |e: GitError| (step, Error::from(e));

    let pre_env = thread_env(project, record).unwrap_or_default();
    emit(project, record, Event::PreInit, hooks, &EventData { env: Some(&pre_env), ..Default::default() }).map_err(at("pre-init hook"))?;

    // Branch: reuse an existing one, otherwise create it from the base.
    progress.step(&format!("{name}: branch {}", record.branch));
    if let Branching::Track { upstream, tip } = branching {
        // Made (and undone on failure) like a new branch; `--delete-branch`
        // may delete it later, the remote branch is never touched.
        journal(project, record, Step::Branch { name: record.branch.clone() }).map_err(at("branch"))?;
        git.create_tracking_branch(&record.branch, upstream, *tip, &format!("thread {} ({}) tracking {upstream}", record.id, record.name))
            .map_err(git_at("branch"))?;
        record.created_branch = true;
        fault_point("branch");
    } else if git.branch_exists(&record.branch) {
        if let Some(at_path) = git.branch_checked_out_at(&record.branch).map_err(git_at("branch"))? {
            if at_path != record.worktree {
                return Err(("branch", GitError::BranchInUse { branch: record.branch.clone(), path: at_path }.into()));
            }
        }
        record.created_branch = git.made_by_iso(&record.branch);
    } else {
        let Branching::New(base_oid) = *branching else {
            return Err(("branch", GitError::BranchNotFound { branch: record.branch.clone() }.into()));
        };
        journal(project, record, Step::Branch { name: record.branch.clone() }).map_err(at("branch"))?;
        git.create_thread_branch(&record.branch, base_oid, &format!("thread {} ({}) from {}", record.id, record.name, record.base))
            .map_err(git_at("branch"))?;
        record.created_branch = true;
        fault_point("branch");
    }

    // Worktree: reuse the directory only if it already is this branch's.
    progress.step(&format!("{name}: checking out worktree {}", record.worktree.display()));
    if record.worktree.exists() {
        if worktree::head_branch(&record.worktree).as_deref() != Some(record.branch.as_str()) || !record.worktree.join(".git").is_file() {
            return Err(("worktree", GitError::DirOccupied { path: record.worktree.clone(), branch: record.branch.clone() }.into()));
        }
        progress.note(&format!("using existing worktree {}", record.worktree.display()));
    } else {
        let wt_name = format!("thread-{}", record.id);
        journal(project, record, Step::Worktree { name: wt_name.clone(), path: record.worktree.clone() }).map_err(at("worktree"))?;
        let reason = format!("iso thread {} ({})", record.id, record.name);
        git.add_worktree(&wt_name, &record.worktree, &record.branch, &reason).map_err(git_at("worktree"))?;
        fault_point("worktree");
    }

    for (repo_name, spec) in project.config.repos.iter() {
        link_repo(project, record, repo_name, spec, progress)?;
    }

    progress.step(&format!("{name}: copying local files"));
    let copied = copy_local_files(project.root(), &record.worktree, &project.config.threads.copy, &project.config.threads.link)?;

    progress.step(&format!("{name}: writing {ENV_FILE}"));
    // Planned once: the env file takes its connection details, the stack
    // below is started from it.
    let plan = if project.config.has_stack() { Some(stack_plan(project, record).map_err(at("env file"))?) } else { None };
    for w in plan.iter().flat_map(|p| &p.warnings) {
        progress.note(&format!("{name}: {w}"));
    }
    let mut env = write_env(project, record, plan.as_ref()).map_err(at("env file"))?;
    let services = plan.as_ref().map(endpoints).unwrap_or_default();

    // The Docker stack: journaled before anything is created, so a failed
    // or killed init removes it by label.
    let mut stack_detail = String::new();
    let seed = opts.seed_from.as_deref();
    // Seeded volumes are made (and journaled) even with --no-services:
    // `iso up` later starts the stack on them.
    let engine = match plan.as_ref().filter(|_| !opts.no_services || seed.is_some()) {
        Some(plan) => {
            progress.step(&format!("{name}: connecting to Docker"));
            let engine = Engine::connect().map_err(|e| ("services", e.into()))?;
            journal(project, record, Step::Services { project: plan.project.clone() }).map_err(at("services"))?;
            Some(engine)
        }
        None => None,
    };
    let phases = |phases: &[(String, services::Phase)]| progress.step(&format!("{name}: {}", describe_phases(phases)));
    if let (Some(plan), Some(engine), Some(source)) = (plan.as_ref(), engine.as_ref(), seed) {
        progress.step(&format!("{name}: seeding volumes from {source}"));
        // The stack's containers are made with the volumes, before the copy, when it is to start.
        let create_stack = (!opts.no_services).then_some(&phases as services::PhaseReport<'_>);
        let report = super::seed::seed(project, engine, plan, source, progress, create_stack).map_err(at("seed"))?;
        progress.note(&format!("{name}: {}", report.describe()));
        fault_point("seed");
    }
    if let (Some(plan), Some(engine)) = (plan.as_ref().filter(|_| !opts.no_services), engine.as_ref()) {
        let started = engine.up(plan, &phases).map_err(|e| ("services", e.into()))?;
        fault_point("services");
        stack_detail = format!(", services {} healthy", started.iter().map(|s| format!("{} ({} ms)", s.service, s.millis)).collect::<Vec<_>>().join(", "));
    }

    // The thread is usable from here on; this operation keeps owning it
    // until its post events are delivered.
    record.status = ThreadStatus::Active;
    record.steps.clear();
    let origin = match branching {
        Branching::New(_) => format!("from {}", record.base),
        Branching::Existing => "(existing)".to_string(),
        Branching::Track { upstream, .. } => format!("tracking {upstream}"),
    };
    let detail = format!("branch {} {origin}, {} file(s) copied{stack_detail}", record.branch, copied.len());
    let snapshot = record.clone();
    project
        .registry()
        .update(|d| {
            let t = d.thread_mut(snapshot.id).ok_or_else(|| RegistryError::Corrupt {
                path: project.registry_path(),
                line: 0,
                message: format!("thread {} vanished from the registry during init", snapshot.id),
            })?;
            *t = ThreadRecord { history: std::mem::take(&mut t.history), ..snapshot.clone() };
            t.record("created", detail.clone());
            *record = t.clone();
            Ok::<_, Error>(())
        })
        .map_err(at("registry"))?;
    // The branch iso made now belongs to a thread that was created in full:
    // doctor's sweep of branches left by interrupted inits must never take
    // it, not after cleanup (which keeps branches) nor after a lost registry.
    if record.created_branch {
        let why = format!("iso: thread {} ({}) created", record.id, record.name);
        if let Err(e) = project.git().and_then(|g| g.mark_thread_branch_used(&record.branch, &why)) {
            progress.note(&format!("{name}: {}", crate::error::with_hint(&e)));
        }
    }

    // An adopted worktree is locked like the ones iso makes, once nothing
    // can roll the thread back (a failed init leaves it as it was found).
    if let Err(e) = git.lock_worktree_at(&record.worktree, &format!("iso thread {} ({})", record.id, record.name)) {
        progress.note(&format!("{name}: could not lock worktree {}: {e}", record.worktree.display()));
    }

    // A spare copy beside the worktree's git metadata, so a lost registry
    // loses nothing (see `recover`).
    if let Err(e) = super::recover::keep(project, record) {
        progress.note(&format!("{name}: {e}"));
    }

    // Post events do not undo the thread; a failure marks it failed.
    for event in [Event::PostInit, Event::PostUp] {
        let data = EventData { env: Some(&env), services: services.clone(), git: None };
        match emit(project, record, event, hooks, &data) {
            Ok(outcome) => apply_outcome(project, record, event, &outcome, &mut env, progress),
            Err(e) => {
                mark_failed(project, record, &e.to_string());
                progress.note(&format!("{name}: {e}"));
                break;
            }
        }
    }
    Ok(())
}

/// Make the thread's branch and worktree in linked repository `repo_name`
/// (planned in `record.repos` by [`reserve`]), journaled like the
/// primary's so a failure here rolls back every repository, then copy and
/// link its `copy`/`link` files from its main checkout.
fn link_repo(project: &Project, record: &mut ThreadRecord, repo_name: &str, spec: &RepoSpec, progress: &dyn Progress) -> StepResult {
    let Some(planned) = record.repos.get(repo_name).cloned() else { return Ok(()) };
    let step: &'static str = "linked repository";
    let fail = |e: Error| (step, e);
    let in_repo = |e: GitError| (step, Error::LinkedRepo { repo: repo_name.to_string(), source: Box::new(e.into()) });
    let name = &record.name;
    progress.step(&format!("{name}: {repo_name}: branch {} and worktree {}", planned.branch, planned.worktree.display()));
    let git = Git::discover(&planned.repo_root).map_err(in_repo)?;
    let dir = format!("/{}/", project.config.threads.worktree_dir.display());
    git.ensure_excluded(&[&dir, ENV_FILE]).map_err(in_repo)?;
    let why = format!("thread {} ({}) of {}", record.id, record.name, project.root().display());
    let branch = planned.branch.clone();
    let created = if git.branch_exists(&branch) {
        if let Some(at_path) = git.branch_checked_out_at(&branch).map_err(in_repo)? {
            return Err(in_repo(GitError::BranchInUse { branch, path: at_path }));
        }
        git.made_by_iso(&branch)
    } else {
        let remote = match git.existing_branch(&branch) {
            Ok(ExistingBranch::Remote { upstream, tip, .. }) => Some((upstream, tip)),
            Ok(ExistingBranch::Local(_)) | Err(GitError::BranchNotFound { .. }) => None,
            Err(e) => return Err(in_repo(e)),
        };
        journal(project, record, Step::LinkedBranch { repo: planned.repo_root.clone(), name: branch.clone() }).map_err(fail)?;
        match remote {
            Some((upstream, tip)) => git.create_tracking_branch(&branch, &upstream, tip, &format!("{why} tracking {upstream}")),
            None => {
                let base = git.resolve_base(&planned.base).map_err(in_repo)?;
                git.create_thread_branch(&branch, base, &format!("{why} from {}", planned.base))
            }
        }
        .map_err(in_repo)?;
        true
    };
    if let Some(w) = record.repos.get_mut(repo_name) {
        w.created_branch = created;
    }
    fault_point("linked-branch");
    if planned.worktree.exists() {
        return Err(in_repo(GitError::DirOccupied { path: planned.worktree.clone(), branch }));
    }
    let wt_name = format!("thread-{}", record.id);
    journal(project, record, Step::LinkedWorktree { repo: planned.repo_root.clone(), name: wt_name.clone(), path: planned.worktree.clone() }).map_err(fail)?;
    git.add_worktree(&wt_name, &planned.worktree, &branch, &format!("iso {why}")).map_err(in_repo)?;
    fault_point("linked-worktree");
    copy_local_files(&planned.repo_root, &planned.worktree, &spec.copy, &spec.link)?;
    Ok(())
}

/// `link` made symlinks to `root`'s paths in `worktree`, then `copy`
/// copied from `root` (what is linked is not copied too): the copied
/// files, or the step that failed.
fn copy_local_files(root: &Path, worktree: &Path, copy: &[String], link: &[String]) -> Result<Vec<PathBuf>, (&'static str, Error)> {
    let linked = copyfiles::link_matching(root, worktree, link).map_err(|e| ("link files", e.into()))?;
    let patterns = copyfiles::patterns(root, copy);
    copyfiles::copy_matching(root, worktree, &patterns, &linked).map_err(|e| ("copy files", e.into()))
}

/// Check thread `t`'s missing (adopted) worktree out again where it was,
/// on its branch, with `threads.copy`/`threads.link` and `.env.thread`
/// (`iso doctor --fix`), locked like the others.
pub(crate) fn rebuild_primary(project: &Project, t: &ThreadRecord) -> Result<(), Error> {
    let git = project.git()?;
    if t.worktree.exists() {
        return Err(GitError::DirOccupied { path: t.worktree.clone(), branch: t.branch.clone() }.into());
    }
    // The metadata git kept (locked) for it names it; a new one otherwise.
    let name = super::cleanup::worktree_name(&git, &t.worktree, t.id)?;
    git.add_worktree(&name, &t.worktree, &t.branch, &format!("iso thread {} ({})", t.id, t.name))?;
    copy_local_files(project.root(), &t.worktree, &project.config.threads.copy, &project.config.threads.link).map_err(|(_, e)| e)?;
    super::env::rewrite_env(project, t)
}

/// Make thread `t`'s missing worktree in linked repository `repo_name`
/// again (`iso doctor --fix`): on its branch (made again from its base if
/// it is gone too), with the repository's `copy`/`link` files and the
/// thread's `.env.thread`. A directory that is there is never touched.
pub(crate) fn rebuild_linked(project: &Project, t: &ThreadRecord, repo_name: &str) -> Result<(), Error> {
    let Some(w) = t.repos.get(repo_name) else { return Ok(()) };
    let in_repo = |e: Error| Error::LinkedRepo { repo: repo_name.to_string(), source: Box::new(e) };
    if w.worktree.exists() {
        return Err(in_repo(GitError::DirOccupied { path: w.worktree.clone(), branch: w.branch.clone() }.into()));
    }
    let git = Git::discover(&w.repo_root).map_err(|e| in_repo(e.into()))?;
    let why = format!("thread {} ({}) of {}", t.id, t.name, project.root().display());
    if !git.branch_exists(&w.branch) {
        let base = git.resolve_base(&w.base).map_err(|e| in_repo(e.into()))?;
        git.create_thread_branch(&w.branch, base, &format!("{why} from {} (rebuilt by iso doctor --fix)", w.base)).map_err(|e| in_repo(e.into()))?;
    }
    git.add_worktree(&format!("thread-{}", t.id), &w.worktree, &w.branch, &format!("iso {why}")).map_err(|e| in_repo(e.into()))?;
    if let Some(spec) = project.config.repos.get(repo_name) {
        copy_local_files(&w.repo_root, &w.worktree, &spec.copy, &spec.link).map_err(|(_, e)| in_repo(e))?;
    }
    super::env::rewrite_env(project, t)
}

/// Append `step` to the thread's journal before the step is carried out.
/// A thread that left the registry meanwhile (it must not: it is owned)
/// stops the init before it creates anything no journal would undo.
fn journal(project: &Project, record: &mut ThreadRecord, step: Step) -> Result<(), Error> {
    record.steps.push(step.clone());
    project.registry().update(|d| match d.thread_mut(record.id) {
        Some(t) => {
            t.steps.push(step);
            Ok(())
        }
        None => Err(Error::NotFound { selector: record.id.to_string(), known: " (it left the registry during init)".into() }),
    })
}

/// The init is done: the thread is no longer owned by `op`.
fn release(project: &Project, record: &mut ThreadRecord, op: &Operation) {
    let id = record.id;
    let _ = project.registry().update(|d| {
        if let Some(t) = d.thread_mut(id).filter(|t| op.owns(t.owner.as_ref())) {
            t.owner = None;
            *record = t.clone();
        }
        Ok::<_, Error>(())
    });
}

/// Undo the journal of thread `id` in reverse order and drop its entry.
/// Returns what was undone, in words.
pub(crate) fn rollback(project: &Project, id: u32) -> Result<Vec<String>, Error> {
    let Some(record) = project.registry().load()?.thread(id).cloned() else { return Ok(Vec::new()) };
    let mut undone = Vec::new();
    for step in record.steps.iter().rev() {
        match step {
            Step::Worktree { name, path } => {
                project.git()?.remove_worktree(name, path)?;
                undone.push(format!("worktree {}", path.display()));
            }
            Step::Branch { name } => {
                project.git()?.delete_branch(name)?;
                undone.push(format!("branch {name}"));
            }
            Step::LinkedWorktree { repo, name, path } => {
                Git::discover(repo)?.remove_worktree(name, path)?;
                undone.push(format!("worktree {}", path.display()));
            }
            Step::LinkedBranch { repo, name } => {
                Git::discover(repo)?.delete_branch(name)?;
                undone.push(format!("branch {name} in {}", repo.display()));
            }
            Step::Services { project: prefix } => {
                let removed = super::stack::teardown_listed(project, &Engine::connect()?, id, false)?;
                undone.push(format!("services {prefix} ({})", removed.describe()));
            }
        }
    }
    project.registry().update(|d| {
        d.take(id);
        Ok::<_, Error>(())
    })?;
    // Best effort, like cleanup's: a lease left behind is stale and dropped
    // by the next init of this repository.
    let _ = super::machine::release(project, id);
    undone.push(format!("registry entry and ports {}", record.port_block));
    Ok(undone)
}
