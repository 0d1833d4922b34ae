//! The container service's Prometheus figures (`--metrics-port`), read from its binding at
//! each scrape, so the invoke path pays nothing: whether it is bound, its invocations (in
//! flight and served), its memory (resident, limit) and its handler jobs on the blocking
//! pool. Every name starts `faas_container_service_` (README, "Metrics").

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use crate::binding::Binding;
use crate::memory::rss;

/// The registry to serve for `binding`.
pub fn registry(binding: Arc<Binding>) -> Registry {
    let mut registry = faas_common::metrics::registry("container-service");
    registry.register_collector(Box::new(BindingCollector(binding)));
    registry
}

#[derive(Debug)]
struct BindingCollector(Arc<Binding>);

fn gauge(encoder: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> std::fmt::Result {
    let g = ConstGauge::new(i64::try_from(v).unwrap_or(i64::MAX));
    g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)
}

impl Collector for BindingCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let e = &mut encoder;
        let exec = self.0.executor();
        let (status, limit, jobs) = match exec {
            Some(x) => (
                Some(x.status()),
                x.spec().memory_bytes,
                x.blocking_jobs().max(0) as u64,
            ),
            None => (None, 0, 0),
        };
        let in_flight = status.as_ref().map_or(0, |s| s.in_flight.max(0) as u64);
        let served = status.as_ref().map_or(0, |s| s.served.max(0) as u64);
        let rss_bytes = status
            .as_ref()
            .map_or_else(rss::current_rss_bytes, |s| s.rss_bytes);
        gauge(
            e,
            "bound",
            "1 once the container runs a function (started with one or bound), 0 while unbound",
            u64::from(exec.is_some()),
        )?;
        gauge(
            e,
            "invocations_in_flight",
            "Invocations running now",
            in_flight,
        )?;
        let c = ConstCounter::new(served);
        c.encode(e.encode_descriptor(
            "invocations",
            "Invocations finished, whatever their outcome",
            None,
            c.metric_type(),
        )?)?;
        gauge(
            e,
            "resident_memory_bytes",
            "Resident memory of the container service and its function's processes",
            rss_bytes,
        )?;
        gauge(
            e,
            "memory_limit_bytes",
            "The function's memory limit (0 while unbound)",
            limit,
        )?;
        gauge(
            e,
            "blocking_jobs",
            "Handler jobs still running on the blocking pool (a timed-out call's included)",
            jobs,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::binding::FunctionConfig;

    #[test]
    fn an_unbound_container_reads_zero_then_its_function_once_bound() {
        let binding = Arc::new(Binding::unbound(true));
        let registry = registry(binding.clone());
        let text = faas_common::metrics::render(&registry);
        assert!(
            text.lines().any(|l| l == "faas_container_service_bound 0"),
            "{text}"
        );
        assert!(
            text.lines()
                .any(|l| l == "faas_container_service_invocations_total 0"),
            "{text}"
        );
        binding
            .bind(&FunctionConfig {
                function_name: "f".into(),
                handler: "echo".into(),
                memory_bytes: 64 << 20,
                timeout_ms: 1000,
            })
            .unwrap();
        let text = faas_common::metrics::render(&registry);
        for line in [
            "faas_container_service_bound 1",
            "faas_container_service_memory_limit_bytes 67108864",
            "faas_container_service_invocations_in_flight 0",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line} in\n{text}");
        }
    }
}
