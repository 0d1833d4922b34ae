//! `faas.decisions.v1.Decisions` at the front door: the scheduler's recent decisions with
//! the policy's reasons, passed through (scope admin, like the rest of the platform's
//! inside view), so `faas events` needs only the API server's address and key. The same
//! client feeds the dashboard ([`crate::api::gateway::ui`]).
//!
//! Every call goes to the scheduler with the cluster token; a scheduler that cannot be
//! reached is `UNAVAILABLE` saying so, one too old to keep decisions `UNIMPLEMENTED`. A
//! followed stream ends when the scheduler ends it or this server shuts down.

use std::pin::Pin;
use std::time::Duration;

use faas_common::shutdown::Shutdown;
use faas_common::token::{AuthChannel, ClusterAuth};
use faas_proto::decisions::decisions_client::DecisionsClient;
use faas_proto::decisions::decisions_server::Decisions;
use faas_proto::decisions::{DecisionEntry, RecentReply, RecentRequest};
use futures::{Stream, StreamExt};
use tonic::transport::Channel;
use tonic::{Code, Request, Response, Status};

/// How long the scheduler has to answer `Recent` (or to start a `Follow`).
pub const SCHEDULER_TIMEOUT: Duration = Duration::from_secs(2);

/// A client of the scheduler's decision log, with this server's shutdown.
#[derive(Clone, Debug)]
pub struct DecisionsProxy {
    client: DecisionsClient<AuthChannel>,
    shutdown: Shutdown,
}

/// What a failed call to the scheduler becomes.
pub fn scheduler_status(status: &Status) -> Status {
    match status.code() {
        Code::Unimplemented => Status::unimplemented(
            "the scheduler keeps no decisions (faas.decisions.v1.Decisions): it is older than \
             this API server; upgrade it",
        ),
        Code::FailedPrecondition => Status::failed_precondition(status.message().to_string()),
        _ => Status::unavailable(format!(
            "the scheduler cannot be reached for its decisions ({}): try again once the \
             scheduler (the API server's --scheduler) is up",
            faas_common::text::clip(status.message())
        )),
    }
}

impl DecisionsProxy {
    /// Asks the scheduler on `channel` (with the cluster token of `auth`); followed streams
    /// end when `shutdown` fires.
    pub fn new(channel: Channel, auth: &ClusterAuth, shutdown: Shutdown) -> DecisionsProxy {
        DecisionsProxy {
            client: DecisionsClient::new(auth.channel(channel)),
            shutdown,
        }
    }

    /// The kept decisions numbered above `after` (at most `limit`; 0: all).
    pub async fn recent(&self, after: u64, limit: u32) -> Result<RecentReply, Status> {
        let mut request = Request::new(RecentRequest {
            after_seq: after,
            limit,
        });
        request.set_timeout(SCHEDULER_TIMEOUT);
        let mut client = self.client.clone();
        match client.recent(request).await {
            Ok(reply) => Ok(reply.into_inner()),
            Err(status) => Err(scheduler_status(&status)),
        }
    }

    /// The kept decisions numbered above `after`, then every new one, until the scheduler or
    /// this server stops.
    pub async fn follow(&self, after: u64, limit: u32) -> Result<EntryStream, Status> {
        let mut client = self.client.clone();
        let request = Request::new(RecentRequest {
            after_seq: after,
            limit,
        });
        let started = tokio::time::timeout(SCHEDULER_TIMEOUT, client.follow(request)).await;
        let stream = match started {
            Ok(Ok(reply)) => reply.into_inner(),
            Ok(Err(status)) => return Err(scheduler_status(&status)),
            Err(_) => {
                return Err(Status::unavailable(format!(
                    "the scheduler did not start the decision stream within {} ms",
                    SCHEDULER_TIMEOUT.as_millis()
                )));
            }
        };
        let stream = stream
            .map(|item| item.map_err(|status| scheduler_status(&status)))
            .take_until(self.shutdown.clone().wait());
        Ok(Box::pin(stream))
    }
}

/// A followed stream of decisions.
pub type EntryStream = Pin<Box<dyn Stream<Item = Result<DecisionEntry, Status>> + Send>>;

#[tonic::async_trait]
impl Decisions for DecisionsProxy {
    async fn recent(
        &self,
        request: Request<RecentRequest>,
    ) -> Result<Response<RecentReply>, Status> {
        let r = request.into_inner();
        Ok(Response::new(
            DecisionsProxy::recent(self, r.after_seq, r.limit).await?,
        ))
    }

    type FollowStream = EntryStream;

    async fn follow(
        &self,
        request: Request<RecentRequest>,
    ) -> Result<Response<Self::FollowStream>, Status> {
        let r = request.into_inner();
        Ok(Response::new(
            DecisionsProxy::follow(self, r.after_seq, r.limit).await?,
        ))
    }
}
