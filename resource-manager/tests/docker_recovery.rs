//! The `docker` provider survives a crash of the resource manager: its node containers keep
//! running, and the next manager on the same `--state-dir` finds them again by label, even
//! when the state file is gone (the reservation then comes from the node's own
//! `DescribeNode`). A clean stop removes every container of the instance.
//!
//! The images are built from this tree by `deploy/build-images.sh` (once per test process).
//! Without a Docker daemon this test says so loudly and passes; with `FAAS_REQUIRE_DOCKER=1`
//! (CI) it fails instead.

mod support;

use std::collections::HashMap;
use std::path::PathBuf;

use bollard::Docker;
use bollard::query_parameters::{ListContainersOptionsBuilder, RemoveContainerOptionsBuilder};
use faas_resource_manager::{Config, ProviderKind};
use support::{Manager, StateDir, release, reserve, test_config, usage};

/// The daemon, if one answers; panics without one if CI requires Docker.
async fn docker() -> Option<Docker> {
    let answer = match Docker::connect_with_local_defaults() {
        Ok(docker) => docker.ping().await.map(|_| docker),
        Err(e) => Err(e),
    };
    match answer {
        Ok(docker) => Some(docker),
        Err(e) => {
            assert!(
                std::env::var("FAAS_REQUIRE_DOCKER").as_deref() != Ok("1"),
                "FAAS_REQUIRE_DOCKER=1 but the Docker daemon does not answer: {e}"
            );
            eprintln!(
                "\n!!!!! SKIPPED: no Docker daemon answers ({e}); the docker test did not run !!!!!\n"
            );
            None
        }
    }
}

/// Builds the images from this tree.
fn build_images() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/build-images.sh");
    let status = std::process::Command::new("bash")
        .arg(script)
        .status()
        .unwrap_or_else(|e| panic!("cannot run {script}: {e}"));
    assert!(status.success(), "{script} failed: {status}");
}

/// The containers of `instance` (running or not): node label → container ids.
async fn containers(docker: &Docker, instance: &str) -> HashMap<String, Vec<String>> {
    let options = ListContainersOptionsBuilder::new()
        .all(true)
        .filters(&HashMap::from([(
            "label",
            vec![format!("minifaas.instance={instance}")],
        )]))
        .build();
    let mut by_node: HashMap<String, Vec<String>> = HashMap::new();
    for c in docker.list_containers(Some(options)).await.unwrap() {
        let node = c
            .labels
            .and_then(|l| l.get("minifaas.node").cloned())
            .unwrap_or_default();
        by_node.entry(node).or_default().extend(c.id);
    }
    by_node
}

/// Removes the instance's containers and network even when the test fails half-way.
struct Cleanup {
    docker: Docker,
    instance: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let (docker, instance) = (self.docker.clone(), self.instance.clone());
        // Drop runs inside the test's runtime: clean up on a thread of its own.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Runtime::new().unwrap();
            runtime.block_on(async {
                let force = RemoveContainerOptionsBuilder::new().force(true).build();
                for id in containers(&docker, &instance).await.into_values().flatten() {
                    let _ = docker.remove_container(&id, Some(force.clone())).await;
                }
                let _ = docker.remove_network(&instance).await;
            });
        })
        .join();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_nodes_outlive_a_crash_and_are_found_again_by_label() {
    let Some(docker) = docker().await else {
        return;
    };
    tokio::task::spawn_blocking(build_images).await.unwrap();
    let instance = format!("rmtest-{}", &uuid::Uuid::new_v4().to_string()[..8]);
    let _cleanup = Cleanup {
        docker: docker.clone(),
        instance: instance.clone(),
    };
    let dir = StateDir::new("docker");
    let config = Config {
        provider: ProviderKind::Docker,
        docker_instance: instance.clone(),
        docker_network: instance.clone(),
        state_dir: Some(dir.0.clone()),
        // Not used by the docker provider; set so the harness does not look for it.
        node_service_bin: Some(PathBuf::from("/nonexistent/node-service")),
        node_start_timeout_ms: 60_000,
        ..test_config("dnode", 1, 2)
    };

    let rm = Manager::start_with(config.clone()).await;
    let mut client = rm.client().await;
    let node = reserve(&mut client, "acct").await.unwrap();
    let before = containers(&docker, &instance).await;
    assert_eq!(before.len(), 1, "one node container: {before:?}");
    rm.crash().await;
    assert_eq!(
        containers(&docker, &instance).await,
        before,
        "the node container outlives the crash"
    );

    // Without the state file the containers are found by label, the reservation is the node's.
    std::fs::remove_file(dir.file()).unwrap();
    let rm = Manager::start_with(config).await;
    let mut client = rm.client().await;
    let records = usage(&mut client).await;
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(
        (
            &records[0].id,
            &records[0].address,
            records[0].node_service_port
        ),
        (&node.id, &node.address, node.node_service_port)
    );
    let drift = (records[0].reserved_time_timestamp_ms - node.reserved_time_timestamp_ms).abs();
    assert!(drift < 10_000, "the node's reserve time is {drift} ms off");
    assert_eq!(
        containers(&docker, &instance).await[&node.id],
        before[&node.id],
        "the same container"
    );
    let next = reserve(&mut client, "acct").await.unwrap();
    assert_ne!(next.id, node.id, "ids continue past the containers found");

    release(&mut client, &node.id).await.unwrap();
    rm.stop().await;
    assert!(
        containers(&docker, &instance).await.is_empty(),
        "a clean stop removes every container of the instance"
    );
    assert_eq!(dir.read()["nodes"], serde_json::json!([]));
}
