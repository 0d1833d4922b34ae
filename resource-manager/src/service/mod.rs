//! The pool's rules (which node to hand out, when to start another, when a slot frees, when a
//! node has failed) and the port through which nodes are started, stopped and watched. Pure:
//! every decision takes `now_ms` as an argument and returns the actions to carry out; no
//! clock, no I/O.

mod pool;
mod provider;

pub use pool::{
    Action, FailedNode, IdKind, MAX_ID_BYTES, MISSED_PROBES_TO_FAIL, Pool, PoolError, PoolRules,
    Reservation, check_id,
};
pub use provider::{GoneNode, NodeProvider, ProviderError, StartFailure};
