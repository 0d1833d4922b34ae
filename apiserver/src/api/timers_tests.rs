//! The firing task in tokio's paused time: a fake port whose clock is the paused clock and
//! whose queue dedupes idempotency keys as the real one does, over the real SQLite store (in
//! memory). Virtual seconds pass at once, so every slot is checked exactly.

use std::collections::HashMap;
use std::sync::Mutex;

use super::*;
use crate::service::timers::CatchUp;
use crate::store::SqliteTimers;

/// 2030-01-01 00:00:00.500 UTC: half a second before a slot.
const BASE_MS: u64 = 1_893_456_000_500;

#[derive(Debug)]
struct FakePort {
    origin: tokio::time::Instant,
    /// Every submit: its key and when (virtual ms).
    submits: Mutex<Vec<(String, u64)>>,
    /// The queue: key -> invocation id.
    queue: Mutex<HashMap<String, String>>,
}

impl FakePort {
    fn new() -> Arc<FakePort> {
        Arc::new(FakePort {
            origin: faas_common::clock::tokio_instant(),
            submits: Mutex::default(),
            queue: Mutex::default(),
        })
    }

    /// The slots queued (each key once), in order.
    fn queued_slots(&self) -> Vec<u64> {
        let mut slots: Vec<u64> = self
            .queue
            .lock()
            .unwrap()
            .keys()
            .map(|k| k.rsplit(':').next().unwrap().parse().unwrap())
            .collect();
        slots.sort_unstable();
        slots
    }
}

#[tonic::async_trait]
impl FirePort for FakePort {
    fn now_ms(&self) -> u64 {
        BASE_MS + self.origin.elapsed().as_millis() as u64
    }

    fn deployed(&self, function: &str) -> bool {
        function == "hello"
    }

    fn max_event_bytes(&self) -> usize {
        16
    }

    async fn submit(&self, _: &str, _: Vec<u8>, key: String) -> Result<Submitted, String> {
        self.submits
            .lock()
            .unwrap()
            .push((key.clone(), self.now_ms()));
        let mut queue = self.queue.lock().unwrap();
        let new = !queue.contains_key(&key);
        let id = queue
            .entry(key)
            .or_insert_with(|| uuid::Uuid::new_v4().to_string())
            .clone();
        Ok(Submitted { id, new })
    }

    async fn invocation(&self, _: &str) -> Option<Invocation> {
        None
    }

    fn fired(&self, _: &str, _: u64) {}

    fn missed(&self, _: &str, _: u64) {}
}

/// A store that loses the record of the `n`th firing and the anchor's move after it (as a
/// server killed between the submit and the record would), then works.
#[derive(Debug)]
struct LosesOneRecord {
    inner: SqliteTimers,
    countdown: Mutex<u32>,
    lose_advance: Mutex<bool>,
}

impl ScheduleStore for LosesOneRecord {
    fn create(&self, s: &Schedule) -> Result<(), ScheduleError> {
        self.inner.create(s)
    }
    fn list(&self, function: Option<&str>) -> Result<Vec<Schedule>, ScheduleError> {
        self.inner.list(function)
    }
    fn delete(&self, id: &str) -> Result<bool, ScheduleError> {
        self.inner.delete(id)
    }
    fn set_enabled(&self, id: &str, enabled: bool, now_ms: u64) -> Result<bool, ScheduleError> {
        self.inner.set_enabled(id, enabled, now_ms)
    }
    fn record(&self, id: &str, firing: &Firing) -> Result<bool, ScheduleError> {
        let mut left = self.countdown.lock().unwrap();
        *left = left.saturating_sub(1);
        if *left == 0 {
            *left = u32::MAX;
            *self.lose_advance.lock().unwrap() = true;
            return Err(ScheduleError::Store("disk gone".into()));
        }
        self.inner.record(id, firing)
    }
    fn advance(&self, id: &str, anchor_ms: u64) -> Result<(), ScheduleError> {
        if std::mem::take(&mut *self.lose_advance.lock().unwrap()) {
            return Err(ScheduleError::Store("disk gone".into()));
        }
        self.inner.advance(id, anchor_ms)
    }
    fn firings(&self, id: &str, limit: usize) -> Result<Vec<Firing>, ScheduleError> {
        self.inner.firings(id, limit)
    }
}

fn every_second(catch_up: &str) -> NewSchedule {
    NewSchedule {
        function: "hello".into(),
        cron: "* * * * * *".into(),
        catch_up: catch_up.into(),
        ..NewSchedule::default()
    }
}

