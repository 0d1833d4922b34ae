//! The durable asynchronous queue on NATS JetStream: [`InvocationStore`] on Key-Value
//! buckets, for an API server started with `--queue nats://HOST:PORT` (the embedded
//! default, `--queue sqlite`, is [`super::SqliteQueue`]). The runner and its tests see the
//! same trait and the same behaviour from both.
//!
//! # The buckets
//!
//! Three JetStream Key-Value buckets (streams `KV_…`, file storage, one value a key):
//!
//! - `faas_async_calls`: one key per call (its id), the value the whole call as JSON (the
//!   event and the result in base64): state, attempts, due time, outcome;
//! - `faas_async_keys`: one key per idempotency key (a SHA-256 of function, account and key),
//!   the value the first call's id. `create` is atomic on the server, so of two submits with
//!   one key exactly one makes a new call and the other answers its id;
//! - `faas_async_settings`: the retry settings of functions that have their own.
//!
//! Every change of a call is an `update` that names the revision it read (compare-and-set):
//! if the value changed since, the write is refused, the call read again and the change
//! judged again. A queued call is started only by the write that moves it from `queued` (at
//! the revision read) to `running`, so an attempt is started once even when two servers
//! race for it.
//!
//! # What survives what
//!
//! A method returns once the server acknowledged its writes (a JetStream publish ack: the
//! message is in the stream's file store). A submit is answered only then, so an accepted
//! call survives `kill -9` of the API server and a restart of `nats-server` (its store
//! directory, `-sd`, kept). nats-server 2.9 writes its file store through the OS cache and
//! syncs it every two minutes, so a power loss may lose the last calls accepted: that is
//! weaker than the embedded queue's `fsync` per submit (`synchronous=FULL`).
//!
//! # Reads, and several API servers
//!
//! The store keeps a copy of every call in memory: loaded at open, then kept by its own
//! writes and by a watch of `faas_async_calls` (every change, its own and other servers',
//! applied by revision when the copy is next read). [`InvocationStore::due`], the dead-letter
//! list and the figures read the copy; [`InvocationStore::get`] reads the bucket. The bounds
//! (`--async-max-kept`, `--async-max-bytes`, retention) are checked on the copy.
//!
//! With **one API server per NATS** everything the embedded queue promises holds: every
//! accepted call is delivered at least once, and one is delivered twice exactly when the
//! server died between the start of an attempt and the write of its outcome.
//!
//! With **several API servers on one NATS**: no accepted call is lost; each server sees the
//! calls the others accept (within the watch's delay, and the dispatcher's poll of at most a
//! second) and delivers them too; an attempt is started by one server only (the
//! compare-and-set above); a limit per function holds per server, not in all. What does not
//! hold: a server that starts re-queues every `running` call, another live server's too, so a
//! call running elsewhere at that moment may be delivered twice. Leases on `running` calls
//! (the claimer's id and an expiry, renewed while it runs) would lift that; not done. Bounds
//! are checked on each server's copy, so two servers submitting at once may pass
//! `--async-max-kept` by a few.
//!
//! # Sizes
//!
//! A NATS message is at most the server's `max_payload` (1 MiB by default; up to 64 MiB in
//! its configuration file): a call whose event or result does not fit is refused with the
//! server's reason (nothing accepted), where the embedded queue would have kept it.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_nats::jetstream::{self, kv};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::sqlite::queue::{callback_of, callback_text};
use crate::service::async_calls::{
    AsyncError, AsyncLimits, CODE_RESULT_TOO_LARGE, Invocation, InvocationStore, NewCall, Outcome,
    Pending, QueueStats, RetryPolicy, State, Submitted,
};

/// The buckets' names.
const CALLS: &str = "faas_async_calls";
const KEYS: &str = "faas_async_keys";
const SETTINGS: &str = "faas_async_settings";
/// How long a start waits for NATS to answer before it fails.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one operation waits for NATS before it fails (a store error, never a hang).
const OP_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a compare-and-set is tried again after another writer changed the call.
const CAS_TRIES: usize = 5;

