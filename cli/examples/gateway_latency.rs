//! The HTTP gateway against the gRPC API, warm, in one run: one local platform, one
//! function, the same number of calls in flight through each door in alternating rounds (so
//! the machine's drift hits both alike), then requests/s and latency p50/p99 per door and
//! their ratios.
//!
//! The HTTP side is `wrk` (Debian's package: `apt-get install wrk`), `--latency`, one thread,
//! C keep-alive connections, each with one request in flight, against
//! `GET /function/NAME` on loopback. The gRPC side is this program: C tasks in a closed loop
//! over one HTTP/2 connection (how a gRPC client calls), each timing its own calls.
//!
//! ```sh
//! cargo build --release --bins
//! cargo run --release -p faas-cli --example gateway_latency -- [SECONDS] [CONNECTIONS] [FUNCTION]
//! ```
//!
//! Defaults: 5 s rounds, 1 and 16 in flight (2 rounds each), `hello`.

use std::net::TcpListener;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use faas_cli::client::Api;
use faas_cli::platform::{LocalPlatform, PlatformOptions};
use faas_common::stats::percentile_or_zero as percentile;

/// Rounds per door and concurrency.
const ROUNDS: usize = 2;

/// One door's figures over a round.
#[derive(Clone, Copy, Debug, Default)]
struct Figures {
    per_second: f64,
    p50_ms: f64,
    p99_ms: f64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    faas_common::logging::init("warn");
    let mut args = std::env::args().skip(1);
    let seconds: u64 = args.next().map_or(Ok(5), |a| a.parse())?;
    let connections: Vec<usize> = match args.next() {
        Some(c) => vec![c.parse()?],
        None => vec![1, 16],
    };
    let function = args.next().unwrap_or_else(|| "hello".to_string());
    if Command::new("wrk").arg("--version").output().is_err() {
        bail!("wrk is not installed (apt-get install wrk)");
    }

    let http_port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let platform = LocalPlatform::start(&PlatformOptions {
        ready_nodes: 2,
        http_port,
        ..PlatformOptions::default()
    })
    .await?;
    let api = platform.api().await?;
    let url = format!("http://127.0.0.1:{http_port}/function/{function}");
    // Warm both doors (and enough containers for the widest round).
    api.invoke("bench", &function, vec![]).await?;
    let widest = connections.iter().copied().max().unwrap_or(1);
    let _ = grpc_round(&api, &function, widest, Duration::from_secs(1)).await?;
    let _ = wrk_round(&url, widest, 1)?;

    println!(
        "warm {function}, {seconds} s rounds, {ROUNDS} rounds per door, alternating; release build unless told"
    );
    println!(
        "{:>9} {:>6} {:>12} {:>10} {:>10}",
        "in flight", "door", "calls/s", "p50 ms", "p99 ms"
    );
    for &c in &connections {
        let mut http = Vec::new();
        let mut grpc = Vec::new();
        for _ in 0..ROUNDS {
            http.push(wrk_round(&url, c, seconds)?);
            grpc.push(grpc_round(&api, &function, c, Duration::from_secs(seconds)).await?);
        }
        let (h, g) = (mean(&http), mean(&grpc));
        for (door, f) in [("http", h), ("grpc", g)] {
            println!(
                "{c:>9} {door:>6} {:>12.0} {:>10.3} {:>10.3}",
                f.per_second, f.p50_ms, f.p99_ms
            );
        }
        println!(
            "{c:>9} {:>6} {:>11.2}x {:>9.2}x {:>9.2}x",
            "http/grpc",
            h.per_second / g.per_second,
            h.p50_ms / g.p50_ms,
            h.p99_ms / g.p99_ms
        );
    }
    platform.stop().await?;
    Ok(())
}

fn mean(rounds: &[Figures]) -> Figures {
    let n = rounds.len().max(1) as f64;
    Figures {
        per_second: rounds.iter().map(|f| f.per_second).sum::<f64>() / n,
        p50_ms: rounds.iter().map(|f| f.p50_ms).sum::<f64>() / n,
        p99_ms: rounds.iter().map(|f| f.p99_ms).sum::<f64>() / n,
    }
}

/// `connections` tasks calling `function` in a closed loop for `length`.
async fn grpc_round(
    api: &Api,
    function: &str,
    connections: usize,
    length: Duration,
) -> anyhow::Result<Figures> {
    let function: Arc<str> = Arc::from(function);
    let until = faas_common::clock::instant() + length;
    let started = faas_common::clock::instant();
    let tasks: Vec<_> = (0..connections)
        .map(|_| {
            let (api, function) = (api.clone(), function.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                while faas_common::clock::instant() < until {
                    let sent = faas_common::clock::instant();
                    api.invoke("bench", &function, vec![]).await?;
                    latencies.push(sent.elapsed().as_secs_f64() * 1e3);
                }
                Ok::<_, tonic::Status>(latencies)
            })
        })
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await??);
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort_by(f64::total_cmp);
    Ok(Figures {
        per_second: all.len() as f64 / elapsed,
        p50_ms: percentile(&all, 0.5),
        p99_ms: percentile(&all, 0.99),
    })
}

/// One `wrk` run; its "Requests/sec" and its latency distribution's 50% and 99% lines.
fn wrk_round(url: &str, connections: usize, seconds: u64) -> anyhow::Result<Figures> {
    let out = Command::new("wrk")
        .args(["--latency", "-t1"])
        .arg(format!("-c{connections}"))
        .arg(format!("-d{seconds}s"))
        .arg(url)
        .output()
        .context("running wrk")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || text.contains("Non-2xx") {
        bail!(
            "wrk failed or got errors:\n{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let field = |prefix: &str| -> anyhow::Result<&str> {
        text.lines()
            .map(str::trim)
            .find_map(|l| l.strip_prefix(prefix))
            .map(str::trim)
            .with_context(|| format!("no {prefix:?} line in wrk's output:\n{text}"))
    };
    Ok(Figures {
        per_second: field("Requests/sec:")?.parse()?,
        p50_ms: wrk_ms(field("50%")?)?,
        p99_ms: wrk_ms(field("99%")?)?,
    })
}

/// wrk's latency text (`812.00us`, `1.20ms`, `2.01s`) in ms.
fn wrk_ms(text: &str) -> anyhow::Result<f64> {
    let (number, factor) = if let Some(n) = text.strip_suffix("us") {
        (n, 1e-3)
    } else if let Some(n) = text.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1e3)
    } else {
        bail!("unknown wrk latency {text:?}")
    };
    Ok(number.parse::<f64>()? * factor)
}
