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
//! 1. validate the spec (nothing is written for an invalid one);
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
use crate::service::routing::catalog::RoutingTable;
use crate::store::{FunctionDao, FunctionTable, StoreError};

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

fn validate_name(name: &str) -> Result<(), RegistryError> {
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

/// Checks `spec` against the rules; returns its handler.
///
/// Name: 1 to 64 of `a-z A-Z 0-9 _ -`; handler: a built-in one; memory: 64 to 3072 MiB
/// (a function must fit on one node); timeout: 1 ms to 15 minutes.
pub fn validate_spec(spec: &FunctionSpec) -> Result<Handler, RegistryError> {
    validate_name(&spec.name)?;
    let handler = spec
        .handler
        .parse::<Handler>()
        .map_err(|_| RegistryError::UnknownHandler {
            name: spec.name.clone(),
            handler: spec.handler.clone(),
        })?;
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
    Ok(handler)
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

    /// A registry over `dao` holding what it stores. A new database is first seeded with
    /// `seed`, deployed at `now_ms`; an existing one keeps what it has (`seed` is only
    /// validated). A stored function that breaks the rules refuses the start, naming it.
    /// Blocks on the database.
    pub fn open(
        dao: Arc<dyn FunctionDao>,
        seed: Vec<FunctionSpec>,
        now_ms: i64,
    ) -> Result<Opened, RegistryError> {
        let seed: Vec<Function> = Registry::with_functions(seed, now_ms)?
            .list()
            .into_iter()
            .map(Arc::unwrap_or_clone)
            .collect();
        let loaded = dao.load_or_seed(&seed)?;
        let registry = Registry {
            dao: Some(dao.clone()),
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
        let handler = validate_spec(&spec)?;
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
mod tests {
    use super::*;
    use crate::store::fake::FakeDao;

    fn spec(name: &str) -> FunctionSpec {
        FunctionSpec {
            name: name.into(),
            handler: "hello".into(),
            memory_bytes: 128 * MIB,
            timeout_ms: 60_000,
            description: "says hello".into(),
        }
    }

    #[test]
    fn names_follow_the_rules() {
        assert!(validate_spec(&spec("a")).is_ok());
        assert!(validate_spec(&spec("Hello_world-2")).is_ok());
        assert!(validate_spec(&spec(&"x".repeat(64))).is_ok());
        assert_eq!(validate_spec(&spec("")), Err(RegistryError::EmptyName));
        let err = validate_spec(&spec(&"x".repeat(65))).unwrap_err();
        assert!(
            matches!(err, RegistryError::NameTooLong { chars: 65, .. }),
            "{err}"
        );
        let err = validate_spec(&spec("a b")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "function name \"a b\" contains ' ': use only letters, digits, '_' and '-'"
        );
        assert!(validate_spec(&spec("héllo")).is_err());
        assert!(validate_spec(&spec("a/b")).is_err());
    }

    #[test]
    fn handler_memory_and_timeout_are_bounded() {
        let mut s = spec("f");
        s.handler = "python3".into();
        let err = validate_spec(&s).unwrap_err();
        assert!(err.to_string().contains("handler \"python3\""), "{err}");

        for (mem, ok) in [
            (64 * MIB, true),
            (3072 * MIB, true),
            (64 * MIB - 1, false),
            (3072 * MIB + 1, false),
            (0, false),
            (-MIB, false),
        ] {
            let mut s = spec("f");
            s.memory_bytes = mem;
            assert_eq!(validate_spec(&s).is_ok(), ok, "memory {mem}");
        }
        let mut s = spec("f");
        s.memory_bytes = 32 * MIB;
        assert_eq!(
            validate_spec(&s).unwrap_err().to_string(),
            "function \"f\": memory of 32 MiB is out of range: give 64 to 3072 MiB"
        );

        for (timeout, ok) in [
            (1, true),
            (900_000, true),
            (0, false),
            (900_001, false),
            (-5, false),
        ] {
            let mut s = spec("f");
            s.timeout_ms = timeout;
            assert_eq!(validate_spec(&s).is_ok(), ok, "timeout {timeout}");
        }
    }

    #[test]
    fn absurd_input_is_refused_and_never_echoed_whole() {
        let huge = "x".repeat(1 << 20);
        let mut cases = vec![
            spec(&huge),
            spec(&format!("{huge} with a space")),
            spec(&"é".repeat(300)),
        ];
        let mut s = spec("f");
        s.handler = huge.clone();
        cases.push(s);
        for memory_bytes in [0, -1, i64::MIN, 1_000_000_000_000_000_000, i64::MAX] {
            let mut s = spec("f");
            s.memory_bytes = memory_bytes;
            cases.push(s);
        }
        for timeout_ms in [-1, i64::MIN, 24 * 3_600_000 + 1, i64::MAX] {
            let mut s = spec("f");
            s.timeout_ms = timeout_ms;
            cases.push(s);
        }
        for s in cases {
            let err = validate_spec(&s).unwrap_err();
            let message = err.to_string();
            assert!(message.len() < 400, "{} bytes: {message}", message.len());
        }
        let mut s = spec("f");
        s.handler = huge;
        let message = validate_spec(&s).unwrap_err().to_string();
        assert!(message.contains("(1048576 bytes)"), "{message}");
        assert!(
            message.ends_with("(one of hello, echo, sleep, cpu, memory, spin)"),
            "{message}"
        );
        let message = Registry::new()
            .get(&"y".repeat(1 << 20))
            .unwrap_err()
            .to_string();
        assert!(message.len() < 200, "{message}");
    }

    #[test]
    fn deploy_creates_then_replaces_with_the_next_revision() {
        let registry = Registry::new();
        let first = registry.deploy(spec("hello"), 1_000).unwrap();
        assert!(first.created);
        assert_eq!(first.function.revision, 1);
        assert_eq!(
            (first.function.created_at_ms, first.function.updated_at_ms),
            (1_000, 1_000)
        );

        let mut changed = spec("hello");
        changed.memory_bytes = 256 * MIB;
        changed.handler = "echo".into();
        let second = registry.deploy(changed, 2_000).unwrap();
        assert!(!second.created);
        assert_eq!(second.function.revision, 2);
        assert_eq!(second.function.handler, Handler::Echo);
        assert_eq!(second.function.memory_bytes, 256 * MIB);
        assert_eq!(
            (second.function.created_at_ms, second.function.updated_at_ms),
            (1_000, 2_000)
        );
        assert_eq!(registry.get("hello").unwrap(), second.function);
        assert_eq!(registry.len(), 1);
    }

    #[test]
    fn an_invalid_redeploy_leaves_the_function_as_it_was() {
        let registry = Registry::new();
        registry.deploy(spec("f"), 1).unwrap();
        let mut bad = spec("f");
        bad.timeout_ms = 0;
        assert!(registry.deploy(bad, 2).is_err());
        let f = registry.get("f").unwrap();
        assert_eq!((f.revision, f.timeout_ms), (1, 60_000));
    }

    #[test]
    fn get_delete_and_list() {
        let registry = Registry::new();
        for name in ["zeta", "alpha", "mid"] {
            registry.deploy(spec(name), 5).unwrap();
        }
        let names: Vec<_> = registry.list().iter().map(|f| f.name.clone()).collect();
        assert_eq!(names, ["alpha", "mid", "zeta"]);

        assert_eq!(registry.delete("mid").unwrap().name, "mid");
        let err = registry.delete("mid").unwrap_err();
        assert_eq!(err.to_string(), "function mid not found");
        let err = registry.get("mid").unwrap_err();
        assert_eq!(err, RegistryError::NotFound { name: "mid".into() });
        assert_eq!(registry.get(""), Err(RegistryError::EmptyName));
        assert_eq!(registry.len(), 2);

        // A deleted name starts again at revision 1.
        assert_eq!(
            registry.deploy(spec("mid"), 9).unwrap().function.revision,
            1
        );
    }

    fn stored(name: &str, revision: i64) -> Function {
        Function {
            name: name.into(),
            handler: Handler::Echo,
            memory_bytes: 256 * MIB,
            timeout_ms: 1_000,
            description: String::new(),
            revision,
            created_at_ms: 100,
            updated_at_ms: 200,
        }
    }

    fn open(dao: &Arc<FakeDao>, seed: Vec<FunctionSpec>) -> Opened {
        Registry::open(dao.clone(), seed, 1_000).unwrap()
    }

    #[test]
    fn open_seeds_a_new_store_and_keeps_an_existing_one() {
        let dao = Arc::new(FakeDao::default());
        let opened = open(&dao, vec![spec("hello")]);
        assert!(opened.seeded);
        let hello = opened.registry.get("hello").unwrap();
        assert_eq!((hello.revision, hello.created_at_ms), (1, 1_000));
        assert_eq!(dao.rows(), vec![(*hello).clone()]);

        let dao = Arc::new(FakeDao::holding([stored("f", 7)]));
        let opened = open(&dao, vec![spec("hello")]);
        assert!(!opened.seeded);
        let registry = opened.registry;
        assert_eq!(
            registry.get("hello"),
            Err(RegistryError::NotFound {
                name: "hello".into()
            })
        );
        assert_eq!(*registry.get("f").unwrap(), stored("f", 7));
        // Revisions go on from what was stored, and the creation time stays.
        let f = registry.deploy(spec("f"), 5_000).unwrap().function;
        assert_eq!(
            (f.revision, f.created_at_ms, f.updated_at_ms),
            (8, 100, 5_000)
        );
        assert_eq!(dao.rows(), vec![(*f).clone()]);
        registry.delete("f").unwrap();
        assert!(dao.rows().is_empty());
        assert!(registry.is_empty());
    }

    #[test]
    fn a_write_the_store_refuses_changes_nothing() {
        let dao = Arc::new(FakeDao::default());
        let registry = open(&dao, vec![spec("kept")]).registry;
        let before = registry.list();
        dao.fail_writes(true);

        let err = registry.deploy(spec("new"), 2_000).unwrap_err();
        assert_eq!(
            err.to_string(),
            "function \"new\" was not deployed: the database at /fake/apiserver.db cannot be written (database or disk is full); nothing was changed"
        );
        assert!(matches!(
            err,
            RegistryError::NotSaved {
                action: "deployed",
                ..
            }
        ));
        let mut changed = spec("kept");
        changed.timeout_ms = 5;
        assert!(registry.deploy(changed.clone(), 2_000).is_err());
        let err = registry.delete("kept").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("function \"kept\" was not deleted: "),
            "{err}"
        );
        assert_eq!(registry.list(), before);
        assert_eq!(
            registry.get("new"),
            Err(RegistryError::NotFound { name: "new".into() })
        );

        // Nothing half-done is left behind: the next write starts from the same state.
        dao.fail_writes(false);
        let kept = registry.deploy(changed, 3_000).unwrap().function;
        assert_eq!((kept.revision, kept.timeout_ms), (2, 5));
        assert_eq!(dao.rows(), vec![(*kept).clone()]);
    }

    #[test]
    fn a_stored_function_that_breaks_the_rules_refuses_the_start() {
        let mut tiny = stored("tiny", 1);
        tiny.memory_bytes = MIB;
        let dao = Arc::new(FakeDao::holding([stored("a", 1), tiny]));
        let err = Registry::open(dao, vec![], 0).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the fake database: function \"tiny\": memory of 1 MiB is out of range: give 64 to 3072 MiB; fix or delete its row with the sqlite3 tool, or start with --fresh"
        );
        // An invalid start-up function is refused before the store is touched.
        let dao = Arc::new(FakeDao::default());
        let mut bad = spec("bad");
        bad.handler = "perl".into();
        assert!(Registry::open(dao.clone(), vec![bad], 0).is_err());
        assert_eq!(dao.calls(), 0);
    }

    #[test]
    fn concurrent_deploys_of_one_name_each_get_their_own_revision() {
        let dao = Arc::new(FakeDao::default());
        let registry = Arc::new(open(&dao, vec![]).registry);
        let writers: Vec<_> = (0..4)
            .map(|_| {
                let registry = registry.clone();
                std::thread::spawn(move || {
                    (0..50)
                        .map(|i| registry.deploy(spec("f"), i).unwrap().function.revision)
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut revisions: Vec<i64> = writers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect();
        revisions.sort_unstable();
        assert_eq!(revisions, (1..=200).collect::<Vec<_>>());
        let f = registry.get("f").unwrap();
        assert_eq!(f.revision, 200);
        assert_eq!(dao.rows(), vec![(*f).clone()]);
    }
}
