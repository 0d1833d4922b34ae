//! The scheduler's Prometheus figures, all named `faas_scheduler_...` (README, "Metrics"):
//! acquires and returns by outcome, the acquire wait-time histogram and the scheduling
//! latency of grants (arrival to grant, cold or warm; measured at the gRPC edge), and, read
//! from the policy at each scrape, cold starts, warm hits, containers and nodes by state,
//! waiting and leased requests, node-seconds.

use std::fmt;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::core::Snapshot;

type Outcome = [(&'static str, &'static str); 1];

/// Figures the gRPC edge records.
#[derive(Clone)]
pub struct Metrics {
    acquires: Family<Outcome, Counter>,
    returns: Family<Outcome, Counter>,
    wait: Histogram,
    scheduling: Family<Start, Histogram, fn() -> Histogram>,
}

/// The `start` label of a grant: `cold` (a container was created for it) or `warm`.
type Start = [(&'static str, &'static str); 1];

/// 0.1 ms .. ~54 s
fn wait_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 2.0, 20))
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            acquires: Family::default(),
            returns: Family::default(),
            wait: wait_histogram(),
            scheduling: Family::new_with_constructor(wait_histogram),
        }
    }
}

impl Metrics {
    /// Counts one `AcquireContainer` answer (`cold`, `warm`, or an error kind) and its wait;
    /// a grant (`cold` or `warm`) is also a scheduling latency.
    pub fn acquired(&self, outcome: &'static str, wait_seconds: f64) {
        self.acquires.get_or_create(&[("outcome", outcome)]).inc();
        self.wait.observe(wait_seconds);
        if matches!(outcome, "cold" | "warm") {
            self.scheduling
                .get_or_create(&[("start", outcome)])
                .observe(wait_seconds);
        }
    }

    /// Counts one `ReturnContainer` answer (`ok` or an error kind).
    pub fn returned(&self, outcome: &'static str) {
        self.returns.get_or_create(&[("outcome", outcome)]).inc();
    }

    /// Registers these figures (under `faas_scheduler_`) and a collector reading `snapshot`
    /// at each scrape.
    pub fn register(
        &self,
        root: &mut Registry,
        snapshot: impl Fn() -> Snapshot + Send + Sync + 'static,
    ) {
        let registry = root.sub_registry_with_prefix(faas_common::metrics::prefix("scheduler"));
        for start in ["cold", "warm"] {
            let _ = self.scheduling.get_or_create(&[("start", start)]);
        }
        registry.register(
            "scheduling_latency_seconds",
            "Time from AcquireContainer's arrival to its grant, by start (cold: a container was created for it; warm)",
            self.scheduling.clone(),
        );
        registry.register(
            "acquires",
            "AcquireContainer answers by outcome (cold, warm or the error)",
            self.acquires.clone(),
        );
        registry.register(
            "returns",
            "ReturnContainer answers by outcome",
            self.returns.clone(),
        );
        registry.register(
            "acquire_wait_seconds",
            "Time from AcquireContainer's arrival to its answer",
            self.wait.clone(),
        );
        registry.register_collector(Box::new(SnapshotCollector(Arc::new(snapshot))));
    }
}

struct SnapshotCollector(Arc<dyn Fn() -> Snapshot + Send + Sync>);

impl fmt::Debug for SnapshotCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SnapshotCollector")
    }
}

fn gauge_family(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    label: &'static str,
    values: &[(&'static str, u64)],
) -> Result<(), fmt::Error> {
    let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (value, n) in values {
        let labels = [(label, *value)];
        let family = metric.encode_family(&labels)?;
        ConstGauge::new(*n as i64).encode(family)?;
    }
    Ok(())
}

fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    v: u64,
) -> Result<(), fmt::Error> {
    let g = ConstGauge::new(v as i64);
    g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)
}

fn counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    v: u64,
) -> Result<(), fmt::Error> {
    let c = ConstCounter::new(v);
    c.encode(encoder.encode_descriptor(name, help, None, c.metric_type())?)
}

impl Collector for SnapshotCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let s = (self.0)();
        let e = &mut encoder;
        counter(
            e,
            "cold_starts",
            "Grants of a container created for the request",
            s.cold_starts,
        )?;
        counter(
            e,
            "warm_hits",
            "Grants of an existing container",
            s.warm_hits,
        )?;
        counter(
            e,
            "rejects",
            "Acquires answered with an error by the policy",
            s.rejects,
        )?;
        counter(
            e,
            "container_deaths",
            "Containers reported dead",
            s.container_deaths,
        )?;
        counter(
            e,
            "nodes_lost",
            "Nodes declared lost (failed every observation for the loss time) and released",
            s.nodes_lost,
        )?;
        counter(
            e,
            "leases_expired",
            "Leases held past their function's timeout plus the grace, reclaimed",
            s.leases_expired,
        )?;
        gauge(
            e,
            "nodes_suspect",
            "Nodes failing their health observations, not yet lost",
            s.nodes_suspect,
        )?;
        counter(
            e,
            "node_seconds",
            "Node-seconds held so far (reserve to release): the contest's node duration",
            s.node_millis / 1000,
        )?;
        gauge_family(
            e,
            "containers",
            "Containers by state",
            "state",
            &[
                ("creating", s.containers_creating),
                ("ready", s.containers_ready),
                ("removing", s.containers_removing),
                ("dead", s.containers_dead),
            ],
        )?;
        gauge_family(
            e,
            "nodes",
            "Nodes by state",
            "state",
            &[
                ("reserving", s.reserves_in_flight),
                ("active", s.nodes_active),
                ("draining", s.nodes_draining),
                ("releasing", s.nodes_releasing),
            ],
        )?;
        gauge(
            e,
            "waiting_requests",
            "Acquires waiting for a container",
            s.waiting,
        )?;
        gauge(e, "leases", "Requests holding a container", s.leased)?;
        gauge(e, "functions", "Functions seen", s.functions)?;
        gauge(
            e,
            "node_capacity_bytes",
            "Memory of the held nodes",
            s.node_capacity_bytes,
        )?;
        gauge(
            e,
            "node_used_bytes",
            "Memory given to containers",
            s.node_used_bytes,
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_edge_figures_and_the_snapshot() {
        let m = Metrics::default();
        let mut registry = Registry::default();
        m.register(&mut registry, || Snapshot {
            cold_starts: 3,
            warm_hits: 7,
            containers_ready: 2,
            nodes_active: 1,
            node_millis: 12_500,
            ..Snapshot::default()
        });
        m.acquired("warm", 0.001);
        m.returned("ok");
        m.acquired("invalid", 0.002);
        let text = faas_common::metrics::render(&registry);
        for needle in [
            "faas_scheduler_acquires_total{outcome=\"warm\"} 1",
            "faas_scheduler_returns_total{outcome=\"ok\"} 1",
            "faas_scheduler_acquire_wait_seconds_count 2",
            "faas_scheduler_scheduling_latency_seconds_count{start=\"warm\"} 1",
            "faas_scheduler_scheduling_latency_seconds_count{start=\"cold\"} 0",
            "faas_scheduler_cold_starts_total 3",
            "faas_scheduler_warm_hits_total 7",
            "faas_scheduler_containers{state=\"ready\"} 2",
            "faas_scheduler_nodes{state=\"active\"} 1",
            "faas_scheduler_node_seconds_total 12",
        ] {
            assert!(text.contains(needle), "missing {needle} in\n{text}");
        }
    }
}
