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

use std::sync::{Arc, RwLock};
use std::time::Duration;

use faas_common::text::clip;
use faas_proto::limits::{self, LimitError};

use crate::model::bundle::{self, Bundle};
use crate::model::{
    ANSWER_GRACE, Calls, Container, ContainerDescription, ContainerHandle, ContainerSpec,
    ContainerState, ContainerUsage, Created, DEFAULT_TIMEOUT_MS, FunctionMeta, Invocation,
    InvokeCall, Liveness, NodeDescription, NodeStats, ProcessUsage, StatsReport, error_code,
};
use crate::store::{ContainerTable, OverLimit};
pub use orphan::Activity;
pub use pool::WarmPool;
pub use ports::{
    BundleError, Bundles, ContainerInvoker, HostProbe, InvokeError, LogReader, Runtime,
    RuntimeError,
};

/// Failures of the node's operations; the api layer maps each to a gRPC status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NodeError {
    #[error("{0}")]
    InvalidArgument(String),
    /// An unknown handler or an absurd size.
    #[error(transparent)]
    Limit(#[from] LimitError),
    /// `container` is the id as asked for, clipped.
    #[error("container {container} not found on node {node}")]
    NotFound { container: String, node: String },
    #[error(
        "container {container} on node {node} is dead ({reason}); remove it and create another"
    )]
    ContainerDead {
        container: String,
        node: String,
        reason: String,
    },
    #[error(
        "container {container} on node {node} cannot be reached ({reason}); it was removed, \
         create another"
    )]
    ContainerUnreachable {
        container: String,
        node: String,
        reason: String,
    },
    #[error("{0}")]
    WrongFunction(String),
    #[error(
        "node {node} cannot take a container of {asked} bytes: {committed} bytes of container \
         memory are committed and {reserved} being created, and it allows {limit} bytes (its \
         memory × --max-overcommit); place the container on another node"
    )]
    Overcommitted {
        node: String,
        asked: u64,
        committed: u64,
        reserved: u64,
        limit: u64,
    },
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// The function names a bundle this node cannot serve (none here, or no
    /// `--bundles-dir` at all).
    #[error(transparent)]
    Bundle(#[from] BundleError),
    /// A bundle function asked of a node started without `--bundles-dir`.
    #[error(
        "function {function:?} is made of bundle {hash}, but node {node} serves no bundles: \
         start it with --bundles-dir (the API server's DATA_DIR/bundles)"
    )]
    NoBundles {
        function: String,
        hash: String,
        node: String,
    },
    #[error("container {container} did not become ready: {message}")]
    NotReady { container: String, message: String },
    #[error("calling container {container} failed: {message}")]
    Invoke { container: String, message: String },
    /// A `Reserve` for another account than the one holding the node.
    #[error(
        "node {node} is already reserved by account {owner:?}: a node takes one reservation \
         (reserve another node from the resource manager)"
    )]
    AlreadyReserved { node: String, owner: String },
}

