//! The technical edges of the node service: the gRPC server ([`grpc`]), the `process`
//! runtime ([`process`]), the `docker` runtime ([`docker`]), the gRPC client into containers ([`invoker`]), `/proc` and
//! `statvfs` measurements ([`procfs`], [`host`]) and the Prometheus figures ([`metrics`]).

pub mod docker;
pub mod grpc;
pub mod host;
pub mod invoker;
pub mod metrics;
pub mod process;
pub mod procfs;
