//! The node health watch: one background task that notices dead and stuck nodes.
//!
//! Two kinds of evidence reach the pool through the manager:
//!
//! - **exits**, at once: the provider's [`NodeProvider::node_may_have_exited`] returns (the
//!   local provider: on SIGCHLD) and [`NodeProvider::gone_nodes`] says which nodes stopped
//!   running (a local child exited, and is reaped right there; a docker container is gone or
//!   not running). Such a node fails at once. The same check also runs on every probe round,
//!   so nothing depends on a signal arriving.
//! - **silence**, every `--node-probe-interval-ms`: each ready and reserved node's
//!   `grpc.health.v1` is asked, with `--node-probe-timeout-ms` to answer, over a channel kept
//!   per node (a stopped process accepts TCP connections but answers nothing, which the
//!   timeout catches). A node that answers no probe for `--node-failed-after-ms` fails
//!   (the rule is the pool's, in virtual time: [`crate::core::Pool::probe_missed`]).
//!
//! What a failure does (kill, count, log, refill) is the manager's and the pool's business;
//! this module only decides when to look and how.

use std::sync::Arc;
use std::time::Duration;

use faas_common::serve::ChannelCache;
use faas_common::shutdown::Shutdown;
use tokio::time::MissedTickBehavior;

use crate::api::node_client;
use crate::model::NodeEndpoint;
use crate::service::{Manager, NodeProvider};

/// How the watch probes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WatchOptions {
    /// Time between probe rounds; `None`: no probes (exits are still noticed).
    pub probe_interval: Option<Duration>,
    /// How long one probe may take.
    pub probe_timeout: Duration,
}

/// Probes nodes over one channel per node endpoint, made on first use and dropped with the
/// node (or when the node moved to another endpoint).
#[derive(Debug)]
struct Prober {
    timeout: Duration,
    channels: ChannelCache,
}

impl Prober {
    fn new(timeout: Duration) -> Prober {
        Prober {
            timeout,
            channels: ChannelCache::new(),
        }
    }

    /// Probes every target at once; returns each node's result.
    async fn probe_all(
        &mut self,
        targets: Vec<(String, NodeEndpoint)>,
    ) -> Vec<(String, Result<(), String>)> {
        let endpoints: Vec<String> = targets.iter().map(|(_, e)| e.to_string()).collect();
        self.channels
            .retain(|endpoint| endpoints.iter().any(|e| e == endpoint));
        let mut calls = Vec::with_capacity(targets.len());
        for ((node_id, _), endpoint) in targets.into_iter().zip(endpoints) {
            let channel = self.channels.get(&endpoint).map_err(|e| e.to_string());
            let timeout = self.timeout;
            calls.push(async move {
                let result = match channel {
                    Ok(channel) => node_client::check_health(channel, timeout).await,
                    Err(e) => Err(e),
                };
                (node_id, result)
            });
        }
        futures::future::join_all(calls).await
    }
}

/// Watches the manager's nodes until `shutdown` fires (see the module docs).
pub async fn watch<P: NodeProvider>(
    manager: Arc<Manager<P>>,
    options: WatchOptions,
    shutdown: Shutdown,
) {
    let stop = shutdown.wait();
    tokio::pin!(stop);
    let mut prober = Prober::new(options.probe_timeout);
    let mut rounds = options.probe_interval.map(|every| {
        let mut rounds = tokio::time::interval(every);
        rounds.set_missed_tick_behavior(MissedTickBehavior::Delay);
        rounds
    });
    loop {
        let next_round = async {
            match rounds.as_mut() {
                Some(rounds) => {
                    rounds.tick().await;
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = &mut stop => return,
            _ = manager.provider().node_may_have_exited() => manager.check_gone().await,
            _ = next_round => {
                manager.check_gone().await;
                let targets = manager.probe_targets();
                let results = tokio::select! {
                    _ = &mut stop => return,
                    results = prober.probe_all(targets) => results,
                };
                manager.probe_results(results);
            }
        }
    }
}
