//! Asynchronous invocations, kept in memory for a retention period.
//!
//! A caller submits a call and gets its id (a UUID) at once; the platform runs it later
//! through the same front as a synchronous call, and the caller reads its state and result
//! by id. Each call goes `queued → running → succeeded | failed`.
//!
//! The store is bounded, and pure (time is an argument, ms since the Unix epoch):
//!
//! - at most [`AsyncLimits::max_kept`] calls (`--async-max-kept`), finished or not;
//! - at most [`AsyncLimits::max_bytes`] bytes (`--async-max-bytes`) in all: the events of
//!   calls not finished yet (the runner holds them) and the results of finished ones;
//! - a finished call is forgotten [`AsyncLimits::retention_ms`] after it finished
//!   (`--async-retention-ms`), and then reads as not found.
//!
//! Room for a new call is made by forgetting the oldest finished calls first (a result may
//! thus go before its retention ends when the store is full); when what is left is calls not
//! finished yet, the submit is refused ([`AsyncError`], naming the flag that raises the
//! bound). A result too large to keep at all is replaced by a failure that says so.
//!
//! The seam: the API layer talks to [`InvocationStore`]; [`MemoryInvocations`] is the
//! in-memory one. A durable store can take its place without touching the runner.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard, PoisonError};

/// Default of `--async-max-kept`.
pub const DEFAULT_MAX_KEPT: usize = 10_000;
/// Default of `--async-max-bytes`: 256 MiB.
pub const DEFAULT_MAX_BYTES: u64 = 256 * 1024 * 1024;
/// Default of `--async-retention-ms`: 10 minutes.
pub const DEFAULT_RETENTION_MS: u64 = 600_000;
/// The error code of a result too large to keep.
pub const CODE_RESULT_TOO_LARGE: &str = "RESOURCE_EXHAUSTED";

/// Where a call is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Queued,
    Running,
    Succeeded,
    Failed,
}

impl State {
    /// As the API shows it: `queued`, `running`, `succeeded`, `failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Queued => "queued",
            State::Running => "running",
            State::Succeeded => "succeeded",
            State::Failed => "failed",
        }
    }

    /// Whether the call has finished.
    pub fn finished(self) -> bool {
        matches!(self, State::Succeeded | State::Failed)
    }
}

/// How a finished call ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// The request id of the synchronous chain that ran it.
    pub request_id: String,
    /// What served it (`3` / `latest`, `hello:3`), when a target ran.
    pub version: String,
    pub target: String,
    pub cold_start: bool,
    /// `Ok(body)`, or the error: its code (the gRPC code's name, as `NOT_FOUND`) and message.
    pub result: Result<Vec<u8>, (String, String)>,
}

impl Default for Outcome {
    fn default() -> Self {
        Outcome {
            request_id: String::new(),
            version: String::new(),
            target: String::new(),
            cold_start: false,
            result: Ok(Vec::new()),
        }
    }
}

/// One call as a reader sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invocation {
    pub id: String,
    pub function_name: String,
    pub state: State,
    /// ms since the Unix epoch; 0: not yet.
    pub submitted_at_ms: u64,
    pub started_at_ms: u64,
    pub finished_at_ms: u64,
    /// Set once finished.
    pub outcome: Option<Outcome>,
}

/// The bounds of a store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AsyncLimits {
    pub max_kept: usize,
    pub max_bytes: u64,
    pub retention_ms: u64,
}

impl Default for AsyncLimits {
    fn default() -> Self {
        AsyncLimits {
            max_kept: DEFAULT_MAX_KEPT,
            max_bytes: DEFAULT_MAX_BYTES,
            retention_ms: DEFAULT_RETENTION_MS,
        }
    }
}

/// Why a submit is refused: the store is full of calls not finished yet.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AsyncError {
    #[error(
        "{kept} asynchronous calls are queued or running, the most this server keeps; retry later or raise --async-max-kept"
    )]
    TooMany { kept: usize },
    #[error(
        "the events of the asynchronous calls queued or running take {held} bytes; this one's {event} more would pass the limit of {limit} bytes; retry later or raise --async-max-bytes"
    )]
    TooLarge { held: u64, event: u64, limit: u64 },
}

