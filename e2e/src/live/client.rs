//! The one client of the API server, for the `faas` command and the live driver: invoke
//! (with the platform's metadata read back, and the service layer's routing metadata sent
//! and read back), list and deploy functions, the admin and asynchronous-call clients; and
//! the live driver's other calls (node usage from the resource manager, container ids from
//! a node service's `GetStats`).
//!
//! It lives here because the command (`faas_cli::client`, which re-exports it and adds how
//! to reach a server: TLS, where a key comes from) depends on this crate, not the other way
//! round. Every call carries the caller's key, when it has one, as the gRPC metadata
//! `authorization: Bearer KEY` ([`BearerKey`], an interceptor on every client).

use std::time::Duration;

use faas_common::token::AuthChannel;
use faas_proto::admin::admin_client::AdminClient;
use faas_proto::admin::{DeployFunctionRequest, FunctionSpec};
use faas_proto::apiserverproto::api_server_client::ApiServerClient;
use faas_proto::apiserverproto::{InvokeFunctionRequest, ListFunctionsRequest};
use faas_proto::invoke::invocations_client::InvocationsClient;
use faas_proto::meta;
use faas_proto::nodeservoceproto::GetStatsRequest;
use faas_proto::nodeservoceproto::node_service_client::NodeServiceClient;
use faas_proto::resourcemanagerproto::resource_manager_client::ResourceManagerClient;
use faas_proto::resourcemanagerproto::{GetNodesUsageRequest, NodeDesc};
use tonic::metadata::{AsciiMetadataValue, MetadataMap};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::workload::FunctionProfile;

/// The largest reply accepted from the API server. Not tonic's 4 MiB: a function's body
/// can be larger, and a function list is as long as the registry (thousands of functions, a
/// long description each). The server is the one the user pointed the client at.
pub const MAX_REPLY_BYTES: usize = usize::MAX;

/// An API key that cannot travel as gRPC metadata.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the API key must be printable ASCII without spaces")]
pub struct BadKey;

/// Adds `authorization: Bearer KEY` to every call, when there is a key.
#[derive(Clone, Default)]
pub struct BearerKey(Option<AsciiMetadataValue>);

impl BearerKey {
    /// The interceptor of `key`; refused unless it is printable ASCII (as every key is).
    pub fn new(key: Option<&str>) -> Result<BearerKey, BadKey> {
        let Some(key) = key else {
            return Ok(BearerKey(None));
        };
        let key = key.trim();
        if !key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(BadKey);
        }
        let mut value =
            AsciiMetadataValue::try_from(format!("Bearer {key}")).map_err(|_| BadKey)?;
        value.set_sensitive(true);
        Ok(BearerKey(Some(value)))
    }
}

impl std::fmt::Debug for BearerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.write_str(if self.0.is_some() {
            "BearerKey(..)"
        } else {
            "BearerKey(None)"
        })
    }
}

impl Interceptor for BearerKey {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert(meta::AUTHORIZATION, value.clone());
        }
        Ok(request)
    }
}

/// A channel whose calls carry the caller's key.
pub type KeyedChannel = InterceptedService<Channel, BearerKey>;
/// The admin API client, with the caller's key.
pub type AdminApi = AdminClient<KeyedChannel>;
/// The asynchronous invocations client (`faas.invoke.v1.Invocations`), with the caller's key.
pub type InvocationsApi = InvocationsClient<KeyedChannel>;
/// Topics' emit (`faas.events.v1.Events`), with the caller's key.
pub type EventsApi = faas_proto::events::events_client::EventsClient<KeyedChannel>;
/// Subscriptions and chains (`faas.events.v1.EventAdmin`), with the caller's key.
pub type EventAdminApi = faas_proto::events::event_admin_client::EventAdminClient<KeyedChannel>;
/// The scheduler's decisions through the API server (`faas.decisions.v1.Decisions`), with
/// the caller's key.
pub type DecisionsApi = faas_proto::decisions::decisions_client::DecisionsClient<KeyedChannel>;

