//! The whole chain with real containers: the resource manager's `docker` provider starts
//! node-service containers, whose `docker` runtime runs every function in its own container
//! (built from this tree by `deploy/build-images.sh`, once per test process).
//!
//! Without a Docker daemon these tests say so loudly and pass; with `FAAS_REQUIRE_DOCKER=1`
//! (CI) they fail instead. After each test no container labelled `minifaas.role` remains
//! (warm pool containers included: they carry the same role, instance and node labels).

mod support;

use faas_cli::client::Api;
use faas_cli::platform::{LocalPlatform, PlatformOptions};
use faas_proto::admin::{DeployFunctionRequest, FunctionSpec};
use serde_json::Value;
use support::docker::{build_images, docker_available, docker_cli};
use tonic::Code;

const ACCOUNT: &str = "docker-test";
const ROLE_LABEL: &str = "minifaas.role";

/// The docker tests share the daemon's `minifaas` network and assert on every platform
/// container: they run one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Every container (running or not) carrying `label` (`key` or `key=value`).
fn containers_with(label: &str) -> Vec<String> {
    docker_cli(&["ps", "-aq", "--filter", &format!("label={label}")])
        .expect("docker ps")
        .lines()
        .map(str::to_string)
        .collect()
}

/// Removes this test's containers even when the test fails half-way.
struct Cleanup {
    instance: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let left = containers_with(&format!("minifaas.instance={}", self.instance));
        if !left.is_empty() {
            let mut args = vec!["rm", "-f"];
            args.extend(left.iter().map(String::as_str));
            let _ = docker_cli(&args);
        }
    }
}

struct DockerPlatform {
    platform: LocalPlatform,
    api: Api,
    instance: String,
    _cleanup: Cleanup,
    _serial: tokio::sync::MutexGuard<'static, ()>,
}

impl DockerPlatform {
    /// Stops the platform and checks that no platform container is left.
    async fn stop(self) {
        self.platform.stop().await.expect("platform stops cleanly");
        let left = containers_with(ROLE_LABEL);
        assert!(
            left.is_empty(),
            "containers labelled {ROLE_LABEL} remain after stop: {left:?}"
        );
    }
}

/// Starts a platform with the nodes' default warm pool.
async fn start() -> Option<DockerPlatform> {
    start_with(None).await
}

/// Starts a platform whose nodes keep `warm_pool` unbound containers (`None`: the default).
async fn start_with(warm_pool: Option<u32>) -> Option<DockerPlatform> {
    if !docker_available() {
        return None;
    }
    let serial = SERIAL.lock().await;
    tokio::task::spawn_blocking(|| build_images("latest"))
        .await
        .unwrap();
    support::use_built_binary();
    let instance = format!("test-{}", &uuid::Uuid::new_v4().to_string()[..8]);
    let cleanup = Cleanup {
        instance: instance.clone(),
    };
    let options = PlatformOptions {
        provider: "docker".into(),
        docker_instance: Some(instance.clone()),
        ready_nodes: 1,
        max_nodes: 3,
        refill_delay_ms: 100,
        node_warm_pool: warm_pool,
        ..PlatformOptions::default()
    };
    let platform = LocalPlatform::start(&options)
        .await
        .expect("platform starts");
    let api = platform.api().await.expect("api server answers");
    Some(DockerPlatform {
        platform,
        api,
        instance,
        _cleanup: cleanup,
        _serial: serial,
    })
}

