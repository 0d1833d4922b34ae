//! `baseline`: the contest demo scheduler's semantics, the yardstick every score is relative to.
//!
//! - One request per container.
//! - An acquire takes an idle container of its function if there is one (warm).
//! - Otherwise a container is created first-fit (the first node, in reserve order, whose free
//!   memory covers the function's) and granted to this request once created (cold).
//! - When no node has room, the request waits for a reserve already in flight whose node will
//!   still have room for it, else a new reserve is asked for; once the node arrives the
//!   request is placed first-fit.
//! - A failed create or reserve rejects the requests waiting for it (`RESOURCE_EXHAUSTED`
//!   from the resource manager passes through).
//! - Containers are never removed (except dead ones) and nodes never released, so a hold
//!   (see [`crate::core::state::hold`]) changes nothing here: every idle container is kept.
//!
//! Every one of these is a default of [`Hooks`]: the baseline is the empty policy.

use super::hooks::{Hooked, Hooks};
use crate::core::PolicyOptions;

/// The name the policy is registered under.
pub const NAME: &str = "baseline";

/// The contest demo's policy: every hook at its default.
#[derive(Debug, Default)]
pub struct Baseline;

impl Hooks for Baseline {
    fn name(&self) -> &str {
        NAME
    }
}

impl Baseline {
    /// The baseline policy with empty tables.
    pub fn policy(opts: PolicyOptions) -> Hooked<Baseline> {
        Hooked::new(opts, Baseline)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{Acquire, Return};
    use crate::core::{AcquireErrorCode, CoreError, Decision, Event, Policy};
    use crate::model::Millis;
    use crate::model::{FunctionError, FunctionSpec, MIB, NodeInfo, OpId};
    use crate::policies::testkit::{self, grant_of};

    const NODE: u64 = crate::model::CONTEST_NODE_BYTES;

    fn spec(name: &str) -> FunctionSpec {
        FunctionSpec {
            name: name.into(),
            memory_bytes: 512 * MIB,
            timeout_ms: 60_000,
            handler: "index.handler".into(),
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
            max_memory_bytes: 2 * MIB,
            error: None,
        })
    }

    fn node(id: &str) -> NodeInfo {
        NodeInfo {
            id: id.into(),
            address: format!("10.0.0.{}", id.len()).into(),
            port: 5000,
            capacity_bytes: NODE,
        }
    }

    /// A baseline policy driven in virtual time, step by step through the policies' testkit.
    type Sim = testkit::Sim<Hooked<Baseline>>;

    fn new_sim() -> Sim {
        Sim::new(Baseline::policy(PolicyOptions::default()))
    }

    #[test]
    fn cold_path_reserves_creates_then_grants_cold() {
        let mut s = new_sim();
        let out = s.step(acquire("r1", "f", 30_000));
        assert_eq!(out, vec![Decision::ReserveNode { op: OpId(1) }]);
        let out = s.step(Event::NodeReserved {
            op: OpId(1),
            node: node("n1"),
        });
        let [Decision::CreateContainer { op, node, function }] = out.as_slice() else {
            panic!("expected one create, got {out:?}");
        };
        assert_eq!(&*node.id, "n1");
        assert_eq!(&*function.name, "f");
        let out = s.step(Event::ContainerCreated {
            op: *op,
            container_id: "c1".into(),
        });
        let g = grant_of(&out, "r1");
        assert_eq!(out.len(), 1);
        assert!(g.cold);
        assert_eq!(
            (&*g.container_id, &*g.node_id, g.node_port),
            ("c1", "n1", 5000)
        );
        let snap = s.p.snapshot();
        assert_eq!((snap.cold_starts, snap.warm_hits, snap.waiting), (1, 0, 0));
    }

    #[test]
    fn return_then_acquire_reuses_the_container_warm() {
        let mut s = new_sim();
        let out = s.step(acquire("r1", "f", 30_000));
        let out = s.answer(out);
        let first = grant_of(&out, "r1");
        s.now = 100;
        assert!(s.step(ret("r1", &first.container_id)).is_empty());
        s.now = 200;
        let out = s.step(acquire("r2", "f", 30_200));
        assert_eq!(out.len(), 1, "no create, no reserve: {out:?}");
        let g = grant_of(&out, "r2");
        assert!(!g.cold);
        assert_eq!(g.container_id, first.container_id);
        let f = s.p.state().store.function_by_name("f").unwrap();
        let profile = &s.p.state().store.function(f).unwrap().profile;
        assert_eq!(profile.calls, 1);
        assert_eq!(profile.peak_memory_bytes, 2 * MIB);
    }

