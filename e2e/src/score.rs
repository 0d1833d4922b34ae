//! The contest's score (lower is better; the baseline scores exactly 1):
//!
//! ```text
//! Score = W1 × mean over functions f of (RT_f / RT_f,baseline) + W2 × (ND / ND_baseline)
//!         + penalty when the error rate is above the threshold
//! ```
//!
//! - RT of a request = scheduling latency (`AcquireContainer`) + function duration;
//!   RT_f = the sum of RT over the requests of f ([`RunTotals`]).
//! - ND = node-seconds: the sum over nodes of the time from a successful `ReserveNode` to its
//!   `ReleaseNode` (or the end of the run).
//! - Weights default to the final round's W1 = W2 = 0.5; an error rate above 0.1% adds 10
//!   points ([`ScoreConfig`]).
//!
//! Functions present in only one of the two runs (the runs played different workloads, or
//! one run never recorded a request of f) cannot be compared: the mean is taken over the
//! functions both runs have, and the others are listed in [`Score::unmatched`] so that a
//! report can warn. A function whose baseline RT_f is 0 (every request took no time) is also
//! left out of the mean, and listed. When no function can be compared, or the baseline used
//! no node time, there is no score ([`ScoreError`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The weights and the error penalty.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScoreConfig {
    /// Weight of the response-time term.
    pub w1: f64,
    /// Weight of the node-time term.
    pub w2: f64,
    /// The error rate (errors / requests) above which the penalty applies.
    pub error_rate_threshold: f64,
    /// Points added when the error rate is above the threshold.
    pub error_penalty: f64,
}

impl Default for ScoreConfig {
    fn default() -> Self {
        ScoreConfig {
            w1: 0.5,
            w2: 0.5,
            error_rate_threshold: 0.001,
            error_penalty: 10.0,
        }
    }
}

/// What the score needs from one run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RunTotals {
    /// RT_f: the sum over f's requests of scheduling latency + duration, ms.
    pub rt_ms_by_function: BTreeMap<String, f64>,
    /// ND: node-seconds.
    pub node_seconds: f64,
    pub requests: u64,
    pub errors: u64,
}

impl RunTotals {
    /// errors / requests (0 without requests).
    pub fn error_rate(&self) -> f64 {
        if self.requests == 0 {
            0.0
        } else {
            self.errors as f64 / self.requests as f64
        }
    }
}

/// A candidate's score against a baseline, with its parts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Score {
    /// The score (lower is better).
    pub value: f64,
    /// mean_f(RT_f / RT_f,baseline) over the compared functions.
    pub rt_ratio_mean: f64,
    /// ND / ND_baseline.
    pub nd_ratio: f64,
    /// The candidate's error rate.
    pub error_rate: f64,
    /// The penalty added (0 or [`ScoreConfig::error_penalty`]).
    pub penalty: f64,
    /// RT_f / RT_f,baseline of each compared function.
    pub rt_ratios: BTreeMap<String, f64>,
    /// Functions left out of the mean, with the reason.
    pub unmatched: BTreeMap<String, String>,
}

/// Why there is no score.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ScoreError {
    #[error("the baseline used no node time (ND = {0}): ND / ND_baseline is undefined")]
    NoBaselineNodeTime(f64),
    #[error("no function has requests in both runs with a baseline RT above 0")]
    NoCommonFunctions,
    #[error("invalid score configuration: {0}")]
    InvalidConfig(String),
}

