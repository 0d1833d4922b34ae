//! `size-aware`: the policy `docs/WRITING_A_POLICY.md` builds from an empty file.
//!
//! An idle container is kept for a window that shrinks with its memory: a 128 MiB container
//! costs a node a twenty-fourth of what a 3 GiB one does while it waits, so it may wait
//! longer for its next call (a 512 MiB one waits [`WINDOW_512_MS`], within 30 s to 20 min).
//! Empty nodes go back at once. Everything else (placement, failures, healing, holds) is the
//! defaults of [`Hooks`]. `cargo run --release -p faas-scheduler --example size_aware`
//! measures it in virtual time against `baseline` and `keepalive-10m`.

use super::hooks::{Ctx, Hooked, Hooks};
use crate::core::PolicyOptions;
use crate::model::{MIB, Millis};
use crate::store::{ContainerKey, NodeKey};

/// The name the policy is registered under.
pub const NAME: &str = "size-aware";

/// The idle window of a 512 MiB container: one minute.
pub const WINDOW_512_MS: Millis = 60_000;

/// Keep small containers longer than large ones; release empty nodes.
#[derive(Debug)]
pub struct SizeAware {
    /// The window of a 512 MiB container, ms.
    pub window_512_ms: Millis,
}

impl Hooks for SizeAware {
    fn name(&self) -> &str {
        NAME
    }

    fn on_idle(&mut self, ctx: &mut Ctx<'_>, container: ContainerKey) {
        let memory = ctx
            .state()
            .store
            .container(container)
            .and_then(|row| ctx.function(row.function))
            .map_or(512 * MIB, |f| f.memory_bytes.max(MIB));
        let window = (self.window_512_ms * 512 * MIB / memory).clamp(30_000, 20 * 60_000);
        ctx.remove_when_idle(container, window);
    }

    fn on_node_empty(&mut self, ctx: &mut Ctx<'_>, node: NodeKey) {
        ctx.release_node(node);
    }
}

impl SizeAware {
    /// The policy with the one-minute window for 512 MiB ([`WINDOW_512_MS`]).
    pub fn policy(opts: PolicyOptions) -> Hooked<SizeAware> {
        Hooked::new(
            opts,
            SizeAware {
                window_512_ms: WINDOW_512_MS,
            },
        )
    }
}
