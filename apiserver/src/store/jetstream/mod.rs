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
//!
//! [`InvocationStore`]: crate::service::async_calls::InvocationStore
//! [`InvocationStore::due`]: crate::service::async_calls::InvocationStore::due
//! [`InvocationStore::get`]: crate::service::async_calls::InvocationStore::get

use std::collections::HashSet;
use std::sync::mpsc::Receiver;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use async_nats::jetstream::{self, kv};

use client::{block_on, bucket, forward, load, lock, text};
use record::{Mirror, Record, Seen, encode, key_hash};

use crate::service::async_calls::{AsyncError, AsyncLimits, NewCall};

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

impl JetStreamQueue {
    /// Connects to NATS at `address` (`host:port`), makes the buckets if missing and reads
    /// the calls kept. Fails, naming the address, when NATS does not answer within
    /// [`CONNECT_TIMEOUT`] or has no JetStream.
    pub fn connect(address: &str, limits: AsyncLimits) -> Result<JetStreamQueue, String> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("nats-queue")
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the NATS client: {e}"))?;
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
                return Err(format!(
                    "NATS at {address} (--queue): {e}; is nats-server running there with JetStream on (-js)?"
                ));
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
    ///
    /// `calls`: how many calls the change adds (1 for a submit, 0 for a result).
    fn make_room(
        &self,
        mirror: &mut Mirror,
        calls: usize,
        event: u64,
        now_ms: u64,
    ) -> Result<(), AsyncError> {
        let expired: Vec<String> = mirror
            .values()
            .filter(|(r, _)| r.expired(now_ms, self.limits.retention_ms))
            .map(|(r, _)| r.id.clone())
            .collect();
        self.forget(mirror, &expired)?;
        let kept = mirror.len();
        let bytes: u64 = mirror.values().map(|(r, _)| r.bytes).sum();
        let fits = |kept: usize, bytes: u64| {
            kept + calls <= self.limits.max_kept
                && bytes.saturating_add(event) <= self.limits.max_bytes
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
        Err(if n + calls > self.limits.max_kept {
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

mod calls;
mod client;
mod record;

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
