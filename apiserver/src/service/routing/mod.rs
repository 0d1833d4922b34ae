//! The service layer (Alibaba's NBF-FaaS broker): versions, aliases with weighted traffic,
//! rule and dynamic routing, fallback on failure, latency circuit breaking, traffic share and
//! fast rollback — all in front of the scheduler, which sees each version as a function of
//! its own (`hello:3`), so the contest protocol does not change. See `docs/ROUTING.md`.
//!
//! - [`catalog`]: versions, aliases and route policies kept beside the function table and
//!   written through to the database (publish, set and roll back an alias, set routes).
//! - [`validate`]: the rules they follow, each refusal naming its field.
//! - [`resolve`]: pure: from the name a call gives (`NAME`, `NAME:N`, `NAME:ALIAS`), its
//!   routing id and parameters, its event and the dice, to a plan (the concrete target, the
//!   fallback, the breaker settings).
//! - [`breaker`]: pure: one target's circuit breaker, time as an argument.
//! - [`router`]: the broker: plans each call, runs it with the invoker, degrades to the
//!   fallback, counts per target.

pub mod breaker;
pub mod catalog;
pub mod resolve;
pub mod router;
#[cfg(test)]
mod tests;
pub mod validate;

pub use breaker::{BreakerState, Transition};
pub use catalog::{AliasChange, Routing};
pub use resolve::{Concrete, Dice, RouteContext};
pub use router::{
    FALLBACK_SUFFIX, FallbackNote, FallbackReason, RouteNote, Routed, Router, TargetStatus,
};
