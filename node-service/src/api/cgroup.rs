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
use std::time::{Duration, Instant};

use faas_common::launch::{Signal, send_signal};

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

/// The lines of `/proc/self/cgroup` that place this process: its v1 memory cgroup and its
/// unified (v2) one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OwnCgroups {
    pub v1_memory: Option<String>,
    pub unified: Option<String>,
}

/// Parses `/proc/self/cgroup` (`ID:CONTROLLERS:PATH` lines; `0::PATH` is v2).
pub fn parse_proc_cgroup(text: &str) -> OwnCgroups {
    let mut own = OwnCgroups::default();
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if id == "0" && controllers.is_empty() {
            own.unified = Some(path.to_string());
        } else if controllers.split(',').any(|c| c == "memory") {
            own.v1_memory = Some(path.to_string());
        }
    }
    own
}

/// The path of this process's group in the v1 hierarchy of `controller`, from a
/// `/proc/self/cgroup`.
fn v1_path<'a>(text: &'a str, controller: &str) -> Option<&'a str> {
    text.lines().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let (_, controllers) = (parts.next()?, parts.next()?);
        controllers
            .split(',')
            .any(|c| c == controller)
            .then(|| parts.next())?
    })
}

/// One cgroup filesystem of `/proc/self/mountinfo`.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Mount {
    /// The cgroup the mount shows at its mount point.
    root: String,
    point: PathBuf,
    /// `cgroup` (v1) or `cgroup2`.
    fstype: String,
    /// The superblock options (a v1 hierarchy's controllers).
    options: String,
}

