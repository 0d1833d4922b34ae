//! What one run of a workload under one policy produced: a [`RequestRecord`] per request,
//! the nodes it held ([`NodeUsage`], from `GetNodesUsage`), the containers it kept where known
//! ([`ContainerLifetime`]), gathered in a [`RunResult`], and the figures derived from them
//! (node-seconds, idle memory-time, percentiles, time series).
//!
//! A run too long to keep its records (the simulator's big days) carries a [`RunSummary`]
//! instead: counts, histograms and series gathered as it went. The accessors below read it
//! when it is there, with the same meaning (see [`summary`] for what is exact and what is
//! within a histogram's error).
//!
//! All times are ms from the start of the run (the live driver's first send, or virtual time
//! 0 in the simulator). Node and container times are signed: a node reserved before the first
//! request (a scheduler warming up) has a negative `reserved_ms`.

use std::collections::HashMap;

use faas_common::stats::percentile_or_zero;
use serde::{Deserialize, Serialize};

use crate::fault::{InjectedFault, Leaks};

pub mod histogram;
pub mod summary;

use crate::score::RunTotals;
pub use histogram::Histogram;
pub use summary::{FunctionSummary, RunSummary};

/// One request as the client saw it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RequestRecord {
    /// The function's name.
    pub function: String,
    /// When it was sent, ms from the start of the run.
    pub at_ms: u64,
    /// From send to reply, as the client measured it, ms.
    pub response_ms: f64,
    /// Time spent in `AcquireContainer`, ms.
    pub scheduling_ms: f64,
    /// The function's own duration, ms (0 when it never ran).
    pub duration_ms: f64,
    /// Whether a container was created for it.
    pub cold: bool,
    /// Why it failed, if it did (a gRPC status, a function error code).
    pub error: Option<String>,
    pub node_id: Option<String>,
    pub container_id: Option<String>,
}

impl RequestRecord {
    /// The contest's RT: scheduling latency + function duration, ms.
    pub fn rt_ms(&self) -> f64 {
        self.scheduling_ms + self.duration_ms
    }
}

/// One node's reservation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeUsage {
    pub id: String,
    /// When `ReserveNode` succeeded, ms from the start of the run.
    pub reserved_ms: i64,
    /// When it was released (`None`: held to the end of the run).
    pub released_ms: Option<i64>,
}

impl NodeUsage {
    /// From a `GetNodesUsage` entry: epoch-ms timestamps, a release time of 0 meaning "not
    /// released", and the run's start in epoch ms.
    pub fn from_epoch_ms(
        id: impl Into<String>,
        reserved_epoch_ms: i64,
        released_epoch_ms: i64,
        run_start_epoch_ms: i64,
    ) -> Self {
        NodeUsage {
            id: id.into(),
            reserved_ms: reserved_epoch_ms - run_start_epoch_ms,
            released_ms: (released_epoch_ms > 0).then(|| released_epoch_ms - run_start_epoch_ms),
        }
    }

    /// The time held within a run that ended at `end_ms`, ms.
    pub fn held_ms(&self, end_ms: i64) -> i64 {
        (self.released_ms.unwrap_or(end_ms).min(end_ms) - self.reserved_ms).max(0)
    }
}

/// One container's life.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerLifetime {
    pub id: String,
    pub node_id: String,
    pub function: String,
    /// Its memory limit: what it holds on its node.
    pub memory_bytes: u64,
    pub created_ms: i64,
    /// `None`: still there at the end of the run.
    pub removed_ms: Option<i64>,
}

/// Percentiles of a set of latencies, ms (nearest rank on the sorted values).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    pub p50: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub mean: f64,
}

