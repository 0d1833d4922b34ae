//! Health: what the state does when a part of the platform fails, the same for every policy.
//!
//! Health is learned from what the scheduler sees, never assumed:
//!
//! - **Nodes.** Every observation of a node is a success (a `GetStats` answer, a clean
//!   return of one of its containers) or a failure ([`Event::NodeUnreachable`] from the
//!   driver: stats, create or remove failed at the transport level or got no answer in time;
//!   a return with the `NodeUnavailable` code). A failure makes the node *suspect*: it takes
//!   no new container and its containers are *parked* (not granted, so a retried call goes
//!   elsewhere at once); any success clears it. A node that failed every observation for
//!   [`PolicyOptions::node_lost_after_ms`], and at least [`FAILURES_TO_LOSE`] times, is
//!   *lost*: its containers are forgotten, creates in flight there fail (the requests waiting
//!   for them are handed back to the policy to place elsewhere at once), and its release is
//!   asked for, so the resource manager replaces it. A lost node that comes back is never
//!   handed work again: the scheduler forgot it, and its stats are ignored.
//! - **Containers.** A container its node's stats stop listing (in
//!   [`MISSING_SAMPLES_DEAD`] consecutive samples asked for after it was created) is dead:
//!   removed, and replaced on demand like any other. (A return with a fatal code does the
//!   same at once, see [`crate::model::CONTAINER_FATAL_CODES`].)
//! - **Leases.** A lease held past its function's timeout plus
//!   [`PolicyOptions::lease_grace_ms`] (a caller that crashed between acquire and return) is
//!   reclaimed: the container's slot is free again, and a late return is refused with
//!   [`CoreError::LeaseExpired`].
//! - **Definitions.** An acquire with a changed definition of a function (handler, memory,
//!   timeout) retires the containers of the old one: idle ones are removed at once, busy
//!   ones are never granted again and are removed when their last call returns.
//!
//! Every transition is a [`Decision::Health`] note, so the live driver logs and counts it
//! and the simulator can report it. [`State::heal`] runs on every tick; the times it needs a
//! tick at are part of [`State::next_deadline`].
//!
//! [`Event::NodeUnreachable`]: crate::core::Event::NodeUnreachable
//! [`PolicyOptions::node_lost_after_ms`]: crate::core::PolicyOptions::node_lost_after_ms
//! [`PolicyOptions::lease_grace_ms`]: crate::core::PolicyOptions::lease_grace_ms
//! [`CoreError::LeaseExpired`]: crate::core::CoreError::LeaseExpired

use super::State;
use crate::core::{Decision, Event, HealthNote, Op};
use crate::model::{ContainerState, Millis, NodeState, OpId, StatsSample, Text};
use crate::store::{ContainerKey, FunctionKey, NodeKey};

/// Consecutive stats samples a container must be missing from to be taken for dead.
pub const MISSING_SAMPLES_DEAD: u8 = 2;
/// Failed observations a node needs (besides the time) to be lost.
pub const FAILURES_TO_LOSE: u32 = 2;

/// What [`State::heal`] hands back for the policy to act on.
#[derive(Debug, Default)]
#[must_use = "requests handed back must be placed again, or they wait until their deadline"]
pub struct Healed {
    /// Requests that waited for creates on lost nodes: still waiting, now unbound, in
    /// arrival order. The policy places them again.
    pub replace: Vec<Text>,
    /// Slots freed by reclaimed leases: the container (which may be gone by now) and its
    /// function.
    pub freed: Vec<(ContainerKey, FunctionKey)>,
    /// Containers whose orphan calls (granted before a restart) expired: their slots are
    /// free again.
    pub orphans_ended: Vec<(ContainerKey, FunctionKey)>,
    /// Nodes lost in this step (already forgotten).
    pub lost: Vec<NodeKey>,
}

impl Healed {
    /// Whether nothing happened.
    pub fn is_empty(&self) -> bool {
        self.replace.is_empty()
            && self.freed.is_empty()
            && self.orphans_ended.is_empty()
            && self.lost.is_empty()
    }
}

impl State {
    /// Reclaims expired leases and declares lost the nodes due to be; hands back what the
    /// policy must act on. Call it on every tick.
    pub fn heal(&mut self, now: Millis, out: &mut Vec<Decision>) -> Healed {
        self.observe(now);
        self.prune_holds(now);
        let mut healed = Healed::default();
        while let Some((at, _)) = self.lease_expiry.first() {
            if *at > now {
                break;
            }
            let Some((_, request_id)) = self.lease_expiry.pop_first() else {
                break;
            };
            if let Some(freed) = self.reclaim(now, request_id, out) {
                healed.freed.push(freed);
            }
        }
        healed.orphans_ended = self.expire_orphans(now, out);
        if !self.suspects.is_empty() {
            let lost_after = self.opts.node_lost_after_ms;
            let mut due: Vec<NodeKey> = self
                .suspects
                .iter()
                .copied()
                .filter(|k| {
                    self.store.node(*k).is_some_and(|n| {
                        n.failures >= FAILURES_TO_LOSE
                            && n.suspect_since.is_some_and(|s| now >= s + lost_after)
                    })
                })
                .collect();
            // The set's order is random; decisions must not be.
            due.sort_unstable_by_key(|k| k.index());
            for key in due {
                healed.replace.extend(self.node_lost(key, out));
                healed.lost.push(key);
            }
        }
        healed
    }

