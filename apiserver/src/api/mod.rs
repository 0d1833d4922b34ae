//! The technical edges of the API server.
//!
//! - [`server`]: the contest's `apiserverproto.APIServer` (calls go through the service
//!   layer's router) and the assembled server with health checking and metrics.
//! - [`front`]: the one invoke path every door goes through: limits, request id, the chain
//!   in a task of its own, metrics.
//! - [`invocations`]: `faas.invoke.v1.Invocations`, the gRPC door of asynchronous calls.
//! - [`async_runner`]: the durable queue's delivery: the worker pool, retries, dead letters,
//!   callbacks ([`callback`]: loopback URLs only); [`admin_queue`]: a function's retry
//!   settings and its queue in `DescribeFunction`; [`queue_metrics`]: the queue's figures.
//! - [`events`]: `faas.events.v1.Events` and `EventAdmin`: topics (subscribe, emit) and
//!   chains; [`chains`]: the next step of a chain when a call ends; [`event_metrics`]: their
//!   figures.
//! - [`gateway`]: the HTTP gateway (`/function/NAME`, `/async-function/NAME`, ...).
//! - [`auth`]: the front door: each call's key (`authorization: Bearer KEY`) against the
//!   scope its service needs, per-account limits, and the statuses of refusals.
//! - [`admin`]: `faas.admin.v1.Admin`: functions, versions, aliases, routes, describe.
//! - [`cluster`]: `Admin/ListNodes`: every node the scheduler lists with its containers and
//!   memory, read from the nodes at once.
//! - [`decisions`]: `faas.decisions.v1.Decisions`: the scheduler's recent decisions with the
//!   policy's reasons, passed through (scope admin) for `faas events` and the dashboard.
//! - [`logs`]: `Admin/FunctionLogs`: a function's output lines from every node the scheduler
//!   lists, merged oldest first.
//! - [`routing`]: the service layer's admin messages and call metadata ⇄ the model.
//! - [`scheduler`]: the scheduler port over gRPC (`schedulerproto.Scheduler`).
//! - [`node`]: the node port over gRPC (`nodeservoceproto.NodeService`), one channel per node.
//! - [`convert`]: contest and admin messages ⇄ the model, and errors → `tonic::Status`.
//! - [`metrics`]: Prometheus figures of invocations.
//! - [`clock`]: the monotonic clock.

pub mod admin;
pub mod admin_queue;
pub mod async_runner;
pub mod auth;
pub mod callback;
pub mod chains;
pub mod clock;
pub mod cluster;
pub mod convert;
pub mod decisions;
pub mod event_metrics;
pub mod events;
pub mod front;
pub mod gateway;
pub mod invocations;
pub mod logs;
pub mod metrics;
pub mod node;
pub mod queue_metrics;
pub mod routing;
pub mod scheduler;
pub mod server;