/// A connection to the API server (the contest API, the admin API, asynchronous calls).
#[derive(Clone)]
pub struct Api {
    /// The channel, kept to put another key on it ([`Api::with_key`]).
    channel: Channel,
    invoke: ApiServerClient<KeyedChannel>,
    admin: AdminApi,
    invocations: InvocationsApi,
    decisions: DecisionsApi,
    events: EventsApi,
    event_admin: EventAdminApi,
}

/// The answer to one invocation, with what the platform reports beside the body.
#[derive(Clone, Debug, Default)]
pub struct InvokeOutcome {
    pub request_id: String,
    pub body: Vec<u8>,
    /// The API server's whole server-side time, ms.
    pub server_latency_ms: i64,
    /// Time spent in `AcquireContainer`, ms (the contest's scheduling latency).
    pub acquire_ms: Option<f64>,
    /// The function's own duration, ns.
    pub duration_ns: Option<i64>,
    /// Whether a container was created for this request.
    pub cold: Option<bool>,
    pub container_id: Option<String>,
    pub node_id: Option<String>,
    pub max_memory_bytes: Option<i64>,
    /// Where the service layer sent the call (boxed: the outcome travels in enums beside
    /// small variants).
    pub route: Box<RouteReply>,
}

/// How a call asks to be routed (the service layer's request metadata, `faas_proto::meta`):
/// its routing id, its routing parameters and its routing key.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RouteRequest {
    /// `x-faas-route-id`: matched by route rules' `route_id` and `route_id_regex`.
    pub route_id: Option<String>,
    /// `x-faas-route`, once per `key=value`: matched by route rules' `fields`.
    pub params: Vec<(String, String)>,
    /// `x-faas-routing-key`: calls with the same key through a weighted alias go to the same
    /// version.
    pub routing_key: Option<String>,
}

/// A routing value as gRPC metadata: printable ASCII within the server's length limit; an
/// error names the flag it came from.
fn route_value(flag: &str, value: &str) -> Result<AsciiMetadataValue, String> {
    let clipped = faas_common::text::clip(value);
    if let Some(c) = value.chars().find(|c| !(c.is_ascii_graphic() || *c == ' ')) {
        return Err(format!(
            "{flag} {clipped:?}: contains {c:?}; routing values travel as gRPC metadata and must be printable ASCII"
        ));
    }
    if value.len() > meta::MAX_ROUTE_VALUE_BYTES {
        return Err(format!(
            "{flag} {clipped:?}: {} bytes, over the server's limit of {}",
            value.len(),
            meta::MAX_ROUTE_VALUE_BYTES
        ));
    }
    AsciiMetadataValue::try_from(value).map_err(|e| format!("{flag} {clipped:?}: {e}"))
}

impl RouteRequest {
    /// Whether it asks for nothing.
    pub fn is_empty(&self) -> bool {
        self.route_id.is_none() && self.params.is_empty() && self.routing_key.is_none()
    }

    /// The request metadata, checked: every value printable ASCII within the server's limits,
    /// at most as many parameters as it takes, each with a key. An error names the flag.
    pub fn metadata(&self) -> Result<MetadataMap, String> {
        let mut map = MetadataMap::new();
        if let Some(id) = &self.route_id {
            map.insert(meta::ROUTE_ID, route_value("--route-id", id)?);
        }
        if self.params.len() > meta::MAX_ROUTE_PARAMS {
            return Err(format!(
                "--route: at most {} routing parameters, got {}",
                meta::MAX_ROUTE_PARAMS,
                self.params.len()
            ));
        }
        for (key, value) in &self.params {
            if key.is_empty() {
                return Err(format!("--route ={value}: give key=value"));
            }
            map.append(
                meta::ROUTE_PARAM,
                route_value("--route", &format!("{key}={value}"))?,
            );
        }
        if let Some(key) = &self.routing_key {
            map.insert(meta::ROUTING_KEY, route_value("--routing-key", key)?);
        }
        Ok(map)
    }
}

