//! Copying one Docker volume into a new one (seeding a thread's volumes).
//!
//! Two ways, picked per copy:
//!
//! - **on the host**, when the engine runs on this machine and both
//!   volumes' directories (`Mountpoint`, local driver) can be read here:
//!   each file is cloned with the `FICLONE` ioctl (XFS, btrfs: the copy
//!   shares the source's extents and costs almost nothing per byte), or
//!   copied (`copy_file_range` through `std::io::copy`) where the
//!   filesystem cannot clone. Modes, owners, times, hard links and devices
//!   are kept; symbolic links are recreated as links and never followed.
//! - **streamed** through the engine otherwise: two helper containers are
//!   created (never started) from an image already on the engine, one
//!   mounting the source, one the target, and the source's files go from
//!   one's archive endpoint to the other's as a tar stream, owners and
//!   modes included.
//!
//! Consistency: files copied while a database writes them are no
//! consistent copy, so the running containers that mount a source volume
//! are held still for the copy, all at once, and released after it, even
//! when a copy fails; how long is reported. Two ways ([`Hold`]):
//!
//! - **paused** (`docker pause`, the cgroup freezer; the default): every
//!   process is frozen between two instructions, so the files are what a
//!   crash at that instant leaves (nothing of the process's memory, all it
//!   wrote), the copy is crash-consistent, as a filesystem snapshot is,
//!   and a database with a journal (Postgres's WAL, InnoDB, WiredTiger)
//!   recovers from it on its first start. Connections stay open; clients
//!   only wait. The cost: recovery replays the log since the last
//!   checkpoint, and a store that keeps its data in memory (Redis without
//!   AOF) gives its last save.
//! - **stopped** (`docker stop`, the container's own timeout): a clean
//!   shutdown (Postgres writes a checkpoint, Redis saves), so the copy needs
//!   no recovery; clients are disconnected and the restart takes longer.
//!
//! An engine that cannot pause (no freezer) gets the stop.

use std::collections::{BTreeMap, HashMap};
use std::ffi::CString;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bollard::models::{ContainerCreateBody, ContainerSummaryStateEnum, HostConfig, VolumeCreateRequest};
use bollard::query_parameters::{
    CreateContainerOptions, DownloadFromContainerOptions, ListContainersOptions, RemoveContainerOptions, StopContainerOptions, UploadToContainerOptions,
};
use bollard::Docker;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use super::docker::{docker_err, engine_is_local, name_of, status_code, Engine};
use super::{Error, PhaseReport, Plan};

/// Where a helper container mounts its volume.
const HELPER_MOUNT: &str = "/iso-seed";
/// Marks the helper containers (cleanup removes them by the thread's labels
/// like any other container of the thread).
pub const LABEL_SEED_HELPER: &str = "iso.seed-helper";

/// How to copy (`ISO_SEED_COPY`: `auto`, `host` or `stream`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CopyMethod {
    /// On the host when the volumes' directories are readable here, else streamed.
    #[default]
    Auto,
    Host,
    Stream,
}

impl CopyMethod {
    /// From `ISO_SEED_COPY`; unset or empty is `auto`.
    pub fn from_env() -> Result<CopyMethod, Error> {
        match std::env::var("ISO_SEED_COPY").unwrap_or_default().as_str() {
            "" | "auto" => Ok(CopyMethod::Auto),
            "host" => Ok(CopyMethod::Host),
            "stream" => Ok(CopyMethod::Stream),
            other => Err(Error::BadSeedCopy { value: other.to_string() }),
        }
    }
}

/// Which way a volume was copied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CopyPath {
    /// On the host, every file cloned (shared extents).
    Reflink,
    /// On the host, some or all files copied byte by byte.
    Host,
    /// Through helper containers, as a tar stream.
    Stream,
}

impl std::fmt::Display for CopyPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CopyPath::Reflink => "reflink",
            CopyPath::Host => "host copy",
            CopyPath::Stream => "stream",
        })
    }
}

/// One volume to copy into a new one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VolumeCopy {
    pub source: String,
    pub target: String,
    /// Labels of this target only, over the shared ones.
    pub labels: BTreeMap<String, String>,
}

