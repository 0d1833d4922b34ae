//! Provisioning: what a container charges against its node, the per-round placement view,
//! placement itself, creates for waiting requests, node reserves (with back-off) and eviction
//! under memory pressure.

use super::view::View;
use super::{CONTAINER_BASE_BYTES, Creates, Engine, MAX_RESERVES_AT_ONCE, NodeLoad, Placement};
use crate::core::Decision;
use crate::core::reasons::{self, ReasonKind};
use crate::model::Millis;
use crate::store::{ContainerKey, FunctionKey, NodeKey};

impl Engine {
    /// What one container of `f` counts against its node's memory when packing (see
    /// [`Overcommit`]), bytes.
    pub(super) fn charge(&self, f: FunctionKey) -> u64 {
        let Some(row) = self.state.store.function(f) else {
            return 0;
        };
        let limit = row.spec.memory_bytes;
        let (Some(oc), Some(fd)) = (self.knobs.overcommit, self.fns.get(f.index() as usize)) else {
            return limit;
        };
        if fd.class.memory_heavy || row.profile.calls < oc.min_calls || fd.call_memory == 0 {
            return limit;
        }
        let used = fd
            .call_memory
            .saturating_mul(u64::from(fd.limit.max(1)))
            .saturating_add(CONTAINER_BASE_BYTES);
        let floor = (limit as f64 / oc.max_factor.max(1.0)) as u64;
        ((used as f64 * oc.margin) as u64).clamp(floor.min(limit), limit)
    }

    /// What `node`'s ready and removing containers count in the view (from the store's load
    /// index: O(functions on the node)), pushing their per-function counts to `per_function`
    /// if given.
    pub(super) fn node_load(
        &self,
        node: NodeKey,
        mut per_function: Option<&mut Vec<(FunctionKey, u32)>>,
    ) -> NodeLoad {
        let overcommit = self.knobs.overcommit.is_some();
        let mut load = NodeLoad::default();
        for (f, l) in self.state.store.load_on(node) {
            let count = l.ready + l.removing;
            if let Some(m) = per_function.as_deref_mut() {
                m.push((f, count));
            }
            if self.heavy(f) {
                load.heavy += count;
            }
            // A function the engine never saw counts its containers' own limits.
            if overcommit && (f.index() as usize) < self.fns.len() {
                let c = self.charge(f);
                load.charged += c * u64::from(count);
                load.removing += c * u64::from(l.removing);
            } else {
                if overcommit {
                    load.charged += l.ready_bytes + l.removing_bytes;
                }
                load.removing += l.removing_bytes;
            }
        }
        load
    }

    /// A node for a new container of `f` (updating the view), if one has room; else the
    /// charge that found none.
    pub(super) fn place(&self, view: &mut View, f: FunctionKey) -> Result<NodeKey, u64> {
        let charge = self.charge(f);
        let limit = self
            .state
            .store
            .function(f)
            .map_or(charge, |r| r.spec.memory_bytes);
        let heavy = self.heavy(f);
        let best = match self.knobs.placement {
            Placement::SpreadByFunction => view
                .iter()
                .filter(|v| v.free >= charge && v.free_limit >= limit)
                .min_by_key(|v| {
                    let count = view.per_function.get(&(v.key, f)).copied().unwrap_or(0);
                    (count, std::cmp::Reverse(v.free))
                })
                .map(|v| v.key),
            // CPU-heavy: best fit among nodes under the cap, else the fewest CPU-heavy.
            Placement::Pack if heavy => view.best_fit_heavy(charge, limit),
            Placement::Pack => view.best_fit(charge, limit),
        }
        .ok_or(charge)?;
        view.update(best, |v| {
            v.free -= charge;
            v.free_limit -= limit;
            v.heavy += heavy as u32;
        });
        if self.knobs.placement == Placement::SpreadByFunction {
            view.count(best, f);
        }
        Ok(best)
    }

    /// Whether removals in flight will make room for `memory` somewhere.
    pub(super) fn room_after_removals(view: &View, memory: u64) -> bool {
        view.max_room() >= memory
    }

    /// Provisions every function with waiting requests, then finds nodes for what did not fit.
    pub(super) fn pump(&mut self, now: Millis, out: &mut Vec<Decision>) {
        let mut view = self.view();
        let list = std::mem::take(&mut self.starving);
        for f in list {
            self.provision(now, f, &mut view, out);
            let fd = self.fd(f);
            if fd.queue.is_empty() {
                fd.starving = false;
            } else {
                self.starving.push(f);
            }
        }
        self.ensure_nodes(now, &view, out);
        self.put_view(view);
    }