/// Parses a `--route` value, `key=value` (the value may be empty or hold `=`).
pub fn parse_route_param(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
        _ => Err(format!(
            "{:?} is not key=value (e.g. wareHouseId=2001)",
            faas_common::text::clip(text)
        )),
    }
}

/// Where the service layer sent a call, as its reply (or its error) says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RouteReply {
    /// `x-faas-version`: `3`, or `latest` for the function's current definition.
    pub version: Option<String>,
    /// `x-faas-target`: the concrete target that served the call (`hello:3`).
    pub target: Option<String>,
    /// `x-faas-fallback`: the fallback served the call meant for `meant_for`, because of
    /// `reason` (`not_found`, `error`, `timeout`, `breaker_open` or `share`).
    pub fallback: Option<FallbackReply>,
}

/// The fallback served a call meant for another target.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FallbackReply {
    pub meant_for: String,
    pub reason: String,
}

impl RouteReply {
    /// Reads the routing metadata of a reply or an error status.
    pub fn from_metadata(map: &MetadataMap) -> RouteReply {
        RouteReply {
            version: text(map, meta::VERSION).map(str::to_string),
            target: text(map, meta::TARGET).map(str::to_string),
            fallback: text(map, meta::FALLBACK).map(|v| {
                let (meant_for, reason) = v.split_once(';').unwrap_or((v, ""));
                FallbackReply {
                    meant_for: meant_for.trim().to_string(),
                    reason: reason.trim().to_string(),
                }
            }),
        }
    }

    /// The lines `faas invoke -v` prints: `version 3 | target hello:3`, and
    /// `fallback: served instead of hello:4 (error)` when the fallback served the call.
    pub fn lines(&self) -> Vec<String> {
        let mut lines = Vec::new();
        if self.version.is_some() || self.target.is_some() {
            lines.push(format!(
                "version {} | target {}",
                self.version.as_deref().unwrap_or("?"),
                self.target.as_deref().unwrap_or("?")
            ));
        }
        if let Some(fb) = &self.fallback {
            lines.push(format!(
                "fallback: served instead of {} ({})",
                fb.meant_for,
                if fb.reason.is_empty() {
                    "?"
                } else {
                    &fb.reason
                }
            ));
        }
        lines
    }
}

fn text<'a>(map: &'a MetadataMap, key: &str) -> Option<&'a str> {
    map.get(key).and_then(|v| v.to_str().ok())
}

fn number<T: std::str::FromStr>(map: &MetadataMap, key: &str) -> Option<T> {
    text(map, key).and_then(|v| v.parse().ok())
}

/// What the platform said about one successful invocation, beside its body.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Reply {
    /// Time spent in `AcquireContainer`, ms.
    pub acquire_ms: Option<f64>,
    /// The function's own duration, ns.
    pub duration_ns: Option<i64>,
    /// Whether a container was created for this request.
    pub cold: Option<bool>,
    pub container_id: Option<String>,
    pub node_id: Option<String>,
}

impl Reply {
    /// Reads the platform's metadata keys (absent or unreadable keys stay `None`).
    pub fn from_metadata(map: &MetadataMap) -> Reply {
        Reply {
            acquire_ms: number(map, meta::ACQUIRE_MS),
            duration_ns: number(map, meta::DURATION_NS),
            cold: text(map, meta::COLD_START).map(|v| v == "true"),
            container_id: text(map, meta::CONTAINER_ID).map(str::to_string),
            node_id: text(map, meta::NODE_ID).map(str::to_string),
        }
    }
}

impl Api {
    /// Uses an existing channel, without a key.
    pub fn from_channel(channel: Channel) -> Api {
        Api::with_interceptor(channel, BearerKey::default())
    }

    /// Uses an existing channel, without a key (the live driver's name for
    /// [`Api::from_channel`]).
    pub fn new(channel: Channel) -> Api {
        Api::from_channel(channel)
    }

