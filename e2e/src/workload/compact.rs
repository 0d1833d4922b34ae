//! Compact workloads: a call in 24 bytes, for the simulator's big days.

use super::{FunctionProfile, Workload, WorkloadError};

/// One call as the simulator needs it, in 24 bytes: no event bytes (the simulator runs no
/// body), the function as a `u32` index, the duration and memory as `u32`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CompactInvocation {
    /// When to send it, ms after the start of the run.
    pub at_ms: u64,
    /// Index into [`CompactWorkload::functions`].
    pub function: u32,
    /// The duration the body was asked for, ms.
    pub duration_ms: u32,
    /// The memory the body was asked to touch, MiB.
    pub memory_mb: u32,
}

impl CompactInvocation {
    /// A call; the duration and memory saturate at `u32::MAX` (49 days, 4 PiB).
    pub fn new(at_ms: u64, function: usize, duration_ms: u64, memory_mb: u64) -> Self {
        let narrow = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);
        CompactInvocation {
            at_ms,
            function: narrow(function as u64),
            duration_ms: narrow(duration_ms),
            memory_mb: narrow(memory_mb),
        }
    }
}

/// A [`Workload`] whose calls are [`CompactInvocation`]s: what the simulator plays. A day of
/// ten million calls takes 240 MB this way, against several GB as [`Invocation`](super::Invocation)s with their
/// event bytes. Made from a workload with `From`, or drawn straight from a trace
/// ([`crate::trace::Trace::to_compact`]).
#[derive(Clone, Debug, PartialEq)]
pub struct CompactWorkload {
    pub name: String,
    pub description: String,
    pub attribution: Option<String>,
    pub functions: Vec<FunctionProfile>,
    /// Sorted by `at_ms` (ties keep their build order, as [`Workload::invocations`]).
    pub invocations: Vec<CompactInvocation>,
    pub duration_ms: u64,
}

impl CompactWorkload {
    /// As [`Workload::new`]: checks the parts, sorts the calls by time (stable) and stretches
    /// `duration_ms` to cover the last one.
    pub fn new(
        name: impl Into<String>,
        functions: Vec<FunctionProfile>,
        mut invocations: Vec<CompactInvocation>,
        duration_ms: u64,
    ) -> Result<Self, WorkloadError> {
        super::check_parts(&functions, invocations.iter().map(|i| i.function as usize))?;
        invocations.sort_by_key(|i| i.at_ms);
        let last = invocations.last().map_or(0, |i| i.at_ms + 1);
        Ok(CompactWorkload {
            name: name.into(),
            description: String::new(),
            attribution: None,
            functions,
            invocations,
            duration_ms: duration_ms.max(last),
        })
    }

    /// Cuts the workload to its first `duration_ms`.
    pub fn truncate(&mut self, duration_ms: u64) {
        self.invocations.retain(|i| i.at_ms < duration_ms);
        self.duration_ms = duration_ms;
        self.description
            .push_str(&format!("; cut to the first {duration_ms} ms"));
    }
}

impl From<&Workload> for CompactWorkload {
    fn from(w: &Workload) -> CompactWorkload {
        CompactWorkload {
            name: w.name.clone(),
            description: w.description.clone(),
            attribution: w.attribution.clone(),
            functions: w.functions.clone(),
            invocations: w
                .invocations
                .iter()
                .map(|i| {
                    CompactInvocation::new(
                        i.at_ms,
                        i.function,
                        i.expected_duration_ms,
                        i.expected_memory_mb,
                    )
                })
                .collect(),
            duration_ms: w.duration_ms,
        }
    }
}
