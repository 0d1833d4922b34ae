//! The warm pool: a few containers started ahead of time, bound to no function, so that a
//! create binds one (one Bind call, then the runtime's limits) instead of starting a
//! container while the caller waits.
//!
//! Pool containers are the runtime's like any other (so the runtime's shutdown and orphan
//! clean-up cover them) but not the node's: the contest protocol never sees them (not in
//! GetStats' container list, not in the committed memory, unknown to Invoke and Remove) until
//! a create takes one and it becomes that create's container. Binding is a Bind call (the
//! container service checks the function as it checks its start-up flags), then the
//! runtime's [`Runtime::assign`] (the docker runtime raises the container's limits).
//!
//! Filling runs in the background: [`WarmPool::fill`] starts what is missing, a take refills
//! [`REFILL_DELAY`] after it, and a failed start is retried after a pause that doubles up to
//! [`RETRY_MAX`]. A container that dies while it waits ([`WarmPool::reap`], fed by the
//! node's stats) or fails to bind is discarded (stopped in the background) and replaced; a
//! create that finds no container that binds falls back to a normal start.
//! [`WarmPool::shutdown`] stops the filling and waits for the background work; the runtime's
//! own shutdown then stops whatever pool containers are left.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;

use super::ports::{ContainerInvoker, InvokeError, Runtime};
use crate::model::{ContainerHandle, ContainerSpec, WarmPoolStats};

/// The first pause after a failed start; it doubles after each further failure.
pub const RETRY_FIRST: Duration = Duration::from_millis(500);
/// The longest pause between failed starts.
pub const RETRY_MAX: Duration = Duration::from_secs(30);
/// How long a Bind call may take before the pool container is given up (far above a healthy
/// one's answer, see `docs/EXPERIMENTS.md`; the create then falls back to a
/// normal start).
pub const BIND_TIMEOUT: Duration = Duration::from_secs(2);
/// How long after a take the pool starts the replacement: the create's reply and the
/// function's first invocation then do not share the CPU with a container starting up; it
/// is small next to a Docker container's start (why: `docs/EXPERIMENTS.md`,
/// "The refill delay").
pub const REFILL_DELAY: Duration = Duration::from_millis(20);
/// The largest pool a node accepts.
pub const MAX_SIZE: usize = 64;

#[derive(Debug, Default)]
struct PoolState {
    /// Started and answering, oldest first.
    ready: VecDeque<ContainerHandle>,
    /// Starts under way (including those pausing before a retry).
    starting: usize,
    closed: bool,
}

/// Why a pool container did not bind.
enum BindFailure {
    /// The container service refused the function (a bad handler...): the container is
    /// still unbound and fine.
    Refused(String),
    /// The container is dead, silent, already bound, or its resources could not be set.
    Broken(String),
}

#[derive(Debug, Default)]
struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
    discarded: AtomicU64,
    start_failures: AtomicU64,
}

/// Unbound containers kept ready for creates.
pub struct WarmPool {
    size: usize,
    runtime: Arc<dyn Runtime>,
    invoker: Arc<dyn ContainerInvoker>,
    ready_timeout: Duration,
    state: Mutex<PoolState>,
    tasks: Mutex<JoinSet<()>>,
    closed: watch::Sender<bool>,
    counters: Counters,
}

