//! The service layer's tables (schema 2, see [`super::schema`]): published versions, aliases
//! and route policies. Each function here runs inside a transaction [`SqliteDao`] opened; an
//! alias's weights and a policy are stored as serde's JSON of the model.
//!
//! A row this binary cannot decode (an unknown handler, JSON it cannot read) refuses the whole
//! load with [`StoreError::BadRow`] naming the table and the row's key, as a bad function
//! does: starting without it would silently change what calls reach.

use faas_common::clock::now_ms;

use faas_common::text::clip;
use rusqlite::{Transaction, ffi, params};
use serde::de::DeserializeOwned;

use super::SqliteDao;
use super::kind::{self, KIND_COLUMNS, KindColumns};
use crate::model::Function;
use crate::model::routing::{Alias, RoutePolicy, Weighted, version_name};
use crate::store::dao::StoreError;

/// The columns of `function_versions` this binary reads and writes; the kind columns
/// (schema 3) last.
fn version_columns() -> String {
    format!(
        "function, version, handler, memory_bytes, timeout_ms, description, published_at_ms, {KIND_COLUMNS}"
    )
}

/// The extended SQLite result code of a failed statement, if it is one.
fn extended_code(e: &rusqlite::Error) -> Option<i32> {
    match e {
        rusqlite::Error::SqliteFailure(failure, _) => Some(failure.extended_code),
        _ => None,
    }
}

/// Decodes a JSON column, or says which row holds what this binary cannot read.
fn json<T: DeserializeOwned>(text: &str, row: impl FnOnce() -> String) -> Result<T, String> {
    serde_json::from_str(text).map_err(|e| {
        format!(
            "{} is not JSON this binary can read: {}",
            row(),
            clip(&e.to_string())
        )
    })
}

impl SqliteDao {
    /// A failed write of a row that belongs to `function`: a missing function and an
    /// existing key (`exists`, when a second write of the key is an error) get a reason of
    /// their own.
    fn refused(&self, e: rusqlite::Error, function: &str, exists: Option<String>) -> StoreError {
        let reason = match (extended_code(&e), exists) {
            (Some(ffi::SQLITE_CONSTRAINT_FOREIGNKEY), _) => {
                format!("there is no function {}", clip(function))
            }
            (Some(ffi::SQLITE_CONSTRAINT_PRIMARYKEY), Some(exists)) => exists,
            _ => return self.write_error(e),
        };
        StoreError::Write {
            path: self.path.clone(),
            reason,
        }
    }

    /// Every published version, as functions named `FUNCTION:N`, by function then N.
    pub(super) fn read_versions(
        &self,
        tx: &Transaction<'_>,
    ) -> Result<Vec<(String, Function)>, StoreError> {
        let sql = format!(
            "SELECT {} FROM function_versions ORDER BY function, version",
            version_columns()
        );
        self.read_rows(tx, &sql, |row| {
            let function: String = row.get(0)?;
            let version: i64 = row.get(1)?;
            let handler: String = row.get(2)?;
            let handler = match kind::decode(row, &handler, 7)? {
                Ok(handler) => handler,
                Err(reason) => {
                    return Ok(Err(format!(
                        "version {version} of function {:?} (table function_versions) {reason}",
                        clip(&function),
                    )));
                }
            };
            let published_at_ms: i64 = row.get(6)?;
            let snapshot = Function {
                name: version_name(&function, version),
                handler,
                memory_bytes: row.get(3)?,
                timeout_ms: row.get(4)?,
                description: row.get(5)?,
                revision: version,
                created_at_ms: published_at_ms,
                updated_at_ms: published_at_ms,
            };
            Ok(Ok((function, snapshot)))
        })
    }

    /// Every alias, by function then name.
    pub(super) fn read_aliases(&self, tx: &Transaction<'_>) -> Result<Vec<Alias>, StoreError> {
        const SQL: &str = "SELECT function, alias, targets, previous, updated_at_ms \
                           FROM aliases ORDER BY function, alias";
        self.read_rows(tx, SQL, |row| {
            let function: String = row.get(0)?;
            let name: String = row.get(1)?;
            let targets: String = row.get(2)?;
            let previous: String = row.get(3)?;
            let updated_at_ms: i64 = row.get(4)?;
            let column = |column: &str| {
                format!(
                    "the {column} of alias {:?} of function {:?} (table aliases)",
                    clip(&name),
                    clip(&function)
                )
            };
            let decode = || -> Result<Alias, String> {
                Ok(Alias {
                    targets: json(&targets, || column("targets"))?,
                    previous: json(&previous, || column("previous"))?,
                    function: function.clone(),
                    name: name.clone(),
                    updated_at_ms,
                })
            };
            Ok(decode())
        })
    }

