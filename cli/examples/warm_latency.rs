//! Measures warm invoke latency through the API server on a local platform: one warm-up
//! call, then N sequential calls of one function; prints p50/p99 of the client-observed
//! latency and of the scheduler's acquire time.
//!
//! `cargo build --release --bins && cargo run --release -p faas-cli --example warm_latency -- 2000 hello`

use std::time::Instant;

use faas_cli::client::Api;
use faas_cli::demo::percentile;
use faas_cli::platform::{LocalPlatform, PlatformOptions};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    faas_common::logging::init("warn");
    let mut args = std::env::args().skip(1);
    let calls: usize = args.next().map_or(Ok(2000), |a| a.parse())?;
    let function = args.next().unwrap_or_else(|| "hello".to_string());
    let options = PlatformOptions {
        ready_nodes: 2,
        ..PlatformOptions::default()
    };
    let platform = LocalPlatform::start(&options).await?;
    let api = Api::connect(&platform.apiserver.to_string()).await?;
    api.invoke("bench", &function, vec![]).await?;
    let mut latency = Vec::with_capacity(calls);
    let mut acquire = Vec::with_capacity(calls);
    for _ in 0..calls {
        let sent = Instant::now();
        let out = api.invoke("bench", &function, vec![]).await?;
        latency.push(sent.elapsed().as_secs_f64() * 1e3);
        acquire.push(out.acquire_ms.unwrap_or(f64::NAN));
    }
    platform.stop().await?;
    latency.sort_by(f64::total_cmp);
    acquire.sort_by(f64::total_cmp);
    println!(
        "{calls} warm calls of {function}: latency p50 {:.3} ms p99 {:.3} ms | acquire p50 {:.3} ms p99 {:.3} ms",
        percentile(&latency, 0.5),
        percentile(&latency, 0.99),
        percentile(&acquire, 0.5),
        percentile(&acquire, 0.99)
    );
    Ok(())
}