    /// Uses an existing channel; every call carries `key`.
    pub fn keyed(channel: Channel, key: Option<&str>) -> Result<Api, BadKey> {
        Ok(Api::with_interceptor(channel, BearerKey::new(key)?))
    }

    /// The same channel; every call carries `key` instead (for the live driver's options).
    pub fn with_key(self, key: Option<&str>) -> Result<Api, super::LiveError> {
        Api::keyed(self.channel, key).map_err(|_| super::LiveError::InvalidOption {
            name: "api_key",
            reason: "an API key is printable ASCII".into(),
        })
    }

    fn with_interceptor(channel: Channel, key: BearerKey) -> Api {
        Api {
            // Requests stay unlimited here: the server says clearly when an event is too large.
            invoke: ApiServerClient::with_interceptor(channel.clone(), key.clone())
                .max_decoding_message_size(MAX_REPLY_BYTES),
            admin: AdminClient::with_interceptor(channel.clone(), key.clone())
                .max_decoding_message_size(MAX_REPLY_BYTES),
            invocations: InvocationsClient::with_interceptor(channel.clone(), key.clone())
                .max_decoding_message_size(MAX_REPLY_BYTES),
            decisions: faas_proto::decisions::decisions_client::DecisionsClient::with_interceptor(
                channel.clone(),
                key.clone(),
            ),
            events: faas_proto::events::events_client::EventsClient::with_interceptor(
                channel.clone(),
                key.clone(),
            ),
            event_admin:
                faas_proto::events::event_admin_client::EventAdminClient::with_interceptor(
                    channel.clone(),
                    key,
                )
                .max_decoding_message_size(MAX_REPLY_BYTES),
            channel,
        }
    }

    /// Invokes `function` with `event` as `account`.
    pub async fn invoke(
        &self,
        account: &str,
        function: &str,
        event: Vec<u8>,
    ) -> Result<InvokeOutcome, tonic::Status> {
        self.invoke_routed(account, function, event, &RouteRequest::default())
            .await
    }

    /// Invokes `function` (`NAME`, `NAME:N` or `NAME:ALIAS`) with `event` as `account`,
    /// routed as `route` asks. Routing values that cannot be sent are refused here with
    /// `INVALID_ARGUMENT` (check them first with [`RouteRequest::metadata`] for a message
    /// that does not look like the server's).
    pub async fn invoke_routed(
        &self,
        account: &str,
        function: &str,
        event: Vec<u8>,
        route: &RouteRequest,
    ) -> Result<InvokeOutcome, tonic::Status> {
        let metadata = route.metadata().map_err(tonic::Status::invalid_argument)?;
        let mut request = tonic::Request::from_parts(
            metadata,
            tonic::Extensions::default(),
            InvokeFunctionRequest {
                account_id: account.to_string(),
                function_name: function.to_string(),
                event,
            },
        );
        request.set_timeout(Duration::from_secs(120));
        let response = self.invoke.clone().invoke_function(request).await?;
        let (map, reply, _) = response.into_parts();
        let platform = Reply::from_metadata(&map);
        Ok(InvokeOutcome {
            request_id: reply.request_id,
            body: reply.body,
            server_latency_ms: reply.server_side_latency_in_ms,
            acquire_ms: platform.acquire_ms,
            duration_ns: platform.duration_ns,
            cold: platform.cold,
            container_id: platform.container_id,
            node_id: platform.node_id,
            max_memory_bytes: number(&map, meta::MAX_MEMORY_BYTES),
            route: Box::new(RouteReply::from_metadata(&map)),
        })
    }

    /// Invokes `function` with `event` as `account`, giving up after `timeout`: the live
    /// driver's call, which keeps the platform's metadata of a reply, not its body.
    pub async fn invoke_within(
        &self,
        account: &str,
        function: &str,
        event: Vec<u8>,
        timeout: Duration,
    ) -> Result<Reply, tonic::Status> {
        let mut request = tonic::Request::new(InvokeFunctionRequest {
            account_id: account.to_string(),
            function_name: function.to_string(),
            event,
        });
        request.set_timeout(timeout);
        let response = self.invoke.clone().invoke_function(request).await?;
        Ok(Reply::from_metadata(response.metadata()))
    }

