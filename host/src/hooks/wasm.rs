//! The WASM component host: wasmtime 48, WASI p2, the `iso:hooks` world.
//!
//! One engine per process. Calls run asynchronously (wasmtime's async
//! support and the async WASI bindings) under a tokio timeout of the hook's
//! `timeout`: a ticker thread bumps the epoch every [`TICK`] and the guest
//! yields to the executor at each tick, so a busy loop ends at the deadline,
//! and a blocking WASI call (a sleep, a poll on a stream) is a future that
//! the timeout drops, so it ends there too. A resource limiter per call
//! bounds memory. A plugin gets:
//! - WASI filesystem: only the directories of its [`Grants`], each
//!   preopened at its own absolute path (the worktree, or the scratch
//!   directory of a hook without one, also as `.`);
//! - WASI environment: only the thread's variables; no arguments;
//! - standard output and error: captured and sent to the hook's log;
//! - no sockets; outgoing HTTP only to `allow.hosts`;
//! - `host.exec`: only `allow.exec`.
//!
//! Compiled components are cached on disk (see [`cache_dir`]) under the
//! SHA-256 of the component and wasmtime's compatibility hash, so only the
//! first call of a plugin pays for compilation.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{Config, Engine, ResourceLimiter, Store, Trap};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

use super::payload::{Budget, CallError, CallOutcome, Level, LogFn, Payload};
use super::sandbox::{Grants, SandboxError};
use crate::config::hooks::Mode;

wasmtime::component::bindgen!({
    path: "../wit",
    world: "iso:hooks/hook",
    with: {
        "wasi:io": wasmtime_wasi::p2::bindings::io,
        "wasi:cli": wasmtime_wasi::p2::bindings::cli,
        "wasi:filesystem": wasmtime_wasi::p2::bindings::filesystem,
        "wasi:clocks": wasmtime_wasi::p2::bindings::clocks,
        "wasi:random": wasmtime_wasi::p2::bindings::random,
        "wasi:http": wasmtime_wasi_http::p2::bindings::http,
    },
    // `log` traps when the hook logs past its caps.
    imports: { "iso:hooks/host.log": trappable },
    exports: { default: async },
    require_store_data_send: true,
});

use self::iso::hooks::{host as wit_host, types as wit};

/// The contract version this host implements.
pub const WORLD_VERSION: &str = "0.1.2";
/// The export a hook component must have (any 0.1.x: wasmtime links a
/// plugin built for 0.1.0 or 0.1.1 to this 0.1.2 host by semver).
pub const HANDLER_EXPORT: &str = "iso:hooks/handler@0.1.*";

/// How often the epoch advances: the resolution of hook timeouts.
const TICK: Duration = Duration::from_millis(10);
/// The most a plugin may write to stdout or stderr in one call (its lines
/// are then logged, within the log caps).
const STDIO_LIMIT: usize = super::payload::LOG_LIMIT;

/// The process-wide engine and linker.
struct Host {
    engine: Engine,
    linker: Linker<State>,
}

fn host() -> Result<&'static Host, String> {
    static HOST: OnceLock<Result<Host, String>> = OnceLock::new();
    HOST.get_or_init(|| {
        let mut config = Config::new();
        config.wasm_component_model(true);
        config.epoch_interruption(true);
        let engine = Engine::new(&config).map_err(|e| format!("cannot start the WASM engine: {e}"))?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(|e| e.to_string())?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker).map_err(|e| e.to_string())?;
        wit_host::add_to_linker::<State, HasSelf<State>>(&mut linker, |s| s).map_err(|e| e.to_string())?;
        wit::add_to_linker::<State, HasSelf<State>>(&mut linker, |s| s).map_err(|e| e.to_string())?;
        let ticker = engine.weak();
        std::thread::Builder::new()
            .name("iso-wasm-epoch".into())
            .spawn(move || {
                while let Some(engine) = ticker.upgrade() {
                    engine.increment_epoch();
                    drop(engine);
                    std::thread::sleep(TICK);
                }
            })
            .map_err(|e| e.to_string())?;
        Ok(Host { engine, linker })
    })
    .as_ref()
    .map_err(Clone::clone)
}

