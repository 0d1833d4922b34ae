//! An in-memory [`FunctionDao`] for the service's unit tests: it keeps rows in a map, can be
//! told to fail its writes, and can be frozen so that any further call panics (which proves a
//! code path never touches the store). Integration tests use the real database instead.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::model::Function;
use crate::store::dao::{FunctionDao, Loaded, StoreError};

/// A fake store; new (seeded on first load) unless made [`FakeDao::holding`] rows.
#[derive(Debug, Default)]
pub struct FakeDao {
    rows: Mutex<BTreeMap<String, Function>>,
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
            return Err(StoreError::Write {
                path: "/fake/apiserver.db".into(),
                reason: "database or disk is full".into(),
            });
        }
        Ok(())
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
        Ok(Loaded {
            functions: rows.values().cloned().collect(),
            seeded,
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
        Ok(self.rows.lock().unwrap().remove(name).is_some())
    }

    fn describe(&self) -> String {
        "the fake database".into()
    }
}
