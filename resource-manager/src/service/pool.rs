//! The contest's node pool rules, in virtual time.
//!
//! - `ready_nodes` nodes are started at once ([`Pool::bootstrap`]).
//! - Each reserve takes the longest-ready node and owes the pool one refill, due
//!   `refill_delay_ms` later ([`Pool::reserve`]).
//! - A due refill starts a node as long as the live nodes (starting + ready + reserved, plus
//!   released nodes still inside their refill delay) stay within `max_nodes`; otherwise it
//!   waits until a slot frees ([`Pool::tick`]).
//! - A released node's slot is reusable `refill_delay_ms` after its release.
//!
//! Each method returns the [`Action`]s the caller must carry out; [`Pool::next_wake_ms`]
//! says when [`Pool::tick`] has something to do next.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use crate::model::{Node, NodeEndpoint, NodeState};
use crate::store::{NodeTable, StateCounts};

/// The pool's rules, from configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolRules {
    /// Live nodes at most (the contest: 20).
    pub max_nodes: usize,
    /// Nodes ready when the manager starts (the contest: 10).
    pub ready_nodes: usize,
    /// Delay of a refill after a reserve, and of a released slot's reuse.
    pub refill_delay_ms: i64,
    /// Memory each node offers (the contest: 3072 MiB).
    pub node_memory_bytes: u64,
    /// Node ids are `{prefix}-{generation}`.
    pub node_id_prefix: String,
}

impl Default for PoolRules {
    fn default() -> PoolRules {
        PoolRules {
            max_nodes: 20,
            ready_nodes: 10,
            refill_delay_ms: 10_000,
            node_memory_bytes: 3072 * 1024 * 1024,
            node_id_prefix: "node".to_string(),
        }
    }
}

/// Something the caller must do for the pool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Start this node now; report back with [`Pool::node_started`] or [`Pool::node_start_failed`].
    StartNode { node_id: String, memory_bytes: u64 },
    /// Stop this node now.
    StopNode { node_id: String },
}

/// A node just taken for an account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reservation {
    /// The node as reserved (state `Reserved`, owner and reserved time set).
    pub node: Node,
    /// When the refill owed for it falls due.
    pub refill_at_ms: i64,
}

/// Why the pool refused a call. The messages are what clients see.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    #[error("account ID cannot be empty")]
    EmptyAccount,
    #[error("node ID cannot be empty")]
    EmptyNodeId,
    #[error("no available node can be reserved")]
    Exhausted,
    #[error("node {0} not found")]
    NotFound(String),
    #[error("node {0} is not reserved")]
    NotReserved(String),
    #[error("the resource manager is shutting down")]
    Closed,
}

/// The node pool: the node table plus the refills owed and the slots still cooling down.
#[derive(Debug)]
pub struct Pool {
    rules: PoolRules,
    table: NodeTable,
    /// Due times of the refills owed (one per reserve, plus retries of failed starts).
    refills: BinaryHeap<Reverse<i64>>,
    /// Times at which released nodes' slots free up.
    cooling: BinaryHeap<Reverse<i64>>,
    last_generation: u64,
    closed: bool,
    /// Node-milliseconds of released nodes.
    released_node_ms: i64,
    /// Sum of `reserved_at_ms` over nodes still reserved (for O(1) node time).
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

