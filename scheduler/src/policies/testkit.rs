//! The one virtual-time harness for policy tests. Two ways to drive it:
//!
//! - played out: [`Sim::send`] answers the policy's reserves, creates, removals and releases
//!   like a well-behaved platform would (at once, or held back on request), and
//!   [`Sim::advance`] ticks at the policy's wake-ups; grants and rejects are collected;
//! - step by step: [`Sim::step`] returns the decisions of one event and [`Sim::answer`]
//!   answers only the reserves and creates among them, so a test asserts on each decision
//!   (the `baseline`, `keepalive` and `no_reuse` tests).

use crate::core::{Acquire, CoreError, Decision, Event, Grant, HealthNote, Policy, Return};
use crate::model::{
    ContainerUsage, FunctionError, FunctionSpec, MIB, Millis, NodeInfo, NodeUsage, OpId,
    StatsSample,
};

/// Memory of a contest node.
pub const NODE: u64 = crate::model::CONTEST_NODE_BYTES;

/// A function of `memory_mib`.
pub fn spec(name: &str, memory_mib: u64) -> FunctionSpec {
    FunctionSpec {
        name: name.into(),
        memory_bytes: memory_mib * MIB,
        timeout_ms: 60_000,
        handler: "index.handler".into(),
    }
}

/// A policy in virtual time with a scripted platform.
pub struct Sim<P: Policy> {
    pub p: P,
    pub now: Millis,
    /// Reserves fail with `RESOURCE_EXHAUSTED` while set.
    pub exhausted: bool,
    /// Creates are held back (answered by [`Sim::finish_creates`]) while set.
    pub hold_creates: bool,
    pub held: Vec<OpId>,
    pub grants: Vec<Grant>,
    pub rejects: Vec<Decision>,
    pub health: Vec<HealthNote>,
    pub reserves: u32,
    pub failed_reserves: u32,
    pub creates: u32,
    pub removed: Vec<String>,
    pub released: Vec<String>,
    next_node: u32,
}

impl<P: Policy> Sim<P> {
    pub fn new(p: P) -> Sim<P> {
        Sim {
            p,
            now: 0,
            exhausted: false,
            hold_creates: false,
            held: Vec::new(),
            grants: Vec::new(),
            rejects: Vec::new(),
            health: Vec::new(),
            reserves: 0,
            failed_reserves: 0,
            creates: 0,
            removed: Vec::new(),
            released: Vec::new(),
            next_node: 0,
        }
    }

    /// Sends one event and returns its decisions, unanswered.
    pub fn step(&mut self, e: Event) -> Vec<Decision> {
        let mut out = Vec::new();
        self.p
            .handle(self.now, e, &mut out)
            .expect("event accepted");
        out
    }

    /// Sends one event the policy must refuse; returns why (a refused event decides nothing).
    pub fn step_err(&mut self, e: Event) -> CoreError {
        let mut out = Vec::new();
        let err = self.p.handle(self.now, e, &mut out).unwrap_err();
        assert!(out.is_empty(), "a refused event decides nothing: {out:?}");
        err
    }

    /// Moves time to `now` and sends one tick; returns its decisions, unanswered.
    pub fn tick_at(&mut self, now: Millis) -> Vec<Decision> {
        self.now = now;
        self.step(Event::Tick)
    }

    /// Answers every reserve and create in `out` successfully (repeatedly, nodes `n1`, `n2`,
    /// ..., containers `c1`, `c2`, ...) and returns the other decisions.
    pub fn answer(&mut self, mut out: Vec<Decision>) -> Vec<Decision> {
        let mut done = Vec::new();
        while !out.is_empty() {
            let mut next = Vec::new();
            for d in out {
                let e = match d {
                    Decision::ReserveNode { op } => self.reserved(op),
                    Decision::CreateContainer { op, .. } => self.created(op),
                    other => {
                        done.push(other);
                        continue;
                    }
                };
                next.extend(self.step(e));
            }
            out = next;
        }
        done
    }

    /// Sends one event and plays out what follows.
    pub fn send(&mut self, e: Event) {
        let mut out = Vec::new();
        self.p
            .handle(self.now, e, &mut out)
            .expect("event accepted");
        self.settle(out);
    }

    fn settle(&mut self, mut out: Vec<Decision>) {
        while !out.is_empty() {
            let mut next = Vec::new();
            for d in out {
                let e = match d {
                    Decision::Grant(g) => {
                        self.grants.push(g);
                        continue;
                    }
                    d @ Decision::Reject { .. } => {
                        self.rejects.push(d);
                        continue;
                    }
                    Decision::Health(note) => {
                        self.health.push(note);
                        continue;
                    }
                    Decision::ReserveNode { op } if self.exhausted => {
                        self.failed_reserves += 1;
                        Event::NodeReserveFailed {
                            op,
                            exhausted: true,
                            message: "no available node can be reserved".into(),
                        }
                    }
                    Decision::ReserveNode { op } => self.reserved(op),
                    Decision::CreateContainer { op, .. } if self.hold_creates => {
                        self.held.push(op);
                        continue;
                    }
                    Decision::CreateContainer { op, .. } => self.created(op),
                    Decision::RemoveContainer { container_id, .. } => {
                        self.removed.push(container_id.to_string());
                        Event::ContainerRemoved { container_id }
                    }
                    Decision::ReleaseNode { node_id } => {
                        self.released.push(node_id.to_string());
                        Event::NodeReleased { node_id }
                    }
                };
                self.p
                    .handle(self.now, e, &mut next)
                    .expect("result accepted");
            }
            out = next;
        }
    }

