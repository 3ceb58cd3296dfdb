//! Every Docker Engine API call iso makes, through bollard, behind the
//! synchronous [`Engine`].

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bollard::errors::Error as BollardError;
use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
use bollard::models::{
    ContainerCreateBody, ContainerSummary, ContainerSummaryStateEnum, EndpointSettings, HealthConfig, HostConfig, NetworkCreateRequest, NetworkingConfig,
    PortBinding, RestartPolicy, RestartPolicyNameEnum, VolumeCreateRequest,
};
use bollard::query_parameters::{
    BuildImageOptions, CreateContainerOptions, ListContainersOptions, ListNetworksOptions, ListVolumesOptions, LogsOptions, RemoveContainerOptions,
    RemoveVolumeOptions, StopContainerOptions,
};
use bollard::Docker;
use futures_util::future::{self, FutureExt, LocalBoxFuture, Shared};
use futures_util::StreamExt;
use serde::Serialize;

use super::health;
use super::plan::{label_filters, BuildPlan, ImageSource, MountSource, Plan, PlannedService, LABEL_REPO_ID, LABEL_SERVICE, LABEL_THREAD};
use super::pull;
use super::{Error, Phase, PhaseReport, Started};
use crate::config::services::{HealthCheck, PullPolicy};

/// How many log lines a failure shows.
const LOG_LINES: usize = 20;

/// A connection to the Docker engine (DOCKER_HOST, else the local socket),
/// with the API version negotiated.
pub struct Engine {
    pub(super) rt: tokio::runtime::Runtime,
    pub(super) docker: Docker,
    host: String,
}

/// One container of a thread, as listed by the engine.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ContainerInfo {
    pub thread: Option<u32>,
    pub service: String,
    pub name: String,
    /// created, running, exited, ...
    pub state: String,
    /// Docker's own words ("Up 3 minutes", "Exited (0) 2 seconds ago").
    pub status: String,
    /// `host_ip:host_port->container_port/tcp`.
    pub ports: Vec<String>,
    /// Its `iso.repo-id` label (`None`: made by an iso before repository ids).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repo_id: Option<String>,
}

impl ContainerInfo {
    pub fn running(&self) -> bool {
        self.state == "running"
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ResourceKind {
    Container,
    Volume,
    Network,
}

impl std::fmt::Display for ResourceKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ResourceKind::Container => "container",
            ResourceKind::Volume => "volume",
            ResourceKind::Network => "network",
        })
    }
}

/// A labelled container, volume or network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Resource {
    pub kind: ResourceKind,
    pub name: String,
    pub thread: Option<u32>,
    /// Its `iso.repo-id` label (`None`: made by an iso before repository ids).
    pub repo_id: Option<String>,
}

/// Which of the resources labelled with a repository's path an operation
/// may remove: those carrying its id, and with `unlabelled` also those
/// without any id (made by an older iso; a caller allows them only for a
/// thread its registry lists). A resource with another id belongs to
/// another checkout at the same path, or another machine on a shared
/// engine, and is never touched.
#[derive(Debug, Clone, Copy)]
pub struct Scope<'a> {
    pub repo_root: &'a std::path::Path,
    pub repo_id: &'a str,
    pub unlabelled: bool,
}

impl Scope<'_> {
    fn admits(&self, labels: Option<&HashMap<String, String>>) -> bool {
        match labels.and_then(|l| l.get(LABEL_REPO_ID)) {
            Some(id) => id == self.repo_id,
            None => self.unlabelled,
        }
    }
}

/// What a teardown removed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Removed {
    pub containers: Vec<String>,
    pub volumes: Vec<String>,
    pub networks: Vec<String>,
}

impl Removed {
    pub fn is_empty(&self) -> bool {
        self.containers.is_empty() && self.volumes.is_empty() && self.networks.is_empty()
    }

    /// "2 containers, 1 volume, network iso-app-t1".
    pub fn describe(&self) -> String {
        if self.is_empty() {
            return "nothing had been created".into();
        }
        let n = |k: usize, one: &str| format!("{k} {one}{}", if k == 1 { "" } else { "s" });
        let mut parts = vec![n(self.containers.len(), "container"), n(self.volumes.len(), "volume")];
        parts.extend(self.networks.iter().map(|x| format!("network {x}")));
        parts.join(", ")
    }
}

pub(super) fn docker_err(action: impl Into<String>) -> impl FnOnce(BollardError) -> Error {
    let action = action.into();
    move |source| Error::Docker { action, source }
}

