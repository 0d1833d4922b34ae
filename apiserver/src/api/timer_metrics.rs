//! The timers' Prometheus figures (README, "Metrics"), per function: firings submitted to the
//! queue, missed slots dropped (`catch_up = skip`), and how late each firing was submitted
//! after its slot (the firing task's jitter).

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::api::metrics::FunctionLabels;

/// The timers' figures.
#[derive(Debug)]
pub struct TimerMetrics {
    firings: Family<FunctionLabels, Counter>,
    missed: Family<FunctionLabels, Counter>,
    late: Histogram,
}

impl TimerMetrics {
    /// The figures, registered in `registry`.
    pub fn register(registry: &mut Registry) -> TimerMetrics {
        let m = TimerMetrics {
            firings: Family::default(),
            missed: Family::default(),
            // 0.5 ms to about 65 s.
            late: Histogram::new(exponential_buckets(0.0005, 2.0, 18)),
        };
        registry.register(
            "timer_firings",
            "Schedule slots submitted to the asynchronous queue (a catch-up firing counts once)",
            m.firings.clone(),
        );
        registry.register(
            "timer_missed",
            "Schedule slots missed while the API server was down or stalled, and dropped",
            m.missed.clone(),
        );
        registry.register(
            "timer_late_seconds",
            "How long after its slot a firing was submitted to the queue",
            m.late.clone(),
        );
        m
    }

    /// A firing of `function` submitted `late_ms` after its slot.
    pub fn fired(&self, function: &str, late_ms: u64) {
        self.firings
            .get_or_create(&FunctionLabels {
                function: function.to_string(),
            })
            .inc();
        self.late.observe(late_ms as f64 / 1000.0);
    }

    /// `n` slots of `function` dropped.
    pub fn missed(&self, function: &str, n: u64) {
        self.missed
            .get_or_create(&FunctionLabels {
                function: function.to_string(),
            })
            .inc_by(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn firings_and_missed_slots_are_counted_per_function() {
        let mut registry = faas_common::metrics::registry("apiserver");
        let m = TimerMetrics::register(&mut registry);
        m.fired("hello", 3);
        m.fired("hello", 20);
        m.missed("hello", 5);
        let text = faas_common::metrics::render(&registry);
        assert!(
            text.contains("faas_apiserver_timer_firings_total{function=\"hello\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("faas_apiserver_timer_missed_total{function=\"hello\"} 5"),
            "{text}"
        );
        assert!(
            text.contains("faas_apiserver_timer_late_seconds_count 2"),
            "{text}"
        );
    }
}