/// A call as the bucket keeps it.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Record {
    id: String,
    function: String,
    account: String,
    /// base64.
    event: String,
    route_id: Option<String>,
    routing_key: Option<String>,
    route_params: Vec<(String, String)>,
    idempotency_key: Option<String>,
    on_success: Option<String>,
    on_failure: Option<String>,
    state: String,
    attempts: u32,
    due_ms: u64,
    submitted_at_ms: u64,
    started_at_ms: u64,
    finished_at_ms: u64,
    /// What the call holds against `--async-max-bytes`: its event until it finished, then
    /// its result.
    bytes: u64,
    outcome: Option<Saved>,
}

/// An attempt's outcome as the bucket keeps it.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Saved {
    request_id: String,
    version: String,
    target: String,
    cold_start: bool,
    /// base64, on success.
    body: Option<String>,
    error_code: String,
    error_message: String,
}

impl Record {
    fn state(&self) -> State {
        State::parse(&self.state).unwrap_or(State::Failed)
    }

    fn expired(&self, now_ms: u64, retention_ms: u64) -> bool {
        self.state().finished() && self.finished_at_ms <= now_ms.saturating_sub(retention_ms)
    }

    fn invocation(&self) -> Invocation {
        Invocation {
            id: self.id.clone(),
            function_name: self.function.clone(),
            state: self.state(),
            submitted_at_ms: self.submitted_at_ms,
            started_at_ms: self.started_at_ms,
            finished_at_ms: self.finished_at_ms,
            attempts: self.attempts,
            outcome: self.outcome.as_ref().map(|s| Outcome {
                request_id: s.request_id.clone(),
                version: s.version.clone(),
                target: s.target.clone(),
                cold_start: s.cold_start,
                result: match &s.body {
                    Some(b) if s.error_code.is_empty() => Ok(B64.decode(b).unwrap_or_default()),
                    _ => Err((s.error_code.clone(), s.error_message.clone())),
                },
            }),
        }
    }

    fn pending(&self) -> Pending {
        Pending {
            id: self.id.clone(),
            call: NewCall {
                function_name: self.function.clone(),
                account_id: self.account.clone(),
                event: B64.decode(&self.event).unwrap_or_default(),
                route_id: self.route_id.clone(),
                routing_key: self.routing_key.clone(),
                route_params: self.route_params.clone(),
                idempotency_key: self.idempotency_key.clone(),
                on_success: callback_of(self.on_success.clone()),
                on_failure: callback_of(self.on_failure.clone()),
            },
            attempts: self.attempts,
            submitted_at_ms: self.submitted_at_ms,
        }
    }

    /// Records an attempt's outcome and moves the call to `state`.
    fn record(&mut self, state: State, outcome: &Outcome, due_ms: u64, now_ms: u64) {
        let (body, code, message) = match &outcome.result {
            Ok(body) => (Some(B64.encode(body)), String::new(), String::new()),
            Err((code, message)) => (None, code.clone(), message.clone()),
        };
        self.state = state.as_str().to_string();
        self.due_ms = due_ms;
        self.finished_at_ms = if state == State::Queued { 0 } else { now_ms };
        self.outcome = Some(Saved {
            request_id: outcome.request_id.clone(),
            version: outcome.version.clone(),
            target: outcome.target.clone(),
            cold_start: outcome.cold_start,
            body,
            error_code: code,
            error_message: message,
        });
    }
}

/// The calls this server knows, with the revision of each it last read or wrote.
type Mirror = HashMap<String, (Record, u64)>;

/// A change of a call that the bucket's watch saw: its id, revision and value (`None`:
/// deleted).
type Seen = (String, u64, Option<Record>);

/// The queue on NATS JetStream.
pub struct JetStreamQueue {
    /// The NATS client's own runtime: the trait's methods are synchronous (the runner calls
    /// them off its workers), and each waits here for its answers.
    runtime: Option<tokio::runtime::Runtime>,
    calls: kv::Store,
    keys: kv::Store,
    settings: kv::Store,
    mirror: Mutex<Mirror>,
    /// What the watch of `faas_async_calls` saw, applied to the copy when it is next read.
    seen: Mutex<Receiver<Seen>>,
    /// Calls this server forgot whose deletion the watch has not shown yet (so an older
    /// value it shows late does not bring them back).
    forgotten: Mutex<HashSet<String>>,
    limits: AsyncLimits,
    address: String,
}