    /// When [`State::heal`] next has work: the earliest lease expiry, or the earliest time a
    /// suspect node (failed often enough) is due to be lost.
    pub(super) fn next_health_check(&self) -> Option<Millis> {
        let lease = self.lease_expiry.first().map(|(at, _)| *at);
        let lost = self
            .suspects
            .iter()
            .filter_map(|k| self.store.node(*k))
            .filter(|n| n.failures >= FAILURES_TO_LOSE)
            .filter_map(|n| n.suspect_since)
            .min()
            .map(|since| since + self.opts.node_lost_after_ms);
        [lease, lost, self.next_orphan_expiry()]
            .into_iter()
            .flatten()
            .min()
    }

    fn reclaim(
        &mut self,
        now: Millis,
        request_id: Text,
        out: &mut Vec<Decision>,
    ) -> Option<(ContainerKey, FunctionKey)> {
        let row = self.store.remove_lease(&request_id)?;
        let key = row.container;
        self.counters.leases_expired += 1;
        self.store
            .remember_expired(request_id.clone(), row.lease.container_id.clone());
        out.push(Decision::Health(HealthNote::LeaseExpired {
            request_id,
            container_id: row.lease.container_id,
            held_ms: now.saturating_sub(row.lease.started_at),
        }));
        self.store.release_slot(key, now);
        let function = self.store.container(key).map(|r| r.function);
        self.after_release(key, out);
        function.map(|f| (key, f))
    }

    /// Applies the events most policies handle the same way: a failed health observation, a
    /// stats sample, a retired (deleted) function, a held function (see [`super::hold`]).
    /// Other events are ignored.
    pub fn apply_shared(&mut self, now: Millis, event: Event, out: &mut Vec<Decision>) {
        match event {
            Event::NodeUnreachable { node_id, message } => {
                self.node_unreachable(now, &node_id, message, out);
            }
            Event::Stats(sample) => self.apply_stats(now, sample, out),
            Event::RetireFunction { function } => {
                let _ = self.retire_function(&function, out);
            }
            Event::HoldFunction { function, hold_ms } => {
                let _ = self.hold_function(now, function, hold_ms);
            }
            _ => {}
        }
    }

    /// Applies [`crate::core::Event::NodeUnreachable`]. Unknown nodes are ignored (already
    /// forgotten).
    pub fn node_unreachable(
        &mut self,
        now: Millis,
        node_id: &str,
        message: String,
        out: &mut Vec<Decision>,
    ) {
        if let Some(key) = self.store.node_by_id(node_id) {
            self.node_failed(now, key, message, out);
        }
    }

    /// A failed observation of `key`.
    pub(super) fn node_failed(
        &mut self,
        now: Millis,
        key: NodeKey,
        reason: String,
        out: &mut Vec<Decision>,
    ) {
        let Some(mut n) = self.store.node_mut(key) else {
            return;
        };
        if n.state == NodeState::Releasing {
            return;
        }
        n.failures = n.failures.saturating_add(1);
        n.last_failure.clone_from(&reason);
        if n.suspect_since.is_none() {
            n.suspect_since = Some(now);
            let node_id = n.id.clone();
            drop(n);
            self.suspects.insert(key);
            self.park(key, true);
            out.push(Decision::Health(HealthNote::NodeSuspect {
                node_id,
                reason,
            }));
        }
    }

    /// A successful observation of `key`.
    pub(super) fn node_answered(&mut self, now: Millis, key: NodeKey, out: &mut Vec<Decision>) {
        if self.suspects.is_empty() || !self.suspects.remove(&key) {
            return;
        }
        if let Some(mut n) = self.store.node_mut(key) {
            let since = n.suspect_since.take().unwrap_or(now);
            n.failures = 0;
            out.push(Decision::Health(HealthNote::NodeRecovered {
                node_id: n.id.clone(),
                after_ms: now.saturating_sub(since),
            }));
        }
        self.park(key, false);
    }

    /// Parks (or unparks) the containers of a node: a parked container is not granted.
    fn park(&mut self, key: NodeKey, parked: bool) {
        let containers: Vec<ContainerKey> = self.store.containers_on(key).collect();
        for c in containers {
            self.store.update_container(c, |c| c.parked = parked);
        }
    }

