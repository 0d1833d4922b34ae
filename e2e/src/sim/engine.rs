//! The discrete-event loop: the simulator's state ([`Sim`]), the merge of timed events with
//! the workload's invocations, delivering events to the policy and carrying out its
//! decisions.

use super::*;

pub(super) struct Sim<'a> {
    pub(super) w: &'a CompactWorkload,
    pub(super) o: &'a SimOptions,
    pub(super) policy: Box<dyn Policy>,
    pub(super) policy_name: String,
    pub(super) specs: Vec<FunctionSpec>,
    pub(super) names: Vec<String>,
    /// The account every acquire names.
    pub(super) account: Text,
    /// Scratch for request ids.
    pub(super) id_buf: String,
    pub(super) rng: StdRng,
    pub(super) heap: BinaryHeap<Item>,
    /// The events waiting in the heap to be delivered, by the number their
    /// [`Ev::Deliver`] carries; `None` once delivered (the number is then reused).
    pub(super) parked: Vec<Option<Event>>,
    /// Numbers of `parked` free for reuse.
    pub(super) parked_free: Vec<u32>,
    pub(super) seq: u64,
    pub(super) now: Us,
    pub(super) out: Vec<Decision>,
    pub(super) pool: PoolModel,
    pub(super) pool_wake: Option<Us>,
    pub(super) tick_at: Option<Us>,
    pub(super) nodes: FastMap<Text, HeldNode>,
    pub(super) containers: FastMap<Text, LiveContainer>,
    /// Containers granted a call since the last stats sample, or running one at it: every
    /// other container runs nothing and has no CPU time to report (a stats round lists it
    /// without looking it up).
    pub(super) active: FastSet<Text>,
    pub(super) container_no: u64,
    /// The requests in progress, by invocation index.
    pub(super) live: FastMap<u32, Live>,
    /// Every request's record, by invocation index, when the run keeps them.
    pub(super) records: Option<Vec<Option<RequestRecord>>>,
    /// The run's figures, gathered as requests and containers end.
    pub(super) summary: RunSummary,
    /// Nodes lost to a fault (they answer nothing).
    pub(super) lost: HashSet<Text>,
    /// Containers that died with a lost node, and their node.
    pub(super) died_with_node: HashMap<Text, Text>,
    pub(super) answered: usize,
    pub(super) delivered: u64,
    /// When the nodes last reported their usage.
    pub(super) last_stats: Us,
    pub(super) result: RunResult,
    /// Where the policy's decisions go, with their reasons, when the run writes them
    /// ([`super::simulate_compact_explained`]).
    pub(super) explain: Option<&'a mut dyn FnMut(DecisionRecord)>,
}