impl std::fmt::Debug for JetStreamQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JetStreamQueue")
            .field("address", &self.address)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl Drop for JetStreamQueue {
    fn drop(&mut self) {
        // Dropped on a runtime's worker too: never wait there.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// Runs `fut` on `runtime` and waits for it, at most [`OP_TIMEOUT`].
fn block_on<T: Send + 'static>(
    runtime: &tokio::runtime::Runtime,
    timeout: Duration,
    fut: impl Future<Output = Result<T, String>> + Send + 'static,
) -> Result<T, String> {
    let (tx, rx) = std::sync::mpsc::channel();
    runtime.spawn(async move {
        let out = match tokio::time::timeout(timeout, fut).await {
            Ok(out) => out,
            Err(_) => Err(format!(
                "NATS did not answer within {} s",
                timeout.as_secs()
            )),
        };
        let _ = tx.send(out);
    });
    rx.recv()
        .unwrap_or_else(|_| Err("the NATS client stopped".to_string()))
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn text(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// The bucket `name`, made if missing (file storage, the latest value of each key only).
/// The stream is made here as `async-nats` makes a bucket's, without its account query,
/// whose answer from a 2.9 server it cannot read.
async fn bucket(js: &jetstream::Context, name: &str) -> Result<kv::Store, String> {
    use jetstream::stream::{Config, DiscardPolicy, StorageType};
    js.get_or_create_stream(Config {
        name: format!("KV_{name}"),
        subjects: vec![format!("$KV.{name}.>")],
        max_messages_per_subject: 1,
        max_bytes: -1,
        max_messages: -1,
        storage: StorageType::File,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        discard: DiscardPolicy::New,
        num_replicas: 1,
        ..Config::default()
    })
    .await
    .map_err(|e| format!("cannot make the Key-Value bucket {name}: {e}"))?;
    js.get_key_value(name)
        .await
        .map_err(|e| format!("cannot open the Key-Value bucket {name}: {e}"))
}

/// Passes on every change the watch sees, until the store is dropped.
async fn forward(mut watch: kv::Watch, tx: Sender<Seen>) {
    while let Some(entry) = watch.next().await {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) => {
                tracing::warn!(error = %e, "the watch of the NATS queue missed a change");
                continue;
            }
        };
        let value = match entry.operation {
            kv::Operation::Put => match serde_json::from_slice::<Record>(&entry.value) {
                Ok(record) => Some(record),
                Err(_) => continue,
            },
            kv::Operation::Delete | kv::Operation::Purge => None,
        };
        if tx.send((entry.key, entry.revision, value)).is_err() {
            return;
        }
    }
    tracing::warn!(
        "the watch of the NATS queue ended: this API server no longer sees the calls other servers accept"
    );
}

/// Every call in the bucket, with its revision.
async fn load(calls: kv::Store) -> Result<Mirror, String> {
    let mut mirror = Mirror::new();
    let mut keys = calls.keys().await.map_err(text)?;
    let mut ids = Vec::new();
    while let Some(key) = keys.next().await {
        ids.push(key.map_err(text)?);
    }
    for id in ids {
        if let Some(entry) = calls.entry(id.clone()).await.map_err(text)?
            && entry.operation == kv::Operation::Put
        {
            match serde_json::from_slice::<Record>(&entry.value) {
                Ok(record) => {
                    mirror.insert(id, (record, entry.revision));
                }
                Err(e) => {
                    tracing::error!(id, error = %e, "a queued call in NATS does not decode; left alone")
                }
            }
        }
    }
    Ok(mirror)
}

/// The `faas_async_keys` key of an idempotency key.
fn key_hash(call: &NewCall, key: &str) -> String {
    let mut h = Sha256::new();
    for part in [&call.function_name, &call.account_id, key] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    format!("{:x}", h.finalize())
}

/// A function name as a bucket key (keys allow few characters): its hex.
fn settings_key(function: &str) -> String {
    function.bytes().map(|b| format!("{b:02x}")).collect()
}

fn encode(record: &Record) -> Vec<u8> {
    serde_json::to_vec(record).expect("a record is JSON")
}

impl JetStreamQueue {
    /// Connects to NATS at `address` (`host:port`), makes the buckets if missing and reads
    /// the calls kept. Fails, naming the address, when NATS does not answer within
    /// [`CONNECT_TIMEOUT`] or has no JetStream.
    pub fn connect(address: &str, limits: AsyncLimits) -> Result<JetStreamQueue, AsyncError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("nats-queue")
            .enable_all()
            .build()
            .map_err(|e| AsyncError::Store(format!("cannot start the NATS client: {e}")))?;
        let url = format!("nats://{address}");
        let opened = block_on(&runtime, CONNECT_TIMEOUT * 2, async move {
            let client = async_nats::ConnectOptions::new()
                .connection_timeout(CONNECT_TIMEOUT)
                .name("faas-apiserver")
                .connect(url.as_str())
                .await
                .map_err(|e| format!("cannot connect to {url}: {e}"))?;
            let js = jetstream::new(client);
            let calls = bucket(&js, CALLS).await?;
            let keys = bucket(&js, KEYS).await?;
            let settings = bucket(&js, SETTINGS).await?;
            // Watched before the load, so no change falls between the two.
            let watch = calls.watch_all().await.map_err(text)?;
            let mirror = load(calls.clone()).await?;
            Ok((calls, keys, settings, mirror, watch))
        });
        let (calls, keys, settings, mirror, watch) = match opened {
            Ok(o) => o,
            Err(e) => {
                runtime.shutdown_background();
                return Err(AsyncError::Store(format!(
                    "NATS at {address} (--queue): {e}; is nats-server running there with JetStream on (-js)?"
                )));
            }
        };
        let (tx, seen) = std::sync::mpsc::channel();
        runtime.spawn(forward(watch, tx));
        Ok(JetStreamQueue {
            runtime: Some(runtime),
            calls,
            keys,
            settings,
            mirror: Mutex::new(mirror),
            seen: Mutex::new(seen),
            forgotten: Mutex::new(HashSet::new()),
            limits,
            address: address.to_string(),
        })
    }

    fn run<T: Send + 'static>(
        &self,
        fut: impl Future<Output = Result<T, String>> + Send + 'static,
    ) -> Result<T, AsyncError> {
        let runtime = self.runtime.as_ref().expect("the runtime lives until drop");
        block_on(runtime, OP_TIMEOUT, fut)
            .map_err(|e| AsyncError::Store(format!("NATS at {}: {e}", self.address)))
    }

    /// The copy, brought up to date with what the watch saw: a newer revision replaces an
    /// older one (this server's own writes come back too, and change nothing).
    fn mirror(&self) -> MutexGuard<'_, Mirror> {
        let mut mirror = lock(&self.mirror);
        let seen = lock(&self.seen);
        let mut forgotten = lock(&self.forgotten);
        while let Ok((id, revision, value)) = seen.try_recv() {
            let newer = mirror.get(&id).is_none_or(|(_, known)| *known < revision);
            match value {
                Some(record) => {
                    if newer && !forgotten.contains(&id) {
                        mirror.insert(id, (record, revision));
                    }
                }
                None => {
                    forgotten.remove(&id);
                    if newer {
                        mirror.remove(&id);
                    }
                }
            }
        }
        drop(forgotten);
        drop(seen);
        mirror
    }

    /// The call `id` as the bucket has it now, and its revision.
    fn fetch(&self, id: &str) -> Result<Option<(Record, u64)>, AsyncError> {
        let calls = self.calls.clone();
        let id = id.to_string();
        let entry = self.run(async move { calls.entry(id).await.map_err(text) })?;
        Ok(entry.and_then(|e| {
            (e.operation == kv::Operation::Put)
                .then(|| serde_json::from_slice::<Record>(&e.value).ok())
                .flatten()
                .map(|r| (r, e.revision))
        }))
    }

    /// Changes the call `id` with `change` (which answers false to leave it as it is) by
    /// compare-and-set, reading it again when another writer changed it first. Answers
    /// whether it was changed.
    fn modify(
        &self,
        mirror: &mut Mirror,
        id: &str,
        change: impl Fn(&mut Record) -> bool,
    ) -> Result<bool, AsyncError> {
        for _ in 0..CAS_TRIES {
            let Some((current, revision)) = mirror.get(id).cloned() else {
                return Ok(false);
            };
            let mut next = current;
            if !change(&mut next) {
                return Ok(false);
            }
            let calls = self.calls.clone();
            let (key, value) = (id.to_string(), encode(&next));
            let written = self.run(async move {
                match calls.update(key, value.into(), revision).await {
                    Ok(rev) => Ok(Some(rev)),
                    Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => Ok(None),
                    Err(e) => Err(text(e)),
                }
            })?;
            match written {
                Some(rev) => {
                    mirror.insert(id.to_string(), (next, rev));
                    return Ok(true);
                }
                None => match self.fetch(id)? {
                    Some(fresh) => {
                        mirror.insert(id.to_string(), fresh);
                    }
                    None => {
                        mirror.remove(id);
                        return Ok(false);
                    }
                },
            }
        }
        Err(AsyncError::Store(format!(
            "the call {id} kept changing under this server ({CAS_TRIES} tries)"
        )))
    }

    /// Forgets the calls `ids` (and their idempotency keys).
    fn forget(&self, mirror: &mut Mirror, ids: &[String]) -> Result<(), AsyncError> {
        let mut gone = Vec::new();
        lock(&self.forgotten).extend(ids.iter().cloned());
        for id in ids {
            if let Some((record, _)) = mirror.remove(id) {
                let key = record.idempotency_key.as_deref().map(|k| {
                    let call = record.pending().call;
                    key_hash(&call, k)
                });
                gone.push((id.clone(), key));
            }
        }
        let (calls, keys) = (self.calls.clone(), self.keys.clone());
        self.run(async move {
            for (id, key) in gone {
                calls.purge(&id).await.map_err(text)?;
                if let Some(key) = key {
                    keys.purge(&key).await.map_err(text)?;
                }
            }
            Ok(())
        })
    }

    /// Makes room for `event` more bytes and one more call by forgetting finished calls,
    /// oldest first (and those past their retention); refuses when what is left is calls
    /// not finished yet.
    fn make_room(&self, mirror: &mut Mirror, event: u64, now_ms: u64) -> Result<(), AsyncError> {
        let expired: Vec<String> = mirror
            .values()
            .filter(|(r, _)| r.expired(now_ms, self.limits.retention_ms))
            .map(|(r, _)| r.id.clone())
            .collect();
        self.forget(mirror, &expired)?;
        let kept = mirror.len();
        let bytes: u64 = mirror.values().map(|(r, _)| r.bytes).sum();
        let fits = |kept: usize, bytes: u64| {
            kept < self.limits.max_kept && bytes.saturating_add(event) <= self.limits.max_bytes
        };
        if fits(kept, bytes) {
            return Ok(());
        }
        let mut finished: Vec<(u64, String, u64)> = mirror
            .values()
            .filter(|(r, _)| r.state().finished())
            .map(|(r, _)| (r.finished_at_ms, r.id.clone(), r.bytes))
            .collect();
        finished.sort();
        let (mut n, mut b, mut drop) = (kept, bytes, Vec::new());
        for (_, id, size) in finished {
            if fits(n, b) {
                break;
            }
            n -= 1;
            b = b.saturating_sub(size);
            drop.push(id);
        }
        self.forget(mirror, &drop)?;
        if fits(n, b) {
            return Ok(());
        }
        let unfinished = mirror
            .values()
            .filter(|(r, _)| !r.state().finished())
            .count();
        Err(if n >= self.limits.max_kept {
            AsyncError::TooMany { kept: unfinished }
        } else {
            AsyncError::TooLarge {
                held: b,
                event,
                limit: self.limits.max_bytes,
            }
        })
    }

    /// The id of the first call submitted with `call`'s idempotency key, claiming the key
    /// for `id` when there is none (or only a stale one, of a call forgotten since).
    fn claim_key(&self, mirror: &Mirror, call: &NewCall, id: &str) -> Result<String, AsyncError> {
        let Some(key) = &call.idempotency_key else {
            return Ok(id.to_string());
        };
        let (keys, hash, mine) = (self.keys.clone(), key_hash(call, key), id.to_string());
        let (first, revision) = self.run(async move {
            match keys.create(&hash, mine.clone().into_bytes().into()).await {
                Ok(_) => Ok((mine, None)),
                Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {
                    match keys.entry(hash.clone()).await.map_err(text)? {
                        Some(entry) => Ok((
                            String::from_utf8_lossy(&entry.value).into_owned(),
                            Some(entry.revision),
                        )),
                        None => Ok((mine, None)),
                    }
                }
                Err(e) => Err(text(e)),
            }
        })?;
        let Some(revision) = revision else {
            return Ok(first);
        };
        if mirror.contains_key(&first) || self.fetch(&first)?.is_some() {
            return Ok(first);
        }
        // The first call was forgotten: the key is this one's now.
        let (keys, hash, mine) = (self.keys.clone(), key_hash(call, key), id.to_string());
        self.run(async move {
            keys.update(&hash, mine.into_bytes().into(), revision)
                .await
                .map_err(text)
        })?;
        Ok(id.to_string())
    }
}

