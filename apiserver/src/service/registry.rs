//! The function registry: deploy (create or replace), get, list, delete, and the rules a
//! function must follow. Time comes in as an argument (`now_ms`).
//!
//! # Read from memory, written through
//!
//! Every function lives in an in-memory [`FunctionTable`]; [`Registry::get`] and
//! [`Registry::list`] read only that, so an invocation never waits for a disk. A registry
//! opened over a [`FunctionDao`] ([`Registry::open`]) writes every change to the database
//! first, in a transaction, and changes the table only once the database has it:
//!
//! 1. validate the spec (nothing is written for an invalid one), and for a command or image
//!    function store its bundle, the code named by its hash (`service::bundles`: written
//!    before any row names it, and never rewritten, so this needs no lock);
//! 2. take the write lock (one write at a time, so two deploys of a name cannot both read
//!    revision 3 and both write revision 4);
//! 3. `put_function` / `delete_function` on the DAO, which commits to disk;
//! 4. change the table, release the lock, answer.
//!
//! So a deploy that was answered survives a crash of the process, and a write the database
//! refuses (a full disk, a file locked by another program) changes nothing and says so. The
//! DAO blocks, and so do [`Registry::deploy`] and [`Registry::delete`]: the api layer runs them
//! on a blocking thread, which also lets a write finish when its caller goes away.
//!
//! At start, [`Registry::open`] loads every stored function into the table. A new database is
//! first seeded with the functions the server was started with; an existing one is the source
//! of truth, and those functions are not applied.

use std::sync::{Arc, Mutex, PoisonError};

use faas_common::text::clip;

use crate::model::{
    Function, FunctionSpec, Handler, MAX_MEMORY_BYTES, MAX_NAME_CHARS, MAX_TIMEOUT_MS, MIB,
    MIN_MEMORY_BYTES, MIN_TIMEOUT_MS,
};
use crate::service::kind::{Kind, validate_kind};
use crate::service::routing::catalog::RoutingTable;
use crate::store::{BundleStore, FunctionDao, FunctionTable, StoreError};