    #[test]
    fn concurrent_acquires_get_two_containers_on_one_reserve() {
        let mut s = new_sim();
        let mut out = s.step(acquire("r1", "f", 30_000));
        let second = s.step(acquire("r2", "f", 30_000));
        assert!(
            second.is_empty(),
            "r2 waits for the reserve in flight: {second:?}"
        );
        out.extend(second);
        let out = s.answer(out);
        let (a, b) = (grant_of(&out, "r1"), grant_of(&out, "r2"));
        assert_ne!(a.container_id, b.container_id);
        assert!(a.cold && b.cold);
        assert_eq!(s.p.state().store.node_count(), 1);
    }

    #[test]
    fn first_fit_fills_node_one_before_reserving_node_two() {
        let mut s = new_sim();
        let out = s.step(acquire("r0", "f", 30_000));
        s.answer(out);
        let mut reserves = 0;
        let mut grants = Vec::new();
        for i in 1..7 {
            let out = s.step(acquire(&format!("r{i}"), "f", 30_000));
            reserves += out
                .iter()
                .filter(|d| matches!(d, Decision::ReserveNode { .. }))
                .count();
            grants.extend(s.answer(out));
        }
        assert_eq!(reserves, 1, "the 7th container needs a 2nd node");
        for i in 1..6 {
            assert_eq!(&*grant_of(&grants, &format!("r{i}")).node_id, "n1");
        }
        assert_eq!(&*grant_of(&grants, "r6").node_id, "n2");
        let n1 = s.p.state().store.node_by_id("n1").unwrap();
        assert_eq!(s.p.state().store.node(n1).unwrap().free_bytes(), 0);
    }

    #[test]
    fn seven_waiting_requests_share_reserves_by_planned_room() {
        let mut s = new_sim();
        let mut reserves = 0;
        for i in 0..7 {
            let out = s.step(acquire(&format!("r{i}"), "f", 30_000));
            reserves += out.len();
        }
        assert_eq!(
            reserves, 2,
            "6 fit the first node's expected room, the 7th needs another"
        );
    }

    #[test]
    fn reserve_failure_rejects_with_resource_exhausted() {
        let mut s = new_sim();
        s.step(acquire("r1", "f", 30_000));
        s.step(acquire("r2", "f", 30_000));
        let out = s.step(Event::NodeReserveFailed {
            op: OpId(1),
            exhausted: true,
            message: "no available node can be reserved".into(),
        });
        assert_eq!(out.len(), 2);
        for d in &out {
            let Decision::Reject { error, .. } = d else {
                panic!("{d:?}")
            };
            assert_eq!(error.code, AcquireErrorCode::ResourceExhausted);
            assert_eq!(error.message, "no available node can be reserved");
        }
        assert_eq!(s.p.state().waiting_count(), 0);
        assert_eq!(s.p.next_wakeup(), None);
    }

    /// Acquires `r1` of `f` on node `n1` and fails its create with `message`.
    fn fail_the_create(s: &mut Sim, message: &str, refused: bool) -> Vec<Decision> {
        s.step(acquire("r1", "f", 30_000));
        let out = s.step(Event::NodeReserved {
            op: OpId(1),
            node: node("n1"),
        });
        let [Decision::CreateContainer { op, .. }] = out.as_slice() else {
            panic!("{out:?}")
        };
        s.step(Event::ContainerCreateFailed {
            op: *op,
            message: message.into(),
            refused,
        })
    }

    #[test]
    fn create_failure_rejects_and_frees_the_memory() {
        let mut s = new_sim();
        let out = fail_the_create(&mut s, "image missing", false);
        let [Decision::Reject { error, .. }] = out.as_slice() else {
            panic!("{out:?}")
        };
        assert_eq!(error.code, AcquireErrorCode::Unavailable);
        assert!(error.message.contains("image missing"), "{}", error.message);
        let n1 = s.p.state().store.node_by_id("n1").unwrap();
        assert_eq!(s.p.state().store.node(n1).unwrap().used_bytes, 0);
    }

