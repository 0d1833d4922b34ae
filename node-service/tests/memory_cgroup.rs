//! The kernel's memory cap on the `process` runtime (`--memory-cgroup auto`), with real
//! processes and real cgroups: each container service runs in a group of its own, limited to
//! its container's memory, from before it runs anything; removing a container removes its
//! group; a node killed with SIGKILL leaves groups that its next start removes; and a
//! function that allocates past its limit faster than the container service can measure is
//! stopped by the kernel, its call ending `OutOfMemory` when the container service itself
//! was the one killed.
//!
//! The groups are looked at on disk, under this test process's own memory cgroup (the
//! nodes, in-process or children, live in it too). A host without a writable memory cgroup
//! (not root, read-only `/sys/fs/cgroup`, cgroup v2 without delegation) skips every test,
//! printing why, unless `FAAS_REQUIRE_CGROUP=1`, which makes that a failure.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use faas_common::launch::{Child, Signal, send_signal};
use faas_node_service::Config;
use faas_node_service::api::cgroup::{self, Version};
use faas_node_service::api::docker::UNBOUND_MEMORY_BYTES;
use faas_proto::nodeservoceproto as pb;
use pb::node_service_client::NodeServiceClient;
use support::{children_running, container_service_bin, figure, free_port, metrics_text, serve};
use tonic::transport::Channel;

/// How long a condition the tests wait for may take before the test fails.
const PATIENCE: Duration = Duration::from_secs(30);

/// Where nodes make their groups on this host (below this process's own memory cgroup, or
/// beside it on cgroup v2), and with which interface.
struct Host {
    version: Version,
    dir: PathBuf,
}

