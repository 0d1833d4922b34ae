//! The Docker side of the `docker` provider: node container bodies (see the module docs of
//! `docker/mod.rs` for what a node container gets), and the removal of containers of nodes
//! not kept (the rest of listing and removal is `faas_common::docker`'s).

use std::collections::HashMap;

use bollard::Docker;
use bollard::models::{
    ContainerCreateBody, ContainerSummaryStateEnum, EndpointSettings, HostConfig, NetworkingConfig,
};
use faas_common::docker::{force_remove_all, list_labelled};

use super::{DockerOptions, SOCKET_IN_NODE, labels};

/// Force-removes every container carrying all `label=value` filters, except those of the
/// nodes in `keep` (by their node label); returns how many.
pub(super) async fn remove_labelled_except(
    docker: &Docker,
    filters: Vec<String>,
    keep: &[String],
) -> usize {
    let Ok(list) = list_labelled(docker, &filters).await else {
        return 0;
    };
    let ids: Vec<String> = list
        .into_iter()
        .filter(|c| {
            let node = c.labels.as_ref().and_then(|l| l.get(labels::NODE));
            !node.is_some_and(|n| keep.contains(n))
        })
        .filter_map(|c| c.id)
        .collect();
    force_remove_all(docker, &ids).await;
    ids.len()
}

/// Force-removes every container carrying all `label=value` filters; returns how many.
pub(super) async fn remove_labelled(docker: &Docker, filters: Vec<String>) -> usize {
    remove_labelled_except(docker, filters, &[]).await
}

/// One node's container.
#[derive(Debug)]
pub(super) struct DockerNode {
    /// The Docker container id.
    pub(super) container: String,
    /// Whether its start completed (only then can it be gone).
    pub(super) ready: bool,
}

/// Why a listed node container counts as gone, or `None` while it runs (or is paused).
pub(super) fn gone_because(
    state: Option<&ContainerSummaryStateEnum>,
    status: &str,
) -> Option<String> {
    match state {
        Some(
            ContainerSummaryStateEnum::RUNNING
            | ContainerSummaryStateEnum::PAUSED
            | ContainerSummaryStateEnum::RESTARTING,
        ) => None,
        Some(state) => Some(format!("its container is {state} ({status})")),
        None => Some(format!("its container is in an unknown state ({status})")),
    }
}

