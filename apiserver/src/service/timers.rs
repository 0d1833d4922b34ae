//! Timers: a function's schedules, what the platform keeps of them, and the seam it is
//! reached by.
//!
//! A schedule names a function, a cron expression with seconds, an IANA time zone, an event
//! to send and a catch-up rule (`core::timers` says which slots fire when). The firing task
//! (`api::timers`) submits each due slot's event to the durable queue (`service::async_calls`)
//! and records the firing here; how the call went is the queue's, read by the invocation id
//! the firing keeps.
//!
//! # No slot fires twice
//!
//! Each firing is submitted with the idempotency key `schedule:<id>:<slot ms>`, and then the
//! firing and the schedule's new anchor (its last fired slot) are committed in one
//! transaction ([`ScheduleStore::record`]). A server that dies between the two finds the
//! slot due again when it starts and submits it again with the same key: the queue answers
//! the first call's id, and only then is the firing recorded. So a slot is submitted to the
//! queue at most once — across any number of restarts — as long as the queue still keeps the
//! first call (`--async-retention-ms` after it finished, unless `--async-max-kept` pushes it
//! out sooner); the queue then delivers it at least once (`api::async_runner`). The exact
//! statement, with its one exception, is in `api::timers`.
//!
//! The store keeps the last [`MAX_FIRINGS_KEPT`] firings of each schedule. A schedule goes
//! with its function (`ON DELETE CASCADE`; the firing task also drops a schedule whose
//! function is gone).

pub use crate::core::timers::{CatchUp, Spec};

/// Firings kept per schedule, newest first.
pub const MAX_FIRINGS_KEPT: usize = 100;
/// Schedules kept in all.
pub const MAX_SCHEDULES: usize = 10_000;

/// A schedule as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schedule {
    /// A UUID.
    pub id: String,
    pub function: String,
    pub cron: String,
    /// An IANA name; `UTC` by default.
    pub tz: String,
    pub event: Vec<u8>,
    pub catch_up: CatchUp,
    pub enabled: bool,
    pub created_at_ms: u64,
    /// The last slot fired or skipped, or when the schedule was made (or resumed): slots
    /// after it are due.
    pub anchor_ms: u64,
}

/// One firing of a schedule.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Firing {
    /// The slot, ms since the Unix epoch.
    pub slot_ms: u64,
    /// When it was submitted.
    pub fired_at_ms: u64,
    /// The queue's invocation id; empty when the queue refused it.
    pub invocation_id: String,
    /// Whether it stands for missed slots (`catch_up = once`).
    pub catch_up: bool,
    /// Why the queue refused it; empty when accepted.
    pub error: String,
}

/// Why a schedule operation failed; each names the field or the flag involved.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    /// A field is bad (`cron: …`, `tz: …`, `catch_up: …`, `event: …`, `function: …`).
    #[error("{0}")]
    BadField(String),
    #[error(
        "function: no function {0:?} is deployed here; deploy it first (faas deploy) or check the name (faas list)"
    )]
    NoFunction(String),
    #[error("no schedule {0:?} here; faas schedules lists them")]
    NotFound(String),
    #[error("{MAX_SCHEDULES} schedules are kept, the most this server keeps; delete some first")]
    TooMany,
    #[error("the schedules could not be stored ({0}); nothing changed, try again")]
    Store(String),
}

/// Keeps schedules and their firings durably. Every method is one committed transaction.
pub trait ScheduleStore: Send + Sync + std::fmt::Debug + 'static {
    /// Keeps a new schedule (its function must be deployed).
    fn create(&self, schedule: &Schedule) -> Result<(), ScheduleError>;
    /// The schedules of `function` (all with `None`), oldest first.
    fn list(&self, function: Option<&str>) -> Result<Vec<Schedule>, ScheduleError>;
    /// Deletes a schedule and its firings; false when there was none.
    fn delete(&self, id: &str) -> Result<bool, ScheduleError>;
    /// Pauses or resumes; a resumed schedule's anchor moves to `now_ms` (nothing missed
    /// while paused fires). False when there is no such schedule.
    fn set_enabled(&self, id: &str, enabled: bool, now_ms: u64) -> Result<bool, ScheduleError>;
    /// Records `firing` and moves the anchor to its slot, and trims the history to
    /// [`MAX_FIRINGS_KEPT`], in one transaction. False when the schedule is gone.
    fn record(&self, id: &str, firing: &Firing) -> Result<bool, ScheduleError>;
    /// Moves the anchor forward to `anchor_ms` without a firing (missed slots skipped).
    fn advance(&self, id: &str, anchor_ms: u64) -> Result<(), ScheduleError>;
    /// The newest `limit` firings of a schedule, newest first.
    fn firings(&self, id: &str, limit: usize) -> Result<Vec<Firing>, ScheduleError>;
}

/// Checks the fields of a new schedule; the error names the field.
pub fn validate(
    cron: &str,
    tz: &str,
    catch_up: &str,
    event: &[u8],
    max_event_bytes: usize,
) -> Result<(Spec, CatchUp), ScheduleError> {
    let spec = Spec::parse(cron, tz).map_err(ScheduleError::BadField)?;
    let rule = CatchUp::parse(catch_up).map_err(ScheduleError::BadField)?;
    if event.len() > max_event_bytes {
        return Err(ScheduleError::BadField(format!(
            "event: {} bytes, more than the {max_event_bytes} an event may have (--max-event-bytes)",
            event.len()
        )));
    }
    Ok((spec, rule))
}

/// The idempotency key of a schedule's slot.
pub fn idempotency_key(schedule_id: &str, slot_ms: u64) -> String {
    format!("schedule:{schedule_id}:{slot_ms}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_names_each_field() {
        let v = |cron, tz, rule, event: &[u8]| validate(cron, tz, rule, event, 4).unwrap_err();
        let msg = |e: ScheduleError| e.to_string();
        assert!(msg(v("* * *", "", "", b"")).starts_with("cron: "));
        assert!(msg(v("* * * * * *", "Nowhere/City", "", b"")).starts_with("tz: "));
        assert!(msg(v("* * * * * *", "UTC", "always", b"")).starts_with("catch_up: "));
        assert!(msg(v("* * * * * *", "UTC", "once", b"12345")).starts_with("event: "));
        assert!(validate("* * * * * *", "Europe/Paris", "once", b"1234", 4).is_ok());
    }

    #[test]
    fn the_key_names_schedule_and_slot() {
        assert_eq!(idempotency_key("abc", 1_000), "schedule:abc:1000");
    }
}
