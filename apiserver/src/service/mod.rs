//! The API server's business rules.
//!
//! - [`registry`]: deploy, get, list and delete functions, with the validation rules; read
//!   from memory, written through to the database (`store::FunctionDao`) when there is one.
//! - [`kind`]: the rules of what a function runs: a built-in handler, a command or an image,
//!   and the code files a command function uploads.
//! - [`bundles`]: a command or image function's bundle, named by its hash and stored before
//!   the database row that names it.
//! - [`file`](mod@file): the functions file format (`deploy/functions.toml`, `faas deploy FILE`).
//! - [`invoke`]: one invocation, start to end: validate, acquire a container from the
//!   scheduler, run the function on the node, always give the container back, and run it
//!   once more on another container when its event provably never reached the function.
//!   It talks to the scheduler, the nodes and the clock only through [`ports`].
//! - [`ports`]: the traits the invoke path reaches the outside through (scheduler, nodes,
//!   clock), implemented by the api layer.
//! - [`async_calls`]: asynchronous invocations: their states and results, and the
//!   `InvocationStore` seam of the durable queue (`store::sqlite::queue`, `store::jetstream`).
//! - [`events`]: topics (subscriptions with filters, emit) and chains (what runs after an
//!   asynchronous call ends): their rules and the `EventStore` seam.
//! - [`access`], [`limits`]: who may make a call and how many an account may make: pure
//!   rules, kept in [`crate::core`] and re-exported here.
//! - [`routing`]: the service layer in front of the invoker: versions, aliases, routes,
//!   fallback and circuit breaking.

pub mod async_calls;
pub mod bundles;
pub mod events;
pub mod file;
pub mod invoke;
pub mod kind;
pub mod ports;
pub mod registry;
pub mod routing;
pub mod timers;

pub use crate::core::{access, limits};

pub use file::{DEFAULT_FUNCTIONS_TOML, parse_functions_toml};
pub use invoke::{
    Clock, InvokeError, InvokeRequest, Invoked, Invoker, MAY_HAVE_RUN, NodeCall, NodePort,
    SchedulerPort,
};
pub use registry::{Deployed, Opened, Registry, RegistryError, validate_spec};
