//! The contest's score (lower is better; the reference scores exactly 1):
//!
//! ```text
//! Score = W1 × mean over functions f of (RT_f / RT_f,reference) + W2 × (ND / ND_reference)
//!         + penalty when the error rate is above the threshold
//! ```
//!
//! - RT of a request = scheduling latency (`AcquireContainer`) + function duration;
//!   RT_f = the sum of RT over the requests of f ([`FunctionTotals::rt_ms`]).
//! - ND = node-seconds: the sum over nodes of the time from a successful `ReserveNode` to its
//!   `ReleaseNode` (or the end of the run).
//! - Weights default to the final round's W1 = W2 = 0.5; an error rate above 0.1% adds 10
//!   points ([`ScoreConfig`]).
//! - The reference is the run of the policy the others are measured against (`baseline`,
//!   the contest's demo scheduler).
//!
//! **Failed calls are not response times.** A call that failed has an RT too (how fast it
//! was refused, or how long until it timed out), but it says nothing about how fast the
//! function is served: a reference whose calls failed in 2 ms would make every served call
//! of the candidate look 100 times slower. So RT_f is taken over f's *successful* calls and
//! scaled to all its calls: `RT_f = (sum of RT over the successful calls) × calls / successful
//! calls`. When every call succeeds this is exactly the contest's sum; errors are charged by
//! the error penalty, not through RT. The same rule applies to both runs, so the reference
//! still scores exactly 1 against itself.
//!
//! A function is in the mean only when both runs have a valid RT_f for it ([`Score::unmatched`]
//! lists the others, with the reason):
//!
//! - a function whose reference has no successful call has **no valid reference**
//!   ([`Score::no_reference`] lists them, so a report can say "scored over 180 of 200
//!   functions; 20 have no successful reference call: …");
//! - a function present in only one of the two runs (they played different workloads) cannot
//!   be compared; nor can one the candidate never served successfully (its errors count in
//!   its error rate), or one whose reference RT_f is 0.
//!
//! When no function can be compared, or the reference used no node time, there is no score
//! ([`ScoreError`]): a number computed from failed reference calls is never reported.

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

/// One function's calls in one run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FunctionTotals {
    /// Every call of the function.
    pub calls: u64,
    /// The calls that succeeded.
    pub ok: u64,
    /// The sum of RT (scheduling latency + duration) over the successful calls, ms.
    pub ok_rt_ms: f64,
}

impl FunctionTotals {
    /// RT_f, ms: the successful calls' RT scaled to all calls (see the module
    /// documentation); `None` without a successful call.
    pub fn rt_ms(&self) -> Option<f64> {
        (self.ok > 0).then(|| self.ok_rt_ms * self.calls as f64 / self.ok as f64)
    }
}

/// What the score needs from one run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RunTotals {
    /// Each function's calls.
    pub functions: BTreeMap<String, FunctionTotals>,
    /// ND: node-seconds.
    pub node_seconds: f64,
    pub requests: u64,
    pub errors: u64,
}

impl RunTotals {
    /// Counts one call of `function` that took `rt_ms` (scheduling latency + duration) and
    /// succeeded or not.
    pub fn add(&mut self, function: &str, rt_ms: f64, ok: bool) {
        let f = self.functions.entry(function.to_string()).or_default();
        f.calls += 1;
        self.requests += 1;
        if ok {
            f.ok += 1;
            f.ok_rt_ms += rt_ms;
        } else {
            self.errors += 1;
        }
    }

    /// errors / requests (0 without requests).
    pub fn error_rate(&self) -> f64 {
        if self.requests == 0 {
            0.0
        } else {
            self.errors as f64 / self.requests as f64
        }
    }

    /// The functions with calls but no successful one, in name order.
    pub fn never_served(&self) -> Vec<String> {
        self.functions
            .iter()
            .filter(|(_, f)| f.ok == 0)
            .map(|(name, _)| name.clone())
            .collect()
    }
}

/// A candidate's score against a reference, with its parts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Score {
    /// The score (lower is better).
    pub value: f64,
    /// mean_f(RT_f / RT_f,reference) over the compared functions.
    pub rt_ratio_mean: f64,
    /// ND / ND_reference.
    pub nd_ratio: f64,
    /// The candidate's error rate.
    pub error_rate: f64,
    /// The penalty added (0 or [`ScoreConfig::error_penalty`]).
    pub penalty: f64,
    /// RT_f / RT_f,reference of each compared function.
    pub rt_ratios: BTreeMap<String, f64>,
    /// Functions left out of the mean, with the reason (those of `no_reference` too).
    pub unmatched: BTreeMap<String, String>,
    /// The functions whose reference has calls but no successful one: no valid reference.
    pub no_reference: Vec<String>,
}

