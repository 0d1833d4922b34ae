//! What the report draws that a [`RunResult`]'s own accessors do not give: calls over time,
//! idle memory over time, and cold against warm response times, read from the records when
//! the run kept them, else from its [`RunSummary`](crate::record::RunSummary).
//!
//! Series start at 0 (the first send) in buckets of `bucket_ms`, as the summary's do.

use std::collections::HashMap;

use crate::record::{LatencySummary, RunResult, TimeSeries};

/// How many buckets of `bucket_ms` cover `[0, end_ms)`: at least one.
fn buckets(end_ms: i64, bucket_ms: i64) -> usize {
    ((end_ms + bucket_ms - 1) / bucket_ms).max(1) as usize
}

/// A summary's per-bucket values (buckets of `from_ms` from 0) summed into `n` buckets of
/// `bucket_ms`.
fn rebucket(values: impl Iterator<Item = f64>, from_ms: i64, bucket_ms: i64, n: usize) -> Vec<f64> {
    let mut out = vec![0.0; n];
    for (k, v) in values.enumerate() {
        if let Some(o) = out.get_mut((k as i64 * from_ms / bucket_ms) as usize) {
            *o += v;
        }
    }
    out
}

/// Calls sent per bucket.
pub fn calls_over_time(run: &RunResult, bucket_ms: i64) -> TimeSeries {
    let bucket_ms = bucket_ms.max(1);
    let n = buckets(run.effective_end_ms(), bucket_ms);
    let values = match &run.summary {
        Some(s) => rebucket(
            s.calls_per_bucket.iter().map(|c| *c as f64),
            s.bucket_ms,
            bucket_ms,
            n,
        ),
        None => {
            let mut v = vec![0.0; n];
            for r in &run.requests {
                if let Some(x) = v.get_mut((r.at_ms as i64 / bucket_ms) as usize) {
                    *x += 1.0;
                }
            }
            v
        }
    };
    TimeSeries {
        bucket_ms,
        start_ms: 0,
        values,
    }
}

/// The union of `intervals` clipped to `[from, to)`, as disjoint intervals in order.
fn merged(intervals: &mut [(f64, f64)], from: f64, to: f64) -> Vec<(f64, f64)> {
    intervals.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut out: Vec<(f64, f64)> = Vec::new();
    for &(a, z) in intervals.iter() {
        let (a, z) = (a.max(from), z.min(to));
        if z <= a {
            continue;
        }
        match out.last_mut() {
            Some(last) if a <= last.1 => last.1 = last.1.max(z),
            _ => out.push((a, z)),
        }
    }
    out
}

/// Adds `per_ms × (the part of [from, to) in each bucket)` to `values`.
fn spread(values: &mut [f64], bucket_ms: i64, from: f64, to: f64, per_ms: f64) {
    let b = bucket_ms as f64;
    let (from, to) = (from.max(0.0), to.min(values.len() as f64 * b));
    if to <= from {
        return;
    }
    let (k0, k1) = (
        (from / b) as usize,
        ((to / b).ceil() as usize).min(values.len()),
    );
    for (k, v) in values.iter_mut().enumerate().take(k1).skip(k0) {
        let (a, z) = (k as f64 * b, (k + 1) as f64 * b);
        let overlap = to.min(z) - from.max(a);
        if overlap > 0.0 {
            *v += per_ms * overlap;
        }
    }
}

/// Mean memory held by containers serving nothing in each bucket, MiB (`None` when the run
/// recorded no containers). From records: each container's limit over its life less its
/// calls' execution (as [`RunResult::idle_memory_mb_seconds`] counts it); from a summary:
/// each container's idle memory-time spread evenly over its life.
pub fn idle_memory_over_time(run: &RunResult, bucket_ms: i64) -> Option<TimeSeries> {
    let bucket_ms = bucket_ms.max(1);
    let end = run.effective_end_ms();
    let n = buckets(end, bucket_ms);
    let values = match &run.summary {
        Some(s) => {
            if s.containers == 0 {
                return None;
            }
            // A running sum of the changes gives the idle MiB in each summary bucket.
            let mut sum = 0.0;
            let per_bucket = s.idle_mb_changes.iter().map(|d| {
                sum += d;
                sum.max(0.0)
            });
            let mut v = rebucket(per_bucket, s.bucket_ms, bucket_ms, n);
            // Each target bucket summed `bucket_ms / s.bucket_ms` of them: the mean.
            let k = bucket_ms as f64 / s.bucket_ms as f64;
            v.iter_mut().for_each(|x| *x /= k.max(1.0));
            v
        }
        None => {
            if run.containers.is_empty() {
                return None;
            }
            let mut busy: HashMap<&str, Vec<(f64, f64)>> = HashMap::new();
            for r in &run.requests {
                if let Some(c) = &r.container_id {
                    let start = r.at_ms as f64 + r.scheduling_ms;
                    busy.entry(c.as_str())
                        .or_default()
                        .push((start, start + r.duration_ms.max(0.0)));
                }
            }
            let mut v = vec![0.0; n];
            let b = bucket_ms as f64;
            for c in &run.containers {
                let mib = c.memory_bytes as f64 / (1u64 << 20) as f64;
                let (from, to) = (
                    c.created_ms as f64,
                    c.removed_ms.map_or(end, |r| r.min(end)) as f64,
                );
                spread(&mut v, bucket_ms, from, to, mib / b);
                if let Some(calls) = busy.get_mut(c.id.as_str()) {
                    for (a, z) in merged(calls, from, to) {
                        spread(&mut v, bucket_ms, a, z, -mib / b);
                    }
                }
            }
            v.iter_mut().for_each(|x| *x = x.max(0.0));
            v
        }
    };
    Some(TimeSeries {
        bucket_ms,
        start_ms: 0,
        values,
    })
}

