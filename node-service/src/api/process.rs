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
//!
//! Memory: where the host lets the node make memory cgroups ([`super::cgroup`],
//! `--memory-cgroup`), each container runs in a group of its own, joined before the
//! container service runs anything, whose limit is the container's memory (a warm pool
//! container's is [`UNBOUND_MEMORY_BYTES`] until `assign` writes its function's, as the
//! Docker runtime does). The kernel then stops a container at its limit however fast it
//! allocates; a container whose process died while its group counts an OOM kill is reported
//! [`Liveness::OutOfMemory`], so the call it was answering ends `OutOfMemory`. Removing a
//! container removes its group (killing anything the container left in it); the shutdown
//! removes the node's. Without groups, memory is only measured, by the container service.
//! Where the groups are, each container also gets a pids limit (`--container-pids-max`).
//!
//! Isolation ([`super::isolation`]): each container runs as `--container-user` (when the node
//! is root), with `no_new_privs`, limits, a clean environment and a private directory that
//! goes with it. The child joins its cgroups first, then drops its privileges.
//!
//! Arguments: no value can become an option of the container service. Numbers go as one
//! `--flag=value` argument; a bundle's directory is absolute (it starts with `/`); a
//! function's name and handler (which may start with `-`: `--help`, say) follow their flag,
//! which the container service declares to take any value (clap's `allow_hyphen_values`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use faas_common::launch::{Child, LaunchError, Launcher};

