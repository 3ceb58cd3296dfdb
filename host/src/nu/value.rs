//! iso's records as Nushell values, with real types: ids and ports are
//! `int`, times are `datetime`, ports are a record of slot name → int.
//!
//! Every command builds thread values through [`thread_value`], so a field
//! added here (for instance `containers` once a thread has a stack) appears
//! in `iso threads`, `iso thread`, `iso init` and `iso cleanup` at once.

use std::collections::BTreeMap;
use std::path::Path;

use chrono::{DateTime, Utc};
use nu_protocol::{Record, Span, Value};

use crate::thread::{AgentStatus, HistoryEntry, Owner, PortRange, Step, ThreadRecord};

/// How much of a thread to show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detail {
    /// The columns of `iso threads`: one row per thread, no nested lists.
    Row,
    /// Everything `iso status --json` has: adds `created_branch`, `owner`,
    /// `steps` and `history`.
    Full,
}

/// A thread's running services, for the `containers` column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Containers {
    pub running: u32,
    pub total: u32,
}

/// Facts about a thread that are not in its registry record (filled in by
/// the commands that know them; `None` leaves the column out).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Extras {
    /// `Some` when the thread has a stack.
    pub containers: Option<Containers>,
    /// `iso thread`: every worktree with its state on disk (as `iso status
    /// --json` has them), shown with [`Detail::Full`].
    pub worktrees: Vec<crate::lifecycle::view::WorktreeState>,
}

/// The one place a [`ThreadRecord`] becomes a Nushell record.
pub fn thread_value(t: &ThreadRecord, detail: Detail, extras: &Extras, span: Span) -> Value {
    let mut r = Record::new();
    r.push("id", Value::int(t.id.into(), span));
    r.push("name", Value::string(&t.name, span));
    r.push("branch", Value::string(&t.branch, span));
    r.push("base", Value::string(&t.base, span));
    r.push("status", Value::string(t.status.as_str(), span));
    r.push("ports", ports_value(&t.ports, span));
    r.push("port_block", port_range_value(t.port_block, span));
    r.push("worktree", path_value(&t.worktree, span));
    r.push("env_file", path_value(&t.env_file, span));
    r.push("task", opt(t.task.as_ref().map(|s| Value::string(s, span)), span));
    r.push("pr", opt(t.pr.map(|n| Value::int(saturating_i64(n), span)), span));
    r.push("links", Value::record(t.links.iter().map(|(k, v)| (k.clone(), Value::string(v, span))).collect(), span));
    r.push("created", date_value(t.created, span));
    r.push("updated", date_value(t.updated, span));
    r.push("error", opt(t.error.as_ref().map(|s| Value::string(s, span)), span));
    r.push("agent", opt(t.agent.as_ref().map(|a| agent_value(a, span)), span));
    r.push("last_activity", opt(t.last_activity.map(|at| date_value(at, span)), span));
    // The linked repositories' worktrees ({} without [repos]), name to
    // {repo_root, worktree, branch, base, created_branch}.
    let repos =
        t.repos.iter().map(|(name, w)| (name.clone(), serde_json::to_value(w).map_or_else(|e| Value::string(e.to_string(), span), |j| json_value(j, span))));
    r.push("repos", Value::record(repos.collect(), span));
    if let Some(c) = extras.containers {
        r.push("containers", containers_value(c, span));
    }
    if detail == Detail::Full {
        r.push("created_branch", Value::bool(t.created_branch, span));
        r.push("owner", opt(t.owner.as_ref().map(|o| owner_value(o, span)), span));
        r.push("steps", Value::list(t.steps.iter().map(|s| step_value(s, span)).collect(), span));
        r.push("history", Value::list(t.history.iter().map(|h| history_value(h, span)).collect(), span));
        let worktrees = extras.worktrees.iter().map(|w| serde_json::to_value(w).map_or_else(|e| Value::string(e.to_string(), span), |j| json_value(j, span)));
        r.push("worktrees", Value::list(worktrees.collect(), span));
    }
    Value::record(r, span)
}

/// `{running: int, total: int}`.
pub fn containers_value(c: Containers, span: Span) -> Value {
    let mut r = Record::new();
    r.push("running", Value::int(c.running.into(), span));
    r.push("total", Value::int(c.total.into(), span));
    Value::record(r, span)
}

/// Slot name → port, in slot-name order.
pub fn ports_value(ports: &BTreeMap<String, u16>, span: Span) -> Value {
    let mut r = Record::new();
    for (slot, port) in ports {
        r.push(slot.as_str(), Value::int((*port).into(), span));
    }
    Value::record(r, span)
}

/// `{start: int, end: int}` (inclusive).
pub fn port_range_value(range: PortRange, span: Span) -> Value {
    let mut r = Record::new();
    r.push("start", Value::int(range.start.into(), span));
    r.push("end", Value::int(range.end.into(), span));
    Value::record(r, span)
}

/// A path, as the string Nushell's own path commands produce.
pub fn path_value(path: &Path, span: Span) -> Value {
    Value::string(path.to_string_lossy(), span)
}

pub fn date_value(at: DateTime<Utc>, span: Span) -> Value {
    Value::date(at.fixed_offset(), span)
}