/// Where compiled components are kept: `$ISO_CACHE_DIR`, else
/// `$XDG_CACHE_HOME/iso/wasm` (`~/.cache/iso/wasm`).
pub fn cache_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("ISO_CACHE_DIR").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(d).join("wasm"));
    }
    dirs::cache_dir().map(|d| d.join("iso").join("wasm"))
}

/// Whether [`load`] compiled the component or found it in the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loaded {
    Compiled,
    Cached,
}

/// Read, and compile or take from the cache, the component at `path`.
pub fn load(path: &Path) -> Result<(Component, Loaded), String> {
    let host = host()?;
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let cached = cache_dir().map(|d| d.join(cache_key(&host.engine, &bytes)));
    if let Some(file) = cached.as_ref().filter(|f| f.is_file()) {
        // SAFETY: the file was written by `precompile_component` of an
        // engine with the same compatibility hash (it is in the name), into
        // the user's own cache directory; anyone able to replace it can
        // already run code as this user. A file that fails the checks
        // wasmtime does make is simply compiled again.
        if let Ok(c) = unsafe { Component::deserialize_file(&host.engine, file) } {
            return Ok((c, Loaded::Cached));
        }
    }
    let compiled = host.engine.precompile_component(&bytes).map_err(|e| not_a_component(path, &e))?;
    if let Some(file) = cached {
        // A cache that cannot be written only costs time.
        let _ = write_atomically(&file, &compiled);
    }
    // SAFETY: these bytes were produced by this engine just now.
    let c = unsafe { Component::deserialize(&host.engine, &compiled) }.map_err(|e| format!("{}: {e}", path.display()))?;
    Ok((c, Loaded::Compiled))
}

fn not_a_component(path: &Path, e: &wasmtime::Error) -> String {
    let text = format!("{e:#}");
    if text.contains("core module")
        || text.contains("wasm module with a component parser")
        || text.contains("magic header")
        || text.contains("expected a component")
        || text.contains("unknown binary version")
    {
        format!(
            "{} is not a WebAssembly component (build plugins for wasm32-wasip2, or wrap a core module with `wasm-tools component new`): {text}",
            path.display()
        )
    } else {
        format!("{} cannot be compiled: {text}", path.display())
    }
}

fn cache_key(engine: &Engine, bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let hex: String = digest.iter().take(20).map(|b| format!("{b:02x}")).collect();
    let mut h = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut h);
    format!("{hex}-{:016x}.cwasm", h.finish())
}

fn write_atomically(file: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = file.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".tmp-{}-{:?}", std::process::id(), std::thread::current().id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, file)
}

/// What `iso plugin check` reports about a component.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Inspection {
    /// The `iso:hooks` version it was built for, if it exports a handler.
    pub world_version: Option<String>,
    pub exports: Vec<String>,
    pub imports: Vec<String>,
    /// Whether this iso can run it; else why not.
    pub compatible: Result<(), String>,
}

/// Look inside a component: which world version it implements and whether
/// this host can link it.
pub fn inspect(path: &Path) -> Result<Inspection, String> {
    let host = host()?;
    let (component, _) = load(path)?;
    let ty = component.component_type();
    let (exports, world_version) = exports_of(host, &component);
    let imports: Vec<String> = ty.imports(&host.engine).map(|(n, _)| n.to_string()).collect();
    let compatible = world_problem(&world_version, &exports)
        .map_or_else(|| host.linker.instantiate_pre(&component).map(|_| ()).map_err(|e| format!("it imports something iso does not provide: {e:#}")), Err);
    Ok(Inspection { world_version, exports, imports, compatible })
}

