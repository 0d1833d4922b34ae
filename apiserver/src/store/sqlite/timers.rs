//! Schedules and their firings on SQLite: [`ScheduleStore`] (the tables: [`TIMER_TABLES`] in
//! [`super::schema`]).
//!
//! Like the queue (`super::queue`), the store has a connection of its own to
//! `DATA_DIR/apiserver.db` (WAL, `synchronous=FULL`, foreign keys on), opened after the DAO
//! brought the schema up to date; every method is one transaction. A firing's row and the
//! schedule's new anchor are written in the same transaction ([`ScheduleStore::record`]),
//! and `(schedule, slot_ms)` is the firings' primary key, so the history never holds a slot
//! twice. Without a data directory the tables live in memory.

use std::path::Path;
use std::sync::{Mutex, MutexGuard, PoisonError};

use rusqlite::{Connection, Row, Transaction, TransactionBehavior, params};

use super::BUSY_TIMEOUT;
use super::schema::TIMER_TABLES;
use crate::service::timers::{
    CatchUp, Firing, MAX_FIRINGS_KEPT, MAX_SCHEDULES, Schedule, ScheduleError, ScheduleStore,
};

/// The schedules on SQLite.
#[derive(Debug)]
pub struct SqliteTimers {
    conn: Mutex<Connection>,
}

const SCHEDULE_COLUMNS: &str =
    "id, function, cron, tz, event, catch_up, enabled, created_at_ms, anchor_ms";

impl SqliteTimers {
    /// The schedules in the database file `path`, whose schema the DAO brought up to date.
    pub fn open(path: &Path) -> Result<SqliteTimers, ScheduleError> {
        let connect = || -> rusqlite::Result<Connection> {
            let conn = Connection::open(path)?;
            conn.busy_timeout(BUSY_TIMEOUT)?;
            for (pragma, value) in [("journal_mode", "WAL"), ("synchronous", "FULL")] {
                conn.pragma_update(None, pragma, value)?;
            }
            conn.pragma_update(None, "foreign_keys", true)?;
            Ok(conn)
        };
        Ok(SqliteTimers {
            conn: Mutex::new(connect().map_err(store_error)?),
        })
    }

