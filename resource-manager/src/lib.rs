//! The resource manager: reserves and releases nodes (the contest's VMs) under the contest's
//! rules, serving `resourcemanagerproto.ResourceManager` and `grpc.health.v1`.
//!
//! Layers: [`model`] (a node and its states) → [`store`] (the node table) → [`service`] (the
//! pool's rules in virtual time, and the [`service::NodeProvider`] port) → [`api`] (gRPC,
//! the `local`, `docker` and `static` providers, the refill timer, the node health watch,
//! metrics).
//!
//! Self-healing, in one paragraph: every child process it starts is reaped as soon as it
//! exits; a node whose process exits, or that answers no health probe for
//! `--node-failed-after-ms`, fails: it is killed, counted and logged once, and a ready one is
//! dropped from the pool at once and replaced after the refill delay, while a reserved one
//! stays its account's until the account releases it (that release succeeds). A node that
//! cannot start is a start failure, never ready, retried with a back-off. See
//! [`service`]'s pool for the rules and `api::health` for the watch.

pub mod api;
pub mod config;
pub mod error;
pub mod model;
pub mod service;
pub mod store;

pub use api::{main_with, run};
pub use config::{Config, ProviderKind};
pub use error::Error;
