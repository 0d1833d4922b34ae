//! The platform's test bench: contest-style and real-trace load, the contest's score, and
//! reports across scheduling policies.
//!
//! This crate has no binary: the `faas` command drives it (`faas replay`, `faas simulate`).
//! The live driver ([`live`]) plays a workload against a running platform; the simulator
//! ([`sim`]) plays it in virtual time through the scheduler's real policy core; both produce
//! the same [`RunResult`]:
//!
//! ```text
//!  scenario::build / trace::Trace::open(..).to_workload(..)
//!        │  Workload { functions: Vec<FunctionProfile>, invocations: Vec<Invocation> (time-sorted) }
//!        ▼
//!  live driver / simulator  ── one per policy ──▶  RunResult { requests, nodes, containers }
//!        ▼
//!  report::Report::new(runs, ReportOptions) ──▶ summary() / write_json(path) / write_html(path)
//! ```
//!
//! ## Modules
//!
//! - [`workload`]: the model. [`workload::FunctionProfile`] (name, [`workload::HandlerKind`],
//!   `memory_bytes`, `timeout_ms`, duration and memory [`workload::ValueModel`]s, an
//!   [`workload::EventBuilder`]); [`workload::Arrivals`] (Poisson, bursts, periodic);
//!   [`workload::Workload`] (functions + time-sorted [`workload::Invocation`]s with the
//!   exact event bytes and the expected duration and memory); [`workload::WorkloadBuilder`].
//!   Deterministic for a seed.
//! - [`scenario`]: built-in scenarios; `contest` reconstructs the 2020 contest's 15 functions
//!   and scales with [`scenario::ScenarioOptions`] (the default fits a 2-core machine in 2
//!   minutes).
//! - [`trace`]: Azure Functions 2019 (per minute) and 2021 (per invocation) readers, columns by
//!   header name, errors naming file and line; [`trace::TraceOptions`] selects functions, a
//!   window, scaling.
//! - [`score`]: the contest's formula ([`score::score`] over [`score::RunTotals`]).
//! - [`record`]: what a run produced ([`record::RunResult`] of [`record::RequestRecord`],
//!   [`record::NodeUsage`], [`record::ContainerLifetime`]) and its figures (node-seconds, idle
//!   memory-time, percentiles, time series).
//! - [`report`]: [`report::Report`] across policies: terminal table, JSON, HTML with plots.
//! - [`live`]: the open-loop live driver ([`live::run`] with [`live::LiveOptions`]): deploys
//!   the functions, sends each invocation at its time, records every reply's metadata, polls
//!   node services for container lifetimes and the resource manager for node-seconds.
//! - [`sim`]: the virtual-time simulator ([`sim::simulate`] / [`sim::simulate_named`] with
//!   [`sim::SimOptions`]): the policy core against models of the resource manager, the node
//!   services and the functions; deterministic for a seed; a day of the 200-function trace
//!   (1.6 million calls) in a few seconds.
//! - [`fault`]: the fault bench: fault plans (`kill-node@30s,restart-scheduler@60s`), the
//!   [`fault::FaultInjector`] the live driver strikes them with ([`live::run_with_faults`];
//!   the simulator strikes node loss itself), and each fault's figures in the report (calls
//!   in flight, failures after it by status, time to the first success and to a 99% success
//!   rate) with what leaked once the platform stopped.
//! - [`procs`] and [`observe`]: the local platform's processes as /proc shows them (find,
//!   signal, count what is left), and what its components say about themselves (reserved
//!   nodes against the scheduler's, containers, Prometheus figures).
//!
//! ## For the live driver and the simulator
//!
//! - Deploy `workload.functions` (name, `handler.as_str()`, `memory_bytes`, `timeout_ms`), then
//!   send each `workload.invocations[i]` at `at_ms` with its `event` bytes to the function
//!   `workload.functions[inv.function].name`. The simulator runs the body for
//!   `expected_duration_ms` touching `expected_memory_mb`.
//! - For each request push a [`record::RequestRecord`]; fill `nodes` from `GetNodesUsage`
//!   ([`record::NodeUsage::from_epoch_ms`]) and `containers` where known; set `end_ms`.
//! - Build the report with `ReportOptions { attribution: workload.attribution.clone(),
//!   description: Some(workload.description.clone()), functions: workload.functions.clone(),
//!   .. }` (the functions: what the HTML report says each one is).
//!
//! ```
//! use faas_e2e::{record::{RequestRecord, NodeUsage, RunResult}, report::{Report, ReportOptions}};
//! use faas_e2e::scenario::{self, ScenarioOptions};
//!
//! let workload = scenario::build("contest", &ScenarioOptions::default()).unwrap();
//! let mut runs = Vec::new();
//! for (policy, sched_ms) in [("baseline", 5.0), ("ours", 2.0)] {
//!     let mut run = RunResult::new(policy, &workload.name);
//!     for inv in &workload.invocations {
//!         let d = inv.expected_duration_ms as f64;
//!         run.requests.push(RequestRecord {
//!             function: workload.function_of(inv).name.clone(),
//!             at_ms: inv.at_ms,
//!             response_ms: sched_ms + d,
//!             scheduling_ms: sched_ms,
//!             duration_ms: d,
//!             cold: false,
//!             error: None,
//!             node_id: None,
//!             container_id: None,
//!         });
//!     }
//!     run.nodes.push(NodeUsage { id: "n1".into(), reserved_ms: 0, released_ms: None });
//!     run.end_ms = workload.duration_ms as i64;
//!     runs.push(run);
//! }
//! let report = Report::new(runs, ReportOptions::default()).unwrap();
//! assert!(report.policy("ours").unwrap().score.unwrap() < 1.0);
//! ```

pub mod fault;
pub mod live;
pub mod observe;
pub mod pareto;
pub mod procs;
pub mod record;
pub mod report;
pub mod scenario;
pub mod score;
pub mod sim;
pub mod trace;
pub mod workload;

pub use record::{ContainerLifetime, NodeUsage, RequestRecord, RunResult};
pub use report::{Report, ReportError, ReportOptions};
pub use scenario::ScenarioOptions;
pub use score::{RunTotals, ScoreConfig};
pub use trace::{Trace, TraceError, TraceOptions};
pub use workload::{FunctionProfile, HandlerKind, Invocation, Workload, WorkloadError};
