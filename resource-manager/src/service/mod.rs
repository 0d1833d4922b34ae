//! The pool's rules (which node to hand out, when to start another, when a slot frees, when a
//! node has failed, what survives a restart of the manager) and the ports through which nodes
//! are started, stopped and watched and the pool's state is persisted. Pure: every decision
//! takes `now_ms` as an argument and returns the actions to carry out; no clock, no I/O.

mod pool;
mod provider;
pub mod recovery;

pub use pool::{
    Action, FailedNode, IdKind, MAX_ID_BYTES, MISSED_PROBES_TO_FAIL, Pool, PoolError, PoolRules,
    Reservation, check_id,
};
pub use provider::{GoneNode, NodeProvider, ProviderError, StartFailure};
pub use recovery::{
    FoundNode, NodeIdentity, SavedState, Settled, Sighting, StateError, StateStore,
};
