#!/usr/bin/env bash
# Per-call cost of hooks: WASM cold / warm and Rhai (see benches/hooks.rs).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
(cd plugins && cargo build --release --locked -q)
cargo run -q --release -p iso --features bench --bin iso-bench-hooks
