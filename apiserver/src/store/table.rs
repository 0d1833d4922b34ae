//! The function registry's table: deployed functions by name.
//!
//! Every invocation reads it, deployments write it rarely, so it is a read-write lock over a
//! map of shared records: a read takes the lock for one hash lookup and an `Arc` clone, and
//! never across an `.await`. The rules (validation, revisions) live in `service/`.

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

    /// Inserts or replaces the row for `name` with what `make` builds from the current row,
    /// atomically; returns the new row and the row it replaced.
    pub fn upsert_with(
        &self,
        name: &str,
        make: impl FnOnce(Option<&Function>) -> Function,
    ) -> (Arc<Function>, Option<Arc<Function>>) {
        let mut rows = self.write();
        let new = Arc::new(make(rows.get(name).map(|f| f.as_ref())));
        let old = rows.insert(name.to_string(), new.clone());
        (new, old)
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
            handler: Handler::Hello,
            memory_bytes: 128 << 20,
            timeout_ms: 1000,
            description: String::new(),
            revision,
            created_at_ms: 0,
            updated_at_ms: 0,
        }
    }

    #[test]
    fn upsert_sees_the_previous_row_and_list_is_sorted() {
        let table = FunctionTable::new();
        let (new, old) = table.upsert_with("b", |prev| {
            assert!(prev.is_none());
            function("b", 1)
        });
        assert_eq!(new.revision, 1);
        assert!(old.is_none());
        table.upsert_with("a", |_| function("a", 1));
        let (new, old) = table.upsert_with("b", |prev| function("b", prev.unwrap().revision + 1));
        assert_eq!((new.revision, old.unwrap().revision), (2, 1));
        let names: Vec<_> = table.list().iter().map(|f| f.name.clone()).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(table.remove("a").unwrap().name, "a");
        assert!(table.remove("a").is_none());
        assert!(table.get("a").is_none());
        assert_eq!(table.len(), 1);
    }
}
