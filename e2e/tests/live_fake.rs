//! The live driver against a fake API server (real gRPC on 127.0.0.1, no platform): it
//! deploys every function, sends open loop (a slow reply never holds back the next send),
//! reads the reply metadata, records errors with their code, and stops by itself when a
//! reply never comes.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use faas_e2e::fault::{FaultInjector, FaultKind, Strike, fault_reports, parse_faults};
use faas_e2e::live::{self, LiveOptions};
use faas_e2e::workload::{FunctionProfile, HandlerKind, Invocation, MIB, Workload};
use faas_proto::admin::admin_server::{Admin, AdminServer};
use faas_proto::admin::{
    DeleteFunctionReply, DeleteFunctionRequest, DeployFunctionReply, DeployFunctionRequest,
    GetFunctionReply, GetFunctionRequest, ListFunctionsReply, ListFunctionsRequest,
};
use faas_proto::apiserverproto::api_server_server::{ApiServer, ApiServerServer};
use faas_proto::apiserverproto::{self as api, InvokeFunctionReply, InvokeFunctionRequest};
use faas_proto::meta;
use tonic::{Request, Response, Status};

#[derive(Default)]
struct Fake {
    deployed: Mutex<HashSet<String>>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    calls: AtomicUsize,
    /// Every call fails with UNAVAILABLE while set (a fault).
    down: AtomicBool,
}

#[derive(Clone)]
struct Shared(Arc<Fake>);

#[tonic::async_trait]
impl ApiServer for Shared {
    async fn invoke_function(
        &self,
        request: Request<InvokeFunctionRequest>,
    ) -> Result<Response<InvokeFunctionReply>, Status> {
        let req = request.into_inner();
        let fake = &self.0;
        if fake.down.load(Ordering::SeqCst) {
            return Err(Status::unavailable("the fake is down"));
        }
        if !fake.deployed.lock().unwrap().contains(&req.function_name) {
            return Err(Status::not_found(format!(
                "function {} not found",
                req.function_name
            )));
        }
        let n = fake.calls.fetch_add(1, Ordering::SeqCst);
        let now = fake.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        fake.max_in_flight.fetch_max(now, Ordering::SeqCst);
        let wait = match req.function_name.as_str() {
            "slow" => Duration::from_millis(400),
            "hang" => Duration::from_secs(3600),
            _ => Duration::ZERO,
        };
        tokio::time::sleep(wait).await;
        fake.in_flight.fetch_sub(1, Ordering::SeqCst);
        let mut reply = Response::new(InvokeFunctionReply {
            request_id: format!("req-{n}"),
            body: b"{}".to_vec(),
            server_side_latency_in_ms: wait.as_millis() as i64,
        });
        let md = reply.metadata_mut();
        md.insert(meta::ACQUIRE_MS, "0.250".parse().unwrap());
        md.insert(
            meta::DURATION_NS,
            (wait.as_nanos() as u64).to_string().parse().unwrap(),
        );
        let cold = if n == 0 { "true" } else { "false" };
        md.insert(meta::COLD_START, cold.parse().unwrap());
        md.insert(meta::CONTAINER_ID, "c-1".parse().unwrap());
        md.insert(meta::NODE_ID, "node-1".parse().unwrap());
        Ok(reply)
    }

    async fn list_functions(
        &self,
        _request: Request<api::ListFunctionsRequest>,
    ) -> Result<Response<api::ListFunctionsReply>, Status> {
        Ok(Response::new(api::ListFunctionsReply::default()))
    }
}