/// Why a function cannot be deployed or found, or a functions file cannot be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    #[error("function name cannot be empty")]
    EmptyName,
    #[error(
        "function name {:?} is {chars} characters long, over the limit of {MAX_NAME_CHARS}",
        clip(name)
    )]
    NameTooLong { name: String, chars: usize },
    #[error(
        "function name {:?} contains {bad:?}: use only letters, digits, '_' and '-'",
        clip(name)
    )]
    NameCharacter { name: String, bad: char },
    #[error("function {:?}: {field} is missing", clip(name))]
    MissingField { name: String, field: &'static str },
    #[error(
        "function {:?}: give handler (a built-in: {}), command (your program, with its code) or image (a local Docker image)",
        clip(name),
        Handler::names().join(", ")
    )]
    NoKind { name: String },
    /// A command or image function's field breaks the rules (`service::kind`); `field` names
    /// it as the admin API and the TOML file do (`protocol`, `command[0]`, `code[2].path`).
    #[error("function {:?}: {field}: {problem}", clip(name))]
    BadKind {
        name: String,
        field: String,
        problem: String,
    },
    /// A command or image function sent to a server that keeps no files.
    #[error(
        "function {:?}: command functions need --data-dir: their code is kept there",
        clip(name)
    )]
    NeedsDataDir { name: String },
    /// A spec that names a bundle (without its code) the server does not have.
    #[error(
        "function {:?}: bundle {hash} is not on this server: send the code with it (faas deploy FILE does)",
        clip(name)
    )]
    UnknownBundle { name: String, hash: String },
    #[error(
        "function {:?}: handler {:?} is not a built-in handler (one of {})",
        clip(name),
        clip(handler),
        Handler::names().join(", ")
    )]
    UnknownHandler { name: String, handler: String },
    #[error(
        "function {name:?}: memory of {} is out of range: give 64 to 3072 MiB", show_bytes(*.memory_bytes)
    )]
    MemoryOutOfRange { name: String, memory_bytes: i64 },
    #[error(
        "function {name:?}: timeout of {timeout_ms} ms is out of range: give {MIN_TIMEOUT_MS} to {MAX_TIMEOUT_MS} ms"
    )]
    TimeoutOutOfRange { name: String, timeout_ms: i64 },
    #[error("function {} not found", clip(name))]
    NotFound { name: String },
    #[error("{origin}: not a valid functions file: {message}")]
    Malformed { origin: String, message: String },
    #[error("{origin}: entry {entry}: {problem}")]
    InFile {
        origin: String,
        /// 1-based position of the `[[function]]` entry.
        entry: usize,
        /// What is wrong with the entry (kept out of the error's source chain: the message
        /// already says it).
        problem: Box<RegistryError>,
    },
    #[error("{origin}: entry {entry}: function {name:?} is defined twice (first at entry {first})")]
    Duplicate {
        origin: String,
        entry: usize,
        first: usize,
        name: String,
    },
    /// A deploy or delete the database did not take: nothing changed.
    #[error("function {:?} was not {action}: {problem}", clip(name))]
    NotSaved {
        name: String,
        /// "deployed", "deleted", "published", "aliased", "rolled back", "routed".
        action: &'static str,
        problem: StoreError,
    },
    /// A version, alias or route setting breaks the rules; `field` names it as the admin API
    /// and the TOML file do (`targets`, `rules[2].route_id_regex`, `fallback.target`).
    #[error("function {:?}: {field}: {problem}", clip(function))]
    BadRouting {
        function: String,
        field: String,
        problem: String,
    },
    /// A version or alias of a deployed function does not exist.
    #[error("{} not found: {hint}", clip(target))]
    TargetNotFound { target: String, hint: String },
    /// The change would leave something pointing at nothing, or rewrite what is immutable.
    #[error("{}: {reason}", clip(subject))]
    Conflict { subject: String, reason: String },
    /// The database cannot be used (at start).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored function breaks the rules (edited by hand, or by another binary).
    #[error(
        "{origin}: {problem}; fix or delete its row with the sqlite3 tool, or start with --fresh"
    )]
    Stored {
        origin: String,
        problem: Box<RegistryError>,
    },
}

fn show_bytes(bytes: i64) -> String {
    if bytes % MIB == 0 {
        format!("{} MiB", bytes / MIB)
    } else {
        format!("{bytes} bytes")
    }
}

pub(crate) fn validate_name(name: &str) -> Result<(), RegistryError> {
    if name.is_empty() {
        return Err(RegistryError::EmptyName);
    }
    let chars = name.chars().count();
    if chars > MAX_NAME_CHARS {
        return Err(RegistryError::NameTooLong {
            name: name.to_string(),
            chars,
        });
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
    {
        return Err(RegistryError::NameCharacter {
            name: name.to_string(),
            bad,
        });
    }
    Ok(())
}

/// Checks `spec` against the rules; returns what it runs.
///
/// Name: 1 to 64 of `a-z A-Z 0-9 _ -`; a built-in handler, or a command or image with its
/// fields (`service::kind`); memory: 64 to 3072 MiB (a function must fit on one node);
/// timeout: 1 ms to 15 minutes.
pub fn validate_spec(spec: &FunctionSpec) -> Result<Kind, RegistryError> {
    validate_name(&spec.name)?;
    let kind = validate_kind(spec)?;
    if !(MIN_MEMORY_BYTES..=MAX_MEMORY_BYTES).contains(&spec.memory_bytes) {
        return Err(RegistryError::MemoryOutOfRange {
            name: spec.name.clone(),
            memory_bytes: spec.memory_bytes,
        });
    }
    if !(MIN_TIMEOUT_MS..=MAX_TIMEOUT_MS).contains(&spec.timeout_ms) {
        return Err(RegistryError::TimeoutOutOfRange {
            name: spec.name.clone(),
            timeout_ms: spec.timeout_ms,
        });
    }
    Ok(kind)
}

/// The result of a deployment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deployed {
    pub function: Arc<Function>,
    /// `true` when the name was new, `false` when an existing function was replaced.
    pub created: bool,
}

