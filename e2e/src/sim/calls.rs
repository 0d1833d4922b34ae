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
        if self.reqs[i].answered {
            return;
        }
        if self.lost.contains(&node_id) {
            self.refused(i, request_id, container_id, node_id);
            return;
        }
        self.reqs[i].answered = true;
        self.reqs[i].granted = Some(self.now);
        self.answered += 1;
        let w = self.w;
        let inv = &w.invocations[i];
        let f = &w.functions[inv.function];
        let waited_ms = (self.now - inv.at_ms * 1000) as f64 / 1000.0;
        let scheduling_ms = waited_ms + self.o.acquire_overhead_ms;
        let touches = inv.expected_memory_mb * MIB;
        let node_used = self.nodes.get(&node_id).map_or(0, |n| n.used);
        let (duration_ms, error) = if touches > f.memory_bytes {
            (
                0.0,
                Some(format!(
                    "OutOfMemory: the body touches {} MiB, the limit is {} MiB",
                    inv.expected_memory_mb,
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
                    inv.expected_memory_mb
                )),
            )
        } else if inv.expected_duration_ms > f.timeout_ms {
            (
                f.timeout_ms as f64,
                Some(format!("Timeout: ran past {} ms", f.timeout_ms)),
            )
        } else {
            (inv.expected_duration_ms as f64, None)
        };
        let runs = error.is_none();
        self.records[i] = Some(RequestRecord {
            function: self.names[inv.function].clone(),
            at_ms: inv.at_ms,
            response_ms: scheduling_ms + self.o.invoke_overhead_ms + duration_ms,
            scheduling_ms,
            duration_ms,
            cold,
            error,
            node_id: Some(node_id.to_string()),
            container_id: Some(container_id.to_string()),
        });
        if runs && let Some(n) = self.nodes.get_mut(&node_id) {
            n.used += touches;
            self.reqs[i].holds = touches;
        }
        if let Some(c) = self.containers.get_mut(&container_id) {
            c.running.push(i as u32);
        }
        self.holding[i] = Some((request_id, container_id));
        let at =
            self.now + us(self.o.acquire_overhead_ms + self.o.invoke_overhead_ms + duration_ms);
        self.push(at, Ev::Done(i as u32));
    }

    pub(super) fn answer_error(&mut self, i: usize, error: String) {
        if self.reqs[i].answered {
            return;
        }
        self.reqs[i].answered = true;
        self.answered += 1;
        let w = self.w;
        let inv = &w.invocations[i];
        let waited = (self.now.saturating_sub(inv.at_ms * 1000)) as f64 / 1000.0
            + self.o.acquire_overhead_ms;
        self.records[i] = Some(RequestRecord {
            function: self.names[inv.function].clone(),
            at_ms: inv.at_ms,
            response_ms: waited,
            scheduling_ms: waited,
            duration_ms: 0.0,
            cold: false,
            error: Some(error),
            node_id: None,
            container_id: None,
        });
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
        if self.reqs[i].retried {
            self.answer_error(
                i,
                format!(
                    "Unavailable: node {node_id} refused the call, and the retry's (connection refused)"
                ),
            );
        } else {
            self.reqs[i].retried = true;
            self.push(at, Ev::Retry(i as u32));
        }
    }

    /// Fault `k`: the held node with the most containers stops answering (see the module
    /// documentation).
    pub(super) fn kill_node(&mut self, k: usize) -> Result<(), SimError> {
        let fault = self.o.faults.0[k];
        let mut per_node: HashMap<&Text, usize> = self
            .nodes
            .keys()
            .filter(|n| !self.lost.contains(*n))
            .map(|n| (n, 0))
            .collect();
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
            self.result.containers[c.lifetime].removed_ms = Some(now_ms as i64);
            self.died_with_node.insert(id, node_id.clone());
            for i in c.running {
                in_flight += 1;
                self.cut_off(i as usize, &node_id);
            }
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
        let Some((request_id, container_id)) = self.holding[i].take() else {
            return;
        };
        self.reqs[i].holds = 0;
        let at_ms = self.w.invocations[i].at_ms;
        let waited_ms = self.now.saturating_sub(at_ms * 1000) as f64 / 1000.0;
        if let Some(r) = self.records[i].as_mut().filter(|r| r.error.is_none()) {
            r.error = Some(format!(
                "Unavailable: node {node_id} stopped answering during the call; the function may have run; not retried"
            ));
            r.response_ms = waited_ms + LOST_NODE_ANSWER_MS;
            r.duration_ms = 0.0;
        }
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
        self.push(
            at,
            Ev::DeliverLenient(Event::Return(Return {
                request_id,
                container_id,
                duration_ns: 0,
                max_memory_bytes: 0,
                error: Some(FunctionError {
                    code: NODE_UNAVAILABLE_CODE.to_string(),
                    message,
                }),
            })),
        );
        at
    }

    pub(super) fn done(&mut self, i: usize) -> Result<(), SimError> {
        let Some((request_id, container_id)) = self.holding[i].take() else {
            return Ok(());
        };
        let busy = self.cpu_since_sample(i);
        let holds = std::mem::take(&mut self.reqs[i].holds);
        if let Some(c) = self.containers.get_mut(&container_id) {
            c.running.retain(|&r| r as usize != i);
            c.cpu_us += busy;
            if let Some(n) = self.nodes.get_mut(&c.node) {
                n.used = n.used.saturating_sub(holds);
            }
        }
        let w = self.w;
        let inv = &w.invocations[i];
        let error = self.records[i].as_ref().and_then(|r| r.error.clone());
        let error = error.map(|e| {
            let (code, message) = e.split_once(": ").unwrap_or((e.as_str(), ""));
            FunctionError {
                code: code.to_string(),
                message: message.to_string(),
            }
        });
        let duration_ns = self.records[i]
            .as_ref()
            .map_or(0, |r| (r.duration_ms * 1e6) as u64);
        self.deliver(Event::Return(Return {
            request_id,
            container_id,
            duration_ns,
            max_memory_bytes: inv.expected_memory_mb * MIB,
            error,
        }))
    }
}
