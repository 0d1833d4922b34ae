//! The bookkeeping every policy shares: validating events, leases, waiting requests and their
//! deadlines, operations in flight, memory accounting on nodes, learned profiles.
//!
//! A policy owns a [`State`] and calls it; the state never decides where or when (that is the
//! policy's job), it only applies what was decided and keeps the tables consistent.
//!
//! Health (lost nodes, dead containers, expired leases, retired definitions) is in `health`
//! (`core/state/health.rs`): the same for every policy, so a policy only places the requests
//! it hands back.
//! Holds (a function whose idle containers no policy removes for idleness until a time) are
//! in [`hold`]: recorded here, consulted by each policy where it would remove one.
//!
//! This file holds the types, the constructor and the time and metrics methods; the rest of
//! `State`'s methods live by topic in `grants` (acquires, grants, waiting requests),
//! `returns`, `containers` (dead, removed, forgotten), `operations` (reserves and creates in
//! flight) and `nodes` (placement by free memory, releases).

mod containers;
mod grants;
mod health;
pub mod hold;
mod nodes;
mod operations;
mod recovery;
mod returns;

use std::collections::{BTreeMap, BTreeSet};

use super::{PolicyOptions, Snapshot};
use crate::model::{ContainerState, Millis, NodeState, OpId, Text};
use crate::store::{ContainerKey, FunctionKey, Map, NodeKey, Set, Store};

pub use health::Healed;

/// A reserve in flight.
#[derive(Clone, Debug)]
pub struct ReserveOp {
    /// When it was asked for.
    pub started_at: Millis,
    /// The memory the node is expected to offer, bytes.
    pub expected_bytes: u64,
    /// Memory the requests waiting for this node will need, bytes.
    pub planned_bytes: u64,
    /// Requests waiting for this node, in arrival order.
    pub waiters: Vec<Text>,
}

/// A container create in flight.
#[derive(Clone, Debug)]
pub struct CreateOp {
    /// When it was asked for.
    pub started_at: Millis,
    /// Where.
    pub node: NodeKey,
    /// Of which function.
    pub function: FunctionKey,
    /// The memory placed on the node for it, bytes.
    pub memory_bytes: u64,
    /// The request the container is meant for, if it still waits.
    pub for_request: Option<Text>,
}

/// An operation in flight.
#[derive(Clone, Debug)]
pub enum Op {
    /// `ReserveNode`.
    Reserve(ReserveOp),
    /// `CreateContainer`.
    Create(CreateOp),
}

/// A request waiting for a container.
#[derive(Clone, Debug)]
pub struct Waiter {
    /// Its function.
    pub function: FunctionKey,
    /// When it arrived.
    pub since: Millis,
    /// When it gives up.
    pub deadline: Millis,
    /// The operation it waits for, if any.
    pub bound: Option<OpId>,
    seq: u64,
}

/// What a return did, for the policy to react to.
#[derive(Clone, Copy, Debug)]
pub struct Returned {
    /// The container given back (it may be gone if it died and was removed).
    pub container: ContainerKey,
    /// Its function.
    pub function: Option<FunctionKey>,
    /// Whether the container died with this call.
    pub died: bool,
    /// The call was granted before a restart (an orphan: no lease of this life knew it).
    pub orphan: bool,
}

#[derive(Clone, Debug, Default)]
struct Counters {
    acquires: u64,
    cold_starts: u64,
    warm_hits: u64,
    rejects: u64,
    returns: u64,
    deaths: u64,
    nodes_lost: u64,
    leases_expired: u64,
}

