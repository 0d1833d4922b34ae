//! The canary run's report: per time bucket the calls each version served, the calls the
//! fallback served, errors, latency and cold starts, with the canary's breaker state; the
//! same counts before the regression, during it and after the rollback (and in the 10 s on
//! each side of it); the breaker's transitions; the rollback's timings; every call and poll.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;
use serde::Serialize;

use super::record::{BreakerSample, CallRecord, Counts, RollbackRecord, Warmup};
use super::setup::routes_json;
use super::{ALIAS, CANARY, CANARY_WEIGHT, CanaryOptions, FAST_MS, FUNCTION, SLOW_MS, STABLE};

/// How far around the rollback cold starts are counted, ms.
pub const AROUND_ROLLBACK_MS: f64 = 10_000.0;

/// One row of the table: the calls sent in `[start_ms, end_ms)`.
#[derive(Clone, Debug, Serialize)]
pub struct Bucket {
    pub start_ms: u64,
    pub end_ms: u64,
    #[serde(flatten)]
    pub counts: Counts,
    /// The canary's breaker states polled in it, in order, repeats dropped.
    pub breaker: Vec<String>,
    /// `regression`, `rollback` when they fell in it.
    pub events: Vec<String>,
}

/// The counts of the run's phases (calls by send time).
#[derive(Clone, Debug, Serialize)]
pub struct Phases {
    pub before_regression: Counts,
    /// From the regression to the rollback's send.
    pub regression: Counts,
    /// Sent while the rollback was in flight.
    pub during_rollback: Counts,
    /// Sent after the rollback was answered.
    pub after_rollback: Counts,
    /// The 10 s before the rollback was sent and after it was answered.
    pub before_rollback_10s: Counts,
    pub after_rollback_10s: Counts,
}

/// The canary's breaker over the run.
#[derive(Clone, Debug, Serialize)]
pub struct BreakerSummary {
    /// Each transition the polls saw (a new `since`), ms after the load began, and the state
    /// the poll found.
    pub transitions: Vec<(f64, String)>,
    /// When it first opened after the regression, ms after the load began (from the open
    /// state's `since`, else the first poll that found it not closed).
    pub opened_at_ms: Option<f64>,
    /// How often the polls saw it open anew after the regression: the first opening, then
    /// one per failed round of probes.
    pub openings: usize,
    pub final_state: Option<String>,
    pub samples: Vec<BreakerSample>,
}

/// Two `since` values of polls closer than this are one transition: the API server reports
/// `since` as its wall clock minus a monotonic age, which moves by a millisecond between polls.
const SAME_TRANSITION_MS: f64 = 50.0;

impl BreakerSummary {
    fn new(samples: Vec<BreakerSample>, regression_at_ms: f64) -> BreakerSummary {
        // The first `since` a poll sees is the breaker's creation (or a transition before the
        // load); each one that differs from the one before is a transition.
        let mut transitions: Vec<(f64, String)> = Vec::new();
        let mut last_since: Option<f64> = None;
        for s in &samples {
            let Some(since) = s.since_ms else { continue };
            if last_since.is_some_and(|last| (since - last).abs() > SAME_TRANSITION_MS) {
                transitions.push((since, s.state.clone()));
            }
            last_since = Some(since);
        }
        let opened_at_ms = samples
            .iter()
            .filter(|s| {
                s.at_ms >= regression_at_ms && (s.state == "open" || s.state == "half_open")
            })
            .map(|s| match s.since_ms {
                Some(since) if s.state == "open" && since >= regression_at_ms => since,
                _ => s.at_ms,
            })
            .next();
        let openings = transitions
            .iter()
            .filter(|(at, state)| *at >= regression_at_ms && state == "open")
            .count();
        BreakerSummary {
            transitions,
            opened_at_ms,
            openings,
            final_state: samples.last().map(|s| s.state.clone()),
            samples,
        }
    }

    /// Whether it opened (or was seen open or half-open) after `t_ms`.
    pub fn opened_after(&self, t_ms: f64) -> bool {
        self.opened_at_ms.is_some_and(|o| o >= t_ms)
            || self
                .transitions
                .iter()
                .any(|(at, state)| *at >= t_ms && state != "closed")
    }
}

/// Everything a canary run measured.
#[derive(Clone, Debug, Serialize)]
pub struct CanaryReport {
    pub duration_ms: u64,
    pub rate: f64,
    pub bucket_ms: u64,
    pub regression_at_ms: u64,
    pub rollback_at_ms: u64,
    /// The setup, in words.
    pub setup: Vec<String>,
    pub routes: serde_json::Value,
    pub warmup: Warmup,
    pub rollback: RollbackRecord,
    pub totals: Counts,
    pub errors_by_code: BTreeMap<String, usize>,
    pub fallback_by_reason: BTreeMap<String, usize>,
    pub phases: Phases,
    pub breaker: BreakerSummary,
    pub buckets: Vec<Bucket>,
    pub calls: Vec<CallRecord>,
}