/// A component's export names, and the `iso:hooks` version of its handler.
fn exports_of(host: &Host, component: &Component) -> (Vec<String>, Option<String>) {
    let exports: Vec<String> = component.component_type().exports(&host.engine).map(|(n, _)| n.to_string()).collect();
    let version = exports.iter().find_map(|e| e.strip_prefix("iso:hooks/handler@").map(str::to_string));
    (exports, version)
}

/// Why a component with these exports is not a hook for this host.
fn world_problem(world_version: &Option<String>, exports: &[String]) -> Option<String> {
    match world_version {
        None => Some(format!("it does not export {HANDLER_EXPORT}: it was not built for the iso:hooks world (exports: {})", list_or_none(exports))),
        Some(v) if !semver_compatible(v) => {
            Some(format!("it was built for iso:hooks@{v}; this iso implements iso:hooks@{WORLD_VERSION} (0.1.x): rebuild it against iso's wit/"))
        }
        Some(_) => None,
    }
}

fn list_or_none(v: &[String]) -> String {
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

/// 0.x versions are compatible when the minor version matches.
fn semver_compatible(v: &str) -> bool {
    let mut parts = v.split('.');
    matches!((parts.next(), parts.next()), (Some("0"), Some("1")))
}

/// Per-call state of a store.
struct State {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    limits: Limits,
    gate: HttpGate,
    grants: Arc<Grants>,
    config_json: String,
    log: LogFn,
    budget: Budget,
    deadline: Instant,
    /// The thread's links when the call started, and those it set.
    known: std::collections::BTreeMap<String, String>,
    links: Vec<(String, String)>,
    /// `host.worktrees`: the primary's first, then the linked ones.
    worktrees: Vec<(String, String)>,
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl WasiHttpView for State {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView { ctx: &mut self.http, table: &mut self.table, hooks: &mut self.gate }
    }
}

impl wit::Host for State {}

impl wit_host::Host for State {
    fn log(&mut self, level: wit_host::Level, message: String) -> wasmtime::Result<()> {
        let level = match level {
            wit_host::Level::Debug => Level::Debug,
            wit_host::Level::Info => Level::Info,
            wit_host::Level::Warn => Level::Warn,
            wit_host::Level::Error => Level::Error,
        };
        self.budget.log(&message)?;
        (self.log)(level, &message);
        Ok(())
    }

    fn exec(&mut self, program: String, args: Vec<String>) -> Result<wit_host::CommandOutput, String> {
        let out =
            self.grants.run(&program, &args, self.deadline).inspect_err(|e| (self.log)(Level::Warn, &format!("denied: {e}"))).map_err(|e| e.to_string())?;
        Ok(wit_host::CommandOutput { exit_code: out.exit_code, stdout: out.stdout, stderr: out.stderr })
    }

    fn config(&mut self) -> String {
        self.config_json.clone()
    }

    fn set_link(&mut self, name: String, url: String) -> Result<(), String> {
        let refused = |why: String| SandboxError::BadLink { why }.to_string();
        let e = match crate::thread::link_problem(&name, &url) {
            Some(why) => refused(why),
            None => match super::payload::keep_link(&mut self.links, name, url) {
                Ok(()) => return Ok(()),
                Err(why) => refused(why),
            },
        };
        (self.log)(Level::Warn, &e);
        Err(e)
    }

    fn link(&mut self, name: String) -> Option<String> {
        let set = self.links.iter().rev().find(|(n, _)| *n == name).map(|(_, u)| u.clone());
        set.or_else(|| self.known.get(&name).cloned())
    }

    fn worktrees(&mut self) -> Vec<(String, String)> {
        self.worktrees.clone()
    }
}

/// Memory and table limits of one call; remembers whether the memory limit
/// was hit, to say so instead of "unreachable".
struct Limits {
    memory: usize,
    hit: bool,
}

impl ResourceLimiter for Limits {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.memory {
            self.hit = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= 1_000_000)
    }
}

/// Outgoing HTTP: only to `allow.hosts`, and never past the call's time.
struct HttpGate {
    grants: Arc<Grants>,
    deadline: Instant,
    denied: Arc<Mutex<Vec<String>>>,
}

