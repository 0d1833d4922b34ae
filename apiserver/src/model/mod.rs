//! The API server's data model: plain data, no I/O.
//!
//! - [`function`]: a deployable function ([`FunctionSpec`]), a deployed one ([`Function`]) and
//!   the built-in [`Handler`]s with the limits a function must respect.
//! - [`kind`]: what a function runs ([`HandlerRef`]): a built-in handler, or a bundle of the
//!   user's own code (a command or a Docker image) named `bundle:<sha256>` on the wire.
//! - [`bundle`]: a bundle's canonical `function.json` and the hash that names it.
//! - [`invocation`]: what one invocation carries between the API server, the scheduler and a
//!   node (the placement the scheduler hands out, the execution a node reports).
//! - [`keys`]: API keys, their scopes (`invoke`, `admin`), the keys file's format and the
//!   table a call's key is looked up in (in constant time).
//! - [`routing`]: the service layer's data: versions, aliases with weights, a function's
//!   route policy (rules, fallback, circuit breaker).

pub mod bundle;
pub mod function;
pub mod invocation;
pub mod keys;
pub mod kind;
pub mod routing;

pub use function::{
    Function, FunctionSpec, Handler, MAX_MEMORY_BYTES, MAX_NAME_CHARS, MAX_TIMEOUT_MS, MIB,
    MIN_MEMORY_BYTES, MIN_TIMEOUT_MS,
};
pub use invocation::{
    AcquireRequest, Execution, Failure, NodeError, NodeErrorKind, Placement, RemoteCode,
    RemoteError, ReturnRequest, Undelivered,
};
pub use kind::{BundleKind, BundleRef, CodeFile, HandlerRef, Protocol};
