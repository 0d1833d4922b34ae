//! Tests of the store's tables and indexes.

use super::*;
use crate::model::{CONTEST_NODE_BYTES, NodeInfo, NodeState};

fn spec(name: &str) -> FunctionSpec {
    FunctionSpec {
        name: name.into(),
        memory_bytes: 512,
        timeout_ms: 1000,
        handler: "h".into(),
    }
}

fn container(id: &str, function: &str) -> Container {
    Container {
        id: id.into(),
        node_id: "n1".into(),
        function: function.into(),
        memory_bytes: 512,
        state: ContainerState::Ready,
        in_flight: 0,
        max_concurrency: 1,
        created_at: 0,
        last_used_at: 0,
        served: 0,
        usage: None,
        stale: false,
        missing_samples: 0,
        parked: false,
        orphans: 0,
    }
}

fn store_with_node() -> (Store, NodeKey) {
    let mut s = Store::new(2);
    let n = s
        .insert_node(Node::new(
            NodeInfo {
                id: "n1".into(),
                address: "a".into(),
                port: 1,
                capacity_bytes: CONTEST_NODE_BYTES,
            },
            0,
        ))
        .unwrap();
    (s, n)
}

#[test]
fn free_stack_follows_slots_and_removal() {
    let (mut s, n) = store_with_node();
    let f = s.upsert_function(&spec("f"));
    let a = s.insert_container(container("a", "f"), n, f).unwrap();
    let b = s.insert_container(container("b", "f"), n, f).unwrap();
    let c = s.insert_container(container("c", "f"), n, f).unwrap();
    assert_eq!(s.function(f).unwrap().free_containers(), 3);
    assert_eq!(s.free_container(f), Some(c));
    assert!(s.take_slot(c, 1));
    assert!(!s.take_slot(c, 1), "a full container has no slot");
    assert_eq!(s.free_container(f), Some(b));
    // Removing from the middle keeps the other positions right.
    s.remove_container(a).unwrap();
    assert_eq!(s.free_container(f), Some(b));
    assert!(s.take_slot(b, 2));
    assert_eq!(s.free_container(f), None);
    s.release_slot(c, 3);
    assert_eq!(s.free_container(f), Some(c));
    s.update_container(c, |c| c.state = ContainerState::Dead);
    assert_eq!(s.free_container(f), None);
    assert_eq!(s.function(f).unwrap().containers, 2);
    assert!(s.insert_container(container("b", "f"), n, f).is_err());
}

#[test]
fn returned_memory_is_bounded() {
    let (mut s, _) = store_with_node();
    s.remember_return("r1".into(), "c".into());
    s.remember_return("r2".into(), "c".into());
    s.remember_return("r3".into(), "c".into());
    assert!(s.returned_container("r1").is_none());
    assert_eq!(s.returned_container("r3").map(|c| &**c), Some("c"));
}

#[test]
fn upsert_function_replaces_a_changed_spec() {
    let (mut s, _) = store_with_node();
    let f = s.upsert_function(&spec("f"));
    let mut bigger = spec("f");
    bigger.memory_bytes = 1024;
    assert_eq!(s.upsert_function(&bigger), f);
    assert_eq!(s.function(f).unwrap().spec.memory_bytes, 1024);
    assert_eq!(s.function_by_name("f"), Some(f));
}

/// The indexes rebuilt from the containers table: what the incremental ones must equal.
fn rebuilt(s: &Store) -> Indexes {
    let mut index = Indexes::default();
    for (k, r) in s.containers() {
        index.add(k, &Filed::of(r.node, r.function, &r.container));
    }
    index
}

/// A small deterministic generator (xorshift), so a failure replays.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

