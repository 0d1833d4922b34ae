//! The in-memory function table: deployed functions by name, read by every invocation.
//!
//! Every invocation reads it, deployments write it rarely, so it is a read-write lock over a
//! map of shared records: a read takes the lock for one hash lookup and an `Arc` clone, and
//! never across an `.await`. The rules (validation, revisions, writing the database first)
//! live in `service/`.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::model::Function;

/// Deployed functions, keyed by name.
#[derive(Debug, Default)]
pub struct FunctionTable {
    rows: RwLock<HashMap<String, Arc<Function>>>,
}

impl FunctionTable {
    /// An empty table.
    pub fn new() -> FunctionTable {
        FunctionTable::default()
    }

    // A panic while holding the lock cannot leave a half-written map (every write is one
    // insert or remove), so a poisoned lock is still safe to use.
    fn read(&self) -> RwLockReadGuard<'_, HashMap<String, Arc<Function>>> {
        self.rows.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, HashMap<String, Arc<Function>>> {
        self.rows.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// The function named `name`.
    pub fn get(&self, name: &str) -> Option<Arc<Function>> {
        self.read().get(name).cloned()
    }

    /// Inserts `function`, or replaces the row of its name; returns the row it replaced.
    pub fn insert(&self, function: Arc<Function>) -> Option<Arc<Function>> {
        self.write().insert(function.name.clone(), function)
    }

    /// Removes the function named `name`; returns it if it was there.
    pub fn remove(&self, name: &str) -> Option<Arc<Function>> {
        self.write().remove(name)
    }

    /// Every function, sorted by name.
    pub fn list(&self) -> Vec<Arc<Function>> {
        let mut all: Vec<Arc<Function>> = self.read().values().cloned().collect();
        all.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// How many functions there are.
    pub fn len(&self) -> usize {
        self.read().len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Handler;

    fn function(name: &str, revision: i64) -> Function {
        Function {
            name: name.into(),
            handler: Handler::Hello.into(),
            memory_bytes: 128 << 20,
            timeout_ms: 1000,
            description: String::new(),
            revision,
            created_at_ms: 0,
            updated_at_ms: 0,
        }
    }

    #[test]
    fn insert_replaces_by_name_and_list_is_sorted() {
        let table = FunctionTable::new();
        assert!(table.insert(Arc::new(function("b", 1))).is_none());
        table.insert(Arc::new(function("a", 1)));
        let old = table.insert(Arc::new(function("b", 2)));
        assert_eq!(old.unwrap().revision, 1);
        assert_eq!(table.get("b").unwrap().revision, 2);
        let names: Vec<_> = table.list().iter().map(|f| f.name.clone()).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(table.remove("a").unwrap().name, "a");
        assert!(table.remove("a").is_none());
        assert!(table.get("a").is_none());
        assert_eq!(table.len(), 1);
    }
}