impl WasiHttpHooks for HttpGate {
    fn send_request(
        &mut self,
        request: http::Request<wasmtime_wasi_http::WasiBody>,
        options: Option<wasmtime_wasi_http::RequestOptions>,
        fut: Box<dyn std::future::Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
    ) -> Box<
        dyn std::future::Future<
                Output = Result<
                    (http::Response<wasmtime_wasi_http::WasiBody>, Box<dyn std::future::Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>),
                    wasmtime_wasi_http::Error,
                >,
            > + Send,
    > {
        drop(fut);
        let uri = request.uri();
        let host = uri.host().unwrap_or("").to_string();
        let port = uri.port_u16().or(match uri.scheme_str() {
            Some("https") => Some(443),
            _ => Some(80),
        });
        if !self.grants.allows_host(&host, port) {
            let what = format!("{} {}", request.method(), uri);
            self.denied.lock().unwrap().push(what);
            return Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) });
        }
        let left = self.deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
        let cap = |d: Option<Duration>| Some(d.map_or(left, |d| d.min(left)));
        let options = options.unwrap_or_default();
        let options = wasmtime_wasi_http::RequestOptions {
            connect_timeout: cap(options.connect_timeout),
            first_byte_timeout: cap(options.first_byte_timeout),
            between_bytes_timeout: cap(options.between_bytes_timeout),
        };
        Box::new(async move {
            use http_body_util::BodyExt;
            let (res, io) = wasmtime_wasi_http::default_send_request(request, Some(options)).await?;
            Ok((res.map(BodyExt::boxed_unsync), Box::new(io) as Box<dyn std::future::Future<Output = _> + Send>))
        })
    }
}

