//! The kernel's cap on a container's memory for the `process` runtime: one memory cgroup per
//! container.
//!
//! Without a cgroup, a container's memory is only *measured*: its container service samples
//! `/proc` and kills what passes the limit, so an allocation faster than a sample gets
//! through. With one, the kernel charges every page the container's processes touch to its
//! group and, at the group's limit (swap off, so the limit is real memory), its OOM killer
//! kills a process of that group, never the node or another container. The Docker runtime
//! gets the same from Docker; here the node makes the groups itself, where the host lets it.
//!
//! Where the groups are: under the node service's *own* memory cgroup (the `memory` line of
//! `/proc/self/cgroup`, found on disk through `/proc/self/mountinfo`), so the node's own
//! limit, if any, still covers its containers (on v2, see below):
//!
//! ```text
//! <own cgroup>/faas-<node id>.<pid>.<n>/<container id>
//! ```
//!
//! The node's group is named by its node id (`node` when it has none), its process id and a
//! counter of the nodes this process opened (tests run several in one process). The pid is
//! what tells a leftover from a live node: a node killed with SIGKILL cannot remove its
//! groups, so a node that starts removes every `faas-…` group under the same cgroup whose
//! node process is gone ([`sweep`]), killing what is left in it. A live node, even with the
//! same id (resource managers of different platforms both name their first node `node-1`),
//! is never touched.
//!
//! Which kernel interface: cgroup v1 when the `memory` controller is mounted on its own
//! hierarchy (`memory.limit_in_bytes`, and `memory.memsw.limit_in_bytes` set to the same
//! value where swap is accounted; the OOM kills in `memory.oom_control`), else cgroup v2
//! when `memory` is among the node's cgroup's controllers (`memory.max`,
//! `memory.swap.max = 0`, `memory.events`). v2 allows controlled child groups only to a
//! group without processes of its own (or the root), and the node's own cgroup holds the
//! node: there, the node's groups go beside its cgroup, in the parent
//! ([`Hierarchy::groups_dir`]); where that is out of reach too, [`host`] says why.
//!
//! How a child joins its group before it runs anything: [`MemoryCgroups::create`] opens the
//! group's `cgroup.procs` in the node, and [`Joiner::install`] adds a `pre_exec` hook that
//! writes `0` (the writing process) to that descriptor in the forked child, with a bare
//! `write(2)`: no allocation between `fork` and `exec`, and no page of the new program is
//! charged anywhere else.
//!
//! Processes: the same groups also cap how many processes and threads a container may have
//! ([`HostCgroups::limit_pids`], `--container-pids-max`), so a fork bomb stops in its own
//! container. On v1 that is a second tree in the `pids` hierarchy, named exactly as the memory
//! one (`<own pids cgroup>/faas-<node id>.<pid>.<n>/<container id>`), made, joined (the same
//! [`Joiner`] writes both `cgroup.procs`), removed and swept with it; on v2 it is `pids.max`
//! of the memory groups themselves. A host without it keeps the memory groups.
//!
//! [`MemoryCgroups`] is what the runtime uses; [`HostCgroups`] is the real one, and the
//! runtime's rules are unit-tested against the fake beside this file (`cgroup_fake.rs`).
//! The path and parsing rules are plain functions, tested here; the real groups are tested
//! with real processes in `tests/memory_cgroup.rs`.

use std::collections::HashSet;
use std::fmt::Debug;
use std::fs::{self, File};
use std::io::{self, ErrorKind};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use faas_common::launch::{Signal, send_signal};

mod host;
mod locate;
mod sweep;

pub use host::*;
pub use locate::*;
pub use sweep::*;

/// How long removing a group may wait for the kernel to let its last process go.
const DRAIN: Duration = Duration::from_secs(2);
const DRAIN_STEP: Duration = Duration::from_millis(5);
/// The prefix of every group the node makes.
const PREFIX: &str = "faas-";

/// Whether the process runtime caps containers' memory with cgroups (`--memory-cgroup`).
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    /// Where the host lets the node write a memory cgroup (said once at start).
    #[default]
    Auto,
    /// Never: a container's memory is only measured.
    Off,
}

/// The cgroup interface in use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}

impl Version {
    /// `v1` or `v2`.
    pub fn name(self) -> &'static str {
        match self {
            Version::V1 => "v1",
            Version::V2 => "v2",
        }
    }

    /// The file holding a group's memory limit.
    pub fn limit_file(self) -> &'static str {
        match self {
            Version::V1 => "memory.limit_in_bytes",
            Version::V2 => "memory.max",
        }
    }
}

/// What a group's counters say.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GroupUsage {
    /// The most memory the group held (`None` where the kernel does not keep it).
    pub peak_bytes: Option<u64>,
    /// How many processes of the group the kernel's OOM killer killed.
    pub oom_kills: u64,
}

