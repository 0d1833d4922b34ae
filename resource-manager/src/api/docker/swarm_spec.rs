//! The pure half of the `swarm` provider: a node's Swarm service (see the module docs of
//! `swarm.rs`), and what a node task's state means for a starting or running node.

use std::time::Duration;

use bollard::models::{
    EndpointSpec, EndpointSpecModeEnum, Limit, Mount, MountType, NetworkAttachmentConfig,
    ResourceObject, ServiceSpec, ServiceSpecMode, ServiceSpecModeReplicated,
    ServiceSpecModeReplicatedJob, TaskSpec, TaskSpecContainerSpec, TaskSpecContainerSpecPrivileges,
    TaskSpecPlacement, TaskSpecPlacementPreferences, TaskSpecPlacementSpread, TaskSpecResources,
    TaskSpecRestartPolicy, TaskSpecRestartPolicyConditionEnum, TaskState,
};
use faas_common::docker::name_part;
use faas_common::units::MIB;

use super::containers::{node_args, node_env, node_labels};
use super::{DockerOptions, SOCKET_IN_NODE, labels};

/// The label saying how much memory a node service reserves (bytes).
pub const MEMORY_LABEL: &str = "minifaas.memory";
/// The machines node tasks spread over: every Swarm node has its own id.
pub const SPREAD_OVER: &str = "node.id";
/// What a node says its machine is: Swarm expands this in the task's environment to the
/// hostname of the machine it placed the task on.
pub const MACHINE_TEMPLATE: &str = "{{.Node.Hostname}}";
/// The role label of a sweep job (see [`sweep_job`]).
pub const ROLE_SWEEP: &str = "sweep";
/// The memory a sweep job may use: it lists and removes containers, nothing more.
const SWEEP_MEMORY: u64 = 64 * MIB;

/// The Swarm service name of node `node_id` of `instance` (a DNS name on the overlay
/// network: letters, digits and `-`, at most 63 characters).
pub fn service_name(instance: &str, node_id: &str) -> String {
    let name = format!("minifaas-{}-{}", name_part(instance), name_part(node_id));
    name.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(63)
        .collect()
}

