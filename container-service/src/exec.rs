//! Runs one invocation of the container's function: enforces the timeout (cancelling the
//! work), measures the duration around the handler and the peak memory while it ran, and
//! keeps the load counters the Status call reports. A command function's call goes to its
//! [`Watchdog`], which enforces the timeout on the function's processes itself; its peak
//! memory is the container service's own plus the processes' peak.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use crate::handlers::{self, BlockingJobs, CancelToken, Context, HandlerKind};
use crate::memory::alloc::{self, PeakWatch};
use crate::memory::budget::MemoryBudget;
use crate::memory::rss;
use crate::watchdog::Watchdog;

/// What runs the function.
#[derive(Clone, Debug)]
pub enum FunctionKind {
    /// A built-in handler.
    Builtin(HandlerKind),
    /// The user's command, started and watched by the watchdog (`--bundle`).
    Command(Arc<Watchdog>),
}

/// The one function a container runs.
#[derive(Clone, Debug)]
pub struct FunctionSpec {
    pub function_name: String,
    pub kind: FunctionKind,
    pub memory_bytes: u64,
    pub timeout_ms: u64,
}

impl FunctionSpec {
    /// The handler's name: the built-in's (`hello`), or a command function's
    /// `bundle:<the bundle directory's name>` (`bundle:<sha256>` for the node's bundles).
    pub fn handler_name(&self) -> &str {
        match &self.kind {
            FunctionKind::Builtin(handler) => handler.as_str(),
            FunctionKind::Command(w) => &w.bundle().handler,
        }
    }

    /// The watchdog of a command function.
    pub fn watchdog(&self) -> Option<&Arc<Watchdog>> {
        match &self.kind {
            FunctionKind::Builtin(_) => None,
            FunctionKind::Command(watchdog) => Some(watchdog),
        }
    }

    /// What runs the function, for messages: `handler "echo"` or `command [..] (bundle B)`.
    pub fn describe(&self) -> String {
        match &self.kind {
            FunctionKind::Builtin(handler) => format!("handler {:?}", handler.as_str()),
            FunctionKind::Command(w) => format!(
                "command {:?} of bundle {}",
                w.bundle().command,
                w.bundle().dir.display()
            ),
        }
    }
}

/// The result of one invocation; a function failure is `error: Some((code, message))`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    pub body: Vec<u8>,
    pub duration_nanos: i64,
    pub max_memory_bytes: i64,
    pub error: Option<(&'static str, String)>,
    /// The call's own log (a command function's `exec` call: its stderr).
    pub log: String,
}

/// The container's load and memory at one moment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusSnapshot {
    pub in_flight: i64,
    pub served: i64,
    pub rss_bytes: u64,
}

/// Runs invocations of one function; shared by every request (no lock around handlers).
#[derive(Debug)]
pub struct Executor {
    spec: FunctionSpec,
    budget: Arc<MemoryBudget>,
    baseline_bytes: u64,
    in_flight: AtomicI64,
    served: AtomicI64,
    jobs: BlockingJobs,
}

struct InFlight<'a>(&'a AtomicI64);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

fn live_heap() -> u64 {
    alloc::live_bytes() as u64
}

impl Executor {
    /// An executor for `spec`; measures the resident baseline (RSS minus live heap) now.
    pub fn new(spec: FunctionSpec) -> Executor {
        Executor::with_emulation(spec, true)
    }

    /// An executor for `spec`; with `emulate_memory_limit` false, allocations are never
    /// refused by the budget (a real cgroup limit and the kernel's OOM killer act instead).
    pub fn with_emulation(spec: FunctionSpec, emulate_memory_limit: bool) -> Executor {
        let baseline_bytes = rss::current_rss_bytes().saturating_sub(live_heap());
        let limit = if emulate_memory_limit {
            spec.memory_bytes
        } else {
            u64::MAX
        };
        Executor {
            budget: Arc::new(MemoryBudget::new(limit, baseline_bytes, live_heap)),
            spec,
            baseline_bytes,
            in_flight: AtomicI64::new(0),
            served: AtomicI64::new(0),
            jobs: BlockingJobs::default(),
        }
    }

    /// Whether the memory limit is emulated (see [`Executor::with_emulation`]).
    pub fn emulates_memory_limit(&self) -> bool {
        self.budget.limit() != u64::MAX
    }

    /// The function this executor runs.
    pub fn spec(&self) -> &FunctionSpec {
        &self.spec
    }

    /// Handler jobs still running on the blocking pool.
    pub fn blocking_jobs(&self) -> i64 {
        self.jobs.running()
    }

    /// Load counters and RSS now (with a command function's processes).
    pub fn status(&self) -> StatusSnapshot {
        let children = self.spec.watchdog().map_or(0, |w| w.rss_bytes());
        StatusSnapshot {
            in_flight: self.in_flight.load(Ordering::Relaxed),
            served: self.served.load(Ordering::Relaxed),
            rss_bytes: rss::current_rss_bytes().saturating_add(children),
        }
    }

