//! The node's business rules: validating and recording containers (from the [`pool`] when
//! it has one ready, else started for the create), routing invocations, telling a container
//! that was gone before a call from one that died during it, putting the node's figures
//! together, and gathering a function's output lines from its containers ([`logs`]). It
//! talks to the outside only through the [`ports`].
//!
//! Input is checked before anything starts: a create needs a known handler and sane sizes
//! ([`faas_proto::limits`]), and must fit the node's over-commit limit (the sum of the running
//! containers' memory limits, creates under way included, at most the node's memory ×
//! `--max-overcommit`; else [`NodeError::Overcommitted`]).
//!
//! A function made of the user's own code has the handler `bundle:<sha256>`
//! ([`crate::model::bundle`]): a malformed one is INVALID_ARGUMENT like an unknown handler; a
//! well-formed one must name a bundle this node holds ([`Bundles`], `--bundles-dir`), else
//! the create fails FAILED_PRECONDITION before anything starts. Bundle containers never come
//! from the warm pool (its containers are started for built-in handlers, and the user's
//! process starts with the container service): they are always started for their create.
//! Their container service knows its function by its bundle, so invocations reach it with
//! an empty handler.
//!
//! A failed invocation is one of two kinds, and the difference decides whether the API server
//! may retry it elsewhere:
//!
//! - the event never reached the function: no such container, a container already known
//!   dead, a container of another function, or a connection that could not be made (the
//!   process is gone). These are errors carrying an error code ([`NodeError::error_code`]);
//!   an unreachable container is buried (marked dead, its process reclaimed) first;
//! - the container died or went silent *during* the call: the function may have run, so the
//!   call is an ordinary reply with failure `ContainerExited` (or `OutOfMemory` when the
//!   kernel killed it for memory), and the container is buried.
//!
//! Every invocation is counted in its container's [`Calls`] while it runs, from just before
//! the container is called until the call is over, however it ends (a reply, an error, or
//! the caller going away, which drops the future): a guard (`Running`) does the counting,
//! with two atomics and no lock held across the call. `DescribeNode` reports those counts
//! ([`Node::describe`]), and a restarted scheduler rebuilds its view of the node from them,
//! so they must be exact. The same guard, and the creates and removes, hold the node's
//! [`orphan::Activity`] busy: a node never stops for lack of calls while it still answers
//! one.

pub mod logs;
pub mod orphan;
pub mod pool;
pub mod ports;

mod bundle_of;
mod containers;
mod figures;
mod invoke;

#[cfg(test)]
mod tests;

use std::sync::{Arc, RwLock};
use std::time::Duration;

use faas_common::text::clip;

use crate::core::validate::{check_function, validate_invoke_meta};
pub use crate::error::NodeError;
use crate::model::bundle::{self, Bundle};
use crate::model::{
    ANSWER_GRACE, Calls, Container, ContainerDescription, ContainerHandle, ContainerSpec,
    ContainerState, ContainerUsage, Created, DEFAULT_TIMEOUT_MS, FunctionMeta, Invocation,
    InvokeCall, Liveness, NodeDescription, NodeStats, ProcessUsage, StatsReport,
};
use crate::store::{ContainerTable, OverLimit};
pub use orphan::Activity;
pub use pool::WarmPool;
pub use ports::{
    BundleError, Bundles, ContainerInvoker, HostProbe, InvokeError, LogReader, Runtime,
    RuntimeError,
};

/// Identity and limits of this node.
#[derive(Clone, Debug)]
pub struct NodeIdentity {
    pub node_id: String,
    /// Distinguishes successive lives of one node id.
    pub live_id: String,
    pub total_memory_bytes: u64,
    /// The most container memory (sum of limits) the node takes: its memory × the
    /// over-commit factor.
    pub max_committed_bytes: u64,
    /// How long a new container may take to answer its first Status call.
    pub ready_timeout: Duration,
    /// The machine the node runs on (`--machine`), as `faas nodes` shows it.
    pub machine: String,
}

/// Who reserved the node, and when (wall clock).
#[derive(Clone, Debug, Default)]
struct Reservation {
    owner_account_id: String,
    at_ms: i64,
}

