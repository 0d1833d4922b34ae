//! The process table, as the `local` provider needs it for nodes it did not start itself
//! (nodes of an earlier run, taken back after a restart): such a node service is not
//! necessarily this process's child, so it cannot be waited for; it is found, watched and
//! signalled by pid through [`ProcessTable`]. A pid alone may be reused by an unrelated
//! process once the node's exits, so a process is always named by its pid *and* its start
//! time ([`ProcessRef`]), and only a process that matches both is ever signalled.
//!
//! [`SystemProcesses`] reads `/proc/<pid>/stat` and signals with kill(2); the fake for tests
//! is in `processes_fake.rs`. The `/proc/<pid>/stat` parsing the provider also uses for its
//! own children's exits lives here too ([`zombie_exit`]).

use std::fmt::Debug;

use faas_common::launch::Signal;

/// One process: its pid and its start time (clock ticks since boot).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ProcessRef {
    pub pid: u32,
    pub start: u64,
}

/// Finds and signals processes by pid.
pub trait ProcessTable: Send + Sync + Debug + 'static {
    /// When process `pid` started, while it runs (a zombie no longer runs); `None` once gone.
    fn start_time(&self, pid: u32) -> Option<u64>;

    /// Sends `signal` to process `pid`.
    fn signal(&self, pid: u32, signal: Signal) -> std::io::Result<()>;

    /// Whether `process` still runs (the same pid *and* start time).
    fn is_running(&self, process: ProcessRef) -> bool {
        self.start_time(process.pid) == Some(process.start)
    }

    /// Sends `signal` to `process` if it still runs; returns whether it did.
    fn signal_if_running(&self, process: ProcessRef, signal: Signal) -> bool {
        self.is_running(process) && self.signal(process.pid, signal).is_ok()
    }
}

/// The fields of a `/proc/<pid>/stat` line from field 3 (the state) on. The command name
/// (field 2) may hold spaces and parentheses, so the split is at the last `") "`.
fn stat_fields(stat: &str) -> Option<Vec<&str>> {
    let (_, rest) = stat.rsplit_once(") ")?;
    Some(rest.split_whitespace().collect())
}

/// Field `n` (1-based, as in proc(5)) of a stat line's fields from [`stat_fields`].
fn field<'a>(fields: &[&'a str], n: usize) -> Option<&'a str> {
    fields.get(n.checked_sub(3)?).copied()
}

/// The start time (field 22) of a process from its stat line, unless it is a zombie or dead.
fn running_start(stat: &str) -> Option<u64> {
    let fields = stat_fields(stat)?;
    if matches!(field(&fields, 3)?, "Z" | "X" | "x") {
        return None;
    }
    field(&fields, 22)?.parse().ok()
}

/// How a process ended, from the `/proc/<pid>/stat` line of its zombie (field 52, the wait
/// status; Linux 3.5+). `None` if the line is not a zombie's or has no such field.
pub fn zombie_exit(stat: &str) -> Option<String> {
    let fields = stat_fields(stat)?;
    if field(&fields, 3)? != "Z" {
        return None;
    }
    let status: i32 = field(&fields, 52)?.parse().ok()?;
    let signal = status & 0x7f;
    Some(if signal == 0 {
        format!("exited with code {}", (status >> 8) & 0xff)
    } else {
        format!("was killed by signal {signal}")
    })
}

/// This machine's processes, through `/proc` and kill(2).
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemProcesses;

impl ProcessTable for SystemProcesses {
    fn start_time(&self, pid: u32) -> Option<u64> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        running_start(&stat)
    }

    fn signal(&self, pid: u32, signal: Signal) -> std::io::Result<()> {
        faas_common::launch::send_signal(pid, signal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stat line in state `state` with `start` as field 22 and `status` as field 52
    /// (the other fields are zeros).
    fn stat_line(state: &str, start: u64, status: i32) -> String {
        let mut fields = vec!["0".to_string(); 50];
        fields[0] = state.to_string();
        fields[22 - 3] = start.to_string();
        fields[52 - 3] = status.to_string();
        format!("42 (node (x) svc) {}", fields.join(" "))
    }

    #[test]
    fn zombie_exit_reads_the_wait_status() {
        assert_eq!(
            zombie_exit(&stat_line("Z", 5, 9)).as_deref(),
            Some("was killed by signal 9")
        );
        assert_eq!(
            zombie_exit(&stat_line("Z", 5, 3 << 8)).as_deref(),
            Some("exited with code 3")
        );
        assert_eq!(zombie_exit(&stat_line("S", 5, 0)), None, "not a zombie");
        assert_eq!(zombie_exit("42 (short) Z 1 2"), None, "no field 52");
        assert_eq!(zombie_exit("garbage"), None);
    }

    #[test]
    fn a_running_process_has_a_start_time_and_a_zombie_none() {
        assert_eq!(running_start(&stat_line("S", 834_110, 0)), Some(834_110));
        assert_eq!(
            running_start(&stat_line("T", 7, 0)),
            Some(7),
            "stopped still runs"
        );
        assert_eq!(running_start(&stat_line("Z", 7, 0)), None);
        assert_eq!(running_start("42 (x) S 1"), None);
    }

    #[test]
    fn this_process_is_found_by_pid_and_start_time() {
        let me = std::process::id();
        let start = SystemProcesses.start_time(me).expect("this process runs");
        let process = ProcessRef { pid: me, start };
        assert!(SystemProcesses.is_running(process));
        assert!(
            !SystemProcesses.is_running(ProcessRef {
                start: start + 1,
                ..process
            }),
            "another process that got the same pid is not this one"
        );
    }
}
