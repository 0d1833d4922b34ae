//! Starts the whole platform on this machine and stops it again, leaving nothing behind.
//!
//! The resource manager, scheduler and API server run as tasks in this process, each on its
//! own TCP listener, speaking real gRPC to each other. The resource manager's `local` provider
//! starts node-service child processes, and each node service starts one container-service
//! child process per container (the `process` runtime). Stopping goes front to back: the API
//! server first (no new work), then the scheduler, then the resource manager, which stops its
//! nodes, which stop their containers.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use faas_common::shutdown::{self, Trigger};
use tokio::task::JoinHandle;

/// What to start.
#[derive(Clone, Debug)]
pub struct PlatformOptions {
    /// Address the components listen on.
    pub host: String,
    /// API server port (0: any free port).
    pub apiserver_port: u16,
    /// Scheduler port (0: any free port).
    pub scheduler_port: u16,
    /// Resource manager port (0: any free port).
    pub resource_manager_port: u16,
    /// Scheduler policy by name.
    pub policy: String,
    /// Nodes ready when the platform starts.
    pub ready_nodes: u32,
    /// Nodes at most.
    pub max_nodes: u32,
    /// Delay before the node pool refills after a reserve or release, ms.
    pub refill_delay_ms: u64,
    /// Function definitions to load (TOML); `None` loads the built-in default set.
    pub functions: Option<PathBuf>,
    /// Where nodes come from: `local` (node-service child processes) or `docker`
    /// (node-service containers; see the resource manager's `--provider`).
    pub provider: String,
    /// How local nodes run containers: `process` or `docker` (ignored by `--provider
    /// docker`, whose nodes always use the docker runtime).
    pub node_runtime: String,
    /// The Docker instance label of every container and the orphan clean-up scope
    /// (`None`: the resource manager's default).
    pub docker_instance: Option<String>,
    /// Unbound containers each node keeps ready for creates (the node service's
    /// `--warm-pool`; `None`: its default, or `FAAS_WARM_POOL` for local nodes, which
    /// inherit this process's environment).
    pub node_warm_pool: Option<u32>,
}

impl Default for PlatformOptions {
    fn default() -> Self {
        PlatformOptions {
            host: "127.0.0.1".to_string(),
            apiserver_port: 0,
            scheduler_port: 0,
            resource_manager_port: 0,
            policy: faas_scheduler::policies::DEFAULT_POLICY.to_string(),
            ready_nodes: 10,
            max_nodes: 20,
            refill_delay_ms: 10_000,
            functions: None,
            provider: "local".to_string(),
            node_runtime: "process".to_string(),
            docker_instance: None,
            node_warm_pool: None,
        }
    }
}

/// One running component: its address, its shutdown trigger and its task.
struct Component {
    name: &'static str,
    trigger: Trigger,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Component {
    async fn stop(self) -> anyhow::Result<()> {
        self.trigger.trigger();
        match self.task.await {
            Ok(result) => result.with_context(|| format!("{} failed", self.name)),
            Err(e) => Err(anyhow::anyhow!("{} panicked: {e}", self.name)),
        }
    }
}

/// The running platform.
pub struct LocalPlatform {
    /// Where the API server listens.
    pub apiserver: SocketAddr,
    /// Where the scheduler listens.
    pub scheduler: SocketAddr,
    /// Where the resource manager listens.
    pub resource_manager: SocketAddr,
    /// Front to back: API server, scheduler, resource manager.
    components: Vec<Component>,
}

/// Parses a component's clap `Args` from flags, exactly as its binary would.
fn config_from<T: clap::Args>(args: &[String]) -> anyhow::Result<T> {
    #[derive(Parser)]
    struct Wrap<T: clap::Args> {
        #[command(flatten)]
        inner: T,
    }
    let argv = std::iter::once("faas".to_string()).chain(args.iter().cloned());
    Ok(Wrap::<T>::try_parse_from(argv)?.inner)
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

async fn bind(host: &str, port: u16) -> anyhow::Result<tokio::net::TcpListener> {
    Ok(faas_common::serve::bind(&format!("{host}:{port}")).await?)
}

impl LocalPlatform {
    /// Starts every component and returns once all listen. Node services start in the
    /// background as the resource manager fills its pool.
    pub async fn start(opts: &PlatformOptions) -> anyhow::Result<LocalPlatform> {
        let rm_listener = bind(&opts.host, opts.resource_manager_port).await?;
        let scheduler_listener = bind(&opts.host, opts.scheduler_port).await?;
        let api_listener = bind(&opts.host, opts.apiserver_port).await?;
        let resource_manager = rm_listener.local_addr()?;
        let scheduler = scheduler_listener.local_addr()?;
        let apiserver = api_listener.local_addr()?;

        let mut rm_args = strings(&[
            "--host",
            &opts.host,
            "--provider",
            &opts.provider,
            "--node-runtime",
            &opts.node_runtime,
            "--ready-nodes",
            &opts.ready_nodes.to_string(),
            "--max-nodes",
            &opts.max_nodes.to_string(),
            "--refill-delay-ms",
            &opts.refill_delay_ms.to_string(),
        ]);
        if let Some(instance) = &opts.docker_instance {
            rm_args.push("--docker-instance".to_string());
            rm_args.push(instance.clone());
        }
        if let Some(n) = opts.node_warm_pool {
            rm_args.push("--node-warm-pool".to_string());
            rm_args.push(n.to_string());
        }
        let rm_config: faas_resource_manager::Config = config_from(&rm_args)?;
        let scheduler_config: faas_scheduler::Config = config_from(&strings(&[
            "--host",
            &opts.host,
            "--resource-manager",
            &resource_manager.to_string(),
            "--policy",
            &opts.policy,
        ]))?;
        let mut api_args = strings(&["--host", &opts.host, "--scheduler", &scheduler.to_string()]);
        if let Some(path) = &opts.functions {
            api_args.push("--functions".to_string());
            api_args.push(path.display().to_string());
        }
        let api_config: faas_apiserver::Config = config_from(&api_args)?;

        let (rm_trigger, rm_shutdown) = shutdown::channel();
        let rm_task = tokio::spawn(async move {
            faas_resource_manager::run(rm_listener, rm_config, rm_shutdown)
                .await
                .map_err(anyhow::Error::from)
        });
        let (scheduler_trigger, scheduler_shutdown) = shutdown::channel();
        let scheduler_task = tokio::spawn(async move {
            faas_scheduler::run(scheduler_listener, scheduler_config, scheduler_shutdown)
                .await
                .map_err(anyhow::Error::from)
        });
        let (api_trigger, api_shutdown) = shutdown::channel();
        let api_task = tokio::spawn(async move {
            faas_apiserver::run(api_listener, api_config, api_shutdown)
                .await
                .map_err(anyhow::Error::from)
        });

        Ok(LocalPlatform {
            apiserver,
            scheduler,
            resource_manager,
            components: vec![
                Component {
                    name: "apiserver",
                    trigger: api_trigger,
                    task: api_task,
                },
                Component {
                    name: "scheduler",
                    trigger: scheduler_trigger,
                    task: scheduler_task,
                },
                Component {
                    name: "resource-manager",
                    trigger: rm_trigger,
                    task: rm_task,
                },
            ],
        })
    }

    /// Stops every component front to back and waits until each has stopped (node and
    /// container processes included). Returns the first failure, after stopping the rest.
    pub async fn stop(self) -> anyhow::Result<()> {
        let mut first_error = None;
        for component in self.components {
            if let Err(e) = component.stop().await {
                tracing::error!(error = %e, "component stopped with an error");
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}
