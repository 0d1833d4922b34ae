//! The node service's Prometheus figures, all named `faas_node_service_...` (README,
//! "Metrics"): containers created and removed, invocations by outcome, the cold-start
//! latency (CreateContainer until the container answers, from the warm pool or a new
//! process), and the warm pool's figures (read from the pool at each scrape by
//! [`WarmPoolCollector`]).

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::model::Failure;
use crate::service::WarmPool;

type Labels = Vec<(String, String)>;

/// Invocation outcomes, one counter each (made once so the hot path only increments).
#[derive(Debug, Clone)]
pub struct Outcomes {
    pub ok: Counter,
    pub function_error: Counter,
    pub timeout: Counter,
    pub out_of_memory: Counter,
    pub bad_event: Counter,
    pub container_exited: Counter,
    pub rejected: Counter,
}

/// Every metric of the node service.
#[derive(Debug)]
pub struct NodeMetrics {
    pub containers_created: Counter,
    pub containers_removed: Counter,
    pub container_create_failures: Counter,
    pub containers_running: Gauge,
    pub memory_committed_bytes: Gauge,
    /// Cold starts from the warm pool and from a new container.
    pub cold_start_pool: Histogram,
    pub cold_start_new: Histogram,
    pub invocations: Outcomes,
}

/// The prefix of every name here.
fn name(short: &str) -> String {
    format!("{}_{short}", faas_common::metrics::prefix("node-service"))
}

impl NodeMetrics {
    /// The metrics, registered in `registry`.
    pub fn register(registry: &mut Registry) -> NodeMetrics {
        let family: Family<Labels, Counter> = Family::default();
        let outcome =
            |name: &str| family.get_or_create_owned(&vec![("outcome".into(), name.into())]);
        // 5 ms .. ~82 s
        let cold: Family<Labels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.005, 2.0, 15)));
        let source = |s: &str| cold.get_or_create_owned(&vec![("source".into(), s.into())]);
        let m = NodeMetrics {
            containers_created: Counter::default(),
            containers_removed: Counter::default(),
            container_create_failures: Counter::default(),
            containers_running: Gauge::default(),
            memory_committed_bytes: Gauge::default(),
            cold_start_pool: source("warm_pool"),
            cold_start_new: source("new"),
            invocations: Outcomes {
                ok: outcome("ok"),
                function_error: outcome("function_error"),
                timeout: outcome("timeout"),
                out_of_memory: outcome("out_of_memory"),
                bad_event: outcome("bad_event"),
                container_exited: outcome("container_exited"),
                rejected: outcome("rejected"),
            },
        };
        registry.register(
            name("containers_created"),
            "Containers created",
            m.containers_created.clone(),
        );
        registry.register(
            name("containers_removed"),
            "Containers removed",
            m.containers_removed.clone(),
        );
        registry.register(
            name("container_create_failures"),
            "CreateContainer calls that failed",
            m.container_create_failures.clone(),
        );
        registry.register(
            name("containers_running"),
            "Containers running now",
            m.containers_running.clone(),
        );
        registry.register(
            name("memory_committed_bytes"),
            "Sum of the memory limits of the running containers",
            m.memory_committed_bytes.clone(),
        );
        registry.register(
            name("cold_start_seconds"),
            "Cold-start latency: CreateContainer's arrival until the container answers, by source (warm_pool: an unbound container bound; new: a container started)",
            cold,
        );
        registry.register(name("invocations"), "Invocations by outcome", family);
        m
    }

    /// Records one container created (a cold start) in `seconds`.
    pub fn cold_start(&self, seconds: f64, from_pool: bool) {
        match from_pool {
            true => self.cold_start_pool.observe(seconds),
            false => self.cold_start_new.observe(seconds),
        }
        self.containers_created.inc();
    }

    /// Counts one invocation's outcome (`None` = success).
    pub fn invocation(&self, failure: Option<&Failure>) {
        let o = &self.invocations;
        match failure.map(|f| f.code.as_str()) {
            None => o.ok.inc(),
            Some("Timeout") => o.timeout.inc(),
            Some("OutOfMemory") => o.out_of_memory.inc(),
            Some("BadEvent") => o.bad_event.inc(),
            Some(Failure::CONTAINER_EXITED) => o.container_exited.inc(),
            Some(_) => o.function_error.inc(),
        };
    }
}

