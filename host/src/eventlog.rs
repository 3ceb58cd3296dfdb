//! The event log: every lifecycle event, agent event and custom event of a
//! repository, one JSON line each, in `<git common dir>/iso/events.jsonl`
//! (beside the registry).
//!
//! Whoever makes the event appends it: the CLI, the Nushell plugin, an agent
//! run's supervisor, `iso serve`. So every observer sees every event, however
//! it was made: `iso serve` tails the file and streams it to its SSE
//! subscribers, `iso events` prints it.
//!
//! Appending takes an exclusive lock on `events.lock` beside the log, reads
//! the last sequence number from `events.seq`, writes the next one back
//! there, appends the line with a single `write` and releases the lock, so
//! `seq` increases strictly in file order across processes. `events.seq` is
//! written before the line: a crash in between leaves a gap in the numbers,
//! never a number used twice. If `events.seq` is missing or unreadable the
//! last line of the log is used.
//!
//! When the log would grow past [`ROTATE_BYTES`] it is renamed to
//! `events.jsonl.1` (replacing the previous one) and a new log is started:
//! at most about twice that is kept.
//!
//! Writing the log must never make a lifecycle operation fail, so
//! [`append_quietly`] (what the lifecycle and agent runs call) ignores
//! errors; [`EventLog::append`] reports them to callers that can
//! (`POST /api/events`).

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The log file, in the registry's directory.
pub const LOG_FILE: &str = "events.jsonl";
/// The previous log, after a rotation.
pub const ROTATED_FILE: &str = "events.jsonl.1";
const LOCK_FILE: &str = "events.lock";
const SEQ_FILE: &str = "events.seq";
/// Rotate when the log would grow past this many bytes.
pub const ROTATE_BYTES: u64 = 4 << 20;

/// `kind` of the lifecycle events (pre-init … post-cleanup).
pub const LIFECYCLE: &str = "lifecycle";
/// `kind` of agent-started / agent-stopped.
pub const AGENT: &str = "agent";
/// `kind` of events published with `POST /api/events`.
pub const CUSTOM: &str = "custom";

/// One logged event: a line of `events.jsonl`, a frame of `GET /api/events`
/// (there it is called `Event`, see docs/openapi.json), a line of
/// `iso events --json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventRecord {
    /// Increasing across every process that writes this repository's log
    /// (the SSE `id`).
    pub seq: u64,
    /// [`LIFECYCLE`], [`AGENT`] or [`CUSTOM`].
    pub kind: String,
    pub event: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub data: serde_json::Value,
}

/// An event to append; the log gives it its `seq` and `at`.
#[derive(Debug, Clone, Default)]
pub struct NewEvent {
    pub kind: String,
    pub event: String,
    pub thread: Option<u32>,
    pub name: Option<String>,
    pub data: serde_json::Value,
}

/// Handle on a repository's event log files.
#[derive(Debug, Clone)]
pub struct EventLog {
    dir: PathBuf,
    rotate_at: u64,
}

impl EventLog {
    /// The log kept in `dir` (created on first append).
    pub fn new(dir: impl Into<PathBuf>) -> EventLog {
        EventLog { dir: dir.into(), rotate_at: ROTATE_BYTES }
    }

    /// Rotate at `bytes` instead of [`ROTATE_BYTES`] (tests).
    pub fn rotate_at(mut self, bytes: u64) -> EventLog {
        self.rotate_at = bytes;
        self
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join(LOG_FILE)
    }

    pub fn rotated_path(&self) -> PathBuf {
        self.dir.join(ROTATED_FILE)
    }

