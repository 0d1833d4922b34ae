//! The technical edges: the tonic `Scheduler` server and the platform's `SchedulerAdmin`
//! server, the platform's `Decisions` server (the policy's recent decisions), the gRPC clients implementing the service's ports (resource manager, node
//! services), the clock, and the metrics.

pub mod admin;
pub mod decisions;
pub mod metrics;
pub mod ports;
pub mod server;

pub use admin::SchedulerAdminApi;
pub use decisions::DecisionsApi;
pub use metrics::Metrics;
pub use ports::{GrpcNodes, GrpcResource, InstantClock};
pub use server::SchedulerApi;
