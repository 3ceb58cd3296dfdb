//! `iso threads`: every thread as a table row.

use nu_plugin::{EngineInterface, EvaluatedCall, SimplePluginCommand};
use nu_protocol::{record, Example, LabeledError, Signature, Type, Value};

use super::value::{thread_value, Detail, Extras};
use super::IsoPlugin;
use crate::lifecycle;

pub struct IsoThreads;

impl SimplePluginCommand for IsoThreads {
    type Plugin = IsoPlugin;

    fn name(&self) -> &str {
        "iso threads"
    }

    fn description(&self) -> &str {
        "List the repository's threads as a table (like `iso list --json`)."
    }

    fn extra_description(&self) -> &str {
        "Columns: id (int), name, branch, base, status, ports (record of slot name to int), port_block ({start, end}), \
         worktree and env_file (paths), task, pr (int), links (record of name to URL), created and updated (datetime), error, agent (null, or a record: \
         state, message, since (datetime), reported_by, run (int), alive (bool), exit_code (int), last_output (datetime)), \
         last_activity (datetime: the latest agent report, agent output, commit on the branch or status change). Rows are in id order; \
         with --all the removed threads follow, oldest first. The examples assume threads 1 `add-auth` (active) and \
         2 `fix-login` (merged), with the default ports (base 10000, block 100), and thread `old-spike` cleaned up."
    }

    fn signature(&self) -> Signature {
        Signature::build(self.name())
            .switch("all", "Also list removed threads", Some('a'))
            .input_output_type(Type::Nothing, Type::table())
            .category(super::category())
    }

    fn search_terms(&self) -> Vec<&str> {
        vec!["list", "ls", "worktrees", "status", "iso list"]
    }

    fn examples(&self) -> Vec<Example<'_>> {
        vec![
            Example {
                example: "iso threads | where status == active | get name",
                description: "Names of the active threads",
                result: Some(Value::test_list(vec![Value::test_string("add-auth")])),
            },
            Example {
                example: "iso threads | get ports.api",
                description: "Each thread's api port, as ints",
                result: Some(Value::test_list(vec![Value::test_int(10102), Value::test_int(10202)])),
            },
            Example {
                example: "iso threads | sort-by created | last | get branch",
                description: "The branch of the newest thread",
                result: Some(Value::test_string("thread-2-fix-login")),
            },
            Example {
                example: "iso threads | select id name status | first",
                description: "Pick columns",
                result: Some(Value::test_record(record! {
                    "id" => Value::test_int(1),
                    "name" => Value::test_string("add-auth"),
                    "status" => Value::test_string("active"),
                })),
            },
            Example {
                example: "iso threads --all | where status == removed | get name",
                description: "Threads that were cleaned up",
                result: Some(Value::test_list(vec![Value::test_string("old-spike")])),
            },
            Example { example: "iso threads | get created | describe", description: "Times are datetimes", result: Some(Value::test_string("list<datetime>")) },
        ]
    }

    fn run(&self, _plugin: &IsoPlugin, engine: &EngineInterface, call: &EvaluatedCall, _input: &Value) -> Result<Value, LabeledError> {
        let head = call.head;
        let all = call.has_flag("all")?;
        let project = super::project(engine, head)?;
        // The listing's records: agent status and last activity as they are now.
        let listing = lifecycle::view::list(&project, all, false).map_err(|e| super::error(&e, head, Default::default()))?;
        let rows = listing.threads.iter().map(|t| thread_value(t, Detail::Row, &Extras::default(), head)).collect();
        Ok(Value::list(rows, head))
    }
}
