//! The pool's rules (which node to hand out, when to start another, when a slot frees, when a
//! node has failed) and what survives a restart of the manager. Pure: every decision takes
//! `now_ms` as an argument and returns the actions to carry out; no clock, no I/O, no async.
//! The async driver that carries the actions out is [`crate::service`].

pub mod pool;
pub mod recovery;

pub use pool::{
    Action, FailedNode, IdKind, MAX_ID_BYTES, MISSED_PROBES_TO_FAIL, Pool, PoolError, PoolRules,
    Reservation, check_id,
};
pub use recovery::{FoundNode, NodeIdentity, SavedState, Settled, Sighting, merge_found, settle};
