//! The workload model: which functions exist, how each one behaves, and when it is called.
//!
//! A [`Workload`] is what the live driver replays against a running platform and what the
//! simulator plays in virtual time: a list of [`FunctionProfile`]s (handler, memory limit,
//! timeout, duration and memory models) and a time-sorted list of [`Invocation`]s (when, which
//! function, the exact event bytes, the duration and memory the body was asked for).
//!
//! Workloads are built either from arrival patterns with a [`WorkloadBuilder`] (the built-in
//! scenarios, see [`crate::scenario`]) or directly from a trace with [`Workload::new`] (see
//! [`crate::trace`]). Everything random is drawn from `rand::rngs::StdRng` seeded from the
//! workload's seed, so one seed always gives the same workload, byte for byte.
//!
//! ## Events of the built-in handlers
//!
//! [`EventBuilder::Handler`] writes the JSON event the container service's built-in handlers
//! read; `ms` and `mb` are whole numbers:
//!
//! | handler | event | the body |
//! |---|---|---|
//! | `hello` | `{"name":"<function>"}` | answers at once |
//! | `echo` | `{"say":"<function>"}` | returns the event |
//! | `sleep` | `{"ms":N}` | sleeps N ms |
//! | `cpu` | `{"ms":N}` | burns CPU for about N ms |
//! | `spin` | `{"ms":N,"mb":M}` | spins N ms of CPU after touching M MiB |
//! | `memory` | `{"mb":M,"ms":N}` | allocates and touches M MiB, holds it N ms |

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

mod arrivals;
mod compact;

pub use arrivals::*;
pub use compact::*;

/// One mebibyte in bytes.
pub use faas_common::units::MIB;

/// Errors of building a workload: always a mistake in the options or the data given.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WorkloadError {
    #[error("unknown handler {0:?}: expected one of {names}", names = HandlerKind::NAMES.join(", "))]
    UnknownHandler(String),
    #[error("invalid percentiles: {0}")]
    InvalidPercentiles(String),
    #[error("invalid option {name}: {reason}")]
    InvalidOption { name: &'static str, reason: String },
    #[error("invocation {index} names function {function}, but the workload has {count} functions")]
    NoSuchFunction {
        index: usize,
        function: usize,
        count: usize,
    },
    #[error("function {index} is invalid: {reason}")]
    InvalidFunction { index: usize, reason: String },
}

/// The container service's built-in handlers: the platform's one list
/// ([`faas_proto::builtin`]); serialised by their lowercase names.
pub use faas_proto::builtin::Builtin as HandlerKind;

impl From<faas_proto::builtin::UnknownBuiltin> for WorkloadError {
    fn from(e: faas_proto::builtin::UnknownBuiltin) -> WorkloadError {
        WorkloadError::UnknownHandler(e.0)
    }
}

/// An empirical distribution given by percentiles: `(quantile in [0, 1], value)` points.
///
/// Sampling follows the trace-replay method: draw a quantile uniformly, find the two
/// neighbouring percentiles and draw uniformly between their values. Quantiles below the
/// first point give the first value, above the last the last value. Values are made
/// non-decreasing (a running maximum) so that slightly inconsistent data still samples.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    points: Vec<(f64, f64)>,
}

impl Percentiles {
    /// Builds a distribution from `(quantile, value)` points in any order. Needs at least one
    /// point; quantiles in [0, 1], values finite and not negative, no quantile twice.
    pub fn new(points: impl IntoIterator<Item = (f64, f64)>) -> Result<Self, WorkloadError> {
        let mut points: Vec<(f64, f64)> = points.into_iter().collect();
        if points.is_empty() {
            return Err(WorkloadError::InvalidPercentiles("no points".into()));
        }
        for &(q, v) in &points {
            if !(0.0..=1.0).contains(&q) {
                return Err(WorkloadError::InvalidPercentiles(format!(
                    "quantile {q} is outside [0, 1]"
                )));
            }
            if !v.is_finite() || v < 0.0 {
                return Err(WorkloadError::InvalidPercentiles(format!(
                    "value {v} at quantile {q} is not a finite, non-negative number"
                )));
            }
        }
        points.sort_by(|a, b| a.0.total_cmp(&b.0));
        if points.windows(2).any(|w| w[0].0 == w[1].0) {
            return Err(WorkloadError::InvalidPercentiles(
                "a quantile appears twice".into(),
            ));
        }
        let mut max = 0.0f64;
        for p in &mut points {
            max = max.max(p.1);
            p.1 = max;
        }
        Ok(Percentiles { points })
    }

