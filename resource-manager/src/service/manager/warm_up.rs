//! The manager's first start: the initial nodes ([`Manager::warm_up`]), or, after a restart,
//! the nodes of the earlier run taken back ([`Manager::recover`], rules in
//! [`crate::core::recovery`]); both wait until the starts are up or failed before reserves
//! go through.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use faas_common::shutdown::Shutdown;

use super::Manager;
use crate::core::{Action, MISSED_PROBES_TO_FAIL, SavedState, Sighting, merge_found, settle};
use crate::model::{NodeEndpoint, NodeHandle, NodeState};
use crate::service::NodeProvider;

/// The pause between two attempts to identify a node of an earlier run.
const IDENTIFY_PAUSE: Duration = Duration::from_millis(100);

impl<P: NodeProvider> Manager<P> {
    /// Starts the initial nodes and waits until each is up or failed (or shutdown).
    /// Reserves wait for this.
    pub async fn warm_up(self: &Arc<Self>, shutdown: Shutdown) {
        let actions = self.pool().bootstrap(self.now_ms());
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
    /// finds by itself) that are still alive, as the rules of [`crate::core::recovery`]
    /// say, kills what is left of the others, removes the earlier run's leftovers, then
    /// refills the pool to `--ready-nodes` and waits for those starts. Reserves wait for this.
    pub async fn recover(self: &Arc<Self>, saved: SavedState, shutdown: Shutdown) {
        let (prefix, memory_bytes) = {
            let pool = self.pool();
            let rules = pool.rules();
            (rules.node_id_prefix.clone(), rules.node_memory_bytes)
        };
        let found = self.provider.discover().await;
        let now = self.now_ms();
        let saved = merge_found(saved, found, &prefix, memory_bytes, now);
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
        let now = self.now_ms();
        let settled = settle(saved, &seen, now);
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
        let deadline_ms = self.now_ms() + self.pool().rules().failed_after_ms.max(0);
        let mut attempts = 0;
        loop {
            attempts += 1;
            match self.ports.nodes.identify(&endpoint, timeout).await {
                Ok(identity) => return Sighting::Alive(identity),
                Err(why) if attempts >= MISSED_PROBES_TO_FAIL && self.now_ms() >= deadline_ms => {
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
}
