//! The bookkeeping every policy shares: validating events, leases, waiting requests and their
//! deadlines, operations in flight, memory accounting on nodes, learned profiles.
//!
//! A policy owns a [`State`] and calls it; the state never decides where or when (that is the
//! policy's job), it only applies what was decided and keeps the tables consistent.
//!
//! Health (lost nodes, dead containers, expired leases, retired definitions) is in
//! [`health`]: the same for every policy, so a policy only places the requests it hands back.
//! Holds (a function whose idle containers no policy removes for idleness until a time) are
//! in [`hold`]: recorded here, consulted by each policy where it would remove one.

mod health;
pub mod hold;
mod recovery;

use std::collections::{BTreeMap, BTreeSet};

use super::{
    Acquire, AcquireError, AcquireErrorCode, CoreError, Decision, Grant, PolicyOptions, Return,
    Snapshot,
};
use crate::model::{
    Container, ContainerState, Lease, Millis, Node, NodeInfo, NodeState, OpId, Text,
};
use crate::store::{ContainerKey, FunctionKey, LeaseRow, Map, NodeKey, Set, Store};

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
    waiting: Map<Text, Waiter>,
    deadlines: BTreeMap<(Millis, u64), Text>,
    next_seq: u64,
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
}

impl State {
    /// An empty state.
    pub fn new(opts: PolicyOptions) -> State {
        State {
            store: Store::new(opts.remembered_returns),
            opts,
            next_op: 1,
            ops: BTreeMap::new(),
            waiting: Map::default(),
            deadlines: BTreeMap::new(),
            next_seq: 0,
            removal_done: Set::default(),
            counters: Counters::default(),
            latest: 0,
            released_node_ms: 0,
            lease_expiry: BTreeSet::new(),
            suspects: Set::default(),
            orphan_expiry: recovery::OrphanExpiry::new(),
            holds: hold::Holds::default(),
        }
    }

    /// The options the policy was built with.
    pub fn options(&self) -> &PolicyOptions {
        &self.opts
    }

    // ---- acquires and grants ----

    /// Validates an acquire and registers its function. Fails (changing nothing) for a
    /// request id that is waiting or leased, or an unusable function. A changed definition
    /// of a known function retires the containers of the old one (see
    /// [`State::retire_definition`]).
    pub fn accept_acquire(
        &mut self,
        acquire: &Acquire,
        out: &mut Vec<Decision>,
    ) -> Result<FunctionKey, CoreError> {
        let spec = &acquire.function;
        if spec.memory_bytes == 0 {
            return Err(CoreError::InvalidFunction {
                name: spec.name.clone(),
                reason: "memory must be more than 0 bytes".into(),
            });
        }
        if spec.name.is_empty() {
            return Err(CoreError::InvalidFunction {
                name: spec.name.clone(),
                reason: "the name is empty".into(),
            });
        }
        if self.store.lease(&acquire.request_id).is_some()
            || self.waiting.contains_key(&acquire.request_id)
        {
            return Err(CoreError::AlreadyExists {
                request_id: acquire.request_id.clone(),
            });
        }
        self.counters.acquires += 1;
        let changed = self
            .store
            .function_by_name(&spec.name)
            .and_then(|k| self.store.function(k))
            .is_some_and(|f| f.spec != *spec);
        let key = self.store.upsert_function(spec);
        if changed {
            self.retire_definition(key, out);
        }
        Ok(key)
    }

