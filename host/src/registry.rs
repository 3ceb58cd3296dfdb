//! The registry: one TOML file per repository that records every thread.
//!
//! It lives at `<git common dir>/iso/registry.toml` (usually
//! `.git/iso/registry.toml`), which every worktree of the repository finds
//! and which git never tracks. Every change takes an exclusive lock on
//! `registry.lock` beside it, re-reads the file, applies the change and
//! writes a temporary file that is fsynced and renamed over the old one, so
//! concurrent iso processes serialise and a crash at any moment leaves either
//! the old or the new registry. Readers need no lock: rename is atomic.
//! (The mechanism is [`crate::lockedfile`], shared with the port ledger.)
//! Lock order: a process that needs both takes the per-user ledger's lock
//! first, then this one (`iso init` reserving a port block), never the
//! other way round, so two processes can never wait for each other.
//!
//! `repo-id` beside it holds the repository's identity ([`RepoIdentity`]),
//! made once under the same lock.
//!
//! Parsing TOML is the slow part of a read (about 12 ms for 200 threads), so
//! every write also leaves `registry.cache.json`: the same data as JSON,
//! tagged with a hash of the exact TOML bytes it was made from. A reader
//! uses it only when that hash matches the TOML it just read, so the TOML
//! file stays the single source of truth: a hand edit, a torn or a stale
//! cache all fall back to parsing the TOML.
//!
//! A long-lived process (`iso serve`) reads through [`Registry::snapshot`]:
//! the data last read stays in memory with the file's stamp
//! ([`crate::stamp`]) and is read again only when the file changed, so a
//! listing costs a `stat` instead of a read and a parse.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::error::{Diagnostic, ErrorKind};
use crate::lockedfile::{self, FileError};
use crate::stamp::FileStamp;
use crate::thread::ThreadRecord;

/// The registry format this build reads and writes.
pub const SCHEMA_VERSION: u32 = 1;
/// How many removed threads are kept for `iso list --all`.
pub const REMOVED_KEPT: usize = 200;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RegistryData {
    pub schema: u32,
    /// Threads that hold (or are acquiring) a worktree and a port block.
    #[serde(default)]
    pub threads: Vec<ThreadRecord>,
    /// Cleaned-up threads, newest last.
    #[serde(default)]
    pub removed: Vec<ThreadRecord>,
}

impl Default for RegistryData {
    fn default() -> Self {
        RegistryData { schema: SCHEMA_VERSION, threads: Vec::new(), removed: Vec::new() }
    }
}

impl RegistryData {
    pub fn thread(&self, id: u32) -> Option<&ThreadRecord> {
        self.threads.iter().find(|t| t.id == id)
    }

    pub fn thread_mut(&mut self, id: u32) -> Option<&mut ThreadRecord> {
        self.threads.iter_mut().find(|t| t.id == id)
    }

    /// Take thread `id` out of the live list.
    pub fn take(&mut self, id: u32) -> Option<ThreadRecord> {
        let pos = self.threads.iter().position(|t| t.id == id)?;
        Some(self.threads.remove(pos))
    }

    /// Move a record into the removed list, keeping the list bounded.
    pub fn archive(&mut self, record: ThreadRecord) {
        self.removed.push(record);
        if self.removed.len() > REMOVED_KEPT {
            let excess = self.removed.len() - REMOVED_KEPT;
            self.removed.drain(..excess);
        }
    }
}

