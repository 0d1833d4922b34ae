//! The platform's processes as /proc shows them: this process's tree, which descendants are
//! node services and container services, the ports they listen on, and signals to them.
//!
//! Linux only (it reads /proc). The fault bench (`faas replay --faults`), the `faas-cli`
//! integration tests and `examples/fault_bench.rs` find and signal the platform's processes
//! with it.

use std::collections::HashSet;

/// The two kinds of child process the platform starts.
pub const NODE_SERVICE: &str = "node-service";
pub const CONTAINER_SERVICE: &str = "container-service";

/// A process's state letter (`R`, `S`, `T`, `Z`, ...) and parent, if it exists.
pub fn stat(pid: u32) -> Option<(char, u32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces: read after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    Some((state, fields.next()?.parse().ok()?))
}

/// The parent of a live process (`None` for a zombie: it is dead already).
pub fn parent_of(pid: u32) -> Option<u32> {
    stat(pid)
        .filter(|(state, _)| *state != 'Z')
        .map(|(_, ppid)| ppid)
}

/// Whether a process with this pid still runs (zombies count as gone).
pub fn alive(pid: u32) -> bool {
    parent_of(pid).is_some()
}

/// Whether `pid` is a zombie: dead, but not reaped by its parent.
pub fn zombie(pid: u32) -> bool {
    matches!(stat(pid), Some(('Z', _)))
}

fn all_pids() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Every live (non-zombie) descendant of this process.
pub fn descendants() -> HashSet<u32> {
    let parents: Vec<(u32, u32)> = all_pids()
        .into_iter()
        .filter_map(|p| parent_of(p).map(|pp| (p, pp)))
        .collect();
    let mut found: HashSet<u32> = HashSet::new();
    let mut frontier = vec![std::process::id()];
    while let Some(parent) = frontier.pop() {
        for &(pid, pp) in &parents {
            if pp == parent && found.insert(pid) {
                frontier.push(pid);
            }
        }
    }
    found
}

/// Zombies whose parent is this process or one of its descendants: children nobody reaped.
pub fn unreaped() -> Vec<u32> {
    let mut parents = descendants();
    parents.insert(std::process::id());
    all_pids()
        .into_iter()
        .filter(|&p| matches!(stat(p), Some(('Z', pp)) if parents.contains(&pp)))
        .collect()
}

fn args(pid: u32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| {
            String::from_utf8_lossy(&b)
                .split('\0')
                .filter(|a| !a.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// The command line of a process, arguments joined by spaces.
pub fn cmdline(pid: u32) -> String {
    args(pid).join(" ")
}

/// Which platform component a process runs (`node-service` or `container-service`), whether
/// as its own binary or as `faas <component>` / another multi-call binary.
pub fn component(pid: u32) -> Option<&'static str> {
    let args = args(pid);
    let program = args.first()?.rsplit('/').next()?;
    [NODE_SERVICE, CONTAINER_SERVICE]
        .into_iter()
        .find(|c| program == *c || args.get(1).map(String::as_str) == Some(*c))
}

/// The value after `flag` on a process's command line.
pub fn flag(pid: u32, flag: &str) -> Option<String> {
    let args = args(pid);
    let at = args.iter().position(|a| a == flag)?;
    args.get(at + 1).cloned()
}

/// A node-service process of this process tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeProc {
    pub pid: u32,
    pub node_id: String,
}

/// The live node-service processes under this process.
pub fn nodes() -> Vec<NodeProc> {
    descendants()
        .into_iter()
        .filter(|&p| component(p) == Some(NODE_SERVICE))
        .filter_map(|pid| {
            Some(NodeProc {
                pid,
                node_id: flag(pid, "--node-id")?,
            })
        })
        .collect()
}

/// The node-service process of node `node_id` under this process.
pub fn node(node_id: &str) -> Option<NodeProc> {
    nodes().into_iter().find(|n| n.node_id == node_id)
}

/// The live container-service processes under this process, each with its parent (the node
/// service that started it).
pub fn containers() -> Vec<(u32, u32)> {
    descendants()
        .into_iter()
        .filter(|&p| component(p) == Some(CONTAINER_SERVICE))
        .filter_map(|p| Some((p, parent_of(p)?)))
        .collect()
}

/// Every node-service and container-service process under this process right now.
pub fn platform_pids() -> HashSet<u32> {
    descendants()
        .into_iter()
        .filter(|&p| component(p).is_some())
        .collect()
}

/// Of `seen` and of this process's tree, the node and container processes still running,
/// with their command lines (a pid reused by another program is not counted).
pub fn left_over(seen: &HashSet<u32>) -> Vec<(u32, String)> {
    let mut pids: Vec<u32> = seen.union(&platform_pids()).copied().collect();
    pids.sort_unstable();
    pids.into_iter()
        .filter(|&p| alive(p) && component(p).is_some())
        .map(|p| (p, cmdline(p)))
        .collect()
}

/// The TCP ports a process listens on (from its socket inodes and /proc/net/tcp{,6}).
pub fn listen_ports(pid: u32) -> Vec<u16> {
    let inodes: HashSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.filter_map(|e| {
                let target = std::fs::read_link(e.ok()?.path()).ok()?;
                let target = target.to_str()?;
                Some(
                    target
                        .strip_prefix("socket:[")?
                        .strip_suffix(']')?
                        .to_string(),
                )
            })
            .collect()
        })
        .unwrap_or_default();
    let mut ports = Vec::new();
    for table in ["tcp", "tcp6"] {
        let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
            if f.len() > 9 && f[3] == "0A" && inodes.contains(f[9]) {
                let port = f[1]
                    .rsplit(':')
                    .next()
                    .and_then(|h| u16::from_str_radix(h, 16).ok());
                ports.extend(port);
            }
        }
    }
    ports
}

/// Sends `sig` to `pid`; false if it could not be delivered.
#[allow(unsafe_code)]
pub fn signal(pid: u32, sig: i32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: kill(2) takes plain integers and touches no memory of ours.
    unsafe { libc::kill(pid, sig) == 0 }
}

/// SIGKILLs a process (`kill -9`).
pub fn kill9(pid: u32) -> bool {
    signal(pid, libc::SIGKILL)
}

/// A process stopped with SIGSTOP until this guard is resumed or dropped (SIGCONT), so a
/// failing test or an early return never leaves it stopped.
#[derive(Debug)]
pub struct Paused {
    pid: u32,
    resumed: bool,
}

impl Paused {
    /// Stops `pid`; panics if it cannot (a test's helper).
    pub fn stop(pid: u32) -> Paused {
        Paused::try_stop(pid).unwrap_or_else(|| panic!("cannot SIGSTOP {pid}"))
    }

    /// Stops `pid`, or `None` if the signal could not be delivered.
    pub fn try_stop(pid: u32) -> Option<Paused> {
        signal(pid, libc::SIGSTOP).then_some(Paused {
            pid,
            resumed: false,
        })
    }

    /// The stopped process.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Continues it (SIGCONT).
    pub fn resume(mut self) {
        self.cont();
    }

    fn cont(&mut self) {
        if !self.resumed {
            self.resumed = true;
            signal(self.pid, libc::SIGCONT);
        }
    }
}

impl Drop for Paused {
    fn drop(&mut self) {
        self.cont();
    }
}
