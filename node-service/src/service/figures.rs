//! The node's figures: `GetStats` (the node and its containers, from the runtime's complete
//! list) and `DescribeNode` (who the node is, who reserved it, its containers and their calls
//! in flight).

use super::*;

impl Node {
    /// The node's and its containers' measured figures. Containers whose process exited
    /// are marked dead here too. What the runtime runs besides the node's containers (warm
    /// pool containers, a container still being created) counts in the node's own usage, not
    /// as containers; a pool container found exited is replaced.
    ///
    /// A scheduler takes a container missing from its node's samples for dead, so a running
    /// container is never left out: a container is recorded only after the runtime holds it,
    /// so every container running when the call began is in the runtime's list, which is
    /// complete or an error ([`Runtime::stats`]); a runtime that cannot list fails the call
    /// (UNAVAILABLE) instead of answering an empty list.
    pub async fn stats(&self) -> Result<StatsReport, NodeError> {
        let (containers, elsewhere) = self.observe().await?;
        let mut own = self.host.own_usage();
        own.memory_bytes += elsewhere.memory_bytes;
        own.cpu_pct += elsewhere.cpu_pct;
        let total = self.identity.total_memory_bytes;
        let used = own.memory_bytes + containers.iter().map(|c| c.memory_bytes).sum::<u64>();
        let cpu = own.cpu_pct + containers.iter().map(|c| c.cpu_pct).sum::<f64>();
        Ok(StatsReport {
            node: NodeStats {
                total_memory_bytes: total,
                memory_usage_bytes: used,
                available_memory_bytes: total.saturating_sub(used),
                cpu_pct: cpu,
                disk: self.host.disk(),
                committed_memory_bytes: self.containers.committed_bytes(),
            },
            containers,
            live_id: self.identity.live_id.clone(),
            owner_account_id: self.owner(),
        })
    }

    /// Asks the runtime what runs: buries the node's containers whose process exited,
    /// replaces exited pool containers, and returns the usage of the node's live containers
    /// and the summed usage of what else the runtime runs (pool containers, containers still
    /// being created).
    pub(super) async fn observe(&self) -> Result<(Vec<ContainerUsage>, ProcessUsage), NodeError> {
        let usages = self.runtime.stats().await?;
        let mut containers = Vec::with_capacity(usages.len());
        let mut elsewhere = ProcessUsage::default();
        let mut exited_elsewhere = Vec::new();
        for u in usages {
            if self.containers.get(&u.id).is_none() {
                if u.alive {
                    elsewhere.memory_bytes += u.memory_bytes;
                    elsewhere.cpu_pct += u.cpu_pct;
                } else {
                    exited_elsewhere.push(u.id);
                }
                continue;
            }
            if !u.alive {
                self.bury(&u.id, &format!("container {} process exited", u.id))
                    .await;
                continue;
            }
            containers.push(u);
        }
        self.pool.reap(&exited_elsewhere);
        Ok((containers, elsewhere))
    }

    /// Who the node is, who reserved it and when, and every container it holds with its
    /// calls in flight: what a restarted scheduler rebuilds its view of the node from.
    ///
    /// Exact at the moment of the answer: the runtime is asked first (as for
    /// [`Node::stats`]), so a container whose process exited since the last call reads dead,
    /// not running; a runtime that cannot tell fails the call (UNAVAILABLE) rather than
    /// answer a guess. The counts are read after that, from the containers' own [`Calls`].
    /// Warm pool containers are not the node's and are left out; so are containers still
    /// being created (they become the node's when their create answers).
    pub async fn describe(&self) -> Result<NodeDescription, NodeError> {
        self.observe().await?;
        let mut containers: Vec<ContainerDescription> = self
            .containers
            .all()
            .iter()
            .map(|c| ContainerDescription::from(c.as_ref()))
            .collect();
        containers.sort_by(|a, b| (a.created_at_ms, &a.id).cmp(&(b.created_at_ms, &b.id)));
        let reservation = self.reservation();
        Ok(NodeDescription {
            node_id: self.identity.node_id.clone(),
            live_id: self.identity.live_id.clone(),
            owner_account_id: reservation.owner_account_id,
            reserved_at_ms: reservation.at_ms,
            total_memory_bytes: self.identity.total_memory_bytes,
            containers,
            machine: self.identity.machine.clone(),
        })
    }
}
