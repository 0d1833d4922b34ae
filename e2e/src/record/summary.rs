//! A run's figures gathered as it goes ([`RunSummary`]): what the reports and the score need
//! from a run too long to keep a [`RequestRecord`](super::RequestRecord) per request.
//!
//! The simulator fills one (`faas_e2e::sim`, unless asked to keep the records) with
//! [`RunSummary::request`] as each request ends and [`RunSummary::container`] as each
//! container ends; its size grows with the functions, the containers alive at once and the
//! run's length in seconds (the time series), never with the requests. [`RunResult`]'s
//! accessors read it when it is there, with the same meaning as on the records:
//!
//! - counts (requests, errors by kind, cold starts) and the score's per-function totals: exact
//!   (sums of floating-point RTs added in another order: equal to ~1e-12);
//! - latency percentiles: from [`Histogram`]s, within 0.4% of the value;
//! - idle memory-time: each container's lifetime less the union of its calls' execution
//!   intervals, computed by the simulator as the calls start (exact);
//! - time series: counted per second ([`RunSummary::bucket_ms`]), so a series with buckets
//!   of whole seconds is exact; another width takes each second whole into the bucket where
//!   it starts.
//!
//! [`RunResult`]: super::RunResult

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::histogram::Histogram;

/// One function's requests.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FunctionSummary {
    pub calls: u64,
    pub ok: u64,
    pub errors: u64,
    pub cold_starts: u64,
    /// The sum of RT (scheduling latency + duration) over the successful calls, ms.
    pub ok_rt_ms: f64,
    /// The sum of RT over every call, ms.
    pub rt_sum_ms: f64,
    /// Response times, ms.
    pub response_ms: Histogram,
}

/// A run's figures without its records (see the module documentation).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    pub requests: u64,
    pub errors: u64,
    pub cold_starts: u64,
    /// Failed requests by kind: the error's text up to its first `": "`.
    pub errors_by_kind: BTreeMap<String, u64>,
    /// Indexed like the workload's functions; [`RunSummary::names`] holds their names.
    pub functions: Vec<FunctionSummary>,
    pub names: Vec<String>,
    pub response_ms: Histogram,
    pub scheduling_ms: Histogram,
    /// The last reply: the largest send time + response time, ms.
    pub last_reply_ms: f64,
    /// Containers that ended or were alive at the end.
    pub containers: u64,
    /// Memory-time containers held while serving nothing, MiB·s.
    pub idle_memory_mb_seconds: f64,
    /// The width of the series' buckets, ms; the first starts at 0.
    pub bucket_ms: i64,
    /// Cold starts per bucket, by send time.
    pub cold_starts_per_bucket: Vec<u64>,
    /// Failed requests per bucket, by send time.
    pub errors_per_bucket: Vec<u64>,
    /// Containers created minus removed at each bucket's start (a running sum gives the
    /// containers alive then).
    pub container_changes: Vec<i64>,
    /// Requests per bucket, by send time.
    #[serde(default)]
    pub calls_per_bucket: Vec<u64>,
    /// Response times of the cold calls, ms (the warm ones: `response_ms` without these).
    #[serde(default)]
    pub cold_response_ms: Histogram,
    /// Idle memory, MiB, changing at each bucket's start (a running sum gives the idle
    /// memory then): each container's idle memory-time spread evenly over its life (a
    /// container alive at the end: to the last reply).
    #[serde(default)]
    pub idle_mb_changes: Vec<f64>,
}

impl RunSummary {
    /// An empty summary for a workload with these functions.
    pub fn new(names: Vec<String>) -> RunSummary {
        RunSummary {
            requests: 0,
            errors: 0,
            cold_starts: 0,
            errors_by_kind: BTreeMap::new(),
            functions: vec![FunctionSummary::default(); names.len()],
            names,
            response_ms: Histogram::default(),
            scheduling_ms: Histogram::default(),
            last_reply_ms: 0.0,
            containers: 0,
            idle_memory_mb_seconds: 0.0,
            bucket_ms: 1000,
            cold_starts_per_bucket: Vec::new(),
            errors_per_bucket: Vec::new(),
            container_changes: Vec::new(),
            calls_per_bucket: Vec::new(),
            cold_response_ms: Histogram::default(),
            idle_mb_changes: Vec::new(),
        }
    }

