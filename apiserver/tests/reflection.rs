//! The API server as `grpcurl` sees it: over gRPC server reflection (`faas_proto::reflection`)
//! it lists exactly the contest's `apiserverproto.APIServer`, the platform's
//! `faas.admin.v1.Admin`, `faas.invoke.v1.Invocations`, `faas.decisions.v1.Decisions`
//! (the scheduler's decisions, passed through), `faas.events.v1.Events` and `EventAdmin`,
//! `grpc.health.v1.Health` and both reflection versions, and describes each; health answers SERVING for the server and every
//! service. Both stay open when the server requires keys, while the services do not.

#![allow(dead_code, unused_imports)]

include!("support/fakes.rs");

#[path = "support/keys.rs"]
mod keys;

use faas_proto::reflection::client::Probe;

const SERVED: [&str; 6] = [
    "apiserverproto.APIServer",
    "faas.admin.v1.Admin",
    "faas.invoke.v1.Invocations",
    "faas.decisions.v1.Decisions",
    "faas.events.v1.Events",
    "faas.events.v1.EventAdmin",
];

#[tokio::test]
async fn reflection_lists_and_describes_the_api_server_and_health_serves_it_without_a_key() {
    let dir = tempfile::tempdir().unwrap();
    let p = start(Setup {
        config: Config {
            keys_file: Some(keys::admin_and_invoke(dir.path())),
            ..Config::default()
        },
        ..Setup::default()
    })
    .await;
    let channel = faas_common::serve::connect(&p.addr).await.unwrap();
    let probe = Probe::new(channel.clone());
    probe.verify(&SERVED).await.unwrap();
    let methods = probe.methods("apiserverproto.APIServer").await.unwrap();
    assert_eq!(methods, ["InvokeFunction", "ListFunctions"]);
    let methods = probe.methods("faas.invoke.v1.Invocations").await.unwrap();
    assert_eq!(
        methods,
        ["InvokeAsync", "GetInvocation", "ListDeadLetters", "Redrive"]
    );

    // The services themselves still want a key.
    let refused = ApiServerClient::new(channel)
        .list_functions(apiserverproto::ListFunctionsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    p.stop().await;
}
