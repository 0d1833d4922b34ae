//! The scheduler's Prometheus figures: acquires and returns by outcome, the acquire wait-time
//! histogram (measured at the gRPC edge), and, read from the policy at each scrape, cold
//! starts, warm hits, containers and nodes by state, waiting and leased requests, node-seconds.

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
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            acquires: Family::default(),
            returns: Family::default(),
            // 0.1 ms .. ~54 s
            wait: Histogram::new(exponential_buckets(0.0001, 2.0, 20)),
        }
    }
}

impl Metrics {
    /// Counts one `AcquireContainer` answer (`cold`, `warm`, or an error kind) and its wait.
    pub fn acquired(&self, outcome: &'static str, wait_seconds: f64) {
        self.acquires.get_or_create(&[("outcome", outcome)]).inc();
        self.wait.observe(wait_seconds);
    }

    /// Counts one `ReturnContainer` answer (`ok` or an error kind).
    pub fn returned(&self, outcome: &'static str) {
        self.returns.get_or_create(&[("outcome", outcome)]).inc();
    }

    /// Registers these figures and a collector reading `snapshot` at each scrape.
    pub fn register(
        &self,
        registry: &mut Registry,
        snapshot: impl Fn() -> Snapshot + Send + Sync + 'static,
    ) {
        registry.register(
            "scheduler_acquires",
            "AcquireContainer answers by outcome (cold, warm or the error)",
            self.acquires.clone(),
        );
        registry.register(
            "scheduler_returns",
            "ReturnContainer answers by outcome",
            self.returns.clone(),
        );
        registry.register(
            "scheduler_acquire_wait_seconds",
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
            "scheduler_cold_starts",
            "Grants of a container created for the request",
            s.cold_starts,
        )?;
        counter(
            e,
            "scheduler_warm_hits",
            "Grants of an existing container",
            s.warm_hits,
        )?;
        counter(
            e,
            "scheduler_rejects",
            "Acquires answered with an error by the policy",
            s.rejects,
        )?;
        counter(
            e,
            "scheduler_container_deaths",
            "Containers reported dead",
            s.container_deaths,
        )?;
        counter(
            e,
            "scheduler_nodes_lost",
            "Nodes declared lost (failed every observation for the loss time) and released",
            s.nodes_lost,
        )?;
        counter(
            e,
            "scheduler_leases_expired",
            "Leases held past their function's timeout plus the grace, reclaimed",
            s.leases_expired,
        )?;
        gauge(
            e,
            "scheduler_nodes_suspect",
            "Nodes failing their health observations, not yet lost",
            s.nodes_suspect,
        )?;
        counter(
            e,
            "scheduler_node_seconds",
            "Node-seconds held so far (reserve to release): the contest's node duration",
            s.node_millis / 1000,
        )?;
        gauge_family(
            e,
            "scheduler_containers",
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
            "scheduler_nodes",
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
            "scheduler_waiting_requests",
            "Acquires waiting for a container",
            s.waiting,
        )?;
        gauge(
            e,
            "scheduler_leases",
            "Requests holding a container",
            s.leased,
        )?;
        gauge(e, "scheduler_functions", "Functions seen", s.functions)?;
        gauge(
            e,
            "scheduler_node_capacity_bytes",
            "Memory of the held nodes",
            s.node_capacity_bytes,
        )?;
        gauge(
            e,
            "scheduler_node_used_bytes",
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
        let text = faas_common::metrics::render(&registry);
        for needle in [
            "scheduler_acquires_total{outcome=\"warm\"} 1",
            "scheduler_returns_total{outcome=\"ok\"} 1",
            "scheduler_acquire_wait_seconds_count 1",
            "scheduler_cold_starts_total 3",
            "scheduler_warm_hits_total 7",
            "scheduler_containers{state=\"ready\"} 2",
            "scheduler_nodes{state=\"active\"} 1",
            "scheduler_node_seconds_total 12",
        ] {
            assert!(text.contains(needle), "missing {needle} in\n{text}");
        }
    }
}
