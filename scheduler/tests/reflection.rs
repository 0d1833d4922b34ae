//! The scheduler as `grpcurl` sees it: over gRPC server reflection (`faas_proto::reflection`)
//! it lists exactly its three services, `grpc.health.v1.Health` and both reflection versions,
//! and describes them; its health answers SERVING for the server and for each service
//! (`Probe::verify`). It runs with a cluster token and the probe sends none: reflection and
//! health stay open.

use faas_common::token::TokenArgs;
use faas_proto::reflection::client::Probe;

#[tokio::test]
async fn reflection_lists_and_describes_the_scheduler_and_health_serves_each_service() {
    // A resource manager nobody listens for: the scheduler serves without one.
    let nobody = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let resource_manager = nobody.local_addr().unwrap().to_string();
    drop(nobody);
    let config = faas_scheduler::Config {
        cluster: TokenArgs::with(Some("sched-reflection-token-0123456789".parse().unwrap())),
        ..faas_scheduler::Config::local(resource_manager)
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (trigger, shutdown) = faas_common::shutdown::channel();
    let scheduler = tokio::spawn(faas_scheduler::run(listener, config, shutdown));
    let probe = Probe::new(faas_common::serve::connect(&addr).await.unwrap());

    let served = [
        "schedulerproto.Scheduler",
        "faas.scheduler.v1.SchedulerAdmin",
        "faas.decisions.v1.Decisions",
    ];
    probe.verify(&served).await.unwrap();
    assert_eq!(
        probe.methods("schedulerproto.Scheduler").await.unwrap(),
        ["AcquireContainer", "ReturnContainer"]
    );
    let scheduler_service = probe.describe("schedulerproto.Scheduler").await.unwrap();
    assert_eq!(
        scheduler_service.method[0].input_type(),
        ".schedulerproto.AcquireContainerRequest"
    );

    trigger.trigger();
    scheduler.await.unwrap().unwrap();
}
