//! The fault bench: faults injected into a run at given times, and what each one cost.
//!
//! - A fault plan is written `FAULT@TIME,...` ([`parse_faults`]): `kill-node@30s`,
//!   `kill-containers:3@45s`, `pause-node:5s@1m`, `restart-scheduler@60s`,
//!   `restart-resource-manager@90s`, `restart-apiserver@2m` (times from the run's first send;
//!   units as for durations, [`parse_duration_ms`]).
//! - Whoever owns the platform strikes them ([`FaultInjector`]: the `faas` command for the
//!   local platform it started; the simulator for node loss in virtual time). Each strike is
//!   recorded in the run ([`InjectedFault`], in [`RunResult::faults`]), and what leaked once
//!   the platform stopped in [`RunResult::leaks`].
//! - [`fault_reports`] turns a run's strikes and requests into the figures of each fault
//!   ([`FaultReport`]): calls in flight on the faulted part when it struck, calls sent after
//!   it, failed calls after it by status, the time to the first success after it, and the
//!   time until the success rate is back at 99% over a 1 s window.
//!
//! Calls belong to the latest fault before they were sent; a call still in flight when the
//! next fault strikes, and failing, is that next fault's (it is among its `in_flight`), not
//! the earlier one's. A fault that could not strike changed nothing: it ends no earlier
//! fault's calls. Recovery is judged over windows that end before the next fault: faults
//! less than 1 s apart leave the earlier one's recovery unmeasured (`never`).

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::record::RunResult;

/// The window the success rate is judged over after a fault, ms.
pub const RECOVERY_WINDOW_MS: f64 = 1000.0;
/// The share of successes a window needs for the rate to count as back.
pub const RECOVERED_SUCCESS_RATE: f64 = 0.99;
/// The step between the windows judged, ms.
const RECOVERY_STEP_MS: f64 = 100.0;

/// A number with a unit (`ms`, `s`, `m`/`min`, `h`; none: seconds) in ms.
fn parse_ms(text: &str) -> Result<f64, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (try 2m, 90s, 1500ms, 1h)"))?;
    let factor = match unit.trim() {
        "" | "s" => 1000.0,
        "ms" => 1.0,
        "m" | "min" => 60_000.0,
        "h" => 3_600_000.0,
        other => {
            return Err(format!(
                "unknown unit {other:?} in {text:?} (use ms, s, m or h)"
            ));
        }
    };
    let ms = value * factor;
    if ms.is_finite() {
        Ok(ms)
    } else {
        Err(format!("{text:?} is too long"))
    }
}

/// Parses `2m`, `90s`, `1500ms`, `1h` or a bare number of seconds into milliseconds (at
/// least 1 ms).
pub fn parse_duration_ms(text: &str) -> Result<u64, String> {
    let ms = parse_ms(text)?;
    if ms < 1.0 {
        return Err(format!("{text:?} is too short: a run lasts at least 1 ms"));
    }
    Ok(ms.round() as u64)
}

/// Formats ms the way [`parse_duration_ms`] reads them: whole seconds as `30s`, else `ms`.
fn format_ms(ms: u64) -> String {
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// What a fault does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FaultKind {
    /// SIGKILL the node service holding the most function containers (its containers die
    /// with it).
    KillNode,
    /// SIGKILL this many function containers, the busiest first.
    KillContainers(u32),
    /// SIGSTOP the node service holding the most function containers, SIGCONT after this
    /// long, ms.
    PauseNode(u64),
    /// Stop the scheduler as a crash would and start it again on its port.
    RestartScheduler,
    /// Stop the resource manager as a crash would (its nodes keep running) and start it
    /// again on its port.
    RestartResourceManager,
    /// Stop the API server as a crash would and start it again on its port.
    RestartApiserver,
}

/// Every fault's name, for messages.
pub const FAULT_NAMES: [&str; 6] = [
    "kill-node",
    "kill-containers:N",
    "pause-node:DURATION",
    "restart-scheduler",
    "restart-resource-manager",
    "restart-apiserver",
];

impl FaultKind {
    /// Whether the fault restarts a whole component (every call in flight is on it).
    pub fn is_restart(self) -> bool {
        matches!(
            self,
            FaultKind::RestartScheduler
                | FaultKind::RestartResourceManager
                | FaultKind::RestartApiserver
        )
    }

