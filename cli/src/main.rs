//! `faas`: start the platform, invoke and manage functions (with their versions, aliases and
//! routes), run the demo load, and run any single component (`faas scheduler ...`) exactly
//! as its own binary does.
//!
//! For scripts: listings take `-o json` ([`output`]), `faas invoke --async` and `faas result`
//! run calls in the background ([`async_cmds`]; their dead letters and retries:
//! [`dead_letters_cmd`]; their timers, `faas schedules` and `faas schedule add|rm`:
//! [`schedules_cmd`]), `faas nodes` and `faas ps` show what runs
//! where ([`cluster_cmds`]), `faas completion SHELL` prints a completion script, and the exit
//! code tells the kind of failure apart (`faas_cli::exit`, listed in `faas --help`). Every
//! failure prints as one line (`faas_cli::errors::one_line`).
//!
//! The command line itself (clap) is in `args.rs`.

mod args;
mod async_cmds;
mod cluster_cmds;
mod dead_letters_cmd;
mod invoke_cmd;
mod logs_cmd;
mod output;
mod routing_cmds;
mod schedules_cmd;
mod target;
mod topic_cmds;

use std::time::Duration;

use anyhow::{Context, bail};
use args::*;
use clap::{CommandFactory, Parser};
use faas_apiserver::store::code_dir::load_setup_code;
use faas_cli::demo;
use faas_cli::exit::{self, call_failed};
use faas_cli::platform::{LocalPlatform, PlatformOptions};
use faas_proto::admin::DeleteFunctionRequest;

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
            | Command::Sweep(_)
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
            | Command::DeadLetters { .. }
            | Command::Redrive { .. }
            | Command::Retry { .. }
            | Command::Schedules { .. }
            | Command::Schedule { .. }
            | Command::Nodes { .. }
            | Command::Ps { .. }
            | Command::Events { .. }
            | Command::Emit { .. }
            | Command::Subscribe { .. }
            | Command::Unsubscribe { .. }
            | Command::Topics { .. }
            | Command::Chain { .. }
            | Command::Completion { .. }
    );
    if quiet && std::env::var_os("RUST_LOG").is_none() {
        // Child components (node and container services) inherit this: the demo's table
        // stays readable. Set before any thread exists.
        // The child processes are started deep inside the resource manager's and the node's
        // launchers, which take no log level: the inherited environment is the one road.
        #[allow(unsafe_code, clippy::disallowed_methods)]
        // SAFETY: still single-threaded here; nothing reads the environment concurrently.
        unsafe {
            std::env::set_var("RUST_LOG", "warn");
        }
    }
    let (component, log) = log_settings(&cli.command);
    faas_common::logging::init_with(component, &log, if quiet { "warn" } else { "info" });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let result = runtime.block_on(run(cli.command));
    // Spans still buffered reach the collector (a no-op when export is off).
    faas_common::trace::flush();
    result
}

/// Whose lines this process writes, and how: a component run by `faas <component>` is that
/// component with its own flags; `faas up` is `faas` with its `--log-format`.
fn log_settings(command: &Command) -> (&'static str, faas_common::logging::LogArgs) {
    match command {
        Command::Up { log, .. } => ("faas", log.clone()),
        Command::Apiserver(c) => ("apiserver", c.log.clone()),
        Command::Scheduler(c) => ("scheduler", c.log.clone()),
        Command::ResourceManager(c) => ("resource-manager", c.log.clone()),
        Command::NodeService(c) => ("node-service", c.log.clone()),
        Command::ContainerService(c) => ("container-service", c.log.clone()),
        _ => ("faas", faas_common::logging::LogArgs::from_env()),
    }
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
            queue,
            log: _,
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
            let mut options = PlatformOptions {
                data_dir: Some(data_dir),
                metrics: metrics.then_some(faas_cli::platform::MetricsPorts::DEFAULT),
                http_port,
                ..platform.options((apiserver_port, scheduler_port, resource_manager_port))
            };
            if let Some(queue) = queue {
                options
                    .apiserver_args
                    .extend(["--queue".to_string(), queue]);
            }
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
        Command::DeadLetters {
            name,
            output,
            target,
        } => dead_letters_cmd::list(&target.api().await?, &name, &output).await,
        Command::Redrive { name, ids, target } => {
            dead_letters_cmd::redrive(&target.api().await?, &name, &ids).await
        }
        Command::Retry { args, target } => {
            dead_letters_cmd::retry(&target.api().await?, &args).await
        }
        Command::Schedules {
            function,
            output,
            target,
        } => schedules_cmd::list(&target.api().await?, function.as_deref(), &output).await,
        Command::Schedule { command } => schedules_cmd::run(command).await,
        Command::Nodes { args, target } => cluster_cmds::nodes(&target.api().await?, &args).await,
        Command::Ps { args, target } => cluster_cmds::ps(&target.api().await?, &args).await,
        Command::Events { args, target } => {
            faas_cli::events::events(&target.api().await?, &args).await
        }
        Command::Emit { args, target } => topic_cmds::emit::emit(&target.api().await?, &args).await,
        Command::Subscribe { args, target } => {
            topic_cmds::subscribe::subscribe(&target.api().await?, &args).await
        }
        Command::Unsubscribe {
            function,
            topic,
            target,
        } => topic_cmds::unsubscribe::unsubscribe(&target.api().await?, &function, &topic).await,
        Command::Topics { args, target } => {
            topic_cmds::topics::topics(&target.api().await?, &args).await
        }
        Command::Chain { args, target } => {
            topic_cmds::chain::chain(&target.api().await?, &args).await
        }
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
        } => {
            let api = target.api().await?;
            routing_cmds::describe(&api, &name, output.is_json()).await?;
            if !output.is_json() {
                schedules_cmd::describe_section(&api, &name).await;
            }
            Ok(())
        }
        Command::Logs { args, target } => logs_cmd::logs(&target.api().await?, &args).await,
        Command::Replay(args) => faas_cli::bench::replay(args).await,
        Command::Simulate(args) => faas_cli::bench::simulate(args).await,
        Command::Sweep(args) => faas_cli::sweep::sweep(args).await,
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
        println!(
            "  dashboard        http://{}:{}/ui (its data needs the admin key: /ui#key=KEY)",
            options.host, options.http_port
        );
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
