//! The pool's tests of filling it: bootstrap, reserve, release, refills and slots, close.

use super::test_support::*;
use super::*;
use faas_common::units::CONTEST_NODE_BYTES;

#[test]
fn bootstrap_starts_the_ready_nodes_with_the_node_memory() {
    let mut pool = Pool::new(rules(10, 20));
    let actions = pool.bootstrap(0);
    assert_eq!(actions.len(), 10);
    assert!(actions.iter().all(|a| matches!(
        a,
        Action::StartNode {
            memory_bytes: CONTEST_NODE_BYTES,
            ..
        }
    )));
    let ids = started_ids(&actions);
    let unique: std::collections::HashSet<_> = ids.iter().collect();
    assert_eq!(unique.len(), 10, "ids are unique: {ids:?}");
    assert_eq!(pool.counts().starting, 10);
    assert_eq!(pool.reserve("acct", 1), Err(PoolError::Exhausted));

    start_all(&mut pool, &actions, 100);
    assert_eq!(pool.counts().ready, 10);
    assert_eq!(pool.next_wake_ms(), None, "nothing owed yet");
}

#[test]
fn bootstrap_never_exceeds_max_nodes() {
    let mut pool = Pool::new(rules(10, 3));
    assert_eq!(pool.bootstrap(0).len(), 3);
}

#[test]
fn reserve_takes_the_oldest_ready_node_and_schedules_a_refill() {
    let mut pool = ready_pool(10, 20);
    let r = pool.reserve("acct-1", 5_000).unwrap();
    assert_eq!(r.node.id, "node-1");
    assert_eq!(r.node.state, NodeState::Reserved);
    assert_eq!(r.node.owner_account.as_deref(), Some("acct-1"));
    assert_eq!(r.node.reserved_at_ms, Some(5_000));
    assert_eq!(r.node.endpoint, Some(endpoint(1000)));
    assert_eq!(r.refill_at_ms, 5_000 + DELAY);
    assert_eq!(pool.counts().ready, 9);
    assert_eq!(pool.next_wake_ms(), Some(5_000 + DELAY));

    // Not yet due.
    assert!(pool.tick(5_000 + DELAY - 1).is_empty());
    let actions = pool.tick(5_000 + DELAY);
    assert_eq!(started_ids(&actions), vec!["node-11".to_string()]);
    assert_eq!(pool.pending_refills(), 0);
    assert_eq!(pool.next_wake_ms(), None);
    start_all(&mut pool, &actions, 5_000 + DELAY);
    assert_eq!(pool.counts().ready, 10);
}

#[test]
fn two_reserves_never_get_the_same_node() {
    let mut pool = ready_pool(3, 3);
    let a = pool.reserve("x", 1).unwrap().node.id;
    let b = pool.reserve("x", 1).unwrap().node.id;
    let c = pool.reserve("y", 1).unwrap().node.id;
    assert!(a != b && b != c && a != c);
}

#[test]
fn exhausted_when_no_node_is_ready() {
    let mut pool = ready_pool(1, 1);
    pool.reserve("a", 0).unwrap();
    let err = pool.reserve("a", 1).unwrap_err();
    assert_eq!(err, PoolError::Exhausted);
    assert_eq!(err.to_string(), "no available node can be reserved");
    // The refill is due but the only slot is taken: nothing starts, nothing to wake for.
    assert!(pool.tick(DELAY * 5).is_empty());
    assert_eq!(pool.next_wake_ms(), None);
}

#[test]
fn empty_account_is_refused() {
    let mut pool = ready_pool(1, 1);
    let err = pool.reserve("", 0).unwrap_err();
    assert_eq!(err, PoolError::EmptyId(IdKind::Account));
    assert_eq!(err.to_string(), "account ID cannot be empty");
    assert_eq!(pool.counts().ready, 1);
}

#[test]
fn the_21st_live_node_is_never_started() {
    let mut pool = ready_pool(10, 20);
    let mut now = 0;
    let mut reserved = 0;
    // Reserve whatever is ready, let every due refill run, many times over.
    for _ in 0..10 {
        while pool.reserve("acct", now).is_ok() {
            reserved += 1;
        }
        now += DELAY;
        let actions = pool.tick(now);
        start_all(&mut pool, &actions, now);
        assert!(pool.counts().holding_slots() <= 20, "{:?}", pool.counts());
    }
    assert_eq!(pool.counts().holding_slots(), 20);
    assert_eq!(pool.counts().reserved, 20);
    assert_eq!(reserved, 20);
    assert_eq!(pool.reserve("acct", now), Err(PoolError::Exhausted));
    assert_eq!(
        pool.pending_refills(),
        10,
        "refills still owed, blocked by the cap"
    );
    assert_eq!(pool.next_wake_ms(), None);
}

