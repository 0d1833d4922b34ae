//! The pool's tests of healing it: exits, missed probes, start back-off, ids, restore.

use super::test_support::*;
use super::*;

#[test]
fn a_ready_node_that_exits_is_forgotten_at_once_and_refilled_after_the_delay() {
    let mut pool = ready_pool(2, 3);
    let failed = exited(&mut pool, "node-1", 1_000);
    assert_eq!(failed.was, NodeState::Ready);
    assert_eq!(failed.failure.reason, FailureReason::Exited);
    assert_eq!(failed.failure.at_ms, 1_000);
    assert_eq!(
        failed.actions,
        vec![Action::KillNode {
            node_id: "node-1".into()
        }]
    );
    assert!(pool.node("node-1").is_none(), "forgotten");
    assert_eq!(pool.counts().ready, 1);
    assert!(
        pool.node_exited("node-1", "again", 1_001).is_none(),
        "a node fails once"
    );
    assert!(
        pool.probe_targets().iter().all(|(id, _)| id != "node-1"),
        "no longer probed"
    );

    // The refill is owed after the refill delay, in a free slot, under a new id.
    assert_eq!(pool.next_wake_ms(), Some(1_000 + DELAY));
    assert!(pool.tick(1_000 + DELAY - 1).is_empty());
    let actions = pool.tick(1_000 + DELAY);
    assert_eq!(started_ids(&actions), vec!["node-3".to_string()]);
    start_all(&mut pool, &actions, 1_000 + DELAY);
    assert_eq!(pool.counts().ready, 2, "back to --ready-nodes");
    assert_eq!(pool.usage().count(), 0, "never reserved, never billed");
}

#[test]
fn reserve_never_hands_out_a_failed_node() {
    let mut pool = ready_pool(2, 2);
    exited(&mut pool, "node-1", 10);
    assert_eq!(pool.reserve("a", 20).unwrap().node.id, "node-2");
    assert_eq!(pool.reserve("a", 30), Err(PoolError::Exhausted));
}

#[test]
fn a_failed_reserved_node_stays_its_owners_until_the_release_which_succeeds() {
    let mut pool = ready_pool(2, 2);
    let id = pool.reserve("acct", 0).unwrap().node.id;
    let slots = pool.occupied_slots();
    let failed = exited(&mut pool, &id, 2_000);
    assert_eq!(failed.was, NodeState::Reserved);
    assert_eq!(
        failed.actions,
        vec![Action::KillNode {
            node_id: id.clone()
        }]
    );

    let node = pool.node(&id).unwrap();
    assert_eq!(node.state, NodeState::Failed);
    assert_eq!(node.owner_account.as_deref(), Some("acct"));
    assert_eq!(
        node.failure.as_ref().map(|f| f.reason),
        Some(FailureReason::Exited)
    );
    assert_eq!(pool.counts().failed, 1);
    assert_eq!(
        pool.occupied_slots(),
        slots,
        "it keeps its slot until released"
    );
    assert!(pool.probe_targets().iter().all(|(n, _)| *n != id));
    // Still the account's: listed as reserved and billed until released.
    let usage: Vec<_> = pool
        .usage()
        .map(|n| (n.id.clone(), n.released_at_ms))
        .collect();
    assert_eq!(usage, vec![(id.clone(), None)]);
    assert_eq!(pool.node_ms(5_000), 5_000);

    let actions = pool
        .release(&id, 6_000)
        .expect("releasing a failed node succeeds");
    assert_eq!(
        actions,
        vec![Action::StopNode {
            node_id: id.clone()
        }]
    );
    let node = pool.node(&id).unwrap();
    assert_eq!(node.state, NodeState::Released);
    assert_eq!(node.released_at_ms, Some(6_000));
    assert_eq!(pool.node_ms(9_000), 6_000);
    assert_eq!(pool.counts().failed, 0);
    assert_eq!(
        pool.pending_refills(),
        1,
        "only the reserve's refill is owed"
    );
    assert!(matches!(
        pool.release(&id, 7_000),
        Err(PoolError::NotReserved {
            state: NodeState::Released,
            ..
        })
    ));
}