use super::cgroup::{GroupUsage, Joiner, MemoryCgroups};
use super::docker::UNBOUND_MEMORY_BYTES;
use super::isolation::Isolation;
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
    /// The containers' memory cgroups, where the host has them (after `containers`: a
    /// dropped runtime kills its children before it removes their groups).
    cgroups: Option<Arc<dyn MemoryCgroups>>,
    /// The containers' user, limits, environment and private directories.
    isolation: Option<Arc<Isolation>>,
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
            cgroups: None,
            isolation: None,
        }
    }

    /// The same runtime, isolating each container as `isolation` says.
    pub fn with_isolation(mut self, isolation: Arc<Isolation>) -> ProcessRuntime {
        self.isolation = Some(isolation);
        self
    }

    /// The same runtime, capping each container's memory with a cgroup of `cgroups`.
    pub fn with_cgroups(mut self, cgroups: Arc<dyn MemoryCgroups>) -> ProcessRuntime {
        self.cgroups = Some(cgroups);
        self
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

    /// Makes container `id`'s group with a limit of `limit` bytes and has `cmd`'s child join
    /// it; `None` without groups. The joiner must live until `cmd` is spawned.
    fn join_group(
        &self,
        id: &str,
        limit: u64,
        cmd: &mut tokio::process::Command,
    ) -> Result<Option<Joiner>, RuntimeError> {
        let Some(cgroups) = &self.cgroups else {
            return Ok(None);
        };
        let joiner = cgroups.create(id, limit).map_err(|e| {
            RuntimeError::Unavailable(format!(
                "cannot create the memory cgroup of a container (limit {limit} bytes): {e}"
            ))
        })?;
        joiner.install(cmd);
        Ok(Some(joiner))
    }

    /// Removes container `id`'s group, if any, once its processes are dead; what its counters
    /// said last.
    async fn drop_group(&self, id: &str) -> GroupUsage {
        if let Some(isolation) = &self.isolation {
            isolation.remove(id);
        }
        let Some(cgroups) = self.cgroups.clone() else {
            return GroupUsage::default();
        };
        let usage = cgroups.usage(id).unwrap_or_default();
        let id = id.to_string();
        let removed = tokio::task::spawn_blocking(move || {
            let removed = cgroups.remove(&id);
            (id, removed)
        })
        .await;
        if let Ok((id, Err(e))) = removed {
            tracing::warn!(container = %id, error = %e, "cannot remove a container's memory cgroup");
        }
        usage
    }

    /// How a container whose process is gone ended: out of memory when the kernel's OOM
    /// killer killed a process of its group.
    fn ended(&self, id: &str) -> Liveness {
        let oom_kills = self
            .cgroups
            .as_ref()
            .and_then(|c| c.usage(id).ok())
            .map_or(0, |u| u.oom_kills);
        if oom_kills > 0 {
            Liveness::OutOfMemory
        } else {
            Liveness::Exited
        }
    }

    /// Starts `cmd` (the container-service with its flags) as a new container that must
    /// announce itself within `ready_timeout`; `function` names it in errors and logs. Its
    /// memory cgroup, if any, is limited to `memory_limit` (0: unbound).
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
        // Log format and span export as flags: the isolation below clears the environment.
        cmd.args(faas_common::logging::child_args());
        let (tail, write_end) = stderr::capture(&mut cmd).map_err(|e| {
            RuntimeError::Unavailable(format!("cannot make a pipe for a container's stderr: {e}"))
        })?;
        let cap = if memory_limit == 0 {
            UNBOUND_MEMORY_BYTES
        } else {
            memory_limit
        };
        let joiner = self.join_group(&id, cap, &mut cmd)?;
        // After the joiner: the child joins its groups while it is still the node's user.
        if let Some(isolation) = &self.isolation
            && let Err(e) = isolation.install(&id, &mut cmd)
        {
            drop(joiner);
            self.drop_group(&id).await;
            return Err(RuntimeError::Unavailable(format!(
                "cannot make the private directory of a container: {e}"
            )));
        }
        let spawned = Child::spawn_ready(cmd, ready_timeout).await;
        drop((write_end, joiner));
        let (mut child, addr) = match spawned {
            Ok(ready) => ready,
            Err(LaunchError::ExitedEarly { status, .. }) => {
                let reason = if self.drop_group(&id).await.oom_kills > 0 {
                    format!(
                        "the kernel killed it for passing its memory limit of {cap} bytes (its \
                         memory cgroup); give the function more memory"
                    )
                } else {
                    let printed = tail.reason(REASON_WAIT).await;
                    printed.unwrap_or_else(|| "it printed no reason".into())
                };
                return Err(RuntimeError::StartFailed {
                    function: function.to_string(),
                    message: format!(
                        "the container service exited ({status}) before it was ready: {reason}"
                    ),
                });
            }
            Err(e) => {
                self.drop_group(&id).await;
                return Err(launch_error(e, function));
            }
        };
        let pid = child.id();
        if self.closed.load(Ordering::Acquire) {
            child.stop(STOP_GRACE).await;
            self.drop_group(&id).await;
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
        cmd.args(["--host=127.0.0.1", "--port=0", "--function-name"])
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
        cmd.arg(format!("--memory-bytes={}", spec.memory_bytes));
        if spec.timeout_ms > 0 {
            cmd.arg(format!("--timeout-ms={}", spec.timeout_ms));
        }
        self.start(cmd, &spec.function_name, spec.memory_bytes, ready_timeout)
            .await
    }

    async fn start_unbound(&self) -> Result<ContainerHandle, RuntimeError> {
        let mut cmd = self.launcher.command();
        cmd.args(["--host=127.0.0.1", "--port=0", "--unbound"]);
        self.start(cmd, "(warm pool)", 0, self.ready_timeout).await
    }

    async fn assign(&self, id: &str, spec: &ContainerSpec) -> Result<(), RuntimeError> {
        let container = self
            .get(id)
            .ok_or_else(|| RuntimeError::NotFound(id.to_string()))?;
        if let Some(cgroups) = &self.cgroups {
            cgroups
                .set_limit(id, spec.memory_bytes)
                .map_err(|e| RuntimeError::StartFailed {
                    function: spec.function_name.clone(),
                    message: format!(
                        "cannot set the warm pool container's memory cgroup limit to {} bytes: {e}",
                        spec.memory_bytes
                    ),
                })?;
        }
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
        self.drop_group(id).await;
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
                return self.ended(id);
            }
            tokio::time::sleep(EXIT_CONFIRM_STEP).await;
        }
        if child.has_exited() {
            self.ended(id)
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
        if let Some(cgroups) = self.cgroups.clone() {
            let _ = tokio::task::spawn_blocking(move || cgroups.close()).await;
        }
        if let Some(isolation) = &self.isolation {
            isolation.close();
        }
    }
}

#[cfg(test)]
mod tests {
    use faas_common::launch::{Signal, send_signal};