    fn parse(text: &str) -> Result<FaultKind, String> {
        let (name, arg) = match text.split_once(':') {
            Some((name, arg)) => (name.trim(), Some(arg.trim())),
            None => (text.trim(), None),
        };
        let no_arg = |kind| match arg {
            None => Ok(kind),
            Some(a) => Err(format!("{name} takes no argument (got {a:?})")),
        };
        match name {
            "kill-node" => no_arg(FaultKind::KillNode),
            "restart-scheduler" => no_arg(FaultKind::RestartScheduler),
            "restart-resource-manager" => no_arg(FaultKind::RestartResourceManager),
            "restart-apiserver" => no_arg(FaultKind::RestartApiserver),
            "kill-containers" => {
                let a = arg.ok_or("kill-containers needs how many: kill-containers:N")?;
                match a.parse::<u32>() {
                    Ok(n) if n > 0 => Ok(FaultKind::KillContainers(n)),
                    _ => Err(format!(
                        "kill-containers:N needs a count of at least 1, not {a:?}"
                    )),
                }
            }
            "pause-node" => {
                let a = arg.ok_or("pause-node needs how long: pause-node:DURATION (e.g. 5s)")?;
                parse_duration_ms(a)
                    .map(FaultKind::PauseNode)
                    .map_err(|e| format!("pause-node: {e}"))
            }
            other => Err(format!(
                "unknown fault {other:?}; known: {}",
                FAULT_NAMES.join(", ")
            )),
        }
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FaultKind::KillNode => f.write_str("kill-node"),
            FaultKind::KillContainers(n) => write!(f, "kill-containers:{n}"),
            FaultKind::PauseNode(ms) => write!(f, "pause-node:{}", format_ms(*ms)),
            FaultKind::RestartScheduler => f.write_str("restart-scheduler"),
            FaultKind::RestartResourceManager => f.write_str("restart-resource-manager"),
            FaultKind::RestartApiserver => f.write_str("restart-apiserver"),
        }
    }
}

/// One fault of a plan: what, and when (ms from the run's first send).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Fault {
    pub kind: FaultKind,
    pub at_ms: u64,
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.kind, format_ms(self.at_ms))
    }
}

/// A fault plan: the faults of `--faults`, by time (a clap value).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FaultPlan(pub Vec<Fault>);

impl FaultPlan {
    /// Whether the plan has a fault of this kind (arguments aside).
    pub fn has(&self, wanted: impl Fn(FaultKind) -> bool) -> bool {
        self.0.iter().any(|f| wanted(f.kind))
    }

    /// Refuses a fault at or after `duration_ms`, the end of the run's sends.
    pub fn check_within(&self, duration_ms: u64) -> Result<(), String> {
        match self.0.iter().find(|f| f.at_ms >= duration_ms) {
            Some(f) => Err(format!(
                "fault {f} is not within the run (it sends for {})",
                format_ms(duration_ms)
            )),
            None => Ok(()),
        }
    }
}

impl fmt::Display for FaultPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(Fault::to_string).collect();
        f.write_str(&parts.join(","))
    }
}

/// Parses a fault plan: comma-separated `FAULT@TIME` (see the module documentation), sorted
/// by time (faults at the same time keep their order). The error names the part at fault.
pub fn parse_faults(spec: &str) -> Result<FaultPlan, String> {
    let mut faults = Vec::new();
    for part in spec.split(',').map(str::trim) {
        if part.is_empty() {
            return Err(format!(
                "empty fault in {spec:?}: give FAULT@TIME, comma-separated (e.g. kill-node@30s,restart-scheduler@60s)"
            ));
        }
        let (kind, at) = part
            .rsplit_once('@')
            .ok_or_else(|| format!("{part:?} has no time: write FAULT@TIME (e.g. {part}@30s)"))?;
        let kind = FaultKind::parse(kind).map_err(|e| format!("{part:?}: {e}"))?;
        let at_ms = parse_ms(at).map_err(|e| format!("{part:?}: {e}"))?;
        faults.push(Fault {
            kind,
            at_ms: at_ms.round() as u64,
        });
    }
    faults.sort_by_key(|f| f.at_ms);
    Ok(FaultPlan(faults))
}

/// What a strike hit, as the injector tells the driver.
#[derive(Clone, Debug, PartialEq)]
pub struct Strike {
    /// When the fault struck (the signal sent, the component stopped).
    pub at: Instant,
    /// What was hit, one line (`SIGKILL node-service node-3 (pid 4242, 5 containers)`).
    pub target: String,
    /// Calls in flight on the faulted part when it struck, when the injector knows them (a
    /// node's or containers' own count); `None`: every call in flight (a component restart).
    pub in_flight: Option<u64>,
}

/// Strikes faults into the platform a run is played against.
pub trait FaultInjector {
    /// Strikes `fault` now; an error says why it could not (nothing to hit, a restart that
    /// failed).
    fn inject(&mut self, fault: FaultKind) -> impl Future<Output = Result<Strike, String>> + Send;
}

/// An injector for runs without faults: refuses every fault.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoFaults;

