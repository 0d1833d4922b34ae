//! The fake beside [`super::processes::SystemProcesses`]: a process table in memory, for
//! the `local` provider's unit tests. Processes die on SIGKILL, and on SIGTERM unless told to
//! ignore it; every signal sent is recorded.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use faas_common::launch::Signal;

use super::processes::{ProcessRef, ProcessTable};

#[derive(Debug)]
struct FakeProcess {
    start: u64,
    ignores_term: bool,
}

/// Processes in memory.
#[derive(Debug, Default)]
pub struct FakeProcesses {
    running: Mutex<HashMap<u32, FakeProcess>>,
    sent: Mutex<Vec<(u32, Signal)>>,
}

impl FakeProcesses {
    /// Adds a running process.
    pub fn run(&self, process: ProcessRef, ignores_term: bool) {
        self.running().insert(
            process.pid,
            FakeProcess {
                start: process.start,
                ignores_term,
            },
        );
    }

    /// Ends process `pid` (it exited by itself).
    pub fn exit(&self, pid: u32) {
        self.running().remove(&pid);
    }

    /// Every signal sent so far, in order.
    pub fn sent(&self) -> Vec<(u32, Signal)> {
        self.sent
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn running(&self) -> std::sync::MutexGuard<'_, HashMap<u32, FakeProcess>> {
        self.running.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl ProcessTable for FakeProcesses {
    fn start_time(&self, pid: u32) -> Option<u64> {
        self.running().get(&pid).map(|p| p.start)
    }

    fn signal(&self, pid: u32, signal: Signal) -> std::io::Result<()> {
        self.sent
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((pid, signal));
        let mut running = self.running();
        let Some(process) = running.get(&pid) else {
            return Err(std::io::Error::from_raw_os_error(3)); // ESRCH
        };
        if signal == Signal::Kill || !process.ignores_term {
            running.remove(&pid);
        }
        Ok(())
    }
}
