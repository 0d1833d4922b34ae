//! The command line of `faas`: every subcommand and its flags (clap). What each one does is
//! in `main.rs` and the `*_cmd*` modules.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use faas_apiserver::model::routing::{Weighted, parse_weights};
use faas_cli::exit;
use faas_cli::platform::PlatformOptions;

use crate::target::Target;
use crate::{
    async_cmds, cluster_cmds, dead_letters_cmd, invoke_cmd, logs_cmd, output, schedules_cmd,
};

#[derive(Parser)]
#[command(
    name = "faas",
    version,
    about = "A mini Function-as-a-Service platform speaking the 2020 mini-faas contest protocol",
    after_help = exit::HELP
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Args, Clone, Debug)]
pub(crate) struct PlatformArgs {
    /// Address the components listen on.
    #[arg(long, env = "FAAS_HOST", default_value = "127.0.0.1")]
    pub(crate) host: String,
    /// Scheduler policy.
    #[arg(
        long,
        env = "SCHEDULER_POLICY",
        default_value = faas_scheduler::policies::DEFAULT_POLICY,
        value_parser = faas_cli::bench::policy_name
    )]
    pub(crate) policy: String,
    /// Nodes ready at start (the contest: 10).
    #[arg(long, default_value_t = 10)]
    pub(crate) ready_nodes: u32,
    /// Nodes at most (the contest: 20).
    #[arg(long, default_value_t = 20)]
    pub(crate) max_nodes: u32,
    /// Delay before the node pool refills, ms.
    #[arg(long, default_value_t = 10_000)]
    pub(crate) refill_delay_ms: u64,
    /// Function definitions (TOML); the built-in default set when absent.
    #[arg(long, env = "FAAS_FUNCTIONS")]
    pub(crate) functions: Option<PathBuf>,
}

impl PlatformArgs {
    pub(crate) fn options(&self, ports: (u16, u16, u16)) -> PlatformOptions {
        PlatformOptions {
            host: self.host.clone(),
            apiserver_port: ports.0,
            scheduler_port: ports.1,
            resource_manager_port: ports.2,
            policy: self.policy.clone(),
            ready_nodes: self.ready_nodes,
            max_nodes: self.max_nodes,
            refill_delay_ms: self.refill_delay_ms,
            functions: self.functions.clone(),
            ..PlatformOptions::default()
        }
    }
}

