//! Test-only: a hook plugin built against iso:hooks@0.1.0 (the copy of the
//! world in `wit/` beside this crate), before 0.1.1 added `set-link` and
//! `link` to the `host` interface. It imports `iso:hooks/host@0.1.0` and
//! exports `iso:hooks/handler@0.1.0`; iso must still link and call it.
//! Its `wit/deps` is a link to iso's own WASI packages (`../../../wit/deps`):
//! 0.1.1 changed only `host`, so the old world uses the same WASI ones.

wit_bindgen::generate!({
    path: "wit",
    world: "iso:hooks/hook@0.1.0",
    generate_all,
});

use exports::iso::hooks::handler::Guest;
use iso::hooks::host;
use iso::hooks::types::{EnvVar, Event, Failure, Outcome};

struct V010;

export!(V010);

impl Guest for V010 {
    fn handle(event: Event) -> Result<Outcome, Failure> {
        host::log(host::Level::Info, "v0.1.0 plugin called");
        Ok(Outcome {
            messages: vec![format!("v0.1.0 plugin handled {} of thread {} (config {})", event.name, event.thread.id, host::config())],
            env: vec![EnvVar { name: "OLD_WORLD".into(), value: "linked".into() }],
        })
    }
}