#[test]
fn a_node_fails_after_missing_probes_for_the_configured_time() {
    let mut pool = ready_pool_with(PoolRules {
        failed_after_ms: 3_000,
        ..rules(1, 1)
    });
    let id = "node-1";
    assert!(pool.probe_missed(id, "timeout", 0).is_none());
    assert!(pool.probe_missed(id, "timeout", 1_000).is_none());
    pool.probe_answered(id, 1_500);
    // A new silence starts at its first miss.
    for t in [2_000, 3_000, 4_000] {
        assert!(pool.probe_missed(id, "timeout", t).is_none(), "at {t}");
    }
    let failed = pool
        .probe_missed(id, "no answer within 1000 ms", 5_000)
        .expect("silent for 3000 ms");
    assert_eq!(failed.failure.reason, FailureReason::Unresponsive);
    assert_eq!(
        failed.failure.detail,
        "no answer to 4 health probes in 3000 ms (last: no answer within 1000 ms)"
    );
    assert_eq!(
        failed.actions,
        vec![Action::KillNode { node_id: id.into() }]
    );
    assert!(pool.probe_missed(id, "timeout", 6_000).is_none(), "once");
}

#[test]
fn one_missed_probe_never_fails_a_node() {
    let mut pool = ready_pool_with(PoolRules {
        failed_after_ms: 0,
        ..rules(1, 1)
    });
    assert!(pool.probe_missed("node-1", "timeout", 100_000).is_none());
    assert!(pool.probe_missed("node-1", "timeout", 100_001).is_some());
    assert!(
        pool.probe_missed("node-99", "timeout", 0).is_none(),
        "unknown nodes are ignored"
    );
}

#[test]
fn start_failures_in_a_row_back_off_every_start() {
    let mut pool = Pool::new(PoolRules {
        refill_delay_ms: 0,
        start_backoff_base_ms: 1_000,
        start_backoff_max_ms: 4_000,
        ..rules(1, 1)
    });
    let mut actions = pool.bootstrap(0);
    // Each attempt fails at once; the retries come 1, 2, 4, 4 s apart (capped).
    let mut now = 0;
    for retry_at in [1_000, 3_000, 7_000, 11_000] {
        let id = started_ids(&actions).remove(0);
        assert_eq!(pool.node_start_failed(&id, now), Some(retry_at));
        assert_eq!(pool.next_wake_ms(), Some(retry_at));
        assert!(pool.tick(retry_at - 1).is_empty(), "backing off");
        actions = pool.tick(retry_at);
        assert_eq!(actions.len(), 1);
        now = retry_at;
    }
    // A success clears the back-off: the next failure waits the base again.
    start_all(&mut pool, &actions, 11_000);
    let failed = exited(&mut pool, "node-5", 12_000);
    assert_eq!(failed.was, NodeState::Ready);
    let replacement = pool.tick(12_000);
    let id = started_ids(&replacement).remove(0);
    assert_eq!(pool.node_start_failed(&id, 12_050), Some(13_050));
}

#[test]
fn a_node_that_never_starts_is_retried_slowly_not_in_a_loop() {
    let mut pool = Pool::new(PoolRules {
        refill_delay_ms: 0,
        ..rules(3, 3)
    });
    let mut pending = pool.bootstrap(0);
    let mut starts = 0;
    // A minute of virtual time in 10 ms steps; every start fails 10 ms after it began.
    for now in (0..60_000).step_by(10) {
        for id in started_ids(&pending) {
            starts += 1;
            pool.node_start_failed(&id, now);
        }
        pending = pool.tick(now);
    }
    // Without the back-off that would be 3 starts every 10 ms (18,000).
    assert!(starts <= 3 * 5, "{starts} starts in a minute");
    assert!(starts > 3, "retried: {starts}");
}

#[test]
fn a_node_that_fails_during_its_handover_is_dropped_unbilled() {
    let mut pool = ready_pool(2, 2);
    let id = pool.reserve("a", 0).unwrap().node.id;
    exited(&mut pool, &id, 5);
    assert_eq!(
        pool.reserve_failed(&id, 6),
        vec![Action::StopNode {
            node_id: id.clone()
        }]
    );
    assert!(pool.node(&id).is_none());
    assert_eq!(pool.node_ms(10_000), 0);
}

#[test]
fn close_releases_failed_nodes() {
    let mut pool = ready_pool(2, 2);
    let id = pool.reserve("a", 0).unwrap().node.id;
    exited(&mut pool, &id, 5);
    let stops = pool.close(100);
    assert_eq!(stops.len(), 2, "{stops:?}");
    assert_eq!(pool.node(&id).unwrap().released_at_ms, Some(100));
    assert_eq!(pool.counts().holding_slots(), 0);
}