impl InvocationStore for JetStreamQueue {
    fn submit(&self, id: &str, call: &NewCall, now_ms: u64) -> Result<Submitted, AsyncError> {
        let mut mirror = self.mirror();
        if let Some(key) = &call.idempotency_key
            && let Some((first, _)) = mirror.values().find(|(r, _)| {
                r.idempotency_key.as_deref() == Some(key.as_str())
                    && r.function == call.function_name
                    && r.account == call.account_id
            })
        {
            return Ok(Submitted {
                id: first.id.clone(),
                new: false,
            });
        }
        let event = call.event.len() as u64;
        self.make_room(&mut mirror, event, now_ms)?;
        let first = self.claim_key(&mirror, call, id)?;
        if first != id {
            return Ok(Submitted {
                id: first,
                new: false,
            });
        }
        let record = Record {
            id: id.to_string(),
            function: call.function_name.clone(),
            account: call.account_id.clone(),
            event: B64.encode(&call.event),
            route_id: call.route_id.clone(),
            routing_key: call.routing_key.clone(),
            route_params: call.route_params.clone(),
            idempotency_key: call.idempotency_key.clone(),
            on_success: call.on_success.as_ref().map(callback_text),
            on_failure: call.on_failure.as_ref().map(callback_text),
            state: State::Queued.as_str().to_string(),
            attempts: 0,
            due_ms: now_ms,
            submitted_at_ms: now_ms,
            started_at_ms: 0,
            finished_at_ms: 0,
            bytes: event,
            outcome: None,
        };
        let (calls, key, value) = (self.calls.clone(), id.to_string(), encode(&record));
        let revision = self.run(async move { calls.create(key, value.into()).await.map_err(text) });
        match revision {
            Ok(revision) => {
                mirror.insert(id.to_string(), (record, revision));
                Ok(Submitted {
                    id: id.to_string(),
                    new: true,
                })
            }
            Err(e) => {
                if let Some(key) = &call.idempotency_key {
                    let (keys, hash) = (self.keys.clone(), key_hash(call, key));
                    let _ = self.run(async move { keys.purge(&hash).await.map_err(text) });
                }
                Err(e)
            }
        }
    }

