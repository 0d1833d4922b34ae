//! The technical edges of the API server.
//!
//! - [`server`]: the tonic services (`apiserverproto.APIServer`, `faas.admin.v1.Admin`) and
//!   the assembled server with health checking and metrics.
//! - [`scheduler`]: the scheduler port over gRPC (`schedulerproto.Scheduler`).
//! - [`node`]: the node port over gRPC (`nodeservoceproto.NodeService`), one channel per node.
//! - [`convert`]: contest and admin messages ⇄ the model, and errors → `tonic::Status`.
//! - [`metrics`]: Prometheus figures of invocations.
//! - [`clock`]: the monotonic clock.

pub mod clock;
pub mod convert;
pub mod metrics;
pub mod node;
pub mod scheduler;
pub mod server;