#[tonic::async_trait]
impl Admin for Shared {
    async fn function_logs(
        &self,
        _: Request<faas_proto::admin::FunctionLogsRequest>,
    ) -> Result<Response<faas_proto::admin::FunctionLogsReply>, Status> {
        Err(Status::unimplemented("this fake API server keeps no logs"))
    }
    async fn list_nodes(
        &self,
        _: Request<faas_proto::admin::ListNodesRequest>,
    ) -> Result<Response<faas_proto::admin::ListNodesReply>, Status> {
        Err(Status::unimplemented("this fake API server has no nodes"))
    }
    async fn set_async_retry(
        &self,
        _: Request<faas_proto::admin::SetAsyncRetryRequest>,
    ) -> Result<Response<faas_proto::admin::SetAsyncRetryReply>, Status> {
        Err(Status::unimplemented("this fake API server has no queue"))
    }
    async fn deploy_function(
        &self,
        request: Request<DeployFunctionRequest>,
    ) -> Result<Response<DeployFunctionReply>, Status> {
        let spec = request
            .into_inner()
            .function
            .ok_or_else(|| Status::invalid_argument("no function"))?;
        assert!(spec.memory_in_bytes > 0 && spec.timeout_in_ms > 0);
        self.0.deployed.lock().unwrap().insert(spec.name);
        Ok(Response::new(DeployFunctionReply {
            function: None,
            created: true,
        }))
    }

    async fn get_function(
        &self,
        _request: Request<GetFunctionRequest>,
    ) -> Result<Response<GetFunctionReply>, Status> {
        Err(Status::unimplemented("not in the fake"))
    }

    async fn list_functions(
        &self,
        _request: Request<ListFunctionsRequest>,
    ) -> Result<Response<ListFunctionsReply>, Status> {
        Ok(Response::new(ListFunctionsReply::default()))
    }

    async fn delete_function(
        &self,
        _request: Request<DeleteFunctionRequest>,
    ) -> Result<Response<DeleteFunctionReply>, Status> {
        Err(Status::unimplemented("not in the fake"))
    }

    // The service layer is not the live driver's business (a macro cannot generate these:
    // async_trait rewrites only the methods it sees).
    async fn publish_version(
        &self,
        _request: Request<faas_proto::admin::PublishVersionRequest>,
    ) -> Result<Response<faas_proto::admin::PublishVersionReply>, Status> {
        Err(Status::unimplemented("not in the fake"))
    }

    async fn list_versions(
        &self,
        _request: Request<faas_proto::admin::ListVersionsRequest>,
    ) -> Result<Response<faas_proto::admin::ListVersionsReply>, Status> {
        Err(Status::unimplemented("not in the fake"))
    }

    async fn delete_version(
        &self,
        _request: Request<faas_proto::admin::DeleteVersionRequest>,
    ) -> Result<Response<faas_proto::admin::DeleteVersionReply>, Status> {
        Err(Status::unimplemented("not in the fake"))
    }

    async fn set_alias(
        &self,
        _request: Request<faas_proto::admin::SetAliasRequest>,
    ) -> Result<Response<faas_proto::admin::SetAliasReply>, Status> {
        Err(Status::unimplemented("not in the fake"))
    }

    async fn delete_alias(
        &self,
        _request: Request<faas_proto::admin::DeleteAliasRequest>,
    ) -> Result<Response<faas_proto::admin::DeleteAliasReply>, Status> {
        Err(Status::unimplemented("not in the fake"))
    }

    async fn rollback_alias(
        &self,
        _request: Request<faas_proto::admin::RollbackAliasRequest>,
    ) -> Result<Response<faas_proto::admin::RollbackAliasReply>, Status> {
        Err(Status::unimplemented("not in the fake"))
    }

    async fn set_routes(
        &self,
        _request: Request<faas_proto::admin::SetRoutesRequest>,
    ) -> Result<Response<faas_proto::admin::SetRoutesReply>, Status> {
        Err(Status::unimplemented("not in the fake"))
    }

    async fn describe_function(
        &self,
        _request: Request<faas_proto::admin::DescribeFunctionRequest>,
    ) -> Result<Response<faas_proto::admin::DescribeFunctionReply>, Status> {
        Err(Status::unimplemented("not in the fake"))
    }
}

async fn serve(fake: Arc<Fake>) -> String {
    let listener = faas_common::serve::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let shared = Shared(fake);
    faas_testkit::serve_on(
        listener,
        tonic::transport::Server::builder()
            .add_service(ApiServerServer::new(shared.clone()))
            .add_service(AdminServer::new(shared)),
        std::future::pending(),
    );
    addr
}

