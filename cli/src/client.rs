//! Calls to the API server as a user makes them: invoke (with the platform's metadata read
//! back, and the service layer's routing metadata sent and read back), list and deploy
//! functions.
//!
//! Every call carries the caller's key, when it has one, as the gRPC metadata
//! `authorization: Bearer KEY` ([`BearerKey`], an interceptor on both clients). Where the
//! key comes from is [`find_key`]'s business: `--api-key` / `FAAS_API_KEY`, else the admin
//! key `faas up` wrote to `DATA_DIR/keys`, which is only ever sent to an API server on this
//! machine (a loopback address). An `https://` address, or `--tls-ca FILE`, connects with TLS
//! ([`Connect`]).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;

use crate::exit;

use faas_apiserver::api::routing::{MAX_ROUTE_PARAMS, MAX_ROUTE_VALUE_BYTES};
use faas_proto::admin::admin_client::AdminClient;
use faas_proto::apiserverproto::api_server_client::ApiServerClient;
use faas_proto::apiserverproto::{InvokeFunctionRequest, ListFunctionsRequest};
use faas_proto::invoke::invocations_client::InvocationsClient;
use faas_proto::meta;
use tonic::metadata::{AsciiMetadataValue, MetadataMap};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

/// The account the command line uses when none is given.
pub const DEFAULT_ACCOUNT: &str = "faas-cli";

/// The largest reply accepted from the API server. Not tonic's 4 MiB: a function's body
/// can be larger, and a function list is as long as the registry (thousands of functions, a
/// long description each). The server is the one the user pointed the command at.
pub const MAX_REPLY_BYTES: usize = usize::MAX;

/// Adds `authorization: Bearer KEY` to every call, when there is a key.
#[derive(Clone, Default)]
pub struct BearerKey(Option<AsciiMetadataValue>);

impl BearerKey {
    /// The interceptor of `key`; refused unless it is printable ASCII (as every key is).
    pub fn new(key: Option<&str>) -> anyhow::Result<BearerKey> {
        let Some(key) = key else {
            return Ok(BearerKey(None));
        };
        let key = key.trim();
        let refused = || anyhow::anyhow!("the API key must be printable ASCII without spaces");
        if !key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(refused());
        }
        let mut value =
            AsciiMetadataValue::try_from(format!("Bearer {key}")).map_err(|_| refused())?;
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
                .insert(faas_apiserver::api::auth::AUTHORIZATION, value.clone());
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

/// How to reach the API server.
#[derive(Clone, Debug, Default)]
pub struct Connect {
    /// `host:port`, `http://host:port` or `https://host:port`.
    pub addr: String,
    /// The key every call carries.
    pub key: Option<String>,
    /// Trust the certificates this CA (PEM) signed; implies TLS. Without it an `https://`
    /// address trusts the system's roots.
    pub tls_ca: Option<PathBuf>,
}

impl Connect {
    /// A channel to the API server: plaintext, or TLS for `https://` or a CA file. An API
    /// server that cannot be reached is an [`exit::Unreachable`] (one line, exit code 5).
    pub async fn channel(&self) -> anyhow::Result<Channel> {
        let addr = self.addr.as_str();
        let tls = addr.starts_with("https://") || self.tls_ca.is_some();
        let uri = match addr.strip_prefix("http://") {
            Some(rest) if tls => anyhow::bail!(
                "{addr}: --tls-ca asks for TLS, the address for plaintext; give https://{rest}"
            ),
            _ if addr.contains("://") => addr.to_string(),
            _ => format!("{}://{addr}", if tls { "https" } else { "http" }),
        };
        let mut endpoint = Endpoint::from_shared(uri.clone())
            .map_err(|e| exit::bad_input(anyhow::anyhow!("bad API server address {addr:?}: {e}")))?
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(5))
            .http2_keep_alive_interval(Duration::from_secs(30))
            .keep_alive_while_idle(true);
        if tls {
            let config = match &self.tls_ca {
                Some(path) => {
                    let pem = std::fs::read(path)
                        .with_context(|| format!("cannot read --tls-ca {}", path.display()))?;
                    ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem))
                }
                None => ClientTlsConfig::new().with_native_roots(),
            };
            endpoint = endpoint
                .tls_config(config)
                .with_context(|| format!("cannot use TLS with {addr}"))?;
        }
        let shown = if tls {
            format!("{uri} (TLS)")
        } else {
            addr.to_string()
        };
        endpoint
            .connect()
            .await
            .map_err(|e| anyhow::Error::new(exit::Unreachable::new(&shown, &e)))
    }
}

