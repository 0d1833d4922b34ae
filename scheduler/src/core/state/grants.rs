//! Acquires and grants: validating an acquire, granting a container (cold or warm), waiting
//! requests with their deadlines, refusals, expiry and cancellation.

use super::{Op, State, Waiter};
use crate::core::{Acquire, AcquireError, AcquireErrorCode, CoreError, Decision, Grant};
use crate::model::{Lease, Millis, Text};
use crate::store::{ContainerKey, FunctionKey, LeaseRow};

impl State {
    /// Validates an acquire and registers its function. Fails (changing nothing) for a
    /// request id that is waiting or leased, or an unusable function. A changed definition
    /// of a known function retires the containers of the old one (see
    /// `State::retire_definition`).
    pub fn accept_acquire(
        &mut self,
        acquire: &Acquire,
        out: &mut Vec<Decision>,
    ) -> Result<FunctionKey, CoreError> {
        let spec = &acquire.function;
        if spec.memory_bytes == 0 {
            return Err(CoreError::InvalidFunction {
                name: spec.name.clone(),
                reason: "memory must be more than 0 bytes".into(),
            });
        }
        if spec.name.is_empty() {
            return Err(CoreError::InvalidFunction {
                name: spec.name.clone(),
                reason: "the name is empty".into(),
            });
        }
        if self.store.lease(&acquire.request_id).is_some()
            || self.waiting.contains_key(&acquire.request_id)
        {
            return Err(CoreError::AlreadyExists {
                request_id: acquire.request_id.clone(),
            });
        }
        self.counters.acquires += 1;
        let changed = self
            .store
            .function_by_name(&spec.name)
            .and_then(|k| self.store.function(k))
            .is_some_and(|f| f.spec != *spec);
        let key = self.store.upsert_function(spec);
        if changed {
            self.retire_definition(key, out);
        }
        Ok(key)
    }

    /// Grants `container` to `request_id` (taking one of its slots), ending the request's wait
    /// if it waited. Returns false (and grants nothing) if the container has no free slot.
    pub fn grant(
        &mut self,
        now: Millis,
        request_id: Text,
        container: ContainerKey,
        cold: bool,
        out: &mut Vec<Decision>,
    ) -> bool {
        self.observe(now);
        if !self.store.take_slot(container, now) {
            return false;
        }
        let Some(row) = self.store.container(container) else {
            return false;
        };
        let Some(node) = self.store.node(row.node) else {
            // A container without its node is impossible by construction; undo and refuse.
            self.store.release_slot(container, now);
            return false;
        };
        let timeout_ms = self
            .store
            .function(row.function)
            .map_or(0, |f| f.spec.timeout_ms);
        let expires_at = now
            .saturating_add(timeout_ms)
            .saturating_add(self.opts.lease_grace_ms);
        let grant = Grant {
            request_id: request_id.clone(),
            container_id: row.container.id.clone(),
            node_id: node.id.clone(),
            node_address: node.address.clone(),
            node_port: node.port,
            cold,
        };
        self.end_wait(&request_id);
        let lease = LeaseRow {
            lease: Lease {
                request_id,
                container_id: grant.container_id.clone(),
                started_at: now,
                cold,
                expires_at,
            },
            container,
        };
        if self.store.insert_lease(lease).is_err() {
            // accept_acquire refuses ids that are leased, so this cannot happen; stay safe.
            self.store.release_slot(container, now);
            return false;
        }
        self.lease_expiry
            .insert((expires_at, grant.request_id.clone()));
        if cold {
            self.counters.cold_starts += 1;
        } else {
            self.counters.warm_hits += 1;
        }
        out.push(Decision::Grant(grant));
        self.reasons.explain(None, out.len() - 1, || {
            let Some(Decision::Grant(g)) = out.last() else {
                return String::new();
            };
            if g.cold {
                format!(
                    "cold start: container {} on {} was created for it",
                    g.container_id, g.node_id
                )
            } else {
                format!(
                    "warm: reused idle container {} on {}",
                    g.container_id, g.node_id
                )
            }
        });
        true
    }

    /// Grants the most recently freed container of `function`, if one has a free slot.
    pub fn grant_warm(
        &mut self,
        now: Millis,
        request_id: &Text,
        function: FunctionKey,
        out: &mut Vec<Decision>,
    ) -> bool {
        match self.store.free_container(function) {
            Some(c) => self.grant(now, request_id.clone(), c, false, out),
            None => false,
        }
    }

