//! `no-reuse`: every request gets a container of its own, created for it and removed when it
//! is returned. A teaching and reference policy: it pays a cold start on every call, which is
//! what reuse saves, and it shows the cost in the score.
//!
//! - One request per container; a container is never granted twice ([`Hooks::can_take`]
//!   says no, so every acquire is a miss).
//! - Every miss creates a container first-fit (waiting for a reserve when no node has room,
//!   as the baseline does: the default [`Hooks::on_miss`]) and is granted it once created.
//! - A container with nothing to do is removed at once ([`Hooks::on_idle`]): returned, its
//!   request gone before it was delivered, or created after its request's deadline. One of a
//!   held function (see [`crate::core::state::hold`]) stays idle until the hold ends.
//! - Nodes are never released (as in the baseline), so the comparison isolates reuse.

use super::hooks::{Ctx, Hooked, Hooks};
use crate::core::PolicyOptions;
use crate::store::ContainerKey;

/// The name the policy is registered under.
pub const NAME: &str = "no-reuse";

/// The policy that never reuses a container.
#[derive(Debug, Default)]
pub struct NoReuse;

impl Hooks for NoReuse {
    fn name(&self) -> &str {
        NAME
    }

    fn can_take(&self, _: &Ctx<'_>, _: ContainerKey) -> bool {
        false
    }

    fn on_idle(&mut self, ctx: &mut Ctx<'_>, container: ContainerKey) {
        ctx.remove_when_idle(container, 0);
    }
}

impl NoReuse {
    /// The policy with empty tables.
    pub fn policy(opts: PolicyOptions) -> Hooked<NoReuse> {
        Hooked::new(opts, NoReuse)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{Acquire, Grant, Return};
    use crate::core::{Decision, Event, Policy};
    use crate::model::Millis;
    use crate::model::{FunctionSpec, MIB, NodeInfo, OpId};

    fn acquire(id: &str, deadline: Millis) -> Event {
        Event::Acquire(Acquire {
            request_id: id.into(),
            account_id: "acct".into(),
            function: FunctionSpec {
                name: "f".into(),
                memory_bytes: 1024 * MIB,
                timeout_ms: 60_000,
                handler: "sleep".into(),
            },
            deadline,
        })
    }

    fn ret(id: &str, container: &str) -> Event {
        Event::Return(Return {
            request_id: id.into(),
            container_id: container.into(),
            duration_ns: 1_000,
            max_memory_bytes: MIB,
            error: None,
        })
    }

    struct Sim {
        p: Hooked<NoReuse>,
        now: Millis,
        nodes: u32,
        containers: u32,
    }

    impl Sim {
        fn new() -> Sim {
            Sim {
                p: NoReuse::policy(PolicyOptions::default()),
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
                                capacity_bytes: 3072 * MIB,
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
    }

    #[test]
    fn every_acquire_is_cold_and_every_return_removes() {
        let mut s = Sim::new();
        let out = s.send(acquire("r1", 30_000));
        let g1 = Sim::grant_of(&s.settle(out), "r1");
        assert!(g1.cold);
        s.now = 50;
        let out = s.send(ret("r1", &g1.container_id));
        let [Decision::RemoveContainer { node, container_id }] = out.as_slice() else {
            panic!("expected a removal, got {out:?}");
        };
        assert_eq!((&*node.id, container_id), ("n1", &g1.container_id));
        // The next acquire does not get the removed container: it creates one (same node).
        s.now = 60;
        let out = s.send(acquire("r2", 30_060));
        assert!(
            matches!(out.as_slice(), [Decision::CreateContainer { .. }]),
            "{out:?}"
        );
        let g2 = Sim::grant_of(&s.settle(out), "r2");
        assert!(g2.cold);
        assert_ne!(g2.container_id, g1.container_id);
        assert_eq!(&*g2.node_id, "n1");
        s.send(Event::ContainerRemoved {
            container_id: g1.container_id.clone(),
        });
        let snap = s.p.snapshot();
        assert_eq!((snap.cold_starts, snap.warm_hits), (2, 0));
        assert_eq!(snap.containers_ready, 1);
        assert_eq!(snap.nodes_active, 1, "nodes are never released");
    }

    #[test]
    fn removal_frees_memory_for_the_next_container() {
        let mut s = Sim::new();
        // Three 1 GiB containers fill a 3 GiB node.
        let mut out = Vec::new();
        for i in 0..3 {
            out.extend(s.send(acquire(&format!("r{i}"), 30_000)));
        }
        let done = s.settle(out);
        let g0 = Sim::grant_of(&done, "r0");
        let out = s.send(ret("r0", &g0.container_id));
        assert_eq!(out.len(), 1);
        // Until the removal completes the memory stays placed: a 4th needs a new node.
        let out = s.send(acquire("r3", 30_000));
        assert!(matches!(out.as_slice(), [Decision::ReserveNode { .. }]));
        s.send(Event::ContainerRemoved {
            container_id: g0.container_id.clone(),
        });
        let out = s.send(acquire("r4", 30_000));
        assert!(
            matches!(out.as_slice(), [Decision::CreateContainer { node, .. }] if &*node.id == "n1"),
            "{out:?}"
        );
    }

    #[test]
    fn a_late_container_and_a_cancelled_grant_are_removed() {
        let mut s = Sim::new();
        s.send(acquire("r1", 1_000));
        let out = s.send(Event::NodeReserved {
            op: OpId(1),
            node: NodeInfo {
                id: "n1".into(),
                address: "a".into(),
                port: 1,
                capacity_bytes: 3072 * MIB,
            },
        });
        let [Decision::CreateContainer { op, .. }] = out.as_slice() else {
            panic!("{out:?}")
        };
        let op = *op;
        s.now = 1_000;
        let out = s.send(Event::Tick);
        assert!(matches!(out.as_slice(), [Decision::Reject { .. }]));
        let out = s.send(Event::ContainerCreated {
            op,
            container_id: "late".into(),
        });
        assert!(
            matches!(out.as_slice(), [Decision::RemoveContainer { container_id, .. }] if &**container_id == "late"),
            "{out:?}"
        );
        let out = s.send(acquire("r2", 40_000));
        let g = Sim::grant_of(&s.settle(out), "r2");
        let out = s.send(Event::Cancel {
            request_id: "r2".into(),
        });
        assert!(
            matches!(out.as_slice(), [Decision::RemoveContainer { container_id, .. }] if *container_id == g.container_id),
            "{out:?}"
        );
    }
}
