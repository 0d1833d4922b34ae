//! The SQLite DAO: functions, their published versions, aliases and route policies in
//! `DATA_DIR/apiserver.db` (the tables: [`schema`]; the service layer's queries: `routing`).
//!
//! SQLite is compiled into the binary (`rusqlite` with `bundled`), so nothing needs
//! installing, and the file is an ordinary SQLite database that anyone can inspect with the
//! `sqlite3` tool (`sqlite3 ~/.local/share/mini-faas/apiserver.db 'SELECT * FROM functions'`).
//!
//! # Opening: refuse rather than replace
//!
//! [`SqliteDao::open`] never writes to a file it has not recognised. Before anything is
//! written it reads the file's header and refuses, with a message naming the path and what
//! to do:
//!
//! - a file that is not a SQLite database at all, or a damaged one (`PRAGMA quick_check`);
//! - another program's SQLite database (another `application_id`, or tables but no mark);
//! - a mini-faas database whose schema version is newer than this binary's
//!   ([`schema::SCHEMA_VERSION`]).
//!
//! An empty or missing file is new: the schema is created by the first
//! [`FunctionDao::load_or_seed`], in the same transaction as the first functions.
//!
//! # One API server per data directory
//!
//! The registry keeps every function in memory and only writes the database, so two API
//! servers on one file would each overwrite what the other deployed. The DAO therefore holds
//! an exclusive lock (`flock`) on `DATA_DIR/apiserver.lock` for its whole life; a second
//! opener is refused with the first one's pid, after waiting [`LOCK_PATIENCE`] for a lock a
//! starting child process holds for a moment. The kernel drops the lock when the process
//! dies, so a killed server never blocks its successor. The lock is a separate file because
//! SQLite's own POSIX locks on the database file would be dropped if another handle to that
//! file were closed.
//!
//! # Durability
//!
//! The database runs in WAL mode with `synchronous=FULL`: a transaction that returned has
//! been written and synced to disk, so an acknowledged deploy survives `kill -9` and a power
//! loss alike. It costs one `fsync` per deploy or delete, and nothing on the invoke path, which
//! reads the registry's memory. Readers (the `sqlite3` tool) never block the API server in WAL
//! mode; a writer that holds the database longer than [`BUSY_TIMEOUT`] makes a deploy fail
//! cleanly instead of hang.

pub mod events;
mod kind;
pub mod queue;
mod routing;
pub mod schema;

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use faas_common::text::clip;
use rusqlite::{Connection, ErrorCode, OpenFlags, Row, Transaction, TransactionBehavior, params};

use crate::model::Function;
use crate::model::routing::{Alias, RoutePolicy};
use crate::store::dao::{FunctionDao, Loaded, StoreError};
pub use events::SqliteEvents;
use kind::{KIND_COLUMNS, KindColumns};
pub use queue::SqliteQueue;
use schema::{APPLICATION_ID, SCHEMA_VERSION};

/// The database's file name inside the data directory.
pub const DATABASE_FILE: &str = "apiserver.db";
/// The file whose lock says which API server uses the data directory.
pub const LOCK_FILE: &str = "apiserver.lock";
/// The files SQLite keeps beside the database (write-ahead log, its index, rollback journal).
const COMPANION_SUFFIXES: [&str; 3] = ["-wal", "-shm", "-journal"];
/// How long opening waits for the data directory's lock before it says another API server
/// holds it. A process that starts a child shares its open files with the child until the
/// child runs its program, so for a moment the child holds the lock too; `faas up` starts
/// node processes all the time, and a restarted API server must not mistake one for a rival.
pub const LOCK_PATIENCE: Duration = Duration::from_secs(1);
const LOCK_RETRY: Duration = Duration::from_millis(5);
/// How long a write waits for another program that holds the database (the `sqlite3` tool in
/// a transaction, say) before it fails.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Another connection to the database file `path` (the queue's, the events store's), with
/// the DAO's settings: WAL, `synchronous=FULL`, foreign keys on, [`BUSY_TIMEOUT`].
pub(crate) fn open_beside(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", true)?;
    Ok(conn)
}

/// The columns of `functions` this binary reads and writes; the kind columns (schema 3) last.
fn columns() -> String {
    format!(
        "name, handler, memory_bytes, timeout_ms, description, revision, created_at_ms, updated_at_ms, {KIND_COLUMNS}"
    )
}

/// The database's files present in `dir`: the database and its companions.
pub fn database_files(dir: &Path) -> Vec<PathBuf> {
    let db = dir.join(DATABASE_FILE);
    let companions = COMPANION_SUFFIXES
        .iter()
        .map(|suffix| dir.join(format!("{DATABASE_FILE}{suffix}")));
    std::iter::once(db.clone())
        .chain(companions)
        .filter(|p| p.symlink_metadata().is_ok())
        .collect()
}

