//! The database's schema, its version, and how an older database is brought forward.
//!
//! SQLite keeps two free integers in every database file's header, and this module uses both:
//!
//! - `PRAGMA application_id` = [`APPLICATION_ID`] marks the file as mini-faas's, so another
//!   program's database is recognised and refused instead of written into;
//! - `PRAGMA user_version` = the schema version the file holds. A new file has 0.
//!
//! [`MIGRATIONS`]`[i]` takes a database from schema `i` to `i + 1`; [`migrate`] runs the ones a
//! file lacks, inside the caller's transaction, and stamps both header fields in the same
//! transaction, so a database is never half-migrated. A file whose version is above
//! [`SCHEMA_VERSION`] was written by a newer binary and is refused (its tables may mean more
//! than this binary knows). To change the schema, append a migration (never edit a released
//! one) and bump [`SCHEMA_VERSION`].
//!
//! # Schema 1
//!
//! ```sql
//! CREATE TABLE functions (
//!     name          TEXT    NOT NULL PRIMARY KEY,  -- 1 to 64 of a-z A-Z 0-9 _ -
//!     handler       TEXT    NOT NULL,              -- a built-in handler: hello, echo, ...
//!     memory_bytes  INTEGER NOT NULL,              -- 64 MiB to 3 GiB
//!     timeout_ms    INTEGER NOT NULL,              -- 1 ms to 15 min
//!     description   TEXT    NOT NULL DEFAULT '',
//!     revision      INTEGER NOT NULL,              -- 1, then one more per deploy of the name
//!     created_at_ms INTEGER NOT NULL,              -- Unix ms of the first deploy of the name
//!     updated_at_ms INTEGER NOT NULL               -- Unix ms of the latest deploy
//! ) STRICT;
//! ```
//!
//! `STRICT` makes SQLite refuse a value of the wrong type (a text memory size written with the
//! `sqlite3` tool, say) instead of storing it.
//!
//! # What comes next (issue 12)
//!
//! A function's name is its key, so versions, aliases and routes become tables of their own
//! that reference it and go when it goes (`PRAGMA foreign_keys` is on):
//!
//! ```sql
//! CREATE TABLE function_versions (          -- immutable snapshots: `faas publish NAME`
//!     function TEXT NOT NULL REFERENCES functions(name) ON DELETE CASCADE,
//!     version  INTEGER NOT NULL,             -- 1, 2, 3...
//!     handler TEXT NOT NULL, memory_bytes INTEGER NOT NULL, timeout_ms INTEGER NOT NULL,
//!     description TEXT NOT NULL, published_at_ms INTEGER NOT NULL,
//!     PRIMARY KEY (function, version)
//! ) STRICT;
//! CREATE TABLE alias_targets (              -- NAME:ALIAS -> versions with weights
//!     function TEXT NOT NULL, alias TEXT NOT NULL, version INTEGER NOT NULL,
//!     weight INTEGER NOT NULL, generation INTEGER NOT NULL,  -- earlier generations: rollback
//!     PRIMARY KEY (function, alias, generation, version),
//!     FOREIGN KEY (function, version) REFERENCES function_versions ON DELETE RESTRICT
//! ) STRICT;
//! CREATE TABLE routes (                      -- a function's rule table, tried in order
//!     function TEXT NOT NULL REFERENCES functions(name) ON DELETE CASCADE,
//!     position INTEGER NOT NULL, rule TEXT NOT NULL, target TEXT NOT NULL, fallback TEXT,
//!     PRIMARY KEY (function, position)
//! ) STRICT;
//! ```
//!
//! They arrive as migration 2, and a schema-1 database gains them on its next start.

use rusqlite::Transaction;

/// "MFaS": marks a SQLite file as a mini-faas database (`PRAGMA application_id`).
pub const APPLICATION_ID: i32 = 0x4D46_6153;

/// The schema version this binary writes and understands (`PRAGMA user_version`).
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// `MIGRATIONS[i]` takes a database from schema `i` to schema `i + 1`.
pub const MIGRATIONS: &[&str] = &[
    // 0 -> 1: deployed functions.
    "CREATE TABLE functions (
        name          TEXT    NOT NULL PRIMARY KEY,
        handler       TEXT    NOT NULL,
        memory_bytes  INTEGER NOT NULL,
        timeout_ms    INTEGER NOT NULL,
        description   TEXT    NOT NULL DEFAULT '',
        revision      INTEGER NOT NULL CHECK (revision >= 1),
        created_at_ms INTEGER NOT NULL,
        updated_at_ms INTEGER NOT NULL
    ) STRICT;",
];

/// Brings a database at schema `from` to [`SCHEMA_VERSION`] inside `tx` and marks it as
/// mini-faas's. `from` must not be above [`SCHEMA_VERSION`] (the caller refuses such files).
pub fn migrate(tx: &Transaction<'_>, from: i64) -> rusqlite::Result<()> {
    let from = usize::try_from(from).unwrap_or(0);
    for step in MIGRATIONS.iter().skip(from) {
        tx.execute_batch(step)?;
    }
    tx.pragma_update(None, "application_id", APPLICATION_ID)?;
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    Ok(())
}