#[tokio::test(start_paused = true)]
async fn each_slot_fires_once_on_time_in_paused_time() {
    let port = FakePort::new();
    let store: Arc<dyn ScheduleStore> = Arc::new(SqliteTimers::in_memory());
    let timers = Timers::with_port(store.clone(), port.clone());
    let made = timers.create(every_second("")).await.unwrap();
    assert_eq!(made.catch_up, CatchUp::Skip);
    timers.start();
    tokio::time::sleep(Duration::from_millis(10_200)).await;
    timers.close();
    // Slots BASE+0.5 s .. BASE+9.5 s: ten, each submitted once, at its slot exactly.
    let want: Vec<u64> = (0..10).map(|i| BASE_MS + 500 + i * 1000).collect();
    assert_eq!(port.queued_slots(), want);
    let submits = port.submits.lock().unwrap().clone();
    assert_eq!(submits.len(), 10, "{submits:?}");
    for (key, at) in &submits {
        let slot: u64 = key.rsplit(':').next().unwrap().parse().unwrap();
        assert_eq!(*at, slot, "{key} submitted at {at}");
    }
    let listed = timers.list(None, 100).await.unwrap();
    assert_eq!(listed[0].firings.len(), 10);
    assert_eq!(listed[0].next_ms, Some(BASE_MS + 10_500));
}

#[tokio::test(start_paused = true)]
async fn a_restart_and_a_lost_record_fire_no_slot_twice() {
    let port = FakePort::new();
    let store: Arc<dyn ScheduleStore> = Arc::new(LosesOneRecord {
        inner: SqliteTimers::in_memory(),
        countdown: Mutex::new(3),
        lose_advance: Mutex::new(false),
    });
    let first = Timers::with_port(store.clone(), port.clone());
    let id = first.create(every_second("once")).await.unwrap().id;
    first.start();
    tokio::time::sleep(Duration::from_millis(5_200)).await;
    // The server stops; a new one starts on the same store 1.5 s later (every slot of the
    // gap is still on time), then a third after 10 s down (catch_up = once).
    first.close();
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let second = Timers::with_port(store.clone(), port.clone());
    second.start();
    tokio::time::sleep(Duration::from_millis(3_000)).await;
    second.close();
    tokio::time::sleep(Duration::from_millis(10_000)).await;
    let third = Timers::with_port(store.clone(), port.clone());
    third.start();
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    third.close();

    let submits = port.submits.lock().unwrap().clone();
    let mut per_key: HashMap<&str, usize> = HashMap::new();
    for (key, _) in &submits {
        *per_key.entry(key.as_str()).or_default() += 1;
    }
    // The third firing's record was lost: its slot was submitted again with the same key (the
    // queue answered the first call), every other slot once.
    let again: Vec<_> = per_key.iter().filter(|(_, n)| **n > 1).collect();
    assert_eq!(again.len(), 1, "{per_key:?}");
    assert_eq!(*again[0].1, 2);
    let queued = port.queued_slots();
    let mut distinct = queued.clone();
    distinct.dedup();
    assert_eq!(queued, distinct);
    // First and second server: every slot up to 9.5 s, once.
    let up_to_second: Vec<u64> = queued
        .iter()
        .copied()
        .filter(|s| *s < BASE_MS + 10_000)
        .collect();
    let want: Vec<u64> = (0..10).map(|i| BASE_MS + 500 + i * 1000).collect();
    assert_eq!(up_to_second, want);
    // The third server: one catch-up firing for the ten missed slots, then on-time ones.
    // It starts at 19.7 s: 10.5 .. 16.5 s are dropped, 17.5 s (more than 2 s old) fires as
    // the catch-up, 18.5 and 19.5 s are on time, then 20.5 and 21.5 s.
    let firings = store.firings(&id, 100).unwrap();
    let caught: Vec<_> = firings.iter().filter(|f| f.catch_up).collect();
    assert_eq!(caught.len(), 1, "{firings:?}");
    assert_eq!(caught[0].slot_ms, BASE_MS + 17_500);
    let after: Vec<u64> = queued
        .iter()
        .copied()
        .filter(|s| *s > BASE_MS + 10_000)
        .collect();
    let want: Vec<u64> = (17..22).map(|i| BASE_MS + 500 + i * 1000).collect();
    assert_eq!(after, want);
}