    #[test]
    fn a_refused_create_rejects_at_once_with_failed_precondition() {
        let mut s = new_sim();
        let out = fail_the_create(&mut s, "image \"x\" is not on this machine", true);
        let [Decision::Reject { request_id, error }] = out.as_slice() else {
            panic!("{out:?}")
        };
        assert_eq!(&**request_id, "r1");
        assert_eq!(error.code, AcquireErrorCode::FailedPrecondition);
        assert_eq!(
            error.message,
            "cannot create a container of function f on node n1: image \"x\" is not on this machine"
        );
        assert_eq!(s.p.state().waiting_count(), 0);
        // Nothing is retried later.
        s.now = 10_000;
        let out = s.step(Event::Tick);
        assert!(
            !out.iter()
                .any(|d| matches!(d, Decision::CreateContainer { .. })),
            "{out:?}"
        );
    }

    #[test]
    fn unknown_container_and_double_return_are_refused() {
        let mut s = new_sim();
        let err = s.step_err(ret("nobody", "c404"));
        assert_eq!(
            err.to_string(),
            "container c404 is not known to the scheduler"
        );
        let out = s.step(acquire("r1", "f", 30_000));
        let out = s.answer(out);
        let g = grant_of(&out, "r1");
        let err = s.step_err(ret("r1", "c999"));
        assert!(matches!(err, CoreError::WrongContainer { .. }), "{err}");
        s.step(ret("r1", &g.container_id));
        let err = s.step_err(ret("r1", &g.container_id));
        assert_eq!(
            err,
            CoreError::AlreadyReturned {
                request_id: "r1".into()
            }
        );
        let err = s.step_err(ret("r-never", &g.container_id));
        assert!(matches!(err, CoreError::UnknownRequest { .. }), "{err}");
    }

    #[test]
    fn duplicate_request_id_is_refused_while_waiting_or_leased() {
        let mut s = new_sim();
        s.step(acquire("r1", "f", 30_000));
        let err = s.step_err(acquire("r1", "f", 30_000));
        assert!(matches!(err, CoreError::AlreadyExists { .. }), "{err}");
        let out = s.answer(vec![Decision::ReserveNode { op: OpId(1) }]);
        grant_of(&out, "r1");
        let err = s.step_err(acquire("r1", "f", 30_000));
        assert!(matches!(err, CoreError::AlreadyExists { .. }), "{err}");
    }

    #[test]
    fn deadline_expiry_rejects_on_tick_and_a_late_container_stays_idle() {
        let mut s = new_sim();
        s.step(acquire("r1", "f", 1_000));
        assert_eq!(s.p.next_wakeup(), Some(1_000));
        s.now = 999;
        assert!(s.step(Event::Tick).is_empty());
        s.now = 1_000;
        let out = s.step(Event::Tick);
        let [Decision::Reject { request_id, error }] = out.as_slice() else {
            panic!("{out:?}")
        };
        assert_eq!(&**request_id, "r1");
        assert_eq!(error.code, AcquireErrorCode::DeadlineExceeded);
        assert!(error.message.contains("function f"), "{}", error.message);
        assert_eq!(s.p.next_wakeup(), None);
        // The node still arrives; nobody waits for it, so nothing is created.
        let out = s.step(Event::NodeReserved {
            op: OpId(1),
            node: node("n1"),
        });
        assert!(out.is_empty(), "{out:?}");
        // A request that expires while its container is being created leaves the container
        // idle: the next acquire gets it warm.
        s.step(acquire("r2", "f", 2_000));
        s.now = 2_000;
        let out = s.step(Event::Tick);
        assert!(
            matches!(out.as_slice(), [Decision::Reject { .. }]),
            "{out:?}"
        );
        let out = s.step(Event::ContainerCreated {
            op: OpId(2),
            container_id: "c1".into(),
        });
        assert!(out.is_empty(), "nobody to grant to: {out:?}");
        let out = s.step(acquire("r3", "f", 40_000));
        let g = grant_of(&out, "r3");
        assert!(!g.cold);
        assert_eq!(&*g.container_id, "c1");
    }

