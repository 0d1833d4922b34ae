//! [`Hooked`]: the one adapter from [`Hooks`] to [`Policy`]. It routes every [`Event`] once,
//! for every policy written with hooks, and keeps the rules no policy should have to repeat:
//! validation, leases, a missed request waits with its deadline before its hook is asked,
//! healing after lost nodes, holds, and the idle timers.

use super::placement::{create_failed, reject_reserve_waiters};
use super::{Ctx, Hooks, Miss};
use crate::core::{CoreError, Decision, Event, Policy, PolicyOptions, Snapshot, State};
use crate::model::{Millis, NodeState, Text};
use crate::policies::timers::{IdleTimers, is_idle};
use crate::store::{ContainerKey, FunctionKey, NodeKey};

/// A policy made of [`Hooks`].
#[derive(Debug)]
pub struct Hooked<H: Hooks> {
    state: State,
    timers: IdleTimers,
    hooks: H,
}

impl<H: Hooks> Hooked<H> {
    /// The policy with empty tables.
    pub fn new(opts: PolicyOptions, hooks: H) -> Hooked<H> {
        Hooked {
            state: State::new(opts),
            timers: IdleTimers::default(),
            hooks,
        }
    }

    /// The hooks (their own settings and state).
    pub fn hooks(&self) -> &H {
        &self.hooks
    }

    /// Asks the hook where the container of a waiting request comes from.
    fn miss(
        &mut self,
        now: Millis,
        request_id: Text,
        function: FunctionKey,
        out: &mut Vec<Decision>,
    ) {
        let miss = Miss {
            request_id,
            function,
        };
        let mut ctx = Ctx::new(now, &mut self.state, &mut self.timers, out);
        let _handled = self.hooks.on_miss(&mut ctx, miss);
    }

    /// Asks again for a request that still waits but lost what it waited for (a create on a
    /// lost node, a container it could not be granted).
    fn replace(&mut self, now: Millis, request_id: Text, out: &mut Vec<Decision>) {
        if let Some(function) = self.state.waiter(&request_id).map(|w| w.function) {
            self.miss(now, request_id, function, out);
        }
    }

    /// Tells the hook that `container` has nothing to do, if it is ready and serves nothing.
    fn idle(&mut self, now: Millis, container: ContainerKey, out: &mut Vec<Decision>) {
        if is_idle(&self.state, container) {
            let mut ctx = Ctx::new(now, &mut self.state, &mut self.timers, out);
            self.hooks.on_idle(&mut ctx, container);
        }
    }

    /// Tells the hook that `node` is empty, if it is active and holds no container.
    fn maybe_empty(&mut self, now: Millis, node: NodeKey, out: &mut Vec<Decision>) {
        let empty = self.state.store.node(node).is_some_and(|n| {
            n.state == NodeState::Active && n.containers == 0 && n.used_bytes == 0
        });
        if empty {
            let mut ctx = Ctx::new(now, &mut self.state, &mut self.timers, out);
            self.hooks.on_node_empty(&mut ctx, node);
        }
    }

    /// A warm container the hook lets this request take, granted; false for a miss.
    fn take_warm(
        &mut self,
        now: Millis,
        request_id: &Text,
        function: FunctionKey,
        out: &mut Vec<Decision>,
    ) -> bool {
        let Some(container) = self.state.store.free_container(function) else {
            return false;
        };
        let allowed = {
            let ctx = Ctx::new(now, &mut self.state, &mut self.timers, out);
            self.hooks.can_take(&ctx, container)
        };
        allowed
            && self
                .state
                .grant(now, request_id.clone(), container, false, out)
    }
}

impl<H: Hooks> Policy for Hooked<H> {
    fn name(&self) -> &str {
        self.hooks.name()
    }

