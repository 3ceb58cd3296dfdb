//! `iso init <name>...`: create threads and return their records.

use nu_plugin::{EngineInterface, EvaluatedCall, SimplePluginCommand};
use nu_protocol::{Example, LabeledError, ShellError, Signature, Spanned, SyntaxShape, Type, Value};

use super::value::{thread_value, Detail, Extras};
use super::{IsoPlugin, Spans};
use crate::lifecycle::{self, InitOptions};
use crate::progress::Silent;

pub struct IsoInit;

/// `iso adopt <path>`: make an existing worktree a thread.
pub struct IsoAdopt;

impl SimplePluginCommand for IsoAdopt {
    type Plugin = IsoPlugin;

    fn name(&self) -> &str {
        "iso adopt"
    }

    fn description(&self) -> &str {
        "Make an existing worktree (from `git worktree add`) a thread: a port block, .env.thread, services and hooks; return its record."
    }

    fn extra_description(&self) -> &str {
        "The path must be a linked worktree of this repository on a branch; the main checkout, and a worktree that already is a thread's, are refused. \
         `iso cleanup` removes it like any thread's worktree and keeps its branch (iso did not create it, so --delete-branch keeps it too)."
    }

    fn signature(&self) -> Signature {
        Signature::build(self.name())
            .required("path", SyntaxShape::Filepath, "The worktree's directory")
            .named("name", SyntaxShape::String, "Thread name (default: the worktree's branch)", Some('n'))
            .named("task", SyntaxShape::String, "What the thread is for", Some('t'))
            .switch("no-services", "Do not start the Docker stack", None)
            .input_output_type(Type::Nothing, Type::record())
            .category(super::category())
    }

    fn search_terms(&self) -> Vec<&str> {
        vec!["worktree", "register", "import", "existing"]
    }

    fn examples(&self) -> Vec<Example<'_>> {
        vec![Example {
            example: "^git worktree add -q ../spike -b spike; iso adopt ../spike --no-services | select id name branch",
            description: "Make a worktree from `git worktree add` a thread",
            result: Some(Value::test_record(nu_protocol::record! {
                "id" => Value::test_int(1), "name" => Value::test_string("spike"), "branch" => Value::test_string("spike"),
            })),
        }]
    }

    fn run(&self, _plugin: &IsoPlugin, engine: &EngineInterface, call: &EvaluatedCall, _input: &Value) -> Result<Value, LabeledError> {
        let head = call.head;
        let path: Spanned<String> = call.req(0)?;
        let name: Option<Spanned<String>> = call.get_flag("name")?;
        let opts = InitOptions { task: call.get_flag("task")?, no_services: call.has_flag("no-services")?, ..Default::default() };
        let cwd = engine.get_current_dir().map_err(|e| LabeledError::new(format!("cannot read $env.PWD: {e}")).with_label("here", head))?;
        let full = std::path::Path::new(&cwd).join(&path.item);
        let project = super::project(engine, head)?;
        let collect = crate::progress::Collect::new(&Silent);
        match lifecycle::init::adopt(&project, &full, name.as_ref().map(|n| n.item.as_str()), &opts, &collect) {
            Ok(t) => Ok(with_messages(thread_value(&t, Detail::Row, &Extras::default(), head), &collect.into_notes(), head)),
            Err(e) => Err(super::error(&e, head, Spans { subject: Some(path.span), base: None })),
        }
    }
}

impl SimplePluginCommand for IsoInit {
    type Plugin = IsoPlugin;

    fn name(&self) -> &str {
        "iso init"
    }

    fn description(&self) -> &str {
        "Create threads (a worktree, a branch and a port block each) and return their records."
    }

    fn extra_description(&self) -> &str {
        "Each name becomes part of a branch name (threads.branch_template, by default thread-{id}-{name}). \
         The base is --base, else threads.base_branch from iso.toml, else the main checkout's current branch. \
         With --branch there is one thread, on that branch (none is created; a remote-tracking one gets its local tracking branch), \
         named by the one name given or after the branch. Names are kept as typed; the branch gets their ASCII form (naïve → naive). \
         If some names fail, the others are still created and the error lists both. \
         Each row has a `messages` column: what the hooks said (and other notes, such as a skipped port block). \
         The examples start from a repository with no threads and the default ports."
    }

    fn signature(&self) -> Signature {
        Signature::build(self.name())
            .rest("names", SyntaxShape::String, "Names of the threads (at least one, or --branch)")
            .named(
                "branch",
                SyntaxShape::String,
                "Open one thread on this existing branch (local, or remote-tracking: `origin/foo`); the name defaults to it",
                None,
            )
            .named("base", SyntaxShape::String, "Branch (or commit) to start from", Some('b'))
            .named("task", SyntaxShape::String, "What the thread is for", Some('t'))
            .switch("no-services", "Do not start the Docker stack (worktree, ports and env file only; `iso up` starts it later)", None)
            .named("seed-from", SyntaxShape::String, "Create the thread's volumes as copies of this source's: a thread, snapshot:NAME or main", None)
            .switch("no-seed", "Start with empty volumes, whatever threads.seed says", None)
            .input_output_type(Type::Nothing, Type::table())
            .category(super::category())
    }

