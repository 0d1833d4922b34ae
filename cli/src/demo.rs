//! `faas demo`: a mixed open-loop load over the default functions against a running
//! platform, and the table a person reads afterwards.
//!
//! Each function gets its own steady arrival rate; arrivals never wait for replies (open
//! loop), so a slow function shows up as latency, not as fewer calls.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use faas_common::stats::percentile_or_zero;
use faas_proto::resourcemanagerproto::GetNodesUsageRequest;
use faas_proto::resourcemanagerproto::resource_manager_client::ResourceManagerClient;

use crate::client::{Api, DEFAULT_ACCOUNT};

/// One function's share of the demo load.
#[derive(Clone, Debug)]
pub struct Stream {
    pub function: &'static str,
    /// Calls per second.
    pub rate: f64,
    pub event: &'static str,
}

/// The demo's mix: every default function, light ones often, heavy ones rarely.
pub fn default_mix() -> Vec<Stream> {
    vec![
        Stream {
            function: "hello",
            rate: 10.0,
            event: r#"{"name":"demo"}"#,
        },
        Stream {
            function: "echo",
            rate: 5.0,
            event: r#"{"say":"echo me"}"#,
        },
        Stream {
            function: "sleep",
            rate: 4.0,
            event: r#"{"ms":200}"#,
        },
        Stream {
            function: "cpu",
            rate: 2.0,
            event: r#"{"rounds":20000}"#,
        },
        Stream {
            function: "memory",
            rate: 1.0,
            event: r#"{"mb":32,"ms":100}"#,
        },
        Stream {
            function: "spin",
            rate: 2.0,
            event: r#"{"ms":50,"mb":8}"#,
        },
    ]
}

/// What one call gave.
#[derive(Clone, Debug)]
pub struct Sample {
    pub function: &'static str,
    pub latency_ms: f64,
    pub cold: bool,
    pub error: Option<String>,
}

/// One row of the table.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub function: String,
    pub calls: usize,
    pub errors: usize,
    pub cold_starts: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// Groups samples into one row per function, sorted by name.
pub fn summarize(samples: &[Sample]) -> Vec<Row> {
    let mut by_function: BTreeMap<&str, Vec<&Sample>> = BTreeMap::new();
    for s in samples {
        by_function.entry(s.function).or_default().push(s);
    }
    by_function
        .into_iter()
        .map(|(function, group)| {
            let mut ok: Vec<f64> = group
                .iter()
                .filter(|s| s.error.is_none())
                .map(|s| s.latency_ms)
                .collect();
            ok.sort_by(f64::total_cmp);
            Row {
                function: function.to_string(),
                calls: group.len(),
                errors: group.iter().filter(|s| s.error.is_some()).count(),
                cold_starts: group.iter().filter(|s| s.cold).count(),
                p50_ms: percentile_or_zero(&ok, 0.50),
                p99_ms: percentile_or_zero(&ok, 0.99),
            }
        })
        .collect()
}

/// The table as text.
pub fn render(rows: &[Row], node_seconds: f64) -> String {
    let mut out = format!(
        "{:<10} {:>7} {:>7} {:>11} {:>10} {:>10}\n",
        "function", "calls", "errors", "cold starts", "p50 ms", "p99 ms"
    );
    for r in rows {
        out.push_str(&format!(
            "{:<10} {:>7} {:>7} {:>11} {:>10.1} {:>10.1}\n",
            r.function, r.calls, r.errors, r.cold_starts, r.p50_ms, r.p99_ms
        ));
    }
    let total = |f: fn(&Row) -> usize| rows.iter().map(f).sum::<usize>();
    out.push_str(&format!(
        "{:<10} {:>7} {:>7} {:>11}\n",
        "total",
        total(|r| r.calls),
        total(|r| r.errors),
        total(|r| r.cold_starts)
    ));
    out.push_str(&format!("node-seconds: {node_seconds:.1}\n"));
    out
}