    fn bump<T: Default + Clone + std::ops::AddAssign>(v: &mut Vec<T>, k: usize, by: T) {
        if k >= v.len() {
            v.resize(k + 1, T::default());
        }
        v[k] += by;
    }

    /// Counts one finished request of function `function` (its fields as a
    /// [`RequestRecord`](super::RequestRecord) would hold them).
    #[allow(clippy::too_many_arguments)]
    pub fn request(
        &mut self,
        function: usize,
        at_ms: u64,
        response_ms: f64,
        scheduling_ms: f64,
        duration_ms: f64,
        cold: bool,
        error: Option<&str>,
    ) {
        let bucket = (at_ms as i64 / self.bucket_ms) as usize;
        let rt = scheduling_ms + duration_ms;
        let f = &mut self.functions[function];
        f.calls += 1;
        f.rt_sum_ms += rt;
        f.response_ms.record(response_ms);
        self.requests += 1;
        Self::bump(&mut self.calls_per_bucket, bucket, 1);
        if cold {
            f.cold_starts += 1;
            self.cold_starts += 1;
            self.cold_response_ms.record(response_ms);
            Self::bump(&mut self.cold_starts_per_bucket, bucket, 1);
        }
        match error {
            None => {
                f.ok += 1;
                f.ok_rt_ms += rt;
            }
            Some(e) => {
                f.errors += 1;
                self.errors += 1;
                Self::bump(&mut self.errors_per_bucket, bucket, 1);
                let kind = e.split_once(": ").map_or(e, |(k, _)| k);
                match self.errors_by_kind.get_mut(kind) {
                    Some(n) => *n += 1,
                    None => {
                        self.errors_by_kind.insert(kind.to_string(), 1);
                    }
                }
            }
        }
        self.response_ms.record(response_ms);
        self.scheduling_ms.record(scheduling_ms);
        self.last_reply_ms = self.last_reply_ms.max(at_ms as f64 + response_ms);
    }

    /// Counts one container's life: created at `created_ms`, removed at `removed_ms` (`None`:
    /// alive at the end), idle for `idle_mb_seconds` MiB·s.
    pub fn container(&mut self, created_ms: i64, removed_ms: Option<i64>, idle_mb_seconds: f64) {
        self.containers += 1;
        self.idle_memory_mb_seconds += idle_mb_seconds;
        let first = |t: i64| (t.max(0) + self.bucket_ms - 1) / self.bucket_ms;
        let from = first(created_ms);
        let until = removed_ms.unwrap_or(self.last_reply_ms.ceil() as i64);
        let to = first(until).max(from + 1);
        let rate = idle_mb_seconds * 1000.0 / ((to - from) * self.bucket_ms) as f64;
        if rate > 0.0 {
            Self::bump(&mut self.idle_mb_changes, from as usize, rate);
            Self::bump(&mut self.idle_mb_changes, to as usize, -rate);
        }
        match removed_ms {
            Some(r) if r <= created_ms => {}
            Some(r) => {
                let to = first(r);
                if to > from {
                    Self::bump(&mut self.container_changes, from as usize, 1);
                    Self::bump(&mut self.container_changes, to as usize, -1);
                }
            }
            None => Self::bump(&mut self.container_changes, from as usize, 1),
        }
    }

    /// Re-buckets a per-second count into `n` buckets of `bucket_ms` from 0.
    pub(super) fn counts(&self, per_bucket: &[u64], bucket_ms: i64, n: usize) -> Vec<f64> {
        let mut values = vec![0.0; n];
        for (k, &c) in per_bucket.iter().enumerate() {
            let at = k as i64 * self.bucket_ms;
            if let Some(v) = values.get_mut((at / bucket_ms) as usize) {
                *v += c as f64;
            }
        }
        values
    }

    /// The containers alive at the start of each of `n` buckets of `bucket_ms` from 0.
    pub(super) fn alive(&self, bucket_ms: i64, n: usize) -> Vec<f64> {
        let mut alive = Vec::with_capacity(self.container_changes.len());
        let mut sum = 0i64;
        for &d in &self.container_changes {
            sum += d;
            alive.push(sum);
        }
        (0..n)
            .map(|k| {
                let second = (k as i64 * bucket_ms / self.bucket_ms) as usize;
                alive.get(second).or(alive.last()).copied().unwrap_or(0) as f64
            })
            .collect()
    }
}
