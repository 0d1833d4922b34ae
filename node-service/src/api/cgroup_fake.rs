//! The fake [`MemoryCgroups`] the process runtime's rules are unit-tested against: groups are
//! records of their limits, OOM kills are what the test says, and a child "joins" by writing
//! to `/dev/null`. What the runtime asked for (creates, limits, removals, the close) is kept
//! for the test to read.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::sync::Mutex;

use super::cgroup::{GroupUsage, Joiner, MemoryCgroups};

#[derive(Debug, Default)]
struct State {
    /// Live groups and their limits.
    limits: HashMap<String, u64>,
    oom_kills: HashMap<String, u64>,
    removed: Vec<String>,
    closed: bool,
    /// Creates fail (a host that ran out of groups).
    refuse: bool,
    /// Every new group has been OOM-killed once (a child killed while it starts).
    kill_new: bool,
}

/// Groups in memory.
#[derive(Debug, Default)]
pub struct FakeCgroups {
    state: Mutex<State>,
}

impl FakeCgroups {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The limit of container `id`'s group, while it exists.
    pub fn limit(&self, id: &str) -> Option<u64> {
        self.state().limits.get(id).copied()
    }

    /// How many groups exist.
    pub fn live(&self) -> usize {
        self.state().limits.len()
    }

    /// The groups removed so far, in order.
    pub fn removed(&self) -> Vec<String> {
        self.state().removed.clone()
    }

    /// Whether the runtime closed the node's groups.
    pub fn closed(&self) -> bool {
        self.state().closed
    }

    /// Counts one OOM kill in container `id`'s group.
    pub fn oom_kill(&self, id: &str) {
        *self.state().oom_kills.entry(id.to_string()).or_default() += 1;
    }

    /// From now on, creating a group fails.
    pub fn refuse_creates(&self) {
        self.state().refuse = true;
    }

    /// From now on, every new group counts one OOM kill.
    pub fn kill_new_groups(&self) {
        self.state().kill_new = true;
    }

    fn missing(id: &str) -> io::Error {
        io::Error::new(io::ErrorKind::NotFound, format!("no group {id}"))
    }
}

impl MemoryCgroups for FakeCgroups {
    fn create(&self, id: &str, limit_bytes: u64) -> io::Result<Joiner> {
        let mut state = self.state();
        if state.refuse {
            return Err(io::Error::other("no space left for cgroups"));
        }
        state.limits.insert(id.to_string(), limit_bytes);
        if state.kill_new {
            state.oom_kills.insert(id.to_string(), 1);
        }
        Ok(Joiner::new(File::options().write(true).open("/dev/null")?))
    }

    fn set_limit(&self, id: &str, limit_bytes: u64) -> io::Result<()> {
        let mut state = self.state();
        let limit = state.limits.get_mut(id).ok_or_else(|| Self::missing(id))?;
        *limit = limit_bytes;
        Ok(())
    }

    fn usage(&self, id: &str) -> io::Result<GroupUsage> {
        let state = self.state();
        if !state.limits.contains_key(id) {
            return Err(Self::missing(id));
        }
        Ok(GroupUsage {
            peak_bytes: None,
            oom_kills: state.oom_kills.get(id).copied().unwrap_or(0),
        })
    }

    fn remove(&self, id: &str) -> io::Result<()> {
        let mut state = self.state();
        if state.limits.remove(id).is_some() {
            state.removed.push(id.to_string());
        }
        Ok(())
    }

    fn close(&self) {
        let mut state = self.state();
        let left: Vec<String> = state.limits.drain().map(|(id, _)| id).collect();
        state.removed.extend(left);
        state.closed = true;
    }
}
