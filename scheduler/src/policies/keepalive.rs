//! `keepalive-10m`: the common industry default (a fixed keep-alive window), the reference a
//! smarter policy should beat.
//!
//! - One request per container.
//! - An acquire takes an idle container of its function if there is one (warm), else a
//!   container is created first-fit and granted once created (cold); when no node has room the
//!   request waits for a reserve (exactly the baseline's placement).
//! - A container idle for the keep-alive window (10 minutes) is removed; one of a held
//!   function (see [`crate::core::state::hold`]) only once the hold has ended too.
//! - A node left with no container (its last one removed, or it arrived when nobody waited for
//!   it any more) is released at once.
//!
//! Idle containers are indexed by when their window ends (`timers::IdleTimers`), so a tick
//! only looks at containers whose window is over, and [`Policy::next_wakeup`] is the earlier
//! of that and the next request deadline. A container of a held function whose window is
//! over is looked at again when the hold ends (or at once, when the hold is ended early).
//!
//! The placement and failure helpers here are shared with [`super::no_reuse`].

use super::timers::IdleTimers;
use crate::core::{
    AcquireError, AcquireErrorCode, CoreError, CreateOp, Decision, Event, Policy, PolicyOptions,
    Snapshot, State,
};
use crate::model::{ContainerState, Millis, NodeState, OpId, Text};
use crate::store::{ContainerKey, FunctionKey, NodeKey};

/// The name the policy is registered under.
pub const NAME: &str = "keepalive-10m";

/// The keep-alive window of [`NAME`]: 10 minutes.
pub const KEEP_ALIVE_MS: Millis = 10 * 60 * 1000;

/// Finds room for a waiting request the way the baseline does: a create on the first node
/// with room, else the reserve in flight that will still have room, else a new reserve. A
/// function larger than a node is rejected with `RESOURCE_EXHAUSTED`.
pub(crate) fn place_first_fit(
    state: &mut State,
    now: Millis,
    request_id: Text,
    function: FunctionKey,
    out: &mut Vec<Decision>,
) {
    let Some(f) = state.store.function(function) else {
        return;
    };
    let memory = f.spec.memory_bytes;
    if let Some(node) = state.first_fit(memory) {
        state.start_create(now, node, function, Some(request_id), out);
        return;
    }
    let expected = state.expected_node_bytes();
    if memory > expected {
        let error = AcquireError {
            code: AcquireErrorCode::ResourceExhausted,
            message: format!(
                "function {} needs {} MiB per container, more than a node offers ({} MiB)",
                f.spec.name,
                memory / crate::model::MIB,
                expected / crate::model::MIB
            ),
        };
        state.reject(request_id, error, out);
        return;
    }
    let pending = state
        .reserves()
        .find(|(_, r)| r.expected_bytes.saturating_sub(r.planned_bytes) >= memory)
        .map(|(op, _)| op);
    let op = match pending {
        Some(op) => op,
        None => state.start_reserve(now, out),
    };
    state.bind_to_reserve(&request_id, op);
}

/// Rejects the requests that waited for a failed reserve (`RESOURCE_EXHAUSTED` from the
/// resource manager passes through, anything else is `UNAVAILABLE`).
/// Places again a request that still waits but lost what it waited for (a create on a lost
/// node, a container of an older definition).
pub(crate) fn replace_first_fit(
    state: &mut State,
    now: Millis,
    request_id: Text,
    out: &mut Vec<Decision>,
) {
    if let Some(function) = state.waiter(&request_id).map(|w| w.function) {
        place_first_fit(state, now, request_id, function, out);
    }
}

pub(crate) fn reject_reserve_waiters(
    state: &mut State,
    waiters: Vec<Text>,
    exhausted: bool,
    message: String,
    out: &mut Vec<Decision>,
) {
    let error = if exhausted {
        AcquireError {
            code: AcquireErrorCode::ResourceExhausted,
            message,
        }
    } else {
        AcquireError {
            code: AcquireErrorCode::Unavailable,
            message: format!("cannot reserve a node: {message}"),
        }
    };
    for request_id in waiters {
        state.reject(request_id, error.clone(), out);
    }
}