pub(super) fn status_code(e: &BollardError) -> Option<u16> {
    match e {
        BollardError::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

fn filters(repo_root: &std::path::Path, thread: Option<u32>) -> HashMap<String, Vec<String>> {
    [("label".to_string(), label_filters(repo_root, thread))].into()
}

/// The engine address in words (for errors).
pub fn engine_address() -> String {
    std::env::var("DOCKER_HOST").ok().filter(|h| !h.is_empty()).unwrap_or_else(|| "unix:///var/run/docker.sock".into())
}

/// Whether the engine runs on this machine (so its published ports are ours
/// to probe and to name the holders of).
pub fn engine_is_local() -> bool {
    let h = engine_address();
    h.starts_with("unix://") || h.starts_with('/') || h.contains("://localhost") || h.contains("://127.0.0.1")
}

impl Engine {
    /// Connect and negotiate the API version; fails with a clear error when
    /// the engine is not running.
    pub fn connect() -> Result<Engine, Error> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|source| Error::Io { action: "start the Docker client runtime".into(), source })?;
        let host = engine_address();
        let unavailable = |detail: String| Error::Unavailable { host: host.clone(), detail };
        let docker = rt.block_on(async {
            let d = Docker::connect_with_defaults().map_err(|e| unavailable(e.to_string()))?;
            match tokio::time::timeout(Duration::from_secs(10), d.negotiate_version()).await {
                Err(_) => Err(unavailable("no answer within 10 s".into())),
                Ok(Err(e)) => Err(unavailable(e.to_string())),
                Ok(Ok(d)) => Ok(d),
            }
        })?;
        Ok(Engine { rt, docker, host })
    }

    /// The address of the engine (DOCKER_HOST or the default socket).
    pub fn address(&self) -> &str {
        &self.host
    }

    /// Create (or reuse) everything in `plan` and start it: services
    /// concurrently in dependency order, each awaited until healthy.
    /// `report` hears each service's phase as it changes. On failure
    /// nothing is removed here (the caller decides); the error carries
    /// the failing service's last log lines.
    pub fn up(&self, plan: &Plan, report: PhaseReport<'_>) -> Result<Vec<Started>, Error> {
        self.rt.block_on(up(&self.docker, plan, report, UpTo::Healthy, &Default::default()))
    }

    /// Stop (without removing) the containers of `thread` that `scope`
    /// admits.
    pub fn stop(&self, scope: Scope<'_>, thread: u32, timeout: Duration) -> Result<Vec<String>, Error> {
        self.rt.block_on(async {
            let list = list_containers(&self.docker, scope.repo_root, Some(thread)).await?;
            let running: Vec<&ContainerSummary> =
                list.iter().filter(|c| c.state == Some(ContainerSummaryStateEnum::RUNNING) && scope.admits(c.labels.as_ref())).collect();
            let stops = running.iter().map(|c| stop_one(&self.docker, name_of(c), timeout));
            future::try_join_all(stops).await?;
            Ok(running.iter().map(|c| name_of(c).to_string()).collect())
        })
    }

    /// Remove every container, volume (unless `keep_volumes`) and network
    /// labelled with `repo_root` and `thread`. With `keep_volumes` the
    /// containers are stopped gracefully first (their data is kept);
    /// otherwise they are removed at once.
    /// Only what `scope` admits is touched.
    pub fn teardown(&self, scope: Scope<'_>, thread: Option<u32>, keep_volumes: bool, timeout: Duration) -> Result<Removed, Error> {
        self.rt.block_on(teardown(&self.docker, scope, thread, keep_volumes, timeout))
    }

    /// Containers of the repository that `scope` admits (all threads with
    /// `thread = None`), in one call.
    pub fn containers(&self, scope: Scope<'_>, thread: Option<u32>) -> Result<Vec<ContainerInfo>, Error> {
        self.rt.block_on(async {
            let list = list_containers(&self.docker, scope.repo_root, thread).await?;
            Ok(list.iter().filter(|c| scope.admits(c.labels.as_ref())).map(container_info).collect())
        })
    }

    /// Every labelled container, volume and network of the repository.
    pub fn resources(&self, repo_root: &std::path::Path) -> Result<Vec<Resource>, Error> {
        self.rt.block_on(async {
            let f = filters(repo_root, None);
            let (containers, volumes, networks) = future::try_join3(
                list_containers(&self.docker, repo_root, None),
                async {
                    let o = ListVolumesOptions { filters: Some(f.clone()) };
                    self.docker.list_volumes(Some(o)).await.map_err(docker_err("list volumes"))
                },
                async {
                    let o = ListNetworksOptions { filters: Some(f.clone()) };
                    self.docker.list_networks(Some(o)).await.map_err(docker_err("list networks"))
                },
            )
            .await?;
            let thread_of = |labels: Option<&HashMap<String, String>>| labels.and_then(|l| l.get(LABEL_THREAD)).and_then(|t| t.parse().ok());
            let id_of = |labels: Option<&HashMap<String, String>>| labels.and_then(|l| l.get(LABEL_REPO_ID)).cloned();
            let mut out: Vec<Resource> = containers
                .iter()
                .map(|c| Resource {
                    kind: ResourceKind::Container,
                    name: name_of(c).to_string(),
                    thread: thread_of(c.labels.as_ref()),
                    repo_id: id_of(c.labels.as_ref()),
                })
                .collect();
            for v in volumes.volumes.unwrap_or_default() {
                out.push(Resource { kind: ResourceKind::Volume, thread: thread_of(Some(&v.labels)), repo_id: id_of(Some(&v.labels)), name: v.name });
            }
            for n in networks {
                out.push(Resource {
                    kind: ResourceKind::Network,
                    thread: thread_of(n.labels.as_ref()),
                    repo_id: id_of(n.labels.as_ref()),
                    name: n.name.unwrap_or_default(),
                });
            }
            Ok(out)
        })
    }

    /// Probe each planned service once: `Ok` when healthy, else why not.
    /// Services without a check count as healthy when running.
    pub fn health(&self, plan: &Plan) -> BTreeMap<String, Result<(), String>> {
        self.rt.block_on(async {
            let checks = plan.services.iter().map(|s| async move {
                let r = match self.docker.inspect_container(&s.container, None).await {
                    Err(e) if status_code(&e) == Some(404) => Err("no container".to_string()),
                    Err(e) => Err(e.to_string()),
                    Ok(i) if !i.state.as_ref().and_then(|s| s.running).unwrap_or(false) => Err("not running".to_string()),
                    Ok(_) => probe(&self.docker, plan, s).await,
                };
                (s.name.clone(), r)
            });
            future::join_all(checks).await.into_iter().collect()
        })
    }

    /// Print the logs of `containers` (label, container name) to `out`,
    /// each line prefixed with its label when there are several; with
    /// `follow`, keep printing until interrupted.
    pub fn logs(&self, containers: &[(String, String)], follow: bool, tail: Option<usize>, out: &mut dyn Write) -> Result<(), Error> {
        let prefix = containers.len() > 1;
        let width = containers.iter().map(|(l, _)| l.len()).max().unwrap_or(0);
        self.rt.block_on(async {
            let docker = self.docker.clone().with_timeout(Duration::from_secs(365 * 24 * 3600));
            let streams = containers.iter().map(|(label, name)| {
                let opts = LogsOptions { follow, stdout: true, stderr: true, tail: tail.map_or("all".to_string(), |n| n.to_string()), ..Default::default() };
                let label = label.clone();
                docker.logs(name, Some(opts)).map(move |r| (label.clone(), r)).boxed_local()
            });
            let mut merged = futures_util::stream::select_all(streams);
            let mut partial: HashMap<String, String> = HashMap::new();
            while let Some((label, item)) = merged.next().await {
                let chunk = match item {
                    Ok(o) => o.to_string(),
                    Err(e) if status_code(&e) == Some(404) => continue,
                    Err(e) => return Err(docker_err(format!("read logs of {label}"))(e)),
                };
                let buf = partial.entry(label.clone()).or_default();
                buf.push_str(&chunk);
                while let Some(i) = buf.find('\n') {
                    let line: String = buf.drain(..=i).collect();
                    let line = line.trim_end_matches(['\n', '\r']);
                    let r = if prefix { writeln!(out, "{label:<width$} | {line}") } else { writeln!(out, "{line}") };
                    if r.is_err() {
                        return Ok(()); // reader went away (e.g. `| head`)
                    }
                }
                let _ = out.flush();
            }
            for (label, rest) in partial {
                if !rest.is_empty() {
                    let _ = if prefix { writeln!(out, "{label:<width$} | {rest}") } else { writeln!(out, "{rest}") };
                }
            }
            Ok(())
        })
    }

    /// Run `cmd` in `container`, wired to this process's stdin, stdout and
    /// stderr (with a TTY when `tty`). Returns the command's exit code.
    pub fn exec(&self, container: &str, cmd: &[String], tty: bool) -> Result<i64, Error> {
        self.rt.block_on(async {
            let docker = self.docker.clone().with_timeout(Duration::from_secs(365 * 24 * 3600));
            let opts = CreateExecOptions {
                attach_stdin: Some(true),
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                tty: Some(tty),
                cmd: Some(cmd.to_vec()),
                ..Default::default()
            };
            let exec = docker.create_exec(container, opts).await.map_err(docker_err(format!("exec in {container}")))?;
            let started = docker
                .start_exec(&exec.id, Some(StartExecOptions { detach: false, tty, output_capacity: None }))
                .await
                .map_err(docker_err(format!("exec in {container}")))?;
            if let StartExecResults::Attached { mut output, mut input } = started {
                // stdin is read on a plain thread (blocking) and handed over.
                let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(16);
                std::thread::spawn(move || {
                    let mut stdin = std::io::stdin().lock();
                    let mut buf = [0u8; 4096];
                    loop {
                        match std::io::Read::read(&mut stdin, &mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                if tx.blocking_send(buf[..n].to_vec()).is_err() {
                                    break;
                                }
                            }
                        }
                    }
                });
                let pump_in = async move {
                    use tokio::io::AsyncWriteExt;
                    while let Some(chunk) = rx.recv().await {
                        if input.write_all(&chunk).await.is_err() {
                            return;
                        }
                        let _ = input.flush().await;
                    }
                    let _ = input.shutdown().await;
                };
                let pump_out = async move {
                    while let Some(Ok(o)) = output.next().await {
                        match o {
                            bollard::container::LogOutput::StdErr { message } => {
                                let mut e = std::io::stderr().lock();
                                let _ = e.write_all(&message);
                                let _ = e.flush();
                            }
                            other => {
                                let mut o = std::io::stdout().lock();
                                let _ = o.write_all(&other.into_bytes());
                                let _ = o.flush();
                            }
                        }
                    }
                };
                // Output ending means the command ended; stdin may still block.
                tokio::select! {
                    _ = pump_out => {}
                }
                let _ = pump_in.now_or_never();
            }
            let info = docker.inspect_exec(&exec.id).await.map_err(docker_err("inspect exec"))?;
            Ok(info.exit_code.unwrap_or(0))
        })
    }
}

