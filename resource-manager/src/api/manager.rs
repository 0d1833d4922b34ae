//! The manager: the pure pool behind a short `std` mutex (never held across `.await`), a
//! provider that carries out its starts, stops and kills, and the timer task that drives
//! refills. The health watch (`api/health.rs`) reports what it sees through
//! [`Manager::check_gone`] and [`Manager::probe_results`]; the pool decides which node failed,
//! and the manager counts it, logs it once and kills it.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use faas_common::shutdown::Shutdown;
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;
use tonic::Status;

use crate::api::clock::Clock;
use crate::api::metrics::Counters;
use crate::api::node_client;
use crate::model::{Node, NodeEndpoint, NodeState};
use crate::service::{
    Action, FailedNode, IdKind, NodeProvider, Pool, PoolError, PoolRules, check_id,
};

/// How many ready nodes one `ReserveNode` tries before giving up when node services refuse.
const HANDOVER_ATTEMPTS: usize = 3;

/// Longest sleep of the refill timer when nothing is due (it is woken on every change anyway).
const IDLE_WAKE: Duration = Duration::from_secs(3600);

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
    /// Starts and background stops in flight; shutdown waits for them.
    tasks: Mutex<JoinSet<()>>,
    counters: Counters,
    node_call_timeout: Duration,
    clock: Clock,
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
            tasks: Mutex::new(JoinSet::new()),
            counters,
            node_call_timeout,
            clock,
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

    async fn start_node(self: Arc<Self>, node_id: String, memory_bytes: u64) {
        self.counters.node_starts.inc();
        let result = self.provider.start_node(&node_id, memory_bytes).await;
        let now = self.clock.now_ms();
        let stops = match result {
            Ok(endpoint) => {
                tracing::info!(node_id, %endpoint, "node ready");
                self.pool().node_started(&node_id, endpoint, now)
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
        self.wake.notify_one();
    }

    /// Starts the initial nodes and waits until each is up or failed (or shutdown).
    /// Reserves wait for this.
    pub async fn warm_up(self: &Arc<Self>, shutdown: Shutdown) {
        let actions = self.pool().bootstrap(self.clock.now_ms());
        let wanted = actions.len();
        tracing::info!(
            nodes = wanted,
            provider = self.provider.name(),
            "starting the initial nodes"
        );
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
            match node_client::hand_over(endpoint, request_id, account, self.node_call_timeout)
                .await
            {
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
        let actions = self.pool().release(node_id, self.clock.now_ms())?;
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
    pub fn usage(&self) -> Vec<Node> {
        self.pool().usage().cloned().collect()
    }

    /// Stops the pool and every node: no node started by this manager survives.
    pub async fn shutdown(self: &Arc<Self>) {
        let stops = self.pool().close(self.clock.now_ms());
        self.warm.send_replace(true);
        loop {
            let mut tasks =
                std::mem::take(&mut *self.tasks.lock().unwrap_or_else(PoisonError::into_inner));
            if tasks.is_empty() {
                break;
            }
            while tasks.join_next().await.is_some() {}
        }
        self.execute_and_wait(stops).await;
        self.provider.shutdown().await;
        tracing::info!("all nodes stopped");
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
        self.manager.wake.notify_one();
        if tokio::runtime::Handle::try_current().is_ok() {
            self.manager.execute(actions);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{FailureReason, NodeEndpoint};
    use crate::service::{GoneNode, ProviderError};

    /// Starts nodes after `start_delay` (tokio time) at `port`; records starts, stops and
    /// kills; reports the ids put into `gone` as no longer running.
    #[derive(Default)]
    struct FakeProvider {
        start_delay: Duration,
        port: u16,
        started: Mutex<Vec<String>>,
        stopped: Mutex<Vec<String>>,
        killed: Mutex<Vec<String>>,
        gone: Mutex<Vec<String>>,
    }

    impl FakeProvider {
        fn started(&self) -> Vec<String> {
            self.started.lock().unwrap().clone()
        }
        fn running(&self) -> Vec<String> {
            let stopped = self.stopped.lock().unwrap();
            self.started()
                .into_iter()
                .filter(|id| !stopped.contains(id))
                .collect()
        }
    }

    impl NodeProvider for FakeProvider {
        fn name(&self) -> &'static str {
            "fake"
        }
        async fn start_node(
            &self,
            node_id: &str,
            _memory: u64,
        ) -> Result<NodeEndpoint, ProviderError> {
            tokio::time::sleep(self.start_delay).await;
            self.started.lock().unwrap().push(node_id.to_string());
            Ok(NodeEndpoint {
                address: "127.0.0.1".into(),
                port: self.port,
            })
        }
        async fn stop_node(&self, node_id: &str) {
            self.stopped.lock().unwrap().push(node_id.to_string());
        }
        async fn kill_node(&self, node_id: &str) {
            self.killed.lock().unwrap().push(node_id.to_string());
        }
        async fn gone_nodes(&self) -> Vec<GoneNode> {
            std::mem::take(&mut *self.gone.lock().unwrap())
                .into_iter()
                .map(|node_id| GoneNode {
                    node_id,
                    detail: "its process exited".into(),
                })
                .collect()
        }
        async fn shutdown(&self) {}
    }

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
        let closed_port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let m = manager(
            2,
            2,
            FakeProvider {
                port: closed_port,
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
        assert!(m.usage().is_empty(), "refused nodes are not billed");
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
        let usage = m.usage();
        assert_eq!(usage.len(), 1);
        assert_eq!(usage[0].state, NodeState::Failed);
        assert_eq!(usage[0].released_at_ms, None, "still its account's");

        m.release(&id)
            .await
            .expect("a failed node's release succeeds");
        assert_eq!(m.usage()[0].state, NodeState::Released);
        m.shutdown().await;
    }
}
