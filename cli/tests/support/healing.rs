//! The harness of the self-healing tests (`tests/self_healing_*.rs`, one file per kind of
//! fault): the real local platform with short health timings, a recorded load, and the
//! checks every fault test shares (calls succeed again within [`RECOVERY`], only with
//! statuses a client can act on, nothing left behind). It also re-exports what those tests
//! use, so each starts with `use support::healing::*;`.
//!
//! The tests run one at a time (a lock per test binary; cargo runs test binaries one after
//! another): the process tree then holds one platform's processes, and the two cores are not
//! shared between platforms. Every wait is a poll with a deadline; every test stops its
//! platform, also when it fails.

// A prelude: each test file uses a part of what is re-exported here.
#![allow(unused_imports)]

pub use std::collections::HashSet;
pub use std::future::Future;
pub use std::sync::{Arc, Mutex};
pub use std::time::{Duration, Instant};

pub use super::load::{self, Call, Load, Outcome};
pub use super::observe::{self, NodeLedger};
pub use super::procs;
pub use faas_cli::client::{Api, InvokeOutcome};
pub use faas_cli::platform::PlatformOptions;
pub use faas_common::serve::MAX_MESSAGE_BYTES;
pub use faas_common::token::{AuthChannel, ClusterAuth};
pub use faas_proto::admin::{DeleteFunctionRequest, DeployFunctionRequest, FunctionSpec};
pub use faas_proto::apiserverproto::InvokeFunctionRequest;
pub use faas_proto::apiserverproto::api_server_client::ApiServerClient;
pub use faas_proto::container::BindRequest;
pub use faas_proto::container::container_service_client::ContainerServiceClient;
pub use faas_proto::nodeservoceproto::node_service_client::NodeServiceClient;
pub use faas_proto::nodeservoceproto::{CreateContainerRequest, FunctionMeta};
pub use faas_proto::schedulerproto::scheduler_client::SchedulerClient;
pub use faas_proto::schedulerproto::{
    AcquireContainerRequest, FunctionConfig, ReturnContainerRequest,
};
pub use tonic::transport::Channel;
pub use tonic::{Code, Request, Status};

pub const ACCOUNT: &str = "self-healing";
pub const MIB: i64 = faas_common::units::MIB as i64;
/// How long after a fault calls must succeed again.
pub const RECOVERY: Duration = Duration::from_secs(10);
/// Calls must stay successful this long after the success rate is back.
pub const STAY_HEALTHY: Duration = Duration::from_secs(2);
/// Calls started this recently may not have ended yet: not judged while the load runs.
pub const SETTLE: Duration = Duration::from_millis(1500);
/// The longest a test body may run (a hang fails the test instead of blocking the suite).
pub const TEST_LIMIT: Duration = Duration::from_secs(100);
/// Short health timings, so faults are noticed and healed within seconds.
pub const SCHEDULER_ARGS: [&str; 8] = [
    "--node-lost-after-ms",
    "1500",
    "--probe-timeout-ms",
    "500",
    "--stats-interval-ms",
    "300",
    "--lease-grace-ms",
    "500",
];
pub const RESOURCE_MANAGER_ARGS: [&str; 4] = [
    "--node-probe-interval-ms",
    "300",
    "--node-failed-after-ms",
    "1500",
];

pub static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// What a test body gets: the platform's addresses and clients.
#[derive(Clone)]
pub struct Env {
    pub api: Api,
    pub apiserver: String,
    pub scheduler: String,
    pub resource_manager: String,
    pub scheduler_metrics: u16,
    /// The platform's cluster token, on every call to the scheduler, resource manager, nodes.
    pub auth: ClusterAuth,
    /// Node and container processes seen during the test (checked after the stop).
    pub seen: Arc<Mutex<HashSet<u32>>>,
}

impl Env {
    /// Remembers the platform's current processes (call before killing any).
    pub fn note_processes(&self) {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.extend(procs::platform_pids());
    }

    pub async fn invoke(&self, function: &str, event: &[u8]) -> Result<InvokeOutcome, Status> {
        self.api.invoke(ACCOUNT, function, event.to_vec()).await
    }

    /// The next three calls of `function` succeed.
    pub async fn assert_calls_succeed(&self, function: &str, event: &[u8], when: &str) {
        for i in 0..3 {
            let out = self.invoke(function, event).await;
            assert!(out.is_ok(), "call {i} of {function} {when}: {out:?}");
        }
    }

