//! The policy API for people learning scheduling: a few hooks with sensible defaults.
//!
//! A full [`Policy`](crate::core::Policy) answers eleven kinds of [`Event`](crate::core::Event)
//! and has to keep the shared bookkeeping ([`State`](crate::core::State)) right for each. Most
//! policies only differ in a handful of choices, so this module asks just those:
//!
//! | hook | the question | default |
//! |---|---|---|
//! | [`Hooks::on_miss`] | a request found no warm container: what now? | first fit, else a node |
//! | [`Hooks::can_take`] | may this idle container serve one more call? | yes |
//! | [`Hooks::on_idle`] | a container has nothing to do: keep it, or when to remove it? | keep it |
//! | [`Hooks::on_node_empty`] | a node holds no container any more | keep it |
//! | [`Hooks::on_tick`] | time passed (every [`Hooks::next_wakeup`] and more) | nothing |
//!
//! [`Hooked`] is the one adapter that turns any `Hooks` into a `Policy`: it routes every
//! event, keeps the state, makes a request that missed wait (with its deadline) before it asks
//! [`Hooks::on_miss`], heals after lost nodes, honours holds and runs the idle timers a policy
//! sets with [`Ctx::remove_when_idle`]. A hook sees the world through [`Ctx`]: the time, the
//! state (read-only) and the few decisions it may take.
//!
//! **A miss cannot be forgotten.** [`Hooks::on_miss`] receives a [`Miss`] and must return a
//! [`Handled`]; the only way to get one is to hand the `Miss` to a [`Ctx`] decision (place it,
//! create for it on a node, wait for a reserve, or reject it). A hook that compiles answers
//! every request, and the request already waits with its deadline, so whatever the hook does
//! the caller is answered at the latest at that deadline.
//!
//! The three simplest policies are written this way: [`super::baseline`] (no hook: every
//! default), [`super::keepalive`] (two hooks) and [`super::no_reuse`] (two hooks). A policy
//! of your own is one file and one line in [`super::REGISTRY`]; `docs/WRITING_A_POLICY.md`
//! walks through one, and `scheduler/examples/lru_keepalive.rs` runs it.

mod adapter;
mod ctx;
mod placement;

use crate::model::Millis;
use crate::store::{ContainerKey, NodeKey};

pub use adapter::Hooked;
pub use ctx::Ctx;

/// The choices that make a scheduling policy. Every hook has a default, so the empty
/// implementation is a working policy: the contest's baseline.
pub trait Hooks: std::fmt::Debug + Send + 'static {
    /// The name the policy is registered under (`--policy NAME`).
    fn name(&self) -> &str;

    /// A request found no warm container it could take (see [`Hooks::can_take`]): decide
    /// where its container comes from. The request already waits until its deadline.
    ///
    /// The default is the contest baseline's: [`Ctx::place_first_fit`] (a new container on
    /// the first node with room, else a node reserve that will have room).
    fn on_miss(&mut self, ctx: &mut Ctx<'_>, miss: Miss) -> Handled {
        ctx.place_first_fit(miss)
    }

    /// Whether `container` (ready, of the request's function, with a free slot) may serve
    /// one more call. Answering `false` makes the request a miss. The default: yes.
    fn can_take(&self, ctx: &Ctx<'_>, container: ContainerKey) -> bool {
        let _ = (ctx, container);
        true
    }

    /// `container` has nothing to do: its last call returned, its grant was cancelled, it was
    /// created after its request went away, or it was adopted idle. Keep it (the default: it
    /// stays warm for the next call) or schedule its removal with [`Ctx::remove_when_idle`].
    fn on_idle(&mut self, ctx: &mut Ctx<'_>, container: ContainerKey) {
        let _ = (ctx, container);
    }

    /// `node` holds no container any more (none placed, none being created). Keep it (the
    /// default, as the baseline does) or give it back with [`Ctx::release_node`].
    fn on_node_empty(&mut self, ctx: &mut Ctx<'_>, node: NodeKey) {
        let _ = (ctx, node);
    }

    /// Time passed: called on every tick, after deadlines, healing and idle timers were
    /// applied. Periodic work (prewarming, scaling down) goes here.
    fn on_tick(&mut self, ctx: &mut Ctx<'_>) {
        let _ = ctx;
    }

    /// When the policy wants its next [`Hooks::on_tick`] at the latest, for timers of its own
    /// (deadlines and [`Ctx::remove_when_idle`] timers are already counted).
    fn next_wakeup(&self) -> Option<Millis> {
        None
    }
}

/// A request that needs a container: what [`Hooks::on_miss`] must answer. Not `Clone`, and
/// only a [`Ctx`] decision turns it into the [`Handled`] the hook returns.
#[must_use = "a miss must be answered: pass it to a Ctx decision (place_first_fit, create_on, wait_for_node or reject)"]
#[derive(Debug)]
pub struct Miss {
    request_id: crate::model::Text,
    function: crate::store::FunctionKey,
}

impl Miss {
    /// The request's id.
    pub fn request_id(&self) -> &str {
        &self.request_id
    }

    /// Its function (look it up with `ctx.state().store.function(key)`).
    pub fn function(&self) -> crate::store::FunctionKey {
        self.function
    }
}

/// Proof that a [`Miss`] was answered; only [`Ctx`] makes one.
#[must_use = "return it from on_miss"]
#[derive(Debug)]
pub struct Handled(());
