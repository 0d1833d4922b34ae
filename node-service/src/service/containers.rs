//! A container's life on the node: created (from the warm pool or started for the create),
//! removed, and every container stopped at shutdown.

use super::*;

impl Node {
    /// Makes a container for `spec`: a warm pool container bound to it when one is ready and
    /// binds, else one started for it; returns once it answers. A bundle's container is
    /// always started for it (see the module docs).
    pub async fn create_container(&self, spec: ContainerSpec) -> Result<Created, NodeError> {
        let _busy = self.activity.begin();
        let bundle = self.bundle_of(&spec)?;
        // Held until the container is recorded: a failed start gives the memory back.
        let reservation = self
            .containers
            .reserve(spec.memory_bytes, self.identity.max_committed_bytes)
            .map_err(|o: OverLimit| NodeError::Overcommitted {
                node: self.identity.node_id.clone(),
                asked: spec.memory_bytes,
                committed: o.committed_bytes,
                reserved: o.reserved_bytes,
                limit: self.identity.max_committed_bytes,
            })?;
        let (handle, from_pool) = match &bundle {
            Some(bundle) => (self.start_container(&spec, Some(bundle)).await?, false),
            None => match self.pool.take(&spec).await {
                Some(handle) => (handle, true),
                None => (self.start_container(&spec, None).await?, false),
            },
        };
        let created_at_ms = self.host.now_ms();
        let container = Container {
            id: handle.id,
            address: handle.address,
            spec,
            state: ContainerState::Running,
            created_at_ms,
            calls: Arc::new(Calls::new(created_at_ms)),
        };
        reservation.insert(container.clone());
        let committed = self.containers.committed_bytes();
        if committed > self.identity.total_memory_bytes {
            // Allowed up to the over-commit limit (the scheduler over-commits on purpose).
            tracing::debug!(
                committed,
                total = self.identity.total_memory_bytes,
                "node memory over-committed"
            );
        }
        Ok(Created {
            container,
            from_pool,
        })
    }

    /// Starts a container for `spec` (of `bundle`, if made of one) through the runtime and
    /// waits until it answers.
    pub(super) async fn start_container(
        &self,
        spec: &ContainerSpec,
        bundle: Option<&Bundle>,
    ) -> Result<ContainerHandle, NodeError> {
        let handle = self.runtime.create(spec, bundle).await?;
        if let Err(e) = self
            .invoker
            .ready(&handle, self.identity.ready_timeout)
            .await
        {
            self.invoker.forget(&handle.id);
            let _ = self.runtime.remove(&handle.id).await;
            return Err(NodeError::NotReady {
                container: handle.id,
                message: e.to_string(),
            });
        }
        Ok(handle)
    }

    /// Stops a container (running or dead) and forgets it.
    pub async fn remove_container(&self, id: &str) -> Result<(), NodeError> {
        let _busy = self.activity.begin();
        let container = self
            .containers
            .remove(id)
            .ok_or_else(|| self.not_found(id))?;
        self.invoker.forget(id);
        match self.runtime.remove(id).await {
            Ok(()) => Ok(()),
            // A dead container may already be gone from the runtime.
            Err(RuntimeError::NotFound(_)) if container.state != ContainerState::Running => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Stops the warm pool and every container.
    pub async fn shutdown(&self) {
        self.pool.shutdown().await;
        for c in self.containers.all() {
            self.containers.remove(&c.id);
            self.invoker.forget(&c.id);
        }
        self.runtime.shutdown().await;
    }
}