impl<'a> Sim<'a> {
    pub(super) fn new(
        w: &'a CompactWorkload,
        policy: Box<dyn Policy>,
        o: &'a SimOptions,
    ) -> Sim<'a> {
        let specs = w
            .functions
            .iter()
            .map(|f| FunctionSpec {
                name: Arc::from(f.name.as_str()),
                memory_bytes: f.memory_bytes,
                timeout_ms: f.timeout_ms,
                handler: Arc::from(f.handler.as_str()),
            })
            .collect();
        let names: Vec<String> = w.functions.iter().map(|f| f.name.clone()).collect();
        let policy_name = policy.name().to_string();
        let mut pool = PoolModel {
            max: o.max_nodes,
            refill_delay: o.refill_delay_ms * 1000,
            node_start: us(o.node_start_ms),
            memory: o.node_memory_bytes,
            ready: VecDeque::new(),
            starting: 0,
            reserved: 0,
            refills: BinaryHeap::new(),
            cooling: BinaryHeap::new(),
            generation: 0,
        };
        for _ in 0..o.ready_nodes.min(o.max_nodes) {
            let id = pool.new_id();
            pool.ready.push_back(id);
        }
        let n = w.invocations.len();
        let keep = o.keep_records || !o.faults.0.is_empty();
        let mut result = RunResult::new(policy_name.clone(), w.name.clone());
        result.notes.push(format!(
            "simulated (seed {}): {} ready / {} max nodes of {} MiB, refill {} ms; container start {:.0}-{:.0} ms; \
             overheads: acquire {} ms, invoke {} ms; no CPU contention modelled",
            o.seed,
            o.ready_nodes,
            o.max_nodes,
            o.node_memory_bytes / MIB,
            o.refill_delay_ms,
            o.container_start_ms.min(),
            o.container_start_ms.max(),
            o.acquire_overhead_ms,
            o.invoke_overhead_ms
        ));
        Sim {
            w,
            o,
            policy,
            policy_name,
            specs,
            summary: RunSummary::new(names.clone()),
            names,
            account: Arc::from(o.account.as_str()),
            id_buf: String::new(),
            rng: StdRng::seed_from_u64(o.seed),
            heap: BinaryHeap::new(),
            parked: Vec::new(),
            parked_free: Vec::new(),
            seq: 0,
            now: 0,
            out: Vec::new(),
            pool,
            pool_wake: None,
            tick_at: None,
            nodes: FastMap::default(),
            containers: FastMap::default(),
            active: FastSet::default(),
            container_no: 0,
            live: FastMap::default(),
            records: keep.then(|| vec![None; n]),
            lost: HashSet::new(),
            died_with_node: HashMap::new(),
            answered: 0,
            delivered: 0,
            last_stats: 0,
            result,
            explain: None,
        }
    }

    pub(super) fn push(&mut self, at: Us, ev: Ev) {
        self.seq += 1;
        self.heap.push(Item {
            at,
            seq: self.seq,
            ev,
        });
    }

    /// Schedules the delivery of `event` at `at` (leniently: see [`Ev::DeliverLenient`]).
    /// The event waits in `parked`, the heap holds only its number: a policy event is
    /// about a hundred bytes, and every push and pop of the heap moves items along a path
    /// of it (small items made the heap's share of a big day's run markedly smaller).
    pub(super) fn push_event(&mut self, at: Us, event: Event, lenient: bool) {
        let k = match self.parked_free.pop() {
            Some(k) => {
                self.parked[k as usize] = Some(event);
                k
            }
            None => {
                self.parked.push(Some(event));
                (self.parked.len() - 1) as u32
            }
        };
        let ev = if lenient {
            Ev::DeliverLenient(k)
        } else {
            Ev::Deliver(k)
        };
        self.push(at, ev);
    }

    /// Takes back the event parked under `k` (see [`Sim::push_event`]).
    fn unpark(&mut self, k: u32) -> Result<Event, SimError> {
        let event = self.parked.get_mut(k as usize).and_then(Option::take);
        self.parked_free.push(k);
        event.ok_or_else(|| SimError::Refused {
            policy: self.policy_name.clone(),
            at_ms: self.now_ms(),
            event: "parked event".into(),
            reason: format!("no event is parked under {k} (a simulator bug)"),
        })
    }

    pub(super) fn now_ms(&self) -> u64 {
        self.now / 1000
    }

    /// Runs until every invocation is answered, then to the end of the workload.
    pub(super) fn run(&mut self) -> Result<(), SimError> {
        let w = self.w;
        let invs = &w.invocations;
        let mut next = 0usize;
        if self.o.stats_interval_ms > 0 {
            self.push(self.o.stats_interval_ms * 1000, Ev::Stats);
        }
        for (k, f) in self.o.faults.0.iter().enumerate() {
            self.push(f.at_ms * 1000, Ev::Fault(k));
        }
        loop {
            let arrival = invs.get(next).map(|i| i.at_ms * 1000);
            let event = self.heap.peek().map(|i| i.at);
            match (arrival, event) {
                (None, None) => break,
                (Some(a), Some(e)) if e <= a => self.step()?,
                (Some(a), _) => {
                    self.now = self.now.max(a);
                    self.arrive(next)?;
                    next += 1;
                }
                (None, Some(_)) => {
                    if self.answered == invs.len() {
                        break;
                    }
                    self.step()?;
                }
            }
        }
        // Events up to the end of the workload still count (node releases, removals).
        let end = (self.w.duration_ms * 1000).max(self.now);
        while self.heap.peek().is_some_and(|i| i.at <= end) {
            self.step()?;
        }
        self.now = end;
        Ok(())
    }

    pub(super) fn step(&mut self) -> Result<(), SimError> {
        let Some(item) = self.heap.pop() else {
            return Ok(());
        };
        self.now = self.now.max(item.at);
        match item.ev {
            Ev::Deliver(k) => match self.unpark(k)? {
                Event::ContainerCreated { op, container_id }
                    if self.died_with_node.contains_key(&container_id) =>
                {
                    // Created on a node lost meanwhile: the create never answered.
                    let node_id = self.died_with_node[&container_id].clone();
                    self.unreachable(node_id, "CreateContainer: connection reset")?;
                    self.deliver_lenient(Event::ContainerCreateFailed {
                        op,
                        message: "connection reset: the node stopped answering".into(),
                        refused: false,
                    })
                }
                e => self.deliver(e),
            },
            Ev::DeliverLenient(k) => {
                let e = self.unpark(k)?;
                self.deliver_lenient(e)
            }
            Ev::Fault(k) => self.kill_node(k),
            Ev::Retry(i) => self.acquire(i as usize, true),
            Ev::Done(i) => self.done(i as usize),
            Ev::Tick => {
                if self.tick_at != Some(item.at) {
                    return Ok(()); // superseded by an earlier tick
                }
                self.tick_at = None;
                self.deliver(Event::Tick)
            }
            Ev::PoolWake => {
                if self.pool_wake == Some(item.at) {
                    self.pool_wake = None;
                }
                self.pool_tick();
                Ok(())
            }
            Ev::NodeUp(id) => {
                self.pool.starting = self.pool.starting.saturating_sub(1);
                self.pool.ready.push_back(id);
                Ok(())
            }
            Ev::Removed(id) => {
                if let Some(node_id) = self.died_with_node.remove(&id) {
                    self.unreachable(node_id, "RemoveContainer: connection refused")?;
                    return self.deliver_lenient(Event::ContainerRemoved { container_id: id });
                }
                if let Some(c) = self.containers.remove(&id) {
                    if let Some(n) = self.nodes.get_mut(&c.node) {
                        n.used = n.used.saturating_sub(self.o.container_rss_bytes);
                        n.containers.remove(&id);
                    }
                    self.container_ended(c, self.now_ms() as i64);
                }
                self.deliver(Event::ContainerRemoved { container_id: id })
            }
            Ev::Stats => self.stats(),
        }
    }

    pub(super) fn arrive(&mut self, i: usize) -> Result<(), SimError> {
        self.live.insert(i as u32, Live::default());
        self.acquire(i, false)
    }

    /// Invocation `i` asks for a container (again, as `r{i}-retry`, within its first
    /// deadline, after a lost node refused it).
    pub(super) fn acquire(&mut self, i: usize, retry: bool) -> Result<(), SimError> {
        let w = self.w;
        let inv = &w.invocations[i];
        let spec = self.specs[inv.function as usize].clone();
        let deadline = inv.at_ms + self.o.acquire_timeout_ms;
        use std::fmt::Write as _;
        self.id_buf.clear();
        let _ = write!(self.id_buf, "r{i}");
        if retry {
            self.id_buf.push_str("-retry");
        }
        let event = Event::Acquire(Acquire {
            request_id: Arc::from(self.id_buf.as_str()),
            account_id: self.account.clone(),
            function: spec,
            deadline,
        });
        let mut out = std::mem::take(&mut self.out);
        self.delivered += 1;
        let r = self.policy.handle(self.now_ms(), event, &mut out);
        if let Err(e) = r {
            // The acquire itself was refused (an invalid function): the request fails.
            self.answer_error(i, format!("InvalidArgument: {e}"));
        }
        self.apply(&mut out)?;
        self.out = out;
        self.after_event();
        Ok(())
    }

    /// Delivers an event the policy may refuse because it already forgot a lost node (a
    /// late result, a failed observation of it): a refusal is ignored, as the live driver
    /// ignores it.
    pub(super) fn deliver_lenient(&mut self, event: Event) -> Result<(), SimError> {
        let mut out = std::mem::take(&mut self.out);
        self.delivered += 1;
        let _ = self.policy.handle(self.now_ms(), event, &mut out);
        self.apply(&mut out)?;
        self.out = out;
        self.after_event();
        Ok(())
    }

    /// A failed observation of a lost node.
    pub(super) fn unreachable(&mut self, node_id: Text, what: &str) -> Result<(), SimError> {
        let message = format!("{what} (node {node_id} stopped answering)");
        self.deliver_lenient(Event::NodeUnreachable { node_id, message })
    }

    pub(super) fn deliver(&mut self, event: Event) -> Result<(), SimError> {
        let mut out = std::mem::take(&mut self.out);
        self.delivered += 1;
        let label = event_label(&event);
        if let Err(e) = self.policy.handle(self.now_ms(), event, &mut out) {
            return Err(SimError::Refused {
                policy: self.policy_name.clone(),
                at_ms: self.now_ms(),
                event: label.to_string(),
                reason: e.to_string(),
            });
        }
        self.apply(&mut out)?;
        self.out = out;
        self.after_event();
        Ok(())
    }

    /// Schedules the policy's next tick if it wants one earlier than the one pending.
    pub(super) fn after_event(&mut self) {
        if let Some(w) = self.policy.next_wakeup() {
            let at = w.saturating_mul(1000).max(self.now);
            if self.tick_at.is_none_or(|t| at < t) {
                self.tick_at = Some(at);
                self.push(at, Ev::Tick);
            }
        }
    }

    pub(super) fn apply(&mut self, out: &mut Vec<Decision>) -> Result<(), SimError> {
        if let Some(sink) = self.explain.as_mut() {
            let notes = self.policy.reasons().map(|r| r.take()).unwrap_or_default();
            for r in decision_records(self.policy.state(), out, notes, self.now / 1000) {
                sink(r);
            }
        }
        for d in out.drain(..) {
            match d {
                Decision::Grant(g) => self.grant(g.request_id, g.container_id, g.node_id, g.cold),
                Decision::Reject { request_id, error } => {
                    if let Some(i) = request_index(&request_id) {
                        let code = match error.code {
                            AcquireErrorCode::ResourceExhausted => "ResourceExhausted",
                            AcquireErrorCode::DeadlineExceeded => "DeadlineExceeded",
                            AcquireErrorCode::Unavailable => "Unavailable",
                            AcquireErrorCode::FailedPrecondition => "FailedPrecondition",
                        };
                        self.answer_error(i, format!("{code}: {}", error.message));
                    }
                }
                Decision::ReserveNode { op } => self.reserve(op),
                Decision::CreateContainer { op, node, function } => {
                    self.create(op, node.id, function)
                }
                Decision::RemoveContainer { container_id, .. } => {
                    let at = self.now + us(self.o.container_remove_ms);
                    self.push(at, Ev::Removed(container_id));
                }
                Decision::ReleaseNode { node_id } => self.release(node_id),
                Decision::Health(_) => {}
            }
        }
        Ok(())
    }
}

/// The invocation index of a simulated request id (`r{index}`, or `r{index}-retry`).
pub(super) fn request_index(id: &str) -> Option<usize> {
    let id = id.strip_suffix("-retry").unwrap_or(id);
    id.strip_prefix('r')?.parse().ok()
}

pub(super) fn event_label(e: &Event) -> &'static str {
    match e {
        Event::Acquire(_) => "Acquire",
        Event::Return(_) => "Return",
        Event::Cancel { .. } => "Cancel",
        Event::NodeReserved { .. } => "NodeReserved",
        Event::NodeReserveFailed { .. } => "NodeReserveFailed",
        Event::ContainerCreated { .. } => "ContainerCreated",
        Event::ContainerCreateFailed { .. } => "ContainerCreateFailed",
        Event::ContainerRemoved { .. } => "ContainerRemoved",
        Event::NodeReleased { .. } => "NodeReleased",
        Event::Stats(_) => "Stats",
        Event::NodeUnreachable { .. } => "NodeUnreachable",
        Event::RetireFunction { .. } => "RetireFunction",
        Event::HoldFunction { .. } => "HoldFunction",
        Event::NodeAdopted { .. } => "NodeAdopted",
        Event::Tick => "Tick",
    }
}
