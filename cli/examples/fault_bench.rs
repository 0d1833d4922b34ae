//! Fault bench: measures how the platform heals from one fault under steady load (the
//! numbers of issue 10's closing note).
//!
//! Starts the local platform (default policy and timings), sends an open-loop mix of hello,
//! sleep {"ms":100}, memory {"mb":16,"ms":50} and cpu {"rounds":20000} (20 calls/s), injects
//! one fault at `--at` seconds, and prints the calls sent, succeeded and failed by status, the
//! calls in flight at the fault, the time from the fault to the first success after it and to
//! a success rate back at 99% over a 1 s window, and what leaked (node and container
//! processes left after the stop, reserved nodes the scheduler does not know).
//!
//! ```sh
//! cargo run --release -p faas-cli --example fault_bench -- --fault kill-node --seconds 40 --at 10
//! ```
//!
//! Faults: `kill-node` (SIGKILL the node service holding the most containers),
//! `kill-idle-container`, `kill-busy-container`, `pause-node:SECS` (SIGSTOP, SIGCONT after
//! SECS), `redeploy` (flip hello's handler to echo and back every second for 5 s),
//! `hold-lease` (acquire a hello container from the scheduler and never return it).
//! `--json FILE` also writes the figures as JSON.
//!
//! The example is its own multi-call binary (`fault_bench node-service ...`), so the node and
//! container services it starts are always built from the same code as the bench.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use faas_cli::client::Api;
use faas_cli::load;
use faas_cli::platform::{LocalPlatform, PlatformOptions};
use faas_e2e::{observe, procs};
use faas_proto::admin::{DeployFunctionRequest, FunctionSpec};
use faas_proto::apiserverproto::FunctionConfig;
use faas_proto::schedulerproto::scheduler_client::SchedulerClient;
use faas_proto::schedulerproto::{self, AcquireContainerRequest};
use tokio::task::JoinHandle;

