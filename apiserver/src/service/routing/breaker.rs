//! A circuit breaker for one target: pure, time as an argument.
//!
//! ```text
//!            p99 > baseline + margin, or error share > limit (over the window)
//!   Closed ──────────────────────────────────────────────────────────────► Open
//!     ▲                                                                     │
//!     │ every probe fast and fine                          cooldown over   │
//!     └───────────────────────────── HalfOpen ◄─────────────────────────────┘
//!                                       │ a probe slow or failed
//!                                       └──────────────────────────────► Open (again)
//! ```
//!
//! - **Closed**: every call goes to the target; each outcome enters a sliding window of
//!   `window_ms` (at most [`MAX_SAMPLES`] outcomes, the oldest dropped first). Once the
//!   window holds `min_calls`, the breaker opens when its p99 latency exceeds the baseline
//!   plus the margin (NBF-FaaS's active degradation: over the baseline by 100 ms → fallback),
//!   or its share of failed calls exceeds `max_error_percent`.
//! - **Open**: no call goes to the target ([`Admit::Fallback`]) until `cooldown_ms` passed.
//! - **HalfOpen**: `probe_calls` calls go to the target as probes, the others to the
//!   fallback. A probe slower than baseline + margin, or failed, opens the breaker again;
//!   when every probe came back fine it closes, with an empty window.
//!
//! The caller asks [`Breaker::admit`] before a call and tells [`Breaker::record`] its outcome;
//! both return the transition they caused, if any, for the caller to log and count.

use std::collections::VecDeque;
use std::fmt;

use crate::model::routing::BreakerConfig;

/// The most outcomes a window keeps (bounded memory and a bounded p99 computation).
pub const MAX_SAMPLES: usize = 1024;

/// Where a breaker stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerState {
    /// `closed`, `open` or `half_open`.
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }

    /// 0 closed, 1 open, 2 half-open (a metrics gauge).
    pub fn gauge(self) -> i64 {
        match self {
            BreakerState::Closed => 0,
            BreakerState::Open => 1,
            BreakerState::HalfOpen => 2,
        }
    }
}

impl fmt::Display for BreakerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What to do with the next call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admit {
    /// Call the target.
    Call,
    /// Call the target as a probe (half-open); record it with `probe: true`.
    Probe,
    /// Do not call the target: send the call to the fallback.
    Fallback,
}

/// A change of state, and why.
#[derive(Clone, Debug, PartialEq)]
pub struct Transition {
    pub from: BreakerState,
    pub to: BreakerState,
    pub reason: String,
}

#[derive(Clone, Copy, Debug)]
struct Sample {
    at_ms: u64,
    latency_ms: f64,
    ok: bool,
}

/// One target's breaker.
#[derive(Clone, Debug)]
pub struct Breaker {
    config: BreakerConfig,
    state: BreakerState,
    /// When the state last changed (the caller's clock, ms).
    since_ms: u64,
    window: VecDeque<Sample>,
    /// Half-open: probes handed out, and probes that came back fine.
    probes_out: u32,
    probes_ok: u32,
}

impl Breaker {
    /// A closed breaker with `config`, as of `now_ms`.
    pub fn new(config: BreakerConfig, now_ms: u64) -> Breaker {
        Breaker {
            config,
            state: BreakerState::Closed,
            since_ms: now_ms,
            window: VecDeque::new(),
            probes_out: 0,
            probes_ok: 0,
        }
    }

    /// Its settings.
    pub fn config(&self) -> &BreakerConfig {
        &self.config
    }

    /// Its state, and since when (ms).
    pub fn state(&self) -> (BreakerState, u64) {
        (self.state, self.since_ms)
    }

    /// The p99 latency of the window as of `now_ms`, ms (0 when empty).
    pub fn window_p99_ms(&mut self, now_ms: u64) -> f64 {
        self.trim(now_ms);
        p99(&self.window)
    }

    /// The latency above which a call is too slow, if there is a latency rule.
    fn slow_above_ms(&self) -> Option<f64> {
        (self.config.latency_baseline_ms > 0)
            .then(|| (self.config.latency_baseline_ms + self.config.margin_ms.max(0)) as f64)
    }

    fn go(&mut self, to: BreakerState, now_ms: u64, reason: String) -> Transition {
        let from = self.state;
        self.state = to;
        self.since_ms = now_ms;
        self.probes_out = 0;
        self.probes_ok = 0;
        if to == BreakerState::Closed {
            self.window.clear();
        }
        Transition { from, to, reason }
    }