    fn reserved(&mut self, op: OpId) -> Event {
        self.reserves += 1;
        self.next_node += 1;
        Event::NodeReserved {
            op,
            node: NodeInfo {
                id: format!("n{}", self.next_node).into(),
                address: "10.0.0.1".into(),
                port: 5000,
                capacity_bytes: NODE,
            },
        }
    }

    fn created(&mut self, op: OpId) -> Event {
        self.creates += 1;
        Event::ContainerCreated {
            op,
            container_id: format!("c{}", self.creates).into(),
        }
    }

    /// Completes the held creates (those the policy still waits for: a create on a node
    /// declared lost meanwhile is forgotten).
    pub fn finish_creates(&mut self) {
        let held = std::mem::take(&mut self.held);
        for op in held {
            if self.p.state().op(op).is_none() {
                continue;
            }
            let e = self.created(op);
            self.send(e);
        }
    }

    /// A failed health observation of `node`.
    pub fn unreachable(&mut self, node: &str) {
        self.send(Event::NodeUnreachable {
            node_id: node.into(),
            message: "connection refused".into(),
        });
    }

    /// A full `GetStats` sample of `node`, taken now, listing its live containers but
    /// `gone`.
    pub fn node_stats(&mut self, node: &str, gone: &[&str]) {
        let store = &self.p.state().store;
        let Some(key) = store.node_by_id(node) else {
            panic!("no node {node}");
        };
        let containers = store
            .containers_on(key)
            .filter_map(|c| store.container(c))
            .filter(|r| !gone.contains(&&*r.container.id))
            .map(|r| ContainerUsage {
                container_id: r.container.id.clone(),
                total_memory_bytes: r.container.memory_bytes,
                memory_usage_bytes: 8 * MIB,
                cpu_pct: 1.0,
            })
            .collect();
        self.send(Event::Stats(StatsSample {
            node_id: node.into(),
            taken_at: self.now,
            node: NodeUsage::default(),
            containers,
        }));
    }

    /// An acquire of `f` waiting up to 60 s.
    pub fn acquire(&mut self, id: &str, f: &crate::model::FunctionSpec) {
        self.send(Event::Acquire(Acquire {
            request_id: id.into(),
            account_id: "acct".into(),
            function: f.clone(),
            deadline: self.now + 60_000,
        }));
    }

    /// The grant of `id`.
    pub fn grant(&self, id: &str) -> Grant {
        self.grants
            .iter()
            .rev()
            .find(|g| &*g.request_id == id)
            .cloned()
            .unwrap_or_else(|| panic!("no grant for {id}; grants {:?}", self.grants))
    }

    /// Returns `id` after a call of `duration_ms` touching `memory_mib`.
    pub fn ret(&mut self, id: &str, duration_ms: u64, memory_mib: u64) {
        self.ret_err(id, duration_ms, memory_mib, None);
    }

    /// Returns `id` with an error.
    pub fn ret_err(
        &mut self,
        id: &str,
        duration_ms: u64,
        memory_mib: u64,
        error: Option<FunctionError>,
    ) {
        let container_id = self.grant(id).container_id;
        self.send(Event::Return(Return {
            request_id: id.into(),
            container_id,
            duration_ns: duration_ms * 1_000_000,
            max_memory_bytes: memory_mib * MIB,
            error,
        }));
    }

    /// A `GetStats` sample of one container.
    pub fn stats(&mut self, container: &str, memory_mib: u64, cpu_pct: f64) {
        let Some(key) = self.p.state().store.container_by_id(container) else {
            panic!("no container {container}");
        };
        let row = self.p.state().store.container(key).unwrap();
        let node = row.container.node_id.clone();
        let total = row.container.memory_bytes;
        self.send(Event::Stats(StatsSample {
            node_id: node,
            // A partial sample: it vouches for no container missing from it.
            taken_at: 0,
            node: NodeUsage::default(),
            containers: vec![ContainerUsage {
                container_id: container.into(),
                total_memory_bytes: total,
                memory_usage_bytes: memory_mib * MIB,
                cpu_pct,
            }],
        }));
    }

    /// Moves time to `to`, ticking at every wake-up on the way.
    pub fn advance(&mut self, to: Millis) {
        for _ in 0..1_000_000 {
            match self.p.next_wakeup() {
                Some(w) if w <= to => {
                    self.now = self.now.max(w);
                    self.send(Event::Tick);
                    if self.p.next_wakeup().is_some_and(|n| n <= self.now) {
                        // Wake-ups never stay in the past after a tick.
                        panic!("wake-up {:?} not after {}", self.p.next_wakeup(), self.now);
                    }
                }
                _ => break,
            }
        }
        self.now = self.now.max(to);
        self.send(Event::Tick);
    }

    /// Ready containers held.
    pub fn ready(&self) -> u64 {
        self.p.snapshot().containers_ready
    }

    /// Nodes held.
    pub fn nodes(&self) -> usize {
        self.p.state().store.node_count()
    }
}

/// The grant of `request` among `decisions`.
pub fn grant_of(decisions: &[Decision], request: &str) -> Grant {
    decisions
        .iter()
        .find_map(|d| match d {
            Decision::Grant(g) if &*g.request_id == request => Some(g.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no grant for {request} in {decisions:?}"))
}
