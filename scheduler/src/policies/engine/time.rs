//! Time-driven work: adopting nodes after a restart, healing (lost nodes, dead containers),
//! the tick and the keep-alive sweep.

use super::{Engine, KeepAlive, keep_for};
use crate::core::reasons::{self, ReasonKind};
use crate::core::{CoreError, Decision};
use crate::model::{Millis, Text};
use crate::store::{ContainerKey, FunctionKey};

impl Engine {
    /// Takes over a node after a restart: its containers get their function's concurrency
    /// and serve the waiting requests.
    pub(super) fn on_adopted(
        &mut self,
        now: Millis,
        node: crate::model::NodeInfo,
        reserved_at: Millis,
        containers: Vec<crate::model::AdoptedContainer>,
        out: &mut Vec<Decision>,
    ) -> Result<(), CoreError> {
        let Some((_, adopted)) = self
            .state
            .adopt_node(now, node, reserved_at, containers, out)?
        else {
            return Ok(());
        };
        let mut functions = Vec::new();
        for c in adopted {
            let Some(f) = self.state.store.container(c).map(|r| r.function) else {
                continue;
            };
            let limit = self.fd(f).limit;
            self.state
                .store
                .update_container(c, |c| c.max_concurrency = limit);
            functions.push(f);
        }
        functions.dedup();
        for &f in &functions {
            self.note_charge(f);
        }
        for f in functions {
            self.drain(now, f, false, out);
            self.check_idle(now, f);
        }
        self.last_node_change = now;
        if !self.starving.is_empty() {
            self.pump(now, out);
        }
        Ok(())
    }

    /// Puts a request that still waits back at the front of its function's queue.
    pub(super) fn requeue(&mut self, f: FunctionKey, request_id: Text) {
        let fd = self.fd(f);
        fd.queue.push_front(request_id);
        fd.may_repeat = true;
        if !fd.starving {
            fd.starving = true;
            self.starving.push(f);
        }
    }

    /// Acts on what [`State::heal`] found: reclaimed slots serve waiting requests, requests
    /// that waited on lost nodes wait on (placed again by the pump).
    pub(super) fn heal(&mut self, now: Millis, out: &mut Vec<Decision>) {
        let healed = self.state.heal(now, out);
        if healed.is_empty() {
            return;
        }
        for (_, f) in healed.freed {
            let fd = self.fd(f);
            fd.inflight = fd.inflight.saturating_sub(1);
            self.drain(now, f, false, out);
            self.check_idle(now, f);
        }
        for (_, f) in healed.orphans_ended {
            self.drain(now, f, false, out);
        }
        for request_id in healed.replace.into_iter().rev() {
            if let Some(f) = self.state.waiter(&request_id).map(|w| w.function) {
                self.requeue(f, request_id);
            }
        }
        if !healed.lost.is_empty() {
            for key in &healed.lost {
                self.node_empty_since.remove(key);
            }
            let state = &self.state;
            self.replacing.retain(|op, _| state.op(*op).is_some());
            self.last_node_change = now;
        }
        if !self.starving.is_empty() {
            self.pump(now, out);
        }
    }

    pub(super) fn on_tick(&mut self, now: Millis, out: &mut Vec<Decision>) {
        self.state.expire(now, out);
        self.heal(now, out);
        if self.next_sweep.is_some_and(|s| s <= now) {
            self.sweep(now, out);
            self.next_sweep = Some(now + self.knobs.sweep_every_ms.max(1));
        }
        let retry = self.reserve_retry_at.is_some_and(|t| t <= now);
        if retry {
            self.reserve_retry_at = None;
        }
        let poke = self.pump_at.is_some_and(|t| t <= now);
        if poke {
            self.pump_at = None;
        }
        if (retry || poke) && !self.starving.is_empty() {
            self.pump(now, out);
        }
    }

    /// Keep-alive expiry, pre-warm, headroom and node release.
    ///
    /// Expiry walks the store's idle index (least recently used first, ties by key) only as
    /// far as the shortest window any rule applies; ready counts per function come from the
    /// store. Per sweep that is O(functions + nodes + containers due), not a scan and sort of
    /// the platform's containers.
    pub(super) fn sweep(&mut self, now: Millis, out: &mut Vec<Decision>) {
        let lead = self.prewarm_lead_ms();
        if let KeepAlive::Hybrid {
            fallback_ms,
            min_samples,
            ..
        } = self.knobs.keep_alive
        {
            let knobs = self.knobs.keep_alive;
            // Functions that never went idle still need a window for their spare containers.
            for fd in &mut self.fns {
                if fd.prewarm_at.is_none() && (fd.window.is_none() || fd.keep_ms == Millis::MAX) {
                    let window = *fd.window.get_or_insert_with(|| fd.hist.window(min_samples));
                    let samples = fd.hist.samples();
                    fd.keep_ms = window.map_or(fallback_ms, |w| keep_for(w, samples, &knobs));
                }
            }
        }
        let extra_keep = self.extra_keep_ms();
        // No rule removes a container idle less than this: the LRU walk stops there, so it
        // visits only the containers whose idle time may have expired.
        let min_idle = match self.knobs.keep_alive {
            KeepAlive::Fixed { idle_ms, .. } => idle_ms,
            KeepAlive::Hybrid {
                unload_grace_ms, ..
            } => {
                let keep = self
                    .fns
                    .iter()
                    .filter(|fd| now >= fd.keep_until)
                    .map(|fd| fd.keep_ms);
                let unload = self
                    .fns
                    .iter()
                    .any(|fd| fd.prewarm_at.is_some())
                    .then_some(unload_grace_ms);
                keep.chain(extra_keep.iter().copied())
                    .chain(unload)
                    .min()
                    .unwrap_or(Millis::MAX)
            }
        };
        let idle: Vec<(Millis, ContainerKey)> = self
            .state
            .store
            .idle_lru()
            .take_while(|(t, _)| now.saturating_sub(*t) >= min_idle)
            .collect();
        for (last_used, key) in idle {
            let Some(f) = self.state.store.container(key).map(|r| r.function) else {
                continue;
            };
            let idle_ms = now.saturating_sub(last_used);
            let Some(fd) = self.fns.get(f.index() as usize) else {
                continue;
            };
            // Ready containers of the function now (removals of this sweep already count).
            let ready = self.state.store.ready_count(f);
            let remove = match self.knobs.keep_alive {
                KeepAlive::Fixed {
                    idle_ms: max,
                    keep_one,
                } => idle_ms >= max && (!keep_one || ready > 1),
                KeepAlive::Hybrid {
                    unload_grace_ms, ..
                } => {
                    let unload = fd.idle()
                        && idle_ms >= unload_grace_ms
                        && fd.prewarm_at.is_some_and(|p| p > now + lead);
                    let extra = ready > 1
                        && extra_keep
                            .get(f.index() as usize)
                            .is_some_and(|&k| idle_ms >= k);
                    unload || extra || (idle_ms >= fd.keep_ms && now >= fd.keep_until)
                }
            };
            if remove && !self.state.held(f, now) {
                self.state.reasons.because(ReasonKind::Remove, || {
                    format!(
                        "removed: idle {} past what its function's keep-alive allows",
                        reasons::duration(idle_ms)
                    )
                });
                self.state.remove_container(key, out);
            }
        }
        self.prewarm(now, out);
        if self.knobs.consolidate_after_ms.is_some() {
            self.consolidate(now, out);
        }
        let view = self.view();
        if self.knobs.headroom {
            self.keep_headroom(now, &view, out);
        }
        self.release_empty_nodes(now, &view, out);
        self.put_view(view);
    }
}
