//! The Rhai host: hook scripts with the same powers as WASM plugins.
//!
//! A script sees these constants: `event` (the event's name), `thread` (a
//! map like the WIT `thread` record), `config` (its `config` table),
//! `git` (pre-cleanup: a map, else `()`), `payload` (custom events: the
//! JSON text, else `()`) and `messages` (of earlier hooks). It may call:
//!
//! | function | does |
//! |---|---|
//! | `log(text)`, `log(level, text)` | a line in iso's log (`print`/`debug` land there too) |
//! | `message(text)` | a message for the user and the thread's history |
//! | `env_set(name, value)` | a variable for `.env.thread` (post-init, post-up) |
//! | `exec(program, [args])` | run an `allow.exec` program: `#{code, stdout, stderr}` |
//! | `read_file(path)`, `write_file(path, text)`, `file_exists(path)`, `remove_file(path)`, `rename_file(from, to)` | files in granted directories (relative paths start at the worktree, or at the hook's scratch directory while there is none) |
//! | `http_post(url, body)`, `http_post(url, body, headers)` | POST a string or map (as JSON) to an `allow.hosts` host, with a map of extra headers: `#{status, body}` (a redirect is not followed: `#{status, body, location}`) |
//! | `set_link(name, url)`, `link(name)` | set and read the thread's links (`chat`, …), kept on its record |
//! | `parse_json(text)` | a map/array from JSON |
//! | `refuse(reason)` | refuse the operation (pre-init, pre-cleanup) |
//! | `throw "…"` | fail |
//!
//! Limits: operations, call depth, expression depth, string/array/map
//! sizes, the hook's timeout as a wall-clock limit, and the output caps of
//! [`super::payload`] (messages, log lines, variables). There is no `eval`,
//! and `import` only loads scripts from inside the hooks directory.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use rhai::module_resolvers::FileModuleResolver;
use rhai::{Dynamic, Engine, EvalAltResult, Map, ModuleResolver, Position, Scope};

use super::payload::{Budget, CallError, CallOutcome, Level, Payload};
use super::sandbox::{size, Grants, SandboxError};
use crate::rooted::Root;

/// Operations one call may take (a guard besides the wall clock).
const MAX_OPERATIONS: u64 = 2_000_000_000;
/// The longest string a script may build, whatever its `memory`.
const MAX_STRING: usize = 64 << 20;
const MAX_ARRAY: usize = 1_000_000;
const MAX_MAP: usize = 100_000;

/// What `refuse()` throws, so it can be told from other errors.
const REFUSE_MARK: &str = "__iso_refuse__";

#[derive(Default)]
struct Collected {
    messages: Vec<String>,
    env: Vec<(String, String)>,
    links: Vec<(String, String)>,
    budget: Budget,
    /// The first output cap `print`/`debug` hit (they cannot fail on the spot).
    overflow: Option<SandboxError>,
}

impl Collected {
    /// Whether `line` may still be logged; past a cap, remembers why not.
    fn may_log(&mut self, line: &str) -> Result<(), SandboxError> {
        if let Some(e) = &self.overflow {
            return Err(e.clone());
        }
        self.budget.log(line).inspect_err(|e| self.overflow = Some(e.clone()))
    }
}

type Log = super::payload::LogFn;

/// Run the script at `path` for one event. `hooks_dir` bounds `import`.
pub fn call(path: &Path, display: &str, hooks_dir: &Path, payload: &Payload, grants: &Grants, config_json: &str, log: Log) -> Result<CallOutcome, CallError> {
    let source = std::fs::read_to_string(path).map_err(|e| CallError::Failed(format!("cannot read {}: {e}", path.display())))?;
    let deadline = Instant::now() + grants.timeout;
    let collected = Rc::new(RefCell::new(Collected::default()));
    let mut engine = engine(grants, hooks_dir, deadline, log.clone(), collected.clone());
    links(&mut engine, &payload.thread.links, collected.clone());

    let ast = engine.compile(&source).map_err(|e| CallError::Failed(format!("{display}:{}: {}", at(e.position()), e.err_type())))?;
    let mut scope = Scope::new();
    scope.push_constant("event", payload.event.clone());
    scope.push_constant("thread", to_dyn(&payload.thread));
    scope.push_constant("git", payload.git.as_ref().map_or(Dynamic::UNIT, to_dyn));
    scope.push_constant("payload", payload.payload.clone().map_or(Dynamic::UNIT, Dynamic::from));
    scope.push_constant("messages", to_dyn(&payload.messages));
    let config: serde_json::Value = serde_json::from_str(config_json).unwrap_or_default();
    scope.push_constant("config", to_dyn(&config));

    let result = engine.run_ast_with_scope(&mut scope, &ast);
    let c = std::mem::take(&mut *collected.borrow_mut());
    match (result, c.overflow) {
        (Ok(()), Some(e)) => Err(CallError::limit(e)),
        (Ok(()), None) => Ok(CallOutcome { messages: c.messages, env: c.env, links: c.links }),
        (Err(e), _) => Err(describe(display, *e, grants)),
    }
}