impl FaultInjector for NoFaults {
    async fn inject(&mut self, fault: FaultKind) -> Result<Strike, String> {
        Err(format!("no fault injector: {fault} not struck"))
    }
}

/// A fault as it was struck in a run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InjectedFault {
    /// The fault as planned (`kill-node@30s`).
    pub fault: String,
    /// When it struck, ms from the run's start.
    pub at_ms: u64,
    /// What it hit (or, with `error`, what was tried).
    pub target: String,
    /// Calls in flight on the faulted part when it struck, if the injector counted them
    /// (`None`: every call in flight, counted from the requests).
    pub in_flight: Option<u64>,
    /// Why it could not strike (then it changed nothing).
    pub error: Option<String>,
}

/// What was left behind once the platform stopped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Leaks {
    /// Node-service and container-service processes still running after the stop.
    pub processes: u64,
    /// Containers the nodes held at the end of the run that the scheduler did not.
    pub containers: u64,
    /// Nodes reserved at the end of the run that the scheduler did not hold.
    pub nodes: u64,
}

impl Leaks {
    /// Whether nothing leaked.
    pub fn is_none(&self) -> bool {
        *self == Leaks::default()
    }
}

impl std::ops::Add for Leaks {
    type Output = Leaks;
    fn add(self, o: Leaks) -> Leaks {
        Leaks {
            processes: self.processes + o.processes,
            containers: self.containers + o.containers,
            nodes: self.nodes + o.nodes,
        }
    }
}

impl fmt::Display for Leaks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} processes, {} containers, {} nodes",
            self.processes, self.containers, self.nodes
        )
    }
}

/// One call in time, for the fault figures: sent at `start_ms`, answered at `end_ms`
/// (`None`: never), successfully or not. Times in ms from any common origin.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Span {
    pub start_ms: f64,
    pub end_ms: Option<f64>,
    pub ok: bool,
}

/// The calls in flight at `t`: sent by then and answered after (or never).
pub fn in_flight_at(spans: &[Span], t: f64) -> impl Iterator<Item = usize> + '_ {
    spans
        .iter()
        .enumerate()
        .filter(move |(_, s)| s.start_ms <= t && s.end_ms.is_none_or(|e| e > t))
        .map(|(i, _)| i)
}

/// From `t`, how long until the first answer that is a success of a call sent at or after
/// `t`, ms.
pub fn first_success_after(spans: &[Span], t: f64) -> Option<f64> {
    spans
        .iter()
        .filter(|s| s.start_ms >= t && s.ok)
        .filter_map(|s| s.end_ms)
        .min_by(f64::total_cmp)
        .map(|e| e - t)
}

/// From `t`, the earliest offset (in 100 ms steps) from which every `window_ms` of calls (by
/// send time) that ends by `until` has at least 99% successes: the success rate is back then
/// and stays back. `None` when even the last full window is below 99%, or no full window
/// fits. Unanswered calls count as failures; an empty window counts as good.
pub fn recovered_after(spans: &[Span], t: f64, until: f64, window_ms: f64) -> Option<f64> {
    let mut sorted: Vec<(f64, bool)> = spans.iter().map(|s| (s.start_ms, s.ok)).collect();
    sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
    // ok_before[k]: successes among the first k calls.
    let mut ok_before = vec![0usize; sorted.len() + 1];
    for (k, (_, ok)) in sorted.iter().enumerate() {
        ok_before[k + 1] = ok_before[k] + usize::from(*ok);
    }
    let index = |at: f64| sorted.partition_point(|(s, _)| *s < at);
    let steps = ((until - t - window_ms) / RECOVERY_STEP_MS).floor();
    if steps.is_nan() || steps < 0.0 {
        return None;
    }
    let mut back = None;
    for k in (0..=steps as u64).rev() {
        let from = t + k as f64 * RECOVERY_STEP_MS;
        let (a, b) = (index(from), index(from + window_ms));
        let (total, ok) = (b - a, ok_before[b] - ok_before[a]);
        if (ok as f64) < total as f64 * RECOVERED_SUCCESS_RATE {
            break;
        }
        back = Some(k as f64 * RECOVERY_STEP_MS);
    }
    back
}

/// A status as its canonical gRPC name: `DeadlineExceeded` → `DEADLINE_EXCEEDED`.
pub fn status_name(code: &str) -> String {
    let mut name = String::new();
    for (i, c) in code.trim().chars().enumerate() {
        if c.is_uppercase() && i > 0 {
            name.push('_');
        }
        name.push(c.to_ascii_uppercase());
    }
    name
}

