//! `iso thread <thread>`: everything about one thread.

use nu_plugin::{EngineInterface, EvaluatedCall, SimplePluginCommand};
use nu_protocol::{Example, LabeledError, Signature, SyntaxShape, Type, Value};

use super::value::{thread_value, Detail, Extras};
use super::{IsoPlugin, Spans};

pub struct IsoThread;

impl SimplePluginCommand for IsoThread {
    type Plugin = IsoPlugin;

    fn name(&self) -> &str {
        "iso thread"
    }

    fn description(&self) -> &str {
        "One thread as a record, with everything `iso status --json` has."
    }

    fn extra_description(&self) -> &str {
        "The thread is named by id, name or branch (tried in that order). Besides the columns of `iso threads` the record has \
         created_branch (bool), owner (the process working on it, or null), steps and history (a list of {at, event, detail}). \
         The examples assume threads 1 `add-auth` (active) and 2 `fix-login` (merged) with the default ports."
    }

    fn signature(&self) -> Signature {
        Signature::build(self.name())
            .required("thread", SyntaxShape::Any, "Thread id, name or branch")
            .input_output_type(Type::Nothing, Type::record())
            .category(super::category())
    }

    fn search_terms(&self) -> Vec<&str> {
        vec!["status", "show", "worktree", "path", "iso status"]
    }

    fn examples(&self) -> Vec<Example<'_>> {
        vec![
            Example { example: "iso thread add-auth | get branch", description: "A thread by name", result: Some(Value::test_string("thread-1-add-auth")) },
            Example { example: "iso thread 2 | get status", description: "A thread by id", result: Some(Value::test_string("merged")) },
            Example { example: "iso thread add-auth | get ports.postgres", description: "A port as an int", result: Some(Value::test_int(10100)) },
            Example {
                example: "iso thread add-auth | get worktree | path basename",
                description: "The worktree path (`cd (iso thread add-auth | get worktree)` goes there)",
                result: Some(Value::test_string("thread-1")),
            },
            Example {
                example: "iso thread add-auth | get history.event",
                description: "What happened to the thread",
                result: Some(Value::test_list(vec![Value::test_string("reserved"), Value::test_string("created")])),
            },
        ]
    }

    fn run(&self, _plugin: &IsoPlugin, engine: &EngineInterface, call: &EvaluatedCall, _input: &Value) -> Result<Value, LabeledError> {
        let head = call.head;
        let arg: Value = call.req(0)?;
        let sel = super::selector(&arg)?;
        let project = super::project(engine, head)?;
        let t = crate::lifecycle::find(&project, &sel.item).map_err(|e| super::error(&e, head, Spans { subject: Some(sel.span), ..Default::default() }))?;
        let t = crate::lifecycle::view::as_shown(&project, t);
        let worktrees = crate::lifecycle::view::worktree_states(&t);
        Ok(thread_value(&t, Detail::Full, &Extras { worktrees, ..Default::default() }, head))
    }
}