impl CanaryReport {
    pub fn new(
        options: &CanaryOptions,
        warmup: Warmup,
        rollback: RollbackRecord,
        samples: Vec<BreakerSample>,
        calls: Vec<CallRecord>,
    ) -> CanaryReport {
        let regression = options.regression_at_ms() as f64;
        let (sent, done) = (rollback.sent_at_ms, rollback.done_at_ms);
        let within = |from: f64, to: f64| {
            calls
                .iter()
                .filter(move |c| c.start_ms >= from && c.start_ms < to)
        };
        let phases = Phases {
            before_regression: Counts::of(within(0.0, regression)),
            regression: Counts::of(within(regression, sent)),
            during_rollback: Counts::of(within(sent, done)),
            after_rollback: Counts::of(within(done, f64::INFINITY)),
            before_rollback_10s: Counts::of(within(sent - AROUND_ROLLBACK_MS, sent)),
            after_rollback_10s: Counts::of(within(done, done + AROUND_ROLLBACK_MS)),
        };
        let mut errors_by_code = BTreeMap::new();
        let mut fallback_by_reason = BTreeMap::new();
        for c in &calls {
            if let Some(code) = &c.error {
                *errors_by_code.entry(code.clone()).or_insert(0) += 1;
            }
            if let Some(why) = c.fallback_reason.as_ref().filter(|_| c.by_fallback()) {
                *fallback_by_reason.entry(why.to_string()).or_insert(0) += 1;
            }
        }
        let breaker = BreakerSummary::new(samples, regression);
        let buckets = (0..options.duration_ms.div_ceil(options.bucket_ms))
            .map(|i| {
                let start_ms = i * options.bucket_ms;
                let end_ms = (start_ms + options.bucket_ms).min(options.duration_ms);
                let (from, to) = (start_ms as f64, end_ms as f64);
                let mut states: Vec<String> = Vec::new();
                for s in breaker
                    .samples
                    .iter()
                    .filter(|s| s.at_ms >= from && s.at_ms < to)
                {
                    if states.last() != Some(&s.state) {
                        states.push(s.state.clone());
                    }
                }
                let events = [("regression", regression), ("rollback", sent)]
                    .into_iter()
                    .filter(|(_, t)| *t >= from && *t < to)
                    .map(|(e, _)| e.to_string())
                    .collect();
                Bucket {
                    start_ms,
                    end_ms,
                    counts: Counts::of(within(from, to)),
                    breaker: states,
                    events,
                }
            })
            .collect();
        CanaryReport {
            duration_ms: options.duration_ms,
            rate: options.rate,
            bucket_ms: options.bucket_ms,
            regression_at_ms: options.regression_at_ms(),
            rollback_at_ms: options.rollback_at_ms(),
            setup: vec![
                format!(
                    "{FUNCTION}:{STABLE} = echo (stable), {FUNCTION}:{CANARY} = sleep (canary)"
                ),
                format!(
                    "{FUNCTION}:{ALIAS} = 1=100, then {}={},{CANARY}={CANARY_WEIGHT}",
                    STABLE,
                    100 - CANARY_WEIGHT
                ),
                format!("events {{\"ms\": {FAST_MS}}}, from the regression {{\"ms\": {SLOW_MS}}}"),
            ],
            routes: routes_json(),
            warmup,
            rollback,
            totals: Counts::of(&calls),
            errors_by_code,
            fallback_by_reason,
            phases,
            breaker,
            buckets,
            calls,
        }
    }