    /// Declares `key` lost: creates in flight there fail, its containers are forgotten, its
    /// release is asked for. Returns the requests that waited for those creates.
    fn node_lost(&mut self, key: NodeKey, out: &mut Vec<Decision>) -> Vec<Text> {
        let Some(node) = self.store.node(key) else {
            return Vec::new();
        };
        let node_id = node.id.clone();
        let reason = node.last_failure.clone();
        let creates: Vec<OpId> = self
            .ops
            .iter()
            .filter(|(_, op)| matches!(op, Op::Create(c) if c.node == key))
            .map(|(id, _)| *id)
            .collect();
        let mut replace = Vec::new();
        for op in creates {
            if let Ok((_, Some(request))) = self.create_failed(op) {
                replace.push(request);
            }
        }
        let containers = self.store.containers_on(key).count() as u32;
        self.counters.nodes_lost += 1;
        out.push(Decision::Health(HealthNote::NodeLost {
            node_id: node_id.clone(),
            containers,
            replaced_requests: replace.len() as u32,
            reason,
        }));
        out.push(Decision::ReleaseNode {
            node_id: node_id.clone(),
        });
        self.reasons.explain(None, out.len() - 1, || {
            "released: the node is lost (it failed every health observation)".to_string()
        });
        // Forgotten now: the release's answer (or its failure) changes nothing any more.
        self.node_released(&node_id);
        replace
    }

    /// Applies a `GetStats` sample: a successful observation of the node, usage figures, and
    /// containers it no longer lists. Samples of nodes the scheduler no longer holds, and
    /// containers it does not know, are ignored.
    pub fn apply_stats(&mut self, now: Millis, sample: StatsSample, out: &mut Vec<Decision>) {
        let Some(key) = self.store.node_by_id(&sample.node_id) else {
            return;
        };
        self.node_answered(now, key, out);
        if let Some(mut n) = self.store.node_mut(key) {
            n.usage = Some(sample.node);
            n.usage_at = now;
        }
        // Each row is stamped with the round that listed it: no set of the listed keys.
        let round = self.store.begin_listing();
        let mut listed_here = 0;
        for usage in sample.containers {
            let Some(c) = self.store.container_by_id(&usage.container_id) else {
                continue;
            };
            let (memory, cpu) = (usage.memory_usage_bytes, usage.cpu_pct);
            let Some(noted) = self.store.note_usage(c, round, usage) else {
                continue;
            };
            if noted.first && noted.node == key {
                listed_here += 1;
            }
            if let Some(f) = self.store.function_mut(noted.function) {
                f.profile.record_usage(memory, cpu);
            }
        }
        if listed_here == self.store.container_count_on(key) {
            // Every container of the node was listed: none is missing.
            return;
        }
        let mut missing: Vec<ContainerKey> = self
            .store
            .containers_on(key)
            .filter(|&c| !self.store.listed_in(c, round))
            .filter(|c| {
                self.store.container(*c).is_some_and(|r| {
                    r.container.state == ContainerState::Ready
                        && r.container.created_at < sample.taken_at
                })
            })
            .collect();
        missing.sort_unstable_by_key(|k| k.index());
        for c in missing {
            let count = self
                .store
                .update_container(c, |c| {
                    c.missing_samples = c.missing_samples.saturating_add(1);
                    c.missing_samples
                })
                .unwrap_or(0);
            if count < MISSING_SAMPLES_DEAD {
                continue;
            }
            let Some(id) = self.store.container(c).map(|r| r.container.id.clone()) else {
                continue;
            };
            if self.mark_dead(c, out) {
                out.push(Decision::Health(HealthNote::ContainerLost {
                    container_id: id,
                    node_id: sample.node_id.clone(),
                    reason: format!("missing from {count} stats samples of its node"),
                }));
            }
            self.forget_if_gone(c);
        }
    }

    /// Retires every container of the function named `name` (it was deleted): idle ones are
    /// removed, busy ones are never granted again and are removed when their last call
    /// returns. Returns how many were removed and how many drain; `None` for a function the
    /// scheduler never saw.
    pub fn retire_function(&mut self, name: &str, out: &mut Vec<Decision>) -> Option<(u32, u32)> {
        let key = self.store.function_by_name(name)?;
        Some(self.retire_definition(key, out))
    }

    /// Retires the containers of `function`'s previous definition: idle ones are removed,
    /// busy ones are never granted again and are removed when their last call returns.
    pub(super) fn retire_definition(
        &mut self,
        function: FunctionKey,
        out: &mut Vec<Decision>,
    ) -> (u32, u32) {
        // The function's containers from the store's index, in key order.
        let mut old: Vec<(ContainerKey, u32)> = self
            .store
            .containers_of(function)
            .into_iter()
            .filter_map(|k| Some((k, self.store.container(k)?)))
            .filter(|(_, r)| r.container.state == ContainerState::Ready && !r.container.stale)
            .map(|(k, r)| (k, r.container.in_flight))
            .collect();
        old.sort_unstable_by_key(|(k, _)| k.index());
        let (mut removed, mut draining) = (0, 0);
        for (key, in_flight) in old {
            self.store.update_container(key, |c| c.stale = true);
            if in_flight == 0 {
                self.remove_container(key, out);
                removed += 1;
            } else {
                draining += 1;
            }
        }
        let name = self
            .store
            .function(function)
            .map(|f| f.spec.name.clone())
            .unwrap_or_else(|| "?".into());
        out.push(Decision::Health(HealthNote::DefinitionChanged {
            function: name,
            removed,
            draining,
        }));
        (removed, draining)
    }
}
