//! Reports across policies: one [`RunResult`] per policy on the same workload, scored against
//! the baseline, shown three ways:
//!
//! - [`Report::summary`]: a terminal table (per policy, then per function);
//! - [`Report::to_json`] / [`Report::write_json`]: `{"policies": {NAME: {"score", "requests",
//!   "errors", "cold_starts", "node_seconds", "idle_memory_mb_seconds", "latency_ms":
//!   {"p50","p99","p999"}, "functions": {...}, "leaks", ...}}, "faults": [{"policy", "fault",
//!   "at_ms", "target", "in_flight", "sent_after", "failed_after", "failed_by_status",
//!   "first_success_ms", "recovered_ms"}], "leaks": {"processes", "containers", "nodes"},
//!   ...}` (`faults`: every run's, in run order, see [`crate::fault::fault_reports`];
//!   `leaks`: summed over the runs that measured them, else `null`; each policy's own
//!   `leaks` beside its figures);
//! - [`Report::to_html`] / [`Report::write_html`]: one self-contained HTML file with SVG plots
//!   (see [`html`]).
//!
//! The baseline is the policy named by [`ReportOptions::baseline`], else the one called
//! `baseline`, else the first run. A policy whose score cannot be computed (see
//! [`crate::score`]) gets `"score": null` and a note saying why. Functions whose baseline
//! calls all failed have no valid reference and are in no score: [`Report::coverage`] (JSON
//! `"reference"`) names them once, and the summary and the page say "scored over N of M
//! functions" above the table (see `report/coverage.rs`).

mod charts;
mod coverage;
pub mod html;
mod series;
mod svg;
mod table;
mod ticks;

pub use coverage::Coverage;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::fault::{FaultReport, Leaks, fault_reports};
use crate::record::{LatencySummary, RunResult};
use crate::score::{NO_SUCCESSFUL_REFERENCE_CALL, Score, ScoreConfig, score};
use crate::workload::FunctionProfile;

/// Why a report could not be made or written.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("no runs to report")]
    NoRuns,
    #[error("policy {0:?} appears in two runs; give each run a distinct policy name")]
    DuplicatePolicy(String),
    #[error("baseline policy {name:?} is not among the runs ({available})")]
    UnknownBaseline { name: String, available: String },
    #[error("cannot write {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot draw a plot: {0}")]
    Plot(String),
}

/// How to build a report.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ReportOptions {
    /// The policy the others are scored against (default: `baseline`, else the first run).
    pub baseline: Option<String>,
    pub score: ScoreConfig,
    /// The workload's description, shown at the top.
    pub description: Option<String>,
    /// Credit owed to a trace's authors ([`crate::workload::Workload::attribution`]).
    pub attribution: Option<String>,
    /// What the workload's functions are (the HTML report shows each one's handler, memory
    /// and duration; a function not here shows dashes).
    pub functions: Vec<FunctionProfile>,
}

/// Percentiles of response time, ms.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub mean: f64,
}

impl From<LatencySummary> for Latency {
    fn from(s: LatencySummary) -> Self {
        Latency {
            p50: s.p50,
            p99: s.p99,
            p999: s.p999,
            max: s.max,
            mean: s.mean,
        }
    }
}

/// One function under one policy.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct FunctionReport {
    pub calls: u64,
    pub errors: u64,
    pub cold_starts: u64,
    /// RT_f: the sum of scheduling latency + duration, ms.
    pub rt_sum_ms: f64,
    /// RT_f / RT_f,baseline (absent for the baseline's own functions it cannot compare).
    pub rt_ratio: Option<f64>,
    pub latency_ms: Latency,
}

/// One policy's figures.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PolicyReport {
    /// The contest's score against the baseline (`None` when undefined: see `notes`).
    pub score: Option<f64>,
    pub requests: u64,
    pub errors: u64,
    pub error_rate: f64,
    pub cold_starts: u64,
    pub node_seconds: f64,
    /// `None` when the run recorded no container lifetimes.
    pub idle_memory_mb_seconds: Option<f64>,
    pub latency_ms: Latency,
    pub scheduling_ms: Latency,
    /// A run through the durable queue (`faas replay --async`): the delay from submit to
    /// result; absent for a synchronous run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_to_end_ms: Option<Latency>,
    /// The score's parts.
    pub score_detail: Option<Score>,
    pub functions: BTreeMap<String, FunctionReport>,
    pub notes: Vec<String>,
    /// What this run left behind once its platform stopped (`None`: not measured).
    pub leaks: Option<Leaks>,
}