/// `set_link(name, url)` and `link(name)`: the thread's links, those this
/// call set first.
fn links(e: &mut Engine, known: &std::collections::BTreeMap<String, String>, collected: Rc<RefCell<Collected>>) {
    {
        let c = collected.clone();
        e.register_fn("set_link", move |name: &str, url: &str| -> Result<(), Box<EvalAltResult>> {
            if let Some(why) = crate::thread::link_problem(name, url) {
                return Err(limit(SandboxError::BadLink { why }));
            }
            super::payload::keep_link(&mut c.borrow_mut().links, name.to_string(), url.to_string()).map_err(|why| limit(SandboxError::BadLink { why }))
        });
    }
    let known = known.clone();
    e.register_fn("link", move |name: &str| -> Dynamic {
        let c = collected.borrow();
        let set = c.links.iter().rev().find(|(n, _)| n == name).map(|(_, u)| u.clone());
        set.or_else(|| known.get(name).cloned()).map_or(Dynamic::UNIT, Dynamic::from)
    });
}

/// A serialisable value as a Rhai value.
fn to_dyn(v: &impl serde::Serialize) -> Dynamic {
    rhai::serde::to_dynamic(v).unwrap_or(Dynamic::UNIT)
}

fn at(p: Position) -> String {
    match (p.line(), p.position()) {
        (Some(l), Some(c)) => format!("{l}:{c}"),
        (Some(l), None) => format!("{l}"),
        _ => "?".into(),
    }
}

/// An error of the script in words, with script, line and column.
fn describe(display: &str, e: EvalAltResult, grants: &Grants) -> CallError {
    let pos = e.position();
    let here = || Some(format!("{display}:{}", at(pos)));
    match e {
        EvalAltResult::ErrorRuntime(v, _) if v.is::<SandboxError>() => CallError::Limit { error: v.cast::<SandboxError>(), at: here() },
        EvalAltResult::ErrorRuntime(v, _) if v.is_map() => {
            let m = v.cast::<Map>();
            match m.get(REFUSE_MARK) {
                Some(reason) => CallError::Refused(reason.to_string()),
                None => CallError::Failed(format!("{display}:{}: {m:?}", at(pos))),
            }
        }
        EvalAltResult::ErrorRuntime(v, _) => CallError::Failed(format!("{display}:{}: {v}", at(pos))),
        EvalAltResult::ErrorTerminated(_, _) => CallError::Limit { error: SandboxError::Timeout { limit: grants.timeout }, at: here() },
        EvalAltResult::ErrorTooManyOperations(_) => CallError::Failed(format!("{display}:{}: stopped after {MAX_OPERATIONS} operations", at(pos))),
        EvalAltResult::ErrorDataTooLarge(what, _) => {
            let limit = if what.contains("rray") {
                format!("{MAX_ARRAY} elements")
            } else if what.contains("ap") {
                format!("{MAX_MAP} entries")
            } else {
                let n = string_limit(grants);
                let why = if n == MAX_STRING { "the most iso lets a Rhai string hold" } else { "the hook's `memory`" };
                format!("{} ({why})", size(n))
            };
            CallError::Failed(format!("out of memory: {display}:{}: {what} grew past its limit of {limit}", at(pos)))
        }
        EvalAltResult::ErrorInFunctionCall(f, src, inner, _) => {
            let inner = describe(display, *inner, grants);
            let wrap = |m: String| format!("{m} (in `{f}`{})", if src.is_empty() { String::new() } else { format!(" of {src}") });
            match inner {
                CallError::Refused(m) => CallError::Refused(m),
                CallError::Failed(m) => CallError::Failed(wrap(m)),
                CallError::Limit { error, at } => CallError::Limit { error, at: Some(wrap(at.unwrap_or_default()).trim_start().to_string()) },
            }
        }
        other => CallError::Failed(format!("{display}:{}: {}", at(pos), other.unwrap_inner())),
    }
}

