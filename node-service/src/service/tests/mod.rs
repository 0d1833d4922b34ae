//! The node's rules against a fake runtime, invoker and host (defined here, shared by the
//! test modules below).

/// Bundle functions: found, started without the pool, refused clearly.
mod bundles;
/// A function's lines: its containers and its versions', read at once, dead ones said.
mod logs;

/// Creates: validation, the over-commit limit, the runtime failing to list.
mod create;
/// The node's figures: stats and the node's description.
mod figures;
/// Calls in flight: counted from before the container is called until the call is over.
mod in_flight;
/// Invocations: routing, and containers gone before or dying during the call.
mod invoke;
/// The warm pool behind creates.
mod pool;

use super::*;
use crate::core::validate::{validate_create, validate_spec};
use crate::model::{ContainerHandle, ContainerUsage, DiskUsage, Failure, ProcessUsage};
use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::Mutex;

#[derive(Default)]
struct FakeRuntime {
    alive: Mutex<HashMap<String, bool>>,
    removed: Mutex<Vec<String>>,
    next: Mutex<u32>,
    /// Ids started unbound, in order.
    unbound: Mutex<Vec<String>>,
    /// (id, memory) given to pool containers.
    assigned: Mutex<Vec<(String, u64)>>,
    /// How many of the next unbound starts fail.
    failing_starts: Mutex<u32>,
    /// Whether `stats` fails (the runtime cannot list).
    stats_fail: Mutex<bool>,
    /// How many containers were started for creates.
    created: Mutex<u32>,
    /// The bundle of each create, in order.
    bundles: Mutex<Vec<Option<Bundle>>>,
}

impl FakeRuntime {
    fn start(&self, prefix: &str) -> ContainerHandle {
        let mut n = self.next.lock().unwrap();
        *n += 1;
        let id = format!("{prefix}{n}");
        self.alive.lock().unwrap().insert(id.clone(), true);
        ContainerHandle {
            id,
            address: "127.0.0.1:1".into(),
        }
    }
}

#[async_trait]
impl Runtime for FakeRuntime {
    fn name(&self) -> &'static str {
        "fake"
    }
    async fn create(
        &self,
        _spec: &ContainerSpec,
        bundle: Option<&Bundle>,
    ) -> Result<ContainerHandle, RuntimeError> {
        *self.created.lock().unwrap() += 1;
        self.bundles.lock().unwrap().push(bundle.cloned());
        Ok(self.start("c"))
    }
    async fn start_unbound(&self) -> Result<ContainerHandle, RuntimeError> {
        {
            let mut failing = self.failing_starts.lock().unwrap();
            if *failing > 0 {
                *failing -= 1;
                return Err(RuntimeError::Unavailable("no luck".into()));
            }
        }
        let handle = self.start("p");
        self.unbound.lock().unwrap().push(handle.id.clone());
        Ok(handle)
    }
    async fn assign(&self, id: &str, spec: &ContainerSpec) -> Result<(), RuntimeError> {
        self.assigned
            .lock()
            .unwrap()
            .push((id.to_string(), spec.memory_bytes));
        Ok(())
    }
    async fn remove(&self, id: &str) -> Result<(), RuntimeError> {
        self.removed.lock().unwrap().push(id.to_string());
        self.alive
            .lock()
            .unwrap()
            .remove(id)
            .map(|_| ())
            .ok_or_else(|| RuntimeError::NotFound(id.to_string()))
    }
    async fn stats(&self) -> Result<Vec<ContainerUsage>, RuntimeError> {
        if *self.stats_fail.lock().unwrap() {
            return Err(RuntimeError::Unavailable("docker: no answer".into()));
        }
        Ok(self
            .alive
            .lock()
            .unwrap()
            .iter()
            .map(|(id, alive)| ContainerUsage {
                id: id.clone(),
                memory_bytes: 100,
                cpu_pct: 25.0,
                memory_limit_bytes: 1000,
                alive: *alive,
            })
            .collect())
    }
    async fn liveness(&self, id: &str) -> Liveness {
        match self.alive.lock().unwrap().get(id) {
            Some(true) => Liveness::Running,
            Some(false) => Liveness::Exited,
            None => Liveness::Unknown,
        }
    }
    async fn shutdown(&self) {
        self.alive.lock().unwrap().clear();
    }
}

#[derive(Default)]
struct FakeInvoker {
    replies: Mutex<Vec<Result<Invocation, InvokeError>>>,
    calls: Mutex<Vec<(InvokeCall, Duration)>>,
    not_ready: bool,
    /// (container id, function) of every Bind.
    binds: Mutex<Vec<(String, String)>>,
    bind_error: Option<InvokeError>,
    /// When set, each invocation waits for a permit of it before it answers.
    gate: Option<Arc<tokio::sync::Semaphore>>,
}

