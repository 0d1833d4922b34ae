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
//!
//! # Schema 4: the durable asynchronous queue (issue 20)
//!
//! Asynchronous calls are rows, written in a committed transaction before the submit is
//! acknowledged (`super::queue`). They do not reference `functions`: a call of a function
//! deleted meanwhile is kept and fails `NOT_FOUND` when delivered. Per-function queue
//! settings (retries) are a table beside it, gone with the function.
//!
//! ```sql
//! CREATE TABLE async_calls (
//!     id              TEXT    NOT NULL PRIMARY KEY,  -- a UUID
//!     function        TEXT    NOT NULL,              -- NAME, NAME:N or NAME:ALIAS
//!     account         TEXT    NOT NULL,
//!     event           BLOB    NOT NULL,              -- emptied once finished
//!     route           TEXT    NOT NULL,              -- JSON: route_id, routing_key, params
//!     state           TEXT    NOT NULL,              -- queued running succeeded failed dead
//!     attempts        INTEGER NOT NULL,              -- attempts started
//!     due_ms          INTEGER NOT NULL,              -- a queued call runs from then on
//!     submitted_at_ms INTEGER NOT NULL,
//!     started_at_ms   INTEGER NOT NULL,              -- 0: not yet
//!     finished_at_ms  INTEGER NOT NULL,
//!     bytes           INTEGER NOT NULL,              -- counted against --async-max-bytes
//!     idempotency_key TEXT,                          -- unique per (function, account)
//!     on_success      TEXT,                          -- callback: fn:NAME or url:URL
//!     on_failure      TEXT,
//!     request_id      TEXT    NOT NULL,              -- the last attempt's outcome
//!     version         TEXT    NOT NULL,
//!     target          TEXT    NOT NULL,
//!     cold_start      INTEGER NOT NULL,
//!     body            BLOB,                          -- NULL: no success yet
//!     error_code      TEXT    NOT NULL,
//!     error_message   TEXT    NOT NULL
//! ) STRICT;
//! CREATE INDEX async_calls_due ON async_calls (state, due_ms);
//! CREATE INDEX async_calls_finished ON async_calls (state, finished_at_ms);
//! CREATE UNIQUE INDEX async_calls_key ON async_calls (function, account, idempotency_key)
//!     WHERE idempotency_key IS NOT NULL;
//! CREATE TABLE async_settings (
//!     function       TEXT    NOT NULL PRIMARY KEY REFERENCES functions(name) ON DELETE CASCADE,
//!     max_attempts   INTEGER NOT NULL,
//!     first_delay_ms INTEGER NOT NULL,
//!     max_delay_ms   INTEGER NOT NULL,
//!     updated_at_ms  INTEGER NOT NULL
//! ) STRICT;
//! ```
//!
//! # Schema 5: topics and chains (issue 20)
//!
//! A subscription and a chain edge reference the functions they name with `ON DELETE
//! CASCADE`: deleting a function deletes its subscriptions and every chain edge from it or to
//! it, in the DAO's transaction. `chain_steps` remembers, for a call a chain submitted, the
//! request id of the chain's first call, until that call finishes.
//!
//! ```sql
//! CREATE TABLE subscriptions (
//!     topic         TEXT    NOT NULL,               -- 1 to 128 of a-z A-Z 0-9 _ - .
//!     target        TEXT    NOT NULL,               -- NAME, NAME:N or NAME:ALIAS
//!     function      TEXT    NOT NULL REFERENCES functions(name) ON DELETE CASCADE,
//!     filter        TEXT    NOT NULL,               -- JSON object: FIELD -> VALUE
//!     created_at_ms INTEGER NOT NULL,
//!     PRIMARY KEY (topic, target)
//! ) STRICT;
//! CREATE TABLE chains (                             -- one row per edge
//!     function      TEXT    NOT NULL REFERENCES functions(name) ON DELETE CASCADE,
//!     on_outcome    TEXT    NOT NULL CHECK (on_outcome IN ('success', 'failure')),
//!     target        TEXT    NOT NULL REFERENCES functions(name) ON DELETE CASCADE,
//!     updated_at_ms INTEGER NOT NULL,
//!     PRIMARY KEY (function, on_outcome)
//! ) STRICT;
//! CREATE TABLE chain_steps (
//!     invocation_id TEXT    NOT NULL PRIMARY KEY,   -- a call a chain submitted
//!     request_id    TEXT    NOT NULL,               -- the first call's request id
//!     created_at_ms INTEGER NOT NULL
//! ) STRICT;
//! ```

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
    // 3 -> 4: the durable asynchronous queue.
    QUEUE_TABLES,
    // 4 -> 5 (or later): topics and chains.
    EVENTS_TABLES,
];