    fn recover(&self, now_ms: u64) -> Result<u64, AsyncError> {
        let mut mirror = self.mirror();
        let running: Vec<String> = mirror
            .values()
            .filter(|(r, _)| r.state() == State::Running)
            .map(|(r, _)| r.id.clone())
            .collect();
        let mut n = 0;
        for id in running {
            let requeued = self.modify(&mut mirror, &id, |r| {
                if r.state() != State::Running {
                    return false;
                }
                r.state = State::Queued.as_str().to_string();
                r.due_ms = now_ms;
                true
            })?;
            n += u64::from(requeued);
        }
        Ok(n)
    }

    fn due(&self, now_ms: u64, max: usize, busy: &[String]) -> Vec<Pending> {
        let mirror = self.mirror();
        let base = |f: &str| f.split(':').next().unwrap_or(f).to_string();
        let mut due: Vec<&Record> = mirror
            .values()
            .map(|(r, _)| r)
            .filter(|r| r.state() == State::Queued && r.due_ms <= now_ms)
            .filter(|r| !busy.contains(&base(&r.function)))
            .collect();
        due.sort_by_key(|r| (r.due_ms, r.submitted_at_ms));
        due.into_iter().take(max).map(Record::pending).collect()
    }

    fn next_due_ms(&self) -> Option<u64> {
        self.mirror()
            .values()
            .filter(|(r, _)| r.state() == State::Queued)
            .map(|(r, _)| r.due_ms)
            .min()
    }