/// Undoes mountinfo's octal escapes (`\040` is a space).
fn unescape(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    let mut rest = field;
    while let Some(i) = rest.find('\\') {
        out.push_str(&rest[..i]);
        let code = rest
            .get(i + 1..i + 4)
            .and_then(|o| u8::from_str_radix(o, 8).ok());
        match code {
            Some(byte) => {
                out.push(char::from(byte));
                rest = &rest[i + 4..];
            }
            None => {
                out.push('\\');
                rest = &rest[i + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// The cgroup filesystems of a `/proc/self/mountinfo`.
fn parse_mountinfo(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            let (before, after) = line.split_once(" - ")?;
            let before: Vec<&str> = before.split(' ').collect();
            let mut after = after.split(' ');
            let fstype = after.next()?;
            let options = after.nth(1).unwrap_or_default();
            if fstype != "cgroup" && fstype != "cgroup2" {
                return None;
            }
            Some(Mount {
                root: unescape(before.get(3)?),
                point: PathBuf::from(unescape(before.get(4)?)),
                fstype: fstype.to_string(),
                options: options.to_string(),
            })
        })
        .collect()
}

/// Where the cgroup `path` is on disk under `mount`, if the mount shows it.
fn on_disk(mount: &Mount, path: &str) -> Option<PathBuf> {
    let root = mount.root.trim_end_matches('/');
    let rest = path.strip_prefix(root)?;
    if !(rest.is_empty() || rest.starts_with('/')) {
        return None;
    }
    Some(mount.point.join(rest.trim_start_matches('/')))
}

/// This process's memory cgroup, on disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hierarchy {
    pub version: Version,
    /// The directory of the node's own memory cgroup.
    pub own_dir: PathBuf,
}

impl Hierarchy {
    /// Finds this process's memory cgroup from `/proc/self/cgroup` and
    /// `/proc/self/mountinfo`; the error says why there is none.
    pub fn locate(proc_cgroup: &str, mountinfo: &str) -> Result<Hierarchy, String> {
        let own = parse_proc_cgroup(proc_cgroup);
        let mounts = parse_mountinfo(mountinfo);
        let find = |fstype: &str, path: &str, v1: bool| {
            mounts
                .iter()
                .filter(|m| m.fstype == fstype)
                .filter(|m| !v1 || m.options.split(',').any(|o| o == "memory"))
                .find_map(|m| on_disk(m, path))
        };
        if let Some(path) = &own.v1_memory {
            return find("cgroup", path, true)
                .map(|own_dir| Hierarchy {
                    version: Version::V1,
                    own_dir,
                })
                .ok_or_else(|| {
                    format!("the cgroup v1 memory controller ({path}) is not mounted here")
                });
        }
        if let Some(path) = &own.unified {
            return find("cgroup2", path, false)
                .map(|own_dir| Hierarchy {
                    version: Version::V2,
                    own_dir,
                })
                .ok_or_else(|| format!("the cgroup v2 hierarchy ({path}) is not mounted here"));
        }
        Err("/proc/self/cgroup names no memory cgroup (neither v1 nor v2)".into())
    }

    /// [`Hierarchy::locate`] for this process.
    pub fn detect() -> Result<Hierarchy, String> {
        let read = |path: &str| fs::read_to_string(path).map_err(|e| format!("{path}: {e}"));
        Hierarchy::locate(&read("/proc/self/cgroup")?, &read("/proc/self/mountinfo")?)
    }

    /// The directory the node's groups go in: its own cgroup on v1. On v2 a group with
    /// processes (the node's own) cannot have controlled children unless it is the root, so
    /// they go in its own cgroup only where it can (the root), else beside it, in its parent,
    /// which gives the node's cgroup the memory controller and so has no processes (the node
    /// then needs write access there; its own cgroup's limit, if any, no longer covers them).
    pub fn groups_dir(&self) -> Result<PathBuf, String> {
        if self.version == Version::V1 {
            return Ok(self.own_dir.clone());
        }
        let own = self.own_dir.display();
        if !has_memory(&self.own_dir, "cgroup.controllers")? {
            return Err(format!(
                "the memory controller is not enabled for the cgroup v2 group {own}"
            ));
        }
        if has_memory(&self.own_dir, "cgroup.subtree_control").unwrap_or(false)
            || fs::write(self.own_dir.join("cgroup.subtree_control"), "+memory").is_ok()
        {
            return Ok(self.own_dir.clone());
        }
        match self.own_dir.parent() {
            Some(parent) if has_memory(parent, "cgroup.subtree_control").unwrap_or(false) => {
                Ok(parent.to_path_buf())
            }
            _ => Err(format!(
                "the cgroup v2 group {own} holds processes, so it can have no memory-controlled \
                 groups below it, and its parent is out of reach: run the node in a cgroup \
                 delegated to it (e.g. systemd-run --scope -p Delegate=yes) or move the other \
                 processes out"
            )),
        }
    }
}

/// Where this process's group of the v1 `pids` hierarchy is on disk, from a
/// `/proc/self/cgroup` and a `/proc/self/mountinfo`.
pub fn locate_v1_pids(proc_cgroup: &str, mountinfo: &str) -> Result<PathBuf, String> {
    let path =
        v1_path(proc_cgroup, "pids").ok_or("/proc/self/cgroup names no cgroup v1 pids group")?;
    parse_mountinfo(mountinfo)
        .iter()
        .filter(|m| m.fstype == "cgroup" && m.options.split(',').any(|o| o == "pids"))
        .find_map(|m| on_disk(m, path))
        .ok_or_else(|| format!("the cgroup v1 pids controller ({path}) is not mounted here"))
}

/// Whether the controller list `file` of the v2 group at `dir` holds `memory`.
fn has_memory(dir: &Path, file: &str) -> Result<bool, String> {
    fs::read_to_string(dir.join(file))
        .map(|t| t.split_whitespace().any(|c| c == "memory"))
        .map_err(|e| format!("cannot read {}: {e}", dir.join(file).display()))
}

/// The name of a node's group: `faas-<node id>.<pid>.<n>`, the id kept to 64 characters of
/// `A-Z a-z 0-9 _ -` (others become `_`).
pub fn node_group_name(node_id: &str, pid: u32, n: u32) -> String {
    let mut id: String = node_id
        .chars()
        .take(64)
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if id.is_empty() {
        id.push_str("node");
    }
    format!("{PREFIX}{id}.{pid}.{n}")
}

/// The pid of the node that made the group `name`, if it is a node's group.
fn owner_pid(name: &str) -> Option<u32> {
    let mut parts = name.rsplitn(3, '.');
    let (n, pid, id) = (parts.next()?, parts.next()?, parts.next()?);
    n.parse::<u32>().ok()?;
    id.strip_prefix(PREFIX).filter(|id| !id.is_empty())?;
    pid.parse().ok()
}

/// Whether the group `name` is a leftover of a node process that is gone (`alive` says
/// whether a pid runs). Groups of this process (`own_pid`) are never leftovers: another
/// node served in this process may be using them.
pub(crate) fn leftover(name: &str, own_pid: u32, alive: impl Fn(u32) -> bool) -> bool {
    owner_pid(name).is_some_and(|pid| pid != own_pid && !alive(pid))
}

/// Whether process `pid` runs (a zombie, dead but not yet reaped by its parent, does not).
pub(crate) fn pid_alive(pid: u32) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let state = stat
        .rfind(')')
        .and_then(|i| stat[i + 1..].trim_start().chars().next());
    !matches!(state, Some('Z' | 'X'))
}

/// Kills every process of the group at `dir`.
fn kill_members(dir: &Path) {
    let procs = fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
    for pid in procs.lines().filter_map(|l| l.trim().parse::<u32>().ok()) {
        let _ = send_signal(pid, Signal::Kill);
    }
}

/// Removes the group at `dir` (gone already is fine), killing what still runs in it and
/// retrying while the kernel lets its processes go, for at most [`DRAIN`].
fn remove_group(dir: &Path) -> io::Result<()> {
    let deadline = Instant::now() + DRAIN;
    loop {
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(_) => {
                kill_members(dir);
                std::thread::sleep(DRAIN_STEP);
            }
        }
    }
}