impl LatencySummary {
    /// Summarises the values (any order).
    pub fn of(values: impl IntoIterator<Item = f64>) -> Self {
        let mut v: Vec<f64> = values.into_iter().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return LatencySummary::default();
        }
        v.sort_by(f64::total_cmp);
        LatencySummary {
            p50: percentile_or_zero(&v, 0.50),
            p99: percentile_or_zero(&v, 0.99),
            p999: percentile_or_zero(&v, 0.999),
            max: v[v.len() - 1],
            mean: v.iter().sum::<f64>() / v.len() as f64,
        }
    }
}

/// Everything one run produced: the input of [`crate::score`] and [`crate::report`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RunResult {
    /// The scheduling policy's name ("baseline", "ours", ...).
    pub policy: String,
    /// The workload's name.
    pub workload: String,
    /// When the run ended (nodes still held count until here), ms.
    pub end_ms: i64,
    pub requests: Vec<RequestRecord>,
    pub nodes: Vec<NodeUsage>,
    /// Empty when the driver could not learn container lifetimes.
    pub containers: Vec<ContainerLifetime>,
    /// Anything the driver wants the report to show (warnings, settings).
    pub notes: Vec<String>,
    /// The faults struck during the run, in order (the fault bench).
    #[serde(default)]
    pub faults: Vec<InjectedFault>,
    /// What was left behind once the platform stopped (`None`: not measured).
    #[serde(default)]
    pub leaks: Option<Leaks>,
    /// The run's figures gathered as it went, when its records were not kept (`requests`
    /// and `containers` are then empty): the accessors read this instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<Box<RunSummary>>,
    /// A run through the durable queue (`faas replay --async`): each finished call's delay
    /// from submit to result, ms (server clock). Empty for a synchronous run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub end_to_end_ms: Vec<f64>,
}

/// A value per time bucket.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TimeSeries {
    /// Bucket width, ms.
    pub bucket_ms: i64,
    /// Start of the first bucket, ms.
    pub start_ms: i64,
    pub values: Vec<f64>,
}

impl RunResult {
    /// An empty result for `policy` on `workload`.
    pub fn new(policy: impl Into<String>, workload: impl Into<String>) -> Self {
        RunResult {
            policy: policy.into(),
            workload: workload.into(),
            ..RunResult::default()
        }
    }

    /// The run's end: `end_ms`, or the last moment recorded when that is later.
    pub fn effective_end_ms(&self) -> i64 {
        let summarised = self.summary.as_ref().map_or(0.0, |s| s.last_reply_ms);
        let last_request = self
            .requests
            .iter()
            .map(|r| r.at_ms as f64 + r.response_ms)
            .fold(summarised, f64::max)
            .ceil() as i64;
        self.end_ms.max(last_request)
    }

    /// ND: the sum over nodes of the time held, seconds.
    pub fn node_seconds(&self) -> f64 {
        let end = self.effective_end_ms();
        self.nodes.iter().map(|n| n.held_ms(end)).sum::<i64>() as f64 / 1000.0
    }

    /// How many requests the run made.
    pub fn request_count(&self) -> u64 {
        match &self.summary {
            Some(s) => s.requests,
            None => self.requests.len() as u64,
        }
    }

    pub fn errors(&self) -> u64 {
        if let Some(s) = &self.summary {
            return s.errors;
        }
        self.requests.iter().filter(|r| r.error.is_some()).count() as u64
    }

    pub fn cold_starts(&self) -> u64 {
        if let Some(s) = &self.summary {
            return s.cold_starts;
        }
        self.requests.iter().filter(|r| r.cold).count() as u64
    }

    /// What the score needs.
    pub fn totals(&self) -> RunTotals {
        let mut totals = RunTotals {
            node_seconds: self.node_seconds(),
            ..RunTotals::default()
        };
        if let Some(s) = &self.summary {
            for (name, f) in s.names.iter().zip(&s.functions) {
                if f.calls == 0 {
                    continue;
                }
                totals.functions.insert(
                    name.clone(),
                    crate::score::FunctionTotals {
                        calls: f.calls,
                        ok: f.ok,
                        ok_rt_ms: f.ok_rt_ms,
                    },
                );
                totals.requests += f.calls;
                totals.errors += f.errors;
            }
            return totals;
        }
        for r in &self.requests {
            totals.add(&r.function, r.rt_ms(), r.error.is_none());
        }
        totals
    }