/// Keeps asynchronous calls (see the module documentation).
pub trait InvocationStore: Send + Sync + std::fmt::Debug + 'static {
    /// Keeps a new queued call `id` whose event is `event_bytes` long.
    fn submit(
        &self,
        id: &str,
        function_name: &str,
        event_bytes: u64,
        now_ms: u64,
    ) -> Result<(), AsyncError>;
    /// The call starts running.
    fn start(&self, id: &str, now_ms: u64);
    /// The call ended.
    fn finish(&self, id: &str, outcome: Outcome, now_ms: u64);
    /// The call, while it is kept.
    fn get(&self, id: &str, now_ms: u64) -> Option<Invocation>;
}

#[derive(Debug)]
struct Entry {
    call: Invocation,
    /// The bytes it counts against the limit: its event until it finishes, then its body.
    bytes: u64,
}

/// The in-memory store's tables (not synchronised; see [`MemoryInvocations`]).
#[derive(Debug)]
pub struct AsyncCalls {
    limits: AsyncLimits,
    entries: HashMap<String, Entry>,
    /// Finished calls, oldest first (by when they finished).
    finished: VecDeque<(u64, String)>,
    /// Sum of every entry's `bytes`.
    bytes: u64,
    /// Calls not finished yet.
    unfinished: usize,
}

impl AsyncCalls {
    pub fn new(limits: AsyncLimits) -> AsyncCalls {
        AsyncCalls {
            limits,
            entries: HashMap::new(),
            finished: VecDeque::new(),
            bytes: 0,
            unfinished: 0,
        }
    }

    /// Calls kept now, finished or not.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether none is kept.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes kept now (events of unfinished calls, results of finished ones).
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Forgets the oldest finished call; false when there is none.
    fn forget_oldest(&mut self) -> bool {
        while let Some((_, id)) = self.finished.pop_front() {
            if let Some(entry) = self.entries.remove(&id) {
                self.bytes -= entry.bytes;
                return true;
            }
        }
        false
    }

    /// Forgets the finished calls whose retention has passed.
    pub fn expire(&mut self, now_ms: u64) {
        while let Some((at, _)) = self.finished.front() {
            if at.saturating_add(self.limits.retention_ms) > now_ms {
                break;
            }
            self.forget_oldest();
        }
    }

    /// Keeps a new queued call, making room by forgetting the oldest finished calls.
    pub fn submit(
        &mut self,
        id: &str,
        function_name: &str,
        event_bytes: u64,
        now_ms: u64,
    ) -> Result<(), AsyncError> {
        self.expire(now_ms);
        while self.entries.len() >= self.limits.max_kept {
            if !self.forget_oldest() {
                return Err(AsyncError::TooMany {
                    kept: self.unfinished,
                });
            }
        }
        while self.bytes.saturating_add(event_bytes) > self.limits.max_bytes {
            if !self.forget_oldest() {
                return Err(AsyncError::TooLarge {
                    held: self.bytes,
                    event: event_bytes,
                    limit: self.limits.max_bytes,
                });
            }
        }
        let call = Invocation {
            id: id.to_string(),
            function_name: function_name.to_string(),
            state: State::Queued,
            submitted_at_ms: now_ms,
            started_at_ms: 0,
            finished_at_ms: 0,
            outcome: None,
        };
        self.bytes += event_bytes;
        self.unfinished += 1;
        self.entries.insert(
            id.to_string(),
            Entry {
                call,
                bytes: event_bytes,
            },
        );
        Ok(())
    }

    /// The call starts running (a finished or unknown call is left alone).
    pub fn start(&mut self, id: &str, now_ms: u64) {
        if let Some(entry) = self.entries.get_mut(id)
            && entry.call.state == State::Queued
        {
            entry.call.state = State::Running;
            entry.call.started_at_ms = now_ms;
        }
    }

