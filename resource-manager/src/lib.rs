//! The resource manager: reserves and releases nodes (the contest's VMs) under the contest's
//! rules, serving `resourcemanagerproto.ResourceManager` and `grpc.health.v1`.
//!
//! Layers: [`model`] (a node and its states) → [`store`] (the node table) → [`core`] (the
//! pool's rules and the recovery rules, pure, in virtual time) → [`service`] (the async
//! [`service::Manager`] driving the pool through its ports: [`service::NodeProvider`] and
//! [`service::ports`]) → [`api`] (gRPC, the `local`, `docker` and `static` providers, the
//! node-service client, the clock, the node health watch, the state file, metrics).
//!
//! Self-healing, in one paragraph: every child process it starts is reaped as soon as it
//! exits; a node whose process exits, or that answers no health probe for
//! `--node-failed-after-ms`, fails: it is killed, counted and logged once, and a ready one is
//! dropped from the pool at once and replaced after the refill delay, while a reserved one
//! stays its account's until the account releases it (that release succeeds). A node that
//! cannot start is a start failure, never ready, retried with a back-off. See
//! [`core::pool`] for the rules and `api::health` for the watch.
//!
//! Recovery, in one paragraph: with `--state-dir`, every change of the pool is saved to a
//! state file (atomically), and nodes outlive the manager (detached processes with an
//! orphan timeout, or containers found again by label). A restarted manager takes back
//! every node that still answers as itself, with its id, address, owner and reserve time;
//! a dead ready node is forgotten, a dead reserved one is failed (its owner's until
//! released); ids are never reused; then the pool refills as usual. A clean stop (SIGTERM,
//! Ctrl-C) still stops every node and empties the state; only a crash leaves nodes to take
//! back ([`run_with`] stops like one, for tests). See [`core::recovery`].

pub mod api;
pub mod config;
pub mod core;
pub mod error;
pub mod model;
pub mod service;
pub mod store;

pub use api::{main_with, run, run_with};
pub use config::{Config, ProviderKind};
pub use error::Error;
