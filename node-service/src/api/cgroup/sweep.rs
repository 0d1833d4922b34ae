//! Node groups by name (`faas-<node id>.<pid>.<n>`), telling leftovers of gone nodes from
//! live ones, sweeping them with what they hold, the kernel's OOM kill counters, and writing
//! limits.

use super::*;

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
pub(super) fn owner_pid(name: &str) -> Option<u32> {
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
pub(super) fn kill_members(dir: &Path) {
    let procs = fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
    for pid in procs.lines().filter_map(|l| l.trim().parse::<u32>().ok()) {
        let _ = send_signal(pid, Signal::Kill);
    }
}

/// Removes the group at `dir` (gone already is fine), killing what still runs in it and
/// retrying while the kernel lets its processes go, for at most [`DRAIN`].
pub(super) fn remove_group(dir: &Path) -> io::Result<()> {
    let deadline = faas_common::clock::instant() + DRAIN;
    loop {
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) if faas_common::clock::instant() >= deadline => return Err(e),
            Err(_) => {
                kill_members(dir);
                std::thread::sleep(DRAIN_STEP);
            }
        }
    }
}

/// Removes the group at `dir` and its child groups.
pub(super) fn remove_tree(dir: &Path) -> io::Result<()> {
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

/// Removes the node groups under `dir` whose node process is gone (see `leftover`).
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
pub(super) fn read_u64(path: &Path) -> io::Result<u64> {
    fs::read_to_string(path)?
        .trim()
        .parse()
        .map_err(|e| io::Error::new(ErrorKind::InvalidData, format!("{}: {e}", path.display())))
}

/// The value of `key` in a flat-keyed cgroup file (`key value` lines).
pub(super) fn field(text: &str, key: &str) -> Option<u64> {
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
pub(super) fn write_limit(version: Version, dir: &Path, limit: u64) -> io::Result<()> {
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