    /// The call ended: its event's bytes are freed, its result's kept (room made by
    /// forgetting older finished calls; a result that cannot fit is replaced by a failure).
    pub fn finish(&mut self, id: &str, mut outcome: Outcome, now_ms: u64) {
        self.expire(now_ms);
        let Some(entry) = self.entries.get_mut(id) else {
            return;
        };
        if entry.call.state.finished() {
            return;
        }
        self.bytes -= entry.bytes;
        entry.bytes = 0;
        self.unfinished -= 1;
        let size = outcome.result.as_ref().map_or(0, |b| b.len() as u64);
        let mut size = size;
        while size > 0 && self.bytes.saturating_add(size) > self.limits.max_bytes {
            if !self.forget_oldest() {
                outcome.result = Err((
                    CODE_RESULT_TOO_LARGE.to_string(),
                    format!(
                        "the call succeeded, but its result of {size} bytes is more than this server keeps for asynchronous calls ({} bytes, --async-max-bytes); invoke it synchronously or raise --async-max-bytes",
                        self.limits.max_bytes
                    ),
                ));
                size = 0;
            }
        }
        // `forget_oldest` never removes this entry (it is not in the finished queue yet).
        let Some(entry) = self.entries.get_mut(id) else {
            return;
        };
        entry.bytes = size;
        self.bytes += size;
        entry.call.state = if outcome.result.is_ok() {
            State::Succeeded
        } else {
            State::Failed
        };
        if entry.call.started_at_ms == 0 {
            entry.call.started_at_ms = now_ms;
        }
        entry.call.finished_at_ms = now_ms;
        entry.call.outcome = Some(outcome);
        self.finished.push_back((now_ms, id.to_string()));
    }

    /// The call, unless it is unknown or its retention has passed.
    pub fn get(&mut self, id: &str, now_ms: u64) -> Option<Invocation> {
        self.expire(now_ms);
        self.entries.get(id).map(|e| e.call.clone())
    }
}

/// [`AsyncCalls`] behind a lock: the in-memory [`InvocationStore`].
#[derive(Debug)]
pub struct MemoryInvocations(Mutex<AsyncCalls>);

impl MemoryInvocations {
    pub fn new(limits: AsyncLimits) -> MemoryInvocations {
        MemoryInvocations(Mutex::new(AsyncCalls::new(limits)))
    }

    fn lock(&self) -> MutexGuard<'_, AsyncCalls> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl InvocationStore for MemoryInvocations {
    fn submit(
        &self,
        id: &str,
        function_name: &str,
        event_bytes: u64,
        now_ms: u64,
    ) -> Result<(), AsyncError> {
        self.lock().submit(id, function_name, event_bytes, now_ms)
    }

    fn start(&self, id: &str, now_ms: u64) {
        self.lock().start(id, now_ms)
    }

    fn finish(&self, id: &str, outcome: Outcome, now_ms: u64) {
        self.lock().finish(id, outcome, now_ms)
    }

