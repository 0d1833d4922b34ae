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
//! one); [`SCHEMA_VERSION`] follows.
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
//! # Schema 2: versions, aliases, route policies (issue 12)
//!
//! A function's name is its key, so the service layer's data are tables of their own that
//! reference it and go when it goes: `PRAGMA foreign_keys` is on in every connection the DAO
//! opens, so deleting a function's row deletes its versions, aliases and policy in the same
//! transaction, and none of them can be stored for a function that is not.
//!
//! ```sql
//! CREATE TABLE function_versions (      -- immutable snapshots: `faas publish NAME`
//!     function        TEXT    NOT NULL REFERENCES functions(name) ON DELETE CASCADE,
//!     version         INTEGER NOT NULL CHECK (version >= 1),  -- called as NAME:VERSION
//!     handler         TEXT    NOT NULL,
//!     memory_bytes    INTEGER NOT NULL,
//!     timeout_ms      INTEGER NOT NULL,
//!     description     TEXT    NOT NULL DEFAULT '',
//!     published_at_ms INTEGER NOT NULL,  -- Unix ms
//!     PRIMARY KEY (function, version)    -- a second publish of N is refused
//! ) STRICT;
//! CREATE TABLE aliases (                -- NAME:ALIAS -> one or two versions with weights
//!     function      TEXT    NOT NULL REFERENCES functions(name) ON DELETE CASCADE,
//!     alias         TEXT    NOT NULL,
//!     targets       TEXT    NOT NULL,    -- JSON: [{"version":1,"weight":90},{"version":2,"weight":10}]
//!     previous      TEXT    NOT NULL,    -- JSON, the targets before the last change; [] if none
//!     updated_at_ms INTEGER NOT NULL,
//!     PRIMARY KEY (function, alias)
//! ) STRICT;
//! CREATE TABLE route_policies (         -- where a call of plain NAME goes
//!     function      TEXT    NOT NULL PRIMARY KEY REFERENCES functions(name) ON DELETE CASCADE,
//!     policy        TEXT    NOT NULL,    -- JSON of model::routing::RoutePolicy
//!     updated_at_ms INTEGER NOT NULL     -- Unix ms of the write (for people: not loaded)
//! ) STRICT;
//! ```
//!
//! An alias's weights and a policy are small documents the service validates as a whole and
//! always replaces whole, so they are stored as JSON (serde's form of the model) rather than
//! spread over rows; `sqlite3` reads them with `json_extract`. Aliases do not reference
//! versions: whether a version an alias or a rule names may be deleted is the service's rule,
//! not the database's. A schema-1 database gains the three (empty) tables on its next start.

//!
//! # Schema 3: command and image functions (issue 13)
//!
//! A function (and a published version) may run the user's own code kept as a bundle
//! (`store::bundles`). Its `handler` is then `bundle:<sha256>`, and five columns, added to
//! both tables, hold the definition its `function.json` says (`super::kind`):
//!
//! ```sql
//! ALTER TABLE functions ADD COLUMN command          TEXT;     -- JSON array; NULL: a built-in
//! ALTER TABLE functions ADD COLUMN protocol         TEXT;     -- http or exec
//! ALTER TABLE functions ADD COLUMN image            TEXT;     -- name:tag of an image function
//! ALTER TABLE functions ADD COLUMN start_timeout_ms INTEGER;  -- NULL: the default
//! ALTER TABLE functions ADD COLUMN env              TEXT;     -- JSON object
//! -- and the same five on function_versions
//! ```
//!
//! They are nullable, so the rows of a schema-2 database are built-ins as they were, and the
//! migration is five `ALTER TABLE`s per table (no row is rewritten).

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
    // 1 -> 2: published versions, aliases, route policies.
    "CREATE TABLE function_versions (
        function        TEXT    NOT NULL REFERENCES functions(name) ON DELETE CASCADE,
        version         INTEGER NOT NULL CHECK (version >= 1),
        handler         TEXT    NOT NULL,
        memory_bytes    INTEGER NOT NULL,
        timeout_ms      INTEGER NOT NULL,
        description     TEXT    NOT NULL DEFAULT '',
        published_at_ms INTEGER NOT NULL,
        PRIMARY KEY (function, version)
    ) STRICT;
    CREATE TABLE aliases (
        function      TEXT    NOT NULL REFERENCES functions(name) ON DELETE CASCADE,
        alias         TEXT    NOT NULL,
        targets       TEXT    NOT NULL,
        previous      TEXT    NOT NULL,
        updated_at_ms INTEGER NOT NULL,
        PRIMARY KEY (function, alias)
    ) STRICT;
    CREATE TABLE route_policies (
        function      TEXT    NOT NULL PRIMARY KEY REFERENCES functions(name) ON DELETE CASCADE,
        policy        TEXT    NOT NULL,
        updated_at_ms INTEGER NOT NULL
    ) STRICT;",
    // 2 -> 3: command and image functions.
    "ALTER TABLE functions ADD COLUMN command TEXT;
    ALTER TABLE functions ADD COLUMN protocol TEXT;
    ALTER TABLE functions ADD COLUMN image TEXT;
    ALTER TABLE functions ADD COLUMN start_timeout_ms INTEGER;
    ALTER TABLE functions ADD COLUMN env TEXT;
    ALTER TABLE function_versions ADD COLUMN command TEXT;
    ALTER TABLE function_versions ADD COLUMN protocol TEXT;
    ALTER TABLE function_versions ADD COLUMN image TEXT;
    ALTER TABLE function_versions ADD COLUMN start_timeout_ms INTEGER;
    ALTER TABLE function_versions ADD COLUMN env TEXT;",
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
