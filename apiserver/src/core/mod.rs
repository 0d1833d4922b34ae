//! The API server's pure rules: no async, no I/O, no clock (time is an argument), so they
//! are tested with plain values.
//!
//! - [`access`]: who may make a call: the key it presents, its scope, the keyless modes.
//! - [`limits`]: per-account concurrency and rate limits on invocations.
//! - [`retry`]: when a failed asynchronous delivery is tried again (backoff with jitter).
//! - [`timers`]: which slots of a cron schedule fire now, and the catch-up rule.
//!
//! Other pure rules still live beside the service code that uses them, because they share
//! its error type (`RegistryError`) and moving them would move that too: what a function
//! runs (`service::kind`), the routing rules (`service::routing::{validate, resolve,
//! breaker}`). `service::access` and `service::limits` re-export these modules, the paths
//! the rest of the platform knows.

pub mod access;
pub mod limits;
pub mod retry;
pub mod timers;
