//! Self-healing (issue 10, `docs/CONVENTIONS.md`, "Self-healing") on the real local platform: the
//! resource manager, scheduler and API server in-process, node services and containers as
//! real child processes. Each test injects one fault (SIGKILL a node or a container, SIGSTOP
//! a node, redeploy a function under load, hold a lease) and asserts that calls succeed again
//! within the recovery time, only with statuses a client can act on, and that nothing leaks.
//!
//! The tests run one at a time (a lock): the process tree then holds one platform's
//! processes, and the two cores are not shared between platforms. Every wait is a poll with
//! a deadline; every test stops its platform, also when it fails.

mod support;

use std::collections::HashSet;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use faas_cli::client::{Api, InvokeOutcome};
use faas_cli::platform::PlatformOptions;
use faas_common::serve::MAX_MESSAGE_BYTES;
use faas_common::token::{AuthChannel, ClusterAuth};
use faas_proto::admin::{DeleteFunctionRequest, DeployFunctionRequest, FunctionSpec};
use faas_proto::apiserverproto::InvokeFunctionRequest;
use faas_proto::apiserverproto::api_server_client::ApiServerClient;
use faas_proto::container::BindRequest;
use faas_proto::container::container_service_client::ContainerServiceClient;
use faas_proto::nodeservoceproto::node_service_client::NodeServiceClient;
use faas_proto::nodeservoceproto::{CreateContainerRequest, FunctionMeta};
use faas_proto::schedulerproto::scheduler_client::SchedulerClient;
use faas_proto::schedulerproto::{AcquireContainerRequest, FunctionConfig, ReturnContainerRequest};
use support::load::{self, Call, Load, Outcome};
use support::observe::{self, NodeLedger};
use support::procs;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

const ACCOUNT: &str = "self-healing";
const MIB: i64 = 1 << 20;
/// How long after a fault calls must succeed again.
const RECOVERY: Duration = Duration::from_secs(10);
/// Calls must stay successful this long after the success rate is back.
const STAY_HEALTHY: Duration = Duration::from_secs(2);
/// Calls started this recently may not have ended yet: not judged while the load runs.
const SETTLE: Duration = Duration::from_millis(1500);
/// The longest a test body may run (a hang fails the test instead of blocking the suite).
const TEST_LIMIT: Duration = Duration::from_secs(100);
/// Short health timings, so faults are noticed and healed within seconds.
const SCHEDULER_ARGS: [&str; 8] = [
    "--node-lost-after-ms",
    "1500",
    "--probe-timeout-ms",
    "500",
    "--stats-interval-ms",
    "300",
    "--lease-grace-ms",
    "500",
];
const RESOURCE_MANAGER_ARGS: [&str; 4] = [
    "--node-probe-interval-ms",
    "300",
    "--node-failed-after-ms",
    "1500",
];

static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// What a test body gets: the platform's addresses and clients.
#[derive(Clone)]
struct Env {
    api: Api,
    apiserver: String,
    scheduler: String,
    resource_manager: String,
    scheduler_metrics: u16,
    /// The platform's cluster token, on every call to the scheduler, resource manager, nodes.
    auth: ClusterAuth,
    /// Node and container processes seen during the test (checked after the stop).
    seen: Arc<Mutex<HashSet<u32>>>,
}

impl Env {
    /// Remembers the platform's current processes (call before killing any).
    fn note_processes(&self) {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.extend(procs::platform_pids());
    }

    async fn invoke(&self, function: &str, event: &[u8]) -> Result<InvokeOutcome, Status> {
        self.api.invoke(ACCOUNT, function, event.to_vec()).await
    }

    /// The next three calls of `function` succeed.
    async fn assert_calls_succeed(&self, function: &str, event: &[u8], when: &str) {
        for i in 0..3 {
            let out = self.invoke(function, event).await;
            assert!(out.is_ok(), "call {i} of {function} {when}: {out:?}");
        }
    }

    /// Deploys `name` (128 MiB) with `handler` and `timeout_ms`; it must succeed.
    async fn deploy(&self, name: &str, handler: &str, timeout_ms: i64) {
        let deployed = deploy_spec(&self.api, spec(name, handler, 128 * MIB, timeout_ms)).await;
        if let Err(s) = deployed {
            panic!("deploy {name} with handler {handler}: {s:?}");
        }
    }

