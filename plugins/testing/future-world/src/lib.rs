//! Test-only: a hook plugin built against a made-up, incompatible future
//! version of iso's contract (`iso:hooks@0.2.0`, in `wit/` beside this
//! crate, where `handle` takes an extra `string`). It exports
//! `iso:hooks/handler@0.2.0` and not `@0.1.*`, so iso must refuse to load it
//! with a message about the contract version instead of calling it.

wit_bindgen::generate!({
    path: "wit",
    world: "iso:hooks/hook@0.2.0",
    generate_all,
});

use exports::iso::hooks::handler::Guest;
use iso::hooks::types::{Event, Failure, Outcome};

struct FutureWorld;

export!(FutureWorld);

impl Guest for FutureWorld {
    fn handle(_event: Event, extra: String) -> Result<Outcome, Failure> {
        Ok(Outcome { messages: vec![format!("future-world handled the event ({extra})")], env: Vec::new() })
    }
}