/// Deletes the database's files in `dir` (what `faas up --fresh` does) and returns them;
/// refused while an API server uses the directory. `announce` is told which files go before
/// any does. A missing directory holds nothing.
pub fn remove_database(
    dir: &Path,
    announce: impl FnOnce(&[PathBuf]),
) -> Result<Vec<PathBuf>, StoreError> {
    if !dir.exists() {
        announce(&[]);
        return Ok(Vec::new());
    }
    let _lock = DirLock::acquire(dir)?;
    let files = database_files(dir);
    announce(&files);
    for file in &files {
        std::fs::remove_file(file).map_err(|e| StoreError::DataDir {
            dir: dir.to_path_buf(),
            reason: format!("cannot delete {}: {e}", file.display()),
        })?;
    }
    Ok(files)
}

/// An exclusive lock on `DATA_DIR/apiserver.lock`, held until dropped.
#[derive(Debug)]
struct DirLock {
    _file: File,
}

impl DirLock {
    /// Creates `dir` if needed and locks it, or says who holds it.
    fn acquire(dir: &Path) -> Result<DirLock, StoreError> {
        let dir_error = |reason: String| StoreError::DataDir {
            dir: dir.to_path_buf(),
            reason,
        };
        std::fs::create_dir_all(dir).map_err(|e| dir_error(e.to_string()))?;
        let path = dir.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| dir_error(format!("cannot open {}: {e}", path.display())))?;
        let asked = faas_common::clock::instant();
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(TryLockError::WouldBlock) if asked.elapsed() < LOCK_PATIENCE => {
                    std::thread::sleep(LOCK_RETRY);
                }
                Err(TryLockError::WouldBlock) => {
                    let mut holder = String::new();
                    let _ = (&file).take(256).read_to_string(&mut holder);
                    let holder = match holder.trim() {
                        "" => "pid unknown".to_string(),
                        text => clip(text).into_owned(),
                    };
                    return Err(StoreError::InUse {
                        dir: dir.to_path_buf(),
                        holder,
                    });
                }
                Err(TryLockError::Error(e)) => {
                    return Err(dir_error(format!("cannot lock {}: {e}", path.display())));
                }
            }
        }
        // Who holds it, for the message a second opener gets (best effort: the lock is what
        // counts).
        let _ = file
            .set_len(0)
            .and_then(|()| write!(file, "pid {}", std::process::id()));
        Ok(DirLock { _file: file })
    }
}

/// The tables of one SQLite file, behind one connection.
#[derive(Debug)]
pub struct SqliteDao {
    path: PathBuf,
    conn: Mutex<Connection>,
    _lock: DirLock,
}

