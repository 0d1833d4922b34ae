//! The async driver around the pure policy core.
//!
//! [`Scheduler`] holds the policy behind a `std::sync::Mutex` that is never held across an
//! `.await` (a critical section is one `Policy::handle` call plus sorting its decisions), keeps
//! a one-shot channel per waiting acquire, and carries decisions out through the ports it
//! declares ([`ResourcePort`], [`NodePort`]); every result comes back to the core as an event.
//! Background tasks send `Tick`s (at the policy's next wake-up and at least every 100 ms) and
//! poll `GetStats` on every node, each poll bounded by the probe timeout: an answer is a
//! `Stats` event, a failure or silence a `NodeUnreachable` event (so are creates and
//! removes that fail at the transport level), from which the core learns node health.
//! [`Decision::Health`] notes are logged here. Time comes from the [`Clock`] port.

pub mod decisions;
pub mod ports;
mod recovery;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::future::join_all;
use tokio::sync::{Notify, oneshot};
use tokio::task::JoinHandle;

use crate::core::{
    Acquire, CoreError, Decision, Event, Grant, HealthNote, Policy, Return, Snapshot,
};
pub use crate::error::ServiceError;
use crate::model::{Millis, NodeAddr, Text};
use crate::store::Map;
use faas_common::shutdown::Shutdown;
pub use ports::{
    Clock, NodeDescription, NodePort, PortError, ReserveError, ReservedNode, ResourcePort,
};
pub use recovery::RECONCILE_INTERVAL_MS;

/// The longest the timer waits between two ticks, ms.
pub const MAX_TICK_MS: Millis = 100;

/// Settings of the driver.
#[derive(Clone, Debug)]
pub struct ServiceOptions {
    /// How often each node's `GetStats` is polled, ms (0 = never).
    pub stats_interval_ms: Millis,
    /// How long one `GetStats` poll may take before the node counts as not answering, ms.
    pub probe_timeout_ms: Millis,
    /// How often the reserved nodes are reconciled with the resource manager's, ms (0 =
    /// never, not even at start; see `recovery`).
    pub reconcile_interval_ms: Millis,
}

/// The default of [`ServiceOptions::probe_timeout_ms`].
pub const PROBE_TIMEOUT_MS: Millis = 500;

impl Default for ServiceOptions {
    fn default() -> Self {
        ServiceOptions {
            stats_interval_ms: 1000,
            probe_timeout_ms: PROBE_TIMEOUT_MS,
            reconcile_interval_ms: RECONCILE_INTERVAL_MS,
        }
    }
}

type Reply = Result<Grant, ServiceError>;

struct Core {
    policy: Box<dyn Policy>,
    pending: Map<Text, oneshot::Sender<Reply>>,
    account: Option<Text>,
    shutting_down: bool,
    scratch: Vec<Decision>,
}

/// Work to do outside the lock after a core step.
#[derive(Default)]
struct Effects {
    replies: Vec<(oneshot::Sender<Reply>, Reply)>,
    actions: Vec<(Decision, Text)>,
    /// The request whose step asked for the actions (an acquire's), if any: the nodes are
    /// told it as `x-request-id`, so their log lines about a create name the call it serves.
    request_id: Option<Text>,
    cancels: Vec<Text>,
    notes: Vec<HealthNote>,
    records: Vec<decisions::DecisionRecord>,
}

/// What a core step answered to the caller that triggered it.
enum Step {
    /// The event was applied; the caller's request (if any) was answered in this step.
    Done(Option<Reply>),
    /// The caller's acquire waits; the answer will come on this channel.
    Waiting(oneshot::Receiver<Reply>),
}

struct Inner<R, N, C> {
    core: Mutex<Core>,
    resource: Arc<R>,
    nodes: Arc<N>,
    clock: C,
    wake: Notify,
    planned_wake: AtomicU64,
    opts: ServiceOptions,
    /// Nodes this scheduler released (never adopted again), oldest first.
    released: Mutex<std::collections::VecDeque<Text>>,
    /// The recent decisions with their reasons (off until [`Scheduler::keep_decisions`]).
    decisions: decisions::DecisionLog,
}

