//! The API server as `grpcurl` sees it: over gRPC server reflection (`faas_proto::reflection`)
//! it lists exactly the contest's `apiserverproto.APIServer`, the platform's
//! `faas.admin.v1.Admin`, `faas.invoke.v1.Invocations`, `faas.decisions.v1.Decisions`
//! (the scheduler's decisions, passed through), `faas.events.v1.Events` and `EventAdmin`,
//! `faas.schedules.v1.Schedules` (timers), `grpc.health.v1.Health` and both reflection
//! versions, and describes each; health answers SERVING for the server and every
//! service. Both stay open when the server requires keys, while the services do not.

#![allow(dead_code, unused_imports)]

include!("support/fakes.rs");

#[path = "support/keys.rs"]
mod keys;

use faas_proto::reflection::client::Probe;

const SERVED: [&str; 7] = [
    "apiserverproto.APIServer",
    "faas.admin.v1.Admin",
    "faas.invoke.v1.Invocations",
    "faas.decisions.v1.Decisions",
    "faas.events.v1.Events",
    "faas.events.v1.EventAdmin",
    "faas.schedules.v1.Schedules",
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

    let methods = probe.methods("faas.schedules.v1.Schedules").await.unwrap();
    assert_eq!(
        methods,
        [
            "CreateSchedule",
            "ListSchedules",
            "DeleteSchedule",
            "PauseSchedule"
        ]
    );

    // The services themselves still want a key; schedules an admin one.
    use faas_proto::schedules::{ListSchedulesRequest, schedules_client::SchedulesClient};
    let mut schedules = SchedulesClient::new(channel.clone());
    let refused = schedules
        .list_schedules(ListSchedulesRequest::default())
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    let mut keyed = Request::new(ListSchedulesRequest::default());
    keyed.metadata_mut().insert(
        meta::AUTHORIZATION,
        format!("Bearer {}", keys::INVOKE_KEY).parse().unwrap(),
    );
    let refused = schedules.list_schedules(keyed).await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    let refused = ApiServerClient::new(channel)
        .list_functions(apiserverproto::ListFunctionsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    p.stop().await;
}
