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
    use crate::core::{Acquire, Return};
    use crate::core::{Decision, Event, Policy};
    use crate::model::Millis;
    use crate::model::{FunctionSpec, MIB, NodeInfo, OpId};
    use crate::policies::testkit::{self, grant_of};

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

    /// A no-reuse policy driven in virtual time, step by step through the policies' testkit.
    type Sim = testkit::Sim<Hooked<NoReuse>>;

    fn new_sim() -> Sim {
        Sim::new(NoReuse::policy(PolicyOptions::default()))
    }

    #[test]
    fn every_acquire_is_cold_and_every_return_removes() {
        let mut s = new_sim();
        let out = s.step(acquire("r1", 30_000));
        let g1 = grant_of(&s.answer(out), "r1");
        assert!(g1.cold);
        s.now = 50;
        let out = s.step(ret("r1", &g1.container_id));
        let [Decision::RemoveContainer { node, container_id }] = out.as_slice() else {
            panic!("expected a removal, got {out:?}");
        };
        assert_eq!((&*node.id, container_id), ("n1", &g1.container_id));
        // The next acquire does not get the removed container: it creates one (same node).
        s.now = 60;
        let out = s.step(acquire("r2", 30_060));
        assert!(
            matches!(out.as_slice(), [Decision::CreateContainer { .. }]),
            "{out:?}"
        );
        let g2 = grant_of(&s.answer(out), "r2");
        assert!(g2.cold);
        assert_ne!(g2.container_id, g1.container_id);
        assert_eq!(&*g2.node_id, "n1");
        s.step(Event::ContainerRemoved {
            container_id: g1.container_id.clone(),
        });
        let snap = s.p.snapshot();
        assert_eq!((snap.cold_starts, snap.warm_hits), (2, 0));
        assert_eq!(snap.containers_ready, 1);
        assert_eq!(snap.nodes_active, 1, "nodes are never released");
    }

    #[test]
    fn removal_frees_memory_for_the_next_container() {
        let mut s = new_sim();
        // Three 1 GiB containers fill a 3 GiB node.
        let mut out = Vec::new();
        for i in 0..3 {
            out.extend(s.step(acquire(&format!("r{i}"), 30_000)));
        }
        let done = s.answer(out);
        let g0 = grant_of(&done, "r0");
        let out = s.step(ret("r0", &g0.container_id));
        assert_eq!(out.len(), 1);
        // Until the removal completes the memory stays placed: a 4th needs a new node.
        let out = s.step(acquire("r3", 30_000));
        assert!(matches!(out.as_slice(), [Decision::ReserveNode { .. }]));
        s.step(Event::ContainerRemoved {
            container_id: g0.container_id.clone(),
        });
        let out = s.step(acquire("r4", 30_000));
        assert!(
            matches!(out.as_slice(), [Decision::CreateContainer { node, .. }] if &*node.id == "n1"),
            "{out:?}"
        );
    }

    #[test]
    fn a_late_container_and_a_cancelled_grant_are_removed() {
        let mut s = new_sim();
        s.step(acquire("r1", 1_000));
        let out = s.step(Event::NodeReserved {
            op: OpId(1),
            node: NodeInfo {
                id: "n1".into(),
                address: "a".into(),
                port: 1,
                capacity_bytes: crate::model::CONTEST_NODE_BYTES,
            },
        });
        let [Decision::CreateContainer { op, .. }] = out.as_slice() else {
            panic!("{out:?}")
        };
        let op = *op;
        s.now = 1_000;
        let out = s.step(Event::Tick);
        assert!(matches!(out.as_slice(), [Decision::Reject { .. }]));
        let out = s.step(Event::ContainerCreated {
            op,
            container_id: "late".into(),
        });
        assert!(
            matches!(out.as_slice(), [Decision::RemoveContainer { container_id, .. }] if &**container_id == "late"),
            "{out:?}"
        );
        let out = s.step(acquire("r2", 40_000));
        let g = grant_of(&s.answer(out), "r2");
        let out = s.step(Event::Cancel {
            request_id: "r2".into(),
        });
        assert!(
            matches!(out.as_slice(), [Decision::RemoveContainer { container_id, .. }] if *container_id == g.container_id),
            "{out:?}"
        );
    }
}