impl NodeError {
    /// The `x-faas-error-code` of an invocation refused before its event reached the
    /// function; `None` for every other error.
    pub fn error_code(&self) -> Option<&'static str> {
        match self {
            NodeError::NotFound { .. } => Some(error_code::CONTAINER_NOT_FOUND),
            NodeError::ContainerDead { .. } => Some(error_code::CONTAINER_DEAD),
            NodeError::ContainerUnreachable { .. } => Some(error_code::CONTAINER_UNREACHABLE),
            NodeError::WrongFunction(_) => Some(error_code::WRONG_FUNCTION),
            _ => None,
        }
    }
}

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

    /// Checks a `CreateContainer` request (its container name and its function) and turns
    /// it into a spec.
    pub fn validate_create(
        name: &str,
        meta: Option<FunctionMeta>,
    ) -> Result<ContainerSpec, NodeError> {
        limits::check_name("name", name)?;
        Node::validate_spec(meta)
    }

    /// Checks a `CreateContainer` request's function and turns it into a spec: a name, a
    /// built-in handler or a well-formed `bundle:<sha256>`, a memory of 1 byte to 1 TiB, a
    /// timeout of 0 (the default) to 24 h.
    pub fn validate_spec(meta: Option<FunctionMeta>) -> Result<ContainerSpec, NodeError> {
        let meta = meta.ok_or_else(|| {
            NodeError::InvalidArgument("function_meta is required to create a container".into())
        })?;
        if meta.function_name.trim().is_empty() {
            return Err(NodeError::InvalidArgument(
                "function_meta.function_name must not be empty".into(),
            ));
        }
        limits::check_name("function_meta.function_name", &meta.function_name)?;
        if meta.handler.trim().is_empty() {
            return Err(NodeError::InvalidArgument(
                "function_meta.handler must not be empty".into(),
            ));
        }
        Node::check_handler(&meta.handler)?;
        limits::check_memory("function_meta.memory_in_bytes", meta.memory_bytes)?;
        limits::check_timeout("function_meta.timeout_in_ms", meta.timeout_ms)?;
        // Both are in range (checked just above), so neither conversion can fail.
        Ok(ContainerSpec {
            function_name: meta.function_name,
            handler: meta.handler,
            memory_bytes: u64::try_from(meta.memory_bytes).unwrap_or_default(),
            timeout_ms: u64::try_from(meta.timeout_ms).unwrap_or_default(),
        })
    }

    /// A built-in handler, or a well-formed `bundle:<sha256>`.
    fn check_handler(handler: &str) -> Result<(), NodeError> {
        match bundle::parse_handler("function_meta.handler", handler) {
            None => Ok(limits::check_handler("function_meta.handler", handler)?),
            Some(Ok(_)) => Ok(()),
            Some(Err(message)) => Err(NodeError::InvalidArgument(message)),
        }
    }

    /// Checks the optional function fields of an `InvokeFunction` request: empty or 0 means
    /// "the container's"; anything given must be sane (a name of at most 256 bytes, a
    /// built-in handler or a well-formed bundle, a memory of up to 1 TiB, a timeout of up to
    /// 24 h).
    pub fn validate_invoke_meta(meta: &FunctionMeta) -> Result<(), NodeError> {
        limits::check_name("function_meta.function_name", &meta.function_name)?;
        if !meta.handler.is_empty() {
            Node::check_handler(&meta.handler)?;
        }
        if meta.memory_bytes != 0 {
            limits::check_memory("function_meta.memory_in_bytes", meta.memory_bytes)?;
        }
        limits::check_timeout("function_meta.timeout_in_ms", meta.timeout_ms)?;
        Ok(())
    }

    /// Refuses a call meant for another function than `container`'s (empty fields match).
    fn check_function(&self, container: &Container, meta: &FunctionMeta) -> Result<(), NodeError> {
        let spec = &container.spec;
        let name_ok = meta.function_name.is_empty() || meta.function_name == spec.function_name;
        let handler_ok = meta.handler.is_empty() || meta.handler == spec.handler;
        if name_ok && handler_ok {
            return Ok(());
        }
        Err(NodeError::WrongFunction(format!(
            "container {} runs function {:?} (handler {:?}), not function {:?} (handler {:?}); \
             invoke a container of that function instead",
            container.id,
            spec.function_name,
            spec.handler,
            clip(&meta.function_name),
            clip(&meta.handler)
        )))
    }

    /// The bundle `spec`'s function is made of (`None` for a built-in handler), read from
    /// this node's bundles; refused when the node has none or not this one.
    fn bundle_of(&self, spec: &ContainerSpec) -> Result<Option<Bundle>, NodeError> {
        let hash = match bundle::parse_handler("function_meta.handler", &spec.handler) {
            None => return Ok(None),
            Some(Ok(hash)) => hash,
            Some(Err(message)) => return Err(NodeError::InvalidArgument(message)),
        };
        let bundles = self.bundles.as_ref().ok_or_else(|| NodeError::NoBundles {
            function: clip(&spec.function_name).into_owned(),
            hash: hash.to_string(),
            node: self.identity.node_id.clone(),
        })?;
        Ok(Some(bundles.find(hash)?))
    }

    /// Makes a container for `spec`: a warm pool container bound to it when one is ready and
    /// binds, else one started for it; returns once it answers. A bundle's container is
    /// always started for it (see the module docs).
    pub async fn create_container(&self, spec: ContainerSpec) -> Result<Created, NodeError> {
        let _busy = self.activity.begin();
        let bundle = self.bundle_of(&spec)?;
        // Held until the container is recorded: a failed start gives the memory back.
        let reservation = self
            .containers
            .reserve(spec.memory_bytes, self.identity.max_committed_bytes)
            .map_err(|o: OverLimit| NodeError::Overcommitted {
                node: self.identity.node_id.clone(),
                asked: spec.memory_bytes,
                committed: o.committed_bytes,
                reserved: o.reserved_bytes,
                limit: self.identity.max_committed_bytes,
            })?;
        let (handle, from_pool) = match &bundle {
            Some(bundle) => (self.start_container(&spec, Some(bundle)).await?, false),
            None => match self.pool.take(&spec).await {
                Some(handle) => (handle, true),
                None => (self.start_container(&spec, None).await?, false),
            },
        };
        let created_at_ms = self.host.now_ms();
        let container = Container {
            id: handle.id,
            address: handle.address,
            spec,
            state: ContainerState::Running,
            created_at_ms,
            calls: Arc::new(Calls::new(created_at_ms)),
        };
        reservation.insert(container.clone());
        let committed = self.containers.committed_bytes();
        if committed > self.identity.total_memory_bytes {
            // Allowed up to the over-commit limit (the scheduler over-commits on purpose).
            tracing::debug!(
                committed,
                total = self.identity.total_memory_bytes,
                "node memory over-committed"
            );
        }
        Ok(Created {
            container,
            from_pool,
        })
    }

    /// Starts a container for `spec` (of `bundle`, if made of one) through the runtime and
    /// waits until it answers.
    async fn start_container(
        &self,
        spec: &ContainerSpec,
        bundle: Option<&Bundle>,
    ) -> Result<ContainerHandle, NodeError> {
        let handle = self.runtime.create(spec, bundle).await?;
        if let Err(e) = self
            .invoker
            .ready(&handle, self.identity.ready_timeout)
            .await
        {
            self.invoker.forget(&handle.id);
            let _ = self.runtime.remove(&handle.id).await;
            return Err(NodeError::NotReady {
                container: handle.id,
                message: e.to_string(),
            });
        }
        Ok(handle)
    }

    /// Stops a container (running or dead) and forgets it.
    pub async fn remove_container(&self, id: &str) -> Result<(), NodeError> {
        let _busy = self.activity.begin();
        let container = self
            .containers
            .remove(id)
            .ok_or_else(|| self.not_found(id))?;
        self.invoker.forget(id);
        match self.runtime.remove(id).await {
            Ok(()) => Ok(()),
            // A dead container may already be gone from the runtime.
            Err(RuntimeError::NotFound(_)) if container.state != ContainerState::Running => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Runs one invocation in container `id`. A function failure, and a container that
    /// died or went silent during the call, are `Ok` with `failure` set (the latter also
    /// buries it). A call whose event cannot reach the function is an error with an
    /// [`error_code`](NodeError::error_code); a container that cannot be connected to is
    /// buried first.
    pub async fn invoke(
        &self,
        id: &str,
        request_id: String,
        event: Vec<u8>,
        meta: Option<FunctionMeta>,
    ) -> Result<Invocation, NodeError> {
        if id.is_empty() {
            return Err(NodeError::InvalidArgument(
                "container_id must not be empty".into(),
            ));
        }
        let meta = meta.unwrap_or_default();
        Node::validate_invoke_meta(&meta)?;
        let container = self.containers.get(id).ok_or_else(|| self.not_found(id))?;
        if let ContainerState::Dead { reason } = &container.state {
            return Err(NodeError::ContainerDead {
                container: id.to_string(),
                node: self.identity.node_id.clone(),
                reason: reason.clone(),
            });
        }
        self.check_function(&container, &meta)?;
        let pick = |asked: String, own: &str| {
            if asked.is_empty() {
                own.to_string()
            } else {
                asked
            }
        };
        let mut handler = pick(meta.handler, &container.spec.handler);
        if bundle::is_bundle(&handler) {
            // Checked to be the container's own; its container service takes none.
            handler.clear();
        }
        let call = InvokeCall {
            request_id,
            function_name: pick(meta.function_name, &container.spec.function_name),
            handler,
            event,
            // In range: checked by validate_invoke_meta.
            timeout_ms: u64::try_from(meta.timeout_ms).unwrap_or_default(),
        };
        let effective_ms = [
            call.timeout_ms,
            container.spec.timeout_ms,
            DEFAULT_TIMEOUT_MS,
        ]
        .into_iter()
        .find(|t| *t > 0)
        .unwrap_or(DEFAULT_TIMEOUT_MS);
        let deadline = Duration::from_millis(effective_ms) + ANSWER_GRACE;
        // Counted until this function returns or its future is dropped: burying a container
        // that failed during the call is still part of the call.
        let _running = Running::begin(&container.calls, self.host.as_ref(), &self.activity);
        match self.invoker.invoke(&container, call, deadline).await {
            Ok(invocation) => Ok(invocation),
            Err(InvokeError::InvalidArgument(m)) => Err(NodeError::InvalidArgument(m)),
            Err(InvokeError::WrongFunction(m)) => Err(NodeError::WrongFunction(m)),
            Err(InvokeError::Failed(message)) => Err(NodeError::Invoke {
                container: id.to_string(),
                message,
            }),
            Err(e @ InvokeError::Unreachable(_)) => {
                let (_, reason) = self.diagnose(&container, &e).await;
                self.bury(id, &reason).await;
                Err(NodeError::ContainerUnreachable {
                    container: id.to_string(),
                    node: self.identity.node_id.clone(),
                    reason,
                })
            }
            Err(e @ (InvokeError::Disconnected(_) | InvokeError::NoAnswer(_))) => {
                let (liveness, reason) = self.diagnose(&container, &e).await;
                self.bury(id, &reason).await;
                Ok(if liveness == Liveness::OutOfMemory {
                    Invocation::out_of_memory(&reason)
                } else {
                    Invocation::container_exited(&reason)
                })
            }
        }
    }

    /// Why a call into `container` failed with `e`, from the runtime's view of its process.
    async fn diagnose(&self, container: &Container, e: &InvokeError) -> (Liveness, String) {
        let id = &container.id;
        let liveness = self.runtime.liveness(id).await;
        let reason = match liveness {
            Liveness::Exited => format!("container {id} process exited ({e})"),
            Liveness::OutOfMemory => format!(
                "container {id} was killed for passing its memory limit of {} bytes (out of memory)",
                container.spec.memory_bytes
            ),
            Liveness::Unknown => format!("container {id} is gone from the runtime ({e})"),
            Liveness::Running => format!("container {id} does not answer: {e}"),
        };
        (liveness, reason)
    }

    /// Marks a container dead and reclaims its process; the record stays until removed.
    async fn bury(&self, id: &str, reason: &str) {
        if self.containers.mark_dead(id, reason) {
            tracing::warn!(container = id, %reason, "container marked dead");
            self.invoker.forget(id);
            if let Err(e) = self.runtime.remove(id).await {
                tracing::debug!(container = id, error = %e, "dead container already gone");
            }
        }
    }

    /// The node's and its containers' measured figures. Containers whose process exited
    /// are marked dead here too. What the runtime runs besides the node's containers (warm
    /// pool containers, a container still being created) counts in the node's own usage, not
    /// as containers; a pool container found exited is replaced.
    ///
    /// A scheduler takes a container missing from its node's samples for dead, so a running
    /// container is never left out: a container is recorded only after the runtime holds it,
    /// so every container running when the call began is in the runtime's list, which is
    /// complete or an error ([`Runtime::stats`]); a runtime that cannot list fails the call
    /// (UNAVAILABLE) instead of answering an empty list.
    pub async fn stats(&self) -> Result<StatsReport, NodeError> {
        let (containers, elsewhere) = self.observe().await?;
        let mut own = self.host.own_usage();
        own.memory_bytes += elsewhere.memory_bytes;
        own.cpu_pct += elsewhere.cpu_pct;
        let total = self.identity.total_memory_bytes;
        let used = own.memory_bytes + containers.iter().map(|c| c.memory_bytes).sum::<u64>();
        let cpu = own.cpu_pct + containers.iter().map(|c| c.cpu_pct).sum::<f64>();
        Ok(StatsReport {
            node: NodeStats {
                total_memory_bytes: total,
                memory_usage_bytes: used,
                available_memory_bytes: total.saturating_sub(used),
                cpu_pct: cpu,
                disk: self.host.disk(),
                committed_memory_bytes: self.containers.committed_bytes(),
            },
            containers,
            live_id: self.identity.live_id.clone(),
            owner_account_id: self.owner(),
        })
    }

    /// Asks the runtime what runs: buries the node's containers whose process exited,
    /// replaces exited pool containers, and returns the usage of the node's live containers
    /// and the summed usage of what else the runtime runs (pool containers, containers still
    /// being created).
    async fn observe(&self) -> Result<(Vec<ContainerUsage>, ProcessUsage), NodeError> {
        let usages = self.runtime.stats().await?;
        let mut containers = Vec::with_capacity(usages.len());
        let mut elsewhere = ProcessUsage::default();
        let mut exited_elsewhere = Vec::new();
        for u in usages {
            if self.containers.get(&u.id).is_none() {
                if u.alive {
                    elsewhere.memory_bytes += u.memory_bytes;
                    elsewhere.cpu_pct += u.cpu_pct;
                } else {
                    exited_elsewhere.push(u.id);
                }
                continue;
            }
            if !u.alive {
                self.bury(&u.id, &format!("container {} process exited", u.id))
                    .await;
                continue;
            }
            containers.push(u);
        }
        self.pool.reap(&exited_elsewhere);
        Ok((containers, elsewhere))
    }

    /// Who the node is, who reserved it and when, and every container it holds with its
    /// calls in flight: what a restarted scheduler rebuilds its view of the node from.
    ///
    /// Exact at the moment of the answer: the runtime is asked first (as for
    /// [`Node::stats`]), so a container whose process exited since the last call reads dead,
    /// not running; a runtime that cannot tell fails the call (UNAVAILABLE) rather than
    /// answer a guess. The counts are read after that, from the containers' own [`Calls`].
    /// Warm pool containers are not the node's and are left out; so are containers still
    /// being created (they become the node's when their create answers).
    pub async fn describe(&self) -> Result<NodeDescription, NodeError> {
        self.observe().await?;
        let mut containers: Vec<ContainerDescription> = self
            .containers
            .all()
            .iter()
            .map(|c| ContainerDescription::from(c.as_ref()))
            .collect();
        containers.sort_by(|a, b| (a.created_at_ms, &a.id).cmp(&(b.created_at_ms, &b.id)));
        let reservation = self.reservation();
        Ok(NodeDescription {
            node_id: self.identity.node_id.clone(),
            live_id: self.identity.live_id.clone(),
            owner_account_id: reservation.owner_account_id,
            reserved_at_ms: reservation.at_ms,
            total_memory_bytes: self.identity.total_memory_bytes,
            containers,
        })
    }

    /// Stops the warm pool and every container.
    pub async fn shutdown(&self) {
        self.pool.shutdown().await;
        for c in self.containers.all() {
            self.containers.remove(&c.id);
            self.invoker.forget(&c.id);
        }
        self.runtime.shutdown().await;
    }
}

#[cfg(test)]
mod tests {
    /// Bundle functions: found, started without the pool, refused clearly.
    mod bundles;
    /// A function's lines: its containers and its versions', read at once, dead ones said.
    mod logs;

    use super::*;
    use crate::model::{ContainerHandle, ContainerUsage, DiskUsage, Failure, ProcessUsage};
    use async_trait::async_trait;
    use std::collections::HashMap;
    use std::sync::Mutex;

    #[derive(Default)]
    struct FakeRuntime {
        alive: Mutex<HashMap<String, bool>>,
        removed: Mutex<Vec<String>>,
        next: Mutex<u32>,
        /// Ids started unbound, in order.
        unbound: Mutex<Vec<String>>,
        /// (id, memory) given to pool containers.
        assigned: Mutex<Vec<(String, u64)>>,
        /// How many of the next unbound starts fail.
        failing_starts: Mutex<u32>,
        /// Whether `stats` fails (the runtime cannot list).
        stats_fail: Mutex<bool>,
        /// How many containers were started for creates.
        created: Mutex<u32>,
        /// The bundle of each create, in order.
        bundles: Mutex<Vec<Option<Bundle>>>,
    }

    impl FakeRuntime {
        fn start(&self, prefix: &str) -> ContainerHandle {
            let mut n = self.next.lock().unwrap();
            *n += 1;
            let id = format!("{prefix}{n}");
            self.alive.lock().unwrap().insert(id.clone(), true);
            ContainerHandle {
                id,
                address: "127.0.0.1:1".into(),
            }
        }
    }

    #[async_trait]
    impl Runtime for FakeRuntime {
        fn name(&self) -> &'static str {
            "fake"
        }
        async fn create(
            &self,
            _spec: &ContainerSpec,
            bundle: Option<&Bundle>,
        ) -> Result<ContainerHandle, RuntimeError> {
            *self.created.lock().unwrap() += 1;
            self.bundles.lock().unwrap().push(bundle.cloned());
            Ok(self.start("c"))
        }
        async fn start_unbound(&self) -> Result<ContainerHandle, RuntimeError> {
            {
                let mut failing = self.failing_starts.lock().unwrap();
                if *failing > 0 {
                    *failing -= 1;
                    return Err(RuntimeError::Unavailable("no luck".into()));
                }
            }
            let handle = self.start("p");
            self.unbound.lock().unwrap().push(handle.id.clone());
            Ok(handle)
        }
        async fn assign(&self, id: &str, spec: &ContainerSpec) -> Result<(), RuntimeError> {
            self.assigned
                .lock()
                .unwrap()
                .push((id.to_string(), spec.memory_bytes));
            Ok(())
        }
        async fn remove(&self, id: &str) -> Result<(), RuntimeError> {
            self.removed.lock().unwrap().push(id.to_string());
            self.alive
                .lock()
                .unwrap()
                .remove(id)
                .map(|_| ())
                .ok_or_else(|| RuntimeError::NotFound(id.to_string()))
        }
        async fn stats(&self) -> Result<Vec<ContainerUsage>, RuntimeError> {
            if *self.stats_fail.lock().unwrap() {
                return Err(RuntimeError::Unavailable("docker: no answer".into()));
            }
            Ok(self
                .alive
                .lock()
                .unwrap()
                .iter()
                .map(|(id, alive)| ContainerUsage {
                    id: id.clone(),
                    memory_bytes: 100,
                    cpu_pct: 25.0,
                    memory_limit_bytes: 1000,
                    alive: *alive,
                })
                .collect())
        }
        async fn liveness(&self, id: &str) -> Liveness {
            match self.alive.lock().unwrap().get(id) {
                Some(true) => Liveness::Running,
                Some(false) => Liveness::Exited,
                None => Liveness::Unknown,
            }
        }
        async fn shutdown(&self) {
            self.alive.lock().unwrap().clear();
        }
    }

    #[derive(Default)]
    struct FakeInvoker {
        replies: Mutex<Vec<Result<Invocation, InvokeError>>>,
        calls: Mutex<Vec<(InvokeCall, Duration)>>,
        not_ready: bool,
        /// (container id, function) of every Bind.
        binds: Mutex<Vec<(String, String)>>,
        bind_error: Option<InvokeError>,
        /// When set, each invocation waits for a permit of it before it answers.
        gate: Option<Arc<tokio::sync::Semaphore>>,
    }

    #[async_trait]
    impl ContainerInvoker for FakeInvoker {
        async fn ready(&self, _h: &ContainerHandle, t: Duration) -> Result<(), InvokeError> {
            if self.not_ready {
                Err(InvokeError::NoAnswer(t))
            } else {
                Ok(())
            }
        }
        async fn bind(
            &self,
            h: &ContainerHandle,
            spec: &ContainerSpec,
            _t: Duration,
        ) -> Result<(), InvokeError> {
            if let Some(e) = &self.bind_error {
                return Err(e.clone());
            }
            self.binds
                .lock()
                .unwrap()
                .push((h.id.clone(), spec.function_name.clone()));
            Ok(())
        }
        async fn invoke(
            &self,
            _c: &Container,
            call: InvokeCall,
            deadline: Duration,
        ) -> Result<Invocation, InvokeError> {
            self.calls.lock().unwrap().push((call, deadline));
            if let Some(gate) = &self.gate {
                gate.acquire().await.expect("gate open").forget();
            }
            self.replies
                .lock()
                .unwrap()
                .pop()
                .unwrap_or_else(|| Ok(Invocation::default()))
        }
        fn forget(&self, _id: &str) {}
    }

    /// A host whose wall clock moves 1 ms forward at each reading.
    struct FakeHost {
        clock: std::sync::atomic::AtomicI64,
    }

    impl Default for FakeHost {
        fn default() -> FakeHost {
            FakeHost {
                clock: std::sync::atomic::AtomicI64::new(1_000_000),
            }
        }
    }

    impl HostProbe for FakeHost {
        fn now_ms(&self) -> i64 {
            self.clock
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        }
        fn own_usage(&self) -> ProcessUsage {
            ProcessUsage {
                memory_bytes: 50,
                cpu_pct: 1.5,
            }
        }
        fn disk(&self) -> DiskUsage {
            DiskUsage {
                total_bytes: 10,
                avail_bytes: 5,
                total_inodes: 4,
                free_inodes: 2,
            }
        }
    }

    fn node(invoker: FakeInvoker) -> (Node, Arc<FakeRuntime>, Arc<FakeInvoker>) {
        let runtime = Arc::new(FakeRuntime::default());
        let invoker = Arc::new(invoker);
        let identity = NodeIdentity {
            node_id: "n1".into(),
            live_id: "live".into(),
            total_memory_bytes: 1000,
            max_committed_bytes: 2000,
            ready_timeout: Duration::from_secs(1),
        };
        let node = Node::new(
            identity,
            runtime.clone(),
            invoker.clone(),
            Arc::new(FakeHost::default()),
        );
        (node, runtime, invoker)
    }

    fn meta(name: &str, handler: &str, memory: i64, timeout: i64) -> Option<FunctionMeta> {
        Some(FunctionMeta {
            function_name: name.into(),
            handler: handler.into(),
            timeout_ms: timeout,
            memory_bytes: memory,
        })
    }

    /// A container of function "f" with `handler` and `memory`, created on `node`.
    async fn created(node: &Node, handler: &str, memory: i64) -> Container {
        let spec = Node::validate_spec(meta("f", handler, memory, 0)).unwrap();
        node.create_container(spec).await.unwrap().container
    }

    #[test]
    fn create_requests_are_validated() {
        let long = "f".repeat(257);
        let huge = "h".repeat(1 << 20);
        for (m, field) in [
            (None, "function_meta"),
            (meta(" ", "hello", 1, 0), "function_name"),
            (meta(&long, "hello", 1, 0), "function_name is 257 bytes"),
            (meta("f", "", 1, 0), "handler"),
            (
                meta("f", "python3.9", 1, 0),
                "\"python3.9\" is not a built-in handler",
            ),
            (meta("f", &huge, 1, 0), "(1048576 bytes)"),
            (meta("f", "hello", 0, 0), "memory_in_bytes"),
            (meta("f", "hello", -1, 0), "memory_in_bytes"),
            (
                meta("f", "hello", 1_000_000_000_000_000_000, 0),
                "memory_in_bytes",
            ),
            (meta("f", "hello", 1, -1), "timeout_in_ms"),
            (meta("f", "hello", 1, 86_400_001), "timeout_in_ms"),
        ] {
            let err = Node::validate_spec(m).unwrap_err();
            assert!(
                matches!(err, NodeError::InvalidArgument(_) | NodeError::Limit(_)),
                "{err}"
            );
            assert!(err.to_string().contains(field), "{err} should name {field}");
            assert!(err.to_string().len() < 300, "clipped: {err}");
        }
        let spec = Node::validate_spec(meta("f", "hello", 128, 300)).unwrap();
        assert_eq!((spec.memory_bytes, spec.timeout_ms), (128, 300));
        let spec = Node::validate_spec(meta(&"f".repeat(256), "spin", 1 << 40, 86_400_000));
        assert!(spec.is_ok(), "the limits themselves are allowed");
        let err = Node::validate_create(&"n".repeat(257), meta("f", "hello", 1, 0)).unwrap_err();
        assert!(
            err.to_string().starts_with("name is 257 bytes long"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn absurd_invoke_meta_is_refused_before_the_container_is_called() {
        let (node, _, invoker) = node(FakeInvoker::default());
        let c = created(&node, "hello", 128).await;
        for (m, field) in [
            (meta(&"f".repeat(257), "", 0, 0), "function_name"),
            (meta("", "python3.9", 0, 0), "handler"),
            (meta("", "", -1, 0), "memory_in_bytes"),
            (meta("", "", 1 << 41, 0), "memory_in_bytes"),
            (meta("", "", 0, -1), "timeout_in_ms"),
            (meta("", "", 0, 86_400_001), "timeout_in_ms"),
        ] {
            let err = node.invoke(&c.id, "r".into(), vec![], m).await.unwrap_err();
            assert!(matches!(err, NodeError::Limit(_)), "{err}");
            assert!(err.to_string().contains(field), "{err} should name {field}");
            assert_eq!(err.error_code(), None, "not a container's fault");
        }
        // Unknown container ids are checked after the arguments, and quoted clipped.
        let err = node
            .invoke(&"x".repeat(1 << 20), "r".into(), vec![], None)
            .await
            .unwrap_err();
        assert!(matches!(err, NodeError::NotFound { .. }), "{err}");
        assert!(
            err.to_string().len() < 300,
            "clipped: {} bytes",
            err.to_string().len()
        );
        assert_eq!(err.error_code(), Some("ContainerNotFound"));
        assert!(invoker.calls.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_call_for_another_function_is_refused_by_the_node() {
        let (node, _, invoker) = node(FakeInvoker::default());
        let c = created(&node, "echo", 128).await;
        for m in [meta("g", "", 0, 0), meta("f", "sleep", 0, 0)] {
            let err = node.invoke(&c.id, "r".into(), vec![], m).await.unwrap_err();
            assert!(matches!(err, NodeError::WrongFunction(_)), "{err}");
            assert!(
                err.to_string()
                    .contains("runs function \"f\" (handler \"echo\")"),
                "{err}"
            );
            assert_eq!(err.error_code(), Some("WrongFunction"));
        }
        assert!(invoker.calls.lock().unwrap().is_empty());
        node.invoke(&c.id, "r".into(), vec![], meta("f", "echo", 128, 0))
            .await
            .unwrap();
        assert_eq!(node.containers().running(), 1, "the container is kept");
    }

    #[tokio::test]
    async fn creates_beyond_the_over_commit_limit_are_refused() {
        // 1000 bytes of node memory, 2000 allowed in limits (the fake identity).
        let (node, runtime, _) = node(FakeInvoker::default());
        let create = |memory| {
            node.create_container(Node::validate_spec(meta("f", "hello", memory, 0)).unwrap())
        };
        create(1500).await.unwrap();
        let err = create(501).await.unwrap_err();
        assert_eq!(
            err,
            NodeError::Overcommitted {
                node: "n1".into(),
                asked: 501,
                committed: 1500,
                reserved: 0,
                limit: 2000
            }
        );
        assert!(
            err.to_string()
                .contains("place the container on another node"),
            "{err}"
        );
        assert_eq!(
            *runtime.created.lock().unwrap(),
            1,
            "nothing was started for it"
        );
        create(500).await.unwrap();
        assert_eq!(node.containers().committed_bytes(), 2000);
    }

    #[tokio::test]
    async fn stats_fail_when_the_runtime_cannot_list() {
        let (node, runtime, _) = node(FakeInvoker::default());
        node.create_container(Node::validate_spec(meta("f", "hello", 1, 0)).unwrap())
            .await
            .unwrap();
        *runtime.stats_fail.lock().unwrap() = true;
        let err = node.stats().await.unwrap_err();
        assert_eq!(
            err,
            NodeError::Runtime(RuntimeError::Unavailable("docker: no answer".into()))
        );
        assert_eq!(node.containers().running(), 1, "nothing was taken for dead");
        *runtime.stats_fail.lock().unwrap() = false;
        assert_eq!(node.stats().await.unwrap().containers.len(), 1);
    }

    #[tokio::test]
    async fn an_invocation_without_meta_uses_the_containers_function() {
        let (node, _, invoker) = node(FakeInvoker::default());
        let spec = Node::validate_spec(meta("f", "hello", 128, 300)).unwrap();
        let c = node.create_container(spec).await.unwrap().container;
        node.invoke(&c.id, "r1".into(), b"{}".to_vec(), None)
            .await
            .unwrap();
        node.invoke(&c.id, "r2".into(), vec![], meta("f", "", 0, 40))
            .await
            .unwrap();
        let calls = invoker.calls.lock().unwrap();
        assert_eq!(calls[0].0.function_name, "f");
        assert_eq!(calls[0].0.handler, "hello");
        assert_eq!(calls[0].0.timeout_ms, 0);
        assert_eq!(calls[0].1, Duration::from_millis(300) + ANSWER_GRACE);
        assert_eq!(calls[1].0.timeout_ms, 40);
        assert_eq!(calls[1].1, Duration::from_millis(40) + ANSWER_GRACE);
    }

    #[tokio::test]
    async fn a_container_gone_before_the_call_is_unreachable_and_buried() {
        let (node, runtime, invoker) = node(FakeInvoker::default());
        let c = created(&node, "hello", 128).await;
        assert_eq!(node.containers().committed_bytes(), 128);
        runtime.alive.lock().unwrap().insert(c.id.clone(), false);
        invoker
            .replies
            .lock()
            .unwrap()
            .push(Err(InvokeError::Unreachable("connection refused".into())));

        let err = node
            .invoke(&c.id, "r".into(), vec![], None)
            .await
            .unwrap_err();
        assert!(
            matches!(err, NodeError::ContainerUnreachable { .. }),
            "{err}"
        );
        assert_eq!(err.error_code(), Some("ContainerUnreachable"));
        assert!(err.to_string().contains("process exited"), "{err}");
        assert!(err.to_string().contains("connection refused"), "{err}");
        assert_eq!(*runtime.removed.lock().unwrap(), vec![c.id.clone()]);
        assert_eq!(node.containers().committed_bytes(), 0);

        let err = node
            .invoke(&c.id, "r".into(), vec![], None)
            .await
            .unwrap_err();
        assert!(matches!(err, NodeError::ContainerDead { .. }), "{err}");
        assert_eq!(err.error_code(), Some("ContainerDead"));
        assert!(err.to_string().contains("process exited"), "{err}");
        assert_eq!(
            invoker.calls.lock().unwrap().len(),
            1,
            "a dead container is not called"
        );
        node.remove_container(&c.id).await.unwrap();
        let err = node.remove_container(&c.id).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("container {} not found on node n1", c.id)
        );
    }

    #[tokio::test]
    async fn a_container_that_dies_during_the_call_is_a_container_exited_reply() {
        let (node, runtime, invoker) = node(FakeInvoker::default());
        let c = created(&node, "sleep", 128).await;
        runtime.alive.lock().unwrap().insert(c.id.clone(), false);
        invoker
            .replies
            .lock()
            .unwrap()
            .push(Err(InvokeError::Disconnected("connection reset".into())));
        let inv = node.invoke(&c.id, "r".into(), vec![], None).await.unwrap();
        let failure = inv.failure.unwrap();
        assert_eq!(failure.code, Failure::CONTAINER_EXITED);
        assert!(
            failure.message.contains("process exited"),
            "{}",
            failure.message
        );
        assert!(!inv.handled);
        assert_eq!(*runtime.removed.lock().unwrap(), vec![c.id.clone()]);
        assert_eq!(node.containers().running(), 0);
    }

    #[tokio::test]
    async fn a_silent_live_container_is_marked_dead_and_stopped() {
        let (node, runtime, invoker) = node(FakeInvoker::default());
        let c = created(&node, "sleep", 1).await;
        invoker
            .replies
            .lock()
            .unwrap()
            .push(Err(InvokeError::NoAnswer(Duration::from_secs(65))));
        let inv = node.invoke(&c.id, "r".into(), vec![], None).await.unwrap();
        let message = inv.failure.unwrap().message;
        assert!(message.contains("does not answer"), "{message}");
        assert!(
            runtime.liveness(&c.id).await == Liveness::Unknown,
            "it was stopped"
        );
    }

    #[tokio::test]
    async fn a_container_that_never_answers_is_not_kept() {
        let invoker = FakeInvoker {
            not_ready: true,
            ..Default::default()
        };
        let (node, runtime, _) = node(invoker);
        let err = node
            .create_container(Node::validate_spec(meta("f", "hello", 1, 0)).unwrap())
            .await
            .unwrap_err();
        assert!(matches!(err, NodeError::NotReady { .. }), "{err}");
        assert_eq!(runtime.removed.lock().unwrap().len(), 1);
        assert!(node.containers().all().is_empty());
        // Its memory was given back: creates as large as the node allows are not refused
        // for memory by the earlier failures.
        for _ in 0..3 {
            let err = node
                .create_container(Node::validate_spec(meta("f", "hello", 2000, 0)).unwrap())
                .await
                .unwrap_err();
            assert!(matches!(err, NodeError::NotReady { .. }), "{err}");
        }
    }

    #[tokio::test]
    async fn stats_add_the_node_and_its_containers() {
        let (node, runtime, _) = node(FakeInvoker::default());
        node.reserve("acct").unwrap();
        assert!(node.reserve("").is_err());
        for _ in 0..2 {
            node.create_container(Node::validate_spec(meta("f", "hello", 600, 0)).unwrap())
                .await
                .unwrap();
        }
        let r = node.stats().await.unwrap();
        assert_eq!(r.containers.len(), 2);
        assert_eq!(r.node.memory_usage_bytes, 250);
        assert_eq!(r.node.available_memory_bytes, 750);
        assert!((r.node.cpu_pct - 51.5).abs() < 1e-9);
        assert_eq!(
            r.node.committed_memory_bytes, 1200,
            "over-commit is allowed"
        );
        assert_eq!(r.node.disk.avail_bytes, 5);
        assert_eq!(
            (r.live_id.as_str(), r.owner_account_id.as_str()),
            ("live", "acct")
        );

        // A container whose process died is dropped from the figures and marked dead.
        runtime.alive.lock().unwrap().insert("c1".into(), false);
        let r = node.stats().await.unwrap();
        assert_eq!(r.containers.len(), 1);
        assert_eq!(node.containers().running(), 1);
        node.shutdown().await;
        assert!(node.containers().all().is_empty());
    }

    fn pooled(invoker: FakeInvoker, size: usize) -> (Node, Arc<FakeRuntime>, Arc<FakeInvoker>) {
        let (node, runtime, invoker) = node(invoker);
        let node = node.with_warm_pool(size);
        node.warm_pool().fill();
        (node, runtime, invoker)
    }

    /// Lets the pool's background work run until `done` holds.
    async fn until(node: &Node, done: impl Fn(&crate::model::WarmPoolStats) -> bool) {
        while !done(&node.warm_pool().stats()) {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    #[tokio::test]
    async fn a_create_binds_a_pool_container_and_the_pool_refills() {
        let (node, runtime, invoker) = pooled(FakeInvoker::default(), 2);
        until(&node, |s| s.ready == 2).await;
        let pool_ids = runtime.unbound.lock().unwrap().clone();
        assert_eq!(pool_ids.len(), 2);

        let created = node
            .create_container(Node::validate_spec(meta("f", "hello", 128, 0)).unwrap())
            .await
            .unwrap();
        assert!(created.from_pool);
        let id = created.container.id;
        assert_eq!(id, pool_ids[0], "the oldest pool container is taken");
        assert_eq!(*runtime.assigned.lock().unwrap(), vec![(id.clone(), 128)]);
        assert_eq!(
            *invoker.binds.lock().unwrap(),
            vec![(id.clone(), "f".to_string())]
        );
        assert_eq!(node.containers().committed_bytes(), 128);

        until(&node, |s| s.ready == 2).await;
        let s = node.warm_pool().stats();
        assert_eq!((s.hits, s.misses, s.discarded), (1, 0, 0));
        assert_eq!(runtime.unbound.lock().unwrap().len(), 3, "one refill");

        // Only the created container is a container; the pool counts as the node's own use.
        let r = node.stats().await.unwrap();
        assert_eq!(r.containers.len(), 1);
        assert_eq!(r.containers[0].id, id);
        assert_eq!(r.node.memory_usage_bytes, 50 + 100 + 2 * 100);
        assert_eq!(r.node.committed_memory_bytes, 128);
        assert!(node.containers().get(&pool_ids[1]).is_none());
        node.shutdown().await;
    }

    #[tokio::test]
    async fn a_pool_container_that_does_not_bind_is_replaced_and_the_create_starts_one() {
        let invoker = FakeInvoker {
            bind_error: Some(InvokeError::Unreachable("connection refused".into())),
            ..Default::default()
        };
        let (node, runtime, _) = pooled(invoker, 1);
        until(&node, |s| s.ready == 1).await;
        let pool_id = runtime.unbound.lock().unwrap()[0].clone();
        let created = node
            .create_container(Node::validate_spec(meta("f", "hello", 128, 0)).unwrap())
            .await
            .unwrap();
        assert!(!created.from_pool);
        assert_ne!(created.container.id, pool_id);
        let s = node.warm_pool().stats();
        assert_eq!((s.hits, s.misses, s.discarded), (0, 1, 1));
        until(&node, |s| s.ready == 1).await;
        while !runtime.removed.lock().unwrap().contains(&pool_id) {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        node.shutdown().await;
    }

    #[tokio::test]
    async fn a_function_the_container_refuses_leaves_the_pool_container_in_the_pool() {
        let invoker = FakeInvoker {
            bind_error: Some(InvokeError::InvalidArgument("unknown handler".into())),
            ..Default::default()
        };
        let (node, runtime, _) = pooled(invoker, 1);
        until(&node, |s| s.ready == 1).await;
        let created = node
            .create_container(Node::validate_spec(meta("f", "hello", 1, 0)).unwrap())
            .await
            .unwrap();
        assert!(!created.from_pool, "the normal start decides");
        let s = node.warm_pool().stats();
        assert_eq!((s.ready, s.misses, s.discarded), (1, 1, 0));
        assert!(
            runtime.assigned.lock().unwrap().is_empty(),
            "no limits changed"
        );
        assert_eq!(runtime.unbound.lock().unwrap().len(), 1, "nothing replaced");
        node.shutdown().await;
    }

    #[tokio::test]
    async fn a_pool_container_that_exits_is_replaced() {
        let (node, runtime, _) = pooled(FakeInvoker::default(), 1);
        until(&node, |s| s.ready == 1).await;
        let pool_id = runtime.unbound.lock().unwrap()[0].clone();
        runtime.alive.lock().unwrap().insert(pool_id.clone(), false);
        let r = node.stats().await.unwrap();
        assert!(r.containers.is_empty());
        assert_eq!(node.warm_pool().stats().discarded, 1);
        until(&node, |s| s.ready == 1).await;
        let ids = runtime.unbound.lock().unwrap().clone();
        assert_eq!(ids.len(), 2, "a replacement was started: {ids:?}");
        let created = node
            .create_container(Node::validate_spec(meta("f", "hello", 1, 0)).unwrap())
            .await
            .unwrap();
        assert_eq!(created.container.id, ids[1]);
        node.shutdown().await;
    }

    #[tokio::test(start_paused = true)]
    async fn failed_starts_are_retried_after_a_pause() {
        let (node, runtime) = {
            let (node, runtime, _) = node(FakeInvoker::default());
            *runtime.failing_starts.lock().unwrap() = 2;
            (node.with_warm_pool(1), runtime)
        };
        node.warm_pool().fill();
        until(&node, |s| s.ready == 1).await;
        let s = node.warm_pool().stats();
        assert_eq!((s.start_failures, s.starting), (2, 0));
        assert_eq!(runtime.unbound.lock().unwrap().len(), 1);
        node.shutdown().await;
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_ends_the_retries_and_leaves_no_pool_container() {
        let (node, runtime) = {
            let (node, runtime, _) = node(FakeInvoker::default());
            *runtime.failing_starts.lock().unwrap() = 1_000;
            (node.with_warm_pool(2), runtime)
        };
        node.warm_pool().fill();
        until(&node, |s| s.start_failures >= 4).await;
        node.shutdown().await;
        let s = node.warm_pool().stats();
        assert_eq!((s.ready, s.starting), (0, 0));
        node.warm_pool().fill();
        assert_eq!(
            node.warm_pool().stats().starting,
            0,
            "no fill after shutdown"
        );
        assert!(runtime.alive.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn without_a_pool_every_create_starts_a_container() {
        let (node, runtime, invoker) = pooled(FakeInvoker::default(), 0);
        let created = node
            .create_container(Node::validate_spec(meta("f", "hello", 1, 0)).unwrap())
            .await
            .unwrap();
        assert!(!created.from_pool);
        assert!(runtime.unbound.lock().unwrap().is_empty());
        assert!(invoker.binds.lock().unwrap().is_empty());
        assert_eq!(node.warm_pool().stats(), Default::default());
    }

    /// A node whose invocations wait at a gate the test opens, and one container of "f".
    async fn gated() -> (
        Arc<Node>,
        Arc<FakeRuntime>,
        Arc<FakeInvoker>,
        Arc<tokio::sync::Semaphore>,
        Container,
    ) {
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let (node, runtime, invoker) = node(FakeInvoker {
            gate: Some(gate.clone()),
            ..Default::default()
        });
        let c = created(&node, "sleep", 128).await;
        (Arc::new(node), runtime, invoker, gate, c)
    }

    /// Starts an invocation of `c` and returns once it is inside the container (the
    /// invoker holds it at the gate).
    async fn start_call(
        node: &Arc<Node>,
        invoker: &FakeInvoker,
        c: &Container,
    ) -> tokio::task::JoinHandle<Result<Invocation, NodeError>> {
        let before = invoker.calls.lock().unwrap().len();
        let call = {
            let (node, id) = (node.clone(), c.id.clone());
            tokio::spawn(async move { node.invoke(&id, "r".into(), vec![], None).await })
        };
        while invoker.calls.lock().unwrap().len() == before {
            tokio::task::yield_now().await;
        }
        call
    }

    async fn described(node: &Node, id: &str) -> ContainerDescription {
        let d = node.describe().await.unwrap();
        d.containers.into_iter().find(|c| c.id == id).unwrap()
    }

    #[tokio::test]
    async fn a_call_is_in_flight_from_before_the_container_is_called_until_it_answers() {
        let (node, _, invoker, gate, c) = gated().await;
        let idle = described(&node, &c.id).await;
        assert_eq!(idle.in_flight, 0);
        assert_eq!(
            idle.last_used_at_ms, c.created_at_ms,
            "never used: its creation"
        );

        let call = start_call(&node, &invoker, &c).await;
        let busy = described(&node, &c.id).await;
        assert_eq!(busy.in_flight, 1);
        assert!(busy.last_used_at_ms > c.created_at_ms, "the start is a use");
        assert_eq!(
            node.activity().busy(),
            1,
            "the node is not idle under a call"
        );
        let second = start_call(&node, &invoker, &c).await;
        assert_eq!(described(&node, &c.id).await.in_flight, 2);

        gate.add_permits(1);
        call.await.unwrap().unwrap();
        let one = described(&node, &c.id).await;
        assert_eq!(one.in_flight, 1);
        assert!(
            one.last_used_at_ms > busy.last_used_at_ms,
            "the end is a use"
        );
        gate.add_permits(1);
        second.await.unwrap().unwrap();
        assert_eq!(described(&node, &c.id).await.in_flight, 0);
        assert_eq!(node.activity().busy(), 0);
    }

    #[tokio::test]
    async fn a_call_that_fails_or_is_dropped_is_no_longer_in_flight() {
        let (node, _, invoker, gate, c) = gated().await;
        // An error from the container.
        invoker
            .replies
            .lock()
            .unwrap()
            .push(Err(InvokeError::Failed("broken pipe".into())));
        let call = start_call(&node, &invoker, &c).await;
        gate.add_permits(1);
        let err = call.await.unwrap().unwrap_err();
        assert!(matches!(err, NodeError::Invoke { .. }), "{err}");
        assert_eq!(described(&node, &c.id).await.in_flight, 0);

        // The caller goes away: tonic drops the handler's future mid-call.
        let call = start_call(&node, &invoker, &c).await;
        assert_eq!(described(&node, &c.id).await.in_flight, 1);
        call.abort();
        assert!(call.await.unwrap_err().is_cancelled());
        assert_eq!(described(&node, &c.id).await.in_flight, 0);
        assert_eq!(node.activity().busy(), 0);

        // Refused before the container is called: never counted.
        let err = node
            .invoke(&c.id, "r".into(), vec![], meta("g", "", 0, 0))
            .await
            .unwrap_err();
        assert!(matches!(err, NodeError::WrongFunction(_)), "{err}");
        assert_eq!(described(&node, &c.id).await.in_flight, 0);
    }

    #[tokio::test]
    async fn a_call_begun_on_a_running_container_ends_on_its_dead_record() {
        let (node, runtime, invoker, gate, c) = gated().await;
        let call = start_call(&node, &invoker, &c).await;
        // Its process exits during the call; describe asks the runtime and buries it.
        runtime.alive.lock().unwrap().insert(c.id.clone(), false);
        let dead = described(&node, &c.id).await;
        assert!(dead.dead);
        assert_eq!(
            dead.in_flight, 1,
            "the call still runs as far as the node knows"
        );
        gate.add_permits(1);
        call.await.unwrap().unwrap();
        let after = described(&node, &c.id).await;
        assert_eq!((after.dead, after.in_flight), (true, 0));
    }

    #[tokio::test]
    async fn describe_tells_who_the_node_is_who_reserved_it_and_its_containers() {
        let (node, runtime, _) = pooled(FakeInvoker::default(), 1);
        until(&node, |s| s.ready == 1).await;
        let d = node.describe().await.unwrap();
        assert_eq!(
            (d.node_id.as_str(), d.live_id.as_str(), d.total_memory_bytes),
            ("n1", "live", 1000)
        );
        assert_eq!((d.owner_account_id.as_str(), d.reserved_at_ms), ("", 0));
        assert!(
            d.containers.is_empty(),
            "pool containers are not the node's"
        );

        node.reserve("acct-1").unwrap();
        let first = node.describe().await.unwrap().reserved_at_ms;
        assert!(first > 0);
        node.reserve("acct-1").unwrap();
        let err = node.reserve("acct-2").unwrap_err();
        assert!(matches!(err, NodeError::AlreadyReserved { .. }), "{err}");
        assert!(err.to_string().contains("\"acct-1\""), "{err}");
        let d = node.describe().await.unwrap();
        assert_eq!(
            (d.owner_account_id.as_str(), d.reserved_at_ms),
            ("acct-1", first),
            "one reservation: a retried Reserve changes nothing, another account none"
        );

        let a = node
            .create_container(Node::validate_spec(meta("a", "hello", 128, 300)).unwrap())
            .await
            .unwrap()
            .container;
        let b = node
            .create_container(Node::validate_spec(meta("b", "sleep", 256, 0)).unwrap())
            .await
            .unwrap()
            .container;
        runtime.alive.lock().unwrap().insert(b.id.clone(), false);
        let d = node.describe().await.unwrap();
        assert_eq!(
            d.containers,
            vec![
                ContainerDescription {
                    id: a.id.clone(),
                    spec: a.spec.clone(),
                    dead: false,
                    in_flight: 0,
                    created_at_ms: a.created_at_ms,
                    last_used_at_ms: a.created_at_ms,
                },
                ContainerDescription {
                    id: b.id.clone(),
                    spec: b.spec.clone(),
                    dead: true,
                    in_flight: 0,
                    created_at_ms: b.created_at_ms,
                    last_used_at_ms: b.created_at_ms,
                },
            ],
            "oldest first; the exited one reads dead"
        );
        assert!(a.created_at_ms > d.reserved_at_ms && b.created_at_ms > a.created_at_ms);

        *runtime.stats_fail.lock().unwrap() = true;
        assert_eq!(
            node.describe().await.unwrap_err(),
            NodeError::Runtime(RuntimeError::Unavailable("docker: no answer".into())),
            "no guess when the runtime cannot tell"
        );
        node.shutdown().await;
    }
}
