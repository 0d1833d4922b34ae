//! Async calls through the durable queue against synchronous calls, in one run against a
//! running API server: throughput and end-to-end delay (p50, p99).
//!
//! ```text
//! cargo run -p faas-apiserver --example queue_bench -- ADDR [CALLS] [CONCURRENCY] [--queue NAME]
//! ```
//!
//! (`ADDR` the API server's gRPC host:port; the key, if it needs one, in `FAAS_API_KEY`.
//! `--queue` names the queue the server was started with, `sqlite` or `nats://…` as its
//! `--queue`: the server decides where calls are kept, the bench prints the name on every
//! line so two runs side by side say which was which.)
//! First `CALLS` synchronous `InvokeFunction`s of `hello`, `CONCURRENCY` at a time: latency
//! is the client's, submit to reply. Then `CALLS` `InvokeAsync`s of `hello`, `CONCURRENCY`
//! submitters at a time, and every result polled until it finished: the end-to-end delay of
//! a call is the server's `finished_at_ms - submitted_at_ms` (ms resolution), throughput
//! the calls over the time from the first submit to the last result seen. Measured results
//! go to `docs/EXPERIMENTS.md`.

use std::sync::Arc;
use std::time::Duration;

use faas_proto::apiserverproto::InvokeFunctionRequest;
use faas_proto::apiserverproto::api_server_client::ApiServerClient;
use faas_proto::invoke::invocations_client::InvocationsClient;
use faas_proto::invoke::{GetInvocationRequest, InvokeAsyncRequest};
use tokio::sync::Semaphore;
use tonic::Request;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;

fn keyed<T>(message: T) -> Request<T> {
    let mut request = Request::new(message);
    if let Ok(key) = std::env::var("FAAS_API_KEY")
        && let Ok(v) = MetadataValue::try_from(format!("Bearer {key}"))
    {
        request.metadata_mut().insert("authorization", v);
    }
    request
}

fn summary(queue: &str, what: &str, mut ms: Vec<f64>, seconds: f64) {
    ms.sort_by(f64::total_cmp);
    let p = |q| faas_common::stats::percentile_or_zero(&ms, q);
    println!(
        "{queue:<24} {what:<6} {:>6} calls  {:>8.1} calls/s  p50 {:>8.2} ms  p99 {:>8.2} ms",
        ms.len(),
        ms.len() as f64 / seconds,
        p(0.5),
        p(0.99)
    );
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args: Vec<String> = std::env::args().collect();
    let queue = match args.iter().position(|a| a == "--queue") {
        Some(i) if i + 1 < args.len() => {
            let name = args.remove(i + 1);
            args.remove(i);
            name
        }
        Some(_) => anyhow::bail!("--queue needs a name: sqlite or nats://HOST:PORT"),
        None => "sqlite".to_string(),
    };
    let addr = args
        .get(1)
        .cloned()
        .unwrap_or_else(|| "127.0.0.1:10500".into());
    let calls: usize = args.get(2).map_or(Ok(1000), |s| s.parse())?;
    let concurrency: usize = args.get(3).map_or(Ok(16), |s| s.parse())?;
    let channel: Channel = faas_common::serve::connect(&addr).await?;
    let slots = Arc::new(Semaphore::new(concurrency));

    // Synchronous calls.
    let started = faas_common::clock::instant();
    let mut tasks = Vec::new();
    for _ in 0..calls {
        let permit = slots.clone().acquire_owned().await?;
        let mut api = ApiServerClient::new(channel.clone());
        tasks.push(tokio::spawn(async move {
            let t = faas_common::clock::instant();
            let ok = api
                .invoke_function(keyed(InvokeFunctionRequest {
                    account_id: "bench".into(),
                    function_name: "hello".into(),
                    event: b"{}".to_vec(),
                }))
                .await
                .is_ok();
            drop(permit);
            ok.then(|| t.elapsed().as_secs_f64() * 1e3)
        }));
    }
    let mut sync_ms = Vec::new();
    for t in tasks {
        sync_ms.extend(t.await?);
    }
    summary(&queue, "sync", sync_ms, started.elapsed().as_secs_f64());

    // Asynchronous calls: submit all, then read every result.
    let started = faas_common::clock::instant();
    let mut tasks = Vec::new();
    for _ in 0..calls {
        let permit = slots.clone().acquire_owned().await?;
        let mut inv = InvocationsClient::new(channel.clone());
        tasks.push(tokio::spawn(async move {
            let id = inv
                .invoke_async(keyed(InvokeAsyncRequest {
                    function_name: "hello".into(),
                    account_id: "bench".into(),
                    event: b"{}".to_vec(),
                    ..InvokeAsyncRequest::default()
                }))
                .await
                .map(|r| r.into_inner().invocation_id);
            drop(permit);
            id
        }));
    }
    let mut ids = Vec::new();
    for t in tasks {
        ids.push(t.await??);
    }
    let mut inv = InvocationsClient::new(channel.clone());
    let mut async_ms = Vec::new();
    let mut failed = 0;
    for id in ids {
        loop {
            let r = inv
                .get_invocation(keyed(GetInvocationRequest {
                    invocation_id: id.clone(),
                }))
                .await?
                .into_inner();
            match r.state.as_str() {
                "succeeded" => {
                    async_ms.push((r.finished_at_ms - r.submitted_at_ms) as f64);
                    break;
                }
                "failed" | "dead" => {
                    failed += 1;
                    break;
                }
                _ => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        }
    }
    summary(&queue, "async", async_ms, started.elapsed().as_secs_f64());
    if failed > 0 {
        println!("{failed} asynchronous calls failed");
    }
    Ok(())
}