/// The warm pool's figures, read at each scrape: `faas_node_service_warm_pool_size`, `_ready`,
/// `_starting` (gauges) and `_hits`, `_misses`, `_discarded`, `_start_failures` (counters).
#[derive(Debug)]
pub struct WarmPoolCollector(pub Arc<WarmPool>);

impl Collector for WarmPoolCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = self.0.stats();
        let gauges = [
            (
                "warm_pool_size",
                "Unbound containers the warm pool keeps (0 = off)",
                s.size,
            ),
            (
                "warm_pool_ready",
                "Warm pool containers ready to be bound",
                s.ready,
            ),
            (
                "warm_pool_starting",
                "Warm pool containers being started",
                s.starting,
            ),
        ];
        for (short, help, value) in gauges {
            let gauge = ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX));
            let full = name(short);
            let metric = encoder.encode_descriptor(&full, help, None, gauge.metric_type())?;
            gauge.encode(metric)?;
        }
        let counters = [
            (
                "warm_pool_hits",
                "Creates served from the warm pool",
                s.hits,
            ),
            (
                "warm_pool_misses",
                "Creates that started a container because no warm pool container was ready",
                s.misses,
            ),
            (
                "warm_pool_discarded",
                "Warm pool containers thrown away (exited while waiting, or failed to bind)",
                s.discarded,
            ),
            (
                "warm_pool_start_failures",
                "Warm pool containers that failed to start",
                s.start_failures,
            ),
        ];
        for (short, help, value) in counters {
            let counter = ConstCounter::new(value);
            let full = name(short);
            let metric = encoder.encode_descriptor(&full, help, None, counter.metric_type())?;
            counter.encode(metric)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_warm_pool_is_read_at_each_scrape() {
        let runtime = Arc::new(crate::api::process::ProcessRuntime::new(
            faas_common::launch::Launcher::new("/nonexistent/container-service", vec![]),
            std::time::Duration::from_secs(1),
        ));
        let invoker = Arc::new(crate::api::invoker::GrpcInvoker::default());
        let pool = WarmPool::new(3, runtime, invoker, std::time::Duration::from_secs(1));
        let mut registry = Registry::default();
        registry.register_collector(Box::new(WarmPoolCollector(pool)));
        let text = faas_common::metrics::render(&registry);
        for line in [
            "faas_node_service_warm_pool_size 3",
            "faas_node_service_warm_pool_ready 0",
            "faas_node_service_warm_pool_starting 0",
            "faas_node_service_warm_pool_hits_total 0",
            "faas_node_service_warm_pool_misses_total 0",
            "faas_node_service_warm_pool_discarded_total 0",
            "faas_node_service_warm_pool_start_failures_total 0",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in:\n{text}");
        }
    }

    #[test]
    fn outcomes_and_cold_starts_are_counted_by_label() {
        let mut registry = Registry::default();
        let m = NodeMetrics::register(&mut registry);
        m.invocation(None);
        m.invocation(Some(&Failure {
            code: "Timeout".into(),
            message: String::new(),
        }));
        m.cold_start(0.2, false);
        m.cold_start(0.01, true);
        let text = faas_common::metrics::render(&registry);
        for line in [
            r#"faas_node_service_cold_start_seconds_count{source="new"} 1"#,
            r#"faas_node_service_cold_start_seconds_count{source="warm_pool"} 1"#,
            "faas_node_service_containers_created_total 2",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line} in\n{text}");
        }
        assert!(
            text.contains(r#"faas_node_service_invocations_total{outcome="ok"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"faas_node_service_invocations_total{outcome="timeout"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"faas_node_service_invocations_total{outcome="bad_event"} 0"#),
            "{text}"
        );
    }
}
