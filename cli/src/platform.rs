//! Starts the whole platform on this machine and stops it again, leaving nothing behind.
//!
//! The resource manager, scheduler and API server run as tasks in this process, each on its
//! own TCP listener, speaking real gRPC to each other. The resource manager's `local` provider
//! starts node-service child processes, and each node service starts one container-service
//! child process per container (the `process` runtime). Stopping goes front to back: the API
//! server first (no new work), then the scheduler, then the resource manager, which stops its
//! nodes, which stop their containers.
//!
//! With a data directory ([`PlatformOptions::data_dir`]) the API server keeps deployed
//! functions in a SQLite database there (`DATA_DIR/apiserver.db`), so a restart loses none;
//! without one it keeps them in memory only. Nodes then find the bundles of functions made
//! of the users' own code in `DATA_DIR/bundles` ([`PlatformOptions::bundles_dir`]).
//! With a data directory the API server also requires a key on every call: the admin key it
//! keeps in `DATA_DIR/keys` (made on the first start), which [`LocalPlatform::api`] hands to
//! its clients ([`LocalPlatform::api_key`]); without one it is open on loopback.
//!
//! Starting fails fast on bad configuration: every component's flags are parsed, the policy,
//! the functions file and the database checked, and every port bound before anything runs;
//! then each component must answer its health check, and one that stops instead fails the
//! start with its own message (the others are stopped again).
//!
//! A restartable platform ([`PlatformOptions::restartable`], for the fault bench) runs each
//! of the three in-process components on a tokio runtime of its own, so that one can stop
//! as a crash would: [`LocalPlatform::restart_scheduler`],
//! [`LocalPlatform::restart_apiserver`] and [`LocalPlatform::restart_resource_manager`] shut
//! that runtime down (every task the component started is dropped where it waits: its
//! listener, its connections and the calls in flight on them, its timers; nothing runs its
//! shutdown path, so the scheduler releases nothing and answers no waiting acquire), then
//! start the component again on the same port with the same configuration. The resource
//! manager is stopped through its crash-like stop ([`faas_resource_manager::run_with`]): its
//! nodes keep running, to be taken back by the new one when it has a `--state-dir`.
//!
//! Metrics ([`PlatformOptions::metrics`], `faas up --metrics`): each component serves
//! Prometheus text on `/metrics` at a port of its own ([`MetricsPorts`]; defaults 10501 API
//! server, 10601 scheduler, 10401 resource manager), and every node one of its own from
//! 10700 up (the resource manager's `--node-metrics-port-base`: the lowest free port, so node
//! 1 is usually on 10700, node 2 on 10701). A metrics port in use fails the start like any
//! other port, except a node's, which is skipped.
//!
//! Every platform has a cluster token ([`faas_common::token`]): the resource manager, the
//! scheduler and the node services take calls only with it, and each component sends it on
//! its calls to the others. It is made from the OS's random source and kept in
//! `DATA_DIR/cluster-token` (mode 0600; kept across restarts, so the nodes of a crashed run
//! are taken back) when there is a data directory; without one it lives in this process only
//! and the resource manager hands it to its node processes in their environment. Tools that
//! look at the components directly use [`LocalPlatform::cluster_auth`].
//!
//! One component's start, health check and stop are in `platform_component.rs`; this file
//! starts the platform in order and restarts its parts.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use faas_common::shutdown::{self, Shutdown, Trigger};
use tokio::task::{JoinError, JoinHandle};

use crate::errors::one_line;

#[path = "platform_metrics.rs"]
mod metrics;
pub use metrics::MetricsPorts;
#[path = "platform_component.rs"]
mod component;
use component::*;

