//! Requests: acquires (granted warm, queued, or refused), returns, freed slots handed to the
//! oldest waiter, and the busy/idle bookkeeping each arrival and return feeds.

use super::{Engine, KeepAlive, MAX_WAITING, MERGE_GAP_MS, keep_for};
use crate::core::{Acquire, AcquireError, AcquireErrorCode, CoreError, Decision, Return};
use crate::model::{MIB, Millis, Text};
use crate::store::{ContainerKey, FunctionKey};

impl Engine {
    pub(super) fn on_acquire(
        &mut self,
        now: Millis,
        a: Acquire,
        out: &mut Vec<Decision>,
    ) -> Result<(), CoreError> {
        let f = self.state.accept_acquire(&a, out)?;
        // A changed spec changes what its containers count.
        self.note_charge(f);
        let per_container = matches!(
            self.knobs.keep_alive,
            KeepAlive::Hybrid {
                per_container: true,
                ..
            }
        );
        self.last_arrival = now;
        self.fd(f).retired = false;
        if self.next_sweep.is_none() {
            self.next_sweep = Some(now + self.knobs.sweep_every_ms);
        }
        let fd = self.fd(f);
        // The function's idle time, if this arrival ends one (for a miss, below).
        let mut fn_gap = 0;
        if fd.idle() {
            if let Some(since) = fd.idle_since.take() {
                let gap = now.saturating_sub(since);
                fn_gap = gap;
                if gap >= MERGE_GAP_MS {
                    if !per_container {
                        fd.hist.record(gap);
                        fd.window = None;
                    }
                    fd.last_peak = fd.peak;
                    fd.peak = 0;
                }
            }
            fd.prewarm_at = None;
        }
        let queued = !fd.queue.is_empty();
        let warm = if queued {
            None
        } else {
            self.state.store.free_container(f)
        };
        let gap = warm
            .and_then(|c| self.state.store.container(c))
            .filter(|r| r.container.in_flight == 0)
            .map_or(0, |r| now.saturating_sub(r.container.last_used_at));
        if let Some(c) = warm
            && self.state.grant(now, a.request_id.clone(), c, false, out)
        {
            let fd = &mut self.fns[f.index() as usize];
            if per_container && gap >= MERGE_GAP_MS {
                fd.hist.record(gap);
                fd.window = None;
            }
            fd.inflight += 1;
            fd.peak = fd.peak.max(fd.inflight);
            if self
                .knobs
                .spare_from_inflight
                .is_some_and(|n| self.fns[f.index() as usize].inflight >= n)
            {
                self.maybe_spare(now, f, out);
            }
            return Ok(());
        }
        // A miss after the window let every container go: per-container idle times only see
        // gaps shorter than the window (right-censored), so the function's idle time is
        // recorded here, where the window was too short.
        if per_container && warm.is_none() && fn_gap >= MERGE_GAP_MS {
            let fd = &mut self.fns[f.index() as usize];
            fd.hist.record(fn_gap);
            fd.window = None;
        }
        if !self.started && self.knobs.initial_nodes > 0 {
            self.started = true;
            let have = self.state.store.node_count() as u32;
            for _ in have..self.knobs.initial_nodes {
                self.state.start_reserve(now, out);
            }
        }
        let memory = a.function.memory_bytes;
        self.largest_function = self.largest_function.max(memory);
        let expected = self.state.expected_node_bytes();
        if memory > expected || self.state.waiting_count() >= MAX_WAITING {
            let message = if memory > expected {
                format!(
                    "function {} needs {} MiB per container, more than a node offers ({} MiB)",
                    a.function.name,
                    memory / MIB,
                    expected / MIB
                )
            } else {
                format!(
                    "{MAX_WAITING} requests already wait for a container; retry later or add capacity"
                )
            };
            let error = AcquireError {
                code: AcquireErrorCode::ResourceExhausted,
                message,
            };
            self.state.reject(a.request_id, error, out);
            return Ok(());
        }
        self.state.wait(now, a.request_id.clone(), f, a.deadline);
        let fd = &mut self.fns[f.index() as usize];
        fd.queue.push_back(a.request_id);
        fd.peak = fd.peak.max(fd.inflight + fd.queue.len() as u32);
        if !fd.starving {
            fd.starving = true;
            self.starving.push(f);
        }
        self.drain(now, f, false, out);
        if !self.fns[f.index() as usize].queue.is_empty() {
            self.pump(now, out);
        }
        Ok(())
    }

