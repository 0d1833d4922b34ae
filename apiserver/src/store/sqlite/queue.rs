//! The durable asynchronous queue: [`InvocationStore`] on SQLite (the tables: schema 4 in
//! [`super::schema`]).
//!
//! # What survives what
//!
//! Every method is one transaction on a connection in WAL mode with `synchronous=FULL`, the
//! DAO's settings: a submit that returned has been synced to disk, so a call acknowledged to
//! its caller survives `kill -9` and a power loss. The queue has its own connection to
//! `DATA_DIR/apiserver.db` (opened after the DAO, which holds the directory's lock and has
//! brought the schema to 4), so a submit's `fsync` never waits behind a deploy's lock on the
//! DAO's connection. Without a data directory the same tables live in an in-memory database,
//! and a stopped server forgets them.
//!
//! # At least once
//!
//! A call is `running` from the transaction that starts an attempt until the one that records
//! how it ended. A server that dies in between leaves it `running`; the next server's
//! [`InvocationStore::recover`] queues it again. So every acknowledged call is delivered at
//! least once, and one is delivered twice exactly when the server died after the function
//! was called and before the outcome was committed.

use std::path::Path;
use std::sync::{Mutex, MutexGuard, PoisonError};

use rusqlite::{Connection, OptionalExtension, Row, Transaction, TransactionBehavior, params};

use super::schema::QUEUE_TABLES;
use crate::service::async_calls::{
    AsyncError, AsyncLimits, Callback, Invocation, InvocationStore, NewCall, Outcome, Pending,
    QueueStats, RetryPolicy, State, Submitted, result_too_large,
};

/// The queue on SQLite.
#[derive(Debug)]
pub struct SqliteQueue {
    conn: Mutex<Connection>,
    limits: AsyncLimits,
}

/// The columns [`invocation`] reads, in its order.
const CALL_COLUMNS: &str = "id, function, state, submitted_at_ms, started_at_ms, finished_at_ms, attempts, \
     request_id, version, target, cold_start, body, error_code, error_message";

impl SqliteQueue {
    /// The queue in the database file `path`, whose schema is already 4 or newer (the DAO
    /// opened it first).
    pub fn open(path: &Path, limits: AsyncLimits) -> Result<SqliteQueue, AsyncError> {
        let conn = super::open_beside(path).map_err(store_error)?;
        Ok(SqliteQueue {
            conn: Mutex::new(conn),
            limits,
        })
    }