pub(super) fn name_of(c: &ContainerSummary) -> &str {
    c.names.as_ref().and_then(|n| n.first()).map(|n| n.trim_start_matches('/')).unwrap_or("")
}

fn container_info(c: &ContainerSummary) -> ContainerInfo {
    let labels = c.labels.clone().unwrap_or_default();
    let mut ports: Vec<String> = c
        .ports
        .iter()
        .flatten()
        .filter_map(|p| p.public_port.map(|h| format!("{}:{h}->{}/tcp", p.ip.as_deref().unwrap_or(""), p.private_port)))
        .filter(|p| !p.starts_with("::"))
        .collect();
    ports.sort();
    ports.dedup();
    ContainerInfo {
        thread: labels.get(LABEL_THREAD).and_then(|t| t.parse().ok()),
        service: labels.get(LABEL_SERVICE).cloned().unwrap_or_default(),
        name: name_of(c).to_string(),
        state: c.state.as_ref().map(|s| s.to_string()).unwrap_or_default(),
        status: c.status.clone().unwrap_or_default(),
        ports,
        repo_id: labels.get(LABEL_REPO_ID).cloned(),
    }
}

async fn list_containers(docker: &Docker, repo_root: &std::path::Path, thread: Option<u32>) -> Result<Vec<ContainerSummary>, Error> {
    let opts = ListContainersOptions { all: true, filters: Some(filters(repo_root, thread)), ..Default::default() };
    docker.list_containers(Some(opts)).await.map_err(docker_err("list containers"))
}