/// The node service's arguments for `node_id` with `memory_bytes` (a node container's
/// command, a Swarm node task's args): see the module docs.
pub(super) fn node_args(o: &DockerOptions, node_id: &str, memory_bytes: u64) -> Vec<String> {
    let mut cmd: Vec<String> = [
        "--host",
        "0.0.0.0",
        "--port",
        &o.node_port.to_string(),
        "--node-id",
        node_id,
        "--memory-bytes",
        &memory_bytes.to_string(),
        "--runtime",
        "docker",
        "--docker-image",
        &o.container_image,
        "--docker-network",
        &o.network,
        "--docker-instance",
        &o.instance,
        "--docker-cpus-per-gib",
        &o.cpus_per_gib,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if let Some(n) = o.warm_pool {
        cmd.extend(["--warm-pool".to_string(), n.to_string()]);
    }
    if let Some(timeout) = o.orphan_timeout {
        cmd.extend([
            "--orphan-timeout-ms".to_string(),
            timeout.as_millis().to_string(),
        ]);
    }
    cmd.extend(o.code.args());
    cmd
}

/// A node's environment (`KEY=value`): the Docker socket, its machine, the cluster token,
/// the log format.
pub(super) fn node_env(o: &DockerOptions) -> Vec<String> {
    std::iter::once(format!("DOCKER_HOST=unix://{SOCKET_IN_NODE}"))
        .chain((!o.machine.is_empty()).then(|| format!("FAAS_MACHINE={}", o.machine)))
        .chain(o.code.env().into_iter().map(|(k, v)| format!("{k}={v}")))
        .chain(
            faas_common::logging::child_env()
                .into_iter()
                .map(|(k, v)| format!("{k}={v}")),
        )
        .collect()
}

/// The labels of a node's container (and of its Swarm service).
pub(super) fn node_labels(o: &DockerOptions, node_id: &str) -> HashMap<String, String> {
    HashMap::from([
        (labels::ROLE.to_string(), labels::ROLE_NODE.to_string()),
        (labels::INSTANCE.to_string(), o.instance.clone()),
        (labels::NODE.to_string(), node_id.to_string()),
    ])
}

/// The node container for `node_id` with `memory_bytes`: see the module docs.
pub(super) fn node_body(
    o: &DockerOptions,
    socket_gid: Option<u32>,
    node_id: &str,
    memory_bytes: u64,
) -> ContainerCreateBody {
    let cmd = node_args(o, node_id, memory_bytes);
    let mut binds = vec![format!("{}:{SOCKET_IN_NODE}", o.socket)];
    if let Some(dir) = &o.code.bundles_dir {
        binds.push(format!("{0}:{0}:ro", dir.display()));
    }
    ContainerCreateBody {
        image: Some(o.node_image.clone()),
        cmd: Some(cmd),
        user: Some("65534:65534".into()),
        env: Some(node_env(o)),
        labels: Some(node_labels(o, node_id)),
        host_config: Some(HostConfig {
            binds: Some(binds),
            group_add: socket_gid.map(|g| vec![g.to_string()]),
            readonly_rootfs: Some(true),
            security_opt: Some(vec!["no-new-privileges".to_string()]),
            cap_drop: Some(vec!["ALL".to_string()]),
            pids_limit: Some(1024),
            network_mode: Some(o.network.clone()),
            ..Default::default()
        }),
        networking_config: Some(NetworkingConfig {
            endpoints_config: Some(HashMap::from([(
                o.network.clone(),
                EndpointSettings::default(),
            )])),
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::NodeCode;
    use std::time::Duration;

    #[test]
    fn only_a_running_or_paused_node_container_counts_as_there() {
        use ContainerSummaryStateEnum as S;
        for state in [S::RUNNING, S::PAUSED, S::RESTARTING] {
            assert_eq!(gone_because(Some(&state), "Up 3 minutes"), None, "{state}");
        }
        assert_eq!(
            gone_because(Some(&S::EXITED), "Exited (137) 2 seconds ago").as_deref(),
            Some("its container is exited (Exited (137) 2 seconds ago)")
        );
        assert!(gone_because(Some(&S::DEAD), "").is_some());
        assert!(gone_because(None, "").is_some());
    }

    #[test]
    fn a_node_gets_the_bundles_dir_mounted_at_the_same_path_and_the_watchdog() {
        let options = DockerOptions {
            node_image: "n".into(),
            container_image: "c".into(),
            network: "net".into(),
            instance: "i".into(),
            socket: "/var/run/docker.sock".into(),
            cpus_per_gib: "0.67".into(),
            warm_pool: None,
            node_port: 7000,
            start_timeout: Duration::from_secs(1),
            stop_grace: Duration::from_secs(1),
            keep_nodes: false,
            orphan_timeout: None,
            code: NodeCode {
                bundles_dir: Some("/data/bundles".into()),
                watchdog_bin: Some("/opt/container-service".into()),
                cluster_token: Some("0123456789abcdef0123".parse().unwrap()),
            },
            machine: "host-a".into(),
        };
        let body = node_body(&options, None, "n-1", 1);
        assert!(
            body.env
                .as_ref()
                .unwrap()
                .contains(&"FAAS_CLUSTER_TOKEN=0123456789abcdef0123".to_string()),
            "the token is handed over in the environment"
        );
        assert!(
            body.env
                .as_ref()
                .unwrap()
                .contains(&"FAAS_MACHINE=host-a".to_string()),
            "the node is told its machine"
        );
        let cmd = body.cmd.unwrap().join(" ");
        assert!(
            cmd.ends_with(
                "--bundles-dir /data/bundles --docker-watchdog-bin /opt/container-service"
            ),
            "{cmd}"
        );
        assert_eq!(
            body.host_config.unwrap().binds.unwrap(),
            vec![
                "/var/run/docker.sock:/var/run/docker.sock".to_string(),
                "/data/bundles:/data/bundles:ro".to_string(),
            ]
        );
        let plain = DockerOptions {
            code: NodeCode::default(),
            ..options
        };
        let body = node_body(&plain, None, "n-1", 1);
        assert!(!body.cmd.unwrap().join(" ").contains("--bundles-dir"));
        assert_eq!(body.host_config.unwrap().binds.unwrap().len(), 1);
    }
}