/// The service of node `node_id` with `memory_bytes`: one task of the node-service image
/// with the node's size as memory reservation and limit, never restarted, on the overlay
/// network, reached at its task's address (DNS round robin: the name is the task's IP).
pub fn node_service(
    o: &DockerOptions,
    socket_gid: Option<u32>,
    node_id: &str,
    memory_bytes: u64,
) -> ServiceSpec {
    let memory = i64::try_from(memory_bytes).unwrap_or(i64::MAX);
    let mut labels = node_labels(o, node_id);
    let mut mounts = vec![bind(&o.socket, SOCKET_IN_NODE, false)];
    if let Some(dir) = &o.code.bundles_dir {
        let dir = dir.display().to_string();
        mounts.push(bind(&dir, &dir, true));
    }
    let container = TaskSpecContainerSpec {
        image: Some(o.node_image.clone()),
        labels: Some(labels.clone()),
        args: Some(node_args(o, node_id, memory_bytes)),
        env: Some(node_env(o)),
        user: Some("65534:65534".into()),
        groups: socket_gid.map(|g| vec![g.to_string()]),
        privileges: Some(TaskSpecContainerSpecPrivileges {
            no_new_privileges: Some(true),
            ..Default::default()
        }),
        read_only: Some(true),
        mounts: Some(mounts),
        stop_grace_period: Some(i64::try_from(o.stop_grace.as_nanos()).unwrap_or(i64::MAX)),
        capability_drop: Some(vec!["ALL".into()]),
        ..Default::default()
    };
    labels.insert(MEMORY_LABEL.to_string(), memory_bytes.to_string());
    ServiceSpec {
        name: Some(service_name(&o.instance, node_id)),
        labels: Some(labels),
        task_template: Some(TaskSpec {
            container_spec: Some(container),
            resources: Some(TaskSpecResources {
                limits: Some(Limit {
                    memory_bytes: Some(memory),
                    pids: Some(1024),
                    ..Default::default()
                }),
                reservations: Some(ResourceObject {
                    memory_bytes: Some(memory),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            // A dead node is a lost node: the manager decides, under a new id.
            restart_policy: Some(TaskSpecRestartPolicy {
                condition: Some(TaskSpecRestartPolicyConditionEnum::NONE),
                ..Default::default()
            }),
            placement: Some(TaskSpecPlacement {
                preferences: Some(vec![TaskSpecPlacementPreferences {
                    spread: Some(TaskSpecPlacementSpread {
                        spread_descriptor: Some(SPREAD_OVER.into()),
                    }),
                }]),
                ..Default::default()
            }),
            networks: Some(vec![NetworkAttachmentConfig {
                target: Some(o.network.clone()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        mode: Some(ServiceSpecMode {
            replicated: Some(ServiceSpecModeReplicated { replicas: Some(1) }),
            ..Default::default()
        }),
        endpoint_spec: Some(EndpointSpec {
            mode: Some(EndpointSpecModeEnum::DNSRR),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The Swarm job that sweeps node `node_id`'s function containers from `machine` (a Swarm
/// node id): one task of the node-service image with `--sweep`, pinned to that machine
/// (`node.id==`), on the overlay network (so the network exists there), reserving nothing
/// (the machine may be full) and limited to 64 MiB. It carries the instance, node, stack
/// and role `sweep` labels, so leftovers are found and `docker stack rm` removes it.
pub fn sweep_job(
    o: &DockerOptions,
    socket_gid: Option<u32>,
    node_id: &str,
    machine: &str,
) -> ServiceSpec {
    let mut spec = node_service(o, socket_gid, node_id, SWEEP_MEMORY);
    spec.name = Some(sweep_name(&o.instance, node_id));
    if let Some(l) = spec.labels.as_mut() {
        l.insert(labels::ROLE.to_string(), ROLE_SWEEP.to_string());
        l.remove(MEMORY_LABEL);
    }
    let task = spec.task_template.get_or_insert_with(Default::default);
    if let Some(c) = task.container_spec.as_mut() {
        if let Some(l) = c.labels.as_mut() {
            l.insert(labels::ROLE.to_string(), ROLE_SWEEP.to_string());
        }
        if let Some(args) = c.args.as_mut() {
            args.push("--sweep".to_string());
        }
    }
    if let Some(r) = task.resources.as_mut() {
        r.reservations = None;
    }
    task.placement = Some(TaskSpecPlacement {
        constraints: Some(vec![format!("node.id=={machine}")]),
        ..Default::default()
    });
    spec.mode = Some(ServiceSpecMode {
        replicated_job: Some(ServiceSpecModeReplicatedJob {
            max_concurrent: Some(1),
            total_completions: Some(1),
        }),
        ..Default::default()
    });
    spec
}

/// The service name of the job sweeping node `node_id` of `instance`.
pub fn sweep_name(instance: &str, node_id: &str) -> String {
    service_name(instance, &format!("sweep-{node_id}"))
}

fn bind(source: &str, target: &str, read_only: bool) -> Mount {
    Mount {
        source: Some(source.to_string()),
        target: Some(target.to_string()),
        typ: Some(MountType::BIND),
        read_only: Some(read_only),
        ..Default::default()
    }
}

/// Where a node's task is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TaskPhase {
    /// No task yet, or Swarm has not placed it on a machine.
    Unplaced(String),
    /// Placed, starting on its machine.
    Starting,
    /// Its container runs.
    Running,
    /// It ended or was refused (what Swarm says).
    Ended(String),
}

/// What a task's state (and Swarm's message and error) means.
pub fn task_phase(state: Option<&TaskState>, message: &str, err: &str) -> TaskPhase {
    let said = || {
        [message, err]
            .iter()
            .filter(|s| !s.is_empty())
            .copied()
            .collect::<Vec<_>>()
            .join(": ")
    };
    match state {
        None | Some(TaskState::NEW | TaskState::ALLOCATED | TaskState::PENDING) => {
            TaskPhase::Unplaced(said())
        }
        Some(
            TaskState::ASSIGNED
            | TaskState::ACCEPTED
            | TaskState::PREPARING
            | TaskState::READY
            | TaskState::STARTING,
        ) => TaskPhase::Starting,
        Some(TaskState::RUNNING) => TaskPhase::Running,
        Some(other) => TaskPhase::Ended(format!("its task is {other} ({})", said())),
    }
}

/// The start failure of a node Swarm did not place within `waited`.
pub fn unplaced_message(memory_bytes: u64, waited: Duration, swarm_says: &str) -> String {
    let why = if swarm_says.is_empty() {
        String::new()
    } else {
        format!("; Swarm says: {swarm_says}")
    };
    format!(
        "no machine has {} MiB free: Swarm placed no task for it within {} ms{why}",
        memory_bytes.div_ceil(MIB),
        waited.as_millis()
    )
}

/// Why a started node's service counts as gone (`None` while its task runs): `running` is
/// the service's count of running tasks, `None` when the service is missing.
pub fn service_gone_because(running: Option<u64>) -> Option<String> {
    match running {
        None => Some("its Swarm service is gone".to_string()),
        Some(0) => Some("its Swarm task is no longer running".to_string()),
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::super::labels;
    use super::*;
    use crate::config::NodeCode;

    fn options() -> DockerOptions {
        DockerOptions {
            node_image: "minifaas/node-service:t".into(),
            container_image: "minifaas/container-service:t".into(),
            network: "faas-nodes".into(),
            instance: "faas".into(),
            socket: "/var/run/docker.sock".into(),
            cpus_per_gib: "0.67".into(),
            warm_pool: Some(2),
            node_port: 7000,
            start_timeout: Duration::from_secs(30),
            stop_grace: Duration::from_secs(5),
            keep_nodes: false,
            orphan_timeout: None,
            code: NodeCode::default(),
            machine: MACHINE_TEMPLATE.into(),
        }
    }

    #[test]
    fn a_sweep_job_runs_once_on_the_lost_nodes_machine_and_reserves_nothing() {
        let spec = sweep_job(&options(), Some(998), "node-3", "swarm-node-abc");
        assert_eq!(spec.name.as_deref(), Some("minifaas-faas-sweep-node-3"));
        let l = spec.labels.as_ref().unwrap();
        assert_eq!(l[labels::ROLE], ROLE_SWEEP);
        assert_eq!(l[labels::NODE], "node-3");
        assert!(!l.contains_key(MEMORY_LABEL), "it holds no node's memory");
        let job = spec.mode.unwrap().replicated_job.unwrap();
        assert_eq!(
            (job.max_concurrent, job.total_completions),
            (Some(1), Some(1))
        );
        let task = spec.task_template.unwrap();
        assert_eq!(
            task.placement.unwrap().constraints.unwrap(),
            vec!["node.id==swarm-node-abc".to_string()]
        );
        let r = task.resources.unwrap();
        assert!(r.reservations.is_none());
        assert_eq!(r.limits.unwrap().memory_bytes, Some(64 << 20));
        let c = task.container_spec.unwrap();
        assert_eq!(c.labels.unwrap()[labels::ROLE], ROLE_SWEEP);
        let args = c.args.unwrap().join(" ");
        assert!(
            args.contains("--node-id node-3") && args.ends_with("--sweep"),
            "{args}"
        );
        assert!(
            c.env
                .unwrap()
                .contains(&format!("FAAS_MACHINE={MACHINE_TEMPLATE}")),
            "the node is told its machine through Swarm's template"
        );
    }

    #[test]
    fn a_node_service_reserves_and_limits_the_nodes_memory_and_is_never_restarted() {
        let spec = node_service(&options(), Some(998), "node-3", 3072 * MIB);
        assert_eq!(spec.name.as_deref(), Some("minifaas-faas-node-3"));
        let l = spec.labels.as_ref().unwrap();
        assert_eq!(l[labels::ROLE], labels::ROLE_NODE);
        assert_eq!(l[labels::INSTANCE], "faas");
        assert_eq!(l[labels::NODE], "node-3");
        assert_eq!(l[MEMORY_LABEL], (3072 * MIB).to_string());
        let task = spec.task_template.unwrap();
        let r = task.resources.unwrap();
        let bytes = Some(i64::try_from(3072 * MIB).unwrap());
        assert_eq!(r.limits.unwrap().memory_bytes, bytes);
        assert_eq!(r.reservations.unwrap().memory_bytes, bytes);
        assert_eq!(
            task.restart_policy.unwrap().condition,
            Some(TaskSpecRestartPolicyConditionEnum::NONE)
        );
        let spread = &task.placement.unwrap().preferences.unwrap()[0];
        assert_eq!(
            spread.spread.as_ref().unwrap().spread_descriptor.as_deref(),
            Some(SPREAD_OVER)
        );
        assert_eq!(
            task.networks.unwrap()[0].target.as_deref(),
            Some("faas-nodes")
        );
        let c = task.container_spec.unwrap();
        let args = c.args.unwrap().join(" ");
        assert!(args.contains("--node-id node-3"), "{args}");
        assert!(args.contains("--runtime docker"), "{args}");
        assert!(args.contains("--docker-network faas-nodes"), "{args}");
        assert!(
            args.contains(&format!("--memory-bytes {}", 3072 * MIB)),
            "{args}"
        );
        assert_eq!(c.groups, Some(vec!["998".to_string()]));
        let socket = &c.mounts.unwrap()[0];
        assert_eq!(socket.source.as_deref(), Some("/var/run/docker.sock"));
        assert_eq!(socket.target.as_deref(), Some(SOCKET_IN_NODE));
        assert_eq!(c.labels.unwrap()[labels::NODE], "node-3");
        assert_eq!(
            spec.endpoint_spec.unwrap().mode,
            Some(EndpointSpecModeEnum::DNSRR)
        );
    }

    #[test]
    fn service_names_are_dns_labels() {
        assert_eq!(service_name("a_b.c", "node-1"), "minifaas-a-b-c-node-1");
        assert_eq!(service_name(&"x".repeat(50), &"y".repeat(50)).len(), 63);
    }

    #[test]
    fn a_pending_task_is_unplaced_with_swarms_reason() {
        assert_eq!(
            task_phase(
                Some(&TaskState::PENDING),
                "pending task scheduling",
                "no suitable node (insufficient resources on 1 node)"
            ),
            TaskPhase::Unplaced(
                "pending task scheduling: no suitable node (insufficient resources on 1 node)"
                    .into()
            )
        );
        assert_eq!(task_phase(None, "", ""), TaskPhase::Unplaced(String::new()));
        assert_eq!(
            task_phase(Some(&TaskState::PREPARING), "", ""),
            TaskPhase::Starting
        );
        assert_eq!(
            task_phase(Some(&TaskState::RUNNING), "started", ""),
            TaskPhase::Running
        );
        assert_eq!(
            task_phase(
                Some(&TaskState::FAILED),
                "started",
                "task: non-zero exit (1)"
            ),
            TaskPhase::Ended("its task is failed (started: task: non-zero exit (1))".into())
        );
        assert!(matches!(
            task_phase(Some(&TaskState::REJECTED), "", "No such image"),
            TaskPhase::Ended(_)
        ));
    }

    #[test]
    fn an_unplaced_node_says_which_size_found_no_machine() {
        assert_eq!(
            unplaced_message(3072 * MIB, Duration::from_secs(5), "no suitable node"),
            "no machine has 3072 MiB free: Swarm placed no task for it within 5000 ms; \
             Swarm says: no suitable node"
        );
        assert!(unplaced_message(1, Duration::ZERO, "").starts_with("no machine has 1 MiB free"));
    }

    #[test]
    fn a_service_without_a_running_task_is_gone() {
        assert_eq!(service_gone_because(Some(1)), None);
        assert!(service_gone_because(Some(0)).is_some());
        assert!(service_gone_because(None).is_some());
    }
}
