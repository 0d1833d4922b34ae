//! When a failed asynchronous delivery is tried again: the retry rule of the durable queue.
//!
//! Pure: time is an argument (ms since the Unix epoch) and so is the randomness of the jitter
//! (a number in `[0, 1)`), so tests pass fixed values and need no clock.
//!
//! - Which failures are retried ([`retryable`]): those that may succeed later —
//!   `RESOURCE_EXHAUSTED` (no capacity, an account over its limit), `DEADLINE_EXCEEDED` (a
//!   timeout), `UNAVAILABLE` (a component or node away), and `ABORTED`. Never a bad event
//!   (`INVALID_ARGUMENT`, `NOT_FOUND`, ...) nor the function's own failure: those are the
//!   call's result at once.
//! - How long to wait ([`backoff_ms`]): exponential backoff with full jitter (AWS's
//!   "Exponential Backoff and Jitter"): after attempt `n` (1-based) a uniform wait in
//!   `[0, min(max_delay, first_delay * 2^(n-1))]`.
//! - What happens next ([`after_failure`]): another attempt at a time, or, after the last
//!   attempt, the dead-letter list.

/// Default attempts of an asynchronous call (the first included).
pub const DEFAULT_ATTEMPTS: u32 = 3;
/// Default wait before the second attempt's upper bound, ms.
pub const DEFAULT_FIRST_DELAY_MS: u64 = 1_000;
/// Default longest wait between attempts, ms.
pub const DEFAULT_MAX_DELAY_MS: u64 = 60_000;
/// The most attempts a function may ask for.
pub const MAX_ATTEMPTS: u32 = 100;

/// A function's retry settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (1: never retried).
    pub attempts: u32,
    pub first_delay_ms: u64,
    pub max_delay_ms: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: DEFAULT_ATTEMPTS,
            first_delay_ms: DEFAULT_FIRST_DELAY_MS,
            max_delay_ms: DEFAULT_MAX_DELAY_MS,
        }
    }
}

/// Why retry settings are refused; each names the field.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RetryError {
    #[error("max_attempts must be 1 to {MAX_ATTEMPTS} (the first attempt included), not {0}")]
    Attempts(i64),
    #[error("{field} must not be negative, not {value}")]
    Negative { field: &'static str, value: i64 },
    #[error("max_delay_ms ({max}) must not be less than first_delay_ms ({first})")]
    Order { first: u64, max: u64 },
}

impl RetryPolicy {
    /// Settings as a request gives them: a field left out takes `defaults`' value; attempts
    /// below 1 or above [`MAX_ATTEMPTS`] and negative delays are refused.
    pub fn from_request(
        attempts: Option<i64>,
        first_delay_ms: Option<i64>,
        max_delay_ms: Option<i64>,
        defaults: RetryPolicy,
    ) -> Result<RetryPolicy, RetryError> {
        let attempts = match attempts {
            None => defaults.attempts,
            Some(n) if (1..=i64::from(MAX_ATTEMPTS)).contains(&n) => n as u32,
            Some(n) => return Err(RetryError::Attempts(n)),
        };
        let ms = |field: &'static str, value: Option<i64>, default: u64| match value {
            None => Ok(default),
            Some(v) if v < 0 => Err(RetryError::Negative { field, value: v }),
            Some(v) => Ok(v as u64),
        };
        let policy = RetryPolicy {
            attempts,
            first_delay_ms: ms("first_delay_ms", first_delay_ms, defaults.first_delay_ms)?,
            max_delay_ms: ms("max_delay_ms", max_delay_ms, defaults.max_delay_ms)?,
        };
        if policy.max_delay_ms < policy.first_delay_ms {
            return Err(RetryError::Order {
                first: policy.first_delay_ms,
                max: policy.max_delay_ms,
            });
        }
        Ok(policy)
    }
}

/// Whether a failure with this gRPC code (by its name, `UNAVAILABLE`) may succeed later.
pub fn retryable(code: &str) -> bool {
    matches!(
        code,
        "RESOURCE_EXHAUSTED" | "DEADLINE_EXCEEDED" | "UNAVAILABLE" | "ABORTED"
    )
}

/// The wait after failed attempt `attempt` (1-based): full jitter, `unit` in `[0, 1)`
/// picking a point in `[0, min(max_delay, first_delay * 2^(attempt-1))]`.
pub fn backoff_ms(policy: &RetryPolicy, attempt: u32, unit: f64) -> u64 {
    let shift = attempt.saturating_sub(1).min(62);
    let cap = policy
        .first_delay_ms
        .saturating_mul(1u64 << shift)
        .min(policy.max_delay_ms);
    let unit = if unit.is_finite() {
        unit.clamp(0.0, 1.0)
    } else {
        0.0
    };
    ((cap as f64) * unit).round() as u64
}

