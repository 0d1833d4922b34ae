//! What the platform's two Docker users (the node service's `docker` runtime and the
//! resource manager's `docker` provider) share: the labels on everything they create, names
//! Docker accepts, and the label-based listing and removal of containers. Behind the cargo
//! feature `docker`, so bollard is built only by the crates that talk to Docker.

use std::collections::HashMap;

use bollard::Docker;
use bollard::errors::Error as DockerError;
use bollard::models::ContainerSummary;
use bollard::query_parameters::{ListContainersOptionsBuilder, RemoveContainerOptionsBuilder};

/// The labels the platform puts on every container and network it creates.
pub mod labels {
    /// `function` (a function container) or `node` (a node-service container).
    pub const ROLE: &str = "minifaas.role";
    /// The platform instance (one deployment or test run); orphan clean-up is per instance.
    pub const INSTANCE: &str = "minifaas.instance";
    /// The node a container belongs to.
    pub const NODE: &str = "minifaas.node";
    /// The function a container runs.
    pub const FUNCTION: &str = "minifaas.function";
    /// The platform's id of a function container (what the node service calls it).
    pub const CONTAINER: &str = "minifaas.container";
    /// On a network: the platform created it.
    pub const NETWORK: &str = "minifaas.network";
    /// `true` on a container started unbound for the warm pool (it has no
    /// [`FUNCTION`] label, even once bound).
    pub const POOL: &str = "minifaas.pool";
    /// The role of a function container.
    pub const ROLE_FUNCTION: &str = "function";
    /// The role of a node-service container.
    pub const ROLE_NODE: &str = "node";
}

/// Whether Docker answered 404 (no such container, network or image).
pub fn is_not_found(e: &DockerError) -> bool {
    matches!(
        e,
        DockerError::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

/// Keeps `[a-zA-Z0-9_.-]` (what Docker allows in names), replacing anything else with `-`;
/// at most 40 characters.
pub fn name_part(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                c
            } else {
                '-'
            }
        })
        .take(40)
        .collect()
}

/// Force-removes a container (and its anonymous volumes); true if it is gone (a container
/// that was not there counts as gone; other errors are logged).
pub async fn force_remove(docker: &Docker, id: &str) -> bool {
    let options = RemoveContainerOptionsBuilder::new()
        .force(true)
        .v(true)
        .build();
    match docker.remove_container(id, Some(options)).await {
        Ok(()) => true,
        Err(e) if is_not_found(&e) => true,
        Err(e) => {
            tracing::warn!(container = id, error = %e, "cannot remove container");
            false
        }
    }
}

/// Every container (running or not) carrying all of `filters` (`key=value` labels).
pub async fn list_labelled(
    docker: &Docker,
    filters: &[String],
) -> Result<Vec<ContainerSummary>, DockerError> {
    let options = ListContainersOptionsBuilder::new()
        .all(true)
        .filters(&HashMap::from([("label", filters.to_vec())]))
        .build();
    docker.list_containers(Some(options)).await
}

/// Force-removes the containers `ids`, all at once; returns how many are gone.
pub async fn force_remove_all(docker: &Docker, ids: &[String]) -> usize {
    let removed = futures::future::join_all(ids.iter().map(|id| force_remove(docker, id))).await;
    removed.into_iter().filter(|ok| *ok).count()
}

/// Force-removes every container (running or not) carrying all of `filters` (`key=value`
/// labels); returns how many were removed (0 when they cannot be listed).
pub async fn remove_labelled(docker: &Docker, filters: &[String]) -> usize {
    let Ok(list) = list_labelled(docker, filters).await else {
        return 0;
    };
    let ids: Vec<String> = list.into_iter().filter_map(|c| c.id).collect();
    force_remove_all(docker, &ids).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_part_keeps_what_docker_accepts() {
        assert_eq!(name_part("node-1"), "node-1");
        assert_eq!(name_part("a b/c:d"), "a-b-c-d");
        assert_eq!(name_part(&"x".repeat(50)).len(), 40);
    }
}
