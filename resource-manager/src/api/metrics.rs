//! The manager's Prometheus figures: counters bumped on the request paths and by the health
//! watch (lock-free atomics; node failures and start failures by reason, every reason made
//! up front so it reads 0 before it happens) and a collector that reads the pool at scrape
//! time (nodes by state, failed ones included; refills owed; node time).

use std::sync::{Arc, Mutex, PoisonError};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use crate::api::clock::Clock;
use crate::core::Pool;
use crate::model::{FailureReason, NodeState};
use crate::service::{Metrics, StartFailure};

/// One `reason` label.
type Reason = [(&'static str, &'static str); 1];

/// Counters of what the manager did.
#[derive(Clone, Debug)]
pub struct Counters {
    pub reserves: Counter,
    pub releases: Counter,
    pub exhausted: Counter,
    pub handover_failures: Counter,
    pub node_starts: Counter,
    /// Starts that failed, by [`StartFailure`].
    pub node_start_failures: Family<Reason, Counter>,
    /// Ready or reserved nodes that failed, by [`FailureReason`].
    pub node_failures: Family<Reason, Counter>,
}

impl Default for Counters {
    fn default() -> Counters {
        let counters = Counters {
            reserves: Counter::default(),
            releases: Counter::default(),
            exhausted: Counter::default(),
            handover_failures: Counter::default(),
            node_starts: Counter::default(),
            node_start_failures: Family::default(),
            node_failures: Family::default(),
        };
        for kind in StartFailure::ALL {
            let _ = counters
                .node_start_failures
                .get_or_create(&[("reason", kind.as_str())]);
        }
        for reason in FailureReason::ALL {
            let _ = counters
                .node_failures
                .get_or_create(&[("reason", reason.as_str())]);
        }
        counters
    }
}

impl Counters {
    /// Counts a failed start.
    pub fn start_failed(&self, kind: StartFailure) {
        self.node_start_failures
            .get_or_create(&[("reason", kind.as_str())])
            .inc();
    }

    /// Counts a failed node.
    pub fn node_failed(&self, reason: FailureReason) {
        self.node_failures
            .get_or_create(&[("reason", reason.as_str())])
            .inc();
    }

    /// Failed starts so far, all reasons.
    pub fn start_failures(&self) -> u64 {
        StartFailure::ALL
            .iter()
            .map(|k| {
                self.node_start_failures
                    .get_or_create(&[("reason", k.as_str())])
                    .get()
            })
            .sum()
    }

    /// Failed nodes so far for `reason`.
    pub fn node_failures(&self, reason: FailureReason) -> u64 {
        self.node_failures
            .get_or_create(&[("reason", reason.as_str())])
            .get()
    }
}

impl Metrics for Counters {
    fn reserved(&self) {
        self.reserves.inc();
    }
    fn released(&self) {
        self.releases.inc();
    }
    fn exhausted(&self) {
        self.exhausted.inc();
    }
    fn handover_failed(&self) {
        self.handover_failures.inc();
    }
    fn node_starting(&self) {
        self.node_starts.inc();
    }
    fn start_failed(&self, kind: StartFailure) {
        Counters::start_failed(self, kind);
    }
    fn node_failed(&self, reason: FailureReason) {
        Counters::node_failed(self, reason);
    }
}

/// Reads the pool on each scrape.
#[derive(Debug)]
struct PoolCollector {
    pool: Arc<Mutex<Pool>>,
    clock: Clock,
}

