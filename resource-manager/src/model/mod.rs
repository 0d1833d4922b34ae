//! The resource manager's entities: a node (one VM of the contest, here a node-service
//! process or a given address) through its lives from starting to released. Plain data, no I/O.

mod node;

#[cfg(test)]
pub use node::ids_and_states;
pub use node::{Failure, FailureReason, Node, NodeEndpoint, NodeHandle, NodeState, StartedNode};
