//! The watchdog: runs a *command function*, the user's own program, instead of a built-in
//! handler (`--bundle B` instead of `--handler`).
//!
//! The function is a [`bundle`] directory: `function.json` says which command to run
//! and which protocol it speaks, and the user's files sit in `code/` (or beside
//! `function.json`). What the container service does with it, by protocol:
//!
//! - **`http`** ([`http`]): at start it runs the command once, with `PORT` set to a free
//!   loopback port, and waits (polling a TCP connect) until the process listens, within the
//!   bundle's `start_timeout_ms`. Only then does the container service listen and print its
//!   readiness line, so the node never sees a container whose function cannot answer. Each
//!   invocation is a `POST /` with the event as body; a 2xx reply's body is the result, any
//!   other status a `FunctionError` carrying the body. Calls run concurrently. If the process
//!   exits, at any time, the container is dead: [`Watchdog::died`] resolves, and the container
//!   service stops and exits non-zero, so the node's dead-container handling replaces it.
//! - **`exec`** ([`exec`]): nothing runs at start. Each invocation runs the command with the
//!   event on stdin; exit 0 makes stdout the result, any other exit a `FunctionError` with
//!   the end of stderr as its message.
//!
//! For both: a call past its timeout ends `Timeout` (an `exec` call's processes are
//! killed; an `http` request is dropped, its server lives on); the [memory guard](memory)
//! measures the function's processes and kills them past the container's memory limit
//! (`OutOfMemory`); their output goes into the container's [log ring](logs), and an `exec`
//! call's stderr also into its reply's `function_log`. Where the container has a memory
//! cgroup, a process the kernel killed at its limit is told from any other `kill -9` by the
//! group's OOM counter ([`cgroup`]), and its call ends `OutOfMemory` too.
//!
//! Nothing the watchdog starts outlives it. Each process leads its own process group and
//! dies with the container service ([`process`]); every exit path kills the groups: a call
//! whose caller went away or that timed out, a failed start, [`Watchdog::stop`] (the
//! container service stopping on SIGTERM), and dropping the watchdog. The one gap is a
//! SIGKILL of the container service itself: its direct children get the kernel's
//! parent-death signal, but a grandchild (what a shell script forked) survives until it
//! ends by itself (on the node's process runtime, the container's cgroups close that gap:
//! removing the container kills what is left in them).
//!
//! The system calls are behind [`sys::Sys`], so the rules (the guard, the group handle) are
//! unit-tested against a fake; everything else is tested with real processes.

pub mod bundle;
pub mod cgroup;
pub mod exec;
pub mod http;
pub mod logs;
pub mod memory;
pub mod process;
pub mod sys;
#[cfg(test)]
pub mod sys_fake;

use std::ffi::OsString;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bundle::{Bundle, BundleError, Protocol};
use logs::{LogLine, LogPage, LogQuery, LogRing};
use memory::MemoryGuard;
use sys::{RealSys, Sys};

use crate::memory::{alloc, rss};
use faas_common::units::MIB;

/// The largest result a function may return (the documented event limit: what goes in may
/// come out).
pub const MAX_RESULT_BYTES: usize = 6 * MIB as usize;
/// The most bytes of a function's own output quoted in an error message.
pub const MESSAGE_BYTES: usize = 1024;

/// The error codes of a failed call (the built-ins' codes, plus the node's `ContainerExited`
/// for a call whose function process died: the container is dead).
pub mod code {
    pub const FUNCTION_ERROR: &str = "FunctionError";
    pub const TIMEOUT: &str = "Timeout";
    pub const OUT_OF_MEMORY: &str = "OutOfMemory";
    pub const CONTAINER_EXITED: &str = "ContainerExited";
}

/// The container's limits, as the start-up flags give them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub memory_bytes: u64,
    /// Kill the function's processes past `memory_bytes` (off in Docker: the kernel does).
    pub enforce_memory: bool,
}

/// Why the function could not start. One line each, naming the path, field or port.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Bundle(#[from] BundleError),
    #[error("cannot find a free loopback port for the function: {0}")]
    Port(std::io::Error),
    #[error("cannot start {program}: {error}")]
    Spawn {
        program: String,
        error: std::io::Error,
    },
    #[error("the function's process exited before it listened on port {port} ({status}){last}")]
    Exited {
        port: u16,
        status: String,
        /// "; its last output: …" or empty.
        last: String,
    },
    #[error(
        "the function's process did not listen on port {port} within {ms} ms \
         (start_timeout_ms of {manifest}); it was killed{last}"
    )]
    NotReady {
        port: u16,
        ms: u128,
        manifest: String,
        last: String,
    },
}

/// One call's result, the function's peak memory while it ran, and its log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallReport {
    /// The body, or the error code and message.
    pub result: Result<Vec<u8>, (&'static str, String)>,
    /// The peak resident bytes of the function's processes during the call.
    pub child_peak_bytes: u64,
    /// What the call wrote to stderr (`exec`; empty for `http`).
    pub log: String,
}