    fn search_terms(&self) -> Vec<&str> {
        vec!["new", "create", "add", "worktree", "branch"]
    }

    fn examples(&self) -> Vec<Example<'_>> {
        vec![
            Example {
                example: "iso init add-auth | get 0.branch",
                description: "Create a thread from the current branch",
                result: Some(Value::test_string("thread-1-add-auth")),
            },
            Example {
                example: "iso init fix-a fix-b --base dev --task 'flaky tests' | select id name base task",
                description: "Create two threads from branch dev",
                result: Some(Value::test_list(vec![
                    Value::test_record(nu_protocol::record! {
                        "id" => Value::test_int(2), "name" => Value::test_string("fix-a"),
                        "base" => Value::test_string("dev"), "task" => Value::test_string("flaky tests"),
                    }),
                    Value::test_record(nu_protocol::record! {
                        "id" => Value::test_int(3), "name" => Value::test_string("fix-b"),
                        "base" => Value::test_string("dev"), "task" => Value::test_string("flaky tests"),
                    }),
                ])),
            },
            Example {
                example: "iso init spike | get 0.ports",
                description: "The new thread's ports",
                result: Some(Value::test_record(nu_protocol::record! {
                    "api" => Value::test_int(10402), "postgres" => Value::test_int(10400),
                    "redis" => Value::test_int(10401), "worker" => Value::test_int(10403),
                })),
            },
            Example {
                example: "iso init --branch dev review-dev | get 0.branch",
                description: "A thread on the existing branch dev (no branch is made)",
                result: Some(Value::test_string("dev")),
            },
        ]
    }

    fn run(&self, _plugin: &IsoPlugin, engine: &EngineInterface, call: &EvaluatedCall, _input: &Value) -> Result<Value, LabeledError> {
        let head = call.head;
        let names: Vec<Spanned<String>> = call.rest(0)?;
        let base: Option<Spanned<String>> = call.get_flag("base")?;
        let branch: Option<Spanned<String>> = call.get_flag("branch")?;
        if names.is_empty() && branch.is_none() {
            return Err(LabeledError::new("iso init needs a thread name or --branch").with_label("no name given", head));
        }
        let opts = InitOptions {
            base: base.as_ref().map(|b| b.item.clone()),
            task: call.get_flag("task")?,
            no_services: call.has_flag("no-services")?,
            context: None,
            seed_from: call.get_flag("seed-from")?,
            no_seed: call.has_flag("no-seed")?,
            branch: branch.as_ref().map(|b| b.item.clone()),
        };
        let project = super::project(engine, head)?;
        let inputs: Vec<String> = names.iter().map(|n| n.item.clone()).collect();
        let bulk = lifecycle::init::init_many(&project, &inputs, &opts, &Silent);
        // With --branch the one result is about the branch (or the name).
        let names: Vec<Spanned<String>> = match &branch {
            Some(b) if names.len() != 1 => vec![Spanned { item: b.item.clone(), span: b.span }],
            _ => names,
        };
        let mut created = Vec::new();
        let mut failed = Vec::new();
        for (item, name) in bulk.items.into_iter().zip(&names) {
            match item.result {
                // As `iso threads` shows it (last_activity, agent).
                Ok(t) => created.push((lifecycle::view::as_shown(&project, t), item.notes)),
                Err(e) => failed.push(super::error(&e, head, Spans { subject: Some(name.span), base: base.as_ref().map(|b| b.span) })),
            }
        }
        if failed.is_empty() {
            let rows = created.iter().map(|(t, notes)| with_messages(thread_value(t, Detail::Row, &Extras::default(), head), notes, head)).collect();
            return Ok(Value::list(rows, head));
        }
        if names.len() == 1 {
            return Err(failed.pop().expect("one failure"));
        }
        Err(partial("created", &created.iter().map(|(t, _)| format!("{} ({})", t.id, t.name)).collect::<Vec<_>>(), names.len(), failed, head))
    }
}

/// A thread row with the notes of its init as `messages` (list<string>).
fn with_messages(row: Value, notes: &[String], head: nu_protocol::Span) -> Value {
    let messages = Value::list(notes.iter().map(|n| Value::string(n, head)).collect(), head);
    match row {
        Value::Record { val, .. } => {
            let mut r = val.into_owned();
            r.push("messages", messages);
            Value::record(r, head)
        }
        other => other,
    }
}

/// Some of several operations failed: say what was done, and carry each
/// failure (with its own label) as an inner error.
pub(super) fn partial(done_word: &str, done: &[String], total: usize, failed: Vec<LabeledError>, head: nu_protocol::Span) -> LabeledError {
    let done_text = if done.is_empty() { String::new() } else { format!(": {}", done.join(", ")) };
    let mut e = LabeledError::new(format!("{} of {total} failed; {done_word} {}{done_text}", failed.len(), done.len()))
        .with_label(format!("{} failed", failed.len()), head)
        .with_code("iso::partial");
    for f in failed {
        e = e.with_inner(ShellError::from(f));
    }
    e
}
