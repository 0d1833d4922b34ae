//! The `faas` command's library: everything the command does, so integration tests drive
//! the same code.
//!
//! - [`platform`]: start the whole platform locally (resource manager, scheduler and API
//!   server in this process; node services and containers as child processes) and stop it.
//! - [`client`]: calls to the API server (invoke with the platform's metadata, list, deploy).
//! - [`demo`]: the mixed sample load of `faas demo` and its table.
//! - [`errors`]: errors as one line a person reads.

pub mod bench;
pub mod client;
pub mod demo;
pub mod errors;
pub mod platform;
