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
//! ([`Manager::recover`], rules in [`crate::service::recovery`]). A clean stop
//! ([`Manager::shutdown`]) stops every node and saves an empty state; [`Manager::detach`]
//! stops as a crash would, leaving the nodes and the saved state as they are.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use faas_common::shutdown::Shutdown;
use faas_common::token::ClusterAuth;
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tonic::Status;

use crate::api::clock::Clock;
use crate::api::metrics::Counters;
use crate::api::node_client;
use crate::model::{Node, NodeEndpoint, NodeHandle, NodeState, StartedNode};
use crate::service::recovery::{self, SavedState, Sighting, StateStore};
use crate::service::{
    Action, FailedNode, IdKind, MISSED_PROBES_TO_FAIL, NodeProvider, Pool, PoolError, PoolRules,
    ProviderError, StartFailure, check_id,
};

/// How many ready nodes one `ReserveNode` tries before giving up when node services refuse.
const HANDOVER_ATTEMPTS: usize = 3;

/// Longest sleep of the refill timer when nothing is due (it is woken on every change anyway).
const IDLE_WAKE: Duration = Duration::from_secs(3600);

/// The pause between two attempts to identify a node of an earlier run.
const IDENTIFY_PAUSE: Duration = Duration::from_millis(100);

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
    counters: Counters,
    node_call_timeout: Duration,
    clock: Clock,
    persistence: Option<Persistence>,
    /// The cluster token on its calls to nodes (`Reserve`, `DescribeNode`).
    auth: ClusterAuth,
}

impl<P: NodeProvider> Manager<P> {
    /// A manager with an empty pool; call [`Manager::warm_up`] and [`Manager::drive`].
    pub fn new(
        rules: PoolRules,
        provider: P,
        counters: Counters,
        node_call_timeout: Duration,
        clock: Clock,
    ) -> Manager<P> {
        Manager {
            pool: Arc::new(Mutex::new(Pool::new(rules))),
            provider,
            wake: Notify::new(),
            started: Notify::new(),
            warm: watch::Sender::new(false),
            restored: watch::Sender::new(false),
            tasks: Mutex::new(JoinSet::new()),
            counters,
            node_call_timeout,
            clock,
            persistence: None,
            auth: ClusterAuth::default(),
        }
    }

