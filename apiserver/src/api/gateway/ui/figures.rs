//! The dashboard's traffic figures, read from the API server's own Prometheus registry (the
//! one `/metrics` serves): calls, errors, latency and cold starts per function, calls and
//! breaker state per target (`hello`, `hello:3`), calls in flight. Two readings a moment
//! apart give rates ([`Figures::rates_since`]).
//!
//! The registry is read as text and matched by name here, in one place: a renamed metric is
//! one line of [`names`] to change (a missing one reads as 0, never as an error).

use std::collections::BTreeMap;

/// The metric names the dashboard reads (the API server's, `api/metrics.rs`).
pub mod names {
    /// Calls by `function` and `outcome` (a counter).
    pub const CALLS: &[&str] = &["faas_apiserver_invocations_total"];
    /// Server-side latency by `function` (a histogram, seconds).
    pub const LATENCY: &[&str] = &["faas_apiserver_invocation_duration_seconds"];
    /// Cold starts by `function` (a counter).
    pub const COLD: &[&str] = &["faas_apiserver_cold_starts_total"];
    /// Calls by `target` and `outcome` (a counter).
    pub const TARGET_CALLS: &[&str] = &["faas_apiserver_target_calls_total"];
    /// Breaker state by `target`: 0 closed, 1 open, 2 half-open (a gauge).
    pub const BREAKER: &[&str] = &["faas_apiserver_breaker_state"];
    /// Calls being served (a gauge).
    pub const IN_FLIGHT: &[&str] = &["faas_apiserver_invocations_in_flight"];
}

/// One function's counters.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FunctionFigures {
    /// Calls ended.
    pub calls: f64,
    /// Calls ended with an outcome other than `ok`.
    pub errors: f64,
    /// Sum of the calls' latencies, s.
    pub latency_sum: f64,
    /// Calls in the latency histogram.
    pub latency_count: f64,
    /// Cold starts.
    pub cold: f64,
}

/// One target's counters.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TargetFigures {
    /// Calls it ran.
    pub calls: f64,
    /// Of which failed.
    pub errors: f64,
    /// Its breaker: 0 closed, 1 open, 2 half-open; none if it never had one.
    pub breaker: Option<f64>,
}

/// One reading of the registry.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Figures {
    /// By function name.
    pub functions: BTreeMap<String, FunctionFigures>,
    /// By target (`NAME` or `NAME:N`).
    pub targets: BTreeMap<String, TargetFigures>,
    /// Calls in flight now.
    pub in_flight: f64,
}

impl Figures {
    /// Reads the text exposition of the registry (with `faas_common::metrics::exposition`;
    /// text it cannot read gives an empty reading).
    pub fn parse(text: &str) -> Figures {
        let mut f = Figures::default();
        let families = match faas_common::metrics::exposition::parse(text) {
            Ok(families) => families,
            Err(e) => {
                tracing::debug!(error = %e, "the dashboard cannot read the registry");
                return f;
            }
        };
        for sample in families.iter().flat_map(|family| &family.samples) {
            let (name, value) = (sample.name.as_str(), sample.value);
            let label = |key: &str| sample.labels.get(key).map(String::as_str);
            let is = |list: &[&str]| list.contains(&name);
            let histogram = |suffix: &str| {
                names::LATENCY
                    .iter()
                    .any(|n| name.strip_prefix(n) == Some(suffix))
            };
            if is(names::IN_FLIGHT) {
                f.in_flight = value;
                continue;
            }
            if let Some(function) = label("function") {
                let counted = is(names::CALLS) || is(names::COLD) || histogram("_sum");
                if !counted && !histogram("_count") {
                    continue;
                }
                let e = f.functions.entry(function.to_string()).or_default();
                if is(names::CALLS) {
                    e.calls += value;
                    if label("outcome") != Some("ok") {
                        e.errors += value;
                    }
                } else if is(names::COLD) {
                    e.cold += value;
                } else if histogram("_sum") {
                    e.latency_sum += value;
                } else {
                    e.latency_count += value;
                }
            }
            if let Some(target) = label("target") {
                let entry = f.targets.entry(target.to_string()).or_default();
                if is(names::TARGET_CALLS) {
                    entry.calls += value;
                    if label("outcome") != Some("ok") {
                        entry.errors += value;
                    }
                } else if is(names::BREAKER) {
                    entry.breaker = Some(value);
                }
            }
        }
        f.targets
            .retain(|_, t| t.calls > 0.0 || t.breaker.is_some());
        f
    }

