//! The resource manager and node models: reserves, releases and the pool's refills, container
//! creates and removals, the periodic `GetStats` samples, and the run's result and leaks.

use super::*;

impl Sim<'_> {
    // ---- resource manager ----

    pub(super) fn reserve(&mut self, op: faas_scheduler::model::OpId) {
        let at = self.now + us(self.o.reserve_ms);
        let event = match self.pool.ready.pop_front() {
            Some(id) => {
                self.pool.reserved += 1;
                self.pool
                    .refills
                    .push(Reverse(self.now + self.pool.refill_delay));
                self.schedule_pool_wake();
                let usage = self.result.nodes.len();
                self.result.nodes.push(NodeUsage {
                    id: id.to_string(),
                    reserved_ms: self.now_ms() as i64,
                    released_ms: None,
                });
                self.nodes.insert(
                    id.clone(),
                    HeldNode {
                        usage,
                        used: 0,
                        containers: Default::default(),
                    },
                );
                Event::NodeReserved {
                    op,
                    node: NodeInfo {
                        id,
                        address: Arc::from("sim"),
                        port: 0,
                        capacity_bytes: self.pool.memory,
                    },
                }
            }
            None => Event::NodeReserveFailed {
                op,
                exhausted: true,
                message: "no available node can be reserved".to_string(),
            },
        };
        self.push_event(at, event, false);
    }

    pub(super) fn release(&mut self, node_id: Text) {
        let Some(node) = self.nodes.remove(&node_id) else {
            return;
        };
        let now_ms = self.now_ms() as i64;
        self.result.nodes[node.usage].released_ms = Some(now_ms);
        self.pool.reserved = self.pool.reserved.saturating_sub(1);
        self.pool
            .cooling
            .push(Reverse(self.now + self.pool.refill_delay));
        // The node stops: its containers end with it.
        let ids: Vec<Text> = self
            .containers
            .iter()
            .filter(|(_, c)| c.node == node_id)
            .map(|(id, _)| id.clone())
            .collect();
        for id in ids {
            if let Some(c) = self.containers.remove(&id) {
                self.container_ended(c, now_ms);
            }
        }
        self.schedule_pool_wake();
        let at = self.now + us(self.o.release_ms);
        self.push_event(at, Event::NodeReleased { node_id }, false);
    }

    pub(super) fn schedule_pool_wake(&mut self) {
        if let Some(t) = self.pool.next_wake() {
            let t = t.max(self.now);
            if self.pool_wake.is_none_or(|w| t < w) {
                self.pool_wake = Some(t);
                self.push(t, Ev::PoolWake);
            }
        }
    }

    pub(super) fn pool_tick(&mut self) {
        let now = self.now;
        while self.pool.cooling.peek().is_some_and(|Reverse(t)| *t <= now) {
            self.pool.cooling.pop();
        }
        while self.pool.refills.peek().is_some_and(|Reverse(t)| *t <= now)
            && self.pool.occupied() < self.pool.max
        {
            self.pool.refills.pop();
            let id = self.pool.new_id();
            self.pool.starting += 1;
            let at = now + self.pool.node_start;
            self.push(at, Ev::NodeUp(id));
        }
        self.schedule_pool_wake();
    }

    // ---- node service ----

    pub(super) fn create(
        &mut self,
        op: faas_scheduler::model::OpId,
        node_id: Text,
        function: FunctionSpec,
    ) {
        if self.lost.contains(&node_id) {
            let at = self.now + us(LOST_NODE_ANSWER_MS);
            let message =
                format!("CreateContainer: connection refused (node {node_id} stopped answering)");
            let unreachable = Event::NodeUnreachable {
                node_id,
                message: message.clone(),
            };
            self.push_event(at, unreachable, true);
            let failed = Event::ContainerCreateFailed {
                op,
                message,
                refused: false,
            };
            self.push_event(at, failed, true);
            return;
        }
        let fits = match self.nodes.get_mut(&node_id) {
            Some(n) => {
                n.used += self.o.container_rss_bytes;
                Ok(())
            }
            None => Err(format!("node {node_id} is not reserved")),
        };
        let event = match fits {
            Ok(()) => {
                let latency = self.o.container_start_ms.sample(&mut self.rng);
                let at = self.now + us(latency);
                self.container_no += 1;
                let id: Text = Arc::from(format!("c{}", self.container_no));
                let created_ms = (at / 1000) as i64;
                let lifetime = self.records.is_some().then(|| {
                    self.result.containers.push(ContainerLifetime {
                        id: id.to_string(),
                        node_id: node_id.to_string(),
                        function: function.name.to_string(),
                        memory_bytes: function.memory_bytes,
                        created_ms,
                        removed_ms: None,
                    });
                    self.result.containers.len() - 1
                });
                if let Some(n) = self.nodes.get_mut(&node_id) {
                    n.containers.insert(id.clone(), function.memory_bytes);
                }
                self.containers.insert(
                    id.clone(),
                    LiveContainer {
                        lifetime,
                        created_ms,
                        busy: Busy::default(),
                        node: node_id,
                        memory: function.memory_bytes,
                        running: Vec::new(),
                        cpu_us: 0,
                    },
                );
                let created = Event::ContainerCreated {
                    op,
                    container_id: id,
                };
                self.push_event(at, created, false);
                return;
            }
            Err(message) => Event::ContainerCreateFailed {
                op,
                message,
                refused: false,
            },
        };
        let at = self.now + us(self.o.reserve_ms);
        self.push_event(at, event, false);
    }

    // ---- usage ----

    /// The CPU time invocation `i` used since the last stats sample, µs.
    pub(super) fn cpu_since_sample(&self, i: usize) -> u64 {
        let Some(granted) = self.live.get(&(i as u32)).and_then(|l| l.granted) else {
            return 0;
        };
        let w = self.w;
        let share = match w.functions[w.invocations[i].function as usize].handler {
            HandlerKind::Spin | HandlerKind::Cpu => 1.0,
            HandlerKind::Memory => 0.1,
            HandlerKind::Hello | HandlerKind::Echo | HandlerKind::Sleep => 0.0,
        };
        let from = granted.max(self.last_stats);
        (self.now.saturating_sub(from) as f64 * share) as u64
    }

    /// Every held node reports its containers' usage over the interval since the last one.
    pub(super) fn stats(&mut self) -> Result<(), SimError> {
        let interval = self.now.saturating_sub(self.last_stats).max(1);
        let w = self.w;
        // Each node's containers, in id order (each node keeps its ids sorted: no sort of
        // the platform's containers per round).
        let usage = |id: &Text, c: &LiveContainer| {
            let running_cpu: u64 = c
                .running
                .iter()
                .map(|&i| self.cpu_since_sample(i as usize))
                .sum();
            let touched: u64 = c
                .running
                .iter()
                .map(|&i| u64::from(w.invocations[i as usize].memory_mb) * MIB)
                .sum();
            ContainerUsage {
                container_id: id.clone(),
                total_memory_bytes: c.memory,
                memory_usage_bytes: (self.o.container_rss_bytes + touched).min(c.memory),
                cpu_pct: (c.cpu_us + running_cpu) as f64 * 100.0 / interval as f64,
            }
        };
        // A container outside `active` runs nothing and used no CPU since the last sample.
        let quiet = |id: &Text, memory: u64| ContainerUsage {
            container_id: id.clone(),
            total_memory_bytes: memory,
            memory_usage_bytes: self.o.container_rss_bytes.min(memory),
            cpu_pct: 0.0,
        };
        let mut nodes: Vec<(Text, Vec<ContainerUsage>)> = self
            .nodes
            .iter()
            .map(|(node_id, n)| {
                // Sized once: a filtered collect grows by reallocation, and large
                // reallocations made malloc consolidate its free lists every round.
                let mut listed = Vec::with_capacity(n.containers.len());
                listed.extend(n.containers.iter().filter_map(|(id, &memory)| {
                    if self.active.contains(id) {
                        self.containers.get(id).map(|c| usage(id, c))
                    } else {
                        Some(quiet(id, memory))
                    }
                }));
                (node_id.clone(), listed)
            })
            .collect();
        // In place: the set keeps its table (taking it and inserting the survivors back
        // grew a new table every round).
        let containers = &mut self.containers;
        self.active.retain(|id| {
            containers.get_mut(id).is_some_and(|c| {
                c.cpu_us = 0;
                !c.running.is_empty()
            })
        });
        self.last_stats = self.now;
        nodes.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        for (node_id, containers) in nodes {
            if self.lost.contains(&node_id) {
                self.unreachable(node_id, "GetStats: connection refused")?;
                continue;
            }
            let used: u64 = containers.iter().map(|c| c.memory_usage_bytes).sum();
            let cpu: f64 = containers.iter().map(|c| c.cpu_pct).sum();
            let sample = StatsSample {
                node_id,
                taken_at: self.now / 1000,
                node: SchedNodeUsage {
                    total_memory_bytes: self.pool.memory,
                    memory_usage_bytes: used,
                    available_memory_bytes: self.pool.memory.saturating_sub(used),
                    cpu_pct: cpu,
                },
                containers,
            };
            self.deliver(Event::Stats(sample))?;
        }
        let next = self.now + self.o.stats_interval_ms * 1000;
        if next <= self.w.duration_ms * 1000 || self.answered < self.w.invocations.len() {
            self.push(next, Ev::Stats);
        }
        Ok(())
    }

    pub(super) fn finish(mut self) -> RunResult {
        let end_ms = (self.now / 1000) as i64;
        let mut waiting: Vec<u32> = self
            .live
            .iter()
            .filter(|(_, l)| !l.answered)
            .map(|(&i, _)| i)
            .collect();
        waiting.sort_unstable();
        let unanswered = waiting.len();
        for i in waiting {
            self.answer_error(
                i as usize,
                "Unavailable: the policy never answered".to_string(),
            );
        }
        // Calls still running at the end count as their records say.
        let mut running: Vec<(u32, Live)> = self.live.drain().collect();
        running.sort_unstable_by_key(|(i, _)| *i);
        for (i, l) in running {
            self.ended(i as usize, &l);
        }
        if unanswered > 0 {
            self.result.notes.push(format!(
                "{unanswered} requests were never answered by the policy"
            ));
        }
        if !self.o.faults.0.is_empty() {
            self.result.leaks = Some(self.leaks());
        }
        self.result.end_ms = end_ms;
        // Containers alive at the end: idle until the run's end, as the records count it.
        let end = end_ms.max(self.summary.last_reply_ms.ceil() as i64);
        let mut alive: Vec<LiveContainer> = self.containers.drain().map(|(_, c)| c).collect();
        alive.sort_unstable_by_key(|c| (c.created_ms, c.lifetime));
        for c in alive {
            let idle = idle_mb_seconds(&c, end);
            self.summary.container(c.created_ms, None, idle);
        }
        match self.records {
            Some(records) => self.result.requests = records.into_iter().flatten().collect(),
            None => self.result.summary = Some(Box::new(self.summary)),
        }
        self.result
    }

    /// Container `c` ended at `now_ms` (removed, or its node released or lost).
    pub(super) fn container_ended(&mut self, c: LiveContainer, now_ms: i64) {
        if let Some(k) = c.lifetime {
            self.result.containers[k].removed_ms = Some(now_ms);
        }
        let idle = idle_mb_seconds(&c, now_ms);
        self.summary.container(c.created_ms, Some(now_ms), idle);
    }

    /// Nodes the resource manager model holds reserved, and live containers, that the
    /// policy does not hold at the end of the run (no process can leak here). A reserve or
    /// a create whose answer is still on its way is not a leak.
    pub(super) fn leaks(&self) -> Leaks {
        let store = &self.policy.state().store;
        let known: HashSet<Text> = store.nodes().map(|(_, n)| n.addr().id).collect();
        let now_ms = self.now_ms() as i64;
        let answered_by = now_ms - self.o.reserve_ms.ceil() as i64;
        Leaks {
            processes: 0,
            containers: self
                .containers
                .iter()
                .filter(|(id, c)| c.created_ms < now_ms && store.container_by_id(id).is_none())
                .count() as u64,
            nodes: self
                .nodes
                .iter()
                .filter(|(id, n)| {
                    self.result.nodes[n.usage].reserved_ms < answered_by && !known.contains(*id)
                })
                .count() as u64,
        }
    }
}

/// The memory-time container `c` held while serving nothing, up to `to_ms`, MiB·s.
fn idle_mb_seconds(c: &LiveContainer, to_ms: i64) -> f64 {
    let (from, to) = (c.created_ms as f64, to_ms as f64);
    if to <= from {
        return 0.0;
    }
    let idle_s = ((to - from) - c.busy.within(from, to)).max(0.0) / 1000.0;
    c.memory as f64 / MIB as f64 * idle_s
}