    use super::*;
    use crate::api::cgroup_fake::FakeCgroups;

    /// Announces a port, then sleeps: a "container service" for the runtime's rules (its flags
    /// land in the script's `$@`).
    const SLEEPER: &str = "echo FAAS_LISTENING 127.0.0.1:1; exec sleep 60";

    fn runtime(script: &str) -> (ProcessRuntime, Arc<FakeCgroups>) {
        let launcher = Launcher::new("/bin/sh", vec!["-c".into(), script.into(), "cs".into()]);
        let cgroups = Arc::new(FakeCgroups::default());
        let runtime =
            ProcessRuntime::new(launcher, Duration::from_secs(10)).with_cgroups(cgroups.clone());
        (runtime, cgroups)
    }

    fn spec(memory_bytes: u64) -> ContainerSpec {
        ContainerSpec {
            function_name: "f".into(),
            handler: "hello".into(),
            memory_bytes,
            timeout_ms: 0,
        }
    }

    /// Kills the container's process as the kernel's OOM killer would.
    fn kill(runtime: &ProcessRuntime, id: &str) {
        send_signal(runtime.pid(id).unwrap(), Signal::Kill).unwrap();
    }

    #[tokio::test]
    async fn a_container_gets_a_group_limited_to_its_memory_until_it_is_removed() {
        let (runtime, cgroups) = runtime(SLEEPER);
        let handle = runtime.create(&spec(96 << 20), None).await.unwrap();
        assert_eq!(cgroups.limit(&handle.id), Some(96 << 20));
        runtime.remove(&handle.id).await.unwrap();
        assert_eq!(cgroups.removed(), [handle.id]);
        assert_eq!(cgroups.live(), 0);
        runtime.shutdown().await;
        assert!(cgroups.closed());
    }

    #[tokio::test]
    async fn a_pool_container_is_capped_until_bound_then_gets_its_functions_limit() {
        let (runtime, cgroups) = runtime(SLEEPER);
        let handle = runtime.start_unbound().await.unwrap();
        assert_eq!(cgroups.limit(&handle.id), Some(UNBOUND_MEMORY_BYTES));
        runtime.assign(&handle.id, &spec(256 << 20)).await.unwrap();
        assert_eq!(cgroups.limit(&handle.id), Some(256 << 20));
        runtime.shutdown().await;
        assert_eq!(cgroups.live(), 0, "the shutdown removes every group");
    }

    #[tokio::test]
    async fn a_container_whose_group_counts_an_oom_kill_died_out_of_memory() {
        let (runtime, cgroups) = runtime(SLEEPER);
        let oom = runtime.create(&spec(64 << 20), None).await.unwrap();
        let plain = runtime.create(&spec(64 << 20), None).await.unwrap();
        assert_eq!(runtime.liveness(&oom.id).await, Liveness::Running);
        cgroups.oom_kill(&oom.id);
        kill(&runtime, &oom.id);
        kill(&runtime, &plain.id);
        assert_eq!(runtime.liveness(&oom.id).await, Liveness::OutOfMemory);
        assert_eq!(runtime.liveness(&plain.id).await, Liveness::Exited);
        runtime.shutdown().await;
    }

    #[tokio::test]
    async fn without_a_group_nothing_starts() {
        let (runtime, cgroups) = runtime(SLEEPER);
        cgroups.refuse_creates();
        let e = runtime.create(&spec(64 << 20), None).await.unwrap_err();
        assert!(
            matches!(&e, RuntimeError::Unavailable(m) if m.contains("memory cgroup")),
            "{e:?}"
        );
        assert!(runtime.table().is_empty());
    }

    #[tokio::test]
    async fn a_container_killed_for_memory_while_it_starts_says_so_and_leaves_no_group() {
        let (runtime, cgroups) = runtime("kill -9 $$");
        cgroups.kill_new_groups();
        let e = runtime.create(&spec(1 << 20), None).await.unwrap_err();
        let RuntimeError::StartFailed { message, .. } = &e else {
            panic!("{e:?}");
        };
        assert!(
            message.contains("memory limit of 1048576 bytes"),
            "{message}"
        );
        assert_eq!(cgroups.live(), 0);
    }
}