    fn start(&self, id: &str, now_ms: u64) -> bool {
        let mut mirror = self.mirror();
        self.modify(&mut mirror, id, |r| {
            if r.state() != State::Queued {
                return false;
            }
            r.state = State::Running.as_str().to_string();
            r.attempts += 1;
            if r.started_at_ms == 0 {
                r.started_at_ms = now_ms;
            }
            true
        })
        .unwrap_or_else(|e| {
            tracing::error!(id, error = %e, "the asynchronous queue could not start a call");
            false
        })
    }

    fn finish(&self, id: &str, mut outcome: Outcome, now_ms: u64) {
        let mut mirror = self.mirror();
        let held: u64 = mirror
            .iter()
            .filter(|(other, _)| other.as_str() != id)
            .map(|(_, (r, _))| r.bytes)
            .sum();
        let size = outcome.result.as_ref().map_or(0, |b| b.len() as u64);
        if size > 0 && held.saturating_add(size) > self.limits.max_bytes {
            // Room by forgetting older finished calls; else the result is not kept.
            let _ = self.make_room(&mut mirror, size, now_ms);
            let held: u64 = mirror
                .iter()
                .filter(|(other, _)| other.as_str() != id)
                .map(|(_, (r, _))| r.bytes)
                .sum();
            if held.saturating_add(size) > self.limits.max_bytes {
                outcome.result = Err((
                    CODE_RESULT_TOO_LARGE.to_string(),
                    format!(
                        "the call succeeded, but its result of {size} bytes is more than this server keeps for asynchronous calls ({} bytes, --async-max-bytes); invoke it synchronously or raise --async-max-bytes",
                        self.limits.max_bytes
                    ),
                ));
            }
        }
        let size = outcome.result.as_ref().map_or(0, |b| b.len() as u64);
        let state = if outcome.result.is_ok() {
            State::Succeeded
        } else {
            State::Failed
        };
        let done = self.modify(&mut mirror, id, |r| {
            if r.state() != State::Running {
                return false;
            }
            r.event.clear();
            r.bytes = size;
            r.record(state, &outcome, 0, now_ms);
            true
        });
        if let Err(e) = done {
            tracing::error!(id, error = %e, "the asynchronous queue could not record an outcome");
        }
    }