    /// Append `new`, giving it the next sequence number. Returns it as logged.
    pub fn append(&self, new: NewEvent) -> std::io::Result<EventRecord> {
        std::fs::create_dir_all(&self.dir)?;
        let lock = OpenOptions::new().create(true).truncate(false).write(true).open(self.dir.join(LOCK_FILE))?;
        // flock-style: released when `lock` is dropped, or by the kernel if
        // this process dies holding it.
        lock.lock()?;
        let seq = self.last_seq()? + 1;
        let record = EventRecord { seq, kind: new.kind, event: new.event, thread: new.thread, name: new.name, at: Utc::now(), data: new.data };
        let mut line = serde_json::to_vec(&record).map_err(std::io::Error::other)?;
        line.push(b'\n');

        let path = self.path();
        let len = match std::fs::metadata(&path) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(e),
        };
        let len = if len > 0 && len + line.len() as u64 > self.rotate_at {
            std::fs::rename(&path, self.rotated_path())?;
            0
        } else {
            len
        };
        // The number first: a crash after this leaves a gap, not a reused seq.
        std::fs::write(self.dir.join(SEQ_FILE), format!("{seq}\n"))?;
        let mut file = OpenOptions::new().create(true).append(true).read(true).open(&path)?;
        // A line torn by a crash (no newline at the end) must not swallow
        // this one: start on a line of our own.
        if len > 0 && !ends_with_newline(&mut file)? {
            line.insert(0, b'\n');
        }
        // One write, so a reader never sees two events interleaved.
        file.write_all(&line)?;
        drop(lock);
        Ok(record)
    }

    /// The last sequence number given out (0 for a new log).
    pub fn last_seq(&self) -> std::io::Result<u64> {
        if let Some(n) = std::fs::read_to_string(self.dir.join(SEQ_FILE)).ok().and_then(|t| t.trim().parse().ok()) {
            return Ok(n);
        }
        for path in [self.path(), self.rotated_path()] {
            if let Some(e) = last_record(&path)? {
                return Ok(e.seq);
            }
        }
        Ok(0)
    }

    /// Every event still in the log (the rotated file, then the current one)
    /// with a sequence number above `after`, oldest first.
    pub fn read_after(&self, after: u64) -> std::io::Result<Vec<EventRecord>> {
        let mut out = Vec::new();
        for path in [self.rotated_path(), self.path()] {
            let bytes = match std::fs::read(&path) {
                Ok(b) => b,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            out.extend(parse_lines(&bytes).into_iter().filter(|e| e.seq > after));
        }
        Ok(out)
    }

    /// A [`Tail`] that yields the events appended from now on.
    pub fn tail(&self) -> Tail {
        let mut t = Tail { path: self.path(), file: None, ino: None, offset: 0, partial: Vec::new() };
        if let Ok(f) = File::open(&t.path) {
            if let Ok(m) = f.metadata() {
                t.ino = Some((m.dev(), m.ino()));
                t.offset = m.len();
                t.file = Some(f);
            }
        }
        t
    }
}

/// Follows the log as it grows: call [`Tail::poll`] now and then.
///
/// It keeps the log file open and remembers how far it read, so it sees
/// each line once. When the log is rotated (the path names another file)
/// it first reads what is left of the old file, then starts on the new
/// one from the beginning; a log truncated below what was read is read again
/// from its start.
#[derive(Debug)]
pub struct Tail {
    path: PathBuf,
    file: Option<File>,
    ino: Option<(u64, u64)>,
    offset: u64,
    /// The start of a line whose end is not written yet.
    partial: Vec<u8>,
}

impl Tail {
    /// The events appended since the last call, oldest first. Errors (the
    /// directory is gone, …) read as "nothing new".
    pub fn poll(&mut self) -> Vec<EventRecord> {
        let mut out = Vec::new();
        self.read_open(&mut out);
        let now = std::fs::metadata(&self.path).ok().map(|m| (m.dev(), m.ino()));
        if now != self.ino {
            // Rotated, replaced or removed: whatever was appended to the old
            // file happened before that, so read it to the end first.
            self.read_open(&mut out);
            self.file = None;
            self.ino = None;
            self.offset = 0;
            self.partial.clear();
            if now.is_some() {
                if let Ok(f) = File::open(&self.path) {
                    if let Ok(m) = f.metadata() {
                        self.ino = Some((m.dev(), m.ino()));
                        self.file = Some(f);
                        self.read_open(&mut out);
                    }
                }
            }
        }
        out
    }

    fn read_open(&mut self, out: &mut Vec<EventRecord>) {
        let Some(f) = self.file.as_mut() else { return };
        let Ok(m) = f.metadata() else { return };
        if m.len() < self.offset {
            // Truncated in place.
            self.offset = 0;
            self.partial.clear();
        }
        if m.len() == self.offset || f.seek(SeekFrom::Start(self.offset)).is_err() {
            return;
        }
        let mut buf = Vec::new();
        let Ok(n) = f.read_to_end(&mut buf) else { return };
        self.offset += n as u64;
        self.partial.extend_from_slice(&buf);
        if let Some(end) = self.partial.iter().rposition(|&b| b == b'\n') {
            let complete: Vec<u8> = self.partial.drain(..=end).collect();
            out.extend(parse_lines(&complete));
        }
    }
}

/// The complete lines of `bytes` that are events; others (a line torn by a
/// crash, a hand edit) are skipped.
fn parse_lines(bytes: &[u8]) -> Vec<EventRecord> {
    bytes.split(|&b| b == b'\n').filter(|l| !l.is_empty()).filter_map(|l| serde_json::from_slice(l).ok()).collect()
}

