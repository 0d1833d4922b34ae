//! Asynchronous invocations: what the durable queue keeps, and the seam it is reached by.
//!
//! A caller submits a call and gets its id (a UUID) once the call is stored; the platform
//! delivers it later through the same front as a synchronous call, and the caller reads its
//! state and result by id. A call goes `queued → running → succeeded | failed`; a failure
//! that may pass (`core::retry`) sends it back to `queued` with a later due time, and after
//! its last attempt to `dead` (the dead-letter list), from where a redrive queues it again.
//!
//! The store is bounded (time is an argument, ms since the Unix epoch):
//!
//! - at most [`AsyncLimits::max_kept`] calls (`--async-max-kept`), finished or not;
//! - at most [`AsyncLimits::max_bytes`] bytes (`--async-max-bytes`) in all: the events of
//!   calls not finished yet (dead letters included) and the results of finished ones;
//! - a finished call is forgotten [`AsyncLimits::retention_ms`] after it finished
//!   (`--async-retention-ms`), and then reads as not found. Dead letters stay until redriven.
//!
//! Room for a new call is made by forgetting the oldest finished calls first; when what is
//! left is calls not finished yet, the submit is refused ([`AsyncError`], naming the flag
//! that raises the bound), so nothing is accepted and then dropped. A result too large to
//! keep at all is replaced by a failure that says so.
//!
//! The seam: the runner (`api::async_runner`) talks to [`InvocationStore`]; `--queue` picks
//! the store: `store::sqlite::SqliteQueue`, in `DATA_DIR/apiserver.db` (or in memory without
//! a data directory), the default; or `store::jetstream::JetStreamQueue`, in NATS JetStream
//! Key-Value buckets (`--queue nats://HOST:PORT`; what it guarantees with one API server and
//! with several is in its module docs). The trait is synchronous: the runner calls it off the
//! runtime's workers (`spawn_blocking`), where a store may wait for its disk or its network.

pub use crate::core::retry::RetryPolicy;

/// Default of `--async-max-kept`.
pub const DEFAULT_MAX_KEPT: usize = 10_000;
/// Default of `--async-max-bytes`: 256 MiB.
pub const DEFAULT_MAX_BYTES: u64 = 256 * 1024 * 1024;
/// Default of `--async-retention-ms`: 10 minutes.
pub const DEFAULT_RETENTION_MS: u64 = 600_000;
/// The error code of a result too large to keep.
pub const CODE_RESULT_TOO_LARGE: &str = "RESOURCE_EXHAUSTED";

/// The failure kept in place of a successful result of `size` bytes that does not fit in
/// `limit` (`--async-max-bytes`): its code and message.
pub fn result_too_large(size: u64, limit: u64) -> (String, String) {
    (
        CODE_RESULT_TOO_LARGE.to_string(),
        format!(
            "the call succeeded, but its result of {size} bytes is more than this server keeps for asynchronous calls ({limit} bytes, --async-max-bytes); invoke it synchronously or raise --async-max-bytes"
        ),
    )
}

/// Where a call is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Queued,
    Running,
    Succeeded,
    Failed,
    /// Retried until its last attempt: on the dead-letter list.
    Dead,
}

impl State {
    /// As the API shows it (and the database keeps it): `queued`, `running`, `succeeded`,
    /// `failed`, `dead`.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Queued => "queued",
            State::Running => "running",
            State::Succeeded => "succeeded",
            State::Failed => "failed",
            State::Dead => "dead",
        }
    }

    /// The state of its name.
    pub fn parse(text: &str) -> Option<State> {
        [
            State::Queued,
            State::Running,
            State::Succeeded,
            State::Failed,
            State::Dead,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }

    /// Whether the call has finished (a dead letter has not: it may be redriven).
    pub fn finished(self) -> bool {
        matches!(self, State::Succeeded | State::Failed)
    }
}

/// How an attempt ended.
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
    /// Attempts started so far.
    pub attempts: u32,
    /// Set once finished; for a queued retry or a dead letter, the last attempt's.
    pub outcome: Option<Outcome>,
}

/// Where a finished call's result is sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Callback {
    /// Another function, invoked (through the queue) with the result as its event.
    Function(String),
    /// An HTTP URL on loopback, sent the result with a POST.
    Url(String),
}

/// A call to keep.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NewCall {
    pub function_name: String,
    pub account_id: String,
    pub event: Vec<u8>,
    /// Routing, as `service::routing::RouteContext` holds it.
    pub route_id: Option<String>,
    pub routing_key: Option<String>,
    pub route_params: Vec<(String, String)>,
    /// A repeated submit with the same key (for this function and account) is the first.
    pub idempotency_key: Option<String>,
    pub on_success: Option<Callback>,
    pub on_failure: Option<Callback>,
}

/// A call due for delivery, as the runner takes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pending {
    pub id: String,
    pub call: NewCall,
    /// Attempts started before this one.
    pub attempts: u32,
    pub submitted_at_ms: u64,
}

