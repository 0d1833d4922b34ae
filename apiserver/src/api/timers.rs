//! The firing task of timers: one tokio task that sleeps until the next slot of any enabled
//! schedule, then submits each due slot's event to the durable queue
//! ([`AsyncRunner::submit`], account [`TIMER_ACCOUNT`]) and records the firing.
//!
//! # The guarantee
//!
//! Which slots are due, and what happens to slots missed while the server was down, is the
//! pure rule of `core::timers` (`catch_up = skip` drops them, `once` fires the latest of them
//! once at start). For each due slot the task:
//!
//! 1. submits the event with the idempotency key `schedule:<id>:<slot ms>` — answered once
//!    the call is on disk (`synchronous=FULL`);
//! 2. records the firing (slot, submit time, invocation id) and moves the schedule's anchor
//!    to the slot, in one SQLite transaction.
//!
//! A server killed between 1 and 2 finds the slot due again on restart (if it is still on
//! time, or is the latest missed one under `once`) and submits it with the same key: the
//! queue answers the first call's id and creates nothing. A server killed after 2 never
//! looks at the slot again. So **no slot is submitted to the queue twice**, across any
//! number of `kill -9`s, with one exact exception: the server died between 1 and 2, the slot
//! is still due when it is back (on time, or the latest missed slot under `catch_up = once`),
//! and by then the queue has forgotten the first call (finished more than
//! `--async-retention-ms` ago, or pushed out early by `--async-max-kept`). Under
//! `catch_up = skip` a slot in doubt more than 2 s old is dropped, never submitted again.
//! A submitted call is delivered at least once, as every queued call is
//! (`api::async_runner`): the function may see one slot's event twice only when the server
//! died while that call was running. A slot whose submit the queue refuses (full, the
//! account's limits) is recorded with the refusal and not tried again.
//!
//! The task reaches the rest of the server only through [`FirePort`] (the queue, the
//! registry, the metrics, the wall clock; the live port is the [`AsyncRunner`]), so its unit
//! tests run it in tokio's paused time with a fake queue.
//!
//! The schedules are re-read from the store at every wake-up (at the next slot, at most every
//! second, and at once after a create, delete, pause or resume), so the task holds no state
//! a restart could lose. A schedule whose function is no longer deployed is deleted.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

use crate::api::async_runner::{AsyncRunner, Extras};
use crate::api::front::Call;
use crate::core::timers::plan;
use crate::service::async_calls::{Invocation, Submitted};
use crate::service::routing::RouteContext;
use crate::service::timers::{
    Firing, MAX_FIRINGS_KEPT, Schedule, ScheduleError, ScheduleStore, Spec, idempotency_key,
    validate,
};

/// The account timer firings are submitted (and limited) under.
pub const TIMER_ACCOUNT: &str = "timers";
/// The longest the task sleeps before it looks at the schedules again, ms.
const POLL_MS: u64 = 1_000;

/// A new schedule's fields, as a caller gives them (checked by [`Timers::create`]).
#[derive(Clone, Debug, Default)]
pub struct NewSchedule {
    pub function: String,
    pub cron: String,
    pub tz: String,
    pub event: Vec<u8>,
    pub catch_up: String,
    pub paused: bool,
}

/// A schedule as listed: its next slot and its newest firings with their invocations.
#[derive(Clone, Debug)]
pub struct Listed {
    pub schedule: Schedule,
    pub next_ms: Option<u64>,
    /// Newest first; the invocation while the queue keeps it.
    pub firings: Vec<(Firing, Option<Invocation>)>,
}

