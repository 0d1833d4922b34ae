//! Holds: keeping a function's idle containers warm past its policy's keep-alive.
//!
//! The API server moves an alias from one version of a function to another and then holds
//! the version it moved away from (`faas.scheduler.v1.SchedulerAdmin/HoldFunction`, arriving
//! as [`Event::HoldFunction`]), so that a rollback within the grace period finds that
//! version's containers warm instead of paying a cold start on every one of them.
//!
//! The rules, the same for every policy:
//!
//! - A hold is recorded **by function name** with the time it ends, `now + hold_ms`. The
//!   function need not be known yet: containers created later are held too, until it ends.
//! - A later hold **replaces** the earlier one (shorter or longer); `hold_ms` 0 ends it.
//! - While a function is held, **no policy removes an idle container of it for idleness**:
//!   not a keep-alive window (`keepalive-10m`, `czy`, `adaptive`'s histogram window), not
//!   `adaptive`'s unload after the execution or its short-lived spares, not `no-reuse`'s
//!   removal on return. A policy asks [`State::held_until`] (or [`State::held`]) at the moment
//!   it would remove a container for idleness and, if held, looks at it again when the hold
//!   ends; the container goes then if its own rule still says so.
//! - Everything else still removes held containers: memory pressure (an eviction that makes
//!   room for another function's container, consolidation of `adaptive-packed`) and the
//!   health rules (lost nodes, dead containers, a retired function or definition).
//!
//! Holds are few (one per alias move) and short-lived, so they are a small map; ended ones
//! are pruned when a hold is taken and on every tick ([`State::heal`]), and a query never
//! depends on the pruning (it compares with `now`).
//!
//! [`Event::HoldFunction`]: crate::core::Event::HoldFunction

use super::State;
use crate::model::{Millis, Text};
use crate::store::{ContainerKey, FunctionKey, Map};

/// The longest hold the gRPC edge accepts: 24 h. A caller that needs longer holds again.
pub const MAX_HOLD_MS: Millis = 24 * 3600 * 1000;

/// The holds in force: function name → when the hold ends (scheduler clock).
pub(super) type Holds = Map<Text, Millis>;

impl State {
    /// Holds the function named `name` for `hold_ms` from `now` (replacing any earlier hold),
    /// or ends its hold when `hold_ms` is 0. Returns whether a hold in force now ends sooner
    /// than before (shortened or ended): a policy that planned to look at the function's idle
    /// containers when the old hold ends should look at them again now.
    pub fn hold_function(&mut self, now: Millis, name: Text, hold_ms: Millis) -> bool {
        self.observe(now);
        self.prune_holds(now);
        let before = self.holds.remove(&name);
        let until = (hold_ms > 0).then(|| now.saturating_add(hold_ms));
        if let Some(until) = until {
            self.holds.insert(name, until);
        }
        before.is_some_and(|b| until.is_none_or(|u| u < b))
    }

    /// When the hold on `function` ends, if it is held at `now`.
    pub fn held_until(&self, function: FunctionKey, now: Millis) -> Option<Millis> {
        if self.holds.is_empty() {
            return None;
        }
        let name = &self.store.function(function)?.spec.name;
        self.holds.get(name).copied().filter(|&until| until > now)
    }

    /// Whether `function` is held at `now`: its idle containers are not removed for idleness.
    pub fn held(&self, function: FunctionKey, now: Millis) -> bool {
        self.held_until(function, now).is_some()
    }

    /// When the hold on `container`'s function ends, if it is held at `now`.
    pub fn container_held_until(&self, container: ContainerKey, now: Millis) -> Option<Millis> {
        if self.holds.is_empty() {
            return None;
        }
        self.held_until(self.store.container(container)?.function, now)
    }

    /// The ready containers (busy or idle) of the function named `name`.
    pub fn ready_containers(&self, name: &str) -> u32 {
        self.ready_of(name).count() as u32
    }

    /// The ready containers of the function named `name` that serve no call, in key order
    /// (for a policy to look at again when its hold changes).
    pub fn idle_containers(&self, name: &str) -> Vec<ContainerKey> {
        let mut idle: Vec<ContainerKey> = self
            .ready_of(name)
            .filter(|(_, in_flight)| *in_flight == 0)
            .map(|(k, _)| k)
            .collect();
        idle.sort_unstable_by_key(|k| k.index());
        idle
    }

