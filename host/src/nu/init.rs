//! `iso init <name>...`: create threads and return their records.

use nu_plugin::{EngineInterface, EvaluatedCall, SimplePluginCommand};
use nu_protocol::{Example, LabeledError, ShellError, Signature, Spanned, SyntaxShape, Type, Value};

use super::value::{thread_value, Detail, Extras};
use super::{IsoPlugin, Spans};
use crate::lifecycle::{self, InitOptions};
use crate::progress::Silent;

pub struct IsoInit;

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
         If some names fail, the others are still created and the error lists both. \
         Each row has a `messages` column: what the hooks said (and other notes, such as a skipped port block). \
         The examples start from a repository with no threads and the default ports."
    }

    fn signature(&self) -> Signature {
        Signature::build(self.name())
            .required("name", SyntaxShape::String, "Name of the thread")
            .rest("more", SyntaxShape::String, "More threads to create, with the same options")
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
        ]
    }

    fn run(&self, _plugin: &IsoPlugin, engine: &EngineInterface, call: &EvaluatedCall, _input: &Value) -> Result<Value, LabeledError> {
        let head = call.head;
        let names: Vec<Spanned<String>> = call.rest(0)?;
        let base: Option<Spanned<String>> = call.get_flag("base")?;
        let opts = InitOptions {
            base: base.as_ref().map(|b| b.item.clone()),
            task: call.get_flag("task")?,
            no_services: call.has_flag("no-services")?,
            context: None,
            seed_from: call.get_flag("seed-from")?,
            no_seed: call.has_flag("no-seed")?,
        };
        let project = super::project(engine, head)?;
        let inputs: Vec<String> = names.iter().map(|n| n.item.clone()).collect();
        let bulk = lifecycle::init::init_many(&project, &inputs, &opts, &Silent);
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
