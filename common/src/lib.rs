//! Shared plumbing for the platform's components. Nothing here knows about functions,
//! nodes or containers: it is the technical edge every component needs the same way.
//!
//! - [`launch`]: find a component's binary and spawn it as a child that cannot outlive us.
//! - [`shutdown`]: a cloneable shutdown signal and Ctrl-C / SIGTERM handling.
//! - [`serve`]: bind listeners, serve tonic routers with TCP_NODELAY, connect channels.
//! - [`metrics`]: serve a Prometheus registry as text over HTTP.
//! - [`logging`]: one `tracing` set-up for every binary.
//! - [`clock`]: the one place that reads the machine's clocks (business code takes time as an argument).
//! - [`units`]: MiB, GiB and the contest node's size, written once.
//! - [`stats`]: nearest-rank percentiles for reports and benchmarks.
//! - [`text`]: clip input quoted in error messages.
//! - [`token`]: the cluster token components send each other, and the gate that checks it.
//! - `docker` (cargo feature `docker`): the labels and label-based removal both Docker users
//!   (the node service's runtime, the resource manager's provider) share.

pub mod clock;
#[cfg(feature = "docker")]
pub mod docker;
pub mod launch;
pub mod logging;
pub mod metrics;
pub mod serve;
pub mod shutdown;
pub mod stats;
pub mod text;
pub mod token;
pub mod trace;
pub mod units;
