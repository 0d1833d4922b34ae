//! The resource manager's configuration: every flag also reads an environment variable.
//!
//! Besides its own rules, it says what every node it starts gets: how it runs containers,
//! its warm pool, and where the users' own code is ([`NodeCode`]: the bundles directory the
//! API server writes, and the watchdog binary image functions run).

use std::path::PathBuf;
use std::time::Duration;

use faas_common::token::{self, ClusterToken, TokenArgs};
use faas_common::units::{CONTEST_NODE_MIB, MIB};

use crate::core::PoolRules;
use crate::error::Error;
use crate::model::NodeEndpoint;

/// Where nodes come from.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProviderKind {
    /// Start a node-service child process per node on this machine.
    Local,
    /// Hand out a fixed list of node-service addresses (`--static-nodes`); nothing is started.
    Static,
    /// Start a node-service container per node through the Docker socket; nodes run their
    /// functions in sibling containers (the node service's `docker` runtime).
    Docker,
    /// Start a Docker Swarm service of one node-service task per node: Swarm places each
    /// on a machine with the node's memory free; the `--docker-*` flags say how (the
    /// network must be an attachable overlay network the manager is on too).
    Swarm,
}

/// Configuration of the resource manager.
#[derive(clap::Args, Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Address to listen on.
    #[arg(long, env = "FAAS_HOST", default_value = "127.0.0.1")]
    pub host: String,
    /// gRPC port (0 picks a free one).
    #[arg(long, env = "RESOURCE_MANAGER_PORT", default_value_t = 10400)]
    pub port: u16,
    /// Live nodes at most (starting + ready + reserved).
    #[arg(long, env = "RESOURCE_MANAGER_MAX_NODES", default_value_t = 20)]
    pub max_nodes: usize,
    /// Nodes started and ready when the manager starts.
    #[arg(long, env = "RESOURCE_MANAGER_READY_NODES", default_value_t = 10)]
    pub ready_nodes: usize,
    /// After each reserve one node is added to the pool after this delay; a released node's
    /// slot is reusable after it too.
    #[arg(
        long,
        env = "RESOURCE_MANAGER_REFILL_DELAY_MS",
        default_value_t = 10_000
    )]
    pub refill_delay_ms: u64,
    /// Memory each node offers to containers, in MiB.
    #[arg(long, env = "RESOURCE_MANAGER_NODE_MEMORY_MIB", default_value_t = CONTEST_NODE_MIB)]
    pub node_memory_mib: u64,
    /// Where nodes come from.
    #[arg(long, env = "RESOURCE_MANAGER_PROVIDER", value_enum, default_value_t = ProviderKind::Local)]
    pub provider: ProviderKind,
    /// Node-service addresses for `--provider static`, comma separated (host:port,...).
    #[arg(long, env = "RESOURCE_MANAGER_STATIC_NODES", value_delimiter = ',')]
    pub static_nodes: Vec<String>,
    /// The node-service binary for `--provider local` (default: found beside this binary).
    #[arg(long, env = "FAAS_NODE_SERVICE_BIN")]
    pub node_service_bin: Option<PathBuf>,
    /// `--runtime` passed to each local node service (how it runs containers).
    #[arg(long, env = "RESOURCE_MANAGER_NODE_RUNTIME", default_value = "process")]
    pub node_runtime: String,
    /// `--warm-pool` of each node service it starts (local and docker providers): unbound
    /// containers a node keeps ready for CreateContainer. Unset: the node service's default.
    #[arg(long, env = "RESOURCE_MANAGER_NODE_WARM_POOL")]
    pub node_warm_pool: Option<u32>,
    /// `--bundles-dir` of each node service it starts (local and docker providers): where
    /// the bundles of functions made of the users' own code are, the API server's
    /// DATA_DIR/bundles; it must exist. The docker provider mounts it read-only into each
    /// node container at the same path. Unset: nodes refuse bundle functions.
    #[arg(long, env = "RESOURCE_MANAGER_NODE_BUNDLES_DIR")]
    pub node_bundles_dir: Option<PathBuf>,
    /// `--docker-watchdog-bin` of each node service it starts: the static container-service
    /// binary, a path on the Docker host, that nodes on the docker runtime mount into the
    /// containers of image functions. Unset: the node's default.
    #[arg(long, env = "RESOURCE_MANAGER_NODE_DOCKER_WATCHDOG_BIN")]
    pub node_docker_watchdog_bin: Option<PathBuf>,
    /// Node ids are PREFIX-1, PREFIX-2, ...
    #[arg(long, env = "RESOURCE_MANAGER_NODE_ID_PREFIX", default_value = "node")]
    pub node_id_prefix: String,
    /// How long a node may take to start before it counts as failed.
    #[arg(
        long,
        env = "RESOURCE_MANAGER_NODE_START_TIMEOUT_MS",
        default_value_t = 30_000
    )]
    pub node_start_timeout_ms: u64,
    /// How long a stopping node may take to stop its containers before it is killed.
    #[arg(
        long,
        env = "RESOURCE_MANAGER_NODE_STOP_GRACE_MS",
        default_value_t = 5_000
    )]
    pub node_stop_grace_ms: u64,
    /// How often every ready and reserved node's `grpc.health.v1` is probed (0: never; exits
    /// of node processes and containers are still noticed).
    #[arg(
        long,
        env = "RESOURCE_MANAGER_NODE_PROBE_INTERVAL_MS",
        default_value_t = 1_000
    )]
    pub node_probe_interval_ms: u64,
    /// How long a node may take to answer one probe before the probe counts as missed.
    #[arg(
        long,
        env = "RESOURCE_MANAGER_NODE_PROBE_TIMEOUT_MS",
        default_value_t = 1_000
    )]
    pub node_probe_timeout_ms: u64,
    /// A node that answered no probe for this long (and missed at least two) is marked
    /// failed, killed and replaced.
    #[arg(
        long,
        env = "RESOURCE_MANAGER_NODE_FAILED_AFTER_MS",
        default_value_t = 3_000
    )]
    pub node_failed_after_ms: u64,
    /// Deadline of the manager's own calls to a node service (`Reserve`).
    #[arg(
        long,
        env = "RESOURCE_MANAGER_NODE_CALL_TIMEOUT_MS",
        default_value_t = 5_000
    )]
    pub node_call_timeout_ms: u64,
    /// Port of the Prometheus `/metrics` endpoint (0 or unset: off).
    #[arg(long, env = "RESOURCE_MANAGER_METRICS_PORT")]
    pub metrics_port: Option<u16>,
    /// `--provider local`: every node serves Prometheus metrics on a port of its own, the
    /// lowest free one from this port up (node 1 this port, node 2 the next, ...; a port in
    /// use is skipped). 0: off. Unset: NODE_METRICS_PORT, if this process has it, is the
    /// base (nodes never inherit it: they cannot all bind one port); else off.
    #[arg(long, env = "RESOURCE_MANAGER_NODE_METRICS_PORT_BASE")]
    pub node_metrics_port_base: Option<u16>,
    /// Directory of the state file (created if missing). Set: nodes outlive the manager and
    /// a restarted manager takes them back with their ids, addresses and reservations; a
    /// clean stop still stops them all. Unset: nothing is saved, and nodes die with the
    /// manager.
    #[arg(long, env = "RESOURCE_MANAGER_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// With --state-dir: a node service nobody calls for this long exits by itself (its
    /// `--orphan-timeout-ms`), so the nodes of a manager that never comes back clean up
    /// after themselves. The health probes are calls: it must exceed
    /// --node-probe-interval-ms. 0: nodes wait forever.
    #[arg(
        long,
        env = "RESOURCE_MANAGER_NODE_ORPHAN_TIMEOUT_MS",
        default_value_t = 60_000
    )]
    pub node_orphan_timeout_ms: u64,
    /// `--provider docker`: the node-service image.
    #[arg(
        long,
        env = "RESOURCE_MANAGER_DOCKER_NODE_IMAGE",
        default_value = "minifaas/node-service:latest"
    )]
    pub docker_node_image: String,
    /// `--provider docker`: the container-service image nodes run functions in.
    #[arg(
        long,
        env = "RESOURCE_MANAGER_DOCKER_CONTAINER_IMAGE",
        default_value = "minifaas/container-service:latest"
    )]
    pub docker_container_image: String,
    /// `--provider docker`: the bridge network of nodes and functions (created if missing).
    #[arg(
        long,
        env = "RESOURCE_MANAGER_DOCKER_NETWORK",
        default_value = "minifaas"
    )]
    pub docker_network: String,
    /// `--provider docker`: the instance label of every container; containers of this
    /// instance left by an earlier run are removed at start.
    #[arg(
        long,
        env = "RESOURCE_MANAGER_DOCKER_INSTANCE",
        default_value = "minifaas"
    )]
    pub docker_instance: String,
    /// `--provider docker`: the Docker socket on the host, mounted into each node.
    #[arg(
        long,
        env = "RESOURCE_MANAGER_DOCKER_SOCKET",
        default_value = "/var/run/docker.sock"
    )]
    pub docker_socket: String,
    /// `--provider docker`: vCPU per GiB of a function's memory (its container's CPU quota).
    #[arg(
        long,
        env = "RESOURCE_MANAGER_DOCKER_CPUS_PER_GIB",
        default_value = "0.67"
    )]
    pub docker_cpus_per_gib: String,
    /// `--provider swarm`: a node whose task Swarm has not placed on a machine within this
    /// long failed to start (no machine has its memory free); its service is removed.
    #[arg(
        long,
        env = "RESOURCE_MANAGER_SWARM_PLACEMENT_TIMEOUT_MS",
        default_value_t = 10_000
    )]
    pub swarm_placement_timeout_ms: u64,
    /// `--provider swarm`: the stack the manager runs in (`docker stack deploy ... NAME`):
    /// node services carry its namespace label, so `docker stack rm NAME` removes them with
    /// the stack, and `docker stack ps NAME` lists them. Unset: no stack label.
    #[arg(long, env = "RESOURCE_MANAGER_SWARM_STACK")]
    pub swarm_stack: Option<String>,
    /// The cluster token: required of every caller, sent on the calls to nodes, and handed
    /// to every node it starts (see `faas_common::token`).
    #[command(flatten)]
    pub cluster: TokenArgs,
    /// Log lines: `--log-format text|json` (see `faas_common::logging`).
    #[command(flatten)]
    pub log: faas_common::logging::LogArgs,
}

