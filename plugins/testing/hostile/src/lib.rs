//! Test-only: a hook plugin that does what config `mode` says, mostly things
//! a hook must not get away with. iso's tests use it to check the sandbox;
//! `ESCAPED: …` in a message means the sandbox let something through.
//!
//! Events: any.
//!
//! Config (the hook's `config` table in `iso.toml`):
//! - `mode` (default `"ok"`):
//!   - `ok`: returns the message `ok` at once (also for benchmarks).
//!   - `loop`: spins forever (the hook's `timeout` must end it).
//!   - `memory`: keeps allocating 16 MiB buffers until allocation fails (the
//!     hook's `memory` limit must stop it), then fails with `blocked: …`.
//!   - `read`: reads the file at `path` (absolute, or relative to the
//!     worktree): `ESCAPED: read N bytes from <path>` / `blocked: <error>`.
//!   - `write`: writes `x` to `path` the same way: `ESCAPED: wrote <path>` /
//!     `blocked: <error>`.
//!   - `http`: POSTs `{}` to `url` through wasi:http: `ESCAPED: <status>` /
//!     `blocked: <error>`.
//!   - `exec`: runs `program` with `args` (default none) through
//!     `host::exec`: `ESCAPED: exit <code>` / `blocked: <error>`.
//!   - `panic`: panics with "boom from the hostile plugin".
//!   - `refuse`: returns `failure::refuse(message)`, default "refused by
//!     policy".
//!   - `fail`: returns `failure::failed(message)`, default "failed on
//!     purpose".
//!   - `env`: returns the env var `HOSTILE_SAW=<event name>`, one message
//!     `NAME=value` per variable of its WASI environment and a message
//!     `messages-before=<number of event.messages>`.
//!   - `log`: logs `hostile log <level>` through `host::log` at each level,
//!     prints `hostile stdout` to standard output and `hostile stderr` to
//!     standard error, and returns the message `logged`.
//!   - `sleep`: sleeps `seconds` (default 60) in one blocking WASI call
//!     (`std::thread::sleep`, a `wasi:clocks` poll): the hook's `timeout`
//!     must end it anyway. Returns `ESCAPED: slept` if it woke up.
//!   - `flood`: hands back `count` (default 20) messages of `mib` MiB each
//!     (default 32), or with `via = "log"` logs them, with `via = "stdout"`
//!     prints them: the output caps must stop it.
//!   - `badenv`: returns the variable named `name` (default `BAD NAME`) set
//!     to `1`.
//! - `path`, `url`, `program`, `args`, `message`, `seconds`, `count`, `mib`,
//!   `via`, `name`: see the modes.

use std::path::Path;

use serde_json::Value;

wit_bindgen::generate!({
    path: "../../../wit",
    world: "iso:hooks/hook",
    generate_all,
});

use exports::iso::hooks::handler::Guest;
use iso::hooks::host::{self, Level};
use iso::hooks::types::{EnvVar, Event, Failure, Outcome};
use wasi::http::outgoing_handler;
use wasi::http::types::{Fields, Method, OutgoingBody, OutgoingRequest, Scheme};

struct Hostile;

export!(Hostile);

const MODES: &str = "ok, loop, memory, read, write, http, exec, panic, refuse, fail, env, log, sleep, flood, badenv";

