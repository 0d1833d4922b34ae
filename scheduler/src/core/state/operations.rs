//! Operations in flight: node reserves (with the requests bound to them) and container
//! creates, from the decision that starts one to the event that ends it.

use super::{CreateOp, Op, ReserveOp, State};
use crate::core::reasons::{self, ReasonKind};
use crate::core::{AcquireError, AcquireErrorCode, CoreError, Decision};
use crate::model::{Container, ContainerState, Millis, Node, NodeInfo, OpId, Text};
use crate::store::{ContainerKey, FunctionKey, NodeKey};

impl State {
    pub(super) fn new_op(&mut self) -> OpId {
        let op = OpId(self.next_op);
        self.next_op += 1;
        op
    }

    /// The operation `op`, if in flight.
    pub fn op(&self, op: OpId) -> Option<&Op> {
        self.ops.get(&op)
    }

    /// Container creates in flight, oldest first.
    pub fn creates(&self) -> impl Iterator<Item = (OpId, &CreateOp)> {
        self.ops.iter().filter_map(|(id, op)| match op {
            Op::Create(c) => Some((*id, c)),
            Op::Reserve(_) => None,
        })
    }

    /// How many container creates are in flight (the count of [`State::creates`], in O(1)).
    pub fn creates_in_flight(&self) -> usize {
        self.creates_in_flight
    }

    /// Reserves in flight, oldest first.
    pub fn reserves(&self) -> impl Iterator<Item = (OpId, &ReserveOp)> {
        self.ops.iter().filter_map(|(id, op)| match op {
            Op::Reserve(r) => Some((*id, r)),
            Op::Create(_) => None,
        })
    }

    /// The memory a new node is expected to offer: the largest node seen, else the option.
    pub fn expected_node_bytes(&self) -> u64 {
        self.store
            .max_node_capacity()
            .unwrap_or(self.opts.expected_node_bytes)
    }

    /// Asks for one more node.
    pub fn start_reserve(&mut self, now: Millis, out: &mut Vec<Decision>) -> OpId {
        let op = self.new_op();
        let expected_bytes = self.expected_node_bytes();
        self.ops.insert(
            op,
            Op::Reserve(ReserveOp {
                started_at: now,
                expected_bytes,
                planned_bytes: 0,
                waiters: Vec::new(),
            }),
        );
        out.push(Decision::ReserveNode { op });
        self.reasons
            .explain(Some(ReasonKind::Reserve), out.len() - 1, || {
                format!(
                    "reserve a node ({} expected): no held node has room for what waits",
                    reasons::bytes(expected_bytes)
                )
            });
        op
    }

    /// Makes a waiting request wait for reserve `op` (planning its function's memory there).
    pub fn bind_to_reserve(&mut self, request_id: &Text, op: OpId) -> bool {
        let Some(w) = self.waiting.get_mut(request_id) else {
            return false;
        };
        let Some(Op::Reserve(r)) = self.ops.get_mut(&op) else {
            return false;
        };
        let mem = self
            .store
            .function(w.function)
            .map_or(0, |f| f.spec.memory_bytes);
        w.bound = Some(op);
        r.planned_bytes += mem;
        r.waiters.push(request_id.clone());
        true
    }

    /// Applies a reserved node. Returns its key and the requests that waited for it (still
    /// waiting, in arrival order, now unbound) for the policy to place.
    pub fn node_reserved(
        &mut self,
        now: Millis,
        op: OpId,
        info: NodeInfo,
    ) -> Result<(NodeKey, Vec<Text>), CoreError> {
        if !matches!(self.ops.get(&op), Some(Op::Reserve(_))) {
            return Err(CoreError::UnknownOperation {
                op,
                event: "NodeReserved",
            });
        }
        let Some(Op::Reserve(r)) = self.ops.remove(&op) else {
            return Err(CoreError::Inconsistent("reserve op vanished".into()));
        };
        if let Some(held) = self.store.node_by_id(&info.id) {
            // Adopted while the reserve was in flight (see `recovery`): the same node.
            self.observe(now);
            return Ok((held, self.unbind(r.waiters)));
        }
        self.observe(now);
        let key = self
            .store
            .insert_node(Node::new(info, now))
            .map_err(|d| CoreError::Inconsistent(format!("duplicate node {}", d.0)))?;
        Ok((key, self.unbind(r.waiters)))
    }

