//! Idle-container timers: when a hooked policy (see [`super::hooks`]) looks at an idle
//! container again to remove it (`keepalive-10m` at the end of its window, `no-reuse` at
//! once).
//!
//! Each entry carries the idle time it waits for (the window). Entries are by time (ties by
//! arrival) and go stale freely: a container used again, removed or forgotten since is simply
//! skipped when its entry falls due, so a policy never has to find and cancel one.
//! [`IdleTimers::fire`] is where the removal for idleness happens, and where a hold (see
//! [`crate::core::state::hold`]) defers it: a container of a held function gets a new entry
//! at the hold's end instead.

use crate::core::reasons::{self, ReasonKind};
use std::collections::BTreeMap;

use crate::core::{Decision, State};
use crate::model::{ContainerState, Millis};
use crate::store::{ContainerKey, Map};

/// Containers by when their policy looks at them again.
#[derive(Debug, Default)]
pub(crate) struct IdleTimers {
    /// (due, arrival) → (container, window).
    due: BTreeMap<(Millis, u64), (ContainerKey, Millis)>,
    /// The latest window asked for each container with an entry (to look again after a hold
    /// is shortened or ended).
    windows: Map<ContainerKey, Millis>,
    next_seq: u64,
}

/// Whether a container is ready and serves nothing.
pub(crate) fn is_idle(state: &State, key: ContainerKey) -> bool {
    state
        .store
        .container(key)
        .is_some_and(|r| r.container.state == ContainerState::Ready && r.container.in_flight == 0)
}

impl IdleTimers {
    /// Removes `key` once it has been idle for `window` (counted from its last use).
    pub(crate) fn remove_after(
        &mut self,
        state: &State,
        key: ContainerKey,
        window: Millis,
        now: Millis,
    ) {
        let last_used = state
            .store
            .container(key)
            .map_or(now, |r| r.container.last_used_at);
        self.push(last_used.saturating_add(window).max(now), key, window);
    }

    fn push(&mut self, at: Millis, key: ContainerKey, window: Millis) {
        self.due.insert((at, self.next_seq), (key, window));
        self.windows.insert(key, window);
        self.next_seq += 1;
    }

    /// When the next entry falls due.
    pub(crate) fn next(&self) -> Option<Millis> {
        self.due.first_key_value().map(|(&(at, _), _)| at)
    }

    /// Applies every entry due at `now`: a container idle for its whole window is removed,
    /// unless its function is held (then it is looked at again when the hold ends).
    pub(crate) fn fire(&mut self, state: &mut State, now: Millis, out: &mut Vec<Decision>) {
        while let Some((&(at, _), _)) = self.due.first_key_value() {
            if at > now {
                return;
            }
            let Some((_, (key, window))) = self.due.pop_first() else {
                return;
            };
            let expired = state
                .store
                .container(key)
                .is_some_and(|r| r.container.last_used_at.saturating_add(window) <= now);
            if !expired || !is_idle(state, key) {
                // Used again since (a new entry comes with its next idle time) or gone.
                if state.store.container(key).is_none() {
                    self.windows.remove(&key);
                }
                continue;
            }
            if let Some(until) = state.container_held_until(key, now) {
                self.push(until, key, window);
                continue;
            }
            self.windows.remove(&key);
            let last_used = state
                .store
                .container(key)
                .map_or(now, |r| r.container.last_used_at);
            state.reasons.because(ReasonKind::Remove, || {
                format!(
                    "removed: idle {} >= keep-alive {}",
                    reasons::duration(now.saturating_sub(last_used)),
                    reasons::duration(window)
                )
            });
            state.remove_container(key, out);
        }
    }

    /// After the hold on the function named `name` was shortened or ended: looks at each of
    /// its idle containers with a timer again at the end of its window (or now, if past).
    pub(crate) fn recheck(&mut self, state: &State, now: Millis, name: &str) {
        for key in state.idle_containers(name) {
            if let Some(&window) = self.windows.get(&key) {
                self.remove_after(state, key, window, now);
            }
        }
    }
}
