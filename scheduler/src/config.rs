//! The scheduler's settings: the command's flags (each also read from an environment
//! variable) and [`Config::local`], the same defaults for tests and embedding.

use clap::{CommandFactory, FromArgMatches};

/// The scheduler's settings. Every flag also reads an environment variable.
#[derive(clap::Args, Clone, Debug)]
pub struct Config {
    /// Address to listen on.
    #[arg(long, env = "FAAS_HOST", default_value = "127.0.0.1")]
    pub host: String,
    /// Port to listen on (the contest's `SERVICE_PORT`).
    #[arg(long, env = "SERVICE_PORT", default_value_t = 10600)]
    pub port: u16,
    /// The resource manager, `host:port`.
    #[arg(
        long,
        env = "RESOURCE_MANAGER_ENDPOINT",
        default_value = "127.0.0.1:10400"
    )]
    pub resource_manager: String,
    /// The scheduling policy (see `core::POLICY_NAMES`).
    #[arg(long, env = "SCHEDULER_POLICY", default_value = crate::policies::DEFAULT_POLICY)]
    pub policy: String,
    /// How often every node's `GetStats` is polled, ms (0 = never).
    #[arg(long, env = "SCHEDULER_STATS_INTERVAL_MS", default_value_t = 1000)]
    pub stats_interval_ms: u64,
    /// Port of the Prometheus `/metrics` endpoint (0 or unset = off).
    #[arg(long, env = "SCHEDULER_METRICS_PORT")]
    pub metrics_port: Option<u16>,
    /// How long an acquire waits when its caller sent no deadline, ms.
    #[arg(long, env = "SCHEDULER_ACQUIRE_TIMEOUT_MS", default_value_t = 30_000)]
    pub acquire_timeout_ms: u64,
    /// Memory a node is assumed to offer until one reports it, bytes (contest: 3072 MiB).
    #[arg(long, env = "SCHEDULER_NODE_MEMORY_BYTES", default_value_t = crate::model::CONTEST_NODE_BYTES)]
    pub node_memory_bytes: u64,
    /// How long one `GetStats` poll may take before the node counts as not answering, ms.
    #[arg(long, env = "SCHEDULER_PROBE_TIMEOUT_MS", default_value_t = crate::service::PROBE_TIMEOUT_MS, value_parser = clap::value_parser!(u64).range(1..))]
    pub probe_timeout_ms: u64,
    /// A node that fails every observation this long is lost: its containers are forgotten,
    /// its waiting requests placed elsewhere, and it is released, ms.
    #[arg(long, env = "SCHEDULER_NODE_LOST_AFTER_MS", default_value_t = crate::core::NODE_LOST_AFTER_MS, value_parser = clap::value_parser!(u64).range(1..))]
    pub node_lost_after_ms: u64,
    /// A lease held this long past its function's timeout (a caller that never returned) is
    /// reclaimed, ms.
    #[arg(long, env = "SCHEDULER_LEASE_GRACE_MS", default_value_t = crate::core::LEASE_GRACE_MS)]
    pub lease_grace_ms: u64,
    /// How often the nodes reserved at the resource manager are reconciled with the ones the
    /// scheduler holds (a restarted scheduler adopts them at start), ms; 0 = never.
    #[arg(long, env = "SCHEDULER_RECONCILE_INTERVAL_MS", default_value_t = crate::service::RECONCILE_INTERVAL_MS)]
    pub reconcile_interval_ms: u64,
    /// How many recent decisions (with the policy's reasons) the scheduler keeps for
    /// `faas.decisions.v1.Decisions` (the dashboard, `faas events`); 0 = none, and the policy
    /// builds no reasons.
    #[arg(long, env = "SCHEDULER_DECISIONS_KEPT", default_value_t = crate::service::decisions::DECISIONS_KEPT)]
    pub decisions_kept: usize,
    /// The cluster token: required of every caller of `Scheduler` and `SchedulerAdmin`, and
    /// sent to the resource manager and the nodes (see `faas_common::token`).
    #[command(flatten)]
    pub cluster: faas_common::token::TokenArgs,
    /// Log lines: `--log-format text|json` (see `faas_common::logging`).
    #[command(flatten)]
    pub log: faas_common::logging::LogArgs,
}

impl Config {
    /// The command's own defaults (no flags, no environment read), listening on
    /// `127.0.0.1:0` and reaching the resource manager at `resource_manager` (for tests and
    /// embedding). The policy is the command's default, [`crate::policies::DEFAULT_POLICY`].
    pub fn local(resource_manager: impl Into<String>) -> Config {
        let matches = Defaults::command()
            .mut_args(|arg| arg.env(None))
            .try_get_matches_from(["scheduler"])
            .expect("every flag of the scheduler has a default or is optional");
        let mut config = Defaults::from_arg_matches(&matches)
            .expect("the defaults convert to a Config")
            .config;
        config.port = 0;
        config.resource_manager = resource_manager.into();
        config
    }
}

/// The flags alone, to read their defaults.
#[derive(clap::Parser)]
struct Defaults {
    #[command(flatten)]
    config: Config,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_uses_the_command_defaults() {
        let local = Config::local("127.0.0.1:1");
        assert_eq!(local.policy, crate::policies::DEFAULT_POLICY);
        assert_eq!((local.host.as_str(), local.port), ("127.0.0.1", 0));
        assert_eq!(local.resource_manager, "127.0.0.1:1");
        assert_eq!(local.node_memory_bytes, crate::model::CONTEST_NODE_BYTES);
        assert_eq!(local.lease_grace_ms, crate::core::LEASE_GRACE_MS);
        assert_eq!(local.metrics_port, None);
    }
}