    /// Memory-time containers held while serving nothing, MiB·s: for each container, its
    /// limit times (its lifetime minus the union of its requests' execution intervals, from
    /// the end of scheduling to the end of the function). `None` without container lifetimes.
    pub fn idle_memory_mb_seconds(&self) -> Option<f64> {
        if let Some(s) = &self.summary {
            return (s.containers > 0).then_some(s.idle_memory_mb_seconds);
        }
        if self.containers.is_empty() {
            return None;
        }
        let end = self.effective_end_ms() as f64;
        let mut busy: HashMap<&str, Vec<(f64, f64)>> = HashMap::new();
        for r in &self.requests {
            if let Some(c) = &r.container_id {
                let start = r.at_ms as f64 + r.scheduling_ms;
                busy.entry(c.as_str())
                    .or_default()
                    .push((start, start + r.duration_ms.max(0.0)));
            }
        }
        let mut total = 0.0;
        for c in &self.containers {
            let (from, to) = (
                c.created_ms as f64,
                c.removed_ms.map_or(end, |r| (r as f64).min(end)),
            );
            if to <= from {
                continue;
            }
            let busy_ms = busy
                .get_mut(c.id.as_str())
                .map_or(0.0, |v| union_length(v, from, to));
            let idle_s = ((to - from) - busy_ms).max(0.0) / 1000.0;
            total += c.memory_bytes as f64 / (1u64 << 20) as f64 * idle_s;
        }
        Some(total)
    }

    /// Response-time percentiles over every request.
    pub fn latency(&self) -> LatencySummary {
        if let Some(s) = &self.summary {
            return s.response_ms.summary();
        }
        LatencySummary::of(self.requests.iter().map(|r| r.response_ms))
    }

    /// End-to-end delay percentiles (submit to result) of a run through the queue; `None`
    /// for a synchronous run.
    pub fn end_to_end_latency(&self) -> Option<LatencySummary> {
        (!self.end_to_end_ms.is_empty())
            .then(|| LatencySummary::of(self.end_to_end_ms.iter().copied()))
    }

    /// Scheduling-latency percentiles over every request.
    pub fn scheduling_latency(&self) -> LatencySummary {
        if let Some(s) = &self.summary {
            return s.scheduling_ms.summary();
        }
        LatencySummary::of(self.requests.iter().map(|r| r.scheduling_ms))
    }

    /// A bucket width giving about 200 buckets over the run, at least 1 s.
    /// Whole seconds when the run has a summary (its series are counted per second).
    pub fn default_bucket_ms(&self) -> i64 {
        let width = (self.effective_end_ms() / 200).max(1000);
        match &self.summary {
            Some(s) => width / s.bucket_ms * s.bucket_ms,
            None => width,
        }
    }

    /// Response times of every request, or of one function's (`Some(name)`), in no order;
    /// from a summary, 500 values spread like them (enough to draw their distribution).
    pub fn response_times(&self, function: Option<&str>) -> Vec<f64> {
        if let Some(s) = &self.summary {
            let h = match function {
                None => Some(&s.response_ms),
                Some(f) => s
                    .names
                    .iter()
                    .position(|n| n == f)
                    .map(|i| &s.functions[i].response_ms),
            };
            return h.map_or_else(Vec::new, |h| h.quantiles(500));
        }
        self.requests
            .iter()
            .filter(|r| function.is_none_or(|f| r.function == f))
            .map(|r| r.response_ms)
            .collect()
    }

    fn span(&self) -> i64 {
        let first = self
            .nodes
            .iter()
            .map(|n| n.reserved_ms)
            .chain(self.containers.iter().map(|c| c.created_ms))
            .min()
            .unwrap_or(0);
        first.min(0)
    }

