//! The orphan timeout: a node that nobody calls any more stops by itself.
//!
//! The resource manager starts its nodes detached, so that they outlive a restart of the
//! resource manager (which then re-adopts them). The price: if the platform is gone for good,
//! nobody is left to stop them. With `--orphan-timeout-ms`, a node that hears no gRPC call at
//! all (the contest's `NodeService`, `NodeAdmin`, `grpc.health.v1`) for that long stops as on
//! SIGTERM, its containers with it. A live platform never lets that happen: the resource
//! manager probes its nodes' health and the scheduler polls `GetStats` every second.
//!
//! [`Activity`] is what the rule reads. Two kinds of stamps feed it:
//!
//! - every call's arrival ([`Activity::touch`]): the api layer stamps it from an interceptor
//!   on the whole server, so no service and no method can be forgotten;
//! - work that lasts ([`Activity::begin`] returns a [`Busy`] guard): the node's invocations,
//!   creates and removes. A node never stops under a call it is still answering (an
//!   invocation may run for the function's whole timeout), and the end of the work counts as
//!   the latest sign of life, so the timeout runs from whichever came last.
//!
//! [`Activity::idle`] resolves once the node has been idle for the timeout with nothing under
//! way; the caller then stops the server. Stamping is one atomic `fetch_max` per call (no
//! lock), and the watcher sleeps until the earliest moment the node could be idle for long
//! enough instead of polling.
//!
//! Time is tokio's monotonic clock, as for the warm pool's retry pauses: a wall-clock jump
//! cannot stop a node, and the rule is tested with the clock paused.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// When the node last heard from anyone, and what it is still doing.
#[derive(Debug)]
pub struct Activity {
    origin: Instant,
    /// Nanoseconds from `origin` to the latest sign of life (0: none since the start).
    last_nanos: AtomicU64,
    /// Work under way ([`Busy`] guards alive).
    busy: AtomicUsize,
    /// Calls heard in the node's life.
    heard: AtomicU64,
}

impl Default for Activity {
    fn default() -> Activity {
        Activity::new()
    }
}

impl Activity {
    /// Idle since now: a node that is never called times out one timeout after its start.
    pub fn new() -> Activity {
        Activity {
            origin: faas_common::clock::tokio_instant(),
            last_nanos: AtomicU64::new(0),
            busy: AtomicUsize::new(0),
            heard: AtomicU64::new(0),
        }
    }

    fn now_nanos(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn stamp(&self) {
        self.last_nanos
            .fetch_max(self.now_nanos(), Ordering::SeqCst);
    }

    /// A call arrived.
    pub fn touch(&self) {
        self.heard.fetch_add(1, Ordering::Relaxed);
        self.stamp();
    }

    /// Work that lasts starts now; the node is not idle until the guard drops (whichever way
    /// the work ends: done, failed, or its future dropped).
    pub fn begin(&self) -> Busy<'_> {
        self.busy.fetch_add(1, Ordering::SeqCst);
        self.stamp();
        Busy(self)
    }

    /// Calls heard since the start.
    pub fn heard(&self) -> u64 {
        self.heard.load(Ordering::Relaxed)
    }

    /// Work under way now.
    pub fn busy(&self) -> usize {
        self.busy.load(Ordering::SeqCst)
    }

    /// How long since the latest sign of life (the start, a call, the end of some work).
    pub fn idle_for(&self) -> Duration {
        Duration::from_nanos(
            self.now_nanos()
                .saturating_sub(self.last_nanos.load(Ordering::SeqCst)),
        )
    }

    /// Resolves once nothing happened for `timeout` and no work is under way.
    pub async fn idle(&self, timeout: Duration) {
        let timeout_nanos = u64::try_from(timeout.as_nanos()).unwrap_or(u64::MAX);
        loop {
            let last = self.last_nanos.load(Ordering::SeqCst);
            let due = last.saturating_add(timeout_nanos);
            let now = self.now_nanos();
            if now < due {
                tokio::time::sleep(Duration::from_nanos(due - now)).await;
                continue;
            }
            if self.busy() > 0 {
                // The work's end stamps a new sign of life; look again one timeout later,
                // which is before that stamp plus the timeout, whenever the work ends.
                tokio::time::sleep(timeout).await;
                continue;
            }
            // A guard stamps before it leaves `busy`: work that ended after `last` was read
            // shows here as a newer stamp.
            if self.last_nanos.load(Ordering::SeqCst) == last {
                return;
            }
        }
    }
}