/// Run the component at `path` for one event.
pub fn call(path: &Path, payload: &Payload, grants: &Grants, config_json: &str, log: LogFn) -> Result<CallOutcome, CallError> {
    let failed = |m: String| CallError::Failed(m);
    let host = host().map_err(failed)?;
    let (component, _) = load(path).map_err(failed)?;
    let (exports, version) = exports_of(host, &component);
    if let Some(problem) = world_problem(&version, &exports) {
        return Err(failed(format!("{} is not a hook plugin for this iso: {problem}", path.display())));
    }
    let start = Instant::now();
    let deadline = start + grants.timeout;
    let grants = Arc::new(grants.clone());

    let stdout = MemoryOutputPipe::new(STDIO_LIMIT);
    let stderr = MemoryOutputPipe::new(STDIO_LIMIT);
    let mut b = WasiCtxBuilder::new();
    b.stdout(stdout.clone()).stderr(stderr.clone());
    b.envs(&grants.env.iter().collect::<Vec<_>>());
    b.allow_tcp(false).allow_udp(false).allow_ip_name_lookup(false);
    for d in &grants.dirs {
        let perms = if d.mode == Mode::ReadOnly { FsPerms::ReadOnly } else { FsPerms::ReadWrite };
        let guest = d.path.to_string_lossy().to_string();
        b.preopened_dir(&d.path, &guest, perms).map_err(|e| failed(format!("cannot open {}: {e}", d.path.display())))?;
        if d.path == grants.worktree {
            b.preopened_dir(&d.path, ".", perms).map_err(|e| failed(format!("cannot open {}: {e}", d.path.display())))?;
        }
    }
    let denied = Arc::new(Mutex::new(Vec::new()));
    let state = State {
        wasi: b.build(),
        http: WasiHttpCtx::new(),
        table: ResourceTable::new(),
        limits: Limits { memory: usize::try_from(grants.memory).unwrap_or(usize::MAX), hit: false },
        gate: HttpGate { grants: grants.clone(), deadline, denied: denied.clone() },
        grants: grants.clone(),
        config_json: config_json.to_string(),
        log: log.clone(),
        budget: Budget::default(),
        deadline,
        known: payload.thread.links.clone(),
        links: Vec::new(),
        worktrees: {
            let primary = crate::config::PRIMARY_REPO;
            let main = payload.thread.worktrees.get(primary).cloned().unwrap_or_else(|| payload.thread.worktree_path.clone());
            std::iter::once((primary.to_string(), main))
                .chain(payload.thread.worktrees.iter().filter(|(n, _)| n.as_str() != primary).map(|(n, p)| (n.clone(), p.clone())))
                .collect()
        },
    };
    let mut store = Store::new(&host.engine, state);
    store.limiter(|s| &mut s.limits);
    // Yield to the executor at every tick, so the timeout below is checked
    // while the guest computes; it also ends blocking WASI calls.
    store.set_epoch_deadline(1);
    store.epoch_deadline_async_yield_and_update(1);

    let event = to_wit(payload);
    let timeout = grants.timeout;
    let result = wasmtime_wasi::runtime::in_tokio(async {
        let run = async {
            let pre = HookPre::new(host.linker.instantiate_pre(&component)?)?;
            let hook = pre.instantiate_async(&mut store).await?;
            hook.iso_hooks_handler().call_handle(&mut store, &event).await
        };
        tokio::time::timeout(timeout, run).await
    });

    let mut budget = std::mem::take(&mut store.data_mut().budget);
    let over = forward(&stdout, Level::Info, &*log, &mut budget).or(forward(&stderr, Level::Warn, &*log, &mut budget));
    for d in denied.lock().unwrap().iter() {
        log(Level::Warn, &format!("denied: {d} (its host is not in allow.hosts)"));
    }
    let limits = &store.data().limits;
    let outcome = match result {
        Err(_elapsed) => return Err(CallError::limit(SandboxError::Timeout { limit: timeout })),
        Ok(Ok(Ok(o))) => o,
        Ok(Ok(Err(wit::Failure::Refuse(m)))) => return Err(CallError::Refused(m)),
        // The plugin noticed the failed allocation itself.
        Ok(Ok(Err(wit::Failure::Failed(m)))) if limits.hit => {
            return Err(CallError::Failed(format!("{m} (out of memory: it reached its limit of {} MiB)", limits.memory >> 20)));
        }
        Ok(Ok(Err(wit::Failure::Failed(m)))) => return Err(CallError::Failed(m)),
        Ok(Err(e)) => return Err(describe_trap(&e, &store, &stderr, timeout)),
    };
    if let Some(e) = over {
        return Err(CallError::limit(e));
    }
    let mut env = Vec::with_capacity(outcome.env.len());
    for v in outcome.env {
        if let Some(why) = crate::envvar::name_problem(&v.name) {
            return Err(CallError::limit(SandboxError::BadVariable { name: v.name.chars().take(64).collect(), why }));
        }
        budget.env(&v.name, &v.value).map_err(CallError::limit)?;
        env.push((v.name, v.value));
    }
    for m in &outcome.messages {
        budget.message(m).map_err(CallError::limit)?;
    }
    let links = std::mem::take(&mut store.data_mut().links);
    Ok(CallOutcome { messages: outcome.messages, env, links })
}

/// Send what the plugin printed to the log, one line at a time, within the
/// log caps; the cap that was hit, if one was.
fn forward(pipe: &MemoryOutputPipe, level: Level, log: &(dyn Fn(Level, &str) + Send + Sync), budget: &mut Budget) -> Option<SandboxError> {
    let bytes = pipe.contents();
    for line in String::from_utf8_lossy(&bytes).lines().filter(|l| !l.trim().is_empty()) {
        if let Err(e) = budget.log(line) {
            return Some(e);
        }
        log(level, line);
    }
    None
}