    /// A uniform distribution over `[lo, hi]`.
    pub fn uniform(lo: f64, hi: f64) -> Result<Self, WorkloadError> {
        if lo > hi {
            return Err(WorkloadError::InvalidPercentiles(format!(
                "uniform range {lo}..{hi} is empty"
            )));
        }
        Percentiles::new([(0.0, lo), (1.0, hi)])
    }

    /// The `(quantile, value)` points, sorted by quantile.
    pub fn points(&self) -> &[(f64, f64)] {
        &self.points
    }

    /// The smallest value the distribution can give.
    pub fn min(&self) -> f64 {
        self.points[0].1
    }

    /// The largest value the distribution can give.
    pub fn max(&self) -> f64 {
        self.points[self.points.len() - 1].1
    }

    /// The same distribution with every value multiplied by `factor` (finite, >= 0).
    pub fn scaled(&self, factor: f64) -> Self {
        Percentiles {
            points: self.points.iter().map(|&(q, v)| (q, v * factor)).collect(),
        }
    }

    /// The value at quantile `u` (uniform between neighbouring points).
    pub fn value_at(&self, u: f64, between: f64) -> f64 {
        let p = &self.points;
        if u <= p[0].0 {
            return p[0].1;
        }
        for w in p.windows(2) {
            let ((_, lo), (q1, hi)) = (w[0], w[1]);
            if u <= q1 {
                return lo + (hi - lo) * between;
            }
        }
        p[p.len() - 1].1
    }

    /// Draws one value (see the type's documentation).
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> f64 {
        let u: f64 = rng.random();
        let between: f64 = rng.random();
        self.value_at(u, between)
    }
}

/// How a number (a duration in ms, a memory size in MiB) is chosen for each invocation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ValueModel {
    /// Always the same value.
    Fixed(f64),
    /// Drawn from percentiles (input-dependent durations, real-trace marginals).
    Percentiles(Percentiles),
}

impl ValueModel {
    /// A value drawn uniformly from `[lo, hi]`.
    pub fn uniform(lo: f64, hi: f64) -> Result<Self, WorkloadError> {
        Ok(ValueModel::Percentiles(Percentiles::uniform(lo, hi)?))
    }

    /// Draws one value. A fixed model draws nothing from `rng`.
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> f64 {
        match self {
            ValueModel::Fixed(v) => *v,
            ValueModel::Percentiles(p) => p.sample(rng),
        }
    }

    /// The same model with every value multiplied by `factor`.
    pub fn scaled(&self, factor: f64) -> Self {
        match self {
            ValueModel::Fixed(v) => ValueModel::Fixed(v * factor),
            ValueModel::Percentiles(p) => ValueModel::Percentiles(p.scaled(factor)),
        }
    }

    /// The largest value the model can give.
    pub fn max(&self) -> f64 {
        match self {
            ValueModel::Fixed(v) => *v,
            ValueModel::Percentiles(p) => p.max(),
        }
    }
}

/// How an invocation's event bytes are written.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventBuilder {
    /// The JSON the function's built-in handler reads (see the module documentation).
    Handler,
    /// The same bytes for every invocation.
    Fixed(Vec<u8>),
}

impl EventBuilder {
    /// The event for one invocation of `function` asked to run `ms` and touch `mb`.
    pub fn build(&self, function: &FunctionProfile, ms: u64, mb: u64) -> Vec<u8> {
        match self {
            EventBuilder::Fixed(bytes) => bytes.clone(),
            EventBuilder::Handler => {
                let v = match function.handler {
                    HandlerKind::Hello => serde_json::json!({ "name": function.name }),
                    HandlerKind::Echo => serde_json::json!({ "say": function.name }),
                    HandlerKind::Sleep | HandlerKind::Cpu => serde_json::json!({ "ms": ms }),
                    HandlerKind::Spin => serde_json::json!({ "ms": ms, "mb": mb }),
                    HandlerKind::Memory => serde_json::json!({ "mb": mb, "ms": ms }),
                };
                // Serialising a `Value` built from numbers and strings cannot fail.
                serde_json::to_vec(&v).unwrap_or_default()
            }
        }
    }
}

/// A function of the workload: what is deployed, and how its invocations behave.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FunctionProfile {
    /// The function's name (unique within the workload).
    pub name: String,
    /// The built-in handler that implements it.
    pub handler: HandlerKind,
    /// The container's memory limit (`memory_in_bytes`).
    pub memory_bytes: u64,
    /// The function's timeout (`timeout_in_ms`).
    pub timeout_ms: u64,
    /// How long one invocation's body runs, in ms.
    pub duration_ms: ValueModel,
    /// How much memory one invocation's body touches, in MiB.
    pub memory_mb: ValueModel,
    /// How the event bytes are written.
    pub event: EventBuilder,
    /// Where the function came from (a trace's hashes, a scenario's description).
    pub origin: Option<String>,
}