#[derive(Debug, Error)]
pub enum RegistryError {
    #[error("registry {}: {action}: {source}", path.display())]
    Io { path: PathBuf, action: &'static str, source: std::io::Error },
    #[error("registry {} is not valid at line {line}: {message}", path.display())]
    Corrupt { path: PathBuf, line: usize, message: String },
    #[error("registry {} has schema {found}, newer than this iso understands ({SCHEMA_VERSION})", path.display())]
    TooNew { path: PathBuf, found: u32 },
    #[error("cannot encode the registry: {0}")]
    Encode(#[from] toml::ser::Error),
}

impl From<FileError> for RegistryError {
    fn from(e: FileError) -> RegistryError {
        RegistryError::Io { path: e.path, action: e.action, source: e.source }
    }
}

impl Diagnostic for RegistryError {
    fn kind(&self) -> ErrorKind {
        match self {
            RegistryError::Corrupt { .. } | RegistryError::TooNew { .. } => ErrorKind::Config,
            _ => ErrorKind::Internal,
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            RegistryError::Corrupt { .. } => Some("repair that line by hand, or move the file away and run `iso doctor` to see what is left".into()),
            RegistryError::TooNew { .. } => Some("upgrade iso (`cargo install --path host`)".into()),
            _ => None,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            RegistryError::Corrupt { .. } | RegistryError::TooNew { .. } => "registry",
            _ => "internal",
        }
    }
}

/// The registry data last read, and the file's stamp then.
type Memo = (FileStamp, Arc<RegistryData>);

/// Handle on a repository's registry files.
#[derive(Debug, Clone)]
pub struct Registry {
    dir: PathBuf,
    /// The data last read or written, with the stamp the file had then.
    memo: Arc<Mutex<Option<Memo>>>,
}

impl Registry {
    /// A registry kept in `dir` (created on first write).
    pub fn new(dir: impl Into<PathBuf>) -> Registry {
        Registry { dir: dir.into(), memo: Arc::default() }
    }

    /// The registry as it is now, shared: from memory when the file has not
    /// changed since this handle last read or wrote it.
    pub fn snapshot(&self) -> Result<Arc<RegistryData>, RegistryError> {
        // Stamp first, then read: a write in between makes the next stamp
        // differ, so the memo is never newer-looking than what it holds.
        let stamp = FileStamp::of(&self.path());
        let memo = self.memo.lock().unwrap_or_else(|p| p.into_inner());
        if let (Some(now), Some((then, data))) = (stamp, memo.as_ref()) {
            if now == *then {
                return Ok(Arc::clone(data));
            }
        }
        drop(memo);
        let data = Arc::new(self.read()?);
        if let Some(now) = stamp {
            *self.memo.lock().unwrap_or_else(|p| p.into_inner()) = Some((now, Arc::clone(&data)));
        }
        Ok(data)
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join("registry.toml")
    }

    fn lock_path(&self) -> PathBuf {
        self.dir.join("registry.lock")
    }

    fn cache_path(&self) -> PathBuf {
        self.dir.join("registry.cache.json")
    }

    /// Read the current registry (a copy to change). A missing file is an
    /// empty registry.
    pub fn load(&self) -> Result<RegistryData, RegistryError> {
        Ok(RegistryData::clone(&*self.snapshot()?))
    }

    /// Read the file (through the JSON cache when it matches).
    fn read(&self) -> Result<RegistryData, RegistryError> {
        let path = self.path();
        let Some(src) = lockedfile::read_optional(&path)? else { return Ok(RegistryData::default()) };
        if let Some(data) = self.read_cache(&src) {
            return Ok(data);
        }
        parse(&path, &src)
    }

    /// The cached data, if the cache was made from exactly `toml_src`.
    fn read_cache(&self, toml_src: &str) -> Option<RegistryData> {
        let bytes = std::fs::read(self.cache_path()).ok()?;
        let cache: Cache = serde_json::from_slice(&bytes).ok()?;
        (cache.toml_len == toml_src.len() && cache.toml_hash == content_hash(toml_src) && cache.data.schema == SCHEMA_VERSION).then_some(cache.data)
    }

    /// Best effort: a missing or failed cache only makes reads slower.
    fn write_cache(&self, toml_src: &str, data: &RegistryData) {
        let cache = CacheRef { toml_hash: content_hash(toml_src), toml_len: toml_src.len(), data };
        let Ok(json) = serde_json::to_vec(&cache) else { return };
        let tmp = self.dir.join(format!("registry.cache.json.tmp.{}", std::process::id()));
        if std::fs::write(&tmp, json).is_err() || std::fs::rename(&tmp, self.cache_path()).is_err() {
            let _ = std::fs::remove_file(&tmp);
            let _ = std::fs::remove_file(self.cache_path());
        }
    }

    /// Apply `change` under the exclusive lock and persist the result
    /// atomically. If `change` fails nothing is written.
    pub fn update<T, E>(&self, change: impl FnOnce(&mut RegistryData) -> Result<T, E>) -> Result<T, E>
    where
        E: From<RegistryError>,
    {
        let _lock = self.lock()?;
        // Read from the file, not the memo: a stamp can in theory repeat
        // (an inode reused within one clock tick, the same size), which a
        // listing may survive but a change must never be based on.
        let mut data = self.read()?;
        let out = change(&mut data)?;
        // Bounded however the change (or an older iso) filled them.
        for t in data.threads.iter_mut().chain(data.removed.iter_mut()) {
            t.trim_history();
        }
        self.write(&data)?;
        if let Some(now) = FileStamp::of(&self.path()) {
            *self.memo.lock().unwrap_or_else(|p| p.into_inner()) = Some((now, Arc::new(data)));
        }
        Ok(out)
    }

    fn write(&self, data: &RegistryData) -> Result<(), RegistryError> {
        let text = format!(
            "# iso thread registry; written by iso, safe to read.\n# Edit only with `iso update` / `iso doctor` unless you know what you do.\n{}",
            toml::to_string(data)?
        );
        lockedfile::write_atomic(&self.path(), text.as_bytes())?;
        self.write_cache(&text, data);
        Ok(())
    }

    fn identity_path(&self) -> PathBuf {
        self.dir.join("repo-id")
    }

    /// The repository's identity, if it has one yet.
    pub fn read_identity(&self) -> Result<Option<RepoIdentity>, RegistryError> {
        let path = self.identity_path();
        match lockedfile::read_optional(&path)? {
            None => Ok(None),
            Some(text) => RepoIdentity::parse(&text).map(Some).ok_or_else(|| RegistryError::Corrupt {
                path,
                line: 1,
                message: "expected `id = \"<hex>\"` and `created = \"<RFC 3339 time>\"`".into(),
            }),
        }
    }

    /// The repository's identity: read, or made once under the registry
    /// lock (so concurrent first uses agree). A new one takes the id
    /// `recovered` gives, when it gives one (the id recorded beside the
    /// worktrees, after iso's directory was deleted), else a random one.
    pub fn identity(&self, recovered: impl FnOnce() -> Option<String>) -> Result<RepoIdentity, RegistryError> {
        if let Some(id) = self.read_identity()? {
            return Ok(id);
        }
        let _lock = self.lock()?;
        if let Some(id) = self.read_identity()? {
            return Ok(id);
        }
        let id = RepoIdentity { id: recovered().filter(|id| is_repo_id(id)).unwrap_or_else(random_id), created: Utc::now() };
        lockedfile::write_atomic(&self.identity_path(), id.render().as_bytes())?;
        Ok(id)
    }

    fn lock(&self) -> Result<lockedfile::Lock, RegistryError> {
        Ok(lockedfile::lock(&self.lock_path())?)
    }
}

/// A repository's identity: a random id made once, kept in
/// `<git common dir>/iso/repo-id`. Every Docker resource and every port
/// lease iso makes for the repository carries the id, so a new checkout at
/// the same path (or another machine using the same path on a shared
/// engine) is never taken for this one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepoIdentity {
    /// 32 hex digits.
    pub id: String,
    /// When the id was made: threads older than it were made by an iso
    /// that did not label resources with it.
    pub created: DateTime<Utc>,
}

impl RepoIdentity {
    fn parse(text: &str) -> Option<RepoIdentity> {
        let id: RepoIdentity = toml::from_str(text).ok()?;
        is_repo_id(&id.id).then_some(id)
    }

