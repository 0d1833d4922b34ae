//! Where the memory cgroups are: this process's groups from `/proc/self/cgroup`, found on
//! disk through `/proc/self/mountinfo` (v1 memory first, else v2), and where a node's groups
//! may go.

use super::*;

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
pub(super) fn v1_path<'a>(text: &'a str, controller: &str) -> Option<&'a str> {
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
pub(super) struct Mount {
    /// The cgroup the mount shows at its mount point.
    root: String,
    point: PathBuf,
    /// `cgroup` (v1) or `cgroup2`.
    fstype: String,
    /// The superblock options (a v1 hierarchy's controllers).
    options: String,
}

/// Undoes mountinfo's octal escapes (`\040` is a space).
pub(super) fn unescape(field: &str) -> String {
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
pub(super) fn parse_mountinfo(text: &str) -> Vec<Mount> {
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
pub(super) fn on_disk(mount: &Mount, path: &str) -> Option<PathBuf> {
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
pub(super) fn has_memory(dir: &Path, file: &str) -> Result<bool, String> {
    fs::read_to_string(dir.join(file))
        .map(|t| t.split_whitespace().any(|c| c == "memory"))
        .map_err(|e| format!("cannot read {}: {e}", dir.join(file).display()))
}
