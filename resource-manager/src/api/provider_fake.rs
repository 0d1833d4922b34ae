//! The fake beside the real providers, for the manager's unit tests: a [`FakeProvider`] that
//! records what it is asked to do, and [`FakeNode`], an in-process node service that answers
//! `DescribeNode` as a given node (the part of a node a restarted manager talks to).

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use faas_common::shutdown::Trigger;
use faas_proto::node_admin::node_admin_server::{NodeAdmin, NodeAdminServer};
use faas_proto::node_admin::{DescribeNodeReply, DescribeNodeRequest};
use tonic::{Request, Response, Status};

use crate::core::FoundNode;
use crate::model::{NodeEndpoint, NodeHandle, StartedNode};
use crate::service::{GoneNode, NodeProvider, ProviderError};

/// An in-process node service that answers `DescribeNode` with a fixed reply.
pub struct FakeNode {
    pub endpoint: NodeEndpoint,
    _stop: Trigger,
}

struct Describe(DescribeNodeReply);

#[tonic::async_trait]
impl NodeAdmin for Describe {
    async fn function_logs(
        &self,
        _: Request<faas_proto::node_admin::FunctionLogsRequest>,
    ) -> Result<Response<faas_proto::node_admin::FunctionLogsReply>, Status> {
        Err(Status::unimplemented("this fake node keeps no logs"))
    }
    async fn describe_node(
        &self,
        _request: Request<DescribeNodeRequest>,
    ) -> Result<Response<DescribeNodeReply>, Status> {
        Ok(Response::new(self.0.clone()))
    }
}

impl FakeNode {
    /// Serves node `node_id`, life `live_id`, reserved by `owner` (account, time) if given,
    /// on a free loopback port until dropped.
    pub async fn serve(node_id: &str, live_id: &str, owner: Option<(&str, i64)>) -> FakeNode {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let reply = DescribeNodeReply {
            node_id: node_id.to_string(),
            live_id: live_id.to_string(),
            owner_account_id: owner.map(|(a, _)| a.to_string()).unwrap_or_default(),
            reserved_at_ms: owner.map_or(0, |(_, at)| at),
            ..DescribeNodeReply::default()
        };
        let (stop, shutdown) = faas_common::shutdown::channel();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(NodeAdminServer::new(Describe(reply)))
                .serve_with_incoming_shutdown(
                    faas_common::serve::incoming(listener),
                    shutdown.wait(),
                ),
        );
        FakeNode {
            endpoint: NodeEndpoint {
                address: "127.0.0.1".into(),
                port,
            },
            _stop: stop,
        }
    }
}

/// Starts nodes after `start_delay` (tokio time) at `port`, or, with `serve_nodes`, as a
/// [`FakeNode`] each (live id `live-ID`); records starts, stops, kills and adoptions; reports
/// the ids put into `gone` as no longer running; adopts the ids in `alive`; finds `found`.
#[derive(Default)]
pub struct FakeProvider {
    pub start_delay: Duration,
    pub port: u16,
    pub serve_nodes: bool,
    /// Every start fails with this (`StartFailure::NoCapacity`), as a full swarm refuses.
    pub refuse_starts: Option<String>,
    pub started: Mutex<Vec<String>>,
    pub stopped: Mutex<Vec<String>>,
    pub killed: Mutex<Vec<String>>,
    pub gone: Mutex<Vec<String>>,
    pub alive: Mutex<HashSet<String>>,
    pub adopted: Mutex<Vec<String>>,
    pub found: Mutex<Vec<FoundNode>>,
    /// Each `adoption_done`: the ids it was given and how many starts had happened by then.
    pub adoption_done: Mutex<Vec<(Vec<String>, usize)>>,
    pub detached: AtomicBool,
    /// The nodes served with `serve_nodes`, by id.
    pub serving: Mutex<HashMap<String, FakeNode>>,
}

impl FakeProvider {
    pub fn started(&self) -> Vec<String> {
        self.started.lock().unwrap().clone()
    }

    pub fn killed(&self) -> Vec<String> {
        self.killed.lock().unwrap().clone()
    }

    /// Started (or adopted) and neither stopped nor killed.
    pub fn running(&self) -> Vec<String> {
        let stopped = self.stopped.lock().unwrap();
        let killed = self.killed.lock().unwrap();
        let mut ids = self.started();
        ids.extend(self.adopted.lock().unwrap().iter().cloned());
        ids.retain(|id| !stopped.contains(id) && !killed.contains(id));
        ids
    }

    fn end(&self, node_id: &str) {
        self.serving.lock().unwrap().remove(node_id);
    }
}

impl NodeProvider for FakeProvider {
    fn name(&self) -> &'static str {
        "fake"
    }

    async fn start_node(&self, node_id: &str, _memory: u64) -> Result<StartedNode, ProviderError> {
        tokio::time::sleep(self.start_delay).await;
        if let Some(message) = &self.refuse_starts {
            return Err(ProviderError::Start {
                node_id: node_id.to_string(),
                kind: crate::service::StartFailure::NoCapacity,
                message: message.clone(),
            });
        }
        self.started.lock().unwrap().push(node_id.to_string());
        if self.serve_nodes {
            let node = FakeNode::serve(node_id, &format!("live-{node_id}"), None).await;
            let endpoint = node.endpoint.clone();
            self.serving
                .lock()
                .unwrap()
                .insert(node_id.to_string(), node);
            return Ok(StartedNode::at(endpoint));
        }
        Ok(StartedNode::at(NodeEndpoint {
            address: "127.0.0.1".into(),
            port: self.port,
        }))
    }

    async fn discover(&self) -> Vec<FoundNode> {
        self.found.lock().unwrap().clone()
    }

    async fn adopt(
        &self,
        node_id: &str,
        _endpoint: &NodeEndpoint,
        _handle: &NodeHandle,
    ) -> Result<(), String> {
        if !self.alive.lock().unwrap().contains(node_id) {
            return Err("its process is gone".to_string());
        }
        self.adopted.lock().unwrap().push(node_id.to_string());
        Ok(())
    }

    async fn adoption_done(&self, adopted: &[String]) {
        let starts = self.started.lock().unwrap().len();
        self.adoption_done
            .lock()
            .unwrap()
            .push((adopted.to_vec(), starts));
    }

    async fn stop_node(&self, node_id: &str) {
        self.end(node_id);
        self.stopped.lock().unwrap().push(node_id.to_string());
    }

    async fn kill_node(&self, node_id: &str) {
        self.end(node_id);
        self.killed.lock().unwrap().push(node_id.to_string());
    }

    async fn gone_nodes(&self) -> Vec<GoneNode> {
        std::mem::take(&mut *self.gone.lock().unwrap())
            .into_iter()
            .map(|node_id| GoneNode {
                node_id,
                detail: "its process exited".into(),
            })
            .collect()
    }

    async fn shutdown(&self) {}

    async fn detach(&self) {
        self.detached.store(true, Ordering::Release);
    }
}