impl SqliteDao {
    /// Opens (or creates) `dir/apiserver.db`: locks the directory, checks the file, and sets
    /// WAL mode. Refuses, without writing to it, a file that is not a mini-faas database, is
    /// damaged, or has a newer schema.
    pub fn open(dir: &Path) -> Result<SqliteDao, StoreError> {
        let lock = DirLock::acquire(dir)?;
        let path = dir.join(DATABASE_FILE);
        if path.is_dir() {
            return Err(StoreError::NotOurs {
                path,
                reason: "it is a directory".into(),
            });
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(&path, flags).map_err(|e| StoreError::Open {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        let dao = SqliteDao {
            path,
            conn: Mutex::new(conn),
            _lock: lock,
        };
        dao.check()?;
        dao.configure()?;
        Ok(dao)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    // A panic inside a transaction drops (rolls back) the transaction, so the connection is
    // still consistent after one.
    fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// What a failed read of the header or the schema means for this file.
    fn unreadable(&self, e: rusqlite::Error) -> StoreError {
        let path = self.path.clone();
        match e.sqlite_error_code() {
            Some(ErrorCode::NotADatabase) => StoreError::NotOurs {
                path,
                reason: "file is not a database".into(),
            },
            Some(ErrorCode::DatabaseCorrupt) => StoreError::NotOurs {
                path,
                reason: format!("damaged: {e}"),
            },
            _ => StoreError::Open {
                path,
                reason: e.to_string(),
            },
        }
    }

    fn write_error(&self, e: rusqlite::Error) -> StoreError {
        StoreError::Write {
            path: self.path.clone(),
            reason: e.to_string(),
        }
    }

    fn read_error(&self, e: rusqlite::Error) -> StoreError {
        StoreError::Read {
            path: self.path.clone(),
            reason: e.to_string(),
        }
    }

    fn not_ours(&self, reason: String) -> StoreError {
        StoreError::NotOurs {
            path: self.path.clone(),
            reason,
        }
    }

    /// Refuses a file this binary must not write to; reads only.
    fn check(&self) -> Result<(), StoreError> {
        let conn = self.conn();
        let header = |pragma: &str| {
            conn.pragma_query_one::<i64>(None, pragma)
                .map_err(|e| self.unreadable(e))
        };
        let application_id = header("application_id")?;
        let version = header("user_version")?;
        if application_id == 0 {
            // New (empty), or another program's.
            const TABLES: &str = "SELECT name FROM sqlite_schema \
                                  WHERE name NOT LIKE 'sqlite_%' ORDER BY name LIMIT 4";
            let mut tables = conn
                .prepare(TABLES)
                .and_then(|mut s| {
                    s.query_map([], |r| r.get::<_, String>(0))?
                        .collect::<Result<Vec<_>, _>>()
                })
                .map_err(|e| self.unreadable(e))?;
            if !tables.is_empty() {
                if tables.len() > 3 {
                    tables[3] = "...".into();
                }
                return Err(self.not_ours(format!(
                    "it holds tables {} but no mini-faas mark: another program's database",
                    clip(&tables.join(", "))
                )));
            }
            if version != 0 {
                return Err(self.not_ours(format!(
                    "schema version {version} but no mini-faas mark: another program's database"
                )));
            }
            return Ok(());
        }
        if application_id != i64::from(APPLICATION_ID) {
            return Err(self.not_ours(format!(
                "its application id is {application_id:#x}, mini-faas's is {APPLICATION_ID:#x}: another program's database"
            )));
        }
        if version > SCHEMA_VERSION {
            return Err(StoreError::Newer {
                path: self.path.clone(),
                found: version,
                known: SCHEMA_VERSION,
            });
        }
        let mut problems = Vec::new();
        conn.pragma_query(None, "quick_check", |row| {
            problems.push(row.get::<_, String>(0)?);
            Ok(())
        })
        .map_err(|e| self.unreadable(e))?;
        match problems.first().map(String::as_str) {
            Some("ok") => Ok(()),
            first => Err(self.not_ours(format!(
                "damaged: {}",
                clip(first.unwrap_or("quick_check found nothing to check"))
            ))),
        }
    }

    /// WAL mode, a synced disk write per transaction, foreign keys enforced.
    fn configure(&self) -> Result<(), StoreError> {
        let conn = self.conn();
        let setup = || -> rusqlite::Result<String> {
            conn.busy_timeout(BUSY_TIMEOUT)?;
            let mode: String =
                conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
            conn.pragma_update(None, "synchronous", "FULL")?;
            conn.pragma_update(None, "foreign_keys", true)?;
            Ok(mode)
        };
        let mode = setup().map_err(|e| self.unreadable(e))?;
        if !mode.eq_ignore_ascii_case("wal") {
            // Some file systems (network ones) cannot share WAL's index; SQLite then keeps
            // its rollback journal, which is as safe, only slower for concurrent readers.
            tracing::warn!(path = %self.path.display(), journal_mode = %mode, "WAL mode is not available here; using SQLite's rollback journal");
        }
        Ok(())
    }

    /// Runs `body` in one immediate (write-locking) transaction and commits it; any error
    /// rolls everything back.
    fn write<T>(
        &self,
        body: impl FnOnce(&Transaction<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| self.write_error(e))?;
        let out = body(&tx)?;
        tx.commit().map_err(|e| self.write_error(e))?;
        Ok(out)
    }

    /// Runs `sql` and decodes each row with `decode`, whose `Ok(Err(reason))` is a row this
    /// binary cannot read: it refuses the whole read with [`StoreError::BadRow`].
    fn read_rows<T>(
        &self,
        tx: &Transaction<'_>,
        sql: &str,
        mut decode: impl FnMut(&Row<'_>) -> rusqlite::Result<Result<T, String>>,
    ) -> Result<Vec<T>, StoreError> {
        let mut statement = tx.prepare(sql).map_err(|e| self.read_error(e))?;
        let mut rows = statement.query([]).map_err(|e| self.read_error(e))?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(|e| self.read_error(e))? {
            let item = decode(row)
                .map_err(|e| self.read_error(e))?
                .map_err(|reason| StoreError::BadRow {
                    path: self.path.clone(),
                    reason,
                })?;
            out.push(item);
        }
        Ok(out)
    }

    fn read_all(&self, tx: &Transaction<'_>) -> Result<Vec<Function>, StoreError> {
        let sql = format!("SELECT {} FROM functions ORDER BY name", columns());
        self.read_rows(tx, &sql, |row| {
            let name: String = row.get(0)?;
            let handler: String = row.get(1)?;
            let handler = match kind::decode(row, &handler, 8)? {
                Ok(handler) => handler,
                Err(reason) => return Ok(Err(format!("function {:?} {reason}", clip(&name)))),
            };
            Ok(Ok(Function {
                name,
                handler,
                memory_bytes: row.get(2)?,
                timeout_ms: row.get(3)?,
                description: row.get(4)?,
                revision: row.get(5)?,
                created_at_ms: row.get(6)?,
                updated_at_ms: row.get(7)?,
            }))
        })
    }
}

fn insert(tx: &Transaction<'_>, f: &Function, upsert: bool) -> rusqlite::Result<usize> {
    let on_conflict = if upsert {
        " ON CONFLICT(name) DO UPDATE SET handler = excluded.handler, \
         memory_bytes = excluded.memory_bytes, timeout_ms = excluded.timeout_ms, \
         description = excluded.description, revision = excluded.revision, \
         created_at_ms = excluded.created_at_ms, updated_at_ms = excluded.updated_at_ms, \
         command = excluded.command, protocol = excluded.protocol, image = excluded.image, \
         start_timeout_ms = excluded.start_timeout_ms, env = excluded.env"
    } else {
        ""
    };
    let k = KindColumns::of(&f.handler);
    tx.execute(
        &format!(
            "INSERT INTO functions ({}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13){on_conflict}",
            columns()
        ),
        params![
            f.name,
            f.handler.as_str(),
            f.memory_bytes,
            f.timeout_ms,
            f.description,
            f.revision,
            f.created_at_ms,
            f.updated_at_ms,
            k.command,
            k.protocol,
            k.image,
            k.start_timeout_ms,
            k.env
        ],
    )
}

impl FunctionDao for SqliteDao {
    fn load_or_seed(&self, seed: &[Function]) -> Result<Loaded, StoreError> {
        self.write(|tx| {
            let version: i64 = tx
                .pragma_query_one(None, "user_version")
                .map_err(|e| self.read_error(e))?;
            if version > SCHEMA_VERSION {
                return Err(StoreError::Newer {
                    path: self.path.clone(),
                    found: version,
                    known: SCHEMA_VERSION,
                });
            }
            let seeded = version == 0;
            if version < SCHEMA_VERSION {
                schema::migrate(tx, version).map_err(|e| self.write_error(e))?;
                if !seeded {
                    tracing::info!(
                        path = %self.path.display(),
                        from = version,
                        to = SCHEMA_VERSION,
                        "database schema migrated"
                    );
                }
            }
            if seeded {
                for f in seed {
                    insert(tx, f, false).map_err(|e| self.write_error(e))?;
                }
            }
            Ok(Loaded {
                functions: self.read_all(tx)?,
                seeded,
                versions: self.read_versions(tx)?,
                aliases: self.read_aliases(tx)?,
                policies: self.read_policies(tx)?,
            })
        })
    }

    fn put_function(&self, function: &Function) -> Result<(), StoreError> {
        self.write(|tx| {
            insert(tx, function, true).map_err(|e| self.write_error(e))?;
            Ok(())
        })
    }

    // Its versions, aliases and policy go with it: their tables reference it ON DELETE
    // CASCADE, and `configure` turned foreign keys on.
    fn delete_function(&self, name: &str) -> Result<bool, StoreError> {
        self.write(|tx| {
            tx.execute("DELETE FROM functions WHERE name = ?1", [name])
                .map(|n| n > 0)
                .map_err(|e| self.write_error(e))
        })
    }

    fn put_version(&self, function: &str, version: &Function) -> Result<(), StoreError> {
        self.write(|tx| self.insert_version(tx, function, version))
    }

    fn delete_version(&self, function: &str, version: i64) -> Result<bool, StoreError> {
        self.write(|tx| {
            tx.execute(
                "DELETE FROM function_versions WHERE function = ?1 AND version = ?2",
                params![function, version],
            )
            .map(|n| n > 0)
            .map_err(|e| self.write_error(e))
        })
    }

    fn put_alias(&self, alias: &Alias) -> Result<(), StoreError> {
        self.write(|tx| self.upsert_alias(tx, alias))
    }

    fn delete_alias(&self, function: &str, alias: &str) -> Result<bool, StoreError> {
        self.write(|tx| {
            tx.execute(
                "DELETE FROM aliases WHERE function = ?1 AND alias = ?2",
                [function, alias],
            )
            .map(|n| n > 0)
            .map_err(|e| self.write_error(e))
        })
    }

    fn put_policy(&self, function: &str, policy: Option<&RoutePolicy>) -> Result<(), StoreError> {
        self.write(|tx| self.upsert_policy(tx, function, policy))
    }

    fn describe(&self) -> String {
        format!("the database at {}", self.path.display())
    }
}

#[cfg(test)]
mod kind_tests;
#[cfg(test)]
mod routing_tests;
#[cfg(test)]
mod tests;
