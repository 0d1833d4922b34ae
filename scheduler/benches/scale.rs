//! Per-event cost of the scheduler's core as the fleet grows: 1,000, 10,000 and 100,000
//! containers (1,000 functions of 128 MiB, 24 containers per 3 GiB node), for `adaptive`
//! (the default, built on the engine) and `baseline` (built on hooks). Everything runs in
//! process through `Policy::handle`, time is an argument, nothing is I/O.
//!
//! Three paths, each on a fleet of its own:
//! - `warm`: an acquire granted at once and its return;
//! - `cold`: an acquire of a function with no container while every node is full, so the
//!   container comes from placement after evicting an idle one (adaptive evicts any idle
//!   container while reserves fail, so the fleet answers every reserve with a failure), the
//!   create completes and the request is granted and returns. The baseline never evicts: its
//!   cold path is first fit on the last node, which the fleet leaves with room;
//! - `sweep`: a tick one sweep period after the last (adaptive sweeps every second), where
//!   nothing expires. A fleet serves 500 ticks (idle containers expire after 10 minutes),
//!   then a fresh one is built, outside the measured time.
//!
//! `cargo bench -p faas-scheduler --bench scale` (`SCALE_SIZES=1000,10000` and
//! `SCALE_POLICIES=baseline` narrow the run); the requirement is that each path costs
//! at 100,000 containers at most twice what it costs at 1,000.

use std::hint::black_box;
use std::time::Duration;

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, BenchmarkId, Criterion, criterion_group, criterion_main};
use faas_common::clock;
use faas_scheduler::core::{
    Acquire, Decision, Event, Policy, PolicyOptions, Return, policy_by_name,
};
use faas_scheduler::model::{CONTEST_NODE_BYTES, FunctionSpec, MIB, Millis, NodeInfo, OpId, Text};

const SIZES: [usize; 3] = [1_000, 10_000, 100_000];
const FUNCTIONS: usize = 1_000;
const POLICIES: [&str; 2] = ["adaptive", "baseline"];

/// The sizes to run: `SCALE_SIZES=1000,10000` narrows them (a slow build may not reach
/// 100,000 in reasonable time).
fn sizes() -> Vec<usize> {
    match std::env::var("SCALE_SIZES") {
        Ok(v) => v.split(',').filter_map(|s| s.trim().parse().ok()).collect(),
        Err(_) => SIZES.to_vec(),
    }
}

/// The policies to run: `SCALE_POLICIES=baseline` narrows them.
fn policies() -> Vec<String> {
    match std::env::var("SCALE_POLICIES") {
        Ok(v) => v.split(',').map(|s| s.trim().to_string()).collect(),
        Err(_) => POLICIES.iter().map(|p| p.to_string()).collect(),
    }
}
/// Every (policy, size) case to run, policies first.
fn cases() -> Vec<(String, usize)> {
    let sizes = sizes();
    policies()
        .into_iter()
        .flat_map(|p| sizes.iter().map(move |&s| (p.clone(), s)))
        .collect()
}

/// A group of 10 samples per case: `warm_up`, then 2 s of measurement.
fn group<'a>(c: &'a mut Criterion, name: &str, warm_up: Duration) -> BenchmarkGroup<'a, WallTime> {
    let mut group = c.benchmark_group(name);
    group
        .sample_size(10)
        .warm_up_time(warm_up)
        .measurement_time(Duration::from_secs(2));
    group
}

/// How long a create takes in the warm-up: long next to a call, so that adaptive keeps its
/// spare containers for its whole fallback window.
const START_MS: Millis = 10_000;
/// A day, ms: deadlines and timeouts that never pass during a bench.
const DAY_MS: Millis = 24 * 3_600_000;
/// Ticks one sweep fleet serves before its containers could expire.
const SWEEP_TICKS: u64 = 500;

fn spec(name: &str) -> FunctionSpec {
    FunctionSpec {
        name: name.into(),
        memory_bytes: 128 * MIB,
        timeout_ms: DAY_MS,
        handler: "index.handler".into(),
    }
}

/// A policy holding a fleet, and the simulated platform around it.
struct Fleet {
    p: Box<dyn Policy>,
    now: Millis,
    nodes: u32,
    containers: u32,
    requests: u64,
    /// How long creates take (the warm-up's [`START_MS`], else 0).
    start_ms: Millis,
    /// Answer reserves with a failure (the cold path's adaptive fleet), and how many were.
    refuse_reserves: bool,
    refused: u32,
    /// Names of functions left with no container (the cold path's next acquires).
    cold: Vec<Text>,
}

