//! The gRPC protocols of the platform, generated from `proto/*.proto`.
//!
//! The four contest packages keep their names exactly (the contest's wire protocol, see
//! `shared/spec/wire.md`), including the misspelt `nodeservoceproto`. The platform's own
//! packages are `faas.container.v1` and `faas.admin.v1`.
//!
//! - [`codec`]: the codecs the generated servers and clients use (an undecodable request is
//!   INVALID_ARGUMENT, an undecodable reply INTERNAL), and a raw call for tests.
//! - [`limits`]: the built-in handlers and the largest sizes every component accepts.
//! - [`meta`]: the gRPC metadata keys the platform adds beside the contest's messages.
//! - [`reflection`]: gRPC server reflection from the compiled `.proto` descriptors, so
//!   `grpcurl list` / `describe` work against every component.

pub mod builtin;
pub mod codec;
pub mod limits;
pub mod reflection;

/// `schedulerproto`: `Scheduler.AcquireContainer` / `ReturnContainer`.
pub mod schedulerproto {
    tonic::include_proto!("schedulerproto");
}

/// `resourcemanagerproto`: `ReserveNode`, `ReleaseNode`, `GetNodesUsage`.
pub mod resourcemanagerproto {
    tonic::include_proto!("resourcemanagerproto");
}

/// `nodeservoceproto` (sic): the node service.
pub mod nodeservoceproto {
    tonic::include_proto!("nodeservoceproto");
}

/// `apiserverproto`: the public API (`InvokeFunction`, `ListFunctions`).
pub mod apiserverproto {
    tonic::include_proto!("apiserverproto");
}

/// `faas.container.v1`: node service → container service.
pub mod container {
    tonic::include_proto!("faas.container.v1");
}

/// `faas.admin.v1`: deploy, read, list and delete functions.
pub mod admin {
    tonic::include_proto!("faas.admin.v1");
}

/// `faas.scheduler.v1`: the scheduler's platform API (retire a deleted function).
pub mod scheduler_admin {
    tonic::include_proto!("faas.scheduler.v1");
}

/// `faas.node.v1`: the node service's platform API (describe the node and its containers,
/// for recovery after a scheduler or resource-manager restart).
pub mod node_admin {
    tonic::include_proto!("faas.node.v1");
}

/// `faas.invoke.v1`: asynchronous invocations through the API server.
pub mod invoke {
    tonic::include_proto!("faas.invoke.v1");
}

/// `faas.decisions.v1`: the scheduler's recent decisions with their reasons (the
/// dashboard, `faas events`).
pub mod decisions {
    tonic::include_proto!("faas.decisions.v1");
}

/// `faas.events.v1`: topics and chains (`faas emit`, `faas subscribe`, `faas chain`).
pub mod events {
    tonic::include_proto!("faas.events.v1");
}

/// gRPC metadata keys the platform adds beside the contest's messages (never inside them).
pub mod meta {
    /// A call to the API server carries its key here, as `Bearer KEY` (the API server's
    /// interceptor checks and removes it; clients add it).
    pub const AUTHORIZATION: &str = "authorization";
    /// The longest routing id, key or parameter (`ROUTE_ID`, `ROUTING_KEY`, `ROUTE_PARAM`)
    /// the API server accepts, in bytes; clients check before they send.
    pub const MAX_ROUTE_VALUE_BYTES: usize = 256;
    /// The most routing parameters (`ROUTE_PARAM`) one call may carry.
    pub const MAX_ROUTE_PARAMS: usize = 16;
    /// Set by the scheduler on an `AcquireContainer` reply: `"true"` when a container was
    /// created for this request (a cold start), `"false"` when a warm one was reused.
    pub const COLD_START: &str = "x-faas-cold-start";
    /// Set by the API server on an `InvokeFunction` reply: time spent in `AcquireContainer`,
    /// in milliseconds with a fraction (`0.153`).
    pub const ACQUIRE_MS: &str = "x-faas-acquire-ms";
    /// Set by the API server on an `InvokeFunction` reply: the function's own duration, ns.
    pub const DURATION_NS: &str = "x-faas-duration-ns";
    /// Set by the API server on an `InvokeFunction` reply: the container that served it.
    pub const CONTAINER_ID: &str = "x-faas-container-id";
    /// Set by the API server on an `InvokeFunction` reply: the node that served it.
    pub const NODE_ID: &str = "x-faas-node-id";
    /// Set by the API server on an `InvokeFunction` reply: the function's peak memory, bytes.
    pub const MAX_MEMORY_BYTES: &str = "x-faas-max-memory-bytes";
    /// Set by a node service on an `InvokeFunction` error whose event never reached the
    /// function: `ContainerNotFound`, `ContainerDead`, `ContainerUnreachable` or
    /// `WrongFunction` (see `docs/CONVENTIONS.md`, "Self-healing"). The API server retries
    /// such a call once on another container.
    pub const ERROR_CODE: &str = "x-faas-error-code";
    /// Sent by a caller on `InvokeFunction`: the routing id (a business identity, a user)
    /// that route rules match on.
    pub const ROUTE_ID: &str = "x-faas-route-id";
    /// Sent by a caller on `InvokeFunction`, once per parameter: `key=value`, a routing
    /// parameter that route rules' `fields` match on (dynamic routing).
    pub const ROUTE_PARAM: &str = "x-faas-route";
    /// Sent by a caller on `InvokeFunction`: a routing key; calls with the same key through a
    /// weighted alias go to the same version (sticky routing). Without it, a random pick.
    pub const ROUTING_KEY: &str = "x-faas-routing-key";
    /// Set by the API server on an `InvokeFunction` reply: the version that served the call
    /// (`3`), or `latest` for the function's current (unpublished) definition.
    pub const VERSION: &str = "x-faas-version";
    /// Set by the API server on an `InvokeFunction` reply: the concrete target that served
    /// the call (`hello:3`, or `hello` for the current definition).
    pub const TARGET: &str = "x-faas-target";
    /// Set by the API server on an `InvokeFunction` reply the fallback served:
    /// `<target it was meant for>; <reason>`, the reason one of `not_found`, `error`,
    /// `timeout`, `breaker_open`, `share`.
    pub const FALLBACK: &str = "x-faas-fallback";
}