    /// Grants `container` to `request_id` (taking one of its slots), ending the request's wait
    /// if it waited. Returns false (and grants nothing) if the container has no free slot.
    pub fn grant(
        &mut self,
        now: Millis,
        request_id: Text,
        container: ContainerKey,
        cold: bool,
        out: &mut Vec<Decision>,
    ) -> bool {
        self.observe(now);
        if !self.store.take_slot(container, now) {
            return false;
        }
        let Some(row) = self.store.container(container) else {
            return false;
        };
        let Some(node) = self.store.node(row.node) else {
            // A container without its node is impossible by construction; undo and refuse.
            self.store.release_slot(container, now);
            return false;
        };
        let timeout_ms = self
            .store
            .function(row.function)
            .map_or(0, |f| f.spec.timeout_ms);
        let expires_at = now
            .saturating_add(timeout_ms)
            .saturating_add(self.opts.lease_grace_ms);
        let grant = Grant {
            request_id: request_id.clone(),
            container_id: row.container.id.clone(),
            node_id: node.id.clone(),
            node_address: node.address.clone(),
            node_port: node.port,
            cold,
        };
        self.end_wait(&request_id);
        let lease = LeaseRow {
            lease: Lease {
                request_id,
                container_id: grant.container_id.clone(),
                started_at: now,
                cold,
                expires_at,
            },
            container,
        };
        if self.store.insert_lease(lease).is_err() {
            // accept_acquire refuses ids that are leased, so this cannot happen; stay safe.
            self.store.release_slot(container, now);
            return false;
        }
        self.lease_expiry
            .insert((expires_at, grant.request_id.clone()));
        if cold {
            self.counters.cold_starts += 1;
        } else {
            self.counters.warm_hits += 1;
        }
        out.push(Decision::Grant(grant));
        true
    }

    /// Grants the most recently freed container of `function`, if one has a free slot.
    pub fn grant_warm(
        &mut self,
        now: Millis,
        request_id: &Text,
        function: FunctionKey,
        out: &mut Vec<Decision>,
    ) -> bool {
        match self.store.free_container(function) {
            Some(c) => self.grant(now, request_id.clone(), c, false, out),
            None => false,
        }
    }

