//! `faas`: start the platform, invoke and manage functions (with their versions, aliases and
//! routes), run the demo load, and run any single component (`faas scheduler ...`) exactly
//! as its own binary does.
//!
//! For scripts: listings take `-o json` ([`output`]), `faas invoke --async` and `faas result`
//! run calls in the background ([`async_cmds`]), `faas nodes` and `faas ps` show what runs
//! where ([`cluster_cmds`]), `faas completion SHELL` prints a completion script, and the exit
//! code tells the kind of failure apart (`faas_cli::exit`, listed in `faas --help`). Every
//! failure prints as one line (`faas_cli::errors::one_line`).

mod async_cmds;
mod cluster_cmds;
mod invoke_cmd;
mod logs_cmd;
mod output;
mod routing_cmds;
mod target;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, CommandFactory, Parser, Subcommand};
use faas_apiserver::model::routing::{Weighted, parse_weights};
use faas_apiserver::store::code_dir::load_setup_code;
use faas_cli::demo;
use faas_cli::exit::{self, call_failed};
use faas_cli::platform::{LocalPlatform, PlatformOptions};
use faas_proto::admin::DeleteFunctionRequest;
use target::Target;

#[derive(Parser)]
#[command(
    name = "faas",
    version,
    about = "A mini Function-as-a-Service platform speaking the 2020 mini-faas contest protocol",
    after_help = exit::HELP
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone, Debug)]
struct PlatformArgs {
    /// Address the components listen on.
    #[arg(long, env = "FAAS_HOST", default_value = "127.0.0.1")]
    host: String,
    /// Scheduler policy.
    #[arg(
        long,
        env = "SCHEDULER_POLICY",
        default_value = faas_scheduler::policies::DEFAULT_POLICY,
        value_parser = faas_cli::bench::policy_name
    )]
    policy: String,
    /// Nodes ready at start (the contest: 10).
    #[arg(long, default_value_t = 10)]
    ready_nodes: u32,
    /// Nodes at most (the contest: 20).
    #[arg(long, default_value_t = 20)]
    max_nodes: u32,
    /// Delay before the node pool refills, ms.
    #[arg(long, default_value_t = 10_000)]
    refill_delay_ms: u64,
    /// Function definitions (TOML); the built-in default set when absent.
    #[arg(long, env = "FAAS_FUNCTIONS")]
    functions: Option<PathBuf>,
}

