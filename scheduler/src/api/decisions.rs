//! The platform's `faas.decisions.v1.Decisions` service: the scheduler's recent decisions
//! with the policy's reasons ([`crate::service::decisions`]), once (`Recent`) or followed
//! (`Follow`: the kept ones, then each new one as it is made). A follower that falls more
//! than the broadcast buffer behind skips what it missed; every stream ends when the
//! scheduler shuts down, so a follower never holds up its stop.

use std::pin::Pin;

use faas_common::shutdown::Shutdown;
use faas_proto::decisions::decisions_server::Decisions;
use faas_proto::decisions::{DecisionEntry, RecentReply, RecentRequest};
use futures::{Stream, StreamExt};
use tokio::sync::broadcast::error::RecvError;
use tonic::{Request, Response, Status};

use crate::service::decisions::DecisionRecord;
use crate::service::{Clock, NodePort, ResourcePort, Scheduler};

/// The gRPC face of the decision log.
pub struct DecisionsApi<R, N, C> {
    service: Scheduler<R, N, C>,
    shutdown: Shutdown,
}

impl<R, N, C> DecisionsApi<R, N, C> {
    /// Serves `service`'s log; follow streams end when `shutdown` fires.
    pub fn new(service: Scheduler<R, N, C>, shutdown: Shutdown) -> Self {
        DecisionsApi { service, shutdown }
    }
}

/// The wire form of a record.
pub fn entry(r: DecisionRecord) -> DecisionEntry {
    DecisionEntry {
        seq: r.seq,
        at_unix_ms: i64::try_from(r.at_unix_ms).unwrap_or(i64::MAX),
        kind: r.kind.to_string(),
        function: r.function,
        node: r.node,
        container: r.container,
        request: r.request,
        reason: r.reason,
    }
}

fn limit(l: u32) -> usize {
    if l == 0 { usize::MAX } else { l as usize }
}

type EntryStream = Pin<Box<dyn Stream<Item = Result<DecisionEntry, Status>> + Send>>;

#[tonic::async_trait]
impl<R: ResourcePort, N: NodePort, C: Clock> Decisions for DecisionsApi<R, N, C> {
    async fn recent(
        &self,
        request: Request<RecentRequest>,
    ) -> Result<Response<RecentReply>, Status> {
        let req = request.into_inner();
        let log = self.service.decisions();
        let decisions = log
            .recent(req.after_seq, limit(req.limit))
            .into_iter()
            .map(entry)
            .collect();
        Ok(Response::new(RecentReply {
            decisions,
            kept: u32::try_from(log.kept()).unwrap_or(u32::MAX),
        }))
    }

    type FollowStream = EntryStream;

    async fn follow(
        &self,
        request: Request<RecentRequest>,
    ) -> Result<Response<Self::FollowStream>, Status> {
        let req = request.into_inner();
        let log = self.service.decisions();
        if !log.on() {
            return Err(Status::failed_precondition(
                "this scheduler keeps no decisions (--decisions-kept 0): start it with \
                 --decisions-kept N (N > 0) to follow them",
            ));
        }
        let (past, rx) = log.follow(req.after_seq, limit(req.limit));
        let later = futures::stream::unfold(rx, |mut rx| async move {
            loop {
                match rx.recv().await {
                    Ok(r) => return Some((Ok(entry(r)), rx)),
                    Err(RecvError::Lagged(_)) => continue,
                    Err(RecvError::Closed) => return None,
                }
            }
        });
        let stream = futures::stream::iter(past.into_iter().map(|r| Ok(entry(r))))
            .chain(later)
            .take_until(self.shutdown.clone().wait());
        Ok(Response::new(Box::pin(stream)))
    }
}
