//! An open-loop load of invocations through the API server, recorded call by call, and what
//! the records say about a fault: calls in flight at it, the first success after it, and
//! when the success rate was back (the figures of `faas_e2e::fault`, on wall-clock
//! instants).
//!
//! The integration tests and `examples/fault_bench.rs` drive their faults with it.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use faas_e2e::fault::{self, Span};
use tokio::task::JoinHandle;

use crate::client::{Api, InvokeOutcome};

/// How one call ended.
#[derive(Clone, Debug)]
pub enum Outcome {
    Ok(InvokeOutcome),
    Failed(tonic::Status),
    /// No answer before the load was stopped.
    Unanswered,
}

/// One invocation of the load.
#[derive(Clone, Debug)]
pub struct Call {
    pub function: String,
    pub started: Instant,
    /// `None` while (or if never) answered.
    pub ended: Option<Instant>,
    pub outcome: Outcome,
}

impl Call {
    pub fn ok(&self) -> Option<&InvokeOutcome> {
        match &self.outcome {
            Outcome::Ok(out) => Some(out),
            _ => None,
        }
    }

    pub fn status(&self) -> Option<&tonic::Status> {
        match &self.outcome {
            Outcome::Failed(status) => Some(status),
            _ => None,
        }
    }

    /// The gRPC code name of a failure (`"OK"` for a success, `"NO_ANSWER"` when unanswered).
    pub fn code_name(&self) -> String {
        match &self.outcome {
            Outcome::Ok(_) => "OK".into(),
            Outcome::Failed(s) => code_name(s.code()),
            Outcome::Unanswered => "NO_ANSWER".into(),
        }
    }

    /// One line for a failure message.
    pub fn describe(&self, origin: Instant) -> String {
        let at = |t: Instant| t.saturating_duration_since(origin).as_secs_f64();
        let how = match &self.outcome {
            Outcome::Ok(out) => format!("OK on {:?}", out.node_id),
            Outcome::Failed(s) => {
                format!("{:?}: {}", s.code(), faas_common::text::clip(s.message()))
            }
            Outcome::Unanswered => "no answer".into(),
        };
        let ended = self
            .ended
            .map_or("never".into(), |t| format!("{:.2}", at(t)));
        format!(
            "{} started {:.2} s ended {ended} s: {how}",
            self.function,
            at(self.started)
        )
    }
}

/// `DEADLINE_EXCEEDED`-style name of a gRPC code.
pub fn code_name(code: tonic::Code) -> String {
    fault::status_name(&format!("{code:?}"))
}

#[derive(Default)]
struct Book {
    done: Vec<Call>,
    running: HashMap<u64, (String, Instant)>,
}

/// A running load: one call every `period`, round-robin over a mix, each call its own task.
pub struct Load {
    book: Arc<Mutex<Book>>,
    stop: Arc<AtomicBool>,
    driver: JoinHandle<Vec<JoinHandle<()>>>,
}

fn lock(book: &Mutex<Book>) -> std::sync::MutexGuard<'_, Book> {
    book.lock().unwrap_or_else(|e| e.into_inner())
}