impl std::fmt::Debug for WarmPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WarmPool")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl WarmPool {
    /// A pool keeping `size` containers of `runtime` (0 = off); a new container must answer
    /// `invoker`'s readiness call within `ready_timeout`. Nothing starts before [`fill`].
    ///
    /// [`fill`]: WarmPool::fill
    pub fn new(
        size: usize,
        runtime: Arc<dyn Runtime>,
        invoker: Arc<dyn ContainerInvoker>,
        ready_timeout: Duration,
    ) -> Arc<WarmPool> {
        Arc::new(WarmPool {
            size,
            runtime,
            invoker,
            ready_timeout,
            state: Mutex::new(PoolState::default()),
            tasks: Mutex::new(JoinSet::new()),
            closed: watch::Sender::new(false),
            counters: Counters::default(),
        })
    }

    fn state(&self) -> MutexGuard<'_, PoolState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn spawn(&self, work: impl Future<Output = ()> + Send + 'static) {
        let mut tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
        while tasks.try_join_next().is_some() {}
        tasks.spawn(work);
    }

    /// The pool's figures now.
    pub fn stats(&self) -> WarmPoolStats {
        let (ready, starting) = {
            let s = self.state();
            (s.ready.len(), s.starting)
        };
        let c = &self.counters;
        WarmPoolStats {
            size: self.size,
            ready,
            starting,
            hits: c.hits.load(Ordering::Relaxed),
            misses: c.misses.load(Ordering::Relaxed),
            discarded: c.discarded.load(Ordering::Relaxed),
            start_failures: c.start_failures.load(Ordering::Relaxed),
        }
    }

    /// Starts, in the background, the containers the pool lacks.
    pub fn fill(self: &Arc<Self>) {
        self.fill_after(Duration::ZERO);
    }

    /// Starts, in the background and after `delay`, the containers the pool lacks (they
    /// count as starting from now on).
    fn fill_after(self: &Arc<Self>, delay: Duration) {
        let missing = {
            let mut s = self.state();
            if s.closed {
                return;
            }
            let missing = self.size.saturating_sub(s.ready.len() + s.starting);
            s.starting += missing;
            missing
        };
        for _ in 0..missing {
            let pool = self.clone();
            self.spawn(async move { pool.keep_one(delay).await });
        }
    }

    /// After `delay`, starts one pool container, pausing and retrying after failures, until
    /// it is in the pool or the pool closes.
    async fn keep_one(self: Arc<Self>, delay: Duration) {
        if !delay.is_zero() && self.pause_unless_closed(delay).await {
            self.state().starting -= 1;
            return;
        }
        let mut pause = RETRY_FIRST;
        loop {
            match self.start_one().await {
                Ok(handle) => {
                    let closed = {
                        let mut s = self.state();
                        s.starting -= 1;
                        if !s.closed {
                            s.ready.push_back(handle.clone());
                        }
                        s.closed
                    };
                    if closed {
                        self.stop(&handle.id).await;
                    } else {
                        tracing::debug!(container = %handle.id, "warm pool container ready");
                    }
                    return;
                }
                Err(message) => {
                    self.counters.start_failures.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        error = %message,
                        retry_in_ms = pause.as_millis() as u64,
                        "a warm pool container failed to start"
                    );
                    if self.pause_unless_closed(pause).await {
                        self.state().starting -= 1;
                        return;
                    }
                    pause = (pause * 2).min(RETRY_MAX);
                }
            }
        }
    }

    /// Sleeps `pause`; `true` (at once) if the pool closes meanwhile.
    async fn pause_unless_closed(&self, pause: Duration) -> bool {
        let mut closed = self.closed.subscribe();
        tokio::select! {
            _ = tokio::time::sleep(pause) => self.state().closed,
            _ = closed.wait_for(|c| *c) => true,
        }
    }

    async fn start_one(&self) -> Result<ContainerHandle, String> {
        if self.state().closed {
            return Err("the warm pool is closed".into());
        }
        let handle = self
            .runtime
            .start_unbound()
            .await
            .map_err(|e| e.to_string())?;
        if let Err(e) = self.invoker.ready(&handle, self.ready_timeout).await {
            self.stop(&handle.id).await;
            return Err(format!("container {} did not answer: {e}", handle.id));
        }
        Ok(handle)
    }

    /// Forgets a pool container and stops it (now, awaited).
    async fn stop(&self, id: &str) {
        self.invoker.forget(id);
        if let Err(e) = self.runtime.remove(id).await {
            tracing::debug!(container = id, error = %e, "warm pool container already gone");
        }
    }

    /// Throws a pool container away: stopped in the background.
    fn discard(self: &Arc<Self>, handle: ContainerHandle, reason: &str) {
        self.counters.discarded.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(container = %handle.id, %reason, "warm pool container discarded");
        self.invoker.forget(&handle.id);
        let pool = self.clone();
        self.spawn(async move { pool.stop(&handle.id).await });
    }

    /// Takes a ready container and binds it to `spec`'s function; `None` (a miss) when the
    /// pool is off, empty or closed, when no ready container binds, or when the container
    /// service refuses the function (the container then goes back to the pool, and the
    /// normal start reports the refusal as before). The pool refills in the background,
    /// [`REFILL_DELAY`] later.
    pub async fn take(self: &Arc<Self>, spec: &ContainerSpec) -> Option<ContainerHandle> {
        if self.size == 0 {
            return None;
        }
        let taken = loop {
            let next = {
                let mut s = self.state();
                if s.closed {
                    return None;
                }
                s.ready.pop_front()
            };
            let Some(handle) = next else {
                break None;
            };
            match self.bind(&handle, spec).await {
                Ok(()) => break Some(handle),
                Err(BindFailure::Refused(message)) => {
                    tracing::debug!(
                        container = %handle.id,
                        %message,
                        "the function was refused; the container stays in the pool"
                    );
                    let mut s = self.state();
                    if !s.closed {
                        s.ready.push_front(handle);
                    }
                    break None;
                }
                Err(BindFailure::Broken(message)) => {
                    self.discard(handle, &format!("cannot bind it: {message}"))
                }
            }
        };
        let counter = match taken {
            Some(_) => &self.counters.hits,
            None => &self.counters.misses,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        self.fill_after(REFILL_DELAY);
        taken
    }

    /// Binds the container (the Bind call checks the function), then gives it the
    /// function's resources.
    async fn bind(
        &self,
        handle: &ContainerHandle,
        spec: &ContainerSpec,
    ) -> Result<(), BindFailure> {
        let timeout = BIND_TIMEOUT.min(self.ready_timeout);
        match self.invoker.bind(handle, spec, timeout).await {
            Ok(()) => {}
            Err(InvokeError::InvalidArgument(m)) => return Err(BindFailure::Refused(m)),
            Err(e) => return Err(BindFailure::Broken(e.to_string())),
        }
        self.runtime
            .assign(&handle.id, spec)
            .await
            .map_err(|e| BindFailure::Broken(e.to_string()))
    }

    /// Discards and replaces the ready containers among `dead` (ids the runtime reports
    /// exited); other ids are ignored.
    pub fn reap(self: &Arc<Self>, dead: &[String]) {
        if dead.is_empty() {
            return;
        }
        let mut gone = Vec::new();
        self.state().ready.retain(|h| {
            let dead = dead.contains(&h.id);
            if dead {
                gone.push(h.clone());
            }
            !dead
        });
        if gone.is_empty() {
            return;
        }
        for handle in gone {
            self.discard(handle, "its process exited while it waited");
        }
        self.fill();
    }

    /// Stops filling and waits for the background work (starts finish and stop what they
    /// started). The containers still waiting are left to the runtime's shutdown.
    pub async fn shutdown(&self) {
        let waiting: Vec<ContainerHandle> = {
            let mut s = self.state();
            s.closed = true;
            s.ready.drain(..).collect()
        };
        self.closed.send_replace(true);
        for handle in &waiting {
            self.invoker.forget(&handle.id);
        }
        loop {
            let mut tasks = {
                let mut guard = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
                std::mem::take(&mut *guard)
            };
            if tasks.is_empty() {
                break;
            }
            while tasks.join_next().await.is_some() {}
        }
    }
}