    /// Every route policy, by function.
    pub(super) fn read_policies(
        &self,
        tx: &Transaction<'_>,
    ) -> Result<Vec<(String, RoutePolicy)>, StoreError> {
        const SQL: &str = "SELECT function, policy FROM route_policies ORDER BY function";
        self.read_rows(tx, SQL, |row| {
            let function: String = row.get(0)?;
            let policy: String = row.get(1)?;
            let row = || {
                format!(
                    "the route policy of function {:?} (table route_policies)",
                    clip(&function)
                )
            };
            Ok(json::<RoutePolicy>(&policy, row).map(|policy| (function.clone(), policy)))
        })
    }

    pub(super) fn insert_version(
        &self,
        tx: &Transaction<'_>,
        function: &str,
        version: &Function,
    ) -> Result<(), StoreError> {
        let n = version.revision;
        if version.name != version_name(function, n) {
            return Err(StoreError::Write {
                path: self.path.clone(),
                reason: format!(
                    "a version of {} with revision {n} must be named {}, not {}",
                    clip(function),
                    clip(&version_name(function, n)),
                    clip(&version.name)
                ),
            });
        }
        let k = KindColumns::of(&version.handler);
        tx.execute(
            &format!(
                "INSERT INTO function_versions ({}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                version_columns()
            ),
            params![
                function,
                n,
                version.handler.as_str(),
                version.memory_bytes,
                version.timeout_ms,
                version.description,
                version.created_at_ms,
                k.command,
                k.protocol,
                k.image,
                k.start_timeout_ms,
                k.env
            ],
        )
        .map_err(|e| {
            let exists = format!(
                "version {n} of {} exists; versions are immutable",
                clip(function)
            );
            self.refused(e, function, Some(exists))
        })?;
        Ok(())
    }

    pub(super) fn upsert_alias(
        &self,
        tx: &Transaction<'_>,
        alias: &Alias,
    ) -> Result<(), StoreError> {
        let encode = |weights: &[Weighted]| {
            serde_json::to_string(weights).map_err(|e| StoreError::Write {
                path: self.path.clone(),
                reason: format!("cannot encode alias {}: {e}", clip(&alias.name)),
            })
        };
        tx.execute(
            "INSERT INTO aliases (function, alias, targets, previous, updated_at_ms) \
             VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT(function, alias) DO UPDATE SET \
             targets = excluded.targets, previous = excluded.previous, \
             updated_at_ms = excluded.updated_at_ms",
            params![
                alias.function,
                alias.name,
                encode(&alias.targets)?,
                encode(&alias.previous)?,
                alias.updated_at_ms
            ],
        )
        .map_err(|e| self.refused(e, &alias.function, None))?;
        Ok(())
    }

    pub(super) fn upsert_policy(
        &self,
        tx: &Transaction<'_>,
        function: &str,
        policy: Option<&RoutePolicy>,
    ) -> Result<(), StoreError> {
        let Some(policy) = policy else {
            tx.execute("DELETE FROM route_policies WHERE function = ?1", [function])
                .map_err(|e| self.write_error(e))?;
            return Ok(());
        };
        // What is stored must load again: serde writes a NaN share as null, which it cannot
        // read back, and a start that refuses its own database is worse than a refused write.
        let text = serde_json::to_string(policy)
            .map_err(|e| e.to_string())
            .and_then(|text| {
                json::<RoutePolicy>(&text, || "it".into())?;
                Ok(text)
            })
            .map_err(|e| StoreError::Write {
                path: self.path.clone(),
                reason: format!(
                    "the route policy of {} cannot be stored: {e}",
                    clip(function)
                ),
            })?;
        tx.execute(
            "INSERT INTO route_policies (function, policy, updated_at_ms) VALUES (?1, ?2, ?3) \
             ON CONFLICT(function) DO UPDATE SET policy = excluded.policy, \
             updated_at_ms = excluded.updated_at_ms",
            params![function, text, now_ms()],
        )
        .map_err(|e| self.refused(e, function, None))?;
        Ok(())
    }
}
