//! Measurements read from the kernel: `/proc/PID/stat` CPU ticks, `/proc/PID/status` VmRSS,
//! and `statvfs` of the working directory. CPU percent is the tick delta between two samples
//! over the wall time between them, in percent of one core (like `docker stats`).

#![allow(unsafe_code)]

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::model::DiskUsage;

/// Samples closer together than this reuse the last figure (the tick resolution is 10 ms).
const MIN_SAMPLE_GAP: Duration = Duration::from_millis(100);

fn clock_ticks_per_sec() -> u64 {
    static TICKS: OnceLock<u64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        // SAFETY: sysconf only reads a configuration value.
        let v = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        if v > 0 { v as u64 } else { 100 }
    })
}

/// `utime + stime` (in clock ticks) from the text of `/proc/PID/stat`.
pub fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    // The command name (field 2) may hold spaces and parentheses: fields restart after the
    // last ')'. Then field 3 (state) is index 0, utime (14) index 11, stime (15) index 12.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// The process state letter from `/proc/PID/stat` (`R`, `S`, `Z`...).
pub fn parse_state(stat: &str) -> Option<char> {
    stat[stat.rfind(')')? + 1..].trim_start().chars().next()
}

/// Bytes of the `VmRSS` line of a `/proc/PID/status` text.
pub fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line["VmRSS:".len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

fn proc_path(pid: Option<u32>, file: &str) -> String {
    match pid {
        Some(pid) => format!("/proc/{pid}/{file}"),
        None => format!("/proc/self/{file}"),
    }
}

/// Resident bytes of `pid` (`None` = this process); 0 if it is gone.
pub fn rss_bytes(pid: Option<u32>) -> u64 {
    std::fs::read_to_string(proc_path(pid, "status"))
        .ok()
        .and_then(|s| parse_vm_rss(&s))
        .unwrap_or(0)
}

/// CPU ticks used so far by `pid` (`None` = this process).
pub fn cpu_ticks(pid: Option<u32>) -> Option<u64> {
    parse_cpu_ticks(&std::fs::read_to_string(proc_path(pid, "stat")).ok()?)
}

/// Turns successive CPU-tick readings of one process into percent of one core.
#[derive(Debug)]
pub struct CpuSampler {
    pid: Option<u32>,
    last_ticks: u64,
    last_at: Instant,
    last_pct: f64,
}

impl CpuSampler {
    /// Starts sampling `pid` (`None` = this process) from now.
    pub fn new(pid: Option<u32>) -> CpuSampler {
        CpuSampler {
            pid,
            last_ticks: cpu_ticks(pid).unwrap_or(0),
            last_at: faas_common::clock::instant(),
            last_pct: 0.0,
        }
    }

    /// Percent of one core used since the previous sample.
    pub fn sample(&mut self) -> f64 {
        let now = faas_common::clock::instant();
        let Some(ticks) = cpu_ticks(self.pid) else {
            return 0.0;
        };
        self.update(ticks, now)
    }

    fn update(&mut self, ticks: u64, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(self.last_at);
        if elapsed < MIN_SAMPLE_GAP {
            return self.last_pct;
        }
        let used = ticks.saturating_sub(self.last_ticks) as f64 / clock_ticks_per_sec() as f64;
        self.last_pct = used / elapsed.as_secs_f64() * 100.0;
        self.last_ticks = ticks;
        self.last_at = now;
        self.last_pct
    }
}

/// Size and free space of the file system holding the working directory.
pub fn disk_usage() -> DiskUsage {
    let path = c".";
    // SAFETY: statvfs fills the zeroed struct we pass; the path is a valid C string.
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statvfs(path.as_ptr(), &mut s) };
    if rc != 0 {
        return DiskUsage::default();
    }
    let frsize = if s.f_frsize > 0 {
        s.f_frsize
    } else {
        s.f_bsize
    } as u64;
    DiskUsage {
        total_bytes: s.f_blocks as u64 * frsize,
        avail_bytes: s.f_bavail as u64 * frsize,
        total_inodes: s.f_files as u64,
        free_inodes: s.f_ffree as u64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_odd_command_names() {
        let stat =
            "42 (my (odd) name) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0 1000 0 0";
        assert_eq!(parse_cpu_ticks(stat), Some(300));
        assert_eq!(parse_state(stat), Some('S'));
        assert_eq!(parse_cpu_ticks("garbage"), None);
        assert_eq!(parse_vm_rss("VmRSS:\t  10 kB\n"), Some(10240));
    }

    #[test]
    fn cpu_percent_is_ticks_over_wall_time() {
        let start = faas_common::clock::instant();
        let mut s = CpuSampler {
            pid: None,
            last_ticks: 0,
            last_at: start,
            last_pct: 0.0,
        };
        let hz = clock_ticks_per_sec();
        // Two cores busy for one second: 200 %.
        let pct = s.update(2 * hz, start + Duration::from_secs(1));
        assert!((pct - 200.0).abs() < 1e-9, "{pct}");
        // Too close to the last sample: the last figure again.
        assert_eq!(s.update(10 * hz, start + Duration::from_millis(1010)), pct);
    }

    #[test]
    fn reads_our_own_process_and_disk() {
        assert!(rss_bytes(None) > 0);
        assert!(cpu_ticks(None).is_some());
        let d = disk_usage();
        assert!(d.total_bytes > 0 && d.avail_bytes <= d.total_bytes);
    }
}