    /// A queue in memory: lost when the server stops.
    pub fn in_memory(limits: AsyncLimits) -> SqliteQueue {
        let conn = Connection::open_in_memory().expect("SQLite opens an in-memory database");
        // No `functions` table here for the settings to reference.
        conn.pragma_update(None, "foreign_keys", false)
            .expect("a pragma of an in-memory database");
        conn.execute_batch(QUEUE_TABLES)
            .expect("the queue's tables are valid SQL");
        SqliteQueue {
            conn: Mutex::new(conn),
            limits,
        }
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `body` in one immediate transaction and commits it.
    fn write<T>(
        &self,
        body: impl FnOnce(&Transaction<'_>) -> rusqlite::Result<T>,
    ) -> rusqlite::Result<T> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let out = body(&tx)?;
        tx.commit()?;
        Ok(out)
    }

    /// Forgets the finished calls whose retention has passed.
    fn expire(&self, tx: &Transaction<'_>, now_ms: u64) -> rusqlite::Result<()> {
        let before = now_ms.saturating_sub(self.limits.retention_ms);
        tx.execute(
            "DELETE FROM async_calls WHERE state IN ('succeeded', 'failed') AND finished_at_ms <= ?1",
            params![to_i64(before)],
        )?;
        Ok(())
    }

    /// Forgets the finished call that finished first; false when there is none.
    fn forget_oldest(tx: &Transaction<'_>) -> rusqlite::Result<bool> {
        let n = tx.execute(
            "DELETE FROM async_calls WHERE id = (SELECT id FROM async_calls \
             WHERE state IN ('succeeded', 'failed') ORDER BY finished_at_ms, id LIMIT 1)",
            [],
        )?;
        Ok(n > 0)
    }

    fn totals(tx: &Transaction<'_>) -> rusqlite::Result<(usize, u64, usize)> {
        tx.query_row(
            "SELECT COUNT(*), COALESCE(SUM(bytes), 0), \
             COALESCE(SUM(state NOT IN ('succeeded', 'failed')), 0) FROM async_calls",
            [],
            |r| {
                Ok((
                    r.get::<_, i64>(0)? as usize,
                    r.get::<_, i64>(1)? as u64,
                    r.get::<_, i64>(2)? as usize,
                ))
            },
        )
    }

    fn submit_in(
        &self,
        tx: &Transaction<'_>,
        id: &str,
        call: &NewCall,
        now_ms: u64,
    ) -> rusqlite::Result<Result<Submitted, AsyncError>> {
        if let Some(key) = &call.idempotency_key {
            let first: Option<String> = tx
                .query_row(
                    "SELECT id FROM async_calls WHERE function = ?1 AND account = ?2 AND idempotency_key = ?3",
                    params![call.function_name, call.account_id, key],
                    |r| r.get(0),
                )
                .optional()?;
            if let Some(first) = first {
                return Ok(Ok(Submitted {
                    id: first,
                    new: false,
                }));
            }
        }
        self.expire(tx, now_ms)?;
        let event = call.event.len() as u64;
        loop {
            let (kept, bytes, unfinished) = Self::totals(tx)?;
            if kept < self.limits.max_kept && bytes.saturating_add(event) <= self.limits.max_bytes {
                break;
            }
            if Self::forget_oldest(tx)? {
                continue;
            }
            return Ok(Err(if kept >= self.limits.max_kept {
                AsyncError::TooMany { kept: unfinished }
            } else {
                AsyncError::TooLarge {
                    held: bytes,
                    event,
                    limit: self.limits.max_bytes,
                }
            }));
        }
        tx.execute(
            "INSERT INTO async_calls (id, function, account, event, route, state, attempts, due_ms, \
             submitted_at_ms, started_at_ms, finished_at_ms, bytes, idempotency_key, on_success, \
             on_failure, request_id, version, target, cold_start, body, error_code, error_message) \
             VALUES (?1, ?2, ?3, ?4, ?5, 'queued', 0, ?6, ?6, 0, 0, ?7, ?8, ?9, ?10, '', '', '', 0, NULL, '', '')",
            params![
                id,
                call.function_name,
                call.account_id,
                call.event,
                route_json(call),
                to_i64(now_ms),
                to_i64(event),
                call.idempotency_key,
                call.on_success.as_ref().map(callback_text),
                call.on_failure.as_ref().map(callback_text),
            ],
        )?;
        Ok(Ok(Submitted {
            id: id.to_string(),
            new: true,
        }))
    }

    /// Records an attempt's outcome and moves the call to `state`.
    fn record_in(
        tx: &Transaction<'_>,
        id: &str,
        state: State,
        outcome: &Outcome,
        due_ms: u64,
        now_ms: u64,
    ) -> rusqlite::Result<usize> {
        let (body, code, message) = match &outcome.result {
            Ok(body) => (Some(body.as_slice()), "", ""),
            Err((code, message)) => (None, code.as_str(), message.as_str()),
        };
        tx.execute(
                "UPDATE async_calls SET state = ?2, due_ms = ?3, finished_at_ms = ?4, request_id = ?5, \
                 version = ?6, target = ?7, cold_start = ?8, body = ?9, error_code = ?10, error_message = ?11 \
                 WHERE id = ?1 AND state = 'running'",
                params![
                    id,
                    state.as_str(),
                    to_i64(due_ms),
                    to_i64(if state == State::Queued { 0 } else { now_ms }),
                    outcome.request_id,
                    outcome.version,
                    outcome.target,
                    outcome.cold_start,
                    body,
                    code,
                message,
            ],
        )
    }
}

impl InvocationStore for SqliteQueue {
    fn submit(&self, id: &str, call: &NewCall, now_ms: u64) -> Result<Submitted, AsyncError> {
        self.write(|tx| self.submit_in(tx, id, call, now_ms))
            .map_err(store_error)?
    }