/// How long a component may take to answer its first health check.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// The pause between health checks of a starting component.
const READY_PROBE_INTERVAL: Duration = Duration::from_millis(10);

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
    /// Function definitions to load (TOML); `None` loads the built-in default set. With a
    /// data directory, only a new database is seeded from them.
    pub functions: Option<PathBuf>,
    /// Where the API server keeps deployed functions (`DATA_DIR/apiserver.db`), so a restart
    /// loses none, and the resource manager its state (`DATA_DIR/resource-manager/`), so the
    /// nodes of a crashed run are taken back; `None`: memory only (`FAAS_DATA_DIR` is not
    /// read here: `faas up` resolves its own default). Tests give a temporary directory.
    pub data_dir: Option<PathBuf>,
    /// Where nodes find the bundles of functions made of the users' own code (the resource
    /// manager's `--node-bundles-dir`, created if missing); `None`: `DATA_DIR/bundles`
    /// (where the API server writes them) when there is a data directory, else none.
    pub bundles_dir: Option<PathBuf>,
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
    /// More scheduler flags, after the ones these options make (a flag given again here
    /// wins), e.g. `["--metrics-port", "9100"]`.
    pub scheduler_args: Vec<String>,
    /// More resource manager flags, likewise.
    pub resource_manager_args: Vec<String>,
    /// More API server flags, likewise (e.g. `["--account-rate", "0"]`).
    pub apiserver_args: Vec<String>,
    /// Run each in-process component on a runtime of its own, so the restart hooks can stop
    /// one as a crash would (see the module documentation). Off: they share the caller's
    /// runtime, and the restart hooks refuse.
    pub restartable: bool,
    /// Where each component serves Prometheus metrics (`None`: nowhere). The `*_args` above
    /// still win.
    pub metrics: Option<MetricsPorts>,
    /// The API server's HTTP gateway port (its `--http-port`, always passed; 0, the
    /// default: off, so platforms side by side never fight over one port).
    pub http_port: u16,
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
            data_dir: None,
            bundles_dir: None,
            provider: "local".to_string(),
            node_runtime: "process".to_string(),
            docker_instance: None,
            node_warm_pool: None,
            scheduler_args: Vec::new(),
            resource_manager_args: Vec::new(),
            apiserver_args: Vec::new(),
            restartable: false,
            metrics: None,
            http_port: 0,
        }
    }
}

/// How long a component's own runtime may take to drop its tasks when it stops.
/// The platform's cluster token: `DATA_DIR/cluster-token` (made on first start, mode 0600),
/// or a new one for this process only without a data directory.
fn cluster_token(
    data_dir: Option<&std::path::Path>,
) -> anyhow::Result<faas_common::token::ClusterToken> {
    use faas_common::token::{ClusterToken, FILE_NAME};
    match data_dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create the data directory {}", dir.display()))?;
            ClusterToken::load_or_create(&dir.join(FILE_NAME)).map_err(anyhow::Error::msg)
        }
        None => ClusterToken::generate().context("cannot make a cluster token (/dev/urandom)"),
    }
}

/// Where `faas up` keeps its data on this machine when not told, as [`default_data_dir`]
/// from the environment, except for root: `/var/lib/mini-faas`. Root's home is closed to
/// other users, and function containers run as an unprivileged user (the node's
/// `--container-user`) that must reach the bundles in the data directory.
pub fn data_dir_here() -> Option<PathBuf> {
    if std::fs::metadata("/proc/self").is_ok_and(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0) {
        return Some(PathBuf::from(ROOT_DATA_DIR));
    }
    default_data_dir(std::env::var_os("XDG_DATA_HOME"), std::env::var_os("HOME"))
}

/// Root's default data directory.
pub const ROOT_DATA_DIR: &str = "/var/lib/mini-faas";

/// Where `faas up` keeps its data when not told: `$XDG_DATA_HOME/mini-faas`, else
/// `$HOME/.local/share/mini-faas` (the XDG base directory rules: a relative or empty
/// `XDG_DATA_HOME` is ignored). `None` when neither is set.
pub fn default_data_dir(
    xdg_data_home: Option<std::ffi::OsString>,
    home: Option<std::ffi::OsString>,
) -> Option<PathBuf> {
    let absolute = |v: Option<std::ffi::OsString>| v.map(PathBuf::from).filter(|p| p.is_absolute());
    absolute(xdg_data_home)
        .or_else(|| absolute(home).map(|h| h.join(".local").join("share")))
        .map(|base| base.join("mini-faas"))
}