/// This host's groups, if a node can make them (a probe node does); otherwise the test is
/// skipped (with the reason printed) or, with `FAAS_REQUIRE_CGROUP=1`, failed.
fn hierarchy(test: &str) -> Option<Host> {
    let usable = cgroup::host("probe").map(|(probe, _)| Host {
        version: probe.version(),
        dir: probe.node_dir().parent().unwrap().to_path_buf(),
    });
    match usable {
        Ok(h) => Some(h),
        Err(reason) if std::env::var("FAAS_REQUIRE_CGROUP").as_deref() == Ok("1") => {
            panic!("FAAS_REQUIRE_CGROUP=1, but this host has no writable memory cgroup: {reason}")
        }
        Err(reason) => {
            eprintln!(
                "{test}: skipped, no writable memory cgroup here ({reason}); set \
                 FAAS_REQUIRE_CGROUP=1 to fail instead"
            );
            None
        }
    }
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// The groups of node `node_id` whose names start with `faas-<node_id>.<more>`.
fn node_dirs(h: &Host, node_id: &str, more: &str) -> Vec<PathBuf> {
    let prefix = format!("faas-{node_id}.{more}");
    std::fs::read_dir(&h.dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .map(|e| e.path())
        .collect()
}

/// The one group of node `node_id` in process `pid`.
fn node_dir(h: &Host, node_id: &str, pid: u32) -> PathBuf {
    let dirs = node_dirs(h, node_id, &format!("{pid}."));
    assert_eq!(
        dirs.len(),
        1,
        "one group of node {node_id} in {pid}: {dirs:?}"
    );
    dirs.into_iter().next().unwrap()
}

/// The container groups of a node's group.
fn groups(node_dir: &Path) -> Vec<String> {
    std::fs::read_dir(node_dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

fn read(group: &Path, file: &str) -> String {
    let path = group.join(file);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn number(group: &Path, file: &str) -> u64 {
    read(group, file).trim().parse().unwrap()
}

/// The processes in a group.
fn procs(group: &Path) -> Vec<u32> {
    read(group, "cgroup.procs")
        .lines()
        .filter_map(|l| l.parse().ok())
        .collect()
}

/// Checks that the group's limit is `bytes`, swap included.
fn assert_limit(h: &Host, group: &Path, bytes: u64) {
    assert_eq!(
        number(group, h.version.limit_file()),
        bytes,
        "{}",
        group.display()
    );
    match h.version {
        Version::V1 if group.join("memory.memsw.limit_in_bytes").exists() => {
            assert_eq!(number(group, "memory.memsw.limit_in_bytes"), bytes);
        }
        Version::V2 if group.join("memory.swap.max").exists() => {
            assert_eq!(read(group, "memory.swap.max").trim(), "0");
        }
        _ => {}
    }
}

/// The OOM kills the kernel counts in a group, and the most it held where it says.
fn oom_kills_and_peak(h: &Host, group: &Path) -> (u64, Option<u64>) {
    let peak = |file: &str| group.join(file).exists().then(|| number(group, file));
    match h.version {
        Version::V1 => (
            cgroup::oom_kills_v1(&read(group, "memory.oom_control"), 0),
            peak("memory.max_usage_in_bytes"),
        ),
        Version::V2 => (
            cgroup::oom_kills_v2(&read(group, "memory.events")),
            peak("memory.peak"),
        ),
    }
}

fn meta(function: &str, handler: &str, memory: i64) -> pb::FunctionMeta {
    pb::FunctionMeta {
        function_name: function.into(),
        handler: handler.into(),
        memory_in_bytes: memory,
        ..Default::default()
    }
}

async fn create(client: &NodeServiceClient<Channel>, meta: pb::FunctionMeta) -> String {
    let request = pb::CreateContainerRequest {
        request_id: "create".into(),
        name: meta.function_name.clone(),
        function_meta: Some(meta),
    };
    let reply = client.clone().create_container(request).await.unwrap();
    reply.into_inner().container_id
}

async fn remove(client: &NodeServiceClient<Channel>, id: &str) {
    let request = pb::RemoveContainerRequest {
        request_id: "remove".into(),
        container_id: id.into(),
    };
    client.clone().remove_container(request).await.unwrap();
}

/// Invokes container `id` and returns the reply's error text ("" on success).
async fn invoke_error(
    client: &NodeServiceClient<Channel>,
    id: &str,
    event: &[u8],
    meta: pb::FunctionMeta,
) -> String {
    let request = pb::InvokeFunctionRequest {
        request_id: "invoke".into(),
        container_id: id.into(),
        event: event.to_vec(),
        function_meta: Some(meta),
    };
    let mut stream = client
        .clone()
        .invoke_function(request)
        .await
        .unwrap()
        .into_inner();
    let mut error = String::new();
    while let Some(m) = stream.message().await.unwrap() {
        if let Some(f) = m.footer {
            error = f.error;
        }
    }
    error
}

/// A `node-service` child process (process runtime, memory cgroups on, no warm pool).
struct NodeProcess {
    child: Child,
    client: NodeServiceClient<Channel>,
}

impl NodeProcess {
    /// Starts a node with `args` on top of the above, and `env`.
    async fn start(node_id: &str, args: &[&str], env: &[(&str, &str)]) -> NodeProcess {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_node-service"));
        cmd.args(["--port", "0", "--warm-pool", "0", "--memory-cgroup", "auto"])
            .args(["--node-id", node_id])
            .args(args)
            .env("FAAS_CONTAINER_SERVICE_BIN", container_service_bin())
            .env("RUST_LOG", "warn")
            .envs(env.iter().copied());
        let (child, addr) = Child::spawn_ready(cmd, PATIENCE)
            .await
            .expect("the node announced");
        let channel = faas_common::serve::connect(&addr.to_string())
            .await
            .unwrap();
        NodeProcess {
            child,
            client: NodeServiceClient::new(channel),
        }
    }

    fn pid(&self) -> u32 {
        self.child.id().unwrap()
    }

    /// Stops the node with SIGTERM and checks that it stopped cleanly.
    async fn stop(mut self) {
        // A call first: the node listens for SIGTERM from a task that may not have run yet
        // when it announces itself.
        let stats = pb::GetStatsRequest {
            request_id: "stats".into(),
        };
        self.client.get_stats(stats).await.unwrap();
        send_signal(self.pid(), Signal::Terminate).unwrap();
        let status = tokio::time::timeout(PATIENCE, self.child.wait())
            .await
            .unwrap()
            .unwrap();
        assert!(status.success(), "the node stopped cleanly: {status}");
    }
}

#[tokio::test]
async fn a_container_runs_in_a_group_limited_to_its_memory_until_it_is_removed() {
    let Some(h) = hierarchy("a_container_runs_in_a_group_limited_to_its_memory") else {
        return;
    };
    let node_id = unique("cg-create");
    let mut config = Config::local();
    config.node_id = Some(node_id.clone());
    config.warm_pool = 0;
    let node = serve(config).await;
    let function = unique("hello");
    let id = create(&node.client, meta(&function, "hello", 96 << 20)).await;

    let node_dir = node_dir(&h, &node_id, std::process::id());
    let group = node_dir.join(&id);
    let pids = children_running(std::process::id(), &function);
    assert_eq!(pids.len(), 1, "one container service: {pids:?}");
    assert_eq!(procs(&group), pids, "the container service is in its group");
    assert_limit(&h, &group, 96 << 20);
    let error = invoke_error(&node.client, &id, b"{}", meta(&function, "hello", 96 << 20)).await;
    assert_eq!(error, "", "a function within its limit runs as before");

    remove(&node.client, &id).await;
    assert!(!group.exists(), "removing the container removed its group");
    node.stop().await;
    assert!(!node_dir.exists(), "the shutdown removed the node's group");
}

#[tokio::test]
async fn a_warm_pool_container_gets_its_functions_limit_when_bound() {
    let Some(h) = hierarchy("a_warm_pool_container_gets_its_functions_limit_when_bound") else {
        return;
    };
    let node_id = unique("cg-pool");
    let metrics = free_port();
    let mut config = Config::local();
    config.node_id = Some(node_id.clone());
    config.warm_pool = 1;
    config.metrics_port = Some(metrics);
    let node = serve(config).await;
    let metrics = format!("127.0.0.1:{metrics}");
    let since = faas_common::clock::instant();
    loop {
        let text = metrics_text(&metrics).await.unwrap_or_default();
        if figure(&text, "faas_node_service_warm_pool_ready") == Some(1) {
            break;
        }
        assert!(since.elapsed() < PATIENCE, "the warm pool never filled");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let node_dir = node_dir(&h, &node_id, std::process::id());
    let pool = groups(&node_dir);
    assert_eq!(pool.len(), 1, "the pool container's group: {pool:?}");
    let group = node_dir.join(&pool[0]);
    assert_limit(&h, &group, UNBOUND_MEMORY_BYTES);

    let id = create(&node.client, meta(&unique("hello"), "hello", 200 << 20)).await;
    assert_eq!(id, pool[0], "the create bound the pool container");
    assert_limit(&h, &group, 200 << 20);
    node.stop().await;
    assert!(!node_dir.exists());
}

/// The environment of a node whose container services do not enforce the memory limit
/// themselves (`--emulate-memory-limit false`, as in Docker): whatever passes it, however
/// slowly, only the kernel can stop. With the watchdog on, it may kill a fast allocation
/// first, since it counts shared pages the kernel charges elsewhere.
const NO_WATCHDOG: &[(&str, &str)] = &[("FAAS_EMULATE_MEMORY_LIMIT", "false")];

/// A command function that reads its event, then allocates and touches 300 MiB at once.
fn allocating_bundle(dir: &Path) -> Option<String> {
    // A python3 the container's unprivileged user can run (not one under /root).
    let python = ["/usr/bin/python3", "/usr/local/bin/python3"]
        .into_iter()
        .find(|p| Path::new(p).is_file())?;
    let script = "import sys; sys.stdin.read(); block = b'x' * (300 << 20); print(len(block))";
    let manifest = serde_json::json!({"command": [python, "-c", script], "protocol": "exec"});
    let hash = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    std::fs::create_dir_all(dir.join(&hash)).unwrap();
    std::fs::write(dir.join(&hash).join("function.json"), manifest.to_string()).unwrap();
    Some(hash)
}

#[tokio::test]
async fn the_kernel_stops_a_function_that_allocates_past_its_limit() {
    let Some(h) = hierarchy("the_kernel_stops_a_function_that_allocates_past_its_limit") else {
        return;
    };
    let bundles = std::env::temp_dir().join(unique("faas-cg-bundles"));
    let Some(hash) = allocating_bundle(&bundles) else {
        std::fs::remove_dir_all(&bundles).ok();
        assert!(
            std::env::var("FAAS_REQUIRE_CGROUP").as_deref() != Ok("1"),
            "this test's function needs python3"
        );
        eprintln!("the_kernel_stops_a_function_that_allocates_past_its_limit: skipped, no python3");
        return;
    };
    let node_id = unique("cg-oom");
    let dir = bundles.display().to_string();
    let node = NodeProcess::start(&node_id, &["--bundles-dir", &dir], NO_WATCHDOG).await;
    let meta = meta(&unique("hog"), &format!("bundle:{hash}"), 64 << 20);
    let id = create(&node.client, meta.clone()).await;
    let group = node_dir(&h, &node_id, node.pid()).join(&id);
    assert_limit(&h, &group, 64 << 20);

    let error = invoke_error(&node.client, &id, b"{}", meta).await;
    assert!(!error.is_empty(), "the call failed");
    let (oom_kills, peak) = oom_kills_and_peak(&h, &group);
    assert!(oom_kills >= 1, "the kernel killed it (error: {error})");
    if let Some(peak) = peak {
        assert!(
            peak <= 64 << 20,
            "the group never held more than its limit: {peak}"
        );
    }
    node.stop().await;
    std::fs::remove_dir_all(&bundles).unwrap();
}

#[tokio::test]
async fn a_call_whose_container_service_the_kernel_kills_ends_out_of_memory() {
    let Some(h) = hierarchy("a_call_whose_container_service_the_kernel_kills") else {
        return;
    };
    let node_id = unique("cg-killed");
    // The container service allocates for the `memory` handler itself: only the kernel
    // stops it.
    let node = NodeProcess::start(&node_id, &[], NO_WATCHDOG).await;
    let function = unique("memory");
    let meta = meta(&function, "memory", 64 << 20);
    let id = create(&node.client, meta.clone()).await;
    let group = node_dir(&h, &node_id, node.pid()).join(&id);
    assert_limit(&h, &group, 64 << 20);

    let error = invoke_error(&node.client, &id, br#"{"mb":300,"ms":10}"#, meta).await;
    assert!(
        error.starts_with("OutOfMemory: ")
            && error.contains("killed for passing its memory limit of 67108864 bytes"),
        "{error}"
    );
    assert!(
        !group.exists(),
        "the dead container was reclaimed, its group with it"
    );
    node.stop().await;
    assert_eq!(node_dirs(&h, &node_id, ""), [] as [PathBuf; 0]);
}

#[tokio::test]
async fn a_node_killed_with_sigkill_leaves_no_group_after_its_restart() {
    let Some(h) = hierarchy("a_node_killed_with_sigkill_leaves_no_group_after_its_restart") else {
        return;
    };
    let node_id = unique("cg-restart");
    let first = NodeProcess::start(&node_id, &[], &[]).await;
    let id = create(&first.client, meta(&unique("hello"), "hello", 64 << 20)).await;
    let first_dir = node_dir(&h, &node_id, first.pid());
    assert_eq!(groups(&first_dir), [id]);
    support::kill(first.pid()).await;
    assert!(
        first_dir.exists(),
        "SIGKILL leaves the node's groups behind"
    );

    let second = NodeProcess::start(&node_id, &[], &[]).await;
    assert!(
        !first_dir.exists(),
        "the restart removed the groups of the killed node"
    );
    let second_dir = node_dir(&h, &node_id, second.pid());
    second.stop().await;
    assert!(!second_dir.exists(), "a clean stop leaves no group");
    assert_eq!(node_dirs(&h, &node_id, ""), [] as [PathBuf; 0]);
}