    /// Makes a request wait (until `deadline`) for a container of `function`.
    pub fn wait(&mut self, now: Millis, request_id: Text, function: FunctionKey, deadline: Millis) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.deadlines.insert((deadline, seq), request_id.clone());
        self.waiting.insert(
            request_id,
            Waiter {
                function,
                since: now,
                deadline,
                bound: None,
                seq,
            },
        );
    }

    /// The waiting request, if it waits.
    pub fn waiter(&self, request_id: &str) -> Option<&Waiter> {
        self.waiting.get(request_id)
    }

    /// Requests waiting.
    pub fn waiting_count(&self) -> usize {
        self.waiting.len()
    }

    /// Answers a request with an error, ending its wait.
    pub fn reject(&mut self, request_id: Text, error: AcquireError, out: &mut Vec<Decision>) {
        self.end_wait(&request_id);
        self.counters.rejects += 1;
        out.push(Decision::Reject { request_id, error });
    }

    /// Removes a request from the waiting tables and from the operation it was bound to.
    fn end_wait(&mut self, request_id: &str) -> Option<Waiter> {
        let w = self.waiting.remove(request_id)?;
        self.deadlines.remove(&(w.deadline, w.seq));
        match w.bound.and_then(|op| self.ops.get_mut(&op)) {
            Some(Op::Create(c)) if c.for_request.as_deref() == Some(request_id) => {
                c.for_request = None;
            }
            Some(Op::Create(_)) => {}
            Some(Op::Reserve(r)) => {
                if let Some(pos) = r.waiters.iter().position(|x| &**x == request_id) {
                    r.waiters.remove(pos);
                    let mem = self
                        .store
                        .function(w.function)
                        .map_or(0, |f| f.spec.memory_bytes);
                    r.planned_bytes = r.planned_bytes.saturating_sub(mem);
                }
            }
            None => {}
        }
        Some(w)
    }

    /// Rejects every waiting request whose deadline is at or before `now`.
    pub fn expire(&mut self, now: Millis, out: &mut Vec<Decision>) {
        self.observe(now);
        while let Some((&(deadline, _), _)) = self.deadlines.first_key_value() {
            if deadline > now {
                break;
            }
            let Some((_, request_id)) = self.deadlines.pop_first() else {
                break;
            };
            let Some(w) = self.waiting.get(&request_id) else {
                continue;
            };
            let name = self
                .store
                .function(w.function)
                .map(|f| f.spec.name.clone())
                .unwrap_or_else(|| "?".into());
            let waited = now.saturating_sub(w.since);
            let error = AcquireError {
                code: AcquireErrorCode::DeadlineExceeded,
                message: format!(
                    "no container of function {name} became available within {waited} ms (the request's deadline)"
                ),
            };
            self.reject(request_id, error, out);
        }
    }

    /// The earliest deadline of a waiting request (and the earliest time a lease expires or a suspect node is due to be lost: the state
    /// needs a tick then too).
    pub fn next_deadline(&self) -> Option<Millis> {
        let waiting = self.deadlines.first_key_value().map(|(&(d, _), _)| d);
        [waiting, self.next_health_check()]
            .into_iter()
            .flatten()
            .min()
    }

    /// Forgets a request whose caller went away: stops its wait, or gives back the container
    /// it was granted but never received (no call is counted). Unknown ids are ignored.
    pub fn cancel(
        &mut self,
        now: Millis,
        request_id: &str,
        out: &mut Vec<Decision>,
    ) -> Option<ContainerKey> {
        if self.end_wait(request_id).is_some() {
            return None;
        }
        let row = self.drop_lease(request_id)?;
        self.store.release_slot(row.container, now);
        self.after_release(row.container, out);
        Some(row.container)
    }

    /// Removes a request's lease from the tables and the expiry index.
    fn drop_lease(&mut self, request_id: &str) -> Option<LeaseRow> {
        let row = self.store.remove_lease(request_id)?;
        self.lease_expiry
            .remove(&(row.lease.expires_at, row.lease.request_id.clone()));
        Some(row)
    }

    /// After a slot was given back: a retired container with no call left is removed, a
    /// removed one with no holder left is forgotten.
    fn after_release(&mut self, key: ContainerKey, out: &mut Vec<Decision>) {
        let retire = self
            .store
            .container(key)
            .is_some_and(|r| r.container.stale && r.container.in_flight == 0);
        if retire {
            self.remove_container(key, out);
        }
        self.forget_if_gone(key);
    }

    // ---- returns ----

    /// Validates and applies a return: the lease ends, the profile learns, and a container
    /// reported dead is marked dead (its memory freed) and its removal asked for.
    pub fn accept_return(
        &mut self,
        now: Millis,
        ret: Return,
        out: &mut Vec<Decision>,
    ) -> Result<Returned, CoreError> {
        let Some(lease) = self.store.lease(&ret.request_id) else {
            if self.store.lease_expired(&ret.request_id) {
                return Err(CoreError::LeaseExpired {
                    request_id: ret.request_id,
                });
            }
            if self.store.returned_container(&ret.request_id).is_some() {
                return Err(CoreError::AlreadyReturned {
                    request_id: ret.request_id,
                });
            }
            if let Some(key) = self.has_orphans(&ret.container_id) {
                // A call granted before this scheduler restarted.
                self.observe(now);
                self.store.remember_return(ret.request_id, ret.container_id);
                return Ok(self.accept_orphan_return(
                    now,
                    key,
                    ret.error.as_ref(),
                    ret.duration_ns,
                    ret.max_memory_bytes,
                    out,
                ));
            }
            if self.store.container_by_id(&ret.container_id).is_none() {
                return Err(CoreError::UnknownContainer {
                    container_id: ret.container_id,
                });
            }
            return Err(CoreError::UnknownRequest {
                request_id: ret.request_id,
            });
        };
        if lease.lease.container_id != ret.container_id {
            return Err(CoreError::WrongContainer {
                request_id: ret.request_id,
                held: lease.lease.container_id.clone(),
                given: ret.container_id,
            });
        }
        let Some(lease) = self.drop_lease(&ret.request_id) else {
            return Err(CoreError::Inconsistent("lease vanished".into()));
        };
        self.counters.returns += 1;
        self.observe(now);
        let key = lease.container;
        self.store
            .remember_return(lease.lease.request_id, lease.lease.container_id);
        self.store.release_slot(key, now);
        let function = self.store.container(key).map(|r| r.function);
        if let Some(f) = function.and_then(|f| self.store.function_mut(f)) {
            f.profile
                .record_call(ret.duration_ns, ret.max_memory_bytes, ret.error.is_some());
        }
        let mut died = false;
        if ret.error.as_ref().is_some_and(|e| e.kills_container()) {
            died = self.mark_dead(key, out);
        }
        if let Some(node) = self.store.container(key).map(|r| r.node) {
            match ret.error.as_ref().filter(|e| e.node_unavailable()) {
                Some(e) => {
                    let reason = format!("a call could not reach it: {}", e.message);
                    self.node_failed(now, node, reason, out);
                }
                None => self.node_answered(now, node, out),
            }
        }
        self.after_release(key, out);
        Ok(Returned {
            container: key,
            function,
            died,
            orphan: false,
        })
    }

    // ---- containers ----

    /// Marks a container dead: never granted again, its memory freed on its node, its removal
    /// asked for. Returns false if it was not live.
    pub fn mark_dead(&mut self, key: ContainerKey, out: &mut Vec<Decision>) -> bool {
        let Some(row) = self.store.container(key) else {
            return false;
        };
        let was = row.container.state;
        if !matches!(was, ContainerState::Ready | ContainerState::Removing) {
            return false;
        }
        let (node_key, function, memory, id) = (
            row.node,
            row.function,
            row.container.memory_bytes,
            row.container.id.clone(),
        );
        self.store
            .update_container(key, |c| c.state = ContainerState::Dead);
        self.counters.deaths += 1;
        if let Some(f) = self.store.function_mut(function) {
            f.profile.deaths += 1;
        }
        let addr = self.store.node_mut(node_key).map(|n| {
            n.used_bytes = n.used_bytes.saturating_sub(memory);
            n.containers = n.containers.saturating_sub(1);
            n.addr()
        });
        if was == ContainerState::Ready
            && let Some(node) = addr
        {
            out.push(Decision::RemoveContainer {
                node,
                container_id: id,
            });
        }
        true
    }

    /// Asks for a container's removal (it is never granted again; its memory stays placed
    /// until the removal completes). Returns false if it was not ready.
    pub fn remove_container(&mut self, key: ContainerKey, out: &mut Vec<Decision>) -> bool {
        let Some(row) = self.store.container(key) else {
            return false;
        };
        if row.container.state != ContainerState::Ready {
            return false;
        }
        let id = row.container.id.clone();
        let Some(node) = self.store.node(row.node).map(Node::addr) else {
            return false;
        };
        self.store
            .update_container(key, |c| c.state = ContainerState::Removing);
        out.push(Decision::RemoveContainer {
            node,
            container_id: id,
        });
        true
    }

    /// Applies a completed removal: frees the memory if still placed, forgets the container
    /// once no request holds it. Unknown ids are ignored (already forgotten).
    pub fn container_removed(&mut self, container_id: &str) {
        let Some(key) = self.store.container_by_id(container_id) else {
            return;
        };
        let Some(row) = self.store.container(key) else {
            return;
        };
        if crate::store::occupies_memory(row.container.state) {
            let (node_key, memory) = (row.node, row.container.memory_bytes);
            if let Some(n) = self.store.node_mut(node_key) {
                n.used_bytes = n.used_bytes.saturating_sub(memory);
                n.containers = n.containers.saturating_sub(1);
            }
            self.store
                .update_container(key, |c| c.state = ContainerState::Dead);
        }
        self.removal_done.insert(key);
        self.forget_if_gone(key);
    }

    fn forget_if_gone(&mut self, key: ContainerKey) {
        if !self.removal_done.contains(&key) {
            return;
        }
        let idle = self
            .store
            .container(key)
            .is_none_or(|r| r.container.in_flight == 0);
        if idle {
            self.removal_done.remove(&key);
            self.store.remove_container(key);
        }
    }

    // ---- operations ----

    fn new_op(&mut self) -> OpId {
        let op = OpId(self.next_op);
        self.next_op += 1;
        op
    }

    /// The operation `op`, if in flight.
    pub fn op(&self, op: OpId) -> Option<&Op> {
        self.ops.get(&op)
    }

    /// Container creates in flight, oldest first.
    pub fn creates(&self) -> impl Iterator<Item = (OpId, &CreateOp)> {
        self.ops.iter().filter_map(|(id, op)| match op {
            Op::Create(c) => Some((*id, c)),
            Op::Reserve(_) => None,
        })
    }

    /// Reserves in flight, oldest first.
    pub fn reserves(&self) -> impl Iterator<Item = (OpId, &ReserveOp)> {
        self.ops.iter().filter_map(|(id, op)| match op {
            Op::Reserve(r) => Some((*id, r)),
            Op::Create(_) => None,
        })
    }

    /// The memory a new node is expected to offer: the largest node seen, else the option.
    pub fn expected_node_bytes(&self) -> u64 {
        self.store
            .nodes()
            .map(|(_, n)| n.capacity_bytes)
            .max()
            .unwrap_or(self.opts.expected_node_bytes)
    }

    /// Asks for one more node.
    pub fn start_reserve(&mut self, now: Millis, out: &mut Vec<Decision>) -> OpId {
        let op = self.new_op();
        let expected_bytes = self.expected_node_bytes();
        self.ops.insert(
            op,
            Op::Reserve(ReserveOp {
                started_at: now,
                expected_bytes,
                planned_bytes: 0,
                waiters: Vec::new(),
            }),
        );
        out.push(Decision::ReserveNode { op });
        op
    }

    /// Makes a waiting request wait for reserve `op` (planning its function's memory there).
    pub fn bind_to_reserve(&mut self, request_id: &Text, op: OpId) -> bool {
        let Some(w) = self.waiting.get_mut(request_id) else {
            return false;
        };
        let Some(Op::Reserve(r)) = self.ops.get_mut(&op) else {
            return false;
        };
        let mem = self
            .store
            .function(w.function)
            .map_or(0, |f| f.spec.memory_bytes);
        w.bound = Some(op);
        r.planned_bytes += mem;
        r.waiters.push(request_id.clone());
        true
    }

    /// Applies a reserved node. Returns its key and the requests that waited for it (still
    /// waiting, in arrival order, now unbound) for the policy to place.
    pub fn node_reserved(
        &mut self,
        now: Millis,
        op: OpId,
        info: NodeInfo,
    ) -> Result<(NodeKey, Vec<Text>), CoreError> {
        if !matches!(self.ops.get(&op), Some(Op::Reserve(_))) {
            return Err(CoreError::UnknownOperation {
                op,
                event: "NodeReserved",
            });
        }
        let Some(Op::Reserve(r)) = self.ops.remove(&op) else {
            return Err(CoreError::Inconsistent("reserve op vanished".into()));
        };
        if let Some(held) = self.store.node_by_id(&info.id) {
            // Adopted while the reserve was in flight (see `recovery`): the same node.
            self.observe(now);
            return Ok((held, self.unbind(r.waiters)));
        }
        self.observe(now);
        let key = self
            .store
            .insert_node(Node::new(info, now))
            .map_err(|d| CoreError::Inconsistent(format!("duplicate node {}", d.0)))?;
        Ok((key, self.unbind(r.waiters)))
    }

    /// Applies a failed reserve. Returns the requests that waited for it (still waiting,
    /// now unbound).
    pub fn reserve_failed(&mut self, op: OpId) -> Result<Vec<Text>, CoreError> {
        match self.ops.remove(&op) {
            Some(Op::Reserve(r)) => Ok(self.unbind(r.waiters)),
            Some(other) => {
                self.ops.insert(op, other);
                Err(CoreError::UnknownOperation {
                    op,
                    event: "NodeReserveFailed",
                })
            }
            None => Err(CoreError::UnknownOperation {
                op,
                event: "NodeReserveFailed",
            }),
        }
    }

    fn unbind(&mut self, waiters: Vec<Text>) -> Vec<Text> {
        waiters
            .into_iter()
            .filter(|id| match self.waiting.get_mut(id) {
                Some(w) => {
                    w.bound = None;
                    true
                }
                None => false,
            })
            .collect()
    }

    /// Places a container of `function` on `node` (its memory counts from now on) and asks
    /// for its creation, meant for `for_request` if given (which then waits for it).
    pub fn start_create(
        &mut self,
        now: Millis,
        node: NodeKey,
        function: FunctionKey,
        for_request: Option<Text>,
        out: &mut Vec<Decision>,
    ) -> Option<OpId> {
        let spec = self.store.function(function)?.spec.clone();
        let addr = {
            let n = self.store.node_mut(node)?;
            n.used_bytes += spec.memory_bytes;
            n.containers += 1;
            n.addr()
        };
        if let Some(f) = self.store.function_mut(function) {
            f.creating += 1;
        }
        let op = self.new_op();
        let for_request = for_request.filter(|r| self.waiting.contains_key(r));
        if let Some(w) = for_request.as_ref().and_then(|r| self.waiting.get_mut(r)) {
            w.bound = Some(op);
        }
        self.ops.insert(
            op,
            Op::Create(CreateOp {
                started_at: now,
                node,
                function,
                memory_bytes: spec.memory_bytes,
                for_request,
            }),
        );
        out.push(Decision::CreateContainer {
            op,
            node: addr,
            function: spec,
        });
        Some(op)
    }

    /// Applies a created container (ready, with `max_concurrency` slots). Returns its key and
    /// the request it was meant for if that request still waits (now unbound).
    pub fn container_created(
        &mut self,
        now: Millis,
        op: OpId,
        container_id: Text,
        max_concurrency: u32,
    ) -> Result<(ContainerKey, Option<Text>), CoreError> {
        let Some(Op::Create(c)) = self.ops.get(&op) else {
            return Err(CoreError::UnknownOperation {
                op,
                event: "ContainerCreated",
            });
        };
        if self.store.container_by_id(&container_id).is_some() {
            return Err(CoreError::Inconsistent(format!(
                "container {container_id} was created twice"
            )));
        }
        let Some(node) = self.store.node(c.node) else {
            return Err(CoreError::Inconsistent(format!(
                "container {container_id} was created on a node the scheduler no longer holds"
            )));
        };
        let Some(function) = self.store.function(c.function) else {
            return Err(CoreError::Inconsistent("function vanished".into()));
        };
        let container = Container {
            id: container_id,
            node_id: node.id.clone(),
            function: function.spec.name.clone(),
            memory_bytes: c.memory_bytes,
            state: ContainerState::Ready,
            in_flight: 0,
            max_concurrency: max_concurrency.max(1),
            created_at: now,
            last_used_at: now,
            served: 0,
            usage: None,
            stale: false,
            missing_samples: 0,
            parked: node.suspect_since.is_some(),
            orphans: 0,
        };
        let (node_key, function_key) = (c.node, c.function);
        let key = self
            .store
            .insert_container(container, node_key, function_key)
            .map_err(|d| CoreError::Inconsistent(format!("duplicate container {}", d.0)))?;
        let Some(Op::Create(c)) = self.ops.remove(&op) else {
            return Err(CoreError::Inconsistent("create op vanished".into()));
        };
        if let Some(f) = self.store.function_mut(function_key) {
            f.creating = f.creating.saturating_sub(1);
        }
        let request = c.for_request.filter(|r| match self.waiting.get_mut(r) {
            Some(w) => {
                w.bound = None;
                true
            }
            None => false,
        });
        Ok((key, request))
    }

    /// The error for requests that waited on a failed create (`UNAVAILABLE`, or
    /// `FAILED_PRECONDITION` when the node `refused` it; naming the function and the node).
    pub fn create_failed_error(
        &self,
        create: &CreateOp,
        message: &str,
        refused: bool,
    ) -> AcquireError {
        let function = self
            .store
            .function(create.function)
            .map(|f| f.spec.name.clone())
            .unwrap_or_else(|| "?".into());
        let node = self
            .store
            .node(create.node)
            .map(|n| n.id.clone())
            .unwrap_or_else(|| "?".into());
        AcquireError {
            code: if refused {
                AcquireErrorCode::FailedPrecondition
            } else {
                AcquireErrorCode::Unavailable
            },
            message: format!(
                "cannot create a container of function {function} on node {node}: {message}"
            ),
        }
    }

    /// Applies a failed create: the memory placed for it is freed. Returns the op and the
    /// request it was meant for if that request still waits (now unbound).
    pub fn create_failed(&mut self, op: OpId) -> Result<(CreateOp, Option<Text>), CoreError> {
        let c = match self.ops.remove(&op) {
            Some(Op::Create(c)) => c,
            Some(other) => {
                self.ops.insert(op, other);
                return Err(CoreError::UnknownOperation {
                    op,
                    event: "ContainerCreateFailed",
                });
            }
            None => {
                return Err(CoreError::UnknownOperation {
                    op,
                    event: "ContainerCreateFailed",
                });
            }
        };
        if let Some(n) = self.store.node_mut(c.node) {
            n.used_bytes = n.used_bytes.saturating_sub(c.memory_bytes);
            n.containers = n.containers.saturating_sub(1);
        }
        if let Some(f) = self.store.function_mut(c.function) {
            f.creating = f.creating.saturating_sub(1);
        }
        let request = c
            .for_request
            .clone()
            .filter(|r| match self.waiting.get_mut(r) {
                Some(w) => {
                    w.bound = None;
                    true
                }
                None => false,
            });
        Ok((c, request))
    }

    // ---- nodes ----

    /// The first node (in reserve order) that is active, not suspect (see [`health`]) and
    /// has `memory_bytes` free.
    pub fn first_fit(&self, memory_bytes: u64) -> Option<NodeKey> {
        self.store
            .nodes()
            .find(|(_, n)| {
                n.state == NodeState::Active
                    && n.suspect_since.is_none()
                    && n.free_bytes() >= memory_bytes
            })
            .map(|(k, _)| k)
    }

    /// Asks for a node's release (no new containers go there).
    pub fn release_node(&mut self, key: NodeKey, out: &mut Vec<Decision>) -> bool {
        let Some(n) = self.store.node_mut(key) else {
            return false;
        };
        if n.state == NodeState::Releasing {
            return false;
        }
        n.state = NodeState::Releasing;
        out.push(Decision::ReleaseNode {
            node_id: n.id.clone(),
        });
        true
    }

    /// Applies a released node: it and its containers are forgotten.
    pub fn node_released(&mut self, node_id: &str) {
        let Some(key) = self.store.node_by_id(node_id) else {
            return;
        };
        if let Some(n) = self.store.node(key) {
            self.released_node_ms += self.latest.saturating_sub(n.reserved_at);
        }
        self.suspects.remove(&key);
        let gone: Vec<ContainerKey> = self.store.containers_on(key).collect();
        for c in gone {
            let in_flight = self
                .store
                .update_container(c, |c| {
                    c.state = ContainerState::Dead;
                    c.in_flight
                })
                .unwrap_or(0);
            if in_flight == 0 {
                self.store.remove_container(c);
            } else {
                self.removal_done.insert(c);
            }
        }
        self.store.remove_node(key);
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
        for (_, row) in self.store.containers() {
            match row.container.state {
                ContainerState::Creating => s.containers_creating += 1,
                ContainerState::Ready => s.containers_ready += 1,
                ContainerState::Removing => s.containers_removing += 1,
                ContainerState::Dead => s.containers_dead += 1,
            }
        }
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
