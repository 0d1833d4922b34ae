//! The `process` runtime: each container is a child process of the `container-service`
//! binary on this machine, listening on 127.0.0.1 with a port of its own choosing.
//!
//! Children are started with [`Child::spawn_ready`] (own process group, `PDEATHSIG`, killed
//! on drop), so they cannot outlive the node service; `remove` and `shutdown` stop and reap
//! them. Usage is read from `/proc/PID`. A warm pool container is the same child started with
//! `--unbound`; it gets its memory limit (for the stats) when it is assigned a function.
//!
//! A function made of a bundle is started with `--bundle DIR/<sha256>` instead of
//! `--handler`; its container service announces itself only once the user's process is
//! ready, so it gets the bundle's start time on top of the readiness timeout. A bundle that
//! names a Docker `image` is refused: this runtime runs no images.
//!
//! A container's stderr passes through the node service's own ([`super::stderr`]); a
//! container that exits before it announces itself fails its create with the reason it
//! printed (`StartFailed`, FAILED_PRECONDITION), already reaped (stopping what the user's
//! process started is the container service's own duty).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use faas_common::launch::{Child, LaunchError, Launcher};

use super::procfs::{self, CpuSampler};
use super::stderr;
use crate::model::bundle::Bundle;
use crate::model::{ContainerHandle, ContainerSpec, ContainerUsage, Liveness};
use crate::service::{Runtime, RuntimeError};

/// How long a container gets to stop after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(2);
/// How long a container that exited while it started may take to finish writing its reason.
const REASON_WAIT: Duration = Duration::from_secs(1);
/// How long (polls × step) `liveness` waits for a dying process to become reapable.
const EXIT_CONFIRM_POLLS: u32 = 20;
const EXIT_CONFIRM_STEP: Duration = Duration::from_millis(5);

#[derive(Debug)]
struct ProcContainer {
    pid: Option<u32>,
    /// The function's memory (0 while a pool container is unbound).
    memory_limit: AtomicU64,
    child: tokio::sync::Mutex<Child>,
    cpu: Mutex<CpuSampler>,
}

/// Containers as local child processes.
#[derive(Debug)]
pub struct ProcessRuntime {
    launcher: Launcher,
    ready_timeout: Duration,
    containers: Mutex<HashMap<String, Arc<ProcContainer>>>,
    closed: AtomicBool,
}

impl ProcessRuntime {
    /// A runtime starting `launcher`'s program; a container must announce its port within
    /// `ready_timeout`.
    pub fn new(launcher: Launcher, ready_timeout: Duration) -> ProcessRuntime {
        ProcessRuntime {
            launcher,
            ready_timeout,
            containers: Mutex::new(HashMap::new()),
            closed: AtomicBool::new(false),
        }
    }

    fn table(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<ProcContainer>>> {
        self.containers.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn get(&self, id: &str) -> Option<Arc<ProcContainer>> {
        self.table().get(id).cloned()
    }

    /// The process id of a container (for diagnostics and tests).
    pub fn pid(&self, id: &str) -> Option<u32> {
        self.get(id)?.pid
    }

    /// Starts `cmd` (the container-service with its flags) as a new container that must
    /// announce itself within `ready_timeout`; `function` names it in errors and logs.
    async fn start(
        &self,
        mut cmd: tokio::process::Command,
        function: &str,
        memory_limit: u64,
        ready_timeout: Duration,
    ) -> Result<ContainerHandle, RuntimeError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(RuntimeError::Unavailable(
                "the node service is shutting down".into(),
            ));
        }
        let id = uuid::Uuid::new_v4().to_string();
        // The container's settings come from its flags only, never from the node's env.
        for var in [
            "CONTAINER_SERVICE_PORT",
            "FAAS_UNBOUND",
            "FAAS_FUNCTION_NAME",
            "FAAS_HANDLER",
            "FAAS_BUNDLE",
            "FAAS_MEMORY_BYTES",
            "FAAS_TIMEOUT_MS",
        ] {
            cmd.env_remove(var);
        }
        let (tail, write_end) = stderr::capture(&mut cmd).map_err(|e| {
            RuntimeError::Unavailable(format!("cannot make a pipe for a container's stderr: {e}"))
        })?;
        let spawned = Child::spawn_ready(cmd, ready_timeout).await;
        drop(write_end);
        let (mut child, addr) = match spawned {
            Ok(ready) => ready,
            Err(LaunchError::ExitedEarly { status, .. }) => {
                let reason = tail.reason(REASON_WAIT).await;
                return Err(RuntimeError::StartFailed {
                    function: function.to_string(),
                    message: format!(
                        "the container service exited ({status}) before it was ready: {}",
                        reason.as_deref().unwrap_or("it printed no reason")
                    ),
                });
            }
            Err(e) => return Err(launch_error(e, function)),
        };
        let pid = child.id();
        if self.closed.load(Ordering::Acquire) {
            child.stop(STOP_GRACE).await;
            return Err(RuntimeError::Unavailable(
                "the node service is shutting down".into(),
            ));
        }
        let container = Arc::new(ProcContainer {
            pid,
            memory_limit: AtomicU64::new(memory_limit),
            child: tokio::sync::Mutex::new(child),
            cpu: Mutex::new(CpuSampler::new(pid)),
        });
        self.table().insert(id.clone(), container);
        tracing::debug!(container = %id, ?pid, %addr, %function, "container started");
        Ok(ContainerHandle {
            id,
            address: addr.to_string(),
        })
    }
}

