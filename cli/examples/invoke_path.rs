//! What each hop of the invoke path costs, side by side in one run on a real local platform
//! (issue 17): a warm `hello` container called
//!
//! - **container**: directly, `faas.container.v1.ContainerService/Invoke` (one gRPC hop);
//! - **node**: through its node service, `nodeservoceproto.NodeService/InvokeFunction`
//!   (node → container: two hops);
//! - **api**: through the API server, `apiserverproto.APIServer/InvokeFunction` (the whole
//!   chain: invoke, the scheduler's acquire, node, container, the return).
//!
//! `cargo build --release -p faas-cli --bin faas --example invoke_path && FAAS_BIN=$PWD/target/release/faas cargo run --release -p faas-cli --example invoke_path -- [ROUNDS=2000] [SECONDS=4] [IN_FLIGHT=64] [REPEATS=1]`
//!
//! (`FAAS_BIN` pins the node and container services to the `faas` binary just built; an
//! absolute path: a relative one fails when the node starts a container in its own
//! directory. Without it they are found beside the example, see `faas_common::launch`.)
//!
//! One client, in this process (as are the API server, scheduler and resource manager; the
//! node and container services are child processes). First the latency: `ROUNDS`
//! sequential calls per path, interleaved in rounds (container, node, api, container, ...)
//! so drift hits the three alike, after a discarded warm-up; p50 and p99. Then the
//! throughput: `IN_FLIGHT` calls kept in flight for `SECONDS` per path, calls/s (the API
//! path first warms at full load until a second of it starts no container, and each run
//! says how many cold starts fell into its measured API phase). Every reply
//! is checked (a failed call fails the run). The table gives each path's ratio to the
//! one-hop path. The API server runs without per-account limits (`--account-rate 0
//! --account-concurrency 0`) so what is measured is the path, not a limit.
//!
//! The container is found the way an operator would: `Admin/ListNodes` on the API server
//! names the node and the container, `faas.node.v1.NodeAdmin/DescribeNode` on that node
//! gives the container service's address (`ContainerInfo.address`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use faas_cli::platform::{LocalPlatform, PlatformOptions};
use faas_common::serve::MAX_MESSAGE_BYTES;
use faas_common::stats::percentile_or_zero as percentile;
use faas_common::token::AuthChannel;
use faas_proto::admin::ListNodesRequest;
use faas_proto::admin::admin_client::AdminClient;
use faas_proto::apiserverproto::api_server_client::ApiServerClient;
use faas_proto::container::container_service_client::ContainerServiceClient;
use faas_proto::node_admin::DescribeNodeRequest;
use faas_proto::node_admin::node_admin_client::NodeAdminClient;
use faas_proto::nodeservoceproto::node_service_client::NodeServiceClient;
use faas_proto::{apiserverproto, container, nodeservoceproto};
use tonic::transport::Channel;

const FUNCTION: &str = "hello";
const ACCOUNT: &str = "bench";
/// Rounds of warm-up before the measured ones.
const WARM_UP_ROUNDS: usize = 200;
/// The longest the API path warms at full load before the runs, s.
const WARM_UP_MAX_SECONDS: usize = 20;

/// The three paths, in the order of a round.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Path {
    Container,
    Node,
    Api,
}

impl Path {
    const ALL: [Path; 3] = [Path::Container, Path::Node, Path::Api];

    fn label(self) -> &'static str {
        match self {
            Path::Container => "container service alone (one hop)",
            Path::Node => "node service -> container (two hops)",
            Path::Api => "API server, whole chain (five hops)",
        }
    }
}

/// A client of each path, and what the node and the container are asked.
#[derive(Clone)]
struct Targets {
    container: ContainerServiceClient<Channel>,
    node: NodeServiceClient<AuthChannel>,
    api: ApiServerClient<Channel>,
    container_id: String,
    meta: nodeservoceproto::FunctionMeta,
    /// Numbers the request ids of the direct calls.
    seq: Arc<AtomicU64>,
    /// API calls whose reply said the scheduler created a container for them.
    cold_starts: Arc<AtomicU64>,
}

impl Targets {
    fn request_id(&self) -> String {
        format!("bench-{}", self.seq.fetch_add(1, Ordering::Relaxed))
    }

