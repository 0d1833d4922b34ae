//! The fault bench's injector (`faas replay --faults`): strikes the faults of
//! `faas_e2e::fault` into a [`LocalPlatform`] this process started, and counts what the
//! platform left behind once it stopped.
//!
//! - `kill-node`: SIGKILL the node service holding the most function containers (they die
//!   with it); in flight: the calls its containers were running.
//! - `kill-containers:N`: SIGKILL the N busiest function containers (most calls running,
//!   then most served); in flight: their calls.
//! - `pause-node:DURATION`: SIGSTOP the node service holding the most function containers,
//!   SIGCONT after DURATION (also when the run ends early); in flight: its containers' calls.
//! - `restart-scheduler`, `restart-apiserver`, `restart-resource-manager`: the
//!   [`LocalPlatform`] restart hooks (a crash, then the same component on the same port);
//!   in flight: every call. The platform must be started restartable.
//!
//! Processes are found through /proc under this process ([`faas_e2e::procs`]), so the
//! platform must run here (node services are this process's children).

use std::collections::HashSet;
use std::time::Duration;

use faas_e2e::fault::{FaultInjector, FaultKind, Leaks, Strike};
use faas_e2e::observe::{self, BusyNode, NodeLedger};
use faas_e2e::procs;
use tokio::task::JoinHandle;

use crate::errors::one_line;
use crate::platform::LocalPlatform;

/// How long the reserved nodes and their containers may take to agree with the scheduler
/// once the load is over, before what still differs counts as leaked.
pub const LEAK_SETTLE: Duration = Duration::from_secs(15);
/// How long node and container processes may take to exit once the platform stopped.
const EXIT_GRACE: Duration = Duration::from_secs(5);

/// Strikes faults into a platform it borrows (see the module documentation).
pub struct PlatformFaults<'a> {
    platform: &'a mut LocalPlatform,
    /// Node and container processes seen so far (checked once the platform stopped).
    seen: HashSet<u32>,
    /// Paused nodes still to be continued.
    resumes: Vec<JoinHandle<()>>,
}

impl<'a> PlatformFaults<'a> {
    /// An injector for `platform`.
    pub fn new(platform: &'a mut LocalPlatform) -> PlatformFaults<'a> {
        PlatformFaults {
            platform,
            seen: procs::platform_pids(),
            resumes: Vec::new(),
        }
    }

    /// Waits until every paused node is continued; returns the node and container
    /// processes seen while faults were struck.
    pub async fn finish(mut self) -> HashSet<u32> {
        for resume in self.resumes.drain(..) {
            let _ = resume.await;
        }
        self.seen.extend(procs::platform_pids());
        self.seen
    }

    async fn busiest_node() -> Result<BusyNode, String> {
        observe::busiest_node()
            .await
            .ok_or_else(|| "no node holds a function container".to_string())
    }

    async fn kill_node(&mut self) -> Result<Strike, String> {
        let node = Self::busiest_node().await?;
        let in_flight = observe::in_flight_now(&node.containers).await;
        let at = faas_common::clock::instant();
        if !procs::kill9(node.pid) {
            return Err(format!(
                "cannot SIGKILL node-service {} (pid {})",
                node.node_id, node.pid
            ));
        }
        Ok(Strike {
            at,
            target: format!(
                "SIGKILL node-service {} (pid {}, {} containers)",
                node.node_id,
                node.pid,
                node.containers.len()
            ),
            in_flight: Some(in_flight),
        })
    }

    async fn kill_containers(&mut self, n: u32) -> Result<Strike, String> {
        let mut bound = observe::live_containers().await;
        bound.retain(|c| !c.status.function_name.is_empty());
        if bound.is_empty() {
            return Err("no function container runs".into());
        }
        let running = bound.len();
        bound.sort_by_key(|c| {
            (
                std::cmp::Reverse(c.status.in_flight),
                std::cmp::Reverse(c.status.served),
                c.pid,
            )
        });
        bound.truncate(n as usize);
        let in_flight = observe::in_flight_now(&bound).await;
        let at = faas_common::clock::instant();
        let killed: Vec<_> = bound.iter().filter(|c| procs::kill9(c.pid)).collect();
        if killed.is_empty() {
            return Err(format!("cannot SIGKILL any of {} containers", bound.len()));
        }
        let mut functions: Vec<&str> = killed
            .iter()
            .map(|c| c.status.function_name.as_str())
            .collect();
        functions.sort_unstable();
        functions.dedup();
        let short = if running < n as usize {
            format!(" (only {running} ran)")
        } else {
            String::new()
        };
        Ok(Strike {
            at,
            target: format!(
                "SIGKILL {} function containers{short} of {}",
                killed.len(),
                functions.join(", ")
            ),
            in_flight: Some(in_flight),
        })
    }

    async fn pause_node(&mut self, ms: u64) -> Result<Strike, String> {
        let node = Self::busiest_node().await?;
        let in_flight = observe::in_flight_now(&node.containers).await;
        let at = faas_common::clock::instant();
        let paused = procs::Paused::try_stop(node.pid).ok_or_else(|| {
            format!(
                "cannot SIGSTOP node-service {} (pid {})",
                node.node_id, node.pid
            )
        })?;
        self.resumes.push(tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            paused.resume();
        }));
        Ok(Strike {
            at,
            target: format!(
                "SIGSTOP node-service {} (pid {}, {} containers), SIGCONT {} ms later",
                node.node_id,
                node.pid,
                node.containers.len(),
                ms
            ),
            in_flight: Some(in_flight),
        })
    }

    async fn restart(&mut self, fault: FaultKind) -> Result<Strike, String> {
        let p = &mut *self.platform;
        let (name, addr) = match fault {
            FaultKind::RestartScheduler => ("scheduler", p.scheduler),
            FaultKind::RestartApiserver => ("apiserver", p.apiserver),
            _ => ("resource-manager", p.resource_manager),
        };
        let at = faas_common::clock::instant();
        let restarted = match fault {
            FaultKind::RestartScheduler => p.restart_scheduler().await,
            FaultKind::RestartApiserver => p.restart_apiserver().await,
            _ => p.restart_resource_manager().await,
        };
        restarted.map_err(|e| one_line(&e))?;
        Ok(Strike {
            at,
            target: format!(
                "{name} on {addr} crashed; its successor answered {} ms later",
                at.elapsed().as_millis()
            ),
            in_flight: None,
        })
    }
}