async fn stop_one(docker: &Docker, name: &str, timeout: Duration) -> Result<(), Error> {
    let opts = StopContainerOptions { t: Some(timeout.as_secs() as i32), signal: None };
    match docker.stop_container(name, Some(opts)).await {
        Ok(()) => Ok(()),
        Err(e) if matches!(status_code(&e), Some(304) | Some(404)) => Ok(()),
        Err(e) => Err(docker_err(format!("stop {name}"))(e)),
    }
}

async fn teardown(docker: &Docker, scope: Scope<'_>, thread: Option<u32>, keep_volumes: bool, timeout: Duration) -> Result<Removed, Error> {
    let f = filters(scope.repo_root, thread);
    let containers = list_containers(docker, scope.repo_root, thread).await?;
    // One shared future per container removal: a volume goes as soon as
    // the containers mounting it are gone (deleting a database's files is
    // the slow part of a teardown), the network once all are.
    type Removal<'a> = Shared<LocalBoxFuture<'a, Result<String, Rc<Error>>>>;
    let removals: Vec<(&ContainerSummary, Removal<'_>)> = containers
        .iter()
        .filter(|c| scope.admits(c.labels.as_ref()))
        .map(|c| {
            let fut = async move {
                let name = name_of(c).to_string();
                // Kept volumes get a graceful stop (a database flushes); a
                // container whose volumes are deleted with it has nothing to
                // save, so the forced removal kills it at once, which is what
                // lets cleanup beat `docker compose down -v`.
                if keep_volumes {
                    stop_one(docker, &name, timeout).await.map_err(Rc::new)?;
                }
                let opts = RemoveContainerOptions { force: true, v: !keep_volumes, link: false };
                match docker.remove_container(&name, Some(opts)).await {
                    Ok(()) => Ok(name),
                    Err(e) if status_code(&e) == Some(404) => Ok(name),
                    // Already being removed by someone else.
                    Err(e) if status_code(&e) == Some(409) && e.to_string().contains("already in progress") => Ok(name),
                    Err(e) => Err(Rc::new(docker_err(format!("remove container {name}"))(e))),
                }
            };
            (c, fut.boxed_local().shared())
        })
        .collect();
    let unwrap_rc = |e: Rc<Error>| Rc::try_unwrap(e).unwrap_or_else(|e| Error::Spec { service: "stack".into(), message: e.to_string() });
    let all_containers = future::try_join_all(removals.iter().map(|(_, f)| f.clone()));
    let volumes = async {
        if keep_volumes {
            return Ok(Vec::new());
        }
        let vols =
            docker.list_volumes(Some(ListVolumesOptions { filters: Some(f.clone()) })).await.map_err(docker_err("list volumes"))?.volumes.unwrap_or_default();
        let removals = vols.iter().filter(|v| scope.admits(Some(&v.labels))).map(|v| {
            let users: Vec<Removal<'_>> = removals
                .iter()
                .filter(|(c, _)| c.mounts.iter().flatten().any(|m| m.name.as_deref() == Some(v.name.as_str())))
                .map(|(_, f)| f.clone())
                .collect();
            async move {
                future::try_join_all(users).await.map_err(unwrap_rc)?;
                match docker.remove_volume(&v.name, Some(RemoveVolumeOptions { force: true })).await {
                    Ok(()) => Ok(v.name.clone()),
                    Err(e) if status_code(&e) == Some(404) => Ok(v.name.clone()),
                    Err(e) => Err(docker_err(format!("remove volume {}", v.name))(e)),
                }
            }
        });
        future::try_join_all(removals).await
    };
    let containers_then_networks = async {
        let containers = all_containers.await.map_err(unwrap_rc)?;
        let nets = docker.list_networks(Some(ListNetworksOptions { filters: Some(f.clone()) })).await.map_err(docker_err("list networks"))?;
        let mut names = Vec::new();
        for n in nets.into_iter().filter(|n| scope.admits(n.labels.as_ref())) {
            let name = n.name.unwrap_or_default();
            // By id: two networks may share a name.
            let id = n.id.unwrap_or_else(|| name.clone());
            match docker.remove_network(&id).await {
                Ok(()) => names.push(name),
                Err(e) if status_code(&e) == Some(404) => names.push(name),
                Err(e) => return Err(docker_err(format!("remove network {name}"))(e)),
            }
        }
        Ok::<_, Error>((containers, names))
    };
    let ((containers, networks), volumes) = future::try_join(containers_then_networks, volumes).await?;
    let removed = Removed { containers, volumes, networks };
    Ok(removed)
}

type Progress = Rc<RefCell<Vec<(String, Phase)>>>;

fn set_phase(state: &Progress, report: PhaseReport<'_>, service: &str, phase: Phase) {
    {
        let mut s = state.borrow_mut();
        if let Some(entry) = s.iter_mut().find(|(n, _)| n == service) {
            if entry.1 == phase {
                return;
            }
            entry.1 = phase;
        }
    }
    report(&state.borrow());
}

/// How far [`up`] goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum UpTo {
    /// Images, network, volumes and containers, nothing started.
    Created,
    Healthy,
}