    /// One call on `path`; an error unless the function answered.
    async fn call(&mut self, path: Path) -> anyhow::Result<()> {
        match path {
            Path::Container => {
                let reply = self
                    .container
                    .invoke(container::InvokeRequest {
                        request_id: self.request_id(),
                        function_name: self.meta.function_name.clone(),
                        handler: self.meta.handler.clone(),
                        event: Default::default(),
                        timeout_in_ms: 0,
                    })
                    .await?
                    .into_inner();
                anyhow::ensure!(
                    reply.error_code.is_empty() && !reply.body.is_empty(),
                    "container: {} {}",
                    reply.error_code,
                    reply.error_message
                );
            }
            Path::Node => {
                let mut stream = self
                    .node
                    .invoke_function(nodeservoceproto::InvokeFunctionRequest {
                        request_id: self.request_id(),
                        container_id: self.container_id.clone(),
                        event: Default::default(),
                        function_meta: Some(self.meta.clone()),
                    })
                    .await?
                    .into_inner();
                let (mut body, mut footer) = (0, None);
                while let Some(reply) = stream.message().await? {
                    body += reply.body.len();
                    if reply.footer.is_some() {
                        footer = reply.footer;
                    }
                }
                let footer = footer.ok_or_else(|| anyhow::anyhow!("node: no footer"))?;
                anyhow::ensure!(
                    footer.error.is_empty() && body > 0,
                    "node: {}",
                    footer.error
                );
            }
            Path::Api => {
                let response = self
                    .api
                    .invoke_function(apiserverproto::InvokeFunctionRequest {
                        account_id: ACCOUNT.to_string(),
                        function_name: FUNCTION.to_string(),
                        event: Default::default(),
                    })
                    .await?;
                if response
                    .metadata()
                    .get(faas_proto::meta::COLD_START)
                    .is_some_and(|v| v == "true")
                {
                    self.cold_starts.fetch_add(1, Ordering::Relaxed);
                }
                let reply = response.into_inner();
                anyhow::ensure!(!reply.body.is_empty(), "api: empty body");
            }
        }
        Ok(())
    }
}

/// Sequential latency (ms) of each path, `rounds` interleaved rounds.
async fn latencies(targets: &mut Targets, rounds: usize) -> anyhow::Result<[Vec<f64>; 3]> {
    for _ in 0..WARM_UP_ROUNDS {
        for path in Path::ALL {
            targets.call(path).await?;
        }
    }
    let mut out: [Vec<f64>; 3] = Default::default();
    for _ in 0..rounds {
        for (i, path) in Path::ALL.into_iter().enumerate() {
            let sent = faas_common::clock::instant();
            targets.call(path).await?;
            out[i].push(sent.elapsed().as_secs_f64() * 1e3);
        }
    }
    for samples in &mut out {
        samples.sort_by(f64::total_cmp);
    }
    Ok(out)
}

/// Calls/s of `path` with `in_flight` calls kept in flight for `duration`.
async fn throughput(
    targets: &Targets,
    path: Path,
    in_flight: usize,
    duration: Duration,
) -> anyhow::Result<f64> {
    let started = faas_common::clock::instant();
    let workers: Vec<_> = (0..in_flight)
        .map(|_| {
            let mut targets = targets.clone();
            tokio::spawn(async move {
                let mut done = 0u64;
                while started.elapsed() < duration {
                    targets.call(path).await?;
                    done += 1;
                }
                anyhow::Ok(done)
            })
        })
        .collect();
    let mut done = 0;
    for worker in workers {
        done += worker.await??;
    }
    Ok(done as f64 / started.elapsed().as_secs_f64())
}

