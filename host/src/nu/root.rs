//! `iso`: the help overview of the plugin's commands.

use nu_plugin::{EngineInterface, EvaluatedCall, SimplePluginCommand};
use nu_protocol::{Example, LabeledError, Signature, Type, Value};

use super::IsoPlugin;

pub struct Iso;

impl SimplePluginCommand for Iso {
    type Plugin = IsoPlugin;

    fn name(&self) -> &str {
        "iso"
    }

    fn description(&self) -> &str {
        "Isolated threads of work (git worktree, branch, ports) as Nushell data."
    }

    fn extra_description(&self) -> &str {
        "Run one of the subcommands: `iso threads`, `iso thread`, `iso init`, `iso adopt`, `iso cleanup`, `iso ports`, `iso snapshots`.\n\
         The repository is the one containing $env.PWD; iso.toml and the ISO_* variables of $env apply as for the iso CLI."
    }

    fn signature(&self) -> Signature {
        Signature::build(self.name()).input_output_type(Type::Nothing, Type::String).category(super::category())
    }

    fn search_terms(&self) -> Vec<&str> {
        vec!["worktree", "thread", "agent", "branch", "ports"]
    }

    fn examples(&self) -> Vec<Example<'_>> {
        vec![Example { example: "iso | str contains 'iso threads'", description: "Show the iso subcommands", result: Some(Value::test_bool(true)) }]
    }

    fn run(&self, _plugin: &IsoPlugin, engine: &EngineInterface, call: &EvaluatedCall, _input: &Value) -> Result<Value, LabeledError> {
        Ok(Value::string(engine.get_help()?, call.head))
    }
}