/// Whether `addr` (`host:port`, or a URI) names this machine: a loopback IP or `localhost`.
pub fn is_local(addr: &str) -> bool {
    let rest = addr
        .strip_prefix("http://")
        .or_else(|| addr.strip_prefix("https://"))
        .unwrap_or(addr);
    let host = match rest.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => rest.rsplit_once(':').map_or(rest, |(h, _)| h),
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The key a command uses with the API server at `addr`: `given` (`--api-key` or
/// `FAAS_API_KEY`), else, for an API server on this machine, the first admin key of
/// `DATA_DIR/keys` (the one `faas up` wrote) when that file exists; else none.
pub fn find_key(
    addr: &str,
    given: Option<&str>,
    data_dir: Option<&Path>,
) -> anyhow::Result<Option<String>> {
    if let Some(key) = given.filter(|k| !k.is_empty()) {
        return Ok(Some(key.to_string()));
    }
    let Some(dir) = data_dir.filter(|_| is_local(addr)) else {
        return Ok(None);
    };
    let path = faas_apiserver::store::keys::keys_path(dir);
    if !path.exists() {
        return Ok(None);
    }
    let lines = faas_apiserver::store::keys::read_keys_file(&path)?;
    Ok(faas_apiserver::config::first_admin_key(&lines))
}

/// A connection to the API server (the contest API, the admin API, asynchronous calls).
#[derive(Clone)]
pub struct Api {
    invoke: ApiServerClient<KeyedChannel>,
    admin: AdminApi,
    invocations: InvocationsApi,
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
    /// Connects to the API server at `addr`; every call carries `key`.
    pub async fn connect_with_key(addr: &str, key: Option<&str>) -> anyhow::Result<Api> {
        Api::connect_to(&Connect {
            addr: addr.to_string(),
            key: key.map(str::to_string),
            tls_ca: None,
        })
        .await
    }

    /// Connects as `target` says (TLS, key).
    pub async fn connect_to(target: &Connect) -> anyhow::Result<Api> {
        let channel = target.channel().await?;
        Api::keyed(channel, target.key.as_deref())
    }

    /// Uses an existing channel, without a key.
    pub fn from_channel(channel: Channel) -> Api {
        Api::with_interceptor(channel, BearerKey::default())
    }

    /// Uses an existing channel; every call carries `key`.
    pub fn keyed(channel: Channel, key: Option<&str>) -> anyhow::Result<Api> {
        Ok(Api::with_interceptor(channel, BearerKey::new(key)?))
    }

    fn with_interceptor(channel: Channel, key: BearerKey) -> Api {
        Api {
            // Requests stay unlimited here: the server says clearly when an event is too large.
            invoke: ApiServerClient::with_interceptor(channel.clone(), key.clone())
                .max_decoding_message_size(MAX_REPLY_BYTES),
            admin: AdminClient::with_interceptor(channel.clone(), key.clone())
                .max_decoding_message_size(MAX_REPLY_BYTES),
            invocations: InvocationsClient::with_interceptor(channel, key)
                .max_decoding_message_size(MAX_REPLY_BYTES),
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
    pub fn admin(&self) -> AdminApi {
        self.admin.clone()
    }

    /// The asynchronous invocations client.
    pub fn invocations(&self) -> InvocationsApi {
        self.invocations.clone()
    }
}

/// A status as one line a person reads: `NOT_FOUND: function x not found`.
pub fn describe(status: &tonic::Status) -> String {
    format!("{:?}: {}", status.code(), status.message())
}

#[cfg(test)]
#[path = "client_tests.rs"]
mod tests;
