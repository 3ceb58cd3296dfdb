//! `iso events`: print (and follow) the repository's event log, see
//! [`crate::eventlog`]. Always local: it reads `.git/iso/events.jsonl`.

use std::io::Write;
use std::time::Duration;

use chrono::{DateTime, Utc};
use clap::Args;

use super::exit;
use super::output::{column_widths, styled, write_header, write_row, Cell, BLUE, RED, YELLOW};
use crate::eventlog::{EventLog, EventRecord, AGENT, CUSTOM};
use crate::lifecycle::{Error, Project};

#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Keep printing events as they are logged (until interrupted)
    #[arg(short, long)]
    pub follow: bool,
    /// Print each event as one line of JSON (the `GET /api/events` data)
    #[arg(long)]
    pub json: bool,
    /// Only events after this sequence number
    #[arg(long, value_name = "SEQ")]
    pub since: Option<u64>,
    /// Only events of this thread: an id (every thread that had it), or a name
    #[arg(long, value_name = "THREAD")]
    pub thread: Option<String>,
}

const HEADER: [&str; 6] = ["SEQ", "TIME", "KIND", "EVENT", "THREAD", "NAME"];
/// Wide enough for iso's own events, so lines printed as they come stay aligned.
const MIN_WIDTHS: [usize; 6] = [4, 19, 9, 13, 6, 0];
/// How often `--follow` looks at the log.
const POLL: Duration = Duration::from_millis(200);

/// Which events `--thread` selects.
enum Filter {
    All,
    Id(u32),
    /// Events carrying this name, and those of the live thread of that name
    /// (custom events carry only the id) since it was created.
    Name { name: String, live: Option<(u32, DateTime<Utc>)> },
}

impl Filter {
    fn new(project: &Project, thread: Option<&str>) -> Filter {
        match thread {
            None => Filter::All,
            Some(t) => match t.parse::<u32>() {
                Ok(id) => Filter::Id(id),
                Err(_) => {
                    let live = project.load().ok().and_then(|d| d.threads.iter().find(|r| r.name == t).map(|r| (r.id, r.created)));
                    Filter::Name { name: t.to_string(), live }
                }
            },
        }
    }

    fn matches(&self, e: &EventRecord) -> bool {
        match self {
            Filter::All => true,
            Filter::Id(id) => e.thread == Some(*id),
            Filter::Name { name, live } => {
                e.name.as_deref() == Some(name.as_str()) || live.is_some_and(|(id, created)| e.thread == Some(id) && e.at >= created)
            }
        }
    }
}

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

pub(super) fn run(project: &Project, args: EventsArgs) -> Result<i32, Error> {
    let log = EventLog::of(project);
    let filter = Filter::new(project, args.thread.as_deref());
    // Follow from before reading, so no event falls between the two (one in
    // both is told by its seq).
    let mut tail = args.follow.then(|| log.tail());
    let all = match log.read_after(args.since.unwrap_or(0)) {
        Ok(a) => a,
        Err(e) => {
            anstream::eprintln!("{}error:{} cannot read {}: {e}", RED.render(), RED.render_reset(), log.path().display());
            return Ok(exit::ERROR);
        }
    };
    let mut last = all.last().map(|e| e.seq).or(args.since).unwrap_or(0);
    let shown: Vec<&EventRecord> = all.iter().filter(|e| filter.matches(e)).collect();
    if shown.is_empty() && !args.json && !args.follow {
        eprintln!("no events{}; lifecycle, agent and custom events are logged in {}", if all.is_empty() { " logged yet" } else { " match" }, log.path().display());
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
