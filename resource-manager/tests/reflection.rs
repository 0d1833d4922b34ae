//! The resource manager as `grpcurl` sees it: over gRPC server reflection
//! (`faas_proto::reflection`) it lists exactly `resourcemanagerproto.ResourceManager`,
//! `grpc.health.v1.Health` and both reflection versions, and describes them; its health
//! answers SERVING for the server at once and for the service once warmed up
//! (`Probe::verify`). It runs with a cluster token and the probe sends none: reflection and
//! health stay open.

use std::time::Duration;

use faas_common::token::TokenArgs;
use faas_proto::reflection::client::{Probe, ServingStatus};
use faas_resource_manager::{Config, run};

const SERVICE: &str = "resourcemanagerproto.ResourceManager";

#[tokio::test]
async fn reflection_lists_and_describes_the_resource_manager_and_health_serves_it() {
    // No node to warm up, and none started: the node binary is never run.
    let config = Config {
        port: 0,
        ready_nodes: 0,
        max_nodes: 1,
        node_service_bin: Some("/bin/false".into()),
        cluster: TokenArgs::with(Some("rm-reflection-token-0123456789".parse().unwrap())),
        ..Config::default()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (trigger, shutdown) = faas_common::shutdown::channel();
    let manager = tokio::spawn(run(listener, config, shutdown));
    let probe = Probe::new(faas_common::serve::connect(&addr).await.unwrap());

    // The server is SERVING at once, the service once its (empty) warm-up is done.
    assert_eq!(probe.health("").await.unwrap(), ServingStatus::Serving);
    tokio::time::timeout(Duration::from_secs(30), probe.until_serving(SERVICE))
        .await
        .expect("SERVING once warmed up (no node to start)")
        .unwrap();
    probe.verify(&[SERVICE]).await.unwrap();
    assert_eq!(
        probe.methods(SERVICE).await.unwrap(),
        ["ReserveNode", "ReleaseNode", "GetNodesUsage"]
    );

    trigger.trigger();
    manager.await.unwrap().unwrap();
}
