//! `faas.admin.v1.Admin/FunctionLogs` (`faas logs NAME`): the newest output lines of a
//! function's containers, gathered from every node the scheduler holds.
//!
//! The API server keeps no lines itself. A call goes:
//!
//! 1. the request is checked ([`LogsQuery::from_request`]): `NAME` (the function's containers
//!    and those of its published versions) or `NAME:N` (that version's only) of a deployed
//!    function, `since_ms` of 0 or more, `limit` of 0 (the cap) or more — a limit above
//!    [`MAX_LINES`] is clamped to it, not refused: "at most this many" still holds, and a
//!    client that wants older lines narrows with `since_ms`;
//! 2. the scheduler is asked which nodes it holds (`SchedulerAdmin/ListNodes`, within
//!    [`SCHEDULER_TIMEOUT`]); a scheduler that does not answer fails the call `UNAVAILABLE`
//!    (worth a retry), one too old to list its nodes `UNIMPLEMENTED`;
//! 3. every node is asked at once (`NodeAdmin/FunctionLogs`, each within [`NODE_TIMEOUT`],
//!    each for at most `limit` lines per container) by [`ask_every_node`], over a channel of
//!    its own made lazily (the invoke path's channel cache is private to
//!    [`crate::api::node`], and logs are read rarely). Steps 2 and 3 are shared with
//!    `Admin/ListNodes` ([`crate::api::cluster`]): [`scheduler_nodes`], [`ask_every_node`];
//! 4. [`merge`] puts the lines oldest first (by `at_ms`, then node, container and `seq`) and
//!    keeps the newest `limit`. A node that failed, and a container whose lines it could not
//!    read, becomes one `unreadable` entry ("node n3 (127.0.0.1:4567): deadline exceeded"):
//!    the lines of the others are still answered.

use std::time::Duration;

use faas_common::text::clip;
use faas_common::token::{AuthChannel, ClusterAuth};
use faas_proto::admin::{FunctionLogLine, FunctionLogsReply, FunctionLogsRequest};
use faas_proto::node_admin::{self, node_admin_client::NodeAdminClient};
use faas_proto::scheduler_admin::scheduler_admin_client::SchedulerAdminClient;
use faas_proto::scheduler_admin::{ListNodesRequest, NodeEntry};
use tonic::{Code, Request, Status};

use crate::api::convert::{never_connected, registry_status, root_cause, timed_out};
use crate::model::routing::{QUALIFIER_SEPARATOR, Qualifier, TargetRef, version_name};
use crate::service::Registry;

/// The most lines one answer holds (also what `limit` 0 asks for).
pub const MAX_LINES: u32 = 10_000;
/// How long the scheduler is given to list its nodes.
pub const SCHEDULER_TIMEOUT: Duration = Duration::from_secs(3);
/// How long each node is given to answer with its lines.
pub const NODE_TIMEOUT: Duration = Duration::from_secs(2);

/// A checked `FunctionLogsRequest`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogsQuery {
    /// The function the nodes are asked for (its versions' containers come with it).
    pub function: String,
    /// `NAME:N`: only this version's containers.
    pub version: Option<String>,
    pub since_ms: i64,
    /// 1 to [`MAX_LINES`].
    pub limit: u32,
}

impl LogsQuery {
    /// Checks `request` against the functions `registry` holds.
    pub fn from_request(
        registry: &Registry,
        request: FunctionLogsRequest,
    ) -> Result<LogsQuery, Status> {
        if request.name.is_empty() {
            return Err(Status::invalid_argument(
                "name is empty: give a deployed function's NAME (or NAME:N for one version)",
            ));
        }
        let target = TargetRef::parse(&request.name);
        let version = match target.qualifier {
            Qualifier::Latest => None,
            Qualifier::Version(n) => Some(version_name(&target.function, n)),
            Qualifier::Alias(alias) => {
                return Err(Status::invalid_argument(format!(
                    "logs are read by NAME or NAME:N, not by an alias ({}): give {} for all \
                     its versions' lines",
                    clip(&alias),
                    clip(&target.function)
                )));
            }
        };
        registry
            .get(&request.name)
            .map_err(|e| registry_status(&e))?;
        if request.since_ms < 0 {
            return Err(Status::invalid_argument(format!(
                "since_ms must be 0 (any age) or a time in ms since the Unix epoch, got {}",
                request.since_ms
            )));
        }
        Ok(LogsQuery {
            function: target.function,
            version,
            since_ms: request.since_ms,
            limit: match request.limit {
                0 => MAX_LINES,
                n => n.min(MAX_LINES),
            },
        })
    }

