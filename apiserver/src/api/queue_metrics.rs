//! The durable queue's Prometheus figures (README, "Metrics"), per function (`NAME`, its
//! versions and aliases counted under it; a name not deployed under `-`, as the runner
//! labels it): calls submitted, attempts delivered, retries
//! scheduled, calls dead-lettered (counters), and, read from the queue every second, its
//! depth, the age of its oldest call and its dead letters (gauges).

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::api::async_runner::base_name;
use crate::api::metrics::FunctionLabels;
use crate::service::async_calls::QueueStats;

/// The queue's figures.
#[derive(Debug, Default)]
pub struct QueueMetrics {
    submitted: Family<FunctionLabels, Counter>,
    deliveries: Family<FunctionLabels, Counter>,
    retries: Family<FunctionLabels, Counter>,
    dead_lettered: Family<FunctionLabels, Counter>,
    depth: Family<FunctionLabels, Gauge>,
    oldest_age: Family<FunctionLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    dead_letters: Family<FunctionLabels, Gauge>,
}

fn label(function: &str) -> FunctionLabels {
    FunctionLabels {
        function: base_name(function).to_string(),
    }
}

impl QueueMetrics {
    /// The figures, registered in `registry`.
    pub fn register(registry: &mut Registry) -> QueueMetrics {
        let m = QueueMetrics::default();
        registry.register(
            "async_submitted",
            "Asynchronous calls accepted into the durable queue",
            m.submitted.clone(),
        );
        registry.register(
            "async_deliveries",
            "Attempts of asynchronous calls delivered to the function (a retry or a re-delivery after a restart counts again)",
            m.deliveries.clone(),
        );
        registry.register(
            "async_retries",
            "Asynchronous calls queued again after a failure that may pass",
            m.retries.clone(),
        );
        registry.register(
            "async_dead_lettered",
            "Asynchronous calls moved to the dead-letter list after their last attempt",
            m.dead_lettered.clone(),
        );
        registry.register(
            "async_queue_depth",
            "Asynchronous calls queued or running",
            m.depth.clone(),
        );
        registry.register(
            "async_oldest_age_seconds",
            "Age of the oldest asynchronous call queued or running",
            m.oldest_age.clone(),
        );
        registry.register(
            "async_dead_letters",
            "Asynchronous calls on the dead-letter list",
            m.dead_letters.clone(),
        );
        m
    }

    pub fn submitted(&self, function: &str) {
        self.submitted.get_or_create(&label(function)).inc();
    }

    pub fn delivered(&self, function: &str) {
        self.deliveries.get_or_create(&label(function)).inc();
    }

    pub fn retried(&self, function: &str) {
        self.retries.get_or_create(&label(function)).inc();
    }

    pub fn dead_lettered(&self, function: &str) {
        self.dead_lettered.get_or_create(&label(function)).inc();
    }

    /// The gauges from the queue's figures now (`now_ms`: wall clock, ms since the Unix
    /// epoch); a function no longer in `stats` has no gauges.
    pub fn observe(&self, stats: &[QueueStats], now_ms: u64) {
        self.depth.clear();
        self.oldest_age.clear();
        self.dead_letters.clear();
        for s in stats {
            let l = label(&s.function);
            // Every function with calls shows every series, at 0 until something happens.
            for family in [
                &self.submitted,
                &self.deliveries,
                &self.retries,
                &self.dead_lettered,
            ] {
                drop(family.get_or_create(&l));
            }
            self.depth.get_or_create(&l).inc_by(s.depth as i64);
            self.dead_letters.get_or_create(&l).inc_by(s.dead as i64);
            let age = s
                .oldest_submitted_ms
                .map_or(0.0, |t| now_ms.saturating_sub(t) as f64 / 1e3);
            let g = self.oldest_age.get_or_create(&l);
            if age > g.get() {
                g.set(age);
            }
        }
    }
}
