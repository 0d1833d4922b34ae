//! One component of the local platform: how it starts (in this runtime or one of its own),
//! how it answers its health check, how it stops cleanly or as a crash would. The platform
//! that starts them in order is [`super::LocalPlatform`].

use super::*;

pub(super) const RUNTIME_SHUTDOWN: Duration = Duration::from_secs(5);
/// How long a restarted resource manager may take to stop serving as a crash would.
pub(super) const DETACH_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a restarted component may wait for its port to be free again.
pub(super) const REBIND_TIMEOUT: Duration = Duration::from_secs(3);

/// One running component: its address, its shutdown trigger and its task.
pub(super) struct Component {
    pub(super) name: &'static str,
    pub(super) addr: SocketAddr,
    pub(super) trigger: Trigger,
    /// The resource manager's other stop: as a crash, its nodes left running.
    pub(super) detach: Option<Trigger>,
    pub(super) task: JoinHandle<anyhow::Result<()>>,
    /// A restartable platform's: the component's own runtime and its configuration.
    pub(super) own: Option<(OwnRuntime, Spec)>,
}

/// A component's configuration, kept so a restart starts it again the same way.
#[derive(Clone, Debug)]
pub(super) enum Spec {
    Apiserver(Box<faas_apiserver::Config>),
    Scheduler(faas_scheduler::Config),
    ResourceManager(Box<faas_resource_manager::Config>),
}

impl Spec {
    pub(super) fn name(&self) -> &'static str {
        match self {
            Spec::Apiserver(_) => APISERVER,
            Spec::Scheduler(_) => SCHEDULER,
            Spec::ResourceManager(_) => RESOURCE_MANAGER,
        }
    }

    /// Worker threads of the component's own runtime: the two on the invoke path get two.
    pub(super) fn workers(&self) -> usize {
        match self {
            Spec::Apiserver(_) | Spec::Scheduler(_) => 2,
            Spec::ResourceManager(_) => 1,
        }
    }

    /// Serves the component on `listener` until `shutdown` (or, for the resource manager,
    /// `detach`) fires.
    pub(super) async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: Shutdown,
        detach: Shutdown,
    ) -> anyhow::Result<()> {
        match self {
            Spec::Apiserver(config) => {
                // Its HTTP gateway (`--http-port`, 0: off), bound again by a restart.
                let http = match config.http_addr() {
                    Some(addr) => Some(faas_common::serve::bind(&addr).await.map_err(|e| {
                        anyhow::anyhow!("its HTTP gateway (--http-port) cannot start: {e}")
                    })?),
                    None => None,
                };
                faas_apiserver::serve_with(listener, http, *config, shutdown)
                    .await
                    .map_err(anyhow::Error::from)
            }
            Spec::Scheduler(config) => faas_scheduler::run(listener, config, shutdown)
                .await
                .map_err(anyhow::Error::from),
            Spec::ResourceManager(config) => {
                faas_resource_manager::run_with(listener, *config, shutdown, detach)
                    .await
                    .map_err(anyhow::Error::from)
            }
        }
    }

    /// Starts the component on `listener`: on a runtime of its own when `restartable` (the
    /// listener moves to it), else on the caller's.
    pub(super) fn launch(
        self,
        listener: tokio::net::TcpListener,
        restartable: bool,
    ) -> anyhow::Result<Component> {
        let name = self.name();
        let addr = listener.local_addr()?;
        let (trigger, shutdown) = shutdown::channel();
        let (detach, detached) = match self {
            Spec::ResourceManager(_) => {
                let (trigger, detached) = shutdown::channel();
                (Some(trigger), detached)
            }
            _ => (None, Shutdown::never()),
        };
        let (task, own) = if restartable {
            let runtime = OwnRuntime::new(name, self.workers())?;
            let listener = listener.into_std()?;
            let spec = self.clone();
            let task = runtime.handle().spawn(async move {
                let listener = tokio::net::TcpListener::from_std(listener)?;
                spec.serve(listener, shutdown, detached).await
            });
            (task, Some((runtime, self)))
        } else {
            (tokio::spawn(self.serve(listener, shutdown, detached)), None)
        };
        Ok(Component {
            name,
            addr,
            trigger,
            detach,
            task,
            own,
        })
    }
}

/// A tokio runtime of one component's own. It is shut down, never dropped in place (that
/// would block the caller's runtime).
pub(super) struct OwnRuntime(Option<tokio::runtime::Runtime>);

