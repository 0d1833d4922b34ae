//! The node service's configuration: every flag with its environment variable and default
//! ([`Config`]), and [`Config::local`], the same defaults for tests and embedding.

use std::path::PathBuf;

/// How containers are run.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuntimeKind {
    /// Each container is a child process of the `container-service` binary.
    Process,
    /// Each container is a Docker container of the container-service image (bollard).
    Docker,
}

/// The default warm pool size, for both runtimes: two covers a pair of creates arriving
/// together (a burst's first two cold starts) while the refill catches up, at the cost of two
/// idle containers per node (refill times: `docs/EXPERIMENTS.md`).
pub const DEFAULT_WARM_POOL: usize = 2;

/// The default over-commit factor: a node takes containers whose memory limits add up to
/// twice its memory (what the `adaptive` scheduler packs at most, since containers use less
/// than their limits), and refuses more with RESOURCE_EXHAUSTED.
pub const DEFAULT_MAX_OVERCOMMIT: f64 = 2.0;

/// Configuration of one node service.
#[derive(clap::Args, Clone, Debug)]
pub struct Config {
    /// Address to listen on.
    #[arg(long, env = "FAAS_HOST", default_value = "127.0.0.1")]
    pub host: String,
    /// Port to listen on (0 picks a free one; the readiness line tells which).
    #[arg(long, env = "NODE_SERVICE_PORT", default_value_t = 0)]
    pub port: u16,
    /// The node's id (default: a new uuid).
    #[arg(long, env = "NODE_ID")]
    pub node_id: Option<String>,
    /// The machine the node runs on, as `faas nodes` shows it (default: this host's name).
    /// The resource manager sets it: the Docker daemon's name under the `docker` provider,
    /// the Swarm machine's hostname (`{{.Node.Hostname}}`) under `swarm`.
    #[arg(long, env = "FAAS_MACHINE")]
    pub machine: Option<String>,
    /// Remove the function containers this node (`--node-id`, `--docker-instance`) left on
    /// this machine's Docker, then exit (Docker runtime). The resource manager runs this as
    /// a Swarm job on the machine of a node that died without cleaning up.
    #[arg(long, env = "NODE_SWEEP", requires = "node_id")]
    pub sweep: bool,
    /// The node's memory in bytes, as reported in GetStats (default 3 GiB, the contest's).
    #[arg(long, env = "NODE_MEMORY_BYTES", default_value_t = faas_common::units::CONTEST_NODE_BYTES)]
    pub memory_bytes: u64,
    /// The most container memory (the sum of the containers' memory limits) the node takes,
    /// as a multiple of its memory (at least 1.0); a create beyond it is refused with
    /// RESOURCE_EXHAUSTED.
    #[arg(long, env = "NODE_MAX_OVERCOMMIT", default_value_t = DEFAULT_MAX_OVERCOMMIT)]
    pub max_overcommit: f64,
    /// How containers are run.
    #[arg(long, env = "FAAS_RUNTIME", value_enum, default_value_t = RuntimeKind::Process)]
    pub runtime: RuntimeKind,
    /// How long a new container may take to listen and answer.
    #[arg(
        long,
        env = "FAAS_CONTAINER_READY_TIMEOUT_MS",
        default_value_t = 10_000
    )]
    pub container_ready_timeout_ms: u64,
    /// The container-service binary for the process runtime (default: found beside this one).
    #[arg(long, env = "FAAS_CONTAINER_SERVICE_BIN")]
    pub container_service_bin: Option<PathBuf>,
    /// Where the bundles of functions made of the users' own code are (the API server's
    /// DATA_DIR/bundles; must exist). Unset: a create of a `bundle:<sha256>` handler is
    /// refused with FAILED_PRECONDITION.
    #[arg(long, env = "FAAS_BUNDLES_DIR")]
    pub bundles_dir: Option<PathBuf>,
    /// Containers kept started but bound to no function, so that a CreateContainer binds
    /// one instead of starting one (0 = off). Not containers of the contest protocol.
    #[arg(long, env = "FAAS_WARM_POOL", default_value_t = DEFAULT_WARM_POOL)]
    pub warm_pool: usize,
    /// Port of the Prometheus endpoint (0 or unset = off).
    #[arg(long, env = "NODE_METRICS_PORT")]
    pub metrics_port: Option<u16>,
    /// Stop by itself (containers stopped, as on SIGTERM) after this many ms without any
    /// gRPC call (NodeService, NodeAdmin or health) and no call under way; 0 = never. For
    /// nodes started detached: a live platform's health probes and GetStats polls keep them.
    #[arg(long, env = "NODE_ORPHAN_TIMEOUT_MS", default_value_t = 0)]
    pub orphan_timeout_ms: u64,
    /// Process runtime: cap each container's memory with a memory cgroup of its own (limit =
    /// its memory, no swap), so the kernel stops it at its limit. `auto`: where the host lets
    /// the node write one (said once at start); `off`: never (memory is only measured).
    #[arg(long, env = "FAAS_MEMORY_CGROUP", value_enum, default_value_t = crate::api::cgroup::Mode::Auto)]
    pub memory_cgroup: crate::api::cgroup::Mode,
    /// Process runtime: the user each container runs as when the node runs as root (a name,
    /// or `UID[:GID]`; `nobody` is 65534 where the system has no such user), with its groups
    /// dropped and no_new_privs; `root` or `off` runs them as the node's user.
    #[arg(long, env = "FAAS_CONTAINER_USER", default_value = crate::api::isolation::DEFAULT_USER)]
    pub container_user: String,
    /// Process runtime: the most processes and threads each container may have (its pids
    /// cgroup, made beside its memory cgroup where the host lets the node; 0 = no limit).
    #[arg(long, env = "FAAS_CONTAINER_PIDS_MAX", default_value_t = 256)]
    pub container_pids_max: u64,
    /// Docker runtime: the container-service image.
    #[arg(
        long,
        env = "FAAS_DOCKER_IMAGE",
        default_value = "minifaas/container-service:latest"
    )]
    pub docker_image: String,
    /// Docker runtime: the bridge network containers join (created if missing).
    #[arg(long, env = "FAAS_DOCKER_NETWORK", default_value = "minifaas")]
    pub docker_network: String,
    /// Docker runtime: the platform instance its containers are labelled with.
    #[arg(long, env = "FAAS_DOCKER_INSTANCE", default_value = "minifaas")]
    pub docker_instance: String,
    /// Docker runtime: vCPU per GiB of a container's memory (its CPU quota).
    #[arg(long, env = "FAAS_DOCKER_CPUS_PER_GIB", default_value_t = 0.67)]
    pub docker_cpus_per_gib: f64,
    /// Docker runtime: the pids limit of each container.
    #[arg(long, env = "FAAS_DOCKER_PIDS_LIMIT", default_value_t = 256)]
    pub docker_pids_limit: i64,
    /// Docker runtime: `uid:gid` containers run as (must not be root).
    #[arg(long, env = "FAAS_DOCKER_USER", default_value = "65534:65534")]
    pub docker_user: String,
    /// Docker runtime: the port the container service listens on inside its container.
    #[arg(long, env = "FAAS_DOCKER_CONTAINER_PORT", default_value_t = 9000)]
    pub docker_container_port: u16,
    /// Docker runtime: the statically linked container-service binary, as a path on the
    /// Docker host, mounted read-only into the containers of image functions as their
    /// entrypoint (deploy/build-images.sh builds it as
    /// target-static/x86_64-unknown-linux-gnu/release/container-service). Default: a
    /// `container-service` beside this binary, if there is one; without either, image
    /// functions are refused.
    #[arg(long, env = "FAAS_DOCKER_WATCHDOG_BIN")]
    pub docker_watchdog_bin: Option<PathBuf>,
    /// The cluster token: required of every `NodeService` and `NodeAdmin` caller (health
    /// stays open; see `faas_common::token`).
    #[command(flatten)]
    pub cluster: faas_common::token::TokenArgs,
    /// Log lines: `--log-format text|json` (see `faas_common::logging`).
    #[command(flatten)]
    pub log: faas_common::logging::LogArgs,
}