impl PlatformArgs {
    fn options(&self, ports: (u16, u16, u16)) -> PlatformOptions {
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
enum Command {
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
enum AliasCommand {
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
type WeightList = Vec<Weighted>;

#[derive(Subcommand)]
enum RoutesCommand {
    /// Remove a function's routes: its calls go to its current definition again.
    Clear {
        /// The function's name.
        name: String,
        #[command(flatten)]
        target: Target,
    },
}

fn main() -> std::process::ExitCode {
    match real_main() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // One readable line (with its causes, each once), not a debug dump; the exit
            // code says what kind of failure it was (`faas --help`, `faas_cli::exit`).
            eprintln!("error: {}", faas_cli::errors::one_line(&e));
            std::process::ExitCode::from(exit::code_of(&e))
        }
    }
}

fn real_main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let quiet = matches!(
        cli.command,
        Command::Demo { .. }
            | Command::Replay(_)
            | Command::Simulate(_)
            | Command::Invoke { .. }
            | Command::Functions { .. }
            | Command::Deploy { .. }
            | Command::Delete { .. }
            | Command::Publish { .. }
            | Command::Versions { .. }
            | Command::Alias { .. }
            | Command::Rollback { .. }
            | Command::Routes { .. }
            | Command::Describe { .. }
            | Command::Logs { .. }
            | Command::Result { .. }
            | Command::Nodes { .. }
            | Command::Ps { .. }
            | Command::Completion { .. }
    );
    if quiet && std::env::var_os("RUST_LOG").is_none() {
        // Child components (node and container services) inherit this: the demo's table
        // stays readable. Set before any thread exists.
        #[allow(unsafe_code)]
        // SAFETY: still single-threaded here; nothing reads the environment concurrently.
        unsafe {
            std::env::set_var("RUST_LOG", "warn");
        }
    }
    faas_common::logging::init(if quiet { "warn" } else { "info" });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(run(cli.command))
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Up {
            platform,
            data_dir,
            fresh,
            apiserver_port,
            scheduler_port,
            resource_manager_port,
            metrics,
            http_port,
        } => {
            let data_dir = match data_dir {
                Some(dir) => dir,
                None => faas_cli::platform::data_dir_here()
                .context(
                    "no data directory: give --data-dir (or FAAS_DATA_DIR), or set HOME or XDG_DATA_HOME",
                )?,
            };
            if fresh {
                start_fresh(&data_dir)?;
            }
            let options = PlatformOptions {
                data_dir: Some(data_dir),
                metrics: metrics.then_some(faas_cli::platform::MetricsPorts::DEFAULT),
                http_port,
                ..platform.options((apiserver_port, scheduler_port, resource_manager_port))
            };
            up(options).await
        }
        Command::Demo { platform, seconds } => {
            // A database of its own, gone afterwards: the demo never touches the user's.
            let data_dir = std::env::temp_dir().join(format!("faas-demo-{}", uuid::Uuid::new_v4()));
            let options = PlatformOptions {
                data_dir: Some(data_dir.clone()),
                ..platform.options((0, 0, 0))
            };
            let result = run_demo(options, Duration::from_secs(seconds)).await;
            if let Err(e) = std::fs::remove_dir_all(&data_dir)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                eprintln!(
                    "warning: cannot remove the demo's data directory {}: {e}",
                    data_dir.display()
                );
            }
            result
        }
        Command::Invoke { args, target } => invoke_cmd::invoke(&args, &target).await,
        Command::Functions { output, target } => {
            routing_cmds::functions(&target.api().await?, output.is_json()).await
        }
        Command::Result { args, target } => async_cmds::result(&target.api().await?, &args).await,
        Command::Nodes { args, target } => cluster_cmds::nodes(&target.api().await?, &args).await,
        Command::Ps { args, target } => cluster_cmds::ps(&target.api().await?, &args).await,
        Command::Completion { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "faas", &mut script);
            output::write_stdout(&script)
        }
        Command::Deploy { file, target } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let origin = file.display().to_string();
            let mut setup = faas_apiserver::service::file::parse_setup_toml(&text, &origin)
                .map_err(exit::bad_input)?;
            // Code directories are relative to the file.
            let base = file.parent().unwrap_or(std::path::Path::new("."));
            for note in load_setup_code(&mut setup, &origin, base).map_err(exit::bad_input)? {
                eprintln!("warning: {note}");
            }
            let api = target.api().await?;
            routing_cmds::deploy(&api, &setup).await
        }
        Command::Delete { name, target } => {
            let api = target.api().await?;
            api.admin()
                .delete_function(DeleteFunctionRequest { name: name.clone() })
                .await
                .map_err(call_failed(""))?;
            println!("{name}: deleted");
            Ok(())
        }
        Command::Publish { name, target } => {
            routing_cmds::publish(&target.api().await?, &name).await
        }
        Command::Versions {
            name,
            delete,
            output,
            target,
        } => routing_cmds::versions(&target.api().await?, &name, delete, output.is_json()).await,
        Command::Alias { command } => match command {
            AliasCommand::Set {
                name,
                alias,
                weights,
                target,
            } => {
                let api = target.api().await?;
                routing_cmds::alias_set(&api, &name, &alias, &weights).await
            }
            AliasCommand::List {
                name,
                output,
                target,
            } => routing_cmds::alias_list(&target.api().await?, &name, output.is_json()).await,
            AliasCommand::Delete {
                name,
                alias,
                target,
            } => {
                let api = target.api().await?;
                routing_cmds::alias_delete(&api, &name, &alias).await
            }
        },
        Command::Rollback {
            name,
            alias,
            target,
        } => routing_cmds::rollback(&target.api().await?, &name, &alias).await,
        Command::Routes {
            command: RoutesCommand::Clear { name, target },
        } => routing_cmds::routes_clear(&target.api().await?, &name).await,
        Command::Describe {
            name,
            output,
            target,
        } => routing_cmds::describe(&target.api().await?, &name, output.is_json()).await,
        Command::Logs { args, target } => logs_cmd::logs(&target.api().await?, &args).await,
        Command::Replay(args) => faas_cli::bench::replay(args).await,
        Command::Simulate(args) => faas_cli::bench::simulate(args).await,
        Command::Apiserver(config) => faas_apiserver::main_with(config).await,
        Command::Scheduler(config) => faas_scheduler::main_with(config).await,
        Command::ResourceManager(config) => faas_resource_manager::main_with(config).await,
        Command::NodeService(config) => faas_node_service::main_with(config).await,
        Command::ContainerService(config) => faas_container_service::main_with(config).await,
    }
}