    fn retry(&self, id: &str, outcome: Outcome, due_ms: u64, now_ms: u64) {
        self.record(id, State::Queued, &outcome, due_ms, now_ms);
    }

    fn dead_letter(&self, id: &str, outcome: Outcome, now_ms: u64) {
        self.record(id, State::Dead, &outcome, 0, now_ms);
    }

    fn get(&self, id: &str, now_ms: u64) -> Option<Invocation> {
        let fresh = self.fetch(id).unwrap_or_else(|e| {
            tracing::error!(id, error = %e, "the asynchronous queue could not be read");
            None
        });
        let (record, _) = fresh?;
        (!record.expired(now_ms, self.limits.retention_ms)).then(|| record.invocation())
    }

    fn dead_letters(&self, function: &str) -> Vec<Invocation> {
        let mirror = self.mirror();
        let mut dead: Vec<&Record> = mirror
            .values()
            .map(|(r, _)| r)
            .filter(|r| r.function == function && r.state() == State::Dead)
            .collect();
        dead.sort_by(|a, b| (a.finished_at_ms, &a.id).cmp(&(b.finished_at_ms, &b.id)));
        dead.into_iter().map(Record::invocation).collect()
    }

    fn redrive(&self, function: &str, ids: &[String], now_ms: u64) -> Vec<String> {
        let chosen: Vec<String> = self
            .dead_letters(function)
            .into_iter()
            .map(|i| i.id)
            .filter(|id| ids.is_empty() || ids.contains(id))
            .collect();
        let mut mirror = self.mirror();
        let mut done = Vec::new();
        for id in chosen {
            let queued = self.modify(&mut mirror, &id, |r| {
                if r.state() != State::Dead {
                    return false;
                }
                r.state = State::Queued.as_str().to_string();
                r.attempts = 0;
                r.due_ms = now_ms;
                r.finished_at_ms = 0;
                true
            });
            match queued {
                Ok(true) => done.push(id),
                Ok(false) => {}
                Err(e) => {
                    tracing::error!(function, error = %e, "the asynchronous queue could not redrive");
                    break;
                }
            }
        }
        done
    }

