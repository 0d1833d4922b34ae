//! Container lifecycle events: a create finished or failed (refused creates fail the
//! function's waiters at once), and short-lived spare containers.

use super::{Engine, INITIAL_START_MS, MAX_CREATE_FAILURES, ewma};
use crate::core::{CoreError, Decision, Op};
use crate::model::{Millis, Text};
use crate::store::FunctionKey;

impl Engine {
    pub(super) fn on_created(
        &mut self,
        now: Millis,
        op: crate::model::OpId,
        container_id: Text,
        out: &mut Vec<Decision>,
    ) -> Result<(), CoreError> {
        let (started_at, f) = match self.state.op(op) {
            Some(Op::Create(c)) => (c.started_at, c.function),
            _ => {
                return Err(CoreError::UnknownOperation {
                    op,
                    event: "ContainerCreated",
                });
            }
        };
        let limit = self.fd(f).limit;
        let (key, request) = self.state.container_created(now, op, container_id, limit)?;
        if let Some(old) = self.replacing.remove(&op) {
            self.replaced_by(&old, key, out);
        }
        let n = self.start_samples();
        self.start_ms = ewma(self.start_ms, n, now.saturating_sub(started_at) as f64);
        let fd = self.fd(f);
        fd.create_failures = 0;
        if let Some(r) = request {
            if self.state.grant(now, r.clone(), key, true, out) {
                self.fd(f).inflight += 1;
            } else {
                // Created for an older definition of its function: the request waits on.
                self.requeue(f, r);
            }
        }
        self.update_limit(f);
        self.drain(now, f, true, out);
        if !self.starving.is_empty() {
            self.pump(now, out);
        }
        Ok(())
    }

    pub(super) fn start_samples(&self) -> u32 {
        // The first measured start replaces the assumption.
        if self.start_ms == INITIAL_START_MS {
            0
        } else {
            1
        }
    }

    pub(super) fn on_create_failed(
        &mut self,
        now: Millis,
        op: crate::model::OpId,
        message: &str,
        refused: bool,
        out: &mut Vec<Decision>,
    ) -> Result<(), CoreError> {
        let (create, request) = self.state.create_failed(op)?;
        self.replacing.remove(&op);
        let f = create.function;
        let fd = self.fd(f);
        if let Some(r) = request {
            fd.queue.push_front(r);
            fd.may_repeat = true;
        }
        fd.create_failures += 1;
        // A node that refused the create cannot run the function: no retry.
        if !refused && fd.create_failures < MAX_CREATE_FAILURES {
            let retry = now + 200 * fd.create_failures as Millis;
            self.pump_at = Some(self.pump_at.map_or(retry, |p| p.min(retry)));
            return Ok(());
        }
        fd.create_failures = 0;
        let error = self.state.create_failed_error(&create, message, refused);
        while let Some(id) = self.pop_waiter(f) {
            self.state.reject(id, error.clone(), out);
        }
        Ok(())
    }

    /// One spare container when every slot of a recurring function is taken.
    pub(super) fn maybe_spare(&mut self, now: Millis, f: FunctionKey, out: &mut Vec<Decision>) {
        let Some(row) = self.state.store.function(f) else {
            return;
        };
        if row.free_containers() > 0 || row.creating > 0 {
            return;
        }
        let mut view = self.view();
        match self.place(&mut view, f) {
            Ok(node) => {
                self.state.start_create(now, node, f, None, out);
            }
            Err(charge) => {
                self.shortage.push(charge);
                self.ensure_nodes(now, &view, out);
            }
        }
        self.put_view(view);
    }
}
