//! Helpers of the pool's tests: rules, endpoints, and pools whose initial nodes are up.

use super::*;

pub(super) const DELAY: i64 = 10_000;

pub(super) fn rules(ready: usize, max: usize) -> PoolRules {
    PoolRules {
        max_nodes: max,
        ready_nodes: ready,
        refill_delay_ms: DELAY,
        ..PoolRules::default()
    }
}

pub(super) fn endpoint(port: u16) -> NodeEndpoint {
    NodeEndpoint {
        address: "127.0.0.1".into(),
        port,
    }
}

pub(super) fn started_ids(actions: &[Action]) -> Vec<String> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::StartNode { node_id, .. } => Some(node_id.clone()),
            Action::StopNode { .. } | Action::KillNode { .. } => None,
        })
        .collect()
}

/// Reports every start in `actions` as successful.
pub(super) fn start_all(pool: &mut Pool, actions: &[Action], now: i64) {
    for (i, id) in started_ids(actions).iter().enumerate() {
        assert!(
            pool.node_started(id, StartedNode::at(endpoint(1000 + i as u16)), now)
                .is_empty()
        );
    }
}

pub(super) fn ready_pool(ready: usize, max: usize) -> Pool {
    ready_pool_with(rules(ready, max))
}

/// A pool under `rules` whose initial nodes all started at 0.
pub(super) fn ready_pool_with(rules: PoolRules) -> Pool {
    let mut pool = Pool::new(rules);
    let actions = pool.bootstrap(0);
    start_all(&mut pool, &actions, 0);
    pool
}

pub(super) fn exited(pool: &mut Pool, id: &str, now: i64) -> FailedNode {
    pool.node_exited(
        id,
        "the node-service process 42 was killed by signal 9",
        now,
    )
    .expect("the node fails")
}

pub(super) fn pool_reserve(pool: &mut Pool, account: &str, now: i64) -> String {
    pool.reserve(account, now).unwrap().node.id
}
