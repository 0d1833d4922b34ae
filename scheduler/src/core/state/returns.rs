//! Returns: checking that a return matches the lease it ends, releasing the slot, and what
//! the return tells about the container (it died, it was an orphan's).

use super::{Returned, State};
use crate::core::{CoreError, Decision, Return};
use crate::model::Millis;

impl State {
    /// Validates and applies a return: the lease ends, the profile learns, and a container
    /// reported dead is marked dead (its memory freed) and its removal asked for.
    pub fn accept_return(
        &mut self,
        now: Millis,
        ret: Return,
        out: &mut Vec<Decision>,
    ) -> Result<Returned, CoreError> {
        let Some(lease) = self.store.lease(&ret.request_id) else {
            if self.store.lease_expired(&ret.request_id) {
                return Err(CoreError::LeaseExpired {
                    request_id: ret.request_id,
                });
            }
            if self.store.returned_container(&ret.request_id).is_some() {
                return Err(CoreError::AlreadyReturned {
                    request_id: ret.request_id,
                });
            }
            if let Some(key) = self.has_orphans(&ret.container_id) {
                // A call granted before this scheduler restarted.
                self.observe(now);
                self.store.remember_return(ret.request_id, ret.container_id);
                return Ok(self.accept_orphan_return(
                    now,
                    key,
                    ret.error.as_ref(),
                    ret.duration_ns,
                    ret.max_memory_bytes,
                    out,
                ));
            }
            if self.store.container_by_id(&ret.container_id).is_none() {
                return Err(CoreError::UnknownContainer {
                    container_id: ret.container_id,
                });
            }
            return Err(CoreError::UnknownRequest {
                request_id: ret.request_id,
            });
        };
        if lease.lease.container_id != ret.container_id {
            return Err(CoreError::WrongContainer {
                request_id: ret.request_id,
                held: lease.lease.container_id.clone(),
                given: ret.container_id,
            });
        }
        let Some(lease) = self.drop_lease(&ret.request_id) else {
            return Err(CoreError::Inconsistent("lease vanished".into()));
        };
        self.counters.returns += 1;
        self.observe(now);
        let key = lease.container;
        self.store
            .remember_return(lease.lease.request_id, lease.lease.container_id);
        self.store.release_slot(key, now);
        let function = self.store.container(key).map(|r| r.function);
        if let Some(f) = function.and_then(|f| self.store.function_mut(f)) {
            f.profile
                .record_call(ret.duration_ns, ret.max_memory_bytes, ret.error.is_some());
        }
        let mut died = false;
        if ret.error.as_ref().is_some_and(|e| e.kills_container()) {
            died = self.mark_dead(key, out);
        }
        if let Some(node) = self.store.container(key).map(|r| r.node) {
            match ret.error.as_ref().filter(|e| e.node_unavailable()) {
                Some(e) => {
                    let reason = format!("a call could not reach it: {}", e.message);
                    self.node_failed(now, node, reason, out);
                }
                None => self.node_answered(now, node, out),
            }
        }
        self.after_release(key, out);
        Ok(Returned {
            container: key,
            function,
            died,
            orphan: false,
        })
    }
}