/// The running platform.
pub struct LocalPlatform {
    /// Where the API server listens.
    pub apiserver: SocketAddr,
    /// Where the scheduler listens.
    pub scheduler: SocketAddr,
    /// Where the resource manager listens.
    pub resource_manager: SocketAddr,
    /// The cluster token every component requires (see the module documentation).
    pub cluster_token: Option<faas_common::token::ClusterToken>,
    /// The admin key the API server takes (`DATA_DIR/keys` with a data directory).
    api_key: Option<String>,
    /// Front to back: API server, scheduler, resource manager.
    components: Vec<Component>,
}

/// Parses a component's clap `Args` from flags, exactly as its binary would (a flag given
/// twice: the last one wins); an error names the component.
fn config_from<T: clap::Args>(component: &str, args: &[String]) -> anyhow::Result<T> {
    #[derive(Parser)]
    #[command(args_override_self = true)]
    struct Wrap<T: clap::Args> {
        #[command(flatten)]
        inner: T,
    }
    let argv = std::iter::once(component.to_string()).chain(args.iter().cloned());
    Wrap::<T>::try_parse_from(argv)
        .map(|w| w.inner)
        .map_err(|e| {
            // clap's first line says what is wrong; the rest is usage help for a terminal.
            let text = e.to_string();
            let first = text.lines().next().unwrap_or_default();
            anyhow::anyhow!(
                "{component}: bad flags: {}",
                first.strip_prefix("error: ").unwrap_or(first)
            )
        })
}

const APISERVER: &str = "apiserver";
const SCHEDULER: &str = "scheduler";
const RESOURCE_MANAGER: &str = "resource-manager";

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

async fn bind(component: &str, host: &str, port: u16) -> anyhow::Result<tokio::net::TcpListener> {
    faas_common::serve::bind(&format!("{host}:{port}"))
        .await
        .map_err(|e| anyhow::anyhow!("{component} cannot start: {e}"))
}

/// Binds `addr` again for a restarted component, retrying while the port is still taken.
async fn rebind(component: &str, addr: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    let deadline = faas_common::clock::tokio_instant() + REBIND_TIMEOUT;
    loop {
        match faas_common::serve::bind(&addr.to_string()).await {
            Ok(listener) => return Ok(listener),
            Err(_) if faas_common::clock::tokio_instant() < deadline => {
                tokio::time::sleep(READY_PROBE_INTERVAL).await;
            }
            Err(e) => anyhow::bail!("{component} cannot restart: {e}"),
        }
    }
}