/// One node: its containers and the ports that reach them.
pub struct Node {
    identity: NodeIdentity,
    runtime: Arc<dyn Runtime>,
    invoker: Arc<dyn ContainerInvoker>,
    host: Arc<dyn HostProbe>,
    containers: ContainerTable,
    pool: Arc<WarmPool>,
    bundles: Option<Arc<dyn Bundles>>,
    reservation: RwLock<Reservation>,
    activity: Arc<Activity>,
}

/// One invocation under way in a container: counted in the container's [`Calls`] and in the
/// node's [`Activity`] from its creation to its drop, which every way out of the invoke path
/// reaches (a reply, an error, the future dropped).
struct Running<'a> {
    calls: &'a Calls,
    host: &'a dyn HostProbe,
    _busy: orphan::Busy<'a>,
}

impl<'a> Running<'a> {
    fn begin(calls: &'a Calls, host: &'a dyn HostProbe, activity: &'a Activity) -> Running<'a> {
        let busy = activity.begin();
        calls.begin(host.now_ms());
        Running {
            calls,
            host,
            _busy: busy,
        }
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.calls.end(self.host.now_ms());
    }
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("identity", &self.identity)
            .field("runtime", &self.runtime.name())
            .finish_non_exhaustive()
    }
}

impl Node {
    /// A node with no containers and no warm pool.
    pub fn new(
        identity: NodeIdentity,
        runtime: Arc<dyn Runtime>,
        invoker: Arc<dyn ContainerInvoker>,
        host: Arc<dyn HostProbe>,
    ) -> Node {
        let pool = WarmPool::new(0, runtime.clone(), invoker.clone(), identity.ready_timeout);
        Node {
            identity,
            runtime,
            invoker,
            host,
            containers: ContainerTable::default(),
            pool,
            bundles: None,
            reservation: RwLock::new(Reservation::default()),
            activity: Arc::new(Activity::new()),
        }
    }

    /// The same node keeping `size` unbound containers ready for creates (0 = none). The pool
    /// starts filling at [`WarmPool::fill`].
    pub fn with_warm_pool(mut self, size: usize) -> Node {
        self.pool = WarmPool::new(
            size,
            self.runtime.clone(),
            self.invoker.clone(),
            self.identity.ready_timeout,
        );
        self
    }

    /// The same node serving functions made of the bundles in `bundles` (without, a bundle
    /// function is refused).
    pub fn with_bundles(mut self, bundles: Arc<dyn Bundles>) -> Node {
        self.bundles = Some(bundles);
        self
    }

    /// The warm pool (size 0 when off).
    pub fn warm_pool(&self) -> &Arc<WarmPool> {
        &self.pool
    }

    /// Who this node is.
    pub fn identity(&self) -> &NodeIdentity {
        &self.identity
    }

    /// The containers (running and dead).
    pub fn containers(&self) -> &ContainerTable {
        &self.containers
    }

    /// When the node last heard from anyone, and what it is still doing (the orphan
    /// timeout's input; the api layer stamps every call's arrival in it).
    pub fn activity(&self) -> &Arc<Activity> {
        &self.activity
    }

    fn not_found(&self, id: &str) -> NodeError {
        NodeError::NotFound {
            container: clip(id).into_owned(),
            node: self.identity.node_id.clone(),
        }
    }

    /// Hands the node to an account, recording when (the wall clock: a restarted resource
    /// manager counts the node's reserved seconds from it). A node takes one reservation: the
    /// same account again is a no-op (a retried `Reserve`), another account is refused.
    pub fn reserve(&self, owner_account_id: &str) -> Result<(), NodeError> {
        if owner_account_id.trim().is_empty() {
            return Err(NodeError::InvalidArgument(
                "owner_account_id must not be empty".into(),
            ));
        }
        let mut reservation = self.reservation.write().unwrap_or_else(|e| e.into_inner());
        match reservation.owner_account_id.as_str() {
            "" => {}
            owner if owner == owner_account_id => return Ok(()),
            owner => {
                return Err(NodeError::AlreadyReserved {
                    node: self.identity.node_id.clone(),
                    owner: clip(owner).into_owned(),
                });
            }
        }
        *reservation = Reservation {
            owner_account_id: owner_account_id.to_string(),
            at_ms: self.host.now_ms(),
        };
        Ok(())
    }

    fn reservation(&self) -> Reservation {
        self.reservation
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The account the node was reserved for ("" before `Reserve`).
    pub fn owner(&self) -> String {
        self.reservation().owner_account_id
    }
}
