//! What a canary run records: each call of the load, each poll of the canary's breaker,
//! the warm-up and the rollback; and the counts of a set of calls.

use faas_common::stats::percentile;
use faas_proto::admin;
use serde::Serialize;

use super::{ALIAS, CANARY, FUNCTION, STABLE};

/// One call of the load.
#[derive(Clone, Debug, Serialize)]
pub struct CallRecord {
    /// When it was sent, ms after the load began.
    pub start_ms: f64,
    /// The client's round trip, ms (`None`: no answer, or not sent).
    pub latency_ms: Option<f64>,
    /// Whether it carried the regression's event.
    pub slow_event: bool,
    /// `x-faas-version`, `x-faas-target`.
    pub version: Option<String>,
    pub target: Option<String>,
    /// `x-faas-fallback`: the fallback served it instead of this target, for this reason
    /// (`breaker_open`, `error`, ...).
    pub fallback_for: Option<String>,
    pub fallback_reason: Option<String>,
    /// `x-faas-cold-start`.
    pub cold: Option<bool>,
    /// The failure's status code (`DEADLINE_EXCEEDED`, `NO_ANSWER`, `NOT_SENT`); `None`: OK.
    pub error: Option<String>,
}

impl CallRecord {
    /// A call that got no answer.
    pub fn unanswered(start_ms: f64, slow_event: bool) -> CallRecord {
        CallRecord {
            start_ms,
            latency_ms: None,
            slow_event,
            version: None,
            target: None,
            fallback_for: None,
            fallback_reason: None,
            cold: None,
            error: Some("NO_ANSWER".to_string()),
        }
    }

    pub fn ok(&self) -> bool {
        self.error.is_none()
    }

    /// Whether version `v` served it (also as the fallback).
    pub fn served_by(&self, v: i64) -> bool {
        self.ok() && self.version.as_deref() == Some(v.to_string().as_str())
    }

    /// Whether the fallback served it.
    pub fn by_fallback(&self) -> bool {
        self.ok() && self.fallback_for.is_some()
    }

    pub fn is_cold(&self) -> bool {
        self.cold == Some(true)
    }
}

/// The canary target's status at one poll of `DescribeFunction`.
#[derive(Clone, Debug, Serialize)]
pub struct BreakerSample {
    /// When it was polled, ms after the load began.
    pub at_ms: f64,
    /// `closed`, `open`, `half_open`, or `absent` (no call reached the target yet).
    pub state: String,
    /// Its last transition, ms after the load began (negative: before; `None`: never).
    pub since_ms: Option<f64>,
    pub calls: u64,
    pub errors: u64,
    pub fallbacks: u64,
    pub window_p99_ms: f64,
}

impl BreakerSample {
    pub fn new(at_ms: f64, origin_unix_ms: i64, status: Option<admin::TargetStatus>) -> Self {
        let Some(s) = status else {
            return BreakerSample {
                at_ms,
                state: "absent".into(),
                since_ms: None,
                calls: 0,
                errors: 0,
                fallbacks: 0,
                window_p99_ms: 0.0,
            };
        };
        BreakerSample {
            at_ms,
            state: s.breaker,
            since_ms: (s.breaker_since_ms > 0)
                .then(|| (s.breaker_since_ms - origin_unix_ms) as f64),
            calls: s.calls,
            errors: s.errors,
            fallbacks: s.fallbacks,
            window_p99_ms: s.window_p99_ms,
        }
    }
}

/// The direct calls that warmed both versions before the load.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Warmup {
    pub calls: usize,
    pub cold_starts: usize,
    pub errors: usize,
}

/// The rollback, as the client saw it.
#[derive(Clone, Debug, Serialize)]
pub struct RollbackRecord {
    /// Sent and answered, ms after the load began.
    pub sent_at_ms: f64,
    pub done_at_ms: f64,
    pub round_trip_ms: f64,
    /// The server's own time (`RollbackAliasReply.took_us`).
    pub took_us: Option<i64>,
    /// Where the alias points now.
    pub alias_now: Option<String>,
    pub error: Option<String>,
}

impl RollbackRecord {
    pub fn line(&self) -> String {
        match (&self.error, self.took_us) {
            (Some(e), _) => format!("{:.1} s: the rollback failed: {e}", self.sent_at_ms / 1e3),
            (None, took) => format!(
                "{:.1} s: {FUNCTION}:{ALIAS} rolled back to {}: server {} µs, client round trip \
                 {:.2} ms",
                self.sent_at_ms / 1e3,
                self.alias_now.as_deref().unwrap_or("?"),
                took.map_or("?".into(), |t| t.to_string()),
                self.round_trip_ms
            ),
        }
    }
}

/// What a set of calls did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Counts {
    pub calls: usize,
    pub errors: usize,
    /// Served by version 1 (the fallback's included), by version 2, by anything else.
    pub v1: usize,
    pub v2: usize,
    pub other: usize,
    /// Served by the fallback.
    pub fallback: usize,
    pub cold_starts: usize,
    pub cold_starts_v1: usize,
    /// Client round trip of the successful calls, ms (nearest rank).
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

impl Counts {
    pub fn of<'a>(calls: impl IntoIterator<Item = &'a CallRecord>) -> Counts {
        let mut c = Counts::default();
        let mut latencies = Vec::new();
        for call in calls {
            c.calls += 1;
            if !call.ok() {
                c.errors += 1;
                continue;
            }
            latencies.extend(call.latency_ms);
            let (v1, v2) = (call.served_by(STABLE), call.served_by(CANARY));
            c.v1 += usize::from(v1);
            c.v2 += usize::from(v2);
            c.other += usize::from(!v1 && !v2);
            c.fallback += usize::from(call.by_fallback());
            c.cold_starts += usize::from(call.is_cold());
            c.cold_starts_v1 += usize::from(call.is_cold() && v1);
        }
        latencies.sort_by(f64::total_cmp);
        c.p50_ms = percentile(&latencies, 0.50);
        c.p99_ms = percentile(&latencies, 0.99);
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(start_ms: f64, version: &str, fallback: Option<&str>, cold: bool) -> CallRecord {
        CallRecord {
            start_ms,
            latency_ms: Some(start_ms / 100.0 + 1.0),
            slow_event: false,
            version: Some(version.into()),
            target: Some(format!("shop:{version}")),
            fallback_for: fallback.map(|_| "shop:2".to_string()),
            fallback_reason: fallback.map(str::to_string),
            cold: Some(cold),
            error: None,
        }
    }

    #[test]
    fn counts_split_versions_fallbacks_and_cold_starts() {
        let calls = [
            call(0.0, "1", None, true),
            call(100.0, "2", None, false),
            call(200.0, "1", Some("breaker_open"), false),
            CallRecord::unanswered(300.0, true),
        ];
        let c = Counts::of(&calls);
        assert_eq!((c.calls, c.errors, c.v1, c.v2, c.other), (4, 1, 2, 1, 0));
        assert_eq!((c.fallback, c.cold_starts, c.cold_starts_v1), (1, 1, 1));
        assert_eq!((c.p50_ms, c.p99_ms), (Some(2.0), Some(3.0)));
        assert!(calls[2].by_fallback() && !calls[1].by_fallback());
        assert_eq!(Counts::of(&[]).p99_ms, None);
    }
}
