//! `iso cleanup <thread>...`: remove threads' worktrees and free their ports.

use nu_plugin::{EngineInterface, EvaluatedCall, SimplePluginCommand};
use nu_protocol::{Example, LabeledError, Signature, Spanned, SyntaxShape, Type, Value};

use super::value::{thread_value, Detail, Extras};
use super::{IsoPlugin, Spans};
use crate::lifecycle::{self, CleanupOptions};
use crate::progress::Silent;

pub struct IsoCleanup;

impl SimplePluginCommand for IsoCleanup {
    type Plugin = IsoPlugin;

    fn name(&self) -> &str {
        "iso cleanup"
    }

    fn description(&self) -> &str {
        "Remove threads' worktrees and free their ports (branches are kept); returns the removed records."
    }

    fn extra_description(&self) -> &str {
        "Threads are named by id, name or branch as arguments, or piped in as ids, names or rows of `iso threads`. \
         Cleanup refuses to throw away uncommitted changes, or with --delete-branch commits that are on no other \
         branch, unless --force. The examples assume threads 1 `add-auth` (active) and 2 `fix-login` (merged)."
    }

    fn signature(&self) -> Signature {
        Signature::build(self.name())
            .rest("threads", SyntaxShape::Any, "Thread ids, names or branches")
            .switch("delete-branch", "Delete the branch too (refused if it has commits on no other branch, unless --force)", None)
            .switch("force", "Throw away uncommitted changes and unmerged commits, override hooks' refusal", Some('f'))
            .switch("keep-volumes", "Keep the stack's named volumes (its data); containers and network are still removed", None)
            .input_output_types(vec![
                (Type::Nothing, Type::table()),
                (Type::table(), Type::table()),
                (Type::record(), Type::table()),
                (Type::list(Type::Any), Type::table()),
                (Type::Int, Type::table()),
                (Type::String, Type::table()),
            ])
            .category(super::category())
    }

    fn search_terms(&self) -> Vec<&str> {
        vec!["remove", "rm", "clean", "delete", "free"]
    }

    fn examples(&self) -> Vec<Example<'_>> {
        vec![
            Example {
                example: "iso cleanup add-auth | get 0.status",
                description: "Remove a thread by name; its branch is kept",
                result: Some(Value::test_string("removed")),
            },
            Example {
                example: "iso threads | where status == merged | iso cleanup --delete-branch | get name",
                description: "Remove every merged thread and its branch",
                result: Some(Value::test_list(vec![Value::test_string("fix-login")])),
            },
        ]
    }

    fn run(&self, _plugin: &IsoPlugin, engine: &EngineInterface, call: &EvaluatedCall, input: &Value) -> Result<Value, LabeledError> {
        let head = call.head;
        let opts = CleanupOptions {
            delete_branch: call.has_flag("delete-branch")?,
            force: call.has_flag("force")?,
            keep_volumes: call.has_flag("keep-volumes")?,
            kill_ports: false,
        };
        let args: Vec<Value> = call.rest(0)?;
        let selectors: Vec<Spanned<String>> = if !args.is_empty() {
            args.iter().map(super::selector).collect::<Result<_, _>>()?
        } else {
            match input {
                Value::Nothing { .. } => {
                    return Err(LabeledError::new("which threads?").with_label("give thread ids or names, or pipe in rows of `iso threads`", head))
                }
                Value::List { vals, .. } => vals.iter().map(super::selector).collect::<Result<_, _>>()?,
                one => vec![super::selector(one)?],
            }
        };
        let project = super::project(engine, head)?;
        let inputs: Vec<String> = selectors.iter().map(|s| s.item.clone()).collect();
        let bulk = lifecycle::cleanup::cleanup_many(&project, &inputs, opts, &Silent);
        let mut removed = Vec::new();
        let mut failed = Vec::new();
        for (item, sel) in bulk.items.into_iter().zip(&selectors) {
            match item.result {
                Ok(t) => removed.push(t),
                Err(e) => failed.push(super::error(&e, head, Spans { subject: Some(sel.span), ..Default::default() })),
            }
        }
        if failed.is_empty() {
            let rows = removed.iter().map(|t| thread_value(t, Detail::Row, &Extras::default(), head)).collect();
            return Ok(Value::list(rows, head));
        }
        if selectors.len() == 1 {
            return Err(failed.pop().expect("one failure"));
        }
        let done: Vec<String> = removed.iter().map(|t| format!("{} ({})", t.id, t.name)).collect();
        Err(super::init::partial("removed", &done, selectors.len(), failed, head))
    }
}