    /// Whether a container serving `function_name` (`NAME` or `NAME:N`) is asked for.
    fn wants(&self, function_name: &str) -> bool {
        match &self.version {
            Some(version) => function_name == version,
            None => of_function(&self.function, function_name),
        }
    }
}

/// Whether a container serving `function_name` (`NAME` or `NAME:N`) serves `function` or
/// one of its versions.
pub fn of_function(function: &str, function_name: &str) -> bool {
    function_name
        .strip_prefix(function)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with(QUALIFIER_SEPARATOR))
}

/// Answers `request`: the lines of every node `scheduler` lists (see the module's steps).
pub async fn function_logs(
    registry: &Registry,
    scheduler: Option<SchedulerAdminClient<AuthChannel>>,
    auth: &ClusterAuth,
    request: FunctionLogsRequest,
) -> Result<FunctionLogsReply, Status> {
    let query = LogsQuery::from_request(registry, request)?;
    let nodes = scheduler_nodes(scheduler, "logs are read from them").await?;
    let answers = ask_every_node(nodes, auth, NODE_TIMEOUT, |channel, timeout| {
        let mut client = node_admin(channel);
        let mut request = Request::new(node_admin::FunctionLogsRequest {
            function_name: query.function.clone(),
            since_ms: query.since_ms,
            limit: query.limit,
        });
        request.set_timeout(timeout);
        async move { Ok(client.function_logs(request).await?.into_inner()) }
    })
    .await;
    Ok(merge(&query, answers))
}

/// The scheduler's nodes (`SchedulerAdmin/ListNodes`, within [`SCHEDULER_TIMEOUT`]);
/// `UNAVAILABLE` when it cannot be asked, its message saying `why_needed` ("logs are read
/// from them"), `UNIMPLEMENTED` when the scheduler is too old to list them.
pub async fn scheduler_nodes(
    scheduler: Option<SchedulerAdminClient<AuthChannel>>,
    why_needed: &str,
) -> Result<Vec<NodeEntry>, Status> {
    let Some(mut client) = scheduler else {
        return Err(Status::unavailable(
            "this API server has no scheduler to ask which nodes it holds",
        ));
    };
    let mut request = Request::new(ListNodesRequest {});
    request.set_timeout(SCHEDULER_TIMEOUT);
    let failed = |why: String| {
        Status::unavailable(format!(
            "the scheduler cannot be reached to list its nodes ({why}); {why_needed}: try \
             again once the scheduler (the API server's --scheduler) is up"
        ))
    };
    match tokio::time::timeout(SCHEDULER_TIMEOUT, client.list_nodes(request)).await {
        Ok(Ok(reply)) => Ok(reply.into_inner().nodes),
        Ok(Err(status)) if status.code() == Code::Unimplemented => Err(Status::unimplemented(
            "the scheduler does not list its nodes (SchedulerAdmin/ListNodes): it is older than \
             this API server; upgrade it",
        )),
        Ok(Err(status)) => Err(failed(call_error(&status, SCHEDULER_TIMEOUT))),
        Err(_) => Err(failed(deadline(SCHEDULER_TIMEOUT))),
    }
}

/// What a node answered, or why it did not (in a few words: [`call_error`]).
pub type NodeAnswer<T = node_admin::FunctionLogsReply> = (NodeEntry, Result<T, String>);

/// Asks every node of `nodes` at once and waits for all: `ask` is given a channel to the
/// node (the cluster token of `auth` on its calls) and the time the call has (`limit`, for
/// `Request::set_timeout`); a node that has not answered within `limit` is answered for
/// with "deadline exceeded", one that failed with [`call_error`]'s few words. Each node gets
/// a channel of its own, made lazily (`faas_common::serve::connect_lazy`): reading every
/// node is rare, and the invoke path's channel cache is private to [`crate::api::node`].
/// Clients made in `ask` should lift tonic's 4 MiB reply limit ([`node_admin()`]): a node's
/// answer is as large as its containers (and their rings).
pub async fn ask_every_node<T, F, Fut>(
    nodes: Vec<NodeEntry>,
    auth: &ClusterAuth,
    limit: Duration,
    ask: F,
) -> Vec<NodeAnswer<T>>
where
    F: Fn(AuthChannel, Duration) -> Fut,
    Fut: std::future::Future<Output = Result<T, Status>>,
{
    let one = |node: NodeEntry| {
        let call = faas_common::serve::connect_lazy(&node.address)
            .map(|channel| ask(auth.channel(channel), limit));
        async move {
            let answer = match call {
                Err(e) => Err(e.to_string()),
                Ok(call) => match tokio::time::timeout(limit, call).await {
                    Ok(Ok(reply)) => Ok(reply),
                    Ok(Err(status)) => Err(call_error(&status, limit)),
                    Err(_) => Err(deadline(limit)),
                },
            };
            (node, answer)
        }
    };
    futures::future::join_all(nodes.into_iter().map(one)).await
}