impl Config {
    /// The defaults, exactly as clap makes them from the flags' `default_value`s (the
    /// command line of just the program name, with no environment variable read), so they
    /// cannot drift from what `--help` says.
    pub fn local() -> Config {
        use clap::{Args, FromArgMatches};
        let command = Config::augment_args(clap::Command::new("resource-manager"))
            .mut_args(|arg| arg.env(None::<&str>));
        let matches = command
            .try_get_matches_from(["resource-manager"])
            .expect("every flag of Config has a default or is optional");
        Config::from_arg_matches(&matches).expect("the defaults make a Config")
    }
}

impl Default for Config {
    /// [`Config::local`].
    fn default() -> Config {
        Config::local()
    }
}

/// The node service's own metrics port variable: one node's setting, never handed to the
/// local nodes (see [`Config::node_metrics_port_base`]).
pub const NODE_METRICS_PORT_ENV: &str = "NODE_METRICS_PORT";

/// What every node needs to run the users' own code, passed to each node the manager
/// starts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeCode {
    /// `--bundles-dir`, absolute.
    pub bundles_dir: Option<PathBuf>,
    /// `--docker-watchdog-bin`.
    pub watchdog_bin: Option<PathBuf>,
    /// The cluster token, handed over in the node's environment (`FAAS_CLUSTER_TOKEN`),
    /// never on its command line.
    pub cluster_token: Option<ClusterToken>,
}

