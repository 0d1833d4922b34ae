//! The real groups of one node ([`HostCgroups`]): opened after a sweep, a group per
//! container with its memory (and pids) limit, usage read back, removed once drained.

use super::*;

/// Counts the node groups this process opened (see [`node_group_name`]).
pub(super) static OPENED: AtomicU32 = AtomicU32::new(0);

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
pub(super) enum Pids {
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
pub(super) fn plain_name(id: &str) -> bool {
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