/// A `NodeAdmin` client over `channel` that takes replies of any size.
pub fn node_admin(channel: AuthChannel) -> NodeAdminClient<AuthChannel> {
    NodeAdminClient::new(channel).max_decoding_message_size(usize::MAX)
}

pub fn deadline(limit: Duration) -> String {
    format!(
        "deadline exceeded (no answer within {} ms)",
        limit.as_millis()
    )
}

/// A failed call in a few words: no answer within `limit`, no connection (and why), or the
/// peer's code and message.
pub fn call_error(status: &Status, limit: Duration) -> String {
    if timed_out(status) {
        deadline(limit)
    } else if never_connected(status) {
        match root_cause(status) {
            Some(cause) => format!("cannot connect: {cause}"),
            None => "cannot connect".to_string(),
        }
    } else {
        format!("{:?}: {}", status.code(), clip(status.message()))
    }
}

/// Every node's lines oldest first (by `at_ms`, then node, container and `seq`), the newest
/// `query.limit` of them, with what could not be read and the lines the rings dropped.
pub fn merge(query: &LogsQuery, answers: Vec<NodeAnswer>) -> FunctionLogsReply {
    let mut reply = FunctionLogsReply::default();
    for (node, answer) in answers {
        let who = format!("node {} ({})", node.node_id, node.address);
        let answer = match answer {
            Ok(answer) => answer,
            Err(why) => {
                reply.unreadable.push(format!("{who}: {why}"));
                continue;
            }
        };
        for container in answer.containers {
            if !query.wants(&container.function_name) {
                continue;
            }
            if !container.error.is_empty() {
                reply.unreadable.push(format!(
                    "{who}: container {} ({}): {}",
                    container.container_id,
                    container.function_name,
                    clip(&container.error)
                ));
            }
            reply.dropped += container.dropped;
            reply.lines.extend(
                container
                    .lines
                    .into_iter()
                    .filter(|l| l.at_ms >= query.since_ms)
                    .map(|l| FunctionLogLine {
                        node_id: node.node_id.clone(),
                        container_id: container.container_id.clone(),
                        function_name: container.function_name.clone(),
                        seq: l.seq,
                        at_ms: l.at_ms,
                        stream: l.stream,
                        request_id: l.request_id,
                        text: l.text,
                    }),
            );
        }
    }
    reply.lines.sort_by(|a, b| {
        (a.at_ms, &a.node_id, &a.container_id, a.seq).cmp(&(
            b.at_ms,
            &b.node_id,
            &b.container_id,
            b.seq,
        ))
    });
    let extra = reply.lines.len().saturating_sub(query.limit as usize);
    reply.lines.drain(..extra);
    reply
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_takes_name_or_version_and_clamps_its_limit() {
        let hello = crate::model::FunctionSpec {
            name: "hello".into(),
            handler: "hello".into(),
            memory_bytes: 128 << 20,
            timeout_ms: 60_000,
            ..Default::default()
        };
        let registry = Registry::with_functions([hello], 1).unwrap();
        let ok = |name: &str, since_ms, limit| {
            LogsQuery::from_request(
                &registry,
                FunctionLogsRequest {
                    name: name.into(),
                    since_ms,
                    limit,
                },
            )
        };
        let q = ok("hello", 5, 0).unwrap();
        assert_eq!(
            (q.function.as_str(), q.version, q.limit),
            ("hello", None, MAX_LINES)
        );
        assert_eq!(ok("hello", 0, 1_000_000).unwrap().limit, MAX_LINES);
        assert_eq!(ok("hello", 0, 7).unwrap().limit, 7);
        let refused = [
            ("", 0, Code::InvalidArgument, "name is empty"),
            ("hello", -1, Code::InvalidArgument, "got -1"),
            ("hello:live", 0, Code::InvalidArgument, "not by an alias"),
            ("nope", 0, Code::NotFound, "function nope not found"),
            ("hello:9", 0, Code::NotFound, "not found"),
        ];
        for (name, since_ms, code, says) in refused {
            let s = ok(name, since_ms, 0).unwrap_err();
            assert_eq!(s.code(), code, "{name}: {s:?}");
            assert!(s.message().contains(says), "{name}: {}", s.message());
        }
    }
}