/// A trap or link error in words.
fn describe_trap(e: &wasmtime::Error, store: &Store<State>, stderr: &MemoryOutputPipe, timeout: Duration) -> CallError {
    let err_text = String::from_utf8_lossy(&stderr.contents()).to_string();
    if store.data().limits.hit {
        return CallError::limit(SandboxError::MemoryLimit { limit: store.data().limits.memory as u64 });
    }
    if let Some(limit) = e.downcast_ref::<SandboxError>() {
        return CallError::limit(limit.clone());
    }
    let failed = CallError::Failed;
    if let Some(trap) = e.downcast_ref::<Trap>() {
        if *trap == Trap::Interrupt {
            return CallError::limit(SandboxError::Timeout { limit: timeout });
        }
        if let Some(p) = panic_message(&err_text) {
            return failed(p);
        }
        return failed(format!("trapped: {trap}"));
    }
    if let Some(p) = panic_message(&err_text) {
        return failed(p);
    }
    let text = format!("{e:#}");
    if text.contains("no exported instance named") || text.contains("iso:hooks/handler@") {
        return failed(format!("not a hook plugin: it does not export {HANDLER_EXPORT} (check it with `iso plugin check`)"));
    }
    failed(text)
}

/// `panic at src/lib.rs:10:5: boom` from a Rust guest's stderr.
fn panic_message(stderr: &str) -> Option<String> {
    let mut lines = stderr.lines();
    while let Some(line) = lines.next() {
        if let Some(i) = line.find("panicked at ") {
            let rest = &line[i + "panicked at ".len()..];
            // Rust ≥ 1.73: `panicked at src/lib.rs:10:5:` then the message.
            let (location, inline) = match rest.strip_suffix(':') {
                Some(loc) => (loc.to_string(), None),
                None => (rest.to_string(), Some(rest.to_string())),
            };
            let message = inline.map(|_| String::new()).or_else(|| lines.next().map(str::to_string)).unwrap_or_default();
            return Some(if message.is_empty() { format!("panic at {location}") } else { format!("panic at {location}: {message}") });
        }
    }
    None
}

fn to_wit(p: &Payload) -> wit::Event {
    let t = &p.thread;
    wit::Event {
        name: p.event.clone(),
        thread: wit::Thread {
            id: t.id,
            name: t.name.clone(),
            branch: t.branch.clone(),
            base: t.base.clone(),
            status: t.status.clone(),
            repo_path: t.repo_path.clone(),
            worktree_path: t.worktree_path.clone(),
            ports: t.ports.iter().map(|(n, p)| wit::Port { name: n.clone(), number: *p }).collect(),
            env: t.env.iter().map(|(n, v)| wit::EnvVar { name: n.clone(), value: v.clone() }).collect(),
            task: t.task.clone(),
            pr: t.pr,
            services: t.services.iter().map(|s| wit::Service { name: s.name.clone(), host: s.host.clone(), port: s.port }).collect(),
        },
        git: p.git.as_ref().map(|g| wit::GitSummary {
            commits_ahead: g.commits_ahead,
            commits: g.commits.clone(),
            files_changed: g.files_changed.clone(),
            uncommitted: g.uncommitted.clone(),
        }),
        payload: p.payload.clone(),
        messages: p.messages.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panics_are_put_in_words() {
        let s = "thread '<unnamed>' panicked at src/lib.rs:10:5:\nboom from the plugin\nnote: run with `RUST_BACKTRACE=1`";
        assert_eq!(panic_message(s).unwrap(), "panic at src/lib.rs:10:5: boom from the plugin");
        assert_eq!(panic_message("all fine"), None);
    }

    #[test]
    fn versions_of_the_world() {
        assert!(semver_compatible("0.1.0"));
        assert!(semver_compatible("0.1.7"));
        assert!(!semver_compatible("0.2.0"));
        assert!(!semver_compatible("1.0.0"));
    }

    #[test]
    fn a_core_module_is_not_a_component() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("core.wasm");
        // The smallest core module: magic and version 1.
        std::fs::write(&f, b"\0asm\x01\0\0\0").unwrap();
        let e = load(&f).unwrap_err();
        assert!(e.contains("not a WebAssembly component"), "{e}");
    }
}