    fn stats(&self) -> Vec<QueueStats> {
        let mirror = self.mirror();
        let mut by: HashMap<&str, QueueStats> = HashMap::new();
        for (r, _) in mirror.values() {
            let s = by.entry(&r.function).or_insert_with(|| QueueStats {
                function: r.function.clone(),
                ..QueueStats::default()
            });
            match r.state() {
                State::Queued | State::Running => {
                    s.depth += 1;
                    s.oldest_submitted_ms = Some(
                        s.oldest_submitted_ms
                            .map_or(r.submitted_at_ms, |o| o.min(r.submitted_at_ms)),
                    );
                }
                State::Dead => s.dead += 1,
                State::Succeeded | State::Failed => {}
            }
        }
        let mut out: Vec<QueueStats> = by.into_values().collect();
        out.sort_by(|a, b| a.function.cmp(&b.function));
        out
    }

    fn retry_policy(&self, function: &str) -> Option<RetryPolicy> {
        let (settings, key) = (self.settings.clone(), settings_key(function));
        let value = self
            .run(async move { settings.get(key).await.map_err(text) })
            .ok()
            .flatten()?;
        let v: serde_json::Value = serde_json::from_slice(&value).ok()?;
        Some(RetryPolicy {
            attempts: u32::try_from(v["attempts"].as_u64()?).unwrap_or(1),
            first_delay_ms: v["first_delay_ms"].as_u64()?,
            max_delay_ms: v["max_delay_ms"].as_u64()?,
        })
    }

    fn set_retry_policy(
        &self,
        function: &str,
        policy: Option<RetryPolicy>,
        now_ms: u64,
    ) -> Result<(), AsyncError> {
        let (settings, key) = (self.settings.clone(), settings_key(function));
        self.run(async move {
            match policy {
                None => settings.purge(key).await.map_err(text),
                Some(p) => {
                    let value = serde_json::json!({
                        "attempts": p.attempts,
                        "first_delay_ms": p.first_delay_ms,
                        "max_delay_ms": p.max_delay_ms,
                        "updated_at_ms": now_ms,
                    });
                    settings
                        .put(key, value.to_string().into_bytes().into())
                        .await
                        .map(|_| ())
                        .map_err(text)
                }
            }
        })
    }
}

impl JetStreamQueue {
    /// Records an attempt's outcome on a running call (logged when it fails: the call then
    /// stays `running`, and the next server delivers it again).
    fn record(&self, id: &str, state: State, outcome: &Outcome, due_ms: u64, now_ms: u64) {
        let mut mirror = self.mirror();
        let done = self.modify(&mut mirror, id, |r| {
            if r.state() != State::Running {
                return false;
            }
            r.record(state, outcome, due_ms, now_ms);
            true
        });
        if let Err(e) = done {
            tracing::error!(id, state = state.as_str(), error = %e, "the asynchronous queue could not record an attempt's outcome");
        }
    }
}

#[cfg(test)]
#[path = "jetstream_tests.rs"]
mod tests;
