//! The repository's event log, for `iso events` and `GET /api/events`.

use std::path::PathBuf;

use chrono::{DateTime, Utc};

use super::env::event_log;
use super::{load, Error};
use crate::eventlog::{EventRecord, Tail};
use crate::project::Project;

/// The events still in the log with a sequence number above `after`,
/// oldest first.
pub fn read_after(project: &Project, after: u64) -> Result<Vec<EventRecord>, Error> {
    let log = event_log(project);
    log.read_after(after).map_err(|source| Error::Io { action: format!("read {}", log.path().display()), source })
}

/// A follower that yields the events appended from now on.
pub fn follow(project: &Project) -> Tail {
    event_log(project).tail()
}

/// Where the log is.
pub fn log_path(project: &Project) -> PathBuf {
    event_log(project).path()
}

/// Which events a `--thread` filter selects.
#[derive(Debug, Clone)]
pub enum Filter {
    All,
    Id(u32),
    /// Events carrying this name, and those of the live thread of that name
    /// (custom events carry only the id) since it was created.
    Name {
        name: String,
        live: Option<(u32, DateTime<Utc>)>,
    },
}

impl Filter {
    /// The filter for `thread`: an id (every thread that had it), or a name.
    pub fn new(project: &Project, thread: Option<&str>) -> Filter {
        match thread {
            None => Filter::All,
            Some(t) => match t.parse::<u32>() {
                Ok(id) => Filter::Id(id),
                Err(_) => {
                    let live = load(project).ok().and_then(|d| d.threads.iter().find(|r| r.name == t).map(|r| (r.id, r.created)));
                    Filter::Name { name: t.to_string(), live }
                }
            },
        }
    }

    pub fn matches(&self, e: &EventRecord) -> bool {
        match self {
            Filter::All => true,
            Filter::Id(id) => e.thread == Some(*id),
            Filter::Name { name, live } => {
                e.name.as_deref() == Some(name.as_str()) || live.is_some_and(|(id, created)| e.thread == Some(id) && e.at >= created)
            }
        }
    }
}
