//! `iso cleanup THREAD...` (aliases `clean`, `rm`).

use crate::cli::args::CleanupArgs;
use crate::cli::spinner::Spinner;
use crate::cli::{render, CmdResult, Target};
use crate::error::Diagnostic;
use crate::lifecycle::{self, CleanupOptions};
use crate::thread::ThreadRecord;

pub fn run(target: &Target, args: &CleanupArgs, quiet: bool) -> CmdResult {
    let opts = CleanupOptions { delete_branch: args.delete_branch, force: args.force, keep_volumes: args.keep_volumes, kill_ports: args.kill_ports };
    let results: super::Outcomes<ThreadRecord> = match target {
        Target::Local(project) => {
            let spinner = Spinner::new(quiet || args.json.json).hook_logs(!quiet);
            let bulk = lifecycle::cleanup::cleanup_many(project, &args.threads, opts, &spinner);
            drop(spinner);
            bulk.items.into_iter().map(|i| (i.input, i.result.map_err(|e| Box::new(e) as Box<dyn Diagnostic>))).collect()
        }
        Target::Remote(client) => {
            args.threads.iter().map(|sel| (sel.clone(), client.cleanup(sel, opts).map_err(|e| Box::new(e) as Box<dyn Diagnostic>))).collect()
        }
    };
    let (removed, failed): (Vec<_>, Vec<_>) = results.into_iter().partition(|(_, r)| r.is_ok());
    let removed: Vec<ThreadRecord> = removed.into_iter().filter_map(|(_, r)| r.ok()).collect();
    let failed: Vec<(String, Box<dyn Diagnostic>)> = failed.into_iter().filter_map(|(n, r)| r.err().map(|e| (n, e))).collect();
    if args.json.json {
        super::json(&removed);
    } else {
        for t in &removed {
            render::removed(t, args.delete_branch);
        }
    }
    super::finish_bulk(args.threads.len(), removed.len(), failed, |_, _| {})
}