    /// Nodes occupying a slot: starting, ready, reserved, and released ones still cooling down
    /// (as of the last [`Pool::tick`]).
    pub fn occupied_slots(&self) -> usize {
        self.table.counts().live() + self.cooling.len()
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

    /// A started node is up at `endpoint`: it becomes reservable. Returns a stop if the node
    /// is no longer wanted (unknown, not starting, or the pool is closed).
    pub fn node_started(
        &mut self,
        node_id: &str,
        endpoint: NodeEndpoint,
        now_ms: i64,
    ) -> Vec<Action> {
        let _ = now_ms;
        let starting = self
            .table
            .get(node_id)
            .is_some_and(|n| n.state == NodeState::Starting);
        if self.closed || !starting {
            if starting {
                self.table.remove(node_id);
            }
            return vec![Action::StopNode {
                node_id: node_id.to_string(),
            }];
        }
        self.table.update(node_id, |n| {
            n.state = NodeState::Ready;
            n.endpoint = Some(endpoint);
        });
        Vec::new()
    }

    /// A node failed to start: it is forgotten, and a retry is owed after the refill delay.
    pub fn node_start_failed(&mut self, node_id: &str, now_ms: i64) {
        let starting = self
            .table
            .get(node_id)
            .is_some_and(|n| n.state == NodeState::Starting);
        if starting {
            self.table.remove(node_id);
            if !self.closed {
                self.refills
                    .push(Reverse(now_ms + self.rules.refill_delay_ms));
            }
        }
    }

    /// Takes the longest-ready node for `account`, and owes the pool a refill for it.
    /// The caller then hands the node over and calls [`Pool::reserve_failed`] if that fails.
    pub fn reserve(&mut self, account: &str, now_ms: i64) -> Result<Reservation, PoolError> {
        if account.is_empty() {
            return Err(PoolError::EmptyAccount);
        }
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
            .ok_or_else(|| PoolError::NotFound(id.clone()))?;
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
            .filter(|n| n.state == NodeState::Reserved)
            .and_then(|n| n.reserved_at_ms);
        match reserved {
            Some(at) => {
                self.table.remove(node_id);
                self.open_reserved_at_sum -= at;
                vec![Action::StopNode {
                    node_id: node_id.to_string(),
                }]
            }
            None => Vec::new(),
        }
    }

    /// Releases a reserved node: it is stopped, its usage record closed, and its slot frees
    /// `refill_delay_ms` from now.
    pub fn release(&mut self, node_id: &str, now_ms: i64) -> Result<Vec<Action>, PoolError> {
        if node_id.is_empty() {
            return Err(PoolError::EmptyNodeId);
        }
        let node = self
            .table
            .get(node_id)
            .ok_or_else(|| PoolError::NotFound(node_id.to_string()))?;
        if node.state != NodeState::Reserved {
            return Err(PoolError::NotReserved(node_id.to_string()));
        }
        let reserved_at = node.reserved_at_ms.unwrap_or(now_ms);
        let released_at = now_ms.max(reserved_at);
        self.table.update(node_id, |n| {
            n.state = NodeState::Released;
            n.released_at_ms = Some(released_at);
        });
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

    /// Frees the slots whose delay is over and starts the refills that are due and fit.
    pub fn tick(&mut self, now_ms: i64) -> Vec<Action> {
        while self.cooling.peek().is_some_and(|Reverse(t)| *t <= now_ms) {
            self.cooling.pop();
        }
        let mut actions = Vec::new();
        while !self.closed
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
        if self.occupied_slots() < self.rules.max_nodes {
            Some(due)
        } else {
            // Full: the next chance is when a cooling slot frees (a release will also wake us).
            self.cooling.peek().map(|Reverse(t)| (*t).max(due))
        }
    }

    /// Stops the pool: no more starts or reserves; reserved nodes are released as of now,
    /// ready ones forgotten. Returns a stop for every ready and reserved node (starting ones are stopped when
    /// their start completes, see [`Pool::node_started`]).
    pub fn close(&mut self, now_ms: i64) -> Vec<Action> {
        self.closed = true;
        self.refills.clear();
        self.cooling.clear();
        let to_stop: Vec<(String, NodeState)> = self
            .table
            .live()
            .filter(|n| n.state != NodeState::Starting)
            .map(|n| (n.id.clone(), n.state))
            .collect();
        let mut actions = Vec::with_capacity(to_stop.len());
        for (id, state) in to_stop {
            if state == NodeState::Reserved {
                let _ = self.release(&id, now_ms);
            } else {
                // Never reserved: this life leaves no record.
                self.table.remove(&id);
            }
            actions.push(Action::StopNode { node_id: id });
        }
        actions
    }

    /// Every node ever reserved (released ones included), in reservation order.
    pub fn usage(&self) -> impl Iterator<Item = &Node> {
        self.table.reserved_history()
    }

    /// Node time so far: the sum over reserved nodes of reserve-to-release (or to now), in ms.
    pub fn node_ms(&self, now_ms: i64) -> i64 {
        let open = self.table.counts().reserved as i64 * now_ms - self.open_reserved_at_sum;
        self.released_node_ms + open.max(0)
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
                Action::StopNode { .. } => None,
            })
            .collect()
    }

    /// Reports every start in `actions` as successful.
    fn start_all(pool: &mut Pool, actions: &[Action], now: i64) {
        for (i, id) in started_ids(actions).iter().enumerate() {
            assert!(
                pool.node_started(id, endpoint(1000 + i as u16), now)
                    .is_empty()
            );
        }
    }

    fn ready_pool(ready: usize, max: usize) -> Pool {
        let mut pool = Pool::new(rules(ready, max));
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
        assert_eq!(err, PoolError::EmptyAccount);
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
            assert!(pool.counts().live() <= 20, "{:?}", pool.counts());
        }
        assert_eq!(pool.counts().live(), 20);
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
        assert_eq!(pool.counts().live(), 2);
        assert_eq!(
            pool.next_wake_ms(),
            None,
            "the other refill waits for a release"
        );
    }

    #[test]
    fn release_checks_the_node() {
        let mut pool = ready_pool(2, 2);
        assert_eq!(pool.release("", 0), Err(PoolError::EmptyNodeId));
        let err = pool.release("node-99", 0).unwrap_err();
        assert_eq!(err.to_string(), "node node-99 not found");
        let err = pool.release("node-2", 0).unwrap_err();
        assert_eq!(
            err.to_string(),
            "node node-2 is not reserved",
            "ready, not reserved"
        );

        let id = pool.reserve("a", 0).unwrap().node.id;
        pool.release(&id, 1).unwrap();
        assert_eq!(
            pool.release(&id, 2),
            Err(PoolError::NotReserved(id.clone())),
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
        pool.node_start_failed(&id, 500);
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
            pool.node_started(&late_id, endpoint(9), 20_002),
            vec![Action::StopNode { node_id: late_id }]
        );
        assert!(pool.tick(1_000_000).is_empty());
        assert_eq!(pool.counts().live(), 0);
    }
}