impl Load {
    /// Starts calling `mix` (function, event) in turn, one call every `period`, as `account`.
    pub fn start(api: Api, account: &str, mix: Vec<(String, Vec<u8>)>, period: Duration) -> Load {
        assert!(!mix.is_empty(), "a load needs at least one call");
        let book = Arc::new(Mutex::new(Book::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let account = account.to_string();
        let driver = {
            let (book, stop) = (book.clone(), stop.clone());
            tokio::spawn(async move {
                let mut tasks = Vec::new();
                let mut ticker = tokio::time::interval(period);
                ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                for n in 0u64.. {
                    ticker.tick().await;
                    if stop.load(Ordering::Acquire) {
                        break;
                    }
                    let (function, event) = mix[n as usize % mix.len()].clone();
                    let started = faas_common::clock::instant();
                    lock(&book).running.insert(n, (function.clone(), started));
                    let (api, book, account) = (api.clone(), book.clone(), account.clone());
                    tasks.push(tokio::spawn(async move {
                        let result = api.invoke(&account, &function, event).await;
                        let ended = Some(faas_common::clock::instant());
                        let outcome = match result {
                            Ok(out) => Outcome::Ok(out),
                            Err(status) => Outcome::Failed(status),
                        };
                        let mut book = lock(&book);
                        book.running.remove(&n);
                        book.done.push(Call {
                            function,
                            started,
                            ended,
                            outcome,
                        });
                    }));
                }
                tasks
            })
        };
        Load { book, stop, driver }
    }

    /// Every call so far, answered or not, by start time.
    pub fn calls(&self) -> Vec<Call> {
        let book = lock(&self.book);
        let mut calls = book.done.clone();
        calls.extend(book.running.values().map(|(function, started)| Call {
            function: function.clone(),
            started: *started,
            ended: None,
            outcome: Outcome::Unanswered,
        }));
        calls.sort_by_key(|c| c.started);
        calls
    }

    /// Polls the calls every 50 ms until `done` holds; false if it did not by `deadline`.
    pub async fn wait_until(&self, deadline: Instant, done: impl Fn(&[Call]) -> bool) -> bool {
        loop {
            if done(&self.calls()) {
                return true;
            }
            if faas_common::clock::instant() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops sending, waits up to `grace` for the calls in flight, gives up on the rest
    /// (recorded as unanswered) and returns every call by start time.
    pub async fn finish(mut self, grace: Duration) -> Vec<Call> {
        self.stop.store(true, Ordering::Release);
        let tasks = (&mut self.driver).await.unwrap_or_default();
        let end = faas_common::clock::instant() + grace;
        while !lock(&self.book).running.is_empty() && faas_common::clock::instant() < end {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        for task in &tasks {
            task.abort();
        }
        self.calls()
    }
}

/// The calls as [`Span`]s, ms from `origin` (negative before it).
fn spans(calls: &[Call], origin: Instant) -> Vec<Span> {
    let ms = |t: Instant| match t.checked_duration_since(origin) {
        Some(d) => as_ms(d),
        None => -as_ms(origin - t),
    };
    calls
        .iter()
        .map(|c| Span {
            start_ms: ms(c.started),
            end_ms: c.ended.map(ms),
            ok: c.ok().is_some(),
        })
        .collect()
}

/// A duration in ms, exact to the nanosecond for any duration a run has.
fn as_ms(d: Duration) -> f64 {
    d.as_nanos() as f64 / 1e6
}

fn duration_ms(ms: f64) -> Duration {
    Duration::from_nanos((ms.max(0.0) * 1e6).round() as u64)
}

/// The calls in flight at `t`: started by then and answered after (or never).
pub fn in_flight_at(calls: &[Call], t: Instant) -> Vec<&Call> {
    fault::in_flight_at(&spans(calls, t), 0.0)
        .map(|i| &calls[i])
        .collect()
}

/// From `t`, how long until the first answer that is a success of a call started at or
/// after `t`.
pub fn first_success_after(calls: &[Call], t: Instant) -> Option<Duration> {
    fault::first_success_after(&spans(calls, t), 0.0).map(duration_ms)
}

/// From `fault`, the earliest offset (in 100 ms steps) from which every `window` of calls
/// (by start time) that ends by `until` has at least 99% successes: the success rate is
/// back then and stays back. `None` when even the last full window is below 99% or no full
/// window fits. Unanswered calls count as failures; an empty window counts as good.
pub fn recovered_after(
    calls: &[Call],
    fault: Instant,
    until: Instant,
    window: Duration,
) -> Option<Duration> {
    let until_ms = as_ms(until.saturating_duration_since(fault));
    let window_ms = as_ms(window);
    fault::recovered_after(&spans(calls, fault), 0.0, until_ms, window_ms).map(duration_ms)
}

/// Failed (or unanswered) calls by status code name: how many, and the first one's message.
pub fn failures_by_code(calls: &[Call]) -> BTreeMap<String, (usize, String)> {
    let mut by_code: BTreeMap<String, (usize, String)> = BTreeMap::new();
    for c in calls.iter().filter(|c| c.ok().is_none()) {
        let entry = by_code.entry(c.code_name()).or_insert_with(|| {
            let message = c.status().map_or("", |s| s.message());
            (0, faas_common::text::clip_to(message, 300).into_owned())
        });
        entry.0 += 1;
    }
    by_code
}
