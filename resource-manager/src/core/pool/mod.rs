//! The contest's node pool rules, in virtual time.
//!
//! Filling the pool:
//! - `ready_nodes` nodes are started at once ([`Pool::bootstrap`]).
//! - Each reserve takes the longest-ready node and owes the pool one refill, due
//!   `refill_delay_ms` later ([`Pool::reserve`]).
//! - A due refill starts a node as long as the nodes holding a slot (starting, ready,
//!   reserved and failed ones, plus released nodes still inside their refill delay) stay
//!   within `max_nodes`; otherwise it waits until a slot frees ([`Pool::tick`]).
//! - A released node's slot is reusable `refill_delay_ms` after its release.
//!
//! Healing it:
//! - A node that fails to start is forgotten and owes a retry after the refill delay
//!   ([`Pool::node_start_failed`]). Start failures in a row also hold back *every* start
//!   for a back-off (`start_backoff_base_ms`, doubling per failure up to
//!   `start_backoff_max_ms`), so a node that can never start is not restarted in a tight
//!   loop even with a zero refill delay; the next successful start clears the back-off.
//! - A node whose process exited fails at once ([`Pool::node_exited`]). A node that misses
//!   its health probes fails once it has missed at least [`MISSED_PROBES_TO_FAIL`] of them
//!   and answered none for `failed_after_ms` ([`Pool::probe_missed`]); any answer clears
//!   that ([`Pool::probe_answered`]).
//! - A failed *ready* node was never anyone's: it is forgotten at once (no reserve can hand
//!   it out) and owes a refill after the refill delay, like a failed start. A failed
//!   *reserved* node stays its account's (state `Failed`, usage record open, slot held)
//!   until the account releases it, and that release succeeds like any other. Either way
//!   the node is killed, and a node fails only once.
//!
//! Surviving a restart of the manager:
//! - [`Pool::snapshot`] is what the manager persists after every change: every node but the
//!   starting ones (ready, reserved, failed, and the released ones' usage records) and the
//!   next generation, so no id is ever handed out twice.
//! - [`Pool::restore`] is [`Pool::bootstrap`]'s counterpart for a restarted manager: it takes
//!   back the nodes that survived (see [`crate::core::recovery`] for which do), keeps
//!   their ids, states, owners and reserve times (node time stays correct, released slots
//!   keep cooling), and owes one refill, due now, per ready node missing from `ready_nodes`.
//!
//! Each method returns the [`Action`]s the caller must carry out; [`Pool::next_wake_ms`]
//! says when [`Pool::tick`] has something to do next.
//!
//! Account and node ids from clients are 1 to [`MAX_ID_BYTES`] bytes ([`check_id`]); error
//! messages quote them clipped (`faas_common::text::clip`).
//!
//! Files: `rules.rs` (the rules, actions and errors), this file (the pool itself), and its
//! tests (`filling_tests.rs`: start, reserve, release, refills; `healing_tests.rs`:
//! failures, probes, back-off, ids, restore) with their helpers in `test_support.rs`.

#[cfg(test)]
mod filling_tests;
#[cfg(test)]
mod healing_tests;
mod rules;
#[cfg(test)]
mod test_support;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use faas_common::text::clip;

use crate::core::recovery::SavedState;
use crate::model::{Failure, FailureReason, Node, NodeEndpoint, NodeState, StartedNode};
use crate::store::{NodeTable, StateCounts};

pub use rules::{
    Action, FailedNode, IdKind, MAX_ID_BYTES, MISSED_PROBES_TO_FAIL, PoolError, PoolRules,
    Reservation, check_id,
};

/// Probes a node has missed since its last answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Missed {
    /// When the first of them was missed.
    since_ms: i64,
    count: u32,
}