/// What one copy did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Copied {
    pub source: String,
    pub target: String,
    pub path: CopyPath,
    /// File bytes (host) or tar stream bytes (stream).
    pub bytes: u64,
    /// Regular files cloned by reflink (host path).
    pub reflinked_files: u64,
    /// Regular files copied byte by byte (host path).
    pub copied_files: u64,
    pub millis: u128,
}

/// How the running containers of a source are held still for a copy
/// (the module's doc says what each gives).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Hold {
    Paused,
    Stopped,
}

impl std::fmt::Display for Hold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Hold::Paused => "paused",
            Hold::Stopped => "stopped",
        })
    }
}

/// How [`Engine::copy_volumes`] copies: which path, how it holds the
/// source, and the images its helper containers may use (streaming).
#[derive(Debug, Clone, Copy)]
pub struct CopyHow<'a> {
    pub method: CopyMethod,
    pub hold: Hold,
    pub helper_images: &'a [String],
}

/// What [`Engine::copy_volumes`] did.
#[derive(Debug, Clone, Serialize)]
pub struct CopyReport {
    pub copies: Vec<Copied>,
    /// Containers held still for the copy and released again.
    pub held: Vec<String>,
    /// How: what was asked, or stopped when the engine could not pause.
    pub hold: Hold,
    /// How long they were held (0 when none was running).
    pub held_millis: u128,
}

/// What the copy of a source volume needs to know about it.
struct SourceInfo {
    mountpoint: Option<PathBuf>,
    /// Images of the containers that mount it (helper image candidates).
    images: Vec<String>,
}

/// A directory the host can read and write, if the volume has one.
fn host_dir(driver: &str, options: Option<&HashMap<String, String>>, mountpoint: &str) -> Option<PathBuf> {
    // A local volume with options (nfs, tmpfs, a device) is mounted only
    // while a container uses it: its directory is not the data.
    if driver != "local" || options.is_some_and(|o| !o.is_empty()) || mountpoint.is_empty() || !engine_is_local() {
        return None;
    }
    let p = PathBuf::from(mountpoint);
    fs::symlink_metadata(&p).ok().filter(|m| m.is_dir()).and_then(|_| fs::read_dir(&p).ok()).map(|_| p)
}

impl Engine {
    /// Whether the volume `name` exists.
    pub fn volume_exists(&self, name: &str) -> Result<bool, Error> {
        self.rt.block_on(async {
            match self.docker.inspect_volume(name).await {
                Ok(_) => Ok(true),
                Err(e) if status_code(&e) == Some(404) => Ok(false),
                Err(e) => Err(docker_err(format!("inspect volume {name}"))(e)),
            }
        })
    }