fn runtime(msg: impl Into<String>) -> Box<EvalAltResult> {
    Box::new(EvalAltResult::ErrorRuntime(Dynamic::from(msg.into()), Position::NONE))
}

/// A grant refused or limit hit, kept typed through Rhai's error.
fn limit(e: SandboxError) -> Box<EvalAltResult> {
    Box::new(EvalAltResult::ErrorRuntime(Dynamic::from(e), Position::NONE))
}

/// The longest string a script of these grants may build.
fn string_limit(grants: &Grants) -> usize {
    usize::try_from(grants.memory).unwrap_or(usize::MAX).min(MAX_STRING)
}

fn engine(grants: &Grants, hooks_dir: &Path, deadline: Instant, log: Log, collected: Rc<RefCell<Collected>>) -> Engine {
    let mut e = Engine::new();
    e.set_max_operations(MAX_OPERATIONS)
        .set_max_call_levels(64)
        .set_max_expr_depths(64, 64)
        .set_max_string_size(string_limit(grants))
        .set_max_array_size(MAX_ARRAY)
        .set_max_map_size(MAX_MAP)
        .set_max_modules(32);
    e.disable_symbol("eval");
    // What a script that catches an error of iso's functions sees as its text.
    e.register_fn("to_string", |err: &mut SandboxError| err.to_string());
    // `thread` is reserved in Rhai for a future feature; hooks know the
    // thread by that name (as in the WIT world), so it is made a plain
    // identifier again.
    #[allow(deprecated)]
    e.on_parse_token(|token, _, _| match token {
        rhai::Token::Reserved(s) if s.as_str() == "thread" => rhai::Token::Identifier(s),
        t => t,
    });
    e.set_module_resolver(Confined::new(hooks_dir));
    e.on_progress(move |_| (Instant::now() >= deadline).then(|| Dynamic::from("timeout")));
    // Every line logged counts against the call's log caps; `print` and
    // `debug` cannot fail, so past a cap they are dropped and the call
    // fails when it ends.
    let logger = {
        let (log, c) = (log.clone(), collected.clone());
        Rc::new(move |level: Level, s: &str| -> Result<(), SandboxError> {
            c.borrow_mut().may_log(s)?;
            log(level, s);
            Ok(())
        })
    };
    {
        let l = logger.clone();
        e.on_print(move |s| {
            let _ = l(Level::Info, s);
        });
    }
    {
        let l = logger.clone();
        e.on_debug(move |s, _, _| {
            let _ = l(Level::Debug, s);
        });
    }
    {
        let l = logger.clone();
        e.register_fn("log", move |s: &str| l(Level::Info, s).map_err(limit));
    }
    {
        let l = logger.clone();
        e.register_fn("log", move |level: &str, s: &str| {
            let level = match level {
                "debug" => Level::Debug,
                "warn" | "warning" => Level::Warn,
                "error" => Level::Error,
                _ => Level::Info,
            };
            l(level, s).map_err(limit)
        });
    }
    {
        let c = collected.clone();
        e.register_fn("message", move |s: &str| -> Result<(), Box<EvalAltResult>> {
            let mut c = c.borrow_mut();
            c.budget.message(s).map_err(limit)?;
            c.messages.push(s.to_string());
            Ok(())
        });
    }
    {
        let c = collected.clone();
        e.register_fn("env_set", move |k: &str, v: Dynamic| -> Result<(), Box<EvalAltResult>> {
            if let Some(why) = crate::envvar::name_problem(k) {
                return Err(limit(SandboxError::BadVariable { name: k.chars().take(64).collect(), why }));
            }
            let v = v.to_string();
            let mut c = c.borrow_mut();
            c.budget.env(k, &v).map_err(limit)?;
            c.env.push((k.to_string(), v));
            Ok(())
        });
    }
    e.register_fn("refuse", |reason: &str| -> Result<(), Box<EvalAltResult>> {
        let mut m = Map::new();
        m.insert(REFUSE_MARK.into(), Dynamic::from(reason.to_string()));
        Err(Box::new(EvalAltResult::ErrorRuntime(Dynamic::from_map(m), Position::NONE)))
    });
    e.register_fn("parse_json", |s: &str| -> Result<Dynamic, Box<EvalAltResult>> {
        let v: serde_json::Value = serde_json::from_str(s).map_err(|e| runtime(format!("parse_json: {e}")))?;
        rhai::serde::to_dynamic(v)
    });

    let g = Rc::new(grants.clone());
    {
        let g = g.clone();
        let log = log.clone();
        e.register_fn("exec", move |program: &str, args: rhai::Array| -> Result<Map, Box<EvalAltResult>> {
            let args: Vec<String> = args.into_iter().map(|a| a.to_string()).collect();
            let out = g.run(program, &args, deadline).inspect_err(|m| log(Level::Warn, &format!("denied: {m}"))).map_err(limit)?;
            let mut m = Map::new();
            m.insert("code".into(), Dynamic::from(out.exit_code as i64));
            m.insert("stdout".into(), Dynamic::from(out.stdout));
            m.insert("stderr".into(), Dynamic::from(out.stderr));
            Ok(m)
        });
    }
    // The grant decides whether a path may be used (symlinks resolved, so
    // a link cannot lead out of it); the file is then opened beneath the
    // granted directory with a rooted handle, so nothing is written through
    // a symlink the branch planted (see crate::rooted).
    let located = |g: &Grants, log: &Log, path: &str, write: bool| -> Result<(Root, PathBuf), Box<EvalAltResult>> {
        let (dir, rel) = g.locate(path, write).inspect_err(|m| log(Level::Warn, &format!("denied: {m}"))).map_err(limit)?;
        let root = Root::open(&dir).map_err(|e| runtime(format!("`{path}`: {e}")))?;
        Ok((root, rel))
    };
    {
        let (g, log) = (g.clone(), log.clone());
        e.register_fn("read_file", move |path: &str| -> Result<String, Box<EvalAltResult>> {
            let (root, rel) = located(&g, &log, path, false)?;
            let bytes = root.read(&rel).map_err(|e| runtime(format!("read_file `{path}`: {e}")))?;
            String::from_utf8(bytes).map_err(|_| runtime(format!("read_file `{path}`: it is not UTF-8 text")))
        });
    }
    {
        let (g, log) = (g.clone(), log.clone());
        e.register_fn("write_file", move |path: &str, text: &str| -> Result<(), Box<EvalAltResult>> {
            let (root, rel) = located(&g, &log, path, true)?;
            root.write(&rel, text.as_bytes()).map_err(|e| runtime(format!("write_file `{path}`: {e}")))
        });
    }
    {
        let (g, log) = (g.clone(), log.clone());
        e.register_fn("file_exists", move |path: &str| -> Result<bool, Box<EvalAltResult>> {
            let (root, rel) = located(&g, &log, path, false)?;
            root.exists(&rel).map_err(|e| runtime(format!("file_exists `{path}`: {e}")))
        });
    }
    {
        let (g, log) = (g.clone(), log.clone());
        e.register_fn("remove_file", move |path: &str| -> Result<(), Box<EvalAltResult>> {
            let (root, rel) = located(&g, &log, path, true)?;
            root.remove(&rel).map_err(|e| runtime(format!("remove_file `{path}`: {e}")))
        });
    }
    {
        let (g, log) = (g.clone(), log.clone());
        e.register_fn("rename_file", move |from: &str, to: &str| -> Result<(), Box<EvalAltResult>> {
            let (root, a) = located(&g, &log, from, true)?;
            let (other, b) = located(&g, &log, to, true)?;
            if root.path() != other.path() {
                return Err(runtime(format!("rename_file `{from}` → `{to}`: they are in different granted directories; copy with read_file and write_file")));
            }
            root.rename(&a, &b).map_err(|e| runtime(format!("rename_file `{from}` → `{to}`: {e}")))
        });
    }
    {
        let (g, log) = (g.clone(), log.clone());
        let post = move |url: &str, body: String, headers: Map| -> Result<Map, Box<EvalAltResult>> {
            let headers: Vec<(String, String)> = headers.into_iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            http_post(&g, url, body, &headers, deadline).inspect_err(|m| log(Level::Warn, &format!("denied: {m}"))).map_err(limit)
        };
        let json = |body: Map| serde_json::to_string(&Dynamic::from_map(body)).map_err(|e| runtime(format!("http_post: {e}")));
        let p = post.clone();
        e.register_fn("http_post", move |url: &str, body: &str| p(url, body.to_string(), Map::new()));
        let p = post.clone();
        e.register_fn("http_post", move |url: &str, body: Map| p(url, json(body)?, Map::new()));
        // With headers, e.g. `#{authorization: "Bearer …"}` for an API that wants a token.
        let p = post.clone();
        e.register_fn("http_post", move |url: &str, body: &str, headers: Map| p(url, body.to_string(), headers));
        e.register_fn("http_post", move |url: &str, body: Map, headers: Map| post(url, json(body)?, headers));
    }
    e
}