impl LocalPlatform {
    /// Starts every component and returns once all answer their health checks. Node
    /// services start in the background as the resource manager fills its pool. Fails fast,
    /// with one line naming the component, on bad flags, an unknown policy, a bad functions
    /// file, a port in use, or a component that stops as it starts (the others are stopped
    /// again before this returns).
    pub async fn start(opts: &PlatformOptions) -> anyhow::Result<LocalPlatform> {
        // Every flag first, so nothing runs on a bad configuration.
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
        if let Some(dir) = &opts.data_dir {
            // Its nodes outlive a crash of this process and are taken back next time.
            rm_args.push("--state-dir".to_string());
            rm_args.push(dir.join("resource-manager").display().to_string());
        }
        let bundles_dir = opts
            .bundles_dir
            .clone()
            .or_else(|| opts.data_dir.as_ref().map(|dir| dir.join("bundles")));
        if let Some(dir) = bundles_dir {
            std::fs::create_dir_all(&dir).with_context(|| {
                format!("cannot create the bundles directory {}", dir.display())
            })?;
            rm_args.push("--node-bundles-dir".to_string());
            rm_args.push(dir.display().to_string());
        }
        let metrics = opts.metrics.unwrap_or(MetricsPorts {
            apiserver: 0,
            scheduler: 0,
            resource_manager: 0,
            nodes_from: 0,
        });
        if opts.metrics.is_some() {
            rm_args.extend(strings(&[
                "--metrics-port",
                &metrics.resource_manager.to_string(),
                "--node-metrics-port-base",
                &metrics.nodes_from.to_string(),
            ]));
        }
        rm_args.extend(opts.resource_manager_args.iter().cloned());
        let cluster_token = cluster_token(opts.data_dir.as_deref())?;
        let cluster = faas_common::token::TokenArgs::with(Some(cluster_token.clone()));
        let rm_config = faas_resource_manager::Config {
            cluster: cluster.clone(),
            ..config_from(RESOURCE_MANAGER, &rm_args)?
        };
        // The scheduler's resource manager address is known once its port is bound.
        let scheduler_args = |resource_manager: &str| {
            let mut args = strings(&[
                "--host",
                &opts.host,
                "--resource-manager",
                resource_manager,
                "--policy",
                &opts.policy,
            ]);
            if opts.metrics.is_some() {
                args.extend(strings(&["--metrics-port", &metrics.scheduler.to_string()]));
            }
            args.extend(opts.scheduler_args.iter().cloned());
            args
        };
        let scheduler_config: faas_scheduler::Config =
            config_from(SCHEDULER, &scheduler_args("127.0.0.1:1"))?;
        faas_scheduler::policies::policy_by_name(
            &scheduler_config.policy,
            &faas_scheduler::core::PolicyOptions::default(),
        )
        .map_err(|e| anyhow::anyhow!("{SCHEDULER} cannot start: {e}"))?;
        let mut api_args = strings(&["--host", &opts.host, "--scheduler", "127.0.0.1:1"]);
        if let Some(path) = &opts.functions {
            api_args.push("--functions".to_string());
            api_args.push(path.display().to_string());
        }
        if opts.metrics.is_some() {
            api_args.extend(strings(&["--metrics-port", &metrics.apiserver.to_string()]));
        }
        api_args.extend(strings(&["--http-port", &opts.http_port.to_string()]));
        api_args.extend(opts.apiserver_args.iter().cloned());
        let api_config = faas_apiserver::Config {
            data_dir: opts.data_dir.clone(),
            ..config_from(APISERVER, &api_args)?
        };
        api_config
            .load_functions()
            .map_err(|e| anyhow::anyhow!("{APISERVER} cannot start: {e}"))?;

        let rm_listener = bind(RESOURCE_MANAGER, &opts.host, opts.resource_manager_port).await?;
        let scheduler_listener = bind(SCHEDULER, &opts.host, opts.scheduler_port).await?;
        let api_listener = bind(APISERVER, &opts.host, opts.apiserver_port).await?;
        let resource_manager = rm_listener.local_addr()?;
        let scheduler = scheduler_listener.local_addr()?;
        let apiserver = api_listener.local_addr()?;
        if let Some(dir) = opts.data_dir.clone() {
            // A database the API server would refuse fails the start before any node runs.
            tokio::task::spawn_blocking(move || faas_apiserver::check_data_dir(&dir))
                .await?
                .map_err(|e| anyhow::anyhow!("{APISERVER} cannot start: {e}"))?;
        }
        // The API server's admin key, for this process's own clients (`Self::api`); made
        // now in a new data directory.
        let api_key = api_config
            .client_key()
            .map_err(|e| anyhow::anyhow!("{APISERVER} cannot start: {e}"))?;
        let scheduler_config = faas_scheduler::Config {
            resource_manager: resource_manager.to_string(),
            cluster: cluster.clone(),
            ..scheduler_config
        };
        let api_config = faas_apiserver::Config {
            scheduler: scheduler.to_string(),
            cluster,
            ..api_config
        };

        // Back to front; a component that cannot launch stops the ones launched before it.
        let mut components = Vec::with_capacity(3);
        for (spec, listener) in [
            (Spec::ResourceManager(Box::new(rm_config)), rm_listener),
            (Spec::Scheduler(scheduler_config), scheduler_listener),
            (Spec::Apiserver(Box::new(api_config)), api_listener),
        ] {
            match spec.launch(listener, opts.restartable) {
                Ok(c) => components.insert(0, c),
                Err(e) => {
                    for c in components {
                        let _ = c.stop().await;
                    }
                    return Err(e);
                }
            }
        }
        let mut platform = LocalPlatform {
            apiserver,
            scheduler,
            resource_manager,
            cluster_token: Some(cluster_token),
            api_key,
            components,
        };
        // Back to front, as each needs the one behind it.
        for i in (0..platform.components.len()).rev() {
            if let Err(e) = platform.components[i].ready().await {
                // That one has ended (or been told to stop): stop the others, then say why.
                let failed = platform.components.remove(i);
                if let Err(also) = platform.stop().await {
                    tracing::warn!(error = %one_line(&also), "while stopping after a failed start");
                }
                drop(failed);
                return Err(e);
            }
        }
        Ok(platform)
    }

