//! Consolidation and the sweep's other duties: emptying a lightly used node by moving its idle
//! containers, pre-warming, headroom, and releasing empty nodes.

use super::view::View;
use super::{DRAIN_MAX_CONTAINERS, DRAIN_MIN_IDLE_MS, Engine, KeepAlive};
use crate::core::Decision;
use crate::core::reasons::ReasonKind;
use crate::model::{ContainerState, Millis, NodeState, Text};
use crate::store::{ContainerKey, FunctionKey, NodeKey, Set};

impl Engine {
    /// The node being emptied, if any.
    pub(super) fn draining(&self) -> Option<NodeKey> {
        self.state.store.first_draining()
    }

    /// Empties one node into the others so that it can be released: when the other nodes'
    /// free memory holds the least used node's containers and the headroom, that node is
    /// marked draining (no new containers), each of its idle containers is created again
    /// on another node (best fit) and removed once the copy is ready, busy ones when their
    /// requests end; the empty node is released at once. The copy keeps the original's idle
    /// clock, so keep-alive is not extended, and no warm container is lost. Draining stops
    /// (the node is usable again) as soon as memory runs short anywhere.
    pub(super) fn consolidate(&mut self, now: Millis, out: &mut Vec<Decision>) {
        self.finish_moves(out);
        let node = match self.draining() {
            Some(n) => n,
            None if !self.starving.is_empty() => return,
            None => match self.drain_candidate(now) {
                Some(n) => {
                    if let Some(mut node) = self.state.store.node_mut(n) {
                        node.state = NodeState::Draining;
                    }
                    n
                }
                None => return,
            },
        };
        let creating_there = self.state.creates().any(|(_, c)| c.node == node);
        let mut on_node: Vec<(ContainerKey, FunctionKey, u64, bool)> = self
            .containers_on_sorted(node)
            .map(|(k, r)| {
                let idle = r.container.state == ContainerState::Ready && r.container.in_flight == 0;
                (k, r.function, r.container.memory_bytes, idle)
            })
            .collect();
        if on_node.is_empty() && !creating_there {
            let busy = self.state.store.node(node).is_none_or(|n| n.containers > 0);
            if !busy && self.state.release_node(node, out) {
                self.node_empty_since.remove(&node);
                self.last_node_change = now;
            }
            return;
        }
        on_node.sort_unstable_by_key(|c| std::cmp::Reverse(c.2));
        let pending: Set<Text> = self.replacing.values().cloned().collect();
        let mut view = self.view();
        let undrain = self.move_off(now, &mut view, on_node, &pending, out);
        self.put_view(view);
        if undrain {
            self.undrain();
        }
    }

    /// Starts a copy elsewhere of each idle container of `on_node` not already moving;
    /// whether one found no room (draining must stop).
    fn move_off(
        &mut self,
        now: Millis,
        view: &mut View,
        on_node: Vec<(ContainerKey, FunctionKey, u64, bool)>,
        pending: &Set<Text>,
        out: &mut Vec<Decision>,
    ) -> bool {
        for (key, f, _, idle) in on_node {
            let Some(id) = self
                .state
                .store
                .container(key)
                .map(|r| r.container.id.clone())
            else {
                continue;
            };
            if !idle || pending.contains(&id) || self.replaced.contains_key(&id) {
                continue;
            }
            match self.place(view, f) {
                Ok(to) => {
                    if let Some(op) = self.state.start_create(now, to, f, None, out) {
                        self.replacing.insert(op, id);
                    }
                }
                Err(_) => return true,
            }
        }
        false
    }

    /// A node worth emptying: the least used of at least two, held long enough, whose
    /// containers (and the headroom) fit into the other nodes' free memory.
    pub(super) fn drain_candidate(&mut self, now: Millis) -> Option<NodeKey> {
        let view = self.view();
        let candidate = self.drain_candidate_in(now, &view);
        self.put_view(view);
        candidate
    }

