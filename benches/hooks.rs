//! Per-call cost of hooks (issue 4's benchmark): a WASM hook cold (first
//! compile, empty cache), warm (compiled component taken from the on-disk
//! cache, as every later `iso` process does), and a Rhai hook.
//!
//!   bash benches/hooks.sh    (builds plugins/ and this binary in release mode, runs it)
//!
//! Each call is complete: load, sandbox set-up (WASI context, preopens),
//! instantiate, call `handle`, collect the outcome. Prints medians.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use iso::config::hooks::{HookDefaults, HookSpec};
use iso::hooks::payload::{LogFn, Payload, ThreadInfo};
use iso::hooks::sandbox::Grants;
use iso::hooks::{rhai, wasm};

/// Removed on drop.
struct TempDir(PathBuf);
impl TempDir {
    fn path(&self) -> &Path {
        &self.0
    }
}
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn median(mut v: Vec<Duration>) -> f64 {
    v.sort();
    v[v.len() / 2].as_secs_f64() * 1000.0
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf();
    let plugin = root.join("plugins/target/wasm32-wasip2/release/iso_hostile.wasm");
    assert!(plugin.is_file(), "build the plugins first: bash benches/hooks.sh (missing {})", plugin.display());
    let work = TempDir(std::env::temp_dir().join(format!("iso-bench-hooks-{}", std::process::id())));
    std::fs::create_dir_all(work.path()).unwrap();
    let repo = work.path().join("repo");
    let wt = repo.join(".worktrees/thread-1");
    std::fs::create_dir_all(&wt).unwrap();
    let spec: HookSpec = toml::from_str("event = \"post-up\"\nwasm = \"x.wasm\"").unwrap();
    let mut env = BTreeMap::new();
    env.insert("DATABASE_URL".to_string(), "postgresql://postgres:postgres@localhost:10100/app".to_string());
    let grants = Grants::resolve(&spec, &HookDefaults::default(), &wt, &repo, env.clone()).unwrap();
    let payload = Payload {
        event: "post-up".into(),
        thread: ThreadInfo {
            id: 1,
            name: "bench".into(),
            branch: "thread-1-bench".into(),
            base: "main".into(),
            status: "active".into(),
            repo_path: repo.display().to_string(),
            worktree_path: wt.display().to_string(),
            ports: [("postgres".to_string(), 10100u16), ("api".to_string(), 10102)].into_iter().collect(),
            env,
            task: Some("benchmark".into()),
            pr: None,
            services: Vec::new(),
            links: BTreeMap::new(),
        },
        git: None,
        payload: None,
        messages: Vec::new(),
    };
    let log: LogFn = Arc::new(|_, _| {});
    let config = r#"{"mode":"ok"}"#;

    // Cold: a fresh cache directory each time, so every call compiles.
    let mut cold = Vec::new();
    for i in 0..5 {
        let dir = work.path().join(format!("cold-{i}"));
        std::env::set_var("ISO_CACHE_DIR", &dir);
        let t = Instant::now();
        wasm::call(&plugin, &payload, &grants, config, log.clone()).unwrap();
        cold.push(t.elapsed());
    }
    // Warm: the cache is filled; each call loads the compiled component
    // from disk as a new iso process would.
    std::env::set_var("ISO_CACHE_DIR", work.path().join("warm"));
    wasm::call(&plugin, &payload, &grants, config, log.clone()).unwrap();
    let mut warm = Vec::new();
    for _ in 0..200 {
        let t = Instant::now();
        wasm::call(&plugin, &payload, &grants, config, log.clone()).unwrap();
        warm.push(t.elapsed());
    }
    // Rhai: read, compile and run a script like the shipped ones.
    let script: PathBuf = work.path().join("post-up.rhai");
    std::fs::write(
        &script,
        "let url = `http://localhost:${thread.ports.api}`;\nif url.len() > 0 { env_set(\"API\", url); }\nmessage(`thread ${thread.id} ready`);\n",
    )
    .unwrap();
    let rspec: HookSpec = toml::from_str("event = \"post-up\"\nrhai = \"post-up.rhai\"").unwrap();
    let rgrants = Grants::resolve(&rspec, &HookDefaults::default(), &wt, &repo, BTreeMap::new()).unwrap();
    let mut rh = Vec::new();
    for _ in 0..500 {
        let t = Instant::now();
        rhai::call(&script, "post-up.rhai", work.path(), &payload, &rgrants, "{}", log.clone()).unwrap();
        rh.push(t.elapsed());
    }
    // `exec` of a program: contained (own process group, a pids cgroup
    // where there is one, everything killed at the end, output read
    // without blocking) against a plain `Command::output`.
    let espec: HookSpec = toml::from_str("event = \"post-up\"\nrhai = \"x.rhai\"\nallow.exec = [\"true\"]").unwrap();
    let egrants = Grants::resolve(&espec, &HookDefaults::default(), &wt, &repo, BTreeMap::new()).unwrap();
    let (mut contained, mut plain) = (Vec::new(), Vec::new());
    for _ in 0..100 {
        let t = Instant::now();
        egrants.run("true", &[], Instant::now() + Duration::from_secs(10)).unwrap();
        contained.push(t.elapsed());
        let t = Instant::now();
        std::process::Command::new("true").current_dir(&wt).output().unwrap();
        plain.push(t.elapsed());
    }
    let (contained, plain) = (median(contained), median(plain));
    println!("hook call                          median");
    println!("wasm, cold (compile, empty cache)  {:8.2} ms", median(cold));
    println!("wasm, warm (from the disk cache)   {:8.2} ms   (goal < 5 ms)", median(warm));
    println!("rhai                               {:8.3} ms   (goal < 1 ms)", median(rh));
    println!(
        "exec `true`, contained ({:?})  {contained:8.2} ms   (plain Command::output {plain:.2} ms: {:.1}x)",
        iso::hooks::jail::Jail::new().containment(),
        contained / plain
    );
}
