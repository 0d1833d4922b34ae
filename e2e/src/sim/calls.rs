//! The function model: grants, a call's body running to its end or its error, calls refused
//! or cut off by a lost node (the node-loss fault), and returning containers.

use super::*;

impl Sim<'_> {
    pub(super) fn grant(
        &mut self,
        request_id: Text,
        container_id: Text,
        node_id: Text,
        cold: bool,
    ) {
        let Some(i) = request_index(&request_id) else {
            return;
        };
        if self.live.get(&(i as u32)).is_none_or(|l| l.answered) {
            return;
        }
        if !self.lost.is_empty() && self.lost.contains(&node_id) {
            self.refused(i, request_id, container_id, node_id);
            return;
        }
        self.answered += 1;
        let w = self.w;
        let inv = &w.invocations[i];
        let f = &w.functions[inv.function as usize];
        let waited_ms = (self.now - inv.at_ms * 1000) as f64 / 1000.0;
        let scheduling_ms = waited_ms + self.o.acquire_overhead_ms;
        let touches = u64::from(inv.memory_mb) * MIB;
        let node_used = self.nodes.get(&node_id).map_or(0, |n| n.used);
        let (duration_ms, error) = if touches > f.memory_bytes {
            (
                0.0,
                Some(format!(
                    "OutOfMemory: the body touches {} MiB, the limit is {} MiB",
                    inv.memory_mb,
                    f.memory_bytes / MIB
                )),
            )
        } else if node_used + touches > self.pool.memory {
            (
                0.0,
                Some(format!(
                    "OutOfMemory: node {node_id} has {} MiB of {} MiB in use, the body touches {} MiB",
                    node_used / MIB,
                    self.pool.memory / MIB,
                    inv.memory_mb
                )),
            )
        } else if u64::from(inv.duration_ms) > f.timeout_ms {
            (
                f.timeout_ms as f64,
                Some(format!("Timeout: ran past {} ms", f.timeout_ms)),
            )
        } else {
            (f64::from(inv.duration_ms), None)
        };
        let runs = error.is_none();
        let response_ms = scheduling_ms + self.o.invoke_overhead_ms + duration_ms;
        if let Some(records) = &mut self.records {
            records[i] = Some(RequestRecord {
                function: self.names[inv.function as usize].clone(),
                at_ms: inv.at_ms,
                response_ms,
                scheduling_ms,
                duration_ms,
                cold,
                error: error.clone(),
                node_id: Some(node_id.to_string()),
                container_id: Some(container_id.to_string()),
            });
        }
        let mut holds = 0;
        if runs && let Some(n) = self.nodes.get_mut(&node_id) {
            n.used += touches;
            holds = touches;
        }
        let settled = (self.now / 1000) as f64;
        if let Some(c) = self.containers.get_mut(&container_id) {
            self.active.insert(container_id.clone());
            c.running.push(i as u32);
            // The execution interval, as the records give it (see `Busy`).
            let start = inv.at_ms as f64 + scheduling_ms;
            c.busy
                .add(start, start + duration_ms, c.created_ms as f64, settled);
        }
        let now = self.now;
        if let Some(l) = self.live.get_mut(&(i as u32)) {
            *l = Live {
                granted: Some(now),
                answered: true,
                holds,
                retried: l.retried,
                holding: Some((request_id, container_id)),
                scheduling_ms,
                response_ms,
                duration_ms,
                cold,
                error,
            };
        }
        let at =
            self.now + us(self.o.acquire_overhead_ms + self.o.invoke_overhead_ms + duration_ms);
        self.push(at, Ev::Done(i as u32));
    }

    /// Request `i` ends: its figures go to the summary.
    pub(super) fn ended(&mut self, i: usize, l: &Live) {
        let inv = &self.w.invocations[i];
        self.summary.request(
            inv.function as usize,
            inv.at_ms,
            l.response_ms,
            l.scheduling_ms,
            l.duration_ms,
            l.cold,
            l.error.as_deref(),
        );
    }

    pub(super) fn answer_error(&mut self, i: usize, error: String) {
        if self.live.get(&(i as u32)).is_none_or(|l| l.answered) {
            return;
        }
        let Some(mut l) = self.live.remove(&(i as u32)) else {
            return;
        };
        self.answered += 1;
        let w = self.w;
        let inv = &w.invocations[i];
        let waited = (self.now.saturating_sub(inv.at_ms * 1000)) as f64 / 1000.0
            + self.o.acquire_overhead_ms;
        if let Some(records) = &mut self.records {
            records[i] = Some(RequestRecord {
                function: self.names[inv.function as usize].clone(),
                at_ms: inv.at_ms,
                response_ms: waited,
                scheduling_ms: waited,
                duration_ms: 0.0,
                cold: false,
                error: Some(error.clone()),
                node_id: None,
                container_id: None,
            });
        }
        l.answered = true;
        l.response_ms = waited;
        l.scheduling_ms = waited;
        l.duration_ms = 0.0;
        l.cold = false;
        l.error = Some(error);
        self.ended(i, &l);
    }

    /// The API server's call to a container on a lost node is refused: the container goes
    /// back with `NodeUnavailable` and the call acquires once more (then fails).
    pub(super) fn refused(
        &mut self,
        i: usize,
        request_id: Text,
        container_id: Text,
        node_id: Text,
    ) {
        let at = self.return_unavailable(
            request_id,
            container_id,
            format!("node {node_id} refused the connection"),
        );
        let retried = self.live.get(&(i as u32)).is_some_and(|l| l.retried);
        if retried {
            self.answer_error(
                i,
                format!(
                    "Unavailable: node {node_id} refused the call, and the retry's (connection refused)"
                ),
            );
        } else {
            if let Some(l) = self.live.get_mut(&(i as u32)) {
                l.retried = true;
            }
            self.push(at, Ev::Retry(i as u32));
        }
    }

    /// Fault `k`: the held node with the most containers stops answering (see the module
    /// documentation).
    pub(super) fn kill_node(&mut self, k: usize) -> Result<(), SimError> {
        let fault = self.o.faults.0[k];
        let mut per_node: FastMap<&Text, usize> = self
            .nodes
            .keys()
            .filter(|n| !self.lost.contains(*n))
            .map(|n| (n, 0))
            .collect();
        // The busiest node; ties go to the smallest id.
        for c in self.containers.values() {
            if let Some(count) = per_node.get_mut(&c.node) {
                *count += 1;
            }
        }
        let victim = per_node
            .into_iter()
            .max_by(|a, b| a.1.cmp(&b.1).then_with(|| b.0.cmp(a.0)))
            .map(|(n, count)| (n.clone(), count));
        let now_ms = self.now_ms();
        let Some((node_id, count)) = victim else {
            self.result.faults.push(InjectedFault {
                fault: fault.to_string(),
                at_ms: now_ms,
                target: String::new(),
                in_flight: Some(0),
                error: Some("no node is held".into()),
            });
            return Ok(());
        };
        self.lost.insert(node_id.clone());
        let on_node: Vec<Text> = self
            .containers
            .iter()
            .filter(|(_, c)| c.node == node_id)
            .map(|(id, _)| id.clone())
            .collect();
        let mut in_flight = 0u64;
        for id in on_node {
            let Some(c) = self.containers.remove(&id) else {
                continue;
            };
            if let Some(n) = self.nodes.get_mut(&node_id) {
                n.containers.remove(&id);
            }
            self.died_with_node.insert(id, node_id.clone());
            for &i in &c.running {
                in_flight += 1;
                self.cut_off(i as usize, &node_id);
            }
            self.container_ended(c, now_ms as i64);
        }
        if let Some(n) = self.nodes.get_mut(&node_id) {
            n.used = 0;
        }
        self.result.faults.push(InjectedFault {
            fault: fault.to_string(),
            at_ms: now_ms,
            target: format!("node {node_id} ({count} containers) stops answering"),
            in_flight: Some(in_flight),
            error: None,
        });
        Ok(())
    }

    /// Invocation `i` ran on a node that was just lost: it fails (the function may have run),
    /// and its container goes back with `NodeUnavailable`.
    pub(super) fn cut_off(&mut self, i: usize, node_id: &Text) {
        let Some(mut l) = self.live.remove(&(i as u32)) else {
            return;
        };
        let Some((request_id, container_id)) = l.holding.take() else {
            self.live.insert(i as u32, l);
            return;
        };
        let at_ms = self.w.invocations[i].at_ms;
        let waited_ms = self.now.saturating_sub(at_ms * 1000) as f64 / 1000.0;
        if l.error.is_none() {
            l.error = Some(format!(
                "Unavailable: node {node_id} stopped answering during the call; the function may have run; not retried"
            ));
            l.response_ms = waited_ms + LOST_NODE_ANSWER_MS;
            l.duration_ms = 0.0;
            if let Some(r) = self.records.as_mut().and_then(|r| r[i].as_mut()) {
                r.error.clone_from(&l.error);
                r.response_ms = l.response_ms;
                r.duration_ms = 0.0;
            }
        }
        self.ended(i, &l);
        self.return_unavailable(
            request_id,
            container_id,
            format!("node {node_id}: connection reset during the call"),
        );
    }

    /// The API server gives back a container on a lost node with `NodeUnavailable`, once
    /// its call failed; returns when.
    pub(super) fn return_unavailable(
        &mut self,
        request_id: Text,
        container_id: Text,
        message: String,
    ) -> Us {
        let at = self.now + us(LOST_NODE_ANSWER_MS);
        let ret = Event::Return(Return {
            request_id,
            container_id,
            duration_ns: 0,
            max_memory_bytes: 0,
            error: Some(FunctionError {
                code: NODE_UNAVAILABLE_CODE.to_string(),
                message,
            }),
        });
        self.push_event(at, ret, true);
        at
    }

    pub(super) fn done(&mut self, i: usize) -> Result<(), SimError> {
        if self
            .live
            .get(&(i as u32))
            .is_none_or(|l| l.holding.is_none())
        {
            return Ok(());
        }
        let busy = self.cpu_since_sample(i);
        let Some(mut l) = self.live.remove(&(i as u32)) else {
            return Ok(());
        };
        let Some((request_id, container_id)) = l.holding.take() else {
            return Ok(());
        };
        let holds = l.holds;
        if let Some(c) = self.containers.get_mut(&container_id) {
            c.running.retain(|&r| r as usize != i);
            c.cpu_us += busy;
            if let Some(n) = self.nodes.get_mut(&c.node) {
                n.used = n.used.saturating_sub(holds);
            }
        }
        self.ended(i, &l);
        let w = self.w;
        let inv = &w.invocations[i];
        let error = l.error.as_ref().map(|e| {
            let (code, message) = e.split_once(": ").unwrap_or((e.as_str(), ""));
            FunctionError {
                code: code.to_string(),
                message: message.to_string(),
            }
        });
        let duration_ns = (l.duration_ms * 1e6) as u64;
        self.deliver(Event::Return(Return {
            request_id,
            container_id,
            duration_ns,
            max_memory_bytes: u64::from(inv.memory_mb) * MIB,
            error,
        }))
    }
}
