//! `iso update THREAD --task … --pr … --status …`.

use crate::cli::args::{SettableStatus, UpdateArgs};
use crate::cli::{exit, render, CmdResult, Target};
use crate::lifecycle::{self, Update};
use crate::thread::ThreadStatus;

pub fn run(target: &Target, args: &UpdateArgs) -> CmdResult {
    let change = Update {
        task: args.task.clone(),
        pr: args.pr.map(|n| (n != 0).then_some(n)),
        status: args.status.map(|s| match s {
            SettableStatus::Active => ThreadStatus::Active,
            SettableStatus::Merged => ThreadStatus::Merged,
            SettableStatus::Abandoned => ThreadStatus::Abandoned,
        }),
    };
    let t = match target {
        Target::Local(project) => lifecycle::update::update(project, &args.thread, &change)?,
        Target::Remote(client) => client.update(&args.thread, &change)?,
    };
    if args.json.json {
        super::json(&t);
    } else {
        render::updated(&t);
    }
    Ok(exit::OK)
}
