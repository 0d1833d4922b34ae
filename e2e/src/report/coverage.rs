//! Which functions the scores are over, said once for the whole report.
//!
//! A score compares each function's response time with the reference run's (see
//! [`crate::score`]). A function whose reference calls all failed has no valid reference and
//! is in no policy's score; one whose reference failed some calls is compared on the calls
//! that succeeded. Both are the reference's doing, the same for every policy, so the report
//! says it once, above the per-policy notes:
//!
//! ```text
//! scored over 180 of 200 functions; 20 have no successful reference call (baseline): a, b, …
//! reference RT from successful calls only for 3 functions: c (5 of 10 succeeded), …
//! ```

use serde::Serialize;

use super::natural_cmp;
use crate::score::{RunTotals, names, plural};

/// What the reference run makes of the functions (the `reference` object of the JSON).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Coverage {
    /// The reference policy.
    pub policy: String,
    /// The functions the reference run called.
    pub functions: usize,
    /// The functions scores are over: those with a successful reference call.
    pub scored: usize,
    /// The functions with no successful reference call (no valid reference), in natural
    /// order.
    pub no_reference: Vec<String>,
    /// Functions some of whose reference calls failed: `[name, [successful, calls]]`, in
    /// natural order (f2 before f10).
    pub partly_failed: Vec<(String, [u64; 2])>,
}

impl Coverage {
    /// What `reference` (the run of `policy`) makes of its functions.
    pub fn of(policy: &str, reference: &RunTotals) -> Coverage {
        let mut no_reference = reference.never_served();
        no_reference.sort_by(|a, b| natural_cmp(a, b));
        let mut partly_failed: Vec<(String, [u64; 2])> = reference
            .functions
            .iter()
            .filter(|(_, f)| f.ok > 0 && f.ok < f.calls)
            .map(|(name, f)| (name.clone(), [f.ok, f.calls]))
            .collect();
        partly_failed.sort_by(|a, b| natural_cmp(&a.0, &b.0));
        Coverage {
            policy: policy.to_string(),
            functions: reference.functions.len(),
            scored: reference.functions.len() - no_reference.len(),
            no_reference,
            partly_failed,
        }
    }

    /// The lines a reader must see before trusting the scores (none when every reference
    /// call succeeded).
    pub fn lines(&self) -> Vec<String> {
        let mut lines = Vec::new();
        if !self.no_reference.is_empty() {
            lines.push(format!(
                "scored over {} of {}; {} no successful reference call ({}): {}",
                self.scored,
                plural(self.functions, "function"),
                if self.no_reference.len() == 1 {
                    "1 has".to_string()
                } else {
                    format!("{} have", self.no_reference.len())
                },
                self.policy,
                names(&self.no_reference)
            ));
        }
        if !self.partly_failed.is_empty() {
            let described: Vec<String> = self
                .partly_failed
                .iter()
                .map(|(name, [ok, calls])| format!("{name} ({ok} of {calls} succeeded)"))
                .collect();
            lines.push(format!(
                "reference RT from successful calls only (scaled to all calls) for {}: {}",
                plural(self.partly_failed.len(), "function"),
                names(&described)
            ));
        }
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{Report, ReportOptions, tests::run};

    /// A run whose calls of the functions in `failing` all failed in 1 ms.
    fn failing(policy: &str, failing: &[&str]) -> crate::record::RunResult {
        let mut r = run(policy, 1.0, 2, 0);
        for call in &mut r.requests {
            if failing.contains(&call.function.as_str()) {
                call.error = Some("UNAVAILABLE".into());
                call.scheduling_ms = 1.0;
                call.duration_ms = 0.0;
            }
        }
        r
    }

    #[test]
    fn a_report_scores_over_the_functions_with_a_valid_reference_and_says_so() {
        // The baseline failed every call of f3 fast; "ours" served them all as fast as the
        // baseline served f1 and f2. Scored from f3's failed calls, ours would look 12 times
        // slower there.
        let rep = Report::new(
            vec![failing("baseline", &["f3"]), run("ours", 1.0, 2, 0)],
            ReportOptions::default(),
        )
        .unwrap();
        let ours = rep.policy("ours").unwrap();
        let detail = ours.score_detail.as_ref().unwrap();
        assert_eq!(detail.coverage(), (2, 3));
        assert!((ours.score.unwrap() - 1.0).abs() < 1e-9, "{:?}", ours.score);
        assert_eq!(ours.functions["f3"].rt_ratio, None);
        let line =
            "scored over 2 of 3 functions; 1 has no successful reference call (baseline): f3";
        assert!(rep.summary().contains(line), "{}", rep.summary());
        assert!(rep.to_html().unwrap().contains(line));
        assert_eq!(
            rep.to_json()["reference"]["no_reference"],
            serde_json::json!(["f3"])
        );
        assert!(
            !ours.notes.iter().any(|n| n.contains("f3")),
            "said once, not per policy"
        );
    }

    #[test]
    fn a_reference_that_served_nothing_gives_no_score_and_says_why() {
        let rep = Report::new(
            vec![
                failing("baseline", &["f1", "f2", "f3"]),
                run("ours", 1.0, 2, 0),
            ],
            ReportOptions::default(),
        )
        .unwrap();
        for name in ["baseline", "ours"] {
            let p = rep.policy(name).unwrap();
            assert_eq!(p.score, None, "{name}");
            assert!(
                p.notes.iter().any(|n| n.contains(
                    "no score: no valid reference: none of the reference's 1000 calls of its 3 \
                     functions succeeded (f1, f2, f3)"
                )),
                "{name}: {:?}",
                p.notes
            );
        }
        let s = rep.summary();
        assert!(
            s.contains("scored over 0 of 3 functions; 3 have no successful"),
            "{s}"
        );
        assert!(rep.to_json()["policies"]["ours"]["score"].is_null());
    }

    #[test]
    fn a_clean_reference_says_nothing() {
        let mut run = RunTotals::default();
        run.add("a", 1.0, true);
        let c = Coverage::of("baseline", &run);
        assert_eq!((c.functions, c.scored), (1, 1));
        assert!(c.lines().is_empty());
    }

    #[test]
    fn failed_reference_calls_are_named_with_the_count() {
        let mut run = RunTotals::default();
        for f in ["a", "b", "c"] {
            run.add(f, 5.0, true);
        }
        run.add("c", 1.0, false);
        for f in ["x", "y"] {
            run.add(f, 1.0, false);
        }
        let c = Coverage::of("baseline", &run);
        assert_eq!(c.no_reference, ["x", "y"]);
        assert_eq!(c.partly_failed, [("c".to_string(), [1, 2])]);
        assert_eq!(
            c.lines(),
            [
                "scored over 3 of 5 functions; 2 have no successful reference call (baseline): x, y",
                "reference RT from successful calls only (scaled to all calls) for 1 function: c (1 of 2 succeeded)"
            ]
        );
    }
}