/// Finds a running `hello` container: its node (`Admin/ListNodes`), then its address
/// (`NodeAdmin/DescribeNode`).
async fn targets(platform: &LocalPlatform) -> anyhow::Result<Targets> {
    let api_channel = faas_common::serve::connect(&platform.apiserver.to_string()).await?;
    let nodes = AdminClient::new(api_channel.clone())
        .list_nodes(ListNodesRequest {
            function_name: FUNCTION.to_string(),
        })
        .await?
        .into_inner()
        .nodes;
    let (node, container_id) = nodes
        .iter()
        .find_map(|n| {
            n.containers
                .iter()
                .find(|c| c.state == "running" && c.function_name == FUNCTION)
                .map(|c| (n, c.container_id.clone()))
        })
        .ok_or_else(|| anyhow::anyhow!("no running {FUNCTION} container in {nodes:?}"))?;
    let auth = platform.cluster_auth();
    let node_channel = faas_common::serve::connect(&node.address).await?;
    let described = NodeAdminClient::new(auth.channel(node_channel.clone()))
        .describe_node(DescribeNodeRequest {})
        .await?
        .into_inner();
    let info = described
        .containers
        .into_iter()
        .find(|c| c.container_id == container_id)
        .ok_or_else(|| anyhow::anyhow!("node {} does not list {container_id}", node.node_id))?;
    anyhow::ensure!(
        !info.address.is_empty(),
        "node {} gives no container address",
        node.node_id
    );
    let container_channel = faas_common::serve::connect(&info.address).await?;
    println!(
        "container {container_id} ({}) at {} on node {} at {}",
        info.function_name, info.address, node.node_id, node.address
    );
    Ok(Targets {
        container: ContainerServiceClient::new(container_channel)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES),
        node: NodeServiceClient::new(auth.channel(node_channel))
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES),
        api: ApiServerClient::new(api_channel)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES),
        container_id,
        meta: nodeservoceproto::FunctionMeta {
            function_name: info.function_name,
            handler: info.handler,
            timeout_in_ms: info.timeout_in_ms,
            memory_in_bytes: info.memory_in_bytes,
        },
        seq: Arc::new(AtomicU64::new(0)),
        cold_starts: Arc::new(AtomicU64::new(0)),
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    faas_common::logging::init("warn");
    let mut args = std::env::args().skip(1);
    let rounds: usize = args.next().map_or(Ok(2000), |a| a.parse())?;
    let seconds: f64 = args.next().map_or(Ok(4.0), |a| a.parse())?;
    let in_flight: usize = args.next().map_or(Ok(64), |a| a.parse())?;
    let repeats: usize = args.next().map_or(Ok(1), |a| a.parse())?;
    let platform = LocalPlatform::start(&PlatformOptions {
        ready_nodes: 1,
        apiserver_args: ["--account-concurrency", "0", "--account-rate", "0"]
            .map(String::from)
            .to_vec(),
        ..PlatformOptions::default()
    })
    .await?;
    let result = run(&platform, rounds, seconds, in_flight, repeats).await;
    platform.stop().await?;
    result
}

async fn run(
    platform: &LocalPlatform,
    rounds: usize,
    seconds: f64,
    in_flight: usize,
    repeats: usize,
) -> anyhow::Result<()> {
    // A first call makes the container warm; the API path then warms at full load until a
    // whole second of it starts no container (at most WARM_UP_MAX_SECONDS), so the
    // scheduler holds the containers its throughput run needs. The scheduler may still make
    // more once the measured run keeps every container busy: each run prints how many of
    // its API calls were cold starts, so a run that paid for creates is told apart.
    let api = platform.api().await?;
    api.invoke(ACCOUNT, FUNCTION, vec![]).await?;
    let mut targets = targets(platform).await?;
    for _ in 0..WARM_UP_MAX_SECONDS {
        let before = targets.cold_starts.load(Ordering::Relaxed);
        throughput(&targets, Path::Api, in_flight, Duration::from_secs(1)).await?;
        if targets.cold_starts.load(Ordering::Relaxed) == before {
            break;
        }
    }
    let duration = Duration::from_secs_f64(seconds);
    for repeat in 1..=repeats {
        let lat = latencies(&mut targets, rounds).await?;
        let mut rates = [0.0; 3];
        let mut cold = 0;
        for (i, path) in Path::ALL.into_iter().enumerate() {
            let before = targets.cold_starts.load(Ordering::Relaxed);
            rates[i] = throughput(&targets, path, in_flight, duration).await?;
            cold += targets.cold_starts.load(Ordering::Relaxed) - before;
        }
        println!(
            "\nrun {repeat}/{repeats}: {rounds} sequential rounds, then {in_flight} in flight for {seconds} s per path"
        );
        println!("| path | p50 | p99 | calls/s at {in_flight} in flight |\n|---|---|---|---|");
        let base_p50 = percentile(&lat[0], 0.5);
        for (i, path) in Path::ALL.into_iter().enumerate() {
            let p50 = percentile(&lat[i], 0.5);
            let p99 = percentile(&lat[i], 0.99);
            let (ratio, rate_ratio) = if i == 0 {
                (String::new(), String::new())
            } else {
                (
                    format!(" ({:.1}x)", p50 / base_p50),
                    format!(" ({:.2}x)", rates[i] / rates[0]),
                )
            };
            println!(
                "| {} | {p50:.3} ms{ratio} | {p99:.3} ms | {:.0}{rate_ratio} |",
                path.label(),
                rates[i]
            );
        }
        println!(
            "(cold starts during the API path's {seconds} s at {in_flight} in flight: {cold})"
        );
    }
    Ok(())
}