    fn handle(
        &mut self,
        now: Millis,
        event: Event,
        out: &mut Vec<Decision>,
    ) -> Result<(), CoreError> {
        match event {
            Event::Acquire(acquire) => {
                let function = self.state.accept_acquire(&acquire, out)?;
                if !self.take_warm(now, &acquire.request_id, function, out) {
                    self.state
                        .wait(now, acquire.request_id.clone(), function, acquire.deadline);
                    self.miss(now, acquire.request_id, function, out);
                }
            }
            Event::Return(ret) => {
                let returned = self.state.accept_return(now, ret, out)?;
                if !returned.died {
                    self.idle(now, returned.container, out);
                }
            }
            Event::Cancel { request_id } => {
                if let Some(container) = self.state.cancel(now, &request_id, out) {
                    self.idle(now, container, out);
                }
            }
            Event::NodeReserved { op, node } => {
                let (key, waiters) = self.state.node_reserved(now, op, node)?;
                for request_id in waiters {
                    self.replace(now, request_id, out);
                }
                // Nobody waits for it any more (deadlines passed).
                self.maybe_empty(now, key, out);
            }
            Event::NodeReserveFailed {
                op,
                exhausted,
                message,
            } => {
                let waiters = self.state.reserve_failed(op)?;
                reject_reserve_waiters(&mut self.state, waiters, exhausted, message, out);
            }
            Event::ContainerCreated { op, container_id } => {
                let (container, request) =
                    self.state.container_created(now, op, container_id, 1)?;
                match request {
                    Some(request_id)
                        if self
                            .state
                            .grant(now, request_id.clone(), container, true, out) => {}
                    Some(request_id) => {
                        // Not grantable (an older definition, a node now suspect): the
                        // container is idle and the request asks again.
                        self.idle(now, container, out);
                        self.replace(now, request_id, out);
                    }
                    None => self.idle(now, container, out),
                }
            }
            Event::ContainerCreateFailed {
                op,
                message,
                refused,
            } => {
                let create = create_failed(&mut self.state, op, &message, refused, out)?;
                self.maybe_empty(now, create.node, out);
            }
            Event::ContainerRemoved { container_id } => {
                let node = self
                    .state
                    .store
                    .container_by_id(&container_id)
                    .and_then(|k| self.state.store.container(k))
                    .map(|r| r.node);
                self.state.container_removed(&container_id);
                if let Some(node) = node {
                    self.maybe_empty(now, node, out);
                }
            }
            Event::NodeReleased { node_id } => self.state.node_released(&node_id),
            Event::NodeAdopted {
                node,
                reserved_at,
                containers,
            } => {
                let adopted = self
                    .state
                    .adopt_node(now, node, reserved_at, containers, out)?;
                if let Some((node, containers)) = adopted {
                    // Idle adopted containers are asked about now; busy ones after their calls.
                    for container in containers {
                        self.idle(now, container, out);
                    }
                    self.maybe_empty(now, node, out);
                }
            }
            Event::HoldFunction { function, hold_ms } => {
                if self.state.hold_function(now, function.clone(), hold_ms) {
                    self.timers.recheck(&self.state, now, &function);
                }
            }
            shared @ (Event::RetireFunction { .. }
            | Event::NodeUnreachable { .. }
            | Event::Stats(_)) => self.state.apply_shared(now, shared, out),
            Event::Tick => {
                self.state.expire(now, out);
                let healed = self.state.heal(now, out);
                for (container, _) in healed.freed.into_iter().chain(healed.orphans_ended) {
                    self.idle(now, container, out);
                }
                for request_id in healed.replace {
                    self.replace(now, request_id, out);
                }
                self.timers.fire(&mut self.state, now, out);
                let mut ctx = Ctx::new(now, &mut self.state, &mut self.timers, out);
                self.hooks.on_tick(&mut ctx);
            }
        }
        self.timers.fire(&mut self.state, now, out);
        Ok(())
    }

    fn next_wakeup(&self) -> Option<Millis> {
        [
            self.state.next_deadline(),
            self.timers.next(),
            self.hooks.next_wakeup(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn snapshot(&self) -> Snapshot {
        self.state.snapshot(self.hooks.name())
    }

    fn state(&self) -> &State {
        &self.state
    }

    fn reasons(&mut self) -> Option<&mut crate::core::reasons::Reasons> {
        Some(&mut self.state.reasons)
    }
}
