//! The system calls the watchdog makes, in one place.
//!
//! [`Sys`] is the part the watchdog's *rules* use: how much memory a process tree holds, and
//! killing a process group. The rules (the memory guard, the group handle that never signals
//! a reaped group) are unit-tested against the fake beside this file (`sys_fake.rs`);
//! [`RealSys`] reads `/proc` (and the container's memory cgroup) and calls `kill(2)`. Starting and reaping processes
//! ([`die_with_parent`], [`wait_exited`], [`reap`]) are plain functions: they are tested with
//! real processes only, since a fake of them would test nothing but itself.
//!
//! Why the process tree is read from `/proc/PID/task/TID/children`: it is a few small reads
//! per walk (a scan of all of `/proc` would cost milliseconds on a busy node), and it finds
//! the processes a function started (a shell's children, a server's workers). Walking the
//! tree and reading its memory are separate calls, so the end of an `http` call can read the
//! memory of the processes the last walk found (one `status` read for a one-process
//! server) instead of walking again.

#![allow(unsafe_code)]

use std::collections::HashSet;
use std::fmt::Debug;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::ExitStatus;

use super::cgroup::{CgroupMemory, MemoryGroup};
use crate::memory::rss::parse_status_bytes;

/// The memory of a process and its descendants, summed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TreeMemory {
    /// Resident bytes now (`VmRSS`).
    pub rss_bytes: u64,
    /// The sum of each process's peak resident bytes (`VmHWM`): an upper bound of the
    /// tree's peak (its processes may have peaked at different times), never below it.
    pub hwm_bytes: u64,
    /// How many processes were counted.
    pub processes: usize,
}

/// The system calls behind the watchdog's rules.
pub trait Sys: Send + Sync + Debug + 'static {
    /// `root` and its descendants (`root` first; empty when it is gone).
    fn tree(&self, root: u32) -> Vec<u32>;
    /// The memory of `pids`, summed (a process that is gone counts zero).
    fn memory(&self, pids: &[u32]) -> TreeMemory;
    /// Sends SIGKILL to every process of group `pgid`.
    fn kill_group(&self, pgid: u32) -> std::io::Result<()>;
    /// The OOM kills and limit of this container's memory cgroup (`None`: no cgroup, or
    /// one that keeps no count; see [`super::cgroup`]).
    fn memory_cgroup(&self) -> Option<CgroupMemory>;

    /// The memory of `root` and its descendants.
    fn tree_memory(&self, root: u32) -> TreeMemory {
        self.memory(&self.tree(root))
    }
}

/// The real system: `/proc` and `kill(2)`.
#[derive(Clone, Copy, Debug, Default)]
pub struct RealSys;

/// The most processes one tree walk visits (a fork bomb is not counted forever).
const MAX_TREE: usize = 4096;

fn children(pid: u32, out: &mut Vec<u32>) {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return;
    };
    for task in tasks.flatten() {
        let path = task.path().join("children");
        if let Ok(list) = std::fs::read_to_string(path) {
            out.extend(
                list.split_whitespace()
                    .filter_map(|p| p.parse::<u32>().ok()),
            );
        }
    }
}

impl Sys for RealSys {
    fn tree(&self, root: u32) -> Vec<u32> {
        if !Path::new(&format!("/proc/{root}")).exists() {
            return Vec::new();
        }
        let mut seen = HashSet::new();
        let mut tree = Vec::new();
        let mut todo = vec![root];
        while let Some(pid) = todo.pop() {
            if tree.len() >= MAX_TREE || !seen.insert(pid) {
                continue;
            }
            tree.push(pid);
            children(pid, &mut todo);
        }
        tree
    }

