//! A bounded memory of request ids and the containers they held: returned requests (to tell
//! "already returned" from "never leased") and leases reclaimed when they expired.

use std::collections::VecDeque;

use super::Map;
use crate::model::Text;

/// Bounded memory of returned request ids (oldest forgotten first).
#[derive(Debug)]
pub(super) struct RecentReturns {
    capacity: usize,
    order: VecDeque<Text>,
    pub(super) container_of: Map<Text, Text>,
}

impl RecentReturns {
    pub(super) fn new(capacity: usize) -> Self {
        RecentReturns {
            capacity,
            order: VecDeque::with_capacity(capacity.min(1 << 16)),
            container_of: Map::with_capacity_and_hasher(capacity.min(1 << 16), Default::default()),
        }
    }

    pub(super) fn remember(&mut self, request_id: Text, container_id: Text) {
        if self.capacity == 0 {
            return;
        }
        if self.order.len() == self.capacity
            && let Some(old) = self.order.pop_front()
        {
            self.container_of.remove(&old);
        }
        if self
            .container_of
            .insert(request_id.clone(), container_id)
            .is_none()
        {
            self.order.push_back(request_id);
        }
    }

    pub(super) fn forget(&mut self, request_id: &str) {
        // Rare (a reused request id): the ring keeps the stale entry until it ages out, and
        // `remember` tolerates ring entries that the map no longer holds.
        self.container_of.remove(request_id);
    }
}
