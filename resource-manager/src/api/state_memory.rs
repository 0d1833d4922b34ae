//! The fake beside [`super::state_file::StateFile`]: a [`StateStore`] in memory, for the
//! manager's unit tests. It keeps every state saved, in order.

use std::sync::{Mutex, PoisonError};

use crate::core::SavedState;
use crate::service::{StateError, StateStore};

/// Saved states in memory.
#[derive(Debug, Default)]
pub struct MemoryState {
    saved: Mutex<Vec<SavedState>>,
}

impl MemoryState {
    /// The latest state saved.
    pub fn latest(&self) -> Option<SavedState> {
        self.saved().last().cloned()
    }

    /// How many states were saved.
    pub fn saves(&self) -> usize {
        self.saved().len()
    }

    fn saved(&self) -> std::sync::MutexGuard<'_, Vec<SavedState>> {
        self.saved.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl StateStore for MemoryState {
    fn load(&self) -> Result<Option<SavedState>, StateError> {
        Ok(self.latest())
    }

    fn save(&self, state: &SavedState) -> Result<(), StateError> {
        self.saved().push(state.clone());
        Ok(())
    }
}