fn call(at_ms: u64, function: usize) -> Invocation {
    Invocation {
        at_ms,
        function,
        event: b"{}".to_vec(),
        expected_duration_ms: 0,
        expected_memory_mb: 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_open_loop_records_metadata_and_errors_and_stops_by_itself() {
    let fake = Arc::new(Fake::default());
    let addr = serve(fake.clone()).await;
    let functions = vec![
        FunctionProfile::new("slow", HandlerKind::Sleep, 128 * MIB, 60_000, 400.0),
        FunctionProfile::new("fast", HandlerKind::Hello, 128 * MIB, 60_000, 0.0),
        FunctionProfile::new("hang", HandlerKind::Sleep, 128 * MIB, 60_000, 0.0),
    ];
    // Ten slow calls 20 ms apart: each takes 400 ms, so an open-loop sender has them all out
    // at once. One fast call, one call that never returns.
    let mut calls: Vec<Invocation> = (0..10).map(|i| call(i * 20, 0)).collect();
    calls.push(call(50, 1));
    calls.push(call(60, 2));
    let workload = Workload::new("fake", functions, calls, 300).unwrap();
    let options = LiveOptions {
        apiserver: addr,
        resource_manager: None,
        policy: "fake".into(),
        grace_ms: 1_500,
        progress: false,
        ..LiveOptions::default()
    };
    let run = live::run(&workload, &options).await.unwrap();

    assert_eq!(run.policy, "fake");
    assert_eq!(run.requests.len(), 12);
    assert_eq!(
        fake.deployed.lock().unwrap().len(),
        3,
        "every function deployed"
    );
    // Open loop: the slow calls overlapped.
    assert!(
        fake.max_in_flight.load(Ordering::SeqCst) >= 5,
        "at most {} requests were outstanding together",
        fake.max_in_flight.load(Ordering::SeqCst)
    );
    let slow: Vec<_> = run
        .requests
        .iter()
        .filter(|r| r.function == "slow")
        .collect();
    assert_eq!(slow.len(), 10);
    for r in &slow {
        assert!(r.error.is_none(), "{r:?}");
        assert_eq!(r.scheduling_ms, 0.25);
        assert_eq!(r.duration_ms, 400.0);
        assert!(r.response_ms >= 400.0, "{r:?}");
        assert_eq!(r.container_id.as_deref(), Some("c-1"));
        assert_eq!(r.node_id.as_deref(), Some("node-1"));
    }
    assert_eq!(run.cold_starts(), 1);
    // The call that never returns is cut at the grace and recorded as an error.
    let hang = run.requests.iter().find(|r| r.function == "hang").unwrap();
    assert!(
        hang.error
            .as_deref()
            .is_some_and(|e| e.contains("no reply")),
        "{hang:?}"
    );
    assert!(
        run.notes.iter().any(|n| n.contains("no reply")),
        "{:?}",
        run.notes
    );
    assert!(run.nodes.is_empty() && run.containers.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_function_is_an_error_with_its_code() {
    let fake = Arc::new(Fake::default());
    let addr = serve(fake.clone()).await;
    let functions = vec![FunctionProfile::new(
        "ghost",
        HandlerKind::Hello,
        128 * MIB,
        1_000,
        0.0,
    )];
    let workload = Workload::new("fake", functions, vec![call(0, 0)], 10).unwrap();
    let options = LiveOptions {
        apiserver: addr,
        deploy: false,
        progress: false,
        ..LiveOptions::default()
    };
    let run = live::run(&workload, &options).await.unwrap();
    let r = &run.requests[0];
    assert!(
        r.error
            .as_deref()
            .is_some_and(|e| e.starts_with("NotFound:")),
        "{r:?}"
    );
    assert_eq!(run.errors(), 1);
    // Nothing listens here: the driver says which address it could not reach.
    let options = LiveOptions {
        apiserver: "127.0.0.1:1".into(),
        progress: false,
        ..LiveOptions::default()
    };
    let e = live::run(&workload, &options).await.unwrap_err();
    assert!(e.to_string().contains("127.0.0.1:1"), "{e}");
}

/// Takes the fake down for 300 ms on `restart-apiserver`; cannot strike anything else.
struct DownFor300Ms(Arc<Fake>);

impl FaultInjector for DownFor300Ms {
    async fn inject(&mut self, fault: FaultKind) -> Result<Strike, String> {
        if fault != FaultKind::RestartApiserver {
            return Err(format!("the fake has no {fault}"));
        }
        let at = faas_common::clock::instant();
        self.0.down.store(true, Ordering::SeqCst);
        let fake = self.0.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            fake.down.store(false, Ordering::SeqCst);
        });
        Ok(Strike {
            at,
            target: "the fake, down for 300 ms".into(),
            in_flight: None,
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_strike_at_their_time_and_their_figures_follow() {
    let fake = Arc::new(Fake::default());
    let addr = serve(fake.clone()).await;
    let functions = vec![FunctionProfile::new(
        "fast",
        HandlerKind::Hello,
        128 * MIB,
        60_000,
        0.0,
    )];
    // A call every 10 ms for 2.5 s.
    let calls: Vec<Invocation> = (0..250).map(|i| call(i * 10, 0)).collect();
    let workload = Workload::new("fake", functions, calls, 2_500).unwrap();
    let options = LiveOptions {
        apiserver: addr,
        policy: "fake".into(),
        progress: false,
        ..LiveOptions::default()
    };
    let faults = parse_faults("restart-apiserver@500ms,kill-node@1200ms").unwrap();
    let mut injector = DownFor300Ms(fake.clone());
    let run = live::run_with_faults(&workload, &options, &faults, &mut injector)
        .await
        .unwrap();
    assert_eq!(run.faults.len(), 2);
    let down = &run.faults[0];
    assert_eq!(down.fault, "restart-apiserver@500ms");
    assert!((500..800).contains(&down.at_ms), "{down:?}");
    assert_eq!(down.target, "the fake, down for 300 ms");
    assert_eq!(down.error, None);
    let refused = &run.faults[1];
    assert_eq!(refused.error.as_deref(), Some("the fake has no kill-node"));
    assert!(refused.at_ms >= 1200, "{refused:?}");

    let figures = fault_reports(&run);
    let f = &figures[0];
    // About 30 calls were sent while the fake was down, all failed UNAVAILABLE; the calls
    // sent after it came back all succeeded.
    // (Bounds wide enough for a loaded machine: the down time is 300 ms of wall clock.)
    assert!((10..=60).contains(&f.failed_after), "{f:?}");
    assert_eq!(f.failed_by_status["UNAVAILABLE"], f.failed_after);
    // Every failure was sent after the fault, or in flight (on its way) when it struck: no
    // call sent well before it failed. (A call due a moment before the fault may leave late
    // on a loaded machine and meet the fake down, so "well" is 50 ms.)
    let early: Vec<_> = run
        .requests
        .iter()
        .filter(|r| r.error.is_some() && r.at_ms + 50 < f.at_ms)
        .collect();
    assert!(early.is_empty(), "{f:?}: {early:?}");
    assert!(run.errors() <= f.failed_after + 10, "{f:?}");
    // The kill-node that could not strike does not end its calls: they run to the end.
    assert!((170..=200).contains(&f.sent_after), "{f:?}");
    let (first, back) = (f.first_success_ms.unwrap(), f.recovered_ms.unwrap());
    assert!((250.0..1500.0).contains(&first), "{f:?}");
    assert!(back >= first && back < 2000.0, "{f:?}");
    // The fault that could not strike counts no call in flight; its calls all succeeded.
    assert_eq!((figures[1].in_flight, figures[1].failed_after), (0, 0));
    // A fault past the run is refused before anything is sent.
    let late = parse_faults("kill-node@3s").unwrap();
    let e = live::run_with_faults(&workload, &options, &late, &mut injector)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("not within the run"), "{e}");
}