    /// Create each `target` volume (labelled `labels`) as a copy of its
    /// `source`, from a consistent point: the running containers mounting a
    /// source are held still (`hold`) first and released afterwards, even
    /// when a copy fails. `helper_images` are tried (after the images of the
    /// source's own containers) for the streaming path. `progress` is told
    /// what is happening ("iso-app-t1-db: 120.0 MB").
    pub fn copy_volumes(
        &self,
        copies: &[VolumeCopy],
        labels: &BTreeMap<String, String>,
        how: CopyHow<'_>,
        progress: &dyn Fn(&str),
        create_first: Option<(&Plan, PhaseReport<'_>)>,
    ) -> Result<CopyReport, Error> {
        self.rt.block_on(async {
            let docker = &self.docker;
            let mut sources = BTreeMap::new();
            for c in copies {
                let v = match docker.inspect_volume(&c.source).await {
                    Ok(v) => v,
                    Err(e) if status_code(&e) == Some(404) => return Err(Error::NoVolume { name: c.source.clone() }),
                    Err(e) => return Err(docker_err(format!("inspect volume {}", c.source))(e)),
                };
                let users = users_of(docker, &c.source, false).await?;
                let mut images: Vec<String> = users.iter().filter_map(|u| u.image.clone()).collect();
                images.dedup();
                sources.insert(c.source.clone(), SourceInfo { mountpoint: host_dir(&v.driver, Some(&v.options), &v.mountpoint), images });
            }
            // The targets first, empty; then, with `create_first`, the
            // containers of the new stack (not started, not filling the
            // targets with their images' files): done before the copy, they
            // take 0.1 s, after it up to seconds, as the engine's fsyncs
            // wait for the copy's dirty pages to reach the disk.
            let mut target_dirs = BTreeMap::new();
            for c in copies {
                let mut own = labels.clone();
                own.extend(c.labels.clone());
                target_dirs.insert(c.target.clone(), create_target(docker, &c.target, &own).await?);
            }
            if let Some((plan, report)) = create_first {
                let seeded: std::collections::BTreeSet<String> = copies.iter().map(|c| c.target.clone()).collect();
                super::docker::up(docker, plan, report, super::docker::UpTo::Created, &seeded).await?;
            }
            // Hold every running user of every source at once: one pause.
            // (A container paused already is not running: it is left as it is.)
            let mut running = Vec::new();
            for c in copies {
                for u in users_of(docker, &c.source, true).await? {
                    let name = name_of(&u).to_string();
                    if !running.contains(&name) {
                        running.push(name);
                    }
                }
            }
            let t0 = Instant::now();
            let mut hold = how.hold;
            if !running.is_empty() {
                progress(&format!("{} {} for a consistent copy", if hold == Hold::Paused { "pausing" } else { "stopping" }, running.join(", ")));
            }
            if hold == Hold::Paused && !running.is_empty() {
                let paused = futures_util::future::join_all(running.iter().map(|n| docker.pause_container(n))).await;
                if paused.iter().any(Result::is_err) {
                    // No freezer (some rootless engines), or one stopped meanwhile: stop them all instead.
                    for (n, r) in running.iter().zip(&paused) {
                        if r.is_ok() {
                            let _ = docker.unpause_container(n).await;
                        }
                    }
                    hold = Hold::Stopped;
                }
            }
            let stopped = if hold == Hold::Stopped {
                // The container's own stop timeout (a database may need it to checkpoint).
                let stops = running.iter().map(|n| async move {
                    match docker.stop_container(n, None::<StopContainerOptions>).await {
                        Ok(()) => Ok(()),
                        Err(e) if matches!(status_code(&e), Some(304) | Some(404)) => Ok(()),
                        Err(e) => Err(docker_err(format!("stop {n}"))(e)),
                    }
                });
                futures_util::future::try_join_all(stops).await.map(drop)
            } else {
                Ok(())
            };
            let result = match stopped {
                Ok(_) => {
                    let mut done = Vec::new();
                    let mut failed = None;
                    for c in copies {
                        match copy_one(docker, c, &sources[&c.source], target_dirs[&c.target].clone(), labels, how, progress).await {
                            Ok(d) => done.push(d),
                            Err(e) => {
                                failed = Some(e);
                                break;
                            }
                        }
                    }
                    failed.map_or(Ok(done), Err)
                }
                Err(e) => Err(e),
            };
            // Released whatever happened: the source keeps serving.
            let mut release_err = None;
            for n in &running {
                let released = match hold {
                    Hold::Paused => docker.unpause_container(n).await.map_err(|e| (e, "unpause")),
                    Hold::Stopped => docker.start_container(n, None).await.map_err(|e| (e, "start")),
                };
                if let Err((e, verb)) = released {
                    if status_code(&e) != Some(304) {
                        release_err.get_or_insert(docker_err(format!("{verb} {n} again after the copy"))(e));
                    }
                }
            }
            let held_millis = if running.is_empty() { 0 } else { t0.elapsed().as_millis() };
            let copies = result?;
            if let Some(e) = release_err {
                return Err(e);
            }
            Ok(CopyReport { copies, held: running, hold, held_millis })
        })
    }
}

/// A volume as listed by the engine.
#[derive(Debug, Clone, Serialize)]
pub struct VolumeInfo {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// When the engine made it (RFC 3339), if it says.
    pub created: Option<String>,
}

impl Engine {
    /// Volumes carrying every one of `labels` (`key=value` or `key`).
    pub fn volumes_labelled(&self, labels: &[String]) -> Result<Vec<VolumeInfo>, Error> {
        self.rt.block_on(async {
            let opts = bollard::query_parameters::ListVolumesOptions { filters: Some([("label".to_string(), labels.to_vec())].into()) };
            let list = self.docker.list_volumes(Some(opts)).await.map_err(docker_err("list volumes"))?.volumes.unwrap_or_default();
            let mut out: Vec<VolumeInfo> =
                list.into_iter().map(|v| VolumeInfo { name: v.name, labels: v.labels.into_iter().collect(), created: v.created_at }).collect();
            out.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(out)
        })
    }

