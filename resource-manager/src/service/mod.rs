//! The async driver around the pure pool ([`crate::core`]): the [`Manager`] owns the pool,
//! carries out its actions through a [`NodeProvider`] and the [`ports`], drives refills and
//! takes the health watch's reports. No tonic status, no clock read and no I/O of its own
//! here: the provider (`provider.rs`, the port through which nodes are started and stopped)
//! and the other ports (`ports.rs`) are implemented in [`crate::api`].

mod manager;
pub mod ports;
mod provider;

pub use manager::Manager;
pub use ports::{Clock, Metrics, NodeCalls, Ports, StateError, StateStore};
pub use provider::{GoneNode, NodeProvider, ProviderError, StartFailure};
