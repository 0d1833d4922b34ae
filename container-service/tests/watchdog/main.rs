//! Command functions (`--bundle`), with real processes: the examples in
//! `examples/functions/`, and test bundles written to temporary directories, run through the
//! in-process server (`run`), the `Watchdog` API and the `container-service` binary.
//!
//! python3 must be installed: without it these tests fail with a message, never skip.
//!
//! Files: `fixtures.rs` (bundles, calls, the binary as a child), `calls.rs` (calls that work,
//! timeouts), `failures.rs` (dying, refused and over-limit functions, stops).

#[path = "../support/mod.rs"]
mod support;

mod calls;
mod failures;
mod fixtures;