/// Applies a failed create and rejects the request it was meant for at once (`UNAVAILABLE`,
/// or `FAILED_PRECONDITION` when the node `refused` it; naming function and node).
pub(crate) fn create_failed(
    state: &mut State,
    op: OpId,
    message: &str,
    refused: bool,
    out: &mut Vec<Decision>,
) -> Result<CreateOp, CoreError> {
    let (create, request) = state.create_failed(op)?;
    if let Some(request_id) = request {
        let error = state.create_failed_error(&create, message, refused);
        state.reject(request_id, error, out);
    }
    Ok(create)
}

/// The keep-alive policy.
#[derive(Debug)]
pub struct KeepAlive {
    state: State,
    keep_alive_ms: Millis,
    /// Containers that became idle, by the end of their window. Entries go stale when the
    /// container is used again or removed; they are checked when they fall due.
    idle: IdleTimers,
}

impl KeepAlive {
    /// The policy with the 10-minute window ([`KEEP_ALIVE_MS`]).
    pub fn new(opts: PolicyOptions) -> KeepAlive {
        KeepAlive::with_keep_alive(opts, KEEP_ALIVE_MS)
    }

    /// The policy with another window (tests, experiments). A window of 0 removes a container
    /// as soon as it is idle and a tick comes.
    pub fn with_keep_alive(opts: PolicyOptions, keep_alive_ms: Millis) -> KeepAlive {
        KeepAlive {
            state: State::new(opts),
            keep_alive_ms,
            idle: IdleTimers::default(),
        }
    }

    /// The keep-alive window, ms.
    pub fn keep_alive_ms(&self) -> Millis {
        self.keep_alive_ms
    }

    /// Starts the window of `container` if it is ready and serves nothing.
    fn note_idle(&mut self, now: Millis, container: ContainerKey) {
        let idle = self.state.store.container(container).is_some_and(|r| {
            r.container.state == ContainerState::Ready && r.container.in_flight == 0
        });
        if idle {
            self.idle
                .push(now.saturating_add(self.keep_alive_ms), container);
        }
    }

    /// Removes the containers whose window is over (and still idle since its start), unless
    /// their function is held.
    fn expire_idle(&mut self, now: Millis, out: &mut Vec<Decision>) {
        while let Some(key) = self.idle.pop_due(now) {
            let expired = self.state.store.container(key).is_some_and(|r| {
                r.container.last_used_at.saturating_add(self.keep_alive_ms) <= now
            });
            if expired {
                self.idle.remove_idle(&mut self.state, now, key, out);
            }
        }
    }

    /// Releases `node` if it is active and holds no container (placed or being created).
    fn release_if_empty(&mut self, node: NodeKey, out: &mut Vec<Decision>) {
        let empty = self.state.store.node(node).is_some_and(|n| {
            n.state == NodeState::Active && n.containers == 0 && n.used_bytes == 0
        });
        if empty {
            self.state.release_node(node, out);
        }
    }
}

impl Policy for KeepAlive {
    fn name(&self) -> &str {
        NAME
    }

