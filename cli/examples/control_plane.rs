//! Control-plane load: warm `AcquireContainer` + `ReturnContainer` pairs over gRPC on
//! loopback against a real local platform, open loop at a fixed rate. Prints the achieved
//! rate and the pair latency percentiles.
//!
//! `cargo run --release -p faas-cli --example control_plane -- [RATE=2000] [SECONDS=10] [POLICY=adaptive]`

use std::sync::{Arc, Mutex};
use std::time::Duration;

use faas_cli::platform::{LocalPlatform, PlatformOptions};
use faas_common::stats::percentile_or_zero as percentile;
use faas_common::token::AuthChannel;
use faas_proto::schedulerproto::scheduler_client::SchedulerClient;
use faas_proto::schedulerproto::{AcquireContainerRequest, FunctionConfig, ReturnContainerRequest};

fn acquire_request(id: String) -> AcquireContainerRequest {
    AcquireContainerRequest {
        request_id: id,
        account_id: "bench".into(),
        function_name: "hello".into(),
        function_config: Some(FunctionConfig {
            timeout_in_ms: 60_000,
            memory_in_bytes: 128 << 20,
            handler: "hello".into(),
        }),
    }
}

async fn pair(client: &mut SchedulerClient<AuthChannel>) -> anyhow::Result<()> {
    let id = uuid::Uuid::new_v4().to_string();
    let reply = client
        .acquire_container(acquire_request(id.clone()))
        .await?
        .into_inner();
    client
        .return_container(ReturnContainerRequest {
            request_id: id,
            container_id: reply.container_id,
            duration_in_nanos: 1_000,
            max_memory_usage_in_bytes: 1 << 20,
            ..Default::default()
        })
        .await?;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    faas_common::logging::init("warn");
    let mut args = std::env::args().skip(1);
    let rate: f64 = args.next().map_or(Ok(2000.0), |a| a.parse())?;
    let seconds: u64 = args.next().map_or(Ok(10), |a| a.parse())?;
    let policy = args
        .next()
        .unwrap_or_else(|| faas_scheduler::policies::DEFAULT_POLICY.to_string());
    let platform = LocalPlatform::start(&PlatformOptions {
        ready_nodes: 2,
        policy: policy.clone(),
        ..PlatformOptions::default()
    })
    .await?;
    let channel = faas_common::serve::connect(&platform.scheduler.to_string()).await?;
    let client = SchedulerClient::new(platform.cluster_auth().channel(channel));

    // Warm up: enough containers for the concurrency the rate needs.
    let warm: Vec<_> = (0..16)
        .map(|_| {
            let mut c = client.clone();
            tokio::spawn(async move { pair(&mut c).await })
        })
        .collect();
    for w in warm {
        w.await??;
    }

    let latencies = Arc::new(Mutex::new(Vec::new()));
    let errors = Arc::new(Mutex::new(0usize));
    let start = faas_common::clock::instant();
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    let mut tasks = Vec::new();
    while start.elapsed() < Duration::from_secs(seconds) {
        ticker.tick().await;
        let mut c = client.clone();
        let latencies = latencies.clone();
        let errors = errors.clone();
        tasks.push(tokio::spawn(async move {
            let sent = faas_common::clock::instant();
            match pair(&mut c).await {
                Ok(()) => latencies
                    .lock()
                    .unwrap()
                    .push(sent.elapsed().as_secs_f64() * 1e3),
                Err(_) => *errors.lock().unwrap() += 1,
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let elapsed = start.elapsed().as_secs_f64();
    platform.stop().await?;
    let mut v = latencies.lock().unwrap().clone();
    v.sort_by(f64::total_cmp);
    println!(
        "policy {policy}: {} pairs in {elapsed:.1} s ({:.0}/s), {} errors; acquire+return p50 {:.3} ms p99 {:.3} ms p999 {:.3} ms",
        v.len(),
        v.len() as f64 / elapsed,
        errors.lock().unwrap(),
        percentile(&v, 0.5),
        percentile(&v, 0.99),
        percentile(&v, 0.999),
    );
    Ok(())
}
