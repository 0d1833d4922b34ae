//! The technical edges: the tonic `Scheduler` server, the gRPC clients implementing the
//! service's ports (resource manager, node services), the clock, and the metrics.

pub mod metrics;
pub mod ports;
pub mod server;

pub use metrics::Metrics;
pub use ports::{GrpcNodes, GrpcResource, InstantClock};
pub use server::SchedulerApi;
