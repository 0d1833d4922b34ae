//! Calls to the Docker Engine the runtime is made of: the platform's bridge network (made
//! once, settled to one of that name), a container's IP, and reading memory and CPU from a
//! stats sample. Names, labels and label-based removal are `faas_common::docker`'s.

use super::*;

/// Makes sure the bridge network `name` exists; returns the id of the one to use and whether
/// this call created a network.
///
/// Docker does not keep network names unique, and nodes starting together each find the
/// name missing and create one. So after creating, every node [`settle_network`]s: all
/// keep the oldest network of that name and remove the others, and containers join it by
/// its id.
pub async fn ensure_network(
    docker: &Docker,
    name: &str,
    instance: &str,
) -> Result<(String, bool), DockerError> {
    let created = match docker.inspect_network(name, None).await {
        Ok(_) => false,
        Err(e) if is_not_found(&e) => {
            let request = NetworkCreateRequest {
                name: name.to_string(),
                driver: Some("bridge".into()),
                labels: Some(HashMap::from([
                    (labels::NETWORK.to_string(), "true".to_string()),
                    (labels::INSTANCE.to_string(), instance.to_string()),
                ])),
                ..Default::default()
            };
            docker.create_network(request).await?;
            true
        }
        Err(e) => return Err(e),
    };
    Ok((settle_network(docker, name).await?, created))
}

/// The oldest network named exactly `name` (the id); the other networks of that name are
/// removed where no container uses them (another node may be removing them too: errors
/// are ignored). Every node sees the oldest one, and none removes it, so all agree.
pub async fn settle_network(docker: &Docker, name: &str) -> Result<String, DockerError> {
    let options = ListNetworksOptionsBuilder::new()
        .filters(&HashMap::from([("name", vec![name])]))
        .build();
    let mut same: Vec<Network> = docker
        .list_networks(Some(options))
        .await?
        .into_iter()
        // The filter matches parts of names.
        .filter(|n| n.name.as_deref() == Some(name) && n.id.is_some())
        .collect();
    same.sort_by_cached_key(|n| (created_key(n.created.as_deref()), n.id.clone()));
    let mut same = same.into_iter();
    let Some(kept) = same.next().and_then(|n| n.id) else {
        // Removed between the create and the list (a node that stopped): inspect says.
        let n = docker.inspect_network(name, None).await?;
        return Ok(n.id.unwrap_or_else(|| name.to_string()));
    };
    // Docker refuses to remove a network a container uses.
    for id in same.filter_map(|n| n.id) {
        if let Err(e) = docker.remove_network(&id).await {
            tracing::debug!(network = name, id, error = %e, "duplicate network not removed");
        }
    }
    Ok(kept)
}

/// A network's creation time, comparable as text: Docker writes RFC 3339 with as few
/// fraction digits as it needs (`…:01.12Z` is after `…:01.1Z`), so the fraction is padded.
pub(super) fn created_key(created: Option<&str>) -> String {
    let Some(created) = created else {
        return String::new();
    };
    let (seconds, rest) = created.split_once('.').unwrap_or((created, ""));
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    format!("{seconds}.{digits:0<9}")
}

/// Removes network `name` (a name or an id) if nothing uses it any more (errors are logged,
/// not returned).
pub async fn remove_network_if_unused(docker: &Docker, name: &str) {
    match docker.inspect_network(name, None).await {
        Ok(n) if n.containers.as_ref().is_none_or(|c| c.is_empty()) => {
            if let Err(e) = docker.remove_network(name).await {
                tracing::debug!(network = name, error = %e, "network not removed");
            }
        }
        _ => {}
    }
}

/// The container's IP on `network`, from an inspect.
pub async fn container_ip(docker: &Docker, id: &str, network: &str) -> Option<String> {
    let inspect = docker.inspect_container(id, None).await.ok()?;
    inspect
        .network_settings?
        .networks?
        .get(network)?
        .ip_address
        .clone()
        .filter(|ip| !ip.is_empty())
}

/// `docker stats`' memory figure: usage minus the inactive page cache.
pub(super) fn memory_used(stats: &ContainerStatsResponse) -> Option<u64> {
    let mem = stats.memory_stats.as_ref()?;
    let usage = mem.usage?;
    let cache = mem
        .stats
        .as_ref()
        .and_then(|s| {
            s.get("total_inactive_file")
                .or_else(|| s.get("inactive_file"))
        })
        .copied()
        .unwrap_or(0);
    Some(usage.saturating_sub(cache))
}

/// (container CPU ns, system CPU ns, online CPUs) of one sample.
pub(super) fn cpu_sample(stats: &ContainerStatsResponse) -> Option<(u64, u64, u32)> {
    let cpu = stats.cpu_stats.as_ref()?;
    let total = cpu.cpu_usage.as_ref()?.total_usage?;
    let system = cpu.system_cpu_usage?;
    let online = cpu
        .online_cpus
        .filter(|n| *n > 0)
        .or_else(|| {
            cpu.cpu_usage
                .as_ref()?
                .percpu_usage
                .as_ref()
                .map(|v| v.len() as u32)
        })
        .unwrap_or(1);
    Some((total, system, online))
}