    /// Schedules in memory, lost when the server stops (no `functions` table to reference:
    /// the firing task drops a schedule whose function is gone).
    pub fn in_memory() -> SqliteTimers {
        let conn = Connection::open_in_memory().expect("SQLite opens an in-memory database");
        conn.pragma_update(None, "foreign_keys", false)
            .expect("a pragma of an in-memory database");
        conn.execute_batch(TIMER_TABLES)
            .expect("the timers' tables are valid SQL");
        // Firings still go with their schedule: the trigger does what the foreign key would.
        conn.execute_batch(
            "CREATE TRIGGER schedule_firings_gone AFTER DELETE ON schedules \
             BEGIN DELETE FROM schedule_firings WHERE schedule = old.id; END;",
        )
        .expect("the trigger is valid SQL");
        SqliteTimers {
            conn: Mutex::new(conn),
        }
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn write<T>(
        &self,
        body: impl FnOnce(&Transaction<'_>) -> rusqlite::Result<T>,
    ) -> Result<T, ScheduleError> {
        let mut conn = self.conn();
        let run = || {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let out = body(&tx)?;
            tx.commit()?;
            Ok(out)
        };
        run().map_err(store_error)
    }
}

impl ScheduleStore for SqliteTimers {
    fn create(&self, s: &Schedule) -> Result<(), ScheduleError> {
        let outcome = self.write(|tx| {
            let n: i64 = tx.query_row("SELECT COUNT(*) FROM schedules", [], |r| r.get(0))?;
            if n as usize >= MAX_SCHEDULES {
                return Ok(Err(ScheduleError::TooMany));
            }
            tx.execute(
                &format!(
                    "INSERT INTO schedules ({SCHEDULE_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
                ),
                params![
                    s.id,
                    s.function,
                    s.cron,
                    s.tz,
                    s.event,
                    s.catch_up.as_str(),
                    s.enabled,
                    to_i64(s.created_at_ms),
                    to_i64(s.anchor_ms),
                ],
            )?;
            Ok(Ok(()))
        });
        match outcome {
            // The foreign key: the function was deleted meanwhile.
            Err(ScheduleError::Store(m)) if m.contains("FOREIGN KEY") => {
                Err(ScheduleError::NoFunction(s.function.clone()))
            }
            other => other?,
        }
    }

    fn list(&self, function: Option<&str>) -> Result<Vec<Schedule>, ScheduleError> {
        let conn = self.conn();
        let read = || -> rusqlite::Result<Vec<Schedule>> {
            let mut stmt = conn.prepare(&format!(
                "SELECT {SCHEDULE_COLUMNS} FROM schedules WHERE ?1 IS NULL OR function = ?1 \
                 ORDER BY created_at_ms, id"
            ))?;
            let rows = stmt.query_map(params![function], schedule)?;
            rows.collect()
        };
        read().map_err(store_error)
    }

    fn delete(&self, id: &str) -> Result<bool, ScheduleError> {
        self.write(|tx| tx.execute("DELETE FROM schedules WHERE id = ?1", params![id]))
            .map(|n| n > 0)
    }

    fn set_enabled(&self, id: &str, enabled: bool, now_ms: u64) -> Result<bool, ScheduleError> {
        self.write(|tx| {
            tx.execute(
                "UPDATE schedules SET enabled = ?2, \
                 anchor_ms = CASE WHEN ?2 AND NOT enabled THEN MAX(anchor_ms, ?3) ELSE anchor_ms END \
                 WHERE id = ?1",
                params![id, enabled, to_i64(now_ms)],
            )
        })
        .map(|n| n > 0)
    }

    fn record(&self, id: &str, f: &Firing) -> Result<bool, ScheduleError> {
        self.write(|tx| {
            let n = tx.execute(
                "UPDATE schedules SET anchor_ms = MAX(anchor_ms, ?2) WHERE id = ?1",
                params![id, to_i64(f.slot_ms)],
            )?;
            if n == 0 {
                return Ok(false);
            }
            tx.execute(
                "INSERT OR IGNORE INTO schedule_firings \
                 (schedule, slot_ms, fired_at_ms, invocation_id, catch_up, error) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    id,
                    to_i64(f.slot_ms),
                    to_i64(f.fired_at_ms),
                    f.invocation_id,
                    f.catch_up,
                    f.error
                ],
            )?;
            tx.execute(
                "DELETE FROM schedule_firings WHERE schedule = ?1 AND slot_ms NOT IN \
                 (SELECT slot_ms FROM schedule_firings WHERE schedule = ?1 \
                  ORDER BY slot_ms DESC LIMIT ?2)",
                params![id, MAX_FIRINGS_KEPT as i64],
            )?;
            Ok(true)
        })
    }

    fn advance(&self, id: &str, anchor_ms: u64) -> Result<(), ScheduleError> {
        self.write(|tx| {
            tx.execute(
                "UPDATE schedules SET anchor_ms = MAX(anchor_ms, ?2) WHERE id = ?1",
                params![id, to_i64(anchor_ms)],
            )
        })
        .map(drop)
    }

    fn firings(&self, id: &str, limit: usize) -> Result<Vec<Firing>, ScheduleError> {
        let conn = self.conn();
        let read = || -> rusqlite::Result<Vec<Firing>> {
            let mut stmt = conn.prepare(
                "SELECT slot_ms, fired_at_ms, invocation_id, catch_up, error FROM schedule_firings \
                 WHERE schedule = ?1 ORDER BY slot_ms DESC LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![id, limit as i64], |r| {
                Ok(Firing {
                    slot_ms: to_u64(r.get(0)?),
                    fired_at_ms: to_u64(r.get(1)?),
                    invocation_id: r.get(2)?,
                    catch_up: r.get(3)?,
                    error: r.get(4)?,
                })
            })?;
            rows.collect()
        };
        read().map_err(store_error)
    }
}

fn schedule(r: &Row<'_>) -> rusqlite::Result<Schedule> {
    Ok(Schedule {
        id: r.get(0)?,
        function: r.get(1)?,
        cron: r.get(2)?,
        tz: r.get(3)?,
        event: r.get(4)?,
        catch_up: CatchUp::parse(&r.get::<_, String>(5)?).unwrap_or_default(),
        enabled: r.get(6)?,
        created_at_ms: to_u64(r.get(7)?),
        anchor_ms: to_u64(r.get(8)?),
    })
}

fn store_error(e: rusqlite::Error) -> ScheduleError {
    ScheduleError::Store(e.to_string())
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

#[cfg(test)]
#[path = "timers_tests.rs"]
mod tests;
