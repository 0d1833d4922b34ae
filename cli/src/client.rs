//! Calls to the API server as a user makes them: invoke (with the platform's metadata read
//! back), list and deploy functions.

use std::time::Duration;

use faas_proto::admin::admin_client::AdminClient;
use faas_proto::apiserverproto::api_server_client::ApiServerClient;
use faas_proto::apiserverproto::{InvokeFunctionRequest, ListFunctionsRequest};
use faas_proto::meta;
use tonic::metadata::MetadataMap;
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
        let mut request = tonic::Request::new(InvokeFunctionRequest {
            account_id: account.to_string(),
            function_name: function.to_string(),
            event,
        });
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