    pub(super) fn provision(
        &mut self,
        now: Millis,
        f: FunctionKey,
        view: &mut View,
        out: &mut Vec<Decision>,
    ) {
        let i = f.index() as usize;
        let Some(fd) = self.fns.get_mut(i) else {
            return;
        };
        let state = &self.state;
        // Forget the ids that no longer wait: only if a wait of the function ended since
        // every id was last known to wait (other than those granted from the queue's front),
        // or an id may be in it twice; else every id still waits and the pass is skipped.
        let ended = state.waits_ended(f);
        if ended != fd.waits_seen || fd.may_repeat {
            fd.queue
                .retain(|id| state.waiter(id).is_some_and(|w| w.function == f));
            fd.waits_seen = ended;
            if fd.queue.is_empty() {
                fd.may_repeat = false;
            }
        }
        let waiting = fd.queue.len() as u32;
        if waiting == 0 {
            return;
        }
        let Some(row) = self.state.store.function(f) else {
            return;
        };
        let (creating, live) = (row.creating, row.containers);
        let limit = fd.limit.max(1);
        let mut need = match self.knobs.creates {
            Creates::PerRequest => waiting.saturating_sub(creating * limit).div_ceil(limit),
            Creates::SingleFlight {
                per_function,
                total,
            } => {
                let s = self.start_ms.max(1.0);
                let d = if row.profile.calls > 0 {
                    row.profile.mean_duration_ns / 1e6
                } else {
                    s
                };
                let oldest = fd
                    .queue
                    .front()
                    .and_then(|id| state.waiter(id))
                    .map_or(now, |w| w.since);
                let servable = if now.saturating_sub(oldest) < s as Millis {
                    (fd.inflight as f64 * (s / d.max(1.0)).min(8.0)) as u32
                } else {
                    0
                };
                let need_now = waiting
                    .saturating_sub(creating * limit + servable)
                    .div_ceil(limit);
                let steady = if fd.hist.samples() > 0 {
                    fd.last_peak
                        .saturating_sub((live + creating) * limit)
                        .div_ceil(limit)
                } else {
                    0
                };
                let need = need_now.max(steady);
                if need_now == 0 {
                    let again = now + (s / 2.0) as Millis + 1;
                    self.pump_at = Some(self.pump_at.map_or(again, |p| p.min(again)));
                }
                let in_flight = self.state.creates_in_flight() as u32;
                need.min(per_function.saturating_sub(creating))
                    .min(total.saturating_sub(in_flight))
            }
        };
        while need > 0 {
            match self.place(view, f) {
                Ok(node) => {
                    self.state.start_create(now, node, f, None, out);
                }
                Err(charge) => {
                    if !Self::room_after_removals(view, charge) {
                        self.shortage.push(charge);
                    }
                    break;
                }
            }
            need -= 1;
        }
    }

    /// Makes room for the memory that found no node: evicts idle containers, reserves nodes.
    pub(super) fn ensure_nodes(&mut self, now: Millis, view: &View, out: &mut Vec<Decision>) {
        let shortage = std::mem::take(&mut self.shortage);
        if shortage.is_empty() {
            return;
        }
        if self.draining().is_some() {
            // Memory ran short while a node empties: use it again before anything else.
            self.undrain();
            self.pump_at = Some(now);
            return;
        }
        let backing_off = self.reserve_retry_at.is_some_and(|t| t > now);
        let mut missing = 0u64;
        // The least memory eviction could not make room for: it cannot for more either
        // (evicting only takes victims away), so every function short of as much or more
        // skips the walk over the nodes. With a thousand functions short of memory on a
        // full fleet, one walk instead of a thousand.
        let mut failed_from = u64::MAX;
        for memory in shortage {
            if let Some(min_idle) = self.knobs.evict_idle_ms
                && memory < failed_from
            {
                let min_idle = if backing_off { 0 } else { min_idle };
                if self.evict_for(now, view, memory, min_idle, out) {
                    continue;
                }
                failed_from = memory;
            }
            missing += memory;
        }
        if missing == 0 || backing_off {
            return;
        }
        let coming: u64 = self.state.reserves().map(|(_, r)| r.expected_bytes).sum();
        if missing <= coming {
            return;
        }
        let node_bytes = self.state.expected_node_bytes().max(1);
        let count = (missing - coming)
            .div_ceil(node_bytes)
            .min(MAX_RESERVES_AT_ONCE);
        for _ in 0..count {
            self.state.start_reserve(now, out);
        }
    }