    /// Makes a request wait (until `deadline`) for a container of `function`.
    pub fn wait(&mut self, now: Millis, request_id: Text, function: FunctionKey, deadline: Millis) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.deadlines.insert((deadline, seq), request_id.clone());
        let replaced = self.waiting.insert(
            request_id,
            Waiter {
                function,
                since: now,
                deadline,
                bound: None,
                seq,
            },
        );
        if let Some(old) = replaced {
            self.wait_ended(old.function);
        }
    }

    /// How many waits of `function` have ended (granted, refused, cancelled, expired or
    /// replaced): a policy that keeps its own queues of waiting ids knows none of them went
    /// stale while this stays the same.
    pub fn waits_ended(&self, function: FunctionKey) -> u64 {
        self.waits_ended
            .get(function.index() as usize)
            .copied()
            .unwrap_or(0)
    }

    fn wait_ended(&mut self, function: FunctionKey) {
        let i = function.index() as usize;
        if i >= self.waits_ended.len() {
            self.waits_ended.resize(i + 1, 0);
        }
        self.waits_ended[i] += 1;
    }

    /// The waiting request, if it waits.
    pub fn waiter(&self, request_id: &str) -> Option<&Waiter> {
        self.waiting.get(request_id)
    }

    /// Requests waiting.
    pub fn waiting_count(&self) -> usize {
        self.waiting.len()
    }

    /// Answers a request with an error, ending its wait.
    pub fn reject(&mut self, request_id: Text, error: AcquireError, out: &mut Vec<Decision>) {
        self.end_wait(&request_id);
        self.counters.rejects += 1;
        out.push(Decision::Reject { request_id, error });
    }

    /// Removes a request from the waiting tables and from the operation it was bound to.
    pub(super) fn end_wait(&mut self, request_id: &str) -> Option<Waiter> {
        let w = self.waiting.remove(request_id)?;
        self.wait_ended(w.function);
        self.deadlines.remove(&(w.deadline, w.seq));
        match w.bound.and_then(|op| self.ops.get_mut(&op)) {
            Some(Op::Create(c)) if c.for_request.as_deref() == Some(request_id) => {
                c.for_request = None;
            }
            Some(Op::Create(_)) => {}
            Some(Op::Reserve(r)) => {
                if let Some(pos) = r.waiters.iter().position(|x| &**x == request_id) {
                    r.waiters.remove(pos);
                    let mem = self
                        .store
                        .function(w.function)
                        .map_or(0, |f| f.spec.memory_bytes);
                    r.planned_bytes = r.planned_bytes.saturating_sub(mem);
                }
            }
            None => {}
        }
        Some(w)
    }

    /// Rejects every waiting request whose deadline is at or before `now`.
    pub fn expire(&mut self, now: Millis, out: &mut Vec<Decision>) {
        self.observe(now);
        while let Some((&(deadline, _), _)) = self.deadlines.first_key_value() {
            if deadline > now {
                break;
            }
            let Some((_, request_id)) = self.deadlines.pop_first() else {
                break;
            };
            let Some(w) = self.waiting.get(&request_id) else {
                continue;
            };
            let name = self
                .store
                .function(w.function)
                .map(|f| f.spec.name.clone())
                .unwrap_or_else(|| "?".into());
            let waited = now.saturating_sub(w.since);
            let error = AcquireError {
                code: AcquireErrorCode::DeadlineExceeded,
                message: format!(
                    "no container of function {name} became available within {waited} ms (the request's deadline)"
                ),
            };
            self.reject(request_id, error, out);
        }
    }

    /// The earliest deadline of a waiting request (and the earliest time a lease expires or a suspect node is due to be lost: the state
    /// needs a tick then too).
    pub fn next_deadline(&self) -> Option<Millis> {
        let waiting = self.deadlines.first_key_value().map(|(&(d, _), _)| d);
        [waiting, self.next_health_check()]
            .into_iter()
            .flatten()
            .min()
    }

    /// Forgets a request whose caller went away: stops its wait, or gives back the container
    /// it was granted but never received (no call is counted). Unknown ids are ignored.
    pub fn cancel(
        &mut self,
        now: Millis,
        request_id: &str,
        out: &mut Vec<Decision>,
    ) -> Option<ContainerKey> {
        if self.end_wait(request_id).is_some() {
            return None;
        }
        let row = self.drop_lease(request_id)?;
        self.store.release_slot(row.container, now);
        self.after_release(row.container, out);
        Some(row.container)
    }

    /// Removes a request's lease from the tables and the expiry index.
    pub(super) fn drop_lease(&mut self, request_id: &str) -> Option<LeaseRow> {
        let row = self.store.remove_lease(request_id)?;
        self.lease_expiry
            .remove(&(row.lease.expires_at, row.lease.request_id.clone()));
        Some(row)
    }

    /// After a slot was given back: a retired container with no call left is removed, a
    /// removed one with no holder left is forgotten.
    pub(super) fn after_release(&mut self, key: ContainerKey, out: &mut Vec<Decision>) {
        let retire = self
            .store
            .container(key)
            .is_some_and(|r| r.container.stale && r.container.in_flight == 0);
        if retire {
            self.remove_container(key, out);
        }
        self.forget_if_gone(key);
    }
}