/// The node pool: the node table plus the refills owed, the slots still cooling down, the
/// probes missed and the start back-off.
#[derive(Debug)]
pub struct Pool {
    rules: PoolRules,
    table: NodeTable,
    /// Due times of the refills owed (one per reserve, plus retries of failed starts and
    /// replacements of failed ready nodes).
    refills: BinaryHeap<Reverse<i64>>,
    /// Times at which released nodes' slots free up.
    cooling: BinaryHeap<Reverse<i64>>,
    /// Ready and reserved nodes that missed their last probes.
    missed: HashMap<String, Missed>,
    /// Start failures since the last successful start.
    start_failures_in_a_row: u32,
    /// No node starts before this (the start back-off).
    starts_not_before_ms: i64,
    last_generation: u64,
    closed: bool,
    /// Node-milliseconds of released nodes.
    released_node_ms: i64,
    /// Sum of `reserved_at_ms` over nodes still owned (for O(1) node time).
    open_reserved_at_sum: i64,
}

impl Pool {
    /// An empty pool under `rules`; call [`Pool::bootstrap`] to fill it.
    pub fn new(rules: PoolRules) -> Pool {
        Pool {
            rules,
            table: NodeTable::new(),
            refills: BinaryHeap::new(),
            cooling: BinaryHeap::new(),
            missed: HashMap::new(),
            start_failures_in_a_row: 0,
            starts_not_before_ms: i64::MIN,
            last_generation: 0,
            closed: false,
            released_node_ms: 0,
            open_reserved_at_sum: 0,
        }
    }

    /// The rules in force.
    pub fn rules(&self) -> &PoolRules {
        &self.rules
    }

    /// The node with this id (any state).
    pub fn node(&self, id: &str) -> Option<&Node> {
        self.table.get(id)
    }

    /// Counts by state.
    pub fn counts(&self) -> StateCounts {
        self.table.counts()
    }

    /// Refills owed and not yet started.
    pub fn pending_refills(&self) -> usize {
        self.refills.len()
    }

    /// Nodes occupying a slot: starting, ready, reserved, failed, and released ones still
    /// cooling down (as of the last [`Pool::tick`]).
    pub fn occupied_slots(&self) -> usize {
        self.table.counts().holding_slots() + self.cooling.len()
    }

    /// Whether [`Pool::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Starts the initial ready nodes (at most `max_nodes`).
    pub fn bootstrap(&mut self, now_ms: i64) -> Vec<Action> {
        let want = self.rules.ready_nodes.min(self.rules.max_nodes);
        let mut actions = Vec::with_capacity(want);
        while !self.closed && self.occupied_slots() < want {
            actions.push(self.start_new_node(now_ms));
        }
        actions
    }

    /// A started node is up (at `started.endpoint`): it becomes reservable, and the start
    /// back-off is cleared. Returns a stop if the node is no longer wanted (unknown, not
    /// starting, or the pool is closed).
    pub fn node_started(
        &mut self,
        node_id: &str,
        started: StartedNode,
        now_ms: i64,
    ) -> Vec<Action> {
        let _ = now_ms;
        let starting = self.is_in(node_id, NodeState::Starting);
        if self.closed || !starting {
            if starting {
                self.table.remove(node_id);
            }
            return vec![Action::StopNode {
                node_id: node_id.to_string(),
            }];
        }
        self.start_failures_in_a_row = 0;
        self.starts_not_before_ms = i64::MIN;
        self.table.update(node_id, |n| {
            n.state = NodeState::Ready;
            n.endpoint = Some(started.endpoint);
            n.handle = started.handle;
        });
        Vec::new()
    }

