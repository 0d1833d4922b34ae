//! The NATS side: running the client's futures on its own runtime, making the buckets,
//! loading the calls, and passing on what the watch sees.

use std::future::Future;
use std::sync::mpsc::Sender;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_nats::jetstream::{self, kv};
use futures::StreamExt;

use super::record::{Mirror, Record, Seen};

/// Runs `fut` on `runtime` and waits for it, at most [`OP_TIMEOUT`].
pub(super) fn block_on<T: Send + 'static>(
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

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

pub(super) fn text(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// The bucket `name`, made if missing (file storage, the latest value of each key only).
/// The stream is made here as `async-nats` makes a bucket's, without its account query,
/// whose answer from a 2.9 server it cannot read.
pub(super) async fn bucket(js: &jetstream::Context, name: &str) -> Result<kv::Store, String> {
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
pub(super) async fn forward(mut watch: kv::Watch, tx: Sender<Seen>) {
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
pub(super) async fn load(calls: kv::Store) -> Result<Mirror, String> {
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
