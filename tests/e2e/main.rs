//! iso's end-to-end tests: one test binary with a module per suite (as
//! ripgrep's tests are), so Cargo builds and links one executable and the
//! suites' tests run side by side in one process.
//!
//! Every suite drives the real binaries (`iso`, `nu_plugin_iso`) against
//! real git repositories made in temporary directories ([`support`]); every
//! test repository gets its own port window from [`support::ports`].

mod support;

mod agents;
mod api;
mod branches;
mod chat;
mod cli;
mod compose;
mod copy;
mod discover;
mod docker;
mod hooks;
mod hostile;
mod hostile_hooks;
mod machine;
mod repos;
mod seed;
// `nu_plugin_iso` (and so `CARGO_BIN_EXE_nu_plugin_iso`) exists only with
// the `nu` feature, which is on by default.
#[cfg(feature = "nu")]
mod nu;