/// Removes the group at `dir` and its child groups.
fn remove_tree(dir: &Path) -> io::Result<()> {
    for entry in fs::read_dir(dir)?.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            remove_group(&entry.path())?;
        }
    }
    remove_group(dir)
}

/// What [`sweep`] did.
#[derive(Debug, Default)]
pub struct Swept {
    pub removed: Vec<String>,
    pub failed: Vec<(String, io::Error)>,
}

/// Removes the node groups under `dir` whose node process is gone (see [`leftover`]).
pub fn sweep(dir: &Path, own_pid: u32, alive: impl Fn(u32) -> bool) -> Swept {
    let mut swept = Swept::default();
    let Ok(entries) = fs::read_dir(dir) else {
        return swept;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !leftover(&name, own_pid, &alive) {
            continue;
        }
        match remove_tree(&entry.path()) {
            Ok(()) => swept.removed.push(name),
            Err(e) => swept.failed.push((name, e)),
        }
    }
    swept
}

/// Reads a file holding one number.
fn read_u64(path: &Path) -> io::Result<u64> {
    fs::read_to_string(path)?
        .trim()
        .parse()
        .map_err(|e| io::Error::new(ErrorKind::InvalidData, format!("{}: {e}", path.display())))
}

/// The value of `key` in a flat-keyed cgroup file (`key value` lines).
fn field(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(' ')?.trim().parse().ok())
}

/// The OOM kills of a v1 group: `oom_kill` of `memory.oom_control` (kernel 4.13+), else
/// whether the limit was ever hit (`memory.failcnt`), the best older kernels tell.
pub fn oom_kills_v1(oom_control: &str, failcnt: u64) -> u64 {
    field(oom_control, "oom_kill").unwrap_or(u64::from(failcnt > 0))
}

/// The OOM kills of a v2 group (`oom_kill` of `memory.events`).
pub fn oom_kills_v2(events: &str) -> u64 {
    field(events, "oom_kill").unwrap_or(0)
}

/// Writes the limit of the group at `dir`. On v1, memory+swap may never be below memory,
/// so the one that grows is written first.
fn write_limit(version: Version, dir: &Path, limit: u64) -> io::Result<()> {
    let value = limit.to_string();
    let memory = dir.join(version.limit_file());
    match version {
        Version::V2 => {
            fs::write(&memory, &value)?;
            let swap = dir.join("memory.swap.max");
            if swap.exists() {
                fs::write(swap, "0")?;
            }
            Ok(())
        }
        Version::V1 => {
            let memsw = dir.join("memory.memsw.limit_in_bytes");
            if !memsw.exists() {
                return fs::write(&memory, &value);
            }
            let order = if limit > read_u64(&memory).unwrap_or(u64::MAX) {
                [&memsw, &memory]
            } else {
                [&memory, &memsw]
            };
            order.iter().try_for_each(|file| fs::write(file, &value))
        }
    }
}

/// Counts the node groups this process opened (see [`node_group_name`]).
static OPENED: AtomicU32 = AtomicU32::new(0);