    fn submit_all(
        &self,
        calls: &[(String, NewCall)],
        now_ms: u64,
    ) -> Result<Vec<Submitted>, AsyncError> {
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(store_error)?;
        let mut out = Vec::with_capacity(calls.len());
        for (id, call) in calls {
            // A refusal drops `tx` uncommitted: none of them is kept.
            out.push(
                self.submit_in(&tx, id, call, now_ms)
                    .map_err(store_error)??,
            );
        }
        tx.commit().map_err(store_error)?;
        Ok(out)
    }

    fn recover(&self, now_ms: u64) -> Result<u64, AsyncError> {
        self.write(|tx| {
            tx.execute(
                "UPDATE async_calls SET state = 'queued', due_ms = ?1 WHERE state = 'running'",
                params![to_i64(now_ms)],
            )
        })
        .map(|n| n as u64)
        .map_err(store_error)
    }

    fn due(&self, now_ms: u64, max: usize, busy: &[String]) -> Vec<Pending> {
        let conn = self.conn();
        let busy = serde_json::to_string(busy).unwrap_or_else(|_| "[]".into());
        let read = || -> rusqlite::Result<Vec<Pending>> {
            let mut stmt = conn.prepare(
                "SELECT id, function, account, event, route, attempts, submitted_at_ms, \
                 idempotency_key, on_success, on_failure FROM async_calls \
                 WHERE state = 'queued' AND due_ms <= ?1 \
                 AND (CASE WHEN instr(function, ':') > 0 THEN substr(function, 1, instr(function, ':') - 1) \
                      ELSE function END) NOT IN (SELECT value FROM json_each(?3)) \
                 ORDER BY due_ms, submitted_at_ms LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![to_i64(now_ms), max as i64, busy], pending)?;
            rows.collect()
        };
        read().unwrap_or_else(|e| {
            tracing::error!(error = %e, "the asynchronous queue could not be read");
            Vec::new()
        })
    }

    fn next_due_ms(&self) -> Option<u64> {
        self.conn()
            .query_row(
                "SELECT MIN(due_ms) FROM async_calls WHERE state = 'queued'",
                [],
                |r| r.get::<_, Option<i64>>(0),
            )
            .ok()
            .flatten()
            .map(to_u64)
    }

    fn start(&self, id: &str, now_ms: u64) -> bool {
        self.write(|tx| {
            tx.execute(
                "UPDATE async_calls SET state = 'running', attempts = attempts + 1, \
                 started_at_ms = CASE started_at_ms WHEN 0 THEN ?2 ELSE started_at_ms END \
                 WHERE id = ?1 AND state = 'queued'",
                params![id, to_i64(now_ms)],
            )
        })
        .map(|n| n == 1)
        .unwrap_or_else(|e| {
            tracing::error!(id, error = %e, "the asynchronous queue could not start a call");
            false
        })
    }

    fn finish(&self, id: &str, mut outcome: Outcome, now_ms: u64) {
        // One transaction: the event's bytes go, the result's come (room made by forgetting
        // older finished calls; a result that cannot fit is replaced by a failure).
        let done = self.write(|tx| {
            self.expire(tx, now_ms)?;
            let running: Option<i64> = tx
                .query_row(
                    "SELECT bytes FROM async_calls WHERE id = ?1 AND state = 'running'",
                    params![id],
                    |r| r.get(0),
                )
                .optional()?;
            if running.is_none() {
                return Ok(0);
            }
            tx.execute(
                "UPDATE async_calls SET bytes = 0, event = x'' WHERE id = ?1",
                params![id],
            )?;
            let mut size = outcome.result.as_ref().map_or(0, |b| b.len() as u64);
            loop {
                let (_, bytes, _) = Self::totals(tx)?;
                if size == 0 || bytes.saturating_add(size) <= self.limits.max_bytes {
                    break;
                }
                if !Self::forget_oldest(tx)? {
                    outcome.result = Err(result_too_large(size, self.limits.max_bytes));
                    size = 0;
                }
            }
            tx.execute(
                "UPDATE async_calls SET bytes = ?2 WHERE id = ?1",
                params![id, to_i64(size)],
            )?;
            let state = if outcome.result.is_ok() {
                State::Succeeded
            } else {
                State::Failed
            };
            Self::record_in(tx, id, state, &outcome, 0, now_ms)
        });
        if let Err(e) = done {
            tracing::error!(id, error = %e, "the asynchronous queue could not record an outcome");
        }
    }

    /// In a transaction of its own.
    fn record(&self, id: &str, state: State, outcome: &Outcome, due_ms: u64, now_ms: u64) {
        if let Err(e) = self.write(|tx| Self::record_in(tx, id, state, outcome, due_ms, now_ms)) {
            tracing::error!(id, state = state.as_str(), error = %e, "the asynchronous queue could not record an attempt's outcome");
        }
    }

    fn get(&self, id: &str, now_ms: u64) -> Option<Invocation> {
        let before = to_i64(now_ms.saturating_sub(self.limits.retention_ms));
        self.conn()
            .query_row(
                &format!(
                    "SELECT {CALL_COLUMNS} FROM async_calls WHERE id = ?1 \
                     AND NOT (state IN ('succeeded', 'failed') AND finished_at_ms <= ?2)"
                ),
                params![id, before],
                invocation,
            )
            .optional()
            .unwrap_or_else(|e| {
                tracing::error!(id, error = %e, "the asynchronous queue could not be read");
                None
            })
    }

    fn dead_letters(&self, function: &str) -> Vec<Invocation> {
        let conn = self.conn();
        let read = || -> rusqlite::Result<Vec<Invocation>> {
            let mut stmt = conn.prepare(&format!(
                "SELECT {CALL_COLUMNS} FROM async_calls WHERE function = ?1 AND state = 'dead' \
                 ORDER BY finished_at_ms, id"
            ))?;
            let rows = stmt.query_map(params![function], invocation)?;
            rows.collect()
        };
        read().unwrap_or_default()
    }

    fn redrive(&self, function: &str, ids: &[String], now_ms: u64) -> Vec<String> {
        let chosen = |id: &String| ids.is_empty() || ids.contains(id);
        let out = self.write(|tx| {
            let dead: Vec<String> = {
                let mut stmt = tx.prepare(
                    "SELECT id FROM async_calls WHERE function = ?1 AND state = 'dead' ORDER BY finished_at_ms, id",
                )?;
                let rows = stmt.query_map(params![function], |r| r.get::<_, String>(0))?;
                rows.collect::<rusqlite::Result<_>>()?
            };
            let mut done = Vec::new();
            for id in dead.into_iter().filter(chosen) {
                tx.execute(
                    "UPDATE async_calls SET state = 'queued', attempts = 0, due_ms = ?2, finished_at_ms = 0 WHERE id = ?1",
                    params![id, to_i64(now_ms)],
                )?;
                done.push(id);
            }
            Ok(done)
        });
        out.unwrap_or_else(|e| {
            tracing::error!(function, error = %e, "the asynchronous queue could not redrive");
            Vec::new()
        })
    }

    fn stats(&self) -> Vec<QueueStats> {
        let conn = self.conn();
        let read = || -> rusqlite::Result<Vec<QueueStats>> {
            let mut stmt = conn.prepare(
                "SELECT function, SUM(state IN ('queued', 'running')), \
                 MIN(CASE WHEN state IN ('queued', 'running') THEN submitted_at_ms END), \
                 SUM(state = 'dead') FROM async_calls GROUP BY function ORDER BY function",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok(QueueStats {
                    function: r.get(0)?,
                    depth: to_u64(r.get(1)?),
                    oldest_submitted_ms: r.get::<_, Option<i64>>(2)?.map(to_u64),
                    dead: to_u64(r.get(3)?),
                })
            })?;
            rows.collect()
        };
        read().unwrap_or_default()
    }