    /// Deploys (creates or replaces) a workload function.
    pub async fn deploy(&self, f: &FunctionProfile) -> Result<(), tonic::Status> {
        let spec = FunctionSpec {
            name: f.name.clone(),
            handler: f.handler.as_str().to_string(),
            memory_in_bytes: i64::try_from(f.memory_bytes).unwrap_or(i64::MAX),
            timeout_in_ms: i64::try_from(f.timeout_ms).unwrap_or(i64::MAX),
            description: f.origin.clone().unwrap_or_default(),
            ..Default::default()
        };
        self.admin
            .clone()
            .deploy_function(DeployFunctionRequest {
                function: Some(spec),
            })
            .await?;
        Ok(())
    }

    /// The functions, as the contest's `ListFunctions` gives them.
    pub async fn list(
        &self,
    ) -> Result<Vec<faas_proto::apiserverproto::FunctionConfig>, tonic::Status> {
        Ok(self
            .invoke
            .clone()
            .list_functions(ListFunctionsRequest {})
            .await?
            .into_inner()
            .functions)
    }

    /// The admin API client.
    pub fn admin(&self) -> AdminApi {
        self.admin.clone()
    }

    /// The asynchronous invocations client.
    pub fn invocations(&self) -> InvocationsApi {
        self.invocations.clone()
    }

    /// The scheduler's decisions client (through the API server).
    pub fn decisions(&self) -> DecisionsApi {
        self.decisions.clone()
    }

    /// The topics' emit client.
    pub fn events(&self) -> EventsApi {
        self.events.clone()
    }

    /// The subscriptions' and chains' client.
    pub fn event_admin(&self) -> EventAdminApi {
        self.event_admin.clone()
    }
}

/// The live driver's name for the one client.
pub type PlatformClient = Api;

/// A status as one line a person reads: `NOT_FOUND: function x not found`.
pub fn describe(status: &tonic::Status) -> String {
    format!("{:?}: {}", status.code(), status.message())
}

/// Every node the resource manager ever reserved (`GetNodesUsage`).
pub async fn nodes_usage(
    rm: &mut ResourceManagerClient<AuthChannel>,
    request_id: String,
) -> Result<Vec<NodeDesc>, tonic::Status> {
    let mut request = tonic::Request::new(GetNodesUsageRequest { request_id });
    request.set_timeout(Duration::from_secs(10));
    Ok(rm.get_nodes_usage(request).await?.into_inner().nodes)
}

