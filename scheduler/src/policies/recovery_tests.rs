//! Recovery in virtual time, for every registered policy: a (re)started scheduler adopts a
//! node with its containers, orphan calls (granted before the restart) hold their slots until
//! they return or expire (the rules are in `core::state::recovery`).

use crate::core::{Event, HealthNote, Policy, Return};
use crate::model::{AdoptedContainer, FunctionSpec, NodeInfo};
use crate::policies::health_tests::sim;
use crate::policies::testkit::{NODE, spec};
use crate::policies::{POLICY_NAMES, no_reuse};

fn node(id: &str) -> NodeInfo {
    NodeInfo {
        id: id.into(),
        address: "10.0.0.9".into(),
        port: 6000,
        capacity_bytes: NODE,
    }
}

fn container(id: &str, f: &FunctionSpec, in_flight: u32, dead: bool) -> AdoptedContainer {
    AdoptedContainer {
        id: id.into(),
        function: f.clone(),
        in_flight,
        dead,
    }
}

#[test]
fn an_adopted_node_serves_its_idle_containers_warm_and_keeps_busy_ones_busy() {
    for name in POLICY_NAMES {
        let mut s = sim(name);
        let f = spec("f", 512);
        s.now = 1_000;
        s.send(Event::NodeAdopted {
            node: node("a1"),
            reserved_at: 200,
            containers: vec![
                container("idle", &f, 0, false),
                container("busy", &f, 1, false),
                container("gone", &f, 0, true),
            ],
        });
        assert!(
            s.removed.contains(&"gone".to_string()),
            "{name}: dead one removed"
        );
        assert!(
            s.health.iter().any(|n| matches!(
                n,
                HealthNote::NodeAdopted { containers, orphan_calls: 1, .. } if *containers >= 1
            )),
            "{name}: {:?}",
            s.health
        );
        let store = &s.p.state().store;
        let held = store
            .node(store.node_by_id("a1").expect("adopted"))
            .unwrap();
        assert_eq!(
            held.reserved_at, 200,
            "{name}: node-seconds count from the reserve"
        );
        s.acquire("r1", &f);
        let g = s.grant("r1");
        if *name == no_reuse::NAME {
            assert_ne!(&*g.container_id, "idle", "{name}: never reuses");
        } else {
            assert_eq!(
                &*g.container_id, "idle",
                "{name}: warm on the adopted container"
            );
            assert!(!g.cold, "{name}");
        }
        assert_ne!(&*g.container_id, "busy", "{name}: an orphan call holds it");
        // The orphan call returns (its request is unknown to this life): accepted.
        s.now = 1_500;
        s.send(Event::Return(Return {
            request_id: "from-before".into(),
            container_id: "busy".into(),
            duration_ns: 1_000_000,
            max_memory_bytes: 1 << 20,
            error: None,
        }));
        let free =
            s.p.state()
                .store
                .container_by_id("busy")
                .and_then(|c| s.p.state().store.container(c))
                .is_none_or(|r| r.container.orphans == 0);
        assert!(free, "{name}");
    }
}

#[test]
fn orphan_calls_expire_after_their_timeout_plus_the_grace() {
    for name in POLICY_NAMES {
        if *name == no_reuse::NAME {
            continue; // it removes the container instead; covered above
        }
        let mut s = sim(name);
        let f = FunctionSpec {
            timeout_ms: 1_000,
            ..spec("f", 512)
        };
        s.send(Event::NodeAdopted {
            node: node("a1"),
            reserved_at: 0,
            containers: vec![container("busy", &f, 1, false)],
        });
        s.advance(10_999);
        let orphans = |s: &crate::policies::testkit::Sim<crate::policies::health_tests::Named>| {
            let store = &s.p.state().store;
            store
                .container_by_id("busy")
                .and_then(|c| store.container(c))
                .map(|r| r.container.orphans)
        };
        assert_eq!(orphans(&s), Some(1), "{name}");
        s.advance(11_000);
        assert_eq!(orphans(&s), Some(0), "{name}: expired");
        s.acquire("r1", &f);
        assert_eq!(&*s.grant("r1").container_id, "busy", "{name}: usable again");
    }
}

#[test]
fn an_adopted_container_of_an_older_definition_is_retired() {
    for name in POLICY_NAMES {
        let mut s = sim(name);
        let current = spec("f", 512);
        s.acquire("r1", &current);
        s.ret("r1", 10, 4);
        let older = FunctionSpec {
            handler: "older.handler".into(),
            ..current.clone()
        };
        s.send(Event::NodeAdopted {
            node: node("a1"),
            reserved_at: 0,
            containers: vec![
                container("old", &older, 0, false),
                container("keeps-the-node", &current, 1, false),
            ],
        });
        assert!(s.removed.contains(&"old".to_string()), "{name}");
        // Adopting a node the scheduler already holds changes nothing.
        let before = s.p.state().store.container_count();
        s.send(Event::NodeAdopted {
            node: node("a1"),
            reserved_at: 0,
            containers: vec![container("other", &current, 0, false)],
        });
        assert_eq!(s.p.state().store.container_count(), before, "{name}");
    }
}
