//! Topics and chains on SQLite: [`EventStore`] over the tables of schema 5
//! ([`super::schema::EVENTS_TABLES`]).
//!
//! Like the queue, the store has its own connection to `DATA_DIR/apiserver.db`, opened after
//! the DAO (which holds the directory's lock and brought the schema up to date), in WAL mode
//! with `synchronous=FULL` and `foreign_keys` on: a subscription or chain edge can only name
//! a function that has a row, and goes when that row goes (`ON DELETE CASCADE`, run by the
//! DAO's delete). Without a data directory the same tables live in memory, without the
//! references (there is no `functions` table there).

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Mutex, MutexGuard, PoisonError};

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::schema::EVENTS_TABLES;
use crate::service::events::{ChainLinks, EventStore, EventsError, GraphCheck, On, Subscription};

/// Subscriptions, chains and chain steps on SQLite.
#[derive(Debug)]
pub struct SqliteEvents {
    conn: Mutex<Connection>,
}

fn store_error(e: rusqlite::Error) -> EventsError {
    EventsError::Store(e.to_string())
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl SqliteEvents {
    /// The store in the database file `path`, whose schema already has the events tables.
    pub fn open(path: &Path) -> Result<SqliteEvents, EventsError> {
        let conn = super::open_beside(path).map_err(store_error)?;
        Ok(SqliteEvents {
            conn: Mutex::new(conn),
        })
    }

    /// A store in memory: lost when the server stops.
    pub fn in_memory() -> SqliteEvents {
        let conn = Connection::open_in_memory().expect("SQLite opens an in-memory database");
        conn.pragma_update(None, "foreign_keys", false)
            .expect("a pragma of an in-memory database");
        conn.execute_batch(EVENTS_TABLES)
            .expect("the events tables are valid SQL");
        SqliteEvents {
            conn: Mutex::new(conn),
        }
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A foreign-key failure is a function deleted between the check and the write.
fn write_error(field: &str, e: rusqlite::Error) -> EventsError {
    if e.sqlite_error_code() == Some(rusqlite::ErrorCode::ConstraintViolation) {
        return EventsError::Missing {
            field: field.to_string(),
            problem: "the function is not deployed (it was deleted just now)".into(),
        };
    }
    store_error(e)
}

impl EventStore for SqliteEvents {
    fn subscribe(&self, sub: &Subscription) -> Result<bool, EventsError> {
        let filter = serde_json::to_string(&sub.filter).unwrap_or_else(|_| "{}".into());
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(store_error)?;
        let existed: bool = tx
            .query_row(
                "SELECT COUNT(*) FROM subscriptions WHERE topic = ?1 AND target = ?2",
                params![sub.topic, sub.target],
                |r| r.get::<_, i64>(0),
            )
            .map_err(store_error)?
            > 0;
        tx.execute(
            "INSERT INTO subscriptions (topic, target, function, filter, created_at_ms) \
             VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT(topic, target) DO UPDATE SET \
             filter = excluded.filter, created_at_ms = excluded.created_at_ms",
            params![
                sub.topic,
                sub.target,
                sub.function(),
                filter,
                to_i64(sub.created_at_ms)
            ],
        )
        .map_err(|e| write_error("function", e))?;
        tx.commit().map_err(store_error)?;
        Ok(!existed)
    }

    fn unsubscribe(&self, topic: &str, target: &str) -> Result<bool, EventsError> {
        self.conn()
            .execute(
                "DELETE FROM subscriptions WHERE topic = ?1 AND target = ?2",
                params![topic, target],
            )
            .map(|n| n > 0)
            .map_err(store_error)
    }

    fn subscriptions(&self, topic: Option<&str>, function: Option<&str>) -> Vec<Subscription> {
        let conn = self.conn();
        let read = || -> rusqlite::Result<Vec<Subscription>> {
            let mut stmt = conn.prepare(
                "SELECT topic, target, filter, created_at_ms FROM subscriptions \
                 WHERE (?1 IS NULL OR topic = ?1) AND (?2 IS NULL OR function = ?2) \
                 ORDER BY topic, target",
            )?;
            let rows = stmt.query_map(params![topic, function], |r| {
                let filter: String = r.get(2)?;
                Ok(Subscription {
                    topic: r.get(0)?,
                    target: r.get(1)?,
                    filter: serde_json::from_str(&filter).unwrap_or_default(),
                    created_at_ms: r.get::<_, i64>(3)?.max(0) as u64,
                })
            })?;
            rows.collect()
        };
        read().unwrap_or_else(|e| {
            tracing::error!(error = %e, "the events store could not read subscriptions");
            Vec::new()
        })
    }

    fn set_chain(
        &self,
        function: &str,
        links: &ChainLinks,
        now_ms: u64,
        check: GraphCheck<'_>,
    ) -> Result<(), EventsError> {
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(store_error)?;
        let mut graph: HashMap<String, Vec<String>> = HashMap::new();
        {
            let mut stmt = tx
                .prepare("SELECT function, target FROM chains WHERE function <> ?1")
                .map_err(store_error)?;
            let rows = stmt
                .query_map([function], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
                })
                .map_err(store_error)?;
            for row in rows {
                let (from, to) = row.map_err(store_error)?;
                graph.entry(from).or_default().push(to);
            }
        }
        let mine = graph.entry(function.to_string()).or_default();
        mine.extend(links.on_success.iter().cloned());
        mine.extend(links.on_failure.iter().cloned());
        check(&graph)?;
        tx.execute("DELETE FROM chains WHERE function = ?1", [function])
            .map_err(store_error)?;
        for on in [On::Success, On::Failure] {
            if let Some(target) = links.get(on) {
                tx.execute(
                    "INSERT INTO chains (function, on_outcome, target, updated_at_ms) \
                     VALUES (?1, ?2, ?3, ?4)",
                    params![function, on.as_str(), target, to_i64(now_ms)],
                )
                .map_err(|e| write_error(on.field(), e))?;
            }
        }
        tx.commit().map_err(store_error)
    }

    fn chain(&self, function: &str) -> ChainLinks {
        let conn = self.conn();
        let read = || -> rusqlite::Result<ChainLinks> {
            let mut stmt =
                conn.prepare("SELECT on_outcome, target FROM chains WHERE function = ?1")?;
            let mut links = ChainLinks::default();
            let rows = stmt.query_map([function], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })?;
            for row in rows {
                let (on, target) = row?;
                match On::parse(&on) {
                    Some(On::Success) => links.on_success = Some(target),
                    Some(On::Failure) => links.on_failure = Some(target),
                    None => {}
                }
            }
            Ok(links)
        };
        read().unwrap_or_else(|e| {
            tracing::error!(error = %e, function, "the events store could not read a chain");
            ChainLinks::default()
        })
    }

    fn chained_functions(&self) -> Vec<String> {
        let conn = self.conn();
        let read = || -> rusqlite::Result<Vec<String>> {
            let mut stmt = conn.prepare("SELECT DISTINCT function FROM chains")?;
            let rows = stmt.query_map([], |r| r.get(0))?;
            rows.collect()
        };
        read().unwrap_or_else(|e| {
            tracing::error!(error = %e, "the events store could not read the chains");
            Vec::new()
        })
    }

    fn remember_step(&self, invocation_id: &str, request_id: &str, now_ms: u64) {
        let done = self.conn().execute(
            "INSERT OR IGNORE INTO chain_steps (invocation_id, request_id, created_at_ms) \
             VALUES (?1, ?2, ?3)",
            params![invocation_id, request_id, to_i64(now_ms)],
        );
        if let Err(e) = done {
            tracing::error!(error = %e, invocation_id, "the events store could not keep a chain step's request id");
        }
    }

    fn step_request_id(&self, invocation_id: &str) -> Option<String> {
        self.conn()
            .query_row(
                "SELECT request_id FROM chain_steps WHERE invocation_id = ?1",
                [invocation_id],
                |r| r.get(0),
            )
            .optional()
            .unwrap_or(None)
    }

    fn forget_step(&self, invocation_id: &str) {
        let _ = self.conn().execute(
            "DELETE FROM chain_steps WHERE invocation_id = ?1",
            [invocation_id],
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::events::{find_cycle, parse_filter};

    fn no_cycle(g: &HashMap<String, Vec<String>>) -> Result<(), EventsError> {
        match find_cycle("a", g) {
            Some(cycle) => Err(EventsError::Cycle {
                field: "on_success".into(),
                cycle,
            }),
            None => Ok(()),
        }
    }

    #[test]
    fn subscriptions_replace_and_list_by_topic_and_function() {
        let s = SqliteEvents::in_memory();
        let sub = |topic: &str, target: &str, filter: &[&str]| Subscription {
            topic: topic.into(),
            target: target.into(),
            filter: parse_filter(&filter.iter().map(|f| f.to_string()).collect::<Vec<_>>())
                .unwrap(),
            created_at_ms: 5,
        };
        assert!(s.subscribe(&sub("t", "a", &[])).unwrap());
        assert!(!s.subscribe(&sub("t", "a", &["k=v"])).unwrap());
        assert!(s.subscribe(&sub("t", "b:live", &[])).unwrap());
        assert!(s.subscribe(&sub("u", "b", &[])).unwrap());
        let all = s.subscriptions(None, None);
        assert_eq!(all.len(), 3);
        assert_eq!(all[0].filter.get("k").map(String::as_str), Some("v"));
        assert_eq!(s.subscriptions(Some("t"), None).len(), 2);
        assert_eq!(s.subscriptions(None, Some("b")).len(), 2);
        assert!(s.unsubscribe("t", "a").unwrap());
        assert!(!s.unsubscribe("t", "a").unwrap());
    }

    #[test]
    fn a_chain_is_checked_against_the_whole_graph_in_its_transaction() {
        let s = SqliteEvents::in_memory();
        let links = |ok: Option<&str>, fail: Option<&str>| ChainLinks {
            on_success: ok.map(String::from),
            on_failure: fail.map(String::from),
        };
        s.set_chain("b", &links(Some("a"), None), 1, &|_| Ok(()))
            .unwrap();
        let err = s
            .set_chain("a", &links(None, Some("b")), 1, &no_cycle)
            .unwrap_err();
        assert_eq!(
            err.to_string().split(';').next().unwrap(),
            "on_success: the chain a -> b -> a is a cycle"
        );
        assert_eq!(s.chain("a"), ChainLinks::default(), "nothing written");
        s.set_chain("a", &links(Some("c"), None), 2, &no_cycle)
            .unwrap();
        assert_eq!(s.chain("a").on_success.as_deref(), Some("c"));
        let mut chained = s.chained_functions();
        chained.sort();
        assert_eq!(chained, ["a", "b"]);
        s.set_chain("a", &ChainLinks::default(), 3, &no_cycle)
            .unwrap();
        assert_eq!(s.chain("a"), ChainLinks::default());
        s.remember_step("id1", "req1", 1);
        assert_eq!(s.step_request_id("id1").as_deref(), Some("req1"));
        s.forget_step("id1");
        assert_eq!(s.step_request_id("id1"), None);
    }
}
