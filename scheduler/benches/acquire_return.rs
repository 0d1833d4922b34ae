//! Warm acquire + return pairs through each policy's `handle` (baseline, czy, adaptive), in
//! process, with 1,000 functions and 10,000 containers tracked (the scale the scheduler is
//! built for).
//!
//! `cargo bench -p faas-scheduler --bench acquire_return -- --quick`; criterion reports
//! pairs per second as elements/s. Each policy runs twice: `warm_acquire_return_pair` with
//! nobody listening for decision reasons (the default of the pure core), and
//! `..._explained` with a listener (reasons built, records made, as with the decision log
//! on).

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use faas_scheduler::core::{
    Acquire, Decision, Event, Policy, PolicyOptions, Return, policy_by_name,
};
use faas_scheduler::model::{FunctionSpec, MIB, NodeInfo, Text};
use faas_scheduler::service::decisions::records;

const FUNCTIONS: usize = 1_000;
const CONTAINERS_PER_FUNCTION: usize = 10;
const REQUEST_IDS: usize = 1 << 20;

/// Drives every reserve and create to completion.
fn settle(
    p: &mut dyn Policy,
    now: u64,
    mut out: Vec<Decision>,
    nodes: &mut u32,
    containers: &mut u32,
) {
    while !out.is_empty() {
        let mut next = Vec::new();
        for d in out {
            match d {
                Decision::ReserveNode { op } => {
                    *nodes += 1;
                    let node = NodeInfo {
                        id: format!("node-{nodes}").into(),
                        address: "10.0.0.1".into(),
                        port: 5000,
                        capacity_bytes: faas_scheduler::model::CONTEST_NODE_BYTES,
                    };
                    p.handle(now, Event::NodeReserved { op, node }, &mut next)
                        .unwrap();
                }
                Decision::CreateContainer { op, .. } => {
                    *containers += 1;
                    let container_id = format!("container-{containers}").into();
                    p.handle(now, Event::ContainerCreated { op, container_id }, &mut next)
                        .unwrap();
                }
                _ => {}
            }
        }
        out = next;
    }
}

fn warm_pairs(c: &mut Criterion) {
    for policy in ["baseline", "czy", "adaptive"] {
        warm_pairs_of(c, policy);
    }
}

fn warm_pairs_of(c: &mut Criterion, policy: &str) {
    let mut p = policy_by_name(policy, &PolicyOptions::default()).unwrap();
    let specs: Vec<FunctionSpec> = (0..FUNCTIONS)
        .map(|i| FunctionSpec {
            name: format!("function-{i}").into(),
            memory_bytes: 128 * MIB,
            timeout_ms: 60_000,
            handler: "index.handler".into(),
        })
        .collect();
    let account: Text = "account".into();
    let (mut nodes, mut containers) = (0, 0);
    let mut out = Vec::new();
    // Warm up: 10 concurrent requests per function, so 10 containers each.
    let mut held = Vec::new();
    for (i, spec) in specs.iter().enumerate() {
        for j in 0..CONTAINERS_PER_FUNCTION {
            let request_id: Text = format!("warmup-{i}-{j}").into();
            let mut decisions = Vec::new();
            p.handle(
                0,
                Event::Acquire(Acquire {
                    request_id: request_id.clone(),
                    account_id: account.clone(),
                    function: spec.clone(),
                    deadline: u64::MAX,
                }),
                &mut decisions,
            )
            .unwrap();
            out.extend(decisions);
            held.push(request_id);
        }
        settle(
            p.as_mut(),
            0,
            std::mem::take(&mut out),
            &mut nodes,
            &mut containers,
        );
    }
    // Policies that hold requests back (single-flight creates) start the rest on later ticks.
    let mut t = 0;
    while held.iter().any(|r| p.state().store.lease(r).is_none()) {
        t += 1000;
        assert!(t < 100_000, "{policy}: warm-up requests never granted");
        let mut decisions = Vec::new();
        p.handle(t, Event::Tick, &mut decisions).unwrap();
        settle(p.as_mut(), t, decisions, &mut nodes, &mut containers);
    }
    let grants: Vec<(Text, Text)> = held
        .iter()
        .map(|r| {
            let lease = p.state().store.lease(r).expect("granted");
            (r.clone(), lease.lease.container_id.clone())
        })
        .collect();
    for (request_id, container_id) in grants {
        p.handle(
            t + 1,
            Event::Return(Return {
                request_id,
                container_id,
                duration_ns: 1,
                max_memory_bytes: 1,
                error: None,
            }),
            &mut out,
        )
        .unwrap();
    }
    let snap = p.snapshot();
    assert_eq!(
        snap.containers_ready as usize,
        FUNCTIONS * CONTAINERS_PER_FUNCTION
    );
    eprintln!(
        "tracking {} functions, {} containers on {} nodes",
        snap.functions, snap.containers_ready, snap.nodes_active
    );

    let ids: Vec<Text> = (0..REQUEST_IDS)
        .map(|i| Arc::from(format!("req-{i:08x}-0000-4000-8000-000000000000")))
        .collect();
    let mut i = 0usize;
    let mut now = t + 2;
    let mut group = c.benchmark_group(policy);
    group.throughput(Throughput::Elements(1));
    // Each pair twice: nobody listening for reasons (the default of the pure core), then with
    // a listener: the policy builds its reasons and the driver's records are made from them
    // (`service::decisions::records`), as when the decision log is on.
    for (name, explained) in [
        ("warm_acquire_return_pair", false),
        ("warm_acquire_return_pair_explained", true),
    ] {
        if let Some(reasons) = p.reasons() {
            reasons.listen(explained);
        }
        group.bench_function(name, |b| {
            b.iter(|| {
                let request_id = ids[i % REQUEST_IDS].clone();
                let spec = &specs[i % FUNCTIONS];
                i += 1;
                now += 1;
                out.clear();
                p.handle(
                    now,
                    Event::Acquire(Acquire {
                        request_id: request_id.clone(),
                        account_id: account.clone(),
                        function: spec.clone(),
                        deadline: now + 30_000,
                    }),
                    &mut out,
                )
                .unwrap();
                if explained {
                    let notes = p.reasons().map(|r| r.take()).unwrap_or_default();
                    black_box(records(p.state(), &out, notes, now));
                }
                let Some(Decision::Grant(g)) = out.pop() else {
                    panic!("a warm acquire is granted at once");
                };
                p.handle(
                    now,
                    Event::Return(Return {
                        request_id,
                        container_id: g.container_id,
                        duration_ns: 1_000_000,
                        max_memory_bytes: MIB,
                        error: None,
                    }),
                    &mut out,
                )
                .unwrap();
                if explained {
                    let notes = p.reasons().map(|r| r.take()).unwrap_or_default();
                    black_box(records(p.state(), &out, notes, now));
                }
                black_box(&out);
            })
        });
    }
    group.finish();
}

criterion_group!(benches, warm_pairs);
criterion_main!(benches);
