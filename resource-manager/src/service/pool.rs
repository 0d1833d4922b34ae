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
//!   back the nodes that survived (see [`crate::service::recovery`] for which do), keeps
//!   their ids, states, owners and reserve times (node time stays correct, released slots
//!   keep cooling), and owes one refill, due now, per ready node missing from `ready_nodes`.
//!
//! Each method returns the [`Action`]s the caller must carry out; [`Pool::next_wake_ms`]
//! says when [`Pool::tick`] has something to do next.
//!
//! Account and node ids from clients are 1 to [`MAX_ID_BYTES`] bytes ([`check_id`]); error
//! messages quote them clipped (`faas_common::text::clip`).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::fmt;

use faas_common::text::clip;

use crate::model::{Failure, FailureReason, Node, NodeEndpoint, NodeState, StartedNode};
use crate::service::recovery::SavedState;
use crate::store::{NodeTable, StateCounts};

/// The longest account or node id accepted, in bytes.
pub const MAX_ID_BYTES: usize = 256;

/// A node fails for not answering only after at least this many missed probes in a row
/// (one late answer is not an outage).
pub const MISSED_PROBES_TO_FAIL: u32 = 2;

/// The pool's rules, from configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolRules {
    /// Nodes holding a slot at most (the contest: 20).
    pub max_nodes: usize,
    /// Nodes ready when the manager starts (the contest: 10).
    pub ready_nodes: usize,
    /// Delay of a refill after a reserve (or a failure), and of a released slot's reuse.
    pub refill_delay_ms: i64,
    /// Memory each node offers (the contest: 3072 MiB).
    pub node_memory_bytes: u64,
    /// Node ids are `{prefix}-{generation}`.
    pub node_id_prefix: String,
    /// A node that answered no probe for this long (and missed at least
    /// [`MISSED_PROBES_TO_FAIL`]) fails.
    pub failed_after_ms: i64,
    /// Back-off after the first start failure in a row; doubles with each further one.
    pub start_backoff_base_ms: i64,
    /// The longest back-off.
    pub start_backoff_max_ms: i64,
}

impl Default for PoolRules {
    fn default() -> PoolRules {
        PoolRules {
            max_nodes: 20,
            ready_nodes: 10,
            refill_delay_ms: 10_000,
            node_memory_bytes: 3072 * 1024 * 1024,
            node_id_prefix: "node".to_string(),
            failed_after_ms: 3_000,
            start_backoff_base_ms: 1_000,
            start_backoff_max_ms: 30_000,
        }
    }
}

/// Something the caller must do for the pool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Start this node now; report back with [`Pool::node_started`] or [`Pool::node_start_failed`].
    StartNode { node_id: String, memory_bytes: u64 },
    /// Stop this node now (gracefully: it may stop its containers first).
    StopNode { node_id: String },
    /// Kill this node now, without a grace period (it failed), and reap it.
    KillNode { node_id: String },
}

/// A node just taken for an account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reservation {
    /// The node as reserved (state `Reserved`, owner and reserved time set).
    pub node: Node,
    /// When the refill owed for it falls due.
    pub refill_at_ms: i64,
}

/// A node that just failed (or was found dead by a restarted manager): what to log and
/// count, and what to do about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FailedNode {
    pub node_id: String,
    /// The state it failed in: `Ready` (forgotten now, a refill owed) or `Reserved` (now
    /// `Failed`, until its account releases it).
    pub was: NodeState,
    pub failure: Failure,
    /// Kill it.
    pub actions: Vec<Action>,
}

/// What kind of id a client sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdKind {
    Account,
    Node,
}

impl fmt::Display for IdKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IdKind::Account => "account ID",
            IdKind::Node => "node ID",
        })
    }
}

/// Why the pool refused a call. The messages are what clients see; ids in them are clipped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    #[error("{0} cannot be empty")]
    EmptyId(IdKind),
    #[error("{kind} {id:?} is too long: at most {max} bytes are allowed", max = MAX_ID_BYTES)]
    IdTooLong { kind: IdKind, id: String },
    #[error("no available node can be reserved")]
    Exhausted,
    #[error(
        "node {0:?} not found: this resource manager has no node of that id (ids come from ReserveNode)"
    )]
    NotFound(String),
    #[error("node {id:?} is not reserved (it is {state}); only a reserved node can be released")]
    NotReserved { id: String, state: NodeState },
    #[error("the resource manager is shutting down")]
    Closed,
}