    /// The same manager, sending the cluster token on its calls to nodes.
    pub fn with_auth(mut self, auth: ClusterAuth) -> Self {
        self.auth = auth;
        self
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

    /// The clock the pool's times come from.
    pub fn clock(&self) -> Clock {
        self.clock
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
        let message =
            match node_client::identify(&started.endpoint, p.identify_timeout, &self.auth).await {
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

    async fn start_node(self: Arc<Self>, node_id: String, memory_bytes: u64) {
        self.counters.node_starts.inc();
        let result = match self.provider.start_node(&node_id, memory_bytes).await {
            Ok(started) => self.identified(&node_id, started).await,
            Err(e) => Err(e),
        };
        let now = self.clock.now_ms();
        let stops = match result {
            Ok(started) => {
                tracing::info!(node_id, endpoint = %started.endpoint, "node ready");
                self.pool().node_started(&node_id, started, now)
            }
            Err(e) => {
                let retry_at = self.pool().node_start_failed(&node_id, now);
                if let (Some(retry_at), Some(kind)) = (retry_at, e.start_failure()) {
                    self.counters.start_failed(kind);
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
        let now = self.clock.now_ms();
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
        let now = self.clock.now_ms();
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
            self.counters.node_failed(reason);
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

    /// Starts the initial nodes and waits until each is up or failed (or shutdown).
    /// Reserves wait for this.
    pub async fn warm_up(self: &Arc<Self>, shutdown: Shutdown) {
        let actions = self.pool().bootstrap(self.clock.now_ms());
        self.persist();
        self.restored.send_replace(true);
        tracing::info!(
            nodes = actions.len(),
            provider = self.provider.name(),
            "starting the initial nodes"
        );
        self.start_and_wait(actions, shutdown).await;
    }

    /// A restarted manager's warm-up: takes back the nodes of `saved` (and those its provider
    /// finds by itself) that are still alive, as the rules of [`crate::service::recovery`]
    /// say, kills what is left of the others, removes the earlier run's leftovers, then
    /// refills the pool to `--ready-nodes` and waits for those starts. Reserves wait for this.
    pub async fn recover(self: &Arc<Self>, saved: SavedState, shutdown: Shutdown) {
        let (prefix, memory_bytes) = {
            let pool = self.pool();
            let rules = pool.rules();
            (rules.node_id_prefix.clone(), rules.node_memory_bytes)
        };
        let found = self.provider.discover().await;
        let now = self.clock.now_ms();
        let saved = recovery::merge_found(saved, found, &prefix, memory_bytes, now);
        let to_sight = saved.to_sight();
        tracing::info!(
            nodes = to_sight.len(),
            provider = self.provider.name(),
            "taking back the nodes of an earlier run"
        );
        let seen: HashMap<String, Sighting> = futures::future::join_all(to_sight.into_iter().map(
            |(id, endpoint, handle)| async move {
                let sighting = self.sight(&id, endpoint, &handle).await;
                (id, sighting)
            },
        ))
        .await
        .into_iter()
        .collect();
        let now = self.clock.now_ms();
        let settled = recovery::settle(saved, &seen, now);
        let adopted: Vec<String> = settled
            .nodes
            .iter()
            .filter(|n| matches!(n.state, NodeState::Ready | NodeState::Reserved))
            .inspect(|n| {
                tracing::info!(
                    node_id = n.id,
                    state = %n.state,
                    owner = n.owner_account.as_deref().unwrap_or(""),
                    "node taken back"
                );
            })
            .map(|n| n.id.clone())
            .collect();
        let lost = settled.lost.len();
        let actions = self
            .pool()
            .restore(settled.nodes, settled.next_generation, now);
        self.persist();
        self.restored.send_replace(true);
        self.nodes_failed(settled.lost);
        // Before any start: a new node must not be mistaken for a leftover.
        self.provider.adoption_done(&adopted).await;
        tracing::info!(
            adopted = adopted.len(),
            lost,
            starting = actions.len(),
            "recovered the earlier run's nodes"
        );
        self.start_and_wait(actions, shutdown).await;
    }

    /// Takes a node of an earlier run back from the provider and asks it who it is, for as
    /// long as a node may stay silent (and at least twice) before it counts as silent.
    async fn sight(
        &self,
        node_id: &str,
        endpoint: Option<NodeEndpoint>,
        handle: &NodeHandle,
    ) -> Sighting {
        let Some(endpoint) = endpoint else {
            return Sighting::Gone("no address was recorded for it".to_string());
        };
        if let Err(why) = self.provider.adopt(node_id, &endpoint, handle).await {
            return Sighting::Gone(why);
        }
        let timeout = self
            .persistence
            .as_ref()
            .map_or(self.node_call_timeout, |p| p.identify_timeout);
        let silent_after =
            Duration::from_millis(u64::try_from(self.pool().rules().failed_after_ms).unwrap_or(0));
        let deadline = Instant::now() + silent_after;
        let mut attempts = 0;
        loop {
            attempts += 1;
            match node_client::identify(&endpoint, timeout, &self.auth).await {
                Ok(identity) => return Sighting::Alive(identity),
                Err(why) if attempts >= MISSED_PROBES_TO_FAIL && Instant::now() >= deadline => {
                    return Sighting::Silent(why);
                }
                Err(_) => tokio::time::sleep(IDENTIFY_PAUSE).await,
            }
        }
    }

    /// Starts `actions` and waits until each is up or failed (or shutdown), then lets
    /// reserves through.
    async fn start_and_wait(self: &Arc<Self>, actions: Vec<Action>, shutdown: Shutdown) {
        let wanted = actions.len();
        self.execute(actions);
        let stop = shutdown.wait();
        tokio::pin!(stop);
        loop {
            let started = self.started.notified();
            tokio::pin!(started);
            started.as_mut().enable();
            let counts = self.pool().counts();
            if counts.starting == 0 {
                if counts.ready == 0 && wanted > 0 {
                    tracing::error!(
                        wanted,
                        "no initial node could be started; retrying after the refill delay"
                    );
                } else {
                    tracing::info!(ready = counts.ready, wanted, "initial nodes up");
                }
                break;
            }
            tokio::select! {
                _ = &mut stop => break,
                _ = started => {}
            }
        }
        self.warm.send_replace(true);
    }

    /// The refill timer: runs due refills and frees cooled-down slots until shutdown.
    pub async fn drive(self: Arc<Self>, shutdown: Shutdown) {
        let stop = shutdown.wait();
        tokio::pin!(stop);
        loop {
            let now = self.clock.now_ms();
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
    ) -> Result<Node, Status> {
        check_id(IdKind::Account, account)?;
        let mut warm = self.warm.subscribe();
        let _ = warm.wait_for(|w| *w).await;
        let mut last_failure = String::new();
        for _ in 0..HANDOVER_ATTEMPTS {
            let reservation = self.pool().reserve(account, self.clock.now_ms());
            let reservation = match reservation {
                Ok(r) => r,
                Err(e) => {
                    if e == PoolError::Exhausted {
                        self.counters.exhausted.inc();
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
            let handed = node_client::hand_over(
                endpoint,
                request_id,
                account,
                self.node_call_timeout,
                &self.auth,
            );
            match handed.await {
                Ok(()) => {
                    guard.node_id = None;
                    self.counters.reserves.inc();
                    tracing::info!(node_id = node.id, account, %endpoint, "node reserved");
                    return Ok(node);
                }
                Err(message) => {
                    self.counters.handover_failures.inc();
                    tracing::warn!(node_id = node.id, error = %message, "node refused Reserve; dropping it");
                    last_failure = message;
                    // The guard drops the node here and stops it.
                }
            }
        }
        Err(Status::unavailable(format!(
            "no node could be handed over after {HANDOVER_ATTEMPTS} attempts; last failure: {last_failure}"
        )))
    }

    /// Releases a reserved (or failed) node and returns once it is stopped.
    pub async fn release(self: &Arc<Self>, node_id: &str) -> Result<(), Status> {
        check_id(IdKind::Node, node_id)?;
        self.wait_restored().await;
        let actions = self.pool().release(node_id, self.clock.now_ms())?;
        self.persist();
        self.wake.notify_one();
        self.counters.releases.inc();
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
        let stops = self.pool().close(self.clock.now_ms());
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
            .reserve_failed(&node_id, self.manager.clock.now_ms());
        self.manager.persist();
        self.manager.wake.notify_one();
        if tokio::runtime::Handle::try_current().is_ok() {
            self.manager.execute(actions);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::provider_fake::{FakeNode, FakeProvider};
    use crate::api::state_memory::MemoryState;
    use crate::model::{FailureReason, ids_and_states};

    const DELAY_MS: i64 = 10_000;

    fn manager(ready: usize, max: usize, provider: FakeProvider) -> Arc<Manager<FakeProvider>> {
        let rules = PoolRules {
            ready_nodes: ready,
            max_nodes: max,
            refill_delay_ms: DELAY_MS,
            ..PoolRules::default()
        };
        Arc::new(Manager::new(
            rules,
            provider,
            Counters::default(),
            Duration::from_secs(5),
            Clock::new(),
        ))
    }

    /// A loopback port nothing listens on.
    fn closed_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    /// [`manager`] saving to `store`.
    fn persistent(
        ready: usize,
        max: usize,
        provider: FakeProvider,
        store: Arc<MemoryState>,
    ) -> Arc<Manager<FakeProvider>> {
        let m = Arc::into_inner(manager(ready, max, provider)).unwrap();
        Arc::new(m.with_state(store, Duration::from_secs(5)))
    }

    /// Reserves without the node-service hand-over (the pool's side of `reserve`).
    fn take_node(m: &Manager<FakeProvider>) -> String {
        let id = m.pool().reserve("acct", m.clock.now_ms()).unwrap().node.id;
        m.wake.notify_one();
        id
    }

    async fn advance(ms: u64) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }

    #[tokio::test(start_paused = true)]
    async fn the_timer_refills_after_the_delay_and_reuses_released_slots() {
        let m = manager(2, 3, FakeProvider::default());
        m.warm_up(Shutdown::never()).await;
        assert_eq!(m.provider.started().len(), 2);
        let (trigger, shutdown) = faas_common::shutdown::channel();
        let driver = tokio::spawn(m.clone().drive(shutdown));

        let first = take_node(&m);
        advance(DELAY_MS as u64 - 10).await;
        assert_eq!(m.provider.started().len(), 2, "refill not due yet");
        advance(20).await;
        assert_eq!(m.provider.started().len(), 3, "refilled after the delay");
        assert_eq!(m.pool().counts().ready, 2);

        // At the cap (1 reserved + 2 ready = 3): the next refill waits for a free slot.
        take_node(&m);
        advance(3 * DELAY_MS as u64).await;
        assert_eq!(m.provider.started().len(), 3, "never more than max nodes");

        m.release(&first).await.unwrap();
        assert!(m.provider.stopped.lock().unwrap().contains(&first));
        advance(DELAY_MS as u64 - 10).await;
        assert_eq!(m.provider.started().len(), 3, "released slot still cooling");
        advance(20).await;
        assert_eq!(
            m.provider.started().len(),
            4,
            "released slot reused after the delay"
        );

        trigger.trigger();
        driver.await.unwrap();
        m.shutdown().await;
        assert!(
            m.provider.running().is_empty(),
            "{:?}",
            m.provider.running()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_stops_nodes_whose_start_was_in_flight() {
        let m = manager(
            2,
            2,
            FakeProvider {
                start_delay: Duration::from_secs(5),
                ..FakeProvider::default()
            },
        );
        let (trigger, shutdown) = faas_common::shutdown::channel();
        let warm = tokio::spawn({
            let m = m.clone();
            async move { m.warm_up(shutdown).await }
        });
        advance(1_000).await;
        assert!(m.provider.started().is_empty());
        trigger.trigger();
        warm.await.unwrap();
        m.shutdown().await;
        assert_eq!(
            m.provider.started().len(),
            2,
            "starts in flight were awaited"
        );
        assert!(
            m.provider.running().is_empty(),
            "{:?}",
            m.provider.running()
        );
    }

    #[tokio::test]
    async fn nodes_that_refuse_the_handover_are_dropped_and_stopped() {
        let m = manager(
            2,
            2,
            FakeProvider {
                port: closed_port(),
                ..FakeProvider::default()
            },
        );
        m.warm_up(Shutdown::never()).await;
        let err = m.reserve("req", "acct").await.unwrap_err();
        // Both nodes refused; then none was left.
        assert_eq!(err.code(), tonic::Code::ResourceExhausted, "{err:?}");
        m.shutdown().await;
        assert_eq!(m.counters.handover_failures.get(), 2);
        assert_eq!(m.counters.reserves.get(), 0);
        assert!(m.usage().await.is_empty(), "refused nodes are not billed");
        assert!(
            m.provider.running().is_empty(),
            "{:?}",
            m.provider.running()
        );
        assert_eq!(m.provider.stopped.lock().unwrap().len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_gone_ready_node_is_killed_counted_once_and_replaced_after_the_delay() {
        let m = manager(2, 3, FakeProvider::default());
        m.warm_up(Shutdown::never()).await;
        let (trigger, shutdown) = faas_common::shutdown::channel();
        let driver = tokio::spawn(m.clone().drive(shutdown));
        let dead = m.provider.started()[0].clone();

        m.provider.gone.lock().unwrap().push(dead.clone());
        m.check_gone().await;
        m.check_gone().await; // nothing new: counted and killed once
        advance(1).await;
        assert_eq!(*m.provider.killed.lock().unwrap(), vec![dead.clone()]);
        assert_eq!(m.counters.node_failures(FailureReason::Exited), 1);
        assert_eq!(m.pool().counts().ready, 1);
        assert!(m.probe_targets().iter().all(|(id, _)| *id != dead));

        advance(DELAY_MS as u64 + 10).await;
        assert_eq!(m.provider.started().len(), 3, "replaced after the delay");
        assert_eq!(m.pool().counts().ready, 2);

        trigger.trigger();
        driver.await.unwrap();
        m.shutdown().await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_reserved_node_fails_and_its_release_succeeds() {
        let m = manager(1, 1, FakeProvider::default());
        m.warm_up(Shutdown::never()).await;
        let id = take_node(&m);
        let missed = |m: &Arc<Manager<FakeProvider>>| {
            m.probe_results(vec![(id.clone(), Err("no answer within 1000 ms".into()))]);
        };
        missed(&m);
        advance(1_000).await;
        m.probe_results(vec![(id.clone(), Ok(()))]);
        advance(1_000).await;
        missed(&m);
        advance(2_999).await;
        missed(&m);
        assert_eq!(
            m.counters.node_failures(FailureReason::Unresponsive),
            0,
            "silent for 2999 ms only"
        );
        advance(1).await;
        missed(&m);
        advance(1).await;
        assert_eq!(m.counters.node_failures(FailureReason::Unresponsive), 1);
        assert_eq!(*m.provider.killed.lock().unwrap(), vec![id.clone()]);
        let usage = m.usage().await;
        assert_eq!(usage.len(), 1);
        assert_eq!(usage[0].state, NodeState::Failed);
        assert_eq!(usage[0].released_at_ms, None, "still its account's");

        m.release(&id)
            .await
            .expect("a failed node's release succeeds");
        assert_eq!(m.usage().await[0].state, NodeState::Released);
        m.shutdown().await;
    }

    #[tokio::test]
    async fn recovery_takes_back_live_nodes_fails_dead_ones_and_cleans_up_before_any_start() {
        let one = FakeNode::serve("node-1", "live-1", Some(("acct", 5_000))).await;
        let two = FakeNode::serve("node-2", "live-2", None).await;
        let node = |generation: u64, state: NodeState, endpoint: NodeEndpoint| {
            let mut n = Node::starting(format!("node-{generation}"), generation, 64, 0);
            n.state = state;
            n.endpoint = Some(endpoint);
            n.handle.live_id = Some(format!("live-{generation}"));
            if state != NodeState::Ready {
                n.owner_account = Some("acct".into());
                n.reserved_at_ms = Some(1_000 * generation as i64);
            }
            if state == NodeState::Released {
                n.released_at_ms = Some(9_000);
            }
            n
        };
        let nowhere = NodeEndpoint {
            address: "127.0.0.1".into(),
            port: 1,
        };
        let saved = SavedState {
            next_generation: 6,
            nodes: vec![
                node(1, NodeState::Reserved, one.endpoint.clone()),
                node(2, NodeState::Ready, two.endpoint.clone()),
                node(3, NodeState::Reserved, nowhere.clone()),
                node(4, NodeState::Ready, nowhere.clone()),
                node(5, NodeState::Released, nowhere),
            ],
        };
        let provider = FakeProvider {
            serve_nodes: true,
            alive: Mutex::new(["node-1".into(), "node-2".into()].into()),
            ..FakeProvider::default()
        };
        let store = Arc::new(MemoryState::default());
        let m = persistent(2, 5, provider, store.clone());
        m.recover(saved, Shutdown::never()).await;
        m.finish_tasks().await;

        let usage = m.usage().await;
        assert_eq!(
            ids_and_states(&usage),
            vec![
                ("node-1", NodeState::Reserved),
                ("node-3", NodeState::Failed),
                ("node-5", NodeState::Released)
            ]
        );
        assert_eq!(
            usage[0].reserved_at_ms,
            Some(1_000),
            "the saved reserve time: node time stays correct"
        );
        let mut killed = m.provider.killed();
        killed.sort();
        assert_eq!(killed, vec!["node-3", "node-4"]);
        assert_eq!(m.counters.node_failures(FailureReason::Exited), 2);
        assert_eq!(
            *m.provider.adoption_done.lock().unwrap(),
            vec![(vec!["node-1".to_string(), "node-2".to_string()], 0)],
            "leftovers removed before any start"
        );
        assert_eq!(
            m.provider.started(),
            vec!["node-6"],
            "refilled to --ready-nodes under a new id"
        );
        let latest = store.latest().unwrap();
        assert_eq!(latest.next_generation, 7);
        assert_eq!(
            ids_and_states(&latest.nodes),
            vec![
                ("node-1", NodeState::Reserved),
                ("node-3", NodeState::Failed),
                ("node-5", NodeState::Released),
                ("node-2", NodeState::Ready),
                ("node-6", NodeState::Ready)
            ]
        );
        assert_eq!(
            latest.nodes[4].handle.live_id.as_deref(),
            Some("live-node-6"),
            "a started node's live id is saved"
        );

        m.shutdown().await;
        assert!(
            m.provider.running().is_empty(),
            "{:?}",
            m.provider.running()
        );
        assert_eq!(
            store.latest(),
            Some(SavedState {
                next_generation: 7,
                nodes: Vec::new()
            }),
            "a clean stop leaves an empty state"
        );
    }

    #[tokio::test]
    async fn detach_leaves_the_nodes_running_and_the_saved_state_as_it_is() {
        let provider = FakeProvider {
            serve_nodes: true,
            ..FakeProvider::default()
        };
        let store = Arc::new(MemoryState::default());
        let m = persistent(2, 2, provider, store.clone());
        m.warm_up(Shutdown::never()).await;
        let saved = store.latest().unwrap();
        assert_eq!(
            ids_and_states(&saved.nodes),
            vec![("node-1", NodeState::Ready), ("node-2", NodeState::Ready)]
        );
        let saves = store.saves();

        m.detach().await;
        assert!(
            m.provider
                .detached
                .load(std::sync::atomic::Ordering::Acquire)
        );
        assert_eq!(m.provider.running().len(), 2, "nothing stopped");
        assert_eq!(store.saves(), saves, "nothing saved");
    }

    #[tokio::test]
    async fn with_a_state_store_a_node_that_cannot_say_who_it_is_is_a_failed_start() {
        let provider = FakeProvider {
            port: closed_port(),
            ..FakeProvider::default()
        };
        let store = Arc::new(MemoryState::default());
        let m = persistent(1, 1, provider, store.clone());
        m.warm_up(Shutdown::never()).await;
        assert_eq!(m.provider.killed(), vec!["node-1"]);
        assert_eq!(m.counters.start_failures(), 1);
        assert_eq!(m.pool().counts().ready, 0);
        assert_eq!(
            store.latest(),
            Some(SavedState {
                next_generation: 2,
                nodes: Vec::new()
            })
        );
        m.shutdown().await;
    }
}
