//! The node service's own usage and disk, measured from `/proc` and `statvfs`, and the
//! system's wall clock.

use std::sync::Mutex;

use super::procfs::{self, CpuSampler};
use crate::model::{DiskUsage, ProcessUsage};
use crate::service::HostProbe;

/// Measures this process.
#[derive(Debug)]
pub struct ProcHost {
    cpu: Mutex<CpuSampler>,
}

impl Default for ProcHost {
    fn default() -> Self {
        ProcHost {
            cpu: Mutex::new(CpuSampler::new(None)),
        }
    }
}

impl HostProbe for ProcHost {
    fn own_usage(&self) -> ProcessUsage {
        let cpu_pct = self.cpu.lock().unwrap_or_else(|e| e.into_inner()).sample();
        ProcessUsage {
            memory_bytes: procfs::rss_bytes(None),
            cpu_pct,
        }
    }

    fn disk(&self) -> DiskUsage {
        procfs::disk_usage()
    }

    fn now_ms(&self) -> i64 {
        faas_common::clock::now_ms()
    }
}
