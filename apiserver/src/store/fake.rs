//! An in-memory [`FunctionDao`] for the service's unit tests: it keeps rows in maps, can be
//! told to fail its writes, and can be frozen so that any further call panics (which proves a
//! code path never touches the store). Integration tests use the real database instead.
//!
//! It refuses what the database refuses, with the same reasons: a version, alias or policy of
//! a function it does not hold, a version stored twice or misnamed; deleting a function
//! deletes its versions, aliases and policy.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

use crate::model::Function;
use crate::model::routing::{Alias, RoutePolicy, version_name};
use crate::store::dao::{FunctionDao, Loaded, StoreError};

/// What the fake holds besides functions.
#[derive(Debug, Default)]
struct Routing {
    versions: BTreeMap<(String, i64), Function>,
    aliases: BTreeMap<(String, String), Alias>,
    policies: BTreeMap<String, RoutePolicy>,
}

/// A fake store; new (seeded on first load) unless made [`FakeDao::holding`] rows.
#[derive(Debug, Default)]
pub struct FakeDao {
    rows: Mutex<BTreeMap<String, Function>>,
    routing: Mutex<Routing>,
    used: AtomicBool,
    fail_writes: AtomicBool,
    frozen: AtomicBool,
    calls: AtomicUsize,
}

impl FakeDao {
    /// A store that already holds `functions`.
    pub fn holding(functions: impl IntoIterator<Item = Function>) -> FakeDao {
        let dao = FakeDao::default();
        dao.used.store(true, Ordering::SeqCst);
        *dao.rows.lock().unwrap() = functions.into_iter().map(|f| (f.name.clone(), f)).collect();
        dao
    }

    /// Makes every later write fail (`true`) or succeed again.
    pub fn fail_writes(&self, fail: bool) {
        self.fail_writes.store(fail, Ordering::SeqCst);
    }

    /// Makes every later call panic.
    pub fn freeze(&self) {
        self.frozen.store(true, Ordering::SeqCst);
    }

    /// The stored rows, sorted by name.
    pub fn rows(&self) -> Vec<Function> {
        self.rows.lock().unwrap().values().cloned().collect()
    }

    /// The stored versions (function, version named `FUNCTION:N`), by function then N.
    pub fn versions(&self) -> Vec<(String, Function)> {
        let routing = self.routing.lock().unwrap();
        routing
            .versions
            .iter()
            .map(|((function, _), v)| (function.clone(), v.clone()))
            .collect()
    }

    /// The stored aliases, by function then name.
    pub fn aliases(&self) -> Vec<Alias> {
        self.routing
            .lock()
            .unwrap()
            .aliases
            .values()
            .cloned()
            .collect()
    }

    /// The stored route policies, by function.
    pub fn policies(&self) -> Vec<(String, RoutePolicy)> {
        let routing = self.routing.lock().unwrap();
        routing
            .policies
            .iter()
            .map(|(f, p)| (f.clone(), p.clone()))
            .collect()
    }

    /// How many calls the store has had.
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    fn call(&self, what: &str) {
        assert!(
            !self.frozen.load(Ordering::SeqCst),
            "the store was called ({what}) after it was frozen"
        );
        self.calls.fetch_add(1, Ordering::SeqCst);
    }

    fn write(&self, what: &str) -> Result<(), StoreError> {
        self.call(what);
        if self.fail_writes.load(Ordering::SeqCst) {
            return Err(refused("database or disk is full".into()));
        }
        Ok(())
    }

    /// A write of a row of `function`, which must be stored; the routing tables, locked.
    fn write_of(&self, what: &str, function: &str) -> Result<MutexGuard<'_, Routing>, StoreError> {
        self.write(what)?;
        if !self.rows.lock().unwrap().contains_key(function) {
            return Err(refused(format!("there is no function {function}")));
        }
        Ok(self.routing.lock().unwrap())
    }
}

fn refused(reason: String) -> StoreError {
    StoreError::Write {
        path: "/fake/apiserver.db".into(),
        reason,
    }
}

impl FunctionDao for FakeDao {
    fn load_or_seed(&self, seed: &[Function]) -> Result<Loaded, StoreError> {
        self.call("load_or_seed");
        let seeded = !self.used.swap(true, Ordering::SeqCst);
        let mut rows = self.rows.lock().unwrap();
        if seeded {
            rows.extend(seed.iter().map(|f| (f.name.clone(), f.clone())));
        }
        drop(rows);
        Ok(Loaded {
            functions: self.rows(),
            seeded,
            versions: self.versions(),
            aliases: self.aliases(),
            policies: self.policies(),
        })
    }

    fn put_function(&self, function: &Function) -> Result<(), StoreError> {
        self.write("put_function")?;
        self.rows
            .lock()
            .unwrap()
            .insert(function.name.clone(), function.clone());
        Ok(())
    }

    fn delete_function(&self, name: &str) -> Result<bool, StoreError> {
        self.write("delete_function")?;
        let mut routing = self.routing.lock().unwrap();
        routing.versions.retain(|(f, _), _| f != name);
        routing.aliases.retain(|(f, _), _| f != name);
        routing.policies.remove(name);
        Ok(self.rows.lock().unwrap().remove(name).is_some())
    }

    fn put_version(&self, function: &str, version: &Function) -> Result<(), StoreError> {
        let mut routing = self.write_of("put_version", function)?;
        let n = version.revision;
        if version.name != version_name(function, n) {
            return Err(refused(format!(
                "a version of {function} with revision {n} must be named {}, not {}",
                version_name(function, n),
                version.name
            )));
        }
        let key = (function.to_string(), n);
        if routing.versions.contains_key(&key) {
            return Err(refused(format!(
                "version {n} of {function} exists; versions are immutable"
            )));
        }
        let mut stored = version.clone();
        stored.updated_at_ms = stored.created_at_ms;
        routing.versions.insert(key, stored);
        Ok(())
    }

    fn delete_version(&self, function: &str, version: i64) -> Result<bool, StoreError> {
        self.write("delete_version")?;
        let mut routing = self.routing.lock().unwrap();
        Ok(routing
            .versions
            .remove(&(function.to_string(), version))
            .is_some())
    }

    fn put_alias(&self, alias: &Alias) -> Result<(), StoreError> {
        let mut routing = self.write_of("put_alias", &alias.function)?;
        let key = (alias.function.clone(), alias.name.clone());
        routing.aliases.insert(key, alias.clone());
        Ok(())
    }

    fn delete_alias(&self, function: &str, alias: &str) -> Result<bool, StoreError> {
        self.write("delete_alias")?;
        let mut routing = self.routing.lock().unwrap();
        let key = (function.to_string(), alias.to_string());
        Ok(routing.aliases.remove(&key).is_some())
    }

    fn put_policy(&self, function: &str, policy: Option<&RoutePolicy>) -> Result<(), StoreError> {
        let Some(policy) = policy else {
            self.write("put_policy")?;
            self.routing.lock().unwrap().policies.remove(function);
            return Ok(());
        };
        let mut routing = self.write_of("put_policy", function)?;
        routing
            .policies
            .insert(function.to_string(), policy.clone());
        Ok(())
    }

    fn describe(&self) -> String {
        "the fake database".into()
    }
}