/// What a submit answers: the call's id, and whether it is a new call (not the first one
/// with the same idempotency key).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Submitted {
    pub id: String,
    pub new: bool,
}

/// One function's figures, for metrics and `faas describe`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QueueStats {
    pub function: String,
    /// Calls queued or running.
    pub depth: u64,
    /// When the oldest call queued or running was submitted (ms since the Unix epoch).
    pub oldest_submitted_ms: Option<u64>,
    /// Calls on the dead-letter list.
    pub dead: u64,
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

/// Why a submit is refused: the store is full of calls not finished yet, or cannot write.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AsyncError {
    #[error(
        "{kept} asynchronous calls are queued, running or dead-lettered, the most this server keeps; retry later or raise --async-max-kept"
    )]
    TooMany { kept: usize },
    #[error(
        "the events of the asynchronous calls queued, running or dead-lettered take {held} bytes; this one's {event} more would pass the limit of {limit} bytes; retry later or raise --async-max-bytes"
    )]
    TooLarge { held: u64, event: u64, limit: u64 },
    /// The database failed: nothing was accepted.
    #[error(
        "the asynchronous queue could not store the call ({0}); nothing was accepted, submit it again"
    )]
    Store(String),
}

/// Keeps asynchronous calls durably (see the module documentation). Every method is one
/// committed transaction: when it returns, what it changed is durable (on disk for SQLite,
/// acknowledged by the JetStream server for NATS).
pub trait InvocationStore: Send + Sync + std::fmt::Debug + 'static {
    /// Keeps `call` as queued under `id` (due now), unless a call with the same idempotency
    /// key is kept: then answers that one's id.
    fn submit(&self, id: &str, call: &NewCall, now_ms: u64) -> Result<Submitted, AsyncError>;
    /// Keeps every call of `calls` as [`InvocationStore::submit`] does, in one transaction
    /// where the store has them (all or none: the SQLite store); this default submits them
    /// one by one, so a refusal leaves the earlier ones kept.
    fn submit_all(
        &self,
        calls: &[(String, NewCall)],
        now_ms: u64,
    ) -> Result<Vec<Submitted>, AsyncError> {
        calls
            .iter()
            .map(|(id, call)| self.submit(id, call, now_ms))
            .collect()
    }
    /// At start: calls left `running` by a server that stopped are queued again, due now.
    /// Answers how many.
    fn recover(&self, now_ms: u64) -> Result<u64, AsyncError>;
    /// Up to `max` queued calls due by `now_ms`, the earliest due first, leaving out those of
    /// the functions in `busy` (plain names: `NAME` covers `NAME:N` and `NAME:ALIAS`).
    fn due(&self, now_ms: u64, max: usize, busy: &[String]) -> Vec<Pending>;
    /// The earliest due time of a queued call.
    fn next_due_ms(&self) -> Option<u64>;
    /// A queued call starts its next attempt; false when it is not queued.
    fn start(&self, id: &str, now_ms: u64) -> bool;
    /// The call ended (succeeded, or failed for good).
    fn finish(&self, id: &str, outcome: Outcome, now_ms: u64);
    /// Records an attempt's outcome on a running call and moves it to `state`, due at
    /// `due_ms` (logged when it fails: the call then stays `running`, and the next server
    /// delivers it again). The step under [`InvocationStore::retry`] and
    /// [`InvocationStore::dead_letter`].
    fn record(&self, id: &str, state: State, outcome: &Outcome, due_ms: u64, now_ms: u64);
    /// The attempt failed and the call is queued again, due at `due_ms`.
    fn retry(&self, id: &str, outcome: Outcome, due_ms: u64, now_ms: u64) {
        self.record(id, State::Queued, &outcome, due_ms, now_ms);
    }
    /// The last attempt failed: the call goes to the dead-letter list.
    fn dead_letter(&self, id: &str, outcome: Outcome, now_ms: u64) {
        self.record(id, State::Dead, &outcome, 0, now_ms);
    }
    /// The call, while it is kept.
    fn get(&self, id: &str, now_ms: u64) -> Option<Invocation>;
    /// The dead letters of `function`, oldest first.
    fn dead_letters(&self, function: &str) -> Vec<Invocation>;
    /// Queues again the dead letters of `function` with these ids (all of them when `ids`
    /// is empty), with their attempts reset; answers the ids queued.
    fn redrive(&self, function: &str, ids: &[String], now_ms: u64) -> Vec<String>;
    /// Per function with calls kept: depth, oldest age, dead letters.
    fn stats(&self) -> Vec<QueueStats>;
    /// The retry settings of `function` (a plain name), when it has its own.
    fn retry_policy(&self, function: &str) -> Option<RetryPolicy>;
    /// Sets (or, with `None`, clears) the retry settings of the deployed `function`.
    fn set_retry_policy(
        &self,
        function: &str,
        policy: Option<RetryPolicy>,
        now_ms: u64,
    ) -> Result<(), AsyncError>;
}
