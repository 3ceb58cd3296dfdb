//! `iso ports`: the port allocation table.

use nu_plugin::{EngineInterface, EvaluatedCall, SimplePluginCommand};
use nu_protocol::{record, Example, LabeledError, Record, Signature, Type, Value};

use super::value::{port_range_value, ports_value};
use super::IsoPlugin;

pub struct IsoPorts;

impl SimplePluginCommand for IsoPorts {
    type Plugin = IsoPlugin;

    fn name(&self) -> &str {
        "iso ports"
    }

    fn description(&self) -> &str {
        "The port allocation table: each live thread's block and named ports."
    }

    fn extra_description(&self) -> &str {
        "Columns: thread (int), name, block ({start, end}), ports (record of slot name to int), like `iso ports --json`. \
         Thread N holds the block starting at ports.base + N × ports.block_size unless another repository holds it (then the next free one). \
         With --all: every lease of this user's machine-wide port ledger (repo, repo_id, thread, name, block, this_repo, stale), like `iso ports --all --json`. \
         The examples assume threads 1 `add-auth` and 2 `fix-login` with the default ports."
    }

    fn signature(&self) -> Signature {
        Signature::build(self.name())
            .switch("all", "Every lease on this machine (all repositories), and which are stale", None)
            .input_output_type(Type::Nothing, Type::table())
            .category(super::category())
    }

    fn search_terms(&self) -> Vec<&str> {
        vec!["port", "allocation", "block", "network"]
    }

    fn examples(&self) -> Vec<Example<'_>> {
        vec![
            Example {
                example: "iso ports | get block.start",
                description: "Where each thread's block starts",
                result: Some(Value::test_list(vec![Value::test_int(10100), Value::test_int(10200)])),
            },
            Example {
                example: "iso ports | where name == fix-login | get 0.ports",
                description: "One thread's named ports",
                result: Some(Value::test_record(record! {
                    "api" => Value::test_int(10202), "postgres" => Value::test_int(10200),
                    "redis" => Value::test_int(10201), "worker" => Value::test_int(10203),
                })),
            },
        ]
    }

    fn run(&self, _plugin: &IsoPlugin, engine: &EngineInterface, call: &EvaluatedCall, _input: &Value) -> Result<Value, LabeledError> {
        let head = call.head;
        let project = super::project(engine, head)?;
        if call.has_flag("all")? {
            return machine(&project, head);
        }
        let rows = crate::lifecycle::view::ports(&project)
            .map_err(|e| super::error(&e, head, Default::default()))?
            .into_iter()
            .map(|t| {
                let mut r = Record::new();
                r.push("thread", Value::int(t.thread.into(), head));
                r.push("name", Value::string(&t.name, head));
                r.push("block", port_range_value(t.block, head));
                r.push("ports", ports_value(&t.ports, head));
                Value::record(r, head)
            })
            .collect();
        Ok(Value::list(rows, head))
    }
}

fn machine(project: &crate::project::Project, head: nu_protocol::Span) -> Result<Value, LabeledError> {
    let rows = crate::lifecycle::machine::machine_ports(project)
        .map_err(|e| super::error(&e, head, Default::default()))?
        .into_iter()
        .map(|l| {
            let mut r = Record::new();
            r.push("repo", Value::string(l.repo.display().to_string(), head));
            r.push("repo_id", Value::string(&l.repo_id, head));
            r.push("thread", Value::int(l.thread.into(), head));
            r.push("name", Value::string(&l.name, head));
            r.push("block", port_range_value(l.block, head));
            r.push("this_repo", Value::bool(l.this_repo, head));
            r.push("stale", l.stale.map_or(Value::nothing(head), |why| Value::string(why, head)));
            Value::record(r, head)
        })
        .collect();
    Ok(Value::list(rows, head))
}