fn json(body: &[u8]) -> Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", String::from_utf8_lossy(body)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_builtin_function_runs_in_a_container() {
    let Some(p) = start().await else { return };
    let api = &p.api;

    let hello = api
        .invoke(ACCOUNT, "hello", br#"{"name":"Ada"}"#.to_vec())
        .await
        .unwrap();
    assert_eq!(json(&hello.body)["message"], "Hello, Ada!");
    let event = br#"{"anything": [1, 2, 3]}"#.to_vec();
    assert_eq!(
        api.invoke(ACCOUNT, "echo", event.clone())
            .await
            .unwrap()
            .body,
        event
    );
    let sleep = api
        .invoke(ACCOUNT, "sleep", br#"{"ms":50}"#.to_vec())
        .await
        .unwrap();
    assert!(sleep.duration_ns.unwrap() >= 50_000_000);
    let cpu = api
        .invoke(ACCOUNT, "cpu", br#"{"rounds":1000}"#.to_vec())
        .await
        .unwrap();
    assert_eq!(json(&cpu.body)["rounds"], 1000);
    let memory = api
        .invoke(ACCOUNT, "memory", br#"{"mb":24,"ms":10}"#.to_vec())
        .await
        .unwrap();
    assert_eq!(json(&memory.body)["mb"], 24);
    let spin = api
        .invoke(ACCOUNT, "spin", br#"{"ms":30,"mb":1}"#.to_vec())
        .await
        .unwrap();
    assert!(spin.duration_ns.unwrap() >= 30_000_000);

    // Each function ran in a container of this instance, labelled with its role.
    let functions = containers_with(&format!("minifaas.instance={}", p.instance));
    let roles = containers_with(&format!("{ROLE_LABEL}=function"));
    assert!(
        functions.iter().filter(|c| roles.contains(c)).count() >= 6,
        "one function container per function: {functions:?}"
    );
    assert!(!containers_with(&format!("{ROLE_LABEL}=node")).is_empty());
    p.stop().await;
}

/// `docker inspect` of a container's limits, settings and node label, in one line.
fn limits_of(container: &str) -> String {
    docker_cli(&[
        "inspect",
        "--format",
        "{{.HostConfig.Memory}} {{.HostConfig.MemorySwap}} {{.HostConfig.CpuPeriod}} \
         {{.HostConfig.CpuQuota}} {{.HostConfig.PidsLimit}} {{.HostConfig.ReadonlyRootfs}} \
         {{.HostConfig.CapDrop}} {{.HostConfig.SecurityOpt}} {{.Config.User}} \
         {{index .Config.Labels \"minifaas.node\"}}",
        container,
    ])
    .unwrap()
}

/// What [`limits_of`] says for a function of `memory` bytes on `node`.
fn expected_limits(memory: u64, node: &str) -> String {
    let quota = faas_node_service::api::docker::cpu_quota_micros(memory, 0.67);
    format!(
        "{memory} {memory} 100000 {quota} 256 true [ALL] [no-new-privileges] 65534:65534 {node}"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn containers_get_the_functions_limits() {
    // Without a warm pool: the container is created for the function (and named after it).
    let Some(p) = start_with(Some(0)).await else {
        return;
    };
    let out = p.api.invoke(ACCOUNT, "hello", vec![]).await.unwrap();
    assert_eq!(out.cold, Some(true));
    let ids = containers_with("minifaas.function=hello");
    assert_eq!(ids.len(), 1, "{ids:?}");
    assert!(containers_with("minifaas.pool=true").is_empty());
    let memory: u64 = 128 << 20; // hello's memory in deploy/functions.toml
    let node = out.node_id.clone().unwrap_or_default();
    assert_eq!(limits_of(&ids[0]), expected_limits(memory, &node));
    p.stop().await;
}

/// The running warm pool containers of `instance` that have announced that they listen.
fn listening_pool_containers(instance: &str) -> Vec<String> {
    let running = docker_cli(&[
        "ps",
        "-q",
        "--filter",
        &format!("label=minifaas.instance={instance}"),
        "--filter",
        "label=minifaas.pool=true",
        "--filter",
        "status=running",
    ])
    .expect("docker ps");
    running
        .lines()
        .filter(|id| {
            docker_cli(&["logs", id])
                .is_ok_and(|out| out.contains(faas_common::serve::READY_PREFIX))
        })
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_warm_pool_container_gets_the_functions_limits() {
    let Some(p) = start_with(Some(1)).await else {
        return;
    };
    let memory: u64 = 96 << 20;
    // A create served from the pool needs the pool container to be up when the scheduler
    // asks: wait for it, and try again with a new function if a create raced it anyway.
    let mut pooled = None;
    for attempt in 0..5 {
        let since = faas_common::clock::instant();
        while listening_pool_containers(&p.instance).is_empty() {
            assert!(
                since.elapsed() < std::time::Duration::from_secs(60),
                "no warm pool container came up"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        let name = format!("pooled-{attempt}");
        p.api
            .admin()
            .deploy_function(DeployFunctionRequest {
                function: Some(FunctionSpec {
                    name: name.clone(),
                    handler: "memory".into(),
                    memory_in_bytes: memory as i64,
                    timeout_in_ms: 30_000,
                    description: "served from the warm pool".into(),
                    ..Default::default()
                }),
            })
            .await
            .unwrap();
        let out = p
            .api
            .invoke(ACCOUNT, &name, br#"{"mb":16,"ms":1}"#.to_vec())
            .await
            .unwrap();
        assert_eq!(json(&out.body)["mb"], 16, "the invocation works");
        let id = out
            .container_id
            .clone()
            .expect("the reply names its container");
        let found = containers_with(&format!("minifaas.container={id}"));
        assert_eq!(found.len(), 1, "container {id}: {found:?}");
        let from_pool = docker_cli(&[
            "inspect",
            "--format",
            "{{index .Config.Labels \"minifaas.pool\"}}",
            &found[0],
        ])
        .unwrap();
        if from_pool == "true" {
            pooled = Some((name, found[0].clone(), out));
            break;
        }
    }
    let (name, container, out) = pooled.expect("no create was served from the warm pool");
    let node = out.node_id.clone().unwrap_or_default();
    assert_eq!(limits_of(&container), expected_limits(memory, &node));

    // The cgroup follows: 72 MiB fit in the function's 96 MiB (not in the pool's 64 MiB),
    // 256 MiB do not.
    let fits = p
        .api
        .invoke(ACCOUNT, &name, br#"{"mb":72,"ms":1}"#.to_vec())
        .await
        .unwrap();
    assert_eq!(fits.container_id, out.container_id, "the same container");
    assert_eq!(json(&fits.body)["mb"], 72);
    let err = p
        .api
        .invoke(ACCOUNT, &name, br#"{"mb":256,"ms":1}"#.to_vec())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_call_past_the_memory_limit_is_oom_killed_and_the_next_one_succeeds() {
    let Some(p) = start().await else { return };
    p.api
        .admin()
        .deploy_function(DeployFunctionRequest {
            function: Some(FunctionSpec {
                name: "hog".into(),
                handler: "memory".into(),
                memory_in_bytes: 64 << 20,
                timeout_in_ms: 30_000,
                description: "allocates past its limit".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    let first = p
        .api
        .invoke(ACCOUNT, "hog", br#"{"mb":8,"ms":1}"#.to_vec())
        .await
        .unwrap();
    // The container that served `first` (from the warm pool or created for hog).
    let killed = containers_with(&format!(
        "minifaas.container={}",
        first.container_id.clone().unwrap_or_default()
    ));
    let err = p
        .api
        .invoke(ACCOUNT, "hog", br#"{"mb":256,"ms":1}"#.to_vec())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert!(err.message().contains("memory"), "{err:?}");
    let next = p
        .api
        .invoke(ACCOUNT, "hog", br#"{"mb":8,"ms":1}"#.to_vec())
        .await
        .unwrap();
    assert_eq!(json(&next.body)["mb"], 8);
    assert_eq!(
        next.cold,
        Some(true),
        "a new container replaced the killed one"
    );
    assert_ne!(next.container_id, first.container_id);
    let now = containers_with(&format!("minifaas.instance={}", p.instance));
    assert_eq!(killed.len(), 1, "{killed:?}");
    assert!(
        !now.contains(&killed[0]),
        "the killed container was removed: {killed:?}, now {now:?}"
    );
    p.stop().await;
}
