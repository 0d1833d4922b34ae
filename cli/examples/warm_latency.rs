//! Measures warm invoke latency through the API server on a local platform: one warm-up
//! call, then N sequential calls of one function; prints p50/p99 of the client-observed
//! latency and of the scheduler's acquire time.
//!
//! `cargo build --release --bins && cargo run --release -p faas-cli --example warm_latency -- 2000 hello`
//!
//! With `auth` as the third argument it measures what the front door costs, in one run: two
//! platforms side by side, one with keys (a data directory, so `DATA_DIR/keys`) and the
//! default per-account limits, one without keys or limits, called in alternating blocks so
//! drift hits both alike; then the key check and the limits alone, in-process, per call.

use faas_apiserver::model::keys::{KeyLine, KeyTable, Scope};
use faas_apiserver::service::access::Access;
use faas_apiserver::service::limits::{Limits, Rule};
use faas_cli::client::Api;
use faas_cli::platform::{LocalPlatform, PlatformOptions};
use faas_common::stats::percentile_or_zero as percentile;

/// Calls per block when two platforms alternate.
const BLOCK: usize = 100;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    faas_common::logging::init("warn");
    let mut args = std::env::args().skip(1);
    let calls: usize = args.next().map_or(Ok(2000), |a| a.parse())?;
    let function = args.next().unwrap_or_else(|| "hello".to_string());
    if args.next().as_deref() == Some("auth") {
        return compare_auth(calls, &function).await;
    }
    let options = PlatformOptions {
        ready_nodes: 2,
        ..PlatformOptions::default()
    };
    let platform = LocalPlatform::start(&options).await?;
    let api = platform.api().await?;
    api.invoke("bench", &function, vec![]).await?;
    let mut latency = Vec::with_capacity(calls);
    let mut acquire = Vec::with_capacity(calls);
    for _ in 0..calls {
        let sent = faas_common::clock::instant();
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

/// `calls` warm calls on each of two platforms, keys and limits on and off, alternating.
async fn compare_auth(calls: usize, function: &str) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("faas-warm-auth-{}", uuid::Uuid::new_v4()));
    let on = LocalPlatform::start(&PlatformOptions {
        ready_nodes: 2,
        data_dir: Some(dir.clone()),
        ..PlatformOptions::default()
    })
    .await?;
    let off = LocalPlatform::start(&PlatformOptions {
        ready_nodes: 2,
        apiserver_args: ["--account-concurrency", "0", "--account-rate", "0"]
            .map(String::from)
            .to_vec(),
        ..PlatformOptions::default()
    })
    .await?;
    anyhow::ensure!(on.api_key().is_some() && off.api_key().is_none());
    let apis = [on.api().await?, off.api().await?];
    for api in &apis {
        api.invoke("bench", function, vec![]).await?;
    }
    let mut latency = [Vec::with_capacity(calls), Vec::with_capacity(calls)];
    while latency[1].len() < calls {
        for (api, samples) in apis.iter().zip(latency.iter_mut()) {
            timed(api, function, BLOCK.min(calls - samples.len()), samples).await?;
        }
    }
    on.stop().await?;
    off.stop().await?;
    let _ = std::fs::remove_dir_all(&dir);
    for (name, samples) in ["keys+limits on ", "keys+limits off"]
        .iter()
        .zip(&mut latency)
    {
        samples.sort_by(f64::total_cmp);
        println!(
            "{name}: {calls} warm calls of {function}: p50 {:.3} ms p99 {:.3} ms",
            percentile(samples, 0.5),
            percentile(samples, 0.99)
        );
    }
    in_process_cost();
    Ok(())
}

async fn timed(api: &Api, function: &str, n: usize, out: &mut Vec<f64>) -> anyhow::Result<()> {
    for _ in 0..n {
        let sent = faas_common::clock::instant();
        api.invoke("bench", function, vec![]).await?;
        out.push(sent.elapsed().as_secs_f64() * 1e3);
    }
    Ok(())
}

/// The key check (three keys in the table) and one account's limits, per call, in-process.
fn in_process_cost() {
    const N: u32 = 200_000;
    let key = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    let lines: Vec<KeyLine> = (0..3)
        .map(|i| KeyLine {
            scope: Scope::Admin,
            name: format!("k{i}"),
            key: format!("{key}{i}"),
        })
        .collect();
    let access = Access::new(KeyTable::from_lines(&lines, "bench").unwrap(), None);
    let header = format!("Bearer {key}2");
    let started = faas_common::clock::instant();
    for _ in 0..N {
        std::hint::black_box(access.check(Some(std::hint::black_box(&header)), Scope::Invoke))
            .unwrap();
    }
    let check_ns = started.elapsed().as_nanos() as f64 / f64::from(N);
    let limits = Limits::new(
        Rule {
            concurrency: 1000,
            rate: 10_000_000,
            burst: 0,
        },
        Default::default(),
    );
    let started = faas_common::clock::instant();
    for i in 0..N {
        drop(limits.admit("bench", u64::from(i) * 1000).unwrap());
    }
    let admit_ns = started.elapsed().as_nanos() as f64 / f64::from(N);
    println!(
        "in-process per call: key check {check_ns:.0} ns, limits admit+release {admit_ns:.0} ns"
    );
}