    /// The table and the totals, as printed.
    pub fn table(&self) -> String {
        let ms = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1}"));
        let mut out = String::new();
        let _ = writeln!(
            out,
            "canary: {} calls/s on {FUNCTION} for {:.0} s; regression at {:.1} s, rollback at \
             {:.1} s (v1 counts the calls the fallback served)",
            self.rate,
            self.duration_ms as f64 / 1e3,
            self.regression_at_ms as f64 / 1e3,
            self.rollback_at_ms as f64 / 1e3
        );
        let _ = writeln!(
            out,
            "{:>9} {:>6} {:>6} {:>5} {:>8} {:>6} {:>5} {:>8} {:>8}  {:<24} event",
            "t s",
            "calls",
            "v1",
            "v2",
            "fallback",
            "errors",
            "cold",
            "p50 ms",
            "p99 ms",
            "breaker shop:2"
        );
        for b in &self.buckets {
            let c = &b.counts;
            let _ = writeln!(
                out,
                "{:>9} {:>6} {:>6} {:>5} {:>8} {:>6} {:>5} {:>8} {:>8}  {:<24} {}",
                format!("{}-{}", b.start_ms / 1000, b.end_ms.div_ceil(1000)),
                c.calls,
                c.v1,
                c.v2,
                c.fallback,
                c.errors,
                c.cold_starts,
                ms(c.p50_ms),
                ms(c.p99_ms),
                if b.breaker.is_empty() {
                    "-".to_string()
                } else {
                    b.breaker.join(">")
                },
                b.events.join(", ")
            );
        }
        let t = &self.totals;
        let share = |n: usize| 100.0 * n as f64 / t.calls.max(1) as f64;
        let _ = writeln!(
            out,
            "total: {} calls, {} errors{}, {} served by the fallback ({:.1}%{}), {} cold starts, \
             p50 {} ms, p99 {} ms",
            t.calls,
            t.errors,
            listed(&self.errors_by_code),
            t.fallback,
            share(t.fallback),
            listed(&self.fallback_by_reason),
            t.cold_starts,
            ms(t.p50_ms),
            ms(t.p99_ms)
        );
        let p = &self.phases;
        let _ = writeln!(
            out,
            "before the regression: {} calls, v1 {}, v2 {} ({:.1}%)",
            p.before_regression.calls,
            p.before_regression.v1,
            p.before_regression.v2,
            100.0 * p.before_regression.v2 as f64 / p.before_regression.calls.max(1) as f64
        );
        let b = &self.breaker;
        let opened = match b.opened_at_ms {
            Some(at) => format!(
                "opened at {:.1} s ({:.1} s after the regression)",
                at / 1e3,
                (at - self.regression_at_ms as f64) / 1e3
            ),
            None => "never seen open after the regression".to_string(),
        };
        let _ = writeln!(
            out,
            "breaker shop:2: {opened}; seen opening {} times, {} transitions seen by the polls; \
             last state {}; during the regression {} calls, v2 {}, fallback {}",
            b.openings,
            b.transitions.len(),
            b.final_state.as_deref().unwrap_or("-"),
            p.regression.calls,
            p.regression.v2,
            p.regression.fallback
        );
        let _ = writeln!(out, "rollback: {}", self.rollback.line());
        let _ = writeln!(
            out,
            "cold starts: 10 s before the rollback {} (v1 {}), 10 s after {} (v1 {}); after the \
             rollback {} calls: v1 {}, v2 {}, other {}, errors {}, cold starts {}",
            p.before_rollback_10s.cold_starts,
            p.before_rollback_10s.cold_starts_v1,
            p.after_rollback_10s.cold_starts,
            p.after_rollback_10s.cold_starts_v1,
            p.after_rollback.calls,
            p.after_rollback.v1,
            p.after_rollback.v2,
            p.after_rollback.other,
            p.after_rollback.errors,
            p.after_rollback.cold_starts
        );
        let _ = write!(
            out,
            "warm-up before the load: {} direct calls, {} cold starts, {} errors",
            self.warmup.calls, self.warmup.cold_starts, self.warmup.errors
        );
        out
    }

    /// Writes the report, every call and poll included, as JSON.
    pub fn write_json(&self, path: &Path) -> anyhow::Result<()> {
        let file = std::fs::File::create(path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        serde_json::to_writer_pretty(std::io::BufWriter::new(file), self)
            .with_context(|| format!("cannot write {}", path.display()))
    }
}

/// ` (DEADLINE_EXCEEDED 2, NO_ANSWER 1)`, or nothing.
fn listed(counts: &BTreeMap<String, usize>) -> String {
    if counts.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = counts.iter().map(|(k, n)| format!("{k} {n}")).collect();
    format!(": {}", parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn breaker_transitions_come_from_new_since_values() {
        let sample = |at_ms: f64, state: &str, since_ms: Option<f64>| BreakerSample {
            at_ms,
            state: state.into(),
            since_ms,
            calls: 0,
            errors: 0,
            fallbacks: 0,
            window_p99_ms: 0.0,
        };
        let b = BreakerSummary::new(
            vec![
                sample(1_000.0, "closed", None),
                sample(2_000.0, "closed", Some(40.0)),
                sample(11_000.0, "open", Some(10_500.0)),
                sample(12_000.0, "open", Some(10_501.0)),
                sample(17_000.0, "open", Some(15_600.0)),
            ],
            10_000.0,
        );
        assert_eq!(b.transitions.len(), 2);
        assert_eq!(b.openings, 2);
        assert_eq!(b.opened_at_ms, Some(10_500.0));
        assert!(b.opened_after(10_000.0));
        assert!(!b.opened_after(20_000.0));
        assert_eq!(b.final_state.as_deref(), Some("open"));
    }
}
