//! Self-healing in virtual time, for every registered policy: node loss, container death,
//! lease expiry and definition changes (the rules are in `core::state::health`; each policy
//! must hand the requests back to its own placement).

use crate::core::{CoreError, Event, HealthNote, Policy, PolicyOptions, Return, Snapshot, State};
use crate::model::{FunctionSpec, Millis, NodeUsage, StatsSample};
use crate::policies::testkit::{Sim, spec};
use crate::policies::{POLICY_NAMES, no_reuse, policy_by_name};

/// A registered policy behind the trait object, for the generic test harness.
pub(crate) struct Named(Box<dyn Policy>);

impl Policy for Named {
    fn name(&self) -> &str {
        self.0.name()
    }
    fn handle(
        &mut self,
        now: Millis,
        event: Event,
        out: &mut Vec<crate::core::Decision>,
    ) -> Result<(), CoreError> {
        self.0.handle(now, event, out)
    }
    fn next_wakeup(&self) -> Option<Millis> {
        self.0.next_wakeup()
    }
    fn snapshot(&self) -> Snapshot {
        self.0.snapshot()
    }
    fn state(&self) -> &State {
        self.0.state()
    }
}

pub(crate) fn sim(name: &str) -> Sim<Named> {
    Sim::new(Named(
        policy_by_name(name, &PolicyOptions::default()).expect("registered"),
    ))
}