/// A report across policies.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    pub workload: String,
    pub description: Option<String>,
    pub attribution: Option<String>,
    pub baseline: String,
    pub score_config: ScoreConfig,
    /// In the order the runs were given.
    #[serde(serialize_with = "policies_as_map")]
    pub policies: Vec<(String, PolicyReport)>,
    /// Which functions the scores are over (JSON `"reference"`).
    #[serde(rename = "reference")]
    pub coverage: Coverage,
    /// Every run's faults, in run order.
    pub faults: Vec<FaultReport>,
    /// What the runs left behind, summed (`None`: no run measured it).
    pub leaks: Option<Leaks>,
    /// What the workload's functions are ([`ReportOptions::functions`]).
    #[serde(skip)]
    pub functions: Vec<FunctionProfile>,
    #[serde(skip)]
    runs: Vec<RunResult>,
}

fn policies_as_map<S: serde::Serializer>(
    v: &[(String, PolicyReport)],
    s: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut m = s.serialize_map(Some(v.len()))?;
    for (k, p) in v {
        m.serialize_entry(k, p)?;
    }
    m.end()
}

/// Orders names with their digit runs compared as numbers: `f2` before `f10`.
pub fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    fn chunks(s: &str) -> Vec<(bool, &str)> {
        let mut out = Vec::new();
        let mut start = 0;
        let bytes = s.as_bytes();
        for i in 1..=bytes.len() {
            if i == bytes.len() || bytes[i].is_ascii_digit() != bytes[start].is_ascii_digit() {
                out.push((bytes[start].is_ascii_digit(), &s[start..i]));
                start = i;
            }
        }
        out
    }
    let (ca, cb) = (chunks(a), chunks(b));
    for (x, y) in ca.iter().zip(&cb) {
        let ord = match (x, y) {
            ((true, x), (true, y)) => {
                let (tx, ty) = (x.trim_start_matches('0'), y.trim_start_matches('0'));
                tx.len().cmp(&ty.len()).then_with(|| tx.cmp(ty))
            }
            ((_, x), (_, y)) => x.cmp(y),
        };
        if ord.is_ne() {
            return ord;
        }
    }
    ca.len().cmp(&cb.len()).then_with(|| a.cmp(b))
}