    /// Removes idle containers (least recently used first, none of a function with waiting
    /// requests) on one node so that `memory` fits there once they are gone: the node where
    /// the fewest evictions make room (the first in reserve order on a tie).
    ///
    /// Each node's candidates come from the store's per-node LRU index, walked only as far as
    /// room is made (or the candidates are too recently used), and the walk over the nodes
    /// stops at the first that needs a single eviction: O(victims needed) when the first
    /// nodes have evictable containers, O(nodes × victims needed) at worst, never a scan and
    /// sort of the platform's containers.
    pub(super) fn evict_for(
        &mut self,
        now: Millis,
        view: &View,
        memory: u64,
        min_idle: Millis,
        out: &mut Vec<Decision>,
    ) -> bool {
        // Nothing evictable anywhere (the global idle index says so, usually at its first
        // entry): no walk over the nodes can take a victim, so nothing makes room.
        if !self.any_victim(now, min_idle) {
            return false;
        }
        // The node where the fewest evictions make room: the first in reserve order with
        // room once removals complete, if any (none to evict); else, as no node makes room
        // with fewer than one, the walk in reserve order stops at the first that needs one.
        let mut best: Option<(usize, NodeKey)> = view.first_with_room(memory).map(|k| (0, k));
        if best.is_none() {
            for v in view.iter() {
                let mut n = 0;
                let room =
                    self.walk_victims(now, v.key, v.free + v.removing, memory, min_idle, |_| {
                        n += 1
                    });
                if room && best.is_none_or(|(b, _)| n < b) {
                    best = Some((n, v.key));
                    if n <= 1 {
                        break;
                    }
                }
            }
        }
        let Some((_, node)) = best else {
            return false;
        };
        let v = view.get(node);
        let start = v.map_or(0, |v| v.free + v.removing);
        let mut victims = Vec::new();
        self.walk_victims(now, node, start, memory, min_idle, |k| victims.push(k));
        for key in victims {
            self.state.reasons.because(ReasonKind::Remove, || {
                format!(
                    "evicted: idle, and its node needs {} for a waiting request",
                    reasons::bytes(memory)
                )
            });
            self.state.remove_container(key, out);
        }
        true
    }

    /// Whether an idle container may be evicted: idle at least `min_idle` (the caller checks),
    /// none of a function with waiting requests, and unless reserves fail (`min_idle` 0) not
    /// its function's most recently used ready container (nor one used at the same time).
    fn evictable(&self, last_used: Millis, key: ContainerKey, min_idle: Millis) -> Option<u64> {
        let f = self.state.store.container(key)?.function;
        if min_idle > 0
            && self
                .state
                .store
                .newest_ready_use(f)
                .is_some_and(|t| last_used >= t)
        {
            return None;
        }
        if self
            .fns
            .get(f.index() as usize)
            .is_some_and(|d| !d.queue.is_empty())
        {
            return None;
        }
        Some(self.charge(f))
    }

    /// Walks `node`'s idle containers, least recently used first, handing each evictable one
    /// to `take` until `have` (starting at `start`) reaches `memory`; whether it did.
    fn walk_victims(
        &self,
        now: Millis,
        node: NodeKey,
        start: u64,
        memory: u64,
        min_idle: Millis,
        mut take: impl FnMut(ContainerKey),
    ) -> bool {
        let mut have = start;
        for (last_used, key) in self.state.store.idle_lru_on(node) {
            if have >= memory || now.saturating_sub(last_used) < min_idle {
                break;
            }
            if let Some(charge) = self.evictable(last_used, key, min_idle) {
                have += charge;
                take(key);
            }
        }
        have >= memory
    }

    /// Whether any container anywhere may be evicted.
    fn any_victim(&self, now: Millis, min_idle: Millis) -> bool {
        self.state
            .store
            .idle_lru()
            .take_while(|(t, _)| now.saturating_sub(*t) >= min_idle)
            .any(|(t, k)| self.evictable(t, k, min_idle).is_some())
    }
}