fn lost(s: &Sim<Named>) -> Vec<String> {
    s.health
        .iter()
        .filter_map(|n| match n {
            HealthNote::NodeLost { node_id, .. } => Some(node_id.to_string()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_lost_node_is_forgotten_released_and_its_work_goes_elsewhere() {
    for name in POLICY_NAMES {
        let mut s = sim(name);
        let f = spec("f", 512);
        s.acquire("r1", &f);
        let first = s.grant("r1");
        s.now = 100;
        s.ret("r1", 10, 4);
        let node = first.node_id.to_string();
        s.now = 1_000;
        s.unreachable(&node);
        assert!(
            matches!(s.health.last(), Some(HealthNote::NodeSuspect { node_id, .. }) if **node_id == *node),
            "{name}: {:?}",
            s.health
        );
        s.now = 2_000;
        s.unreachable(&node);
        s.advance(3_999);
        assert!(lost(&s).is_empty(), "{name}: lost too early");
        s.advance(4_000);
        assert_eq!(lost(&s), vec![node.clone()], "{name}");
        assert!(s.released.contains(&node), "{name}: {:?}", s.released);
        assert!(s.p.state().store.node_by_id(&node).is_none(), "{name}");
        assert!(
            s.p.state()
                .store
                .container_by_id(&first.container_id)
                .is_none(),
            "{name}: the lost node's container is forgotten"
        );
        assert_eq!(s.p.snapshot().nodes_lost, 1, "{name}");
        // A late sample of the lost node changes nothing: it is never used again.
        s.send(Event::Stats(StatsSample {
            node_id: node.as_str().into(),
            taken_at: s.now,
            node: NodeUsage::default(),
            containers: Vec::new(),
        }));
        assert!(s.p.state().store.node_by_id(&node).is_none(), "{name}");
        s.acquire("r2", &f);
        let second = s.grant("r2");
        assert_ne!(*second.node_id, *node, "{name}");
        assert!(second.cold, "{name}");
    }
}

#[test]
fn a_request_waiting_on_a_lost_node_is_placed_elsewhere_at_once() {
    for name in POLICY_NAMES {
        let mut s = sim(name);
        let f = spec("f", 512);
        // One node with a container first, so the next create goes to a known node.
        s.acquire("r0", &f);
        s.ret("r0", 10, 4);
        s.hold_creates = true;
        let f2 = spec("g", 512);
        s.acquire("r1", &f2);
        let (_, create) =
            s.p.state()
                .creates()
                .next()
                .unwrap_or_else(|| panic!("{name}: a create for r1"));
        let node = s.p.state().store.node(create.node).unwrap().id.to_string();
        s.unreachable(&node);
        s.now = 500;
        s.unreachable(&node);
        s.advance(3_500);
        assert_eq!(lost(&s), vec![node.clone()], "{name}");
        assert!(
            s.p.state()
                .creates()
                .all(|(_, c)| s.p.state().store.node(c.node).is_some()),
            "{name}: no create is left on the lost node"
        );
        s.hold_creates = false;
        s.finish_creates();
        let g = s.grant("r1");
        assert_ne!(*g.node_id, *node, "{name}");
        assert!(s.rejects.is_empty(), "{name}: {:?}", s.rejects);
    }
}

#[test]
fn a_node_that_answers_again_or_failed_once_is_kept() {
    for name in POLICY_NAMES {
        let mut s = sim(name);
        let f = spec("f", 512);
        s.acquire("r1", &f);
        let node = s.grant("r1").node_id.to_string();
        s.unreachable(&node);
        s.now = 500;
        s.unreachable(&node);
        s.now = 1_000;
        s.node_stats(&node, &[]);
        assert!(
            matches!(
                s.health.last(),
                Some(HealthNote::NodeRecovered {
                    after_ms: 1_000,
                    ..
                })
            ),
            "{name}: {:?}",
            s.health
        );
        s.now = 2_000;
        s.unreachable(&node);
        s.advance(30_000);
        assert!(
            lost(&s).is_empty(),
            "{name}: one failure alone never loses a node"
        );
        assert!(s.p.state().store.node_by_id(&node).is_some(), "{name}");
    }
}

#[test]
fn a_container_missing_from_two_samples_is_dead_and_replaced() {
    for name in POLICY_NAMES {
        let mut s = sim(name);
        let f = spec("f", 512);
        s.acquire("r1", &f);
        let first = s.grant("r1");
        s.now = 100;
        s.ret("r1", 10, 4);
        if *name == no_reuse::NAME {
            continue; // it never keeps a container to lose
        }
        let (node, id) = (first.node_id.to_string(), first.container_id.to_string());
        s.now = 1_000;
        s.node_stats(&node, &[&id]);
        assert!(
            !s.removed.contains(&id),
            "{name}: one missing sample is not enough"
        );
        s.now = 2_000;
        s.node_stats(&node, &[&id]);
        assert!(s.removed.contains(&id), "{name}: {:?}", s.removed);
        assert!(
            s.health
                .iter()
                .any(|n| matches!(n, HealthNote::ContainerLost { container_id, .. } if **container_id == *id)),
            "{name}: {:?}",
            s.health
        );
        s.acquire("r2", &f);
        assert_ne!(*s.grant("r2").container_id, *id, "{name}");
    }
}

#[test]
fn an_expired_lease_is_reclaimed_and_a_late_return_refused() {
    for name in POLICY_NAMES {
        let mut s = sim(name);
        let f = FunctionSpec {
            timeout_ms: 1_000,
            ..spec("f", 512)
        };
        s.acquire("r1", &f);
        let held = s.grant("r1");
        // 1 s timeout + 10 s grace.
        s.advance(10_999);
        assert_eq!(s.p.state().store.lease_count(), 1, "{name}");
        s.advance(11_000);
        assert_eq!(s.p.state().store.lease_count(), 0, "{name}");
        assert_eq!(s.p.snapshot().leases_expired, 1, "{name}");
        assert!(
            s.health.iter().any(|n| matches!(
                n,
                HealthNote::LeaseExpired {
                    held_ms: 11_000,
                    ..
                }
            )),
            "{name}: {:?}",
            s.health
        );
        let mut out = Vec::new();
        let late = s.p.handle(
            s.now,
            Event::Return(Return {
                request_id: "r1".into(),
                container_id: held.container_id.clone(),
                duration_ns: 1,
                max_memory_bytes: 1,
                error: None,
            }),
            &mut out,
        );
        assert!(
            matches!(late, Err(CoreError::LeaseExpired { .. })),
            "{name}: {late:?}"
        );
        s.acquire("r2", &f);
        let next = s.grant("r2");
        if *name != no_reuse::NAME {
            assert_eq!(next.container_id, held.container_id, "{name}: usable again");
            assert!(!next.cold, "{name}");
        }
    }
}

#[test]
fn a_changed_definition_retires_the_old_containers() {
    for name in POLICY_NAMES {
        let mut s = sim(name);
        let first = spec("f", 512);
        s.acquire("r1", &first);
        let c1 = s.grant("r1").container_id;
        s.now = 100;
        s.ret("r1", 10, 4);
        // An idle container of the old definition is removed at once.
        let second = FunctionSpec {
            handler: "second.handler".into(),
            ..first.clone()
        };
        s.now = 200;
        s.acquire("r2", &second);
        assert!(
            s.removed.contains(&c1.to_string()),
            "{name}: idle old one removed"
        );
        let c2 = s.grant("r2").container_id;
        assert_ne!(c2, c1, "{name}: a container of the new definition");
        // A busy one finishes its call first, and is never granted again.
        let third = FunctionSpec {
            timeout_ms: 30_000,
            ..second.clone()
        };
        s.now = 300;
        s.acquire("r3", &third);
        assert!(
            s.health
                .iter()
                .any(|n| matches!(n, HealthNote::DefinitionChanged { draining: 1, .. })),
            "{name}: {:?}",
            s.health
        );
        assert!(
            !s.removed.contains(&c2.to_string()),
            "{name}: busy, not removed yet"
        );
        let c3 = s.grant("r3").container_id;
        assert!(c3 != c1 && c3 != c2, "{name}");
        s.now = 400;
        s.ret("r2", 10, 4);
        assert!(
            s.removed.contains(&c2.to_string()),
            "{name}: removed after its call"
        );
        s.ret("r3", 10, 4);
        s.acquire("r4", &third);
        let c4 = s.grant("r4").container_id;
        assert!(c4 != c1 && c4 != c2, "{name}");
    }
}

#[test]
fn a_suspect_node_takes_no_new_container() {
    for name in POLICY_NAMES {
        let mut s = sim(name);
        s.acquire("r1", &spec("f", 512));
        let node = s.grant("r1").node_id.to_string();
        s.unreachable(&node);
        s.acquire("r2", &spec("g", 512));
        assert_ne!(*s.grant("r2").node_id, *node, "{name}");
    }
}

#[test]
fn a_call_that_could_not_reach_a_node_is_not_sent_there_again() {
    for name in POLICY_NAMES {
        let mut s = sim(name);
        let f = spec("f", 512);
        s.acquire("r1", &f);
        let first = s.grant("r1");
        s.ret_err(
            "r1",
            0,
            0,
            Some(crate::model::FunctionError {
                code: "NodeUnavailable".into(),
                message: "connection refused".into(),
            }),
        );
        s.acquire("r1-retry", &f);
        let retry = s.grant("r1-retry");
        assert_ne!(retry.node_id, first.node_id, "{name}");
        // The node answers again: its container serves again.
        s.now = 1_000;
        s.node_stats(&first.node_id, &[]);
        let parked = s.p.state().store.container_by_id(&first.container_id);
        if let Some(c) = parked.and_then(|c| s.p.state().store.container(c)) {
            assert!(!c.container.parked, "{name}");
        }
    }
}

#[test]
fn a_deleted_function_is_drained() {
    for name in POLICY_NAMES {
        let mut s = sim(name);
        let f = spec("f", 512);
        s.acquire("r1", &f);
        let c1 = s.grant("r1").container_id;
        s.now = 100;
        s.send(Event::RetireFunction {
            function: "f".into(),
        });
        assert!(
            !s.removed.contains(&c1.to_string()),
            "{name}: a busy one drains"
        );
        s.now = 200;
        s.ret("r1", 10, 4);
        assert!(
            s.removed.contains(&c1.to_string()),
            "{name}: removed after its call"
        );
        // Nothing of it comes back by itself (no pre-warm), and nothing is left.
        s.advance(3_600_000);
        assert_eq!(
            s.p.state()
                .store
                .function_by_name("f")
                .map(|f| { s.p.state().store.function(f).unwrap().containers }),
            Some(0),
            "{name}"
        );
        // Unknown functions are fine.
        s.send(Event::RetireFunction {
            function: "never-seen".into(),
        });
    }
}
