//! The manager: the pure pool behind a short `std` mutex (never held across `.await`), a
//! provider that carries out its starts, stops and kills, and the timer task that drives
//! refills. The health watch (`api/health.rs`) reports what it sees through
//! [`Manager::check_gone`] and [`Manager::probe_results`]; the pool decides which node failed,
//! and the manager counts it, logs it once and kills it.
//!
//! With a state store ([`Manager::with_state`], the `--state-dir`), every change of the pool
//! is saved before it takes effect outside (a start is saved before the node is started, a
//! reserve before the node is handed over), synchronously, one save at a time, each with the
//! pool as it is when the save begins: the file never lags behind what clients were told.
//! A restarted manager then takes the nodes back instead of starting new ones
//! ([`Manager::recover`], rules in [`crate::core::recovery`]). A clean stop
//! ([`Manager::shutdown`]) stops every node and saves an empty state; [`Manager::detach`]
//! stops as a crash would, leaving the nodes and the saved state as they are.
//!
//! It reaches the outside only through its provider and its [`Ports`] (clock, node calls,
//! metrics, state store), and answers with the crate's [`CallError`], which the api layer
//! turns into a status. Files: this one (the manager, its requests and its stops),
//! `warm_up.rs` (the first start and the recovery of an earlier run), `tests.rs`.

mod warm_up;

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use faas_common::shutdown::Shutdown;
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;

use crate::core::{Action, FailedNode, IdKind, Pool, PoolError, PoolRules, SavedState, check_id};
use crate::error::CallError;
use crate::model::{Node, NodeEndpoint, NodeState, StartedNode};
use crate::service::ports::{Ports, StateStore};
use crate::service::{NodeProvider, ProviderError, StartFailure};

/// How many ready nodes one `ReserveNode` tries before giving up when node services refuse.
const HANDOVER_ATTEMPTS: usize = 3;

/// Longest sleep of the refill timer when nothing is due (it is woken on every change anyway).
const IDLE_WAKE: Duration = Duration::from_secs(3600);

/// Where the pool's state is saved, and how nodes are asked who they are after a restart.
struct Persistence {
    store: Arc<dyn StateStore>,
    /// How long one identification of a node may take.
    identify_timeout: Duration,
    /// Held while saving, so saves happen one at a time; true while saving fails (logged
    /// once per run of failures).
    saving: Mutex<bool>,
}

/// The pool, its provider and the work in flight.
pub struct Manager<P: NodeProvider> {
    pool: Arc<Mutex<Pool>>,
    provider: P,
    /// Wakes the refill timer (a reserve, release or start changed what is due).
    wake: Notify,
    /// Fires when a start finishes (warm-up waits on it).
    started: Notify,
    /// True once the initial nodes are up (or failed); reserves wait for it.
    warm: watch::Sender<bool>,
    /// True once the pool holds what it will start from (at once on a first start; after a
    /// restart, once the earlier run's nodes are taken back): usage and releases wait for it,
    /// so a restarted manager never answers from a pool it has not rebuilt yet.
    restored: watch::Sender<bool>,
    /// Starts and background stops in flight; shutdown waits for them.
    tasks: Mutex<JoinSet<()>>,
    /// The clock, the node calls and the metrics.
    ports: Ports,
    node_call_timeout: Duration,
    persistence: Option<Persistence>,
    /// Why the latest node start failed, while no start has succeeded since: a reserve
    /// that finds no node says it (`no machine has 3072 MiB free`).
    last_start_failure: Mutex<Option<String>>,
}

impl<P: NodeProvider> Manager<P> {
    /// A manager with an empty pool; call [`Manager::warm_up`] and [`Manager::drive`].
    pub fn new(
        rules: PoolRules,
        provider: P,
        ports: Ports,
        node_call_timeout: Duration,
    ) -> Manager<P> {
        Manager {
            pool: Arc::new(Mutex::new(Pool::new(rules))),
            provider,
            wake: Notify::new(),
            started: Notify::new(),
            warm: watch::Sender::new(false),
            restored: watch::Sender::new(false),
            tasks: Mutex::new(JoinSet::new()),
            ports,
            node_call_timeout,
            persistence: None,
            last_start_failure: Mutex::new(None),
        }
    }

    /// The same manager, saving its pool to `store` after every change and identifying
    /// nodes (after each start, and at recovery) with calls of at most `identify_timeout`.
    pub fn with_state(mut self, store: Arc<dyn StateStore>, identify_timeout: Duration) -> Self {
        self.persistence = Some(Persistence {
            store,
            identify_timeout,
            saving: Mutex::new(false),
        });
        self
    }

