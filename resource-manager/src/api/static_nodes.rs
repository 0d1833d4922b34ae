//! The `static` node provider: a fixed list of node-service addresses run by someone else.
//!
//! "Starting" a node takes a free address and checks that its node service answers;
//! "stopping" (or killing) only gives the address back (the pool's rules decide when it is
//! reused). This provider cannot see the nodes' processes, so a static node fails only by
//! not answering its health probes. After a restart it takes a node back by its address
//! (whether it is still the same node is for its node service to say); detaching, like
//! stopping, leaves the node services running.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use crate::model::{NodeEndpoint, NodeHandle, StartedNode};
use crate::service::{NodeProvider, ProviderError, StartFailure};

#[derive(Debug)]
struct Slot {
    endpoint: NodeEndpoint,
    /// The node id currently using this address.
    holder: Option<String>,
}

/// Hands out given node-service addresses.
#[derive(Debug)]
pub struct StaticProvider {
    slots: Mutex<Vec<Slot>>,
    probe_timeout: Duration,
}

impl StaticProvider {
    /// A provider over `endpoints`; a start fails if the address does not answer within
    /// `probe_timeout`.
    pub fn new(endpoints: Vec<NodeEndpoint>, probe_timeout: Duration) -> StaticProvider {
        StaticProvider {
            slots: Mutex::new(
                endpoints
                    .into_iter()
                    .map(|endpoint| Slot {
                        endpoint,
                        holder: None,
                    })
                    .collect(),
            ),
            probe_timeout,
        }
    }

    fn free(&self, node_id: &str) {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        for slot in slots.iter_mut() {
            if slot.holder.as_deref() == Some(node_id) {
                slot.holder = None;
            }
        }
    }
}

impl NodeProvider for StaticProvider {
    fn name(&self) -> &'static str {
        "static"
    }

    async fn start_node(
        &self,
        node_id: &str,
        _memory_bytes: u64,
    ) -> Result<StartedNode, ProviderError> {
        let endpoint = {
            let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
            let total = slots.len();
            let slot = slots
                .iter_mut()
                .find(|s| s.holder.is_none())
                .ok_or(ProviderError::NoCapacity(total))?;
            slot.holder = Some(node_id.to_string());
            slot.endpoint.clone()
        };
        let addr = endpoint.to_string();
        let probe = tokio::time::timeout(self.probe_timeout, faas_common::serve::connect(&addr));
        let failure = match probe.await {
            Ok(Ok(_channel)) => return Ok(StartedNode::at(endpoint)),
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("{addr} did not answer within {:?}", self.probe_timeout),
        };
        self.free(node_id);
        Err(ProviderError::Start {
            node_id: node_id.to_string(),
            kind: StartFailure::Unreachable,
            message: failure,
        })
    }

    async fn adopt(
        &self,
        node_id: &str,
        endpoint: &NodeEndpoint,
        _handle: &NodeHandle,
    ) -> Result<(), String> {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        let slot = slots
            .iter_mut()
            .find(|s| s.endpoint == *endpoint)
            .ok_or_else(|| format!("{endpoint} is no longer one of --static-nodes"))?;
        match &slot.holder {
            Some(holder) if holder != node_id => Err(format!("{endpoint} is {holder}'s")),
            _ => {
                slot.holder = Some(node_id.to_string());
                Ok(())
            }
        }
    }

    async fn stop_node(&self, node_id: &str) {
        self.free(node_id);
    }

    async fn shutdown(&self) {}

    async fn detach(&self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(port: u16) -> NodeEndpoint {
        NodeEndpoint {
            address: "127.0.0.1".into(),
            port,
        }
    }

    #[tokio::test]
    async fn hands_out_answering_addresses_once_each() {
        // A TCP listener that accepts is enough for the HTTP/2 connect to start; serve a real
        // tonic health server so the probe completes its handshake.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (_reporter, health) = tonic_health::server::health_reporter();
        let (trigger, shutdown) = faas_common::shutdown::channel();
        let server = tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(health)
                .serve_with_incoming_shutdown(
                    faas_common::serve::incoming(listener),
                    shutdown.wait(),
                ),
        );

        let provider = StaticProvider::new(vec![ep(port)], Duration::from_secs(5));
        assert_eq!(
            provider.start_node("n-1", 1).await.unwrap().endpoint,
            ep(port)
        );
        assert_eq!(
            provider.start_node("n-2", 1).await,
            Err(ProviderError::NoCapacity(1))
        );
        provider.stop_node("n-1").await;
        assert_eq!(
            provider.start_node("n-3", 1).await.unwrap().endpoint,
            ep(port)
        );

        trigger.trigger();
        server.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn a_node_is_taken_back_by_its_address_once() {
        let provider = StaticProvider::new(vec![ep(1), ep(2)], Duration::from_secs(5));
        let none = NodeHandle::default();
        provider.adopt("n-1", &ep(2), &none).await.unwrap();
        provider.adopt("n-1", &ep(2), &none).await.unwrap();
        assert_eq!(
            provider.adopt("n-2", &ep(2), &none).await,
            Err("127.0.0.1:2 is n-1's".to_string())
        );
        assert!(provider.adopt("n-3", &ep(3), &none).await.is_err());
        // The adopted address is taken; the other one stays free for starts.
        let slots = provider.slots.lock().unwrap();
        assert_eq!(slots[1].holder.as_deref(), Some("n-1"));
        assert_eq!(slots[0].holder, None);
    }

    #[tokio::test]
    async fn an_address_that_refuses_is_not_handed_out() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let provider = StaticProvider::new(vec![ep(port)], Duration::from_secs(5));
        let err = provider.start_node("n-1", 1).await.unwrap_err();
        assert_eq!(
            err.start_failure(),
            Some(StartFailure::Unreachable),
            "{err}"
        );
        // The address went back to the free list.
        assert!(matches!(
            provider.start_node("n-2", 1).await,
            Err(ProviderError::Start { .. })
        ));
    }
}
