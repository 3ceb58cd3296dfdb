//! `iso events`: print (and follow) the repository's event log. Always
//! local: it reads `.git/iso/events.jsonl`.

use std::io::Write;
use std::time::Duration;

use crate::cli::args::EventsArgs;
use crate::cli::output::{column_widths, styled, write_header, write_row, Cell, BLUE, RED, YELLOW};
use crate::cli::{exit, CmdResult};
use crate::lifecycle::events::{self, Filter};
use crate::lifecycle::{EventRecord, AGENT_EVENT as AGENT, CUSTOM_EVENT as CUSTOM};
use crate::project::Project;

const HEADER: [&str; 6] = ["SEQ", "TIME", "KIND", "EVENT", "THREAD", "NAME"];
/// Wide enough for iso's own events, so lines printed as they come stay aligned.
const MIN_WIDTHS: [usize; 6] = [4, 19, 9, 13, 6, 0];
/// How often `--follow` looks at the log.
const POLL: Duration = Duration::from_millis(200);

fn row(e: &EventRecord) -> Vec<Cell> {
    let kind_style = match e.kind.as_str() {
        AGENT => BLUE,
        CUSTOM => YELLOW,
        _ => Default::default(),
    };
    let failed = e.data.get("state").and_then(|s| s.as_str()) == Some("failed");
    vec![
        Cell::from(e.seq.to_string()),
        e.at.format("%Y-%m-%d %H:%M:%S").to_string().into(),
        styled(e.kind.clone(), kind_style),
        if failed { styled(e.event.clone(), RED) } else { e.event.clone().into() },
        e.thread.map_or("-".to_string(), |t| t.to_string()).into(),
        e.name.clone().unwrap_or_else(|| "-".to_string()).into(),
    ]
}

fn json_line(out: &mut dyn Write, e: &EventRecord) -> std::io::Result<()> {
    writeln!(out, "{}", serde_json::to_string(e).map_err(std::io::Error::other)?)
}

pub fn run(project: &Project, args: EventsArgs) -> CmdResult {
    let filter = Filter::new(project, args.thread.as_deref());
    // Follow from before reading, so no event falls between the two (one in
    // both is told by its seq).
    let mut tail = args.follow.then(|| events::follow(project));
    let all = events::read_after(project, args.since.unwrap_or(0))?;
    let mut last = all.last().map(|e| e.seq).or(args.since).unwrap_or(0);
    let shown: Vec<&EventRecord> = all.iter().filter(|e| filter.matches(e)).collect();
    if shown.is_empty() && !args.json && !args.follow {
        eprintln!(
            "no events{}; lifecycle, agent and custom events are logged in {}",
            if all.is_empty() { " logged yet" } else { " match" },
            events::log_path(project).display()
        );
        return Ok(exit::OK);
    }
    let rows: Vec<Vec<Cell>> = if args.json { Vec::new() } else { shown.iter().map(|e| row(e)).collect() };
    let widths = column_widths(&HEADER, &rows, if args.follow { &MIN_WIDTHS[..] } else { &[] });
    let mut out = anstream::stdout().lock();
    // A closed stdout (`iso events | head`) ends the command quietly.
    let printed = (|| -> std::io::Result<()> {
        if args.json {
            for e in &shown {
                json_line(&mut out, e)?;
            }
        } else {
            write_header(&mut out, &HEADER, &widths)?;
            for r in &rows {
                write_row(&mut out, r, &widths)?;
            }
        }
        out.flush()
    })();
    let Some(tail) = tail.as_mut() else { return Ok(exit::OK) };
    if printed.is_err() {
        return Ok(exit::OK);
    }
    loop {
        std::thread::sleep(POLL);
        for e in tail.poll() {
            if e.seq <= last {
                continue;
            }
            last = e.seq;
            if !filter.matches(&e) {
                continue;
            }
            let r = if args.json { json_line(&mut out, &e) } else { write_row(&mut out, &row(&e), &widths) };
            if r.and_then(|()| out.flush()).is_err() {
                return Ok(exit::OK);
            }
        }
    }
}