#[test]
fn a_released_slot_is_reusable_after_the_delay() {
    let mut pool = ready_pool(2, 2);
    let a = pool.reserve("acct", 0).unwrap().node.id;
    pool.reserve("acct", 0).unwrap();
    assert!(
        pool.tick(DELAY).is_empty(),
        "two refills due but both slots are taken"
    );

    let release_at = 20_000;
    let actions = pool.release(&a, release_at).unwrap();
    assert_eq!(actions, vec![Action::StopNode { node_id: a.clone() }]);
    assert_eq!(pool.next_wake_ms(), Some(release_at + DELAY));
    assert!(
        pool.tick(release_at + DELAY - 1).is_empty(),
        "slot still cooling"
    );

    let actions = pool.tick(release_at + DELAY);
    assert_eq!(
        actions.len(),
        1,
        "exactly the freed slot is refilled: {actions:?}"
    );
    start_all(&mut pool, &actions, release_at + DELAY);
    assert_eq!(pool.counts().ready, 1);
    assert_eq!(pool.counts().holding_slots(), 2);
    assert_eq!(
        pool.next_wake_ms(),
        None,
        "the other refill waits for a release"
    );
}

#[test]
fn release_checks_the_node() {
    let mut pool = ready_pool(2, 2);
    assert_eq!(pool.release("", 0), Err(PoolError::EmptyId(IdKind::Node)));
    let err = pool.release("node-99", 0).unwrap_err();
    assert_eq!(
        err.to_string(),
        "node \"node-99\" not found: this resource manager has no node of that id (ids come from ReserveNode)"
    );
    let err = pool.release("node-2", 0).unwrap_err();
    assert_eq!(
        err.to_string(),
        "node \"node-2\" is not reserved (it is ready); only a reserved node can be released",
    );

    let id = pool.reserve("a", 0).unwrap().node.id;
    pool.release(&id, 1).unwrap();
    assert_eq!(
        pool.release(&id, 2),
        Err(PoolError::NotReserved {
            id: id.clone(),
            state: NodeState::Released
        }),
        "already released"
    );
    let node = pool.node(&id).unwrap();
    assert_eq!(node.state, NodeState::Released);
    assert_eq!(node.released_at_ms, Some(1));
}

#[test]
fn node_time_counts_reserve_to_release_and_keeps_released_records() {
    let mut pool = ready_pool(3, 3);
    let a = pool.reserve("a", 1_000).unwrap().node.id;
    let b = pool.reserve("b", 2_000).unwrap().node.id;
    assert_eq!(pool.node_ms(1_000), 0);
    assert_eq!(pool.node_ms(3_000), 2_000 + 1_000);

    pool.release(&a, 4_000).unwrap();
    assert_eq!(pool.node_ms(10_000), 3_000 + 8_000);

    let usage: Vec<_> = pool
        .usage()
        .map(|n| (n.id.clone(), n.reserved_at_ms, n.released_at_ms))
        .collect();
    assert_eq!(
        usage,
        vec![
            (a.clone(), Some(1_000), Some(4_000)),
            (b.clone(), Some(2_000), None)
        ]
    );
    // The sum over records agrees with the running total.
    let summed: i64 = pool.usage().map(|n| n.reserved_ms(10_000)).sum();
    assert_eq!(summed, pool.node_ms(10_000));
}

#[test]
fn a_failed_handover_drops_the_node_but_keeps_the_refill() {
    let mut pool = ready_pool(2, 2);
    let r = pool.reserve("a", 0).unwrap();
    let actions = pool.reserve_failed(&r.node.id, 1);
    assert_eq!(
        actions,
        vec![Action::StopNode {
            node_id: r.node.id.clone()
        }]
    );
    assert!(pool.node(&r.node.id).is_none());
    assert_eq!(pool.usage().count(), 0, "never counted as node time");
    assert_eq!(pool.node_ms(50_000), 0);
    assert!(pool.reserve_failed(&r.node.id, 2).is_empty(), "idempotent");
    // The slot is free at once; the refill comes when due.
    let actions = pool.tick(DELAY);
    assert_eq!(actions.len(), 1);
}

#[test]
fn a_failed_start_is_retried_after_the_delay() {
    let mut pool = Pool::new(rules(1, 1));
    let actions = pool.bootstrap(0);
    let id = started_ids(&actions).remove(0);
    assert_eq!(pool.node_start_failed(&id, 500), Some(500 + DELAY));
    assert!(pool.node(&id).is_none());
    assert_eq!(pool.next_wake_ms(), Some(500 + DELAY));
    let retry = pool.tick(500 + DELAY);
    assert_eq!(retry.len(), 1);
    assert_ne!(started_ids(&retry)[0], id, "a new life gets a new id");
}

#[test]
fn close_stops_every_node_and_late_starts() {
    let mut pool = ready_pool(2, 3);
    let a = pool.reserve("a", 100).unwrap().node.id;
    let late = pool.tick(100 + DELAY); // the refill is starting when we close
    let late_id = started_ids(&late).remove(0);

    let mut stops: Vec<_> = pool
        .close(20_000)
        .into_iter()
        .map(|a| match a {
            Action::StopNode { node_id } => node_id,
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    stops.sort();
    assert_eq!(stops, vec!["node-1".to_string(), "node-2".to_string()]);
    assert_eq!(pool.node(&a).unwrap().released_at_ms, Some(20_000));
    assert_eq!(pool.reserve("a", 20_001), Err(PoolError::Closed));
    assert_eq!(
        pool.node_started(&late_id, StartedNode::at(endpoint(9)), 20_002),
        vec![Action::StopNode { node_id: late_id }]
    );
    assert!(pool.tick(1_000_000).is_empty());
    assert_eq!(pool.counts().holding_slots(), 0);
}