impl Report {
    /// Scores every run against the baseline and gathers the figures.
    pub fn new(runs: Vec<RunResult>, options: ReportOptions) -> Result<Report, ReportError> {
        if runs.is_empty() {
            return Err(ReportError::NoRuns);
        }
        for (i, r) in runs.iter().enumerate() {
            if runs[..i].iter().any(|o| o.policy == r.policy) {
                return Err(ReportError::DuplicatePolicy(r.policy.clone()));
            }
        }
        let base_idx = match &options.baseline {
            Some(name) => runs.iter().position(|r| &r.policy == name).ok_or_else(|| {
                ReportError::UnknownBaseline {
                    name: name.clone(),
                    available: runs
                        .iter()
                        .map(|r| r.policy.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                }
            })?,
            None => runs
                .iter()
                .position(|r| r.policy == "baseline")
                .unwrap_or(0),
        };
        let base_totals = runs[base_idx].totals();
        let coverage = Coverage::of(&runs[base_idx].policy, &base_totals);
        let mut policies = Vec::with_capacity(runs.len());
        for run in &runs {
            let totals = run.totals();
            let mut notes = run.notes.clone();
            let detail = match score(&totals, &base_totals, &options.score) {
                Ok(s) => {
                    // Those without a valid reference are said once, for every policy.
                    for (f, why) in &s.unmatched {
                        if why != NO_SUCCESSFUL_REFERENCE_CALL {
                            notes.push(format!("function {f} not scored: {why}"));
                        }
                    }
                    Some(s)
                }
                Err(e) => {
                    notes.push(format!("no score: {e}"));
                    None
                }
            };
            let mut per_fn: BTreeMap<String, (FunctionReport, LatencySummary)> = BTreeMap::new();
            if let Some(s) = &run.summary {
                for (name, f) in s
                    .names
                    .iter()
                    .zip(&s.functions)
                    .filter(|(_, f)| f.calls > 0)
                {
                    let report = FunctionReport {
                        calls: f.calls,
                        errors: f.errors,
                        cold_starts: f.cold_starts,
                        rt_sum_ms: f.rt_sum_ms,
                        ..FunctionReport::default()
                    };
                    per_fn.insert(name.clone(), (report, f.response_ms.summary()));
                }
            } else {
                let mut latencies: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
                for r in &run.requests {
                    let (f, _) = per_fn.entry(r.function.clone()).or_default();
                    f.calls += 1;
                    f.errors += u64::from(r.error.is_some());
                    f.cold_starts += u64::from(r.cold);
                    f.rt_sum_ms += r.rt_ms();
                    latencies
                        .entry(&r.function)
                        .or_default()
                        .push(r.response_ms);
                }
                for (name, lat) in latencies {
                    if let Some((_, summary)) = per_fn.get_mut(name) {
                        *summary = LatencySummary::of(lat);
                    }
                }
            }
            let functions = per_fn
                .into_iter()
                .map(|(name, (mut f, lat))| {
                    f.latency_ms = lat.into();
                    f.rt_ratio = detail
                        .as_ref()
                        .and_then(|s| s.rt_ratios.get(&name).copied());
                    (name, f)
                })
                .collect();
            policies.push((
                run.policy.clone(),
                PolicyReport {
                    score: detail.as_ref().map(|s| s.value),
                    requests: totals.requests,
                    errors: totals.errors,
                    error_rate: totals.error_rate(),
                    cold_starts: run.cold_starts(),
                    node_seconds: totals.node_seconds,
                    idle_memory_mb_seconds: run.idle_memory_mb_seconds(),
                    latency_ms: run.latency().into(),
                    scheduling_ms: run.scheduling_latency().into(),
                    end_to_end_ms: run.end_to_end_latency().map(Latency::from),
                    score_detail: detail,
                    functions,
                    notes,
                    leaks: run.leaks,
                },
            ));
        }
        let faults = runs.iter().flat_map(fault_reports).collect();
        let leaks = runs.iter().filter_map(|r| r.leaks).reduce(|a, b| a + b);
        Ok(Report {
            workload: runs[base_idx].workload.clone(),
            description: options.description,
            attribution: options.attribution,
            baseline: runs[base_idx].policy.clone(),
            score_config: options.score,
            policies,
            coverage,
            faults,
            leaks,
            functions: options.functions,
            runs,
        })
    }

    /// The runs the report was made from.
    pub fn runs(&self) -> &[RunResult] {
        &self.runs
    }

    /// What each policy's run left behind, for the runs that measured it.
    pub fn leaks_by_policy(&self) -> Vec<(&str, Leaks)> {
        self.policies
            .iter()
            .filter_map(|(name, p)| Some((name.as_str(), p.leaks?)))
            .collect()
    }

    /// One policy's figures.
    pub fn policy(&self, name: &str) -> Option<&PolicyReport> {
        self.policies
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, p)| p)
    }

    /// The terminal summary table.
    pub fn summary(&self) -> String {
        table::render(self)
    }

    /// The report as JSON (see the module documentation for the shape).
    pub fn to_json(&self) -> serde_json::Value {
        // Serialising plain numbers, strings and maps cannot fail; non-finite floats become null.
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }

    /// Writes [`Report::to_json`] to `path`, pretty-printed.
    pub fn write_json(&self, path: &Path) -> Result<(), ReportError> {
        let text = serde_json::to_string_pretty(&self.to_json()).unwrap_or_default();
        std::fs::write(path, text + "\n").map_err(|source| ReportError::Io {
            path: path.to_path_buf(),
            source,
        })
    }

    /// The report as one self-contained HTML page.
    pub fn to_html(&self) -> Result<String, ReportError> {
        html::render(self)
    }

    /// Writes [`Report::to_html`] to `path`.
    pub fn write_html(&self, path: &Path) -> Result<(), ReportError> {
        let page = self.to_html()?;
        std::fs::write(path, page).map_err(|source| ReportError::Io {
            path: path.to_path_buf(),
            source,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::record::{ContainerLifetime, NodeUsage, RequestRecord};

    /// A small run: `slow` multiplies the durations, `nodes` nodes held all along.
    pub(crate) fn run(policy: &str, slow: f64, nodes: usize, errors: usize) -> RunResult {
        let mut r = RunResult::new(policy, "test");
        r.end_ms = 60_000;
        for i in 0..1000u64 {
            let f = format!("f{}", i % 3 + 1);
            r.requests.push(RequestRecord {
                function: f.clone(),
                at_ms: i * 50,
                response_ms: 12.0 * slow + (i % 7) as f64,
                scheduling_ms: 2.0,
                duration_ms: 10.0 * slow,
                cold: i % 100 == 0,
                error: ((i as usize) < errors).then(|| "Timeout".to_string()),
                node_id: Some("n0".into()),
                container_id: Some(format!("c{}", i % 3)),
            });
        }
        r.nodes = (0..nodes)
            .map(|i| NodeUsage {
                id: format!("n{i}"),
                reserved_ms: 0,
                released_ms: None,
            })
            .collect();
        r.containers = (0..3)
            .map(|i| ContainerLifetime {
                id: format!("c{i}"),
                node_id: "n0".into(),
                function: format!("f{}", i + 1),
                memory_bytes: 128 << 20,
                created_ms: 0,
                removed_ms: None,
            })
            .collect();
        r
    }

    #[test]
    fn json_has_the_agreed_field_names() {
        let rep = Report::new(
            vec![run("baseline", 1.0, 4, 0), run("ours", 0.5, 2, 5)],
            ReportOptions::default(),
        )
        .unwrap();
        let j = rep.to_json();
        let ours = &j["policies"]["ours"];
        for k in [
            "score",
            "requests",
            "errors",
            "cold_starts",
            "node_seconds",
            "idle_memory_mb_seconds",
            "latency_ms",
            "functions",
        ] {
            assert!(ours.get(k).is_some(), "missing {k}");
        }
        for k in ["p50", "p99", "p999"] {
            assert!(ours["latency_ms"][k].is_number(), "missing latency_ms.{k}");
        }
        assert_eq!(ours["requests"], 1000);
        assert_eq!(ours["errors"], 5);
        assert_eq!(ours["cold_starts"], 10);
        assert_eq!(ours["node_seconds"], 120.0);
        assert_eq!(j["policies"]["baseline"]["score"], 1.0);
        // (0.5 x 12/12 RT ratio... ) RT per request: 2 + 10*slow; ratio (2+5)/(2+10).
        let expect = 0.5 * (7.0 / 12.0) + 0.5 * 0.5 + 10.0;
        assert!((ours["score"].as_f64().unwrap() - expect).abs() < 1e-9);
        assert_eq!(ours["functions"]["f1"]["calls"], 334);
        assert!(ours["functions"]["f2"]["latency_ms"]["p99"].is_number());
        assert_eq!(j["baseline"], "baseline");
        // The summary names every policy and function.
        let s = rep.summary();
        assert!(
            s.contains("ours") && s.contains("baseline") && s.contains("f3"),
            "{s}"
        );
    }

    #[test]
    fn faults_and_leaks_sit_beside_the_policies() {
        use crate::fault::{InjectedFault, Leaks};
        let plain =
            Report::new(vec![run("baseline", 1.0, 1, 0)], ReportOptions::default()).unwrap();
        let j = plain.to_json();
        assert_eq!(j["faults"], serde_json::json!([]));
        assert!(j["leaks"].is_null() && j["policies"]["baseline"]["leaks"].is_null());
        assert!(!plain.summary().contains("faults"));

        let mut faulted = run("ours", 1.0, 1, 0);
        faulted.faults.push(InjectedFault {
            fault: "kill-node@10s".into(),
            at_ms: 10_020,
            target: "SIGKILL node-service n0".into(),
            in_flight: Some(2),
            error: None,
        });
        faulted.leaks = Some(Leaks {
            processes: 0,
            containers: 1,
            nodes: 0,
        });
        let mut clean = run("baseline", 1.0, 1, 0);
        clean.leaks = Some(Leaks::default());
        let rep = Report::new(vec![clean, faulted], ReportOptions::default()).unwrap();
        let j = rep.to_json();
        let f = &j["faults"][0];
        assert_eq!(j["faults"].as_array().unwrap().len(), 1);
        for k in crate::fault::FAULT_FIELDS
            .iter()
            .chain(&["policy", "target"])
        {
            assert!(f.get(k).is_some(), "missing faults[0].{k}");
        }
        assert_eq!(f["policy"], "ours");
        assert_eq!(f["in_flight"], 2);
        // The test run sends a call every 50 ms until 50 s: from 10.05 s on, 799.
        assert_eq!(f["sent_after"], 799);
        assert_eq!(f["failed_after"], 0);
        assert_eq!(
            j["leaks"],
            serde_json::json!({"processes": 0, "containers": 1, "nodes": 0})
        );
        assert_eq!(j["policies"]["ours"]["leaks"]["containers"], 1);
        assert_eq!(j["policies"]["baseline"]["leaks"]["containers"], 0);
        let s = rep.summary();
        assert!(
            s.contains("kill-node@10s") && s.contains("SIGKILL node-service n0"),
            "{s}"
        );
        assert!(
            s.contains("ours: 0 processes, 1 containers, 0 nodes"),
            "{s}"
        );
        let page = rep.to_html().unwrap();
        assert!(page.contains(">Faults</h2>") && page.contains(">Left behind</h2>"));
        assert!(page.contains("Failed calls per 1 s"));
    }

    #[test]
    fn natural_order() {
        let mut v = vec!["f10", "f2", "f1", "g", "f", "f02", "t-9a", "t-10"];
        v.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(v, ["f", "f1", "f02", "f2", "f10", "g", "t-9a", "t-10"]);
    }

    #[test]
    fn baseline_choice_and_errors() {
        assert!(matches!(
            Report::new(vec![], ReportOptions::default()),
            Err(ReportError::NoRuns)
        ));
        let dup = vec![run("a", 1.0, 1, 0), run("a", 1.0, 1, 0)];
        assert!(matches!(
            Report::new(dup, ReportOptions::default()),
            Err(ReportError::DuplicatePolicy(_))
        ));
        let opts = ReportOptions {
            baseline: Some("zzz".into()),
            ..ReportOptions::default()
        };
        let e = Report::new(vec![run("a", 1.0, 1, 0)], opts).unwrap_err();
        assert!(e.to_string().contains("zzz") && e.to_string().contains('a'));
        let opts = ReportOptions {
            baseline: Some("b".into()),
            ..ReportOptions::default()
        };
        let rep = Report::new(vec![run("a", 2.0, 2, 0), run("b", 1.0, 1, 0)], opts).unwrap();
        assert_eq!(rep.baseline, "b");
        assert_eq!(rep.policy("b").unwrap().score, Some(1.0));
        // A baseline with no nodes: no score, and a note saying why.
        let rep = Report::new(
            vec![run("baseline", 1.0, 0, 0), run("x", 1.0, 1, 0)],
            ReportOptions::default(),
        )
        .unwrap();
        let x = rep.policy("x").unwrap();
        assert_eq!(x.score, None);
        assert!(x.notes.iter().any(|n| n.contains("no node time")));
        assert!(rep.to_json()["policies"]["x"]["score"].is_null());
    }

    #[test]
    fn files_are_written() {
        let dir = std::env::temp_dir().join(format!("faas-e2e-report-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let rep = Report::new(vec![run("baseline", 1.0, 1, 0)], ReportOptions::default()).unwrap();
        rep.write_json(&dir.join("r.json")).unwrap();
        rep.write_html(&dir.join("r.html")).unwrap();
        let j: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("r.json")).unwrap()).unwrap();
        assert_eq!(j["policies"]["baseline"]["requests"], 1000);
        assert!(
            std::fs::read_to_string(dir.join("r.html"))
                .unwrap()
                .contains("<svg")
        );
        let missing = dir.join("no/such/dir/r.json");
        let e = rep.write_json(&missing).unwrap_err();
        assert!(e.to_string().contains("no/such/dir"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