    /// Whether the next call may go to the target, as of `now_ms`.
    pub fn admit(&mut self, now_ms: u64) -> (Admit, Option<Transition>) {
        let mut moved = None;
        if self.state == BreakerState::Open {
            let cooled = now_ms.saturating_sub(self.since_ms);
            if cooled < self.config.cooldown_ms.max(0) as u64 {
                return (Admit::Fallback, None);
            }
            moved = Some(self.go(
                BreakerState::HalfOpen,
                now_ms,
                format!(
                    "cooldown of {} ms over: probing with {} call(s)",
                    self.config.cooldown_ms, self.config.probe_calls
                ),
            ));
        }
        let admit = match self.state {
            BreakerState::Closed => Admit::Call,
            BreakerState::HalfOpen if self.probes_out < self.config.probe_calls.max(1) => {
                self.probes_out += 1;
                Admit::Probe
            }
            _ => Admit::Fallback,
        };
        (admit, moved)
    }

    /// Records the outcome of a call admitted at `admit`, as of `now_ms`.
    pub fn record(
        &mut self,
        admit: Admit,
        now_ms: u64,
        latency_ms: f64,
        ok: bool,
    ) -> Option<Transition> {
        match (admit, self.state) {
            (Admit::Probe, BreakerState::HalfOpen) => {
                let slow = self.slow_above_ms().filter(|limit| latency_ms > *limit);
                if !ok || slow.is_some() {
                    let why = match slow {
                        Some(limit) if ok => {
                            format!("a probe took {latency_ms:.0} ms, over {limit:.0} ms")
                        }
                        _ => "a probe failed".to_string(),
                    };
                    return Some(self.go(BreakerState::Open, now_ms, why));
                }
                self.probes_ok += 1;
                (self.probes_ok >= self.config.probe_calls.max(1)).then(|| {
                    self.go(
                        BreakerState::Closed,
                        now_ms,
                        format!("{} probe(s) came back fine", self.probes_ok),
                    )
                })
            }
            (Admit::Call, BreakerState::Closed) => {
                if self.window.len() == MAX_SAMPLES {
                    self.window.pop_front();
                }
                self.window.push_back(Sample {
                    at_ms: now_ms,
                    latency_ms,
                    ok,
                });
                self.trim(now_ms);
                let why = self.judge()?;
                Some(self.go(BreakerState::Open, now_ms, why))
            }
            // A call admitted before the state changed: it no longer counts.
            _ => None,
        }
    }

    fn trim(&mut self, now_ms: u64) {
        let horizon = now_ms.saturating_sub(self.config.window_ms.max(0) as u64);
        while self.window.front().is_some_and(|s| s.at_ms < horizon) {
            self.window.pop_front();
        }
    }

    /// Why the window says open, if it does.
    fn judge(&self) -> Option<String> {
        let n = self.window.len();
        if n < self.config.min_calls.max(1) as usize {
            return None;
        }
        if let Some(limit) = self.slow_above_ms() {
            let p99 = p99(&self.window);
            if p99 > limit {
                return Some(format!(
                    "p99 of {p99:.0} ms over the last {n} calls exceeds the baseline of {} ms + {} ms",
                    self.config.latency_baseline_ms, self.config.margin_ms
                ));
            }
        }
        if self.config.max_error_percent > 0.0 {
            let failed = self.window.iter().filter(|s| !s.ok).count();
            let share = 100.0 * failed as f64 / n as f64;
            if share > self.config.max_error_percent {
                return Some(format!(
                    "{failed} of the last {n} calls failed ({share:.1}%, over the limit of {}%)",
                    self.config.max_error_percent
                ));
            }
        }
        None
    }
}