/// `faas up --fresh`: says which database files of `data_dir` it deletes, then deletes them
/// (refused while an API server uses the directory).
fn start_fresh(data_dir: &std::path::Path) -> anyhow::Result<()> {
    faas_apiserver::remove_database(data_dir, |files| {
        if files.is_empty() {
            println!("--fresh: no database in {} yet", data_dir.display());
            return;
        }
        let names: Vec<String> = files
            .iter()
            .filter_map(|f| f.file_name())
            .map(|f| f.to_string_lossy().into_owned())
            .collect();
        println!(
            "--fresh: deleting {} in {}",
            names.join(", "),
            data_dir.display()
        );
    })?;
    Ok(())
}

async fn up(options: PlatformOptions) -> anyhow::Result<()> {
    let mut platform = LocalPlatform::start(&options).await?;
    println!("faas platform is up (policy {}):", options.policy);
    println!("  apiserver        {}", platform.apiserver);
    println!("  scheduler        {}", platform.scheduler);
    println!("  resource-manager {}", platform.resource_manager);
    if options.http_port != 0 {
        println!("  http gateway     {}:{}", options.host, options.http_port);
    }
    for line in options
        .metrics
        .iter()
        .flat_map(|m| m.describe(&options.host))
    {
        println!("  metrics          {line}");
    }
    if let Some(dir) = &options.data_dir {
        println!(
            "  functions        {} (sqlite3 opens it)",
            dir.join(faas_apiserver::DATABASE_FILE).display()
        );
        println!(
            "  code             {} (deployed command functions, by hash)",
            faas_apiserver::store::DirBundles::in_data_dir(dir).display()
        );
    }
    match (&options.data_dir, platform.api_key()) {
        _ if std::env::var_os("FAAS_API_KEY").is_some() => {
            println!("  admin key        FAAS_API_KEY (faas commands pass it too)")
        }
        (Some(dir), Some(_)) => println!(
            "  admin key        {} (faas commands on this machine use it; elsewhere pass --api-key or FAAS_API_KEY)",
            faas_apiserver::store::keys::keys_path(dir).display()
        ),
        _ => {}
    }
    println!(
        "try: faas invoke hello --event '{{\"name\":\"you\"}}' --apiserver {}",
        platform.apiserver
    );
    println!("Ctrl-C stops everything.");
    let failed = tokio::select! {
        () = faas_common::shutdown::os_signal() => None,
        e = platform.failed() => Some(e),
    };
    println!("stopping...");
    let stopped = platform.stop().await;
    if let Some(e) = failed {
        return Err(e);
    }
    stopped?;
    println!("stopped; no component, node or container process is left.");
    Ok(())
}

async fn run_demo(options: PlatformOptions, duration: Duration) -> anyhow::Result<()> {
    println!("starting the platform (policy {})...", options.policy);
    let platform = LocalPlatform::start(&options).await?;
    let result = async {
        let api = platform.api().await?;
        let mix = demo::default_mix();
        println!(
            "sending {} s of mixed load over {} functions ({:.0} calls/s)...",
            duration.as_secs(),
            mix.len(),
            mix.iter().map(|s| s.rate).sum::<f64>()
        );
        let samples = tokio::select! {
            samples = demo::run_load(&api, &mix, duration) => samples,
            _ = faas_common::shutdown::os_signal() => bail!("interrupted"),
        };
        let node_seconds = demo::node_seconds(
            &platform.resource_manager.to_string(),
            faas_common::clock::now_ms(),
            &platform.cluster_auth(),
        )
        .await?;
        print!("{}", demo::render(&demo::summarize(&samples), node_seconds));
        Ok(())
    }
    .await;
    println!("stopping the platform...");
    let stopped = platform.stop().await;
    result.and(stopped)
}