/// The ids and memory limits of the containers a node service holds (`GetStats`).
pub async fn node_containers(
    node: &mut NodeServiceClient<AuthChannel>,
    request_id: String,
    timeout: Duration,
) -> Result<Vec<(String, u64)>, tonic::Status> {
    let mut request = tonic::Request::new(GetStatsRequest { request_id });
    request.set_timeout(timeout);
    let reply = node.get_stats(request).await?.into_inner();
    Ok(reply
        .container_stats_list
        .into_iter()
        .map(|c| {
            let limit = u64::try_from(c.total_memory_in_bytes).unwrap_or(0);
            (c.container_id, limit)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_is_read_and_bad_values_ignored() {
        let mut map = MetadataMap::new();
        map.insert(meta::ACQUIRE_MS, "1.250".parse().unwrap());
        map.insert(meta::DURATION_NS, "3000000".parse().unwrap());
        map.insert(meta::COLD_START, "true".parse().unwrap());
        map.insert(meta::CONTAINER_ID, "c-1".parse().unwrap());
        map.insert(meta::NODE_ID, "node-2".parse().unwrap());
        let r = Reply::from_metadata(&map);
        assert_eq!(r.acquire_ms, Some(1.25));
        assert_eq!(r.duration_ns, Some(3_000_000));
        assert_eq!(r.cold, Some(true));
        assert_eq!(r.container_id.as_deref(), Some("c-1"));
        assert_eq!(r.node_id.as_deref(), Some("node-2"));
        let mut bad = MetadataMap::new();
        bad.insert(meta::ACQUIRE_MS, "soon".parse().unwrap());
        assert_eq!(Reply::from_metadata(&bad), Reply::default());
        let s = tonic::Status::resource_exhausted("no node");
        assert_eq!(describe(&s), "ResourceExhausted: no node");
    }

    #[test]
    fn route_requests_become_checked_metadata() {
        assert!(RouteRequest::default().is_empty());
        assert!(RouteRequest::default().metadata().unwrap().is_empty());
        let route = RouteRequest {
            route_id: Some("vip-7".into()),
            params: vec![
                parse_route_param("wareHouseId=2001").unwrap(),
                parse_route_param("q=a=b").unwrap(),
            ],
            routing_key: Some("user 1".into()),
        };
        let map = route.metadata().unwrap();
        assert_eq!(map.get(meta::ROUTE_ID).unwrap(), "vip-7");
        let params: Vec<_> = map.get_all(meta::ROUTE_PARAM).iter().collect();
        assert_eq!(params, ["wareHouseId=2001", "q=a=b"]);
        assert_eq!(map.get(meta::ROUTING_KEY).unwrap(), "user 1");

        for bad in ["novalue", "=x", ""] {
            assert!(
                parse_route_param(bad)
                    .unwrap_err()
                    .contains("is not key=value"),
                "{bad}"
            );
        }
        let e = RouteRequest {
            route_id: Some("vïp".into()),
            ..RouteRequest::default()
        }
        .metadata()
        .unwrap_err();
        assert_eq!(
            e,
            "--route-id \"vïp\": contains 'ï'; routing values travel as gRPC metadata and must be printable ASCII"
        );
        let e = RouteRequest {
            params: vec![("k".into(), "a\nb".into())],
            ..RouteRequest::default()
        }
        .metadata()
        .unwrap_err();
        assert!(e.starts_with("--route \"k=a\\nb\": contains '\\n'"), "{e}");
        let e = RouteRequest {
            routing_key: Some("x".repeat(meta::MAX_ROUTE_VALUE_BYTES + 1)),
            ..RouteRequest::default()
        }
        .metadata()
        .unwrap_err();
        assert!(e.contains("over the server's limit of 256"), "{e}");
        let e = RouteRequest {
            params: vec![("k".into(), "v".into()); meta::MAX_ROUTE_PARAMS + 1],
            ..RouteRequest::default()
        }
        .metadata()
        .unwrap_err();
        assert!(e.contains("at most 16 routing parameters"), "{e}");
    }

    #[test]
    fn the_routing_of_a_reply_is_read_back() {
        let mut map = MetadataMap::new();
        assert_eq!(RouteReply::from_metadata(&map), RouteReply::default());
        assert!(RouteReply::default().lines().is_empty());
        map.insert(meta::VERSION, "1".parse().unwrap());
        map.insert(meta::TARGET, "shop:1".parse().unwrap());
        map.insert(meta::FALLBACK, "shop:2; error".parse().unwrap());
        let reply = RouteReply::from_metadata(&map);
        assert_eq!(
            reply.fallback,
            Some(FallbackReply {
                meant_for: "shop:2".into(),
                reason: "error".into()
            })
        );
        assert_eq!(
            reply.lines(),
            [
                "version 1 | target shop:1",
                "fallback: served instead of shop:2 (error)"
            ]
        );
    }

    #[test]
    fn a_key_must_be_printable_and_is_never_shown() {
        assert_eq!(BearerKey::new(Some("ключ")).unwrap_err(), BadKey);
        assert_eq!(
            format!("{:?}", BearerKey::new(Some("secret")).unwrap()),
            "BearerKey(..)"
        );
    }
}