    fn render(&self) -> String {
        format!(
            "# this repository's identity for iso: labels its Docker resources and port leases\nid = \"{}\"\ncreated = \"{}\"\n",
            self.id,
            self.created.to_rfc3339()
        )
    }
}

/// Whether `s` has the shape of a repository id (hex, 16 to 64 digits).
pub fn is_repo_id(s: &str) -> bool {
    (16..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// 128 random bits from the kernel, in hex. (No crate: one read of
/// /dev/urandom is all it takes on the systems iso runs on.)
fn random_id() -> String {
    let mut bytes = [0u8; 16];
    let read = std::fs::File::open("/dev/urandom").and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes));
    if read.is_err() {
        // Never expected; still unique enough per machine and moment.
        let now = Utc::now().timestamp_nanos_opt().unwrap_or_default() as u128;
        bytes = (now ^ ((std::process::id() as u128) << 64)).to_le_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[derive(Deserialize)]
struct Cache {
    toml_hash: u64,
    toml_len: usize,
    data: RegistryData,
}

#[derive(Serialize)]
struct CacheRef<'a> {
    toml_hash: u64,
    toml_len: usize,
    data: &'a RegistryData,
}

/// A hash of the registry text. Only compared with hashes made by the same
/// kind of process moments before; a different hasher in another build just
/// means a cache miss.
fn content_hash(src: &str) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    src.hash(&mut h);
    h.finish()
}

fn parse(path: &Path, src: &str) -> Result<RegistryData, RegistryError> {
    #[derive(Deserialize)]
    struct Header {
        schema: Option<u32>,
    }
    let corrupt = |e: toml::de::Error| {
        let at = e.span().map_or(0, |s| s.start).min(src.len());
        RegistryError::Corrupt { path: path.to_path_buf(), line: src[..at].matches('\n').count() + 1, message: e.message().trim().to_string() }
    };
    // Look at the schema first so a newer file gets the right message
    // instead of a confusing field error.
    let header: Header = toml::from_str(src).map_err(corrupt)?;
    match header.schema {
        Some(found) if found > SCHEMA_VERSION => Err(RegistryError::TooNew { path: path.to_path_buf(), found }),
        _ => toml::from_str(src).map_err(corrupt),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::thread::{PortRange, Step, ThreadStatus};
    use chrono::Utc;

    fn record(id: u32) -> ThreadRecord {
        let now = Utc::now();
        let mut r = ThreadRecord {
            id,
            name: format!("t{id}"),
            branch: format!("thread-{id}-t{id}"),
            base: "main".into(),
            status: ThreadStatus::Active,
            worktree: PathBuf::from(format!("/r/.worktrees/thread-{id}")),
            ports: [("api".to_string(), 10102)].into(),
            port_block: PortRange { start: 10100, end: 10199 },
            env_file: PathBuf::from("/r/.worktrees/thread-1/.env.thread"),
            task: Some("say \"hi\"\nnewline".into()),
            pr: Some(12),
            created: now,
            updated: now,
            created_branch: true,
            error: None,
            owner: None,
            steps: vec![Step::Branch { name: "b".into() }, Step::Worktree { name: "thread-1".into(), path: "/p".into() }],
            history: Vec::new(),
            links: Default::default(),
            agent: None,
            last_activity: None,
            repos: Default::default(),
        };
        r.record("created", "from main");
        r
    }

    #[test]
    fn round_trips_through_toml() {
        let dir = tempfile::tempdir().unwrap();
        let reg = Registry::new(dir.path());
        assert_eq!(reg.load().unwrap(), RegistryData::default());
        reg.update(|d| {
            d.threads.push(record(1));
            d.threads.push(record(2));
            Ok::<_, RegistryError>(())
        })
        .unwrap();
        let data = reg.load().unwrap();
        assert_eq!(data.threads, vec![record_like(&data.threads[0], 1), record_like(&data.threads[1], 2)]);
        assert_eq!(data.threads[0].task.as_deref(), Some("say \"hi\"\nnewline"));
        // No temporary files left behind.
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert!(names.iter().all(|n| !n.to_string_lossy().contains(".tmp.")), "{names:?}");
    }

    fn record_like(actual: &ThreadRecord, id: u32) -> ThreadRecord {
        let mut r = record(id);
        r.created = actual.created;
        r.updated = actual.updated;
        r.history = actual.history.clone();
        r
    }

    #[test]
    fn cache_is_used_only_for_the_exact_toml_it_was_made_from() {
        let dir = tempfile::tempdir().unwrap();
        let reg = Registry::new(dir.path());
        reg.update(|d| {
            d.threads.push(record(1));
            Ok::<_, RegistryError>(())
        })
        .unwrap();
        assert!(reg.cache_path().exists());
        let src = std::fs::read_to_string(reg.path()).unwrap();
        assert_eq!(reg.read_cache(&src).unwrap(), reg.load().unwrap());

        // A hand edit of the TOML wins over the cache.
        std::fs::write(reg.path(), src.replace("name = \"t1\"", "name = \"edited\"")).unwrap();
        assert_eq!(reg.load().unwrap().threads[0].name, "edited");
        // A torn cache is ignored.
        std::fs::write(reg.cache_path(), "{\"toml_hash\": 1").unwrap();
        assert_eq!(reg.load().unwrap().threads[0].name, "edited");
        // A cache whose data disagrees but whose hash matches is impossible
        // unless forged; a stale one (other hash) is ignored.
        reg.update(|d| {
            d.threads[0].name = "renamed".into();
            Ok::<_, RegistryError>(())
        })
        .unwrap();
        std::fs::write(reg.path(), std::fs::read_to_string(reg.path()).unwrap().replace("renamed", "by-hand")).unwrap();
        assert_eq!(reg.load().unwrap().threads[0].name, "by-hand");
    }

    #[test]
    fn the_identity_is_made_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let reg = Registry::new(dir.path());
        assert_eq!(reg.read_identity().unwrap(), None);
        let first = reg.identity(|| None).unwrap();
        assert!(is_repo_id(&first.id), "{first:?}");
        assert_eq!(reg.identity(|| Some("ab".repeat(16))).unwrap(), first, "an existing id is never replaced");
        assert_eq!(Registry::new(dir.path()).read_identity().unwrap(), Some(first.clone()));
        // Another repository gets another id; a recovered id is taken as it is.
        let other = tempfile::tempdir().unwrap();
        assert_ne!(Registry::new(other.path()).identity(|| None).unwrap().id, first.id);
        let third = tempfile::tempdir().unwrap();
        assert_eq!(Registry::new(third.path()).identity(|| Some("cd".repeat(16))).unwrap().id, "cd".repeat(16));
        // A damaged file is an error, not a silently new identity.
        std::fs::write(dir.path().join("repo-id"), "id = 7\n").unwrap();
        assert!(matches!(reg.read_identity(), Err(RegistryError::Corrupt { .. })));
    }

    #[test]
    fn failed_change_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let reg = Registry::new(dir.path());
        let res: Result<(), RegistryError> = reg.update(|d| {
            d.threads.push(record(1));
            Err(RegistryError::Corrupt { path: "x".into(), line: 1, message: "no".into() })
        });
        assert!(res.is_err());
        assert!(reg.load().unwrap().threads.is_empty());
    }

    #[test]
    fn corrupt_and_newer_files_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let reg = Registry::new(dir.path());
        std::fs::write(reg.path(), "schema = 1\n[[threads]]\nid = \"x\"\n").unwrap();
        let err = reg.load().unwrap_err();
        assert!(matches!(err, RegistryError::Corrupt { .. }), "{err}");
        std::fs::write(reg.path(), "schema = 99\n").unwrap();
        assert!(matches!(reg.load().unwrap_err(), RegistryError::TooNew { found: 99, .. }));
    }

    #[test]
    fn concurrent_updates_do_not_lose_writes() {
        let dir = tempfile::tempdir().unwrap();
        let handles: Vec<_> = (1..=16)
            .map(|id| {
                let reg = Registry::new(dir.path());
                std::thread::spawn(move || {
                    reg.update(|d| {
                        d.threads.push(record(id));
                        Ok::<_, RegistryError>(())
                    })
                    .unwrap()
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let mut ids: Vec<_> = Registry::new(dir.path()).load().unwrap().threads.iter().map(|t| t.id).collect();
        ids.sort();
        assert_eq!(ids, (1..=16).collect::<Vec<_>>());
    }
}