impl Fleet {
    fn request_id(&mut self) -> Text {
        self.requests += 1;
        format!("req-{:010}", self.requests).into()
    }

    /// The event answering `d`, if it needs one; grants and creates are collected.
    fn answer(
        &mut self,
        d: Decision,
        grants: &mut Vec<(Text, Text)>,
        creates: &mut Vec<OpId>,
    ) -> Option<Event> {
        Some(match d {
            Decision::ReserveNode { op } if self.refuse_reserves => {
                self.refused += 1;
                Event::NodeReserveFailed {
                    op,
                    exhausted: true,
                    message: "no node".into(),
                }
            }
            Decision::ReserveNode { op } => {
                self.nodes += 1;
                Event::NodeReserved {
                    op,
                    node: NodeInfo {
                        id: format!("node-{}", self.nodes).into(),
                        address: "10.0.0.1".into(),
                        port: 5000,
                        capacity_bytes: CONTEST_NODE_BYTES,
                    },
                }
            }
            Decision::CreateContainer { op, .. } => {
                creates.push(op);
                return None;
            }
            Decision::RemoveContainer { container_id, .. } => {
                let store = &self.p.state().store;
                if let Some(f) = store
                    .container_by_id(&container_id)
                    .and_then(|k| store.container(k))
                    .map(|r| r.function)
                    .and_then(|f| store.function(f))
                    // Its last container (the one going) is gone: the function is cold.
                    .filter(|f| f.containers <= 1)
                {
                    self.cold.push(f.spec.name.clone());
                }
                Event::ContainerRemoved { container_id }
            }
            Decision::Grant(g) => {
                grants.push((g.request_id.clone(), g.container_id.clone()));
                return None;
            }
            _ => return None,
        })
    }

    /// Answers every decision and those that follow; creates complete `start_ms` later, a
    /// wave at a time. Returns the grants, in order.
    fn settle(&mut self, out: Vec<Decision>) -> Vec<(Text, Text)> {
        let mut grants = Vec::new();
        let mut creates = Vec::new();
        let mut queue = out;
        loop {
            while !queue.is_empty() {
                let mut next = Vec::new();
                for d in std::mem::take(&mut queue) {
                    if let Some(event) = self.answer(d, &mut grants, &mut creates) {
                        self.p.handle(self.now, event, &mut next).unwrap();
                    }
                }
                queue = next;
            }
            if creates.is_empty() {
                return grants;
            }
            self.now += self.start_ms;
            for op in std::mem::take(&mut creates) {
                self.containers += 1;
                let container_id = format!("container-{}", self.containers).into();
                let event = Event::ContainerCreated { op, container_id };
                self.p.handle(self.now, event, &mut queue).unwrap();
            }
        }
    }

    fn acquire(&mut self, function: FunctionSpec) -> Vec<Decision> {
        let request_id = self.request_id();
        let mut out = Vec::new();
        let deadline = self.now + DAY_MS;
        self.p
            .handle(
                self.now,
                Event::Acquire(Acquire {
                    request_id,
                    account_id: "account".into(),
                    function,
                    deadline,
                }),
                &mut out,
            )
            .unwrap();
        out
    }

    /// Returns calls that used their container's whole memory (so adaptive classifies every
    /// function memory-heavy: one call per container, each counting its limit).
    fn give_back(&mut self, grants: Vec<(Text, Text)>) {
        let mut out = Vec::new();
        for (request_id, container_id) in grants {
            self.p
                .handle(
                    self.now,
                    Event::Return(Return {
                        request_id,
                        container_id,
                        duration_ns: 1_000_000,
                        max_memory_bytes: 128 * MIB,
                        error: None,
                    }),
                    &mut out,
                )
                .unwrap();
        }
        self.settle(out);
    }

    fn tick(&mut self) -> Vec<(Text, Text)> {
        let mut out = Vec::new();
        self.p.handle(self.now, Event::Tick, &mut out).unwrap();
        self.settle(out)
    }

