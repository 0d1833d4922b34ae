//! The fake [`Sys`] the watchdog's rules are unit-tested against: memory is what the test
//! set, kills are recorded (and, like a real SIGKILL, make the group's memory vanish), and
//! the memory cgroup's OOM counter reads what the test lined up.

use std::collections::HashMap;
use std::sync::Mutex;

use super::cgroup::CgroupMemory;
use super::sys::{Sys, TreeMemory};

/// A system whose process trees hold the memory a test sets.
#[derive(Debug, Default)]
pub struct FakeSys {
    memory: Mutex<HashMap<u32, TreeMemory>>,
    kills: Mutex<Vec<u32>>,
    /// The memory cgroup's next readings; the last one stays (none: no cgroup).
    cgroup: Mutex<Vec<CgroupMemory>>,
}

impl FakeSys {
    /// The tree of `pid` holds `rss` bytes now and has peaked at `hwm`.
    pub fn set_memory(&self, pid: u32, rss: u64, hwm: u64) {
        self.memory.lock().unwrap().insert(
            pid,
            TreeMemory {
                rss_bytes: rss,
                hwm_bytes: hwm,
                processes: 1,
            },
        );
    }

    /// The memory cgroup reads `oom_kills`, one reading after the other (the last one
    /// stays), with a limit of `limit_bytes`.
    pub fn cgroup_readings(&self, oom_kills: &[u64], limit_bytes: u64) {
        *self.cgroup.lock().unwrap() = oom_kills
            .iter()
            .map(|&oom_kills| CgroupMemory {
                oom_kills,
                limit_bytes: Some(limit_bytes),
            })
            .collect();
    }

    /// The groups killed so far, in order.
    pub fn kills(&self) -> Vec<u32> {
        self.kills.lock().unwrap().clone()
    }
}

impl Sys for FakeSys {
    /// Each tree is one process (the memory set for it is its whole tree's).
    fn tree(&self, root: u32) -> Vec<u32> {
        vec![root]
    }

    fn memory(&self, pids: &[u32]) -> TreeMemory {
        let memory = self.memory.lock().unwrap();
        let mut total = TreeMemory::default();
        for t in pids.iter().filter_map(|p| memory.get(p)) {
            total.rss_bytes += t.rss_bytes;
            total.hwm_bytes += t.hwm_bytes;
            total.processes += t.processes;
        }
        total
    }

    fn kill_group(&self, pgid: u32) -> std::io::Result<()> {
        self.kills.lock().unwrap().push(pgid);
        self.memory.lock().unwrap().remove(&pgid);
        Ok(())
    }

    fn memory_cgroup(&self) -> Option<CgroupMemory> {
        let mut readings = self.cgroup.lock().unwrap();
        if readings.len() > 1 {
            Some(readings.remove(0))
        } else {
            readings.first().copied()
        }
    }
}
