//! The container's own memory cgroup, as the watchdog sees it: how many processes the
//! kernel's OOM killer has killed in it, and its limit.
//!
//! Where the node (or Docker) caps a container's memory with a cgroup, the kernel stops a
//! function that allocates past the limit by killing a process of the group with SIGKILL.
//! To the watchdog that looks like any other `kill -9`; the group's counter tells them
//! apart. A call whose process died of SIGKILL while the counter rose ended `OutOfMemory`,
//! not `FunctionError` ([`super::exec`]) or `ContainerExited` ([`super::http`]).
//!
//! Which group: the `memory` line of `/proc/self/cgroup` (cgroup v1), else its unified
//! `0::` line (v2), found on disk through the cgroup mounts of `/proc/self/mountinfo` (a
//! mount may show only a subtree: Docker mounts the container's own group at
//! `/sys/fs/cgroup`). The counter is `oom_kill` of `memory.oom_control` (v1) or of
//! `memory.events` (v2); the limit is `memory.limit_in_bytes` or `memory.max`.
//!
//! The watchdog reads it through [`super::sys::Sys::memory_cgroup`], so the classification
//! is unit-tested against the fake; the parsing here is plain functions.

use std::path::{Path, PathBuf};

use super::sys::Sys;

/// A v1 limit at or above this is "no limit" (the kernel's default is `i64::MAX` rounded to
/// pages).
const UNLIMITED: u64 = 1 << 62;

/// What a memory cgroup's files say now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CgroupMemory {
    /// Processes of the group the kernel's OOM killer killed, ever.
    pub oom_kills: u64,
    /// The group's limit (`None`: unlimited).
    pub limit_bytes: Option<u64>,
}

/// A memory cgroup on disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemoryGroup {
    pub dir: PathBuf,
    /// cgroup v2 (else v1).
    pub unified: bool,
}

/// The `(hierarchy id, controllers, path)` fields of a `/proc/PID/cgroup` line.
fn fields(line: &str) -> Option<(&str, &str, &str)> {
    let mut parts = line.splitn(3, ':');
    Some((parts.next()?, parts.next()?, parts.next()?))
}

impl MemoryGroup {
    /// The memory cgroup that `proc_cgroup` (a `/proc/PID/cgroup`) places its process in,
    /// where one of the cgroup mounts of `mountinfo` shows it.
    pub fn find(proc_cgroup: &str, mountinfo: &str) -> Option<MemoryGroup> {
        let lines: Vec<_> = proc_cgroup.lines().filter_map(fields).collect();
        let v1 = lines
            .iter()
            .find(|(_, controllers, _)| controllers.split(',').any(|c| c == "memory"));
        let v2 = lines.iter().find(|(id, c, _)| *id == "0" && c.is_empty());
        let (path, unified) = match (v1, v2) {
            (Some(line), _) => (line.2, false),
            (None, Some(line)) => (line.2, true),
            (None, None) => return None,
        };
        mountinfo.lines().find_map(|mount| {
            let (before, after) = mount.split_once(" - ")?;
            let before: Vec<&str> = before.split(' ').collect();
            let mut after = after.split(' ');
            let fstype = after.next()?;
            let options = after.nth(1).unwrap_or_default();
            let shows_memory = if unified {
                fstype == "cgroup2"
            } else {
                fstype == "cgroup" && options.split(',').any(|o| o == "memory")
            };
            if !shows_memory {
                return None;
            }
            let below = path.strip_prefix(before.get(3)?.trim_end_matches('/'))?;
            if !(below.is_empty() || below.starts_with('/')) {
                return None;
            }
            let dir = Path::new(before.get(4)?).join(below.trim_start_matches('/'));
            Some(MemoryGroup { dir, unified })
        })
    }

    /// This process's memory cgroup, if it has one it can see.
    pub fn own() -> Option<MemoryGroup> {
        let read = |path: &str| std::fs::read_to_string(path).ok();
        MemoryGroup::find(&read("/proc/self/cgroup")?, &read("/proc/self/mountinfo")?)
    }

    /// The group's OOM kills and limit now; `None` where its files cannot be read or the
    /// kernel keeps no OOM kill counter.
    pub fn read(&self) -> Option<CgroupMemory> {
        let (events, limit) = if self.unified {
            ("memory.events", "memory.max")
        } else {
            ("memory.oom_control", "memory.limit_in_bytes")
        };
        let text = |file: &str| std::fs::read_to_string(self.dir.join(file)).ok();
        Some(CgroupMemory {
            oom_kills: oom_kills(&text(events)?)?,
            limit_bytes: text(limit)
                .and_then(|t| t.trim().parse().ok())
                .filter(|b| *b < UNLIMITED),
        })
    }
}

/// The `oom_kill` line of a `memory.oom_control` or `memory.events`.
pub fn oom_kills(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix("oom_kill ")?.trim().parse().ok())
}