    /// The client side of the platform's cluster token: a channel it wraps may call the
    /// resource manager, the scheduler and the nodes.
    pub fn cluster_auth(&self) -> faas_common::token::ClusterAuth {
        faas_common::token::ClusterAuth::new(self.cluster_token.as_ref())
    }

    /// The admin key of the API server (`DATA_DIR/keys` with a data directory, or its
    /// `--api-key`); `None` when it has none (without a data directory: open on loopback).
    pub fn api_key(&self) -> Option<&str> {
        self.api_key.as_deref()
    }

    /// A client of the API server, with its admin key.
    pub async fn api(&self) -> anyhow::Result<crate::client::Api> {
        crate::client::connect_with_key(&self.apiserver.to_string(), self.api_key()).await
    }

    /// Waits until a component stops by itself (it failed while running) and says why, as
    /// one line naming it. That component is then gone from the platform; [`Self::stop`]
    /// stops the others. Never returns while every component runs.
    pub async fn failed(&mut self) -> anyhow::Error {
        if self.components.is_empty() {
            return std::future::pending().await;
        }
        let (outcome, i, _) =
            futures::future::select_all(self.components.iter_mut().map(|c| &mut c.task)).await;
        let failed = self.components.remove(i);
        ended(failed.name, "stopped", outcome)
    }

    /// Stops the scheduler as a crash would and starts it again on its port with the same
    /// configuration (a restartable platform only; see the module documentation). Returns
    /// once the new one answers its health check; it adopts the reserved nodes and their
    /// containers as it starts. After an error the scheduler is gone from the platform.
    pub async fn restart_scheduler(&mut self) -> anyhow::Result<()> {
        self.restart(SCHEDULER).await
    }

    /// [`Self::restart_scheduler`] for the API server (functions deployed at run time
    /// survive only with a data directory).
    pub async fn restart_apiserver(&mut self) -> anyhow::Result<()> {
        self.restart(APISERVER).await
    }

    /// [`Self::restart_scheduler`] for the resource manager: its nodes keep running, and a
    /// resource manager with a `--state-dir` takes them back.
    pub async fn restart_resource_manager(&mut self) -> anyhow::Result<()> {
        self.restart(RESOURCE_MANAGER).await
    }

    async fn restart(&mut self, name: &'static str) -> anyhow::Result<()> {
        let i = self
            .components
            .iter()
            .position(|c| c.name == name)
            .with_context(|| format!("cannot restart the {name}: it is not running"))?;
        let addr = self.components[i].addr;
        let spec = match self.components.remove(i).crash().await {
            Ok(spec) => spec,
            Err(running) => {
                self.components.insert(i, running);
                anyhow::bail!(
                    "cannot restart the {name}: the platform was not started restartable"
                );
            }
        };
        let listener = rebind(name, addr).await?;
        let mut component = spec.launch(listener, true)?;
        component.ready().await?;
        self.components.insert(i, component);
        Ok(())
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

#[cfg(test)]
#[path = "platform_tests.rs"]
mod tests;