/// The real groups of one node, under its own group `faas-<node id>.<pid>.<n>`. Dropping it
/// closes it ([`MemoryCgroups::close`]).
#[derive(Debug)]
pub struct HostCgroups {
    version: Version,
    node_dir: PathBuf,
    groups: Mutex<HashSet<String>>,
    /// Where containers get their pids limit, if anywhere ([`HostCgroups::limit_pids`]).
    pids: Option<Pids>,
}

/// Where a node's containers get their pids limit.
#[derive(Debug)]
enum Pids {
    /// cgroup v1: groups named as the memory ones, below the node's group of the same name
    /// in the `pids` hierarchy.
    Beside { node_dir: PathBuf, max: u64 },
    /// cgroup v2: the memory groups themselves (`pids` enabled beside `memory`).
    Within { max: u64 },
}

impl HostCgroups {
    /// Removes the leftovers of gone nodes under `hierarchy` (what it removed is returned
    /// beside) and makes this node's group.
    pub fn open(hierarchy: &Hierarchy, node_id: &str) -> Result<(HostCgroups, Swept), String> {
        let own = &hierarchy.groups_dir()?;
        let pid = std::process::id();
        let swept = sweep(own, pid, pid_alive);
        let name = node_group_name(node_id, pid, OPENED.fetch_add(1, Ordering::Relaxed));
        let node_dir = own.join(name);
        fs::create_dir(&node_dir)
            .map_err(|e| format!("cannot create {}: {e}", node_dir.display()))?;
        let cgroups = HostCgroups {
            version: hierarchy.version,
            node_dir,
            groups: Mutex::new(HashSet::new()),
            pids: None,
        };
        // Dropped on an error: its group is removed again.
        let node_dir = cgroups.node_dir.display();
        match cgroups.version {
            Version::V2 => fs::write(cgroups.node_dir.join("cgroup.subtree_control"), "+memory")
                .map_err(|e| format!("cannot enable memory in {node_dir}: {e}"))?,
            Version::V1 if !cgroups.node_dir.join(Version::V1.limit_file()).exists() => {
                return Err(format!("{node_dir} has no {}", Version::V1.limit_file()));
            }
            Version::V1 => {}
        }
        Ok((cgroups, swept))
    }

    /// Also limits each container to `max` processes and threads (a fork bomb stops there,
    /// not at the host's limit) with a pids cgroup, where the host lets the node make one: in
    /// the v1 `pids` hierarchy (groups named as the memory ones, below a node group of the
    /// same name, whose leftovers are swept as the memory ones are; what it removed is
    /// returned), or on v2 in the memory groups themselves. The error says why not; the
    /// memory groups work all the same.
    pub fn limit_pids(&mut self, max: u64) -> Result<Swept, String> {
        let node_dir = &self.node_dir;
        if self.version == Version::V2 {
            fs::write(node_dir.join("cgroup.subtree_control"), "+pids")
                .map_err(|e| format!("cannot enable pids in {}: {e}", node_dir.display()))?;
            self.pids = Some(Pids::Within { max });
            return Ok(Swept::default());
        }
        let read = |path: &str| fs::read_to_string(path).map_err(|e| format!("{path}: {e}"));
        let own = locate_v1_pids(&read("/proc/self/cgroup")?, &read("/proc/self/mountinfo")?)?;
        let swept = sweep(&own, std::process::id(), pid_alive);
        let name = node_dir.file_name().expect("a node's group has a name");
        let pids_dir = own.join(name);
        fs::create_dir(&pids_dir)
            .map_err(|e| format!("cannot create {}: {e}", pids_dir.display()))?;
        self.pids = Some(Pids::Beside {
            node_dir: pids_dir,
            max,
        });
        Ok(swept)
    }

    /// The pids group of container `id`, where it is not its memory group.
    fn pids_group(&self, id: &str) -> Option<PathBuf> {
        match &self.pids {
            Some(Pids::Beside { node_dir, .. }) => Some(node_dir.join(id)),
            _ => None,
        }
    }