    fn drain_candidate_in(&self, now: Millis, view: &View) -> Option<NodeKey> {
        let hold = self.knobs.consolidate_after_ms?;
        if self.reserve_retry_at.is_some_and(|t| t > now)
            || self.state.reserves().next().is_some()
            || now.saturating_sub(self.last_node_change) < hold
        {
            return None;
        }
        if view.len() < 2 {
            return None;
        }
        let capacity = |k: NodeKey| self.state.store.node(k).map_or(0, |n| n.capacity_bytes);
        let candidate = view
            .iter()
            .filter(|v| {
                self.state
                    .store
                    .node(v.key)
                    .is_some_and(|n| now.saturating_sub(n.reserved_at) >= hold)
            })
            .min_by_key(|v| capacity(v.key).saturating_sub(v.free))?
            .key;
        if self.state.creates().any(|(_, c)| c.node == candidate) {
            return None;
        }
        // Best fit of its containers, largest first, into the other nodes.
        let mut others = view.clone();
        others.remove(candidate);
        let on_node = || self.containers_on_sorted(candidate);
        // Only a node of idle containers: moving the containers of busy functions would
        // have their requests wait for the copies.
        let quiet = on_node().all(|(_, r)| {
            r.container.state == ContainerState::Ready
                && r.container.in_flight == 0
                && now.saturating_sub(r.container.last_used_at) >= DRAIN_MIN_IDLE_MS
        });
        if !quiet || on_node().count() > DRAIN_MAX_CONTAINERS {
            return None;
        }
        let mut moving: Vec<(FunctionKey, u64)> = on_node()
            .map(|(_, r)| (r.function, r.container.memory_bytes))
            .collect();
        moving.sort_unstable_by_key(|m| std::cmp::Reverse(m.1));
        for (f, _) in moving {
            self.place(&mut others, f).ok()?;
        }
        // Room to spare afterwards: the headroom and a quarter of a node, so that the next
        // burst does not reserve the node just released.
        let free: u64 = others.total_free();
        let slack = self.headroom_bytes() + self.state.expected_node_bytes() / 4;
        (free >= slack).then_some(candidate)
    }