impl FunctionProfile {
    /// A function with the given handler, limit and timeout, a fixed duration of `duration_ms`,
    /// touching no extra memory, with the handler's own events.
    pub fn new(
        name: impl Into<String>,
        handler: HandlerKind,
        memory_bytes: u64,
        timeout_ms: u64,
        duration_ms: f64,
    ) -> Self {
        FunctionProfile {
            name: name.into(),
            handler,
            memory_bytes,
            timeout_ms,
            duration_ms: ValueModel::Fixed(duration_ms),
            memory_mb: ValueModel::Fixed(0.0),
            event: EventBuilder::Handler,
            origin: None,
        }
    }

    /// Draws one invocation's duration and memory, and writes its event.
    pub fn draw<R: Rng + ?Sized>(&self, rng: &mut R) -> (u64, u64, Vec<u8>) {
        let ms = self.duration_ms.sample(rng).max(0.0).round() as u64;
        let mb = self.memory_mb.sample(rng).max(0.0).round() as u64;
        let event = self.event.build(self, ms, mb);
        (ms, mb, event)
    }

    fn validate(&self, index: usize) -> Result<(), WorkloadError> {
        let bad = |reason: String| Err(WorkloadError::InvalidFunction { index, reason });
        if self.name.is_empty() {
            return bad("the name is empty".into());
        }
        if self.memory_bytes == 0 {
            return bad(format!("{}: memory_bytes is 0", self.name));
        }
        if self.timeout_ms == 0 {
            return bad(format!("{}: timeout_ms is 0", self.name));
        }
        Ok(())
    }
}

/// One call of the workload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invocation {
    /// When to send it, ms after the start of the run.
    pub at_ms: u64,
    /// Index into [`Workload::functions`].
    pub function: usize,
    /// The event bytes (JSON for the built-in handlers).
    pub event: Vec<u8>,
    /// The duration the body was asked for, ms (what the simulator uses).
    pub expected_duration_ms: u64,
    /// The memory the body was asked to touch, MiB.
    pub expected_memory_mb: u64,
}

/// Functions and their time-sorted invocations: the input of a live run or a simulation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Workload {
    /// A short name ("contest", "azure2019 50_inv.csv", ...).
    pub name: String,
    /// How it was made: source, options, scaling. Shown in reports.
    pub description: String,
    /// Credit owed to the data's authors (CC-BY), shown in reports when set.
    pub attribution: Option<String>,
    /// The functions; [`Invocation::function`] indexes this.
    pub functions: Vec<FunctionProfile>,
    /// The invocations, sorted by `at_ms` (ties keep their build order).
    pub invocations: Vec<Invocation>,
    /// The length of the run, ms (at least the last invocation's time).
    pub duration_ms: u64,
}

/// Checks a workload's parts: every function valid and named once, every call's function
/// (`calls`, in order) one of them.
pub(crate) fn check_parts(
    functions: &[FunctionProfile],
    calls: impl Iterator<Item = usize>,
) -> Result<(), WorkloadError> {
    let mut seen = std::collections::HashSet::new();
    for (i, f) in functions.iter().enumerate() {
        f.validate(i)?;
        if !seen.insert(f.name.as_str()) {
            return Err(WorkloadError::InvalidFunction {
                index: i,
                reason: format!("the name {} appears twice", f.name),
            });
        }
    }
    for (index, function) in calls.enumerate() {
        if function >= functions.len() {
            return Err(WorkloadError::NoSuchFunction {
                index,
                function,
                count: functions.len(),
            });
        }
    }
    Ok(())
}

impl Workload {
    /// Checks the parts, sorts the invocations by time (stable) and stretches `duration_ms`
    /// to cover the last invocation.
    pub fn new(
        name: impl Into<String>,
        functions: Vec<FunctionProfile>,
        mut invocations: Vec<Invocation>,
        duration_ms: u64,
    ) -> Result<Self, WorkloadError> {
        check_parts(&functions, invocations.iter().map(|i| i.function))?;
        invocations.sort_by_key(|i| i.at_ms);
        let last = invocations.last().map_or(0, |i| i.at_ms + 1);
        Ok(Workload {
            name: name.into(),
            description: String::new(),
            attribution: None,
            functions,
            invocations,
            duration_ms: duration_ms.max(last),
        })
    }