impl Config {
    /// Defaults for tests and embedding: clap's own defaults (127.0.0.1:0, the process
    /// runtime, 3 GiB, ...), as a command line of just the program name gives them, without
    /// reading the environment.
    pub fn local() -> Config {
        use clap::{Args, FromArgMatches};
        let command =
            Config::augment_args(clap::Command::new("node-service")).mut_args(|arg| arg.env(None));
        let matches = command
            .try_get_matches_from(["node-service"])
            .expect("every flag of the node service has a default or is optional");
        Config::from_arg_matches(&matches).expect("the defaults make a configuration")
    }

    /// The machine the node says it runs on: `--machine`, else this host's name (the
    /// kernel's, `/proc/sys/kernel/hostname`), else `unknown`.
    pub fn machine(&self) -> String {
        self.machine
            .clone()
            .filter(|m| !m.trim().is_empty())
            .or_else(|| {
                std::fs::read_to_string("/proc/sys/kernel/hostname")
                    .ok()
                    .map(|h| h.trim().to_string())
                    .filter(|h| !h.is_empty())
            })
            .unwrap_or_else(|| "unknown".to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_is_the_command_lines_defaults() {
        let c = Config::local();
        assert_eq!((c.host.as_str(), c.port), ("127.0.0.1", 0));
        assert_eq!(c.memory_bytes, faas_common::units::CONTEST_NODE_BYTES);
        assert_eq!(c.runtime, RuntimeKind::Process);
        assert_eq!(c.warm_pool, DEFAULT_WARM_POOL);
        assert_eq!(c.max_overcommit, DEFAULT_MAX_OVERCOMMIT);
        assert_eq!(c.memory_cgroup, crate::api::cgroup::Mode::Auto);
        assert_eq!(c.container_user, crate::api::isolation::DEFAULT_USER);
        assert_eq!(
            (c.node_id, c.metrics_port, c.bundles_dir),
            (None, None, None)
        );
        assert_eq!(c.docker_image, "minifaas/container-service:latest");
        assert!(!c.sweep);
    }

    #[test]
    fn the_machine_is_the_flag_else_this_hosts_name() {
        let mut c = Config::local();
        let host = c.machine();
        assert!(!host.is_empty() && host != "unknown", "{host:?}");
        c.machine = Some("rack-7".into());
        assert_eq!(c.machine(), "rack-7");
        c.machine = Some("  ".into());
        assert_eq!(c.machine(), host);
    }
}