    async fn scheduler(&self) -> SchedulerClient<AuthChannel> {
        SchedulerClient::new(self.auth.channel(connect(&self.scheduler).await))
    }

    /// A figure of the scheduler's `/metrics` (summed over its labels).
    async fn metric(&self, name: &str) -> Option<f64> {
        let text = observe::scrape(self.scheduler_metrics).await?;
        observe::metric(&text, name, &[])
    }

    async fn ledger(&self) -> NodeLedger {
        observe::node_ledger(&self.resource_manager, self.scheduler_metrics, &self.auth).await
    }

    /// Polls until the resource manager's reserved nodes are exactly the scheduler's, all
    /// answering, and `gone` is not reserved.
    async fn assert_nodes_consistent(&self, gone: &str) {
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

async fn connect(addr: &str) -> Channel {
    faas_common::serve::connect(addr)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {addr}: {e}"))
}

fn spec(name: &str, handler: &str, memory: i64, timeout_ms: i64) -> FunctionSpec {
    FunctionSpec {
        name: name.into(),
        handler: handler.into(),
        memory_in_bytes: memory,
        timeout_in_ms: timeout_ms,
        description: "self-healing test".into(),
        ..Default::default()
    }
}

async fn deploy_spec(api: &Api, spec: FunctionSpec) -> Result<(), Status> {
    let mut request = Request::new(DeployFunctionRequest {
        function: Some(spec),
    });
    request.set_timeout(Duration::from_secs(5));
    api.admin().deploy_function(request).await.map(|_| ())
}

fn mix(calls: &[(&str, &str)]) -> Vec<(String, Vec<u8>)> {
    calls
        .iter()
        .map(|(f, e)| (f.to_string(), e.as_bytes().to_vec()))
        .collect()
}

/// A status a client can act on after a fault: worth a retry (`UNAVAILABLE`), past its
/// deadline, or a failure that says the function may have run. Never `INTERNAL`.
fn acceptable_failure(status: &Status) -> bool {
    matches!(status.code(), Code::Unavailable | Code::DeadlineExceeded)
        || (status.code() != Code::Internal && status.message().contains("may have run"))
}

/// Every call ended, and every failure is one a client can act on.
fn assert_failures_acceptable(calls: &[Call], origin: Instant) {
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

fn failures(calls: &[Call], origin: Instant) -> Vec<String> {
    calls
        .iter()
        .filter(|c| c.ok().is_none())
        .map(|c| c.describe(origin))
        .collect()
}

/// Waits (while the load runs) until the success rate after `fault` is back at 99% and has
/// stayed back [`STAY_HEALTHY`], and calls up to `at_least` have been judged; panics if that
/// does not happen within [`RECOVERY`]. Returns the whole recording.
async fn wait_recovered(load: Load, fault: Instant, at_least: Instant) -> Vec<Call> {
    let deadline = at_least.max(fault + RECOVERY) + STAY_HEALTHY + SETTLE;
    let healed = load
        .wait_until(deadline, |calls| {
            let until = Instant::now() - SETTLE;
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
async fn start_load(env: &Env, calls: &[(&str, &str)], period: Duration) -> Load {
    let load = Load::start(env.api.clone(), ACCOUNT, mix(calls), period);
    let ran = load
        .wait_until(Instant::now() + RECOVERY, |calls| {
            calls.iter().filter(|c| c.ok().is_some()).count() >= 10
        })
        .await;
    let now = Instant::now();
    assert!(
        ran,
        "the load does not run: {:#?}",
        failures(&load.calls(), now)
    );
    load
}

/// Calls `function` every 100 ms until a call succeeds or `deadline` passes; the success
/// (if any) and every failure on the way (a call unanswered for [`RECOVERY`] included).
async fn first_success(
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
        if Instant::now() >= deadline {
            return (None, failed);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Starts a platform with short health timings, runs `body` on it (bounded by
/// [`TEST_LIMIT`]), always stops the platform, then checks that no node or container process
/// of it is left.
async fn on_platform<F, Fut>(policy: &str, body: F)
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
        ..support::small_options()
    };
    let (platform, api) = support::start(options).await;
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
async fn kill_containers_of(function: &str) -> Vec<u32> {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_node_is_replaced_and_nothing_leaks() {
    on_platform("adaptive", |env| async move {
        let warm = env
            .invoke("hello", b"{}")
            .await
            .expect("hello before the fault");
        let load = start_load(
            &env,
            &[("hello", "{}"), ("sleep", r#"{"ms":50}"#)],
            Duration::from_millis(30),
        )
        .await;
        // The node holding hello's warm container: where the latest hello call ran.
        let node_id = load
            .calls()
            .iter()
            .rev()
            .filter(|c| c.function == "hello")
            .find_map(|c| c.ok()?.node_id.clone())
            .or(warm.node_id)
            .expect("x-faas-node-id on hello's reply");
        let victim = procs::node(&node_id)
            .unwrap_or_else(|| panic!("no node-service process with --node-id {node_id}"));
        env.note_processes();
        let fault = Instant::now();
        assert!(procs::kill9(victim.pid), "cannot SIGKILL node {node_id}");

        // A function never called before is served within the recovery time.
        let (fresh, fresh_failures) =
            first_success(&env, "cpu", br#"{"rounds":1000}"#, fault + RECOVERY).await;
        assert!(
            fresh.is_some(),
            "cpu (never called before) failed for {RECOVERY:?} after node {node_id} was \
             killed: {fresh_failures:#?}"
        );
        let wrong: Vec<&Status> = fresh_failures
            .iter()
            .filter(|s| !acceptable_failure(s))
            .collect();
        assert!(
            wrong.is_empty(),
            "cpu failed with statuses a client cannot act on: {wrong:#?}"
        );

        let calls = wait_recovered(load, fault, fault + Duration::from_secs(5)).await;
        assert_failures_acceptable(&calls, fault);

        // The killed process is reaped: no zombie anywhere under this process.
        let reaped = observe::poll(Duration::from_secs(5), || async {
            (!procs::zombie(victim.pid) && procs::unreaped().is_empty()).then_some(())
        })
        .await;
        assert!(
            reaped.is_some(),
            "the killed node-service {} was not reaped: zombies under the test process {:?}",
            victim.pid,
            procs::unreaped()
        );
        // The resource manager reserves exactly the nodes the scheduler holds; the dead node
        // is released.
        env.assert_nodes_consistent(&node_id).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_idle_container_is_replaced_without_an_error() {
    on_platform("adaptive", |env| async move {
        env.deploy("idle-victim", "hello", 10_000).await;
        let first = env.invoke("idle-victim", b"{}").await.expect("first call");

        // Killed just before the next call: that call still succeeds (retried or replaced).
        env.note_processes();
        kill_containers_of("idle-victim").await;
        let next = env
            .invoke("idle-victim", b"{}")
            .await
            .unwrap_or_else(|s| panic!("the first call after its container was killed: {s:?}"));
        assert_ne!(
            next.container_id, first.container_id,
            "served by the killed container"
        );

        // Killed, and seen dead by the node's stats before the next call.
        env.note_processes();
        let deaths = env
            .metric("scheduler_container_deaths_total")
            .await
            .unwrap_or(0.0);
        kill_containers_of("idle-victim").await;
        // Give the scheduler's stats polls (every 300 ms) the chance to see it first.
        observe::poll(Duration::from_secs(3), || async {
            env.metric("scheduler_container_deaths_total")
                .await
                .filter(|&d| d > deaths)
        })
        .await;
        env.assert_calls_succeed(
            "idle-victim",
            b"{}",
            "after the stats saw the container die",
        )
        .await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_busy_container_fails_its_call_clearly_and_is_replaced() {
    on_platform("adaptive", |env| async move {
        env.deploy("busy-victim", "sleep", 20_000).await;
        env.invoke("busy-victim", br#"{"ms":1}"#)
            .await
            .expect("warm-up call");
        let long = {
            let env = env.clone();
            tokio::spawn(async move { env.invoke("busy-victim", br#"{"ms":2000}"#).await })
        };
        let busy = observe::poll(Duration::from_secs(5), || async {
            observe::containers_of("busy-victim")
                .await
                .into_iter()
                .find(|c| c.status.in_flight >= 1)
        })
        .await
        .expect("a busy-victim container with the 2 s call in flight");
        env.note_processes();
        assert!(
            procs::kill9(busy.pid),
            "cannot SIGKILL container process {}",
            busy.pid
        );

        let answer = tokio::time::timeout(RECOVERY, long)
            .await
            .expect("the call whose container was killed is answered")
            .expect("the call task");
        let status = answer.expect_err("a call whose container was killed mid-run cannot succeed");
        assert_ne!(status.code(), Code::Internal, "{status:?}");
        assert!(
            status.message().contains("may have run"),
            "the status must say the function may have run: {status:?}"
        );
        env.assert_calls_succeed(
            "busy-victim",
            br#"{"ms":10}"#,
            "after the busy container was killed",
        )
        .await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stopped_node_is_given_up_and_never_used_again() {
    const TIMEOUT_MS: u64 = 1000;
    const PAUSE: Duration = Duration::from_secs(5);
    on_platform("adaptive", |env| async move {
        env.deploy("pause-victim", "sleep", TIMEOUT_MS as i64).await;
        env.invoke("pause-victim", br#"{"ms":1}"#)
            .await
            .expect("warm-up call");
        let load = start_load(
            &env,
            &[
                ("pause-victim", r#"{"ms":50}"#),
                ("pause-victim", r#"{"ms":700}"#),
            ],
            Duration::from_millis(30),
        )
        .await;
        let busy = observe::poll(Duration::from_secs(5), || async {
            observe::containers_of("pause-victim")
                .await
                .into_iter()
                .max_by_key(|c| c.status.in_flight)
                .filter(|c| c.status.in_flight >= 1)
        })
        .await
        .expect("a pause-victim container with calls in flight");
        let node_id = busy.node_id.clone();
        env.note_processes();
        let paused = procs::Paused::stop(busy.node_pid);
        let fault = Instant::now();

        // The calls in flight at the stop end by their deadline, not when the node continues.
        let bound = Duration::from_millis(TIMEOUT_MS) + Duration::from_secs(3);
        let in_flight: Vec<Instant> = load::in_flight_at(&load.calls(), fault)
            .iter()
            .map(|c| c.started)
            .collect();
        let latest = in_flight.iter().max().copied().unwrap_or(fault);
        load.wait_until(latest + bound, |calls| {
            calls
                .iter()
                .filter(|c| in_flight.contains(&c.started))
                .all(|c| c.ended.is_some())
        })
        .await;
        // The fault lasts PAUSE (longer than `bound`, so a hanging call shows).
        tokio::time::sleep_until((fault + PAUSE).into()).await;
        paused.resume();
        let resumed = Instant::now();

        let calls = wait_recovered(load, fault, resumed + STAY_HEALTHY).await;
        let stuck: Vec<String> = load::in_flight_at(&calls, fault)
            .into_iter()
            .filter(|c| {
                c.ended.is_none_or(|e| e > c.started + bound)
                    || c.status().is_some_and(|s| {
                        !matches!(s.code(), Code::Unavailable | Code::DeadlineExceeded)
                    })
            })
            .map(|c| c.describe(fault))
            .collect();
        assert!(
            stuck.is_empty(),
            "calls in flight on the stopped node must end by {bound:?} after they started with \
             UNAVAILABLE or DEADLINE_EXCEEDED: {stuck:#?}"
        );
        let cut_off = load::in_flight_at(&calls, fault)
            .iter()
            .filter(|c| c.ok().is_none())
            .count();
        assert!(
            cut_off >= 1,
            "no call was in flight on the stopped node: the test set-up failed"
        );
        assert_failures_acceptable(&calls, fault);
        let on_old_node: Vec<String> = calls
            .iter()
            .filter(|c| c.started >= resumed)
            .filter(|c| c.ok().and_then(|o| o.node_id.as_deref()) == Some(node_id.as_str()))
            .map(|c| c.describe(fault))
            .collect();
        assert!(
            on_old_node.is_empty(),
            "node {node_id} was handed work again after it continued: {on_old_node:#?}"
        );
        env.assert_nodes_consistent(&node_id).await;
        let stopped = observe::poll(RECOVERY, || async {
            (!procs::alive(busy.node_pid)).then_some(())
        })
        .await;
        assert!(
            stopped.is_some(),
            "the node-service of lost node {node_id} (pid {}) still runs after it continued",
            busy.node_pid
        );
    })
    .await;
}

/// The handler whose body `body` is, for event `{"name":"x"}`.
fn handler_of(body: &[u8]) -> Option<&'static str> {
    if body == br#"{"name":"x"}"# {
        return Some("echo");
    }
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    (value["message"] == "Hello, x!").then_some("hello")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redeploying_and_deleting_under_load_gives_only_documented_statuses() {
    on_platform("adaptive", |env| async move {
        env.deploy("flip", "echo", 10_000).await;
        let origin = Instant::now();
        env.invoke("flip", br#"{"name":"x"}"#)
            .await
            .expect("warm-up call");
        let load = start_load(
            &env,
            &[("flip", r#"{"name":"x"}"#)],
            Duration::from_millis(20),
        )
        .await;
        let enough_after = |t: Instant, n: usize| {
            move |calls: &[Call]| {
                calls
                    .iter()
                    .filter(|c| c.started >= t && c.ended.is_some())
                    .count()
                    >= n
            }
        };

        // (began, returned, handler; None = deleted)
        let mut versions: Vec<(Instant, Instant, Option<&str>)> =
            vec![(origin, origin, Some("echo"))];
        for handler in ["hello", "echo"] {
            let began = Instant::now();
            env.deploy("flip", handler, 10_000).await;
            let returned = Instant::now();
            versions.push((began, returned, Some(handler)));
            load.wait_until(returned + RECOVERY, enough_after(returned, 25))
                .await;
        }
        let began = Instant::now();
        let mut delete = Request::new(DeleteFunctionRequest {
            name: "flip".into(),
        });
        delete.set_timeout(Duration::from_secs(5));
        env.api
            .admin()
            .delete_function(delete)
            .await
            .expect("delete flip");
        let returned = Instant::now();
        versions.push((began, returned, None));
        load.wait_until(returned + RECOVERY, enough_after(returned, 10))
            .await;
        let calls = load.finish(RECOVERY).await;

        let mut wrong = Vec::new();
        for call in &calls {
            let ended = call.ended.unwrap_or_else(Instant::now);
            // The version in force when the call started, and any deployed while it ran.
            let mut allowed: Vec<Option<&str>> = versions
                .iter()
                .rev()
                .find(|v| v.1 <= call.started)
                .map(|v| v.2)
                .into_iter()
                .collect();
            allowed.extend(
                versions
                    .iter()
                    .filter(|v| v.0 < ended && v.1 > call.started)
                    .map(|v| v.2),
            );
            let fine = match &call.outcome {
                Outcome::Ok(out) => {
                    handler_of(&out.body).is_some_and(|h| allowed.contains(&Some(h)))
                }
                Outcome::Failed(s) => s.code() == Code::NotFound && allowed.contains(&None),
                Outcome::Unanswered => false,
            };
            if !fine {
                let body = call
                    .ok()
                    .map(|o| String::from_utf8_lossy(&o.body).into_owned());
                wrong.push(format!(
                    "{} (allowed {allowed:?}, body {body:?})",
                    call.describe(origin)
                ));
            }
        }
        assert!(
            wrong.is_empty(),
            "calls that got an old body after a deploy returned, or a status other than NOT_FOUND \
             for a deleted function (seconds from the start; deploys at {:?}): {wrong:#?}",
            versions
                .iter()
                .map(|v| (v.1 - origin).as_secs_f64())
                .collect::<Vec<_>>()
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lease_held_past_its_timeout_is_reclaimed() {
    on_platform("baseline", |env| async move {
        env.deploy("leased", "hello", 500).await;
        let mut scheduler = env.scheduler().await;
        // Acquired like an API server that crashes before it returns the container.
        let mut acquire = Request::new(AcquireContainerRequest {
            request_id: "held-lease".into(),
            account_id: ACCOUNT.into(),
            function_name: "leased".into(),
            function_config: Some(FunctionConfig {
                timeout_in_ms: 500,
                memory_in_bytes: 128 * MIB,
                handler: "hello".into(),
            }),
        });
        acquire.set_timeout(Duration::from_secs(10));
        let held = scheduler
            .acquire_container(acquire)
            .await
            .expect("acquire for the held lease")
            .into_inner();
        let leases = env.metric("scheduler_leases").await;
        assert_eq!(
            leases,
            Some(1.0),
            "the scheduler's leases gauge while the lease is held"
        );

        // Reclaimed after the timeout (500 ms) plus the grace (500 ms).
        let reclaimed = observe::poll(RECOVERY, || async {
            env.metric("scheduler_leases").await.filter(|&n| n == 0.0)
        })
        .await;
        assert!(
            reclaimed.is_some(),
            "the lease was still held {RECOVERY:?} after its timeout: scheduler_leases {:?}",
            env.metric("scheduler_leases").await
        );

        // The container is usable again (one request per container: reused warm), or removed.
        let next = env
            .invoke("leased", b"{}")
            .await
            .expect("the call after the lease expired");
        let reused = next.container_id.as_deref() == Some(held.container_id.as_str())
            && next.cold == Some(false);
        if !reused {
            let node = format!("{}:{}", held.node_address, held.node_service_port);
            let stats = observe::node_stats(&node, &env.auth)
                .await
                .expect("the held container's node answers");
            assert!(
                !stats
                    .container_stats_list
                    .iter()
                    .any(|c| c.container_id == held.container_id),
                "container {} of the expired lease was neither reused warm ({next:?}) nor removed",
                held.container_id
            );
        }

        let late = scheduler
            .return_container(ReturnContainerRequest {
                request_id: "held-lease".into(),
                container_id: held.container_id.clone(),
                ..Default::default()
            })
            .await;
        assert_eq!(
            late.as_ref().err().map(Status::code),
            Some(Code::FailedPrecondition),
            "a late return of a reclaimed lease: {late:?}"
        );
    })
    .await;
}

/// Sends `body` as the request message of gRPC method `path` at `addr` (5 s at most).
/// The call carries the cluster token, `auth`.
async fn raw_call(
    auth: &ClusterAuth,
    addr: &str,
    path: &'static str,
    body: &[u8],
) -> Result<Vec<u8>, Status> {
    let channel = auth.channel(connect(addr).await);
    let call = faas_proto::codec::call_raw(channel, path, body.to_vec());
    tokio::time::timeout(Duration::from_secs(5), call)
        .await
        .unwrap_or_else(|_| Err(Status::deadline_exceeded("test: no answer within 5 s")))
}

/// Records `what` in `wrong` unless `result` failed with INVALID_ARGUMENT.
fn expect_invalid<T: std::fmt::Debug>(
    wrong: &mut Vec<String>,
    what: String,
    result: Result<T, Status>,
) {
    expect_code(wrong, &what, result, Code::InvalidArgument);
}

/// Records `what` in `wrong` unless `result` failed with `code`.
fn expect_code<T: std::fmt::Debug>(
    wrong: &mut Vec<String>,
    what: &str,
    result: Result<T, Status>,
    code: Code,
) {
    match result {
        Err(s) if s.code() == code => {}
        Err(s) => wrong.push(format!(
            "{what}: {:?} {}",
            s.code(),
            faas_common::text::clip(s.message())
        )),
        Ok(v) => {
            let shown = format!("{v:?}");
            wrong.push(format!(
                "{what}: succeeded ({})",
                faas_common::text::clip(&shown)
            ));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_input_gets_the_documented_status_at_every_component() {
    on_platform("adaptive", |env| async move {
        let mut wrong = Vec::new();
        let absurd = 1_000_000_000_000_000_000_i64;

        let err = env.invoke("no-such-function", b"{}").await;
        expect_code(&mut wrong, "an unknown function", err, Code::NotFound);

        // NOT_FOUND, or INVALID_ARGUMENT for a name over 256 bytes (the contract's size rule);
        // either way the message quotes at most a clipped name.
        let long_name = "n".repeat(1 << 20);
        match env.invoke(&long_name, b"{}").await {
            Err(s)
                if matches!(s.code(), Code::NotFound | Code::InvalidArgument)
                    && s.message().len() < 1024 => {}
            other => wrong.push(format!(
                "a 1 MiB function name: {:?}",
                other.map(|_| ()).map_err(|s| (s.code(), s.message().len()))
            )),
        }

        // A 6 MiB event (the documented limit) passes every hop and comes back unchanged.
        let pad = 6 * 1024 * 1024 - r#"{"pad":""}"#.len();
        let event = format!(r#"{{"pad":"{}"}}"#, "x".repeat(pad)).into_bytes();
        let mut client = ApiServerClient::new(connect(&env.apiserver).await)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        let echoed = client
            .invoke_function(InvokeFunctionRequest {
                account_id: ACCOUNT.into(),
                function_name: "echo".into(),
                event: event.clone(),
            })
            .await;
        match echoed {
            Ok(reply) if reply.get_ref().body == event => {}
            Ok(reply) => wrong.push(format!(
                "a 6 MiB echo: body of {} bytes differs",
                reply.get_ref().body.len()
            )),
            Err(s) => wrong.push(format!(
                "a 6 MiB echo: {:?} {}",
                s.code(),
                faas_common::text::clip(s.message())
            )),
        }

        // Undecodable request bodies, at every component: a string field that is not UTF-8,
        // and a message cut short.
        env.invoke("hello", b"{}")
            .await
            .expect("hello, to have a reserved node");
        let nodes = observe::reserved_nodes(&env.resource_manager, &env.auth)
            .await
            .expect("GetNodesUsage");
        let node = observe::node_addr(nodes.first().expect("a reserved node"));
        let truncated: &[u8] = &[0x0A, 0x05, 0x41];
        let cases: [(&str, &'static str, &[u8]); 5] = [
            (
                &env.apiserver,
                "/apiserverproto.APIServer/InvokeFunction",
                &[0x12, 0x02, 0xC3, 0x28],
            ),
            (
                &env.apiserver,
                "/faas.admin.v1.Admin/DeployFunction",
                &[0x0A, 0x04, 0x0A, 0x02, 0xC3, 0x28],
            ),
            (
                &env.scheduler,
                "/schedulerproto.Scheduler/AcquireContainer",
                &[0x0A, 0x02, 0xC3, 0x28],
            ),
            (
                &env.resource_manager,
                "/resourcemanagerproto.ResourceManager/GetNodesUsage",
                &[0x0A, 0x02, 0xC3, 0x28],
            ),
            (
                &node,
                "/nodeservoceproto.NodeService/CreateContainer",
                &[0x0A, 0x02, 0xC3, 0x28],
            ),
        ];
        for (addr, path, not_utf8) in cases {
            for (what, body) in [("not UTF-8", not_utf8), ("cut short", truncated)] {
                let result = raw_call(&env.auth, addr, path, body).await;
                expect_invalid(&mut wrong, format!("{path} with a body {what}"), result);
            }
        }

        // Absurd definitions at the admin API.
        let long = "f".repeat(300);
        for (what, bad) in [
            ("memory 1e18", spec("absurd", "hello", absurd, 1000)),
            ("negative memory", spec("absurd", "hello", -MIB, 1000)),
            (
                "an unknown handler",
                spec("absurd", "no-such-handler", 128 * MIB, 1000),
            ),
            ("a negative timeout", spec("absurd", "hello", 128 * MIB, -1)),
            ("a 300-byte name", spec(&long, "hello", 128 * MIB, 1000)),
        ] {
            let result = deploy_spec(&env.api, bad).await;
            expect_invalid(&mut wrong, format!("deploy with {what}"), result);
        }

        // Absurd sizes at the scheduler, a node service and a container service.
        let mut scheduler = env.scheduler().await;
        let mut node_client = NodeServiceClient::new(env.auth.channel(connect(&node).await));
        for (what, memory, handler) in [
            ("memory 1e18", absurd, "hello"),
            ("negative memory", -MIB, "hello"),
        ] {
            let mut acquire = Request::new(AcquireContainerRequest {
                request_id: format!("absurd-{what}"),
                account_id: ACCOUNT.into(),
                function_name: "absurd".into(),
                function_config: Some(FunctionConfig {
                    timeout_in_ms: 1000,
                    memory_in_bytes: memory,
                    handler: handler.into(),
                }),
            });
            acquire.set_timeout(Duration::from_secs(5));
            let result = scheduler.acquire_container(acquire).await;
            expect_invalid(&mut wrong, format!("AcquireContainer with {what}"), result);
        }
        for (what, memory, handler) in [
            ("memory 1e18", absurd, "hello"),
            ("negative memory", -MIB, "hello"),
            ("an unknown handler", 128 * MIB, "no-such-handler"),
        ] {
            let mut create = Request::new(CreateContainerRequest {
                request_id: format!("absurd-{what}"),
                name: "absurd".into(),
                function_meta: Some(FunctionMeta {
                    function_name: "absurd".into(),
                    handler: handler.into(),
                    timeout_in_ms: 1000,
                    memory_in_bytes: memory,
                }),
            });
            create.set_timeout(Duration::from_secs(5));
            let result = node_client.create_container(create).await;
            expect_invalid(&mut wrong, format!("CreateContainer with {what}"), result);
        }
        let unbound = observe::poll(Duration::from_secs(5), || async {
            observe::live_containers()
                .await
                .into_iter()
                .find(|c| c.status.function_name.is_empty())
        })
        .await
        .expect("an unbound warm-pool container");
        let mut container =
            ContainerServiceClient::new(connect(&format!("127.0.0.1:{}", unbound.port)).await);
        for (what, memory) in [("memory 1e18", absurd), ("negative memory", -MIB)] {
            let result = container
                .bind(BindRequest {
                    function_name: "absurd".into(),
                    handler: "hello".into(),
                    memory_in_bytes: memory,
                    timeout_in_ms: 1000,
                })
                .await;
            expect_invalid(&mut wrong, format!("container Bind with {what}"), result);
        }

        assert!(
            wrong.is_empty(),
            "statuses other than the documented ones: {wrong:#?}"
        );
    })
    .await;
}

/// The figures the fault tests judge by see a dip, its end and the calls it cut off.
#[test]
fn the_recovery_figures_see_a_dip() {
    let t0 = Instant::now();
    let at = |ms: u64| t0 + Duration::from_millis(ms);
    // A call every 50 ms for 6 s, each taking 30 ms; those started in [1 s, 2.5 s) fail.
    let calls = |fails: fn(u64) -> bool| -> Vec<Call> {
        (0..120)
            .map(|i| Call {
                function: "f".into(),
                started: at(i * 50),
                ended: Some(at(i * 50 + 30)),
                outcome: if fails(i * 50) {
                    Outcome::Failed(Status::unavailable("down"))
                } else {
                    Outcome::Ok(InvokeOutcome::default())
                },
            })
            .collect()
    };
    let dip = calls(|ms| (1000..2500).contains(&ms));
    let second = Duration::from_secs(1);
    assert_eq!(
        load::recovered_after(&dip, at(1000), at(6000), second),
        Some(Duration::from_millis(1500))
    );
    assert_eq!(
        load::first_success_after(&dip, at(1000)),
        Some(Duration::from_millis(1530))
    );
    assert_eq!(load::in_flight_at(&dip, at(1010)).len(), 1);
    assert_eq!(load::failures_by_code(&dip)["UNAVAILABLE"].0, 30);
    let never = calls(|ms| ms >= 1000);
    assert_eq!(
        load::recovered_after(&never, at(1000), at(6000), second),
        None
    );
    assert_eq!(load::first_success_after(&never, at(1000)), None);
    let clean = calls(|_| false);
    assert_eq!(
        load::recovered_after(&clean, at(1000), at(6000), second),
        Some(Duration::ZERO)
    );
}