    /// The containers on `node` in key order (the order of the containers table).
    fn containers_on_sorted(
        &self,
        node: NodeKey,
    ) -> impl Iterator<Item = (ContainerKey, &crate::store::ContainerRow)> + '_ {
        let mut keys: Vec<ContainerKey> = self.state.store.containers_on(node).collect();
        keys.sort_unstable();
        keys.into_iter()
            .filter_map(|k| Some((k, self.state.store.container(k)?)))
    }

    /// The draining node takes containers again (moves already begun complete).
    pub(super) fn undrain(&mut self) {
        if let Some(n) = self.draining()
            && let Some(mut node) = self.state.store.node_mut(n)
        {
            node.state = NodeState::Active;
        }
    }

    /// Removes the moved containers whose requests have ended; forgets those already gone.
    pub(super) fn finish_moves(&mut self, out: &mut Vec<Decision>) {
        if self.replaced.is_empty() {
            return;
        }
        let moved: Vec<(Text, Text)> = self
            .replaced
            .iter()
            .map(|(a, b)| (a.clone(), b.clone()))
            .collect();
        for (id, copy) in moved {
            let copy_ready = self
                .state
                .store
                .container_by_id(&copy)
                .and_then(|k| self.state.store.container(k))
                .is_some_and(|r| r.container.state == ContainerState::Ready);
            if !copy_ready {
                // The copy is gone (expired or died): the original stays.
                self.replaced.remove(&id);
                continue;
            }
            let row = self
                .state
                .store
                .container_by_id(&id)
                .and_then(|k| Some((k, self.state.store.container(k)?)));
            let Some((key, row)) = row else {
                self.replaced.remove(&id);
                continue;
            };
            match row.container.state {
                ContainerState::Ready if row.container.in_flight == 0 => {
                    self.state.reasons.because(ReasonKind::Remove, || {
                        "removed: replaced by a container on a fuller node (consolidation)"
                            .to_string()
                    });
                    self.state.remove_container(key, out);
                    self.replaced.remove(&id);
                }
                ContainerState::Ready => {}
                _ => {
                    self.replaced.remove(&id);
                }
            }
        }
    }

    /// A replacement `new` of `old` is ready: `new` takes over `old`'s idle clock and `old`
    /// goes now if idle, else once its requests end (next sweep), draining or not.
    pub(super) fn replaced_by(&mut self, old_id: &str, new: ContainerKey, out: &mut Vec<Decision>) {
        let Some(new_id) = self
            .state
            .store
            .container(new)
            .map(|r| r.container.id.clone())
        else {
            return;
        };
        let Some(old) = self.state.store.container_by_id(old_id) else {
            return;
        };
        let Some(row) = self.state.store.container(old) else {
            return;
        };
        let (last_used, idle) = (
            row.container.last_used_at,
            row.container.state == ContainerState::Ready && row.container.in_flight == 0,
        );
        self.state
            .store
            .update_container(new, |c| c.last_used_at = last_used);
        if idle {
            self.state.reasons.because(ReasonKind::Remove, || {
                "removed: replaced by a container on a fuller node (consolidation)".to_string()
            });
            self.state.remove_container(old, out);
        } else {
            self.replaced.insert(Text::from(old_id), new_id);
        }
    }

    /// Per function, how long its idle containers beyond the most recently used one are
    /// kept while its histogram is not representative (see [`KeepAlive::Hybrid`]);
    /// `Millis::MAX` where the rule does not apply.
    pub(super) fn extra_keep_ms(&self) -> Vec<Millis> {
        let KeepAlive::Hybrid {
            extra_cost: Some(cost),
            fallback_ms,
            ..
        } = self.knobs.keep_alive
        else {
            return Vec::new();
        };
        self.fns
            .iter()
            .map(|fd| {
                let representative = matches!(fd.window, Some(Some(_)));
                let duration_ms = self
                    .state
                    .store
                    .function(fd.key)
                    .filter(|r| r.profile.calls > 0)
                    .map(|r| r.profile.mean_duration_ns / 1e6);
                match duration_ms {
                    Some(d) if !representative => {
                        let share = (cost * self.start_ms / d.max(1.0)).min(1.0);
                        (fallback_ms as f64 * share) as Millis
                    }
                    _ => Millis::MAX,
                }
            })
            .collect()
    }

    pub(super) fn prewarm(&mut self, now: Millis, out: &mut Vec<Decision>) {
        let due: Vec<(FunctionKey, u32)> = self
            .fns
            .iter_mut()
            .filter(|fd| fd.idle() && !fd.retired && fd.prewarm_at.is_some_and(|p| p <= now))
            .map(|fd| {
                fd.prewarm_at = None;
                (fd.key, fd.prewarm_count)
            })
            .collect();
        if due.is_empty() {
            return;
        }
        let mut view = self.view();
        for (f, count) in due {
            let Some(row) = self.state.store.function(f) else {
                continue;
            };
            let have = row.containers + row.creating;
            for _ in have..count {
                match self.place(&mut view, f) {
                    Ok(node) => {
                        self.state.start_create(now, node, f, None, out);
                    }
                    Err(charge) => {
                        self.shortage.push(charge);
                        break;
                    }
                }
            }
        }
        self.ensure_nodes(now, &view, out);
        self.put_view(view);
    }

    pub(super) fn headroom_bytes(&self) -> u64 {
        if self.knobs.headroom {
            self.largest_function
        } else {
            0
        }
    }

    pub(super) fn keep_headroom(&mut self, now: Millis, view: &View, out: &mut Vec<Decision>) {
        let recently_active = now.saturating_sub(self.last_arrival) < 60_000;
        let backing_off = self.reserve_retry_at.is_some_and(|t| t > now);
        if !recently_active || backing_off || self.state.reserves().next().is_some() {
            return;
        }
        let free = view.total_free();
        let want = self.headroom_bytes();
        if free < want && view.len() > 0 {
            self.state.start_reserve(now, out);
        }
    }

    pub(super) fn release_empty_nodes(
        &mut self,
        now: Millis,
        view: &View,
        out: &mut Vec<Decision>,
    ) {
        let mut free = view.total_free();
        let recently_active = now.saturating_sub(self.last_arrival) < 60_000;
        let want = if recently_active {
            self.headroom_bytes()
        } else {
            0
        };
        // Only empty active nodes may be released: the others stop counting their empty
        // time, and the empty ones are visited in reserve order (the store keeps them).
        let store = &self.state.store;
        let candidate = |n: &crate::model::Node, k: NodeKey| {
            n.state == NodeState::Active && n.containers == 0 && store.busy_containers_on(k) == 0
        };
        self.node_empty_since
            .retain(|k, _| store.node(*k).is_none_or(|n| candidate(n, *k)));
        let nodes: Vec<(NodeKey, u64, u32, NodeState)> = store
            .empty_nodes()
            .filter_map(|k| {
                store
                    .node(k)
                    .map(|n| (k, n.free_bytes(), n.containers, n.state))
            })
            .collect();
        for (key, node_free, containers, state) in nodes {
            let busy = self.state.store.busy_containers_on(key) > 0;
            if state != NodeState::Active || containers > 0 || busy {
                self.node_empty_since.remove(&key);
                continue;
            }
            let since = *self.node_empty_since.entry(key).or_insert(now);
            if now.saturating_sub(since) < self.knobs.node_idle_ms {
                continue;
            }
            if free.saturating_sub(node_free) < want {
                continue;
            }
            if self.state.release_node(key, out) {
                free = free.saturating_sub(node_free);
                self.node_empty_since.remove(&key);
            }
        }
    }
}