    /// Deploys `name` (128 MiB) with `handler` and `timeout_ms`; it must succeed.
    pub async fn deploy(&self, name: &str, handler: &str, timeout_ms: i64) {
        let deployed = deploy_spec(&self.api, spec(name, handler, 128 * MIB, timeout_ms)).await;
        if let Err(s) = deployed {
            panic!("deploy {name} with handler {handler}: {s:?}");
        }
    }

    pub async fn scheduler(&self) -> SchedulerClient<AuthChannel> {
        SchedulerClient::new(self.auth.channel(connect(&self.scheduler).await))
    }

    /// A figure of the scheduler's `/metrics` (summed over its labels).
    pub async fn metric(&self, name: &str) -> Option<f64> {
        let text = observe::scrape(self.scheduler_metrics).await?;
        observe::metric(&text, name, &[])
    }

    pub async fn ledger(&self) -> NodeLedger {
        observe::node_ledger(&self.resource_manager, self.scheduler_metrics, &self.auth).await
    }

    /// Polls until the resource manager's reserved nodes are exactly the scheduler's, all
    /// answering, and `gone` is not reserved.
    pub async fn assert_nodes_consistent(&self, gone: &str) {
        let settled = observe::poll(RECOVERY, || async move {
            let ledger = self.ledger().await;
            (ledger.consistent() && !ledger.reserved.iter().any(|id| id == gone)).then_some(())
        })
        .await;
        assert!(
            settled.is_some(),
            "within {RECOVERY:?}, the reserved nodes never matched the scheduler's (node {gone} \
             must be released, every reserved node must answer): {:?}",
            self.ledger().await
        );
    }
}

pub async fn connect(addr: &str) -> Channel {
    faas_common::serve::connect(addr)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {addr}: {e}"))
}

pub fn spec(name: &str, handler: &str, memory: i64, timeout_ms: i64) -> FunctionSpec {
    FunctionSpec {
        name: name.into(),
        handler: handler.into(),
        memory_in_bytes: memory,
        timeout_in_ms: timeout_ms,
        description: "self-healing test".into(),
        ..Default::default()
    }
}

pub async fn deploy_spec(api: &Api, spec: FunctionSpec) -> Result<(), Status> {
    let mut request = Request::new(DeployFunctionRequest {
        function: Some(spec),
    });
    request.set_timeout(Duration::from_secs(5));
    api.admin().deploy_function(request).await.map(|_| ())
}

pub fn mix(calls: &[(&str, &str)]) -> Vec<(String, Vec<u8>)> {
    calls
        .iter()
        .map(|(f, e)| (f.to_string(), e.as_bytes().to_vec()))
        .collect()
}

/// A status a client can act on after a fault: worth a retry (`UNAVAILABLE`), past its
/// deadline, or a failure that says the function may have run. Never `INTERNAL`.
pub fn acceptable_failure(status: &Status) -> bool {
    matches!(status.code(), Code::Unavailable | Code::DeadlineExceeded)
        || (status.code() != Code::Internal && status.message().contains("may have run"))
}

/// Every call ended, and every failure is one a client can act on.
pub fn assert_failures_acceptable(calls: &[Call], origin: Instant) {
    let wrong: Vec<String> = calls
        .iter()
        .filter(|c| match &c.outcome {
            Outcome::Ok(_) => false,
            Outcome::Failed(s) => !acceptable_failure(s),
            Outcome::Unanswered => true,
        })
        .map(|c| c.describe(origin))
        .collect();
    assert!(
        wrong.is_empty(),
        "calls that failed with a status a client cannot act on (or never ended): {wrong:#?}"
    );
}

pub fn failures(calls: &[Call], origin: Instant) -> Vec<String> {
    calls
        .iter()
        .filter(|c| c.ok().is_none())
        .map(|c| c.describe(origin))
        .collect()
}

/// Waits (while the load runs) until the success rate after `fault` is back at 99% and has
/// stayed back [`STAY_HEALTHY`], and calls up to `at_least` have been judged; panics if that
/// does not happen within [`RECOVERY`]. Returns the whole recording.
pub async fn wait_recovered(load: Load, fault: Instant, at_least: Instant) -> Vec<Call> {
    let deadline = at_least.max(fault + RECOVERY) + STAY_HEALTHY + SETTLE;
    let healed = load
        .wait_until(deadline, |calls| {
            let until = faas_common::clock::instant() - SETTLE;
            until >= at_least
                && load::recovered_after(calls, fault, until, Duration::from_secs(1))
                    .is_some_and(|back| fault + back + STAY_HEALTHY <= until)
        })
        .await;
    let calls = load.finish(RECOVERY).await;
    let until = calls
        .last()
        .map_or(fault, |c| c.started + Duration::from_millis(1));
    let back = load::recovered_after(&calls, fault, until, Duration::from_secs(1));
    assert!(
        healed && back.is_some_and(|b| b <= RECOVERY),
        "calls did not succeed again within {RECOVERY:?} of the fault (back after {back:?}); \
         failures (seconds from the fault): {:#?}",
        failures(&calls, fault)
    );
    calls
}