#[async_trait]
impl ContainerInvoker for FakeInvoker {
    async fn ready(&self, _h: &ContainerHandle, t: Duration) -> Result<(), InvokeError> {
        if self.not_ready {
            Err(InvokeError::NoAnswer(t))
        } else {
            Ok(())
        }
    }
    async fn bind(
        &self,
        h: &ContainerHandle,
        spec: &ContainerSpec,
        _t: Duration,
    ) -> Result<(), InvokeError> {
        if let Some(e) = &self.bind_error {
            return Err(e.clone());
        }
        self.binds
            .lock()
            .unwrap()
            .push((h.id.clone(), spec.function_name.clone()));
        Ok(())
    }
    async fn invoke(
        &self,
        _c: &Container,
        call: InvokeCall,
        deadline: Duration,
    ) -> Result<Invocation, InvokeError> {
        self.calls.lock().unwrap().push((call, deadline));
        if let Some(gate) = &self.gate {
            gate.acquire().await.expect("gate open").forget();
        }
        self.replies
            .lock()
            .unwrap()
            .pop()
            .unwrap_or_else(|| Ok(Invocation::default()))
    }
    fn forget(&self, _id: &str) {}
}

/// A host whose wall clock moves 1 ms forward at each reading.
struct FakeHost {
    clock: std::sync::atomic::AtomicI64,
}

impl Default for FakeHost {
    fn default() -> FakeHost {
        FakeHost {
            clock: std::sync::atomic::AtomicI64::new(1_000_000),
        }
    }
}

impl HostProbe for FakeHost {
    fn now_ms(&self) -> i64 {
        self.clock
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }
    fn own_usage(&self) -> ProcessUsage {
        ProcessUsage {
            memory_bytes: 50,
            cpu_pct: 1.5,
        }
    }
    fn disk(&self) -> DiskUsage {
        DiskUsage {
            total_bytes: 10,
            avail_bytes: 5,
            total_inodes: 4,
            free_inodes: 2,
        }
    }
}

fn node(invoker: FakeInvoker) -> (Node, Arc<FakeRuntime>, Arc<FakeInvoker>) {
    let runtime = Arc::new(FakeRuntime::default());
    let invoker = Arc::new(invoker);
    let identity = NodeIdentity {
        node_id: "n1".into(),
        live_id: "live".into(),
        total_memory_bytes: 1000,
        max_committed_bytes: 2000,
        ready_timeout: Duration::from_secs(1),
        machine: "m1".into(),
    };
    let node = Node::new(
        identity,
        runtime.clone(),
        invoker.clone(),
        Arc::new(FakeHost::default()),
    );
    (node, runtime, invoker)
}

fn meta(name: &str, handler: &str, memory: i64, timeout: i64) -> Option<FunctionMeta> {
    Some(FunctionMeta {
        function_name: name.into(),
        handler: handler.into(),
        timeout_ms: timeout,
        memory_bytes: memory,
    })
}

/// A container of function "f" with `handler` and `memory`, created on `node`.
async fn created(node: &Node, handler: &str, memory: i64) -> Container {
    let spec = validate_spec(meta("f", handler, memory, 0)).unwrap();
    node.create_container(spec).await.unwrap().container
}

fn pooled(invoker: FakeInvoker, size: usize) -> (Node, Arc<FakeRuntime>, Arc<FakeInvoker>) {
    let (node, runtime, invoker) = node(invoker);
    let node = node.with_warm_pool(size);
    node.warm_pool().fill();
    (node, runtime, invoker)
}

/// Lets the pool's background work run until `done` holds.
async fn until(node: &Node, done: impl Fn(&crate::model::WarmPoolStats) -> bool) {
    while !done(&node.warm_pool().stats()) {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// A node whose invocations wait at a gate the test opens, and one container of "f".
async fn gated() -> (
    Arc<Node>,
    Arc<FakeRuntime>,
    Arc<FakeInvoker>,
    Arc<tokio::sync::Semaphore>,
    Container,
) {
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let (node, runtime, invoker) = node(FakeInvoker {
        gate: Some(gate.clone()),
        ..Default::default()
    });
    let c = created(&node, "sleep", 128).await;
    (Arc::new(node), runtime, invoker, gate, c)
}

/// Starts an invocation of `c` and returns once it is inside the container (the
/// invoker holds it at the gate).
async fn start_call(
    node: &Arc<Node>,
    invoker: &FakeInvoker,
    c: &Container,
) -> tokio::task::JoinHandle<Result<Invocation, NodeError>> {
    let before = invoker.calls.lock().unwrap().len();
    let call = {
        let (node, id) = (node.clone(), c.id.clone());
        tokio::spawn(async move { node.invoke(&id, "r".into(), vec![], None).await })
    };
    while invoker.calls.lock().unwrap().len() == before {
        tokio::task::yield_now().await;
    }
    call
}

async fn described(node: &Node, id: &str) -> ContainerDescription {
    let d = node.describe().await.unwrap();
    d.containers.into_iter().find(|c| c.id == id).unwrap()
}