/// The status of a recorded error (`"Unavailable: node lost"` → `UNAVAILABLE`; the driver's
/// own `Client: ...` → `CLIENT`).
pub fn error_status(error: &str) -> String {
    let code = error.split_once(':').map_or(error, |(code, _)| code);
    status_name(code)
}

/// The fields every fault of a JSON report has (the fault bench's contract), besides
/// `policy` and `target` (and `error` for a fault that could not strike).
pub const FAULT_FIELDS: [&str; 8] = [
    "fault",
    "at_ms",
    "in_flight",
    "sent_after",
    "failed_after",
    "failed_by_status",
    "first_success_ms",
    "recovered_ms",
];

/// One fault's figures in a run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FaultReport {
    /// The run's policy.
    pub policy: String,
    /// The fault as planned (`kill-node@30s`).
    pub fault: String,
    /// When it struck, ms from the run's start.
    pub at_ms: u64,
    /// What it hit.
    pub target: String,
    /// Calls in flight on the faulted part when it struck (for a component restart: every
    /// call in flight).
    pub in_flight: u64,
    /// Calls sent from the fault to the next one that struck (or the end of the run).
    pub sent_after: u64,
    /// Of those, the ones that failed (a failure still in flight at the next fault is that
    /// fault's).
    pub failed_after: u64,
    /// `failed_after` by status (`UNAVAILABLE`, `DEADLINE_EXCEEDED`, ...).
    pub failed_by_status: BTreeMap<String, u64>,
    /// From the fault to the first success of a call sent after it, ms.
    pub first_success_ms: Option<f64>,
    /// From the fault until the success rate is back at 99% over a 1 s window (and stays
    /// so until the next fault), ms, never before the first success; `None`: never.
    pub recovered_ms: Option<f64>,
    /// Why the fault could not strike.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl FaultReport {
    /// What the fault hit, or why it could not strike.
    pub fn hit(&self) -> String {
        match &self.error {
            Some(e) => format!("not struck: {e}"),
            None => self.target.clone(),
        }
    }
}

/// The figures of every fault struck in `run`, in order.
pub fn fault_reports(run: &RunResult) -> Vec<FaultReport> {
    let spans: Vec<Span> = run
        .requests
        .iter()
        .map(|r| Span {
            start_ms: r.at_ms as f64,
            end_ms: Some(r.at_ms as f64 + r.response_ms),
            ok: r.error.is_none(),
        })
        .collect();
    let end = run.effective_end_ms() as f64;
    let mut out = Vec::with_capacity(run.faults.len());
    for (k, f) in run.faults.iter().enumerate() {
        let t = f.at_ms as f64;
        // The next fault that struck (one that could not changed nothing).
        let next = run.faults[k + 1..]
            .iter()
            .find(|n| n.error.is_none())
            .map(|n| n.at_ms as f64);
        let until = next.unwrap_or(end).max(t);
        // The calls sent in [t, until), less the failures still in flight at the next fault.
        let mine: Vec<usize> = (0..spans.len())
            .filter(|&i| {
                let s = &spans[i];
                s.start_ms >= t
                    && s.start_ms < until
                    && (s.ok || next.is_none() || s.end_ms.is_some_and(|e| e <= until))
            })
            .collect();
        let mut failed_by_status: BTreeMap<String, u64> = BTreeMap::new();
        for &i in &mine {
            if let Some(e) = &run.requests[i].error {
                *failed_by_status.entry(error_status(e)).or_default() += 1;
            }
        }
        let sent_after = (0..spans.len())
            .filter(|&i| spans[i].start_ms >= t && spans[i].start_ms < until)
            .count() as u64;
        let own: Vec<Span> = mine.iter().map(|&i| spans[i]).collect();
        let first_success_ms = first_success_after(&own, t);
        let recovered_ms = recovered_after(&own, t, until, RECOVERY_WINDOW_MS)
            .zip(first_success_ms)
            .map(|(back, first)| back.max(first));
        // To 0.1 ms: the clocks measure no finer across a platform.
        let tenth = |v: f64| (v * 10.0).round() / 10.0;
        let (first_success_ms, recovered_ms) =
            (first_success_ms.map(tenth), recovered_ms.map(tenth));
        let in_flight = match f.in_flight {
            Some(n) => n,
            None if f.error.is_none() => in_flight_at(&spans, t).count() as u64,
            None => 0,
        };
        out.push(FaultReport {
            policy: run.policy.clone(),
            fault: f.fault.clone(),
            at_ms: f.at_ms,
            target: f.target.clone(),
            in_flight,
            sent_after,
            failed_after: failed_by_status.values().sum(),
            failed_by_status,
            first_success_ms,
            recovered_ms,
            error: f.error.clone(),
        });
    }
    out
}

#[cfg(test)]
mod tests;
