//! Measures the cold start of the `process` runtime: the time from a `CreateContainer` call
//! to its reply (the container process started, announced its port and answered a Status
//! call), over N creates, and the first invocation after it.
//!
//! ```text
//! cargo build -p faas-container-service --bin container-service
//! cargo run -p faas-node-service --example cold_start -- 30
//! ```
//! (set `FAAS_CONTAINER_SERVICE_BIN` to measure another build, e.g. a release one).
//!
//! `FAAS_RUNTIME=docker` measures the docker runtime instead (images from
//! `deploy/build-images.sh`; containers labelled instance `bench`, node `bench`).
//!
//! `FAAS_WARM_POOL=N` (default 0: off, every create starts a container) measures creates
//! served by the warm pool: before each create the example waits until the pool is full
//! again (read from the node's metrics), so every create finds it warm; the pool's hits and
//! misses are printed at the end.

use std::time::Duration;

use faas_common::stats::percentile_or_zero;
use faas_node_service::{Config, run};
use faas_proto::nodeservoceproto as pb;
use pb::node_service_client::NodeServiceClient;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One figure from the node's `/metrics` at `addr` (a plain HTTP/1.0 GET).
async fn metric(addr: &str, name: &str) -> anyhow::Result<u64> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: node\r\n\r\n")
        .await?;
    let mut text = String::new();
    stream.read_to_string(&mut text).await?;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no {name} in the node's metrics"))
}

/// Waits until the pool holds `n` ready containers (the metrics endpoint may not listen yet
/// when the node has just started).
async fn until_pool_ready(addr: &str, n: u64) -> anyhow::Result<()> {
    let since = faas_common::clock::instant();
    while metric(addr, "faas_node_service_warm_pool_ready")
        .await
        .unwrap_or(0)
        < n
    {
        anyhow::ensure!(
            since.elapsed() < Duration::from_secs(60),
            "the warm pool did not fill in 60 s"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

fn report(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    let mean = samples.iter().sum::<Duration>() / samples.len() as u32;
    println!(
        "{name:<14} n={:<3} p50={:>7.2} ms  p99={:>7.2} ms  min={:>7.2} ms  max={:>7.2} ms  mean={:>7.2} ms",
        samples.len(),
        percentile_or_zero(&ms, 0.50),
        percentile_or_zero(&ms, 0.99),
        samples[0].as_secs_f64() * 1e3,
        samples[samples.len() - 1].as_secs_f64() * 1e3,
        mean.as_secs_f64() * 1e3,
    );
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let n: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(30)
        .max(1);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (trigger, shutdown) = faas_common::shutdown::channel();
    let mut config = Config::local();
    if std::env::var("FAAS_RUNTIME").as_deref() == Ok("docker") {
        config.runtime = faas_node_service::RuntimeKind::Docker;
        config.node_id = Some("bench".into());
        config.docker_instance = "bench".into();
    }
    config.warm_pool = std::env::var("FAAS_WARM_POOL")
        .ok()
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(0);
    let metrics_addr = if config.warm_pool > 0 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        config.metrics_port = Some(port);
        Some(format!("127.0.0.1:{port}"))
    } else {
        None
    };
    let pool = config.warm_pool as u64;
    println!("runtime {:?}, warm pool {pool}", config.runtime);
    let node = tokio::spawn(run(listener, config, shutdown));
    let mut client = NodeServiceClient::new(faas_common::serve::connect(&addr.to_string()).await?);

    let (mut creates, mut first_invokes) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for i in 0..n {
        if let Some(addr) = &metrics_addr {
            until_pool_ready(addr, pool).await?;
        }
        let started = faas_common::clock::instant();
        let id = client
            .create_container(pb::CreateContainerRequest {
                request_id: format!("cold-{i}"),
                name: "bench".into(),
                function_meta: Some(pb::FunctionMeta {
                    function_name: "bench".into(),
                    handler: "hello".into(),
                    timeout_in_ms: 0,
                    memory_in_bytes: 128 << 20,
                }),
            })
            .await?
            .into_inner()
            .container_id;
        creates.push(started.elapsed());

        let started = faas_common::clock::instant();
        let mut stream = client
            .invoke_function(pb::InvokeFunctionRequest {
                request_id: format!("inv-{i}"),
                container_id: id.clone(),
                event: Vec::new(),
                function_meta: None,
            })
            .await?
            .into_inner();
        while stream.message().await?.is_some() {}
        first_invokes.push(started.elapsed());

        client
            .remove_container(pb::RemoveContainerRequest {
                request_id: format!("rm-{i}"),
                container_id: id,
            })
            .await?;
    }
    report("create", creates);
    report("first invoke", first_invokes);
    if let Some(addr) = &metrics_addr {
        println!(
            "warm pool: {} hits, {} misses",
            metric(addr, "faas_node_service_warm_pool_hits_total").await?,
            metric(addr, "faas_node_service_warm_pool_misses_total").await?
        );
    }

    trigger.trigger();
    node.await??;
    Ok(())
}
