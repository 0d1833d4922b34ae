//! The API server's Prometheus figures, all named `faas_apiserver_...` (README, "Metrics"):
//! invocations by function and outcome, server-side latency, time spent acquiring, cold
//! starts, and invocations in flight; the durable queue's in [`QueueMetrics`].
//!
//! Requests for functions that are not deployed are counted under the function `-`, so a
//! client cannot grow the label set with made-up names.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::api::queue_metrics::QueueMetrics;
use crate::service::routing::{FallbackReason, RouteNote};

/// The function label for requests that named no deployed function.
pub const UNKNOWN_FUNCTION: &str = "-";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub function: String,
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RetryLabels {
    /// Why the first attempt was run again (the code its container went back with).
    pub because: &'static str,
    /// `ok` when the retry succeeded, `failed` when not.
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TargetLabels {
    /// A concrete target: `hello` or `hello:3`.
    pub target: String,
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FallbackLabels {
    /// The concrete target the call was meant for (or the name called, when not found).
    pub target: String,
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BreakerLabels {
    pub target: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FunctionLabels {
    pub function: String,
}

fn latency_histogram() -> Histogram {
    // 1 ms to about 16 min.
    Histogram::new(exponential_buckets(0.001, 2.0, 21))
}

type HistogramFamily = Family<FunctionLabels, Histogram, fn() -> Histogram>;

/// The figures, registered in their own registry.
#[derive(Debug)]
pub struct Metrics {
    registry: Arc<Registry>,
    invocations: Family<OutcomeLabels, Counter>,
    latency: HistogramFamily,
    acquire: HistogramFamily,
    cold_starts: Family<FunctionLabels, Counter>,
    retries: Family<RetryLabels, Counter>,
    in_flight: Gauge,
    target_calls: Family<TargetLabels, Counter>,
    fallbacks: Family<FallbackLabels, Counter>,
    breaker_state: Family<BreakerLabels, Gauge>,
    breaker_transitions: Family<TargetLabels, Counter>,
    /// The durable queue's figures.
    pub queue: QueueMetrics,
    /// Topics and chains.
    pub events: crate::api::event_metrics::EventMetrics,
}

/// Counts one invocation in flight until dropped.
#[derive(Debug)]
pub struct InFlight(Gauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = faas_common::metrics::registry("apiserver");
        let invocations = Family::<OutcomeLabels, Counter>::default();
        let latency: HistogramFamily = Family::new_with_constructor(latency_histogram);
        let acquire: HistogramFamily = Family::new_with_constructor(latency_histogram);
        let cold_starts = Family::<FunctionLabels, Counter>::default();
        let retries = Family::<RetryLabels, Counter>::default();
        let in_flight = Gauge::default();
        registry.register(
            "invocations",
            "Invocations by function and outcome",
            invocations.clone(),
        );
        registry.register(
            "invocation_duration_seconds",
            "Server-side latency of invocations",
            latency.clone(),
        );
        registry.register(
            "acquire_duration_seconds",
            "Time spent acquiring a container from the scheduler",
            acquire.clone(),
        );
        registry.register(
            "cold_starts",
            "Invocations the scheduler created a container for",
            cold_starts.clone(),
        );
        registry.register(
            "retries",
            "Invocations run a second time because the first attempt never reached the function",
            retries.clone(),
        );
        registry.register(
            "invocations_in_flight",
            "Invocations being served now",
            in_flight.clone(),
        );
        let target_calls = Family::<TargetLabels, Counter>::default();
        registry.register(
            "target_calls",
            "Calls by the concrete target that ran them last (hello, hello:3) and outcome",
            target_calls.clone(),
        );
        let fallbacks = Family::<FallbackLabels, Counter>::default();
        registry.register(
            "fallbacks",
            "Calls the fallback served, by the target they were meant for and why",
            fallbacks.clone(),
        );
        let breaker_state = Family::<BreakerLabels, Gauge>::default();
        registry.register(
            "breaker_state",
            "Circuit breaker of a target: 0 closed, 1 open, 2 half-open",
            breaker_state.clone(),
        );
        let breaker_transitions = Family::<TargetLabels, Counter>::default();
        registry.register(
            "breaker_transitions",
            "Circuit breaker transitions, by target and the state entered (outcome)",
            breaker_transitions.clone(),
        );
        let queue = QueueMetrics::register(&mut registry);
        let events = crate::api::event_metrics::EventMetrics::register(&mut registry);
        Metrics {
            queue,
            events,
            target_calls,
            fallbacks,
            breaker_state,
            breaker_transitions,
            registry: Arc::new(registry),
            invocations,
            latency,
            acquire,
            cold_starts,
            retries,
            in_flight,
        }
    }

    /// The registry to serve.
    pub fn registry(&self) -> Arc<Registry> {
        self.registry.clone()
    }

    /// Counts an invocation as in flight until the guard drops.
    pub fn start(&self) -> InFlight {
        self.in_flight.inc();
        InFlight(self.in_flight.clone())
    }

    /// Records a finished invocation.
    pub fn finished(&self, function: &str, outcome: &'static str, latency: Duration) {
        self.invocations
            .get_or_create(&OutcomeLabels {
                function: function.to_string(),
                outcome,
            })
            .inc();
        self.latency
            .get_or_create(&FunctionLabels {
                function: function.to_string(),
            })
            .observe(latency.as_secs_f64());
    }

    /// Records what routing did with a call.
    pub fn routed(&self, note: &RouteNote, ok: bool) {
        if let Some(target) = &note.target {
            self.target_calls
                .get_or_create(&TargetLabels {
                    target: target.clone(),
                    outcome: if ok { "ok" } else { "failed" },
                })
                .inc();
        }
        if let Some(fb) = &note.fallback {
            // A target that was not found may be a name the caller made up: count it under
            // its function (which exists, or there would be no fallback), so callers cannot
            // grow the label set.
            let target = match fb.reason {
                FallbackReason::NotFound => {
                    fb.meant_for.split(':').next().unwrap_or("").to_string()
                }
                _ => fb.meant_for.clone(),
            };
            self.fallbacks
                .get_or_create(&FallbackLabels {
                    target,
                    reason: fb.reason.as_str(),
                })
                .inc();
        }
        for (target, t) in &note.transitions {
            let labels = BreakerLabels {
                target: target.clone(),
            };
            self.breaker_state.get_or_create(&labels).set(t.to.gauge());
            self.breaker_transitions
                .get_or_create(&TargetLabels {
                    target: target.clone(),
                    outcome: t.to.as_str(),
                })
                .inc();
        }
    }

    /// Records an invocation that was run a second time.
    pub fn retried(&self, because: &'static str, ok: bool) {
        self.retries
            .get_or_create(&RetryLabels {
                because,
                outcome: if ok { "ok" } else { "failed" },
            })
            .inc();
    }

    /// Records the acquire step of an invocation that got a container.
    pub fn acquired(&self, function: &str, acquire: Duration, cold_start: Option<bool>) {
        let labels = FunctionLabels {
            function: function.to_string(),
        };
        self.acquire
            .get_or_create(&labels)
            .observe(acquire.as_secs_f64());
        if cold_start == Some(true) {
            self.cold_starts.get_or_create(&labels).inc();
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_show_up_in_the_text() {
        let metrics = Metrics::new();
        {
            let _guard = metrics.start();
            let text = faas_common::metrics::render(&metrics.registry());
            assert!(
                text.contains("faas_apiserver_invocations_in_flight 1"),
                "{text}"
            );
        }
        metrics.finished("hello", "ok", Duration::from_millis(3));
        metrics.acquired("hello", Duration::from_millis(1), Some(true));
        metrics.retried("WrongFunction", true);
        let text = faas_common::metrics::render(&metrics.registry());
        assert!(
            text.contains("faas_apiserver_invocations_in_flight 0"),
            "{text}"
        );
        assert!(
            text.contains(r#"faas_apiserver_invocations_total{function="hello",outcome="ok"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"faas_apiserver_cold_starts_total{function="hello"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(
                r#"faas_apiserver_invocation_duration_seconds_count{function="hello"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"faas_apiserver_retries_total{because="WrongFunction",outcome="ok"} 1"#
            ),
            "{text}"
        );
    }
}