    /// Nodes held at the start of each bucket.
    pub fn nodes_over_time(&self, bucket_ms: i64) -> TimeSeries {
        let end = self.effective_end_ms();
        let intervals = self
            .nodes
            .iter()
            .map(|n| (n.reserved_ms, n.released_ms.unwrap_or(end)))
            .collect::<Vec<_>>();
        self.count_alive(&intervals, bucket_ms)
    }

    /// Containers alive at the start of each bucket.
    pub fn containers_over_time(&self, bucket_ms: i64) -> TimeSeries {
        if let Some(s) = &self.summary {
            let bucket_ms = bucket_ms.max(1);
            let n = buckets(0, self.effective_end_ms(), bucket_ms);
            return TimeSeries {
                bucket_ms,
                start_ms: 0,
                values: s.alive(bucket_ms, n),
            };
        }
        let end = self.effective_end_ms();
        let intervals = self
            .containers
            .iter()
            .map(|c| (c.created_ms, c.removed_ms.unwrap_or(end)))
            .collect::<Vec<_>>();
        self.count_alive(&intervals, bucket_ms)
    }

    fn count_alive(&self, intervals: &[(i64, i64)], bucket_ms: i64) -> TimeSeries {
        let bucket_ms = bucket_ms.max(1);
        let start = self.span();
        let end = self.effective_end_ms();
        let n = buckets(start, end, bucket_ms);
        let mut values = vec![0.0; n];
        for (k, v) in values.iter_mut().enumerate() {
            let t = start + k as i64 * bucket_ms;
            *v = intervals.iter().filter(|&&(a, b)| a <= t && t < b).count() as f64;
        }
        TimeSeries {
            bucket_ms,
            start_ms: start,
            values,
        }
    }

    /// Cold starts per bucket (by send time).
    pub fn cold_starts_over_time(&self, bucket_ms: i64) -> TimeSeries {
        if let Some(s) = &self.summary {
            return self.summarised(&s.cold_starts_per_bucket, bucket_ms);
        }
        self.requests_over_time(bucket_ms, |r| r.cold)
    }

    /// Failed requests per bucket (by send time).
    pub fn errors_over_time(&self, bucket_ms: i64) -> TimeSeries {
        if let Some(s) = &self.summary {
            return self.summarised(&s.errors_per_bucket, bucket_ms);
        }
        self.requests_over_time(bucket_ms, |r| r.error.is_some())
    }

    /// A summary's per-second counts in buckets of `bucket_ms` (the summary's series start
    /// at 0, as a simulated run's span does).
    fn summarised(&self, per_second: &[u64], bucket_ms: i64) -> TimeSeries {
        let bucket_ms = bucket_ms.max(1);
        let n = buckets(0, self.effective_end_ms(), bucket_ms);
        let s = self.summary.as_ref().expect("called with a summary");
        TimeSeries {
            bucket_ms,
            start_ms: 0,
            values: s.counts(per_second, bucket_ms, n),
        }
    }

    /// Requests that match `counted` per bucket (by send time).
    fn requests_over_time(
        &self,
        bucket_ms: i64,
        counted: impl Fn(&RequestRecord) -> bool,
    ) -> TimeSeries {
        let bucket_ms = bucket_ms.max(1);
        let start = self.span();
        let end = self.effective_end_ms();
        let n = buckets(start, end, bucket_ms);
        let mut values = vec![0.0; n];
        for r in self.requests.iter().filter(|r| counted(r)) {
            let k = ((r.at_ms as i64 - start) / bucket_ms) as usize;
            if let Some(v) = values.get_mut(k) {
                *v += 1.0;
            }
        }
        TimeSeries {
            bucket_ms,
            start_ms: start,
            values,
        }
    }
}

/// How many buckets of `bucket_ms` cover `[start, end)`: at least one.
fn buckets(start: i64, end: i64, bucket_ms: i64) -> usize {
    ((end - start + bucket_ms - 1) / bucket_ms).max(1) as usize
}