    /// Remove volume `name` (gone already is fine). A volume a container
    /// still uses is not removed: the engine refuses, and so does this.
    pub fn remove_volume(&self, name: &str) -> Result<(), Error> {
        self.rt.block_on(async {
            match self.docker.remove_volume(name, None::<bollard::query_parameters::RemoveVolumeOptions>).await {
                Ok(()) => Ok(()),
                Err(e) if status_code(&e) == Some(404) => Ok(()),
                Err(e) => Err(docker_err(format!("remove volume {name}"))(e)),
            }
        })
    }
}

/// Containers (any, not only iso's) that mount volume `name`.
async fn users_of(docker: &Docker, name: &str, running_only: bool) -> Result<Vec<bollard::models::ContainerSummary>, Error> {
    let mut filters: HashMap<String, Vec<String>> = [("volume".to_string(), vec![name.to_string()])].into();
    if running_only {
        filters.insert("status".into(), vec!["running".into(), "restarting".into()]);
    }
    let opts = ListContainersOptions { all: true, filters: Some(filters), ..Default::default() };
    let list = docker.list_containers(Some(opts)).await.map_err(docker_err(format!("list the containers of volume {name}")))?;
    // The filter matches by name or by the mount's target path too.
    Ok(list
        .into_iter()
        .filter(|c| c.mounts.iter().flatten().any(|m| m.name.as_deref() == Some(name)))
        .filter(|c| !running_only || matches!(c.state, Some(ContainerSummaryStateEnum::RUNNING) | Some(ContainerSummaryStateEnum::RESTARTING)))
        .collect())
}

async fn create_target(docker: &Docker, name: &str, labels: &BTreeMap<String, String>) -> Result<Option<PathBuf>, Error> {
    // A target that already exists is not overwritten: it holds someone's data.
    match docker.inspect_volume(name).await {
        Ok(_) => return Err(Error::NameConflict { kind: "volume", name: name.into(), owner: "it exists already, and a seed only creates new volumes".into() }),
        Err(e) if status_code(&e) == Some(404) => {}
        Err(e) => return Err(docker_err(format!("inspect volume {name}"))(e)),
    }
    let req = VolumeCreateRequest { name: Some(name.to_string()), labels: Some(labels.clone().into_iter().collect()), ..Default::default() };
    let v = docker.create_volume(req).await.map_err(docker_err(format!("create volume {name}")))?;
    Ok(host_dir(&v.driver, Some(&v.options), &v.mountpoint))
}

async fn copy_one(
    docker: &Docker,
    c: &VolumeCopy,
    src: &SourceInfo,
    target_dir: Option<PathBuf>,
    labels: &BTreeMap<String, String>,
    how: CopyHow<'_>,
    progress: &dyn Fn(&str),
) -> Result<Copied, Error> {
    let t0 = Instant::now();
    let fail = |message: String| Error::SeedCopy { from: c.source.clone(), to: c.target.clone(), message };
    let host = match (how.method, &src.mountpoint, &target_dir) {
        (CopyMethod::Stream, _, _) => None,
        (_, Some(s), Some(t)) => Some((s.clone(), t.clone())),
        (CopyMethod::Host, _, _) => {
            return Err(fail("ISO_SEED_COPY=host, but the volumes' directories cannot be read on this machine (a remote engine, or not root)".into()))
        }
        (CopyMethod::Auto, _, _) => None,
    };
    if let Some((s, t)) = host {
        let mut last = Instant::now();
        let mut tick = |bytes: u64| {
            if last.elapsed() >= Duration::from_millis(100) {
                last = Instant::now();
                progress(&format!("{}: {} copied", c.target, megabytes(bytes)));
            }
        };
        let mut stats = Stats::default();
        copy_dir(&s, &t, &mut stats, &mut tick).map_err(|e| fail(e.to_string()))?;
        let path = if stats.copied_files == 0 && stats.reflinked_files > 0 { CopyPath::Reflink } else { CopyPath::Host };
        return Ok(Copied {
            source: c.source.clone(),
            target: c.target.clone(),
            path,
            bytes: stats.bytes,
            reflinked_files: stats.reflinked_files,
            copied_files: stats.copied_files,
            millis: t0.elapsed().as_millis(),
        });
    }
    let bytes = stream(docker, c, src, labels, how.helper_images, progress).await?;
    Ok(Copied {
        source: c.source.clone(),
        target: c.target.clone(),
        path: CopyPath::Stream,
        bytes,
        reflinked_files: 0,
        copied_files: 0,
        millis: t0.elapsed().as_millis(),
    })
}

pub(crate) fn megabytes(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

/// The streaming path: the source's tar stream from one helper container
/// into the other's.
async fn stream(
    docker: &Docker,
    c: &VolumeCopy,
    src: &SourceInfo,
    labels: &BTreeMap<String, String>,
    helper_images: &[String],
    progress: &dyn Fn(&str),
) -> Result<u64, Error> {
    let fail = |message: String| Error::SeedCopy { from: c.source.clone(), to: c.target.clone(), message };
    let mut image = None;
    for i in src.images.iter().chain(helper_images) {
        if docker.inspect_image(i).await.is_ok() {
            image = Some(i.clone());
            break;
        }
    }
    let Some(image) = image else {
        let tried: Vec<&str> = src.images.iter().chain(helper_images).map(String::as_str).collect();
        return Err(fail(format!("no image to create the helper containers from is on the engine (tried: {})", tried.join(", "))));
    };
    let from = format!("{}-seed-from", c.target);
    let to = format!("{}-seed-to", c.target);
    let result = async {
        helper(docker, &from, &image, &c.source, true, labels).await?;
        helper(docker, &to, &image, &c.target, false, labels).await?;
        let count = Arc::new(AtomicU64::new(0));
        let counter = count.clone();
        let tar = docker.download_from_container(&from, Some(DownloadFromContainerOptions { path: HELPER_MOUNT.to_string() })).map(move |chunk| {
            let chunk = chunk.map_err(io::Error::other)?;
            counter.fetch_add(chunk.len() as u64, Ordering::Relaxed);
            Ok(chunk)
        });
        // The archive's entries are `iso-seed/...`: extracted at `/` of the
        // other helper, they land in its mount.
        let opts = UploadToContainerOptions { path: "/".into(), ..Default::default() };
        let upload = docker.upload_to_container(&to, Some(opts), bollard::body_try_stream(tar));
        tokio::pin!(upload);
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        loop {
            tokio::select! {
                r = &mut upload => {
                    r.map_err(|e| fail(format!("stream through helper containers: {e}")))?;
                    break;
                }
                _ = tick.tick() => progress(&format!("{}: {} streamed", c.target, megabytes(count.load(Ordering::Relaxed)))),
            }
        }
        Ok::<u64, Error>(count.load(Ordering::Relaxed))
    }
    .await;
    for h in [&from, &to] {
        let _ = docker.remove_container(h, Some(RemoveContainerOptions { force: true, v: false, link: false })).await;
    }
    result
}

async fn helper(docker: &Docker, name: &str, image: &str, volume: &str, read_only: bool, labels: &BTreeMap<String, String>) -> Result<(), Error> {
    let mut labels: HashMap<String, String> = labels.clone().into_iter().collect();
    labels.insert(LABEL_SEED_HELPER.into(), "1".into());
    let body = ContainerCreateBody {
        image: Some(image.to_string()),
        // Never started: the archive endpoints work on a created container.
        cmd: Some(vec!["true".into()]),
        labels: Some(labels),
        network_disabled: Some(true),
        host_config: Some(HostConfig {
            binds: Some(vec![format!("{volume}:{HELPER_MOUNT}{}", if read_only { ":ro" } else { "" })]),
            network_mode: Some("none".into()),
            ..Default::default()
        }),
        ..Default::default()
    };
    // A helper left by a killed seed of the same target is ours to replace.
    let _ = docker.remove_container(name, Some(RemoveContainerOptions { force: true, v: false, link: false })).await;
    docker
        .create_container(Some(CreateContainerOptions { name: Some(name.to_string()), ..Default::default() }), body)
        .await
        .map_err(docker_err(format!("create helper container {name}")))?;
    Ok(())
}

#[derive(Debug, Default)]
struct Stats {
    bytes: u64,
    reflinked_files: u64,
    copied_files: u64,
    /// (device, inode) of files with several links to the first copy made.
    links: HashMap<(u64, u64), PathBuf>,
    /// Files made during the walk whose bytes are copied after it, in parallel.
    pending: Vec<Pending>,
}

/// A regular file created empty in the target whose bytes (and then
/// metadata) are still to be copied. Paths, not open files: a volume with
/// 100,000 files must not need 200,000 descriptors.
#[derive(Debug)]
struct Pending {
    from: PathBuf,
    to: PathBuf,
    md: fs::Metadata,
}

/// The unit of work of the parallel copy: big files are split, so one
/// 1 GiB table file keeps every core busy, not one.
const CHUNK: u64 = 64 << 20;

/// Copy the contents of directory `src` into the existing directory `dst`,
/// then give `dst` the metadata of `src`.
///
/// The walk makes the tree (directories, links, special files, empty
/// regular files, reflinks where the filesystem can); the bytes that must
/// really be copied are copied after it by one worker per core, in chunks:
/// a copy through the page cache is bound by memcpy, one core's worth.
fn copy_dir(src: &Path, dst: &Path, stats: &mut Stats, tick: &mut dyn FnMut(u64)) -> io::Result<()> {
    copy_entries(src, dst, stats, tick)?;
    let pending = std::mem::take(&mut stats.pending);
    copy_pending(&pending, CHUNK, stats.bytes, tick)?;
    for f in &pending {
        stats.bytes += f.md.len();
        set_meta(&f.to, &f.md, false).map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", f.from.display())))?;
    }
    set_meta(dst, &fs::symlink_metadata(src)?, false)
}

/// Copy the bytes of `files` (made empty by the walk), `chunk` bytes at a
/// time, on up to one thread per core; `tick` hears the bytes so far
/// (`done` before this).
fn copy_pending(files: &[Pending], chunk: u64, done: u64, tick: &mut dyn FnMut(u64)) -> io::Result<()> {
    let chunks: Vec<(usize, u64)> = files.iter().enumerate().flat_map(|(i, f)| (0..f.md.len().div_ceil(chunk)).map(move |k| (i, k * chunk))).collect();
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, 8).min(chunks.len());
    if workers == 0 {
        return Ok(());
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let copied = AtomicU64::new(0);
    std::thread::scope(|scope| {
        let work = || -> io::Result<()> {
            loop {
                let Some(&(i, off)) = chunks.get(next.fetch_add(1, Ordering::Relaxed)) else { return Ok(()) };
                let f = &files[i];
                let len = chunk.min(f.md.len() - off);
                if let Err(e) = copy_chunk(f, off, len) {
                    next.store(chunks.len(), Ordering::Relaxed); // the others stop too
                    return Err(io::Error::new(e.kind(), format!("{}: {e}", f.from.display())));
                }
                copied.fetch_add(len, Ordering::Relaxed);
            }
        };
        let handles: Vec<_> = (0..workers).map(|_| scope.spawn(work)).collect();
        while !handles.iter().all(|h| h.is_finished()) {
            tick(done + copied.load(Ordering::Relaxed));
            std::thread::sleep(Duration::from_millis(20));
        }
        handles.into_iter().try_for_each(|h| h.join().unwrap_or_else(|_| Err(io::Error::other("a copy worker panicked"))))
    })
}

/// Bytes `off..off + len` of `f.from` into `f.to`, both opened anew
/// without following a link, the source checked to be the file the walk saw.
fn copy_chunk(f: &Pending, off: u64, len: u64) -> io::Result<()> {
    let src = fs::OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW).open(&f.from)?;
    let now = src.metadata()?;
    if (now.dev(), now.ino()) != (f.md.dev(), f.md.ino()) {
        return Err(io::Error::other("replaced during the copy"));
    }
    let dst = fs::OpenOptions::new().write(true).custom_flags(libc::O_NOFOLLOW).open(&f.to)?;
    let (mut at_in, mut at_out, end) = (off, off, off + len);
    while at_in < end {
        let want = (end - at_in) as usize;
        match rustix::fs::copy_file_range(&src, Some(&mut at_in), &dst, Some(&mut at_out), want) {
            Ok(0) => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "shorter than when the copy began")),
            Ok(_) => {}
            // Filesystems (or kernels) without it: read and write.
            Err(e) if [rustix::io::Errno::XDEV, rustix::io::Errno::NOSYS, rustix::io::Errno::OPNOTSUPP, rustix::io::Errno::INVAL].contains(&e) => {
                return copy_chunk_rw(&src, &dst, at_in, end);
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

fn copy_chunk_rw(src: &fs::File, dst: &fs::File, mut at: u64, end: u64) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; (1 << 20).min((end - at) as usize)];
    while at < end {
        let want = buf.len().min((end - at) as usize);
        let n = src.read_at(&mut buf[..want], at)?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "shorter than when the copy began"));
        }
        dst.write_all_at(&buf[..n], at)?;
        at += n as u64;
    }
    Ok(())
}

