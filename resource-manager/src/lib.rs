//! The resource manager: reserves and releases nodes (the contest's VMs) under the contest's
//! rules, serving `resourcemanagerproto.ResourceManager` and `grpc.health.v1`.
//!
//! Layers: [`model`] (a node and its states) → [`store`] (the node table) → [`service`] (the
//! pool's rules in virtual time, and the [`service::NodeProvider`] port) → [`api`] (gRPC,
//! the `local` and `static` providers, the refill timer, metrics).

pub mod api;
pub mod config;
pub mod error;
pub mod model;
pub mod service;
pub mod store;

pub use api::{main_with, run};
pub use config::{Config, ProviderKind};
pub use error::Error;
