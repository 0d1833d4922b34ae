//! The `faas` command's library: everything the command does, so integration tests drive
//! the same code.
//!
//! - [`platform`]: start the whole platform locally (resource manager, scheduler and API
//!   server in this process; node services and containers as child processes) and stop it.
//! - [`client`]: calls to the API server (invoke with the platform's metadata, list, deploy).
//! - [`demo`]: the mixed sample load of `faas demo` and its table.
//! - [`errors`]: errors as one line a person reads.
//! - [`exit`]: the exit codes a script tells failures apart by, decided in one place.
//! - [`load`]: an open-loop load through the API server, recorded call by call, and the
//!   fault figures of its records (the integration tests and `examples/fault_bench.rs`).
//! - [`faults`]: the fault bench's injector: kills, pauses and restarts on a
//!   [`platform::LocalPlatform`] (`faas replay --faults`).
//! - [`canary`]: `faas replay --scenario canary`: a canary release at 90/10, a latency
//!   regression, the breaker and the fallback, a rollback; traffic per version over time.
//! - [`sweep`]: `faas sweep`: fixed keep-alive windows against named policies, cold starts
//!   against idle memory-time, as a table and an SVG (`faas_e2e::pareto`).

pub mod bench;
pub mod canary;
pub mod client;
pub mod demo;
pub mod errors;
pub mod events;
pub mod exit;
pub mod faults;
pub mod load;
pub mod platform;
pub mod sweep;
