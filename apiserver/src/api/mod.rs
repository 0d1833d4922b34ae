//! The technical edges of the API server.
//!
//! - [`server`]: the contest's `apiserverproto.APIServer` (calls go through the service
//!   layer's router) and the assembled server with health checking and metrics.
//! - [`auth`]: the front door: each call's key (`authorization: Bearer KEY`) against the
//!   scope its service needs, per-account limits, and the statuses of refusals.
//! - [`admin`]: `faas.admin.v1.Admin`: functions, versions, aliases, routes, describe.
//! - [`logs`]: `Admin/FunctionLogs`: a function's output lines from every node the scheduler
//!   lists, merged oldest first.
//! - [`routing`]: the service layer's admin messages and call metadata ⇄ the model.
//! - [`scheduler`]: the scheduler port over gRPC (`schedulerproto.Scheduler`).
//! - [`node`]: the node port over gRPC (`nodeservoceproto.NodeService`), one channel per node.
//! - [`convert`]: contest and admin messages ⇄ the model, and errors → `tonic::Status`.
//! - [`metrics`]: Prometheus figures of invocations.
//! - [`clock`]: the monotonic clock.

pub mod admin;
pub mod auth;
pub mod clock;
pub mod convert;
pub mod logs;
pub mod metrics;
pub mod node;
pub mod routing;
pub mod scheduler;
pub mod server;