/// Scores `candidate` against `baseline` (see the module documentation).
pub fn score(
    candidate: &RunTotals,
    baseline: &RunTotals,
    config: &ScoreConfig,
) -> Result<Score, ScoreError> {
    for (name, v) in [
        ("w1", config.w1),
        ("w2", config.w2),
        ("error_rate_threshold", config.error_rate_threshold),
        ("error_penalty", config.error_penalty),
    ] {
        if !(v.is_finite() && v >= 0.0) {
            return Err(ScoreError::InvalidConfig(format!(
                "{name} must be a finite number >= 0, got {v}"
            )));
        }
    }
    if baseline.node_seconds.is_nan() || baseline.node_seconds <= 0.0 {
        return Err(ScoreError::NoBaselineNodeTime(baseline.node_seconds));
    }
    let mut rt_ratios = BTreeMap::new();
    let mut unmatched = BTreeMap::new();
    for (f, &base) in &baseline.rt_ms_by_function {
        match candidate.rt_ms_by_function.get(f) {
            None => {
                unmatched.insert(f.clone(), "only in the baseline run".to_string());
            }
            Some(_) if base <= 0.0 => {
                unmatched.insert(f.clone(), "baseline RT_f is 0".to_string());
            }
            Some(&cand) => {
                rt_ratios.insert(f.clone(), cand / base);
            }
        }
    }
    for f in candidate.rt_ms_by_function.keys() {
        if !baseline.rt_ms_by_function.contains_key(f) {
            unmatched.insert(f.clone(), "only in the candidate run".to_string());
        }
    }
    if rt_ratios.is_empty() {
        return Err(ScoreError::NoCommonFunctions);
    }
    let rt_ratio_mean = rt_ratios.values().sum::<f64>() / rt_ratios.len() as f64;
    let nd_ratio = candidate.node_seconds / baseline.node_seconds;
    let error_rate = candidate.error_rate();
    let penalty = if error_rate > config.error_rate_threshold {
        config.error_penalty
    } else {
        0.0
    };
    Ok(Score {
        value: config.w1 * rt_ratio_mean + config.w2 * nd_ratio + penalty,
        rt_ratio_mean,
        nd_ratio,
        error_rate,
        penalty,
        rt_ratios,
        unmatched,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn totals(rt: &[f64], nd: f64, requests: u64, errors: u64) -> RunTotals {
        RunTotals {
            rt_ms_by_function: rt
                .iter()
                .enumerate()
                .map(|(i, &v)| (format!("f{}", i + 1), v))
                .collect(),
            node_seconds: nd,
            requests,
            errors,
        }
    }

    #[test]
    fn worked_example_of_the_contest() {
        let base = totals(&[5.0, 10.0, 8.0, 10.0], 40.0, 1000, 0);
        let cand = totals(&[4.0, 10.0, 7.0, 8.0], 35.0, 1000, 0);
        let s = score(&cand, &base, &ScoreConfig::default()).unwrap();
        assert!((s.value - 0.871875).abs() < 1e-12, "{}", s.value);
        assert!((s.nd_ratio - 0.875).abs() < 1e-12);
        assert_eq!(s.penalty, 0.0);
        assert!(s.unmatched.is_empty());
    }

    #[test]
    fn baseline_against_itself_scores_one() {
        let base = totals(&[5.0, 10.0, 8.0, 10.0], 40.0, 1000, 1);
        let s = score(&base, &base, &ScoreConfig::default()).unwrap();
        assert!((s.value - 1.0).abs() < 1e-12);
    }

    #[test]
    fn error_rate_above_the_threshold_costs_ten_points() {
        let base = totals(&[5.0, 10.0], 40.0, 1000, 0);
        let at = totals(&[5.0, 10.0], 40.0, 1000, 1); // 0.1%: not above
        let above = totals(&[5.0, 10.0], 40.0, 1000, 2); // 0.2%
        let c = ScoreConfig::default();
        assert!((score(&at, &base, &c).unwrap().value - 1.0).abs() < 1e-12);
        let s = score(&above, &base, &c).unwrap();
        assert!((s.value - 11.0).abs() < 1e-12);
        assert_eq!(s.penalty, 10.0);
        let custom = ScoreConfig {
            error_penalty: 3.0,
            w1: 1.0,
            w2: 0.0,
            ..ScoreConfig::default()
        };
        assert!((score(&above, &base, &custom).unwrap().value - 4.0).abs() < 1e-12);
    }

    #[test]
    fn functions_in_one_run_only_are_listed_not_scored() {
        let base = totals(&[5.0, 10.0, 8.0], 40.0, 10, 0);
        let mut cand = totals(&[10.0, 10.0], 40.0, 10, 0);
        cand.rt_ms_by_function.insert("extra".into(), 1.0);
        let s = score(&cand, &base, &ScoreConfig::default()).unwrap();
        assert_eq!(s.rt_ratios.len(), 2);
        assert!((s.rt_ratio_mean - 1.5).abs() < 1e-12);
        assert_eq!(s.unmatched.len(), 2);
        assert!(s.unmatched["f3"].contains("baseline"));
        assert!(s.unmatched["extra"].contains("candidate"));
    }

    #[test]
    fn undefined_scores_are_errors() {
        let base = totals(&[5.0], 0.0, 10, 0);
        assert!(matches!(
            score(&base, &base, &ScoreConfig::default()),
            Err(ScoreError::NoBaselineNodeTime(_))
        ));
        let a = totals(&[0.0], 1.0, 10, 0);
        assert_eq!(
            score(&a, &a, &ScoreConfig::default()),
            Err(ScoreError::NoCommonFunctions)
        );
        let bad = ScoreConfig {
            w1: f64::NAN,
            ..ScoreConfig::default()
        };
        assert!(matches!(
            score(&a, &a, &bad),
            Err(ScoreError::InvalidConfig(_))
        ));
    }
}