/// The cgroup operations of the process runtime, one group per container id.
pub trait MemoryCgroups: Send + Sync + Debug + 'static {
    /// Creates the group of container `id` with a limit of `limit_bytes`, and opens it for a
    /// child to join ([`Joiner::install`]).
    fn create(&self, id: &str, limit_bytes: u64) -> io::Result<Joiner>;
    /// Changes the limit of container `id`'s group (a warm pool container being bound).
    fn set_limit(&self, id: &str, limit_bytes: u64) -> io::Result<()>;
    /// The group's peak and OOM kills.
    fn usage(&self, id: &str) -> io::Result<GroupUsage>;
    /// Kills whatever still runs in the group and removes it (blocks while the kernel drains
    /// it, at most a couple of seconds).
    fn remove(&self, id: &str) -> io::Result<()>;
    /// Removes every group left and the node's own group (a clean shutdown). Blocks as
    /// [`MemoryCgroups::remove`].
    fn close(&self);
}

/// The `cgroup.procs` of a container's groups (its memory group, and its pids group where
/// that is another hierarchy), open for writing: a child of a command they are installed in
/// joins them. It must live until the command is spawned.
#[derive(Debug)]
pub struct Joiner(Vec<File>);

impl Joiner {
    /// A joiner writing to `procs` (a group's `cgroup.procs`, or anything for a fake).
    pub fn new(procs: File) -> Joiner {
        Joiner(vec![procs])
    }

    /// The same joiner, joining the group of `procs` too.
    pub fn and(mut self, procs: File) -> Joiner {
        self.0.push(procs);
        self
    }

    /// Makes `cmd`'s child join the groups between `fork` and `exec`; its spawn fails if it
    /// cannot. Install it before anything that drops the child's privileges: the groups'
    /// files are the node's.
    #[allow(unsafe_code)]
    pub fn install(&self, cmd: &mut tokio::process::Command) {
        use std::os::fd::AsRawFd;
        let fds: Vec<i32> = self.0.iter().map(AsRawFd::as_raw_fd).collect();
        // SAFETY: the hook runs in the forked child, where only async-signal-safe calls are
        // allowed: `write(2)` of a static byte to descriptors inherited from the parent (open
        // as long as the joiner, which outlives the spawn; the list was made before the
        // fork, iterating it allocates nothing), and `last_os_error` reads errno without
        // allocating.
        unsafe {
            cmd.pre_exec(move || {
                for &fd in &fds {
                    if libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                        return Err(io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
    }
}

/// What became of `--memory-cgroup`, said once the node is ready ([`Report::log`]): nothing
/// is logged while the node starts, so that one that cannot bind its port exits with one line.
#[derive(Debug)]
pub enum Report {
    Off,
    /// The host does not let the node make memory cgroups, and why.
    Unusable(String),
    On {
        version: Version,
        node_dir: PathBuf,
        swept: Swept,
        /// Each container's pids limit, or why there is none.
        pids: Result<u64, String>,
    },
}

impl Report {
    /// Logs, at info, which groups the node uses (and where) or why none; a leftover it
    /// could not remove at warn.
    pub fn log(&self) {
        const MEASURED: &str = "a container's memory is only measured, and its container \
                                service kills what it sees past the limit";
        match self {
            Report::Off => tracing::info!("memory cgroups off (--memory-cgroup off): {MEASURED}"),
            Report::Unusable(reason) => {
                tracing::info!(%reason, "memory cgroups not used (--memory-cgroup auto): {MEASURED}")
            }
            Report::On {
                version,
                node_dir,
                swept,
                pids,
            } => {
                tracing::info!(
                    cgroup = version.name(),
                    dir = %node_dir.display(),
                    "memory cgroups on: each container runs in a group of its own in dir, \
                     limited to its memory with no swap; the kernel stops it at that limit"
                );
                match pids {
                    Ok(max) => tracing::info!(
                        pids_max = max,
                        "pids cgroups on: each container runs at most pids_max processes and \
                         threads (--container-pids-max)"
                    ),
                    Err(reason) => tracing::info!(%reason, "pids cgroups not used"),
                }
                if !swept.removed.is_empty() {
                    tracing::info!(groups = ?swept.removed, "removed the cgroups of gone nodes");
                }
                for (name, e) in &swept.failed {
                    tracing::warn!(group = %name, error = %e, "cannot remove a gone node's memory cgroup");
                }
            }
        }
    }
}

/// The groups `mode` asks for, if the host lets the node make them, each container limited
/// to `pids_max` processes too where it can be (0: no pids limit), and what to say of it.
pub fn open(mode: Mode, node_id: &str, pids_max: u64) -> (Option<HostCgroups>, Report) {
    if mode == Mode::Off {
        return (None, Report::Off);
    }
    match host(node_id) {
        Ok((mut cgroups, mut swept)) => {
            let pids = match pids_max {
                0 => Err("--container-pids-max 0".to_string()),
                max => cgroups.limit_pids(max).map(|more| {
                    swept.removed.extend(more.removed);
                    swept.failed.extend(more.failed);
                    max
                }),
            };
            let report = Report::On {
                version: cgroups.version(),
                node_dir: cgroups.node_dir().to_path_buf(),
                swept,
                pids,
            };
            (Some(cgroups), report)
        }
        Err(reason) => (None, Report::Unusable(reason)),
    }
}

#[cfg(test)]
mod tests;