/// What becomes of a call whose attempt `attempt` (1-based) failed with `code`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// The failure is the call's result (not retryable).
    Fail,
    /// Queued again, due at this time (ms since the Unix epoch).
    RetryAt(u64),
    /// Retryable, but that was the last attempt: to the dead-letter list.
    DeadLetter,
}

/// The rule: a failure that may pass (`may_pass`: [`retryable`] by its code, and not the
/// function's own) is tried again after [`backoff_ms`] until `policy.attempts` attempts were
/// made, then dead-lettered; any other failure is final.
pub fn after_failure(
    policy: &RetryPolicy,
    attempt: u32,
    may_pass: bool,
    now_ms: u64,
    unit: f64,
) -> Next {
    if !may_pass {
        Next::Fail
    } else if attempt >= policy.attempts {
        Next::DeadLetter
    } else {
        Next::RetryAt(now_ms.saturating_add(backoff_ms(policy, attempt, unit)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(attempts: u32, first: u64, max: u64) -> RetryPolicy {
        RetryPolicy {
            attempts,
            first_delay_ms: first,
            max_delay_ms: max,
        }
    }

    #[test]
    fn the_bound_doubles_up_to_the_maximum() {
        let p = policy(10, 100, 1_000);
        let top: Vec<u64> = (1..=6).map(|n| backoff_ms(&p, n, 1.0)).collect();
        assert_eq!(top, vec![100, 200, 400, 800, 1_000, 1_000]);
        // Full jitter: anywhere from 0 to the bound.
        assert_eq!(backoff_ms(&p, 3, 0.0), 0);
        assert_eq!(backoff_ms(&p, 3, 0.5), 200);
        // No overflow, however many attempts.
        assert_eq!(
            backoff_ms(&policy(100, u64::MAX, u64::MAX), 99, 1.0),
            u64::MAX
        );
        assert_eq!(backoff_ms(&p, 2, f64::NAN), 0);
    }

    #[test]
    fn transient_failures_are_retried_then_dead_lettered() {
        let p = policy(3, 100, 1_000);
        assert_eq!(
            after_failure(&p, 1, retryable("UNAVAILABLE"), 1_000, 1.0),
            Next::RetryAt(1_100)
        );
        assert_eq!(
            after_failure(&p, 2, retryable("DEADLINE_EXCEEDED"), 1_000, 0.5),
            Next::RetryAt(1_100)
        );
        assert_eq!(
            after_failure(&p, 3, retryable("RESOURCE_EXHAUSTED"), 1_000, 0.5),
            Next::DeadLetter
        );
        for code in [
            "INVALID_ARGUMENT",
            "NOT_FOUND",
            "INTERNAL",
            "UNKNOWN",
            "FAILED_PRECONDITION",
        ] {
            assert_eq!(
                after_failure(&p, 1, retryable(code), 0, 0.5),
                Next::Fail,
                "{code}"
            );
        }
        // One attempt: a transient failure goes straight to the dead letters.
        assert_eq!(
            after_failure(&policy(1, 1, 1), 1, retryable("UNAVAILABLE"), 0, 0.0),
            Next::DeadLetter
        );
    }

    #[test]
    fn request_settings_take_defaults_and_name_the_bad_field() {
        let d = RetryPolicy::default();
        assert_eq!(RetryPolicy::from_request(None, None, None, d), Ok(d));
        assert_eq!(
            RetryPolicy::from_request(Some(5), Some(10), Some(20), d),
            Ok(policy(5, 10, 20))
        );
        for bad in [-1, 0, 101] {
            let e = RetryPolicy::from_request(Some(bad), None, None, d).unwrap_err();
            assert!(e.to_string().contains("max_attempts"), "{e}");
        }
        let e = RetryPolicy::from_request(Some(1), Some(-5), None, d).unwrap_err();
        assert!(e.to_string().contains("first_delay_ms"), "{e}");
        let e = RetryPolicy::from_request(Some(1), None, Some(-5), d).unwrap_err();
        assert!(e.to_string().contains("max_delay_ms"), "{e}");
        let e = RetryPolicy::from_request(Some(1), Some(100), Some(10), d).unwrap_err();
        assert!(e.to_string().contains("max_delay_ms"), "{e}");
    }
}
