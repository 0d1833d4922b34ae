//! The pool's rules (which node to hand out, when to start another, when a slot frees) and
//! the port through which nodes are started and stopped. Pure: every decision takes `now_ms`
//! as an argument and returns the actions to carry out; no clock, no I/O.

mod pool;
mod provider;

pub use pool::{Action, Pool, PoolError, PoolRules, Reservation};
pub use provider::{NodeProvider, ProviderError};