impl CallReport {
    fn failed(code: &'static str, message: String) -> CallReport {
        CallReport {
            result: Err((code, message)),
            child_peak_bytes: 0,
            log: String::new(),
        }
    }
}

/// What every part of the watchdog shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) bundle: Bundle,
    pub(crate) sys: Arc<dyn Sys>,
    pub(crate) logs: LogRing,
    pub(crate) guard: Arc<MemoryGuard>,
    /// The environment of an `exec` process (an `http` one adds `PORT`).
    pub(crate) env: Vec<(OsString, OsString)>,
    pub(crate) stopping: AtomicBool,
}

impl Shared {
    fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// "; its last output: …" from the log ring (stderr first), or empty.
    pub(crate) fn last_output(&self) -> String {
        self.logs
            .last(logs::Stream::Stderr)
            .or_else(|| self.logs.last(logs::Stream::Stdout))
            .map(|l| format!("; its last output: {}", faas_common::text::clip(&l)))
            .unwrap_or_default()
    }
}

/// A running command function (see the module docs).
#[derive(Debug)]
pub struct Watchdog {
    shared: Arc<Shared>,
    http: Option<http::HttpFunction>,
}

impl Watchdog {
    /// Reads the bundle at `dir` and starts its function (an `http` one is ready when this
    /// returns). Dropping the returned future kills whatever it started.
    pub async fn start(dir: &Path, limits: Limits) -> Result<Watchdog, StartError> {
        Watchdog::start_with(dir, limits, Arc::new(RealSys)).await
    }

    /// [`Watchdog::start`] on another system.
    pub async fn start_with(
        dir: &Path,
        limits: Limits,
        sys: Arc<dyn Sys>,
    ) -> Result<Watchdog, StartError> {
        let bundle = Bundle::read(dir, std::env::var_os("PATH").as_deref())?;
        // Measured as the built-ins' executor does: resident, but not heap.
        let baseline = rss::current_rss_bytes().saturating_sub(alloc::live_bytes() as u64);
        let guard = MemoryGuard::new(
            sys.clone(),
            limits.enforce_memory.then_some(limits.memory_bytes),
            Box::new(move || baseline.saturating_add(alloc::live_bytes() as u64)),
        );
        guard.start_sampling();
        let shared = Arc::new(Shared {
            env: process::environment(&bundle, None),
            bundle,
            sys,
            logs: LogRing::default(),
            guard,
            stopping: AtomicBool::new(false),
        });
        let http = match shared.bundle.protocol {
            Protocol::Http => Some(http::HttpFunction::start(&shared).await?),
            Protocol::Exec => None,
        };
        Ok(Watchdog { shared, http })
    }

    /// The bundle this watchdog runs.
    pub fn bundle(&self) -> &Bundle {
        &self.shared.bundle
    }

    /// Runs one call within `timeout`. Dropping the future cancels the call (an `exec`
    /// call's processes are killed).
    pub async fn invoke(&self, request_id: &str, event: Vec<u8>, timeout: Duration) -> CallReport {
        if self.shared.stopping() {
            return CallReport::failed(
                code::CONTAINER_EXITED,
                "the container is stopping; the call did not run".into(),
            );
        }
        match &self.http {
            Some(server) => {
                server
                    .invoke(&self.shared, request_id, event, timeout)
                    .await
            }
            None => exec::invoke(&self.shared, request_id, event, timeout).await,
        }
    }

    /// Resolves when the function's long-lived process has died (`http`), with the reason
    /// in one line; never for `exec`.
    pub async fn died(&self) -> String {
        match &self.http {
            Some(server) => server.died(&self.shared).await,
            None => std::future::pending().await,
        }
    }

    /// The function's recent output, oldest first (see [`logs`]).
    pub fn logs(&self) -> Vec<LogLine> {
        self.shared.logs.lines()
    }

    /// The lines of the function's recent output that `query` asks for (see [`logs`]).
    pub fn query_logs(&self, query: &LogQuery) -> LogPage {
        self.shared.logs.query(query)
    }

    /// The resident bytes of the function's processes now.
    pub fn rss_bytes(&self) -> u64 {
        self.shared.guard.rss_bytes()
    }

    /// The pids leading the function's process groups now (the `http` server, the `exec`
    /// calls in flight).
    pub fn pids(&self) -> Vec<u32> {
        self.shared.guard.pids()
    }

    /// Kills every process the watchdog started and refuses new calls (the container is
    /// stopping). Calls in flight end `ContainerExited`. Idempotent.
    pub fn stop(&self) {
        if !self.shared.stopping.swap(true, Ordering::AcqRel) {
            tracing::debug!("stopping the function's processes");
        }
        self.shared.guard.kill_all();
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    use std::time::Duration;

    /// Whether process `pid` is dead (gone, or a zombie waiting for whoever reaps orphans)
    /// within 10 s.
    pub async fn gone(pid: u32) -> bool {
        let deadline = faas_common::clock::instant() + Duration::from_secs(10);
        while super::sys::is_alive(pid) {
            if faas_common::clock::instant() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        true
    }
}