/// What the firing task needs from the rest of the server: the queue, the registry, the
/// metrics and the wall clock. The live one is [`AsyncRunner`]; the unit tests' runs in
/// tokio's paused time.
#[tonic::async_trait]
pub trait FirePort: Send + Sync + std::fmt::Debug + 'static {
    /// Wall-clock ms since the Unix epoch.
    fn now_ms(&self) -> u64;
    /// Whether `function` (a plain name) is deployed.
    fn deployed(&self, function: &str) -> bool;
    /// The largest event a call may carry.
    fn max_event_bytes(&self) -> usize;
    /// Submits `event` to `function` through the durable queue with the idempotency `key`.
    async fn submit(
        &self,
        function: &str,
        event: Vec<u8>,
        key: String,
    ) -> Result<Submitted, String>;
    /// A queued call, while the queue keeps it.
    async fn invocation(&self, id: &str) -> Option<Invocation>;
    /// Metrics: a firing submitted `late_ms` after its slot; `n` slots dropped.
    fn fired(&self, function: &str, late_ms: u64);
    fn missed(&self, function: &str, n: u64);
}

#[tonic::async_trait]
impl FirePort for AsyncRunner {
    fn now_ms(&self) -> u64 {
        crate::api::async_runner::now_ms()
    }

    fn deployed(&self, function: &str) -> bool {
        let registry = self.front().router().invoker().registry();
        registry.get(function).is_ok()
    }

    fn max_event_bytes(&self) -> usize {
        self.front().max_event_bytes()
    }

    async fn submit(
        &self,
        function: &str,
        event: Vec<u8>,
        key: String,
    ) -> Result<Submitted, String> {
        let call = Call {
            account_id: TIMER_ACCOUNT.into(),
            function_name: function.to_string(),
            event,
            route: RouteContext::default(),
            deadline: None,
        };
        let extras = Extras {
            idempotency_key: Some(key),
            ..Extras::default()
        };
        AsyncRunner::submit(self, call, extras)
            .await
            .map_err(|e| e.to_string())
    }

    async fn invocation(&self, id: &str) -> Option<Invocation> {
        self.get(id).await
    }

    fn fired(&self, function: &str, late_ms: u64) {
        self.front().metrics().timers.fired(function, late_ms);
    }

    fn missed(&self, function: &str, n: u64) {
        self.front().metrics().timers.missed(function, n);
    }
}

#[derive(Debug)]
struct Inner {
    store: Arc<dyn ScheduleStore>,
    port: Arc<dyn FirePort>,
    wake: Notify,
    stopped: AtomicBool,
}

/// The schedules and their firing task. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Timers {
    inner: Arc<Inner>,
}

impl Timers {
    /// Schedules in `store`, fired through `runner`'s queue; nothing fires before
    /// [`Timers::start`].
    pub fn new(store: Arc<dyn ScheduleStore>, runner: AsyncRunner) -> Timers {
        Timers::with_port(store, Arc::new(runner))
    }

    /// Schedules in `store`, fired through `port`.
    pub fn with_port(store: Arc<dyn ScheduleStore>, port: Arc<dyn FirePort>) -> Timers {
        Timers {
            inner: Arc::new(Inner {
                store,
                port,
                wake: Notify::new(),
                stopped: AtomicBool::new(false),
            }),
        }
    }

    /// Fires in the background until [`Timers::close`].
    pub fn start(&self) {
        tokio::spawn(self.clone().run());
    }