impl Score {
    /// The functions the mean is over, of all the functions either run has.
    pub fn coverage(&self) -> (usize, usize) {
        (
            self.rt_ratios.len(),
            self.rt_ratios.len() + self.unmatched.len(),
        )
    }
}

/// The reason a function has no valid reference, as [`Score::unmatched`] says it.
pub const NO_SUCCESSFUL_REFERENCE_CALL: &str = "no successful reference call";

/// Why there is no score.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ScoreError {
    #[error("the reference used no node time (ND = {0}): ND / ND_reference is undefined")]
    NoBaselineNodeTime(f64),
    #[error(
        "no valid reference: none of the reference's {calls} calls of its {} succeeded ({})",
        plural(.functions.len(), "function"),
        names(.functions)
    )]
    NoSuccessfulReference { calls: u64, functions: Vec<String> },
    #[error("no function has successful requests in both runs with a reference RT above 0")]
    NoCommonFunctions,
    #[error("invalid score configuration: {0}")]
    InvalidConfig(String),
}

/// `1 function`, `20 functions`.
pub fn plural(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// The first ten names, comma separated, then `… (N more)`.
pub fn names(list: &[String]) -> String {
    const SHOWN: usize = 10;
    let mut text = list
        .iter()
        .take(SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if list.len() > SHOWN {
        text.push_str(&format!(", … ({} more)", list.len() - SHOWN));
    }
    text
}

/// Scores `candidate` against `reference` (see the module documentation).
pub fn score(
    candidate: &RunTotals,
    reference: &RunTotals,
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
    if reference.node_seconds.is_nan() || reference.node_seconds <= 0.0 {
        return Err(ScoreError::NoBaselineNodeTime(reference.node_seconds));
    }
    let no_reference = reference.never_served();
    if !reference.functions.is_empty() && no_reference.len() == reference.functions.len() {
        return Err(ScoreError::NoSuccessfulReference {
            calls: reference.requests,
            functions: no_reference,
        });
    }
    let mut rt_ratios = BTreeMap::new();
    let mut unmatched = BTreeMap::new();
    for (f, base) in &reference.functions {
        let why = match (base.rt_ms(), candidate.functions.get(f)) {
            (None, _) => NO_SUCCESSFUL_REFERENCE_CALL,
            (_, None) => "only in the reference run",
            (Some(base), _) if base <= 0.0 => "reference RT_f is 0",
            (Some(base), Some(cand)) => match cand.rt_ms() {
                Some(cand) => {
                    rt_ratios.insert(f.clone(), cand / base);
                    continue;
                }
                None => "no successful call in this run (its errors count in the error rate)",
            },
        };
        unmatched.insert(f.clone(), why.to_string());
    }
    for f in candidate.functions.keys() {
        if !reference.functions.contains_key(f) {
            unmatched.insert(
                f.clone(),
                "only in this run, not the reference's".to_string(),
            );
        }
    }
    if rt_ratios.is_empty() {
        return Err(ScoreError::NoCommonFunctions);
    }
    let rt_ratio_mean = rt_ratios.values().sum::<f64>() / rt_ratios.len() as f64;
    let nd_ratio = candidate.node_seconds / reference.node_seconds;
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
        no_reference,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One successful call per function f1, f2, … taking `rt` ms.
    fn totals(rt: &[f64], nd: f64, requests: u64, errors: u64) -> RunTotals {
        RunTotals {
            functions: rt
                .iter()
                .enumerate()
                .map(|(i, &v)| {
                    let f = FunctionTotals {
                        calls: 1,
                        ok: 1,
                        ok_rt_ms: v,
                    };
                    (format!("f{}", i + 1), f)
                })
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
        assert_eq!(s.coverage(), (4, 4));
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
        cand.add("extra", 1.0, true);
        let s = score(&cand, &base, &ScoreConfig::default()).unwrap();
        assert_eq!(s.rt_ratios.len(), 2);
        assert!((s.rt_ratio_mean - 1.5).abs() < 1e-12);
        assert_eq!(s.unmatched.len(), 2);
        assert!(s.unmatched["f3"].contains("only in the reference"));
        assert!(s.unmatched["extra"].contains("only in this run"));
        assert!(s.no_reference.is_empty());
    }

    /// A run without calls yet that held nodes for `nd` node-seconds.
    fn no_calls(nd: f64) -> RunTotals {
        RunTotals {
            node_seconds: nd,
            ..RunTotals::default()
        }
    }

    /// `ok` successful calls of `rt` ms each and `failed` failed ones of `failed_rt` ms.
    fn calls(run: &mut RunTotals, f: &str, ok: u64, rt: f64, failed: u64, failed_rt: f64) {
        for _ in 0..ok {
            run.add(f, rt, true);
        }
        for _ in 0..failed {
            run.add(f, failed_rt, false);
        }
    }

    #[test]
    fn failed_reference_calls_never_become_the_reference() {
        // The reference served a in 100 ms a call but failed half of them fast (1 ms, a
        // refusal); b it never served (every call refused in 1 ms). The candidate served
        // everything in 100 ms: as fast as the reference where both served.
        let mut base = no_calls(10.0);
        calls(&mut base, "a", 5, 100.0, 5, 1.0);
        calls(&mut base, "b", 0, 0.0, 10, 1.0);
        calls(&mut base, "c", 10, 50.0, 0, 0.0);
        let mut cand = no_calls(10.0);
        calls(&mut cand, "a", 10, 100.0, 0, 0.0);
        calls(&mut cand, "b", 10, 100.0, 0, 0.0);
        calls(&mut cand, "c", 10, 50.0, 0, 0.0);
        let s = score(&cand, &base, &ScoreConfig::default()).unwrap();
        // a: RT_a,reference = 500 ms over 5 successful calls, scaled to 10 calls = 1000 ms
        // (not 505 ms, which would have made the candidate look twice as slow).
        assert!((s.rt_ratios["a"] - 1.0).abs() < 1e-12, "{:?}", s.rt_ratios);
        // b has no valid reference: left out and named; the rest is scored.
        assert!(!s.rt_ratios.contains_key("b"));
        assert_eq!(s.no_reference, vec!["b".to_string()]);
        assert_eq!(s.unmatched["b"], NO_SUCCESSFUL_REFERENCE_CALL);
        assert_eq!(s.coverage(), (2, 3));
        assert!((s.value - 1.0).abs() < 1e-12, "{}", s.value);
        // The reference against itself: still exactly 1 (plus its own penalty), over a and c.
        let own = score(&base, &base, &ScoreConfig::default()).unwrap();
        assert!((own.value - 11.0).abs() < 1e-12, "{}", own.value);
        assert_eq!(own.coverage(), (2, 3));
    }

    #[test]
    fn a_candidate_function_never_served_is_not_scored_but_its_errors_count() {
        let mut base = no_calls(10.0);
        calls(&mut base, "a", 10, 100.0, 0, 0.0);
        calls(&mut base, "b", 10, 100.0, 0, 0.0);
        let mut cand = no_calls(10.0);
        calls(&mut cand, "a", 10, 100.0, 0, 0.0);
        calls(&mut cand, "b", 0, 0.0, 10, 1.0);
        let s = score(&cand, &base, &ScoreConfig::default()).unwrap();
        assert_eq!(s.coverage(), (1, 2));
        assert!(s.unmatched["b"].contains("no successful call in this run"));
        assert!(s.no_reference.is_empty(), "the reference is valid");
        assert_eq!(s.penalty, 10.0, "half its calls failed");
    }

    #[test]
    fn a_reference_whose_calls_all_failed_gives_no_score_and_says_so() {
        let mut base = no_calls(10.0);
        calls(&mut base, "a", 0, 0.0, 3, 2.0);
        calls(&mut base, "b", 0, 0.0, 4, 2.0);
        let mut cand = no_calls(5.0);
        calls(&mut cand, "a", 3, 100.0, 0, 0.0);
        calls(&mut cand, "b", 4, 100.0, 0, 0.0);
        let err = score(&cand, &base, &ScoreConfig::default()).unwrap_err();
        assert_eq!(
            err,
            ScoreError::NoSuccessfulReference {
                calls: 7,
                functions: vec!["a".into(), "b".into()]
            }
        );
        assert_eq!(
            err.to_string(),
            "no valid reference: none of the reference's 7 calls of its 2 functions succeeded (a, b)"
        );
    }

    #[test]
    fn long_name_lists_are_cut_short() {
        let list: Vec<String> = (1..=12).map(|i| format!("f{i}")).collect();
        assert_eq!(
            names(&list),
            "f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, … (2 more)"
        );
        assert_eq!(names(&list[..2]), "f1, f2");
        assert_eq!(plural(1, "function"), "1 function");
        assert_eq!(plural(20, "function"), "20 functions");
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