#[test]
fn ids_are_checked_and_quoted_clipped() {
    assert_eq!(check_id(IdKind::Node, &"n".repeat(MAX_ID_BYTES)), Ok(()));
    assert_eq!(
        check_id(IdKind::Account, "").unwrap_err().to_string(),
        "account ID cannot be empty"
    );
    let long = "x".repeat(1 << 20);
    let err = check_id(IdKind::Account, &long).unwrap_err();
    let message = err.to_string();
    assert!(message.len() < 300, "{}", message.len());
    assert!(
        message.starts_with("account ID \"xxx")
            && message.ends_with("…(1048576 bytes)\" is too long: at most 256 bytes are allowed"),
        "{message}"
    );
    let mut pool = ready_pool(1, 1);
    assert!(matches!(
        pool.reserve(&long, 0),
        Err(PoolError::IdTooLong {
            kind: IdKind::Account,
            ..
        })
    ));
    assert!(matches!(
        pool.release(&"n".repeat(MAX_ID_BYTES + 1), 0),
        Err(PoolError::IdTooLong {
            kind: IdKind::Node,
            ..
        })
    ));
    assert_eq!(pool.counts().ready, 1, "nothing changed");
}

#[test]
fn a_restored_pool_keeps_ids_states_and_node_time_and_refills_to_the_ready_nodes() {
    let mut before = ready_pool(3, 4);
    let a = pool_reserve(&mut before, "a", 1_000);
    let b = pool_reserve(&mut before, "b", 2_000);
    before.release(&b, 3_000).unwrap();
    // A refill is starting when the manager dies: not saved, its start died with it.
    assert_eq!(
        started_ids(&before.tick(11_000)),
        vec!["node-4".to_string()]
    );
    let saved = before.snapshot();
    assert_eq!(
        crate::model::ids_and_states(&saved.nodes),
        vec![
            ("node-1", NodeState::Reserved),
            ("node-2", NodeState::Released),
            ("node-3", NodeState::Ready)
        ]
    );
    assert_eq!(saved.next_generation, 5, "node-4's id is used up too");

    let mut after = Pool::new(rules(3, 4));
    let mut nodes = saved.nodes.clone();
    nodes.push(Node::starting("node-9".into(), 9, 1, 0));
    let actions = after.restore(nodes, saved.next_generation, 11_500);
    assert!(
        after.node("node-9").is_none(),
        "a starting node is not restored"
    );
    // Ready: node-3; reserved: node-1; node-2's slot cools until 13 000. Two ready nodes
    // are missing: one fits now, under an id past every one used, the other waits.
    assert_eq!(started_ids(&actions), vec!["node-10".to_string()]);
    assert_eq!(after.pending_refills(), 1);
    assert_eq!(after.next_wake_ms(), Some(3_000 + DELAY));
    assert_eq!(after.counts().reserved, 1);
    assert_eq!(after.counts().ready, 1);
    assert_eq!(after.node_ms(20_000), before.node_ms(20_000));
    assert_eq!(after.node_ms(20_000), 19_000 + 1_000);
    let usage: Vec<_> = after.usage().map(|n| n.id.clone()).collect();
    assert_eq!(usage, vec![a.clone(), b]);
    assert_eq!(after.node(&a).unwrap().owner_account.as_deref(), Some("a"));

    // The reserved node is released as usual, the cooled slot is refilled as usual.
    assert!(after.release(&a, 12_000).is_ok());
    start_all(&mut after, &actions, 11_600);
    assert_eq!(
        started_ids(&after.tick(13_000)),
        vec!["node-11".to_string()]
    );
}

#[test]
fn a_restored_pool_lists_the_usage_records_in_the_same_order() {
    let mut before = Pool::new(rules(2, 2));
    before.bootstrap(0);
    // node-2 comes up first, so it is reserved first.
    for id in ["node-2", "node-1"] {
        before.node_started(id, StartedNode::at(endpoint(1)), 0);
    }
    let first = pool_reserve(&mut before, "a", 10);
    let second = pool_reserve(&mut before, "a", 10);
    assert_eq!((first.as_str(), second.as_str()), ("node-2", "node-1"));
    let saved = before.snapshot();
    let mut after = Pool::new(rules(2, 2));
    after.restore(saved.nodes, saved.next_generation, 20);
    let order: Vec<&str> = after.usage().map(|n| n.id.as_str()).collect();
    assert_eq!(order, vec!["node-2", "node-1"]);
}