const ACCOUNT: &str = "fault-bench";
const MIX: [(&str, &str); 4] = [
    ("hello", r#"{"name":"bench"}"#),
    ("sleep", r#"{"ms":100}"#),
    ("memory", r#"{"mb":16,"ms":50}"#),
    ("cpu", r#"{"rounds":20000}"#),
];

const FAULTS: [&str; 5] = [
    "kill-node",
    "kill-idle-container",
    "kill-busy-container",
    "redeploy",
    "hold-lease",
];

/// The SECS of `pause-node:SECS`.
fn pause_secs(fault: &str) -> Option<f64> {
    fault.strip_prefix("pause-node:")?.parse().ok()
}

/// Measures how the platform heals from one fault under steady load.
#[derive(Parser, Debug)]
struct Args {
    /// kill-node | kill-idle-container | kill-busy-container | pause-node:SECS | redeploy |
    /// hold-lease
    #[arg(long)]
    fault: String,
    /// How long the load runs, s.
    #[arg(long, default_value_t = 40.0)]
    seconds: f64,
    /// When the fault is injected, s after the load started.
    #[arg(long, default_value_t = 10.0)]
    at: f64,
    /// Calls per second (open loop).
    #[arg(long, default_value_t = 20.0)]
    rate: f64,
    /// Also write the figures to this JSON file.
    #[arg(long)]
    json: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let argv: Vec<String> = std::env::args().collect();
    let component = argv.get(1).map(String::as_str);
    if let Some(name @ (procs::NODE_SERVICE | procs::CONTAINER_SERVICE)) = component {
        return run_component(name, &argv[2..]);
    }
    let args = Args::parse();
    // Still single-threaded: children inherit a quiet log level and this binary (the
    // launchers of the resource manager and the nodes take neither as an argument).
    #[allow(unsafe_code, clippy::disallowed_methods)]
    // SAFETY: no other thread exists yet, so nothing reads the environment concurrently.
    unsafe {
        if std::env::var_os("RUST_LOG").is_none() {
            std::env::set_var("RUST_LOG", "warn");
        }
        std::env::set_var("FAAS_BIN", std::env::current_exe()?);
    }
    faas_common::logging::init("warn");
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(bench(args))
}

/// Runs a node service or a container service, as `faas <component>` would.
fn run_component(name: &str, args: &[String]) -> anyhow::Result<()> {
    #[derive(Parser)]
    struct Component<T: clap::Args> {
        #[command(flatten)]
        config: T,
    }
    faas_common::logging::init("info");
    let argv = std::iter::once(name.to_string()).chain(args.iter().cloned());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    if name == procs::NODE_SERVICE {
        let config = Component::<faas_node_service::Config>::parse_from(argv).config;
        runtime.block_on(faas_node_service::main_with(config))
    } else {
        let config = Component::<faas_container_service::Config>::parse_from(argv).config;
        runtime.block_on(faas_container_service::main_with(config))
    }
}

/// A fault as injected: when, on what, and what is still to come (a SIGCONT, more deploys).
struct Injected {
    at: Instant,
    what: String,
    rest: Option<JoinHandle<anyhow::Result<()>>>,
}

impl Injected {
    fn now(what: String) -> Injected {
        Injected {
            at: faas_common::clock::instant(),
            what,
            rest: None,
        }
    }
}

/// The node service holding the most function containers: (pid, node id, containers).
async fn busiest_node() -> anyhow::Result<(u32, String, usize)> {
    let node = observe::busiest_node()
        .await
        .context("no node holds a function container")?;
    Ok((node.pid, node.node_id, node.containers.len()))
}

/// SIGKILLs a function container that has served calls, at a moment it runs one (`busy`) or
/// none: containers are chosen once, then their own `Status` is polled (up to 5 s) and the
/// kill follows a matching answer at once.
async fn kill_container(busy: bool) -> anyhow::Result<Injected> {
    let kind = if busy { "busy" } else { "idle" };
    let mut used = observe::live_containers().await;
    used.retain(|c| c.status.served > 0 && !c.status.function_name.is_empty());
    used.sort_by_key(|c| std::cmp::Reverse(c.status.served));
    let deadline = faas_common::clock::instant() + Duration::from_secs(5);
    while faas_common::clock::instant() < deadline {
        for c in &used {
            if let Some(now) = observe::container_status(c.port).await
                && (now.in_flight > 0) == busy
            {
                procs::kill9(c.pid);
                return Ok(Injected::now(format!(
                    "SIGKILL {kind} container of {} (pid {}, {} in flight) on {}",
                    now.function_name, c.pid, now.in_flight, c.node_id
                )));
            }
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    anyhow::bail!("no {kind} function container within 5 s")
}

async fn deploy(api: &Api, f: &FunctionConfig, handler: &str) -> anyhow::Result<()> {
    let spec = FunctionSpec {
        name: f.function_name.clone(),
        handler: handler.into(),
        memory_in_bytes: f.memory_in_bytes,
        timeout_in_ms: f.timeout_in_ms,
        description: "fault_bench redeploy".into(),
        ..Default::default()
    };
    api.admin()
        .deploy_function(DeployFunctionRequest {
            function: Some(spec),
        })
        .await
        .map_err(|s| anyhow::anyhow!("deploy {handler}: {s:?}"))?;
    Ok(())
}

async fn inject(
    fault: &str,
    api: &Api,
    scheduler: &str,
    auth: &faas_common::token::ClusterAuth,
) -> anyhow::Result<Injected> {
    let hello = || async {
        api.list()
            .await?
            .into_iter()
            .find(|f| f.function_name == "hello")
            .context("no function hello")
    };
    match fault {
        "kill-node" => {
            let (pid, node, n) = busiest_node().await?;
            procs::kill9(pid);
            let what = format!("SIGKILL node-service {node} (pid {pid}, {n} containers)");
            Ok(Injected::now(what))
        }
        "kill-idle-container" => kill_container(false).await,
        "kill-busy-container" => kill_container(true).await,
        "redeploy" => {
            let f = hello().await?;
            deploy(api, &f, "echo").await?;
            let mut injected = Injected::now(format!(
                "redeploy hello: handler {} <-> echo every second for 5 s",
                f.handler
            ));
            let (api, at) = (api.clone(), injected.at);
            injected.rest = Some(tokio::spawn(async move {
                for i in 1..=5u32 {
                    tokio::time::sleep_until((at + Duration::from_secs(i.into())).into()).await;
                    let handler = if i % 2 == 1 {
                        f.handler.as_str()
                    } else {
                        "echo"
                    };
                    deploy(&api, &f, handler).await?;
                }
                Ok(())
            }));
            Ok(injected)
        }
        "hold-lease" => {
            let f = hello().await?;
            let channel = faas_common::serve::connect(scheduler).await?;
            let held = SchedulerClient::new(auth.channel(channel))
                .acquire_container(AcquireContainerRequest {
                    request_id: "fault-bench-held-lease".into(),
                    account_id: ACCOUNT.into(),
                    function_name: f.function_name.clone(),
                    function_config: Some(schedulerproto::FunctionConfig {
                        timeout_in_ms: f.timeout_in_ms,
                        memory_in_bytes: f.memory_in_bytes,
                        handler: f.handler.clone(),
                    }),
                })
                .await
                .map_err(|s| anyhow::anyhow!("acquire: {s:?}"))?
                .into_inner();
            Ok(Injected::now(format!(
                "hold container {} of hello on {} (acquired, never returned)",
                held.container_id, held.node_id
            )))
        }
        _ => {
            let secs = pause_secs(fault).context("unknown fault")?;
            let (pid, node, n) = busiest_node().await?;
            let paused = procs::Paused::stop(pid);
            let mut injected = Injected::now(format!(
                "SIGSTOP node-service {node} (pid {pid}, {n} containers), SIGCONT after {secs} s"
            ));
            let pause = Duration::from_secs_f64(secs);
            injected.rest = Some(tokio::spawn(async move {
                tokio::time::sleep(pause).await;
                paused.resume();
                Ok(())
            }));
            Ok(injected)
        }
    }
}

fn secs(d: Option<Duration>) -> String {
    d.map_or("never".into(), |d| format!("{:.2} s", d.as_secs_f64()))
}

async fn bench(args: Args) -> anyhow::Result<()> {
    let fault = args.fault.as_str();
    if !FAULTS.contains(&fault) && pause_secs(fault).is_none() {
        anyhow::bail!(
            "unknown fault {fault:?}: {}, pause-node:SECS",
            FAULTS.join(", ")
        );
    }
    let metrics_port = observe::free_port();
    let options = PlatformOptions {
        scheduler_args: vec!["--metrics-port".into(), metrics_port.to_string()],
        ..PlatformOptions::default()
    };
    println!(
        "starting the platform (policy {}, default timings)...",
        options.policy
    );
    let platform = LocalPlatform::start(&options).await?;
    let rm = platform.resource_manager.to_string();
    let api = platform.api().await?;
    let mix = MIX
        .iter()
        .map(|(f, e)| (f.to_string(), e.as_bytes().to_vec()))
        .collect();
    println!(
        "sending {} calls/s for {} s; fault {} at {} s",
        args.rate, args.seconds, args.fault, args.at
    );
    let start = faas_common::clock::instant();
    let load = load::Load::start(
        api.clone(),
        ACCOUNT,
        mix,
        Duration::from_secs_f64(1.0 / args.rate),
    );
    tokio::time::sleep_until((start + Duration::from_secs_f64(args.at)).into()).await;
    let mut seen = procs::platform_pids();
    let auth = platform.cluster_auth();
    let mut injected = inject(fault, &api, &platform.scheduler.to_string(), &auth).await;
    if let Ok(i) = &injected {
        println!("fault at {:.2} s: {}", (i.at - start).as_secs_f64(), i.what);
    }
    let end = start + Duration::from_secs_f64(args.seconds);
    tokio::time::sleep_until(end.into()).await;
    let calls = load.finish(Duration::from_secs(15)).await;

    // What is left once the fault is over (SIGCONT sent, deploys done) and had 10 s to heal.
    let rest = match injected.as_mut().ok().and_then(|i| i.rest.take()) {
        Some(rest) => rest.await.map_err(anyhow::Error::from).and_then(|r| r),
        None => Ok(()),
    };
    let settle = faas_common::clock::instant() + Duration::from_secs(10);
    let mut ledger = observe::node_ledger(&rm, metrics_port, &auth).await;
    while !ledger.consistent() && faas_common::clock::instant() < settle {
        tokio::time::sleep(Duration::from_millis(200)).await;
        ledger = observe::node_ledger(&rm, metrics_port, &auth).await;
    }
    let leases = observe::scrape(metrics_port)
        .await
        .and_then(|text| observe::metric(&text, "faas_scheduler_leases", &[]));
    seen.extend(procs::platform_pids());
    let stopped = platform.stop().await;
    let left = procs::left_over(&seen);
    let injected = injected?;
    rest.context("the fault's follow-up failed")?;

    let ok = calls.iter().filter(|c| c.ok().is_some()).count();
    let failed = load::failures_by_code(&calls);
    let in_flight = load::in_flight_at(&calls, injected.at).len();
    let first = load::first_success_after(&calls, injected.at);
    let back = load::recovered_after(&calls, injected.at, end, Duration::from_secs(1));
    let fault_at = (injected.at - start).as_secs_f64();
    println!(
        "fault                   {} at {fault_at:.2} s",
        injected.what
    );
    println!("calls sent              {}", calls.len());
    println!("succeeded               {ok}");
    println!("failed                  {}", calls.len() - ok);
    for (code, (n, example)) in &failed {
        println!("  {code:<21} {n:>5}  e.g. {example}");
    }
    println!("in flight at the fault  {in_flight}");
    println!("first success after it  {}", secs(first));
    println!("back at >= 99% (1 s)    {}", secs(back));
    println!("processes left (stop)   {} {left:?}", left.len());
    println!(
        "reserved nodes          {} (scheduler holds {:?}; unknown to it {}; silent {:?})",
        ledger.reserved.len(),
        ledger.scheduler_nodes,
        ledger.unknown_to_scheduler(),
        ledger.not_answering
    );
    println!("leases held at the end  {leases:?}");
    if let Err(e) = &stopped {
        println!("stopping the platform failed: {e:#}");
    }
    if let Some(path) = &args.json {
        let seconds = |d: Option<Duration>| d.map(|d| d.as_secs_f64());
        let report = serde_json::json!({
            "fault": args.fault,
            "target": injected.what,
            "fault_at_s": fault_at,
            "seconds": args.seconds,
            "rate": args.rate,
            "sent": calls.len(),
            "succeeded": ok,
            "failed_by_code": failed.iter().map(|(c, (n, _))| (c, n)).collect::<HashMap<_, _>>(),
            "failure_examples": failed.iter().map(|(c, (_, m))| (c, m)).collect::<HashMap<_, _>>(),
            "in_flight_at_fault": in_flight,
            "first_success_after_fault_s": seconds(first),
            "success_99_after_fault_s": seconds(back),
            "leaked_processes": left,
            "reserved_nodes": ledger.reserved,
            "scheduler_nodes": ledger.scheduler_nodes,
            "reserved_unknown_to_scheduler": ledger.unknown_to_scheduler(),
            "reserved_not_answering": ledger.not_answering,
            "leases_held_at_end": leases,
            "stop_error": stopped.as_ref().err().map(|e| format!("{e:#}")),
        });
        std::fs::write(path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
        println!("wrote {}", path.display());
    }
    Ok(())
}