    #[test]
    fn dead_container_is_never_granted_again() {
        let mut s = new_sim();
        let out = s.step(acquire("r1", "f", 30_000));
        let g = grant_of(&s.answer(out), "r1");
        let out = s.step(Event::Return(Return {
            request_id: "r1".into(),
            container_id: g.container_id.clone(),
            duration_ns: 5,
            max_memory_bytes: 512 * MIB,
            error: Some(FunctionError {
                code: "ContainerExited".into(),
                message: "exit 137".into(),
            }),
        }));
        let [Decision::RemoveContainer { node, container_id }] = out.as_slice() else {
            panic!("{out:?}")
        };
        assert_eq!((&*node.id, container_id), ("n1", &g.container_id));
        let n1 = s.p.state().store.node_by_id("n1").unwrap();
        assert_eq!(s.p.state().store.node(n1).unwrap().used_bytes, 0);
        let out = s.step(acquire("r2", "f", 30_000));
        let out = s.answer(out);
        let g2 = grant_of(&out, "r2");
        assert!(g2.cold);
        assert_ne!(g2.container_id, g.container_id);
        assert_eq!(&*g2.node_id, "n1", "the dead container's memory was freed");
        s.step(Event::ContainerRemoved {
            container_id: g.container_id.clone(),
        });
        assert!(s.p.state().store.container_by_id(&g.container_id).is_none());
        assert_eq!(s.p.snapshot().container_deaths, 1);
    }

    #[test]
    fn function_errors_that_do_not_kill_keep_the_container() {
        let mut s = new_sim();
        let out = s.step(acquire("r1", "f", 30_000));
        let g = grant_of(&s.answer(out), "r1");
        let out = s.step(Event::Return(Return {
            request_id: "r1".into(),
            container_id: g.container_id.clone(),
            duration_ns: 5,
            max_memory_bytes: 0,
            error: Some(FunctionError {
                code: "UserError".into(),
                message: "boom".into(),
            }),
        }));
        assert!(out.is_empty());
        let out = s.step(acquire("r2", "f", 30_000));
        assert_eq!(grant_of(&out, "r2").container_id, g.container_id);
    }

    #[test]
    fn cancel_gives_back_an_undelivered_grant() {
        let mut s = new_sim();
        let out = s.step(acquire("r1", "f", 30_000));
        let g = grant_of(&s.answer(out), "r1");
        assert!(
            s.step(Event::Cancel {
                request_id: "r1".into()
            })
            .is_empty()
        );
        assert_eq!(s.p.state().store.lease_count(), 0);
        let out = s.step(acquire("r2", "f", 30_000));
        assert_eq!(grant_of(&out, "r2").container_id, g.container_id);
        // Cancelling a waiting request forgets it.
        s.step(acquire("r3", "f", 30_000));
        s.step(Event::Cancel {
            request_id: "r3".into(),
        });
        assert_eq!(s.p.state().waiting_count(), 0);
    }

    #[test]
    fn a_function_bigger_than_a_node_is_rejected_at_once() {
        let mut s = new_sim();
        let mut big = spec("huge");
        big.memory_bytes = 4096 * MIB;
        let out = s.step(Event::Acquire(Acquire {
            request_id: "r1".into(),
            account_id: "a".into(),
            function: big,
            deadline: 30_000,
        }));
        let [Decision::Reject { error, .. }] = out.as_slice() else {
            panic!("{out:?}")
        };
        assert_eq!(error.code, AcquireErrorCode::ResourceExhausted);
        assert!(error.message.contains("4096 MiB"), "{}", error.message);
    }

    #[test]
    fn result_events_for_unknown_operations_are_refused() {
        let mut s = new_sim();
        let err = s.step_err(Event::ContainerCreated {
            op: OpId(77),
            container_id: "c".into(),
        });
        assert!(matches!(err, CoreError::UnknownOperation { .. }), "{err}");
        let err = s.step_err(Event::NodeReserveFailed {
            op: OpId(77),
            exhausted: false,
            message: String::new(),
        });
        assert!(matches!(err, CoreError::UnknownOperation { .. }), "{err}");
    }
}