/// POST `body` to `url` if its host is allowed; JSON content type when the
/// body looks like JSON. Redirects are not followed: an allowed host could
/// otherwise send the request (and hand back the answer of) any other host.
/// The script gets the 3xx answer itself.
fn http_post(g: &Grants, url: &str, body: String, headers: &[(String, String)], deadline: Instant) -> Result<Map, SandboxError> {
    let failed = |why: String| SandboxError::Http { url: url.to_string(), why };
    let uri: http::Uri = url.parse().map_err(|_| failed("not a URL".into()))?;
    let host = uri.host().ok_or_else(|| failed("it has no host".into()))?;
    let port = uri.port_u16().or(if uri.scheme_str() == Some("https") { Some(443) } else { Some(80) });
    if !g.allows_host(host, port) {
        return Err(SandboxError::HostDenied { host: host.to_string() });
    }
    let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
    let agent: ureq::Agent = ureq::Agent::config_builder().timeout_global(Some(left)).http_status_as_error(false).max_redirects(0).build().into();
    let ct = if body.trim_start().starts_with(['{', '[']) { "application/json" } else { "text/plain; charset=utf-8" };
    let mut req = agent.post(url).header("content-type", ct);
    for (name, value) in headers {
        let name = http::HeaderName::try_from(name.as_str()).map_err(|_| failed(format!("`{name}` cannot be a header name")))?;
        let value = http::HeaderValue::try_from(value.as_str()).map_err(|_| failed(format!("header `{name}`: its value cannot be sent")))?;
        req = req.header(name, value);
    }
    let mut res = req.send(body).map_err(|e| failed(e.to_string()))?;
    let status = res.status().as_u16();
    let text = res.body_mut().with_config().limit(1 << 20).read_to_string().unwrap_or_default();
    let mut m = Map::new();
    m.insert("status".into(), Dynamic::from(status as i64));
    m.insert("body".into(), Dynamic::from(text));
    if let Some(location) = res.headers().get("location").and_then(|l| l.to_str().ok()) {
        m.insert("location".into(), Dynamic::from(location.to_string()));
    }
    Ok(m)
}