    /// Takes back the nodes of a restarted manager (on a new pool, instead of
    /// [`Pool::bootstrap`]): ready, reserved, failed and released ones keep their ids, states,
    /// owners and times (starting ones are skipped: their start died with the old manager).
    /// Generations continue after `next_generation - 1` and after every restored node's.
    /// One refill is owed, due now, per ready node missing from `ready_nodes`; returns the
    /// starts that fit now.
    pub fn restore(&mut self, nodes: Vec<Node>, next_generation: u64, now_ms: i64) -> Vec<Action> {
        self.last_generation = self.last_generation.max(next_generation.saturating_sub(1));
        for mut node in nodes {
            self.last_generation = self.last_generation.max(node.generation);
            if node.state == NodeState::Starting || self.table.get(&node.id).is_some() {
                continue;
            }
            if node.state.is_owned() || node.state == NodeState::Released {
                let reserved_at = *node.reserved_at_ms.get_or_insert(now_ms);
                if node.state == NodeState::Released {
                    let released_at = node.released_at_ms.unwrap_or(now_ms).max(reserved_at);
                    node.released_at_ms = Some(released_at);
                    self.released_node_ms += released_at - reserved_at;
                    let slot_free_at = released_at + self.rules.refill_delay_ms;
                    if slot_free_at > now_ms {
                        self.cooling.push(Reverse(slot_free_at));
                    }
                } else {
                    self.open_reserved_at_sum += reserved_at;
                }
            }
            self.table.insert(node);
        }
        let counts = self.table.counts();
        let missing = self
            .rules
            .ready_nodes
            .saturating_sub(counts.ready + counts.starting);
        for _ in 0..missing {
            self.refills.push(Reverse(now_ms));
        }
        self.tick(now_ms)
    }

    /// What survives a restart (see the module docs): the nodes ever reserved in reservation
    /// order (so [`Pool::restore`] gives back the same usage records in the same order), then
    /// the ready ones, oldest first, and the next generation. Starting nodes are left out.
    pub fn snapshot(&self) -> SavedState {
        let mut ready: Vec<Node> = self
            .table
            .holding_slots()
            .filter(|n| n.state == NodeState::Ready)
            .cloned()
            .collect();
        ready.sort_by_key(|n| n.generation);
        SavedState {
            next_generation: self.last_generation + 1,
            nodes: self.usage().cloned().chain(ready).collect(),
        }
    }

    /// A node failed to start: it is forgotten, a retry is owed after the refill delay, and
    /// every start waits out the back-off. Returns when the retry may start (`None` if the
    /// node was not starting or the pool is closed).
    pub fn node_start_failed(&mut self, node_id: &str, now_ms: i64) -> Option<i64> {
        if !self.is_in(node_id, NodeState::Starting) {
            return None;
        }
        self.table.remove(node_id);
        if self.closed {
            return None;
        }
        self.start_failures_in_a_row = self.start_failures_in_a_row.saturating_add(1);
        let doublings = (self.start_failures_in_a_row - 1).min(32);
        let backoff = self
            .rules
            .start_backoff_base_ms
            .saturating_mul(1i64 << doublings)
            .min(self.rules.start_backoff_max_ms);
        self.starts_not_before_ms = self.starts_not_before_ms.max(now_ms + backoff);
        let due = now_ms + self.rules.refill_delay_ms;
        self.refills.push(Reverse(due));
        Some(due.max(self.starts_not_before_ms))
    }

    /// Takes the longest-ready node for `account`, and owes the pool a refill for it.
    /// The caller then hands the node over and calls [`Pool::reserve_failed`] if that fails.
    pub fn reserve(&mut self, account: &str, now_ms: i64) -> Result<Reservation, PoolError> {
        check_id(IdKind::Account, account)?;
        if self.closed {
            return Err(PoolError::Closed);
        }
        let id = self
            .table
            .oldest_ready()
            .ok_or(PoolError::Exhausted)?
            .to_string();
        let node = self
            .table
            .update(&id, |n| {
                n.state = NodeState::Reserved;
                n.owner_account = Some(account.to_string());
                n.reserved_at_ms = Some(now_ms);
                n.clone()
            })
            .ok_or_else(|| PoolError::NotFound(clip(&id).into_owned()))?;
        self.open_reserved_at_sum += now_ms;
        let refill_at_ms = now_ms + self.rules.refill_delay_ms;
        self.refills.push(Reverse(refill_at_ms));
        Ok(Reservation { node, refill_at_ms })
    }

