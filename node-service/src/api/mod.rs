//! The technical edges of the node service: the gRPC servers (the contest's `NodeService` in
//! [`grpc`]; the platform's `NodeAdmin` and the interceptor that stamps every call for the
//! orphan timeout in [`admin`]), the `process` runtime ([`process`], its containers'
//! user, limits and environment in [`isolation`]), the `docker` runtime
//! ([`docker`], with image functions in [`docker_bundle`]), the bundles directory
//! ([`bundles`]), containers' stderr ([`stderr`]), the gRPC client into containers
//! ([`invoker`]), `/proc` and `statvfs` measurements and the wall clock ([`procfs`],
//! [`host`]) and the Prometheus figures ([`metrics`]).

pub mod admin;
pub mod bundles;
pub mod cgroup;
#[cfg(test)]
pub mod cgroup_fake;
pub mod docker;
pub mod docker_bundle;
pub mod grpc;
pub mod host;
pub mod invoker;
pub mod isolation;
pub mod logs;
pub mod metrics;
pub mod process;
pub mod procfs;
pub mod stderr;