    pub(super) fn on_return(
        &mut self,
        now: Millis,
        r: Return,
        out: &mut Vec<Decision>,
    ) -> Result<(), CoreError> {
        let (duration_ns, memory, error) = (r.duration_ns, r.max_memory_bytes, r.error.clone());
        let shared = self
            .state
            .store
            .lease(&r.request_id)
            .and_then(|l| self.state.store.container(l.container))
            .is_some_and(|c| c.container.in_flight > 1);
        let returned = self.state.accept_return(now, r, out)?;
        let Some(f) = returned.function else {
            return Ok(());
        };
        let fd = self.fd(f);
        if !returned.orphan {
            fd.inflight = fd.inflight.saturating_sub(1);
        }
        self.learn_call(
            f,
            duration_ns,
            memory,
            error.as_ref(),
            shared,
            returned.died,
        );
        self.update_limit(f);
        self.drain(now, f, false, out);
        self.check_idle(now, f);
        Ok(())
    }

    pub(super) fn slot_freed(&mut self, now: Millis, c: ContainerKey, out: &mut Vec<Decision>) {
        let Some(f) = self.state.store.container(c).map(|r| r.function) else {
            return;
        };
        let fd = self.fd(f);
        fd.inflight = fd.inflight.saturating_sub(1);
        self.drain(now, f, false, out);
        self.check_idle(now, f);
    }

    /// The oldest request still waiting in `f`'s queue.
    pub(super) fn pop_waiter(&mut self, f: FunctionKey) -> Option<Text> {
        let i = f.index() as usize;
        while let Some(id) = self.fns.get_mut(i)?.queue.pop_front() {
            if self.state.waiter(&id).is_some_and(|w| w.function == f) {
                return Some(id);
            }
        }
        None
    }

    /// Grants free slots of `f`'s containers to its waiting requests, oldest first.
    pub(super) fn drain(
        &mut self,
        now: Millis,
        f: FunctionKey,
        cold: bool,
        out: &mut Vec<Decision>,
    ) {
        let i = f.index() as usize;
        while self.fns.get(i).is_some_and(|fd| !fd.queue.is_empty()) {
            let Some(c) = self.state.store.free_container(f) else {
                break;
            };
            let Some(id) = self.pop_waiter(f) else {
                break;
            };
            let ended = self.state.waits_ended(f);
            if self.state.grant(now, id.clone(), c, cold, out) {
                let fd = &mut self.fns[i];
                // The grant ended the wait of an id no longer in the queue (unless it was in
                // it twice): every id left still waits if they all did.
                if fd.waits_seen == ended && !fd.may_repeat {
                    fd.waits_seen = self.state.waits_ended(f);
                }
                fd.inflight += 1;
                fd.peak = fd.peak.max(fd.inflight + fd.queue.len() as u32);
            } else {
                self.fns[i].queue.push_front(id);
                break;
            }
        }
    }

    pub(super) fn check_idle(&mut self, now: Millis, f: FunctionKey) {
        let i = f.index() as usize;
        let Some(fd) = self.fns.get(i) else {
            return;
        };
        if !fd.idle() || fd.idle_since.is_some() {
            return;
        }
        let lead = self.prewarm_lead_ms();
        let fd = &mut self.fns[i];
        fd.idle_since = Some(now);
        let KeepAlive::Hybrid {
            fallback_ms,
            prewarm_min_ms,
            min_samples,
            unload_grace_ms,
            ..
        } = self.knobs.keep_alive
        else {
            return;
        };
        fd.prewarm_at = None;
        fd.keep_until = 0;
        if fd.retired {
            fd.keep_ms = 0;
            return;
        }
        let window = *fd.window.get_or_insert_with(|| fd.hist.window(min_samples));
        let Some(w) = window else {
            fd.keep_ms = fallback_ms;
            return;
        };
        let keep = keep_for(w, fd.hist.samples(), &self.knobs.keep_alive);
        if w.prewarm_ms >= prewarm_min_ms && w.prewarm_ms > lead + 2 * unload_grace_ms {
            fd.prewarm_at = Some(now + w.prewarm_ms - lead);
            fd.prewarm_count = fd
                .peak
                .max(fd.last_peak)
                .div_ceil(fd.limit.max(1))
                .clamp(1, 32);
            fd.keep_until = now + keep;
            fd.keep_ms = lead + unload_grace_ms;
        } else {
            fd.keep_ms = keep;
        }
    }
}