    /// Handing a reserved node to its account failed: the node is dropped from the records
    /// (it never served anyone) and stopped. The refill owed for it stays owed.
    pub fn reserve_failed(&mut self, node_id: &str, now_ms: i64) -> Vec<Action> {
        let _ = now_ms;
        let reserved = self
            .table
            .get(node_id)
            .filter(|n| n.state.is_owned())
            .and_then(|n| n.reserved_at_ms);
        match reserved {
            Some(at) => {
                self.table.remove(node_id);
                self.missed.remove(node_id);
                self.open_reserved_at_sum -= at;
                vec![Action::StopNode {
                    node_id: node_id.to_string(),
                }]
            }
            None => Vec::new(),
        }
    }

    /// Releases a reserved (or failed) node: it is stopped, its usage record closed, and its
    /// slot frees `refill_delay_ms` from now. Its id is never used again.
    pub fn release(&mut self, node_id: &str, now_ms: i64) -> Result<Vec<Action>, PoolError> {
        check_id(IdKind::Node, node_id)?;
        let node = self
            .table
            .get(node_id)
            .ok_or_else(|| PoolError::NotFound(clip(node_id).into_owned()))?;
        if !node.state.is_owned() {
            return Err(PoolError::NotReserved {
                id: clip(node_id).into_owned(),
                state: node.state,
            });
        }
        let reserved_at = node.reserved_at_ms.unwrap_or(now_ms);
        let released_at = now_ms.max(reserved_at);
        self.table.update(node_id, |n| {
            n.state = NodeState::Released;
            n.released_at_ms = Some(released_at);
        });
        self.missed.remove(node_id);
        self.open_reserved_at_sum -= reserved_at;
        self.released_node_ms += released_at - reserved_at;
        if !self.closed {
            self.cooling
                .push(Reverse(released_at + self.rules.refill_delay_ms));
        }
        Ok(vec![Action::StopNode {
            node_id: node_id.to_string(),
        }])
    }

    /// The nodes to probe (ready and reserved ones) and where they listen.
    pub fn probe_targets(&self) -> Vec<(String, NodeEndpoint)> {
        self.table
            .holding_slots()
            .filter(|n| matches!(n.state, NodeState::Ready | NodeState::Reserved))
            .filter_map(|n| Some((n.id.clone(), n.endpoint.clone()?)))
            .collect()
    }

    /// Node `node_id` answered a probe: it is healthy again.
    pub fn probe_answered(&mut self, node_id: &str, now_ms: i64) {
        let _ = now_ms;
        self.missed.remove(node_id);
    }

    /// Node `node_id` did not answer a probe (`detail` says how). Returns the failure if that
    /// makes the node fail (see the module docs).
    pub fn probe_missed(&mut self, node_id: &str, detail: &str, now_ms: i64) -> Option<FailedNode> {
        if !self.is_probed(node_id) {
            return None;
        }
        let missed = self.missed.entry(node_id.to_string()).or_insert(Missed {
            since_ms: now_ms,
            count: 0,
        });
        missed.count += 1;
        let silent_ms = now_ms - missed.since_ms;
        if missed.count < MISSED_PROBES_TO_FAIL || silent_ms < self.rules.failed_after_ms {
            return None;
        }
        let detail = format!(
            "no answer to {} health probes in {silent_ms} ms (last: {detail})",
            missed.count
        );
        self.fail(node_id, FailureReason::Unresponsive, detail, now_ms)
    }

    /// Node `node_id`'s process exited (or its container is gone): it fails at once.
    pub fn node_exited(&mut self, node_id: &str, detail: &str, now_ms: i64) -> Option<FailedNode> {
        if !self.is_probed(node_id) {
            return None;
        }
        self.fail(node_id, FailureReason::Exited, detail.to_string(), now_ms)
    }

    /// Frees the slots whose delay is over and starts the refills that are due and fit
    /// (none during a start back-off).
    pub fn tick(&mut self, now_ms: i64) -> Vec<Action> {
        while self.cooling.peek().is_some_and(|Reverse(t)| *t <= now_ms) {
            self.cooling.pop();
        }
        let mut actions = Vec::new();
        while !self.closed
            && now_ms >= self.starts_not_before_ms
            && self.refills.peek().is_some_and(|Reverse(t)| *t <= now_ms)
            && self.occupied_slots() < self.rules.max_nodes
        {
            self.refills.pop();
            actions.push(self.start_new_node(now_ms));
        }
        actions
    }