/// Loads `import`ed scripts only from inside the hooks directory.
struct Confined {
    dir: PathBuf,
    inner: FileModuleResolver,
}

impl Confined {
    fn new(dir: &Path) -> Confined {
        let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
        Confined { inner: FileModuleResolver::new_with_path(&dir), dir }
    }
}

impl ModuleResolver for Confined {
    fn resolve(&self, engine: &Engine, source: Option<&str>, path: &str, pos: Position) -> Result<rhai::Shared<rhai::Module>, Box<EvalAltResult>> {
        let file = self.dir.join(format!("{path}.rhai"));
        let inside = file.canonicalize().map(|f| f.starts_with(&self.dir)).unwrap_or(false);
        if !inside {
            let message = format!("import \"{path}\": scripts may only import from {}", self.dir.display());
            return Err(Box::new(EvalAltResult::ErrorRuntime(message.into(), pos)));
        }
        self.inner.resolve(engine, source, path, pos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::hooks::{HookDefaults, HookSpec};
    use crate::hooks::payload::ThreadInfo;
    use std::collections::BTreeMap;

    fn fixture(src: &str, extra: &str) -> (tempfile::TempDir, PathBuf, Grants, Payload) {
        let dir = tempfile::tempdir().unwrap();
        let wt = dir.path().join("repo/.worktrees/thread-1");
        std::fs::create_dir_all(&wt).unwrap();
        let script = dir.path().join("repo/hooks/x.rhai");
        std::fs::create_dir_all(script.parent().unwrap()).unwrap();
        std::fs::write(&script, src).unwrap();
        let spec: HookSpec = toml::from_str(&format!("event = \"post-up\"\nrhai = \"hooks/x.rhai\"\n{extra}")).unwrap();
        let grants = Grants::resolve(&spec, &HookDefaults::default(), &wt, &dir.path().join("repo"), BTreeMap::new()).unwrap();
        let payload = Payload {
            event: "post-up".into(),
            thread: ThreadInfo {
                id: 3,
                name: "web".into(),
                branch: "thread-3-web".into(),
                base: "main".into(),
                status: "active".into(),
                repo_path: dir.path().join("repo").display().to_string(),
                worktree_path: wt.display().to_string(),
                ports: [("api".to_string(), 10302u16)].into_iter().collect(),
                env: BTreeMap::new(),
                task: None,
                pr: Some(12),
                services: Vec::new(),
                links: [("chat".to_string(), "https://chat.example/1".to_string())].into_iter().collect(),
                worktrees: BTreeMap::new(),
            },
            git: None,
            payload: None,
            messages: vec!["before".into()],
        };
        (dir, script, grants, payload)
    }

    fn run(src: &str, extra: &str) -> Result<CallOutcome, CallError> {
        let (dir, script, grants, payload) = fixture(src, extra);
        let r = call(&script, "hooks/x.rhai", &dir.path().join("repo/hooks"), &payload, &grants, r#"{"key":"K"}"#, std::sync::Arc::new(|_, _| {}));
        drop(dir);
        r
    }

    #[test]
    fn scripts_see_the_thread_and_hand_back_env_and_messages() {
        let o =
            run("env_set(config.key, `http://localhost:${thread.ports.api}`);\nmessage(`${thread.name} pr ${thread.pr} after ${messages[0]}`);", "").unwrap();
        assert_eq!(o.env, vec![("K".to_string(), "http://localhost:10302".to_string())]);
        assert_eq!(o.messages, vec!["web pr 12 after before".to_string()]);
    }

    #[test]
    fn scripts_set_and_read_links_within_their_limits() {
        let o =
            run("message(link(\"chat\"));\nset_link(\"chat-ts\", \"123.4\");\nmessage(link(\"chat-ts\"));\nmessage(`${link(\"none\") == ()}`);", "").unwrap();
        assert_eq!(o.messages, vec!["https://chat.example/1".to_string(), "123.4".into(), "true".into()]);
        assert_eq!(o.links, vec![("chat-ts".to_string(), "123.4".to_string())]);
        match run("set_link(\"Chat\", \"x\");", "") {
            Err(e @ CallError::Limit { error: SandboxError::BadLink { .. }, .. }) => assert!(e.to_string().contains("a-z, 0-9 and -"), "{e}"),
            other => panic!("{other:?}"),
        }
        let long = format!("set_link(\"chat\", \"{}\");", "x".repeat(3000));
        match run(&long, "") {
            Err(e) => assert!(e.to_string().contains("at most 2048 (2 KiB)"), "{e}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn refusal_failure_and_limits_are_told_apart() {
        assert_eq!(run("refuse(\"no\");", ""), Err(CallError::Refused("no".into())));
        match run("let x = 1;\nthrow \"bad\";", "") {
            Err(CallError::Failed(m)) => assert_eq!(m, "hooks/x.rhai:2:1: bad"),
            other => panic!("{other:?}"),
        }
        match run("loop {}", "timeout = \"100ms\"") {
            Err(e @ CallError::Limit { error: SandboxError::Timeout { .. }, .. }) => assert!(e.to_string().starts_with("timeout"), "{e}"),
            other => panic!("{other:?}"),
        }
        match run("fn f(n) { f(n + 1) }\nf(0);", "") {
            Err(CallError::Failed(m)) => assert!(m.contains("x.rhai"), "{m}"),
            other => panic!("{other:?}"),
        }
        match run("let x = ", "") {
            Err(CallError::Failed(m)) => assert!(m.starts_with("hooks/x.rhai:1:"), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    /// Every script iso ships parses.
    #[test]
    fn shipped_scripts_compile() {
        let hooks = Path::new(env!("CARGO_MANIFEST_DIR")).join("../hooks");
        let (dir, _, grants, _) = fixture("", "");
        let e = engine(&grants, dir.path(), Instant::now() + Duration::from_secs(5), std::sync::Arc::new(|_, _| {}), Rc::default());
        let mut n = 0;
        for sub in [hooks.clone(), hooks.join("examples")] {
            for f in std::fs::read_dir(&sub).unwrap().flatten().filter(|f| f.path().extension().is_some_and(|x| x == "rhai")) {
                let src = std::fs::read_to_string(f.path()).unwrap();
                e.compile(&src).unwrap_or_else(|err| panic!("{}: {err}", f.path().display()));
                n += 1;
            }
        }
        assert!(n >= 5, "{n} scripts");
    }
}