    /// The dashboard's JSON of this reading against an `earlier` one `seconds` before:
    /// per function `calls`, `errors`, `cold_starts` (totals), `rps` and `latency_ms` (the
    /// mean over the interval, or over all calls when none ended in it); per target
    /// `calls`, `rps`, `breaker` (`closed`, `open`, `half-open` or null).
    pub fn rates_since(&self, earlier: &Figures, seconds: f64) -> serde_json::Value {
        let seconds = seconds.max(1e-3);
        let functions: Vec<_> = self
            .functions
            .iter()
            .map(|(name, now)| {
                let before = earlier.functions.get(name).cloned().unwrap_or_default();
                let dcount = now.latency_count - before.latency_count;
                let latency = if dcount > 0.0 {
                    (now.latency_sum - before.latency_sum) / dcount
                } else if now.latency_count > 0.0 {
                    now.latency_sum / now.latency_count
                } else {
                    0.0
                };
                serde_json::json!({
                    "name": name,
                    "calls": now.calls,
                    "errors": now.errors,
                    "cold_starts": now.cold,
                    "rps": ((now.calls - before.calls) / seconds).max(0.0),
                    "latency_ms": latency * 1000.0,
                })
            })
            .collect();
        let targets: Vec<_> = self
            .targets
            .iter()
            .map(|(name, now)| {
                let before = earlier.targets.get(name).map_or(0.0, |t| t.calls);
                let breaker = now.breaker.map(|b| match b as i64 {
                    1 => "open",
                    2 => "half-open",
                    _ => "closed",
                });
                serde_json::json!({
                    "target": name,
                    "calls": now.calls,
                    "errors": now.errors,
                    "rps": ((now.calls - before) / seconds).max(0.0),
                    "breaker": breaker,
                })
            })
            .collect();
        serde_json::json!({
            "functions": functions,
            "targets": targets,
            "in_flight": self.in_flight,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# HELP faas_apiserver_invocations Invocations by function and outcome.
# TYPE faas_apiserver_invocations counter
faas_apiserver_invocations_total{function="hello",outcome="ok"} 4
faas_apiserver_invocations_total{function="hello",outcome="timeout"} 1
# TYPE faas_apiserver_invocation_duration_seconds histogram
faas_apiserver_invocation_duration_seconds_sum{function="hello"} 0.5
faas_apiserver_invocation_duration_seconds_count{function="hello"} 5
faas_apiserver_invocation_duration_seconds_bucket{le="0.005",function="hello"} 2
# TYPE faas_apiserver_cold_starts counter
faas_apiserver_cold_starts_total{function="hello"} 1
# TYPE faas_apiserver_target_calls counter
faas_apiserver_target_calls_total{target="shop:2",outcome="ok"} 3
# TYPE faas_apiserver_breaker_state gauge
faas_apiserver_breaker_state{target="shop:2"} 1
# TYPE faas_apiserver_invocations_in_flight gauge
faas_apiserver_invocations_in_flight 2
# EOF
"#;

    #[test]
    fn reads_functions_targets_and_in_flight() {
        let f = Figures::parse(TEXT);
        let hello = &f.functions["hello"];
        assert_eq!((hello.calls, hello.errors, hello.cold), (5.0, 1.0, 1.0));
        assert_eq!((hello.latency_sum, hello.latency_count), (0.5, 5.0));
        assert_eq!(f.targets["shop:2"].calls, 3.0);
        assert_eq!(f.targets["shop:2"].breaker, Some(1.0));
        assert_eq!(f.in_flight, 2.0);
    }

    #[test]
    fn rates_come_from_two_readings() {
        let now = Figures::parse(TEXT);
        let json = now.rates_since(&Figures::default(), 2.0);
        let hello = &json["functions"][0];
        assert_eq!(hello["rps"], 2.5);
        assert_eq!(hello["latency_ms"], 100.0);
        assert_eq!(json["targets"][0]["breaker"], "open");
        let same = now.rates_since(&now, 1.0);
        assert_eq!(same["functions"][0]["rps"], 0.0);
        assert_eq!(
            same["functions"][0]["latency_ms"], 100.0,
            "all calls' mean when idle"
        );
    }

    #[test]
    fn escaped_labels_are_read_and_unreadable_text_is_an_empty_reading() {
        let text = "# TYPE faas_apiserver_cold_starts counter\n\
                    faas_apiserver_cold_starts_total{function=\"a\\\"b\"} 2\n";
        assert_eq!(Figures::parse(text).functions["a\"b"].cold, 2.0);
        assert_eq!(Figures::parse("garbage{"), Figures::default());
    }
}