/// The scheduler service: acquire and return, driven by a policy. Cheap to clone.
pub struct Scheduler<R, N, C> {
    inner: Arc<Inner<R, N, C>>,
}

impl<R, N, C> Clone for Scheduler<R, N, C> {
    fn clone(&self) -> Self {
        Scheduler {
            inner: self.inner.clone(),
        }
    }
}

impl<R: ResourcePort, N: NodePort, C: Clock> Scheduler<R, N, C> {
    /// A scheduler running `policy`, talking to the outside through the given ports.
    pub fn new(
        policy: Box<dyn Policy>,
        resource: R,
        nodes: N,
        clock: C,
        opts: ServiceOptions,
    ) -> Self {
        Scheduler {
            inner: Arc::new(Inner {
                core: Mutex::new(Core {
                    policy,
                    pending: Map::default(),
                    account: None,
                    shutting_down: false,
                    scratch: Vec::with_capacity(16),
                }),
                resource: Arc::new(resource),
                nodes: Arc::new(nodes),
                clock,
                wake: Notify::new(),
                planned_wake: AtomicU64::new(0),
                opts,
                released: Mutex::new(std::collections::VecDeque::new()),
                decisions: decisions::DecisionLog::default(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Core> {
        // A panic while holding the lock cannot leave the pure core half-updated in a way we
        // could repair; keep serving with what is there rather than failing every call.
        self.inner
            .core
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The current time on the scheduler's clock.
    pub fn now(&self) -> Millis {
        self.inner.clock.now()
    }

    /// Asks for a container. Waits (up to `acquire.deadline`) until the policy grants one or
    /// rejects the request. If the returned future is dropped early, the request is cancelled
    /// (and a container granted meanwhile is given back).
    pub async fn acquire(&self, acquire: Acquire) -> Result<Grant, ServiceError> {
        let request_id = acquire.request_id.clone();
        let account = acquire.account_id.clone();
        let step = self.step(
            Event::Acquire(acquire),
            Some(&request_id),
            Some(account),
            None,
        )?;
        match step {
            Step::Done(Some(reply)) => reply,
            Step::Done(None) => Err(ServiceError::Refused(CoreError::Inconsistent(
                "the acquire was neither answered nor queued".into(),
            ))),
            Step::Waiting(rx) => {
                let mut guard = CancelOnDrop {
                    scheduler: self,
                    request_id: Some(request_id),
                };
                let reply = rx.await.unwrap_or(Err(ServiceError::ShuttingDown));
                guard.request_id = None;
                reply
            }
        }
    }

    /// Gives a container back.
    pub fn release(&self, ret: Return) -> Result<(), ServiceError> {
        self.step(Event::Return(ret), None, None, None).map(|_| ())
    }

    /// Applies one event (for results, stats, ticks and tests).
    pub fn feed(&self, event: Event) -> Result<(), ServiceError> {
        self.step(event, None, None, None).map(|_| ())
    }

    /// Counts for metrics.
    pub fn snapshot(&self) -> Snapshot {
        self.lock().policy.snapshot()
    }

    /// Keeps the latest `n` decisions with their reasons (0: none, and the policy builds no
    /// reasons).
    pub fn keep_decisions(&self, n: usize) {
        self.inner.decisions.keep(n);
        if let Some(r) = self.lock().policy.reasons() {
            r.listen(n > 0);
        }
    }

    /// The recent decisions and their followers.
    pub fn decisions(&self) -> &decisions::DecisionLog {
        &self.inner.decisions
    }

    /// Runs `f` on the policy (read-only), under the lock: keep it short.
    pub fn inspect<T>(&self, f: impl FnOnce(&dyn Policy) -> T) -> T {
        f(self.lock().policy.as_ref())
    }

    /// Fails every waiting acquire with "scheduler is shutting down" and refuses new ones.
    pub fn shutdown(&self) {
        let pending: Vec<_> = {
            let mut core = self.lock();
            core.shutting_down = true;
            core.pending.drain().map(|(_, tx)| tx).collect()
        };
        for tx in pending {
            let _ = tx.send(Err(ServiceError::ShuttingDown));
        }
        self.inner.wake.notify_one();
    }

    /// One core step: apply `event` under the lock, sort its decisions, then (outside the
    /// lock) answer waiting acquires and start the I/O the decisions ask for. `cause`: the
    /// request the event is a result for (a node reserved for an acquire), which the I/O it
    /// asks for is done for; else `own_request`.
    fn step(
        &self,
        event: Event,
        own_request: Option<&Text>,
        account: Option<Text>,
        cause: Option<&Text>,
    ) -> Result<Step, ServiceError> {
        let now = self.inner.clock.now();
        let mut effects = Effects::default();
        let step = {
            let mut guard = self.lock();
            let core = &mut *guard;
            if core.shutting_down && matches!(event, Event::Acquire(_)) {
                return Err(ServiceError::ShuttingDown);
            }
            if core.account.is_none() {
                core.account = account;
            }
            let explain = self.inner.decisions.on();
            let asked = match (&event, explain) {
                (Event::Acquire(a), true) => Some(a.function.name.clone()),
                _ => None,
            };
            let mut out = std::mem::take(&mut core.scratch);
            if let Err(e) = core.policy.handle(now, event, &mut out) {
                core.scratch = out;
                if let Some(r) = core.policy.reasons() {
                    r.take();
                }
                return Err(ServiceError::Refused(e));
            }
            if explain {
                let notes = core.policy.reasons().map(|r| r.take()).unwrap_or_default();
                effects.records = decisions::records(
                    core.policy.state(),
                    &out,
                    notes,
                    self.inner.clock.wall_ms(),
                );
            }
            let mut own = None;
            for d in out.drain(..) {
                let (request_id, reply) = match d {
                    Decision::Grant(g) => (g.request_id.clone(), Ok(g)),
                    Decision::Reject { request_id, error } => {
                        (request_id, Err(ServiceError::Rejected(error)))
                    }
                    Decision::Health(note) => {
                        effects.notes.push(note);
                        continue;
                    }
                    io => {
                        let account = core.account.clone().unwrap_or_else(|| "".into());
                        effects.actions.push((io, account));
                        if effects.request_id.is_none() {
                            effects.request_id = cause.or(own_request).cloned();
                        }
                        continue;
                    }
                };
                if own_request.is_some_and(|own| *own == request_id) {
                    own = Some(reply);
                } else if let Some(tx) = core.pending.remove(&request_id) {
                    effects.replies.push((tx, reply));
                } else if let Ok(g) = reply {
                    // Nobody waits for this grant any more: give the container straight back.
                    effects.cancels.push(g.request_id);
                }
            }
            core.scratch = out;
            let step = match (own, own_request) {
                (Some(reply), _) => Step::Done(Some(reply)),
                (None, Some(id)) => {
                    if let Some(function) = &asked {
                        let waiting = core.policy.state().waiting_count();
                        effects.records.push(decisions::queued(
                            id,
                            function,
                            self.inner.clock.wall_ms(),
                            waiting,
                        ));
                    }
                    let (tx, rx) = oneshot::channel();
                    core.pending.insert(id.clone(), tx);
                    Step::Waiting(rx)
                }
                (None, None) => Step::Done(None),
            };
            if let Some(w) = core.policy.next_wakeup()
                && w < self.inner.planned_wake.load(Ordering::Relaxed)
            {
                self.inner.wake.notify_one();
            }
            step
        };
        self.apply(effects);
        Ok(step)
    }

    fn apply(&self, effects: Effects) {
        self.inner.decisions.push(effects.records);
        for note in effects.notes {
            log_health(&note);
        }
        for request_id in effects.cancels {
            let _ = self.feed(Event::Cancel { request_id });
        }
        for (tx, reply) in effects.replies {
            if let Err(Ok(grant)) = tx.send(reply) {
                // The caller went away between the decision and the delivery.
                let _ = self.feed(Event::Cancel {
                    request_id: grant.request_id,
                });
            }
        }
        if effects.actions.is_empty() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::error!(
                actions = effects.actions.len(),
                "no tokio runtime to carry out scheduler decisions"
            );
            return;
        };
        for (decision, account) in effects.actions {
            let me = self.clone();
            let request_id = effects.request_id.clone();
            // In the span of the call that caused it (an acquire's `request_id`), if any.
            runtime.spawn(tracing::Instrument::in_current_span(async move {
                me.execute(decision, account, request_id).await
            }));
        }
    }

    async fn execute(&self, decision: Decision, account: Text, request_id: Option<Text>) {
        let event = match decision {
            Decision::ReserveNode { op } => {
                match self.inner.resource.reserve_node(&account).await {
                    Ok(node) => {
                        tracing::info!(%op, node = %node.id, address = %node.address, port = node.port, "node reserved");
                        Event::NodeReserved { op, node }
                    }
                    Err(e) => {
                        tracing::warn!(%op, exhausted = e.exhausted, error = %e.message, "reserve failed");
                        Event::NodeReserveFailed {
                            op,
                            exhausted: e.exhausted,
                            message: e.message,
                        }
                    }
                }
            }
            Decision::CreateContainer { op, node, function } => {
                match self
                    .inner
                    .nodes
                    .create_container(&node, &function, request_id.as_deref())
                    .await
                {
                    Ok(container_id) => {
                        tracing::debug!(%op, node = %node.id, function = %function.name, container = %container_id, "container created");
                        Event::ContainerCreated { op, container_id }
                    }
                    Err(e) => {
                        tracing::warn!(%op, node = %node.id, function = %function.name, error = %e, "create failed");
                        self.unreachable(&node, &e);
                        Event::ContainerCreateFailed {
                            op,
                            message: e.message,
                            refused: e.refused,
                        }
                    }
                }
            }
            Decision::RemoveContainer { node, container_id } => {
                if let Err(e) = self
                    .inner
                    .nodes
                    .remove_container(&node, &container_id)
                    .await
                {
                    // The core no longer counts it; the node service reaps what it cannot
                    // remove when the node is released.
                    tracing::warn!(node = %node.id, container = %container_id, error = %e, "remove failed");
                    self.unreachable(&node, &e);
                }
                Event::ContainerRemoved { container_id }
            }
            Decision::ReleaseNode { node_id } => {
                if !self.release_until_done(&node_id).await {
                    return;
                }
                Event::NodeReleased { node_id }
            }
            Decision::Grant(_) | Decision::Reject { .. } | Decision::Health(_) => return,
        };
        match self.step(event, None, None, request_id.as_ref()) {
            Ok(_) => {}
            // The result of a create on a node declared lost meanwhile: the core forgot the
            // operation with the node, which is being released with what it holds.
            Err(ServiceError::Refused(CoreError::UnknownOperation { op, event })) => {
                tracing::debug!(%op, event, "result of an operation the core forgot (its node was lost)");
            }
            Err(e) => tracing::error!(error = %e, "the policy refused a result event"),
        }
    }

    /// Tells the core that `node` did not answer, if `e` says so.
    fn unreachable(&self, node: &NodeAddr, e: &PortError) {
        if e.unreachable {
            let _ = self.feed(Event::NodeUnreachable {
                node_id: node.id.clone(),
                message: e.message.clone(),
            });
        }
    }

    /// Starts the timer, the stats poller and the reconciler; they stop when `shutdown`
    /// fires.
    pub fn start(&self, shutdown: Shutdown) -> Vec<JoinHandle<()>> {
        let mut tasks = vec![tokio::spawn(self.clone().timer(shutdown.clone()))];
        if self.inner.opts.stats_interval_ms > 0 {
            tasks.push(tokio::spawn(self.clone().stats_poller(shutdown.clone())));
        }
        if self.inner.opts.reconciles() {
            tasks.push(tokio::spawn(self.clone().reconciler(shutdown)));
        }
        tasks
    }

    /// Sets the account reserves are made for, if none was seen yet (a restarted scheduler
    /// learns it from the nodes it adopts).
    fn learn_account(&self, account: Text) {
        let mut core = self.lock();
        if core.account.is_none() {
            core.account = Some(account);
        }
    }

    fn is_shutting_down(&self) -> bool {
        self.lock().shutting_down
    }

    async fn timer(self, shutdown: Shutdown) {
        let stop = shutdown.wait();
        tokio::pin!(stop);
        loop {
            let next = self.lock().policy.next_wakeup();
            let now = self.inner.clock.now();
            let at = next.map_or(now + MAX_TICK_MS, |n| n.min(now + MAX_TICK_MS));
            self.inner.planned_wake.store(at, Ordering::Relaxed);
            let sleep = tokio::time::sleep(Duration::from_millis(at.saturating_sub(now)));
            tokio::select! {
                _ = &mut stop => return,
                _ = sleep => {}
                _ = self.inner.wake.notified() => {}
            }
            if let Err(e) = self.feed(Event::Tick) {
                tracing::error!(error = %e, "the policy refused a tick");
            }
        }
    }

    async fn stats_poller(self, shutdown: Shutdown) {
        let stop = shutdown.wait();
        tokio::pin!(stop);
        let every = Duration::from_millis(self.inner.opts.stats_interval_ms);
        let probe = Duration::from_millis(self.inner.opts.probe_timeout_ms.max(1));
        loop {
            tokio::select! {
                _ = &mut stop => return,
                _ = tokio::time::sleep(every) => {}
            }
            let nodes: Vec<NodeAddr> =
                self.inspect(|p| p.state().store.nodes().map(|(_, n)| n.addr()).collect());
            let taken_at = self.now();
            let port = &self.inner.nodes;
            // Every poll is bounded: a paused node must not hold up the others' samples. The
            // liveness probe runs beside the stats: a node whose stats are slow (Docker's
            // stats API on a busy machine) but that answers the probe is alive.
            let rounds = join_all(nodes.iter().map(|n| {
                futures::future::join(
                    tokio::time::timeout(probe, port.get_stats(n)),
                    tokio::time::timeout(probe, port.probe(n)),
                )
            }))
            .await;
            for (node, (sample, alive)) in nodes.iter().zip(rounds) {
                let failed = match sample {
                    Ok(Ok(mut s)) => {
                        s.taken_at = taken_at;
                        let _ = self.feed(Event::Stats(s));
                        continue;
                    }
                    Ok(Err(e)) => e,
                    Err(_) => PortError::unreachable(format!(
                        "GetStats on node {} ({}:{}) did not answer within {} ms",
                        node.id,
                        node.address,
                        node.port,
                        probe.as_millis()
                    )),
                };
                tracing::debug!(node = %node.id, error = %failed, "GetStats failed");
                if matches!(alive, Ok(Ok(()))) {
                    continue;
                }
                let _ = self.feed(Event::NodeUnreachable {
                    node_id: node.id.clone(),
                    message: failed.message,
                });
            }
        }
    }
}

/// Logs a health transition: losses and expiries as warnings, the rest as information.
fn log_health(note: &HealthNote) {
    match note {
        HealthNote::NodeLost { .. }
        | HealthNote::ContainerLost { .. }
        | HealthNote::LeaseExpired { .. }
        | HealthNote::NodeSuspect { .. } => {
            tracing::warn!(kind = note.kind(), "{note}");
        }
        HealthNote::NodeRecovered { .. }
        | HealthNote::DefinitionChanged { .. }
        | HealthNote::NodeAdopted { .. } => {
            tracing::info!(kind = note.kind(), "{note}");
        }
    }
}

/// Cancels a waiting acquire whose future is dropped before its answer arrived.
struct CancelOnDrop<'a, R: ResourcePort, N: NodePort, C: Clock> {
    scheduler: &'a Scheduler<R, N, C>,
    request_id: Option<Text>,
}

impl<R: ResourcePort, N: NodePort, C: Clock> Drop for CancelOnDrop<'_, R, N, C> {
    fn drop(&mut self) {
        if let Some(request_id) = self.request_id.take() {
            {
                let mut core = self.scheduler.lock();
                core.pending.remove(&request_id);
            }
            let _ = self.scheduler.feed(Event::Cancel { request_id });
        }
    }
}

#[cfg(test)]
mod tests;
