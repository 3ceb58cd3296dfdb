//! `iso snapshots`: the repository's volume snapshots (`iso snapshot list`).

use nu_plugin::{EngineInterface, EvaluatedCall, SimplePluginCommand};
use nu_protocol::{Example, LabeledError, Record, Signature, Type, Value};

use super::value::date_value;
use super::IsoPlugin;

pub struct IsoSnapshots;

impl SimplePluginCommand for IsoSnapshots {
    type Plugin = IsoPlugin;

    fn name(&self) -> &str {
        "iso snapshots"
    }

    fn description(&self) -> &str {
        "The volume snapshots of this repository, usable as `iso init --seed-from snapshot:NAME`."
    }

    fn extra_description(&self) -> &str {
        "Columns: name, from (the thread it was saved from, \"3 (api)\"), created (date), volumes (record of stack volume to engine volume), \
         missing (list of stack volumes the snapshot was saved with that are gone from the engine), like `iso snapshot list --json`. \
         Save and remove them with `^iso snapshot save NAME --from THREAD` and `^iso snapshot rm NAME`."
    }

    fn signature(&self) -> Signature {
        Signature::build(self.name()).input_output_type(Type::Nothing, Type::table()).category(super::category())
    }

    fn search_terms(&self) -> Vec<&str> {
        vec!["snapshot", "seed", "volume", "database"]
    }

    fn examples(&self) -> Vec<Example<'_>> {
        vec![
            Example {
                example: "iso snapshots | length",
                description: "How many snapshots the repository has (none yet here)",
                result: Some(Value::test_int(0)),
            },
            Example {
                example: "iso snapshots | where missing != [] | get name",
                description: "The snapshots that lost a volume (`iso doctor` reports them too)",
                result: Some(Value::test_list(vec![])),
            },
        ]
    }

    fn run(&self, _plugin: &IsoPlugin, engine: &EngineInterface, call: &EvaluatedCall, _input: &Value) -> Result<Value, LabeledError> {
        let head = call.head;
        let project = super::project(engine, head)?;
        let rows = crate::lifecycle::seed::snapshot_list(&project)
            .map_err(|e| super::error(&e, head, Default::default()))?
            .into_iter()
            .map(|s| {
                let mut r = Record::new();
                r.push("name", Value::string(&s.name, head));
                r.push("from", Value::string(&s.from, head));
                let created = chrono::DateTime::parse_from_rfc3339(&s.created).map(|d| date_value(d.to_utc(), head));
                r.push("created", created.unwrap_or_else(|_| Value::nothing(head)));
                let mut vols = Record::new();
                for (k, v) in &s.volumes {
                    vols.push(k, Value::string(v, head));
                }
                r.push("volumes", Value::record(vols, head));
                r.push("missing", Value::list(s.missing.iter().map(|m| Value::string(m, head)).collect(), head));
                Value::record(r, head)
            })
            .collect();
        Ok(Value::list(rows, head))
    }
}