    /// Sets up the new groups of container `id` (its memory group at `dir`) and opens them
    /// for a child to join.
    fn open_groups(&self, id: &str, dir: &Path, limit_bytes: u64) -> io::Result<Joiner> {
        let procs = |dir: &Path| File::options().write(true).open(dir.join("cgroup.procs"));
        write_limit(self.version, dir, limit_bytes)?;
        let joiner = Joiner::new(procs(dir)?);
        match &self.pids {
            None => Ok(joiner),
            Some(Pids::Within { max }) => {
                fs::write(dir.join("pids.max"), max.to_string())?;
                Ok(joiner)
            }
            Some(Pids::Beside { node_dir, max }) => {
                let pids = node_dir.join(id);
                fs::create_dir(&pids)?;
                fs::write(pids.join("pids.max"), max.to_string())?;
                Ok(joiner.and(procs(&pids)?))
            }
        }
    }

    /// The interface in use.
    pub fn version(&self) -> Version {
        self.version
    }

    /// The node's own group.
    pub fn node_dir(&self) -> &Path {
        &self.node_dir
    }

    /// The group of container `id`.
    pub fn group_dir(&self, id: &str) -> PathBuf {
        self.node_dir.join(id)
    }

    fn groups(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.groups.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Whether `id` names a group directly below the node's (no separator, no `..`).
fn plain_name(id: &str) -> bool {
    !id.is_empty() && id != "." && id != ".." && !id.contains('/')
}

impl MemoryCgroups for HostCgroups {
    fn create(&self, id: &str, limit_bytes: u64) -> io::Result<Joiner> {
        if !plain_name(id) {
            return Err(io::Error::new(ErrorKind::InvalidInput, "bad container id"));
        }
        let dir = self.group_dir(id);
        fs::create_dir(&dir)?;
        match self.open_groups(id, &dir, limit_bytes) {
            Ok(joiner) => {
                self.groups().insert(id.to_string());
                Ok(joiner)
            }
            Err(e) => {
                let _ = fs::remove_dir(&dir);
                if let Some(pids) = self.pids_group(id) {
                    let _ = fs::remove_dir(pids);
                }
                Err(e)
            }
        }
    }

    fn set_limit(&self, id: &str, limit_bytes: u64) -> io::Result<()> {
        write_limit(self.version, &self.group_dir(id), limit_bytes)
    }

    fn usage(&self, id: &str) -> io::Result<GroupUsage> {
        let dir = self.group_dir(id);
        Ok(match self.version {
            Version::V1 => GroupUsage {
                peak_bytes: read_u64(&dir.join("memory.max_usage_in_bytes")).ok(),
                oom_kills: oom_kills_v1(
                    &fs::read_to_string(dir.join("memory.oom_control"))?,
                    read_u64(&dir.join("memory.failcnt")).unwrap_or(0),
                ),
            },
            Version::V2 => GroupUsage {
                peak_bytes: read_u64(&dir.join("memory.peak")).ok(),
                oom_kills: oom_kills_v2(&fs::read_to_string(dir.join("memory.events"))?),
            },
        })
    }

    fn remove(&self, id: &str) -> io::Result<()> {
        if !plain_name(id) {
            return Ok(());
        }
        remove_group(&self.group_dir(id))?;
        if let Some(pids) = self.pids_group(id) {
            remove_group(&pids)?;
        }
        self.groups().remove(id);
        Ok(())
    }

    fn close(&self) {
        let left: Vec<String> = self.groups().drain().collect();
        for id in left {
            let dirs = std::iter::once(self.group_dir(&id)).chain(self.pids_group(&id));
            for dir in dirs {
                if let Err(e) = remove_group(&dir) {
                    tracing::warn!(dir = %dir.display(), error = %e, "cannot remove a container's cgroup");
                }
            }
        }
        let pids_dir = match &self.pids {
            Some(Pids::Beside { node_dir, .. }) => Some(node_dir.clone()),
            _ => None,
        };
        for dir in std::iter::once(self.node_dir.clone()).chain(pids_dir) {
            if let Err(e) = remove_group(&dir) {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot remove the node's cgroup");
            }
        }
    }
}

impl Drop for HostCgroups {
    fn drop(&mut self) {
        self.close();
    }
}

/// The node's groups on this host (and the leftovers it removed), or why there are none.
pub fn host(node_id: &str) -> Result<(HostCgroups, Swept), String> {
    HostCgroups::open(&Hierarchy::detect()?, node_id)
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
mod tests {
    use super::*;

    /// This machine's kind: v1 controllers, a nested memory cgroup, an empty unified one.
    const PROC_V1: &str = "9:name=systemd:/\n4:memory:/process_api/c9bd\n1:cpu:/\n0::/\n";
    const MOUNTS: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    #[test]
    fn proc_self_cgroup_names_the_v1_memory_and_the_unified_groups() {
        assert_eq!(
            parse_proc_cgroup(PROC_V1),
            OwnCgroups {
                v1_memory: Some("/process_api/c9bd".into()),
                unified: Some("/".into()),
            }
        );
        let comounted = parse_proc_cgroup("5:cpu,memory:/a:b\n");
        assert_eq!(comounted.v1_memory.as_deref(), Some("/a:b"));
        assert_eq!(parse_proc_cgroup("0::/user.slice/x\n").v1_memory, None);
    }

    #[test]
    fn the_v1_pids_group_is_found_under_its_mount() {
        let mounts = format!(
            "{MOUNTS}36 31 0:33 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids\n"
        );
        let proc = "8:pids:/a\n4:memory:/b\n";
        assert_eq!(
            locate_v1_pids(proc, &mounts).unwrap(),
            Path::new("/sys/fs/cgroup/pids/a")
        );
        let e = locate_v1_pids(proc, MOUNTS).unwrap_err();
        assert!(e.contains("pids controller (/a) is not mounted"), "{e}");
        let e = locate_v1_pids(PROC_V1, &mounts).unwrap_err();
        assert!(e.contains("no cgroup v1 pids group"), "{e}");
    }

    #[test]
    fn v1_memory_wins_and_is_found_under_its_mount() {
        let h = Hierarchy::locate(PROC_V1, MOUNTS).unwrap();
        assert_eq!(h.version, Version::V1);
        assert_eq!(
            h.own_dir,
            Path::new("/sys/fs/cgroup/memory/process_api/c9bd")
        );
    }

    #[test]
    fn a_mount_of_a_subtree_strips_its_root() {
        let mounts = "35 31 0:32 /docker/abc /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n";
        let h = Hierarchy::locate("4:memory:/docker/abc/inner\n", mounts).unwrap();
        assert_eq!(h.own_dir, Path::new("/sys/fs/cgroup/memory/inner"));
        let h = Hierarchy::locate("4:memory:/docker/abc\n", mounts).unwrap();
        assert_eq!(h.own_dir, Path::new("/sys/fs/cgroup/memory"));
        // A sibling whose name merely starts like the root is not below it.
        let e = Hierarchy::locate("4:memory:/docker/abcd\n", mounts).unwrap_err();
        assert!(e.contains("not mounted"), "{e}");
    }

    #[test]
    fn pure_v2_is_found_on_its_mount_with_escapes_undone() {
        let mounts = "29 23 0:26 / /sys/fs/my\\040cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n";
        let h = Hierarchy::locate("0::/system.slice/node.service\n", mounts).unwrap();
        assert_eq!(h.version, Version::V2);
        assert_eq!(
            h.own_dir,
            Path::new("/sys/fs/my cgroup/system.slice/node.service")
        );
    }

    #[test]
    fn no_memory_cgroup_is_said_plainly() {
        let e = Hierarchy::locate("1:cpu:/\n", MOUNTS).unwrap_err();
        assert!(e.contains("no memory cgroup"), "{e}");
        let e = Hierarchy::locate("4:memory:/x\n", "").unwrap_err();
        assert!(
            e.contains("v1 memory controller (/x) is not mounted"),
            "{e}"
        );
    }

    #[test]
    fn v2_groups_go_below_the_nodes_cgroup_where_they_can_else_beside_it() {
        let root = std::env::temp_dir().join(format!("faas-v2-{}", uuid::Uuid::new_v4()));
        let own = root.join("node.scope");
        fs::create_dir_all(&own).unwrap();
        fs::write(root.join("cgroup.subtree_control"), "cpu memory").unwrap();
        let h = Hierarchy {
            version: Version::V2,
            own_dir: own.clone(),
        };
        fs::write(own.join("cgroup.controllers"), "cpu io").unwrap();
        let e = h.groups_dir().unwrap_err();
        assert!(e.contains("memory controller is not enabled"), "{e}");
        fs::write(own.join("cgroup.controllers"), "cpu memory").unwrap();
        fs::write(own.join("cgroup.subtree_control"), "memory").unwrap();
        assert_eq!(h.groups_dir().unwrap(), own, "a group that can hold them");
        // Enabling fails (here: not a file; on a host: EBUSY, the node is in it).
        fs::remove_file(own.join("cgroup.subtree_control")).unwrap();
        fs::create_dir(own.join("cgroup.subtree_control")).unwrap();
        assert_eq!(h.groups_dir().unwrap(), root, "beside the node's group");
        fs::write(root.join("cgroup.subtree_control"), "cpu").unwrap();
        let e = h.groups_dir().unwrap_err();
        assert!(e.contains("holds processes"), "{e}");
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn node_groups_carry_a_clean_id_and_the_pid_that_owns_them() {
        assert_eq!(node_group_name("node-1", 42, 0), "faas-node-1.42.0");
        assert_eq!(node_group_name("a/b.c d", 7, 3), "faas-a_b_c_d.7.3");
        assert_eq!(node_group_name("", 7, 0), "faas-node.7.0");
        assert_eq!(node_group_name(&"x".repeat(300), 1, 0).len(), 5 + 64 + 4);
        assert_eq!(owner_pid("faas-node-1.42.0"), Some(42));
        assert_eq!(owner_pid(&node_group_name("a.b", 9, 1)), Some(9));
        for other in [
            "faas-.1.2",
            "faas-x.y.2",
            "other.1.2",
            "faas-x.1",
            "faas-x.1.z",
        ] {
            assert_eq!(owner_pid(other), None, "{other}");
        }
    }

    #[test]
    fn only_groups_of_gone_processes_other_than_this_one_are_leftovers() {
        let alive = |pid: u32| pid == 100;
        assert!(leftover("faas-n.200.0", 1, alive));
        assert!(!leftover("faas-n.100.0", 1, alive));
        assert!(!leftover("faas-n.1.0", 1, alive), "this process's own");
        assert!(!leftover("memory.limit_in_bytes", 1, alive));
    }

    #[test]
    fn the_sweep_removes_the_groups_of_gone_nodes_with_their_containers() {
        let dir = std::env::temp_dir().join(format!("faas-sweep-{}", uuid::Uuid::new_v4()));
        for group in [
            "faas-n.200.0/c1",
            "faas-n.200.0/c2",
            "faas-n.100.0/c3",
            "keep",
        ] {
            fs::create_dir_all(dir.join(group)).unwrap();
        }
        let swept = sweep(&dir, 1, |pid| pid == 100);
        assert_eq!(swept.removed, ["faas-n.200.0"]);
        assert!(swept.failed.is_empty());
        assert!(!dir.join("faas-n.200.0").exists());
        assert!(dir.join("faas-n.100.0/c3").exists() && dir.join("keep").exists());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn oom_kills_come_from_the_kernels_counters() {
        let v1 = "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n";
        assert_eq!(oom_kills_v1(v1, 9), 2);
        assert_eq!(oom_kills_v1("oom_kill_disable 0\nunder_oom 0\n", 3), 1);
        assert_eq!(oom_kills_v1("oom_kill_disable 0\n", 0), 0);
        let v2 = "low 0\nhigh 0\nmax 5\noom 1\noom_kill 1\noom_group_kill 0\n";
        assert_eq!(oom_kills_v2(v2), 1);
        assert_eq!(oom_kills_v2("low 0\n"), 0);
    }

    #[test]
    fn v1_limits_set_memory_and_swap_alike() {
        let dir = std::env::temp_dir().join(format!("faas-limit-{}", uuid::Uuid::new_v4()));
        fs::create_dir_all(&dir).unwrap();
        write_limit(Version::V1, &dir, 64 << 20).unwrap();
        assert_eq!(
            read_u64(&dir.join("memory.limit_in_bytes")).unwrap(),
            64 << 20
        );
        assert!(
            !dir.join("memory.memsw.limit_in_bytes").exists(),
            "no swap file, none made"
        );
        fs::write(dir.join("memory.memsw.limit_in_bytes"), "1").unwrap();
        write_limit(Version::V1, &dir, 128 << 20).unwrap();
        for file in ["memory.limit_in_bytes", "memory.memsw.limit_in_bytes"] {
            assert_eq!(read_u64(&dir.join(file)).unwrap(), 128 << 20, "{file}");
        }
        fs::remove_dir_all(&dir).unwrap();
    }
}