/// Work under way (see [`Activity::begin`]); its drop is a sign of life.
#[derive(Debug)]
#[must_use = "the work counts only while the guard lives"]
pub struct Busy<'a>(&'a Activity);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.stamp();
        self.0.busy.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    const TIMEOUT: Duration = Duration::from_millis(1000);

    /// Runs `script` beside the watcher; returns when (from the start) the watcher resolved.
    async fn idle_at<F, Fut>(script: F) -> Duration
    where
        F: FnOnce(Arc<Activity>) -> Fut,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let start = faas_common::clock::tokio_instant();
        let activity = Arc::new(Activity::new());
        let script = tokio::spawn(script(activity.clone()));
        activity.idle(TIMEOUT).await;
        let at = start.elapsed();
        script.abort();
        at
    }

    #[tokio::test(start_paused = true)]
    async fn a_node_never_called_is_idle_one_timeout_after_its_start() {
        assert_eq!(idle_at(|_| async {}).await, TIMEOUT);
    }

    #[tokio::test(start_paused = true)]
    async fn every_call_restarts_the_timeout() {
        let at = idle_at(|a| async move {
            for _ in 0..3 {
                tokio::time::sleep(Duration::from_millis(900)).await;
                a.touch();
            }
        })
        .await;
        assert_eq!(at, Duration::from_millis(2700) + TIMEOUT);
    }

    #[tokio::test(start_paused = true)]
    async fn work_under_way_holds_the_node_and_its_end_restarts_the_timeout() {
        let at = idle_at(|a| async move {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let busy = a.begin();
            // Far longer than the timeout: an invocation of a slow function.
            tokio::time::sleep(Duration::from_millis(5_250)).await;
            drop(busy);
        })
        .await;
        assert_eq!(at, Duration::from_millis(5_750) + TIMEOUT);
    }

    #[tokio::test(start_paused = true)]
    async fn overlapping_work_holds_the_node_until_the_last_ends() {
        let at = idle_at(|a| async move {
            let first = a.begin();
            tokio::time::sleep(Duration::from_millis(300)).await;
            let second = a.begin();
            tokio::time::sleep(Duration::from_millis(2_000)).await;
            drop(second);
            assert_eq!(a.busy(), 1);
            tokio::time::sleep(Duration::from_millis(1_500)).await;
            drop(first);
        })
        .await;
        assert_eq!(at, Duration::from_millis(3_800) + TIMEOUT);
    }

    #[tokio::test(start_paused = true)]
    async fn a_dropped_future_ends_its_work() {
        let at = idle_at(|a| async move {
            let work = {
                let a = a.clone();
                tokio::spawn(async move {
                    let _busy = a.begin();
                    std::future::pending::<()>().await;
                })
            };
            tokio::time::sleep(Duration::from_millis(4_000)).await;
            work.abort();
            let _ = work.await;
            assert_eq!(a.busy(), 0);
        })
        .await;
        assert_eq!(at, Duration::from_millis(4_000) + TIMEOUT);
    }

    #[tokio::test(start_paused = true)]
    async fn idle_for_and_heard_follow_the_calls() {
        let a = Activity::new();
        tokio::time::advance(Duration::from_millis(700)).await;
        assert_eq!(a.idle_for(), Duration::from_millis(700));
        a.touch();
        a.touch();
        assert_eq!((a.idle_for(), a.heard()), (Duration::ZERO, 2));
        tokio::time::advance(Duration::from_millis(50)).await;
        drop(a.begin());
        assert_eq!((a.idle_for(), a.heard()), (Duration::ZERO, 2));
    }
}
