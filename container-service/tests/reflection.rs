//! The container service as `grpcurl` sees it: over gRPC server reflection
//! (`faas_proto::reflection`) it lists exactly `faas.container.v1.ContainerService`,
//! `grpc.health.v1.Health` and both reflection versions, and describes them; its health
//! answers SERVING for the server and for the service (`Probe::verify`).

mod support;

use faas_common::units::GIB;
use faas_container_service::run;
use faas_proto::reflection::client::Probe;

#[tokio::test]
async fn reflection_lists_and_describes_the_container_service_and_health_serves_it() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (trigger, stop) = faas_common::shutdown::channel();
    let config = support::config("f", "hello", GIB);
    let server = tokio::spawn(run(listener, config, stop));
    let probe = Probe::new(faas_common::serve::connect(&addr).await.unwrap());

    probe
        .verify(&["faas.container.v1.ContainerService"])
        .await
        .unwrap();
    let methods = probe
        .methods("faas.container.v1.ContainerService")
        .await
        .unwrap();
    for method in ["Invoke", "Status", "Bind", "Logs"] {
        assert!(
            methods.iter().any(|m| m == method),
            "{method} in {methods:?}"
        );
    }

    trigger.trigger();
    server.await.unwrap().unwrap();
}
