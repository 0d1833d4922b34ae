//! The node service as `grpcurl` sees it: over gRPC server reflection
//! (`faas_proto::reflection`) it lists exactly `nodeservoceproto.NodeService`,
//! `faas.node.v1.NodeAdmin`, `grpc.health.v1.Health` and both reflection versions, and
//! describes them; its health answers SERVING for the server and for each service
//! (`Probe::verify`). It runs with a cluster token and the probe sends none: reflection and
//! health stay open.

use faas_common::token::TokenArgs;
use faas_node_service::{Config, run};
use faas_proto::reflection::client::Probe;

#[tokio::test]
async fn reflection_lists_and_describes_the_node_service_and_health_serves_each_service() {
    // No warm pool and a container binary that is never run: no child process.
    let config = Config {
        node_id: Some("n-reflection".into()),
        warm_pool: 0,
        container_service_bin: Some("/bin/false".into()),
        cluster: TokenArgs::with(Some("node-reflection-token-0123456789".parse().unwrap())),
        ..Config::local()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (trigger, stop) = faas_common::shutdown::channel();
    let node = tokio::spawn(run(listener, config, stop));
    let probe = Probe::new(faas_common::serve::connect(&addr).await.unwrap());

    let served = ["nodeservoceproto.NodeService", "faas.node.v1.NodeAdmin"];
    probe.verify(&served).await.unwrap();
    let node_service = probe
        .describe("nodeservoceproto.NodeService")
        .await
        .unwrap();
    let methods: Vec<&str> = node_service.method.iter().map(|m| m.name()).collect();
    let contest = [
        "Reserve",
        "CreateContainer",
        "RemoveContainer",
        "InvokeFunction",
        "GetStats",
    ];
    assert_eq!(methods, contest);
    assert!(
        node_service.method[3].server_streaming(),
        "InvokeFunction streams"
    );

    trigger.trigger();
    node.await.unwrap().unwrap();
}