/// A failed start: an exit is the container's fault (its reason is read by
/// [`ProcessRuntime::start`]), a timeout too, the rest the node's.
fn launch_error(e: LaunchError, function: &str) -> RuntimeError {
    let function = function.to_string();
    let message = e.to_string();
    match e {
        LaunchError::ExitedEarly { .. } => RuntimeError::StartFailed { function, message },
        LaunchError::NotReady { .. } => RuntimeError::NotReady { function, message },
        LaunchError::NotFound { .. } | LaunchError::Spawn { .. } => {
            RuntimeError::Unavailable(message)
        }
    }
}

#[async_trait]
impl Runtime for ProcessRuntime {
    fn name(&self) -> &'static str {
        "process"
    }

    async fn create(
        &self,
        spec: &ContainerSpec,
        bundle: Option<&Bundle>,
    ) -> Result<ContainerHandle, RuntimeError> {
        let mut cmd = self.launcher.command();
        cmd.args(["--host", "127.0.0.1", "--port", "0", "--function-name"])
            .arg(&spec.function_name);
        let ready_timeout = match bundle {
            None => {
                cmd.arg("--handler").arg(&spec.handler);
                self.ready_timeout
            }
            Some(Bundle {
                hash,
                image: Some(image),
                ..
            }) => {
                return Err(RuntimeError::Unsupported(format!(
                    "bundle {hash} names the image {:?}: image functions run on the Docker \
                     runtime (--runtime docker); this node runs functions as processes",
                    faas_common::text::clip(image)
                )));
            }
            Some(bundle) => {
                cmd.arg("--bundle").arg(&bundle.dir);
                bundle.ready_within(self.ready_timeout)
            }
        };
        cmd.arg("--memory-bytes").arg(spec.memory_bytes.to_string());
        if spec.timeout_ms > 0 {
            cmd.arg("--timeout-ms").arg(spec.timeout_ms.to_string());
        }
        self.start(cmd, &spec.function_name, spec.memory_bytes, ready_timeout)
            .await
    }

    async fn start_unbound(&self) -> Result<ContainerHandle, RuntimeError> {
        let mut cmd = self.launcher.command();
        cmd.args(["--host", "127.0.0.1", "--port", "0", "--unbound"]);
        self.start(cmd, "(warm pool)", 0, self.ready_timeout).await
    }

    async fn assign(&self, id: &str, spec: &ContainerSpec) -> Result<(), RuntimeError> {
        let container = self
            .get(id)
            .ok_or_else(|| RuntimeError::NotFound(id.to_string()))?;
        container
            .memory_limit
            .store(spec.memory_bytes, Ordering::Relaxed);
        Ok(())
    }

    async fn remove(&self, id: &str) -> Result<(), RuntimeError> {
        let container = self
            .table()
            .remove(id)
            .ok_or_else(|| RuntimeError::NotFound(id.to_string()))?;
        container.child.lock().await.stop(STOP_GRACE).await;
        tracing::debug!(container = %id, pid = ?container.pid, "container stopped");
        Ok(())
    }

    async fn stats(&self) -> Result<Vec<ContainerUsage>, RuntimeError> {
        if self.closed.load(Ordering::Acquire) {
            // The table was emptied by the shutdown: an empty list would read as "all gone".
            return Err(RuntimeError::Unavailable(
                "the node service is shutting down".into(),
            ));
        }
        let all: Vec<(String, Arc<ProcContainer>)> = self
            .table()
            .iter()
            .map(|(id, c)| (id.clone(), c.clone()))
            .collect();
        let mut out = Vec::with_capacity(all.len());
        for (id, c) in all {
            // A child being stopped holds its lock: it is not reported dead here.
            let alive = match c.child.try_lock() {
                Ok(mut child) => !child.has_exited(),
                Err(_) => true,
            };
            let (memory_bytes, cpu_pct) = if alive {
                let cpu = c.cpu.lock().unwrap_or_else(|e| e.into_inner()).sample();
                (c.pid.map(|p| procfs::rss_bytes(Some(p))).unwrap_or(0), cpu)
            } else {
                (0, 0.0)
            };
            out.push(ContainerUsage {
                id,
                memory_bytes,
                cpu_pct,
                memory_limit_bytes: c.memory_limit.load(Ordering::Relaxed),
                alive,
            });
        }
        Ok(out)
    }

    async fn liveness(&self, id: &str) -> Liveness {
        let Some(c) = self.get(id) else {
            return Liveness::Unknown;
        };
        let mut child = c.child.lock().await;
        // Asked because a call failed: a process being killed closes its sockets before
        // its last thread is gone and it can be reaped, so give it a moment to finish dying.
        for _ in 0..EXIT_CONFIRM_POLLS {
            if child.has_exited() {
                return Liveness::Exited;
            }
            tokio::time::sleep(EXIT_CONFIRM_STEP).await;
        }
        if child.has_exited() {
            Liveness::Exited
        } else {
            Liveness::Running
        }
    }

    async fn shutdown(&self) {
        self.closed.store(true, Ordering::Release);
        let all: Vec<Arc<ProcContainer>> = self.table().drain().map(|(_, c)| c).collect();
        if !all.is_empty() {
            tracing::info!(containers = all.len(), "stopping containers");
        }
        futures::future::join_all(all.iter().map(|c| async move {
            c.child.lock().await.stop(STOP_GRACE).await;
        }))
        .await;
    }
}