impl NodeCode {
    /// The node-service flags that say it.
    pub fn args(&self) -> Vec<String> {
        let mut args = Vec::new();
        if let Some(dir) = &self.bundles_dir {
            args.extend(["--bundles-dir".to_string(), dir.display().to_string()]);
        }
        if let Some(bin) = &self.watchdog_bin {
            args.extend([
                "--docker-watchdog-bin".to_string(),
                bin.display().to_string(),
            ]);
        }
        args
    }

    /// The node-service environment variables that say it (the token, when there is one).
    pub fn env(&self) -> Vec<(String, String)> {
        self.cluster_token
            .iter()
            .map(|t| (token::ENV.to_string(), t.expose().to_string()))
            .collect()
    }
}

impl Config {
    /// What the nodes get to run the users' own code, checked: `--node-bundles-dir` must be
    /// a directory (made absolute: the docker provider mounts it at the same path).
    pub fn node_code(&self) -> Result<NodeCode, Error> {
        let bundles_dir = match &self.node_bundles_dir {
            None => None,
            Some(dir) => {
                let dir = std::path::absolute(dir).map_err(|e| {
                    Error::Config(format!("--node-bundles-dir {}: {e}", dir.display()))
                })?;
                if !dir.is_dir() {
                    return Err(Error::Config(format!(
                        "--node-bundles-dir {} is not a directory (it should be the API \
                         server's DATA_DIR/bundles)",
                        dir.display()
                    )));
                }
                Some(dir)
            }
        };
        Ok(NodeCode {
            bundles_dir,
            watchdog_bin: self.node_docker_watchdog_bin.clone(),
            cluster_token: self.cluster.token().cloned(),
        })
    }

    /// The first metrics port of the local nodes: `--node-metrics-port-base`, else
    /// `inherited` (this process's `NODE_METRICS_PORT`, which all nodes would otherwise
    /// inherit and fight over); `None` (off) for 0 or neither. A bad inherited value is
    /// refused, naming the variable.
    pub fn node_metrics_port_base(&self, inherited: Option<&str>) -> Result<Option<u16>, Error> {
        let base = match (self.node_metrics_port_base, inherited) {
            (Some(base), _) => base,
            (None, None) => return Ok(None),
            (None, Some(text)) => text.trim().parse().map_err(|_| {
                Error::Config(format!(
                    "{NODE_METRICS_PORT_ENV}={text:?} is not a port (the local nodes' metrics \
                     ports start there; or set --node-metrics-port-base)"
                ))
            })?,
        };
        if base != 0 && self.node_metrics_port_base.is_none() {
            tracing::info!(
                "{NODE_METRICS_PORT_ENV}={base}: each local node serves its metrics on its own \
                 port, the lowest free one from {base}"
            );
        }
        Ok((base != 0).then_some(base))
    }