    fn get(&self, id: &str, now_ms: u64) -> Option<Invocation> {
        self.lock().get(id, now_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(max_kept: usize, max_bytes: u64, retention_ms: u64) -> AsyncCalls {
        AsyncCalls::new(AsyncLimits {
            max_kept,
            max_bytes,
            retention_ms,
        })
    }

    fn ok(body: &[u8]) -> Outcome {
        Outcome {
            request_id: "r".into(),
            version: "latest".into(),
            target: "hello".into(),
            cold_start: true,
            result: Ok(body.to_vec()),
        }
    }

    fn failed(code: &str) -> Outcome {
        Outcome {
            result: Err((code.into(), "it broke".into())),
            ..Outcome::default()
        }
    }

    #[test]
    fn a_call_goes_queued_running_succeeded() {
        let mut s = store(10, 1000, 100);
        s.submit("a", "hello", 3, 1).unwrap();
        let got = s.get("a", 1).unwrap();
        assert_eq!(got.state, State::Queued);
        assert_eq!((got.submitted_at_ms, got.started_at_ms), (1, 0));
        assert_eq!(s.bytes(), 3);
        s.start("a", 2);
        assert_eq!(s.get("a", 2).unwrap().state, State::Running);
        s.finish("a", ok(b"hello"), 5);
        let got = s.get("a", 5).unwrap();
        assert_eq!(got.state, State::Succeeded);
        assert_eq!((got.started_at_ms, got.finished_at_ms), (2, 5), "{got:?}");
        assert_eq!(got.outcome.unwrap().result, Ok(b"hello".to_vec()));
        // The event's bytes went, the body's came.
        assert_eq!(s.bytes(), 5);
        // Finishing twice changes nothing.
        s.finish("a", failed("INTERNAL"), 6);
        assert_eq!(s.get("a", 6).unwrap().state, State::Succeeded);
        assert_eq!(s.get("nope", 6), None);
    }

    #[test]
    fn a_finished_call_is_forgotten_after_the_retention() {
        let mut s = store(10, 1000, 100);
        s.submit("a", "f", 0, 0).unwrap();
        s.finish("a", failed("NOT_FOUND"), 10);
        let got = s.get("a", 109).unwrap();
        assert_eq!(got.state, State::Failed);
        assert_eq!(
            got.started_at_ms, 10,
            "a call that never ran starts as it ends"
        );
        assert_eq!(
            got.outcome.unwrap().result,
            Err(("NOT_FOUND".into(), "it broke".into()))
        );
        assert_eq!(s.get("a", 110), None);
        assert!(s.is_empty());
        assert_eq!(s.bytes(), 0);
    }

    #[test]
    fn unfinished_calls_are_never_forgotten() {
        let mut s = store(10, 1000, 100);
        s.submit("a", "f", 1, 0).unwrap();
        s.start("a", 0);
        assert_eq!(s.get("a", 1_000_000).unwrap().state, State::Running);
    }

    #[test]
    fn a_full_store_forgets_finished_calls_first_then_refuses() {
        let mut s = store(2, 1000, 100);
        s.submit("a", "f", 0, 0).unwrap();
        s.submit("b", "f", 0, 0).unwrap();
        s.finish("a", ok(b"x"), 1);
        // Room made by forgetting the finished one.
        s.submit("c", "f", 0, 2).unwrap();
        assert_eq!(s.get("a", 2), None);
        assert_eq!(s.len(), 2);
        let err = s.submit("d", "f", 0, 2).unwrap_err();
        assert_eq!(err, AsyncError::TooMany { kept: 2 });
        assert!(err.to_string().contains("raise --async-max-kept"), "{err}");
    }

    #[test]
    fn events_and_results_share_the_byte_limit() {
        let mut s = store(100, 10, 100);
        s.submit("a", "f", 6, 0).unwrap();
        let err = s.submit("b", "f", 5, 0).unwrap_err();
        assert_eq!(
            err,
            AsyncError::TooLarge {
                held: 6,
                event: 5,
                limit: 10
            }
        );
        assert!(err.to_string().contains("raise --async-max-bytes"), "{err}");
        s.submit("b", "f", 4, 0).unwrap();
        s.finish("a", ok(b"123456"), 1);
        assert_eq!(s.bytes(), 10);
        // A new result needs room: the oldest finished result goes.
        s.finish("b", ok(b"12345"), 2);
        assert_eq!(s.bytes(), 5);
        assert_eq!(s.get("a", 2), None);
        // A result larger than the whole limit is replaced by a failure that says so.
        s.submit("c", "f", 0, 3).unwrap();
        s.finish("c", ok(b"12345678901"), 4);
        let got = s.get("c", 4).unwrap();
        assert_eq!(got.state, State::Failed);
        let (code, message) = got.outcome.unwrap().result.unwrap_err();
        assert_eq!(code, CODE_RESULT_TOO_LARGE);
        assert!(message.contains("--async-max-bytes"), "{message}");
        assert_eq!(s.bytes(), 0, "b was forgotten trying to make room");
    }

    #[test]
    fn the_memory_store_is_the_same_behind_a_lock() {
        let s: Box<dyn InvocationStore> = Box::new(MemoryInvocations::new(AsyncLimits {
            max_kept: 1,
            max_bytes: 100,
            retention_ms: 5,
        }));
        s.submit("a", "f", 1, 0).unwrap();
        assert!(s.submit("b", "f", 1, 0).is_err());
        s.start("a", 1);
        s.finish("a", ok(b"ok"), 2);
        assert_eq!(s.get("a", 6).unwrap().state, State::Succeeded);
        assert_eq!(s.get("a", 7), None);
        s.submit("b", "f", 1, 7).unwrap();
    }
}