/// `no_copy`: volumes a container must not fill with its image's files at
/// that path when they are empty (Docker's copy-up), as a seed fills them.
pub(super) async fn up(docker: &Docker, plan: &Plan, report: PhaseReport<'_>, upto: UpTo, no_copy: &BTreeSet<String>) -> Result<Vec<Started>, Error> {
    let state: Progress = Rc::new(RefCell::new(plan.services.iter().map(|s| (s.name.clone(), Phase::Waiting)).collect()));
    report(&state.borrow());

    // Images first: nothing is created when one is missing.
    future::try_join_all(plan.services.iter().map(|s| {
        let state = state.clone();
        async move {
            let phase = |p: Phase| set_phase(&state, report, &s.name, p);
            ensure_image(docker, s, &phase).await
        }
    }))
    .await?;

    // What exists already (`iso up` after `iso down`, or a re-run).
    let existing: HashMap<String, ContainerSummary> = {
        let opts = ListContainersOptions {
            all: true,
            filters: Some(
                [("label".to_string(), label_filters(std::path::Path::new(&plan.labels[super::plan::LABEL_REPO]), plan.labels[LABEL_THREAD].parse().ok()))]
                    .into(),
            ),
            ..Default::default()
        };
        docker.list_containers(Some(opts)).await.map_err(docker_err("list containers"))?.into_iter().map(|c| (name_of(&c).to_string(), c)).collect()
    };
    // A paused container (a seed's hold that iso was killed in) holds its
    // ports and only needs unpausing.
    let state_of = |s: &PlannedService| existing.get(&s.container).and_then(|c| c.state);
    let running = |s: &PlannedService| matches!(state_of(s), Some(ContainerSummaryStateEnum::RUNNING) | Some(ContainerSummaryStateEnum::PAUSED));

    // A port taken by another program is named before anything is created.
    if super::docker::engine_is_local() {
        for s in plan.services.iter().filter(|s| !running(s)) {
            for &(_, port) in &s.ports {
                if std::net::TcpListener::bind((plan.publish_host.as_str(), port)).is_err() {
                    return Err(Error::PortTaken { service: s.name.clone(), port, owner: String::new() });
                }
            }
        }
    }

    // Network and volumes.
    let net = NetworkCreateRequest {
        name: plan.network.clone(),
        driver: Some("bridge".into()),
        labels: Some(plan.labels.clone().into_iter().collect()),
        ..Default::default()
    };
    let volumes = plan.volumes.values().map(|name| async move {
        let req = VolumeCreateRequest { name: Some(name.clone()), labels: Some(plan.labels.clone().into_iter().collect()), ..Default::default() };
        let v = docker.create_volume(req).await.map_err(docker_err(format!("create volume {name}")))?;
        // Creating an existing volume hands back that volume.
        check_owner("volume", name, Some(&v.labels), plan)
    });
    let network = async {
        // Names are not unique to the engine (API 1.41 creates a second
        // network of the same name), so look first.
        let inspect = docker.inspect_network(&plan.network, None::<bollard::query_parameters::InspectNetworkOptions>).await;
        match inspect {
            Ok(n) => return check_owner("network", &plan.network, n.labels.as_ref(), plan),
            Err(e) if status_code(&e) == Some(404) => {}
            Err(e) => return Err(docker_err(format!("inspect network {}", plan.network))(e)),
        }
        match docker.create_network(net).await {
            Ok(_) => Ok(()),
            Err(e) if status_code(&e) == Some(409) => Ok(()),
            Err(e) => Err(docker_err(format!("create network {}", plan.network))(e)),
        }
    };
    future::try_join(network, future::try_join_all(volumes)).await?;

    // Containers, all at once.
    let creates = plan.services.iter().filter(|s| !existing.contains_key(&s.container)).map(|s| {
        let state = state.clone();
        async move {
            set_phase(&state, report, &s.name, Phase::Creating);
            create_container(docker, plan, s, no_copy).await
        }
    });
    future::try_join_all(creates).await?;
    if upto == UpTo::Created {
        return Ok(Vec::new());
    }

    // Start in dependency order: each service waits for its dependencies'
    // health, independent services go at the same time.
    type Outcome = Result<Started, Rc<Error>>;
    let mut started: BTreeMap<String, Shared<LocalBoxFuture<'_, Outcome>>> = BTreeMap::new();
    for s in &plan.services {
        let deps: Vec<(String, Shared<LocalBoxFuture<'_, Outcome>>)> =
            s.depends_on.iter().filter_map(|(d, _)| started.get(d).map(|f| (d.clone(), f.clone()))).collect();
        let state = state.clone();
        let is_running = running(s);
        let is_paused = state_of(s) == Some(ContainerSummaryStateEnum::PAUSED);
        let fut = async move {
            for (dep, f) in deps {
                if f.await.is_err() {
                    return Err(Rc::new(Error::DependencyFailed { service: s.name.clone(), dependency: dep }));
                }
            }
            let t0 = Instant::now();
            let result = async {
                if is_paused {
                    set_phase(&state, report, &s.name, Phase::Starting);
                    docker.unpause_container(&s.container).await.map_err(docker_err(format!("unpause container {}", s.container)))?;
                } else if !is_running {
                    set_phase(&state, report, &s.name, Phase::Starting);
                    start_container(docker, s).await?;
                }
                set_phase(&state, report, &s.name, Phase::Checking);
                if s.is_job(plan) {
                    wait_completed(docker, s).await
                } else {
                    wait_healthy(docker, plan, s).await
                }
            }
            .await;
            match result {
                Ok(()) => {
                    set_phase(&state, report, &s.name, Phase::Healthy);
                    Ok(Started { service: s.name.clone(), container: s.container.clone(), millis: t0.elapsed().as_millis() })
                }
                Err(e) => {
                    set_phase(&state, report, &s.name, Phase::Failed);
                    Err(Rc::new(e))
                }
            }
        }
        .boxed_local()
        .shared();
        started.insert(s.name.clone(), fut);
    }
    let all: Vec<_> = plan.services.iter().map(|s| started[&s.name].clone()).collect();
    let result = future::try_join_all(all).await;
    drop(started);
    match result {
        Ok(list) => Ok(list),
        Err(e) => Err(Rc::try_unwrap(e).unwrap_or_else(|e| Error::Spec { service: "stack".into(), message: e.to_string() })),
    }
}

/// Make `s`'s image available, as Compose does: an image that is on the
/// engine is used (`pull_policy: always` pulls it anyway), a missing one is
/// pulled, or built when the service also has `build` and the pull fails.
async fn ensure_image(docker: &Docker, s: &PlannedService, phase: &dyn Fn(Phase)) -> Result<(), Error> {
    let present = |image: String| async move {
        match docker.inspect_image(&image).await {
            Ok(_) => Ok(true),
            Err(e) if status_code(&e) == Some(404) => Ok(false),
            Err(e) => Err(docker_err(format!("inspect image {image}"))(e)),
        }
    };
    let missing = |image: &str, detail: String| Error::ImageMissing { service: s.name.clone(), image: image.to_string(), detail };
    let pull = |image: String| async move {
        phase(Phase::Pulling(String::new()));
        pull::pull(docker, &image, &|p| phase(Phase::Pulling(p))).await
    };
    match &s.image {
        ImageSource::Build(b) => build(docker, s, b, &b.tag, phase).await,
        ImageSource::Image(image) => {
            if s.pull == PullPolicy::Always || !present(image.clone()).await? {
                if s.pull == PullPolicy::Never {
                    return Err(missing(image, "pull_policy is never".into()));
                }
                pull(image.clone()).await.map_err(|m| missing(image, m))?;
            }
            Ok(())
        }
        ImageSource::ImageOrBuild(image, b) => {
            if s.pull == PullPolicy::Always || !present(image.clone()).await? {
                // Compose pulls first and builds what cannot be pulled; the
                // built image gets the `image` name, as with Compose.
                let pulled = s.pull != PullPolicy::Never && pull(image.clone()).await.is_ok();
                if !pulled {
                    build(docker, s, b, image, phase).await?;
                }
            }
            Ok(())
        }
    }
}

async fn build(docker: &Docker, s: &PlannedService, b: &BuildPlan, tag: &str, phase: &dyn Fn(Phase)) -> Result<(), Error> {
    phase(Phase::Building);
    let fail = |message: String| Error::Build { service: s.name.clone(), message };
    let mut tar = tar::Builder::new(Vec::new());
    tar.follow_symlinks(false);
    tar.append_dir_all(".", &b.context).map_err(|e| fail(format!("pack {}: {e}", b.context.display())))?;
    let body = tar.into_inner().map_err(|e| fail(e.to_string()))?;
    let opts = BuildImageOptions {
        dockerfile: b.dockerfile.clone(),
        t: Some(tag.to_string()),
        rm: true,
        buildargs: (!b.args.is_empty()).then(|| b.args.clone().into_iter().collect()),
        target: b.target.clone().unwrap_or_default(),
        ..Default::default()
    };
    let mut stream = docker.build_image(opts, None, Some(bollard::body_full(bytes::Bytes::from(body))));
    let mut last = Vec::new();
    while let Some(item) = stream.next().await {
        let info = item.map_err(|e| fail(e.to_string()))?;
        if let Some(err) = info.error_detail.and_then(|d| d.message) {
            return Err(fail(format!("{err}{}", last.iter().map(|l| format!("\n    | {l}")).collect::<String>())));
        }
        if let Some(line) = info.stream {
            let line = line.trim_end().to_string();
            if !line.is_empty() {
                last.push(line);
                if last.len() > 10 {
                    last.remove(0);
                }
            }
        }
    }
    Ok(())
}

async fn create_container(docker: &Docker, plan: &Plan, s: &PlannedService, no_copy: &BTreeSet<String>) -> Result<(), Error> {
    let port_bindings: HashMap<String, Option<Vec<PortBinding>>> = s
        .ports
        .iter()
        .map(|(c, h)| (format!("{c}/tcp"), Some(vec![PortBinding { host_ip: Some(plan.publish_host.clone()), host_port: Some(h.to_string()) }])))
        .collect();
    let binds: Vec<String> = s
        .mounts
        .iter()
        .map(|m| {
            let (src, nocopy) = match &m.source {
                MountSource::Volume { name, .. } => (name.clone(), no_copy.contains(name)),
                MountSource::Bind(p) => (p.display().to_string(), false),
            };
            let opts: Vec<&str> = [(m.read_only, "ro"), (nocopy, "nocopy")].into_iter().filter(|(on, _)| *on).map(|(_, o)| o).collect();
            if opts.is_empty() {
                format!("{src}:{}", m.target)
            } else {
                format!("{src}:{}:{}", m.target, opts.join(","))
            }
        })
        .collect();
    let x = &s.extras;
    let healthcheck = s.engine_health.as_ref().map(|h| {
        let ns = |ms: Option<u64>| ms.map(|ms| (ms * 1_000_000) as i64);
        HealthConfig {
            test: Some(h.test.clone()),
            interval: ns(h.interval_ms),
            timeout: ns(h.timeout_ms),
            retries: h.retries.map(|r| r as i64),
            start_period: ns(h.start_period_ms),
            ..Default::default()
        }
    });
    let restart_policy = s.restart.as_deref().map(|r| {
        let (name, max) = match r.split_once(':') {
            Some((n, m)) => (n, m.parse().ok()),
            None => (r, None),
        };
        let name = match name {
            "always" => RestartPolicyNameEnum::ALWAYS,
            "unless-stopped" => RestartPolicyNameEnum::UNLESS_STOPPED,
            "on-failure" => RestartPolicyNameEnum::ON_FAILURE,
            _ => RestartPolicyNameEnum::NO,
        };
        RestartPolicy { name: Some(name), maximum_retry_count: max }
    });
    let tmpfs: HashMap<String, String> = s
        .tmpfs
        .iter()
        .map(|t| match t.split_once(':') {
            Some((path, opts)) => (path.to_string(), opts.to_string()),
            None => (t.clone(), String::new()),
        })
        .collect();
    let body = ContainerCreateBody {
        image: Some(s.image.reference().to_string()),
        healthcheck,
        hostname: x.hostname.clone(),
        stop_signal: x.stop_signal.clone(),
        tty: x.tty.then_some(true),
        open_stdin: x.stdin_open.then_some(true),
        cmd: s.command.clone(),
        entrypoint: s.entrypoint.clone(),
        working_dir: s.working_dir.clone(),
        user: s.user.clone(),
        env: Some(s.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
        labels: Some(s.labels.clone().into_iter().collect()),
        exposed_ports: Some(s.ports.iter().map(|(c, _)| format!("{c}/tcp")).collect()),
        stop_timeout: Some(x.stop_timeout.unwrap_or(plan.stop_timeout.as_secs()) as i64),
        host_config: Some(HostConfig {
            init: Some(true),
            restart_policy,
            tmpfs: (!tmpfs.is_empty()).then_some(tmpfs),
            extra_hosts: (!x.extra_hosts.is_empty()).then(|| x.extra_hosts.iter().map(|h| h.replacen('=', ":", 1)).collect()),
            cap_add: (!x.cap_add.is_empty()).then(|| x.cap_add.clone()),
            cap_drop: (!x.cap_drop.is_empty()).then(|| x.cap_drop.clone()),
            privileged: x.privileged.then_some(true),
            port_bindings: Some(port_bindings),
            binds: Some(binds),
            network_mode: Some(plan.network.clone()),
            ..Default::default()
        }),
        networking_config: Some(NetworkingConfig {
            endpoints_config: Some([(plan.network.clone(), EndpointSettings { aliases: Some(vec![s.name.clone()]), ..Default::default() })].into()),
        }),
        ..Default::default()
    };
    let opts = CreateContainerOptions { name: Some(s.container.clone()), ..Default::default() };
    match docker.create_container(Some(opts), body).await {
        Ok(_) => Ok(()),
        Err(e) if status_code(&e) == Some(409) => {
            // Ours (a concurrent `iso up`), or someone else's of the same name.
            let existing = docker.inspect_container(&s.container, None).await.map_err(docker_err(format!("inspect {}", s.container)))?;
            check_owner("container", &s.container, existing.config.as_ref().and_then(|c| c.labels.as_ref()), plan)
        }
        Err(e) if status_code(&e) == Some(404) => Err(Error::ImageMissing {
            service: s.name.clone(),
            image: s.image.reference().to_string(),
            detail: "it went away while the stack was created".into(),
        }),
        Err(e) => Err(docker_err(format!("create container {}", s.container))(e)),
    }
}

/// A resource found by name must carry this thread's labels.
fn check_owner(kind: &'static str, name: &str, labels: Option<&HashMap<String, String>>, plan: &Plan) -> Result<(), Error> {
    let get = |k: &str| labels.and_then(|l| l.get(k)).cloned();
    let same = |k: &str| get(k).as_deref() == plan.labels.get(k).map(String::as_str);
    // No id label: made by an iso before repository ids, for this path and thread.
    let same_repo = get(LABEL_REPO_ID).is_none() || same(LABEL_REPO_ID);
    if same(super::plan::LABEL_REPO) && same(LABEL_THREAD) && same_repo {
        return Ok(());
    }
    let owner = match (get(super::plan::LABEL_REPO), get(LABEL_THREAD), get(LABEL_REPO_ID)) {
        (Some(repo), Some(t), Some(id)) if !same_repo => {
            format!("it belongs to thread {t} of another repository at {repo} (id {id}): an earlier checkout at this path, or another machine on this engine")
        }
        (Some(repo), Some(t), _) => format!("it belongs to thread {t} of {repo}"),
        _ => "it was not made by iso".to_string(),
    };
    Err(Error::NameConflict { kind, name: name.to_string(), owner })
}

async fn start_container(docker: &Docker, s: &PlannedService) -> Result<(), Error> {
    match docker.start_container(&s.container, None).await {
        Ok(()) => Ok(()),
        Err(e) if status_code(&e) == Some(304) => Ok(()),
        Err(e) => {
            let text = e.to_string();
            if text.contains("address already in use") || text.contains("port is already allocated") {
                let port = s.ports.iter().map(|(_, h)| *h).find(|h| text.contains(&format!(":{h}"))).or(s.ports.first().map(|(_, h)| *h)).unwrap_or(0);
                return Err(Error::PortTaken { service: s.name.clone(), port, owner: String::new() });
            }
            Err(docker_err(format!("start container {}", s.container))(e))
        }
    }
}

async fn wait_healthy(docker: &Docker, plan: &Plan, s: &PlannedService) -> Result<(), Error> {
    let t0 = Instant::now();
    let mut last: String;
    loop {
        let info = docker.inspect_container(&s.container, None).await.map_err(docker_err(format!("inspect {}", s.container)))?;
        let st = info.state.unwrap_or_default();
        if !st.running.unwrap_or(false) {
            // A restart between inspect calls is not a crash; anything else is.
            let logs = tail_logs(docker, &s.container, LOG_LINES).await;
            return Err(Error::Exited { service: s.name.clone(), code: st.exit_code.unwrap_or(-1), logs });
        }
        if s.health.is_none() {
            return Ok(());
        }
        // Healthy means usable: its own check passes and every published
        // port accepts a connection from the host (an entrypoint's
        // socket-only temporary server passes `pg_isready` before the real
        // one listens on TCP).
        match probe(docker, plan, s).await {
            Ok(()) => match published_ports_accept(plan, s).await {
                Ok(()) => return Ok(()),
                Err(m) => last = m,
            },
            Err(m) => last = m,
        }
        if t0.elapsed() >= plan.health_timeout {
            let logs = tail_logs(docker, &s.container, LOG_LINES).await;
            return Err(Error::Unhealthy { service: s.name.clone(), secs: plan.health_timeout.as_secs(), last, logs });
        }
        tokio::time::sleep(s.health_interval).await;
    }
}

async fn published_ports_accept(plan: &Plan, s: &PlannedService) -> Result<(), String> {
    for &(container, host) in &s.ports {
        health::tcp(&plan.connect_host, host).await.map_err(|m| format!("published port {host} (container port {container}): {m}"))?;
    }
    Ok(())
}

/// A one-shot job (another service waits for it with
/// `service_completed_successfully`): done when it exits with code 0.
async fn wait_completed(docker: &Docker, s: &PlannedService) -> Result<(), Error> {
    loop {
        let info = docker.inspect_container(&s.container, None).await.map_err(docker_err(format!("inspect {}", s.container)))?;
        let st = info.state.unwrap_or_default();
        if !st.running.unwrap_or(false) && st.status != Some(bollard::models::ContainerStateStatusEnum::CREATED) {
            return match st.exit_code.unwrap_or(-1) {
                0 => Ok(()),
                code => Err(Error::Exited { service: s.name.clone(), code, logs: tail_logs(docker, &s.container, LOG_LINES).await }),
            };
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One health check of `s`; services without a check pass.
async fn probe(docker: &Docker, plan: &Plan, s: &PlannedService) -> Result<(), String> {
    let port = s.ports.first().map(|(_, h)| *h);
    match (&s.health, port) {
        (None, _) => Ok(()),
        (Some(HealthCheck::Tcp), Some(p)) => health::tcp(&plan.connect_host, p).await,
        (Some(HealthCheck::Http(path)), Some(p)) => health::http(&plan.connect_host, p, path).await,
        (Some(HealthCheck::Tcp | HealthCheck::Http(_)), None) => Err("no published port to check".into()),
        (Some(HealthCheck::Command(cmd)), _) => exec_check(docker, &s.container, cmd).await,
    }
}

async fn exec_check(docker: &Docker, container: &str, cmd: &[String]) -> Result<(), String> {
    let opts = CreateExecOptions { attach_stdout: Some(true), attach_stderr: Some(true), cmd: Some(cmd.to_vec()), ..Default::default() };
    let exec = docker.create_exec(container, opts).await.map_err(|e| e.to_string())?;
    let mut text = String::new();
    if let StartExecResults::Attached { mut output, .. } = docker.start_exec(&exec.id, None).await.map_err(|e| e.to_string())? {
        while let Some(Ok(o)) = output.next().await {
            text.push_str(&o.to_string());
        }
    }
    let info = docker.inspect_exec(&exec.id).await.map_err(|e| e.to_string())?;
    match info.exit_code {
        Some(0) => Ok(()),
        code => {
            let last = text.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").trim();
            Err(format!(
                "`{}` exited with {}{}",
                cmd.join(" "),
                code.map_or("no code".into(), |c| c.to_string()),
                if last.is_empty() { String::new() } else { format!(": {last}") }
            ))
        }
    }
}

/// The last `n` lines a container wrote (stdout and stderr).
async fn tail_logs(docker: &Docker, container: &str, n: usize) -> Vec<String> {
    let opts = LogsOptions { stdout: true, stderr: true, tail: n.to_string(), ..Default::default() };
    let mut stream = docker.logs(container, Some(opts));
    let mut text = String::new();
    while let Some(Ok(o)) = stream.next().await {
        text.push_str(&o.to_string());
    }
    let lines: Vec<String> = text.lines().map(str::to_string).collect();
    lines[lines.len().saturating_sub(n)..].to_vec()
}