    /// Stops firing (a firing under way finishes).
    pub fn close(&self) {
        self.inner.stopped.store(true, Ordering::SeqCst);
        self.inner.wake.notify_one();
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn ScheduleStore) -> T + Send + 'static,
    ) -> T {
        let store = self.inner.store.clone();
        tokio::task::spawn_blocking(move || f(store.as_ref()))
            .await
            .expect("a schedule store operation does not panic")
    }

    /// Checks and keeps a new schedule; it fires from its first slot after now.
    pub async fn create(&self, new: NewSchedule) -> Result<Schedule, ScheduleError> {
        let max_event = self.inner.port.max_event_bytes();
        let (_, rule) = validate(&new.cron, &new.tz, &new.catch_up, &new.event, max_event)?;
        if new.function.is_empty() || new.function.contains(':') {
            return Err(ScheduleError::BadField(
                "function: name a deployed function by its plain name (not NAME:VERSION or NAME:ALIAS)"
                    .into(),
            ));
        }
        if !self.inner.port.deployed(&new.function) {
            return Err(ScheduleError::NoFunction(new.function));
        }
        let now = self.inner.port.now_ms();
        let schedule = Schedule {
            id: uuid::Uuid::new_v4().to_string(),
            function: new.function,
            cron: new.cron.trim().to_string(),
            tz: if new.tz.is_empty() {
                "UTC".into()
            } else {
                new.tz
            },
            event: new.event,
            catch_up: rule,
            enabled: !new.paused,
            created_at_ms: now,
            anchor_ms: now,
        };
        let kept = schedule.clone();
        self.blocking(move |s| s.create(&kept)).await?;
        tracing::info!(id = %schedule.id, function = %schedule.function, cron = %schedule.cron, tz = %schedule.tz, "schedule created");
        self.inner.wake.notify_one();
        Ok(schedule)
    }

    /// The schedules of `function` (all with `None`), each with its next slot and its newest
    /// `firings` firings.
    pub async fn list(
        &self,
        function: Option<String>,
        firings: usize,
    ) -> Result<Vec<Listed>, ScheduleError> {
        let firings = firings.min(MAX_FIRINGS_KEPT);
        let rows = self
            .blocking(move |s| -> Result<_, ScheduleError> {
                let mut out = Vec::new();
                for schedule in s.list(function.as_deref())? {
                    let fired = s.firings(&schedule.id, firings)?;
                    out.push((schedule, fired));
                }
                Ok(out)
            })
            .await?;
        let now = self.inner.port.now_ms();
        let mut out = Vec::with_capacity(rows.len());
        for (schedule, fired) in rows {
            let next_ms = Spec::parse(&schedule.cron, &schedule.tz)
                .ok()
                .and_then(|spec| spec.next_after(schedule.anchor_ms.max(now)));
            let mut firings = Vec::with_capacity(fired.len());
            for f in fired {
                let invocation = if f.invocation_id.is_empty() {
                    None
                } else {
                    self.inner.port.invocation(&f.invocation_id).await
                };
                firings.push((f, invocation));
            }
            out.push(Listed {
                schedule,
                next_ms,
                firings,
            });
        }
        Ok(out)
    }

    /// Deletes a schedule and its firings.
    pub async fn delete(&self, id: &str) -> Result<(), ScheduleError> {
        let key = id.to_string();
        if !self.blocking(move |s| s.delete(&key)).await? {
            return Err(ScheduleError::NotFound(id.to_string()));
        }
        self.inner.wake.notify_one();
        Ok(())
    }

    /// Pauses or resumes a schedule; answers it as it is now.
    pub async fn pause(&self, id: &str, paused: bool) -> Result<Listed, ScheduleError> {
        let key = id.to_string();
        let now = self.inner.port.now_ms();
        if !self
            .blocking(move |s| s.set_enabled(&key, !paused, now))
            .await?
        {
            return Err(ScheduleError::NotFound(id.to_string()));
        }
        self.inner.wake.notify_one();
        let all = self.list(None, 0).await?;
        all.into_iter()
            .find(|l| l.schedule.id == id)
            .ok_or_else(|| ScheduleError::NotFound(id.to_string()))
    }

    async fn run(self) {
        while !self.inner.stopped.load(Ordering::SeqCst) {
            let next = self.tick(self.inner.port.now_ms()).await;
            let now = self.inner.port.now_ms();
            let wait = next.map_or(POLL_MS, |n| n.saturating_sub(now).min(POLL_MS));
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(wait)) => {}
                _ = self.inner.wake.notified() => {}
            }
        }
    }

    /// Fires every due slot of every enabled schedule at `now`; answers the next slot of any.
    async fn tick(&self, now: u64) -> Option<u64> {
        let schedules = match self.blocking(|s| s.list(None)).await {
            Ok(all) => all,
            Err(e) => {
                tracing::error!(error = %e, "the schedules could not be read");
                return None;
            }
        };
        let mut next: Option<u64> = None;
        for schedule in schedules.into_iter().filter(|s| s.enabled) {
            if !self.inner.port.deployed(&schedule.function) {
                tracing::info!(id = %schedule.id, function = %schedule.function, "the schedule's function is gone: schedule deleted");
                let id = schedule.id.clone();
                let _ = self.blocking(move |s| s.delete(&id)).await;
                continue;
            }
            let spec = match Spec::parse(&schedule.cron, &schedule.tz) {
                Ok(spec) => spec,
                Err(e) => {
                    tracing::error!(id = %schedule.id, error = %e, "a stored schedule does not parse");
                    continue;
                }
            };
            let p = plan(&spec, schedule.catch_up, schedule.anchor_ms, now);
            if p.missed > 0 {
                tracing::warn!(id = %schedule.id, function = %schedule.function, missed = p.missed, catch_up = schedule.catch_up.as_str(), "schedule slots were missed (the server was down or stalled)");
                self.inner.port.missed(&schedule.function, p.missed);
            }
            let slots = p.catch_up.map(|c| (c, true));
            for (slot, catch_up) in slots
                .into_iter()
                .chain(p.on_time.iter().map(|&s| (s, false)))
            {
                self.fire(&schedule, slot, catch_up).await;
            }
            if p.anchor_ms > schedule.anchor_ms {
                let id = schedule.id.clone();
                if let Err(e) = self.blocking(move |s| s.advance(&id, p.anchor_ms)).await {
                    tracing::error!(error = %e, "a schedule's anchor could not be moved");
                }
            }
            next = match (next, p.next_ms) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        next
    }

    /// Submits one slot and records it.
    async fn fire(&self, schedule: &Schedule, slot_ms: u64, catch_up: bool) {
        let key = idempotency_key(&schedule.id, slot_ms);
        let port = &self.inner.port;
        let submitted = port
            .submit(&schedule.function, schedule.event.clone(), key)
            .await;
        let fired_at_ms = port.now_ms();
        let firing = match submitted {
            Ok(s) => {
                if s.new {
                    port.fired(&schedule.function, fired_at_ms.saturating_sub(slot_ms));
                }
                Firing {
                    slot_ms,
                    fired_at_ms,
                    invocation_id: s.id,
                    catch_up,
                    error: String::new(),
                }
            }
            Err(e) => {
                tracing::warn!(id = %schedule.id, slot_ms, error = %e, "the queue refused a schedule's firing");
                Firing {
                    slot_ms,
                    fired_at_ms,
                    catch_up,
                    error: e.to_string(),
                    ..Firing::default()
                }
            }
        };
        let id = schedule.id.clone();
        match self.blocking(move |s| s.record(&id, &firing)).await {
            Ok(_) => {}
            Err(e) => {
                tracing::error!(id = %schedule.id, slot_ms, error = %e, "a firing could not be recorded (a restart submits it again with the same key)")
            }
        }
    }
}

/// The schedules' store: in the database of the data directory (opened after the registry's
/// DAO, which holds the directory's lock and brought the schema up to date), or in memory.
pub fn open_store(
    data_dir: Option<&std::path::Path>,
) -> Result<Arc<dyn ScheduleStore>, crate::Error> {
    let Some(dir) = data_dir else {
        return Ok(Arc::new(crate::store::SqliteTimers::in_memory()));
    };
    let path = dir.join(crate::store::sqlite::DATABASE_FILE);
    let store = crate::store::SqliteTimers::open(&path).map_err(|e| {
        crate::Error::Startup(format!(
            "cannot open the schedules in {}: {e}",
            path.display()
        ))
    })?;
    Ok(Arc::new(store))
}

#[cfg(test)]
#[path = "timers_tests.rs"]
mod tests;
