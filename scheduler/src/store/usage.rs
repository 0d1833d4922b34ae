//! A node's stats sample, applied container by container without re-indexing.
//!
//! A `GetStats` round lists every container of every node (the simulator's big day: more
//! container samples than calls), and what a sample changes — the usage figures and the count of
//! samples that missed a container — is filed under no index. So the store updates those two
//! fields in place, and remembers which containers the round listed by stamping each row with
//! the round's number instead of collecting their keys in a set.

use super::{ContainerKey, FunctionKey, NodeKey, Store};
use crate::model::ContainerUsage;

/// What [`Store::note_usage`] tells about the container it updated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Noted {
    /// Its node.
    pub node: NodeKey,
    /// Its function.
    pub function: FunctionKey,
    /// Whether this is the first time the current round listed it.
    pub first: bool,
}

impl Store {
    /// Begins a stats round: a number no container was stamped with yet.
    pub fn begin_listing(&mut self) -> u64 {
        self.listing += 1;
        self.listing
    }

    /// Stores `usage` as the container's latest sample, clears its missing count and stamps it
    /// as listed in `round`. `None` for a container the store does not hold.
    pub fn note_usage(
        &mut self,
        key: ContainerKey,
        round: u64,
        usage: ContainerUsage,
    ) -> Option<Noted> {
        let row = self.containers.get_mut(key)?;
        row.container.usage = Some(usage);
        row.container.missing_samples = 0;
        let first = std::mem::replace(&mut row.listed_in, round) != round;
        Some(Noted {
            node: row.node,
            function: row.function,
            first,
        })
    }

    /// Whether round `round` listed the container (false for one the store does not hold).
    pub fn listed_in(&self, key: ContainerKey, round: u64) -> bool {
        self.containers
            .get(key)
            .is_some_and(|r| r.listed_in == round)
    }
}