fn copy_entries(src: &Path, dst: &Path, stats: &mut Stats, tick: &mut dyn FnMut(u64)) -> io::Result<()> {
    for entry in fs::read_dir(src)? {
        let entry = entry?;
        let from = entry.path();
        let to = dst.join(entry.file_name());
        let md = fs::symlink_metadata(&from)?;
        let ft = md.file_type();
        let at = |e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", from.display()));
        if ft.is_dir() {
            fs::create_dir(&to).map_err(at)?;
            copy_entries(&from, &to, stats, tick)?;
            set_meta(&to, &md, false).map_err(at)?;
            continue;
        }
        if ft.is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(&from).map_err(at)?, &to).map_err(at)?;
            set_meta(&to, &md, true).map_err(at)?;
            continue;
        }
        if md.nlink() > 1 {
            if let Some(first) = stats.links.get(&(md.dev(), md.ino())) {
                fs::hard_link(first, &to).map_err(at)?;
                continue;
            }
            stats.links.insert((md.dev(), md.ino()), to.clone());
        }
        if ft.is_file() && md.len() == 0 {
            fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&to).map_err(at)?;
        } else if ft.is_file() {
            if !clone_file(&from, &to).map_err(at)? {
                stats.copied_files += 1;
                stats.pending.push(Pending { from, to, md });
                continue; // its metadata after its bytes
            }
            stats.reflinked_files += 1;
            stats.bytes += md.len();
            tick(stats.bytes);
        } else {
            // A FIFO, socket or device node: recreated, not read.
            let c = cstr(&to)?;
            // SAFETY: `c` is a valid NUL-terminated path.
            if unsafe { libc::mknod(c.as_ptr(), md.mode() as libc::mode_t, md.rdev() as libc::dev_t) } != 0 {
                return Err(at(io::Error::last_os_error()));
            }
        }
        set_meta(&to, &md, false).map_err(at)?;
    }
    Ok(())
}