/// The deployed functions and the rules over them.
#[derive(Debug, Default)]
pub struct Registry {
    pub(crate) table: FunctionTable,
    /// Versions, aliases and route policies, by function (`service::routing`).
    pub(crate) routing: RoutingTable,
    /// Where every change is written first; `None`: memory only.
    pub(crate) dao: Option<Arc<dyn FunctionDao>>,
    /// Where command and image functions' code is kept (`service::bundles`); `None`: such
    /// functions are refused.
    pub(crate) bundles: Option<Arc<dyn BundleStore>>,
    /// Held across a whole write (read the current row, write the database, the table).
    writes: Mutex<()>,
}

/// A registry opened over a database.
#[derive(Debug)]
pub struct Opened {
    pub registry: Registry,
    /// Whether the database was new and now holds the start-up functions; `false`: the
    /// functions came from the database and the start-up ones were not applied.
    pub seeded: bool,
}

impl Registry {
    /// An empty registry, in memory only.
    pub fn new() -> Registry {
        Registry::default()
    }

    /// A registry holding `specs`, all deployed at `now_ms`, in memory only; the first
    /// invalid one fails it.
    pub fn with_functions(
        specs: impl IntoIterator<Item = FunctionSpec>,
        now_ms: i64,
    ) -> Result<Registry, RegistryError> {
        let registry = Registry::new();
        for spec in specs {
            registry.deploy(spec, now_ms)?;
        }
        Ok(registry)
    }

    /// An empty registry in memory only that keeps bundles in `bundles` (tests, and what
    /// [`Registry::open_with`] seeds through).
    pub fn with_bundles(bundles: Option<Arc<dyn BundleStore>>) -> Registry {
        Registry {
            bundles,
            ..Registry::default()
        }
    }

    /// A registry over `dao` holding what it stores, without a bundle store.
    pub fn open(
        dao: Arc<dyn FunctionDao>,
        seed: Vec<FunctionSpec>,
        now_ms: i64,
    ) -> Result<Opened, RegistryError> {
        Registry::open_with(dao, None, seed, now_ms)
    }

    /// A registry over `dao` holding what it stores, keeping bundles in `bundles`. A new
    /// database is first seeded with `seed`, deployed at `now_ms` (their bundles written
    /// first); an existing one keeps what it has (`seed` is only validated). A stored
    /// function that breaks the rules refuses the start, naming it. Blocks on the database.
    pub fn open_with(
        dao: Arc<dyn FunctionDao>,
        bundles: Option<Arc<dyn BundleStore>>,
        seed: Vec<FunctionSpec>,
        now_ms: i64,
    ) -> Result<Opened, RegistryError> {
        let seeding = Registry::with_bundles(bundles.clone());
        for spec in seed {
            seeding.deploy(spec, now_ms)?;
        }
        let seed: Vec<Function> = seeding
            .list()
            .into_iter()
            .map(Arc::unwrap_or_clone)
            .collect();
        let loaded = dao.load_or_seed(&seed)?;
        let registry = Registry {
            dao: Some(dao.clone()),
            bundles,
            ..Registry::default()
        };
        for function in loaded.functions {
            validate_spec(&function.spec()).map_err(|problem| RegistryError::Stored {
                origin: dao.describe(),
                problem: Box::new(problem),
            })?;
            registry.table.insert(Arc::new(function));
        }
        registry
            .routing
            .load(
                &registry.table,
                loaded.versions,
                loaded.aliases,
                loaded.policies,
            )
            .map_err(|problem| RegistryError::Stored {
                origin: dao.describe(),
                problem: Box::new(problem),
            })?;
        let functions = registry.list();
        let versions: Vec<Arc<Function>> = functions
            .iter()
            .flat_map(|f| registry.versions(&f.name).unwrap_or_default())
            .collect();
        let all: Vec<&Function> = functions.iter().chain(&versions).map(|f| &**f).collect();
        registry.check_bundles(&all);
        Ok(Opened {
            registry,
            seeded: loaded.seeded,
        })
    }