impl Collector for PoolCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let now = self.clock.now_ms();
        let (counts, pending, slots, node_ms) = {
            let pool = self.pool.lock().unwrap_or_else(PoisonError::into_inner);
            (
                pool.counts(),
                pool.pending_refills(),
                pool.occupied_slots(),
                pool.node_ms(now),
            )
        };
        let gauge = ConstGauge::new(0i64);
        let mut family = encoder.encode_descriptor(
            "nodes",
            "Nodes by state (released: every node released so far)",
            None,
            gauge.metric_type(),
        )?;
        for state in NodeState::ALL {
            let labels = [("state", state.as_str())];
            let metric = family.encode_family(&labels)?;
            ConstGauge::new(counts.get(state) as i64).encode(metric)?;
        }
        let simple: [(&str, &str, f64); 2] = [
            (
                "pending_refills",
                "Refills owed to the pool and not started yet",
                pending as f64,
            ),
            (
                "occupied_slots",
                "Slots taken out of --max-nodes (live nodes plus released ones still cooling down)",
                slots as f64,
            ),
        ];
        for (name, help, value) in simple {
            let gauge = ConstGauge::new(value);
            let metric = encoder.encode_descriptor(name, help, None, gauge.metric_type())?;
            gauge.encode(metric)?;
        }
        let node_seconds = ConstCounter::new(node_ms as f64 / 1000.0);
        let metric = encoder.encode_descriptor(
            "node_seconds",
            "Node time so far: sum over reserved nodes of reserve-to-release (or now), seconds",
            None,
            node_seconds.metric_type(),
        )?;
        node_seconds.encode(metric)?;
        Ok(())
    }
}

/// The registry to serve: counters plus the pool collector, under `faas_resource_manager_`.
pub fn registry(counters: &Counters, pool: Arc<Mutex<Pool>>, clock: Clock) -> Registry {
    let mut root = Registry::default();
    let r = root.sub_registry_with_prefix(faas_common::metrics::prefix("resource-manager"));
    r.register(
        "reserves",
        "Nodes handed out by ReserveNode",
        counters.reserves.clone(),
    );
    r.register(
        "releases",
        "Nodes released by ReleaseNode",
        counters.releases.clone(),
    );
    r.register(
        "reserves_exhausted",
        "ReserveNode answers RESOURCE_EXHAUSTED (no node ready)",
        counters.exhausted.clone(),
    );
    r.register(
        "handover_failures",
        "Reserved nodes whose node service refused or missed Reserve (node dropped)",
        counters.handover_failures.clone(),
    );
    r.register("node_starts", "Nodes started", counters.node_starts.clone());
    r.register(
        "node_start_failures",
        "Nodes that failed to start, by reason (never reported ready; retried after the refill delay, with a back-off)",
        counters.node_start_failures.clone(),
    );
    r.register(
        "node_failures",
        "Ready or reserved nodes whose process exited or that stopped answering, by reason (killed; ready ones replaced)",
        counters.node_failures.clone(),
    );
    r.register_collector(Box::new(PoolCollector { pool, clock }));
    root
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{Action, PoolRules};
    use crate::model::{NodeEndpoint, StartedNode};

    #[test]
    fn renders_counters_and_pool_figures() {
        let mut pool = Pool::new(PoolRules {
            ready_nodes: 2,
            max_nodes: 2,
            ..PoolRules::default()
        });
        for a in pool.bootstrap(0) {
            if let Action::StartNode { node_id, .. } = a {
                let ep = NodeEndpoint {
                    address: "h".into(),
                    port: 1,
                };
                pool.node_started(&node_id, StartedNode::at(ep), 0);
            }
        }
        pool.reserve("acct", 0).unwrap();
        let counters = Counters::default();
        counters.reserves.inc();
        counters.node_failed(FailureReason::Unresponsive);
        counters.start_failed(StartFailure::Exited);
        let text = faas_common::metrics::render(&registry(
            &counters,
            Arc::new(Mutex::new(pool)),
            Clock::new(),
        ));
        assert!(
            text.contains("faas_resource_manager_reserves_total 1"),
            "{text}"
        );
        assert!(
            text.contains("faas_resource_manager_nodes{state=\"ready\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("faas_resource_manager_nodes{state=\"reserved\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("faas_resource_manager_pending_refills 1"),
            "{text}"
        );
        assert!(
            text.contains("faas_resource_manager_node_seconds_total "),
            "{text}"
        );
        for line in [
            "faas_resource_manager_node_failures_total{reason=\"unresponsive\"} 1",
            "faas_resource_manager_node_failures_total{reason=\"exited\"} 0",
            "faas_resource_manager_node_start_failures_total{reason=\"exited\"} 1",
            "faas_resource_manager_node_start_failures_total{reason=\"timeout\"} 0",
            "faas_resource_manager_nodes{state=\"failed\"} 0",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
        assert_eq!(counters.start_failures(), 1);
        assert_eq!(counters.node_failures(FailureReason::Unresponsive), 1);
    }
}
