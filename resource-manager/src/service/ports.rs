//! The ports the manager ([`crate::service::Manager`]) reaches the outside through, besides
//! the node providers ([`crate::service::NodeProvider`], kept in `provider.rs` beside this
//! file: they are ports too). The api layer implements them: a clock that follows tokio's
//! (`api::Clock`), the node-service client (`api::GrpcNodes`), the Prometheus counters
//! (`api::Counters`) and the state file (`api::StateFile`); tests use in-memory fakes.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;

use crate::core::{NodeIdentity, SavedState};
use crate::model::{FailureReason, NodeEndpoint};
use crate::service::StartFailure;

/// The manager's clock: milliseconds since the Unix epoch that never go backwards within a
/// run.
pub trait Clock: Send + Sync + 'static {
    /// Now.
    fn now_ms(&self) -> i64;
}

/// The manager's calls into node services. Errors are messages for logs and clients.
pub trait NodeCalls: Send + Sync + 'static {
    /// Tells the node service at `endpoint` that `account` owns it now (`Reserve`).
    fn hand_over<'a>(
        &'a self,
        endpoint: &'a NodeEndpoint,
        request_id: &'a str,
        account: &'a str,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<(), String>>;

    /// Asks the node service at `endpoint` who it is (`DescribeNode`), within `timeout`.
    fn identify<'a>(
        &'a self,
        endpoint: &'a NodeEndpoint,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<NodeIdentity, String>>;
}

/// What the manager counts, for its metrics.
pub trait Metrics: Send + Sync + 'static {
    /// A node was handed over to an account.
    fn reserved(&self);
    /// A node was released.
    fn released(&self);
    /// A reserve found no ready node.
    fn exhausted(&self);
    /// A node refused (or never answered) its hand-over.
    fn handover_failed(&self);
    /// A node start began.
    fn node_starting(&self);
    /// A node start failed.
    fn start_failed(&self, kind: StartFailure);
    /// A ready or reserved node failed.
    fn node_failed(&self, reason: FailureReason);
}

/// Everything the manager talks to besides its provider.
#[derive(Clone)]
pub struct Ports {
    pub clock: Arc<dyn Clock>,
    pub nodes: Arc<dyn NodeCalls>,
    pub metrics: Arc<dyn Metrics>,
}

/// Why the saved state could not be read or written. The messages say which file and what to
/// do; a state that cannot be read is never silently replaced.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    #[error(
        "cannot use the state directory {dir}: another resource manager holds its lock ({lock}); stop it, or give this one another --state-dir"
    )]
    Locked { dir: String, lock: String },
    #[error("cannot read the state file {path}: {message}")]
    Unreadable { path: String, message: String },
    #[error(
        "the state file {path} is corrupt ({message}); it was left as it is: move it away to start without the nodes it lists (their processes or containers may still run)"
    )]
    Corrupt { path: String, message: String },
    #[error(
        "the state file {path} has format version {found}, newer than this resource manager's {supported}; run a newer resource manager, or use another --state-dir"
    )]
    Newer {
        path: String,
        found: u64,
        supported: u64,
    },
    #[error(
        "the state file {path} was written by the {found} provider, not {expected}; start with --provider {found}, or use another --state-dir"
    )]
    OtherProvider {
        path: String,
        found: String,
        expected: String,
    },
    #[error("cannot write the state file {path}: {message}")]
    Unwritable { path: String, message: String },
}

/// Where the saved state lives. Implementations write atomically: after a crash the state is
/// the old one or the new one, never a mix.
pub trait StateStore: Send + Sync + 'static {
    /// The saved state, or `None` if there is none yet.
    fn load(&self) -> Result<Option<SavedState>, StateError>;

    /// Replaces the saved state with `state`.
    fn save(&self, state: &SavedState) -> Result<(), StateError>;
}