/// The shared bookkeeping of a policy.
#[derive(Debug)]
pub struct State {
    /// The tables.
    pub store: Store,
    opts: PolicyOptions,
    next_op: u64,
    ops: BTreeMap<OpId, Op>,
    /// How many of `ops` are creates.
    creates_in_flight: usize,
    waiting: Map<Text, Waiter>,
    deadlines: BTreeMap<(Millis, u64), Text>,
    next_seq: u64,
    /// Per function (by key index), how many of its waits ended (see `State::waits_ended`).
    waits_ended: Vec<u64>,
    /// Containers whose removal completed; forgotten as soon as no request holds them.
    removal_done: Set<ContainerKey>,
    counters: Counters,
    /// The latest `now` the state was called with (for node-seconds).
    latest: Millis,
    /// Node-milliseconds of the nodes already released.
    released_node_ms: u64,
    /// Leases by expiry time.
    lease_expiry: BTreeSet<(Millis, Text)>,
    /// Nodes that failed their latest observations.
    suspects: Set<NodeKey>,
    /// Containers running orphan calls (see [`recovery`]), by when those expire.
    orphan_expiry: recovery::OrphanExpiry,
    /// Functions held warm (see [`hold`]), by name, with when each hold ends.
    holds: hold::Holds,
    /// Why each decision was made, noted only while someone listens (`core::reasons`).
    pub reasons: crate::core::reasons::Reasons,
}

impl State {
    /// An empty state.
    pub fn new(opts: PolicyOptions) -> State {
        State {
            store: Store::new(opts.remembered_returns),
            opts,
            next_op: 1,
            ops: BTreeMap::new(),
            creates_in_flight: 0,
            waiting: Map::default(),
            deadlines: BTreeMap::new(),
            next_seq: 0,
            waits_ended: Vec::new(),
            removal_done: Set::default(),
            counters: Counters::default(),
            latest: 0,
            released_node_ms: 0,
            lease_expiry: BTreeSet::new(),
            suspects: Set::default(),
            orphan_expiry: recovery::OrphanExpiry::new(),
            holds: hold::Holds::default(),
            reasons: Default::default(),
        }
    }

    /// The options the policy was built with.
    pub fn options(&self) -> &PolicyOptions {
        &self.opts
    }

    // ---- time and metrics ----

    /// Notes that time `now` was reached (the state sees `now` in grants, ticks, returns
    /// and reserves; policies may call this with any other event's time).
    pub fn observe(&mut self, now: Millis) {
        self.latest = self.latest.max(now);
    }

    /// The latest time the state saw.
    pub fn latest(&self) -> Millis {
        self.latest
    }

    /// Node-milliseconds so far: for every node, from its reserve to its release (or to the
    /// latest time seen, while held). The contest's "node duration".
    pub fn node_millis(&self) -> u64 {
        self.released_node_ms
            + self
                .store
                .nodes()
                .map(|(_, n)| self.latest.saturating_sub(n.reserved_at))
                .sum::<u64>()
    }

    /// Counts for metrics.
    pub fn snapshot(&self, policy: &str) -> Snapshot {
        let mut s = Snapshot {
            policy: policy.to_string(),
            waiting: self.waiting.len() as u64,
            leased: self.store.lease_count() as u64,
            functions: self.store.functions().count() as u64,
            acquires: self.counters.acquires,
            cold_starts: self.counters.cold_starts,
            warm_hits: self.counters.warm_hits,
            rejects: self.counters.rejects,
            returns: self.counters.returns,
            container_deaths: self.counters.deaths,
            nodes_suspect: self.suspects.len() as u64,
            nodes_lost: self.counters.nodes_lost,
            leases_expired: self.counters.leases_expired,
            node_millis: self.node_millis(),
            ..Snapshot::default()
        };
        for op in self.ops.values() {
            match op {
                Op::Reserve(_) => s.reserves_in_flight += 1,
                Op::Create(_) => s.containers_creating += 1,
            }
        }
        let count = |state| self.store.count_in_state(state) as u64;
        s.containers_creating += count(ContainerState::Creating);
        s.containers_ready = count(ContainerState::Ready);
        s.containers_removing = count(ContainerState::Removing);
        s.containers_dead = count(ContainerState::Dead);
        for (_, n) in self.store.nodes() {
            match n.state {
                NodeState::Active => s.nodes_active += 1,
                NodeState::Draining => s.nodes_draining += 1,
                NodeState::Releasing => s.nodes_releasing += 1,
            }
            s.node_capacity_bytes += n.capacity_bytes;
            s.node_used_bytes += n.used_bytes;
        }
        s
    }
}