impl OwnRuntime {
    pub(super) fn new(name: &str, workers: usize) -> anyhow::Result<OwnRuntime> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .thread_name(format!("faas-{name}"))
            .enable_all()
            .build()
            .with_context(|| format!("{name}: cannot start its runtime"))?;
        Ok(OwnRuntime(Some(runtime)))
    }

    pub(super) fn handle(&self) -> tokio::runtime::Handle {
        match &self.0 {
            Some(runtime) => runtime.handle().clone(),
            None => unreachable!("an OwnRuntime holds its runtime until it shuts down"),
        }
    }

    /// Drops every task the runtime still runs, where it waits (sockets close, nothing runs
    /// to its end), and waits until its threads have stopped.
    pub(super) async fn shut_down(mut self) {
        if let Some(runtime) = self.0.take() {
            let stopped =
                tokio::task::spawn_blocking(move || runtime.shutdown_timeout(RUNTIME_SHUTDOWN));
            if let Err(e) = stopped.await {
                tracing::warn!(error = %e, "a component's runtime did not shut down cleanly");
            }
        }
    }
}

impl Drop for OwnRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

/// Why a component's task ended by itself, as one line that names the component.
pub(super) fn ended(
    name: &str,
    how: &str,
    outcome: Result<anyhow::Result<()>, JoinError>,
) -> anyhow::Error {
    match outcome {
        Ok(Ok(())) => anyhow::anyhow!("{name} {how}: it stopped by itself"),
        Ok(Err(e)) => anyhow::anyhow!("{name} {how}: {}", one_line(&e)),
        Err(e) => anyhow::anyhow!("{name} {how}: it panicked: {e}"),
    }
}

/// Whether the gRPC server at `addr` answers its health check with SERVING.
pub(super) async fn serving(addr: SocketAddr) -> bool {
    use tonic_health::pb::{
        HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
    };
    let Ok(channel) = faas_common::serve::connect(&addr.to_string()).await else {
        return false;
    };
    let reply = HealthClient::new(channel)
        .check(HealthCheckRequest::default())
        .await;
    matches!(reply, Ok(r) if r.get_ref().status == ServingStatus::Serving as i32)
}

impl Component {
    pub(super) async fn stop(self) -> anyhow::Result<()> {
        self.trigger.trigger();
        let result = match self.task.await {
            Ok(result) => result.with_context(|| format!("{} failed", self.name)),
            Err(e) => Err(anyhow::anyhow!("{} panicked: {e}", self.name)),
        };
        if let Some((runtime, _)) = self.own {
            runtime.shut_down().await;
        }
        result
    }

    /// Stops the component as a crash would (see the module documentation) and returns
    /// its configuration. A component without a runtime of its own is handed back as it
    /// is, still running.
    pub(super) async fn crash(mut self) -> Result<Spec, Component> {
        let Some((runtime, spec)) = self.own.take() else {
            return Err(self);
        };
        if let Some(detach) = &self.detach {
            detach.trigger();
            if tokio::time::timeout(DETACH_TIMEOUT, &mut self.task)
                .await
                .is_err()
            {
                tracing::warn!(
                    component = self.name,
                    "still serving {} s after its crash-like stop; its runtime is shut down",
                    DETACH_TIMEOUT.as_secs()
                );
            }
        }
        runtime.shut_down().await;
        // Only now may its shutdown trigger go: its tasks are gone, nothing runs a clean stop.
        drop(self);
        Ok(spec)
    }

    /// Waits until the component answers its health check; fails with its own error if it
    /// stops first, or if it does not answer within [`READY_TIMEOUT`]. After an error the
    /// task has ended or been told to stop; do not wait on it again.
    pub(super) async fn ready(&mut self) -> anyhow::Result<()> {
        let addr = self.addr;
        let probe = async {
            while !serving(addr).await {
                tokio::time::sleep(READY_PROBE_INTERVAL).await;
            }
        };
        tokio::select! {
            biased;
            outcome = &mut self.task => Err(ended(self.name, "cannot start", outcome)),
            () = probe => Ok(()),
            () = tokio::time::sleep(READY_TIMEOUT) => {
                self.trigger.trigger();
                Err(anyhow::anyhow!(
                    "{} cannot start: no answer on {addr} within {} s",
                    self.name,
                    READY_TIMEOUT.as_secs()
                ))
            }
        }
    }
}