    /// The timeout a request gets: its own when > 0, else the function's.
    pub fn effective_timeout(&self, requested_ms: u64) -> Duration {
        Duration::from_millis(if requested_ms > 0 {
            requested_ms
        } else {
            self.spec.timeout_ms
        })
    }

    /// Runs the function on `event` within `timeout` (`request_id` names the call in a
    /// command function's log). If the returned future is dropped (the caller went away) the
    /// work is cancelled too.
    pub async fn invoke(&self, request_id: &str, event: Vec<u8>, timeout: Duration) -> Outcome {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        let _in_flight = InFlight(&self.in_flight);
        let watch = PeakWatch::start();
        let started = faas_common::clock::tokio_instant();
        let (result, child_peak, log) = match &self.spec.kind {
            FunctionKind::Builtin(handler) => (
                self.run_builtin(*handler, event, timeout).await,
                0,
                String::new(),
            ),
            FunctionKind::Command(watchdog) => {
                let report = watchdog.invoke(request_id, event, timeout).await;
                (report.result, report.child_peak_bytes, report.log)
            }
        };
        let duration = started.elapsed();
        let peak = watch.peak() as u64;
        drop(watch);
        let mut outcome = Outcome {
            duration_nanos: i64::try_from(duration.as_nanos()).unwrap_or(i64::MAX),
            max_memory_bytes: i64::try_from(
                self.baseline_bytes
                    .saturating_add(peak)
                    .saturating_add(child_peak),
            )
            .unwrap_or(i64::MAX),
            log,
            ..Outcome::default()
        };
        match result {
            Ok(body) => outcome.body = body,
            Err(error) => outcome.error = Some(error),
        }
        self.served.fetch_add(1, Ordering::Relaxed);
        outcome
    }

    async fn run_builtin(
        &self,
        handler: HandlerKind,
        event: Vec<u8>,
        timeout: Duration,
    ) -> Result<Vec<u8>, (&'static str, String)> {
        let cancel = CancelToken::default();
        let _cancel_on_drop = cancel.cancel_on_drop();
        let ctx = Context {
            budget: self.budget.clone(),
            cancel: cancel.clone(),
            jobs: self.jobs.clone(),
        };
        match tokio::time::timeout(timeout, handlers::invoke(handler, event, &ctx)).await {
            Ok(Ok(body)) => Ok(body),
            Ok(Err(e)) => Err((e.code(), e.to_string())),
            Err(_) => {
                cancel.cancel();
                Err((
                    "Timeout",
                    format!("function timed out after {} ms", timeout.as_millis()),
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exec(handler: HandlerKind, memory_bytes: u64) -> Executor {
        Executor::new(FunctionSpec {
            function_name: "f".into(),
            kind: FunctionKind::Builtin(handler),
            memory_bytes,
            timeout_ms: 1_000,
        })
    }

    #[tokio::test(start_paused = true)]
    async fn a_sleep_past_its_timeout_is_a_timeout() {
        let e = exec(HandlerKind::Sleep, 1 << 40);
        let out = e
            .invoke("r", br#"{"ms":60000}"#.to_vec(), Duration::from_millis(50))
            .await;
        assert_eq!(
            out.error,
            Some(("Timeout", "function timed out after 50 ms".to_string()))
        );
        assert!(out.duration_nanos >= 50_000_000);
        assert_eq!(e.status().in_flight, 0);
        assert_eq!(e.status().served, 1);
    }

    #[tokio::test]
    async fn a_cpu_timeout_stops_the_work() {
        let e = exec(HandlerKind::Cpu, 1 << 40);
        let out = e
            .invoke(
                "r",
                br#"{"rounds":1000000000000}"#.to_vec(),
                Duration::from_millis(30),
            )
            .await;
        assert_eq!(out.error.as_ref().map(|e| e.0), Some("Timeout"));
        // The blocking job notices the cancellation and ends (it would run for hours
        // otherwise); wait for that without asserting on how long it takes.
        while e.blocking_jobs() != 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test]
    async fn the_peak_covers_the_memory_the_handler_held() {
        let e = exec(HandlerKind::Memory, 1 << 40);
        let out = e
            .invoke(
                "r",
                br#"{"mb":32,"ms":1}"#.to_vec(),
                Duration::from_secs(30),
            )
            .await;
        assert_eq!(out.error, None);
        assert!(
            out.max_memory_bytes >= 32 << 20,
            "max memory {}",
            out.max_memory_bytes
        );
    }

    #[tokio::test]
    async fn over_the_limit_is_out_of_memory() {
        let e = exec(HandlerKind::Memory, 64 << 20);
        let out = e
            .invoke(
                "r",
                br#"{"mb":128,"ms":1}"#.to_vec(),
                Duration::from_secs(30),
            )
            .await;
        let (code, message) = out.error.unwrap();
        assert_eq!(code, "OutOfMemory");
        assert!(
            message.contains("memory limit of 67108864 bytes"),
            "{message}"
        );
    }
}
