//! The command line, as clap parses it: every command, flag and argument.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "iso",
    version,
    about = "Isolated threads of work for parallel coding agents",
    long_about = "Isolated threads of work for parallel coding agents.\n\n\
        Each thread gets its own git worktree and branch, its own block of ports and a .env.thread \
        file, recorded in a crash-safe registry shared by every worktree of the repository.",
    after_help = "Threads are named by id, name or branch. Run `iso <command> --help` for details."
)]
pub struct Cli {
    /// Run as if iso was started in DIR (like `git -C`)
    #[arg(short = 'C', global = true, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// When to use colour: auto (terminal and no NO_COLOR), always, never
    #[arg(long, global = true, value_name = "WHEN", default_value = "auto")]
    pub color: ColorWhen,
    /// No progress output
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Work on this repository even while connected to a server (`iso remote`)
    #[arg(long, global = true)]
    pub local: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ColorWhen {
    Auto,
    Always,
    Never,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create threads: a worktree, a branch and a port block each
    #[command(
        after_help = "Examples:\n  iso init add-auth\n  iso init add-auth --base dev\n  iso init fix-a fix-b fix-c\n  iso init --branch feature/auth\n  iso init --branch origin/pr-42 review-42"
    )]
    Init(InitArgs),
    /// Make an existing worktree (from `git worktree add`) a thread: ports, env file, services, hooks
    #[command(after_help = "Examples:\n  git worktree add ../spike spike && iso adopt ../spike\n  iso adopt ../spike --name spike-2 --no-services")]
    Adopt(AdoptArgs),
    /// List threads
    #[command(visible_alias = "ls")]
    #[command(after_help = "Examples:\n  iso ls --agent waiting\n  iso ls --status active --idle 2h")]
    List {
        /// Also show removed threads
        #[arg(short, long)]
        all: bool,
        /// Only threads whose agent is in this state (the AGENT column)
        #[arg(long, value_name = "STATE", value_parser = ["working", "waiting", "idle", "done", "running", "failed", "stopped"])]
        agent: Option<String>,
        /// Only threads with this status
        #[arg(long, value_name = "STATUS", value_parser = ["creating", "active", "merged", "abandoned", "cleaning", "failed", "removed"])]
        status: Option<String>,
        /// Only threads with no activity for longer than this (30m, 2h, 1d)
        #[arg(long, value_name = "DURATION")]
        idle: Option<String>,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Everything about one thread
    Status {
        /// Thread id, name or branch
        thread: String,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Change a thread's task, PR or status
    Update(UpdateArgs),
    /// Print a thread's worktree path: cd $(iso path 1)
    Path {
        /// Thread id, name or branch
        thread: String,
        /// The worktree in this linked repository (a `[repos]` name; `main` is the primary's)
        #[arg(long, value_name = "NAME")]
        repo: Option<String>,
    },
    /// The port allocation table
    Ports {
        /// Every lease on this machine (all repositories of this user, from the port ledger), and which are stale
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Remove threads' worktrees and free their ports (branches are kept)
    #[command(visible_aliases = ["clean", "rm"])]
    Cleanup(CleanupArgs),
    /// Compare the registry with git and the filesystem, and repair it
    Doctor {
        /// Repair what can be repaired without losing work
        #[arg(long)]
        fix: bool,
        /// With --fix, also remove the named volumes (their data) of threads that are gone
        #[arg(long, requires = "fix")]
        volumes: bool,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Print the effective configuration and where it came from
    Config {
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Start a thread's Docker stack (creating what is missing) and wait until it is healthy
    Up {
        /// Thread id, name or branch
        thread: String,
    },
    /// Stop a thread's containers without removing them (`iso up` starts them again)
    Down {
        /// Thread id, name or branch
        thread: String,
    },
    /// Show the logs of a thread's services
    #[command(after_help = "Examples:\n  iso logs 1\n  iso logs 1 postgres -f\n  iso logs add-auth api --tail 50")]
    Logs {
        /// Thread id, name or branch
        thread: String,
        /// Only this service
        service: Option<String>,
        /// Keep printing new lines
        #[arg(short, long)]
        follow: bool,
        /// Only the last N lines of each service
        #[arg(long, value_name = "N")]
        tail: Option<usize>,
    },
    /// Run a command in one of a thread's service containers
    #[command(after_help = "Examples:\n  iso exec 1 postgres -- psql -U postgres\n  iso exec 1 redis -- redis-cli ping")]
    Exec {
        /// Thread id, name or branch
        thread: String,
        /// Service name
        service: String,
        /// The command and its arguments (after --)
        #[arg(required = true, last = true, value_name = "CMD")]
        cmd: Vec<String>,
    },
    /// Write docker-compose.thread.yml into a thread's worktree, describing what iso started
    Compose {
        /// Thread id, name or branch
        thread: String,
    },
    /// Write a new iso.toml from a ready stack template (`iso setup` lists them)
    Setup {
        /// Template name
        #[arg(short, long, value_name = "NAME")]
        template: Option<String>,
        /// Replace an existing iso.toml
        #[arg(long)]
        force: bool,
    },
    /// Serve the HTTP API (docs/api.md): iso serve --bind 127.0.0.1:31337
    Serve {
        /// Address and port [default: [api] bind, else 127.0.0.1:31337]; a non-loopback address needs a token
        #[arg(long, value_name = "ADDR")]
        bind: Option<std::net::SocketAddr>,
    },
    /// Use an `iso serve` for init, list, status, update, cleanup and spawn (connect, discover, status, disconnect)
    #[command(subcommand)]
    Remote(RemoteCommand),
    /// Create a thread and start the configured agent ([agent] command) in it
    #[command(after_help = "Examples:\n  iso spawn fix-login --context '{\"ticket\": \"ISO-7\"}'\n  iso spawn docs --template prompts/docs.md --wait")]
    Spawn(SpawnArgs),
    /// Print the output of a thread's agent run (the latest unless --run)
    RunLogs {
        /// Thread id, name or branch
        thread: String,
        /// Keep printing until the run ends
        #[arg(short, long)]
        follow: bool,
        /// Run number
        #[arg(long, value_name = "N")]
        run: Option<u32>,
    },
    /// Attach to the tmux session of a thread's interactive agent (detach with Ctrl-b d)
    Attach {
        /// Thread id, name or branch
        thread: String,
    },
    /// Stop a thread's running agent (SIGTERM to its process group, SIGKILL after 5 s)
    Stop {
        /// Thread id, name or branch
        thread: String,
        #[arg(long)]
        json: bool,
    },
    /// Report what a thread's agent is doing (run by the agent or its hooks; docs/agents.md)
    #[command(after_help = "Examples:\n  iso agent-status working\n  iso -q agent-status waiting --message \"needs a decision\"\n  iso agent-status done 2")]
    AgentStatus {
        #[arg(value_parser = ["working", "waiting", "idle", "done"])]
        state: String,
        /// What it is doing or waiting for (kept to 1 KiB)
        #[arg(short, long, value_name = "TEXT")]
        message: Option<String>,
        /// Thread id, name or branch [default: the thread whose worktree holds the current directory, else $ISO_THREAD_ID]
        thread: Option<String>,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Print the event log: lifecycle, agent and custom events (-f follows it)
    #[command(after_help = "Examples:\n  iso events\n  iso events -f --thread 2\n  iso events --json --since 120")]
    Events(EventsArgs),
    /// List hooks, or run one event's hooks against a live thread now
    #[command(subcommand)]
    Hooks(HooksCommand),
    /// Named copies of a thread's volumes, to seed new threads from (`iso init NAME --seed-from snapshot:SNAP`)
    #[command(subcommand)]
    Snapshot(SnapshotCommand),
    /// Inspect WASM hook plugins
    #[command(subcommand)]
    Plugin(PluginCommand),
    /// (internal) supervise one agent run
    #[command(hide = true)]
    AgentSupervise { run_file: PathBuf },
    /// (internal) the process of an interactive run's tmux pane
    #[command(hide = true)]
    AgentExec { run_file: PathBuf },
    /// Print shell completions: iso completions bash > ~/.local/share/bash-completion/completions/iso
    Completions { shell: CompletionShell },
}

#[derive(Debug, Args)]
pub struct JsonFlag {
    /// Print JSON instead of a table (schema in README, "JSON output")
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Thread names; each becomes part of a branch name (thread-{id}-{name}), in ASCII; with --branch at most one, default the branch's name
    #[arg(required_unless_present = "branch", value_name = "NAME")]
    pub names: Vec<String>,
    /// Open the thread on this existing branch instead of a new one: local, or remote-tracking (`origin/foo`, or `foo` of one remote; its local tracking branch is made)
    #[arg(long, value_name = "BRANCH")]
    pub branch: Option<String>,
    /// Branch (or commit) to start from [default: threads.base_branch, else the current branch]
    #[arg(short, long, value_name = "BRANCH")]
    pub base: Option<String>,
    /// What the thread is for
    #[arg(short, long)]
    pub task: Option<String>,
    /// Do not start the Docker stack (worktree, ports and env file only; `iso up` starts it later)
    #[arg(long)]
    pub no_services: bool,
    /// Create the thread's volumes as copies of SOURCE's: a thread (id or name), `snapshot:NAME` or `main` [default: threads.seed]
    #[arg(long, value_name = "SOURCE", conflicts_with = "no_seed")]
    pub seed_from: Option<String>,
    /// Start with empty volumes, whatever threads.seed says
    #[arg(long)]
    pub no_seed: bool,
    #[command(flatten)]
    pub json: JsonFlag,
}

#[derive(Debug, Args)]
pub struct AdoptArgs {
    /// The worktree's directory
    pub path: std::path::PathBuf,
    /// Thread name [default: the worktree's branch]
    #[arg(long, short)]
    pub name: Option<String>,
    /// What the thread is for
    #[arg(short, long)]
    pub task: Option<String>,
    /// Do not start the Docker stack (ports and env file only; `iso up` starts it later)
    #[arg(long)]
    pub no_services: bool,
    #[command(flatten)]
    pub json: JsonFlag,
}

#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// Thread id, name or branch
    pub thread: String,
    /// What the thread is for ("" clears it)
    #[arg(long)]
    pub task: Option<String>,
    /// Pull request number (0 clears it)
    #[arg(long)]
    pub pr: Option<u64>,
    #[arg(long)]
    pub status: Option<SettableStatus>,
    #[command(flatten)]
    pub json: JsonFlag,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum SettableStatus {
    Active,
    Merged,
    Abandoned,
}

#[derive(Debug, Args)]
pub struct CleanupArgs {
    /// Thread ids, names or branches
    #[arg(required = true, value_name = "THREAD")]
    pub threads: Vec<String>,
    /// Delete the branch too (refused if it has commits on no other branch, unless --force)
    #[arg(long)]
    pub delete_branch: bool,
    /// Keep the stack's named volumes (its data); containers and network are still removed
    #[arg(long)]
    pub keep_volumes: bool,
    /// Also end the thread's own processes still listening on its ports (working in its worktree, or its agent's); others are named and left alone
    #[arg(long)]
    pub kill_ports: bool,
    /// Throw away uncommitted changes and unmerged commits, override hooks' refusal
    #[arg(short, long)]
    pub force: bool,
    #[command(flatten)]
    pub json: JsonFlag,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum CompletionShell {
    Bash,
    Zsh,
    Fish,
    Nushell,
    Powershell,
    Elvish,
}

#[derive(Debug, Subcommand)]
pub enum SnapshotCommand {
    /// Copy every volume of a thread's stack into snapshot NAME (its containers stop for the copy)
    #[command(after_help = "Examples:\n  iso snapshot save base --from 1\n  iso init fix-a --seed-from snapshot:base")]
    Save {
        /// 1-40 of a-z 0-9 - _
        name: String,
        /// Thread id, name or branch
        #[arg(long, value_name = "THREAD")]
        from: String,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// The snapshots of this repository
    #[command(visible_alias = "ls")]
    List {
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Remove a snapshot's volumes
    Rm {
        name: String,
        #[command(flatten)]
        json: JsonFlag,
    },
}

#[derive(Debug, Subcommand)]
pub enum RemoteCommand {
    /// Send init, list, status, update, cleanup and spawn to an `iso serve` (stored with mode 0600)
    Connect {
        /// The server, e.g. http://127.0.0.1:31337
        url: String,
        /// Its token (else ISO_API_TOKEN at use time)
        #[arg(long)]
        token: Option<String>,
    },
    /// Show the connection and check the server answers
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Forget the connection: commands work locally again
    Disconnect,
    /// Connect to the running `iso serve` of this repository, or list this user's running servers
    #[command(after_help = "Examples:\n  iso remote discover\n  iso remote discover --all --json")]
    Discover {
        /// List every running server of this user instead of connecting
        #[arg(long)]
        all: bool,
        /// Print JSON: the connection, or the list of server records (docs/api.md, "Discovery")
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub struct SpawnArgs {
    /// Thread name
    pub name: String,
    /// A minijinja prompt template file ({{ thread.* }}, {{ context.* }}) [default: [agent] template]
    #[arg(long, value_name = "FILE")]
    pub template: Option<PathBuf>,
    /// JSON handed to the template as `context`
    #[arg(long, value_name = "JSON")]
    pub context: Option<String>,
    /// Branch (or commit) to start from
    #[arg(short, long, value_name = "BRANCH")]
    pub base: Option<String>,
    /// What the thread is for
    #[arg(short, long)]
    pub task: Option<String>,
    /// automatic: headless, output to the run log; interactive: in a tmux session of its own (`iso attach`); semi: in tmux with [agent] modes.semi args
    #[arg(long, value_enum, default_value = "automatic")]
    pub mode: SpawnMode,
    /// Wait for the agent to end; exit with its exit code
    #[arg(long)]
    pub wait: bool,
    /// Print the run as JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum SpawnMode {
    Automatic,
    Interactive,
    Semi,
}

impl From<SpawnMode> for crate::lifecycle::RunMode {
    fn from(m: SpawnMode) -> crate::lifecycle::RunMode {
        match m {
            SpawnMode::Automatic => crate::lifecycle::RunMode::Automatic,
            SpawnMode::Interactive => crate::lifecycle::RunMode::Interactive,
            SpawnMode::Semi => crate::lifecycle::RunMode::Semi,
        }
    }
}

#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Keep printing events as they are logged (until interrupted)
    #[arg(short, long)]
    pub follow: bool,
    /// Print each event as one line of JSON (the `GET /api/events` data)
    #[arg(long)]
    pub json: bool,
    /// Only events after this sequence number
    #[arg(long, value_name = "SEQ")]
    pub since: Option<u64>,
    /// Only events of this thread: an id (every thread that had it), or a name
    #[arg(long, value_name = "THREAD")]
    pub thread: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum HooksCommand {
    /// The hooks of this repository: declared in iso.toml and discovered scripts, in the order they run
    #[command(visible_alias = "ls")]
    List {
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Run the hooks of one event against a live thread now
    #[command(
        after_help = "Examples:\n  iso hooks run post-up 1\n  iso hooks run pre-cleanup add-auth\n  iso hooks run deploy 2 --payload '{\"env\": \"staging\"}'"
    )]
    Run {
        /// pre-init, post-init, post-up, pre-cleanup, post-cleanup, or a custom event
        event: String,
        /// Thread id, name or branch
        thread: String,
        /// JSON data handed to hooks of a custom event
        #[arg(long, value_name = "JSON")]
        payload: Option<String>,
        #[command(flatten)]
        json: JsonFlag,
    },
}

#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Does a .wasm file implement the iso:hooks world, which version, what would it import
    #[command(after_help = "Example:\n  iso plugin check plugins/target/wasm32-wasip2/release/iso_frontend_env.wasm")]
    Check {
        /// The component
        file: PathBuf,
        #[command(flatten)]
        json: JsonFlag,
    },
}