fn ends_with_newline(file: &mut File) -> std::io::Result<bool> {
    use std::os::unix::fs::FileExt;
    let len = file.metadata()?.len();
    let mut last = [0u8; 1];
    file.read_exact_at(&mut last, len - 1)?;
    Ok(last[0] == b'\n')
}

/// The last event in the file at `path`, reading backwards from its end in
/// chunks until a whole line is found.
fn last_record(path: &Path) -> std::io::Result<Option<EventRecord>> {
    let mut f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let len = f.metadata()?.len();
    let mut tail: Vec<u8> = Vec::new();
    let mut start = len;
    while start > 0 {
        let chunk = 8192.min(start);
        start -= chunk;
        let mut buf = vec![0u8; chunk as usize];
        f.seek(SeekFrom::Start(start))?;
        f.read_exact(&mut buf)?;
        buf.extend_from_slice(&tail);
        tail = buf;
        // The last parseable line, once a line before it has begun.
        let body = tail.strip_suffix(b"\n").unwrap_or(&tail[..]);
        if let Some(nl) = body.iter().rposition(|&b| b == b'\n') {
            if let Some(e) = parse_lines(&body[nl + 1..]).pop() {
                return Ok(Some(e));
            }
            // A torn last line: look at the complete ones before it.
            if let Some(e) = parse_lines(&body[..nl]).pop() {
                return Ok(Some(e));
            }
        }
    }
    Ok(parse_lines(&tail).pop())
}