    fn handle(
        &mut self,
        now: Millis,
        event: Event,
        out: &mut Vec<Decision>,
    ) -> Result<(), CoreError> {
        match event {
            Event::Acquire(acquire) => {
                let function = self.state.accept_acquire(&acquire, out)?;
                if self
                    .state
                    .grant_warm(now, &acquire.request_id, function, out)
                {
                    return Ok(());
                }
                self.state
                    .wait(now, acquire.request_id.clone(), function, acquire.deadline);
                place_first_fit(&mut self.state, now, acquire.request_id, function, out);
            }
            Event::Return(ret) => {
                let returned = self.state.accept_return(now, ret, out)?;
                if !returned.died {
                    self.note_idle(now, returned.container);
                }
            }
            Event::Cancel { request_id } => {
                if let Some(container) = self.state.cancel(now, &request_id, out) {
                    self.note_idle(now, container);
                }
            }
            Event::NodeReserved { op, node } => {
                let (key, waiters) = self.state.node_reserved(now, op, node)?;
                for request_id in waiters {
                    if let Some(function) = self.state.waiter(&request_id).map(|w| w.function) {
                        place_first_fit(&mut self.state, now, request_id, function, out);
                    }
                }
                // Nobody waits for it any more (deadlines passed): give it back.
                self.release_if_empty(key, out);
            }
            Event::NodeReserveFailed {
                op,
                exhausted,
                message,
            } => {
                let waiters = self.state.reserve_failed(op)?;
                reject_reserve_waiters(&mut self.state, waiters, exhausted, message, out);
            }
            Event::ContainerCreated { op, container_id } => {
                let (container, request) =
                    self.state.container_created(now, op, container_id, 1)?;
                match request {
                    Some(request_id)
                        if self
                            .state
                            .grant(now, request_id.clone(), container, true, out) => {}
                    Some(request_id) => {
                        // Created for an older definition of its function: place it again.
                        self.state.remove_container(container, out);
                        replace_first_fit(&mut self.state, now, request_id, out);
                    }
                    None => self.note_idle(now, container),
                }
            }
            Event::ContainerCreateFailed {
                op,
                message,
                refused,
            } => {
                let create = create_failed(&mut self.state, op, &message, refused, out)?;
                self.release_if_empty(create.node, out);
            }
            Event::ContainerRemoved { container_id } => {
                let node = self
                    .state
                    .store
                    .container_by_id(&container_id)
                    .and_then(|k| self.state.store.container(k))
                    .map(|r| r.node);
                self.state.container_removed(&container_id);
                if let Some(node) = node {
                    self.release_if_empty(node, out);
                }
            }
            Event::NodeReleased { node_id } => self.state.node_released(&node_id),
            Event::NodeAdopted {
                node,
                reserved_at,
                containers,
            } => {
                let adopted = self
                    .state
                    .adopt_node(now, node, reserved_at, containers, out)?;
                for c in adopted.map(|(_, cs)| cs).unwrap_or_default() {
                    self.note_idle(now, c);
                }
            }
            Event::HoldFunction { function, hold_ms } => {
                if self.state.hold_function(now, function.clone(), hold_ms) {
                    let window = self.keep_alive_ms;
                    self.idle.recheck(&self.state, now, &function, |last_used| {
                        last_used.saturating_add(window)
                    });
                    self.expire_idle(now, out);
                }
            }
            shared @ (Event::RetireFunction { .. }
            | Event::NodeUnreachable { .. }
            | Event::Stats(_)) => self.state.apply_shared(now, shared, out),
            Event::Tick => {
                self.state.expire(now, out);
                let healed = self.state.heal(now, out);
                for (container, _) in healed.freed.into_iter().chain(healed.orphans_ended) {
                    self.note_idle(now, container);
                }
                for request_id in healed.replace {
                    replace_first_fit(&mut self.state, now, request_id, out);
                }
                self.expire_idle(now, out);
            }
        }
        Ok(())
    }