/// Sends the mix for `duration` and waits for every reply (each call bounded by its own
/// timeout). Returns every sample.
pub async fn run_load(api: &Api, mix: &[Stream], duration: Duration) -> Vec<Sample> {
    let samples = Arc::new(Mutex::new(Vec::new()));
    let start = faas_common::clock::tokio_instant();
    let mut generators = Vec::new();
    for (i, stream) in mix.iter().cloned().enumerate() {
        let api = api.clone();
        let samples = samples.clone();
        generators.push(tokio::spawn(async move {
            let period = Duration::from_secs_f64(1.0 / stream.rate);
            // Spread the streams' first calls over the first period.
            let offset = period.mul_f64(i as f64 / 8.0);
            let mut ticker = tokio::time::interval_at(start + offset, period);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let mut calls = Vec::new();
            loop {
                let at = ticker.tick().await;
                if at.duration_since(start) >= duration {
                    break;
                }
                let api = api.clone();
                let samples = samples.clone();
                calls.push(tokio::spawn(async move {
                    let sent = faas_common::clock::instant();
                    let result = api
                        .invoke(
                            DEFAULT_ACCOUNT,
                            stream.function,
                            stream.event.as_bytes().to_vec(),
                        )
                        .await;
                    let latency_ms = sent.elapsed().as_secs_f64() * 1e3;
                    let sample = match result {
                        Ok(o) => Sample {
                            function: stream.function,
                            latency_ms,
                            cold: o.cold.unwrap_or(false),
                            error: None,
                        },
                        Err(status) => Sample {
                            function: stream.function,
                            latency_ms,
                            cold: false,
                            error: Some(crate::client::describe(&status)),
                        },
                    };
                    samples
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(sample);
                }));
            }
            for call in calls {
                let _ = call.await;
            }
        }));
    }
    for g in generators {
        let _ = g.await;
    }
    let mut samples = samples.lock().unwrap_or_else(|e| e.into_inner());
    std::mem::take(&mut *samples)
}

/// Node-seconds so far from the resource manager's `GetNodesUsage`: each node from its
/// reserve until its release, or until `now_ms` while still held (the call carries the
/// platform's cluster token, `auth`).
pub async fn node_seconds(
    resource_manager: &str,
    now_ms: i64,
    auth: &faas_common::token::ClusterAuth,
) -> anyhow::Result<f64> {
    let channel = faas_common::serve::connect(resource_manager).await?;
    let nodes = ResourceManagerClient::new(auth.channel(channel))
        .get_nodes_usage(GetNodesUsageRequest {
            request_id: uuid::Uuid::new_v4().to_string(),
        })
        .await?
        .into_inner()
        .nodes;
    Ok(nodes
        .iter()
        .map(|n| {
            let end = if n.released_time_timestamp_ms > 0 {
                n.released_time_timestamp_ms
            } else {
                now_ms
            };
            (end - n.reserved_time_timestamp_ms).max(0) as f64 / 1e3
        })
        .sum())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(function: &'static str, latency_ms: f64, cold: bool, error: bool) -> Sample {
        Sample {
            function,
            latency_ms,
            cold,
            error: error.then(|| "UNKNOWN: boom".to_string()),
        }
    }

    #[test]
    fn summarize_counts_calls_errors_and_cold_starts_per_function() {
        let rows = summarize(&[
            sample("hello", 10.0, true, false),
            sample("hello", 2.0, false, false),
            sample("hello", 900.0, false, true),
            sample("echo", 3.0, true, false),
        ]);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].function, "echo");
        let hello = &rows[1];
        assert_eq!((hello.calls, hello.errors, hello.cold_starts), (3, 1, 1));
        // Failed calls do not count towards latency.
        assert_eq!(hello.p99_ms, 10.0);
        assert_eq!(hello.p50_ms, 2.0);
        let text = render(&rows, 12.5);
        assert!(text.contains("node-seconds: 12.5"), "{text}");
        assert!(
            text.lines()
                .any(|l| l.starts_with("total") && l.contains(" 4 ")),
            "{text}"
        );
    }
}