/// Starts a load of `calls` in turn, one every `period`, and waits until 10 succeeded.
pub async fn start_load(env: &Env, calls: &[(&str, &str)], period: Duration) -> Load {
    let load = Load::start(env.api.clone(), ACCOUNT, mix(calls), period);
    let ran = load
        .wait_until(faas_common::clock::instant() + RECOVERY, |calls| {
            calls.iter().filter(|c| c.ok().is_some()).count() >= 10
        })
        .await;
    let now = faas_common::clock::instant();
    assert!(
        ran,
        "the load does not run: {:#?}",
        failures(&load.calls(), now)
    );
    load
}

/// Calls `function` every 100 ms until a call succeeds or `deadline` passes; the success
/// (if any) and every failure on the way (a call unanswered for [`RECOVERY`] included).
pub async fn first_success(
    env: &Env,
    function: &str,
    event: &[u8],
    deadline: Instant,
) -> (Option<InvokeOutcome>, Vec<Status>) {
    let mut failed = Vec::new();
    loop {
        match tokio::time::timeout(RECOVERY, env.invoke(function, event)).await {
            Ok(Ok(out)) => return (Some(out), failed),
            Ok(Err(status)) => failed.push(status),
            Err(_) => failed.push(Status::unknown("test: no answer within the recovery time")),
        }
        if faas_common::clock::instant() >= deadline {
            return (None, failed);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Starts a platform with short health timings, runs `body` on it (bounded by
/// [`TEST_LIMIT`]), always stops the platform, then checks that no node or container process
/// of it is left.
pub async fn on_platform<F, Fut>(policy: &str, body: F)
where
    F: FnOnce(Env) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let _one = ONE_AT_A_TIME.lock().await;
    let scheduler_metrics = observe::free_port();
    let mut scheduler_args: Vec<String> = SCHEDULER_ARGS.iter().map(|s| s.to_string()).collect();
    scheduler_args.extend(["--metrics-port".to_string(), scheduler_metrics.to_string()]);
    let options = PlatformOptions {
        policy: policy.into(),
        scheduler_args,
        resource_manager_args: RESOURCE_MANAGER_ARGS
            .iter()
            .map(|s| s.to_string())
            .collect(),
        // Two unbound containers per node, whatever FAAS_WARM_POOL says.
        node_warm_pool: Some(2),
        ..super::small_options()
    };
    let (platform, api) = super::start(options).await;
    let env = Env {
        api,
        apiserver: platform.apiserver.to_string(),
        scheduler: platform.scheduler.to_string(),
        resource_manager: platform.resource_manager.to_string(),
        scheduler_metrics,
        auth: platform.cluster_auth(),
        seen: Arc::default(),
    };
    let seen = env.seen.clone();
    let ran = tokio::spawn(tokio::time::timeout(TEST_LIMIT, body(env.clone()))).await;
    env.note_processes();
    let stopped = platform.stop().await;
    match ran {
        Err(join) if join.is_panic() => std::panic::resume_unwind(join.into_panic()),
        Err(join) => panic!("the test body was cancelled: {join}"),
        Ok(Err(_)) => panic!("the test body ran longer than {TEST_LIMIT:?}"),
        Ok(Ok(())) => {}
    }
    stopped.expect("the platform stops cleanly");
    let seen = seen.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let left = procs::left_over(&seen);
    assert!(
        left.is_empty(),
        "node or container processes left after the platform stopped: {left:#?}"
    );
}

/// SIGKILLs every container process bound to `function` (there must be one) and waits until
/// they are gone; returns their pids.
pub async fn kill_containers_of(function: &str) -> Vec<u32> {
    let victims = observe::poll(Duration::from_secs(5), || async {
        Some(observe::containers_of(function).await).filter(|c| !c.is_empty())
    })
    .await
    .unwrap_or_else(|| panic!("no container process of {function} answers Status"));
    let pids: Vec<u32> = victims.iter().map(|c| c.pid).collect();
    for &pid in &pids {
        assert!(procs::kill9(pid), "cannot SIGKILL container process {pid}");
    }
    let dead = observe::poll(Duration::from_secs(5), || async {
        pids.iter().all(|&p| !procs::alive(p)).then_some(())
    })
    .await;
    assert!(
        dead.is_some(),
        "container processes {pids:?} survived SIGKILL"
    );
    pids
}
