//! Recovery: the scheduler rebuilds its view from the parts that hold the state.
//!
//! At start, and then every [`ServiceOptions::reconcile_interval_ms`], the reconciler asks
//! the resource manager which nodes are reserved. Every reserved node the scheduler does not
//! hold (it restarted; or the resource manager re-adopted the node after its own restart) is
//! described by the node itself (`faas.node.v1.NodeAdmin/DescribeNode`) and fed to the core
//! as [`Event::NodeAdopted`]: the node, its reserve time and its containers, with the calls
//! running in them. A node that cannot be described is adopted empty: the health rules then
//! decide whether it is lost (and released) or alive. So after any number of restarts the
//! nodes reserved are the nodes the scheduler holds, and no container is orphaned.
//!
//! Nodes this scheduler released are never adopted again (the resource manager never reuses
//! an id), and a round is skipped while a reserve is in flight (its node would look unknown
//! for a moment). A release the resource manager cannot take now (it is down) is tried again
//! with a back-off; one it answers with an error (it does not hold the node as reserved any
//! more) counts as done.

use std::time::Duration;

use super::{Clock, NodePort, PortError, ResourcePort, Scheduler, ServiceOptions};
use crate::core::Event;
use crate::model::{Millis, Text};
use crate::store::Set;
use faas_common::shutdown::Shutdown;

/// The default of [`ServiceOptions::reconcile_interval_ms`].
pub const RECONCILE_INTERVAL_MS: Millis = 5_000;
/// The longest wait between two tries of a release the resource manager could not take.
const RELEASE_RETRY_MAX: Duration = Duration::from_secs(30);

impl<R: ResourcePort, N: NodePort, C: Clock> Scheduler<R, N, C> {
    /// One reconciliation round: adopts the reserved nodes the scheduler does not hold.
    /// Returns how many were adopted.
    pub async fn reconcile(&self) -> Result<usize, PortError> {
        if self.inspect(|p| p.state().reserves().next().is_some()) {
            return Ok(0);
        }
        let reserved = self.inner.resource.reserved_nodes().await?;
        let unknown: Vec<_> = {
            let released = self.released_ids();
            self.inspect(|p| {
                let store = &p.state().store;
                reserved
                    .into_iter()
                    .filter(|n| store.node_by_id(&n.info.id).is_none())
                    .filter(|n| !released.contains(&n.info.id))
                    .collect()
            })
        };
        let probe = Duration::from_millis(self.inner.opts.probe_timeout_ms.max(1));
        let mut adopted = 0;
        for node in unknown {
            let addr = crate::model::NodeAddr {
                id: node.info.id.clone(),
                address: node.info.address.clone(),
                port: node.info.port,
            };
            let containers = match tokio::time::timeout(probe * 4, self.inner.nodes.describe(&addr))
                .await
            {
                Ok(Ok(d)) => {
                    if !d.owner_account_id.is_empty() {
                        self.learn_account(d.owner_account_id.as_str().into());
                    }
                    d.containers
                }
                Ok(Err(e)) => {
                    tracing::warn!(node = %addr.id, error = %e, "cannot describe a reserved node; adopting it empty (its health decides)");
                    Vec::new()
                }
                Err(_) => {
                    tracing::warn!(node = %addr.id, "a reserved node did not describe itself in time; adopting it empty (its health decides)");
                    Vec::new()
                }
            };
            let now = self.now();
            let wall = self.inner.clock.wall_ms();
            let reserved_at = if node.reserved_at_wall_ms == 0 || wall == 0 {
                now
            } else {
                now.saturating_sub(wall.saturating_sub(node.reserved_at_wall_ms))
            };
            match self.feed(Event::NodeAdopted {
                node: node.info,
                reserved_at,
                containers,
            }) {
                Ok(()) => adopted += 1,
                Err(e) => {
                    tracing::error!(node = %addr.id, error = %e, "the policy refused an adopted node")
                }
            }
        }
        Ok(adopted)
    }

    /// Reconciles at start and then periodically until `shutdown` fires.
    pub(super) async fn reconciler(self, shutdown: Shutdown) {
        let stop = shutdown.wait();
        tokio::pin!(stop);
        let every = Duration::from_millis(self.inner.opts.reconcile_interval_ms.max(100));
        loop {
            match self.reconcile().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(nodes = n, "adopted reserved nodes"),
                Err(e) => {
                    tracing::debug!(error = %e, "cannot list the reserved nodes; trying again later")
                }
            }
            if self.inner.opts.reconcile_interval_ms == 0 {
                return;
            }
            tokio::select! {
                _ = &mut stop => return,
                _ = tokio::time::sleep(every) => {}
            }
        }
    }

    /// Releases `node_id`, trying again with a back-off while the resource manager cannot be
    /// reached. Returns whether the node is gone from the resource manager's reservations.
    pub(super) async fn release_until_done(&self, node_id: &Text) -> bool {
        self.remember_released(node_id.clone());
        let mut wait = Duration::from_millis(250);
        loop {
            match self.inner.resource.release_node(node_id).await {
                Ok(()) => return true,
                Err(e) if !e.unreachable => {
                    // It answered: it does not hold the node as reserved (any more).
                    tracing::warn!(node = %node_id, error = %e, "release refused; the node is not reserved any more");
                    return true;
                }
                Err(e) => {
                    if self.is_shutting_down() {
                        tracing::warn!(node = %node_id, error = %e, "release failed while shutting down");
                        return false;
                    }
                    tracing::warn!(node = %node_id, error = %e, retry_in_ms = wait.as_millis() as u64, "release failed; trying again");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(RELEASE_RETRY_MAX);
                }
            }
        }
    }

    fn released_ids(&self) -> Set<Text> {
        self.inner
            .released
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect()
    }

    fn remember_released(&self, node_id: Text) {
        let mut released = self
            .inner
            .released
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if released.len() >= 10_000 {
            released.pop_front();
        }
        released.push_back(node_id);
    }
}

impl ServiceOptions {
    /// Whether the reconciler runs at all (a reconcile interval was set).
    pub fn reconciles(&self) -> bool {
        self.reconcile_interval_ms > 0
    }
}