    /// Saves the pool as it is now (nothing without a state store). A failed save is logged
    /// (once until a save succeeds again); the manager keeps serving.
    fn persist(&self) {
        let Some(p) = &self.persistence else {
            return;
        };
        let mut failing = p.saving.lock().unwrap_or_else(PoisonError::into_inner);
        let state = self.pool().snapshot();
        self.save(p, &mut failing, &state);
    }

    fn save(&self, p: &Persistence, failing: &mut bool, state: &SavedState) {
        match p.store.save(state) {
            Ok(()) => {
                if std::mem::take(failing) {
                    tracing::info!("the state file is written again");
                }
            }
            Err(e) => {
                if !std::mem::replace(failing, true) {
                    tracing::error!(error = %e, "cannot save the pool's state; a restart would lose the nodes changed since");
                }
            }
        }
    }

    /// The pool, shared with the metrics collector.
    pub fn pool_handle(&self) -> Arc<Mutex<Pool>> {
        self.pool.clone()
    }

    /// The provider.
    pub fn provider(&self) -> &P {
        &self.provider
    }

    /// Now, on the manager's clock.
    fn now_ms(&self) -> i64 {
        self.ports.clock.now_ms()
    }

    fn pool(&self) -> MutexGuard<'_, Pool> {
        self.pool.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        let mut tasks = self.tasks.lock().unwrap_or_else(PoisonError::into_inner);
        // Forget finished tasks so the set stays small.
        while tasks.try_join_next().is_some() {}
        tasks.spawn(task);
    }

    /// Carries out `actions` in the background.
    fn execute(self: &Arc<Self>, actions: Vec<Action>) {
        for action in actions {
            let me = self.clone();
            match action {
                Action::StartNode {
                    node_id,
                    memory_bytes,
                } => self.spawn(async move { me.start_node(node_id, memory_bytes).await }),
                Action::StopNode { node_id } => {
                    self.spawn(async move { me.provider.stop_node(&node_id).await })
                }
                Action::KillNode { node_id } => {
                    self.spawn(async move { me.provider.kill_node(&node_id).await })
                }
            }
        }
    }

    /// Carries out one stop or kill and waits for it (a start is ignored).
    async fn end_node(&self, action: &Action) {
        match action {
            Action::StopNode { node_id } => self.provider.stop_node(node_id).await,
            Action::KillNode { node_id } => self.provider.kill_node(node_id).await,
            Action::StartNode { .. } => {}
        }
    }

    /// Carries out `actions` and waits for them (stops only; starts go to the background).
    async fn execute_and_wait(self: &Arc<Self>, actions: Vec<Action>) {
        let (starts, ends): (Vec<Action>, Vec<Action>) = actions
            .into_iter()
            .partition(|a| matches!(a, Action::StartNode { .. }));
        self.execute(starts);
        futures::future::join_all(ends.iter().map(|a| self.end_node(a))).await;
    }

    /// With a state store, learns a started node's live id (so a restarted manager can tell
    /// it from another life at the same address); a node that cannot say who it is, or says
    /// it is another node, is killed and counts as a failed start.
    async fn identified(
        &self,
        node_id: &str,
        mut started: StartedNode,
    ) -> Result<StartedNode, ProviderError> {
        let Some(p) = &self.persistence else {
            return Ok(started);
        };
        let message = match self
            .ports
            .nodes
            .identify(&started.endpoint, p.identify_timeout)
            .await
        {
            Ok(identity) if identity.node_id == node_id => {
                started.handle.live_id = Some(identity.live_id);
                return Ok(started);
            }
            Ok(identity) => format!(
                "it says it is node {:?}",
                faas_common::text::clip(&identity.node_id)
            ),
            Err(e) => format!("it does not say who it is: {e}"),
        };
        self.provider.kill_node(node_id).await;
        Err(ProviderError::Start {
            node_id: node_id.to_string(),
            kind: StartFailure::Unreachable,
            message,
        })
    }

    fn note_start_failure(&self, why: Option<String>) {
        *self
            .last_start_failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = why;
    }

    async fn start_node(self: Arc<Self>, node_id: String, memory_bytes: u64) {
        self.ports.metrics.node_starting();
        let result = match self.provider.start_node(&node_id, memory_bytes).await {
            Ok(started) => self.identified(&node_id, started).await,
            Err(e) => Err(e),
        };
        let now = self.now_ms();
        let stops = match result {
            Ok(started) => {
                tracing::info!(node_id, endpoint = %started.endpoint, "node ready");
                self.note_start_failure(None);
                self.pool().node_started(&node_id, started, now)
            }
            Err(e) => {
                let retry_at = self.pool().node_start_failed(&node_id, now);
                if let (Some(retry_at), Some(kind)) = (retry_at, e.start_failure()) {
                    self.note_start_failure(Some(e.to_string()));
                    self.ports.metrics.start_failed(kind);
                    tracing::warn!(
                        node_id,
                        reason = %kind,
                        error = %e,
                        retry_in_ms = retry_at - now,
                        "node failed to start; not reported ready, retried later"
                    );
                }
                Vec::new()
            }
        };
        self.persist();
        self.wake.notify_one();
        self.started.notify_waiters();
        // A stop here means the node is no longer wanted (shutting down): stop it in this task
        // so shutdown, which waits for this task, also waits for the stop.
        futures::future::join_all(stops.iter().map(|a| self.end_node(a))).await;
    }

    /// The ready and reserved nodes, to probe.
    pub fn probe_targets(&self) -> Vec<(String, NodeEndpoint)> {
        self.pool().probe_targets()
    }

    /// Takes one probe round's results (`Err` says how a probe failed) and fails the nodes
    /// that have not answered for too long.
    pub fn probe_results(self: &Arc<Self>, results: Vec<(String, Result<(), String>)>) {
        let now = self.now_ms();
        let failed: Vec<FailedNode> = {
            let mut pool = self.pool();
            results
                .into_iter()
                .filter_map(|(node_id, result)| match result {
                    Ok(()) => {
                        pool.probe_answered(&node_id, now);
                        None
                    }
                    Err(detail) => {
                        tracing::debug!(node_id, detail, "node missed a health probe");
                        pool.probe_missed(&node_id, &detail, now)
                    }
                })
                .collect()
        };
        self.nodes_failed(failed);
    }

    /// Asks the provider which nodes stopped running (it reaps them) and fails them.
    pub async fn check_gone(self: &Arc<Self>) {
        let gone = self.provider.gone_nodes().await;
        if gone.is_empty() {
            return;
        }
        let now = self.now_ms();
        let failed: Vec<FailedNode> = {
            let mut pool = self.pool();
            gone.iter()
                .filter_map(|g| pool.node_exited(&g.node_id, &g.detail, now))
                .collect()
        };
        self.nodes_failed(failed);
    }

    /// Counts, logs (once: the pool reports a failure once) and kills failed nodes.
    fn nodes_failed(self: &Arc<Self>, failed: Vec<FailedNode>) {
        if failed.is_empty() {
            return;
        }
        for f in failed {
            let reason = f.failure.reason;
            self.ports.metrics.node_failed(reason);
            let detail = &f.failure.detail;
            if f.was == NodeState::Ready {
                tracing::warn!(node_id = f.node_id, %reason, detail, "ready node failed: removed from the pool and killed; a replacement is owed");
            } else {
                tracing::warn!(node_id = f.node_id, %reason, detail, "reserved node failed: killed; it stays reserved until its account releases it");
            }
            self.execute(f.actions);
        }
        self.persist();
        self.wake.notify_one();
    }

    /// The refill timer: runs due refills and frees cooled-down slots until shutdown.
    pub async fn drive(self: Arc<Self>, shutdown: Shutdown) {
        let stop = shutdown.wait();
        tokio::pin!(stop);
        loop {
            let now = self.now_ms();
            let (actions, next) = {
                let mut pool = self.pool();
                let actions = pool.tick(now);
                (actions, pool.next_wake_ms())
            };
            if !actions.is_empty() {
                tracing::info!(nodes = actions.len(), "refilling the pool");
                self.persist();
            }
            self.execute(actions);
            let sleep = match next {
                Some(at) => Duration::from_millis((at - now).max(0) as u64),
                None => IDLE_WAKE,
            };
            tokio::select! {
                _ = &mut stop => return,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(sleep) => {}
            }
        }
    }

    /// Reserves a node for `account` and hands it over (`NodeService.Reserve`).
    pub async fn reserve(
        self: &Arc<Self>,
        request_id: &str,
        account: &str,
    ) -> Result<Node, CallError> {
        check_id(IdKind::Account, account)?;
        let mut warm = self.warm.subscribe();
        let _ = warm.wait_for(|w| *w).await;
        let mut last_failure = String::new();
        for _ in 0..HANDOVER_ATTEMPTS {
            let reservation = self.pool().reserve(account, self.now_ms());
            let reservation = match reservation {
                Ok(r) => r,
                Err(e) => {
                    if e == PoolError::Exhausted {
                        self.ports.metrics.exhausted();
                        let why = self
                            .last_start_failure
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .clone();
                        if let Some(last_start_failure) = why {
                            return Err(CallError::Exhausted { last_start_failure });
                        }
                    }
                    return Err(e.into());
                }
            };
            self.persist();
            self.wake.notify_one();
            let node = reservation.node;
            let mut guard = HandoverGuard {
                manager: self.clone(),
                node_id: Some(node.id.clone()),
            };
            let Some(endpoint) = node.endpoint.as_ref() else {
                last_failure = format!("node {} has no address", node.id);
                continue;
            };
            let handed =
                self.ports
                    .nodes
                    .hand_over(endpoint, request_id, account, self.node_call_timeout);
            match handed.await {
                Ok(()) => {
                    guard.node_id = None;
                    self.ports.metrics.reserved();
                    tracing::info!(node_id = node.id, account, %endpoint, "node reserved");
                    return Ok(node);
                }
                Err(message) => {
                    self.ports.metrics.handover_failed();
                    tracing::warn!(node_id = node.id, error = %message, "node refused Reserve; dropping it");
                    last_failure = message;
                    // The guard drops the node here and stops it.
                }
            }
        }
        Err(CallError::NoHandover {
            attempts: HANDOVER_ATTEMPTS,
            last_failure,
        })
    }

    /// Releases a reserved (or failed) node and returns once it is stopped.
    pub async fn release(self: &Arc<Self>, node_id: &str) -> Result<(), CallError> {
        check_id(IdKind::Node, node_id)?;
        self.wait_restored().await;
        let actions = self.pool().release(node_id, self.now_ms())?;
        self.persist();
        self.wake.notify_one();
        self.ports.metrics.released();
        tracing::info!(node_id, "node released");
        // Stop in a task of its own: a client that gives up must not leave the node half-stopped.
        let me = self.clone();
        let stopping = tokio::spawn(async move { me.execute_and_wait(actions).await });
        let _ = stopping.await;
        Ok(())
    }

    /// Every node ever reserved, in reservation order.
    pub async fn usage(&self) -> Vec<Node> {
        self.wait_restored().await;
        self.pool().usage().cloned().collect()
    }

    async fn wait_restored(&self) {
        let mut restored = self.restored.subscribe();
        let _ = restored.wait_for(|r| *r).await;
    }

    /// Stops the pool and every node (adopted ones too): no node survives, and the saved
    /// state is emptied (only the next generation is kept, so ids stay unique).
    pub async fn shutdown(self: &Arc<Self>) {
        let stops = self.pool().close(self.now_ms());
        self.warm.send_replace(true);
        self.restored.send_replace(true);
        self.finish_tasks().await;
        self.execute_and_wait(stops).await;
        self.provider.shutdown().await;
        if let Some(p) = &self.persistence {
            let mut failing = p.saving.lock().unwrap_or_else(PoisonError::into_inner);
            let empty = SavedState {
                next_generation: self.pool().snapshot().next_generation,
                nodes: Vec::new(),
            };
            self.save(p, &mut failing, &empty);
        }
        tracing::info!("all nodes stopped");
    }

    /// Stops as a crash would, for tests and fault injection: waits for the work in flight,
    /// then lets go of every node without stopping it and leaves the saved state as it is, for
    /// a restarted manager to take them back.
    pub async fn detach(self: &Arc<Self>) {
        self.warm.send_replace(true);
        self.restored.send_replace(true);
        self.finish_tasks().await;
        self.provider.detach().await;
        tracing::info!("detached: the nodes keep running");
    }

    /// Waits for the starts and background stops in flight (and those they spawn).
    async fn finish_tasks(&self) {
        loop {
            let mut tasks =
                std::mem::take(&mut *self.tasks.lock().unwrap_or_else(PoisonError::into_inner));
            if tasks.is_empty() {
                break;
            }
            while tasks.join_next().await.is_some() {}
        }
    }
}

/// Drops a reserved node that was not handed over (the node refused, or the client went away
/// mid-call): the node leaves the records and is stopped.
struct HandoverGuard<P: NodeProvider> {
    manager: Arc<Manager<P>>,
    node_id: Option<String>,
}

impl<P: NodeProvider> Drop for HandoverGuard<P> {
    fn drop(&mut self) {
        let Some(node_id) = self.node_id.take() else {
            return;
        };
        let actions = self
            .manager
            .pool()
            .reserve_failed(&node_id, self.manager.now_ms());
        self.manager.persist();
        self.manager.wake.notify_one();
        if tokio::runtime::Handle::try_current().is_ok() {
            self.manager.execute(actions);
        }
    }
}

#[cfg(test)]
mod tests;