/// The group's reading now, if a process that started when the group read `before` and
/// ended with `signal` was killed by the kernel for the group's memory: SIGKILL while the
/// group's OOM kills rose (read only then).
pub fn oom_killed(
    sys: &dyn Sys,
    before: Option<CgroupMemory>,
    signal: Option<i32>,
) -> Option<CgroupMemory> {
    let before = before.filter(|_| signal == Some(libc::SIGKILL))?;
    sys.memory_cgroup()
        .filter(|now| now.oom_kills > before.oom_kills)
}

/// The message of a call whose process the kernel killed for its container's memory.
pub fn oom_message(what: &str, limit_bytes: Option<u64>) -> String {
    let limit = match limit_bytes {
        Some(bytes) => format!("its limit of {bytes} bytes"),
        None => "its limit".to_string(),
    };
    format!(
        "out of memory: the kernel killed {what} (SIGKILL) because the container's memory \
         cgroup reached {limit}; give the function more memory"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A v1 host's cgroup mounts (memory on its own, a unified one beside).
    const MOUNTS: &str = "36 25 0:31 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids\n\
                          37 25 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n\
                          44 25 0:39 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n";

    #[test]
    fn a_v1_memory_line_is_found_under_the_memory_mount() {
        let proc = "8:pids:/\n4:memory:/faas-n.1.0/c1\n0::/\n";
        assert_eq!(
            MemoryGroup::find(proc, MOUNTS),
            Some(MemoryGroup {
                dir: "/sys/fs/cgroup/memory/faas-n.1.0/c1".into(),
                unified: false
            })
        );
    }

    #[test]
    fn a_mounted_subtree_and_pure_v2_are_found_too() {
        let docker = "35 31 0:32 /docker/abc /sys/fs/cgroup/memory ro - cgroup cgroup rw,memory\n";
        let found = MemoryGroup::find("4:memory:/docker/abc\n", docker).unwrap();
        assert_eq!(found.dir, Path::new("/sys/fs/cgroup/memory"));
        assert_eq!(MemoryGroup::find("4:memory:/docker/abcd\n", docker), None);
        let v2 = "29 23 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
        let found = MemoryGroup::find("0::/system.slice/x\n", v2).unwrap();
        assert_eq!(found.dir, Path::new("/sys/fs/cgroup/system.slice/x"));
        assert!(found.unified);
        assert_eq!(MemoryGroup::find("1:cpu:/\n", MOUNTS), None);
    }

    #[test]
    fn a_groups_files_give_its_oom_kills_and_limit() {
        let dir = tempfile::tempdir().unwrap();
        let group = MemoryGroup {
            dir: dir.path().into(),
            unified: false,
        };
        assert_eq!(group.read(), None, "no files");
        let oom_control = "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n";
        std::fs::write(dir.path().join("memory.oom_control"), oom_control).unwrap();
        std::fs::write(
            dir.path().join("memory.limit_in_bytes"),
            "9223372036854771712\n",
        )
        .unwrap();
        let unlimited = CgroupMemory {
            oom_kills: 2,
            limit_bytes: None,
        };
        assert_eq!(group.read(), Some(unlimited));
        std::fs::write(dir.path().join("memory.limit_in_bytes"), "67108864\n").unwrap();
        assert_eq!(group.read().unwrap().limit_bytes, Some(64 << 20));
        let v2 = MemoryGroup {
            unified: true,
            ..group
        };
        std::fs::write(dir.path().join("memory.events"), "oom 1\noom_kill 1\n").unwrap();
        std::fs::write(dir.path().join("memory.max"), "max\n").unwrap();
        assert_eq!(
            v2.read(),
            Some(CgroupMemory {
                oom_kills: 1,
                limit_bytes: None
            })
        );
        assert_eq!(oom_kills("oom_kill_disable 0\n"), None);
    }

    #[test]
    fn only_a_sigkill_while_the_count_rose_is_the_kernels() {
        let sys = crate::watchdog::sys_fake::FakeSys::default();
        let before = |n| {
            Some(CgroupMemory {
                oom_kills: n,
                limit_bytes: None,
            })
        };
        sys.cgroup_readings(&[1], 64);
        assert_eq!(
            oom_killed(&sys, before(0), Some(9)).unwrap().limit_bytes,
            Some(64)
        );
        assert_eq!(oom_killed(&sys, before(1), Some(9)), None, "no new kill");
        assert_eq!(oom_killed(&sys, before(0), Some(15)), None, "not a SIGKILL");
        assert_eq!(oom_killed(&sys, before(0), None), None, "an exit");
        assert_eq!(oom_killed(&sys, None, Some(9)), None, "no group");
    }

    #[test]
    fn the_message_names_the_limit() {
        let m = oom_message("the call's process", Some(1024));
        assert!(
            m.contains("limit of 1024 bytes") && m.contains("more memory"),
            "{m}"
        );
        assert!(oom_message("x", None).contains("reached its limit;"));
    }
}