    /// Applies a failed reserve. Returns the requests that waited for it (still waiting,
    /// now unbound).
    pub fn reserve_failed(&mut self, op: OpId) -> Result<Vec<Text>, CoreError> {
        match self.ops.remove(&op) {
            Some(Op::Reserve(r)) => Ok(self.unbind(r.waiters)),
            Some(other) => {
                self.ops.insert(op, other);
                Err(CoreError::UnknownOperation {
                    op,
                    event: "NodeReserveFailed",
                })
            }
            None => Err(CoreError::UnknownOperation {
                op,
                event: "NodeReserveFailed",
            }),
        }
    }

    pub(super) fn unbind(&mut self, waiters: Vec<Text>) -> Vec<Text> {
        waiters
            .into_iter()
            .filter(|id| match self.waiting.get_mut(id) {
                Some(w) => {
                    w.bound = None;
                    true
                }
                None => false,
            })
            .collect()
    }

    /// Places a container of `function` on `node` (its memory counts from now on) and asks
    /// for its creation, meant for `for_request` if given (which then waits for it).
    pub fn start_create(
        &mut self,
        now: Millis,
        node: NodeKey,
        function: FunctionKey,
        for_request: Option<Text>,
        out: &mut Vec<Decision>,
    ) -> Option<OpId> {
        let spec = self.store.function(function)?.spec.clone();
        let addr = {
            let mut n = self.store.node_mut(node)?;
            n.used_bytes += spec.memory_bytes;
            n.containers += 1;
            n.addr()
        };
        if let Some(f) = self.store.function_mut(function) {
            f.creating += 1;
        }
        let op = self.new_op();
        let for_request = for_request.filter(|r| self.waiting.contains_key(r));
        if let Some(w) = for_request.as_ref().and_then(|r| self.waiting.get_mut(r)) {
            w.bound = Some(op);
        }
        self.creates_in_flight += 1;
        self.ops.insert(
            op,
            Op::Create(CreateOp {
                started_at: now,
                node,
                function,
                memory_bytes: spec.memory_bytes,
                for_request,
            }),
        );
        let (at, node_key, function_key) = (out.len(), node, function);
        out.push(Decision::CreateContainer {
            op,
            node: addr,
            function: spec,
        });
        self.reasons.explain(Some(ReasonKind::Create), at, || {
            let Some(Decision::CreateContainer { node, function, .. }) = out.last() else {
                return String::new();
            };
            let free = self
                .store
                .node(node_key)
                .map_or(0, |n| n.capacity_bytes.saturating_sub(n.used_bytes));
            let why = match &self.ops.get(&op) {
                Some(Op::Create(CreateOp {
                    for_request: Some(r),
                    ..
                })) => format!("no idle container of {} for request {r}", function.name),
                _ => {
                    let waiting = self
                        .waiting
                        .values()
                        .filter(|w| w.function == function_key)
                        .count();
                    if waiting > 0 {
                        format!(
                            "no idle container of {} ({waiting} requests wait for one)",
                            function.name
                        )
                    } else {
                        format!("a spare container of {} (none waits yet)", function.name)
                    }
                }
            };
            format!(
                "created on {}: {why}, {} free after its {}",
                node.id,
                reasons::bytes(free),
                reasons::bytes(function.memory_bytes)
            )
        });
        Some(op)
    }