    pub(crate) fn write_lock(&self) -> std::sync::MutexGuard<'_, ()> {
        // The lock guards no data: a panic while it was held changed nothing in the table.
        self.writes.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Creates the function, or replaces the one of the same name (its revision goes up by
    /// one and its creation time stays). With a database, it is written there first; if that
    /// fails, nothing changes. Blocks on the database.
    pub fn deploy(&self, spec: FunctionSpec, now_ms: i64) -> Result<Deployed, RegistryError> {
        let kind = validate_spec(&spec)?;
        // A bundle is written before the database (and outside the write lock: an upload
        // of many MiB does not hold up other deploys).
        let handler = self.materialize(&spec, kind, "deployed")?;
        let FunctionSpec {
            name,
            memory_bytes,
            timeout_ms,
            description,
            ..
        } = spec;
        let _one_writer = self.write_lock();
        let previous = self.table.get(&name);
        let function = Function {
            name,
            handler,
            memory_bytes,
            timeout_ms,
            description,
            revision: previous.as_ref().map_or(1, |p| p.revision + 1),
            created_at_ms: previous.as_ref().map_or(now_ms, |p| p.created_at_ms),
            updated_at_ms: now_ms,
        };
        if let Some(dao) = &self.dao {
            dao.put_function(&function)
                .map_err(|problem| RegistryError::NotSaved {
                    name: function.name.clone(),
                    action: "deployed",
                    problem,
                })?;
        }
        let function = Arc::new(function);
        self.table.insert(function.clone());
        Ok(Deployed {
            function,
            created: previous.is_none(),
        })
    }

    /// The function named `name`, or the published version `NAME:N` (a function of that
    /// name). Aliases are not resolved here (`service::routing` does).
    pub fn get(&self, name: &str) -> Result<Arc<Function>, RegistryError> {
        if name.is_empty() {
            return Err(RegistryError::EmptyName);
        }
        let found = match name.split_once(crate::model::routing::QUALIFIER_SEPARATOR) {
            None => self.table.get(name),
            Some(_) => self.routing.concrete_version(name),
        };
        found.ok_or_else(|| RegistryError::NotFound {
            name: name.to_string(),
        })
    }

    /// Every function, sorted by name.
    pub fn list(&self) -> Vec<Arc<Function>> {
        self.table.list()
    }

    /// Deletes the function named `name` with its versions, aliases and route policy;
    /// returns what it was. Refused while another function's routes name it. With a
    /// database, it is deleted there first; if that fails, nothing changes. Blocks on the
    /// database.
    pub fn delete(&self, name: &str) -> Result<Arc<Function>, RegistryError> {
        if name.is_empty() {
            return Err(RegistryError::EmptyName);
        }
        let _one_writer = self.write_lock();
        let not_found = || RegistryError::NotFound {
            name: name.to_string(),
        };
        if self.table.get(name).is_none() {
            return Err(not_found());
        }
        self.routing.check_function_unused(name)?;
        if let Some(dao) = &self.dao {
            dao.delete_function(name)
                .map_err(|problem| RegistryError::NotSaved {
                    name: name.to_string(),
                    action: "deleted",
                    problem,
                })?;
        }
        self.routing.remove_function(name);
        self.table.remove(name).ok_or_else(not_found)
    }

    /// How many functions are deployed.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }
}

#[cfg(test)]
#[path = "registry_tests.rs"]
mod tests;
