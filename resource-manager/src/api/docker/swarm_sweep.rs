//! Sweeping a lost node's function containers on whatever machine they run.
//!
//! A node service removes its function containers itself when it stops (SIGTERM within
//! the stop grace period). A node that dies — its task's container killed, its process out
//! of memory, its machine rebooted — leaves them behind, and they run on the node's
//! machine, which under Swarm need not be the resource manager's: its Docker socket does
//! not reach them. So the resource manager asks Swarm to run the cleaning there: a job of
//! one task of the node-service image with `--sweep`, pinned to the node's machine
//! (`swarm_spec::sweep_job`), which connects to that machine's Docker, removes the
//! containers labelled with the node's instance and id (what the node service's Docker
//! runtime does at every start) and exits. The resource manager waits for the job to end
//! (at most [`SWEEP_TIMEOUT`]) and removes its service, in a task of its own so a lost
//! node's replacement does not wait for it.
//!
//! A sweep job left by a resource manager that died meanwhile carries the role label
//! `sweep`: [`remove_sweep_jobs`] removes them at start, after adoption and at shutdown, and
//! `docker stack rm` removes them with the stack (they carry its namespace label).

use std::collections::HashMap;
use std::time::Duration;

use bollard::Docker;
use bollard::models::{ServiceSpec, TaskState};
use bollard::query_parameters::{ListServicesOptionsBuilder, ListTasksOptionsBuilder};
use faas_common::docker::is_not_found;

use super::labels;
use super::swarm_spec::ROLE_SWEEP;

/// How long a sweep job may take before its service is removed anyway.
pub const SWEEP_TIMEOUT: Duration = Duration::from_secs(60);
/// Pause between two looks at a sweep job's task.
const STEP: Duration = Duration::from_millis(250);

/// How a sweep job ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SweepEnd {
    /// Its task completed: the machine holds none of the node's containers.
    Done,
    /// Its task ended otherwise (what Swarm says).
    Failed(String),
    /// It had not ended within [`SWEEP_TIMEOUT`].
    TimedOut,
}

/// What a sweep job's task state means: `None` while it is still under way.
pub fn sweep_end(state: Option<&TaskState>, said: &str) -> Option<SweepEnd> {
    match state {
        Some(TaskState::COMPLETE) => Some(SweepEnd::Done),
        Some(
            s @ (TaskState::FAILED
            | TaskState::REJECTED
            | TaskState::SHUTDOWN
            | TaskState::ORPHANED
            | TaskState::REMOVE),
        ) => Some(SweepEnd::Failed(format!("its task is {s} ({said})"))),
        _ => None,
    }
}

/// Runs `job` (a [`super::swarm_spec::sweep_job`] spec) until it ends, then removes its
/// service; logs the outcome. `node_id` and `machine` only name it in the log.
pub async fn run_sweep(docker: Docker, job: ServiceSpec, node_id: String, machine: String) {
    let name = job.name.clone().unwrap_or_default();
    let service = match docker.create_service(job, None).await {
        Ok(created) => created.id.unwrap_or(name.clone()),
        Err(e) => {
            tracing::warn!(
                node = %node_id, %machine, error = %e,
                "cannot start the job sweeping a lost node's containers: they stay on its \
                 machine until the next node service of that id starts there"
            );
            return;
        }
    };
    let end = wait_for_end(&docker, &service).await;
    match &end {
        SweepEnd::Done => {
            tracing::info!(node = %node_id, %machine, "swept the lost node's containers")
        }
        other => tracing::warn!(
            node = %node_id, %machine, outcome = ?other,
            "the job sweeping a lost node's containers did not complete"
        ),
    }
    remove(&docker, &service).await;
}

async fn wait_for_end(docker: &Docker, service: &str) -> SweepEnd {
    let deadline = faas_common::clock::instant() + SWEEP_TIMEOUT;
    while faas_common::clock::instant() < deadline {
        let options = ListTasksOptionsBuilder::new()
            .filters(&HashMap::from([("service", vec![service.to_string()])]))
            .build();
        if let Ok(tasks) = docker.list_tasks(Some(options)).await
            && let Some(status) = tasks.into_iter().find_map(|t| t.status)
        {
            let said = status.err.or(status.message).unwrap_or_default();
            if let Some(end) = sweep_end(status.state.as_ref(), &said) {
                return end;
            }
        }
        tokio::time::sleep(STEP).await;
    }
    SweepEnd::TimedOut
}

async fn remove(docker: &Docker, service: &str) {
    if let Err(e) = docker.delete_service(service).await
        && !is_not_found(&e)
    {
        tracing::warn!(service, error = %e, "cannot remove a sweep job");
    }
}

/// Removes every sweep job service of `instance` (ended or not); how many.
pub async fn remove_sweep_jobs(docker: &Docker, instance: &str) -> usize {
    let filters = vec![
        format!("{}={instance}", labels::INSTANCE),
        format!("{}={ROLE_SWEEP}", labels::ROLE),
    ];
    let options = ListServicesOptionsBuilder::new()
        .filters(&HashMap::from([("label", filters)]))
        .build();
    let Ok(jobs) = docker.list_services(Some(options)).await else {
        return 0;
    };
    let ids: Vec<String> = jobs.into_iter().filter_map(|s| s.id).collect();
    futures::future::join_all(ids.iter().map(|id| remove(docker, id))).await;
    ids.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sweep_is_done_when_its_task_completes_and_failed_when_it_ends_otherwise() {
        for running in [
            None,
            Some(TaskState::PENDING),
            Some(TaskState::ASSIGNED),
            Some(TaskState::RUNNING),
        ] {
            assert_eq!(sweep_end(running.as_ref(), ""), None, "{running:?}");
        }
        assert_eq!(
            sweep_end(Some(&TaskState::COMPLETE), ""),
            Some(SweepEnd::Done)
        );
        assert_eq!(
            sweep_end(Some(&TaskState::FAILED), "exit 1"),
            Some(SweepEnd::Failed("its task is failed (exit 1)".into()))
        );
        assert!(matches!(
            sweep_end(Some(&TaskState::REJECTED), "no such image"),
            Some(SweepEnd::Failed(m)) if m.contains("no such image")
        ));
    }
}