impl FaultInjector for PlatformFaults<'_> {
    async fn inject(&mut self, fault: FaultKind) -> Result<Strike, String> {
        self.seen.extend(procs::platform_pids());
        match fault {
            FaultKind::KillNode => self.kill_node().await,
            FaultKind::KillContainers(n) => self.kill_containers(n).await,
            FaultKind::PauseNode(ms) => self.pause_node(ms).await,
            FaultKind::RestartScheduler
            | FaultKind::RestartApiserver
            | FaultKind::RestartResourceManager => self.restart(fault).await,
        }
    }
}

/// Counts what the platform leaves behind and stops it: the reserved nodes the scheduler
/// does not hold and the containers they hold that it does not (given up to [`LEAK_SETTLE`]
/// to agree; the scheduler's metrics must be on `scheduler_metrics`), then, once it stopped,
/// the node and container processes of `seen` (and of this process's tree) still running.
pub async fn stop_counting_leaks(
    platform: LocalPlatform,
    mut seen: HashSet<u32>,
    scheduler_metrics: u16,
) -> (Leaks, anyhow::Result<()>) {
    let rm = platform.resource_manager.to_string();
    let auth = platform.cluster_auth();
    let ledger = observe::poll(LEAK_SETTLE, || async {
        let ledger = observe::node_ledger(&rm, scheduler_metrics, &auth).await;
        ledger.settled().then_some(ledger)
    })
    .await;
    let ledger: NodeLedger = match ledger {
        Some(l) => l,
        None => observe::node_ledger(&rm, scheduler_metrics, &auth).await,
    };
    seen.extend(procs::platform_pids());
    let stopped = platform.stop().await;
    let left = observe::poll(EXIT_GRACE, || async {
        procs::left_over(&seen).is_empty().then_some(())
    })
    .await;
    let processes = match left {
        Some(()) => 0,
        None => {
            let left = procs::left_over(&seen);
            tracing::warn!(?left, "processes left after the platform stopped");
            left.len() as u64
        }
    };
    let leaks = Leaks {
        processes,
        containers: ledger.orphan_containers(),
        nodes: ledger.unknown_to_scheduler() as u64,
    };
    (leaks, stopped)
}
