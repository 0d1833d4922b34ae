//! What the service layer adds to a warm call: plain `hello` (a function with no versions,
//! aliases or routes) against `shop` (the same handler) called three ways: `shop:1` (a
//! version), `shop:live` (an alias, weighted pick) and `shop` through a full route policy (a
//! regex rule tried and missed, the default `shop:live`, a fallback and a closed breaker that
//! records every call). Sequential calls, interleaved in rounds so the machine's noise falls
//! on all alike; prints p50/p99 per way and the ratio to plain.
//!
//! `cargo build --release --bins && cargo run --release -p faas-cli --example routing_latency -- 10 200`

use faas_cli::platform::{LocalPlatform, PlatformOptions};
use faas_common::stats::percentile_or_zero as percentile;
use faas_proto::admin;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    faas_common::logging::init("warn");
    let mut args = std::env::args().skip(1);
    let rounds: usize = args.next().map_or(Ok(10), |a| a.parse())?;
    let per_round: usize = args.next().map_or(Ok(200), |a| a.parse())?;
    let platform = LocalPlatform::start(&PlatformOptions {
        ready_nodes: 2,
        ..PlatformOptions::default()
    })
    .await?;
    let api = platform.api().await?;
    let mut admin = api.admin();
    admin
        .deploy_function(admin::DeployFunctionRequest {
            function: Some(admin::FunctionSpec {
                name: "shop".into(),
                handler: "hello".into(),
                memory_in_bytes: 128 << 20,
                timeout_in_ms: 60_000,
                description: String::new(),
                ..Default::default()
            }),
        })
        .await?;
    admin
        .publish_version(admin::PublishVersionRequest {
            name: "shop".into(),
            ..Default::default()
        })
        .await?;
    admin
        .set_alias(admin::SetAliasRequest {
            function: "shop".into(),
            alias: "live".into(),
            targets: vec![admin::AliasWeight {
                version: 1,
                weight: 100,
            }],
        })
        .await?;
    admin
        .set_routes(admin::SetRoutesRequest {
            function: "shop".into(),
            routes: Some(admin::RoutePolicy {
                default_target: "shop:live".into(),
                rules: vec![admin::RouteRule {
                    route_id_regex: "^canary-[0-9]+$".into(),
                    target: "shop".into(),
                    ..Default::default()
                }],
                fallback: Some(admin::Fallback {
                    target: "shop".into(),
                    on_error: true,
                    on_timeout: true,
                    ..Default::default()
                }),
                breaker: Some(admin::Breaker {
                    latency_baseline_ms: 1_000,
                    ..Default::default()
                }),
            }),
        })
        .await?;
    let ways = ["hello", "shop:1", "shop:live", "shop"];
    for name in ways {
        api.invoke("bench", name, vec![]).await?;
    }
    let mut latency: Vec<Vec<f64>> = vec![Vec::with_capacity(rounds * per_round); ways.len()];
    for _ in 0..rounds {
        for (i, name) in ways.iter().enumerate() {
            for _ in 0..per_round {
                let sent = faas_common::clock::instant();
                api.invoke("bench", name, vec![]).await?;
                latency[i].push(sent.elapsed().as_secs_f64() * 1e3);
            }
        }
    }
    platform.stop().await?;
    let mut plain = (0.0, 0.0);
    println!(
        "{} warm calls each, in {rounds} interleaved rounds",
        rounds * per_round
    );
    println!(
        "{:<34} {:>9} {:>9} {:>7}",
        "call", "p50 ms", "p99 ms", "p50 ×"
    );
    for (i, name) in ways.iter().enumerate() {
        let l = &mut latency[i];
        l.sort_by(f64::total_cmp);
        let (p50, p99) = (percentile(l, 0.5), percentile(l, 0.99));
        if i == 0 {
            plain = (p50, p99);
        }
        let label = match *name {
            "hello" => "hello (plain, no routing data)",
            "shop:1" => "shop:1 (a version)",
            "shop:live" => "shop:live (an alias)",
            _ => "shop (rules, default, breaker)",
        };
        println!("{label:<34} {p50:>9.3} {p99:>9.3} {:>7.2}", p50 / plain.0);
    }
    Ok(())
}