/// `{state, message, since (datetime), reported_by, run, alive, exit_code, last_output (datetime)}`,
/// every key present (null when unknown) so `where agent.state == waiting` works on every row.
fn agent_value(a: &AgentStatus, span: Span) -> Value {
    let mut r = Record::new();
    r.push("state", Value::string(a.state.as_str(), span));
    r.push("message", opt(a.message.as_ref().map(|m| Value::string(m, span)), span));
    r.push("since", date_value(a.since, span));
    r.push("reported_by", Value::string(&a.reported_by, span));
    r.push("run", opt(a.run.map(|n| Value::int(n.into(), span)), span));
    r.push("alive", opt(a.alive.map(|b| Value::bool(b, span)), span));
    r.push("exit_code", opt(a.exit_code.map(|c| Value::int(c.into(), span)), span));
    r.push("last_output", opt(a.last_output.map(|at| date_value(at, span)), span));
    Value::record(r, span)
}

fn owner_value(o: &Owner, span: Span) -> Value {
    let mut r = Record::new();
    r.push("pid", Value::int(o.pid.into(), span));
    r.push("start_ticks", opt(o.start_ticks.map(|t| Value::int(saturating_i64(t), span)), span));
    Value::record(r, span)
}

/// A journal step: `{kind: string, ...}` with the step's own fields, taken
/// from its serde form so new kinds of step need no change here.
fn step_value(s: &Step, span: Span) -> Value {
    match serde_json::to_value(s) {
        Ok(json) => json_value(json, span),
        Err(e) => Value::string(format!("(step not shown: {e})"), span),
    }
}

/// Plain JSON data as a Nushell value (numbers that fit are ints).
fn json_value(json: serde_json::Value, span: Span) -> Value {
    use serde_json::Value as J;
    match json {
        J::Null => Value::nothing(span),
        J::Bool(b) => Value::bool(b, span),
        J::Number(n) => match n.as_i64() {
            Some(i) => Value::int(i, span),
            None => Value::float(n.as_f64().unwrap_or(f64::NAN), span),
        },
        J::String(s) => Value::string(s, span),
        J::Array(items) => Value::list(items.into_iter().map(|v| json_value(v, span)).collect(), span),
        J::Object(map) => Value::record(map.into_iter().map(|(k, v)| (k, json_value(v, span))).collect(), span),
    }
}

fn history_value(h: &HistoryEntry, span: Span) -> Value {
    let mut r = Record::new();
    r.push("at", date_value(h.at, span));
    r.push("event", Value::string(&h.event, span));
    r.push("detail", Value::string(&h.detail, span));
    Value::record(r, span)
}

fn opt(v: Option<Value>, span: Span) -> Value {
    v.unwrap_or_else(|| Value::nothing(span))
}

fn saturating_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::thread::ThreadStatus;

    fn record() -> ThreadRecord {
        let at = DateTime::parse_from_rfc3339("2026-01-02T03:04:05Z").unwrap().with_timezone(&Utc);
        ThreadRecord {
            id: 7,
            name: "add-auth".into(),
            branch: "thread-7-add-auth".into(),
            base: "main".into(),
            status: ThreadStatus::Active,
            worktree: "/r/.worktrees/thread-7".into(),
            ports: [("api".to_string(), 10702), ("postgres".to_string(), 10700)].into(),
            port_block: PortRange { start: 10700, end: 10799 },
            env_file: "/r/.worktrees/thread-7/.env.thread".into(),
            task: None,
            pr: Some(12),
            created: at,
            updated: at,
            created_branch: true,
            error: None,
            owner: None,
            steps: vec![Step::Branch { name: "b".into() }],
            history: vec![HistoryEntry { at, event: "created".into(), detail: String::new() }],
            links: [("chat".to_string(), "https://chat.example/t/1".to_string())].into(),
            agent: None,
            last_activity: None,
            repos: Default::default(),
        }
    }

    #[test]
    fn fields_have_real_types() {
        let span = Span::test_data();
        let v = thread_value(&record(), Detail::Row, &Extras::default(), span);
        let r = v.as_record().unwrap();
        assert_eq!(r.get("id"), Some(&Value::int(7, span)));
        assert_eq!(r.get("pr"), Some(&Value::int(12, span)));
        assert_eq!(r.get("task"), Some(&Value::nothing(span)));
        assert_eq!(r.get("links").unwrap().as_record().unwrap().get("chat"), Some(&Value::string("https://chat.example/t/1", span)));
        let ports = r.get("ports").unwrap().as_record().unwrap();
        assert_eq!(ports.columns().collect::<Vec<_>>(), ["api", "postgres"]);
        assert_eq!(ports.get("postgres"), Some(&Value::int(10700, span)));
        let created = r.get("created").unwrap().as_date().unwrap();
        assert_eq!(created.to_rfc3339(), "2026-01-02T03:04:05+00:00");
        assert!(r.get("history").is_none() && r.get("containers").is_none());
    }

    #[test]
    fn full_detail_and_containers() {
        let span = Span::test_data();
        let extras = Extras { containers: Some(Containers { running: 1, total: 3 }), ..Default::default() };
        let v = thread_value(&record(), Detail::Full, &extras, span);
        let r = v.as_record().unwrap();
        let c = r.get("containers").unwrap().as_record().unwrap();
        assert_eq!((c.get("running"), c.get("total")), (Some(&Value::int(1, span)), Some(&Value::int(3, span))));
        assert_eq!(r.get("created_branch"), Some(&Value::bool(true, span)));
        assert_eq!(r.get("history").unwrap().as_list().unwrap().len(), 1);
        let step = r.get("steps").unwrap().as_list().unwrap()[0].as_record().unwrap().clone();
        assert_eq!(step.get("kind"), Some(&Value::string("branch", span)));
        assert_eq!(step.get("name"), Some(&Value::string("b", span)));
    }
}
