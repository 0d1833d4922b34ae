//! The data access interface the service writes functions through, and its errors.
//!
//! A DAO is synchronous and may block (a transaction ends with a disk write): callers on an
//! async runtime run its calls on a blocking thread. Every method is one transaction: it
//! happens entirely or not at all, so a failed call leaves the store as it was.
//!
//! It is deliberately small: the registry holds every function in memory, so the store is
//! read once, at start ([`FunctionDao::load_or_seed`]), and afterwards only written. The
//! service layer's data (versions, aliases, route policies) come as more methods of the same
//! shape; deleting a function deletes them too, in the same transaction.

use std::fmt::Debug;
use std::path::PathBuf;

use crate::model::Function;
use crate::model::routing::{Alias, RoutePolicy};

/// Durable storage of functions.
pub trait FunctionDao: Send + Sync + Debug + 'static {
    /// Every stored function, sorted by name. A store that has never held functions (just
    /// created) first stores `seed`, in the same transaction that creates it, so a start that
    /// dies half-way seeds again next time instead of leaving an empty platform.
    fn load_or_seed(&self, seed: &[Function]) -> Result<Loaded, StoreError>;

    /// Stores `function`, replacing the one of the same name.
    fn put_function(&self, function: &Function) -> Result<(), StoreError>;

    /// Deletes the function named `name`, with its versions, aliases and route policy;
    /// whether it was stored.
    fn delete_function(&self, name: &str) -> Result<bool, StoreError>;

    /// Stores a published version of `function`: `version` is a [`Function`] named
    /// `FUNCTION:N` whose `revision` is N and whose `created_at_ms` is when it was published.
    /// The function must be stored. Versions are immutable: storing one that exists fails.
    fn put_version(&self, function: &str, version: &Function) -> Result<(), StoreError>;

    /// Deletes version `version` of `function`; whether it was stored.
    fn delete_version(&self, function: &str, version: i64) -> Result<bool, StoreError>;

    /// Stores `alias`, replacing the one of the same function and name.
    fn put_alias(&self, alias: &Alias) -> Result<(), StoreError>;

    /// Deletes alias `alias` of `function`; whether it was stored.
    fn delete_alias(&self, function: &str, alias: &str) -> Result<bool, StoreError>;

    /// Stores `function`'s route policy (replacing it), or deletes it (`None`).
    fn put_policy(&self, function: &str, policy: Option<&RoutePolicy>) -> Result<(), StoreError>;

    /// The store, as messages name it ("the database at PATH").
    fn describe(&self) -> String;
}

/// What [`FunctionDao::load_or_seed`] found.
#[derive(Clone, Debug, PartialEq)]
pub struct Loaded {
    /// The stored functions, sorted by name.
    pub functions: Vec<Function>,
    /// Whether the store was new and now holds the seed.
    pub seeded: bool,
    /// Every published version, as functions named `FUNCTION:N`, sorted by function then N.
    pub versions: Vec<(String, Function)>,
    /// Every alias, sorted by function then name.
    pub aliases: Vec<Alias>,
    /// Every route policy, by function, sorted by function.
    pub policies: Vec<(String, RoutePolicy)>,
}

/// Why the store cannot be used, or a write did not happen. Every message names the file or
/// directory and what a person can do about it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("cannot use the data directory {}: {reason}", dir.display())]
    DataDir { dir: PathBuf, reason: String },
    #[error(
        "another API server ({holder}) uses the data directory {}: stop it, or give this one another --data-dir",
        dir.display()
    )]
    InUse { dir: PathBuf, holder: String },
    #[error("cannot open the database at {}: {reason}", path.display())]
    Open { path: PathBuf, reason: String },
    #[error(
        "{} is not a mini-faas database ({reason}); move it away or start with --fresh",
        path.display()
    )]
    NotOurs { path: PathBuf, reason: String },
    #[error(
        "the database at {} was written by a newer version of mini-faas (schema {found}, this binary knows {known}); use a newer binary or --fresh",
        path.display()
    )]
    Newer {
        path: PathBuf,
        found: i64,
        known: i64,
    },
    #[error(
        "the database at {} holds a function this binary cannot read ({reason}); fix or delete its row with the sqlite3 tool, or start with --fresh",
        path.display()
    )]
    BadRow { path: PathBuf, reason: String },
    #[error("the database at {} cannot be read: {reason}", path.display())]
    Read { path: PathBuf, reason: String },
    #[error("the database at {} cannot be written ({reason}); nothing was changed", path.display())]
    Write { path: PathBuf, reason: String },
    /// A bundle (a command function's code, `store::bundles`) cannot be written or read.
    #[error("cannot store the bundle {} ({reason}); nothing was changed", path.display())]
    Bundle { path: PathBuf, reason: String },
}