/// The 99th percentile (nearest rank) of the window's latencies.
fn p99(window: &VecDeque<Sample>) -> f64 {
    if window.is_empty() {
        return 0.0;
    }
    let mut latencies: Vec<f64> = window.iter().map(|s| s.latency_ms).collect();
    let rank = ((latencies.len() as f64) * 0.99).ceil() as usize;
    let index = rank.clamp(1, latencies.len()) - 1;
    let (_, nth, _) = latencies.select_nth_unstable_by(index, f64::total_cmp);
    *nth
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> BreakerConfig {
        BreakerConfig {
            latency_baseline_ms: 50,
            margin_ms: 100,
            max_error_percent: 20.0,
            window_ms: 1_000,
            min_calls: 10,
            cooldown_ms: 500,
            probe_calls: 2,
        }
    }

    /// Calls at `latency_ms`, one per ms from `start`; returns the transitions.
    fn feed(b: &mut Breaker, start: u64, n: u64, latency_ms: f64, ok: bool) -> Vec<Transition> {
        let mut out = Vec::new();
        for t in start..start + n {
            let (admit, moved) = b.admit(t);
            out.extend(moved);
            if admit != Admit::Fallback {
                out.extend(b.record(admit, t, latency_ms, ok));
            }
        }
        out
    }

    #[test]
    fn fast_calls_keep_it_closed() {
        let mut b = Breaker::new(config(), 0);
        assert!(feed(&mut b, 0, 500, 140.0, true).is_empty());
        assert_eq!(b.state().0, BreakerState::Closed);
    }

    #[test]
    fn slow_calls_open_it_then_probes_close_it() {
        let mut b = Breaker::new(config(), 0);
        // 9 slow calls: below min_calls, no judgement yet.
        assert!(feed(&mut b, 0, 9, 400.0, true).is_empty());
        let moved = feed(&mut b, 9, 1, 400.0, true);
        assert_eq!(moved.len(), 1);
        assert_eq!(moved[0].to, BreakerState::Open);
        assert!(
            moved[0].reason.contains("p99 of 400 ms"),
            "{}",
            moved[0].reason
        );
        // Open: everything to the fallback until the cooldown ends.
        assert_eq!(b.admit(10).0, Admit::Fallback);
        assert_eq!(b.admit(508).0, Admit::Fallback);
        // Cooldown over: half-open, two probes, then fallback for the rest.
        let (first, moved) = b.admit(510);
        assert_eq!(first, Admit::Probe);
        assert_eq!(moved.unwrap().to, BreakerState::HalfOpen);
        assert_eq!(b.admit(511).0, Admit::Probe);
        assert_eq!(b.admit(512).0, Admit::Fallback);
        assert_eq!(b.record(Admit::Probe, 520, 30.0, true), None);
        let closed = b.record(Admit::Probe, 521, 30.0, true).unwrap();
        assert_eq!(closed.to, BreakerState::Closed);
        assert_eq!(b.state(), (BreakerState::Closed, 521));
        // The window starts empty: it needs min_calls again before it judges.
        assert!(feed(&mut b, 600, 9, 400.0, true).is_empty());
    }

    #[test]
    fn a_slow_or_failed_probe_opens_it_again() {
        let mut b = Breaker::new(config(), 0);
        feed(&mut b, 0, 10, 400.0, true);
        let (admit, _) = b.admit(600);
        let again = b.record(admit, 601, 400.0, true).unwrap();
        assert_eq!(
            (again.from, again.to),
            (BreakerState::HalfOpen, BreakerState::Open)
        );
        assert!(again.reason.contains("over 150 ms"), "{}", again.reason);
        assert_eq!(b.admit(700).0, Admit::Fallback);
        let (admit, _) = b.admit(1_200);
        assert_eq!(admit, Admit::Probe);
        let failed = b.record(admit, 1_201, 10.0, false).unwrap();
        assert_eq!(failed.to, BreakerState::Open);
        assert_eq!(failed.reason, "a probe failed");
    }

    #[test]
    fn errors_over_the_limit_open_it() {
        let mut b = Breaker::new(config(), 0);
        assert!(feed(&mut b, 0, 16, 10.0, true).is_empty());
        // 3 of 19 failed (15.8%): under 20%.
        assert!(feed(&mut b, 16, 3, 10.0, false).is_empty());
        // 4 of 20 is 20%: not over. 5 of 21 is 23.8%: over.
        assert!(feed(&mut b, 19, 1, 10.0, false).is_empty());
        let moved = feed(&mut b, 20, 1, 10.0, false);
        assert_eq!(moved[0].to, BreakerState::Open);
        assert!(
            moved[0].reason.starts_with("5 of the last 21 calls failed"),
            "{}",
            moved[0].reason
        );
    }

    #[test]
    fn old_calls_leave_the_window() {
        let mut b = Breaker::new(config(), 0);
        // 9 slow calls, then fast ones 2 s later: the slow ones are out of the 1 s window.
        feed(&mut b, 0, 9, 400.0, true);
        assert!(feed(&mut b, 2_000, 20, 20.0, true).is_empty());
        assert_eq!(b.window_p99_ms(2_019), 20.0);
        assert_eq!(b.window_p99_ms(10_000), 0.0);
    }

    #[test]
    fn a_late_outcome_of_an_earlier_state_is_ignored() {
        let mut b = Breaker::new(config(), 0);
        feed(&mut b, 0, 10, 400.0, true);
        // A call admitted while closed comes back after it opened.
        assert_eq!(b.record(Admit::Call, 20, 400.0, true), None);
        assert_eq!(b.state().0, BreakerState::Open);
    }

    #[test]
    fn p99_is_the_nearest_rank() {
        let window: VecDeque<Sample> = (1..=200)
            .map(|i| Sample {
                at_ms: 0,
                latency_ms: i as f64,
                ok: true,
            })
            .collect();
        assert_eq!(p99(&window), 198.0);
        assert_eq!(p99(&VecDeque::new()), 0.0);
    }
}