/// Append an event, ignoring failure: an event log that cannot be written
/// (full disk, read-only `.git`) must never make the operation it records
/// fail, and it only loses observers an event.
pub fn append_quietly(log: &EventLog, new: NewEvent) {
    let _ = log.append(new);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new(event: &str) -> NewEvent {
        NewEvent { kind: CUSTOM.into(), event: event.into(), ..Default::default() }
    }

    #[test]
    fn appends_whole_lines_with_increasing_seq() {
        let dir = tempfile::tempdir().unwrap();
        let log = EventLog::new(dir.path().join("iso"));
        assert_eq!(log.last_seq().unwrap(), 0);
        assert!(log.read_after(0).unwrap().is_empty(), "no log yet is an empty log");
        let a = log.append(new("a")).unwrap();
        let b = log.append(NewEvent { thread: Some(3), name: Some("x".into()), data: serde_json::json!({"k": 1}), ..new("b") }).unwrap();
        assert_eq!((a.seq, b.seq), (1, 2));
        let all = log.read_after(0).unwrap();
        assert_eq!(all, vec![a.clone(), b.clone()]);
        assert_eq!(log.read_after(1).unwrap(), vec![b.clone()]);
        let text = std::fs::read_to_string(log.path()).unwrap();
        assert_eq!(text.lines().count(), 2);
        assert!(text.lines().nth(1).unwrap().contains(r#""thread":3,"name":"x""#), "{text}");

        // Without events.seq the log's last line gives the number.
        std::fs::remove_file(dir.path().join("iso").join(SEQ_FILE)).unwrap();
        assert_eq!(log.append(new("c")).unwrap().seq, 3);
        // A torn last line (a crash mid-write) is skipped, and the next event
        // starts on a line of its own.
        std::fs::OpenOptions::new().append(true).open(log.path()).unwrap().write_all(br#"{"seq":99,"ki"#).unwrap();
        std::fs::remove_file(dir.path().join("iso").join(SEQ_FILE)).unwrap();
        assert_eq!(log.last_seq().unwrap(), 3);
        assert_eq!(log.append(new("d")).unwrap().seq, 4);
        let events: Vec<String> = log.read_after(0).unwrap().into_iter().map(|e| e.event).collect();
        assert_eq!(events, ["a", "b", "c", "d"]);
    }

    #[test]
    fn concurrent_appenders_get_distinct_increasing_seqs_and_whole_lines() {
        let dir = tempfile::tempdir().unwrap();
        let iso = dir.path().join("iso");
        // Threads of this process, each with its own handle (and so its own
        // lock file descriptor), and child processes appending at once.
        let threads: Vec<_> = (0..6)
            .map(|t| {
                let log = EventLog::new(&iso);
                std::thread::spawn(move || {
                    for i in 0..50 {
                        let data = serde_json::json!({ "t": t, "i": i, "pad": "x".repeat(i * 37) });
                        log.append(NewEvent { data, ..new("thread") }).unwrap();
                    }
                })
            })
            .collect();
        let children: Vec<_> = (0..3)
            .map(|c| {
                std::process::Command::new(std::env::current_exe().unwrap())
                    .args(["--exact", "eventlog::tests::child_appender", "--nocapture", "--test-threads=1"])
                    .env("ISO_TEST_EVENTLOG_DIR", &iso)
                    .env("ISO_TEST_EVENTLOG_CHILD", c.to_string())
                    .stdout(std::process::Stdio::null())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        for mut c in children {
            assert!(c.wait().unwrap().success());
        }
        let log = EventLog::new(&iso);
        let text = std::fs::read_to_string(log.path()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 6 * 50 + 3 * 50, "every append is one line");
        let events: Vec<EventRecord> = lines.iter().map(|l| serde_json::from_str(l).expect("a whole event per line")).collect();
        let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, (1..=450).collect::<Vec<u64>>(), "distinct, increasing in file order, no gaps");
        assert_eq!(events.iter().filter(|e| e.event == "child").count(), 150, "the other processes' events are there");
        assert!(events.windows(2).all(|w| w[0].at <= w[1].at));
    }

    /// Not a test on its own: the child process of the test above.
    #[test]
    fn child_appender() {
        let Ok(dir) = std::env::var("ISO_TEST_EVENTLOG_DIR") else { return };
        let log = EventLog::new(dir);
        for i in 0..50 {
            log.append(NewEvent { data: serde_json::json!({ "i": i }), ..new("child") }).unwrap();
        }
    }

    #[test]
    fn rotates_past_the_limit_and_keeps_one_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let log = EventLog::new(dir.path()).rotate_at(1000);
        for i in 0..40 {
            log.append(NewEvent { data: serde_json::json!({ "i": i, "pad": "y".repeat(60) }), ..new("r") }).unwrap();
        }
        let cur = std::fs::metadata(log.path()).unwrap().len();
        let old = std::fs::metadata(log.rotated_path()).unwrap().len();
        assert!(cur <= 1000 && old <= 1000, "{cur} {old}");
        assert!(!dir.path().join("events.jsonl.2").exists());
        // What is left is the newest events, still in order, numbered on.
        let kept = log.read_after(0).unwrap();
        assert_eq!(kept.last().unwrap().seq, 40);
        assert!(kept.len() < 40 && kept.len() >= 6, "{}", kept.len());
        assert!(kept.windows(2).all(|w| w[1].seq == w[0].seq + 1), "the two files join up");
        assert_eq!(log.read_after(38).unwrap().len(), 2);
        // The rotated file alone still gives the last number.
        std::fs::remove_file(log.path()).unwrap();
        std::fs::remove_file(dir.path().join(SEQ_FILE)).unwrap();
        let last_old = serde_json::from_str::<EventRecord>(std::fs::read_to_string(log.rotated_path()).unwrap().lines().last().unwrap()).unwrap().seq;
        assert_eq!(log.append(new("after")).unwrap().seq, last_old + 1);
    }

    #[test]
    fn tail_sees_each_new_line_once_across_rotation_and_truncation() {
        let dir = tempfile::tempdir().unwrap();
        let log = EventLog::new(dir.path()).rotate_at(600);
        log.append(new("before")).unwrap();
        let mut tail = log.tail();
        assert!(tail.poll().is_empty(), "starts at the end");
        let mut seen = Vec::new();
        for i in 0..30 {
            log.append(NewEvent { data: serde_json::json!({ "pad": "z".repeat(50) }), ..new(&format!("e{i}")) }).unwrap();
            // Poll only now and then, so rotations happen between polls.
            if i % 2 == 1 {
                seen.extend(tail.poll());
            }
        }
        seen.extend(tail.poll());
        let seqs: Vec<u64> = seen.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, (2..=31).collect::<Vec<u64>>());
        assert!(log.rotated_path().exists(), "the log did rotate");

        // A half-written line is held back until its end arrives.
        let mut f = std::fs::OpenOptions::new().append(true).open(log.path()).unwrap();
        let line = serde_json::to_string(&EventRecord {
            seq: 32,
            kind: CUSTOM.into(),
            event: "half".into(),
            thread: None,
            name: None,
            at: Utc::now(),
            data: serde_json::Value::Null,
        })
        .unwrap();
        f.write_all(&line.as_bytes()[..10]).unwrap();
        assert!(tail.poll().is_empty());
        f.write_all(&line.as_bytes()[10..]).unwrap();
        f.write_all(b"\n").unwrap();
        assert_eq!(tail.poll().iter().map(|e| e.seq).collect::<Vec<_>>(), [32]);

        // Truncated in place: read again from the start.
        std::fs::write(log.path(), b"").unwrap();
        assert!(tail.poll().is_empty());
        let e = log.append(new("after-truncate")).unwrap();
        assert_eq!(tail.poll(), vec![e]);
    }
}