/// A run's calls split by whether a container was created for them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ColdWarm {
    pub cold_calls: u64,
    pub warm_calls: u64,
    pub cold: LatencySummary,
    pub warm: LatencySummary,
    /// Response times spread like each kind's (every value, or 500 from a summary): to draw
    /// their distributions.
    pub cold_values: Vec<f64>,
    pub warm_values: Vec<f64>,
}

/// Cold against warm response times.
pub fn cold_warm(run: &RunResult) -> ColdWarm {
    match &run.summary {
        Some(s) => {
            let warm = s.response_ms.without(&s.cold_response_ms);
            ColdWarm {
                cold_calls: s.cold_response_ms.count(),
                warm_calls: warm.count(),
                cold: s.cold_response_ms.summary(),
                warm: warm.summary(),
                cold_values: s.cold_response_ms.quantiles(500),
                warm_values: warm.quantiles(500),
            }
        }
        None => {
            let (cold, warm): (Vec<_>, Vec<_>) = run.requests.iter().partition(|r| r.cold);
            let cold_values: Vec<f64> = cold.iter().map(|r| r.response_ms).collect();
            let warm_values: Vec<f64> = warm.iter().map(|r| r.response_ms).collect();
            ColdWarm {
                cold_calls: cold.len() as u64,
                warm_calls: warm.len() as u64,
                cold: LatencySummary::of(cold_values.iter().copied()),
                warm: LatencySummary::of(warm_values.iter().copied()),
                cold_values,
                warm_values,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{ContainerLifetime, RunSummary};

    #[test]
    fn idle_memory_over_time_from_records_matches_the_total() {
        let mut r = crate::report::tests::run("p", 1.0, 1, 0);
        r.containers.push(ContainerLifetime {
            id: "spare".into(),
            node_id: "n0".into(),
            function: "f1".into(),
            memory_bytes: 1 << 30,
            created_ms: 10_000,
            removed_ms: Some(20_000),
        });
        let s = idle_memory_over_time(&r, 1000).unwrap();
        let mb_s: f64 = s.values.iter().sum::<f64>();
        let total = r.idle_memory_mb_seconds().unwrap();
        assert!((mb_s - total).abs() < 1e-6 * total, "{mb_s} vs {total}");
        // The spare GiB is idle from 10 s to 20 s, on top of the three 128 MiB containers'.
        assert!(
            s.values[15] >= 1024.0 && s.values[25] < 1024.0,
            "{:?}",
            s.values
        );
        // Calls: one every 50 ms, 20 per second.
        let calls = calls_over_time(&r, 1000);
        assert_eq!(calls.values[3], 20.0);
        assert_eq!(calls.values.iter().sum::<f64>(), 1000.0);
    }

    #[test]
    fn a_summary_gives_the_same_shapes() {
        let mut s = RunSummary::new(vec!["f".into()]);
        for k in 0..100u64 {
            s.request(
                0,
                k * 100,
                if k % 10 == 0 { 500.0 } else { 5.0 },
                1.0,
                4.0,
                k % 10 == 0,
                None,
            );
        }
        // 256 MiB idle for 4 of its 8 s.
        s.container(0, Some(8000), 1024.0);
        let mut r = RunResult::new("p", "w");
        r.end_ms = 10_000;
        r.summary = Some(Box::new(s));
        let calls = calls_over_time(&r, 2000);
        assert_eq!(calls.values, [20.0, 20.0, 20.0, 20.0, 20.0]);
        let idle = idle_memory_over_time(&r, 2000).unwrap();
        assert_eq!(idle.values, [128.0, 128.0, 128.0, 128.0, 0.0]);
        let cw = cold_warm(&r);
        assert_eq!((cw.cold_calls, cw.warm_calls), (10, 90));
        assert_eq!(cw.cold.p50, 500.0);
        assert!((cw.warm.p99 - 5.0).abs() < 0.05, "{:?}", cw.warm);
        let mut plain = crate::report::tests::run("p", 1.0, 1, 0);
        let cw = cold_warm(&plain);
        assert_eq!((cw.cold_calls, cw.warm_calls), (10, 990));
        plain.containers.clear();
        assert!(idle_memory_over_time(&plain, 1000).is_none());
    }
}