    /// Applies a created container (ready, with `max_concurrency` slots). Returns its key and
    /// the request it was meant for if that request still waits (now unbound).
    pub fn container_created(
        &mut self,
        now: Millis,
        op: OpId,
        container_id: Text,
        max_concurrency: u32,
    ) -> Result<(ContainerKey, Option<Text>), CoreError> {
        let Some(Op::Create(c)) = self.ops.get(&op) else {
            return Err(CoreError::UnknownOperation {
                op,
                event: "ContainerCreated",
            });
        };
        if self.store.container_by_id(&container_id).is_some() {
            return Err(CoreError::Inconsistent(format!(
                "container {container_id} was created twice"
            )));
        }
        let Some(node) = self.store.node(c.node) else {
            return Err(CoreError::Inconsistent(format!(
                "container {container_id} was created on a node the scheduler no longer holds"
            )));
        };
        let Some(function) = self.store.function(c.function) else {
            return Err(CoreError::Inconsistent("function vanished".into()));
        };
        let container = Container {
            id: container_id,
            node_id: node.id.clone(),
            function: function.spec.name.clone(),
            memory_bytes: c.memory_bytes,
            state: ContainerState::Ready,
            in_flight: 0,
            max_concurrency: max_concurrency.max(1),
            created_at: now,
            last_used_at: now,
            served: 0,
            usage: None,
            stale: false,
            missing_samples: 0,
            parked: node.suspect_since.is_some(),
            orphans: 0,
        };
        let (node_key, function_key) = (c.node, c.function);
        let key = self
            .store
            .insert_container(container, node_key, function_key)
            .map_err(|d| CoreError::Inconsistent(format!("duplicate container {}", d.0)))?;
        let Some(Op::Create(c)) = self.ops.remove(&op) else {
            return Err(CoreError::Inconsistent("create op vanished".into()));
        };
        self.creates_in_flight -= 1;
        if let Some(f) = self.store.function_mut(function_key) {
            f.creating = f.creating.saturating_sub(1);
        }
        let request = c.for_request.filter(|r| match self.waiting.get_mut(r) {
            Some(w) => {
                w.bound = None;
                true
            }
            None => false,
        });
        Ok((key, request))
    }

    /// The error for requests that waited on a failed create (`UNAVAILABLE`, or
    /// `FAILED_PRECONDITION` when the node `refused` it; naming the function and the node).
    pub fn create_failed_error(
        &self,
        create: &CreateOp,
        message: &str,
        refused: bool,
    ) -> AcquireError {
        let function = self
            .store
            .function(create.function)
            .map(|f| f.spec.name.clone())
            .unwrap_or_else(|| "?".into());
        let node = self
            .store
            .node(create.node)
            .map(|n| n.id.clone())
            .unwrap_or_else(|| "?".into());
        AcquireError {
            code: if refused {
                AcquireErrorCode::FailedPrecondition
            } else {
                AcquireErrorCode::Unavailable
            },
            message: format!(
                "cannot create a container of function {function} on node {node}: {message}"
            ),
        }
    }

    /// Applies a failed create: the memory placed for it is freed. Returns the op and the
    /// request it was meant for if that request still waits (now unbound).
    pub fn create_failed(&mut self, op: OpId) -> Result<(CreateOp, Option<Text>), CoreError> {
        let c = match self.ops.remove(&op) {
            Some(Op::Create(c)) => {
                self.creates_in_flight -= 1;
                c
            }
            Some(other) => {
                self.ops.insert(op, other);
                return Err(CoreError::UnknownOperation {
                    op,
                    event: "ContainerCreateFailed",
                });
            }
            None => {
                return Err(CoreError::UnknownOperation {
                    op,
                    event: "ContainerCreateFailed",
                });
            }
        };
        if let Some(mut n) = self.store.node_mut(c.node) {
            n.used_bytes = n.used_bytes.saturating_sub(c.memory_bytes);
            n.containers = n.containers.saturating_sub(1);
        }
        if let Some(f) = self.store.function_mut(c.function) {
            f.creating = f.creating.saturating_sub(1);
        }
        let request = c
            .for_request
            .clone()
            .filter(|r| match self.waiting.get_mut(r) {
                Some(w) => {
                    w.bound = None;
                    true
                }
                None => false,
            });
        Ok((c, request))
    }
}
