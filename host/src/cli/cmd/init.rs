//! `iso init NAME...`, `iso init --branch BRANCH [NAME]` and `iso adopt PATH`.

use std::path::Path;

use crate::cli::args::{AdoptArgs, InitArgs};
use crate::cli::spinner::Spinner;
use crate::cli::{render, CmdResult, Target};
use crate::error::Diagnostic;
use crate::lifecycle::{self, Created, InitOptions};

pub fn run(target: &Target, args: &InitArgs, quiet: bool) -> CmdResult {
    let opts = InitOptions {
        base: args.base.clone(),
        task: args.task.clone(),
        no_services: args.no_services,
        context: None,
        seed_from: args.seed_from.clone(),
        no_seed: args.no_seed,
        branch: args.branch.clone(),
    };
    let results: super::Outcomes<Created> = match target {
        Target::Local(project) => {
            let spinner = Spinner::new(quiet || args.json.json).hook_logs(!quiet);
            let bulk = lifecycle::init::init_many(project, &args.names, &opts, &spinner);
            drop(spinner);
            bulk.items
                .into_iter()
                .map(|i| (i.input, i.result.map(|t| lifecycle::view::created(project, t)).map_err(|e| Box::new(e) as Box<dyn Diagnostic>)))
                .collect()
        }
        Target::Remote(client) => client.init(&args.names, &opts)?.into_iter().map(|(n, r)| (n, r.map_err(|e| Box::new(e) as Box<dyn Diagnostic>))).collect(),
    };
    let total = results.len();
    show(results, total, args.json.json, args.no_services)
}

/// `iso adopt PATH`: one thread on an existing worktree.
pub fn adopt(target: &Target, args: &AdoptArgs, cwd: &Path, quiet: bool) -> CmdResult {
    let opts = InitOptions { task: args.task.clone(), no_services: args.no_services, ..Default::default() };
    // Absolute, so a server resolves it as the user meant.
    let path = cwd.join(&args.path);
    let label = args.path.display().to_string();
    let result: Result<Created, Box<dyn Diagnostic>> = match target {
        Target::Local(project) => {
            let spinner = Spinner::new(quiet || args.json.json).hook_logs(!quiet);
            let r = lifecycle::init::adopt(project, &path, args.name.as_deref(), &opts, &spinner);
            drop(spinner);
            r.map(|t| lifecycle::view::created(project, t)).map_err(|e| Box::new(e) as Box<dyn Diagnostic>)
        }
        Target::Remote(client) => client.adopt(&path, args.name.as_deref(), &opts).map_err(|e| Box::new(e) as Box<dyn Diagnostic>),
    };
    show(vec![(label, result)], 1, args.json.json, args.no_services)
}

fn show(results: super::Outcomes<Created>, total: usize, json: bool, no_services: bool) -> CmdResult {
    let (created, failed): (Vec<_>, Vec<_>) = results.into_iter().partition(|(_, r)| r.is_ok());
    let created: Vec<Created> = created.into_iter().filter_map(|(_, r)| r.ok()).collect();
    let failed: Vec<(String, Box<dyn Diagnostic>)> = failed.into_iter().filter_map(|(n, r)| r.err().map(|e| (n, e))).collect();
    if json {
        let threads: Vec<&crate::thread::ThreadRecord> = created.iter().map(|c| &c.thread).collect();
        super::json(&threads);
    } else {
        for c in &created {
            render::created(c, no_services);
        }
        if created.len() == 1 && failed.is_empty() {
            render::cd_hint(created[0].thread.id);
        }
    }
    super::finish_bulk(total, created.len(), failed, |done, names| {
        eprintln!("{done} of {total} threads created; failed: {}", names.join(", "));
    })
}
