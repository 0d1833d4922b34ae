//! Where the API server keeps its functions: read from memory, written through to a database.
//!
//! Two halves with two jobs:
//!
//! - [`table`]: the in-memory [`FunctionTable`] every invocation reads (one hash lookup under
//!   a read lock). The invoke path never touches anything else here.
//! - [`dao`] and [`sqlite`]: the data access layer. [`FunctionDao`] is what the service asks
//!   of durable storage (load everything at start, put or delete one function, each in its
//!   own transaction); [`SqliteDao`] maps the data model onto SQLite tables in
//!   `DATA_DIR/apiserver.db`, with versioned schemas ([`sqlite::schema`]) and refusals of
//!   files it must not touch (another program's database, a damaged one, a newer schema).
//!   [`SqliteQueue`] keeps the asynchronous calls' durable queue in the same file, on its own
//!   connection (`sqlite::queue`); [`SqliteEvents`] its topics and chains
//!   (`sqlite::events`). [`JetStreamQueue`] keeps the same queue in NATS JetStream
//!   Key-Value buckets instead (`--queue nats://HOST:PORT`, [`jetstream`]).
//!
//! - [`bundles`]: the code of command and image functions, one immutable directory per
//!   content hash in `DATA_DIR/bundles`, written atomically ([`DirBundles`]).
//! - [`keys`]: keys files: read (refused when others may read them), and the data
//!   directory's `keys` made on a first start (mode 0600, a key from the OS RNG).
//! - [`code_dir`]: reads a user's code directory into the files a deploy uploads (what
//!   `faas deploy` and a start-up functions file use).
//!
//! The service (`service::registry`) ties them together: a deploy or delete is written to the
//! DAO first, in a transaction, and only then to the table, so whatever an admin call has
//! acknowledged is on disk, and a write that fails changes nothing. Without a data directory
//! there is no DAO and the table is all there is (memory only).

pub mod bundles;
pub mod code_dir;
pub mod dao;
#[cfg(test)]
pub mod fake;
pub mod jetstream;
pub mod keys;
#[cfg(test)]
pub mod queue_test_support;
pub mod sqlite;
pub mod table;

pub use bundles::{BundleStore, DirBundles};
pub use dao::{FunctionDao, Loaded, StoreError};
pub use jetstream::JetStreamQueue;
pub use sqlite::{SqliteDao, SqliteEvents, SqliteQueue, SqliteTimers};
pub use table::FunctionTable;
