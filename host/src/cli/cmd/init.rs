//! `iso init NAME...`

use crate::cli::args::InitArgs;
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
    let (created, failed): (Vec<_>, Vec<_>) = results.into_iter().partition(|(_, r)| r.is_ok());
    let created: Vec<Created> = created.into_iter().filter_map(|(_, r)| r.ok()).collect();
    let failed: Vec<(String, Box<dyn Diagnostic>)> = failed.into_iter().filter_map(|(n, r)| r.err().map(|e| (n, e))).collect();
    if args.json.json {
        let threads: Vec<&crate::thread::ThreadRecord> = created.iter().map(|c| &c.thread).collect();
        super::json(&threads);
    } else {
        for c in &created {
            render::created(c, args.no_services);
        }
        if created.len() == 1 && failed.is_empty() {
            render::cd_hint(created[0].thread.id);
        }
    }
    let total = args.names.len();
    super::finish_bulk(total, created.len(), failed, |done, names| {
        eprintln!("{done} of {total} threads created; failed: {}", names.join(", "));
    })
}
