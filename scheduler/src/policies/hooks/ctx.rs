//! [`Ctx`]: what a hook sees and may do. The time, the shared state (read-only), and a short
//! list of decisions; each decision keeps the state's books and appends what the platform must
//! carry out.

use super::placement::{place_first_fit, wait_for_node};
use super::{Handled, Miss};
use crate::core::{AcquireError, Decision, State};
use crate::model::{FunctionSpec, Millis, NodeState};
use crate::policies::timers::IdleTimers;
use crate::store::{ContainerKey, FunctionKey, NodeKey};

/// A hook's view of the scheduler at one instant.
#[derive(Debug)]
pub struct Ctx<'a> {
    now: Millis,
    state: &'a mut State,
    timers: &'a mut IdleTimers,
    out: &'a mut Vec<Decision>,
}

impl<'a> Ctx<'a> {
    pub(super) fn new(
        now: Millis,
        state: &'a mut State,
        timers: &'a mut IdleTimers,
        out: &'a mut Vec<Decision>,
    ) -> Ctx<'a> {
        Ctx {
            now,
            state,
            timers,
            out,
        }
    }

    /// Now, in the scheduler's milliseconds (virtual in the simulator).
    pub fn now(&self) -> Millis {
        self.now
    }

    /// The shared bookkeeping: `state().store` has the functions, nodes and containers with
    /// their indexes; `state().first_fit(bytes)` finds a node with room.
    pub fn state(&self) -> &State {
        self.state
    }

    /// The definition of a function.
    pub fn function(&self, key: FunctionKey) -> Option<&FunctionSpec> {
        self.state.store.function(key).map(|f| &f.spec)
    }

    // ---- answers to a miss ----

    /// The baseline's answer: a new container on the first node with room, else wait for a
    /// node reserve that will have room (joining one in flight, or asking for one). A
    /// function larger than a node is rejected (`RESOURCE_EXHAUSTED`).
    pub fn place_first_fit(&mut self, miss: Miss) -> Handled {
        let Miss {
            request_id,
            function,
        } = miss;
        place_first_fit(self.state, self.now, request_id, function, self.out);
        Handled(())
    }

    /// A new container on `node`, granted to the request once created. A node without room
    /// for it (or unknown) falls back to [`Ctx::place_first_fit`].
    pub fn create_on(&mut self, miss: Miss, node: NodeKey) -> Handled {
        if !self.has_room(node, miss.function) {
            return self.place_first_fit(miss);
        }
        self.state.start_create(
            self.now,
            node,
            miss.function,
            Some(miss.request_id),
            self.out,
        );
        Handled(())
    }

    /// Wait for a node: join a reserve in flight that will have room, or ask for one. The
    /// request is placed first fit when the node arrives.
    pub fn wait_for_node(&mut self, miss: Miss) -> Handled {
        let memory = self.function(miss.function).map_or(0, |f| f.memory_bytes);
        wait_for_node(self.state, self.now, &miss.request_id, memory, self.out);
        Handled(())
    }

    /// Answer the request with an error now.
    pub fn reject(&mut self, miss: Miss, error: AcquireError) -> Handled {
        self.state.reject(miss.request_id, error, self.out);
        Handled(())
    }

    // ---- containers and nodes ----

    /// Remove `container` once it has been idle for `idle_ms` (0: now). Used again before,
    /// it stays (and [`super::Hooks::on_idle`] is asked again when it next goes idle); a hold
    /// on its function defers the removal to the hold's end.
    pub fn remove_when_idle(&mut self, container: ContainerKey, idle_ms: Millis) {
        self.timers
            .remove_after(self.state, container, idle_ms, self.now);
    }

    /// Start a container of `function` on `node` for no request (prewarming): it goes idle
    /// once created, and [`super::Hooks::on_idle`] decides its fate. False if `node` has no
    /// room for it.
    pub fn prewarm(&mut self, function: FunctionKey, node: NodeKey) -> bool {
        self.has_room(node, function)
            && self
                .state
                .start_create(self.now, node, function, None, self.out)
                .is_some()
    }

    /// Whether `node` is active, trusted and has room for a container of `function`.
    fn has_room(&self, node: NodeKey, function: FunctionKey) -> bool {
        let memory = self.function(function).map_or(u64::MAX, |f| f.memory_bytes);
        self.state.store.node(node).is_some_and(|n| {
            n.state == NodeState::Active && n.suspect_since.is_none() && n.free_bytes() >= memory
        })
    }

    /// Give `node` back to the resource manager (no container goes there any more). False if
    /// it is already being released or unknown.
    pub fn release_node(&mut self, node: NodeKey) -> bool {
        self.state.release_node(node, self.out)
    }
}
