//! Calls to the API server as a user makes them: invoke (with the platform's metadata read
//! back, and the service layer's routing metadata sent and read back), list and deploy
//! functions.

use std::time::Duration;

use faas_apiserver::api::routing::{MAX_ROUTE_PARAMS, MAX_ROUTE_VALUE_BYTES};
use faas_proto::admin::admin_client::AdminClient;
use faas_proto::apiserverproto::api_server_client::ApiServerClient;
use faas_proto::apiserverproto::{InvokeFunctionRequest, ListFunctionsRequest};
use faas_proto::meta;
use tonic::metadata::{AsciiMetadataValue, MetadataMap};
use tonic::transport::Channel;

/// The account the command line uses when none is given.
pub const DEFAULT_ACCOUNT: &str = "faas-cli";

/// The largest reply accepted from the API server. Not tonic's 4 MiB: a function's body
/// can be larger, and a function list is as long as the registry (thousands of functions, a
/// long description each). The server is the one the user pointed the command at.
pub const MAX_REPLY_BYTES: usize = usize::MAX;

/// A connection to the API server (both the contest API and the admin API).
#[derive(Clone)]
pub struct Api {
    invoke: ApiServerClient<Channel>,
    admin: AdminClient<Channel>,
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
    if value.len() > MAX_ROUTE_VALUE_BYTES {
        return Err(format!(
            "{flag} {clipped:?}: {} bytes, over the server's limit of {MAX_ROUTE_VALUE_BYTES}",
            value.len()
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
        if self.params.len() > MAX_ROUTE_PARAMS {
            return Err(format!(
                "--route: at most {MAX_ROUTE_PARAMS} routing parameters, got {}",
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

impl Api {
    /// Connects to the API server at `addr` (`host:port`).
    pub async fn connect(addr: &str) -> anyhow::Result<Api> {
        let channel = faas_common::serve::connect(addr).await?;
        Ok(Api::from_channel(channel))
    }

    /// Uses an existing channel.
    pub fn from_channel(channel: Channel) -> Api {
        Api {
            // Requests stay unlimited here: the server says clearly when an event is too large.
            invoke: ApiServerClient::new(channel.clone())
                .max_decoding_message_size(MAX_REPLY_BYTES),
            admin: AdminClient::new(channel).max_decoding_message_size(MAX_REPLY_BYTES),
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
        Ok(InvokeOutcome {
            request_id: reply.request_id,
            body: reply.body,
            server_latency_ms: reply.server_side_latency_in_ms,
            acquire_ms: number(&map, meta::ACQUIRE_MS),
            duration_ns: number(&map, meta::DURATION_NS),
            cold: text(&map, meta::COLD_START).map(|v| v == "true"),
            container_id: text(&map, meta::CONTAINER_ID).map(str::to_string),
            node_id: text(&map, meta::NODE_ID).map(str::to_string),
            max_memory_bytes: number(&map, meta::MAX_MEMORY_BYTES),
            route: Box::new(RouteReply::from_metadata(&map)),
        })
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
    pub fn admin(&self) -> AdminClient<Channel> {
        self.admin.clone()
    }
}

/// A status as one line a person reads: `NOT_FOUND: function x not found`.
pub fn describe(status: &tonic::Status) -> String {
    format!("{:?}: {}", status.code(), status.message())
}

#[cfg(test)]
mod tests {
    use super::*;

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
            routing_key: Some("x".repeat(MAX_ROUTE_VALUE_BYTES + 1)),
            ..RouteRequest::default()
        }
        .metadata()
        .unwrap_err();
        assert!(e.contains("over the server's limit of 256"), "{e}");
        let e = RouteRequest {
            params: vec![("k".into(), "v".into()); MAX_ROUTE_PARAMS + 1],
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
}
