//! Recovery: a scheduler that (re)starts takes over the nodes reserved for it, as a
//! Kubernetes controller re-lists before it reconciles.
//!
//! The driver asks the resource manager which nodes are reserved and each node what it holds
//! (`faas.node.v1.NodeAdmin/DescribeNode`), and feeds every node the scheduler does not know
//! as [`crate::core::Event::NodeAdopted`]. [`State::adopt_node`] then:
//!
//! - takes the node over with its reserve time (node-seconds keep counting from it);
//! - adopts each live container as ready, with its memory placed on the node; a container of
//!   another definition than the function's latest is retired at once, a dead one removed;
//! - counts the calls running in a container (granted by the earlier life, which no lease
//!   of this one knows) as *orphans*: they take slots, so the container is busy until the node
//!   says otherwise. An orphan ends when its call returns (a return of an unknown request on a
//!   container with orphans is accepted as one) or when its function's timeout plus the lease
//!   grace has passed since the adoption.

use super::State;
use crate::core::{CoreError, Decision, HealthNote, Returned};
use crate::model::{AdoptedContainer, Container, ContainerState, Millis, Node, NodeInfo, Text};
use crate::store::{ContainerKey, FunctionKey, NodeKey};

impl State {
    /// Takes over `node` (reserved at `reserved_at`) with the containers it reports. Returns
    /// the node's key and the adopted containers (for the policy to set their concurrency);
    /// `None` if the node is already held (nothing changes).
    pub fn adopt_node(
        &mut self,
        now: Millis,
        node: NodeInfo,
        reserved_at: Millis,
        containers: Vec<AdoptedContainer>,
        out: &mut Vec<Decision>,
    ) -> Result<Option<(NodeKey, Vec<ContainerKey>)>, CoreError> {
        self.observe(now);
        if self.store.node_by_id(&node.id).is_some() {
            return Ok(None);
        }
        let node_id = node.id.clone();
        let key = self
            .store
            .insert_node(Node::new(node, reserved_at.min(now)))
            .map_err(|d| CoreError::Inconsistent(format!("duplicate node {}", d.0)))?;
        let Some(addr) = self.store.node(key).map(Node::addr) else {
            return Err(CoreError::Inconsistent("adopted node vanished".into()));
        };
        let mut adopted = Vec::new();
        let (mut orphan_calls, mut removed) = (0, 0);
        for c in containers {
            if c.dead || self.store.container_by_id(&c.id).is_some() {
                removed += 1;
                out.push(Decision::RemoveContainer {
                    node: addr.clone(),
                    container_id: c.id,
                });
                self.reasons.explain(None, out.len() - 1, || {
                    "removed on adoption: dead, or already known on another node".to_string()
                });
                continue;
            }
            let function = match self.store.function_by_name(&c.function.name) {
                Some(f) => f,
                None => self.store.upsert_function(&c.function),
            };
            let stale = self
                .store
                .function(function)
                .is_some_and(|f| f.spec != c.function);
            let container = Container {
                id: c.id.clone(),
                node_id: node_id.clone(),
                function: c.function.name.clone(),
                memory_bytes: c.function.memory_bytes,
                state: ContainerState::Ready,
                in_flight: c.in_flight,
                max_concurrency: 1,
                created_at: now,
                last_used_at: now,
                served: 0,
                usage: None,
                stale,
                missing_samples: 0,
                parked: false,
                orphans: c.in_flight,
            };
            let Ok(ck) = self.store.insert_container(container, key, function) else {
                continue;
            };
            if let Some(mut n) = self.store.node_mut(key) {
                n.used_bytes += c.function.memory_bytes;
                n.containers += 1;
            }
            if c.in_flight > 0 {
                orphan_calls += c.in_flight;
                let until = now
                    .saturating_add(c.function.timeout_ms)
                    .saturating_add(self.opts.lease_grace_ms);
                self.orphan_expiry.insert((until, c.id));
            } else if stale {
                self.remove_container(ck, out);
                removed += 1;
                continue;
            }
            adopted.push(ck);
        }
        out.push(Decision::Health(HealthNote::NodeAdopted {
            node_id,
            containers: adopted.len() as u32,
            orphan_calls,
            removed,
        }));
        Ok(Some((key, adopted)))
    }

    /// Accepts the return of a call granted before a restart on `key` (one of its orphans).
    pub(super) fn accept_orphan_return(
        &mut self,
        now: Millis,
        key: ContainerKey,
        error: Option<&crate::model::FunctionError>,
        duration_ns: u64,
        max_memory_bytes: u64,
        out: &mut Vec<Decision>,
    ) -> Returned {
        self.counters.returns += 1;
        self.store
            .update_container(key, |c| c.orphans = c.orphans.saturating_sub(1));
        self.store.release_slot(key, now);
        let function = self.store.container(key).map(|r| r.function);
        if let Some(f) = function.and_then(|f| self.store.function_mut(f)) {
            f.profile
                .record_call(duration_ns, max_memory_bytes, error.is_some());
        }
        let died = error.is_some_and(|e| e.kills_container()) && self.mark_dead(key, out);
        self.after_release(key, out);
        Returned {
            container: key,
            function,
            died,
            orphan: true,
        }
    }

    /// Ends the orphan calls whose time is up; returns the containers (and functions) that
    /// got slots back.
    pub(super) fn expire_orphans(
        &mut self,
        now: Millis,
        out: &mut Vec<Decision>,
    ) -> Vec<(ContainerKey, FunctionKey)> {
        let mut freed = Vec::new();
        while let Some((at, _)) = self.orphan_expiry.first() {
            if *at > now {
                break;
            }
            let Some((_, id)) = self.orphan_expiry.pop_first() else {
                break;
            };
            let Some(key) = self.store.container_by_id(&id) else {
                continue;
            };
            let function = self.store.container(key).map(|r| r.function);
            self.store.update_container(key, |c| {
                c.in_flight = c.in_flight.saturating_sub(c.orphans);
                c.orphans = 0;
            });
            self.after_release(key, out);
            if let Some(f) = function {
                freed.push((key, f));
            }
        }
        freed
    }

    /// The earliest time an orphan call expires.
    pub(super) fn next_orphan_expiry(&self) -> Option<Millis> {
        self.orphan_expiry.first().map(|(at, _)| *at)
    }

    /// Whether the container `id` is known and runs orphan calls.
    pub(super) fn has_orphans(&self, id: &str) -> Option<ContainerKey> {
        let key = self.store.container_by_id(id)?;
        self.store
            .container(key)
            .filter(|r| r.container.orphans > 0)
            .map(|_| key)
    }
}

/// The ids of orphan calls' containers by expiry (kept in [`State`]).
pub(super) type OrphanExpiry = std::collections::BTreeSet<(Millis, Text)>;