impl Guest for Hostile {
    fn handle(event: Event) -> Result<Outcome, Failure> {
        let config: Value = serde_json::from_str(&host::config()).map_err(|e| Failure::Failed(format!("hostile: bad config: {e}")))?;
        let text = |key: &str| config.get(key).and_then(Value::as_str).map(str::to_string);
        let required = |key: &str| text(key).ok_or_else(|| Failure::Failed(format!("hostile: this mode needs config `{key}` (a string)")));
        let worktree = Path::new(&event.thread.worktree_path);

        match text("mode").as_deref().unwrap_or("ok") {
            "ok" => ok(vec!["ok".into()]),
            "loop" => {
                let mut i = 0u64;
                loop {
                    i = core::hint::black_box(i.wrapping_add(1));
                }
            }
            "memory" => {
                const CHUNK: usize = 16 << 20;
                let mut kept: Vec<Vec<u8>> = Vec::new();
                loop {
                    let mut buffer = Vec::new();
                    if buffer.try_reserve_exact(CHUNK).is_err() || kept.try_reserve(1).is_err() {
                        let mib = core::hint::black_box(&kept).len() * 16;
                        return Err(Failure::Failed(format!("blocked: allocation failed after {mib} MiB")));
                    }
                    buffer.resize(CHUNK, 0xA5);
                    kept.push(core::hint::black_box(buffer));
                }
            }
            "read" => {
                let path = required("path")?;
                match std::fs::read(worktree.join(&path)) {
                    Ok(bytes) => ok(vec![format!("ESCAPED: read {} bytes from {path}", bytes.len())]),
                    Err(e) => Err(Failure::Failed(format!("blocked: {e}"))),
                }
            }
            "write" => {
                let path = required("path")?;
                match std::fs::write(worktree.join(&path), "x") {
                    Ok(()) => ok(vec![format!("ESCAPED: wrote {path}")]),
                    Err(e) => Err(Failure::Failed(format!("blocked: {e}"))),
                }
            }
            "http" => {
                let url = required("url")?;
                match post_empty_object(&url) {
                    Ok(status) => ok(vec![format!("ESCAPED: {status}")]),
                    Err(e) => Err(Failure::Failed(format!("blocked: {e}"))),
                }
            }
            "exec" => {
                let program = required("program")?;
                let args: Vec<String> =
                    config.get("args").and_then(Value::as_array).map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect()).unwrap_or_default();
                match host::exec(&program, &args) {
                    Ok(output) => ok(vec![format!("ESCAPED: exit {}", output.exit_code)]),
                    Err(e) => Err(Failure::Failed(format!("blocked: {e}"))),
                }
            }
            "panic" => panic!("boom from the hostile plugin"),
            "refuse" => Err(Failure::Refuse(text("message").unwrap_or_else(|| "refused by policy".into()))),
            "fail" => Err(Failure::Failed(text("message").unwrap_or_else(|| "failed on purpose".into()))),
            "env" => {
                let mut messages: Vec<String> = std::env::vars().map(|(name, value)| format!("{name}={value}")).collect();
                messages.push(format!("messages-before={}", event.messages.len()));
                Ok(Outcome { messages, env: vec![EnvVar { name: "HOSTILE_SAW".into(), value: event.name.clone() }] })
            }
            "log" => {
                host::log(Level::Debug, "hostile log debug");
                host::log(Level::Info, "hostile log info");
                host::log(Level::Warn, "hostile log warn");
                host::log(Level::Error, "hostile log error");
                println!("hostile stdout");
                eprintln!("hostile stderr");
                ok(vec!["logged".into()])
            }
            "sleep" => {
                let seconds = config.get("seconds").and_then(Value::as_u64).unwrap_or(60);
                std::thread::sleep(std::time::Duration::from_secs(seconds));
                ok(vec!["ESCAPED: slept".into()])
            }
            "flood" => {
                let count = config.get("count").and_then(Value::as_u64).unwrap_or(20) as usize;
                let mib = config.get("mib").and_then(Value::as_u64).unwrap_or(32) as usize;
                let big = "x".repeat(mib << 20);
                match text("via").as_deref().unwrap_or("message") {
                    "log" => {
                        for _ in 0..count {
                            host::log(Level::Info, &big);
                        }
                        ok(vec!["ESCAPED: logged it all".into()])
                    }
                    "stdout" => {
                        use std::io::Write;
                        let mut out = std::io::stdout();
                        for _ in 0..count {
                            if let Err(e) = out.write_all(big.as_bytes()).and_then(|()| out.write_all(b"\n")) {
                                return Err(Failure::Failed(format!("blocked: {e}")));
                            }
                        }
                        ok(vec!["ESCAPED: printed it all".into()])
                    }
                    _ => ok(vec![big; count]),
                }
            }
            "badenv" => {
                let name = text("name").unwrap_or_else(|| "BAD NAME".into());
                Ok(Outcome { messages: vec!["ESCAPED: returned it".into()], env: vec![EnvVar { name, value: "1".into() }] })
            }
            other => Err(Failure::Failed(format!("hostile: unknown config `mode` = {other:?}; one of: {MODES}"))),
        }
    }
}

fn ok(messages: Vec<String>) -> Result<Outcome, Failure> {
    Ok(Outcome { messages, env: Vec::new() })
}

/// POSTs `{}` to an `http://` or `https://` URL; the answer's status.
fn post_empty_object(url: &str) -> Result<u16, String> {
    let (scheme, rest) = if let Some(rest) = url.strip_prefix("https://") {
        (Scheme::Https, rest)
    } else if let Some(rest) = url.strip_prefix("http://") {
        (Scheme::Http, rest)
    } else {
        return Err(format!("not an http(s) URL: {url}"));
    };
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    let path = if path.is_empty() { "/" } else { path };

    let headers = Fields::new();
    headers.append("content-type", b"application/json").map_err(|e| format!("{e:?}"))?;
    let request = OutgoingRequest::new(headers);
    request.set_method(&Method::Post).map_err(|()| "bad method")?;
    request.set_scheme(Some(&scheme)).map_err(|()| "bad scheme")?;
    request.set_authority(Some(authority)).map_err(|()| "bad authority")?;
    request.set_path_with_query(Some(path)).map_err(|()| "bad path")?;
    let body = request.body().map_err(|()| "no body")?;
    let future = outgoing_handler::handle(request, None).map_err(|e| format!("{e:?}"))?;
    // Body write errors are reported after the response's: a refused request
    // closes the body stream, and the response says why.
    let sent = (|| {
        {
            let stream = body.write().map_err(|()| "no body stream".to_string())?;
            stream.blocking_write_and_flush(b"{}").map_err(|e| format!("{e:?}"))?;
        }
        OutgoingBody::finish(body, None).map_err(|e| format!("{e:?}"))
    })();
    loop {
        if let Some(result) = future.get() {
            let response = result.map_err(|()| "response taken twice".to_string())?.map_err(|e| format!("{e:?}"))?;
            sent?;
            return Ok(response.status());
        }
        future.subscribe().block();
    }
}