/// The length of the union of `intervals` clipped to `[from, to)`. Sorts `intervals`.
pub(crate) fn union_length(intervals: &mut [(f64, f64)], from: f64, to: f64) -> f64 {
    intervals.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut total = 0.0;
    let mut cur: Option<(f64, f64)> = None;
    for &(a, b) in intervals.iter() {
        let (a, b) = (a.max(from), b.min(to));
        if b <= a {
            continue;
        }
        cur = match cur {
            Some((ca, cb)) if a <= cb => Some((ca, cb.max(b))),
            Some((ca, cb)) => {
                total += cb - ca;
                Some((a, b))
            }
            None => Some((a, b)),
        };
    }
    if let Some((a, b)) = cur {
        total += b - a;
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn req(f: &str, at: u64, sched: f64, dur: f64, cold: bool) -> RequestRecord {
        RequestRecord {
            function: f.into(),
            at_ms: at,
            response_ms: sched + dur + 1.0,
            scheduling_ms: sched,
            duration_ms: dur,
            cold,
            error: None,
            node_id: Some("n1".into()),
            container_id: Some("c1".into()),
        }
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let s = LatencySummary::of((1..=1000).map(f64::from));
        assert_eq!((s.p50, s.p99, s.p999, s.max), (500.0, 990.0, 999.0, 1000.0));
        assert_eq!(LatencySummary::of([]), LatencySummary::default());
        let s = LatencySummary::of([3.0, 1.0, 2.0]);
        assert_eq!((s.p50, s.max, s.mean), (2.0, 3.0, 2.0));
    }

    #[test]
    fn node_seconds_count_to_release_or_end() {
        let mut r = RunResult::new("p", "w");
        r.end_ms = 10_000;
        r.nodes = vec![
            NodeUsage::from_epoch_ms("a", 1_000_000, 1_004_000, 1_000_000),
            NodeUsage::from_epoch_ms("b", 999_000, 0, 1_000_000),
        ];
        assert_eq!(r.nodes[1].reserved_ms, -1000);
        assert_eq!(r.nodes[1].released_ms, None);
        assert_eq!(r.node_seconds(), 4.0 + 11.0);
        let ts = r.nodes_over_time(1000);
        assert_eq!(ts.start_ms, -1000);
        assert_eq!(ts.values[0], 1.0);
        assert_eq!(ts.values[1], 2.0);
        assert_eq!(ts.values[6], 1.0);
    }

    #[test]
    fn idle_memory_subtracts_busy_time() {
        let mut r = RunResult::new("p", "w");
        r.end_ms = 10_000;
        assert_eq!(r.idle_memory_mb_seconds(), None);
        r.containers = vec![ContainerLifetime {
            id: "c1".into(),
            node_id: "n1".into(),
            function: "f".into(),
            memory_bytes: 512 << 20,
            created_ms: 0,
            removed_ms: Some(4_000),
        }];
        // Busy 1000..2000 and 1500..2500 (overlap) and 3500..4500 (clipped at 4000).
        r.requests = vec![
            req("f", 900, 100.0, 1000.0, true),
            req("f", 1500, 0.0, 1000.0, false),
            req("f", 3500, 0.0, 1000.0, false),
        ];
        // Lifetime 4 s, busy 1.5 + 0.5 s: idle 2 s x 512 MiB.
        assert!((r.idle_memory_mb_seconds().unwrap() - 1024.0).abs() < 1e-9);
        let t = r.totals();
        assert_eq!(t.requests, 3);
        assert_eq!(t.functions["f"].rt_ms(), Some(3100.0));
        assert_eq!(r.cold_starts(), 1);
        assert_eq!(r.cold_starts_over_time(1000).values[0], 1.0);
        assert_eq!(r.containers_over_time(1000).values[3], 1.0);
        assert_eq!(r.containers_over_time(1000).values[4], 0.0);
    }
}