/// Checks an id a client sent: 1 to [`MAX_ID_BYTES`] bytes.
pub fn check_id(kind: IdKind, id: &str) -> Result<(), PoolError> {
    if id.is_empty() {
        return Err(PoolError::EmptyId(kind));
    }
    if id.len() > MAX_ID_BYTES {
        return Err(PoolError::IdTooLong {
            kind,
            id: clip(id).into_owned(),
        });
    }
    Ok(())
}

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

#[cfg(test)]
mod tests {
    use super::*;

    const DELAY: i64 = 10_000;

    fn rules(ready: usize, max: usize) -> PoolRules {
        PoolRules {
            max_nodes: max,
            ready_nodes: ready,
            refill_delay_ms: DELAY,
            ..PoolRules::default()
        }
    }

    fn endpoint(port: u16) -> NodeEndpoint {
        NodeEndpoint {
            address: "127.0.0.1".into(),
            port,
        }
    }

    fn started_ids(actions: &[Action]) -> Vec<String> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::StartNode { node_id, .. } => Some(node_id.clone()),
                Action::StopNode { .. } | Action::KillNode { .. } => None,
            })
            .collect()
    }

    /// Reports every start in `actions` as successful.
    fn start_all(pool: &mut Pool, actions: &[Action], now: i64) {
        for (i, id) in started_ids(actions).iter().enumerate() {
            assert!(
                pool.node_started(id, StartedNode::at(endpoint(1000 + i as u16)), now)
                    .is_empty()
            );
        }
    }

    fn ready_pool(ready: usize, max: usize) -> Pool {
        ready_pool_with(rules(ready, max))
    }

    /// A pool under `rules` whose initial nodes all started at 0.
    fn ready_pool_with(rules: PoolRules) -> Pool {
        let mut pool = Pool::new(rules);
        let actions = pool.bootstrap(0);
        start_all(&mut pool, &actions, 0);
        pool
    }

    #[test]
    fn bootstrap_starts_the_ready_nodes_with_the_node_memory() {
        let mut pool = Pool::new(rules(10, 20));
        let actions = pool.bootstrap(0);
        assert_eq!(actions.len(), 10);
        assert!(actions.iter().all(|a| matches!(
            a,
            Action::StartNode {
                memory_bytes: 3_221_225_472,
                ..
            }
        )));
        let ids = started_ids(&actions);
        let unique: std::collections::HashSet<_> = ids.iter().collect();
        assert_eq!(unique.len(), 10, "ids are unique: {ids:?}");
        assert_eq!(pool.counts().starting, 10);
        assert_eq!(pool.reserve("acct", 1), Err(PoolError::Exhausted));

        start_all(&mut pool, &actions, 100);
        assert_eq!(pool.counts().ready, 10);
        assert_eq!(pool.next_wake_ms(), None, "nothing owed yet");
    }

    #[test]
    fn bootstrap_never_exceeds_max_nodes() {
        let mut pool = Pool::new(rules(10, 3));
        assert_eq!(pool.bootstrap(0).len(), 3);
    }

    #[test]
    fn reserve_takes_the_oldest_ready_node_and_schedules_a_refill() {
        let mut pool = ready_pool(10, 20);
        let r = pool.reserve("acct-1", 5_000).unwrap();
        assert_eq!(r.node.id, "node-1");
        assert_eq!(r.node.state, NodeState::Reserved);
        assert_eq!(r.node.owner_account.as_deref(), Some("acct-1"));
        assert_eq!(r.node.reserved_at_ms, Some(5_000));
        assert_eq!(r.node.endpoint, Some(endpoint(1000)));
        assert_eq!(r.refill_at_ms, 5_000 + DELAY);
        assert_eq!(pool.counts().ready, 9);
        assert_eq!(pool.next_wake_ms(), Some(5_000 + DELAY));

        // Not yet due.
        assert!(pool.tick(5_000 + DELAY - 1).is_empty());
        let actions = pool.tick(5_000 + DELAY);
        assert_eq!(started_ids(&actions), vec!["node-11".to_string()]);
        assert_eq!(pool.pending_refills(), 0);
        assert_eq!(pool.next_wake_ms(), None);
        start_all(&mut pool, &actions, 5_000 + DELAY);
        assert_eq!(pool.counts().ready, 10);
    }

    #[test]
    fn two_reserves_never_get_the_same_node() {
        let mut pool = ready_pool(3, 3);
        let a = pool.reserve("x", 1).unwrap().node.id;
        let b = pool.reserve("x", 1).unwrap().node.id;
        let c = pool.reserve("y", 1).unwrap().node.id;
        assert!(a != b && b != c && a != c);
    }

    #[test]
    fn exhausted_when_no_node_is_ready() {
        let mut pool = ready_pool(1, 1);
        pool.reserve("a", 0).unwrap();
        let err = pool.reserve("a", 1).unwrap_err();
        assert_eq!(err, PoolError::Exhausted);
        assert_eq!(err.to_string(), "no available node can be reserved");
        // The refill is due but the only slot is taken: nothing starts, nothing to wake for.
        assert!(pool.tick(DELAY * 5).is_empty());
        assert_eq!(pool.next_wake_ms(), None);
    }

    #[test]
    fn empty_account_is_refused() {
        let mut pool = ready_pool(1, 1);
        let err = pool.reserve("", 0).unwrap_err();
        assert_eq!(err, PoolError::EmptyId(IdKind::Account));
        assert_eq!(err.to_string(), "account ID cannot be empty");
        assert_eq!(pool.counts().ready, 1);
    }

    #[test]
    fn the_21st_live_node_is_never_started() {
        let mut pool = ready_pool(10, 20);
        let mut now = 0;
        let mut reserved = 0;
        // Reserve whatever is ready, let every due refill run, many times over.
        for _ in 0..10 {
            while pool.reserve("acct", now).is_ok() {
                reserved += 1;
            }
            now += DELAY;
            let actions = pool.tick(now);
            start_all(&mut pool, &actions, now);
            assert!(pool.counts().holding_slots() <= 20, "{:?}", pool.counts());
        }
        assert_eq!(pool.counts().holding_slots(), 20);
        assert_eq!(pool.counts().reserved, 20);
        assert_eq!(reserved, 20);
        assert_eq!(pool.reserve("acct", now), Err(PoolError::Exhausted));
        assert_eq!(
            pool.pending_refills(),
            10,
            "refills still owed, blocked by the cap"
        );
        assert_eq!(pool.next_wake_ms(), None);
    }

    #[test]
    fn a_released_slot_is_reusable_after_the_delay() {
        let mut pool = ready_pool(2, 2);
        let a = pool.reserve("acct", 0).unwrap().node.id;
        pool.reserve("acct", 0).unwrap();
        assert!(
            pool.tick(DELAY).is_empty(),
            "two refills due but both slots are taken"
        );

        let release_at = 20_000;
        let actions = pool.release(&a, release_at).unwrap();
        assert_eq!(actions, vec![Action::StopNode { node_id: a.clone() }]);
        assert_eq!(pool.next_wake_ms(), Some(release_at + DELAY));
        assert!(
            pool.tick(release_at + DELAY - 1).is_empty(),
            "slot still cooling"
        );

        let actions = pool.tick(release_at + DELAY);
        assert_eq!(
            actions.len(),
            1,
            "exactly the freed slot is refilled: {actions:?}"
        );
        start_all(&mut pool, &actions, release_at + DELAY);
        assert_eq!(pool.counts().ready, 1);
        assert_eq!(pool.counts().holding_slots(), 2);
        assert_eq!(
            pool.next_wake_ms(),
            None,
            "the other refill waits for a release"
        );
    }

    #[test]
    fn release_checks_the_node() {
        let mut pool = ready_pool(2, 2);
        assert_eq!(pool.release("", 0), Err(PoolError::EmptyId(IdKind::Node)));
        let err = pool.release("node-99", 0).unwrap_err();
        assert_eq!(
            err.to_string(),
            "node \"node-99\" not found: this resource manager has no node of that id (ids come from ReserveNode)"
        );
        let err = pool.release("node-2", 0).unwrap_err();
        assert_eq!(
            err.to_string(),
            "node \"node-2\" is not reserved (it is ready); only a reserved node can be released",
        );

        let id = pool.reserve("a", 0).unwrap().node.id;
        pool.release(&id, 1).unwrap();
        assert_eq!(
            pool.release(&id, 2),
            Err(PoolError::NotReserved {
                id: id.clone(),
                state: NodeState::Released
            }),
            "already released"
        );
        let node = pool.node(&id).unwrap();
        assert_eq!(node.state, NodeState::Released);
        assert_eq!(node.released_at_ms, Some(1));
    }

    #[test]
    fn node_time_counts_reserve_to_release_and_keeps_released_records() {
        let mut pool = ready_pool(3, 3);
        let a = pool.reserve("a", 1_000).unwrap().node.id;
        let b = pool.reserve("b", 2_000).unwrap().node.id;
        assert_eq!(pool.node_ms(1_000), 0);
        assert_eq!(pool.node_ms(3_000), 2_000 + 1_000);

        pool.release(&a, 4_000).unwrap();
        assert_eq!(pool.node_ms(10_000), 3_000 + 8_000);

        let usage: Vec<_> = pool
            .usage()
            .map(|n| (n.id.clone(), n.reserved_at_ms, n.released_at_ms))
            .collect();
        assert_eq!(
            usage,
            vec![
                (a.clone(), Some(1_000), Some(4_000)),
                (b.clone(), Some(2_000), None)
            ]
        );
        // The sum over records agrees with the running total.
        let summed: i64 = pool.usage().map(|n| n.reserved_ms(10_000)).sum();
        assert_eq!(summed, pool.node_ms(10_000));
    }

    #[test]
    fn a_failed_handover_drops_the_node_but_keeps_the_refill() {
        let mut pool = ready_pool(2, 2);
        let r = pool.reserve("a", 0).unwrap();
        let actions = pool.reserve_failed(&r.node.id, 1);
        assert_eq!(
            actions,
            vec![Action::StopNode {
                node_id: r.node.id.clone()
            }]
        );
        assert!(pool.node(&r.node.id).is_none());
        assert_eq!(pool.usage().count(), 0, "never counted as node time");
        assert_eq!(pool.node_ms(50_000), 0);
        assert!(pool.reserve_failed(&r.node.id, 2).is_empty(), "idempotent");
        // The slot is free at once; the refill comes when due.
        let actions = pool.tick(DELAY);
        assert_eq!(actions.len(), 1);
    }

    #[test]
    fn a_failed_start_is_retried_after_the_delay() {
        let mut pool = Pool::new(rules(1, 1));
        let actions = pool.bootstrap(0);
        let id = started_ids(&actions).remove(0);
        assert_eq!(pool.node_start_failed(&id, 500), Some(500 + DELAY));
        assert!(pool.node(&id).is_none());
        assert_eq!(pool.next_wake_ms(), Some(500 + DELAY));
        let retry = pool.tick(500 + DELAY);
        assert_eq!(retry.len(), 1);
        assert_ne!(started_ids(&retry)[0], id, "a new life gets a new id");
    }

    #[test]
    fn close_stops_every_node_and_late_starts() {
        let mut pool = ready_pool(2, 3);
        let a = pool.reserve("a", 100).unwrap().node.id;
        let late = pool.tick(100 + DELAY); // the refill is starting when we close
        let late_id = started_ids(&late).remove(0);

        let mut stops: Vec<_> = pool
            .close(20_000)
            .into_iter()
            .map(|a| match a {
                Action::StopNode { node_id } => node_id,
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        stops.sort();
        assert_eq!(stops, vec!["node-1".to_string(), "node-2".to_string()]);
        assert_eq!(pool.node(&a).unwrap().released_at_ms, Some(20_000));
        assert_eq!(pool.reserve("a", 20_001), Err(PoolError::Closed));
        assert_eq!(
            pool.node_started(&late_id, StartedNode::at(endpoint(9)), 20_002),
            vec![Action::StopNode { node_id: late_id }]
        );
        assert!(pool.tick(1_000_000).is_empty());
        assert_eq!(pool.counts().holding_slots(), 0);
    }

    fn exited(pool: &mut Pool, id: &str, now: i64) -> FailedNode {
        pool.node_exited(
            id,
            "the node-service process 42 was killed by signal 9",
            now,
        )
        .expect("the node fails")
    }

    #[test]
    fn a_ready_node_that_exits_is_forgotten_at_once_and_refilled_after_the_delay() {
        let mut pool = ready_pool(2, 3);
        let failed = exited(&mut pool, "node-1", 1_000);
        assert_eq!(failed.was, NodeState::Ready);
        assert_eq!(failed.failure.reason, FailureReason::Exited);
        assert_eq!(failed.failure.at_ms, 1_000);
        assert_eq!(
            failed.actions,
            vec![Action::KillNode {
                node_id: "node-1".into()
            }]
        );
        assert!(pool.node("node-1").is_none(), "forgotten");
        assert_eq!(pool.counts().ready, 1);
        assert!(
            pool.node_exited("node-1", "again", 1_001).is_none(),
            "a node fails once"
        );
        assert!(
            pool.probe_targets().iter().all(|(id, _)| id != "node-1"),
            "no longer probed"
        );

        // The refill is owed after the refill delay, in a free slot, under a new id.
        assert_eq!(pool.next_wake_ms(), Some(1_000 + DELAY));
        assert!(pool.tick(1_000 + DELAY - 1).is_empty());
        let actions = pool.tick(1_000 + DELAY);
        assert_eq!(started_ids(&actions), vec!["node-3".to_string()]);
        start_all(&mut pool, &actions, 1_000 + DELAY);
        assert_eq!(pool.counts().ready, 2, "back to --ready-nodes");
        assert_eq!(pool.usage().count(), 0, "never reserved, never billed");
    }

    #[test]
    fn reserve_never_hands_out_a_failed_node() {
        let mut pool = ready_pool(2, 2);
        exited(&mut pool, "node-1", 10);
        assert_eq!(pool.reserve("a", 20).unwrap().node.id, "node-2");
        assert_eq!(pool.reserve("a", 30), Err(PoolError::Exhausted));
    }

    #[test]
    fn a_failed_reserved_node_stays_its_owners_until_the_release_which_succeeds() {
        let mut pool = ready_pool(2, 2);
        let id = pool.reserve("acct", 0).unwrap().node.id;
        let slots = pool.occupied_slots();
        let failed = exited(&mut pool, &id, 2_000);
        assert_eq!(failed.was, NodeState::Reserved);
        assert_eq!(
            failed.actions,
            vec![Action::KillNode {
                node_id: id.clone()
            }]
        );

        let node = pool.node(&id).unwrap();
        assert_eq!(node.state, NodeState::Failed);
        assert_eq!(node.owner_account.as_deref(), Some("acct"));
        assert_eq!(
            node.failure.as_ref().map(|f| f.reason),
            Some(FailureReason::Exited)
        );
        assert_eq!(pool.counts().failed, 1);
        assert_eq!(
            pool.occupied_slots(),
            slots,
            "it keeps its slot until released"
        );
        assert!(pool.probe_targets().iter().all(|(n, _)| *n != id));
        // Still the account's: listed as reserved and billed until released.
        let usage: Vec<_> = pool
            .usage()
            .map(|n| (n.id.clone(), n.released_at_ms))
            .collect();
        assert_eq!(usage, vec![(id.clone(), None)]);
        assert_eq!(pool.node_ms(5_000), 5_000);

        let actions = pool
            .release(&id, 6_000)
            .expect("releasing a failed node succeeds");
        assert_eq!(
            actions,
            vec![Action::StopNode {
                node_id: id.clone()
            }]
        );
        let node = pool.node(&id).unwrap();
        assert_eq!(node.state, NodeState::Released);
        assert_eq!(node.released_at_ms, Some(6_000));
        assert_eq!(pool.node_ms(9_000), 6_000);
        assert_eq!(pool.counts().failed, 0);
        assert_eq!(
            pool.pending_refills(),
            1,
            "only the reserve's refill is owed"
        );
        assert!(matches!(
            pool.release(&id, 7_000),
            Err(PoolError::NotReserved {
                state: NodeState::Released,
                ..
            })
        ));
    }

    #[test]
    fn a_node_fails_after_missing_probes_for_the_configured_time() {
        let mut pool = ready_pool_with(PoolRules {
            failed_after_ms: 3_000,
            ..rules(1, 1)
        });
        let id = "node-1";
        assert!(pool.probe_missed(id, "timeout", 0).is_none());
        assert!(pool.probe_missed(id, "timeout", 1_000).is_none());
        pool.probe_answered(id, 1_500);
        // A new silence starts at its first miss.
        for t in [2_000, 3_000, 4_000] {
            assert!(pool.probe_missed(id, "timeout", t).is_none(), "at {t}");
        }
        let failed = pool
            .probe_missed(id, "no answer within 1000 ms", 5_000)
            .expect("silent for 3000 ms");
        assert_eq!(failed.failure.reason, FailureReason::Unresponsive);
        assert_eq!(
            failed.failure.detail,
            "no answer to 4 health probes in 3000 ms (last: no answer within 1000 ms)"
        );
        assert_eq!(
            failed.actions,
            vec![Action::KillNode { node_id: id.into() }]
        );
        assert!(pool.probe_missed(id, "timeout", 6_000).is_none(), "once");
    }

    #[test]
    fn one_missed_probe_never_fails_a_node() {
        let mut pool = ready_pool_with(PoolRules {
            failed_after_ms: 0,
            ..rules(1, 1)
        });
        assert!(pool.probe_missed("node-1", "timeout", 100_000).is_none());
        assert!(pool.probe_missed("node-1", "timeout", 100_001).is_some());
        assert!(
            pool.probe_missed("node-99", "timeout", 0).is_none(),
            "unknown nodes are ignored"
        );
    }

    #[test]
    fn start_failures_in_a_row_back_off_every_start() {
        let mut pool = Pool::new(PoolRules {
            refill_delay_ms: 0,
            start_backoff_base_ms: 1_000,
            start_backoff_max_ms: 4_000,
            ..rules(1, 1)
        });
        let mut actions = pool.bootstrap(0);
        // Each attempt fails at once; the retries come 1, 2, 4, 4 s apart (capped).
        let mut now = 0;
        for retry_at in [1_000, 3_000, 7_000, 11_000] {
            let id = started_ids(&actions).remove(0);
            assert_eq!(pool.node_start_failed(&id, now), Some(retry_at));
            assert_eq!(pool.next_wake_ms(), Some(retry_at));
            assert!(pool.tick(retry_at - 1).is_empty(), "backing off");
            actions = pool.tick(retry_at);
            assert_eq!(actions.len(), 1);
            now = retry_at;
        }
        // A success clears the back-off: the next failure waits the base again.
        start_all(&mut pool, &actions, 11_000);
        let failed = exited(&mut pool, "node-5", 12_000);
        assert_eq!(failed.was, NodeState::Ready);
        let replacement = pool.tick(12_000);
        let id = started_ids(&replacement).remove(0);
        assert_eq!(pool.node_start_failed(&id, 12_050), Some(13_050));
    }

    #[test]
    fn a_node_that_never_starts_is_retried_slowly_not_in_a_loop() {
        let mut pool = Pool::new(PoolRules {
            refill_delay_ms: 0,
            ..rules(3, 3)
        });
        let mut pending = pool.bootstrap(0);
        let mut starts = 0;
        // A minute of virtual time in 10 ms steps; every start fails 10 ms after it began.
        for now in (0..60_000).step_by(10) {
            for id in started_ids(&pending) {
                starts += 1;
                pool.node_start_failed(&id, now);
            }
            pending = pool.tick(now);
        }
        // Without the back-off that would be 3 starts every 10 ms (18,000).
        assert!(starts <= 3 * 5, "{starts} starts in a minute");
        assert!(starts > 3, "retried: {starts}");
    }

    #[test]
    fn a_node_that_fails_during_its_handover_is_dropped_unbilled() {
        let mut pool = ready_pool(2, 2);
        let id = pool.reserve("a", 0).unwrap().node.id;
        exited(&mut pool, &id, 5);
        assert_eq!(
            pool.reserve_failed(&id, 6),
            vec![Action::StopNode {
                node_id: id.clone()
            }]
        );
        assert!(pool.node(&id).is_none());
        assert_eq!(pool.node_ms(10_000), 0);
    }

    #[test]
    fn close_releases_failed_nodes() {
        let mut pool = ready_pool(2, 2);
        let id = pool.reserve("a", 0).unwrap().node.id;
        exited(&mut pool, &id, 5);
        let stops = pool.close(100);
        assert_eq!(stops.len(), 2, "{stops:?}");
        assert_eq!(pool.node(&id).unwrap().released_at_ms, Some(100));
        assert_eq!(pool.counts().holding_slots(), 0);
    }

    #[test]
    fn ids_are_checked_and_quoted_clipped() {
        assert_eq!(check_id(IdKind::Node, &"n".repeat(MAX_ID_BYTES)), Ok(()));
        assert_eq!(
            check_id(IdKind::Account, "").unwrap_err().to_string(),
            "account ID cannot be empty"
        );
        let long = "x".repeat(1 << 20);
        let err = check_id(IdKind::Account, &long).unwrap_err();
        let message = err.to_string();
        assert!(message.len() < 300, "{}", message.len());
        assert!(
            message.starts_with("account ID \"xxx")
                && message
                    .ends_with("…(1048576 bytes)\" is too long: at most 256 bytes are allowed"),
            "{message}"
        );
        let mut pool = ready_pool(1, 1);
        assert!(matches!(
            pool.reserve(&long, 0),
            Err(PoolError::IdTooLong {
                kind: IdKind::Account,
                ..
            })
        ));
        assert!(matches!(
            pool.release(&"n".repeat(MAX_ID_BYTES + 1), 0),
            Err(PoolError::IdTooLong {
                kind: IdKind::Node,
                ..
            })
        ));
        assert_eq!(pool.counts().ready, 1, "nothing changed");
    }

    #[test]
    fn a_restored_pool_keeps_ids_states_and_node_time_and_refills_to_the_ready_nodes() {
        let mut before = ready_pool(3, 4);
        let a = pool_reserve(&mut before, "a", 1_000);
        let b = pool_reserve(&mut before, "b", 2_000);
        before.release(&b, 3_000).unwrap();
        // A refill is starting when the manager dies: not saved, its start died with it.
        assert_eq!(
            started_ids(&before.tick(11_000)),
            vec!["node-4".to_string()]
        );
        let saved = before.snapshot();
        assert_eq!(
            crate::model::ids_and_states(&saved.nodes),
            vec![
                ("node-1", NodeState::Reserved),
                ("node-2", NodeState::Released),
                ("node-3", NodeState::Ready)
            ]
        );
        assert_eq!(saved.next_generation, 5, "node-4's id is used up too");

        let mut after = Pool::new(rules(3, 4));
        let mut nodes = saved.nodes.clone();
        nodes.push(Node::starting("node-9".into(), 9, 1, 0));
        let actions = after.restore(nodes, saved.next_generation, 11_500);
        assert!(
            after.node("node-9").is_none(),
            "a starting node is not restored"
        );
        // Ready: node-3; reserved: node-1; node-2's slot cools until 13 000. Two ready nodes
        // are missing: one fits now, under an id past every one used, the other waits.
        assert_eq!(started_ids(&actions), vec!["node-10".to_string()]);
        assert_eq!(after.pending_refills(), 1);
        assert_eq!(after.next_wake_ms(), Some(3_000 + DELAY));
        assert_eq!(after.counts().reserved, 1);
        assert_eq!(after.counts().ready, 1);
        assert_eq!(after.node_ms(20_000), before.node_ms(20_000));
        assert_eq!(after.node_ms(20_000), 19_000 + 1_000);
        let usage: Vec<_> = after.usage().map(|n| n.id.clone()).collect();
        assert_eq!(usage, vec![a.clone(), b]);
        assert_eq!(after.node(&a).unwrap().owner_account.as_deref(), Some("a"));

        // The reserved node is released as usual, the cooled slot is refilled as usual.
        assert!(after.release(&a, 12_000).is_ok());
        start_all(&mut after, &actions, 11_600);
        assert_eq!(
            started_ids(&after.tick(13_000)),
            vec!["node-11".to_string()]
        );
    }

    #[test]
    fn a_restored_pool_lists_the_usage_records_in_the_same_order() {
        let mut before = Pool::new(rules(2, 2));
        before.bootstrap(0);
        // node-2 comes up first, so it is reserved first.
        for id in ["node-2", "node-1"] {
            before.node_started(id, StartedNode::at(endpoint(1)), 0);
        }
        let first = pool_reserve(&mut before, "a", 10);
        let second = pool_reserve(&mut before, "a", 10);
        assert_eq!((first.as_str(), second.as_str()), ("node-2", "node-1"));
        let saved = before.snapshot();
        let mut after = Pool::new(rules(2, 2));
        after.restore(saved.nodes, saved.next_generation, 20);
        let order: Vec<&str> = after.usage().map(|n| n.id.as_str()).collect();
        assert_eq!(order, vec!["node-2", "node-1"]);
    }

    fn pool_reserve(pool: &mut Pool, account: &str, now: i64) -> String {
        pool.reserve(account, now).unwrap().node.id
    }
}