    fn next_wakeup(&self) -> Option<Millis> {
        match (self.state.next_deadline(), self.idle.next()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn snapshot(&self) -> Snapshot {
        self.state.snapshot(NAME)
    }

    fn state(&self) -> &State {
        &self.state
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{Acquire, Grant, Return};
    use crate::model::{FunctionSpec, MIB, NodeInfo};

    const NODE: u64 = 3072 * MIB;
    const KA: Millis = 60_000;

    fn spec(name: &str) -> FunctionSpec {
        FunctionSpec {
            name: name.into(),
            memory_bytes: 512 * MIB,
            timeout_ms: 60_000,
            handler: "sleep".into(),
        }
    }

    fn acquire(id: &str, function: &str, deadline: Millis) -> Event {
        Event::Acquire(Acquire {
            request_id: id.into(),
            account_id: "acct".into(),
            function: spec(function),
            deadline,
        })
    }

    fn ret(id: &str, container: &str) -> Event {
        Event::Return(Return {
            request_id: id.into(),
            container_id: container.into(),
            duration_ns: 1_000_000,
            max_memory_bytes: MIB,
            error: None,
        })
    }

    /// A keep-alive policy (window [`KA`]) driven in virtual time; reserves and creates are
    /// answered at once.
    struct Sim {
        p: KeepAlive,
        now: Millis,
        nodes: u32,
        containers: u32,
    }

    impl Sim {
        fn new() -> Sim {
            Sim {
                p: KeepAlive::with_keep_alive(PolicyOptions::default(), KA),
                now: 0,
                nodes: 0,
                containers: 0,
            }
        }

        fn send(&mut self, e: Event) -> Vec<Decision> {
            let mut out = Vec::new();
            self.p.handle(self.now, e, &mut out).expect("accepted");
            out
        }

        /// Answers reserves and creates successfully until only other decisions remain.
        fn settle(&mut self, mut out: Vec<Decision>) -> Vec<Decision> {
            let mut done = Vec::new();
            while !out.is_empty() {
                let mut next = Vec::new();
                for d in out {
                    match d {
                        Decision::ReserveNode { op } => {
                            self.nodes += 1;
                            let node = NodeInfo {
                                id: format!("n{}", self.nodes).into(),
                                address: "127.0.0.1".into(),
                                port: 5000,
                                capacity_bytes: NODE,
                            };
                            next.extend(self.send(Event::NodeReserved { op, node }));
                        }
                        Decision::CreateContainer { op, .. } => {
                            self.containers += 1;
                            let id = format!("c{}", self.containers);
                            next.extend(self.send(Event::ContainerCreated {
                                op,
                                container_id: id.into(),
                            }));
                        }
                        other => done.push(other),
                    }
                }
                out = next;
            }
            done
        }

        fn grant_of(decisions: &[Decision], request: &str) -> Grant {
            decisions
                .iter()
                .find_map(|d| match d {
                    Decision::Grant(g) if &*g.request_id == request => Some(g.clone()),
                    _ => None,
                })
                .unwrap_or_else(|| panic!("no grant for {request} in {decisions:?}"))
        }

        fn tick_at(&mut self, now: Millis) -> Vec<Decision> {
            self.now = now;
            self.send(Event::Tick)
        }
    }

    #[test]
    fn registered_name_uses_ten_minutes() {
        let p = KeepAlive::new(PolicyOptions::default());
        assert_eq!(p.keep_alive_ms(), 600_000);
        assert_eq!(p.name(), "keepalive-10m");
    }

    #[test]
    fn an_idle_container_is_reused_within_the_window() {
        let mut s = Sim::new();
        let out = s.send(acquire("r1", "f", 30_000));
        let g1 = Sim::grant_of(&s.settle(out), "r1");
        assert!(g1.cold);
        s.now = 100;
        assert!(s.send(ret("r1", &g1.container_id)).is_empty());
        assert_eq!(s.p.next_wakeup(), Some(100 + KA));
        s.now = 100 + KA - 1;
        let out = s.send(acquire("r2", "f", s.now + 30_000));
        let g2 = Sim::grant_of(&out, "r2");
        assert!(!g2.cold);
        assert_eq!(g2.container_id, g1.container_id);
        // The old window's end comes: the container is busy, nothing is removed.
        assert!(s.tick_at(100 + KA).is_empty());
    }

    #[test]
    fn a_container_idle_for_the_window_is_removed_and_its_node_released() {
        let mut s = Sim::new();
        let out = s.send(acquire("r1", "f", 30_000));
        let g = Sim::grant_of(&s.settle(out), "r1");
        s.now = 500;
        s.send(ret("r1", &g.container_id));
        assert!(s.tick_at(500 + KA - 1).is_empty(), "window not over yet");
        let out = s.tick_at(500 + KA);
        let [Decision::RemoveContainer { node, container_id }] = out.as_slice() else {
            panic!("expected one removal, got {out:?}");
        };
        assert_eq!((&*node.id, container_id), ("n1", &g.container_id));
        assert_eq!(s.p.next_wakeup(), None);
        // A removing container is never granted: the next acquire creates a new one.
        let out = s.send(acquire("r2", "f", s.now + 30_000));
        let g2 = Sim::grant_of(&s.settle(out), "r2");
        assert!(g2.cold);
        assert_ne!(g2.container_id, g.container_id);
        // The node still holds r2's container: the removal does not release it.
        let out = s.send(Event::ContainerRemoved {
            container_id: g.container_id.clone(),
        });
        assert!(out.is_empty(), "{out:?}");
        // r2's container idles out too: now the node is empty and is released.
        s.send(ret("r2", &g2.container_id));
        let t = s.now + KA;
        let out = s.tick_at(t);
        assert!(matches!(out.as_slice(), [Decision::RemoveContainer { .. }]));
        let out = s.send(Event::ContainerRemoved {
            container_id: g2.container_id.clone(),
        });
        assert_eq!(
            out,
            vec![Decision::ReleaseNode {
                node_id: "n1".into()
            }]
        );
        s.send(Event::NodeReleased {
            node_id: "n1".into(),
        });
        assert_eq!(s.p.state().store.node_count(), 0);
        // The next acquire reserves a fresh node.
        let out = s.send(acquire("r3", "f", t + 30_000));
        assert!(matches!(out.as_slice(), [Decision::ReserveNode { .. }]));
    }

    #[test]
    fn only_the_idle_containers_expire() {
        let mut s = Sim::new();
        let mut out = s.send(acquire("r1", "f", 30_000));
        out.extend(s.send(acquire("r2", "f", 30_000)));
        let out = s.settle(out);
        let (a, b) = (Sim::grant_of(&out, "r1"), Sim::grant_of(&out, "r2"));
        s.now = 10;
        s.send(ret("r1", &a.container_id));
        let out = s.tick_at(10 + KA);
        let [Decision::RemoveContainer { container_id, .. }] = out.as_slice() else {
            panic!("{out:?}")
        };
        assert_eq!(container_id, &a.container_id);
        assert!(
            s.p.state().store.container_by_id(&b.container_id).is_some(),
            "the busy container stays"
        );
    }

    #[test]
    fn a_node_nobody_waits_for_any_more_is_released_on_arrival() {
        let mut s = Sim::new();
        let out = s.send(acquire("r1", "f", 1_000));
        let [Decision::ReserveNode { op }] = out.as_slice() else {
            panic!("{out:?}")
        };
        let op = *op;
        let out = s.tick_at(1_000);
        assert!(matches!(out.as_slice(), [Decision::Reject { .. }]));
        let out = s.send(Event::NodeReserved {
            op,
            node: NodeInfo {
                id: "late".into(),
                address: "127.0.0.1".into(),
                port: 1,
                capacity_bytes: NODE,
            },
        });
        assert_eq!(
            out,
            vec![Decision::ReleaseNode {
                node_id: "late".into()
            }]
        );
    }

    #[test]
    fn a_container_created_for_an_expired_request_idles_out() {
        let mut s = Sim::new();
        let out = s.send(acquire("r1", "f", 1_000));
        let [Decision::ReserveNode { op }] = out.as_slice() else {
            panic!("{out:?}")
        };
        let out = s.send(Event::NodeReserved {
            op: *op,
            node: NodeInfo {
                id: "n1".into(),
                address: "a".into(),
                port: 1,
                capacity_bytes: NODE,
            },
        });
        let [Decision::CreateContainer { op, .. }] = out.as_slice() else {
            panic!("{out:?}")
        };
        let op = *op;
        s.tick_at(1_000);
        s.now = 1_200;
        let out = s.send(Event::ContainerCreated {
            op,
            container_id: "c9".into(),
        });
        assert!(out.is_empty());
        assert_eq!(s.p.next_wakeup(), Some(1_200 + KA));
        let out = s.tick_at(1_200 + KA);
        assert!(matches!(out.as_slice(), [Decision::RemoveContainer { .. }]));
    }

    #[test]
    fn wakeup_is_the_earlier_of_deadline_and_window() {
        let mut s = Sim::new();
        let out = s.send(acquire("r1", "f", 30_000));
        let g = Sim::grant_of(&s.settle(out), "r1");
        s.send(ret("r1", &g.container_id));
        assert_eq!(s.p.next_wakeup(), Some(KA));
        // A waiting request with an earlier deadline (its function needs a new container).
        s.send(acquire("w", "other", 5_000));
        assert_eq!(s.p.next_wakeup(), Some(5_000));
    }
}