/// Create `to` and share the extents of `from` with it (`FICLONE`) where
/// the filesystem can; false when it cannot, `to` then left empty.
fn clone_file(from: &Path, to: &Path) -> io::Result<bool> {
    // O_NOFOLLOW: an entry swapped for a link since it was listed is not read.
    let src = fs::OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW).open(from)?;
    let dst = fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(to)?;
    Ok(rustix::fs::ioctl_ficlone(&dst, &src).is_ok())
}

fn cstr(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a path with a NUL byte"))
}

/// Owner, mode (not for links) and times of `md` onto `path`, never
/// following a link. The owner first: chown clears set-id bits.
fn set_meta(path: &Path, md: &fs::Metadata, link: bool) -> io::Result<()> {
    let c = cstr(path)?;
    // SAFETY: `c` is a valid NUL-terminated path.
    if unsafe { libc::lchown(c.as_ptr(), md.uid(), md.gid()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if !link {
        fs::set_permissions(path, fs::Permissions::from_mode(md.mode() & 0o7777))?;
    }
    let times = [
        libc::timespec { tv_sec: md.atime() as libc::time_t, tv_nsec: md.atime_nsec() as _ },
        libc::timespec { tv_sec: md.mtime() as libc::time_t, tv_nsec: md.mtime_nsec() as _ },
    ];
    // SAFETY: `c` is valid and `times` holds two timespecs.
    if unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), times.as_ptr(), libc::AT_SYMLINK_NOFOLLOW) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_copy_keeps_modes_times_links_and_never_follows_symlinks() {
        let t = tempfile::tempdir().unwrap();
        let (src, dst) = (t.path().join("src"), t.path().join("dst"));
        fs::create_dir_all(src.join("sub")).unwrap();
        fs::create_dir(&dst).unwrap();
        fs::write(src.join("sub/data"), b"rows").unwrap();
        fs::set_permissions(src.join("sub/data"), fs::Permissions::from_mode(0o640)).unwrap();
        fs::set_permissions(src.join("sub"), fs::Permissions::from_mode(0o700)).unwrap();
        fs::hard_link(src.join("sub/data"), src.join("twin")).unwrap();
        // A link out of the volume: copied as a link, its target untouched.
        fs::write(t.path().join("outside"), b"secret").unwrap();
        std::os::unix::fs::symlink(t.path().join("outside"), src.join("escape")).unwrap();
        let old = libc::timespec { tv_sec: 1_000_000_000, tv_nsec: 0 };
        let c = cstr(&src.join("sub/data")).unwrap();
        unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), [old, old].as_ptr(), 0) };

        let mut stats = Stats::default();
        copy_dir(&src, &dst, &mut stats, &mut |_| {}).unwrap();

        assert_eq!(fs::read(dst.join("sub/data")).unwrap(), b"rows");
        let md = fs::metadata(dst.join("sub/data")).unwrap();
        assert_eq!(md.mode() & 0o7777, 0o640);
        assert_eq!(md.mtime(), 1_000_000_000);
        assert_eq!(fs::metadata(dst.join("sub")).unwrap().mode() & 0o7777, 0o700);
        assert_eq!(fs::read_link(dst.join("escape")).unwrap(), t.path().join("outside"));
        assert!(fs::symlink_metadata(dst.join("escape")).unwrap().file_type().is_symlink());
        assert_eq!(md.ino(), fs::metadata(dst.join("twin")).unwrap().ino(), "hard links stay one file");
        assert_eq!(stats.bytes, 4);
        assert_eq!(stats.reflinked_files + stats.copied_files, 1);
        // The copy is its own: writing it leaves the source alone.
        fs::write(dst.join("sub/data"), b"mine").unwrap();
        assert_eq!(fs::read(src.join("sub/data")).unwrap(), b"rows");
    }

    #[test]
    fn big_files_are_copied_in_chunks_on_several_threads_byte_for_byte() {
        let t = tempfile::tempdir().unwrap();
        let (src, dst) = (t.path().join("src"), t.path().join("dst"));
        fs::create_dir_all(&src).unwrap();
        fs::create_dir(&dst).unwrap();
        // Sizes around the chunk: one byte short, exact, one over, many, empty.
        let sizes = [4095usize, 4096, 4097, 10 * 4096 + 7, 0];
        let mut files = Vec::new();
        for (n, size) in sizes.iter().enumerate() {
            let bytes: Vec<u8> = (0..*size).map(|i| (i * 31 + n * 7 % 251) as u8).collect();
            let (from, to) = (src.join(format!("f{n}")), dst.join(format!("f{n}")));
            fs::write(&from, &bytes).unwrap();
            fs::File::create(&to).unwrap();
            files.push((Pending { md: fs::metadata(&from).unwrap(), from, to: to.clone() }, bytes));
        }
        let pending: Vec<Pending> = files.iter().map(|(p, _)| Pending { from: p.from.clone(), to: p.to.clone(), md: p.md.clone() }).collect();
        let mut seen = 0;
        copy_pending(&pending, 4096, 100, &mut |b| seen = seen.max(b)).unwrap();
        for (p, bytes) in &files {
            assert_eq!(&fs::read(&p.to).unwrap(), bytes, "{}", p.to.display());
        }
        assert!(seen <= 100 + sizes.iter().sum::<usize>() as u64, "{seen}");

        // A source replaced after the walk saw it is refused, not copied.
        let gone = &pending[3];
        fs::rename(&gone.from, src.join("kept")).unwrap(); // (kept: its inode number is not reused)
        fs::write(&gone.from, vec![1u8; gone.md.len() as usize]).unwrap();
        let err = copy_pending(std::slice::from_ref(gone), 4096, 0, &mut |_| {}).unwrap_err();
        assert!(err.to_string().contains("replaced during the copy"), "{err}");
    }
}