#[test]
fn indexes_equal_a_recomputation_after_random_changes() {
    let mut s = Store::new(2);
    let nodes: Vec<NodeKey> = (0..3)
        .map(|i| {
            s.insert_node(Node::new(
                NodeInfo {
                    id: format!("n{i}").into(),
                    address: "a".into(),
                    port: 1,
                    capacity_bytes: CONTEST_NODE_BYTES,
                },
                0,
            ))
            .unwrap()
        })
        .collect();
    let functions: Vec<FunctionKey> = (0..3)
        .map(|i| s.upsert_function(&spec(&format!("f{i}"))))
        .collect();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut next_id = 0;
    for step in 0..5_000 {
        let live: Vec<ContainerKey> = s.containers().map(|(k, _)| k).collect();
        let pick = |rng: &mut Rng| live[rng.below(live.len() as u64) as usize];
        let now = rng.below(50);
        match rng.below(9) {
            0 | 1 => {
                next_id += 1;
                let mut c = container(&format!("c{next_id}"), "f");
                c.last_used_at = now;
                c.memory_bytes = 128 * (1 + rng.below(3));
                c.max_concurrency = 1 + rng.below(2) as u32;
                let node = nodes[rng.below(3) as usize];
                let function = functions[rng.below(3) as usize];
                s.insert_container(c, node, function).unwrap();
            }
            _ if live.is_empty() => continue,
            2 => {
                s.take_slot(pick(&mut rng), now);
            }
            3 => s.release_slot(pick(&mut rng), now),
            4 => {
                let state = ContainerState::ALL[rng.below(4) as usize];
                s.update_container(pick(&mut rng), |c| c.state = state);
            }
            5 => {
                let flip = rng.below(2) == 0;
                s.update_container(pick(&mut rng), |c| {
                    if flip {
                        c.parked = !c.parked;
                    } else {
                        c.stale = !c.stale;
                    }
                });
            }
            6 => {
                let max = 1 + rng.below(3) as u32;
                s.update_container(pick(&mut rng), |c| c.max_concurrency = max);
            }
            7 => {
                s.update_container(pick(&mut rng), |c| c.last_used_at = now);
            }
            _ => {
                s.remove_container(pick(&mut rng));
            }
        }
        assert_eq!(s.index, rebuilt(&s), "after step {step}");
    }
    // The queries answer what a scan would.
    for &f in &functions {
        let ready: Vec<(Millis, ContainerKey)> = {
            let mut v: Vec<_> = s
                .containers()
                .filter(|(_, r)| r.function == f && r.container.state == ContainerState::Ready)
                .map(|(k, r)| (r.container.last_used_at, k))
                .collect();
            v.sort_unstable();
            v
        };
        assert_eq!(s.ready_lru_of(f).collect::<Vec<_>>(), ready);
        assert_eq!(s.ready_count(f), ready.len());
        assert_eq!(s.newest_ready_use(f), ready.last().map(|r| r.0));
        let mut all: Vec<ContainerKey> = s
            .containers()
            .filter(|(_, r)| r.function == f)
            .map(|(k, _)| k)
            .collect();
        all.sort_unstable();
        assert_eq!(s.containers_of(f), all);
    }
    for &n in &nodes {
        let mut idle: Vec<(Millis, ContainerKey)> = s
            .containers()
            .filter(|(_, r)| {
                r.node == n
                    && r.container.state == ContainerState::Ready
                    && r.container.in_flight == 0
            })
            .map(|(k, r)| (r.container.last_used_at, k))
            .collect();
        idle.sort_unstable();
        assert_eq!(s.idle_lru_on(n).collect::<Vec<_>>(), idle);
        let busy = s
            .containers()
            .filter(|(_, r)| r.node == n && r.container.in_flight > 0)
            .count();
        assert_eq!(s.busy_containers_on(n) as usize, busy);
    }
    assert!(s.idle_lru().is_sorted());
    for state in ContainerState::ALL {
        let n = s
            .containers()
            .filter(|(_, r)| r.container.state == state)
            .count();
        assert_eq!(s.count_in_state(state), n);
    }
}

#[test]
fn largest_capacity_follows_nodes() {
    let (mut s, n1) = store_with_node();
    assert_eq!(s.max_node_capacity(), Some(CONTEST_NODE_BYTES));
    let info = |id: &str, capacity_bytes| NodeInfo {
        id: id.into(),
        address: "a".into(),
        port: 1,
        capacity_bytes,
    };
    let n2 = s
        .insert_node(Node::new(info("n2", 2 * CONTEST_NODE_BYTES), 0))
        .unwrap();
    s.insert_node(Node::new(info("n3", 2 * CONTEST_NODE_BYTES), 0))
        .unwrap();
    assert_eq!(s.max_node_capacity(), Some(2 * CONTEST_NODE_BYTES));
    s.remove_node(n2);
    assert_eq!(s.max_node_capacity(), Some(2 * CONTEST_NODE_BYTES));
    s.remove_node(n1);
    assert_eq!(s.max_node_capacity(), Some(2 * CONTEST_NODE_BYTES));
}

#[test]
fn first_fit_equals_a_scan_after_random_changes() {
    let mut s = Store::new(2);
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let mut next = 0;
    for step in 0..5_000 {
        let held: Vec<NodeKey> = s.nodes().map(|(k, _)| k).collect();
        match rng.below(6) {
            0 if held.len() < 40 => {
                next += 1;
                let info = NodeInfo {
                    id: format!("n{next}").into(),
                    address: "a".into(),
                    port: 1,
                    capacity_bytes: 1024 * (1 + rng.below(3)),
                };
                s.insert_node(Node::new(info, 0)).unwrap();
            }
            1 if !held.is_empty() => {
                s.remove_node(held[rng.below(held.len() as u64) as usize]);
            }
            _ if !held.is_empty() => {
                let key = held[rng.below(held.len() as u64) as usize];
                let (what, bytes) = (rng.below(4), 256 * rng.below(6));
                let mut n = s.node_mut(key).unwrap();
                match what {
                    0 => n.used_bytes = bytes,
                    1 => {
                        n.state = [NodeState::Active, NodeState::Draining, NodeState::Releasing]
                            [(bytes / 256 % 3) as usize]
                    }
                    2 => n.suspect_since = (bytes % 512 == 0).then_some(1),
                    _ => n.used_bytes = n.used_bytes.saturating_add(bytes),
                }
            }
            _ => {}
        }
        for memory in [0, 1, 256, 512, 1024, 2048, 3072, 5000] {
            let scan = s
                .nodes()
                .find(|(_, n)| {
                    n.state == NodeState::Active
                        && n.suspect_since.is_none()
                        && n.free_bytes() >= memory
                })
                .map(|(k, _)| k);
            assert_eq!(s.first_fit(memory), scan, "step {step}, {memory} bytes");
        }
    }
}
