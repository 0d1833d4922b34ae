//! Learning from calls and stats samples: per-function classes (memory-, CPU-heavy, short),
//! moving averages, and the concurrency limit each function's containers get.

use super::{Concurrency, Engine, ewma};
use crate::core::{Decision, HealthNote};
use crate::model::{FunctionError, MIB, Millis, StatsSample};
use crate::store::FunctionKey;

impl Engine {
    pub(super) fn learn_call(
        &mut self,
        f: FunctionKey,
        duration_ns: u64,
        memory: u64,
        error: Option<&FunctionError>,
        shared: bool,
        died: bool,
    ) {
        let t = self.knobs.thresholds;
        let limit_bytes = self
            .state
            .store
            .function(f)
            .map_or(0, |r| r.spec.memory_bytes);
        let fd = self.fd(f);
        let ms = duration_ns as f64 / 1e6;
        fd.call_memory = fd.call_memory.max(memory);
        if !shared {
            fd.solo_ms = ewma(fd.solo_ms, fd.solo_n, ms);
            fd.solo_n = fd.solo_n.saturating_add(1);
            if ms <= t.short_ms {
                fd.class.short = true;
            }
        }
        if ms > t.long_ms {
            fd.class.short = false;
        }
        if limit_bytes > 0 && memory as f64 >= t.memory_share * limit_bytes as f64 {
            fd.class.memory_heavy = true;
        }
        if let Some(slowdown) = t.slowdown {
            if shared && fd.solo_n > 0 {
                let ratio = ms / fd.solo_ms.max(1.0);
                fd.shared_ratio = ewma(fd.shared_ratio, fd.shared_n, ratio);
                fd.shared_n = fd.shared_n.saturating_add(1);
                if fd.shared_n >= 3 && fd.shared_ratio > slowdown {
                    fd.class.cpu_heavy = true;
                }
            }
            if shared && (error.is_some() || died) {
                let oom = error.is_some_and(|e| {
                    let c = e.code.to_ascii_lowercase();
                    c.contains("memory") || c.contains("oom")
                });
                if oom {
                    fd.class.memory_heavy = true;
                } else {
                    fd.class.cpu_heavy = true;
                }
            }
        }
        if died
            && error.is_some_and(|e| {
                let c = e.code.to_ascii_lowercase();
                c.contains("memory") || c.contains("oom")
            })
        {
            fd.class.memory_heavy = true;
        }
    }

    pub(super) fn on_stats(&mut self, now: Millis, sample: StatsSample, out: &mut Vec<Decision>) {
        let t = self.knobs.thresholds;
        let per_call = matches!(self.knobs.concurrency, Concurrency::Learned { .. });
        let mut touched = Vec::new();
        for u in &sample.containers {
            let Some(row) = self
                .state
                .store
                .container_by_id(&u.container_id)
                .and_then(|k| self.state.store.container(k))
            else {
                continue;
            };
            let (f, memory, in_flight) = (
                row.function,
                row.container.memory_bytes,
                row.container.in_flight,
            );
            let share = if per_call { in_flight.max(1) } else { 1 } as f64;
            let quota_pct = memory as f64 / (1024.0 * MIB as f64) * 0.67 * 100.0;
            let cpu = u.cpu_pct / share;
            let fd = self.fd(f);
            if memory > 0 && u.memory_usage_bytes as f64 / share >= t.memory_share * memory as f64 {
                fd.class.memory_heavy = true;
            }
            let cpu_limit = match t.cpu_quota_share {
                Some(s) => t.cpu_pct.min(s * quota_pct),
                None => t.cpu_pct,
            };
            if cpu >= cpu_limit {
                fd.class.cpu_heavy = true;
            }
            if per_call {
                fd.call_memory = fd
                    .call_memory
                    .max(u.memory_usage_bytes / in_flight.max(1) as u64);
            }
            touched.push(f);
        }
        let before = out.len();
        self.state.apply_stats(now, sample, out);
        let lost = out[before..]
            .iter()
            .any(|d| matches!(d, Decision::Health(HealthNote::ContainerLost { .. })));
        if lost && !self.starving.is_empty() {
            self.pump(now, out);
        }
        touched.dedup();
        for &f in &touched {
            self.note_charge(f);
        }
        for f in touched {
            self.update_limit(f);
            self.drain(now, f, false, out);
        }
    }

    /// The concurrency limit `f` should have now.
    pub(super) fn wanted_limit(&self, f: FunctionKey) -> u32 {
        let (Some(fd), Some(row)) = (
            self.fns.get(f.index() as usize),
            self.state.store.function(f),
        ) else {
            return 1;
        };
        if fd.class.heavy() {
            return 1;
        }
        match self.knobs.concurrency {
            Concurrency::Czy { share_from, share } => {
                if row.containers + row.creating >= share_from {
                    share
                } else {
                    1
                }
            }
            Concurrency::Learned {
                max_share,
                min_calls,
            } => {
                if row.profile.calls < min_calls {
                    return 1;
                }
                let per_call = fd.call_memory.max(MIB);
                let by_memory = (row.spec.memory_bytes as f64 * 0.7 / per_call as f64) as u32;
                by_memory.clamp(1, max_share.max(1))
            }
        }
    }

    /// Applies a changed concurrency limit to the function and its containers.
    pub(super) fn update_limit(&mut self, f: FunctionKey) {
        // Returns and stats that may change the limit may change the charge too.
        self.note_charge(f);
        let want = self.wanted_limit(f);
        let fd = self.fd(f);
        if fd.limit == want {
            return;
        }
        fd.limit = want;
        // In key order, as a scan of the containers table would visit them.
        for k in self.state.store.containers_of(f) {
            self.state
                .store
                .update_container(k, |c| c.max_concurrency = want);
        }
        self.note_charge(f);
    }
}
