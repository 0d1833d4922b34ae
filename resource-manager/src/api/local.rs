//! The `local` node provider: one node-service child process per node on this machine.
//!
//! A node is started with `--host 127.0.0.1 --port 0 --node-id ID --memory-bytes N --runtime R`
//! (and `--warm-pool N` when set) and is up once it prints its readiness line. Stopping sends
//! SIGTERM (the node service then stops its own container children), waits out the grace
//! period, kills, and always reaps.
//! Children die with the manager even if it is killed (see `faas_common::launch`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use faas_common::launch::{Child, Launcher};

use crate::model::NodeEndpoint;
use crate::service::{NodeProvider, ProviderError};

/// How local nodes are run.
#[derive(Clone, Debug)]
pub struct LocalOptions {
    /// `--runtime` of each node service.
    pub runtime: String,
    /// `--warm-pool` of each node service (`None`: the node's default or its environment).
    pub warm_pool: Option<u32>,
    /// How long a node may take to print its readiness line.
    pub start_timeout: Duration,
    /// How long a stopping node may take before it is killed.
    pub stop_grace: Duration,
}

type Shared<T> = Arc<tokio::sync::Mutex<T>>;

/// Starts node-service processes.
#[derive(Debug)]
pub struct LocalProvider {
    launcher: Launcher,
    options: LocalOptions,
    /// Running nodes by id. A child's own lock is held while it stops, so `shutdown` waits
    /// for stops already under way.
    children: Mutex<HashMap<String, Shared<Child>>>,
    closed: AtomicBool,
}

impl LocalProvider {
    /// A provider running `launcher` (the node-service binary).
    pub fn new(launcher: Launcher, options: LocalOptions) -> LocalProvider {
        LocalProvider {
            launcher,
            options,
            children: Mutex::new(HashMap::new()),
            closed: AtomicBool::new(false),
        }
    }

    fn child(&self, node_id: &str) -> Option<Shared<Child>> {
        let children = self.children.lock().unwrap_or_else(PoisonError::into_inner);
        children.get(node_id).cloned()
    }
}

impl NodeProvider for LocalProvider {
    fn name(&self) -> &'static str {
        "local"
    }

    async fn start_node(
        &self,
        node_id: &str,
        memory_bytes: u64,
    ) -> Result<NodeEndpoint, ProviderError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(ProviderError::Closed);
        }
        let mut cmd = self.launcher.command();
        cmd.args(["--host", "127.0.0.1", "--port", "0", "--node-id", node_id])
            .arg("--memory-bytes")
            .arg(memory_bytes.to_string())
            .arg("--runtime")
            .arg(&self.options.runtime);
        if let Some(n) = self.options.warm_pool {
            cmd.arg("--warm-pool").arg(n.to_string());
        }
        let (mut child, addr) = Child::spawn_ready(cmd, self.options.start_timeout)
            .await
            .map_err(|e| ProviderError::Start {
                node_id: node_id.to_string(),
                message: e.to_string(),
            })?;
        {
            let mut children = self.children.lock().unwrap_or_else(PoisonError::into_inner);
            if !self.closed.load(Ordering::Acquire) {
                children.insert(
                    node_id.to_string(),
                    Arc::new(tokio::sync::Mutex::new(child)),
                );
                let ip = match addr.ip() {
                    ip if ip.is_unspecified() => IpAddr::from([127, 0, 0, 1]),
                    ip => ip,
                };
                return Ok(NodeEndpoint {
                    address: ip.to_string(),
                    port: addr.port(),
                });
            }
        }
        child.stop(self.options.stop_grace).await;
        Err(ProviderError::Closed)
    }

    async fn stop_node(&self, node_id: &str) {
        let Some(child) = self.child(node_id) else {
            return;
        };
        child.lock().await.stop(self.options.stop_grace).await;
        let mut children = self.children.lock().unwrap_or_else(PoisonError::into_inner);
        children.remove(node_id);
    }

    async fn shutdown(&self) {
        self.closed.store(true, Ordering::Release);
        let all: Vec<(String, Shared<Child>)> = {
            let mut children = self.children.lock().unwrap_or_else(PoisonError::into_inner);
            children.drain().collect()
        };
        if !all.is_empty() {
            tracing::info!(nodes = all.len(), "stopping local nodes");
        }
        let grace = self.options.stop_grace;
        futures::future::join_all(all.into_iter().map(|(_, child)| async move {
            child.lock().await.stop(grace).await;
        }))
        .await;
    }
}
