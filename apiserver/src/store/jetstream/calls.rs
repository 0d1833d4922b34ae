//! [`InvocationStore`] on the buckets: each method reads the copy (brought up to date with
//! what the watch saw) and writes the bucket by compare-and-set (see the module docs).

use std::collections::HashMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

use super::JetStreamQueue;
use super::client::text;
use super::record::{Record, encode, key_hash, settings_key};
use crate::service::async_calls::{
    AsyncError, Invocation, InvocationStore, NewCall, Outcome, Pending, QueueStats, RetryPolicy,
    State, Submitted, result_too_large,
};
use crate::store::sqlite::queue::callback_text;

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
        self.make_room(&mut mirror, 1, event, now_ms)?;
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
            let _ = self.make_room(&mut mirror, 0, size, now_ms);
            let held: u64 = mirror
                .iter()
                .filter(|(other, _)| other.as_str() != id)
                .map(|(_, (r, _))| r.bytes)
                .sum();
            if held.saturating_add(size) > self.limits.max_bytes {
                outcome.result = Err(result_too_large(size, self.limits.max_bytes));
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