#[derive(Subcommand)]
pub(crate) enum Command {
    /// Start all five components locally and run until Ctrl-C.
    Up {
        #[command(flatten)]
        platform: PlatformArgs,
        /// Where the API server keeps deployed functions (DATA_DIR/apiserver.db, SQLite), so
        /// a restart loses none. The first start stores --functions (or the built-in set);
        /// later starts serve what the database holds. [default: $XDG_DATA_HOME/mini-faas or
        /// ~/.local/share/mini-faas]
        #[arg(long, env = "FAAS_DATA_DIR")]
        data_dir: Option<PathBuf>,
        /// Start from a new database: delete the platform's database files in the data
        /// directory first (they are listed), then store --functions or the built-in set.
        #[arg(long)]
        fresh: bool,
        #[arg(long, env = "APISERVER_PORT", default_value_t = 10500)]
        apiserver_port: u16,
        #[arg(long, env = "SERVICE_PORT", default_value_t = 10600)]
        scheduler_port: u16,
        #[arg(long, env = "RESOURCE_MANAGER_PORT", default_value_t = 10400)]
        resource_manager_port: u16,
        /// Serve Prometheus metrics: API server on 10501, scheduler on 10601, resource
        /// manager on 10401, each node on its own port, the lowest free from 10700 up.
        #[arg(long)]
        metrics: bool,
        /// The API server's HTTP gateway port (0: off).
        #[arg(long, env = "APISERVER_HTTP_PORT", default_value_t = 10800)]
        http_port: u16,
        /// Where the API server keeps asynchronous calls: `sqlite` (the embedded database,
        /// in the data directory) or `nats://HOST:PORT` (NATS JetStream: `nats-server -js`).
        #[arg(long, env = "FAAS_QUEUE")]
        queue: Option<String>,
        /// Log lines of every component (nodes and containers too): text or json.
        #[command(flatten)]
        log: faas_common::logging::LogArgs,
    },
    /// Start the platform on free ports, send a mixed load over every default function,
    /// print a table per function and the node-seconds, then stop.
    Demo {
        #[command(flatten)]
        platform: PlatformArgs,
        /// How long to send load, in seconds.
        #[arg(long, default_value_t = 30)]
        seconds: u64,
    },
    /// Invoke a function and print its body (or, with --async, its invocation id).
    Invoke {
        #[command(flatten)]
        args: invoke_cmd::InvokeArgs,
        #[command(flatten)]
        target: Target,
    },
    /// The result of a call made with `faas invoke --async`: its body when it succeeded, its
    /// error (exit code by kind) when it failed, else queued or running.
    Result {
        #[command(flatten)]
        args: async_cmds::ResultArgs,
        #[command(flatten)]
        target: Target,
    },
    /// The asynchronous calls of a function that failed their last attempt (no capacity, a
    /// timeout, unavailable), with their last error.
    #[command(name = "dead-letters")]
    DeadLetters {
        /// The function.
        name: String,
        #[command(flatten)]
        output: output::OutputArgs,
        #[command(flatten)]
        target: Target,
    },
    /// Queue a function's dead letters again (the ids given, or every one), their attempts
    /// counted from zero.
    Redrive {
        /// The function.
        name: String,
        /// Dead letters to queue again (default: all of the function's).
        ids: Vec<String>,
        #[command(flatten)]
        target: Target,
    },
    /// Set how a function's asynchronous calls are retried (attempts, backoff bounds).
    Retry {
        #[command(flatten)]
        args: dead_letters_cmd::RetryArgs,
        #[command(flatten)]
        target: Target,
    },
    /// List timers: the cron schedules of a function (all when none is named), with their
    /// next fire time and last firing.
    Schedules {
        /// The function.
        function: Option<String>,
        #[command(flatten)]
        output: output::OutputArgs,
        #[command(flatten)]
        target: Target,
    },
    /// Add, delete, pause or resume a timer (a cron schedule with seconds).
    Schedule {
        #[command(subcommand)]
        command: schedules_cmd::ScheduleCommand,
    },
    /// List the deployed functions.
    Functions {
        #[command(flatten)]
        output: output::OutputArgs,
        #[command(flatten)]
        target: Target,
    },
    /// The nodes the scheduler holds: address, state, containers, memory (used, committed to
    /// containers, offered) and the account each is reserved for.
    Nodes {
        #[command(flatten)]
        args: cluster_cmds::NodesArgs,
        #[command(flatten)]
        target: Target,
    },
    /// Send an event to a topic: every subscribed function whose filter matches gets it as an
    /// asynchronous call.
    Emit {
        #[command(flatten)]
        args: crate::topic_cmds::emit::EmitArgs,
        #[command(flatten)]
        target: Target,
    },
    /// Subscribe a function to a topic, optionally only to events matching --filter.
    Subscribe {
        #[command(flatten)]
        args: crate::topic_cmds::subscribe::SubscribeArgs,
        #[command(flatten)]
        target: Target,
    },
    /// Remove a function's subscription to a topic.
    Unsubscribe {
        function: String,
        topic: String,
        #[command(flatten)]
        target: Target,
    },
    /// List topics with their subscribers and filters.
    Topics {
        #[command(flatten)]
        args: crate::topic_cmds::topics::TopicsArgs,
        #[command(flatten)]
        target: Target,
    },
    /// Set (or show) what runs after a function's asynchronous calls succeed or fail.
    Chain {
        #[command(flatten)]
        args: crate::topic_cmds::chain::ChainArgs,
        #[command(flatten)]
        target: Target,
    },
    /// The scheduler's decisions with the policy's reason for each (-f: as they are made).
    Events {
        #[command(flatten)]
        args: faas_cli::events::EventsArgs,
        #[command(flatten)]
        target: Target,
    },
    /// The containers on every node (of one function and its versions with NAME): state,
    /// calls in flight, idle time, memory used and limit.
    Ps {
        #[command(flatten)]
        args: cluster_cmds::PsArgs,
        #[command(flatten)]
        target: Target,
    },
    /// Print a completion script for SHELL: e.g. `source <(faas completion bash)`, or
    /// `faas completion zsh > ~/.zfunc/_faas`.
    Completion {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Apply a TOML file: its functions (created or replaced), then their versions, aliases
    /// and routes; what is already as the file says is left unchanged. A command function's
    /// `code` directory (relative to the file) is uploaded when it changed.
    #[command(after_help = "The format: deploy/functions.toml (functions only), \
        deploy/canary.toml (a function with versions, an alias and routes) and \
        deploy/user-functions.toml (your own code: command, code, protocol).")]
    Deploy {
        /// A TOML file: `[[function]]` entries, each with optional `[[function.version]]`,
        /// `[[function.alias]]` and `[function.routes]`.
        file: PathBuf,
        #[command(flatten)]
        target: Target,
    },
    /// Delete a function.
    Delete {
        name: String,
        #[command(flatten)]
        target: Target,
    },
    /// Freeze a function's current definition as its next version (NAME:1, NAME:2, ...).
    Publish {
        /// The function's name.
        name: String,
        #[command(flatten)]
        target: Target,
    },
    /// List a function's versions, or delete one with --delete N.
    Versions {
        /// The function's name.
        name: String,
        /// Delete version N instead (refused while an alias or route names it).
        #[arg(long, value_name = "N")]
        delete: Option<i64>,
        #[command(flatten)]
        output: output::OutputArgs,
        #[command(flatten)]
        target: Target,
    },
    /// Set, list or delete a function's aliases (NAME:ALIAS).
    Alias {
        #[command(subcommand)]
        command: AliasCommand,
    },
    /// Point an alias back at what it pointed at before its last change.
    Rollback {
        /// The function's name.
        name: String,
        /// The alias's name.
        alias: String,
        #[command(flatten)]
        target: Target,
    },
    /// Clear a function's routes (`faas deploy FILE` sets them).
    Routes {
        #[command(subcommand)]
        command: RoutesCommand,
    },
    /// Everything about a function: definition, versions, aliases, routes, and how each
    /// target fared (breaker state, calls, errors, fallbacks, p99).
    Describe {
        /// The function's name.
        name: String,
        #[command(flatten)]
        output: output::OutputArgs,
        #[command(flatten)]
        target: Target,
    },
    /// Print what a function's containers wrote (stdout and stderr, with the request id
    /// where known), gathered from every node; --follow keeps printing new lines.
    Logs {
        #[command(flatten)]
        args: logs_cmd::LogsArgs,
        #[command(flatten)]
        target: Target,
    },
    /// Replay contest-style or real-trace load against the live platform and score policies.
    Replay(faas_cli::bench::ReplayArgs),
    /// Run policies in virtual time against models of the nodes (fast, deterministic).
    Simulate(faas_cli::bench::SimulateArgs),
    /// Sweep the fixed keep-alive window and plot cold starts against idle memory (simulator).
    Sweep(faas_cli::sweep::SweepArgs),
    /// Run the API server alone.
    Apiserver(faas_apiserver::Config),
    /// Run the scheduler alone.
    Scheduler(faas_scheduler::Config),
    /// Run the resource manager alone.
    ResourceManager(faas_resource_manager::Config),
    /// Run one node service alone.
    NodeService(faas_node_service::Config),
    /// Run one container service alone.
    ContainerService(faas_container_service::Config),
}

#[derive(Subcommand)]
pub(crate) enum AliasCommand {
    /// Create or move an alias: WEIGHTS is `1=90,2=10` (one or two versions, summing to 100)
    /// or `2` (all traffic to version 2). What it pointed at before is kept for
    /// `faas rollback`.
    Set {
        /// The function's name.
        name: String,
        /// The alias's name: a letter, then letters, digits, '_' or '-'.
        alias: String,
        /// `1=90,2=10` or `2`.
        #[arg(value_parser = parse_weights, value_name = "WEIGHTS")]
        weights: WeightList,
        #[command(flatten)]
        target: Target,
    },
    /// List a function's aliases.
    List {
        /// The function's name.
        name: String,
        #[command(flatten)]
        output: output::OutputArgs,
        #[command(flatten)]
        target: Target,
    },
    /// Delete an alias (refused while a route names it).
    Delete {
        /// The function's name.
        name: String,
        /// The alias's name.
        alias: String,
        #[command(flatten)]
        target: Target,
    },
}

/// Clap takes a `Vec` argument as a list of values: the parsed weights travel in this.
pub(crate) type WeightList = Vec<Weighted>;

#[derive(Subcommand)]
pub(crate) enum RoutesCommand {
    /// Remove a function's routes: its calls go to its current definition again.
    Clear {
        /// The function's name.
        name: String,
        #[command(flatten)]
        target: Target,
    },
}