    /// When [`Pool::tick`] next has something to do, if ever (without further calls).
    pub fn next_wake_ms(&self) -> Option<i64> {
        if self.closed {
            return None;
        }
        let Reverse(due) = *self.refills.peek()?;
        let at = if self.occupied_slots() < self.rules.max_nodes {
            due
        } else {
            // Full: the next chance is when a cooling slot frees (a release will also wake us).
            self.cooling.peek().map(|Reverse(t)| (*t).max(due))?
        };
        Some(at.max(self.starts_not_before_ms))
    }

    /// Stops the pool: no more starts or reserves; reserved (and failed) nodes are released
    /// as of now, ready ones forgotten. Returns a stop for every ready, reserved and failed
    /// node (starting ones are stopped when their start completes, see [`Pool::node_started`]).
    pub fn close(&mut self, now_ms: i64) -> Vec<Action> {
        self.closed = true;
        self.refills.clear();
        self.cooling.clear();
        self.missed.clear();
        let to_stop: Vec<(String, NodeState)> = self
            .table
            .holding_slots()
            .filter(|n| n.state != NodeState::Starting)
            .map(|n| (n.id.clone(), n.state))
            .collect();
        let mut actions = Vec::with_capacity(to_stop.len());
        for (id, state) in to_stop {
            if state.is_owned() {
                let _ = self.release(&id, now_ms);
            } else {
                // Never reserved: this life leaves no record.
                self.table.remove(&id);
            }
            actions.push(Action::StopNode { node_id: id });
        }
        actions
    }

    /// Every node ever reserved (released and failed ones included), in reservation order.
    pub fn usage(&self) -> impl Iterator<Item = &Node> {
        self.table.reserved_history()
    }

    /// Node time so far: the sum over reserved nodes of reserve-to-release (or to now), in ms.
    /// A failed node counts until its account releases it.
    pub fn node_ms(&self, now_ms: i64) -> i64 {
        let open = self.table.counts().owned() as i64 * now_ms - self.open_reserved_at_sum;
        self.released_node_ms + open.max(0)
    }

    fn is_in(&self, node_id: &str, state: NodeState) -> bool {
        self.table.get(node_id).is_some_and(|n| n.state == state)
    }

    /// Whether the node is one whose health is watched (ready or reserved).
    fn is_probed(&self, node_id: &str) -> bool {
        self.is_in(node_id, NodeState::Ready) || self.is_in(node_id, NodeState::Reserved)
    }

    /// Marks a ready or reserved node failed (see the module docs).
    fn fail(
        &mut self,
        node_id: &str,
        reason: FailureReason,
        detail: String,
        now_ms: i64,
    ) -> Option<FailedNode> {
        let was = self.table.get(node_id)?.state;
        let failure = Failure {
            reason,
            detail,
            at_ms: now_ms,
        };
        self.missed.remove(node_id);
        match was {
            NodeState::Ready => {
                self.table.remove(node_id);
                if !self.closed {
                    self.refills
                        .push(Reverse(now_ms + self.rules.refill_delay_ms));
                }
            }
            NodeState::Reserved => {
                let recorded = failure.clone();
                self.table.update(node_id, |n| {
                    n.state = NodeState::Failed;
                    n.failure = Some(recorded);
                });
            }
            _ => return None,
        }
        Some(FailedNode {
            node_id: node_id.to_string(),
            was,
            failure,
            actions: vec![Action::KillNode {
                node_id: node_id.to_string(),
            }],
        })
    }

    fn start_new_node(&mut self, now_ms: i64) -> Action {
        self.last_generation += 1;
        let generation = self.last_generation;
        let id = format!("{}-{}", self.rules.node_id_prefix, generation);
        let memory_bytes = self.rules.node_memory_bytes;
        self.table
            .insert(Node::starting(id.clone(), generation, memory_bytes, now_ms));
        Action::StartNode {
            node_id: id,
            memory_bytes,
        }
    }
}