    /// The pool rules this configuration sets, checked.
    pub fn pool_rules(&self) -> Result<PoolRules, Error> {
        let invalid = |m: String| Err(Error::Config(m));
        if self.max_nodes == 0 {
            return invalid("--max-nodes must be at least 1".into());
        }
        if self.ready_nodes > self.max_nodes {
            return invalid(format!(
                "--ready-nodes {} exceeds --max-nodes {}",
                self.ready_nodes, self.max_nodes
            ));
        }
        if self.node_memory_mib == 0 {
            return invalid("--node-memory-mib must be at least 1".into());
        }
        if self.node_id_prefix.is_empty() {
            return invalid("--node-id-prefix cannot be empty".into());
        }
        let Ok(refill_delay_ms) = i64::try_from(self.refill_delay_ms) else {
            return invalid(format!(
                "--refill-delay-ms {} is too large",
                self.refill_delay_ms
            ));
        };
        let Ok(failed_after_ms) = i64::try_from(self.node_failed_after_ms) else {
            return invalid(format!(
                "--node-failed-after-ms {} is too large",
                self.node_failed_after_ms
            ));
        };
        if self.node_probe_interval_ms > 0 && self.node_probe_timeout_ms == 0 {
            return invalid("--node-probe-timeout-ms must be at least 1".into());
        }
        let Some(node_memory_bytes) = self.node_memory_mib.checked_mul(MIB) else {
            return invalid(format!(
                "--node-memory-mib {} is too large",
                self.node_memory_mib
            ));
        };
        Ok(PoolRules {
            max_nodes: self.max_nodes,
            ready_nodes: self.ready_nodes,
            refill_delay_ms,
            node_memory_bytes,
            node_id_prefix: self.node_id_prefix.clone(),
            failed_after_ms,
            ..PoolRules::default()
        })
    }

    /// The `--orphan-timeout-ms` to give each node, checked: `None` without a state
    /// directory (nodes die with the manager) or when set to 0.
    pub fn node_orphan_timeout(&self) -> Result<Option<Duration>, Error> {
        let ms = self.node_orphan_timeout_ms;
        if self.state_dir.is_none() || ms == 0 {
            return Ok(None);
        }
        if self.node_probe_interval_ms == 0 {
            return Err(Error::Config(format!(
                "--node-orphan-timeout-ms {ms} needs the health probes that keep nodes alive: set --node-probe-interval-ms, or --node-orphan-timeout-ms 0"
            )));
        }
        let least = self.node_probe_interval_ms.saturating_mul(2);
        if ms <= least {
            return Err(Error::Config(format!(
                "--node-orphan-timeout-ms {ms} must exceed twice --node-probe-interval-ms ({least} ms): a node must outlast a missed probe"
            )));
        }
        Ok(Some(Duration::from_millis(ms)))
    }

    /// The `--docker-cpus-per-gib` value, checked (> 0).
    pub fn docker_cpus_per_gib(&self) -> Result<f64, Error> {
        match self.docker_cpus_per_gib.trim().parse::<f64>() {
            Ok(v) if v > 0.0 && v.is_finite() => Ok(v),
            _ => Err(Error::Config(format!(
                "--docker-cpus-per-gib must be a number > 0, got {:?}",
                self.docker_cpus_per_gib
            ))),
        }
    }

    /// The `--static-nodes` list, parsed and checked.
    pub fn static_endpoints(&self) -> Result<Vec<NodeEndpoint>, Error> {
        let list: Vec<&str> = self
            .static_nodes
            .iter()
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
            .collect();
        if list.is_empty() {
            return Err(Error::Config(
                "--provider static needs --static-nodes host:port[,host:port...]".into(),
            ));
        }
        list.into_iter().map(parse_endpoint).collect()
    }
}

/// Parses `host:port` (`[v6]:port` too).
fn parse_endpoint(s: &str) -> Result<NodeEndpoint, Error> {
    let bad = || Error::Config(format!("bad node address {s:?}: expected host:port"));
    let (host, port) = s.rsplit_once(':').ok_or_else(bad)?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port: u16 = port.parse().map_err(|_| bad())?;
    if host.is_empty() || port == 0 {
        return Err(bad());
    }
    Ok(NodeEndpoint {
        address: host.to_string(),
        port,
    })
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
