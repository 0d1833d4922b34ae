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
//! without one it keeps them in memory only.
//!
//! Starting fails fast on bad configuration: every component's flags are parsed, the policy,
//! the functions file and the database checked, and every port bound before anything runs;
//! then each component must answer its health check, and one that stops instead fails the
//! start with its own message (the others are stopped again).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use faas_common::shutdown::{self, Trigger};
use tokio::task::{JoinError, JoinHandle};

use crate::errors::one_line;

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
    /// loses none; `None`: memory only (`FAAS_DATA_DIR` is not read here: `faas up` resolves
    /// its own default). Tests give a temporary directory.
    pub data_dir: Option<PathBuf>,
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
            provider: "local".to_string(),
            node_runtime: "process".to_string(),
            docker_instance: None,
            node_warm_pool: None,
            scheduler_args: Vec::new(),
            resource_manager_args: Vec::new(),
        }
    }
}

/// One running component: its address, its shutdown trigger and its task.
struct Component {
    name: &'static str,
    addr: SocketAddr,
    trigger: Trigger,
    task: JoinHandle<anyhow::Result<()>>,
}

/// Why a component's task ended by itself, as one line that names the component.
fn ended(name: &str, how: &str, outcome: Result<anyhow::Result<()>, JoinError>) -> anyhow::Error {
    match outcome {
        Ok(Ok(())) => anyhow::anyhow!("{name} {how}: it stopped by itself"),
        Ok(Err(e)) => anyhow::anyhow!("{name} {how}: {}", one_line(&e)),
        Err(e) => anyhow::anyhow!("{name} {how}: it panicked: {e}"),
    }
}

/// Whether the gRPC server at `addr` answers its health check with SERVING.
async fn serving(addr: SocketAddr) -> bool {
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
    async fn stop(self) -> anyhow::Result<()> {
        self.trigger.trigger();
        match self.task.await {
            Ok(result) => result.with_context(|| format!("{} failed", self.name)),
            Err(e) => Err(anyhow::anyhow!("{} panicked: {e}", self.name)),
        }
    }

    /// Waits until the component answers its health check; fails with its own error if it
    /// stops first, or if it does not answer within [`READY_TIMEOUT`]. After an error the
    /// task has ended or been told to stop; do not wait on it again.
    async fn ready(&mut self) -> anyhow::Result<()> {
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
        rm_args.extend(opts.resource_manager_args.iter().cloned());
        let rm_config: faas_resource_manager::Config = config_from(RESOURCE_MANAGER, &rm_args)?;
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
        let scheduler_config = faas_scheduler::Config {
            resource_manager: resource_manager.to_string(),
            ..scheduler_config
        };
        let api_config = faas_apiserver::Config {
            scheduler: scheduler.to_string(),
            ..api_config
        };

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

        let mut platform = LocalPlatform {
            apiserver,
            scheduler,
            resource_manager,
            components: vec![
                Component {
                    name: APISERVER,
                    addr: apiserver,
                    trigger: api_trigger,
                    task: api_task,
                },
                Component {
                    name: SCHEDULER,
                    addr: scheduler,
                    trigger: scheduler_trigger,
                    task: scheduler_task,
                },
                Component {
                    name: RESOURCE_MANAGER,
                    addr: resource_manager,
                    trigger: rm_trigger,
                    task: rm_task,
                },
            ],
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
mod tests {
    use super::*;

    #[test]
    fn the_apiserver_accepts_exactly_the_handlers_the_container_service_runs() {
        // The API server refuses an unknown handler at deploy; the container service runs the
        // handler. They keep their own lists (a library dependency between the two would
        // install the container service's counting allocator in the API server), so the
        // platform checks that the lists agree.
        assert_eq!(
            faas_apiserver::Handler::names(),
            faas_container_service::handlers::HandlerKind::NAMES
        );
    }

    #[tokio::test]
    async fn a_component_that_stops_while_running_is_named_and_the_rest_stop() {
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        // Runs until told to stop, or fails at once with `fail`.
        let component = |name, fail: Option<&'static str>| {
            let (trigger, shutdown) = shutdown::channel();
            let task = tokio::spawn(async move {
                match fail {
                    Some(why) => Err(anyhow::anyhow!("{why}")),
                    None => {
                        shutdown.wait().await;
                        Ok(())
                    }
                }
            });
            Component {
                name,
                addr,
                trigger,
                task,
            }
        };
        let mut platform = LocalPlatform {
            apiserver: addr,
            scheduler: addr,
            resource_manager: addr,
            components: vec![
                component(APISERVER, None),
                component(SCHEDULER, Some("lost its resource manager")),
                component(RESOURCE_MANAGER, None),
            ],
        };
        let err = platform.failed().await;
        assert_eq!(
            err.to_string(),
            "scheduler stopped: lost its resource manager"
        );
        assert_eq!(platform.components.len(), 2);
        platform.stop().await.unwrap();
    }

    #[test]
    fn the_default_data_dir_follows_xdg_then_home() {
        let os = |s: &str| Some(std::ffi::OsString::from(s));
        assert_eq!(
            default_data_dir(os("/xdg"), os("/home/ada")),
            Some(PathBuf::from("/xdg/mini-faas"))
        );
        for xdg in [None, os(""), os("relative/data")] {
            assert_eq!(
                default_data_dir(xdg, os("/home/ada")),
                Some(PathBuf::from("/home/ada/.local/share/mini-faas"))
            );
        }
        assert_eq!(default_data_dir(None, None), None);
        assert_eq!(default_data_dir(None, os("not/absolute")), None);
    }

    #[test]
    fn extra_flags_win_and_bad_ones_name_the_component() {
        let config: faas_scheduler::Config = config_from(
            SCHEDULER,
            &strings(&["--policy", "baseline", "--policy", "czy"]),
        )
        .unwrap();
        assert_eq!(config.policy, "czy");
        let err = config_from::<faas_scheduler::Config>(SCHEDULER, &strings(&["--nope"]))
            .err()
            .unwrap()
            .to_string();
        assert_eq!(
            err,
            "scheduler: bad flags: unexpected argument '--nope' found"
        );
    }
}