    /// The ready containers of `name` with their calls in flight (the store's per-function
    /// index: no scan over the platform's containers).
    fn ready_of(&self, name: &str) -> impl Iterator<Item = (ContainerKey, u32)> + '_ {
        let function = self.store.function_by_name(name);
        function
            .into_iter()
            .flat_map(|f| self.store.ready_lru_of(f))
            .filter_map(|(_, k)| Some((k, self.store.container(k)?.container.in_flight)))
    }

    /// Forgets the holds that ended at or before `now`.
    pub(super) fn prune_holds(&mut self, now: Millis) {
        if !self.holds.is_empty() {
            self.holds.retain(|_, until| *until > now);
        }
    }

    /// Holds in force (ended ones may linger until pruned).
    pub fn hold_count(&self) -> usize {
        self.holds.len()
    }
}

#[cfg(test)]
mod tests {
    use crate::core::{Acquire, PolicyOptions, State};
    use crate::model::{FunctionSpec, MIB};

    fn state_with(name: &str) -> (State, crate::store::FunctionKey) {
        let mut s = State::new(PolicyOptions::default());
        let acquire = Acquire {
            request_id: "r1".into(),
            account_id: "a".into(),
            function: FunctionSpec {
                name: name.into(),
                memory_bytes: 128 * MIB,
                timeout_ms: 1000,
                handler: "hello".into(),
            },
            deadline: 1000,
        };
        let key = s.accept_acquire(&acquire, &mut Vec::new()).unwrap();
        (s, key)
    }

    #[test]
    fn a_hold_lasts_until_its_end_and_a_later_one_replaces_it() {
        let (mut s, f) = state_with("f");
        assert!(!s.held(f, 0));
        assert!(
            !s.hold_function(100, "f".into(), 1_000),
            "nothing shortened"
        );
        assert_eq!(s.held_until(f, 100), Some(1_100));
        assert!(s.held(f, 1_099));
        assert!(!s.held(f, 1_100), "ends at now + hold_ms");
        // Shorter and longer holds replace it; a shorter one says so.
        assert!(s.hold_function(200, "f".into(), 50), "1_100 → 250");
        assert_eq!(s.held_until(f, 200), Some(250));
        assert!(!s.hold_function(210, "f".into(), 5_000), "250 → 5_210");
        assert_eq!(s.held_until(f, 300), Some(5_210));
        // 0 ends it (and says so); ending no hold changes nothing.
        assert!(s.hold_function(400, "f".into(), 0));
        assert!(!s.held(f, 400));
        assert_eq!(s.hold_count(), 0);
        assert!(!s.hold_function(500, "f".into(), 0));
        // A hold that already ended is not shortened by a new one.
        s.hold_function(600, "f".into(), 10);
        assert!(!s.hold_function(700, "f".into(), 5));
    }

    #[test]
    fn a_hold_of_an_unknown_function_applies_once_it_is_known_and_ended_ones_are_pruned() {
        let (mut s, f) = state_with("f");
        s.hold_function(0, "later".into(), 1_000);
        s.hold_function(0, "f".into(), 10);
        assert!(!s.held(f, 10));
        assert_eq!(s.hold_count(), 2);
        let acquire = Acquire {
            request_id: "r2".into(),
            account_id: "a".into(),
            function: FunctionSpec {
                name: "later".into(),
                ..s.store.function(f).unwrap().spec.clone()
            },
            deadline: 1000,
        };
        let later = s.accept_acquire(&acquire, &mut Vec::new()).unwrap();
        assert_eq!(s.held_until(later, 20), Some(1_000));
        assert!(s.heal(20, &mut Vec::new()).is_empty());
        assert_eq!(s.hold_count(), 1, "f's ended hold is pruned on a tick");
        assert!(s.heal(1_000, &mut Vec::new()).is_empty());
        assert_eq!(s.hold_count(), 0);
        assert_eq!(s.ready_containers("later"), 0);
        assert!(s.idle_containers("never-seen").is_empty());
    }
}
