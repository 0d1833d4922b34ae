//! Idle-container timers: when a policy that removes idle containers on its own clock
//! (`keepalive-10m` at the end of a window, `no-reuse` at once) looks at a container again.
//!
//! Entries are by time (ties by arrival) and go stale freely: a container used again,
//! removed or forgotten since is simply skipped when its entry falls due, so a policy never
//! has to find and cancel one. [`IdleTimers::remove_idle`] is where the removal for
//! idleness happens, and where a hold (see [`crate::core::state::hold`]) defers it: a
//! container of a held function gets a new entry at the hold's end instead.

use std::collections::BTreeMap;

use crate::core::{Decision, State};
use crate::model::{ContainerState, Millis};
use crate::store::ContainerKey;

/// Containers by when their policy looks at them again.
#[derive(Debug, Default)]
pub(crate) struct IdleTimers {
    due: BTreeMap<(Millis, u64), ContainerKey>,
    next_seq: u64,
}

impl IdleTimers {
    /// Looks at `key` again at `at`.
    pub(crate) fn push(&mut self, at: Millis, key: ContainerKey) {
        self.due.insert((at, self.next_seq), key);
        self.next_seq += 1;
    }

    /// The next container due at or before `now`, if any (its entry is gone).
    pub(crate) fn pop_due(&mut self, now: Millis) -> Option<ContainerKey> {
        let (&(at, _), _) = self.due.first_key_value()?;
        if at > now {
            return None;
        }
        self.due.pop_first().map(|(_, key)| key)
    }

    /// When the next entry falls due.
    pub(crate) fn next(&self) -> Option<Millis> {
        self.due.first_key_value().map(|(&(at, _), _)| at)
    }

    /// Removes `key` for idleness if it is ready and serves nothing, unless its function is
    /// held: then it is looked at again when the hold ends. Returns whether its removal was
    /// asked for.
    pub(crate) fn remove_idle(
        &mut self,
        state: &mut State,
        now: Millis,
        key: ContainerKey,
        out: &mut Vec<Decision>,
    ) -> bool {
        let idle = state.store.container(key).is_some_and(|r| {
            r.container.state == ContainerState::Ready && r.container.in_flight == 0
        });
        if !idle {
            return false;
        }
        if let Some(until) = state.container_held_until(key, now) {
            self.push(until, key);
            return false;
        }
        state.remove_container(key, out)
    }

    /// After the hold on the function named `name` was shortened or ended: looks at each of
    /// its idle containers again at `at(last used)`, or now if that is past.
    pub(crate) fn recheck(
        &mut self,
        state: &State,
        now: Millis,
        name: &str,
        at: impl Fn(Millis) -> Millis,
    ) {
        for key in state.idle_containers(name) {
            if let Some(r) = state.store.container(key) {
                self.push(at(r.container.last_used_at).max(now), key);
            }
        }
    }
}