    /// The function an invocation calls.
    pub fn function_of(&self, invocation: &Invocation) -> &FunctionProfile {
        &self.functions[invocation.function]
    }

    /// The index of the function with this name.
    pub fn function_index(&self, name: &str) -> Option<usize> {
        self.functions.iter().position(|f| f.name == name)
    }

    /// How many invocations each function has, indexed like [`Workload::functions`].
    pub fn calls_per_function(&self) -> Vec<u64> {
        let mut calls = vec![0u64; self.functions.len()];
        for inv in &self.invocations {
            calls[inv.function] += 1;
        }
        calls
    }

    /// The sum of the expected durations, in CPU-or-wall seconds: a rough size of the load.
    pub fn total_expected_seconds(&self) -> f64 {
        self.invocations
            .iter()
            .map(|i| i.expected_duration_ms as f64)
            .sum::<f64>()
            / 1000.0
    }
}

/// A call pattern of one function over a time window.
#[derive(Clone, Debug, PartialEq)]
struct Stream {
    function: usize,
    arrivals: Arrivals,
    start_ms: f64,
    end_ms: f64,
}

/// Builds a [`Workload`] from functions and arrival patterns.
///
/// ```
/// use faas_e2e::workload::{Arrivals, FunctionProfile, HandlerKind, WorkloadBuilder, MIB};
/// let mut b = WorkloadBuilder::new("demo", 60_000);
/// let f = b.function(FunctionProfile::new("nap", HandlerKind::Sleep, 128 * MIB, 60_000, 50.0));
/// b.stream(f, Arrivals::Bursts { every_ms: 5_000.0, size: 4.0, spread_ms: 0.0 }, 0, 60_000);
/// let w = b.build(7).unwrap();
/// assert_eq!(w.invocations.len(), 48);
/// ```
#[derive(Clone, Debug)]
pub struct WorkloadBuilder {
    name: String,
    description: String,
    attribution: Option<String>,
    duration_ms: u64,
    functions: Vec<FunctionProfile>,
    streams: Vec<Stream>,
}

impl WorkloadBuilder {
    /// An empty workload of `duration_ms`.
    pub fn new(name: impl Into<String>, duration_ms: u64) -> Self {
        WorkloadBuilder {
            name: name.into(),
            description: String::new(),
            attribution: None,
            duration_ms,
            functions: Vec::new(),
            streams: Vec::new(),
        }
    }

    /// Sets the description shown in reports.
    pub fn description(&mut self, text: impl Into<String>) -> &mut Self {
        self.description = text.into();
        self
    }

    /// Adds a function; returns its index.
    pub fn function(&mut self, profile: FunctionProfile) -> usize {
        self.functions.push(profile);
        self.functions.len() - 1
    }

    /// Calls function `function` with `arrivals` during `[start_ms, end_ms)` (clipped to the
    /// workload's duration).
    pub fn stream(
        &mut self,
        function: usize,
        arrivals: Arrivals,
        start_ms: u64,
        end_ms: u64,
    ) -> &mut Self {
        self.streams.push(Stream {
            function,
            arrivals,
            start_ms: start_ms as f64,
            end_ms: end_ms.min(self.duration_ms) as f64,
        });
        self
    }

    /// Draws every stream's arrivals, durations, memory and events from `seed`.
    pub fn build(&self, seed: u64) -> Result<Workload, WorkloadError> {
        let mut invocations = Vec::new();
        for (i, s) in self.streams.iter().enumerate() {
            s.arrivals.validate()?;
            let f = self
                .functions
                .get(s.function)
                .ok_or(WorkloadError::NoSuchFunction {
                    index: i,
                    function: s.function,
                    count: self.functions.len(),
                })?;
            let mut rng = StdRng::seed_from_u64(sub_seed(seed, i as u64));
            for t in s.arrivals.times(s.start_ms, s.end_ms, &mut rng) {
                let (ms, mb, event) = f.draw(&mut rng);
                invocations.push(Invocation {
                    at_ms: t as u64,
                    function: s.function,
                    event,
                    expected_duration_ms: ms,
                    expected_memory_mb: mb,
                });
            }
        }
        let mut w = Workload::new(
            self.name.clone(),
            self.functions.clone(),
            invocations,
            self.duration_ms,
        )?;
        w.description = self.description.clone();
        w.attribution = self.attribution.clone();
        Ok(w)
    }
}

#[cfg(test)]
mod tests;