    fn memory(&self, pids: &[u32]) -> TreeMemory {
        let mut total = TreeMemory::default();
        for pid in pids {
            let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
                continue;
            };
            // A zombie has no memory lines: it holds nothing.
            let rss = parse_status_bytes(&status, "VmRSS").unwrap_or(0);
            total.rss_bytes += rss;
            total.hwm_bytes += parse_status_bytes(&status, "VmHWM").unwrap_or(rss);
            total.processes += 1;
        }
        total
    }

    fn kill_group(&self, pgid: u32) -> std::io::Result<()> {
        // Never 0 (our own group) or 1 (every process we may signal).
        let pgid = libc::pid_t::try_from(pgid)
            .ok()
            .filter(|p| *p > 1)
            .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
        // SAFETY: kill(2) on a negative pid signals one process group; no memory is shared.
        if unsafe { libc::kill(-pgid, libc::SIGKILL) } == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    }

    fn memory_cgroup(&self) -> Option<CgroupMemory> {
        // The container's group is fixed when it starts: found once.
        static OWN: std::sync::OnceLock<Option<MemoryGroup>> = std::sync::OnceLock::new();
        OWN.get_or_init(MemoryGroup::own).as_ref()?.read()
    }
}

/// Whether process `pid` is alive: it exists and is not a zombie (a dead process waiting to
/// be reaped).
pub fn is_alive(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The state follows the command name, which is in parentheses and may hold anything.
    let state = stat
        .rsplit_once(") ")
        .and_then(|(_, rest)| rest.chars().next());
    !matches!(state, Some('Z' | 'X') | None)
}

pub use faas_common::launch::die_with_parent;

fn pid_t(pid: u32) -> std::io::Result<libc::pid_t> {
    libc::pid_t::try_from(pid)
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::InvalidInput))
}

/// Blocks until child `pid` has exited, *without* reaping it: while it is a zombie its pid,
/// and so its process group id, cannot be reused, so the group can still be killed safely.
pub fn wait_exited(pid: u32) -> std::io::Result<()> {
    let pid = pid_t(pid)?;
    loop {
        // SAFETY: `info` is a plain struct waitid fills in; no other memory is touched.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: as above; P_PID waits for one child of ours.
        let r = unsafe {
            libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOWAIT,
            )
        };
        if r == 0 {
            return Ok(());
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// How a reaped process ended, and its peak resident memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Exit {
    pub status: ExitStatus,
    /// The peak resident bytes of the process and of the children it reaped
    /// (`ru_maxrss` of `wait4`).
    pub max_rss_bytes: u64,
}

impl Exit {
    /// An exit for tests: `code` and a peak.
    pub fn with_code(code: i32, max_rss_bytes: u64) -> Exit {
        Exit {
            status: ExitStatus::from_raw((code & 0xff) << 8),
            max_rss_bytes,
        }
    }
}

/// Reaps exited child `pid` (call [`wait_exited`] first: this does not block then).
pub fn reap(pid: u32) -> std::io::Result<Exit> {
    let pid = pid_t(pid)?;
    loop {
        let mut status = 0;
        // SAFETY: `usage` is a plain struct wait4 fills in.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: wait4 on one child of ours, writing only into the two locals.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if r == pid {
            return Ok(Exit {
                status: ExitStatus::from_raw(status),
                // Linux reports kilobytes.
                max_rss_bytes: u64::try_from(usage.ru_maxrss).unwrap_or(0) * 1024,
            });
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tree_of_our_own_process_has_memory() {
        let me = std::process::id();
        let t = RealSys.tree_memory(me);
        assert!(t.rss_bytes > 0 && t.hwm_bytes >= t.rss_bytes, "{t:?}");
        assert!(t.processes >= 1);
        assert_eq!(RealSys.tree(me)[0], me);
        assert!(is_alive(me));
        assert!(!is_alive(u32::MAX));
        assert!(RealSys.tree(u32::MAX).is_empty());
        assert_eq!(RealSys.tree_memory(u32::MAX), TreeMemory::default());
    }

    #[test]
    fn our_own_group_and_init_are_never_killed() {
        for pgid in [0, 1] {
            let e = RealSys.kill_group(pgid).unwrap_err();
            assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
        }
    }

    #[test]
    fn an_exit_code_round_trips() {
        let e = Exit::with_code(3, 5);
        assert_eq!(e.status.code(), Some(3));
        assert_eq!(e.max_rss_bytes, 5);
    }
}