/// The queue's tables (schema 4), also made alone in an in-memory queue.
pub const QUEUE_TABLES: &str = "CREATE TABLE async_calls (
        id              TEXT    NOT NULL PRIMARY KEY,
        function        TEXT    NOT NULL,
        account         TEXT    NOT NULL,
        event           BLOB    NOT NULL,
        route           TEXT    NOT NULL,
        state           TEXT    NOT NULL,
        attempts        INTEGER NOT NULL,
        due_ms          INTEGER NOT NULL,
        submitted_at_ms INTEGER NOT NULL,
        started_at_ms   INTEGER NOT NULL,
        finished_at_ms  INTEGER NOT NULL,
        bytes           INTEGER NOT NULL,
        idempotency_key TEXT,
        on_success      TEXT,
        on_failure      TEXT,
        request_id      TEXT    NOT NULL,
        version         TEXT    NOT NULL,
        target          TEXT    NOT NULL,
        cold_start      INTEGER NOT NULL,
        body            BLOB,
        error_code      TEXT    NOT NULL,
        error_message   TEXT    NOT NULL
    ) STRICT;
    CREATE INDEX async_calls_due ON async_calls (state, due_ms);
    CREATE INDEX async_calls_finished ON async_calls (state, finished_at_ms);
    CREATE UNIQUE INDEX async_calls_key ON async_calls (function, account, idempotency_key)
        WHERE idempotency_key IS NOT NULL;
    CREATE TABLE async_settings (
        function       TEXT    NOT NULL PRIMARY KEY REFERENCES functions(name) ON DELETE CASCADE,
        max_attempts   INTEGER NOT NULL,
        first_delay_ms INTEGER NOT NULL,
        max_delay_ms   INTEGER NOT NULL,
        updated_at_ms  INTEGER NOT NULL
    ) STRICT;";

/// Topic subscriptions, chains and chain steps (`super::events`), also made alone in an
/// in-memory store.
pub const EVENTS_TABLES: &str = "CREATE TABLE subscriptions (
        topic         TEXT    NOT NULL,
        target        TEXT    NOT NULL,
        function      TEXT    NOT NULL REFERENCES functions(name) ON DELETE CASCADE,
        filter        TEXT    NOT NULL,
        created_at_ms INTEGER NOT NULL,
        PRIMARY KEY (topic, target)
    ) STRICT;
    CREATE INDEX subscriptions_function ON subscriptions (function);
    CREATE TABLE chains (
        function      TEXT    NOT NULL REFERENCES functions(name) ON DELETE CASCADE,
        on_outcome    TEXT    NOT NULL CHECK (on_outcome IN ('success', 'failure')),
        target        TEXT    NOT NULL REFERENCES functions(name) ON DELETE CASCADE,
        updated_at_ms INTEGER NOT NULL,
        PRIMARY KEY (function, on_outcome)
    ) STRICT;
    CREATE INDEX chains_target ON chains (target);
    CREATE TABLE chain_steps (
        invocation_id TEXT    NOT NULL PRIMARY KEY,
        request_id    TEXT    NOT NULL,
        created_at_ms INTEGER NOT NULL
    ) STRICT;";

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
