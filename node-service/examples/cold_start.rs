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

use std::time::{Duration, Instant};

use faas_node_service::{Config, run};
use faas_proto::nodeservoceproto as pb;
use pb::node_service_client::NodeServiceClient;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn report(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let mean = samples.iter().sum::<Duration>() / samples.len() as u32;
    println!(
        "{name:<14} n={:<3} p50={:>7.2} ms  p99={:>7.2} ms  min={:>7.2} ms  max={:>7.2} ms  mean={:>7.2} ms",
        samples.len(),
        percentile(&samples, 50.0).as_secs_f64() * 1e3,
        percentile(&samples, 99.0).as_secs_f64() * 1e3,
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
    let node = tokio::spawn(run(listener, config, shutdown));
    let mut client = NodeServiceClient::new(faas_common::serve::connect(&addr.to_string()).await?);

    let (mut creates, mut first_invokes) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for i in 0..n {
        let started = Instant::now();
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

        let started = Instant::now();
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

    trigger.trigger();
    node.await??;
    Ok(())
}