    fn retry_policy(&self, function: &str) -> Option<RetryPolicy> {
        self.conn()
            .query_row(
                "SELECT max_attempts, first_delay_ms, max_delay_ms FROM async_settings WHERE function = ?1",
                params![function],
                |r| {
                    Ok(RetryPolicy {
                        attempts: u32::try_from(r.get::<_, i64>(0)?).unwrap_or(1),
                        first_delay_ms: to_u64(r.get(1)?),
                        max_delay_ms: to_u64(r.get(2)?),
                    })
                },
            )
            .optional()
            .ok()
            .flatten()
    }

    fn set_retry_policy(
        &self,
        function: &str,
        policy: Option<RetryPolicy>,
        now_ms: u64,
    ) -> Result<(), AsyncError> {
        self.write(|tx| match policy {
            None => tx.execute("DELETE FROM async_settings WHERE function = ?1", params![function]),
            Some(p) => tx.execute(
                "INSERT INTO async_settings (function, max_attempts, first_delay_ms, max_delay_ms, updated_at_ms) \
                 VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (function) DO UPDATE SET \
                 max_attempts = ?2, first_delay_ms = ?3, max_delay_ms = ?4, updated_at_ms = ?5",
                params![
                    function,
                    i64::from(p.attempts),
                    to_i64(p.first_delay_ms),
                    to_i64(p.max_delay_ms),
                    to_i64(now_ms)
                ],
            ),
        })
        .map(|_| ())
        .map_err(store_error)
    }
}

fn store_error(e: rusqlite::Error) -> AsyncError {
    AsyncError::Store(e.to_string())
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// A callback as the database keeps it: `fn:NAME` or `url:URL`.
pub(crate) fn callback_text(c: &Callback) -> String {
    match c {
        Callback::Function(name) => format!("fn:{name}"),
        Callback::Url(url) => format!("url:{url}"),
    }
}

pub(crate) fn callback_of(text: Option<String>) -> Option<Callback> {
    let text = text?;
    if let Some(name) = text.strip_prefix("fn:") {
        Some(Callback::Function(name.to_string()))
    } else {
        text.strip_prefix("url:")
            .map(|u| Callback::Url(u.to_string()))
    }
}

fn route_json(call: &NewCall) -> String {
    serde_json::json!({
        "route_id": call.route_id,
        "routing_key": call.routing_key,
        "params": call.route_params,
    })
    .to_string()
}

fn pending(r: &Row<'_>) -> rusqlite::Result<Pending> {
    let route: serde_json::Value =
        serde_json::from_str(&r.get::<_, String>(4)?).unwrap_or_default();
    let text = |key: &str| route[key].as_str().map(str::to_string);
    let params = serde_json::from_value(route["params"].clone()).unwrap_or_default();
    Ok(Pending {
        id: r.get(0)?,
        call: NewCall {
            function_name: r.get(1)?,
            account_id: r.get(2)?,
            event: r.get(3)?,
            route_id: text("route_id"),
            routing_key: text("routing_key"),
            route_params: params,
            idempotency_key: r.get(7)?,
            on_success: callback_of(r.get(8)?),
            on_failure: callback_of(r.get(9)?),
        },
        attempts: u32::try_from(r.get::<_, i64>(5)?).unwrap_or(0),
        submitted_at_ms: to_u64(r.get(6)?),
    })
}

fn invocation(r: &Row<'_>) -> rusqlite::Result<Invocation> {
    let state_text: String = r.get(2)?;
    let state = State::parse(&state_text).unwrap_or(State::Failed);
    let body: Option<Vec<u8>> = r.get(11)?;
    let code: String = r.get(12)?;
    let request_id: String = r.get(7)?;
    let outcome = (!request_id.is_empty() || !code.is_empty() || body.is_some()).then(|| Outcome {
        request_id,
        version: r.get(8).unwrap_or_default(),
        target: r.get(9).unwrap_or_default(),
        cold_start: r.get(10).unwrap_or(false),
        result: match body {
            Some(b) if code.is_empty() => Ok(b),
            _ => Err((code, r.get(13).unwrap_or_default())),
        },
    });
    Ok(Invocation {
        id: r.get(0)?,
        function_name: r.get(1)?,
        state,
        submitted_at_ms: to_u64(r.get(3)?),
        started_at_ms: to_u64(r.get(4)?),
        finished_at_ms: to_u64(r.get(5)?),
        attempts: u32::try_from(r.get::<_, i64>(6)?).unwrap_or(0),
        outcome,
    })
}

#[cfg(test)]
#[path = "queue_tests.rs"]
mod tests;