    /// `size` containers over 1,000 functions, all idle.
    fn build(policy: &str, size: usize) -> Fleet {
        let p = policy_by_name(policy, &PolicyOptions::default()).unwrap();
        let mut fleet = Fleet {
            p,
            now: 1_000,
            nodes: 0,
            containers: 0,
            requests: 0,
            start_ms: START_MS,
            refuse_reserves: false,
            refused: 0,
            cold: Vec::new(),
        };
        let mut out = Vec::new();
        for _ in 0..size / FUNCTIONS {
            for i in 0..FUNCTIONS {
                out.extend(fleet.acquire(spec(&format!("function-{i}"))));
            }
        }
        let mut grants = fleet.settle(out);
        // Policies that hold creates back (single-flight) start the rest on later ticks.
        while grants.len() < size {
            fleet.now += 1_000;
            grants.extend(fleet.tick());
            assert!(fleet.now < DAY_MS, "{policy}: the warm-up never completed");
        }
        fleet.now += 1;
        fleet.give_back(grants);
        fleet.now += 1;
        fleet.start_ms = 0;
        let snap = fleet.p.snapshot();
        assert_eq!(snap.containers_ready as usize, size, "{policy}: fleet size");
        eprintln!(
            "{policy} at {size}: {} containers ready on {} nodes",
            snap.containers_ready, snap.nodes_active
        );
        fleet
    }
}

fn warm(c: &mut Criterion) {
    let mut group = group(c, "warm_acquire_return", Duration::from_secs(1));
    for (policy, size) in cases() {
        let policy = policy.as_str();
        let mut fleet = Fleet::build(policy, size);
        let specs: Vec<FunctionSpec> = (0..FUNCTIONS)
            .map(|i| spec(&format!("function-{i}")))
            .collect();
        let mut i = 0;
        group.bench_function(BenchmarkId::new(policy, size), |b| {
            b.iter(|| {
                fleet.now += 1;
                let out = fleet.acquire(specs[i % FUNCTIONS].clone());
                i += 1;
                let grants = fleet.settle(out);
                assert_eq!(grants.len(), 1, "a warm acquire is granted at once");
                fleet.give_back(grants);
                black_box(&fleet.now);
            })
        });
    }
    group.finish();
}

fn cold(c: &mut Criterion) {
    let mut group = group(c, "cold_acquire_with_eviction", Duration::from_secs(1));
    for (policy, size) in cases() {
        let policy = policy.as_str();
        let mut fleet = Fleet::build(policy, size);
        if policy == "adaptive" {
            // Fill the last node, then have reserves fail: placement must evict.
            fleet.refuse_reserves = true;
            let mut k = 0;
            while fleet.refused == 0 {
                let out = fleet.acquire(spec(&format!("filler-{k}")));
                let grants = fleet.settle(out);
                fleet.give_back(grants);
                k += 1;
                assert!(k < 100, "the fleet never ran out of memory");
            }
        }
        let mut n = 0;
        group.bench_function(BenchmarkId::new(policy, size), |b| {
            b.iter(|| {
                n += 1;
                let name = match fleet.cold.pop() {
                    Some(name) => name,
                    None => format!("cold-{n}").into(),
                };
                let out = fleet.acquire(spec(&name));
                let grants = fleet.settle(out);
                // (The first may also grant the filler that waited for the reserve.)
                assert!(!grants.is_empty(), "{policy}: a cold acquire is granted");
                fleet.give_back(grants);
                if policy == "baseline" {
                    // The baseline never removes a container: retiring the function
                    // frees the slot for the next cold acquire.
                    let mut out = Vec::new();
                    let function = name.clone();
                    fleet
                        .p
                        .handle(fleet.now, Event::RetireFunction { function }, &mut out)
                        .unwrap();
                    fleet.settle(out);
                    fleet.cold.push(name);
                }
            })
        });
    }
    group.finish();
}

fn sweep(c: &mut Criterion) {
    let mut group = group(c, "sweep_tick", Duration::from_millis(500));
    for (policy, size) in cases() {
        let policy = policy.as_str();
        let mut fleet = Fleet::build(policy, size);
        let mut ticks = 0;
        group.bench_function(BenchmarkId::new(policy, size), |b| {
            b.iter_custom(|iters| {
                let mut spent = Duration::ZERO;
                for _ in 0..iters {
                    if ticks == SWEEP_TICKS {
                        fleet = Fleet::build(policy, size);
                        ticks = 0;
                    }
                    ticks += 1;
                    fleet.now += 1_000;
                    let started = clock::instant();
                    fleet.tick();
                    spent += started.elapsed();
                }
                spent
            })
        });
    }
    group.finish();
}

criterion_group!(benches, warm, cold, sweep);
criterion_main!(benches);
